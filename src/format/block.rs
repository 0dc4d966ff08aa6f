//! FORMAT.md §3: a block, one zstd frame of the data stream, and its checksum.

use xxhash_rust::xxh3::xxh3_64;

use super::{corrupt, Block, FormatError, MAX_WINDOW_LOG};

/// FORMAT.md §3: a block's checksum covers its compressed bytes, so damage is found before
/// the decoder sees it, including the few frame-header bits zstd's own checksum misses.
pub fn block_hash(frame: &[u8]) -> u64 {
    xxh3_64(frame)
}

/// Checks a block's frame against the index and decompresses it into `out` (cleared first).
/// Errors name the block by its offset in the archive.
pub fn decode_block(block: &Block, frame: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    if block_hash(frame) != block.hash {
        return Err(corrupt(format!("block at byte {}: checksum mismatch", block.offset)));
    }
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    out.clear();
    // raw_len is capped at MAX_BLOCK_RAW by the index check, so this reservation is bounded.
    out.reserve(block.raw_len as usize);
    let result = DECOMPRESSOR.with(|cell| -> std::io::Result<usize> {
        let mut slot = cell.borrow_mut();
        let decompressor = match &mut *slot {
            Some(decompressor) => decompressor,
            None => {
                let mut decompressor = zstd::bulk::Decompressor::new()?;
                decompressor.window_log_max(MAX_WINDOW_LOG)?;
                slot.insert(decompressor)
            }
        };
        // The slice beyond raw_len is not offered, so a frame that expands further fails.
        decompressor.decompress_to_buffer(frame, out)
    });
    match result {
        Ok(n) if n as u64 == block.raw_len => Ok(()),
        Ok(n) => Err(corrupt(format!(
            "block at byte {}: expands to {n} bytes, index says {}",
            block.offset, block.raw_len
        ))),
        Err(e) => Err(corrupt(format!("block at byte {}: {e}", block.offset))),
    }
}
