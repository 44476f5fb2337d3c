//! A generator of realistic test libraries in the SPEC layout, for screenshots, benchmarks
//! and tests: N models of K files each, made of sparse files so a multi-terabyte library
//! costs no disk, with registered, unregistered, registered-only (available), partially
//! downloaded and size-mismatched models. Deterministic for a given spec. Writes only under
//! the root it is given.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use serde_json::{Value, json};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenSpec {
    /// Model folders and entries in all.
    pub models: usize,
    /// Files per model folder.
    pub files_per_model: usize,
    /// Size of each file's main weight file, bytes (sparse).
    pub file_size: u64,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            models: 1000,
            files_per_model: 3,
            file_size: 64 << 20,
        }
    }
}

/// What was generated, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenSummary {
    /// Registered and complete.
    pub downloaded: usize,
    /// Folders without a registry entry.
    pub unregistered: usize,
    /// Registry entries with nothing on disk.
    pub available: usize,
    /// Registered with some files missing and leftovers in `.downloads/`.
    pub partial: usize,
    /// Registered with a file of the wrong size.
    pub mismatched: usize,
}

const PROVIDERS: [&str; 5] = ["huggingface", "ollama", "lmstudio", "local", "openai"];
const FAMILIES: [&str; 8] = [
    "llama", "qwen", "phi", "mistral", "gemma", "whisper", "minilm", "bge",
];
const CAPS: [&[&str]; 5] = [
    &["text-generation", "chat"],
    &["embedding"],
    &["speech-recognition"],
    &["text-generation"],
    &["vision", "chat"],
];
const FORMATS: [&str; 4] = ["gguf", "safetensors", "onnx", "bin"];

fn sparse(path: &Path, len: u64) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    File::create(path)?.set_len(len)
}

/// Writes a library under `root` (created if missing). Model `i` is, by `i % 20`:
/// 0–13 downloaded, 14–15 unregistered, 16–17 available, 18 partial, 19 size mismatch.
pub fn generate_library(root: &Path, spec: &GenSpec) -> io::Result<GenSummary> {
    fs::create_dir_all(root.join("models"))?;
    let mut summary = GenSummary::default();
    let mut entries: Vec<Value> = Vec::new();
    for i in 0..spec.models {
        let family = FAMILIES[i % FAMILIES.len()];
        let format = FORMATS[i % FORMATS.len()];
        let id = format!("{family}-{:03}b-{i:06}", (i * 7) % 70 + 1);
        let kind = i % 20;
        let weight = |j: usize| format!("weights-{j:02}.{format}");
        let size_of = |j: usize| {
            if j == 0 {
                spec.file_size
            } else {
                4096 + j as u64
            }
        };
        let files: Vec<Value> = (0..spec.files_per_model)
            .map(|j| {
                json!({
                    "path": if j == 0 { weight(0) } else { format!("aux/part-{j:02}.json") },
                    "url": format!("https://example.invalid/{id}/{j}"),
                    "size": size_of(j),
                })
            })
            .collect();
        if !(16..18).contains(&kind) {
            let dir = root.join("models").join(&id);
            for j in 0..spec.files_per_model {
                if kind == 18 && j + 1 == spec.files_per_model && j > 0 {
                    continue; // partial: last file missing
                }
                let rel = if j == 0 {
                    weight(0)
                } else {
                    format!("aux/part-{j:02}.json")
                };
                let len = if kind == 19 && j == 0 {
                    size_of(j) / 2
                } else {
                    size_of(j)
                };
                sparse(&dir.join(rel), len)?;
            }
            if kind == 18 {
                sparse(&root.join(".downloads").join(&id).join("last.part"), 1024)?;
            }
        }
        match kind {
            14 | 15 => summary.unregistered += 1,
            16 | 17 => summary.available += 1,
            18 => summary.partial += 1,
            19 => summary.mismatched += 1,
            _ => summary.downloaded += 1,
        }
        if !(14..16).contains(&kind) {
            entries.push(json!({
                "id": id,
                "name": format!("{} {} #{i}", family.to_uppercase(), format),
                "provider": PROVIDERS[i % PROVIDERS.len()],
                "capabilities": CAPS[i % CAPS.len()],
                "format": format,
                "description": format!("Generated test model {i} of the {family} family."),
                "license": "apache-2.0",
                "files": files,
            }));
        }
    }
    let doc = json!({"version": 1, "models": entries});
    let mut text = serde_json::to_vec_pretty(&doc).map_err(io::Error::other)?;
    text.push(b'\n');
    crate::library::write_atomic(&root.join("model_registry.json"), &text)
        .map_err(io::Error::other)?;
    Ok(summary)
}

/// A `redis-server` of a test's or benchmark's own (the Debian package `redis-server`), on
/// 127.0.0.1 at a free port, keeping nothing on disk; stopped when dropped.
pub struct RedisServer {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
}

impl RedisServer {
    /// Starts one on a free port with `dir` as its working folder, and waits (bounded)
    /// until it answers.
    pub fn start(dir: &Path) -> io::Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        RedisServer::start_on(port, dir)
    }

    /// [`RedisServer::start`] on `port` (to start one again where another was stopped).
    pub fn start_on(port: u16, dir: &Path) -> io::Result<RedisServer> {
        use std::process::{Command, Stdio};
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("redis-server (Debian package redis-server; .ci/run installs it): {e}"),
                )
            })?;
        let server = RedisServer { child, port };
        let client = redis::Client::open(server.url()).map_err(io::Error::other)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let up = client
                .get_connection_with_timeout(std::time::Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if up.is_ok() {
                return Ok(server);
            }
            if std::time::Instant::now() >= deadline {
                return Err(io::Error::other("redis-server did not start in 10 s"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
