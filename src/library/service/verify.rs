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
        self.memory_to_release = true;
        let scans = self.store_scans();
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

    /// The files that may have twins (see [`crate::library::duplicates::candidates`]): the
    /// library's and those of the enabled stores, of `min_size` bytes or more.
    pub fn duplicate_candidates(
        &mut self,
        min_size: u64,
    ) -> Result<Vec<crate::library::duplicates::Candidate>> {
        self.library.check_reachable()?;
        let scans = self.store_scans();
        Ok(crate::library::duplicates::candidates(
            &self.library,
            &scans,
            min_size,
        ))
    }

    /// What no model needs, in the library and the enabled stores (see
    /// [`crate::library::reclaim::find`]), largest first.
    pub fn reclaimable(&mut self) -> Result<Vec<crate::library::reclaim::Item>> {
        self.library.check_reachable()?;
        let registry = self.registry_for(Stamps::read(&self.library).registry)?;
        self.memory_to_release = true;
        Ok(crate::library::reclaim::find(
            &self.library,
            &registry,
            &self.sources,
        ))
    }

    /// Moves to the trash what [`Self::reclaimable`] finds now among `paths` (what the user
    /// saw and confirmed; anything else is left alone), except what changed in the last
    /// minute. The caches are dropped: stores and the library changed.
    pub fn reclaim(
        &mut self,
        paths: &[std::path::PathBuf],
    ) -> Result<Vec<(std::path::PathBuf, crate::library::reclaim::Deleted)>> {
        let items: Vec<_> = self
            .reclaimable()?
            .into_iter()
            .filter(|i| paths.contains(&i.path))
            .collect();
        let outcomes = crate::library::reclaim::delete(&items);
        self.invalidate("space was reclaimed");
        Ok(outcomes)
    }

    /// Every enabled store, scanned with the files behind its models (stores that cannot
    /// be read are left out; listings say why).
    pub(super) fn store_scans(&mut self) -> Vec<sources::SourceScan> {
        self.scan_enabled_stores().0
    }

    /// Takes in what a verify run found: mismatches are saved in `.cache/verify.bin` and
    /// mark their models `error` from the next listing on; files found good lose an older
    /// mark. The caches are dropped when that changes what a listing shows.
    pub fn record_verify(&mut self, checked: &[Checked]) -> Result<()> {
        let failures = self.failures();
        if failures.record(checked) {
            let failures = failures.clone();
            failures.save(&self.library)?;
            self.verify_failures = Some((Failures::stamp(&self.library), failures));
            self.invalidate("a verify run found files changed or damaged");
        }
        Ok(())
    }

    /// `listing` with the rows of models whose files are still as a verify run found them
    /// wrong marked `error`.
    pub(super) fn with_verify_marks(&mut self, listing: Arc<Listing>) -> Arc<Listing> {
        let failures = self.failures();
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

impl ModelLibraryService {
    /// Another process's verify run changed `.cache/verify.bin` since this service read it:
    /// the caches are dropped (their rows carry the old findings), and the next listing
    /// marks the new ones. One `stat`; true when that happened.
    pub(super) fn notice_verify_findings(&mut self) -> bool {
        let Some((seen, _)) = &self.verify_failures else {
            return false; // not read yet: the next listing reads it
        };
        if *seen == Failures::stamp(&self.library) {
            return false;
        }
        self.verify_failures = None;
        if self.listings.contains_key(&ListKind::Full) {
            self.invalidate("a verify run changed what is known about the files");
        }
        true
    }

    /// What verify runs found, read again when the file changed since it was read.
    fn failures(&mut self) -> &mut Failures {
        let now = Failures::stamp(&self.library);
        if self
            .verify_failures
            .as_ref()
            .is_none_or(|(seen, _)| *seen != now)
        {
            self.verify_failures = Some((now, Failures::load(&self.library)));
        }
        &mut self.verify_failures.as_mut().expect("set above").1
    }
}

/// A verify run going on its own thread, with what it was started with.
#[derive(Debug)]
pub(super) struct RunningVerify {
    job: verify::Job,
    /// Clock time it started.
    started: f64,
    /// The models it was asked for (empty: everything).
    only: Vec<String>,
}

/// What a verify run started by [`ModelLibraryService::start_verify`] found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Clock time it started and finished.
    pub started: f64,
    /// Clock time it finished.
    pub finished: f64,
    /// The models it was asked for (empty: everything).
    pub only: Vec<String>,
    /// The counts.
    pub summary: verify::Summary,
    /// Every file that was not found good.
    pub problems: Vec<Checked>,
}

/// A verify run's state, for the shells.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyState {
    /// Whether a run is going.
    pub running: bool,
    /// Its files checked so far and in all.
    pub files_done: u64,
    /// Files to check in all.
    pub files_total: u64,
    /// Bytes read so far.
    pub bytes_done: u64,
    /// Bytes to read in all (files the hash cache does not know).
    pub bytes_total: u64,
    /// What the last finished run found.
    pub last: Option<VerifyReport>,
}

impl ModelLibraryService {
    /// Starts verifying (everything, or the models `only` names) on a thread of its own;
    /// [`Self::tick`] takes in the result. Refused while a run is going, and for ids no
    /// listing has.
    pub fn start_verify(&mut self, only: &[String]) -> Result<VerifyState> {
        if self.verify_job.is_some() {
            return Err(LibraryError::Busy("a verify run is already going".into()));
        }
        let targets = self.verify_targets(only)?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let job = verify::Job::start(self.library.clone(), targets, threads)?;
        self.verify_job = Some(RunningVerify {
            job,
            started: self.clock.now(),
            only: only.to_vec(),
        });
        Ok(self.verify_state())
    }

    /// Asks the running verify to stop (what it finished is kept; the next run resumes).
    pub fn stop_verify(&mut self) {
        if let Some(running) = &self.verify_job {
            running.job.stop();
        }
    }

    /// The running verify's progress and the last run's report.
    pub fn verify_state(&self) -> VerifyState {
        let read = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let progress = self.verify_job.as_ref().map(|r| r.job.progress());
        VerifyState {
            running: self.verify_job.is_some(),
            files_done: progress.map_or(0, |p| read(&p.done_files)),
            files_total: progress.map_or(0, |p| read(&p.total_files)),
            bytes_done: progress.map_or(0, |p| read(&p.done_bytes)),
            bytes_total: progress.map_or(0, |p| read(&p.total_bytes)),
            last: self.last_verify.clone(),
        }
    }

    /// Takes in a finished verify run, if there is one; true when it changed what listings
    /// show or what [`Self::verify_state`] says.
    pub(super) fn finish_verify(&mut self) -> bool {
        let Some(checked) = self.verify_job.as_ref().and_then(|r| r.job.try_finish()) else {
            return false;
        };
        let running = self.verify_job.take().expect("checked above");
        if let Err(e) = self.record_verify(&checked) {
            self.last_error = Some(format!("recording what verify found: {e}"));
        }
        self.last_verify = Some(VerifyReport {
            started: running.started,
            finished: self.clock.now(),
            only: running.only,
            summary: verify::Summary::of(&checked),
            problems: checked
                .into_iter()
                .filter(|c| c.verdict != verify::Verdict::Ok)
                .collect(),
        });
        self.generation.fetch_add(1, Ordering::SeqCst);
        true
    }
}
