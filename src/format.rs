//! The on-disk format, version 1: constants and one encode/decode function per record.
//!
//! This module owns every byte layout of an archive; docs/FORMAT.md is its specification and
//! names the same records. Nothing here touches the filesystem or threads: callers hand in
//! bytes and get typed records back, so the parsers can be unit-tested and fuzzed alone.
//!
//! An archive is `Header | Block* | Index | Trailer` (FORMAT.md §1).
//!
//! Invariant: every function that decodes untrusted bytes returns a [`FormatError`] for any
//! input, never panics, and never allocates more than the caps below allow.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// FORMAT.md §2: the first eight bytes of every archive. Like PNG's, the magic has a high-bit
/// byte and CR LF / LF so that text-mode transfers that mangle bytes are caught at once.
pub const MAGIC: [u8; 8] = *b"\x89ARC\r\n\x1a\n";
/// FORMAT.md §5: the last eight bytes of every archive.
pub const TRAILER_MAGIC: [u8; 8] = *b"\x89ARCIDX\n";
/// The format version this build writes and the newest it reads.
pub const VERSION: u16 = 1;
pub const HEADER_LEN: u64 = 16;
pub const TRAILER_LEN: u64 = 32;

/// Uncompressed bytes per block, by default. Small enough that two cores get many blocks to share on
/// modest trees and that one file comes out without decompressing much else; large enough
/// that zstd's ratio is within a percent of compressing the whole stream.
pub const BLOCK_SIZE: usize = 4 << 20;
/// The range `--block-size` accepts. Larger blocks compress a little better (each block
/// starts with an empty history) at the cost of memory and of selective-read latency.
pub const MIN_BLOCK_SIZE: u64 = 64 << 10;

/// Caps on numbers read from an archive (FORMAT.md §6). A writer never comes near them; a
/// reader refuses anything above them before allocating.
pub const MAX_BLOCK_RAW: u64 = 64 << 20;
/// zstd's worst case for MAX_BLOCK_RAW bytes is a little over them (ZSTD_compressBound).
pub const MAX_BLOCK_LEN: u64 = MAX_BLOCK_RAW + (MAX_BLOCK_RAW >> 7) + (1 << 10);
pub const MAX_INDEX_LEN: u64 = 1 << 30;
pub const MAX_INDEX_RAW: u64 = 4 << 30;
/// Beyond this size, the CBOR index may be at most MAX_INDEX_RATIO times its compressed frame.
/// Real indexes compress 10-30:1; the cap keeps a few kilobytes of hostile index (one huge
/// name or `kinds` string, which no column count limits) from expanding into gigabytes.
pub const INDEX_RATIO_FLOOR: u64 = 64 << 20;
pub const MAX_INDEX_RATIO: u64 = 1024;
pub const MAX_ENTRIES: usize = 1 << 24;
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_TARGET_LEN: usize = 4095;
pub const MAX_DEPTH: u32 = 1024;
/// zstd's decoder refuses frames whose window is larger than this (2^27 = 128 MiB, zstd's own
/// default limit), so a hostile frame cannot make the decoder allocate gigabytes.
pub const MAX_WINDOW_LOG: u32 = 27;

/// What is wrong with bytes that claim to be an archive. Typed so that tests and callers can
/// tell "not an archive" from "damaged archive".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not an arc archive")]
    NotArc,
    #[error("made by a newer arc (format {0}); this arc reads format {VERSION}")]
    NewerVersion(u16),
    #[error("truncated archive ({0})")]
    Truncated(&'static str),
    #[error("corrupt archive: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, FormatError>;

pub fn corrupt(what: impl Into<String>) -> FormatError {
    FormatError::Corrupt(what.into())
}

/// FORMAT.md §2. The header: magic, version, six zero bytes.
pub fn encode_header() -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..10].copy_from_slice(&VERSION.to_le_bytes());
    header
}

pub fn decode_header(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || bytes[..8] != MAGIC {
        return Err(FormatError::NotArc);
    }
    if bytes.len() < HEADER_LEN as usize {
        return Err(FormatError::Truncated("header"));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version > VERSION {
        return Err(FormatError::NewerVersion(version));
    }
    if version != VERSION {
        return Err(corrupt(format!("unknown format version {version}")));
    }
    if bytes[10..16].iter().any(|&b| b != 0) {
        return Err(corrupt("reserved header bytes are not zero"));
    }
    Ok(())
}

/// FORMAT.md §5. The trailer, the last 32 bytes: where the index is and how to check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Length of the compressed index frame, which ends where the trailer starts.
    pub index_len: u64,
    /// Length of the CBOR index once decompressed.
    pub index_raw_len: u64,
    /// XXH3-64 of the compressed index frame followed by the trailer's first 16 bytes.
    pub index_hash: u64,
}

impl Trailer {
    pub fn new(index_frame: &[u8], index_raw_len: u64) -> Trailer {
        let index_len = index_frame.len() as u64;
        let index_hash = index_hash(index_frame, index_len, index_raw_len);
        Trailer { index_len, index_raw_len, index_hash }
    }

    pub fn encode(&self) -> [u8; TRAILER_LEN as usize] {
        let mut out = [0u8; TRAILER_LEN as usize];
        out[0..8].copy_from_slice(&self.index_len.to_le_bytes());
        out[8..16].copy_from_slice(&self.index_raw_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.index_hash.to_le_bytes());
        out[24..32].copy_from_slice(&TRAILER_MAGIC);
        out
    }

    /// Decodes the trailer and checks its numbers against the archive's length and the caps.
    pub fn decode(bytes: &[u8; TRAILER_LEN as usize], archive_len: u64) -> Result<Trailer> {
        if bytes[24..32] != TRAILER_MAGIC {
            return Err(FormatError::Truncated("no index trailer at the end"));
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let trailer = Trailer { index_len: word(0), index_raw_len: word(8), index_hash: word(16) };
        if trailer.index_len == 0 || trailer.index_len > MAX_INDEX_LEN {
            return Err(corrupt(format!("index length {} out of range", trailer.index_len)));
        }
        if trailer.index_raw_len > MAX_INDEX_RAW {
            return Err(corrupt(format!("index size {} out of range", trailer.index_raw_len)));
        }
        if trailer.index_raw_len > INDEX_RATIO_FLOOR
            && trailer.index_raw_len / trailer.index_len > MAX_INDEX_RATIO
        {
            return Err(corrupt(format!(
                "index claims to expand {} times (at most {MAX_INDEX_RATIO})",
                trailer.index_raw_len / trailer.index_len
            )));
        }
        let room = archive_len.saturating_sub(HEADER_LEN + TRAILER_LEN);
        if trailer.index_len > room {
            return Err(corrupt("index length larger than the archive"));
        }
        Ok(trailer)
    }

    /// Offset of the index frame, which is also where the block region ends.
    pub fn index_offset(&self, archive_len: u64) -> u64 {
        archive_len - TRAILER_LEN - self.index_len
    }

    pub fn check(&self, index_frame: &[u8]) -> Result<()> {
        if index_hash(index_frame, self.index_len, self.index_raw_len) != self.index_hash {
            return Err(corrupt("index checksum mismatch"));
        }
        Ok(())
    }
}

fn index_hash(frame: &[u8], index_len: u64, index_raw_len: u64) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(frame);
    hasher.update(&index_len.to_le_bytes());
    hasher.update(&index_raw_len.to_le_bytes());
    hasher.digest()
}

/// FORMAT.md §3: a block's checksum covers its compressed bytes, so damage is found before
/// the decoder sees it, including the few frame-header bits zstd's own checksum misses.
pub fn block_hash(frame: &[u8]) -> u64 {
    xxh3_64(frame)
}

/// Entry kinds as stored in the index's `kinds` byte string (FORMAT.md §4).
pub const KIND_DIR: u8 = 0;
pub const KIND_FILE: u8 = 1;
pub const KIND_SYMLINK: u8 = 2;

/// FORMAT.md §4: the index as it is serialized, column by column. This struct is the
/// compatibility boundary: changing a field changes the format. Code elsewhere uses
/// [`crate::index::Index`], built from this by [`crate::index::Index::from_record`].
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
    /// [`block_hash`] of the frame.
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
    let record = ciborium::from_reader(&mut cbor).map_err(|e| index_error(&e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_errors() {
        let header = encode_header();
        assert_eq!(decode_header(&header), Ok(()));
        assert_eq!(decode_header(b"hello world, not"), Err(FormatError::NotArc));
        assert_eq!(decode_header(&header[..9]), Err(FormatError::Truncated("header")));
        let mut newer = header;
        newer[8] = 2;
        assert_eq!(decode_header(&newer), Err(FormatError::NewerVersion(2)));
        let mut reserved = header;
        reserved[12] = 1;
        assert!(matches!(decode_header(&reserved), Err(FormatError::Corrupt(_))));
    }

    #[test]
    fn trailer_round_trip_and_checks() {
        let frame = b"pretend index frame";
        let trailer = Trailer::new(frame, 99);
        let bytes = trailer.encode();
        let archive_len = HEADER_LEN + frame.len() as u64 + TRAILER_LEN;
        assert_eq!(Trailer::decode(&bytes, archive_len), Ok(trailer));
        assert_eq!(trailer.index_offset(archive_len), HEADER_LEN);
        assert!(trailer.check(frame).is_ok());
        assert!(trailer.check(b"pretend index framf").is_err());
        // An index longer than the file is refused before anything is read.
        assert!(Trailer::decode(&bytes, archive_len - 1).is_err());
        let mut magic = bytes;
        magic[31] ^= 1;
        assert!(Trailer::decode(&magic, archive_len).is_err());
        // A small frame may not claim to expand into gigabytes.
        let bomb = Trailer { index_len: 1000, index_raw_len: INDEX_RATIO_FLOOR + 1, index_hash: 0 }.encode();
        let err = Trailer::decode(&bomb, 1 << 20).expect_err("ratio cap");
        assert!(err.to_string().contains("expand"), "{err}");
        let fine = Trailer { index_len: 1000, index_raw_len: INDEX_RATIO_FLOOR, index_hash: 0 }.encode();
        assert!(Trailer::decode(&fine, 1 << 20).is_ok());
    }

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
}
