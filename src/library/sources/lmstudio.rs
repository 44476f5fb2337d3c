//! LM Studio's models folder: `<publisher>/<model>/<files>` (GGUF files, with `mmproj*`
//! vision projectors beside them; MLX models as safetensors). Each `publisher/model` folder
//! is one model, whatever depth its files are at. LM Studio itself finds files only at
//! exactly that depth (a common complaint: lmstudio-bug-tracker #406); a weight file
//! directly in the models folder or in a publisher folder is listed here too, as a model
//! of its own (`lmstudio/<file>`, `lmstudio/<publisher>/<file>`).
//!
//! LM Studio's hub models (`<LM Studio home>/hub/models/<publisher>/<name>/model.yaml`,
//! beside the default models folder: lmstudio-js `VirtualModelDefinition.ts`) are names
//! for concrete models: `model: publisher/name`, and `base` either another hub model's
//! name or a list of `{key, sources: [{type: huggingface, user, repo}]}` whose files live
//! in `<models>/<user>/<repo>/`. A hub model whose files are there names them (a note on
//! that model, which is listed once); one whose files are not is listed as `available`,
//! `lmstudio/hub/<publisher>/<name>`.
//!
//! Size: the regular files of the model folder, each once (LM Studio shares nothing between
//! models). Symlinks (LM Studio can import by link) are never followed: a linked file or
//! folder is not counted and makes the model an `error` naming it, as in the library. Status:
//! `error` (a link, an unreadable folder), else `partial` when a file with an
//! incomplete-download suffix is present (`.part`, `.partial`, `.download`, `.crdownload`,
//! `.incomplete`: LM Studio's own temporary naming is not documented, so these generic
//! suffixes are a heuristic), else `downloaded`. Empty model folders are not listed.
//! Never writes.

use std::path::Path;

use super::{
    Draft, SourceScan, WeightFile, is_projector, is_weight_name, list_dir, main_weight_set,
    push_unique, walk,
};
use crate::library::error::LibraryError;
use crate::library::metadata::MetadataCache;
use crate::library::scan::guess_format;

/// Whether a file has a generic incomplete-download suffix.
fn is_partial_name(name: &Path) -> bool {
    super::strip_partial_suffix(&name.to_string_lossy(), &[]).is_some()
}

pub(super) fn scan(
    root: &Path,
    cache: &mut MetadataCache,
    out: &mut SourceScan,
) -> Result<(), LibraryError> {
    for (publisher, ft) in list_dir(root).map_err(|e| LibraryError::io(root, e))? {
        let publisher = publisher.to_string_lossy().into_owned();
        let pub_dir = root.join(&publisher);
        if ft.is_symlink() {
            let mut d = Draft::new(format!("lmstudio/{publisher}"), publisher, pub_dir.clone());
            d.error(format!(
                "{} is a symbolic link; links are not followed",
                pub_dir.display()
            ));
            out.push(d);
            continue;
        }
        if !ft.is_dir() {
            if ft.is_file()
                && let Some(d) = loose_file(root, Path::new(&publisher), cache)
            {
                out.push(d);
            }
            continue;
        }
        let models = match list_dir(&pub_dir) {
            Ok(v) => v,
            Err(e) => {
                let mut d = Draft::new(
                    format!("lmstudio/{publisher}"),
                    publisher.clone(),
                    pub_dir.clone(),
                );
                d.error(format!("cannot read {}: {e}", pub_dir.display()));
                out.push(d);
                continue;
            }
        };
        for (model, ft) in models {
            let model = model.to_string_lossy().into_owned();
            let dir = pub_dir.join(&model);
            let name = format!("{publisher}/{model}");
            let mut d = Draft::new(format!("lmstudio/{name}"), name, dir.clone());
            if ft.is_symlink() {
                d.error(format!(
                    "{} is a symbolic link; links are not followed",
                    dir.display()
                ));
            } else if ft.is_dir() {
                if !scan_model(&dir, cache, &mut d) {
                    continue;
                }
            } else {
                if ft.is_file()
                    && let Some(d) = loose_file(root, &Path::new(&publisher).join(&model), cache)
                {
                    out.push(d);
                }
                continue;
            }
            out.push(d);
        }
    }
    hub_models(root, out);
    Ok(())
}

/// The hub models beside `root` (see the module's comment): notes on the models they name,
/// and the ones with nothing downloaded as `available` models.
fn hub_models(root: &Path, out: &mut SourceScan) {
    let Some(hub) = root.parent().map(|p| p.join("hub").join("models")) else {
        return;
    };
    let Ok(publishers) = list_dir(&hub) else {
        return;
    };
    for (publisher, ft) in publishers {
        if !ft.is_dir() {
            continue;
        }
        let pub_dir = hub.join(&publisher);
        for (name, ft) in list_dir(&pub_dir).unwrap_or_default() {
            let yaml = pub_dir.join(&name).join("model.yaml");
            if !ft.is_dir() {
                continue;
            }
            // A hub model whose `base` is another hub model's name is an alias: that one
            // is read on its own.
            let Some(def) = read_hub_model(&yaml).filter(|d| !d.1.is_empty()) else {
                continue;
            };
            let targets: Vec<String> = def
                .1
                .iter()
                .map(|(u, r)| format!("lmstudio/{u}/{r}").to_lowercase())
                .collect();
            let mut found = false;
            for m in out.models.iter_mut() {
                if targets.contains(&m.id.to_lowercase()) {
                    found = true;
                    if m.note.is_none() {
                        m.note = Some(format!("LM Studio lists it as {}", def.0).into());
                    }
                }
            }
            if !found {
                let rel = format!("{}/{}", publisher.to_string_lossy(), name.to_string_lossy());
                let mut d = Draft::new(format!("lmstudio/hub/{rel}"), def.0.clone(), yaml);
                d.available = true;
                d.note = Some("an LM Studio hub model; none of its files are downloaded".into());
                out.push(d);
            }
        }
    }
}

/// A hub model's `model:` name and the `(user, repo)` of its concrete sources; `None`
/// when the file is absent or not such a definition. (A `base` naming another hub model
/// gives no sources here: that model is read on its own.)
fn read_hub_model(yaml: &Path) -> Option<(String, Vec<(String, String)>)> {
    use yaml_rust2::{Yaml, YamlLoader};
    let text = super::read_text(yaml, 1 << 20)?;
    let doc = YamlLoader::load_from_str(&text).ok()?.into_iter().next()?;
    let model = doc["model"].as_str()?.to_string();
    let mut sources = Vec::new();
    if let Yaml::Array(bases) = &doc["base"] {
        for base in bases {
            for src in base["sources"].as_vec().into_iter().flatten() {
                if src["type"].as_str() == Some("huggingface")
                    && let (Some(u), Some(r)) = (src["user"].as_str(), src["repo"].as_str())
                {
                    sources.push((u.to_string(), r.to_string()));
                }
            }
        }
    }
    Some((model, sources))
}

/// A weight file outside any `publisher/model` folder, as a model of its own.
fn loose_file(root: &Path, rel: &Path, cache: &mut MetadataCache) -> Option<Draft> {
    if !is_weight_name(rel) {
        return None;
    }
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    let name = rel.to_string_lossy().into_owned();
    let mut d = Draft::new(format!("lmstudio/{name}"), name, path.clone());
    d.count(
        path.clone(),
        meta.len(),
        meta.modified()
            .ok()
            .map(crate::library::clock::unix_seconds),
    );
    d.format = guess_format(rel).map(str::to_string);
    let weight = WeightFile {
        rel: rel.to_path_buf(),
        real: path,
        size: meta.len(),
    };
    d.describe_weights(&[&weight], cache);
    Some(d)
}

/// Fills `d` from the model folder; `false` when the folder holds nothing at all.
fn scan_model(dir: &Path, cache: &mut MetadataCache, d: &mut Draft) -> bool {
    let w = walk(dir);
    if w.files.is_empty() && w.links.is_empty() && w.errors.is_empty() {
        return false;
    }
    d.newest = w.newest;
    d.errors.extend(w.errors);
    for (rel, _) in &w.links {
        d.error(format!(
            "{} is a symbolic link; links are not followed",
            rel.display()
        ));
    }
    let mut weights = Vec::new();
    let mut largest: Option<(u64, &'static str)> = None;
    for (rel, abs, size, mtime) in &w.files {
        d.count(abs.clone(), *size, Some(*mtime));
        if is_partial_name(rel) {
            d.partial = true;
            continue;
        }
        if let Some(fmt) = guess_format(rel)
            && largest.is_none_or(|(s, _)| *size > s)
        {
            largest = Some((*size, fmt));
        }
        if is_weight_name(rel) {
            weights.push(WeightFile {
                rel: rel.clone(),
                real: abs.clone(),
                size: *size,
            });
        }
    }
    d.format = largest.map(|(_, f)| f.to_string());
    let set = main_weight_set(&weights);
    d.describe_weights(&set, cache);
    if weights.iter().any(|f| is_projector(&f.rel)) {
        push_unique(&mut d.capabilities, "vision");
    }
    true
}
