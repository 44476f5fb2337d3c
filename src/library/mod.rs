//! The core: library layout, registry, scanning, the two cache levels and
//! [`ModelLibraryService`]. Plain synchronous Rust with `thiserror` errors. This module never
//! imports egui, eframe or poll-promise: the window, the CLI and the HTTP server are shells
//! around it.

pub mod cache;
pub mod clock;
pub mod crashpoint;
pub mod delete;
pub mod download;
pub mod error;
pub mod fs_safe;
pub mod import;
pub mod layout;
pub mod memory;
pub mod metadata;
pub mod model;
pub mod persist;
pub mod registry;
pub mod scan;
pub mod service;
pub mod sources;
pub mod walk;
pub mod watch;

pub use cache::{Counters, Listing, Staleness, View};
pub use clock::{Clock, ManualClock, SystemClock};
pub use delete::{DeleteMode, DeleteOutcome, DeletePlan};
pub use download::{
    DownloadBoard, DownloadEvent, DownloadOptions, DownloadProgress, DownloadState,
};
pub use error::{LibraryError, Result};
pub use import::{ImportMode, ImportOutcome, ImportRequest};
pub use layout::{Library, default_library_dir, validate_id};
pub use model::{ListKind, ListQuery, ModelInfo, ModelMetadata, ModelStatus};
pub use registry::{Registry, init_default, resolve_library};
pub use scan::ProgressReading;
pub use service::{CacheInfo, ModelLibraryService, RefreshInfo, ServiceOptions, ViewResult};
