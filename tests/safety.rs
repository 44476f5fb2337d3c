//! Nothing written outside the library (issue #12): a symbolic link in each place the app
//! writes — a `.part`, the staging folder, `models/<id>`, `.downloads/<id>`, `.downloads`,
//! `.cache`, `models`, the registry, its lock, `listing.bin` — is never written through,
//! and the folder outside stays exactly as it was; linked top-level folders turn writes off
//! with an error saying what to do while listing still works. Also: a model mid-import is
//! `partial` with the reason, staging folders of the earlier layout are listed after a
//! restart, registries with a byte-order mark load, and importing a device says what it is.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TestLib;
use common::http::{Behavior, TestServer};
use model_library::library::{
    ImportMode, ImportRequest, LibraryError, ListKind, ModelStatus, Registry,
};
use serde_json::{Value, json};

/// What a folder holds: each path with its kind, length and bytes (links as their target
/// text), so any change outside the library shows.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (String, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(
                    rel,
                    ("link".into(), target.into_os_string().into_encoded_bytes()),
                );
            } else if meta.is_dir() {
                out.insert(rel, ("dir".into(), Vec::new()));
                stack.push(path);
            } else {
                out.insert(rel, ("file".into(), fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// A folder outside the library with something worth keeping in it.
fn outside() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("precious.bin"),
        b"precious bytes, not to be touched",
    )
    .unwrap();
    fs::create_dir_all(dir.path().join("m")).unwrap();
    fs::write(dir.path().join("m/model.gguf"), b"GGUF outside").unwrap();
    dir
}

fn cli(lib: &Path, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_model-library"))
        .arg("--library")
        .arg(lib)
        .args(args)
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env_remove("MODEL_LIBRARY_DIR")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A registry with one downloadable model `m` whose one file is served by `server`.
fn downloadable(lib: &TestLib, server: &TestServer) {
    let body = b"GGUF downloaded bytes".to_vec();
    server.route("/model.gguf", body.clone(), Behavior::Normal);
    lib.registry(
        &json!({"version": 1, "x-top": "kept", "models": [{
            "id": "m", "x-extra": 1,
            "files": [{"path": "model.gguf", "url": server.url("/model.gguf"), "size": body.len()}]
        }]})
        .to_string(),
    );
}

#[test]
fn a_part_file_that_is_a_link_is_not_written_through() {
    let lib = TestLib::new();
    let server = TestServer::start();
    downloadable(&lib, &server);
    let out = outside();
    let before = snapshot(out.path());
    fs::create_dir_all(lib.path(".downloads/m")).unwrap();
    symlink(
        out.path().join("precious.bin"),
        lib.path(".downloads/m/model.gguf.part"),
    )
    .unwrap();

    let run = cli(lib.root(), &["download", "m"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("symbolic link"), "{}", stderr(&run));
    assert_eq!(snapshot(out.path()), before, "nothing outside changed");
    assert!(
        fs::symlink_metadata(lib.path("models/m/model.gguf")).is_err(),
        "no model file made of the link"
    );
}

#[test]
fn linked_top_level_folders_turn_writes_off_and_listing_still_works() {
    for linked in ["models", ".downloads", ".cache", "model_registry.json"] {
        let lib = TestLib::new();
        let server = TestServer::start();
        downloadable(&lib, &server);
        lib.file("models/keep/w.bin", 10);
        let out = outside();
        // The link points at a real copy of what it replaces, so listing through it works.
        let target = out.path().join(linked);
        fs::rename(lib.path(linked), &target).unwrap_or_else(|_| {
            fs::create_dir_all(&target).unwrap();
        });
        symlink(&target, lib.path(linked)).unwrap();
        let before = snapshot(out.path());
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("new.gguf"), b"GGUF new").unwrap();

        let listed = cli(lib.root(), &["list", "--json"]);
        assert_eq!(
            listed.status.code(),
            Some(0),
            "{linked}: {}",
            stderr(&listed)
        );
        let rows: Value = serde_json::from_slice(&listed.stdout).unwrap();
        assert!(
            rows.as_array().unwrap().iter().any(|m| m["id"] == "m"),
            "{linked}"
        );

        let info = cli(lib.root(), &["cache-info", "--json"]);
        let info: Value = serde_json::from_slice(&info.stdout).unwrap();
        let reason = info["service_cache"]["read_only_reason"]
            .as_str()
            .unwrap_or("");
        assert!(reason.contains(linked), "{linked}: {reason:?}");

        for args in [
            vec!["download", "m"],
            vec!["import", src.path().join("new.gguf").to_str().unwrap()],
            vec!["delete", "keep", "--yes", "--permanent"],
        ] {
            let run = cli(lib.root(), &args);
            assert_eq!(
                run.status.code(),
                Some(1),
                "{linked} {args:?}: {}",
                stderr(&run)
            );
            let message = stderr(&run);
            assert!(
                message.contains("writes to this library are off") && message.contains(linked),
                "{linked} {args:?}: {message}"
            );
        }
        assert_eq!(
            snapshot(out.path()),
            before,
            "{linked}: nothing outside changed"
        );
        assert!(src.path().join("new.gguf").exists());
    }
}

#[test]
fn a_staging_folder_that_is_a_link_is_replaced_not_entered() {
    let lib = TestLib::new();
    let out = outside();
    let before = snapshot(out.path());
    fs::create_dir_all(lib.path(".cache/imports")).unwrap();
    symlink(out.path().join("m"), lib.path(".cache/imports/new")).unwrap();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("new.gguf"), b"GGUF new model").unwrap();
    let (mut service, _) = lib.service();
    let outcome = service
        .import_model(&ImportRequest {
            source: src.path().join("new.gguf"),
            id: Some("new".into()),
            mode: ImportMode::Copy,
        })
        .unwrap();
    assert_eq!(outcome.files, 1);
    assert_eq!(
        fs::read(lib.path("models/new/new.gguf")).unwrap(),
        b"GGUF new model"
    );
    assert_eq!(snapshot(out.path()), before);
}

#[test]
fn a_model_folder_or_partial_folder_that_is_a_link_is_refused() {
    let lib = TestLib::new();
    let server = TestServer::start();
    downloadable(&lib, &server);
    let out = outside();
    let before = snapshot(out.path());
    let (mut service, _) = lib.service();

    // models/<id> is a link: an import of that id is refused, a download writes nothing.
    symlink(out.path().join("m"), lib.path("models/m")).unwrap();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("x.gguf"), b"GGUF").unwrap();
    let err = service
        .import_model(&ImportRequest {
            source: src.path().join("x.gguf"),
            id: Some("m".into()),
            mode: ImportMode::Copy,
        })
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    service.start_download("m").unwrap();
    let ended = service
        .wait_download(std::time::Duration::from_secs(30))
        .expect("the download ends");
    let reason = ended.result.unwrap_err();
    assert!(reason.contains("symbolic link"), "{reason}");
    assert_eq!(snapshot(out.path()), before);

    // .downloads/<id> is a link.
    fs::remove_file(lib.path("models/m")).unwrap();
    fs::create_dir_all(lib.path(".downloads")).unwrap();
    symlink(out.path().join("m"), lib.path(".downloads/m")).unwrap();
    service.start_download("m").unwrap();
    let ended = service
        .wait_download(std::time::Duration::from_secs(30))
        .expect("the download ends");
    assert!(ended.result.unwrap_err().contains("symbolic link"));
    assert_eq!(snapshot(out.path()), before);
    assert!(!lib.path("models/m/model.gguf").exists());

    // Discarding the partial download unlinks the link and keeps its target.
    service.discard_partial("m").unwrap();
    assert!(fs::symlink_metadata(lib.path(".downloads/m")).is_err());
    assert_eq!(snapshot(out.path()), before);
}

#[test]
fn a_registry_lock_that_is_a_link_is_never_created_or_opened() {
    let lib = TestLib::new();
    let out = outside();
    fs::create_dir_all(lib.path(".cache")).unwrap();
    let dangling = out.path().join("created-by-the-app.lock");
    symlink(&dangling, lib.path(".cache/registry.lock")).unwrap();
    let before = snapshot(out.path());
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("a.gguf"), b"GGUF a").unwrap();

    let run = cli(
        lib.root(),
        &["import", src.path().join("a.gguf").to_str().unwrap()],
    );
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("registry.lock"), "{}", stderr(&run));
    assert!(stderr(&run).contains("symbolic link"), "{}", stderr(&run));
    assert!(!dangling.exists(), "the link's target was not created");
    assert_eq!(snapshot(out.path()), before);
    // The import was backed out: no model folder, no journal, no staging folder.
    assert!(!lib.path("models/a").exists());
    assert_eq!(fs::read_dir(lib.path(".cache/imports")).unwrap().count(), 0);
    assert!(src.path().join("a.gguf").exists());
}

#[test]
fn a_persisted_listing_that_is_a_link_is_replaced_when_saved_and_ignored_when_loaded() {
    let lib = TestLib::new();
    lib.file("models/a/w.bin", 4);
    let out = outside();
    fs::create_dir_all(lib.path(".cache")).unwrap();
    symlink(
        out.path().join("precious.bin"),
        lib.path(".cache/listing.bin"),
    )
    .unwrap();
    let before = snapshot(out.path());

    let (mut service, _) = lib.service();
    assert!(
        service.warm_start().is_none(),
        "a linked listing is not read"
    );
    let note = service.cache_info().service_cache.persisted.unwrap();
    assert!(note.contains("symbolic link"), "{note}");
    service.list(ListKind::Full, false).unwrap();
    service.flush_saves();
    assert_eq!(snapshot(out.path()), before, "the target was not written");
    let saved = fs::symlink_metadata(lib.path(".cache/listing.bin")).unwrap();
    assert!(
        saved.is_file(),
        "the link was replaced by the app's own file"
    );
}

#[test]
fn a_model_mid_import_is_partial_with_the_reason() {
    let lib = TestLib::new();
    fs::create_dir_all(lib.path(".cache/imports/incoming")).unwrap();
    let journal = lib.path(".cache/imports/incoming.json");
    let plan = json!({"plan": {
        "id": "incoming", "source": "/somewhere/big.gguf", "mode": "copy",
        "single_file": true, "format": "gguf",
        "files": [{"path": "big.gguf", "size": 3, "dev": 1, "ino": 2, "mtime_ns": 3}]
    }});
    fs::write(&journal, format!("{plan}\n")).unwrap();
    let held = fs::File::open(&journal).unwrap();
    held.lock().unwrap(); // a live importer holds its journal

    let (mut service, _) = lib.service();
    let listing = service.list(ListKind::Full, true).unwrap();
    let m = listing.models.iter().find(|m| m.id == "incoming").unwrap();
    assert_eq!(m.status, ModelStatus::Partial);
    let note = m.note.as_deref().unwrap();
    assert!(
        note.contains("being imported from /somewhere/big.gguf"),
        "{note}"
    );
    assert!(
        lib.path(".cache/imports/incoming").exists(),
        "a live import is left alone"
    );

    // Its process dies: the next start discards it (nothing was staged), the source was
    // never touched, and the model is gone from the listing.
    drop(held);
    let (mut next, _) = lib.service();
    let listing = next.list(ListKind::Full, true).unwrap();
    assert!(listing.models.iter().all(|m| m.id != "incoming"));
    assert!(!lib.path(".cache/imports/incoming").exists());
    assert!(!journal.exists());
    let notes = next.recovery_notes().join("\n");
    assert!(
        notes.contains("discarded the interrupted import of incoming"),
        "{notes}"
    );
}

#[test]
fn staging_folders_of_the_earlier_layout_are_listed_after_a_restart() {
    let lib = TestLib::new();
    // What an interrupted move-import of the earlier version left: the only copy.
    lib.file(".cache/import-imp-999999999/big.gguf", 1000);
    let (mut service, _) = lib.service();
    let listing = service.list(ListKind::Full, false).unwrap();
    let m = listing
        .models
        .iter()
        .find(|m| m.id == "imp")
        .expect("listed");
    assert_eq!(m.size_bytes(), Some(1000));
    assert!(!lib.path(".cache/import-imp-999999999").exists());
    let notes = service.recovery_notes().join("\n");
    assert!(notes.contains("models/imp"), "{notes}");
    assert!(
        service
            .cache_info()
            .service_cache
            .recovery
            .iter()
            .any(|n| n.contains("interrupted import")),
    );
}

#[test]
fn a_registry_with_a_byte_order_mark_loads_and_is_rewritten_without_it() {
    let lib = TestLib::new();
    let text = "\u{feff}{\"version\": 1, \"x-top\": 1, \"models\": [{\"id\": \"bom\"}]}";
    lib.registry(text);
    let registry = Registry::load(&lib.library()).unwrap();
    assert!(registry.get("bom").is_some());

    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("b.gguf"), b"GGUF b").unwrap();
    let (mut service, _) = lib.service();
    service
        .import_model(&ImportRequest {
            source: src.path().join("b.gguf"),
            id: None,
            mode: ImportMode::Copy,
        })
        .unwrap();
    let bytes = fs::read(lib.path("model_registry.json")).unwrap();
    assert!(!bytes.starts_with(b"\xEF\xBB\xBF"));
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["x-top"], 1);
    let ids: Vec<_> = doc["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("bom"), json!("b")]);
}

#[test]
fn importing_a_device_or_a_pipe_says_what_it_is() {
    let lib = TestLib::new();
    let (mut service, _) = lib.service();
    let err = service
        .import_model(&ImportRequest {
            source: PathBuf::from("/dev/zero"),
            id: None,
            mode: ImportMode::Copy,
        })
        .unwrap_err();
    assert!(matches!(err, LibraryError::ImportRefused { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot import: /dev/zero is a character device, not a model file or folder"
    );
    assert!(fs::read_dir(lib.path("models")).unwrap().next().is_none());
}

#[test]
fn a_delete_killed_half_way_leaves_no_half_model_and_is_finished_at_the_next_start() {
    let lib = TestLib::new();
    lib.registry(&common::registry_json(&[("gone", &[("w.bin", 100)])]));
    lib.file("models/gone/w.bin", 100)
        .file("models/gone/sub/x.bin", 7);
    lib.file("models/kept/w.bin", 3);
    let home = tempfile::tempdir().unwrap();
    let killed = Command::new(env!("CARGO_BIN_EXE_model-library"))
        .arg("--library")
        .arg(lib.root())
        .args(["delete", "gone", "--yes", "--permanent"])
        .env("HOME", home.path())
        .env(
            model_library::library::crashpoint::ENV,
            "delete.moved_aside",
        )
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), None, "killed by the crash point");
    // The model vanished in one step: it is `available` (registered, nothing on disk).
    let listed = cli(lib.root(), &["list", "--json"]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let rows: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let gone = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "gone")
        .unwrap();
    assert_eq!(gone["status"], "available");
    assert!(
        stderr(&listed).contains("finished 1 delete"),
        "{}",
        stderr(&listed)
    );
    assert_eq!(
        fs::read_dir(lib.path(".cache/deleting")).unwrap().count(),
        0
    );
    assert!(lib.path("models/kept/w.bin").exists());
}

#[test]
fn the_default_library_with_a_linked_models_folder_opens_read_only() {
    let lib = TestLib::new();
    lib.file("models/a/w.bin", 5);
    let out = tempfile::tempdir().unwrap();
    fs::rename(lib.path("models"), out.path().join("models")).unwrap();
    symlink(out.path().join("models"), lib.path("models")).unwrap();
    let before = snapshot(out.path());
    let home = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_model-library"))
        .args(["--no-sources", "list", "--json"])
        .env("HOME", home.path())
        .env("MODEL_LIBRARY_DIR", lib.root())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let rows: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(rows[0]["id"], "a");
    assert!(
        stderr(&run).contains("writes to this library are off"),
        "{}",
        stderr(&run)
    );
    assert!(
        !lib.path("model_registry.json").exists(),
        "no catalog written"
    );
    assert_eq!(snapshot(out.path()), before);
}
