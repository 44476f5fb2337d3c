//! The library's file watcher on Linux's inotify, keeping its own bookkeeping: each watched
//! folder is one node — its parent's descriptor and its own name, kept in one buffer with
//! every other node's — so a path is rebuilt only when an event names it. notify kept
//! about three paths per watched folder (~450 B each at 100 000 models); a node is 16 bytes
//! and its name. Events are reported as notify's
//! types, so the rest of the watcher does not change. Watches only; never follows a link;
//! reads nothing but the events.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use inotify::{EventMask, Inotify, WatchMask, Watches};
use notify::event::{
    AccessKind, AccessMode, CreateKind, DataChange, EventKind, Flag, MetadataKind, ModifyKind,
    RemoveKind, RenameMode,
};
use notify::{ErrorKind, Event};

/// What the reader reports.
pub(super) type EventResult = notify::Result<Event>;

/// No parent: a folder watched by its absolute path.
const TOP: i32 = -1;

/// One watched folder.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// The descriptor of the folder it is in, or [`TOP`].
    parent: i32,
    /// Its name in that folder (its whole path for a top node): where it starts in
    /// [`Nodes::names`], and its length.
    start: u32,
    len: u32,
}

/// Nodes by descriptor, in a vector sorted by descriptor: the kernel hands descriptors out
/// in increasing order, so a new watch is pushed at the end (a hash map's slots — a power of
/// two of them, at most 7/8 full — took up to twice the room). A removed node leaves a
/// tombstone (its parent [`GONE`]) until tombstones are half of the vector. Grows by an
/// eighth at a time.
#[derive(Debug, Default)]
struct WdMap {
    /// Sorted by descriptor, tombstones included.
    slots: Vec<(i32, Node)>,
    /// Tombstones in `slots`.
    gone: usize,
}

/// The parent of a removed node (descriptors are positive, [`TOP`] is -1).
const GONE: i32 = i32::MIN;

impl WdMap {
    fn find(&self, wd: i32) -> Result<usize, usize> {
        self.slots.binary_search_by_key(&wd, |s| s.0)
    }

    fn get(&self, wd: i32) -> Option<&Node> {
        let i = self.find(wd).ok()?;
        Some(&self.slots[i].1).filter(|n| n.parent != GONE)
    }

    fn contains_key(&self, wd: i32) -> bool {
        self.get(wd).is_some()
    }

    /// Records `node` as `wd`, giving back the node it replaces.
    fn insert(&mut self, wd: i32, node: Node) -> Option<Node> {
        match self.find(wd) {
            Ok(i) => {
                let old = std::mem::replace(&mut self.slots[i].1, node);
                if old.parent == GONE {
                    self.gone -= 1;
                    return None;
                }
                Some(old)
            }
            Err(i) => {
                if self.slots.len() == self.slots.capacity() {
                    self.slots.reserve_exact(self.slots.len() / 8 + 64);
                }
                self.slots.insert(i, (wd, node));
                None
            }
        }
    }

    fn remove(&mut self, wd: i32) -> Option<Node> {
        let i = self.find(wd).ok()?;
        if self.slots[i].1.parent == GONE {
            return None;
        }
        let old = self.slots[i].1;
        self.slots[i].1.parent = GONE;
        self.gone += 1;
        if self.gone * 2 > self.slots.len() {
            self.slots.retain(|s| s.1.parent != GONE);
            self.slots
                .shrink_to(self.slots.len() + self.slots.len() / 8);
            self.gone = 0;
        }
        Some(old)
    }

    fn iter(&self) -> impl Iterator<Item = (i32, &Node)> {
        self.slots
            .iter()
            .filter(|s| s.1.parent != GONE)
            .map(|(wd, n)| (*wd, n))
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Node> {
        self.slots
            .iter_mut()
            .filter(|s| s.1.parent != GONE)
            .map(|s| &mut s.1)
    }
}

/// Watched folders by descriptor, shared by the notifier and its reader.
#[derive(Debug, Default)]
struct Nodes {
    by_wd: WdMap,
    /// Every node's name, end to end (one allocation for all, not one per folder).
    /// Invariant: each node of `by_wd` names a slice of it; `garbage` counts the bytes no
    /// node names any more, compacted away once they are half of it.
    names: Vec<u8>,
    garbage: usize,
    /// Descriptor of each top node's path (few: the library, `models/`, …).
    tops: HashMap<PathBuf, i32>,
}

impl Nodes {
    /// The name of `node`.
    fn name(&self, node: &Node) -> &OsStr {
        let start = node.start as usize;
        OsStr::from_bytes(&self.names[start..start + node.len as usize])
    }

    /// Records the folder watched as `wd`: `name` in the folder watched as `parent`.
    fn insert(&mut self, wd: i32, parent: i32, name: &OsStr) {
        let bytes = name.as_bytes();
        let node = Node {
            parent,
            start: self.names.len() as u32,
            len: bytes.len() as u32,
        };
        if self.names.capacity() - self.names.len() < bytes.len() {
            self.names
                .reserve_exact(self.names.len() / 8 + bytes.len() + 4096);
        }
        self.names.extend_from_slice(bytes);
        if let Some(old) = self.by_wd.insert(wd, node) {
            self.garbage += old.len as usize;
            self.compact_if_due();
        }
    }

    /// Forgets the folder watched as `wd`; whether it was known.
    fn remove(&mut self, wd: i32) -> bool {
        let Some(old) = self.by_wd.remove(wd) else {
            return false;
        };
        self.garbage += old.len as usize;
        self.compact_if_due();
        true
    }

    /// Compacts once names no node uses are half of the buffer (and worth it).
    fn compact_if_due(&mut self) {
        if self.garbage > 64 * 1024 && self.garbage * 2 > self.names.len() {
            self.compact();
        }
    }

    /// Copies the names still in use into a new buffer.
    fn compact(&mut self) {
        let mut names = Vec::with_capacity(self.names.len() - self.garbage);
        for node in self.by_wd.values_mut() {
            let start = node.start as usize;
            let name = &self.names[start..start + node.len as usize];
            node.start = names.len() as u32;
            names.extend_from_slice(name);
        }
        self.names = names;
        self.garbage = 0;
    }

    /// The path of the folder watched as `wd`.
    fn path(&self, wd: i32) -> Option<PathBuf> {
        let mut names: Vec<&OsStr> = Vec::new();
        let mut at = wd;
        loop {
            let node = self.by_wd.get(at)?;
            names.push(self.name(node));
            if node.parent == TOP {
                break;
            }
            at = node.parent;
            if names.len() > 4096 {
                return None; // a cycle would be a bug; never loop for ever
            }
        }
        let mut path = PathBuf::new();
        for name in names.iter().rev() {
            path.push(name);
        }
        Some(path)
    }

    /// The descriptor of the folder `name` in the folder watched as `parent`.
    fn child(&self, parent: i32, name: &OsStr) -> Option<i32> {
        self.by_wd
            .iter()
            .find(|(_, n)| n.parent == parent && self.name(n) == name)
            .map(|(wd, _)| wd)
    }

    /// `wd` and every node below it.
    fn subtree(&self, wd: i32) -> Vec<i32> {
        let mut out = vec![wd];
        let mut i = 0;
        while i < out.len() {
            let p = out[i];
            out.extend(
                self.by_wd
                    .iter()
                    .filter(|(_, n)| n.parent == p)
                    .map(|(w, _)| w),
            );
            i += 1;
        }
        out
    }
}

/// What a watch asks the kernel for: everything but reads.
fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
}

/// The watcher: adds and removes watches; a thread of its own reads the events. Stops
/// when dropped.
pub(super) struct Notifier {
    watches: Watches,
    /// The inotify instance (a second descriptor of the reader's), to remove watches by
    /// their number: nodes keep no handle of their own (16 bytes a folder).
    fd: OwnedFd,
    nodes: Arc<Mutex<Nodes>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn error(kind: ErrorKind, path: &Path) -> notify::Error {
    notify::Error::new(kind).add_path(path.to_path_buf())
}

fn io_error(e: std::io::Error, path: &Path) -> notify::Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => error(ErrorKind::MaxFilesWatch, path),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP) => {
            error(ErrorKind::PathNotFound, path)
        }
        _ => notify::Error::io(e).add_path(path.to_path_buf()),
    }
}

impl Notifier {
    /// A watcher reporting to `tx`, watching nothing yet.
    pub fn new(tx: Sender<EventResult>) -> std::io::Result<Notifier> {
        let inotify = Inotify::init()?;
        let watches = inotify.watches();
        let fd = inotify.as_fd().try_clone_to_owned()?;
        let nodes = Arc::new(Mutex::new(Nodes::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            inotify,
            nodes: Arc::clone(&nodes),
            stop: Arc::clone(&stop),
            tx,
        };
        std::thread::Builder::new()
            .name("model-library-inotify".into())
            .spawn(move || reader.run())?;
        Ok(Notifier {
            watches,
            fd,
            nodes,
            stop,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches the folder `path` (its entries; subfolders are watched each on their own).
    /// A folder whose parent is watched becomes a node of it (a name, not a path); any
    /// other is a top node, kept by its path.
    pub fn watch(&mut self, path: &Path) -> notify::Result<()> {
        let handle = self
            .watches
            .add(path, mask())
            .map_err(|e| io_error(e, path))?;
        let wd = handle.get_watch_descriptor_id();
        let parent = path.parent().and_then(|p| self.parent_descriptor(p));
        let mut nodes = self.lock();
        match (parent, path.file_name()) {
            (Some(parent), Some(name)) if parent != wd => nodes.insert(wd, parent, name),
            _ => {
                nodes.tops.insert(path.to_path_buf(), wd);
                nodes.insert(wd, TOP, path.as_os_str());
            }
        }
        Ok(())
    }

    /// The descriptor of the watched folder `dir`: a top node by its path, or, inside a
    /// watched tree (folders are watched before their subfolders), what the kernel says.
    fn parent_descriptor(&mut self, dir: &Path) -> Option<i32> {
        {
            let nodes = self.lock();
            if let Some(wd) = nodes.tops.get(dir) {
                return Some(*wd);
            }
            if !nodes.tops.keys().any(|t| dir.starts_with(t)) {
                return None;
            }
        }
        self.descriptor(dir)
    }

    /// The descriptor of a watched folder, found through the kernel (adding a watch the
    /// folder already has changes nothing and returns its descriptor).
    pub fn descriptor(&mut self, path: &Path) -> Option<i32> {
        let handle = self.watches.add(path, mask() | WatchMask::MASK_ADD).ok()?;
        let wd = handle.get_watch_descriptor_id();
        if self.lock().by_wd.contains_key(wd) {
            Some(wd)
        } else {
            let _ = self.watches.remove(handle); // it was not watched: leave it so
            None
        }
    }

    /// Stops watching the folder at `path` and everything watched below it.
    pub fn unwatch(&mut self, path: &Path) -> notify::Result<()> {
        let wd = self
            .descriptor(path)
            .ok_or_else(|| error(ErrorKind::WatchNotFound, path))?;
        let subtree = {
            let mut nodes = self.lock();
            let subtree = nodes.subtree(wd);
            nodes.tops.retain(|_, w| !subtree.contains(w));
            for w in &subtree {
                nodes.remove(*w);
            }
            subtree
        };
        for w in subtree {
            let _ = rustix::fs::inotify::remove_watch(&self.fd, w);
        }
        Ok(())
    }

    /// Every watched folder's path.
    pub fn watched_paths(&self) -> Vec<PathBuf> {
        let nodes = self.lock();
        nodes
            .by_wd
            .iter()
            .filter_map(|(wd, _)| nodes.path(wd))
            .collect()
    }
}

/// The thread that reads the events.
struct Reader {
    inotify: Inotify,
    nodes: Arc<Mutex<Nodes>>,
    stop: Arc<AtomicBool>,
    tx: Sender<EventResult>,
}

impl Reader {
    fn run(mut self) {
        use rustix::event::{PollFd, PollFlags, poll};
        let mut buffer = vec![0u8; 64 * 1024];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        while !self.stop.load(Ordering::Relaxed) {
            {
                let fd = self.inotify.as_fd();
                let mut fds = [PollFd::new(&fd, PollFlags::IN)];
                if poll(&mut fds, Some(&timeout)).unwrap_or(0) == 0 {
                    continue;
                }
            }
            let events: Vec<(i32, EventMask, Option<OsString>)> =
                match self.inotify.read_events(&mut buffer) {
                    Ok(events) => events
                        .map(|e| {
                            (
                                e.wd.get_watch_descriptor_id(),
                                e.mask,
                                e.name.map(OsStr::to_os_string),
                            )
                        })
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        let _ = self.tx.send(Err(notify::Error::io(e)));
                        return;
                    }
                };
            for (wd, mask, name) in events {
                if self.handle(wd, mask, name.as_deref()).is_err() {
                    return; // nobody listens any more
                }
            }
        }
    }

    /// Reports one kernel event as notify's, and keeps the nodes in step.
    fn handle(&mut self, wd: i32, mask: EventMask, name: Option<&OsStr>) -> Result<(), ()> {
        let send = |tx: &Sender<EventResult>, kind: EventKind, path: PathBuf| {
            tx.send(Ok(Event::new(kind).add_path(path))).map_err(|_| ())
        };
        if mask.contains(EventMask::Q_OVERFLOW) {
            let event = Event::new(EventKind::Other).set_flag(Flag::Rescan);
            return self.tx.send(Ok(event)).map_err(|_| ());
        }
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if mask.contains(EventMask::IGNORED) {
            nodes.remove(wd);
            nodes.tops.retain(|_, w| *w != wd);
            return Ok(());
        }
        let Some(dir) = nodes.path(wd) else {
            return Ok(()); // a watch already forgotten
        };
        let path = name.map_or_else(|| dir.clone(), |n| dir.join(n));
        let is_dir = mask.contains(EventMask::ISDIR);
        // A watched folder moved away: its watches (and those below it) name a path that
        // is no more; they go, and its new place is watched afresh when it is seen.
        if mask.contains(EventMask::MOVED_FROM)
            && is_dir
            && let Some(child) = name.and_then(|n| nodes.child(wd, n))
        {
            for w in nodes.subtree(child) {
                if nodes.remove(w) {
                    let _ = rustix::fs::inotify::remove_watch(&self.inotify, w);
                }
            }
        }
        drop(nodes);
        let kind = if mask.contains(EventMask::CREATE) {
            EventKind::Create(if is_dir {
                CreateKind::Folder
            } else {
                CreateKind::File
            })
        } else if mask.contains(EventMask::DELETE) {
            EventKind::Remove(if is_dir {
                RemoveKind::Folder
            } else {
                RemoveKind::File
            })
        } else if mask.contains(EventMask::MOVED_FROM) {
            EventKind::Modify(ModifyKind::Name(RenameMode::From))
        } else if mask.contains(EventMask::MOVED_TO) {
            EventKind::Modify(ModifyKind::Name(RenameMode::To))
        } else if mask.contains(EventMask::MODIFY) {
            EventKind::Modify(ModifyKind::Data(DataChange::Any))
        } else if mask.contains(EventMask::CLOSE_WRITE) {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
        } else if mask.contains(EventMask::ATTRIB) {
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))
        } else if mask.contains(EventMask::DELETE_SELF) {
            EventKind::Remove(RemoveKind::Folder)
        } else if mask.contains(EventMask::MOVE_SELF) {
            EventKind::Modify(ModifyKind::Name(RenameMode::From))
        } else {
            return Ok(());
        };
        send(&self.tx, kind, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_descriptor_map_keeps_order_tombstones_and_reuse() {
        let node = |parent: i32| Node {
            parent,
            start: 0,
            len: 0,
        };
        let mut map = WdMap::default();
        for wd in [1, 2, 3, 5, 4] {
            assert!(map.insert(wd, node(wd * 10)).is_none());
        }
        let wds: Vec<i32> = map.iter().map(|(wd, _)| wd).collect();
        assert_eq!(
            wds,
            [1, 2, 3, 4, 5],
            "a late lower descriptor goes in its place"
        );
        assert_eq!(map.insert(2, node(99)).map(|n| n.parent), Some(20));
        assert_eq!(map.get(2).map(|n| n.parent), Some(99));
        assert_eq!(map.remove(3).map(|n| n.parent), Some(30));
        assert!(map.get(3).is_none() && !map.contains_key(3));
        assert!(map.remove(3).is_none(), "gone once");
        assert!(map.insert(3, node(31)).is_none(), "a tombstone is no node");
        assert_eq!(map.get(3).map(|n| n.parent), Some(31));
        // Removing most of them compacts the tombstones away; the rest stay found.
        for wd in [1, 2, 3] {
            map.remove(wd);
        }
        assert_eq!(map.slots.len(), 2, "compacted");
        assert_eq!(map.gone, 0);
        assert_eq!(map.get(4).map(|n| n.parent), Some(40));
        assert_eq!(map.get(5).map(|n| n.parent), Some(50));
        for n in map.values_mut() {
            n.start = 7;
        }
        assert!(map.iter().all(|(_, n)| n.start == 7));
    }

    /// A folder inside a watched one is a node of it (kept by name, rebuilt as a path), and
    /// unwatching a folder removes every watch below it.
    #[test]
    fn nodes_follow_their_parents_and_go_with_them() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("lib");
        std::fs::create_dir_all(root.join("m/sub/deeper")).unwrap();
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut n = Notifier::new(tx).unwrap();
        let dirs: Vec<PathBuf> = std::iter::once(root.clone())
            .chain(["m", "m/sub", "m/sub/deeper"].iter().map(|d| root.join(d)))
            .collect();
        for dir in &dirs {
            n.watch(dir).unwrap();
        }
        let mut paths = n.watched_paths();
        paths.sort();
        assert_eq!(paths, dirs);
        assert_eq!(
            n.lock().tops.len(),
            1,
            "only the first folder is kept by its path"
        );
        n.unwatch(&root.join("m")).unwrap();
        let paths = n.watched_paths();
        assert_eq!(paths.len(), 1, "{paths:?}");
        assert!(
            n.descriptor(&root.join("m/sub")).is_none(),
            "its kernel watch went too"
        );
    }

    /// Names of folders no longer watched are compacted away once they are half of the
    /// buffer; the folders still watched keep their paths.
    #[test]
    fn names_of_unwatched_folders_are_compacted_away() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("lib");
        let names: Vec<String> = (0..3_000)
            .map(|i| format!("a-rather-long-model-folder-name-{i:05}"))
            .collect();
        for name in &names {
            std::fs::create_dir_all(root.join(name)).unwrap();
        }
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut n = Notifier::new(tx).unwrap();
        n.watch(&root).unwrap();
        for name in &names {
            n.watch(&root.join(name)).unwrap();
        }
        let full = n.lock().names.len();
        for name in &names[..2_500] {
            n.unwatch(&root.join(name)).unwrap();
        }
        let nodes = n.lock();
        assert!(
            nodes.names.len() < full / 2,
            "{} of {full}",
            nodes.names.len()
        );
        drop(nodes);
        let mut paths = n.watched_paths();
        paths.sort();
        let mut expected: Vec<PathBuf> = std::iter::once(root.clone())
            .chain(names[2_500..].iter().map(|name| root.join(name)))
            .collect();
        expected.sort();
        assert_eq!(paths, expected);
    }
}
