//! The cache levels and their commit: scanning a listing and installing it. Every new full
//! listing goes through [`ModelLibraryService::install_full`], the one place that inserts
//! it, retires or re-targets the views, publishes it to other threads, persists it and
//! moves the generation — each as the kind of change ([`Installed`]) calls for. Reads the
//! library through `scan`, `registry` and `sources`; writes only the persisted listing.

use super::*;

/// What kind of change a new full listing is, which decides what installing it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Installed {
    /// A scan of everything (a full scan, a start-up revalidation that changed rows):
    /// persisted.
    Scanned,
    /// A start-up revalidation that found every row as saved: like `Scanned`, but the saved
    /// listing already says the same, so it is not written again.
    Confirmed,
    /// Some rows changed (watched changes, a store rescanned): the fast listing, one read
    /// of the top folders, is dropped rather than patched.
    RowsChanged,
    /// Rows another instance changed (its event named them), rescanned here: like
    /// `RowsChanged`, but not published again (the instance that changed them did).
    RowsChangedElsewhere,
    /// Header metadata was added to rows: nothing the fast listing shows.
    MetadataAdded,
    /// Only the stamps moved, every row is as it was: the views follow the new listing and
    /// nobody needs to list again.
    Restamped,
    /// Another instance's listing (or one patched by its event), from the shared tier:
    /// like `Confirmed`, neither saved nor published again.
    Shared,
}

impl ModelLibraryService {
    /// Installs `listing` as the full listing (see [`Installed`] for what each kind does),
    /// with the rows of models whose files a verify run found wrong marked (rows of a
    /// scan); returns the listing installed.
    pub(super) fn install_full(&mut self, listing: Arc<Listing>, how: Installed) -> Arc<Listing> {
        let listing = match how {
            Installed::Scanned
            | Installed::Confirmed
            | Installed::RowsChanged
            | Installed::RowsChangedElsewhere
            | Installed::Shared => self.with_verify_marks(listing),
            Installed::MetadataAdded | Installed::Restamped => listing,
        };
        let old = self.listings.insert(ListKind::Full, Arc::clone(&listing));
        self.memory_to_release = true;
        match how {
            Installed::Restamped => {
                if let Some(old) = old {
                    for view in self.views.values_mut() {
                        if Arc::ptr_eq(&view.listing, &old) {
                            view.listing = Arc::clone(&listing);
                        }
                    }
                }
                return listing;
            }
            Installed::RowsChanged | Installed::RowsChangedElsewhere => {
                self.listings.remove(&ListKind::Fast);
            }
            Installed::Scanned
            | Installed::Confirmed
            | Installed::MetadataAdded
            | Installed::Shared => {}
        }
        // Views built on the replaced listing can never be served again.
        self.drop_stale_views();
        self.published.publish(Arc::clone(&listing));
        if matches!(
            how,
            Installed::Scanned | Installed::Confirmed | Installed::Shared
        ) {
            self.last_full_scan = Some(listing.scan_started);
            self.last_error = None;
            self.invalidated = None;
            self.warm = None;
            if self.persist && how == Installed::Scanned {
                self.saver.save(Arc::clone(&listing));
            }
        }
        if matches!(
            how,
            Installed::Scanned | Installed::Confirmed | Installed::RowsChanged
        ) {
            self.publish_shared(&listing);
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        if matches!(how, Installed::Scanned | Installed::Confirmed) {
            drop(old);
            crate::library::memory::release_free();
        }
        listing
    }

    /// Installs `listing` as the fast listing (built here or taken from another instance).
    pub(super) fn install_fast(&mut self, listing: Arc<Listing>) {
        self.last_error = None;
        self.invalidated = None;
        self.listings.insert(ListKind::Fast, listing);
        self.drop_stale_views();
    }

    /// Scans and caches `kind`. Stamps are read before the registry and the folders, so a
    /// change during the scan leaves the new listing already stale rather than wrong.
    pub(super) fn rescan(&mut self, kind: ListKind) -> Result<Arc<Listing>> {
        // Watches set up before the scan began: this instance's events cover its result.
        let session = self.own_session();
        let mut result = self.scan_now(kind);
        match &mut result {
            Ok(listing) if kind == ListKind::Full => {
                self.note_coverage(session);
                *listing = self.install_full(Arc::clone(listing), Installed::Scanned);
            }
            Ok(listing) => {
                self.install_fast(Arc::clone(listing));
                self.publish_shared(listing);
            }
            Err(err) => self.last_error = Some(err.to_string()),
        }
        result
    }

    pub(super) fn scan_now(&mut self, kind: ListKind) -> Result<Arc<Listing>> {
        let started_wall = Instant::now();
        let scan_started = self.clock.now();
        self.library.check_reachable()?;
        let stamps = Stamps::read(&self.library);
        // The top level is read while the registry loads (neither needs the other).
        let library = self.library.clone();
        let (top, loaded) = std::thread::scope(|s| {
            let top = std::thread::Builder::new().spawn_scoped(s, || scan::Top::read(&library));
            let loaded = self.load_registry();
            let top = match top {
                Ok(reading) => reading
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => scan::Top::read(&library), // no thread to be had: one after the other
            };
            (top, loaded)
        });
        let registry = loaded?;
        let top = top?;
        let importing = importing_now(&self.library);
        let mut models = scan::scan_top(&self.scan_input(&registry, &importing), top, kind)?;
        // Kept (slim) once the scan is done: slimming it is no part of the answer.
        self.remember_registry(stamps.registry, &registry);
        if kind == ListKind::Fast
            && let Some(full) = self.listings.get(&ListKind::Full)
        {
            carry_known_problems(&mut models, full);
        }
        models.extend(self.scan_stores());
        if kind == ListKind::Full
            && let Some(full) = self.listings.get(&ListKind::Full)
        {
            crate::library::cache::reuse_unchanged_rows(&mut models, full);
        }
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

    /// Lists every enabled store (header metadata cached by path, size and mtime), sorted
    /// by id as listings keep them; a store that cannot be read is recorded in
    /// `source_problems`, never fatal.
    pub(super) fn scan_stores(&mut self) -> Vec<Arc<ModelInfo>> {
        let (mut scans, problems) = self.scan_enabled_stores();
        self.source_problems = problems;
        sources::note_files_listed_elsewhere(&mut scans);
        let mut found: Vec<Arc<ModelInfo>> = scans
            .into_iter()
            .flat_map(|s| s.models.into_iter().map(Arc::new))
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// Every enabled store scanned with the files behind its models (a folder of one's own
    /// leaving the other stores' folders and the library to them), and, one line each,
    /// the stores that could not be read.
    pub(super) fn scan_enabled_stores(&self) -> (Vec<sources::SourceScan>, Vec<String>) {
        let mut scans = Vec::new();
        let mut problems = Vec::new();
        let others = sources::folders_of_others(&self.sources, self.library.root());
        for source in self.sources.iter().filter(|s| s.enabled) {
            let mut cache = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
            match sources::scan_source_skipping(source, &mut cache, &others) {
                Ok(scan) => scans.push(scan),
                Err(e) => problems.push(format!("{}: {e}", source.kind.display_name())),
            }
        }
        (scans, problems)
    }

    /// Forgets views built on a listing that is no longer cached (they can never be served).
    pub(super) fn drop_stale_views(&mut self) {
        self.views
            .retain(|_, v| self.listings.values().any(|l| Arc::ptr_eq(l, &v.listing)));
    }

    pub(super) fn cache_keys(&self) -> Vec<String> {
        [ListKind::Full, ListKind::Fast]
            .into_iter()
            .filter(|k| self.listings.contains_key(k))
            .map(|k| k.cache_key().to_string())
            .collect()
    }

    pub(super) fn patch_status(&mut self, id: &str, status: ModelStatus) {
        for listing in self.listings.values_mut() {
            if let Some(i) = listing.models.iter().position(|m| m.id == id) {
                let mut patched = Listing::clone(listing);
                Arc::make_mut(&mut patched.models[i]).status = status;
                *listing = Arc::new(patched);
            }
        }
    }

    /// What a scan on this thread needs: this library, `registry`, the models downloading
    /// and the imports under way (`importing`).
    pub(super) fn scan_input<'a>(
        &'a self,
        registry: &'a PackedRegistry,
        importing: &'a HashMap<String, String>,
    ) -> ScanInput<'a> {
        ScanInput {
            library: &self.library,
            registry,
            downloading: &self.downloading,
            progress: &self.progress,
            importing,
        }
    }

    /// The registry as of `mtime`: the one the last scan read, kept slim (no names and
    /// descriptions: see [`Self::remember_registry`]) when the file is unchanged, else the
    /// file read again, whole.
    pub(super) fn registry_for(&mut self, mtime: Option<f64>) -> Result<Arc<PackedRegistry>> {
        if let Some((cached_mtime, registry)) = &self.registry_cache
            && *cached_mtime == mtime
        {
            return Ok(Arc::clone(registry));
        }
        let registry = self.load_registry()?;
        self.remember_registry(mtime, &registry);
        Ok(registry)
    }

    /// Keeps `registry` (the file as of `mtime`) for what needs it between scans —
    /// selective rescans, reclaiming — without entries' names and descriptions: the rows
    /// of the listing made from it carry those already (at 100 000 entries, about half of
    /// what the kept registry held). Full scans read the file, or its copy, again.
    pub(super) fn remember_registry(&mut self, mtime: Option<f64>, registry: &Arc<PackedRegistry>) {
        let slim = if registry.is_slim() {
            Arc::clone(registry)
        } else {
            Arc::new(registry.without_texts())
        };
        self.registry_cache = Some((mtime, slim));
    }

    /// The registry as listings need it; a copy of it to make goes to the saver thread.
    pub(super) fn load_registry(&mut self) -> Result<Arc<PackedRegistry>> {
        let (registry, pending) = registry_copy::load_for_listing(&self.library, self.clock.now())?;
        Ok(self.keep_registry(registry, pending))
    }

    /// Shares `registry`, handing the copy to make of it (if any, and if this service
    /// persists) to the saver thread.
    pub(super) fn keep_registry(
        &mut self,
        registry: PackedRegistry,
        pending: Option<registry_copy::Pending>,
    ) -> Arc<PackedRegistry> {
        let registry = Arc::new(registry);
        if let Some(pending) = pending.filter(|_| self.persist) {
            self.saver.copy_registry(Arc::clone(&registry), pending);
        }
        registry
    }
}

/// A quick listing does not look inside model folders, so it cannot see a file of the
/// wrong size: a model it calls `downloaded` whose folder has not changed since the full
/// listing `full` found it `error` or `partial` takes that status (and its reason) from it.
/// A folder changed since (its own time newer than the newest the full scan saw) keeps
/// the quick status until a full scan looks. Reads one folder time per such model.
fn carry_known_problems(models: &mut [Arc<ModelInfo>], full: &Listing) {
    let known: HashMap<&str, &ModelInfo> = full
        .models
        .iter()
        .filter(|m| matches!(m.status, ModelStatus::Error | ModelStatus::Partial))
        .map(|m| (m.id.as_str(), &**m))
        .collect();
    if known.is_empty() {
        return;
    }
    for row in models.iter_mut() {
        if row.status != ModelStatus::Downloaded {
            continue;
        }
        let Some(seen) = known.get(row.id.as_str()) else {
            continue;
        };
        // One `stat` of the folder, for these few rows only (quick rows carry no time).
        let folder = crate::library::walk::mtime_of(&row.path()).ok();
        let unchanged = match (folder, seen.modified()) {
            (Some(folder), Some(newest)) => folder <= newest,
            _ => false,
        };
        if unchanged {
            let mut patched = (**row).clone();
            patched.status = seen.status;
            patched.error = seen.error.clone();
            patched.note = seen.note.clone();
            *row = Arc::new(patched);
        }
    }
}
