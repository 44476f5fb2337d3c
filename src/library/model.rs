//! What a listing is made of: [`ModelInfo`] (SPEC §4), [`ModelStatus`] (SPEC §3) and the
//! filters a view applies. Plain data; no I/O.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use crate::library::error::LibraryError;
use crate::library::sym::{Sym, Syms};

/// The status of a model (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    /// Every registry file present with its declared size; unregistered folders always.
    Downloaded,
    /// A download of it is running in this process.
    Downloading,
    /// Some files present, or leftovers in `.downloads/<id>/`.
    Partial,
    /// Registered, nothing on disk.
    Available,
    /// Present but wrong (size mismatch, unreadable); `error` says why.
    Error,
}

impl ModelStatus {
    /// Every status, in display order.
    pub const ALL: [ModelStatus; 5] = [
        ModelStatus::Downloaded,
        ModelStatus::Downloading,
        ModelStatus::Partial,
        ModelStatus::Available,
        ModelStatus::Error,
    ];

    /// The status as written in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Downloaded => "downloaded",
            ModelStatus::Downloading => "downloading",
            ModelStatus::Partial => "partial",
            ModelStatus::Available => "available",
            ModelStatus::Error => "error",
        }
    }
}

impl fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ModelStatus {
    type Err = LibraryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelStatus::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| LibraryError::UnknownStatus(s.to_string()))
    }
}

/// One model of a listing (SPEC §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model id (its folder name under `models/`).
    pub id: String,
    /// Display name; the id when the registry gives none.
    pub name: Box<str>,
    /// Who publishes it; `local` for unregistered folders.
    pub provider: Sym,
    /// Status per SPEC §3.
    pub status: ModelStatus,
    /// What it can do (`text-generation`, `chat`, `embedding`, …).
    pub capabilities: Syms,
    /// File format (`gguf`, `safetensors`, …) when known.
    pub format: Option<Sym>,
    /// Free text from the registry.
    pub description: Option<Box<str>>,
    /// License identifier from the registry.
    pub license: Option<Sym>,
    /// Whether the registry has an entry for it.
    pub registered: bool,
    /// Absolute model folder (`LIBRARY/models/<id>`), whether or not it exists.
    #[serde(serialize_with = "serialize_path_lossy")]
    pub path: Box<Path>,
    /// Bytes on disk (apparent sizes of regular files and symlinks, not followed);
    /// `None` in quick listings.
    pub size_bytes: Option<u64>,
    /// Number of files; `None` in quick listings.
    pub file_count: Option<u64>,
    /// Sum of the registry's declared file sizes; `None` when any is unknown.
    pub expected_size_bytes: Option<u64>,
    /// Newest modification time (unix seconds) of the folder and everything in it;
    /// `None` when absent and in quick listings (they do not look inside folders).
    pub modified: Option<f64>,
    /// Why the status is `error`, or a note about what could not be read.
    pub error: Option<Box<str>>,
    /// Bytes an interrupted download keeps in `.downloads/<id>/` (which a new download
    /// resumes from), in full listings; `None` when there are none. Not part of
    /// `size_bytes`, which is the model folder's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_bytes: Option<u64>,
    /// Why a status that is not an error is what it is, when that needs saying: a model
    /// being imported, an interrupted download that a new download resumes.
    #[serde(default)]
    pub note: Option<Box<str>>,
    /// Where the model was found: `library`, or a read-only store (`huggingface`,
    /// `ollama`, `lmstudio`).
    #[serde(default = "library_source")]
    pub source: Sym,
    /// What the model's file headers say, when they were read (behind a pointer: most rows
    /// of a large listing carry none, and inline it would cost every row 104 bytes; shared
    /// with the header cache it was read through, not copied).
    #[serde(default, with = "shared_metadata")]
    pub metadata: Option<Arc<ModelMetadata>>,
    /// The model's main file (its largest), whose header the metadata comes from, relative
    /// to `path` (an absolute one, as saved by earlier versions, also joins correctly); not
    /// part of the JSON shape. Not interned: real libraries mostly name each file apart
    /// (`Meta-Llama-3-8B-Instruct.Q4_K_M.gguf`), and would fill the table of shared values.
    #[serde(skip)]
    pub main_file: Option<Box<Path>>,
}

/// The source name of models in the library folder itself.
pub const LIBRARY_SOURCE: &str = "library";

fn library_source() -> Sym {
    Sym::new(LIBRARY_SOURCE)
}

/// Facts read from a model's file headers (GGUF, safetensors, Ollama config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelMetadata {
    /// Architecture (`llama`, `qwen2`, …).
    pub architecture: Option<String>,
    /// Number of parameters.
    pub parameter_count: Option<u64>,
    /// Quantization or file type (`Q4_K_M`, `F16`, …).
    pub quantization: Option<String>,
    /// Context length in tokens.
    pub context_length: Option<u64>,
    /// Tensor data types present (`F32`, `BF16`, …).
    pub dtypes: Vec<String>,
    /// Bytes the attention cache (K and V, at llama.cpp's default f16) takes per token of
    /// context, from a GGUF header's layer count, KV heads and head sizes (see
    /// [`crate::library::fit`]); `None` when the header does not say.
    pub kv_bytes_per_token: Option<u64>,
}

/// (De)serializes a row's shared metadata as the metadata itself (the JSON shape has no
/// notion of sharing).
mod shared_metadata {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ModelMetadata;

    pub fn serialize<S: Serializer>(
        m: &Option<Arc<ModelMetadata>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        m.as_deref().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Arc<ModelMetadata>>, D::Error> {
        Ok(Option::<ModelMetadata>::deserialize(d)?.map(Arc::new))
    }
}

fn serialize_path_lossy<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

/// Which filters a view applies. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    /// Use the fast listing (no recursion; sizes and file counts are `None`).
    pub quick: bool,
    /// Only models of this provider (case-insensitive).
    pub provider: Option<String>,
    /// Only models with this status.
    pub status: Option<ModelStatus>,
    /// Only models with this capability (case-insensitive).
    pub capability: Option<String>,
}

impl ListQuery {
    /// The view-cache key, exactly as the original service wrote it:
    /// `quick=false|provider=None|status=None|capability=None`.
    pub fn cache_key(&self) -> String {
        fn opt(v: Option<&str>) -> &str {
            v.unwrap_or("None")
        }
        format!(
            "quick={}|provider={}|status={}|capability={}",
            self.quick,
            opt(self.provider.as_deref()),
            opt(self.status.map(ModelStatus::as_str)),
            opt(self.capability.as_deref()),
        )
    }

    /// Whether a model passes the filters (`quick` is not a filter).
    pub fn matches(&self, m: &ModelInfo) -> bool {
        self.provider
            .as_deref()
            .is_none_or(|p| m.provider.eq_ignore_ascii_case(p))
            && self.status.is_none_or(|s| m.status == s)
            && self
                .capability
                .as_deref()
                .is_none_or(|c| m.capabilities.iter().any(|mc| mc.eq_ignore_ascii_case(c)))
    }

    /// Whether no filter is set.
    pub fn is_unfiltered(&self) -> bool {
        self.provider.is_none() && self.status.is_none() && self.capability.is_none()
    }
}

/// Which listing to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ListKind {
    /// Recursive sizes, file counts, verified statuses (service cache key `"all"`).
    Full,
    /// Registry plus one read of `models/` (service cache key `"fast"`).
    Fast,
}

impl ListKind {
    /// The service-cache key of the original service.
    pub fn cache_key(self) -> &'static str {
        match self {
            ListKind::Full => "all",
            ListKind::Fast => "fast",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_matches_the_seed() {
        assert_eq!(
            ListQuery::default().cache_key(),
            "quick=false|provider=None|status=None|capability=None"
        );
        let q = ListQuery {
            quick: true,
            provider: Some("huggingface".into()),
            status: Some(ModelStatus::Downloaded),
            capability: Some("chat".into()),
        };
        assert_eq!(
            q.cache_key(),
            "quick=true|provider=huggingface|status=downloaded|capability=chat"
        );
    }

    #[test]
    fn status_parses_case_insensitively() {
        assert_eq!(
            "Partial".parse::<ModelStatus>().unwrap(),
            ModelStatus::Partial
        );
        let err = "broken".parse::<ModelStatus>().unwrap_err().to_string();
        assert!(
            err.contains("broken") && err.contains("downloaded"),
            "{err}"
        );
    }
}
