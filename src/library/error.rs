//! The core's error type. Every fallible core operation returns [`LibraryError`]; each variant
//! names the file or value at fault so a shell (CLI, window, HTTP) can show one clear line.
//! Owns no I/O.

use std::io;
use std::path::PathBuf;

/// What went wrong in the library core.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// A TTL outside the allowed range was asked for; nothing changed.
    #[error("cache TTL {secs} s is outside the allowed range {min}..={max} s")]
    InvalidTtl {
        /// The TTL asked for.
        secs: i64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },

    /// A file-system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path the operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The library folder is missing or not a folder.
    #[error("library folder {}: {reason}", path.display())]
    LibraryUnreachable {
        /// The library root.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },

    /// `model_registry.json` is not valid JSON.
    #[error("{}: invalid JSON at line {line}, column {column}: {message}", path.display())]
    RegistrySyntax {
        /// The registry file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's message.
        message: String,
    },

    /// `model_registry.json` is JSON but not a version 1 registry.
    #[error("{}: {reason}", path.display())]
    RegistryShape {
        /// The registry file.
        path: PathBuf,
        /// What is wrong with its shape.
        reason: String,
    },

    /// A model id that is not one safe path component.
    #[error("invalid model id {id:?}: {reason}")]
    InvalidId {
        /// The id as given.
        id: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A filter value that names no known status.
    #[error(
        "unknown status {0:?}; expected one of downloaded, downloading, partial, available, error"
    )]
    UnknownStatus(String),

    /// A delete found neither `models/<id>` nor `.downloads/<id>`.
    #[error("model {id:?} has nothing on disk to delete")]
    NothingToDelete {
        /// The id asked for.
        id: String,
    },

    /// No registry entry has this id.
    #[error("no model {0:?} in the registry")]
    UnknownModel(String),

    /// Something of the kind is already going (one at a time).
    #[error("{0}")]
    Busy(String),

    /// A setting or argument that cannot be used (a Redis URL, a library id file).
    #[error("{what}")]
    InvalidInput {
        /// What is wrong, naming it.
        what: String,
    },

    /// No model of the library or its stores has this id.
    #[error("no model {0:?} in the library or its stores")]
    NotListed(String),

    /// A download cannot start, or there is none to cancel.
    #[error("cannot download {id:?}: {reason}")]
    CannotDownload {
        /// The model id.
        id: String,
        /// Why.
        reason: String,
    },

    /// An import cannot be done as asked.
    #[error("cannot import: {reason}")]
    ImportRefused {
        /// Why.
        reason: String,
    },

    /// A destructive command was not confirmed.
    #[error(
        "delete of {id:?} not confirmed; nothing was deleted (pass --yes to skip the question)"
    )]
    NotConfirmed {
        /// The model id.
        id: String,
    },

    /// One of the library's own folders (or its registry) is a symbolic link, so nothing
    /// is written to the library: listing still works.
    #[error(
        "{} is a symbolic link{}: writes to this library are off so that nothing outside it \
         is changed (listing still works). Point --library at the folder that really holds \
         the library, or replace the link with the real folder",
        link.display(),
        target.as_ref().map(|t| format!(" to {}", t.display())).unwrap_or_default()
    )]
    WritesOff {
        /// The link.
        link: PathBuf,
        /// Where it points, when it could be read.
        target: Option<PathBuf>,
    },

    /// Waiting for the registry lock took too long (another process holds it).
    #[error("{}: timed out waiting for the registry lock", path.display())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
    },
}

impl LibraryError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        LibraryError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for the core.
pub type Result<T, E = LibraryError> = std::result::Result<T, E>;
