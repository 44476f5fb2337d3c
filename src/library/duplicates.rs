//! Duplicates: the same bytes kept more than once across the library and every store, and
//! replacing the extra copies with hard links to one of them.
//!
//! Finding ([`find`]): files are grouped by size first — only a size two files share needs
//! a hash — then by what their bytes hash to (SHA-256, through the verify hash cache, so a
//! second run reads nothing that did not change). Paths that are already hard links of one
//! file count as one copy. A group's waste is its size times its copies less one.
//!
//! Linking ([`link`]): only an explicit action. Per extra copy: only on the keeper's file
//! system, only when neither file changed in the last minute (a store may be writing it),
//! only after the bytes were compared in full right before, and atomically — a hard link
//! to the keeper made under a temp name beside the copy, then renamed over it — so a kill
//! at any instant leaves every path with the same bytes. Folders are reached from the
//! store's (or library's) root without following links below it. A temp link left by a
//! killed run is removed by the next one (it is provably the keeper's file).
//!
//! Owns: nothing persistent besides what it adds to the hash cache. Must not touch: any
//! file it did not prove identical, and anything outside the listed roots.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use rayon::prelude::*;
use serde::Serialize;

use crate::library::crashpoint;
use crate::library::fs_safe::{SafeDir, temp_name};
use crate::library::layout::Library;
use crate::library::model::LIBRARY_SOURCE;
use crate::library::sources::SourceScan;
use crate::library::verify::{FileKey, HashCache, Hashed, VerifyProgress, hash_file};
use crate::library::walk::{EntryKind, WalkOptions};

/// Files smaller than this are not looked at by default (configs and tokenizers: many,
/// and they waste little).
pub const DEFAULT_MIN_SIZE: u64 = 1 << 20;

/// A file that may have a twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The file.
    pub path: PathBuf,
    /// The root it was found under (the library, or a store's folder): links are never
    /// followed below it.
    pub root: PathBuf,
    /// Where: `library`, `huggingface`, `ollama`, `lmstudio`.
    pub source: String,
    /// Its size.
    pub size: u64,
}

/// The files of the library's model folders (regular files, not links) of `min_size` bytes
/// or more, and the stores' files counted in their models' sizes.
pub fn candidates(library: &Library, scans: &[SourceScan], min_size: u64) -> Vec<Candidate> {
    let mut out = Vec::new();
    let models = library.models_dir();
    if let Ok(entries) = fs::read_dir(&models) {
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let folder = entry.path();
            crate::library::walk::walk(&folder, WalkOptions::default(), &mut |e| {
                if e.kind == EntryKind::File && e.size >= min_size {
                    out.push(Candidate {
                        path: folder.join(e.rel_path()),
                        root: library.root().to_path_buf(),
                        source: LIBRARY_SOURCE.to_string(),
                        size: e.size,
                    });
                }
            });
        }
    }
    for scan in scans {
        for (path, &size) in scan.blobs.iter().filter(|(_, s)| **s >= min_size) {
            out.push(Candidate {
                path: path.clone(),
                root: scan.root.clone(),
                source: scan.kind.as_str().to_string(),
                size,
            });
        }
    }
    out
}

/// One copy of the bytes: a file, with the other paths that are hard links of it.
#[derive(Debug, Clone, Serialize)]
pub struct Copy {
    /// The file.
    pub path: PathBuf,
    /// Where: `library` or a store.
    pub source: String,
    /// Other paths of the same file (already hard links: no space to save there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_at: Vec<PathBuf>,
    /// Whether it is on the keeper's (the first copy's) file system: only those can
    /// become links.
    pub same_file_system: bool,
    #[serde(skip)]
    root: PathBuf,
    #[serde(skip)]
    key: FileKey,
}

/// Files holding the same bytes.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// What they hash to.
    pub sha256: String,
    /// Each file's size.
    pub size: u64,
    /// The copies, the one to keep first (the library's before the stores', then by path).
    pub copies: Vec<Copy>,
    /// Bytes all but one copy take.
    pub wasted: u64,
    /// Of those, bytes hard links could give back (copies on the keeper's file system).
    pub linkable: u64,
}

/// "1 group of identical files", "3 groups of identical files".
pub fn groups_phrase(n: usize) -> String {
    match n {
        1 => "1 group of identical files".to_string(),
        n => format!("{n} groups of identical files"),
    }
}

/// What [`find`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Groups of identical files, most waste first.
    pub groups: Vec<Group>,
    /// Bytes all extra copies take.
    pub wasted: u64,
    /// Of those, bytes hard links could give back.
    pub linkable: u64,
    /// Files whose size another file shares (the only ones hashed).
    pub hashed: usize,
    /// Of those, files whose hash came from the hash cache.
    pub from_hash_cache: usize,
    /// Files that could not be read (path and why).
    pub unreadable: Vec<(PathBuf, String)>,
}

/// One file (an inode) and its paths.
struct Physical {
    paths: Vec<Candidate>,
    key: FileKey,
}

/// Groups `candidates` by size, then by content (hashing on `threads` threads, through
/// `cache`); stops hashing between pieces once `stop` is set (then fewer groups are known).
pub fn find(
    candidates: Vec<Candidate>,
    cache: &mut HashCache,
    progress: &VerifyProgress,
    stop: &AtomicBool,
    threads: usize,
) -> Report {
    let mut report = Report::default();
    // Size first: only sizes two files share matter; paths of one inode are one file.
    let mut by_size: BTreeMap<u64, Vec<Candidate>> = BTreeMap::new();
    for c in candidates {
        by_size.entry(c.size).or_default().push(c);
    }
    let mut physical: Vec<Physical> = Vec::new();
    for (_, same) in by_size.into_iter().filter(|(_, v)| v.len() > 1) {
        let mut inodes: BTreeMap<(u64, u64), Physical> = BTreeMap::new();
        for c in same {
            match fs::symlink_metadata(&c.path) {
                Ok(m) if m.is_file() => {
                    let key = FileKey::of(&m);
                    inodes
                        .entry((key.dev, key.ino))
                        .or_insert_with(|| Physical {
                            paths: Vec::new(),
                            key,
                        })
                        .paths
                        .push(c);
                }
                Ok(_) => {}
                Err(e) => report.unreadable.push((c.path, e.to_string())),
            }
        }
        if inodes.len() > 1 {
            physical.extend(inodes.into_values());
        }
    }
    // Then content: from the hash cache, else read (in parallel).
    report.hashed = physical.len();
    let mut digests: Vec<Option<[u8; 32]>> = physical
        .iter()
        .map(|p| cache.get(&p.key).and_then(|d| d.sha256))
        .collect();
    report.from_hash_cache = digests.iter().filter(|d| d.is_some()).count();
    let to_read: Vec<usize> = (0..physical.len())
        .filter(|&i| digests[i].is_none())
        .collect();
    let read = |&i: &usize| {
        let path = &physical[i].paths[0].path;
        (i, hash_file(path, false, false, progress, stop))
    };
    let results: Vec<(usize, io::Result<Hashed>)> = match rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
    {
        Ok(pool) => pool.install(|| to_read.par_iter().map(read).collect()),
        Err(_) => to_read.iter().map(read).collect(),
    };
    for (i, result) in results {
        match result {
            Ok(Hashed::Done { key, digests: d }) if key == physical[i].key => {
                cache.put(key, d);
                digests[i] = d.sha256;
            }
            Ok(_) => {} // changed while read, or stopped: not judged this time
            Err(e) => report
                .unreadable
                .push((physical[i].paths[0].path.clone(), e.to_string())),
        }
    }
    // Files with the same size and digest are one group.
    let mut groups: HashMap<(u64, [u8; 32]), Vec<Physical>> = HashMap::new();
    for (p, d) in physical.into_iter().zip(digests) {
        if let Some(d) = d {
            groups.entry((p.key.size, d)).or_default().push(p);
        }
    }
    for ((size, digest), files) in groups.into_iter().filter(|(_, v)| v.len() > 1) {
        report.groups.push(group(size, &digest, files));
    }
    report
        .groups
        .sort_by(|a, b| b.wasted.cmp(&a.wasted).then(a.sha256.cmp(&b.sha256)));
    report.wasted = report.groups.iter().map(|g| g.wasted).sum();
    report.linkable = report.groups.iter().map(|g| g.linkable).sum();
    report
}

fn group(size: u64, digest: &[u8; 32], mut files: Vec<Physical>) -> Group {
    for f in &mut files {
        f.paths.sort_by(|a, b| a.path.cmp(&b.path));
    }
    // The library's copy is kept first; then the stores', by path.
    files.sort_by(|a, b| {
        let rank = |p: &Physical| (p.paths[0].source != LIBRARY_SOURCE, p.paths[0].path.clone());
        rank(a).cmp(&rank(b))
    });
    let keeper_dev = files[0].key.dev;
    let copies: Vec<Copy> = files
        .into_iter()
        .map(|mut f| {
            let first = f.paths.remove(0);
            Copy {
                path: first.path,
                source: first.source,
                also_at: f.paths.into_iter().map(|c| c.path).collect(),
                same_file_system: f.key.dev == keeper_dev,
                root: first.root,
                key: f.key,
            }
        })
        .collect();
    let extra = copies.len() as u64 - 1;
    let linkable = copies.iter().skip(1).filter(|c| c.same_file_system).count() as u64;
    Group {
        sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        size,
        copies,
        wasted: size * extra,
        linkable: size * linkable,
    }
}

/// What linking one copy came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Linked {
    /// Replaced by a hard link to the keeper: `freed` bytes given back.
    Linked {
        /// Bytes given back.
        freed: u64,
    },
    /// On another file system than the keeper: a link cannot reach it.
    OtherFileSystem,
    /// Left alone: why.
    Skipped {
        /// Why (changed recently, changed since it was hashed, bytes differ, …).
        reason: String,
    },
}

/// How recently a file may have changed and still be linked: a store may be writing it.
pub const QUIET_SECS: i128 = 60;

/// Replaces every extra copy of `group` on the keeper's file system with a hard link to
/// the keeper (see the module's rules). `now_ns` is the wall clock (ns since the epoch).
/// One outcome per copy after the first, in order.
pub fn link(group: &Group, now_ns: i128) -> Vec<(PathBuf, Linked)> {
    let keeper = &group.copies[0];
    let mut out = Vec::new();
    for copy in &group.copies[1..] {
        let outcome = if copy.same_file_system {
            link_one(keeper, copy, now_ns).unwrap_or_else(|e| Linked::Skipped {
                reason: e.to_string(),
            })
        } else {
            Linked::OtherFileSystem
        };
        out.push((copy.path.clone(), outcome));
    }
    out
}

fn skipped(reason: &str) -> io::Result<Linked> {
    Ok(Linked::Skipped {
        reason: reason.to_string(),
    })
}

fn link_one(keeper: &Copy, copy: &Copy, now_ns: i128) -> io::Result<Linked> {
    let state = |p: &Path| fs::symlink_metadata(p).map(|m| FileKey::of(&m));
    if state(&keeper.path)? != keeper.key || state(&copy.path)? != copy.key {
        return skipped("changed since it was hashed; run duplicates again");
    }
    if [keeper.key, copy.key]
        .iter()
        .any(|k| now_ns - k.mtime_ns < QUIET_SECS * 1_000_000_000)
    {
        return skipped("changed in the last minute (it may still be being written)");
    }
    if !same_bytes(&keeper.path, &copy.path)? {
        return skipped("the bytes differ after all");
    }
    let rel = copy
        .path
        .strip_prefix(&copy.root)
        .map_err(|_| io::Error::other("not below its root"))?;
    let (Some(parent), Some(name)) = (rel.parent(), copy.path.file_name()) else {
        return skipped("not a file below its root");
    };
    let dir = SafeDir::open_root(&copy.root)?.open_dir_all(parent)?;
    remove_stale_temps(&dir, name, keeper.key)?;
    let tmp = temp_name(name);
    dir.hard_link_from(&keeper.path, &tmp)?;
    crashpoint::hit("duplicates-linked");
    // Still the very file that was compared? Then the rename replaces it in one step.
    let now = dir.entry(name)?;
    if now.is_none_or(|e| (e.dev, e.ino, e.len) != (copy.key.dev, copy.key.ino, copy.key.size)) {
        dir.remove_file(&tmp)?;
        return skipped("changed while it was linked");
    }
    dir.rename(&tmp, &dir, name)?;
    Ok(Linked::Linked {
        freed: copy.key.size,
    })
}

/// Removes temp links beside `name` that a killed run left: named as [`temp_name`] names
/// them, and the keeper's very file (so nothing but a name goes).
fn remove_stale_temps(dir: &SafeDir, name: &std::ffi::OsStr, keeper: FileKey) -> io::Result<()> {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".tmp-");
    let prefix = prefix.to_string_lossy().into_owned();
    for (entry, _) in dir.list()? {
        if !entry.to_string_lossy().starts_with(&prefix) {
            continue;
        }
        if let Some(e) = dir.entry(&entry)?
            && (e.dev, e.ino) == (keeper.dev, keeper.ino)
        {
            dir.remove_file(&entry)?;
        }
    }
    Ok(())
}

/// Whether the two files hold the same bytes (read in full, neither through a link).
fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = |p: &Path| {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p)
    };
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Wall-clock now, ns since the epoch (what [`link`] compares modification times with).
pub fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Work on a thread of its own whose result is taken when it is ready (never waited for):
/// finding duplicates and linking them, so whoever started it is never held.
#[derive(Debug)]
pub struct Background<T> {
    result: std::sync::mpsc::Receiver<T>,
}

impl<T: Send + 'static> Background<T> {
    /// Runs `work` on a thread named `name`.
    pub fn spawn(name: &str, work: impl FnOnce() -> T + Send + 'static) -> io::Result<Self> {
        let (tx, result) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let _ = tx.send(work());
            })?;
        Ok(Background { result })
    }

    /// The result once the work is done: `Some(Ok)`; `Some(Err(()))` when its thread died
    /// without one; `None` while it runs.
    pub fn try_take(&self) -> Option<Result<T, ()>> {
        match self.result.try_recv() {
            Ok(v) => Some(Ok(v)),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(Err(())),
        }
    }
}
