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
    if block_hash(frame) != block.hash {
        return Err(corrupt(format!("block at byte {}: checksum mismatch", block.offset)));
    }
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    frame::check(frame, block.raw_len, "the index")
        .map_err(|why| corrupt(format!("block at byte {}: {why}", block.offset)))?;
    // raw_len is capped at MAX_BLOCK_RAW by the index check, so this is bounded. The decoder
    // writes into this slice and no further, whatever spare capacity the vector has. A
    // buffer reused for blocks of one size is not filled again.
    out.resize(block.raw_len as usize, 0);
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
        decompressor.decompress_to_buffer(frame, out.as_mut_slice())
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
