//! Process memory housekeeping for a long-running service (the window, `serve`): the C
//! allocator keeps memory freed by a scan or an encoding for reuse, per thread arena, so a
//! settled process would keep its peak resident. Leaf module: owns no state and knows
//! nothing of the library; on other platforms these do nothing.

/// Tunes the C allocator for a long-running process. Call once, first thing in `main`,
/// before threads start.
///
/// - Two arenas. Scans run on a pool of threads and every request of the server may run on
///   another blocking thread; with one arena per thread, memory freed in one cannot serve
///   another, and the peak of each stays resident.
/// - Blocks of 128 KiB and more always get mappings of their own. By default the threshold
///   rises to the size of the largest block freed (up to 32 MiB), so after one listing was
///   encoded, its multi-megabyte buffers come from the heap, where what is freed around
///   long-lived rows cannot be given back: at 100 000 models that cost ~0.6 KiB per model
///   of resident memory (`bench --process --no-list`: 1754 → 1166 B per model).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; called before other threads
    // exist, so no allocation races with it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
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
