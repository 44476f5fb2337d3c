//! What the caches know, in the original service's `cache-info` shape plus counters,
//! freshness and the library's state. Reads three stamps; changes nothing.

use super::*;

/// State of the service cache, in the original service's shape plus counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceCacheInfo {
    /// Whether the main listing may be served now.
    pub cache_valid: bool,
    /// When the main listing was built (clock time), if any.
    pub cache_timestamp: Option<f64>,
    /// Its age in seconds.
    pub cache_age_seconds: Option<f64>,
    /// The TTL in seconds.
    pub cache_ttl_seconds: u64,
    /// Models in the main listing.
    pub cached_model_count: usize,
    /// Filled keys (`all`, `fast`).
    pub cache_keys: Vec<String>,
    /// Current mtime of `model_registry.json`.
    pub registry_mtime: Option<f64>,
    /// Current mtime of `models/`.
    pub models_dir_mtime: Option<f64>,
    /// Current mtime of `.downloads/`.
    pub downloads_dir_mtime: Option<f64>,
    /// Why the main listing cannot be served, when it cannot.
    pub stale_reason: Option<String>,
    /// Service cache hits since start.
    pub hits: u64,
    /// Service cache misses since start.
    pub misses: u64,
    /// hits / (hits + misses).
    pub hit_rate: Option<f64>,
    /// Wall time of the last scan, milliseconds.
    pub last_scan_duration_ms: Option<f64>,
    /// The last scan's error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Registry entries that could not be listed.
    pub registry_problems: Vec<String>,
    /// The library folder.
    pub library: String,
    /// Whether the listing on offer is the persisted one, being revalidated.
    pub revalidating: bool,
    /// What happened to the persisted listing (loaded, saved, ignored and why).
    pub persisted: Option<String>,
    /// How changes are noticed: file events, polling (and why), or not watching.
    pub watch_mode: String,
    /// The longest a change on disk can stay unseen, seconds: about 1 with file events,
    /// the verifier's period when polling, `null` when nothing is watched or the watches
    /// are still being set up (then only the TTL bounds it).
    pub freshness_bound_seconds: Option<f64>,
    /// When the library was last checked as a whole (unix seconds): the start of the last
    /// full scan or of the polling verifier's last whole pass.
    pub last_verified: Option<f64>,
    /// What the listing can be trusted for, in one sentence for people.
    pub freshness: String,
    /// Why nothing is written to this library (one of its folders is a symbolic link), or
    /// `None` when writes are on. Listing works either way.
    pub read_only_reason: Option<String>,
    /// What the recovery of interrupted imports did at start, one line each.
    pub recovery: Vec<String>,
}

/// State of the view cache, in the original service's shape plus counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViewCacheInfo {
    /// Keys of the cached views.
    pub api_cache_keys: Vec<String>,
    /// Number of cached views.
    pub api_cache_entries: usize,
    /// View cache hits since start.
    pub hits: u64,
    /// View cache misses since start.
    pub misses: u64,
    /// hits / (hits + misses).
    pub hit_rate: Option<f64>,
}

/// Both levels, as `GET /api/models/cache-info` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheInfo {
    /// The service cache.
    pub service_cache: ServiceCacheInfo,
    /// The view (API) cache.
    pub api_cache: ViewCacheInfo,
    /// The shared tier on Redis (`--redis`); absent without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_cache: Option<crate::library::shared::SharedCacheInfo>,
}

impl ModelLibraryService {
    /// Both levels' state. Reads three stamps.
    pub fn cache_info(&self) -> CacheInfo {
        let stamps = Stamps::read(&self.library);
        let now = self.clock.now();
        let cached = self
            .listings
            .get(&ListKind::Full)
            .or_else(|| self.listings.get(&ListKind::Fast));
        let main = cached.or(self.warm.as_ref());
        let staleness = match (cached, &self.warm) {
            (Some(l), _) => l
                .check(now, self.ttl_secs, &stamps, self.racy_check())
                .err(),
            (None, Some(_)) => Some(Staleness::Revalidating),
            (None, None) => Some(match &self.invalidated {
                Some(by) => Staleness::Invalidated { by: by.clone() },
                None => Staleness::Empty,
            }),
        };
        CacheInfo {
            service_cache: ServiceCacheInfo {
                cache_valid: staleness.is_none(),
                cache_timestamp: main.map(|l| l.timestamp),
                cache_age_seconds: main.map(|l| l.age(now)),
                cache_ttl_seconds: self.ttl_secs,
                cached_model_count: main.map_or(0, |l| l.models.len()),
                cache_keys: self.cache_keys(),
                registry_mtime: stamps.registry,
                models_dir_mtime: stamps.models_dir,
                downloads_dir_mtime: stamps.downloads_dir,
                stale_reason: staleness.map(|s| s.to_string()),
                hits: self.service_counters.hits,
                misses: self.service_counters.misses,
                hit_rate: self.service_counters.hit_rate(),
                last_scan_duration_ms: main.map(|l| l.scan_duration.as_secs_f64() * 1000.0),
                last_error: self.last_error.clone(),
                registry_problems: main.map(|l| l.problems.clone()).unwrap_or_default(),
                library: self.library.root().display().to_string(),
                revalidating: self.warm.is_some(),
                persisted: {
                    let notes: Vec<String> = [self.persist_note.clone(), self.saver.note()]
                        .into_iter()
                        .flatten()
                        .collect();
                    (!notes.is_empty()).then(|| notes.join("; "))
                },
                watch_mode: self
                    .watcher
                    .as_ref()
                    .map_or_else(|| WatchMode::Off.to_string(), |w| w.describe()),
                freshness_bound_seconds: self.freshness_bound_secs(),
                last_verified: self.last_verified(),
                freshness: self.freshness_sentence(main.map(|l| l.age(now))),
                read_only_reason: self.library.writes_off().map(|e| e.to_string()),
                recovery: self.recovery.clone(),
            },
            api_cache: ViewCacheInfo {
                api_cache_keys: self.views.keys().cloned().collect(),
                api_cache_entries: self.views.len(),
                hits: self.view_counters.hits,
                misses: self.view_counters.misses,
                hit_rate: self.view_counters.hit_rate(),
            },
            shared_cache: self.shared_cache_info(),
        }
    }
}

impl ModelLibraryService {
    /// What the listing can be trusted for, said plainly.
    fn freshness_sentence(&self, age: Option<f64>) -> String {
        let ttl_left = age.map(|a| (self.ttl_secs as f64 - a).max(0.0).ceil());
        let until_ttl = match ttl_left {
            Some(left) => format!("at the next refresh or when the TTL runs out (in {left} s)"),
            None => "at the next refresh".to_string(),
        };
        if self.background.is_some() {
            return "watches are set up; the scan that follows finds any change made meanwhile"
                .into();
        }
        match (self.watch_mode(), self.freshness_bound_secs()) {
            (WatchMode::Events, Some(bound)) => {
                format!("changes on disk show within about {bound} s (file events)")
            }
            (WatchMode::Polling { .. }, Some(bound)) => format!(
                "polling: every model folder is re-checked, so changes show within {bound} s"
            ),
            (WatchMode::Hybrid { polled, .. }, Some(bound)) => format!(
                "file events, and {polled} model folder{} beyond the system's watch limit \
                 re-checked by polling: changes show within {bound} s",
                if polled == 1 { "" } else { "s" }
            ),
            (WatchMode::Starting, _) => format!(
                "watches are being set up: a change made meanwhile may show only {until_ttl}"
            ),
            _ => format!("not watching: changes on disk show {until_ttl}"),
        }
    }
}
