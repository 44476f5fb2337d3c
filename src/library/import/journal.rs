//! The import journal: `.cache/imports/<id>.json`, JSON lines — the plan first, then one
//! line per step reached (`staged`, `in_place`, `registered`), each synced before the step
//! after it starts. The importing process holds an exclusive `flock` on the journal for
//! its whole life, so a journal whose lock can be taken belongs to a process that died.
//! The journal is written under a temp name, locked, and only then renamed into place
//! (never replacing one), so it doubles as the reservation of the id.
//!
//! [`recover`] completes or discards the imports of dead processes (and moves staging
//! folders of the earlier `.cache/import-<id>-<pid>` layout into `models/` so they are
//! listed); [`pending`] tells the scanner which ids are mid-import. Writes only under
//! `.cache/imports/`, `models/<id>` and the registry, through the write gate.

use std::ffi::OsStr;
use std::fs::{File, TryLockError};
use std::io::{self, BufRead, BufReader, Write};

use serde::{Deserialize, Serialize};

use super::place::{Plan, remove_sources};
use super::{IMPORTS_DIR, ImportMode, commit, register};
use crate::library::error::{LibraryError, Result};
use crate::library::fs_safe::{Kind, SafeDir, temp_name};
use crate::library::layout::{CACHE_DIR, Library, LibraryWrites, validate_id};

/// A step an import reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Step {
    /// Every file is in the staging folder, synced.
    Staged,
    /// The staging folder was renamed to `models/<id>`.
    InPlace,
    /// The registry entry is written.
    Registered,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Plan(Plan),
    Step(Step),
}

/// A running import's journal, locked while this value lives.
pub(crate) struct Journal {
    file: File,
    imports: SafeDir,
    name: String,
}

/// What [`Journal::begin`] found.
pub(crate) enum Begun {
    /// This process now owns the id's journal.
    Started(Journal),
    /// The id already has a journal (a running import, or one that died).
    Taken,
}

fn journal_name(id: &str) -> String {
    format!("{id}.json")
}

fn io_at(imports: &SafeDir, name: impl AsRef<OsStr>) -> impl FnOnce(io::Error) -> LibraryError {
    let path = imports.join(name);
    move |e| LibraryError::io(path, e)
}

impl Journal {
    /// Writes and locks the plan under a temp name, then renames it into place — unless the
    /// id has a journal already.
    pub(crate) fn begin(imports: &SafeDir, plan: &Plan) -> Result<Begun> {
        let name = journal_name(&plan.id);
        let tmp = temp_name(OsStr::new(&name));
        let mut file = imports.create_new(&tmp).map_err(io_at(imports, &tmp))?;
        let written = (|| {
            file.try_lock().map_err(|e| match e {
                TryLockError::Error(e) => e,
                TryLockError::WouldBlock => io::Error::other("a new file is locked"),
            })?;
            write_line(&mut file, &Line::Plan(plan.clone()))?;
            match imports.rename_noreplace(&tmp, imports, &name) {
                Ok(()) => imports.sync().map(|()| true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        })();
        match written {
            Ok(true) => Ok(Begun::Started(Journal {
                file,
                imports: imports.open_dir_dot().map_err(io_at(imports, "."))?,
                name,
            })),
            Ok(false) => {
                let _ = imports.remove_file(&tmp);
                Ok(Begun::Taken)
            }
            Err(e) => {
                let _ = imports.remove_file(&tmp);
                Err(LibraryError::io(imports.join(&name), e))
            }
        }
    }

    /// Records that `step` was reached (synced before returning).
    pub(crate) fn record(&mut self, step: Step) -> Result<()> {
        write_line(&mut self.file, &Line::Step(step)).map_err(io_at(&self.imports, &self.name))
    }

    /// The import is over (done or backed out): the journal goes, then its lock.
    pub(crate) fn finish(self) {
        let _ = self.imports.remove_file(&self.name);
        let _ = self.imports.sync();
    }
}

fn write_line(file: &mut File, line: &Line) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
    bytes.push(b'\n');
    file.write_all(&bytes)?;
    file.sync_data()
}

/// A journal as read back: the plan (if its line is whole) and the last step reached.
fn read_journal(file: &File) -> (Option<Plan>, Option<Step>) {
    let mut plan = None;
    let mut last = None;
    for line in BufReader::new(file).lines() {
        // A torn last line (a kill mid-write) is simply not a step reached.
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Plan(p)) if plan.is_none() => plan = Some(p),
            Ok(Line::Step(s)) if plan.is_some() => last = last.max(Some(s)),
            _ => break,
        }
    }
    (plan, last)
}

/// What became of one journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recovered {
    /// Its process is alive: left alone.
    Live,
    /// Nothing was there.
    Nothing,
    /// Completed or discarded; the message says which.
    Done(String),
}

impl Recovered {
    pub(crate) fn is_live(&self) -> bool {
        *self == Recovered::Live
    }
}

/// What taking a journal's lock found.
enum Lock {
    /// This process holds the lock of the journal that is at the name now.
    Held(File),
    /// A live process holds it.
    Live,
    /// Nothing is there (any more).
    Gone,
}

/// How many more times a journal's busy lock is tried (5 ms apart) before its import is
/// taken for live.
const PROBE_RETRIES: u32 = 4;

/// Takes the lock of an existing journal. The journal's owner removes it before releasing
/// its lock, so after taking the lock the name must still lead to the same file; else the
/// lock was won on a journal that is gone (and the name may already be a new import's).
fn lock_journal(imports: &SafeDir, name: &OsStr) -> Result<Lock> {
    let at = || imports.join(name);
    let file = match imports.open_append(name) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lock::Gone),
        Err(e) => return Err(LibraryError::io(at(), e)),
    };
    // Another process's listing may be probing the lock for a moment (shared, released at
    // once); a live importer holds it for the whole import. A few tries tell them apart.
    let mut tries = 0;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if tries < PROBE_RETRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(TryLockError::WouldBlock) => return Ok(Lock::Live),
            Err(TryLockError::Error(e)) => return Err(LibraryError::io(at(), e)),
        }
    }
    let held = same_file(
        &file,
        imports.entry(name).map_err(|e| LibraryError::io(at(), e))?,
    );
    Ok(if held { Lock::Held(file) } else { Lock::Gone })
}

#[cfg(unix)]
fn same_file(file: &File, now: Option<crate::library::fs_safe::Entry>) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), now) {
        (Ok(meta), Some(now)) => meta.dev() == now.dev && meta.ino() == now.ino,
        _ => false,
    }
}

/// Completes or discards the import of `id` if its process died.
pub(crate) fn recover_one(
    library: &Library,
    writes: &LibraryWrites,
    imports: &SafeDir,
    id: &str,
) -> Result<Recovered> {
    let name = journal_name(id);
    if imports
        .entry(&name)
        .map_err(io_at(imports, &name))?
        .is_none()
    {
        return Ok(Recovered::Nothing);
    }
    let file = match lock_journal(imports, OsStr::new(&name))? {
        Lock::Held(file) => file,
        Lock::Live => return Ok(Recovered::Live),
        Lock::Gone => return Ok(Recovered::Nothing),
    };
    let (plan, step) = read_journal(&file);
    let mut file = file;
    let message = match plan {
        Some(plan) if plan.id == id => {
            finish_dead(library, writes, imports, &plan, step, &mut file)?
        }
        _ => {
            imports.remove_tree(id).map_err(io_at(imports, id))?;
            format!("discarded an unreadable import journal for {id:?}")
        }
    };
    imports.remove_file(&name).map_err(io_at(imports, &name))?;
    let _ = imports.sync();
    drop(file);
    Ok(Recovered::Done(message))
}

/// Carries a dead import on from the last step it reached, recording each step it
/// completes in the journal (so a kill during recovery is recovered from too), or discards
/// it when it had not finished staging: its source was never touched.
fn finish_dead(
    library: &Library,
    writes: &LibraryWrites,
    imports: &SafeDir,
    plan: &Plan,
    step: Option<Step>,
    journal: &mut File,
) -> Result<String> {
    let id = &plan.id;
    let source = plan.source.display();
    let models = writes.models()?;
    let discard = |why: &str| -> Result<String> {
        imports.remove_tree(id).map_err(io_at(imports, id))?;
        Ok(format!(
            "discarded the interrupted import of {id} ({source} is untouched){why}"
        ))
    };
    let record = |journal: &mut File, step: Step| {
        // A leading newline ends a line torn by the kill, if any (blank lines are skipped).
        let mut bytes = b"\n".to_vec();
        bytes.extend(serde_json::to_vec(&Line::Step(step)).map_err(io::Error::other)?);
        bytes.push(b'\n');
        journal.write_all(&bytes)?;
        journal.sync_data()
    };
    match step {
        None => return discard(""),
        Some(Step::Staged) => {
            let staged_here = imports
                .entry(id)
                .map_err(io_at(imports, id))?
                .is_some_and(|e| e.kind == Kind::Dir);
            if staged_here {
                if let Err(e) = commit(imports, &models, id) {
                    return discard(&format!(": {e}"));
                }
            } else if !in_models(&models, plan) {
                // Neither staged nor in place: nothing of it is in the library.
                return discard("");
            }
            // The rename was made (now, or by the process before it died).
            let _ = record(journal, Step::InPlace);
        }
        Some(_) => {}
    }
    if step < Some(Step::Registered) {
        if !in_models(&models, plan) {
            return Ok(format!(
                "the interrupted import of {id} was removed from the library meanwhile; \
                 {source} is untouched"
            ));
        }
        register(library, plan)?;
        let _ = record(journal, Step::Registered);
    }
    let mut message = format!("completed the interrupted import of {id} from {source}");
    if plan.mode == ImportMode::Move {
        for note in remove_sources(plan, &models) {
            message.push_str("; ");
            message.push_str(&note);
        }
    }
    Ok(message)
}

/// Whether `models/<id>` holds every planned file with its planned size (a symlink import's
/// files as links), reached without following links: the import's own result.
fn in_models(models: &SafeDir, plan: &Plan) -> bool {
    let Ok(model) = models.open_dir(&plan.id) else {
        return false;
    };
    plan.files.iter().all(|f| {
        let rel = std::path::Path::new(&f.path);
        let entry = model
            .open_dir_all(rel.parent().unwrap_or(std::path::Path::new("")))
            .and_then(|d| d.entry(rel.file_name().unwrap_or_default()))
            .ok()
            .flatten();
        match entry {
            Some(e) if plan.mode == ImportMode::Symlink => e.kind == Kind::Symlink,
            Some(e) => e.kind == Kind::File && e.len == f.size,
            None => false,
        }
    })
}

/// Finds imports whose process died and completes or discards each; moves staging folders
/// of the earlier layout (`.cache/import-<id>-<pid>`) whose process is gone into `models/`
/// as unregistered models, so their data is listed. Returns what was done, one line each.
/// Nothing to do (or writes off) is an empty list.
pub fn recover(library: &Library) -> Result<Vec<String>> {
    if library.writes_off().is_some() {
        return Ok(Vec::new());
    }
    let writes = library.open_writes()?;
    let Some(cache) = writes.existing(CACHE_DIR)? else {
        return Ok(Vec::new());
    };
    let mut done = recover_legacy(&writes, &cache)?;
    if cache
        .entry(IMPORTS_DIR)
        .map_err(io_at(&cache, IMPORTS_DIR))?
        .is_none()
    {
        return Ok(done);
    }
    let imports = writes.cache_sub(IMPORTS_DIR)?;
    let entries = imports.list().map_err(io_at(&imports, "."))?;
    for (name, kind) in &entries {
        let text = name.to_string_lossy();
        if kind == &Kind::File
            && let Some(id) = text.strip_suffix(".json")
            && !text.starts_with('.')
        {
            if let Recovered::Done(message) = recover_one(library, &writes, &imports, id)? {
                done.push(message);
            }
        } else if kind == &Kind::File && text.starts_with('.') && text.contains(".json.tmp-") {
            // A journal that died before it was renamed into place: nothing was staged. Its
            // name carries its process id; a live process may be between creating and
            // locking it, so only a dead one's (or, should ids be reused, an old one's)
            // goes.
            let pid = text
                .rsplit_once(".json.tmp-")
                .and_then(|(_, rest)| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            let old = imports
                .entry(name)
                .ok()
                .flatten()
                .is_some_and(|e| age_secs(e.mtime_ns) > TEMP_JOURNAL_GRACE_SECS);
            let dead = pid.is_some_and(|p| !process_alive(p));
            if (dead || old) && matches!(lock_journal(&imports, name)?, Lock::Held(_)) {
                imports.remove_file(name).map_err(io_at(&imports, name))?;
            }
        }
    }
    // Staging folders without a journal belong to no import (their journal is written
    // first and removed last).
    for (name, kind) in imports.list().map_err(io_at(&imports, "."))? {
        let text = name.to_string_lossy().into_owned();
        if kind == Kind::Dir
            && imports
                .entry(journal_name(&text))
                .map_err(io_at(&imports, &name))?
                .is_none()
        {
            imports.remove_tree(&name).map_err(io_at(&imports, &name))?;
            done.push(format!("removed the leftover staging folder of {text}"));
        }
    }
    Ok(done)
}

/// `.cache/import-<id>-<pid>/` folders of the earlier layout, whose process is gone, become
/// `models/<id>` (or `models/<id>-recovered-<pid>` when taken): unregistered but listed.
fn recover_legacy(writes: &LibraryWrites, cache: &SafeDir) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for (name, kind) in cache.list().map_err(io_at(cache, "."))? {
        let text = name.to_string_lossy().into_owned();
        let Some((id, pid)) = text
            .strip_prefix("import-")
            .and_then(|rest| rest.rsplit_once('-'))
        else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if kind != Kind::Dir || validate_id(id).is_err() || process_alive(pid) {
            continue;
        }
        let models = writes.models()?;
        let mut target = id.to_string();
        if models
            .entry(&target)
            .map_err(io_at(&models, &target))?
            .is_some()
        {
            target = format!("{id}-recovered-{pid}");
        }
        if validate_id(&target).is_err() {
            continue;
        }
        cache
            .rename_noreplace(&name, &models, &target)
            .map_err(io_at(cache, &name))?;
        done.push(format!(
            "moved the staging folder of an interrupted import ({}) to {} so it is listed; \
             check it and delete it if it is not wanted",
            cache.join(&name).display(),
            models.join(&target).display()
        ));
    }
    Ok(done)
}

/// How old a temp journal must be before recovery may remove it.
const TEMP_JOURNAL_GRACE_SECS: i64 = 60;

/// Seconds since a file-system time (nanoseconds since the epoch).
fn age_secs(mtime_ns: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    now - mtime_ns / 1_000_000_000
}

fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// An import in progress (or interrupted and not yet recovered), for the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingImport {
    /// The model id.
    pub id: String,
    /// Why the model is `partial`, in words.
    pub note: String,
}

/// The imports that have a journal now. Read-only: a journal's lock is only probed.
pub fn pending(library: &Library) -> Vec<PendingImport> {
    let Ok(imports) = SafeDir::open_root(library.root())
        .and_then(|root| root.open_dir(CACHE_DIR))
        .and_then(|cache| cache.open_dir(IMPORTS_DIR))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, kind) in imports.list().unwrap_or_default() {
        let text = name.to_string_lossy();
        let Some(id) = text.strip_suffix(".json") else {
            continue;
        };
        if kind != Kind::File || text.starts_with('.') {
            continue;
        }
        let Ok(file) = imports.open_read(&name) else {
            continue;
        };
        let live = match file.try_lock_shared() {
            // A probe only: let go at once, so another process's start-up recovery, which
            // takes the lock exclusively, does not take this listing for a live import.
            Ok(()) => {
                let _ = file.unlock();
                false
            }
            Err(TryLockError::WouldBlock) => true,
            Err(TryLockError::Error(_)) => false,
        };
        let source = read_journal(&file)
            .0
            .map(|p| p.source.display().to_string())
            .unwrap_or_else(|| "an unknown source".into());
        let note = if live {
            format!("being imported from {source}")
        } else {
            format!(
                "an import from {source} was interrupted; it is completed or discarded at the \
                 next start"
            )
        };
        out.push(PendingImport {
            id: id.to_string(),
            note,
        });
    }
    out
}
