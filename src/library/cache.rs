//! The two cache levels' data and rules (SPEC §5): a cached [`Listing`] with the file stamps
//! it was built against, the validity check (TTL, registry and folder mtimes, racy
//! timestamps), filtered [`View`]s that share their listing, and hit/miss counters.
//! Reads file metadata (three `stat`s per check); never writes.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::library::clock::unix_seconds;
use crate::library::layout::Library;
use crate::library::model::ListKind;
use crate::library::model::{ListQuery, ModelInfo};

/// The latest full listing, readable from other threads without the service: a reader
/// clones the `Arc` and always sees a whole listing, never a torn one.
#[derive(Debug, Clone, Default)]
pub struct SnapshotHandle(Arc<RwLock<Option<Arc<Listing>>>>);

impl SnapshotHandle {
    /// The latest full listing, if one was built.
    pub fn latest(&self) -> Option<Arc<Listing>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn publish(&self, listing: Arc<Listing>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(listing);
    }
}

/// Smallest TTL accepted, seconds.
pub const TTL_MIN_SECS: u64 = 30;
/// Largest TTL accepted, seconds.
pub const TTL_MAX_SECS: u64 = 3600;
/// TTL of a new service, seconds.
pub const DEFAULT_TTL_SECS: u64 = 300;

/// Modification times (unix seconds) of the paths whose change invalidates a listing,
/// read before the scan that built it. `None`: the path did not exist.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Stamps {
    /// `model_registry.json`.
    pub registry: Option<f64>,
    /// `models/`.
    pub models_dir: Option<f64>,
    /// `.downloads/`.
    pub downloads_dir: Option<f64>,
}

impl Stamps {
    /// Reads the current stamps of a library (three `stat`s).
    pub fn read(library: &Library) -> Stamps {
        Stamps {
            registry: mtime(&library.registry_path()),
            models_dir: mtime(&library.models_dir()),
            downloads_dir: mtime(&library.downloads_dir()),
        }
    }
}

fn mtime(path: &Path) -> Option<f64> {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .map(unix_seconds)
}

/// An immutable scan result, shared by every cache hit and view.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Full or fast.
    pub kind: ListKind,
    /// The models, registered ones first in registry order, then unregistered by name.
    /// Rows are shared: a listing made from another (a rescan of a few models, header
    /// metadata added, a status patched) shares every row it does not replace.
    pub models: Vec<Arc<ModelInfo>>,
    /// Registry entries that could not be listed, one line each.
    pub problems: Vec<String>,
    /// Clock time when the scan started.
    pub scan_started: f64,
    /// Clock time when the scan finished: the cache timestamp.
    pub timestamp: f64,
    /// How long the scan took (wall time).
    pub scan_duration: Duration,
    /// The stamps the scan was built against.
    pub stamps: Stamps,
}

/// Makes `rows` (a new scan's, not yet shared) share every row of `old` they equal: a scan
/// that finds a model as it was keeps the row the caches, views and other threads already
/// hold instead of a second copy of it. A new row without header metadata equals an old
/// one that has it when everything else is equal (same main file, size and mtime: the
/// header the metadata came from is the same) and keeps that metadata. Rows are matched by
/// position first (scans list in a stable order), then by id.
pub fn reuse_unchanged_rows(rows: &mut [Arc<ModelInfo>], old: &Listing) {
    let mut by_id: Option<HashMap<&str, &Arc<ModelInfo>>> = None;
    for (i, row) in rows.iter_mut().enumerate() {
        let candidate = match old.models.get(i) {
            Some(o) if o.id == row.id => Some(o),
            _ => by_id
                .get_or_insert_with(|| old.models.iter().map(|m| (m.id.as_str(), m)).collect())
                .get(row.id.as_str())
                .copied(),
        };
        let Some(candidate) = candidate else {
            continue;
        };
        if Arc::ptr_eq(row, candidate) {
            continue;
        }
        let lent = row.metadata.is_none() && candidate.metadata.is_some();
        if lent {
            Arc::make_mut(row).metadata = candidate.metadata.clone();
        }
        if **row == **candidate {
            *row = Arc::clone(candidate);
        } else if lent {
            Arc::make_mut(row).metadata = None;
        }
    }
}

/// Why a cached listing cannot be served.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Staleness {
    /// Nothing is cached.
    Empty,
    /// Older than the TTL.
    TtlExpired {
        /// Age in seconds.
        age_seconds: f64,
    },
    /// `model_registry.json` changed (or appeared, or vanished).
    RegistryChanged,
    /// `models/` changed (a model folder was added, removed or renamed).
    ModelsDirChanged,
    /// `.downloads/` changed.
    DownloadsDirChanged,
    /// A stamp was as new as the scan itself, so a change in the same clock tick could
    /// hide behind it (the racy-timestamp rule, as in git).
    RacyTimestamp,
    /// Only the listing persisted by an earlier run is at hand; a scan is revalidating it.
    Revalidating,
    /// Dropped on purpose: refresh, download, delete.
    Invalidated {
        /// What dropped it.
        by: String,
    },
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Staleness::Empty => f.write_str("not scanned yet"),
            Staleness::TtlExpired { age_seconds } => {
                write!(f, "TTL expired (age {age_seconds:.0} s)")
            }
            Staleness::RegistryChanged => f.write_str("registry changed"),
            Staleness::ModelsDirChanged => f.write_str("models folder changed"),
            Staleness::DownloadsDirChanged => f.write_str("downloads folder changed"),
            Staleness::RacyTimestamp => f.write_str("changed during the last scan"),
            Staleness::Revalidating => f.write_str("revalidating the listing saved last time"),
            Staleness::Invalidated { by } => write!(f, "invalidated by {by}"),
        }
    }
}

impl Listing {
    /// A listing of nothing (a placeholder, never served).
    pub fn empty() -> Listing {
        Listing {
            kind: ListKind::Full,
            models: Vec::new(),
            problems: Vec::new(),
            scan_started: 0.0,
            timestamp: 0.0,
            scan_duration: Duration::ZERO,
            stamps: Stamps::default(),
        }
    }

    /// Age in seconds at clock time `now`.
    pub fn age(&self, now: f64) -> f64 {
        now - self.timestamp
    }

    /// Whether this listing may still be served: under the TTL, stamps unchanged, and (when
    /// `racy_check`) no stamp at or after the scan's start (rounded down to the second, the
    /// coarsest common file-system granularity) — such a stamp could hide a later change in
    /// the same tick.
    pub fn check(
        &self,
        now: f64,
        ttl_secs: u64,
        current: &Stamps,
        racy_check: bool,
    ) -> Result<(), Staleness> {
        let age = self.age(now);
        // A clock that jumped back more than a second is as untrustworthy as an old one.
        if age >= ttl_secs as f64 || age < -1.0 {
            return Err(Staleness::TtlExpired { age_seconds: age });
        }
        if current.registry != self.stamps.registry {
            return Err(Staleness::RegistryChanged);
        }
        if current.models_dir != self.stamps.models_dir {
            return Err(Staleness::ModelsDirChanged);
        }
        if current.downloads_dir != self.stamps.downloads_dir {
            return Err(Staleness::DownloadsDirChanged);
        }
        let racy_from = self.scan_started.floor();
        let stamps = [
            self.stamps.registry,
            self.stamps.models_dir,
            self.stamps.downloads_dir,
        ];
        if racy_check && stamps.into_iter().flatten().any(|t| t >= racy_from) {
            return Err(Staleness::RacyTimestamp);
        }
        Ok(())
    }
}

/// A filtered view of a listing: the listing itself (shared) and the indices of the rows
/// that pass the filters. Cloning is two reference-count increments.
#[derive(Debug, Clone)]
pub struct View {
    /// The listing the rows point into.
    pub listing: Arc<Listing>,
    /// Indices into `listing.models`.
    pub rows: Arc<[u32]>,
}

impl View {
    /// Applies `query`'s filters to `listing`.
    pub fn filter(listing: Arc<Listing>, query: &ListQuery) -> View {
        let rows: Arc<[u32]> = listing
            .models
            .iter()
            .enumerate()
            .filter(|(_, m)| query.matches(m))
            .map(|(i, _)| i as u32)
            .collect();
        View { listing, rows }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `i`.
    pub fn get(&self, i: usize) -> Option<&ModelInfo> {
        self.rows
            .get(i)
            .and_then(|&r| self.listing.models.get(r as usize))
            .map(|m| &**m)
    }

    /// The rows in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &ModelInfo> + '_ {
        self.rows
            .iter()
            .map(move |&r| &*self.listing.models[r as usize])
    }
}

/// Hits and misses of one cache level, since the service started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Requests served from the cache.
    pub hits: u64,
    /// Requests that had to build the result.
    pub misses: u64,
}

impl Counters {
    /// Hits / (hits + misses), or `None` before the first request.
    pub fn hit_rate(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }

    pub(crate) fn record(&mut self, hit: bool) {
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::library::model::ModelMetadata;

    fn row(id: &str, size: u64) -> Arc<ModelInfo> {
        let path = std::path::PathBuf::from(format!("/lib/models/{id}"));
        Arc::new(ModelInfo {
            figures: crate::library::model::Figures::default()
                .with_size(Some(size))
                .with_files(Some(1)),
            ..ModelInfo::new(id, &path)
        })
    }

    fn listing(models: Vec<Arc<ModelInfo>>) -> Listing {
        Listing {
            models,
            ..Listing::empty()
        }
    }

    #[test]
    fn rows_found_unchanged_are_shared_and_keep_their_metadata() {
        let mut with_meta = row("a", 1);
        Arc::make_mut(&mut with_meta).metadata = Some(Arc::new(ModelMetadata {
            architecture: Some("llama".into()),
            ..ModelMetadata::default()
        }));
        let old = listing(vec![with_meta, row("b", 2), row("c", 3)]);
        // New order (c moved first), b grew, d is new.
        let mut rows = vec![row("c", 3), row("a", 1), row("b", 5), row("d", 4)];
        reuse_unchanged_rows(&mut rows, &old);
        assert!(Arc::ptr_eq(&rows[0], &old.models[2]), "matched by id");
        assert!(Arc::ptr_eq(&rows[1], &old.models[0]), "metadata kept");
        assert!(rows[1].metadata.is_some());
        assert!(!Arc::ptr_eq(&rows[2], &old.models[1]));
        assert_eq!(rows[2].size_bytes(), Some(5));
        assert_eq!(rows[3].id, "d");
        // A changed row does not take the old row's metadata.
        let mut changed = vec![row("a", 9)];
        reuse_unchanged_rows(&mut changed, &old);
        assert!(changed[0].metadata.is_none());
    }
}
