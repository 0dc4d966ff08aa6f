//! Opening an archive for reading: header, trailer and index checked before anything else
//! happens, then blocks fetched and checked one at a time by whoever needs them.
//!
//! Architecture Invariant: `archive` knows only `format`.
//!
//! Architecture Invariant: an [`Archive`] exists only if its header, trailer, index checksum
//! and index structure are all valid, so list, read and verify start from a trusted index and
//! nothing is written to a destination when the damage is in the index or trailer.
//!
//! Invariant: what an archive declares costs memory only within its [`Budget`] (SECURITY.md
//! §8): the index is charged while it is parsed, and the block buffers of
//! [`Archive::decode_threads`] threads fit in what is left.

use std::fs::File;
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::format::{self, Block, Budget, FormatError, Index, Keep, Packed, Trailer, Tree};

mod salvage;
mod stream;

pub use salvage::Salvaged;
pub use stream::{Item, Stream};

/// Why a block could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("reading {0}: {1}")]
    Io(Utf8PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Format(#[from] FormatError),
}

pub struct Archive {
    pub path: Utf8PathBuf,
    file: File,
    pub index: Index,
    /// The format version (FORMAT.md §2).
    pub version: u16,
    /// Where the region of records and blocks ends: the index frame's offset.
    data_end: u64,
    /// What is left of the archive's memory budget once its index is in memory.
    budget: Budget,
    /// A salvaged archive's block cut short by the end of the file: its offset, and what of
    /// it decompressed (`salvage`).
    cut: Option<(u64, Vec<u8>)>,
}

impl std::os::fd::AsRawFd for Archive {
    /// The open archive file's descriptor (a background mount keeps it open).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

impl Archive {
    pub fn open(path: &Utf8Path) -> Result<Archive> {
        Archive::open_some(path, |_| Vec::new())
    }

    /// The same, its index built with only the subtrees of the entries `roots` finds in the
    /// tree (and what they need: [`Tree::keep`]), or whole when it finds none or they are a
    /// large part of the archive. Every entry is checked all the same: what is refused does
    /// not depend on what is kept. What one file out needs.
    pub fn open_some(path: &Utf8Path, roots: impl FnOnce(&Tree) -> Vec<usize>) -> Result<Archive> {
        let file = File::open(path).with_context(|| format!("opening {path}"))?;
        let (index, budget, version, data_end) =
            read_index(&file, roots).with_context(|| format!("reading {path}"))?;
        Ok(Archive { path: path.to_owned(), file, index, version, data_end, budget, cut: None })
    }

    /// What can be recovered of a damaged or cut archive ([`salvage`]): an archive whose index
    /// holds only the entries that can be recovered whole, and what was lost. An archive
    /// without damage comes back whole, with an empty report.
    pub fn salvage(path: &Utf8Path) -> Result<(Archive, Salvaged)> {
        let file = File::open(path).with_context(|| format!("opening {path}"))?;
        let open = || -> Result<(Archive, Salvaged)> {
            let len = file.metadata()?.len();
            let mut budget = Budget::for_archive(len);
            let found = salvage::salvage(&file, len, &mut budget)?;
            let file = file.try_clone()?;
            let archive = Archive {
                path: path.to_owned(),
                file,
                index: found.index,
                version: format::VERSION,
                data_end: found.data_end,
                budget,
                cut: found.cut,
            };
            Ok((archive, found.report))
        };
        open().with_context(|| format!("reading {path}"))
    }

    /// The index of the archive at `path` decoded but not built: its tree can be walked with
    /// [`format::Tree`] without the memory and time of the whole index (what `list`
    /// without details needs). Header, trailer and the index frame's checksums are checked as
    /// by [`Archive::open`].
    pub fn open_packed(path: &Utf8Path) -> Result<Packed> {
        let file = File::open(path).with_context(|| format!("opening {path}"))?;
        let read = || -> Result<Packed> { Ok(read_packed(&file)?.0) };
        read().with_context(|| format!("reading {path}"))
    }

    /// How many blocks may be decoded at once, at most `threads`: each thread's buffers grow
    /// to the largest frame and the largest contents (not necessarily of one block), and
    /// together they must fit in what is left of the archive's budget. One always may: a
    /// block's contents are at most 64 MiB.
    pub fn decode_threads(&self, threads: usize) -> usize {
        let blocks = &self.index.blocks;
        let largest_frame = blocks.iter().map(|b| b.len).max().unwrap_or(0);
        let largest_contents = blocks.iter().map(|b| b.raw_len).max().unwrap_or(0);
        let largest = (largest_frame + largest_contents).max(1);
        let fit = usize::try_from(self.budget.left() / largest).unwrap_or(usize::MAX);
        threads.min(fit).max(1)
    }

    /// Reads record `n` (FORMAT.md §3.2: the one before block `n`, or after the last block
    /// the final one) into `buf` and checks it against the index: what `verify` does with
    /// every record. A version-1 archive has none: nothing to check.
    pub fn check_record(
        &self,
        expected: &(format::RecordHead, std::ops::Range<usize>),
        buf: &mut Vec<u8>,
    ) -> Result<(), BlockError> {
        if self.version < 2 {
            return Ok(());
        }
        let blocks = &self.index.blocks;
        let n = expected.0.block as usize;
        let (offset, len) = match blocks.get(n) {
            Some(block) => (block.offset - block.record_len, block.record_len),
            None => {
                let end = blocks.last().map_or(format::HEADER_LEN, |b| b.offset + b.len);
                (end, self.index.final_record)
            }
        };
        // Lengths were checked against the archive's when the index was built; a record is
        // at most what a reader takes (a longer one is refused unread).
        if len > format::RECORD_FRAME_HEAD + format::MAX_RECORD_CONTENT {
            return Err(format::corrupt(format!("record before block {n}: {len} bytes is too long")).into());
        }
        buf.resize(len as usize, 0);
        self.file.read_exact_at(buf, offset).map_err(|e| BlockError::Io(self.path.clone(), e))?;
        let mut budget = Budget::for_archive(self.data_end);
        format::check_record(&self.index, expected, buf, &mut budget)?;
        Ok(())
    }

    /// Reads, checks and decompresses one block into `out`. The error is a plain value (no
    /// backtrace), cheap to make for every damaged block of a large archive.
    pub fn read_block(
        &self,
        block: &Block,
        frame: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), BlockError> {
        self.read_block_start(block, frame, out, block.raw_len as usize)
    }

    /// The same, decompressing only as far as the first `wanted` bytes of the block
    /// ([`format::decode_block_start`]): `out` holds at least those.
    pub fn read_block_start(
        &self,
        block: &Block,
        frame: &mut Vec<u8>,
        out: &mut Vec<u8>,
        wanted: usize,
    ) -> Result<(), BlockError> {
        if let Some((_, start)) = self.cut.as_ref().filter(|(at, _)| *at == block.offset) {
            // Salvaged: what there is of it, which holds every byte wanted of it.
            out.clear();
            out.extend_from_slice(&start[..wanted.min(start.len())]);
            return Ok(());
        }
        // The length was checked against the archive's size when the index was built.
        frame.resize(block.len as usize, 0);
        self.file.read_exact_at(frame, block.offset).map_err(|e| BlockError::Io(self.path.clone(), e))?;
        format::decode_block_start(block, frame, out, wanted)?;
        Ok(())
    }
}

/// When `error` (from [`Archive::open`] of `path`) says the archive is damaged, not that it is
/// no archive, a newer one, or unreadable: how many entries `--salvage` would recover, and of
/// how many its records tell. `None` when salvage would not help (its records are refused
/// too, as a hostile index's are).
pub fn salvage_estimate(path: &Utf8Path, error: &anyhow::Error) -> Option<(usize, usize)> {
    let damaged = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<FormatError>(),
            Some(FormatError::Truncated(_) | FormatError::Corrupt(_))
        )
    });
    if !damaged {
        return None;
    }
    let (_, salvaged) = Archive::salvage(path).ok()?;
    (salvaged.found > 0).then(|| (salvaged.found - salvaged.lost.len(), salvaged.found))
}

/// The checked index (with what `roots` chooses: [`Archive::open_some`]), what is left of
/// the archive's memory budget, the format version and where the index starts.
fn read_index(file: &File, roots: impl FnOnce(&Tree) -> Vec<usize>) -> Result<(Index, Budget, u16, u64)> {
    let (packed, mut budget, index_offset) = read_packed(file)?;
    let tree = Tree::unchecked(&packed);
    let roots = roots(&tree);
    // Past an eighth of the entries (and 65,536), building them all costs little more.
    let limit = (tree.len() / 8).max(1 << 16);
    // The list and the hard links' files found on the way (Tree::keep), and one chain of
    // directories above an entry past the limit.
    let list_cost = limit as u64 * 12 + u64::from(format::MAX_DEPTH + 1) * 4;
    let keep = match roots.is_empty() {
        true => None,
        false => {
            budget.take(list_cost, "the entries chosen")?;
            tree.keep(&roots, limit)
        }
    };
    let chosen = keep.as_deref().map_or(Keep::All, Keep::Only);
    let index = Index::from_packed(&packed, index_offset, &mut budget, chosen)?;
    if !roots.is_empty() {
        drop(keep);
        budget.give_back(list_cost);
    }
    // The CBOR goes back to the budget once the index is built from it.
    let (cbor_len, version) = (packed.cbor_len(), packed.version);
    drop(packed);
    budget.give_back(cbor_len);
    Ok((index, budget, version, index_offset))
}

/// The decoded index, the budget left, and where the index frame starts.
fn read_packed(file: &File) -> Result<(Packed, Budget, u64)> {
    let len = file.metadata()?.len();
    let mut budget = Budget::for_archive(len);
    let mut header = [0u8; format::HEADER_LEN as usize];
    let got = read_up_to(file, &mut header, 0)?;
    let version = format::decode_header(&header[..got])?;
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
    budget.take(trailer.index_len, "the index frame")?;
    let packed = format::decode_index(&frame, trailer.index_raw_len, version, &mut budget)?;
    // The compressed frame is dropped now; its memory goes back to the budget.
    drop(frame);
    budget.give_back(trailer.index_len);
    Ok((packed, budget, index_offset))
}

pub(crate) fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}
