//! Importing a model file or folder from elsewhere into `models/<id>/`, with a registry
//! entry (atomic write under the lock, unknown fields kept) and its format detected from the
//! file's header. The model is assembled in `.cache/import-*` and renamed into place, so a
//! half-finished import never shows as a model; the source is only read (copy, hardlink) or
//! renamed (move). Writes only under the library.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::library::error::{LibraryError, Result};
use crate::library::layout::{Library, MAX_ID_LEN, validate_id};
use crate::library::registry::{update_registry, upsert_entry};
use crate::library::scan::guess_format;

/// How the files get into the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// Copy the bytes; the source stays.
    #[default]
    Copy,
    /// Move the files in (a rename on the same file system, else copy then remove).
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
    /// Copy, move or hardlink.
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

/// Imports `req.source` as a new model. The id must be free (no folder, no registry entry).
pub fn import_model(library: &Library, req: &ImportRequest) -> Result<ImportOutcome> {
    if req.mode == ImportMode::Symlink && !cfg!(unix) {
        return Err(LibraryError::ImportRefused {
            reason: "symlink imports are supported on Unix only; use copy or hardlink".into(),
        });
    }
    let source_meta =
        fs::symlink_metadata(&req.source).map_err(|e| LibraryError::io(&req.source, e))?;
    if source_meta.file_type().is_symlink() {
        return Err(LibraryError::ImportRefused {
            reason: format!(
                "{} is a symbolic link; import its target instead",
                req.source.display()
            ),
        });
    }
    let source = fs::canonicalize(&req.source).map_err(|e| LibraryError::io(&req.source, e))?;
    if let Ok(root) = fs::canonicalize(library.root())
        && source.starts_with(&root)
    {
        return Err(LibraryError::ImportRefused {
            reason: format!("{} is already inside the library", source.display()),
        });
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
    let dest = library.models_dir().join(&id);
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(LibraryError::ImportRefused {
            reason: format!("{} already exists; choose another id", dest.display()),
        });
    }
    if crate::library::Registry::load(library)?.get(&id).is_some() {
        return Err(LibraryError::ImportRefused {
            reason: format!("the registry already has a model {id:?}; choose another id"),
        });
    }

    // Assemble in .cache/, then one rename into models/.
    let staging = library
        .cache_dir()
        .join(format!("import-{id}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| LibraryError::io(&staging, e))?;
    let mut files: Vec<(String, u64)> = Vec::new();
    let placed = (|| -> Result<()> {
        if source_meta.is_file() {
            let name = source.file_name().unwrap_or_default();
            place(&source, &staging.join(name), req.mode)?;
            files.push((name.to_string_lossy().into_owned(), source_meta.len()));
        } else {
            copy_tree(&source, &staging, Path::new(""), req.mode, &mut files)?;
        }
        fs::create_dir_all(library.models_dir())
            .map_err(|e| LibraryError::io(library.models_dir(), e))?;
        fs::rename(&staging, &dest).map_err(|e| LibraryError::io(&dest, e))
    })();
    if let Err(err) = placed {
        // Nothing half-imported is left; in move mode, files already moved go back.
        if req.mode == ImportMode::Move && source_meta.is_dir() {
            for (rel, _) in &files {
                let _ = fs::rename(staging.join(rel), source.join(rel));
            }
        } else if req.mode == ImportMode::Move {
            let name = source.file_name().unwrap_or_default();
            let _ = fs::rename(staging.join(name), &source);
        }
        let _ = fs::remove_dir_all(&staging);
        return Err(err);
    }
    if req.mode == ImportMode::Move && source_meta.is_dir() {
        remove_empty_tree(&source);
    }

    let largest = files
        .iter()
        .max_by_key(|(_, size)| *size)
        .map(|(p, _)| dest.join(p));
    let format = largest.as_deref().and_then(detect_format);
    let bytes = files.iter().map(|(_, s)| s).sum();
    let mut entry = Map::new();
    entry.insert("id".into(), json!(id));
    entry.insert("name".into(), json!(id));
    entry.insert("provider".into(), json!("local"));
    if let Some(f) = &format {
        entry.insert("format".into(), json!(f));
    }
    entry.insert(
        "description".into(),
        json!(format!("Imported from {}", source.display())),
    );
    entry.insert(
        "files".into(),
        Value::Array(
            files
                .iter()
                .map(|(p, s)| json!({"path": p, "size": s}))
                .collect(),
        ),
    );
    update_registry(library, |doc| upsert_entry(doc, entry))?;
    Ok(ImportOutcome {
        id,
        path: dest,
        files: files.len() as u64,
        bytes,
        format,
    })
}

fn place(from: &Path, to: &Path, mode: ImportMode) -> Result<()> {
    let result = match mode {
        ImportMode::Copy => fs::copy(from, to).map(|_| ()),
        ImportMode::Hardlink => fs::hard_link(from, to).map_err(|e| {
            if e.raw_os_error() == Some(18) {
                io::Error::other("hard links need the source on the same file system (EXDEV)")
            } else {
                e
            }
        }),
        ImportMode::Move => match fs::rename(from, to) {
            Ok(()) => Ok(()),
            // Another file system: copy, then remove the source.
            Err(e) if e.raw_os_error() == Some(18) => {
                fs::copy(from, to).and_then(|_| fs::remove_file(from))
            }
            Err(e) => Err(e),
        },
        #[cfg(unix)]
        ImportMode::Symlink => std::os::unix::fs::symlink(from, to),
        #[cfg(not(unix))]
        ImportMode::Symlink => unreachable!("refused above"),
    };
    result.map_err(|e| LibraryError::io(to, e))
}

/// Imports a folder's regular files, keeping their layout. Symlinks in the source are
/// skipped (never followed).
fn copy_tree(
    src_root: &Path,
    dst_root: &Path,
    rel: &Path,
    mode: ImportMode,
    files: &mut Vec<(String, u64)>,
) -> Result<()> {
    let dir = src_root.join(rel);
    let rd = fs::read_dir(&dir).map_err(|e| LibraryError::io(&dir, e))?;
    let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel_child = rel.join(entry.file_name());
        let meta = entry
            .metadata()
            .map_err(|e| LibraryError::io(entry.path(), e))?;
        if meta.is_dir() {
            let d = dst_root.join(&rel_child);
            fs::create_dir_all(&d).map_err(|e| LibraryError::io(&d, e))?;
            copy_tree(src_root, dst_root, &rel_child, mode, files)?;
        } else if meta.is_file() {
            place(&entry.path(), &dst_root.join(&rel_child), mode)?;
            let text = rel_child.to_string_lossy().replace('\\', "/");
            files.push((text, meta.len()));
        }
    }
    Ok(())
}

fn remove_empty_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
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
