//! `model_registry.json` version 1 (SPEC §2): reading it with its defaults and per-entry
//! errors, and rewriting it atomically under a lock file while keeping fields it does not know.
//! Touches only the registry file, its temp files and `.cache/registry.lock`, each through
//! the library's write gate (never through a symbolic link). A UTF-8 byte-order mark (as
//! Windows Notepad writes) is accepted on reading and not written back.

use crate::library::sym::Sym;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::library::error::{LibraryError, Result};
use crate::library::fs_safe::SafeDir;
use crate::library::layout::{
    BUILTIN_CATALOG, Library, LibraryWrites, REGISTRY_FILE, check_relative_path,
    default_library_dir, validate_id,
};

/// The only registry version this app reads and writes.
pub const REGISTRY_VERSION: u64 = 1;
/// How long a writer waits for another process to release the registry lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// One file of a registry entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegistryFileSpec {
    /// Path relative to the model folder (checked: not absolute, no `..`).
    pub path: String,
    /// Declared size in bytes.
    pub size: Option<u64>,
    /// Where to download it from and what it must hash to, when declared (boxed: a registry
    /// kept for listings drops them, and inline they cost every file 48 bytes).
    fetch: Option<Box<Fetch>>,
}

/// What only a download needs of a declared file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Fetch {
    url: Option<String>,
    sha256: Option<String>,
}

impl RegistryFileSpec {
    /// A declared file with no url or hash (as listings keep it).
    pub fn declared(path: String, size: Option<u64>) -> RegistryFileSpec {
        RegistryFileSpec {
            path,
            size,
            fetch: None,
        }
    }

    /// Where to download it from.
    pub fn url(&self) -> Option<&str> {
        self.fetch.as_ref()?.url.as_deref()
    }

    /// Declared sha256, lower-case hex.
    pub fn sha256(&self) -> Option<&str> {
        self.fetch.as_ref()?.sha256.as_deref()
    }
}

/// One model of the registry, with SPEC §2 defaults applied by the scanner.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RegistryEntry {
    /// A valid model id.
    pub id: String,
    /// Display name, if given.
    pub name: Option<String>,
    /// Provider, if given.
    pub provider: Option<Sym>,
    /// Capabilities (default empty).
    pub capabilities: Vec<Sym>,
    /// File format, if given.
    pub format: Option<Sym>,
    /// Description, if given.
    pub description: Option<String>,
    /// License, if given.
    pub license: Option<String>,
    /// Declared files (the valid ones).
    pub files: Vec<RegistryFileSpec>,
    /// What is wrong with this entry (wrong types, bad file paths); the entry still lists,
    /// with status `error`.
    pub problem: Option<String>,
}

/// A registry entry that could not be used at all (no valid id, or a duplicate).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryProblem {
    /// Index in the `models` array.
    pub index: usize,
    /// The entry's id, when it had a string id.
    pub id: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.id {
            Some(id) => write!(f, "models[{}] (id {:?}): {}", self.index, id, self.message),
            None => write!(f, "models[{}]: {}", self.index, self.message),
        }
    }
}

/// A parsed registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    /// Usable entries, in file order, ids unique.
    pub entries: Vec<RegistryEntry>,
    /// Entries that were skipped, with the reason.
    pub problems: Vec<EntryProblem>,
    /// Position of each id in `entries`, by a 64-bit hash of the id (so ids are not stored
    /// twice); a lookup checks the id found there.
    index: HashMap<u64, usize>,
    /// Ids whose hash an earlier id already has (practically never), by id.
    clashes: HashMap<String, usize>,
}

/// The index key of an id (SipHash with fixed keys: the same in every process).
pub(crate) fn id_key(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl Registry {
    /// Reads the library's registry. An absent file, or one that is empty or only
    /// whitespace, is an empty catalog. Invalid JSON or a wrong shape is an error naming the
    /// file (and the line for syntax errors).
    pub fn load(library: &Library) -> Result<Registry> {
        let path = library.registry_path();
        match fs::read(&path) {
            Ok(bytes) => Registry::parse(&path, &bytes),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Registry::default()),
            Err(err) => Err(LibraryError::io(path, err)),
        }
    }

    /// Parses registry bytes; `path` is only used in messages.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Registry> {
        let bytes = strip_bom(bytes);
        // Fast path: a well-formed registry deserializes straight into typed entries
        // (several times faster than a JSON tree at 100 000 entries). Anything it cannot
        // take — wrong types, an odd shape — goes the slow path, which reports each problem.
        if let Ok(doc) = serde_json::from_slice::<FastDoc>(bytes)
            && doc.version.is_none_or(|v| v == REGISTRY_VERSION)
        {
            let mut registry = Registry::default();
            for (index, raw) in doc.models.unwrap_or_default().into_iter().enumerate() {
                registry.add(index, raw.into_entry());
            }
            return Ok(registry);
        }
        let Some(doc) = parse_document(path, bytes)? else {
            return Ok(Registry::default());
        };
        let models = match doc.get("models") {
            None | Some(Value::Null) => return Ok(Registry::default()),
            Some(Value::Array(models)) => models,
            Some(_) => {
                return Err(LibraryError::RegistryShape {
                    path: path.to_path_buf(),
                    reason: "\"models\" must be an array".into(),
                });
            }
        };
        let mut registry = Registry::default();
        for (index, value) in models.iter().enumerate() {
            registry.add(index, parse_entry(value));
        }
        Ok(registry)
    }

    /// Adds a parsed entry (or its problem); a repeated id is a problem.
    fn add(&mut self, index: usize, parsed: Result<RegistryEntry, EntryProblem>) {
        match parsed {
            Ok(entry) if self.position(&entry.id).is_none() => {
                let at = self.entries.len();
                match self.index.entry(id_key(&entry.id)) {
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(at);
                    }
                    std::collections::hash_map::Entry::Occupied(_) => {
                        self.clashes.insert(entry.id.clone(), at);
                    }
                }
                self.entries.push(entry);
            }
            Ok(entry) => self.problems.push(EntryProblem {
                index,
                id: Some(entry.id),
                message: "duplicate id; the first entry with this id is used".into(),
            }),
            Err(problem) => self.problems.push(EntryProblem { index, ..problem }),
        }
    }

    /// Position of the entry with this id.
    pub fn position(&self, id: &str) -> Option<usize> {
        match self.index.get(&id_key(id)) {
            Some(&i) if self.entries[i].id == id => Some(i),
            Some(_) => self.clashes.get(id).copied(),
            None => None,
        }
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&RegistryEntry> {
        self.position(id).map(|i| &self.entries[i])
    }
}

/// Parses the top level: `None` for an empty file; an object with `version` 1 (or no
/// `version`) otherwise.
fn parse_document(path: &Path, bytes: &[u8]) -> Result<Option<Map<String, Value>>> {
    let bytes = strip_bom(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| LibraryError::RegistrySyntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    let shape = |reason: String| LibraryError::RegistryShape {
        path: path.to_path_buf(),
        reason,
    };
    let Value::Object(doc) = value else {
        return Err(shape("the registry must be a JSON object".into()));
    };
    match doc.get("version") {
        None => {}
        Some(v) if v.as_u64() == Some(REGISTRY_VERSION) => {}
        Some(v) => {
            return Err(shape(format!(
                "unsupported registry version {v}; this app reads version {REGISTRY_VERSION}"
            )));
        }
    }
    Ok(Some(doc))
}

/// The bytes after a UTF-8 byte-order mark, if there is one (Windows Notepad writes it).
fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// serde_json appends " at line L column C"; the error variant carries those separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn parse_entry(value: &Value) -> Result<RegistryEntry, EntryProblem> {
    let fail = |id: Option<String>, message: String| EntryProblem {
        index: 0,
        id,
        message,
    };
    let Value::Object(obj) = value else {
        return Err(fail(None, "entry is not a JSON object".into()));
    };
    let id = match obj.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(_) => return Err(fail(None, "\"id\" must be a string".into())),
        None => return Err(fail(None, "entry has no \"id\"".into())),
    };
    validate_id(&id).map_err(|e| fail(Some(id.clone()), e.to_string()))?;

    let mut problems: Vec<String> = Vec::new();
    let mut text = |key: &str| -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                problems.push(format!("\"{key}\" must be a string"));
                None
            }
        }
    };
    let name = text("name");
    let provider = text("provider");
    let format = text("format");
    let description = text("description");
    let license = text("license");

    let capabilities = match obj.get("capabilities") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|v| v.as_str().map(Sym::new))
            .collect(),
        Some(_) => {
            problems.push("\"capabilities\" must be an array of strings".into());
            Vec::new()
        }
    };

    let mut files = Vec::new();
    match obj.get("files") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match parse_file(item) {
                    Ok(spec) => files.push(spec),
                    Err(msg) => problems.push(format!("files[{i}]: {msg}")),
                }
            }
        }
        Some(_) => problems.push("\"files\" must be an array".into()),
    }

    Ok(RegistryEntry {
        id,
        name,
        provider: provider.map(Sym::from),
        capabilities,
        format: format.map(Sym::from),
        description,
        license,
        files,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
    })
}

fn parse_file(value: &Value) -> Result<RegistryFileSpec, String> {
    let Value::Object(obj) = value else {
        return Err("must be an object".into());
    };
    let path = match obj.get("path") {
        Some(Value::String(p)) => p.clone(),
        Some(_) => return Err("\"path\" must be a string".into()),
        None => return Err("has no \"path\"".into()),
    };
    let url = match obj.get("url") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u.clone()),
        Some(_) => return Err("\"url\" must be a string".into()),
    };
    let size = match obj.get("size") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| "\"size\" must be a non-negative integer".to_string())?,
        ),
    };
    let sha256 = match obj.get("sha256") {
        None | Some(Value::Null) => None,
        Some(Value::String(h)) => Some(h.clone()),
        Some(_) => return Err("\"sha256\" must be 64 hex digits".into()),
    };
    checked_file(path, url, size, sha256)
}

/// The checks every file spec passes, whichever path parsed it.
fn checked_file(
    path: String,
    url: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
) -> Result<RegistryFileSpec, String> {
    check_relative_path(&path).map_err(|why| format!("path {path:?} {why}"))?;
    let sha256 = match sha256 {
        None => None,
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(h.to_ascii_lowercase())
        }
        Some(_) => return Err("\"sha256\" must be 64 hex digits".into()),
    };
    let fetch = (url.is_some() || sha256.is_some()).then(|| Box::new(Fetch { url, sha256 }));
    Ok(RegistryFileSpec { path, size, fetch })
}

/// The registry as the fast path reads it: only typed fields, unknown ones skipped.
#[derive(serde::Deserialize)]
struct FastDoc {
    version: Option<u64>,
    models: Option<Vec<FastEntry>>,
}

#[derive(serde::Deserialize)]
struct FastEntry {
    id: String,
    name: Option<String>,
    provider: Option<Sym>,
    capabilities: Option<Vec<Sym>>,
    format: Option<Sym>,
    description: Option<String>,
    license: Option<String>,
    files: Option<Vec<FastFile>>,
}

#[derive(serde::Deserialize)]
struct FastFile {
    path: String,
    url: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
}

impl FastEntry {
    fn into_entry(self) -> Result<RegistryEntry, EntryProblem> {
        if let Err(e) = validate_id(&self.id) {
            return Err(EntryProblem {
                index: 0,
                id: Some(self.id),
                message: e.to_string(),
            });
        }
        let mut problems = Vec::new();
        let mut files = Vec::new();
        for (i, f) in self.files.unwrap_or_default().into_iter().enumerate() {
            match checked_file(f.path, f.url, f.size, f.sha256) {
                Ok(spec) => files.push(spec),
                Err(msg) => problems.push(format!("files[{i}]: {msg}")),
            }
        }
        Ok(RegistryEntry {
            id: self.id,
            name: self.name,
            provider: self.provider,
            capabilities: self.capabilities.unwrap_or_default(),
            format: self.format,
            description: self.description,
            license: self.license,
            files,
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        })
    }
}

/// Changes the registry under the lock: re-reads the file (absent or empty: a new version 1
/// document), lets `change` edit the JSON document, and writes it back atomically. Keys the
/// app does not know, at any level, are kept as they were. If the current file is invalid,
/// or `change` fails, nothing is written.
pub fn update_registry<T>(
    library: &Library,
    change: impl FnOnce(&mut Map<String, Value>) -> Result<T>,
) -> Result<T> {
    let writes = library.open_writes()?;
    let _lock = RegistryLock::acquire(&writes)?;
    remove_dead_temp_files(writes.root());
    let path = library.registry_path();
    let bytes = match writes.root().open_read(REGISTRY_FILE) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(|e| LibraryError::io(&path, e))?;
            bytes
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(LibraryError::io(path, err)),
    };
    let mut doc = parse_document(&path, &bytes)?.unwrap_or_default();
    doc.entry("version")
        .or_insert(Value::from(REGISTRY_VERSION));
    if !doc.get("models").is_some_and(Value::is_array) {
        if doc.get("models").is_some_and(|m| !m.is_null()) {
            return Err(LibraryError::RegistryShape {
                path,
                reason: "\"models\" must be an array".into(),
            });
        }
        doc.insert("models".into(), Value::Array(Vec::new()));
    }
    let out = change(&mut doc)?;
    let mut text = serde_json::to_vec_pretty(&Value::Object(doc)).expect("JSON values serialize");
    text.push(b'\n');
    writes
        .root()
        .write_atomic(REGISTRY_FILE, &text)
        .map_err(|e| LibraryError::io(&path, e))?;
    Ok(out)
}

/// Removes registry temp files (`.model_registry.json.tmp-*`) that a killed writer left.
/// Call with the registry lock held: every writer holds it while its temp file exists, so
/// any such file found then belongs to a writer that died.
fn remove_dead_temp_files(root: &SafeDir) {
    let prefix = format!(".{REGISTRY_FILE}.tmp-");
    for (name, kind) in root.list().unwrap_or_default() {
        if kind == crate::library::fs_safe::Kind::File
            && name.to_string_lossy().starts_with(&prefix)
        {
            let _ = root.remove_file(&name);
        }
    }
}

/// Inserts or updates the entry with `entry["id"]` in a registry document: keys of `entry`
/// replace those of an existing entry with the same id, other keys of that entry stay.
pub fn upsert_entry(doc: &mut Map<String, Value>, entry: Map<String, Value>) -> Result<()> {
    let id = entry
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| LibraryError::InvalidId {
            id: String::new(),
            reason: "an entry needs a string \"id\"",
        })?
        .to_string();
    validate_id(&id)?;
    let models = doc
        .entry("models")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .expect("update_registry guarantees an array");
    match models
        .iter_mut()
        .find(|m| m.get("id").and_then(Value::as_str) == Some(id.as_str()))
        .and_then(Value::as_object_mut)
    {
        Some(existing) => existing.extend(entry),
        None => models.push(Value::Object(entry)),
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`SafeDir::write_atomic`]): the folder is
/// opened as named, the file is never written through a link. For files outside a library
/// (fixtures); a library's own files go through [`Library::open_writes`].
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        LibraryError::io(
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "names no file"),
        )
    })?;
    SafeDir::open_root(dir)
        .and_then(|d| d.write_atomic(name, bytes))
        .map_err(|e| LibraryError::io(path, e))
}

/// The registry lock's file name under `.cache/`.
pub const LOCK_FILE: &str = "registry.lock";

/// An exclusive lock on `.cache/registry.lock`, held until dropped. Serializes registry
/// writers across threads and processes.
pub struct RegistryLock {
    _file: File,
}

impl RegistryLock {
    /// Takes the lock, waiting up to [`LOCK_TIMEOUT`] for another holder. The lock file is
    /// opened without following a link.
    pub fn acquire(writes: &LibraryWrites) -> Result<RegistryLock> {
        let dir = writes.cache()?;
        let path: PathBuf = dir.join(LOCK_FILE);
        let file: File = dir
            .open_rw(LOCK_FILE)
            .map_err(|e| LibraryError::io(&path, e))?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(RegistryLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    // Polling a lock held by another process: nothing to wake us.
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(LibraryError::LockTimeout { path });
                }
                Err(fs::TryLockError::Error(err)) => return Err(LibraryError::io(path, err)),
            }
        }
    }
}

/// Creates the library folder and `models/` if missing, and writes the built-in catalog
/// as the registry when the library has no registry yet. An existing registry is never
/// touched. Used for the default library only: a folder the user names must exist.
pub fn init_default(library: &Library) -> Result<()> {
    fs::create_dir_all(library.root()).map_err(|e| LibraryError::io(library.root(), e))?;
    if library.writes_off().is_some() {
        // An existing library with a linked folder: it opens read-only, and says why.
        return Ok(());
    }
    let writes = library.open_writes()?;
    writes.models()?;
    let _lock = RegistryLock::acquire(&writes)?;
    if writes
        .root()
        .entry(REGISTRY_FILE)
        .map_err(|e| LibraryError::io(library.registry_path(), e))?
        .is_none()
    {
        writes
            .root()
            .write_atomic(REGISTRY_FILE, BUILTIN_CATALOG.as_bytes())
            .map_err(|e| LibraryError::io(library.registry_path(), e))?;
    }
    Ok(())
}

/// Resolves the library to use: `--library DIR` (which must exist), else the default
/// library, created with the built-in catalog if it is new.
pub fn resolve_library(flag: Option<PathBuf>) -> Result<Library> {
    match flag {
        Some(dir) => {
            let library = Library::new(dir);
            library.check_reachable()?;
            Ok(library)
        }
        None => {
            let dir = default_library_dir().ok_or_else(|| LibraryError::LibraryUnreachable {
                path: PathBuf::from("~/.local/share/model-library"),
                reason: "no data directory on this system; set MODEL_LIBRARY_DIR or pass --library"
                    .into(),
            })?;
            let library = Library::new(dir);
            init_default(&library)?;
            Ok(library)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> RegistryEntry {
        RegistryEntry {
            id: id.into(),
            ..RegistryEntry::default()
        }
    }

    #[test]
    fn ids_whose_hashes_clash_are_still_found_and_duplicates_still_refused() {
        let mut r = Registry::default();
        r.add(0, Ok(entry("a")));
        // Make "b" clash with "a": its key is taken by a's entry.
        r.index.insert(id_key("b"), 0);
        r.add(1, Ok(entry("b")));
        r.add(2, Ok(entry("b")));
        r.add(3, Ok(entry("a")));
        assert_eq!((r.position("a"), r.position("b")), (Some(0), Some(1)));
        assert_eq!(r.get("b").unwrap().id, "b");
        assert_eq!(r.position("c"), None);
        assert_eq!(r.entries.len(), 2);
        let dups: Vec<usize> = r.problems.iter().map(|p| p.index).collect();
        assert_eq!(dups, [2, 3], "both repeats are reported as duplicates");
    }
}
