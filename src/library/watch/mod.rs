//! Watching a library for changes, in the mode the user chose ([`WatchOption`]): file
//! events (inotify with the app's own bookkeeping, see `inotify`; each folder of the
//! library watched, see [`setup`], and folders that
//! appear watched as they appear) mapped to the model ids they touch, so the service can
//! rescan just those models; or, where events cannot work (a network file system, a watch
//! error, or when asked), a [`verifier`] that re-checks the whole library round-robin with
//! stats alone, within a period it states. Where the system's inotify limit covers only
//! part of the library, both at once (the hybrid mode): events for the models that fit,
//! the verifier for the rest.
//!
//! Setting up a recursive watch walks the library (seconds at 100 000 models), so it runs
//! on a thread of its own: [`LibraryWatcher::start`] returns at once, events already flow
//! for the folders watched so far, and [`LibraryWatcher::poll_setup`] reports when the
//! watches are all in place (or why events cannot be used). Until then nobody may claim a
//! freshness bound. Reads nothing itself but event paths (the verifier stats); ignores the
//! app's own `.cache/` writes except import journals, which mark a model mid-import.

mod inotify;
mod print;
mod setup;
pub mod verifier;

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};

use notify::{RecursiveMode, Watcher};
use serde::Serialize;

use crate::library::Clock;
use crate::library::cache::SnapshotHandle;
use crate::library::layout::{CACHE_DIR, DOWNLOADS_DIR, Library, MODELS_DIR, REGISTRY_FILE};
use setup::{EventResult, Events, Placed, Watched};
pub use setup::{LIMIT_REASON, system_budget};
use verifier::{Scope, Verifier, VerifierOptions};

/// How the user wants changes noticed (`--watch auto|events|poll|off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchOption {
    /// File events, falling back to polling (with the reason) where they cannot work.
    #[default]
    Auto,
    /// File events only; where they cannot work, nothing is watched (and that is said).
    Events,
    /// Polling only (for network file systems, where events never come).
    Poll,
    /// No watching: the TTL and refreshes only.
    Off,
}

impl std::str::FromStr for WatchOption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(WatchOption::Auto),
            "events" => Ok(WatchOption::Events),
            "poll" => Ok(WatchOption::Poll),
            "off" => Ok(WatchOption::Off),
            _ => Err(format!(
                "unknown watch mode {s:?}; expected auto, events, poll or off"
            )),
        }
    }
}

/// How changes are noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum WatchMode {
    /// Watches are being set up: events flow for the folders watched so far; a change
    /// elsewhere may be unseen until the set-up ends and the scan after it.
    Starting,
    /// File-system events: changes anywhere in the library show up within about a second,
    /// and only the models touched are rescanned.
    Events,
    /// Polling: the verifier re-checks every model folder (stats only) within a stated
    /// period, so any change shows up within it.
    Polling {
        /// Why events are not used.
        reason: String,
    },
    /// File events for the model folders the system's watch limit covers, and the
    /// verifier for the rest (re-checked within its period).
    Hybrid {
        /// Model folders polled rather than watched.
        polled: usize,
        /// Why they are not watched.
        reason: String,
    },
    /// Not watching (the command line, tests, `--watch off`, or events that failed with
    /// `--watch events`).
    Off,
}

impl std::fmt::Display for WatchMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchMode::Starting => f.write_str("starting to watch file events"),
            WatchMode::Events => f.write_str("watching file events"),
            WatchMode::Polling { reason } => write!(f, "polling modification times ({reason})"),
            WatchMode::Hybrid { polled, reason } => write!(
                f,
                "watching file events; polling modification times of {polled} model folder{} ({reason})",
                if *polled == 1 { "" } else { "s" }
            ),
            WatchMode::Off => f.write_str("not watching"),
        }
    }
}

/// The longest a change can take to show with file events: the shells' tick (200 ms) and
/// a selective rescan, rounded up.
pub const EVENTS_BOUND_SECS: f64 = 1.0;

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

/// Runs right before the watches are set up, on the set-up thread (tests use it to hold
/// the set-up and prove that nothing waits for it).
pub type SetupHook = Arc<dyn Fn() + Send + Sync>;

/// What the set-up thread hands back.
struct Setup {
    events: Result<Watched, String>,
    /// `None` when the set-up ran again and left the stores' watchers as they were.
    stores: Option<Vec<(usize, StoreWatcher)>>,
}

/// What [`LibraryWatcher::poll_setup`] found: the set-up ended.
pub struct SetupDone {
    /// Watchers of the stores that could be watched, by the index given to `start`
    /// (`None`: the set-up ran again, after lost events, and the stores' watchers stay).
    pub stores: Option<Vec<(usize, StoreWatcher)>>,
}

/// A watcher on one library.
pub struct LibraryWatcher {
    library: Library,
    option: WatchOption,
    mode: WatchMode,
    /// Why nothing is watched although watching was asked for.
    failure: Option<String>,
    /// Events; live from the moment the set-up thread made the watcher, so events for
    /// folders already watched are kept while the set-up goes on.
    events: Option<Receiver<EventResult>>,
    /// Keeps the watches alive once they are all set up.
    notifier: Option<Events>,
    /// Watches the budget has left (an estimate; the kernel has the last word).
    left: usize,
    /// Model folders that appeared in events while the watches were being set up: each is
    /// watched (or polled) once the set-up ends, before the scan that follows it.
    pending: BTreeSet<String>,
    /// In the hybrid mode, the model folders file events do not cover; the verifier
    /// re-checks exactly these. Only grows (a name gone from disk has no row to check).
    polled: Arc<Mutex<HashSet<String>>>,
    /// The set-up thread's answer, while it runs.
    setup: Option<Receiver<Setup>>,
    /// The round-robin verifier, in polling and hybrid modes.
    verifier: Option<Verifier>,
    /// What polling needs to start a verifier.
    poll: PollInputs,
}

/// What a verifier needs: the listing to check against, a clock and its options.
#[derive(Clone)]
pub struct PollInputs {
    /// The latest full listing.
    pub snapshot: SnapshotHandle,
    /// The service's clock.
    pub clock: Arc<dyn Clock>,
    /// Period and pacing.
    pub options: VerifierOptions,
    /// The most folders file events may watch (`None`: [`system_budget`]).
    pub budget: Option<usize>,
}

impl std::fmt::Debug for LibraryWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibraryWatcher")
            .field("library", &self.library)
            .field("mode", &self.mode)
            .finish()
    }
}

impl LibraryWatcher {
    /// Starts watching `library` as `option` says, and the stores at `stores` (index,
    /// root) with file events. Returns at once: with events, the watches are set up on a
    /// thread of its own (mode [`WatchMode::Starting`] until [`Self::poll_setup`] says it
    /// ended); with `Poll`, the verifier starts now.
    pub fn start(
        library: &Library,
        option: WatchOption,
        stores: Vec<(usize, PathBuf)>,
        poll: PollInputs,
        hook: Option<SetupHook>,
    ) -> LibraryWatcher {
        let mut watcher = LibraryWatcher {
            library: library.clone(),
            option,
            mode: WatchMode::Off,
            failure: None,
            events: None,
            notifier: None,
            left: 0,
            pending: BTreeSet::new(),
            polled: Arc::default(),
            setup: None,
            verifier: None,
            poll,
        };
        match option {
            WatchOption::Off => {}
            WatchOption::Poll => watcher.start_polling("asked for with --watch poll".into()),
            WatchOption::Auto | WatchOption::Events => watcher.start_setup(Some(stores), hook),
        }
        watcher
    }

    /// Sets up the watches on a thread of their own; events flow from the first watch on.
    fn start_setup(&mut self, stores: Option<Vec<(usize, PathBuf)>>, hook: Option<SetupHook>) {
        let (events_tx, events_rx) = mpsc::channel();
        let (setup_tx, setup_rx) = mpsc::channel();
        let root = self.library.root().to_path_buf();
        let budget = self.poll.budget.unwrap_or_else(system_budget);
        let spawned = std::thread::Builder::new()
            .name("model-library-watch-setup".into())
            .spawn(move || {
                if let Some(hook) = hook {
                    hook();
                }
                let events = setup::watch_library(&root, events_tx, budget);
                let stores = stores.map(|stores| {
                    stores
                        .into_iter()
                        .filter_map(|(i, root)| StoreWatcher::start(&root).map(|w| (i, w)))
                        .collect()
                });
                let _ = setup_tx.send(Setup { events, stores });
            });
        match spawned {
            Ok(_) => {
                self.mode = WatchMode::Starting;
                self.events = Some(events_rx);
                self.setup = Some(setup_rx);
            }
            Err(e) => self.events_failed(format!("cannot start watching: {e}")),
        }
    }

    /// A watcher that only polls (for file systems known not to deliver events).
    pub fn polling(library: &Library, reason: String, poll: PollInputs) -> LibraryWatcher {
        let mut watcher = Self::start(library, WatchOption::Off, Vec::new(), poll, None);
        watcher.option = WatchOption::Poll;
        watcher.start_polling(reason);
        watcher
    }

    fn start_polling(&mut self, reason: String) {
        self.verifier = Some(self.new_verifier(Scope::All));
        self.mode = WatchMode::Polling { reason };
    }

    fn new_verifier(&self, scope: Scope) -> Verifier {
        Verifier::start(
            self.library.clone(),
            self.poll.snapshot.clone(),
            Arc::clone(&self.poll.clock),
            self.poll.options.clone(),
            scope,
        )
    }

    /// Events cannot be used: poll instead (`Auto`), or say so and watch nothing.
    fn events_failed(&mut self, reason: String) {
        self.events = None;
        self.notifier = None;
        self.setup = None;
        self.pending.clear();
        self.polled = Arc::default();
        if self.option == WatchOption::Events {
            self.verifier = None;
            self.mode = WatchMode::Off;
            self.failure = Some(format!("file events failed: {reason}"));
        } else {
            self.start_polling(reason);
        }
    }

    /// Model folders beyond the budget: polled beside the events (`Auto`: the hybrid mode),
    /// or, with `--watch events`, nothing is watched and that is said.
    fn poll_some(&mut self, names: impl IntoIterator<Item = String>) {
        let mut polled = self.polled.lock().unwrap_or_else(|e| e.into_inner());
        polled.extend(names);
        let count = polled.len();
        drop(polled);
        if count == 0 || matches!(self.mode, WatchMode::Polling { .. } | WatchMode::Off) {
            return;
        }
        if self.option == WatchOption::Events {
            self.events_failed(LIMIT_REASON.into());
            return;
        }
        if self.verifier.is_none() {
            self.verifier = Some(self.new_verifier(Scope::Only(Arc::clone(&self.polled))));
        }
        self.mode = WatchMode::Hybrid {
            polled: count,
            reason: LIMIT_REASON.into(),
        };
    }

    /// Whether the set-up thread finished since the last call; when it did, the mode is
    /// now [`WatchMode::Events`] (or hybrid), or polling (or off) with the reason.
    pub fn poll_setup(&mut self) -> Option<SetupDone> {
        let setup = self.setup.as_ref()?;
        let done = match setup.try_recv() {
            Ok(done) => done,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Setup {
                events: Err("the watch set-up thread stopped".into()),
                stores: None,
            },
        };
        self.setup = None;
        match done.events {
            Ok(watched) => {
                self.notifier = Some(watched.events);
                self.left = watched.left;
                self.mode = WatchMode::Events;
                self.poll_some(watched.polled);
                // Folders that appeared while the set-up ran.
                for top in watched.absent {
                    self.place_top_level(top);
                }
                let pending = std::mem::take(&mut self.pending);
                self.place_models(pending);
            }
            Err(reason) => self.events_failed(reason),
        }
        Some(SetupDone {
            stores: done.stores,
        })
    }

    /// Watches (or polls) the model folders `names` that are on disk now: folders that
    /// appeared, or came back, after the set-up. Must run before those models are
    /// rescanned, so that nothing written after the rescan can go unseen.
    fn place_models(&mut self, names: BTreeSet<String>) {
        let Some(events) = self.notifier.as_mut() else {
            if self.setup.is_some() {
                self.pending.extend(names);
            }
            return;
        };
        let models = self.library.models_dir();
        let beyond: Vec<String> = names
            .into_iter()
            .filter(|name| {
                setup::watch_tree(events, &models.join(name), &mut self.left) == Placed::Refused
            })
            .collect();
        self.poll_some(beyond);
    }

    /// A top-level folder (`.downloads/`, `.cache/`, `models/`) appeared or was replaced:
    /// watch it again (for `models/`, with every model folder in it not watched yet).
    fn place_top_level(&mut self, name: &str) {
        let Some(events) = self.notifier.as_mut() else {
            return;
        };
        let root = self.library.root().to_path_buf();
        if name == MODELS_DIR {
            // Only folders not watched yet: an event on `models/` itself (a `touch`) must
            // not count every model against the budget a second time.
            let _ = events.watch(&root.join(MODELS_DIR));
            let watched: HashSet<PathBuf> = events.watched_paths().into_iter().collect();
            let polled = self
                .polled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let models = self.library.models_dir();
            let names = setup::model_names(&models)
                .into_iter()
                .filter(|n| !polled.contains(n) && !watched.contains(&models.join(n)))
                .collect();
            self.place_models(names);
        } else {
            let placed = if name == CACHE_DIR {
                setup::watch_cache(events, &root, &mut self.left)
            } else {
                setup::watch_tree(events, &root.join(name), &mut self.left)
            };
            if placed == Placed::Refused {
                self.events_failed(LIMIT_REASON.into());
            }
        }
    }

    /// A folder appeared inside a watched tree (`path`; `model` is the model folder it is
    /// in, or `None` in `.downloads/`): watch it and everything in it. Beyond the budget,
    /// its model moves to polling as a whole.
    fn place_folder(&mut self, path: &Path, model: Option<&str>) {
        let Some(events) = self.notifier.as_mut() else {
            return; // the set-up's own walk, or the scan after it, covers it
        };
        if let Some(id) = model
            && self
                .polled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(id)
        {
            return; // the verifier covers it
        }
        if setup::watch_tree(events, path, &mut self.left) != Placed::Refused {
            return;
        }
        match model {
            Some(id) => {
                // Unwatching the model folder removes every watch below it.
                let _ = events.unwatch(&self.library.models_dir().join(id));
                self.poll_some([id.to_string()]);
            }
            None => self.events_failed(LIMIT_REASON.into()),
        }
    }

    /// The active mode.
    pub fn mode(&self) -> &WatchMode {
        &self.mode
    }

    /// How the watching is described to the user: the mode, and why nothing is watched
    /// when watching was asked for and failed.
    pub fn describe(&self) -> String {
        match &self.failure {
            Some(why) => format!("{} ({why})", self.mode),
            None => self.mode.to_string(),
        }
    }

    /// The longest a change on disk can stay unseen, in seconds: about one with events,
    /// the verifier's period when polling (the longer of both in the hybrid mode), `None`
    /// while watches are set up or when nothing is watched.
    pub fn freshness_bound_secs(&self) -> Option<f64> {
        match self.mode {
            WatchMode::Events => Some(EVENTS_BOUND_SECS),
            WatchMode::Polling { .. } => self.verifier.as_ref().map(|v| v.bound_secs()),
            WatchMode::Hybrid { .. } => self
                .verifier
                .as_ref()
                .map(|v| v.bound_secs().max(EVENTS_BOUND_SECS)),
            WatchMode::Starting | WatchMode::Off => None,
        }
    }

    /// When the verifier's last whole pass over the library started (clock time), in
    /// polling mode.
    pub fn last_verified(&self) -> Option<f64> {
        self.verifier.as_ref().and_then(|v| v.last_pass())
    }

    /// The verifier, in polling mode (for benchmarks: its last pass's busy time).
    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// What changed since the last call (never blocks): event paths mapped to models, or
    /// the verifier's findings. Folders that appeared are watched (or their models polled)
    /// before this returns. A watch error switches to polling (or off); events lost to an
    /// overflowing queue start the set-up again (folders made meanwhile may be unwatched).
    pub fn drain(&mut self) -> Changes {
        let mut changes = Changes::default();
        let mut seen = Seen::default();
        let mut failed: Option<String> = None;
        if let Some(rx) = &self.events {
            for result in rx.try_iter() {
                match result {
                    // Reads (our own scans open every folder) change nothing.
                    Ok(event) if is_read_only(&event.kind) => {}
                    Ok(event) => {
                        if event.need_rescan() {
                            changes.everything = true;
                            seen.overflow = true;
                        }
                        for path in &event.paths {
                            classify(&self.library, path, &mut changes);
                            seen.note(&self.library, &event.kind, path);
                        }
                    }
                    Err(e) => {
                        changes.everything = true;
                        failed = Some(e.to_string());
                    }
                }
            }
        }
        if let Some(reason) = failed {
            self.events_failed(format!("the watcher failed: {reason}"));
        } else if seen.overflow && self.notifier.is_some() {
            self.restart();
        } else {
            self.apply_seen(seen);
        }
        if let Some(verifier) = &mut self.verifier {
            verifier.drain_into(&mut changes);
        }
        changes
    }

    /// Sets the watches up again from scratch (after events were lost).
    fn restart(&mut self) {
        self.notifier = None;
        self.events = None;
        self.verifier = None;
        self.polled = Arc::default();
        self.start_setup(None, None);
    }

    /// Keeps the watches in step with the folders events saw come and go.
    fn apply_seen(&mut self, seen: Seen) {
        for name in seen.top_level {
            self.place_top_level(&name);
        }
        self.place_models(seen.models);
        for (path, model) in seen.folders {
            self.place_folder(&path, model.as_deref());
        }
    }
}

/// Folders that events showed appearing, going or being replaced, whose watches may need
/// to follow.
#[derive(Default)]
struct Seen {
    /// Top-level folders (`models`, `.downloads`, `.cache`).
    top_level: BTreeSet<String>,
    /// Model folders (`models/<name>` itself).
    models: BTreeSet<String>,
    /// Entries made or moved in deeper down, with the model they are in (`None` in
    /// `.downloads/`): the folders among them are to be watched.
    folders: Vec<(PathBuf, Option<String>)>,
    /// The kernel's queue overflowed: events were lost.
    overflow: bool,
}

impl Seen {
    /// Notes `path` if it is a top-level folder, a model folder itself, or something made
    /// (or moved in) deeper down.
    fn note(&mut self, library: &Library, kind: &notify::EventKind, path: &Path) {
        use notify::EventKind;
        let Ok(rel) = path.strip_prefix(library.root()) else {
            return;
        };
        let parts: Vec<&OsStr> = rel.iter().take(3).collect();
        let top_level = |p: &OsStr| {
            [MODELS_DIR, DOWNLOADS_DIR, CACHE_DIR]
                .iter()
                .any(|t| p == OsStr::new(t))
        };
        // Made or moved in (a write to a file is neither: no stat for those).
        let made = matches!(
            kind,
            EventKind::Create(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
        );
        match parts.as_slice() {
            [top] if top_level(top) => {
                self.top_level.insert(top.to_string_lossy().into_owned());
            }
            [models, name] if *models == OsStr::new(MODELS_DIR) => {
                if let Some(name) = name.to_str().filter(|n| !n.starts_with('.')) {
                    self.models.insert(name.to_string());
                }
            }
            [models, name, _] if made && *models == OsStr::new(MODELS_DIR) => {
                if let Some(name) = name.to_str() {
                    self.folders
                        .push((path.to_path_buf(), Some(name.to_string())));
                }
            }
            // `.cache/imports` made: its journals are to be seen (nothing else in `.cache`
            // is watched).
            [cache, imports]
                if made
                    && *cache == OsStr::new(CACHE_DIR)
                    && *imports == OsStr::new(crate::library::layout::IMPORTS_DIR) =>
            {
                self.top_level.insert(CACHE_DIR.to_string());
            }
            [downloads, _, ..] if made && *downloads == OsStr::new(DOWNLOADS_DIR) => {
                self.folders.push((path.to_path_buf(), None));
            }
            _ => {}
        }
    }
}

/// A watch on one read-only store's folder: it only tells whether anything changed.
pub struct StoreWatcher {
    _watcher: notify::RecommendedWatcher,
    events: Receiver<EventResult>,
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
        let (tx, events) = mpsc::channel();
        let mut watcher = setup::new_notify(tx).ok()?;
        watcher.watch(root, RecursiveMode::Recursive).ok()?;
        Some(StoreWatcher {
            _watcher: watcher,
            events,
        })
    }

    /// Whether anything but reads happened since the last call (never blocks).
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        for result in self.events.try_iter() {
            match result {
                Ok(event) => changed |= !is_read_only(&event.kind),
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
    } else if first == CACHE_DIR {
        // The app's own files; an import journal appearing or going marks its model.
        if parts
            .next()
            .is_some_and(|p| p == crate::library::layout::IMPORTS_DIR)
            && let Some(id) = parts
                .next()
                .and_then(|p| p.to_str())
                .and_then(|p| p.strip_suffix(".json"))
            && parts.next().is_none()
            && crate::library::layout::validate_id(id).is_ok()
        {
            changes.models.insert(id.to_string());
        }
    } else if first.starts_with('.') {
        // Temp files (registry temp files are followed by a rename that names the
        // registry itself).
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
