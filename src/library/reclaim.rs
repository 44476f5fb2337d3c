//! Reclaimable space: what no model needs, in every store and in the library, each with its
//! size and why ([`find`]), and moving it to the trash when asked ([`delete`]).
//!
//! - Ollama: blobs no manifest references; unfinished pulls (`…-partial`). When a manifest
//!   cannot be read, no blob of that store is called unreferenced (it might be that one's).
//! - Hugging Face: per repository, snapshots no ref names (detached revisions) — only in a
//!   repository where some ref names another revision (a repo fetched by commit hash alone
//!   has no refs and is in use) —, blobs no snapshot links, blobs only detached revisions
//!   link, and unfinished downloads (`*.incomplete`). (As `huggingface_hub`'s cache scan
//!   defines detached revisions: `scan_cache_dir`, `DeleteCacheStrategy`.) And files of
//!   the cache's shared blob store that no repository links.
//! - The library: `.downloads/<id>` of ids the registry no longer has (nothing will resume
//!   them), and import staging folders under `.cache/imports/` that no journal describes
//!   (a journal's import is finished or undone at the next start instead).
//!
//! Owns nothing. Reads the stores' layouts (never through a link below their roots); the
//! only write is [`delete`]'s move to the trash, which skips anything changed in the last
//! minute (a store may be writing it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::library::layout::Library;
use crate::library::registry_pack::PackedRegistry;
use crate::library::sources::{SourceConfig, SourceKind, parse_ollama_blob_name};

/// One thing no model needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// The file or folder.
    pub path: PathBuf,
    /// Where: `library`, `huggingface`, `ollama`.
    pub source: String,
    /// Bytes it takes (a folder: its files').
    pub size: u64,
    /// Why no model needs it.
    pub why: String,
    /// Whether it changed in the last minute (then it is listed but not deleted).
    pub recent: bool,
}

/// How recently something may have changed and still be deleted, seconds.
pub const QUIET_SECS: u64 = 60;

/// Everything reclaimable in `library` and the enabled `stores`, largest first. `registry`
/// is the library's (for its `.downloads/`): the packed one a service keeps, so looking
/// costs no parse of the registry file.
pub fn find(library: &Library, registry: &PackedRegistry, stores: &[SourceConfig]) -> Vec<Item> {
    let mut items = library_items(library, registry);
    for store in stores.iter().filter(|s| s.enabled) {
        match store.kind {
            SourceKind::Ollama => items.extend(ollama_items(&store.root)),
            SourceKind::HuggingFace => items.extend(huggingface_items(&store.root)),
            SourceKind::LlamaCpp => {
                items.extend(huggingface_items(&store.root));
                items.extend(unfinished(&store.root, store.kind, 1, |n| {
                    n.ends_with(".downloadInProgress")
                }));
            }
            SourceKind::Gpt4All => {
                items.extend(unfinished(&store.root, store.kind, 1, |n| {
                    n.starts_with("incomplete-")
                }));
            }
            SourceKind::Jan => {
                let models = store.root.join("llamacpp").join("models");
                items.extend(unfinished(&models, store.kind, 9, |n| {
                    n.ends_with(".tmp") || n.ends_with(".url")
                }));
            }
            _ => {}
        }
    }
    items.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    items
}

/// Unfinished downloads of a store that names them by a pattern (`is_partial` on the file
/// name), at most `depth` folders down, links not followed: GPT4All's `incomplete-<file>`
/// (gpt4all-chat `modellist.cpp`), llama.cpp's `<file>.downloadInProgress`
/// (`common/download.cpp`), Jan's `<file>.tmp` and its `<file>.url`
/// (`src-tauri/src/core/downloads/helpers.rs`). The store may resume them; listed as
/// unfinished, like the other stores' partial files.
fn unfinished(
    root: &Path,
    kind: SourceKind,
    depth: usize,
    is_partial: impl Fn(&str) -> bool,
) -> Vec<Item> {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .max_depth(depth)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && is_partial(&e.file_name().to_string_lossy()))
        .map(|e| {
            item(
                e.into_path(),
                kind.as_str(),
                format!(
                    "an unfinished download of {}; {} resumes or restarts it",
                    kind.display_name(),
                    kind.display_name()
                ),
            )
        })
        .collect()
}

/// Size (the files below it; links are not followed and hold no data) and newest change of
/// `path` (its folders' too: an entry made or removed is a change).
fn measure(path: &Path) -> (u64, std::time::SystemTime) {
    let mut size = 0;
    let mut newest = std::time::UNIX_EPOCH;
    for entry in walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if let Ok(m) = entry.metadata() {
            if m.is_file() {
                size += m.len();
            }
            newest = newest.max(m.modified().unwrap_or(std::time::UNIX_EPOCH));
        }
    }
    (size, newest)
}

fn item(path: PathBuf, source: &str, why: String) -> Item {
    let (size, newest) = measure(&path);
    let recent = newest
        .elapsed()
        .map_or(true, |age| age.as_secs() < QUIET_SECS);
    Item {
        path,
        source: source.to_string(),
        size,
        why,
        recent,
    }
}

fn library_items(library: &Library, registry: &PackedRegistry) -> Vec<Item> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(library.downloads_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) && registry.position(&name).is_none() {
                out.push(item(
                    e.path(),
                    "library",
                    format!("an interrupted download of {name}, which the registry no longer has: nothing will resume it"),
                ));
            }
        }
    }
    let imports = library
        .cache_dir()
        .join(crate::library::layout::IMPORTS_DIR);
    if let Ok(entries) = fs::read_dir(&imports) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let journal = imports.join(format!("{name}.json"));
            if e.file_type().is_ok_and(|t| t.is_dir()) && !journal.exists() {
                out.push(item(
                    e.path(),
                    "library",
                    format!("the staging folder of an import of {name} that left no journal"),
                ));
            }
        }
    }
    out
}

/// The `sha256:<hex>` digests a manifest names (config and layers); `None` when it cannot be
/// read as a manifest.
fn manifest_digests(path: &Path) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let mut out = Vec::new();
    let layers = v.get("layers")?.as_array()?;
    for d in v.get("config").into_iter().chain(layers) {
        let digest = d.get("digest")?.as_str()?;
        out.push(digest.strip_prefix("sha256:")?.to_string());
    }
    Some(out)
}

fn ollama_items(root: &Path) -> Vec<Item> {
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    let mut all_read = true;
    for e in walkdir::WalkDir::new(root.join("manifests"))
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
    {
        match manifest_digests(e.path()) {
            Some(d) => referenced.extend(d),
            None => all_read = false,
        }
    }
    let mut out = Vec::new();
    let Ok(blobs) = fs::read_dir(root.join("blobs")) else {
        return out;
    };
    for e in blobs
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((hex, partial)) = parse_ollama_blob_name(&name) else {
            continue;
        };
        if partial {
            out.push(item(e.path(), "ollama", "an unfinished pull".into()));
        } else if all_read && !referenced.contains(&hex) {
            out.push(item(e.path(), "ollama", "no manifest uses it".into()));
        }
    }
    out
}

/// Where a snapshot link lands: the blob's name, when it points into the repository's own
/// `blobs/` (as the hub writes them: `../../blobs/<name>`, deeper for nested files).
fn linked_blob(link: &Path) -> Option<String> {
    let target = fs::read_link(link).ok()?;
    let mut parts = target.components().rev();
    let name = parts.next()?.as_os_str().to_string_lossy().into_owned();
    (parts.next()?.as_os_str() == "blobs").then_some(name)
}

fn huggingface_items(root: &Path) -> Vec<Item> {
    let mut out = Vec::new();
    let Ok(repos) = fs::read_dir(root) else {
        return out;
    };
    for repo in repos.flatten() {
        let name = repo.file_name().to_string_lossy().into_owned();
        if name.starts_with("models--") && repo.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(repo_items(&repo.path()));
        }
    }
    out.extend(shared_store_items(root));
    out
}

/// Files of the cache's shared blob store (`<cache>/blobs/<xx>/<hash>`, marked by
/// `.huggingface-shared-blobs`: `huggingface_hub`'s `_shared_blobs.py`) that no
/// repository's `blobs/<etag>` links to. Its `.refs` lists are only hints, so the links
/// themselves are what count.
fn shared_store_items(root: &Path) -> Vec<Item> {
    let store = root.join("blobs");
    if !fs::symlink_metadata(store.join(".huggingface-shared-blobs")).is_ok_and(|m| m.is_file()) {
        return Vec::new();
    }
    let mut linked: BTreeSet<String> = BTreeSet::new();
    for repo in fs::read_dir(root).into_iter().flatten().flatten() {
        if !repo.file_name().to_string_lossy().starts_with("models--") {
            continue;
        }
        for blob in fs::read_dir(repo.path().join("blobs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(target) = fs::read_link(blob.path())
                && let Some(hash) = target.file_name()
            {
                linked.insert(hash.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    for shard in fs::read_dir(&store).into_iter().flatten().flatten() {
        if !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for e in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_payload = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if is_payload && e.file_type().is_ok_and(|t| t.is_file()) && !linked.contains(&name) {
                out.push(item(
                    e.path(),
                    "huggingface",
                    "a shared blob no repository links".to_string(),
                ));
            }
        }
    }
    out
}

fn repo_items(repo: &Path) -> Vec<Item> {
    let named: BTreeSet<String> = walkdir::WalkDir::new(repo.join("refs"))
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .map(|s| s.trim().to_string())
        .collect();
    // Blob name → revisions whose snapshot links it.
    let mut linked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut revisions: Vec<String> = Vec::new();
    if let Ok(snaps) = fs::read_dir(repo.join("snapshots")) {
        for snap in snaps
            .flatten()
            .filter(|s| s.file_type().is_ok_and(|t| t.is_dir()))
        {
            let rev = snap.file_name().to_string_lossy().into_owned();
            for e in walkdir::WalkDir::new(snap.path())
                .follow_links(false)
                .into_iter()
                .flatten()
            {
                if e.file_type().is_symlink()
                    && let Some(blob) = linked_blob(e.path())
                {
                    linked.entry(blob).or_default().insert(rev.clone());
                }
            }
            revisions.push(rev);
        }
    }
    // Detached only where some ref names another revision.
    let detached: BTreeSet<&String> = if named.is_empty() {
        BTreeSet::new()
    } else {
        revisions.iter().filter(|r| !named.contains(*r)).collect()
    };
    let mut out: Vec<Item> = detached
        .iter()
        .map(|rev| {
            item(
                repo.join("snapshots").join(rev.as_str()),
                "huggingface",
                format!("revision {} that no ref names (detached)", short(rev)),
            )
        })
        .collect();
    let Ok(blobs) = fs::read_dir(repo.join("blobs")) else {
        return out;
    };
    for e in blobs
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let why = if name.ends_with(".incomplete") {
            "an unfinished download".to_string()
        } else {
            match linked.get(&name) {
                None if !revisions.is_empty() || !named.is_empty() => {
                    "no snapshot links it".to_string()
                }
                None => continue, // nothing to judge by
                Some(revs) if revs.iter().all(|r| detached.contains(r)) => format!(
                    "only detached revision {} links it",
                    revs.iter().map(|r| short(r)).collect::<Vec<_>>().join(", ")
                ),
                Some(_) => continue,
            }
        };
        out.push(item(e.path(), "huggingface", why));
    }
    out
}

fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}

/// What deleting one item came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Deleted {
    /// Moved to the trash.
    Trashed {
        /// Bytes it took.
        freed: u64,
    },
    /// Left alone: why.
    Skipped {
        /// Why (changed in the last minute, gone, the trash refused).
        reason: String,
    },
}

/// Moves each item to the trash, except those that changed in the last minute (looked at
/// again now) — a store may be writing them.
pub fn delete(items: &[Item]) -> Vec<(PathBuf, Deleted)> {
    items
        .iter()
        .map(|it| {
            let (size, newest) = measure(&it.path);
            let recent = newest
                .elapsed()
                .map_or(true, |age| age.as_secs() < QUIET_SECS);
            let outcome = if fs::symlink_metadata(&it.path).is_err() {
                Deleted::Skipped {
                    reason: "already gone".into(),
                }
            } else if recent {
                Deleted::Skipped {
                    reason: "changed in the last minute (it may still be being written)".into(),
                }
            } else {
                match trash::delete(&it.path) {
                    Ok(()) => Deleted::Trashed { freed: size },
                    Err(e) => Deleted::Skipped {
                        reason: format!("the trash refused it: {e}"),
                    },
                }
            };
            (it.path.clone(), outcome)
        })
        .collect()
}
