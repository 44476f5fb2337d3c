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

    /// Sets the modification time of `rel` (a file or a folder).
    pub fn set_mtime(&self, rel: &str, when: std::time::SystemTime) -> &Self {
        let file = fs::File::open(self.path(rel)).unwrap();
        file.set_modified(when).unwrap();
        self
    }

    pub fn registry(&self, json: &str) -> &Self {
        fs::write(self.path("model_registry.json"), json).unwrap();
        self
    }

    /// A service with a manual clock set well after every file's mtime, so nothing is racy
    /// unless a test makes it so.
    pub fn service(&self) -> (ModelLibraryService, ManualClock) {
        self.service_with_sources(Vec::new())
    }

    /// [`TestLib::service`] that also lists these stores.
    pub fn service_with_sources(
        &self,
        sources: Vec<model_library::library::sources::SourceConfig>,
    ) -> (ModelLibraryService, ManualClock) {
        let clock = ManualClock::new(SystemClock.now() + 100.0);
        let service = ModelLibraryService::new(
            self.library(),
            ServiceOptions {
                clock: Arc::new(clock.clone()),
                sources,
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

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A library of two registered models whose `w.bin` must hash to `sha256("good")`: `fine`
/// holds those bytes, `rotten` four others (same size, so sizes cannot tell).
pub fn fine_and_rotten() -> TestLib {
    let lib = TestLib::new();
    let sha = sha256_hex(b"good");
    let registry = serde_json::json!({"version": 1, "models": [
        {"id": "fine", "name": "Fine", "files": [{"path": "w.bin", "size": 4, "sha256": sha}]},
        {"id": "rotten", "name": "Rotten", "files": [{"path": "w.bin", "size": 4, "sha256": sha}]},
    ]});
    lib.registry(&registry.to_string());
    for (id, bytes) in [("fine", b"good"), ("rotten", b"goof")] {
        let path = lib.path(&format!("models/{id}/w.bin"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
    lib
}

/// A GGUF header (version 3, no tensors) of a llama model with `layers` layers, 32 heads
/// of 128 and `kv_heads` KV heads: its attention cache takes
/// `layers × kv_heads × 256 × 2` bytes per token.
pub fn llama_gguf(layers: u32, kv_heads: u32) -> Vec<u8> {
    fn key(out: &mut Vec<u8>, k: &str, ty: u32) {
        out.extend((k.len() as u64).to_le_bytes());
        out.extend(k.as_bytes());
        out.extend(ty.to_le_bytes());
    }
    let mut kv = Vec::new();
    key(&mut kv, "general.architecture", 8);
    kv.extend(5u64.to_le_bytes());
    kv.extend(b"llama");
    for (k, v) in [
        ("llama.block_count", layers),
        ("llama.embedding_length", 4096),
        ("llama.attention.head_count", 32),
        ("llama.attention.head_count_kv", kv_heads),
    ] {
        key(&mut kv, k, 4);
        kv.extend(v.to_le_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend(5u64.to_le_bytes());
    out.extend(kv);
    out
}
