//! Reclaimable space: orphan and detached items of every kind (Ollama blobs no manifest
//! uses and unfinished pulls; Hugging Face blobs no snapshot links, detached revisions and
//! what only they link, `.incomplete` downloads; the library's stale `.downloads/` and
//! staging folders without a journal), what is in use left out, recent files left alone by
//! `--delete`, and the command moving the rest to the trash.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{TestLib, registry_json};
use model_library::library::sources::{SourceConfig, SourceKind};

/// Writes `len` bytes at `path`, dated two hours ago.
fn put(path: &Path, len: usize) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, vec![7u8; len]).unwrap();
    old(path);
}

fn old(path: &Path) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
}

/// Dates every folder and link below `root` two hours ago (making the fixture changed
/// them).
fn age_folders(root: &Path) {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let then = SystemTime::now() - Duration::from_secs(7200);
    let secs = then
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    for e in walkdir::WalkDir::new(root).into_iter().flatten() {
        if e.file_type().is_dir() || e.file_type().is_symlink() {
            utimensat(CWD, e.path(), &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        }
    }
}

fn hex(c: char) -> String {
    c.to_string().repeat(64)
}

/// Every kind of reclaimable item, and beside each something in use that must stay.
fn fixture() -> TestLib {
    let lib = TestLib::new();
    lib.registry(&registry_json(&[("kept", &[("w.bin", 10)])]));
    put(&lib.path(".downloads/kept/w.bin.part"), 5); // resumable: in use
    put(&lib.path(".downloads/ghost/w.bin.part"), 50); // no registry entry
    put(&lib.path(".cache/imports/lost/w.bin"), 60); // no journal
    put(&lib.path(".cache/imports/live/w.bin"), 70); // has a journal: in use
    put(&lib.path(".cache/imports/live.json"), 2);

    let o = lib.path("stores/ollama");
    put(&o.join(format!("blobs/sha256-{}", hex('a'))), 100); // used
    put(&o.join(format!("blobs/sha256-{}", hex('b'))), 200); // orphan
    put(&o.join(format!("blobs/sha256-{}-partial", hex('c'))), 300); // unfinished pull
    let manifest = serde_json::json!({
        "config": {"digest": format!("sha256:{}", hex('a')), "size": 100},
        "layers": [],
    });
    let m = o.join("manifests/registry.ollama.ai/library/x/latest");
    fs::create_dir_all(m.parent().unwrap()).unwrap();
    fs::write(&m, manifest.to_string()).unwrap();

    let repo = lib.path("stores/hub/models--org--m");
    put(&repo.join("blobs/named"), 1000); // linked by the named revision
    put(&repo.join("blobs/shared"), 2000); // linked by both revisions
    put(&repo.join("blobs/old-only"), 3000); // only the detached revision
    put(&repo.join("blobs/loose"), 4000); // no snapshot links it
    put(&repo.join("blobs/next.incomplete"), 5000);
    for (rev, blobs) in [
        ("r-new", ["named", "shared"]),
        ("r-old", ["old-only", "shared"]),
    ] {
        fs::create_dir_all(repo.join("snapshots").join(rev)).unwrap();
        for b in blobs {
            symlink(
                format!("../../blobs/{b}"),
                repo.join("snapshots").join(rev).join(b),
            )
            .unwrap();
        }
    }
    put(&repo.join("refs/main"), 0);
    fs::write(repo.join("refs/main"), "r-new").unwrap();
    // A repo fetched by commit alone (no refs): in use, nothing of it is reclaimable.
    let pinned = lib.path("stores/hub/models--org--pinned");
    put(&pinned.join("blobs/p"), 600);
    fs::create_dir_all(pinned.join("snapshots/r-pin")).unwrap();
    symlink("../../blobs/p", pinned.join("snapshots/r-pin/p")).unwrap();
    // The hub's shared blob store: one file a repo links, one no repo links.
    let hub = lib.path("stores/hub");
    put(&hub.join("blobs/.huggingface-shared-blobs"), 2);
    let (used, orphan) = (
        format!("aa{}", "1".repeat(62)),
        format!("bb{}", "2".repeat(62)),
    );
    put(&hub.join(format!("blobs/aa/{used}")), 700);
    put(&hub.join(format!("blobs/bb/{orphan}")), 800);
    symlink(
        format!("../../blobs/aa/{used}"),
        pinned.join("blobs/shared-p"),
    )
    .unwrap();
    // Unfinished downloads of GPT4All, llama.cpp and Jan, beside finished files.
    put(&lib.path("stores/gpt4all/m.gguf"), 8);
    put(&lib.path("stores/gpt4all/incomplete-n.gguf"), 70);
    put(&lib.path("stores/llama.cpp/u_r_m.gguf"), 8);
    put(
        &lib.path("stores/llama.cpp/u_r_n.gguf.downloadInProgress"),
        80,
    );
    put(&lib.path("stores/jan/llamacpp/models/q/model.gguf.tmp"), 90);
    put(&lib.path("stores/jan/llamacpp/models/q/model.gguf.url"), 3);
    put(&lib.path("stores/jan/llamacpp/models/done/model.gguf"), 8);
    age_folders(lib.root());
    lib
}

fn stores(lib: &TestLib) -> Vec<SourceConfig> {
    vec![
        SourceConfig::new(SourceKind::Ollama, lib.path("stores/ollama")),
        SourceConfig::new(SourceKind::HuggingFace, lib.path("stores/hub")),
        SourceConfig::new(SourceKind::Gpt4All, lib.path("stores/gpt4all")),
        SourceConfig::new(SourceKind::LlamaCpp, lib.path("stores/llama.cpp")),
        SourceConfig::new(SourceKind::Jan, lib.path("stores/jan")),
    ]
}

fn found(lib: &TestLib) -> Vec<(PathBuf, u64, String)> {
    let (mut svc, _) = lib.service_with_sources(stores(lib));
    svc.reclaimable()
        .unwrap()
        .into_iter()
        .map(|i| (i.path, i.size, i.why))
        .collect()
}

#[test]
fn every_kind_of_leftover_is_found_and_nothing_in_use() {
    let lib = fixture();
    let items = found(&lib);
    let paths: Vec<PathBuf> = items.iter().map(|i| i.0.clone()).collect();
    let repo = lib.path("stores/hub/models--org--m");
    let o = lib.path("stores/ollama/blobs");
    let expected = [
        (
            repo.join("blobs/next.incomplete"),
            5000,
            "unfinished download",
        ),
        (repo.join("blobs/loose"), 4000, "no snapshot links it"),
        (
            lib.path(&format!("stores/hub/blobs/bb/bb{}", "2".repeat(62))),
            800,
            "shared blob no repository links",
        ),
        (
            repo.join("blobs/old-only"),
            3000,
            "only detached revision r-old",
        ),
        (
            o.join(format!("sha256-{}-partial", hex('c'))),
            300,
            "unfinished pull",
        ),
        (
            o.join(format!("sha256-{}", hex('b'))),
            200,
            "no manifest uses it",
        ),
        (
            lib.path("stores/jan/llamacpp/models/q/model.gguf.tmp"),
            90,
            "unfinished download of Jan",
        ),
        (
            lib.path("stores/jan/llamacpp/models/q/model.gguf.url"),
            3,
            "unfinished download of Jan",
        ),
        (
            lib.path("stores/llama.cpp/u_r_n.gguf.downloadInProgress"),
            80,
            "unfinished download of llama.cpp",
        ),
        (
            lib.path("stores/gpt4all/incomplete-n.gguf"),
            70,
            "unfinished download of GPT4All",
        ),
        (lib.path(".cache/imports/lost"), 60, "no journal"),
        (lib.path(".downloads/ghost"), 50, "registry no longer has"),
        (repo.join("snapshots/r-old"), 0, "detached"),
    ];
    assert_eq!(items.len(), expected.len(), "{items:#?}");
    for (path, size, why) in expected {
        let item = items
            .iter()
            .find(|i| i.0 == path)
            .unwrap_or_else(|| panic!("{} missing from {paths:#?}", path.display()));
        assert_eq!(item.1, size, "{}", path.display());
        assert!(item.2.contains(why), "{}: {}", path.display(), item.2);
    }
}

/// The command on `lib` as the default library, with its stores found through the
/// environment (no home folder), and the trash in `lib/xdg`.
fn run_default(lib: &TestLib, args: &[&str]) -> std::process::Output {
    let xdg = lib.path("xdg");
    fs::create_dir_all(&xdg).unwrap();
    Command::new(env!("CARGO_BIN_EXE_model-library"))
        .args(args)
        .env("MODEL_LIBRARY_DIR", lib.root())
        .env("HF_HUB_CACHE", lib.path("stores/hub"))
        .env("OLLAMA_MODELS", lib.path("stores/ollama"))
        .env("HOME", "/nonexistent-home-for-tests")
        .env("XDG_DATA_HOME", &xdg)
        .env_remove("HF_HOME")
        .output()
        .unwrap()
}

#[test]
fn delete_trashes_the_items_but_not_what_changed_in_the_last_minute() {
    let lib = fixture();
    // A pull that is still writing its partial blob.
    let partial = lib.path(&format!("stores/ollama/blobs/sha256-{}-partial", hex('c')));
    fs::write(&partial, vec![1u8; 310]).unwrap();
    let out = run_default(&lib, &["reclaim", "--delete", "--yes", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outcomes = value["deleted"].as_array().unwrap();
    assert_eq!(outcomes.len(), 9, "{value:#}");
    for o in outcomes {
        let path = PathBuf::from(o["path"].as_str().unwrap());
        if path == partial {
            assert_eq!(o["outcome"], "skipped");
            assert!(o["reason"].as_str().unwrap().contains("last minute"));
            assert!(path.exists());
        } else {
            assert_eq!(o["outcome"], "trashed", "{o}");
            assert!(
                fs::symlink_metadata(&path).is_err(),
                "{} still there",
                path.display()
            );
        }
    }
    // What is in use is all still there.
    for keep in [
        ".downloads/kept/w.bin.part",
        ".cache/imports/live/w.bin",
        "stores/hub/models--org--m/blobs/named",
        "stores/hub/models--org--m/blobs/shared",
        "stores/hub/models--org--m/snapshots/r-new/named",
        "stores/hub/models--org--pinned/blobs/p",
        &format!("stores/hub/blobs/aa/aa{}", "1".repeat(62)),
    ] {
        assert!(lib.path(keep).exists(), "{keep}");
    }
    assert!(
        lib.path(&format!("stores/ollama/blobs/sha256-{}", hex('a')))
            .exists()
    );
    assert_eq!(lib.path("xdg/Trash/files").read_dir().unwrap().count(), 8);
}

#[test]
fn the_command_lists_and_deletes_the_library_leftovers() {
    let lib = fixture();
    let xdg = lib.path("xdg");
    fs::create_dir_all(&xdg).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_model-library"))
            .arg("--library")
            .arg(lib.root())
            .args(args)
            .env("XDG_DATA_HOME", &xdg)
            .env_remove("HOME")
            .output()
            .unwrap()
    };
    let listed = run(&["reclaim"]);
    assert!(listed.status.success(), "{listed:?}");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(text.contains("Reclaimable: 110 B in 2 items"), "{text}");
    assert_eq!(
        run(&["reclaim", "--delete"]).status.code(),
        Some(2),
        "asks first"
    );
    let deleted = run(&["reclaim", "--delete", "--yes", "--json"]);
    assert!(deleted.status.success(), "{deleted:?}");
    let value: serde_json::Value = serde_json::from_slice(&deleted.stdout).unwrap();
    assert_eq!(value["reclaimable"], 110);
    assert_eq!(value["deleted"].as_array().unwrap().len(), 2);
    assert!(!lib.path(".downloads/ghost").exists());
    assert!(!lib.path(".cache/imports/lost").exists());
    assert!(lib.path(".downloads/kept/w.bin.part").exists());
    let again = run(&["reclaim", "--json"]);
    let value: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(value["items"].as_array().unwrap().len(), 0);
}

#[test]
fn the_service_moves_only_what_was_confirmed_and_is_still_reclaimable() {
    let lib = fixture();
    let (mut svc, _) = lib.service_with_sources(stores(&lib));
    // Nothing confirmed, or only things that are not reclaimable: nothing moves (and the
    // trash is never touched).
    assert!(svc.reclaim(&[]).unwrap().is_empty());
    let in_use = vec![
        lib.path(".downloads/kept"),
        lib.path("stores/hub/models--org--m/blobs/named"),
    ];
    assert!(svc.reclaim(&in_use).unwrap().is_empty());
    for p in &in_use {
        assert!(p.exists());
    }
}
