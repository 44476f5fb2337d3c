//! Disk usage over store scans and library listings: totals per source and overall with
//! shared files counted once, the space a delete would free, the largest and the least
//! recently modified models. Pure arithmetic over scan results; no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SourceScan;
use crate::library::model::ModelInfo;

/// Bytes on disk per source and overall, each file counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Source name (`library`, `huggingface`, `ollama`, `lmstudio`) → bytes.
    pub per_source: BTreeMap<String, u64>,
    /// All sources together, a file seen by two scans (overlapping roots) counted once.
    pub total_unique: u64,
}

/// Disk usage of store scans plus models that have no file list (the library's own, whose
/// folders share nothing): those add their `size_bytes` under their `source`. A model of
/// `others` whose id appears in one of the scans is skipped, so passing a whole merged
/// listing does not count store models twice.
pub fn disk_usage(scans: &[SourceScan], others: &[ModelInfo]) -> DiskUsage {
    let mut usage = DiskUsage::default();
    let mut all: HashMap<&Path, u64> = HashMap::new();
    let mut per_kind: BTreeMap<&str, HashMap<&Path, u64>> = BTreeMap::new();
    for scan in scans {
        let kind = per_kind.entry(scan.kind.as_str()).or_default();
        for (path, size) in &scan.blobs {
            kind.insert(path, *size);
            all.insert(path, *size);
        }
    }
    for (kind, files) in per_kind {
        usage
            .per_source
            .insert(kind.to_string(), files.values().sum());
    }
    usage.total_unique = all.values().sum();
    let scanned: BTreeSet<&str> = scans
        .iter()
        .flat_map(|s| s.model_blobs.keys().map(String::as_str))
        .collect();
    for m in others {
        if scanned.contains(m.id.as_str()) {
            continue;
        }
        let size = m.size_bytes().unwrap_or(0);
        *usage.per_source.entry(m.source.to_string()).or_default() += size;
        usage.total_unique += size;
    }
    usage
}

/// The bytes deleting `model_id` would free: the sizes of its files that no other model of
/// any of the scans uses. `None` when no scan has the model.
pub fn bytes_freed_by_deleting(scans: &[SourceScan], model_id: &str) -> Option<u64> {
    let (owner, mine) = scans
        .iter()
        .enumerate()
        .find_map(|(i, s)| s.model_blobs.get(model_id).map(|b| (i, b)))?;
    let used_elsewhere = |path: &Path| {
        scans.iter().enumerate().any(|(i, s)| {
            s.model_blobs
                .iter()
                .any(|(id, files)| !(i == owner && id == model_id) && files.contains(path))
        })
    };
    Some(
        mine.iter()
            .filter(|p| !used_elsewhere(p))
            .map(|p| scans[owner].blobs.get(p).copied().unwrap_or(0))
            .sum(),
    )
}

/// The `n` largest models by `size_bytes` (unknown sizes left out), largest first, ties by id.
pub fn largest_models<'a>(
    models: impl IntoIterator<Item = &'a ModelInfo>,
    n: usize,
) -> Vec<&'a ModelInfo> {
    let mut v: Vec<&ModelInfo> = models
        .into_iter()
        .filter(|m| m.size_bytes().is_some())
        .collect();
    v.sort_by(|a, b| {
        b.size_bytes()
            .cmp(&a.size_bytes())
            .then_with(|| a.id.cmp(&b.id))
    });
    v.truncate(n);
    v
}

/// The `n` least recently used models, judged by `modified` (access times are not kept
/// reliably by file systems, so the newest modification stands for the last use); oldest
/// first, models without a time left out, ties by id.
pub fn least_recently_used<'a>(
    models: impl IntoIterator<Item = &'a ModelInfo>,
    n: usize,
) -> Vec<&'a ModelInfo> {
    let mut v: Vec<&ModelInfo> = models
        .into_iter()
        .filter(|m| m.modified().is_some())
        .collect();
    v.sort_by(|a, b| {
        a.modified()
            .partial_cmp(&b.modified())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.id.cmp(&b.id))
    });
    v.truncate(n);
    v
}
