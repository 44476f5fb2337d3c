//! Downloading a registered model, safely and resumably. Each file streams over HTTP(S)
//! (ureq, rustls) into `.downloads/<id>/<file>.part`; a later attempt resumes it with an
//! HTTP `Range` request. A file is verified — declared size, and sha256 when the registry has
//! one — before it is moved into `models/<id>/` by rename, so a model is never complete on
//! disk unless every file was verified. A failure (404, dropped connection, full disk) keeps
//! the partial data for a resume; a checksum failure discards it.
//!
//! [`DownloadManager`] runs downloads on its own threads with a small bound on how many run
//! at once, publishes their progress on a shared [`DownloadBoard`], and reports each end as
//! a [`DownloadEvent`] for the service to invalidate its caches. Writes only under
//! `LIBRARY/.downloads/<id>/` and `LIBRARY/models/<id>/`, through the library's write gate
//! ([`Library::open_writes`]): every folder on the way is opened relative to its parent
//! without following a link, and a `.part` or a destination that is a link is refused.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::library::error::LibraryError;
use crate::library::fs_safe::{Kind, SafeDir};
use crate::library::layout::{DOWNLOADS_DIR, Library, validate_id};
use crate::library::registry::RegistryFileSpec;

/// Suffix of partial files in `.downloads/<id>/`.
pub const PART_SUFFIX: &str = ".part";
const CHUNK: usize = 256 * 1024;

/// How downloads behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOptions {
    /// Longest wait for one read before the transfer counts as stalled.
    pub read_timeout: Duration,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
    /// Downloads running at once; more wait in the queue.
    pub max_parallel: usize,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            read_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(20),
            max_parallel: 2,
        }
    }
}

/// Where a download stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DownloadState {
    /// Waiting for a free slot.
    Queued,
    /// Transferring.
    Running,
    /// Checking sizes and checksums.
    Verifying,
    /// Every file verified and in place.
    Done,
    /// Ended with an error; partial data kept unless the checksum failed.
    Failed {
        /// Why.
        reason: String,
    },
    /// Cancelled; partial data kept for a resume.
    Cancelled,
}

impl DownloadState {
    /// Whether the download has ended.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            DownloadState::Done | DownloadState::Failed { .. } | DownloadState::Cancelled
        )
    }
}

/// Progress of one model's download.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DownloadProgress {
    /// The model id.
    pub id: String,
    /// Where it stands.
    pub state: DownloadState,
    /// Bytes on disk so far (resumed bytes included).
    pub bytes_done: u64,
    /// Total bytes, when every file declares its size or the server said.
    pub bytes_total: Option<u64>,
    /// Files verified and in place.
    pub files_done: usize,
    /// Files in all.
    pub files_total: usize,
    /// The file being transferred.
    pub current_file: Option<String>,
    /// Transfer speed over this attempt, bytes per second.
    pub speed_bytes_per_sec: f64,
    /// Seconds left at that speed, when the total is known.
    pub eta_seconds: Option<f64>,
}

impl DownloadProgress {
    fn new(id: &str, files: &[RegistryFileSpec]) -> Self {
        DownloadProgress {
            id: id.to_string(),
            state: DownloadState::Queued,
            bytes_done: 0,
            bytes_total: files.iter().map(|f| f.size).sum(),
            files_done: 0,
            files_total: files.len(),
            current_file: None,
            speed_bytes_per_sec: 0.0,
            eta_seconds: None,
        }
    }

    /// Fraction done, when the total is known.
    pub fn fraction(&self) -> Option<f64> {
        self.bytes_total
            .filter(|t| *t > 0)
            .map(|t| (self.bytes_done as f64 / t as f64).min(1.0))
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Cancelled on request.
    #[error("cancelled")]
    Cancelled,
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}")]
    Http {
        /// The file's URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The connection failed, dropped or stalled.
    #[error("{url}: {message}")]
    Transport {
        /// The file's URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// Reading or writing a local file failed (a full disk, say).
    #[error("{}: {source}", path.display())]
    Io {
        /// The local file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file has a different size than the registry declares.
    #[error("{file}: got {got} bytes, the registry declares {want}")]
    SizeMismatch {
        /// Registry path of the file.
        file: String,
        /// Bytes received.
        got: u64,
        /// Bytes declared.
        want: u64,
    },
    /// The sha256 differs from the registry's; the data was discarded.
    #[error(
        "{file}: sha256 mismatch (got {got}, the registry declares {want}); the download was discarded"
    )]
    Checksum {
        /// Registry path of the file.
        file: String,
        /// Hash of what arrived.
        got: String,
        /// Hash declared.
        want: String,
    },
    /// The model has a file without a URL.
    #[error("{file} has no download URL in the registry")]
    NoUrl {
        /// Registry path of the file.
        file: String,
    },
    /// The library refuses writes (one of its folders is a link, say).
    #[error(transparent)]
    Library(#[from] LibraryError),
    /// Something on the way to the destination is a symlink or not a folder.
    #[error("{}: {reason}; refusing to write there", path.display())]
    UnsafePath {
        /// The offending path.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Builds the HTTP agent downloads use.
pub fn http_agent(options: &DownloadOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_per_read(Some(options.read_timeout))
        .user_agent(concat!("model-library/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Opens (creating as needed) `rel_dir` below `base`, folder by folder, never through a
/// link.
fn real_dirs(base: &SafeDir, rel_dir: &Path) -> Result<SafeDir, DownloadError> {
    base.create_dir_all(rel_dir)
        .map_err(io_err(&base.path().join(rel_dir)))
}

/// Downloads every file of model `id` that is not already in place, then removes its
/// emptied `.downloads/<id>/`. Returns the bytes transferred over the network.
pub fn download_model(
    library: &Library,
    id: &str,
    files: &[RegistryFileSpec],
    agent: &ureq::Agent,
    cancel: &AtomicBool,
    report: &mut dyn FnMut(&DownloadProgress),
) -> Result<u64, DownloadError> {
    let result = download_files(library, id, files, agent, cancel, report);
    if result.is_err()
        && validate_id(id).is_ok()
        && let Ok(writes) = library.open_writes()
        && let Ok(Some(downloads)) = writes.existing(DOWNLOADS_DIR)
    {
        // Leave no empty folders behind (a discarded part, say); partial data stays.
        remove_empty_dirs(&downloads, id);
    }
    result
}

fn download_files(
    library: &Library,
    id: &str,
    files: &[RegistryFileSpec],
    agent: &ureq::Agent,
    cancel: &AtomicBool,
    report: &mut dyn FnMut(&DownloadProgress),
) -> Result<u64, DownloadError> {
    validate_id(id).map_err(|_| DownloadError::UnsafePath {
        path: PathBuf::from(id),
        reason: "is not a valid model id",
    })?;
    if let Some(f) = files.iter().find(|f| f.url().is_none()) {
        return Err(DownloadError::NoUrl {
            file: f.path.clone(),
        });
    }
    let writes = library.open_writes()?;
    let models = writes.models()?;
    let downloads = writes.downloads()?;
    // Refuse a model "folder" that is a link or a file before transferring anything.
    for parent in [&models, &downloads] {
        let at = parent.join(id);
        match parent.entry(id).map_err(io_err(&at))? {
            Some(e) if e.kind == Kind::Symlink => {
                return Err(DownloadError::UnsafePath {
                    path: at,
                    reason: "is a symbolic link",
                });
            }
            Some(e) if e.kind != Kind::Dir => {
                return Err(DownloadError::UnsafePath {
                    path: at,
                    reason: "is not a folder",
                });
            }
            _ => {}
        }
    }
    let mut progress = DownloadProgress::new(id, files);
    progress.state = DownloadState::Running;
    report(&progress);
    let started = Instant::now();
    let mut fetched = 0u64;
    let mut done_before = 0u64;

    for spec in files {
        let rel = Path::new(&spec.path);
        let rel_parent = rel.parent().unwrap_or(Path::new(""));
        let file_name = rel.file_name().unwrap_or_default();
        progress.current_file = Some(spec.path.clone());

        // Already in place with the declared size: nothing to do.
        if let Some(size) = in_place(&models, id, rel_parent, file_name)
            && spec.size.is_none_or(|s| s == size)
        {
            done_before += size;
            progress.bytes_done = done_before;
            progress.files_done += 1;
            report(&progress);
            continue;
        }

        let part_parent = real_dirs(&downloads, &Path::new(id).join(rel_parent))?;
        let mut part_name = OsString::from(file_name);
        part_name.push(PART_SUFFIX);
        let part = part_parent.join(&part_name);
        let mut part_file = part_parent.open_rw(&part_name).map_err(io_err(&part))?;
        let got = fetch_file(
            spec,
            &mut part_file,
            &part,
            agent,
            cancel,
            &mut |bytes_in_file, new_bytes| {
                fetched += new_bytes;
                progress.bytes_done = done_before + bytes_in_file;
                let secs = started.elapsed().as_secs_f64();
                progress.speed_bytes_per_sec = if secs > 0.0 {
                    fetched as f64 / secs
                } else {
                    0.0
                };
                progress.eta_seconds = progress.bytes_total.and_then(|t| {
                    (progress.speed_bytes_per_sec > 0.0).then(|| {
                        t.saturating_sub(progress.bytes_done) as f64 / progress.speed_bytes_per_sec
                    })
                });
                report(&progress);
            },
        )?;

        progress.state = DownloadState::Verifying;
        report(&progress);
        if let Err(e) = verify(spec, &mut part_file, &part) {
            if matches!(e, DownloadError::Checksum { .. }) {
                // The data is wrong, not merely short: it goes.
                let _ = part_parent.remove_file(&part_name);
            }
            return Err(e);
        }
        drop(part_file);
        crate::library::crashpoint::hit("download.verified");

        let dest_parent = real_dirs(&models, &Path::new(id).join(rel_parent))?;
        let dest = dest_parent.join(file_name);
        if dest_parent
            .entry(file_name)
            .map_err(io_err(&dest))?
            .is_some_and(|e| e.kind == Kind::Symlink)
        {
            return Err(DownloadError::UnsafePath {
                path: dest,
                reason: "is a symbolic link",
            });
        }
        part_parent
            .rename(&part_name, &dest_parent, file_name)
            .map_err(io_err(&dest))?;
        dest_parent.sync().map_err(io_err(&dest))?;
        crate::library::crashpoint::hit("download.file_in_place");
        done_before += got;
        progress.bytes_done = done_before;
        progress.files_done += 1;
        progress.state = DownloadState::Running;
        report(&progress);
    }
    remove_empty_dirs(&downloads, id);
    progress.state = DownloadState::Done;
    progress.current_file = None;
    progress.eta_seconds = Some(0.0);
    report(&progress);
    Ok(fetched)
}

/// The size of `models/<id>/<rel_parent>/<name>` when it is a regular file there (reached
/// without following links).
fn in_place(models: &SafeDir, id: &str, rel_parent: &Path, name: &std::ffi::OsStr) -> Option<u64> {
    let dir = models.open_dir_all(&Path::new(id).join(rel_parent)).ok()?;
    dir.entry(name)
        .ok()
        .flatten()
        .filter(|e| e.kind == Kind::File)
        .map(|e| e.len)
}

/// Brings the part file (`part` names it in messages) to the whole file: resumes from its
/// current length with a Range request. `on_bytes(total_in_file, newly_fetched)` reports
/// progress. Returns the file's length.
fn fetch_file(
    spec: &RegistryFileSpec,
    file: &mut File,
    part: &Path,
    agent: &ureq::Agent,
    cancel: &AtomicBool,
    on_bytes: &mut dyn FnMut(u64, u64),
) -> Result<u64, DownloadError> {
    let url = spec.url().expect("checked by download_model");
    let mut offset = file.metadata().map_err(io_err(part))?.len();
    if spec.size.is_some_and(|s| offset > s) {
        // More than the whole file: not ours to trust.
        file.set_len(0).map_err(io_err(part))?;
        offset = 0;
    }
    if spec.size == Some(offset) && offset > 0 {
        on_bytes(offset, 0);
        return Ok(offset);
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(DownloadError::Cancelled);
    }
    let transport = |e: ureq::Error| DownloadError::Transport {
        url: url.to_string(),
        message: e.to_string(),
    };
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let response = request.call().map_err(transport)?;
    let status = response.status().as_u16();
    match status {
        206 => {}
        200 => {
            // The server ignored the Range: start over.
            file.set_len(0).map_err(io_err(part))?;
            offset = 0;
        }
        416 if offset > 0 && spec.size.is_none() => {
            // Nothing left to send: the part is whole.
            on_bytes(offset, 0);
            return Ok(offset);
        }
        _ => {
            return Err(DownloadError::Http {
                url: url.to_string(),
                status,
            });
        }
    }
    file.seek(SeekFrom::Start(offset)).map_err(io_err(part))?;
    on_bytes(offset, 0);
    let mut reader = response
        .into_body()
        .into_with_config()
        .limit(u64::MAX)
        .reader();
    let mut buf = vec![0u8; CHUNK];
    let mut len = offset;
    loop {
        if cancel.load(Ordering::Relaxed) {
            let _ = file.sync_all();
            return Err(DownloadError::Cancelled);
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.sync_all();
                if cancel.load(Ordering::Relaxed) {
                    return Err(DownloadError::Cancelled);
                }
                return Err(DownloadError::Transport {
                    url: url.to_string(),
                    message: format!("connection lost after {len} bytes: {e}"),
                });
            }
        };
        file.write_all(&buf[..n]).map_err(io_err(part))?;
        len += n as u64;
        on_bytes(len, n as u64);
    }
    file.sync_all().map_err(io_err(part))?;
    Ok(len)
}

/// Checks a finished part against the registry: declared size, then sha256 (the caller
/// discards a part whose checksum is wrong).
fn verify(spec: &RegistryFileSpec, file: &mut File, part: &Path) -> Result<(), DownloadError> {
    let len = file.metadata().map_err(io_err(part))?.len();
    if let Some(want) = spec.size
        && len != want
    {
        return Err(DownloadError::SizeMismatch {
            file: spec.path.clone(),
            got: len,
            want,
        });
    }
    if let Some(want) = spec.sha256() {
        file.seek(SeekFrom::Start(0)).map_err(io_err(part))?;
        let got = sha256_reader(file).map_err(io_err(part))?;
        if got != want {
            return Err(DownloadError::Checksum {
                file: spec.path.clone(),
                got,
                want: want.to_string(),
            });
        }
    }
    Ok(())
}

/// Lower-case hex sha256 of a file.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    sha256_reader(&mut File::open(path)?)
}

/// Lower-case hex sha256 of everything `reader` yields.
pub fn sha256_reader(file: &mut dyn Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Removes `.downloads/<id>` and its subfolders if they hold no data: empty `.part` files
/// and empty folders go, anything else stays (never through a link).
fn remove_empty_dirs(downloads: &SafeDir, id: &str) {
    fn prune(parent: &SafeDir, name: &std::ffi::OsStr) {
        let Ok(dir) = parent.open_dir(name) else {
            return;
        };
        for (child, kind) in dir.list().unwrap_or_default() {
            match kind {
                Kind::Dir => prune(&dir, &child),
                Kind::File
                    if child.to_string_lossy().ends_with(PART_SUFFIX)
                        && dir.entry(&child).ok().flatten().is_some_and(|e| e.len == 0) =>
                {
                    let _ = dir.remove_file(&child);
                }
                _ => {}
            }
        }
        drop(dir);
        let _ = parent.remove_dir(name); // fails, harmlessly, when not empty
    }
    prune(downloads, id.as_ref());
}

/// The progress of every download of this process, shared with whoever draws it.
#[derive(Debug, Default)]
pub struct DownloadBoard {
    entries: Mutex<BTreeMap<String, DownloadProgress>>,
}

impl DownloadBoard {
    /// Every download, running or ended (until dismissed), by id.
    pub fn snapshot(&self) -> Vec<DownloadProgress> {
        self.lock().values().cloned().collect()
    }

    /// One download's progress.
    pub fn get(&self, id: &str) -> Option<DownloadProgress> {
        self.lock().get(id).cloned()
    }

    /// Forgets an ended download.
    pub fn dismiss(&self, id: &str) {
        let mut entries = self.lock();
        if entries.get(id).is_some_and(|p| p.state.is_finished()) {
            entries.remove(id);
        }
    }

    fn set(&self, p: &DownloadProgress) {
        self.lock().insert(p.id.clone(), p.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, DownloadProgress>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A download that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadEvent {
    /// The model id.
    pub id: String,
    /// Bytes transferred, or why it failed (`"cancelled"` when cancelled).
    pub result: Result<u64, String>,
}

/// A counting semaphore bounding how many downloads run at once.
#[derive(Debug)]
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    /// Waits for a slot; gives up (returns false) when `cancel` is set.
    fn acquire(&self, cancel: &AtomicBool) -> bool {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if cancel.load(Ordering::Relaxed) {
                return false;
            }
            if *free > 0 {
                *free -= 1;
                return true;
            }
            // Woken by a release; the timeout only lets a cancel be noticed.
            free = self
                .freed
                .wait_timeout(free, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn release(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
    }
}

/// Runs downloads on their own threads.
pub struct DownloadManager {
    board: Arc<DownloadBoard>,
    cancels: HashMap<String, Arc<AtomicBool>>,
    events_tx: Sender<DownloadEvent>,
    events_rx: Receiver<DownloadEvent>,
    slots: Arc<Slots>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for DownloadManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadManager")
            .field("running", &self.cancels.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl DownloadManager {
    /// A manager publishing on `board`.
    pub fn new(board: Arc<DownloadBoard>, options: &DownloadOptions) -> Self {
        let (events_tx, events_rx) = mpsc::channel();
        DownloadManager {
            board,
            cancels: HashMap::new(),
            events_tx,
            events_rx,
            slots: Arc::new(Slots {
                free: Mutex::new(options.max_parallel.max(1)),
                freed: Condvar::new(),
            }),
            agent: http_agent(options),
        }
    }

    /// The shared progress board.
    pub fn board(&self) -> &Arc<DownloadBoard> {
        &self.board
    }

    /// Whether a download of `id` is queued or running.
    pub fn is_running(&self, id: &str) -> bool {
        self.cancels.contains_key(id)
    }

    /// Starts downloading `id` on a new thread (queued if too many run). The caller has
    /// checked that `id` is registered and not already downloading.
    pub fn start(&mut self, library: Library, id: String, files: Vec<RegistryFileSpec>) {
        let cancel = Arc::new(AtomicBool::new(false));
        self.cancels.insert(id.clone(), Arc::clone(&cancel));
        let board = Arc::clone(&self.board);
        let events = self.events_tx.clone();
        let slots = Arc::clone(&self.slots);
        let agent = self.agent.clone();
        board.set(&DownloadProgress::new(&id, &files));
        std::thread::Builder::new()
            .name(format!("download-{id}"))
            .spawn(move || {
                let result = if slots.acquire(&cancel) {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        download_model(&library, &id, &files, &agent, &cancel, &mut |p| {
                            board.set(p)
                        })
                    }));
                    slots.release();
                    match r {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => Err("internal error: the download thread panicked".into()),
                    }
                } else {
                    Err(DownloadError::Cancelled.to_string())
                };
                let mut last = board
                    .get(&id)
                    .unwrap_or_else(|| DownloadProgress::new(&id, &files));
                // The event goes first, so whoever sees the board's final state can count
                // on the service having been told.
                let _ = events.send(DownloadEvent {
                    id: id.clone(),
                    result: result.clone(),
                });
                last.state = match result {
                    Ok(_) => DownloadState::Done,
                    Err(reason) if reason == "cancelled" => DownloadState::Cancelled,
                    Err(reason) => DownloadState::Failed { reason },
                };
                last.speed_bytes_per_sec = 0.0;
                last.eta_seconds = None;
                board.set(&last);
            })
            .expect("spawn a download thread");
    }

    /// Asks a download to stop; it ends as `Cancelled` with its partial data kept.
    pub fn cancel(&mut self, id: &str) -> bool {
        match self.cancels.get(id) {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Downloads that ended since the last call.
    pub fn poll(&mut self) -> Vec<DownloadEvent> {
        let events: Vec<DownloadEvent> = self.events_rx.try_iter().collect();
        for e in &events {
            self.cancels.remove(&e.id);
        }
        events
    }

    /// Waits (up to `timeout`) for the next download to end.
    pub fn wait_next(&mut self, timeout: Duration) -> Option<DownloadEvent> {
        let event = self.events_rx.recv_timeout(timeout).ok()?;
        self.cancels.remove(&event.id);
        Some(event)
    }
}
