//! [`ModelLibraryService`]: the library behind one `&mut self` API. It owns the service cache
//! (keys `"all"` and `"fast"`), the view cache (filtered results keyed like the original
//! service's API cache), their counters, the TTL and the invalidation triggers of SPEC §5.
//! Time comes from an injected [`Clock`]. Reads the library through `scan`/`registry`; writes
//! only through the actions' modules and the persisted listing.
//!
//! This file has the struct, its options and the read path (list, views, refresh, TTL).
//! The rest is split by what it touches: `commit` (scanning and the one place a new full
//! listing is installed), `incremental` (watched changes, selective rescans, start-up
//! revalidation), `info` (`cache_info`), `actions` (downloads, deletes, imports) and
//! `lifecycle` (recovery, watching, background metadata).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

pub use crate::library::cache::SnapshotHandle;
use crate::library::cache::{
    Counters, DEFAULT_TTL_SECS, Listing, Staleness, Stamps, TTL_MAX_SECS, TTL_MIN_SECS, View,
};
use crate::library::clock::{Clock, SystemClock};
use crate::library::delete::{self, DeleteMode, DeleteOutcome, DeletePlan};
use crate::library::download::{DownloadBoard, DownloadEvent, DownloadManager, DownloadOptions};
use crate::library::error::{LibraryError, Result};
use crate::library::import::{self, ImportOutcome, ImportRequest};
use crate::library::layout::{Library, validate_id};
use crate::library::metadata::MetadataCache;
use crate::library::model::ListKind;
use crate::library::model::{LIBRARY_SOURCE, ListQuery, ModelInfo, ModelMetadata, ModelStatus};
use crate::library::persist::{self, LoadProblem};
use crate::library::registry_copy;
use crate::library::registry_pack::PackedRegistry;
use crate::library::scan::{self, ProgressReading, ScanInput, ScanProgress};
use crate::library::sources::{self, SourceConfig};
use crate::library::watch::verifier::VerifierOptions;
use crate::library::watch::{
    Changes, LibraryWatcher, PollInputs, SetupHook, StoreWatcher, WatchMode, WatchOption,
};

mod actions;
mod commit;
mod disk;
mod incremental;
mod info;
mod lifecycle;
mod shared;
mod verify;

pub use disk::DuplicatesState;
pub use info::{CacheInfo, ServiceCacheInfo, ViewCacheInfo};
pub use verify::{VerifyReport, VerifyState};

/// How a service is set up.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Cache TTL in seconds (30..=3600).
    pub ttl_secs: u64,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Where scans report progress (share it to watch a scan from another thread).
    pub progress: Arc<ScanProgress>,
    /// Where downloads report progress (share it to draw progress bars).
    pub downloads: Arc<DownloadBoard>,
    /// Timeouts and parallelism of downloads.
    pub download_options: DownloadOptions,
    /// Save each full listing under `.cache/` and offer it at the next start.
    pub persist: bool,
    /// Bumped each time watching changes what a listing shows (share it to know when to
    /// list again).
    pub generation: Arc<AtomicU64>,
    /// Read-only stores listed beside the library (Hugging Face cache, Ollama, LM Studio);
    /// none by default. See [`crate::library::sources::default_sources`].
    pub sources: Vec<SourceConfig>,
    /// How changes on disk are noticed. `Off` by default (one-shot commands, tests); the
    /// window and `serve` watch (`auto`). Watching starts before the first scan.
    pub watch: WatchOption,
    /// How the polling verifier paces itself.
    pub verifier: VerifierOptions,
    /// The most folders file events may watch (`None`: the system's inotify limit less
    /// room for other programs, see [`crate::library::watch::system_budget`]). Model
    /// folders beyond it are polled beside the events (the hybrid mode).
    pub watch_budget: Option<usize>,
    /// Runs on the watch set-up thread before it sets up anything (tests hold it there).
    #[doc(hidden)]
    pub watch_setup_hook: Option<WatchSetupHook>,
    /// The Redis URL of a shared cache tier (`--redis`), `None` for none (see
    /// [`crate::library::shared`]).
    pub redis: Option<String>,
}

/// A [`SetupHook`] that can sit in [`ServiceOptions`].
#[derive(Clone)]
pub struct WatchSetupHook(pub SetupHook);

impl std::fmt::Debug for WatchSetupHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchSetupHook")
    }
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            ttl_secs: DEFAULT_TTL_SECS,
            clock: Arc::new(SystemClock),
            progress: Arc::default(),
            downloads: Arc::default(),
            download_options: DownloadOptions::default(),
            persist: true,
            generation: Arc::default(),
            sources: Vec::new(),
            watch: WatchOption::Off,
            verifier: VerifierOptions::default(),
            watch_budget: None,
            watch_setup_hook: None,
            redis: None,
        }
    }
}

/// A filtered listing and whether it came from the view cache.
#[derive(Debug, Clone)]
pub struct ViewResult {
    /// The rows.
    pub view: View,
    /// Whether the view cache answered.
    pub cache_hit: bool,
}

/// What `refresh` did (the original service's `cache_info` in its refresh answer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefreshInfo {
    /// Always true: the caches were rebuilt.
    pub cache_refreshed: bool,
    /// Clock time of the refresh.
    pub timestamp: f64,
    /// Models in the full listing before.
    pub old_model_count: usize,
    /// Models in the full listing after.
    pub new_model_count: usize,
    /// Service cache keys now filled.
    pub cache_keys: Vec<String>,
}

/// The model library service: scanning plus two cache levels. `Send`; wrap it in a mutex
/// (or give it to one worker thread) to share it.
#[derive(Debug)]
pub struct ModelLibraryService {
    library: Library,
    clock: Arc<dyn Clock>,
    /// Always within `TTL_MIN_SECS..=TTL_MAX_SECS` (checked by `check_ttl`).
    ttl_secs: u64,
    /// The service cache. A listing here may be invalid (its validity is checked on each
    /// use); the full one is replaced only through `install_full`.
    listings: HashMap<ListKind, Arc<Listing>>,
    /// The view cache: each view shares (by `Arc`) a listing that is in `listings`; a view
    /// whose listing was replaced is dropped (`drop_stale_views`), never served.
    views: BTreeMap<String, View>,
    service_counters: Counters,
    view_counters: Counters,
    /// Why both levels were dropped, until the next scan fills them.
    invalidated: Option<String>,
    /// The last scan's error; cleared by the next successful scan.
    last_error: Option<String>,
    /// Ids with a download running in this process; scans show them as `downloading`.
    downloading: HashSet<String>,
    progress: Arc<ScanProgress>,
    /// The latest full listing for other threads; always a whole listing that was in
    /// `listings` when published.
    published: SnapshotHandle,
    downloads: DownloadManager,
    persist: bool,
    /// What loading or revalidating the saved listing found (saving says its own).
    persist_note: Option<String>,
    /// Writes full listings off the service's thread.
    saver: persist::Saver,
    /// The listing saved by the last run, offered until the first full listing replaces
    /// it; never served as a cache hit.
    warm: Option<Arc<Listing>>,
    watcher: Option<LibraryWatcher>,
    /// The registry read by the last scan, slim (no names and descriptions: set only
    /// through `remember_registry`), and the registry mtime it was read at; reused by
    /// selective rescans only while that mtime is unchanged.
    registry_cache: Option<(Option<f64>, Arc<PackedRegistry>)>,
    /// Bumped whenever a new full listing is installed or the caches are invalidated by a
    /// change on disk; shells list again when it moves.
    generation: Arc<AtomicU64>,
    sources: Vec<SourceConfig>,
    /// Watchers of the enabled stores, by index into `sources`.
    store_watchers: Vec<(usize, StoreWatcher)>,
    /// Header metadata by (path, size, mtime); shared with the thread reading headers.
    metadata: Arc<std::sync::Mutex<MetadataCache>>,
    /// The batch of headers being read on a thread of its own, if any.
    metadata_job: Option<lifecycle::MetadataJob>,
    /// Where background metadata reading is in which full listing; restarts at 0 when the
    /// full listing is another one.
    enrich_cursor: (Arc<Listing>, usize),
    /// Stores that could not be read by the last scan, for the listing's problems.
    source_problems: Vec<String>,
    /// Whether interrupted imports were looked for (once, before the first listing or
    /// write of this service).
    recovered: bool,
    /// What that recovery did, one line each, for `cache_info` and the shells.
    recovery: Vec<String>,
    /// How to watch; the watcher is started (once) before the first scan.
    watch_option: WatchOption,
    verifier_options: VerifierOptions,
    watch_budget: Option<usize>,
    watch_hook: Option<WatchSetupHook>,
    /// A full scan running on its own thread (the one after the watches were set up),
    /// with what changed while it ran.
    background: Option<lifecycle::BackgroundScan>,
    /// Work since the allocator last gave free memory back (a listing replaced, a
    /// reclaimable or verify look): the next idle tick gives it back, once.
    memory_to_release: bool,
    /// Bumped by everything that makes a scan's result outdated as a whole (invalidation,
    /// a download starting): a background scan started under another epoch is discarded.
    epoch: u64,
    /// When the last scan of everything that was installed started (clock time): every
    /// change before it is in the listing.
    last_full_scan: Option<f64>,
    /// What verify runs found wrong (`.cache/verify.bin`) and the state of that file when
    /// it was read: read again when another process's run changed it. Every full listing
    /// installed marks the models whose files are still as found.
    verify_failures: Option<(
        Option<crate::library::verify::FileKey>,
        crate::library::verify::Failures,
    )>,
    /// The verify run going on its own thread, if any (one at a time).
    verify_job: Option<verify::RunningVerify>,
    /// What the last verify run started here found.
    last_verify: Option<verify::VerifyReport>,
    /// Duplicates being found or linked on their threads, and what the last such work did.
    duplicates: disk::DuplicatesWork,
    /// The shared cache tier: its URL (checked in `new`), the tier once first needed, and
    /// why it could not be set up.
    shared: shared::SharedState,
}

impl ModelLibraryService {
    /// A service over `library`. Does no I/O; the first listing scans.
    pub fn new(library: Library, options: ServiceOptions) -> Result<Self> {
        check_ttl(options.ttl_secs as i64)?;
        let shared = shared::SharedState::new(options.redis)?;
        Ok(ModelLibraryService {
            shared,
            saver: persist::Saver::new(library.clone()),
            library,
            clock: options.clock,
            ttl_secs: options.ttl_secs,
            listings: HashMap::new(),
            views: BTreeMap::new(),
            service_counters: Counters::default(),
            view_counters: Counters::default(),
            invalidated: None,
            last_error: None,
            downloading: HashSet::new(),
            progress: options.progress,
            downloads: DownloadManager::new(options.downloads, &options.download_options),
            persist: options.persist,
            persist_note: None,
            warm: None,
            watcher: None,
            registry_cache: None,
            generation: options.generation,
            sources: options.sources,
            store_watchers: Vec::new(),
            metadata: Arc::default(),
            metadata_job: None,
            enrich_cursor: (Arc::new(Listing::empty()), 0),
            source_problems: Vec::new(),
            published: SnapshotHandle::default(),
            recovered: false,
            recovery: Vec::new(),
            watch_option: options.watch,
            verifier_options: options.verifier,
            watch_budget: options.watch_budget,
            watch_hook: options.watch_setup_hook,
            background: None,
            memory_to_release: false,
            epoch: 0,
            last_full_scan: None,
            verify_failures: None,
            verify_job: None,
            last_verify: None,
            duplicates: disk::DuplicatesWork::default(),
        })
    }

    /// The library this service reads.
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// The current TTL in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Sets the TTL. Outside 30..=3600 it is refused with an error naming the range, and
    /// nothing changes.
    pub fn set_ttl(&mut self, secs: i64) -> Result<u64> {
        self.ttl_secs = check_ttl(secs)?;
        // Instances sharing a cache share its TTL too.
        self.tell_shared_ttl(self.ttl_secs);
        Ok(self.ttl_secs)
    }

    /// Progress of the running scan; the handle can be read from any thread.
    pub fn progress(&self) -> Arc<ScanProgress> {
        Arc::clone(&self.progress)
    }

    /// A handle on the latest full listing for readers on other threads.
    pub fn snapshot_handle(&self) -> SnapshotHandle {
        self.published.clone()
    }

    /// Loads the listing persisted by an earlier run, to show at once while the first real
    /// listing is built (stale-while-revalidate). It is never served as a cache hit: the
    /// first `list` scans. A corrupt, truncated, foreign or old-version file is ignored, and
    /// the reason is kept for `cache_info`.
    pub fn warm_start(&mut self) -> Option<Arc<Listing>> {
        if !self.persist {
            return None;
        }
        match persist::load(&self.library) {
            Ok(listing) => {
                self.persist_note = Some(format!(
                    "loaded {} models from {}",
                    listing.models.len(),
                    persist::path(&self.library).display()
                ));
                let listing = Arc::new(listing);
                self.warm = Some(Arc::clone(&listing));
                Some(listing)
            }
            Err(LoadProblem::Absent) => None,
            Err(LoadProblem::Ignored(why)) => {
                self.persist_note = Some(format!("ignored persisted listing: {why}"));
                None
            }
        }
    }

    /// Waits until every full listing handed to the saver is written (saving runs on a
    /// thread of its own; dropping the service waits too).
    pub fn flush_saves(&self) {
        self.saver.flush();
    }

    /// The generation counter, bumped whenever watching changed the listing.
    pub fn generation(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.generation)
    }

    /// Whether the listing on offer is the persisted one, not yet revalidated by a scan.
    pub fn revalidating(&self) -> bool {
        self.warm.is_some()
    }

    /// The listing of `kind`, from the service cache while it is valid, else by scanning.
    /// `force_refresh` skips the cache. On error the old listing stays cached (but is not
    /// served while invalid) and the error is returned.
    pub fn list(&mut self, kind: ListKind, force_refresh: bool) -> Result<Arc<Listing>> {
        self.recover_interrupted();
        // Watch first, then scan: a change made during the scan is not missed.
        self.ensure_watching();
        let racy_check = self.racy_check();
        if !force_refresh
            && let Some(listing) = self.listings.get(&kind)
            && listing
                .check(
                    self.clock.now(),
                    self.ttl_secs,
                    &Stamps::read(&self.library),
                    racy_check,
                )
                .is_ok()
        {
            self.service_counters.record(true);
            return Ok(Arc::clone(listing));
        }
        self.service_counters.record(false);
        // Another instance's listing, when it passes this one's checks: no scan; or the
        // one another instance is scanning right now, waited for (bounded).
        if !force_refresh
            && let Some(listing) = self.take_shared(kind).or_else(|| match kind {
                ListKind::Full => self.wait_for_shared_scan(),
                ListKind::Fast => None, // one read of a folder: no lock worth taking
            })
        {
            return Ok(listing);
        }
        let result = if kind == ListKind::Full
            && !force_refresh
            && let Some(warm) = self.warm.clone()
        {
            self.revalidate(&warm)
        } else {
            self.rescan(kind)
        };
        self.release_scan_lock(shared::LockFor::Foreground);
        result
    }

    /// The listing filtered by `query`, from the view cache when the listing under it is
    /// still the valid cached one.
    pub fn list_view(&mut self, query: &ListQuery, force_refresh: bool) -> Result<ViewResult> {
        let kind = if query.quick {
            ListKind::Fast
        } else {
            ListKind::Full
        };
        let listing = self.list(kind, force_refresh)?;
        let key = query.cache_key();
        if let Some(view) = self.views.get(&key)
            && Arc::ptr_eq(&view.listing, &listing)
        {
            self.view_counters.record(true);
            return Ok(ViewResult {
                view: view.clone(),
                cache_hit: true,
            });
        }
        self.view_counters.record(false);
        let view = View::filter(listing, query);
        self.views.insert(key, view.clone());
        Ok(ViewResult {
            view,
            cache_hit: false,
        })
    }

    /// Drops both cache levels and rebuilds both service keys.
    pub fn refresh(&mut self) -> Result<RefreshInfo> {
        let old_model_count = self
            .listings
            .get(&ListKind::Full)
            .or_else(|| self.listings.get(&ListKind::Fast))
            .map_or(0, |l| l.models.len());
        self.invalidate("manual refresh");
        let full = self.rescan(ListKind::Full)?;
        self.rescan(ListKind::Fast)?;
        self.tell_shared(crate::library::shared::EventKind::Changed, Vec::new());
        Ok(RefreshInfo {
            cache_refreshed: true,
            timestamp: full.timestamp,
            old_model_count,
            new_model_count: full.models.len(),
            cache_keys: self.cache_keys(),
        })
    }

    /// Drops both cache levels; `by` is shown as the reason until the next scan.
    pub fn invalidate(&mut self, by: &str) {
        self.epoch += 1;
        self.forget_coverage();
        self.listings.clear();
        self.views.clear();
        self.invalidated = Some(by.to_string());
    }

    /// Ids with a download running.
    pub fn downloading(&self) -> &HashSet<String> {
        &self.downloading
    }

    /// The cached listing of `kind`, valid or not (the last good one after an error).
    pub fn cached(&self, kind: ListKind) -> Option<Arc<Listing>> {
        self.listings.get(&kind).cloned()
    }

    /// Progress of the current scan.
    pub fn progress_reading(&self) -> ProgressReading {
        self.progress.read()
    }

    /// The racy-timestamp rule guards mtime-based checks; with file events, a change in
    /// the same clock tick is reported by its event instead.
    fn racy_check(&self) -> bool {
        self.watch_mode() != WatchMode::Events
    }
}

/// Ids mid-import (journals under `.cache/imports/`) and why each is `partial`.
fn importing_now(library: &Library) -> HashMap<String, String> {
    import::pending(library)
        .into_iter()
        .map(|p| (p.id, p.note))
        .collect()
}

/// Keeps the rows of the other stores after the library's, by id (the order scans give).
fn sort_store_rows(models: &mut [Arc<ModelInfo>]) {
    let library_count = models
        .iter()
        .take_while(|m| m.source == LIBRARY_SOURCE)
        .count();
    models[library_count..].sort_by(|a, b| a.id.cmp(&b.id));
}

fn check_ttl(secs: i64) -> Result<u64> {
    if (TTL_MIN_SECS as i64..=TTL_MAX_SECS as i64).contains(&secs) {
        Ok(secs as u64)
    } else {
        Err(LibraryError::InvalidTtl {
            secs,
            min: TTL_MIN_SECS,
            max: TTL_MAX_SECS,
        })
    }
}
