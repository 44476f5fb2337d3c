//! The persisted listing: saved after each full scan, offered at the next start while a scan
//! revalidates it, and ignored (never trusted) when corrupt, truncated, old or foreign.

mod common;

use std::fs;
use std::sync::Arc;

use common::TestLib;
use model_library::library::persist;
use model_library::library::{
    Clock, ListKind, ManualClock, ModelLibraryService, ServiceOptions, SystemClock,
};

fn service(lib: &TestLib) -> ModelLibraryService {
    ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            clock: Arc::new(ManualClock::new(SystemClock.now() + 100.0)),
            ..ServiceOptions::default()
        },
    )
    .unwrap()
}

fn sample() -> TestLib {
    let lib = TestLib::new();
    lib.registry(&common::registry_json(&[("reg", &[("w.bin", 3)])]))
        .file("models/reg/w.bin", 3)
        .file("models/loose/sub/x.gguf", 9);
    lib
}

#[test]
fn a_full_listing_is_saved_and_offered_at_the_next_start() {
    let lib = sample();
    let first = service(&lib).list(ListKind::Full, false).unwrap();
    assert!(persist::path(&lib.library()).is_file());

    let mut svc = service(&lib);
    let warm = svc.warm_start().expect("persisted listing");
    assert_eq!(warm.models, first.models);
    assert_eq!(warm.timestamp, first.timestamp);
    assert!(svc.revalidating());
    let info = svc.cache_info().service_cache;
    assert!(
        !info.cache_valid,
        "a persisted listing is never served as valid"
    );
    assert!(info.revalidating);
    assert_eq!(info.cached_model_count, 2);
    assert_eq!(
        info.stale_reason.as_deref(),
        Some("revalidating the listing saved last time")
    );
    assert!(info.persisted.unwrap().contains("loaded 2 models"));

    // The first listing scans (a miss) and ends the revalidation.
    lib.file("models/new/w", 1);
    let listing = svc.list(ListKind::Full, false).unwrap();
    assert_eq!(listing.models.len(), 3);
    assert_eq!(svc.cache_info().service_cache.misses, 1);
    assert!(!svc.revalidating());
}

#[test]
fn damaged_or_foreign_files_are_ignored_with_the_reason() {
    let lib = sample();
    service(&lib).list(ListKind::Full, false).unwrap();
    let file = persist::path(&lib.library());
    let good = fs::read(&file).unwrap();

    let mut flipped = good.clone();
    let last = flipped.len() - 5;
    flipped[last] ^= 0xff;
    let mut old_version = good.clone();
    old_version[8] = 0;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (flipped, "checksum mismatch"),
        (good[..good.len() / 2].to_vec(), "truncated"),
        (old_version, "format version 0"),
        (b"garbage".to_vec(), "not a listing cache file"),
        (Vec::new(), "not a listing cache file"),
    ];
    for (bytes, needle) in cases {
        fs::write(&file, &bytes).unwrap();
        let mut svc = service(&lib);
        assert!(svc.warm_start().is_none(), "{needle}");
        let note = svc.cache_info().service_cache.persisted.unwrap();
        assert!(note.contains(needle), "{needle}: {note}");
        // It is rebuilt by the next scan (saved on a thread of the service's own).
        svc.list(ListKind::Full, false).unwrap();
        svc.flush_saves();
        assert!(service(&lib).warm_start().is_some(), "{needle}: rebuilt");
    }

    // A cache file copied from another library is not trusted.
    let other = TestLib::new();
    fs::create_dir_all(other.path(".cache")).unwrap();
    fs::copy(&file, persist::path(&other.library())).unwrap();
    let mut svc = service(&other);
    assert!(svc.warm_start().is_none());
    assert!(
        svc.cache_info()
            .service_cache
            .persisted
            .unwrap()
            .contains("another library")
    );
}

#[test]
fn an_unreachable_library_overwrites_nothing() {
    let lib = sample();
    let mut svc = service(&lib);
    svc.list(ListKind::Full, false).unwrap();
    svc.flush_saves();
    let file = persist::path(&lib.library());
    let saved = fs::read(&file).unwrap();
    let moved = lib.root().with_extension("unmounted");
    fs::rename(lib.root(), &moved).unwrap();
    assert!(svc.list(ListKind::Full, true).is_err());
    assert!(svc.refresh().is_err());
    fs::rename(&moved, lib.root()).unwrap();
    assert_eq!(
        fs::read(&file).unwrap(),
        saved,
        "the good cache is untouched"
    );
    assert_eq!(
        svc.list(ListKind::Full, false).unwrap().models.len(),
        2,
        "recovers"
    );
}

#[test]
fn persistence_can_be_switched_off() {
    let lib = sample();
    // A settled registry, of which a persisting service would make a copy.
    lib.set_mtime(
        "model_registry.json",
        std::time::SystemTime::now() - std::time::Duration::from_secs(60),
    );
    let mut svc = ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            persist: false,
            ..ServiceOptions::default()
        },
    )
    .unwrap();
    svc.list(ListKind::Full, false).unwrap();
    svc.flush_saves();
    assert!(!persist::path(&lib.library()).exists());
    assert!(
        !lib.path(".cache/registry.bin").exists(),
        "no copy of the registry either"
    );
    assert!(svc.warm_start().is_none());
}

#[test]
fn cli_cache_info_reports_the_saved_listing() {
    let lib = sample();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_model-library"))
            .arg("--library")
            .arg(lib.root())
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["list"]).status.success());
    let out = run(&["cache-info", "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["service_cache"]["cached_model_count"], 2);
    assert_eq!(info["service_cache"]["revalidating"], true);
    assert!(info["service_cache"]["cache_timestamp"].is_f64());
}

#[test]
fn the_saved_listing_is_revalidated_model_by_model() {
    let lib = TestLib::new();
    for i in 0..20 {
        lib.file(&format!("models/m{i:02}/w.bin"), 10);
    }
    // An earlier run saved the listing; the clock of this run is well after it.
    service(&lib).list(ListKind::Full, false).unwrap();
    lib.file("models/m07/extra.bin", 5); // changes m07's folder
    let mut svc = service(&lib);
    assert!(svc.warm_start().is_some());
    let listing = svc.list(ListKind::Full, false).unwrap();
    let m07 = listing.models.iter().find(|m| m.id == "m07").unwrap();
    assert_eq!(m07.size_bytes(), Some(15));
    assert_eq!(listing.models.len(), 20);
    let note = svc.cache_info().service_cache.persisted.unwrap();
    assert!(note.contains("1 of 20 models rescanned"), "{note}");
    assert!(!svc.revalidating());
    // What it built equals a full scan.
    let fresh = service(&lib).list(ListKind::Full, true).unwrap();
    assert_eq!(listing.models, fresh.models);
}

#[test]
fn a_registry_changed_since_the_save_shows_its_new_names() {
    // The saved rows carry the old registry's names: the listing must show the registry's
    // names as it is now (and equal a full scan).
    let lib = TestLib::new();
    let registry = |name: &str| {
        format!(
            r#"{{"version": 1, "models": [
                {{"id": "a", "name": "{name}", "description": "{name}, described",
                  "files": [{{"path": "w.bin", "size": 3}}]}}]}}"#
        )
    };
    lib.registry(&registry("Old name"))
        .file("models/a/w.bin", 3);
    service(&lib).list(ListKind::Full, false).unwrap();
    lib.registry(&registry("New name"))
        .file("models/a/extra.bin", 2);
    let stamp = fs::metadata(lib.path("model_registry.json"))
        .unwrap()
        .modified()
        .unwrap();
    lib.set_mtime(
        "model_registry.json",
        stamp + std::time::Duration::from_secs(5),
    );
    let mut svc = service(&lib);
    let listing = svc.list(ListKind::Full, false).unwrap();
    let a = listing.models.iter().find(|m| m.id == "a").unwrap();
    assert_eq!((&*a.name, a.size_bytes()), ("New name", Some(5)));
    assert_eq!(a.description.as_deref(), Some("New name, described"));
    let fresh = service(&lib).list(ListKind::Full, true).unwrap();
    assert_eq!(listing.models, fresh.models);
}

#[test]
fn a_registered_model_rescanned_at_start_keeps_its_registry_name() {
    // The registry is unchanged; the model's folder changed since the save, so its row is
    // made again from the registry (whose names a service does not keep between scans).
    let lib = TestLib::new();
    lib.registry(
        r#"{"version": 1, "models": [{"id": "a", "name": "Alpha", "description": "The first.",
            "files": [{"path": "w.bin", "size": 3}]}]}"#,
    )
    .file("models/a/w.bin", 3)
    .file("models/b/w.bin", 1);
    service(&lib).list(ListKind::Full, false).unwrap();
    lib.file("models/a/extra.bin", 2);
    let mut svc = service(&lib);
    assert!(svc.warm_start().is_some());
    let listing = svc.list(ListKind::Full, false).unwrap();
    let note = svc.cache_info().service_cache.persisted.unwrap();
    assert!(note.contains("1 of 2 models rescanned"), "{note}");
    let a = listing.models.iter().find(|m| m.id == "a").unwrap();
    assert_eq!((&*a.name, a.size_bytes()), ("Alpha", Some(5)));
    assert_eq!(a.description.as_deref(), Some("The first."));
}

#[test]
fn a_revalidation_that_finds_nothing_new_does_not_rewrite_the_saved_listing() {
    let lib = TestLib::new();
    for i in 0..5 {
        lib.file(&format!("models/m{i}/w.bin"), 10);
    }
    service(&lib).list(ListKind::Full, false).unwrap();
    let saved = lib.path(".cache/listing.bin");
    let before = std::fs::read(&saved).unwrap();
    let stamp = std::fs::metadata(&saved).unwrap().modified().unwrap();

    // Nothing changed: the saved listing stays as it is, byte for byte.
    let mut svc = service(&lib);
    assert!(svc.warm_start().is_some());
    let listing = svc.list(ListKind::Full, false).unwrap();
    assert_eq!(listing.models.len(), 5);
    assert!(!svc.revalidating());
    let note = svc.cache_info().service_cache.persisted.unwrap();
    assert!(note.contains("0 of 5 models rescanned"), "{note}");
    assert!(!note.contains("saved to"), "{note}");
    assert_eq!(std::fs::read(&saved).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&saved).unwrap().modified().unwrap(),
        stamp
    );

    // A change: the revalidated listing is saved.
    lib.file("models/m3/extra.bin", 5);
    let mut svc = service(&lib);
    assert!(svc.warm_start().is_some());
    let listing = svc.list(ListKind::Full, false).unwrap();
    let m3 = listing.models.iter().find(|m| m.id == "m3").unwrap();
    assert_eq!(m3.size_bytes(), Some(15));
    svc.flush_saves();
    let note = svc.cache_info().service_cache.persisted.unwrap();
    assert!(
        note.contains("1 of 5 models rescanned") && note.contains("saved to"),
        "{note}"
    );
    assert_ne!(std::fs::read(&saved).unwrap(), before);
}

#[test]
fn listings_are_saved_off_the_service_thread_newest_last_and_whole_at_drop() {
    use model_library::library::persist::Saver;
    let lib = sample();
    let listing = service(&lib).list(ListKind::Full, true).unwrap();
    fs::remove_file(persist::path(&lib.library())).unwrap();
    let stamped = |t: f64| {
        let mut l = (*listing).clone();
        l.timestamp = t;
        std::sync::Arc::new(l)
    };
    let mut saver = Saver::new(lib.library());
    assert_eq!(saver.note(), None);
    for t in [1.0, 2.0, 3.0] {
        saver.save(stamped(t));
    }
    saver.flush();
    assert!(
        saver.note().unwrap().starts_with("saved to"),
        "{:?}",
        saver.note()
    );
    assert_eq!(
        persist::load(&lib.library()).unwrap().timestamp,
        3.0,
        "the newest is on disk"
    );

    // Dropped right after a hand-over: the listing is written before the drop returns.
    saver.save(stamped(4.0));
    drop(saver);
    assert_eq!(persist::load(&lib.library()).unwrap().timestamp, 4.0);
}
