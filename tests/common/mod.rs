//! Test helpers: a temporary library built file by file, and a service over it with a
//! manual clock.
#![allow(dead_code)]

pub mod http;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use model_library::library::{
    Clock, Library, ManualClock, ModelLibraryService, ServiceOptions, SystemClock,
};

/// The fields of ModelInfo that SPEC §4 requires in every JSON answer.
pub const MODEL_INFO_FIELDS: [&str; 15] = [
    "id",
    "name",
    "provider",
    "status",
    "capabilities",
    "format",
    "description",
    "license",
    "registered",
    "path",
    "size_bytes",
    "file_count",
    "expected_size_bytes",
    "modified",
    "error",
];

/// A library in a temporary folder, removed when dropped.
pub struct TestLib {
    pub dir: tempfile::TempDir,
}

impl TestLib {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(dir.path().join("models")).unwrap();
        TestLib { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn library(&self) -> Library {
        Library::new(self.root())
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Writes `bytes` bytes at `rel` (creating folders).
    pub fn file(&self, rel: &str, bytes: usize) -> &Self {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, vec![b'x'; bytes]).unwrap();
        self
    }

    pub fn registry(&self, json: &str) -> &Self {
        fs::write(self.path("model_registry.json"), json).unwrap();
        self
    }

    /// A service with a manual clock set well after every file's mtime, so nothing is racy
    /// unless a test makes it so.
    pub fn service(&self) -> (ModelLibraryService, ManualClock) {
        let clock = ManualClock::new(SystemClock.now() + 100.0);
        let service = ModelLibraryService::new(
            self.library(),
            ServiceOptions {
                clock: Arc::new(clock.clone()),
                ..ServiceOptions::default()
            },
        )
        .unwrap();
        (service, clock)
    }
}

/// A registry with one entry per `(id, [(path, size)])`.
pub fn registry_json(entries: &[(&str, &[(&str, u64)])]) -> String {
    let models: Vec<serde_json::Value> = entries
        .iter()
        .map(|(id, files)| {
            serde_json::json!({
                "id": id,
                "provider": "huggingface",
                "capabilities": ["chat"],
                "files": files.iter().map(|(p, s)| serde_json::json!({"path": p, "size": s})).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({"version": 1, "models": models}).to_string()
}
