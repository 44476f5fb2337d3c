//! Modal dialogs: the delete confirmation, which shows exactly what will be removed and the
//! bytes it frees. Escape or a click outside cancels.

use egui::RichText;

use crate::library::{DeleteMode, DeletePlan};
use crate::util::human_bytes;

/// What the delete dialog shows.
pub struct DeleteDialogInput<'a> {
    /// The model's display name.
    pub name: &'a str,
    /// What would be removed, once the worker has worked it out.
    pub plan: Option<&'a DeletePlan>,
    /// Trash or permanent.
    pub mode: DeleteMode,
}

/// The user's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogAction {
    /// Delete, as planned, with this mode.
    ConfirmDelete(DeleteMode),
    /// Switch trash / permanent.
    SetMode(DeleteMode),
    /// Close without deleting.
    Cancel,
}

/// Draws the delete confirmation.
pub fn delete_dialog_ui(
    ctx: &egui::Context,
    input: &DeleteDialogInput<'_>,
) -> Option<DialogAction> {
    let mut action = None;
    let modal = egui::Modal::new(egui::Id::unique("delete_confirmation")).show(ctx, |ui| {
        ui.set_max_width(460.0);
        ui.heading(format!("Delete {}?", input.name));
        match input.plan {
            None => {
                ui.label("Working out what would be removed…");
            }
            Some(plan) => {
                ui.label(format!(
                    "This frees {} ({}) from:",
                    human_bytes(plan.bytes),
                    crate::util::count_of(plan.files, "file")
                ));
                for t in &plan.targets {
                    ui.monospace(t.display().to_string());
                }
            }
        }
        let mut mode = input.mode;
        ui.horizontal(|ui| {
            ui.radio_value(&mut mode, DeleteMode::Trash, "Move to trash");
            ui.radio_value(&mut mode, DeleteMode::Permanent, "Delete permanently");
        });
        if mode != input.mode {
            action = Some(DialogAction::SetMode(mode));
        }
        if mode == DeleteMode::Permanent {
            ui.label(RichText::new("Permanent deletion cannot be undone.").strong());
        }
        ui.separator();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(input.plan.is_some(), egui::Button::new("Yes, delete"))
                .clicked()
            {
                action = Some(DialogAction::ConfirmDelete(mode));
            }
            if ui.button("Cancel").clicked() {
                action = Some(DialogAction::Cancel);
            }
        });
    });
    if action.is_none() && modal.should_close() {
        action = Some(DialogAction::Cancel);
    }
    action
}
