//! GPT4All's models folder: model files side by side, directly in the folder (GGUF, older
//! `.bin`), each one model. A download in progress is `incomplete-<file>` beside them
//! (`ModelList::incompleteDownloadPath` in `gpt4all-chat/src/modellist.cpp`:
//! `modelPath() + "incomplete-" + modelFile`), renamed to the file once it is complete.
//! The folder is the `modelPath` setting, by default the app's local data folder
//! (`defaultLocalModelsPath()` in `gpt4all-chat/src/mysettings.cpp`, Qt's
//! `AppLocalDataLocation`: `~/.local/share/nomic.ai/GPT4All/` on Linux).
//!
//! Status: `partial` for a model whose download is unfinished (only `incomplete-` there),
//! `error` for a link (never followed), else `downloaded`. Subfolders and other files
//! (chats, settings, `.rmodel` API entries) are not models. Never writes.

use std::path::Path;

use super::{Draft, SourceScan, WeightFile, list_dir};
use crate::library::error::LibraryError;
use crate::library::metadata::MetadataCache;
use crate::library::scan::guess_format;

/// The prefix of an unfinished download.
const INCOMPLETE: &str = "incomplete-";

/// Whether `name` is a model file GPT4All lists.
fn is_model_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".gguf") || lower.ends_with(".bin")
}

pub(super) fn scan(
    root: &Path,
    cache: &mut MetadataCache,
    out: &mut SourceScan,
) -> Result<(), LibraryError> {
    let entries = list_dir(root).map_err(|e| LibraryError::io(root, e))?;
    let names: std::collections::BTreeSet<String> = entries
        .iter()
        .map(|(n, _)| n.to_string_lossy().into_owned())
        .collect();
    for (name, ft) in &entries {
        let name = name.to_string_lossy().into_owned();
        let (file, partial) = match name.strip_prefix(INCOMPLETE) {
            // The finished file wins; its leftover is only counted with it.
            Some(f) if names.contains(f) => continue,
            Some(f) => (f.to_string(), true),
            None => (name.clone(), false),
        };
        if !is_model_file(&file) {
            continue;
        }
        let path = root.join(&name);
        let mut d = Draft::new(format!("gpt4all/{file}"), file.clone(), path.clone());
        d.empty_is_error = false;
        if ft.is_symlink() {
            d.error(format!(
                "{} is a symbolic link; links are not followed",
                path.display()
            ));
            out.push(d);
            continue;
        }
        if !ft.is_file() {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue; // vanished
        };
        let mtime = meta
            .modified()
            .ok()
            .map(crate::library::clock::unix_seconds);
        d.count(path.clone(), meta.len(), mtime);
        let leftover = root.join(format!("{INCOMPLETE}{file}"));
        if !partial && let Ok(m) = std::fs::symlink_metadata(&leftover) {
            d.count(leftover, m.len(), None);
        }
        d.partial = partial;
        d.format = guess_format(Path::new(&file)).map(str::to_string);
        if !partial {
            let weight = WeightFile {
                rel: file.clone().into(),
                real: path,
                size: meta.len(),
            };
            d.describe_weights(&[&weight], cache);
        }
        out.push(d);
    }
    Ok(())
}
