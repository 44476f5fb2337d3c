//! Header readers (GGUF, safetensors, Ollama config) on small real files written here, and
//! malformed ones refused without a panic or a large allocation; the metadata cache.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use model_library::library::metadata::{
    HeaderKind, MetadataCache, MetadataError, parse_parameter_label, read_gguf, read_header,
    read_metadata, read_ollama_config, read_safetensors,
};
use model_library::library::{Figures, ModelMetadata};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// The largest single allocation made by this thread, to prove that absurd sizes in a header
// never turn into big allocations.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|m| m.set(m.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Runs `f` and returns its result with the largest allocation it made.
fn largest_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|m| m.set(0));
    let out = f();
    (out, LARGEST.with(|m| m.get()))
}

#[test]
fn allocation_tracking_sees_big_allocations() {
    let (v, largest) = largest_alloc(|| vec![1u8; 8 << 20]);
    assert!(largest >= 8 << 20 && v.len() == 8 << 20);
}

/// No reader may allocate more than this for a tiny file, whatever it declares.
const ALLOC_BOUND: usize = 2 << 20;

// ---------------------------------------------------------------------------------------
// A hand-rolled GGUF writer.

const T_UINT32: u32 = 4;
const T_FLOAT32: u32 = 6;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_UINT64: u32 = 10;

#[derive(Default)]
struct Gguf {
    kvs: Vec<u8>,
    kv_count: u64,
    tensors: Vec<u8>,
    tensor_count: u64,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

impl Gguf {
    fn key(&mut self, k: &str, ty: u32) -> &mut Vec<u8> {
        self.kv_count += 1;
        put_str(&mut self.kvs, k);
        self.kvs.extend(ty.to_le_bytes());
        &mut self.kvs
    }
    fn string(mut self, k: &str, v: &str) -> Self {
        put_str(self.key(k, T_STRING), v);
        self
    }
    fn u32(mut self, k: &str, v: u32) -> Self {
        self.key(k, T_UINT32).extend(v.to_le_bytes());
        self
    }
    fn u64(mut self, k: &str, v: u64) -> Self {
        self.key(k, T_UINT64).extend(v.to_le_bytes());
        self
    }
    fn f32(mut self, k: &str, v: f32) -> Self {
        self.key(k, T_FLOAT32).extend(v.to_le_bytes());
        self
    }
    fn strings(mut self, k: &str, vs: &[&str]) -> Self {
        let b = self.key(k, T_ARRAY);
        b.extend(T_STRING.to_le_bytes());
        b.extend((vs.len() as u64).to_le_bytes());
        for v in vs {
            put_str(b, v);
        }
        self
    }
    fn u32s(mut self, k: &str, vs: &[u32]) -> Self {
        let b = self.key(k, T_ARRAY);
        b.extend(T_UINT32.to_le_bytes());
        b.extend((vs.len() as u64).to_le_bytes());
        for v in vs {
            b.extend(v.to_le_bytes());
        }
        self
    }
    fn tensor(mut self, name: &str, dims: &[u64], ty: u32) -> Self {
        self.tensor_count += 1;
        put_str(&mut self.tensors, name);
        self.tensors.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.tensors.extend(d.to_le_bytes());
        }
        self.tensors.extend(ty.to_le_bytes());
        self.tensors.extend(0u64.to_le_bytes());
        self
    }
    fn bytes_v(&self, version: u32) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(version.to_le_bytes());
        out.extend(self.tensor_count.to_le_bytes());
        out.extend(self.kv_count.to_le_bytes());
        out.extend(&self.kvs);
        out.extend(&self.tensors);
        out
    }
    fn bytes(&self) -> Vec<u8> {
        self.bytes_v(3)
    }
}

/// A small llama-like GGUF: Q4_K_M file type, a token array, three tensors.
fn sample_gguf() -> Gguf {
    Gguf::default()
        .string("general.architecture", "llama")
        .string("general.name", "Tiny Llama")
        .u32("llama.context_length", 4096)
        .u32("general.file_type", 15)
        .f32("llama.rope.freq_base", 10000.0)
        .strings("tokenizer.ggml.tokens", &["<s>", "</s>", "hello", "world"])
        .u32s("tokenizer.ggml.token_type", &[3, 3, 1, 1])
        .tensor("token_embd.weight", &[64, 4], 12)
        .tensor("blk.0.attn_norm.weight", &[64], 0)
        .tensor("output.weight", &[64, 4], 14)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

// ---------------------------------------------------------------------------------------
// GGUF

#[test]
fn gguf_header_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.gguf", &sample_gguf().bytes());
    let (md, largest) = largest_alloc(|| read_gguf(&p).unwrap());
    assert_eq!(
        md,
        ModelMetadata {
            architecture: Some("llama".into()),
            parameter_count: Some(64 * 4 * 2 + 64),
            quantization: Some("Q4_K_M".into()),
            context_length: Some(4096),
            dtypes: vec!["F32".into(), "Q4_K".into(), "Q6_K".into()],
            kv_bytes_per_token: None,
        }
    );
    assert!(largest < ALLOC_BOUND, "allocated {largest} bytes");
}

#[test]
fn gguf_version_2_and_key_order_and_type_fallback() {
    let dir = tempfile::tempdir().unwrap();
    // context before architecture, no general.file_type: quantization from the tensor type
    // with the most elements (F32 norms not counting), a u64 context length.
    let g = Gguf::default()
        .u64("qwen2.context_length", 32768)
        .u32("llama.context_length", 1)
        .string("general.architecture", "qwen2")
        .tensor("a", &[10, 10], 8)
        .tensor("b", &[10], 0)
        .tensor("c", &[5, 5], 1);
    let p = write(dir.path(), "m.gguf", &g.bytes_v(2));
    let md = read_gguf(&p).unwrap();
    assert_eq!(md.architecture.as_deref(), Some("qwen2"));
    assert_eq!(md.context_length, Some(32768));
    assert_eq!(md.quantization.as_deref(), Some("Q8_0"));
    assert_eq!(md.parameter_count, Some(100 + 10 + 25));
    assert_eq!(md.dtypes, ["F16", "F32", "Q8_0"]);

    // Unknown file type numbers are named, not guessed.
    let p = write(
        dir.path(),
        "u.gguf",
        &Gguf::default().u32("general.file_type", 999).bytes(),
    );
    let md = read_gguf(&p).unwrap();
    assert_eq!(md.quantization.as_deref(), Some("type 999"));
    assert_eq!(md.parameter_count, Some(0));
}

#[test]
fn gguf_wrong_magic_and_versions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = sample_gguf().bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let p = write(dir.path(), "magic.gguf", &bytes);
    assert!(matches!(
        read_gguf(&p),
        Err(MetadataError::WrongFormat { .. })
    ));

    let p = write(dir.path(), "v1.gguf", &sample_gguf().bytes_v(1));
    let err = read_gguf(&p).unwrap_err();
    assert!(
        matches!(err, MetadataError::UnsupportedVersion { version: 1, .. }),
        "{err}"
    );

    let p = write(
        dir.path(),
        "be.gguf",
        &sample_gguf().bytes_v(3u32.swap_bytes()),
    );
    let err = read_gguf(&p).unwrap_err().to_string();
    assert!(err.contains("big-endian"), "{err}");
}

#[test]
fn gguf_truncated_at_every_offset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let full = sample_gguf().bytes();
    let p = dir.path().join("t.gguf");
    for n in 0..full.len() {
        fs::write(&p, &full[..n]).unwrap();
        let (res, largest) = largest_alloc(|| read_gguf(&p));
        let err = res.expect_err(&format!("prefix of {n} bytes accepted"));
        assert!(
            matches!(
                err,
                MetadataError::Truncated { .. }
                    | MetadataError::WrongFormat { .. }
                    | MetadataError::Malformed { .. }
            ),
            "prefix {n}: {err}"
        );
        assert!(err.to_string().contains("t.gguf"), "{err}");
        assert!(largest < ALLOC_BOUND, "prefix {n}: allocated {largest}");
    }
    fs::write(&p, &full).unwrap();
    assert!(read_gguf(&p).is_ok());
}

/// GGUF bytes with a raw header and raw body.
fn raw_gguf(tensor_count: u64, kv_count: u64, body: &[u8]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(tensor_count.to_le_bytes());
    out.extend(kv_count.to_le_bytes());
    out.extend(body);
    out
}

fn refused(dir: &Path, name: &str, bytes: &[u8], expect: &str) {
    let p = write(dir, name, bytes);
    let (res, largest) = largest_alloc(|| read_gguf(&p));
    let err = res.expect_err(name).to_string();
    assert!(err.contains(expect), "{name}: {err}");
    assert!(largest < ALLOC_BOUND, "{name}: allocated {largest}");
}

#[test]
fn gguf_absurd_counts_and_sizes_are_refused_without_big_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let padding = [0u8; 64];
    refused(d, "kv_max", &raw_gguf(0, u64::MAX, &padding), "kv_count");
    refused(
        d,
        "tensors_max",
        &raw_gguf(u64::MAX, 0, &padding),
        "tensor_count",
    );
    refused(d, "kv_unfit", &raw_gguf(0, 900_000, &padding), "cannot fit");

    // A key of 1 << 60 bytes.
    let mut body = (1u64 << 60).to_le_bytes().to_vec();
    body.extend(padding);
    refused(d, "huge_key", &raw_gguf(0, 1, &body), "1152921504606846976");

    // A string value of 1 << 60 bytes.
    let mut body = Vec::new();
    put_str(&mut body, "general.name");
    body.extend(T_STRING.to_le_bytes());
    body.extend((1u64 << 60).to_le_bytes());
    body.extend(padding);
    refused(d, "huge_string", &raw_gguf(0, 1, &body), "more than the");

    // The architecture string, which is materialised, of 2 MiB declared (over the limit).
    let mut body = Vec::new();
    put_str(&mut body, "general.architecture");
    body.extend(T_STRING.to_le_bytes());
    body.extend((2u64 << 20).to_le_bytes());
    body.extend(padding);
    refused(d, "big_arch", &raw_gguf(0, 1, &body), "more than the");

    // An array of u64::MAX elements, of u32s and of strings.
    for (name, elem) in [("array_u32", T_UINT32), ("array_str", T_STRING)] {
        let mut body = Vec::new();
        put_str(&mut body, "tokenizer.ggml.tokens");
        body.extend(T_ARRAY.to_le_bytes());
        body.extend(elem.to_le_bytes());
        body.extend(u64::MAX.to_le_bytes());
        body.extend(padding);
        refused(d, name, &raw_gguf(0, 1, &body), "elements");
    }
    // An array that is within the limit but longer than the file.
    let mut body = Vec::new();
    put_str(&mut body, "tokenizer.ggml.tokens");
    body.extend(T_ARRAY.to_le_bytes());
    body.extend(T_STRING.to_le_bytes());
    body.extend(1_000_000u64.to_le_bytes());
    body.extend(padding);
    refused(d, "array_unfit", &raw_gguf(0, 1, &body), "cannot fit");

    // Unknown value type.
    let mut body = Vec::new();
    put_str(&mut body, "x");
    body.extend(77u32.to_le_bytes());
    body.extend(padding);
    refused(
        d,
        "bad_type",
        &raw_gguf(0, 1, &body),
        "unknown value type 77",
    );

    // Deeply nested arrays.
    let mut body = Vec::new();
    put_str(&mut body, "x");
    body.extend(T_ARRAY.to_le_bytes());
    for _ in 0..10 {
        body.extend(T_ARRAY.to_le_bytes());
        body.extend(1u64.to_le_bytes());
    }
    body.extend(padding);
    refused(d, "nested", &raw_gguf(0, 1, &body), "nested");

    // A tensor of 1000 dimensions.
    let mut body = Vec::new();
    put_str(&mut body, "t");
    body.extend(1000u32.to_le_bytes());
    body.extend([0u8; 128]);
    refused(d, "dims", &raw_gguf(1, 0, &body), "1000 dimensions");

    // A tensor whose element count overflows u64.
    let g = Gguf::default().tensor("t", &[u64::MAX, 2], 0);
    refused(d, "overflow", &g.bytes(), "overflows");
    // Two tensors whose sum overflows.
    let g = Gguf::default()
        .tensor("a", &[u64::MAX / 2 + 1], 0)
        .tensor("b", &[u64::MAX / 2 + 1], 0);
    refused(d, "sum_overflow", &g.bytes(), "overflows");
    // A tensor type number that is absurd.
    let g = Gguf::default().tensor("t", &[4], 100_000);
    refused(d, "tensor_type", &g.bytes(), "unknown type");
}

// ---------------------------------------------------------------------------------------
// safetensors

fn safetensors_bytes(header: &str, data: usize) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(vec![0u8; data]);
    out
}

const ST_HEADER: &str = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[12,20]},"c":{"dtype":"F16","shape":[],"data_offsets":[20,22]}}"#;

#[test]
fn safetensors_header_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m.safetensors",
        &safetensors_bytes(ST_HEADER, 22),
    );
    let md = read_safetensors(&p).unwrap();
    assert_eq!(md.parameter_count, Some(6 + 4 + 1));
    assert_eq!(md.dtypes, ["BF16", "F16"]);
    assert_eq!(md.architecture, None);
    // Read through the dispatcher too, even without the extension (a blob).
    let blob = write(dir.path(), "0123abcd", &safetensors_bytes(ST_HEADER, 22));
    assert_eq!(read_metadata(&blob), Some(md));
}

#[test]
fn safetensors_malformed_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let check = |name: &str, bytes: Vec<u8>, expect: &str| {
        let p = write(d, name, &bytes);
        let (res, largest) = largest_alloc(|| read_safetensors(&p));
        let err = res.expect_err(name).to_string();
        assert!(err.contains(expect), "{name}: {err}");
        assert!(largest < ALLOC_BOUND, "{name}: allocated {largest}");
    };
    let mut huge = (1u64 << 62).to_le_bytes().to_vec();
    huge.extend(b"{}");
    check("huge", huge, "more than the");
    let mut past = 1000u64.to_le_bytes().to_vec();
    past.extend(b"{}");
    check("past_end", past, "truncated");
    check("zero", 0u64.to_le_bytes().to_vec(), "length is 0");
    check(
        "not_json",
        safetensors_bytes("this is not json", 0),
        "not a JSON object",
    );
    check(
        "broken_json",
        safetensors_bytes("{\"a\": ", 0),
        "not valid JSON",
    );
    check(
        "offsets",
        safetensors_bytes(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            4,
        ),
        "data ends",
    );
    check(
        "shape_overflow",
        safetensors_bytes(
            r#"{"a":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,0]}}"#,
            0,
        ),
        "overflows",
    );
    check(
        "negative_shape",
        safetensors_bytes(
            r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#,
            0,
        ),
        "shape",
    );
    check(
        "no_dtype",
        safetensors_bytes(r#"{"a":{"shape":[1],"data_offsets":[0,0]}}"#, 0),
        "dtype",
    );
    check("short", vec![1, 2, 3], "truncated");

    let full = safetensors_bytes(ST_HEADER, 22);
    let p = d.join("t.safetensors");
    for n in 0..full.len() {
        fs::write(&p, &full[..n]).unwrap();
        assert!(read_safetensors(&p).is_err(), "prefix {n} accepted");
    }
}

// ---------------------------------------------------------------------------------------
// Ollama config blobs

#[test]
fn ollama_config_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "sha256-config",
        br#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"8.0B","file_type":"Q4_0","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let md = read_ollama_config(&p).unwrap();
    assert_eq!(md.architecture.as_deref(), Some("llama"));
    assert_eq!(md.quantization.as_deref(), Some("Q4_0"));
    assert_eq!(md.parameter_count, Some(8_000_000_000));
    assert_eq!(read_metadata(&p), Some(md));

    let p = write(
        dir.path(),
        "families",
        br#"{"model_families":["nomic-bert"],"model_type":"137M"}"#,
    );
    let md = read_ollama_config(&p).unwrap();
    assert_eq!(md.architecture.as_deref(), Some("nomic-bert"));
    assert_eq!(md.parameter_count, Some(137_000_000));

    let p = write(dir.path(), "config.json", br#"{"model_type":"llama "}"#);
    assert_eq!(read_ollama_config(&p).unwrap().parameter_count, None);
    let p = write(dir.path(), "other.json", br#"{"hidden_size": 4096}"#);
    assert!(matches!(
        read_ollama_config(&p),
        Err(MetadataError::WrongFormat { .. })
    ));
    let p = write(dir.path(), "array.json", b"[1, 2]");
    assert!(read_ollama_config(&p).is_err());
    let mut big = b"{\"model_type\": \"".to_vec();
    big.extend(vec![b'x'; 2 << 20]);
    big.extend(b"\"}");
    let p = write(dir.path(), "big.json", &big);
    let (res, largest) = largest_alloc(|| read_ollama_config(&p));
    assert!(res.unwrap_err().to_string().contains("accepted"));
    assert!(largest < ALLOC_BOUND, "allocated {largest}");
}

#[test]
fn parameter_labels() {
    assert_eq!(parse_parameter_label("8.0B"), Some(8_000_000_000));
    assert_eq!(parse_parameter_label("135M"), Some(135_000_000));
    assert_eq!(parse_parameter_label("7.24B"), Some(7_240_000_000));
    assert_eq!(parse_parameter_label(" 1.5k "), Some(1_500));
    assert_eq!(parse_parameter_label("1T"), Some(1_000_000_000_000));
    assert_eq!(parse_parameter_label("1.23456K"), Some(1_234));
    for bad in [
        "",
        "B",
        "8x7B",
        "7",
        "8.B",
        ".5B",
        "1e9B",
        "-1B",
        "99999999999999B",
        "8é",
    ] {
        assert_eq!(parse_parameter_label(bad), None, "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Dispatch and cache

#[test]
fn dispatch_by_magic_then_extension() {
    let dir = tempfile::tempdir().unwrap();
    let blob = write(dir.path(), "sha256-abc", &sample_gguf().bytes());
    assert_eq!(
        read_metadata(&blob).unwrap().architecture.as_deref(),
        Some("llama")
    );
    let p = write(dir.path(), "notes.txt", b"hello");
    assert!(matches!(
        read_header(&p),
        Err(MetadataError::UnknownFormat { .. })
    ));
    assert_eq!(read_metadata(&p), None);
    let p = write(dir.path(), "broken.gguf", b"nope");
    assert!(read_header(&p).is_err());
    assert_eq!(read_metadata(&dir.path().join("absent.gguf")), None);
    assert_eq!(read_metadata(dir.path()), None);
}

#[test]
fn cache_reads_each_header_once_per_size_and_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.gguf", &sample_gguf().bytes());
    let mut cache = MetadataCache::new();
    let first = cache.get_or_read(&p).unwrap();
    assert_eq!(cache.reads(), 1);
    assert_eq!(cache.get_or_read(&p).unwrap(), first);
    assert_eq!(cache.reads(), 1, "unchanged file read again");

    // The size changes (a key appended): read again; the last key wins.
    fs::write(
        &p,
        sample_gguf()
            .string("general.architecture", "gemma")
            .bytes(),
    )
    .unwrap();
    let md = cache.get_or_read(&p).unwrap();
    assert_eq!(cache.reads(), 2);
    assert_eq!(md.architecture.as_deref(), Some("gemma"));

    // Only the mtime changes (touch): read again.
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(120))
        .unwrap();
    drop(f);
    cache.get_or_read(&p).unwrap();
    assert_eq!(cache.reads(), 3);
    cache.get_or_read(&p).unwrap();
    assert_eq!(cache.reads(), 3);

    // A failed read is cached too.
    let bad = write(dir.path(), "bad.gguf", b"GGUF\x03\0\0\0");
    assert_eq!(cache.get_or_read(&bad), None);
    assert_eq!(cache.get_or_read(&bad), None);
    assert_eq!(cache.reads(), 4);

    // Gone or a symlink: nothing read.
    fs::remove_file(&p).unwrap();
    assert_eq!(cache.get_or_read(&p), None);
    #[cfg(unix)]
    {
        let good = write(dir.path(), "good.gguf", &sample_gguf().bytes());
        let link = dir.path().join("link.gguf");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert_eq!(cache.get_or_read(&link), None);
    }
    assert_eq!(cache.reads(), 4);
    assert_eq!(cache.len(), 1);

    // What is read is shared with the cache, not copied; the reader used is kept.
    let good = write(dir.path(), "again.gguf", &sample_gguf().bytes());
    let shared = cache.get_or_read(&good).unwrap();
    assert_eq!(*shared, *first);
    assert!(std::sync::Arc::ptr_eq(
        &shared,
        &cache.get_or_read(&good).unwrap()
    ));
    assert_eq!(cache.header_kind(&good), Some(HeaderKind::Gguf));
    assert_eq!(cache.reads(), 5);
    cache.clear();
    assert!(cache.is_empty());
}

// ---------------------------------------------------------------------------------------
// Random input never panics.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "r.bin", &bytes);
        let (_, largest) = largest_alloc(|| {
            let _ = read_gguf(&p);
            let _ = read_safetensors(&p);
            let _ = read_ollama_config(&p);
            let _ = read_metadata(&p);
        });
        prop_assert!(largest < ALLOC_BOUND);
    }

    #[test]
    fn mutated_gguf_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut bytes = sample_gguf().bytes();
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "m.gguf", &bytes);
        let (_, largest) = largest_alloc(|| read_gguf(&p));
        prop_assert!(largest < ALLOC_BOUND);
    }

    #[test]
    fn mutated_safetensors_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut bytes = safetensors_bytes(ST_HEADER, 22);
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "m.safetensors", &bytes);
        let (_, largest) = largest_alloc(|| read_safetensors(&p));
        prop_assert!(largest < ALLOC_BOUND);
    }
}

// ---------------------------------------------------------------------------------------
// What it takes to run

/// The attention cache per token and the memory estimate, against figures worked out by
/// hand for Llama-3-8B's hyperparameters (32 layers, 32 heads, 8 KV heads, 4096 wide, so
/// head size 128): 32 × 8 × (128 + 128) × 2 B = 131 072 B per token, 1 GiB at 8k. A
/// per-layer `head_count_kv` array is summed; explicit key/value lengths win; a header
/// without the layer count gives no figure.
#[test]
fn memory_to_run_from_a_gguf_header() {
    use model_library::library::fit::{Machine, default_context, estimate, fits, mem_total};
    use model_library::library::{ModelInfo, Sym};
    let dir = tempfile::tempdir().unwrap();
    let llama3 = Gguf::default()
        .string("general.architecture", "llama")
        .u32("llama.context_length", 8192)
        .u32("llama.block_count", 32)
        .u32("llama.embedding_length", 4096)
        .u32("llama.attention.head_count", 32)
        .u32("llama.attention.head_count_kv", 8)
        .tensor("token_embd.weight", &[64, 4], 12);
    let p = write(dir.path(), "l3.gguf", &llama3.bytes());
    let md = read_gguf(&p).unwrap();
    assert_eq!(md.kv_bytes_per_token, Some(131_072));
    assert_eq!(131_072 * 8192, 1 << 30, "1 GiB at 8k");

    // Per-layer KV heads (some layers without attention), explicit head sizes.
    let mixed = Gguf::default()
        .string("general.architecture", "hybrid")
        .u32("hybrid.block_count", 4)
        .u32("hybrid.embedding_length", 2048)
        .u32("hybrid.attention.head_count", 16)
        .u32s("hybrid.attention.head_count_kv", &[4, 0, 4, 0])
        .u32("hybrid.attention.key_length", 192)
        .u32("hybrid.attention.value_length", 128)
        .tensor("token_embd.weight", &[64, 4], 12);
    let p = write(dir.path(), "h.gguf", &mixed.bytes());
    assert_eq!(
        read_gguf(&p).unwrap().kv_bytes_per_token,
        Some(8 * (192 + 128) * 2)
    );
    let p = write(dir.path(), "s.gguf", &sample_gguf().bytes());
    assert_eq!(read_gguf(&p).unwrap().kv_bytes_per_token, None);

    // The estimate: weights + cache at the context + 256 MiB + 5 % of the weights.
    let weights: u64 = 4_920_000_000; // a Q4_K_M 8B file
    let mut m = ModelInfo {
        provider: Sym::new("library"),
        figures: Figures::default()
            .with_size(Some(weights))
            .with_files(Some(1)),
        metadata: Some(std::sync::Arc::new(md)),
        ..ModelInfo::new("l3", &PathBuf::from("/x"))
    };
    assert_eq!(default_context(m.metadata.as_ref().unwrap()), 4096);
    let at_4k = weights + 131_072 * 4096 + (256 << 20) + 246_000_000;
    assert_eq!(estimate(&m, 4096), Some(at_4k));
    assert_eq!(estimate(&m, 8192), Some(at_4k + (512 << 20)));
    let sixteen = Machine {
        ram_bytes: 16 << 30,
        gpu_bytes: None,
    };
    let four = Machine {
        ram_bytes: 4 << 30,
        gpu_bytes: Some(8 << 30),
    };
    let two = Machine {
        ram_bytes: 2 << 30,
        gpu_bytes: None,
    };
    assert_eq!(fits(&m, &sixteen), Some(true));
    assert_eq!(fits(&m, &four), Some(true), "fits the GPU");
    assert_eq!(fits(&m, &two), Some(false));
    std::sync::Arc::make_mut(m.metadata.as_mut().unwrap()).kv_bytes_per_token = None;
    assert_eq!(fits(&m, &sixteen), None, "cannot be told");

    assert_eq!(
        model_library::library::fit::nvidia_total("8192\n24576\n"),
        Some(24576 << 20),
        "the largest of two GPUs"
    );
    assert_eq!(
        mem_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
        Some(24_576_000 * 1024)
    );
    // The machine's files, read from a fake /proc and /sys.
    let proc_ = write(dir.path(), "meminfo", b"MemTotal: 1024 kB\n");
    let drm = dir.path().join("drm");
    for (card, vram) in [("card0", "1000"), ("card1", "5000")] {
        fs::create_dir_all(drm.join(card).join("device")).unwrap();
        fs::write(drm.join(card).join("device/mem_info_vram_total"), vram).unwrap();
    }
    assert_eq!(
        Machine::read_from(&proc_, &drm),
        Machine {
            ram_bytes: 1 << 20,
            gpu_bytes: Some(5000)
        }
    );
}
