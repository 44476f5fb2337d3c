//! Notices as toasts: errors and information with the file and reason, drawn over the
//! bottom right corner so they never move the table. Information goes by itself after a
//! few seconds; errors stay until dismissed, or until what they report is over (a listing
//! error, once a listing succeeds). Returns the user's intent; keeps no state.

use std::time::{Duration, Instant};

use egui::{Color32, RichText};

/// How long an information notice stays.
pub const INFO_FOR: Duration = Duration::from_secs(8);

/// How serious a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something the user should know (goes by itself).
    Info,
    /// Something failed (stays until dismissed or over).
    Error,
}

/// What a notice reports, when something later can say it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum About {
    /// Nothing in particular.
    Other,
    /// Listing the library failed (over once a listing succeeds).
    Listing,
}

/// One notice.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Info or error.
    pub level: Level,
    /// The message, naming the file and reason.
    pub text: String,
    /// What it reports.
    pub about: About,
    /// When it was shown.
    pub shown: Instant,
}

/// How long an information notice takes to fade out, at the end of [`INFO_FOR`].
const FADE: Duration = Duration::from_secs(1);

impl Notice {
    /// Whether it is still to be shown at `now`.
    pub fn current(&self, now: Instant) -> bool {
        self.level == Level::Error || now.duration_since(self.shown) < INFO_FOR
    }

    /// How opaque it is drawn at `now`: information fades out over its last second.
    pub fn opacity(&self, now: Instant) -> f32 {
        if self.level == Level::Error {
            return 1.0;
        }
        let left = INFO_FOR.saturating_sub(now.duration_since(self.shown));
        (left.as_secs_f32() / FADE.as_secs_f32()).clamp(0.0, 1.0)
    }
}

/// What the user asked for in the notice area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeAction {
    /// Dismiss notice `i`.
    Dismiss(usize),
}

/// Width of a toast.
const WIDTH: f32 = 420.0;

/// Draws the notices as toasts over the bottom right corner, newest at the bottom
/// (nothing when there are none).
pub fn notices_ui(ctx: &egui::Context, notices: &[Notice]) -> Option<NoticeAction> {
    if notices.is_empty() {
        return None;
    }
    let mut action = None;
    egui::Area::new(egui::Id::unique("model-library-notices"))
        .anchor(egui::Align2::RIGHT_BOTTOM, egui::vec2(-12.0, -36.0))
        .order(egui::Order::Foreground)
        .movable(false)
        .interactable(true)
        .show(ctx, |ui| {
            ui.set_max_width(WIDTH);
            for (i, n) in notices.iter().enumerate() {
                if ui.scope(|ui| toast_ui(ui, n)).inner {
                    action = Some(NoticeAction::Dismiss(i));
                }
                ui.add_space(4.0);
            }
        });
    action
}

/// One toast; whether its Dismiss was clicked.
fn toast_ui(ui: &mut egui::Ui, n: &Notice) -> bool {
    let opacity = n.opacity(Instant::now());
    if opacity < 1.0 {
        ui.ctx().request_repaint(); // keep fading
    }
    ui.multiply_opacity(opacity);
    let (color, tag) = match n.level {
        Level::Error => (Color32::from_rgb(220, 70, 60), "Error"),
        Level::Info => (Color32::from_rgb(70, 140, 230), "Note"),
    };
    let mut dismissed = false;
    egui::Frame::popup(ui.style())
        .stroke(egui::Stroke::new(1.0, color))
        .show(ui, |ui| {
            ui.set_width(WIDTH);
            ui.horizontal(|ui| {
                ui.label(RichText::new(tag).color(color).strong());
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    dismissed = ui.small_button("Dismiss").clicked();
                });
            });
            ui.add(egui::Label::new(&n.text).wrap());
        });
    dismissed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn information_goes_by_itself_errors_stay() {
        let now = Instant::now();
        let at = |level, ago: Duration| Notice {
            level,
            text: String::new(),
            about: About::Other,
            shown: now.checked_sub(ago).unwrap_or(now),
        };
        assert!(at(Level::Info, Duration::from_secs(1)).current(now));
        assert!(!at(Level::Info, INFO_FOR + Duration::from_secs(1)).current(now));
        assert!(at(Level::Error, Duration::from_secs(3600)).current(now));
        assert_eq!(at(Level::Info, Duration::from_secs(1)).opacity(now), 1.0);
        let fading = at(Level::Info, INFO_FOR - Duration::from_millis(500)).opacity(now);
        assert!((0.4..0.6).contains(&fading), "{fading}");
        assert_eq!(
            at(Level::Error, Duration::from_secs(3600)).opacity(now),
            1.0
        );
    }
}
