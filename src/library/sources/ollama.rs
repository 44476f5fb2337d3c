//! Ollama's store: `manifests/<registry>/<namespace>/<model>/<tag>` (a JSON manifest naming
//! a `config` blob and `layers`, each by `sha256:<hex>` digest) and `blobs/sha256-<hex>`
//! (content files shared between models; `sha256-<hex>-partial` and
//! `sha256-<hex>-partial-<n>` while a pull is running).
//!
//! Size: the model's distinct blobs (config and layers), each once; blobs are shared, so
//! the per-model sizes of two models sharing a layer add up to more than the store holds,
//! and [`super::DiskUsage`] counts the shared blob once. Status: `error` (manifest unreadable
//! or not a manifest, a bad digest, a blob missing with no partial download, a blob whose
//! size is not the manifest's), else `partial` (a layer present only as a `-partial` file),
//! else `downloaded`. A partial blob that no manifest names (a first pull in progress: Ollama
//! writes the manifest last) is listed as its own `partial` model
//! `ollama/partial/sha256-<hex>`. Metadata: the model layer's GGUF header, completed by the
//! config blob. `path` is the manifest file (Ollama has no model folder). A model stored
//! tensor by tensor (MLX and image models: `application/vnd.ollama.image.tensor` layers,
//! each a safetensors blob) has no single model file: its blobs add up, its parameters
//! come from the layers' shapes. Never writes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::{Draft, SourceScan, arch_capabilities, list_dir, push_unique, read_bounded};
use crate::library::clock::unix_seconds;
use crate::library::error::LibraryError;
use crate::library::metadata::{HeaderKind, MetadataCache, fill_missing};

/// The default registry host; its models get the short ids and names Ollama shows.
const DEFAULT_HOST: &str = "registry.ollama.ai";
const MEDIA_MODEL: &str = "application/vnd.ollama.image.model";
const MEDIA_PROJECTOR: &str = "application/vnd.ollama.image.projector";
const MEDIA_TEMPLATE: &str = "application/vnd.ollama.image.template";
/// A model stored tensor by tensor (Ollama's MLX and image-generation models): one
/// safetensors blob per tensor or group, its `name`, `dtype` and `shape` in the layer
/// (`server/internal/manifest/manifest.go`; media type parameters may follow a `;`).
const MEDIA_TENSOR: &str = "application/vnd.ollama.image.tensor";
/// Largest manifest accepted.
const MAX_MANIFEST: u64 = 1 << 20;

#[derive(Debug, Clone)]
struct BlobFile {
    path: PathBuf,
    size: u64,
    mtime: Option<f64>,
}

#[derive(Debug, Default)]
struct Blobs {
    complete: BTreeMap<String, BlobFile>,
    partial: BTreeMap<String, Vec<BlobFile>>,
}

pub(super) fn scan(
    root: &Path,
    cache: &mut MetadataCache,
    out: &mut SourceScan,
) -> Result<(), LibraryError> {
    let blobs_dir = root.join("blobs");
    let blobs = index_blobs(&blobs_dir).map_err(|e| LibraryError::io(&blobs_dir, e))?;
    let manifests_dir = root.join("manifests");
    let mut referenced: HashSet<String> = HashSet::new();

    // manifests/<host>/<namespace>/<model>/<tag>: walk exactly four levels, no links.
    let mut stack: Vec<(PathBuf, Vec<String>)> = vec![(manifests_dir.clone(), Vec::new())];
    while let Some((dir, parts)) = stack.pop() {
        let entries = match list_dir(&dir) {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if parts.is_empty() => return Err(LibraryError::io(&dir, e)),
            Err(e) => {
                let rel = parts.join("/");
                let mut d = Draft::new(format!("ollama/{rel}"), rel, dir.clone());
                d.error(format!("cannot read {}: {e}", dir.display()));
                out.push(d);
                continue;
            }
        };
        for (name, ft) in entries {
            let name = name.to_string_lossy().into_owned();
            let path = dir.join(&name);
            let mut child = parts.clone();
            child.push(name);
            if ft.is_dir() && child.len() < 4 {
                stack.push((path, child));
            } else if ft.is_file() && child.len() == 4 {
                out.push(manifest_model(
                    &path,
                    &child,
                    &blobs,
                    cache,
                    &mut referenced,
                ));
            }
        }
    }

    // Pulls whose manifest is not written yet.
    for (hex, parts) in &blobs.partial {
        if referenced.contains(hex) || blobs.complete.contains_key(hex) {
            continue;
        }
        let short = &hex[..12];
        let mut d = Draft::new(
            format!("ollama/partial/sha256-{hex}"),
            format!("incomplete pull sha256:{short}…"),
            parts[0].path.clone(),
        );
        for p in parts {
            d.count(p.path.clone(), p.size, p.mtime);
        }
        d.partial = true;
        out.push(d);
    }
    Ok(())
}

/// `sha256-<hex>` (or the older `sha256:<hex>`) → (hex, false); `…-partial` and
/// `…-partial-<n>` → (hex, true).
pub(crate) fn parse_blob_name(name: &str) -> Option<(String, bool)> {
    let rest = name
        .strip_prefix("sha256-")
        .or_else(|| name.strip_prefix("sha256:"))?;
    let hex = rest.get(..64).filter(|h| is_hex64(h))?;
    let tail = &rest[64..];
    match tail {
        "" => Some((hex.to_string(), false)),
        "-partial" => Some((hex.to_string(), true)),
        t => {
            let n = t.strip_prefix("-partial-")?;
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (hex.to_string(), true))
        }
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn index_blobs(dir: &Path) -> io::Result<Blobs> {
    let mut blobs = Blobs::default();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(blobs),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let Some((hex, partial)) = entry.file_name().to_str().and_then(parse_blob_name) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue }; // not followed; vanished
        if !meta.is_file() {
            continue;
        }
        let file = BlobFile {
            path: entry.path(),
            size: meta.len(),
            mtime: meta.modified().ok().map(unix_seconds),
        };
        if partial {
            blobs.partial.entry(hex).or_default().push(file);
        } else {
            blobs.complete.insert(hex, file);
        }
    }
    for v in blobs.partial.values_mut() {
        v.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(blobs)
}

/// One entry of a manifest.
struct Layer {
    media_type: String,
    hex: String,
    size: Option<u64>,
    /// A tensor layer's element count (its `shape` multiplied out) and `dtype`.
    tensor: Option<(Option<u64>, Option<String>)>,
}

impl Layer {
    /// The media type without parameters.
    fn kind(&self) -> &str {
        self.media_type.split(';').next().unwrap_or("").trim()
    }
}

fn parse_layer(v: &Value) -> Result<Layer, String> {
    let digest = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or("a layer has no digest")?;
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| is_hex64(h))
        .ok_or_else(|| {
            format!(
                "bad digest {:?}",
                digest.chars().take(80).collect::<String>()
            )
        })?;
    Ok(Layer {
        media_type: v
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        hex: hex.to_string(),
        size: v.get("size").and_then(Value::as_u64),
        tensor: None,
    })
    .map(|mut l| {
        if l.kind() == MEDIA_TENSOR {
            let elements = v.get("shape").and_then(Value::as_array).and_then(|dims| {
                dims.iter()
                    .try_fold(1u64, |a, d| a.checked_mul(d.as_u64()?))
            });
            let dtype = v.get("dtype").and_then(Value::as_str).map(str::to_string);
            l.tensor = Some((elements, dtype));
        }
        l
    })
}

/// A tensor-by-tensor model's format and metadata, from its layers: safetensors blobs,
/// parameters the sum of the shapes (when every layer gives one), the dtypes named.
fn tensor_metadata(layers: &[Layer], d: &mut Draft) {
    let tensors: Vec<&(Option<u64>, Option<String>)> =
        layers.iter().filter_map(|l| l.tensor.as_ref()).collect();
    d.format = Some("safetensors".into());
    let params = tensors
        .iter()
        .try_fold(0u64, |a, (n, _)| a.checked_add((*n)?));
    let mut dtypes: Vec<String> = tensors.iter().filter_map(|(_, t)| t.clone()).collect();
    dtypes.sort();
    dtypes.dedup();
    let extra = crate::library::model::ModelMetadata {
        parameter_count: params,
        dtypes,
        ..Default::default()
    };
    d.fill_metadata(&extra);
}

fn parse_manifest(bytes: &[u8]) -> Result<(Option<Layer>, Vec<Layer>), String> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid JSON: {e}"))?;
    let layers = v
        .get("layers")
        .and_then(Value::as_array)
        .ok_or("manifest has no layers")?;
    let config = v.get("config").map(parse_layer).transpose()?;
    let layers = layers.iter().map(parse_layer).collect::<Result<_, _>>()?;
    Ok((config, layers))
}

fn manifest_model(
    path: &Path,
    parts: &[String],
    blobs: &Blobs,
    cache: &mut MetadataCache,
    referenced: &mut HashSet<String>,
) -> Draft {
    let [host, ns, model, tag] = parts else {
        unreachable!("manifests are four levels deep")
    };
    let (id, name) = if host == DEFAULT_HOST {
        let name = if ns == "library" {
            format!("{model}:{tag}")
        } else {
            format!("{ns}/{model}:{tag}")
        };
        (format!("ollama/{ns}/{model}:{tag}"), name)
    } else {
        (
            format!("ollama/{host}/{ns}/{model}:{tag}"),
            format!("{host}/{ns}/{model}:{tag}"),
        )
    };
    let mut d = Draft::new(id, name, path.to_path_buf());
    if let Ok(m) = fs::symlink_metadata(path) {
        d.newest = m.modified().ok().map(unix_seconds);
    }
    let parsed = read_bounded(path, MAX_MANIFEST)
        .map_err(|e| format!("cannot read the manifest: {e}"))
        .and_then(|b| parse_manifest(&b));
    let (config, layers) = match parsed {
        Ok(v) => v,
        Err(e) => {
            d.error(e);
            return d;
        }
    };

    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut model_blob: Option<PathBuf> = None;
    let mut has_template = false;
    let mut has_projector = false;
    for layer in config.iter().chain(&layers) {
        referenced.insert(layer.hex.clone());
        match layer.media_type.as_str() {
            MEDIA_TEMPLATE => has_template = true,
            MEDIA_PROJECTOR => has_projector = true,
            _ => {}
        }
        if !seen.insert(&layer.hex) {
            continue;
        }
        let short = &layer.hex[..12];
        if let Some(b) = blobs.complete.get(&layer.hex) {
            if let Some(want) = layer.size
                && want != b.size
            {
                d.error(format!(
                    "blob sha256:{short}… is {} bytes, the manifest says {want}",
                    b.size
                ));
            }
            d.count(b.path.clone(), b.size, b.mtime);
            if layer.media_type == MEDIA_MODEL && model_blob.is_none() {
                model_blob = Some(b.path.clone());
            }
        } else if let Some(ps) = blobs.partial.get(&layer.hex) {
            d.partial = true;
            for p in ps {
                d.count(p.path.clone(), p.size, p.mtime);
            }
        } else {
            d.error(format!("blob sha256:{short}… is missing"));
        }
    }

    if let Some(mb) = &model_blob {
        d.metadata = cache.get_or_read(mb).map(Arc::unwrap_or_clone);
        d.format = match cache.header_kind(mb) {
            Some(HeaderKind::Gguf) => Some("gguf".into()),
            Some(HeaderKind::Safetensors) => Some("safetensors".into()),
            _ => None,
        };
    }
    if let Some(cfg) = config.as_ref().and_then(|c| blobs.complete.get(&c.hex))
        && let Some(extra) = cache.get_or_read(&cfg.path)
    {
        match &mut d.metadata {
            Some(m) => fill_missing(m, &extra),
            None => d.metadata = Some(Arc::unwrap_or_clone(extra)),
        }
    }
    if model_blob.is_none() && layers.iter().any(|l| l.tensor.is_some()) {
        tensor_metadata(&layers, &mut d);
    }
    let has_model = layers
        .iter()
        .any(|l| l.media_type == MEDIA_MODEL || l.tensor.is_some());
    if has_model {
        let arch = d.metadata.as_ref().and_then(|m| m.architecture.clone());
        d.capabilities = arch.as_deref().map(arch_capabilities).unwrap_or_default();
        if d.capabilities.is_empty() && arch.is_none() {
            d.capabilities.push("text-generation".into());
        }
        if has_template && d.capabilities.iter().any(|c| c == "text-generation") {
            push_unique(&mut d.capabilities, "chat");
        }
    }
    if has_projector {
        push_unique(&mut d.capabilities, "vision");
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_names() {
        let hex = "a".repeat(64);
        assert_eq!(
            parse_blob_name(&format!("sha256-{hex}")),
            Some((hex.clone(), false))
        );
        assert_eq!(
            parse_blob_name(&format!("sha256:{hex}")),
            Some((hex.clone(), false))
        );
        assert_eq!(
            parse_blob_name(&format!("sha256-{hex}-partial")),
            Some((hex.clone(), true))
        );
        assert_eq!(
            parse_blob_name(&format!("sha256-{hex}-partial-12")),
            Some((hex.clone(), true))
        );
        assert_eq!(parse_blob_name(&format!("sha256-{hex}-other")), None);
        assert_eq!(parse_blob_name("sha256-../../etc/passwd"), None);
        assert_eq!(parse_blob_name(&format!("sha256-{}", "A".repeat(64))), None);
    }
}
