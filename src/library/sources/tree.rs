//! Model files anywhere in a folder tree: the scanner behind stores that have no layout of
//! their own (a folder of the user's, ComfyUI's model folders, llama.cpp's flat cache).
//!
//! Rules, in order:
//! - A folder holding `config.json` or `model_index.json` (a Transformers or Diffusers
//!   model) with at least one weight file under it is **one model**: everything under it
//!   counts. The topmost such folder wins.
//! - Elsewhere each model file (by extension, [`TreeRules::exts`]) is a model; the parts
//!   of a split (`-00001-of-00003`) are one model; a vision projector (`mmproj*`) joins the
//!   largest other model in its folder (a projector alone is its own model).
//! - A file with a download suffix (the generic ones, [`TOOL_PARTIAL_SUFFIXES`]) counts with the file it becomes
//!   and makes that model `partial`.
//! - A folder that `huggingface_hub` downloaded into (`--local-dir`: it keeps
//!   `.cache/huggingface/download/<file>.metadata` there, and `<…>.incomplete` while a file
//!   is being fetched: `_local_folder.py`) is one model, `partial` while such a file is
//!   there.
//! - A link with a model file's name is listed as an `error` and never followed.
//! - Hidden folders (`.git`, `.cache`) are skipped.
//!
//! Ids are `<prefix>/<path relative to the root>` (a split without its part suffix, a
//! model folder without a trailing slash). Never writes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{
    Draft, SourceScan, WeightFile, is_projector, is_weight_name, push_unique, weight_group,
};
use crate::library::metadata::MetadataCache;
use crate::library::scan::guess_format;

/// Suffixes of a file still being downloaded besides the generic ones: llama.cpp's
/// `.downloadInProgress` (common/download.cpp) and Jan's `.tmp`
/// (src-tauri/src/core/downloads/helpers.rs).
const TOOL_PARTIAL_SUFFIXES: [&str; 2] = [".downloadinprogress", ".tmp"];

/// Model-file extensions of a folder of the user's own.
pub(super) const MODEL_EXTS: [&str; 10] = [
    "gguf",
    "safetensors",
    "sft",
    "ckpt",
    "pt",
    "pth",
    "onnx",
    "ggml",
    "llamafile",
    "mlmodel",
];

/// What a tree scan looks for and how it names what it finds.
pub(super) struct TreeRules<'a> {
    /// The id prefix, e.g. `folder` or `comfyui/loras`.
    pub prefix: &'a str,
    /// Extensions (lower case, without the dot) of a model file.
    pub exts: &'a [&'a str],
    /// A capability every model found gets (ComfyUI's folder kind), besides the
    /// architecture's.
    pub capability: Option<&'a str>,
    /// Folders (absolute) whose files are left out: another store's, the library's.
    pub skip: &'a [PathBuf],
}

/// The name without its download suffix, when it has one.
pub(super) fn strip_partial(name: &str) -> Option<&str> {
    super::strip_partial_suffix(name, &TOOL_PARTIAL_SUFFIXES)
}

fn has_ext(name: &str, exts: &[&str]) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn is_hidden(rel: &Path) -> bool {
    rel.components()
        .any(|c| c.as_os_str().as_encoded_bytes().first() == Some(&b'.'))
}

/// One model being gathered.
#[derive(Default)]
struct Group {
    files: Vec<(PathBuf, PathBuf, u64, f64)>,
    links: Vec<PathBuf>,
    partial: bool,
}

/// Scans `root` by the rules above into `out`.
pub(super) fn scan_tree(
    root: &Path,
    rules: &TreeRules<'_>,
    cache: &mut MetadataCache,
    out: &mut SourceScan,
) {
    let w = walk_pruned(root, rules.skip);
    let files: Vec<_> = w.files.iter().filter(|f| !is_hidden(&f.0)).collect();
    let local_dirs: BTreeSet<PathBuf> = w
        .files
        .iter()
        .filter_map(|f| local_dir_of(&f.0))
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    let mut model_dirs = model_folders(&files, rules.exts);
    model_dirs.extend(local_dirs.iter().cloned());
    let model_dirs: Vec<PathBuf> = model_dirs
        .iter()
        .filter(|d| !model_dirs.iter().any(|o| o != *d && d.starts_with(o)))
        .cloned()
        .collect();
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    // Projectors wait until their folder's models are known.
    let mut projectors: Vec<&(PathBuf, PathBuf, u64, f64)> = Vec::new();
    for f in &files {
        if let Some(dir) = model_dirs.iter().find(|d| f.0.starts_with(d)) {
            let g = groups
                .entry(dir.to_string_lossy().into_owned())
                .or_default();
            g.partial |= strip_partial(&f.0.to_string_lossy()).is_some();
            g.files.push((*f).clone());
            continue;
        }
        let rel = f.0.to_string_lossy();
        let (name, partial) = match strip_partial(&rel) {
            Some(n) => (n.to_string(), true),
            None => (rel.to_string(), false),
        };
        if !has_ext(&name, rules.exts) {
            continue;
        }
        if !partial && is_projector(Path::new(&name)) {
            projectors.push(f);
            continue;
        }
        let g = groups.entry(weight_group(Path::new(&name))).or_default();
        g.partial |= partial;
        g.files.push((*f).clone());
    }
    // A local-dir download's unfinished files (hidden, so not among `files`).
    for f in w
        .files
        .iter()
        .filter(|f| f.0.to_string_lossy().ends_with(".incomplete"))
    {
        if let Some(dir) = local_dir_of(&f.0).filter(|d| model_dirs.contains(d)) {
            let g = groups
                .entry(dir.to_string_lossy().into_owned())
                .or_default();
            g.partial = true;
            g.files.push(f.clone());
        }
    }
    for p in projectors {
        let parent = p.0.parent().unwrap_or(Path::new(""));
        let host = groups
            .iter_mut()
            .filter(|(k, g)| {
                Path::new(k.as_str()).parent() == Some(parent)
                    && !model_dirs.iter().any(|d| d.as_os_str() == k.as_str())
                    && g.files.iter().any(|f| !is_projector(&f.0))
            })
            .max_by_key(|(_, g)| g.files.iter().map(|f| f.2).sum::<u64>())
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| weight_group(&p.0));
        groups.entry(host).or_default().files.push(p.clone());
    }
    for (rel, _) in &w.links {
        if is_hidden(rel) {
            continue;
        }
        let name = rel.to_string_lossy();
        if has_ext(strip_partial(&name).unwrap_or(&name), rules.exts) {
            groups
                .entry(weight_group(rel))
                .or_default()
                .links
                .push(rel.clone());
        }
    }
    for (key, group) in groups {
        let is_dir = model_dirs.iter().any(|d| d.as_os_str() == key.as_str());
        out.push(draft(root, rules, &key, is_dir, group, cache));
    }
}

/// Walks `root` with `walkdir` (not a hot path: a store's rescan), links not followed, at
/// most [`super::MAX_WALK_DEPTH`] deep, never entering a folder of `skip` nor a hidden
/// folder other than a local-dir download's `.cache/huggingface/download` — so a folder of
/// one's own that holds another store (or is a home folder) is not walked through it.
fn walk_pruned(root: &Path, skip: &[PathBuf]) -> super::Walked {
    let mut w = super::Walked::default();
    let entries = walkdir::WalkDir::new(root)
        .follow_links(false)
        .max_depth(super::MAX_WALK_DEPTH)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || !(e.file_type().is_dir()
                    && (skip.iter().any(|s| e.path() == s)
                        || !hidden_allowed(e.path().strip_prefix(root).unwrap_or(e.path()))))
        });
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                w.errors.push(e.to_string());
                continue;
            }
        };
        let Ok(meta) = entry.metadata() else { continue }; // vanished
        let mtime = meta
            .modified()
            .ok()
            .map(crate::library::clock::unix_seconds);
        w.newest = super::newest(w.newest, mtime);
        if entry.depth() == 0 {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .to_path_buf();
        if meta.file_type().is_symlink() {
            w.links.push((rel, entry.path().to_path_buf()));
        } else if meta.is_file() {
            let abs = entry.path().to_path_buf();
            w.files.push((rel, abs, meta.len(), mtime.unwrap_or(0.0)));
        }
    }
    w
}

/// Whether a folder at `rel` may be entered: no hidden component, or the hidden part is a
/// local-dir download's `.cache/huggingface/download/…`.
fn hidden_allowed(rel: &Path) -> bool {
    let parts: Vec<&std::ffi::OsStr> = rel.components().map(|c| c.as_os_str()).collect();
    let Some(i) = parts
        .iter()
        .position(|p| p.as_encoded_bytes().first() == Some(&b'.'))
    else {
        return true;
    };
    parts[i..]
        .iter()
        .zip(LOCAL_DIR_META)
        .all(|(p, w)| *p == std::ffi::OsStr::new(w))
}

/// Where `huggingface_hub` keeps a local-dir download's bookkeeping, below that folder.
const LOCAL_DIR_META: [&str; 3] = [".cache", "huggingface", "download"];

/// The folder a `huggingface_hub` local-dir download's bookkeeping file belongs to:
/// `<dir>/.cache/huggingface/download/…` → `<dir>`.
fn local_dir_of(rel: &Path) -> Option<PathBuf> {
    let parts: Vec<_> = rel.components().map(|c| c.as_os_str()).collect();
    let i = parts.windows(3).position(|w| w == LOCAL_DIR_META)?;
    Some(parts[..i].iter().collect())
}

/// The topmost folders that hold `config.json` or `model_index.json` and a weight file.
fn model_folders(files: &[&(PathBuf, PathBuf, u64, f64)], exts: &[&str]) -> Vec<PathBuf> {
    let marked: BTreeSet<&Path> = files
        .iter()
        .filter(|f| {
            matches!(
                f.0.file_name().and_then(|n| n.to_str()),
                Some("config.json" | "model_index.json")
            )
        })
        .filter_map(|f| f.0.parent())
        .filter(|d| !d.as_os_str().is_empty())
        .collect();
    let with_weights: Vec<&Path> = marked
        .iter()
        .copied()
        .filter(|d| {
            files.iter().any(|f| {
                f.0.starts_with(d)
                    && f.0
                        .file_name()
                        .is_some_and(|n| has_ext(&n.to_string_lossy(), exts))
            })
        })
        .collect();
    with_weights
        .iter()
        .filter(|d| !with_weights.iter().any(|o| o != *d && d.starts_with(o)))
        .map(|d| d.to_path_buf())
        .collect()
}

fn draft(
    root: &Path,
    rules: &TreeRules<'_>,
    key: &str,
    is_dir: bool,
    group: Group,
    cache: &mut MetadataCache,
) -> Draft {
    // The id: the folder, or the file as the user sees it (a split without its part
    // suffix).
    let id_rel = key;
    let name = Path::new(id_rel)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| id_rel.to_string());
    let path = if is_dir {
        root.join(id_rel)
    } else {
        group
            .files
            .iter()
            .find(|f| !is_projector(&f.0))
            .or(group.files.first())
            .map(|f| f.1.clone())
            .unwrap_or_else(|| root.join(id_rel))
    };
    let mut d = Draft::new(format!("{}/{id_rel}", rules.prefix), name, path);
    for rel in &group.links {
        d.error(format!(
            "{} is a symbolic link; links are not followed",
            rel.display()
        ));
    }
    d.partial = group.partial;
    let mut weights = Vec::new();
    let mut largest: Option<(u64, &'static str)> = None;
    for (rel, abs, size, mtime) in &group.files {
        d.count(abs.clone(), *size, Some(*mtime));
        if strip_partial(&rel.to_string_lossy()).is_some() {
            continue;
        }
        if let Some(fmt) = guess_format(rel)
            .or_else(|| has_ext(&rel.to_string_lossy(), &["sft"]).then_some("safetensors"))
            && largest.is_none_or(|(s, _)| *size > s)
        {
            largest = Some((*size, fmt));
        }
        if is_weight_name(rel) && !is_projector(rel) {
            weights.push(WeightFile {
                rel: rel.clone(),
                real: abs.clone(),
                size: *size,
            });
        }
    }
    d.format = largest.map(|(_, f)| f.to_string());
    let set = super::main_weight_set(&weights);
    d.describe_weights(&set, cache);
    if let Some(cap) = rules.capability {
        push_unique(&mut d.capabilities, cap);
    }
    if !weights.is_empty() && group.files.iter().any(|f| is_projector(&f.0)) {
        push_unique(&mut d.capabilities, "vision");
    }
    d
}
