//! Verify: content addresses of every kind (Hugging Face SHA-256 and git SHA-1 blobs,
//! Ollama `sha256-` and `sha256:` blobs, registry sha256), corrupted files found and marked
//! in later listings until they change, the hash cache (nothing hashed twice, a changed
//! file hashed again), stopping and resuming, and the command's output and exit status.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use common::{TestLib, sha256_hex as sha256};
use model_library::library::sources::{SourceConfig, SourceKind};
use model_library::library::verify::{self, Checked, HashCache, Verdict, VerifyProgress};
use model_library::library::{ListKind, ManualClock, ModelLibraryService, ModelStatus};

fn git_sha1(bytes: &[u8]) -> String {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn put(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// A library with two registered models (one file right, one wrong), a Hugging Face cache
/// with a good repo and one with a corrupted LFS blob, and an Ollama store with a good model
/// (new blob names) and a corrupted one (old `sha256:` names).
struct Fixture {
    lib: TestLib,
    hf: PathBuf,
    ollama: PathBuf,
}

const GOOD: &[u8] = b"the weights as published";
/// The same length, one byte rotted: sizes alone cannot tell.
const BAD: &[u8] = b"the weights as publishe!";

impl Fixture {
    fn new() -> Fixture {
        let lib = TestLib::new();
        let registry = serde_json::json!({"version": 1, "models": [
            {"id": "good", "files": [{"path": "w.bin", "size": GOOD.len(), "sha256": sha256(GOOD)}]},
            {"id": "bad", "files": [{"path": "w.bin", "size": BAD.len(), "sha256": sha256(GOOD)}]},
        ]});
        lib.registry(&registry.to_string());
        put(&lib.path("models/good/w.bin"), GOOD);
        put(&lib.path("models/bad/w.bin"), BAD);

        let hf = lib.path("stores/hub");
        for (repo, weights) in [("org--fine", GOOD), ("org--broken", BAD)] {
            let dir = hf.join(format!("models--{repo}"));
            let big = sha256(GOOD); // the broken repo's blob is named for bytes it lost
            let small = b"{\"architectures\": []}";
            put(&dir.join("blobs").join(&big), weights);
            put(&dir.join("blobs").join(git_sha1(small)), small);
            fs::create_dir_all(dir.join("snapshots/r1")).unwrap();
            symlink(
                format!("../../blobs/{big}"),
                dir.join("snapshots/r1/model.safetensors"),
            )
            .unwrap();
            symlink(
                format!("../../blobs/{}", git_sha1(small)),
                dir.join("snapshots/r1/config.json"),
            )
            .unwrap();
            put(&dir.join("refs/main"), b"r1");
        }

        // Ollama: a current store (`sha256-` blob names) with a good model, and an older
        // install's store (`sha256:` names) whose weights rotted.
        let ollama = lib.path("stores/ollama");
        let config = br#"{"model_format":"gguf","model_family":"llama"}"#;
        for (store, name, weights, sep) in [
            (ollama.clone(), "fine", GOOD, "-"),
            (lib.path("stores/ollama-old"), "broken", BAD, ":"),
        ] {
            let (w, c) = (sha256(GOOD), sha256(config));
            put(&store.join(format!("blobs/sha256{sep}{w}")), weights);
            put(&store.join(format!("blobs/sha256{sep}{c}")), config);
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                           "digest": format!("sha256:{c}"), "size": config.len()},
                "layers": [{"mediaType": "application/vnd.ollama.image.model",
                            "digest": format!("sha256:{w}"), "size": GOOD.len()}],
            });
            put(
                &store.join(format!(
                    "manifests/registry.ollama.ai/library/{name}/latest"
                )),
                manifest.to_string().as_bytes(),
            );
        }
        Fixture { lib, hf, ollama }
    }

    fn service(&self) -> (ModelLibraryService, ManualClock) {
        let sources = vec![
            SourceConfig::new(SourceKind::HuggingFace, &self.hf),
            SourceConfig::new(SourceKind::Ollama, &self.ollama),
            SourceConfig::new(SourceKind::Ollama, self.lib.path("stores/ollama-old")),
        ];
        self.lib.service_with_sources(sources)
    }
}

/// A whole verify run through the service, as the command makes it.
fn verify_all(svc: &mut ModelLibraryService, only: &[String]) -> Vec<Checked> {
    let targets = svc.verify_targets(only).unwrap();
    let mut cache = HashCache::load(svc.library());
    let checked = verify::run(
        targets,
        &mut cache,
        &VerifyProgress::default(),
        &AtomicBool::new(false),
        2,
    );
    cache.save(svc.library()).unwrap();
    svc.record_verify(&checked).unwrap();
    checked
}

fn verdict_of<'a>(checked: &'a [Checked], model: &str) -> Vec<&'a Verdict> {
    checked
        .iter()
        .filter(|c| c.target.models.iter().any(|m| m == model))
        .map(|c| &c.verdict)
        .collect()
}

fn status_and_error(svc: &mut ModelLibraryService, id: &str) -> (ModelStatus, String) {
    let listing = svc.list(ListKind::Full, false).unwrap();
    let m = listing.models.iter().find(|m| m.id == id).unwrap();
    (m.status, m.error.as_deref().unwrap_or("").to_string())
}

#[test]
fn every_kind_of_content_address_is_checked_and_damage_is_found() {
    let f = Fixture::new();
    let (mut svc, _clock) = f.service();
    let checked = verify_all(&mut svc, &[]);
    // library 2 + HF 2×2 + Ollama 2×2
    assert_eq!(checked.len(), 10, "{checked:#?}");
    let algorithms: Vec<&str> = checked
        .iter()
        .map(|c| c.target.expected.algorithm())
        .collect();
    assert!(algorithms.contains(&"git-sha1"), "{algorithms:?}");
    for good in ["good", "huggingface/org/fine", "ollama/library/fine:latest"] {
        let v = verdict_of(&checked, good);
        assert!(
            !v.is_empty() && v.iter().all(|v| **v == Verdict::Ok),
            "{good}: {v:?}"
        );
    }
    for bad in [
        "bad",
        "huggingface/org/broken",
        "ollama/library/broken:latest",
    ] {
        let v = verdict_of(&checked, bad);
        assert!(
            v.iter()
                .any(|v| matches!(v, Verdict::Mismatch { actual } if *actual == sha256(BAD))),
            "{bad}: {v:?}"
        );
    }
    // Every later listing says so, with the file and both hashes.
    let (status, error) = status_and_error(&mut svc, "bad");
    assert_eq!(status, ModelStatus::Error);
    assert_eq!(
        error,
        format!(
            "w.bin: sha256 mismatch, expected {}, got {}",
            sha256(GOOD),
            sha256(BAD)
        )
    );
    for bad in ["huggingface/org/broken", "ollama/library/broken:latest"] {
        let (status, error) = status_and_error(&mut svc, bad);
        assert_eq!(status, ModelStatus::Error, "{bad}");
        assert!(error.contains("sha256 mismatch"), "{bad}: {error}");
    }
    assert_ne!(status_and_error(&mut svc, "good").0, ModelStatus::Error);
    // Another service on the same library (a new process) knows it too.
    let (mut again, _clock) = f.service();
    assert_eq!(status_and_error(&mut again, "bad").0, ModelStatus::Error);
}

#[test]
fn nothing_is_hashed_twice_and_a_changed_file_is_hashed_again() {
    let f = Fixture::new();
    let (mut svc, _clock) = f.service();
    let first = verify_all(&mut svc, &[]);
    assert!(first.iter().all(|c| !c.cached));
    let second = verify_all(&mut svc, &[]);
    assert!(second.iter().all(|c| c.cached), "{second:#?}");
    assert_eq!(
        first.iter().map(|c| &c.verdict).collect::<Vec<_>>(),
        second.iter().map(|c| &c.verdict).collect::<Vec<_>>()
    );
    // The damaged library file is put right: hashed again, found good, unmarked.
    let path = f.lib.path("models/bad/w.bin");
    fs::write(&path, BAD).unwrap(); // same bytes, new state: still wrong
    let file = fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(file);
    let third = verify_all(&mut svc, &["bad".to_string()]);
    assert_eq!(third.len(), 1);
    assert!(!third[0].cached, "a changed file is read again");
    assert!(matches!(third[0].verdict, Verdict::Mismatch { .. }));
    assert_eq!(status_and_error(&mut svc, "bad").0, ModelStatus::Error);

    fs::write(&path, GOOD).unwrap();
    // Changed, not yet verified: the mark was for another state of the file, so it goes.
    svc.refresh().unwrap();
    assert_ne!(status_and_error(&mut svc, "bad").0, ModelStatus::Error);
    let fourth = verify_all(&mut svc, &["bad".to_string()]);
    assert_eq!(fourth[0].verdict, Verdict::Ok);
}

#[test]
fn a_stopped_run_records_nothing_and_the_next_run_finishes() {
    let f = Fixture::new();
    let (mut svc, _clock) = f.service();
    let targets = svc.verify_targets(&[]).unwrap();
    let mut cache = HashCache::load(svc.library());
    let stopped = verify::run(
        targets,
        &mut cache,
        &VerifyProgress::default(),
        &AtomicBool::new(true),
        2,
    );
    assert!(stopped.iter().all(|c| c.verdict == Verdict::Stopped));
    assert!(cache.is_empty());
    svc.record_verify(&stopped).unwrap();
    assert_ne!(status_and_error(&mut svc, "bad").0, ModelStatus::Error);
    let resumed = verify_all(&mut svc, &[]);
    assert!(resumed.iter().all(|c| c.verdict != Verdict::Stopped));
}

#[test]
fn only_the_named_models_and_unknown_ids_are_refused() {
    let f = Fixture::new();
    let (mut svc, _clock) = f.service();
    let some = verify_all(
        &mut svc,
        &["good".into(), "ollama/library/fine:latest".into()],
    );
    let mut models: Vec<&str> = some
        .iter()
        .flat_map(|c| &c.target.models)
        .map(|s| s.as_str())
        .collect();
    models.sort();
    models.dedup();
    assert_eq!(models, ["good", "ollama/library/fine:latest"]);
    assert!(svc.verify_targets(&["nope".into()]).is_err());
}

fn run_cli(f: &Fixture, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_model-library"))
        .arg("--library")
        .arg(f.lib.root())
        .args(args)
        .env_remove("HOME")
        .output()
        .unwrap()
}

#[test]
fn the_command_lists_mismatches_and_exits_1_then_0_when_all_is_good() {
    let f = Fixture::new();
    // A named library is listed without the stores: its own files only.
    let out = run_cli(&f, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("MISMATCH    w.bin: sha256 mismatch"),
        "{text}"
    );
    assert!(text.contains("2 files"), "{text}");
    let json = run_cli(&f, &["verify", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["summary"]["mismatched"], 1);
    assert_eq!(
        value["summary"]["from_hash_cache"], 2,
        "the second run reads nothing"
    );
    let bad = value["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["verdict"] == "mismatch")
        .unwrap();
    assert_eq!(bad["models"], serde_json::json!(["bad"]));
    assert_eq!(bad["expected"]["algorithm"], "sha256");
    assert_eq!(bad["actual"], sha256(BAD));

    let good = run_cli(&f, &["verify", "good"]);
    assert_eq!(good.status.code(), Some(0), "{good:?}");
    let unknown = run_cli(&f, &["verify", "no-such-model"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-model"));
    // The listing of another process says what verify found.
    let list = run_cli(&f, &["list", "--json", "--status", "error"]);
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert!(
        rows[0]["error"]
            .as_str()
            .unwrap()
            .contains("sha256 mismatch")
    );
}

#[test]
fn a_service_running_beside_a_verify_run_shows_its_findings_at_its_next_request() {
    let f = Fixture::new();
    let (mut server, _clock) = f.service();
    assert_ne!(status_and_error(&mut server, "bad").0, ModelStatus::Error);
    // Another process (here: another service) verifies.
    let (mut cli, _clock) = f.service();
    verify_all(&mut cli, &["bad".into()]);
    // Between requests (as the shells do), the service notices the findings changed.
    assert!(server.catch_up());
    assert_eq!(status_and_error(&mut server, "bad").0, ModelStatus::Error);
    assert!(!server.catch_up(), "once");
}

#[test]
fn the_service_runs_verify_on_a_thread_and_reports_it() {
    let f = Fixture::new();
    let (mut svc, _clock) = f.service();
    let state = svc.start_verify(&[]).unwrap();
    assert!(state.running);
    assert_eq!(state.files_total, 10);
    assert!(svc.start_verify(&[]).is_err(), "one run at a time");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while svc.verify_state().running {
        assert!(
            std::time::Instant::now() < deadline,
            "verify did not finish"
        );
        svc.tick();
        std::thread::sleep(std::time::Duration::from_millis(10)); // the tick rate
    }
    let last = svc.verify_state().last.unwrap();
    assert_eq!(last.summary.mismatched, 3);
    assert_eq!(last.problems.len(), 3);
    assert_eq!(status_and_error(&mut svc, "bad").0, ModelStatus::Error);
}
