//! Ollama config blob reader: the small JSON document a manifest's `config` digest names
//! (`model_format`, `model_family`, `model_families`, `model_type`, `file_type`). Owns
//! nothing but this parse.

use std::path::Path;

use serde_json::Value;

use super::{MAX_JSON_FILE, MetadataError, read_small};
use crate::library::model::ModelMetadata;

const FORMAT: &str = "Ollama config";

/// Reads an Ollama config blob: `architecture` from `model_family` (else the first of
/// `model_families`), `quantization` from `file_type`, `parameter_count` from `model_type`
/// when it reads like `8.0B` or `135M` (see [`parse_parameter_label`]). Refuses a file over
/// [`super::MAX_JSON_FILE`] bytes, one that is not a JSON object, and an object with none of
/// these keys.
pub fn read_ollama_config(path: &Path) -> Result<ModelMetadata, MetadataError> {
    let buf = read_small(path, MAX_JSON_FILE, FORMAT)?;
    let wrong = |reason: String| MetadataError::WrongFormat {
        path: path.to_path_buf(),
        format: FORMAT,
        reason,
    };
    let value: Value =
        serde_json::from_slice(&buf).map_err(|e| wrong(format!("not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| wrong("not a JSON object".into()))?;
    const KEYS: [&str; 5] = [
        "model_format",
        "model_family",
        "model_families",
        "model_type",
        "file_type",
    ];
    if !KEYS.iter().any(|k| obj.contains_key(*k)) {
        return Err(wrong(format!("none of the keys {}", KEYS.join(", "))));
    }
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let architecture = text("model_family").or_else(|| {
        obj.get("model_families")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find_map(Value::as_str))
            .map(str::to_string)
    });
    Ok(ModelMetadata {
        architecture,
        parameter_count: text("model_type").and_then(|t| parse_parameter_label(&t)),
        quantization: text("file_type"),
        context_length: None,
        dtypes: Vec::new(),
        kv_bytes_per_token: None,
    })
}

/// A parameter count written as a size label: digits with an optional decimal part and a
/// `K`, `M`, `B` or `T` suffix (any case): `8.0B` → 8 000 000 000, `135M` → 135 000 000,
/// `1.5K` → 1 500. Anything else (`8x7B`, `""`, `7`) is `None`. Exact decimal arithmetic,
/// checked for overflow; extra fractional digits beyond the suffix's precision are dropped.
pub fn parse_parameter_label(s: &str) -> Option<u64> {
    let s = s.trim();
    let suffix = s.chars().last()?;
    let num = &s[..s.len() - suffix.len_utf8()];
    let exp: u32 = match suffix.to_ascii_uppercase() {
        'K' => 3,
        'M' => 6,
        'B' => 9,
        'T' => 12,
        _ => return None,
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || (num.contains('.') && frac.is_empty()) {
        return None;
    }
    let scale = 10u64.checked_pow(exp)?;
    let mut value = int.parse::<u64>().ok()?.checked_mul(scale)?;
    let mut place = scale;
    for b in frac.bytes() {
        place /= 10;
        if place == 0 {
            break;
        }
        value = value.checked_add(u64::from(b - b'0') * place)?;
    }
    Some(value)
}
