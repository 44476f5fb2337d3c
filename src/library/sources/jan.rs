//! Jan's data folder. Its llama.cpp engine keeps each model in
//! `llamacpp/models/<id>/model.yml` (ids may nest: the first folder down that holds a
//! `model.yml` is a model, as `list()` in Jan's `extensions/llamacpp-extension` walks it);
//! its MLX engine the same under `mlx/models/`. `model.yml` names the files:
//! `model_path` and `mmproj_path`, relative to the data folder for downloads, absolute for
//! a model imported from elsewhere (Jan joins them onto the data folder, so an absolute
//! path replaces it), with `name` and `embedding`. A download runs into `<file>.tmp`
//! beside a `<file>.url` and `model.yml` is written last
//! (`src-tauri/src/core/downloads/helpers.rs`), so a folder with files but no `model.yml`
//! is an unfinished download.
//!
//! Ids: `jan/<id>`, `jan/mlx/<id>`. Size: the model folder's files plus the named files
//! that live outside it. Status: `error` (unreadable `model.yml`, a named file missing, a
//! link), `partial` (no `model.yml` yet, or the model file still a `.tmp`), else
//! `downloaded`. Links are never followed. Never writes.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use super::{
    Draft, SourceScan, WeightFile, arch_capabilities, is_weight_name, list_dir, push_unique,
    read_bounded, walk, weight_set_metadata,
};
use crate::library::clock::unix_seconds;
use crate::library::error::LibraryError;
use crate::library::metadata::MetadataCache;

/// Largest `model.yml` read.
const MAX_YML: u64 = 1 << 20;
/// How deep ids may nest.
const MAX_ID_DEPTH: usize = 8;

pub(super) fn scan(
    root: &Path,
    cache: &mut MetadataCache,
    out: &mut SourceScan,
) -> Result<(), LibraryError> {
    for (engine, prefix) in [("llamacpp", "jan"), ("mlx", "jan/mlx")] {
        let models = root.join(engine).join("models");
        if models.is_dir() {
            find_models(root, &models, &models, prefix, 0, cache, out);
        }
    }
    Ok(())
}

/// Walks `dir` down to the folders that are models.
fn find_models(
    data: &Path,
    models: &Path,
    dir: &Path,
    prefix: &str,
    depth: usize,
    cache: &mut MetadataCache,
    out: &mut SourceScan,
) {
    let Ok(entries) = list_dir(dir) else { return };
    let id = dir
        .strip_prefix(models)
        .unwrap_or(dir)
        .to_string_lossy()
        .into_owned();
    if entries.iter().any(|(n, _)| n == "model.yml") {
        out.push(model(data, dir, &id, prefix, cache));
        return;
    }
    let has_files = entries.iter().any(|(_, ft)| ft.is_file());
    if has_files && !id.is_empty() {
        // Files but no model.yml: a download Jan has not finished.
        let mut d = Draft::new(format!("{prefix}/{id}"), id.clone(), dir.to_path_buf());
        count_folder(dir, &mut d);
        d.partial = true;
        out.push(d);
        return;
    }
    if depth >= MAX_ID_DEPTH {
        return;
    }
    for (name, ft) in entries {
        let sub = dir.join(&name);
        if ft.is_symlink() && !id.is_empty() {
            let rel = format!("{id}/{}", name.to_string_lossy());
            let mut d = Draft::new(format!("{prefix}/{rel}"), rel, sub.clone());
            d.error(format!(
                "{} is a symbolic link; links are not followed",
                sub.display()
            ));
            out.push(d);
        } else if ft.is_dir() {
            find_models(data, models, &sub, prefix, depth + 1, cache, out);
        }
    }
}

/// Counts the regular files of a model folder; links in it are errors.
fn count_folder(dir: &Path, d: &mut Draft) {
    let w = walk(dir);
    for (_, abs, size, mtime) in &w.files {
        d.count(abs.clone(), *size, Some(*mtime));
    }
    for (rel, _) in &w.links {
        d.error(format!(
            "{} is a symbolic link; links are not followed",
            rel.display()
        ));
    }
    d.errors.extend(w.errors);
    d.newest = super::newest(d.newest, w.newest);
}

/// A model folder with its `model.yml`.
fn model(data: &Path, dir: &Path, id: &str, prefix: &str, cache: &mut MetadataCache) -> Draft {
    let mut d = Draft::new(format!("{prefix}/{id}"), id.to_string(), dir.to_path_buf());
    count_folder(dir, &mut d);
    let yml = dir.join("model.yml");
    let doc = read_bounded(&yml, MAX_YML)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|t| YamlLoader::load_from_str(&t).ok())
        .and_then(|docs| docs.into_iter().next())
        .filter(|y| matches!(y, Yaml::Hash(_)));
    let Some(doc) = doc else {
        d.error(format!("{}: not a readable model.yml", yml.display()));
        return d;
    };
    if let Some(name) = doc["name"].as_str().filter(|n| !n.trim().is_empty()) {
        d.name = name.to_string();
    }
    let mut weights = Vec::new();
    for key in ["model_path", "mmproj_path"] {
        let Some(rel) = doc[key].as_str() else {
            if key == "model_path" {
                d.error(format!("{}: no model_path", yml.display()));
            }
            continue;
        };
        // Jan joins the path onto its data folder; an absolute one replaces it.
        let file = super::lexical_normalize(&data.join(rel));
        match named_file(&file, dir, &mut d) {
            Some(size) if key == "model_path" && is_weight_name(&file) => {
                weights.push(WeightFile {
                    rel: PathBuf::from(rel),
                    real: file,
                    size,
                });
            }
            _ => {}
        }
        if key == "mmproj_path" {
            push_unique(&mut d.capabilities, "vision");
        }
    }
    let set: Vec<&WeightFile> = weights.iter().collect();
    d.metadata = weight_set_metadata(&set, cache);
    d.format = weights
        .first()
        .and_then(|w| crate::library::scan::guess_format(&w.rel))
        .map(str::to_string);
    let mut caps = d
        .metadata
        .as_ref()
        .and_then(|m| m.architecture.as_deref())
        .map(arch_capabilities)
        .unwrap_or_default();
    if doc["embedding"].as_bool() == Some(true) {
        caps = vec!["embedding".into()];
    }
    for c in std::mem::take(&mut d.capabilities) {
        push_unique(&mut caps, &c);
    }
    d.capabilities = caps;
    d
}

/// Checks a file `model.yml` names: its size when it is a regular file (counted when it
/// lives outside the folder, which was counted already); a `.tmp` beside a missing file
/// makes the model partial; a missing file or a link is an error.
fn named_file(file: &Path, dir: &Path, d: &mut Draft) -> Option<u64> {
    match std::fs::symlink_metadata(file) {
        Ok(m) if m.file_type().is_symlink() => {
            d.error(format!(
                "{} is a symbolic link; links are not followed",
                file.display()
            ));
            None
        }
        Ok(m) if m.is_file() => {
            if !file.starts_with(dir) {
                d.count(
                    file.to_path_buf(),
                    m.len(),
                    m.modified().ok().map(unix_seconds),
                );
            }
            Some(m.len())
        }
        Ok(_) => None, // a folder (MLX): its files were counted with the model folder
        Err(_) => {
            let tmp = PathBuf::from(format!("{}.tmp", file.display()));
            if std::fs::symlink_metadata(&tmp).is_ok() {
                d.partial = true;
            } else {
                d.error(format!("{} is missing", file.display()));
            }
            None
        }
    }
}
