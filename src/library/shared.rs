//! The shared cache tier on Redis (`--redis URL`): several instances on one library (a
//! network share) take one another's full listings instead of each scanning, and tell one
//! another what they changed.
//!
//! - **Identity.** A library carries its id in `.cache/library-id` (made once, by the
//!   first instance that needs it), so instances that mount it at different paths agree;
//!   every key and channel names it: `model-library:<id>:listing` (the last full listing;
//!   `listing-fast` the last fast one,
//!   [`crate::library::listing_bytes::encode`], with a TTL no longer than the cache's) and
//!   `model-library:<id>:events` (what an instance changed, [`Event`]).
//! - **Failure is not fatal.** Every command has a short timeout; an error drops the
//!   connection and retries later with a doubling backoff (0.2 s to 10 s), and meanwhile
//!   the service answers from its own cache and scans. A subscriber that reconnects may
//!   have missed events, so it reports [`EventKind::Reconnected`]: the service then trusts
//!   nothing it took from Redis before.
//!
//! - **Watch sessions.** An instance whose file events cover the whole library keeps a key
//!   `model-library:<id>:watching:<session>` alive (refreshed every [`BEAT_EVERY`] by its
//!   ticks, after they applied what its watcher saw; it expires [`SESSION_TTL`] after the
//!   last one). A listing it publishes names the session when its events have covered the
//!   listing since its scan began, so another watching instance can take it without a scan
//!   of its own once it has seen the session outlive its own watch set-up (see
//!   [`COVERAGE_CHECK_AFTER`]).
//!
//! Owns the connections and the subscriber thread. Must not touch the library's files
//! except `.cache/library-id`, and never decides what is valid: the service checks a
//! shared listing's stamps against the disk as it checks its own.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::library::error::{LibraryError, Result};
use crate::library::layout::Library;
use crate::library::model::ListKind;

/// Name of the library's id file under `.cache/`.
pub const ID_FILE: &str = "library-id";
/// How long one command may take before Redis counts as unreachable.
const IO_TIMEOUT: Duration = Duration::from_millis(300);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often a watching instance refreshes its session key (at most; its ticks do it).
pub const BEAT_EVERY: Duration = Duration::from_secs(1);
/// How long a session key outlives its last refresh.
pub const SESSION_TTL: Duration = Duration::from_secs(3);
/// How long after its own watches are set up an instance looks whether the session that
/// covers the listing it took is still alive: a key found then was refreshed after the
/// set-up, by ticks that had applied (and announced) every change seen before it.
pub const COVERAGE_CHECK_AFTER: Duration = Duration::from_millis(3_500);

/// What an instance tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The sending instance (its own events are ignored).
    pub from: String,
    /// What happened.
    pub kind: EventKind,
    /// The models it touched, when known.
    pub ids: Vec<String>,
    /// The library's stamps (registry, models/, .downloads/ mtimes) just after the change,
    /// so a receiver can bring its listing up to date without reading the disk; as the
    /// bits of each `f64` (a JSON number need not come back as the very same `f64`).
    pub stamps: Option<[Option<u64>; 3]>,
    /// The new TTL, seconds ([`EventKind::Ttl`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Models deleted (`ids`).
    Deleted,
    /// A model imported, a download ended, a refresh, a TTL change, a watched change:
    /// whatever a receiver cached may be out of date.
    Changed,
    /// The cache TTL was changed (`ttl_secs`): every instance takes it.
    Ttl,
    /// Not sent: the subscriber reconnected and may have missed events.
    Reconnected,
}

/// The shared tier's state, for `cache-info` and the cache panel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SharedCacheInfo {
    /// `connected`, `unreachable` (retrying), `connecting`, or `idle` (not used yet by
    /// this process: it is set up at the first listing) or `off` (it could not be set up:
    /// `last_error` says why).
    pub state: &'static str,
    /// The Redis URL without credentials.
    pub url: String,
    /// The library's id (the keys' middle part).
    pub library_id: String,
    /// Full listings taken from Redis instead of scanning.
    pub shared_hits: u64,
    /// Times a shared listing was looked for and none could be used.
    pub shared_misses: u64,
    /// Full listings this instance published.
    pub listings_published: u64,
    /// Events this instance sent.
    pub invalidations_sent: u64,
    /// Events of other instances received.
    pub invalidations_received: u64,
    /// Whether the subscriber is subscribed to the other instances' events (until it is,
    /// no listing is taken from Redis: its changes could go unheard).
    pub listening: bool,
    /// Whether this instance's file events cover the library, its watch session kept alive
    /// in Redis (its published listings vouch for themselves then).
    pub watching: bool,
    /// Whether the full listing held now names a watch session (this instance's or
    /// another's) whose events have covered it since its scan began; another's is seen
    /// alive before it is relied on, and until then this says what the listing claims.
    pub vouched: bool,
    /// Scans after a watch set-up this instance did not need: the listing it took was
    /// vouched for by another instance's session, seen alive after the set-up.
    pub scans_spared: u64,
    /// The last error talking to Redis.
    pub last_error: Option<String>,
}

/// A connection to Redis for one library.
pub struct SharedTier {
    client: redis::Client,
    url: String,
    library_id: String,
    /// This instance's name in events.
    instance: String,
    conn: Option<redis::Connection>,
    /// When a lost connection may be tried again, and the wait after that.
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: Option<String>,
    counters: Counters,
    events: Receiver<Event>,
    /// Tells the subscriber thread to stop (it checks between reads).
    stop: Arc<AtomicBool>,
    /// Set by the subscriber while it is subscribed.
    listening: Arc<AtomicBool>,
    /// This instance's watch session, while its file events cover the library, and when
    /// its key was last refreshed (`None`: due now).
    session: Option<String>,
    beat_at: Option<Instant>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    hits: u64,
    misses: u64,
    published: u64,
    sent: u64,
    received: u64,
}

impl Drop for SharedTier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // A session that ends is gone at once, not after its expiry (best effort).
        self.watching(false);
    }
}

/// `redis://user:secret@host:6379/0` → `redis://host:6379/0`.
pub fn url_without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// A client for the Redis at `url` (no I/O); a URL that is not a Redis URL is an error
/// naming it without its credentials.
pub fn client_for(url: &str) -> Result<redis::Client> {
    redis::Client::open(url).map_err(|e| LibraryError::InvalidInput {
        what: format!("--redis {}: {e}", url_without_credentials(url)),
    })
}

/// The name of a library's key or channel `what` (`listing`, `scanning`, `events`).
fn redis_key(library_id: &str, what: &str) -> String {
    format!("model-library:{library_id}:{what}")
}

/// The key of the last published listing of `kind`.
fn listing_key(library_id: &str, kind: ListKind) -> String {
    match kind {
        ListKind::Full => redis_key(library_id, "listing"),
        ListKind::Fast => redis_key(library_id, "listing-fast"),
    }
}

impl SharedTier {
    /// A tier for `library` on the Redis at `url`. Fails only on a URL that is not a Redis
    /// URL or a library whose id cannot be read or made; Redis itself being down is not an
    /// error (it is retried).
    pub fn new(url: &str, library: &Library) -> Result<SharedTier> {
        let client = client_for(url)?;
        let library_id = library_id(library)?;
        let (tx, events) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let listening = Arc::new(AtomicBool::new(false));
        let channel = redis_key(&library_id, "events");
        let flags = Flags {
            stop: Arc::clone(&stop),
            listening: Arc::clone(&listening),
        };
        spawn_subscriber(client.clone(), channel, tx, flags);
        Ok(SharedTier {
            client,
            url: url_without_credentials(url),
            library_id,
            instance: random_hex(8),
            conn: None,
            retry_at: None,
            backoff: BACKOFF_MIN,
            last_error: None,
            counters: Counters::default(),
            events,
            stop,
            listening,
            session: None,
            beat_at: None,
        })
    }

    /// Starts (`true`) or ends this instance's watch session: its file events now cover
    /// the whole library, or no longer do. Starting one that runs keeps it.
    pub fn watching(&mut self, on: bool) {
        match (on, self.session.take()) {
            (true, Some(s)) => self.session = Some(s),
            (true, None) => {
                self.session = Some(format!("{}-{}", self.instance, random_hex(4)));
                self.beat_at = None;
                self.beat();
            }
            (false, Some(s)) => {
                let key = redis_key(&self.library_id, &format!("watching:{s}"));
                let _ = self.run(|c| redis::cmd("DEL").arg(&key).query::<i64>(c));
            }
            (false, None) => {}
        }
    }

    /// The running watch session, if any.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Refreshes the session's key when [`BEAT_EVERY`] has passed. Call it after the
    /// watcher's changes were applied: a refresh vouches for them.
    pub fn beat(&mut self) {
        let Some(session) = self.session.clone() else {
            return;
        };
        if self.beat_at.is_some_and(|t| t.elapsed() < BEAT_EVERY) {
            return;
        }
        let key = redis_key(&self.library_id, &format!("watching:{session}"));
        let ttl_ms = SESSION_TTL.as_millis() as u64;
        let done = self.run(|c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("PX")
                .arg(ttl_ms)
                .query::<()>(c)
        });
        if done.is_some() {
            self.beat_at = Some(Instant::now());
        }
    }

    /// Whether `session`'s key is alive now (`None`: Redis cannot be reached).
    pub fn session_alive(&mut self, session: &str) -> Option<bool> {
        let key = redis_key(&self.library_id, &format!("watching:{session}"));
        self.run(|c| redis::cmd("EXISTS").arg(&key).query::<bool>(c))
    }

    /// Whether the other instances' events are being heard.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    /// Waits (at most [`IO_TIMEOUT`]) for the subscriber to be listening: a new tier's
    /// first listing may then be taken from Redis (a one-shot command's only one).
    pub fn wait_listening(&self) -> bool {
        let deadline = Instant::now() + IO_TIMEOUT;
        while !self.listening() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.listening()
    }

    /// Runs `f` on the connection (made if due); `None` when Redis cannot be reached now.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Option<T> {
        if self.conn.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                return None;
            }
            match self.connect() {
                Ok(c) => {
                    self.conn = Some(c);
                    self.retry_at = None;
                    self.backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    self.failed(e);
                    return None;
                }
            }
        }
        let conn = self.conn.as_mut()?;
        match f(conn) {
            Ok(v) => Some(v),
            Err(e) => {
                self.conn = None;
                self.failed(e);
                None
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let c = self.client.get_connection_with_timeout(IO_TIMEOUT)?;
        c.set_read_timeout(Some(IO_TIMEOUT))?;
        c.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(c)
    }

    fn failed(&mut self, e: redis::RedisError) {
        self.last_error = Some(e.to_string());
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// The last listing of `kind` another instance (or this one) published, as bytes.
    pub fn fetch_listing(&mut self, kind: ListKind) -> Option<Vec<u8>> {
        let key = listing_key(&self.library_id, kind);
        self.run(|c| redis::cmd("GET").arg(&key).query::<Option<Vec<u8>>>(c))
            .flatten()
    }

    /// Takes the library's scan lock for `ttl_ms` (set if absent, with expiry): `Some(true)`
    /// taken (or this instance held it already: its expiry is renewed), `Some(false)`
    /// another instance holds it, `None` Redis cannot be reached.
    pub fn try_scan_lock(&mut self, ttl_ms: u64) -> Option<bool> {
        let key = redis_key(&self.library_id, "scanning");
        let me = self.instance.clone();
        self.run(|c| {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&me)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query(c)?;
            if set.is_some() {
                return Ok(true);
            }
            let holder: Option<String> = redis::cmd("GET").arg(&key).query(c)?;
            if holder.as_deref() != Some(me.as_str()) {
                return Ok(false);
            }
            redis::cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl_ms)
                .query::<i64>(c)?;
            Ok(true)
        })
    }

    /// Releases the scan lock if this instance still holds it (a lock that expired and
    /// was taken by another is left alone; the gap between the two commands is harmless:
    /// at worst a second instance scans too).
    pub fn release_scan_lock(&mut self) {
        let key = redis_key(&self.library_id, "scanning");
        let me = self.instance.clone();
        let _ = self.run(|c| {
            let holder: Option<String> = redis::cmd("GET").arg(&key).query(c)?;
            if holder.as_deref() == Some(me.as_str()) {
                redis::cmd("DEL").arg(&key).query::<i64>(c)?;
            }
            Ok(())
        });
    }

    /// Counts a listing taken from Redis (`true`) or looked for in vain.
    pub fn record(&mut self, hit: bool) {
        if hit {
            self.counters.hits += 1;
        } else {
            self.counters.misses += 1;
        }
    }

    /// Publishes a listing's bytes for `ttl_secs` (at least one second).
    pub fn publish_listing(&mut self, kind: ListKind, bytes: &[u8], ttl_secs: u64) {
        let key = listing_key(&self.library_id, kind);
        let done = self.run(|c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(bytes)
                .arg("EX")
                .arg(ttl_secs.max(1))
                .query::<()>(c)
        });
        if done.is_some() {
            self.counters.published += 1;
        }
    }

    /// Tells the other instances what changed.
    pub fn send(&mut self, kind: EventKind, ids: Vec<String>, stamps: Option<[Option<u64>; 3]>) {
        self.send_event(Event {
            from: self.instance.clone(),
            kind,
            ids,
            stamps,
            ttl_secs: None,
        });
    }

    /// Tells the other instances the TTL is now `secs`.
    pub fn send_ttl(&mut self, secs: u64) {
        self.send_event(Event {
            from: self.instance.clone(),
            kind: EventKind::Ttl,
            ids: Vec::new(),
            stamps: None,
            ttl_secs: Some(secs),
        });
    }

    fn send_event(&mut self, event: Event) {
        let Ok(text) = serde_json::to_string(&event) else {
            return;
        };
        let channel = redis_key(&self.library_id, "events");
        let done = self.run(|c| {
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&text)
                .query::<i64>(c)
        });
        if done.is_some() {
            self.counters.sent += 1;
        }
    }

    /// The other instances' events received since the last call (and reconnections).
    pub fn received(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            if e.from != self.instance {
                if e.kind != EventKind::Reconnected {
                    self.counters.received += 1;
                }
                out.push(e);
            }
        }
        out
    }

    /// The state, for `cache-info`.
    pub fn info(&self) -> SharedCacheInfo {
        SharedCacheInfo {
            state: match (&self.conn, self.retry_at) {
                (Some(_), _) => "connected",
                (None, Some(_)) => "unreachable",
                (None, None) => "connecting",
            },
            url: self.url.clone(),
            library_id: self.library_id.clone(),
            shared_hits: self.counters.hits,
            shared_misses: self.counters.misses,
            listings_published: self.counters.published,
            invalidations_sent: self.counters.sent,
            invalidations_received: self.counters.received,
            listening: self.listening(),
            watching: self.session.is_some(),
            vouched: false,
            scans_spared: 0,
            last_error: self.last_error.clone(),
        }
    }
}

/// The subscriber: a thread of its own (a subscribed connection can do nothing else),
/// reconnecting with backoff, reporting each reconnection (events may have been missed).
/// The subscriber's flags: stop (set by the tier), listening (set by the subscriber).
struct Flags {
    stop: Arc<AtomicBool>,
    listening: Arc<AtomicBool>,
}

fn spawn_subscriber(client: redis::Client, channel: String, tx: Sender<Event>, flags: Flags) {
    let Flags { stop, listening } = flags;
    let _ = std::thread::Builder::new()
        .name("model-library-redis-events".into())
        .spawn(move || {
            let mut backoff = BACKOFF_MIN;
            let mut first = true;
            while !stop.load(Ordering::SeqCst) {
                let Ok(mut conn) = client.get_connection_with_timeout(IO_TIMEOUT) else {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                };
                backoff = BACKOFF_MIN;
                let mut pubsub = conn.as_pubsub();
                if pubsub.subscribe(&channel).is_err()
                    || pubsub
                        .set_read_timeout(Some(Duration::from_millis(250)))
                        .is_err()
                {
                    continue;
                }
                listening.store(true, Ordering::SeqCst);
                if !first {
                    let reconnected = Event {
                        from: String::new(),
                        kind: EventKind::Reconnected,
                        ids: Vec::new(),
                        stamps: None,
                        ttl_secs: None,
                    };
                    if tx.send(reconnected).is_err() {
                        return;
                    }
                }
                first = false;
                loop {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    match pubsub.get_message() {
                        Ok(msg) => {
                            let Ok(text) = msg.get_payload::<String>() else {
                                continue;
                            };
                            if let Ok(event) = serde_json::from_str::<Event>(&text)
                                && tx.send(event).is_err()
                            {
                                return;
                            }
                        }
                        Err(e) if e.is_timeout() => {}
                        Err(_) => {
                            listening.store(false, Ordering::SeqCst);
                            break; // lost: reconnect
                        }
                    }
                }
            }
        });
}

/// The library's id: `.cache/library-id`, made (32 random hex digits) by the first
/// instance that needs it. A file being written by another instance right now is waited
/// for, briefly.
pub fn library_id(library: &Library) -> Result<String> {
    let path = library.cache_dir().join(ID_FILE);
    let read = || {
        std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    if let Some(id) = read() {
        return Ok(id);
    }
    let id = random_hex(16);
    let made = library
        .open_writes()?
        .cache()?
        .create_new(ID_FILE)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(format!("{id}\n").as_bytes())?;
            f.sync_all()
        });
    match made {
        Ok(()) => Ok(id),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another instance is making it: its few bytes are there within moments.
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                if let Some(id) = read() {
                    return Ok(id);
                }
                if Instant::now() >= deadline {
                    return Err(LibraryError::InvalidInput {
                        what: format!("{} is not a library id", path.display()),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Err(e) => Err(LibraryError::io(&path, e)),
    }
}

/// `n` random bytes as hex, from the system's random source.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if filled.is_err() {
        // No /dev/urandom: time and process id (unique enough for naming an instance).
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id()) << 64;
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
