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

use ciborium_io::Read as _;
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
            xattrs: XattrRecord::default(),
            users: OwnerRecord::default(),
            groups: OwnerRecord::default(),
            blocks: BlockRecord::default(),
        }
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
}

/// Serializes and compresses the index. Returns the zstd frame and the CBOR length.
pub fn encode_index(record: &IndexRecord, level: i32) -> std::io::Result<(Vec<u8>, u64)> {
    let mut cbor = Vec::new();
    ciborium::into_writer(record, &mut cbor).map_err(std::io::Error::other)?;
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    compressor.include_checksum(true)?;
    let frame = compressor.compress(&cbor)?;
    Ok((frame, cbor.len() as u64))
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
/// What each entry of an index costs in memory once read, besides its name and target bytes:
/// the record's columns, the checked [`super::Entry`] built from them, and what commands keep.
const ENTRY_COST: u64 = (std::mem::size_of::<Vec<u8>>()
    + std::mem::size_of::<u32>()
    + 1
    + std::mem::size_of::<u16>()
    + std::mem::size_of::<i64>()
    + std::mem::size_of::<u32>()
    + 2 * std::mem::size_of::<u32>()
    + std::mem::size_of::<super::Entry>()
    + std::mem::size_of::<u32>()) as u64
    + COMMAND_ENTRY_COST;
/// What each name costs beyond its bytes, held in one buffer: where it ends.
const NAME_END_COST: u64 = std::mem::size_of::<u32>() as u64;
/// What a byte string (a target, an attribute) costs beyond its bytes: the vector that
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
/// What an attribute costs once checked, besides its two columns: its name and value move into
/// it.
const XATTR_COST: u64 = 2 * std::mem::size_of::<Vec<u8>>() as u64;
/// The heap allocator's smallest block, charged for every string (so a million one-byte names
/// are charged what they really take).
const STRING_MIN: u64 = 16;

/// What [`decode_index`] charges to the budget for `record`, from a frame of `index_len` bytes
/// holding `raw_len` bytes of CBOR, at its peak: a writer checks with it that readers will
/// take its archive.
pub fn reader_memory(record: &IndexRecord, index_len: u64, raw_len: u64) -> u64 {
    let strings = |column: &[Vec<u8>]| -> u64 {
        column.iter().map(|s| (s.len() as u64).max(STRING_MIN) + VALUE_COST).sum::<u64>()
            + column.len() as u64 * std::mem::size_of::<Vec<u8>>() as u64
    };
    let n = record.names.len() as u64;
    let names = record.names.total_len() as u64 + n * NAME_END_COST;
    let blocks = record.blocks.lens.len() as u64;
    let window = raw_len.min(1 << MAX_WINDOW_LOG);
    let (sparse, xattrs) = (&record.sparse, &record.xattrs);
    index_len
        + window
        + raw_len
        + names
        + n * ENTRY_COST
        + n * (4 + 1 + 2 + 8 + 4 + 4 + 4)
        + record.sizes.len() as u64 * 8
        + strings(&record.targets)
        + record.links.len() as u64 * 4
        + record.dev_majors.len() as u64 * 4
        + record.dev_minors.len() as u64 * 4
        + sparse.files.len() as u64 * (4 + ROW_COST)
        + sparse.counts.len() as u64 * 4
        + sparse.offsets.len() as u64 * 8
        + sparse.lens.len() as u64 * (8 + EXTENT_COST)
        + xattrs.entries.len() as u64 * (4 + ROW_COST)
        + xattrs.counts.len() as u64 * 4
        + strings(&xattrs.names)
        + xattrs.names.len() as u64 * XATTR_COST
        + strings(&xattrs.values)
        + [&record.users, &record.groups]
            .iter()
            .map(|t| t.ids.len() as u64 * (4 + ROW_COST) + strings(&t.names))
            .sum::<u64>()
        + blocks * (8 + BLOCK_COST)
        + blocks * 16
}

/// Decompresses and parses the index frame after [`super::Trailer::check`] passed. The frame
/// must be one zstd frame declaring `raw_len` bytes (FORMAT.md §3.1), and its CBOR exactly
/// `raw_len` bytes of FORMAT.md §4.2. The CBOR is parsed as it is decompressed, so garbage
/// fails at its first bad byte instead of after gigabytes of output, and every column is
/// charged to `budget` before it is allocated.
pub fn decode_index(frame: &[u8], raw_len: u64, version: u16, budget: &mut Budget) -> Result<IndexRecord> {
    use std::io::Read;
    let index_error = |e: &dyn std::fmt::Display| corrupt(format!("index: {e}"));
    super::frame::check(frame, raw_len, "the trailer").map_err(|e| index_error(&e))?;
    // The decoder keeps a window of history: charged like any other allocation, and given
    // back when the index is decoded.
    let window = super::frame::parse_header(frame).map_or(0, |h| h.window_size).min(raw_len);
    budget.take(window, "the index's zstd window")?;
    charge_cbor(raw_len, version, budget)?;
    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| index_error(&e))?;
    decoder.window_log_max(MAX_WINDOW_LOG).map_err(|e| index_error(&e))?;
    let mut cbor = std::io::BufReader::new(decoder.single_frame().take(raw_len.saturating_add(1)));
    let record = Parser { cbor: Decoder::from(&mut cbor), raw_len, budget: &mut *budget }.record(version)?;
    // What the parser did not consume must be nothing, and the total exactly raw_len. One
    // byte more is enough to tell: the rest is not decompressed just to be counted.
    let consumed = raw_len.saturating_add(1) - cbor.get_ref().limit() - cbor.buffer().len() as u64;
    let mut more = [0u8; 1];
    if cbor.read(&mut more).map_err(|e| index_error(&e))? != 0 {
        return Err(index_error(&"bytes follow the index map"));
    }
    if consumed != raw_len {
        return Err(index_error(&format!("expands to {consumed} bytes, trailer says {raw_len}")));
    }
    drop(cbor);
    budget.give_back(window);
    Ok(record)
}

/// Version 2 reads each packed column whole before decoding it: the CBOR's size is charged
/// up front for that (more than one column holds, and simpler to state).
fn charge_cbor(raw_len: u64, version: u16, budget: &mut Budget) -> Result<()> {
    if version >= 2 {
        budget.take(raw_len, "the index's packed columns")?;
    }
    Ok(())
}

/// Parses CBOR that is already decompressed, as [`decode_index`] does (for tools and tests
/// that work on the index's own bytes).
pub fn decode_cbor(cbor: &[u8], version: u16, budget: &mut Budget) -> Result<IndexRecord> {
    charge_cbor(cbor.len() as u64, version, budget)?;
    let mut reader = cbor;
    let record =
        Parser { cbor: Decoder::from(&mut reader), raw_len: cbor.len() as u64, budget }.record(version)?;
    if !reader.is_empty() {
        return Err(corrupt("index: bytes follow the index map"));
    }
    Ok(record)
}

/// The strict reader of FORMAT.md §4.2: a map of exactly the columns, as text keys in the
/// order of [`IndexRecord`]'s fields, each an array of definite length (or, for `kinds`, a byte
/// string) of items of exactly its type; no tags, no indefinite lengths, no floats.
struct Parser<'b, R: ciborium_io::Read> {
    cbor: Decoder<R>,
    raw_len: u64,
    budget: &'b mut Budget,
}

impl<R: ciborium_io::Read<Error = std::io::Error>> Parser<'_, R> {
    fn record(mut self, version: u16) -> Result<IndexRecord> {
        if version == 1 {
            return self.record_v1();
        }
        self.map(18, "")?;
        // Each name stands for an entry: what every entry costs once read and checked is
        // charged with the names, before anything else is read.
        let names = self.names()?;
        let depths = self.uints("depths", 0, u32::MAX.into(), |v| v as u32)?;
        let kinds = self.byte_string("kinds")?;
        let modes = self.uints("modes", 0, u16::MAX.into(), |v| v as u16)?;
        let mtime_secs = self.deltas("mtime_secs")?;
        let mtime_nanos = self.uints("mtime_nanos", 0, u32::MAX.into(), |v| v as u32)?;
        let uids = self.uints("uids", 0, u32::MAX.into(), |v| v as u32)?;
        let gids = self.uints("gids", 0, u32::MAX.into(), |v| v as u32)?;
        let sizes = self.uints("sizes", 0, u64::MAX, |v| v)?;
        let targets = self.strings("targets", 0, MAX_TARGET_LEN)?;
        let links = self.uints("links", 0, u32::MAX.into(), |v| v as u32)?;
        let dev_majors = self.uints("dev_majors", 0, u32::MAX.into(), |v| v as u32)?;
        let dev_minors = self.uints("dev_minors", 0, u32::MAX.into(), |v| v as u32)?;
        self.key("sparse")?;
        self.map(4, "index column sparse")?;
        let sparse = SparseRecord {
            files: self.uints("sparse.files", ROW_COST, u32::MAX.into(), |v| v as u32)?,
            counts: self.uints("sparse.counts", 0, u32::MAX.into(), |v| v as u32)?,
            offsets: self.uints("sparse.offsets", 0, u64::MAX, |v| v)?,
            lens: self.uints("sparse.lens", EXTENT_COST, u64::MAX, |v| v)?,
        };
        self.key("xattrs")?;
        self.map(4, "index column xattrs")?;
        let xattrs = XattrRecord {
            entries: self.uints("xattrs.entries", ROW_COST, u32::MAX.into(), |v| v as u32)?,
            counts: self.uints("xattrs.counts", 0, u32::MAX.into(), |v| v as u32)?,
            names: self.strings("xattrs.names", XATTR_COST, MAX_XATTR_NAME)?,
            values: self.strings("xattrs.values", 0, MAX_XATTR_VALUE)?,
        };
        let users = self.owners("users")?;
        let groups = self.owners("groups")?;
        self.key("blocks")?;
        self.map(3, "index column blocks")?;
        // What every block costs once read and checked is charged with its first column.
        let blocks = BlockRecord {
            lens: self.uints("lens", BLOCK_COST, u64::MAX, |v| v)?,
            raw_lens: self.uints("raw_lens", 0, u64::MAX, |v| v)?,
            hashes: self.fixed64("hashes")?,
        };
        Ok(IndexRecord {
            version,
            names,
            depths,
            kinds,
            modes,
            mtime_secs,
            mtime_nanos,
            uids,
            gids,
            sizes,
            targets,
            links,
            dev_majors,
            dev_minors,
            sparse,
            xattrs,
            users,
            groups,
            blocks,
        })
    }

    /// The packed column `name` (FORMAT.md §4.7): its key, then one byte string, read whole.
    fn packed(&mut self, name: &str) -> Result<(String, Vec<u8>)> {
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
        // The CBOR's bytes were charged as a whole before parsing began.
        if len as u64 > self.remaining() {
            return Err(corrupt("index: index ends early"));
        }
        let mut bytes = vec![0; len];
        self.cbor.read_exact(&mut bytes).map_err(read_error)?;
        Ok((column, bytes))
    }

    /// Charges `count` elements of `size` bytes each to the budget, after checking the count
    /// against the cap on elements.
    fn charge(&mut self, column: &str, count: usize, size: u64) -> Result<()> {
        if count > MAX_ENTRIES {
            return Err(self.error(column, &format!("{count} elements is over the limit of {MAX_ENTRIES}")));
        }
        self.budget.take((count as u64).saturating_mul(size), column)
    }

    /// A packed column of unsigned integers of at most `max`, each made a `T` by `convert`.
    fn uints<T>(&mut self, name: &str, extra: u64, max: u64, convert: impl Fn(u64) -> T) -> Result<Vec<T>> {
        let (column, bytes) = self.packed(name)?;
        // Every integer ends with the one byte whose high bit is clear.
        let count = bytes.iter().filter(|&&b| b & 0x80 == 0).count();
        self.charge(&column, count, std::mem::size_of::<T>() as u64 + extra)?;
        let mut unpack = Unpack::new(&bytes);
        let mut values = Vec::with_capacity(count);
        while !unpack.is_done() {
            values.push(convert(unpack.uint(max).map_err(|why: String| self.error(&column, &why))?));
        }
        Ok(values)
    }

    /// The packed column of mtimes (differences).
    fn deltas(&mut self, name: &str) -> Result<Vec<i64>> {
        let (column, bytes) = self.packed(name)?;
        let count = bytes.iter().filter(|&&b| b & 0x80 == 0).count();
        self.charge(&column, count, std::mem::size_of::<i64>() as u64)?;
        let mut unpack = Unpack::new(&bytes);
        let mut values = Vec::with_capacity(count);
        while !unpack.is_done() {
            values.push(unpack.delta().map_err(|why: String| self.error(&column, &why))?);
        }
        Ok(values)
    }

    /// A packed column of 64-bit values.
    fn fixed64(&mut self, name: &str) -> Result<Vec<u64>> {
        let (column, bytes) = self.packed(name)?;
        if bytes.len() % 8 != 0 {
            return Err(self.error(&column, "ends inside a value"));
        }
        self.charge(&column, bytes.len() / 8, 8)?;
        let mut unpack = Unpack::new(&bytes);
        let mut values = Vec::with_capacity(bytes.len() / 8);
        while !unpack.is_done() {
            values.push(unpack.fixed64().map_err(|why: String| self.error(&column, &why))?);
        }
        Ok(values)
    }

    /// A packed column of byte strings of at most `max` bytes each. The strings are counted
    /// first (their lengths alone), charged, then each charged for its bytes as it is copied.
    fn strings(&mut self, name: &str, extra: u64, max: usize) -> Result<Vec<Vec<u8>>> {
        let (column, bytes) = self.packed(name)?;
        let mut unpack = Unpack::new(&bytes);
        let mut count = 0usize;
        while !unpack.is_done() {
            unpack.string(max).map_err(|why: String| self.error(&column, &why))?;
            count += 1;
        }
        self.charge(&column, count, std::mem::size_of::<Vec<u8>>() as u64 + extra)?;
        let mut unpack = Unpack::new(&bytes);
        let mut values = Vec::with_capacity(count);
        while !unpack.is_done() {
            let string = unpack.string(max).map_err(|why: String| self.error(&column, &why))?;
            self.budget.take((string.len() as u64).max(STRING_MIN) + VALUE_COST, &column)?;
            values.push(string.to_vec());
        }
        Ok(values)
    }

    /// The packed column of names, into one buffer: each entry's cost is charged with its end,
    /// then the buffer whole, before it is filled.
    fn names(&mut self) -> Result<Names> {
        let (column, bytes) = self.packed("names")?;
        let mut unpack = Unpack::new(&bytes);
        let (mut count, mut total) = (0usize, 0usize);
        while !unpack.is_done() {
            total += unpack.string(MAX_NAME_LEN).map_err(|why: String| self.error(&column, &why))?.len();
            count += 1;
        }
        self.charge(&column, count, NAME_END_COST + ENTRY_COST)?;
        self.budget.take(total as u64, &column)?;
        let mut names = Names::with_capacity(count, total);
        let mut unpack = Unpack::new(&bytes);
        while !unpack.is_done() {
            names.push(unpack.string(MAX_NAME_LEN).map_err(|why: String| self.error(&column, &why))?);
        }
        Ok(names)
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
        // Each name stands for an entry: what every entry costs once read and checked is
        // charged with the names, before anything else is read.
        Ok(EntryColumns {
            names: self
                .column("names", ENTRY_COST, |p, column| p.text(column, MAX_NAME_LEN))?
                .into_iter()
                .collect(),
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
        // What every block costs once read and checked is charged with its first column.
        let lens = self.column("lens", BLOCK_COST, |p, column| p.uint(column, u64::MAX))?;
        let raw_lens = self.column("raw_lens", 0, |p, column| p.uint(column, u64::MAX))?;
        let hashes = self.column("hashes", 0, |p, column| p.uint(column, u64::MAX))?;
        Ok(BlockRecord { lens, raw_lens, hashes })
    }

    /// A table of user or group names.
    fn owners(&mut self, name: &str) -> Result<OwnerRecord> {
        self.key(name)?;
        self.map(2, &format!("index column {name}"))?;
        Ok(OwnerRecord {
            ids: self.uints(&format!("{name}.ids"), ROW_COST, u32::MAX.into(), |v| v as u32)?,
            names: self.strings(&format!("{name}.names"), 0, MAX_OWNER_NAME)?,
        })
    }

    fn u32(&mut self, column: &str) -> Result<u32> {
        self.uint(column, u32::MAX.into()).map(|v| v as u32)
    }

    /// The next header; tags are refused wherever they stand.
    fn header(&mut self, column: &str) -> Result<Header> {
        let at = self.cbor.offset();
        match self.cbor.pull() {
            Ok(Header::Tag(tag)) => Err(self.error(column, &format!("a tag ({tag}) at byte {at}"))),
            Ok(header) => Ok(header),
            Err(ciborium_ll::Error::Syntax(at)) => {
                Err(corrupt(format!("index: malformed CBOR at byte {at}")))
            }
            Err(ciborium_ll::Error::Io(e)) => Err(read_error(e)),
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
                let mut found = vec![0; len];
                self.cbor.read_exact(&mut found).map_err(read_error)?;
                if found != name.as_bytes() {
                    let found = format!("\"{}\"", String::from_utf8_lossy(&found));
                    return Err(self.error(&column, &expected(&found)));
                }
                Ok(())
            }
            other => Err(self.error(&column, &expected(&describe(&other)))),
        }
    }

    /// Bytes left in the CBOR: no declared length may be larger, since every item takes at
    /// least one byte.
    fn remaining(&mut self) -> u64 {
        self.raw_len.saturating_sub(self.cbor.offset() as u64)
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
        let mut bytes = vec![0; len];
        self.cbor.read_exact(&mut bytes).map_err(read_error)?;
        Ok(bytes)
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
        if len as u64 > self.remaining() {
            return Err(corrupt("index: index ends early"));
        }
        self.budget.take((len as u64).max(STRING_MIN) + VALUE_COST, column)?;
        let mut bytes = vec![0; len];
        self.cbor.read_exact(&mut bytes).map_err(read_error)?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(self.error(column, "a string is not UTF-8"));
        }
        Ok(bytes)
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

/// A read error of the decompressed index in words: running out of bytes early, or the
/// decompressor's own error (a damaged frame).
fn read_error(error: std::io::Error) -> FormatError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        corrupt("index: index ends early")
    } else {
        corrupt(format!("index: {error}"))
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
            blocks: BlockRecord { lens: vec![14], raw_lens: vec![5], hashes: vec![u64::MAX] },
            ..IndexRecord::default()
        }
    }

    #[test]
    fn index_round_trip() {
        let record = record();
        let (frame, raw_len) = encode_index(&record, 3).expect("encode");
        assert_eq!(decode_index(&frame, raw_len, VERSION, &mut budget()), Ok(record));
        assert!(decode_index(&frame, raw_len - 1, VERSION, &mut budget()).is_err());
        assert!(decode_index(&frame, raw_len + 1, VERSION, &mut budget()).is_err());
    }

    #[test]
    fn index_bombs_fail_early() {
        // 64 MiB of zeros in a tiny frame: not CBOR of an index, refused at the first byte
        // whatever the trailer claims, without decompressing the rest.
        let zeros = vec![0u8; 64 << 20];
        let frame = frame_of(&zeros);
        assert!(frame.len() < 10_000);
        assert!(matches!(
            decode_index(&frame, 64 << 20, VERSION, &mut budget()),
            Err(FormatError::Corrupt(_))
        ));
        // A valid index followed by more bytes than the trailer says is refused too.
        let (frame, raw_len) = encode_index(&IndexRecord::default(), 3).expect("encode");
        assert!(decode_index(&frame, raw_len, VERSION, &mut budget()).is_ok());
        assert!(decode_index(&frame, raw_len + 5, VERSION, &mut budget()).is_err());
    }

    /// What decoding `cbor` says is wrong with it.
    fn refused(cbor: &[u8]) -> String {
        match decode_index(&frame_of(cbor), cbor.len() as u64, VERSION, &mut budget()) {
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
        assert_eq!(refused(&[0xb2]), "index: index ends early");
        // 0x1c is a reserved additional-information value: not CBOR at all.
        assert_eq!(refused(&[0x1c]), "index: malformed CBOR at byte 0");
        // An integer where the map of columns should be.
        assert_eq!(refused(&[0x05]), "index: expected a map of 18 columns, found the integer 5");
        for why in [refused(&[0xb2]), refused(&[0x1c]), refused(&[0x05])] {
            assert!(!why.contains("Error {") && !why.contains("Syntax("), "{why}");
        }
    }

    #[test]
    fn only_the_types_of_the_format_are_accepted() {
        // Keys as byte strings (0x45 "names" -> 0x65 is text; 0x45 is bytes).
        let why = refused(&patched(b"\xb2\x65names", b"\xb2\x45names"));
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
        let record = decode_cbor(&v1, 1, &mut budget()).expect("version 1");
        assert_eq!((record.version, record.names.get(0), record.uids.len()), (1, &b"r"[..], 0));
        // The same bytes are not version 2, and version 2 is not version 1.
        assert!(decode_cbor(&v1, 2, &mut budget()).is_err());
        let mut v2 = Vec::new();
        ciborium::into_writer(&super::tests::record(), &mut v2).expect("serialize");
        assert!(decode_cbor(&v2, 1, &mut budget()).is_err());
    }

    #[test]
    fn declared_sizes_are_checked_before_allocating() {
        // A column declaring 1 GiB in a few bytes.
        let why = refused(b"\xb2\x65names\x5a\x40\x00\x00\x00");
        assert_eq!(why, "index: index ends early");
        // A name of 1 GiB declared in a few bytes is refused by its length alone.
        let why = refused(b"\xb2\x65names\x45\x80\x80\x80\x80\x04");
        assert_eq!(why, "index: index column names: a string of 1073741824 bytes is longer than 255");
        // Names are one packed byte string in version 2; an array of text is refused.
        let why = refused(b"\xb2\x65names\x81\x61a");
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
        let (frame, raw_len) = encode_index(&record, 3).expect("encode");
        let mut budget = Budget::for_archive(1 << 20);
        let before = budget.left();
        // The peak is reached with the frame, the window and every column held.
        budget.take(frame.len() as u64, "the index frame").expect("room");
        let record_back = decode_index(&frame, raw_len, VERSION, &mut budget).expect("decode");
        // decode_index gave the window back; the frame is given back by its caller.
        let window = raw_len.min(1 << MAX_WINDOW_LOG);
        assert_eq!(before - budget.left() + window, reader_memory(&record_back, frame.len() as u64, raw_len));
    }
}
