//! [`MetadataCache`]: header metadata keyed by file (path, size, mtime), so a rescan reads
//! no header twice. Owns only its map; reads files through the readers of [`super`].

use std::collections::HashMap;
use std::fs;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::{HeaderKind, detect_header, read_gguf, read_ollama_config, read_safetensors};
use crate::library::model::ModelMetadata;

/// 32 bytes: with its key, a slot of the map is 48 (a library of 100 000 models has as many
/// entries).
#[derive(Debug, Clone)]
struct Entry {
    size: u64,
    /// The file's mtime ([`mtime_key`]), in two fields so that `kind` fits beside the
    /// nanoseconds.
    mtime_secs: i64,
    mtime_nanos: u32,
    /// Shared with the rows that show it (most files of a large library have none, or a
    /// header that cannot be read).
    metadata: Option<Arc<ModelMetadata>>,
    kind: Option<HeaderKind>,
}

/// A file's key in the cache: two independent 64-bit hashes of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key(u64, u64);

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0); // a hash already
    }
}

/// `t` exactly, as seconds since the epoch (floored) and nanoseconds past them; no time
/// at all is `(i64::MIN, u32::MAX)`, which no time gives (nanoseconds stay below 10^9).
fn mtime_key(t: Option<SystemTime>) -> (i64, u32) {
    let Some(t) = t else {
        return (i64::MIN, u32::MAX);
    };
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    }
}

/// Header metadata by file, valid while the file's size and mtime are unchanged. A failed
/// read is cached too (as `None`), so a broken header is not re-read on every scan.
///
/// Symlinks are never followed: a path that is a symlink (or not a regular file) gives
/// `None` without reading. Plain data: `Send` and `Sync`; share it behind a lock.
#[derive(Debug, Clone, Default)]
pub struct MetadataCache {
    /// Entries by their file's key ([`MetadataCache::key`]): no copy of the path is kept
    /// (a library of 100 000 models has as many main files). Already uniformly spread, the
    /// keys are not hashed again.
    entries: HashMap<Key, Entry, BuildHasherDefault<KeyHasher>>,
    /// Two independently (and randomly) keyed hashers: a path's key is its two 64-bit
    /// hashes, so two paths share a key with a chance of about 2^-128 per pair.
    hashers: (RandomState, RandomState),
    reads: u64,
}

impl MetadataCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key of `path` in this cache.
    fn key(&self, path: &Path) -> Key {
        let bytes = path.as_os_str().as_encoded_bytes();
        Key(
            self.hashers.0.hash_one(bytes),
            self.hashers.1.hash_one(bytes),
        )
    }

    /// The metadata of `path`: from the cache when its size and mtime match the cached ones,
    /// else read from its header with the reader [`detect_header`] picks (and cached). `None`
    /// when the file is absent, not a regular file, or has no readable header. The metadata
    /// is shared with the cache, not copied.
    pub fn get_or_read(&mut self, path: &Path) -> Option<Arc<ModelMetadata>> {
        let key = self.key(path);
        let meta = match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => m,
            _ => {
                self.entries.remove(&key);
                return None;
            }
        };
        let size = meta.len();
        let mtime = mtime_key(meta.modified().ok());
        if let Some(e) = self.entries.get(&key)
            && e.size == size
            && (e.mtime_secs, e.mtime_nanos) == mtime
        {
            return e.metadata.clone();
        }
        self.reads += 1;
        let kind = detect_header(path);
        let metadata = match kind {
            Some(HeaderKind::Gguf) => read_gguf(path).ok(),
            Some(HeaderKind::Safetensors) => read_safetensors(path).ok(),
            Some(HeaderKind::OllamaConfig) => read_ollama_config(path).ok(),
            None => None,
        }
        .map(Arc::new);
        self.entries.insert(
            key,
            Entry {
                size,
                mtime_secs: mtime.0,
                mtime_nanos: mtime.1,
                metadata: metadata.clone(),
                kind,
            },
        );
        metadata
    }

    /// Which reader the cached entry of `path` used, without touching the file. `None` when
    /// `path` is not cached or no reader knew it. Call after [`MetadataCache::get_or_read`].
    pub fn header_kind(&self, path: &Path) -> Option<HeaderKind> {
        self.entries.get(&self.key(path)).and_then(|e| e.kind)
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
}

/// The hasher of [`MetadataCache`]'s map: its keys are hashes already, so it keeps the
/// first half.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Key`s are hashed here; anything else is folded in byte by byte.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, half: u64) {
        self.0 = half;
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

    #[test]
    fn paths_have_distinct_keys_and_the_same_key_each_time() {
        let cache = MetadataCache::new();
        let a = cache.key(Path::new("/lib/models/a/model.gguf"));
        assert_eq!(a, cache.key(Path::new("/lib/models/a/model.gguf")));
        assert_ne!(a, cache.key(Path::new("/lib/models/b/model.gguf")));
        assert_ne!(a.0, a.1, "two hashers, not one twice");
        assert_eq!(size_of::<(Key, Entry)>(), 48);
    }

    #[test]
    fn times_are_kept_exactly() {
        use std::time::Duration;
        let epoch = SystemTime::UNIX_EPOCH;
        let after = |ns: u64| mtime_key(Some(epoch + Duration::from_nanos(ns)));
        assert_eq!(
            after(1_700_000_000_123_456_789),
            (1_700_000_000, 123_456_789)
        );
        assert_ne!(after(1), after(2));
        let before = |d: Duration| mtime_key(Some(epoch - d));
        assert_eq!(before(Duration::from_secs(1)), (-1, 0));
        assert_eq!(before(Duration::from_millis(1500)), (-2, 500_000_000));
        assert_ne!(mtime_key(None), before(Duration::from_secs(1)));
        assert_ne!(mtime_key(None), after(0));
        // Far times stay apart (nanoseconds in an i64 would run out in 2262).
        let far = Duration::from_secs(400 * 365 * 24 * 3600);
        assert_ne!(
            mtime_key(Some(epoch + far)),
            mtime_key(Some(epoch + far + Duration::from_secs(1)))
        );
    }
}
