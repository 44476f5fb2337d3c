//! safetensors header reader: the u64 little-endian header length and the JSON header that
//! follows, never the tensor data. Owns nothing but this parse.

use std::io::{BufReader, Read};
use std::path::Path;

use serde_json::Value;

use super::{Fail, MAX_SAFETENSORS_HEADER, MetadataError, open};
use crate::library::model::ModelMetadata;

const FORMAT: &str = "safetensors";

/// Reads a safetensors file's header: `dtypes` (distinct, sorted) and `parameter_count` (the
/// sum over tensors of the product of their shapes, checked). `__metadata__` is accepted and
/// ignored.
///
/// Refuses: a header length of 0, over [`MAX_SAFETENSORS_HEADER`] or past the end of the
/// file; a header that is not a JSON object; a tensor without a string `dtype`, an integer
/// `shape` or two ordered `data_offsets` inside the data section; an overflowing count.
pub fn read_safetensors(path: &Path) -> Result<ModelMetadata, MetadataError> {
    let (file, len) = open(path)?;
    parse(file, len).map_err(|f| f.at(path, FORMAT, len))
}

fn parse(file: std::fs::File, len: u64) -> Result<ModelMetadata, Fail> {
    if len < 8 {
        return Err(Fail::Truncated {
            offset: 0,
            needed: 8,
        });
    }
    let mut r = BufReader::new(file);
    let mut head = [0u8; 8];
    r.read_exact(&mut head)?;
    let n = u64::from_le_bytes(head);
    if n == 0 {
        return Err(Fail::Malformed("the header length is 0".into()));
    }
    if n > MAX_SAFETENSORS_HEADER {
        return Err(Fail::Malformed(format!(
            "the header length {n} is more than the {MAX_SAFETENSORS_HEADER} accepted"
        )));
    }
    if n > len - 8 {
        return Err(Fail::Truncated {
            offset: 8,
            needed: n,
        });
    }
    let mut buf = vec![0u8; n as usize]; // bounded by the limit and the file's length
    r.read_exact(&mut buf)?;
    let data_len = len - 8 - n;

    let first = buf.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Fail::WrongFormat("the header is not a JSON object".into()));
    }
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&buf)
        .map_err(|e| Fail::Malformed(format!("the header is not valid JSON: {e}")))?;
    drop(buf);

    let mut params: u64 = 0;
    let mut dtypes: Vec<String> = Vec::new();
    for (name, tensor) in &header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| Fail::Malformed(format!("tensor {name:?}: {what}"));
        let obj = tensor.as_object().ok_or_else(|| bad("not an object"))?;
        let dtype = obj
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no string dtype"))?;
        let shape = obj
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no shape array"))?;
        let mut elems: u64 = 1;
        for d in shape {
            let d = d
                .as_u64()
                .ok_or_else(|| bad("a shape entry is not a non-negative integer"))?;
            elems = elems
                .checked_mul(d)
                .ok_or_else(|| bad("element count overflows"))?;
        }
        let offsets = obj
            .get("data_offsets")
            .and_then(Value::as_array)
            .filter(|a| a.len() == 2)
            .ok_or_else(|| bad("data_offsets is not a pair"))?;
        let (Some(begin), Some(end)) = (offsets[0].as_u64(), offsets[1].as_u64()) else {
            return Err(bad("data_offsets are not non-negative integers"));
        };
        if begin > end {
            return Err(bad("data_offsets are out of order"));
        }
        if end > data_len {
            return Err(bad(&format!(
                "its data ends at byte {end} of a data section of {data_len} bytes"
            )));
        }
        params = params
            .checked_add(elems)
            .ok_or_else(|| Fail::Malformed("the total parameter count overflows".into()))?;
        if !dtypes.iter().any(|d| d == dtype) {
            dtypes.push(dtype.to_string());
        }
    }
    dtypes.sort();
    Ok(ModelMetadata {
        architecture: None,
        parameter_count: Some(params),
        quantization: None,
        context_length: None,
        dtypes,
        kv_bytes_per_token: None,
    })
}
