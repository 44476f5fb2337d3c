//! llama.cpp's cache folder. Two layouts live there (llama.cpp `common/download.cpp`,
//! `common/arg.cpp`):
//! - the **flat** one of older versions (and still of `-mu` URL downloads): a model file
//!   `<user>_<repo>_<path, '/' → '_'>`, its `<file>.etag`, `<file>.downloadInProgress`
//!   while downloading, and per `-hf user/repo:tag` a manifest
//!   `manifest=<user>=<repo>=<tag>.json` (the hub's manifest response: `ggufFile.rfilename`,
//!   `mmprojFile.rfilename`). A manifest makes one model `llamacpp/<user>/<repo>:<tag>` of
//!   its GGUF file (all parts of a split) and its projector; other model files at the top
//!   are each a model `llamacpp/<file>` (split parts together).
//! - the **Hugging Face** layout of newer versions (`models--user--repo/…`), which is
//!   written here only when `$LLAMA_CACHE` points here (else into the Hugging Face cache,
//!   which is that store's): scanned by the Hugging Face scanner, ids `llamacpp/<org>/<name>`.
//!
//! Links are never followed (an `error` model naming them). Never writes.

use std::collections::BTreeMap;
use std::fs::FileType;
use std::path::{Path, PathBuf};

use super::tree::strip_partial;
use super::{Draft, SourceScan, WeightFile, list_dir, push_unique, read_bounded, weight_group};
use crate::library::clock::unix_seconds;
use crate::library::error::LibraryError;
use crate::library::metadata::MetadataCache;

/// Largest manifest read.
const MAX_MANIFEST: u64 = 4 << 20;

/// A flat-cache model file at the top of the folder.
struct Top {
    name: String,
    ft: FileType,
}

pub(super) fn scan(
    root: &Path,
    cache: &mut MetadataCache,
    out: &mut SourceScan,
) -> Result<(), LibraryError> {
    super::huggingface::scan(root, "llamacpp", cache, out)?;
    let entries = list_dir(root).map_err(|e| LibraryError::io(root, e))?;
    let mut files: Vec<Top> = Vec::new();
    let mut manifests = Vec::new();
    for (name, ft) in entries {
        let name = name.to_string_lossy().into_owned();
        if let Some(m) = name
            .strip_prefix("manifest=")
            .and_then(|m| m.strip_suffix(".json"))
        {
            manifests.push(m.to_string());
        } else if is_gguf(strip_partial(&name).unwrap_or(&name)) {
            files.push(Top { name, ft });
        }
    }
    let mut claimed = vec![false; files.len()];
    for m in manifests {
        let Some(draft) = manifest_model(root, &m, &files, &mut claimed, cache) else {
            continue;
        };
        out.push(draft);
    }
    // Files no manifest names: one model per file (split parts together).
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        if !claimed[i] {
            let plain = strip_partial(&f.name).unwrap_or(&f.name);
            groups
                .entry(weight_group(Path::new(plain)))
                .or_default()
                .push(i);
        }
    }
    for (key, members) in groups {
        let path = root.join(&files[members[0]].name);
        let mut d = Draft::new(format!("llamacpp/{key}"), key.clone(), path);
        let parts: Vec<&Top> = members.iter().map(|&i| &files[i]).collect();
        fill(root, &parts, &mut d, cache);
        out.push(d);
    }
    Ok(())
}

/// A projector in the flat cache: its name carries the repo's prefix, so `mmproj` is looked
/// for anywhere in it.
fn is_flat_projector(name: &str) -> bool {
    name.to_ascii_lowercase().contains("mmproj")
}

fn is_gguf(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".gguf")
}

/// The model a manifest names, claiming its files; `None` when the manifest's name is not
/// `<user>=<repo>=<tag>`.
fn manifest_model(
    root: &Path,
    m: &str,
    files: &[Top],
    claimed: &mut [bool],
    cache: &mut MetadataCache,
) -> Option<Draft> {
    let mut parts = m.splitn(3, '=');
    let (user, repo, tag) = (parts.next()?, parts.next()?, parts.next()?);
    let name = format!("{user}/{repo}:{tag}");
    let manifest_path = root.join(format!("manifest={m}.json"));
    let mut d = Draft::new(format!("llamacpp/{name}"), name, manifest_path.clone());
    d.empty_is_error = true;
    let json = read_bounded(&manifest_path, MAX_MANIFEST)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some(json) = json else {
        d.error(format!(
            "{}: not a readable manifest",
            manifest_path.display()
        ));
        return Some(d);
    };
    let file_of = |key: &str| -> Option<String> {
        let rel = json.get(key)?.get("rfilename")?.as_str()?;
        Some(format!("{user}_{repo}_{}", rel.replace('/', "_")))
    };
    let mut wanted: Vec<String> = Vec::new();
    if let Some(g) = file_of("ggufFile") {
        wanted.push(weight_group(Path::new(&g)));
    }
    if let Some(p) = file_of("mmprojFile") {
        wanted.push(weight_group(Path::new(&p)));
    }
    let mut mine = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let plain = strip_partial(&f.name).unwrap_or(&f.name);
        if wanted.contains(&weight_group(Path::new(plain))) {
            claimed[i] = true;
            mine.push(f);
        }
    }
    if mine.is_empty() {
        d.error("the manifest's model file is not in the cache");
    } else {
        d.path = root.join(&mine[0].name);
        fill(root, &mine, &mut d, cache);
    }
    Some(d)
}

/// Counts `parts` into `d`: sizes, partial downloads, links (errors), metadata.
fn fill(root: &Path, parts: &[&Top], d: &mut Draft, cache: &mut MetadataCache) {
    let mut weights = Vec::new();
    for f in parts {
        let path = root.join(&f.name);
        if f.ft.is_symlink() {
            d.error(format!(
                "{} is a symbolic link; links are not followed",
                path.display()
            ));
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // vanished
        };
        d.count(
            path.clone(),
            meta.len(),
            meta.modified().ok().map(unix_seconds),
        );
        if strip_partial(&f.name).is_some() {
            d.partial = true;
        } else if !is_flat_projector(&f.name) {
            weights.push(WeightFile {
                rel: PathBuf::from(&f.name),
                real: path,
                size: meta.len(),
            });
        }
    }
    d.format = Some("gguf".into());
    let set: Vec<&WeightFile> = weights.iter().collect();
    d.describe_weights(&set, cache);
    if !weights.is_empty() && parts.iter().any(|f| is_flat_projector(&f.name)) {
        push_unique(&mut d.capabilities, "vision");
    }
}
