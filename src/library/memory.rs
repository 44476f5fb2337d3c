//! Process memory housekeeping for a long-running service (the window, `serve`): the C
//! allocator keeps memory freed by a scan or an encoding for reuse, per thread arena, so a
//! settled process would keep its peak resident. Leaf module: owns no state and knows
//! nothing of the library; on other platforms these do nothing.

/// Limits the allocator to two arenas. Scans run on a pool of threads and every request
/// of the server may run on another blocking thread; with one arena per thread, memory
/// freed in one cannot serve another, and the peak of each stays resident. Call once,
/// first thing in `main`, before threads start.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes an allocator parameter; called before other threads
    // exist, so no allocation races with it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns memory the allocator holds free to the system: called after a new full listing
/// replaced the old one (the old rows, the scan's and the save's buffers are free then).
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` is thread-safe and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
