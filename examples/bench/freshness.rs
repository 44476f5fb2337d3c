//! Freshness benchmarks (issue #11): how long a change on disk takes to show in a served
//! listing, with file events and with the polling verifier; the verifier's CPU share; and
//! the time from start until the service can state a freshness bound.
//!
//! Each trial truncates one file of a complete registered model in place (a size mismatch,
//! so the model turns `error`) and polls `GET /api/models/library?status=error` of a real
//! server on 127.0.0.1 every 20 ms until the model is there; then the file is restored and
//! the trial waits until it is gone again.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use model_library::library::watch::WatchOption;
use model_library::library::watch::verifier::VerifierOptions;
use model_library::library::{Library, ListKind, ModelLibraryService, ModelStatus, ServiceOptions};
use model_library::server;

use super::fmt;

/// CPU time (user + system) in a `stat` file of /proc (fields 14 and 15, in USER_HZ: 100
/// per second on Linux).
fn cpu_in(stat_file: &std::path::Path) -> Duration {
    let stat = std::fs::read_to_string(stat_file).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// CPU time this process has used so far.
fn cpu_time() -> Duration {
    cpu_in(std::path::Path::new("/proc/self/stat"))
}

/// CPU time the threads named `name` (as /proc shows them, 15 characters) used so far.
fn thread_cpu_time(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| cpu_in(&t.path().join("stat")))
        .sum()
}

struct Server {
    handle: server::ServerHandle,
    agent: ureq::Agent,
}

impl Server {
    fn start(library: &Library, watch: WatchOption) -> (Server, Instant) {
        let started = Instant::now();
        let service = ModelLibraryService::new(
            library.clone(),
            ServiceOptions {
                persist: false,
                watch,
                verifier: VerifierOptions::default(),
                ..ServiceOptions::default()
            },
        )
        .expect("service");
        let handle = server::start(service, 0).expect("server");
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        (Server { handle, agent }, started)
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let mut answer = self
            .agent
            .get(format!("{}{path}", self.handle.url()))
            .call()
            .expect("GET");
        serde_json::from_reader(answer.body_mut().as_reader()).expect("JSON")
    }

    fn error_ids(&self) -> HashSet<String> {
        self.get("/api/models/library?status=error")["models"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Polls until `done` holds for the error ids; the time it took, or `None` after
    /// `limit`.
    fn until(&self, limit: Duration, done: impl Fn(&HashSet<String>) -> bool) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if done(&self.error_ids()) {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn cache_info(&self) -> serde_json::Value {
        self.get("/api/models/cache-info")
    }
}

/// Complete registered models in a random order (the verifier walks the listing in order,
/// so victims in listing order would meet it early) and their first file (path, size), to
/// truncate in trials.
fn victims(library: &Library, count: usize) -> Vec<(String, PathBuf, u64)> {
    let mut svc =
        ModelLibraryService::new(library.clone(), ServiceOptions::default()).expect("service");
    let listing = svc.list(ListKind::Full, false).expect("scan");
    let mut candidates: Vec<_> = listing
        .models
        .iter()
        .filter(|m| m.registered && m.status == ModelStatus::Downloaded)
        .collect();
    // Fisher-Yates with a xorshift seeded from the clock.
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    for i in (1..candidates.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        candidates.swap(i, (x % (i as u64 + 1)) as usize);
    }
    candidates
        .into_iter()
        .filter_map(|m| {
            let file = std::fs::read_dir(m.path())
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.is_file())?;
            let len = std::fs::metadata(&file).ok()?.len();
            Some((m.id.clone(), file, len))
        })
        .take(count)
        .collect()
}

/// Runs `trials` truncate-and-restore trials; the times until each change was served.
fn trials(server: &Server, victims: &[(String, PathBuf, u64)], limit: Duration) -> Vec<Duration> {
    let mut took = Vec::new();
    for (id, file, len) in victims {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .expect("open");
        f.set_len(len / 2).expect("truncate");
        match server.until(limit, |ids| ids.contains(id)) {
            Some(d) => took.push(d),
            None => eprintln!("  {id}: not visible within {limit:?}"),
        }
        f.set_len(*len).expect("restore");
        let _ = server.until(limit, |ids| !ids.contains(id));
    }
    took
}

fn summary(mut took: Vec<Duration>) -> String {
    if took.is_empty() {
        return "-".into();
    }
    took.sort();
    format!(
        "median {}, worst {} ({} trials)",
        fmt(took[took.len() / 2]),
        fmt(*took.last().expect("non-empty")),
        took.len()
    )
}

/// Waits until the server states a freshness bound; the time since `started`.
fn until_bound(server: &Server, started: Instant) -> (Duration, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let info = server.cache_info();
        if !info["service_cache"]["freshness_bound_seconds"].is_null() || Instant::now() > deadline
        {
            return (started.elapsed(), info);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many model folders the hybrid mode polls, from its description.
fn polled_count(mode: &str) -> Option<usize> {
    let rest = mode.split_once("polling modification times of ")?.1;
    rest.split_whitespace().next()?.parse().ok()
}

/// The hybrid mode's own figures: changes inside polled model folders (the set-up watches
/// models in name order until the budget is spent, so the last names are polled), and the
/// verifier's CPU share while it polls only them.
fn hybrid(
    server: &Server,
    library: &Library,
    n: usize,
    polled: usize,
    count: usize,
) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(library.models_dir())
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort_unstable();
    let last: HashSet<String> = names.iter().rev().take(polled / 2).cloned().collect();
    let picks: Vec<_> = victims(library, usize::MAX)
        .into_iter()
        .filter(|(id, _, _)| last.contains(id))
        .take(count)
        .collect();
    let idle = Duration::from_secs(60);
    let verifier0 = thread_cpu_time("model-library-v");
    let t0 = Instant::now();
    std::thread::sleep(idle);
    let verifier =
        (thread_cpu_time("model-library-v") - verifier0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let bound = server.cache_info()["service_cache"]["freshness_bound_seconds"]
        .as_f64()
        .unwrap_or(60.0);
    let took = trials(server, &picks, Duration::from_secs_f64(bound * 2.0 + 5.0));
    vec![
        format!(
            "| {n} | auto (hybrid) | CPU of the verifier thread, idle | {:.2} % of one core | {polled} folders polled, over {} s |",
            verifier * 100.0,
            idle.as_secs()
        ),
        format!(
            "| {n} | auto (hybrid) | change in a polled model → served | {} | bound stated: {bound} s |",
            summary(took)
        ),
    ]
}

/// The freshness figures for the library at `root` of `n` models, as report lines.
pub fn run(
    root: &std::path::Path,
    n: usize,
    event_trials: usize,
    poll_trials: usize,
) -> Vec<String> {
    let library = Library::new(root);
    let mut out = Vec::new();
    let picks = victims(&library, event_trials.max(poll_trials));

    // File events (auto: events, falling back to polling where they cannot work).
    let (server, started) = Server::start(&library, WatchOption::Auto);
    server.get("/api/models/library?status=error"); // the first answer
    let (to_bound, info) = until_bound(&server, started);
    let mode = info["service_cache"]["watch_mode"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    out.push(format!(
        "| {n} | auto | start to a stated bound | {} | {mode} |",
        fmt(to_bound)
    ));
    let bound = info["service_cache"]["freshness_bound_seconds"]
        .as_f64()
        .unwrap_or(60.0);
    let limit = Duration::from_secs_f64(bound * 3.0 + 5.0);
    let took = trials(&server, &picks[..event_trials.min(picks.len())], limit);
    out.push(format!(
        "| {n} | auto | change → served | {} | bound stated: {bound} s |",
        summary(took)
    ));
    if let Some(polled) = polled_count(&mode) {
        out.extend(hybrid(&server, &library, n, polled, poll_trials.max(5)));
    }
    drop(server);

    // Forced polling: the verifier's period, the change → served time, and its CPU share
    // over a minute with nothing else to do.
    let (server, started) = Server::start(&library, WatchOption::Poll);
    server.get("/api/models/library?status=error");
    let (to_bound, info) = until_bound(&server, started);
    let bound = info["service_cache"]["freshness_bound_seconds"]
        .as_f64()
        .unwrap_or(60.0);
    out.push(format!(
        "| {n} | poll | start to a stated bound | {} | bound stated: {bound} s |",
        fmt(to_bound)
    ));
    let idle = Duration::from_secs(120);
    let cpu0 = cpu_time();
    let verifier0 = thread_cpu_time("model-library-v");
    let t0 = Instant::now();
    std::thread::sleep(idle);
    let secs = t0.elapsed().as_secs_f64();
    let share = (cpu_time() - cpu0).as_secs_f64() / secs;
    let verifier = (thread_cpu_time("model-library-v") - verifier0).as_secs_f64() / secs;
    out.push(format!(
        "| {n} | poll | CPU of the verifier thread, idle | {:.2} % of one core | over {} s |",
        verifier * 100.0,
        idle.as_secs()
    ));
    out.push(format!(
        "| {n} | poll | CPU of the whole process, idle | {:.2} % of one core | incl. the first \
         reading of every model's header |",
        share * 100.0
    ));
    // The verifier may have stretched its period (and the bound) to keep to its CPU share.
    let bound_now = server.cache_info()["service_cache"]["freshness_bound_seconds"]
        .as_f64()
        .unwrap_or(bound);
    let limit = Duration::from_secs_f64(bound_now * 2.0 + 5.0);
    let took = trials(&server, &picks[..poll_trials.min(picks.len())], limit);
    let info = server.cache_info();
    let bound_after = info["service_cache"]["freshness_bound_seconds"]
        .as_f64()
        .unwrap_or(0.0);
    out.push(format!(
        "| {n} | poll | change → served | {} | bound stated: {bound_after} s |",
        summary(took)
    ));
    out
}
