//! The polling verifier: where file events cannot be used, a thread of its own re-checks
//! the whole library round-robin against the latest full listing — every model folder
//! walked with stats alone (sizes, file counts, newest modification time; no file is
//! read), or, once walked, checked against its [`print`](super::print) with one `stat` per
//! entry — and reports the models that differ, so the service rescans just those. Any
//! change inside a model folder (a nested file, an in-place rewrite, a rename) therefore
//! shows within one pass, and so do names appearing in or vanishing from `models/` and
//! `.downloads/` (which also move the top-level stamps the service checks on every tick,
//! as do registry edits).
//!
//! A pass is spread over a period (29 s by default: with the tick that applies what it
//! found, a change shows within 30 s) so the verifier costs little: it works
//! a batch, then waits for the batch's share of the period. When a pass needs more than
//! its share of one core (5 %), the period grows until it does not, and the bound the app
//! states grows with it. Touches nothing; only reads directory entries and metadata.
//!
//! In the hybrid mode it checks only the models that file events do not cover ([`Scope`]);
//! events see the top level there.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::library::Clock;
use crate::library::cache::{Listing, SnapshotHandle};
use crate::library::layout::Library;
use crate::library::model::{LIBRARY_SOURCE, ModelInfo, ModelStatus};
use crate::library::scan::{walk, walk_at};

use super::Changes;
use super::print::{self, Print};

/// How the verifier paces itself.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifierOptions {
    /// The period a whole pass is spread over (the stated bound, unless the work needs
    /// longer to stay under `cpu_share`).
    pub period: Duration,
    /// The period in the hybrid mode, where only the model folders beyond the watch limit
    /// are polled: they are few, so a pass can come round sooner at the same CPU share.
    pub partial_period: Duration,
    /// The share of one core a pass may use on average (0.05 = 5 %).
    pub cpu_share: f64,
    /// Model folders checked between two waits.
    pub batch: usize,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        VerifierOptions {
            period: Duration::from_secs(29),
            partial_period: Duration::from_secs(5),
            cpu_share: 0.05,
            batch: 64,
        }
    }
}

/// Which models a verifier re-checks.
#[derive(Debug, Clone)]
pub enum Scope {
    /// Every model of the library, and the names in `models/` and `.downloads/`.
    All,
    /// Only these model folders (the ones file events do not cover; the set can grow).
    Only(Arc<Mutex<HashSet<String>>>),
}

/// Batches worked before the cost of a whole pass is projected from them (the first few
/// meet a cold cache and would overstate it).
const PROJECT_AFTER: usize = 16;

/// What the verifier found.
enum Finding {
    /// These models differ from the listing (or appeared, or vanished).
    Models(Vec<String>),
    /// A whole pass ended; it started at this clock time.
    PassDone { started: f64 },
}

/// The running verifier. Stops when dropped.
pub struct Verifier {
    findings: Receiver<Finding>,
    /// Dropping it wakes and stops the thread.
    _stop: Sender<()>,
    /// The current period in milliseconds (grows when passes are costly).
    period_ms: Arc<AtomicU64>,
    /// Clock time at which the last whole pass started.
    last_pass: Option<f64>,
    /// Busy time of the last pass (for benchmarks), shared with the thread.
    last_busy: Arc<Mutex<Option<Duration>>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("period_ms", &self.period_ms.load(Ordering::Relaxed))
            .field("last_pass", &self.last_pass)
            .finish()
    }
}

impl Verifier {
    /// Starts verifying `library` against the listings published on `snapshot`.
    pub fn start(
        library: Library,
        snapshot: SnapshotHandle,
        clock: Arc<dyn Clock>,
        options: VerifierOptions,
        scope: Scope,
    ) -> Verifier {
        let (findings_tx, findings) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel();
        let mut options = options;
        if matches!(scope, Scope::Only(_)) {
            options.period = options.partial_period;
        }
        let period_ms = Arc::new(AtomicU64::new(options.period.as_millis() as u64));
        let last_busy = Arc::new(Mutex::new(None));
        let worker = Worker {
            library,
            snapshot,
            clock,
            options,
            scope,
            findings: findings_tx,
            stop: stop_rx,
            period_ms: Arc::clone(&period_ms),
            last_busy: Arc::clone(&last_busy),
            prints: Prints::default(),
        };
        let _ = std::thread::Builder::new()
            .name("model-library-verifier".into())
            .spawn(move || worker.run());
        Verifier {
            findings,
            _stop: stop,
            period_ms,
            last_pass: None,
            last_busy,
        }
    }

    /// Adds what was found since the last call to `changes` (never blocks).
    pub fn drain_into(&mut self, changes: &mut Changes) {
        for finding in self.findings.try_iter() {
            match finding {
                Finding::Models(ids) => changes.models.extend(ids),
                Finding::PassDone { started } => self.last_pass = Some(started),
            }
        }
    }

    /// The longest a change can stay unseen: one period, plus a second for the tick that
    /// applies what the verifier found.
    pub fn bound_secs(&self) -> f64 {
        (self.period_ms.load(Ordering::Relaxed) as f64 / 1000.0 + 1.0).ceil()
    }

    /// Clock time at which the last whole pass started (every change older than that was
    /// seen by it).
    pub fn last_pass(&self) -> Option<f64> {
        self.last_pass
    }

    /// Time the last pass spent working (not waiting).
    pub fn last_busy(&self) -> Option<Duration> {
        *self.last_busy.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Worker {
    library: Library,
    snapshot: SnapshotHandle,
    clock: Arc<dyn Clock>,
    options: VerifierOptions,
    scope: Scope,
    findings: Sender<Finding>,
    stop: Receiver<()>,
    period_ms: Arc<AtomicU64>,
    last_busy: Arc<Mutex<Option<Duration>>>,
    prints: Prints,
}

impl Worker {
    /// Waits up to `d`; false when the verifier is to stop.
    fn wait(&self, d: Duration) -> bool {
        matches!(self.stop.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }

    fn run(mut self) {
        loop {
            let Some(listing) = self.snapshot.latest() else {
                // Nothing to verify against until the first full listing.
                if !self.wait(Duration::from_millis(100)) {
                    return;
                }
                continue;
            };
            if !self.pass(&listing) {
                return;
            }
        }
    }

    /// One whole pass; false when the verifier is to stop.
    fn pass(&mut self, listing: &Listing) -> bool {
        let started_clock = self.clock.now();
        let started = Instant::now();
        let mut period = Duration::from_millis(self.period_ms.load(Ordering::Relaxed));
        let mut busy = Duration::ZERO;

        let t = Instant::now();
        let (mut found, rows) = match &self.scope {
            Scope::All => (
                top_level_differences(&self.library, listing),
                library_rows(listing, |_| true),
            ),
            Scope::Only(ids) => {
                let ids = ids.lock().unwrap_or_else(|e| e.into_inner());
                (Vec::new(), library_rows(listing, |id| ids.contains(id)))
            }
        };
        busy += t.elapsed();
        let models_dir = self.library.models_dir();
        let models_fd = crate::library::walk::open_dir(&models_dir).ok();
        let models = models_fd
            .as_ref()
            .map(|fd| (fd.as_fd(), models_dir.as_path()));
        let batches = rows.len().div_ceil(self.options.batch.max(1)).max(1);
        for (i, chunk) in rows.chunks(self.options.batch.max(1)).enumerate() {
            let t = Instant::now();
            found.extend(
                chunk
                    .iter()
                    .filter(|m| self.prints.differs(m, models))
                    .map(|m| m.id.clone()),
            );
            busy += t.elapsed();
            if !found.is_empty() && self.findings.send(Finding::Models(found)).is_err() {
                return false;
            }
            found = Vec::new();
            // Keep to the CPU share from the first pass on: once enough of the pass was done
            // to project its cost, the period is what that cost needs (never below the one
            // asked for), and the bound stated follows it.
            if i + 1 >= PROJECT_AFTER.min(batches) {
                let projected = busy.mul_f64(batches as f64 / (i + 1) as f64);
                let needed = projected.div_f64(self.options.cpu_share.max(0.001));
                period = needed.max(self.options.period);
                self.period_ms
                    .store(period.as_millis() as u64, Ordering::Relaxed);
            }
            // Spread the pass: wait until this batch's share of the period has passed.
            let due = period.mul_f64((i + 1) as f64 / batches as f64);
            if let Some(left) = due.checked_sub(started.elapsed())
                && !self.wait(left)
            {
                return false;
            }
        }
        if !found.is_empty() && self.findings.send(Finding::Models(found)).is_err() {
            return false;
        }
        let checked: HashSet<&str> = rows.iter().map(|m| m.id.as_str()).collect();
        self.prints
            .map
            .retain(|id, _| checked.contains(id.as_str()));
        if self
            .findings
            .send(Finding::PassDone {
                started: started_clock,
            })
            .is_err()
        {
            return false;
        }
        *self.last_busy.lock().unwrap_or_else(|e| e.into_inner()) = Some(busy);
        // Keep to the CPU share: a costly pass stretches the next period.
        let needed = busy.div_f64(self.options.cpu_share.max(0.001));
        let next = needed.max(self.options.period);
        self.period_ms
            .store(next.as_millis() as u64, Ordering::Relaxed);
        // A pass with batches already waited out its period; one with nothing to check
        // (an empty library, polled folders without rows yet) waits for it here.
        let rest = period.saturating_sub(started.elapsed());
        self.wait(rest.max(Duration::from_millis(10)))
    }
}

/// The library's rows of `listing` whose id `keep` accepts.
fn library_rows(listing: &Listing, keep: impl Fn(&str) -> bool) -> Vec<&ModelInfo> {
    listing
        .models
        .iter()
        .filter(|m| m.source == LIBRARY_SOURCE && keep(&m.id))
        .map(|m| &**m)
        .collect()
}

/// Names in `models/` and `.downloads/` that the listing does not have, and rows that
/// have something on disk by the listing but no name there now. (The service also checks
/// the top-level modification times on every tick; this pass does not depend on their
/// granularity.)
fn top_level_differences(library: &Library, listing: &Listing) -> Vec<String> {
    let mut on_disk: HashSet<String> = HashSet::new();
    for dir in [library.models_dir(), library.downloads_dir()] {
        if let Ok(rd) = fs::read_dir(&dir) {
            on_disk.extend(
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.')),
            );
        }
    }
    let listed: HashSet<String> = listing
        .models
        .iter()
        .filter(|m| {
            m.source == LIBRARY_SOURCE && (!m.registered || m.status != ModelStatus::Available)
        })
        .map(|m| m.id.clone())
        .collect();
    on_disk.symmetric_difference(&listed).cloned().collect()
}

/// The prints of the model folders checked, and a buffer for the paths they stat.
#[derive(Default)]
struct Prints {
    map: HashMap<String, Print>,
    buf: Vec<u8>,
}

impl Prints {
    /// Whether a model's folder no longer matches its row. When the folder's print still
    /// holds (one `stat` per entry), it does not; otherwise the folder is walked as a full
    /// scan walks it (stats only, relative to the open `models/` folder when the row is in
    /// it) and compared on size, file count and newest modification time, and a folder that
    /// matches gets a new print. A folder that is a link is never walked: it only has to
    /// still be a link.
    fn differs(&mut self, m: &ModelInfo, models: Option<(BorrowedFd<'_>, &Path)>) -> bool {
        let at = models.and_then(|(fd, dir)| m.folder_in(dir).map(|name| (fd, name)));
        if let Some((fd, _)) = at
            && let Some(print) = self.map.get(&m.id)
            && print.is_for(m)
            && print.holds(fd, &mut self.buf)
        {
            return false;
        }
        self.map.remove(&m.id);
        let path = m.path();
        let (w, taker) = match at {
            Some((fd, name)) => {
                let mut taker = print::Taker::new(name);
                let w = walk_at(fd, name, &path, &mut |e| taker.note(e));
                (w, Some(taker))
            }
            None => (walk(&path), None),
        };
        if w.missing {
            return m.modified().is_some();
        }
        if !w.errors.is_empty() {
            return match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    m.size_bytes() != Some(0) || m.file_count() != Some(0)
                }
                // Something could not be read: let the scanner look (and say what).
                _ => true,
            };
        }
        let differs = m.size_bytes() != Some(w.size)
            || m.file_count() != Some(w.files)
            || m.modified() != w.newest;
        if !differs && let (Some(taker), Some(root_mtime)) = (taker, w.root_mtime) {
            self.map.insert(m.id.clone(), taker.finish(m, root_mtime));
        }
        differs
    }
}
