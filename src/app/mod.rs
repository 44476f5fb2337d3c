//! The window: an eframe/egui shell over the library service. `app.rs` holds the state and
//! lays out the panels of `ui/`; `worker.rs` owns the service on its own thread;
//! `settings.rs` is what persists. Nothing here touches the file system on the UI thread.

#[allow(clippy::module_inception)]
pub mod app;
pub mod settings;
pub mod ui;
pub mod worker;

pub use app::{AppOptions, ModelLibraryApp};

use std::path::{Path, PathBuf};

/// The window's settings file: `<config>/model-library/window.ron` (on Linux
/// `~/.config/model-library/`), not eframe's default, which is the platform data folder —
/// the very folder of the default library. Settings an earlier version left there
/// (`<data>/model-library/app.ron`) are moved over once.
fn settings_file() -> Option<PathBuf> {
    let old = eframe::storage_dir("model-library").map(|d| d.join("app.ron"));
    settings_file_in(&dirs::config_dir()?, old.as_deref())
}

/// [`settings_file`] under the config folder `config`, taking over `old` if the new file
/// is not there yet. `None` when the folder cannot be made (settings then do not persist).
fn settings_file_in(config: &Path, old: Option<&Path>) -> Option<PathBuf> {
    let dir = config.join("model-library");
    std::fs::create_dir_all(&dir).ok()?;
    let file = dir.join("window.ron");
    if !file.exists()
        && let Some(old) = old.filter(|o| o.is_file())
        && std::fs::rename(old, &file).is_err()
    {
        // Another file system: copy; the old file stays (it is only read once more here).
        let _ = std::fs::copy(old, &file);
    }
    Some(file)
}

/// Opens the window with `app` (its library, or the remembered / default one) and runs until
/// it is closed. Returns the process exit status.
pub fn run_window(app: AppOptions) -> i32 {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Model Library")
            .with_app_id("model-library")
            .with_inner_size([1360.0, 820.0])
            .with_min_inner_size([720.0, 420.0]),
        persistence_path: settings_file(),
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

#[cfg(test)]
mod tests {
    use super::settings_file_in;

    #[test]
    fn settings_live_in_the_config_folder_and_earlier_ones_move_there() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config");
        let old = tmp.path().join("data/model-library/app.ron");
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::write(&old, "(settings)").unwrap();
        let file = settings_file_in(&config, Some(&old)).unwrap();
        assert_eq!(file, config.join("model-library/window.ron"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "(settings)");
        assert!(!old.exists(), "moved, not left in the library's folder");
        // Once there, an old file never overwrites it.
        std::fs::write(&old, "(older)").unwrap();
        let again = settings_file_in(&config, Some(&old)).unwrap();
        assert_eq!(std::fs::read_to_string(again).unwrap(), "(settings)");
    }
}
