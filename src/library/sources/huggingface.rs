//! The Hugging Face hub cache: `models--<org>--<name>/` folders holding `blobs/` (content
//! files, `<hash>.incomplete` while downloading), `snapshots/<revision>/…` (relative
//! symlinks into `../../blobs/`, or plain files where symlinks are unavailable) and
//! `refs/<branch>` (a revision hash). `datasets--*` and `spaces--*` are not models.
//!
//! Size: every file in `blobs/` (incomplete ones included) plus plain files in snapshots,
//! each once, so revisions sharing a blob count it once. Snapshot links are resolved by name
//! inside the repository's own `blobs/` folder; a link anywhere else is not followed or
//! counted and makes the model an `error`. Status: `error` (a link out of `blobs/`, a link to
//! a missing blob, an unreadable folder, nothing at all on disk), else `partial` (an
//! `.incomplete` blob, or blobs but no snapshot file), else `downloaded`. Metadata and format
//! come from the revision `refs/main` names (else the newest snapshot). Never writes.
//!
//! The shared blob store (`huggingface_hub`'s cross-repo store, on by default): a
//! repository's `blobs/<etag>` may be a relative link to `<cache>/blobs/<xx>/<hash>`; that
//! one hop is followed (see [`shared_blob`]) and the store file counted, once across every
//! repository that links it. The store folder itself is not a repository.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    Draft, SourceScan, WeightFile, arch_capabilities, is_projector, is_weight_name,
    lexical_normalize, list_dir, main_weight_set, push_unique, read_bounded, walk,
    weight_set_metadata,
};
use crate::library::clock::unix_seconds;
use crate::library::error::LibraryError;
use crate::library::metadata::MetadataCache;
use crate::library::model::ModelMetadata;
use crate::library::scan::guess_format;

/// Scans the repos of the cache at `root`, with ids `<prefix>/<org>/<name>` (`huggingface`,
/// or `llamacpp` for repos in llama.cpp's own cache).
pub(super) fn scan(
    root: &Path,
    prefix: &str,
    cache: &mut MetadataCache,
    out: &mut SourceScan,
) -> Result<(), LibraryError> {
    let canon_root = fs::canonicalize(root).ok();
    for (name, ft) in list_dir(root).map_err(|e| LibraryError::io(root, e))? {
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("models--")) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let repo_id = rest.replace("--", "/");
        let dir = root.join(&name);
        let mut draft = Draft::new(format!("{prefix}/{repo_id}"), repo_id, dir.clone());
        if ft.is_symlink() {
            draft.error(format!(
                "{} is a symbolic link; links are not followed",
                dir.display()
            ));
        } else if ft.is_dir() {
            let canon_dir = canon_root.as_ref().map(|c| c.join(&name));
            scan_repo(&dir, canon_dir.as_deref(), cache, &mut draft);
        } else {
            continue;
        }
        out.push(draft);
    }
    Ok(())
}

/// A file of a snapshot, resolved.
struct SnapFile {
    rel: PathBuf,
    real: PathBuf,
    size: u64,
}

fn scan_repo(dir: &Path, canon_dir: Option<&Path>, cache: &mut MetadataCache, d: &mut Draft) {
    if let Ok(m) = fs::symlink_metadata(dir) {
        d.newest = m.modified().ok().map(unix_seconds);
    }

    // blobs/: listed directly, never through a link.
    let blobs_dir = dir.join("blobs");
    // Blob name → (size, where its bytes are: the blob, or the shared store's file).
    let mut blobs: HashMap<OsString, (u64, PathBuf)> = HashMap::new();
    match fs::read_dir(&blobs_dir) {
        Ok(rd) => {
            for entry in rd.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                let name = entry.file_name();
                if meta.file_type().is_symlink() {
                    match shared_blob(&blobs_dir, &entry.path()) {
                        Ok((real, size, mtime)) => {
                            blobs.insert(name, (size, real.clone()));
                            d.count(real, size, mtime);
                        }
                        Err(why) => d.error(format!("blobs/{}: {why}", name.to_string_lossy())),
                    }
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                if name.to_string_lossy().ends_with(".incomplete") {
                    d.partial = true;
                }
                blobs.insert(name, (meta.len(), entry.path()));
                d.count(
                    entry.path(),
                    meta.len(),
                    meta.modified().ok().map(unix_seconds),
                );
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => d.error(format!("cannot read {}: {e}", blobs_dir.display())),
    }
    let blob_dirs: Vec<PathBuf> = [
        Some(lexical_normalize(&blobs_dir)),
        canon_dir.map(|c| c.join("blobs")),
    ]
    .into_iter()
    .flatten()
    .collect();

    // snapshots/<rev>/…
    let snaps_dir = dir.join("snapshots");
    let revisions = match list_dir(&snaps_dir) {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            d.error(format!("cannot read {}: {e}", snaps_dir.display()));
            Vec::new()
        }
    };
    let mut by_rev: Vec<(OsString, Option<f64>, Vec<SnapFile>)> = Vec::new();
    let mut snapshot_files = 0usize;
    for (rev, ft) in revisions {
        let rev_dir = snaps_dir.join(&rev);
        if ft.is_symlink() {
            d.error(format!(
                "{} is a symbolic link; links are not followed",
                rev_dir.display()
            ));
            continue;
        }
        if !ft.is_dir() {
            continue;
        }
        let w = walk(&rev_dir);
        d.newest = super::newest(d.newest, w.newest);
        d.errors.extend(w.errors);
        let mut files = Vec::new();
        for (rel, abs, size, mtime) in w.files {
            d.count(abs.clone(), size, Some(mtime));
            files.push(SnapFile {
                rel,
                real: abs,
                size,
            });
        }
        for (rel, abs) in w.links {
            match resolve_link(&abs, &blob_dirs, &blobs) {
                Ok((real, size)) => files.push(SnapFile { rel, real, size }),
                Err(why) => d.error(format!(
                    "snapshots/{}/{}: {why}",
                    rev.to_string_lossy(),
                    rel.display()
                )),
            }
        }
        snapshot_files += files.len();
        by_rev.push((rev, w.newest, files));
    }
    if snapshot_files == 0 && d.errors.is_empty() {
        if blobs.is_empty() {
            d.error("nothing downloaded: no blob and no snapshot");
        } else {
            d.partial = true; // blobs fetched, no snapshot linked yet
        }
    }

    // The current revision: refs/main when it names a snapshot, else the newest snapshot.
    let main = read_bounded(&dir.join("refs").join("main"), 256)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| is_safe_component(s));
    let current = main
        .and_then(|m| {
            by_rev
                .iter()
                .position(|(r, _, _)| r.to_str() == Some(m.as_str()))
        })
        .or_else(|| {
            (0..by_rev.len()).max_by(|&a, &b| {
                let (ta, tb) = (by_rev[a].1, by_rev[b].1);
                ta.partial_cmp(&tb)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(b.cmp(&a))
            })
        });
    let Some(current) = current else { return };
    let files = &by_rev[current].2;

    d.format = files
        .iter()
        .filter_map(|f| guess_format(&f.rel).map(|fmt| (f.size, fmt)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, fmt)| fmt.to_string());
    let weights: Vec<WeightFile> = files
        .iter()
        .filter(|f| is_weight_name(&f.rel))
        .map(|f| WeightFile {
            rel: f.rel.clone(),
            real: f.real.clone(),
            size: f.size,
        })
        .collect();
    let set = main_weight_set(&weights);
    d.metadata = weight_set_metadata(&set, cache);

    let find = |name: &str| files.iter().find(|f| f.rel == Path::new(name));
    if let Some(config) = find("config.json") {
        let (extra, caps) = read_config(&config.real);
        d.fill_metadata(&extra);
        d.capabilities = caps;
    }
    if find("modules.json").is_some() || find("config_sentence_transformers.json").is_some() {
        d.capabilities = vec!["embedding".into()];
    }
    if d.capabilities.is_empty()
        && let Some(arch) = d.metadata.as_ref().and_then(|m| m.architecture.as_deref())
    {
        d.capabilities = arch_capabilities(arch);
    }
    if weights.iter().any(|w| is_projector(&w.rel)) {
        push_unique(&mut d.capabilities, "vision");
    }
}

/// Resolves a snapshot link by name inside the repository's `blobs/` folder, without
/// following it: lexically, its target must land directly in `blobs/` and name a blob that
/// was listed there.
fn resolve_link(
    link: &Path,
    blob_dirs: &[PathBuf],
    blobs: &HashMap<OsString, (u64, PathBuf)>,
) -> Result<(PathBuf, u64), String> {
    let target = fs::read_link(link).map_err(|e| format!("cannot read the link: {e}"))?;
    let joined = if target.is_absolute() {
        target.clone()
    } else {
        link.parent().unwrap_or(Path::new("")).join(&target)
    };
    let norm = lexical_normalize(&joined);
    let inside = norm
        .parent()
        .is_some_and(|p| blob_dirs.iter().any(|b| b == p));
    let name = norm.file_name();
    match (inside, name) {
        (true, Some(name)) => match blobs.get(name) {
            Some((size, real)) => Ok((real.clone(), *size)),
            None => Err(format!(
                "links to blob {} which is missing",
                name.to_string_lossy()
            )),
        },
        _ => Err(format!(
            "links to {}, outside the repository's blobs; not followed or counted",
            target.display()
        )),
    }
}

/// The marker of the cache's shared blob store (`SHARED_BLOBS_MARKER_NAME`).
const SHARED_MARKER: &str = ".huggingface-shared-blobs";

/// A repository blob that is a link into the cache's shared blob store: where its bytes
/// are, their size and mtime. The store is `<cache>/blobs/<2 hex>/<64 hex>`, marked by
/// `<cache>/blobs/.huggingface-shared-blobs`, and each repository's `blobs/<etag>` is a
/// relative link `../../blobs/<xx>/<hash>` to it (`huggingface_hub`'s `_shared_blobs.py`:
/// `shared_blob_path`, `_make_temporary_symlink`; on by default since the cross-repo
/// store, off with `HF_HUB_DISABLE_SHARED_BLOBS=1`). Only such a link is followed, one
/// hop, by name: anything else is an error naming it, and the store file must be a plain
/// file.
fn shared_blob(repo_blobs: &Path, link: &Path) -> Result<(PathBuf, u64, Option<f64>), String> {
    let not_followed = |t: &Path| {
        format!(
            "links to {}, outside the cache's shared blob store; not followed or counted",
            t.display()
        )
    };
    let target = fs::read_link(link).map_err(|e| format!("cannot read the link: {e}"))?;
    let cache_root = repo_blobs
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| not_followed(&target))?;
    let store = lexical_normalize(&cache_root.join("blobs"));
    if target.is_absolute() {
        return Err(not_followed(&target));
    }
    let real = lexical_normalize(&repo_blobs.join(&target));
    let hash = real.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let shard = real
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    let in_store = real.parent().and_then(Path::parent) == Some(store.as_path())
        && hash.len() == 64
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && shard == hash.get(..2);
    if !in_store || !fs::symlink_metadata(store.join(SHARED_MARKER)).is_ok_and(|m| m.is_file()) {
        return Err(not_followed(&target));
    }
    match fs::symlink_metadata(&real) {
        Ok(m) if m.is_file() => Ok((real, m.len(), m.modified().ok().map(unix_seconds))),
        Ok(_) => Err(format!("the shared blob {hash} is not a plain file")),
        Err(_) => Err(format!("links to shared blob {hash}, which is missing")),
    }
}

/// One path component that cannot climb out (`refs/main` names a snapshot folder).
fn is_safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']) && s.len() <= 128
}

/// What `config.json` adds: architecture (`model_type`), context length
/// (`max_position_embeddings`), and capabilities from `architectures`.
fn read_config(path: &Path) -> (ModelMetadata, Vec<String>) {
    let mut md = ModelMetadata::default();
    let mut caps = Vec::new();
    let Some(v) = read_bounded(path, 1 << 20)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return (md, caps);
    };
    md.architecture = v
        .get("model_type")
        .and_then(Value::as_str)
        .map(str::to_string);
    md.context_length = v
        .get("max_position_embeddings")
        .or_else(|| v.get("text_config")?.get("max_position_embeddings"))
        .and_then(Value::as_u64);
    for a in v
        .get("architectures")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let cap = if a.ends_with("ForCausalLM")
            || a.ends_with("LMHeadModel")
            || a.ends_with("ForConditionalGeneration")
        {
            "text-generation"
        } else if a.ends_with("ForSequenceClassification") {
            "text-classification"
        } else if a.ends_with("ForTokenClassification") {
            "token-classification"
        } else if a.ends_with("ForQuestionAnswering") {
            "question-answering"
        } else if a.ends_with("ForMaskedLM") {
            "fill-mask"
        } else {
            continue;
        };
        push_unique(&mut caps, cap);
    }
    (md, caps)
}
