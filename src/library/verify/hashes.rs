//! [`HashCache`]: digests of files already read, keyed by what identifies one state of a
//! file — device, inode, size and modification time ([`FileKey`]) — so nothing is hashed
//! twice, across runs (`LIBRARY/.cache/hashes.bin`). A file that changed has another key,
//! so it is hashed again. Only a cache: a missing, damaged or foreign file is an empty
//! cache. Written through the library's write gate (never through a link).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

use crate::library::cache_file;
use crate::library::error::{LibraryError, Result};
use crate::library::layout::Library;

/// File name under `.cache/`.
pub const FILE_NAME: &str = "hashes.bin";
const MAGIC: &[u8; 8] = b"MLHASH\0\0";
/// Version of the format; bump on any change to the types saved.
const VERSION: u32 = 1;

/// One state of one file: its device, inode, size and modification time (ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileKey {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

impl FileKey {
    /// The key of the file `meta` describes.
    pub fn of(meta: &Metadata) -> FileKey {
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// What a file's bytes hash to (each digest once computed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// SHA-256 of the bytes.
    pub sha256: Option<[u8; 32]>,
    /// Git's blob SHA-1 (`sha1("blob <len>\0" + bytes)`), which names small files of a
    /// Hugging Face cache.
    pub git_sha1: Option<[u8; 20]>,
}

/// Digests by file state.
#[derive(Debug, Default)]
pub struct HashCache {
    entries: HashMap<FileKey, Digests>,
    /// Whether anything was added since it was loaded or saved.
    dirty: bool,
}

impl HashCache {
    /// The library's saved cache; empty when there is none or it cannot be used.
    pub fn load(library: &Library) -> HashCache {
        let entries = cache_file::read(library, FILE_NAME)
            .ok()
            .and_then(|bytes| {
                let payload = cache_file::unframed(&bytes, MAGIC, VERSION, "hash cache").ok()?;
                postcard::from_bytes::<Vec<(FileKey, Digests)>>(payload).ok()
            })
            .unwrap_or_default();
        HashCache {
            entries: entries.into_iter().collect(),
            dirty: false,
        }
    }

    /// Digests known for `key`.
    pub fn get(&self, key: &FileKey) -> Option<Digests> {
        self.entries.get(key).copied()
    }

    /// Records digests for `key` (merged with what was known).
    pub fn put(&mut self, key: FileKey, digests: Digests) {
        let entry = self.entries.entry(key).or_default();
        let merged = Digests {
            sha256: digests.sha256.or(entry.sha256),
            git_sha1: digests.git_sha1.or(entry.git_sha1),
        };
        if merged != *entry {
            *entry = merged;
            self.dirty = true;
        }
    }

    /// Number of files known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no file is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Saves the cache when something was added (atomically, never through a link).
    pub fn save(&mut self, library: &Library) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let entries: Vec<(&FileKey, &Digests)> = self.entries.iter().collect();
        let payload = postcard::to_stdvec(&entries)
            .map_err(|e| LibraryError::io(library.cache_dir(), std::io::Error::other(e)))?;
        let bytes = cache_file::framed(MAGIC, VERSION, &payload);
        library
            .open_writes()?
            .cache()?
            .write_atomic(FILE_NAME, &bytes)
            .map_err(|e| LibraryError::io(library.cache_dir(), e))?;
        self.dirty = false;
        Ok(())
    }
}
