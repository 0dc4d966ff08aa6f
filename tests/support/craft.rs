//! Archives crafted byte by byte, valid checksums included, so that only arc's own checks stand
//! between them and the disk.
//!
//! The archive layout is the one `arc::format` documents: header | (record block)* | record |
//! index | trailer. Blocks have no stored offsets: with their records they tile the region from
//! the header to the index, so the helpers here only have to lay them out back to back.
//! [`craft_frames`] writes true records; the other helpers none (their index says records of
//! 0 bytes), which every command but `verify` takes.
//!
//! Also included by the fuzz harness (fuzz/src/lib.rs).

pub use arc::format::{self, BlockRecord, IndexRecord, Trailer, HEADER_LEN, TRAILER_LEN};

/// A zstd frame of `data` as arc writes one: with a checksum and the content size.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd compressor");
    compressor.include_checksum(true).expect("zstd checksum flag");
    compressor.include_contentsize(true).expect("zstd content size flag");
    compressor.compress(data).expect("zstd compression")
}

/// A whole archive: `data_stream` cut into blocks of `block_size` bytes, each compressed on
/// its own; the record's block table is filled in to match.
pub fn craft(record: IndexRecord, data_stream: &[u8], block_size: usize) -> Vec<u8> {
    let frames: Vec<(Vec<u8>, u64)> =
        data_stream.chunks(block_size.max(1)).map(|chunk| (compress(chunk), chunk.len() as u64)).collect();
    craft_frames(record, &frames)
}

/// A whole archive from ready-made block frames, each with the decompressed length the index
/// is to claim for it (which may be a lie). Lengths and checksums of the frames are filled in
/// truthfully, so the index passes every check that does not decompress.
pub fn craft_frames(mut record: IndexRecord, frames: &[(Vec<u8>, u64)]) -> Vec<u8> {
    record.blocks = block_table(frames);
    let region: Vec<u8> = frames.iter().flat_map(|(frame, _)| frame.iter().copied()).collect();
    assemble(&region, &record)
}

/// The region of `frames` (blocks back to back, as the index's `lens` cut them) with the
/// records of FORMAT.md §3.2 between them, and the index that says so, when the index has
/// none yet and reads (a hostile one that does not gets none: every command refuses it before
/// records matter).
pub fn with_records(region: &[u8], record: &IndexRecord) -> Option<(Vec<u8>, IndexRecord)> {
    let blocks = &record.blocks;
    if blocks.records.iter().any(|&r| r != 0) || blocks.lens.iter().sum::<u64>() != region.len() as u64 {
        return None;
    }
    let index = format::Index::from_record(record.clone(), HEADER_LEN + region.len() as u64).ok()?;
    let records = format::encode_records(&index, 3).expect("encoding the records");
    let mut out = Vec::new();
    let mut at = 0;
    for (&len, record_frame) in blocks.lens.iter().zip(&records) {
        out.extend_from_slice(record_frame);
        out.extend_from_slice(&region[at..at + len as usize]);
        at += len as usize;
    }
    out.extend_from_slice(records.last().expect("the final record"));
    let mut record = record.clone();
    record.blocks.records = records.iter().map(|r| r.len() as u64).collect();
    Some((out, record))
}

/// The block table of `frames` (each with the decompressed length to claim): true lengths
/// and checksums of the frames.
pub fn block_table(frames: &[(Vec<u8>, u64)]) -> BlockRecord {
    BlockRecord {
        lens: frames.iter().map(|(frame, _)| frame.len() as u64).collect(),
        raw_lens: frames.iter().map(|&(_, raw_len)| raw_len).collect(),
        hashes: frames.iter().map(|(frame, _)| format::block_hash(frame)).collect(),
        records: vec![0; frames.len() + 1],
    }
}

/// Header, the block `region` (frames back to back) with the records [`with_records`] puts
/// between them when it can, and the index of `record` (its block table untouched but for the
/// records' lengths), with a valid trailer.
pub fn assemble(region: &[u8], record: &IndexRecord) -> Vec<u8> {
    match with_records(region, record) {
        Some((region, record)) => assemble_exactly(&region, &record),
        None => assemble_exactly(region, record),
    }
}

/// Header, `region` and the index of `record` exactly as given, with a valid trailer.
pub fn assemble_exactly(region: &[u8], record: &IndexRecord) -> Vec<u8> {
    let (index_frame, cbor_len) = format::encode_index(record, 3).expect("encoding the index");
    assemble_index_frame(region, &index_frame, cbor_len)
}

/// Like [`assemble`], with the index given as raw CBOR bytes (which need not decode).
pub fn assemble_cbor(region: &[u8], cbor: &[u8]) -> Vec<u8> {
    assemble_index_frame(region, &compress(cbor), cbor.len() as u64)
}

/// Like [`assemble`], with the index frame and the length the trailer declares for its
/// decompressed contents given as they are; the trailer's checksum is valid.
pub fn assemble_index_frame(region: &[u8], index_frame: &[u8], declared_raw_len: u64) -> Vec<u8> {
    let mut archive = format::encode_header().to_vec();
    archive.extend_from_slice(region);
    archive.extend_from_slice(index_frame);
    archive.extend_from_slice(&Trailer::new(index_frame, declared_raw_len).encode());
    archive
}

/// The CBOR of `record`, for tests that patch bytes the serializer would never write.
pub fn cbor(record: &IndexRecord) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(record, &mut out).expect("serializing the index");
    out
}

/// Replaces the only occurrence of `from` in `bytes` with `to` (same length).
pub fn patch(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len(), "a patch must keep the length");
    let at: Vec<usize> =
        bytes.windows(from.len()).enumerate().filter(|(_, w)| *w == from).map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "{from:?} must occur exactly once");
    bytes[at[0]..at[0] + from.len()].copy_from_slice(to);
}

/// The trailer at the end of `archive`, if it decodes (its checksum is not checked).
pub fn trailer(archive: &[u8]) -> Option<Trailer> {
    let bytes = archive.get(archive.len().checked_sub(TRAILER_LEN as usize)?..)?.try_into().ok()?;
    Trailer::decode(bytes, archive.len() as u64).ok()
}

/// Where the index of `archive` starts, by its trailer; `archive` must have a valid one.
pub fn index_offset(archive: &[u8]) -> usize {
    let trailer = trailer(archive).expect("a valid trailer");
    trailer.index_offset(archive.len() as u64) as usize
}

/// zstd's largest block: RLE blocks bigger than this are invalid.
const ZSTD_BLOCK_MAX: u64 = 128 << 10;

/// A valid zstd frame, written by hand, that expands to `total` bytes of `b'A'` while being
/// about `total / 32768` bytes long: a run of RLE blocks of 128 KiB, four bytes each. The
/// frame's window is 2^`window_log` bytes; `content_size`, if given, is declared in the frame
/// header (and may be a lie).
pub fn rle_bomb(total: u64, window_log: u8, content_size: Option<u64>) -> Vec<u8> {
    assert!((10..=41).contains(&window_log) && total > 0);
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header descriptor: content size field of 8 bytes or none, not single-segment (so
    // a window descriptor follows), no checksum, no dictionary.
    frame.push(if content_size.is_some() { 0xc0 } else { 0x00 });
    frame.push((window_log - 10) << 3);
    if let Some(size) = content_size {
        frame.extend_from_slice(&size.to_le_bytes());
    }
    let block_max = ZSTD_BLOCK_MAX.min(1 << window_log);
    let mut left = total;
    while left > 0 {
        let n = left.min(block_max);
        left -= n;
        let last = u32::from(left == 0);
        // Block header: last-block bit, type 1 (RLE), size in bits 3..24.
        let header = last | (1 << 1) | ((n as u32) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(b'A');
    }
    frame
}

/// What one entry of a crafted tree is.
#[derive(Debug, Clone)]
enum What {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    /// A hard link to entry number N.
    Link(u32),
    /// A regular file of this size whose contents are entry number N's (FORMAT.md §4.8).
    Copy(u32, u64),
    Fifo,
    /// A character (true) or block device, with its numbers.
    Device(bool, u32, u32),
}

#[derive(Debug, Clone)]
struct SpecEntry {
    depth: u32,
    name: String,
    what: What,
    mode: u16,
    mtime: (i64, u32),
    owner: (u32, u32),
    xattrs: Vec<(String, Vec<u8>)>,
}

/// A tree to craft an archive of, entries given in the order they are to be stored (which a
/// hostile archive chooses freely; for a valid one, pre-order with sorted siblings).
#[derive(Debug, Clone, Default)]
pub struct Spec {
    entries: Vec<SpecEntry>,
}

impl Spec {
    pub fn new() -> Spec {
        Spec::default()
    }

    fn push(mut self, depth: u32, name: &str, what: What, mode: u16) -> Spec {
        let entry = SpecEntry {
            depth,
            name: name.to_owned(),
            what,
            mode,
            mtime: (1_000_000_000, 0),
            owner: (0, 0),
            xattrs: Vec::new(),
        };
        self.entries.push(entry);
        self
    }

    /// A hard link to the entry numbered `target` (whatever it is: a hostile archive may
    /// point anywhere).
    pub fn hard_link(self, depth: u32, name: &str, target: u32) -> Spec {
        self.push(depth, name, What::Link(target), 0o644)
    }

    /// A file of `size` bytes whose contents are stored with entry `source` (whatever it is).
    pub fn copy(self, depth: u32, name: &str, source: u32, size: u64) -> Spec {
        self.push(depth, name, What::Copy(source, size), 0o644)
    }

    pub fn fifo(self, depth: u32, name: &str) -> Spec {
        self.push(depth, name, What::Fifo, 0o644)
    }

    pub fn device(self, depth: u32, name: &str, char: bool, major: u32, minor: u32) -> Spec {
        self.push(depth, name, What::Device(char, major, minor), 0o666)
    }

    /// Sets the owner of the entry added last.
    pub fn owner(mut self, uid: u32, gid: u32) -> Spec {
        self.entries.last_mut().expect("an entry to set the owner of").owner = (uid, gid);
        self
    }

    /// Gives the entry added last an extended attribute (call in name order).
    pub fn xattr(mut self, name: &str, value: &[u8]) -> Spec {
        let entry = self.entries.last_mut().expect("an entry to give an attribute");
        entry.xattrs.push((name.to_owned(), value.to_vec()));
        self
    }

    pub fn dir(self, depth: u32, name: &str) -> Spec {
        self.push(depth, name, What::Dir, 0o755)
    }

    pub fn file(self, depth: u32, name: &str, contents: impl AsRef<[u8]>) -> Spec {
        self.push(depth, name, What::File(contents.as_ref().to_vec()), 0o644)
    }

    pub fn symlink(self, depth: u32, name: &str, target: &str) -> Spec {
        self.push(depth, name, What::Symlink(target.to_owned()), 0o777)
    }

    /// Sets the mode of the entry added last.
    pub fn mode(mut self, mode: u16) -> Spec {
        self.entries.last_mut().expect("an entry to set the mode of").mode = mode;
        self
    }

    /// Sets the mtime of the entry added last.
    pub fn mtime(mut self, secs: i64, nanos: u32) -> Spec {
        self.entries.last_mut().expect("an entry to set the mtime of").mtime = (secs, nanos);
        self
    }

    /// The index columns (block table left empty) and the data stream.
    pub fn record(&self) -> (IndexRecord, Vec<u8>) {
        let mut record = IndexRecord::default();
        let mut data = Vec::new();
        for entry in &self.entries {
            record.names.push(entry.name.as_bytes());
            record.depths.push(entry.depth);
            record.uids.push(entry.owner.0);
            record.gids.push(entry.owner.1);
            if !entry.xattrs.is_empty() {
                record.xattrs.entries.push(record.kinds.len() as u32);
                record.xattrs.counts.push(entry.xattrs.len() as u32);
                for (name, value) in &entry.xattrs {
                    record.xattrs.names.push(name.clone().into_bytes());
                    record.xattrs.values.push(value.clone());
                }
            }
            record.modes.push(entry.mode);
            record.mtime_secs.push(entry.mtime.0);
            record.mtime_nanos.push(entry.mtime.1);
            match &entry.what {
                What::Dir => record.kinds.push(format::KIND_DIR),
                What::File(contents) => {
                    record.kinds.push(format::KIND_FILE);
                    record.sizes.push(contents.len() as u64);
                    data.extend_from_slice(contents);
                }
                What::Symlink(target) => {
                    record.kinds.push(format::KIND_SYMLINK);
                    record.targets.push(target.clone().into_bytes());
                }
                What::Link(target) => {
                    record.kinds.push(format::KIND_LINK);
                    record.links.push(*target);
                }
                What::Copy(source, size) => {
                    record.copies.files.push(record.kinds.len() as u32);
                    record.copies.sources.push(*source);
                    record.kinds.push(format::KIND_FILE);
                    record.sizes.push(*size);
                }
                What::Fifo => record.kinds.push(format::KIND_FIFO),
                What::Device(char, major, minor) => {
                    record.kinds.push(if *char { format::KIND_CHAR } else { format::KIND_BLOCK });
                    record.dev_majors.push(*major);
                    record.dev_minors.push(*minor);
                }
            }
        }
        (record, data)
    }

    /// The index columns with the block table of one block holding the whole data stream,
    /// and that block's frame: for tests that change the record before assembling it.
    pub fn record_in_one_block(&self) -> (IndexRecord, Vec<u8>) {
        let (mut record, data) = self.record();
        let frame = compress(&data);
        record.blocks = block_table(&[(frame.clone(), data.len() as u64)]);
        (record, frame)
    }

    /// The archive, with blocks of `block_size` bytes of the data stream.
    pub fn archive_with_blocks(&self, block_size: usize) -> Vec<u8> {
        let (record, data) = self.record();
        craft(record, &data, block_size)
    }

    /// The archive, with blocks of 4 KiB.
    pub fn archive(&self) -> Vec<u8> {
        self.archive_with_blocks(4096)
    }
}
