//! The HTTP/1.1 connections: the accept loop, and for each connection the loop that reads
//! a request head and body under time and size bounds, checks them, hands the request to
//! the router and writes the answer, until the connection closes.
//!
//! Owns: sockets, the timeouts ([`Limits`]), keep-alive, `100 Continue`, writing answers
//! (status line, `Date`, `Content-Length`, `Connection: close`; a kept listing body
//! inflated as it is written), closing politely (a lingering close so a refused client
//! still reads its answer), and graceful shutdown. It must not decide what is malformed
//! (`head.rs`), who is allowed (`guard.rs`) or what an endpoint answers (`routes.rs`).
//!
//! # Why not hyper
//!
//! hyper answers a malformed request itself, with an empty body, and sends `100 Continue`
//! as soon as a handler looks at the body. Here every request head — the first on a
//! connection and every later one on a kept-alive connection — is read by this module
//! (bounded by [`HEAD_LIMIT`](super::head::HEAD_LIMIT) and the header timeout) and checked
//! before anything else happens, so every refusal, including a malformed request line, a
//! header without a colon, too many headers, a bad `Content-Length`, an oversized body or a
//! timeout, is answered with `{"error": "…"}`. Bodies (at most the body limit) are read
//! whole before the router runs, so a handler never waits on a slow client.
//!
//! # Timeouts
//!
//! - header: the whole head must arrive within it, counted from the accept for a
//!   connection's first request and from the first byte for later ones; a partial head is
//!   answered 408, a connection that sent nothing is closed silently;
//! - body: the whole body must arrive within it after the head (408 otherwise);
//! - idle: a kept-alive connection with no new request within it is closed;
//! - write: each write of an answer must make progress within it (a client that does not
//!   read is dropped).
//!
//! Each connection is its own task, so slow clients never hold up others. After any refusal
//! or timeout the connection is closed (`Connection: close`): the rest of what the client
//! sends cannot be framed reliably. Answers from the router keep the connection open unless
//! the client asked to close, spoke HTTP/1.0, or the server is shutting down. At shutdown
//! the listener closes at once, idle and half-read connections are closed, and requests
//! already read are answered before their connection closes.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};

use super::bodies::Kept;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tower::ServiceExt;

use super::error::ApiError;
use super::guard::{self, Guard};
use super::head::{self, ChunkedDecoder, Framing, HEAD_LIMIT, Head};

/// How long a closing connection keeps reading (and discarding) what the client still sends
/// after its answer, so that the client reads the answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;
/// Largest piece of an answer written at once (each under the write timeout).
const WRITE_CHUNK: usize = 64 * 1024;

/// The bounds every connection is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) body_limit: usize,
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) router: Router,
    pub(crate) guard: Guard,
    pub(crate) limits: Limits,
}

/// Accepts connections until `shutdown` completes, then closes the listener, stops idle
/// connections and waits for the requests in flight to be answered.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` ends once all of them are gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = Connection {
                        stream,
                        buf: Vec::new(),
                        shared: Arc::clone(&shared),
                        stop: stop_rx.clone(),
                        _alive: alive_tx.clone(),
                    };
                    tokio::spawn(conn.run());
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // Out of file descriptors or memory: back off rather than spin, and
                    // keep serving the connections already open.
                    eprintln!("model-library: serve: cannot accept a connection: {e}");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

/// Errors of one connection that do not concern the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What a read brought.
enum Got {
    Data,
    /// The client closed, or the socket failed.
    Closed,
    TimedOut,
    /// The server is shutting down.
    Stopped,
}

struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet consumed (pipelined requests stay here).
    buf: Vec<u8>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl Connection {
    async fn run(mut self) {
        let _ = self.stream.set_nodelay(true);
        let limits = self.shared.limits;
        let accepted = Instant::now();
        let mut first = true;
        loop {
            let head = match self.read_head(first, accepted).await {
                Ok(Some(head)) => head,
                Ok(None) => return self.close().await,
                Err(refusal) => return self.refuse(refusal, None, &Method::GET).await,
            };
            first = false;
            let cors = match self
                .shared
                .guard
                .check(head.version, &head.uri, &head.headers)
            {
                Ok(cors) => cors,
                Err(refusal) => return self.refuse(refusal, None, &head.method).await,
            };
            let plan = match head::plan(&head, limits.body_limit) {
                Ok(plan) => plan,
                Err(refusal) => return self.refuse(refusal, cors, &head.method).await,
            };
            if plan.expect_continue
                && plan.framing != Framing::Empty
                && self
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
            {
                return;
            }
            let body = match self.read_body(plan.framing).await {
                Ok(Some(body)) => body,
                Ok(None) => return self.close().await,
                Err(refusal) => return self.refuse(refusal, cors, &head.method).await,
            };
            let method = head.method.clone();
            let preflight = cors.is_some() && guard::is_preflight(&head.method, &head.headers);
            let mut response = match preflight {
                true => guard::preflight(&head.headers),
                false => self.route(head, body).await,
            };
            if let Some(origin) = &cors {
                guard::add_cors(origin, response.headers_mut());
            }
            let keep_alive = plan.keep_alive && !*self.stop.borrow();
            if self
                .write_response(response, &method, keep_alive)
                .await
                .is_err()
            {
                return;
            }
            if !keep_alive {
                return self.close().await;
            }
        }
    }

    /// Reads the next request head. `Ok(None)` when the connection should just close: the
    /// client closed or sent nothing in time, or the server is shutting down.
    async fn read_head(
        &mut self,
        first: bool,
        accepted: Instant,
    ) -> Result<Option<Head>, ApiError> {
        let limits = self.shared.limits;
        let mut skipped = 0;
        skipped += self.skip_empty_lines();
        if self.buf.is_empty() {
            let wait_until = match first {
                true => accepted + limits.header_timeout,
                false => Instant::now() + limits.idle_timeout,
            };
            match self.read_more(wait_until, true).await {
                Got::Data => {}
                Got::Closed | Got::TimedOut | Got::Stopped => return Ok(None),
            }
        }
        let deadline = match first {
            true => accepted + limits.header_timeout,
            false => Instant::now() + limits.header_timeout,
        };
        // Parse only when a line ended since the last attempt: a head arriving byte by
        // byte costs one parse per line, not one per byte.
        let mut scanned = 0;
        loop {
            let stripped = self.skip_empty_lines();
            if stripped > 0 {
                skipped += stripped;
                scanned = 0;
            }
            let too_large = || {
                ApiError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("the request head is larger than {} KiB", HEAD_LIMIT / 1024),
                )
            };
            if self.buf[scanned..].contains(&b'\n')
                && let Some((head, length)) = head::parse(&self.buf)?
            {
                // A head that arrived whole in one read is held to the limit too.
                if length + skipped > HEAD_LIMIT {
                    return Err(too_large());
                }
                self.buf.drain(..length);
                return Ok(Some(head));
            }
            scanned = self.buf.len();
            if self.buf.len() + skipped > HEAD_LIMIT {
                return Err(too_large());
            }
            match self.read_more(deadline, true).await {
                Got::Data => {}
                Got::TimedOut if !self.buf.is_empty() => {
                    return Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the request head did not arrive within {}",
                            show_duration(limits.header_timeout)
                        ),
                    ));
                }
                Got::TimedOut | Got::Closed | Got::Stopped => return Ok(None),
            }
        }
    }

    /// Drops CR and LF before a request line (RFC 9112 §2.2); returns how many.
    fn skip_empty_lines(&mut self) -> usize {
        let n = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        self.buf.drain(..n);
        n
    }

    /// Reads the body framed by `framing`, all of it within the body timeout. `Ok(None)`
    /// when the client went away.
    async fn read_body(&mut self, framing: Framing) -> Result<Option<Bytes>, ApiError> {
        let limits = self.shared.limits;
        let deadline = Instant::now() + limits.body_timeout;
        let timed_out = || {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {}",
                    show_duration(limits.body_timeout)
                ),
            )
        };
        match framing {
            Framing::Empty => Ok(Some(Bytes::new())),
            Framing::Length(length) => {
                while self.buf.len() < length {
                    match self.read_more(deadline, false).await {
                        Got::Data => {}
                        Got::TimedOut => return Err(timed_out()),
                        Got::Closed | Got::Stopped => return Ok(None),
                    }
                }
                let rest = self.buf.split_off(length);
                Ok(Some(Bytes::from(std::mem::replace(&mut self.buf, rest))))
            }
            Framing::Chunked => {
                let mut decoder = ChunkedDecoder::new(limits.body_limit);
                while !decoder.decode(&mut self.buf)? {
                    match self.read_more(deadline, false).await {
                        Got::Data => {}
                        Got::TimedOut => return Err(timed_out()),
                        Got::Closed | Got::Stopped => return Ok(None),
                    }
                }
                Ok(Some(decoder.into_body()))
            }
        }
    }

    /// Appends what the socket has to `buf`, waiting until `deadline` (and, if
    /// `stoppable`, until the server starts shutting down).
    async fn read_more(&mut self, deadline: Instant, stoppable: bool) -> Got {
        self.buf.reserve(READ_CHUNK);
        let Connection {
            stream, buf, stop, ..
        } = self;
        tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping), if stoppable => Got::Stopped,
            read = timeout_at(deadline, stream.read_buf(buf)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => Got::Closed,
                Ok(Ok(_)) => Got::Data,
                Err(_) => Got::TimedOut,
            },
        }
    }

    /// Runs the router on a request whose body has been read.
    async fn route(&self, head: Head, body: Bytes) -> Response {
        let mut request = Request::new(Body::from(body));
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers;
        match self.shared.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Answers a request that was refused before the router (with no body for `HEAD`),
    /// then closes.
    async fn refuse(mut self, refusal: ApiError, cors: Option<HeaderValue>, method: &Method) {
        let mut response = refusal.into_response();
        if let Some(origin) = &cors {
            guard::add_cors(origin, response.headers_mut());
        }
        if self.write_response(response, method, false).await.is_ok() {
            self.close().await;
        }
    }

    /// Writes `response`: its body collected first (the API's bodies are built in memory),
    /// or, for a kept listing body sent plain ([`Kept`] in its extensions), inflated piece
    /// by piece as it is written.
    async fn write_response(
        &mut self,
        response: Response,
        method: &Method,
        keep_alive: bool,
    ) -> io::Result<()> {
        let (mut parts, body) = response.into_parts();
        let inflate = parts.extensions.remove::<Kept>();
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => body,
            Err(e) => {
                eprintln!("model-library: serve: cannot produce an answer: {e}");
                parts.headers.clear();
                parts.status = StatusCode::INTERNAL_SERVER_ERROR;
                Bytes::from_static(br#"{"error": "the answer could not be produced"}"#)
            }
        };
        let status = parts.status;
        let bodiless = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let headers = &mut parts.headers;
        headers.remove(TRANSFER_ENCODING);
        headers.remove(CONNECTION);
        if bodiless {
            headers.remove(CONTENT_LENGTH);
        } else if let Some(kept) = &inflate {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(kept.len));
        } else if method != Method::HEAD || !headers.contains_key(CONTENT_LENGTH) {
            // HEAD keeps the length the router computed for GET (it sends no body).
            headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
            headers.insert(DATE, date);
        }
        if !keep_alive {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }

        let mut out = Vec::with_capacity(256 + body.len().min(WRITE_CHUNK));
        out.extend_from_slice(format!("HTTP/1.1 {}", status.as_u16()).as_bytes());
        if let Some(reason) = status.canonical_reason() {
            out.push(b' ');
            out.extend_from_slice(reason.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        for (name, value) in headers.iter() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let send_body = !bodiless && method != Method::HEAD;
        if let Some(kept) = inflate.filter(|_| send_body) {
            self.write_all(&out).await?;
            return self.write_inflated(&kept).await;
        }
        if send_body && body.len() <= WRITE_CHUNK {
            out.extend_from_slice(&body);
            return self.write_all(&out).await;
        }
        self.write_all(&out).await?;
        if send_body {
            self.write_all(&body).await?;
        }
        Ok(())
    }

    /// Writes `kept` inflated, [`WRITE_CHUNK`] at a time (each piece inflated just before it
    /// is written: ~35 µs of CPU per 64 KiB). Exactly the `Content-Length` sent, or an
    /// error (which closes the connection): kept bytes that do not inflate to their length
    /// cannot be framed.
    async fn write_inflated(&mut self, kept: &Kept) -> io::Result<()> {
        use std::io::Read;
        let mut decoder = flate2::read::GzDecoder::new(&kept.gzip[..]);
        let mut piece = vec![0u8; WRITE_CHUNK];
        let mut sent = 0;
        loop {
            let n = decoder.read(&mut piece)?;
            if n == 0 {
                break;
            }
            sent += n;
            if sent > kept.len {
                break;
            }
            self.write_all(&piece[..n]).await?;
        }
        if sent != kept.len {
            return Err(io::Error::other(
                "a kept body did not inflate to its length",
            ));
        }
        Ok(())
    }

    /// Writes `bytes`, each piece within the write timeout.
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let write_timeout = self.shared.limits.write_timeout;
        for piece in bytes.chunks(WRITE_CHUNK) {
            timeout(write_timeout, self.stream.write_all(piece))
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        }
        Ok(())
    }

    /// Closes politely: sends FIN, then reads and discards what the client still sends
    /// (for at most [`LINGER`], less at shutdown) so it is not reset before reading its
    /// answer.
    async fn close(mut self) {
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER;
        loop {
            self.buf.clear();
            match self.read_more(deadline, true).await {
                Got::Data => {}
                Got::Closed | Got::TimedOut | Got::Stopped => return,
            }
        }
    }
}

/// `10 s`, `300 ms`: a duration for messages.
pub(crate) fn show_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
