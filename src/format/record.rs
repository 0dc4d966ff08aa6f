//! FORMAT.md §4: the index as it is serialized (CBOR, column by column) and compressed.
//!
//! [`IndexRecord`] is the compatibility boundary: changing a field changes the format. Code
//! elsewhere uses [`super::Index`], built from a record by [`super::Index::from_record`].

use serde::{Deserialize, Serialize};

use super::{corrupt, Result, MAX_ENTRIES, MAX_WINDOW_LOG};

/// Entry kinds as stored in the index's `kinds` byte string (FORMAT.md §4).
pub const KIND_DIR: u8 = 0;
pub const KIND_FILE: u8 = 1;
pub const KIND_SYMLINK: u8 = 2;

/// FORMAT.md §4: the index as it is serialized, column by column. This struct is the
/// compatibility boundary: changing a field changes the format. Code elsewhere uses
/// [`super::Index`], built from this by [`super::Index::from_record`].
///
/// Entries are in pre-order (a directory, then its children sorted by name bytes); per-entry
/// columns all have one element per entry, `sizes` one per regular file and `targets` one per
/// symlink. A file's bytes follow those of the file before it in the data stream, so no offset
/// is stored.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexRecord {
    #[serde(deserialize_with = "bounded")]
    pub names: Vec<String>,
    #[serde(deserialize_with = "bounded")]
    pub depths: Vec<u32>,
    #[serde(with = "serde_bytes")]
    pub kinds: Vec<u8>,
    #[serde(deserialize_with = "bounded")]
    pub modes: Vec<u16>,
    #[serde(deserialize_with = "bounded")]
    pub mtime_secs: Vec<i64>,
    #[serde(deserialize_with = "bounded")]
    pub mtime_nanos: Vec<u32>,
    #[serde(deserialize_with = "bounded")]
    pub sizes: Vec<u64>,
    #[serde(deserialize_with = "bounded")]
    pub targets: Vec<String>,
    pub blocks: BlockRecord,
}

/// FORMAT.md §4: the block table, one element per block in archive order.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRecord {
    /// Compressed length: the zstd frame's bytes in the archive.
    #[serde(deserialize_with = "bounded")]
    pub lens: Vec<u64>,
    /// Decompressed length: the block's share of the data stream.
    #[serde(deserialize_with = "bounded")]
    pub raw_lens: Vec<u64>,
    /// [`super::block_hash`] of the frame.
    #[serde(deserialize_with = "bounded")]
    pub hashes: Vec<u64>,
}

/// Deserializes a column, failing as soon as it holds more than [`MAX_ENTRIES`] elements, so
/// that a small index that decompresses into millions of tiny elements is refused before
/// it is built in memory rather than after.
fn bounded<'de, D, T>(deserializer: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Column<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Column<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "an array of at most {MAX_ENTRIES} elements")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<T>, A::Error> {
            // Never trust the declared length beyond a small head start.
            let mut column = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(value) = seq.next_element()? {
                if column.len() == MAX_ENTRIES {
                    return Err(serde::de::Error::custom(format!("more than {MAX_ENTRIES} elements")));
                }
                column.push(value);
            }
            Ok(column)
        }
    }
    deserializer.deserialize_seq(Column(std::marker::PhantomData))
}

/// Serializes and compresses the index. Returns the zstd frame and the CBOR length.
pub fn encode_index(record: &IndexRecord, level: i32) -> std::io::Result<(Vec<u8>, u64)> {
    let mut cbor = Vec::new();
    ciborium::into_writer(record, &mut cbor).map_err(std::io::Error::other)?;
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    compressor.include_checksum(true)?;
    let frame = compressor.compress(&cbor)?;
    Ok((frame, cbor.len() as u64))
}

/// Decompresses and parses the index frame after [`Trailer::check`] passed. The CBOR may not
/// exceed `raw_len`, which the trailer capped; the structure is checked by `Index`.
///
/// The CBOR is parsed as it is decompressed, so garbage fails at its first bad byte instead of
/// after gigabytes of output, and columns stop at [`MAX_ENTRIES`] elements.
pub fn decode_index(frame: &[u8], raw_len: u64) -> Result<IndexRecord> {
    use std::io::Read;
    let index_error = |e: &dyn std::fmt::Display| corrupt(format!("index: {e}"));
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| index_error(&e))?;
    decoder.window_log_max(MAX_WINDOW_LOG).map_err(|e| index_error(&e))?;
    let mut cbor = std::io::BufReader::new(decoder.single_frame().take(raw_len.saturating_add(1)));
    let record = ciborium::from_reader(&mut cbor).map_err(|e| index_error(&cbor_error(e)))?;
    // What the parser did not consume must be nothing, and the total exactly raw_len.
    let consumed = raw_len.saturating_add(1) - cbor.get_ref().limit() - cbor.buffer().len() as u64;
    let rest = std::io::copy(&mut cbor, &mut std::io::sink()).map_err(|e| index_error(&e))?;
    if consumed != raw_len || rest != 0 {
        let total = consumed + rest;
        let more = if total > raw_len { "+" } else { "" };
        return Err(index_error(&format!("expands to {total}{more} bytes, trailer says {raw_len}")));
    }
    Ok(record)
}

/// A CBOR decoding error in words: ciborium's own Display is its Debug form
/// (`Syntax(1)`, `Io(Error { kind: UnexpectedEof, .. })`), which is not for people.
fn cbor_error(error: ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error;
    match error {
        Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => "index ends early".to_owned(),
        // The decompressor's errors (a damaged frame) come through the reader.
        Error::Io(e) => e.to_string(),
        Error::Syntax(at) => format!("malformed CBOR at byte {at}"),
        Error::Semantic(Some(at), message) => format!("{message} (at byte {at})"),
        Error::Semantic(None, message) => message,
        Error::RecursionLimitExceeded => "CBOR nested too deeply".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FormatError;

    #[test]
    fn index_round_trip() {
        let record = IndexRecord {
            names: vec!["root".into(), "a".into()],
            depths: vec![0, 1],
            kinds: vec![KIND_DIR, KIND_FILE],
            modes: vec![0o755, 0o644],
            mtime_secs: vec![1, -2],
            mtime_nanos: vec![3, 999_999_999],
            sizes: vec![5],
            targets: vec![],
            blocks: BlockRecord { lens: vec![14], raw_lens: vec![5], hashes: vec![7] },
        };
        let (frame, raw_len) = encode_index(&record, 3).expect("encode");
        assert_eq!(decode_index(&frame, raw_len), Ok(record));
        assert!(decode_index(&frame, raw_len - 1).is_err());
        assert!(decode_index(&frame, raw_len + 1).is_err());
    }

    #[test]
    fn index_bombs_fail_early() {
        // 64 MiB of zeros in a tiny frame: not CBOR of an index, refused at the first byte
        // whatever the trailer claims, without decompressing the rest.
        let zeros = vec![0u8; 64 << 20];
        let frame = zstd::bulk::compress(&zeros, 3).expect("compress");
        assert!(frame.len() < 10_000);
        assert!(matches!(decode_index(&frame, 64 << 20), Err(FormatError::Corrupt(_))));
        // A valid index followed by more bytes than the trailer says is refused too.
        let (frame, raw_len) = encode_index(&IndexRecord::default(), 3).expect("encode");
        assert!(decode_index(&frame, raw_len).is_ok());
        assert!(decode_index(&frame, raw_len + 5).is_err());
    }

    #[test]
    fn cbor_errors_are_words() {
        let words = |cbor: &[u8]| {
            let frame = zstd::bulk::compress(cbor, 3).expect("compress");
            match decode_index(&frame, cbor.len() as u64) {
                Err(FormatError::Corrupt(why)) => why,
                other => panic!("expected corrupt, got {other:?}"),
            }
        };
        // A map of one entry whose key never comes.
        assert_eq!(words(&[0xa1]), "index: index ends early");
        // 0x1c is a reserved additional-information value: not CBOR at all.
        assert_eq!(words(&[0x1c]), "index: malformed CBOR at byte 0");
        // An integer where the map of columns should be.
        let why = words(&[0x05]);
        assert!(why.starts_with("index: invalid type: integer `5`, expected"), "{why}");
        for why in [words(&[0xa1]), words(&[0x1c]), why] {
            assert!(!why.contains("Error {") && !why.contains("Syntax("), "{why}");
        }
    }
}
