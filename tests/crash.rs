//! Crash tests (issue #12): the real binary, killed with SIGKILL — at every named crash point
//! (`MODEL_LIBRARY_CRASH_AT`) and at random instants — while it downloads, imports (copy,
//! move on the same file system, move across file systems; folders and single files),
//! writes the registry from several processes at once, and deletes.
//!
//! After every kill the library is checked as a user would find it:
//! - the registry parses and keeps every entry and every unknown field it was seeded with;
//! - no model is `downloaded` (per `list --json`) unless its files are complete and verified
//!   (compared byte for byte with what the server serves or what was imported);
//! - moved data exists whole somewhere: at the source or in `models/<id>/` (or both);
//! - nothing outside the library changed (a sentinel tree, the fake home and the source's
//!   neighbours are snapshotted before: names, kinds, sizes, sha256, link targets);
//! - the next run (`list --json`, then the interrupted command again) resumes or cleans up:
//!   no journal or staging folder is left under `.cache/imports/`, an interrupted download
//!   resumes (with a `Range` request from where it stopped) and completes, an import is
//!   either completed or discarded and can then be redone.
//!
//! Every run has `--library <temp dir>` and a cleared environment with `HOME` and `XDG_*`
//! in a temp dir, so nothing touches the real home; deletes are `--permanent`.
//!
//! Random kills use a seeded xorshift generator; each test prints its seed (shown when it
//! fails). `CRASH_SEED=S` replays a seed, `CRASH_CASES=N` (default 2) sets the cases per
//! random-kill test, e.g. `CRASH_CASES=50 cargo test --test crash -- --nocapture` for a
//! deeper run (each random test prints its figures).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use common::http::{Behavior, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_model-library");
/// The variable naming the crash point (see `src/library/crashpoint.rs`).
const CRASH_AT: &str = "MODEL_LIBRARY_CRASH_AT";
/// The longest one run of the binary may take before the test fails instead of hanging.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// Registry id of an import under test.
const IMPORT_ID: &str = "imported";

// ---------------------------------------------------------------------------------------
// Seeds and cases

/// xorshift64*: small, seedable, good enough to pick instants and fates.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that small seeds (0, 1, 2…) start well apart.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)).max(1))
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The generator of one random test: `CRASH_SEED` when set, else a fresh seed, printed
/// either way (the harness shows it when the test fails).
fn test_rng(test: &str) -> Rng {
    let seed = match std::env::var("CRASH_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .expect("CRASH_SEED must be an unsigned integer"),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64;
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    };
    eprintln!("{test}: seed {seed} (replay: CRASH_SEED={seed} cargo test --test crash {test})");
    Rng::new(seed)
}

/// Cases per random-kill test: `CRASH_CASES`, default 2 (each case has 1–3 kills).
fn cases() -> usize {
    std::env::var("CRASH_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(2)
}

/// What a random test did, printed at its end.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    /// Runs that were killed by the harness (or killed themselves at a crash point).
    kills: usize,
    /// Runs whose kill came after they had already ended.
    ended_first: usize,
    /// Where the kills landed (the state found on disk right after each), and how often.
    landed: BTreeMap<&'static str, usize>,
    /// Registry temp files (`.model_registry.json.tmp-*`) found in the library after kills.
    registry_temps: BTreeSet<String>,
}

impl Tally {
    /// Counts a run; `stage` is what the disk showed right after it.
    fn count(&mut self, ran: &Ran, stage: &'static str, world: &World) {
        if let Ok(rd) = fs::read_dir(world.lib()) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(".model_registry.json.tmp-") {
                    self.registry_temps
                        .insert(format!("{}/{name}", world.root().display()));
                }
            }
        }
        if ran.killed() {
            self.kills += 1;
            *self.landed.entry(stage).or_default() += 1;
        } else {
            self.ended_first += 1;
        }
    }

    fn report(&self, test: &str, started: Instant, failed: usize) {
        eprintln!(
            "{test}: {} cases ({failed} failed), {} kills ({}), {} runs ended before their \
             kill, {:.1} s",
            self.cases,
            self.kills,
            self.landed
                .iter()
                .map(|(stage, n)| format!("{n} {stage}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.ended_first,
            started.elapsed().as_secs_f64()
        );
        if !self.registry_temps.is_empty() {
            eprintln!(
                "{test}: registry temp files left by kills (never cleaned up): {}",
                self.registry_temps.len()
            );
        }
    }
}

/// Runs `cases()` cases of a random test, each with a generator of its own drawn from the
/// test's seed; a failing case is reported and the others still run, so that a deep run
/// gives all its figures. The test fails at the end if any case did.
fn random_cases(test: &str, mut case: impl FnMut(usize, &mut Rng, &mut Tally)) {
    let started = Instant::now();
    let mut rng = test_rng(test);
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for i in 0..cases() {
        let mut case_rng = Rng::new(rng.next_u64());
        tally.cases += 1;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            case(i, &mut case_rng, &mut tally)
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            let short: String = message.chars().take(700).collect();
            failures.push(format!("case {i}: {short}"));
        }
    }
    tally.report(test, started, failures.len());
    assert!(
        failures.is_empty(),
        "{test}: {} of {} cases failed (the seed is printed above):\n{}",
        failures.len(),
        tally.cases,
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Data

/// `len` pseudo-random bytes from `seed` (random, so that a wrong offset or a mixed-up file
/// cannot compare equal by accident).
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A GGUF header followed by random bytes.
fn gguf_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = b"GGUF\x03\x00\x00\x00".to_vec();
    v.extend_from_slice(&random_bytes(seed, len - v.len()));
    v
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Snapshots of what must not change

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File { len: u64, sha256: String },
    Link(PathBuf),
    Other,
}

type Snapshot = BTreeMap<PathBuf, Node>;

/// Everything below `root` (not following links), except the paths in `skip`.
fn snapshot(root: &Path, skip: &[PathBuf]) -> Snapshot {
    fn walk(base: &Path, dir: &Path, skip: &[PathBuf], out: &mut Snapshot) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for entry in rd.flatten() {
            let path = entry.path();
            if skip.contains(&path) {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let rel = path.strip_prefix(base).expect("below base").to_path_buf();
            let ft = meta.file_type();
            let node = if ft.is_symlink() {
                Node::Link(fs::read_link(&path).unwrap_or_default())
            } else if ft.is_dir() {
                Node::Dir
            } else if ft.is_file() {
                Node::File {
                    len: meta.len(),
                    sha256: sha256_hex(&fs::read(&path).unwrap_or_default()),
                }
            } else {
                Node::Other
            };
            out.insert(rel, node);
            if ft.is_dir() {
                walk(base, &path, skip, out);
            }
        }
    }
    let mut out = Snapshot::new();
    walk(root, root, skip, &mut out);
    out
}

fn snapshot_diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut diff = Vec::new();
    for (path, node) in before {
        match after.get(path) {
            None => diff.push(format!("removed: {}", path.display())),
            Some(now) if now != node => {
                diff.push(format!("changed: {} ({node:?} -> {now:?})", path.display()))
            }
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        diff.push(format!("added: {}", path.display()));
    }
    diff
}

/// Trees outside the library that no run may change.
struct Untouched {
    trees: Vec<(PathBuf, Vec<PathBuf>, Snapshot)>,
}

impl Untouched {
    fn new() -> Untouched {
        Untouched { trees: Vec::new() }
    }

    /// Watches `root`, except `skip`.
    fn watch(mut self, root: &Path, skip: &[PathBuf]) -> Untouched {
        let before = snapshot(root, skip);
        assert!(
            !before.is_empty(),
            "{} holds nothing to watch",
            root.display()
        );
        self.trees.push((root.to_path_buf(), skip.to_vec(), before));
        self
    }

    fn check(&self, when: &str) {
        for (root, skip, before) in &self.trees {
            let diff = snapshot_diff(before, &snapshot(root, skip));
            assert!(
                diff.is_empty(),
                "{when}: something outside the library changed below {}:\n  {}",
                root.display(),
                diff.join("\n  ")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// A world: the library, a fake home and a sentinel tree, all in one temp dir

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let world = World { dir };
        fs::create_dir_all(world.lib().join("models")).unwrap();
        fs::create_dir_all(world.home()).unwrap();
        fs::write(
            world.home().join(".profile"),
            b"# the fake home of a crash test\n",
        )
        .unwrap();
        fs::create_dir_all(world.src_dir()).unwrap();
        fs::write(
            world.src_dir().join("neighbour.txt"),
            b"beside the sources\n",
        )
        .unwrap();
        let out = world.outside();
        fs::create_dir_all(out.join("data/nested")).unwrap();
        fs::create_dir_all(out.join("empty")).unwrap();
        fs::write(out.join("notes.txt"), b"nothing here may change\n").unwrap();
        fs::write(out.join("data/a.bin"), random_bytes(11, 70_000)).unwrap();
        fs::write(out.join("data/nested/b.gguf"), gguf_bytes(12, 9_000)).unwrap();
        std::os::unix::fs::symlink("data/a.bin", out.join("link-to-a")).unwrap();
        world
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn lib(&self) -> PathBuf {
        self.root().join("lib")
    }

    fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    /// Sources on the library's file system.
    fn src_dir(&self) -> PathBuf {
        self.root().join("src")
    }

    /// The sentinel tree.
    fn outside(&self) -> PathBuf {
        self.root().join("outside")
    }

    fn registry_path(&self) -> PathBuf {
        self.lib().join("model_registry.json")
    }

    /// The binary on this library, with an environment of our own: no proxies, no real
    /// home, no crash point unless a test sets one.
    fn cmd<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let home = self.home();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_RUNTIME_DIR", home.join("runtime"))
            .arg("--library")
            .arg(self.lib())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Everything in the world outside the library (and outside `skip`) must stay as it is.
    fn untouched(&self, skip: &[PathBuf]) -> Untouched {
        let mut all = vec![self.lib()];
        all.extend_from_slice(skip);
        Untouched::new().watch(self.root(), &all)
    }

    /// `list --json`, which must succeed; also the next start that recovers imports.
    fn list(&self, when: &str) -> Vec<Value> {
        let ran = run(&mut self.cmd(&["list", "--json"]));
        assert!(ran.ok(), "{when}: list --json failed: {}", ran.describe());
        match serde_json::from_str::<Value>(&ran.stdout) {
            Ok(Value::Array(models)) => models,
            other => panic!(
                "{when}: list --json printed no array: {other:?}\n{}",
                ran.stdout
            ),
        }
    }

    /// Names left under `.cache/imports/` (journals, staging folders, temp journals).
    fn import_leftovers(&self) -> Vec<String> {
        match fs::read_dir(self.lib().join(".cache/imports")) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn row<'a>(models: &'a [Value], id: &str) -> Option<&'a Value> {
    models.iter().find(|m| m["id"] == id)
}

// ---------------------------------------------------------------------------------------
// Running and killing the binary

/// A run that ended: its status and what it printed.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn ok(&self) -> bool {
        self.status.success()
    }

    /// Ended by SIGKILL (ours, or its own at a crash point).
    fn killed(&self) -> bool {
        self.status.signal() == Some(9)
    }

    fn describe(&self) -> String {
        format!(
            "{}; stdout: {}; stderr: {}",
            self.status,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// A running binary whose output is being collected.
struct Running {
    child: Child,
    out: JoinHandle<String>,
    err: JoinHandle<String>,
}

fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Running {
    fn start(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start model-library");
        let out = collect(child.stdout.take().expect("piped"));
        let err = collect(child.stderr.take().expect("piped"));
        Running { child, out, err }
    }

    fn has_ended(&mut self) -> bool {
        self.child.try_wait().expect("poll the child").is_some()
    }

    /// SIGKILL (`Child::kill`); harmless when it has already ended.
    fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for the end, bounded by [`RUN_LIMIT`].
    fn finish(mut self) -> Ran {
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                break status;
            }
            if Instant::now() > deadline {
                self.kill();
                let _ = self.child.wait();
                panic!("model-library did not end within {RUN_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        Ran {
            status,
            stdout: self.out.join().unwrap_or_default(),
            stderr: self.err.join().unwrap_or_default(),
        }
    }
}

/// Runs to the end.
fn run(cmd: &mut Command) -> Ran {
    Running::start(cmd).finish()
}

/// When the harness kills a run.
enum Trigger<'a> {
    /// After this long (the random stimulus; the run may have ended by then).
    After(Duration),
    /// As soon as this holds (polled), or never if the run ends first.
    When(&'a dyn Fn() -> bool),
}

/// Runs and kills with SIGKILL at `trigger`.
fn run_killed(cmd: &mut Command, trigger: Trigger) -> Ran {
    let mut running = Running::start(cmd);
    match trigger {
        Trigger::After(delay) => std::thread::sleep(delay),
        Trigger::When(condition) => {
            let deadline = Instant::now() + RUN_LIMIT;
            while !running.has_ended() && !condition() {
                assert!(Instant::now() < deadline, "the kill condition never held");
                std::thread::sleep(Duration::from_micros(300));
            }
        }
    }
    running.kill();
    running.finish()
}

/// Runs with the crash point `point` set; the process must have killed itself there.
fn crash_at(cmd: &mut Command, point: &str) -> Ran {
    let ran = run(cmd.env(CRASH_AT, point));
    assert!(
        ran.killed(),
        "the run was to kill itself at {point}, but it ended otherwise: {}",
        ran.describe()
    );
    ran
}

/// A random instant in a run that takes about `typical`: uniform over [0, 1.15 × typical],
/// so that most kills land mid-run and a few after its end.
fn random_delay(rng: &mut Rng, typical: Duration) -> Duration {
    typical.mul_f64(1.15 * rng.unit())
}

/// How long `f` takes.
fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

// ---------------------------------------------------------------------------------------
// The registry

/// Writes a registry with unknown fields at the top level, in entries and in files, plus
/// `extra` entries; returns what was written.
fn seed_registry(world: &World, extra: Vec<Value>) -> Value {
    let mut models = vec![
        json!({
            "id": "keep-me",
            "name": "Keep Me",
            "provider": "huggingface",
            "capabilities": ["chat"],
            "x-rating": 4.5,
            "x-tags": ["a", "b"],
            "files": [{"path": "w.bin", "size": 10, "x-mirror": "https://example.invalid/w"}]
        }),
        json!({"id": "remote-only", "x-nested": {"deep": {"deeper": [null, true, 3]}}}),
    ];
    models.extend(extra);
    let doc = json!({
        "version": 1,
        "x-generator": {"name": "crash-test", "v": [1, 2, 3]},
        "models": models,
        "x-trailer": "unknown fields must survive",
    });
    fs::write(
        world.registry_path(),
        serde_json::to_vec_pretty(&doc).unwrap(),
    )
    .unwrap();
    doc
}

/// The registry parses, has version 1, unique ids, every seeded top-level field and every
/// seeded entry exactly as seeded. Returns it.
fn check_registry(world: &World, seed: &Value, when: &str) -> Value {
    let bytes = fs::read(world.registry_path())
        .unwrap_or_else(|e| panic!("{when}: the registry is gone: {e}"));
    let doc: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{when}: the registry is not valid JSON ({e}):\n{}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(doc["version"], 1, "{when}: registry version");
    for (key, value) in seed.as_object().expect("an object") {
        if key != "models" {
            assert_eq!(
                &doc[key], value,
                "{when}: top-level field {key:?} of the registry"
            );
        }
    }
    let models = doc["models"]
        .as_array()
        .unwrap_or_else(|| panic!("{when}: registry without a models array: {doc}"));
    let mut ids = BTreeSet::new();
    for m in models {
        let id = m["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{when}: entry without id: {m}"));
        assert!(ids.insert(id), "{when}: id {id:?} twice in the registry");
    }
    for seeded in seed["models"].as_array().expect("seeded models") {
        let id = &seeded["id"];
        let now = models.iter().find(|m| &m["id"] == id);
        assert_eq!(
            now,
            Some(seeded),
            "{when}: seeded entry {id} of the registry"
        );
    }
    doc
}

fn registry_entry(doc: &Value, id: &str) -> Option<Value> {
    doc["models"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .cloned()
}

// ---------------------------------------------------------------------------------------
// Imports

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Copy,
    MoveSameFs,
    MoveCrossFs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Folder,
    File,
}

const ALL_VARIANTS: [(Mode, Shape); 6] = [
    (Mode::Copy, Shape::Folder),
    (Mode::Copy, Shape::File),
    (Mode::MoveSameFs, Shape::Folder),
    (Mode::MoveSameFs, Shape::File),
    (Mode::MoveCrossFs, Shape::Folder),
    (Mode::MoveCrossFs, Shape::File),
];

const MOVE_VARIANTS: [(Mode, Shape); 4] = [
    (Mode::MoveSameFs, Shape::Folder),
    (Mode::MoveSameFs, Shape::File),
    (Mode::MoveCrossFs, Shape::Folder),
    (Mode::MoveCrossFs, Shape::File),
];

/// A folder on another file system than `world`'s when one is available: `/dev/shm` (if
/// its device differs); else a second temp dir, and the test says so (once).
fn other_fs_dir(world: &World) -> tempfile::TempDir {
    static SAID: std::sync::Once = std::sync::Once::new();
    let here = fs::metadata(world.root()).unwrap().dev();
    if let Ok(shm) = tempfile::Builder::new()
        .prefix("model-library-crash-")
        .tempdir_in("/dev/shm")
        && fs::metadata(shm.path()).unwrap().dev() != here
    {
        return shm;
    }
    SAID.call_once(|| {
        eprintln!(
            "note: the cross-device path was not available: /dev/shm is absent or on the \
             temp dir's device, so the cross-device moves run between two temp dirs on one \
             file system and exercise the hard-link path instead of the copy"
        )
    });
    tempfile::tempdir().unwrap()
}

/// One import under test: its source (made here) and what it must become.
struct Import {
    id: String,
    mode: Mode,
    shape: Shape,
    source: PathBuf,
    /// Files, by path below the model folder, with their bytes.
    files: BTreeMap<String, Vec<u8>>,
    /// A symbolic link in a folder source, pointing outside: never followed, never moved.
    link: Option<PathBuf>,
    /// Whether source and library are on different devices.
    cross_device: bool,
    /// The folder of a cross-device source (removed on drop).
    other_fs: Option<tempfile::TempDir>,
}

impl Import {
    fn new(world: &World, id: &str, mode: Mode, shape: Shape, seed: u64) -> Import {
        let (other_fs, parent) = if mode == Mode::MoveCrossFs {
            let dir = other_fs_dir(world);
            let parent = dir.path().to_path_buf();
            fs::write(parent.join("neighbour.txt"), b"beside the source\n").unwrap();
            (Some(dir), parent)
        } else {
            (None, world.src_dir())
        };
        let mut files = BTreeMap::new();
        let (source, link) = match shape {
            Shape::Folder => {
                let source = parent.join(format!("{id}-folder"));
                files.insert("README.md".to_string(), random_bytes(seed + 1, 300));
                files.insert("model.gguf".to_string(), gguf_bytes(seed + 2, 1_500_007));
                files.insert(
                    "tokenizer/tokenizer.json".to_string(),
                    random_bytes(seed + 3, 5_000),
                );
                files.insert(
                    "tokenizer/extra/merges.txt".to_string(),
                    random_bytes(seed + 4, 70_001),
                );
                for (rel, bytes) in &files {
                    let path = source.join(rel);
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    fs::write(path, bytes).unwrap();
                }
                let link = source.join("weights-elsewhere.bin");
                std::os::unix::fs::symlink(world.outside().join("data/a.bin"), &link).unwrap();
                (source, Some(link))
            }
            Shape::File => {
                let name = format!("{id}-single.gguf");
                let source = parent.join(&name);
                let bytes = gguf_bytes(seed + 5, 2_000_003);
                fs::write(&source, &bytes).unwrap();
                files.insert(name, bytes);
                (source, None)
            }
        };
        let cross_device =
            fs::metadata(&source).unwrap().dev() != fs::metadata(world.lib()).unwrap().dev();
        assert!(
            mode == Mode::MoveCrossFs || !cross_device,
            "only the cross-device variant may be on another device"
        );
        Import {
            id: id.to_string(),
            mode,
            shape,
            source,
            files,
            link,
            cross_device,
            other_fs,
        }
    }

    fn is_move(&self) -> bool {
        self.mode != Mode::Copy
    }

    fn label(&self) -> String {
        format!(
            "{:?} of a {:?} ({})",
            self.mode,
            self.shape,
            if self.cross_device {
                "across file systems"
            } else {
                "one file system"
            }
        )
    }

    fn args(&self) -> Vec<OsString> {
        vec![
            "import".into(),
            self.source.clone().into(),
            "--id".into(),
            self.id.clone().into(),
            "--mode".into(),
            if self.is_move() { "move" } else { "copy" }.into(),
        ]
    }

    fn source_of(&self, rel: &str) -> PathBuf {
        match self.shape {
            Shape::File => self.source.clone(),
            Shape::Folder => self.source.join(rel),
        }
    }

    fn model_dir(&self, world: &World) -> PathBuf {
        world.lib().join("models").join(&self.id)
    }

    fn staging_dir(&self, world: &World) -> PathBuf {
        world.lib().join(".cache/imports").join(&self.id)
    }

    fn journal(&self, world: &World) -> PathBuf {
        world
            .lib()
            .join(".cache/imports")
            .join(format!("{}.json", self.id))
    }

    /// Every file, byte for byte, below `dir` (the model folder or the staging folder).
    fn whole_in(&self, dir: &Path) -> bool {
        self.files.iter().all(|(rel, bytes)| {
            fs::symlink_metadata(dir.join(rel)).is_ok_and(|m| m.is_file())
                && fs::read(dir.join(rel)).is_ok_and(|b| &b == bytes)
        })
    }

    fn model_whole(&self, world: &World) -> bool {
        self.whole_in(&self.model_dir(world))
    }

    fn source_whole(&self) -> bool {
        self.files.iter().all(|(rel, bytes)| {
            fs::symlink_metadata(self.source_of(rel)).is_ok_and(|m| m.is_file())
                && fs::read(self.source_of(rel)).is_ok_and(|b| &b == bytes)
        })
    }

    fn source_files_left(&self) -> usize {
        self.files
            .keys()
            .filter(|rel| fs::symlink_metadata(self.source_of(rel)).is_ok())
            .count()
    }

    /// What must not change outside the library: everything in the world but the library
    /// and, for a move, the source; the source's neighbours on the other file system.
    fn untouched(&self, world: &World) -> Untouched {
        let skip: Vec<PathBuf> = if self.is_move() {
            vec![self.source.clone()]
        } else {
            Vec::new()
        };
        let mut watched = world.untouched(&skip);
        if let Some(dir) = &self.other_fs {
            watched = watched.watch(dir.path(), &skip);
        }
        watched
    }

    /// The data is whole at the source or in `models/<id>/` (or both); a move's source only
    /// ever loses files, never has one changed; a copy's source is whole.
    fn check_data(&self, world: &World, when: &str) {
        let label = self.label();
        for (rel, bytes) in &self.files {
            let at = self.source_of(rel);
            if fs::symlink_metadata(&at).is_ok() {
                assert!(
                    fs::read(&at).is_ok_and(|b| &b == bytes),
                    "{when} ({label}): source file {} changed",
                    at.display()
                );
            }
        }
        if let Some(link) = &self.link {
            assert_eq!(
                fs::read_link(link).ok(),
                Some(world.outside().join("data/a.bin")),
                "{when} ({label}): the link in the source folder was touched"
            );
        }
        if self.mode == Mode::Copy {
            assert!(
                self.source_whole(),
                "{when} ({label}): a copy touched its source"
            );
        }
        assert!(
            self.source_whole() || self.model_whole(world),
            "{when} ({label}): the data is whole neither at the source ({} of {} files left) \
             nor in {}",
            self.source_files_left(),
            self.files.len(),
            self.model_dir(world).display()
        );
    }

    /// Whether a run of this import was refused because the import is already done: its id
    /// is taken, or (a move) its source is gone.
    fn refused_as_done(&self, ran: &Ran) -> bool {
        ran.status.code() == Some(1)
            && (ran.stderr.contains("already exists")
                || (self.is_move()
                    && ran.stderr.contains(&format!(
                        "{}: No such file or directory",
                        self.source.display()
                    ))))
    }

    /// The step an import had reached, as the disk shows it (for the figures).
    fn stage(&self, world: &World) -> &'static str {
        let journal = self.journal(world).exists()
            || world
                .import_leftovers()
                .iter()
                .any(|n| n.starts_with(&format!(".{}.json.tmp-", self.id)));
        let in_place = self.model_dir(world).exists();
        let registered = fs::read(world.registry_path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|doc| registry_entry(&doc, &self.id).is_some());
        match (journal, in_place, registered) {
            (false, false, false) => "before its journal",
            (true, false, false) if self.staging_dir(world).exists() => "while staging",
            (true, false, false) => "once planned",
            (_, true, false) => "once in place",
            (true, true, true) if self.source_files_left() < self.files.len() => {
                "while removing the source"
            }
            (true, true, true) => "once registered",
            (false, true, true) => "after the end",
            _ => "in an odd state",
        }
    }

    /// Checks right after a kill, before any recovery ran.
    fn check_after_kill(&self, world: &World, seed: &Value, watched: &Untouched, when: &str) {
        let doc = check_registry(world, seed, when);
        watched.check(when);
        self.check_data(world, when);
        if registry_entry(&doc, &self.id).is_some() {
            assert!(
                self.model_whole(world),
                "{when} ({}): registered before its folder was whole",
                self.label()
            );
        }
    }

    /// The next start (`list --json`) recovers; then the import is completed or discarded,
    /// never half done, and nothing is left under `.cache/imports/`.
    fn recover(&self, world: &World, seed: &Value, watched: &Untouched, when: &str) -> End {
        let when = format!("{when}, then list --json");
        let models = world.list(&when);
        self.settle(world, seed, watched, &models, &when)
    }

    /// Which end the import reached after a recovery (or a finished run), checked.
    fn settle(
        &self,
        world: &World,
        seed: &Value,
        watched: &Untouched,
        models: &[Value],
        when: &str,
    ) -> End {
        let label = self.label();
        assert_eq!(
            world.import_leftovers(),
            Vec::<String>::new(),
            "{when} ({label}): journal or staging left under .cache/imports/"
        );
        let doc = check_registry(world, seed, when);
        watched.check(when);
        self.check_data(world, when);
        let in_place = fs::symlink_metadata(self.model_dir(world)).is_ok();
        let entry = registry_entry(&doc, &self.id);
        let listed = row(models, &self.id);
        match (in_place, entry) {
            (true, Some(entry)) => {
                assert!(
                    self.model_whole(world),
                    "{when} ({label}): completed but not whole"
                );
                let files: BTreeMap<String, u64> = entry["files"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{when}: entry without files: {entry}"))
                    .iter()
                    .map(|f| {
                        (
                            f["path"].as_str().unwrap_or_default().to_string(),
                            f["size"].as_u64().unwrap_or(u64::MAX),
                        )
                    })
                    .collect();
                let want: BTreeMap<String, u64> = self
                    .files
                    .iter()
                    .map(|(p, b)| (p.clone(), b.len() as u64))
                    .collect();
                assert_eq!(files, want, "{when} ({label}): the entry's files");
                let listed =
                    listed.unwrap_or_else(|| panic!("{when} ({label}): completed but not listed"));
                assert_eq!(listed["status"], "downloaded", "{when} ({label}): {listed}");
                assert_eq!(listed["registered"], true, "{when} ({label}): {listed}");
                if self.is_move() {
                    assert_eq!(
                        self.source_files_left(),
                        0,
                        "{when} ({label}): a completed move left source files"
                    );
                    if self.link.is_none() {
                        assert!(!self.source.exists(), "{when} ({label}): source left");
                    }
                }
                End::Completed
            }
            (false, None) => {
                assert!(
                    self.source_whole(),
                    "{when} ({label}): discarded, and the source is not whole"
                );
                assert!(
                    listed.is_none(),
                    "{when} ({label}): discarded but listed: {listed:?}"
                );
                End::Discarded
            }
            (in_place, entry) => panic!(
                "{when} ({label}): the import is half done: folder in models/: {in_place}, \
                 registry entry: {entry:?}, listed as {listed:?}; it can neither be redone nor \
                 is it complete"
            ),
        }
    }

    /// Runs the import again to its end; it must succeed.
    fn redo(&self, world: &World, seed: &Value, watched: &Untouched, when: &str) {
        let ran = run(&mut world.cmd(&self.args()));
        assert!(
            ran.ok(),
            "{when} ({}): redoing the import failed: {}",
            self.label(),
            ran.describe()
        );
        let end = self.recover(world, seed, watched, &format!("{when}, then redone"));
        assert_eq!(end, End::Completed, "{when}: a redone import");
    }
}

/// How an interrupted import ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Completed,
    Discarded,
}

/// Kills an import of each variant at `point` and checks the state right after, then that
/// the next start reaches `expected` (and a discarded import can be redone). `at_kill`
/// checks what the point promises about the disk right after the kill.
fn import_killed_at(
    point: &str,
    variants: &[(Mode, Shape)],
    expected: End,
    at_kill: impl Fn(&World, &Import, &Value, &str),
) {
    for (i, &(mode, shape)) in variants.iter().enumerate() {
        let world = World::new();
        let seed = seed_registry(&world, Vec::new());
        let import = Import::new(&world, IMPORT_ID, mode, shape, 100 * i as u64);
        let watched = import.untouched(&world);
        let when = format!("{} killed at {point}", import.label());
        crash_at(&mut world.cmd(&import.args()), point);
        import.check_after_kill(&world, &seed, &watched, &when);
        at_kill(
            &world,
            &import,
            &check_registry(&world, &seed, &when),
            &when,
        );
        let end = import.recover(&world, &seed, &watched, &when);
        assert_eq!(end, expected, "{when}");
        if end == End::Discarded {
            import.redo(&world, &seed, &watched, &when);
        }
    }
}

fn staged_file_count(world: &World, import: &Import) -> usize {
    import
        .files
        .keys()
        .filter(|rel| import.staging_dir(world).join(rel).is_file())
        .count()
}

#[test]
fn an_import_killed_after_planning_is_discarded_and_can_be_redone() {
    import_killed_at(
        "import.planned",
        &ALL_VARIANTS,
        End::Discarded,
        |world, import, doc, when| {
            assert!(import.journal(world).is_file(), "{when}: no journal");
            assert_eq!(staged_file_count(world, import), 0, "{when}");
            assert!(!import.model_dir(world).exists(), "{when}");
            assert!(registry_entry(doc, IMPORT_ID).is_none(), "{when}");
            assert!(import.source_whole(), "{when}: source touched");
        },
    );
}

#[test]
fn an_import_killed_while_staging_is_discarded_and_can_be_redone() {
    import_killed_at(
        "import.staging",
        &ALL_VARIANTS,
        End::Discarded,
        |world, import, doc, when| {
            assert!(import.journal(world).is_file(), "{when}: no journal");
            assert_eq!(
                staged_file_count(world, import),
                1,
                "{when}: one file staged"
            );
            assert!(!import.model_dir(world).exists(), "{when}");
            assert!(registry_entry(doc, IMPORT_ID).is_none(), "{when}");
            assert!(import.source_whole(), "{when}: source touched");
        },
    );
}

#[test]
fn an_import_killed_once_staged_is_completed_at_the_next_start() {
    import_killed_at(
        "import.staged",
        &ALL_VARIANTS,
        End::Completed,
        |world, import, doc, when| {
            assert!(
                import.whole_in(&import.staging_dir(world)),
                "{when}: staging not whole"
            );
            assert!(!import.model_dir(world).exists(), "{when}");
            assert!(registry_entry(doc, IMPORT_ID).is_none(), "{when}");
            assert!(import.source_whole(), "{when}: source touched");
        },
    );
}

#[test]
fn an_import_killed_once_in_place_is_registered_at_the_next_start() {
    import_killed_at(
        "import.in_place",
        &ALL_VARIANTS,
        End::Completed,
        |world, import, doc, when| {
            assert!(import.model_whole(world), "{when}: not in place");
            assert!(!import.staging_dir(world).exists(), "{when}");
            assert!(registry_entry(doc, IMPORT_ID).is_none(), "{when}");
            assert!(import.source_whole(), "{when}: source touched");
        },
    );
}

#[test]
fn a_move_killed_after_registering_keeps_the_data() {
    import_killed_at(
        "import.registered",
        &ALL_VARIANTS,
        End::Completed,
        |world, import, doc, when| {
            assert!(import.model_whole(world), "{when}: not in place");
            assert!(registry_entry(doc, IMPORT_ID).is_some(), "{when}");
            assert!(
                import.source_whole(),
                "{when}: source removed before the end"
            );
            // How the bytes got in: a move on one file system links, else it copies.
            for rel in import.files.keys() {
                let src = fs::metadata(import.source_of(rel)).unwrap();
                let dst = fs::metadata(import.model_dir(world).join(rel)).unwrap();
                let linked = (src.dev(), src.ino()) == (dst.dev(), dst.ino());
                let want = import.mode == Mode::MoveSameFs
                    || (import.mode == Mode::MoveCrossFs && !import.cross_device);
                assert_eq!(linked, want, "{when}: {rel} hard-linked");
            }
        },
    );
}

#[test]
fn a_move_killed_while_removing_the_source_keeps_the_data_and_finishes() {
    import_killed_at(
        "import.removing_source",
        &MOVE_VARIANTS,
        End::Completed,
        |world, import, doc, when| {
            assert!(import.model_whole(world), "{when}: not in place");
            assert!(registry_entry(doc, IMPORT_ID).is_some(), "{when}");
            assert_eq!(
                import.source_files_left(),
                import.files.len() - 1,
                "{when}: killed after the first source file went"
            );
        },
    );
}

#[test]
fn a_move_killed_again_while_recovery_removes_the_source_still_finishes() {
    for (i, &(mode, shape)) in MOVE_VARIANTS.iter().enumerate() {
        let world = World::new();
        let seed = seed_registry(&world, Vec::new());
        let import = Import::new(&world, IMPORT_ID, mode, shape, 7 + i as u64);
        let watched = import.untouched(&world);
        let when = format!("{} killed at import.registered", import.label());
        crash_at(&mut world.cmd(&import.args()), "import.registered");
        import.check_after_kill(&world, &seed, &watched, &when);
        // The next start recovers, and is killed while it removes the source.
        let when = format!("{when}, then list killed at import.removing_source");
        crash_at(
            &mut world.cmd(&["list", "--json"]),
            "import.removing_source",
        );
        import.check_after_kill(&world, &seed, &watched, &when);
        assert!(
            import.journal(&world).is_file(),
            "{when}: journal gone early"
        );
        assert_eq!(import.source_files_left(), import.files.len() - 1, "{when}");
        let end = import.recover(&world, &seed, &watched, &when);
        assert_eq!(end, End::Completed, "{when}");
    }
}

/// A move killed once staged; the next start's recovery puts it in place, registers it,
/// and is killed while it removes the source. Recovery records no step of its own, so the
/// journal still ends at `staged`: the start after that must still finish the move (no
/// source file may be left behind once the import counts as completed).
#[test]
fn a_move_recovered_from_staged_and_killed_while_removing_the_source_is_finished() {
    for (i, &(mode, shape)) in MOVE_VARIANTS.iter().enumerate() {
        let world = World::new();
        let seed = seed_registry(&world, Vec::new());
        let import = Import::new(&world, IMPORT_ID, mode, shape, 51 + i as u64);
        let watched = import.untouched(&world);
        let when = format!("{} killed at import.staged", import.label());
        crash_at(&mut world.cmd(&import.args()), "import.staged");
        import.check_after_kill(&world, &seed, &watched, &when);
        let when = format!("{when}, then list killed at import.removing_source");
        crash_at(
            &mut world.cmd(&["list", "--json"]),
            "import.removing_source",
        );
        import.check_after_kill(&world, &seed, &watched, &when);
        assert!(import.model_whole(&world), "{when}: not in place");
        assert_eq!(import.source_files_left(), import.files.len() - 1, "{when}");
        let end = import.recover(&world, &seed, &watched, &when);
        assert_eq!(end, End::Completed, "{when}");
    }
}

/// No crash point sits between the rename of the staging folder into `models/<id>` and the
/// journal line `in_place` (`commit` syncs `models/` in between): a kill there leaves the
/// journal ending at `staged`, the folder in place and no staging folder. This test makes
/// exactly that disk state — a kill at `import.in_place`, minus the journal's last line —
/// and expects the next start to complete the import (it is in place, whole) rather than
/// leave an unregistered folder that blocks redoing it.
#[test]
fn an_import_killed_between_its_rename_and_its_journal_line_is_not_left_half_done() {
    for (i, &(mode, shape)) in ALL_VARIANTS.iter().enumerate() {
        let world = World::new();
        let seed = seed_registry(&world, Vec::new());
        let import = Import::new(&world, IMPORT_ID, mode, shape, 31 + i as u64);
        let watched = import.untouched(&world);
        let when = format!(
            "{} killed after renaming into models/, before recording it",
            import.label()
        );
        crash_at(&mut world.cmd(&import.args()), "import.in_place");
        let journal = fs::read_to_string(import.journal(&world)).unwrap();
        let lines: Vec<&str> = journal.lines().collect();
        assert_eq!(
            lines.last().copied(),
            Some(r#"{"step":"in_place"}"#),
            "{when}: the journal's last line: {journal}"
        );
        let mut before = lines[..lines.len() - 1].join("\n");
        before.push('\n');
        fs::write(import.journal(&world), before).unwrap();
        import.check_after_kill(&world, &seed, &watched, &when);
        let end = import.recover(&world, &seed, &watched, &when);
        assert_eq!(end, End::Completed, "{when}");
    }
}

/// Random kills of an import of each variant, chained: after a kill the next step is, at
/// random, `list --json` (which recovers) or the import again (which recovers first, and
/// may be killed too); at the end the import is completed or redone.
fn random_import_kills(test: &str, variants: &[(Mode, Shape)]) {
    random_cases(test, |case, rng, tally| {
        let (mode, shape) = *rng.pick(variants);
        // How long this import takes uninterrupted, here and now.
        let typical = {
            let world = World::new();
            let import = Import::new(&world, IMPORT_ID, mode, shape, 1);
            timed(|| {
                let ran = run(&mut world.cmd(&import.args()));
                assert!(ran.ok(), "calibration: {}", ran.describe());
            })
        };
        let world = World::new();
        let seed = seed_registry(&world, Vec::new());
        let import = Import::new(&world, IMPORT_ID, mode, shape, rng.next_u64() >> 8);
        let watched = import.untouched(&world);
        let kills = 1 + rng.below(3);
        let mut end = None;
        let mut when = format!("case {case}: {}", import.label());
        for k in 0..kills {
            let delay = random_delay(rng, typical);
            when = format!("{when}; run {k} killed after {delay:?}");
            let ran = run_killed(&mut world.cmd(&import.args()), Trigger::After(delay));
            tally.count(&ran, import.stage(&world), &world);
            import.check_after_kill(&world, &seed, &watched, &when);
            if !ran.killed() {
                // It ended on its own: done, or refused because the recovery at its start
                // completed the import.
                assert!(
                    ran.ok() || import.refused_as_done(&ran),
                    "{when}: {}",
                    ran.describe()
                );
                let e = import.recover(&world, &seed, &watched, &when);
                assert_eq!(e, End::Completed, "{when}: ended with {}", ran.describe());
                end = Some(e);
                break;
            }
            if rng.chance(0.5) {
                let e = import.recover(&world, &seed, &watched, &when);
                if e == End::Completed {
                    end = Some(e);
                    break;
                }
            }
        }
        match end {
            Some(End::Completed) => {}
            _ => {
                if import.recover(&world, &seed, &watched, &when) == End::Discarded {
                    import.redo(&world, &seed, &watched, &when);
                }
            }
        }
    });
}

#[test]
fn imports_by_copy_killed_at_random_are_completed_or_redone() {
    random_import_kills(
        "imports_by_copy_killed_at_random_are_completed_or_redone",
        &[(Mode::Copy, Shape::Folder), (Mode::Copy, Shape::File)],
    );
}

#[test]
fn moves_on_one_file_system_killed_at_random_keep_the_data() {
    random_import_kills(
        "moves_on_one_file_system_killed_at_random_keep_the_data",
        &[
            (Mode::MoveSameFs, Shape::Folder),
            (Mode::MoveSameFs, Shape::File),
        ],
    );
}

#[test]
fn moves_across_file_systems_killed_at_random_keep_the_data() {
    random_import_kills(
        "moves_across_file_systems_killed_at_random_keep_the_data",
        &[
            (Mode::MoveCrossFs, Shape::Folder),
            (Mode::MoveCrossFs, Shape::File),
        ],
    );
}

/// A registry write killed between creating its temp file and renaming it over the
/// registry (the temp file's fsync is the slow part, so random kills land there: see the
/// figures of the random import tests) leaves `.model_registry.json.tmp-<pid>-<n>` in the
/// library. Writers hold `.cache/registry.lock` while that file exists, so one found by a
/// later writer belongs to a dead process. This test makes that disk state — the temp file
/// of a process that has ended — and expects the next runs (`list`, then an import that
/// writes the registry) to clean it up rather than keep it for good.
#[test]
fn a_registry_write_killed_before_its_rename_leaves_no_temp_file_for_good() {
    let world = World::new();
    let seed = seed_registry(&world, Vec::new());
    let mut ended = Command::new(BIN)
        .arg("--version")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let dead_pid = ended.id();
    assert!(ended.wait().unwrap().success());
    let temp = world
        .lib()
        .join(format!(".model_registry.json.tmp-{dead_pid}-0"));
    fs::write(&temp, serde_json::to_vec_pretty(&seed).unwrap()).unwrap();
    let import = Import::new(&world, IMPORT_ID, Mode::Copy, Shape::File, 3);
    let watched = import.untouched(&world);
    world.list("a registry temp file left by a dead writer");
    import.redo(
        &world,
        &seed,
        &watched,
        "a registry temp file left by a dead writer",
    );
    assert!(
        !temp.exists(),
        "{} is still there after list and an import that wrote the registry",
        temp.display()
    );
}

// ---------------------------------------------------------------------------------------
// Concurrent registry writes

/// Several processes import different ids at once into one library; some are killed at
/// random instants, some at named crash points, some run to their end. No registry update
/// of a process that finished may be lost, every process that was not killed must succeed,
/// and afterwards every import is completed or can be redone (also by several processes at
/// once, each recovering what the others left). Failures of processes that were not killed
/// are collected and reported at the end, so that a deep run still goes through all cases.
#[test]
fn concurrent_imports_killed_at_random_lose_no_registry_update() {
    const TEST: &str = "concurrent_imports_killed_at_random_lose_no_registry_update";
    const PROCESSES: usize = 5;
    const POINTS: [&str; 6] = [
        "import.planned",
        "import.staging",
        "import.staged",
        "import.in_place",
        "import.registered",
        "import.removing_source",
    ];
    random_cases(TEST, |case, rng, tally| {
        let mut failed: Vec<String> = Vec::new();
        let mut not_killed = 0usize;
        let world = World::new();
        let seed = seed_registry(&world, Vec::new());
        let imports: Vec<Import> = (0..PROCESSES)
            .map(|i| {
                let mode = *rng.pick(&[Mode::Copy, Mode::MoveSameFs]);
                let shape = *rng.pick(&[Shape::File, Shape::Folder]);
                Import::new(&world, &format!("c{i}"), mode, shape, rng.next_u64() >> 8)
            })
            .collect();
        let skip: Vec<PathBuf> = imports
            .iter()
            .filter(|i| i.is_move())
            .map(|i| i.source.clone())
            .collect();
        let watched = world.untouched(&skip);
        let typical = {
            let scratch = World::new();
            let one = Import::new(&scratch, "c0", Mode::Copy, Shape::Folder, 1);
            timed(|| assert!(run(&mut scratch.cmd(&one.args())).ok()))
        }
        .mul_f64(PROCESSES as f64 / 2.0);
        // Each process: run to its end, be killed after a random delay, or at a point.
        let fates: Vec<Option<Duration>> = (0..PROCESSES)
            .map(|_| rng.chance(0.6).then(|| random_delay(rng, typical)))
            .collect();
        let points: Vec<Option<&str>> = (0..PROCESSES)
            .map(|_| rng.chance(0.25).then(|| *rng.pick(&POINTS)))
            .collect();
        let mut running: Vec<Running> = imports
            .iter()
            .zip(&points)
            .map(|(import, point)| {
                let mut cmd = world.cmd(&import.args());
                if let Some(point) = point {
                    cmd.env(CRASH_AT, point);
                }
                Running::start(&mut cmd)
            })
            .collect();
        let t0 = Instant::now();
        let mut order: Vec<usize> = (0..PROCESSES).filter(|i| fates[*i].is_some()).collect();
        order.sort_by_key(|i| fates[*i]);
        for i in order {
            let at = fates[i].expect("a kill time");
            std::thread::sleep(at.saturating_sub(t0.elapsed()));
            running[i].kill();
        }
        let ran: Vec<Ran> = running.into_iter().map(Running::finish).collect();
        let when =
            format!("case {case}: {PROCESSES} imports at once, kills {fates:?}, points {points:?}");
        let doc = check_registry(&world, &seed, &when);
        watched.check(&when);
        for (import, ran) in imports.iter().zip(&ran) {
            tally.count(ran, import.stage(&world), &world);
            let when = format!("{when}; {} ({})", import.id, import.label());
            if !ran.killed() {
                not_killed += 1;
                if ran.ok() {
                    assert!(
                        registry_entry(&doc, &import.id).is_some(),
                        "{when}: finished, but its registry update was lost"
                    );
                } else {
                    failed.push(format!("{when}: {}", ran.describe()));
                }
            }
            import.check_after_kill(&world, &seed, &watched, &when);
        }
        // The next start: one `list`, or the imports that did not finish again, all at once.
        let redo_at_once = rng.chance(0.5);
        let when = format!(
            "{when}; then {}",
            if redo_at_once {
                "the unfinished imports again at once"
            } else {
                "list --json"
            }
        );
        if redo_at_once {
            let again: Vec<(usize, Running)> = ran
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.ok())
                .map(|(i, _)| (i, Running::start(&mut world.cmd(&imports[i].args()))))
                .collect();
            for (i, running) in again {
                let r = running.finish();
                not_killed += 1;
                // Refused only because a recovery (its own or another's) completed it; the
                // settling below checks that it was.
                if !(r.ok() || imports[i].refused_as_done(&r)) {
                    failed.push(format!("{when}: {}: {}", imports[i].id, r.describe()));
                }
            }
        }
        let models = world.list(&when);
        for import in &imports {
            let when = format!("{when}; {} ({})", import.id, import.label());
            if import.settle(&world, &seed, &watched, &models, &when) == End::Discarded {
                import.redo(&world, &seed, &watched, &when);
            }
        }
        let doc = check_registry(&world, &seed, &when);
        let models = world.list(&when);
        for import in &imports {
            assert!(registry_entry(&doc, &import.id).is_some(), "{when}");
            assert_eq!(
                import.settle(&world, &seed, &watched, &models, &when),
                End::Completed
            );
        }
        assert!(
            failed.is_empty(),
            "{} of {not_killed} imports that were not killed failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    });
}

/// The smallest case of the above: imports started at the same instant, none killed, into
/// one library whose `.cache/imports/` exists. Every start recovers interrupted imports
/// first; that recovery must never take another process's journal — just created under its
/// temp name and not yet locked — for the journal of a dead one. Rounds of twelve at once
/// (more processes than cores, so that one is now and then preempted in that gap), until a
/// round fails or 16 rounds passed.
#[test]
fn imports_started_at_once_all_succeed() {
    const ROUNDS: usize = 16;
    const PROCESSES: usize = 12;
    for round in 0..ROUNDS {
        let world = World::new();
        let seed = seed_registry(&world, Vec::new());
        fs::create_dir_all(world.lib().join(".cache/imports")).unwrap();
        let running: Vec<(String, Running)> = (0..PROCESSES)
            .map(|i| {
                let id = format!("s{i}");
                let src = world.src_dir().join(format!("{id}.gguf"));
                fs::write(&src, gguf_bytes(i as u64, 4096)).unwrap();
                let args: [OsString; 4] = [
                    "import".into(),
                    src.into(),
                    "--id".into(),
                    id.clone().into(),
                ];
                (id, Running::start(&mut world.cmd(&args)))
            })
            .collect();
        let mut failed = Vec::new();
        for (id, running) in running {
            let ran = running.finish();
            if !ran.ok() {
                failed.push(format!("{id}: {}", ran.describe()));
            }
        }
        assert!(
            failed.is_empty(),
            "round {round}: {} of {PROCESSES} imports started at once failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
        let when = format!("round {round}");
        let doc = check_registry(&world, &seed, &when);
        for i in 0..PROCESSES {
            assert!(
                registry_entry(&doc, &format!("s{i}")).is_some(),
                "{when}: s{i}"
            );
        }
        assert_eq!(world.import_leftovers(), Vec::<String>::new(), "{when}");
    }
}

// ---------------------------------------------------------------------------------------
// Downloads

/// One file a model downloads.
struct DlFile {
    path: String,
    bytes: Vec<u8>,
    url_path: String,
}

/// A three-file model with sizes and sha256, served by the local test server.
struct Download {
    id: String,
    files: Vec<DlFile>,
}

impl Download {
    /// Serves the files under `prefix` (one per case, so hits can be told apart).
    fn serve(server: &TestServer, prefix: &str, seed: u64) -> Download {
        let files = vec![
            (
                "weights/model-00001-of-00002.gguf",
                gguf_bytes(seed, 3 << 20),
            ),
            (
                "weights/model-00002-of-00002.gguf",
                random_bytes(seed + 1, (2 << 20) + 13),
            ),
            ("config.json", random_bytes(seed + 2, 2_345)),
        ];
        let files = files
            .into_iter()
            .map(|(path, bytes)| {
                let url_path = format!("/{prefix}/{path}");
                server.route(&url_path, bytes.clone(), Behavior::Normal);
                DlFile {
                    path: path.to_string(),
                    bytes,
                    url_path,
                }
            })
            .collect();
        Download {
            id: "dl".to_string(),
            files,
        }
    }

    /// Its registry entry, with unknown fields of its own.
    fn entry(&self, server: &TestServer) -> Value {
        json!({
            "id": self.id,
            "name": "Downloaded Model",
            "provider": "huggingface",
            "capabilities": ["text-generation"],
            "x-source": {"revision": "abc123", "gated": false},
            "files": self.files.iter().map(|f| json!({
                "path": f.path,
                "url": server.url(&f.url_path),
                "size": f.bytes.len(),
                "sha256": sha256_hex(&f.bytes),
                "x-lfs": true,
            })).collect::<Vec<_>>(),
        })
    }

    fn args(&self) -> Vec<String> {
        vec!["download".into(), self.id.clone()]
    }

    fn placed(&self, world: &World, f: &DlFile) -> PathBuf {
        world.lib().join("models").join(&self.id).join(&f.path)
    }

    fn part(&self, world: &World, f: &DlFile) -> PathBuf {
        world
            .lib()
            .join(".downloads")
            .join(&self.id)
            .join(format!("{}.part", f.path))
    }

    fn total(&self) -> u64 {
        self.files.iter().map(|f| f.bytes.len() as u64).sum()
    }

    /// Bytes on disk so far (parts and placed files).
    fn on_disk(&self, world: &World) -> u64 {
        self.files
            .iter()
            .map(|f| {
                let len = |p: PathBuf| fs::metadata(p).map_or(0, |m| m.len());
                len(self.part(world, f)).max(len(self.placed(world, f)))
            })
            .sum()
    }

    /// How far a download had got, as the disk shows it (for the figures).
    fn stage(&self, world: &World) -> &'static str {
        let on_disk = self.on_disk(world);
        if self.complete(world) {
            "with every file in place"
        } else if on_disk == 0 {
            "before any byte"
        } else if on_disk == self.total() {
            "with every byte on disk, not all placed"
        } else {
            "mid-transfer"
        }
    }

    fn complete(&self, world: &World) -> bool {
        self.files
            .iter()
            .all(|f| fs::read(self.placed(world, f)).is_ok_and(|b| b == f.bytes))
    }

    /// Right after a kill: every file in `models/<id>/` is whole and verified (byte for
    /// byte what the server serves) and nothing else is there; every `.part` is a prefix
    /// of its file.
    fn check_disk(&self, world: &World, when: &str) {
        let model = world.lib().join("models").join(&self.id);
        for f in &self.files {
            let placed = self.placed(world, f);
            if let Ok(meta) = fs::symlink_metadata(&placed) {
                assert!(meta.is_file(), "{when}: {} is not a file", placed.display());
                let bytes = fs::read(&placed).unwrap();
                assert!(
                    bytes == f.bytes,
                    "{when}: {} is in models/ but not whole and verified ({} of {} bytes, \
                     sha256 {})",
                    f.path,
                    bytes.len(),
                    f.bytes.len(),
                    sha256_hex(&bytes)
                );
            }
            let part = self.part(world, f);
            if let Ok(bytes) = fs::read(&part) {
                assert!(
                    bytes.len() <= f.bytes.len() && bytes[..] == f.bytes[..bytes.len()],
                    "{when}: {} ({} bytes) is not a prefix of what the server sends",
                    part.display(),
                    bytes.len()
                );
            }
        }
        let declared: BTreeSet<PathBuf> =
            self.files.iter().map(|f| PathBuf::from(&f.path)).collect();
        for (path, node) in snapshot(&model, &[]) {
            if !matches!(node, Node::Dir) {
                assert!(
                    declared.contains(&path),
                    "{when}: unexpected {} in the model folder",
                    path.display()
                );
            }
        }
    }

    /// The listing is truthful: `downloaded` only when complete, and a complete model
    /// without leftovers is `downloaded`.
    fn check_listing(&self, world: &World, models: &[Value], when: &str) {
        let row = row(models, &self.id).unwrap_or_else(|| panic!("{when}: {} not listed", self.id));
        let status = row["status"].as_str().unwrap_or_default();
        let complete = self.complete(world);
        if status == "downloaded" {
            assert!(
                complete,
                "{when}: listed as downloaded, but incomplete: {row}"
            );
        }
        let leftovers = world.lib().join(".downloads").join(&self.id).exists();
        if complete && !leftovers {
            assert_eq!(status, "downloaded", "{when}: {row}");
        }
        if !complete {
            assert!(
                status == "partial" || status == "available",
                "{when}: an incomplete download listed as {status}: {row}"
            );
        }
    }

    /// Checks after a kill, then (sometimes) the listing.
    fn check_after_kill(
        &self,
        world: &World,
        seed: &Value,
        watched: &Untouched,
        list: bool,
        when: &str,
    ) {
        check_registry(world, seed, when);
        watched.check(when);
        self.check_disk(world, when);
        if list {
            let when = format!("{when}, then list --json");
            let models = world.list(&when);
            self.check_listing(world, &models, &when);
            check_registry(world, seed, &when);
            self.check_disk(world, &when);
        }
    }

    /// Runs the download again to its end: it resumes every part from where it stopped
    /// (a Range request from the part's length) and completes.
    fn finish(
        &self,
        world: &World,
        server: &TestServer,
        seed: &Value,
        watched: &Untouched,
        when: &str,
    ) {
        let parts: Vec<(&DlFile, u64)> = self
            .files
            .iter()
            .filter_map(|f| fs::metadata(self.part(world, f)).ok().map(|m| (f, m.len())))
            .filter(|(f, len)| *len > 0 && *len < f.bytes.len() as u64)
            .collect();
        let ran = run(&mut world.cmd(&self.args()));
        let when = format!("{when}, then download again");
        assert!(ran.ok(), "{when}: {}", ran.describe());
        assert!(self.complete(world), "{when}: not complete");
        assert!(
            !world.lib().join(".downloads").join(&self.id).exists(),
            "{when}: .downloads/{} left",
            self.id
        );
        for (f, len) in parts {
            let want = f.bytes.len() - len as usize;
            wait_for_hit(server, &when, |h| {
                h.path == f.url_path && h.range_start == Some(len) && h.body_bytes_sent == want
            });
        }
        let models = world.list(&when);
        self.check_listing(world, &models, &when);
        assert_eq!(
            row(&models, &self.id).map(|r| r["status"].clone()),
            Some(json!("downloaded")),
            "{when}"
        );
        check_registry(world, seed, &when);
        watched.check(&when);
    }
}

/// Waits (bounded) until the server has recorded a request matching `pred` (it records one
/// when it is done sending, which can be after the client has moved on).
fn wait_for_hit(server: &TestServer, when: &str, pred: impl Fn(&common::http::Hit) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.hits().iter().any(&pred) {
        assert!(
            Instant::now() < deadline,
            "{when}: the server never saw the expected request; it saw {:#?}",
            server.hits()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn hits_for(server: &TestServer, url_path: &str) -> usize {
    server.hits().iter().filter(|h| h.path == url_path).count()
}

/// A download killed at `point`; `at_kill` checks the disk right after; then the next
/// download completes, fetching only the files listed in `refetched` (by index).
fn download_killed_at(point: &str, at_kill: impl Fn(&World, &Download, &str), refetched: &[usize]) {
    let server = TestServer::start();
    let world = World::new();
    let dl = Download::serve(&server, "m", 5);
    let seed = seed_registry(&world, vec![dl.entry(&server)]);
    let watched = world.untouched(&[]);
    let when = format!("a download killed at {point}");
    crash_at(&mut world.cmd(&dl.args()), point);
    dl.check_after_kill(&world, &seed, &watched, false, &when);
    at_kill(&world, &dl, &when);
    dl.check_after_kill(&world, &seed, &watched, true, &when);
    // Every request of the killed run is recorded before counting what the next one asks.
    for f in &dl.files {
        if fs::metadata(dl.part(&world, f)).is_ok_and(|m| m.len() == f.bytes.len() as u64)
            || dl.placed(&world, f).exists()
        {
            wait_for_hit(&server, &when, |h| h.path == f.url_path);
        }
    }
    let before: Vec<usize> = dl
        .files
        .iter()
        .map(|f| hits_for(&server, &f.url_path))
        .collect();
    dl.finish(&world, &server, &seed, &watched, &when);
    let last = dl.files.last().expect("files");
    if refetched.contains(&(dl.files.len() - 1)) {
        wait_for_hit(&server, &when, |h| {
            h.path == last.url_path && h.range_start.is_none()
        });
    }
    for (i, f) in dl.files.iter().enumerate() {
        let new = hits_for(&server, &f.url_path) - before[i];
        let want = usize::from(refetched.contains(&i));
        assert_eq!(
            new, want,
            "{when}: requests for {} in the resumed run",
            f.path
        );
    }
}

#[test]
fn a_download_killed_after_verifying_a_file_resumes_without_fetching_it_again() {
    download_killed_at(
        "download.verified",
        |world, dl, when| {
            let first = &dl.files[0];
            assert_eq!(
                fs::read(dl.part(world, first)).ok().as_ref(),
                Some(&first.bytes),
                "{when}: the verified part"
            );
            assert!(!dl.placed(world, first).exists(), "{when}");
        },
        &[1, 2],
    );
}

#[test]
fn a_download_killed_after_verifying_its_second_file_keeps_the_first_in_place() {
    download_killed_at(
        "download.verified#2",
        |world, dl, when| {
            assert!(dl.placed(world, &dl.files[0]).exists(), "{when}");
            assert_eq!(
                fs::read(dl.part(world, &dl.files[1])).ok().as_ref(),
                Some(&dl.files[1].bytes),
                "{when}: the verified part"
            );
        },
        &[2],
    );
}

#[test]
fn a_download_killed_after_placing_a_file_keeps_it_and_fetches_only_the_rest() {
    download_killed_at(
        "download.file_in_place",
        |world, dl, when| {
            assert!(dl.placed(world, &dl.files[0]).exists(), "{when}");
            assert!(!dl.part(world, &dl.files[0]).exists(), "{when}");
            assert!(!dl.placed(world, &dl.files[1]).exists(), "{when}");
        },
        &[1, 2],
    );
}

#[test]
fn a_download_killed_after_placing_its_last_file_is_complete_on_disk() {
    download_killed_at(
        "download.file_in_place#3",
        |world, dl, when| {
            assert!(dl.complete(world), "{when}: every file in place");
        },
        &[],
    );
}

/// Random kills of a download, at random instants or at random amounts of data on disk
/// (so that many land mid-transfer), chained like the imports'; at the end it resumes and
/// completes.
#[test]
fn downloads_killed_at_random_resume_and_complete() {
    const TEST: &str = "downloads_killed_at_random_resume_and_complete";
    let server = TestServer::start();
    let typical = {
        let world = World::new();
        let dl = Download::serve(&server, "calibration", 1);
        seed_registry(&world, vec![dl.entry(&server)]);
        timed(|| {
            let ran = run(&mut world.cmd(&dl.args()));
            assert!(ran.ok(), "calibration: {}", ran.describe());
        })
    };
    random_cases(TEST, |case, rng, tally| {
        let world = World::new();
        let dl = Download::serve(&server, &format!("case{case}"), rng.next_u64() >> 8);
        let seed = seed_registry(&world, vec![dl.entry(&server)]);
        let watched = world.untouched(&[]);
        let mut when = format!("case {case}");
        for k in 0..1 + rng.below(3) {
            let ran = if rng.chance(0.5) {
                let delay = random_delay(rng, typical);
                when = format!("{when}; run {k} killed after {delay:?}");
                run_killed(&mut world.cmd(&dl.args()), Trigger::After(delay))
            } else {
                let at = (dl.total() as f64 * rng.unit()) as u64;
                when = format!("{when}; run {k} killed at {at} bytes on disk");
                let reached = || dl.on_disk(&world) >= at;
                run_killed(&mut world.cmd(&dl.args()), Trigger::When(&reached))
            };
            tally.count(&ran, dl.stage(&world), &world);
            if !ran.killed() {
                assert!(ran.ok(), "{when}: {}", ran.describe());
            }
            dl.check_after_kill(&world, &seed, &watched, rng.chance(0.5), &when);
            if !ran.killed() {
                break;
            }
        }
        dl.finish(&world, &server, &seed, &watched, &when);
    });
}

// ---------------------------------------------------------------------------------------
// Delete

/// Folders of 20 files each in the model being deleted (removed in name order).
const SHARD_DIRS: u64 = 20;

/// Files of the model being deleted: many, so that a kill lands mid-delete.
fn victim_files() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    files.insert("model.gguf".to_string(), gguf_bytes(40, 200_000));
    files.insert("config.json".to_string(), random_bytes(41, 700));
    for d in 0..SHARD_DIRS {
        for f in 0..20 {
            files.insert(
                format!("shards/d{d:02}/f{f:02}.bin"),
                random_bytes(1000 + d * 40 + f, 64 + (f as usize * 7)),
            );
        }
    }
    files
}

/// A library with the model to delete (its folder holding links that point outside, and
/// a partial download) and a neighbour model that must not be touched.
fn delete_world(files: &BTreeMap<String, Vec<u8>>) -> (World, Value) {
    let world = World::new();
    let victim = world.lib().join("models/victim");
    for (rel, bytes) in files {
        let path = victim.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
    std::os::unix::fs::symlink(world.outside().join("data"), victim.join("linked-folder")).unwrap();
    std::os::unix::fs::symlink(
        world.outside().join("notes.txt"),
        victim.join("shards/linked-file"),
    )
    .unwrap();
    let partial = world.lib().join(".downloads/victim/more/extra.bin.part");
    fs::create_dir_all(partial.parent().unwrap()).unwrap();
    fs::write(&partial, random_bytes(42, 5_000)).unwrap();
    let neighbour = world.lib().join("models/neighbour");
    fs::create_dir_all(&neighbour).unwrap();
    fs::write(neighbour.join("w.gguf"), gguf_bytes(43, 30_000)).unwrap();
    let seed = seed_registry(
        &world,
        vec![
            json!({
                "id": "victim",
                "provider": "local",
                "x-pinned": true,
                "files": [
                    {"path": "model.gguf", "size": files["model.gguf"].len()},
                    {"path": "config.json", "size": files["config.json"].len()},
                ]
            }),
            json!({"id": "neighbour", "x-note": "stays", "files": [{"path": "w.gguf", "size": 30_000}]}),
        ],
    );
    (world, seed)
}

/// How far a delete had got, as the disk shows it (for the figures).
fn delete_stage(world: &World, files: &BTreeMap<String, Vec<u8>>) -> &'static str {
    let victim = world.lib().join("models/victim");
    let left = files.keys().filter(|rel| victim.join(rel).exists()).count();
    let partial = world.lib().join(".downloads/victim").exists();
    match (left, partial) {
        (n, true) if n == files.len() => "before removing anything",
        (0, true) if !victim.exists() => "between models/ and .downloads/",
        (_, true) => "mid-way through models/",
        (_, false) => "after the end",
    }
}

fn delete_args() -> [&'static str; 4] {
    ["delete", "victim", "--yes", "--permanent"]
}

/// After a kill of a delete: registry, outside and neighbour untouched; what is left of
/// the victim is unchanged file by file; the listing is truthful.
fn check_delete_after_kill(
    world: &World,
    seed: &Value,
    watched: &Untouched,
    neighbour: &Snapshot,
    files: &BTreeMap<String, Vec<u8>>,
    when: &str,
) {
    check_registry(world, seed, when);
    watched.check(when);
    let neighbour_dir = world.lib().join("models/neighbour");
    assert_eq!(
        &snapshot(&neighbour_dir, &[]),
        neighbour,
        "{when}: the neighbour model changed"
    );
    let victim = world.lib().join("models/victim");
    for (path, node) in snapshot(&victim, &[]) {
        if let Node::File { .. } = node {
            let rel = path.to_string_lossy().into_owned();
            let want = files
                .get(&rel)
                .unwrap_or_else(|| panic!("{when}: unexpected {rel} in the model folder"));
            assert_eq!(
                &fs::read(victim.join(&path)).unwrap(),
                want,
                "{when}: {rel}"
            );
        }
    }
    let models = world.list(&format!("{when}, then list --json"));
    let victim_row = row(&models, "victim").expect("a registered model is always listed");
    if victim_row["status"] == "downloaded" {
        for rel in ["model.gguf", "config.json"] {
            assert_eq!(
                fs::read(victim.join(rel)).ok().as_ref(),
                Some(&files[rel]),
                "{when}: listed as downloaded without {rel}: {victim_row}"
            );
        }
    }
    let neighbour_row = row(&models, "neighbour").expect("neighbour listed");
    assert_eq!(
        neighbour_row["status"], "downloaded",
        "{when}: {neighbour_row}"
    );
}

#[test]
fn deletes_killed_at_random_touch_nothing_else_and_can_be_finished() {
    const TEST: &str = "deletes_killed_at_random_touch_nothing_else_and_can_be_finished";
    let files = victim_files();
    let typical = {
        let (world, _) = delete_world(&files);
        timed(|| {
            let ran = run(&mut world.cmd(&delete_args()));
            assert!(ran.ok(), "calibration: {}", ran.describe());
        })
    };
    random_cases(TEST, |case, rng, tally| {
        let (world, seed) = delete_world(&files);
        let watched = world.untouched(&[]);
        let neighbour = snapshot(&world.lib().join("models/neighbour"), &[]);
        let mut when = format!("case {case}");
        for k in 0..1 + rng.below(2) {
            let ran = if rng.chance(0.5) {
                let delay = random_delay(rng, typical);
                when = format!("{when}; delete {k} killed after {delay:?}");
                run_killed(&mut world.cmd(&delete_args()), Trigger::After(delay))
            } else {
                // As soon as a random shard folder is gone: mid-delete for sure.
                let shard = world.lib().join(format!(
                    "models/victim/shards/d{:02}",
                    rng.below(SHARD_DIRS)
                ));
                when = format!(
                    "{when}; delete {k} killed once {} was gone",
                    shard.display()
                );
                let gone = || !shard.exists();
                run_killed(&mut world.cmd(&delete_args()), Trigger::When(&gone))
            };
            tally.count(&ran, delete_stage(&world, &files), &world);
            check_delete_after_kill(&world, &seed, &watched, &neighbour, &files, &when);
            if !ran.killed() {
                assert!(ran.ok(), "{when}: {}", ran.describe());
                break;
            }
        }
        let leftover = world.lib().join("models/victim").exists()
            || world.lib().join(".downloads/victim").exists();
        let ran = run(&mut world.cmd(&delete_args()));
        let when = format!("{when}, then delete again");
        if leftover {
            assert!(ran.ok(), "{when}: {}", ran.describe());
        } else {
            assert!(
                ran.stderr.contains("nothing on disk to delete"),
                "{when}: {}",
                ran.describe()
            );
        }
        assert!(!world.lib().join("models/victim").exists(), "{when}");
        assert!(!world.lib().join(".downloads/victim").exists(), "{when}");
        check_registry(&world, &seed, &when);
        watched.check(&when);
        let models = world.list(&when);
        let victim_row = row(&models, "victim").expect("still registered");
        assert_eq!(victim_row["status"], "available", "{when}: {victim_row}");
        assert_eq!(
            snapshot(&world.lib().join("models/neighbour"), &[]),
            neighbour,
            "{when}"
        );
    });
}

// ---------------------------------------------------------------------------------------
// The checks themselves

/// Each check fails on the state it exists to catch, so that a crash test passing means
/// something: a file changed or added outside the library, a registry that lost a field or
/// is torn, a part that is not a prefix, an incomplete file in `models/`, a listing that
/// calls an incomplete model downloaded, data whole nowhere, a half-done import, a leftover
/// journal, and a crash point that is never reached.
#[test]
fn the_checks_catch_what_they_are_for() {
    fn fails(what: &str, check: impl FnOnce()) {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
        assert!(caught.is_err(), "the check did not catch {what}");
    }

    // Outside the library.
    let world = World::new();
    let watched = world.untouched(&[]);
    watched.check("as made");
    fs::write(world.outside().join("data/a.bin"), random_bytes(99, 70_000)).unwrap();
    fails("a changed file outside", || watched.check("changed"));
    let world = World::new();
    let watched = world.untouched(&[]);
    fs::create_dir_all(world.home().join("data")).unwrap();
    fails("a new folder in the home", || watched.check("home"));

    // The registry.
    let world = World::new();
    let seed = seed_registry(&world, Vec::new());
    check_registry(&world, &seed, "as seeded");
    let write = |doc: &Value| fs::write(world.registry_path(), doc.to_string()).unwrap();
    let mut doc = seed.clone();
    doc.as_object_mut().unwrap().remove("x-trailer");
    write(&doc);
    fails("a lost top-level field", || {
        check_registry(&world, &seed, "lost");
    });
    let mut doc = seed.clone();
    doc["models"][1].as_object_mut().unwrap().remove("x-nested");
    write(&doc);
    fails("a lost entry field", || {
        check_registry(&world, &seed, "lost");
    });
    let mut doc = seed.clone();
    doc["models"][0]["files"][0]
        .as_object_mut()
        .unwrap()
        .remove("x-mirror");
    write(&doc);
    fails("a lost file field", || {
        check_registry(&world, &seed, "lost");
    });
    fs::write(world.registry_path(), r#"{"version": 1, "models": ["#).unwrap();
    fails("a torn registry", || {
        check_registry(&world, &seed, "torn");
    });

    // Downloads.
    let server = TestServer::start();
    let world = World::new();
    let dl = Download::serve(&server, "m", 3);
    dl.check_disk(&world, "nothing yet");
    let part = dl.part(&world, &dl.files[0]);
    fs::create_dir_all(part.parent().unwrap()).unwrap();
    let mut wrong = dl.files[0].bytes[..1000].to_vec();
    wrong[500] ^= 1;
    fs::write(&part, &wrong).unwrap();
    fails("a part that is not a prefix", || {
        dl.check_disk(&world, "bad part")
    });
    fs::remove_file(&part).unwrap();
    let placed = dl.placed(&world, &dl.files[1]);
    fs::create_dir_all(placed.parent().unwrap()).unwrap();
    let bytes = &dl.files[1].bytes;
    fs::write(&placed, &bytes[..bytes.len() - 1]).unwrap();
    fails("an incomplete file in models/", || {
        dl.check_disk(&world, "short file")
    });
    let listed = vec![json!({"id": "dl", "status": "downloaded"})];
    fails("downloaded while incomplete", || {
        dl.check_listing(&world, &listed, "listing")
    });

    // Imports.
    let world = World::new();
    let import = Import::new(&world, IMPORT_ID, Mode::MoveSameFs, Shape::Folder, 1);
    import.check_data(&world, "as made");
    fs::remove_file(import.source_of("model.gguf")).unwrap();
    fails("data whole nowhere", || import.check_data(&world, "lost"));
    let world = World::new();
    let seed = seed_registry(&world, Vec::new());
    let import = Import::new(&world, IMPORT_ID, Mode::Copy, Shape::File, 2);
    let watched = import.untouched(&world);
    fs::create_dir_all(import.model_dir(&world)).unwrap();
    for (rel, bytes) in &import.files {
        fs::write(import.model_dir(&world).join(rel), bytes).unwrap();
    }
    fails("a half-done import", || {
        import.settle(&world, &seed, &watched, &[], "half done");
    });
    fs::remove_dir_all(import.model_dir(&world)).unwrap();
    assert_eq!(
        import.settle(&world, &seed, &watched, &[], "not begun"),
        End::Discarded
    );
    fs::create_dir_all(world.lib().join(".cache/imports")).unwrap();
    fs::write(import.journal(&world), b"{}\n").unwrap();
    fails("a leftover journal", || {
        import.settle(&world, &seed, &watched, &[], "leftover");
    });

    // A crash point that the run never reaches is no crash.
    fails("a run that never reached its crash point", || {
        crash_at(&mut world.cmd(&["list", "--json"]), "no.such.point");
    });
}
