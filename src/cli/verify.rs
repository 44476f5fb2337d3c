//! `model-library verify [ID…] [--json]`: the service names the files, the core hashes
//! them (with the hash cache), the service records what was found; this prints it and
//! chooses the exit status. Ctrl-C stops the run between pieces; what was finished is kept.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{ExitWith, VerifyArgs, progress};
use crate::library::verify::{self, Checked, HashCache, Summary, Verdict, VerifyProgress};
use crate::library::{LibraryError, ModelLibraryService};
use crate::util::human_bytes;

/// Set by the first Ctrl-C of a verify run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
    // A second Ctrl-C stops the process at once. (`signal` is async-signal-safe.)
    // SAFETY: restoring the default disposition of SIGINT.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// Runs `work` (hashing on as many threads as cores) with a progress bar and the library's
/// hash cache, saved afterwards — also after a stop, so the next run reads none of the
/// files finished.
pub(super) fn hashing<T>(
    service: &ModelLibraryService,
    progress: &Arc<VerifyProgress>,
    work: impl FnOnce(&mut HashCache, usize) -> T,
) -> T {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let _bar = progress::VerifyBar::start(Arc::clone(progress));
    let mut cache = HashCache::load(service.library());
    let result = work(&mut cache, threads);
    if let Err(e) = cache.save(service.library()) {
        eprintln!("model-library: warning: the hash cache could not be saved: {e}");
    }
    result
}

#[derive(Serialize)]
struct Report<'a> {
    files: &'a [Checked],
    summary: &'a Summary,
}

pub(super) fn verify(
    service: &mut ModelLibraryService,
    args: &VerifyArgs,
    out: &mut impl Write,
) -> Result<()> {
    let targets = match service.verify_targets(&args.ids) {
        Err(e @ LibraryError::NotListed(_)) => {
            eprintln!("model-library: error: {e}");
            return Err(ExitWith(2).into());
        }
        other => other.context("finding the files to verify")?,
    };
    let bytes: u64 = targets
        .iter()
        .filter_map(|t| std::fs::symlink_metadata(&t.path).ok())
        .map(|m| m.len())
        .sum();
    let progress = Arc::new(VerifyProgress::default());
    // SAFETY: the handler only stores to an atomic and restores the default disposition.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
    let checked = hashing(service, &progress, |cache, threads| {
        verify::run(targets, cache, &progress, &INTERRUPTED, threads)
    });
    service
        .record_verify(&checked)
        .context("recording what verify found")?;
    let summary = Summary::of(&checked);
    if args.json {
        serde_json::to_writer_pretty(
            &mut *out,
            &Report {
                files: &checked,
                summary: &summary,
            },
        )?;
        writeln!(out)?;
    } else {
        print_table(&checked, &summary, bytes, out)?;
    }
    out.flush()?;
    if summary.all_good() {
        Ok(())
    } else {
        Err(ExitWith(1).into())
    }
}

fn print_table(
    checked: &[Checked],
    summary: &Summary,
    bytes: u64,
    out: &mut impl Write,
) -> Result<()> {
    for c in checked {
        let models = c.target.models.join(", ");
        let line = match &c.verdict {
            Verdict::Ok => continue,
            Verdict::Mismatch { .. } => {
                format!(
                    "MISMATCH    {}  ({models})",
                    c.mismatch_message().unwrap_or_default()
                )
            }
            Verdict::Unreadable { reason } => {
                format!(
                    "UNREADABLE  {}: {reason}  ({models})",
                    c.target.path.display()
                )
            }
            Verdict::Changed => format!(
                "CHANGED     {}: it changed while it was read; verify again  ({models})",
                c.target.path.display()
            ),
            Verdict::Stopped => format!("STOPPED     {}  ({models})", c.target.path.display()),
        };
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} files ({}): {} ok, {} mismatched, {} unreadable{}{}; {} from the hash cache",
        summary.files,
        human_bytes(bytes),
        summary.ok,
        summary.mismatched,
        summary.unreadable,
        if summary.changed > 0 {
            format!(", {} changed while read", summary.changed)
        } else {
            String::new()
        },
        if summary.stopped > 0 {
            format!(
                ", {} not finished (stopped: run verify again to resume)",
                summary.stopped
            )
        } else {
            String::new()
        },
        summary.from_hash_cache,
    )?;
    Ok(())
}
