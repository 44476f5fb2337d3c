//! Watching a library for changes, in the mode the user chose ([`WatchOption`]): a
//! recursive file watcher (notify, with notify-debouncer-full settling bursts) whose events
//! are mapped to the model ids they touch, so the service can rescan just those models; or,
//! where events cannot work (the inotify watch limit, a network file system, a watch
//! error, or when asked), a [`verifier`] that re-checks the whole library round-robin with
//! stats alone, within a period it states.
//!
//! Setting up a recursive watch walks the library (seconds at 100 000 models), so it runs
//! on a thread of its own: [`LibraryWatcher::start`] returns at once, events already flow
//! for the folders watched so far, and [`LibraryWatcher::poll_setup`] reports when the
//! watches are all in place (or why events cannot be used). Until then nobody may claim a
//! freshness bound. Reads nothing itself but event paths (the verifier stats); ignores the
//! app's own `.cache/` writes except import journals, which mark a model mid-import.

pub mod verifier;

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Duration;

use notify::RecursiveMode;
use notify::event::EventKindMask;
use notify_debouncer_full::{DebounceEventResult, Debouncer, NoCache, new_debouncer_opt};
use serde::Serialize;

use crate::library::Clock;
use crate::library::cache::SnapshotHandle;
use crate::library::layout::{CACHE_DIR, DOWNLOADS_DIR, Library, MODELS_DIR, REGISTRY_FILE};
use verifier::{Verifier, VerifierOptions};

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
            WatchMode::Off => f.write_str("not watching"),
        }
    }
}

/// The longest a change can take to show with file events: the debounce, the shells'
/// tick (200 ms) and a selective rescan, rounded up.
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
    events: Result<Debouncer<notify::RecommendedWatcher, NoCache>, String>,
    stores: Vec<(usize, StoreWatcher)>,
}

/// What [`LibraryWatcher::poll_setup`] found: the set-up ended.
pub struct SetupDone {
    /// Watchers of the stores that could be watched, by the index given to `start`.
    pub stores: Vec<(usize, StoreWatcher)>,
}

/// A watcher on one library.
pub struct LibraryWatcher {
    library: Library,
    option: WatchOption,
    mode: WatchMode,
    /// Why nothing is watched although watching was asked for.
    failure: Option<String>,
    /// Debounced events; live from the moment the set-up thread made the watcher, so
    /// events for folders already watched are kept while the set-up goes on.
    events: Option<Receiver<DebounceEventResult>>,
    /// Keeps the watches alive once they are all set up.
    debouncer: Option<Debouncer<notify::RecommendedWatcher, NoCache>>,
    /// The set-up thread's answer, while it runs.
    setup: Option<Receiver<Setup>>,
    /// The round-robin verifier, in polling mode.
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
            debouncer: None,
            setup: None,
            verifier: None,
            poll,
        };
        match option {
            WatchOption::Off => {}
            WatchOption::Poll => watcher.start_polling("asked for with --watch poll".into()),
            WatchOption::Auto | WatchOption::Events => {
                let (events_tx, events_rx) = mpsc::channel();
                let (setup_tx, setup_rx) = mpsc::channel();
                let root = library.root().to_path_buf();
                let spawned = std::thread::Builder::new()
                    .name("model-library-watch-setup".into())
                    .spawn(move || {
                        if let Some(hook) = hook {
                            hook();
                        }
                        let events = watch_recursively(&root, events_tx);
                        let stores = stores
                            .into_iter()
                            .filter_map(|(i, root)| StoreWatcher::start(&root).map(|w| (i, w)))
                            .collect();
                        let _ = setup_tx.send(Setup { events, stores });
                    });
                match spawned {
                    Ok(_) => {
                        watcher.mode = WatchMode::Starting;
                        watcher.events = Some(events_rx);
                        watcher.setup = Some(setup_rx);
                    }
                    Err(e) => watcher.events_failed(format!("cannot start watching: {e}")),
                }
            }
        }
        watcher
    }

    /// A watcher that only polls (for file systems known not to deliver events).
    pub fn polling(library: &Library, reason: String, poll: PollInputs) -> LibraryWatcher {
        let mut watcher = Self::start(library, WatchOption::Off, Vec::new(), poll, None);
        watcher.option = WatchOption::Poll;
        watcher.start_polling(reason);
        watcher
    }

    fn start_polling(&mut self, reason: String) {
        self.verifier = Some(Verifier::start(
            self.library.clone(),
            self.poll.snapshot.clone(),
            Arc::clone(&self.poll.clock),
            self.poll.options.clone(),
        ));
        self.mode = WatchMode::Polling { reason };
    }

    /// Events cannot be used: poll instead (`Auto`), or say so and watch nothing.
    fn events_failed(&mut self, reason: String) {
        self.events = None;
        self.debouncer = None;
        self.setup = None;
        if self.option == WatchOption::Events {
            self.mode = WatchMode::Off;
            self.failure = Some(format!("file events failed: {reason}"));
        } else {
            self.start_polling(reason);
        }
    }

    /// Whether the set-up thread finished since the last call; when it did, the mode is
    /// now [`WatchMode::Events`], or polling (or off) with the reason.
    pub fn poll_setup(&mut self) -> Option<SetupDone> {
        let setup = self.setup.as_ref()?;
        let done = match setup.try_recv() {
            Ok(done) => done,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => Setup {
                events: Err("the watch set-up thread stopped".into()),
                stores: Vec::new(),
            },
        };
        self.setup = None;
        match done.events {
            Ok(debouncer) => {
                self.debouncer = Some(debouncer);
                self.mode = WatchMode::Events;
            }
            Err(reason) => self.events_failed(reason),
        }
        Some(SetupDone {
            stores: done.stores,
        })
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
    /// the verifier's period when polling, `None` while watches are set up or when
    /// nothing is watched.
    pub fn freshness_bound_secs(&self) -> Option<f64> {
        match self.mode {
            WatchMode::Events => Some(EVENTS_BOUND_SECS),
            WatchMode::Polling { .. } => self.verifier.as_ref().map(|v| v.bound_secs()),
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
    /// the verifier's findings. A watch error switches to polling (or off).
    pub fn drain(&mut self) -> Changes {
        let mut changes = Changes::default();
        if let Some(verifier) = &mut self.verifier {
            verifier.drain_into(&mut changes);
        }
        let mut failed: Option<String> = None;
        if let Some(rx) = &self.events {
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
            self.events_failed(format!("the watcher failed: {reason}"));
        }
        changes
    }
}

type EventStream = (
    Debouncer<notify::RecommendedWatcher, NoCache>,
    Receiver<DebounceEventResult>,
);

/// A debounced recursive watch on `root`, reporting to `tx`.
fn watch_recursively(
    root: &Path,
    tx: mpsc::Sender<DebounceEventResult>,
) -> Result<Debouncer<notify::RecommendedWatcher, NoCache>, String> {
    // No open or read-only close events: every folder a scan opens (and every header the
    // app reads) would otherwise be an event, and at 100 000 models they overflow the
    // kernel's queue, which forces a full rescan — which opens every folder again.
    let config = notify::Config::default()
        .with_event_kinds(EventKindMask::CORE | EventKindMask::ACCESS_CLOSE);
    // No file-id cache: renames come paired from inotify, and the cache would walk and
    // remember every file of the library.
    let mut debouncer = new_debouncer_opt::<_, notify::RecommendedWatcher, NoCache>(
        DEBOUNCE,
        None,
        tx,
        NoCache::new(),
        config,
    )
    .map_err(|e| e.to_string())?;
    debouncer
        .watch(root, RecursiveMode::Recursive)
        .map_err(|e| match &e.kind {
            notify::ErrorKind::MaxFilesWatch => "the system's limit on watched folders is \
                 reached (fs.inotify.max_user_watches)"
                .to_string(),
            _ => format!("cannot watch {}: {e}", root.display()),
        })?;
    Ok(debouncer)
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
        let (tx, rx) = mpsc::channel();
        watch_recursively(root, tx)
            .ok()
            .map(|debouncer| StoreWatcher {
                stream: (debouncer, rx),
            })
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
