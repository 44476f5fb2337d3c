//! Verify: reads the bytes of every file whose content is known in advance and says whether
//! they are still those bytes (issue "one truth about the bytes").
//!
//! Content addresses, mostly free: a Hugging Face blob is named by its SHA-256 (LFS files)
//! or by its git blob SHA-1 (small files); an Ollama blob by its SHA-256 (`sha256-<hex>`,
//! older installs `sha256:<hex>`); a library file by the `sha256` its registry entry
//! declares. [`targets`] lists them (one target per file, with every model that uses it),
//! [`run`] hashes them in parallel — what [`HashCache`] already knows for the file's
//! current state is not read again — and can be stopped between pieces; a stopped run's
//! finished files are kept, so the next run resumes.
//!
//! A mismatch is recorded in `LIBRARY/.cache/verify.bin` ([`Failures`]) with the file's
//! state, and marks the models that use the file `error` in every later listing
//! ([`Failures::mark`]) until the file changes (another state: no mark).
//!
//! Owns: the hash cache and the failures file under `.cache/` (written through the
//! library's write gate). Must not touch: anything else; files are only read (store blobs
//! never through a link; a library file declared by the registry may be a link to a file,
//! as a symlink import makes it, and is read through it).

mod hashes;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use hashes::{Digests, FileKey, HashCache};

use crate::library::cache_file;
use crate::library::error::{LibraryError, Result};
use crate::library::layout::Library;
use crate::library::model::{ModelInfo, ModelStatus};
use crate::library::registry::Registry;
use crate::library::sources::{SourceKind, SourceScan};

/// What a file's bytes must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", content = "hex", rename_all = "kebab-case")]
pub enum Expected {
    /// SHA-256, lower-case hex.
    Sha256(String),
    /// Git's blob SHA-1, lower-case hex.
    GitSha1(String),
}

impl Expected {
    /// The algorithm's name, as messages say it.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Expected::Sha256(_) => "sha256",
            Expected::GitSha1(_) => "git-sha1",
        }
    }

    /// The expected digest, lower-case hex.
    pub fn hex(&self) -> &str {
        match self {
            Expected::Sha256(h) | Expected::GitSha1(h) => h,
        }
    }

    /// The digest of this kind in `d`, as hex, if computed.
    fn actual(&self, d: &Digests) -> Option<String> {
        match self {
            Expected::Sha256(_) => d.sha256.map(|b| hex(&b)),
            Expected::GitSha1(_) => d.git_sha1.map(|b| hex(&b)),
        }
    }

    /// The content address a store's blob carries in its name, if any: Hugging Face
    /// `blobs/<64 hex>` (SHA-256) or `blobs/<40 hex>` (git SHA-1); Ollama
    /// `blobs/sha256-<64 hex>` or `blobs/sha256:<64 hex>`.
    pub fn of_store_blob(kind: SourceKind, path: &Path) -> Option<Expected> {
        let parent = path.parent()?.file_name()?;
        if parent != "blobs" {
            return None;
        }
        let name = path.file_name()?.to_str()?;
        let is_hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        match kind {
            // llama.cpp's newer cache is the hub's layout (`blobs/<oid>`).
            SourceKind::HuggingFace | SourceKind::LlamaCpp if is_hex(name, 64) => {
                Some(Expected::Sha256(name.into()))
            }
            SourceKind::HuggingFace | SourceKind::LlamaCpp if is_hex(name, 40) => {
                Some(Expected::GitSha1(name.into()))
            }
            SourceKind::Ollama => {
                let h = name
                    .strip_prefix("sha256-")
                    .or_else(|| name.strip_prefix("sha256:"))?;
                is_hex(h, 64).then(|| Expected::Sha256(h.into()))
            }
            _ => None,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One file to verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The file.
    pub path: PathBuf,
    /// How messages name it: the registry's path in the model folder, or `blobs/<name>`.
    pub label: String,
    /// What its bytes must hash to.
    pub expected: Expected,
    /// Whether a link at `path` is read through (library files only).
    #[serde(skip)]
    pub follow_link: bool,
    /// Every model that uses it (ids as listings show them), sorted.
    pub models: Vec<String>,
}

/// The files of the library (declared with a `sha256`, present) and of the scanned stores
/// (named by their content) to verify; with `only` non-empty, just those used by these
/// models. Sorted by path, one per file.
pub fn targets(
    library: &Library,
    registry: &Registry,
    scans: &[SourceScan],
    only: &[String],
) -> Vec<Target> {
    let mut by_path: BTreeMap<PathBuf, Target> = BTreeMap::new();
    let wanted = |id: &str| only.is_empty() || only.iter().any(|o| o == id);
    for entry in registry.entries.iter().filter(|e| wanted(&e.id)) {
        let folder = library.models_dir().join(&entry.id);
        for file in &entry.files {
            let Some(sha) = file.sha256() else { continue };
            let path = folder.join(&file.path);
            if fs::metadata(&path).is_err() {
                continue; // missing: the listing says so; nothing to read
            }
            let t = by_path.entry(path.clone()).or_insert_with(|| Target {
                path,
                label: file.path.clone(),
                expected: Expected::Sha256(sha.to_ascii_lowercase()),
                follow_link: true,
                models: Vec::new(),
            });
            t.models.push(entry.id.clone());
        }
    }
    for scan in scans {
        for (id, paths) in scan.model_blobs.iter().filter(|(id, _)| wanted(id)) {
            for path in paths {
                let Some(expected) = Expected::of_store_blob(scan.kind, path) else {
                    continue;
                };
                let t = by_path.entry(path.clone()).or_insert_with(|| Target {
                    path: path.clone(),
                    label: format!(
                        "blobs/{}",
                        path.file_name().unwrap_or_default().to_string_lossy()
                    ),
                    expected,
                    follow_link: false,
                    models: Vec::new(),
                });
                t.models.push(id.clone());
            }
        }
    }
    let mut out: Vec<Target> = by_path.into_values().collect();
    for t in &mut out {
        t.models.sort();
        t.models.dedup();
    }
    out
}

/// What verifying one file found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The bytes are the expected ones.
    Ok,
    /// They are not.
    Mismatch {
        /// What they hash to.
        actual: String,
    },
    /// The file could not be read (or is not a regular file).
    Unreadable {
        /// Why.
        reason: String,
    },
    /// The file changed while it was read: verify it again.
    Changed,
    /// The run was stopped before this file was finished.
    Stopped,
}

/// One verified file.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The file.
    #[serde(flatten)]
    pub target: Target,
    /// What was found.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Whether the hash came from the cache (nothing was read).
    pub cached: bool,
}

impl Checked {
    /// The message a listing shows for a mismatch: "<file>: sha256 mismatch, expected …,
    /// got …".
    pub fn mismatch_message(&self) -> Option<String> {
        match &self.verdict {
            Verdict::Mismatch { actual } => Some(format!(
                "{}: {} mismatch, expected {}, got {}",
                self.target.label,
                self.target.expected.algorithm(),
                self.target.expected.hex(),
                actual
            )),
            _ => None,
        }
    }
}

/// Progress of a run, readable from another thread.
#[derive(Debug, Default)]
pub struct VerifyProgress {
    /// Bytes to read in all (files the cache does not know).
    pub total_bytes: AtomicU64,
    /// Bytes read so far.
    pub done_bytes: AtomicU64,
    /// Files to check in all.
    pub total_files: AtomicU64,
    /// Files checked so far.
    pub done_files: AtomicU64,
}

/// Reads `targets` (files the cache knows in their current state are not read again) on
/// `threads` threads, recording what was computed in `cache`; stops between pieces once
/// `stop` is set (unfinished files come back [`Verdict::Stopped`]). In `targets`' order.
pub fn run(
    targets: Vec<Target>,
    cache: &mut HashCache,
    progress: &VerifyProgress,
    stop: &AtomicBool,
    threads: usize,
) -> Vec<Checked> {
    progress
        .total_files
        .store(targets.len() as u64, Ordering::Relaxed);
    // First what the cache knows; the rest is read.
    let mut out: Vec<Option<Checked>> = Vec::with_capacity(targets.len());
    let mut to_read: Vec<(usize, Target)> = Vec::new();
    for (i, t) in targets.into_iter().enumerate() {
        let meta = if t.follow_link {
            fs::metadata(&t.path)
        } else {
            fs::symlink_metadata(&t.path)
        };
        let known = meta
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| cache.get(&FileKey::of(&m)))
            .and_then(|d| t.expected.actual(&d));
        match known {
            Some(actual) => {
                progress.done_files.fetch_add(1, Ordering::Relaxed);
                out.push(Some(judge(t, Ok(actual), true)));
            }
            None => {
                if let Ok(m) = fs::symlink_metadata(&t.path) {
                    progress.total_bytes.fetch_add(m.len(), Ordering::Relaxed);
                }
                out.push(None);
                to_read.push((i, t));
            }
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .thread_name(|i| format!("model-library-verify-{i}"))
        .build();
    let read = |(i, t): (usize, Target)| {
        let git = matches!(t.expected, Expected::GitSha1(_));
        let result = hash_file(&t.path, t.follow_link, git, progress, stop);
        progress.done_files.fetch_add(1, Ordering::Relaxed);
        (i, t, result)
    };
    let results: Vec<(usize, Target, io::Result<Hashed>)> = match pool {
        Ok(pool) => pool.install(|| to_read.into_par_iter().map(read).collect()),
        Err(_) => to_read.into_iter().map(read).collect(),
    };
    for (i, t, result) in results {
        let checked = match result {
            Ok(Hashed::Done { key, digests }) => {
                cache.put(key, digests);
                let actual = t.expected.actual(&digests).unwrap_or_default();
                judge(t, Ok(actual), false)
            }
            Ok(Hashed::Changed) => judge(t, Err(Verdict::Changed), false),
            Ok(Hashed::Stopped) => judge(t, Err(Verdict::Stopped), false),
            Err(e) => judge(
                t,
                Err(Verdict::Unreadable {
                    reason: e.to_string(),
                }),
                false,
            ),
        };
        out[i] = Some(checked);
    }
    out.into_iter().flatten().collect()
}

fn judge(target: Target, actual: std::result::Result<String, Verdict>, cached: bool) -> Checked {
    let verdict = match actual {
        Ok(actual) if actual == target.expected.hex() => Verdict::Ok,
        Ok(actual) => Verdict::Mismatch { actual },
        Err(v) => v,
    };
    Checked {
        target,
        verdict,
        cached,
    }
}

/// What reading a file for its digest came to.
pub(crate) enum Hashed {
    /// Read whole, in the state `key`.
    Done { key: FileKey, digests: Digests },
    /// It changed while it was read.
    Changed,
    /// Stopped before the end.
    Stopped,
}

/// Reads the file at `path` once (through a link there only when `follow_link`), computing
/// its git blob SHA-1 when `git`, else its SHA-256. The file's state is taken from the open
/// file before and after: a file that changed meanwhile is not judged.
pub(crate) fn hash_file(
    path: &Path,
    follow_link: bool,
    git: bool,
    progress: &VerifyProgress,
    stop: &AtomicBool,
) -> io::Result<Hashed> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    if !follow_link {
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let mut file: File = options.open(path)?;
    let before = file.metadata()?;
    if !before.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let key = FileKey::of(&before);
    let mut sha256 = Sha256::new();
    let mut sha1 = sha1::Sha1::new();
    if git {
        sha1.update(format!("blob {}\0", key.size).as_bytes());
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Hashed::Stopped);
        }
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if git {
            sha1.update(&buf[..n]);
        } else {
            sha256.update(&buf[..n]);
        }
        progress.done_bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    if FileKey::of(&file.metadata()?) != key {
        return Ok(Hashed::Changed);
    }
    let digests = if git {
        Digests {
            git_sha1: Some(sha1.finalize().into()),
            ..Digests::default()
        }
    } else {
        Digests {
            sha256: Some(sha256.finalize().into()),
            ..Digests::default()
        }
    };
    Ok(Hashed::Done { key, digests })
}

/// File name of the failures under `.cache/`.
pub const FAILURES_FILE: &str = "verify.bin";
const FAILURES_MAGIC: &[u8; 8] = b"MLVERIF\0";
const FAILURES_VERSION: u32 = 1;

/// One file found not to hold its expected bytes, in the state it was found in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The file.
    pub path: PathBuf,
    /// Whether a link at `path` is read through (library files).
    pub follow_link: bool,
    /// Its state when it was read.
    pub key: FileKey,
    /// The models that use it.
    pub models: Vec<String>,
    /// What the listing says: "<file>: sha256 mismatch, expected …, got …".
    pub message: String,
}

impl Failure {
    /// Whether the file is still in the state it was found in.
    fn still_there(&self) -> bool {
        let meta = if self.follow_link {
            fs::metadata(&self.path)
        } else {
            fs::symlink_metadata(&self.path)
        };
        meta.is_ok_and(|m| FileKey::of(&m) == self.key)
    }
}

/// The mismatches found by verify runs, as saved in `.cache/verify.bin`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// One per file.
    pub files: Vec<Failure>,
}

impl Failures {
    /// The library's saved failures (none when there are none or the file is unusable).
    pub fn load(library: &Library) -> Failures {
        cache_file::read(library, FAILURES_FILE)
            .ok()
            .and_then(|bytes| {
                let payload =
                    cache_file::unframed(&bytes, FAILURES_MAGIC, FAILURES_VERSION, "failures")
                        .ok()?;
                postcard::from_bytes(payload).ok()
            })
            .unwrap_or_default()
    }

    /// Takes in a run's results: every file it judged loses its old failure; mismatches
    /// are added with the state they were read in. Files not judged (changed, stopped,
    /// unreadable) keep what was known. Returns whether anything changed.
    pub fn record(&mut self, checked: &[Checked]) -> bool {
        let before = self.files.clone();
        let judged: HashMap<&Path, &Checked> = checked
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Ok | Verdict::Mismatch { .. }))
            .map(|c| (c.target.path.as_path(), c))
            .collect();
        self.files
            .retain(|f| !judged.contains_key(f.path.as_path()));
        for c in judged.values() {
            let Some(message) = c.mismatch_message() else {
                continue;
            };
            let meta = if c.target.follow_link {
                fs::metadata(&c.target.path)
            } else {
                fs::symlink_metadata(&c.target.path)
            };
            let Ok(meta) = meta else { continue };
            self.files.push(Failure {
                path: c.target.path.clone(),
                follow_link: c.target.follow_link,
                key: FileKey::of(&meta),
                models: c.target.models.clone(),
                message,
            });
        }
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        self.files != before
    }

    /// The state of the library's failures file (`None` when there is none): another
    /// process's verify run changes it.
    pub fn stamp(library: &Library) -> Option<FileKey> {
        fs::symlink_metadata(library.cache_dir().join(FAILURES_FILE))
            .ok()
            .map(|m| FileKey::of(&m))
    }

    /// Saves them (atomically, never through a link).
    pub fn save(&self, library: &Library) -> Result<()> {
        let payload = postcard::to_stdvec(self)
            .map_err(|e| LibraryError::io(library.cache_dir(), io::Error::other(e)))?;
        let bytes = cache_file::framed(FAILURES_MAGIC, FAILURES_VERSION, &payload);
        library
            .open_writes()?
            .cache()?
            .write_atomic(FAILURES_FILE, &bytes)
            .map_err(|e| LibraryError::io(library.cache_dir(), e))
    }

    /// Marks the rows of models whose files are still in the state a mismatch was found
    /// in: status `error`, the message added to `error`. Returns whether a row changed.
    pub fn mark(&self, rows: &mut [Arc<ModelInfo>]) -> bool {
        let live: Vec<&Failure> = self.files.iter().filter(|f| f.still_there()).collect();
        if live.is_empty() {
            return false;
        }
        let mut messages: HashMap<&str, Vec<&str>> = HashMap::new();
        for f in &live {
            for m in &f.models {
                messages.entry(m.as_str()).or_default().push(&f.message);
            }
        }
        let mut changed = false;
        for row in rows.iter_mut() {
            let Some(found) = messages.get(row.id.as_str()) else {
                continue;
            };
            let already = row.error.as_deref().unwrap_or("").to_string();
            let new: Vec<&str> = found
                .iter()
                .copied()
                .filter(|m| !already.contains(m))
                .collect();
            if new.is_empty() && row.status == ModelStatus::Error {
                continue;
            }
            let row = Arc::make_mut(row);
            let mut parts: Vec<&str> = Vec::new();
            if !already.is_empty() {
                parts.push(&already);
            }
            parts.extend(new);
            row.error = Some(parts.join("; ").into());
            row.status = ModelStatus::Error;
            changed = true;
        }
        changed
    }
}

/// Counts of what a run found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Files checked.
    pub files: usize,
    /// Holding their expected bytes.
    pub ok: usize,
    /// Not holding them.
    pub mismatched: usize,
    /// That could not be read.
    pub unreadable: usize,
    /// That changed while they were read.
    pub changed: usize,
    /// Not finished: the run was stopped.
    pub stopped: usize,
    /// Whose hash came from the hash cache (nothing read).
    pub from_hash_cache: usize,
}

impl Summary {
    /// The counts of `checked`.
    pub fn of(checked: &[Checked]) -> Summary {
        let mut s = Summary {
            files: checked.len(),
            ..Summary::default()
        };
        for c in checked {
            match c.verdict {
                Verdict::Ok => s.ok += 1,
                Verdict::Mismatch { .. } => s.mismatched += 1,
                Verdict::Unreadable { .. } => s.unreadable += 1,
                Verdict::Changed => s.changed += 1,
                Verdict::Stopped => s.stopped += 1,
            }
            s.from_hash_cache += usize::from(c.cached);
        }
        s
    }

    /// Whether every file holds its expected bytes.
    pub fn all_good(&self) -> bool {
        self.ok == self.files
    }
}

/// A verify run on a thread of its own (loading and saving the hash cache there too), so
/// whoever started it is never held: started by [`Job::start`], stopped by
/// [`Job::stop`], its result taken by [`Job::try_finish`].
#[derive(Debug)]
pub struct Job {
    progress: Arc<VerifyProgress>,
    stop: Arc<AtomicBool>,
    result: std::sync::mpsc::Receiver<Vec<Checked>>,
}

impl Job {
    /// Starts verifying `targets` of `library` on `threads` threads.
    pub fn start(library: Library, targets: Vec<Target>, threads: usize) -> Result<Job> {
        let progress = Arc::new(VerifyProgress::default());
        progress
            .total_files
            .store(targets.len() as u64, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, result) = std::sync::mpsc::channel();
        let (p, s) = (Arc::clone(&progress), Arc::clone(&stop));
        let root = library.root().to_path_buf();
        std::thread::Builder::new()
            .name("model-library-verify".into())
            .spawn(move || {
                let mut cache = HashCache::load(&library);
                let checked = run(targets, &mut cache, &p, &s, threads);
                let _ = cache.save(&library); // a cache: failing to save loses nothing
                let _ = tx.send(checked);
            })
            .map_err(|e| LibraryError::io(root, e))?;
        Ok(Job {
            progress,
            stop,
            result,
        })
    }

    /// Its progress.
    pub fn progress(&self) -> &VerifyProgress {
        &self.progress
    }

    /// Asks it to stop between pieces (finished files are kept).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Its result, once it has finished (never blocks). A job whose thread died gives an
    /// empty result.
    pub fn try_finish(&self) -> Option<Vec<Checked>> {
        match self.result.try_recv() {
            Ok(checked) => Some(checked),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(Vec::new()),
        }
    }
}
