//! One file per panel. Each `*_ui` function takes the data it shows and returns the user's
//! intent as an action enum; `app.rs` applies it. Panels never talk to the worker.

pub mod cache_panel;
pub mod cache_plots;
pub mod details;
pub mod dialogs;
pub mod disk;
pub mod import;
pub mod notices;
pub mod reclaim;
pub mod status_bar;
pub mod stores;
pub mod table;
pub mod toolbar;

/// Which refresh button was pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshButton {
    /// Drop both cache levels and rescan.
    Refresh,
    /// Rescan the current listing, bypassing the caches.
    Force,
}

/// The Refresh and Force refresh buttons (disabled while a refresh runs), shared by the
/// toolbar and the cache panel.
pub fn refresh_buttons_ui(ui: &mut egui::Ui, refreshing: bool) -> Option<RefreshButton> {
    let mut pressed = None;
    if ui
        .add_enabled(!refreshing, egui::Button::new("Refresh"))
        .on_hover_text("Drop both cache levels and rescan (F5, Ctrl+R)")
        .clicked()
    {
        pressed = Some(RefreshButton::Refresh);
    }
    if ui
        .add_enabled(!refreshing, egui::Button::new("Force refresh"))
        .on_hover_text("Rescan the current listing, bypassing the caches")
        .clicked()
    {
        pressed = Some(RefreshButton::Force);
    }
    pressed
}
