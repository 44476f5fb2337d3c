//! Importing a model file or folder from elsewhere into `models/<id>/`, with a registry
//! entry and its format detected from the file's header — so that a kill at any instant
//! leaves the data whole at the source or in the library (or both), never nowhere.
//!
//! The steps, each recorded in a journal (`.cache/imports/<id>.json`, see [`journal`])
//! that the importing process keeps locked:
//!
//! 1. **plan** — the source's files with their identity (device, inode, size, mtime);
//! 2. **stage** — the files are placed in `.cache/imports/<id>/` (copied, hard-linked or
//!    symlinked; a *move* is a hard link on the same file system, else a copy: the source
//!    is never renamed away) and synced;
//! 3. **in place** — one rename of the staging folder to `models/<id>`;
//! 4. **registered** — the registry entry, written atomically under the registry lock;
//! 5. for a move, only now the source names go, each only if it is still the file that
//!    was imported; then the journal goes.
//!
//! A later start ([`recover`]) finds journals whose process died (their lock is free):
//! an import that was fully staged or further is completed, an earlier one is discarded
//! (its source is untouched). While a journal exists the listing shows the model as
//! `partial` with the reason ([`pending`]). Every write goes through the library's write
//! gate, never through a symbolic link; the source is only read, linked to, or — for a
//! move, after step 4 — unlinked.

mod journal;
mod place;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::library::crashpoint;
use crate::library::error::{LibraryError, Result};
use crate::library::fs_safe::SafeDir;
use crate::library::layout::{Library, LibraryWrites, MAX_ID_LEN, validate_id};
use crate::library::registry::{update_registry, upsert_entry};
use crate::library::scan::guess_format;

use journal::{Begun, Journal, Step};

pub use journal::{pending, recover};
use place::{Plan, plan_source, remove_sources, stage};

pub use crate::library::layout::IMPORTS_DIR;

/// How the files get into the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// Copy the bytes; the source stays.
    #[default]
    Copy,
    /// Move the files in: hard links on the same file system, else copies; the source
    /// names are removed only once the model is in place and registered.
    Move,
    /// Hard links: no bytes copied; the source must be on the same file system.
    Hardlink,
    /// Symbolic links to the source files (folders are made for real): no bytes copied,
    /// the source stays where it is and must stay there. The scanner measures a link to a
    /// regular file through it (it never descends a linked folder).
    Symlink,
}

impl std::str::FromStr for ImportMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "copy" => Ok(ImportMode::Copy),
            "move" => Ok(ImportMode::Move),
            "hardlink" => Ok(ImportMode::Hardlink),
            "symlink" => Ok(ImportMode::Symlink),
            _ => Err(format!(
                "unknown mode {s:?}; expected copy, move, hardlink or symlink"
            )),
        }
    }
}

/// What to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    /// A model file or a folder of files.
    pub source: PathBuf,
    /// The id to give it; derived from the source's name when `None`.
    pub id: Option<String>,
    /// Copy, move, hardlink or symlink.
    pub mode: ImportMode,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportOutcome {
    /// The new model's id.
    pub id: String,
    /// Its folder.
    pub path: PathBuf,
    /// Files imported.
    pub files: u64,
    /// Bytes imported.
    pub bytes: u64,
    /// Detected format.
    pub format: Option<String>,
    /// What the user should know that is not a failure (a moved source file that changed
    /// meanwhile and was therefore left where it was, say).
    pub notes: Vec<String>,
}

/// An id made from a file or folder name: invalid characters become `-`, no leading `.`,
/// at most 128 characters; `model` when nothing is left.
pub fn id_from_name(name: &str) -> String {
    let stem = name.strip_suffix('/').unwrap_or(name);
    let mut id: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while id.starts_with('.') {
        id.remove(0);
    }
    id.truncate(MAX_ID_LEN);
    if id.is_empty() { "model".into() } else { id }
}

/// The format a file's first bytes say, else its extension.
pub fn detect_format(path: &Path) -> Option<String> {
    let mut head = [0u8; 16];
    let n = fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..n];
    let by_magic = if head.starts_with(b"GGUF") {
        Some("gguf")
    } else if head.starts_with(b"lmgg") || head.starts_with(b"ggjt") || head.starts_with(b"ggml") {
        Some("ggml")
    } else if head.starts_with(b"PK\x03\x04") {
        Some("pytorch")
    } else if n >= 9 && head[8] == b'{' {
        // safetensors: u64 little-endian header length, then a JSON object.
        let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        (len > 1 && len < 100_000_000).then_some("safetensors")
    } else {
        None
    };
    by_magic.or_else(|| guess_format(path)).map(str::to_string)
}

fn refused(reason: impl Into<String>) -> LibraryError {
    LibraryError::ImportRefused {
        reason: reason.into(),
    }
}

/// What kind of thing a path is, in words, for refusals.
fn kind_in_words(meta: &fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let ft = meta.file_type();
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_fifo() {
            return "a named pipe";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    let _ = meta;
    "not a regular file"
}

/// Imports `req.source` as a new model. The id must be free (no folder, no registry entry,
/// no other import of it running).
pub fn import_model(library: &Library, req: &ImportRequest) -> Result<ImportOutcome> {
    let source_meta =
        fs::symlink_metadata(&req.source).map_err(|e| LibraryError::io(&req.source, e))?;
    let shown = req.source.display();
    if source_meta.file_type().is_symlink() {
        return Err(refused(format!(
            "{shown} is a symbolic link; import its target instead"
        )));
    }
    if !source_meta.is_file() && !source_meta.is_dir() {
        return Err(refused(format!(
            "{shown} is {}, not a model file or folder",
            kind_in_words(&source_meta)
        )));
    }
    let source = fs::canonicalize(&req.source).map_err(|e| LibraryError::io(&req.source, e))?;
    if let Ok(root) = fs::canonicalize(library.root())
        && source.starts_with(&root)
    {
        return Err(refused(format!(
            "{} is already inside the library",
            source.display()
        )));
    }
    let id = match &req.id {
        Some(id) => id.clone(),
        None => id_from_name(
            &source
                .file_stem()
                .filter(|_| source_meta.is_file())
                .or(source.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    };
    validate_id(&id)?;
    let writes = library.open_writes()?;
    let models = writes.models()?;
    check_id_free(library, &models, &id)?;
    let plan = plan_source(&source, &id, req.mode, source_meta.is_file())?;
    let imports = writes.cache_sub(IMPORTS_DIR)?;
    let journal = begin(library, &writes, &imports, &models, &plan)?;
    crashpoint::hit("import.planned");
    run(library, &imports, &models, journal, &plan)
}

/// How long an import waits for another process holding its id's journal (one that is
/// recovering a dead import of that id finishes within it; a live import may not).
const JOURNAL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes the id's journal. A journal already there is another import's: one that died is
/// recovered first (completed or discarded); one whose lock is held — a live import, or
/// another process recovering it — is waited for, a while.
fn begin(
    library: &Library,
    writes: &LibraryWrites,
    imports: &SafeDir,
    models: &SafeDir,
    plan: &Plan,
) -> Result<Journal> {
    let id = &plan.id;
    let deadline = std::time::Instant::now() + JOURNAL_WAIT;
    loop {
        if let Begun::Started(journal) = Journal::begin(imports, plan)? {
            return Ok(journal);
        }
        if journal::recover_one(library, writes, imports, id)?.is_live() {
            if std::time::Instant::now() > deadline {
                return Err(refused(format!(
                    "another import of {id:?} is running; wait for it or choose another id"
                )));
            }
            // Polling a lock held by another process: nothing can wake us.
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        // Recovered: the id may be taken now (a completed import).
        check_id_free(library, models, id)?;
    }
}

/// The steps after the plan, each recorded in the journal. A failure before the model is
/// in place removes the staging folder and the journal (the source was never touched).
fn run(
    library: &Library,
    imports: &SafeDir,
    models: &SafeDir,
    mut journal: Journal,
    plan: &Plan,
) -> Result<ImportOutcome> {
    let id = &plan.id;
    let placed = stage(plan, imports).and_then(|()| {
        journal.record(Step::Staged)?;
        crashpoint::hit("import.staged");
        commit(imports, models, id)
    });
    if let Err(err) = placed {
        let _ = imports.remove_tree(id);
        journal.finish();
        return Err(err);
    }
    journal.record(Step::InPlace)?;
    crashpoint::hit("import.in_place");
    if let Err(err) = register(library, plan) {
        // Back out, so the library holds no half-imported model; the source is whole.
        if models.rename_noreplace(id, imports, id).is_ok() {
            let _ = imports.remove_tree(id);
            journal.finish();
        }
        return Err(err);
    }
    journal.record(Step::Registered)?;
    crashpoint::hit("import.registered");
    let notes = match plan.mode {
        ImportMode::Move => remove_sources(plan, models),
        _ => Vec::new(),
    };
    journal.finish();
    Ok(ImportOutcome {
        id: id.clone(),
        path: models.join(id),
        files: plan.files.len() as u64,
        bytes: plan.files.iter().map(|f| f.size).sum(),
        format: plan.format.clone(),
        notes,
    })
}

/// Refuses an id that has a folder (or anything) in `models/` or a registry entry.
fn check_id_free(library: &Library, models: &SafeDir, id: &str) -> Result<()> {
    if models
        .entry(id)
        .map_err(|e| LibraryError::io(models.join(id), e))?
        .is_some()
    {
        return Err(refused(format!(
            "{} already exists; choose another id",
            models.join(id).display()
        )));
    }
    if crate::library::Registry::load(library)?.get(id).is_some() {
        return Err(refused(format!(
            "the registry already has a model {id:?}; choose another id"
        )));
    }
    Ok(())
}

/// Step 3: the staged folder becomes `models/<id>` in one rename (never replacing anything).
fn commit(imports: &SafeDir, models: &SafeDir, id: &str) -> Result<()> {
    imports
        .rename_noreplace(id, models, id)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => refused(format!(
                "{} appeared while importing; choose another id",
                models.join(id).display()
            )),
            _ => LibraryError::io(models.join(id), e),
        })?;
    models
        .sync()
        .map_err(|e| LibraryError::io(models.path(), e))
}

/// Step 4: the registry entry (keys of an existing entry with this id are kept).
fn register(library: &Library, plan: &Plan) -> Result<()> {
    let mut entry = Map::new();
    entry.insert("id".into(), json!(plan.id));
    entry.insert("name".into(), json!(plan.id));
    entry.insert("provider".into(), json!("local"));
    if let Some(f) = &plan.format {
        entry.insert("format".into(), json!(f));
    }
    entry.insert(
        "description".into(),
        json!(format!("Imported from {}", plan.source.display())),
    );
    entry.insert(
        "files".into(),
        Value::Array(
            plan.files
                .iter()
                .map(|f| json!({"path": f.path, "size": f.size}))
                .collect(),
        ),
    );
    update_registry(library, |doc| upsert_entry(doc, entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_names() {
        assert_eq!(id_from_name("Llama 3 8B (Q4)"), "Llama-3-8B--Q4-");
        assert_eq!(id_from_name("..hidden"), "hidden");
        assert_eq!(id_from_name(""), "model");
        assert_eq!(id_from_name(&"x".repeat(300)).len(), 128);
        validate_id(&id_from_name("ünïcode name")).unwrap();
    }
}
