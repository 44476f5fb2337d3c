//! The service's life beside the requests, the same for every shell: recovering what an
//! interrupted run left, watching the library (started before the first scan, set up on a
//! thread of its own, followed by a background scan once events cover everything),
//! applying what the watcher saw, and reading header metadata. Shells call
//! [`ModelLibraryService::tick`] when idle and [`ModelLibraryService::catch_up`] before a
//! request; none of it keeps a request waiting for long.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, TryRecvError};

use super::commit::Installed;
use super::*;

/// Model headers read per idle tick.
pub const METADATA_BATCH: usize = 200;

/// Header metadata being read on a thread of its own for a batch of rows of `listing`.
#[derive(Debug)]
pub(super) struct MetadataJob {
    listing: Arc<Listing>,
    /// Where the cursor goes once this batch is applied.
    next: usize,
    result: Receiver<Vec<(usize, Arc<ModelMetadata>)>>,
}

/// Rows of a listing and the main file of each, whose headers are to be read.
type HeaderBatch = Vec<(usize, PathBuf)>;

/// Reads the headers of `batch` through the shared header cache (locked per file).
fn read_headers(
    cache: &Mutex<MetadataCache>,
    batch: HeaderBatch,
) -> Vec<(usize, Arc<ModelMetadata>)> {
    batch
        .into_iter()
        .filter_map(|(i, file)| {
            let meta = cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_read(&file)?;
            Some((i, meta))
        })
        .collect()
}

/// A full scan of the library on a thread of its own, and what changed while it ran.
#[derive(Debug)]
pub(super) struct BackgroundScan {
    result: Receiver<Result<(Listing, Arc<PackedRegistry>)>>,
    /// Models the watcher reported while the scan ran: rescanned once it is installed.
    touched: BTreeSet<String>,
    /// Something the touched set cannot describe happened (the registry, everything).
    all_touched: bool,
    /// The service's epoch when the scan started.
    epoch: u64,
    /// This instance's watch session when the scan started (it vouches for the result).
    session: Option<String>,
}

impl ModelLibraryService {
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

    /// Starts watching as the options say, unless a watcher runs already. Returns at
    /// once: watches are set up on a thread of their own (see [`LibraryWatcher::start`]).
    pub(super) fn ensure_watching(&mut self) {
        if self.watcher.is_some() || self.watch_option == WatchOption::Off {
            return;
        }
        self.watch_with(self.watch_option);
    }

    fn watch_with(&mut self, option: WatchOption) {
        let stores = self
            .sources
            .iter()
            .enumerate()
            .filter(|(_, s)| s.enabled && s.root_exists())
            .flat_map(|(i, s)| {
                crate::library::sources::watch_roots(s)
                    .into_iter()
                    .map(move |r| (i, r))
            })
            .collect();
        self.watcher = Some(LibraryWatcher::start(
            &self.library,
            option,
            stores,
            self.poll_inputs(),
            self.watch_hook.as_ref().map(|h| Arc::clone(&h.0)),
        ));
    }

    fn poll_inputs(&self) -> PollInputs {
        PollInputs {
            snapshot: self.published.clone(),
            clock: Arc::clone(&self.clock),
            options: self.verifier_options.clone(),
            budget: self.watch_budget,
        }
    }

    /// Starts watching the library for changes (file events, else polling) and waits for
    /// the watches to be set up (which walks the library: call it from a worker thread).
    /// Shells do not need it: a service watches by itself when its options say so.
    pub fn start_watching(&mut self) {
        self.watch_with(WatchOption::Auto);
        let deadline = Instant::now() + std::time::Duration::from_secs(600);
        while self.watch_mode() == WatchMode::Starting && Instant::now() < deadline {
            self.poll_watch_setup();
            if self.watch_mode() == WatchMode::Starting {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    /// Watches in polling mode only (for tests and file systems without events).
    pub fn start_polling(&mut self, reason: &str) {
        self.watcher = Some(LibraryWatcher::polling(
            &self.library,
            reason.to_string(),
            self.poll_inputs(),
        ));
    }

    /// How changes are noticed.
    pub fn watch_mode(&self) -> WatchMode {
        self.watcher
            .as_ref()
            .map_or(WatchMode::Off, |w| w.mode().clone())
    }

    /// The longest a change on disk can stay unseen now, in seconds (`None`: no bound can
    /// be claimed — not watching, or watches still being set up).
    pub fn freshness_bound_secs(&self) -> Option<f64> {
        let bound = self.watcher.as_ref()?.freshness_bound_secs()?;
        // Until the scan after the set-up is in, changes made during the set-up may be
        // missing from the listing.
        self.background.is_none().then_some(bound)
    }

    /// When the library was last checked as a whole (clock time): the start of the last
    /// full scan, or of the polling verifier's last whole pass, whichever is later.
    pub fn last_verified(&self) -> Option<f64> {
        let pass = self.watcher.as_ref().and_then(|w| w.last_verified());
        match (self.last_full_scan, pass) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// The watcher (for benchmarks and diagnostics).
    pub fn watcher(&self) -> Option<&LibraryWatcher> {
        self.watcher.as_ref()
    }

    /// Handles a finished watch set-up: takes the store watchers, and once file events
    /// cover the library (all of it, or all but the polled part in the hybrid mode), scans
    /// it again in the background, so nothing that changed while the watches were being
    /// set up (or during the first scan) stays unseen.
    fn poll_watch_setup(&mut self) -> bool {
        let Some(done) = self.watcher.as_mut().and_then(|w| w.poll_setup()) else {
            return false;
        };
        if let Some(stores) = done.stores {
            self.store_watchers = stores;
        }
        let events = matches!(
            self.watch_mode(),
            WatchMode::Events | WatchMode::Hybrid { .. }
        );
        self.shared_watching(self.watch_mode() == WatchMode::Events);
        // A listing taken from another instance whose events cover it needs no scan here
        // once that instance is seen alive after this set-up.
        if events && self.listings.contains_key(&ListKind::Full) {
            if self.own_session().is_some() {
                self.verify_after_watch();
            } else {
                self.start_background_scan();
            }
        }
        true
    }

    /// What shells call between requests: downloads that ended, the watch set-up, watched
    /// changes, a background scan and a verify run that finished reach the caches. Cheap
    /// when nothing happened. Returns whether what a listing shows may have changed.
    pub fn catch_up(&mut self) -> bool {
        let ended = !self.poll_downloads().is_empty();
        self.ensure_watching();
        let setup = self.poll_watch_setup();
        let changed = self.apply_changes();
        let scanned = self.poll_background_scan();
        let verified = self.finish_verify();
        let deduplicated = self.finish_duplicates();
        let findings = self.notice_verify_findings();
        let shared = self.apply_shared_events();
        // After this instance's changes were applied: its session's refresh vouches for them.
        self.shared_beat();
        self.check_coverage_due();
        self.await_vouched_listing();
        ended || setup || changed || scanned || verified || deduplicated || findings || shared
    }

    /// What shells call when idle (every 200 ms or so): [`Self::catch_up`], then a batch
    /// of header metadata. Returns whether what a listing shows may have changed.
    pub fn tick(&mut self) -> bool {
        let caught_up = self.catch_up();
        let enriched = self.background.is_none() && self.enrich_in_background();
        let idle =
            !caught_up && !enriched && self.background.is_none() && self.metadata_job.is_none();
        if idle && std::mem::take(&mut self.memory_to_release) {
            // What the work freed between long-lived rows stays resident until given back
            // (at 100 000 models, ~70 MB in the window after start-up).
            crate::library::memory::release_free();
        }
        caught_up || enriched
    }

    /// Reads header metadata (GGUF, safetensors) for up to `budget` library models that have
    /// none yet, after a listing is built, so scans stay fast; headers are cached by (path,
    /// size, mtime), so a model is read once. Returns whether the listing gained metadata
    /// (then the generation moves). Reads on this thread; [`Self::tick`] reads on another.
    pub fn enrich_metadata(&mut self, budget: usize) -> bool {
        let Some((listing, batch, next)) = self.metadata_batch(budget) else {
            return false;
        };
        let found = read_headers(&self.metadata, batch);
        self.apply_metadata(&listing, found, next)
    }

    /// The next models of the full listing whose header is worth reading, from the cursor:
    /// the listing, `(row, main file)` pairs and where the cursor goes next. `None` when
    /// there is no full listing or nothing is left to read in it.
    fn metadata_batch(&mut self, budget: usize) -> Option<(Arc<Listing>, HeaderBatch, usize)> {
        let full = self.listings.get(&ListKind::Full).cloned()?;
        if !Arc::ptr_eq(&full, &self.enrich_cursor.0) {
            self.enrich_cursor = (Arc::clone(&full), 0);
        }
        let mut i = self.enrich_cursor.1;
        if i >= full.models.len() {
            return None;
        }
        let mut batch = Vec::new();
        while i < full.models.len() && batch.len() < budget {
            let m = &full.models[i];
            i += 1;
            let Some(file) = m.main_file.as_deref().map(|f| m.path().join(f)) else {
                continue;
            };
            let header_kind = file.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                e.eq_ignore_ascii_case("gguf") || e.eq_ignore_ascii_case("safetensors")
            });
            if m.source == LIBRARY_SOURCE && m.metadata.is_none() && header_kind {
                batch.push((i - 1, file));
            }
        }
        Some((full, batch, i))
    }

    /// Puts headers read for `listing` into the full listing, if it is still the current
    /// one (else they wait in the header cache for the next pass). Returns whether the
    /// listing gained metadata.
    fn apply_metadata(
        &mut self,
        listing: &Arc<Listing>,
        found: Vec<(usize, Arc<ModelMetadata>)>,
        next: usize,
    ) -> bool {
        let current = self.listings.get(&ListKind::Full);
        if !current.is_some_and(|c| Arc::ptr_eq(c, listing)) {
            return false;
        }
        if found.is_empty() {
            self.enrich_cursor.1 = next;
            return false;
        }
        let mut enriched = Listing::clone(listing);
        for (i, meta) in found {
            Arc::make_mut(&mut enriched.models[i]).metadata = Some(meta);
        }
        let enriched = self.install_full(Arc::new(enriched), Installed::MetadataAdded);
        self.enrich_cursor = (enriched, next);
        true
    }

    /// Header reading on a thread of its own, so a slow disk never holds the service: a
    /// batch is started, and its result applied at a later tick.
    fn enrich_in_background(&mut self) -> bool {
        if let Some(job) = &self.metadata_job {
            let found = match job.result.try_recv() {
                Ok(found) => found,
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => Vec::new(),
            };
            let job = self.metadata_job.take().expect("checked above");
            return self.apply_metadata(&job.listing, found, job.next);
        }
        let Some((listing, batch, next)) = self.metadata_batch(METADATA_BATCH) else {
            return false;
        };
        let (tx, rx) = mpsc::channel();
        let cache = Arc::clone(&self.metadata);
        let spawned = std::thread::Builder::new()
            .name("model-library-headers".into())
            .spawn(move || {
                let _ = tx.send(read_headers(&cache, batch));
            });
        if spawned.is_ok() {
            self.metadata_job = Some(MetadataJob {
                listing,
                next,
                result: rx,
            });
        }
        false
    }
}

impl ModelLibraryService {
    /// Starts a full scan of the library on a thread of its own (stores are added when it
    /// is installed). Requests are answered from the cache meanwhile.
    pub(super) fn start_background_scan(&mut self) {
        let (tx, rx) = mpsc::channel();
        let library = self.library.clone();
        let persist = self.persist;
        let clock = Arc::clone(&self.clock);
        let downloading = self.downloading.clone();
        let spawned = std::thread::Builder::new()
            .name("model-library-scan".into())
            .spawn(move || {
                let result = (|| {
                    let started_wall = Instant::now();
                    let scan_started = clock.now();
                    library.check_reachable()?;
                    let stamps = Stamps::read(&library);
                    // This thread does not hold the service: it makes the copy itself.
                    let (registry, pending) =
                        registry_copy::load_for_listing(&library, clock.now())?;
                    if let Some(pending) = pending.filter(|_| persist) {
                        registry_copy::write_pending(&library, pending, &registry);
                    }
                    let registry = Arc::new(registry);
                    let importing = importing_now(&library);
                    let models = scan::scan(
                        &ScanInput {
                            library: &library,
                            registry: &registry,
                            downloading: &downloading,
                            progress: &ScanProgress::default(),
                            importing: &importing,
                        },
                        ListKind::Full,
                    )?;
                    Ok((
                        Listing {
                            kind: ListKind::Full,
                            models,
                            problems: registry.problems.iter().map(|p| p.to_string()).collect(),
                            scan_started,
                            timestamp: clock.now(),
                            scan_duration: started_wall.elapsed(),
                            stamps,
                        },
                        // Slimmed here, not while the service is held (see
                        // `remember_registry`).
                        Arc::new(registry.without_texts()),
                    ))
                })();
                let _ = tx.send(result);
            });
        if spawned.is_ok() {
            self.background = Some(BackgroundScan {
                result: rx,
                touched: BTreeSet::new(),
                all_touched: false,
                epoch: self.epoch,
                session: self.own_session(),
            });
        }
    }

    /// Notes what the watcher reported while a background scan runs.
    pub(super) fn note_touched(&mut self, changes: &Changes) {
        if let Some(bg) = &mut self.background {
            bg.touched.extend(changes.models.iter().cloned());
            bg.all_touched |= changes.everything || changes.registry;
        }
    }

    /// Installs a background scan that finished — unless the caches were invalidated or
    /// a download started meanwhile (the next listing scans anyway) — and then rescans the
    /// models the watcher reported while it ran. Returns whether the listing changed.
    fn poll_background_scan(&mut self) -> bool {
        let running = self.background.is_some();
        let changed = self.finish_background_scan();
        if running && self.background.is_none() {
            // Installed (and published) or failed: instances waiting for it may go on.
            self.release_scan_lock(super::shared::LockFor::Background);
        }
        changed
    }

    /// [`Self::poll_background_scan`] but for the scan lock.
    fn finish_background_scan(&mut self) -> bool {
        let Some(bg) = &self.background else {
            return false;
        };
        let result = match bg.result.try_recv() {
            Ok(result) => result,
            Err(TryRecvError::Empty) => return false,
            Err(TryRecvError::Disconnected) => Err(LibraryError::io(
                self.library.root(),
                std::io::Error::other("the background scan stopped"),
            )),
        };
        let bg = self.background.take().expect("checked above");
        let Ok((mut listing, registry)) = result else {
            // The next listing scans in the foreground and reports the error.
            self.invalidate("a background scan failed");
            return true;
        };
        if bg.epoch != self.epoch || bg.all_touched {
            if bg.all_touched {
                self.invalidate("files changed");
            }
            return true;
        }
        listing.models.extend(self.scan_stores());
        listing
            .problems
            .extend(self.source_problems.iter().cloned());
        if let Some(full) = self.listings.get(&ListKind::Full) {
            crate::library::cache::reuse_unchanged_rows(&mut listing.models, full);
        }
        self.remember_registry(listing.stamps.registry, &registry);
        // Vouched for by this instance's session only if it still runs (it may have ended
        // while the scan ran).
        let session = bg
            .session
            .clone()
            .filter(|s| self.own_session().as_ref() == Some(s));
        self.note_coverage(session);
        self.install_full(Arc::new(listing), Installed::Scanned);
        self.listings.remove(&ListKind::Fast);
        // What changed while it ran: the models the watcher reported, and whatever the
        // top-level names say now against the stamps the scan started from (events that
        // were merged away, or applied to the listing it replaced).
        let stamps = Stamps::read(&self.library);
        let mut changes = Changes {
            models: bg.touched,
            ..Changes::default()
        };
        self.reconcile_top_level(&mut changes, &stamps);
        if changes.registry {
            self.invalidate("files changed");
        } else if !changes.is_empty() {
            self.apply_model_changes(changes.models.into_iter().collect(), stamps);
        }
        true
    }
}
