//! Opening an archive for reading: header, trailer and index checked before anything else
//! happens, then blocks fetched and checked one at a time by whoever needs them.
//!
//! Architecture Invariant: an [`Archive`] exists only if its header, trailer, index checksum
//! and index structure are all valid, so list, read and verify start from a trusted index and
//! nothing is written to a destination when the damage is in the index or trailer.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::format::{self, corrupt, FormatError, Trailer};
use crate::index::{Block, Index};

pub struct Archive {
    pub path: Utf8PathBuf,
    file: File,
    pub index: Index,
}

impl Archive {
    pub fn open(path: &Utf8Path) -> Result<Archive> {
        let file = File::open(path).with_context(|| format!("opening {path}"))?;
        let index = read_index(&file).with_context(|| format!("reading {path}"))?;
        Ok(Archive { path: path.to_owned(), file, index })
    }

    /// Reads, checks and decompresses one block into `out` (cleared first). Errors are
    /// [`FormatError`]s naming the block; I/O errors are wrapped with the archive's path.
    pub fn read_block(&self, block: &Block, frame: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<()> {
        frame.clear();
        // The length was checked against the archive's size when the index was built.
        frame.resize(block.len as usize, 0);
        self.file.read_exact_at(frame, block.offset).with_context(|| format!("reading {}", self.path))?;
        check_block(block, frame, out)?;
        Ok(())
    }
}

/// Checks a block's frame against the index and decompresses it into `out`.
pub fn check_block(block: &Block, frame: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    if format::block_hash(frame) != block.hash {
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
        if slot.is_none() {
            let mut decompressor = zstd::bulk::Decompressor::new()?;
            decompressor.window_log_max(format::MAX_WINDOW_LOG)?;
            *slot = Some(decompressor);
        }
        let decompressor = slot.as_mut().expect("initialised above");
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

fn read_index(file: &File) -> Result<Index> {
    let len = file.metadata()?.len();
    let mut header = [0u8; format::HEADER_LEN as usize];
    let got = read_up_to(file, &mut header, 0)?;
    format::decode_header(&header[..got])?;
    if len < format::HEADER_LEN + format::TRAILER_LEN {
        return Err(FormatError::Truncated("no index trailer").into());
    }
    let mut trailer = [0u8; format::TRAILER_LEN as usize];
    file.read_exact_at(&mut trailer, len - format::TRAILER_LEN)?;
    let trailer = Trailer::decode(&trailer, len)?;
    let index_offset = trailer.index_offset(len);
    // index_len is capped by MAX_INDEX_LEN and by the file's length.
    let mut frame = vec![0u8; trailer.index_len as usize];
    file.read_exact_at(&mut frame, index_offset)?;
    trailer.check(&frame)?;
    let record = format::decode_index(&frame, trailer.index_raw_len)?;
    Ok(Index::from_record(record, index_offset)?)
}

fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}
