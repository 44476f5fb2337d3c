//! The shared cache tier on a real `redis-server` (the Debian package, started here on a
//! free port in a temp folder and stopped after): a second instance takes the first one's
//! listing instead of scanning, a delete through one disappears from the other without it
//! reading the disk, Redis going away fails nothing, and two libraries never meet.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestLib, registry_json};
use model_library::fixtures::RedisServer;
use model_library::library::WatchSetupHook;
use model_library::library::watch::WatchOption;
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

/// Options of an instance with the shared tier at `url`, nothing persisted, its clock at
/// `clock` (seconds since the epoch).
fn options_at(url: &str, clock: f64) -> ServiceOptions {
    ServiceOptions {
        clock: Arc::new(ManualClock::new(clock)),
        persist: false,
        redis: Some(url.to_string()),
        ..ServiceOptions::default()
    }
}

/// [`options_at`] with a clock `offset` seconds ahead of now: well after the files' mtimes,
/// so nothing is racy (instances with other offsets never share a scan's start time).
fn options(url: &str, offset: f64) -> ServiceOptions {
    options_at(url, SystemClock.now() + offset)
}

/// An instance on `lib` with the shared tier at `url`.
fn instance(lib: &TestLib, url: &str) -> ModelLibraryService {
    ModelLibraryService::new(lib.library(), options(url, 100.0)).unwrap()
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
    assert_eq!(alpha.path(), lib.path("models/alpha"));
    assert_eq!(alpha.size_bytes(), Some(4));
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
        (alpha.status, alpha.size_bytes()),
        (model_library::library::ModelStatus::Available, Some(0))
    );
    let scanned = a.list(ListKind::Full, false).unwrap();
    let theirs = scanned.models.iter().find(|m| m.id == "alpha").unwrap();
    let row = |m: &model_library::library::ModelInfo| {
        (
            m.status,
            m.size_bytes(),
            m.file_count(),
            m.modified(),
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

/// A delete heard from another instance after the registry changed is not patched into the
/// listing under the new registry's stamp (its rows were made from the old one), nor is
/// such a listing published: the next listing shows the registry as it is now.
#[test]
fn a_delete_after_a_registry_change_leaves_no_old_names_behind() {
    let redis = Redis::start();
    let lib = TestLib::new();
    let registry = |beta: &str| {
        format!(
            r#"{{"version": 1, "models": [
                {{"id": "alpha", "name": "Alpha", "files": [{{"path": "w.bin", "size": 4}}]}},
                {{"id": "beta", "name": "{beta}", "files": [{{"path": "w.bin", "size": 4}}]}}]}}"#
        )
    };
    lib.registry(&registry("Beta"))
        .file("models/alpha/w.bin", 4)
        .file("models/beta/w.bin", 4)
        .file("models/local-one/x.gguf", 7);
    let mut a = instance(&lib, &redis.url());
    ready(&mut a);
    a.list(ListKind::Full, false).unwrap();
    let mut b = instance(&lib, &redis.url());
    ready(&mut b);
    b.list(ListKind::Full, false).unwrap();
    // The registry renames beta (a later mtime), then A deletes a model: its event carries
    // the new registry's stamp.
    let stamp = std::fs::metadata(lib.path("model_registry.json"))
        .unwrap()
        .modified()
        .unwrap();
    lib.registry(&registry("Beta renamed"))
        .set_mtime("model_registry.json", stamp + Duration::from_secs(5));
    a.delete_model("local-one", DeleteMode::Permanent).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.catch_up() {
        assert!(Instant::now() < deadline, "B never heard of the delete");
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = b.list(ListKind::Full, false).unwrap();
    assert_eq!(ids(&after), ["alpha", "beta"]);
    let beta = after.models.iter().find(|m| m.id == "beta").unwrap();
    assert_eq!(&*beta.name, "Beta renamed");
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
/// top-level stamps) reaches B: A says which model changed, and B rescans that model only
/// (as it would its own watched change), keeping every other row as it was.
#[test]
fn a_watched_change_on_one_instance_reaches_the_other() {
    let redis = Redis::start();
    let lib = sample();
    let mut a = watching_instance(&lib, &redis.url(), 100.0);
    ready(&mut a);
    a.start_watching();
    a.list(ListKind::Full, false).unwrap();
    let mut b = instance(&lib, &redis.url());
    ready(&mut b);
    let before = b.list(ListKind::Full, false).unwrap();
    assert_eq!(shared(&b).shared_hits, 1);
    let alpha_before = Arc::clone(before.models.iter().find(|m| m.id == "alpha").unwrap());

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
            .and_then(|m| m.size_bytes());
        if beta == Some(1004) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never saw A's change: {beta:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = b.list(ListKind::Full, false).unwrap();
    let alpha_after = after.models.iter().find(|m| m.id == "alpha").unwrap();
    assert!(
        Arc::ptr_eq(&alpha_before, alpha_after),
        "alpha's row was kept"
    );
    assert_eq!(
        shared(&b).shared_hits,
        1,
        "nothing taken again: {:?}",
        shared(&b)
    );
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

/// An instance on `lib` that watches with file events, its clock `offset` seconds ahead
/// (scans of different instances then never share a start time).
fn watching_instance(lib: &TestLib, url: &str, offset: f64) -> ModelLibraryService {
    let options = ServiceOptions {
        watch: WatchOption::Events,
        ..options(url, offset)
    };
    ModelLibraryService::new(lib.library(), options).unwrap()
}

/// A watch set-up hook that holds every set-up until the flag returned is cleared (at most
/// 20 s), so instances list before their watches are up.
fn held_watch_setups() -> (Arc<AtomicBool>, WatchSetupHook) {
    let held = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&held);
    let hook = WatchSetupHook(Arc::new(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while flag.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }));
    (held, hook)
}

/// Ticks `svcs` (as shells do) until `done` holds for the last one, bounded.
fn tick_until(
    svcs: &mut [&mut ModelLibraryService],
    what: &str,
    done: impl Fn(&ModelLibraryService) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for s in svcs.iter_mut() {
            s.catch_up();
        }
        let last = svcs.last().expect("an instance");
        if done(last) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened: {:?}",
            shared(last)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two watching instances (as `serve` and the window are): A's scan began with its watches
/// up, so its listing is vouched for by its watch session; B takes it, and once its own
/// watches are up and A's session is seen alive after that, B trusts it — no scan of its
/// own, ever (one scan for the two).
#[test]
fn a_watching_instance_trusts_a_listing_a_live_watcher_vouches_for() {
    let redis = Redis::start();
    let lib = sample();
    let mut a = watching_instance(&lib, &redis.url(), 100.0);
    ready(&mut a);
    a.start_watching();
    let first = a.list(ListKind::Full, false).unwrap();
    assert!(
        shared(&a).watching && shared(&a).vouched,
        "{:?}",
        shared(&a)
    );

    let mut b = watching_instance(&lib, &redis.url(), 200.0);
    ready(&mut b);
    let taken = b.list(ListKind::Full, false).unwrap();
    assert_eq!(taken.scan_started, first.scan_started, "a shared hit");
    tick_until(&mut [&mut a, &mut b], "B trusting A's listing", |b| {
        shared(b).scans_spared == 1
    });
    let info = shared(&b);
    assert!(info.watching && info.vouched, "{info:?}");
    let held = b.cached(ListKind::Full).unwrap();
    assert_eq!(held.scan_started, first.scan_started, "B never scanned");
    assert_eq!(
        b.watch_mode(),
        model_library::library::watch::WatchMode::Events
    );
}

/// The watcher that vouched for a listing is gone (or there never was one): a watching
/// instance that took the listing scans for itself once its watches are up — a change made
/// while nobody watched is not trusted away.
#[test]
fn a_listing_nobody_alive_vouches_for_is_scanned_again() {
    let redis = Redis::start();
    let lib = sample();
    for a_watches in [true, false] {
        let mut a = if a_watches {
            let mut a = watching_instance(&lib, &redis.url(), 100.0);
            ready(&mut a);
            a.start_watching();
            a
        } else {
            let mut a = instance(&lib, &redis.url());
            ready(&mut a);
            a
        };
        let first = a.list(ListKind::Full, true).unwrap();
        assert_eq!(shared(&a).vouched, a_watches);
        drop(a);
        // Unseen by anyone: nobody watches now.
        lib.file("models/beta/more.bin", 1000);

        let mut b = watching_instance(&lib, &redis.url(), 200.0);
        ready(&mut b);
        let taken = b.list(ListKind::Full, false).unwrap();
        assert_eq!(taken.scan_started, first.scan_started, "a shared hit");
        tick_until(&mut [&mut b], "B's own scan", |b| {
            b.cached(ListKind::Full)
                .is_some_and(|l| l.scan_started != first.scan_started)
        });
        let beta = b.cached(ListKind::Full).unwrap();
        let beta = beta.models.iter().find(|m| m.id == "beta").unwrap();
        assert_eq!(beta.size_bytes(), Some(1004), "B's scan saw the change");
        assert_eq!(shared(&b).scans_spared, 0);
        std::fs::remove_file(lib.path("models/beta/more.bin")).unwrap();
    }
}

/// Four watching instances started together, their watch set-ups slower than their first
/// listings: one scans for the first listing and the others take it; once the watches are
/// up, one of them scans again (its listing now vouched for by its file events) and the
/// other three take that one instead of scanning — two scans for four instances, not five.
#[test]
fn four_watching_instances_make_one_scan_after_their_watches_are_up() {
    let redis = Redis::start();
    let lib = sample();
    let (held, hook) = held_watch_setups();
    let mut all: Vec<ModelLibraryService> = (0..4)
        .map(|i| {
            let options = ServiceOptions {
                watch: WatchOption::Events,
                watch_setup_hook: Some(hook.clone()),
                ..options(&redis.url(), 100.0 + i as f64)
            };
            let mut svc = ModelLibraryService::new(lib.library(), options).unwrap();
            ready(&mut svc);
            svc
        })
        .collect();
    for svc in &mut all {
        svc.list(ListKind::Full, false).unwrap();
    }
    let hits: u64 = all.iter().map(|s| shared(s).shared_hits).sum();
    assert_eq!(hits, 3);
    held.store(false, Ordering::SeqCst);

    let deadline = Instant::now() + Duration::from_secs(30);
    let done = |all: &[ModelLibraryService]| {
        all.iter().all(|s| shared(s).vouched)
            && all.iter().map(|s| shared(s).scans_spared).sum::<u64>() == 3
    };
    while !done(&all) {
        for svc in &mut all {
            svc.catch_up();
        }
        let infos: Vec<_> = all.iter().map(shared).collect();
        assert!(Instant::now() < deadline, "never all vouched: {infos:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let infos: Vec<_> = all.iter().map(shared).collect();
    let published: u64 = infos.iter().map(|i| i.listings_published).sum();
    let spared: u64 = infos.iter().map(|i| i.scans_spared).sum();
    assert_eq!((published, spared), (2, 3), "{infos:#?}");
}

/// The fast listing is shared too: B's first quick listing after A's is A's (no read of
/// the models folder on B); a change of the folder (a new model) makes B list for itself.
#[test]
fn the_fast_listing_is_shared_too() {
    let redis = Redis::start();
    let lib = sample();
    let mut a = instance(&lib, &redis.url());
    ready(&mut a);
    let first = a.list(ListKind::Fast, false).unwrap();
    let mut b = instance(&lib, &redis.url());
    ready(&mut b);
    let taken = b.list(ListKind::Fast, false).unwrap();
    assert_eq!(taken.kind, ListKind::Fast);
    assert_eq!(taken.scan_started, first.scan_started, "B did not list");
    assert_eq!(ids(&taken), ids(&first));
    assert_eq!(taken.models[0].size_bytes(), None, "a quick row");
    assert_eq!(shared(&b).shared_hits, 1);

    lib.file("models/gamma/w.bin", 4);
    let mut c = instance(&lib, &redis.url());
    ready(&mut c);
    let own = c.list(ListKind::Fast, false).unwrap();
    assert!(ids(&own).contains(&"gamma".to_string()), "{:?}", ids(&own));
    assert_ne!(
        own.scan_started, first.scan_started,
        "the stale one was not taken"
    );
    assert_eq!(shared(&c).shared_misses, 1);
}

/// An instance without file events (polling, a network share) does not trust stamps in the
/// second its listing's scan began (the racy rule) — unless a live watch session vouches
/// for the listing: that watcher announces a change made in that second. Without one, it
/// lists for itself.
#[test]
fn a_racy_listing_is_taken_only_when_a_live_watcher_vouches_for_it() {
    let redis = Redis::start();
    let lib = sample();
    // Every clock at the models folder's own time: the stamps fall in the scans' second.
    let mtime = std::fs::metadata(lib.path("models"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let at_mtime = |watch| {
        let options = ServiceOptions {
            watch,
            ..options_at(&redis.url(), mtime)
        };
        ModelLibraryService::new(lib.library(), options).unwrap()
    };
    let mut a = at_mtime(WatchOption::Events);
    ready(&mut a);
    a.start_watching();
    let first = a.list(ListKind::Full, false).unwrap();
    assert!(shared(&a).vouched);

    let mut b = at_mtime(WatchOption::Off);
    ready(&mut b);
    let taken = b.list(ListKind::Full, false).unwrap();
    assert_eq!(taken.scan_started, first.scan_started, "taken: A vouches");
    assert_eq!(shared(&b).shared_hits, 1);

    drop(a);
    let mut c = at_mtime(WatchOption::Off);
    ready(&mut c);
    c.list(ListKind::Full, false).unwrap();
    let info = shared(&c);
    assert_eq!((info.shared_hits, info.shared_misses), (0, 1), "{info:?}");
}

/// The library's scan lock as Redis has it now (its holder's name).
fn scan_lock_holder(url: &str, library_id: &str) -> Option<String> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("GET")
        .arg(format!("model-library:{library_id}:scanning"))
        .query(&mut c)
        .unwrap()
}

/// The lock is this instance's own: taking it again renews it (it is not "another
/// instance scanning"); another instance cannot take it until it is released.
#[test]
fn the_scan_lock_knows_its_holder() {
    use model_library::library::shared::SharedTier;
    let redis = Redis::start();
    let lib = sample();
    let mut a = SharedTier::new(&redis.url(), &lib.library()).unwrap();
    let mut b = SharedTier::new(&redis.url(), &lib.library()).unwrap();
    assert_eq!(a.try_scan_lock(30_000), Some(true));
    assert_eq!(a.try_scan_lock(30_000), Some(true), "its own, renewed");
    assert_eq!(b.try_scan_lock(30_000), Some(false), "another's");
    b.release_scan_lock();
    assert_eq!(
        b.try_scan_lock(30_000),
        Some(false),
        "not released by another"
    );
    a.release_scan_lock();
    assert_eq!(b.try_scan_lock(30_000), Some(true));
}

/// An instance whose own background scan (the one after its watch set-up) holds the scan
/// lock does not wait for itself when a request needs a scan meanwhile, and that request
/// does not release the lock its background scan holds; the background scan releases it
/// when it is installed.
#[test]
fn an_instance_never_waits_for_its_own_scan_lock() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    // Enough models that the background scan outlasts the tick that starts it.
    let spec = model_library::fixtures::GenSpec {
        models: 3_000,
        files_per_model: 3,
        file_size: 1 << 20,
    };
    model_library::fixtures::generate_library(tmp.path(), &spec).unwrap();
    let (held, hook) = held_watch_setups();
    let options = ServiceOptions {
        watch: WatchOption::Events,
        watch_setup_hook: Some(hook),
        ..options(&redis.url(), 100.0)
    };
    let mut a = ModelLibraryService::new(model_library::library::Library::new(tmp.path()), options)
        .unwrap();
    ready(&mut a);
    a.list(ListKind::Full, false).unwrap(); // before the watches: vouched for by nobody
    let id = shared(&a).library_id;
    assert_eq!(
        scan_lock_holder(&redis.url(), &id),
        None,
        "released after it"
    );

    // The watches come up: A scans again in the background, holding the lock.
    held.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while scan_lock_holder(&redis.url(), &id).is_none() {
        a.catch_up();
        assert!(
            Instant::now() < deadline,
            "no background scan took the lock"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // A request needing a scan now (the registry changed) neither waits for A's own lock
    // nor releases it (only a tick collects the background scan).
    let registry = tmp.path().join("model_registry.json");
    let text = std::fs::read_to_string(&registry).unwrap();
    std::fs::write(&registry, format!("{text}\n")).unwrap();
    let t = Instant::now();
    a.list(ListKind::Full, false).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        t.elapsed()
    );
    assert!(
        scan_lock_holder(&redis.url(), &id).is_some(),
        "still the background scan's"
    );
    tick_until(
        &mut [&mut a],
        "the background scan's end releasing the lock",
        |_| scan_lock_holder(&redis.url(), &id).is_none(),
    );
}

/// An event naming something that is not a library model (another store's row, here a
/// folder of one's own, whose rows are each machine's own) never removes that row: the
/// receiver drops its caches and lists again instead of rescanning the names.
#[test]
fn an_event_naming_another_stores_model_leaves_its_row() {
    use model_library::library::sources::{SourceConfig, SourceKind};
    let redis = Redis::start();
    let lib = sample();
    let own = tempfile::tempdir().unwrap();
    std::fs::write(own.path().join("mine.gguf"), b"GGUF not really").unwrap();
    let options = ServiceOptions {
        sources: vec![SourceConfig::new(SourceKind::Folder, own.path())],
        ..options(&redis.url(), 100.0)
    };
    let mut b = ModelLibraryService::new(lib.library(), options).unwrap();
    ready(&mut b);
    let first = b.list(ListKind::Full, false).unwrap();
    let theirs = first
        .models
        .iter()
        .find(|m| m.source != "library")
        .map(|m| m.id.clone())
        .expect("the folder's model");

    let event = serde_json::json!({
        "from": "someone-else", "kind": "changed", "ids": [theirs], "stamps": null,
    });
    let mut c = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let channel = format!("model-library:{}:events", shared(&b).library_id);
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(event.to_string())
        .query(&mut c)
        .unwrap();
    tick_until(&mut [&mut b], "the event heard", |b| {
        shared(b).invalidations_received == 1
    });
    let after = b.list(ListKind::Full, false).unwrap();
    assert!(
        after.models.iter().any(|m| m.id == theirs),
        "{:?}",
        ids(&after)
    );
}
