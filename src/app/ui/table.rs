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
    /// Verify this model's files.
    Verify(String),
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
        && m.expected_size_bytes() != Some(0)
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
    item(ui, "Open folder", TableAction::OpenFolder(m.path()));
    item(
        ui,
        "Copy path",
        TableAction::Copy(m.path().display().to_string()),
    );
    item(ui, "Copy id", TableAction::Copy(m.id.clone()));
    if m.status != ModelStatus::Available {
        ui.separator();
        item(ui, "Verify files", TableAction::Verify(m.id.clone()));
    }
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
    let mut text = match (&p.state, p.fraction()) {
        (DownloadState::Queued, _) => "queued".to_string(),
        (DownloadState::Verifying, _) => "verifying".to_string(),
        (_, Some(f)) => format!("{:.0}%", f * 100.0),
        (_, None) => human_bytes(p.bytes_done),
    };
    // The time left, and the speed where the bar is wide enough for it.
    if matches!(p.state, DownloadState::Running)
        && let Some(eta) = p.eta_seconds
    {
        if width >= 170.0 {
            let speed = human_bytes(p.speed_bytes_per_sec as u64);
            text = format!("{text} · {speed}/s · {}", crate::util::short_duration(eta));
        } else if width >= 90.0 {
            text = format!("{text} · {}", crate::util::short_duration(eta));
        }
    }
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
    match m.size_bytes() {
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

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Name,
    Provider,
    Source,
    Status,
    Capabilities,
    Format,
    Size,
    Modified,
    Actions,
}

/// How a column is drawn and when it gives way.
#[derive(Debug)]
pub struct ColSpec {
    /// Which column.
    pub col: Col,
    /// Its header.
    pub title: &'static str,
    /// The sort its header asks for.
    pub sort: Option<SortKey>,
    /// Width it starts with (points).
    pub width: f32,
    /// Narrowest it may be dragged to.
    pub min: f32,
    /// When the table is too narrow, columns with a higher rank are left out first; 0:
    /// never left out (name, status and the row's actions).
    pub gives_way: u8,
}

/// Every column, in order.
pub const COLUMNS: [ColSpec; 9] = [
    ColSpec {
        col: Col::Name,
        title: "Name",
        sort: Some(SortKey::Name),
        width: 220.0,
        min: 80.0,
        gives_way: 0,
    },
    ColSpec {
        col: Col::Provider,
        title: "Provider",
        sort: Some(SortKey::Provider),
        width: 100.0,
        min: 50.0,
        gives_way: 2,
    },
    ColSpec {
        col: Col::Source,
        title: "Source",
        sort: Some(SortKey::Source),
        width: 85.0,
        min: 40.0,
        gives_way: 6,
    },
    ColSpec {
        col: Col::Status,
        title: "Status",
        sort: Some(SortKey::Status),
        width: 95.0,
        min: 60.0,
        gives_way: 0,
    },
    ColSpec {
        col: Col::Capabilities,
        title: "Capabilities",
        sort: Some(SortKey::Capabilities),
        width: 140.0,
        min: 60.0,
        gives_way: 5,
    },
    ColSpec {
        col: Col::Format,
        title: "Format",
        sort: Some(SortKey::Format),
        width: 75.0,
        min: 40.0,
        gives_way: 4,
    },
    // Wide enough for a download's "11.2/400.0 MiB".
    ColSpec {
        col: Col::Size,
        title: "Size",
        sort: Some(SortKey::Size),
        width: 105.0,
        min: 50.0,
        gives_way: 1,
    },
    ColSpec {
        col: Col::Modified,
        title: "Modified",
        sort: Some(SortKey::Modified),
        width: 120.0,
        min: 60.0,
        gives_way: 3,
    },
    ColSpec {
        col: Col::Actions,
        title: "Actions",
        sort: None,
        width: 130.0,
        min: 130.0,
        gives_way: 0,
    },
];

/// Room a column takes besides its width (the spacing between columns).
const COLUMN_GAP: f32 = 8.0;

/// The columns that fit in `width` points: every one, or without those that give way
/// first; the name narrows (down to its minimum) before anything else has to go. Returns
/// the columns and the name's width.
pub fn columns_for(width: f32) -> (Vec<&'static ColSpec>, f32) {
    let mut shown: Vec<&ColSpec> = COLUMNS.iter().collect();
    let need = |shown: &[&ColSpec], name: f32| -> f32 {
        shown
            .iter()
            .map(|c| if c.col == Col::Name { name } else { c.width } + COLUMN_GAP)
            .sum()
    };
    let name = &COLUMNS[0];
    loop {
        let rest = need(&shown, 0.0);
        if rest + name.width <= width {
            return (shown, name.width);
        }
        if rest + name.min <= width {
            return (shown, width - rest);
        }
        let Some(pos) = shown
            .iter()
            .enumerate()
            .filter(|(_, c)| c.gives_way > 0)
            .max_by_key(|(_, c)| c.gives_way)
            .map(|(i, _)| i)
        else {
            return (shown, name.min);
        };
        shown.remove(pos);
    }
}

/// Draws the table: the columns that fit (see [`columns_for`]), the rows that are visible.
pub fn table_ui(ui: &mut egui::Ui, input: &TableInput<'_>) -> Option<TableAction> {
    let mut action = None;
    ui.style_mut().interaction.selectable_labels = false;
    let row_height = ui.text_style_height(&egui::TextStyle::Body) + 6.0;
    let (columns, name_width) = columns_for(ui.available_width());
    // Each set of columns keeps its own widths (as the user dragged them).
    let layout: u16 = columns.iter().fold(0, |m, c| m | 1 << (c.col as u16));
    let mut table = TableBuilder::new(ui)
        .id_salt(("models", layout))
        .striped(true)
        .resizable(true)
        .sense(Sense::click())
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center))
        .min_scrolled_height(0.0);
    for c in &columns {
        table = table.column(match c.col {
            Col::Actions => Column::remainder().at_least(c.min),
            Col::Name => Column::initial(name_width).at_least(c.min).clip(true),
            _ => Column::initial(c.width).at_least(c.min).clip(true),
        });
    }
    if let Some(row) = input.scroll_to {
        table = table.scroll_to_row(row, None);
    }
    table
        .header(row_height + 2.0, |mut header| {
            for c in &columns {
                header.col(|ui| {
                    if let Some(a) = header_ui(ui, c, input) {
                        action = Some(a);
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
                let download = input
                    .downloads
                    .get(&m.id)
                    .filter(|p| !p.state.is_finished());
                for c in &columns {
                    row.col(|ui| {
                        if let Some(a) = cell_ui(ui, c.col, m, download) {
                            action = Some(a);
                        }
                    });
                }
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

/// One column's header: its title (a click sorts by it) and the sort arrow.
fn header_ui(ui: &mut egui::Ui, c: &ColSpec, input: &TableInput<'_>) -> Option<TableAction> {
    let sense = if c.sort.is_some() {
        Sense::click()
    } else {
        Sense::hover()
    };
    let title = ui.add(egui::Label::new(RichText::new(c.title).strong()).sense(sense));
    if c.sort == Some(input.sort) {
        sort_arrow(ui, input.ascending);
    }
    c.sort.filter(|_| title.clicked()).map(TableAction::Sort)
}

/// One cell of a row.
fn cell_ui(
    ui: &mut egui::Ui,
    col: Col,
    m: &ModelInfo,
    download: Option<&DownloadProgress>,
) -> Option<TableAction> {
    match col {
        Col::Name => {
            cell(ui, &m.name).on_hover_text(&m.id);
        }
        Col::Provider => {
            cell(ui, m.provider.as_str());
        }
        Col::Source => {
            cell(ui, m.source.as_str());
        }
        Col::Status => status_cell_ui(ui, m, download),
        Col::Capabilities => {
            cell(ui, m.capabilities.join(", "));
        }
        Col::Format => format_cell_ui(ui, m),
        Col::Size => {
            match download {
                // Bytes so far, of how many, while it downloads.
                Some(p) => cell(ui, crate::util::bytes_of(p.bytes_done, p.bytes_total))
                    .on_hover_text(crate::util::progress_summary(p)),
                // A partial model: its folder and what an interrupted download kept.
                None => match m.partial_bytes() {
                    Some(kept) => cell(
                        ui,
                        crate::util::bytes_of(
                            m.size_bytes().unwrap_or(0) + kept,
                            m.expected_size_bytes(),
                        ),
                    )
                    .on_hover_text(format!(
                        "{} kept by an interrupted download; downloading again resumes from it",
                        human_bytes(kept)
                    )),
                    None => cell(ui, size_text(m)),
                },
            };
        }
        Col::Modified => {
            cell(ui, m.modified().map(format_time).unwrap_or_default());
        }
        Col::Actions => return actions_cell_ui(ui, m, download),
    }
    None
}

/// The status, or a download's progress bar.
fn status_cell_ui(ui: &mut egui::Ui, m: &ModelInfo, download: Option<&DownloadProgress>) {
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
}

/// The format, with the quantization the header gives, the header's summary on hover.
fn format_cell_ui(ui: &mut egui::Ui, m: &ModelInfo) {
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
}

/// The row's buttons: cancel a download; download or resume; delete. A store's row says it
/// is read-only.
fn actions_cell_ui(
    ui: &mut egui::Ui,
    m: &ModelInfo,
    download: Option<&DownloadProgress>,
) -> Option<TableAction> {
    if m.source != LIBRARY_SOURCE {
        ui.weak("read-only").on_hover_text(format!(
            "In the {} store: listed, never changed by this app",
            m.source
        ));
        return None;
    }
    if download.is_some() || m.status == ModelStatus::Downloading {
        return ui
            .small_button("Cancel")
            .clicked()
            .then(|| TableAction::CancelDownload(m.id.clone()));
    }
    let mut action = None;
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
    action
}
