//! The import's file work: planning what the source holds (with each file's identity),
//! placing the files in the staging folder, and — for a move, after the model is in place
//! and registered — removing the source names that are still the imported files. Writes
//! only below the staging folder it is given; outside the library it only reads the source
//! and, for a move, unlinks source files and removes emptied source folders.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ImportMode, detect_format, refused};
use crate::library::crashpoint;
use crate::library::error::{LibraryError, Result};
use crate::library::fs_safe::{Kind, SafeDir, lstat_path};

/// Everything an import (or its recovery) needs to know, written to the journal first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// The new model's id.
    pub(crate) id: String,
    /// The source, canonical.
    pub(crate) source: PathBuf,
    /// How the files get in.
    pub(crate) mode: ImportMode,
    /// Whether the source is one file (else a folder).
    pub(crate) single_file: bool,
    /// Detected format of the largest file.
    pub(crate) format: Option<String>,
    /// The files, relative to the model folder.
    pub(crate) files: Vec<PlannedFile>,
}

/// One file of a plan and the identity it had when planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlannedFile {
    /// Path below the model folder, `/`-separated.
    pub(crate) path: String,
    /// Bytes.
    pub(crate) size: u64,
    /// Device of the source file.
    pub(crate) dev: u64,
    /// Inode of the source file.
    pub(crate) ino: u64,
    /// Modification time of the source file, nanoseconds.
    pub(crate) mtime_ns: i64,
}

impl Plan {
    /// Where planned file `f` is at the source.
    pub(crate) fn source_of(&self, f: &PlannedFile) -> PathBuf {
        if self.single_file {
            self.source.clone()
        } else {
            self.source.join(&f.path)
        }
    }
}

/// Lists the source's regular files (links and special files in a folder are skipped,
/// never followed) with their identity, and detects the format of the largest.
pub(crate) fn plan_source(
    source: &Path,
    id: &str,
    mode: ImportMode,
    single_file: bool,
) -> Result<Plan> {
    let mut files = Vec::new();
    if single_file {
        let name = source.file_name().unwrap_or_default();
        files.push(planned(source, utf8(name, source)?.to_string())?);
    } else {
        walk_source(source, &mut files)?;
        if files.is_empty() {
            return Err(refused(format!(
                "{} holds no regular files to import",
                source.display()
            )));
        }
    }
    let mut plan = Plan {
        id: id.to_string(),
        source: source.to_path_buf(),
        mode,
        single_file,
        format: None,
        files,
    };
    plan.format = plan
        .files
        .iter()
        .max_by_key(|f| f.size)
        .and_then(|f| detect_format(&plan.source_of(f)));
    Ok(plan)
}

fn utf8<'a>(name: &'a OsStr, whole: &Path) -> Result<&'a str> {
    name.to_str().ok_or_else(|| {
        refused(format!(
            "{} has a name that is not valid UTF-8, which the registry cannot record",
            whole.display()
        ))
    })
}

fn planned(path: &Path, rel: String) -> Result<PlannedFile> {
    let e = lstat_path(path).map_err(|e| LibraryError::io(path, e))?;
    Ok(PlannedFile {
        path: rel,
        size: e.len,
        dev: e.dev,
        ino: e.ino,
        mtime_ns: e.mtime_ns,
    })
}

/// The regular files of a source tree, sorted by path (walkdir: this walk is not a hot
/// path). Links and other special entries are left where they are; folders behind links
/// are not descended.
fn walk_source(root: &Path, files: &mut Vec<PlannedFile>) -> Result<()> {
    for entry in walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            let io = e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("a folder loop"));
            LibraryError::io(path, io)
        })?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let text = utf8(rel.as_os_str(), entry.path())?;
        if entry.file_type().is_file() {
            files.push(planned(entry.path(), text.replace('\\', "/"))?);
        }
    }
    Ok(())
}

/// Places every planned file in `imports/<id>/` (created afresh) and syncs it all.
pub(crate) fn stage(plan: &Plan, imports: &SafeDir) -> Result<()> {
    let staging_path = imports.join(&plan.id);
    imports
        .remove_tree(&plan.id)
        .map_err(|e| LibraryError::io(&staging_path, e))?;
    let staging = imports
        .create_dir(&plan.id)
        .map_err(|e| LibraryError::io(&staging_path, e))?;
    let staging_dev = staging
        .stat()
        .map_err(|e| LibraryError::io(&staging_path, e))?
        .dev;
    for (i, f) in plan.files.iter().enumerate() {
        let rel = Path::new(&f.path);
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().unwrap_or_default();
        let dest = staging_path.join(rel);
        let dir = staging
            .create_dir_all(parent)
            .map_err(|e| LibraryError::io(staging_path.join(parent), e))?;
        let from = plan.source_of(f);
        match plan.mode {
            ImportMode::Copy => copy_into(&from, f, &dir, name, &dest)?,
            ImportMode::Hardlink => dir.hard_link_from(&from, name).map_err(|e| {
                if e.raw_os_error() == Some(18) {
                    refused(format!(
                        "hard links need {} on the same file system as the library (EXDEV); \
                         use copy or move",
                        from.display()
                    ))
                } else {
                    LibraryError::io(&dest, e)
                }
            })?,
            // Same file system: a hard link (instant, and the source stays whole until the
            // model is registered); elsewhere, or where links are not allowed: a copy.
            ImportMode::Move => {
                if f.dev != staging_dev || dir.hard_link_from(&from, name).is_err() {
                    copy_into(&from, f, &dir, name, &dest)?;
                }
            }
            ImportMode::Symlink => dir
                .symlink(&from, name)
                .map_err(|e| LibraryError::io(&dest, e))?,
        }
        if i == 0 {
            crashpoint::hit("import.staging");
        }
    }
    staging
        .sync_tree()
        .map_err(|e| LibraryError::io(&staging_path, e))
}

/// Copies the source file `from` into a new file `name` of `dir`, and syncs it. The source
/// is opened without following a link and must still be the planned file.
fn copy_into(from: &Path, f: &PlannedFile, dir: &SafeDir, name: &OsStr, dest: &Path) -> Result<()> {
    let mut src = open_nofollow(from).map_err(|e| LibraryError::io(from, e))?;
    let meta = src.metadata().map_err(|e| LibraryError::io(from, e))?;
    if !meta.is_file() || meta.len() != f.size || ino_of(&meta) != f.ino {
        return Err(refused(format!(
            "{} changed while it was being imported; try again",
            from.display()
        )));
    }
    let mut out = dir
        .create_new(name)
        .map_err(|e| LibraryError::io(dest, e))?;
    let copied = io::copy(&mut src, &mut out).map_err(|e| LibraryError::io(dest, e))?;
    if copied != f.size {
        return Err(refused(format!(
            "{} changed size while it was being imported; try again",
            from.display()
        )));
    }
    out.sync_all().map_err(|e| LibraryError::io(dest, e))
}

fn open_nofollow(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(
            (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
        );
    }
    options.open(path)
}

#[cfg(unix)]
fn ino_of(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino()
}

/// After a move's model is in place and registered: removes each source file that is
/// still the planned file (same device, inode, size and modification time) and whose
/// imported copy is in the model folder with its size, then the source folders left empty.
/// Returns a note for every source file left where it was.
pub(crate) fn remove_sources(plan: &Plan, models: &SafeDir) -> Vec<String> {
    let mut notes = Vec::new();
    let model = models.open_dir(&plan.id).ok();
    for (i, f) in plan.files.iter().enumerate() {
        let from = plan.source_of(f);
        let Ok(now) = lstat_path(&from) else {
            continue; // already gone
        };
        let unchanged = now.kind == Kind::File
            && (now.dev, now.ino, now.len, now.mtime_ns) == (f.dev, f.ino, f.size, f.mtime_ns);
        let imported = model.as_ref().is_some_and(|m| {
            let rel = Path::new(&f.path);
            m.open_dir_all(rel.parent().unwrap_or(Path::new("")))
                .and_then(|d| d.entry(rel.file_name().unwrap_or_default()))
                .ok()
                .flatten()
                .is_some_and(|e| e.kind == Kind::File && e.len == f.size)
        });
        if !(unchanged && imported) {
            notes.push(format!(
                "left {} where it was: it changed since it was imported",
                from.display()
            ));
            continue;
        }
        if let Err(e) = fs::remove_file(&from) {
            notes.push(format!("could not remove {}: {e}", from.display()));
        }
        if i == 0 {
            crashpoint::hit("import.removing_source");
        }
    }
    if !plan.single_file {
        remove_empty_tree(&plan.source);
    }
    notes
}

/// Removes the folders of a moved source tree that are left empty (never through a link:
/// walkdir does not follow them, and `remove_dir` leaves a folder that is not empty).
fn remove_empty_tree(dir: &Path) {
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .contents_first(true)
        .into_iter()
        .flatten()
    {
        if entry.file_type().is_dir() {
            let _ = fs::remove_dir(entry.path());
        }
    }
}
