//! Verify as the service sees it: which files to check for which models (the library's
//! registry and the enabled stores), and what a run found, kept in `.cache/verify.bin` and
//! shown on the models' rows from then on. The hashing itself runs outside the service
//! ([`crate::library::verify::run`]), so a long verify never holds it.

use super::*;
use crate::library::registry::Registry;
use crate::library::verify::{self, Checked, Failures, Target};

impl ModelLibraryService {
    /// The files to verify: every file of the library and the enabled stores whose expected
    /// bytes are known, or only those of the models `only` names (ids as listings show
    /// them; an id no listing has is an error).
    pub fn verify_targets(&mut self, only: &[String]) -> Result<Vec<Target>> {
        self.library.check_reachable()?;
        let registry = Registry::load(&self.library)?;
        let mut scans = Vec::new();
        for source in self.sources.iter().filter(|s| s.enabled) {
            let mut cache = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(scan) = sources::scan_source_detailed(source, &mut cache) {
                scans.push(scan);
            }
        }
        for id in only {
            let known = registry.get(id).is_some()
                || self.library.models_dir().join(id).is_dir()
                || scans.iter().any(|s| s.model_blobs.contains_key(id));
            if !known {
                return Err(LibraryError::NotListed(id.clone()));
            }
        }
        Ok(verify::targets(&self.library, &registry, &scans, only))
    }

    /// Takes in what a verify run found: mismatches are saved in `.cache/verify.bin` and
    /// mark their models `error` from the next listing on; files found good lose an older
    /// mark. The caches are dropped when that changes what a listing shows.
    pub fn record_verify(&mut self, checked: &[Checked]) -> Result<()> {
        let failures = self
            .verify_failures
            .get_or_insert_with(|| Failures::load(&self.library));
        if failures.record(checked) {
            failures.save(&self.library)?;
            self.invalidate("a verify run found files changed or damaged");
        }
        Ok(())
    }

    /// `listing` with the rows of models whose files are still as a verify run found them
    /// wrong marked `error`.
    pub(super) fn with_verify_marks(&mut self, listing: Arc<Listing>) -> Arc<Listing> {
        let failures = self
            .verify_failures
            .get_or_insert_with(|| Failures::load(&self.library));
        if failures.files.is_empty() {
            return listing;
        }
        let mut patched = Listing::clone(&listing);
        if failures.mark(&mut patched.models) {
            Arc::new(patched)
        } else {
            listing
        }
    }
}
