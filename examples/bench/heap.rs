//! `--heap`: where the live heap of a settled service goes (issue #13's "lean rows"), step
//! by step, with the benchmark's counting allocator: the service opened, its first full
//! listing, watching set up (and the background scan after it), header metadata read,
//! the listing encoded as the server keeps it. Figures are bytes per model.

use std::path::Path;
use std::time::{Duration, Instant};

use model_library::library::watch::WatchOption;
use model_library::library::{Library, ListQuery, ModelInfo, ModelLibraryService, ServiceOptions};

use super::heap_bytes;

fn step(name: &str, before: &mut u64, n: usize, base: u64) {
    let now = heap_bytes();
    println!(
        "| {name} | {:+.0} | {:.0} |",
        (now as f64 - *before as f64) / n as f64,
        (now.saturating_sub(base)) as f64 / n as f64
    );
    *before = now;
}

/// Prints the table for the library at `root` (of `n` models).
pub fn report(root: &Path, n: usize) {
    println!("### live heap of a service over {n} models (bytes per model)\n");
    println!("| step | added | total |");
    println!("|---|---|---|");
    // The registry on its own, measured first (no other thread is freeing anything yet).
    let before = heap_bytes();
    let parsed = model_library::library::Registry::load(&Library::new(root)).expect("registry");
    let registry = model_library::library::PackedRegistry::pack(&parsed);
    drop(parsed);
    let registry_bytes = heap_bytes().saturating_sub(before);
    let before = heap_bytes();
    let slim = registry.without_texts();
    let slim_bytes = heap_bytes().saturating_sub(before);
    drop(slim);
    drop(registry);
    let base = heap_bytes();
    let mut before = base;
    let mut service = ModelLibraryService::new(
        Library::new(root),
        ServiceOptions {
            persist: false,
            watch: WatchOption::Auto,
            ..ServiceOptions::default()
        },
    )
    .expect("service");
    step(
        "service opened (watch set-up started)",
        &mut before,
        n,
        base,
    );
    let first = service
        .list_view(&ListQuery::default(), false)
        .expect("first listing");
    step("first full listing (+ registry kept)", &mut before, n, base);
    let deadline = Instant::now() + Duration::from_secs(300);
    while service
        .cache_info()
        .service_cache
        .freshness_bound_seconds
        .is_none()
    {
        assert!(Instant::now() < deadline, "watching did not settle");
        service.tick();
        std::thread::sleep(Duration::from_millis(50)); // the worker's tick rate
    }
    drop(first);
    step(
        "watching set up, background scan installed",
        &mut before,
        n,
        base,
    );
    // Header metadata: every header read (here, on this thread), then a tick for any batch
    // the service had started on its own.
    while service.enrich_metadata(usize::MAX) && Instant::now() < deadline {}
    service.tick();
    step("header metadata read", &mut before, n, base);
    let view = service
        .list_view(&ListQuery::default(), false)
        .expect("listing")
        .view;
    let models: Vec<&ModelInfo> = view.iter().collect();
    let plain = serde_json::to_vec(&models).expect("encode");
    drop(models);
    let plain_len = plain.len();
    let body = {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&plain).expect("compress");
        let mut body = encoder.finish().expect("compress");
        body.shrink_to_fit();
        body
    };
    drop(plain);
    step(
        "the listing's JSON body, gzip (as the server keeps it)",
        &mut before,
        n,
        base,
    );
    println!(
        "\nbody {:.1} MB plain ({:.0} B per model), kept compressed {:.1} MB ({:.0} B per model)",
        plain_len as f64 / 1e6,
        plain_len as f64 / n as f64,
        body.len() as f64 / 1e6,
        body.len() as f64 / n as f64
    );
    drop(body);
    drop(view);
    step("body and view dropped", &mut before, n, base);
    drop(service);
    step("service dropped (all it held)", &mut before, n, base);
    let mut alone = ModelLibraryService::new(
        Library::new(root),
        ServiceOptions {
            persist: false,
            watch: WatchOption::Off,
            ..ServiceOptions::default()
        },
    )
    .expect("service");
    let listing = alone
        .list(model_library::library::ListKind::Full, true)
        .expect("listing");
    drop(alone);
    let with = heap_bytes();
    drop(listing);
    let listing_bytes = with.saturating_sub(heap_bytes().min(with));
    println!(
        "registry as a scan reads it: {:.0} B per model, as kept between scans (no names and descriptions): {:.0} B; one full listing: {:.0} B per model\n",
        registry_bytes as f64 / n as f64,
        slim_bytes as f64 / n as f64,
        listing_bytes as f64 / n as f64
    );
}
