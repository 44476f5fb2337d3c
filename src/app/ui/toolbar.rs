//! The toolbar: library folder (picker and typed path), refresh buttons, quick/full toggle,
//! search box and the provider / status / capability pickers built from the data.

use crate::app::settings::Theme;
use std::path::PathBuf;

use crate::app::ui::{RefreshButton, refresh_buttons_ui};
use crate::library::ModelStatus;

/// What the user asked for in the toolbar.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolbarAction {
    /// Refresh both cache levels.
    Refresh,
    /// Rescan bypassing the caches.
    ForceRefresh,
    /// Open the system folder picker.
    PickFolder,
    /// Open the library at this typed path.
    OpenPath(PathBuf),
    /// Pick a model file to import.
    PickImport,
    /// Switch quick (fast) / full listing.
    SetQuick(bool),
    /// List the read-only stores beside the library, or not.
    SetStores(bool),
    /// Open the per-store settings.
    EditStores,
    /// Provider filter.
    SetProvider(Option<String>),
    /// Status filter.
    SetStatus(Option<ModelStatus>),
    /// Capability filter.
    SetCapability(Option<String>),
    /// Only models that fit this machine, or all.
    SetFits(bool),
    /// Source filter (`library`, `huggingface`, `ollama`, `lmstudio`), applied in the window.
    SetSource(Option<String>),
    /// The search text changed.
    SearchChanged,
    /// Clear every filter and the search.
    ClearFilters,
    /// Light, dark or system colours.
    SetTheme(Theme),
    /// Verify every file whose content is known.
    Verify,
    /// Stop the verify run.
    StopVerify,
    /// Open the Disk window.
    OpenDisk,
}

/// What the toolbar shows.
pub struct ToolbarInput<'a> {
    /// The open library folder, if one is open.
    pub library: Option<&'a str>,
    /// Whether a refresh is running (the refresh buttons wait for it).
    pub refreshing: bool,
    /// Whether the folder picker is open.
    pub picking: bool,
    /// Providers present in the listing.
    pub providers: &'a [String],
    /// Capabilities present in the listing.
    pub capabilities: &'a [String],
    /// Sources present in the listing.
    pub sources: &'a [String],
    /// Current source filter.
    pub source: Option<&'a str>,
    /// Current provider filter.
    pub provider: Option<&'a str>,
    /// Current status filter.
    pub status: Option<ModelStatus>,
    /// Current capability filter.
    pub capability: Option<&'a str>,
    /// Quick listing on.
    pub quick: bool,
    /// Other stores listed (`None`: not offered).
    pub stores: Option<bool>,
    /// Give the search box keyboard focus this frame.
    pub focus_search: bool,
    /// The colours chosen.
    pub theme: Theme,
    /// Whether a verify run is going.
    pub verifying: bool,
    /// Only models that fit this machine are shown.
    pub fits: bool,
}

/// Text fields the toolbar edits in place (they live in the app between frames).
pub struct ToolbarText<'a> {
    /// Search text.
    pub search: &'a mut String,
    /// Typed library path.
    pub typed_path: &'a mut String,
}

/// Draws the toolbar.
pub fn toolbar_ui(
    ui: &mut egui::Ui,
    input: &ToolbarInput<'_>,
    text: ToolbarText<'_>,
) -> Option<ToolbarAction> {
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        ui.strong("Library");
        let path_edit = ui.add(
            egui::TextEdit::singleline(text.typed_path)
                .hint_text(input.library.unwrap_or("library folder"))
                .desired_width(320.0),
        );
        if path_edit.lost_focus()
            && ui.input(|i| i.key_pressed(egui::Key::Enter))
            && !text.typed_path.trim().is_empty()
        {
            action = Some(ToolbarAction::OpenPath(PathBuf::from(
                text.typed_path.trim(),
            )));
        }
        if ui
            .add_enabled(!input.picking, egui::Button::new("Open folder…"))
            .on_hover_text("Choose a library folder (or type a path and press Enter)")
            .clicked()
        {
            action = Some(ToolbarAction::PickFolder);
        }
        ui.separator();
        match refresh_buttons_ui(ui, input.refreshing) {
            Some(RefreshButton::Refresh) => action = Some(ToolbarAction::Refresh),
            Some(RefreshButton::Force) => action = Some(ToolbarAction::ForceRefresh),
            None => {}
        }
        if ui
            .add_enabled(
                !input.picking && input.library.is_some(),
                egui::Button::new("Import…"),
            )
            .on_hover_text("Copy a model file into the library and register it")
            .clicked()
        {
            action = Some(ToolbarAction::PickImport);
        }
        if input.verifying {
            if ui
                .button("Stop verifying")
                .on_hover_text("Stop between pieces; what was verified is kept")
                .clicked()
            {
                action = Some(ToolbarAction::StopVerify);
            }
        } else if ui
            .add_enabled(input.library.is_some(), egui::Button::new("Verify"))
            .on_hover_text(
                "Check the bytes of every file whose content is known (store blobs by their \
                 names, library files by their registry sha256)",
            )
            .clicked()
        {
            action = Some(ToolbarAction::Verify);
        }
        if ui
            .add_enabled(input.library.is_some(), egui::Button::new("Disk…"))
            .on_hover_text("Usage per store, duplicates and reclaimable space")
            .clicked()
        {
            action = Some(ToolbarAction::OpenDisk);
        }
        ui.separator();
        let mut quick = input.quick;
        if ui
            .checkbox(&mut quick, "Quick")
            .on_hover_text("Fast listing: registry and folder names only, no sizes")
            .changed()
        {
            action = Some(ToolbarAction::SetQuick(quick));
        }
        if let Some(mut stores) = input.stores
            && ui
                .checkbox(&mut stores, "Other stores")
                .on_hover_text(
                    "Also list the Hugging Face cache, Ollama and LM Studio models (read-only)",
                )
                .changed()
        {
            action = Some(ToolbarAction::SetStores(stores));
        }
        if input.stores.is_some()
            && ui
                .small_button("Stores…")
                .on_hover_text("Switch each store on or off, or point it at another folder")
                .clicked()
        {
            action = Some(ToolbarAction::EditStores);
        }
        ui.separator();
        let mut theme = input.theme;
        let label = ui.label("Theme");
        egui::ComboBox::from_id_salt("theme")
            .selected_text(theme.label())
            .show_ui(ui, |ui| {
                for t in Theme::ALL {
                    ui.selectable_value(&mut theme, t, t.label());
                }
            })
            .response
            .labelled_by(label.id);
        if theme != input.theme {
            action = Some(ToolbarAction::SetTheme(theme));
        }
    });
    ui.horizontal_wrapped(|ui| {
        let search = ui.add(
            egui::TextEdit::singleline(text.search)
                .hint_text("Search name, id, description (Ctrl+F)")
                .desired_width(280.0),
        );
        if input.focus_search {
            search.request_focus();
        }
        if search.changed() {
            action = Some(ToolbarAction::SearchChanged);
        }
        if let Some(a) = text_picker(ui, "provider", "Provider", input.providers, input.provider) {
            action = Some(ToolbarAction::SetProvider(a));
        }
        let mut status = input.status;
        let label = ui.label("Status");
        egui::ComboBox::from_id_salt("status_filter")
            .selected_text(status.map_or("any", ModelStatus::as_str))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut status, None, "any");
                for s in ModelStatus::ALL {
                    ui.selectable_value(&mut status, Some(s), s.as_str());
                }
            })
            .response
            .labelled_by(label.id);
        if status != input.status {
            action = Some(ToolbarAction::SetStatus(status));
        }
        if let Some(a) = text_picker(
            ui,
            "capability",
            "Capability",
            input.capabilities,
            input.capability,
        ) {
            action = Some(ToolbarAction::SetCapability(a));
        }
        if input.sources.len() > 1
            && let Some(a) = text_picker(ui, "source", "Source", input.sources, input.source)
        {
            action = Some(ToolbarAction::SetSource(a));
        }
        let mut fits = input.fits;
        if ui
            .checkbox(&mut fits, "Fits this machine")
            .on_hover_text(
                "Only models whose estimated memory at their default context (4k tokens, or \
                 less) fits this machine's RAM or GPU memory",
            )
            .changed()
        {
            action = Some(ToolbarAction::SetFits(fits));
        }
        let filtered = input.provider.is_some()
            || input.fits
            || input.source.is_some()
            || input.status.is_some()
            || input.capability.is_some()
            || !text.search.is_empty();
        if ui
            .add_enabled(filtered, egui::Button::new("Clear filters"))
            .clicked()
        {
            action = Some(ToolbarAction::ClearFilters);
        }
    });
    action
}

/// A combo box over `options` plus "any"; returns the new choice when it changed.
fn text_picker(
    ui: &mut egui::Ui,
    id: &str,
    label: &str,
    options: &[String],
    current: Option<&str>,
) -> Option<Option<String>> {
    let mut choice: Option<&str> = current;
    let label = ui.label(label);
    egui::ComboBox::from_id_salt(id)
        .selected_text(current.unwrap_or("any"))
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut choice, None, "any");
            for o in options {
                ui.selectable_value(&mut choice, Some(o.as_str()), o);
            }
        })
        .response
        .labelled_by(label.id);
    (choice != current).then(|| choice.map(str::to_string))
}
