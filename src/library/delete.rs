//! Deleting a model: only `LIBRARY/models/<id>` and `LIBRARY/.downloads/<id>` can ever be
//! removed. Ids are validated (one safe path component), each target is checked with
//! `lstat`, and a target that is a symlink is unlinked, never followed — not even by the
//! trash, which would resolve it. Folders go to the system trash by default, or are removed
//! permanently on request. Touches nothing else.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::Serialize;

use crate::library::error::{LibraryError, Result};
use crate::library::layout::{Library, validate_id};
use crate::library::scan::walk;

/// How to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// Move folders to the system trash (freedesktop trash on Linux).
    #[default]
    Trash,
    /// Remove folders for good.
    Permanent,
}

/// What a delete would remove.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeletePlan {
    /// The model id.
    pub id: String,
    /// Existing targets: `models/<id>` and/or `.downloads/<id>`.
    pub targets: Vec<PathBuf>,
    /// Bytes those targets hold (symlinks count as their own size).
    pub bytes: u64,
    /// Files they hold.
    pub files: u64,
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeleteOutcome {
    /// The model id.
    pub id: String,
    /// Bytes freed (moved to the trash, or removed).
    pub freed_bytes: u64,
    /// The paths removed.
    pub removed: Vec<PathBuf>,
    /// Whether folders went to the trash.
    pub trashed: bool,
}

/// Works out what deleting `id` would remove, without removing anything.
pub fn plan_delete(library: &Library, id: &str) -> Result<DeletePlan> {
    validate_id(id)?;
    let mut plan = DeletePlan {
        id: id.to_string(),
        targets: Vec::new(),
        bytes: 0,
        files: 0,
    };
    for target in [
        library.models_dir().join(id),
        library.downloads_dir().join(id),
    ] {
        match fs::symlink_metadata(&target) {
            Ok(meta) => {
                if meta.is_dir() {
                    let sum = walk(&target);
                    plan.bytes += sum.size;
                    plan.files += sum.files;
                } else {
                    plan.bytes += meta.len();
                    plan.files += 1;
                }
                plan.targets.push(target);
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(LibraryError::io(target, err)),
        }
    }
    if plan.targets.is_empty() {
        return Err(LibraryError::NothingToDelete { id: id.to_string() });
    }
    Ok(plan)
}

/// Deletes `id`'s folder and its partial downloads. The registry entry, if any, stays (the
/// model becomes `available` again).
pub fn delete_model(library: &Library, id: &str, mode: DeleteMode) -> Result<DeleteOutcome> {
    let plan = plan_delete(library, id)?;
    let mut outcome = DeleteOutcome {
        id: plan.id.clone(),
        freed_bytes: 0,
        removed: Vec::new(),
        trashed: mode == DeleteMode::Trash,
    };
    for target in &plan.targets {
        // Re-check right before acting: what stands there now decides how it goes.
        let meta = match fs::symlink_metadata(target) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(LibraryError::io(target, err)),
        };
        let result = if !meta.is_dir() {
            // A symlink (or a stray file) in place of the folder: unlink it, never follow.
            fs::remove_file(target)
        } else {
            match mode {
                DeleteMode::Permanent => fs::remove_dir_all(target),
                DeleteMode::Trash => trash::delete(target)
                    .map_err(|e| io::Error::other(format!("could not move to the trash: {e}"))),
            }
        };
        result.map_err(|e| LibraryError::io(target, e))?;
        outcome.removed.push(target.clone());
    }
    outcome.freed_bytes = plan.bytes;
    Ok(outcome)
}

/// Removes `.downloads/<id>` (a symlink there is unlinked, not followed). Returns the bytes
/// freed; an absent folder frees nothing.
pub fn discard_partial(library: &Library, id: &str) -> Result<u64> {
    validate_id(id)?;
    let target = library.downloads_dir().join(id);
    let meta = match fs::symlink_metadata(&target) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(LibraryError::io(target, err)),
    };
    let (bytes, result) = if meta.is_dir() {
        (walk(&target).size, fs::remove_dir_all(&target))
    } else {
        (meta.len(), fs::remove_file(&target))
    };
    result.map_err(|e| LibraryError::io(&target, e))?;
    Ok(bytes)
}
