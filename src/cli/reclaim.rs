//! `model-library reclaim [--json] [--delete] [--yes]`: what no model needs, in the library
//! and every store, with its size and why; `--delete` moves it to the trash (asking first
//! unless `--yes`).

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{ReclaimArgs, ensure_askable, go_ahead};
use crate::library::ModelLibraryService;
use crate::library::reclaim::{self, Deleted, Item};
use crate::util::human_bytes;

#[derive(Serialize)]
struct Output<'a> {
    items: &'a [Item],
    reclaimable: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<Vec<DeletedItem<'a>>>,
}

#[derive(Serialize)]
struct DeletedItem<'a> {
    path: &'a std::path::Path,
    #[serde(flatten)]
    outcome: &'a Deleted,
}

pub(super) fn reclaim(
    service: &mut ModelLibraryService,
    args: &ReclaimArgs,
    out: &mut impl Write,
) -> Result<()> {
    if args.delete {
        ensure_askable(args.yes, "--delete")?;
    }
    let items = service
        .reclaimable()
        .context("looking for what no model needs")?;
    let total: u64 = items.iter().map(|i| i.size).sum();
    let question = format!("Move {} to the trash?", human_bytes(total));
    let deleted = if args.delete && !items.is_empty() && go_ahead(&question, args.yes)? {
        Some(reclaim::delete(&items))
    } else {
        None
    };
    if args.json {
        let output = Output {
            items: &items,
            reclaimable: total,
            deleted: deleted.as_ref().map(|d| {
                d.iter()
                    .map(|(path, outcome)| DeletedItem { path, outcome })
                    .collect()
            }),
        };
        serde_json::to_writer_pretty(&mut *out, &output)?;
        writeln!(out)?;
        return Ok(());
    }
    for it in &items {
        let recent = if it.recent {
            "  [changed in the last minute: left alone]"
        } else {
            ""
        };
        writeln!(
            out,
            "{:>10}  {}  ({}: {}){recent}",
            human_bytes(it.size),
            it.path.display(),
            it.source,
            it.why
        )?;
    }
    writeln!(
        out,
        "Reclaimable: {} in {} items",
        human_bytes(total),
        items.len()
    )?;
    if let Some(deleted) = &deleted {
        let mut freed = 0;
        for (path, outcome) in deleted {
            match outcome {
                Deleted::Trashed { freed: f } => freed += f,
                Deleted::Skipped { reason } => {
                    writeln!(out, "skipped  {}: {reason}", path.display())?
                }
            }
        }
        writeln!(out, "{} moved to the trash", human_bytes(freed))?;
    }
    Ok(())
}
