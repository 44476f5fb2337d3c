//! The service's side of the shared cache tier ([`crate::library::shared`]): taking another
//! instance's full listing instead of scanning when its stamps pass this instance's own
//! checks, publishing the listings this instance builds, telling the others what it
//! changed and applying what they changed. Redis failing only ever means scanning here.

use super::*;
use crate::library::listing_bytes::{self, Purpose};
use crate::library::shared::{EventKind, SharedCacheInfo, SharedTier};

/// How long an instance waits for the scan another one is making before scanning itself.
const WAIT_FOR_OTHERS: std::time::Duration = std::time::Duration::from_secs(20);
/// How long a scan lock lives without its holder (a crashed holder's lock expires).
const SCAN_LOCK_MS: u64 = 30_000;
/// How often ticks renew the lock a background scan holds.
const LOCK_RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The tier's URL, the tier once set up, and why it could not be.
pub(super) struct SharedState {
    url: Option<String>,
    tier: Option<SharedTier>,
    problem: Option<String>,
    /// What this instance holds the library's scan lock for, if it does (released when
    /// that scan is over, and only by it).
    scan_lock: Option<LockFor>,
    /// The watch session (this instance's or another's) whose file events have covered the
    /// full listing held now since its scan began; `None`: nobody vouches for it, and a
    /// watching instance scans for itself once its watches are set up.
    coverage: Option<String>,
    /// Another instance's session to look at when the time comes, before this instance
    /// trusts the listing it took without a scan of its own (see
    /// [`crate::library::shared::COVERAGE_CHECK_AFTER`]).
    pending_check: Option<(String, Instant)>,
    /// Scans after a watch set-up that were not needed (a live session vouched).
    scans_spared: u64,
    /// Waiting, until then, for the scan another instance holds the lock for (see
    /// [`ModelLibraryService::await_vouched_listing`]).
    awaiting_vouched: Option<Instant>,
    /// When ticks last renewed the lock a background scan holds.
    lock_renewed_at: Option<Instant>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field(
                "url",
                &self
                    .url
                    .as_deref()
                    .map(crate::library::shared::url_without_credentials),
            )
            .field("set_up", &self.tier.is_some())
            .field("problem", &self.problem)
            .finish()
    }
}

impl SharedState {
    /// Checks the URL (no I/O: the tier is set up at the first listing).
    pub(super) fn new(url: Option<String>) -> Result<SharedState> {
        if let Some(u) = &url {
            crate::library::shared::client_for(u)?;
        }
        Ok(SharedState {
            url,
            tier: None,
            problem: None,
            scan_lock: None,
            coverage: None,
            pending_check: None,
            scans_spared: 0,
            awaiting_vouched: None,
            lock_renewed_at: None,
        })
    }
}

/// The scan this instance holds the library's scan lock for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LockFor {
    /// A scan a request is waiting for (released when `list` returns).
    Foreground,
    /// The scan running on its own thread (released when it is installed or fails).
    Background,
}

/// What a look at the shared tier's listing wants.
#[derive(Debug, Clone, Copy)]
struct Take {
    kind: ListKind,
    /// A look in vain counts as a shared miss (not while waiting for another's scan).
    count_miss: bool,
    /// Only a listing a live watch session vouches for.
    vouched_only: bool,
}

impl Take {
    const VOUCHED_FULL: Take = Take {
        kind: ListKind::Full,
        count_miss: false,
        vouched_only: true,
    };
}

impl ModelLibraryService {
    /// The tier, set up at its first use (the library id file, the subscriber thread).
    fn shared_tier(&mut self) -> Option<&mut SharedTier> {
        let state = &mut self.shared;
        let url = state.url.as_ref()?;
        if state.tier.is_none() && state.problem.is_none() {
            match SharedTier::new(url, &self.library) {
                Ok(t) => {
                    // Briefly, once: so a first listing can already be a shared one.
                    t.wait_listening();
                    state.tier = Some(t);
                }
                Err(e) => state.problem = Some(e.to_string()),
            }
        }
        state.tier.as_mut()
    }

    /// The shared tier's state for `cache-info`; `None` without `--redis`.
    pub fn shared_cache_info(&self) -> Option<SharedCacheInfo> {
        let state = &self.shared;
        let url = state.url.as_ref()?;
        Some(match &state.tier {
            Some(t) => SharedCacheInfo {
                vouched: state.coverage.is_some(),
                scans_spared: state.scans_spared,
                ..t.info()
            },
            None => SharedCacheInfo {
                state: if state.problem.is_some() {
                    "off"
                } else {
                    "idle"
                },
                url: crate::library::shared::url_without_credentials(url),
                library_id: String::new(),
                shared_hits: 0,
                shared_misses: 0,
                listings_published: 0,
                invalidations_sent: 0,
                invalidations_received: 0,
                listening: false,
                watching: false,
                vouched: false,
                scans_spared: 0,
                last_error: state.problem.clone(),
            },
        })
    }

    /// Another instance's listing of `kind`, installed, when it passes this instance's own
    /// checks (TTL, stamps, racy timestamps) — then no scan is needed. The other stores
    /// are each machine's own: they are listed here and added.
    pub(super) fn take_shared(&mut self, kind: ListKind) -> Option<Arc<Listing>> {
        self.take_shared_as(Take {
            kind,
            count_miss: true,
            vouched_only: false,
        })
    }

    /// [`Self::take_shared`] as `want` says.
    fn take_shared_as(&mut self, want: Take) -> Option<Arc<Listing>> {
        let Some(found) = self.usable_shared(want) else {
            if let Some(t) = self.shared.tier.as_mut().filter(|_| want.count_miss) {
                t.record(false);
            }
            return None;
        };
        let mut listing = found.listing;
        listing.models.extend(self.scan_stores());
        if let Some(t) = self.shared.tier.as_mut() {
            t.record(true);
        }
        let listing = Arc::new(listing);
        if want.kind == ListKind::Fast {
            self.install_fast(Arc::clone(&listing));
            return Some(listing);
        }
        let installed = self.install_full(listing, commit::Installed::Shared);
        self.note_coverage(found.covered_by);
        // Watching already, this instance's own events cover what comes next; what came
        // before, the session named must vouch for, or a scan here must.
        if self.own_session().is_some() {
            self.verify_after_watch();
        }
        Some(installed)
    }

    /// The listing of `want.kind` published in Redis, if this instance may use it: heard
    /// events since before it looks (else the listing's later changes could go unheard),
    /// its own checks pass (TTL, stamps, racy timestamps — a racy one only while a live
    /// watch session vouches for it) and, when `want.vouched_only`, a live session vouches.
    fn usable_shared(&mut self, want: Take) -> Option<listing_bytes::Decoded> {
        let tier = self.shared_tier()?;
        if !tier.listening() {
            return None;
        }
        let bytes = tier.fetch_listing(want.kind)?;
        let found = listing_bytes::decode(&self.library, &bytes, Purpose::Shared)
            .ok()
            .filter(|t| t.listing.kind == want.kind)?;
        if want.vouched_only && !self.vouched(&found) {
            return None;
        }
        let (now, ttl, stamps) = (self.clock.now(), self.ttl_secs, Stamps::read(&self.library));
        match found.listing.check(now, ttl, &stamps, self.racy_check()) {
            Ok(()) => Some(found),
            // Stamps in the scan's own second: a change in that second is not in its
            // stamps, but a live watch session vouching for the listing announces it.
            Err(Staleness::RacyTimestamp) if self.vouched(&found) => Some(found),
            Err(_) => None,
        }
    }

    /// Whether a live watch session vouches for `found`.
    fn vouched(&mut self, found: &listing_bytes::Decoded) -> bool {
        found
            .covered_by
            .as_deref()
            .is_some_and(|s| self.session_alive(s))
    }

    /// Before scanning: takes the library's scan lock (then `None`: scan, and publish), or,
    /// when another instance holds it, waits for the listing it will publish and takes it —
    /// until the lock is gone (its holder finished or died) or [`WAIT_FOR_OTHERS`] passed;
    /// then `None`: scan here.
    pub(super) fn wait_for_shared_scan(&mut self) -> Option<Arc<Listing>> {
        if self.shared.scan_lock.is_some() {
            return None; // this instance's own background scan holds it: scan here too
        }
        let tier = self.shared_tier()?;
        if !tier.listening() {
            return None;
        }
        match tier.try_scan_lock(SCAN_LOCK_MS) {
            None => return None, // unreachable: scan
            Some(true) => {
                self.shared.scan_lock = Some(LockFor::Foreground);
                return None;
            }
            Some(false) => {}
        }
        let deadline = Instant::now() + WAIT_FOR_OTHERS;
        while Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(25));
            let want = Take {
                kind: ListKind::Full,
                count_miss: false,
                vouched_only: false,
            };
            if let Some(listing) = self.take_shared_as(want) {
                return Some(listing);
            }
            let tier = self.shared.tier.as_mut()?;
            match tier.try_scan_lock(SCAN_LOCK_MS) {
                Some(true) => {
                    // The holder is gone without publishing: this one scans.
                    self.shared.scan_lock = Some(LockFor::Foreground);
                    return None;
                }
                Some(false) => {}
                None => return None,
            }
        }
        None
    }

    /// Releases the scan lock this instance took for `scan`, if it did (a lock taken for
    /// another scan of its own stays).
    pub(super) fn release_scan_lock(&mut self, scan: LockFor) {
        if self.shared.scan_lock == Some(scan) {
            self.shared.scan_lock = None;
            if let Some(t) = self.shared.tier.as_mut() {
                t.release_scan_lock();
            }
        }
    }

    /// Publishes a listing this instance built (its library rows).
    pub(super) fn publish_shared(&mut self, listing: &Listing) {
        if self.shared.url.is_none() {
            return;
        }
        // Vouching is for full listings (what watched changes patch); a quick one names
        // no session.
        let covered_by = match listing.kind {
            ListKind::Full => self.shared.coverage.as_deref(),
            ListKind::Fast => None,
        };
        let bytes = listing_bytes::encode(&self.library, listing, Purpose::Shared, covered_by);
        let ttl = self.ttl_secs;
        if let Some(t) = self.shared_tier() {
            t.publish_listing(listing.kind, &bytes, ttl);
        }
    }

    /// A delete made here: the full listing as it is now (see [`without_deleted`]) is
    /// published before the others are told, so one that notices the change by its own
    /// stamps takes it at once rather than scanning — unless the registry changed since
    /// that listing was made (its rows must not carry the new registry's stamp).
    pub(super) fn share_delete(&mut self, ids: Vec<String>) {
        if self.shared.url.is_none() {
            return;
        }
        let stamps = Stamps::read(&self.library);
        if let Some(full) = self
            .listings
            .get(&ListKind::Full)
            .filter(|full| full.stamps.registry == stamps.registry)
            .cloned()
        {
            let listing = without_deleted(&full, &ids, stamps);
            self.publish_shared(&listing);
        }
        self.send_shared(EventKind::Deleted, ids, &stamps);
    }

    /// This instance's watch session, while its file events cover the library.
    pub(super) fn own_session(&self) -> Option<String> {
        self.shared.tier.as_ref()?.session().map(str::to_string)
    }

    /// The full listing about to be installed (or just installed) is vouched for by
    /// `session`, or by nobody.
    pub(super) fn note_coverage(&mut self, session: Option<String>) {
        self.shared.coverage = session;
        self.shared.pending_check = None;
    }

    /// The full listing is gone: nobody vouches for what comes next until it says so.
    pub(super) fn forget_coverage(&mut self) {
        self.note_coverage(None);
    }

    /// Starts or ends this instance's watch session as its file events now cover the whole
    /// library or not (called when a watch set-up ends).
    pub(super) fn shared_watching(&mut self, covers: bool) {
        if self.shared.url.is_none() {
            return;
        }
        if let Some(t) = self.shared_tier() {
            t.watching(covers);
        }
    }

    /// Refreshes this instance's session (after its watched changes were applied), or ends
    /// it when its file events no longer cover the library (then its listings vouch for
    /// nothing).
    pub(super) fn shared_beat(&mut self) {
        self.renew_scan_lock();
        let Some(own) = self.own_session() else {
            return;
        };
        let covers = self.watch_mode() == WatchMode::Events;
        let Some(tier) = self.shared.tier.as_mut() else {
            return;
        };
        if covers {
            tier.beat();
        } else {
            tier.watching(false);
            if self.shared.coverage.as_deref() == Some(own.as_str()) {
                self.forget_coverage();
            }
        }
    }

    /// Renews the scan lock a background scan of this instance holds (every
    /// [`LOCK_RENEW_EVERY`]), so a scan longer than the lock's life is not made twice.
    fn renew_scan_lock(&mut self) {
        let due = self
            .shared
            .lock_renewed_at
            .is_none_or(|t| t.elapsed() >= LOCK_RENEW_EVERY);
        if self.shared.scan_lock == Some(LockFor::Background) && due {
            self.shared.lock_renewed_at = Some(Instant::now());
            if let Some(t) = self.shared.tier.as_mut() {
                t.try_scan_lock(SCAN_LOCK_MS);
            }
        }
    }

    /// Whether `session`'s key is alive now (Redis unreachable: no).
    fn session_alive(&mut self, session: &str) -> bool {
        let tier = self.shared.tier.as_mut();
        tier.and_then(|t| t.session_alive(session)) == Some(true)
    }

    /// A watching instance's full listing that its own events have not covered since its
    /// scan began (its watches were just set up, or it was taken while watching): a
    /// listing another live session vouches for is looked at later
    /// ([`Self::check_coverage_later`]); else one instance at a time scans in the
    /// background (the scan lock) while the others wait for the listing it will publish,
    /// which its session vouches for ([`Self::await_vouched_listing`]).
    pub(super) fn verify_after_watch(&mut self) {
        if self.check_coverage_later() || self.background.is_some() {
            return; // looked at later, or this instance's own scan is under way
        }
        let lockable = self.shared.scan_lock.is_none();
        let lock = self
            .shared
            .tier
            .as_mut()
            .filter(|t| lockable && t.listening())
            .and_then(|t| t.try_scan_lock(SCAN_LOCK_MS));
        match lock {
            Some(false) => {
                self.shared.awaiting_vouched = Some(Instant::now() + WAIT_FOR_OTHERS);
            }
            // One may have been published meanwhile, by an instance whose watches came up
            // first.
            Some(true) => self.take_vouched_or_scan(true),
            None => self.start_background_scan(),
        }
    }

    /// Takes the full listing published if a live watch session vouches for it (then the
    /// scan lock is not needed), else scans in the background — holding the scan lock for
    /// that scan when `locked` (this instance took it).
    fn take_vouched_or_scan(&mut self, locked: bool) {
        if locked {
            self.shared.scan_lock = Some(LockFor::Background);
        }
        if self.take_shared_as(Take::VOUCHED_FULL).is_some() {
            // Taken (and its session to be looked at).
            self.release_scan_lock(LockFor::Background);
            return;
        }
        self.start_background_scan();
    }

    /// While another instance holds the scan lock for the scan this one needs: once the
    /// lock is free, takes the listing published if a watch session vouches for it, else
    /// scans (holding the lock); after [`WAIT_FOR_OTHERS`], scans regardless.
    pub(super) fn await_vouched_listing(&mut self) {
        let Some(deadline) = self.shared.awaiting_vouched else {
            return;
        };
        if !self.listings.contains_key(&ListKind::Full) || self.background.is_some() {
            // Invalidated meanwhile (the next listing decides afresh), or this instance
            // scans already.
            self.shared.awaiting_vouched = None;
            return;
        }
        let free = match self.shared.tier.as_mut() {
            Some(t) if self.shared.scan_lock.is_none() => t.try_scan_lock(SCAN_LOCK_MS),
            _ => None,
        };
        if free == Some(false) && Instant::now() < deadline {
            return;
        }
        self.shared.awaiting_vouched = None;
        self.take_vouched_or_scan(free == Some(true));
    }

    /// With the full listing vouched for by another instance's session, and this one's
    /// watches up: schedules the look at that session and returns `true` (no scan now);
    /// otherwise `false` (the caller scans).
    pub(super) fn check_coverage_later(&mut self) -> bool {
        let (Some(covering), Some(own)) = (self.shared.coverage.clone(), self.own_session()) else {
            return false;
        };
        if covering == own {
            return true;
        }
        let due = Instant::now() + crate::library::shared::COVERAGE_CHECK_AFTER;
        self.shared.pending_check = Some((covering, due));
        true
    }

    /// When the scheduled look is due: the session that vouches for the listing taken, seen
    /// alive now, was refreshed after this instance's watches were set up, by ticks that
    /// had applied and announced every change seen before — so this instance's own events
    /// take over, and no scan is needed. Anything else (gone, Redis unreachable, the
    /// listing replaced meanwhile by one nobody vouches for) means a scan in the background.
    pub(super) fn check_coverage_due(&mut self) {
        let due = matches!(&self.shared.pending_check, Some((_, at)) if Instant::now() >= *at);
        if !due {
            return;
        }
        let Some((session, _)) = self.shared.pending_check.take() else {
            return;
        };
        let still = self.shared.coverage.as_deref() == Some(session.as_str());
        let alive = still && self.session_alive(&session);
        if alive && let Some(own) = self.own_session() {
            self.shared.coverage = Some(own);
            self.shared.scans_spared += 1;
        } else if self.listings.contains_key(&ListKind::Full) {
            self.shared.coverage = None;
            self.verify_after_watch();
        }
    }

    /// Tells the other instances the TTL set here.
    pub(super) fn tell_shared_ttl(&mut self, secs: u64) {
        if self.shared.url.is_none() {
            return;
        }
        if let Some(t) = self.shared_tier() {
            t.send_ttl(secs);
        }
    }

    /// Tells the other instances about a change made here (`ids` the models it touched).
    pub(super) fn tell_shared(&mut self, kind: EventKind, ids: Vec<String>) {
        if self.shared.url.is_none() {
            return;
        }
        let stamps = Stamps::read(&self.library);
        self.send_shared(kind, ids, &stamps);
    }

    /// Sends an event with the stamps read after the change (as `f64` bits).
    fn send_shared(&mut self, kind: EventKind, ids: Vec<String>, s: &Stamps) {
        let bits = |t: Option<f64>| t.map(f64::to_bits);
        let stamps = Some([bits(s.registry), bits(s.models_dir), bits(s.downloads_dir)]);
        if let Some(t) = self.shared_tier() {
            t.send(kind, ids, stamps);
        }
    }

    /// Applies the other instances' changes: a delete empties its rows (a registered model
    /// stays, `available`, as a scan would show it; an unregistered one goes) and takes the
    /// stamps the sender read after it (no disk read here); a change naming its models
    /// (an import, a finished download, a watched change) rescans those models here and
    /// keeps every other row (selective, as this instance's own watched changes are);
    /// anything else, or a reconnection (events may have been missed), drops the caches.
    /// Returns whether anything changed.
    pub(super) fn apply_shared_events(&mut self) -> bool {
        // Set up early (a shell's first tick), so the events are heard by the first listing.
        self.shared_tier();
        let events = match self.shared.tier.as_mut() {
            Some(t) => t.received(),
            None => return false,
        };
        let mut changed = false;
        for event in events {
            changed = true;
            let full = self.listings.get(&ListKind::Full).cloned();
            match (event.kind, event.stamps, full) {
                (EventKind::Deleted, Some([registry, models_dir, downloads_dir]), Some(full)) => {
                    let stamps = Stamps {
                        registry: registry.map(f64::from_bits),
                        models_dir: models_dir.map(f64::from_bits),
                        downloads_dir: downloads_dir.map(f64::from_bits),
                    };
                    if stamps.registry != full.stamps.registry {
                        // The registry changed too: rows made from the old one must not
                        // carry the new one's stamp (see `rescan_some`).
                        self.invalidate("a change made by another instance");
                        continue;
                    }
                    let listing = without_deleted(&full, &event.ids, stamps);
                    self.install_full(Arc::new(listing), commit::Installed::Shared);
                    self.listings.remove(&ListKind::Fast);
                }
                // Models another instance changed, named: rescanned here, as this
                // instance's own watched changes are (the rest of the listing stays).
                // (Only library ids: another store's rows are each machine's own.)
                (EventKind::Changed, _, Some(full))
                    if !event.ids.is_empty()
                        && event.ids.iter().all(|i| validate_id(i).is_ok()) =>
                {
                    let stamps = Stamps::read(&self.library);
                    match self.rescan_some(&full, &event.ids, stamps, None) {
                        Ok(None) => {}
                        Ok(Some((listing, rows_changed))) => {
                            let how = if rows_changed {
                                commit::Installed::RowsChangedElsewhere
                            } else {
                                commit::Installed::Restamped
                            };
                            self.install_full(Arc::new(listing), how);
                        }
                        Err(_) => self.invalidate("a change made by another instance"),
                    }
                }
                (EventKind::Ttl, _, _) => {
                    // Checked as one set here would be; a bad value is ignored.
                    if let Some(secs) = event.ttl_secs.and_then(|s| check_ttl(s as i64).ok()) {
                        self.ttl_secs = secs;
                    }
                }
                (EventKind::Reconnected, _, _) => {
                    self.invalidate("the shared cache reconnected (changes may have been missed)")
                }
                _ => self.invalidate(&format!(
                    "a change made by another instance ({})",
                    if event.ids.is_empty() {
                        "the library".to_string()
                    } else {
                        event.ids.join(", ")
                    }
                )),
            }
        }
        changed
    }
}

/// `full` after `ids` were deleted, with the stamps read after it: a registered model stays
/// listed with nothing on disk (`available`), as a scan would list it; an unregistered one
/// is gone.
fn without_deleted(full: &Listing, ids: &[String], stamps: Stamps) -> Listing {
    let mut listing = Listing::clone(full);
    let gone = |m: &ModelInfo| m.source == LIBRARY_SOURCE && ids.contains(&m.id);
    listing.models.retain(|m| !gone(m) || m.registered);
    for row in listing.models.iter_mut().filter(|m| gone(m)) {
        let m = Arc::make_mut(row);
        m.status = ModelStatus::Available;
        m.figures = m.figures.with_size(Some(0)).with_files(Some(0));
        m.figures.set_modified(None);
        m.figures.set_partial(None);
        m.note = None;
        m.error = None;
        m.metadata = None;
        m.main_file = None;
    }
    listing.stamps = stamps;
    listing
}
