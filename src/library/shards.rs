//! Models kept in several files: a split GGUF (`<base>-00001-of-00003.gguf`, the naming of
//! llama.cpp's `gguf-split`: `LLAMA_SPLIT_PATH_FORMAT` is `"%s-%05d-of-%05d.gguf"` in
//! `src/llama.cpp`) or sharded safetensors (`model-00001-of-00004.safetensors`, as
//! `transformers` saves them beside `model.safetensors.index.json`). The parts are one
//! model; a part that is not there makes it incomplete. Plain data: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `stem` without a shard suffix `-<index>-of-<total>` (digits), with the index and total;
/// `None` when it has none.
pub fn split_suffix(stem: &str) -> Option<(&str, u32, u32)> {
    let (before, total) = stem.rsplit_once("-of-")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(total) {
        return None;
    }
    let (base, index) = before.rsplit_once('-')?;
    if !digits(index) {
        return None;
    }
    Some((base, index.parse().ok()?, total.parse().ok()?))
}

/// The parts of split files met in a model's folder, by set (folder, base name, extension).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shards {
    sets: BTreeMap<(String, String), (u32, BTreeSet<u32>, usize)>,
}

impl Shards {
    /// Notes the file at `rel` (relative to the model folder) if it is a part of a set.
    pub fn note(&mut self, rel: &Path) {
        let (Some(stem), Some(ext)) = (rel.file_stem(), rel.extension()) else {
            return;
        };
        let stem = stem.to_string_lossy();
        let Some((base, index, total)) = split_suffix(&stem) else {
            return;
        };
        let dir = rel.parent().map(|p| p.to_string_lossy().into_owned());
        let key = (
            format!("{}/{base}", dir.unwrap_or_default()),
            ext.to_string_lossy().to_ascii_lowercase(),
        );
        // The digits' width as written (`gguf-split` pads to 5).
        let width = stem.rsplit_once("-of-").map_or(1, |(_, t)| t.len());
        let entry = self
            .sets
            .entry(key)
            .or_insert((total, BTreeSet::new(), width));
        entry.0 = entry.0.max(total);
        entry.1.insert(index);
    }

    /// The parts that are not there, by name ("x-00002-of-00003.gguf"), in order.
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        for ((base, ext), (total, seen, width)) in &self.sets {
            let base = base.rsplit('/').next().unwrap_or(base);
            for i in (1..=*total).filter(|i| !seen.contains(i)) {
                out.push(format!(
                    "{base}-{i:0w$}-of-{total:0w$}.{ext}",
                    w = (*width).max(1)
                ));
            }
        }
        out
    }

    /// What a listing says of the missing parts, when some are.
    pub fn note_text(&self) -> Option<String> {
        let missing = self.missing();
        (!missing.is_empty()).then(|| {
            format!(
                "a part of the model is missing: {} (the model is split into several files)",
                missing.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_parse_and_missing_parts_are_named() {
        assert_eq!(split_suffix("x-Q4-00002-of-00003"), Some(("x-Q4", 2, 3)));
        assert_eq!(split_suffix("a-of-b"), None);
        assert_eq!(split_suffix("model"), None);
        let mut s = Shards::default();
        for f in [
            "q/x-00001-of-00003.gguf",
            "q/x-00003-of-00003.gguf",
            "y.gguf",
        ] {
            s.note(Path::new(f));
        }
        s.note(Path::new("model-00001-of-00002.safetensors"));
        s.note(Path::new("model-00002-of-00002.safetensors"));
        assert_eq!(s.missing(), ["x-00002-of-00003.gguf"]);
        assert!(s.note_text().unwrap().contains("x-00002-of-00003.gguf"));
        assert_eq!(Shards::default().note_text(), None);
    }
}
