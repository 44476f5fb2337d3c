//! A listing as bytes, the one encoding of the two places that keep listings outside the
//! process: the persisted full listing (`.cache/listing.bin`, every row, for a window's warm
//! start) and the shared tier (Redis: the library's rows only, since the other stores are
//! each machine's own). Paths under the library root are kept relative to it (another
//! instance may mount the library elsewhere); framed, versioned and checksummed
//! ([`cache_file`]), each use with its own magic.
//!
//! Made for the reader: a shared hit must cost a small fraction of a scan, and a one-shot
//! command waits for its save. The repeated strings (providers, sources, capabilities,
//! formats, licenses) are kept once in a table the rows refer to by index, whole capability
//! lists too; a model's folder is not stored when it is `models/<id>`, as it almost always
//! is; rows are encoded from borrowed fields and borrow their text from the bytes while
//! decoded (one allocation per string kept); and the rows come in chunks decoded on all
//! cores. Owns this encoding and nothing else: no I/O, no Redis.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::library::cache::{Listing, Stamps};
use crate::library::cache_file;
use crate::library::layout::Library;
use crate::library::model::{
    Figures, LIBRARY_SOURCE, ListKind, Location, ModelInfo, ModelMetadata, ModelStatus,
};
use crate::library::sym::{Sym, Syms};

/// Version of this encoding; bump on any change to [`Head`] or [`Row`].
pub const VERSION: u32 = 9;
/// Rows per chunk: enough that a chunk's decoding outweighs handing it to a thread.
const CHUNK_ROWS: usize = 2_048;

/// Everything but the rows, then the rows' chunks follow (their lengths here).
#[derive(Serialize, Deserialize)]
struct Head<'a> {
    /// The library root the rows were read under (persisted listings; empty when shared).
    library_root: Cow<'a, str>,
    kind: ListKind,
    timestamp: f64,
    scan_started: f64,
    scan_duration_secs: f64,
    registry: Option<f64>,
    models_dir: Option<f64>,
    downloads_dir: Option<f64>,
    problems: Vec<String>,
    /// The publisher's watch session when its file events have covered the listing since
    /// its scan began (see [`crate::library::shared`]).
    covered_by: Option<String>,
    /// The repeated strings the rows refer to by index.
    #[serde(borrow)]
    strings: Vec<&'a str>,
    /// The distinct capability lists, as indices into `strings`.
    capability_lists: Vec<Vec<u32>>,
    /// Byte length of each chunk of rows.
    chunks: Vec<u64>,
}

/// One library row; `u32`s index [`Head::strings`].
#[derive(Serialize, Deserialize)]
struct Row<'a> {
    id: &'a str,
    name: &'a str,
    provider: u32,
    status: ModelStatus,
    /// Index into [`Head::capability_lists`].
    capabilities: u32,
    format: Option<u32>,
    #[serde(borrow)]
    description: Option<&'a str>,
    license: Option<u32>,
    registered: bool,
    /// Relative to the library root when under it, else whole; `None` when it is
    /// `models/<id>`.
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
    size_bytes: Option<u64>,
    file_count: Option<u64>,
    expected_size_bytes: Option<u64>,
    modified: Option<f64>,
    #[serde(borrow)]
    error: Option<&'a str>,
    metadata: Option<ModelMetadata>,
    #[serde(borrow)]
    main_file: Option<Cow<'a, str>>,
    #[serde(borrow)]
    note: Option<&'a str>,
    partial_bytes: Option<u64>,
    source: u32,
}

/// The table of repeated strings being built, each kept once.
#[derive(Default)]
struct Strings<'a> {
    list: Vec<&'a str>,
    index: HashMap<&'a str, u32>,
    capability_lists: Vec<Vec<u32>>,
    capability_index: HashMap<Vec<u32>, u32>,
}

impl<'a> Strings<'a> {
    fn of(&mut self, s: &'a str) -> u32 {
        *self.index.entry(s).or_insert_with(|| {
            self.list.push(s);
            (self.list.len() - 1) as u32
        })
    }

    fn capabilities(&mut self, caps: &'a [Sym]) -> u32 {
        let list: Vec<u32> = caps.iter().map(|c| self.of(c)).collect();
        if let Some(&i) = self.capability_index.get(&list) {
            return i; // the common case: a list seen before, no copy made
        }
        let i = self.capability_lists.len() as u32;
        self.capability_lists.push(list.clone());
        self.capability_index.insert(list, i);
        i
    }
}

/// What the bytes are for, which decides what they keep and how they are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The persisted listing: every row, the library root named (a file copied to another
    /// library is refused).
    Persisted,
    /// The shared tier: the library's rows only, no root (each instance its own mount).
    Shared,
}

impl Purpose {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            Purpose::Persisted => b"MLCACHE\0",
            Purpose::Shared => b"MLSHARE\0",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Purpose::Persisted => "listing cache",
            Purpose::Shared => "shared listing",
        }
    }
}

/// A listing read back, with what its bytes said about it.
#[derive(Debug)]
pub struct Decoded {
    pub listing: Listing,
    /// The watch session whose file events have covered it since its scan began, if any
    /// (shared listings; see [`crate::library::shared`]).
    pub covered_by: Option<String>,
    /// The library root it was read under (persisted listings; empty when shared).
    pub library_root: String,
}

/// The bytes that keep `listing` of `library` for `purpose`, vouched for by the watch
/// session `covered_by`, if any.
pub fn encode(
    library: &Library,
    listing: &Listing,
    purpose: Purpose,
    covered_by: Option<&str>,
) -> Vec<u8> {
    let root = library.root();
    let models_dir = library.models_dir();
    let rows: Vec<&ModelInfo> = listing
        .models
        .iter()
        .map(|m| &**m)
        .filter(|m| purpose == Purpose::Persisted || m.source == LIBRARY_SOURCE)
        .collect();
    let mut strings = Strings::default();
    let mut chunks = Vec::new();
    for part in rows.chunks(CHUNK_ROWS) {
        let wire: Vec<Row> = part
            .iter()
            .map(|m| row_of(m, root, &models_dir, &mut strings))
            .collect();
        // Encoding plain data into a Vec cannot fail.
        chunks.push(postcard::to_stdvec(&wire).unwrap_or_default());
    }
    let head = Head {
        library_root: match purpose {
            Purpose::Persisted => root.to_string_lossy(),
            Purpose::Shared => Cow::Borrowed(""),
        },
        kind: listing.kind,
        timestamp: listing.timestamp,
        scan_started: listing.scan_started,
        scan_duration_secs: listing.scan_duration.as_secs_f64(),
        registry: listing.stamps.registry,
        models_dir: listing.stamps.models_dir,
        downloads_dir: listing.stamps.downloads_dir,
        problems: listing.problems.clone(),
        covered_by: covered_by.map(str::to_string),
        strings: strings.list,
        capability_lists: strings.capability_lists,
        chunks: chunks.iter().map(|c| c.len() as u64).collect(),
    };
    let mut payload = postcard::to_stdvec(&head).unwrap_or_default();
    for chunk in chunks {
        payload.extend_from_slice(&chunk);
    }
    cache_file::framed(purpose.magic(), VERSION, &payload)
}

fn row_of<'a>(
    m: &'a ModelInfo,
    root: &Path,
    models_dir: &Path,
    strings: &mut Strings<'a>,
) -> Row<'a> {
    let in_place = m.folder_in(models_dir) == Some(m.id.as_ref());
    let path = if in_place {
        None
    } else {
        let path = m.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy();
        Some(Cow::Owned(rel.into_owned()))
    };
    Row {
        id: &m.id,
        name: &m.name,
        provider: strings.of(&m.provider),
        status: m.status,
        capabilities: strings.capabilities(&m.capabilities),
        format: m.format.as_deref().map(|f| strings.of(f)),
        description: m.description.as_deref(),
        license: m.license.as_deref().map(|l| strings.of(l)),
        registered: m.registered,
        path,
        size_bytes: m.size_bytes(),
        file_count: m.file_count(),
        expected_size_bytes: m.expected_size_bytes(),
        modified: m.modified(),
        error: m.error.as_deref(),
        metadata: m.metadata.as_deref().cloned(),
        main_file: m.main_file.as_deref().map(Path::to_string_lossy),
        note: m.note.as_deref(),
        partial_bytes: m.partial_bytes(),
        source: strings.of(&m.source),
    }
}

/// The listing in `bytes` (from [`encode`] for `purpose`), its paths joined to this
/// instance's library root; or why the bytes are not such a listing ("not a … file",
/// another version, truncated, damaged).
pub fn decode(library: &Library, bytes: &[u8], purpose: Purpose) -> Result<Decoded, String> {
    let payload = cache_file::unframed(bytes, purpose.magic(), VERSION, purpose.what())?;
    let unreadable = || "unreadable".to_string();
    let (head, mut rest): (Head, &[u8]) =
        postcard::take_from_bytes(payload).map_err(|_| unreadable())?;
    let mut chunks = Vec::with_capacity(head.chunks.len());
    for &len in &head.chunks {
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= rest.len())
            .ok_or_else(unreadable)?;
        let (chunk, after) = rest.split_at(len);
        chunks.push(chunk);
        rest = after;
    }
    // Times that are not times (damaged or hostile bytes) would pass or break the checks.
    let times = [head.timestamp, head.scan_started, head.scan_duration_secs];
    if times.iter().any(|t| !t.is_finite()) {
        return Err(unreadable());
    }
    let table = Table::of(&head).ok_or_else(unreadable)?;
    let root = library.root();
    let models_dir = library.models_dir();
    let decoded: Option<Vec<Vec<Arc<ModelInfo>>>> = chunks
        .par_iter()
        .map(|chunk| decode_chunk(chunk, &table, root, &models_dir))
        .collect();
    let models = decoded.ok_or_else(unreadable)?.concat();
    let listing = Listing {
        kind: head.kind,
        models,
        problems: head.problems,
        scan_started: head.scan_started,
        timestamp: head.timestamp,
        scan_duration: Duration::try_from_secs_f64(head.scan_duration_secs.max(0.0))
            .unwrap_or_default(),
        stamps: Stamps {
            registry: head.registry,
            models_dir: head.models_dir,
            downloads_dir: head.downloads_dir,
        },
    };
    Ok(Decoded {
        listing,
        covered_by: head.covered_by,
        library_root: head.library_root.into_owned(),
    })
}

/// The head's strings made the values rows hold, once each.
struct Table {
    syms: Vec<Sym>,
    capability_lists: Vec<Syms>,
}

impl Table {
    /// The table, or `None` when a capability list names a string the head lacks.
    fn of(head: &Head) -> Option<Table> {
        let syms: Vec<Sym> = head.strings.iter().map(|s| Sym::new(s)).collect();
        let capability_lists = head
            .capability_lists
            .iter()
            .map(|l| {
                l.iter()
                    .map(|&i| syms.get(i as usize).cloned())
                    .collect::<Option<Syms>>()
            })
            .collect::<Option<Vec<Syms>>>()?;
        Some(Table {
            syms,
            capability_lists,
        })
    }

    fn sym(&self, i: u32) -> Option<Sym> {
        self.syms.get(i as usize).cloned()
    }
}

fn decode_chunk(
    chunk: &[u8],
    table: &Table,
    root: &Path,
    models_dir: &Path,
) -> Option<Vec<Arc<ModelInfo>>> {
    let rows: Vec<Row> = postcard::from_bytes(chunk).ok()?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(Arc::new(model_of(r, table, root, models_dir)?));
    }
    Some(out)
}

fn model_of(r: Row, table: &Table, root: &Path, models_dir: &Path) -> Option<ModelInfo> {
    let location = match r.path {
        Some(rel) => Location::of(&root.join(&*rel), r.id),
        None => Location::in_folder(models_dir, r.id),
    };
    Some(ModelInfo {
        id: r.id.to_string(),
        name: r.name.into(),
        provider: table.sym(r.provider)?,
        status: r.status,
        capabilities: table.capability_lists.get(r.capabilities as usize)?.clone(),
        format: match r.format {
            Some(f) => Some(table.sym(f)?),
            None => None,
        },
        description: r.description.map(Into::into),
        license: match r.license {
            Some(l) => Some(table.sym(l)?),
            None => None,
        },
        registered: r.registered,
        location,
        figures: Figures::default()
            .with_size(r.size_bytes)
            .with_files(r.file_count)
            .with_expected(r.expected_size_bytes)
            .with_modified(r.modified)
            .with_partial(r.partial_bytes),
        error: r.error.map(Into::into),
        note: r.note.map(Into::into),
        source: table.sym(r.source)?,
        metadata: r.metadata.map(Arc::new),
        main_file: r.main_file.map(|f| Path::new(&*f).into()),
    })
}

/// `dir/name` in one allocation of the right size.
#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn row(id: &str, path: PathBuf, source: &str) -> ModelInfo {
        ModelInfo {
            id: id.to_string(),
            name: format!("Name of {id}").into(),
            provider: Sym::new("huggingface"),
            status: ModelStatus::Downloaded,
            capabilities: vec![Sym::new("chat"), Sym::new("text-generation")].into(),
            format: Some(Sym::new("gguf")),
            description: Some("a model".into()),
            license: Some(Sym::new("apache-2.0")),
            registered: true,
            location: Location::of(&path, id),
            figures: Figures::default()
                .with_size(Some(123))
                .with_files(Some(2))
                .with_modified(Some(1_700_000_000.123_456)),
            error: None,
            note: None,
            source: Sym::new(source),
            metadata: None,
            main_file: Some(Path::new("model.gguf").into()),
        }
    }

    fn listing(models: Vec<ModelInfo>) -> Listing {
        Listing {
            kind: ListKind::Full,
            models: models.into_iter().map(Arc::new).collect(),
            problems: vec!["entry 3: no id".into()],
            scan_started: 10.5,
            timestamp: 11.25,
            scan_duration: Duration::from_millis(750),
            stamps: Stamps {
                registry: Some(1.5),
                models_dir: None,
                downloads_dir: Some(2.5),
            },
        }
    }

    /// Every field of every kind of row comes back, on another mount's paths; the other
    /// stores' rows are not shared; enough rows for several chunks keep their order.
    #[test]
    fn round_trip_on_another_mount() {
        let (a, b) = (Library::new("/mnt/a/lib"), Library::new("/srv/b"));
        let mut odd = row("odd", a.root().join("elsewhere/odd"), LIBRARY_SOURCE);
        odd.status = ModelStatus::Error;
        odd.error = Some("model.gguf: sha256 mismatch".into());
        odd.note = Some("being imported".into());
        odd.figures.set_partial(Some(7));
        odd.license = None;
        odd.format = None;
        odd.capabilities = Syms::default();
        odd.main_file = None;
        odd.metadata = Some(Arc::new(ModelMetadata {
            architecture: Some("llama".into()),
            parameter_count: Some(8_000_000_000),
            quantization: Some("Q4_K_M".into()),
            context_length: Some(8192),
            dtypes: vec!["F16".into(), "Q4_K".into()],
            kv_bytes_per_token: Some(131_072),
        }));
        let mut models: Vec<ModelInfo> = (0..CHUNK_ROWS * 2 + 5)
            .map(|i| {
                let id = format!("m-{i:05}");
                row(&id, a.models_dir().join(&id), LIBRARY_SOURCE)
            })
            .collect();
        models.insert(3, odd);
        let store = row("hf/x", PathBuf::from("/home/u/.cache/hf/x"), "huggingface");
        models.push(store);
        let sent = listing(models);

        let bytes = encode(&a, &sent, Purpose::Shared, Some("ab12-cd"));
        let got = decode(&b, &bytes, Purpose::Shared).expect("decodes");
        assert_eq!(got.covered_by.as_deref(), Some("ab12-cd"));
        let got = got.listing;
        assert_eq!(
            got.models.len(),
            sent.models.len() - 1,
            "the store row stays home"
        );
        for (g, s) in got.models.iter().zip(&sent.models) {
            let mut expected = ModelInfo::clone(s);
            let path = s.path();
            let rel = path.strip_prefix(a.root()).unwrap();
            expected.location = Location::of(&b.root().join(rel), &s.id);
            assert_eq!(**g, expected);
        }
        assert_eq!(got.models[3].path(), Path::new("/srv/b/elsewhere/odd"));
        assert_eq!(got.kind, ListKind::Full);

        // Persisted: every row (the store's with its own path), the root named.
        let bytes = encode(&a, &sent, Purpose::Persisted, None);
        let kept = decode(&a, &bytes, Purpose::Persisted).expect("decodes");
        assert_eq!(kept.library_root, "/mnt/a/lib");
        assert_eq!(kept.listing.models, sent.models);
        assert!(
            decode(&a, &bytes, Purpose::Shared).is_err(),
            "not a shared listing"
        );
        let fast = Listing {
            kind: ListKind::Fast,
            ..sent.clone()
        };
        let bytes = encode(&a, &fast, Purpose::Shared, None);
        let got_fast = decode(&b, &bytes, Purpose::Shared).expect("decodes");
        assert_eq!(got_fast.listing.kind, ListKind::Fast);
        assert_eq!(got.problems, sent.problems);
        assert_eq!(got.stamps, sent.stamps);
        assert_eq!(
            (got.scan_started, got.timestamp, got.scan_duration),
            (10.5, 11.25, Duration::from_millis(750))
        );
    }

    /// Damaged bytes, another version, an index past the table: no listing, no panic.
    #[test]
    fn damaged_bytes_are_refused() {
        let lib = Library::new("/lib");
        let good = encode(
            &lib,
            &listing(vec![row("m", lib.models_dir().join("m"), LIBRARY_SOURCE)]),
            Purpose::Shared,
            None,
        );
        let decode = |bytes: &[u8]| decode(&lib, bytes, Purpose::Shared).ok();
        assert!(decode(&good).is_some_and(|l| l.covered_by.is_none()));
        assert!(decode(&good[..good.len() - 1]).is_none(), "truncated");
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode(&flipped).is_none(), "checksum");
        let mut other_version = good.clone();
        other_version[8] = other_version[8].wrapping_add(1);
        assert!(decode(&other_version).is_none(), "version");
        assert!(decode(b"not a listing").is_none());

        // Well framed, but a row names a string the table lacks.
        let magic = Purpose::Shared.magic();
        let payload = cache_file::unframed(&good, magic, VERSION, "t").unwrap();
        let (mut head, rest): (Head, &[u8]) = postcard::take_from_bytes(payload).unwrap();
        let reframed = |head: &Head| {
            let mut bad = postcard::to_stdvec(head).unwrap();
            bad.extend_from_slice(rest);
            cache_file::framed(magic, VERSION, &bad)
        };
        let strings = std::mem::take(&mut head.strings);
        assert!(decode(&reframed(&head)).is_none(), "a row's string missing");
        head.strings = strings;
        head.capability_lists[0].push(999);
        assert!(decode(&reframed(&head)).is_none(), "a capability missing");
        head.capability_lists[0].pop();
        assert!(decode(&reframed(&head)).is_some());
        for bad_time in [f64::INFINITY, f64::NAN, 1e300] {
            head.scan_duration_secs = bad_time;
            let got = decode(&reframed(&head));
            assert!(
                got.as_ref()
                    .is_none_or(|l| l.listing.scan_duration == Duration::ZERO),
                "{bad_time}"
            );
            head.scan_duration_secs = 0.5;
            head.timestamp = bad_time;
            if !bad_time.is_finite() {
                assert!(decode(&reframed(&head)).is_none(), "timestamp {bad_time}");
            }
            head.timestamp = 11.25;
        }
    }
}
