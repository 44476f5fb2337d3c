//! A binary copy of the parsed registry as listings need it (a [`PackedRegistry`]), in
//! `LIBRARY/.cache/registry.bin`: a start, a fast listing or a full scan of a library whose
//! `model_registry.json` did not change reads it instead of parsing the JSON again (100 000
//! models are ~69 MB of JSON, ~0.35 s to parse). It is only a cache, never trusted beyond
//! what it can prove: it is used only while the registry's size, inode, device and
//! modification time are the ones it was made from, and it is made only from a registry
//! whose modification time was at least [`SETTLED`] old by the service's clock (a change in
//! the same clock tick could hide behind it). Missing, damaged, of another version or
//! another library: the JSON is parsed, and the copy written again — by the service's saver
//! thread (or the background scan's own thread), never while the service is held. Written
//! through the library's write gate (never through a link); a read-only library, or a
//! service that does not persist, just parses.

use std::fs;
use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

use crate::library::cache_file;
use crate::library::clock::unix_seconds;
use crate::library::error::Result;
use crate::library::layout::Library;
use crate::library::registry::{EntryProblem, Registry};
use crate::library::registry_pack::{PackedRegistry, Parts};

/// File name of the copy under `.cache/`.
pub const FILE_NAME: &str = "registry.bin";
const MAGIC: &[u8; 8] = b"MLREGCP\0";
/// Version of the format; bump on any change to [`Header`], the types in it or the packed
/// entries' encoding.
const VERSION: u32 = 3;
/// How old the registry's modification time must be before a copy is made of it.
pub const SETTLED: f64 = 2.0;

/// What identifies one state of `model_registry.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Stamp {
    mtime: f64,
    size: u64,
    inode: u64,
    device: u64,
}

impl Stamp {
    /// The registry's stamp now; `None` when there is no registry (nothing to copy).
    fn read(library: &Library) -> Option<Stamp> {
        let meta = fs::metadata(library.registry_path()).ok()?;
        Some(Stamp {
            mtime: unix_seconds(meta.modified().ok()?),
            size: meta.len(),
            inode: meta.ino(),
            device: meta.dev(),
        })
    }
}

/// What the copy says before the packed entries, which follow it as they are.
#[derive(Serialize, Deserialize)]
struct Header<'a> {
    library_root: String,
    stamp: Stamp,
    #[serde(borrow)]
    syms: Vec<&'a str>,
    problems: Vec<EntryProblem>,
}

/// A copy to make: the registry just parsed had settled and was still the one on disk.
#[derive(Debug, Clone, Copy)]
pub struct Pending(Stamp);

/// The registry as listings need it: from the copy when it matches the registry on disk,
/// else parsed from the JSON — then with the copy to make of it, if the registry had
/// settled at clock time `now` ([`write_pending`] makes it; the service has its saver
/// thread do that, so the service is not held).
pub fn load_for_listing(library: &Library, now: f64) -> Result<(PackedRegistry, Option<Pending>)> {
    let stamp = Stamp::read(library);
    if let Some(stamp) = stamp
        && let Some(registry) = read(library, stamp)
    {
        return Ok((registry, None));
    }
    let registry = PackedRegistry::pack(&Registry::load(library)?);
    // Only from a registry that has settled, and only if it is still the one parsed.
    let pending = stamp
        .filter(|s| now - s.mtime >= SETTLED && Stamp::read(library) == Some(*s))
        .map(Pending);
    Ok((registry, pending))
}

/// Makes the copy of `registry` that [`load_for_listing`] asked for. A cache: failing to
/// write loses nothing, so failures are ignored. A slim registry (no names and
/// descriptions) is never written: read back, it would pass for the whole registry.
pub fn write_pending(library: &Library, pending: Pending, registry: &PackedRegistry) {
    if registry.is_slim() {
        return;
    }
    let _ = write(library, pending.0, registry);
}

fn read(library: &Library, stamp: Stamp) -> Option<PackedRegistry> {
    let bytes = cache_file::read(library, FILE_NAME).ok()?;
    let payload = cache_file::unframed(&bytes, MAGIC, VERSION, "registry copy").ok()?;
    let (header, data): (Header<'_>, &[u8]) = postcard::take_from_bytes(payload).ok()?;
    if header.stamp != stamp || header.library_root != library.root().to_string_lossy() {
        return None;
    }
    let parts = Parts {
        syms: header.syms,
        data,
    };
    PackedRegistry::from_parts(parts, header.problems)
}

fn write(library: &Library, stamp: Stamp, registry: &PackedRegistry) -> Result<()> {
    let parts = registry.parts();
    let header = Header {
        library_root: library.root().to_string_lossy().into_owned(),
        stamp,
        syms: parts.syms,
        problems: registry.problems.clone(),
    };
    let Ok(mut payload) = postcard::to_stdvec(&header) else {
        return Ok(());
    };
    payload.extend_from_slice(parts.data);
    let bytes = cache_file::framed(MAGIC, VERSION, &payload);
    library
        .open_writes()?
        .cache()?
        .write_atomic(FILE_NAME, &bytes)
        .map_err(|e| crate::library::error::LibraryError::io(library.cache_dir(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slim registry (no names and descriptions) is never written as the copy: read back,
    /// it would pass for the whole registry and every full scan would lose the names.
    #[test]
    fn a_slim_registry_is_never_saved_as_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("model_registry.json"),
            r#"{"version": 1, "models": [{"id": "m", "name": "Alpha"}]}"#,
        )
        .unwrap();
        let library = Library::new(dir.path());
        // A clock a minute after the registry was written: it has settled.
        let now = Stamp::read(&library).unwrap().mtime + 60.0;
        let (registry, pending) = load_for_listing(&library, now).unwrap();
        let pending = pending.expect("a settled registry without a copy asks for one");
        let copy = library.cache_dir().join(FILE_NAME);
        write_pending(&library, pending, &registry.without_texts());
        assert!(!copy.exists(), "no copy made of a slim registry");
        write_pending(&library, pending, &registry);
        assert!(copy.exists());
        let (again, _) = load_for_listing(&library, now).unwrap();
        assert_eq!(again.entry(0).name.as_deref(), Some("Alpha"));
    }
}
