//! The model table: virtualized rows (only visible rows are built, so 100 000 rows scroll
//! smoothly), clickable headers for sorting, coloured statuses, per-row actions. Returns the
//! user's intent; changes nothing itself.

use egui::{Color32, RichText, Sense};
use egui_extras::{Column, TableBuilder};

use crate::app::settings::SortKey;
use std::collections::BTreeMap;

use crate::library::LIBRARY_SOURCE;
use crate::library::{
    DownloadProgress, DownloadState, ModelInfo, ModelMetadata, ModelStatus, View,
};
use crate::util::{format_time, human_bytes};

/// What the user asked for in the table.
#[derive(Debug, Clone, PartialEq)]
pub enum TableAction {
    /// Select (or, if already selected, keep) this model.
    Select(String),
    /// Sort by this column (toggles direction when it is already the sort column).
    Sort(SortKey),
    /// Ask to delete this model.
    Delete(String),
    /// Download (or resume) this model.
    Download(String),
    /// Cancel this model's download.
    CancelDownload(String),
    /// Open this folder in the file manager.
    OpenFolder(std::path::PathBuf),
    /// Put this text on the clipboard (a path, an id).
    Copy(String),
}

/// What the table shows.
pub struct TableInput<'a> {
    /// The listing rows.
    pub view: &'a View,
    /// Display order: positions in `view`, after search and sort.
    pub order: &'a [u32],
    /// Current sort column.
    pub sort: SortKey,
    /// Current sort direction.
    pub ascending: bool,
    /// Selected model id.
    pub selected: Option<&'a str>,
    /// Row to scroll into view this frame.
    pub scroll_to: Option<usize>,
    /// Downloads of this process, by id.
    pub downloads: &'a BTreeMap<String, DownloadProgress>,
}

/// Whether the row offers a download (registered with files to fetch, not fully there,
/// not running). An entry that lists no files has nothing to download.
pub fn can_download(m: &ModelInfo) -> bool {
    m.source == LIBRARY_SOURCE
        && m.registered
        && m.expected_size_bytes != Some(0)
        && matches!(m.status, ModelStatus::Available | ModelStatus::Partial)
}

/// Whether the row offers a delete (something of it is in the library).
pub fn can_delete(m: &ModelInfo) -> bool {
    m.source == LIBRARY_SOURCE && m.status != ModelStatus::Available
}

/// The menu a right click on a row opens: the row's folder and id, and what can be done
/// with it.
fn row_menu_ui(ui: &mut egui::Ui, m: &ModelInfo) -> Option<TableAction> {
    let mut action = None;
    let mut item = |ui: &mut egui::Ui, label: &str, a: TableAction| {
        if ui.button(label).clicked() {
            action = Some(a);
            ui.close();
        }
    };
    item(ui, "Open folder", TableAction::OpenFolder(m.path.clone()));
    item(
        ui,
        "Copy path",
        TableAction::Copy(m.path.display().to_string()),
    );
    item(ui, "Copy id", TableAction::Copy(m.id.clone()));
    if can_download(m) {
        ui.separator();
        item(ui, "Download", TableAction::Download(m.id.clone()));
    }
    if can_delete(m) {
        ui.separator();
        item(ui, "Delete…", TableAction::Delete(m.id.clone()));
    }
    action
}

/// A download progress bar with percent or bytes.
pub fn download_bar(p: &DownloadProgress, width: f32) -> egui::ProgressBar {
    let text = match (&p.state, p.fraction()) {
        (DownloadState::Queued, _) => "queued".to_string(),
        (DownloadState::Verifying, _) => "verifying".to_string(),
        (_, Some(f)) => format!("{:.0}%", f * 100.0),
        (_, None) => human_bytes(p.bytes_done),
    };
    egui::ProgressBar::new(p.fraction().unwrap_or(0.0) as f32)
        .desired_width(width)
        .text(text)
}

/// Colour of a status.
pub fn status_color(status: ModelStatus) -> Color32 {
    match status {
        ModelStatus::Downloaded => Color32::from_rgb(60, 170, 90),
        ModelStatus::Downloading => Color32::from_rgb(70, 140, 230),
        ModelStatus::Partial => Color32::from_rgb(220, 160, 40),
        ModelStatus::Available => Color32::from_gray(140),
        ModelStatus::Error => Color32::from_rgb(220, 70, 60),
    }
}

/// Size cell text: blank in quick listings and for models with nothing on disk.
pub fn size_text(m: &ModelInfo) -> String {
    match m.size_bytes {
        Some(b) if m.status != ModelStatus::Available => human_bytes(b),
        _ => String::new(),
    }
}

/// A small triangle pointing up (ascending) or down, painted (no font needed).
fn sort_arrow(ui: &mut egui::Ui, ascending: bool) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), Sense::hover());
    let c = rect.center();
    let (tip, base) = if ascending { (-4.0, 3.0) } else { (4.0, -3.0) };
    let points = vec![
        egui::pos2(c.x, c.y + tip),
        egui::pos2(c.x - 4.5, c.y + base),
        egui::pos2(c.x + 4.5, c.y + base),
    ];
    let color = ui.visuals().strong_text_color();
    ui.painter().add(egui::Shape::convex_polygon(
        points,
        color,
        egui::Stroke::NONE,
    ));
}

/// One line about a model's header metadata: architecture, parameters, context.
pub fn metadata_summary(meta: &ModelMetadata) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &meta.architecture {
        parts.push(a.clone());
    }
    if let Some(p) = meta.parameter_count {
        parts.push(format!("{} parameters", crate::util::human_count(p)));
    }
    if let Some(q) = &meta.quantization {
        parts.push(q.clone());
    }
    if let Some(c) = meta.context_length {
        parts.push(format!("{c} tokens context"));
    }
    if !meta.dtypes.is_empty() {
        parts.push(meta.dtypes.join("/"));
    }
    parts.join(", ")
}

/// A table cell's text: one line, truncated. Clicks go to the row (the table senses them),
/// so a click anywhere in a row selects it, and the row's buttons still get their own.
fn cell(ui: &mut egui::Ui, text: impl Into<egui::WidgetText>) -> egui::Response {
    ui.add(egui::Label::new(text).selectable(false).truncate())
}

/// Draws the table.
pub fn table_ui(ui: &mut egui::Ui, input: &TableInput<'_>) -> Option<TableAction> {
    let mut action = None;
    ui.style_mut().interaction.selectable_labels = false;
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
    let mut table = TableBuilder::new(ui)
        .id_salt("models")
        .striped(true)
        .resizable(true)
        .sense(Sense::click())
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .column(Column::initial(220.0).at_least(80.0).clip(true))
        .column(Column::initial(100.0).at_least(50.0).clip(true))
        .column(Column::initial(85.0).at_least(40.0).clip(true))
        .column(Column::initial(95.0).at_least(60.0).clip(true))
        .column(Column::initial(140.0).at_least(60.0).clip(true))
        .column(Column::initial(75.0).at_least(40.0).clip(true))
        // Wide enough for a download's "11.2/400.0 MiB".
        .column(Column::initial(105.0).at_least(50.0).clip(true))
        .column(Column::initial(120.0).at_least(60.0).clip(true))
        .column(Column::remainder().at_least(130.0))
        .min_scrolled_height(0.0);
    if let Some(row) = input.scroll_to {
        table = table.scroll_to_row(row, None);
    }
    let headers: [(&str, Option<SortKey>); 9] = [
        ("Name", Some(SortKey::Name)),
        ("Provider", Some(SortKey::Provider)),
        ("Source", Some(SortKey::Source)),
        ("Status", Some(SortKey::Status)),
        ("Capabilities", Some(SortKey::Capabilities)),
        ("Format", Some(SortKey::Format)),
        ("Size", Some(SortKey::Size)),
        ("Modified", Some(SortKey::Modified)),
        ("Actions", None),
    ];
    table
        .header(row_height + 2.0, |mut header| {
            for (title, key) in headers {
                header.col(|ui| {
                    let sense = if key.is_some() {
                        Sense::click()
                    } else {
                        Sense::hover()
                    };
                    let title =
                        ui.add(egui::Label::new(RichText::new(title).strong()).sense(sense));
                    if key == Some(input.sort) {
                        sort_arrow(ui, input.ascending);
                    }
                    if let Some(key) = key
                        && title.clicked()
                    {
                        action = Some(TableAction::Sort(key));
                    }
                });
            }
        })
        .body(|body| {
            body.rows(row_height, input.order.len(), |mut row| {
                let Some(m) = input.view.get(input.order[row.index()] as usize) else {
                    return;
                };
                row.set_selected(input.selected == Some(m.id.as_str()));
                row.col(|ui| {
                    cell(ui, &m.name).on_hover_text(&m.id);
                });
                row.col(|ui| {
                    cell(ui, m.provider.as_str());
                });
                row.col(|ui| {
                    cell(ui, m.source.as_str());
                });
                let download = input
                    .downloads
                    .get(&m.id)
                    .filter(|p| !p.state.is_finished());
                row.col(|ui| {
                    if let Some(p) = download {
                        ui.add(download_bar(p, ui.available_width()))
                            .on_hover_text(crate::util::progress_summary(p));
                        return;
                    }
                    let text = RichText::new(m.status.as_str()).color(status_color(m.status));
                    let label = cell(ui, text);
                    if let Some(err) = &m.error {
                        label.on_hover_text(err);
                    }
                });
                row.col(|ui| {
                    cell(ui, m.capabilities.join(", "));
                });
                row.col(|ui| {
                    let text = match (
                        &m.format,
                        m.metadata.as_ref().and_then(|d| d.quantization.as_ref()),
                    ) {
                        (Some(f), Some(q)) => format!("{f} {q}"),
                        (Some(f), None) => f.to_string(),
                        (None, Some(q)) => q.clone(),
                        (None, None) => String::new(),
                    };
                    let label = cell(ui, text);
                    if let Some(meta) = &m.metadata {
                        label.on_hover_text(metadata_summary(meta));
                    }
                });
                row.col(|ui| {
                    match download {
                        // Bytes so far, of how many, while it downloads.
                        Some(p) => cell(ui, crate::util::bytes_of(p.bytes_done, p.bytes_total))
                            .on_hover_text(crate::util::progress_summary(p)),
                        None => cell(ui, size_text(m)),
                    };
                });
                row.col(|ui| {
                    cell(ui, m.modified.map(format_time).unwrap_or_default());
                });
                row.col(|ui| {
                    if m.source != LIBRARY_SOURCE {
                        ui.weak("read-only").on_hover_text(format!(
                            "In the {} store: listed, never changed by this app",
                            m.source
                        ));
                        return;
                    }
                    if download.is_some() || m.status == ModelStatus::Downloading {
                        if ui.small_button("Cancel").clicked() {
                            action = Some(TableAction::CancelDownload(m.id.clone()));
                        }
                        return;
                    }
                    if can_download(m) {
                        let label = if m.status == ModelStatus::Partial {
                            "Resume"
                        } else {
                            "Download"
                        };
                        if ui.small_button(label).clicked() {
                            action = Some(TableAction::Download(m.id.clone()));
                        }
                    }
                    if can_delete(m) && ui.small_button("Delete").clicked() {
                        action = Some(TableAction::Delete(m.id.clone()));
                    }
                });
                let response = row.response();
                if action.is_none() && (response.clicked() || response.secondary_clicked()) {
                    action = Some(TableAction::Select(m.id.clone()));
                }
                response.context_menu(|ui| {
                    if let Some(a) = row_menu_ui(ui, m) {
                        action = Some(a);
                    }
                });
            });
        });
    action
}
