//! The Reclaimable window: what no model needs (in the library and every store), each with
//! its size and why, and moving it to the trash after a second, explicit click. Shows the
//! items it is given; returns what the user asked for.

use egui::RichText;

use crate::library::reclaim::Item;
use crate::util::human_bytes;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReclaimAction {
    /// Look again.
    Rescan,
    /// First click on "Move to the trash": ask to confirm.
    AskDelete,
    /// Confirmed: move every item not changed in the last minute to the trash.
    Delete,
    /// Close the window (or step back from confirming).
    Close,
}

/// What the window shows.
pub struct ReclaimInput<'a> {
    /// The items, largest first (`None` while they are being looked for).
    pub items: Option<&'a [Item]>,
    /// Whether the user asked to delete and must confirm.
    pub confirming: bool,
    /// Whether a look or a delete is running.
    pub busy: bool,
}

/// Draws the window.
pub fn reclaim_ui(ctx: &egui::Context, input: &ReclaimInput<'_>) -> Option<ReclaimAction> {
    let mut action = None;
    let mut open = true;
    egui::Window::new("Reclaimable space")
        .open(&mut open)
        .collapsible(false)
        .default_width(760.0)
        .show(ctx, |ui| {
            let Some(items) = input.items else {
                ui.label("Looking for what no model needs…");
                return;
            };
            let total: u64 = items.iter().map(|i| i.size).sum();
            ui.label(format!(
                "{} in {} items that no model needs. Moving them to the trash leaves \
                 anything changed in the last minute alone.",
                human_bytes(total),
                items.len()
            ));
            egui::ScrollArea::vertical()
                .max_height(360.0)
                .show(ui, |ui| {
                    egui::Grid::new("reclaim_items")
                        .striped(true)
                        .show(ui, |ui| {
                            for it in items {
                                ui.label(human_bytes(it.size));
                                ui.label(&it.source);
                                ui.label(it.path.display().to_string())
                                    .on_hover_text(it.path.display().to_string());
                                let why = RichText::new(&it.why);
                                ui.label(if it.recent { why.italics().weak() } else { why })
                                    .on_hover_text(if it.recent {
                                        "changed in the last minute: left alone"
                                    } else {
                                        ""
                                    });
                                ui.end_row();
                            }
                        });
                });
            ui.separator();
            ui.horizontal(|ui| {
                if input.confirming {
                    let yes = format!("Yes, move {} to the trash", human_bytes(total));
                    if ui
                        .add_enabled(!input.busy, egui::Button::new(yes))
                        .clicked()
                    {
                        action = Some(ReclaimAction::Delete);
                    }
                    if ui.button("No").clicked() {
                        action = Some(ReclaimAction::Close);
                    }
                } else {
                    let can = !input.busy && !items.is_empty();
                    if ui
                        .add_enabled(can, egui::Button::new("Move to the trash…"))
                        .clicked()
                    {
                        action = Some(ReclaimAction::AskDelete);
                    }
                    if ui
                        .add_enabled(!input.busy, egui::Button::new("Look again"))
                        .clicked()
                    {
                        action = Some(ReclaimAction::Rescan);
                    }
                }
            });
        });
    if !open || ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
        action = Some(ReclaimAction::Close);
    }
    action
}
