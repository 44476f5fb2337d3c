//! The HTTP front of `serve` against raw TCP clients (issue #12): the Host check against DNS
//! rebinding, the Origin check and CORS, slow and incomplete requests timing out, body
//! limits enforced before the body is read (also with `Expect: 100-continue` and chunked
//! bodies), keep-alive and idle connections, and malformed heads answered in JSON.
//! Timeouts are shortened through `ServeOptions`; every read is bounded by a client-side
//! read timeout, so a server that hangs fails a test instead of hanging it.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::TestLib;
use model_library::library::ManualClock;
use model_library::server::{self, ServeOptions, ServerHandle};
use serde_json::{Value, json};

/// Longest any single read may block.
const READ_BOUND: Duration = Duration::from_secs(10);
/// The short timeouts most tests use.
const SHORT: Duration = Duration::from_millis(300);

struct Srv {
    server: ServerHandle,
    _clock: ManualClock,
}

impl Srv {
    fn start(lib: &TestLib, options: ServeOptions) -> Srv {
        let (service, clock) = lib.service();
        let server = server::start_with(service, ServeOptions { port: 0, ..options })
            .expect("start the server");
        Srv {
            server,
            _clock: clock,
        }
    }

    fn port(&self) -> u16 {
        self.server.local_addr().port()
    }

    fn client(&self) -> Client {
        Client::connect(self)
    }

    /// Sends `request` on a new connection and reads the answer.
    fn ask(&self, request: &str) -> Raw {
        let mut client = self.client();
        client.send(request.as_bytes());
        client.response()
    }

    fn ttl(&self) -> u64 {
        let r = self.ask(&get("/api/models/cache-info", "localhost"));
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["service_cache"]["cache_ttl_seconds"]
            .as_u64()
            .unwrap()
    }
}

fn short_timeouts() -> ServeOptions {
    ServeOptions {
        header_timeout: SHORT,
        body_timeout: SHORT,
        idle_timeout: SHORT,
        ..ServeOptions::default()
    }
}

/// `GET path` with `Host: host`, closing the connection after the answer.
fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// A request with `headers` (each ending in CRLF) and a JSON body with its length.
fn post_json(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
}

/// One answer read off the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Checks a `{"error": "…"}` answer with `status` whose message contains `needle`.
    #[track_caller]
    fn assert_error(&self, status: u16, needle: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "{self:?}"
        );
        let body = self.json();
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
        let message = body["error"].as_str().expect("an error string");
        assert!(
            message.to_lowercase().contains(&needle.to_lowercase()),
            "{message:?} should mention {needle:?}"
        );
    }
}

/// A raw HTTP/1.1 client on one TCP connection.
struct Client {
    stream: TcpStream,
    /// Bytes read past the last answer.
    pending: Vec<u8>,
}

impl Client {
    fn connect(srv: &Srv) -> Client {
        let stream = TcpStream::connect(srv.server.local_addr()).expect("connect");
        stream.set_read_timeout(Some(READ_BOUND)).unwrap();
        stream.set_write_timeout(Some(READ_BOUND)).unwrap();
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads more bytes; 0 at the end of the stream. Panics when the read bound passes.
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
            Err(e) => panic!(
                "no answer within {READ_BOUND:?} ({e}); got {:?}",
                String::from_utf8_lossy(&self.pending)
            ),
        }
    }

    /// Reads the next answer (informational ones included).
    fn response(&mut self) -> Raw {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(head_len) =
                parsed.parse(&self.pending).expect("a valid answer head")
            {
                let status = parsed.code.unwrap();
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let length = match status {
                    100..=199 | 204 | 304 => 0,
                    _ => headers
                        .iter()
                        .find(|(n, _)| n == "content-length")
                        .map(|(_, v)| v.parse::<usize>().unwrap())
                        .expect("every answer has a Content-Length"),
                };
                while self.pending.len() < head_len + length {
                    assert!(self.fill() > 0, "closed inside an answer");
                }
                let body = self.pending[head_len..head_len + length].to_vec();
                self.pending.drain(..head_len + length);
                return Raw {
                    status,
                    headers,
                    body,
                };
            }
            assert!(
                self.fill() > 0,
                "closed before an answer: {:?}",
                String::from_utf8_lossy(&self.pending)
            );
        }
    }

    /// Waits for the server to close the connection; returns what arrived meanwhile.
    fn wait_closed(&mut self) -> Vec<u8> {
        while self.fill() > 0 {}
        std::mem::take(&mut self.pending)
    }
}

/// One unregistered model on disk, `model-000001`, and a registered one without files.
fn sample() -> TestLib {
    let lib = TestLib::new();
    lib.registry(
        &json!({"version": 1, "models": [
            {"id": "alpha", "files": [{"path": "w.bin", "size": 10}]}
        ]})
        .to_string(),
    )
    .file("models/model-000001/w.bin", 7);
    lib
}

fn delete_request(host: &str, origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    format!(
        "DELETE /api/models/model-000001?permanent=true HTTP/1.1\r\nHost: {host}\r\n{origin}\
         Connection: close\r\n\r\n"
    )
}

// ---- Host ----

#[test]
fn a_foreign_host_is_refused_and_a_rebinding_delete_deletes_nothing() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let port = srv.port();
    let model = lib.path("models/model-000001/w.bin");
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        "localhost.evil.example".into(),
        "foo.localhost".into(),
        "127.0.0.1.nip.io".into(),
        "0.0.0.0".into(),
        "192.168.1.10".into(),
        String::new(),
    ] {
        // The DNS-rebinding shape: a page on evil.example whose name now resolves to
        // 127.0.0.1, sending a same-origin DELETE.
        let r = srv.ask(&delete_request(&host, Some("http://evil.example")));
        r.assert_error(403, "not a loopback name");
        r.assert_error(403, "DNS rebinding");
        assert!(model.exists(), "Host {host:?} deleted the model");
        // Without an Origin too (a same-origin GET sends none).
        srv.ask(&get("/api/models/library", &host))
            .assert_error(403, &format!("{host:?}"));
    }
    // An absolute-form target names the host too.
    srv.ask(
        "DELETE http://evil.example/api/models/model-000001?permanent=true HTTP/1.1\r\n\
         Host: localhost\r\n\r\n",
    )
    .assert_error(403, "evil.example");
    assert!(model.exists());

    // The same request addressed to this machine does delete: the refusals were the Host.
    let r = srv.ask(&delete_request("localhost", None));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!model.exists());
}

#[test]
fn every_loopback_host_form_is_accepted() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let port = srv.port();
    for host in [
        "localhost".to_string(),
        "LocalHost".into(),
        format!("localhost:{port}"),
        "localhost:1".into(),
        "localhost.".into(),
        format!("LOCALHOST.:{port}"),
        "127.0.0.1".into(),
        format!("127.0.0.1:{port}"),
        "127.0.0.2:80".into(),
        "[::1]".into(),
        format!("[::1]:{port}"),
        "[0:0:0:0:0:0:0:1]:8000".into(),
    ] {
        let r = srv.ask(&get("/api/models/cache-info", &host));
        assert_eq!(r.status, 200, "Host {host:?}: {r:?}");
        assert!(r.json().get("service_cache").is_some());
    }
}

#[test]
fn a_missing_host_is_400_on_http11_and_accepted_on_http10() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let mut client = srv.client();
    client.send(b"GET /api/models/cache-info HTTP/1.1\r\n\r\n");
    client.response().assert_error(400, "no Host header");
    client.wait_closed();
    srv.ask("GET /api/models/cache-info HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n")
        .assert_error(400, "more than one Host");

    // HTTP/1.0 predates Host and no browser speaks it: a program on this machine.
    let mut client = srv.client();
    client.send(b"GET /api/models/cache-info HTTP/1.0\r\n\r\n");
    let r = client.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.wait_closed().is_empty());
}

// ---- Origin and CORS ----

#[test]
fn a_foreign_origin_is_refused_and_told_how_to_allow_it() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let model = lib.path("models/model-000001/w.bin");
    let r = srv.ask(&delete_request("localhost", Some("http://evil.example")));
    r.assert_error(403, "pass --allow-origin http://evil.example");
    assert!(r.header("access-control-allow-origin").is_none());
    assert!(model.exists());
    for origin in [
        "https://evil.example:8443",
        "http://localhost.evil.example",
        "ftp://localhost",
        "file://",
        "not an origin",
    ] {
        let r = srv.ask(&format!(
            "GET /api/models/library HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n\r\n"
        ));
        r.assert_error(403, "is not allowed");
    }
    // A preflight from such a page is refused too, so the browser never sends the DELETE.
    let r = srv.ask(
        "OPTIONS /api/models/model-000001 HTTP/1.1\r\nHost: localhost\r\n\
         Origin: http://evil.example\r\nAccess-Control-Request-Method: DELETE\r\n\r\n",
    );
    r.assert_error(403, "--allow-origin http://evil.example");
    assert!(r.header("access-control-allow-origin").is_none());
    assert!(model.exists());
}

#[test]
fn a_loopback_origin_is_accepted_with_cors() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    for origin in [
        "http://localhost:3000",
        "http://127.0.0.1:5173",
        "https://[::1]",
        "http://localhost",
    ] {
        let r = srv.ask(&format!(
            "GET /api/models/library HTTP/1.1\r\nHost: localhost\r\nOrigin: {origin}\r\n\
             Connection: close\r\n\r\n"
        ));
        assert_eq!(r.status, 200, "{origin}: {r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert!(r.headers.iter().any(|(n, v)| n == "vary" && v == "Origin"));
        assert_eq!(r.json()["total"], 2);
    }
}

#[test]
fn an_allowed_origin_gets_cors_and_a_working_preflight() {
    let lib = sample();
    let srv = Srv::start(
        &lib,
        ServeOptions {
            // Normalised: lower case, default port and trailing slash dropped.
            allow_origins: vec!["HTTPS://My.Page:443/".into()],
            ..ServeOptions::default()
        },
    );
    let origin = "https://my.page";
    let mut client = srv.client();
    client.send(
        format!(
            "OPTIONS /api/models/model-000001?permanent=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Origin: {origin}\r\nAccess-Control-Request-Method: DELETE\r\n\
             Access-Control-Request-Headers: content-type\r\n\
             Access-Control-Request-Private-Network: true\r\n\r\n"
        )
        .as_bytes(),
    );
    let pre = client.response();
    assert_eq!(pre.status, 204, "{pre:?}");
    assert!(pre.body.is_empty());
    assert_eq!(pre.header("access-control-allow-origin"), Some(origin));
    assert!(
        pre.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("DELETE") && m.contains("POST")),
        "{pre:?}"
    );
    assert_eq!(
        pre.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert_eq!(
        pre.header("access-control-allow-private-network"),
        Some("true")
    );
    assert!(pre.header("access-control-max-age").is_some());
    assert!(lib.path("models/model-000001").exists(), "a preflight only");

    // The actual request, on the same kept-alive connection, as a browser would.
    client.send(
        format!(
            "DELETE /api/models/model-000001?permanent=true HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Origin: {origin}\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = client.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    assert!(!lib.path("models/model-000001").exists());

    // Error answers carry CORS too, so the page can read the message.
    let r = srv.ask(&post_json(
        "/api/models/cache-config",
        &format!("Origin: {origin}\r\n"),
        r#"{"ttl_seconds": 5}"#,
    ));
    r.assert_error(400, "30..=3600");
    assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    let r = srv.ask(&post_json(
        "/api/models/cache-config",
        &format!("Origin: {origin}\r\n"),
        r#"{"ttl_seconds": 700}"#,
    ));
    assert_eq!(
        (r.status, r.header("access-control-allow-origin")),
        (200, Some(origin))
    );
    assert_eq!(srv.ttl(), 700);

    // Another scheme or port is another origin.
    for other in [
        "http://my.page",
        "https://my.page:8443",
        "https://evil.my.page",
    ] {
        srv.ask(&delete_request("localhost", Some(other)))
            .assert_error(403, "--allow-origin");
    }
}

#[test]
fn origin_null_is_refused_unless_allowed() {
    let lib = sample();
    let request = "GET /api/models/cache-info HTTP/1.1\r\nHost: localhost\r\nOrigin: null\r\n\r\n";
    let srv = Srv::start(&lib, ServeOptions::default());
    srv.ask(request).assert_error(403, "--allow-origin null");
    drop(srv);

    let srv = Srv::start(
        &lib,
        ServeOptions {
            allow_origins: vec!["null".into()],
            ..ServeOptions::default()
        },
    );
    let r = srv.ask(request);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("null"));
}

#[test]
fn an_allow_origin_that_is_not_an_origin_is_refused_at_start_and_by_the_cli() {
    let lib = sample();
    for bad in ["my.page", "http://my.page/app", "*", "http://user@my.page"] {
        let (service, _clock) = lib.service();
        let err = server::start_with(
            service,
            ServeOptions {
                port: 0,
                allow_origins: vec![bad.into()],
                ..ServeOptions::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("--allow-origin") && err.contains(bad), "{err}");
    }

    let mut child = Command::new(env!("CARGO_BIN_EXE_model-library"))
        .args([
            "--library",
            lib.root().to_str().unwrap(),
            "serve",
            "--port",
            "0",
        ])
        .args(["--allow-origin", "http://localhost:3000"])
        .args(["--allow-origin", "http://my.page/app"])
        .env_remove("MODEL_LIBRARY_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run model-library serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve started with a bad --allow-origin");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("http://my.page/app"), "{stderr}");
    assert!(stderr.contains("scheme://host[:port]"), "{stderr}");
}

// ---- Slow and incomplete requests ----

#[test]
fn half_sent_headers_are_answered_408_and_closed_while_others_are_served() {
    let lib = sample();
    let header_timeout = Duration::from_secs(2);
    let srv = Srv::start(
        &lib,
        ServeOptions {
            header_timeout,
            ..ServeOptions::default()
        },
    );
    let started = Instant::now();
    let mut slow = srv.client();
    slow.send(b"GET /api/models/cache-info HTTP/1.1\r\nHost: localhost\r\nX-Half: ");

    let r = srv.ask(&get("/api/models/cache-info", "localhost"));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        started.elapsed() < header_timeout,
        "the normal request waited {:?}",
        started.elapsed()
    );

    slow.response()
        .assert_error(408, "did not arrive within 2 s");
    assert!(slow.wait_closed().is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= header_timeout && waited < header_timeout + Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let lib = sample();
    let srv = Srv::start(&lib, short_timeouts());
    let started = Instant::now();
    let mut silent = srv.client();
    assert!(silent.wait_closed().is_empty(), "closed without an answer");
    assert!(started.elapsed() >= SHORT, "{:?}", started.elapsed());
}

#[test]
fn a_request_line_without_a_version_is_400_json() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let started = Instant::now();
    for request in [
        "GET /api/models/library\r\nHost: localhost\r\n\r\n",
        // Only the request line: refused as soon as it ends, not at the header timeout.
        "GET /api/models/library\r\n",
        "GET /api/models/library HTTP/2.0\r\nHost: localhost\r\n\r\n",
        "GET\r\n\r\n",
    ] {
        let mut client = srv.client();
        client.send(request.as_bytes());
        let r = client.response();
        r.assert_error(400, "malformed request line");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(client.wait_closed().is_empty());
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn forty_slow_header_connections_do_not_hold_up_a_normal_request() {
    const SLOW: usize = 40;
    let lib = sample();
    let header_timeout = Duration::from_secs(2);
    let srv = Srv::start(
        &lib,
        ServeOptions {
            header_timeout,
            ..ServeOptions::default()
        },
    );
    let started = Instant::now();
    let mut slow: Vec<Client> = (0..SLOW)
        .map(|_| {
            let mut c = srv.client();
            c.send(b"GET /api/models/library HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
            c
        })
        .collect();
    // Slowloris: a byte every 100 ms on each, for most of the header timeout; the bytes
    // must not extend it.
    let writers: Vec<TcpStream> = slow.iter().map(|c| c.stream.try_clone().unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop);
        let until = started + header_timeout * 9 / 10;
        std::thread::spawn(move || {
            let mut writers = writers;
            while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                for w in &mut writers {
                    let _ = w.write_all(b"x");
                }
                std::thread::sleep(Duration::from_millis(100)); // pacing, not waiting
            }
        })
    };

    let asked = Instant::now();
    let r = srv.ask(&get("/api/models/library", "localhost"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["total"], 2);
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "a normal request waited {:?} behind {SLOW} slow ones",
        asked.elapsed()
    );

    for client in &mut slow {
        client
            .response()
            .assert_error(408, "request head did not arrive");
        assert!(client.wait_closed().is_empty());
    }
    let waited = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    trickle.join().unwrap();
    assert!(waited >= header_timeout, "closed after {waited:?}");
    // A per-read timeout would have kept them until 1.8 s + 2 s.
    assert!(
        waited < header_timeout + Duration::from_millis(1500),
        "closed after {waited:?}"
    );
    assert_eq!(
        srv.ask(&get("/api/models/library", "localhost")).status,
        200
    );
}

#[test]
fn a_head_sent_byte_by_byte_is_read() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let mut client = srv.client();
    client.stream.set_nodelay(true).unwrap();
    for byte in b"\r\nGET /api/models/cache-info HTTP/1.1\r\nHost: localhost\r\n\r\n" {
        client.send(&[*byte]);
    }
    let r = client.response();
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn a_stalled_body_times_out_with_408() {
    let lib = sample();
    let srv = Srv::start(&lib, short_timeouts());
    let ttl = srv.ttl();
    let started = Instant::now();
    let mut client = srv.client();
    client.send(
        b"POST /api/models/cache-config HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"ttl_",
    );
    client
        .response()
        .assert_error(408, "request body did not arrive within 300 ms");
    assert!(client.wait_closed().is_empty());
    assert!(started.elapsed() >= SHORT, "{:?}", started.elapsed());
    assert_eq!(srv.ttl(), ttl);
}

#[test]
fn keep_alive_carries_several_requests_and_an_idle_connection_is_closed() {
    let lib = sample();
    let srv = Srv::start(
        &lib,
        ServeOptions {
            idle_timeout: SHORT,
            ..ServeOptions::default()
        },
    );
    let request = "GET /api/models/cache-info HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut client = srv.client();
    for _ in 0..3 {
        client.send(request.as_bytes());
        let r = client.response();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("connection"), None, "kept alive");
    }
    // Pipelined: two requests in one write, two answers in order.
    client.send(
        format!(
            "{request}POST /api/models/cache-config HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nContent-Length: 19\r\n\r\n{{\"ttl_seconds\": 45}}"
        )
        .as_bytes(),
    );
    assert!(client.response().json().get("service_cache").is_some());
    assert_eq!(client.response().json()["ttl_seconds"], 45);

    let idle_from = Instant::now();
    assert!(client.wait_closed().is_empty(), "closed without a word");
    let idle = idle_from.elapsed();
    assert!(
        idle >= SHORT && idle < SHORT + Duration::from_secs(5),
        "closed after {idle:?} idle"
    );

    // `Connection: close` is honoured.
    let mut client = srv.client();
    client.send(get("/api/models/cache-info", "localhost").as_bytes());
    let r = client.response();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.wait_closed().is_empty());
}

// ---- Bodies and limits ----

#[test]
fn expect_continue_with_a_huge_length_is_413_without_continue() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let ttl = srv.ttl();
    let mut client = srv.client();
    client.send(
        b"POST /api/models/cache-config HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: application/json\r\nExpect: 100-continue\r\n\
          Content-Length: 1000000000\r\n\r\n",
    );
    let r = client.response();
    r.assert_error(
        413,
        "1000000000 bytes, over the length limit of 65536 bytes",
    );
    assert_eq!(r.header("connection"), Some("close"));
    assert!(client.wait_closed().is_empty(), "nothing after the 413");
    assert_eq!(srv.ttl(), ttl);
}

#[test]
fn expect_continue_within_the_limit_is_continued_then_answered() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let body = r#"{"ttl_seconds": 900}"#;
    let mut client = srv.client();
    client.send(
        format!(
            "POST /api/models/cache-config HTTP/1.1\r\nHost: localhost\r\n\
             Content-Type: application/json\r\nExpect: 100-continue\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(client.response().status, 100);
    client.send(body.as_bytes());
    let r = client.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["ttl_seconds"], 900);
}

#[test]
fn a_body_over_the_limit_is_413_before_it_is_read() {
    let lib = sample();
    let srv = Srv::start(
        &lib,
        ServeOptions {
            body_limit: 1024,
            ..ServeOptions::default()
        },
    );
    let ttl = srv.ttl();
    let mut client = srv.client();
    // Only the head: the answer cannot wait for the body.
    client.send(
        b"POST /api/models/cache-config HTTP/1.1\r\nHost: localhost\r\n\
          Content-Type: application/json\r\nContent-Length: 1025\r\n\r\n",
    );
    client
        .response()
        .assert_error(413, "over the length limit of 1024 bytes");
    client.wait_closed();
    let r = srv.ask(&post_json(
        "/api/models/cache-config",
        "",
        &format!(r#"{{"ttl_seconds": 60, "pad": "{}"}}"#, "x".repeat(990)),
    ));
    r.assert_error(400, "unknown field");
    assert_eq!(srv.ttl(), ttl);
}

#[test]
fn a_chunked_body_over_the_limit_is_413_and_one_within_is_read() {
    let lib = sample();
    let srv = Srv::start(
        &lib,
        ServeOptions {
            body_limit: 1024,
            ..ServeOptions::default()
        },
    );
    let ttl = srv.ttl();
    let head = "POST /api/models/cache-config HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut client = srv.client();
    client.send(head.as_bytes());
    let chunk = format!("64\r\n{}\r\n", "x".repeat(100));
    for _ in 0..11 {
        client.send(chunk.as_bytes());
    }
    client.response().assert_error(
        413,
        "chunked request body goes over the length limit of 1024",
    );
    client.wait_closed();
    // One chunk announcing more than the limit is refused before its data comes.
    let mut client = srv.client();
    client.send(format!("{head}401\r\n").as_bytes());
    client.response().assert_error(413, "length limit");
    client.wait_closed();
    assert_eq!(srv.ttl(), ttl);

    // Within the limit, in pieces, with an extension and a trailer.
    let mut client = srv.client();
    client.send(
        format!("{head}5;ext=1\r\n{{\"ttl\r\n10\r\n_seconds\": 1200}}\r\n0\r\nX-T: 1\r\n\r\n")
            .as_bytes(),
    );
    let r = client.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["ttl_seconds"], 1200);
    assert_eq!(srv.ttl(), 1200);
}

// ---- Malformed heads ----

#[test]
fn malformed_heads_are_answered_in_json_and_closed() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let many_headers: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "v".repeat(70 * 1024));
    let post = "POST /api/models/cache-config HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\n";
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("{post}Content-Length: abc\r\n\r\n"),
            400,
            "invalid Content-Length \"abc\"",
        ),
        (
            format!("{post}Content-Length: -1\r\n\r\n"),
            400,
            "invalid Content-Length",
        ),
        (
            format!("{post}Content-Length: 5, 6\r\n\r\n"),
            400,
            "invalid Content-Length",
        ),
        (
            format!("{post}Content-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            400,
            "more than one Content-Length",
        ),
        (
            format!("{post}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400,
            "both Transfer-Encoding and Content-Length",
        ),
        (
            format!("{post}Transfer-Encoding: gzip\r\n\r\n"),
            400,
            "does not end with chunked",
        ),
        (
            format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n"),
            501,
            "not supported",
        ),
        (
            format!("{post}Expect: 200-ok\r\n\r\n"),
            417,
            "only 100-continue",
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: localhost\r\n{many_headers}\r\n"),
            431,
            "more than 100 header fields",
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: localhost\r\n{huge_header}\r\n"),
            431,
            "larger than 64 KiB",
        ),
        (
            "GET / HTTP/1.1\r\nHost: localhost\r\nNoColonHere\r\n\r\n".into(),
            400,
            "malformed header line \"NoColonHere\"",
        ),
        (
            "GET / HTTP/1.1\r\nHost: localhost\r\nBad Name: x\r\n\r\n".into(),
            400,
            "malformed header line",
        ),
        (
            "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n folded\r\n\r\n".into(),
            400,
            "malformed header line",
        ),
        (
            "GET /a b HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            400,
            "malformed request line",
        ),
        (
            "GET http://[bad/ HTTP/1.1\r\nHost: localhost\r\n\r\n".into(),
            400,
            "invalid request target",
        ),
    ];
    for (request, status, needle) in &cases {
        let mut client = srv.client();
        client.send(request.as_bytes());
        let r = client.response();
        r.assert_error(*status, needle);
        assert_eq!(r.header("connection"), Some("close"), "{needle}");
        client.wait_closed();
    }
    let r = srv.ask(&get("/api/models/cache-info", "localhost"));
    assert_eq!(r.status, 200, "still serving: {r:?}");
}

#[test]
fn head_requests_get_the_length_but_no_body_also_when_refused() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let cases = [
        ("localhost", "", "200 OK"),
        ("localhost", "Content-Length: abc\r\n", "400 Bad Request"),
        ("evil.example", "", "403 Forbidden"),
    ];
    for (host, extra, status) in cases {
        let mut client = srv.client();
        client.send(
            format!(
                "HEAD /api/models/library HTTP/1.1\r\nHost: {host}\r\n{extra}\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        let all = String::from_utf8(client.wait_closed()).unwrap();
        assert!(all.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{all}");
        assert!(all.ends_with("\r\n\r\n"), "a body after the head: {all}");
        let length = all
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|v| v.parse::<usize>().unwrap());
        assert!(length.is_some_and(|n| n > 0), "{all}");
    }
}

// ---- Shutdown ----

#[test]
fn shutdown_closes_idle_and_half_read_connections_at_once() {
    let lib = sample();
    let srv = Srv::start(&lib, ServeOptions::default());
    let mut idle = srv.client();
    idle.send(b"GET /api/models/cache-info HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(idle.response().status, 200);
    let mut half = srv.client();
    half.send(b"GET /api/models/cache-info HTTP/1.1\r\nHost: loc");

    let started = Instant::now();
    srv.server.shutdown().unwrap();
    // Far less than the 30 s idle and 10 s header timeouts.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(idle.wait_closed().is_empty());
    assert!(half.wait_closed().is_empty());
}
