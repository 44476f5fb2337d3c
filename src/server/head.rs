//! HTTP/1.1 request framing, as pure functions over bytes already read: parsing a request
//! head with `httparse` (bounded: [`HEAD_LIMIT`] bytes, [`MAX_HEADERS`] fields), deciding how
//! the body is framed and whether it is acceptable before any of it is read, and decoding a
//! chunked body incrementally under the body limit.
//!
//! Owns: which heads are malformed and the JSON-ready error for each (400, 413, 417, 431,
//! 501), the `Content-Length`/`Transfer-Encoding`/`Expect`/`Connection` rules. It must not
//! touch sockets, clocks or the Host/Origin policy (`conn.rs` and `guard.rs` do).
//!
//! Strictness, where RFC 9112 lets a server choose: both `Content-Length` and
//! `Transfer-Encoding`, several different lengths, or a length list (`5, 5`) are 400; a
//! transfer coding other than `chunked` is 501; `Transfer-Encoding` in HTTP/1.0 is 400; an
//! `Expect` other than `100-continue` is 417 (HTTP/1.0 `Expect` is ignored, as the RFC
//! says); obsolete line folding is 400 (httparse refuses it). HTTP/1.0 connections are not
//! kept alive.

use axum::body::Bytes;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

use super::error::ApiError;

/// Largest request head (request line and header fields) accepted.
pub(crate) const HEAD_LIMIT: usize = 64 * 1024;
/// Most header fields accepted in a request head.
pub(crate) const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (with extensions) accepted in a chunked body.
const CHUNK_LINE_LIMIT: usize = 1024;

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes (at most the body limit).
    Length(usize),
    /// Chunked transfer coding.
    Chunked,
}

/// What the connection does with a request whose head is acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) framing: Framing,
    /// The client waits for `100 Continue` before sending the body.
    pub(crate) expect_continue: bool,
    /// The connection may carry another request after this one.
    pub(crate) keep_alive: bool,
}

/// Parses the request head at the start of `buf`: `Ok(None)` while it is incomplete,
/// `Ok(Some((head, length)))` once complete, or the 400/431 answer for a malformed one.
/// Callers strip empty lines before the request line (RFC 9112 §2.2) and bound the size.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Head, usize)>, ApiError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let length = match request.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(malformed(buf, e)),
    };
    let request_line = || first_line(buf);
    let method = request
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or_else(|| malformed_request_line(&request_line()))?;
    let uri = request
        .path
        .and_then(|p| p.parse::<Uri>().ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid request target in {:?}; expected a path such as /api/models/library",
                request_line()
            ))
        })?;
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| ApiError::bad_request(format!("invalid header name {:?}", field.name)))?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| {
            ApiError::bad_request(format!("invalid value in header {:?}", field.name))
        })?;
        headers.append(name, value);
    }
    Ok(Some((
        Head {
            method,
            uri,
            version,
            headers,
        },
        length,
    )))
}

/// The answer for a head httparse refused, naming the offending line.
fn malformed(buf: &[u8], error: httparse::Error) -> ApiError {
    match error {
        httparse::Error::TooManyHeaders => ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request has more than {MAX_HEADERS} header fields"),
        ),
        httparse::Error::Token | httparse::Error::Version => {
            malformed_request_line(&first_line(buf))
        }
        httparse::Error::HeaderName
        | httparse::Error::HeaderValue
        | httparse::Error::NewLine
        | httparse::Error::Status => match bad_header_line(buf) {
            Some(line) => ApiError::bad_request(format!(
                "malformed header line {line:?}; expected Name: value"
            )),
            None => ApiError::bad_request(format!("malformed request head: {error}")),
        },
    }
}

fn malformed_request_line(line: &str) -> ApiError {
    ApiError::bad_request(format!(
        "malformed request line {line:?}; expected METHOD /path HTTP/1.1"
    ))
}

/// The first line of `buf`, for messages (lossy, at most 200 characters).
fn first_line(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    shown(&buf[..end])
}

/// The first header line that is not `token ":" value`, for messages.
fn bad_header_line(buf: &[u8]) -> Option<String> {
    buf.split(|&b| b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .take_while(|line| !line.is_empty())
        .find(|line| {
            let name_end = line.iter().position(|&b| b == b':');
            let valid_name = name_end
                .is_some_and(|end| end > 0 && line[..end].iter().all(|&b| is_token_byte(b)));
            let valid_value = line.iter().all(|&b| b == b'\t' || b >= 0x20 && b != 0x7f);
            !(valid_name && valid_value)
        })
        .map(shown)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn shown(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// Decides, from the head alone, how the body is framed and whether the request can be
/// taken: a body announced larger than `body_limit` is refused (413) before any of it is
/// read and before `100 Continue` would be sent.
pub(crate) fn plan(head: &Head, body_limit: usize) -> Result<Plan, ApiError> {
    let http10 = head.version == Version::HTTP_10;
    let framing = framing(head, body_limit)?;
    let mut expect_continue = false;
    if !http10 {
        for value in head.headers.get_all(EXPECT) {
            if value.as_bytes().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(ApiError::new(
                    StatusCode::EXPECTATION_FAILED,
                    format!(
                        "Expect {:?} is not supported; only 100-continue is",
                        shown(value.as_bytes())
                    ),
                ));
            }
        }
    }
    let close = head
        .headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
    Ok(Plan {
        framing,
        expect_continue,
        keep_alive: !http10 && !close,
    })
}

fn framing(head: &Head, body_limit: usize) -> Result<Framing, ApiError> {
    let has_length = head.headers.contains_key(CONTENT_LENGTH);
    if head.headers.contains_key(TRANSFER_ENCODING) {
        if head.version == Version::HTTP_10 {
            return Err(ApiError::bad_request(
                "Transfer-Encoding is not allowed in an HTTP/1.0 request",
            ));
        }
        if has_length {
            return Err(ApiError::bad_request(
                "the request has both Transfer-Encoding and Content-Length; send one",
            ));
        }
        let codings: Vec<String> = head
            .headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .map(|c| String::from_utf8_lossy(c.trim_ascii()).to_ascii_lowercase())
            .collect();
        return match codings.as_slice() {
            [only] if only == "chunked" => Ok(Framing::Chunked),
            [.., last] if last == "chunked" => Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                format!(
                    "Transfer-Encoding {:?} is not supported; send the body as is or chunked",
                    codings.join(", ")
                ),
            )),
            _ => Err(ApiError::bad_request(format!(
                "Transfer-Encoding {:?} does not end with chunked, so the body's end is unknown",
                codings.join(", ")
            ))),
        };
    }
    if !has_length {
        return Ok(Framing::Empty);
    }
    let mut values = head.headers.get_all(CONTENT_LENGTH).iter();
    let value = values.next().map(HeaderValue::as_bytes).unwrap_or_default();
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "the request has more than one Content-Length header",
        ));
    }
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(ApiError::bad_request(format!(
            "invalid Content-Length {:?}; expected a number of bytes",
            shown(value)
        )));
    }
    // All digits: only a number too large for usize fails to parse, and that is over the
    // limit too.
    let length = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    if length > body_limit {
        return Err(too_large(&shown(value), body_limit));
    }
    Ok(match length {
        0 => Framing::Empty,
        n => Framing::Length(n),
    })
}

/// 413 for a body announced as `length` bytes, over `limit`.
fn too_large(length: &str, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is {length} bytes, over the length limit of {limit} bytes"),
    )
}

/// Decodes a chunked body as its bytes arrive, refusing it (413) as soon as a chunk size
/// announces more than the limit.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    body: Vec<u8>,
    limit: usize,
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes to go.
    Data(usize),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
    Done,
}

impl ChunkedDecoder {
    pub(crate) fn new(limit: usize) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            body: Vec::new(),
            limit,
            trailer_bytes: 0,
        }
    }

    /// Consumes what it can from the front of `buf`. `Ok(true)` once the body is complete
    /// (what follows it stays in `buf`); `Ok(false)` when more bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut Vec<u8>) -> Result<bool, ApiError> {
        let mut pos = 0;
        let result = self.advance(buf, &mut pos);
        buf.drain(..pos);
        result
    }

    /// The decoded body; call after `decode` returned `Ok(true)`.
    pub(crate) fn into_body(self) -> Bytes {
        Bytes::from(self.body)
    }

    fn advance(&mut self, buf: &[u8], pos: &mut usize) -> Result<bool, ApiError> {
        loop {
            let rest = &buf[*pos..];
            match self.state {
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        *pos += used;
                        if size == 0 {
                            self.state = ChunkState::Trailer;
                            continue;
                        }
                        let total = usize::try_from(size)
                            .ok()
                            .and_then(|s| s.checked_add(self.body.len()));
                        match total {
                            Some(total) if total <= self.limit => {}
                            _ => {
                                return Err(ApiError::new(
                                    StatusCode::PAYLOAD_TOO_LARGE,
                                    format!(
                                        "the chunked request body goes over the length limit \
                                         of {} bytes",
                                        self.limit
                                    ),
                                ));
                            }
                        }
                        self.state = ChunkState::Data(size as usize);
                    }
                    Ok(httparse::Status::Partial) if rest.len() > CHUNK_LINE_LIMIT => {
                        return Err(ApiError::bad_request(
                            "a chunk-size line in the chunked body is too long",
                        ));
                    }
                    Ok(httparse::Status::Partial) => return Ok(false),
                    Err(_) => {
                        return Err(ApiError::bad_request(format!(
                            "invalid chunk size {:?} in the chunked body",
                            first_line(rest)
                        )));
                    }
                },
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(false);
                    }
                    let take = left.min(rest.len());
                    self.body.extend_from_slice(&rest[..take]);
                    *pos += take;
                    self.state = match left - take {
                        0 => ChunkState::DataEnd,
                        more => ChunkState::Data(more),
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(false);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ApiError::bad_request(
                            "a chunk's data is not followed by CRLF in the chunked body",
                        ));
                    }
                    *pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                        if self.trailer_bytes + rest.len() > HEAD_LIMIT {
                            return Err(trailer_too_large());
                        }
                        return Ok(false);
                    };
                    let line = &rest[..end];
                    *pos += end + 1;
                    self.trailer_bytes += end + 1;
                    if self.trailer_bytes > HEAD_LIMIT {
                        return Err(trailer_too_large());
                    }
                    if line.is_empty() || line == b"\r" {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(true),
            }
        }
    }
}

fn trailer_too_large() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "the chunked body's trailer section is too large",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Head {
        parse(text.as_bytes()).unwrap().unwrap().0
    }

    fn refused(text: &str) -> (StatusCode, String) {
        let e = parse(text.as_bytes()).unwrap_err();
        (e.status, e.message)
    }

    #[test]
    fn heads_parse_and_partial_heads_wait() {
        let text = "GET /api/models/library?quick=1 HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\nX-A: 2\r\n\r\nrest";
        let (head, length) = parse(text.as_bytes()).unwrap().unwrap();
        assert_eq!(length, text.len() - 4);
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri.path(), "/api/models/library");
        assert_eq!(head.uri.query(), Some("quick=1"));
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(head.headers.get_all("x-a").iter().count(), 2);
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        assert!(parse(b"GET / HTT").unwrap().is_none());
        assert_eq!(parsed("GET / HTTP/1.0\n\n").version, Version::HTTP_10);
    }

    #[test]
    fn malformed_heads_are_400_or_431_naming_the_line() {
        let (status, message) = refused("GET /api/models/library\r\nHost: localhost\r\n\r\n");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.contains("request line"), "{message}");
        assert!(message.contains("GET /api/models/library"), "{message}");
        let (status, message) = refused("GET / HTTP/1.1\r\nHost: localhost\r\nNoColon\r\n\r\n");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.contains("\"NoColon\""), "{message}");
        let (status, _) = refused("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = refused("GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = refused("GET / HTTP/2.0\r\n\r\n");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let many: String = (0..500).map(|i| format!("X-{i}: v\r\n")).collect();
        let (status, message) = refused(&format!("GET / HTTP/1.1\r\n{many}\r\n"));
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(message.contains("100"), "{message}");
    }

    fn plan_of(text: &str) -> Result<Plan, (StatusCode, String)> {
        plan(&parsed(text), 100).map_err(|e| (e.status, e.message))
    }

    #[test]
    fn framing_rules() {
        let get = plan_of("GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(get.framing, Framing::Empty);
        assert!(get.keep_alive && !get.expect_continue);
        assert_eq!(
            plan_of("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
                .unwrap()
                .framing,
            Framing::Length(100)
        );
        assert_eq!(
            plan_of("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .framing,
            Framing::Empty
        );
        assert_eq!(
            plan_of("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n")
                .unwrap()
                .framing,
            Framing::Chunked
        );
        for (text, status) in [
            ("Content-Length: 101", StatusCode::PAYLOAD_TOO_LARGE),
            (
                "Content-Length: 99999999999999999999999",
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            ("Content-Length: abc", StatusCode::BAD_REQUEST),
            ("Content-Length: -1", StatusCode::BAD_REQUEST),
            ("Content-Length: +5", StatusCode::BAD_REQUEST),
            ("Content-Length: 5, 5", StatusCode::BAD_REQUEST),
            (
                "Content-Length: 5\r\nContent-Length: 5",
                StatusCode::BAD_REQUEST,
            ),
            ("Content-Length:", StatusCode::BAD_REQUEST),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                StatusCode::BAD_REQUEST,
            ),
            ("Transfer-Encoding: gzip", StatusCode::BAD_REQUEST),
            ("Transfer-Encoding: chunked, gzip", StatusCode::BAD_REQUEST),
            (
                "Transfer-Encoding: gzip, chunked",
                StatusCode::NOT_IMPLEMENTED,
            ),
            ("Expect: something", StatusCode::EXPECTATION_FAILED),
        ] {
            let got = plan_of(&format!("POST / HTTP/1.1\r\n{text}\r\n\r\n"));
            assert_eq!(got.map_err(|e| e.0), Err(status), "{text}");
        }
        let big = plan_of(
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1000000000\r\n\r\n",
        );
        let (status, message) = big.unwrap_err();
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(message.contains("1000000000 bytes"), "{message}");
        assert!(message.contains("length limit of 100 bytes"), "{message}");
        let expect =
            plan_of("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert!(expect.expect_continue);
        let close = plan_of("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n").unwrap();
        assert!(!close.keep_alive);
        let old = plan_of("GET / HTTP/1.0\r\nExpect: whatever\r\n\r\n").unwrap();
        assert!(!old.keep_alive && !old.expect_continue);
        assert_eq!(
            plan_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").map_err(|e| e.0),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    /// Feeds `input` to a decoder in pieces of `step` bytes.
    fn decode(input: &[u8], step: usize, limit: usize) -> Result<(Vec<u8>, Vec<u8>), StatusCode> {
        let mut decoder = ChunkedDecoder::new(limit);
        let mut buf = Vec::new();
        for (i, piece) in input.chunks(step).enumerate() {
            buf.extend_from_slice(piece);
            if decoder.decode(&mut buf).map_err(|e| e.status)? {
                // What follows the body stays for the next request.
                buf.extend_from_slice(&input[((i + 1) * step).min(input.len())..]);
                return Ok((decoder.into_body().to_vec(), buf));
            }
        }
        panic!("incomplete: {decoder:?}");
    }

    #[test]
    fn chunked_bodies_decode_in_any_pieces() {
        let input = b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, input.len()] {
            let (body, rest) = decode(input, step, 100).unwrap();
            assert_eq!(body, b"hello world", "step {step}");
            assert_eq!(rest, b"NEXT", "step {step}");
        }
        assert_eq!(decode(b"0\r\n\r\n", 1, 0).unwrap().0, b"");
    }

    #[test]
    fn chunked_bodies_over_the_limit_or_malformed_are_refused() {
        assert_eq!(
            decode(b"65\r\n", 100, 100).unwrap_err(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "refused from the size line alone"
        );
        let mut many = Vec::new();
        for _ in 0..30 {
            many.extend_from_slice(b"4\r\nabcd\r\n");
        }
        assert_eq!(
            decode(&many, 5, 100).unwrap_err(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            decode(b"ffffffffffffffff\r\n", 100, 100).unwrap_err(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            decode(b"zz\r\n", 100, 100).unwrap_err(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            decode(b"3\r\nabcX\r\n", 100, 100).unwrap_err(),
            StatusCode::BAD_REQUEST
        );
        let long = format!("1;{}", "e".repeat(2000));
        assert_eq!(
            decode(long.as_bytes(), 100, 100).unwrap_err(),
            StatusCode::BAD_REQUEST
        );
    }
}
