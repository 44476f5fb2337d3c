//! Scanning a library into a list of [`ModelInfo`]: the fast listing (registry plus one read
//! of `models/` and `.downloads/`, no recursion) and the full listing (a parallel walk of each
//! model folder for sizes, file counts and newest mtimes, and the status rules of SPEC §3).
//!
//! Reads no file outside the library: a folder behind a symlink is never descended, so a
//! symlink loop costs nothing; a link to a regular file (a symlink import) is `stat`ed
//! through to measure it, and a link to anything else counts as itself. A problem inside one
//! model (unreadable folder, odd name) is recorded on that model and never aborts the scan;
//! a file that vanishes between being listed and being measured is simply not counted.
//! Never writes.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use crate::library::error::{LibraryError, Result};
use crate::library::layout::{Library, validate_id};
use crate::library::model::{Figures, LIBRARY_SOURCE, ListKind, Location, ModelInfo, ModelStatus};
use crate::library::registry::RegistryEntry;
use crate::library::registry_pack::PackedRegistry;
use crate::library::sym::Sym;
use crate::library::walk::{EntryKind, RelPath, WalkOptions};

/// Progress of the running scan, readable from any thread without locking.
#[derive(Debug, Default)]
pub struct ScanProgress {
    done: AtomicU64,
    total: AtomicU64,
    running: AtomicBool,
}

/// A reading of [`ScanProgress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProgressReading {
    /// Models scanned so far.
    pub done: u64,
    /// Models to scan.
    pub total: u64,
    /// Whether a scan is running.
    pub running: bool,
}

impl ScanProgress {
    /// The current progress.
    pub fn read(&self) -> ProgressReading {
        ProgressReading {
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Relaxed),
        }
    }

    fn start(&self, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.running.store(true, Ordering::Relaxed);
    }

    fn tick(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks the scan as over (also used after a scan was abandoned by a panic).
    pub fn finish(&self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

/// What a scan needs besides the library.
pub struct ScanInput<'a> {
    /// The library to scan.
    pub library: &'a Library,
    /// Its registry, already loaded (entries are decoded as their models are scanned).
    pub registry: &'a PackedRegistry,
    /// Ids with a download running in this process.
    pub downloading: &'a HashSet<String>,
    /// Where to report progress.
    pub progress: &'a ScanProgress,
    /// Ids with an import under way (or interrupted and not yet recovered), with why the
    /// model is `partial` in words.
    pub importing: &'a HashMap<String, String>,
}

/// What kind of thing stands at `models/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Folder {
    Missing,
    Dir,
    Symlink,
}

/// One model to scan: a registry entry, a folder, leftovers, or several of these.
struct Candidate<'a> {
    name: &'a OsStr,
    /// Where its registry entry is in the registry, if it has one.
    position: Option<usize>,
    folder: Folder,
    leftovers: bool,
}

impl Candidate<'_> {
    /// Its registry entry, decoded.
    fn entry(&self, registry: &PackedRegistry) -> Option<RegistryEntry> {
        self.position.map(|i| registry.entry(i))
    }
}

/// Scans the library. Fails only when the library itself cannot be read (missing library
/// folder, unreadable `models/`); everything else is recorded on the model concerned.
pub fn scan(input: &ScanInput<'_>, kind: ListKind) -> Result<Vec<Arc<ModelInfo>>> {
    scan_top(input, Top::read(input.library)?, kind)
}

/// The top level of `models/` and `downloads/`: what a scan starts from. Read apart from
/// [`scan_top`] so that the read can overlap the registry's load.
#[derive(Debug)]
pub struct Top {
    /// Entries of `models/` (hidden ones left out) and their types.
    folders: Vec<(OsString, fs::FileType)>,
    /// Folders of `downloads/`.
    leftovers: HashSet<OsString>,
}

impl Top {
    /// Reads the library's top level. Fails when the library cannot be read.
    pub fn read(library: &Library) -> Result<Top> {
        library.check_reachable()?;
        let folders = read_top(&library.models_dir())?;
        let leftovers = read_top(&library.downloads_dir())?
            .into_iter()
            .filter(|(_, ft)| ft.is_dir())
            .map(|(name, _)| name)
            .collect();
        Ok(Top { folders, leftovers })
    }
}

/// [`scan`] from a top level read just before.
pub fn scan_top(input: &ScanInput<'_>, top: Top, kind: ListKind) -> Result<Vec<Arc<ModelInfo>>> {
    let library = input.library;
    let Top { folders, leftovers } = top;
    // Each model folder's kind: by its registry position when it has an entry (no map
    // keyed by name), else in `unregistered`, sorted by name.
    let mut registered: Vec<Folder> = vec![Folder::Missing; input.registry.len()];
    let mut unregistered: Vec<(&OsStr, Folder)> = Vec::new();
    for (name, ft) in &folders {
        let kind = if ft.is_dir() {
            Folder::Dir
        } else if ft.is_symlink() {
            Folder::Symlink
        } else {
            continue; // stray files beside the model folders are not models
        };
        match name.to_str().and_then(|n| input.registry.position(n)) {
            Some(position) => registered[position] = kind,
            None => unregistered.push((name, kind)),
        }
    }
    unregistered.sort_unstable_by_key(|&(name, _)| name);
    let has_folder = |name: &OsStr| {
        unregistered
            .binary_search_by_key(&name, |&(n, _)| n)
            .is_ok()
    };
    // Partial downloads and imports with neither a folder nor an entry.
    let mut downloads_only: Vec<&OsStr> = leftovers
        .iter()
        .map(OsString::as_os_str)
        .chain(input.importing.keys().map(OsStr::new))
        .collect::<HashSet<_>>()
        .into_iter()
        .filter(|n| {
            n.to_str()
                .is_none_or(|s| input.registry.position(s).is_none())
                && !has_folder(n)
        })
        .collect();
    downloads_only.sort_unstable();

    let has_leftovers = |name: &OsStr| !leftovers.is_empty() && leftovers.contains(name);
    let mut candidates: Vec<Candidate<'_>> =
        Vec::with_capacity(input.registry.len() + unregistered.len() + downloads_only.len());
    for ((position, id), &folder) in input.registry.ids().enumerate().zip(&registered) {
        let name = OsStr::new(id);
        candidates.push(Candidate {
            folder,
            leftovers: has_leftovers(name),
            position: Some(position),
            name,
        });
    }
    let others = unregistered
        .iter()
        .copied()
        .chain(downloads_only.into_iter().map(|n| (n, Folder::Missing)));
    for (name, folder) in others {
        candidates.push(Candidate {
            folder,
            leftovers: has_leftovers(name),
            position: None,
            name,
        });
    }

    let models_dir = library.models_dir();
    match kind {
        ListKind::Fast => Ok(candidates
            .iter()
            .map(|c| {
                Arc::new(model_info(
                    c,
                    c.entry(input.registry).as_ref(),
                    models_dir.join(c.name),
                    input,
                    None,
                ))
            })
            .collect()),
        ListKind::Full => {
            input.progress.start(candidates.len() as u64);
            // Model folders are opened relative to one open `models/` (no path looked up
            // from `/` for each); without it, by path.
            let models_fd = crate::library::walk::open_dir(&models_dir).ok();
            let at = models_fd.as_ref().map(|fd| fd.as_fd());
            let out = scan_pool().install(|| {
                candidates
                    .par_iter()
                    .map(|c| {
                        let entry = c.entry(input.registry);
                        let path = models_dir.join(c.name);
                        let walked = (c.folder == Folder::Dir).then(|| {
                            let at = at.map(|fd| (fd, c.name));
                            walk_model(&path, at, entry.as_ref())
                        });
                        let info = model_info(c, entry.as_ref(), path, input, Some(walked));
                        input.progress.tick();
                        // Each row in an `Arc` of its own, made here on the scan threads.
                        Arc::new(info)
                    })
                    .collect()
            });
            input.progress.finish();
            Ok(out)
        }
    }
}

/// Rescans only the models named `names` (ids or folder names), for a selective update:
/// each comes back with its fresh info, or `None` when nothing of it is left (no registry
/// entry, no folder, no partial download).
pub fn scan_some(
    input: &ScanInput<'_>,
    names: &[String],
) -> Result<Vec<(String, Option<ModelInfo>)>> {
    let library = input.library;
    library.check_reachable()?;
    let models_dir = library.models_dir();
    let downloads_dir = library.downloads_dir();
    Ok(names
        .par_iter()
        .map(|name| {
            if name.starts_with('.') || name.contains('/') || name.is_empty() {
                return (name.clone(), None);
            }
            let path = models_dir.join(name);
            let folder = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => Folder::Dir,
                Ok(m) if m.file_type().is_symlink() => Folder::Symlink,
                _ => Folder::Missing,
            };
            let leftovers =
                fs::symlink_metadata(downloads_dir.join(name)).is_ok_and(|m| m.is_dir());
            let position = input.registry.position(name);
            if position.is_none()
                && folder == Folder::Missing
                && !leftovers
                && !input.importing.contains_key(name)
            {
                return (name.clone(), None);
            }
            let c = Candidate {
                name: OsStr::new(name),
                position,
                folder,
                leftovers,
            };
            let entry = c.entry(input.registry);
            let walked = (folder == Folder::Dir).then(|| walk_model(&path, None, entry.as_ref()));
            let info = model_info(&c, entry.as_ref(), path, input, Some(walked));
            (name.clone(), Some(info))
        })
        .collect())
}

/// Where a model sits in a listing: registered ones in registry order, then unregistered
/// folders by name, then partial downloads without folder or entry by name — the order
/// [`scan`] produces, then models of read-only stores by id, so a selectively updated
/// listing matches a fresh one.
pub fn order_key(m: &ModelInfo, registry: &PackedRegistry) -> (u8, usize, String) {
    if m.source != LIBRARY_SOURCE {
        return (3, 0, m.id.clone()); // read-only stores come last, by id
    }
    match registry.position(&m.id) {
        Some(i) if m.registered => (0, i, String::new()),
        _ if m.status == ModelStatus::Partial => (2, 0, m.id.clone()),
        _ => (1, 0, m.id.clone()),
    }
}

/// Lists a top-level folder once: names and entry types (no stat on Linux). A missing
/// folder is empty.
fn read_top(dir: &Path) -> Result<Vec<(OsString, fs::FileType)>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(LibraryError::io(dir, err)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| LibraryError::io(dir, e))?;
        let name = entry.file_name();
        if name.as_encoded_bytes().first() == Some(&b'.') {
            continue; // hidden entries (.DS_Store, editor temp files) are not models
        }
        match entry.file_type() {
            Ok(ft) => out.push((name, ft)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {} // vanished
            Err(err) => return Err(LibraryError::io(entry.path(), err)),
        }
    }
    Ok(out)
}

/// What a recursive walk of one model folder found.
#[derive(Debug, Default, Clone)]
pub struct WalkSummary {
    /// Sum of apparent sizes of everything that is not a folder.
    pub size: u64,
    /// Number of entries that are not folders.
    pub files: u64,
    /// Newest mtime of the folder and everything below it.
    pub newest: Option<f64>,
    /// The largest file, its path relative to the walked folder (for guessing the format).
    pub largest: Option<(u64, PathBuf)>,
    /// What could not be read.
    pub errors: Vec<String>,
    /// The folder is not there.
    pub missing: bool,
    /// Modification time of the folder itself.
    pub root_mtime: Option<f64>,
    /// For each declared path asked for: what the walk met there (kind, measured size).
    pub declared: Vec<Option<(EntryKind, u64)>>,
    /// Parts of split files met (`x-00001-of-00003.gguf`), to tell a missing part.
    pub shards: crate::library::shards::Shards,
}

/// Walks a model folder with the core's walker (one `fstatat` per entry relative to its
/// open folder, links not followed; a link to a regular file counts as that file).
/// Unreadable parts are recorded in `errors`; entries that vanish mid-walk are skipped.
pub fn walk(root: &Path) -> WalkSummary {
    walk_declared(root, None, &[])
}

/// [`walk`] of the folder `name` in the open folder `parent` (`root` is its path), opened
/// relative to that handle: no path is looked up from `/` again. `also` sees every entry
/// the walk meets (the verifier keeps a print of the folder from it).
pub fn walk_at(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    root: &Path,
    also: &mut dyn FnMut(&crate::library::walk::Entry<'_>),
) -> WalkSummary {
    walk_declared_with(root, Some((parent, name)), &[], also)
}

/// The fingerprint pass of a start-up revalidation: the ids of the library rows of a saved
/// listing to read again — their folder changed since it was scanned (its modification
/// time is newer than the newest time the scan saw in it; gone where the scan saw one;
/// unreadable), or their status depends on more than the folder (partial, downloading,
/// error). One `fstatat` per model folder, relative to one open `models/`, on the scan
/// threads.
pub fn rows_to_reread(library: &Library, models: &[Arc<ModelInfo>]) -> Vec<String> {
    let models_dir = library.models_dir();
    let models_fd = crate::library::walk::open_dir(&models_dir).ok();
    let at = models_fd.as_ref().map(|fd| fd.as_fd());
    scan_pool().install(|| {
        models
            .par_iter()
            .filter(|m| m.source == LIBRARY_SOURCE)
            .filter(|m| {
                let volatile = matches!(
                    m.status,
                    ModelStatus::Partial | ModelStatus::Downloading | ModelStatus::Error
                );
                volatile || folder_changed(m, &models_dir, at)
            })
            .map(|m| m.id.clone())
            .collect()
    })
}

/// Whether a row's folder changed since its scan (file-system times on both sides, so no
/// clock is involved).
fn folder_changed(m: &ModelInfo, models_dir: &Path, at: Option<BorrowedFd<'_>>) -> bool {
    let now = match (at, m.folder_in(models_dir)) {
        (Some(fd), Some(name)) => crate::library::walk::mtime_at(fd, name),
        _ => crate::library::walk::mtime_of(&m.path()),
    };
    match now {
        Ok(now) => m.modified().is_none_or(|then| now > then),
        // Gone: a change only if the scan had seen a folder there.
        Err(e) if e.kind() == io::ErrorKind::NotFound => m.modified().is_some(),
        Err(_) => true,
    }
}

/// The threads full scans run on: more than the cores, because a cold scan waits on the
/// disk, and requests in flight keep it busy (three per core, as diskus does).
fn scan_pool() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        rayon::ThreadPoolBuilder::new()
            .num_threads((3 * cores).clamp(4, 48))
            .thread_name(|i| format!("scan-{i}"))
            .build()
            .expect("scan threads")
    })
}

/// [`walk`], also noting what is found at each of the `declared` relative paths (so a
/// registry entry's files are checked without a second stat).
fn walk_declared(
    root: &Path,
    at: Option<(BorrowedFd<'_>, &OsStr)>,
    declared: &[PathBuf],
) -> WalkSummary {
    walk_declared_with(root, at, declared, &mut |_| {})
}

fn walk_declared_with(
    root: &Path,
    at: Option<(BorrowedFd<'_>, &OsStr)>,
    declared: &[PathBuf],
    also: &mut dyn FnMut(&crate::library::walk::Entry<'_>),
) -> WalkSummary {
    let mut sum = WalkSummary {
        declared: vec![None; declared.len()],
        ..WalkSummary::default()
    };
    // Each declared path as its folder and name, split once (not once per entry met).
    let split: Vec<RelPath<'_>> = declared.iter().map(|d| RelPath::new(d)).collect();
    let mut visit = |e: &crate::library::walk::Entry<'_>| {
        also(e);
        sum.newest = Some(sum.newest.map_or(e.mtime, |n| n.max(e.mtime)));
        if let Some(i) = split.iter().position(|d| e.is(d)) {
            sum.declared[i] = Some((e.kind, e.size));
        }
        if e.kind == EntryKind::Dir {
            return;
        }
        sum.size += e.size;
        sum.files += 1;
        let file = matches!(e.kind, EntryKind::File | EntryKind::Link { to_file: true });
        if file && sum.largest.as_ref().is_none_or(|(l, _)| e.size > *l) {
            sum.largest = Some((e.size, e.rel_path()));
        }
        // Only names that can be parts build a path (most files are not).
        if file && e.name.as_encoded_bytes().windows(4).any(|w| w == b"-of-") {
            sum.shards.note(&e.rel_path());
        }
    };
    let options = WalkOptions::default();
    let report = match at {
        Some((parent, name)) => {
            crate::library::walk::walk_in(parent, name, root, options, &mut visit)
        }
        None => crate::library::walk::walk(root, options, &mut visit),
    };
    if let Some(t) = report.root_mtime {
        sum.newest = Some(sum.newest.map_or(t, |n| n.max(t)));
    }
    sum.errors = report.errors;
    sum.missing = report.missing;
    sum.root_mtime = report.root_mtime;
    sum
}

/// A declared file's path as the walker names it: no `.` components.
fn declared_path(spec: &str) -> PathBuf {
    Path::new(spec)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// Walks a model folder, checking the files its registry entry declares on the way.
fn walk_model(
    root: &Path,
    at: Option<(BorrowedFd<'_>, &OsStr)>,
    entry: Option<&RegistryEntry>,
) -> WalkSummary {
    let declared: Vec<PathBuf> = entry
        .map(|e| e.files.iter().map(|f| declared_path(&f.path)).collect())
        .unwrap_or_default();
    walk_declared(root, at, &declared)
}

/// The status of a model with no download or import running and nothing wrong found
/// (SPEC §3).
fn settled_status(c: &Candidate<'_>, has_content: bool, declared_missing: usize) -> ModelStatus {
    if c.position.is_none() {
        if c.folder == Folder::Dir && declared_missing == 0 {
            ModelStatus::Downloaded
        } else {
            ModelStatus::Partial // only leftovers in .downloads/
        }
    } else if c.folder == Folder::Missing || !has_content {
        if c.leftovers {
            ModelStatus::Partial
        } else {
            ModelStatus::Available
        }
    } else if declared_missing > 0 || c.leftovers {
        ModelStatus::Partial
    } else {
        ModelStatus::Downloaded
    }
}

/// Checks the files `entry` declares against what the walk `found` at each (kind, measured
/// size): wrong ones are added to `errors`; returns how many are missing.
fn check_declared(
    entry: &RegistryEntry,
    found: &[Option<(EntryKind, u64)>],
    errors: &mut Vec<String>,
) -> usize {
    let mut missing = 0;
    for (i, spec) in entry.files.iter().enumerate() {
        match found.get(i).copied().flatten() {
            // A declared file may be a link to a regular file (a symlink import): it is
            // measured through the link; a link to anything else is an error.
            Some((EntryKind::Link { to_file: false }, _)) => errors.push(format!(
                "{} is a symbolic link to something that is not a readable file",
                spec.path
            )),
            Some((EntryKind::Dir | EntryKind::Other, _)) => {
                errors.push(format!("{} is not a regular file", spec.path))
            }
            Some((_, len)) => match spec.size {
                Some(want) if len != want => errors.push(format!(
                    "size mismatch: {} is {len} bytes, expected {want}",
                    spec.path
                )),
                _ => {}
            },
            // Not met by the walk: missing (or in a part that could not be read, which
            // the walk's errors already say).
            None => missing += 1,
        }
    }
    missing
}

/// Builds one model's info (`entry` is the candidate's, decoded; `path` its folder,
/// `models/<name>`). `walked` is `None` for the fast listing, `Some(None)` for a full
/// listing of a model with no folder to walk.
fn model_info(
    c: &Candidate<'_>,
    entry: Option<&RegistryEntry>,
    path: PathBuf,
    input: &ScanInput<'_>,
    walked: Option<Option<WalkSummary>>,
) -> ModelInfo {
    let full = walked.is_some();
    let walked = walked.flatten();
    let display = c.name.to_string_lossy().into_owned();
    let mut errors: Vec<String> = Vec::new();

    match c.name.to_str() {
        None => errors.push("folder name is not valid UTF-8, so it cannot be a model id".into()),
        Some(name) if entry.is_none() => {
            if let Err(err) = validate_id(name) {
                errors.push(format!("folder name is not a valid model id: {err}"));
            }
        }
        Some(_) => {}
    }
    if let Some(problem) = entry.and_then(|e| e.problem.as_deref()) {
        errors.push(format!("registry entry: {problem}"));
    }
    if c.folder == Folder::Symlink {
        errors.push(format!(
            "{} is a symbolic link; links are not followed",
            path.display()
        ));
    }
    if let Some(w) = &walked {
        errors.extend(w.errors.iter().cloned());
    }

    // Declared files: present with the right size, missing, or wrong.
    let declared_missing = match entry {
        Some(entry) if full && c.folder == Folder::Dir => {
            let found = walked.as_ref().map_or(&[][..], |w| w.declared.as_slice());
            check_declared(entry, found, &mut errors)
        }
        Some(_) if c.folder == Folder::Dir => 0,
        Some(entry) => entry.files.len(),
        None => 0,
    };
    // A split model with a part not there is not whole either (the registry need not
    // declare the parts).
    let shards_missing = walked.as_ref().and_then(|w| w.shards.note_text());
    let declared_missing = declared_missing + usize::from(shards_missing.is_some());

    let has_content = match &walked {
        Some(w) => w.files > 0,
        None => c.folder == Folder::Dir,
    };
    // Mid-import until the model is both in place and registered.
    let importing = input
        .importing
        .get(display.as_str())
        .filter(|_| !(c.folder == Folder::Dir && entry.is_some()));
    let status = if input.downloading.contains(display.as_str()) {
        ModelStatus::Downloading
    } else if importing.is_some() {
        ModelStatus::Partial
    } else if !errors.is_empty() {
        ModelStatus::Error
    } else {
        settled_status(c, has_content, declared_missing)
    };

    // An entry that lists no files expects nothing: 0, known (SPEC §4: null only when
    // unknown); the window offers no download for it.
    let expected_size_bytes =
        entry.and_then(|e| e.files.iter().map(|f| f.size).sum::<Option<u64>>());
    let format = entry.and_then(|e| e.format.clone()).or_else(|| {
        walked
            .as_ref()
            .and_then(|w| w.largest.as_ref())
            .and_then(|(_, p)| guess_format(p))
            .map(Sym::new)
    });
    ModelInfo {
        id: display.clone(),
        name: entry
            .and_then(|e| e.name.clone())
            .unwrap_or_else(|| display.clone())
            .into(),
        provider: entry
            .and_then(|e| e.provider.clone())
            .unwrap_or_else(|| Sym::new("local")),
        status,
        capabilities: entry
            .map(|e| e.capabilities.clone())
            .unwrap_or_default()
            .into(),
        format,
        description: entry.and_then(|e| e.description.as_deref().map(Box::from)),
        license: entry.and_then(|e| e.license.as_deref().map(Sym::new)),
        registered: entry.is_some(),
        location: Location::of(&path, &display),
        figures: Figures::default()
            .with_size(full.then(|| walked.as_ref().map_or(0, |w| w.size)))
            .with_files(full.then(|| walked.as_ref().map_or(0, |w| w.files)))
            .with_expected(expected_size_bytes)
            .with_modified(walked.as_ref().and_then(|w| w.newest))
            .with_partial(
                (full && c.leftovers)
                    .then(|| walk(&input.library.downloads_dir().join(c.name)).size)
                    .filter(|b| *b > 0),
            ),
        note: match status {
            ModelStatus::Partial => importing.cloned().or_else(|| {
                c.leftovers
                    .then(|| {
                        format!(
                            "a download was interrupted; downloading it again resumes from the \
                             data kept in {}",
                            input.library.downloads_dir().join(c.name).display()
                        )
                    })
                    .or(shards_missing)
            }),
            _ => None,
        }
        .map(String::into_boxed_str),
        error: (!errors.is_empty()).then(|| errors.join("; ").into()),
        source: Sym::new(LIBRARY_SOURCE),
        metadata: None,
        main_file: walked
            .and_then(|w| w.largest)
            .map(|(_, p)| p.into_boxed_path()),
    }
}

/// Most files [`list_files`] returns.
pub const MAX_LISTED_FILES: usize = 2000;

/// The files of a model folder, relative paths and sizes, sorted, at most
/// [`MAX_LISTED_FILES`] (the flag says whether there were more). Folders behind links are
/// not descended; a link to a regular file is measured through it. Read-only.
pub fn list_files(root: &Path) -> (Vec<(String, u64)>, bool) {
    let mut out = Vec::new();
    let mut more = false;
    crate::library::walk::walk(root, WalkOptions::default(), &mut |e| {
        if e.kind == EntryKind::Dir {
            return;
        }
        if out.len() >= MAX_LISTED_FILES {
            more = true;
            return;
        }
        out.push((e.rel_path().to_string_lossy().into_owned(), e.size));
    });
    out.sort();
    (out, more)
}

/// The format a file's extension suggests.
pub fn guess_format(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "gguf" => "gguf",
        "safetensors" => "safetensors",
        "onnx" => "onnx",
        "ggml" => "ggml",
        "pt" | "pth" => "pytorch",
        "bin" => "bin",
        "tflite" => "tflite",
        "mlmodel" => "coreml",
        "h5" | "keras" => "keras",
        "pb" => "tensorflow",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::walk::faults::{Fault, plant};

    fn scan_dir(root: &Path, kind: ListKind) -> Vec<ModelInfo> {
        let library = Library::new(root);
        let registry = PackedRegistry::pack(&crate::library::Registry::load(&library).unwrap());
        let progress = ScanProgress::default();
        scan(
            &ScanInput {
                library: &library,
                registry: &registry,
                downloading: &HashSet::new(),
                progress: &progress,
                importing: &HashMap::new(),
            },
            kind,
        )
        .unwrap()
        .into_iter()
        .map(Arc::unwrap_or_clone)
        .collect()
    }

    #[test]
    fn the_main_file_is_the_largest_kept_exactly_even_not_in_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("models/a");
        fs::create_dir_all(&a).unwrap();
        fs::write(a.join("model.gguf"), b"1234").unwrap();
        fs::write(a.join("notes.txt"), b"1").unwrap();
        let c = dir.path().join("models/c");
        fs::create_dir_all(&c).unwrap();
        let odd = OsStr::from_bytes(b"w\xff.gguf");
        fs::write(c.join(odd), b"12345").unwrap();
        let models = scan_dir(dir.path(), ListKind::Full);
        let main = |id: &str| {
            models
                .iter()
                .find(|m| m.id == id)
                .unwrap()
                .main_file
                .clone()
        };
        assert_eq!(main("a").as_deref(), Some(Path::new("model.gguf")));
        assert_eq!(main("c").as_deref(), Some(Path::new(odd)));
    }

    #[test]
    fn unreadable_subfolder_is_recorded_on_its_model_only() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("models/a");
        fs::create_dir_all(a.join("locked")).unwrap();
        fs::write(a.join("w.bin"), b"1234").unwrap();
        fs::create_dir_all(dir.path().join("models/b")).unwrap();
        fs::write(dir.path().join("models/b/x"), b"12").unwrap();
        plant(&a.join("locked"), Fault::DenyReadDir);

        let models = scan_dir(dir.path(), ListKind::Full);
        let a = models.iter().find(|m| m.id == "a").unwrap();
        assert_eq!(a.status, ModelStatus::Error);
        let err = a.error.as_deref().unwrap();
        assert!(
            err.contains("locked") && err.contains("ermission denied"),
            "{err}"
        );
        assert_eq!(
            a.size_bytes(),
            Some(4),
            "what could be read is still counted"
        );
        let b = models.iter().find(|m| m.id == "b").unwrap();
        assert_eq!(
            (b.status, b.size_bytes()),
            (ModelStatus::Downloaded, Some(2))
        );
    }

    #[test]
    fn file_vanishing_mid_scan_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("models/a");
        fs::create_dir_all(a.join("sub")).unwrap();
        fs::write(a.join("keep.bin"), b"12345").unwrap();
        fs::write(a.join("gone.bin"), b"123").unwrap();
        fs::write(a.join("sub/inner"), b"1").unwrap();
        plant(&a.join("gone.bin"), Fault::VanishAfterListing);
        plant(&a.join("sub"), Fault::VanishAfterListing);

        let models = scan_dir(dir.path(), ListKind::Full);
        let a = &models[0];
        assert_eq!(a.status, ModelStatus::Downloaded, "{:?}", a.error);
        assert_eq!((a.size_bytes(), a.file_count()), (Some(5), Some(1)));
        assert!(!dir.path().join("models/a/gone.bin").exists());
    }

    #[test]
    fn formats_are_guessed_from_extensions() {
        assert_eq!(guess_format(Path::new("x/model.Q4.GGUF")), Some("gguf"));
        assert_eq!(
            guess_format(Path::new("model.safetensors")),
            Some("safetensors")
        );
        assert_eq!(guess_format(Path::new("README")), None);
    }
}
