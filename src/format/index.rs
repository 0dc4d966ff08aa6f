//! The in-memory index: the tree of entries and the block table, checked and ready to use.
//!
//! [`Index::from_record`] is the only way from untrusted [`IndexRecord`] columns to an
//! `Index`, and it checks everything the rest of the program relies on, so that list, read and
//! verify never re-check:
//!
//! - the tree is well formed (pre-order, depths step by one into directories only, depth capped);
//! - names are single, safe path components: not empty, `.`, `..`, no `/` or NUL, capped length;
//! - siblings are strictly sorted by name bytes, so there are no duplicates;
//! - file sizes and block lengths add up, with checked arithmetic, to one data stream.
//!
//! Architecture Invariant: an entry's path is the chain of its ancestors' names, each a single
//! component, so joining them beneath a destination can never leave it.

use super::{corrupt, BlockRecord, FormatError, IndexRecord};
use super::{HEADER_LEN, MAX_NAME_LEN, MAX_TARGET_LEN};
use super::{KIND_DIR, KIND_FILE, KIND_SYMLINK, MAX_BLOCK_LEN, MAX_BLOCK_RAW, MAX_DEPTH, MAX_ENTRIES};

/// What an entry is, with the data only that kind has, so that no state is left to check
/// later (a symlink without a target, a directory with a size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File {
        /// Bytes of the file.
        size: u64,
        /// Where the file's bytes start in the data stream (the blocks' contents, concatenated).
        offset: u64,
    },
    /// A symlink's target, stored as it was read, never resolved: 1 to 4095 bytes, no NUL.
    Symlink {
        target: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mtime {
    pub secs: i64,
    pub nanos: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// One path component: not empty, `.` or `..`, no `/` or NUL, at most 255 bytes.
    pub name: String,
    /// Index of the parent directory entry; `None` for a root.
    pub parent: Option<u32>,
    pub depth: u32,
    pub kind: Kind,
    /// Permission bits (`0o7777` at most).
    pub mode: u16,
    pub mtime: Mtime,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir)
    }

    /// A regular file's size; 0 for the other kinds.
    pub fn size(&self) -> u64 {
        match self.kind {
            Kind::File { size, .. } => size,
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Byte offset of the zstd frame in the archive.
    pub offset: u64,
    pub len: u64,
    /// Offset of the block's contents in the data stream.
    pub raw_offset: u64,
    pub raw_len: u64,
    pub hash: u64,
}

impl Block {
    /// One past the block's last byte in the data stream.
    pub fn raw_end(&self) -> u64 {
        self.raw_offset + self.raw_len
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    pub entries: Vec<Entry>,
    pub blocks: Vec<Block>,
    /// The files that have bytes, in data-stream order (which is entry order): what
    /// [`Index::files_in`] searches.
    files: Vec<u32>,
}

impl Index {
    /// Checks an untrusted record and builds the index. `data_end` is where the block region
    /// must end (the index frame's offset); blocks must tile the region from the header on.
    pub fn from_record(record: IndexRecord, data_end: u64) -> Result<Index, FormatError> {
        let IndexRecord { names, depths, kinds, modes, mtime_secs, mtime_nanos, sizes, targets, blocks } =
            record;
        // No entries is an empty archive (everything left out, as tar allows too).
        let count = names.len();
        if count > MAX_ENTRIES {
            return Err(corrupt(format!("{count} entries is over the limit")));
        }
        for (column, len) in [
            ("depths", depths.len()),
            ("kinds", kinds.len()),
            ("modes", modes.len()),
            ("mtime_secs", mtime_secs.len()),
            ("mtime_nanos", mtime_nanos.len()),
        ] {
            if len != count {
                return Err(corrupt(format!("index column {column} has {len} values for {count} entries")));
            }
        }

        let mut entries: Vec<Entry> = Vec::with_capacity(count);
        let mut files = Vec::new();
        let mut sizes = sizes.into_iter();
        let mut targets = targets.into_iter();
        // For each depth, the last entry seen there: the parent of the next deeper entry and
        // the sibling the next entry at this depth must sort after.
        let mut last_at_depth: Vec<u32> = Vec::new();
        let mut offset: u64 = 0;
        for (i, name) in names.into_iter().enumerate() {
            check_name(&name)?;
            let depth = depths[i];
            if depth > MAX_DEPTH {
                return Err(corrupt(format!("nesting deeper than {MAX_DEPTH}")));
            }
            if depth as usize > last_at_depth.len() {
                return Err(corrupt(format!("entry {name} has no parent directory")));
            }
            let parent = match depth {
                0 => None,
                _ => {
                    let parent = last_at_depth[depth as usize - 1];
                    if !entries[parent as usize].is_dir() {
                        return Err(corrupt(format!("entry {name} is inside a non-directory")));
                    }
                    Some(parent)
                }
            };
            if let Some(&sibling) = last_at_depth.get(depth as usize) {
                let sibling: &Entry = &entries[sibling as usize];
                if sibling.parent == parent && sibling.name.as_bytes() >= name.as_bytes() {
                    return Err(corrupt(format!("entry {name} is a duplicate or out of order")));
                }
            }
            last_at_depth.truncate(depth as usize);
            last_at_depth.push(i as u32);

            let mode = modes[i];
            if mode > 0o7777 {
                return Err(corrupt(format!("entry {name} has mode {mode:o}")));
            }
            let mtime = Mtime { secs: mtime_secs[i], nanos: mtime_nanos[i] };
            if mtime.nanos >= 1_000_000_000 {
                return Err(corrupt(format!("entry {name} has {} nanoseconds", mtime.nanos)));
            }
            let kind = match kinds[i] {
                KIND_DIR => Kind::Dir,
                KIND_FILE => {
                    let size = sizes.next().ok_or_else(|| corrupt("fewer sizes than files"))?;
                    let start = offset;
                    offset = offset.checked_add(size).ok_or_else(|| corrupt("file sizes overflow"))?;
                    if size > 0 {
                        files.push(i as u32);
                    }
                    Kind::File { size, offset: start }
                }
                KIND_SYMLINK => {
                    let target = targets.next().ok_or_else(|| corrupt("fewer targets than symlinks"))?;
                    if target.is_empty() || target.len() > MAX_TARGET_LEN || target.contains('\0') {
                        return Err(corrupt(format!("symlink {name} has an invalid target")));
                    }
                    Kind::Symlink { target }
                }
                other => return Err(corrupt(format!("entry {name} has unknown kind {other}"))),
            };
            entries.push(Entry { name, parent, depth, kind, mode, mtime });
        }
        if sizes.next().is_some() {
            return Err(corrupt("more sizes than files"));
        }
        if targets.next().is_some() {
            return Err(corrupt("more targets than symlinks"));
        }
        let blocks = block_table(blocks, offset, data_end)?;
        Ok(Index { entries, blocks, files })
    }

    /// The record that serializes this index; the inverse of [`Index::from_record`]. It takes
    /// the index so that names move rather than being copied (a million entries' worth).
    pub fn into_record(self) -> IndexRecord {
        let mut record = IndexRecord::default();
        for entry in self.entries {
            record.names.push(entry.name);
            record.depths.push(entry.depth);
            record.modes.push(entry.mode);
            record.mtime_secs.push(entry.mtime.secs);
            record.mtime_nanos.push(entry.mtime.nanos);
            let kind = match entry.kind {
                Kind::Dir => KIND_DIR,
                Kind::File { size, .. } => {
                    record.sizes.push(size);
                    KIND_FILE
                }
                Kind::Symlink { target } => {
                    record.targets.push(target);
                    KIND_SYMLINK
                }
            };
            record.kinds.push(kind);
        }
        for block in &self.blocks {
            record.blocks.lens.push(block.len);
            record.blocks.raw_lens.push(block.raw_len);
            record.blocks.hashes.push(block.hash);
        }
        record
    }

    /// Builds an index from entries and blocks the caller made consistent (the writer, whose
    /// walker assigned the offsets): no check is made here beyond what
    /// [`Index::from_record`] would refuse later when the archive is read.
    pub fn from_parts(entries: Vec<Entry>, blocks: Vec<Block>) -> Index {
        let files = (0..entries.len() as u32).filter(|&i| entries[i as usize].size() > 0).collect();
        Index { entries, blocks, files }
    }

    /// The entry's path as `list` prints it before escaping: root name first, `/` between
    /// components.
    pub fn path(&self, i: usize) -> String {
        let mut chain = vec![i];
        let mut at = i;
        while let Some(parent) = self.entries[at].parent {
            at = parent as usize;
            chain.push(at);
        }
        let mut path = String::new();
        for (n, &e) in chain.iter().rev().enumerate() {
            if n > 0 {
                path.push('/');
            }
            path.push_str(&self.entries[e].name);
        }
        path
    }

    /// One past the last entry of `i`'s subtree: entries are in pre-order, so a subtree is a
    /// contiguous run.
    pub fn subtree_end(&self, i: usize) -> usize {
        let depth = self.entries[i].depth;
        self.entries[i + 1..].iter().position(|e| e.depth <= depth).map_or(self.entries.len(), |p| i + 1 + p)
    }

    /// Total bytes of the data stream.
    pub fn data_len(&self) -> u64 {
        self.blocks.last().map_or(0, Block::raw_end)
    }

    /// The blocks that hold bytes of `[offset, offset + len)` of the data stream.
    pub fn blocks_for(&self, offset: u64, len: u64) -> std::ops::Range<usize> {
        if len == 0 {
            return 0..0;
        }
        let first = self.blocks.partition_point(|b| b.raw_end() <= offset);
        let end = offset + len;
        let last = self.blocks.partition_point(|b| b.raw_offset < end);
        first..last
    }

    /// The blocks that hold bytes of entry `i` (none for an empty file or a non-file).
    pub fn blocks_of(&self, i: usize) -> std::ops::Range<usize> {
        match self.entries[i].kind {
            Kind::File { size, offset } => self.blocks_for(offset, size),
            _ => 0..0,
        }
    }

    /// The files that have bytes in block `b`, in data-stream order, with where their bytes
    /// lie: the one lookup from a block to its files, used by read and verify.
    pub fn files_in(&self, b: usize) -> impl Iterator<Item = FilePiece> + '_ {
        let block = self.blocks[b];
        let first = self.files.partition_point(|&i| {
            let (offset, size) = self.file_extent(i);
            offset + size <= block.raw_offset
        });
        self.files[first..]
            .iter()
            .map(move |&i| (i, self.file_extent(i)))
            .take_while(move |&(_, (offset, _))| offset < block.raw_end())
            .map(move |(i, (offset, size))| {
                let start = offset.max(block.raw_offset);
                let end = (offset + size).min(block.raw_end());
                FilePiece {
                    entry: i,
                    start_in_block: (start - block.raw_offset) as usize,
                    file_offset: start - offset,
                    len: (end - start) as usize,
                    whole: start == offset && end == offset + size,
                }
            })
    }

    fn file_extent(&self, i: u32) -> (u64, u64) {
        match self.entries[i as usize].kind {
            Kind::File { size, offset } => (offset, size),
            _ => (0, 0),
        }
    }
}

/// The bytes of one file that lie in one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePiece {
    pub entry: u32,
    /// Where the piece starts in the block's decompressed bytes.
    pub start_in_block: usize,
    /// Where the piece goes in the file.
    pub file_offset: u64,
    pub len: usize,
    /// The piece is the whole file (the file lies in this one block).
    pub whole: bool,
}

/// A name must be one safe path component (FORMAT.md §4.1).
fn check_name(name: &str) -> Result<(), FormatError> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(corrupt(format!("invalid entry name '{name}'")));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(corrupt("entry name too long"));
    }
    if name.bytes().any(|b| b == b'/' || b == 0) {
        return Err(corrupt(format!("entry name {name} contains '/' or NUL")));
    }
    Ok(())
}

fn block_table(record: BlockRecord, data_len: u64, data_end: u64) -> Result<Vec<Block>, FormatError> {
    let BlockRecord { lens, raw_lens, hashes } = record;
    if raw_lens.len() != lens.len() || hashes.len() != lens.len() {
        return Err(corrupt("block table columns differ in length"));
    }
    let mut blocks = Vec::with_capacity(lens.len());
    let mut offset = HEADER_LEN;
    let mut raw_offset = 0u64;
    for ((len, raw_len), hash) in lens.into_iter().zip(raw_lens).zip(hashes) {
        if len == 0 || len > MAX_BLOCK_LEN || raw_len == 0 || raw_len > MAX_BLOCK_RAW {
            return Err(corrupt(format!("block {} has invalid lengths", blocks.len())));
        }
        blocks.push(Block { offset, len, raw_offset, raw_len, hash });
        offset = offset.checked_add(len).ok_or_else(|| corrupt("block offsets overflow"))?;
        raw_offset = raw_offset.checked_add(raw_len).ok_or_else(|| corrupt("block sizes overflow"))?;
    }
    if offset != data_end {
        return Err(corrupt(format!("blocks end at byte {offset} but the index starts at byte {data_end}")));
    }
    if raw_offset != data_len {
        return Err(corrupt(format!("blocks hold {raw_offset} bytes but the files need {data_len}")));
    }
    Ok(blocks)
}

/// For tests of code that works from an index: `r/` holding files `a` (3 bytes), `b` (0),
/// `c` (6), `d` (2) and a symlink `link`, over blocks of 4, 4 and 3 bytes, so that `c` spans
/// all three blocks.
#[cfg(test)]
pub fn spanning_index() -> Index {
    let record = IndexRecord {
        names: ["r", "a", "b", "c", "d", "link"].map(String::from).to_vec(),
        depths: vec![0, 1, 1, 1, 1, 1],
        kinds: vec![KIND_DIR, KIND_FILE, KIND_FILE, KIND_FILE, KIND_FILE, KIND_SYMLINK],
        modes: vec![0o755, 0o644, 0o644, 0o644, 0o644, 0o777],
        mtime_secs: vec![0; 6],
        mtime_nanos: vec![0; 6],
        sizes: vec![3, 0, 6, 2],
        targets: vec!["a".into()],
        blocks: BlockRecord { lens: vec![1, 1, 1], raw_lens: vec![4, 4, 3], hashes: vec![0; 3] },
    };
    Index::from_record(record, HEADER_LEN + 3).expect("a valid index")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> IndexRecord {
        IndexRecord {
            names: ["r", "a", "x", "b", "l"].map(String::from).to_vec(),
            depths: vec![0, 1, 2, 1, 1],
            kinds: vec![KIND_DIR, KIND_DIR, KIND_FILE, KIND_FILE, KIND_SYMLINK],
            modes: vec![0o755, 0o700, 0o644, 0o600, 0o777],
            mtime_secs: vec![0; 5],
            mtime_nanos: vec![0; 5],
            sizes: vec![3, 4],
            targets: vec!["../elsewhere".into()],
            blocks: BlockRecord { lens: vec![10], raw_lens: vec![7], hashes: vec![0] },
        }
    }

    const DATA_END: u64 = HEADER_LEN + 10;

    #[test]
    fn builds_tree_with_offsets_and_paths() {
        let index = Index::from_record(record(), DATA_END).expect("valid");
        assert_eq!(index.path(2), "r/a/x");
        assert_eq!(index.path(4), "r/l");
        assert_eq!(index.entries[3].kind, Kind::File { size: 4, offset: 3 });
        assert_eq!(index.entries[4].kind, Kind::Symlink { target: "../elsewhere".into() });
        assert_eq!(index.subtree_end(1), 3);
        assert_eq!(index.subtree_end(0), 5);
        assert_eq!(index.blocks_for(3, 4), 0..1);
        assert_eq!(index.blocks_for(3, 0), 0..0);
        assert_eq!(Index::from_record(index.clone().into_record(), DATA_END), Ok(index));
    }

    fn refused(change: impl FnOnce(&mut IndexRecord)) -> String {
        let mut r = record();
        change(&mut r);
        match Index::from_record(r, DATA_END) {
            Err(FormatError::Corrupt(why)) => why,
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    #[test]
    fn refuses_unsafe_names() {
        for bad in ["", ".", "..", "a/b", "/abs", "nul\0"] {
            refused(|r| r.names[2] = bad.into());
        }
        refused(|r| r.names[2] = "x".repeat(256));
    }

    #[test]
    fn refuses_malformed_trees() {
        assert!(refused(|r| r.names[3] = "a".into()).contains("duplicate"));
        assert!(refused(|r| r.depths[1] = 2).contains("no parent"));
        assert!(refused(|r| r.depths[4] = 3).contains("no parent"));
        // x is a file, so an entry one deeper would be inside it.
        assert!(refused(|r| r.depths[3] = 3).contains("non-directory"));
        refused(|r| r.kinds[1] = 9);
        refused(|r| r.modes[1] = 0o10000);
        refused(|r| r.mtime_nanos[1] = 1_000_000_000);
        refused(|r| r.depths.pop().map(drop).unwrap_or(()));
    }

    #[test]
    fn refuses_inconsistent_data() {
        assert!(refused(|r| r.sizes[0] = u64::MAX).contains("overflow"));
        assert!(refused(|r| r.sizes[0] = 4).contains("blocks hold"));
        assert!(refused(|r| r.blocks.lens[0] = 11).contains("blocks end"));
        refused(|r| r.sizes.push(0));
        refused(|r| r.targets.clear());
        refused(|r| r.blocks.raw_lens[0] = MAX_BLOCK_RAW + 1);
    }

    #[test]
    fn files_in_a_block_with_their_pieces() {
        let index = spanning_index();
        let piece = |entry, start_in_block, file_offset, len, whole| FilePiece {
            entry,
            start_in_block,
            file_offset,
            len,
            whole,
        };
        let pieces = |b| index.files_in(b).collect::<Vec<_>>();
        // The empty file has no bytes and is in no block; nor has the symlink.
        assert_eq!(pieces(0), [piece(1, 0, 0, 3, true), piece(3, 3, 0, 1, false)]);
        assert_eq!(pieces(1), [piece(3, 0, 1, 4, false)]);
        assert_eq!(pieces(2), [piece(3, 0, 5, 1, false), piece(4, 1, 0, 2, true)]);
        assert_eq!(index.blocks_of(3), 0..3);
        assert_eq!(index.blocks_of(2), 0..0);
        assert_eq!(index.blocks_of(0), 0..0);
    }
}
