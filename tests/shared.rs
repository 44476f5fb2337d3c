//! The shared cache tier on a real `redis-server` (the Debian package, started here on a
//! free port in a temp folder and stopped after): a second instance takes the first one's
//! listing instead of scanning, a delete through one disappears from the other without it
//! reading the disk, Redis going away fails nothing, and two libraries never meet.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestLib, registry_json};
use model_library::fixtures::RedisServer;
use model_library::library::{
    Clock, DeleteMode, ListKind, ManualClock, ModelLibraryService, ServiceOptions, SystemClock,
};

/// A `redis-server` of the test's own (see [`RedisServer`]) and its folder.
struct Redis {
    server: Option<RedisServer>,
    dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let server = RedisServer::start(dir.path()).unwrap();
        Redis {
            server: Some(server),
            dir,
        }
    }

    fn start_on(port: u16, dir: tempfile::TempDir) -> Redis {
        let server = RedisServer::start_on(port, dir.path()).unwrap();
        Redis {
            server: Some(server),
            dir,
        }
    }

    fn url(&self) -> String {
        self.server.as_ref().expect("running").url()
    }

    /// Stops it; its port and folder, to start it again.
    fn kill(mut self) -> (u16, tempfile::TempDir) {
        let port = self.server.take().expect("running").port;
        (port, self.dir)
    }
}

/// A library with two registered models on disk and one of its own.
fn sample() -> TestLib {
    let lib = TestLib::new();
    lib.registry(&registry_json(&[
        ("alpha", &[("w.bin", 4)]),
        ("beta", &[("w.bin", 4)]),
    ]))
    .file("models/alpha/w.bin", 4)
    .file("models/beta/w.bin", 4)
    .file("models/local-one/x.gguf", 7);
    lib
}

/// An instance on `lib` with the shared tier at `url` (a clock well after the files'
/// mtimes, so nothing is racy).
fn instance(lib: &TestLib, url: &str) -> ModelLibraryService {
    ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            clock: Arc::new(ManualClock::new(SystemClock.now() + 100.0)),
            persist: false,
            redis: Some(url.to_string()),
            ..ServiceOptions::default()
        },
    )
    .unwrap()
}

/// Waits (bounded) until `svc` hears the other instances' events: only then does it take
/// a listing from Redis.
fn ready(svc: &mut ModelLibraryService) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        svc.catch_up();
        if shared(svc).listening {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never subscribed: {:?}",
            shared(svc)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ids(listing: &model_library::library::Listing) -> Vec<String> {
    let mut ids: Vec<String> = listing.models.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids
}

fn shared(svc: &ModelLibraryService) -> model_library::library::shared::SharedCacheInfo {
    svc.cache_info().shared_cache.expect("a shared tier")
}

/// B's first listing after A's scan is A's listing (no scan: the same scan start), with
/// the paths of B's own mount; both say so in `cache-info`.
#[test]
fn a_second_instance_takes_the_first_ones_listing_without_scanning() {
    let redis = Redis::start();
    let lib = sample();
    let mut a = instance(&lib, &redis.url());
    ready(&mut a);
    let first = a.list(ListKind::Full, false).unwrap();
    assert_eq!(shared(&a).listings_published, 1, "{:?}", shared(&a));
    assert_eq!(shared(&a).state, "connected");

    let mut b = instance(&lib, &redis.url());
    ready(&mut b);
    let taken = b.list(ListKind::Full, false).unwrap();
    assert_eq!(ids(&taken), ids(&first));
    assert_eq!(taken.scan_started, first.scan_started, "B did not scan");
    let alpha = taken.models.iter().find(|m| m.id == "alpha").unwrap();
    assert_eq!(alpha.path, lib.path("models/alpha"));
    assert_eq!(alpha.size_bytes, Some(4));
    let info = shared(&b);
    assert_eq!((info.shared_hits, info.shared_misses), (1, 0), "{info:?}");
    assert_eq!(info.library_id, shared(&a).library_id);
    assert_eq!(info.library_id.len(), 32);
    assert!(lib.path(".cache/library-id").is_file());
}

/// A delete through A disappears from B's next listing: B applies A's event (rows gone,
/// A's stamps taken) and lists without scanning.
#[test]
fn a_delete_through_one_instance_disappears_from_the_other() {
    let redis = Redis::start();
    let lib = sample();
    let mut a = instance(&lib, &redis.url());
    ready(&mut a);
    let first = a.list(ListKind::Full, false).unwrap();
    let mut b = instance(&lib, &redis.url());
    ready(&mut b);
    b.list(ListKind::Full, false).unwrap();
    assert_eq!(shared(&b).shared_hits, 1);

    a.delete_model("alpha", DeleteMode::Permanent).unwrap();
    assert_eq!(shared(&a).invalidations_sent, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.catch_up() {
        assert!(Instant::now() < deadline, "B never heard of the delete");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(shared(&b).invalidations_received, 1);
    let after = b.list(ListKind::Full, false).unwrap();
    // Registered, it stays, with nothing on disk — as A's own scan shows it.
    let alpha = after.models.iter().find(|m| m.id == "alpha").unwrap();
    assert_eq!(
        (alpha.status, alpha.size_bytes),
        (model_library::library::ModelStatus::Available, Some(0))
    );
    let scanned = a.list(ListKind::Full, false).unwrap();
    let theirs = scanned.models.iter().find(|m| m.id == "alpha").unwrap();
    let row = |m: &model_library::library::ModelInfo| {
        (
            m.status,
            m.size_bytes,
            m.file_count,
            m.modified,
            m.registered,
        )
    };
    assert_eq!(row(theirs), row(alpha), "B's patched row is as A's scan");
    assert_eq!(after.scan_started, first.scan_started, "B did not scan");

    // An unregistered model deleted is gone from B's listing.
    a.delete_model("local-one", DeleteMode::Permanent).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.catch_up() {
        assert!(
            Instant::now() < deadline,
            "B never heard of the second delete"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = b.list(ListKind::Full, false).unwrap();
    assert_eq!(ids(&after), ["alpha", "beta"]);
    assert_eq!(after.scan_started, first.scan_started, "B did not scan");
}

/// Redis killed: both instances keep answering from their own scans, `cache-info` says it
/// is unreachable; restarted, they reconnect (the subscriber says so, and what came from
/// Redis before is dropped).
#[test]
fn redis_going_away_fails_nothing() {
    let redis = Redis::start();
    let url = redis.url();
    let lib = sample();
    let mut a = instance(&lib, &url);
    ready(&mut a);
    a.list(ListKind::Full, false).unwrap();
    let mut b = instance(&lib, &url);
    ready(&mut b);
    b.list(ListKind::Full, false).unwrap();
    assert_eq!(shared(&b).shared_hits, 1);

    let (port, dir) = redis.kill();
    for _ in 0..3 {
        let l = a.list(ListKind::Full, true).unwrap();
        assert_eq!(l.models.len(), 3);
    }
    let info = shared(&a);
    assert_eq!(info.state, "unreachable", "{info:?}");
    assert!(info.last_error.is_some());
    let mut c = instance(&lib, &url);
    assert_eq!(c.list(ListKind::Full, false).unwrap().models.len(), 3);

    let _redis = Redis::start_on(port, dir);
    // B's subscriber reconnects and B drops what it took from Redis.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !b.catch_up() {
        assert!(
            Instant::now() < deadline,
            "B's subscriber never reconnected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        b.cached(ListKind::Full).is_none(),
        "nothing from before is trusted"
    );
    // A publishes again once its backoff lets it try.
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared(&a).state != "connected" {
        assert!(Instant::now() < deadline, "A never reconnected");
        a.list(ListKind::Full, true).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two libraries on one Redis never take each other's listing.
#[test]
fn two_libraries_never_meet() {
    let redis = Redis::start();
    let one = sample();
    let two = TestLib::new();
    two.file("models/other/w.bin", 9);
    let mut a = instance(&one, &redis.url());
    a.list(ListKind::Full, false).unwrap();
    let mut b = instance(&two, &redis.url());
    ready(&mut b);
    let listing = b.list(ListKind::Full, false).unwrap();
    assert_eq!(ids(&listing), ["other"]);
    let info = shared(&b);
    assert_eq!((info.shared_hits, info.shared_misses), (0, 1));
    assert_ne!(info.library_id, shared(&a).library_id);
}

/// A URL that is not a Redis URL is refused at once, naming it without its password.
#[test]
fn a_bad_url_is_a_clear_error() {
    let lib = TestLib::new();
    let err = ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            redis: Some("http://user:secret@example/".into()),
            ..ServiceOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--redis http://example/"), "{err}");
    assert!(!err.contains("secret"));
}

/// Four instances started together on one library: one scans (and publishes), the three
/// others wait for its listing and take it.
#[test]
fn four_instances_started_together_scan_once() {
    let redis = Redis::start();
    let lib = Arc::new(sample());
    let start = Arc::new(std::sync::Barrier::new(4));
    let infos: Vec<_> = (0..4)
        .map(|_| {
            let (lib, start, url) = (Arc::clone(&lib), Arc::clone(&start), redis.url());
            std::thread::spawn(move || {
                let mut svc = instance(&lib, &url);
                ready(&mut svc);
                start.wait();
                let listing = svc.list(ListKind::Full, false).unwrap();
                assert_eq!(listing.models.len(), 3);
                shared(&svc)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let published: u64 = infos.iter().map(|i| i.listings_published).sum();
    let hits: u64 = infos.iter().map(|i| i.shared_hits).sum();
    assert_eq!((published, hits), (1, 3), "{infos:#?}");
}

/// A change A's watcher sees (a file grown inside a model folder, which moves none of the
/// top-level stamps) reaches B: A publishes its new listing and says which model changed;
/// B drops its own and takes A's.
#[test]
fn a_watched_change_on_one_instance_reaches_the_other() {
    let redis = Redis::start();
    let lib = sample();
    let mut a = ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            clock: Arc::new(ManualClock::new(SystemClock.now() + 100.0)),
            persist: false,
            redis: Some(redis.url()),
            watch: model_library::library::watch::WatchOption::Events,
            ..ServiceOptions::default()
        },
    )
    .unwrap();
    ready(&mut a);
    a.start_watching();
    a.list(ListKind::Full, false).unwrap();
    let mut b = instance(&lib, &redis.url());
    ready(&mut b);
    b.list(ListKind::Full, false).unwrap();
    assert_eq!(shared(&b).shared_hits, 1);

    lib.file("models/beta/more.bin", 1000);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        a.catch_up();
        b.catch_up();
        let beta = b
            .list(ListKind::Full, false)
            .unwrap()
            .models
            .iter()
            .find(|m| m.id == "beta")
            .and_then(|m| m.size_bytes);
        if beta == Some(1004) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never saw A's change: {beta:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(shared(&b).shared_hits >= 2, "{:?}", shared(&b));
}

/// A TTL set on one instance is every instance's.
#[test]
fn a_ttl_change_reaches_every_instance() {
    let redis = Redis::start();
    let lib = sample();
    let mut a = instance(&lib, &redis.url());
    ready(&mut a);
    let mut b = instance(&lib, &redis.url());
    ready(&mut b);
    a.set_ttl(600).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.ttl_secs() != 600 {
        assert!(Instant::now() < deadline, "B's TTL stayed {}", b.ttl_secs());
        b.catch_up();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two `serve` instances on one library and one Redis: the second one's first
/// `GET /api/models/library` is the first one's listing, and its
/// `GET /api/models/cache-info` has the `shared_cache` section saying so.
#[test]
fn two_servers_share_one_cache_over_http() {
    use model_library::server;
    let redis = Redis::start();
    let lib = sample();
    let get = |srv: &server::ServerHandle, path: &str| -> serde_json::Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let body = agent
            .get(format!("{}{path}", srv.url()))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        serde_json::from_str(&body).unwrap()
    };
    let mut a = instance(&lib, &redis.url());
    ready(&mut a);
    let a = server::start(a, 0).unwrap();
    assert_eq!(get(&a, "/api/models/library")["total"], 3);
    let mut b = instance(&lib, &redis.url());
    ready(&mut b);
    let b = server::start(b, 0).unwrap();
    let listing = get(&b, "/api/models/library");
    assert_eq!(listing["total"], 3);
    let info = get(&b, "/api/models/cache-info");
    let shared = &info["shared_cache"];
    assert_eq!(shared["shared_hits"], 1, "{info:#}");
    assert_eq!(shared["state"], "connected");
    assert_eq!(shared["url"], redis.url());
    assert!(
        get(&a, "/api/models/cache-info")["shared_cache"]["listings_published"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
}
