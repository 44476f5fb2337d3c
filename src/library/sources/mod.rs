//! Read-only model stores besides the library: the Hugging Face hub cache
//! ([`SourceKind::HuggingFace`]), Ollama, LM Studio, GPT4All, llama.cpp's cache, Jan,
//! ComfyUI and a folder of one's own (see [`SourceKind`]). Each is scanned into [`ModelInfo`]s with `source` set to the
//! store's name, plus the files behind each model ([`SourceScan`]) so disk usage can count
//! shared bytes once ([`DiskUsage`], [`bytes_freed_by_deleting`]).
//!
//! Owns: finding each store's root ([`default_sources`], with the environment and the home
//! folder injected so tests never touch the real home), reading each store's layout, the
//! status rules for store models, and the disk-usage arithmetic.
//!
//! Must not touch: it never writes anything, anywhere. Inside a store it never follows a
//! symlink (not even to stat it), except that a Hugging Face snapshot link is *resolved by
//! name* into the same repository's `blobs/` folder, whose files were listed directly, and
//! a repository blob that links into the cache's marked shared blob store is resolved the
//! same way, one hop; a link that points anywhere else is neither followed nor counted. Paths taken from file
//! contents (Ollama digests, `refs/main`) are validated as single safe components before
//! use. Only the configured root itself may be a symlink (e.g. a cache moved to another disk).
//!
//! Ids: `huggingface/<org>/<name>`, `ollama/<namespace>/<model>:<tag>` (registry host
//! inserted first when it is not `registry.ollama.ai`), `lmstudio/<publisher>/<model>`. They
//! are unique within a listing and stable across scans, and are **not** library ids: they
//! contain `/` and `:`, are never used as paths, and the library's id rules (SPEC §1) do not
//! apply to them. `provider` is the store's name (`huggingface`, `ollama`, `lmstudio`), so the
//! provider filter also works as a store filter and matches the registry's vocabulary; the
//! publisher (HF org, Ollama namespace, LM Studio publisher) is in the id and the name.

mod comfyui;
mod gpt4all;
mod huggingface;
mod jan;
mod llamacpp;
mod lmstudio;
mod ollama;
mod tree;
pub(crate) use ollama::parse_blob_name as parse_ollama_blob_name;
mod usage;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use usage::{
    DiskUsage, bytes_freed_by_deleting, disk_usage, largest_models, least_recently_used,
};

use crate::library::error::LibraryError;
use crate::library::metadata::{MetadataCache, fill_missing, merge_parts};
use crate::library::model::{Figures, Location, ModelInfo, ModelMetadata, ModelStatus};
use crate::library::sym::Sym;
use crate::library::walk::{EntryKind, WalkOptions};

/// Which store a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The Hugging Face hub cache (`models--org--name/{blobs,snapshots,refs}`).
    HuggingFace,
    /// Ollama's model store (`manifests/…`, `blobs/sha256-…`).
    Ollama,
    /// LM Studio's models folder (`publisher/model/*.gguf`).
    LmStudio,
    /// GPT4All's models folder (model files side by side, `incomplete-*` downloads).
    Gpt4All,
    /// llama.cpp's cache (`$LLAMA_CACHE` or `~/.cache/llama.cpp`): its flat files and
    /// manifests, and Hugging Face repos there when `$LLAMA_CACHE` puts them there.
    LlamaCpp,
    /// Jan's data folder (`llamacpp/models/<id>/model.yml`, `mlx/models/…`).
    Jan,
    /// A ComfyUI folder the user points to (`models/<kind>/…` and `extra_model_paths.yaml`).
    ComfyUi,
    /// A folder of the user's own, scanned at any depth for model files.
    Folder,
}

impl SourceKind {
    /// Every kind, in display order.
    pub const ALL: [SourceKind; 8] = [
        SourceKind::HuggingFace,
        SourceKind::Ollama,
        SourceKind::LmStudio,
        SourceKind::Gpt4All,
        SourceKind::LlamaCpp,
        SourceKind::Jan,
        SourceKind::ComfyUi,
        SourceKind::Folder,
    ];

    /// The name used as `source` and `provider`: `huggingface`, `ollama`, `lmstudio`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::HuggingFace => "huggingface",
            SourceKind::Ollama => "ollama",
            SourceKind::LmStudio => "lmstudio",
            SourceKind::Gpt4All => "gpt4all",
            SourceKind::LlamaCpp => "llamacpp",
            SourceKind::Jan => "jan",
            SourceKind::ComfyUi => "comfyui",
            SourceKind::Folder => "folder",
        }
    }

    /// A name for people: `Hugging Face`, `Ollama`, `LM Studio`.
    pub fn display_name(self) -> &'static str {
        match self {
            SourceKind::HuggingFace => "Hugging Face",
            SourceKind::Ollama => "Ollama",
            SourceKind::LmStudio => "LM Studio",
            SourceKind::Gpt4All => "GPT4All",
            SourceKind::LlamaCpp => "llama.cpp",
            SourceKind::Jan => "Jan",
            SourceKind::ComfyUi => "ComfyUI",
            SourceKind::Folder => "Your folder",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = SourceKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown store {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// One store to scan: its kind, its root folder, and whether it is switched on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceConfig {
    /// Which store.
    pub kind: SourceKind,
    /// Its root: the hub cache folder, Ollama's `models` folder, LM Studio's models folder.
    pub root: PathBuf,
    /// Whether to scan it. A disabled source scans to an empty list.
    pub enabled: bool,
}

impl SourceConfig {
    /// An enabled source.
    pub fn new(kind: SourceKind, root: impl Into<PathBuf>) -> Self {
        SourceConfig {
            kind,
            root: root.into(),
            enabled: true,
        }
    }

    /// Whether the root is an existing folder (following a symlinked root).
    pub fn root_exists(&self) -> bool {
        self.root.is_dir()
    }
}

/// Reads an environment variable; injected so tests never see the real environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The standard sources, one per kind whose root can be determined (all three when `home`
/// is known), all enabled, **whether or not their root exists**: a missing root scans to
/// an empty list, and the settings can show it as "not found" and let the user point it
/// elsewhere ([`SourceConfig::root_exists`]). Roots: [`huggingface_root`], [`ollama_root`],
/// [`lmstudio_root`].
pub fn default_sources(env: Env<'_>, home: Option<&Path>) -> Vec<SourceConfig> {
    default_sources_in(env, home, Path::new(OLLAMA_SERVICE_STORE))
}

/// [`default_sources`] with Ollama's system service store at `ollama_service` (tests point
/// it at a folder of their own, so the machine's stores never matter).
pub fn default_sources_in(
    env: Env<'_>,
    home: Option<&Path>,
    ollama_service: &Path,
) -> Vec<SourceConfig> {
    [
        (SourceKind::HuggingFace, huggingface_root(env, home)),
        (
            SourceKind::Ollama,
            ollama_root_in(env, home, ollama_service),
        ),
        (SourceKind::LmStudio, lmstudio_root(env, home)),
        (SourceKind::Gpt4All, gpt4all_root(env, home)),
        (SourceKind::LlamaCpp, llamacpp_root(env, home)),
        (SourceKind::Jan, jan_root(env, home)),
        (SourceKind::ComfyUi, comfyui_root(home)),
    ]
    .into_iter()
    .filter_map(|(kind, root)| root.map(|r| SourceConfig::new(kind, r)))
    .collect()
}

/// Applies a user's setting for one store to `sources`: switched on or off, and pointed at
/// `root` when given. A kind with no default folder (ComfyUI, a folder of one's own) is
/// added when a folder is given for it.
pub fn set_store(
    sources: &mut Vec<SourceConfig>,
    kind: SourceKind,
    enabled: bool,
    root: Option<PathBuf>,
) {
    match sources.iter_mut().find(|s| s.kind == kind) {
        Some(s) => {
            s.enabled = enabled;
            if let Some(r) = root {
                s.root = r;
            }
        }
        None => {
            if let Some(r) = root {
                let mut s = SourceConfig::new(kind, r);
                s.enabled = enabled;
                sources.push(s);
            }
        }
    }
}

/// llama.cpp's cache (`fs_get_cache_directory` in llama.cpp's `common/common.cpp`):
/// `$LLAMA_CACHE`, else `$XDG_CACHE_HOME/llama.cpp`, else `~/Library/Caches/llama.cpp` on
/// macOS (when there), else `~/.cache/llama.cpp`. Newer versions write the Hugging Face
/// layout into the Hugging Face cache unless `$LLAMA_CACHE` is set; that is the Hugging
/// Face store's, and only `models--*` folders under `$LLAMA_CACHE` are this store's.
pub fn llamacpp_root(env: Env<'_>, home: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = env_path(env, "LLAMA_CACHE", home) {
        return Some(p);
    }
    if let Some(c) = env_path(env, "XDG_CACHE_HOME", home) {
        return Some(c.join("llama.cpp"));
    }
    let home = home?;
    let mac = home.join("Library/Caches/llama.cpp");
    Some(if mac.is_dir() {
        mac
    } else {
        home.join(".cache/llama.cpp")
    })
}

/// Jan's data folder: `$JAN_DATA_FOLDER`; else `data_folder` in Jan's app settings
/// (`settings.json` in `<data>/Jan`, the older `<data>/jan.ai.app`, or on Linux the older
/// `~/.config/Jan`: `get_configuration_file_path` in Jan's `src-tauri/src/core/app/`);
/// else its default `<data>/Jan/data` (`default_data_folder_path`), where `<data>` is
/// `$XDG_DATA_HOME` or `~/.local/share` (`~/Library/Application Support` on macOS).
pub fn jan_root(env: Env<'_>, home: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = env_path(env, "JAN_DATA_FOLDER", home) {
        return Some(p);
    }
    let mac = home.map(|h| h.join("Library/Application Support"));
    let data = env_path(env, "XDG_DATA_HOME", home)
        .or_else(|| mac.filter(|m| m.join("Jan").is_dir()))
        .or_else(|| home.map(|h| h.join(".local/share")))?;
    let mut settings = vec![
        data.join("Jan/settings.json"),
        data.join("jan.ai.app/settings.json"),
    ];
    if let Some(h) = home {
        settings.push(h.join(".config/Jan/settings.json"));
    }
    first_json_path(&settings, "data_folder").or_else(|| Some(data.join("Jan/data")))
}

/// ComfyUI has no fixed place: it is listed when the user points to its folder, or found
/// at `~/ComfyUI` (the folder its manual install clones) when that has a `models` folder.
pub fn comfyui_root(home: Option<&Path>) -> Option<PathBuf> {
    let c = home?.join("ComfyUI");
    c.join("models").is_dir().then_some(c)
}

/// The folders whose changes can change a store's listing: its root, and what its scanner
/// reads outside it: LM Studio's hub models beside the models folder, ComfyUI's
/// `extra_model_paths.yaml` folders. (Files a Jan `model.yml` names outside the data
/// folder are not watched; the TTL covers them.)
pub fn watch_roots(config: &SourceConfig) -> Vec<PathBuf> {
    let mut roots = vec![config.root.clone()];
    match config.kind {
        SourceKind::LmStudio => {
            if let Some(hub) = config.root.parent().map(|p| p.join("hub/models")) {
                roots.push(hub);
            }
        }
        SourceKind::ComfyUi => {
            let env = |k: &str| std::env::var_os(k);
            for (dir, _, _) in comfyui::folders(&config.root, &env) {
                if !dir.starts_with(&config.root) && !roots.contains(&dir) {
                    roots.push(dir);
                }
            }
        }
        _ => {}
    }
    roots.retain(|r| r == &config.root || r.is_dir());
    roots
}

/// A non-empty variable as a path, `~/…` expanded against `home`.
fn env_path(env: Env<'_>, key: &str, home: Option<&Path>) -> Option<PathBuf> {
    let v = env(key).filter(|v| !v.is_empty())?;
    Some(expand_tilde(PathBuf::from(v), home))
}

fn expand_tilde(p: PathBuf, home: Option<&Path>) -> PathBuf {
    match (p.strip_prefix("~"), home) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ => p,
    }
}

/// The Hugging Face hub cache, as `huggingface_hub` finds it: `$HF_HUB_CACHE`, else the
/// legacy `$HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
/// else `~/.cache/huggingface/hub`.
pub fn huggingface_root(env: Env<'_>, home: Option<&Path>) -> Option<PathBuf> {
    env_path(env, "HF_HUB_CACHE", home)
        .or_else(|| env_path(env, "HUGGINGFACE_HUB_CACHE", home))
        .or_else(|| env_path(env, "HF_HOME", home).map(|h| h.join("hub")))
        .or_else(|| {
            env_path(env, "XDG_CACHE_HOME", home).map(|c| c.join("huggingface").join("hub"))
        })
        .or_else(|| home.map(|h| h.join(".cache").join("huggingface").join("hub")))
}

/// GPT4All's models folder: its `modelPath` setting (Qt's `QSettings` file
/// `~/.config/nomic.ai/GPT4All.ini`, `$XDG_CONFIG_HOME` honoured), else its default, the
/// app's local data folder: `~/.local/share/nomic.ai/GPT4All` (`$XDG_DATA_HOME` honoured),
/// or on macOS `~/Library/Application Support/nomic.ai/GPT4All` when that is there.
pub fn gpt4all_root(env: Env<'_>, home: Option<&Path>) -> Option<PathBuf> {
    let config =
        env_path(env, "XDG_CONFIG_HOME", home).or_else(|| home.map(|h| h.join(".config")))?;
    let setting = read_text(&config.join("nomic.ai").join("GPT4All.ini"), 1 << 20).and_then(|t| {
        t.lines()
            .find_map(|l| l.trim().strip_prefix("modelPath="))
            .map(|v| PathBuf::from(v.trim().trim_matches('"')))
            .filter(|p| p.is_absolute())
    });
    if setting.is_some() {
        return setting;
    }
    let mac = home.map(|h| h.join("Library/Application Support/nomic.ai/GPT4All"));
    if let Some(m) = mac.filter(|m| m.is_dir()) {
        return Some(m);
    }
    let data = env_path(env, "XDG_DATA_HOME", home)
        .or_else(|| home.map(|h| h.join(".local").join("share")))?;
    Some(data.join("nomic.ai").join("GPT4All"))
}

/// Where Ollama's Linux installer puts the store of the `ollama` system service (its
/// `install.sh` makes the `ollama` user with home `/usr/share/ollama`).
pub const OLLAMA_SERVICE_STORE: &str = "/usr/share/ollama/.ollama/models";

/// Ollama's models folder: `$OLLAMA_MODELS`, else `~/.ollama/models`, else — when that is
/// not there — the system service's store ([`OLLAMA_SERVICE_STORE`]) if that is.
pub fn ollama_root(env: Env<'_>, home: Option<&Path>) -> Option<PathBuf> {
    ollama_root_in(env, home, Path::new(OLLAMA_SERVICE_STORE))
}

/// [`ollama_root`] with the system service's store at `service` (tests point it elsewhere).
pub fn ollama_root_in(env: Env<'_>, home: Option<&Path>, service: &Path) -> Option<PathBuf> {
    if let Some(p) = env_path(env, "OLLAMA_MODELS", home) {
        return Some(p);
    }
    let user = home.map(|h| h.join(".ollama").join("models"));
    match user {
        Some(u) if u.is_dir() => Some(u),
        _ if service.is_dir() => Some(service.to_path_buf()),
        other => other,
    }
}

/// LM Studio's models folder, first found of:
/// 1. the `downloadsFolder` of LM Studio's `settings.json` (best effort: looked for in the
///    app's settings folder — `$APPDATA/LM Studio`, `$XDG_CONFIG_HOME/LM Studio`,
///    `~/.config/LM Studio`, `~/Library/Application Support/LM Studio` — and in its home),
///    used when it is an absolute path;
/// 2. `<home>/models`, where `<home>` is the path written in `~/.lmstudio-home-pointer`;
/// 3. `~/.lmstudio/models` if it exists;
/// 4. `~/.cache/lm-studio/models` (older versions) if it exists;
/// 5. else `~/.lmstudio/models`.
pub fn lmstudio_root(env: Env<'_>, home: Option<&Path>) -> Option<PathBuf> {
    let home = home?;
    let pointed_home = read_text(&home.join(".lmstudio-home-pointer"), 4096)
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.is_absolute());
    let lm_home = pointed_home
        .clone()
        .unwrap_or_else(|| home.join(".lmstudio"));

    let mut settings: Vec<PathBuf> = Vec::new();
    if let Some(d) = env_path(env, "APPDATA", Some(home)) {
        settings.push(d.join("LM Studio").join("settings.json"));
    }
    if let Some(d) = env_path(env, "XDG_CONFIG_HOME", Some(home)) {
        settings.push(d.join("LM Studio").join("settings.json"));
    }
    settings.push(home.join(".config").join("LM Studio").join("settings.json"));
    settings.push(
        home.join("Library")
            .join("Application Support")
            .join("LM Studio")
            .join("settings.json"),
    );
    settings.push(lm_home.join("settings.json"));
    if let Some(folder) = first_json_path(&settings, "downloadsFolder") {
        return Some(folder);
    }
    if let Some(h) = pointed_home {
        return Some(h.join("models"));
    }
    let current = home.join(".lmstudio").join("models");
    let legacy = home.join(".cache").join("lm-studio").join("models");
    Some(if !current.is_dir() && legacy.is_dir() {
        legacy
    } else {
        current
    })
}

/// The first absolute path found as the string `key` of the JSON object in one of `files`
/// (settings files, tried in order; absent or unreadable ones skipped).
fn first_json_path(files: &[PathBuf], key: &str) -> Option<PathBuf> {
    files.iter().find_map(|file| {
        read_text(file, 1 << 20)
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get(key)?.as_str().map(PathBuf::from))
            .filter(|p| p.is_absolute())
    })
}

/// A small text file, or `None` when absent, unreadable, larger than `max` or not UTF-8.
fn read_text(path: &Path, max: u64) -> Option<String> {
    String::from_utf8(read_bounded(path, max).ok()?).ok()
}

/// Reads a whole file of at most `max` bytes; a longer one is an error, and is not read.
pub(crate) fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, more than the {max} accepted"),
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The result of scanning one store: its models and the files behind them.
#[derive(Debug, Clone)]
pub struct SourceScan {
    /// Which store.
    pub kind: SourceKind,
    /// The root that was scanned.
    pub root: PathBuf,
    /// Its models, sorted by id.
    pub models: Vec<ModelInfo>,
    /// Every file counted in some model's size, once: absolute path → bytes. For Hugging
    /// Face the repository's blobs (and any plain files in snapshots), for Ollama the blobs
    /// (complete and partial), for LM Studio the model folder's files.
    pub blobs: BTreeMap<PathBuf, u64>,
    /// Model id → the keys of [`SourceScan::blobs`] it uses.
    pub model_blobs: BTreeMap<String, BTreeSet<PathBuf>>,
}

impl SourceScan {
    fn new(config: &SourceConfig) -> Self {
        SourceScan {
            kind: config.kind,
            root: config.root.clone(),
            models: Vec::new(),
            blobs: BTreeMap::new(),
            model_blobs: BTreeMap::new(),
        }
    }

    fn push(&mut self, draft: Draft) {
        let (info, files) = draft.finish(self.kind);
        let keys = files.keys().cloned().collect();
        self.blobs.extend(files);
        self.model_blobs.insert(info.id.clone(), keys);
        self.models.push(info);
    }

    /// Bytes of all the files of all its models, each file counted once.
    pub fn unique_bytes(&self) -> u64 {
        self.blobs.values().sum()
    }

    /// Bytes that deleting `model_id` would free: its files that no other model of this scan
    /// uses. `None` for an unknown id.
    pub fn bytes_freed_by_deleting(&self, model_id: &str) -> Option<u64> {
        bytes_freed_by_deleting(std::slice::from_ref(self), model_id)
    }
}

/// Notes, on each store model whose largest file is a file another store's model already
/// counts (a Jan model imported from LM Studio's folder, a GPT4All file linked by hand),
/// which model that file is listed under: the same bytes are shown as two stores see them,
/// counted once in disk usage, and said to be one. The first store in `scans` owns a file.
pub fn note_files_listed_elsewhere(scans: &mut [SourceScan]) {
    let mut owner: std::collections::HashMap<PathBuf, String> = std::collections::HashMap::new();
    for scan in scans.iter() {
        for (id, files) in &scan.model_blobs {
            for f in files {
                owner.entry(f.clone()).or_insert_with(|| id.clone());
            }
        }
    }
    for scan in scans.iter_mut() {
        let SourceScan {
            models,
            blobs,
            model_blobs,
            ..
        } = scan;
        for m in models.iter_mut() {
            let largest = model_blobs
                .get(&m.id)
                .and_then(|files| files.iter().max_by_key(|f| blobs.get(*f).copied()));
            if let Some(other) = largest.and_then(|f| owner.get(f)).filter(|o| **o != m.id)
                && m.note.is_none()
            {
                m.note = Some(format!("the same file as {other}, listed there too").into());
            }
        }
    }
}

/// Scans one store into its models (see [`scan_source_detailed`]).
/// The files of a listed model, for a details view: its folder's files, or, for a Hugging
/// Face repo, the files of its snapshots (`<revision>/<file>`, the revision shortened to
/// 8 characters; links to blobs measured as the blob) rather than the cache's internals
/// (`blobs/`, `refs/`). At most [`crate::library::MAX_LISTED_FILES`]; whether there were
/// more.
pub fn model_files(source: &str, path: &Path) -> (Vec<(String, u64)>, bool) {
    // llama.cpp's cache may hold hub repos too (`$LLAMA_CACHE`).
    let hub_repo = source == SourceKind::LlamaCpp.as_str()
        && path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("models--"));
    if let Ok(m) = fs::symlink_metadata(path)
        && m.is_file()
    {
        // A model that is one file (a folder of one's own, GPT4All, llama.cpp's flat cache).
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        return (vec![(name.into_owned(), m.len())], false);
    }
    if source != SourceKind::HuggingFace.as_str() && !hub_repo {
        return crate::library::list_files(path);
    }
    let (files, more) = crate::library::list_files(&path.join("snapshots"));
    let files = files
        .into_iter()
        .map(|(rel, size)| match rel.split_once('/') {
            Some((rev, rest)) if rev.len() > 8 => (format!("{}/{rest}", &rev[..8]), size),
            _ => (rel, size),
        })
        .collect();
    (files, more)
}

pub fn scan_source(
    config: &SourceConfig,
    cache: &mut MetadataCache,
) -> Result<Vec<ModelInfo>, LibraryError> {
    scan_source_detailed(config, cache).map(|s| s.models)
}

/// Scans one store, read-only: its models (sorted by id) with sizes that count each file
/// once, statuses, formats and header metadata (read through `cache`), and which files each
/// model uses. A disabled source or a missing root gives an empty scan; a root that exists
/// but cannot be read (or is not a folder) is an error naming it. Problems inside one model
/// are recorded on that model (status `error`, `error` saying why) and never abort the scan.
pub fn scan_source_detailed(
    config: &SourceConfig,
    cache: &mut MetadataCache,
) -> Result<SourceScan, LibraryError> {
    scan_source_skipping(config, cache, &[])
}

/// The folders a folder of one's own must leave to others when `sources` and the library
/// at `library_root` are listed with it: the other stores' folders and the library, so no
/// model is listed twice when it overlaps them.
pub fn folders_of_others(sources: &[SourceConfig], library_root: &Path) -> Vec<PathBuf> {
    let mut out = vec![library_root.to_path_buf()];
    for s in sources
        .iter()
        .filter(|s| s.enabled && s.kind != SourceKind::Folder)
    {
        out.extend(watch_roots(s));
    }
    out
}

/// [`scan_source_detailed`], a folder of one's own leaving out everything under `skip`
/// (see [`folders_of_others`]); other kinds ignore `skip`.
pub fn scan_source_skipping(
    config: &SourceConfig,
    cache: &mut MetadataCache,
    skip: &[PathBuf],
) -> Result<SourceScan, LibraryError> {
    let mut scan = SourceScan::new(config);
    if !config.enabled {
        return Ok(scan);
    }
    let root = config.root.as_path();
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(LibraryError::io(
                root,
                io::Error::new(io::ErrorKind::NotADirectory, "not a folder"),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(scan),
        Err(e) => return Err(LibraryError::io(root, e)),
    }
    match config.kind {
        SourceKind::HuggingFace => huggingface::scan(root, "huggingface", cache, &mut scan)?,
        SourceKind::Ollama => ollama::scan(root, cache, &mut scan)?,
        SourceKind::LmStudio => lmstudio::scan(root, cache, &mut scan)?,
        SourceKind::Gpt4All => gpt4all::scan(root, cache, &mut scan)?,
        SourceKind::LlamaCpp => llamacpp::scan(root, cache, &mut scan)?,
        SourceKind::Jan => jan::scan(root, cache, &mut scan)?,
        SourceKind::ComfyUi => comfyui::scan(root, cache, &mut scan)?,
        SourceKind::Folder => {
            let rules = tree::TreeRules {
                prefix: "folder",
                exts: &tree::MODEL_EXTS,
                capability: None,
                skip,
            };
            tree::scan_tree(root, &rules, cache, &mut scan);
        }
    }
    scan.models.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(scan)
}

/// Lists a folder's entries (name and type, symlinks not followed), hidden ones skipped,
/// sorted by name.
fn list_dir(dir: &Path) -> io::Result<Vec<(OsString, fs::FileType)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        match entry.file_type() {
            Ok(ft) => out.push((name, ft)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What a walk of a folder found, symlinks not followed.
#[derive(Debug, Default)]
struct Walked {
    /// Regular files: (path relative to the walked folder, absolute path, size, mtime).
    files: Vec<(PathBuf, PathBuf, u64, f64)>,
    /// Symlinks: (relative path, absolute path).
    links: Vec<(PathBuf, PathBuf)>,
    /// Newest mtime of the folder and everything in it (links included, not followed).
    newest: Option<f64>,
    /// What could not be read.
    errors: Vec<String>,
}

/// The deepest a model folder is walked.
const MAX_WALK_DEPTH: usize = 32;

/// Walks `root` with the core's walker ([`crate::library::walk`]): links not followed,
/// hidden entries included (a download's temporary file may be hidden), entries that
/// vanish mid-walk skipped. Files and links come sorted by relative path.
fn walk(root: &Path) -> Walked {
    let mut w = Walked::default();
    let options = WalkOptions {
        max_depth: MAX_WALK_DEPTH,
    };
    let report = crate::library::walk::walk(root, options, &mut |e| {
        w.newest = newest(w.newest, Some(e.mtime));
        match e.kind {
            EntryKind::Link { .. } => {
                let rel = e.rel_path();
                w.links.push((rel.clone(), root.join(rel)));
            }
            EntryKind::File => {
                let rel = e.rel_path();
                w.files.push((rel.clone(), root.join(rel), e.size, e.mtime));
            }
            EntryKind::Dir | EntryKind::Other => {}
        }
    });
    w.newest = newest(w.newest, report.root_mtime);
    w.errors = report.errors;
    w.files.sort_by(|a, b| a.0.cmp(&b.0));
    w.links.sort();
    w
}

fn newest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `p` with `.` and `..` resolved lexically (no file-system access).
fn lexical_normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A weight file of a model: its path inside the model (for grouping and the format), where
/// its bytes are (a blob for Hugging Face), and its size.
#[derive(Debug, Clone)]
struct WeightFile {
    rel: PathBuf,
    real: PathBuf,
    size: u64,
}

/// Whether a file name is a weight file whose header can be read.
fn is_weight_name(name: &Path) -> bool {
    matches!(
        name.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("gguf" | "safetensors")
    )
}

/// Whether a file is a vision projector (`mmproj*.gguf`), not the model itself.
fn is_projector(rel: &Path) -> bool {
    rel.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().starts_with("mmproj"))
}

/// The group a weight file belongs to: its path without the extension and without a shard
/// suffix `-00001-of-00004`, plus the extension. Shards and splits of one weight set share
/// a group; different quantizations or copies do not.
fn weight_group(rel: &Path) -> String {
    let ext = rel
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let stem = rel.with_extension("");
    let stem = stem.to_string_lossy();
    let base = crate::library::shards::split_suffix(&stem).map_or(&*stem, |(base, _, _)| base);
    format!("{base}.{ext}")
}

/// The model's main weight set: the group (see [`weight_group`]) with the most bytes,
/// vision projectors left out unless they are all there is.
fn main_weight_set(files: &[WeightFile]) -> Vec<&WeightFile> {
    let non_proj: Vec<&WeightFile> = files.iter().filter(|f| !is_projector(&f.rel)).collect();
    let pool: Vec<&WeightFile> = if non_proj.is_empty() {
        files.iter().collect()
    } else {
        non_proj
    };
    let mut groups: BTreeMap<String, (u64, Vec<&WeightFile>)> = BTreeMap::new();
    for f in pool {
        let g = groups.entry(weight_group(&f.rel)).or_default();
        g.0 = g.0.saturating_add(f.size);
        g.1.push(f);
    }
    groups
        .into_iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then_with(|| b.0.cmp(&a.0)))
        .map(|(_, (_, files))| files)
        .unwrap_or_default()
}

/// The metadata of a weight set, each file's header read through `cache`. `None` when no
/// header could be read; when only some could, the parameter count is left out.
fn weight_set_metadata(files: &[&WeightFile], cache: &mut MetadataCache) -> Option<ModelMetadata> {
    let parts: Vec<Option<Arc<ModelMetadata>>> =
        files.iter().map(|f| cache.get_or_read(&f.real)).collect();
    let ok: Vec<&ModelMetadata> = parts.iter().flatten().map(|m| &**m).collect();
    if ok.is_empty() {
        return None;
    }
    let mut merged = merge_parts(ok.iter().copied());
    if ok.len() < parts.len() {
        merged.parameter_count = None;
    }
    Some(merged)
}

/// Capabilities an architecture name suggests: `embedding` for BERT-like encoders, nothing
/// for vision encoders (CLIP projectors), else `text-generation`.
fn arch_capabilities(arch: &str) -> Vec<String> {
    let a = arch.to_ascii_lowercase();
    if a.contains("bert") || a == "t5encoder" {
        vec!["embedding".into()]
    } else if a.contains("clip") {
        Vec::new()
    } else {
        vec!["text-generation".into()]
    }
}

fn push_unique(caps: &mut Vec<String>, cap: &str) {
    if !caps.iter().any(|c| c == cap) {
        caps.push(cap.to_string());
    }
}

/// File-name suffixes of a download in progress that many tools use (browsers' and
/// download tools' `.part`, `.partial`, `.download`, `.crdownload`; `.incomplete`).
const PARTIAL_SUFFIXES: [&str; 5] = [
    ".part",
    ".partial",
    ".download",
    ".crdownload",
    ".incomplete",
];

/// `name` without its download suffix — one of [`PARTIAL_SUFFIXES`] or of `more` (lower
/// case) — when it has one.
fn strip_partial_suffix<'a>(name: &'a str, more: &[&str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    PARTIAL_SUFFIXES
        .iter()
        .chain(more)
        .find(|s| lower.ends_with(*s))
        .map(|s| &name[..name.len() - s.len()])
}

/// A model being assembled by a store scanner.
#[derive(Debug)]
struct Draft {
    id: String,
    name: String,
    path: PathBuf,
    files: BTreeMap<PathBuf, u64>,
    newest: Option<f64>,
    errors: Vec<String>,
    partial: bool,
    empty_is_error: bool,
    /// Known to the store but with nothing on disk (an LM Studio hub model): `available`.
    available: bool,
    /// A note shown with the model (besides a split's missing parts).
    note: Option<String>,
    capabilities: Vec<String>,
    format: Option<String>,
    metadata: Option<ModelMetadata>,
}

impl Draft {
    fn new(id: String, name: String, path: PathBuf) -> Self {
        Draft {
            id,
            name,
            path,
            files: BTreeMap::new(),
            newest: None,
            errors: Vec::new(),
            partial: false,
            empty_is_error: true,
            available: false,
            note: None,
            capabilities: Vec::new(),
            format: None,
            metadata: None,
        }
    }

    fn count(&mut self, path: PathBuf, size: u64, mtime: Option<f64>) {
        self.newest = newest(self.newest, mtime);
        self.files.insert(path, size);
    }

    fn error(&mut self, e: impl Into<String>) {
        self.errors.push(e.into());
    }

    /// The header metadata of weight set `set` (see [`weight_set_metadata`]) and the
    /// capabilities its architecture suggests.
    fn describe_weights(&mut self, set: &[&WeightFile], cache: &mut MetadataCache) {
        self.metadata = weight_set_metadata(set, cache);
        if let Some(arch) = self
            .metadata
            .as_ref()
            .and_then(|m| m.architecture.as_deref())
        {
            self.capabilities = arch_capabilities(arch);
        }
    }

    fn fill_metadata(&mut self, extra: &ModelMetadata) {
        if *extra == ModelMetadata::default() {
            return;
        }
        match &mut self.metadata {
            Some(m) => fill_missing(m, extra),
            None => self.metadata = Some(extra.clone()),
        }
    }

    /// The info and the files counted. Status: `error` when anything was wrong, else
    /// `partial` when an incomplete download is present or nothing complete is, else
    /// `downloaded`.
    fn finish(self, kind: SourceKind) -> (ModelInfo, BTreeMap<PathBuf, u64>) {
        let mut errors = self.errors;
        let nothing = self.files.is_empty() && !self.partial && errors.is_empty();
        if nothing && self.empty_is_error && !self.available {
            errors.push("nothing downloaded: no file found".into());
        }
        // Parts of a split model that are not there (names are kept by LM Studio; blobs
        // named by hash never match).
        let mut shards = crate::library::shards::Shards::default();
        for path in self.files.keys() {
            shards.note(path.strip_prefix(&self.path).unwrap_or(path));
        }
        let shards_missing = shards.note_text();
        let status = if !errors.is_empty() {
            ModelStatus::Error
        } else if self.partial || shards_missing.is_some() {
            ModelStatus::Partial
        } else if nothing && self.available {
            ModelStatus::Available
        } else {
            ModelStatus::Downloaded
        };
        let location = Location::of(&self.path, &self.id);
        let info = ModelInfo {
            id: self.id,
            name: self.name.into(),
            provider: Sym::new(kind.as_str()),
            status,
            capabilities: self.capabilities.iter().map(|c| Sym::new(c)).collect(),
            format: self.format.as_deref().map(Sym::new),
            description: None,
            license: None,
            registered: false,
            location,
            figures: Figures::default()
                .with_size(Some(self.files.values().sum()))
                .with_files(Some(self.files.len() as u64))
                .with_modified(self.newest),
            error: (!errors.is_empty()).then(|| errors.join("; ").into()),
            source: Sym::new(kind.as_str()),
            metadata: self.metadata.map(Arc::new),
            main_file: None,
            note: shards_missing
                .filter(|_| status == ModelStatus::Partial)
                .or(self.note)
                .map(String::into_boxed_str),
        };
        (info, self.files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_suffixes_are_grouped() {
        assert_eq!(
            weight_group(Path::new("model-00001-of-00004.safetensors")),
            "model.safetensors"
        );
        assert_eq!(
            weight_group(Path::new("Q4/x-Q4_K_M-00002-of-00003.gguf")),
            "Q4/x-Q4_K_M.gguf"
        );
        assert_eq!(
            weight_group(Path::new("model.fp16.safetensors")),
            "model.fp16.safetensors"
        );
        assert_eq!(weight_group(Path::new("a-of-b.gguf")), "a-of-b.gguf");
    }

    #[test]
    fn normalizes_lexically() {
        assert_eq!(
            lexical_normalize(Path::new("/s/models--a/snapshots/r/../../blobs/x")),
            PathBuf::from("/s/models--a/blobs/x")
        );
        assert_eq!(
            lexical_normalize(Path::new("a/../../b")),
            PathBuf::from("../b")
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in SourceKind::ALL {
            assert_eq!(k.as_str().parse::<SourceKind>().unwrap(), k);
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert!("nope".parse::<SourceKind>().is_err());
    }
}
