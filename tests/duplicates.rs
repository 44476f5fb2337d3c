//! Duplicates: identical files across the library, a Hugging Face cache, Ollama and LM
//! Studio (with same-size decoys and already hard-linked paths), found by size then content
//! through the hash cache; replaced by hard links only when proven equal and quiet; a file
//! changed after hashing is hashed again and never linked; a kill during `--link` leaves
//! every copy readable with the same bytes.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use common::{TestLib, sha256_hex};
use model_library::library::ModelLibraryService;
use model_library::library::duplicates::{self, Linked, Report};
use model_library::library::sources::{SourceConfig, SourceKind};
use model_library::library::verify::{HashCache, VerifyProgress};

const MIB: usize = 1 << 20;

/// `len` bytes of a pattern that `seed` changes.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Writes `data` at `path`, dated two hours ago (quiet: links are allowed).
fn put(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
    age(path, Duration::from_secs(7200));
}

fn age(path: &Path, by: Duration) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

struct Fixture {
    lib: TestLib,
    weights: Vec<u8>,
}

impl Fixture {
    /// The same 2 MiB in the library, a Hugging Face blob, an Ollama blob and an LM Studio
    /// file; a decoy of the same size with other bytes; a small identical pair (below the
    /// size looked at); a second library path hard-linked to the first.
    fn new() -> Fixture {
        let lib = TestLib::new();
        let weights = bytes(2 * MIB, 0);
        let sha = sha256_hex(&weights);
        put(&lib.path("models/mine/w.gguf"), &weights);
        fs::hard_link(
            lib.path("models/mine/w.gguf"),
            lib.path("models/mine/again.gguf"),
        )
        .unwrap();
        put(&lib.path("models/decoy/w.gguf"), &bytes(2 * MIB, 7));
        put(&lib.path("models/mine/config.json"), b"{}");
        put(&lib.path("models/decoy/config.json"), b"{}");

        let repo = lib.path("stores/hub/models--org--twin");
        put(&repo.join("blobs").join(&sha), &weights);
        fs::create_dir_all(repo.join("snapshots/r1")).unwrap();
        symlink(
            format!("../../blobs/{sha}"),
            repo.join("snapshots/r1/w.gguf"),
        )
        .unwrap();
        put(&repo.join("refs/main"), b"r1");

        let ollama = lib.path("stores/ollama");
        let config = br#"{"model_format":"gguf","model_family":"llama"}"#;
        put(&ollama.join(format!("blobs/sha256-{sha}")), &weights);
        put(
            &ollama.join(format!("blobs/sha256-{}", sha256_hex(config))),
            config,
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": format!("sha256:{}", sha256_hex(config)), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.ollama.image.model",
                        "digest": format!("sha256:{sha}"), "size": weights.len()}],
        });
        put(
            &ollama.join("manifests/registry.ollama.ai/library/twin/latest"),
            manifest.to_string().as_bytes(),
        );
        put(
            &lib.path("stores/lmstudio/someone/twin-GGUF/twin.gguf"),
            &weights,
        );
        Fixture { lib, weights }
    }

    fn service(&self) -> ModelLibraryService {
        let sources = vec![
            SourceConfig::new(SourceKind::HuggingFace, self.lib.path("stores/hub")),
            SourceConfig::new(SourceKind::Ollama, self.lib.path("stores/ollama")),
            SourceConfig::new(SourceKind::LmStudio, self.lib.path("stores/lmstudio")),
        ];
        self.lib.service_with_sources(sources).0
    }

    fn find(&self, svc: &mut ModelLibraryService) -> Report {
        let candidates = svc
            .duplicate_candidates(duplicates::DEFAULT_MIN_SIZE)
            .unwrap();
        let mut cache = HashCache::load(svc.library());
        let report = duplicates::find(
            candidates,
            &mut cache,
            &VerifyProgress::default(),
            &AtomicBool::new(false),
            2,
        );
        cache.save(svc.library()).unwrap();
        report
    }

    fn copies(&self) -> Vec<PathBuf> {
        let sha = sha256_hex(&self.weights);
        vec![
            self.lib.path("models/mine/w.gguf"),
            self.lib
                .path(&format!("stores/hub/models--org--twin/blobs/{sha}")),
            self.lib.path(&format!("stores/ollama/blobs/sha256-{sha}")),
            self.lib.path("stores/lmstudio/someone/twin-GGUF/twin.gguf"),
        ]
    }
}

fn inode(p: &Path) -> (u64, u64) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.dev(), m.ino())
}

#[test]
fn identical_files_across_every_store_are_one_group_and_decoys_are_not() {
    let f = Fixture::new();
    let mut svc = f.service();
    let report = f.find(&mut svc);
    assert_eq!(report.groups.len(), 1, "{report:#?}");
    let g = &report.groups[0];
    assert_eq!(g.sha256, sha256_hex(&f.weights));
    let paths: Vec<&PathBuf> = g.copies.iter().map(|c| &c.path).collect();
    let mut expected = f.copies();
    expected[1..].sort();
    // The library's copy first (of its two hard-linked paths, the first by name).
    expected[0] = f.lib.path("models/mine/again.gguf");
    assert_eq!(paths, expected.iter().collect::<Vec<_>>());
    let sources: Vec<&str> = g.copies.iter().map(|c| c.source.as_str()).collect();
    assert_eq!(sources[0], "library");
    for store in ["huggingface", "ollama", "lmstudio"] {
        assert!(sources.contains(&store), "{sources:?}");
    }
    assert_eq!(g.copies[0].also_at, [f.lib.path("models/mine/w.gguf")]);
    assert_eq!(g.wasted, 3 * 2 * MIB as u64);
    assert_eq!(report.wasted, g.wasted);
    assert_eq!(report.linkable, g.wasted, "one file system here");
    // Six files share the size (4 copies, the decoy; the hard link is the same file).
    assert_eq!((report.hashed, report.from_hash_cache), (5, 0));
    let again = f.find(&mut svc);
    assert_eq!(
        (again.hashed, again.from_hash_cache),
        (5, 5),
        "served from the hash cache"
    );
}

#[test]
fn linking_makes_every_copy_one_file_with_the_same_bytes() {
    let f = Fixture::new();
    let mut svc = f.service();
    let report = f.find(&mut svc);
    let outcomes = duplicates::link(&report.groups[0], duplicates::now_ns());
    assert_eq!(outcomes.len(), 3);
    for (path, outcome) in &outcomes {
        assert_eq!(
            *outcome,
            Linked::Linked {
                freed: 2 * MIB as u64
            },
            "{}",
            path.display()
        );
    }
    let keeper = inode(&f.copies()[0]);
    for p in f.copies() {
        assert_eq!(inode(&p), keeper, "{}", p.display());
        assert_eq!(fs::read(&p).unwrap(), f.weights);
    }
    assert_eq!(
        fs::read(f.lib.path("models/decoy/w.gguf")).unwrap(),
        bytes(2 * MIB, 7)
    );
    // Nothing is left beside the files, and nothing more to link.
    let blobs = f.lib.path("stores/ollama/blobs");
    assert_eq!(fs::read_dir(&blobs).unwrap().count(), 2);
    assert!(f.find(&mut svc).groups.is_empty());
}

#[test]
fn recent_or_changed_files_are_not_linked() {
    let f = Fixture::new();
    let mut svc = f.service();
    let copies = f.copies();
    // The Ollama blob was just written (a pull may be running).
    age(&copies[2], Duration::ZERO);
    let report = f.find(&mut svc);
    // The LM Studio file changed after it was hashed (same size, other bytes).
    let mut changed = f.weights.clone();
    changed[0] ^= 1;
    fs::write(&copies[3], &changed).unwrap();
    age(&copies[3], Duration::from_secs(7200));
    let outcomes = duplicates::link(&report.groups[0], duplicates::now_ns());
    let by_path = |p: &Path| outcomes.iter().find(|(q, _)| q == p).unwrap().1.clone();
    assert_eq!(
        by_path(&copies[1]),
        Linked::Linked {
            freed: 2 * MIB as u64
        }
    );
    let reason = |l: Linked| match l {
        Linked::Skipped { reason } => reason,
        other => panic!("{other:?}"),
    };
    assert!(reason(by_path(&copies[2])).contains("last minute"));
    assert!(reason(by_path(&copies[3])).contains("changed since it was hashed"));
    assert_ne!(inode(&copies[3]), inode(&copies[0]));
    assert_eq!(fs::read(&copies[3]).unwrap(), changed);
    // Hashed again: no longer a copy.
    let again = f.find(&mut svc);
    let paths: Vec<&PathBuf> = again.groups[0].copies.iter().map(|c| &c.path).collect();
    assert!(!paths.contains(&&copies[3]), "{paths:?}");
}

fn run_cli(lib: &TestLib, args: &[&str], crash_at: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_model-library"));
    cmd.arg("--library")
        .arg(lib.root())
        .args(args)
        .env_remove("HOME");
    match crash_at {
        Some(point) => cmd.env("MODEL_LIBRARY_CRASH_AT", point),
        None => cmd.env_remove("MODEL_LIBRARY_CRASH_AT"),
    };
    cmd.output().unwrap()
}

#[test]
fn a_kill_while_linking_leaves_every_copy_whole_and_the_next_run_finishes() {
    let lib = TestLib::new();
    let weights = bytes(3 * MIB, 1);
    let paths: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|m| lib.path(&format!("models/{m}/w.bin")))
        .collect();
    for p in &paths {
        put(p, &weights);
    }
    // Asking needs a terminal: without one, --link wants --yes.
    let refused = run_cli(&lib, &["duplicates", "--link"], None);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    // Killed right after the first temp link was made, before it replaced the copy.
    let killed = run_cli(
        &lib,
        &["duplicates", "--link", "--yes"],
        Some("duplicates-linked"),
    );
    assert_eq!(
        killed.status.code(),
        None,
        "killed by the crash point: {killed:?}"
    );
    for p in &paths {
        assert_eq!(fs::read(p).unwrap(), weights, "{}", p.display());
    }
    let leftovers = || {
        paths
            .iter()
            .flat_map(|p| fs::read_dir(p.parent().unwrap()).unwrap())
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp-")
            })
            .count()
    };
    assert_eq!(leftovers(), 1, "the temp link of the killed run");
    let done = run_cli(&lib, &["duplicates", "--link", "--yes", "--json"], None);
    assert_eq!(done.status.code(), Some(0), "{done:?}");
    let value: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(value["groups"][0]["copies"].as_array().unwrap().len(), 3);
    assert_eq!(value["linked"].as_array().unwrap().len(), 2);
    assert_eq!(leftovers(), 0, "the killed run's temp link is gone");
    for p in &paths {
        assert_eq!(inode(p), inode(&paths[0]));
        assert_eq!(fs::read(p).unwrap(), weights);
    }
}
