//! `--verify`: `model-library verify` against `sha256sum` on the same files (issue #15's
//! benchmark), whole processes, warm page cache: one large file, then many files (where
//! hashing on every core should win), then the same `verify` again, served from the hash
//! cache. Files hold pseudo-random bytes (no sparse files: those would hash zeros from
//! no disk at all), declared in the registry with their sha256.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{fmt, median};

/// Writes `len` pseudo-random bytes to `path` and returns their sha256 (hex).
fn random_file(path: &Path, len: u64, seed: u64) -> String {
    use sha2::{Digest, Sha256};
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n]).unwrap();
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    file.flush().unwrap();
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A library whose models are `files` files of `size` bytes, one per model, registered
/// with their sha256.
fn library(root: &Path, files: usize, size: u64) {
    let _ = fs::remove_dir_all(root);
    let mut models = Vec::new();
    for i in 0..files {
        let id = format!("m{i:04}");
        let sha = random_file(
            &root.join("models").join(&id).join("w.bin"),
            size,
            i as u64 + 1,
        );
        models.push(serde_json::json!({"id": id, "files": [{"path": "w.bin", "size": size, "sha256": sha}]}));
    }
    let doc = serde_json::json!({"version": 1, "models": models});
    fs::write(root.join("model_registry.json"), doc.to_string()).unwrap();
}

fn time(mut cmd: Command) -> Duration {
    let t = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    let d = t.elapsed();
    assert!(
        status.success() || status.code() == Some(1),
        "{cmd:?} failed"
    );
    d
}

fn sha256sum(root: &Path) -> Command {
    let mut files: Vec<_> = fs::read_dir(root.join("models"))
        .unwrap()
        .map(|e| e.unwrap().path().join("w.bin"))
        .collect();
    files.sort();
    let mut cmd = Command::new("sha256sum");
    cmd.args(files);
    cmd
}

/// `model-library --library ROOT <command>`, with the hash cache removed first unless
/// `cached`.
fn ours(bin: &Path, root: &Path, command: &str, cached: bool) -> Command {
    if !cached {
        let _ = fs::remove_file(root.join(".cache/hashes.bin"));
    }
    let mut cmd = Command::new(bin);
    cmd.arg("--library").arg(root).arg(command);
    cmd
}

/// Prints the table for both shapes.
pub fn report(bin: &Path, base: &Path, reps: usize) {
    println!("### verify and duplicates against sha256sum (warm page cache, {reps} runs each)\n");
    println!(
        "| files | sha256sum | verify | ratio (target ≤ 0.6 over many files) | verify again (hash cache) | duplicates | duplicates again (hash cache) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (files, size) in [(1usize, 1u64 << 30), (256, 4 << 20)] {
        let root = base.join(format!("verify-{files}"));
        library(&root, files, size);
        // Warm the page cache once.
        time(sha256sum(&root));
        let mut runs: [Vec<Duration>; 5] = Default::default();
        for _ in 0..reps {
            runs[0].push(time(sha256sum(&root)));
            runs[1].push(time(ours(bin, &root, "verify", false)));
            runs[2].push(time(ours(bin, &root, "verify", true)));
            runs[3].push(time(ours(bin, &root, "duplicates", false)));
            runs[4].push(time(ours(bin, &root, "duplicates", true)));
        }
        let [s, o, a, d, da] = runs.map(median);
        println!(
            "| {files} × {} MiB | {} | {} | {:.2} × | {} | {} | {} |",
            size >> 20,
            fmt(s),
            fmt(o),
            o.as_secs_f64() / s.as_secs_f64(),
            fmt(a),
            fmt(d),
            fmt(da)
        );
        let _ = fs::remove_dir_all(&root);
    }
    println!();
}
