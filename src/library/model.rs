//! What a listing is made of: [`ModelInfo`] (SPEC §4), [`ModelStatus`] (SPEC §3) and the
//! filters a view applies. Plain data; no I/O.

use std::fmt;
use std::path::{Path, PathBuf};
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

/// One model of a listing (SPEC §4). Serialized field by field (its `path` is made from its
/// [`Location`] and id), in the order SPEC §4 lists them.
#[derive(Debug, Clone, PartialEq)]
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
    /// Where the model's folder is (`LIBRARY/models/<id>`, whether or not it exists): see
    /// [`ModelInfo::path`].
    pub location: Location,
    /// Its sizes, file count and time ([`ModelInfo::size_bytes`], [`ModelInfo::file_count`],
    /// [`ModelInfo::expected_size_bytes`], [`ModelInfo::modified`],
    /// [`ModelInfo::partial_bytes`]).
    pub figures: Figures,
    /// Why the status is `error`, or a note about what could not be read.
    pub error: Option<Box<str>>,
    /// Why a status that is not an error is what it is, when that needs saying: a model
    /// being imported, an interrupted download that a new download resumes.
    pub note: Option<Box<str>>,
    /// Where the model was found: `library`, or a read-only store (`huggingface`,
    /// `ollama`, `lmstudio`).
    pub source: Sym,
    /// What the model's file headers say, when they were read (behind a pointer: most rows
    /// of a large listing carry none, and inline it would cost every row 104 bytes; shared
    /// with the header cache it was read through, not copied).
    pub metadata: Option<Arc<ModelMetadata>>,
    /// The model's main file (its largest), whose header the metadata comes from, relative
    /// to `path` (an absolute one, as saved by earlier versions, also joins correctly); not
    /// part of the JSON shape. Not interned: real libraries mostly name each file apart
    /// (`Meta-Llama-3-8B-Instruct.Q4_K_M.gguf`), and would fill the table of shared values.
    pub main_file: Option<Box<Path>>,
}

/// The source name of models in the library folder itself.
pub const LIBRARY_SOURCE: &str = "library";

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

/// Where a model's folder is. Almost every row's folder is `<parent>/<id>` — the
/// library's `models/<id>` — and keeps only the parent, shared by every such row (100 000
/// rows of a library share one); any other folder (a store's, a non-UTF-8 parent) is kept
/// whole. Always made by [`Location::of`] or [`Location::in_folder`], so one folder has one
/// form and rows compare equal exactly when their folders do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The folder named as the id inside this parent.
    Under(Sym),
    /// A folder of its own.
    At(Box<Path>),
}

impl Location {
    /// The location of `path` for the model `id`.
    pub fn of(path: &Path, id: &str) -> Location {
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) if name == id => Location::in_folder(parent, id),
            _ => Location::At(path.into()),
        }
    }

    /// The location of `parent/id` for the model `id` (without making that path when it is
    /// not kept).
    pub fn in_folder(parent: &Path, id: &str) -> Location {
        let one_name = Path::new(id).file_name() == Some(std::ffi::OsStr::new(id));
        match parent.to_str() {
            Some(p) if one_name && !p.is_empty() => Location::Under(shared_parent(p)),
            _ => Location::At(parent.join(id).into()),
        }
    }

    /// The folder of the model `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        match self {
            Location::Under(parent) => Path::new(parent.as_str()).join(id),
            Location::At(path) => path.to_path_buf(),
        }
    }
}

/// The shared copy of `parent`: the one this thread made last when it is the same (a
/// scan makes 100 000 rows under one parent, on a few threads, without taking the lock of
/// the table of shared values for each).
fn shared_parent(parent: &str) -> Sym {
    thread_local! {
        static LAST: std::cell::RefCell<Option<Sym>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some(sym) if sym.as_str() == parent => sym.clone(),
        _ => last.insert(Sym::new(parent)).clone(),
    })
}

/// A row's figures: its sizes, file count and newest time, each of which may be unknown —
/// five `Option`s in 48 bytes instead of 80 (a row is 32 bytes smaller; 100 000 rows,
/// 3 MB). Made with the `with_*` methods, read through [`ModelInfo`]'s accessors or the
/// ones here, changed with the `set_*` ones.
#[derive(Clone, Copy, Default, PartialEq)]
pub struct Figures {
    size: u64,
    files: u64,
    expected: u64,
    partial: u64,
    modified: f64,
    /// Which of the values above are known, one bit each ([`Figures::SIZE`], …); a value
    /// not known is 0, so equal figures compare equal field by field.
    known: u8,
}

impl Figures {
    const SIZE: u8 = 1;
    const FILES: u8 = 2;
    const EXPECTED: u8 = 4;
    const PARTIAL: u8 = 8;
    const MODIFIED: u8 = 16;

    fn get(&self, bit: u8, value: u64) -> Option<u64> {
        (self.known & bit != 0).then_some(value)
    }

    /// Records whether `value` is known and gives what to keep for it.
    fn put(&mut self, bit: u8, value: Option<u64>) -> u64 {
        match value {
            Some(v) => {
                self.known |= bit;
                v
            }
            None => {
                self.known &= !bit;
                0
            }
        }
    }

    /// Bytes on disk (apparent sizes of regular files and symlinks, not followed); `None`
    /// in quick listings.
    pub fn size(&self) -> Option<u64> {
        self.get(Self::SIZE, self.size)
    }

    /// Number of files; `None` in quick listings.
    pub fn files(&self) -> Option<u64> {
        self.get(Self::FILES, self.files)
    }

    /// Sum of the registry's declared file sizes; `None` when any is unknown.
    pub fn expected(&self) -> Option<u64> {
        self.get(Self::EXPECTED, self.expected)
    }

    /// Bytes an interrupted download keeps in `.downloads/<id>/` (which a new download
    /// resumes from), in full listings; `None` when there are none. Not part of the size,
    /// which is the model folder's.
    pub fn partial(&self) -> Option<u64> {
        self.get(Self::PARTIAL, self.partial)
    }

    /// Newest modification time (unix seconds) of the folder and everything in it; `None`
    /// when absent and in quick listings (they do not look inside folders).
    pub fn modified(&self) -> Option<f64> {
        (self.known & Self::MODIFIED != 0).then_some(self.modified)
    }

    /// Sets [`Figures::size`].
    pub fn set_size(&mut self, value: Option<u64>) {
        self.size = self.put(Self::SIZE, value);
    }

    /// Sets [`Figures::files`].
    pub fn set_files(&mut self, value: Option<u64>) {
        self.files = self.put(Self::FILES, value);
    }

    /// Sets [`Figures::expected`].
    pub fn set_expected(&mut self, value: Option<u64>) {
        self.expected = self.put(Self::EXPECTED, value);
    }

    /// Sets [`Figures::partial`].
    pub fn set_partial(&mut self, value: Option<u64>) {
        self.partial = self.put(Self::PARTIAL, value);
    }

    /// Sets [`Figures::modified`].
    pub fn set_modified(&mut self, value: Option<f64>) {
        let bits = self.put(Self::MODIFIED, value.map(f64::to_bits));
        self.modified = f64::from_bits(bits);
    }

    /// These figures with [`Figures::size`] set.
    pub fn with_size(mut self, value: Option<u64>) -> Self {
        self.set_size(value);
        self
    }

    /// These figures with [`Figures::files`] set.
    pub fn with_files(mut self, value: Option<u64>) -> Self {
        self.set_files(value);
        self
    }

    /// These figures with [`Figures::expected`] set.
    pub fn with_expected(mut self, value: Option<u64>) -> Self {
        self.set_expected(value);
        self
    }

    /// These figures with [`Figures::partial`] set.
    pub fn with_partial(mut self, value: Option<u64>) -> Self {
        self.set_partial(value);
        self
    }

    /// These figures with [`Figures::modified`] set.
    pub fn with_modified(mut self, value: Option<f64>) -> Self {
        self.set_modified(value);
        self
    }
}

impl fmt::Debug for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Figures")
            .field("size", &self.size())
            .field("files", &self.files())
            .field("expected", &self.expected())
            .field("partial", &self.partial())
            .field("modified", &self.modified())
            .finish()
    }
}

impl ModelInfo {
    /// Bytes on disk: see [`Figures::size`].
    pub fn size_bytes(&self) -> Option<u64> {
        self.figures.size()
    }

    /// Number of files: see [`Figures::files`].
    pub fn file_count(&self) -> Option<u64> {
        self.figures.files()
    }

    /// Sum of the declared file sizes: see [`Figures::expected`].
    pub fn expected_size_bytes(&self) -> Option<u64> {
        self.figures.expected()
    }

    /// Bytes of an interrupted download: see [`Figures::partial`].
    pub fn partial_bytes(&self) -> Option<u64> {
        self.figures.partial()
    }

    /// Newest modification time: see [`Figures::modified`].
    pub fn modified(&self) -> Option<f64> {
        self.figures.modified()
    }

    /// A row for the folder `path` of the model `id` with nothing else known: an
    /// unregistered library model, downloaded, with no sizes, times or notes. Rows made by
    /// hand (tests, benches) start from it and set what they need.
    pub fn new(id: &str, path: &Path) -> ModelInfo {
        ModelInfo {
            id: id.to_string(),
            name: id.into(),
            provider: Sym::new("local"),
            status: ModelStatus::Downloaded,
            capabilities: Syms::default(),
            format: None,
            description: None,
            license: None,
            registered: false,
            location: Location::of(path, id),
            figures: Figures::default(),
            error: None,
            note: None,
            source: Sym::new(LIBRARY_SOURCE),
            metadata: None,
            main_file: None,
        }
    }

    /// The model's folder, absolute (made from its [`Location`]: one allocation per call).
    pub fn path(&self) -> PathBuf {
        self.location.path(&self.id)
    }

    /// The name of the model's folder when that folder is directly in `parent`.
    pub fn folder_in(&self, parent: &Path) -> Option<&std::ffi::OsStr> {
        match &self.location {
            Location::Under(p) => (Path::new(p.as_str()) == parent).then(|| self.id.as_ref()),
            Location::At(path) => (path.parent() == Some(parent))
                .then(|| path.file_name())
                .flatten(),
        }
    }
}

/// A row's folder as JSON text, written as [`ModelInfo::path`] would be (lossily where it
/// is not UTF-8) without making that path: 100 000 rows, 100 000 allocations fewer.
struct PathText<'a>(&'a ModelInfo);

impl fmt::Display for PathText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.location {
            // What `Path::join` makes of a parent and one name.
            Location::Under(parent) => {
                f.write_str(parent)?;
                if !parent.ends_with('/') {
                    f.write_str("/")?;
                }
                f.write_str(&self.0.id)
            }
            Location::At(path) => fmt::Display::fmt(&path.display(), f),
        }
    }
}

impl Serialize for PathText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for ModelInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ModelInfo", 19)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("provider", &self.provider)?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("capabilities", &self.capabilities)?;
        st.serialize_field("format", &self.format)?;
        st.serialize_field("description", &self.description)?;
        st.serialize_field("license", &self.license)?;
        st.serialize_field("registered", &self.registered)?;
        st.serialize_field("path", &PathText(self))?;
        st.serialize_field("size_bytes", &self.size_bytes())?;
        st.serialize_field("file_count", &self.file_count())?;
        st.serialize_field("expected_size_bytes", &self.expected_size_bytes())?;
        st.serialize_field("modified", &self.modified())?;
        st.serialize_field("error", &self.error)?;
        match self.partial_bytes() {
            Some(bytes) => st.serialize_field("partial_bytes", &bytes)?,
            None => st.skip_field("partial_bytes")?,
        }
        st.serialize_field("note", &self.note)?;
        st.serialize_field("source", &self.source)?;
        // The JSON shape has no notion of sharing: the metadata itself.
        st.serialize_field("metadata", &self.metadata.as_deref())?;
        st.end()
    }
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

    #[test]
    fn a_folder_named_as_its_id_keeps_only_its_shared_parent() {
        let a = Location::of(Path::new("/lib/models/llama"), "llama");
        let b = Location::in_folder(Path::new("/lib/models"), "qwen");
        match (&a, &b) {
            (Location::Under(pa), Location::Under(pb)) => {
                assert_eq!(pa.as_str(), "/lib/models");
                assert!(std::ptr::eq(pa.as_str(), pb.as_str()), "one parent, shared");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.path("llama"), Path::new("/lib/models/llama"));
        // One folder has one form, whichever way it was made.
        assert_eq!(a, Location::in_folder(Path::new("/lib/models"), "llama"));
    }

    #[test]
    fn any_other_folder_is_kept_whole() {
        use std::os::unix::ffi::OsStrExt;
        let store = Path::new("/hub/models--org--name");
        assert_eq!(Location::of(store, "org/name"), Location::At(store.into()));
        // An id of more than one name is not a folder name.
        let nested = Location::in_folder(Path::new("/lib/models"), "a/b");
        assert_eq!(nested, Location::At(Path::new("/lib/models/a/b").into()));
        assert_eq!(nested.path("a/b"), Path::new("/lib/models/a/b"));
        // A parent that is not UTF-8 cannot be a shared value.
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/lib/\xff/models"));
        let at = Location::in_folder(odd, "m");
        assert_eq!(at, Location::At(odd.join("m").into()));
        assert_eq!(at.path("m"), odd.join("m"));
        // A relative folder with no parent named.
        assert_eq!(
            Location::of(Path::new("m"), "m"),
            Location::At(Path::new("m").into())
        );
    }

    #[test]
    fn a_row_serializes_its_path_in_place_and_no_location() {
        let mut row = ModelInfo::new("llama", Path::new("/lib/models/llama"));
        let json = serde_json::to_value(&row).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(json["path"], "/lib/models/llama");
        // Written as the path it stands for, whatever the location's form.
        use std::os::unix::ffi::OsStrExt;
        let odd = Path::new(std::ffi::OsStr::from_bytes(b"/lib/\xff/m"));
        for (id, path) in [
            ("m", Path::new("/m")),
            ("a/b", Path::new("/x/a/b")),
            ("m", odd),
        ] {
            let row = ModelInfo::new(id, path);
            let text = serde_json::to_value(&row).unwrap()["path"].clone();
            assert_eq!(text, *row.path().to_string_lossy(), "{path:?}");
        }
        assert!(
            !keys.contains(&"location") && !keys.contains(&"partial_bytes"),
            "{keys:?}"
        );
        row.figures.set_partial(Some(5));
        let text = serde_json::to_string(&row).unwrap();
        let order = [
            "\"id\"",
            "\"registered\"",
            "\"path\"",
            "\"size_bytes\"",
            "\"partial_bytes\"",
            "\"metadata\"",
        ];
        let at: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn figures_keep_what_is_known_and_forget_what_is_not() {
        let mut f = Figures::default()
            .with_size(Some(0))
            .with_files(Some(3))
            .with_expected(Some(u64::MAX))
            .with_modified(Some(1.5));
        assert_eq!(
            (f.size(), f.files(), f.expected(), f.partial(), f.modified()),
            (Some(0), Some(3), Some(u64::MAX), None, Some(1.5))
        );
        f.set_files(None);
        f.set_modified(None);
        f.set_partial(Some(7));
        assert_eq!(
            (f.files(), f.modified(), f.partial()),
            (None, None, Some(7))
        );
        // Equal figures compare equal however they were reached.
        let direct = Figures::default()
            .with_size(Some(0))
            .with_expected(Some(u64::MAX))
            .with_partial(Some(7));
        assert_eq!(f, direct);
        assert_ne!(f, direct.with_size(None));
        // Five optional figures in 48 bytes: a row of a listing stays within 224.
        assert_eq!(std::mem::size_of::<Figures>(), 48);
        assert!(std::mem::size_of::<ModelInfo>() <= 224);
    }
}
