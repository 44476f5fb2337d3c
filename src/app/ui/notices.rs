//! The notice area: errors and information with the file and reason, each dismissable.

use egui::{Color32, RichText};

/// How serious a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something the user should know.
    Info,
    /// Something failed.
    Error,
}

/// One notice.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Info or error.
    pub level: Level,
    /// The message, naming the file and reason.
    pub text: String,
}

/// What the user asked for in the notice area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeAction {
    /// Dismiss notice `i`.
    Dismiss(usize),
}

/// Draws the notices (nothing when there are none).
pub fn notices_ui(ui: &mut egui::Ui, notices: &[Notice]) -> Option<NoticeAction> {
    let mut action = None;
    for (i, n) in notices.iter().enumerate() {
        let (color, tag) = match n.level {
            Level::Error => (Color32::from_rgb(220, 70, 60), "Error"),
            Level::Info => (Color32::from_rgb(70, 140, 230), "Note"),
        };
        ui.horizontal(|ui| {
            ui.label(RichText::new(tag).color(color).strong());
            ui.add(egui::Label::new(&n.text).wrap());
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui.small_button("Dismiss").clicked() {
                    action = Some(NoticeAction::Dismiss(i));
                }
            });
        });
    }
    action
}
