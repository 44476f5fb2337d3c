//! Read-only stores (Hugging Face hub cache, Ollama, LM Studio) scanned from fixtures built
//! here in each store's real layout; root resolution with an injected environment and home;
//! disk usage counting shared bytes once.
#![cfg(unix)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use model_library::library::metadata::MetadataCache;
use model_library::library::sources::{
    SourceConfig, SourceKind, SourceScan, bytes_freed_by_deleting, default_sources_in, disk_usage,
    largest_models, least_recently_used, scan_source, scan_source_detailed,
};
use model_library::library::{Figures, LibraryError, ModelInfo, ModelStatus};

// ---------------------------------------------------------------------------------------
// Fixture helpers

fn put(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

/// A small GGUF file: architecture, context length, file type, a token array, two tensors.
fn gguf(arch: &str, ftype: u32, dims: &[u64]) -> Vec<u8> {
    let mut kv = Vec::new();
    put_str(&mut kv, "general.architecture");
    kv.extend(8u32.to_le_bytes());
    put_str(&mut kv, arch);
    put_str(&mut kv, &format!("{arch}.context_length"));
    kv.extend(4u32.to_le_bytes());
    kv.extend(2048u32.to_le_bytes());
    put_str(&mut kv, "general.file_type");
    kv.extend(4u32.to_le_bytes());
    kv.extend(ftype.to_le_bytes());
    put_str(&mut kv, "tokenizer.ggml.tokens");
    kv.extend(9u32.to_le_bytes());
    kv.extend(8u32.to_le_bytes());
    kv.extend(2u64.to_le_bytes());
    put_str(&mut kv, "<s>");
    put_str(&mut kv, "</s>");
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(2u64.to_le_bytes()); // tensors
    out.extend(4u64.to_le_bytes()); // kvs
    out.extend(kv);
    for (name, ty) in [("token_embd.weight", 2u32), ("output_norm.weight", 0)] {
        put_str(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(ty.to_le_bytes());
        out.extend(0u64.to_le_bytes());
    }
    out.extend(vec![0u8; 256]); // some "tensor data"
    out
}

/// A safetensors file with one tensor of `n` F16 elements (data included).
fn safetensors(n: u64) -> Vec<u8> {
    let header = format!(
        r#"{{"w":{{"dtype":"F16","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
        n * 2
    );
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(vec![0u8; (n * 2) as usize]);
    out
}

fn scan(kind: SourceKind, root: &Path) -> SourceScan {
    scan_source_detailed(&SourceConfig::new(kind, root), &mut MetadataCache::new()).unwrap()
}

fn model<'a>(scan: &'a SourceScan, id: &str) -> &'a ModelInfo {
    scan.models
        .iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("no {id} in {:?}", ids(scan)))
}

fn ids(scan: &SourceScan) -> Vec<&str> {
    scan.models.iter().map(|m| m.id.as_str()).collect()
}

// ---------------------------------------------------------------------------------------
// Hugging Face

struct HfRepo {
    dir: PathBuf,
}

impl HfRepo {
    fn new(hub: &Path, repo: &str) -> Self {
        let dir = hub.join(format!("models--{}", repo.replace('/', "--")));
        fs::create_dir_all(dir.join("blobs")).unwrap();
        fs::create_dir_all(dir.join("snapshots")).unwrap();
        HfRepo { dir }
    }
    fn blob(&self, hash: &str, bytes: &[u8]) -> &Self {
        put(&self.dir.join("blobs").join(hash), bytes);
        self
    }
    /// `snapshots/<rev>/<rel>` → `../../blobs/<hash>` (one more `..` per folder in `rel`).
    fn link(&self, rev: &str, rel: &str, hash: &str) -> &Self {
        let depth = rel.matches('/').count();
        let target = format!("{}blobs/{hash}", "../".repeat(2 + depth));
        self.link_to(rev, rel, Path::new(&target))
    }
    fn link_to(&self, rev: &str, rel: &str, target: &Path) -> &Self {
        let at = self.dir.join("snapshots").join(rev).join(rel);
        fs::create_dir_all(at.parent().unwrap()).unwrap();
        symlink(target, at).unwrap();
        self
    }
    fn main(&self, rev: &str) -> &Self {
        put(&self.dir.join("refs/main"), rev.as_bytes());
        self
    }
}

#[test]
fn hf_revisions_sharing_a_blob_count_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let weights = safetensors(1000);
    let config = br#"{"model_type":"llama","max_position_embeddings":8192,"architectures":["LlamaForCausalLM"]}"#;
    let repo = HfRepo::new(&hub, "org/name");
    repo.blob("aaa111", &weights)
        .blob("bbb222", config)
        .blob("ccc333", b"old readme")
        .blob("ddd444", b"new readme!")
        .link("rev1", "model.safetensors", "aaa111")
        .link("rev1", "config.json", "bbb222")
        .link("rev1", "README.md", "ccc333")
        .link("rev2", "model.safetensors", "aaa111")
        .link("rev2", "config.json", "bbb222")
        .link("rev2", "docs/README.md", "ddd444")
        .main("rev2");
    // Not models: datasets, spaces, lock folders, stray files.
    fs::create_dir_all(hub.join("datasets--org--data/blobs")).unwrap();
    fs::create_dir_all(hub.join("spaces--org--space")).unwrap();
    fs::create_dir_all(hub.join(".locks/models--org--name")).unwrap();
    put(&hub.join("version.txt"), b"1");

    let s = scan(SourceKind::HuggingFace, &hub);
    assert_eq!(ids(&s), ["huggingface/org/name"]);
    let m = &s.models[0];
    let total = weights.len() + config.len() + 10 + 11;
    assert_eq!(m.size_bytes(), Some(total as u64), "each blob once");
    assert_eq!(m.file_count(), Some(4));
    assert_eq!(m.status, ModelStatus::Downloaded, "{:?}", m.error);
    assert_eq!(m.error, None);
    assert_eq!(
        (&*m.name, m.provider.as_str(), m.source.as_str()),
        ("org/name", "huggingface", "huggingface")
    );
    assert!(!m.registered);
    assert_eq!(m.path(), hub.join("models--org--name"));
    assert_eq!(m.format.as_deref(), Some("safetensors"));
    assert_eq!(*m.capabilities, ["text-generation"]);
    assert!(m.modified().is_some());
    let md = m.metadata.as_ref().unwrap();
    assert_eq!(md.parameter_count, Some(1000));
    assert_eq!(md.dtypes, ["F16"]);
    assert_eq!(md.architecture.as_deref(), Some("llama"));
    assert_eq!(md.context_length, Some(8192));
    assert_eq!(s.unique_bytes(), total as u64);
    assert_eq!(
        s.bytes_freed_by_deleting("huggingface/org/name"),
        Some(total as u64)
    );
}

/// The details of a Hugging Face model list its snapshots' files (revision shortened,
/// links measured as their blobs), not the cache's `blobs/` and `refs/`.
#[test]
fn hf_model_files_are_the_snapshots_files() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let repo = HfRepo::new(&hub, "org/name");
    let rev = "0123456789abcdef0123456789abcdef01234567";
    repo.blob("aaa111", b"weights!")
        .blob("bbb222", b"{}")
        .link(rev, "model.safetensors", "aaa111")
        .link(rev, "sub/config.json", "bbb222")
        .main(rev);
    let (files, more) = model_library::library::sources::model_files("huggingface", &repo.dir);
    assert!(!more);
    assert_eq!(
        files,
        [
            ("01234567/model.safetensors".to_string(), 8),
            ("01234567/sub/config.json".to_string(), 2),
        ]
    );
    // Any other source lists the folder as it is.
    let (files, _) = model_library::library::sources::model_files("library", &repo.dir);
    assert!(files.iter().any(|(f, _)| f.starts_with("blobs/")));
}

#[test]
fn hf_sharded_weights_and_gguf_repos() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path();
    HfRepo::new(hub, "org/sharded")
        .blob("s1", &safetensors(100))
        .blob("s2", &safetensors(50))
        .blob("c1", &safetensors(10))
        .link("r", "model-00001-of-00002.safetensors", "s1")
        .link("r", "model-00002-of-00002.safetensors", "s2")
        .link("r", "consolidated.safetensors", "c1")
        .main("r");
    HfRepo::new(hub, "gpt2") // no org
        .blob("g1", &gguf("gpt2", 7, &[16, 4]))
        .blob("p1", &gguf("clip", 1, &[2]))
        .link("r", "gpt2.Q8_0.gguf", "g1")
        .link("r", "mmproj-f16.gguf", "p1");
    let s = scan(SourceKind::HuggingFace, hub);
    let sharded = model(&s, "huggingface/org/sharded");
    let md = sharded.metadata.as_ref().unwrap();
    assert_eq!(
        md.parameter_count,
        Some(150),
        "the shards of the largest set add up"
    );
    let g = model(&s, "huggingface/gpt2");
    assert_eq!(g.status, ModelStatus::Downloaded, "{:?}", g.error);
    assert_eq!(g.format.as_deref(), Some("gguf"));
    let md = g.metadata.as_ref().unwrap();
    assert_eq!(md.architecture.as_deref(), Some("gpt2"));
    assert_eq!(md.quantization.as_deref(), Some("Q8_0"));
    assert_eq!(md.context_length, Some(2048));
    assert_eq!(md.parameter_count, Some(128));
    assert_eq!(*g.capabilities, ["text-generation", "vision"]);
}

#[test]
fn hf_incomplete_blob_is_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = HfRepo::new(tmp.path(), "org/downloading");
    repo.blob("cfg", b"{}")
        .blob("big.incomplete", &[0u8; 300])
        .link("r", "config.json", "cfg")
        .main("r");
    HfRepo::new(tmp.path(), "org/started").blob("x.incomplete", b"12345");
    let s = scan(SourceKind::HuggingFace, tmp.path());
    let m = model(&s, "huggingface/org/downloading");
    assert_eq!(m.status, ModelStatus::Partial, "{:?}", m.error);
    assert_eq!(
        m.size_bytes(),
        Some(302),
        "the bytes on disk, incomplete ones included"
    );
    let m = model(&s, "huggingface/org/started");
    assert_eq!((m.status, m.size_bytes()), (ModelStatus::Partial, Some(5)));
}

#[test]
fn hf_links_out_of_the_store_are_not_followed_or_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let outside = tmp.path().join("outside");
    put(&outside.join("secret.safetensors"), &safetensors(5000));
    let other = HfRepo::new(&hub, "org/other");
    other.blob("o1", b"other").link("r", "f", "o1");
    let repo = HfRepo::new(&hub, "org/evil");
    repo.blob("ok", b"1234")
        .link("r", "ok.txt", "ok")
        .link_to("r", "abs.safetensors", &outside.join("secret.safetensors"))
        .link_to(
            "r",
            "rel.safetensors",
            Path::new("../../../../outside/secret.safetensors"),
        )
        .link_to(
            "r",
            "sibling",
            Path::new("../../../models--org--other/blobs/o1"),
        )
        .link_to("r", "loop", Path::new("loop"))
        .main("r");
    let s = scan(SourceKind::HuggingFace, &hub);
    let m = model(&s, "huggingface/org/evil");
    assert_eq!(m.status, ModelStatus::Error);
    assert_eq!(m.size_bytes(), Some(4), "only its own blob counts");
    assert_eq!(m.metadata, None, "the outside file's header was not read");
    let err = m.error.as_deref().unwrap();
    for name in ["abs.safetensors", "rel.safetensors", "sibling", "loop"] {
        assert!(err.contains(name), "{name} not reported: {err}");
    }
    assert!(err.contains("not followed"), "{err}");
    assert!(
        s.blobs.keys().all(|p| p.starts_with(&hub)),
        "a file outside the store was counted: {:?}",
        s.blobs.keys()
    );
    assert_eq!(
        model(&s, "huggingface/org/other").status,
        ModelStatus::Downloaded
    );
}

#[test]
fn hf_broken_entries_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    HfRepo::new(tmp.path(), "org/dangling")
        .blob("a", b"x")
        .link("r", "model.safetensors", "missing");
    HfRepo::new(tmp.path(), "org/empty");
    symlink(
        tmp.path().join("models--org--empty"),
        tmp.path().join("models--org--linked"),
    )
    .unwrap();
    let s = scan(SourceKind::HuggingFace, tmp.path());
    let m = model(&s, "huggingface/org/dangling");
    assert_eq!(m.status, ModelStatus::Error);
    assert!(
        m.error.as_deref().unwrap().contains("missing"),
        "{:?}",
        m.error
    );
    let m = model(&s, "huggingface/org/empty");
    assert_eq!(m.status, ModelStatus::Error);
    assert!(m.error.as_deref().unwrap().contains("nothing downloaded"));
    let m = model(&s, "huggingface/org/linked");
    assert_eq!(m.status, ModelStatus::Error);
    assert!(m.error.as_deref().unwrap().contains("symbolic link"));
}

#[test]
fn hf_rescan_reads_no_header_twice() {
    let tmp = tempfile::tempdir().unwrap();
    HfRepo::new(tmp.path(), "org/a")
        .blob("w", &safetensors(10))
        .link("r", "model.safetensors", "w");
    HfRepo::new(tmp.path(), "org/b")
        .blob("w", &gguf("llama", 15, &[4]))
        .link("r", "b.gguf", "w");
    let config = SourceConfig::new(SourceKind::HuggingFace, tmp.path());
    let mut cache = MetadataCache::new();
    let first = scan_source(&config, &mut cache).unwrap();
    assert_eq!(cache.reads(), 2);
    let second = scan_source(&config, &mut cache).unwrap();
    assert_eq!(cache.reads(), 2, "a rescan read headers again");
    assert_eq!(first, second, "ids and everything else are stable");
    assert_eq!(
        second[1].metadata.as_ref().unwrap().quantization.as_deref(),
        Some("Q4_K_M")
    );
}

// ---------------------------------------------------------------------------------------
// Ollama

fn hex(c: char) -> String {
    c.to_string().repeat(64)
}

struct Ollama {
    root: PathBuf,
}

impl Ollama {
    fn blob(&self, h: &str, bytes: &[u8]) -> &Self {
        put(&self.root.join(format!("blobs/sha256-{h}")), bytes);
        self
    }
    fn manifest(&self, rel: &str, config: (&str, u64), layers: &[(&str, &str, u64)]) -> &Self {
        let layers: Vec<_> = layers
            .iter()
            .map(|(media, h, size)| {
                serde_json::json!({"mediaType": format!("application/vnd.ollama.image.{media}"),
                                   "digest": format!("sha256:{h}"), "size": size})
            })
            .collect();
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": format!("sha256:{}", config.0), "size": config.1},
            "layers": layers,
        });
        put(
            &self.root.join("manifests").join(rel),
            m.to_string().as_bytes(),
        );
        self
    }
}

#[test]
fn ollama_models_sharing_a_layer_count_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Ollama {
        root: tmp.path().join("models"),
    };
    let weights = gguf("llama", 2, &[32, 8]);
    let w = weights.len() as u64;
    let cfg1 = br#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"8.0B","file_type":"Q4_0"}"#;
    let cfg2 = br#"{"model_format":"gguf","model_family":"llama","model_type":"8.0B","file_type":"Q4_0","x":1}"#;
    let (c1, c2) = (cfg1.len() as u64, cfg2.len() as u64);
    o.blob(&hex('a'), &weights)
        .blob(&hex('b'), cfg1)
        .blob(&hex('c'), cfg2)
        .blob(&hex('d'), b"{{ .Prompt }}")
        .blob(&hex('e'), b"{\"stop\":[\"x\"]}")
        .manifest(
            "registry.ollama.ai/library/llama3/8b",
            (&hex('b'), c1),
            &[("model", &hex('a'), w), ("template", &hex('d'), 13)],
        )
        .manifest(
            "registry.ollama.ai/library/llama3/custom",
            (&hex('c'), c2),
            &[("model", &hex('a'), w), ("params", &hex('e'), 14)],
        )
        .manifest(
            "hf.co/bartowski/Some-GGUF/Q4_0",
            (&hex('c'), c2),
            &[("model", &hex('a'), w)],
        );
    let s = scan(SourceKind::Ollama, &o.root);
    assert_eq!(
        ids(&s),
        [
            "ollama/hf.co/bartowski/Some-GGUF:Q4_0",
            "ollama/library/llama3:8b",
            "ollama/library/llama3:custom"
        ]
    );
    let m = model(&s, "ollama/library/llama3:8b");
    assert_eq!(m.status, ModelStatus::Downloaded, "{:?}", m.error);
    assert_eq!(&*m.name, "llama3:8b");
    assert_eq!(m.provider, "ollama");
    assert_eq!(m.size_bytes(), Some(w + c1 + 13), "its own layers");
    assert_eq!(m.file_count(), Some(3));
    assert_eq!(m.format.as_deref(), Some("gguf"));
    assert_eq!(*m.capabilities, ["text-generation", "chat"]);
    assert_eq!(
        m.path(),
        o.root
            .join("manifests/registry.ollama.ai/library/llama3/8b")
    );
    let md = m.metadata.as_ref().unwrap();
    assert_eq!(md.architecture.as_deref(), Some("llama"));
    assert_eq!(md.quantization.as_deref(), Some("Q4_0"));
    assert_eq!(md.context_length, Some(2048));
    assert_eq!(
        md.parameter_count,
        Some(2 * 32 * 8),
        "the header is ground truth"
    );
    let custom = model(&s, "ollama/library/llama3:custom");
    assert_eq!(custom.size_bytes(), Some(w + c2 + 14));
    assert_eq!(*custom.capabilities, ["text-generation"]);
    assert_eq!(
        &*model(&s, "ollama/hf.co/bartowski/Some-GGUF:Q4_0").name,
        "hf.co/bartowski/Some-GGUF:Q4_0"
    );

    // The store holds each blob once.
    let unique = w + c1 + c2 + 13 + 14;
    assert_eq!(s.unique_bytes(), unique);
    let usage = disk_usage(std::slice::from_ref(&s), &[]);
    assert_eq!(usage.per_source["ollama"], unique);
    assert_eq!(usage.total_unique, unique);
    // Deleting one frees only what no other model uses.
    assert_eq!(
        s.bytes_freed_by_deleting("ollama/library/llama3:8b"),
        Some(c1 + 13)
    );
    assert_eq!(
        s.bytes_freed_by_deleting("ollama/library/llama3:custom"),
        Some(14)
    );
    assert_eq!(s.bytes_freed_by_deleting("ollama/nope:x"), None);
}

#[test]
fn ollama_partial_missing_and_broken_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Ollama {
        root: tmp.path().to_path_buf(),
    };
    put(
        &o.root.join(format!("blobs/sha256-{}-partial", hex('f'))),
        &[0u8; 100],
    );
    put(
        &o.root.join(format!("blobs/sha256-{}-partial-0", hex('f'))),
        b"{}",
    );
    put(
        &o.root.join(format!("blobs/sha256-{}-partial", hex('9'))),
        &[0u8; 70],
    );
    o.blob(&hex('b'), b"{}")
        .blob(&hex('c'), b"12345")
        .manifest(
            "registry.ollama.ai/library/pulling/latest",
            (&hex('b'), 2),
            &[("model", &hex('f'), 1000)],
        )
        .manifest(
            "registry.ollama.ai/library/missing/latest",
            (&hex('b'), 2),
            &[("model", &hex('e'), 1)],
        )
        .manifest(
            "registry.ollama.ai/library/wrongsize/latest",
            (&hex('b'), 2),
            &[("model", &hex('c'), 999)],
        )
        .manifest(
            "registry.ollama.ai/user/evil/latest",
            ("../../../etc/passwd", 1),
            &[],
        );
    put(
        &o.root
            .join("manifests/registry.ollama.ai/library/garbage/latest"),
        b"not json",
    );
    put(
        &o.root.join("manifests/registry.ollama.ai/library/stray"),
        b"not a manifest: wrong depth",
    );

    let s = scan(SourceKind::Ollama, &o.root);
    let m = model(&s, "ollama/library/pulling:latest");
    assert_eq!(m.status, ModelStatus::Partial, "{:?}", m.error);
    assert_eq!(m.size_bytes(), Some(2 + 100 + 2));
    let m = model(&s, "ollama/library/missing:latest");
    assert_eq!(m.status, ModelStatus::Error);
    assert!(m.error.as_deref().unwrap().contains("missing"));
    let m = model(&s, "ollama/library/wrongsize:latest");
    assert_eq!(m.status, ModelStatus::Error);
    assert!(m.error.as_deref().unwrap().contains("999"), "{:?}", m.error);
    let m = model(&s, "ollama/user/evil:latest");
    assert_eq!(m.status, ModelStatus::Error);
    assert!(m.error.as_deref().unwrap().contains("bad digest"));
    assert_eq!(m.size_bytes(), Some(0));
    let m = model(&s, "ollama/library/garbage:latest");
    assert_eq!(m.status, ModelStatus::Error);
    assert!(m.error.as_deref().unwrap().contains("JSON"));
    // A pull with no manifest yet.
    let orphan = model(&s, &format!("ollama/partial/sha256-{}", hex('9')));
    assert_eq!(
        (orphan.status, orphan.size_bytes()),
        (ModelStatus::Partial, Some(70))
    );
    assert_eq!(s.models.len(), 6, "{:?}", ids(&s));
}

// ---------------------------------------------------------------------------------------
// LM Studio

#[test]
fn lmstudio_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("models");
    let g = gguf("qwen2", 15, &[8, 8]);
    put(
        &root.join("lmstudio-community/Qwen-GGUF/Qwen-Q4_K_M.gguf"),
        &g,
    );
    put(
        &root.join("lmstudio-community/Qwen-GGUF/mmproj-Qwen-f16.gguf"),
        &gguf("clip", 1, &[2]),
    );
    put(&root.join("lmstudio-community/Qwen-GGUF/README.md"), b"hi");
    put(
        &root.join("nomic/embed/nomic-embed.gguf"),
        &gguf("nomic-bert", 1, &[4]),
    );
    put(&root.join("someone/downloading/x.gguf.part"), &[0u8; 10]);
    put(
        &root.join("someone/downloading/y.gguf"),
        &gguf("llama", 2, &[2]),
    );
    // A split GGUF with its second part not downloaded (yet).
    put(&root.join("someone/split/s-00001-of-00002.gguf"), &g);
    fs::create_dir_all(root.join("someone/empty")).unwrap();
    // Where LM Studio itself does not look: loose files and deep ones.
    put(&root.join("someone/stray.gguf"), b"not in a model folder");
    put(&root.join("stray.gguf"), b"at the top");
    put(&root.join("notes.txt"), b"not a model");
    put(&root.join("deep/er/and/deeper/d.gguf"), &g);
    put(&tmp.path().join("elsewhere/big.gguf"), &g);
    fs::create_dir_all(root.join("linker/linked")).unwrap();
    symlink(
        tmp.path().join("elsewhere/big.gguf"),
        root.join("linker/linked/big.gguf"),
    )
    .unwrap();
    symlink(tmp.path().join("elsewhere"), root.join("linker/folder")).unwrap();

    let s = scan(SourceKind::LmStudio, &root);
    assert_eq!(
        ids(&s),
        [
            "lmstudio/deep/er",
            "lmstudio/linker/folder",
            "lmstudio/linker/linked",
            "lmstudio/lmstudio-community/Qwen-GGUF",
            "lmstudio/nomic/embed",
            "lmstudio/someone/downloading",
            "lmstudio/someone/split",
            "lmstudio/someone/stray.gguf",
            "lmstudio/stray.gguf",
        ]
    );
    let deep = model(&s, "lmstudio/deep/er");
    assert_eq!(
        (deep.status, deep.size_bytes()),
        (ModelStatus::Downloaded, Some(g.len() as u64)),
        "a file at depth 4 counts"
    );
    assert_eq!(model(&s, "lmstudio/stray.gguf").size_bytes(), Some(10));
    let m = model(&s, "lmstudio/lmstudio-community/Qwen-GGUF");
    assert_eq!(m.status, ModelStatus::Downloaded, "{:?}", m.error);
    assert_eq!(&*m.name, "lmstudio-community/Qwen-GGUF");
    assert_eq!(
        (m.provider.as_str(), m.source.as_str()),
        ("lmstudio", "lmstudio")
    );
    assert_eq!(m.file_count(), Some(3));
    assert_eq!(m.format.as_deref(), Some("gguf"));
    assert_eq!(*m.capabilities, ["text-generation", "vision"]);
    let md = m.metadata.as_ref().unwrap();
    assert_eq!(
        md.architecture.as_deref(),
        Some("qwen2"),
        "not the projector's"
    );
    assert_eq!(md.quantization.as_deref(), Some("Q4_K_M"));
    assert_eq!(
        *model(&s, "lmstudio/nomic/embed").capabilities,
        ["embedding"]
    );
    assert_eq!(
        model(&s, "lmstudio/someone/downloading").status,
        ModelStatus::Partial
    );
    let split = model(&s, "lmstudio/someone/split");
    assert_eq!(split.status, ModelStatus::Partial);
    assert!(
        split
            .note
            .as_deref()
            .unwrap()
            .contains("s-00002-of-00002.gguf"),
        "{:?}",
        split.note
    );
    for id in ["lmstudio/linker/linked", "lmstudio/linker/folder"] {
        let m = model(&s, id);
        assert_eq!(m.status, ModelStatus::Error, "{id}");
        assert!(m.error.as_deref().unwrap().contains("symbolic link"));
        assert_eq!(m.size_bytes(), Some(0), "{id}: a linked file was counted");
    }
}

// ---------------------------------------------------------------------------------------
// Roots, configuration, errors

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let map: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    move |k| map.get(k).cloned()
}

fn root_of(sources: &[SourceConfig], kind: SourceKind) -> Option<PathBuf> {
    sources
        .iter()
        .find(|s| s.kind == kind)
        .map(|s| s.root.clone())
}

/// Where Ollama's system service store is not (the machine's own never matters here).
const NO_SERVICE: &str = "/nonexistent/ollama-service-store";

#[test]
fn default_roots_follow_the_environment_and_home() {
    let home_dir = tempfile::tempdir().unwrap();
    let home = home_dir.path();
    let none = env_of(&[]);
    let s = default_sources_in(&none, Some(home), Path::new(NO_SERVICE));
    assert_eq!(
        s.len(),
        6,
        "ComfyUI and a folder of one's own have no default"
    );
    assert!(s.iter().all(|c| c.enabled));
    assert_eq!(
        root_of(&s, SourceKind::LlamaCpp),
        Some(home.join(".cache/llama.cpp"))
    );
    assert_eq!(
        root_of(
            &default_sources_in(
                &env_of(&[("LLAMA_CACHE", "/models/llama")]),
                Some(home),
                Path::new(NO_SERVICE)
            ),
            SourceKind::LlamaCpp
        ),
        Some(PathBuf::from("/models/llama"))
    );
    assert_eq!(
        root_of(&s, SourceKind::Gpt4All),
        Some(home.join(".local/share/nomic.ai/GPT4All"))
    );
    assert_eq!(
        root_of(&s, SourceKind::HuggingFace),
        Some(home.join(".cache/huggingface/hub"))
    );
    assert_eq!(
        root_of(&s, SourceKind::Ollama),
        Some(home.join(".ollama/models"))
    );
    assert_eq!(
        root_of(&s, SourceKind::LmStudio),
        Some(home.join(".lmstudio/models"))
    );
    assert!(s.iter().all(|c| !c.root_exists()));

    let env = env_of(&[("HF_HOME", "/data/hf"), ("OLLAMA_MODELS", "/data/ollama")]);
    let s = default_sources_in(&env, Some(home), Path::new(NO_SERVICE));
    assert_eq!(
        root_of(&s, SourceKind::HuggingFace),
        Some("/data/hf/hub".into())
    );
    assert_eq!(root_of(&s, SourceKind::Ollama), Some("/data/ollama".into()));
    let env = env_of(&[
        ("HF_HOME", "/data/hf"),
        ("HF_HUB_CACHE", "~/hubcache"),
        ("OLLAMA_MODELS", ""),
    ]);
    let s = default_sources_in(&env, Some(home), Path::new(NO_SERVICE));
    assert_eq!(
        root_of(&s, SourceKind::HuggingFace),
        Some(home.join("hubcache"))
    );
    assert_eq!(
        root_of(&s, SourceKind::Ollama),
        Some(home.join(".ollama/models")),
        "empty = unset"
    );

    // No home: only what the environment says.
    let env = env_of(&[("HF_HUB_CACHE", "/x/hub")]);
    let s = default_sources_in(&env, None, Path::new(NO_SERVICE));
    assert_eq!(s, [SourceConfig::new(SourceKind::HuggingFace, "/x/hub")]);

    // LM Studio: the older folder when only it exists, the home pointer, then the settings.
    fs::create_dir_all(home.join(".cache/lm-studio/models")).unwrap();
    let s = default_sources_in(&none, Some(home), Path::new(NO_SERVICE));
    assert_eq!(
        root_of(&s, SourceKind::LmStudio),
        Some(home.join(".cache/lm-studio/models"))
    );
    fs::create_dir_all(home.join(".lmstudio/models")).unwrap();
    let s = default_sources_in(&none, Some(home), Path::new(NO_SERVICE));
    assert_eq!(
        root_of(&s, SourceKind::LmStudio),
        Some(home.join(".lmstudio/models"))
    );
    let lm_home = home.join("elsewhere/lmstudio");
    put(
        &home.join(".lmstudio-home-pointer"),
        format!("{}\n", lm_home.display()).as_bytes(),
    );
    let s = default_sources_in(&none, Some(home), Path::new(NO_SERVICE));
    assert_eq!(
        root_of(&s, SourceKind::LmStudio),
        Some(lm_home.join("models"))
    );
    put(
        &home.join(".config/LM Studio/settings.json"),
        br#"{"downloadsFolder": "/mnt/models", "other": 1}"#,
    );
    let s = default_sources_in(&none, Some(home), Path::new(NO_SERVICE));
    assert_eq!(
        root_of(&s, SourceKind::LmStudio),
        Some("/mnt/models".into())
    );
}

#[test]
fn missing_disabled_and_unusable_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cache = MetadataCache::new();
    for kind in SourceKind::ALL {
        let missing = SourceConfig::new(kind, tmp.path().join("absent"));
        assert_eq!(scan_source(&missing, &mut cache).unwrap(), []);
        let file = tmp.path().join("a-file");
        put(&file, b"x");
        let err = scan_source(&SourceConfig::new(kind, &file), &mut cache).unwrap_err();
        assert!(matches!(err, LibraryError::Io { .. }));
        assert!(err.to_string().contains("a-file"), "{err}");
    }
    let hub = tmp.path().join("hub");
    HfRepo::new(&hub, "org/x")
        .blob("a", b"1")
        .link("r", "f", "a");
    let mut off = SourceConfig::new(SourceKind::HuggingFace, &hub);
    off.enabled = false;
    assert_eq!(scan_source(&off, &mut cache).unwrap(), []);
    off.enabled = true;
    assert_eq!(scan_source(&off, &mut cache).unwrap().len(), 1);
}

#[test]
fn a_symlinked_root_is_scanned() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("disk2/hub");
    HfRepo::new(&real, "org/x")
        .blob("a", b"12")
        .link("r", "model.safetensors", "a");
    symlink(&real, tmp.path().join("hub")).unwrap();
    let s = scan(SourceKind::HuggingFace, &tmp.path().join("hub"));
    assert_eq!(
        s.models[0].status,
        ModelStatus::Downloaded,
        "{:?}",
        s.models[0].error
    );
    assert_eq!(s.models[0].size_bytes(), Some(2));
}

#[test]
fn the_store_is_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    HfRepo::new(tmp.path(), "org/x")
        .blob("a", &safetensors(3))
        .blob("b.incomplete", b"1")
        .link("r", "model.safetensors", "a")
        .main("r");
    let before = listing(tmp.path());
    for kind in SourceKind::ALL {
        let _ = scan(kind, tmp.path());
    }
    assert_eq!(listing(tmp.path()), before);
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            out.push((e.path(), m.len(), m.modified().unwrap()));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------
// Disk usage across sources and the library

fn lib_model(id: &str, size: u64, modified: f64) -> ModelInfo {
    ModelInfo {
        figures: Figures::default()
            .with_size(Some(size))
            .with_files(Some(1))
            .with_modified(Some(modified)),
        ..ModelInfo::new(id, &PathBuf::from("/lib/models").join(id))
    }
}

#[test]
fn disk_usage_per_source_and_overall() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    HfRepo::new(&hub, "org/x")
        .blob("a", &[0u8; 100])
        .link("r1", "f", "a")
        .link("r2", "f", "a");
    let lm = tmp.path().join("lm");
    put(&lm.join("p/m/m.gguf"), &[0u8; 40]);
    let hf = scan(SourceKind::HuggingFace, &hub);
    let lms = scan(SourceKind::LmStudio, &lm);
    // The same store configured twice counts once overall.
    let hf_again = scan(SourceKind::HuggingFace, &hub);
    let library = vec![lib_model("a", 7, 10.0), lib_model("b", 3, 5.0)];
    let scans = [hf, lms, hf_again];
    let mut everything: Vec<ModelInfo> = library.clone();
    everything.extend(scans.iter().flat_map(|s| s.models.clone()));
    let usage = disk_usage(&scans, &everything);
    assert_eq!(usage.per_source["huggingface"], 100);
    assert_eq!(usage.per_source["lmstudio"], 40);
    assert_eq!(usage.per_source["library"], 10);
    assert_eq!(usage.total_unique, 150);
    assert_eq!(
        bytes_freed_by_deleting(&scans[..2], "lmstudio/p/m"),
        Some(40)
    );
    assert_eq!(
        bytes_freed_by_deleting(&scans[..2], "huggingface/org/x"),
        Some(100)
    );
    assert_eq!(
        bytes_freed_by_deleting(&scans[..2], "a"),
        None,
        "library models are not scanned"
    );

    let largest: Vec<&str> = largest_models(&everything, 3)
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(
        largest,
        ["huggingface/org/x", "huggingface/org/x", "lmstudio/p/m"]
    );
    let lru: Vec<&str> = least_recently_used(&everything, 2)
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(lru, ["b", "a"]);
}

/// Without `$OLLAMA_MODELS` and without `~/.ollama/models`, the store of Ollama's Linux
/// system service is listed when it is there; the user's own store wins when both are.
#[test]
fn the_ollama_system_service_store_is_found() {
    use model_library::library::sources::ollama_root_in;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let service = tmp.path().join("usr/share/ollama/.ollama/models");
    let none = env_of(&[]);
    fs::create_dir_all(&home).unwrap();
    // Neither there: the user's default (shown as absent).
    assert_eq!(
        ollama_root_in(&none, Some(&home), &service),
        Some(home.join(".ollama/models"))
    );
    fs::create_dir_all(&service).unwrap();
    assert_eq!(
        ollama_root_in(&none, Some(&home), &service),
        Some(service.clone())
    );
    fs::create_dir_all(home.join(".ollama/models")).unwrap();
    assert_eq!(
        ollama_root_in(&none, Some(&home), &service),
        Some(home.join(".ollama/models"))
    );
    let set = env_of(&[("OLLAMA_MODELS", "/data/ollama")]);
    assert_eq!(
        ollama_root_in(&set, Some(&home), &service),
        Some(PathBuf::from("/data/ollama"))
    );
}

// ---------------------------------------------------------------------------------------
// GPT4All

/// GPT4All's folder: each model file one model, `incomplete-<file>` an unfinished download
/// (a partial model alone, or counted with its finished file), links never followed, other
/// files and folders not models; the folder from `modelPath` in GPT4All.ini, else the
/// local data folder.
#[test]
fn gpt4all_models_and_unfinished_downloads() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("GPT4All");
    let g = gguf("llama", 2, &[8, 8]);
    put(&root.join("Llama-3-8B.Q4_0.gguf"), &g);
    put(&root.join("incomplete-Llama-3-8B.Q4_0.gguf"), &[0u8; 5]);
    put(&root.join("old-model.bin"), &[1u8; 64]);
    put(&root.join("incomplete-Mistral-7B.Q4_0.gguf"), &[0u8; 100]);
    put(&root.join("chat-history.json"), b"{}");
    put(&root.join("localdocs/x.gguf"), &g);
    put(&tmp.path().join("elsewhere.gguf"), &g);
    symlink(tmp.path().join("elsewhere.gguf"), root.join("linked.gguf")).unwrap();
    let s = scan(SourceKind::Gpt4All, &root);
    assert_eq!(
        ids(&s),
        [
            "gpt4all/Llama-3-8B.Q4_0.gguf",
            "gpt4all/Mistral-7B.Q4_0.gguf",
            "gpt4all/linked.gguf",
            "gpt4all/old-model.bin",
        ]
    );
    let llama = model(&s, "gpt4all/Llama-3-8B.Q4_0.gguf");
    assert_eq!(llama.status, ModelStatus::Downloaded);
    assert_eq!(
        llama.size_bytes(),
        Some(g.len() as u64 + 5),
        "its leftover counted with it"
    );
    assert_eq!(
        llama.metadata.as_ref().unwrap().architecture.as_deref(),
        Some("llama")
    );
    let mistral = model(&s, "gpt4all/Mistral-7B.Q4_0.gguf");
    assert_eq!(
        (mistral.status, mistral.size_bytes()),
        (ModelStatus::Partial, Some(100))
    );
    let linked = model(&s, "gpt4all/linked.gguf");
    assert_eq!(linked.status, ModelStatus::Error);
    assert_eq!(linked.size_bytes(), Some(0), "a link is not followed");
    assert_eq!(
        model(&s, "gpt4all/old-model.bin").status,
        ModelStatus::Downloaded
    );

    // Where it is: the setting, else the local data folder.
    use model_library::library::sources::gpt4all_root;
    let home = tmp.path().join("home");
    let none = env_of(&[]);
    assert_eq!(
        gpt4all_root(&none, Some(&home)),
        Some(home.join(".local/share/nomic.ai/GPT4All"))
    );
    let xdg = env_of(&[("XDG_DATA_HOME", "/data")]);
    assert_eq!(
        gpt4all_root(&xdg, Some(&home)),
        Some(PathBuf::from("/data/nomic.ai/GPT4All"))
    );
    put(
        &home.join(".config/nomic.ai/GPT4All.ini"),
        b"[General]\nmodelPath=/models/gpt4all/\nthreadCount=4\n",
    );
    assert_eq!(
        gpt4all_root(&none, Some(&home)),
        Some(PathBuf::from("/models/gpt4all/"))
    );
}

// ---------------------------------------------------------------------------------------
// A folder of one's own, llama.cpp, Jan, ComfyUI

/// A folder of the user's: model files at any depth (here depth 4), a split as one model
/// (a part missing makes it partial), a projector joined to the model beside it, a
/// Transformers folder as one model, a download in progress, a link (error, not followed),
/// hidden folders and other files ignored.
#[test]
fn a_folder_of_ones_own_is_searched_at_any_depth() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("models");
    let g = gguf("llama", 2, &[8, 8]);
    put(&root.join("a/b/c/d/Deep-Q4.gguf"), &g);
    put(&root.join("split/Big-00001-of-00003.gguf"), &g);
    put(&root.join("split/Big-00002-of-00003.gguf"), &[0u8; 10]);
    put(&root.join("vision/Llava-Q4.gguf"), &g);
    put(&root.join("vision/mmproj-Llava-f16.gguf"), &[0u8; 30]);
    put(&root.join("hf/Qwen/config.json"), b"{}");
    put(&root.join("hf/Qwen/model.safetensors"), &safetensors(10));
    put(&root.join("hf/Qwen/tokenizer.json"), b"{}");
    put(&root.join("Coming.gguf.part"), &[0u8; 7]);
    // A huggingface_hub --local-dir download, one file still coming.
    let phi = root.join("dl/Phi");
    put(
        &phi.join("model-00001-of-00002.safetensors"),
        &safetensors(4),
    );
    put(
        &phi.join(".cache/huggingface/download/model-00001-of-00002.safetensors.metadata"),
        b"0123456789abcdef0123456789abcdef01234567\netag\n1712656091.1\n",
    );
    put(
        &phi.join(".cache/huggingface/download/Xy.etag2.incomplete"),
        &[0u8; 3],
    );
    put(&root.join(".git/objects/x.gguf"), &g);
    put(&root.join("notes.txt"), b"hi");
    put(&tmp.path().join("elsewhere.gguf"), &g);
    symlink(tmp.path().join("elsewhere.gguf"), root.join("linked.gguf")).unwrap();
    let s = scan(SourceKind::Folder, &root);
    assert_eq!(
        ids(&s),
        [
            "folder/Coming.gguf",
            "folder/a/b/c/d/Deep-Q4.gguf",
            "folder/dl/Phi",
            "folder/hf/Qwen",
            "folder/linked.gguf",
            "folder/split/Big.gguf",
            "folder/vision/Llava-Q4.gguf",
        ]
    );
    let deep = model(&s, "folder/a/b/c/d/Deep-Q4.gguf");
    assert_eq!(deep.status, ModelStatus::Downloaded);
    assert_eq!(deep.size_bytes(), Some(g.len() as u64));
    assert_eq!(
        deep.metadata.as_ref().unwrap().architecture.as_deref(),
        Some("llama")
    );
    let split = model(&s, "folder/split/Big.gguf");
    assert_eq!(split.status, ModelStatus::Partial);
    assert_eq!(split.size_bytes(), Some(g.len() as u64 + 10));
    assert!(
        split.note.as_deref().unwrap().contains("00003"),
        "{split:?}"
    );
    let vision = model(&s, "folder/vision/Llava-Q4.gguf");
    assert_eq!(vision.size_bytes(), Some(g.len() as u64 + 30));
    assert!(vision.capabilities.iter().any(|c| &**c == "vision"));
    let qwen = model(&s, "folder/hf/Qwen");
    assert_eq!(qwen.file_count(), Some(3));
    assert_eq!(qwen.format.as_deref(), Some("safetensors"));
    assert_eq!(
        (
            model(&s, "folder/Coming.gguf").status,
            model(&s, "folder/linked.gguf").status
        ),
        (ModelStatus::Partial, ModelStatus::Error)
    );
    assert_eq!(model(&s, "folder/linked.gguf").size_bytes(), Some(0));
    let phi = model(&s, "folder/dl/Phi");
    assert_eq!(phi.status, ModelStatus::Partial, "{phi:?}");
    assert_eq!(phi.size_bytes(), Some(safetensors(4).len() as u64 + 3));
}

/// llama.cpp's flat cache: a manifest makes one model of its GGUF file and projector (and
/// a download in progress makes another partial), a file no manifest names is its own
/// model, and `models--*` repos there (`$LLAMA_CACHE`) are read as the hub's layout.
#[test]
fn llamacpp_flat_cache_and_hub_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("llama.cpp");
    let g = gguf("gemma3", 2, &[8, 8]);
    put(
        &root.join("ggml-org_gemma-3-4b-it-GGUF_gemma-3-4b-it-Q4_K_M.gguf"),
        &g,
    );
    put(
        &root.join("ggml-org_gemma-3-4b-it-GGUF_gemma-3-4b-it-Q4_K_M.gguf.etag"),
        b"\"abc\"",
    );
    put(
        &root.join("ggml-org_gemma-3-4b-it-GGUF_mmproj-model-f16.gguf"),
        &[0u8; 40],
    );
    put(
        &root.join("manifest=ggml-org=gemma-3-4b-it-GGUF=latest.json"),
        br#"{"ggufFile":{"rfilename":"gemma-3-4b-it-Q4_K_M.gguf"},
             "mmprojFile":{"rfilename":"mmproj-model-f16.gguf"}}"#,
    );
    put(
        &root.join("manifest=bartowski=Qwen-GGUF=Q8_0.json"),
        br#"{"ggufFile":{"rfilename":"Q8/Qwen-Q8_0.gguf"}}"#,
    );
    put(
        &root.join("bartowski_Qwen-GGUF_Q8_Qwen-Q8_0.gguf.downloadInProgress"),
        &[0u8; 9],
    );
    put(&root.join("tinyllama.gguf"), &g);
    HfRepo::new(&root, "org/Hub-GGUF")
        .blob("aa", &g)
        .link("r1", "m.gguf", "aa")
        .main("r1");
    let s = scan(SourceKind::LlamaCpp, &root);
    assert_eq!(
        ids(&s),
        [
            "llamacpp/bartowski/Qwen-GGUF:Q8_0",
            "llamacpp/ggml-org/gemma-3-4b-it-GGUF:latest",
            "llamacpp/org/Hub-GGUF",
            "llamacpp/tinyllama.gguf",
        ]
    );
    let gemma = model(&s, "llamacpp/ggml-org/gemma-3-4b-it-GGUF:latest");
    assert_eq!(gemma.status, ModelStatus::Downloaded);
    assert_eq!(gemma.size_bytes(), Some(g.len() as u64 + 40));
    assert!(gemma.capabilities.iter().any(|c| &**c == "vision"));
    assert_eq!(
        gemma.metadata.as_ref().unwrap().architecture.as_deref(),
        Some("gemma3")
    );
    let qwen = model(&s, "llamacpp/bartowski/Qwen-GGUF:Q8_0");
    assert_eq!(
        (qwen.status, qwen.size_bytes()),
        (ModelStatus::Partial, Some(9))
    );
    let hub = model(&s, "llamacpp/org/Hub-GGUF");
    assert_eq!(
        (hub.status, hub.source.as_str()),
        (ModelStatus::Downloaded, "llamacpp")
    );
    assert_eq!(hub.size_bytes(), Some(g.len() as u64));
}

/// Jan: `llamacpp/models/<id>/model.yml` naming its files relative to the data folder (or
/// absolute, for an import), nested ids, a projector, an embedding model, a folder still
/// downloading (no `model.yml` yet), a named file missing.
#[test]
fn jan_models_from_their_model_yml() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("Jan/data");
    let models = data.join("llamacpp/models");
    let g = gguf("llama", 2, &[8, 8]);
    put(&models.join("Llama-3.2-1B/model.gguf"), &g);
    put(&models.join("Llama-3.2-1B/mmproj.gguf"), &[0u8; 20]);
    put(
        &models.join("Llama-3.2-1B/model.yml"),
        b"model_path: llamacpp/models/Llama-3.2-1B/model.gguf\n\
          mmproj_path: llamacpp/models/Llama-3.2-1B/mmproj.gguf\n\
          name: Llama 3.2 1B\nsize_bytes: 999\nembedding: false\n",
    );
    let outside = tmp.path().join("Downloads/nomic-embed.gguf");
    put(&outside, &gguf("nomic-bert", 1, &[4]));
    put(
        &models.join("imported/nomic/model.yml"),
        format!(
            "model_path: '{}'\nname: nomic-embed\nembedding: true\n",
            outside.display()
        )
        .as_bytes(),
    );
    put(&models.join("Qwen3-4B/model.gguf.tmp"), &[0u8; 11]);
    put(
        &models.join("Qwen3-4B/model.gguf.url"),
        b"https://example/x",
    );
    put(
        &models.join("gone/model.yml"),
        b"model_path: llamacpp/models/gone/model.gguf\nname: gone\n",
    );
    let s = scan(SourceKind::Jan, &data);
    assert_eq!(
        ids(&s),
        [
            "jan/Llama-3.2-1B",
            "jan/Qwen3-4B",
            "jan/gone",
            "jan/imported/nomic"
        ]
    );
    let llama = model(&s, "jan/Llama-3.2-1B");
    assert_eq!(&*llama.name, "Llama 3.2 1B");
    assert_eq!(llama.status, ModelStatus::Downloaded);
    let yml_len = fs::metadata(models.join("Llama-3.2-1B/model.yml"))
        .unwrap()
        .len();
    assert_eq!(llama.size_bytes(), Some(g.len() as u64 + 20 + yml_len));
    assert!(llama.capabilities.iter().any(|c| &**c == "vision"));
    let nomic = model(&s, "jan/imported/nomic");
    assert_eq!(nomic.status, ModelStatus::Downloaded);
    assert!(nomic.capabilities.iter().any(|c| &**c == "embedding"));
    assert!(
        nomic.size_bytes().unwrap() > fs::metadata(&outside).unwrap().len(),
        "the imported file counts"
    );
    assert_eq!(model(&s, "jan/Qwen3-4B").status, ModelStatus::Partial);
    let gone = model(&s, "jan/gone");
    assert_eq!(gone.status, ModelStatus::Error);
    assert!(gone.error.as_deref().unwrap().contains("missing"));

    // Where it is: the setting in Jan's app folder, else the default.
    use model_library::library::sources::jan_root;
    let home = tmp.path().join("home");
    let none = env_of(&[]);
    assert_eq!(
        jan_root(&none, Some(&home)),
        Some(home.join(".local/share/Jan/data"))
    );
    put(
        &home.join(".local/share/Jan/settings.json"),
        br#"{"data_folder":"/big/jan"}"#,
    );
    assert_eq!(
        jan_root(&none, Some(&home)),
        Some(PathBuf::from("/big/jan"))
    );
}

/// ComfyUI: the kinds' folders (legacy `clip` too) at any depth, a Diffusers folder as one
/// model, and `extra_model_paths.yaml` with a `base_path` relative to the file and a value
/// of several lines; a folder listed twice is scanned once; each model carries its kind.
#[test]
fn comfyui_folders_and_extra_model_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let comfy = tmp.path().join("ComfyUI");
    let a1111 = tmp.path().join("webui");
    let st = safetensors(16);
    put(&comfy.join("models/checkpoints/sdxl/base.safetensors"), &st);
    put(&comfy.join("models/loras/style.safetensors"), &st);
    put(&comfy.join("models/loras/readme.txt"), b"x");
    put(&comfy.join("models/clip/t5xxl.safetensors"), &st);
    put(&comfy.join("models/diffusers/sd15/model_index.json"), b"{}");
    put(
        &comfy.join("models/diffusers/sd15/unet/diffusion_pytorch_model.safetensors"),
        &st,
    );
    put(
        &comfy.join("models/unet/flux-Q4.gguf"),
        &gguf("flux", 2, &[8]),
    );
    put(&a1111.join("models/Stable-diffusion/v1-5.ckpt"), &[0u8; 50]);
    put(&a1111.join("models/Lora/a.safetensors"), &st);
    put(&a1111.join("models/LyCORIS/b.safetensors"), &st);
    put(
        &comfy.join("extra_model_paths.yaml"),
        b"a111:\n    base_path: ../webui/\n\n    checkpoints: models/Stable-diffusion\n    \
          loras: |\n        models/Lora\n        models/LyCORIS\n    configs: models/Stable-diffusion\n\
          again:\n    loras: models/loras\n",
    );
    let s = scan(SourceKind::ComfyUi, &comfy);
    assert_eq!(
        ids(&s),
        [
            "comfyui/a111/checkpoints/v1-5.ckpt",
            "comfyui/a111/loras/a.safetensors",
            "comfyui/a111/loras/b.safetensors",
            "comfyui/models/checkpoints/sdxl/base.safetensors",
            "comfyui/models/clip/t5xxl.safetensors",
            "comfyui/models/diffusers/sd15",
            "comfyui/models/loras/style.safetensors",
            "comfyui/models/unet/flux-Q4.gguf",
        ]
    );
    let caps = |id: &str| -> Vec<String> {
        model(&s, id)
            .capabilities
            .iter()
            .map(|c| c.to_string())
            .collect()
    };
    assert!(caps("comfyui/models/clip/t5xxl.safetensors").contains(&"text-encoder".into()));
    assert!(caps("comfyui/a111/loras/b.safetensors").contains(&"lora".into()));
    assert!(caps("comfyui/models/unet/flux-Q4.gguf").contains(&"diffusion-model".into()));
    assert_eq!(
        model(&s, "comfyui/models/diffusers/sd15").file_count(),
        Some(2)
    );
    assert_eq!(
        model(&s, "comfyui/a111/checkpoints/v1-5.ckpt").size_bytes(),
        Some(50)
    );
}

/// Hugging Face's shared blob store: two repos whose `blobs/<etag>` link into
/// `<cache>/blobs/<xx>/<hash>` count the file once in the store's total (each repo's own
/// size counts it), the header is read through the chain, and a link into a `blobs/`
/// folder that is not a marked store is an error, not followed.
#[test]
fn hf_shared_blob_store_counts_a_blob_once_across_repos() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let g = gguf("qwen2", 2, &[8, 8]);
    let hash = "ab".to_string() + &"c".repeat(62);
    put(&hub.join(format!("blobs/ab/{hash}")), &g);
    put(
        &hub.join(format!("blobs/ab/{hash}.refs")),
        b"models--a--one/blobs/e1\n",
    );
    put(&hub.join("blobs/.huggingface-shared-blobs"), b"1\n");
    for (repo, etag) in [("a/one", "e1"), ("b/two", "e2")] {
        let r = HfRepo::new(&hub, repo);
        symlink(
            format!("../../blobs/ab/{hash}"),
            r.dir.join("blobs").join(etag),
        )
        .unwrap();
        r.link("rev", "m.gguf", etag).main("rev");
    }
    let s = scan(SourceKind::HuggingFace, &hub);
    assert_eq!(ids(&s), ["huggingface/a/one", "huggingface/b/two"]);
    for id in ids(&s) {
        let m = model(&s, id);
        assert_eq!(m.status, ModelStatus::Downloaded, "{m:?}");
        assert_eq!(m.size_bytes(), Some(g.len() as u64));
        assert_eq!(
            m.metadata.as_ref().unwrap().architecture.as_deref(),
            Some("qwen2")
        );
    }
    assert_eq!(s.unique_bytes(), g.len() as u64, "one file, counted once");
    assert_eq!(
        s.bytes_freed_by_deleting("huggingface/a/one"),
        Some(0),
        "the other repo still uses it"
    );

    // Without the store's marker, the same link is not followed.
    fs::remove_file(hub.join("blobs/.huggingface-shared-blobs")).unwrap();
    let s = scan(SourceKind::HuggingFace, &hub);
    let one = model(&s, "huggingface/a/one");
    assert_eq!(one.status, ModelStatus::Error);
    assert!(
        one.error.as_deref().unwrap().contains("not followed"),
        "{one:?}"
    );
}

/// Ollama variants: blobs named `sha256:<hex>` (older installs) are read like
/// `sha256-<hex>`, and a model stored tensor by tensor (MLX and image models: one
/// safetensors blob per tensor, `application/vnd.ollama.image.tensor` layers carrying
/// name, dtype and shape) is one model whose blobs add up, with its parameters from the
/// shapes.
#[test]
fn ollama_colon_blobs_and_tensor_by_tensor_models() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("models");
    let o = Ollama { root: root.clone() };
    let g = gguf("llama", 2, &[8, 8]);
    put(&root.join(format!("blobs/sha256:{}", hex('a'))), &g);
    put(&root.join(format!("blobs/sha256:{}", hex('b'))), b"{}");
    o.manifest(
        "registry.ollama.ai/library/old/latest",
        (&hex('b'), 2),
        &[("model", &hex('a'), g.len() as u64)],
    );
    let (t1, t2) = (safetensors(6), safetensors(4));
    o.blob(&hex('c'), &t1)
        .blob(&hex('d'), &t2)
        .blob(&hex('e'), b"{}");
    let layer = |h: &str, size: usize, name: &str, shape: &[u64]| {
        serde_json::json!({
            "mediaType": "application/vnd.ollama.image.tensor",
            "digest": format!("sha256:{h}"), "size": size,
            "name": name, "dtype": "BF16", "shape": shape,
        })
    };
    let m = serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": format!("sha256:{}", hex('e')), "size": 2},
        "layers": [
            layer(&hex('c'), t1.len(), "model.embed.weight", &[2, 3]),
            layer(&hex('d'), t2.len(), "model.norm.weight", &[4]),
        ],
    });
    put(
        &root.join("manifests/registry.ollama.ai/library/flux/mlx"),
        m.to_string().as_bytes(),
    );
    let s = scan(SourceKind::Ollama, &root);
    let old = model(&s, "ollama/library/old:latest");
    assert_eq!(old.status, ModelStatus::Downloaded, "{old:?}");
    assert_eq!(old.size_bytes(), Some(g.len() as u64 + 2));
    assert_eq!(
        old.metadata.as_ref().unwrap().architecture.as_deref(),
        Some("llama")
    );
    let flux = model(&s, "ollama/library/flux:mlx");
    assert_eq!(flux.status, ModelStatus::Downloaded, "{flux:?}");
    assert_eq!(flux.size_bytes(), Some((t1.len() + t2.len() + 2) as u64));
    assert_eq!(flux.format.as_deref(), Some("safetensors"));
    let md = flux.metadata.as_ref().unwrap();
    assert_eq!(md.parameter_count, Some(6 + 4));
    assert_eq!(md.dtypes, ["BF16"]);
}

/// LM Studio's hub models beside the models folder: one whose files are downloaded names
/// that model (matched whatever the case of the repo), one whose files are not is listed
/// as `available`, and an alias of another hub model adds nothing.
#[test]
fn lmstudio_hub_models_name_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join(".lmstudio");
    let root = home.join("models");
    let g = gguf("qwen3", 15, &[8, 8]);
    put(&root.join("lmstudio-community/Qwen3-8B-GGUF/q.gguf"), &g);
    put(
        &home.join("hub/models/qwen/qwen3-8b/model.yaml"),
        b"model: qwen/qwen3-8b\nbase:\n  - key: lmstudio-community/qwen3-8b-gguf\n    \
          sources:\n      - type: huggingface\n        user: lmstudio-community\n        \
          repo: qwen3-8b-gguf\n",
    );
    put(
        &home.join("hub/models/google/gemma-3/model.yaml"),
        b"model: google/gemma-3\nbase:\n  - key: lmstudio-community/gemma-3-gguf\n    \
          sources:\n      - type: huggingface\n        user: lmstudio-community\n        \
          repo: gemma-3-GGUF\n",
    );
    put(
        &home.join("hub/models/me/my-qwen/model.yaml"),
        b"model: me/my-qwen\nbase: qwen/qwen3-8b\n",
    );
    let s = scan(SourceKind::LmStudio, &root);
    assert_eq!(
        ids(&s),
        [
            "lmstudio/hub/google/gemma-3",
            "lmstudio/lmstudio-community/Qwen3-8B-GGUF",
        ]
    );
    let qwen = model(&s, "lmstudio/lmstudio-community/Qwen3-8B-GGUF");
    assert_eq!(qwen.status, ModelStatus::Downloaded);
    assert_eq!(
        qwen.note.as_deref(),
        Some("LM Studio lists it as qwen/qwen3-8b")
    );
    let gemma = model(&s, "lmstudio/hub/google/gemma-3");
    assert_eq!(
        (gemma.status, gemma.size_bytes()),
        (ModelStatus::Available, Some(0))
    );
    assert_eq!(&*gemma.name, "google/gemma-3");
}
