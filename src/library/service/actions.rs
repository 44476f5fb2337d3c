//! Actions that change the library — downloads, deletes, imports — and the cache
//! invalidation each one triggers. The work itself is in `download`, `delete` and
//! `import`; this keeps the caches honest about it.

use super::*;
use crate::library::registry::Registry;
use crate::library::shared::EventKind;

impl ModelLibraryService {
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
        if let Some(f) = entry.files.iter().find(|f| f.url().is_none()) {
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
            .find_map(|l| l.models.iter().find(|m| m.id == id))
            .map(|m| ModelInfo::clone(m));
        Ok(cached.unwrap_or_else(|| ModelInfo {
            id: id.to_string(),
            name: entry.name.clone().unwrap_or_else(|| id.to_string()).into(),
            provider: entry.provider.clone().unwrap_or_else(|| "local".into()),
            status: ModelStatus::Downloading,
            capabilities: entry.capabilities.clone().into(),
            format: entry.format.clone(),
            description: entry.description.as_deref().map(Box::from),
            license: entry.license.as_deref().map(crate::library::sym::Sym::new),
            registered: true,
            location: crate::library::model::Location::in_folder(&self.library.models_dir(), id),
            figures: crate::library::model::Figures::default()
                .with_expected(entry.files.iter().map(|f| f.size).sum()),
            error: None,
            source: crate::library::Sym::new(crate::library::model::LIBRARY_SOURCE),
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
        self.tell_shared(EventKind::Changed, vec![id.to_string()]);
        Ok(freed)
    }

    /// A download of `id` started in this process: its status becomes `downloading` in the
    /// cached listings (patched, not rescanned) and the view cache is cleared.
    pub fn download_started(&mut self, id: &str) -> Result<()> {
        validate_id(id)?;
        self.downloading.insert(id.to_string());
        self.epoch += 1;
        self.patch_status(id, ModelStatus::Downloading);
        self.views.clear();
        Ok(())
    }

    /// A download of `id` ended (finished, failed or cancelled): both levels are invalidated
    /// so the next listing shows what is on disk now.
    pub fn download_finished(&mut self, id: &str) {
        self.downloading.remove(id);
        self.invalidate(&format!("download of {id}"));
        self.tell_shared(EventKind::Changed, vec![id.to_string()]);
    }

    /// `id` was deleted: both levels are invalidated.
    pub fn model_deleted(&mut self, id: &str) {
        // The listing as it is after the delete goes to the other instances first.
        self.share_delete(vec![id.to_string()]);
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
        self.tell_shared(EventKind::Changed, vec![outcome.id.clone()]);
        Ok(outcome)
    }
}
