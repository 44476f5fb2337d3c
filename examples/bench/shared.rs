//! The shared cache tier (issue #17) on a real `redis-server` started here: B's first
//! listing taken from Redis after A's scan, against B scanning for itself; a delete on A
//! until it is gone from B's listing; cached listings per second with and without the tier.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model_library::library::{
    Clock, DeleteMode, Library, ListKind, ListQuery, ManualClock, ModelLibraryService,
    ServiceOptions, SystemClock,
};

use model_library::fixtures::RedisServer;

use super::{fmt, median};

/// A `redis-server` on a free port (kept until dropped) and its URL.
fn start_redis() -> ((RedisServer, tempfile::TempDir), String) {
    let dir = tempfile::tempdir().unwrap();
    let server =
        RedisServer::start(dir.path()).expect("redis-server (apt-get install redis-server)");
    let url = server.url();
    ((server, dir), url)
}

fn instance(root: &Path, redis: Option<&str>) -> ModelLibraryService {
    let mut svc = ModelLibraryService::new(
        Library::new(root),
        ServiceOptions {
            clock: Arc::new(ManualClock::new(SystemClock.now() + 100.0)),
            persist: false,
            redis: redis.map(str::to_string),
            ..ServiceOptions::default()
        },
    )
    .unwrap();
    // Until its subscriber hears events, an instance takes nothing from Redis.
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.is_some() && !svc.cache_info().shared_cache.is_some_and(|s| s.listening) {
        svc.catch_up();
        assert!(Instant::now() < deadline, "never subscribed");
        std::thread::sleep(Duration::from_millis(5));
    }
    svc
}

/// Markdown rows for a library of `n` models at `root`.
pub fn run(root: &Path, n: usize, reps: usize) -> Vec<String> {
    let (_redis, url) = start_redis();
    let mut a = instance(root, Some(&url));
    a.list(ListKind::Full, false).unwrap();
    let mut own = Vec::new();
    let mut taken = Vec::new();
    for _ in 0..reps.max(1) {
        let mut c = instance(root, None);
        let t = Instant::now();
        c.list(ListKind::Full, false).unwrap();
        own.push(t.elapsed());
        let mut b = instance(root, Some(&url));
        let t = Instant::now();
        b.list(ListKind::Full, false).unwrap();
        taken.push(t.elapsed());
        assert_eq!(b.cache_info().shared_cache.unwrap().shared_hits, 1);
    }
    let worst = taken.iter().max().copied().unwrap_or_default();
    let (own, taken) = (median(own), median(taken));
    let breakdown = decode_breakdown(root, &mut a, reps);
    let mut rows = vec![
        format!(
            "| {n} | B's own full scan (median of {reps}) | {} | reference |",
            fmt(own)
        ),
        format!(
            "| {n} | B's first listing from Redis after A's scan (median; worst {}) | {} | {:.3} × own scan (target ≤ 0.1) |",
            fmt(worst),
            fmt(taken),
            taken.as_secs_f64() / own.as_secs_f64()
        ),
    ];

    rows.extend(breakdown);

    // A delete on A until B's listing lacks it (B polls its events as a shell's tick does).
    let mut b = instance(root, Some(&url));
    b.list(ListKind::Full, false).unwrap();
    let victim = a
        .list(ListKind::Full, false)
        .unwrap()
        .models
        .iter()
        .find(|m| m.size_bytes().is_some_and(|s| s > 0))
        .map(|m| m.id.clone())
        .expect("a model on disk");
    let started = Instant::now();
    a.delete_model(&victim, DeleteMode::Permanent).unwrap();
    let deleted = started.elapsed();
    let t = Instant::now();
    loop {
        b.catch_up();
        let l = b.list(ListKind::Full, false).unwrap();
        if !l
            .models
            .iter()
            .any(|m| m.id == victim && m.size_bytes().is_some_and(|s| s > 0))
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the delete never showed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    rows.push(format!(
        "| {n} | delete on A (A's own work: the files removed) | {} | |",
        fmt(deleted)
    ));
    rows.push(format!(
        "| {n} | A's delete done → gone from B's listing | {} | target ≤ 100 ms |",
        fmt(t.elapsed())
    ));

    // Cached listings per second, one instance, with and without the tier.
    for (label, redis) in [("without", None), ("with", Some(url.as_str()))] {
        let mut svc = instance(root, redis);
        svc.list(ListKind::Full, false).unwrap();
        let query = ListQuery::default();
        let t = Instant::now();
        let mut count = 0u64;
        while t.elapsed() < Duration::from_secs(2) {
            svc.list_view(&query, false).unwrap();
            count += 1;
        }
        rows.push(format!(
            "| {n} | cached listings per second, {label} the shared tier | {:.0} | |",
            count as f64 / t.elapsed().as_secs_f64()
        ));
    }
    rows
}

/// Where a shared hit's time goes, in-process: the listing's size as published, encoding
/// it, and decoding it into rows (no Redis).
fn decode_breakdown(root: &Path, a: &mut ModelLibraryService, reps: usize) -> Vec<String> {
    use model_library::library::listing_bytes::{self, Purpose};
    let library = Library::new(root);
    let full = a.list(ListKind::Full, false).unwrap();
    let mut encode = Vec::new();
    let mut decode = Vec::new();
    let mut bytes = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        bytes = listing_bytes::encode(&library, &full, Purpose::Shared, None);
        encode.push(t.elapsed());
        let t = Instant::now();
        let listing = listing_bytes::decode(&library, &bytes, Purpose::Shared).expect("decodes");
        decode.push(t.elapsed());
        assert_eq!(listing.listing.models.len(), full.models.len());
    }
    let n = full.models.len();
    vec![
        format!(
            "| {n} | the shared listing: size, encoded (in-process) | {} KiB, {} | |",
            bytes.len() / 1024,
            fmt(median(encode))
        ),
        format!(
            "| {n} | the shared listing decoded into rows (in-process) | {} | |",
            fmt(median(decode))
        ),
    ]
}
