//! The details panel of the selected model: path, files, description, license, error text,
//! and buttons to open its folder or delete it.

use egui::RichText;

use crate::app::ui::table::status_color;
use crate::library::{ModelInfo, ModelStatus};
use crate::util::{format_unix_utc, human_bytes};

/// What the user asked for in the details panel.
#[derive(Debug, Clone, PartialEq)]
pub enum DetailsAction {
    /// Open the model folder in the file manager.
    OpenFolder(std::path::PathBuf),
    /// Ask to delete the model.
    Delete(String),
    /// Close the panel.
    Close,
}

/// Draws the details of `m`.
pub fn details_ui(ui: &mut egui::Ui, m: &ModelInfo) -> Option<DetailsAction> {
    let mut action = None;
    ui.horizontal(|ui| {
        ui.heading(&m.name);
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.button("Close").clicked() {
                action = Some(DetailsAction::Close);
            }
        });
    });
    ui.label(
        RichText::new(m.status.as_str())
            .color(status_color(m.status))
            .strong(),
    );
    if let Some(err) = &m.error {
        ui.label(RichText::new(err).color(status_color(ModelStatus::Error)));
    }
    ui.separator();
    egui::Grid::new("details_grid")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(k);
                ui.add(egui::Label::new(v).wrap());
                ui.end_row();
            };
            row("Id", m.id.clone());
            row("Provider", m.provider.clone());
            row("Registered", if m.registered { "yes" } else { "no" }.into());
            row("Path", m.path.display().to_string());
            row("Format", m.format.clone().unwrap_or_else(|| "-".into()));
            row(
                "Capabilities",
                if m.capabilities.is_empty() {
                    "-".into()
                } else {
                    m.capabilities.join(", ")
                },
            );
            row(
                "Size",
                m.size_bytes.map_or("- (quick listing)".into(), human_bytes),
            );
            row(
                "Expected size",
                m.expected_size_bytes.map_or("-".into(), human_bytes),
            );
            row("Files", m.file_count.map_or("-".into(), |n| n.to_string()));
            row("Modified", m.modified.map_or("-".into(), format_unix_utc));
            row("License", m.license.clone().unwrap_or_else(|| "-".into()));
        });
    if let Some(desc) = &m.description {
        ui.separator();
        ui.add(egui::Label::new(desc).wrap());
    }
    ui.separator();
    ui.horizontal(|ui| {
        let exists = !matches!(m.status, ModelStatus::Available);
        if ui
            .add_enabled(exists, egui::Button::new("Open folder"))
            .clicked()
        {
            action = Some(DetailsAction::OpenFolder(m.path.clone()));
        }
        if exists && m.status != ModelStatus::Downloading && ui.button("Delete…").clicked() {
            action = Some(DetailsAction::Delete(m.id.clone()));
        }
    });
    action
}
