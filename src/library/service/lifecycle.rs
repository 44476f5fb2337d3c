//! The service's life beside the requests: recovering what an interrupted run left,
//! watching the library, and reading header metadata in the background. Shells call these
//! when idle; none of them may keep a request waiting for long.

use super::commit::Installed;
use super::*;

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
        self.install_full(Arc::clone(&listing), Installed::MetadataAdded);
        self.enrich_cursor = (listing, i);
        true
    }
}
