//! An archive read from the front as it arrives, from a pipe (`arc read -`, `list -`,
//! `verify -`): records, blocks, then the index and trailer, which must agree with the records.
//!
//! Each record's entries are checked as an index is checked and joined to those before
//! (`Index::append_run`), so that [`Stream::index`] is, after each record, the index of every
//! entry so far and of every block before; a block comes after the record that tells its
//! length and checksum. At the end, the index at the end of the archive is read and checked
//! as from a file (trailer, checksum, every value), and must equal the one the records made:
//! the records are what was extracted, the index is what a reader of the file would have
//! extracted, and a stream where the two differ is an error.
//!
//! Memory: one record's CBOR, one block's frame, and the index so far, all charged to a
//! budget of what an archive may ask for (SECURITY.md §8), since a pipe has no length.

use std::io::Read;

use anyhow::{bail, Context, Result};

use crate::format::{self, Block, Budget, FormatError, Index, Keep, RecordHead, Trailer};

/// What the index keeps of an entry, besides its name: its record, where its name ends, its
/// place among the files, what a command keeps of it.
const KEPT_PER_ENTRY: u64 = 64;

/// What comes next in a stream.
pub enum Item {
    /// The entries of a record, now in the index.
    Entries(std::ops::Range<usize>),
    /// Block `b` of the index: its frame, not checked yet (`format::decode_block` checks it).
    Block(usize, Vec<u8>),
    /// The index at the end, read, checked and found equal to the records'.
    End,
}

pub struct Stream<R> {
    reader: R,
    /// Bytes read so far: where the next item starts.
    at: u64,
    index: Index,
    budget: Budget,
    /// The block told by the record just read, if it has not been read yet.
    pending: Option<usize>,
    /// The final record was read: the index and trailer come next.
    last: bool,
    done: bool,
    /// Frame buffers given back ([`Stream::give_back`]).
    spare: Vec<Vec<u8>>,
}

impl<R: Read> Stream<R> {
    /// Reads the header.
    pub fn new(mut reader: R) -> Result<Stream<R>> {
        let mut header = [0u8; format::HEADER_LEN as usize];
        let got = read_full(&mut reader, &mut header)?;
        let version = format::decode_header(&header[..got])?;
        if version < 2 {
            bail!("an archive of format {version} has no records: it can be read from a file only");
        }
        Ok(Stream {
            reader,
            at: format::HEADER_LEN,
            index: Index::default(),
            budget: Budget::for_archive(u64::MAX),
            pending: None,
            last: false,
            done: false,
            spare: Vec::new(),
        })
    }

    /// Gives back the frame of an [`Item::Block`] once it is decoded, for a later block.
    pub fn give_back(&mut self, frame: Vec<u8>) {
        if self.spare.len() < 8 {
            self.spare.push(frame);
        }
    }

    /// The index of every entry and block so far.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The next item; after [`Item::End`], `End` again.
    pub fn next_item(&mut self) -> Result<Item> {
        if self.done {
            return Ok(Item::End);
        }
        if let Some(b) = self.pending.take() {
            let block: Block = self.index.blocks[b];
            // A buffer given back, reused: a fresh one of megabytes costs page faults and zeroing.
            let mut frame = self.spare.pop().unwrap_or_default();
            frame.resize(block.len as usize, 0);
            let got = read_full(&mut self.reader, &mut frame)?;
            if got < frame.len() {
                return Err(FormatError::Truncated("the stream ends inside a block").into());
            }
            self.at += block.len;
            return Ok(Item::Block(b, frame));
        }
        if self.last {
            self.end()?;
            self.done = true;
            return Ok(Item::End);
        }
        let mut head = [0u8; 8];
        let got = read_full(&mut self.reader, &mut head)?;
        if got < head.len() {
            return Err(FormatError::Truncated("the stream ends before its final record").into());
        }
        let Some(len) = format::record_len(&head) else {
            bail!(format::corrupt(format!("no record at byte {} of the stream", self.at)));
        };
        self.budget.take(len, "a record")?;
        let mut frame = vec![0u8; len as usize];
        frame[..8].copy_from_slice(&head);
        if read_full(&mut self.reader, &mut frame[8..])? < frame.len() - 8 {
            return Err(FormatError::Truncated("the stream ends inside a record").into());
        }
        let at = self.at;
        self.at += len;
        let (head, cbor) = format::decode_record(&frame)
            .map_err(|e| format::corrupt(format!("record at byte {at}: {}", e.words())))?;
        let range = self.append(&head, len, cbor);
        drop(frame);
        self.budget.give_back(len);
        let range = range?;
        if head.is_final() {
            self.last = true;
        } else {
            self.pending = Some(self.index.blocks.len() - 1);
        }
        Ok(Item::Entries(range))
    }

    /// The record's entries, decoded, checked and joined to the index. Decoding one record
    /// takes at most what an archive may ask for; what the entries joined keep is charged to
    /// the stream's budget, which they never give back.
    fn append(&mut self, head: &RecordHead, len: u64, cbor: &[u8]) -> Result<std::ops::Range<usize>> {
        let mut scratch = Budget::for_archive(u64::MAX);
        let packed = format::decode_record_entries(head, cbor, &mut scratch)?;
        let run = packed.record(&mut scratch)?;
        drop(packed);
        let range = self.index.append_run(head, len, self.at, &run)?;
        let names: u64 = range.clone().map(|i| self.index.name(i).len() as u64).sum();
        self.budget.take(range.len() as u64 * KEPT_PER_ENTRY + names, "the entries read so far")?;
        Ok(range)
    }

    /// The index and trailer after the final record: read whole, checked as a reader of the
    /// file checks them, and compared with the index the records made.
    fn end(&mut self) -> Result<()> {
        let most = format::MAX_INDEX_LEN + format::TRAILER_LEN;
        let mut rest = Vec::new();
        (&mut self.reader).take(most + 1).read_to_end(&mut rest).context("reading the index")?;
        if rest.len() as u64 > most {
            bail!(format::corrupt("more bytes after the final record than an index may have"));
        }
        let len = self.at + rest.len() as u64;
        let Some(split) = rest.len().checked_sub(format::TRAILER_LEN as usize) else {
            return Err(FormatError::Truncated("no index trailer at the end").into());
        };
        let trailer: [u8; format::TRAILER_LEN as usize] =
            rest[split..].try_into().map_err(|_| FormatError::Truncated("no index trailer at the end"))?;
        let trailer = Trailer::decode(&trailer, len)?;
        if trailer.index_len != split as u64 {
            bail!(format::corrupt("the index does not start where the final record ends"));
        }
        let frame = &rest[..split];
        trailer.check(frame)?;
        let mut budget = Budget::for_archive(len);
        let packed = format::decode_index(frame, trailer.index_raw_len, format::VERSION, &mut budget)?;
        let index = Index::from_packed(&packed, self.at, &mut budget, Keep::All)?.owners_used();
        if index != self.index {
            bail!(format::corrupt(
                "the index at the end does not say what the records said (what was extracted may differ \
                 from what a read of the file gives)"
            ));
        }
        Ok(())
    }
}

/// Reads into `buf` until it is full or the stream ends; how many bytes came.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match reader.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
