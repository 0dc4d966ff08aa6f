//! FORMAT.md §3: a block, one zstd frame of the data stream, and its checksum.

use xxhash_rust::xxh3::xxh3_64;

use super::{corrupt, frame, Block, FormatError, MAX_WINDOW_LOG};

/// FORMAT.md §3: a block's checksum covers its compressed bytes, so damage is found before
/// the decoder sees it, including the few frame-header bits zstd's own checksum misses.
pub fn block_hash(frame: &[u8]) -> u64 {
    xxh3_64(frame)
}

/// Checks a block's frame against the index and FORMAT.md §3.1 and decompresses it into
/// `out`, which ends up exactly `raw_len` bytes long. Errors name the block by its offset in
/// the archive.
pub fn decode_block(block: &Block, frame: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    decode_block_start(block, frame, out, block.raw_len as usize)
}

/// The same, stopping once the first `wanted` bytes are out (a little more, never less, and
/// all of them when `wanted` is the block's length): what a read of a few files of a block
/// needs. The frame's XXH3 is checked all the same, but what lies after the bytes wanted is
/// not decompressed, so a block whose end does not decode, or whose zstd checksum is wrong,
/// is found only by a read that decodes it to its end and by `verify`.
pub fn decode_block_start(
    block: &Block,
    frame: &[u8],
    out: &mut Vec<u8>,
    wanted: usize,
) -> Result<(), FormatError> {
    if block_hash(frame) != block.hash {
        return Err(corrupt(format!("block at byte {}: checksum mismatch", block.offset)));
    }
    frame::check(frame, block.raw_len, "the index")
        .map_err(|why| corrupt(format!("block at byte {}: {why}", block.offset)))?;
    let result = match wanted as u64 >= block.raw_len {
        true => decode_whole(frame, block.raw_len as usize, out),
        false => decode_start(frame, block.raw_len as usize, wanted, out),
    };
    match result {
        Ok(n) if n as u64 == block.raw_len || (n >= wanted && (n as u64) < block.raw_len) => Ok(()),
        Ok(n) => Err(corrupt(format!(
            "block at byte {}: expands to {n} bytes, index says {}",
            block.offset, block.raw_len
        ))),
        Err(e) => Err(corrupt(format!("block at byte {}: {e}", block.offset))),
    }
}

/// Decompresses all of `frame` into `out`, made `raw_len` bytes long.
fn decode_whole(frame: &[u8], raw_len: usize, out: &mut Vec<u8>) -> std::io::Result<usize> {
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    // raw_len is capped at MAX_BLOCK_RAW by the index check, so this is bounded. The decoder
    // writes into this slice and no further, whatever spare capacity the vector has. A
    // buffer reused for blocks of one size is not filled again.
    out.resize(raw_len, 0);
    DECOMPRESSOR.with(|cell| -> std::io::Result<usize> {
        let mut slot = cell.borrow_mut();
        let decompressor = match &mut *slot {
            Some(decompressor) => decompressor,
            None => {
                let mut decompressor = zstd::bulk::Decompressor::new()?;
                decompressor.window_log_max(MAX_WINDOW_LOG)?;
                slot.insert(decompressor)
            }
        };
        decompressor.decompress_to_buffer(frame, out.as_mut_slice())
    })
}

/// Decompresses `frame` until at least `wanted` bytes are out, straight into `out`'s room
/// for `raw_len` bytes (zstd's stable output buffer: no window of its own, and the pages
/// past what is decoded are never touched), feeding it a few zstd blocks at a time.
fn decode_start(frame: &[u8], raw_len: usize, wanted: usize, out: &mut Vec<u8>) -> std::io::Result<usize> {
    use zstd::zstd_safe::{get_error_name, DCtx, DParameter, InBuffer, OutBuffer, ResetDirective};
    thread_local! {
        static DECODER: std::cell::RefCell<Option<DCtx<'static>>> = const { std::cell::RefCell::new(None) };
    }
    // Compressed bytes given at a time: a few zstd blocks, so the decoding stops soon after
    // the bytes wanted.
    const STEP: usize = 32 << 10;
    let error = |code| std::io::Error::other(get_error_name(code));
    out.clear();
    out.reserve_exact(raw_len);
    DECODER
        .with(|cell| -> std::io::Result<usize> {
            let mut slot = cell.borrow_mut();
            let decoder = match &mut *slot {
                Some(decoder) => decoder,
                None => {
                    let mut decoder = DCtx::create();
                    decoder.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG)).map_err(error)?;
                    decoder.set_parameter(DParameter::StableOutBuffer(true)).map_err(error)?;
                    // zstd's checksum covers the whole block, and is checked at its end: of a
                    // block read in part it would be worked out and never checked (what is read
                    // is the frame whose XXH3 was checked above, decoded by a deterministic
                    // decoder). A block decoded to its end is checked below.
                    decoder.set_parameter(DParameter::ForceIgnoreChecksum(true)).map_err(error)?;
                    slot.insert(decoder)
                }
            };
            decoder.reset(ResetDirective::SessionOnly).map_err(error)?;
            let mut fed = 0;
            let mut output = OutBuffer::around(out);
            while output.pos() < wanted && fed < frame.len() {
                let end = (fed + STEP).min(frame.len());
                let mut input = InBuffer::around(&frame[..end]);
                input.set_pos(fed);
                let out_before = output.pos();
                decoder.decompress_stream(&mut output, &mut input).map_err(error)?;
                if input.pos() == fed && output.pos() == out_before {
                    // Neither read nor wrote: it cannot go on (a frame that ends early).
                    break;
                }
                fed = input.pos();
            }
            Ok(output.pos())
        })
        .and_then(|n| match n == raw_len && !frame::checksum_matches(frame, out) {
            true => Err(std::io::Error::other("Restored data doesn't match checksum")),
            false => Ok(n),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block of `raw` as arc writes one (level 3, with its checksum and size), at offset 0.
    fn block_of(raw: &[u8]) -> (Block, Vec<u8>) {
        let mut compressor = zstd::bulk::Compressor::new(3).expect("compressor");
        compressor.include_checksum(true).expect("checksum flag");
        let frame = compressor.compress(raw).expect("compress");
        let block = Block {
            offset: 0,
            record_len: 0,
            len: frame.len() as u64,
            raw_offset: 0,
            raw_len: raw.len() as u64,
            hash: block_hash(&frame),
        };
        (block, frame)
    }

    #[test]
    fn the_start_of_a_block_is_the_start_of_all_of_it() {
        // Text that compresses into many zstd blocks of 128 KiB.
        let raw: Vec<u8> =
            (0..3_000_000u32).flat_map(|i| format!("{} ", (i % 7919).wrapping_mul(i)).into_bytes()).collect();
        let (block, frame) = block_of(&raw);
        let mut out = Vec::new();
        for wanted in [0, 1, 4096, 300_000, raw.len() / 2, raw.len() - 1, raw.len()] {
            decode_block_start(&block, &frame, &mut out, wanted).expect("decodes");
            assert!(out.len() >= wanted && out.len() <= raw.len(), "{wanted}: {} bytes", out.len());
            assert!(out == raw[..out.len()], "{wanted}: the bytes differ");
        }
        // Stopping early decodes less than all of it.
        decode_block_start(&block, &frame, &mut out, 4096).expect("decodes");
        assert!(out.len() < raw.len() / 4, "{} bytes decoded for 4096 wanted", out.len());
    }

    #[test]
    fn zstd_checksum_is_checked_when_a_block_is_decoded_to_its_end_only() {
        // Text that compresses into many zstd blocks, so that its start is read alone.
        let raw: Vec<u8> =
            (0..500_000u32).flat_map(|i| format!("{} ", (i % 7919).wrapping_mul(i)).into_bytes()).collect();
        let (mut block, mut frame) = block_of(&raw);
        // The frame's last four bytes are zstd's checksum of all it holds.
        let end = frame.len();
        frame[end - 4..].copy_from_slice(&[0; 4]);
        block.hash = block_hash(&frame);
        let mut out = Vec::new();
        let refused = decode_block(&block, &frame, &mut out).expect_err("a wrong checksum");
        assert!(refused.to_string().contains("checksum"), "{refused}");
        assert!(decode_block_start(&block, &frame, &mut out, raw.len()).is_err(), "all of it wanted");
        decode_block_start(&block, &frame, &mut out, 4096).expect("its start, checked by its XXH3");
        assert_eq!(out[..4096], raw[..4096]);
        // A block small enough to be fed whole is decoded to its end: then checked.
        let raw: Vec<u8> = (0..50_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let (mut block, mut frame) = block_of(&raw);
        assert!(frame.len() < 32 << 10);
        let end = frame.len();
        frame[end - 4..].copy_from_slice(&[0; 4]);
        block.hash = block_hash(&frame);
        assert!(decode_block_start(&block, &frame, &mut out, 4096).is_err(), "decoded to its end");
    }

    #[test]
    fn a_block_whose_end_does_not_decode_is_refused_by_reads_of_its_end() {
        let raw: Vec<u8> =
            (0..2_000_000u32).flat_map(|i| format!("{} ", (i % 7919).wrapping_mul(i)).into_bytes()).collect();
        let (mut block, mut frame) = block_of(&raw);
        // Damage near the end, with a checksum that matches (as a crafted archive would have).
        let at = frame.len() * 9 / 10;
        frame[at] ^= 0xff;
        block.hash = block_hash(&frame);
        let mut out = Vec::new();
        assert!(decode_block(&block, &frame, &mut out).is_err(), "the whole block decodes");
        assert!(decode_block_start(&block, &frame, &mut out, raw.len() - 1).is_err());
        // Its start is read without reaching the damage.
        decode_block_start(&block, &frame, &mut out, 4096).expect("the start decodes");
        assert_eq!(out[..4096], raw[..4096]);
    }
}
