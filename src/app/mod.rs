//! The window (placeholder while it is written).
use std::path::PathBuf;
/// Opens the window.
pub fn run_window(_library: Option<PathBuf>) -> i32 {
    1
}
