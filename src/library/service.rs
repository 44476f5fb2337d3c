//! [`ModelLibraryService`]: the library behind one `&mut self` API. It owns the service cache
//! (keys `"all"` and `"fast"`), the view cache (filtered results keyed like the original
//! service's API cache), their counters, the TTL and the invalidation triggers of SPEC §5.
//! Time comes from an injected [`Clock`]. Reads the library through `scan`/`registry`; writes
//! nothing on its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use serde::Serialize;

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
use crate::library::model::{LIBRARY_SOURCE, ListQuery, ModelInfo, ModelMetadata, ModelStatus};
use crate::library::persist::{self, LoadProblem};
use crate::library::registry::Registry;
use crate::library::scan::{self, ListKind, ProgressReading, ScanInput, ScanProgress};
use crate::library::sources::{self, SourceConfig};
use crate::library::watch::{Changes, LibraryWatcher, StoreWatcher, WatchMode};

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

/// State of the service cache, in the original service's shape plus counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceCacheInfo {
    /// Whether the main listing may be served now.
    pub cache_valid: bool,
    /// When the main listing was built (clock time), if any.
    pub cache_timestamp: Option<f64>,
    /// Its age in seconds.
    pub cache_age_seconds: Option<f64>,
    /// The TTL in seconds.
    pub cache_ttl_seconds: u64,
    /// Models in the main listing.
    pub cached_model_count: usize,
    /// Filled keys (`all`, `fast`).
    pub cache_keys: Vec<String>,
    /// Current mtime of `model_registry.json`.
    pub registry_mtime: Option<f64>,
    /// Current mtime of `models/`.
    pub models_dir_mtime: Option<f64>,
    /// Current mtime of `.downloads/`.
    pub downloads_dir_mtime: Option<f64>,
    /// Why the main listing cannot be served, when it cannot.
    pub stale_reason: Option<String>,
    /// Service cache hits since start.
    pub hits: u64,
    /// Service cache misses since start.
    pub misses: u64,
    /// hits / (hits + misses).
    pub hit_rate: Option<f64>,
    /// Wall time of the last scan, milliseconds.
    pub last_scan_duration_ms: Option<f64>,
    /// The last scan's error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Registry entries that could not be listed.
    pub registry_problems: Vec<String>,
    /// The library folder.
    pub library: String,
    /// Whether the listing on offer is the persisted one, being revalidated.
    pub revalidating: bool,
    /// What happened to the persisted listing (loaded, saved, ignored and why).
    pub persisted: Option<String>,
    /// How changes are noticed: file events, polling (and why), or not watching.
    pub watch_mode: String,
    /// Why nothing is written to this library (one of its folders is a symbolic link), or
    /// `None` when writes are on. Listing works either way.
    pub read_only_reason: Option<String>,
    /// What the recovery of interrupted imports did at start, one line each.
    pub recovery: Vec<String>,
}

/// State of the view cache, in the original service's shape plus counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewCacheInfo {
    /// Keys of the cached views.
    pub api_cache_keys: Vec<String>,
    /// Number of cached views.
    pub api_cache_entries: usize,
    /// View cache hits since start.
    pub hits: u64,
    /// View cache misses since start.
    pub misses: u64,
    /// hits / (hits + misses).
    pub hit_rate: Option<f64>,
}

/// Both levels, as `GET /api/models/cache-info` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheInfo {
    /// The service cache.
    pub service_cache: ServiceCacheInfo,
    /// The view (API) cache.
    pub api_cache: ViewCacheInfo,
}

/// The latest full listing, readable from other threads without the service: a reader
/// clones the `Arc` and always sees a whole listing, never a torn one.
#[derive(Debug, Clone, Default)]
pub struct SnapshotHandle(Arc<RwLock<Option<Arc<Listing>>>>);

impl SnapshotHandle {
    /// The latest full listing, if one was built.
    pub fn latest(&self) -> Option<Arc<Listing>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn publish(&self, listing: Arc<Listing>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(listing);
    }
}

/// The model library service: scanning plus two cache levels. `Send`; wrap it in a mutex
/// (or give it to one worker thread) to share it.
#[derive(Debug)]
pub struct ModelLibraryService {
    library: Library,
    clock: Arc<dyn Clock>,
    ttl_secs: u64,
    listings: HashMap<ListKind, Arc<Listing>>,
    views: BTreeMap<String, View>,
    service_counters: Counters,
    view_counters: Counters,
    invalidated: Option<String>,
    last_error: Option<String>,
    downloading: HashSet<String>,
    progress: Arc<ScanProgress>,
    published: SnapshotHandle,
    downloads: DownloadManager,
    persist: bool,
    persist_note: Option<String>,
    warm: Option<Arc<Listing>>,
    watcher: Option<LibraryWatcher>,
    registry_cache: Option<(Option<f64>, Arc<Registry>)>,
    generation: Arc<AtomicU64>,
    sources: Vec<SourceConfig>,
    store_watchers: Vec<(usize, StoreWatcher)>,
    metadata: MetadataCache,
    enrich_cursor: (Arc<Listing>, usize),
    source_problems: Vec<String>,
    /// Whether interrupted imports were looked for (once, before the first listing or
    /// write of this service).
    recovered: bool,
    /// What that recovery did, one line each, for `cache_info` and the shells.
    recovery: Vec<String>,
}

impl ModelLibraryService {
    /// A service over `library`. Does no I/O; the first listing scans.
    pub fn new(library: Library, options: ServiceOptions) -> Result<Self> {
        check_ttl(options.ttl_secs as i64)?;
        Ok(ModelLibraryService {
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
            metadata: MetadataCache::new(),
            enrich_cursor: (Arc::new(Listing::empty()), 0),
            source_problems: Vec::new(),
            published: SnapshotHandle::default(),
            recovered: false,
            recovery: Vec::new(),
        })
    }

    /// The library this service reads.
    pub fn library(&self) -> &Library {
        &self.library
    }

    /// Completes or discards the imports that an earlier process left unfinished (see
    /// [`import::recover`]); runs once, before this service's first listing or write.
    /// What it did is kept for [`ModelLibraryService::recovery_notes`] and `cache_info`.
    pub fn recover_interrupted(&mut self) {
        if self.recovered {
            return;
        }
        self.recovered = true;
        match import::recover(&self.library) {
            Ok(done) => self.recovery = done,
            Err(e) => self.recovery = vec![format!("could not finish interrupted imports: {e}")],
        }
        match delete::finish_interrupted(&self.library) {
            Ok(0) => {}
            Ok(n) => self.recovery.push(format!(
                "finished {n} delete{} that an earlier run left half done",
                if n == 1 { "" } else { "s" }
            )),
            Err(e) => self
                .recovery
                .push(format!("could not finish interrupted deletes: {e}")),
        }
        if !self.recovery.is_empty() {
            self.invalidate("recovery of interrupted imports");
        }
    }

    /// What the recovery of interrupted imports did (empty when nothing was left over).
    pub fn recovery_notes(&self) -> &[String] {
        &self.recovery
    }

    /// The current TTL in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Sets the TTL. Outside 30..=3600 it is refused with an error naming the range, and
    /// nothing changes.
    pub fn set_ttl(&mut self, secs: i64) -> Result<u64> {
        self.ttl_secs = check_ttl(secs)?;
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

    /// Starts watching the library for changes (file events, else polling). Walks the
    /// library to set up the watches: call it from a worker thread.
    pub fn start_watching(&mut self) {
        self.watcher = Some(LibraryWatcher::start(&self.library));
        self.store_watchers = self
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.enabled && s.root_exists())
            .filter_map(|(i, s)| StoreWatcher::start(&s.root).map(|w| (i, w)))
            .collect();
    }

    /// Watches in polling mode only (for tests and file systems without events).
    pub fn start_polling(&mut self, reason: &str) {
        self.watcher = Some(LibraryWatcher::polling(&self.library, reason.to_string()));
    }

    /// How changes are noticed.
    pub fn watch_mode(&self) -> WatchMode {
        self.watcher
            .as_ref()
            .map_or(WatchMode::Off, |w| w.mode().clone())
    }

    /// The racy-timestamp rule guards mtime-based checks; with file events, a change in
    /// the same clock tick is reported by its event instead.
    fn racy_check(&self) -> bool {
        self.watch_mode() != WatchMode::Events
    }

    /// The generation counter, bumped whenever watching changed the listing.
    pub fn generation(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.generation)
    }

    /// Applies what the watcher saw since the last call: touched models are rescanned and
    /// the rest of the full listing is reused (selective invalidation); a registry edit or
    /// an event that cannot be pinned down invalidates everything; in polling mode, changed
    /// stamps do. Returns whether anything changed (and bumps the generation then).
    pub fn apply_changes(&mut self) -> bool {
        let stores_changed = self.apply_store_changes();
        if stores_changed {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        let Some(watcher) = self.watcher.as_mut() else {
            return stores_changed;
        };
        let changed = match watcher.mode() {
            WatchMode::Off => false,
            WatchMode::Polling { .. } => {
                let stamps = Stamps::read(&self.library);
                let stale = self.listings.values().any(|l| l.stamps != stamps);
                if stale {
                    self.invalidate("files changed");
                }
                stale
            }
            WatchMode::Events => {
                let mut changes = watcher.drain();
                self.reconcile_top_level(&mut changes);
                if changes.is_empty() {
                    false
                } else if changes.everything || changes.registry {
                    self.invalidate("files changed");
                    true
                } else {
                    self.apply_model_changes(changes.models.into_iter().collect())
                }
            }
        };
        if changed {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        changed || stores_changed
    }

    /// Reads header metadata (GGUF, safetensors) for up to `budget` library models that have
    /// none yet, in the background after a listing is built, so scans stay fast; headers are
    /// cached by (path, size, mtime), so a model is read once. Returns whether the listing
    /// gained metadata (then the generation moves).
    pub fn enrich_metadata(&mut self, budget: usize) -> bool {
        let Some(full) = self.listings.get(&ListKind::Full).cloned() else {
            return false;
        };
        if !Arc::ptr_eq(&full, &self.enrich_cursor.0) {
            self.enrich_cursor = (Arc::clone(&full), 0);
        }
        let start = self.enrich_cursor.1;
        if start >= full.models.len() {
            return false;
        }
        let mut found: Vec<(usize, ModelMetadata)> = Vec::new();
        let mut read = 0;
        let mut i = start;
        while i < full.models.len() && read < budget {
            let m = &full.models[i];
            i += 1;
            let Some(file) = m.main_file.as_deref() else {
                continue;
            };
            let header_kind = file.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                e.eq_ignore_ascii_case("gguf") || e.eq_ignore_ascii_case("safetensors")
            });
            if m.source != LIBRARY_SOURCE || m.metadata.is_some() || !header_kind {
                continue;
            }
            read += 1;
            if let Some(meta) = self.metadata.get_or_read(file) {
                found.push((i - 1, meta));
            }
        }
        if found.is_empty() {
            self.enrich_cursor.1 = i;
            return false;
        }
        let mut listing = Listing::clone(&full);
        for (i, meta) in found {
            listing.models[i].metadata = Some(meta);
        }
        let listing = Arc::new(listing);
        self.listings.insert(ListKind::Full, Arc::clone(&listing));
        self.drop_stale_views();
        self.published.publish(Arc::clone(&listing));
        self.enrich_cursor = (listing, i);
        self.generation.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Lists every enabled store (header metadata cached by path, size and mtime), sorted
    /// by id as listings keep them; a store that cannot be read is recorded in
    /// `source_problems`, never fatal.
    fn scan_stores(&mut self) -> Vec<ModelInfo> {
        self.source_problems.clear();
        let mut found = Vec::new();
        for source in self.sources.iter().filter(|s| s.enabled) {
            match sources::scan_source(source, &mut self.metadata) {
                Ok(models) => found.extend(models),
                Err(e) => self
                    .source_problems
                    .push(format!("{}: {e}", source.kind.display_name())),
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// Forgets views built on a listing that is no longer cached (they can never be served).
    fn drop_stale_views(&mut self) {
        self.views
            .retain(|_, v| self.listings.values().any(|l| Arc::ptr_eq(l, &v.listing)));
    }

    /// Rescans each watched store that changed and swaps its models in the full listing.
    fn apply_store_changes(&mut self) -> bool {
        let changed: Vec<usize> = self
            .store_watchers
            .iter_mut()
            .filter_map(|(i, w)| w.changed().then_some(*i))
            .collect();
        if changed.is_empty() {
            return false;
        }
        self.listings.remove(&ListKind::Fast);
        let Some(full) = self.listings.get(&ListKind::Full).cloned() else {
            return true;
        };
        let mut listing = Listing::clone(&full);
        for i in changed {
            let source = &self.sources[i];
            let name = source.kind.as_str();
            match sources::scan_source(source, &mut self.metadata) {
                Ok(found) => {
                    listing.models.retain(|m| m.source != name);
                    listing.models.extend(found);
                }
                Err(e) => {
                    self.invalidate(&format!(
                        "{} could not be read: {e}",
                        source.kind.display_name()
                    ));
                    return true;
                }
            }
        }
        sort_store_rows(&mut listing.models);
        let listing = Arc::new(listing);
        self.listings.insert(ListKind::Full, Arc::clone(&listing));
        self.views.clear();
        self.published.publish(listing);
        true
    }

    /// Events can be merged away (a folder renamed and then removed within one debounce
    /// window may leave no event for its old name), so when the top-level stamps moved,
    /// the folder names on disk are compared with the listing's and every difference is
    /// rescanned too. One read of `models/` and `.downloads/`, only when a stamp changed.
    fn reconcile_top_level(&self, changes: &mut Changes) {
        let Some(full) = self.listings.get(&ListKind::Full) else {
            return;
        };
        let stamps = Stamps::read(&self.library);
        if stamps == full.stamps {
            return;
        }
        if stamps.registry != full.stamps.registry {
            changes.registry = true;
            return;
        }
        let mut on_disk: HashSet<String> = HashSet::new();
        for dir in [self.library.models_dir(), self.library.downloads_dir()] {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                on_disk.extend(
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.')),
                );
            }
        }
        let listed: HashSet<&str> = full
            .models
            .iter()
            .filter(|m| {
                m.source == LIBRARY_SOURCE && (!m.registered || m.status != ModelStatus::Available)
            })
            .map(|m| m.id.as_str())
            .collect();
        for name in &on_disk {
            if !listed.contains(name.as_str()) {
                changes.models.insert(name.clone());
            }
        }
        for name in listed {
            if !on_disk.contains(name) {
                changes.models.insert(name.to_string());
            }
        }
        // The stamps moved; if the names agree (a file replaced in place, say), the new
        // stamps are recorded without rescanning anything, so the next check is quiet.
        changes.restamp = true;
    }

    /// Rescans `names`; returns whether what a listing shows changed. Activity that leaves
    /// every row as it was (a `.part` file growing during a download, say) only records
    /// the new stamps and keeps the views.
    fn apply_model_changes(&mut self, names: Vec<String>) -> bool {
        let Some(full) = self.listings.get(&ListKind::Full).cloned() else {
            self.listings.remove(&ListKind::Fast);
            return true;
        };
        match self.rescan_some(&full, &names) {
            Ok(None) => false,
            Ok(Some((listing, false))) => {
                // Only the stamps moved: keep the views on the restamped listing.
                let listing = Arc::new(listing);
                for view in self.views.values_mut() {
                    if Arc::ptr_eq(&view.listing, &full) {
                        view.listing = Arc::clone(&listing);
                    }
                }
                self.listings.insert(ListKind::Full, listing);
                false
            }
            Ok(Some((listing, true))) => {
                // The fast listing is one read of the top folders: cheaper to redo than patch.
                self.listings.remove(&ListKind::Fast);
                let listing = Arc::new(listing);
                self.listings.insert(ListKind::Full, Arc::clone(&listing));
                self.drop_stale_views();
                self.published.publish(listing);
                true
            }
            Err(_) => {
                self.invalidate("files changed");
                true
            }
        }
    }

    /// A copy of `full` with the models `names` rescanned (added, updated or removed).
    /// `None` when no row changed and the stamps are the same (nothing to replace);
    /// otherwise the new listing and whether any row changed (or only the stamps).
    fn rescan_some(&mut self, full: &Listing, names: &[String]) -> Result<Option<(Listing, bool)>> {
        let started_wall = Instant::now();
        let scan_started = self.clock.now();
        let stamps = Stamps::read(&self.library);
        let registry = self.registry_for(stamps.registry)?;
        let importing = importing_now(&self.library);
        let updates = scan::scan_some(
            &ScanInput {
                library: &self.library,
                registry: &registry,
                downloading: &self.downloading,
                progress: &self.progress,
                importing: &importing,
            },
            names,
        )?;
        // Where each rescanned name sits: a linear search for a few names, an index for many
        // (building one for 100 000 rows costs more than the rescan itself).
        let index: Option<HashMap<&str, usize>> = (updates.len() > 8).then(|| {
            full.models
                .iter()
                .enumerate()
                .map(|(i, m)| (m.id.as_str(), i))
                .collect()
        });
        let position = |name: &str| match &index {
            Some(index) => index.get(name).copied(),
            None => full.models.iter().position(|m| m.id == name),
        };
        let located: Vec<(Option<usize>, Option<ModelInfo>)> = updates
            .into_iter()
            .map(|(name, info)| (position(&name), info))
            .collect();
        let problems: Vec<String> = registry
            .problems
            .iter()
            .map(|p| p.to_string())
            .chain(self.source_problems.iter().cloned())
            .collect();
        let rows_changed = located.iter().any(|(at, info)| match (at, info) {
            (Some(i), Some(m)) => full.models[*i] != *m,
            (None, None) => false,
            _ => true,
        });
        if !rows_changed && stamps == full.stamps && problems == full.problems {
            return Ok(None);
        }
        let mut models = full.models.clone();
        let mut removed: HashSet<usize> = HashSet::new();
        let mut reorder = false;
        for (at, info) in located {
            match (at, info) {
                (Some(i), Some(m)) => {
                    reorder |= models[i].status != m.status;
                    models[i] = m;
                }
                (Some(i), None) => {
                    removed.insert(i);
                }
                (None, Some(m)) => {
                    models.push(m);
                    reorder = true;
                }
                (None, None) => {}
            }
        }
        if !removed.is_empty() {
            let mut i = 0;
            models.retain(|_| {
                let keep = !removed.contains(&i);
                i += 1;
                keep
            });
        }
        if reorder {
            models.sort_by_cached_key(|m| scan::order_key(m, &registry));
        }
        Ok(Some((
            Listing {
                kind: ListKind::Full,
                models,
                problems,
                scan_started,
                timestamp: full.timestamp,
                scan_duration: started_wall.elapsed(),
                stamps,
            },
            rows_changed,
        )))
    }

    /// The registry as of `mtime`: the parse of the last scan when the file is unchanged.
    fn registry_for(&mut self, mtime: Option<f64>) -> Result<Arc<Registry>> {
        if let Some((cached_mtime, registry)) = &self.registry_cache
            && *cached_mtime == mtime
        {
            return Ok(Arc::clone(registry));
        }
        let registry = Arc::new(Registry::load(&self.library)?);
        self.registry_cache = Some((mtime, Arc::clone(&registry)));
        Ok(registry)
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
        if kind == ListKind::Full
            && !force_refresh
            && let Some(warm) = self.warm.clone()
        {
            return self.revalidate(&warm);
        }
        self.rescan(kind)
    }

    /// Revalidates the listing saved by the last run instead of scanning everything: the
    /// models whose folder changed since that scan (per-model fingerprint: the folder's
    /// modification time newer than the newest time the scan saw in it), the folders that
    /// appeared or vanished, the rows whose status is volatile, and the other stores
    /// are rescanned; every other row is reused. A registry that changed means a full
    /// scan. A file replaced in place deep inside a model folder is not seen here; the
    /// watcher sees it while the app runs, and the TTL's full scan after a restart.
    fn revalidate(&mut self, warm: &Arc<Listing>) -> Result<Arc<Listing>> {
        self.warm = None;
        let stamps = Stamps::read(&self.library);
        if stamps.registry != warm.stamps.registry {
            return self.rescan(ListKind::Full);
        }
        self.library.check_reachable()?;
        let started_wall = Instant::now();
        let mut changes = Changes::default();
        for m in warm.models.iter().filter(|m| m.source == LIBRARY_SOURCE) {
            // The fingerprint: the folder's mtime against the newest mtime the scan saw in
            // it (file-system times on both sides, so no clock is involved).
            let changed = match std::fs::symlink_metadata(&m.path) {
                Ok(meta) => {
                    let now = meta
                        .modified()
                        .ok()
                        .map(crate::library::clock::unix_seconds);
                    match (now, m.modified) {
                        (Some(now), Some(then)) => now > then,
                        _ => true,
                    }
                }
                // Gone: a change only if the scan had seen a folder there.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => m.modified.is_some(),
                Err(_) => true,
            };
            // Rows whose status depends on more than the folder are always read again.
            let volatile = matches!(
                m.status,
                ModelStatus::Partial | ModelStatus::Downloading | ModelStatus::Error
            );
            if changed || volatile {
                changes.models.insert(m.id.clone());
            }
        }
        // Folders that appeared, and the registry's view of them, need the same reading.
        let full = Arc::clone(warm);
        self.listings.insert(ListKind::Full, Arc::clone(&full));
        self.reconcile_top_level(&mut changes);
        let names: Vec<String> = changes.models.into_iter().collect();
        let rescanned = names.len();
        // The other stores are cheap to list again in full (first, so the listing's
        // problems below name any store that cannot be read).
        let store_models = self.scan_stores();
        let mut listing = match self.rescan_some(&full, &names) {
            Ok(Some((listing, _))) => listing,
            Ok(None) => Listing::clone(&full),
            Err(e) => {
                self.listings.remove(&ListKind::Full);
                return Err(e);
            }
        };
        listing.models.retain(|m| m.source == LIBRARY_SOURCE);
        listing.models.extend(store_models);
        listing.timestamp = self.clock.now();
        listing.scan_duration = started_wall.elapsed();
        let total = listing.models.len();
        let listing = Arc::new(listing);
        self.listings.insert(ListKind::Full, Arc::clone(&listing));
        self.views.clear();
        self.published.publish(Arc::clone(&listing));
        self.last_error = None;
        self.invalidated = None;
        self.persist_note = Some(format!(
            "revalidated the saved listing: {rescanned} of {total} models rescanned"
        ));
        if self.persist {
            let _ = persist::save(&self.library, &listing);
        }
        Ok(listing)
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
        self.listings.clear();
        self.views.clear();
        self.invalidated = Some(by.to_string());
    }

    /// Starts downloading registered model `id` in the background (queued when others
    /// run). Returns its info with status `downloading`. Refused for an unknown id, an entry
    /// with problems, no files, a file without URL, or a download already running.
    pub fn start_download(&mut self, id: &str) -> Result<ModelInfo> {
        validate_id(id)?;
        if let Some(off) = self.library.writes_off() {
            return Err(off);
        }
        self.recover_interrupted();
        let registry = Registry::load(&self.library)?;
        let entry = registry
            .get(id)
            .ok_or_else(|| LibraryError::UnknownModel(id.to_string()))?;
        let refuse = |reason: &str| LibraryError::CannotDownload {
            id: id.to_string(),
            reason: reason.to_string(),
        };
        if let Some(problem) = &entry.problem {
            return Err(refuse(&format!("its registry entry is invalid: {problem}")));
        }
        if entry.files.is_empty() {
            return Err(refuse("its registry entry lists no files"));
        }
        if let Some(f) = entry.files.iter().find(|f| f.url.is_none()) {
            return Err(refuse(&format!("{} has no URL", f.path)));
        }
        if self.downloads.is_running(id) {
            return Err(refuse("a download of it is already running"));
        }
        self.downloads
            .start(self.library.clone(), id.to_string(), entry.files.clone());
        self.download_started(id)?;
        let cached = self
            .listings
            .values()
            .find_map(|l| l.models.iter().find(|m| m.id == id).cloned());
        Ok(cached.unwrap_or_else(|| ModelInfo {
            id: id.to_string(),
            name: entry.name.clone().unwrap_or_else(|| id.to_string()),
            provider: entry.provider.clone().unwrap_or_else(|| "local".into()),
            status: ModelStatus::Downloading,
            capabilities: entry.capabilities.clone(),
            format: entry.format.clone(),
            description: entry.description.clone(),
            license: entry.license.clone(),
            registered: true,
            path: self.library.models_dir().join(id),
            size_bytes: None,
            file_count: None,
            expected_size_bytes: entry.files.iter().map(|f| f.size).sum(),
            modified: None,
            error: None,
            source: crate::library::model::LIBRARY_SOURCE.to_string(),
            metadata: None,
            main_file: None,
            note: None,
        }))
    }

    /// Asks the download of `id` to stop; its partial data stays for a resume.
    pub fn cancel_download(&mut self, id: &str) -> Result<()> {
        if self.downloads.cancel(id) {
            Ok(())
        } else {
            Err(LibraryError::CannotDownload {
                id: id.to_string(),
                reason: "no download of it is running".into(),
            })
        }
    }

    /// Handles downloads that ended since the last call (each invalidates the caches) and
    /// returns them.
    pub fn poll_downloads(&mut self) -> Vec<DownloadEvent> {
        let events = self.downloads.poll();
        for e in &events {
            self.download_finished(&e.id);
        }
        events
    }

    /// Waits up to `timeout` for a download to end, and handles it like `poll_downloads`.
    pub fn wait_download(&mut self, timeout: std::time::Duration) -> Option<DownloadEvent> {
        let event = self.downloads.wait_next(timeout)?;
        self.download_finished(&event.id);
        Some(event)
    }

    /// The shared progress board of this service's downloads.
    pub fn download_board(&self) -> Arc<DownloadBoard> {
        Arc::clone(self.downloads.board())
    }

    /// Discards the partial download of `id` (`.downloads/<id>` only). Returns the bytes
    /// freed. Refused while it downloads.
    pub fn discard_partial(&mut self, id: &str) -> Result<u64> {
        validate_id(id)?;
        if self.downloads.is_running(id) {
            return Err(LibraryError::CannotDownload {
                id: id.to_string(),
                reason: "it is downloading; cancel it first".into(),
            });
        }
        let freed = delete::discard_partial(&self.library, id)?;
        self.invalidate(&format!("discard of {id}'s partial download"));
        Ok(freed)
    }

    /// A download of `id` started in this process: its status becomes `downloading` in the
    /// cached listings (patched, not rescanned) and the view cache is cleared.
    pub fn download_started(&mut self, id: &str) -> Result<()> {
        validate_id(id)?;
        self.downloading.insert(id.to_string());
        self.patch_status(id, ModelStatus::Downloading);
        self.views.clear();
        Ok(())
    }

    /// A download of `id` ended (finished, failed or cancelled): both levels are invalidated
    /// so the next listing shows what is on disk now.
    pub fn download_finished(&mut self, id: &str) {
        self.downloading.remove(id);
        self.invalidate(&format!("download of {id}"));
    }

    /// `id` was deleted: both levels are invalidated.
    pub fn model_deleted(&mut self, id: &str) {
        self.invalidate(&format!("delete of {id}"));
    }

    /// What deleting `id` would remove (for a confirmation showing the bytes it frees).
    pub fn plan_delete(&self, id: &str) -> Result<DeletePlan> {
        delete::plan_delete(&self.library, id)
    }

    /// Deletes `id`'s folder and partial downloads (see [`delete::delete_model`]); both
    /// cache levels are invalidated whether or not every part could be removed.
    pub fn delete_model(&mut self, id: &str, mode: DeleteMode) -> Result<DeleteOutcome> {
        self.recover_interrupted();
        let result = delete::delete_model(&self.library, id, mode);
        if !matches!(
            result,
            Err(LibraryError::InvalidId { .. } | LibraryError::NothingToDelete { .. })
        ) {
            self.model_deleted(id);
        }
        result
    }

    /// Imports a model file or folder (see [`import::import_model`]); both cache levels are
    /// invalidated.
    pub fn import_model(&mut self, request: &ImportRequest) -> Result<ImportOutcome> {
        self.recover_interrupted();
        let outcome = import::import_model(&self.library, request)?;
        self.invalidate(&format!("import of {}", outcome.id));
        Ok(outcome)
    }

    /// Ids with a download running.
    pub fn downloading(&self) -> &HashSet<String> {
        &self.downloading
    }

    /// The cached listing of `kind`, valid or not (the last good one after an error).
    pub fn cached(&self, kind: ListKind) -> Option<Arc<Listing>> {
        self.listings.get(&kind).cloned()
    }

    /// Both levels' state. Reads three stamps.
    pub fn cache_info(&self) -> CacheInfo {
        let stamps = Stamps::read(&self.library);
        let now = self.clock.now();
        let cached = self
            .listings
            .get(&ListKind::Full)
            .or_else(|| self.listings.get(&ListKind::Fast));
        let main = cached.or(self.warm.as_ref());
        let staleness = match (cached, &self.warm) {
            (Some(l), _) => l
                .check(now, self.ttl_secs, &stamps, self.racy_check())
                .err(),
            (None, Some(_)) => Some(Staleness::Revalidating),
            (None, None) => Some(match &self.invalidated {
                Some(by) => Staleness::Invalidated { by: by.clone() },
                None => Staleness::Empty,
            }),
        };
        CacheInfo {
            service_cache: ServiceCacheInfo {
                cache_valid: staleness.is_none(),
                cache_timestamp: main.map(|l| l.timestamp),
                cache_age_seconds: main.map(|l| l.age(now)),
                cache_ttl_seconds: self.ttl_secs,
                cached_model_count: main.map_or(0, |l| l.models.len()),
                cache_keys: self.cache_keys(),
                registry_mtime: stamps.registry,
                models_dir_mtime: stamps.models_dir,
                downloads_dir_mtime: stamps.downloads_dir,
                stale_reason: staleness.map(|s| s.to_string()),
                hits: self.service_counters.hits,
                misses: self.service_counters.misses,
                hit_rate: self.service_counters.hit_rate(),
                last_scan_duration_ms: main.map(|l| l.scan_duration.as_secs_f64() * 1000.0),
                last_error: self.last_error.clone(),
                registry_problems: main.map(|l| l.problems.clone()).unwrap_or_default(),
                library: self.library.root().display().to_string(),
                revalidating: self.warm.is_some(),
                persisted: self.persist_note.clone(),
                watch_mode: self.watch_mode().to_string(),
                read_only_reason: self.library.writes_off().map(|e| e.to_string()),
                recovery: self.recovery.clone(),
            },
            api_cache: ViewCacheInfo {
                api_cache_keys: self.views.keys().cloned().collect(),
                api_cache_entries: self.views.len(),
                hits: self.view_counters.hits,
                misses: self.view_counters.misses,
                hit_rate: self.view_counters.hit_rate(),
            },
        }
    }

    /// Progress of the current scan.
    pub fn progress_reading(&self) -> ProgressReading {
        self.progress.read()
    }

    fn cache_keys(&self) -> Vec<String> {
        [ListKind::Full, ListKind::Fast]
            .into_iter()
            .filter(|k| self.listings.contains_key(k))
            .map(|k| k.cache_key().to_string())
            .collect()
    }

    /// Scans and caches `kind`. Stamps are read before the registry and the folders, so a
    /// change during the scan leaves the new listing already stale rather than wrong.
    fn rescan(&mut self, kind: ListKind) -> Result<Arc<Listing>> {
        let result = self.scan_now(kind);
        match &result {
            Ok(listing) => {
                self.last_error = None;
                self.invalidated = None;
                self.listings.insert(kind, Arc::clone(listing));
                // Views built on the replaced listing can never be served again.
                self.drop_stale_views();
                if kind == ListKind::Full {
                    self.published.publish(Arc::clone(listing));
                    self.warm = None;
                    if self.persist {
                        self.persist_note = Some(match persist::save(&self.library, listing) {
                            Ok(()) => {
                                format!("saved to {}", persist::path(&self.library).display())
                            }
                            Err(e) => format!("could not save the listing: {e}"),
                        });
                    }
                }
            }
            Err(err) => self.last_error = Some(err.to_string()),
        }
        result
    }

    fn scan_now(&mut self, kind: ListKind) -> Result<Arc<Listing>> {
        let started_wall = Instant::now();
        let scan_started = self.clock.now();
        self.library.check_reachable()?;
        let stamps = Stamps::read(&self.library);
        let registry = Arc::new(Registry::load(&self.library)?);
        self.registry_cache = Some((stamps.registry, Arc::clone(&registry)));
        let importing = importing_now(&self.library);
        let models = scan::scan(
            &ScanInput {
                library: &self.library,
                registry: &registry,
                downloading: &self.downloading,
                progress: &self.progress,
                importing: &importing,
            },
            kind,
        )?;
        let mut models = models;
        models.extend(self.scan_stores());
        let problems: Vec<String> = registry
            .problems
            .iter()
            .map(|p| p.to_string())
            .chain(self.source_problems.iter().cloned())
            .collect();
        Ok(Arc::new(Listing {
            kind,
            models,
            problems,
            scan_started,
            timestamp: self.clock.now(),
            scan_duration: started_wall.elapsed(),
            stamps,
        }))
    }

    fn patch_status(&mut self, id: &str, status: ModelStatus) {
        for listing in self.listings.values_mut() {
            if let Some(i) = listing.models.iter().position(|m| m.id == id) {
                let mut patched = Listing::clone(listing);
                patched.models[i].status = status;
                *listing = Arc::new(patched);
            }
        }
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
fn sort_store_rows(models: &mut [ModelInfo]) {
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
        Err(LibraryError::InvalidTtl(secs))
    }
}
