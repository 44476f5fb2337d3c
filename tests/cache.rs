//! The two cache levels: TTL with a manual clock, each invalidation trigger, racy
//! timestamps, view keys, counters, and consistency under concurrent refreshes.

mod common;

use std::fs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use common::{TestLib, registry_json};
use model_library::library::{Clock, ListKind, ListQuery, ModelStatus};

fn lib_with_two_models() -> TestLib {
    let lib = TestLib::new();
    lib.registry(&registry_json(&[("alpha", &[("w.bin", 10)])]))
        .file("models/alpha/w.bin", 10)
        .file("models/beta/x.gguf", 5);
    lib
}

#[test]
fn second_listing_is_a_hit_sharing_the_same_listing() {
    let lib = lib_with_two_models();
    let (mut svc, _clock) = lib.service();
    let a = svc.list(ListKind::Full, false).unwrap();
    let b = svc.list(ListKind::Full, false).unwrap();
    assert!(
        Arc::ptr_eq(&a, &b),
        "a hit hands out the same shared listing"
    );
    let info = svc.cache_info().service_cache;
    assert_eq!((info.hits, info.misses), (1, 1));
    assert!(info.cache_valid);
    assert_eq!(info.cached_model_count, 2);
    assert_eq!(info.cache_keys, vec!["all"]);
}

#[test]
fn ttl_expiry_with_a_manual_clock() {
    let lib = lib_with_two_models();
    let (mut svc, clock) = lib.service();
    svc.set_ttl(60).unwrap();
    let first = svc.list(ListKind::Full, false).unwrap();
    clock.advance(59.9);
    assert!(Arc::ptr_eq(
        &first,
        &svc.list(ListKind::Full, false).unwrap()
    ));
    assert!(svc.cache_info().service_cache.cache_valid);
    clock.advance(0.1);
    let info = svc.cache_info().service_cache;
    assert!(!info.cache_valid, "age == TTL is expired");
    assert!(info.stale_reason.unwrap().contains("TTL expired"));
    let second = svc.list(ListKind::Full, false).unwrap();
    assert!(!Arc::ptr_eq(&first, &second), "expired listing is rebuilt");
    let info = svc.cache_info().service_cache;
    assert_eq!((info.hits, info.misses), (1, 2));
    assert!((info.cache_age_seconds.unwrap()).abs() < 1e-9);
}

#[test]
fn clock_jumping_backwards_expires_the_cache() {
    let lib = lib_with_two_models();
    let (mut svc, clock) = lib.service();
    let first = svc.list(ListKind::Full, false).unwrap();
    clock.advance(-30.0);
    assert!(!Arc::ptr_eq(
        &first,
        &svc.list(ListKind::Full, false).unwrap()
    ));
}

#[test]
fn ttl_range_is_enforced() {
    let lib = TestLib::new();
    let (mut svc, _) = lib.service();
    for bad in [29, 3601, 0, -5] {
        let err = svc.set_ttl(bad).unwrap_err().to_string();
        assert!(err.contains("30..=3600"), "{err}");
        assert_eq!(svc.ttl_secs(), 300, "a refused TTL changes nothing");
    }
    assert_eq!(svc.set_ttl(30).unwrap(), 30);
    assert_eq!(svc.set_ttl(3600).unwrap(), 3600);
    assert_eq!(svc.cache_info().service_cache.cache_ttl_seconds, 3600);
}

#[test]
fn manual_refresh_rebuilds_both_keys_and_clears_views() {
    let lib = lib_with_two_models();
    let (mut svc, _) = lib.service();
    svc.list_view(&ListQuery::default(), false).unwrap();
    lib.file("models/gamma/y.bin", 1);
    let info = svc.refresh().unwrap();
    assert!(info.cache_refreshed);
    assert_eq!((info.old_model_count, info.new_model_count), (2, 3));
    assert_eq!(info.cache_keys, vec!["all", "fast"]);
    let ci = svc.cache_info();
    assert_eq!(
        ci.api_cache.api_cache_entries, 0,
        "refresh clears the view cache"
    );
    assert!(ci.service_cache.cache_valid);
}

#[test]
fn force_refresh_bypasses_the_cache() {
    let lib = lib_with_two_models();
    let (mut svc, _) = lib.service();
    let a = svc.list(ListKind::Full, false).unwrap();
    let b = svc.list(ListKind::Full, true).unwrap();
    assert!(!Arc::ptr_eq(&a, &b));
    let r = svc.list_view(&ListQuery::default(), true).unwrap();
    assert!(!r.cache_hit);
}

#[test]
fn registry_change_invalidates() {
    let lib = lib_with_two_models();
    let (mut svc, _) = lib.service();
    let first = svc.list(ListKind::Full, false).unwrap();
    lib.registry(&registry_json(&[
        ("alpha", &[("w.bin", 10)]),
        ("delta", &[]),
    ]));
    let info = svc.cache_info().service_cache;
    assert_eq!(info.stale_reason.as_deref(), Some("registry changed"));
    let second = svc.list(ListKind::Full, false).unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(second.models.len(), 3);
}

#[test]
fn registry_deleted_invalidates() {
    let lib = lib_with_two_models();
    let (mut svc, _) = lib.service();
    svc.list(ListKind::Full, false).unwrap();
    fs::remove_file(lib.path("model_registry.json")).unwrap();
    assert_eq!(
        svc.cache_info().service_cache.stale_reason.as_deref(),
        Some("registry changed")
    );
    let listing = svc.list(ListKind::Full, false).unwrap();
    assert!(listing.models.iter().all(|m| !m.registered));
}

#[test]
fn new_model_folder_invalidates() {
    let lib = lib_with_two_models();
    let (mut svc, _) = lib.service();
    svc.list(ListKind::Fast, false).unwrap();
    fs::create_dir(lib.path("models/gamma")).unwrap();
    assert_eq!(
        svc.cache_info().service_cache.stale_reason.as_deref(),
        Some("models folder changed")
    );
    let listing = svc.list(ListKind::Fast, false).unwrap();
    assert!(listing.models.iter().any(|m| m.id == "gamma"));
}

#[test]
fn partial_download_folder_invalidates() {
    let lib = lib_with_two_models();
    fs::create_dir(lib.path(".downloads")).unwrap();
    let (mut svc, _) = lib.service();
    svc.list(ListKind::Full, false).unwrap();
    lib.file(".downloads/alpha/w.bin.part", 3);
    let listing = svc.list(ListKind::Full, false).unwrap();
    let alpha = listing.models.iter().find(|m| m.id == "alpha").unwrap();
    assert_eq!(alpha.status, ModelStatus::Partial);
}

#[test]
fn download_start_marks_downloading_and_clears_views_finish_invalidates() {
    let lib = lib_with_two_models();
    let (mut svc, _) = lib.service();
    let q = ListQuery::default();
    svc.list_view(&q, false).unwrap();
    svc.download_started("alpha").unwrap();
    assert_eq!(svc.cache_info().api_cache.api_cache_entries, 0);
    let r = svc.list_view(&q, false).unwrap();
    assert!(!r.cache_hit);
    let alpha = r.view.iter().find(|m| m.id == "alpha").unwrap();
    assert_eq!(alpha.status, ModelStatus::Downloading);
    let misses_before = svc.cache_info().service_cache.misses;
    assert!(svc.download_started("../x").is_err(), "hostile id refused");

    svc.download_finished("alpha");
    let info = svc.cache_info().service_cache;
    assert!(!info.cache_valid);
    assert_eq!(
        info.stale_reason.as_deref(),
        Some("invalidated by download of alpha")
    );
    let r = svc.list_view(&q, false).unwrap();
    assert_eq!(svc.cache_info().service_cache.misses, misses_before + 1);
    let alpha = r.view.iter().find(|m| m.id == "alpha").unwrap();
    assert_eq!(alpha.status, ModelStatus::Downloaded);
}

#[test]
fn delete_invalidates_both_levels() {
    let lib = lib_with_two_models();
    let (mut svc, _) = lib.service();
    svc.list_view(&ListQuery::default(), false).unwrap();
    svc.list(ListKind::Fast, false).unwrap();
    svc.model_deleted("beta");
    let info = svc.cache_info();
    assert!(info.service_cache.cache_keys.is_empty());
    assert_eq!(info.api_cache.api_cache_entries, 0);
    assert_eq!(
        info.service_cache.stale_reason.as_deref(),
        Some("invalidated by delete of beta")
    );
}

#[test]
fn racy_timestamp_is_treated_as_changed() {
    let lib = lib_with_two_models();
    let (mut svc, clock) = lib.service();
    // The registry is written in the same second the scan starts: a second write within
    // that second could keep the same mtime on a coarse file system.
    let now = clock.now();
    let racy = UNIX_EPOCH + Duration::from_secs_f64(now.floor() + 0.25);
    lib.set_mtime("model_registry.json", racy);
    let first = svc.list(ListKind::Full, false).unwrap();
    let info = svc.cache_info().service_cache;
    assert!(!info.cache_valid);
    assert_eq!(
        info.stale_reason.as_deref(),
        Some("changed during the last scan")
    );
    let second = svc.list(ListKind::Full, false).unwrap();
    assert!(!Arc::ptr_eq(&first, &second), "racy listing is not served");

    // Once the clock is past that second, the new scan is trustworthy.
    clock.advance(2.0);
    let third = svc.list(ListKind::Full, false).unwrap();
    assert!(Arc::ptr_eq(
        &third,
        &svc.list(ListKind::Full, false).unwrap()
    ));
}

/// A mtime older than the scan start is not racy: the control case of the test above.
#[test]
fn old_timestamp_is_not_racy() {
    let lib = lib_with_two_models();
    let (mut svc, clock) = lib.service();
    let old = UNIX_EPOCH + Duration::from_secs_f64(clock.now().floor() - 1.0);
    lib.set_mtime("model_registry.json", old);
    let first = svc.list(ListKind::Full, false).unwrap();
    assert!(Arc::ptr_eq(
        &first,
        &svc.list(ListKind::Full, false).unwrap()
    ));
}

#[test]
fn view_keys_counters_and_filters() {
    let lib = TestLib::new();
    lib.registry(
        r#"{"version":1,"models":[
        {"id":"a","provider":"huggingface","capabilities":["chat","text-generation"]},
        {"id":"b","provider":"ollama","capabilities":["embedding"]},
        {"id":"c","provider":"HuggingFace","capabilities":["Chat"]}]}"#,
    )
    .file("models/a/f", 1)
    .file("models/d/f", 1);
    let (mut svc, _) = lib.service();

    let all = ListQuery::default();
    let hf = ListQuery {
        provider: Some("huggingface".into()),
        ..Default::default()
    };
    let chat_avail = ListQuery {
        status: Some(ModelStatus::Available),
        capability: Some("chat".into()),
        ..Default::default()
    };
    let quick = ListQuery {
        quick: true,
        ..Default::default()
    };
    let ids = |r: &model_library::library::ViewResult| -> Vec<String> {
        r.view.iter().map(|m| m.id.clone()).collect()
    };

    let r = svc.list_view(&all, false).unwrap();
    assert_eq!(
        (ids(&r), r.cache_hit),
        (
            vec!["a", "b", "c", "d"]
                .into_iter()
                .map(String::from)
                .collect(),
            false
        )
    );
    let r = svc.list_view(&hf, false).unwrap();
    assert_eq!(
        ids(&r),
        vec!["a", "c"],
        "provider matches case-insensitively"
    );
    let r = svc.list_view(&chat_avail, false).unwrap();
    assert_eq!(ids(&r), vec!["c"]);
    let r = svc.list_view(&quick, false).unwrap();
    assert!(r.view.iter().all(|m| m.size_bytes().is_none()));
    let r = svc.list_view(&hf, false).unwrap();
    assert!(r.cache_hit);

    let info = svc.cache_info();
    assert_eq!(
        info.api_cache.api_cache_keys,
        vec![
            "quick=false|provider=None|status=None|capability=None",
            "quick=false|provider=None|status=available|capability=chat",
            "quick=false|provider=huggingface|status=None|capability=None",
            "quick=true|provider=None|status=None|capability=None",
        ]
    );
    assert_eq!(info.api_cache.api_cache_entries, 4);
    assert_eq!((info.api_cache.hits, info.api_cache.misses), (1, 4));
    assert_eq!(info.api_cache.hit_rate, Some(0.2));
    // Service level: one full miss, one fast miss, three full hits.
    assert_eq!((info.service_cache.hits, info.service_cache.misses), (3, 2));
    assert_eq!(info.service_cache.cache_keys, vec!["all", "fast"]);
}

#[test]
fn error_keeps_last_good_listing_cached_but_not_served() {
    let lib = lib_with_two_models();
    let (mut svc, _) = lib.service();
    svc.list(ListKind::Full, false).unwrap();
    lib.registry("{\n  \"version\": 1,\n  \"models\": [\n    {\"id\": \"a\",}\n  ]\n}");
    let err = svc.list(ListKind::Full, false).unwrap_err().to_string();
    assert!(
        err.contains("model_registry.json") && err.contains("line 4"),
        "{err}"
    );
    let info = svc.cache_info().service_cache;
    assert!(!info.cache_valid);
    assert_eq!(info.cached_model_count, 2, "last good listing kept");
    assert!(info.last_error.unwrap().contains("line 4"));
    assert_eq!(svc.cached(ListKind::Full).unwrap().models.len(), 2);
    // The corrupt file was not rewritten.
    assert!(
        fs::read_to_string(lib.path("model_registry.json"))
            .unwrap()
            .contains("\"a\",}")
    );
}

#[test]
fn two_threads_list_while_a_third_refreshes() {
    let lib = TestLib::new();
    for i in 0..200 {
        lib.file(&format!("models/m{i:03}/w.bin"), i % 7 + 1);
    }
    let (svc, _) = lib.service();
    let handle = svc.snapshot_handle();
    let svc = Arc::new(Mutex::new(svc));
    let expected_total: u64 = (0..200).map(|i| (i % 7 + 1) as u64).sum();

    std::thread::scope(|s| {
        let refresher = {
            let svc = Arc::clone(&svc);
            s.spawn(move || {
                for _ in 0..20 {
                    svc.lock().unwrap().refresh().unwrap();
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let svc = Arc::clone(&svc);
                let handle = handle.clone();
                s.spawn(move || {
                    for _ in 0..50 {
                        let listing = svc.lock().unwrap().list(ListKind::Full, false).unwrap();
                        assert_eq!(listing.models.len(), 200);
                        let total: u64 =
                            listing.models.iter().map(|m| m.size_bytes().unwrap()).sum();
                        assert_eq!(total, expected_total);
                        if let Some(latest) = handle.latest() {
                            assert_eq!(latest.models.len(), 200, "published snapshots are whole");
                        }
                    }
                })
            })
            .collect();
        refresher.join().unwrap();
        for r in readers {
            r.join().unwrap();
        }
    });
}

#[test]
fn service_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<model_library::library::ModelLibraryService>();
}

/// A quick listing cannot see a file of the wrong size, so a model the full listing found
/// `error` keeps that status (and its reason) in quick listings while its folder is
/// unchanged; with no full listing it is `downloaded` (the quick listing's best).
#[test]
fn quick_listings_keep_what_the_full_listing_found_wrong() {
    let lib = TestLib::new();
    lib.registry(&registry_json(&[("short", &[("w.bin", 100)])]))
        .file("models/short/w.bin", 10);
    let (mut svc, _clock) = lib.service();
    let quick = |svc: &mut model_library::library::ModelLibraryService| {
        let l = svc.list(ListKind::Fast, true).unwrap();
        let m = l.models.iter().find(|m| m.id == "short").unwrap().clone();
        (m.status, m.error.clone())
    };
    assert_eq!(
        quick(&mut svc).0,
        ModelStatus::Downloaded,
        "nothing known yet"
    );
    let full = svc.list(ListKind::Full, false).unwrap();
    let m = full.models.iter().find(|m| m.id == "short").unwrap();
    assert_eq!(m.status, ModelStatus::Error);
    let (status, error) = quick(&mut svc);
    assert_eq!(status, ModelStatus::Error);
    assert_eq!(error, m.error);

    // The folder changed since the full listing looked: the quick listing cannot know.
    let later = std::time::SystemTime::now() + Duration::from_secs(10);
    lib.set_mtime("models/short", later);
    assert_eq!(quick(&mut svc).0, ModelStatus::Downloaded);
}

#[test]
fn a_rescan_keeps_the_rows_it_finds_unchanged_and_replaces_the_others() {
    let lib = lib_with_two_models();
    let (mut svc, _clock) = lib.service();
    let first = svc.list(ListKind::Full, false).unwrap();
    let find = |l: &model_library::library::Listing, id: &str| {
        Arc::clone(l.models.iter().find(|m| m.id == id).unwrap())
    };
    // beta changes size; alpha does not.
    lib.file("models/beta/x.gguf", 7);
    let second = svc.list(ListKind::Full, true).unwrap();
    assert!(
        !Arc::ptr_eq(&first, &second),
        "a forced refresh scans again"
    );
    assert!(
        Arc::ptr_eq(&find(&first, "alpha"), &find(&second, "alpha")),
        "an unchanged model keeps its row (one copy for both listings)"
    );
    assert!(!Arc::ptr_eq(&find(&first, "beta"), &find(&second, "beta")));
    assert_eq!(find(&second, "beta").size_bytes(), Some(7));
    // A new model folder: the others still share their rows, the new one is listed.
    lib.file("models/gamma/y.bin", 3);
    let third = svc.list(ListKind::Full, true).unwrap();
    assert_eq!(third.models.len(), 3);
    for id in ["alpha", "beta"] {
        assert!(Arc::ptr_eq(&find(&second, id), &find(&third, id)), "{id}");
    }
}
