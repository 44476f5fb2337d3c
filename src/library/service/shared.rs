//! The service's side of the shared cache tier ([`crate::library::shared`]): taking another
//! instance's full listing instead of scanning when its stamps pass this instance's own
//! checks, publishing the listings this instance builds, telling the others what it
//! changed and applying what they changed. Redis failing only ever means scanning here.

use super::*;
use crate::library::shared::{EventKind, SharedCacheInfo, SharedTier};
use crate::library::shared_listing;

/// How long an instance waits for the scan another one is making before scanning itself.
const WAIT_FOR_OTHERS: std::time::Duration = std::time::Duration::from_secs(20);
/// How long a scan lock lives without its holder (a crashed holder's lock expires).
const SCAN_LOCK_MS: u64 = 30_000;

/// The tier's URL, the tier once set up, and why it could not be.
pub(super) struct SharedState {
    url: Option<String>,
    tier: Option<SharedTier>,
    problem: Option<String>,
    /// This instance holds the library's scan lock (released after its scan).
    holds_scan_lock: bool,
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
            holds_scan_lock: false,
        })
    }
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
            Some(t) => t.info(),
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
                last_error: state.problem.clone(),
            },
        })
    }

    /// Another instance's full listing, installed, when it passes this instance's own
    /// checks (TTL, stamps, racy timestamps) — then no scan is needed. The other stores
    /// are each machine's own: they are listed here and added.
    pub(super) fn take_shared(&mut self) -> Option<Arc<Listing>> {
        self.take_shared_counting(true)
    }

    /// [`Self::take_shared`]; a look in vain counted as a miss only when `count_miss`.
    fn take_shared_counting(&mut self, count_miss: bool) -> Option<Arc<Listing>> {
        let tier = self.shared_tier()?;
        // Taken before the others' events are heard, its changes could go unheard.
        if !tier.listening() {
            return None;
        }
        let bytes = tier.fetch_listing();
        let library = self.library.clone();
        let listing = bytes.and_then(|b| shared_listing::decode(&library, &b));
        let racy_check = self.racy_check();
        let valid = listing.filter(|l| {
            l.check(
                self.clock.now(),
                self.ttl_secs,
                &Stamps::read(&self.library),
                racy_check,
            )
            .is_ok()
        });
        let Some(mut listing) = valid else {
            if let Some(t) = self.shared.tier.as_mut().filter(|_| count_miss) {
                t.record(false);
            }
            return None;
        };
        let stores = self.scan_stores();
        listing.models.extend(stores);
        let installed = self.install_full(Arc::new(listing), commit::Installed::Shared);
        if let Some(t) = self.shared.tier.as_mut() {
            t.record(true);
        }
        Some(installed)
    }

    /// Before scanning: takes the library's scan lock (then `None`: scan, and publish), or,
    /// when another instance holds it, waits for the listing it will publish and takes it —
    /// until the lock is gone (its holder finished or died) or [`WAIT_FOR_OTHERS`] passed;
    /// then `None`: scan here.
    pub(super) fn wait_for_shared_scan(&mut self) -> Option<Arc<Listing>> {
        let tier = self.shared_tier()?;
        if !tier.listening() {
            return None;
        }
        match tier.try_scan_lock(SCAN_LOCK_MS) {
            None => return None, // unreachable: scan
            Some(true) => {
                self.shared.holds_scan_lock = true;
                return None;
            }
            Some(false) => {}
        }
        let deadline = Instant::now() + WAIT_FOR_OTHERS;
        while Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(25));
            if let Some(listing) = self.take_shared_counting(false) {
                return Some(listing);
            }
            let tier = self.shared.tier.as_mut()?;
            match tier.try_scan_lock(SCAN_LOCK_MS) {
                Some(true) => {
                    // The holder is gone without publishing: this one scans.
                    self.shared.holds_scan_lock = true;
                    return None;
                }
                Some(false) => {}
                None => return None,
            }
        }
        None
    }

    /// Releases the scan lock this instance took, if it did.
    pub(super) fn release_scan_lock(&mut self) {
        if std::mem::take(&mut self.shared.holds_scan_lock)
            && let Some(t) = self.shared.tier.as_mut()
        {
            t.release_scan_lock();
        }
    }

    /// Publishes a full listing this instance built (its library rows).
    pub(super) fn publish_shared(&mut self, listing: &Listing) {
        if self.shared.url.is_none() {
            return;
        }
        let bytes = shared_listing::encode(&self.library, listing);
        let ttl = self.ttl_secs;
        if let Some(t) = self.shared_tier() {
            t.publish_listing(&bytes, ttl);
        }
    }

    /// A delete made here: the full listing as it is now (see [`without_deleted`]) is
    /// published before the others are told, so one that notices the change by its own
    /// stamps takes it at once rather than scanning.
    pub(super) fn share_delete(&mut self, ids: Vec<String>) {
        if self.shared.url.is_none() {
            return;
        }
        let stamps = Stamps::read(&self.library);
        if let Some(full) = self.listings.get(&ListKind::Full).cloned() {
            let listing = without_deleted(&full, &ids, stamps);
            self.publish_shared(&listing);
        }
        self.send_shared(EventKind::Deleted, ids, &stamps);
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
    /// stamps the sender read after it (no disk read here); anything else, or a
    /// reconnection (events may have been missed), drops the caches. Returns whether
    /// anything changed.
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
                    let listing = without_deleted(&full, &event.ids, stamps);
                    self.install_full(Arc::new(listing), commit::Installed::Shared);
                    self.listings.remove(&ListKind::Fast);
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
        m.size_bytes = Some(0);
        m.file_count = Some(0);
        m.modified = None;
        m.partial_bytes = None;
        m.note = None;
        m.error = None;
        m.metadata = None;
        m.main_file = None;
    }
    listing.stamps = stamps;
    listing
}
