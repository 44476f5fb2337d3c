//! Benchmarks: generates libraries of 1 000, 10 000 and 100 000 models (sparse files, so no
//! real disk space) and prints a table of what the service costs at each size, with
//! `du -sb` on the same tree as the reference, and the time to build one frame of the
//! model table. Run with:
//!
//! `cargo run --release --example bench [-- --sizes 1000,10000,100000 --dir /tmp/x]`
//!
//! With `--freshness`, it measures instead how fast a change on disk shows in a served
//! listing (file events and polling), the polling verifier's CPU share and the time from
//! start to a stated freshness bound (see `freshness.rs`).

mod freshness;
mod heap;
mod process;
mod shared;
mod verify;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use model_library::app::settings::SortKey;
use model_library::app::ui::table::{TableInput, table_ui};
use model_library::fixtures::{GenSpec, generate_library};
use model_library::library::{
    Library, ListKind, ListQuery, ModelLibraryService, ModelStatus, ServiceOptions, persist,
};
use model_library::library::{Stamps, View};

#[derive(Parser)]
struct Args {
    /// Library sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    sizes: Vec<usize>,
    /// Files per model.
    #[arg(long, default_value_t = 3)]
    files: usize,
    /// Where to generate the libraries (default: a temp dir, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Repetitions of the slow measurements (median reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Keep the page cache warm (do not drop it before full scans and du).
    #[arg(long)]
    warm: bool,
    /// Measure freshness (change → served, verifier CPU, start → bound) instead.
    #[arg(long)]
    freshness: bool,
    /// Trials with file events (freshness).
    #[arg(long, default_value_t = 20)]
    event_trials: usize,
    /// Trials with polling (freshness).
    #[arg(long, default_value_t = 5)]
    poll_trials: usize,
    /// Measure whole processes instead: `list --json` against `du`, `serve`'s memory and
    /// its repeated answers (needs `cargo build --release` for the binary).
    #[arg(long)]
    process: bool,
    /// `model-library verify` against `sha256sum` (needs `cargo build --release`).
    #[arg(long)]
    verify: bool,
    /// With `--process`: only `serve` and the window (no `list`/`du` runs).
    #[arg(long)]
    no_list: bool,
    /// Show where the live heap of a settled service goes, step by step.
    #[arg(long)]
    heap: bool,
    /// The shared cache tier on a real redis-server (needs the redis-server package).
    #[arg(long)]
    shared: bool,
}

/// One row of the report: a name, one figure per size, the target.
struct Row {
    name: &'static str,
    target: &'static str,
    values: Vec<String>,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed(), out)
}

fn fmt(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Drops the OS page cache if allowed (root on Linux); returns whether it did.
fn drop_page_cache() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Counts live heap bytes, so the memory of one listing can be measured exactly (resident
/// set sizes hide it: the allocator reuses memory freed by earlier scans).
struct CountingAlloc;

static LIVE_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the same layout; the counter is
// only bookkeeping.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, std::sync::atomic::Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn heap_bytes() -> u64 {
    LIVE_BYTES.load(std::sync::atomic::Ordering::Relaxed) as u64
}

fn service(library: &Library) -> ModelLibraryService {
    ModelLibraryService::new(
        library.clone(),
        ServiceOptions {
            persist: false,
            ..ServiceOptions::default()
        },
    )
    .expect("service")
}

/// Median of many repetitions of a fast operation.
fn micro(reps: usize, mut f: impl FnMut()) -> Duration {
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f();
        v.push(t.elapsed());
    }
    median(v)
}

fn du(models: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new("du").arg("-sb").arg(models).output();
    let d = t.elapsed();
    assert!(out.is_ok_and(|o| o.status.success()), "du -sb failed");
    d
}

/// Frame times of the model table with every row of `view`, scrolling through it.
fn frame_times(view: &View) -> (Duration, Duration) {
    let ctx = egui::Context::default();
    let order: Vec<u32> = (0..view.len() as u32).collect();
    let downloads = Default::default();
    let screen = egui::Rect::from_min_size(egui::Pos2::ZERO, egui::vec2(1360.0, 820.0));
    let mut times = Vec::new();
    let steps = 60;
    for i in 0..steps + 5 {
        let row = (i * view.len() / steps).min(view.len().saturating_sub(1));
        let raw = egui::RawInput {
            screen_rect: Some(screen),
            time: Some(i as f64 / 60.0),
            ..Default::default()
        };
        let t = Instant::now();
        let out = ctx.run_ui(raw, |ui| {
            egui::CentralPanel::default().show(ui, |ui| {
                table_ui(
                    ui,
                    &TableInput {
                        view,
                        order: &order,
                        sort: SortKey::Name,
                        ascending: true,
                        selected: None,
                        scroll_to: Some(row),
                        downloads: &downloads,
                    },
                );
            });
        });
        let mut out = out;
        let _ = ctx.tessellate(std::mem::take(&mut out.shapes), out.pixels_per_point);
        out.textures_delta.clear(); // no renderer here: nothing uploads the font atlas
        if i >= 5 {
            times.push(t.elapsed()); // the first frames warm up fonts and caches
        }
    }
    let worst = *times.iter().max().expect("frames");
    (median(times), worst)
}

/// Generates a library of `n` models with `files` files each as `base/lib-<n>`, replacing
/// whatever was there.
fn fresh_library(base: &Path, n: usize, files: usize) -> PathBuf {
    let root = base.join(format!("lib-{n}"));
    let _ = std::fs::remove_dir_all(&root);
    let spec = GenSpec {
        models: n,
        files_per_model: files,
        file_size: 64 << 20,
    };
    generate_library(&root, &spec).expect("generate");
    settle_registry(&root);
    root
}

/// Dates the generated registry a minute back: a library at rest, as a user's is between
/// changes. (A registry written less than `registry_copy::SETTLED` seconds ago is parsed
/// from JSON by every run, and its binary copy is made only once it has settled: measured
/// right after generating, the first seconds of runs measured that parse instead.)
fn settle_registry(root: &Path) {
    let registry = root.join("model_registry.json");
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&registry)
        .and_then(|f| f.set_modified(past))
        .expect("date the registry");
}

/// `--process`: whole-process figures for each size (see `process.rs`).
fn process_main(args: &Args, base: &Path) {
    let bin = process::binary();
    let empty = base.join("lib-empty");
    let _ = std::fs::remove_dir_all(&empty);
    std::fs::create_dir_all(empty.join("models")).expect("empty library");
    let screen = fresh_library(base, process::SCREEN_MODELS, args.files);
    for &n in &args.sizes {
        let root = fresh_library(base, n, args.files);
        // Let the generated tree reach the disk first: writeback during the runs would
        // weigh on whichever command happens to run then.
        let _ = Command::new("sync").status();
        process::report(
            &bin,
            &root,
            &empty,
            &screen,
            n,
            args.reps.max(7),
            !args.no_list,
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}

fn main() {
    let args = Args::parse();
    let temp = tempfile::tempdir().expect("temp dir");
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    if args.freshness {
        freshness_main(&args, &base);
        return;
    }
    if args.process {
        process_main(&args, &base);
        return;
    }
    if args.verify {
        verify::report(&process::binary(), &base, args.reps);
        return;
    }
    if args.shared {
        println!("| models | measure | result | target |");
        println!("|---|---|---|---|");
        for &n in &args.sizes {
            for row in shared::run(&fresh_library(&base, n, args.files), n, args.reps) {
                println!("{row}");
            }
        }
        return;
    }
    if args.heap {
        for &n in &args.sizes {
            heap::report(&fresh_library(&base, n, args.files), n);
        }
        return;
    }
    let mut rows: Vec<Row> = [
        ("models (files each)", ""),
        ("generate library", ""),
        ("cold full scan (median)", ""),
        ("  du -sb models/ (median)", "reference"),
        ("  ratio scan / du", "≤ 1.0 at 10k"),
        ("fast scan", ""),
        ("service cache hit", "≤ 50 µs at 100k"),
        ("view cache hit", "≤ 50 µs at 100k"),
        ("view cache miss (filter)", ""),
        ("validity check (3 stats)", ""),
        ("incremental rescan, 1 model", "≤ 1 % of full at 10k"),
        ("  as % of full scan", ""),
        ("persisted cache save", ""),
        ("persisted cache load", "≤ 150 ms at 100k"),
        ("revalidate saved listing (start-up)", ""),
        ("heap / model: the listing", "≤ 1 KiB"),
        ("heap / model: service (+ registry)", ""),
        ("table frame, median", "≤ 4 ms at 100k"),
        ("table frame, worst", ""),
        ("sort by name (UI)", ""),
    ]
    .into_iter()
    .map(|(name, target)| Row {
        name,
        target,
        values: Vec::new(),
    })
    .collect();
    let mut dropped_any = false;
    let mut dropped_all = true;

    for &n in &args.sizes {
        let (gen_time, root) = time(|| fresh_library(&base, n, args.files));
        let library = Library::new(&root);
        let mut v = Vec::new();
        v.push(format!("{n} ({})", args.files));
        v.push(fmt(gen_time));

        // Cold full scan vs du -sb, alternating, each after dropping the page cache if we can.
        let mut scans = Vec::new();
        let mut dus = Vec::new();
        for _ in 0..args.reps {
            let d = !args.warm && drop_page_cache();
            dropped_any |= d;
            dropped_all &= d;
            let mut svc = service(&library);
            scans.push(time(|| svc.list(ListKind::Full, true).expect("scan")).0);
            let d = !args.warm && drop_page_cache();
            dropped_all &= d;
            dus.push(du(&library.models_dir()));
        }
        let (scan, dut) = (median(scans), median(dus));
        v.push(fmt(scan));
        v.push(fmt(dut));
        v.push(format!("{:.2}", scan.as_secs_f64() / dut.as_secs_f64()));

        let mut svc = service(&library);
        let fast = median(
            (0..args.reps)
                .map(|_| time(|| svc.list(ListKind::Fast, true).expect("fast")).0)
                .collect(),
        );
        v.push(fmt(fast));

        // Memory: resident growth while one full listing is alive.
        // Memory: the listing alone (a throwaway service), then a whole service.
        let before = heap_bytes();
        let listing_only = service(&library).list(ListKind::Full, false).expect("scan");
        let listing_bytes = heap_bytes().saturating_sub(before);
        drop(listing_only);
        let before = heap_bytes();
        let mut svc = service(&library);
        let listing = svc.list(ListKind::Full, false).expect("scan");
        let after = heap_bytes();
        let hit = micro(2000, || {
            let l = svc.list(ListKind::Full, false).expect("hit");
            std::hint::black_box(l);
        });
        v.push(fmt(hit));
        let q = ListQuery::default();
        svc.list_view(&q, false).expect("view");
        let view_hit = micro(2000, || {
            let r = svc.list_view(&q, false).expect("view hit");
            assert!(r.cache_hit);
            std::hint::black_box(r);
        });
        v.push(fmt(view_hit));
        let filter = ListQuery {
            status: Some(ModelStatus::Downloaded),
            ..Default::default()
        };
        let view_miss = micro(20, || {
            let l = Arc::clone(&listing);
            std::hint::black_box(View::filter(l, &filter));
        });
        v.push(fmt(view_miss));
        let check = micro(2000, || {
            let stamps = Stamps::read(&library);
            std::hint::black_box(
                listing
                    .check(listing.timestamp + 1.0, 300, &stamps, true)
                    .is_ok(),
            );
        });
        v.push(fmt(check));

        // Incremental: one file lands in one model; the watcher's change is applied.
        svc.start_watching();
        let incremental = if svc.watch_mode() == model_library::library::watch::WatchMode::Events {
            let model = listing.models[listing.models.len() / 2..]
                .iter()
                .find(|m| m.status == ModelStatus::Downloaded)
                .expect("a downloaded model");
            let target = model.path().join("landed.bin");
            std::fs::write(&target, b"new weights").expect("write");
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut took = None;
            while Instant::now() < deadline {
                let (d, changed) = time(|| svc.apply_changes());
                if changed {
                    took = Some(d);
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = std::fs::remove_file(&target);
            took
        } else {
            None
        };
        match incremental {
            Some(d) => {
                v.push(fmt(d));
                v.push(format!(
                    "{:.2} %",
                    100.0 * d.as_secs_f64() / scan.as_secs_f64()
                ));
            }
            None => {
                v.push(format!("n/a ({})", svc.watch_mode()));
                v.push("-".into());
            }
        }

        let (save, _) = time(|| persist::save(&library, &listing).expect("save"));
        v.push(fmt(save));
        let load = median(
            (0..args.reps)
                .map(|_| time(|| persist::load(&library).expect("load")).0)
                .collect(),
        );
        v.push(fmt(load));
        // Start-up: load the saved listing, then revalidate it model by model (nothing
        // changed, so no model is rescanned; the folders' fingerprints are checked).
        let revalidate = median(
            (0..args.reps)
                .map(|_| {
                    let mut svc =
                        ModelLibraryService::new(library.clone(), ServiceOptions::default())
                            .expect("service");
                    assert!(svc.warm_start().is_some());
                    time(|| svc.list(ListKind::Full, false).expect("revalidate")).0
                })
                .collect(),
        );
        v.push(fmt(revalidate));
        v.push(format!("{:.0} B", listing_bytes as f64 / n as f64));
        v.push(format!(
            "{:.0} B",
            after.saturating_sub(before) as f64 / n as f64
        ));

        let view = View::filter(Arc::clone(&listing), &ListQuery::default());
        let (frame_median, frame_worst) = frame_times(&view);
        v.push(fmt(frame_median));
        v.push(fmt(frame_worst));
        let sort = micro(3, || {
            let mut order: Vec<u32> = (0..view.len() as u32).collect();
            order.sort_by_cached_key(|&i| view.get(i as usize).expect("row").name.to_lowercase());
            std::hint::black_box(order);
        });
        v.push(fmt(sort));

        for (row, value) in rows.iter_mut().zip(v) {
            row.values.push(value);
        }
        drop(svc);
        if args.dir.is_none() {
            let _ = std::fs::remove_dir_all(&root);
        }
        eprintln!("measured {n} models");
    }

    let cache_note = if args.warm {
        "warm: the page cache was left warm (--warm)"
    } else if dropped_all {
        "cold: the OS page cache was dropped before each full scan and each du"
    } else if dropped_any {
        "mixed: the OS page cache could be dropped only some of the time"
    } else {
        "warm-cache figures: the OS page cache could not be dropped (not root?)"
    };
    println!(
        "| metric | {} | target |",
        args.sizes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}---|", "---|".repeat(args.sizes.len()));
    for row in &rows {
        println!(
            "| {} | {} | {} |",
            row.name,
            row.values.join(" | "),
            row.target
        );
    }
    println!();
    println!("Page cache: {cache_note}.");
    println!(
        "Machine: {} cores; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |s| s.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_else(|| "unknown CPU".into())
    );
}

/// `--freshness`: one table of freshness figures over the sizes asked for.
fn freshness_main(args: &Args, base: &Path) {
    println!("| models | watch | measure | result | note |");
    println!("|---|---|---|---|---|");
    for &n in &args.sizes {
        let root = fresh_library(base, n, args.files);
        for line in freshness::run(&root, n, args.event_trials, args.poll_trials) {
            println!("{line}");
        }
        if args.dir.is_none() {
            let _ = std::fs::remove_dir_all(&root);
        }
        eprintln!("measured freshness at {n} models");
    }
}
