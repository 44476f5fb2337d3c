//! The window: an eframe/egui shell over the library service. `app.rs` holds the state and
//! lays out the panels of `ui/`; `worker.rs` owns the service on its own thread;
//! `settings.rs` is what persists. Nothing here touches the file system on the UI thread.

#[allow(clippy::module_inception)]
pub mod app;
pub mod settings;
pub mod ui;
pub mod worker;

pub use app::{AppOptions, ModelLibraryApp};

/// Opens the window with `app` (its library, or the remembered / default one) and runs until
/// it is closed. Returns the process exit status.
pub fn run_window(app: AppOptions) -> i32 {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Model Library")
            .with_app_id("model-library")
            .with_inner_size([1360.0, 820.0])
            .with_min_inner_size([720.0, 420.0]),
        ..Default::default()
    };
    let result = eframe::run_native(
        "Model Library",
        options,
        Box::new(move |cc| Ok(Box::new(ModelLibraryApp::new(cc, app)))),
    );
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("model-library: error: cannot open the window: {err}");
            1
        }
    }
}
