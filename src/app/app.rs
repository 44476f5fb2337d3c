//! The window's state and its frame: lays out the panels, turns their actions into worker
//! requests, and applies the worker's replies. Never touches the file system and never
//! waits: every request is a `Promise` polled once per frame.

mod frame;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use poll_promise::Promise;

use crate::app::settings::{Settings, SortKey, StoreSetting};
use crate::app::ui::cache_panel::{CacheAction, CachePanelInput, Sample, cache_panel_ui};
use crate::app::ui::details::{DetailsAction, details_ui};
use crate::app::ui::dialogs::{DeleteDialogInput, DialogAction, delete_dialog_ui};
use crate::app::ui::disk::{DiskAction, DiskInput, disk_ui};
use crate::app::ui::import::{ImportAction, import_ui};
use crate::app::ui::notices::{About, Level, Notice, NoticeAction, notices_ui};
use crate::app::ui::reclaim::{ReclaimAction, ReclaimInput, reclaim_ui};
use crate::app::ui::status_bar::{StatusAction, StatusInput, status_bar_ui};
use crate::app::ui::stores::{StoresAction, StoresDraft, stores_ui};
use crate::app::ui::table::{TableAction, TableInput, table_ui};
use crate::app::ui::toolbar::{ToolbarAction, ToolbarInput, ToolbarText, toolbar_ui};
use crate::app::worker::{Reply, Request, Response, Worker};
use crate::library::unix_seconds;
use crate::library::{
    CacheInfo, DeletePlan, DownloadProgress, DownloadState, Library, ListQuery, ModelInfo,
    ModelStatus, VerifyState, View,
};

/// How often the window asks the worker for the cache state while idle, seconds.
const CACHE_POLL_SECS: f64 = 2.0;
/// Samples kept for the plots.
const HISTORY_LEN: usize = 240;
/// Notices kept at most.
const MAX_NOTICES: usize = 5;

/// How the window starts.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// `--library DIR`: overrides the library remembered in the settings.
    pub library: Option<PathBuf>,
    /// Settings to start from instead of the stored ones (tests).
    pub settings: Option<Settings>,
    /// List the read-only stores (Hugging Face cache, Ollama, LM Studio) beside the
    /// library, as the settings say; `false` never lists them (tests, `--no-sources`).
    pub stores: bool,
    /// How the library is watched (`--watch`).
    pub watch: crate::library::watch::WatchOption,
    /// `--store KIND=DIR` and `--no-store KIND`, by kind: they win over the Stores
    /// settings for this run and are not saved.
    pub store_overrides: Vec<(String, StoreSetting)>,
    /// `--redis URL` (or `$MODEL_LIBRARY_REDIS`): the shared cache tier.
    pub redis: Option<String>,
}

/// One-off operations; at most one runs at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Refresh,
    SetTtl,
    PlanDelete,
    Delete,
    /// A raw request sent by a test ([`ModelLibraryApp::send_for_test`]).
    Raw,
}

/// The files of the selected model, as the worker listed them.
#[derive(Debug, Clone)]
struct FileList {
    id: String,
    files: Vec<(String, u64)>,
    more: bool,
}

/// The delete confirmation in progress.
#[derive(Debug, Clone)]
struct DeleteState {
    id: String,
    name: String,
    plan: Option<DeletePlan>,
}

/// The window.
pub struct ModelLibraryApp {
    /// What persists.
    pub settings: Settings,
    stores_allowed: bool,
    /// The command line's store choices (see [`AppOptions::store_overrides`]).
    store_overrides: Vec<(String, StoreSetting)>,
    worker: Worker,

    open_req: Option<Promise<Response>>,
    list_req: Option<Promise<Response>>,
    list_queued: Option<bool>,
    info_req: Option<Promise<Response>>,
    op_req: Option<(Op, Promise<Response>)>,
    download_reqs: Vec<Promise<Response>>,
    downloads: BTreeMap<String, DownloadProgress>,
    picker: Option<Promise<Option<PathBuf>>>,
    import_picker: Option<Promise<Option<PathBuf>>>,
    /// The Import window's typed path, while the window is open.
    import_path: Option<String>,

    library: Option<Library>,
    view: Option<View>,
    order: Vec<u32>,
    providers: Vec<String>,
    capabilities: Vec<String>,
    sources: Vec<String>,
    counts: [usize; 5],
    total_bytes: Option<u64>,
    cache: Option<CacheInfo>,
    history: VecDeque<Sample>,
    /// When each listing the cache held was installed (unix seconds), for the age plot.
    installed: VecDeque<f64>,
    stale_rows: bool,
    revalidating: bool,
    notices: Vec<Notice>,
    /// Library states already announced as notices (writes off, recovery), so a notice
    /// the user dismissed does not come back with the next cache info.
    announced: Vec<String>,

    search: String,
    /// Only models that fit [`App::machine`] are in the order.
    fits_only: bool,
    /// This machine's memory, from the worker (`None` until a library is open).
    machine: Option<crate::library::fit::Machine>,
    typed_path: String,
    ttl_slider: f64,
    focus_search: bool,
    selected: Option<String>,
    /// The last model selected, which Enter opens again after Escape closed its details.
    last_selected: Option<String>,
    /// Each store's default folder, as the worker found it when the library opened.
    store_defaults: BTreeMap<String, PathBuf>,
    /// A row (position in `order`) the table scrolls to in the next frame, once: set when
    /// the keyboard moves the selection.
    scroll_to: Option<usize>,
    delete: Option<DeleteState>,
    /// Why opening a folder in the file manager failed, written by the opener's thread and
    /// turned into notices by the next frame.
    opener_failures: Arc<Mutex<Vec<String>>>,
    stores_draft: Option<StoresDraft>,
    files: Option<FileList>,
    files_req: Option<Promise<Response>>,
    last_info_poll: f64,
    auto_key: Option<String>,
    seen_generation: u64,
    /// The verify run's state as last reported (polled while it runs).
    verify: Option<VerifyState>,
    verify_req: Option<Promise<Response>>,
    last_verify_poll: Option<Instant>,
    /// What no model needs, as last looked for (`None`: not yet).
    reclaimable: Option<Vec<crate::library::reclaim::Item>>,
    /// The Reclaimable window, while open: whether the user asked to delete (to confirm).
    reclaim_window: Option<bool>,
    reclaim_req: Option<Promise<Response>>,
    /// The Disk window, while open: whether the user asked to link copies (to confirm).
    disk_window: Option<bool>,
    disk_usage: Option<crate::library::sources::DiskUsage>,
    /// The five largest and the five least recently changed rows, picked when the Disk
    /// window opens (not every frame).
    disk_tops: (Vec<ModelInfo>, Vec<ModelInfo>),
    disk_req: Option<Promise<Response>>,
    /// Duplicates work as last reported (polled while it runs).
    duplicates: Option<crate::library::DuplicatesState>,
    dup_req: Option<Promise<Response>>,
    last_dup_poll: Option<Instant>,
}

impl ModelLibraryApp {
    /// Creates the window state and starts the worker; the first listing is requested at
    /// once and fills in when the worker replies.
    pub fn new(cc: &eframe::CreationContext<'_>, options: AppOptions) -> Self {
        let mut settings = options
            .settings
            .or_else(|| {
                cc.storage
                    .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            })
            .unwrap_or_default();
        if options.library.is_some() {
            settings.library = options.library;
        }
        cc.egui_ctx.set_theme(settings.theme.preference());
        let ctx = cc.egui_ctx.clone();
        let worker_options = crate::app::worker::WorkerOptions {
            watch: options.watch,
            redis: options.redis.clone(),
        };
        let worker = Worker::spawn(worker_options, move || ctx.request_repaint());
        let mut app = ModelLibraryApp {
            ttl_slider: settings.ttl_secs as f64,
            settings,
            stores_allowed: options.stores,
            store_overrides: options.store_overrides.clone(),
            worker,
            open_req: None,
            list_req: None,
            list_queued: None,
            info_req: None,
            op_req: None,
            download_reqs: Vec::new(),
            downloads: BTreeMap::new(),
            picker: None,
            import_picker: None,
            import_path: None,
            library: None,
            view: None,
            order: Vec::new(),
            providers: Vec::new(),
            capabilities: Vec::new(),
            sources: Vec::new(),
            counts: [0; 5],
            total_bytes: None,
            cache: None,
            history: VecDeque::new(),
            installed: VecDeque::new(),
            stale_rows: false,
            revalidating: false,
            notices: Vec::new(),
            announced: Vec::new(),
            search: String::new(),
            fits_only: false,
            machine: None,
            typed_path: String::new(),
            focus_search: false,
            selected: None,
            last_selected: None,
            store_defaults: BTreeMap::new(),
            scroll_to: None,
            delete: None,
            opener_failures: Arc::default(),
            stores_draft: None,
            files: None,
            files_req: None,
            last_info_poll: 0.0,
            auto_key: None,
            seen_generation: 0,
            verify: None,
            verify_req: None,
            last_verify_poll: None,
            reclaimable: None,
            reclaim_window: None,
            reclaim_req: None,
            disk_window: None,
            disk_usage: None,
            disk_tops: (Vec::new(), Vec::new()),
            disk_req: None,
            duplicates: None,
            dup_req: None,
            last_dup_poll: None,
        };
        app.open_library(app.settings.library.clone());
        app
    }

    /// The TTL the window shows (its slider) and sets.
    pub fn ttl_secs(&self) -> u64 {
        self.settings.ttl_secs
    }

    /// Whether any request to the worker is still unanswered.
    pub fn is_busy(&self) -> bool {
        self.open_req.is_some()
            || self.list_req.is_some()
            || self.info_req.is_some()
            || self.op_req.is_some()
            || self.list_queued.is_some()
            || !self.download_reqs.is_empty()
            || self.files_req.is_some()
            || self.verify_req.is_some()
            || self.verifying()
            || self.reclaim_req.is_some()
            || self.disk_req.is_some()
            || self.dup_req.is_some()
            || self.deduplicating()
    }

    /// Downloads of this session, by id, as of this frame.
    pub fn downloads(&self) -> &BTreeMap<String, DownloadProgress> {
        &self.downloads
    }

    /// The rows on screen, in display order.
    pub fn visible_models(&self) -> Vec<&ModelInfo> {
        match &self.view {
            Some(view) => self
                .order
                .iter()
                .filter_map(|&i| view.get(i as usize))
                .collect(),
            None => Vec::new(),
        }
    }

    /// The id of the selected row, if any.
    pub fn selected_id(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// The notices on screen.
    pub fn notices(&self) -> &[Notice] {
        &self.notices
    }

    /// The latest cache state received.
    pub fn cache_info(&self) -> Option<&CacheInfo> {
        self.cache.as_ref()
    }

    /// Whether the rows on screen are the listing saved by the last run, being revalidated.
    pub fn is_revalidating(&self) -> bool {
        self.revalidating
    }

    /// Whether the rows on screen are the last good listing after a failure.
    pub fn rows_are_stale(&self) -> bool {
        self.stale_rows
    }

    /// The open library.
    pub fn library(&self) -> Option<&Library> {
        self.library.as_ref()
    }

    /// Sends a raw request to the worker as a one-off operation (tests use this to prove
    /// the window survives a failing worker).
    #[doc(hidden)]
    pub fn send_for_test(&mut self, request: Request) {
        self.op_req = Some((Op::Raw, self.worker.request(request)));
    }

    fn query(&self) -> ListQuery {
        ListQuery {
            quick: self.settings.quick,
            provider: self.settings.provider.clone(),
            status: self.settings.status,
            capability: self.settings.capability.clone(),
        }
    }

    fn open_library(&mut self, path: Option<PathBuf>) {
        self.open_req = Some(self.worker.request(Request::OpenLibrary {
            path,
            ttl_secs: self.settings.ttl_secs,
            stores: (self.stores_allowed && self.settings.other_stores).then(|| {
                let mut stores = self.settings.stores.clone();
                stores.extend(self.store_overrides.iter().cloned());
                stores
            }),
        }));
    }

    fn request_list(&mut self, force_refresh: bool) {
        if self.list_req.is_some() || self.open_req.is_some() {
            // Coalesce: one more listing after the running one, with the newest filters.
            self.list_queued = Some(self.list_queued.unwrap_or(false) || force_refresh);
            return;
        }
        self.list_req = Some(self.worker.request(Request::List {
            query: self.query(),
            force_refresh,
        }));
    }

    fn start_op(&mut self, op: Op, request: Request) {
        if self.op_req.is_some() {
            self.notify(
                Level::Info,
                "Another operation is still running; try again in a moment.",
            );
            return;
        }
        self.op_req = Some((op, self.worker.request(request)));
    }

    /// Keeps the latest cache info and announces what it says about the library.
    fn set_cache_info(&mut self, info: CacheInfo) {
        self.announce_library_state(&info);
        // Another instance sharing the cache set the TTL (the service took it): follow it,
        // unless this window is setting one or its slider is being moved.
        let ttl = info.service_cache.cache_ttl_seconds;
        let setting_ttl = matches!(self.op_req, Some((Op::SetTtl, _)));
        if ttl != self.settings.ttl_secs
            && !setting_ttl
            && self.ttl_slider == self.settings.ttl_secs as f64
        {
            self.settings.ttl_secs = ttl;
            self.ttl_slider = ttl as f64;
        }
        if let Some(ts) = info.service_cache.cache_timestamp
            && self.installed.back() != Some(&ts)
        {
            self.installed.push_back(ts);
            while self.installed.len() > HISTORY_LEN {
                self.installed.pop_front();
            }
        }
        self.cache = Some(info);
    }

    /// Tells the user, once each, that writes are off (and why) and what the start
    /// recovered from an interrupted run.
    fn announce_library_state(&mut self, info: &CacheInfo) {
        let s = &info.service_cache;
        let writes_off = s
            .read_only_reason
            .iter()
            .map(|why| (Level::Error, why.clone()));
        let recovered = s.recovery.iter().map(|note| (Level::Info, note.clone()));
        let fresh: Vec<(Level, String)> = writes_off
            .chain(recovered)
            .filter(|(_, text)| !self.announced.contains(text))
            .collect();
        for (level, text) in fresh {
            self.announced.push(text.clone());
            self.notify(level, text);
        }
    }

    fn notify(&mut self, level: Level, text: impl Into<String>) {
        self.notify_about(level, About::Other, text);
    }

    /// A notice about `about`, which a later success can end.
    fn notify_about(&mut self, level: Level, about: About, text: impl Into<String>) {
        let text = text.into();
        self.notices.retain(|n| n.text != text);
        self.notices.push(Notice {
            level,
            text,
            about,
            shown: Instant::now(),
        });
        if self.notices.len() > MAX_NOTICES {
            self.notices.remove(0);
        }
    }

    /// Polls every promise once; applies what arrived.
    /// Takes the worker's replies that arrived and handles each in [`Self::answer`], then
    /// what follows from them (a queued listing, ended downloads, watched changes, the file
    /// dialogs' answers). Never waits.
    fn poll_worker(&mut self, ctx: &egui::Context) {
        let mut answers: Vec<(Asked, Response)> = Vec::new();
        answers.extend(ready(&mut self.open_req).map(|r| (Asked::Open, r)));
        answers.extend(ready(&mut self.list_req).map(|r| (Asked::List, r)));
        answers.extend(ready(&mut self.info_req).map(|r| (Asked::Info, r)));
        if let Some((op, p)) = self.op_req.take() {
            match p.try_take() {
                Err(p) => self.op_req = Some((op, p)),
                Ok(r) => answers.push((Asked::Op(op), r)),
            }
        }
        let mut still = Vec::new();
        for p in std::mem::take(&mut self.download_reqs) {
            match p.try_take() {
                Err(p) => still.push(p),
                Ok(r) => answers.push((Asked::Background, r)),
            }
        }
        self.download_reqs = still;
        answers.extend(ready(&mut self.files_req).map(|r| (Asked::Files, r)));
        answers.extend(ready(&mut self.verify_req).map(|r| (Asked::Verify, r)));
        answers.extend(ready(&mut self.reclaim_req).map(|r| (Asked::Reclaim, r)));
        answers.extend(ready(&mut self.disk_req).map(|r| (Asked::Disk, r)));
        answers.extend(ready(&mut self.dup_req).map(|r| (Asked::Duplicates, r)));
        for (asked, response) in answers {
            self.answer(asked, response, ctx);
        }
        self.poll_verify();
        self.poll_duplicates();
        if self.list_req.is_none()
            && let Some(force) = self.list_queued.take()
        {
            self.request_list(force);
        }
        self.poll_download_board();
        // The watcher changed the library: list again (a view-cache miss on a fresh listing).
        let generation = self.worker.generation();
        if generation != self.seen_generation {
            self.seen_generation = generation;
            if self.view.is_some() {
                self.request_list(false);
            }
        }
        self.poll_pickers();
    }

    /// Handles one reply of the worker, by what was asked; a failure too.
    fn answer(&mut self, asked: Asked, response: Response, ctx: &egui::Context) {
        match (asked, response) {
            (
                Asked::Open,
                Ok(Reply::Opened {
                    library,
                    ttl_secs,
                    warm,
                    store_defaults,
                    machine,
                }),
            ) => {
                self.store_defaults = store_defaults;
                self.machine = Some(machine);
                ctx.send_viewport_cmd(egui::ViewportCommand::Title(format!(
                    "Model Library — {}",
                    library.display_name()
                )));
                self.settings.ttl_secs = ttl_secs;
                self.ttl_slider = ttl_secs as f64;
                self.library = Some(library);
                self.view = None;
                self.selected = None;
                self.stale_rows = false;
                self.list_queued = None;
                if let Some(listing) = warm {
                    // Shown at once; the first listing below revalidates it.
                    self.revalidating = true;
                    self.set_view(View::filter(listing, &self.query()));
                }
                self.request_list(false);
                self.look_for_reclaimable();
            }
            (Asked::Open, Err(e)) => {
                self.notify(Level::Error, format!("Cannot open the library: {e}"));
                self.list_queued = None;
            }
            (
                Asked::List,
                Ok(Reply::Listed {
                    view,
                    cache_hit,
                    elapsed,
                    cache,
                }),
            ) => {
                self.record_sample(cache_hit, elapsed.as_secs_f64() * 1000.0);
                self.set_cache_info(*cache);
                self.set_view(view);
                self.stale_rows = false;
                self.revalidating = false;
                // What made an earlier listing fail is over.
                self.notices.retain(|n| n.about != About::Listing);
            }
            (Asked::List, Err(e)) => {
                self.stale_rows = self.view.is_some();
                self.notify_about(Level::Error, About::Listing, e);
            }
            (Asked::Info, Ok(Reply::CacheInfo(info))) => {
                self.set_cache_info(*info);
                self.maybe_auto_relist();
            }
            (Asked::Info, Err(_)) => {} // no library open yet: nothing to show
            (Asked::Op(op), result) => self.finish_op(op, result),
            (Asked::Background, Ok(Reply::DownloadStarted(_))) => self.request_list(false),
            (Asked::Background, Ok(Reply::DownloadCancelled { .. })) => {}
            (Asked::Background, Ok(Reply::Imported(outcome))) => {
                self.notify(
                    Level::Info,
                    format!(
                        "Imported {} ({} files, {}).",
                        outcome.id,
                        outcome.files,
                        crate::util::human_bytes(outcome.bytes)
                    ),
                );
                self.selected = Some(outcome.id);
                self.request_list(false);
            }
            (Asked::Background, Ok(Reply::PartialDiscarded { id, freed })) => {
                self.notify(
                    Level::Info,
                    format!(
                        "Partial download of {id} discarded; {} freed.",
                        crate::util::human_bytes(freed)
                    ),
                );
                self.request_list(false);
            }
            (Asked::Files, Ok(Reply::Files { id, files, more })) => {
                self.files = Some(FileList { id, files, more })
            }
            (Asked::Verify, Ok(Reply::Verify(state))) => self.take_verify_state(*state),
            (Asked::Verify, Err(e)) => self.notify(Level::Error, format!("Cannot verify: {e}")),
            (Asked::Reclaim, Ok(Reply::Reclaimable(items))) => self.reclaimable = Some(items),
            (Asked::Reclaim, Ok(Reply::Reclaimed(outcomes))) => self.reclaimed(&outcomes),
            (Asked::Disk, Ok(Reply::DiskUsage(usage))) => self.disk_usage = Some(usage),
            (Asked::Disk, Err(e)) => self.notify(Level::Error, format!("Cannot measure: {e}")),
            (Asked::Duplicates, Ok(Reply::Duplicates(state))) => self.take_duplicates(*state),
            (Asked::Duplicates, Err(e)) => self.notify(Level::Error, e),
            (Asked::Reclaim, Err(e)) => {
                self.notify(Level::Error, format!("Cannot reclaim space: {e}"))
            }
            (_, Ok(other)) => self.unexpected(&other),
            (_, Err(e)) => self.notify(Level::Error, e),
        }
    }

    /// Opens the Disk window, measuring again.
    fn open_disk(&mut self) {
        self.disk_window = Some(false);
        let rows = || self.view.iter().flat_map(|v| v.iter());
        let largest = crate::library::sources::largest_models(rows(), 5);
        let least_used = crate::library::sources::least_recently_used(rows(), 5);
        self.disk_tops = (
            largest.into_iter().cloned().collect(),
            least_used.into_iter().cloned().collect(),
        );
        if self.disk_req.is_none() {
            self.disk_req = Some(self.worker.request(Request::DiskUsage));
        }
        self.look_for_reclaimable();
    }

    /// One request about duplicates, unless one is pending.
    fn ask_duplicates(&mut self, request: Request) {
        if self.dup_req.is_none() {
            self.dup_req = Some(self.worker.request(request));
        }
    }

    /// What the Disk window asked for.
    pub(super) fn apply_disk(&mut self, action: DiskAction) {
        match action {
            DiskAction::Rescan => self.open_disk(),
            DiskAction::FindDuplicates => self.ask_duplicates(Request::FindDuplicates),
            DiskAction::AskLink => self.disk_window = Some(true),
            DiskAction::Link => {
                self.ask_duplicates(Request::LinkDuplicates);
                self.disk_window = Some(false);
            }
            DiskAction::OpenReclaim => self.open_reclaim(),
            DiskAction::Close => {
                self.disk_window = match self.disk_window {
                    Some(true) => Some(false), // back from confirming
                    _ => None,
                }
            }
        }
    }

    /// Whether duplicates are being found or linked, as last reported.
    fn deduplicating(&self) -> bool {
        self.duplicates
            .as_ref()
            .is_some_and(|d| d.finding || d.linking)
    }

    /// While duplicates work runs, asks for its state twice a second.
    fn poll_duplicates(&mut self) {
        let due = self
            .last_dup_poll
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(500));
        if self.deduplicating() && self.dup_req.is_none() && due {
            self.last_dup_poll = Some(Instant::now());
            self.ask_duplicates(Request::DuplicatesState);
        }
    }

    /// Keeps duplicates work's state; when linking has just ended, says what it did.
    fn take_duplicates(&mut self, state: crate::library::DuplicatesState) {
        use crate::library::duplicates::Linked;
        let was_linking = self.duplicates.as_ref().is_some_and(|d| d.linking);
        if was_linking
            && !state.linking
            && let Some(linked) = &state.linked
        {
            let freed: u64 = linked
                .iter()
                .map(|(_, l)| match l {
                    Linked::Linked { freed } => *freed,
                    _ => 0,
                })
                .sum();
            let skipped = linked
                .iter()
                .filter(|(_, l)| matches!(l, Linked::Skipped { .. }))
                .count();
            self.notify(
                Level::Info,
                format!(
                    "Replaced copies with hard links: {} given back; {skipped} left alone.",
                    crate::util::human_bytes(freed)
                ),
            );
            self.request_list(false);
        }
        self.duplicates = Some(state);
    }

    /// Asks the worker what no model needs (for the status bar and the Reclaimable window).
    fn look_for_reclaimable(&mut self) {
        if self.reclaim_req.is_none() {
            self.reclaim_req = Some(self.worker.request(Request::Reclaimable));
        }
    }

    /// What the Reclaimable window asked for.
    pub(super) fn apply_reclaim(&mut self, action: ReclaimAction) {
        match action {
            ReclaimAction::Rescan => self.look_for_reclaimable(),
            ReclaimAction::AskDelete => self.reclaim_window = Some(true),
            ReclaimAction::Delete => {
                let paths = self
                    .reclaimable
                    .iter()
                    .flatten()
                    .map(|i| i.path.clone())
                    .collect();
                if self.reclaim_req.is_none() {
                    self.reclaim_req = Some(self.worker.request(Request::Reclaim { paths }));
                }
                self.reclaim_window = None;
            }
            ReclaimAction::Close => {
                self.reclaim_window = match self.reclaim_window {
                    Some(true) => Some(false), // back from confirming
                    _ => None,
                }
            }
        }
    }

    /// Opens the Reclaimable window, looking again.
    pub(super) fn open_reclaim(&mut self) {
        self.reclaim_window = Some(false);
        self.look_for_reclaimable();
    }

    /// Says what moving reclaimable space to the trash came to, then looks again.
    fn reclaimed(&mut self, outcomes: &[(PathBuf, crate::library::reclaim::Deleted)]) {
        use crate::library::reclaim::Deleted;
        let freed: u64 = outcomes
            .iter()
            .map(|(_, o)| match o {
                Deleted::Trashed { freed } => *freed,
                Deleted::Skipped { .. } => 0,
            })
            .sum();
        let skipped: Vec<String> = outcomes
            .iter()
            .filter_map(|(p, o)| match o {
                Deleted::Skipped { reason } => Some(format!("{}: {reason}", p.display())),
                Deleted::Trashed { .. } => None,
            })
            .collect();
        let mut text = format!("Moved {} to the trash.", crate::util::human_bytes(freed));
        if !skipped.is_empty() {
            text.push_str(&format!(" Left alone: {}.", skipped.join("; ")));
        }
        self.notify(Level::Info, text);
        self.reclaimable = None;
        self.look_for_reclaimable();
        self.request_list(false);
    }

    /// Starts verifying these models' files (every file when `ids` is empty).
    fn start_verify(&mut self, ids: Vec<String>) {
        if self.verify_req.is_none() {
            self.verify_req = Some(self.worker.request(Request::Verify { ids }));
        }
    }

    /// Asks the running verify to stop.
    fn stop_verify(&mut self) {
        if self.verify_req.is_none() {
            self.verify_req = Some(self.worker.request(Request::StopVerify));
        }
    }

    /// Whether a verify run is going, as last reported.
    pub(super) fn verifying(&self) -> bool {
        self.verify.as_ref().is_some_and(|v| v.running)
    }

    /// While a verify run is going, asks for its state twice a second.
    fn poll_verify(&mut self) {
        let due = self
            .last_verify_poll
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(500));
        if self.verifying() && self.verify_req.is_none() && due {
            self.last_verify_poll = Some(Instant::now());
            self.verify_req = Some(self.worker.request(Request::VerifyState));
        }
    }

    /// Keeps a verify run's state; when a run has just ended, says what it found.
    fn take_verify_state(&mut self, state: VerifyState) {
        let ended = self.verifying() && !state.running;
        if ended && let Some(last) = &state.last {
            let s = &last.summary;
            let files = match s.files {
                1 => "1 file".to_string(),
                n => format!("{n} files"),
            };
            let (level, text) = if s.all_good() {
                (
                    Level::Info,
                    format!("Verified {files}: all hold their expected bytes."),
                )
            } else {
                let mut models: Vec<&str> = last
                    .problems
                    .iter()
                    .flat_map(|c| c.target.models.iter().map(String::as_str))
                    .collect();
                models.sort_unstable();
                models.dedup();
                (
                    Level::Error,
                    format!(
                        "Verified {files}: {} mismatched, {} unreadable, {} not finished ({}).",
                        s.mismatched,
                        s.unreadable,
                        s.changed + s.stopped,
                        models.join(", ")
                    ),
                )
            };
            self.notify(level, text);
        }
        self.verify = Some(state);
    }

    /// The file dialogs' answers (folder to open, file to import).
    fn poll_pickers(&mut self) {
        if let Some(p) = self.import_picker.take() {
            match p.try_take() {
                Err(p) => self.import_picker = Some(p),
                Ok(Some(source)) => {
                    self.import_path = None;
                    self.download_request(Request::Import { source })
                }
                Ok(None) => self.notify(
                    Level::Info,
                    "No file chosen. Type its path in the Import window, or drop the file \
                     onto the window.",
                ),
            }
        }
        if let Some(p) = self.picker.take() {
            match p.try_take() {
                Err(p) => self.picker = Some(p),
                Ok(Some(path)) => {
                    self.typed_path = path.display().to_string();
                    self.open_library(Some(path));
                }
                Ok(None) => self.notify(
                    Level::Info,
                    "No folder chosen. If no dialog appeared, type the library path in the \
                     Library box and press Enter.",
                ),
            }
        }
    }

    /// Reads the shared download board: reports downloads that ended (once), then lists
    /// again so the table shows what is on disk now.
    fn poll_download_board(&mut self) {
        let board = self.worker.downloads();
        let mut ended = false;
        self.downloads.clear();
        for p in board.snapshot() {
            if p.state.is_finished() {
                board.dismiss(&p.id);
                ended = true;
                match &p.state {
                    DownloadState::Done => {
                        self.notify(Level::Info, format!("{} downloaded and verified.", p.id))
                    }
                    DownloadState::Cancelled => self.notify(
                        Level::Info,
                        format!("Download of {} cancelled; the partial data is kept.", p.id),
                    ),
                    DownloadState::Failed { reason } => self.notify(
                        Level::Error,
                        format!("Download of {} failed: {reason}", p.id),
                    ),
                    _ => {}
                }
            } else {
                self.downloads.insert(p.id.clone(), p);
            }
        }
        if ended {
            self.request_list(false);
        }
    }

    fn download_request(&mut self, request: Request) {
        self.download_reqs.push(self.worker.request(request));
    }

    fn finish_op(&mut self, op: Op, result: Response) {
        match (op, result) {
            (_, Err(e)) => {
                if op == Op::PlanDelete {
                    self.delete = None;
                }
                if op == Op::SetTtl {
                    self.ttl_slider = self.settings.ttl_secs as f64;
                }
                if op == Op::Refresh {
                    // The rows on screen are the last good listing now; a refresh that
                    // failed is a listing that failed, over once one succeeds.
                    self.stale_rows = self.view.is_some();
                    self.notify_about(Level::Error, About::Listing, e);
                } else {
                    self.notify(Level::Error, e);
                }
            }
            (_, Ok(Reply::Refreshed { cache, .. })) => {
                self.set_cache_info(*cache);
                self.request_list(false);
            }
            (_, Ok(Reply::TtlSet { cache })) => {
                self.settings.ttl_secs = cache.service_cache.cache_ttl_seconds;
                self.ttl_slider = self.settings.ttl_secs as f64;
                self.set_cache_info(*cache);
            }
            (_, Ok(Reply::DeletePlanned(plan))) => {
                if let Some(d) = self.delete.as_mut()
                    && d.id == plan.id
                {
                    d.plan = Some(plan);
                }
            }
            (_, Ok(Reply::Deleted(outcome))) => {
                let how = if outcome.trashed {
                    "moved to the trash"
                } else {
                    "deleted"
                };
                self.notify(
                    Level::Info,
                    format!(
                        "{} {how}; {} freed.",
                        outcome.id,
                        crate::util::human_bytes(outcome.freed_bytes)
                    ),
                );
                self.request_list(false);
            }
            (_, Ok(other)) => self.unexpected(&other),
        }
    }

    fn unexpected(&mut self, reply: &Reply) {
        self.notify(
            Level::Error,
            format!("internal error: unexpected reply {reply:?}"),
        );
    }

    fn record_sample(&mut self, cache_hit: bool, latency_ms: f64) {
        self.history.push_back(Sample {
            at: unix_seconds(SystemTime::now()),
            latency_ms,
            cache_hit,
        });
        while self.history.len() > HISTORY_LEN {
            self.history.pop_front();
        }
    }

    /// When the cache turned stale (files changed, TTL ran out), list again — once per
    /// distinct state, so a failing listing is not retried in a loop.
    fn maybe_auto_relist(&mut self) {
        let Some(info) = &self.cache else { return };
        let s = &info.service_cache;
        if s.cache_valid || self.view.is_none() || self.list_req.is_some() {
            return;
        }
        let key = format!(
            "{:?}|{:?}|{:?}|{:?}",
            s.registry_mtime, s.models_dir_mtime, s.downloads_dir_mtime, s.cache_timestamp
        );
        if self.auto_key.as_deref() != Some(key.as_str()) {
            self.auto_key = Some(key);
            self.request_list(false);
        }
    }

    fn set_view(&mut self, view: View) {
        let mut providers = std::collections::BTreeSet::new();
        let mut capabilities = std::collections::BTreeSet::new();
        let mut sources = std::collections::BTreeSet::new();
        for m in &view.listing.models {
            providers.insert(m.provider.as_str());
            sources.insert(m.source.as_str());
            for c in &m.capabilities {
                capabilities.insert(c.as_str());
            }
        }
        self.providers = providers.into_iter().map(str::to_string).collect();
        self.capabilities = capabilities.into_iter().map(str::to_string).collect();
        self.sources = sources.into_iter().map(str::to_string).collect();
        self.view = Some(view);
        self.recompute_order();
    }

    /// Applies search and sort to the view (on change only, never per frame).
    fn recompute_order(&mut self) {
        let Some(view) = &self.view else {
            self.order.clear();
            return;
        };
        let needle = self.search.trim().to_lowercase();
        let source = self.settings.source.as_deref();
        let fits = self.machine.filter(|_| self.fits_only);
        let matches = |m: &ModelInfo| {
            source.is_none_or(|s| m.source == s)
                && fits.is_none_or(|mc| crate::library::fit::fits(m, &mc) == Some(true))
                && (needle.is_empty()
                    || m.name.to_lowercase().contains(&needle)
                    || m.id.to_lowercase().contains(&needle)
                    || m.description
                        .as_deref()
                        .is_some_and(|d| d.to_lowercase().contains(&needle)))
        };
        let mut order: Vec<u32> = (0..view.len() as u32)
            .filter(|&i| view.get(i as usize).is_some_and(matches))
            .collect();
        let get = |i: &u32| view.get(*i as usize).expect("index from this view");
        let by_text = |order: &mut Vec<u32>, key: &dyn Fn(&ModelInfo) -> String| {
            natural_sort(order, |i| {
                let m = get(&i);
                (key(m), m.name.to_string())
            })
        };
        match self.settings.sort {
            SortKey::Name => natural_sort(&mut order, |i| {
                let m = get(&i);
                (m.name.to_string(), m.id.clone())
            }),
            SortKey::Provider => by_text(&mut order, &|m| m.provider.to_string()),
            SortKey::Source => by_text(&mut order, &|m| m.source.to_string()),
            SortKey::Capabilities => by_text(&mut order, &|m| m.capabilities.join(", ")),
            SortKey::Format => by_text(&mut order, &|m| {
                m.format.as_deref().unwrap_or_default().to_string()
            }),
            SortKey::Status => {
                natural_sort(&mut order, |i| (String::new(), get(&i).name.to_string()));
                order.sort_by_key(|i| get(i).status); // stable: names stay in order
            }
            SortKey::Size => order.sort_by_key(|i| get(i).size_bytes()),
            SortKey::Modified => order.sort_by(|a, b| {
                let t = |i: &u32| get(i).modified().unwrap_or(f64::NEG_INFINITY);
                t(a).total_cmp(&t(b))
            }),
        }
        if !self.settings.ascending {
            order.reverse();
        }
        let mut counts = [0usize; 5];
        let mut total = 0u64;
        for &i in &order {
            let m = get(&i);
            counts[ModelStatus::ALL
                .iter()
                .position(|s| *s == m.status)
                .unwrap_or(4)] += 1;
            total += m.size_bytes().unwrap_or(0);
        }
        self.counts = counts;
        self.total_bytes = (!self.settings.quick).then_some(total);
        self.order = order;
    }

    /// Selects a model and asks the worker for its files (the details panel lists them).
    fn select(&mut self, id: String) {
        let path = self
            .view
            .as_ref()
            .and_then(|v| v.iter().find(|m| m.id == id))
            .map(|m| (m.path(), m.source.to_string()));
        if let Some((path, source)) = path
            && self.files.as_ref().is_none_or(|f| f.id != id)
        {
            self.files = None;
            self.files_req = Some(self.worker.request(Request::Files {
                id: id.clone(),
                path,
                source,
            }));
        }
        self.last_selected = Some(id.clone());
        self.selected = Some(id);
    }

    /// Whether a dialog is open (delete, stores, import): the table's keys wait for it.
    fn dialog_open(&self) -> bool {
        self.delete.is_some()
            || self.stores_draft.is_some()
            || self.import_path.is_some()
            || self.reclaim_window.is_some()
            || self.disk_window.is_some()
    }

    /// Moves the selection through the table's rows as the keyboard asked, and scrolls
    /// the table to it. With nothing selected, down-going keys start at the first row and
    /// up-going ones at the last.
    fn step_selection(&mut self, step: Step) {
        let Some(view) = &self.view else { return };
        let last = match self.order.len() {
            0 => return,
            n => n - 1,
        };
        let at = self.selected.as_deref().and_then(|id| {
            self.order
                .iter()
                .position(|&i| view.get(i as usize).is_some_and(|m| m.id == id))
        });
        let to = match (step, at) {
            (Step::First, _) => 0,
            (Step::Last, _) => last,
            (Step::By(n), Some(at)) => at.saturating_add_signed(n).min(last),
            (Step::By(n), None) if n > 0 => 0,
            (Step::By(_), None) => last,
        };
        if let Some(m) = view.get(self.order[to] as usize) {
            let id = m.id.clone();
            self.select(id);
            self.scroll_to = Some(to);
        }
    }

    /// Opens the system's file dialog for a file to import (on a thread of its own).
    fn choose_import_file(&mut self) {
        self.import_picker = Some(Promise::spawn_thread("import-picker", || {
            rfd::FileDialog::new()
                .set_title("Choose a model file to import")
                .pick_file()
        }));
    }

    /// Imports the files dropped onto the window (each copied, one request each), when a
    /// library is open; otherwise says why nothing happens.
    fn import_dropped(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if dropped.is_empty() {
            return;
        }
        if self.library.is_none() {
            self.notify(
                Level::Info,
                "Open a library first, then drop models onto it.",
            );
            return;
        }
        self.import_path = None;
        for source in dropped {
            self.download_request(Request::Import { source });
        }
    }

    /// Opens a model's folder in the file manager (off the UI thread; a failure is shown).
    fn open_folder(&self, path: PathBuf) {
        open_in_file_manager(path, Arc::clone(&self.opener_failures));
    }

    fn selected_model(&self) -> Option<&ModelInfo> {
        let id = self.selected.as_deref()?;
        self.view.as_ref()?.iter().find(|m| m.id == id)
    }

    fn ask_delete(&mut self, id: String) {
        let name = self
            .view
            .as_ref()
            .and_then(|v| v.iter().find(|m| m.id == id))
            .map_or_else(|| id.clone(), |m| m.name.to_string());
        self.delete = Some(DeleteState {
            id: id.clone(),
            name,
            plan: None,
        });
        self.start_op(Op::PlanDelete, Request::PlanDelete { id });
    }

    fn refresh(&mut self) {
        if matches!(self.op_req, Some((Op::Refresh, _))) {
            return; // the refresh already running will do
        }
        self.start_op(Op::Refresh, Request::Refresh);
    }

    fn apply_toolbar(&mut self, action: ToolbarAction, ctx: &egui::Context) {
        match action {
            ToolbarAction::Refresh => self.refresh(),
            ToolbarAction::ForceRefresh => self.request_list(true),
            ToolbarAction::PickFolder => {
                self.picker = Some(Promise::spawn_thread("folder-picker", || {
                    rfd::FileDialog::new()
                        .set_title("Choose a model library folder")
                        .pick_folder()
                }));
            }
            ToolbarAction::PickImport => {
                self.import_path.get_or_insert_with(String::new);
            }
            ToolbarAction::OpenPath(path) => {
                self.settings.library = Some(path.clone());
                self.open_library(Some(path));
            }
            ToolbarAction::SetStores(on) => {
                self.settings.other_stores = on;
                self.open_library(self.settings.library.clone());
            }
            ToolbarAction::EditStores => {
                self.stores_draft = Some(StoresDraft::from_settings(
                    &self.settings.stores,
                    &self.store_defaults,
                ));
            }
            ToolbarAction::SetQuick(q) => {
                self.settings.quick = q;
                self.request_list(false);
            }
            ToolbarAction::SetProvider(p) => {
                self.settings.provider = p;
                self.request_list(false);
            }
            ToolbarAction::SetStatus(s) => {
                self.settings.status = s;
                self.request_list(false);
            }
            ToolbarAction::SetCapability(c) => {
                self.settings.capability = c;
                self.request_list(false);
            }
            ToolbarAction::SearchChanged => self.recompute_order(),
            ToolbarAction::SetSource(s) => {
                self.settings.source = s;
                self.recompute_order();
            }
            ToolbarAction::SetFits(on) => {
                self.fits_only = on;
                self.recompute_order();
            }
            ToolbarAction::ClearFilters => {
                self.settings.provider = None;
                self.settings.status = None;
                self.settings.capability = None;
                self.settings.source = None;
                self.fits_only = false;
                self.search.clear();
                self.request_list(false);
            }
            ToolbarAction::SetTheme(theme) => {
                self.settings.theme = theme;
                ctx.set_theme(theme.preference());
            }
            ToolbarAction::Verify => self.start_verify(Vec::new()),
            ToolbarAction::StopVerify => self.stop_verify(),
            ToolbarAction::OpenDisk => self.open_disk(),
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        let free = !self.dialog_open() && !ctx.egui_wants_keyboard_input();
        if free && let Some(step) = ctx.input_mut(table_step) {
            self.step_selection(step);
        }
        // Enter opens the details of the model last selected again.
        if free
            && self.selected.is_none()
            && ctx.input(|i| i.key_pressed(egui::Key::Enter))
            && let Some(id) = self.last_selected.clone()
            && self
                .view
                .as_ref()
                .is_some_and(|v| v.iter().any(|m| m.id == id))
        {
            self.select(id);
        }
        let (refresh, find, delete) = ctx.input_mut(|i| {
            let refresh = i.consume_key(egui::Modifiers::NONE, egui::Key::F5)
                || i.consume_key(egui::Modifiers::COMMAND, egui::Key::R);
            let find = i.consume_key(egui::Modifiers::COMMAND, egui::Key::F);
            (refresh, find, i.key_pressed(egui::Key::Delete))
        });
        if refresh {
            self.refresh();
        }
        if find {
            self.focus_search = true;
        }
        let copy = ctx.input(|i| i.events.iter().any(|e| matches!(e, egui::Event::Copy)));
        if copy
            && !ctx.egui_wants_keyboard_input()
            && let Some(m) = self.selected_model()
        {
            ctx.copy_text(m.path().display().to_string());
        }
        if delete
            && self.delete.is_none()
            && !ctx.egui_wants_keyboard_input()
            && let Some(m) = self.selected_model()
        {
            if m.source != crate::library::LIBRARY_SOURCE {
                let text = format!(
                    "{} is in the {} store, which this app lists but never changes",
                    m.id, m.source
                );
                self.notify(Level::Info, text);
            } else if m.status != ModelStatus::Available {
                let id = m.id.clone();
                self.ask_delete(id);
            }
        }
    }
}

/// Opens a folder with the desktop's file manager, off the UI thread.
/// Opens `path` in the file manager on a thread of its own (the UI never waits for it);
/// a failure (no file manager, say) is put in `failures` for the next frame to show.
fn open_in_file_manager(path: PathBuf, failures: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else if cfg!(windows) {
            "explorer"
        } else {
            "xdg-open"
        };
        let failed = match std::process::Command::new(opener).arg(&path).status() {
            Ok(status) if status.success() => None,
            Ok(status) => Some(format!("{opener} {status}")),
            Err(e) => Some(format!("{opener}: {e}")),
        };
        if let Some(why) = failed {
            failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!(
                    "Cannot open {} in a file manager ({why}); its path can be copied from the row's menu",
                    path.display()
                ));
        }
    });
}

impl eframe::App for ModelLibraryApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.poll_worker(ctx);
        let failures = std::mem::take(
            &mut *self
                .opener_failures
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for text in failures {
            self.notify(Level::Error, text);
        }
        let t = ctx.input(|i| i.time);
        if self.library.is_some()
            && self.info_req.is_none()
            && self.list_req.is_none()
            && self.op_req.is_none()
            && t - self.last_info_poll >= CACHE_POLL_SECS
        {
            self.last_info_poll = t;
            self.info_req = Some(self.worker.request(Request::CacheInfo));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame_ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}

/// Sorts rows by a text key and then a second one, each in natural order ignoring case
/// ("Model 2" before "Model 10"), with the `alphanumeric-sort` crate's comparison. Keys are
/// made once per row, not per comparison.
fn natural_sort(order: &mut Vec<u32>, keys: impl Fn(u32) -> (String, String)) {
    let mut keyed: Vec<(String, String, u32)> = order
        .iter()
        .map(|&i| {
            let (a, b) = keys(i);
            (a.to_lowercase(), b.to_lowercase(), i)
        })
        .collect();
    keyed.sort_by(|x, y| {
        alphanumeric_sort::compare_str(&x.0, &y.0)
            .then_with(|| alphanumeric_sort::compare_str(&x.1, &y.1))
    });
    *order = keyed.into_iter().map(|(_, _, i)| i).collect();
}

/// How the keyboard moves the table's selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Rows down (positive) or up (negative).
    By(isize),
    First,
    Last,
}

/// Rows a PageUp or PageDown moves.
const PAGE_ROWS: isize = 20;

/// The table key pressed this frame, if any (consumed): arrows, PageUp/PageDown,
/// Home/End.
fn table_step(i: &mut egui::InputState) -> Option<Step> {
    use egui::{Key, Modifiers};
    let keys = [
        (Key::ArrowDown, Step::By(1)),
        (Key::ArrowUp, Step::By(-1)),
        (Key::PageDown, Step::By(PAGE_ROWS)),
        (Key::PageUp, Step::By(-PAGE_ROWS)),
        (Key::Home, Step::First),
        (Key::End, Step::Last),
    ];
    keys.into_iter()
        .find(|(key, _)| i.consume_key(Modifiers::NONE, *key))
        .map(|(_, step)| step)
}

/// What a request to the worker was for, so its reply is handled by what it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// Opening a library.
    Open,
    /// A listing.
    List,
    /// The cache's state.
    Info,
    /// An operation (refresh, TTL, delete…).
    Op(Op),
    /// A download, a cancel, an import or a discard (several may run).
    Background,
    /// A model's files, for the details.
    Files,
    /// Starting, stopping or following a verify run.
    Verify,
    /// Looking for, or deleting, reclaimable space.
    Reclaim,
    /// Measuring the disk usage.
    Disk,
    /// Starting or following duplicates work.
    Duplicates,
}

/// The reply in `slot` if it arrived (the slot is emptied then), never waiting.
fn ready(slot: &mut Option<Promise<Response>>) -> Option<Response> {
    let p = slot.take()?;
    match p.try_take() {
        Ok(r) => Some(r),
        Err(p) => {
            *slot = Some(p);
            None
        }
    }
}
