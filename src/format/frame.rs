//! FORMAT.md §3.1: the zstd frames arc accepts, for blocks and for the index.
//!
//! zstd's one-call decoder is lenient: it decodes concatenated frames, skips skippable ones,
//! and takes any window. arc's format is not: a block or the index is exactly one zstd frame
//! (RFC 8878 §3.1.1), with its content size declared and equal to what the index or trailer
//! says, a content checksum, no dictionary, and a window of at most 2^27 bytes. These checks
//! read only the frame header and the block headers (to find where the frame ends), so they
//! cost nothing next to decompression, and nothing can ride along in a frame unseen.

use super::MAX_WINDOW_LOG;

/// RFC 8878 §3.1.1: a zstd frame starts with these bytes.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What a frame header says (RFC 8878 §3.1.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes the decoder must keep as history.
    pub window_size: u64,
    /// Decompressed size, when declared.
    pub content_size: Option<u64>,
    pub checksum: bool,
    /// A dictionary ID field is present (even if it is zero).
    pub dictionary: bool,
    /// Bytes of the header: where the first block starts.
    pub len: usize,
}

/// Parses the header of the zstd frame at the start of `frame`.
pub fn parse_header(frame: &[u8]) -> Result<FrameHeader, String> {
    if frame.len() < 5 || frame[..4] != ZSTD_MAGIC {
        return Err("not a zstd frame".to_owned());
    }
    let descriptor = frame[4];
    let fcs_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    if descriptor & 0x08 != 0 {
        return Err("zstd frame header has its reserved bit set".to_owned());
    }
    let checksum = descriptor & 0x04 != 0;
    let dict_len = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
    let fcs_len = match (fcs_flag, single_segment) {
        (0, false) => 0,
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    let mut at = 5;
    let mut window_size = None;
    if !single_segment {
        let descriptor = *frame.get(at).ok_or("zstd frame header is cut short")?;
        at += 1;
        let log = 10 + u32::from(descriptor >> 3);
        let base = 1u64 << log;
        window_size = Some(base + (base / 8) * u64::from(descriptor & 0x07));
    }
    at += dict_len;
    let field = frame.get(at..at + fcs_len).ok_or("zstd frame header is cut short")?;
    let mut bytes = [0u8; 8];
    bytes[..fcs_len].copy_from_slice(field);
    let value = u64::from_le_bytes(bytes);
    let content_size = match fcs_len {
        0 => None,
        2 => Some(value + 256),
        _ => Some(value),
    };
    // A single-segment frame's window is its content.
    let window_size = window_size.or(content_size).unwrap_or(0);
    Ok(FrameHeader { window_size, content_size, checksum, dictionary: dict_len > 0, len: at + fcs_len })
}

/// Where the zstd block whose header starts at byte `at` of `frame` ends (RFC 8878
/// §3.1.1.2: a 3-byte header, then the block's size in bytes, or one byte for a run of one
/// byte); the frame's end if it is cut short there.
pub fn block_end(frame: &[u8], at: usize) -> usize {
    let Some(&[a, b, c]) = frame.get(at..at + 3).and_then(|h| h.first_chunk::<3>()) else {
        return frame.len();
    };
    let header = u32::from_le_bytes([a, b, c, 0]);
    let stored = match (header >> 1) & 3 {
        1 => 1,
        _ => (header >> 3) as usize,
    };
    (at + 3).saturating_add(stored).min(frame.len())
}

/// Whether `raw`, all a frame holds, has the XXH64 the frame ends with (its content checksum,
/// RFC 8878 §3.1.1: the low 32 bits, little-endian).
pub fn checksum_matches(frame: &[u8], raw: &[u8]) -> bool {
    let Some(stored) = frame.len().checked_sub(4).and_then(|at| frame[at..].first_chunk::<4>()) else {
        return false;
    };
    xxhash_rust::xxh64::xxh64(raw, 0) as u32 == u32::from_le_bytes(*stored)
}

/// Checks that `frame` is exactly one zstd frame as FORMAT.md §3.1 allows, decompressing to
/// `raw_len` bytes as `declared_by` (the index, the trailer) says, and gives its header. The
/// error says what is wrong, for a message that names the block or the index.
pub fn check(frame: &[u8], raw_len: u64, declared_by: &str) -> Result<FrameHeader, String> {
    let header = parse_header(frame)?;
    if header.window_size > 1 << MAX_WINDOW_LOG {
        return Err(format!(
            "zstd window of {} bytes is over the limit of {} bytes",
            header.window_size,
            1u64 << MAX_WINDOW_LOG
        ));
    }
    if header.dictionary {
        return Err("zstd frame names a dictionary".to_owned());
    }
    if !header.checksum {
        return Err("zstd frame has no content checksum".to_owned());
    }
    match header.content_size {
        None => return Err("zstd frame does not declare its size".to_owned()),
        Some(size) if size != raw_len => {
            return Err(format!("zstd frame declares {size} bytes, {declared_by} says {raw_len}"))
        }
        Some(_) => {}
    }
    match zstd::zstd_safe::find_frame_compressed_size(frame) {
        Ok(len) if len == frame.len() => Ok(header),
        Ok(len) => Err(format!("{} bytes follow the zstd frame", frame.len() - len)),
        Err(code) => Err(format!("zstd frame is damaged: {}", zstd::zstd_safe::get_error_name(code))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(data: &[u8], checksum: bool, content_size: bool) -> Vec<u8> {
        let mut compressor = zstd::bulk::Compressor::new(3).expect("compressor");
        compressor.include_checksum(checksum).expect("checksum flag");
        compressor.include_contentsize(content_size).expect("content size flag");
        compressor.compress(data).expect("compress")
    }

    #[test]
    fn accepts_what_arc_writes() {
        for len in [0, 1, 255, 256, 257, 65_791, 65_792, 1 << 20] {
            let data = vec![7u8; len];
            let f = frame(&data, true, true);
            let header = parse_header(&f).expect("header");
            assert_eq!(header.content_size, Some(len as u64), "{len}");
            assert!(header.checksum && !header.dictionary);
            assert_eq!(
                check(&f, len as u64, "the index").map(|h| h.content_size),
                Ok(Some(len as u64)),
                "{len}"
            );
        }
    }

    #[test]
    fn refuses_what_the_format_does_not_allow() {
        let data = b"some data, some data, some data".to_vec();
        let good = frame(&data, true, true);
        let len = data.len() as u64;
        assert!(check(&good, len + 1, "the index").expect_err("size").contains("declares"));
        assert!(check(&frame(&data, false, true), len, "the index")
            .expect_err("checksum")
            .contains("checksum"));
        assert!(check(&frame(&data, true, false), len, "the index").expect_err("size").contains("declare"));
        // Two frames, or a frame and garbage.
        let two = [good.clone(), good.clone()].concat();
        assert!(check(&two, len, "the index").expect_err("two").contains("follow"));
        // A skippable frame first.
        let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
        skippable.extend_from_slice(&good);
        assert!(check(&skippable, len, "the index").expect_err("skippable").contains("not a zstd frame"));
        // The reserved bit, and a dictionary ID field.
        let mut reserved = good.clone();
        reserved[4] |= 0x08;
        assert!(check(&reserved, len, "the index").expect_err("reserved").contains("reserved"));
        assert!(check(&good[..good.len() - 1], len, "the index").expect_err("cut").contains("damaged"));
    }

    #[test]
    fn window_descriptor_is_decoded() {
        // Not single-segment, window descriptor exponent 18 (2^28), mantissa 0, no size.
        let header = parse_header(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 18 << 3]).expect("header");
        assert_eq!(header.window_size, 1 << 28);
        assert_eq!(header.content_size, None);
        let err =
            check(&[0x28, 0xb5, 0x2f, 0xfd, 0x04 | 0xc0, 18 << 3, 1, 0, 0, 0, 0, 0, 0, 0], 1, "the index");
        assert!(err.expect_err("window").contains("window"));
        // Exponent 17 with mantissa 1: 2^27 + 2^24, just over the limit.
        let header = parse_header(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, (17 << 3) | 1]).expect("header");
        assert_eq!(header.window_size, (1 << 27) + (1 << 24));
        // A dictionary ID of two bytes before a two-byte content size (stored minus 256).
        let header = parse_header(&[0x28, 0xb5, 0x2f, 0xfd, 0x40 | 0x20 | 0x02, 9, 0, 4, 1]).expect("header");
        assert!(header.dictionary);
        assert_eq!(header.content_size, Some(256 + 0x104));
    }
}
