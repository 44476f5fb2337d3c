//! The worker thread: the only owner of the [`ModelLibraryService`] in the window. It is a
//! plain loop — receive a [`Request`], call the service, send exactly one [`Reply`] through
//! the request's promise, `request_repaint()` — and it answers every request even when the
//! service fails or panics. The UI thread only sends requests and polls promises.

use std::any::Any;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use poll_promise::Promise;

use crate::app::settings::StoreSetting;
use crate::library::ScanProgress;
use crate::library::watch::WatchOption;
use crate::library::{
    CacheInfo, DeleteMode, DeleteOutcome, DeletePlan, DownloadBoard, ImportMode, ImportOutcome,
    ImportRequest, Library, ListQuery, Listing, ModelInfo, ModelLibraryService, RefreshInfo,
    ServiceOptions, VerifyState, View,
};

/// What the window can ask of the worker. A closed set; every variant gets one reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Open a library: `None` for the default one (created with the built-in catalog).
    OpenLibrary {
        /// The folder, which must exist when given.
        path: Option<PathBuf>,
        /// TTL to apply, seconds.
        ttl_secs: u64,
        /// Also list the read-only stores found on this machine, with these per-store
        /// settings; `None` lists the library alone.
        stores: Option<BTreeMap<String, StoreSetting>>,
    },
    /// A filtered listing (through both cache levels).
    List {
        /// Filters and quick/full.
        query: ListQuery,
        /// Skip the caches.
        force_refresh: bool,
    },
    /// Drop both cache levels and rescan.
    Refresh,
    /// Set the cache TTL.
    SetTtl {
        /// Seconds, 30..=3600.
        secs: i64,
    },
    /// The state of both caches.
    CacheInfo,
    /// What deleting a model would remove.
    PlanDelete {
        /// The model id.
        id: String,
    },
    /// Delete a model's folder and partial downloads.
    Delete {
        /// The model id.
        id: String,
        /// Trash or permanent.
        mode: DeleteMode,
    },
    /// Start downloading a registered model (resumes partial data).
    Download {
        /// The model id.
        id: String,
    },
    /// Stop a running download; its partial data stays.
    CancelDownload {
        /// The model id.
        id: String,
    },
    /// Remove a model's partial download (`.downloads/<id>`).
    DiscardPartial {
        /// The model id.
        id: String,
    },
    /// Import a model file or folder (copied in).
    Import {
        /// The file or folder.
        source: PathBuf,
    },
    /// The files of a model folder (read-only; for the details panel).
    Files {
        /// The model id (echoed in the reply).
        id: String,
        /// Its folder.
        path: PathBuf,
        /// Where it was found (`library`, or a store: a Hugging Face repo lists its
        /// snapshots' files, not the cache's internals).
        source: String,
    },
    /// Start verifying files (these models' files; every file when empty) on the
    /// service's verify thread.
    Verify {
        /// Model ids (as listings show them).
        ids: Vec<String>,
    },
    /// Ask the running verify to stop.
    StopVerify,
    /// The running verify's progress and the last run's report.
    VerifyState,
    /// What no model needs, in the library and the stores.
    Reclaimable,
    /// Bytes on disk per source (shared files once).
    DiskUsage,
    /// Start looking for duplicates (on the service's thread for it).
    FindDuplicates,
    /// Start replacing the extra copies the last search found with hard links.
    LinkDuplicates,
    /// Duplicates work, as it stands.
    DuplicatesState,
    /// Move these reclaimable items to the trash (only those still reclaimable).
    Reclaim {
        /// The items' paths, as the user saw them.
        paths: Vec<PathBuf>,
    },
    /// Panic inside the worker (used by tests to prove the worker survives).
    #[doc(hidden)]
    Crash,
}

/// The worker's answer to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A library is open.
    Opened {
        /// The library.
        library: Library,
        /// The TTL in force.
        ttl_secs: u64,
        /// The listing saved by the last run, to show until the first scan replaces it.
        warm: Option<Arc<Listing>>,
        /// Each store's default folder on this machine (by kind), for the Stores window.
        store_defaults: BTreeMap<String, PathBuf>,
        /// This machine's memory, for what fits it (read here: the UI thread reads no
        /// file).
        machine: crate::library::fit::Machine,
    },
    /// A listing.
    Listed {
        /// The rows (shared with the service's cache).
        view: View,
        /// Whether the view cache answered.
        cache_hit: bool,
        /// Time the service took.
        elapsed: Duration,
        /// Cache state right after.
        cache: Box<CacheInfo>,
    },
    /// Caches rebuilt.
    Refreshed {
        /// What the refresh did.
        info: RefreshInfo,
        /// Cache state right after.
        cache: Box<CacheInfo>,
    },
    /// TTL applied.
    TtlSet {
        /// Cache state right after.
        cache: Box<CacheInfo>,
    },
    /// Cache state.
    CacheInfo(Box<CacheInfo>),
    /// What a delete would remove.
    DeletePlanned(DeletePlan),
    /// A delete happened.
    Deleted(DeleteOutcome),
    /// A download started (its progress is on the download board).
    DownloadStarted(Box<ModelInfo>),
    /// A download was asked to stop.
    DownloadCancelled {
        /// The model id.
        id: String,
    },
    /// A model was imported.
    Imported(ImportOutcome),
    /// The files of a model folder.
    Files {
        /// The model id.
        id: String,
        /// Relative paths and sizes.
        files: Vec<(String, u64)>,
        /// Whether there were more than listed.
        more: bool,
    },
    /// A verify run's state (after starting, stopping or asking).
    Verify(Box<VerifyState>),
    /// What no model needs, largest first.
    Reclaimable(Vec<crate::library::reclaim::Item>),
    /// Bytes on disk per source.
    DiskUsage(crate::library::sources::DiskUsage),
    /// Duplicates work, as it stands (after starting or asking).
    Duplicates(Box<crate::library::DuplicatesState>),
    /// What moving reclaimable items to the trash came to.
    Reclaimed(Vec<(PathBuf, crate::library::reclaim::Deleted)>),
    /// A partial download was removed.
    PartialDiscarded {
        /// The model id.
        id: String,
        /// Bytes freed.
        freed: u64,
    },
}

/// The one answer to a request: the reply, or why it failed (one line).
pub type Response = Result<Reply, String>;

type Job = (Request, poll_promise::Sender<Response>);

/// The UI's handle on the worker thread. Dropping it stops the thread.
pub struct Worker {
    jobs: Sender<Job>,
    progress: Arc<ScanProgress>,
    downloads: Arc<DownloadBoard>,
    generation: Arc<AtomicU64>,
}

/// How the worker's services run.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// How they watch the library (`--watch`).
    pub watch: WatchOption,
    /// The shared cache tier's Redis URL (`--redis`).
    pub redis: Option<String>,
}

impl Worker {
    /// Starts the worker thread. `repaint` is called after every reply (the window passes
    /// `ctx.request_repaint`).
    pub fn spawn(options: WorkerOptions, repaint: impl Fn() + Send + 'static) -> Worker {
        let (jobs, rx) = mpsc::channel::<Job>();
        let progress = Arc::new(ScanProgress::default());
        let downloads = Arc::new(DownloadBoard::default());
        let generation = Arc::new(AtomicU64::new(0));
        let state = WorkerState {
            service: None,
            progress: Arc::clone(&progress),
            downloads: Arc::clone(&downloads),
            generation: Arc::clone(&generation),
            fast_warmed: false,
            sources: Vec::new(),
            watch: options.watch,
            redis: options.redis,
        };
        std::thread::Builder::new()
            .name("model-library-worker".into())
            .spawn(move || worker_loop(rx, state, repaint))
            .expect("spawn the worker thread");
        Worker {
            jobs,
            progress,
            downloads,
            generation,
        }
    }

    /// Sends a request; the promise resolves with exactly one response.
    pub fn request(&self, request: Request) -> Promise<Response> {
        let (sender, promise) = Promise::new();
        if let Err(mpsc::SendError((_, sender))) = self.jobs.send((request, sender)) {
            sender.send(Err("the worker thread has stopped".into()));
        }
        promise
    }

    /// Progress of the scan the worker is running, readable without waiting.
    pub fn progress(&self) -> &ScanProgress {
        &self.progress
    }

    /// Bumped whenever the library changed on disk in a way the listing shows (file
    /// watching); list again when it moves.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Progress of the downloads the worker runs, readable without waiting.
    pub fn downloads(&self) -> Arc<DownloadBoard> {
        Arc::clone(&self.downloads)
    }
}

/// How often the idle worker lets the service tick (downloads ended, watched changes,
/// background metadata).
const TICK: Duration = Duration::from_millis(200);

fn worker_loop(rx: Receiver<Job>, mut state: WorkerState, repaint: impl Fn()) {
    let mut last_tick = std::time::Instant::now();
    loop {
        let job = rx.recv_timeout(TICK);
        if matches!(job, Err(mpsc::RecvTimeoutError::Disconnected)) {
            break;
        }
        // Idle, or busy for a whole tick (requests arriving faster than the tick must not
        // starve the background work): let the service tick.
        if job.is_err() || last_tick.elapsed() >= TICK {
            last_tick = std::time::Instant::now();
            if state.service.as_mut().is_some_and(|s| s.tick()) {
                repaint();
            }
        }
        let Ok((request, sender)) = job else { continue };
        // Ended downloads and watched changes reach the caches before anything is answered.
        if state.service.as_mut().is_some_and(|s| s.catch_up()) {
            repaint();
        }
        let response = match catch_unwind(AssertUnwindSafe(|| state.handle(request))) {
            Ok(response) => response,
            Err(panic) => {
                // The service may be half-way through something: start it afresh.
                state.reopen();
                Err(format!(
                    "internal error in the worker: {}",
                    panic_message(&*panic)
                ))
            }
        };
        sender.send(response);
        repaint();
        // Once a listing exists: warm the fast key (after the reply).
        state.after_first_listing();
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".into()
    }
}

struct WorkerState {
    service: Option<ModelLibraryService>,
    progress: Arc<ScanProgress>,
    downloads: Arc<DownloadBoard>,
    generation: Arc<AtomicU64>,
    /// Whether the fast listing was built once for this service.
    fast_warmed: bool,
    sources: Vec<crate::library::sources::SourceConfig>,
    /// How the services this worker opens watch the library.
    watch: WatchOption,
    /// The shared cache tier's Redis URL (`--redis`), if any.
    redis: Option<String>,
}

impl WorkerState {
    fn after_first_listing(&mut self) {
        if let Some(service) = self.service.as_mut()
            && !self.fast_warmed
            && service.cached(crate::library::ListKind::Full).is_some()
        {
            // Warm the other cache key too, so switching to the quick listing is instant.
            let _ = service.list(crate::library::ListKind::Fast, false);
            self.fast_warmed = true;
        }
    }

    fn handle(&mut self, request: Request) -> Response {
        if let Request::OpenLibrary {
            path,
            ttl_secs,
            stores,
        } = request
        {
            return self.open(path, ttl_secs, stores);
        }
        let service = self
            .service
            .as_mut()
            .ok_or_else(|| "no library is open".to_string())?;
        let text = |e: crate::library::LibraryError| e.to_string();
        Ok(match request {
            Request::OpenLibrary { .. } => unreachable!("handled above"),
            Request::List {
                query,
                force_refresh,
            } => {
                let started = Instant::now();
                let result = service.list_view(&query, force_refresh).map_err(text)?;
                let elapsed = started.elapsed();
                Reply::Listed {
                    view: result.view,
                    cache_hit: result.cache_hit,
                    elapsed,
                    cache: Box::new(service.cache_info()),
                }
            }
            Request::Refresh => {
                let info = service.refresh().map_err(text)?;
                Reply::Refreshed {
                    info,
                    cache: Box::new(service.cache_info()),
                }
            }
            Request::SetTtl { secs } => {
                service.set_ttl(secs).map_err(text)?;
                Reply::TtlSet {
                    cache: Box::new(service.cache_info()),
                }
            }
            Request::CacheInfo => Reply::CacheInfo(Box::new(service.cache_info())),
            Request::PlanDelete { id } => {
                Reply::DeletePlanned(service.plan_delete(&id).map_err(text)?)
            }
            Request::Delete { id, mode } => {
                Reply::Deleted(service.delete_model(&id, mode).map_err(text)?)
            }
            Request::Download { id } => {
                Reply::DownloadStarted(Box::new(service.start_download(&id).map_err(text)?))
            }
            Request::Verify { ids } => {
                Reply::Verify(Box::new(service.start_verify(&ids).map_err(text)?))
            }
            Request::StopVerify => {
                service.stop_verify();
                Reply::Verify(Box::new(service.verify_state()))
            }
            Request::VerifyState => Reply::Verify(Box::new(service.verify_state())),
            Request::Reclaimable => Reply::Reclaimable(service.reclaimable().map_err(text)?),
            Request::DiskUsage => Reply::DiskUsage(service.disk_usage().map_err(text)?),
            Request::FindDuplicates => {
                Reply::Duplicates(Box::new(service.start_duplicates().map_err(text)?))
            }
            Request::LinkDuplicates => {
                Reply::Duplicates(Box::new(service.start_linking().map_err(text)?))
            }
            Request::DuplicatesState => Reply::Duplicates(Box::new(service.duplicates_state())),
            Request::Reclaim { paths } => Reply::Reclaimed(service.reclaim(&paths).map_err(text)?),
            Request::CancelDownload { id } => {
                service.cancel_download(&id).map_err(text)?;
                Reply::DownloadCancelled { id }
            }
            Request::DiscardPartial { id } => {
                let freed = service.discard_partial(&id).map_err(text)?;
                Reply::PartialDiscarded { id, freed }
            }
            Request::Import { source } => Reply::Imported(
                service
                    .import_model(&ImportRequest {
                        source,
                        id: None,
                        mode: ImportMode::Copy,
                    })
                    .map_err(text)?,
            ),
            Request::Files { id, path, source } => {
                let (files, more) = crate::library::sources::model_files(&source, &path);
                Reply::Files { id, files, more }
            }
            Request::Crash => panic!("crash requested"),
        })
    }

    fn open(
        &mut self,
        path: Option<PathBuf>,
        ttl_secs: u64,
        stores: Option<BTreeMap<String, StoreSetting>>,
    ) -> Response {
        let library = crate::library::resolve_library(path).map_err(|e| e.to_string())?;
        let ttl = ttl_secs.clamp(crate::library::TTL_MIN_SECS, crate::library::TTL_MAX_SECS);
        let defaults = crate::library::sources::default_sources(
            &|k| std::env::var_os(k),
            dirs::home_dir().as_deref(),
        );
        let store_defaults = defaults
            .iter()
            .map(|s| (s.kind.as_str().to_string(), s.root.clone()))
            .collect();
        self.sources = match stores {
            Some(settings) => {
                let mut sources = defaults;
                for (kind, s) in &settings {
                    if let Ok(kind) = kind.parse() {
                        crate::library::sources::set_store(
                            &mut sources,
                            kind,
                            !s.disabled,
                            s.root.clone(),
                        );
                    }
                }
                sources
            }
            None => Vec::new(),
        };
        let mut service = self.make_service(library.clone(), ttl)?;
        let warm = service.warm_start();
        self.service = Some(service);
        self.fast_warmed = false;
        Ok(Reply::Opened {
            library,
            ttl_secs: ttl,
            warm,
            store_defaults,
            machine: crate::library::fit::Machine::read(),
        })
    }

    fn make_service(&self, library: Library, ttl_secs: u64) -> Result<ModelLibraryService, String> {
        ModelLibraryService::new(
            library,
            ServiceOptions {
                ttl_secs,
                progress: Arc::clone(&self.progress),
                downloads: Arc::clone(&self.downloads),
                generation: Arc::clone(&self.generation),
                sources: self.sources.clone(),
                watch: self.watch,
                redis: self.redis.clone(),
                ..ServiceOptions::default()
            },
        )
        .map_err(|e| e.to_string())
    }

    /// After a panic: a fresh service on the same library (downloads already running keep
    /// going and keep updating the board; the new service rescans when asked).
    fn reopen(&mut self) {
        self.progress.finish();
        if let Some(old) = self.service.take() {
            self.service = self
                .make_service(old.library().clone(), old.ttl_secs())
                .ok();
        }
    }
}
