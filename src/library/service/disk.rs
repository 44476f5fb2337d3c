//! The disk as the window's Disk view sees it: usage per source (shared bytes once), and
//! duplicates found and linked on threads of their own (hashing or comparing gigabytes
//! never holds the service); a finished job is taken in by `catch_up`.

use super::*;
use crate::library::duplicates::{self, Background, Linked, Report};
use crate::library::sources::DiskUsage;

/// Duplicates work going on, or done.
#[derive(Debug, Default)]
pub(super) struct DuplicatesWork {
    finding: Option<Background<Report>>,
    linking: Option<Background<Vec<(std::path::PathBuf, Linked)>>>,
    last: Option<Report>,
    linked: Option<Vec<(std::path::PathBuf, Linked)>>,
}

/// What the shells show of duplicates.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DuplicatesState {
    /// Whether duplicates are being looked for.
    pub finding: bool,
    /// Whether copies are being replaced with hard links.
    pub linking: bool,
    /// What the last search found (dropped once its copies were linked).
    pub last: Option<Report>,
    /// What the last linking did, copy by copy.
    pub linked: Option<Vec<(std::path::PathBuf, Linked)>>,
}

impl ModelLibraryService {
    /// Bytes on disk per source and in all, files shared between stores counted once.
    pub fn disk_usage(&mut self) -> Result<DiskUsage> {
        Ok(self.disk_usage_and_scans()?.0)
    }

    /// [`Self::disk_usage`], with the store scans it was made from (which say what
    /// deleting a store's model would free).
    pub fn disk_usage_and_scans(&mut self) -> Result<(DiskUsage, Vec<sources::SourceScan>)> {
        let listing = self.list(ListKind::Full, false)?;
        let library: Vec<ModelInfo> = listing
            .models
            .iter()
            .filter(|m| m.source == LIBRARY_SOURCE)
            .map(|m| ModelInfo::clone(m))
            .collect();
        let scans = self.store_scans();
        Ok((sources::disk_usage(&scans, &library), scans))
    }

    /// Starts looking for duplicates (files of 1 MiB or more) on a thread of its own.
    pub fn start_duplicates(&mut self) -> Result<DuplicatesState> {
        if self.duplicates.finding.is_some() || self.duplicates.linking.is_some() {
            return Err(LibraryError::Busy(
                "duplicates are already being worked on".into(),
            ));
        }
        let candidates = self.duplicate_candidates(duplicates::DEFAULT_MIN_SIZE)?;
        let library = self.library.clone();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let job = Background::spawn("model-library-duplicates", move || {
            let mut cache = crate::library::verify::HashCache::load(&library);
            let progress = crate::library::verify::VerifyProgress::default();
            let stop = std::sync::atomic::AtomicBool::new(false);
            let report = duplicates::find(candidates, &mut cache, &progress, &stop, threads);
            let _ = cache.save(&library); // a cache: failing to save loses nothing
            report
        })
        .map_err(|e| LibraryError::io(self.library.root(), e))?;
        self.duplicates.finding = Some(job);
        Ok(self.duplicates_state())
    }

    /// Starts replacing the extra copies the last search found with hard links (on a
    /// thread of its own; every rule of [`duplicates::link`] applies).
    pub fn start_linking(&mut self) -> Result<DuplicatesState> {
        if self.duplicates.finding.is_some() || self.duplicates.linking.is_some() {
            return Err(LibraryError::Busy(
                "duplicates are already being worked on".into(),
            ));
        }
        let Some(report) = self.duplicates.last.take() else {
            return Err(LibraryError::Busy("look for duplicates first".into()));
        };
        let job = Background::spawn("model-library-link", move || {
            let now = duplicates::now_ns();
            report
                .groups
                .iter()
                .flat_map(|g| duplicates::link(g, now))
                .collect()
        })
        .map_err(|e| LibraryError::io(self.library.root(), e))?;
        self.duplicates.linking = Some(job);
        Ok(self.duplicates_state())
    }

    /// What the shells show of duplicates.
    pub fn duplicates_state(&self) -> DuplicatesState {
        DuplicatesState {
            finding: self.duplicates.finding.is_some(),
            linking: self.duplicates.linking.is_some(),
            last: self.duplicates.last.clone(),
            linked: self.duplicates.linked.clone(),
        }
    }

    /// Takes in finished duplicates work; true when there was some.
    pub(super) fn finish_duplicates(&mut self) -> bool {
        let d = &mut self.duplicates;
        if let Some(found) = d.finding.as_ref().and_then(Background::try_take) {
            d.finding = None;
            d.last = found.ok();
            d.linked = None;
            return true;
        }
        if let Some(linked) = d.linking.as_ref().and_then(Background::try_take) {
            d.linking = None;
            d.linked = Some(linked.unwrap_or_default());
            // Files were replaced (same bytes): listings are scanned again to be sure.
            self.invalidate("duplicate copies were replaced with hard links");
            return true;
        }
        false
    }
}
