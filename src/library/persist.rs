//! The persisted full listing: `LIBRARY/.cache/listing.bin`, written atomically after each
//! full scan and read at startup so a window can show the library at once while it is
//! revalidated. The format is versioned and checksummed: a missing, truncated, corrupt,
//! foreign or old-version file is ignored (with the reason) and rebuilt, never trusted.
//! Touches only that file, never through a symbolic link (a link there is refused when
//! saving and ignored when loading).

use std::io;
use std::path::PathBuf;

use crate::library::cache::Listing;
use crate::library::cache_file;
use crate::library::error::{LibraryError, Result};
use crate::library::layout::Library;
use crate::library::listing_bytes::{self, Purpose};
use crate::library::model::ListKind;
use crate::library::registry_copy;
use crate::library::registry_pack::PackedRegistry;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// File name of the persisted listing under `.cache/`.
pub const FILE_NAME: &str = "listing.bin";
/// Version of the on-disk format (that of [`listing_bytes`]).
pub const FORMAT_VERSION: u32 = listing_bytes::VERSION;

/// Path of the persisted listing of `library`.
pub fn path(library: &Library) -> PathBuf {
    library.cache_dir().join(FILE_NAME)
}

/// Saves a full listing (atomic write; the previous file stays whole if this fails).
pub fn save(library: &Library, listing: &Listing) -> Result<()> {
    debug_assert_eq!(listing.kind, ListKind::Full);
    let bytes = listing_bytes::encode(library, listing, Purpose::Persisted, None);
    library
        .open_writes()?
        .cache()?
        .write_atomic(FILE_NAME, &bytes)
        .map_err(|e| LibraryError::io(path(library), e))
}

/// Writes full listings on a thread of its own, so a save (about 0.2 s at 100 000 models)
/// never holds the service. Listings handed over while one is being written are coalesced:
/// only the newest is written next. Dropping the saver waits for the last one, so a CLI run
/// exits with its listing saved.
pub struct Saver {
    library: Library,
    shared: Arc<(Mutex<SaverState>, Condvar)>,
    /// Started at the first save.
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct SaverState {
    /// The newest listing not yet being written.
    next: Option<Arc<Listing>>,
    /// The newest registry copy to make, not yet being written.
    registry: Option<(Arc<PackedRegistry>, registry_copy::Pending)>,
    /// A listing is being written now.
    busy: bool,
    /// The saver is dropped: write what is queued, then stop.
    closed: bool,
    /// What the last save did, or that one is under way.
    note: Option<String>,
}

impl std::fmt::Debug for Saver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saver")
            .field("library", &self.library)
            .field("note", &self.note())
            .finish()
    }
}

impl Saver {
    /// A saver for `library` (no thread until the first save).
    pub fn new(library: Library) -> Saver {
        Saver {
            library,
            shared: Arc::default(),
            thread: None,
        }
    }

    /// Queues `listing` to be saved (replacing one queued and not yet started).
    pub fn save(&mut self, listing: Arc<Listing>) {
        {
            let mut state = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
            state.next = Some(listing);
            state.note = Some(format!("saving to {}", path(&self.library).display()));
        }
        self.wake();
    }

    /// Queues the binary copy of `registry` that loading it asked for (`registry.bin`).
    pub fn copy_registry(
        &mut self,
        registry: Arc<PackedRegistry>,
        pending: registry_copy::Pending,
    ) {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .registry = Some((registry, pending));
        self.wake();
    }

    /// Wakes the thread (starting it the first time).
    fn wake(&mut self) {
        self.shared.1.notify_all();
        if self.thread.is_none() {
            let (library, shared) = (self.library.clone(), Arc::clone(&self.shared));
            self.thread = std::thread::Builder::new()
                .name("listing-saver".into())
                .spawn(move || save_loop(&library, &shared))
                .ok();
            if self.thread.is_none() {
                // No thread to be had: save here rather than not at all.
                save_loop_once(&self.library, &self.shared);
            }
        }
    }

    /// What the last save did ("saved to …", "could not save …"), or that one is under way.
    pub fn note(&self) -> Option<String> {
        let state = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        state.note.clone()
    }

    /// Waits until every listing handed over is written.
    pub fn flush(&self) {
        let (lock, wake) = &*self.shared;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.thread.is_some()
            && (state.next.is_some() || state.registry.is_some() || state.busy)
        {
            state = wake.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn save_loop(library: &Library, shared: &(Mutex<SaverState>, Condvar)) {
    let (lock, wake) = shared;
    loop {
        {
            let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
            while state.next.is_none() && state.registry.is_none() && !state.closed {
                state = wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.next.is_none() && state.registry.is_none() {
                return; // closed, nothing left
            }
        }
        save_loop_once(library, shared);
    }
}

/// Writes the queued listing and registry copy, if any, and records what happened.
fn save_loop_once(library: &Library, shared: &(Mutex<SaverState>, Condvar)) {
    let (lock, wake) = shared;
    let (listing, registry) = {
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        let taken = (state.next.take(), state.registry.take());
        state.busy = taken.0.is_some() || taken.1.is_some();
        taken
    };
    if let Some((registry, pending)) = registry {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            registry_copy::write_pending(library, pending, &registry)
        }));
    }
    let Some(listing) = listing else {
        lock.lock().unwrap_or_else(|e| e.into_inner()).busy = false;
        wake.notify_all();
        return;
    };
    // A panic while saving must not leave `busy` set (a flush would wait for ever).
    let saved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| save(library, &listing)));
    let note = match saved {
        Ok(Ok(())) => format!("saved to {}", path(library).display()),
        Ok(Err(e)) => format!("could not save the listing: {e}"),
        Err(_) => "could not save the listing: the saver failed".to_string(),
    };
    drop(listing);
    let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
    state.busy = false;
    if state.next.is_none() {
        state.note = Some(note);
    }
    drop(state);
    wake.notify_all();
}

/// Why a persisted listing was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadProblem {
    /// There is none (first start).
    Absent,
    /// There is one, but it cannot be trusted; the reason says why.
    Ignored(String),
}

/// Loads the persisted listing of `library`.
pub fn load(library: &Library) -> Result<Listing, LoadProblem> {
    let file = path(library);
    let bytes = match cache_file::read(library, FILE_NAME) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadProblem::Absent),
        Err(e) => return Err(LoadProblem::Ignored(format!("{}: {e}", file.display()))),
    };
    let bad = |why: &str| LoadProblem::Ignored(format!("{}: {why}", file.display()));
    let decoded =
        listing_bytes::decode(library, &bytes, Purpose::Persisted).map_err(|why| bad(&why))?;
    if decoded.library_root != library.root().to_string_lossy() {
        return Err(bad("written for another library folder"));
    }
    if decoded.listing.kind != ListKind::Full {
        return Err(bad("not a full listing"));
    }
    Ok(decoded.listing)
}
