//! FORMAT.md §3.2: records, the entries of the data stream told in order, one before each
//! block and a final one after the last: what lets an archive be read from a pipe and be
//! salvaged when its end is lost.
//!
//! A record is a zstd skippable frame (RFC 8878 §3.1.2), so a plain zstd decoder passes over
//! it. Its content is a fixed head (the block that follows, where the record's entries start,
//! the names of the directories above them) and one zstd frame (§3.1) of CBOR: the index map
//! of the record's entries alone (`Index::run_record`). The head's first eight bytes are the
//! XXH3-64 of the rest, so a damaged record is known before anything in it is believed.

use xxhash_rust::xxh3::xxh3_64;

use super::index::Index;
use super::packed::{self, Unpack};
use super::record::{decode_index, IndexRecord, Packed};
use super::{corrupt, Budget, FormatError, Result, MAX_DEPTH, MAX_INDEX_LEN, MAX_INDEX_RAW, MAX_NAME_LEN};

/// The magic of a zstd skippable frame (0x184D2A50 to 0x184D2A5F), with arc's nibble `E`.
pub const RECORD_MAGIC: [u8; 4] = [0x5E, 0x2A, 0x4D, 0x18];
/// Magic and content length, before the content.
pub const RECORD_FRAME_HEAD: u64 = 8;
/// The content's fixed fields: check, block, block_len, block_raw_len, block_hash,
/// first_entry, block_offset, data_offset, cbor_len (8 bytes each), parents' length (4).
const FIXED: usize = 9 * 8 + 4;
/// The largest record content a reader takes: an index's worth of entries, and the head.
pub const MAX_RECORD_CONTENT: u64 = MAX_INDEX_LEN + (1 << 20);

/// What a record says besides its entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordHead {
    /// The number of the block this record comes before; for the final record, the number of
    /// blocks.
    pub block: u64,
    /// That block's frame length, decompressed length and XXH3-64, as the index's block table
    /// has them; all 0 for the final record.
    pub block_len: u64,
    pub block_raw_len: u64,
    pub block_hash: u64,
    /// The entry number of the record's first entry.
    pub first_entry: u64,
    /// Where the block starts in the data stream (for the final record: the stream's length).
    pub block_offset: u64,
    /// Where the stored bytes of the record's first entry start (or would) in the data stream:
    /// the stored bytes of every entry before it.
    pub data_offset: u64,
    /// Length of the record's CBOR once decompressed.
    pub cbor_len: u64,
    /// The names of the directories above the record's first entry, outermost first (as many
    /// as its depth); none if the record has no entries.
    pub parents: Vec<Vec<u8>>,
}

impl RecordHead {
    /// Whether this is the final record, which has no block after it.
    pub fn is_final(&self) -> bool {
        self.block_len == 0
    }
}

/// The record frame of `head` and `cbor_frame` (one zstd frame of `head.cbor_len` bytes).
pub fn encode_record(head: &RecordHead, cbor_frame: &[u8]) -> Vec<u8> {
    let mut parents = Vec::new();
    for name in &head.parents {
        packed::put_uint(&mut parents, name.len() as u64);
        parents.extend_from_slice(name);
    }
    let mut content = Vec::with_capacity(FIXED + parents.len() + cbor_frame.len());
    content.extend_from_slice(&[0; 8]);
    for value in [
        head.block,
        head.block_len,
        head.block_raw_len,
        head.block_hash,
        head.first_entry,
        head.block_offset,
        head.data_offset,
        head.cbor_len,
    ] {
        content.extend_from_slice(&value.to_le_bytes());
    }
    content.extend_from_slice(&(parents.len() as u32).to_le_bytes());
    content.extend_from_slice(&parents);
    content.extend_from_slice(cbor_frame);
    let check = xxh3_64(&content[8..]);
    content[..8].copy_from_slice(&check.to_le_bytes());
    let mut frame = Vec::with_capacity(RECORD_FRAME_HEAD as usize + content.len());
    frame.extend_from_slice(&RECORD_MAGIC);
    frame.extend_from_slice(&(content.len() as u32).to_le_bytes());
    frame.extend_from_slice(&content);
    frame
}

/// If `head` (the first 8 bytes at some offset) starts a record, the record frame's whole
/// length; `None` if it does not (a block, the index, or damage).
pub fn record_len(head: &[u8]) -> Option<u64> {
    if head.len() < 8 || head[..4] != RECORD_MAGIC {
        return None;
    }
    let len = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
    (len >= FIXED as u64 && len <= MAX_RECORD_CONTENT).then_some(RECORD_FRAME_HEAD + len)
}

/// Checks a whole record frame (as [`record_len`] measured it) and returns its head and its
/// CBOR's zstd frame. Nothing in it is believed before its check matches.
pub fn decode_record(frame: &[u8]) -> Result<(RecordHead, &[u8])> {
    let len = record_len(frame).ok_or_else(|| corrupt("not a record"))?;
    if frame.len() as u64 != len {
        return Err(FormatError::Truncated("a record is cut short"));
    }
    let content = &frame[RECORD_FRAME_HEAD as usize..];
    let word = |i: usize| u64::from_le_bytes(content[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    if xxh3_64(&content[8..]) != word(0) {
        return Err(corrupt("checksum mismatch"));
    }
    let parents_len = u32::from_le_bytes(content[FIXED - 4..FIXED].try_into().unwrap_or_default()) as usize;
    let rest = &content[FIXED..];
    if parents_len > rest.len() {
        return Err(corrupt("its parents run past its end"));
    }
    let mut parents = Vec::new();
    let mut unpack = Unpack::new(&rest[..parents_len]);
    while !unpack.is_done() {
        let name = unpack.string(MAX_NAME_LEN).map_err(|why| corrupt(format!("parents: {why}")))?;
        if parents.len() as u32 >= MAX_DEPTH {
            return Err(corrupt("more parents than the deepest tree"));
        }
        parents.push(name.to_vec());
    }
    let head = RecordHead {
        block: word(1),
        block_len: word(2),
        block_raw_len: word(3),
        block_hash: word(4),
        first_entry: word(5),
        block_offset: word(6),
        data_offset: word(7),
        cbor_len: word(8),
        parents,
    };
    let cbor_frame = &rest[parents_len..];
    if head.cbor_len > MAX_INDEX_RAW
        || (head.cbor_len > super::INDEX_RATIO_FLOOR
            && head.cbor_len / (cbor_frame.len() as u64).max(1) > super::MAX_INDEX_RATIO)
    {
        return Err(corrupt(format!("its entries' size {} is out of range", head.cbor_len)));
    }
    if head.is_final() && (head.block_raw_len != 0 || head.block_hash != 0) {
        return Err(corrupt("the final record describes a block"));
    }
    Ok((head, cbor_frame))
}

/// Decompresses and parses a record's entries, as the index is (§3.1, §4), charged to
/// `budget`.
pub fn decode_record_entries(head: &RecordHead, cbor_frame: &[u8], budget: &mut Budget) -> Result<Packed> {
    decode_index(cbor_frame, head.cbor_len, super::VERSION, budget)
        .map_err(|e| corrupt(format!("record before block {}: {}", head.block, e.words())))
}

/// Checks the record frame `frame` against the whole index it must agree with: `expected` is
/// its entry of [`Index::records`]. Its head must say what the index says, and its entries
/// must be exactly the index's, serialized as [`Index::run_record`] serializes them (a record
/// that claims more bytes than that is refused before it is decompressed).
pub fn check_record(
    index: &Index,
    expected: &(RecordHead, std::ops::Range<usize>),
    frame: &[u8],
    budget: &mut Budget,
) -> Result<()> {
    let (want, range) = expected;
    let at = |why: &str| corrupt(format!("record before block {}: {why}", want.block));
    let (head, cbor_frame) = decode_record(frame).map_err(|e| at(&e.words()))?;
    let mut cbor = Vec::new();
    ciborium::into_writer(&index.run_record(range.clone(), 0), &mut cbor)
        .map_err(|e| at(&format!("serializing the index's entries: {e}")))?;
    let want = RecordHead { cbor_len: cbor.len() as u64, ..want.clone() };
    if head != want {
        return Err(at(&disagreement(&head, &want)));
    }
    let packed = decode_record_entries(&head, cbor_frame, budget)?;
    if packed.cbor() != cbor.as_slice() {
        return Err(at("its entries are not the index's"));
    }
    Ok(())
}

/// The first field on which a record's head and the index disagree, in words.
fn disagreement(head: &RecordHead, want: &RecordHead) -> String {
    let fields = [
        ("block", head.block, want.block),
        ("block length", head.block_len, want.block_len),
        ("block size", head.block_raw_len, want.block_raw_len),
        ("block checksum", head.block_hash, want.block_hash),
        ("first entry", head.first_entry, want.first_entry),
        ("block offset", head.block_offset, want.block_offset),
        ("data offset", head.data_offset, want.data_offset),
        ("entries' size", head.cbor_len, want.cbor_len),
    ];
    match fields.iter().find(|(_, a, b)| a != b) {
        Some((what, a, b)) => format!("its {what} is {a}, the index says {b}"),
        None => "the directories above its first entry are not the index's".to_owned(),
    }
}

/// The record frames of `index`'s archive, in order (FORMAT.md §3.2), as the writer makes
/// them: for tools and tests that build archives.
pub fn encode_records(index: &Index, level: i32) -> std::io::Result<Vec<Vec<u8>>> {
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    compressor.include_checksum(true)?;
    compressor.include_contentsize(true)?;
    let mut frames = Vec::new();
    for (mut head, range) in index.records() {
        let mut cbor = Vec::new();
        ciborium::into_writer(&index.run_record(range, 0), &mut cbor).map_err(std::io::Error::other)?;
        head.cbor_len = cbor.len() as u64;
        frames.push(encode_record(&head, &compressor.compress(&cbor)?));
    }
    Ok(frames)
}

/// The index of an archive's first records, rebuilt from them (what a salvage reads when the
/// index is lost): `runs` are the records' heads and entries (`Packed::record`), in order from
/// the first, each starting where the one before ended; `final_len` is the final record's
/// length if it was found (else 0). The block table is the heads' blocks, each with its
/// record's length (`record_lens`). The result is checked like any index by whoever builds
/// it (`Index::from_packed`); here only the order of the records is.
pub fn join_runs(runs: Vec<(RecordHead, u64, IndexRecord)>, final_len: u64) -> Result<IndexRecord> {
    let mut whole = IndexRecord::default();
    whole.blocks.records.clear();
    let mut users: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut groups: Vec<(u32, Vec<u8>)> = Vec::new();
    for (head, record_len, run) in runs {
        if head.first_entry != whole.names.len() as u64 || head.block != whole.blocks.lens.len() as u64 {
            return Err(corrupt(format!("record before block {}: out of order", head.block)));
        }
        whole.push_entries(&run, |target| target);
        let (sparse, xattrs) = (&mut whole.sparse, &mut whole.xattrs);
        sparse.files.extend(run.sparse.files);
        sparse.counts.extend(run.sparse.counts);
        sparse.offsets.extend(run.sparse.offsets);
        sparse.lens.extend(run.sparse.lens);
        whole.copies.files.extend(run.copies.files);
        whole.copies.sources.extend(run.copies.sources);
        xattrs.entries.extend(run.xattrs.entries);
        xattrs.counts.extend(run.xattrs.counts);
        xattrs.names.extend(run.xattrs.names);
        xattrs.values.extend(run.xattrs.values);
        users.extend(run.users.ids.into_iter().zip(run.users.names));
        groups.extend(run.groups.ids.into_iter().zip(run.groups.names));
        if !head.is_final() {
            whole.blocks.lens.push(head.block_len);
            whole.blocks.raw_lens.push(head.block_raw_len);
            whole.blocks.hashes.push(head.block_hash);
            whole.blocks.records.push(record_len);
        }
    }
    whole.blocks.records.push(final_len);
    // Each record names the owners it uses: the index names each once, by id.
    for (table, rows) in [(&mut whole.users, users), (&mut whole.groups, groups)] {
        let mut rows = rows;
        rows.sort();
        rows.dedup();
        if rows.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(corrupt("records name one owner id twice, differently"));
        }
        (table.ids, table.names) = rows.into_iter().unzip();
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> RecordHead {
        RecordHead {
            block: 3,
            block_len: 100,
            block_raw_len: 4096,
            block_hash: 0xfeed,
            first_entry: 7,
            block_offset: 12288,
            data_offset: 12000,
            cbor_len: 5,
            parents: vec![b"top".to_vec(), b"sub\xff".to_vec()],
        }
    }

    #[test]
    fn a_record_reads_back_as_written_and_any_flipped_bit_is_refused() {
        let frame = encode_record(&head(), b"zstd!");
        assert_eq!(record_len(&frame), Some(frame.len() as u64));
        let (back, cbor) = decode_record(&frame).expect("a record");
        assert_eq!((back, cbor), (head(), &b"zstd!"[..]));
        for bit in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&bad).is_err(), "bit {bit} flipped went unseen");
        }
        assert!(decode_record(&frame[..frame.len() - 1]).is_err());
        // A block or the index is no record.
        assert_eq!(record_len(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]), None);
    }
}
