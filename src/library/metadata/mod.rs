//! Reading model metadata from file headers: GGUF ([`read_gguf`]), safetensors
//! ([`read_safetensors`]) and Ollama config blobs ([`read_ollama_config`]), dispatched by
//! [`read_header`] / [`read_metadata`], and cached by (path, size, mtime) in
//! [`MetadataCache`].
//!
//! Owns: the header parsers and their limits. Every reader reads only the header it needs,
//! through a buffered reader, checks every declared count and length against a fixed limit
//! *and* against the bytes left in the file before acting on it, never allocates more than a
//! bounded amount whatever the file says, and never panics on malformed input: a bad file is
//! a [`MetadataError`] naming the file and what is wrong.
//!
//! Must not touch: anything outside the file it is given. It never writes, never follows a
//! path found inside a file, and knows nothing of stores, the library or the service.

mod cache;
mod gguf;
mod ollama;
mod safetensors;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use cache::MetadataCache;
pub use gguf::{ftype_name, ggml_type_name, read_gguf};
pub use ollama::{parse_parameter_label, read_ollama_config};
pub use safetensors::read_safetensors;

use crate::library::model::ModelMetadata;

/// The longest string a header may hold (GGUF strings, keys).
pub const MAX_STRING_BYTES: u64 = 1 << 20;
/// The most key/value pairs a GGUF header may declare.
pub const MAX_GGUF_KV_COUNT: u64 = 1_000_000;
/// The most tensors a GGUF header may declare.
pub const MAX_GGUF_TENSOR_COUNT: u64 = 10_000_000;
/// The longest array a GGUF header may declare (the largest real vocabularies hold a few
/// hundred thousand tokens).
pub const MAX_GGUF_ARRAY_LEN: u64 = 1 << 24;
/// The most dimensions a GGUF tensor may have (ggml uses 4).
pub const MAX_GGUF_DIMS: u32 = 8;
/// The largest safetensors JSON header accepted.
pub const MAX_SAFETENSORS_HEADER: u64 = 100 << 20;
/// The largest JSON side file (Ollama config blob) accepted.
pub const MAX_JSON_FILE: u64 = 1 << 20;

/// Why a header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The file could not be opened, stat'ed or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not of the format asked for (wrong magic, not a JSON object…).
    #[error("{}: not a {format} file: {reason}", path.display())]
    WrongFormat {
        /// The file.
        path: PathBuf,
        /// The format that was expected.
        format: &'static str,
        /// What gave it away.
        reason: String,
    },
    /// The header ends before what it declares.
    #[error(
        "{}: {format} header is truncated: {needed} more bytes needed at offset {offset}, \
         the file has {file_len}",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: &'static str,
        /// Where the missing bytes start.
        offset: u64,
        /// How many bytes were needed there.
        needed: u64,
        /// The file's length.
        file_len: u64,
    },
    /// A version of the format this reader does not know.
    #[error("{}: {format} version {version} is not supported", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: &'static str,
        /// The version found.
        version: u32,
    },
    /// The header is refused: an absurd count or length, an overflow, a bad value.
    #[error("{}: {format} header refused: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its format.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No reader knows this file (neither its first bytes nor its extension).
    #[error("{}: no header reader for this file", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
}

impl MetadataError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            MetadataError::Io { path, .. }
            | MetadataError::WrongFormat { path, .. }
            | MetadataError::Truncated { path, .. }
            | MetadataError::UnsupportedVersion { path, .. }
            | MetadataError::Malformed { path, .. }
            | MetadataError::UnknownFormat { path } => path,
        }
    }
}

/// A parse failure before the path and format are attached.
#[derive(Debug)]
pub(crate) enum Fail {
    Io(io::Error),
    WrongFormat(String),
    Truncated { offset: u64, needed: u64 },
    Version(u32),
    Malformed(String),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

impl Fail {
    pub(crate) fn at(self, path: &Path, format: &'static str, file_len: u64) -> MetadataError {
        let path = path.to_path_buf();
        match self {
            Fail::Io(source) => MetadataError::Io { path, source },
            Fail::WrongFormat(reason) => MetadataError::WrongFormat {
                path,
                format,
                reason,
            },
            Fail::Truncated { offset, needed } => MetadataError::Truncated {
                path,
                format,
                offset,
                needed,
                file_len,
            },
            Fail::Version(version) => MetadataError::UnsupportedVersion {
                path,
                format,
                version,
            },
            Fail::Malformed(reason) => MetadataError::Malformed {
                path,
                format,
                reason,
            },
        }
    }
}

/// Opens a file for reading and returns it with its length.
pub(crate) fn open(path: &Path) -> Result<(fs::File, u64), MetadataError> {
    let io_err = |source| MetadataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    Ok((file, meta.len()))
}

/// Which header reader a file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum HeaderKind {
    /// A GGUF file (magic `GGUF`).
    Gguf,
    /// A safetensors file (u64 header length, then a JSON object).
    Safetensors,
    /// A JSON document such as an Ollama config blob.
    OllamaConfig,
}

/// Which reader a file needs, from its first 16 bytes, else its extension. Content-addressed
/// blobs (Hugging Face, Ollama) have no extension, so the bytes come first.
pub fn detect_header(path: &Path) -> Option<HeaderKind> {
    let mut head = [0u8; 16];
    let n = fs::File::open(path)
        .and_then(|f| {
            let mut n = 0;
            let mut f = f.take(16);
            loop {
                match f.read(&mut head[n..]) {
                    Ok(0) => break Ok(n),
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            }
        })
        .unwrap_or(0);
    let head = &head[..n];
    if head.starts_with(b"GGUF") {
        return Some(HeaderKind::Gguf);
    }
    if n >= 9 && head[8] == b'{' {
        let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if (2..=MAX_SAFETENSORS_HEADER).contains(&len) {
            return Some(HeaderKind::Safetensors);
        }
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("gguf") => return Some(HeaderKind::Gguf),
        Some("safetensors") => return Some(HeaderKind::Safetensors),
        _ => {}
    }
    if head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Some(HeaderKind::OllamaConfig);
    }
    None
}

/// Reads the metadata of any file a reader knows, choosing the reader with
/// [`detect_header`].
pub fn read_header(path: &Path) -> Result<ModelMetadata, MetadataError> {
    match detect_header(path) {
        Some(HeaderKind::Gguf) => read_gguf(path),
        Some(HeaderKind::Safetensors) => read_safetensors(path),
        Some(HeaderKind::OllamaConfig) => read_ollama_config(path),
        None => Err(MetadataError::UnknownFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// [`read_header`], with any error turned into `None`.
pub fn read_metadata(path: &Path) -> Option<ModelMetadata> {
    read_header(path).ok()
}

/// Combines the metadata of the files of one weight set (GGUF splits, safetensors shards):
/// parameter counts add up (checked; `None` on overflow or when any part has none), dtypes
/// are united and sorted, the other fields come from the first part that has them.
pub fn merge_parts<'a>(parts: impl IntoIterator<Item = &'a ModelMetadata>) -> ModelMetadata {
    let mut out = ModelMetadata::default();
    let mut params: Option<Option<u64>> = None;
    for m in parts {
        out.architecture = out.architecture.take().or_else(|| m.architecture.clone());
        out.quantization = out.quantization.take().or_else(|| m.quantization.clone());
        out.context_length = out.context_length.or(m.context_length);
        out.kv_bytes_per_token = out.kv_bytes_per_token.or(m.kv_bytes_per_token);
        params = Some(match (params, m.parameter_count) {
            (None, p) => p,
            (Some(Some(a)), Some(b)) => a.checked_add(b),
            _ => None,
        });
        for d in &m.dtypes {
            if !out.dtypes.contains(d) {
                out.dtypes.push(d.clone());
            }
        }
    }
    out.parameter_count = params.flatten();
    out.dtypes.sort();
    out
}

/// Fills the fields `primary` lacks from `fallback` (dtypes only when `primary` has none).
pub fn fill_missing(primary: &mut ModelMetadata, fallback: &ModelMetadata) {
    if primary.architecture.is_none() {
        primary.architecture = fallback.architecture.clone();
    }
    if primary.parameter_count.is_none() {
        primary.parameter_count = fallback.parameter_count;
    }
    if primary.quantization.is_none() {
        primary.quantization = fallback.quantization.clone();
    }
    if primary.context_length.is_none() {
        primary.context_length = fallback.context_length;
    }
    if primary.dtypes.is_empty() {
        primary.dtypes = fallback.dtypes.clone();
    }
    if primary.kv_bytes_per_token.is_none() {
        primary.kv_bytes_per_token = fallback.kv_bytes_per_token;
    }
}

/// Reads a whole small file, refusing one longer than `max` bytes without reading it.
pub(crate) fn read_small(
    path: &Path,
    max: u64,
    format: &'static str,
) -> Result<Vec<u8>, MetadataError> {
    let (file, len) = open(path)?;
    if len > max {
        return Err(MetadataError::Malformed {
            path: path.to_path_buf(),
            format,
            reason: format!("the file is {len} bytes, more than the {max} accepted"),
        });
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.take(max)
        .read_to_end(&mut buf)
        .map_err(|source| MetadataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(buf)
}
