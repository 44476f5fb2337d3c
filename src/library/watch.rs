//! Watching a library for changes: a recursive file watcher (notify, with
//! notify-debouncer-full settling bursts) whose events are mapped to the model ids they
//! touch, so the service can rescan just those models. When events cannot work (the inotify
//! watch limit, a network file system, a watch error) it falls back to polling the
//! library's stamps, and says which mode is active. Reads nothing itself but event paths;
//! ignores the app's own `.cache/` writes.

use std::collections::BTreeSet;
use std::path::{Component, Path};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use serde::Serialize;

use crate::library::layout::{CACHE_DIR, DOWNLOADS_DIR, Library, MODELS_DIR, REGISTRY_FILE};

/// How changes are noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum WatchMode {
    /// File-system events: changes anywhere in the library show up within a fraction of a
    /// second, and only the models touched are rescanned.
    Events,
    /// Polling the registry's and the folders' modification times: added, removed or
    /// renamed model folders and registry edits are noticed; changes deep inside a model
    /// folder wait for the TTL or a refresh.
    Polling {
        /// Why events are not used.
        reason: String,
    },
    /// Not watching (the command line, tests).
    Off,
}

impl std::fmt::Display for WatchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchMode::Events => f.write_str("watching file events"),
            WatchMode::Polling { reason } => write!(f, "polling modification times ({reason})"),
            WatchMode::Off => f.write_str("not watching"),
        }
    }
}

/// What changed since the last drain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Models (folder names under `models/` or `.downloads/`) touched.
    pub models: BTreeSet<String>,
    /// The registry changed.
    pub registry: bool,
    /// Something the events cannot pin down (overflow, the models folder itself): rescan all.
    pub everything: bool,
    /// The top-level stamps moved while every row stays as it is: record the new stamps.
    pub restamp: bool,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty() && !self.registry && !self.everything && !self.restamp
    }
}

/// A watcher on one library.
pub struct LibraryWatcher {
    library: Library,
    mode: WatchMode,
    events: Option<(
        Debouncer<notify::RecommendedWatcher, RecommendedCache>,
        Receiver<DebounceEventResult>,
    )>,
}

impl std::fmt::Debug for LibraryWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibraryWatcher")
            .field("library", &self.library)
            .field("mode", &self.mode)
            .finish()
    }
}

/// How long events settle before they are reported (a burst becomes one update).
pub const DEBOUNCE: Duration = Duration::from_millis(150);

impl LibraryWatcher {
    /// Starts watching `library` recursively; on any failure, polling mode with the reason.
    /// Setting up a recursive watch walks the library, so call it off the UI thread.
    pub fn start(library: &Library) -> LibraryWatcher {
        match Self::try_events(library) {
            Ok(events) => LibraryWatcher {
                library: library.clone(),
                mode: WatchMode::Events,
                events: Some(events),
            },
            Err(reason) => Self::polling(library, reason),
        }
    }

    /// A watcher that only polls (for file systems known not to deliver events).
    pub fn polling(library: &Library, reason: String) -> LibraryWatcher {
        LibraryWatcher {
            library: library.clone(),
            mode: WatchMode::Polling { reason },
            events: None,
        }
    }

    #[allow(clippy::type_complexity)]
    fn try_events(library: &Library) -> Result<EventStream, String> {
        watch_recursively(library.root())
    }

    /// The active mode.
    pub fn mode(&self) -> &WatchMode {
        &self.mode
    }

    /// What changed since the last call (never blocks). In polling mode this is always
    /// empty: the service compares stamps itself. A watch error switches to polling.
    pub fn drain(&mut self) -> Changes {
        let mut changes = Changes::default();
        let mut failed: Option<String> = None;
        if let Some((_, rx)) = &self.events {
            for result in rx.try_iter() {
                match result {
                    Ok(events) => {
                        for event in events {
                            // Reads (our own scans open every folder) change nothing.
                            if is_read_only(&event.kind) {
                                continue;
                            }
                            if event.need_rescan() {
                                changes.everything = true;
                            }
                            for path in &event.paths {
                                classify(&self.library, path, &mut changes);
                            }
                        }
                    }
                    Err(errors) => {
                        changes.everything = true;
                        failed = errors.first().map(|e| e.to_string());
                    }
                }
            }
        }
        if let Some(reason) = failed {
            self.events = None;
            self.mode = WatchMode::Polling {
                reason: format!("the watcher failed: {reason}"),
            };
        }
        changes
    }
}

type EventStream = (
    Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    Receiver<DebounceEventResult>,
);

/// A debounced recursive watch on `root`.
fn watch_recursively(root: &Path) -> Result<EventStream, String> {
    let (tx, rx) = mpsc::channel();
    let mut debouncer = new_debouncer(DEBOUNCE, None, tx).map_err(|e| e.to_string())?;
    debouncer
        .watch(root, RecursiveMode::Recursive)
        .map_err(|e| match &e.kind {
            notify::ErrorKind::MaxFilesWatch => "the system's limit on watched folders is \
                 reached (fs.inotify.max_user_watches)"
                .to_string(),
            _ => format!("cannot watch {}: {e}", root.display()),
        })?;
    Ok((debouncer, rx))
}

/// A watch on one read-only store's folder: it only tells whether anything changed.
pub struct StoreWatcher {
    stream: EventStream,
}

impl std::fmt::Debug for StoreWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreWatcher")
    }
}

impl StoreWatcher {
    /// Watches `root` recursively; `None` when events cannot work there (the store is then
    /// refreshed by the TTL and manual refreshes only).
    pub fn start(root: &Path) -> Option<StoreWatcher> {
        watch_recursively(root)
            .ok()
            .map(|stream| StoreWatcher { stream })
    }

    /// Whether anything but reads happened since the last call (never blocks).
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        for result in self.stream.1.try_iter() {
            match result {
                Ok(events) => changed |= events.iter().any(|e| !is_read_only(&e.kind)),
                Err(_) => changed = true,
            }
        }
        changed
    }
}

/// Whether an event only reports a read (open, close without writing, access time).
fn is_read_only(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, MetadataKind, ModifyKind};
    matches!(
        kind,
        notify::EventKind::Access(
            AccessKind::Open(_)
                | AccessKind::Close(
                    notify::event::AccessMode::Read
                        | notify::event::AccessMode::Execute
                        | notify::event::AccessMode::Any
                )
                | AccessKind::Read
                | AccessKind::Any
                | AccessKind::Other
        ) | notify::EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))
    )
}

/// Maps one event path to what it touches.
fn classify(library: &Library, path: &Path, changes: &mut Changes) {
    let Ok(rel) = path.strip_prefix(library.root()) else {
        return;
    };
    let mut parts = rel.components().filter_map(|c| match c {
        Component::Normal(p) => Some(p),
        _ => None,
    });
    let Some(first) = parts.next() else {
        changes.everything = true; // the library folder itself
        return;
    };
    let first = first.to_string_lossy();
    if first == REGISTRY_FILE {
        changes.registry = true;
    } else if first == MODELS_DIR || first == DOWNLOADS_DIR {
        match parts.next() {
            Some(name) => {
                changes.models.insert(name.to_string_lossy().into_owned());
            }
            None => changes.everything = true,
        }
    } else if first == CACHE_DIR || first.starts_with('.') {
        // The app's own files and temp files (registry temp files are followed by a
        // rename that names the registry itself).
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_models() {
        let lib = Library::new("/lib");
        let mut c = Changes::default();
        for p in [
            "/lib/models/a/sub/w.bin",
            "/lib/models/b",
            "/lib/.downloads/c/x.part",
            "/lib/.cache/listing.bin",
            "/lib/.model_registry.json.tmp-1-2",
            "/elsewhere/models/z",
        ] {
            classify(&lib, Path::new(p), &mut c);
        }
        assert_eq!(c.models.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(!c.registry && !c.everything);
        classify(&lib, Path::new("/lib/model_registry.json"), &mut c);
        assert!(c.registry);
        classify(&lib, Path::new("/lib/models"), &mut c);
        assert!(c.everything);
    }
}
