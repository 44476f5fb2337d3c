//! A ComfyUI folder: its model folders `models/<kind>/` (ComfyUI's `folder_paths.py`:
//! `folder_names_and_paths`, with the legacy folders `clip` → `text_encoders`, `unet` →
//! `diffusion_models` and `t2i_adapter` → `controlnet`), searched at any depth for
//! ComfyUI's `supported_pt_extensions` (`.ckpt .pt .pt2 .bin .pth .safetensors .pkl .sft`)
//! plus `.gguf` (the ComfyUI-GGUF loaders'), and the folders of its
//! `extra_model_paths.yaml` (`utils/extra_config.py`, `load_extra_path_config`): sections of
//! any name, each an optional `base_path` (`~` and `$VAR` expanded; relative to the file's
//! folder) and `<kind>: <path>` entries whose value may hold several paths, one per line
//! (`|` blocks), each relative to `base_path` (or to the file's folder), legacy kinds mapped.
//!
//! Ids: `comfyui/<folder relative to the ComfyUI folder>/<file>` (e.g.
//! `comfyui/models/loras/style.safetensors`), or for a folder outside it
//! `comfyui/<section>/<kind>/<file>`. Each model carries its kind as a capability
//! (`checkpoint`, `lora`, `vae`, …). A folder listed twice is scanned once. Models in the
//! folders are found by [`super::tree`]'s rules. Never writes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use super::tree::{TreeRules, scan_tree};
use super::{SourceScan, lexical_normalize, read_text};
use crate::library::error::LibraryError;
use crate::library::metadata::MetadataCache;

/// ComfyUI's model kinds: (folder name, the capability its models get).
const KINDS: [(&str, &str); 21] = [
    ("checkpoints", "checkpoint"),
    ("diffusion_models", "diffusion-model"),
    ("unet", "diffusion-model"),
    ("loras", "lora"),
    ("vae", "vae"),
    ("vae_approx", "vae"),
    ("text_encoders", "text-encoder"),
    ("clip", "text-encoder"),
    ("clip_vision", "vision-encoder"),
    ("controlnet", "controlnet"),
    ("t2i_adapter", "controlnet"),
    ("style_models", "style-model"),
    ("embeddings", "embedding"),
    ("diffusers", "diffusers"),
    ("gligen", "gligen"),
    ("upscale_models", "upscaler"),
    ("latent_upscale_models", "upscaler"),
    ("hypernetworks", "hypernetwork"),
    ("photomaker", "photomaker"),
    ("model_patches", "model-patch"),
    ("audio_encoders", "audio-encoder"),
];

/// `supported_pt_extensions` and `.gguf`.
const EXTS: [&str; 9] = [
    "ckpt",
    "pt",
    "pt2",
    "bin",
    "pth",
    "safetensors",
    "pkl",
    "sft",
    "gguf",
];

/// The capability of a kind (a legacy name mapped); an unknown kind keeps its own name.
fn capability(kind: &str) -> String {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or_else(|| kind.replace('_', "-"), |(_, c)| (*c).to_string())
}

/// The folders to search: (folder, id prefix, capability).
pub(super) fn folders(root: &Path, env: super::Env<'_>) -> Vec<(PathBuf, String, String)> {
    let mut out = Vec::new();
    let models = root.join("models");
    for (kind, cap) in KINDS {
        out.push((
            models.join(kind),
            format!("comfyui/models/{kind}"),
            cap.to_string(),
        ));
    }
    let yaml = root.join("extra_model_paths.yaml");
    for (section, kind, dir) in extra_paths(&yaml, env) {
        let prefix = match dir.strip_prefix(root) {
            Ok(rel) => format!("comfyui/{}", rel.to_string_lossy()),
            Err(_) => format!("comfyui/{section}/{kind}"),
        };
        out.push((dir, prefix, capability(&kind)));
    }
    out
}

/// The `(section, kind, folder)` entries of an `extra_model_paths.yaml`; nothing when the
/// file is absent or not YAML.
pub(super) fn extra_paths(yaml: &Path, env: super::Env<'_>) -> Vec<(String, String, PathBuf)> {
    let Some(doc) = read_text(yaml, 1 << 20)
        .and_then(|t| YamlLoader::load_from_str(&t).ok())
        .and_then(|d| d.into_iter().next())
    else {
        return Vec::new();
    };
    let dir = yaml.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    let Yaml::Hash(sections) = doc else {
        return out;
    };
    for (section, conf) in sections {
        let (Some(section), Yaml::Hash(conf)) = (section.as_str(), conf) else {
            continue;
        };
        let base = conf
            .get(&Yaml::String("base_path".into()))
            .and_then(Yaml::as_str)
            .map(|b| dir.join(expand(b, env)));
        for (key, value) in &conf {
            let (Some(kind), Some(value)) = (key.as_str(), value.as_str()) else {
                continue;
            };
            if matches!(
                kind,
                "base_path" | "is_default" | "custom_nodes" | "configs"
            ) {
                continue;
            }
            for line in value.split('\n').filter(|l| !l.is_empty()) {
                let path = match &base {
                    Some(b) => b.join(line),
                    None => dir.join(line),
                };
                out.push((
                    section.to_string(),
                    kind.to_string(),
                    lexical_normalize(&path),
                ));
            }
        }
    }
    out
}

/// `~` and `$VAR`/`${VAR}` expanded as Python's `expanduser` and `expandvars` do (an
/// unknown variable is left as it is).
fn expand(s: &str, env: super::Env<'_>) -> String {
    let s = match s.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => env("HOME")
            .map(|h| format!("{}{rest}", h.to_string_lossy()))
            .unwrap_or_else(|| s.to_string()),
        _ => s.to_string(),
    };
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(b) = after.strip_prefix('{') {
            match b.find('}') {
                Some(j) => (&b[..j], &b[j + 1..]),
                None => ("", after),
            }
        } else {
            let j = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..j], &after[j..])
        };
        match env(name).filter(|_| !name.is_empty()) {
            Some(v) => out.push_str(&v.to_string_lossy()),
            None => out.push_str(&rest[i..rest.len() - tail.len()]),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

pub(super) fn scan(
    root: &Path,
    cache: &mut MetadataCache,
    out: &mut SourceScan,
) -> Result<(), LibraryError> {
    let mut seen = BTreeSet::new();
    let env = |k: &str| std::env::var_os(k);
    for (dir, prefix, cap) in folders(root, &env) {
        if !seen.insert(dir.clone()) || !dir.is_dir() {
            continue;
        }
        let rules = TreeRules {
            prefix: &prefix,
            exts: &EXTS,
            capability: Some(&cap),
            skip: &[],
        };
        scan_tree(&dir, &rules, cache, out);
    }
    Ok(())
}
