//! The window, headless (egui_kittest): refresh, TTL slider, filters, search, sorting, the
//! delete flow, a corrupt registry, and a failing worker. The worker is waited for by
//! stepping frames until no request is pending, with a bounded deadline.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{TestLib, registry_json};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use model_library::app::settings::Settings;
use model_library::app::worker::Request;
use model_library::app::{AppOptions, ModelLibraryApp};
use model_library::library::DeleteMode;

type H = Harness<'static, ModelLibraryApp>;

fn open(lib: &TestLib) -> H {
    let settings = Settings {
        delete_mode: DeleteMode::Permanent,
        ..Settings::default()
    };
    start(Some(lib.root().to_path_buf()), settings, false)
}

/// A window on `library` with `settings`, waited for.
fn start(library: Option<std::path::PathBuf>, settings: Settings, stores: bool) -> H {
    start_sized(library, settings, stores, egui::vec2(1400.0, 900.0), 1.0)
}

/// [`start`] in a window of `size` points at `scale` pixels per point.
fn start_sized(
    library: Option<std::path::PathBuf>,
    settings: Settings,
    stores: bool,
    size: egui::Vec2,
    scale: f32,
) -> H {
    let options = AppOptions {
        library,
        settings: Some(settings),
        stores,
        watch: model_library::library::watch::WatchOption::Auto,
        store_overrides: Vec::new(),
        redis: None,
    };
    start_with(options, size, scale)
}

/// What a window on `lib` opens with: default settings, no other stores, files watched, no
/// shared cache.
fn options_on(lib: &TestLib) -> AppOptions {
    AppOptions {
        library: Some(lib.root().to_path_buf()),
        settings: Some(Settings::default()),
        stores: false,
        watch: model_library::library::watch::WatchOption::Auto,
        store_overrides: Vec::new(),
        redis: None,
    }
}

/// A window started with `options` at the usual size, waited for.
fn start_options(options: AppOptions) -> H {
    start_with(options, egui::vec2(1400.0, 900.0), 1.0)
}

/// A window started with `options`, waited for.
fn start_with(options: AppOptions, size: egui::Vec2, scale: f32) -> H {
    let mut h = Harness::builder()
        .with_size(size)
        .with_pixels_per_point(scale)
        .with_max_steps(200)
        .build_eframe(move |cc| ModelLibraryApp::new(cc, options));
    settle(&mut h);
    h
}

/// Steps frames until the window has no request pending (bounded), then runs to rest; again
/// if running to rest started another request (a cache-state poll, an automatic relist).
fn settle(h: &mut H) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        while h.state().is_busy() {
            assert!(
                Instant::now() < deadline,
                "the worker did not answer in time"
            );
            h.step();
            std::thread::sleep(Duration::from_millis(2));
        }
        h.run();
        if !h.state().is_busy() {
            return;
        }
    }
}

/// Opens the combo box labelled `combo`, picks `option`, and waits for the listing.
fn pick(h: &mut H, combo: &str, option: &str) {
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, combo)
        .click();
    h.run();
    h.get_by_role_and_label(egui::accesskit::Role::Button, option)
        .click();
    settle(h);
}

fn ids(h: &H) -> Vec<String> {
    h.state()
        .visible_models()
        .iter()
        .map(|m| m.id.clone())
        .collect()
}

fn sample() -> TestLib {
    let lib = TestLib::new();
    lib.registry(
        r#"{"version":1,"models":[
        {"id":"llama-chat","name":"Llama Chat","provider":"huggingface","capabilities":["chat"],
         "description":"a friendly llama","files":[{"path":"w.gguf","size":30}]},
        {"id":"embedder","name":"Embedder","provider":"ollama","capabilities":["embedding"],
         "files":[{"path":"w.bin","size":10}]},
        {"id":"whisper","name":"Whisper","provider":"huggingface","capabilities":["speech"]}]}"#,
    )
    .file("models/llama-chat/w.gguf", 30)
    .file("models/embedder/w.bin", 10)
    .file("models/zeta-local/x.safetensors", 20);
    lib
}

#[test]
fn first_listing_fills_in() {
    let lib = sample();
    let h = open(&lib);
    assert_eq!(ids(&h), ["embedder", "llama-chat", "whisper", "zeta-local"]);
    assert!(h.query_by_label("Llama Chat").is_some());
    let info = h.state().cache_info().unwrap();
    assert_eq!(info.service_cache.cached_model_count, 4);
    for plot in [
        "Requests per 10 s (last 5 min)",
        "Request latency (ms, log scale)",
        "Cache age (s): new listings, TTL expiries",
    ] {
        assert!(h.query_by_label(plot).is_some(), "{plot}");
    }
}

#[test]
fn refresh_relists_after_a_model_folder_is_added() {
    let lib = sample();
    let mut h = open(&lib);
    lib.file("models/new-model/w.bin", 5);
    h.key_press(egui::Key::F5);
    settle(&mut h);
    assert!(ids(&h).contains(&"new-model".to_string()), "{:?}", ids(&h));
    // Ctrl+R and the toolbar button refresh too.
    lib.file("models/another/w.bin", 5);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::R);
    settle(&mut h);
    assert!(ids(&h).contains(&"another".to_string()));
    lib.file("models/third/w.bin", 5);
    h.get_all_by_label("Refresh").next().unwrap().click();
    settle(&mut h);
    assert!(
        ids(&h).contains(&"third".to_string()),
        "{:?} {:?}",
        ids(&h),
        h.state().notices()
    );
}

#[test]
fn ttl_slider_changes_the_service_ttl() {
    let lib = sample();
    let mut h = open(&lib);
    assert_eq!(
        h.state()
            .cache_info()
            .unwrap()
            .service_cache
            .cache_ttl_seconds,
        300
    );
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "TTL")
        .focus();
    h.run();
    for _ in 0..5 {
        h.key_press(egui::Key::ArrowRight);
    }
    settle(&mut h);
    let ttl = h
        .state()
        .cache_info()
        .unwrap()
        .service_cache
        .cache_ttl_seconds;
    assert!(ttl > 300, "TTL reported by the service: {ttl}");
    assert_eq!(h.state().settings.ttl_secs, ttl);
}

#[test]
fn each_filter_narrows_the_rows() {
    let lib = sample();
    let mut h = open(&lib);

    pick(&mut h, "Provider", "ollama");
    assert_eq!(ids(&h), ["embedder"]);

    h.get_by_label("Clear filters").click();
    settle(&mut h);
    assert_eq!(ids(&h).len(), 4);

    pick(&mut h, "Status", "available");
    assert_eq!(ids(&h), ["whisper"]);

    h.get_by_label("Clear filters").click();
    settle(&mut h);
    pick(&mut h, "Capability", "chat");
    assert_eq!(ids(&h), ["llama-chat"]);
}

#[test]
fn search_narrows_the_rows() {
    let lib = sample();
    let mut h = open(&lib);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::F);
    h.run();
    h.event(egui::Event::Text("friendly".into()));
    h.run();
    assert_eq!(ids(&h), ["llama-chat"], "description matches");
    h.event(egui::Event::Key {
        key: egui::Key::A,
        physical_key: None,
        pressed: true,
        repeat: false,
        modifiers: egui::Modifiers::COMMAND,
    });
    h.event(egui::Event::Text("ZETA".into()));
    h.run();
    assert_eq!(ids(&h), ["zeta-local"], "id matches, case-insensitively");
}

#[test]
fn header_click_sorts() {
    let lib = sample();
    let mut h = open(&lib);
    h.get_by_label("Size").click();
    h.run();
    assert_eq!(ids(&h), ["whisper", "embedder", "zeta-local", "llama-chat"]);
    h.get_by_label("Size").click();
    h.run();
    assert_eq!(ids(&h), ["llama-chat", "zeta-local", "embedder", "whisper"]);
    h.get_by_label("Name").click();
    h.run();
    assert_eq!(ids(&h), ["embedder", "llama-chat", "whisper", "zeta-local"]);
}

#[test]
fn delete_asks_first_and_deletes_only_after_yes() {
    let lib = sample();
    let mut h = open(&lib);
    let target = lib.path("models/zeta-local");

    // Select the row, press Delete: the dialog asks and shows what it frees.
    h.get_by_label("zeta-local").click();
    h.run();
    h.key_press(egui::Key::Delete);
    settle(&mut h);
    assert!(h.query_by_label("Delete zeta-local?").is_some());
    assert!(h.query_by_label_contains("This frees 20 B").is_some());
    h.get_by_label("Cancel").click();
    settle(&mut h);
    assert!(h.query_by_label("Delete zeta-local?").is_none());
    assert!(target.exists(), "cancel deletes nothing");

    // Escape closes the dialog too.
    h.key_press(egui::Key::Delete);
    settle(&mut h);
    assert!(h.query_by_label("Delete zeta-local?").is_some());
    h.key_press(egui::Key::Escape);
    settle(&mut h);
    assert!(h.query_by_label("Delete zeta-local?").is_none());
    assert!(target.exists());

    // Yes deletes, and the listing follows.
    h.key_press(egui::Key::Delete);
    settle(&mut h);
    h.get_by_label("Yes, delete").click();
    settle(&mut h);
    assert!(!target.exists());
    assert!(
        lib.path("models/llama-chat/w.gguf").exists(),
        "nothing else touched"
    );
    assert!(!ids(&h).contains(&"zeta-local".to_string()));
    assert!(
        h.state()
            .notices()
            .iter()
            .any(|n| n.text.contains("zeta-local deleted; 20 B freed"))
    );
}

#[test]
fn a_corrupt_registry_shows_an_error_and_the_rows_stay() {
    let lib = sample();
    let mut h = open(&lib);
    let before = ids(&h);
    let row_at = |h: &H| h.get_by_label("Embedder").rect();
    let row_before = row_at(&h);
    break_registry(&lib, &mut h);
    assert_eq!(ids(&h), before, "the last good rows stay");
    assert_eq!(row_at(&h), row_before, "the notice moves nothing");
    assert!(h.state().rows_are_stale());
    let notice = &h.state().notices()[0].text;
    assert!(
        notice.contains("model_registry.json") && notice.contains("line 3"),
        "{notice}"
    );
    assert!(h.query_by_label_contains("model_registry.json").is_some());
    assert!(h.query_by_label("showing the last good listing").is_some());
    // Fixing the file recovers, and the error goes with what it reported.
    mend_registry(&lib, &mut h);
}

#[test]
fn with_nothing_watched_a_failed_refresh_is_over_once_a_listing_succeeds() {
    let lib = sample();
    let mut h = start_options(AppOptions {
        watch: model_library::library::watch::WatchOption::Off,
        ..options_on(&lib)
    });
    break_registry(&lib, &mut h);
    assert!(h.state().rows_are_stale());
    assert!(
        h.state()
            .notices()
            .iter()
            .any(|n| n.text.contains("model_registry.json"))
    );
    mend_registry(&lib, &mut h);
}

/// Writes a registry that does not parse (at line 3) and presses F5, waited for.
fn break_registry(lib: &TestLib, h: &mut H) {
    lib.registry("{\n \"version\": 1,\n \"models\": [ oops ]\n}");
    h.key_press(egui::Key::F5);
    settle(h);
}

/// Writes a good registry, presses F5 and checks that the window recovered: its rows are
/// current again and no notice about the registry is left.
fn mend_registry(lib: &TestLib, h: &mut H) {
    lib.registry(&registry_json(&[]));
    h.key_press(egui::Key::F5);
    settle(h);
    assert!(!h.state().rows_are_stale(), "{:?}", h.state().notices());
    assert!(
        h.state()
            .notices()
            .iter()
            .all(|n| !n.text.contains("model_registry.json")),
        "the registry's error stays: {:?}",
        h.state().notices()
    );
}

#[test]
fn the_window_survives_a_worker_panic() {
    let lib = sample();
    let mut h = open(&lib);
    h.state_mut().send_for_test(Request::Crash);
    settle(&mut h);
    assert!(
        h.state()
            .notices()
            .iter()
            .any(|n| n.text.contains("internal error in the worker"))
    );
    lib.file("models/after-crash/w", 1);
    h.key_press(egui::Key::F5);
    settle(&mut h);
    assert!(ids(&h).contains(&"after-crash".to_string()));
}

#[test]
fn a_missing_library_is_reported() {
    let lib = TestLib::new();
    let gone = lib.path("nope");
    let mut h = start(Some(gone), Settings::default(), false);
    let notice = &h.state().notices()[0].text;
    assert!(
        notice.contains("Cannot open the library") && notice.contains("nope"),
        "{notice}"
    );
    assert!(h.query_by_label("No library open").is_some());

    // The typed-path fallback opens another library.
    fs::create_dir_all(lib.path("other/models/m1")).unwrap();
    h.get_by(|n| n.placeholder() == Some("library folder"))
        .click();
    h.run();
    h.event(egui::Event::Text(lib.path("other").display().to_string()));
    h.key_press(egui::Key::Enter);
    settle(&mut h);
    assert_eq!(ids(&h), ["m1"]);
    assert_eq!(
        h.state().settings.library.as_deref(),
        Some(lib.path("other").as_path())
    );
}

/// Steps until no request is pending and no download runs (bounded).
fn settle_downloads(h: &mut H) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        settle(h);
        if h.state().downloads().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the download did not end in time"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn download_from_the_table_and_see_it_land() {
    use common::http::{Behavior, TestServer};
    let lib = TestLib::new();
    let server = TestServer::start();
    server.route("/w.gguf", vec![7u8; 50_000], Behavior::Normal);
    server.route("/missing", vec![], Behavior::NotFound);
    lib.registry(
        &serde_json::json!({"version": 1, "models": [
            {"id": "fetch-me", "files": [{"path": "w.gguf", "url": server.url("/w.gguf"), "size": 50_000}]},
            {"id": "broken-link", "files": [{"path": "w", "url": server.url("/missing")}]},
        ]})
        .to_string(),
    );
    let mut h = open(&lib);
    assert_eq!(h.get_all_by_label("Download").count(), 2);
    // Rows are sorted by name: broken-link, then fetch-me.
    h.get_all_by_label("Download").nth(1).unwrap().click();
    h.run();
    settle_downloads(&mut h);
    let models = h.state().visible_models();
    let m = models.iter().find(|m| m.id == "fetch-me").unwrap();
    assert_eq!(m.status, model_library::library::ModelStatus::Downloaded);
    assert_eq!(
        fs::read(lib.path("models/fetch-me/w.gguf")).unwrap().len(),
        50_000
    );
    assert!(
        h.state()
            .notices()
            .iter()
            .any(|n| n.text == "fetch-me downloaded and verified.")
    );

    h.get_by_label("Download").click();
    settle_downloads(&mut h);
    assert!(
        h.state()
            .notices()
            .iter()
            .any(|n| n.text.contains("Download of broken-link failed")
                && n.text.contains("HTTP 404")),
        "{:?}",
        h.state().notices()
    );
}

#[test]
fn files_landing_in_a_model_folder_show_up_without_a_click() {
    let lib = sample();
    let mut h = open(&lib);
    // Watching starts after the first listing; wait (bounded) for the mode to show.
    let deadline = Instant::now() + Duration::from_secs(20);
    while h
        .state()
        .cache_info()
        .is_none_or(|i| i.service_cache.watch_mode != "watching file events")
    {
        assert!(Instant::now() < deadline, "watching never started");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    lib.file("models/zeta-local/more/weights.bin", 1000);
    let size = |h: &H| {
        h.state()
            .visible_models()
            .iter()
            .find(|m| m.id == "zeta-local")
            .and_then(|m| m.size_bytes())
    };
    while size(&h) != Some(1020) {
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "the change never showed"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("file landed -> row updated in {:?}", started.elapsed());
}

/// eframe storage in memory.
#[derive(Default)]
struct MemStorage(std::collections::HashMap<String, String>);

impl eframe::Storage for MemStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

#[test]
fn settings_persist_across_restarts() {
    use eframe::App;
    let lib = sample();
    let mut h = open(&lib);
    h.get_by_label("Size").click();
    h.run();
    pick(&mut h, "Provider", "huggingface");
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "TTL")
        .focus();
    h.run();
    h.key_press(egui::Key::ArrowRight);
    settle(&mut h);
    let ttl = h.state().settings.ttl_secs;
    assert_ne!(ttl, 300);

    let mut storage = MemStorage::default();
    h.state_mut().save(&mut storage);
    let saved: Settings = eframe::get_value(&storage, eframe::APP_KEY).expect("saved");
    assert_eq!(saved.sort, model_library::app::settings::SortKey::Size);
    assert_eq!(saved.provider.as_deref(), Some("huggingface"));
    assert_eq!(saved.ttl_secs, ttl);
    assert_eq!(saved.library.as_deref(), Some(lib.root()));

    // A restart with those settings comes back the same way.
    let h2 = start(None, saved, false);
    assert_eq!(
        ids(&h2),
        ["whisper", "llama-chat"],
        "filtered and sorted by size"
    );
    assert_eq!(
        h2.state()
            .cache_info()
            .unwrap()
            .service_cache
            .cache_ttl_seconds,
        ttl
    );
}

#[test]
fn a_store_pointed_elsewhere_is_listed_read_only() {
    use model_library::app::settings::StoreSetting;
    let lib = sample();
    let store = tempfile::tempdir().unwrap();
    fs::create_dir_all(store.path().join("acme/tiny")).unwrap();
    fs::write(store.path().join("acme/tiny/t.gguf"), vec![0u8; 64]).unwrap();
    let mut settings = Settings {
        delete_mode: DeleteMode::Permanent,
        ..Settings::default()
    };
    for (kind, setting) in [
        (
            "huggingface",
            StoreSetting {
                disabled: true,
                root: None,
            },
        ),
        (
            "ollama",
            StoreSetting {
                disabled: true,
                root: None,
            },
        ),
        (
            "lmstudio",
            StoreSetting {
                disabled: false,
                root: Some(store.path().to_path_buf()),
            },
        ),
    ] {
        settings.stores.insert(kind.into(), setting);
    }
    let mut h = start(Some(lib.root().to_path_buf()), settings, true);
    assert!(
        ids(&h).contains(&"lmstudio/acme/tiny".to_string()),
        "{:?}",
        ids(&h)
    );
    assert!(
        h.query_by_label("read-only").is_some(),
        "no actions on a store's model"
    );

    // The source filter narrows to one store, or to the library.
    pick(&mut h, "Source", "lmstudio");
    assert_eq!(ids(&h), ["lmstudio/acme/tiny"]);
    // Delete on a store's row says why nothing happens.
    h.key_press(egui::Key::ArrowDown);
    settle(&mut h);
    h.key_press(egui::Key::Delete);
    settle(&mut h);
    assert!(
        h.state()
            .notices()
            .iter()
            .any(|n| n.text.contains("lists but never changes")),
        "{:?}",
        h.state().notices()
    );
    pick(&mut h, "Source", "library");
    assert_eq!(ids(&h).len(), 4);
    h.get_by_label("Clear filters").click();
    settle(&mut h);

    // Switching the stores off lists the library alone.
    h.get_by_label("Other stores").click();
    settle(&mut h);
    assert!(!ids(&h).iter().any(|id| id.starts_with("lmstudio/")));
}

#[test]
fn the_details_panel_lists_the_files() {
    let lib = sample();
    lib.file("models/zeta-local/sub/tokenizer.json", 7);
    let mut h = open(&lib);
    h.get_by_label("zeta-local").click();
    settle(&mut h);
    h.get_by_label("Files (2)").click();
    h.run();
    assert!(h.query_by_label("sub/tokenizer.json").is_some());
    assert!(h.query_by_label("x.safetensors").is_some());
}

#[test]
fn a_library_whose_models_folder_is_a_link_says_writes_are_off() {
    let lib = sample();
    let elsewhere = tempfile::tempdir().unwrap();
    fs::rename(lib.path("models"), elsewhere.path().join("models")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("models"), lib.path("models")).unwrap();
    let mut h = open(&lib);
    // Listing still works through the link.
    assert!(ids(&h).contains(&"llama-chat".to_string()), "{:?}", ids(&h));
    let notice = h
        .state()
        .notices()
        .iter()
        .find(|n| n.text.contains("writes to this library are off"))
        .map(|n| n.text.clone())
        .expect("a notice says why writes are off");
    assert!(notice.contains("models"), "{notice}");
    assert!(
        h.query_by_label_contains("writes to this library are off")
            .is_some()
    );
    // Dismissed, it stays dismissed although every cache info says the same.
    let i = h
        .state()
        .notices()
        .iter()
        .position(|n| n.text == notice)
        .unwrap();
    h.get_all_by_label("Dismiss").nth(i).unwrap().click();
    settle(&mut h);
    h.key_press(egui::Key::F5);
    settle(&mut h);
    assert!(h.state().notices().iter().all(|n| n.text != notice));
}

#[test]
fn the_badge_says_what_valid_rests_on() {
    let lib = sample();
    let mut h = open(&lib);
    let deadline = Instant::now() + Duration::from_secs(20);
    while h
        .state()
        .cache_info()
        .is_none_or(|i| i.service_cache.freshness_bound_seconds.is_none())
    {
        assert!(
            Instant::now() < deadline,
            "no freshness bound was ever stated"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run();
    assert!(
        h.query_by_label_contains("Valid · file events, changes within 1 s")
            .is_some(),
        "the badge names the bound"
    );
    assert!(h.query_by_label_contains("Changes show within").is_some());
}

/// Names sort in natural order (Model 2 before Model 10), and Source, Capabilities and
/// Format sort too, by their text, names breaking ties.
#[test]
fn columns_sort_in_natural_order() {
    let lib = TestLib::new();
    lib.registry(
        r#"{"version":1,"models":[
        {"id":"m10","name":"Model 10","format":"gguf","capabilities":["chat"]},
        {"id":"m2","name":"Model 2","format":"safetensors","capabilities":["embedding"]},
        {"id":"m1","name":"model 1","format":"gguf","capabilities":["audio", "chat"]}]}"#,
    );
    let mut h = open(&lib);
    assert_eq!(ids(&h), ["m1", "m2", "m10"], "natural, ignoring case");
    h.get_by_label("Format").click();
    h.run();
    assert_eq!(ids(&h), ["m1", "m10", "m2"]);
    h.get_by_label("Format").click();
    h.run();
    assert_eq!(ids(&h), ["m2", "m10", "m1"], "descending on a second click");
    h.get_by_label("Capabilities").click();
    h.run();
    assert_eq!(ids(&h), ["m1", "m10", "m2"]);
    h.get_by_label("Source").click();
    h.run();
    assert_eq!(ids(&h), ["m1", "m2", "m10"], "one source: by name");
}

/// The table by keyboard: arrows, PageUp/PageDown and Home/End move the selection (and the
/// details with it); Escape clears it and Enter brings it back; the search box keeps its
/// own arrows.
#[test]
fn the_keyboard_moves_through_the_table() {
    let lib = sample();
    let mut h = open(&lib);
    let press = |h: &mut H, key: egui::Key| {
        h.key_press(key);
        settle(h);
        h.state().selected_id().map(str::to_string)
    };
    // Rows by name: embedder, llama-chat, whisper, zeta-local.
    use egui::Key::{ArrowDown, ArrowUp, End, Escape, Home, PageDown, PageUp};
    let steps = [
        (ArrowDown, "embedder"),
        (ArrowDown, "llama-chat"),
        (End, "zeta-local"),
        (ArrowDown, "zeta-local"),
        (ArrowUp, "whisper"),
        (Home, "embedder"),
        (PageDown, "zeta-local"),
        (PageUp, "embedder"),
    ];
    for (key, selected) in steps {
        assert_eq!(
            press(&mut h, key).as_deref(),
            Some(selected),
            "after {key:?}"
        );
    }
    assert_eq!(
        h.query_all_by_label("Embedder").count(),
        2,
        "the table's row and the details' heading"
    );
    assert_eq!(press(&mut h, Escape), None);
    assert_eq!(
        press(&mut h, egui::Key::Enter).as_deref(),
        Some("embedder"),
        "Enter opens the last one again"
    );
    assert_eq!(press(&mut h, Escape), None);
    assert_eq!(press(&mut h, ArrowUp).as_deref(), Some("zeta-local"));

    // Typing in the search box keeps its arrows.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::F);
    h.run();
    h.key_press(egui::Key::ArrowDown);
    settle(&mut h);
    assert_eq!(h.state().selected_id(), Some("zeta-local"));
}

/// Escape closes the "Other stores" dialog like every other.
#[test]
fn escape_closes_the_stores_dialog() {
    let lib = sample();
    let mut h = start(Some(lib.root().to_path_buf()), Settings::default(), true);
    h.get_by_label("Stores…").click();
    h.run();
    assert!(h.query_by_label("Apply").is_some());
    h.key_press(egui::Key::Escape);
    settle(&mut h);
    assert!(h.query_by_label("Apply").is_none());
}

/// What was put on the clipboard in the last frame.
fn copied(h: &H) -> Vec<String> {
    h.output()
        .platform_output
        .commands
        .iter()
        .filter_map(|c| match c {
            egui::OutputCommand::CopyText(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// A right click on a row opens its menu (open folder, copy path, copy id, download,
/// delete where they apply); Ctrl+C copies the selected model's path; Delete on a
/// read-only store row says why nothing happens. Download is not offered for a registry
/// entry that lists no files.
#[test]
fn rows_have_a_menu_and_copy_their_path() {
    let lib = sample();
    let mut h = open(&lib);
    h.get_by_label("zeta-local").click_secondary();
    h.run();
    assert_eq!(
        h.query_all_by_label("Open folder").count(),
        2,
        "in the menu and the details"
    );
    assert_eq!(h.query_all_by_label("Delete…").count(), 2);
    assert!(
        h.query_by_label("Download").is_none(),
        "nothing to download"
    );
    h.get_by_label("Copy id").click();
    h.step();
    assert_eq!(copied(&h), ["zeta-local"]);
    h.run();
    assert!(h.query_by_label("Copy id").is_none(), "the menu closed");

    h.event(egui::Event::Copy);
    h.step();
    let path = lib.path("models/zeta-local").display().to_string();
    assert_eq!(copied(&h), [path]);

    // "whisper" is registered with no files: no Download, in the menu or the row.
    h.get_by_label("Whisper").click_secondary();
    h.run();
    assert!(h.query_by_label("Copy path").is_some());
    assert!(h.query_by_label("Download").is_none());
}

/// A row that is downloading shows its bytes so far of the total in the Size column (and
/// speed and time left on its bar's hover); the theme can be chosen.
#[test]
fn a_downloading_row_shows_its_bytes_and_the_theme_can_be_chosen() {
    use common::http::{Behavior, TestServer};
    let lib = TestLib::new();
    let server = TestServer::start();
    server.route("/w.gguf", vec![7u8; 50_000], Behavior::StallAfter(20_000));
    lib.registry(
        &serde_json::json!({"version": 1, "models": [
            {"id": "slow", "files": [{"path": "w.gguf", "url": server.url("/w.gguf"), "size": 50_000}]},
        ]})
        .to_string(),
    );
    let mut h = open(&lib);
    h.get_by_label("Download").click();
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.query_by_label("19.5/48.8 KiB").is_none() {
        assert!(Instant::now() < deadline, "the row never showed its bytes");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its bar says the share done and the time left (the details' wider one the speed too).
    while h.query_by_label_contains("% · ").is_none() {
        assert!(Instant::now() < deadline, "no time left shown");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }

    pick(&mut h, "Theme", "Light");
    assert_eq!(h.ctx.theme(), egui::Theme::Light);
    assert_eq!(
        h.state().settings.theme,
        model_library::app::settings::Theme::Light
    );
    pick(&mut h, "Theme", "Dark");
    assert_eq!(h.ctx.theme(), egui::Theme::Dark);
}

/// A file to drop onto the window in tests.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// Import without a system file dialog: by a typed path in the Import window, or by
/// dropping files onto the window; both copy the file in and list it.
#[test]
fn import_by_a_typed_path_or_by_dropping_files() {
    let lib = sample();
    let outside = tempfile::tempdir().unwrap();
    let typed = outside.path().join("typed-model.gguf");
    let dropped = outside.path().join("dropped-model.gguf");
    fs::write(&typed, b"GGUF-typed").unwrap();
    fs::write(&dropped, b"GGUF-dropped").unwrap();
    let mut h = open(&lib);

    h.get_by_label("Import…").click();
    h.run();
    h.get_by_label("Path").click();
    h.run();
    h.event(egui::Event::Text(typed.display().to_string()));
    h.run();
    h.get_by_label("Import").click();
    settle_downloads(&mut h);
    settle(&mut h);
    assert!(
        ids(&h).contains(&"typed-model".to_string()),
        "{:?}",
        ids(&h)
    );
    assert!(
        h.query_by_label("Import a model").is_none(),
        "the window closed"
    );

    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(dropped.clone())));
    h.step();
    settle_downloads(&mut h);
    settle(&mut h);
    assert!(
        ids(&h).contains(&"dropped-model".to_string()),
        "{:?}",
        ids(&h)
    );
    assert!(
        typed.exists() && dropped.exists(),
        "copied, the sources stay"
    );
}

/// Registry entries the listing cannot show (a bad id, a duplicate) are listed by entry in
/// the cache panel.
#[test]
fn registry_problems_are_listed_by_entry() {
    let lib = TestLib::new();
    lib.registry(
        r#"{"version":1,"models":[
        {"id":"good","name":"Good"},
        {"id":"../escape","name":"Bad id"},
        {"id":"good","name":"Twice"}]}"#,
    );
    let h = open(&lib);
    assert_eq!(ids(&h), ["good"]);
    assert!(h.query_by_label("Registry problems (2)").is_some());
    let problems = &h
        .state()
        .cache_info()
        .unwrap()
        .service_cache
        .registry_problems;
    for p in problems {
        assert!(h.query_by_label(p).is_some(), "{p} is shown");
    }
    assert!(
        problems.iter().any(|p| p.contains("../escape")),
        "{problems:?}"
    );
}

/// At 900×600, and at 1.5× and 2× scale in small windows, the table keeps its name, status
/// and action columns: every row's buttons are inside the window, none clipped; columns
/// that do not fit give way (Source first), and the sort still works.
#[test]
fn the_table_fits_small_windows_and_large_scales() {
    let lib = sample();
    // A partial model, whose row has two buttons (Resume, Delete).
    lib.registry(
        r#"{"version":1,"models":[
        {"id":"half","name":"Half","files":[{"path":"a.bin","size":5},{"path":"b.bin","size":5}]}]}"#,
    )
    .file("models/half/a.bin", 5);
    for (px, scale) in [
        (egui::vec2(900.0, 600.0), 1.0),
        (egui::vec2(1000.0, 650.0), 1.5),
        (egui::vec2(1400.0, 900.0), 2.0),
    ] {
        let size = px / scale;
        let settings = Settings {
            delete_mode: DeleteMode::Permanent,
            ..Settings::default()
        };
        let h = start_sized(Some(lib.root().to_path_buf()), settings, false, size, scale);
        let inside = |label: &str| {
            let nodes: Vec<_> = h.get_all_by_label(label).collect();
            assert!(!nodes.is_empty(), "{label} at {px:?} × {scale}");
            for n in nodes {
                let r = n.rect();
                assert!(
                    r.min.x >= 0.0 && r.max.x <= size.x,
                    "{label} at {r:?} outside a window {size:?} wide ({px:?} px × {scale})"
                );
            }
        };
        for label in ["Name", "Status", "Actions", "Resume", "Delete", "Half"] {
            inside(label);
        }
        assert!(
            h.query_by_label("Source").is_none(),
            "Source gives way first at {px:?} × {scale}"
        );
    }
}

/// A TTL typed outside 30..=3600 s is refused with an error that names the range; the
/// TTL stays as it was.
#[test]
fn a_typed_ttl_out_of_range_is_refused_not_clamped() {
    let lib = sample();
    let mut h = open(&lib);
    h.get_by_role(egui::accesskit::Role::SpinButton).click();
    h.run();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.event(egui::Event::Text("5000".into()));
    h.key_press(egui::Key::Enter);
    settle(&mut h);
    let info = h.state().cache_info().unwrap();
    assert_eq!(info.service_cache.cache_ttl_seconds, 300);
    assert!(
        h.state()
            .notices()
            .iter()
            .any(|n| n.text.contains("30") && n.text.contains("3600")),
        "{:?}",
        h.state().notices()
    );
}

/// A partial model shows what it has so far — its folder and what an interrupted download
/// kept in `.downloads/` — of the size it expects, not 0 B.
#[test]
fn a_partial_row_shows_the_bytes_it_has() {
    let lib = TestLib::new();
    lib.registry(&registry_json(&[("kept", &[("w.bin", 100)])]))
        .file(".downloads/kept/w.bin.part", 40);
    let h = open(&lib);
    assert_eq!(
        h.state().visible_models()[0].status,
        model_library::library::ModelStatus::Partial
    );
    assert!(h.query_by_label("40/100 B").is_some());
}

/// With a shared cache, a TTL set by another instance on the same library is the one the
/// window shows and uses.
#[test]
fn a_ttl_set_by_another_instance_is_shown() {
    use model_library::fixtures::RedisServer;
    use model_library::library::{ModelLibraryService, ServiceOptions};
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path()).unwrap();
    let lib = sample();
    let mut h = start_options(AppOptions {
        redis: Some(redis.url()),
        ..options_on(&lib)
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h
        .state()
        .cache_info()
        .and_then(|i| i.shared_cache.as_ref())
        .is_some_and(|s| s.listening)
    {
        assert!(
            Instant::now() < deadline,
            "the window's tier never listened"
        );
        h.step();
        settle(&mut h);
    }
    let mut other = ModelLibraryService::new(
        lib.library(),
        ServiceOptions {
            redis: Some(redis.url()),
            persist: false,
            ..ServiceOptions::default()
        },
    )
    .unwrap();
    other.set_ttl(900).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.state().ttl_secs() != 900 {
        assert!(
            Instant::now() < deadline,
            "the window's TTL stayed {}",
            h.state().ttl_secs()
        );
        h.step();
        settle(&mut h);
    }
}

/// A store with no default folder (a folder of one's own) is listed once the settings
/// point it somewhere.
#[test]
fn a_folder_of_ones_own_is_listed_once_pointed_to() {
    use model_library::app::settings::StoreSetting;
    let lib = sample();
    let mine = tempfile::tempdir().unwrap();
    fs::create_dir_all(mine.path().join("deep/er")).unwrap();
    fs::write(mine.path().join("deep/er/m.gguf"), vec![0u8; 64]).unwrap();
    let mut settings = Settings::default();
    settings.stores.insert(
        "folder".into(),
        StoreSetting {
            disabled: false,
            root: Some(mine.path().to_path_buf()),
        },
    );
    let mut h = start(Some(lib.root().to_path_buf()), settings, true);
    pick(&mut h, "Source", "folder");
    assert_eq!(ids(&h), ["folder/deep/er/m.gguf"]);
}

/// `--store KIND=DIR` and `--no-store KIND` win over the Stores settings for the run.
#[test]
fn the_command_lines_stores_win_over_the_settings() {
    use model_library::app::settings::StoreSetting;
    let lib = sample();
    let mine = tempfile::tempdir().unwrap();
    fs::write(mine.path().join("m.gguf"), vec![0u8; 64]).unwrap();
    let mut settings = Settings::default();
    // The settings point the folder store elsewhere; the command line names this one.
    settings.stores.insert(
        "folder".into(),
        StoreSetting {
            disabled: true,
            root: Some("/nonexistent".into()),
        },
    );
    let mut h = start_options(AppOptions {
        settings: Some(settings),
        stores: true,
        store_overrides: vec![(
            "folder".into(),
            StoreSetting {
                disabled: false,
                root: Some(mine.path().to_path_buf()),
            },
        )],
        ..options_on(&lib)
    });
    pick(&mut h, "Source", "folder");
    assert_eq!(ids(&h), ["folder/m.gguf"]);
}

/// "Fits this machine" keeps the models whose estimated memory fits (a small GGUF does; a
/// model with no header cannot be told and goes), and the details say what a model needs.
#[test]
fn fits_this_machine_filter_and_memory_in_the_details() {
    let lib = TestLib::new();
    fs::create_dir_all(lib.path("models/small")).unwrap();
    fs::write(lib.path("models/small/m.gguf"), common::llama_gguf(2, 1)).unwrap();
    lib.file("models/plain/w.bin", 10);
    let mut h = open(&lib);
    // Headers are read in the background after the scan: wait (bounded) for this one.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !h.state().visible_models().iter().any(|m| {
        m.id == "small"
            && m.metadata
                .as_ref()
                .is_some_and(|md| md.kv_bytes_per_token.is_some())
    }) {
        assert!(Instant::now() < deadline, "no header was read");
        h.step();
        settle(&mut h);
    }
    h.get_by_label("Fits this machine").click();
    settle(&mut h);
    assert_eq!(ids(&h), ["small"]);
    h.get_by_label("small").click();
    settle(&mut h);
    assert!(h.query_by_label("Memory to run").is_some());
    assert!(h.query_by_label_contains("at 4k tokens").is_some());
    assert!(h.query_by_label_contains(": fits").is_some());
    h.get_by_label("Clear filters").click();
    settle(&mut h);
    assert_eq!(ids(&h).len(), 2);
}

/// The Stores window shows each store's default folder on this machine as the hint of its
/// folder box (not "default location").
#[test]
fn the_stores_window_names_each_default_folder() {
    use egui_kittest::kittest::NodeT;
    let lib = sample();
    let mut h = start(Some(lib.root().to_path_buf()), Settings::default(), true);
    h.get_by_label("Stores…").click();
    h.run();
    let hints: Vec<String> = h
        .get_all_by_role(egui::accesskit::Role::TextInput)
        .filter_map(|n| n.accesskit_node().data().placeholder().map(str::to_string))
        .filter(|p| p.starts_with('/') || p.starts_with("no default folder"))
        .filter(|p| std::path::Path::new(p) != lib.root())
        .collect();
    assert_eq!(
        hints.len(),
        model_library::library::sources::SourceKind::ALL.len(),
        "one per store: {hints:?}"
    );
    assert!(hints.iter().all(|p| p != "default location"));
}

/// The details keep a scroll position per model: scrolled down on one model, the next one
/// selected starts at its name.
#[test]
fn a_newly_selected_model_shows_its_details_from_the_top() {
    let lib = TestLib::new();
    let long = "a long description. ".repeat(60);
    lib.registry(
        &serde_json::json!({"version": 1, "models": [
            {"id": "alpha", "name": "Alpha", "description": long},
            {"id": "beta", "name": "Beta", "description": long},
        ]})
        .to_string(),
    );
    let mut h = open(&lib);
    // The heading in the details is the lower of the two labels with the model's name.
    let heading_y = |h: &H, name: &str| {
        h.get_all_by_label(name)
            .map(|n| n.rect().min.y)
            .fold(f32::MIN, f32::max)
    };
    h.get_by_label("Alpha").click();
    settle(&mut h);
    let top = heading_y(&h, "Alpha");
    for _ in 0..10 {
        h.get_by_label("Registered").scroll_down();
        h.run();
    }
    assert!(heading_y(&h, "Alpha") < top, "the details scrolled");
    h.get_by_label("Beta").click();
    settle(&mut h);
    assert_eq!(
        heading_y(&h, "Beta"),
        top,
        "Beta's details start at its name"
    );
}

/// Opening a folder where no file manager can be started says so (and offers the path to
/// copy) instead of failing silently; the window does not wait for the attempt.
#[test]
fn a_folder_that_cannot_be_opened_is_said() {
    let lib = sample();
    let mut h = open(&lib);
    h.get_by_label("zeta-local").click();
    settle(&mut h);
    // The details' button (the row menu offers the same), pressed through accessibility:
    // it may be scrolled out of the details' view.
    h.get_by_label("Open folder").click_accesskit();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        h.step();
        let said = h
            .state()
            .notices()
            .iter()
            .any(|n| n.text.starts_with("Cannot open") && n.text.contains("zeta-local"));
        if said {
            break;
        }
        if Instant::now() > deadline {
            // A desktop with a working file manager opened it: nothing to report then.
            assert!(
                std::env::var_os("DISPLAY").is_some()
                    || std::env::var_os("WAYLAND_DISPLAY").is_some(),
                "no notice, and no desktop to have opened it: {:?}",
                h.state().notices()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Verify from the toolbar (everything) and from a row's menu (that model): progress in the
/// status bar, a notice naming what is wrong, and the row in error.
#[test]
fn verify_from_the_toolbar_and_a_row_finds_the_damaged_model() {
    let lib = common::fine_and_rotten();
    let mut h = open(&lib);
    let status_of = |h: &H, id: &str| {
        h.state()
            .visible_models()
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.status)
    };
    assert_eq!(
        status_of(&h, "rotten"),
        Some(model_library::library::ModelStatus::Downloaded)
    );
    h.get_by_label("Verify").click();
    settle(&mut h);
    let texts: Vec<String> = h.state().notices().iter().map(|n| n.text.clone()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("2 files: 1 mismatched") && t.contains("rotten")),
        "{texts:?}"
    );
    assert_eq!(
        status_of(&h, "rotten"),
        Some(model_library::library::ModelStatus::Error)
    );
    assert_eq!(
        status_of(&h, "fine"),
        Some(model_library::library::ModelStatus::Downloaded)
    );
    // The row's menu verifies that model alone.
    h.get_by_label("Fine").click_secondary();
    h.run();
    h.get_by_label("Verify files").click();
    settle(&mut h);
    let texts: Vec<String> = h.state().notices().iter().map(|n| n.text.clone()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Verified 1 file: all hold")),
        "{texts:?}"
    );
}

/// The status bar says how much no model needs; the line opens the list, which asks for a
/// second, explicit click before anything is moved to the trash (and "No" steps back).
#[test]
fn reclaimable_space_is_shown_and_moving_it_asks_first() {
    let lib = sample();
    let ghost = lib.path(".downloads/ghost/w.bin.part");
    fs::create_dir_all(ghost.parent().unwrap()).unwrap();
    fs::write(&ghost, vec![0u8; 2048]).unwrap();
    let mut h = open(&lib);
    h.get_by_label("Reclaimable: 2.0 KiB").click();
    settle(&mut h);
    assert!(
        h.query_by_label_contains("nothing will resume it")
            .is_some()
    );
    h.get_by_label("Move to the trash…").click();
    h.run();
    assert!(h.query_by_label("Yes, move 2.0 KiB to the trash").is_some());
    h.get_by_label("No").click();
    h.run();
    assert!(h.query_by_label("Yes, move 2.0 KiB to the trash").is_none());
    assert!(
        h.query_by_label("Move to the trash…").is_some(),
        "back to the list"
    );
    assert!(ghost.exists(), "nothing moved without the second click");
    h.key_press(egui::Key::Escape);
    h.run();
    assert!(h.query_by_label("Move to the trash…").is_none(), "closed");
}

/// The Disk window: usage per store, then duplicates found on request and, after a second
/// click, replaced with hard links (a notice says what was given back).
#[test]
fn the_disk_window_finds_duplicates_and_links_them_after_asking() {
    use std::os::unix::fs::MetadataExt;
    let lib = TestLib::new();
    let weights = vec![3u8; 1 << 20];
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    for m in ["one", "two"] {
        let p = lib.path(&format!("models/{m}/w.gguf"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, &weights).unwrap();
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let mut h = open(&lib);
    h.get_by_label("Disk…").click();
    settle(&mut h);
    assert!(
        h.query_by_label_contains("on disk in all").is_some(),
        "usage measured"
    );
    h.get_by_label("Find duplicates").click();
    settle(&mut h);
    assert!(
        h.query_by_label_contains("1 group of identical files")
            .is_some(),
        "the search's result is shown"
    );
    h.get_by_label("Replace copies with hard links…").click();
    h.run();
    h.get_by_label("Yes, link copies to give back 1.0 MiB")
        .click();
    settle(&mut h);
    let texts: Vec<String> = h.state().notices().iter().map(|n| n.text.clone()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("1.0 MiB given back; 0 left alone")),
        "{texts:?}"
    );
    let ino = |m: &str| {
        fs::metadata(lib.path(&format!("models/{m}/w.gguf")))
            .unwrap()
            .ino()
    };
    assert_eq!(ino("one"), ino("two"));
}
