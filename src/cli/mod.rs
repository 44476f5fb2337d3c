//! The headless command line (SPEC §6): argument types (clap) and the commands that run
//! without a window. A thin shell over [`ModelLibraryService`]: it opens the library, calls
//! the service once, and prints. Exit status: 0 done, 1 failed, 2 bad usage (clap).

mod duplicates;
mod json;
mod progress;
mod reclaim;
mod verify;

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Error, Result};
use clap::{Args, Parser, Subcommand};

use crate::library::sources::SourceKind;
use crate::library::{
    CacheInfo, DeleteMode, LibraryError, ListQuery, ModelInfo, ModelLibraryService, ModelStatus,
    ServiceOptions, resolve_library,
};
use crate::util::{format_time, human_bytes};

/// `model-library`: the AI models on your disk, in one fast, filterable table.
#[derive(Debug, Parser)]
#[command(name = "model-library", version, about, long_about = None)]
pub struct Cli {
    /// Library folder (default: $MODEL_LIBRARY_DIR, else ~/.local/share/model-library).
    #[arg(long, global = true, value_name = "DIR")]
    pub library: Option<PathBuf>,

    /// Do not list the read-only stores (Hugging Face cache, Ollama, LM Studio) beside the
    /// default library. They are never listed with --library.
    #[arg(long, global = true)]
    pub no_sources: bool,

    /// Point a store at a folder, KIND=DIR (repeatable): huggingface, ollama, lmstudio,
    /// gpt4all, llamacpp, jan, comfyui or folder (a folder of your own, any depth). Listed
    /// even with --library.
    #[arg(long = "store", global = true, value_name = "KIND=DIR", value_parser = parse_store)]
    pub stores: Vec<(SourceKind, PathBuf)>,

    /// Do not list this store (repeatable).
    #[arg(long = "no-store", global = true, value_name = "KIND")]
    pub no_stores: Vec<SourceKind>,

    /// A shared cache tier on Redis for several instances on one library (default:
    /// $MODEL_LIBRARY_REDIS; none without either), e.g. redis://host:6379/0.
    #[arg(long, global = true, value_name = "URL")]
    pub redis: Option<String>,

    /// How the window notices changes on disk: auto (file events, else polling), events,
    /// poll (for network file systems) or off.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub watch: crate::library::watch::WatchOption,

    /// What to do; without a command the window opens.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The headless commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the models of the library.
    List(ListArgs),
    /// Show the state of the caches.
    CacheInfo(CacheInfoArgs),
    /// Disk usage per source (shared bytes counted once), largest and least recently used.
    Usage(CacheInfoArgs),
    /// Download a registered model (resumes a partial download); progress on stderr.
    Download(DownloadArgs),
    /// Import a model file or folder into the library, with a registry entry.
    Import(ImportArgs),
    /// Delete a model's folder and partial downloads (to the trash unless --permanent).
    Delete(DeleteArgs),
    /// Serve the original service's HTTP API on 127.0.0.1.
    Serve(ServeArgs),
    /// Check the bytes of every file whose content is known (Hugging Face and Ollama blobs
    /// by their names, library files by their registry sha256). Exit status 0: all good; 1:
    /// a mismatch or a file that could not be read (listed); 2: bad usage. Ctrl-C stops;
    /// the next run resumes (finished files are not read again).
    Verify(VerifyArgs),
    /// Groups of identical files across the library and the stores, and the space all but
    /// one copy take; --link replaces the extra copies with hard links (same file system
    /// only, bytes compared first, asking unless --yes).
    Duplicates(DuplicatesArgs),
    /// What no model needs — unreferenced Ollama and Hugging Face blobs, detached revisions,
    /// unfinished store downloads, stale downloads and staging folders of the library —
    /// with its size and why; --delete moves it to the trash (asking unless --yes).
    Reclaim(ReclaimArgs),
}

/// Options of `reclaim`.
#[derive(Debug, Args)]
pub struct ReclaimArgs {
    /// Print JSON: every item with its size and why.
    #[arg(long)]
    pub json: bool,
    /// Move the items to the trash (not those changed in the last minute).
    #[arg(long)]
    pub delete: bool,
    /// Do not ask before deleting.
    #[arg(long)]
    pub yes: bool,
}

/// Options of `duplicates`.
#[derive(Debug, Args)]
pub struct DuplicatesArgs {
    /// Print JSON: the groups, their copies and the bytes they waste.
    #[arg(long)]
    pub json: bool,
    /// Replace the extra copies with hard links to the first one.
    #[arg(long)]
    pub link: bool,
    /// Do not ask before linking.
    #[arg(long)]
    pub yes: bool,
    /// Only files of at least this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::library::duplicates::DEFAULT_MIN_SIZE)]
    pub min_size: u64,
}

/// Options of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only the files of these models (ids as `list` shows them).
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,
    /// Print JSON: every file checked, and the counts.
    #[arg(long)]
    pub json: bool,
}

/// Refuses (bad usage, said on stderr) an action `flag` asks before, when nobody can answer
/// (no terminal) and `--yes` was not given. Call before any work is done.
fn ensure_askable(yes: bool, flag: &str) -> Result<()> {
    use std::io::IsTerminal;
    if !yes && !io::stdin().is_terminal() {
        eprintln!("model-library: error: {flag} asks first; add --yes to go ahead without asking");
        return Err(ExitWith(2).into());
    }
    Ok(())
}

/// Whether to go ahead with what `question` asks: `yes` given, else the user's answer on
/// the terminal ([`ensure_askable`] was called first).
fn go_ahead(question: &str, yes: bool) -> Result<bool> {
    use std::io::BufRead;
    if yes {
        return Ok(true);
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// An exit status a command chose after saying why itself (no further message).
#[derive(Debug)]
struct ExitWith(i32);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TCP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Let web pages from ORIGIN (scheme://host[:port], or null) use the API; pages on
    /// this machine (http://localhost:PORT, 127.0.0.1, [::1]) always may. Repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN", value_parser = crate::server::normalize_origin)]
    pub allow_origin: Vec<String>,
    /// How changes on disk are noticed: auto (file events, else polling), events, poll
    /// (for network file systems) or off.
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub watch: crate::library::watch::WatchOption,
}

/// Options of `download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The model id.
    pub id: String,
}

/// Options of `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The model file or folder.
    pub path: PathBuf,
    /// Id of the new model (default: made from the file or folder name).
    #[arg(long)]
    pub id: Option<String>,
    /// copy, move, hardlink or symlink.
    #[arg(long, default_value = "copy")]
    pub mode: crate::library::ImportMode,
}

/// Options of `delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The model id.
    pub id: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Remove for good instead of moving to the trash.
    #[arg(long)]
    pub permanent: bool,
}

/// Options of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array of ModelInfo objects instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Fast listing: registry and folder names only, no sizes.
    #[arg(long)]
    pub quick: bool,
    /// Bypass the caches.
    #[arg(long)]
    pub force_refresh: bool,
    /// Only models of this provider.
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,
    /// Only models with this status (downloaded, downloading, partial, available, error).
    #[arg(long, value_name = "S", value_parser = parse_status)]
    pub status: Option<ModelStatus>,
    /// Only models with this capability.
    #[arg(long, value_name = "C")]
    pub capability: Option<String>,
    /// Only models that fit this machine's memory at their default context (an estimate
    /// from size and GGUF header; a model whose need cannot be told is left out).
    #[arg(long, conflicts_with = "quick")]
    pub fits: bool,
}

/// Options of `cache-info`.
#[derive(Debug, Args)]
pub struct CacheInfoArgs {
    /// Print JSON in the original service's shape.
    #[arg(long)]
    pub json: bool,
}

fn parse_status(s: &str) -> Result<ModelStatus, String> {
    s.parse().map_err(|e: LibraryError| e.to_string())
}

/// Runs a headless command; returns the process exit status. Errors are printed as one line
/// on stderr (with what was being done, when that adds to the error's own words).
pub fn run(
    library: Option<PathBuf>,
    sources: Vec<crate::library::sources::SourceConfig>,
    redis: Option<String>,
    command: Command,
) -> i32 {
    match run_command(library, sources, redis, command) {
        Ok(()) => 0,
        // A closed pipe (`| head`) is not a failure of ours.
        Err(err) if is_broken_pipe(&err) => 0,
        Err(err) if err.downcast_ref::<ExitWith>().is_some() => {
            err.downcast_ref::<ExitWith>().map_or(1, |e| e.0)
        }
        Err(err) => {
            eprintln!("model-library: error: {err:#}");
            1
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

/// `KIND=DIR` of `--store`.
fn parse_store(s: &str) -> std::result::Result<(SourceKind, PathBuf), String> {
    let (kind, dir) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KIND=DIR, got {s:?}"))?;
    if dir.is_empty() {
        return Err(format!("no folder given for {kind}"));
    }
    Ok((kind.parse()?, PathBuf::from(dir)))
}

/// The stores a command lists: the defaults (unless a library folder is named or
/// `--no-sources`), then `--store` and `--no-store` applied.
pub fn stores_of(cli: &Cli) -> Vec<crate::library::sources::SourceConfig> {
    use crate::library::sources::{default_sources, set_store};
    // The stores beside the library are part of "every model on this disk", which is what
    // the default invocation shows; a named library folder is listed on its own.
    let mut sources = if cli.library.is_none() && !cli.no_sources {
        default_sources(&|k| std::env::var_os(k), dirs::home_dir().as_deref())
    } else {
        Vec::new()
    };
    for (kind, dir) in &cli.stores {
        set_store(&mut sources, *kind, true, Some(dir.clone()));
    }
    for kind in &cli.no_stores {
        set_store(&mut sources, *kind, false, None);
    }
    sources
}

/// `--store` and `--no-store` as the window's per-store settings, by kind.
pub fn store_overrides(cli: &Cli) -> Vec<(String, crate::app::settings::StoreSetting)> {
    use crate::app::settings::StoreSetting;
    let pointed = cli.stores.iter().map(|(kind, dir)| {
        let setting = StoreSetting {
            disabled: false,
            root: Some(dir.clone()),
        };
        (kind.as_str().to_string(), setting)
    });
    let off = cli.no_stores.iter().map(|kind| {
        let root = cli
            .stores
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, d)| d.clone());
        (
            kind.as_str().to_string(),
            StoreSetting {
                disabled: true,
                root,
            },
        )
    });
    pointed.chain(off).collect()
}

/// `--redis`, else `$MODEL_LIBRARY_REDIS` (when not empty).
pub fn redis_of(cli: &Cli) -> Option<String> {
    cli.redis.clone().or_else(|| {
        std::env::var("MODEL_LIBRARY_REDIS")
            .ok()
            .filter(|v| !v.trim().is_empty())
    })
}

fn run_command(
    library: Option<PathBuf>,
    sources: Vec<crate::library::sources::SourceConfig>,
    redis: Option<String>,
    command: Command,
) -> Result<()> {
    let library = resolve_library(library)?;
    if let Command::Serve(args) = &command {
        let options = crate::server::ServeOptions {
            port: args.port,
            allow_origins: args.allow_origin.clone(),
            watch: args.watch,
            redis: redis.clone(),
            ..crate::server::ServeOptions::default()
        };
        return crate::server::serve_blocking(library, options, sources).map_err(Error::msg);
    }
    let scan_progress = std::sync::Arc::new(crate::library::ScanProgress::default());
    let mut service = ModelLibraryService::new(
        library,
        ServiceOptions {
            sources,
            redis,
            progress: std::sync::Arc::clone(&scan_progress),
            ..ServiceOptions::default()
        },
    )?;
    // Listings are many short lines: one buffer, flushed once (a line-buffered stdout made
    // ~217 000 `write` calls for 10 000 models as pretty JSON).
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let done = match command {
        Command::List(args) => {
            let _bar = progress::ScanBar::start(scan_progress);
            list(&mut service, &args, &mut out)
        }
        Command::CacheInfo(args) => {
            // A fresh process has only what the last run saved: report that.
            service.warm_start();
            cache_info(&service.cache_info(), args.json, &mut out)
        }
        Command::Delete(args) => delete(&mut service, &args, &mut out),
        Command::Download(args) => download(&mut service, &args, &mut out),
        Command::Usage(args) => {
            let _bar = progress::ScanBar::start(scan_progress);
            usage(&mut service, args.json, &mut out)
        }
        Command::Import(args) => import(&mut service, &args, &mut out),
        Command::Verify(args) => verify::verify(&mut service, &args, &mut out),
        Command::Duplicates(args) => duplicates::duplicates(&mut service, &args, &mut out),
        Command::Reclaim(args) => reclaim::reclaim(&mut service, &args, &mut out),
        Command::Serve(_) => unreachable!("handled above"),
    };
    // What the start found and finished for an earlier, interrupted run.
    for note in service.recovery_notes() {
        eprintln!("model-library: note: {note}");
    }
    done?;
    out.flush().context("writing to standard output")?;
    Ok(())
}

fn import(
    service: &mut ModelLibraryService,
    args: &ImportArgs,
    out: &mut impl Write,
) -> Result<()> {
    let outcome = service.import_model(&crate::library::ImportRequest {
        source: args.path.clone(),
        id: args.id.clone(),
        mode: args.mode,
    })?;
    writeln!(
        out,
        "imported {} as {} ({} files, {}, format {})",
        args.path.display(),
        outcome.id,
        outcome.files,
        human_bytes(outcome.bytes),
        outcome.format.as_deref().unwrap_or("unknown")
    )?;
    for note in &outcome.notes {
        eprintln!("model-library: note: {note}");
    }
    Ok(())
}

fn list(service: &mut ModelLibraryService, args: &ListArgs, out: &mut impl Write) -> Result<()> {
    let query = ListQuery {
        quick: args.quick,
        provider: args.provider.clone(),
        status: args.status,
        capability: args.capability.clone(),
    };
    let mut result = service.list_view(&query, args.force_refresh)?;
    if args.fits && service.enrich_metadata(usize::MAX) {
        // The library's headers are read after a scan (the window reads them in the
        // background); what fits needs them now.
        result = service.list_view(&query, false)?;
    }
    for problem in &result.view.listing.problems {
        eprintln!(
            "model-library: warning: {}: {problem}",
            service.library().registry_path().display()
        );
    }
    if let Some(off) = service.library().writes_off() {
        eprintln!("model-library: note: {off}");
    }
    let machine = args.fits.then(crate::library::fit::Machine::read);
    let models: Vec<&ModelInfo> = result
        .view
        .iter()
        .filter(|m| machine.is_none_or(|mc| crate::library::fit::fits(m, &mc) == Some(true)))
        .collect();
    if args.json {
        json::write_pretty_array(out, &models)?;
        writeln!(out)?;
    } else {
        write_table(models.into_iter(), out)?;
    }
    Ok(())
}

/// Writes models as an aligned text table with a summary line.
pub fn write_table<'a>(
    models: impl ExactSizeIterator<Item = &'a ModelInfo>,
    out: &mut impl Write,
) -> io::Result<()> {
    let header = [
        "ID",
        "PROVIDER",
        "STATUS",
        "SIZE",
        "FORMAT",
        "MODIFIED",
        "CAPABILITIES",
    ];
    let count = models.len();
    let mut total = 0u64;
    let rows: Vec<[String; 7]> = models
        .map(|m| {
            total += m.size_bytes().unwrap_or(0);
            [
                m.id.clone(),
                m.provider.to_string(),
                m.status.to_string(),
                m.size_bytes()
                    .map(human_bytes)
                    .unwrap_or_else(|| "-".into()),
                m.format.as_deref().unwrap_or("-").to_string(),
                m.modified().map(format_time).unwrap_or_else(|| "-".into()),
                if m.capabilities.is_empty() {
                    "-".into()
                } else {
                    m.capabilities.join(",")
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str], out: &mut dyn Write| -> io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&header, out)?;
    for row in &rows {
        line(&row.each_ref().map(String::as_str), out)?;
    }
    writeln!(
        out,
        "{count} model{}, {} on disk",
        if count == 1 { "" } else { "s" },
        human_bytes(total)
    )
}

fn usage(service: &mut ModelLibraryService, json: bool, out: &mut impl Write) -> Result<()> {
    use crate::library::LIBRARY_SOURCE;
    use crate::library::sources::{bytes_freed_by_deleting, largest_models, least_recently_used};
    let (usage, scans) = service.disk_usage_and_scans()?;
    let listing = service.list(crate::library::ListKind::Full, false)?;
    let on_disk: Vec<ModelInfo> = listing
        .models
        .iter()
        .filter(|m| m.size_bytes().is_some_and(|b| b > 0))
        .map(|m| ModelInfo::clone(m))
        .collect();
    let frees = |m: &ModelInfo| {
        if m.source == LIBRARY_SOURCE {
            m.size_bytes()
        } else {
            bytes_freed_by_deleting(&scans, &m.id)
        }
    };
    let entry = |m: &ModelInfo| {
        serde_json::json!({"id": m.id, "source": m.source, "size_bytes": m.size_bytes(),
            "modified": m.modified(), "frees_bytes": frees(m)})
    };
    let largest = largest_models(&on_disk, 10);
    let oldest = least_recently_used(&on_disk, 10);
    if json {
        let doc = serde_json::json!({
            "per_source": usage.per_source,
            "total_unique_bytes": usage.total_unique,
            "largest": largest.iter().map(|m| entry(m)).collect::<Vec<_>>(),
            "least_recently_used": oldest.iter().map(|m| entry(m)).collect::<Vec<_>>(),
        });
        serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "Disk usage (shared bytes counted once):")?;
    for (source, bytes) in &usage.per_source {
        writeln!(out, "  {source:<12} {:>12}", human_bytes(*bytes))?;
    }
    writeln!(
        out,
        "  {:<12} {:>12}",
        "total",
        human_bytes(usage.total_unique)
    )?;
    for (title, models) in [("Largest", &largest), ("Least recently used", &oldest)] {
        writeln!(out, "{title}:")?;
        for m in models.iter() {
            writeln!(
                out,
                "  {:<48} {:>12}  frees {:>12}  {}",
                m.id,
                m.size_bytes().map(human_bytes).unwrap_or_default(),
                frees(m).map(human_bytes).unwrap_or_else(|| "?".into()),
                m.modified().map(format_time).unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

fn download(
    service: &mut ModelLibraryService,
    args: &DownloadArgs,
    out: &mut impl Write,
) -> Result<()> {
    use std::time::Duration;
    service.start_download(&args.id)?;
    let board = service.download_board();
    let mut bar = progress::DownloadBar::new();
    let event = loop {
        if let Some(event) = service.wait_download(Duration::from_millis(200)) {
            break event;
        }
        if let Some(p) = board.get(&args.id) {
            bar.show(&p);
        }
    };
    bar.finish();
    match event.result {
        Ok(fetched) => {
            writeln!(
                out,
                "{} downloaded and verified; {} transferred",
                args.id,
                human_bytes(fetched)
            )?;
            Ok(())
        }
        Err(reason) => Err(LibraryError::CannotDownload {
            id: args.id.clone(),
            reason: format!("{reason} (run the same command again to resume)"),
        }
        .into()),
    }
}

fn delete(
    service: &mut ModelLibraryService,
    args: &DeleteArgs,
    out: &mut impl Write,
) -> Result<()> {
    let plan = service.plan_delete(&args.id)?;
    if !args.yes {
        let mut err = io::stderr().lock();
        writeln!(
            err,
            "This {} {} ({}) from:",
            if args.permanent {
                "permanently deletes"
            } else {
                "moves to the trash"
            },
            human_bytes(plan.bytes),
            crate::util::count_of(plan.files, "file")
        )?;
        for t in &plan.targets {
            writeln!(err, "  {}", t.display())?;
        }
        write!(err, "Type the model id to confirm: ")?;
        err.flush()?;
        let mut answer = String::new();
        io::stdin()
            .read_line(&mut answer)
            .context("reading the confirmation")?;
        if answer.trim() != args.id {
            return Err(LibraryError::NotConfirmed {
                id: args.id.clone(),
            }
            .into());
        }
    }
    let mode = if args.permanent {
        DeleteMode::Permanent
    } else {
        DeleteMode::Trash
    };
    let outcome = service.delete_model(&args.id, mode)?;
    writeln!(
        out,
        "{} {}; {} freed",
        outcome.id,
        if outcome.trashed {
            "moved to the trash"
        } else {
            "deleted"
        },
        human_bytes(outcome.freed_bytes)
    )?;
    Ok(())
}

fn cache_info(info: &CacheInfo, json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        serde_json::to_writer_pretty(&mut *out, info).map_err(io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    let s = &info.service_cache;
    let a = &info.api_cache;
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    writeln!(out, "library:            {}", s.library)?;
    writeln!(
        out,
        "service cache:      {}",
        if s.cache_valid {
            "valid".to_string()
        } else {
            format!("stale ({})", s.stale_reason.as_deref().unwrap_or("unknown"))
        }
    )?;
    writeln!(out, "cache timestamp:    {}", opt(s.cache_timestamp))?;
    writeln!(out, "cache age:          {} s", opt(s.cache_age_seconds))?;
    writeln!(out, "cache TTL:          {} s", s.cache_ttl_seconds)?;
    writeln!(out, "cached models:      {}", s.cached_model_count)?;
    writeln!(out, "cache keys:         {}", s.cache_keys.join(", "))?;
    writeln!(out, "registry mtime:     {}", opt(s.registry_mtime))?;
    writeln!(out, "models dir mtime:   {}", opt(s.models_dir_mtime))?;
    writeln!(out, "service hits/miss:  {}/{}", s.hits, s.misses)?;
    writeln!(out, "view cache entries: {}", a.api_cache_entries)?;
    writeln!(out, "view hits/miss:     {}/{}", a.hits, a.misses)?;
    writeln!(
        out,
        "writes:             {}",
        s.read_only_reason
            .as_deref()
            .map_or("on".to_string(), |why| format!("off: {why}"))
    )?;
    if let Some(sh) = &info.shared_cache {
        writeln!(out, "shared cache:       {} ({})", sh.state, sh.url)?;
        writeln!(
            out,
            "shared hits/miss:   {}/{}",
            sh.shared_hits, sh.shared_misses
        )?;
        writeln!(
            out,
            "shared sent/heard:  {} listings, {} changes / {} changes",
            sh.listings_published, sh.invalidations_sent, sh.invalidations_received
        )?;
        writeln!(
            out,
            "shared vouching:    {} (watch session {}), {} scans spared",
            if sh.vouched {
                "listing vouched for"
            } else {
                "listing not vouched for"
            },
            if sh.watching { "on" } else { "off" },
            sh.scans_spared
        )?;
        if let Some(e) = &sh.last_error {
            writeln!(out, "shared last error:  {e}")?;
        }
    }
    Ok(())
}
