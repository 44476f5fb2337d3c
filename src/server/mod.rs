//! The HTTP API of the original service (SPEC §7), served on 127.0.0.1 only: a thin shell
//! over one [`ModelLibraryService`], with axum on a tokio runtime.
//!
//! Owns: binding the port, the runtime and graceful shutdown ([`serve_blocking`] for
//! `model-library serve`, [`start`]/[`ServerHandle`] for tests and embedding), routing,
//! request parsing and the JSON shapes of the seed. It never touches the disk itself: every
//! read and write goes through the core (the service, and `Registry::load` to check a
//! download's id), and it holds no cache of its own. It must not grow library logic; that
//! belongs in `crate::library`.
//!
//! # Endpoints
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/models/library?force_refresh=&quick=&provider=&status=&capability=` | `{"models", "total", "cache_hit"}` |
//! | `POST /api/models/refresh` | `{"message", "cache_info", "api_cache_cleared"}` |
//! | `GET /api/models/cache-info` | `{"service_cache", "api_cache"}` (`api_cache.snapshot_hits` added) |
//! | `POST /api/models/cache-config` `{"ttl_seconds": N}` | `{"message", "ttl_seconds"}` |
//! | `POST /api/models/download` `{"model_id": ID}` | 202 and the ModelInfo (501 until downloads land) |
//! | `DELETE /api/models/{id}[?permanent=true]` | `{"message", "model_id", "freed_bytes", "trashed"}` |
//!
//! # Errors
//!
//! Every error answers `{"error": "…"}`, never axum's plain-text rejections. Bad input is a
//! 4xx and changes nothing: malformed JSON, a body that is not a JSON object, a missing,
//! unknown or wrongly typed field, a TTL outside 30..=3600, an invalid id, a bad boolean
//! (only `true`/`false`/`1`/`0`), an unknown status, an unknown or repeated query parameter
//! (every endpoint checks its parameters; those that take none refuse any) → 400; a missing or non-JSON `Content-Type` → 415; a body over 64 KiB → 413; an id with
//! nothing on disk, or not in the registry (download) → 404; an unknown path → 404; a
//! known path with another method → 405 (with `Allow`). A library the service cannot read
//! (missing folder, corrupt registry, I/O error) → 503 with the core's message, which names
//! the file. 500 is left for a panic in the service.
//!
//! # Concurrency: reads during a refresh
//!
//! The service is `&mut self` and blocking, so it sits behind one fair (FIFO) async mutex
//! and every call on it runs on tokio's blocking pool; waiting requests hold no thread.
//! A plain listing (not `quick`, not `force_refresh`) that finds the lock held by a
//! listing or refresh — which may be scanning for seconds — does not wait: it is answered
//! from the service's published snapshot (the last *complete* full listing, an immutable
//! `Arc`, never torn or empty), filtered like any view, with `"cache_hit": true` (it did
//! come from a cache) and the header `x-served-from: snapshot`; such answers are counted
//! in `cache-info` as `api_cache.snapshot_hits`, beside the service's own hits and misses.
//! Every other request waits its turn, so:
//! - `force_refresh` and `quick` listings always come from the service;
//! - a listing never falls back while a delete or download start holds the lock, and the
//!   snapshot current at such a change is never served again (it predates the change):
//!   after a delete is answered, no listing shows the model as it was;
//! - before the first full scan there is no snapshot, and everyone waits for it.
//!
//! The snapshot can therefore be as old as the listing the running scan replaces (the
//! usual stale-while-revalidate trade): a refresh's result is visible to every request
//! that starts after the refresh answered.

mod error;
mod extract;
mod routes;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::library::{Library, ModelLibraryService, ServiceOptions};

/// Serves the API for `library` on `127.0.0.1:port` (0 picks a free port) until Ctrl-C or
/// SIGTERM, then finishes the requests in flight and returns. Prints
/// `listening on http://127.0.0.1:PORT` on stderr once the port is bound. Blocks.
pub fn serve_blocking(
    library: Library,
    port: u16,
    sources: Vec<crate::library::sources::SourceConfig>,
) -> Result<(), String> {
    let service = ModelLibraryService::new(
        library,
        ServiceOptions {
            sources,
            ..ServiceOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let listener = bind(port)?;
    let addr = local_addr(&listener)?;
    let runtime = runtime()?;
    eprintln!("listening on http://{addr}");
    runtime.block_on(serve(listener, service, true, shutdown_signal()))
}

/// Starts serving `service` on `127.0.0.1:port` (0 picks a free port) on a thread of its
/// own and returns once the port is bound. A taken port is an error naming it.
pub fn start(service: ModelLibraryService, port: u16) -> Result<ServerHandle, String> {
    let listener = bind(port)?;
    let addr = local_addr(&listener)?;
    let runtime = runtime()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("model-library-http".into())
        .spawn(move || {
            runtime.block_on(serve(listener, service, false, async {
                // A dropped sender also stops the server.
                let _ = stopped.await;
            }))
        })
        .map_err(|e| format!("cannot start the server thread: {e}"))?;
    Ok(ServerHandle {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// A server started by [`start`]. Dropping it shuts the server down too.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl ServerHandle {
    /// The address the server listens on (`127.0.0.1` and the actual port).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections, lets the requests in flight finish, and waits for the
    /// server thread.
    pub fn shutdown(mut self) -> Result<(), String> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Binds `127.0.0.1:port` (never another interface).
fn bind(port: u16) -> Result<TcpListener, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(addr).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: port {port} is already in use \
             (stop the other server or choose another port with --port)"
        ),
        _ => format!("cannot listen on {addr} (port {port}): {e}"),
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(listener)
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, String> {
    listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("model-library-http")
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Serves until `shutdown` completes, then waits for the requests in flight.
async fn serve(
    listener: TcpListener,
    service: ModelLibraryService,
    watch: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let addr = local_addr(&listener)?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    axum::serve(listener, routes::router(service, watch))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("serving on {addr} failed: {e}"))
}

/// Completes on the first Ctrl-C (or SIGTERM); a second Ctrl-C exits at once, for a
/// shutdown stuck behind a long scan.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: Ctrl-C keeps its default (exit at once).
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    eprintln!("shutting down: finishing requests in flight (Ctrl-C again to stop at once)");
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}
