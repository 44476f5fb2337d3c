//! Listing answers served as bytes: the encoded body of `GET /api/models/library` for each
//! (listing, filters) pair the service answered from its caches, kept gzip-compressed as
//! long as that listing is the current one (a tenth of the plain size: 4.5 MB instead of
//! 47 MB at 100 000 models). A repeated request is answered with the kept bytes as they are
//! (gzip clients) or inflated piece by piece while they are written (plain clients:
//! [`Kept`] in the response's extensions, which the connection writer streams; ~1.8 GB/s),
//! instead of encoding 100 000 rows again. Owns no service state: the service decides
//! freshness, this only remembers encodings of immutable listings.

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
    /// The whole body with `"cache_hit": true`, compressed.
    kept: Kept,
}

/// A kept body: the gzip-compressed answer and its plain length.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    /// The whole answer, gzip-compressed.
    pub gzip: Bytes,
    /// Its length once inflated (the plain answer's `Content-Length`).
    pub len: usize,
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
    serde_json::to_vec(&ListBody {
        models,
        total: view.len(),
        cache_hit,
    })
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
    gzip_parts(&[body])
}

/// `body` (which ends in `"cache_hit":false}`) gzip-compressed, with `"cache_hit":true}`
/// instead; a body that already says `true` as it is. The plain length comes with it.
pub(crate) fn gzip_as_hit(body: &[u8], cache_hit: bool) -> Kept {
    const MISS: &[u8] = b"false}";
    if cache_hit {
        return Kept {
            gzip: gzip(body),
            len: body.len(),
        };
    }
    debug_assert!(body.ends_with(MISS), "cache_hit is the last field");
    let head = &body[..body.len() - MISS.len()];
    Kept {
        gzip: gzip_parts(&[head, b"true}"]),
        len: head.len() + 5,
    }
}

fn gzip_parts(parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut encoder = GzEncoder::new(Vec::with_capacity(len / 8), Compression::fast());
    parts
        .iter()
        .try_for_each(|p| encoder.write_all(p))
        .and_then(|()| encoder.finish())
        .map(|mut v| {
            v.shrink_to_fit(); // kept for as long as the listing is current
            Bytes::from(v)
        })
        .expect("compressing into memory cannot fail")
}

impl Bodies {
    /// The kept body of `view` with these filters.
    pub fn get(&self, view: &View, query: &ListQuery) -> Option<Kept> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.iter().find(|e| e.is(view, query))?;
        Some(entry.kept.clone())
    }

    /// Keeps the `cache_hit: true` body of `view`. Entries of other listings are dropped:
    /// the service answered from this one, so they are older.
    pub fn put(&self, view: &View, query: &ListQuery, kept: Kept) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|e| e.of(view) && e.query != *query);
        if entries.len() >= MAX_ENTRIES {
            entries.remove(0);
        }
        entries.push(Entry {
            listing: Arc::downgrade(&view.listing),
            query: query.clone(),
            kept,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_kept_body_says_cache_hit_true_and_knows_its_plain_length() {
        use std::io::Read;
        for (body, hit) in [
            (&br#"{"models":[],"cache_hit":false}"#[..], false),
            (br#"{"cache_hit":true}"#, true),
        ] {
            let kept = gzip_as_hit(body, hit);
            let mut text = String::new();
            flate2::read::GzDecoder::new(&kept.gzip[..])
                .read_to_string(&mut text)
                .unwrap();
            assert!(text.ends_with(r#""cache_hit":true}"#), "{text}");
            assert_eq!(text.len(), kept.len);
        }
    }

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
