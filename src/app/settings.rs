//! The small settings struct the window persists through eframe storage. Every field has a
//! default, so settings written by an older or newer version always load.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::library::DEFAULT_TTL_SECS;
use crate::library::{DeleteMode, ModelStatus};

/// A column the table can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortKey {
    /// Display name.
    #[default]
    Name,
    /// Provider.
    Provider,
    /// Where the model was found (the library or a store).
    Source,
    /// Status.
    Status,
    /// Capabilities, as listed.
    Capabilities,
    /// File format.
    Format,
    /// Size on disk.
    Size,
    /// Newest modification time.
    Modified,
}

/// The window's colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Theme {
    /// Follow the system's light or dark preference.
    #[default]
    System,
    /// Light.
    Light,
    /// Dark.
    Dark,
}

impl Theme {
    /// Every choice, in menu order.
    pub const ALL: [Theme; 3] = [Theme::System, Theme::Light, Theme::Dark];

    /// The name shown.
    pub fn label(self) -> &'static str {
        match self {
            Theme::System => "System",
            Theme::Light => "Light",
            Theme::Dark => "Dark",
        }
    }

    /// What egui calls it.
    pub fn preference(self) -> egui::ThemePreference {
        match self {
            Theme::System => egui::ThemePreference::System,
            Theme::Light => egui::ThemePreference::Light,
            Theme::Dark => egui::ThemePreference::Dark,
        }
    }
}

/// What persists across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Library folder; `None` is the default library.
    pub library: Option<PathBuf>,
    /// Cache TTL, seconds.
    pub ttl_secs: u64,
    /// Quick (fast listing) instead of full.
    pub quick: bool,
    /// Provider filter.
    pub provider: Option<String>,
    /// Status filter.
    pub status: Option<ModelStatus>,
    /// Capability filter.
    pub capability: Option<String>,
    /// Source filter (the library or one of the other stores).
    pub source: Option<String>,
    /// Sort column.
    pub sort: SortKey,
    /// Sort direction.
    pub ascending: bool,
    /// How deletes remove folders.
    pub delete_mode: DeleteMode,
    /// List the read-only stores beside the library.
    pub other_stores: bool,
    /// Per store (`huggingface`, `ollama`, `lmstudio`): switched off, or pointed elsewhere.
    pub stores: BTreeMap<String, StoreSetting>,
    /// Light, dark, or as the system says.
    pub theme: Theme,
}

/// One read-only store's setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreSetting {
    /// Do not list this store.
    pub disabled: bool,
    /// Its folder, instead of the default location.
    pub root: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            library: None,
            ttl_secs: DEFAULT_TTL_SECS,
            quick: false,
            provider: None,
            status: None,
            capability: None,
            source: None,
            sort: SortKey::Name,
            ascending: true,
            delete_mode: DeleteMode::Trash,
            other_stores: true,
            stores: BTreeMap::new(),
            theme: Theme::System,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unknown_fields_load() {
        let s: Settings =
            serde_json::from_str(r#"{"ttl_secs": 60, "future_field": true}"#).unwrap();
        assert_eq!(s.ttl_secs, 60);
        assert_eq!(s.sort, SortKey::Name);
        assert!(s.ascending);
    }
}
