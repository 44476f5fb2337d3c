//! A full disk, simulated with a file-size limit (`ulimit -f`, SIGXFSZ ignored, so writes
//! fail with EFBIG as they would with ENOSPC): a clear error, and nothing half-written.

mod common;

use std::fs;
use std::process::{Command, Output};

use common::TestLib;
use common::http::{Behavior, TestServer};

/// Runs the CLI with writes limited to 512 bytes per file.
fn cli_limited(args: &[&str], env: &[(&str, &std::path::Path)]) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("trap '' XFSZ; ulimit -f 1; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_model-library"))
        .args(args)
        .env_remove("MODEL_LIBRARY_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn no_temp_files(dir: &std::path::Path) {
    let names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[test]
fn a_new_default_library_on_a_full_disk_fails_cleanly() {
    let lib = TestLib::new();
    let home = lib.path("default");
    let out = cli_limited(&["list"], &[("MODEL_LIBRARY_DIR", &home)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("model_registry.json") && err.contains("too large"),
        "{err}"
    );
    assert!(
        !home.join("model_registry.json").exists(),
        "no half-written registry"
    );
    no_temp_files(&home);
}

#[test]
fn listing_still_works_when_the_cache_cannot_be_saved() {
    let lib = TestLib::new();
    for i in 0..40 {
        lib.file(
            &format!("models/some-model-with-a-long-name-{i:03}/w.bin"),
            10,
        );
    }
    let out = cli_limited(
        &["--library", lib.root().to_str().unwrap(), "list", "--json"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let models: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(models.len(), 40);
    assert!(
        !lib.path(".cache/listing.bin").exists(),
        "no truncated cache file"
    );
    no_temp_files(&lib.path(".cache"));
}

#[test]
fn a_download_that_fills_the_disk_keeps_its_partial_data() {
    let lib = TestLib::new();
    let server = TestServer::start();
    server.route("/w", vec![9u8; 20_000], Behavior::Normal);
    lib.registry(
        &serde_json::json!({"version": 1, "models": [
            {"id": "big", "files": [{"path": "w", "url": server.url("/w"), "size": 20_000}]}
        ]})
        .to_string(),
    );
    let out = cli_limited(
        &["--library", lib.root().to_str().unwrap(), "download", "big"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too large") && err.contains("w.part"), "{err}");
    let part = fs::metadata(lib.path(".downloads/big/w.part"))
        .unwrap()
        .len();
    assert!(part > 0 && part < 20_000, "partial data kept: {part}");
    assert!(!lib.path("models/big").exists(), "nothing unverified lands");
}
