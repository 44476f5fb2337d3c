//! The status bar: counts by status, total size on disk, rows shown, and scan progress.

use egui::RichText;

use crate::app::ui::table::status_color;
use crate::library::{ModelStatus, ProgressReading, VerifyState};
use crate::util::human_bytes;

/// What the status bar shows.
pub struct StatusInput<'a> {
    /// Models per status, in `ModelStatus::ALL` order.
    pub counts: &'a [usize; 5],
    /// Total bytes on disk of the listing, when known (full listings).
    pub total_bytes: Option<u64>,
    /// Rows shown after filters and search.
    pub shown: usize,
    /// Models in the listing.
    pub total: usize,
    /// The running scan, if any.
    pub progress: Option<ProgressReading>,
    /// Whether the rows on screen are known to be out of date.
    pub stale: bool,
    /// Whether the rows are the listing saved last time, being revalidated.
    pub revalidating: bool,
    /// The verify run going, if any.
    pub verify: Option<&'a VerifyState>,
    /// Bytes no model needs, when known.
    pub reclaimable: Option<u64>,
}

/// What the user asked for in the status bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAction {
    /// Open the list of reclaimable space.
    OpenReclaim,
}

/// Draws the status bar.
pub fn status_bar_ui(ui: &mut egui::Ui, input: &StatusInput<'_>) -> Option<StatusAction> {
    let mut action = None;
    ui.horizontal(|ui| {
        ui.label(format!("{} of {} models", input.shown, input.total));
        ui.separator();
        for (status, n) in ModelStatus::ALL.iter().zip(input.counts) {
            if *n > 0 {
                ui.label(RichText::new(format!("{n} {status}")).color(status_color(*status)));
            }
        }
        if input.total > 0 {
            ui.separator();
            match input.total_bytes {
                Some(b) => ui.label(format!("{} on disk", human_bytes(b))),
                None => ui.label("size not measured (quick)"),
            };
        }
        if input.stale {
            ui.separator();
            ui.label(RichText::new("showing the last good listing").italics());
        } else if input.revalidating {
            ui.separator();
            ui.label(RichText::new("revalidating the listing saved last time…").italics());
        }
        if let Some(bytes) = input.reclaimable.filter(|b| *b > 0) {
            ui.separator();
            if ui
                .link(format!("Reclaimable: {}", human_bytes(bytes)))
                .on_hover_text("What no model needs: unused store blobs, unfinished downloads, …")
                .clicked()
            {
                action = Some(StatusAction::OpenReclaim);
            }
        }
        if let Some(v) = input.verify {
            let text = format!(
                "verifying {} / {} files · {} of {}",
                v.files_done,
                v.files_total,
                human_bytes(v.bytes_done),
                human_bytes(v.bytes_total)
            );
            bar_ui(ui, v.bytes_done, v.bytes_total, 260.0, text);
        }
        if let Some(p) = input.progress {
            let text = format!("scanning {} / {}", p.done, p.total);
            bar_ui(ui, p.done, p.total, 220.0, text);
        }
    });
    action
}

/// A progress bar of `done` out of `total` (empty while the total is unknown).
fn bar_ui(ui: &mut egui::Ui, done: u64, total: u64, width: f32, text: String) {
    ui.separator();
    let fraction = if total == 0 {
        0.0
    } else {
        done as f32 / total as f32
    };
    ui.add(
        egui::ProgressBar::new(fraction)
            .desired_width(width)
            .text(text),
    );
}
