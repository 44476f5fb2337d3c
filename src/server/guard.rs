//! Who may drive the API: the `Host` check against DNS rebinding, the `Origin` check against
//! other web pages, and the CORS answers for the origins that pass.
//!
//! Owns: what counts as a loopback name and a loopback origin, the normalised form of an
//! origin (for `serve --allow-origin` and for comparing), the 403 messages, the preflight
//! answer and the CORS headers added to answers. Pure functions over a parsed request head;
//! it must not read or write sockets (that is `conn.rs`) nor know the endpoints (`routes.rs`).
//!
//! # The rules
//!
//! - `Host` must name this machine: `localhost` (also `localhost.`, the same name fully
//!   qualified: no DNS server an attacker runs can answer for it), an IPv4 loopback literal
//!   (`127.0.0.1`, any of 127.0.0.0/8) or `[::1]`, with or without a port, in any case.
//!   Anything else — `evil.example` resolving to 127.0.0.1, `foo.localhost`, an empty value —
//!   is 403. An absolute-form target (`GET http://host/…`) must name such a host too.
//! - A missing `Host` is 400 on HTTP/1.1 (RFC 9112 §3.2 requires it) and accepted on
//!   HTTP/1.0: browsers always send one, so only a program on this machine can omit it.
//!   Two `Host` (or two `Origin`) headers are 400.
//! - No `Origin` (curl, scripts, the CLI) passes. An `Origin` passes when it is a loopback
//!   origin (`http`/`https` with a loopback `Host` form and any port) or listed with
//!   `--allow-origin` (exact `scheme://host[:port]` after normalising: lower case, default
//!   port dropped, one trailing `/` dropped). `Origin: null` (sandboxed frames, `file:`
//!   pages) passes only with `--allow-origin null`. Everything else is 403, with a message
//!   that says which flag would allow it.
//! - Requests that pass with an `Origin` get CORS: `Access-Control-Allow-Origin` echoing it
//!   (and `Vary: Origin`) on every answer, and a preflight (`OPTIONS` with
//!   `Access-Control-Request-Method`) is answered 204 here, before the router.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HOST, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// The methods the API has, as answered to a preflight.
const ALLOWED_METHODS: &str = "GET, POST, DELETE";
/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";
const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// The origins allowed besides the loopback ones, normalised.
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    allowed: Vec<String>,
}

impl Guard {
    /// A guard allowing `origins` (as given to `--allow-origin`); an origin that is not
    /// `scheme://host[:port]` or `null` is an error naming it.
    pub(crate) fn new(origins: &[String]) -> Result<Guard, String> {
        let allowed = origins
            .iter()
            .map(|o| normalize_origin(o).map_err(|e| format!("--allow-origin {o:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Guard { allowed })
    }

    /// Checks `Host` (and an absolute-form target), then `Origin`. Passes with the
    /// request's `Origin` when it had one that is allowed (the answer then gets CORS).
    pub(crate) fn check(
        &self,
        version: Version,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Option<HeaderValue>, ApiError> {
        check_host(version, uri, headers)?;
        self.check_origin(headers)
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<Option<HeaderValue>, ApiError> {
        let mut values = headers.get_all(ORIGIN).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ApiError::bad_request(
                "the request has more than one Origin header",
            ));
        }
        let text = String::from_utf8_lossy(value.as_bytes());
        let allowed = match normalize_origin(&text) {
            Ok(origin) => is_loopback_origin(&origin) || self.allowed.contains(&origin),
            Err(_) => false,
        };
        if allowed {
            return Ok(Some(value.clone()));
        }
        let hint = match normalize_origin(&text) {
            Ok(origin) => {
                format!("pass --allow-origin {origin} to `model-library serve` to allow it")
            }
            Err(_) => "only pages on this machine and origins given with --allow-origin \
                       may use it"
                .to_string(),
        };
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "request refused: Origin {text:?} is not allowed to use this API \
                 (it is not a page on this machine); {hint}"
            ),
        ))
    }
}

fn check_host(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut values = headers.get_all(HOST).iter();
    let host = values.next();
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "the request has more than one Host header",
        ));
    }
    let refused = |shown: &str| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "request refused: Host {shown:?} is not a loopback name; this server only \
                 answers requests addressed to localhost, 127.0.0.1 or [::1] \
                 (a guard against DNS rebinding); use http://127.0.0.1:PORT"
            ),
        )
    };
    match host {
        Some(value) => {
            let text = String::from_utf8_lossy(value.as_bytes());
            if !is_loopback_host(&text) {
                return Err(refused(&text));
            }
        }
        None if version == Version::HTTP_10 => {}
        None => {
            return Err(ApiError::bad_request(
                "the request has no Host header (HTTP/1.1 requires one)",
            ));
        }
    }
    if let Some(authority) = uri.authority()
        && !is_loopback_host(authority.as_str())
    {
        return Err(refused(authority.as_str()));
    }
    Ok(())
}

/// Whether `value` (a `Host` header or an authority) names this machine: `localhost` or
/// `localhost.`, an IPv4 loopback literal or an IPv6 loopback literal in brackets, with an
/// optional port, in any case.
pub(crate) fn is_loopback_host(value: &str) -> bool {
    let Some((host, _port)) = split_host_port(value) else {
        return false;
    };
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok_and(|ip| {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        });
    }
    host.eq_ignore_ascii_case("localhost")
        || host.eq_ignore_ascii_case("localhost.")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// Splits `host[:port]` (host possibly a bracketed IPv6 literal). The port, when present,
/// must be decimal and at most 65535; an empty port (`localhost:`) counts as none. `None`
/// when the form is wrong (empty host, a second colon outside brackets, userinfo, a path).
fn split_host_port(value: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match value.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => inner.parse::<Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && !host.bytes().any(|b| {
                    b.is_ascii_whitespace() || b.is_ascii_control() || b"/?#@\\:[]".contains(&b)
                })
        }
    };
    if !host_ok {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 5 => {
            Some(digits.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// The normalised form of an origin, as `--allow-origin` takes it and as requests are
/// compared: `scheme://host[:port]` in lower case, without the scheme's default port (80
/// for http, 443 for https) and without a trailing `/`; or `null`. A path, query, user
/// info or wildcard is an error saying what is expected.
pub fn normalize_origin(origin: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected scheme://host[:port] (e.g. http://localhost:3000) or null";
    let origin = origin.trim();
    if origin.eq_ignore_ascii_case("null") {
        return Ok("null".into());
    }
    if origin == "*" {
        return Err(format!(
            "a wildcard is not supported; list each origin ({EXPECTED})"
        ));
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(EXPECTED.into());
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Err(format!("invalid scheme {scheme:?}; {EXPECTED}"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err(format!(
            "an origin has no path, query or fragment; {EXPECTED}"
        ));
    }
    if rest.contains('@') {
        return Err(format!(
            "an origin has no user name or password; {EXPECTED}"
        ));
    }
    let Some((host, port)) = split_host_port(rest) else {
        return Err(format!("invalid host or port {rest:?}; {EXPECTED}"));
    };
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    Ok(match port {
        Some(port) if Some(port) != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Whether a normalised origin is a page served from this machine over http(s).
fn is_loopback_origin(origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(is_loopback_host)
}

/// Whether a request is a CORS preflight (which the router never sees).
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight from an allowed origin: 204 with the methods the API has and
/// the request headers asked for. The caller adds [`add_cors`] as on every answer.
pub(crate) fn preflight(request: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    if let Some(asked) = request.get(ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    headers.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    // Chrome's Private Network Access asks before a public page may reach loopback; the
    // user allowed this origin, so say yes.
    if request
        .get(REQUEST_PRIVATE_NETWORK)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        headers.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
    }
    headers.append(
        VARY,
        HeaderValue::from_static("Access-Control-Request-Method, Access-Control-Request-Headers"),
    );
    response
}

/// Adds the CORS headers for an allowed `origin` to an answer.
pub(crate) fn add_cors(origin: &HeaderValue, headers: &mut HeaderMap) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-served-from"),
    );
    headers.append(VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LocalHost",
            "localhost:8000",
            "localhost.",
            "localhost.:8000",
            "localhost:",
            "127.0.0.1",
            "127.0.0.1:65535",
            "127.1.2.3",
            "[::1]",
            "[::1]:8000",
            "[0:0:0:0:0:0:0:1]:1",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback_host(host), "{host} should be loopback");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "foo.localhost",
            "localhost..",
            "127.0.0.1.evil.example",
            "127.1",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "0.0.0.0",
            "10.0.0.1",
            "[::]",
            "[::2]",
            "::1",
            "[::1",
            "[::1]x",
            "localhost:99999",
            "localhost:80a",
            "localhost:8000:1",
            "user@localhost",
            "localhost/x",
            " localhost",
        ] {
            assert!(!is_loopback_host(host), "{host:?} should not be loopback");
        }
    }

    #[test]
    fn origins_normalise() {
        for (given, normal) in [
            ("http://my.page", "http://my.page"),
            ("HTTP://My.Page/", "http://my.page"),
            ("http://my.page:80", "http://my.page"),
            ("https://my.page:443", "https://my.page"),
            ("http://my.page:443", "http://my.page:443"),
            ("https://my.page:8443", "https://my.page:8443"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("chrome-extension://abcdef", "chrome-extension://abcdef"),
            ("null", "null"),
            (" http://x ", "http://x"),
        ] {
            assert_eq!(normalize_origin(given).as_deref(), Ok(normal), "{given}");
        }
        for bad in [
            "my.page",
            "*",
            "http://",
            "http://my.page/path",
            "http://my.page?x",
            "http://user@my.page",
            "http://my.page:port",
            "http://my.page:70000",
            "1http://x",
            "://x",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad} should be refused");
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn check(guard: &Guard, pairs: &[(&'static str, &'static str)]) -> Result<bool, StatusCode> {
        guard
            .check(Version::HTTP_11, &Uri::from_static("/x"), &headers(pairs))
            .map(|cors| cors.is_some())
            .map_err(|e| e.status)
    }

    #[test]
    fn host_and_origin_rules() {
        let none = Guard::default();
        let allowed = Guard::new(&["https://My.Page:443/".into(), "null".into()]).unwrap();
        assert_eq!(check(&none, &[("host", "localhost:1")]), Ok(false));
        assert_eq!(
            check(&none, &[("host", "evil.example")]),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(check(&none, &[]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(
            check(&none, &[("host", "localhost"), ("host", "localhost")]),
            Err(StatusCode::BAD_REQUEST)
        );
        let http10 = none.check(Version::HTTP_10, &Uri::from_static("/x"), &HeaderMap::new());
        assert!(matches!(http10, Ok(None)));
        let absolute = none.check(
            Version::HTTP_11,
            &Uri::from_static("http://evil.example/x"),
            &headers(&[("host", "localhost")]),
        );
        assert_eq!(absolute.unwrap_err().status, StatusCode::FORBIDDEN);

        let host = ("host", "127.0.0.1:8000");
        for origin in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "http://[::1]:5",
        ] {
            let value = HeaderValue::from_static(origin);
            assert_eq!(check(&none, &[host, ("origin", origin)]), Ok(true));
            let got = none
                .check(
                    Version::HTTP_11,
                    &Uri::from_static("/"),
                    &headers(&[host, ("origin", origin)]),
                )
                .unwrap();
            assert_eq!(got, Some(value));
        }
        for origin in [
            "http://evil.example",
            "null",
            "file://",
            "ftp://localhost",
            "https://my.page",
            "garbage",
        ] {
            assert_eq!(
                check(&none, &[host, ("origin", origin)]),
                Err(StatusCode::FORBIDDEN),
                "{origin}"
            );
        }
        assert_eq!(
            check(&allowed, &[host, ("origin", "https://my.page")]),
            Ok(true)
        );
        assert_eq!(check(&allowed, &[host, ("origin", "null")]), Ok(true));
        assert_eq!(
            check(&allowed, &[host, ("origin", "http://my.page")]),
            Err(StatusCode::FORBIDDEN),
            "another scheme is another origin"
        );
        assert!(
            Guard::new(&["my.page".into()])
                .unwrap_err()
                .contains("my.page")
        );
    }

    #[test]
    fn refusals_say_what_to_do() {
        let none = Guard::default();
        let err = none
            .check(
                Version::HTTP_11,
                &Uri::from_static("/"),
                &headers(&[("host", "localhost"), ("origin", "http://My.Page:80")]),
            )
            .unwrap_err();
        assert!(
            err.message.contains("--allow-origin http://my.page"),
            "{}",
            err.message
        );
        let err = none
            .check(
                Version::HTTP_11,
                &Uri::from_static("/"),
                &headers(&[("host", "evil.example")]),
            )
            .unwrap_err();
        assert!(err.message.contains("DNS rebinding"), "{}", err.message);
    }
}
