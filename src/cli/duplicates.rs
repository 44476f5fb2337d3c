//! `model-library duplicates [--json] [--link] [--yes] [--min-size BYTES]`: the service
//! names the files, the core groups them by size and content (through the hash cache) and,
//! when asked, links the extra copies; this prints, asks first, and picks the exit status.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{DuplicatesArgs, ensure_askable, go_ahead};
use crate::library::ModelLibraryService;
use crate::library::duplicates::{self, Linked, Report};
use crate::library::verify::VerifyProgress;
use crate::util::human_bytes;

#[derive(Serialize)]
struct LinkedFile<'a> {
    path: &'a std::path::Path,
    #[serde(flatten)]
    outcome: &'a Linked,
}

#[derive(Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    report: &'a Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    linked: Option<Vec<LinkedFile<'a>>>,
}

pub(super) fn duplicates(
    service: &mut ModelLibraryService,
    args: &DuplicatesArgs,
    out: &mut impl Write,
) -> Result<()> {
    if args.link {
        ensure_askable(args.yes, "--link")?;
    }
    let candidates = service
        .duplicate_candidates(args.min_size)
        .context("finding the files")?;
    let progress = Arc::new(VerifyProgress::default());
    let stop = std::sync::atomic::AtomicBool::new(false);
    let report = super::verify::hashing(service, &progress, |cache, threads| {
        duplicates::find(candidates, cache, &progress, &stop, threads)
    });
    let question = format!(
        "Replace the extra copies with hard links, giving back {}?",
        human_bytes(report.linkable)
    );
    let linked = if args.link && report.linkable > 0 && go_ahead(&question, args.yes)? {
        let now = duplicates::now_ns();
        Some(
            report
                .groups
                .iter()
                .flat_map(|g| duplicates::link(g, now))
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
    if args.json {
        let output = Output {
            report: &report,
            linked: linked.as_ref().map(|l| {
                l.iter()
                    .map(|(path, outcome)| LinkedFile { path, outcome })
                    .collect()
            }),
        };
        serde_json::to_writer_pretty(&mut *out, &output)?;
        writeln!(out)?;
    } else {
        print_groups(&report, out)?;
        if let Some(linked) = &linked {
            print_linked(linked, out)?;
        }
    }
    Ok(())
}

fn print_groups(report: &Report, out: &mut impl Write) -> Result<()> {
    for g in &report.groups {
        writeln!(
            out,
            "{} × {}  ({} in extra copies)  sha256 {}…",
            g.copies.len(),
            human_bytes(g.size),
            human_bytes(g.wasted),
            &g.sha256[..12]
        )?;
        for (i, c) in g.copies.iter().enumerate() {
            let role = if i == 0 { "keep" } else { "copy" };
            let note = if c.same_file_system {
                ""
            } else {
                "  [another file system: a link cannot reach it]"
            };
            writeln!(
                out,
                "    {role}  {}  ({}){note}",
                c.path.display(),
                c.source
            )?;
            for p in &c.also_at {
                writeln!(
                    out,
                    "          {}  (the same file, hard-linked)",
                    p.display()
                )?;
            }
        }
    }
    for (path, why) in &report.unreadable {
        writeln!(out, "UNREADABLE  {}: {why}", path.display())?;
    }
    writeln!(
        out,
        "{}: {} in extra copies, {} of it where a hard link gives it back ({} files hashed, {} \
         from the hash cache)",
        duplicates::groups_phrase(report.groups.len()),
        human_bytes(report.wasted),
        human_bytes(report.linkable),
        report.hashed,
        report.from_hash_cache
    )?;
    Ok(())
}

fn print_linked(linked: &[(std::path::PathBuf, Linked)], out: &mut impl Write) -> Result<()> {
    let mut freed = 0;
    for (path, outcome) in linked {
        match outcome {
            Linked::Linked { freed: f } => {
                freed += f;
                writeln!(out, "linked   {}", path.display())?;
            }
            Linked::OtherFileSystem => {}
            Linked::Skipped { reason } => {
                writeln!(out, "skipped  {}: {reason}", path.display())?;
            }
        }
    }
    writeln!(out, "{} given back", human_bytes(freed))?;
    Ok(())
}
