//! Opening an archive for reading: header, trailer and index checked before anything else
//! happens, then blocks fetched and checked one at a time by whoever needs them.
//!
//! Architecture Invariant: `archive` knows only `format`.
//!
//! Architecture Invariant: an [`Archive`] exists only if its header, trailer, index checksum
//! and index structure are all valid, so list, read and verify start from a trusted index and
//! nothing is written to a destination when the damage is in the index or trailer.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::format::{self, Block, FormatError, Index, Trailer};

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
        format::decode_block(block, frame, out)?;
        Ok(())
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
