//! Listings as pretty JSON on standard output, the rows serialized on all cores: the same
//! bytes `serde_json::to_writer_pretty` writes for the whole array, made in chunks (a
//! chunk's own array, less its brackets, is exactly its part of the whole one).

use std::io::{self, Write};

use rayon::prelude::*;
use serde::Serialize;

/// Rows per chunk; fewer rows in all are written in one piece.
const CHUNK_ROWS: usize = 1_024;

/// Writes `rows` as a pretty JSON array, as `serde_json::to_writer_pretty` does.
pub fn write_pretty_array<T: Serialize + Sync>(out: &mut impl Write, rows: &[T]) -> io::Result<()> {
    if rows.len() <= CHUNK_ROWS {
        return serde_json::to_writer_pretty(&mut *out, rows).map_err(io::Error::from);
    }
    let chunks: Vec<Vec<u8>> = rows
        .par_chunks(CHUNK_ROWS)
        .map(serde_json::to_vec_pretty)
        .collect::<Result<_, _>>()
        .map_err(io::Error::from)?;
    out.write_all(b"[\n")?;
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            out.write_all(b",\n")?;
        }
        // "[\n" + rows + "\n]": the rows, indented as inside the whole array.
        out.write_all(&chunk[2..chunk.len() - 2])?;
    }
    out.write_all(b"\n]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        id: String,
        tags: Vec<&'static str>,
        size: Option<u64>,
        nested: Option<Vec<u8>>,
    }

    /// Byte for byte what serde_json writes, at every size around the chunk boundaries.
    #[test]
    fn the_same_bytes_as_serde_json() {
        for n in [0, 1, 2, CHUNK_ROWS, CHUNK_ROWS + 1, 3 * CHUNK_ROWS + 7] {
            let rows: Vec<Row> = (0..n)
                .map(|i| Row {
                    id: format!("model-{i} \"quoted\""),
                    tags: vec!["chat", "text-generation"][..i % 3].to_vec(),
                    size: (i % 2 == 0).then_some(i as u64),
                    nested: (i % 5 == 0).then(|| vec![1, 2]),
                })
                .collect();
            let mut ours = Vec::new();
            write_pretty_array(&mut ours, &rows).unwrap();
            let theirs = serde_json::to_vec_pretty(&rows).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(theirs).unwrap(),
                "{n} rows"
            );
        }
    }
}
