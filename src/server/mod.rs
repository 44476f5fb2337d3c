//! The HTTP API of the original service (SPEC §7), served on 127.0.0.1 only. A thin shell
//! over [`ModelLibraryService`](crate::library::ModelLibraryService).
//! (Being written: see issue 6.)

use crate::library::Library;

/// Serves the API for `library` on `127.0.0.1:port` until Ctrl-C. Blocks.
pub fn serve_blocking(_library: Library, _port: u16) -> Result<(), String> {
    Err("the HTTP API is not built yet".into())
}
