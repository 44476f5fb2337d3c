//! The Disk window: usage per store as bars (shared bytes counted once), the largest and
//! least recently used models, what no model needs, and duplicates — found on request,
//! linked after a second, explicit click. Shows what it is given; returns what the user
//! asked for.

use crate::library::sources::DiskUsage;
use crate::library::{DuplicatesState, ModelInfo};
use crate::util::{format_time, human_bytes};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskAction {
    /// Measure the usage again.
    Rescan,
    /// Look for duplicates (again).
    FindDuplicates,
    /// First click on replacing copies with links: ask to confirm.
    AskLink,
    /// Confirmed: replace the extra copies with hard links.
    Link,
    /// Open the list of reclaimable space.
    OpenReclaim,
    /// Close the window (or step back from confirming).
    Close,
}

/// What the window shows.
pub struct DiskInput<'a> {
    /// Usage per source, when measured.
    pub usage: Option<&'a DiskUsage>,
    /// The largest models, largest first.
    pub largest: &'a [&'a ModelInfo],
    /// The least recently used models, oldest first.
    pub least_used: &'a [&'a ModelInfo],
    /// Bytes no model needs, when known.
    pub reclaimable: Option<u64>,
    /// Duplicates work, as last reported.
    pub duplicates: Option<&'a DuplicatesState>,
    /// Whether the user asked to link and must confirm.
    pub confirming_link: bool,
}

/// Draws the window.
pub fn disk_ui(ctx: &egui::Context, input: &DiskInput<'_>) -> Option<DiskAction> {
    let mut action = None;
    let mut open = true;
    egui::Window::new("Disk")
        .open(&mut open)
        .collapsible(false)
        .default_width(640.0)
        .show(ctx, |ui| {
            egui::ScrollArea::vertical()
                .max_height(560.0)
                .show(ui, |ui| {
                    usage_ui(ui, input.usage, &mut action);
                    ui.separator();
                    models_ui(ui, input.largest, input.least_used);
                    ui.separator();
                    ui.horizontal(|ui| {
                        ui.strong("Reclaimable");
                        match input.reclaimable {
                            Some(b) => ui.label(human_bytes(b)),
                            None => ui.label("looking…"),
                        };
                        if ui.button("Show…").clicked() {
                            action = Some(DiskAction::OpenReclaim);
                        }
                    });
                    ui.separator();
                    duplicates_ui(ui, input, &mut action);
                });
        });
    if !open || ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
        action = Some(DiskAction::Close);
    }
    action
}

fn usage_ui(ui: &mut egui::Ui, usage: Option<&DiskUsage>, action: &mut Option<DiskAction>) {
    ui.horizontal(|ui| {
        ui.strong("Usage per store");
        if ui.small_button("Measure again").clicked() {
            *action = Some(DiskAction::Rescan);
        }
    });
    let Some(usage) = usage else {
        ui.label("measuring…");
        return;
    };
    let max = usage.per_source.values().copied().max().unwrap_or(0).max(1);
    for (source, bytes) in &usage.per_source {
        ui.horizontal(|ui| {
            ui.add_sized([110.0, 18.0], egui::Label::new(source.as_str()));
            ui.add(
                egui::ProgressBar::new(*bytes as f32 / max as f32)
                    .desired_width(360.0)
                    .text(human_bytes(*bytes)),
            );
        });
    }
    ui.label(format!(
        "{} on disk in all (files two stores share counted once)",
        human_bytes(usage.total_unique)
    ));
}

fn models_ui(ui: &mut egui::Ui, largest: &[&ModelInfo], least_used: &[&ModelInfo]) {
    ui.columns(2, |cols| {
        cols[0].strong("Largest");
        for m in largest {
            cols[0].label(format!(
                "{}  {}",
                human_bytes(m.size_bytes().unwrap_or(0)),
                m.name
            ));
        }
        cols[1].strong("Least recently changed");
        for m in least_used {
            cols[1].label(format!(
                "{}  {}",
                m.modified().map(format_time).unwrap_or_default(),
                m.name
            ));
        }
    });
}

fn duplicates_ui(ui: &mut egui::Ui, input: &DiskInput<'_>, action: &mut Option<DiskAction>) {
    ui.strong("Duplicates");
    let state = input.duplicates;
    let busy = state.is_some_and(|d| d.finding || d.linking);
    if let Some(d) = state {
        if d.finding {
            ui.label("looking for identical files (hashing files of the same size)…");
        } else if d.linking {
            ui.label("replacing copies with hard links…");
        }
        if let Some(r) = &d.last {
            ui.label(format!(
                "{}: {} in extra copies, {} of it where a hard link gives it back",
                crate::library::duplicates::groups_phrase(r.groups.len()),
                human_bytes(r.wasted),
                human_bytes(r.linkable)
            ));
            for g in r.groups.iter().take(8) {
                ui.label(format!("{} × {}", g.copies.len(), human_bytes(g.size)))
                    .on_hover_text(
                        g.copies
                            .iter()
                            .map(|c| format!("{} ({})", c.path.display(), c.source))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
            }
        }
    }
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!busy, egui::Button::new("Find duplicates"))
            .clicked()
        {
            *action = Some(DiskAction::FindDuplicates);
        }
        let linkable = state
            .and_then(|d| d.last.as_ref())
            .map_or(0, |r| r.linkable);
        if input.confirming_link {
            let yes = format!("Yes, link copies to give back {}", human_bytes(linkable));
            if ui.add_enabled(!busy, egui::Button::new(yes)).clicked() {
                *action = Some(DiskAction::Link);
            }
            if ui.button("No").clicked() {
                *action = Some(DiskAction::Close);
            }
        } else if ui
            .add_enabled(
                !busy && linkable > 0,
                egui::Button::new("Replace copies with hard links…"),
            )
            .on_hover_text(
                "Only copies on the same file system, unchanged for a minute, after comparing \
                 their bytes in full",
            )
            .clicked()
        {
            *action = Some(DiskAction::AskLink);
        }
    });
}
