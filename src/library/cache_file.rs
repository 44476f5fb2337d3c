//! The framing of the app's own binary cache files under `LIBRARY/.cache/` (the persisted
//! listing, the registry copy): magic, format version, payload length and checksum, then
//! the payload; read without following links. Knows nothing of what the payload holds.

use std::io::{self, Read};

use crate::library::fs_safe::SafeDir;
use crate::library::layout::{CACHE_DIR, Library};

const HEADER_LEN: usize = 8 + 4 + 8 + 8;

/// `payload` framed as a cache file of kind `magic`, format `version`.
pub fn framed(magic: &[u8; 8], version: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&checksum(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// The payload of `bytes` framed by [`framed`] with `magic` and `version`, or why it is not
/// one: "not a {what} file", "format version N, this app reads M", "truncated", "checksum
/// mismatch".
pub fn unframed<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    version: u32,
    what: &str,
) -> Result<&'a [u8], String> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != magic {
        return Err(format!("not a {what} file"));
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != version {
        return Err(format!("format version {found}, this app reads {version}"));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let sum = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err("truncated".into());
    }
    if checksum(payload) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(payload)
}

/// The bytes of `.cache/<name>`, reached without following a link.
pub fn read(library: &Library, name: &str) -> io::Result<Vec<u8>> {
    let mut f = SafeDir::open_root(library.root())?
        .open_dir(CACHE_DIR)?
        .open_read(name)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// 64-bit FNV-1a over 8-byte words (fast enough for tens of megabytes at startup).
fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h ^= u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    for &b in chunks.remainder() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
