//! Downloads against a local HTTP server on 127.0.0.1: complete and verified, cut half-way
//! then resumed with Range, wrong checksum, 404, stalled server cancelled, the parallel
//! bound, hostile ids, and symlinks on the way.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestLib;
use common::http::{Behavior, TestServer};
use model_library::library::sha256_file;
use model_library::library::{
    Clock, DownloadOptions, DownloadState, LibraryError, ListKind, ManualClock,
    ModelLibraryService, ModelStatus, ServiceOptions, SystemClock,
};
use serde_json::json;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn sha_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    fs::write(&p, bytes).unwrap();
    sha256_file(&p).unwrap()
}

fn service(lib: &TestLib, options: DownloadOptions) -> ModelLibraryService {
    ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            clock: Arc::new(ManualClock::new(SystemClock.now() + 100.0)),
            download_options: options,
            ..ServiceOptions::default()
        },
    )
    .unwrap()
}

fn fast() -> DownloadOptions {
    DownloadOptions {
        read_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(5),
        max_parallel: 2,
    }
}

/// Registers one model whose files are served by `server`.
fn register(lib: &TestLib, id: &str, files: &[(&str, &str, Option<u64>, Option<String>)]) {
    let files: Vec<_> = files
        .iter()
        .map(
            |(path, url, size, sha)| json!({"path": path, "url": url, "size": size, "sha256": sha}),
        )
        .collect();
    lib.registry(&json!({"version": 1, "models": [{"id": id, "files": files}]}).to_string());
}

fn wait(svc: &mut ModelLibraryService) -> model_library::library::DownloadEvent {
    svc.wait_download(Duration::from_secs(20))
        .expect("the download ended in time")
}

/// The board shows a download's end right after its event is sent: wait (bounded) for it.
fn board_settles(svc: &ModelLibraryService, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !svc.download_board().get(id).unwrap().state.is_finished() {
        assert!(Instant::now() < deadline, "the board never showed the end");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn status(svc: &mut ModelLibraryService, id: &str) -> ModelStatus {
    let listing = svc.list(ListKind::Full, false).unwrap();
    listing.models.iter().find(|m| m.id == id).unwrap().status
}

#[test]
fn a_complete_download_is_verified_and_shows_downloaded() {
    let lib = TestLib::new();
    let server = TestServer::start();
    let a = payload(300_000);
    let b = payload(1234);
    server.route("/a.gguf", a.clone(), Behavior::Normal);
    server.route("/cfg.json", b.clone(), Behavior::Normal);
    register(
        &lib,
        "m",
        &[
            (
                "a.gguf",
                &server.url("/a.gguf"),
                Some(a.len() as u64),
                Some(sha_hex(&a)),
            ),
            (
                "sub/cfg.json",
                &server.url("/cfg.json"),
                Some(b.len() as u64),
                None,
            ),
        ],
    );
    let mut svc = service(&lib, fast());
    assert_eq!(status(&mut svc, "m"), ModelStatus::Available);
    let info = svc.start_download("m").unwrap();
    assert_eq!(info.status, ModelStatus::Downloading);
    assert_eq!(status(&mut svc, "m"), ModelStatus::Downloading);
    let event = wait(&mut svc);
    assert_eq!(event.result, Ok(301_234));
    assert_eq!(fs::read(lib.path("models/m/a.gguf")).unwrap(), a);
    assert_eq!(fs::read(lib.path("models/m/sub/cfg.json")).unwrap(), b);
    assert!(!lib.path(".downloads/m").exists(), "no leftovers");
    assert_eq!(status(&mut svc, "m"), ModelStatus::Downloaded);
    board_settles(&svc, "m");
    let board = svc.download_board().get("m").unwrap();
    assert_eq!(board.state, DownloadState::Done);
    assert_eq!(board.bytes_done, 301_234);
    assert_eq!(board.files_done, 2);
}

#[test]
fn a_transfer_cut_half_way_resumes_with_only_the_rest() {
    let lib = TestLib::new();
    let server = TestServer::start();
    let data = payload(200_000);
    server.route("/w.bin", data.clone(), Behavior::CutAfter(80_000));
    register(
        &lib,
        "m",
        &[(
            "w.bin",
            &server.url("/w.bin"),
            Some(data.len() as u64),
            Some(sha_hex(&data)),
        )],
    );
    let mut svc = service(&lib, fast());
    svc.start_download("m").unwrap();
    let event = wait(&mut svc);
    let err = event.result.unwrap_err();
    assert!(err.contains("connection lost"), "{err}");
    assert_eq!(
        fs::metadata(lib.path(".downloads/m/w.bin.part"))
            .unwrap()
            .len(),
        80_000
    );
    assert!(
        !lib.path("models/m/w.bin").exists(),
        "nothing unverified lands in models/"
    );
    assert_eq!(status(&mut svc, "m"), ModelStatus::Partial);
    board_settles(&svc, "m");
    match svc.download_board().get("m").unwrap().state {
        DownloadState::Failed { reason } => assert!(reason.contains("connection lost")),
        other => panic!("{other:?}"),
    }

    server.route("/w.bin", data.clone(), Behavior::Normal);
    svc.start_download("m").unwrap();
    let event = wait(&mut svc);
    assert_eq!(
        event.result,
        Ok(120_000),
        "only the rest crossed the network"
    );
    let last = server.hits().last().unwrap().clone();
    assert_eq!(last.range_start, Some(80_000));
    assert_eq!(last.body_bytes_sent, 120_000);
    assert_eq!(fs::read(lib.path("models/m/w.bin")).unwrap(), data);
    assert_eq!(status(&mut svc, "m"), ModelStatus::Downloaded);
}

#[test]
fn a_server_ignoring_range_restarts_cleanly() {
    let lib = TestLib::new();
    let server = TestServer::start();
    let data = payload(50_000);
    server.route("/w.bin", data.clone(), Behavior::IgnoreRange);
    register(
        &lib,
        "m",
        &[("w.bin", &server.url("/w.bin"), Some(50_000), None)],
    );
    fs::create_dir_all(lib.path(".downloads/m")).unwrap();
    fs::write(lib.path(".downloads/m/w.bin.part"), &data[..1000]).unwrap();
    let mut svc = service(&lib, fast());
    svc.start_download("m").unwrap();
    assert_eq!(wait(&mut svc).result, Ok(50_000));
    assert_eq!(fs::read(lib.path("models/m/w.bin")).unwrap(), data);
}

#[test]
fn a_wrong_sha256_is_rejected_and_nothing_lands() {
    let lib = TestLib::new();
    let server = TestServer::start();
    let data = payload(10_000);
    server.route("/w.bin", data, Behavior::Normal);
    register(
        &lib,
        "m",
        &[(
            "w.bin",
            &server.url("/w.bin"),
            Some(10_000),
            Some("0".repeat(64)),
        )],
    );
    let mut svc = service(&lib, fast());
    svc.start_download("m").unwrap();
    let err = wait(&mut svc).result.unwrap_err();
    assert!(err.contains("sha256 mismatch"), "{err}");
    assert!(!lib.path("models/m").exists());
    assert!(
        !lib.path(".downloads/m").exists(),
        "the bad data is discarded"
    );
    assert_eq!(status(&mut svc, "m"), ModelStatus::Available);
}

#[test]
fn a_404_ends_cleanly() {
    let lib = TestLib::new();
    let server = TestServer::start();
    server.route("/w.bin", vec![], Behavior::NotFound);
    register(
        &lib,
        "m",
        &[("w.bin", &server.url("/w.bin"), Some(10), None)],
    );
    let mut svc = service(&lib, fast());
    svc.start_download("m").unwrap();
    let err = wait(&mut svc).result.unwrap_err();
    assert!(err.contains("HTTP 404"), "{err}");
    assert!(!lib.path("models/m").exists());
    assert_eq!(status(&mut svc, "m"), ModelStatus::Available);
}

#[test]
fn a_stalled_server_can_be_cancelled_and_keeps_the_partial_data() {
    let lib = TestLib::new();
    let server = TestServer::start();
    let data = payload(100_000);
    server.route("/w.bin", data, Behavior::StallAfter(30_000));
    register(
        &lib,
        "m",
        &[("w.bin", &server.url("/w.bin"), Some(100_000), None)],
    );
    let mut svc = service(
        &lib,
        DownloadOptions {
            read_timeout: Duration::from_secs(2),
            ..fast()
        },
    );
    svc.start_download("m").unwrap();
    // Wait (bounded) until the first bytes are on disk, then cancel.
    let deadline = Instant::now() + Duration::from_secs(20);
    while svc.download_board().get("m").unwrap().bytes_done < 30_000 {
        assert!(Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    svc.cancel_download("m").unwrap();
    // The read is stuck on the server; the stall ends when the per-read timeout fires, so
    // this only proves a clean end, not speed.
    let event = svc.wait_download(Duration::from_secs(40)).expect("ended");
    assert_eq!(event.result, Err("cancelled".into()));
    board_settles(&svc, "m");
    assert_eq!(
        svc.download_board().get("m").unwrap().state,
        DownloadState::Cancelled
    );
    assert_eq!(
        fs::metadata(lib.path(".downloads/m/w.bin.part"))
            .unwrap()
            .len(),
        30_000
    );
    assert_eq!(status(&mut svc, "m"), ModelStatus::Partial);
    assert!(svc.cancel_download("m").is_err(), "nothing left to cancel");
    // The partial download can be discarded.
    assert_eq!(svc.discard_partial("m").unwrap(), 30_000);
    assert_eq!(status(&mut svc, "m"), ModelStatus::Available);
}

#[test]
fn downloads_beyond_the_bound_wait_in_the_queue() {
    let lib = TestLib::new();
    let server = TestServer::start();
    server.route("/slow", payload(10_000), Behavior::StallAfter(1000));
    server.route("/quick", payload(5000), Behavior::Normal);
    lib.registry(
        &json!({"version": 1, "models": [
            {"id": "slow", "files": [{"path": "s", "url": server.url("/slow"), "size": 10_000}]},
            {"id": "quick", "files": [{"path": "q", "url": server.url("/quick"), "size": 5000}]},
        ]})
        .to_string(),
    );
    let mut svc = service(
        &lib,
        DownloadOptions {
            max_parallel: 1,
            read_timeout: Duration::from_secs(1),
            ..fast()
        },
    );
    svc.start_download("slow").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while svc.download_board().get("slow").unwrap().bytes_done == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    svc.start_download("quick").unwrap();
    let err = svc.start_download("quick").unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
    // "quick" waits for the only slot while "slow" holds it.
    assert_eq!(
        svc.download_board().get("quick").unwrap().state,
        DownloadState::Queued
    );
    svc.cancel_download("slow").unwrap();
    let mut ended = vec![wait(&mut svc).id, wait(&mut svc).id];
    ended.sort();
    assert_eq!(ended, ["quick", "slow"]);
    assert_eq!(fs::read(lib.path("models/quick/q")).unwrap(), payload(5000));
}

#[test]
fn bad_ids_and_entries_are_refused() {
    let lib = TestLib::new();
    lib.registry(
        r#"{"version":1,"models":[
            {"id":"nourl","files":[{"path":"a"}]},
            {"id":"nofiles"},
            {"id":"broken","files":[{"path":"/etc/passwd","url":"http://127.0.0.1:1/x"}]}]}"#,
    );
    let mut svc = service(&lib, fast());
    for id in ["../x", "a/b", ".", ""] {
        assert!(
            matches!(svc.start_download(id), Err(LibraryError::InvalidId { .. })),
            "{id}"
        );
    }
    assert!(matches!(
        svc.start_download("ghost"),
        Err(LibraryError::UnknownModel(_))
    ));
    for (id, needle) in [
        ("nourl", "has no URL"),
        ("nofiles", "lists no files"),
        ("broken", "registry entry is invalid"),
    ] {
        let err = svc.start_download(id).unwrap_err().to_string();
        assert!(err.contains(needle), "{id}: {err}");
    }
    assert!(!lib.path(".downloads").exists());
}

#[test]
fn a_symlink_on_the_way_is_never_written_through() {
    let lib = TestLib::new();
    let outside = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    server.route("/w", payload(100), Behavior::Normal);
    register(&lib, "m", &[("sub/w", &server.url("/w"), Some(100), None)]);
    fs::create_dir_all(lib.path("models/m")).unwrap();
    symlink(outside.path(), lib.path("models/m/sub")).unwrap();
    let mut svc = service(&lib, fast());
    svc.start_download("m").unwrap();
    let err = wait(&mut svc).result.unwrap_err();
    assert!(err.contains("symbolic link"), "{err}");
    assert!(
        fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing written outside"
    );
}

#[test]
fn files_already_in_place_are_not_fetched_again() {
    let lib = TestLib::new();
    let server = TestServer::start();
    let data = payload(4000);
    server.route("/a", data.clone(), Behavior::Normal);
    server.route("/b", data.clone(), Behavior::Normal);
    register(
        &lib,
        "m",
        &[
            ("a", &server.url("/a"), Some(4000), None),
            ("b", &server.url("/b"), Some(4000), None),
        ],
    );
    fs::create_dir_all(lib.path("models/m")).unwrap();
    fs::write(lib.path("models/m/a"), &data).unwrap();
    let mut svc = service(&lib, fast());
    svc.start_download("m").unwrap();
    assert_eq!(wait(&mut svc).result, Ok(4000));
    assert_eq!(server.hits().len(), 1);
    assert_eq!(server.hits()[0].path, "/b");
}

#[test]
fn cli_download_reports_progress_and_result() {
    let lib = TestLib::new();
    let server = TestServer::start();
    let data = payload(70_000);
    server.route("/w", data.clone(), Behavior::Normal);
    server.route("/gone", vec![], Behavior::NotFound);
    lib.registry(
        &json!({"version": 1, "models": [
            {"id": "ok", "files": [{"path": "w", "url": server.url("/w"), "size": 70_000}]},
            {"id": "bad", "files": [{"path": "w", "url": server.url("/gone")}]},
        ]})
        .to_string(),
    );
    let run = |id: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_model-library"))
            .args(["--library", lib.root().to_str().unwrap(), "download", id])
            .output()
            .unwrap()
    };
    let out = run("ok");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok downloaded and verified"));
    assert_eq!(fs::read(lib.path("models/ok/w")).unwrap(), data);

    let out = run("bad");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 404") && err.contains("resume"), "{err}");
    let out = run("ghost");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no model \"ghost\""));
}

/// Reads `child`'s `stream` until `wanted` appears in it (bounded), then kills the child.
fn read_until(
    mut child: std::process::Child,
    stream: impl std::io::Read + Send + 'static,
    wanted: &'static str,
) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut stream = stream;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(wanted) && std::time::Instant::now() < deadline {
        if let Ok(bytes) = rx.recv_timeout(std::time::Duration::from_millis(100)) {
            seen.extend(bytes);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8_lossy(&seen).into_owned()
}

/// `download` on a terminal draws a bar (bytes of the total, speed, time left); into a pipe
/// it writes plain lines instead.
#[test]
fn cli_download_progress_is_a_bar_on_a_terminal_and_lines_in_a_pipe() {
    let lib = TestLib::new();
    let server = TestServer::start();
    server.route("/w", payload(50_000), Behavior::StallAfter(20_000));
    lib.registry(
        &json!({"version": 1, "models": [
            {"id": "slow", "files": [{"path": "w", "url": server.url("/w"), "size": 50_000}]},
        ]})
        .to_string(),
    );
    let bin = env!("CARGO_BIN_EXE_model-library");
    let root = lib.root().to_str().unwrap().to_string();

    // A pipe: a plain line, no bar.
    let mut child = std::process::Command::new(bin)
        .args(["--library", &root, "download", "slow"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let text = read_until(child, stderr, "19.5 KiB / 48.8 KiB");
    assert!(text.contains("19.5 KiB / 48.8 KiB"), "{text}");
    assert!(!text.contains('\r'), "nothing redrawn in a pipe: {text:?}");

    // A terminal (`script` gives the command one): indicatif's bar, redrawn in place (the
    // download resumes from the 20 000 bytes the first run kept).
    let command = format!("'{bin}' --library '{root}' download slow");
    let mut child = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("script (util-linux) runs the command on a terminal");
    let stdout = child.stdout.take().unwrap();
    let text = read_until(child, stdout, "39.06 KiB/48.83 KiB");
    assert!(
        text.contains("39.06 KiB/48.83 KiB"),
        "{:?}",
        &text[..text.len().min(400)]
    );
    assert!(text.contains('\r'), "redrawn on a terminal");
}
