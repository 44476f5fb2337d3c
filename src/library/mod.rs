//! The core: library layout, registry, scanning, the two cache levels and
//! [`ModelLibraryService`]. Plain synchronous Rust with `thiserror` errors. This module never
//! imports egui, eframe or poll-promise: the window, the CLI and the HTTP server are shells
//! around it.

// Modules whose items are re-exported below are private: each item has one path,
// `model_library::library::Item`. The public modules are namespaces of their own (the
// stores, header metadata, the persisted listing, watching, allocator housekeeping, the
// crash points of the crash tests); nothing of theirs is re-exported here.
mod cache;
mod cache_file;
mod clock;
pub mod crashpoint;
mod delete;
mod download;
pub mod duplicates;
mod error;
pub mod fit;
mod fs_safe;
mod import;
mod layout;
pub mod listing_bytes;
pub mod memory;
pub mod metadata;
mod model;
pub mod persist;
pub mod reclaim;
mod registry;
mod registry_copy;
mod registry_pack;
mod scan;
mod service;
mod shards;
pub mod shared;
pub mod sources;
mod sym;
pub mod verify;
mod walk;
pub mod watch;

pub use cache::{
    Counters, DEFAULT_TTL_SECS, Listing, SnapshotHandle, Staleness, Stamps, TTL_MAX_SECS,
    TTL_MIN_SECS, View,
};
pub use clock::{Clock, ManualClock, SystemClock, unix_seconds};
pub use delete::{DeleteMode, DeleteOutcome, DeletePlan};
pub use download::{
    DownloadBoard, DownloadEvent, DownloadOptions, DownloadProgress, DownloadState, sha256_file,
};
pub use error::{LibraryError, Result};
pub use import::{ImportMode, ImportOutcome, ImportRequest};
pub use layout::{Library, default_library_dir, validate_id};
pub use model::{
    Figures, LIBRARY_SOURCE, ListKind, ListQuery, Location, ModelInfo, ModelMetadata, ModelStatus,
};
pub use registry::{
    Registry, init_default, resolve_library, update_registry, upsert_entry, write_atomic,
};
pub use registry_pack::PackedRegistry;
pub use scan::{MAX_LISTED_FILES, ProgressReading, ScanProgress, list_files};
pub use service::{
    CacheInfo, DuplicatesState, ModelLibraryService, RefreshInfo, ServiceCacheInfo, ServiceOptions,
    VerifyReport, VerifyState, ViewCacheInfo, ViewResult, WatchSetupHook,
};
pub use sym::{Sym, Syms};
