//! The details panel of the selected model: path, files, description, license, error text,
//! and buttons to open its folder or delete it.

use egui::RichText;

use crate::app::ui::table::{can_download, download_bar, status_color};
use crate::library::{DownloadProgress, ModelInfo, ModelStatus};
use crate::util::{format_time, human_bytes};

/// What the user asked for in the details panel.
#[derive(Debug, Clone, PartialEq)]
pub enum DetailsAction {
    /// Open the model folder in the file manager.
    OpenFolder(std::path::PathBuf),
    /// Ask to delete the model.
    Delete(String),
    /// Download or resume the model.
    Download(String),
    /// Cancel its download.
    CancelDownload(String),
    /// Remove its partial download.
    DiscardPartial(String),
    /// Close the panel.
    Close,
}

/// Draws the details of `m`, with its download's progress when one runs.
pub fn details_ui(
    ui: &mut egui::Ui,
    m: &ModelInfo,
    download: Option<&DownloadProgress>,
    files: Option<(&[(String, u64)], bool)>,
    machine: Option<&crate::library::fit::Machine>,
) -> Option<DetailsAction> {
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
        ui.label(RichText::new(&**err).color(status_color(ModelStatus::Error)));
    }
    if let Some(note) = &m.note {
        ui.label(RichText::new(&**note).italics());
    }
    let running = download.filter(|p| !p.state.is_finished());
    if let Some(p) = running {
        ui.add(download_bar(p, ui.available_width().min(420.0)));
        ui.label(crate::util::progress_line(p));
    }
    if let Some((files, more)) = files
        && !files.is_empty()
    {
        let title = if more {
            format!("Files (first {})", files.len())
        } else {
            format!("Files ({})", files.len())
        };
        egui::CollapsingHeader::new(title)
            .id_salt("details_files")
            .show(ui, |ui| {
                egui::Grid::new("details_files_grid")
                    .num_columns(2)
                    .striped(true)
                    .show(ui, |ui| {
                        for (path, size) in files {
                            ui.monospace(path);
                            ui.label(human_bytes(*size));
                            ui.end_row();
                        }
                    });
            });
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
            row("Source", m.source.to_string());
            if let Some(meta) = &m.metadata {
                row(
                    "Architecture",
                    meta.architecture.clone().unwrap_or_else(|| "-".into()),
                );
                row(
                    "Parameters",
                    meta.parameter_count
                        .map_or("-".into(), crate::util::human_count),
                );
                row(
                    "Quantization",
                    meta.quantization.clone().unwrap_or_else(|| "-".into()),
                );
                row(
                    "Context length",
                    meta.context_length
                        .map_or("-".into(), |c| format!("{c} tokens")),
                );
                if !meta.dtypes.is_empty() {
                    row("Tensor types", meta.dtypes.join(", "));
                }
                if let Some(need) = memory_line(m, meta) {
                    row("Memory to run", need);
                    if let Some(mc) = machine {
                        row("This machine", machine_line(m, mc));
                    }
                }
            }
            row("Provider", m.provider.to_string());
            row("Registered", if m.registered { "yes" } else { "no" }.into());
            row("Path", m.path().display().to_string());
            row("Format", m.format.as_deref().unwrap_or("-").to_string());
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
                m.size_bytes()
                    .map_or("- (quick listing)".into(), human_bytes),
            );
            row(
                "Expected size",
                m.expected_size_bytes().map_or("-".into(), human_bytes),
            );
            row(
                "Files",
                m.file_count().map_or("-".into(), |n| n.to_string()),
            );
            row("Modified", m.modified().map_or("-".into(), format_time));
            row("License", m.license.as_deref().unwrap_or("-").to_string());
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
            action = Some(DetailsAction::OpenFolder(m.path()));
        }
        if m.source != crate::library::LIBRARY_SOURCE {
            ui.weak(format!("Read-only: managed by {}", m.source));
        } else if running.is_some() || m.status == ModelStatus::Downloading {
            if ui.button("Cancel download").clicked() {
                action = Some(DetailsAction::CancelDownload(m.id.clone()));
            }
        } else {
            if can_download(m) {
                let label = if m.status == ModelStatus::Partial {
                    "Resume download"
                } else {
                    "Download"
                };
                if ui.button(label).clicked() {
                    action = Some(DetailsAction::Download(m.id.clone()));
                }
            }
            if m.status == ModelStatus::Partial && ui.button("Discard partial download").clicked() {
                action = Some(DetailsAction::DiscardPartial(m.id.clone()));
            }
            if exists && ui.button("Delete…").clicked() {
                action = Some(DetailsAction::Delete(m.id.clone()));
            }
        }
    });
    action
}

/// "≈ 5.2 GiB at 4k tokens · 5.7 GiB at 8k · 8.9 GiB at 32k": the estimate at the model's
/// default context and at the larger ones it supports; `None` when it cannot be told.
fn memory_line(m: &ModelInfo, meta: &crate::library::ModelMetadata) -> Option<String> {
    use crate::library::fit::{SHOWN_CONTEXTS, default_context, estimate};
    let ctx = default_context(meta);
    let mut parts = vec![format!(
        "≈ {} at {}k tokens",
        human_bytes(estimate(m, ctx)?),
        ctx / 1024
    )];
    for c in SHOWN_CONTEXTS {
        if c > ctx
            && meta.context_length.is_none_or(|max| c <= max)
            && let Some(need) = estimate(m, c)
        {
            parts.push(format!("{} at {}k", human_bytes(need), c / 1024));
        }
    }
    Some(parts.join(" · "))
}

/// "24.0 GiB RAM, 8.0 GiB GPU: fits" (or "does not fit").
fn machine_line(m: &ModelInfo, machine: &crate::library::fit::Machine) -> String {
    let mut s = format!("{} RAM", human_bytes(machine.ram_bytes));
    if let Some(g) = machine.gpu_bytes {
        s.push_str(&format!(", {} GPU", human_bytes(g)));
    }
    match crate::library::fit::fits(m, machine) {
        Some(true) => s + ": fits",
        Some(false) => s + ": does not fit",
        None => s,
    }
}
