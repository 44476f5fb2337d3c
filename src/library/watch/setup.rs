//! Setting up file events on a library, folder by folder, within a budget of watches: the
//! top level first (the library folder and `models/`, so a model folder that appears
//! meanwhile is an event), `.downloads/` and `.cache/`, then each model folder's tree while
//! the budget lasts. Models beyond it are handed to the polling verifier (the hybrid
//! mode), so a library larger than the system's inotify limit still has events for most
//! models and a short polling period for the rest.
//!
//! Every folder gets a watch of its own (see `inotify`; notify's recursive mode re-examined
//! all existing watches for each new recursive root, which made one recursive watch per
//! model quadratic: 63 s at 100 000 models). A tree is watched as it is
//! read — a folder's watch is in place before its entries are listed — so a subfolder made
//! at any moment is either listed or reported by an event ([`watch_tree`]); the watcher
//! then watches the new folder the same way.
//!
//! The budget is the system's limit (`fs.inotify.max_user_watches`, per user) less room
//! left for the user's other programs. The kernel stays the judge: a watch it refuses
//! moves that model to polling too. Reads folders, writes nothing; links are never
//! followed (the scan never descends a linked folder either).

use std::path::Path;
use std::sync::mpsc;

use notify::ErrorKind;
use notify::event::EventKindMask;

use crate::library::layout::{CACHE_DIR, DOWNLOADS_DIR, IMPORTS_DIR, MODELS_DIR};

/// The file watcher.
pub(super) type Events = super::inotify::Notifier;

/// What the watcher reports.
pub(super) use super::inotify::EventResult;

/// Why a model is polled rather than watched, in the user's words.
pub const LIMIT_REASON: &str =
    "the system's limit on watched folders (fs.inotify.max_user_watches) is reached";

/// Watches the library may use by default: the system's limit less the larger of a tenth
/// and 1 024, left for the user's other programs (editors, file managers, sync tools).
pub fn system_budget() -> usize {
    let limit = std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(8_192);
    limit.saturating_sub((limit / 10).max(1_024).min(limit / 2))
}

/// A new watcher reporting to `tx`, watching nothing yet. It reports no reads (every folder
/// a scan opens would otherwise be an event, and at 100 000 models they overflow the
/// kernel's queue) and follows no link (the scan never descends a linked folder, and a link
/// to `/` would take the whole budget).
pub(super) fn new_events(tx: mpsc::Sender<EventResult>) -> Result<Events, String> {
    Events::new(tx).map_err(|e| e.to_string())
}

/// A notify watcher (for the stores, watched recursively as a whole) reporting to `tx`.
pub(super) fn new_notify(
    tx: mpsc::Sender<EventResult>,
) -> Result<notify::RecommendedWatcher, String> {
    let config = notify::Config::default()
        .with_event_kinds(EventKindMask::CORE | EventKindMask::ACCESS_CLOSE)
        .with_follow_symlinks(false);
    <notify::RecommendedWatcher as notify::Watcher>::new(tx, config).map_err(|e| e.to_string())
}

/// Says why a watch failed, in the user's words.
pub(super) fn describe(e: &notify::Error, path: &Path) -> String {
    match &e.kind {
        ErrorKind::MaxFilesWatch => LIMIT_REASON.to_string(),
        _ => format!("cannot watch {}: {e}", path.display()),
    }
}

/// A library being watched: the watcher, what the budget has left, and the models it could
/// not afford.
pub(super) struct Watched {
    pub events: Events,
    /// Watches left in the budget (an estimate: watches of removed folders are not given
    /// back).
    pub left: usize,
    /// Model folders not watched (beyond the budget, or refused by the kernel).
    pub polled: Vec<String>,
    /// Top-level folders that were not there to watch (to be tried again once the set-up
    /// is handed over: one may have appeared meanwhile).
    pub absent: Vec<&'static str>,
}

/// Where one folder tree ended up.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Placed {
    /// Every folder in it watched.
    Watched,
    /// Beyond the budget, or refused by the kernel: nothing in it is watched.
    Refused,
    /// Nothing to watch: gone, not a folder, or a link (never descended; the parent's own
    /// watch sees it replaced).
    Nothing,
}

/// Watches `root` as a library: the library folder itself, `models/`, `.cache/` and
/// `.cache/imports/` (their entries, not their subfolders: the app's own staging and
/// deleting folders need no watch), the tree of `.downloads/`, then every model folder's
/// tree while `budget` lasts.
pub(super) fn watch_library(
    root: &Path,
    tx: mpsc::Sender<EventResult>,
    budget: usize,
) -> Result<Watched, String> {
    let mut events = new_events(tx)?;
    let mut left = budget;
    for path in [root.to_path_buf(), root.join(MODELS_DIR)] {
        if left == 0 {
            return Err(LIMIT_REASON.into());
        }
        match events.watch(&path) {
            Ok(()) => left -= 1,
            Err(e) if matches!(e.kind, ErrorKind::PathNotFound) && path != root => {}
            Err(e) => return Err(describe(&e, &path)),
        }
    }
    let mut absent = Vec::new();
    let top = [
        (
            DOWNLOADS_DIR,
            watch_tree(&mut events, &root.join(DOWNLOADS_DIR), &mut left),
        ),
        (CACHE_DIR, watch_cache(&mut events, root, &mut left)),
    ];
    for (name, placed) in top {
        match placed {
            Placed::Refused => return Err(LIMIT_REASON.into()),
            Placed::Nothing => absent.push(name),
            Placed::Watched => {}
        }
    }
    let models = root.join(MODELS_DIR);
    let polled = model_names(&models)
        .into_iter()
        .filter(|name| watch_tree(&mut events, &models.join(name), &mut left) == Placed::Refused)
        .collect();
    Ok(Watched {
        events,
        left,
        polled,
        absent,
    })
}

/// The names in `models/`, sorted (hidden ones left out, as the scan does).
pub(super) fn model_names(models: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(models)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort_unstable();
    names
}

/// Watches the folder `top` and every folder below it (links not followed), each before
/// its entries are read, while the budget `left` lasts. All or nothing: when the budget
/// runs out or a watch is refused, the watches it added are removed again.
pub(super) fn watch_tree(events: &mut Events, top: &Path, left: &mut usize) -> Placed {
    match std::fs::symlink_metadata(top) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Placed::Nothing,
    }
    let mut watched_top = false;
    let mut queue = vec![top.to_path_buf()];
    while let Some(dir) = queue.pop() {
        if *left == 0 {
            return undo(events, top, watched_top);
        }
        match events.watch(&dir) {
            Ok(()) => *left -= 1,
            Err(e) if matches!(e.kind, ErrorKind::PathNotFound) => {
                if !watched_top {
                    return Placed::Nothing; // the tree itself went
                }
                continue; // a subfolder went meanwhile
            }
            Err(e) => {
                if matches!(e.kind, ErrorKind::MaxFilesWatch) {
                    *left = 0; // the kernel knows better than the estimate
                }
                return undo(events, top, watched_top);
            }
        }
        // Listed after its watch is in place: a subfolder made from now on is an event.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            queue.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        watched_top = true;
    }
    Placed::Watched
}

/// Watches one folder's entries (not its subfolders), if the budget allows.
pub(super) fn watch_one(events: &mut Events, dir: &Path, left: &mut usize) -> Placed {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Placed::Nothing,
    }
    if *left == 0 {
        return Placed::Refused;
    }
    match events.watch(dir) {
        Ok(()) => {
            *left -= 1;
            Placed::Watched
        }
        Err(e) if matches!(e.kind, ErrorKind::PathNotFound) => Placed::Nothing,
        Err(_) => Placed::Refused,
    }
}

/// Watches `.cache/` and `.cache/imports/` (where import journals come and go), nothing
/// deeper.
pub(super) fn watch_cache(events: &mut Events, root: &Path, left: &mut usize) -> Placed {
    let cache = root.join(CACHE_DIR);
    let placed = watch_one(events, &cache, left);
    if placed == Placed::Watched
        && watch_one(events, &cache.join(IMPORTS_DIR), left) == Placed::Refused
    {
        return Placed::Refused;
    }
    placed
}

/// Removes the watches of a tree that could not be watched whole: unwatching its top
/// folder removes every watch below it (see [`Events::unwatch`]).
fn undo(events: &mut Events, top: &Path, watched_top: bool) -> Placed {
    if watched_top {
        let _ = events.unwatch(top);
    }
    Placed::Refused
}
