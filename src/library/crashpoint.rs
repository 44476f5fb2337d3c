//! Named crash points for the crash tests (a leaf of the core). Each step of a write that
//! must survive a kill (import, download, delete) calls [`hit`] with its name at the moment
//! a kill would hurt most; when the environment variable `MODEL_LIBRARY_CRASH_AT` names
//! that point, the process kills itself with `SIGKILL` right there — no destructors, no
//! flushing, exactly like a machine losing the process. `NAME#N` kills at the N-th time the
//! point is reached (1-based). Without the variable a point costs one atomic load.
//!
//! Owns nothing else: it never writes, and a point's name is only a label.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable naming the point to crash at.
pub const ENV: &str = "MODEL_LIBRARY_CRASH_AT";

struct Target {
    name: String,
    nth: u64,
    seen: AtomicU64,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let value = std::env::var(ENV).ok().filter(|v| !v.is_empty())?;
            let (name, nth) = match value.split_once('#') {
                Some((name, n)) => (name.to_string(), n.parse().unwrap_or(1)),
                None => (value, 1),
            };
            Some(Target {
                name,
                nth,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Marks crash point `name`; kills the process here when the environment asks for it.
pub fn hit(name: &str) {
    let Some(target) = target() else {
        return;
    };
    if target.name == name && target.seen.fetch_add(1, Ordering::SeqCst) + 1 == target.nth {
        kill_self();
    }
}

#[cfg(unix)]
fn kill_self() -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    // SIGKILL cannot be caught; should it somehow not land, end as abruptly as we can.
    std::process::abort()
}
