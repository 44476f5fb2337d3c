//! GGUF header reader (versions 2 and 3, little-endian): the key/value section and the
//! tensor infos, never the tensor data. Values that are not needed — token arrays, chat
//! templates — are skipped by seeking, never materialised. Owns nothing but this parse.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read, Seek};
use std::path::Path;

use super::{
    Fail, MAX_GGUF_ARRAY_LEN, MAX_GGUF_DIMS, MAX_GGUF_KV_COUNT, MAX_GGUF_TENSOR_COUNT,
    MAX_STRING_BYTES, MetadataError, open,
};
use crate::library::model::ModelMetadata;

const FORMAT: &str = "GGUF";

// GGUF metadata value types.
const T_UINT8: u32 = 0;
const T_INT8: u32 = 1;
const T_UINT16: u32 = 2;
const T_INT16: u32 = 3;
const T_UINT32: u32 = 4;
const T_INT32: u32 = 5;
const T_FLOAT32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_UINT64: u32 = 10;
const T_INT64: u32 = 11;
const T_FLOAT64: u32 = 12;

/// Smallest possible key/value pair: key length, empty key, type, one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: name length, empty name, n_dims = 0, type, offset.
const MIN_TENSOR_BYTES: u64 = 8 + 4 + 4 + 8;
/// Nesting depth of arrays in arrays accepted.
const MAX_ARRAY_DEPTH: u32 = 4;
/// Tensor type numbers above this are refused (ggml has fewer than 64).
const MAX_TENSOR_TYPE: u32 = 255;
/// `<arch>.<key>` candidates remembered before the architecture is known.
const MAX_ARCH_CANDIDATES: usize = 64;
/// The `<arch>.<key>` hyperparameters read (llama.cpp's `LLM_KV_*` names): what the
/// context length and the attention cache's size need.
const ARCH_KEYS: [&str; 7] = [
    "context_length",
    "block_count",
    "embedding_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
];
/// Longest per-layer array read (`head_count_kv` may be one value per layer).
const MAX_LAYER_ARRAY: u64 = 4096;

/// The name of a ggml tensor type (`GGML_TYPE_*`), or `type N` for numbers not known here.
pub fn ggml_type_name(t: u32) -> String {
    let name = match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return format!("type {t}"),
    };
    name.to_string()
}

/// The name of a llama.cpp file type (`general.file_type`, `LLAMA_FTYPE_*`), or `type N`
/// for numbers not known here.
pub fn ftype_name(t: u64) -> String {
    let name = match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        4 => "Q4_1_SOME_F16",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return format!("type {t}"),
    };
    name.to_string()
}

/// Reads a GGUF file's header: `architecture` (`general.architecture`), `context_length`
/// (`<architecture>.context_length`), `quantization` (from `general.file_type`, else the
/// tensor type holding the most elements, F32 counting only when nothing else is there),
/// `parameter_count` (the sum over tensors of the product of their dimensions) and `dtypes`
/// (the distinct tensor types, sorted).
///
/// Refuses (with a [`MetadataError`], never a panic or a large allocation): a wrong magic,
/// versions other than 2 and 3, big-endian files, more than [`MAX_GGUF_KV_COUNT`] pairs or
/// [`MAX_GGUF_TENSOR_COUNT`] tensors or counts that cannot fit in the file, strings longer
/// than [`MAX_STRING_BYTES`], arrays longer than [`MAX_GGUF_ARRAY_LEN`] or than the file,
/// more than [`MAX_GGUF_DIMS`] dimensions, overflowing products, unknown value types and a
/// header that ends early.
pub fn read_gguf(path: &Path) -> Result<ModelMetadata, MetadataError> {
    let (file, len) = open(path)?;
    let mut cur = Cursor {
        r: BufReader::with_capacity(64 * 1024, file),
        pos: 0,
        len,
    };
    parse(&mut cur).map_err(|f| f.at(path, FORMAT, len))
}

struct Cursor<R> {
    r: BufReader<R>,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Cursor<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn need(&self, n: u64) -> Result<(), Fail> {
        if n > self.remaining() {
            Err(Fail::Truncated {
                offset: self.pos,
                needed: n,
            })
        } else {
            Ok(())
        }
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Fail> {
        let n = buf.len() as u64;
        self.need(n)?;
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Fail::Truncated {
                    offset: self.pos,
                    needed: n,
                }
            } else {
                Fail::Io(e)
            }
        })?;
        self.pos += n;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Fail> {
        let mut b = [0u8; N];
        self.fill(&mut b)?;
        Ok(b)
    }

    /// Goes back (or on) to `pos`, a position already read past or within the file.
    fn seek_to(&mut self, pos: u64) -> Result<(), Fail> {
        let delta = i64::try_from(pos).map_err(|_| Fail::Malformed("offset too large".into()))?
            - i64::try_from(self.pos).map_err(|_| Fail::Malformed("offset too large".into()))?;
        self.r.seek_relative(delta).map_err(Fail::Io)?;
        self.pos = pos;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, Fail> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Fail> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn skip(&mut self, n: u64) -> Result<(), Fail> {
        self.need(n)?;
        // n <= len - pos, and a file is never longer than i64::MAX, so this cannot wrap.
        let step = i64::try_from(n).map_err(|_| Fail::Malformed("offset overflow".into()))?;
        self.r.seek_relative(step)?;
        self.pos += n;
        Ok(())
    }

    /// A string's length, checked against the limit and the file.
    fn string_len(&mut self, what: &str) -> Result<u64, Fail> {
        let at = self.pos;
        let n = self.u64()?;
        if n > MAX_STRING_BYTES {
            return Err(Fail::Malformed(format!(
                "{what} at offset {at} declares {n} bytes, more than the {MAX_STRING_BYTES} accepted"
            )));
        }
        self.need(n)?;
        Ok(n)
    }

    fn string(&mut self, what: &str) -> Result<Vec<u8>, Fail> {
        let n = self.string_len(what)?;
        let mut buf = vec![0u8; n as usize]; // bounded by MAX_STRING_BYTES and the file
        self.fill(&mut buf)?;
        Ok(buf)
    }

    fn skip_string(&mut self, what: &str) -> Result<(), Fail> {
        let n = self.string_len(what)?;
        self.skip(n)
    }
}

/// Byte size of a fixed-size value type.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        T_UINT8 | T_INT8 | T_BOOL => Some(1),
        T_UINT16 | T_INT16 => Some(2),
        T_UINT32 | T_INT32 | T_FLOAT32 => Some(4),
        T_UINT64 | T_INT64 | T_FLOAT64 => Some(8),
        _ => None,
    }
}

fn skip_value<R: Read + Seek>(cur: &mut Cursor<R>, ty: u32, depth: u32) -> Result<(), Fail> {
    if let Some(n) = fixed_size(ty) {
        return cur.skip(n);
    }
    match ty {
        T_STRING => cur.skip_string("a string value"),
        T_ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(Fail::Malformed(format!(
                    "arrays nested deeper than {MAX_ARRAY_DEPTH} at offset {}",
                    cur.pos
                )));
            }
            let at = cur.pos;
            let elem = cur.u32()?;
            let n = cur.u64()?;
            if n > MAX_GGUF_ARRAY_LEN {
                return Err(Fail::Malformed(format!(
                    "array at offset {at} declares {n} elements, more than the \
                     {MAX_GGUF_ARRAY_LEN} accepted"
                )));
            }
            let min_elem = match elem {
                T_STRING => 8,
                T_ARRAY => 12,
                t => fixed_size(t).ok_or_else(|| {
                    Fail::Malformed(format!("array at offset {at} has unknown element type {t}"))
                })?,
            };
            let min_total = n
                .checked_mul(min_elem)
                .ok_or_else(|| Fail::Malformed(format!("array at offset {at} is too large")))?;
            if min_total > cur.remaining() {
                return Err(Fail::Malformed(format!(
                    "array at offset {at} declares {n} elements, which cannot fit in the \
                     {} bytes left in the file",
                    cur.remaining()
                )));
            }
            match elem {
                T_STRING => (0..n).try_for_each(|_| cur.skip_string("a string in an array")),
                T_ARRAY => (0..n).try_for_each(|_| skip_value(cur, T_ARRAY, depth + 1)),
                _ => cur.skip(min_total),
            }
        }
        t => Err(Fail::Malformed(format!(
            "unknown value type {t} at offset {}",
            cur.pos
        ))),
    }
}

/// Reads an integer value of any integer type; other types are skipped and give `None`.
fn read_uint<R: Read + Seek>(cur: &mut Cursor<R>, ty: u32) -> Result<Option<u64>, Fail> {
    Ok(match ty {
        T_UINT8 => Some(u64::from(cur.array::<1>()?[0])),
        T_INT8 => u64::try_from(i8::from_le_bytes(cur.array()?)).ok(),
        T_UINT16 => Some(u64::from(u16::from_le_bytes(cur.array()?))),
        T_INT16 => u64::try_from(i16::from_le_bytes(cur.array()?)).ok(),
        T_UINT32 => Some(u64::from(cur.u32()?)),
        T_INT32 => u64::try_from(i32::from_le_bytes(cur.array()?)).ok(),
        T_UINT64 => Some(cur.u64()?),
        T_INT64 => u64::try_from(i64::from_le_bytes(cur.array()?)).ok(),
        _ => {
            skip_value(cur, ty, 0)?;
            None
        }
    })
}

fn parse<R: Read + Seek>(cur: &mut Cursor<R>) -> Result<ModelMetadata, Fail> {
    let magic: [u8; 4] = cur
        .array()
        .map_err(|_| Fail::WrongFormat("shorter than the 4-byte magic".into()))?;
    if &magic != b"GGUF" {
        return Err(Fail::WrongFormat(format!(
            "magic is {magic:02x?}, not \"GGUF\""
        )));
    }
    let version = cur.u32()?;
    match version {
        2 | 3 => {}
        v if matches!(v.swap_bytes(), 2 | 3) => {
            return Err(Fail::Malformed(
                "big-endian GGUF files are not supported".into(),
            ));
        }
        v => return Err(Fail::Version(v)),
    }
    let tensor_count = cur.u64()?;
    let kv_count = cur.u64()?;
    if kv_count > MAX_GGUF_KV_COUNT {
        return Err(Fail::Malformed(format!(
            "kv_count {kv_count} is more than the {MAX_GGUF_KV_COUNT} accepted"
        )));
    }
    if tensor_count > MAX_GGUF_TENSOR_COUNT {
        return Err(Fail::Malformed(format!(
            "tensor_count {tensor_count} is more than the {MAX_GGUF_TENSOR_COUNT} accepted"
        )));
    }
    // Both are bounded above, so these products cannot overflow.
    let min_bytes = kv_count * MIN_KV_BYTES + tensor_count * MIN_TENSOR_BYTES;
    if min_bytes > cur.remaining() {
        return Err(Fail::Malformed(format!(
            "{kv_count} key/value pairs and {tensor_count} tensors cannot fit in the {} bytes \
             left in the file",
            cur.remaining()
        )));
    }

    let mut architecture: Option<String> = None;
    let mut file_type: Option<u64> = None;
    // (architecture prefix, which of ARCH_KEYS, per-layer values: one for a scalar).
    let mut arch_values: Vec<(Vec<u8>, usize, Vec<u64>)> = Vec::new();
    for _ in 0..kv_count {
        let key = cur.string("a key")?;
        let ty = cur.u32()?;
        match key.as_slice() {
            b"general.architecture" if ty == T_STRING => {
                let v = cur.string("general.architecture")?;
                architecture = Some(String::from_utf8_lossy(&v).into_owned());
            }
            b"general.file_type" => file_type = read_uint(cur, ty)?,
            k if let Some((prefix, which)) = arch_key(k) => {
                let prefix = prefix.to_vec();
                if let Some(v) = read_uints(cur, ty)?
                    && arch_values.len() < MAX_ARCH_CANDIDATES
                {
                    arch_values.push((prefix, which, v));
                }
            }
            _ => skip_value(cur, ty, 0)?,
        }
    }

    let mut params: u64 = 0;
    let mut by_type: BTreeMap<u32, u64> = BTreeMap::new(); // at most MAX_TENSOR_TYPE + 1 keys
    for _ in 0..tensor_count {
        let at = cur.pos;
        cur.skip_string("a tensor name")?;
        let n_dims = cur.u32()?;
        if n_dims > MAX_GGUF_DIMS {
            return Err(Fail::Malformed(format!(
                "tensor at offset {at} has {n_dims} dimensions, more than the {MAX_GGUF_DIMS} \
                 accepted"
            )));
        }
        let mut elems: u64 = 1;
        for _ in 0..n_dims {
            let d = cur.u64()?;
            elems = elems.checked_mul(d).ok_or_else(|| {
                Fail::Malformed(format!("tensor at offset {at}: element count overflows"))
            })?;
        }
        let ty = cur.u32()?;
        if ty > MAX_TENSOR_TYPE {
            return Err(Fail::Malformed(format!(
                "tensor at offset {at} has unknown type {ty}"
            )));
        }
        cur.skip(8)?; // data offset
        params = params
            .checked_add(elems)
            .ok_or_else(|| Fail::Malformed("the total parameter count overflows".into()))?;
        let e = by_type.entry(ty).or_insert(0);
        *e = e.saturating_add(elems);
    }

    let arch_value = |which: usize| -> Option<&[u64]> {
        let a = architecture.as_ref()?;
        arch_values
            .iter()
            .find(|(p, w, _)| p.as_slice() == a.as_bytes() && *w == which)
            .map(|(_, _, v)| v.as_slice())
    };
    let context_length = arch_value(0).and_then(|v| v.first().copied());
    let kv_bytes_per_token = kv_bytes_per_token(&arch_value);
    let quantization = match file_type {
        Some(t) => Some(ftype_name(t)),
        None => dominant_type(&by_type).map(ggml_type_name),
    };
    let mut dtypes: Vec<String> = by_type.keys().map(|&t| ggml_type_name(t)).collect();
    dtypes.sort();
    dtypes.dedup();
    Ok(ModelMetadata {
        architecture,
        parameter_count: Some(params),
        quantization,
        context_length,
        dtypes,
        kv_bytes_per_token,
    })
}

/// Which hyperparameter a key is: (`<arch>` prefix, index into [`ARCH_KEYS`]).
fn arch_key(k: &[u8]) -> Option<(&[u8], usize)> {
    ARCH_KEYS.iter().enumerate().find_map(|(i, name)| {
        let prefix = k.strip_suffix(name.as_bytes())?.strip_suffix(b".")?;
        (!prefix.is_empty() && !prefix.contains(&b'.')).then_some((prefix, i))
    })
}

/// Bytes of K and V cache per token of context, f16 (llama.cpp's default cache type), as
/// llama.cpp sizes it (`llama_kv_cache` with `n_embd_k_gqa(il) = n_embd_head_k *
/// n_head_kv(il)`, likewise V): the sum over layers of `n_head_kv(il) × (key_length +
/// value_length) × 2`. `key_length` and `value_length` default to `embedding_length /
/// head_count`, `head_count_kv` to `head_count` (`llama_model::load_hparams`); a
/// per-layer array is summed as it stands, a single value counts for every layer. `None`
/// when the header lacks what it takes (or a layer's value is 0 for every layer).
fn kv_bytes_per_token<'a>(get: &dyn Fn(usize) -> Option<&'a [u64]>) -> Option<u64> {
    let one = |i: usize| get(i).and_then(|v| v.first().copied()).filter(|&v| v > 0);
    let layers = one(1)?;
    let heads = get(3)?;
    let head_dim = || one(2)?.checked_div(*heads.first()?).filter(|&d| d > 0);
    let k = one(5).or_else(head_dim)?;
    let v = one(6).or_else(head_dim)?;
    let kv_heads_total: u64 = match get(4).or(Some(heads)) {
        Some([single]) => single.checked_mul(layers)?,
        Some(per_layer) => per_layer.iter().try_fold(0u64, |a, &h| a.checked_add(h))?,
        None => return None,
    };
    kv_heads_total
        .checked_mul(k.checked_add(v)?)?
        .checked_mul(2)
        .filter(|&b| b > 0)
}

/// An integer value, or an array of integers (at most [`MAX_LAYER_ARRAY`]), as a list;
/// other values are skipped and give `None`.
fn read_uints<R: Read + Seek>(cur: &mut Cursor<R>, ty: u32) -> Result<Option<Vec<u64>>, Fail> {
    if ty != T_ARRAY {
        return Ok(read_uint(cur, ty)?.map(|v| vec![v]));
    }
    let start = cur.pos;
    let elem = cur.u32()?;
    let n = cur.u64()?;
    let size = fixed_size(elem).filter(|_| is_integer(elem) && n <= MAX_LAYER_ARRAY);
    let Some(size) = size else {
        // Not a short integer array: back to its start and skip it whole.
        cur.seek_to(start)?;
        skip_value(cur, T_ARRAY, 0)?;
        return Ok(None);
    };
    cur.need(n * size)?;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        out.push(read_uint(cur, elem)?.unwrap_or(0));
    }
    Ok(Some(out))
}

fn is_integer(t: u32) -> bool {
    matches!(
        t,
        T_UINT8 | T_INT8 | T_UINT16 | T_INT16 | T_UINT32 | T_INT32 | T_UINT64 | T_INT64
    )
}

/// The tensor type holding the most elements; F32 (norms, biases) only when nothing else is.
fn dominant_type(by_type: &BTreeMap<u32, u64>) -> Option<u32> {
    let best = |skip_f32: bool| {
        by_type
            .iter()
            .filter(|(t, _)| !(skip_f32 && **t == 0))
            .max_by_key(|(t, n)| (**n, std::cmp::Reverse(**t)))
            .map(|(t, _)| *t)
    };
    best(true).or_else(|| best(false))
}
