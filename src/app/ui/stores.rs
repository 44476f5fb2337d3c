//! The "Other stores" window: switch each read-only store (Hugging Face cache, Ollama,
//! LM Studio) on or off, or point it at another folder. Edits a draft; returns Apply or
//! Close for `app.rs` to act on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::app::settings::StoreSetting;
use crate::library::sources::SourceKind;

/// The store settings being edited, with the typed folders as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoresDraft {
    /// Per store kind: listed, and the typed folder (empty: default location).
    pub rows: BTreeMap<String, (bool, String)>,
    /// Per store kind: its default folder on this machine (shown while none is typed).
    pub defaults: BTreeMap<String, PathBuf>,
}

impl StoresDraft {
    /// A draft of `settings`, with each store's default folder.
    pub fn from_settings(
        settings: &BTreeMap<String, StoreSetting>,
        defaults: &BTreeMap<String, PathBuf>,
    ) -> Self {
        let rows = SourceKind::ALL
            .iter()
            .map(|k| {
                let s = settings.get(k.as_str()).cloned().unwrap_or_default();
                let root = s.root.map(|p| p.display().to_string()).unwrap_or_default();
                (k.as_str().to_string(), (!s.disabled, root))
            })
            .collect();
        StoresDraft {
            rows,
            defaults: defaults.clone(),
        }
    }

    /// The settings this draft describes.
    pub fn to_settings(&self) -> BTreeMap<String, StoreSetting> {
        self.rows
            .iter()
            .map(|(k, (on, root))| {
                let root = root.trim();
                (
                    k.clone(),
                    StoreSetting {
                        disabled: !on,
                        root: (!root.is_empty()).then(|| PathBuf::from(root)),
                    },
                )
            })
            .collect()
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoresAction {
    /// Use the draft (the library is listed again).
    Apply,
    /// Close without changes.
    Close,
}

/// Draws the window.
pub fn stores_ui(ctx: &egui::Context, draft: &mut StoresDraft) -> Option<StoresAction> {
    let mut action = None;
    let mut open = true;
    egui::Window::new("Other stores")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .show(ctx, |ui| {
            ui.label("Models in these stores are listed read-only beside the library.");
            egui::Grid::new("stores_grid")
                .num_columns(2)
                .show(ui, |ui| {
                    for kind in SourceKind::ALL {
                        let hint = draft.defaults.get(kind.as_str()).map_or_else(
                            || "no default folder on this machine".to_string(),
                            |p| p.display().to_string(),
                        );
                        let Some((on, root)) = draft.rows.get_mut(kind.as_str()) else {
                            continue;
                        };
                        ui.checkbox(on, kind.display_name());
                        ui.add(
                            egui::TextEdit::singleline(root)
                                .hint_text(hint)
                                .desired_width(320.0),
                        );
                        ui.end_row();
                    }
                });
            ui.horizontal(|ui| {
                if ui.button("Apply").clicked() {
                    action = Some(StoresAction::Apply);
                }
                if ui.button("Cancel").clicked() {
                    action = Some(StoresAction::Close);
                }
            });
        });
    // Escape closes it, as it closes every dialog (even while a path is being typed).
    if !open || ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
        action = Some(StoresAction::Close);
    }
    action
}
