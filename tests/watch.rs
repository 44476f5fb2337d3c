//! Live freshness: file events invalidate just the models they touch, bursts settle, the
//! polling fallback notices top-level changes, and — a property test — after random file
//! activity settles, the watched listing equals a fresh full scan.

mod common;

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestLib;
use model_library::library::watch::verifier::VerifierOptions;
use model_library::library::watch::{WatchMode, WatchOption};
use model_library::library::{
    Clock, ListKind, ManualClock, ModelInfo, ModelLibraryService, ServiceOptions, SystemClock,
};
use proptest::prelude::*;

fn service(lib: &TestLib) -> ModelLibraryService {
    ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            clock: Arc::new(ManualClock::new(SystemClock.now() + 100.0)),
            persist: false,
            ..ServiceOptions::default()
        },
    )
    .unwrap()
}

fn fresh_scan(lib: &TestLib) -> Vec<Arc<ModelInfo>> {
    service(lib)
        .list(ListKind::Full, true)
        .unwrap()
        .models
        .clone()
}

/// A service that watches by itself as `watch` says (polling every 200 ms).
fn self_watching(lib: &TestLib, watch: WatchOption) -> ModelLibraryService {
    self_watching_within(lib, watch, None)
}

/// [`self_watching`] with at most `budget` folders watched by file events.
fn self_watching_within(
    lib: &TestLib,
    watch: WatchOption,
    budget: Option<usize>,
) -> ModelLibraryService {
    ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            clock: Arc::new(ManualClock::new(SystemClock.now() + 100.0)),
            persist: false,
            watch,
            verifier: VerifierOptions {
                period: Duration::from_millis(200),
                partial_period: Duration::from_millis(200),
                ..VerifierOptions::default()
            },
            watch_budget: budget,
            ..ServiceOptions::default()
        },
    )
    .unwrap()
}

/// Ticks the service until the watched listing equals a fresh scan and the service states
/// a freshness bound (it cannot while watches are still being set up), bounded.
fn settles_to_fresh(svc: &mut ModelLibraryService, lib: &TestLib) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        svc.tick();
        if svc.cached(ListKind::Full).is_none() {
            svc.list(ListKind::Full, false).map_err(|e| e.to_string())?;
        }
        let watched = svc.cached(ListKind::Full).unwrap().models.clone();
        let fresh = fresh_scan(lib);
        let bound_stated =
            svc.freshness_bound_secs().is_some() || svc.watch_mode() == WatchMode::Off;
        if watched == fresh && bound_stated {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "never settled:\nwatched {watched:#?}\nfresh {fresh:#?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ids of the watched full listing.
fn watched_ids(svc: &ModelLibraryService) -> Vec<String> {
    svc.cached(ListKind::Full)
        .unwrap()
        .models
        .iter()
        .map(|m| m.id.clone())
        .collect()
}

fn watched(lib: &TestLib) -> ModelLibraryService {
    let mut svc = service(lib);
    svc.list(ListKind::Full, false).unwrap();
    svc.start_watching();
    assert_eq!(
        svc.watch_mode(),
        WatchMode::Events,
        "inotify is expected on this machine"
    );
    svc
}

#[test]
fn a_file_added_deep_in_a_model_is_picked_up_without_a_full_rescan() {
    let lib = TestLib::new();
    lib.file("models/a/w.bin", 10).file("models/b/w.bin", 20);
    let mut svc = watched(&lib);
    let generation = svc.generation();
    let before = generation.load(std::sync::atomic::Ordering::SeqCst);
    let misses = svc.cache_info().service_cache.misses;
    lib.file("models/a/deep/er/new.bin", 5);
    settles_to_fresh(&mut svc, &lib).unwrap();
    let listing = svc.list(ListKind::Full, false).unwrap();
    let a = listing.models.iter().find(|m| m.id == "a").unwrap();
    assert_eq!(a.size_bytes(), Some(15));
    assert_eq!(
        svc.cache_info().service_cache.misses,
        misses,
        "served from the selectively updated listing, not a rescan"
    );
    assert!(generation.load(std::sync::atomic::Ordering::SeqCst) > before);
    assert_eq!(
        svc.cache_info().service_cache.watch_mode,
        "watching file events"
    );
}

#[test]
fn a_rescanned_model_keeps_its_registry_name_and_description() {
    // The registry kept between scans has no names and descriptions (the rows carry them):
    // a selective rescan must still give the registry's.
    let lib = TestLib::new();
    lib.registry(
        r#"{"version": 1, "models": [
            {"id": "a", "name": "Alpha Model", "description": "The first one.",
             "files": [{"path": "w.bin", "size": 10}]},
            {"id": "b", "name": "Beta", "files": [{"path": "w.bin", "size": 20}]}
        ]}"#,
    )
    .file("models/a/w.bin", 10)
    .file("models/b/w.bin", 20);
    let mut svc = watched(&lib);
    let misses = svc.cache_info().service_cache.misses;
    lib.file("models/a/extra.bin", 5);
    settles_to_fresh(&mut svc, &lib).unwrap();
    let listing = svc.list(ListKind::Full, false).unwrap();
    let a = listing.models.iter().find(|m| m.id == "a").unwrap();
    assert_eq!(a.size_bytes(), Some(15), "rescanned");
    assert_eq!(&*a.name, "Alpha Model");
    assert_eq!(a.description.as_deref(), Some("The first one."));
    assert_eq!(
        svc.cache_info().service_cache.misses,
        misses,
        "a selective rescan, not a full one"
    );
}

#[test]
fn folders_added_removed_and_renamed_show_up() {
    let lib = TestLib::new();
    lib.file("models/a/w", 1).file("models/b/w", 2);
    let mut svc = watched(&lib);
    lib.file("models/c/w", 3);
    settles_to_fresh(&mut svc, &lib).unwrap();
    fs::remove_dir_all(lib.path("models/a")).unwrap();
    settles_to_fresh(&mut svc, &lib).unwrap();
    fs::rename(lib.path("models/b"), lib.path("models/zz")).unwrap();
    settles_to_fresh(&mut svc, &lib).unwrap();
    let ids = watched_ids(&svc);
    assert_eq!(ids, ["c", "zz"]);
}

#[test]
fn a_folder_renamed_then_removed_at_once_leaves_no_ghost() {
    // A rename and a removal at once: no event may be left naming the old folder.
    let lib = TestLib::new();
    lib.file("models/alpha/w.bin", 1).file("models/keep/w", 1);
    let mut svc = watched(&lib);
    fs::rename(lib.path("models/alpha"), lib.path("models/eps")).unwrap();
    fs::remove_dir_all(lib.path("models/eps")).unwrap();
    settles_to_fresh(&mut svc, &lib).unwrap();
    let ids = watched_ids(&svc);
    assert_eq!(ids, ["keep"]);
}

#[test]
fn a_burst_settles_into_a_coherent_listing() {
    let lib = TestLib::new();
    lib.file("models/a/w", 1);
    let mut svc = watched(&lib);
    for i in 0..300 {
        let p = lib.path(&format!("models/a/chunk-{}", i % 7));
        fs::write(&p, vec![0u8; i]).unwrap();
        if i % 3 == 0 {
            let _ = fs::remove_file(&p);
        }
    }
    lib.file("models/a/tmp", 5);
    fs::remove_file(lib.path("models/a/tmp")).unwrap();
    settles_to_fresh(&mut svc, &lib).unwrap();
}

#[test]
fn registry_edits_invalidate_everything() {
    let lib = TestLib::new();
    lib.file("models/a/w", 1);
    let mut svc = watched(&lib);
    lib.registry(&common::registry_json(&[("a", &[("w", 1)]), ("b", &[])]));
    settles_to_fresh(&mut svc, &lib).unwrap();
    let listing = svc.cached(ListKind::Full).unwrap();
    assert!(listing.models.iter().any(|m| m.id == "b"));
}

#[test]
fn polling_notices_top_level_changes() {
    let lib = TestLib::new();
    lib.file("models/a/w", 1);
    let mut svc = service(&lib);
    svc.list(ListKind::Full, false).unwrap();
    svc.start_polling("test");
    assert!(
        svc.cache_info()
            .service_cache
            .watch_mode
            .starts_with("polling")
    );
    assert!(!svc.apply_changes(), "nothing changed yet");
    lib.file("models/b/w", 1);
    assert!(svc.apply_changes());
    let listing = svc.list(ListKind::Full, false).unwrap();
    assert_eq!(listing.models.len(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Write {
        model: usize,
        file: usize,
        size: usize,
    },
    Delete {
        model: usize,
        file: usize,
    },
    Resize {
        model: usize,
        file: usize,
        size: u64,
    },
    RemoveModel {
        model: usize,
    },
    Rename {
        from: usize,
        to: usize,
    },
    Registry {
        registered: Vec<bool>,
    },
    /// Moves a model's `sub/` folder (with whatever is in it) into another model, or, to
    /// the same model, renames it to `sub2/` and back.
    MoveSub {
        from: usize,
        to: usize,
    },
    List,
}

const MODELS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "eps"];
const FILES: [&str; 3] = ["w.bin", "sub/x.gguf", "sub/deeper/y"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..5usize, 0..3usize, 0..300usize).prop_map(|(model, file, size)| Op::Write { model, file, size }),
        2 => (0..5usize, 0..3usize).prop_map(|(model, file)| Op::Delete { model, file }),
        2 => (0..5usize, 0..3usize, 0..300u64).prop_map(|(model, file, size)| Op::Resize { model, file, size }),
        1 => (0..5usize).prop_map(|model| Op::RemoveModel { model }),
        1 => (0..5usize, 0..5usize).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => proptest::collection::vec(any::<bool>(), 5).prop_map(|registered| Op::Registry { registered }),
        1 => (0..5usize, 0..5usize).prop_map(|(from, to)| Op::MoveSub { from, to }),
        2 => Just(Op::List),
    ]
}

fn apply(lib: &TestLib, svc: &mut ModelLibraryService, op: &Op) {
    if let Op::List = op {
        svc.tick();
        svc.list(ListKind::Full, false).unwrap();
    } else {
        apply_on_disk(lib.root(), op);
    }
}

/// Applies a file operation (every op but `List`) to the library at `root`.
fn apply_on_disk(root: &std::path::Path, op: &Op) {
    let model_dir = |m: usize| root.join(format!("models/{}", MODELS[m]));
    match op {
        Op::Write { model, file, size } => {
            let p = model_dir(*model).join(FILES[*file]);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, vec![1u8; *size]).unwrap();
        }
        Op::Delete { model, file } => {
            let _ = fs::remove_file(model_dir(*model).join(FILES[*file]));
        }
        Op::Resize { model, file, size } => {
            if let Ok(f) = fs::OpenOptions::new()
                .write(true)
                .open(model_dir(*model).join(FILES[*file]))
            {
                f.set_len(*size).unwrap();
            }
        }
        Op::RemoveModel { model } => {
            let _ = fs::remove_dir_all(model_dir(*model));
        }
        Op::Rename { from, to } => {
            if model_dir(*from).exists() && !model_dir(*to).exists() {
                fs::rename(model_dir(*from), model_dir(*to)).unwrap();
            }
        }
        Op::MoveSub { from, to } => {
            let (a, b) = if from == to {
                let m = model_dir(*from);
                if m.join("sub").exists() {
                    (m.join("sub"), m.join("sub2"))
                } else {
                    (m.join("sub2"), m.join("sub"))
                }
            } else {
                (model_dir(*from).join("sub"), model_dir(*to).join("sub"))
            };
            if a.is_dir() && b.parent().unwrap().is_dir() && !b.exists() {
                fs::rename(a, b).unwrap();
            }
        }
        Op::Registry { registered } => {
            let entries: Vec<(&str, &[(&str, u64)])> = MODELS
                .iter()
                .zip(registered)
                .filter(|(_, r)| **r)
                .map(|(m, _)| (*m, &[("w.bin", 100u64)][..]))
                .collect();
            fs::write(
                root.join("model_registry.json"),
                common::registry_json(&entries),
            )
            .unwrap();
        }
        Op::List => {}
    }
}

proptest! {
    // 8 cases in CI; `WATCH_CASES=200 cargo test --test watch` for a deeper run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("WATCH_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(8),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn after_activity_settles_the_watched_listing_equals_a_fresh_scan(
        batches in proptest::collection::vec(proptest::collection::vec(op(), 1..8), 1..4)
    ) {
        let lib = TestLib::new();
        lib.file("models/alpha/w.bin", 100);
        let mut svc = watched(&lib);
        for batch in &batches {
            for op in batch {
                apply(&lib, &mut svc, op);
            }
            let settled = settles_to_fresh(&mut svc, &lib);
            prop_assert!(settled.is_ok(), "{}", settled.unwrap_err());
        }
    }

    /// The service watching by itself, in event mode, forced polling or the hybrid of
    /// both: changes made
    /// during the first scan (from another thread, while the watches are still being set
    /// up), right after the first answer, and later between listings — nested files and
    /// in-place rewrites included — are all in the listing once activity settles and the
    /// stated bound has passed.
    #[test]
    fn from_the_first_answer_on_every_change_shows_in_every_mode(
        mode in 0..3u8,
        during_first_scan in proptest::collection::vec(op(), 0..6),
        batches in proptest::collection::vec(proptest::collection::vec(op(), 1..6), 1..3)
    ) {
        let lib = TestLib::new();
        for m in MODELS.iter().take(3) {
            lib.file(&format!("models/{m}/w.bin"), 100);
            lib.file(&format!("models/{m}/sub/x.gguf"), 10);
        }
        // Events for every folder; polling only; or the hybrid: a budget that covers the
        // top level and one model, so the rest is polled beside the events.
        let (option, budget) = match mode {
            0 => (WatchOption::Auto, None),
            1 => (WatchOption::Poll, None),
            _ => (WatchOption::Auto, Some(6)),
        };
        let mut svc = self_watching_within(&lib, option, budget);
        let writer = {
            let root = lib.root().to_path_buf();
            let ops = during_first_scan.clone();
            std::thread::spawn(move || {
                for op in &ops {
                    apply_on_disk(&root, op);
                }
            })
        };
        svc.list(ListKind::Full, false).unwrap();
        writer.join().unwrap();
        for batch in &batches {
            for op in batch {
                apply(&lib, &mut svc, op);
            }
            let settled = settles_to_fresh(&mut svc, &lib);
            prop_assert!(settled.is_ok(), "{}", settled.unwrap_err());
        }
        let info = svc.cache_info().service_cache;
        prop_assert!(info.freshness_bound_seconds.is_some(), "{info:?}");
    }
}

#[test]
fn a_watched_store_shows_a_new_model_without_a_full_rescan() {
    use model_library::library::sources::{SourceConfig, SourceKind};
    let lib = TestLib::new();
    lib.file("models/mine/w", 1);
    let store = tempfile::tempdir().unwrap();
    fs::create_dir_all(store.path().join("acme/old-model")).unwrap();
    fs::write(store.path().join("acme/old-model/m.gguf"), vec![0u8; 10]).unwrap();
    let mut svc = ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            clock: Arc::new(ManualClock::new(SystemClock.now() + 100.0)),
            persist: false,
            sources: vec![SourceConfig::new(
                SourceKind::LmStudio,
                store.path().to_path_buf(),
            )],
            ..ServiceOptions::default()
        },
    )
    .unwrap();
    let first = svc.list(ListKind::Full, false).unwrap();
    let ids = |l: &model_library::library::Listing| -> Vec<String> {
        l.models.iter().map(|m| m.id.clone()).collect()
    };
    assert_eq!(ids(&first), ["mine", "lmstudio/acme/old-model"]);
    svc.start_watching();
    let misses = svc.cache_info().service_cache.misses;

    fs::create_dir_all(store.path().join("acme/new-model")).unwrap();
    fs::write(store.path().join("acme/new-model/n.gguf"), vec![0u8; 20]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        svc.apply_changes();
        let listing = svc.list(ListKind::Full, false).unwrap();
        if ids(&listing).len() == 3 {
            assert_eq!(
                ids(&listing),
                ["mine", "lmstudio/acme/new-model", "lmstudio/acme/old-model"]
            );
            break;
        }
        assert!(Instant::now() < deadline, "the store change never showed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        svc.cache_info().service_cache.misses,
        misses,
        "no full rescan"
    );
}

/// A store whose scanner reads outside its folder is watched there too: a LoRA added to a
/// folder ComfyUI's `extra_model_paths.yaml` names shows without a rescan of the library.
#[test]
fn a_comfyui_extra_folder_is_watched() {
    use model_library::library::sources::{SourceConfig, SourceKind};
    let lib = TestLib::new();
    lib.file("models/mine/w", 1);
    let tmp = tempfile::tempdir().unwrap();
    let comfy = tmp.path().join("ComfyUI");
    let extra = tmp.path().join("shared-loras");
    fs::create_dir_all(comfy.join("models/loras")).unwrap();
    fs::create_dir_all(&extra).unwrap();
    fs::write(
        comfy.join("extra_model_paths.yaml"),
        format!("mine:\n  loras: {}\n", extra.display()),
    )
    .unwrap();
    let mut svc = ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            clock: Arc::new(ManualClock::new(SystemClock.now() + 100.0)),
            persist: false,
            sources: vec![SourceConfig::new(SourceKind::ComfyUi, comfy.clone())],
            ..ServiceOptions::default()
        },
    )
    .unwrap();
    assert_eq!(svc.list(ListKind::Full, false).unwrap().models.len(), 1);
    svc.start_watching();
    let misses = svc.cache_info().service_cache.misses;
    fs::write(extra.join("style.safetensors"), vec![0u8; 20]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        svc.apply_changes();
        let listing = svc.list(ListKind::Full, false).unwrap();
        if listing.models.len() == 2 {
            assert!(
                listing
                    .models
                    .iter()
                    .any(|m| m.id == "comfyui/mine/loras/style.safetensors"),
                "{:?}",
                listing.models
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the extra folder's change never showed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        svc.cache_info().service_cache.misses,
        misses,
        "no full rescan"
    );
}

#[test]
fn a_file_written_right_after_the_first_answer_shows_without_a_refresh() {
    let lib = TestLib::new();
    lib.file("models/m/shards/part-001.bin", 1000);
    let mut svc = self_watching(&lib, WatchOption::Auto);
    let first = svc.list(ListKind::Full, false).unwrap();
    assert_eq!(first.models[0].size_bytes(), Some(1000));
    // Written as soon as the first answer is in, deep in the model folder.
    lib.file("models/m/shards/added-later.bin", 12_345);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        svc.tick();
        let listing = svc.list(ListKind::Full, false).unwrap();
        if listing.models[0].size_bytes() == Some(13_345) {
            break;
        }
        assert!(Instant::now() < deadline, "the new file never showed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let info = svc.cache_info().service_cache;
    assert_eq!(
        info.misses, 1,
        "no refresh and no foreground rescan was needed"
    );
    // Once the watches are all set up and the scan after them is in, the bound is stated.
    let deadline = Instant::now() + Duration::from_secs(10);
    while svc
        .cache_info()
        .service_cache
        .freshness_bound_seconds
        .is_none()
    {
        assert!(Instant::now() < deadline, "no bound was ever stated");
        svc.tick();
        std::thread::sleep(Duration::from_millis(10));
    }
    let info = svc.cache_info().service_cache;
    assert_eq!(info.watch_mode, "watching file events");
    assert_eq!(info.freshness_bound_seconds, Some(1.0));
    assert!(info.last_verified.is_some());
}

#[test]
fn requests_are_answered_while_watches_are_set_up() {
    let lib = TestLib::new();
    lib.file("models/a/w.bin", 10).file("models/b/w.bin", 20);
    // The set-up waits at its very start until the test lets it go.
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let hook: model_library::library::watch::SetupHook = Arc::new(move || {
        let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(30));
    });
    let svc = ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            clock: Arc::new(ManualClock::new(SystemClock.now() + 100.0)),
            persist: false,
            watch: WatchOption::Auto,
            watch_setup_hook: Some(model_library::library::WatchSetupHook(hook)),
            ..ServiceOptions::default()
        },
    )
    .unwrap();
    // Listing on another thread: it must answer while the set-up is held (bounded wait).
    let (answer, answered) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut svc = svc;
        let listing = svc.list(ListKind::Full, false).map(|l| l.models.len());
        let info = svc.cache_info().service_cache;
        answer.send((listing, info)).unwrap();
        svc
    });
    let (listing, info) = answered
        .recv_timeout(Duration::from_secs(10))
        .expect("the listing was answered while the watches were being set up");
    assert_eq!(listing.unwrap(), 2);
    assert_eq!(info.watch_mode, "starting to watch file events");
    assert_eq!(
        info.freshness_bound_seconds, None,
        "no bound is claimed yet"
    );
    assert!(
        info.freshness.contains("being set up"),
        "{}",
        info.freshness
    );
    let mut svc = worker.join().unwrap();

    // A change while nothing is watched yet is still found: by the scan after the set-up.
    lib.file("models/a/deep/new.bin", 7);
    release.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        svc.tick();
        let listing = svc.list(ListKind::Full, false).unwrap();
        let a = listing.models.iter().find(|m| m.id == "a").unwrap();
        if a.size_bytes() == Some(17) && svc.freshness_bound_secs().is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change made during set-up never showed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(svc.watch_mode(), WatchMode::Events);
}

#[test]
fn polling_sees_nested_changes_and_in_place_rewrites_within_the_stated_bound() {
    let lib = TestLib::new();
    lib.registry(&common::registry_json(&[(
        "m",
        &[("shards/part-001.bin", 1000), ("w.bin", 10)],
    )]));
    lib.file("models/m/shards/part-001.bin", 1000)
        .file("models/m/w.bin", 10)
        .file("models/other/sub/deeper/x.bin", 5);
    let mut svc = self_watching(&lib, WatchOption::Poll);
    svc.list(ListKind::Full, false).unwrap();
    let info = svc.cache_info().service_cache;
    assert_eq!(
        info.watch_mode,
        "polling modification times (asked for with --watch poll)"
    );
    assert_eq!(
        info.freshness_bound_seconds,
        Some(2.0),
        "200 ms period, plus a second"
    );
    assert!(info.freshness.contains("within 2 s"), "{}", info.freshness);

    // An in-place truncation deep in one model, a new file deep in another, and a rename
    // of a nested file: none of them moves a top-level stamp.
    fs::OpenOptions::new()
        .write(true)
        .open(lib.path("models/m/shards/part-001.bin"))
        .unwrap()
        .set_len(12_345)
        .unwrap();
    lib.file("models/other/sub/deeper/new.bin", 3);
    fs::rename(
        lib.path("models/other/sub/deeper/x.bin"),
        lib.path("models/other/sub/x-renamed.bin"),
    )
    .unwrap();
    settles_to_fresh(&mut svc, &lib).unwrap();
    let listing = svc.list(ListKind::Full, false).unwrap();
    let m = listing.models.iter().find(|m| m.id == "m").unwrap();
    assert_eq!(m.status, model_library::library::ModelStatus::Error);
    assert!(m.error.as_deref().unwrap().contains("size mismatch"));
    let other = listing.models.iter().find(|m| m.id == "other").unwrap();
    assert_eq!(other.size_bytes(), Some(8));
    assert!(svc.cache_info().service_cache.last_verified.is_some());
}

#[test]
fn without_watching_the_listing_says_what_it_cannot_know() {
    let lib = TestLib::new();
    lib.file("models/a/w.bin", 1);
    let mut svc = self_watching(&lib, WatchOption::Off);
    svc.list(ListKind::Full, false).unwrap();
    let info = svc.cache_info().service_cache;
    assert_eq!(info.watch_mode, "not watching");
    assert_eq!(info.freshness_bound_seconds, None);
    assert!(
        info.freshness
            .starts_with("not watching: changes on disk show at the next refresh"),
        "{}",
        info.freshness
    );
}

/// A library larger than the watch budget: the models that fit are watched, the rest are
/// polled beside the events, and a change anywhere — in a watched model, in a polled one,
/// in a model folder that appears once the budget is spent — shows within the bound the
/// service states for the two together.
#[test]
fn beyond_the_watch_limit_models_are_polled_beside_the_events() {
    let lib = TestLib::new();
    fs::create_dir_all(lib.path(".cache/imports")).unwrap();
    fs::create_dir_all(lib.path(".downloads")).unwrap();
    for m in ["a", "b", "c", "d"] {
        lib.file(&format!("models/{m}/w.bin"), 10)
            .file(&format!("models/{m}/sub/x.bin"), 20);
    }
    // The top level costs 5 watches (the library, models/, .downloads/, .cache/ and its
    // imports/); each model 2: a and b fit, c and d do not.
    let mut svc = self_watching_within(&lib, WatchOption::Auto, Some(9));
    svc.list(ListKind::Full, false).unwrap();
    settles_to_fresh(&mut svc, &lib).unwrap();
    assert_eq!(
        svc.watch_mode(),
        WatchMode::Hybrid {
            polled: 2,
            reason: model_library::library::watch::LIMIT_REASON.into()
        }
    );
    let info = svc.cache_info().service_cache;
    assert!(
        info.watch_mode
            .starts_with("watching file events; polling modification times of 2 model folders"),
        "{}",
        info.watch_mode
    );
    assert_eq!(
        info.freshness_bound_seconds,
        Some(2.0),
        "200 ms period, plus a second"
    );
    assert!(info.freshness.contains("within 2 s"), "{}", info.freshness);

    // Nested changes in a watched model and in a polled one (an in-place rewrite).
    lib.file("models/a/sub/new.bin", 7);
    fs::OpenOptions::new()
        .write(true)
        .open(lib.path("models/d/sub/x.bin"))
        .unwrap()
        .set_len(12_345)
        .unwrap();
    settles_to_fresh(&mut svc, &lib).unwrap();
    let sizes = |svc: &ModelLibraryService, id: &str| {
        svc.cached(ListKind::Full)
            .unwrap()
            .models
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.size_bytes())
    };
    assert_eq!(sizes(&svc, "a"), Some(37));
    assert_eq!(sizes(&svc, "d"), Some(12_355));

    // A model folder that appears once the budget is spent is polled, and a file written
    // deep inside it later still shows.
    lib.file("models/e/w.bin", 1);
    settles_to_fresh(&mut svc, &lib).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(svc.watch_mode(), WatchMode::Hybrid { polled: 3, .. }) {
        assert!(Instant::now() < deadline, "{:?}", svc.watch_mode());
        svc.tick();
        std::thread::sleep(Duration::from_millis(20));
    }
    lib.file("models/e/deeper/still/x.bin", 5);
    settles_to_fresh(&mut svc, &lib).unwrap();
    assert_eq!(sizes(&svc, "e"), Some(6));
}

/// With `--watch events`, a library beyond the budget is not half watched: nothing is,
/// and the mode says why.
#[test]
fn events_only_beyond_the_watch_limit_says_nothing_is_watched() {
    let lib = TestLib::new();
    for m in ["a", "b", "c"] {
        lib.file(&format!("models/{m}/sub/x.bin"), 1);
    }
    let mut svc = self_watching_within(&lib, WatchOption::Events, Some(4));
    svc.list(ListKind::Full, false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while svc.watch_mode() == WatchMode::Starting {
        assert!(Instant::now() < deadline);
        svc.tick();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(svc.watch_mode(), WatchMode::Off);
    let info = svc.cache_info().service_cache;
    assert!(
        info.watch_mode.contains("file events failed")
            && info.watch_mode.contains("max_user_watches"),
        "{}",
        info.watch_mode
    );
    assert_eq!(info.freshness_bound_seconds, None);
}

/// An event on `models/` itself (here a change of its permissions) re-places only folders
/// not watched yet: a library that fits its budget exactly stays wholly on file events.
#[test]
fn an_event_on_the_models_folder_does_not_spend_the_budget_twice() {
    use std::os::unix::fs::PermissionsExt;
    let lib = TestLib::new();
    for m in ["a", "b"] {
        lib.file(&format!("models/{m}/sub/x.bin"), 1);
    }
    // The library and models/ (1 each), a and b (2 each); no .cache/ or .downloads/ yet.
    let mut svc = self_watching_within(&lib, WatchOption::Auto, Some(6));
    svc.list(ListKind::Full, false).unwrap();
    settles_to_fresh(&mut svc, &lib).unwrap();
    assert_eq!(svc.watch_mode(), WatchMode::Events);
    for mode in [0o700, 0o755] {
        fs::set_permissions(lib.path("models"), fs::Permissions::from_mode(mode)).unwrap();
        lib.file("models/a/sub/y.bin", mode as usize);
        settles_to_fresh(&mut svc, &lib).unwrap();
    }
    assert_eq!(svc.watch_mode(), WatchMode::Events);
}

/// Every folder has a watch of its own, so folders made, moved or renamed inside a model
/// after the set-up must get theirs as they appear: a file written into one later, with
/// nothing else happening, still shows.
#[test]
fn folders_made_or_moved_later_inside_models_are_watched_too() {
    let lib = TestLib::new();
    lib.file("models/a/w.bin", 1).file("models/b/w.bin", 1);
    let mut svc = self_watching(&lib, WatchOption::Auto);
    svc.list(ListKind::Full, false).unwrap();
    settles_to_fresh(&mut svc, &lib).unwrap();
    assert_eq!(svc.watch_mode(), WatchMode::Events);

    let steps: [(&str, &dyn Fn()); 5] = [
        ("a tree made at once", &|| {
            fs::create_dir_all(lib.path("models/a/x/y/z")).unwrap()
        }),
        ("a file in its deepest folder", &|| {
            lib.file("models/a/x/y/z/f.bin", 10);
        }),
        ("the tree renamed", &|| {
            fs::rename(lib.path("models/a/x"), lib.path("models/a/moved")).unwrap()
        }),
        ("a file in the renamed tree", &|| {
            lib.file("models/a/moved/y/z/g.bin", 20);
        }),
        (
            "the tree moved to another model, then a file in it",
            &|| {
                fs::rename(lib.path("models/a/moved"), lib.path("models/b/moved")).unwrap();
            },
        ),
    ];
    for (what, step) in steps {
        step();
        settles_to_fresh(&mut svc, &lib).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    lib.file("models/b/moved/y/z/h.bin", 30);
    settles_to_fresh(&mut svc, &lib).unwrap();
    let b = svc
        .cached(ListKind::Full)
        .unwrap()
        .models
        .iter()
        .find(|m| m.id == "b")
        .and_then(|m| m.size_bytes());
    assert_eq!(b, Some(61));
    assert_eq!(svc.watch_mode(), WatchMode::Events);
}
