//! Whole-process benchmarks (issue #13), with the release binary `model-library` beside this
//! example (`cargo build --release` first):
//!
//! - `list --json --force-refresh` against `du -sb models/` on the same tree, alternating,
//!   warm page cache and (when allowed) cold;
//! - `serve`: resident memory after its first listing, against an empty library (the
//!   growth per model), and the time to the first byte and to the last of a repeated
//!   `GET /api/models/library` on a fresh connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{drop_page_cache, du, fmt, median};

/// The release binary next to this example (`target/release/model-library`).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/release")
        .join("model-library");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release` first",
        bin.display()
    );
    bin
}

fn list_json(bin: &Path, root: &Path) -> Duration {
    let t = Instant::now();
    let status = Command::new(bin)
        .args([
            "--library",
            root.to_str().unwrap(),
            "list",
            "--json",
            "--force-refresh",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run model-library");
    let d = t.elapsed();
    assert!(status.success(), "list --json failed");
    d
}

/// Medians of `reps` alternating runs of `list --json --force-refresh` and `du -sb`, each
/// after dropping the page cache when `cold`.
pub fn list_vs_du(
    bin: &Path,
    root: &Path,
    reps: usize,
    cold: bool,
) -> Option<(Vec<Duration>, Vec<Duration>)> {
    let models = root.join("models");
    if !cold {
        list_json(bin, root); // warm the page cache and the binary
        du(&models);
    }
    let (mut lists, mut dus) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        if cold && !drop_page_cache() {
            return None;
        }
        lists.push(list_json(bin, root));
        if cold && !drop_page_cache() {
            return None;
        }
        dus.push(du(&models));
    }
    Some((lists, dus))
}

/// A `model-library serve` child on a free port.
pub struct Serve {
    child: Child,
    pub addr: SocketAddr,
}

impl Serve {
    pub fn start(bin: &Path, root: &Path) -> Serve {
        let mut child = Command::new(bin)
            .args(["--library", root.to_str().unwrap(), "serve", "--port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            let n = lines.read_line(&mut line).expect("read serve's stderr");
            assert!(n > 0, "serve exited before listening");
            if let Some(rest) = line.trim().strip_prefix("listening on http://") {
                break rest.parse().expect("address");
            }
        };
        // Keep draining stderr so the child never blocks on it.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = lines.read_to_end(&mut sink);
        });
        Serve { child, addr }
    }

    /// One request on a fresh connection: (time to the first byte, time to the last, body
    /// bytes).
    pub fn get(&self, path: &str, gzip: bool) -> (Duration, Duration, usize) {
        let t = Instant::now();
        let mut s = TcpStream::connect(self.addr).expect("connect");
        let accept = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
        )
        .expect("send");
        let mut first = [0u8; 1];
        s.read_exact(&mut first).expect("first byte");
        let first_byte = t.elapsed();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("read the answer");
        let all = t.elapsed();
        let head_end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |p| p + 4);
        assert!(
            rest.starts_with(b"TTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&rest[..rest.len().min(200)])
        );
        (first_byte, all, rest.len() - head_end)
    }

    /// Resident set size of the server process, bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    /// Waits (bounded) until the server has a full listing and its watching is set up, so
    /// the memory read afterwards is that of a settled server.
    pub fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            self.get("/api/models/library", false);
            let mut s = TcpStream::connect(self.addr).expect("connect");
            write!(
                s,
                "GET /api/models/cache-info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            .expect("send");
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let info: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            if !info["service_cache"]["freshness_bound_seconds"].is_null() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200)); // a request rate, not a wait for a condition
        }
        panic!("serve did not settle within 300 s");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Models in the library of one screen of rows.
pub const SCREEN_MODELS: usize = 100;

/// Resident memory of the window (the binary without a command) on `root`, once it has
/// settled: its resident size unchanged for 3 s (at most 180 s). `None` without a display.
pub fn window_rss(bin: &Path, root: &Path) -> Option<u64> {
    std::env::var_os("DISPLAY")?;
    let mut child = Command::new(bin)
        .args(["--library", root.to_str().unwrap()])
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the window");
    let rss = || -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let (mut last, mut since) = (0u64, Instant::now());
    let settled = loop {
        let Some(now) = rss() else { break None };
        if now.abs_diff(last) > 256 * 1024 {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_secs(3) {
            break Some(now);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(250)); // a sampling rate, not a wait for a condition
    };
    let _ = child.kill();
    let _ = child.wait();
    settled
}

/// The whole-process report for one generated library of `n` models.
/// `list` runs `list --json` against `du` first.
/// `screen` is a library of one screen of rows (100 models), for the window's cost per model
/// past the fixed cost of drawing a table at all.
pub fn report(
    bin: &Path,
    root: &Path,
    empty: &Path,
    screen: &Path,
    n: usize,
    reps: usize,
    list: bool,
) {
    println!("### {n} models\n");
    println!("| measure | median | worst | ratio / target |");
    println!("|---|---|---|---|");
    for cold in [false, true].into_iter().filter(|_| list) {
        let Some((lists, dus)) = list_vs_du(bin, root, reps, cold) else {
            println!("| (cold runs skipped: the page cache cannot be dropped here) | | | |");
            continue;
        };
        let worst = |v: &Vec<Duration>| *v.iter().max().unwrap();
        let (l, d) = (median(lists.clone()), median(dus.clone()));
        let which = if cold { "cold" } else { "warm" };
        println!(
            "| `list --json --force-refresh`, {which} ({reps} runs) | {} | {} | {:.2} × du (target ≤ 0.6) |",
            fmt(l),
            fmt(worst(&lists)),
            l.as_secs_f64() / d.as_secs_f64()
        );
        println!(
            "| `du -sb models/`, {which} | {} | {} | reference |",
            fmt(d),
            fmt(worst(&dus))
        );
    }

    let base = Serve::start(bin, empty);
    base.settle();
    let base_rss = base.rss();
    drop(base);
    let serve = Serve::start(bin, root);
    let t = Instant::now();
    let (_, first_listing, bytes) = serve.get("/api/models/library", false);
    let start_to_listing = t.elapsed().max(first_listing);
    serve.settle();
    let rss = serve.rss();
    println!(
        "| `serve` resident memory after its first listing | {:.1} MiB (empty library: {:.1} MiB) | | {:.0} B per model (target ≤ 1024) |",
        rss as f64 / 1048576.0,
        base_rss as f64 / 1048576.0,
        (rss.saturating_sub(base_rss)) as f64 / n as f64
    );
    println!(
        "| first listing from `serve` ({:.1} MB body) | {} | | |",
        bytes as f64 / 1e6,
        fmt(start_to_listing)
    );
    for gzip in [false, true] {
        serve.get("/api/models/library", gzip); // the body is kept from here on
        let (mut firsts, mut alls) = (Vec::new(), Vec::new());
        let mut size = 0;
        for _ in 0..reps.max(20) {
            let (f, a, b) = serve.get("/api/models/library", gzip);
            firsts.push(f);
            alls.push(a);
            size = b;
        }
        let what = if gzip { "gzip" } else { "plain" };
        println!(
            "| repeated `GET /api/models/library` ({what}, {:.1} MB): first byte | {} | {} | target ≤ 5 ms |",
            size as f64 / 1e6,
            fmt(median(firsts.clone())),
            fmt(*firsts.iter().max().unwrap())
        );
        println!(
            "| … the whole answer read | {} | {} | |",
            fmt(median(alls.clone())),
            fmt(*alls.iter().max().unwrap())
        );
    }
    let rss_after = serve.rss();
    println!(
        "| `serve` resident memory after the repeated requests | {:.1} MiB | | {:.0} B per model |",
        rss_after as f64 / 1048576.0,
        (rss_after.saturating_sub(base_rss)) as f64 / n as f64
    );
    drop(serve);
    match (window_rss(bin, empty), window_rss(bin, root)) {
        (Some(base), Some(full)) => {
            println!(
                "| window resident memory, table shown, settled | {:.1} MiB (empty library: {:.1} MiB) | | {:.0} B per model (target ≤ 1024) |",
                full as f64 / 1048576.0,
                base as f64 / 1048576.0,
                full.saturating_sub(base) as f64 / n as f64
            );
            if let Some(one) = window_rss(bin, screen) {
                println!(
                    "| … past one screen of rows (100 models: {:.1} MiB) | | | {:.0} B per model |",
                    one as f64 / 1048576.0,
                    full.saturating_sub(one) as f64
                        / (n.saturating_sub(SCREEN_MODELS)).max(1) as f64
                );
            }
        }
        _ => println!("| window resident memory | (no display: run under `xvfb-run -a`) | | |"),
    }
    println!();
}
