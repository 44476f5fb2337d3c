//! [`MetadataCache`]: header metadata keyed by (path, size, mtime), so a rescan reads no
//! header twice. Owns only its map; reads files through the readers of [`super`].

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{HeaderKind, detect_header, read_gguf, read_ollama_config, read_safetensors};
use crate::library::model::ModelMetadata;

#[derive(Debug, Clone)]
struct Entry {
    size: u64,
    mtime: Option<SystemTime>,
    kind: Option<HeaderKind>,
    /// Boxed: most files of a large library have none (or a header that cannot be read),
    /// and inline it would cost every entry 104 bytes.
    metadata: Option<Box<ModelMetadata>>,
}

/// One cache entry, for persisting the cache ([`MetadataCache::entries`],
/// [`MetadataCache::insert`]). Serializable; a path that is not UTF-8 cannot be serialized
/// to JSON or postcard, so skip such entries when saving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedHeader {
    /// The file.
    pub path: PathBuf,
    /// Its size when read.
    pub size: u64,
    /// Its mtime when read.
    pub mtime: Option<SystemTime>,
    /// Which reader its first bytes called for (`None`: no reader knows it).
    pub kind: Option<HeaderKind>,
    /// What the header said (`None`: it could not be read).
    pub metadata: Option<ModelMetadata>,
}

/// Header metadata by file, valid while the file's size and mtime are unchanged. A failed
/// read is cached too (as `None`), so a broken header is not re-read on every scan.
///
/// Symlinks are never followed: a path that is a symlink (or not a regular file) gives
/// `None` without reading. Plain data: `Send` and `Sync`; share it behind a lock.
#[derive(Debug, Clone, Default)]
pub struct MetadataCache {
    entries: HashMap<PathBuf, Entry>,
    reads: u64,
}

impl MetadataCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The metadata of `path`: from the cache when its size and mtime match the cached ones,
    /// else read from its header with the reader [`detect_header`] picks (and cached). `None`
    /// when the file is absent, not a regular file, or has no readable header.
    pub fn get_or_read(&mut self, path: &Path) -> Option<ModelMetadata> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => m,
            _ => {
                self.entries.remove(path);
                return None;
            }
        };
        let size = meta.len();
        let mtime = meta.modified().ok();
        if let Some(e) = self.entries.get(path)
            && e.size == size
            && e.mtime == mtime
        {
            return e.metadata.as_deref().cloned();
        }
        self.reads += 1;
        let kind = detect_header(path);
        let metadata = match kind {
            Some(HeaderKind::Gguf) => read_gguf(path).ok(),
            Some(HeaderKind::Safetensors) => read_safetensors(path).ok(),
            Some(HeaderKind::OllamaConfig) => read_ollama_config(path).ok(),
            None => None,
        };
        self.entries.insert(
            path.to_path_buf(),
            Entry {
                size,
                mtime,
                kind,
                metadata: metadata.clone().map(Box::new),
            },
        );
        metadata
    }

    /// Which reader the cached entry of `path` used, without touching the file. `None` when
    /// `path` is not cached or no reader knew it. Call after [`MetadataCache::get_or_read`].
    pub fn header_kind(&self, path: &Path) -> Option<HeaderKind> {
        self.entries.get(path).and_then(|e| e.kind)
    }

    /// How many headers were actually read since the cache was made.
    pub fn reads(&self) -> u64 {
        self.reads
    }

    /// Number of cached files.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets everything (the read counter stays).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Keeps only the files for which `keep` is true (e.g. those a scan still saw).
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        self.entries.retain(|p, _| keep(p));
    }

    /// Every cached entry, for persisting the cache.
    pub fn entries(&self) -> impl Iterator<Item = CachedHeader> + '_ {
        self.entries.iter().map(|(p, e)| CachedHeader {
            path: p.clone(),
            size: e.size,
            mtime: e.mtime,
            kind: e.kind,
            metadata: e.metadata.as_deref().cloned(),
        })
    }

    /// Puts an entry back (e.g. loaded from a persisted cache). It is used only while the
    /// file's size and mtime still match.
    pub fn insert(&mut self, h: CachedHeader) {
        self.entries.insert(
            h.path,
            Entry {
                size: h.size,
                mtime: h.mtime,
                kind: h.kind,
                metadata: h.metadata.map(Box::new),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn cache_is_send_and_sync() {
        assert_send_sync::<MetadataCache>();
    }
}
