//! The HTTP API of the original service (SPEC §7), served on 127.0.0.1 only, to programs
//! and pages on this machine only: a thin shell over one [`ModelLibraryService`], with its
//! own HTTP/1.1 front (`conn.rs`, `head.rs`, `guard.rs`) in front of an axum router
//! (`routes.rs`) on a tokio runtime.
//!
//! Owns: binding the port, the runtime and graceful shutdown ([`serve_blocking`] for
//! `model-library serve`, [`start`]/[`start_with`]/[`ServerHandle`] for tests and
//! embedding), [`ServeOptions`] (port, allowed origins, timeouts, body limit), the HTTP
//! front, routing, request parsing and the JSON shapes of the seed. It never touches the
//! disk itself: every read and write goes through the core (the service, and
//! `Registry::load` to check a download's id), and it holds no cache of its own. It must
//! not grow library logic; that belongs in `crate::library`.
//!
//! # Who may drive it
//!
//! Binding 127.0.0.1 keeps other machines out, but not web pages: a page can send requests
//! to `localhost`, and with DNS rebinding (its own name re-resolved to 127.0.0.1) even
//! same-origin ones. So before any handler runs, a request whose `Host` is not a loopback
//! name is refused (403), and so is one whose `Origin` is neither a page on this machine
//! nor allowed with `serve --allow-origin` (403, saying which flag would allow it).
//! Requests without `Origin` (curl, scripts) pass. Allowed origins get CORS answers,
//! preflights included. The exact rules (`localhost.`, a missing `Host`, `Origin: null`)
//! are in `guard.rs`.
//!
//! # Slow and malformed clients
//!
//! Every request head, also the later ones on a kept-alive connection, is read and checked
//! by `conn.rs` under a header timeout and a 64 KiB / 100-field bound before anything else
//! happens; bodies are bounded by the body limit (refused with 413 from the announced
//! length alone, before `100 Continue` would be sent) and a body timeout; idle
//! connections close after the idle timeout. Each connection is its own task, so a slow
//! client holds up no one else. Because the front, not a library, answers malformed
//! requests, every answer the server gives is JSON — nothing is left to an HTTP library's
//! empty-bodied defaults. The only connections closed without an answer are those with no
//! request to answer: silent until the header timeout (or the idle timeout between
//! requests), or closed by the client before its request was complete.
//!
//! # Endpoints
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/models/library?force_refresh=&quick=&provider=&status=&capability=&limit=&offset=` | `{"models", "total", "cache_hit"}` (gzip when accepted) |
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
//! (every endpoint checks its parameters; those that take none refuse any) → 400; a
//! missing or non-JSON `Content-Type` → 415; a body over the limit (64 KiB) → 413; an id
//! with nothing on disk, or not in the registry (download) → 404; an unknown path → 404; a
//! known path with another method → 405 (with `Allow`). A library the service cannot read
//! (missing folder, corrupt registry, I/O error) → 503 with the core's message, which names
//! the file. 500 is left for a panic in the service.
//!
//! Refused before the router (the connection then closes): a foreign `Host` or `Origin` →
//! 403; a malformed request line or header line, a bad or conflicting `Content-Length`, an
//! unframeable `Transfer-Encoding`, a missing or repeated `Host` on HTTP/1.1 → 400; more
//! than 100 header fields or a head over 64 KiB → 431; a head or body not arriving in time
//! → 408; an `Expect` other than `100-continue` → 417; a transfer coding other than
//! chunked → 501.
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

mod bodies;
mod conn;
mod error;
mod extract;
mod guard;
mod head;
mod routes;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::library::{Library, ModelLibraryService, ServiceOptions};

pub use guard::normalize_origin;

/// How `serve` listens and the bounds it holds clients to. [`Default`] is what
/// `model-library serve` uses; tests shorten the timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Web origins allowed besides pages on this machine (`--allow-origin`), each
    /// `scheme://host[:port]` or `null`; see [`normalize_origin`].
    pub allow_origins: Vec<String>,
    /// A whole request head must arrive within this (from the accept for a connection's
    /// first request, from its first byte for later ones); 408 otherwise.
    pub header_timeout: Duration,
    /// A whole request body must arrive within this after its head; 408 otherwise.
    pub body_timeout: Duration,
    /// A kept-alive connection with no new request for this long is closed.
    pub idle_timeout: Duration,
    /// Each write of an answer must make progress within this, or the client is dropped.
    pub write_timeout: Duration,
    /// Largest request body, in bytes; larger is 413, refused before it is read.
    pub body_limit: usize,
    /// How `serve` watches the library (`--watch`); [`start_with`] takes a service made
    /// with its own options and ignores this.
    pub watch: crate::library::watch::WatchOption,
    /// The shared cache tier's Redis URL (`--redis`), if any.
    pub redis: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            port: 8000,
            allow_origins: Vec::new(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            body_limit: 64 * 1024,
            watch: crate::library::watch::WatchOption::Auto,
            redis: None,
        }
    }
}

/// Serves the API for `library` on `127.0.0.1:options.port` until Ctrl-C or SIGTERM, then
/// finishes the requests in flight and returns. Prints `listening on http://127.0.0.1:PORT`
/// on stderr once the port is bound. Blocks.
pub fn serve_blocking(
    library: Library,
    options: ServeOptions,
    sources: Vec<crate::library::sources::SourceConfig>,
) -> Result<(), String> {
    let front = Front::new(&options)?;
    let service = ModelLibraryService::new(
        library,
        ServiceOptions {
            sources,
            watch: options.watch,
            redis: options.redis.clone(),
            ..ServiceOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let listener = bind(options.port)?;
    let addr = local_addr(&listener)?;
    let runtime = runtime()?;
    eprintln!("listening on http://{addr}");
    runtime.block_on(serve(listener, service, front, shutdown_signal()))
}

/// Starts serving `service` on `127.0.0.1:port` (0 picks a free port) with the default
/// options; see [`start_with`].
pub fn start(service: ModelLibraryService, port: u16) -> Result<ServerHandle, String> {
    start_with(
        service,
        ServeOptions {
            port,
            ..ServeOptions::default()
        },
    )
}

/// Starts serving `service` on `127.0.0.1:options.port` on a thread of its own and returns
/// once the port is bound. A taken port, or an origin that is not one, is an error naming
/// it.
pub fn start_with(
    service: ModelLibraryService,
    options: ServeOptions,
) -> Result<ServerHandle, String> {
    let front = Front::new(&options)?;
    let listener = bind(options.port)?;
    let addr = local_addr(&listener)?;
    let runtime = runtime()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("model-library-http".into())
        .spawn(move || {
            runtime.block_on(serve(listener, service, front, async {
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

/// The checked options the connections need, built before anything is bound.
struct Front {
    guard: guard::Guard,
    limits: conn::Limits,
}

impl Front {
    fn new(options: &ServeOptions) -> Result<Front, String> {
        Ok(Front {
            guard: guard::Guard::new(&options.allow_origins)?,
            limits: conn::Limits {
                header_timeout: options.header_timeout,
                body_timeout: options.body_timeout,
                idle_timeout: options.idle_timeout,
                write_timeout: options.write_timeout,
                body_limit: options.body_limit,
            },
        })
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
    front: Front,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let addr = local_addr(&listener)?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let shared = Arc::new(conn::Shared {
        router: routes::router(service, front.limits.body_limit),
        guard: front.guard,
        limits: front.limits,
    });
    conn::serve(listener, shared, shutdown).await;
    Ok(())
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
