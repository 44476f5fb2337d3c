//! Deleting a model: only `LIBRARY/models/<id>` and `LIBRARY/.downloads/<id>` can ever be
//! removed. Ids are validated (one safe path component), each target is checked with
//! `lstat`, and a target that is a symlink is unlinked, never followed — not even by the
//! trash, which would resolve it. Folders go to the system trash by default, or are removed
//! permanently on request. Every removal goes through the library's write gate
//! ([`Library::open_writes`]): `models/` and `.downloads/` are reached without following a
//! link, so a delete never removes anything outside the library. Touches nothing else.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::Serialize;

use crate::library::error::{LibraryError, Result};
use crate::library::fs_safe::{Kind, SafeDir};
use crate::library::layout::{DOWNLOADS_DIR, Library, LibraryWrites, MODELS_DIR, validate_id};
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
    if let Some(off) = library.writes_off() {
        return Err(off);
    }
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
    let writes = library.open_writes()?;
    let mut outcome = DeleteOutcome {
        id: plan.id.clone(),
        freed_bytes: 0,
        removed: Vec::new(),
        trashed: mode == DeleteMode::Trash,
    };
    for own in [MODELS_DIR, DOWNLOADS_DIR] {
        let Some(parent) = writes.existing(own)? else {
            continue;
        };
        let target = parent.join(id);
        // Re-checked right before acting, relative to the verified parent: what stands
        // there now decides how it goes.
        let Some(entry) = parent.entry(id).map_err(|e| LibraryError::io(&target, e))? else {
            continue;
        };
        let result = if entry.kind != Kind::Dir {
            // A symlink (or a stray file) in place of the folder: unlink it, never follow.
            parent.remove_file(id)
        } else {
            match mode {
                DeleteMode::Permanent => remove_at_once(&writes, &parent, id),
                // The trash works with paths: it gets the folder's real path as the kernel
                // knows the verified parent right now, so no link on the way is followed.
                DeleteMode::Trash => trash::delete(parent.real_path().join(id))
                    .map_err(|e| io::Error::other(format!("could not move to the trash: {e}"))),
            }
        };
        result.map_err(|e| LibraryError::io(&target, e))?;
        outcome.removed.push(target);
    }
    outcome.freed_bytes = plan.bytes;
    Ok(outcome)
}

/// Folder under `.cache/` where permanently deleted folders are moved before they are
/// removed, so a model vanishes in one rename and a kill mid-removal leaves no half model.
pub const DELETING_DIR: &str = "deleting";

static DELETE_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Removes the folder `id` of `parent` for good: first one rename out of sight (into
/// `.cache/deleting/`), then the removal; where that rename cannot be made (another file
/// system), in place.
fn remove_at_once(writes: &LibraryWrites, parent: &SafeDir, id: &str) -> io::Result<()> {
    let deleting = writes
        .cache_sub(DELETING_DIR)
        .map_err(|e| io::Error::other(e.to_string()))?;
    let name = format!(
        "{id}.{}.{}",
        std::process::id(),
        DELETE_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    match parent.rename(id, &deleting, &name) {
        Ok(()) => {
            crate::library::crashpoint::hit("delete.moved_aside");
            deleting.remove_tree(&name).map(|_| ())
        }
        Err(e) if e.raw_os_error() == Some(18) => parent.remove_tree(id).map(|_| ()),
        Err(e) => Err(e),
    }
}

/// Finishes deletes that a killed process left in `.cache/deleting/`. Returns how many.
pub fn finish_interrupted(library: &Library) -> Result<usize> {
    if library.writes_off().is_some() {
        return Ok(0);
    }
    let writes = library.open_writes()?;
    let Some(cache) = writes.existing(crate::library::layout::CACHE_DIR)? else {
        return Ok(0);
    };
    if cache
        .entry(DELETING_DIR)
        .map_err(|e| LibraryError::io(cache.join(DELETING_DIR), e))?
        .is_none()
    {
        return Ok(0);
    }
    let deleting = writes.cache_sub(DELETING_DIR)?;
    let names = deleting
        .list()
        .map_err(|e| LibraryError::io(deleting.path(), e))?;
    for (name, _) in &names {
        deleting
            .remove_tree(name)
            .map_err(|e| LibraryError::io(deleting.join(name), e))?;
    }
    Ok(names.len())
}

/// Removes `.downloads/<id>` (a symlink there is unlinked, not followed). Returns the bytes
/// freed; an absent folder frees nothing.
pub fn discard_partial(library: &Library, id: &str) -> Result<u64> {
    validate_id(id)?;
    let target = library.downloads_dir().join(id);
    let writes = library.open_writes()?;
    let Some(downloads) = writes.existing(DOWNLOADS_DIR)? else {
        return Ok(0);
    };
    downloads
        .remove_tree(id)
        .map_err(|e| LibraryError::io(&target, e))
}
