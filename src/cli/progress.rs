//! Progress on stderr for the commands that wait: a bar for a scan and for a download
//! (indicatif) when stderr is a terminal; plain lines every few seconds when it is not (a
//! log, a pipe), so nothing there is redrawn in place. Touches nothing but stderr.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::library::{DownloadProgress, ScanProgress};

/// A scan that has run this long gets a bar (a quick listing shows none).
const SHOW_AFTER: Duration = Duration::from_millis(500);

/// Lines written at most this often when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// A thread that draws progress until dropped (then woken and joined).
struct Follower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Runs `follow` on a thread named `name`; it returns once the flag it gets is set.
    fn start(name: &str, follow: impl FnOnce(&AtomicBool) + Send + 'static) -> Option<Follower> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || follow(&flag))
            .ok()?;
        Some(Follower {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// A bar that follows a scan's progress from a thread of its own until dropped.
pub struct ScanBar {
    _follower: Follower,
}

impl ScanBar {
    /// Follows `progress` while the caller scans (nothing when stderr is not a terminal:
    /// a scan takes seconds at most, and its result says the rest).
    pub fn start(progress: Arc<ScanProgress>) -> Option<ScanBar> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        Follower::start("scan-progress", move |stop| follow_scan(&progress, stop))
            .map(|f| ScanBar { _follower: f })
    }
}

fn follow_scan(progress: &ScanProgress, stop: &AtomicBool) {
    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    while !stop.load(Ordering::Relaxed) {
        let reading = progress.read();
        if reading.running && started.elapsed() >= SHOW_AFTER {
            let bar = bar.get_or_insert_with(|| {
                let b = ProgressBar::with_draw_target(
                    Some(reading.total),
                    ProgressDrawTarget::stderr(),
                );
                b.set_style(
                    ProgressStyle::with_template(
                        "scanning {bar:30} {pos}/{len} models  {per_sec}  ETA {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            });
            bar.set_length(reading.total);
            bar.set_position(reading.done);
        }
        // Woken at once when the bar is dropped (no wait at the end of a command).
        std::thread::park_timeout(Duration::from_millis(100));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// A download's progress: a bar on a terminal, else a line every few seconds.
pub struct DownloadBar {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
}

impl DownloadBar {
    /// Progress for a download about to start.
    pub fn new() -> DownloadBar {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        DownloadBar {
            bar,
            last_line: None,
        }
    }

    /// Shows `p`.
    pub fn show(&mut self, p: &DownloadProgress) {
        match &self.bar {
            Some(bar) => {
                if let Some(total) = p.bytes_total {
                    bar.set_length(total);
                }
                bar.set_position(p.bytes_done);
                bar.set_message(format!(
                    "file {}/{}",
                    (p.files_done + 1).min(p.files_total),
                    p.files_total
                ));
            }
            None => {
                if self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY) {
                    self.last_line = Some(Instant::now());
                    let _ = writeln!(
                        std::io::stderr().lock(),
                        "{}",
                        crate::util::progress_line(p)
                    );
                }
            }
        }
    }

    /// Takes the bar off the terminal.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A bar that follows a verify run (bytes read, files checked) from a thread of its own
/// until dropped; on a log or a pipe, a line every few seconds.
pub struct VerifyBar {
    _follower: Follower,
}

impl VerifyBar {
    /// Follows `progress` while the caller verifies.
    pub fn start(progress: Arc<crate::library::verify::VerifyProgress>) -> Option<VerifyBar> {
        Follower::start("verify-progress", move |stop| {
            follow_verify(&progress, stop)
        })
        .map(|f| VerifyBar { _follower: f })
    }
}

fn follow_verify(progress: &crate::library::verify::VerifyProgress, stop: &AtomicBool) {
    let read = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let mut last_line = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let (done, total) = (read(&progress.done_bytes), read(&progress.total_bytes));
        let files = format!(
            "{}/{} files",
            read(&progress.done_files),
            read(&progress.total_files)
        );
        if terminal && started.elapsed() >= SHOW_AFTER {
            let bar = bar.get_or_insert_with(|| {
                let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                b.set_style(
                    ProgressStyle::with_template(
                        "verifying {bar:30} {bytes}/{total_bytes}  {bytes_per_sec}  ETA {eta}  {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            });
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(files);
        } else if !terminal && last_line.elapsed() >= LINE_EVERY {
            let _ = writeln!(
                std::io::stderr(),
                "model-library: verifying: {} of {} MiB read, {files}",
                done >> 20,
                total >> 20
            );
            last_line = Instant::now();
        }
        // Woken at once when the bar is dropped (no wait at the end of a command).
        std::thread::park_timeout(Duration::from_millis(100));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
