//! Listing answers served as bytes: the encoded body of `GET /api/models/library` for each
//! (listing, filters) pair the service answered from its caches, kept as long as that
//! listing is the current one, plain and (once a client asked for it) gzip-compressed. A
//! repeated request is answered by cloning a `Bytes` handle instead of encoding 100 000
//! rows again. Owns no service state: the service decides freshness, this only remembers
//! encodings of immutable listings.

use std::io::Write;
use std::sync::{Arc, Mutex, Weak};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::http::header::ACCEPT_ENCODING;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;

use crate::library::{ListQuery, Listing, ModelInfo, View};

/// Encodings kept at most (one per filter combination in use; a new listing replaces them).
const MAX_ENTRIES: usize = 16;

/// The encoded bodies of cached views.
#[derive(Default)]
pub(crate) struct Bodies {
    /// Only entries of the newest listing put are kept. Each names its listing by a weak
    /// reference: the rows are freed as soon as the service drops the listing, while the
    /// reference keeps the address from being reused by another listing.
    entries: Mutex<Vec<Entry>>,
}

struct Entry {
    listing: Weak<Listing>,
    query: ListQuery,
    /// The whole body with `"cache_hit": true`.
    plain: Bytes,
    /// `plain` gzip-compressed, made the first time a client accepted gzip.
    gzip: Option<Bytes>,
}

impl Entry {
    /// Whether this is a body of `view`'s listing.
    fn of(&self, view: &View) -> bool {
        std::ptr::eq(self.listing.as_ptr(), Arc::as_ptr(&view.listing))
    }

    /// Whether this is the body of `view` (its listing, these filters).
    fn is(&self, view: &View, query: &ListQuery) -> bool {
        self.of(view) && self.query == *query
    }
}

/// A page of a view: `offset` rows skipped, at most `limit` given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Page {
    pub offset: usize,
    pub limit: Option<usize>,
}

impl Page {
    /// Whether this is the whole view.
    pub fn is_whole(&self) -> bool {
        self.offset == 0 && self.limit.is_none()
    }
}

/// The answer of `GET /api/models/library`.
#[derive(Serialize)]
struct ListBody<'a> {
    models: Vec<&'a ModelInfo>,
    total: usize,
    cache_hit: bool,
}

/// Encodes a page of `view` with `cache_hit`.
pub(crate) fn encode(view: &View, page: Page, cache_hit: bool) -> serde_json::Result<Vec<u8>> {
    let models: Vec<&ModelInfo> = view
        .iter()
        .skip(page.offset)
        .take(page.limit.unwrap_or(usize::MAX))
        .collect();
    let mut body = serde_json::to_vec(&ListBody {
        models,
        total: view.len(),
        cache_hit,
    })?;
    body.shrink_to_fit(); // kept for as long as the listing is current
    Ok(body)
}

/// Whether the client accepts a gzip-encoded answer (`Accept-Encoding: gzip`, not `q=0`).
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// `body` gzip-compressed (fast level: the answer is made once per listing).
pub(crate) fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 8), Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map(Bytes::from)
        .expect("compressing into memory cannot fail")
}

impl Bodies {
    /// The kept body of `view` (plain, or gzip when `gzip` and one was made).
    pub fn get(&self, view: &View, query: &ListQuery, gzip: bool) -> Option<Bytes> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.iter().find(|e| e.is(view, query))?;
        if gzip {
            entry.gzip.clone()
        } else {
            Some(entry.plain.clone())
        }
    }

    /// Keeps the `cache_hit: true` body of `view` (and its gzip form, if made). Entries of
    /// other listings are dropped: the service answered from this one, so they are older.
    pub fn put(&self, view: &View, query: &ListQuery, plain: Bytes, gzip: Option<Bytes>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.of(view) && e.query != *query);
        if entries.len() >= MAX_ENTRIES {
            entries.remove(0);
        }
        entries.push(Entry {
            listing: Arc::downgrade(&view.listing),
            query: query.clone(),
            plain,
            gzip,
        });
    }

    /// Adds the gzip form to the kept body of `view`.
    pub fn put_gzip(&self, view: &View, query: &ListQuery, gzip: Bytes) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.iter_mut().find(|e| e.is(view, query)) {
            entry.gzip = Some(gzip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn gzip_is_accepted_unless_refused() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        for (value, accepted) in [
            ("gzip", true),
            ("deflate, gzip;q=0.8", true),
            ("GZIP", true),
            ("*", true),
            ("gzip;q=0", false),
            ("br, deflate", false),
            ("identity", false),
        ] {
            h.insert(ACCEPT_ENCODING, HeaderValue::from_static(value));
            assert_eq!(accepts_gzip(&h), accepted, "{value}");
        }
    }
}
