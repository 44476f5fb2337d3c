//! A small HTTP/1.1 file server on 127.0.0.1 for download tests: serves Range requests,
//! and can cut a transfer half-way, stall, answer 404, or ignore Range. Records every request.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How a path is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Whole file or the asked range.
    Normal,
    /// Announce the full length, send this many body bytes, close.
    CutAfter(usize),
    /// Send this many body bytes, then hang until the client goes away.
    StallAfter(usize),
    /// 404.
    NotFound,
    /// Always 200 with the whole file.
    IgnoreRange,
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub path: String,
    pub range_start: Option<u64>,
    pub body_bytes_sent: usize,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, (Vec<u8>, Behavior)>,
    hits: Vec<Hit>,
}

pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = Arc::clone(&st);
                std::thread::spawn(move || handle(conn, st));
            }
        });
        TestServer { addr, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn route(&self, path: &str, body: Vec<u8>, behavior: Behavior) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), (body, behavior));
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().hits.clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

fn handle(mut conn: TcpStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_start = v.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    let route = state.lock().unwrap().routes.get(&path).cloned();
    let mut sent = 0usize;
    let result = (|| -> std::io::Result<()> {
        let Some((body, behavior)) = route else {
            conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        };
        if behavior == Behavior::NotFound {
            conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
        let start = match (behavior, range_start) {
            (Behavior::IgnoreRange, _) | (_, None) => None,
            (_, Some(s)) => Some(s as usize),
        };
        let slice = match start {
            Some(s) if s >= body.len() => {
                let head = format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                conn.write_all(head.as_bytes())?;
                return Ok(());
            }
            Some(s) => {
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len() - 1,
                    body.len(),
                    body.len() - s
                );
                conn.write_all(head.as_bytes())?;
                &body[s..]
            }
            None => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                conn.write_all(head.as_bytes())?;
                &body[..]
            }
        };
        let limit = match behavior {
            Behavior::CutAfter(n) | Behavior::StallAfter(n) => n.min(slice.len()),
            _ => slice.len(),
        };
        conn.write_all(&slice[..limit])?;
        sent = limit;
        conn.flush()?;
        if let Behavior::StallAfter(_) = behavior {
            // Hang until the client closes the connection.
            let mut buf = [0u8; 64];
            while conn.read(&mut buf).unwrap_or(0) > 0 {}
        }
        Ok(())
    })();
    let _ = result;
    state.lock().unwrap().hits.push(Hit {
        path,
        range_start,
        body_bytes_sent: sent,
    });
}
