//! The Import window: a model file or folder to copy into the library, typed as a path or
//! chosen with the system's file dialog (files can also be dropped onto the window). Edits
//! the typed path; returns what the user asked for.

use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportAction {
    /// Import this file or folder (copied; the source stays).
    Import(PathBuf),
    /// Open the system's file dialog.
    Choose,
    /// Close without importing.
    Close,
}

/// Draws the window; `path` is the typed path, kept between frames.
pub fn import_ui(ctx: &egui::Context, path: &mut String, picking: bool) -> Option<ImportAction> {
    let mut action = None;
    let mut open = true;
    egui::Window::new("Import a model")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .show(ctx, |ui| {
            ui.label(
                "A model file or folder is copied into the library and registered; the \
                 original stays where it is. Files can also be dropped onto the window.",
            );
            let label = ui.label("Path");
            let edit = ui
                .add(
                    egui::TextEdit::singleline(path)
                        .hint_text("/path/to/model.gguf")
                        .desired_width(420.0),
                )
                .labelled_by(label.id);
            let typed = !path.trim().is_empty();
            let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            ui.horizontal(|ui| {
                if ui.add_enabled(typed, egui::Button::new("Import")).clicked()
                    || (typed && entered)
                {
                    action = Some(ImportAction::Import(PathBuf::from(path.trim())));
                }
                if ui
                    .add_enabled(!picking, egui::Button::new("Choose file…"))
                    .clicked()
                {
                    action = Some(ImportAction::Choose);
                }
                if ui.button("Cancel").clicked() {
                    action = Some(ImportAction::Close);
                }
            });
        });
    if !open || ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
        action = Some(ImportAction::Close);
    }
    action
}
