//! FORMAT.md §4: the index as it is serialized (CBOR, column by column) and compressed.
//!
//! [`IndexRecord`] is the compatibility boundary: changing a field changes the format. Code
//! elsewhere uses [`super::Index`], built from a record by [`super::Index::from_record`].
//!
//! Writing goes through serde (ciborium), which produces definite lengths only. Reading does
//! not: serde's CBOR reader accepts what the format does not (byte-string keys, arrays for
//! byte strings, tags, indefinite lengths), so the index is read by a strict parser over
//! ciborium's low-level decoder that takes exactly FORMAT.md §4.2, names the column of any
//! violation, and charges every allocation to a [`Budget`] before it is made.

use ciborium_ll::{Decoder, Header};
use serde::Serialize;

use super::packed::{self, Unpack};

use super::{corrupt, FormatError, Result, MAX_ENTRIES, MAX_NAME_LEN, MAX_TARGET_LEN, MAX_WINDOW_LOG};
use super::{MAX_OWNER_NAME, MAX_XATTR_NAME, MAX_XATTR_VALUE};

/// Entry kinds as stored in the index's `kinds` byte string (FORMAT.md §4).
pub const KIND_DIR: u8 = 0;
pub const KIND_FILE: u8 = 1;
pub const KIND_SYMLINK: u8 = 2;
/// Version 2: a hard link to an earlier regular file of the archive.
pub const KIND_LINK: u8 = 3;
pub const KIND_FIFO: u8 = 4;
pub const KIND_CHAR: u8 = 5;
pub const KIND_BLOCK: u8 = 6;

/// FORMAT.md §4: the index as it is serialized, column by column. This struct is the
/// compatibility boundary: changing a field changes the format. Code elsewhere uses
/// [`super::Index`], built from this by [`super::Index::from_record`].
///
/// Entries are in pre-order (a directory, then its children sorted by name bytes); per-entry
/// columns all have one element per entry, the others one per entry of a kind (`sizes` per
/// regular file, `targets` per symlink, `links` per hard link, `dev_*` per device) or one per
/// element of a table. A file's bytes follow those of the file before it in the data stream,
/// so no offset is stored.
///
/// Version 1 archives are read into this struct too: their names and targets were text, and
/// they have none of the columns version 2 added (`version` says which, and is not
/// serialized: the header carries it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexRecord {
    #[serde(skip)]
    pub version: u16,
    /// One name per entry, in one buffer.
    pub names: Names,
    #[serde(serialize_with = "packed::uints")]
    pub depths: Vec<u32>,
    #[serde(with = "serde_bytes")]
    pub kinds: Vec<u8>,
    #[serde(serialize_with = "packed::uints")]
    pub modes: Vec<u16>,
    #[serde(serialize_with = "packed::deltas")]
    pub mtime_secs: Vec<i64>,
    #[serde(serialize_with = "packed::uints")]
    pub mtime_nanos: Vec<u32>,
    #[serde(serialize_with = "packed::uints")]
    pub uids: Vec<u32>,
    #[serde(serialize_with = "packed::uints")]
    pub gids: Vec<u32>,
    #[serde(serialize_with = "packed::uints")]
    pub sizes: Vec<u64>,
    #[serde(serialize_with = "packed::strings")]
    pub targets: Vec<Vec<u8>>,
    /// Per hard link: the entry number of the regular file it is a name of.
    #[serde(serialize_with = "packed::uints")]
    pub links: Vec<u32>,
    #[serde(serialize_with = "packed::uints")]
    pub dev_majors: Vec<u32>,
    #[serde(serialize_with = "packed::uints")]
    pub dev_minors: Vec<u32>,
    pub sparse: SparseRecord,
    pub copies: CopyRecord,
    pub xattrs: XattrRecord,
    pub users: OwnerRecord,
    pub groups: OwnerRecord,
    pub blocks: BlockRecord,
}

impl Default for IndexRecord {
    fn default() -> Self {
        IndexRecord {
            version: super::VERSION,
            names: Names::default(),
            depths: Vec::new(),
            kinds: Vec::new(),
            modes: Vec::new(),
            mtime_secs: Vec::new(),
            mtime_nanos: Vec::new(),
            uids: Vec::new(),
            gids: Vec::new(),
            sizes: Vec::new(),
            targets: Vec::new(),
            links: Vec::new(),
            dev_majors: Vec::new(),
            dev_minors: Vec::new(),
            sparse: SparseRecord::default(),
            copies: CopyRecord::default(),
            xattrs: XattrRecord::default(),
            users: OwnerRecord::default(),
            groups: OwnerRecord::default(),
            // No blocks, and the final record.
            blocks: BlockRecord { records: vec![0], ..BlockRecord::default() },
        }
    }
}

impl IndexRecord {
    /// The stored bytes its entries need: files' sizes, or a sparse file's extents, and
    /// nothing for a copy. Only a sum, for a record not checked yet (the index built from it
    /// is checked).
    pub fn stored_total(&self) -> u64 {
        let sparse = &self.sparse;
        let (mut file, mut row, mut extent, mut copy) = (0usize, 0usize, 0usize, 0usize);
        let mut total = 0u64;
        for (e, &kind) in self.kinds.iter().enumerate() {
            if kind != KIND_FILE {
                continue;
            }
            let size = self.sizes.get(file).copied().unwrap_or(0);
            file += 1;
            if self.copies.files.get(copy) == Some(&(e as u32)) {
                copy += 1;
            } else if sparse.files.get(row) == Some(&(e as u32)) {
                let count = sparse.counts.get(row).copied().unwrap_or(0) as usize;
                let end = (extent + count).min(sparse.lens.len());
                total = sparse.lens[extent.min(end)..end].iter().fold(total, |t, &l| t.saturating_add(l));
                (row, extent) = (row + 1, end);
            } else {
                total = total.saturating_add(size);
            }
        }
        total
    }

    /// Appends blocks that stand for `bytes` of the data stream, never to be read (a frame of
    /// one byte each, no record before it), so that the block table adds up to what the files
    /// need: for an index made of records whose blocks are not all there.
    pub fn stand_in_blocks(&mut self, mut bytes: u64) {
        while bytes > 0 {
            let raw_len = bytes.min(super::MAX_BLOCK_RAW);
            self.blocks.lens.push(1);
            self.blocks.raw_lens.push(raw_len);
            self.blocks.hashes.push(0);
            self.blocks.records.push(0);
            bytes -= raw_len;
        }
    }

    /// Appends the entries of `run` (a record's) to these, each hard link's target numbered
    /// by `link` (the tables are the caller's).
    pub fn push_entries(&mut self, run: &IndexRecord, link: impl Fn(u32) -> u32) {
        for name in run.names.iter() {
            self.names.push(name);
        }
        self.depths.extend(&run.depths);
        self.kinds.extend(&run.kinds);
        self.modes.extend(&run.modes);
        self.mtime_secs.extend(&run.mtime_secs);
        self.mtime_nanos.extend(&run.mtime_nanos);
        self.uids.extend(&run.uids);
        self.gids.extend(&run.gids);
        self.sizes.extend(&run.sizes);
        self.targets.extend(run.targets.iter().cloned());
        self.links.extend(run.links.iter().map(|&t| link(t)));
        self.dev_majors.extend(&run.dev_majors);
        self.dev_minors.extend(&run.dev_minors);
    }
}

/// The entries' names, all in one buffer (no allocation per name, a million of them or not):
/// name `i` is `bytes[ends[i - 1]..ends[i]]`. Serialized as a packed column of strings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Names {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl Names {
    pub fn with_capacity(names: usize, bytes: usize) -> Names {
        Names { bytes: Vec::with_capacity(bytes), ends: Vec::with_capacity(names) }
    }

    /// Appends a name. The buffer of all names stays under 4 GiB: the memory budget and the
    /// caps on entries and names keep a reader far below, and a writer checks (see
    /// [`Names::fits`]).
    pub fn push(&mut self, name: &[u8]) {
        self.bytes.extend_from_slice(name);
        self.ends.push(self.bytes.len() as u32);
    }

    /// Whether `more` bytes of names still fit the buffer's 32-bit offsets.
    pub fn fits(&self, more: usize) -> bool {
        self.bytes.len() as u64 + more as u64 <= u64::from(u32::MAX)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Name `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Bytes of all names.
    pub fn total_len(&self) -> usize {
        self.bytes.len()
    }

    /// The same names with name `i` replaced (for tests and tools; it rebuilds the buffer).
    pub fn replaced(&self, i: usize, name: &[u8]) -> Names {
        self.iter().enumerate().map(|(k, n)| if k == i { name } else { n }).collect()
    }

    /// The names without the last `count`.
    pub fn truncate(&mut self, len: usize) {
        self.ends.truncate(len);
        self.bytes.truncate(self.ends.last().map_or(0, |&e| e as usize));
    }
}

impl<T: AsRef<[u8]>> FromIterator<T> for Names {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Names {
        let mut names = Names::default();
        for name in iter {
            names.push(name.as_ref());
        }
        names
    }
}

impl Serialize for Names {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        packed::strings_of(self.iter(), self.total_len() + self.len(), serializer)
    }
}

/// FORMAT.md §4.4: the data extents of sparse files. Dense files are not listed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SparseRecord {
    /// Entry numbers of the sparse regular files, increasing.
    #[serde(serialize_with = "packed::uints")]
    pub files: Vec<u32>,
    /// Per sparse file: how many of the extents below are its.
    #[serde(serialize_with = "packed::uints")]
    pub counts: Vec<u32>,
    /// Per extent: where its bytes go in the file, and how many.
    #[serde(serialize_with = "packed::uints")]
    pub offsets: Vec<u64>,
    #[serde(serialize_with = "packed::uints")]
    pub lens: Vec<u64>,
}

/// FORMAT.md §4.8: regular files whose contents are those of an earlier regular file (stored
/// once, there). Files with contents of their own are not listed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct CopyRecord {
    /// Entry numbers of the copies, increasing.
    #[serde(serialize_with = "packed::uints")]
    pub files: Vec<u32>,
    /// Per copy: the entry number of the file whose stored bytes it shares.
    #[serde(serialize_with = "packed::uints")]
    pub sources: Vec<u32>,
}

/// FORMAT.md §4.5: extended attributes (ACLs included). Entries without any are not listed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct XattrRecord {
    /// Entry numbers, increasing.
    #[serde(serialize_with = "packed::uints")]
    pub entries: Vec<u32>,
    /// Per listed entry: how many of the attributes below are its.
    #[serde(serialize_with = "packed::uints")]
    pub counts: Vec<u32>,
    #[serde(serialize_with = "packed::strings")]
    pub names: Vec<Vec<u8>>,
    #[serde(serialize_with = "packed::strings")]
    pub values: Vec<Vec<u8>>,
}

/// FORMAT.md §4.6: user or group names, by id, for the ids that have one where the archive
/// was written.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct OwnerRecord {
    /// Increasing.
    #[serde(serialize_with = "packed::uints")]
    pub ids: Vec<u32>,
    #[serde(serialize_with = "packed::strings")]
    pub names: Vec<Vec<u8>>,
}

/// FORMAT.md §4.3: the block table, one element per block in archive order.
///
/// Version 1 serialized it as arrays (its parser reads those); this struct serializes the
/// packed columns of version 2.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BlockRecord {
    /// Compressed length: the zstd frame's bytes in the archive.
    #[serde(serialize_with = "packed::uints")]
    pub lens: Vec<u64>,
    /// Decompressed length: the block's share of the data stream.
    #[serde(serialize_with = "packed::uints")]
    pub raw_lens: Vec<u64>,
    /// [`super::block_hash`] of the frame.
    #[serde(serialize_with = "packed::fixed64")]
    pub hashes: Vec<u64>,
    /// Length of the record frame before each block, and then of the final record (FORMAT.md
    /// §3.2): one more than blocks. All 0 in version 1, which has none.
    #[serde(serialize_with = "packed::uints")]
    pub records: Vec<u64>,
}

/// Serializes and compresses the index (an [`IndexRecord`], or [`super::Index::as_record`]).
/// Returns the zstd frame and the CBOR length. The CBOR is never held whole: it is serialized
/// once to count its bytes (the frame declares them, FORMAT.md §3.1), then again into the
/// compressor.
pub fn encode_index(record: &impl Serialize, level: i32) -> std::io::Result<(Vec<u8>, u64)> {
    let mut counted = Counter(0);
    ciborium::into_writer(record, &mut counted).map_err(std::io::Error::other)?;
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level)?;
    encoder.include_checksum(true)?;
    encoder.set_pledged_src_size(Some(counted.0))?;
    encoder.include_contentsize(true)?;
    ciborium::into_writer(record, &mut encoder).map_err(std::io::Error::other)?;
    Ok((encoder.finish()?, counted.0))
}

/// A writer that only counts.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Memory a reader may spend on what an archive declares (SECURITY.md §8): 48 MiB, plus 32
/// bytes for every byte of the archive, and never more than 1008 MiB; the other 16 MiB of the
/// promised 64 MiB + 32 B/byte (at most 1 GiB) are arc's own (code, stacks, buffers). Every
/// allocation whose size comes from the archive is charged here first, so a small archive
/// cannot make arc allocate much, whatever it declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    total: u64,
    left: u64,
}

impl Budget {
    pub const BASE: u64 = 48 << 20;
    pub const PER_ARCHIVE_BYTE: u64 = 32;
    pub const MAX: u64 = (1 << 30) - (16 << 20);

    /// The budget of an archive of `archive_len` bytes.
    pub fn for_archive(archive_len: u64) -> Budget {
        let total =
            archive_len.saturating_mul(Self::PER_ARCHIVE_BYTE).saturating_add(Self::BASE).min(Self::MAX);
        Budget { total, left: total }
    }

    /// Takes `bytes` from the budget for `what`, or says that the archive asks too much.
    pub fn take(&mut self, bytes: u64, what: &str) -> Result<()> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(FormatError::OverBudget { what: what.to_owned(), budget: self.total }),
        }
    }

    /// Returns `bytes` taken earlier and freed since.
    pub fn give_back(&mut self, bytes: u64) {
        self.left = self.left.saturating_add(bytes).min(self.total);
    }

    /// What is left.
    pub fn left(&self) -> u64 {
        self.left
    }
}

/// What the commands keep per entry besides the index: selection (1 byte), action (1), a
/// directory handle slot (4), and, while its block is being written, its piece (32).
const COMMAND_ENTRY_COST: u64 = 40;
/// Likewise per block: whether it is needed, its place in a plan.
const COMMAND_BLOCK_COST: u64 = 16;
/// What each entry of an index costs in memory once read, besides its name's bytes: the
/// checked [`super::Entry`], where its name ends, and what commands keep.
pub(super) const ENTRY_COST: u64 =
    (std::mem::size_of::<super::Entry>() + NAME_END_COST as usize) as u64 + COMMAND_ENTRY_COST;
/// What each name or target costs beyond its bytes, held in one buffer: where it ends.
pub(super) const NAME_END_COST: u64 = std::mem::size_of::<u32>() as u64;
/// What each regular file costs beyond its entry: its number and offset in the list of files
/// with data ([`super::Index::span`]).
pub(super) const FILE_COST: u64 = (std::mem::size_of::<u32>() + std::mem::size_of::<u64>()) as u64;
/// What a byte string (an attribute, an owner name) costs beyond its bytes: the vector that
/// holds it in the column and the one it moves into.
const VALUE_COST: u64 = std::mem::size_of::<Vec<u8>>() as u64;
/// What each block costs besides its `lens` element: two more columns, the checked
/// [`super::Block`], and what commands keep.
const BLOCK_COST: u64 =
    (2 * std::mem::size_of::<u64>() + std::mem::size_of::<super::Block>()) as u64 + COMMAND_BLOCK_COST;
/// What a row of a table keyed by entry or id costs once checked (the entry number and the
/// vector of its extents, attributes or name), besides the row's own column.
const ROW_COST: u64 = std::mem::size_of::<(u32, Vec<u8>)>() as u64;
/// What an extent costs once checked, besides its two columns.
const EXTENT_COST: u64 = 16;
/// What a copy costs once checked, besides its two columns: its row, and its row in the
/// table by source.
const COPY_COST: u64 = 16;
/// What an attribute costs once checked, besides its two columns: its name and value move into
/// it.
const XATTR_COST: u64 = 2 * std::mem::size_of::<Vec<u8>>() as u64;
/// The heap allocator's smallest block, charged for every string (so a million one-byte names
/// are charged what they really take).
const STRING_MIN: u64 = 16;

/// What [`decode_index`] and [`super::Index::from_packed`] charge to the budget for
/// `index`, from a frame of `index_len` bytes holding `raw_len` bytes of CBOR, at their peak:
/// a writer checks with it that readers will take its archive.
pub fn reader_memory(index: &super::Index, index_len: u64, raw_len: u64) -> u64 {
    let strings = |column: &mut dyn Iterator<Item = &[u8]>| -> u64 {
        column.map(|s| (s.len() as u64).max(STRING_MIN) + VALUE_COST + VALUE_COST).sum::<u64>()
    };
    let entries = &index.entries;
    let n = entries.len() as u64;
    let files = entries.iter().filter(|e| matches!(e.kind(), super::Kind::File { .. })).count() as u64;
    let symlinks = (0..entries.len()).map(|i| index.target(i).len() as u64);
    let targets = symlinks.filter(|&len| len > 0).map(|len| len + NAME_END_COST).sum::<u64>();
    let blocks = index.blocks.len() as u64;
    let window = raw_len.min(1 << MAX_WINDOW_LOG);
    let tables = &index.tables;
    let extents = tables.sparse.iter().map(|(_, x)| x.len() as u64).sum::<u64>();
    let xattrs = tables.xattrs.iter().flat_map(|(_, x)| x);
    let xattr_count = xattrs.clone().count() as u64;
    let owner_table = |table: &super::NameTable| {
        table.len() as u64 * (4 + ROW_COST) + strings(&mut table.iter().map(|(_, name)| name.as_slice()))
    };
    index_len
        + window
        + raw_len
        + index.names_len() as u64
        + n * ENTRY_COST
        + files * FILE_COST
        + 8
        + targets
        + tables.sparse.len() as u64 * (4 + ROW_COST + 4)
        + tables.copies.len() as u64 * (4 + COPY_COST + 4)
        + extents * (8 + 8 + EXTENT_COST)
        + tables.xattrs.len() as u64 * (4 + ROW_COST + 4)
        + strings(&mut xattrs.clone().map(|x| x.name.as_slice()))
        + xattr_count * XATTR_COST
        + strings(&mut xattrs.map(|x| x.value.as_slice()))
        + owner_table(&tables.users)
        + owner_table(&tables.groups)
        + blocks * (8 + BLOCK_COST)
        + blocks * 16
        + (blocks + 1) * 8
}

/// The tables' columns, read into vectors (they are small, or as large as what they describe),
/// each charged before it is allocated.
impl Packed {
    /// A packed column of unsigned integers of at most `max`, each made a `T` by `convert`,
    /// charged `extra` more per element for what it stands for.
    fn uints<T>(
        &self,
        col: Col,
        extra: u64,
        max: u64,
        convert: impl Fn(u64) -> T,
        budget: &mut Budget,
    ) -> Result<Vec<T>> {
        let bytes = self.column(col);
        let count = count_uints(bytes);
        charge(budget, col, count, std::mem::size_of::<T>() as u64 + extra)?;
        let mut unpack = Unpack::new(bytes);
        let mut values = Vec::with_capacity(count);
        while !unpack.is_done() {
            values.push(convert(unpack.uint(max).map_err(|why| col_error(col, &why))?));
        }
        Ok(values)
    }

    /// A packed column of 64-bit values.
    fn fixed64(&self, col: Col, budget: &mut Budget) -> Result<Vec<u64>> {
        let bytes = self.column(col);
        if bytes.len() % 8 != 0 {
            return Err(col_error(col, "ends inside a value"));
        }
        charge(budget, col, bytes.len() / 8, 8)?;
        let mut unpack = Unpack::new(bytes);
        let mut values = Vec::with_capacity(bytes.len() / 8);
        while !unpack.is_done() {
            values.push(unpack.fixed64().map_err(|why| col_error(col, &why))?);
        }
        Ok(values)
    }

    /// A packed column of byte strings of at most `max` bytes each, counted first, then each
    /// charged for its bytes as it is copied.
    fn strings(&self, col: Col, extra: u64, max: usize, budget: &mut Budget) -> Result<Vec<Vec<u8>>> {
        let bytes = self.column(col);
        let (count, _) = count_strings(bytes, col, max)?;
        charge(budget, col, count, std::mem::size_of::<Vec<u8>>() as u64 + extra)?;
        let mut unpack = Unpack::new(bytes);
        let mut values = Vec::with_capacity(count);
        while !unpack.is_done() {
            let string = unpack.string(max).map_err(|why| col_error(col, &why))?;
            budget.take((string.len() as u64).max(STRING_MIN) + VALUE_COST, &col.shown())?;
            values.push(string.to_vec());
        }
        Ok(values)
    }

    /// Every column as a record, values read but their consistency not checked (for tools and
    /// tests that take an index apart; [`super::Index::from_packed`] is the reader's way).
    pub fn record(&self, budget: &mut Budget) -> Result<IndexRecord> {
        let (count, total) = count_strings(self.column(Col::Names), Col::Names, MAX_NAME_LEN)?;
        charge(budget, Col::Names, count, NAME_END_COST)?;
        budget.take(total as u64, &Col::Names.shown())?;
        let mut names = Names::with_capacity(count, total);
        let mut unpack = Unpack::new(self.column(Col::Names));
        while !unpack.is_done() {
            names.push(unpack.string(MAX_NAME_LEN).map_err(|why| col_error(Col::Names, &why))?);
        }
        let bytes = self.column(Col::MtimeSecs);
        charge(budget, Col::MtimeSecs, count_uints(bytes), 8)?;
        let mut unpack = Unpack::new(bytes);
        let mut mtime_secs = Vec::new();
        while !unpack.is_done() {
            mtime_secs.push(unpack.delta().map_err(|why| col_error(Col::MtimeSecs, &why))?);
        }
        let kinds = self.column(Col::Kinds);
        charge(budget, Col::Kinds, kinds.len(), 1)?;
        let u32s = |col, budget: &mut Budget| self.uints(col, 0, u32::MAX.into(), |v| v as u32, budget);
        Ok(IndexRecord {
            version: self.version,
            names,
            depths: u32s(Col::Depths, budget)?,
            kinds: kinds.to_vec(),
            modes: self.uints(Col::Modes, 0, u16::MAX.into(), |v| v as u16, budget)?,
            mtime_secs,
            mtime_nanos: u32s(Col::MtimeNanos, budget)?,
            uids: u32s(Col::Uids, budget)?,
            gids: u32s(Col::Gids, budget)?,
            sizes: self.uints(Col::Sizes, 0, u64::MAX, |v| v, budget)?,
            targets: self.strings(Col::Targets, 0, MAX_TARGET_LEN, budget)?,
            links: u32s(Col::Links, budget)?,
            dev_majors: u32s(Col::DevMajors, budget)?,
            dev_minors: u32s(Col::DevMinors, budget)?,
            sparse: self.sparse(budget)?,
            copies: self.copies(budget)?,
            xattrs: self.xattrs(budget)?,
            users: self.owners(false, budget)?,
            groups: self.owners(true, budget)?,
            blocks: self.blocks(budget)?,
        })
    }

    pub fn sparse(&self, budget: &mut Budget) -> Result<SparseRecord> {
        Ok(SparseRecord {
            files: self.uints(Col::SparseFiles, ROW_COST, u32::MAX.into(), |v| v as u32, budget)?,
            counts: self.uints(Col::SparseCounts, 0, u32::MAX.into(), |v| v as u32, budget)?,
            offsets: self.uints(Col::SparseOffsets, 0, u64::MAX, |v| v, budget)?,
            lens: self.uints(Col::SparseLens, EXTENT_COST, u64::MAX, |v| v, budget)?,
        })
    }

    pub fn copies(&self, budget: &mut Budget) -> Result<CopyRecord> {
        Ok(CopyRecord {
            files: self.uints(Col::CopyFiles, COPY_COST, u32::MAX.into(), |v| v as u32, budget)?,
            sources: self.uints(Col::CopySources, 0, u32::MAX.into(), |v| v as u32, budget)?,
        })
    }

    pub fn xattrs(&self, budget: &mut Budget) -> Result<XattrRecord> {
        Ok(XattrRecord {
            entries: self.uints(Col::XattrEntries, ROW_COST, u32::MAX.into(), |v| v as u32, budget)?,
            counts: self.uints(Col::XattrCounts, 0, u32::MAX.into(), |v| v as u32, budget)?,
            names: self.strings(Col::XattrNames, XATTR_COST, MAX_XATTR_NAME, budget)?,
            values: self.strings(Col::XattrValues, 0, MAX_XATTR_VALUE, budget)?,
        })
    }

    /// The user (`groups` false) or group names.
    pub fn owners(&self, groups: bool, budget: &mut Budget) -> Result<OwnerRecord> {
        let (ids, names) =
            if groups { (Col::GroupIds, Col::GroupNames) } else { (Col::UserIds, Col::UserNames) };
        Ok(OwnerRecord {
            ids: self.uints(ids, ROW_COST, u32::MAX.into(), |v| v as u32, budget)?,
            names: self.strings(names, 0, MAX_OWNER_NAME, budget)?,
        })
    }

    pub fn blocks(&self, budget: &mut Budget) -> Result<BlockRecord> {
        Ok(BlockRecord {
            lens: self.uints(Col::BlockLens, BLOCK_COST, u64::MAX, |v| v, budget)?,
            raw_lens: self.uints(Col::BlockRawLens, 0, u64::MAX, |v| v, budget)?,
            hashes: self.fixed64(Col::BlockHashes, budget)?,
            records: self.uints(Col::BlockRecords, 0, u64::MAX, |v| v, budget)?,
        })
    }
}

/// A violation in packed column `col`, in words.
pub(super) fn col_error(col: Col, why: &str) -> FormatError {
    corrupt(format!("index: {}: {why}", col.shown()))
}

/// Elements of a packed column of integers: every integer ends with the one byte whose high
/// bit is clear.
pub(super) fn count_uints(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0x80 == 0).count()
}

/// Elements and their bytes in all of a packed column of strings of at most `max` bytes.
pub(super) fn count_strings(bytes: &[u8], col: Col, max: usize) -> Result<(usize, usize)> {
    let mut unpack = Unpack::new(bytes);
    let (mut count, mut total) = (0usize, 0usize);
    while !unpack.is_done() {
        total += unpack.string(max).map_err(|why| col_error(col, &why))?.len();
        count += 1;
    }
    Ok((count, total))
}

/// Charges `count` elements of `size` bytes each to the budget, after checking the count
/// against the cap on elements.
fn charge(budget: &mut Budget, col: Col, count: usize, size: u64) -> Result<()> {
    if count > MAX_ENTRIES {
        return Err(col_error(col, &format!("{count} elements is over the limit of {MAX_ENTRIES}")));
    }
    budget.take((count as u64).saturating_mul(size), &col.shown())
}

/// A packed column of the index (FORMAT.md §4.7), in the order of the CBOR map: what
/// [`Packed::column`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Names,
    Depths,
    Kinds,
    Modes,
    MtimeSecs,
    MtimeNanos,
    Uids,
    Gids,
    Sizes,
    Targets,
    Links,
    DevMajors,
    DevMinors,
    SparseFiles,
    SparseCounts,
    SparseOffsets,
    SparseLens,
    CopyFiles,
    CopySources,
    XattrEntries,
    XattrCounts,
    XattrNames,
    XattrValues,
    UserIds,
    UserNames,
    GroupIds,
    GroupNames,
    BlockLens,
    BlockRawLens,
    BlockHashes,
    BlockRecords,
}

/// Every column's name in messages, in map order (`map.key` for a nested map's).
const COLUMN_NAMES: [&str; 31] = [
    "names",
    "depths",
    "kinds",
    "modes",
    "mtime_secs",
    "mtime_nanos",
    "uids",
    "gids",
    "sizes",
    "targets",
    "links",
    "dev_majors",
    "dev_minors",
    "sparse.files",
    "sparse.counts",
    "sparse.offsets",
    "sparse.lens",
    "copies.files",
    "copies.sources",
    "xattrs.entries",
    "xattrs.counts",
    "xattrs.names",
    "xattrs.values",
    "users.ids",
    "users.names",
    "groups.ids",
    "groups.names",
    "lens",
    "raw_lens",
    "hashes",
    "records",
];

impl Col {
    /// The column as messages name it: `index column depths`.
    pub fn shown(self) -> String {
        format!("index column {}", COLUMN_NAMES[self as usize])
    }
}

/// The index as decoded: its CBOR, whose structure is checked (FORMAT.md §4.2: the map, the
/// keys, one byte string per column), and where each packed column lies in it. The values are
/// read and checked by [`super::Index::from_packed`], in one pass over all columns at once,
/// without a vector per column. A version-1 index is parsed by its own rules and held in the
/// version-2 form (`version` says which it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub version: u16,
    cbor: Vec<u8>,
    columns: Vec<std::ops::Range<usize>>,
}

impl Packed {
    /// The bytes of packed column `col`.
    pub fn column(&self, col: Col) -> &[u8] {
        &self.cbor[self.columns[col as usize].clone()]
    }

    /// The CBOR itself.
    pub fn cbor(&self) -> &[u8] {
        &self.cbor
    }

    /// Bytes of the CBOR, charged to the budget by [`decode_index`] and given back by its
    /// caller once the index is built.
    pub fn cbor_len(&self) -> u64 {
        self.cbor.len() as u64
    }
}

/// Decompresses and parses the index frame after [`super::Trailer::check`] passed. The frame
/// must be one zstd frame declaring `raw_len` bytes (FORMAT.md §3.1), and its CBOR exactly
/// `raw_len` bytes of FORMAT.md §4.2. The CBOR's bytes are charged to `budget` before they
/// are decompressed (the caller gives them back when done with the [`Packed`]); garbage fails
/// at the index map's first byte, before the rest is decompressed.
pub fn decode_index(frame: &[u8], raw_len: u64, version: u16, budget: &mut Budget) -> Result<Packed> {
    use zstd::zstd_safe::{get_error_name, DCtx, DParameter, InBuffer, OutBuffer};
    let index_error = |e: &dyn std::fmt::Display| corrupt(format!("index: {e}"));
    let zstd_error =
        |code| index_error(&format!("{} (the trailer says {raw_len} bytes)", get_error_name(code)));
    let header = super::frame::check(frame, raw_len, "the trailer").map_err(|e| index_error(&e))?;
    // The decoder keeps a window of history: charged like any other allocation, and given
    // back when the index is decompressed.
    let window = header.window_size.min(raw_len);
    budget.take(window, "the index's zstd window")?;
    budget.take(raw_len, "the index's CBOR")?;
    // Straight into a buffer of the trailer's size (charged above): zstd's stable output
    // buffer, which the decoder writes no further than; a frame that expands to more is an
    // error.
    let mut cbor = Vec::with_capacity(raw_len as usize);
    let mut decoder = DCtx::try_create().ok_or_else(|| index_error(&"no memory for a zstd decoder"))?;
    decoder.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG)).map_err(zstd_error)?;
    decoder.set_parameter(DParameter::StableOutBuffer(true)).map_err(zstd_error)?;
    // The first bytes must start the index map: fed its header, then one zstd block at a
    // time (at most 128 KiB out each) until they are out, a bomb stops there, with only its
    // first blocks decompressed. Then all the rest at once.
    let head = raw_len.min(4096) as usize;
    let (mut fed, mut ended) = (0, false);
    while !ended {
        let end = match (cbor.len() < head, fed) {
            (true, 0) => header.len,
            (true, _) => super::frame::block_end(frame, fed),
            (false, _) => frame.len(),
        };
        let mut input = InBuffer::around(&frame[..end]);
        input.set_pos(fed);
        let before = (fed, cbor.len());
        let mut output = OutBuffer::around_pos(&mut cbor, before.1);
        ended = decoder.decompress_stream(&mut output, &mut input).map_err(zstd_error)? == 0;
        fed = input.pos();
        if (fed, cbor.len()) == before {
            // Neither read nor wrote: the frame ends early.
            break;
        }
        if before.1 < head && cbor.len() >= head {
            Parser::new(&cbor[..head], &mut *budget).map(map_len(version), "").or_else(|e| match e {
                FormatError::Corrupt(ref why) if why == ENDS_EARLY && (head as u64) < raw_len => Ok(()),
                e => Err(e),
            })?;
        }
    }
    if cbor.len() < head {
        return Err(index_error(&format!("expands to fewer bytes than the trailer's {raw_len}")));
    }
    if !ended || cbor.len() as u64 != raw_len {
        return Err(index_error(&format!("expands to {} bytes, trailer says {raw_len}", cbor.len())));
    }
    drop(decoder);
    budget.give_back(window);
    packed(cbor, version, budget)
}

/// Parses CBOR that is already decompressed, as [`decode_index`] does (for tools and tests
/// that work on the index's own bytes). Its bytes are charged as [`decode_index`] charges them.
pub fn decode_cbor(cbor: &[u8], version: u16, budget: &mut Budget) -> Result<Packed> {
    budget.take(cbor.len() as u64, "the index's CBOR")?;
    packed(cbor.to_vec(), version, budget)
}

fn map_len(version: u16) -> usize {
    if version == 1 {
        9
    } else {
        19
    }
}

const ENDS_EARLY: &str = "index: index ends early";

/// The structure of `cbor` checked and its columns found; a version-1 index is parsed and
/// rewritten in version 2's packed form.
fn packed(cbor: Vec<u8>, version: u16, budget: &mut Budget) -> Result<Packed> {
    if version == 1 {
        let left = budget.left();
        let record = Parser::new(&cbor, &mut *budget).record_v1()?;
        let mut again = Vec::new();
        ciborium::into_writer(&record, &mut again).map_err(|e| corrupt(format!("index: {e}")))?;
        budget.take(again.len() as u64, "the index's CBOR")?;
        // The record's columns and the old CBOR are freed: their charges come back.
        let freed = left - budget.left() - again.len() as u64 + cbor.len() as u64;
        drop(record);
        drop(cbor);
        budget.give_back(freed);
        let mut packed = packed(again, 2, budget)?;
        packed.version = 1;
        return Ok(packed);
    }
    let mut parser = Parser::new(&cbor, budget);
    let columns = parser.columns()?;
    if parser.at != cbor.len() {
        return Err(corrupt("index: bytes follow the index map"));
    }
    Ok(Packed { version, cbor, columns })
}

/// The strict reader of FORMAT.md §4.2 over the decompressed CBOR: a map of exactly the
/// columns, as text keys in the order of [`IndexRecord`]'s fields, each (version 2) one byte
/// string, or (version 1) an array of definite length of items of exactly its type; no tags,
/// no indefinite lengths, no floats.
struct Parser<'a, 'b> {
    cbor: &'a [u8],
    /// Bytes parsed so far.
    at: usize,
    budget: &'b mut Budget,
}

impl<'a, 'b> Parser<'a, 'b> {
    fn new(cbor: &'a [u8], budget: &'b mut Budget) -> Parser<'a, 'b> {
        Parser { cbor, at: 0, budget }
    }

    /// Version 2: the map of columns, and where each column's bytes are.
    fn columns(&mut self) -> Result<Vec<std::ops::Range<usize>>> {
        self.map(map_len(2), "")?;
        let mut columns = Vec::with_capacity(COLUMN_NAMES.len());
        for (k, &name) in COLUMN_NAMES.iter().enumerate() {
            // The nested maps start before their first column.
            let nested = match k {
                13 => Some(("sparse", 4)),
                17 => Some(("copies", 2)),
                19 => Some(("xattrs", 4)),
                23 => Some(("users", 2)),
                25 => Some(("groups", 2)),
                27 => Some(("blocks", 4)),
                _ => None,
            };
            if let Some((map, len)) = nested {
                self.key(map)?;
                self.map(len, &format!("index column {map}"))?;
            }
            columns.push(self.packed(name)?);
        }
        Ok(columns)
    }

    /// The packed column `name` (FORMAT.md §4.7): its key, then one byte string.
    fn packed(&mut self, name: &str) -> Result<std::ops::Range<usize>> {
        // A column of a nested map is named `map.key` in messages; its key is `key`.
        self.key(name.rsplit('.').next().unwrap_or(name))?;
        let column = format!("index column {name}");
        let len = match self.header(&column)? {
            Header::Bytes(Some(len)) => len,
            other => {
                return Err(
                    self.error(&column, &format!("expected a byte string, found {}", describe(&other)))
                )
            }
        };
        self.take(len).map(|(start, _)| start..start + len)
    }

    /// The next `len` bytes: where they start, and they.
    fn take(&mut self, len: usize) -> Result<(usize, &'a [u8])> {
        if len as u64 > self.remaining() {
            return Err(corrupt(ENDS_EARLY));
        }
        let start = self.at;
        self.at += len;
        Ok((start, &self.cbor[start..start + len]))
    }

    /// Version 1 (FORMAT.md §9): names and targets as text, no owners, links, devices, extents
    /// or attributes.
    fn record_v1(mut self) -> Result<IndexRecord> {
        self.map(9, "")?;
        let EntryColumns { names, depths, kinds, modes, mtime_secs, mtime_nanos } =
            self.entry_columns_v1()?;
        let sizes = self.column("sizes", 0, |p, column| p.uint(column, u64::MAX))?;
        let targets = self.column("targets", 0, |p, column| p.text(column, MAX_TARGET_LEN))?;
        let blocks = self.blocks_v1()?;
        if self.at != self.cbor.len() {
            return Err(corrupt("index: bytes follow the index map"));
        }
        Ok(IndexRecord {
            version: 1,
            names,
            depths,
            kinds,
            modes,
            mtime_secs,
            mtime_nanos,
            sizes,
            targets,
            blocks,
            ..IndexRecord::default()
        })
    }

    /// Version 1's first six columns, arrays of CBOR items.
    fn entry_columns_v1(&mut self) -> Result<EntryColumns> {
        Ok(EntryColumns {
            names: self.column("names", 0, |p, column| p.text(column, MAX_NAME_LEN))?.into_iter().collect(),
            depths: self.column("depths", 0, Self::u32)?,
            kinds: self.byte_string("kinds")?,
            modes: self.column("modes", 0, |p, column| p.uint(column, u16::MAX.into()).map(|v| v as u16))?,
            mtime_secs: self.column("mtime_secs", 0, Self::int)?,
            mtime_nanos: self.column("mtime_nanos", 0, Self::u32)?,
        })
    }

    /// Version 1's block table, arrays of integers.
    fn blocks_v1(&mut self) -> Result<BlockRecord> {
        self.key("blocks")?;
        self.map(3, "index column blocks")?;
        let lens = self.column("lens", 0, |p, column| p.uint(column, u64::MAX))?;
        let raw_lens = self.column("raw_lens", 0, |p, column| p.uint(column, u64::MAX))?;
        let hashes = self.column("hashes", 0, |p, column| p.uint(column, u64::MAX))?;
        // Version 1 has no records.
        let records = vec![0; lens.len() + 1];
        Ok(BlockRecord { lens, raw_lens, hashes, records })
    }

    fn u32(&mut self, column: &str) -> Result<u32> {
        self.uint(column, u32::MAX.into()).map(|v| v as u32)
    }

    /// The next header; tags are refused wherever they stand.
    fn header(&mut self, column: &str) -> Result<Header> {
        let at = self.at;
        let mut rest = &self.cbor[at..];
        let mut decoder = Decoder::from(&mut rest);
        let header = decoder.pull();
        self.at += decoder.offset();
        match header {
            Ok(Header::Tag(tag)) => Err(self.error(column, &format!("a tag ({tag}) at byte {at}"))),
            Ok(header) => Ok(header),
            Err(ciborium_ll::Error::Syntax(_)) => Err(corrupt(format!("index: malformed CBOR at byte {at}"))),
            Err(ciborium_ll::Error::Io(_)) => Err(corrupt(ENDS_EARLY)),
        }
    }

    /// A violation in `column` (empty for the index's own map).
    fn error(&self, column: &str, what: &str) -> FormatError {
        match column {
            "" => corrupt(format!("index: {what}")),
            _ => corrupt(format!("index: {column}: {what}")),
        }
    }

    /// A map of exactly `len` pairs.
    fn map(&mut self, len: usize, column: &str) -> Result<()> {
        match self.header(column)? {
            Header::Map(Some(n)) if n == len => Ok(()),
            other => {
                Err(self
                    .error(column, &format!("expected a map of {len} columns, found {}", describe(&other))))
            }
        }
    }

    /// The text key `name`.
    fn key(&mut self, name: &str) -> Result<()> {
        let column = format!("index column {name}");
        let expected = |found: &str| format!("expected the key \"{name}\", found {found}");
        match self.header(&column)? {
            Header::Text(Some(len)) if len == name.len() => {
                let (_, found) = self.take(len)?;
                if found != name.as_bytes() {
                    let found = format!("\"{}\"", String::from_utf8_lossy(found));
                    return Err(self.error(&column, &expected(&found)));
                }
                Ok(())
            }
            other => Err(self.error(&column, &expected(&describe(&other)))),
        }
    }

    /// Bytes left in the CBOR: no declared length may be larger, since every item takes at
    /// least one byte.
    fn remaining(&self) -> u64 {
        (self.cbor.len() - self.at) as u64
    }

    /// The column `name`: its key, then an array of definite length whose items `item` reads.
    /// Its memory, and `extra` bytes per element for what the elements stand for, are charged
    /// before any element is read.
    fn column<T>(
        &mut self,
        name: &str,
        extra: u64,
        mut item: impl FnMut(&mut Self, &str) -> Result<T>,
    ) -> Result<Vec<T>> {
        // A column of a nested map is named `map.key` in messages; its key is `key`.
        self.key(name.rsplit('.').next().unwrap_or(name))?;
        let column = format!("index column {name}");
        let len = match self.header(&column)? {
            Header::Array(Some(len)) => len,
            other => {
                return Err(self.error(&column, &format!("expected an array, found {}", describe(&other))))
            }
        };
        if len > MAX_ENTRIES {
            return Err(self.error(&column, &format!("{len} elements is over the limit of {MAX_ENTRIES}")));
        }
        if len as u64 > self.remaining() {
            return Err(self.error(&column, &format!("declares {len} elements in fewer bytes")));
        }
        let size = std::mem::size_of::<T>() as u64 + extra;
        self.budget.take((len as u64).saturating_mul(size), &column)?;
        let mut values = Vec::with_capacity(len);
        for _ in 0..len {
            values.push(item(self, &column)?);
        }
        Ok(values)
    }

    /// The byte string column `name` (`kinds`).
    fn byte_string(&mut self, name: &str) -> Result<Vec<u8>> {
        self.key(name)?;
        let column = format!("index column {name}");
        let len = match self.header(&column)? {
            Header::Bytes(Some(len)) => len,
            other => {
                return Err(
                    self.error(&column, &format!("expected a byte string, found {}", describe(&other)))
                )
            }
        };
        if len > MAX_ENTRIES || len as u64 > self.remaining() {
            return Err(self.error(&column, &format!("{len} bytes is more than the index holds")));
        }
        self.budget.take(len as u64, &column)?;
        Ok(self.take(len)?.1.to_vec())
    }

    /// Version 1's text string of at most `max` bytes, as bytes.
    fn text(&mut self, column: &str, max: usize) -> Result<Vec<u8>> {
        let len = match self.header(column)? {
            Header::Text(Some(len)) => len,
            other => {
                return Err(self.error(column, &format!("expected a text string, found {}", describe(&other))))
            }
        };
        if len > max {
            return Err(self.error(column, &format!("a string of {len} bytes is longer than {max}")));
        }
        self.budget.take((len as u64).max(STRING_MIN) + VALUE_COST, column)?;
        let (_, bytes) = self.take(len)?;
        if std::str::from_utf8(bytes).is_err() {
            return Err(self.error(column, "a string is not UTF-8"));
        }
        Ok(bytes.to_vec())
    }

    /// An unsigned integer of at most `max`.
    fn uint(&mut self, column: &str, max: u64) -> Result<u64> {
        match self.header(column)? {
            Header::Positive(value) if value <= max => Ok(value),
            Header::Positive(value) => Err(self.error(column, &format!("{value} is over {max}"))),
            other => {
                Err(self.error(column, &format!("expected an unsigned integer, found {}", describe(&other))))
            }
        }
    }

    /// A signed 64-bit integer.
    fn int(&mut self, column: &str) -> Result<i64> {
        match self.header(column)? {
            Header::Positive(value) => {
                i64::try_from(value).map_err(|_| self.error(column, "integer out of range"))
            }
            // CBOR's negative integers are -1 - n.
            Header::Negative(n) => {
                i64::try_from(n).map(|n| -1 - n).map_err(|_| self.error(column, "integer out of range"))
            }
            other => Err(self.error(column, &format!("expected an integer, found {}", describe(&other)))),
        }
    }
}

/// The columns every version starts with.
struct EntryColumns {
    names: Names,
    depths: Vec<u32>,
    kinds: Vec<u8>,
    modes: Vec<u16>,
    mtime_secs: Vec<i64>,
    mtime_nanos: Vec<u32>,
}

/// A header in words, for messages.
fn describe(header: &Header) -> String {
    match header {
        Header::Positive(n) => format!("the integer {n}"),
        Header::Negative(n) => format!("the integer -{}", u128::from(*n) + 1),
        Header::Float(_) => "a float".to_owned(),
        Header::Simple(_) => "a simple value".to_owned(),
        Header::Tag(_) => "a tag".to_owned(),
        Header::Break => "a break".to_owned(),
        Header::Bytes(None) | Header::Text(None) | Header::Array(None) | Header::Map(None) => {
            "an item of indefinite length".to_owned()
        }
        Header::Bytes(Some(_)) => "a byte string".to_owned(),
        Header::Text(Some(_)) => "a text string".to_owned(),
        Header::Array(Some(n)) => format!("an array of {n}"),
        Header::Map(Some(n)) => format!("a map of {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::VERSION;

    fn budget() -> Budget {
        Budget::for_archive(1 << 20)
    }

    /// A frame as arc writes one, of `cbor`.
    fn frame_of(cbor: &[u8]) -> Vec<u8> {
        let mut compressor = zstd::bulk::Compressor::new(3).expect("compressor");
        compressor.include_checksum(true).expect("checksum flag");
        compressor.compress(cbor).expect("compress")
    }

    fn record() -> IndexRecord {
        IndexRecord {
            names: ["root", "a"].into_iter().collect(),
            depths: vec![0, 1],
            kinds: vec![KIND_DIR, KIND_FILE],
            modes: vec![0o755, 0o644],
            mtime_secs: vec![1, -2],
            mtime_nanos: vec![3, 999_999_999],
            uids: vec![0, 1000],
            gids: vec![0, 100],
            sizes: vec![5],
            xattrs: XattrRecord {
                entries: vec![1],
                counts: vec![1],
                names: vec!["user.a".into()],
                values: vec![b"\x00\xff".to_vec()],
            },
            users: OwnerRecord { ids: vec![0], names: vec!["root".into()] },
            blocks: BlockRecord {
                lens: vec![14],
                raw_lens: vec![5],
                hashes: vec![u64::MAX],
                records: vec![0; 2],
            },
            ..IndexRecord::default()
        }
    }

    /// Where the test record's blocks end.
    const DATA_END: u64 = crate::format::HEADER_LEN + 14;

    /// The index in `frame`, decoded and checked.
    fn decoded(frame: &[u8], raw_len: u64) -> Result<crate::format::Index> {
        let mut budget = budget();
        crate::format::Index::from_packed(
            &decode_index(frame, raw_len, VERSION, &mut budget)?,
            DATA_END,
            &mut budget,
            crate::format::Keep::All,
        )
    }

    #[test]
    fn index_round_trip() {
        let record = record();
        let (frame, raw_len) = encode_index(&record, 3).expect("encode");
        let index = decoded(&frame, raw_len).expect("decode");
        assert_eq!(index.clone().into_record(), record);
        assert_eq!(crate::format::Index::from_record(record, DATA_END), Ok(index));
        assert!(decode_index(&frame, raw_len - 1, VERSION, &mut budget()).is_err());
        assert!(decode_index(&frame, raw_len + 1, VERSION, &mut budget()).is_err());
    }

    #[test]
    fn index_bombs_fail_early() {
        // 64 MiB of zeros in a tiny frame: not CBOR of an index, refused at the first byte
        // whatever the trailer claims, without decompressing the rest: its last block,
        // damaged, is never reached (that would be a zstd error, not the index map's).
        let zeros = vec![0u8; 64 << 20];
        let mut frame = frame_of(&zeros);
        assert!(frame.len() < 10_000);
        let last = frame.len() - 4 - 1;
        frame[last] ^= 0xff;
        match decode_index(&frame, 64 << 20, VERSION, &mut budget()) {
            Err(FormatError::Corrupt(why)) => assert!(why.contains("map"), "{why}"),
            other => panic!("expected the index map refused, got {other:?}"),
        }
        // A valid index followed by more bytes than the trailer says is refused too.
        let (frame, raw_len) = encode_index(&IndexRecord::default(), 3).expect("encode");
        assert!(decode_index(&frame, raw_len, VERSION, &mut budget()).is_ok());
        assert!(decode_index(&frame, raw_len + 5, VERSION, &mut budget()).is_err());
    }

    /// What decoding `cbor` says is wrong with it.
    fn refused(cbor: &[u8]) -> String {
        match decoded(&frame_of(cbor), cbor.len() as u64) {
            Err(FormatError::Corrupt(why)) => why,
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    /// The CBOR of the test record with `from` (which must occur once) replaced by `to`.
    fn patched(from: &[u8], to: &[u8]) -> Vec<u8> {
        let mut cbor = Vec::new();
        ciborium::into_writer(&record(), &mut cbor).expect("serialize");
        let at = cbor.windows(from.len()).position(|w| w == from).expect("pattern");
        assert_eq!(cbor.windows(from.len()).filter(|w| *w == from).count(), 1, "pattern not unique");
        [&cbor[..at], to, &cbor[at + from.len()..]].concat()
    }

    #[test]
    fn cbor_errors_are_words() {
        // The map of columns, whose first key never comes.
        assert_eq!(refused(&[0xb3]), "index: index ends early");
        // 0x1c is a reserved additional-information value: not CBOR at all.
        assert_eq!(refused(&[0x1c]), "index: malformed CBOR at byte 0");
        // An integer where the map of columns should be.
        assert_eq!(refused(&[0x05]), "index: expected a map of 19 columns, found the integer 5");
        for why in [refused(&[0xb3]), refused(&[0x1c]), refused(&[0x05])] {
            assert!(!why.contains("Error {") && !why.contains("Syntax("), "{why}");
        }
    }

    #[test]
    fn only_the_types_of_the_format_are_accepted() {
        // Keys as byte strings (0x45 "names" -> 0x65 is text; 0x45 is bytes).
        let why = refused(&patched(b"\xb3\x65names", b"\xb3\x45names"));
        assert!(why.contains("index column names: expected the key \"names\""), "{why}");
        // kinds as an array of integers rather than a byte string.
        let why = refused(&patched(b"\x65kinds\x42\x00\x01", b"\x65kinds\x82\x00\x01"));
        assert_eq!(why, "index: index column kinds: expected a byte string, found an array of 2");
        // A packed column (depths: 0, 1) as an array, as version 1 had it.
        let why = refused(&patched(b"\x66depths\x42\x00\x01", b"\x66depths\x82\x00\x01"));
        assert_eq!(why, "index: index column depths: expected a byte string, found an array of 2");
        // A tag before a value and before a key. (modes 0o755, 0o644 packed: ed 03 a4 03.)
        let why = refused(&patched(b"\x65modes\x44\xed\x03", b"\x65modes\xc1\x44\xed\x03"));
        assert!(why.contains("index column modes: a tag (1)"), "{why}");
        let why = refused(&patched(b"\x65modes", b"\xd9\xd9\xf7\x65modes"));
        assert!(why.contains("a tag (55799)"), "{why}");
        // Indefinite lengths.
        let why = refused(&patched(b"\x65sizes\x41\x05", b"\x65sizes\x5f\x41\x05\xff"));
        assert_eq!(
            why,
            "index: index column sizes: expected a byte string, found an item of indefinite length"
        );
        // A mode that does not fit 16 bits; an integer in a longer form than needed; a
        // column that ends inside an integer.
        let why = refused(&patched(b"\x65modes\x44\xed\x03\xa4\x03", b"\x65modes\x44\x80\x80\x04\x05"));
        assert_eq!(why, "index: index column modes: 65536 is over 65535");
        let why = refused(&patched(b"\x65sizes\x41\x05", b"\x65sizes\x42\x85\x00"));
        assert_eq!(why, "index: index column sizes: an integer in a longer form than needed");
        let why = refused(&patched(b"\x65sizes\x41\x05", b"\x65sizes\x41\x85"));
        assert_eq!(why, "index: index column sizes: ends inside an integer");
        // An extra item after the map.
        let mut extra = Vec::new();
        ciborium::into_writer(&record(), &mut extra).expect("serialize");
        extra.push(0x00);
        assert_eq!(
            decode_cbor(&extra, VERSION, &mut budget()).expect_err("extra"),
            corrupt("index: bytes follow the index map")
        );
        assert_eq!(refused(&extra), "index: bytes follow the index map");
    }

    #[test]
    fn version_1_is_read_with_text_names() {
        // Version 1's map: 9 columns, names and targets as text.
        let mut v1 = Vec::new();
        v1.push(0xa9);
        for (key, value) in [
            ("names", &b"\x81\x61r"[..]),
            ("depths", b"\x81\x00"),
            ("kinds", b"\x41\x00"),
            ("modes", b"\x81\x19\x01\xed"),
            ("mtime_secs", b"\x81\x00"),
            ("mtime_nanos", b"\x81\x00"),
            ("sizes", b"\x80"),
            ("targets", b"\x80"),
        ] {
            v1.push(0x60 + key.len() as u8);
            v1.extend_from_slice(key.as_bytes());
            v1.extend_from_slice(value);
        }
        v1.extend_from_slice(b"\x66blocks\xa3\x64lens\x80\x68raw_lens\x80\x66hashes\x80");
        let mut room = budget();
        let packed = decode_cbor(&v1, 1, &mut room).expect("version 1");
        let index = crate::format::Index::from_packed(
            &packed,
            crate::format::HEADER_LEN,
            &mut room,
            crate::format::Keep::All,
        )
        .expect("a valid version 1 index");
        assert_eq!((packed.version, index.name(0), index.tables.owners), (1, &b"r"[..], false));
        // The same bytes are not version 2, and version 2 is not version 1.
        assert!(decode_cbor(&v1, 2, &mut budget()).is_err());
        let mut v2 = Vec::new();
        ciborium::into_writer(&super::tests::record(), &mut v2).expect("serialize");
        assert!(decode_cbor(&v2, 1, &mut budget()).is_err());
    }

    #[test]
    fn declared_sizes_are_checked_before_allocating() {
        // A column declaring 1 GiB in a few bytes.
        let why = refused(b"\xb3\x65names\x5a\x40\x00\x00\x00");
        assert_eq!(why, "index: index ends early");
        // A name of 1 GiB declared in a few bytes is refused by its length alone.
        let why = refused(&patched(b"\x65names\x47\x04root\x01a", b"\x65names\x47\x85\x80\x80\x80\x04ab"));
        assert_eq!(why, "index: index column names: a string of 1073741829 bytes is longer than 255");
        // Names are one packed byte string in version 2; an array of text is refused.
        let why = refused(b"\xb3\x65names\x81\x61a");
        assert_eq!(why, "index: index column names: expected a byte string, found an array of 1");
        // Many real entries in a tiny budget.
        let mut small = Budget::for_archive(0);
        small.take(Budget::BASE - 100, "a test").expect("room");
        let (frame, raw_len) = encode_index(&record(), 3).expect("encode");
        let why = decode_index(&frame, raw_len, VERSION, &mut small).expect_err("over budget");
        assert!(why.to_string().contains("needs more memory than an archive of this size"), "{why}");
    }

    #[test]
    fn budget_follows_the_formula() {
        assert_eq!(Budget::for_archive(0).left(), 48 << 20);
        assert_eq!(Budget::for_archive(1 << 20).left(), (48 << 20) + (32 << 20));
        assert_eq!(Budget::for_archive(1 << 40).left(), (1 << 30) - (16 << 20));
    }

    #[test]
    fn reader_memory_is_what_decoding_charges() {
        let mut record = record();
        record.targets = vec!["a link target longer than sixteen bytes".into()];
        record.kinds[1] = KIND_SYMLINK;
        record.sizes.clear();
        record.blocks = IndexRecord::default().blocks;
        let (frame, raw_len) = encode_index(&record, 3).expect("encode");
        let mut budget = Budget::for_archive(1 << 20);
        let before = budget.left();
        // The peak is reached with the frame, the window, the CBOR and the index held.
        budget.take(frame.len() as u64, "the index frame").expect("room");
        let packed = decode_index(&frame, raw_len, VERSION, &mut budget).expect("decode");
        crate::format::Index::from_packed(
            &packed,
            crate::format::HEADER_LEN,
            &mut budget,
            crate::format::Keep::All,
        )
        .expect("valid");
        // decode_index gave the window back; the frame and CBOR are given back by its caller.
        let window = raw_len.min(1 << MAX_WINDOW_LOG);
        let index = crate::format::Index::from_record(record, crate::format::HEADER_LEN).expect("valid");
        assert_eq!(before - budget.left() + window, reader_memory(&index, frame.len() as u64, raw_len));
    }
}
