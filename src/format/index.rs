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

use super::packed::{plainly_valid, Unpack};
use super::record::{
    col_error, count_strings, count_uints, Col, Packed, ENTRY_COST, FILE_COST, NAME_END_COST,
};
use super::run::RecordHead;
use super::{
    corrupt, decode_cbor, BlockRecord, Budget, CopyRecord, FormatError, IndexRecord, Names, OwnerRecord,
    SparseRecord, XattrRecord,
};
use super::{HEADER_LEN, MAX_NAME_LEN, MAX_OWNER_NAME, MAX_TARGET_LEN, MAX_XATTR_LIST, MAX_XATTR_NAME};
use super::{KIND_BLOCK, KIND_CHAR, KIND_DIR, KIND_FIFO, KIND_FILE, KIND_LINK, KIND_SYMLINK};
use super::{MAX_BLOCK_LEN, MAX_BLOCK_RAW, MAX_DEPTH, MAX_ENTRIES};

/// What an entry is, with the data only that kind has, so that no state is left to check
/// later (a symlink without a target, a directory with a size). Small (16 bytes): what is
/// variable-length (a symlink's target) or rare (a sparse file's extents) is in the index's
/// other tables, and where a file's bytes lie is [`Index::span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File {
        /// Bytes of the file, holes included.
        size: u64,
    },
    /// A symlink; its target ([`Index::target`]) is stored as it was read, never resolved: 1 to
    /// 4095 bytes, no NUL. `target` is the symlink's number among the archive's symlinks.
    Symlink {
        target: u32,
    },
    /// Another name of regular file entry `target`, an earlier entry: same inode, same data.
    HardLink {
        target: u32,
    },
    Fifo,
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
}

/// Packed to 12 bytes (a million entries' worth of padding is 4 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct Mtime {
    pub secs: i64,
    pub nanos: u32,
}

/// An entry of the tree, a fixed-size record of 40 bytes (a million entries are 40 MB). Its
/// name is kept apart, with every other name in one buffer ([`Index::name`]); its kind and
/// parent are read through [`Entry::kind`] and [`Entry::parent`], packed here.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// What the kind carries: a file's size, a symlink's or hard link's `target`, a device's
    /// major (high half) and minor (low half).
    data: u64,
    pub mtime: Mtime,
    /// The parent entry, or [`NO_PARENT`] for a root.
    parent: u32,
    /// Owner and group ids (0 in a version-1 archive, which stores none: see
    /// [`Tables::owners`]).
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`0o7777` at most).
    pub mode: u16,
    /// At most [`super::MAX_DEPTH`].
    pub depth: u16,
    /// Which [`Kind`]: its `KIND_*` byte.
    tag: u8,
}

/// [`Entry::parent`] of a root (entry numbers are below [`MAX_ENTRIES`]).
const NO_PARENT: u32 = u32::MAX;

/// Marks a place in [`Index`]'s list of files where bytes of files left out lie (an index
/// built with [`Keep::Only`]): the file before it, with this bit set.
const GAP: u32 = 1 << 31;

impl Entry {
    pub fn new(
        kind: Kind,
        parent: Option<u32>,
        depth: u16,
        mode: u16,
        mtime: Mtime,
        uid: u32,
        gid: u32,
    ) -> Entry {
        let mut entry = Entry {
            data: 0,
            mtime,
            parent: parent.unwrap_or(NO_PARENT),
            uid,
            gid,
            mode,
            depth,
            tag: KIND_DIR,
        };
        entry.set_kind(kind);
        entry
    }

    pub fn kind(&self) -> Kind {
        let (high, low) = ((self.data >> 32) as u32, self.data as u32);
        match self.tag {
            KIND_FILE => Kind::File { size: self.data },
            KIND_SYMLINK => Kind::Symlink { target: low },
            KIND_LINK => Kind::HardLink { target: low },
            KIND_FIFO => Kind::Fifo,
            KIND_CHAR => Kind::CharDevice { major: high, minor: low },
            KIND_BLOCK => Kind::BlockDevice { major: high, minor: low },
            _ => Kind::Dir,
        }
    }

    pub fn set_kind(&mut self, kind: Kind) {
        let device = |major: u32, minor: u32| u64::from(major) << 32 | u64::from(minor);
        (self.tag, self.data) = match kind {
            Kind::Dir => (KIND_DIR, 0),
            Kind::File { size } => (KIND_FILE, size),
            Kind::Symlink { target } => (KIND_SYMLINK, target.into()),
            Kind::HardLink { target } => (KIND_LINK, target.into()),
            Kind::Fifo => (KIND_FIFO, 0),
            Kind::CharDevice { major, minor } => (KIND_CHAR, device(major, minor)),
            Kind::BlockDevice { major, minor } => (KIND_BLOCK, device(major, minor)),
        };
    }

    /// Index of the parent directory entry; `None` for a root.
    pub fn parent(&self) -> Option<u32> {
        (self.parent != NO_PARENT).then_some(self.parent)
    }

    pub fn is_dir(&self) -> bool {
        self.tag == KIND_DIR
    }

    /// A regular file's size (holes included); 0 for the other kinds.
    pub fn size(&self) -> u64 {
        match self.tag {
            KIND_FILE => self.data,
            _ => 0,
        }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind())
            .field("parent", &self.parent())
            .field("depth", &self.depth)
            .field("mode", &self.mode)
            .field("mtime", &self.mtime)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .finish()
    }
}

/// Where a run of a sparse file's stored bytes goes in the file; the rest of the file is holes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
}

/// An extended attribute, name and value as bytes (ACLs are `system.posix_acl_*` ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// User or group names by id, sorted by id.
pub type NameTable = Vec<(u32, Vec<u8>)>;

/// What only some entries have, keyed by entry number (sorted, looked up by binary search), and
/// the owner names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// Whether owners are stored (version 2); a version-1 archive has none.
    pub owners: bool,
    pub sparse: Vec<(u32, Vec<Extent>)>,
    /// The files whose contents are an earlier file's, stored there: (copy, source), sorted
    /// by copy (FORMAT.md §4.8).
    pub copies: Vec<(u32, u32)>,
    pub xattrs: Vec<(u32, Vec<Xattr>)>,
    pub users: NameTable,
    pub groups: NameTable,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            owners: true,
            sparse: Vec::new(),
            copies: Vec::new(),
            xattrs: Vec::new(),
            users: Vec::new(),
            groups: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Byte offset of the zstd frame in the archive.
    pub offset: u64,
    /// Length of the record frame just before it (FORMAT.md §3.2; 0 in version 1).
    pub record_len: u64,
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
    /// Entry `i`'s name is `names.get(i)`: one path component, 1 to 255 bytes, not `.` or
    /// `..`, no `/` or NUL.
    names: Names,
    /// The symlinks' targets, in entry order ([`Kind::Symlink`] says which).
    targets: Names,
    pub blocks: Vec<Block>,
    /// Length of the final record (FORMAT.md §3.2), after the last block.
    pub final_record: u64,
    pub tables: Tables,
    /// The files that have bytes in the data stream, in data-stream order (which is entry
    /// order): what [`Index::files_in`] and [`Index::span`] search. In an index of some
    /// entries only ([`Keep::Only`]), a file followed by bytes of files left out is followed
    /// by a gap: its number again, with [`GAP`] set.
    files: Vec<u32>,
    /// Where each of `files` starts in the data stream, and after them where it ends: a
    /// file's stored bytes run to the next one's start.
    offsets: Vec<u64>,
    /// `tables.copies` the other way round: (source, copy), sorted (a set: a stream's
    /// records add copies of any source, in any order).
    shared: std::collections::BTreeSet<(u32, u32)>,
}

impl Index {
    /// Checks an untrusted index and builds it, with every entry or only those of `keep`.
    /// `data_end` is where the block region must end (the index frame's offset); blocks must
    /// tile the region from the header on. Every value of every column is checked, whatever
    /// is kept, one column at a time in a tight loop (a loop per column is about twice as fast
    /// as one loop over all of them at once; with only some entries kept, a column of modes,
    /// nanoseconds or owners that one pass over its bytes finds plainly valid is read at
    /// theirs alone); what the whole index would hold is charged to `budget` before anything
    /// is allocated, so that what is refused does not depend on what is kept.
    pub fn from_packed(
        packed: &Packed,
        data_end: u64,
        budget: &mut Budget,
        keep: Keep<'_>,
    ) -> Result<Index, FormatError> {
        // No entries is an empty archive (everything left out, as tar allows too).
        let (count, total) = count_strings(packed.column(Col::Names), Col::Names, MAX_NAME_LEN)?;
        if count > MAX_ENTRIES {
            return Err(corrupt(format!("{count} entries is over the limit")));
        }
        budget.take(count as u64 * ENTRY_COST + total as u64, &Col::Names.shown())?;
        // Version 1 stores no owners; version 2 one per entry.
        let owners = packed.version >= 2;
        let owner_count = if owners { count } else { 0 };
        let kinds = packed.column(Col::Kinds);
        for (col, len, wanted) in [
            (Col::Depths, count_uints(packed.column(Col::Depths)), count),
            (Col::Kinds, kinds.len(), count),
            (Col::Modes, count_uints(packed.column(Col::Modes)), count),
            (Col::MtimeSecs, count_uints(packed.column(Col::MtimeSecs)), count),
            (Col::MtimeNanos, count_uints(packed.column(Col::MtimeNanos)), count),
            (Col::Uids, count_uints(packed.column(Col::Uids)), owner_count),
            (Col::Gids, count_uints(packed.column(Col::Gids)), owner_count),
        ] {
            if len != wanted {
                return Err(corrupt(format!("{} has {len} values for {count} entries", col.shown())));
            }
        }
        if count_uints(packed.column(Col::DevMajors)) != count_uints(packed.column(Col::DevMinors)) {
            return Err(corrupt("index columns dev_majors and dev_minors differ in length"));
        }
        let file_count = kinds.iter().filter(|&&k| k == KIND_FILE).count();
        // One offset more than files: where the last one ends.
        budget.take(file_count as u64 * FILE_COST + 8, &Col::Sizes.shown())?;
        let (target_count, target_bytes) =
            count_strings(packed.column(Col::Targets), Col::Targets, MAX_TARGET_LEN)?;
        budget.take(target_count as u64 * NAME_END_COST + target_bytes as u64, &Col::Targets.shown())?;
        let mut sparse = sparse_table(packed.sparse(budget)?, count)?;
        let mut copies = copy_table(packed.copies(budget)?, kinds)?;
        let mut xattrs = xattr_table(packed.xattrs(budget)?, count)?;
        let users = owner_table(packed.owners(false, budget)?, "users")?;
        let groups = owner_table(packed.owners(true, budget)?, "groups")?;
        let block_record = packed.blocks(budget)?;
        let kept_count = match keep {
            Keep::All => count,
            Keep::Only(list) => list.len(),
        };
        let column = |col: Col| Column { col, unpack: Unpack::new(packed.column(col)) };
        // For messages only: entry `i`'s name, found again when a message is made.
        let shown = |i: usize| String::from_utf8_lossy(name_at(packed, i)).into_owned();

        // The tree: names, depths and kinds, with the same checks as `Tree::check`.
        let mut names = Names::with_capacity(kept_count, if kept_count == count { total } else { 0 });
        let mut entries: Vec<Entry> = Vec::with_capacity(kept_count);
        let newest = if owners { KIND_BLOCK } else { KIND_SYMLINK };
        let mut name_column = column(Col::Names);
        let mut depths = column(Col::Depths);
        let mut tree = TreeCheck::default();
        // The kept entries' new numbers along the current chain of ancestors.
        let mut kept_chain: Vec<u32> = Vec::new();
        let mut kept = keep.cursor();
        for (i, &kind) in kinds.iter().enumerate() {
            let name = name_column.string(MAX_NAME_LEN)?;
            let depth = depths.uint(u32::MAX.into())?;
            let parent = tree.step(i, name, depth, kinds)?;
            if kind > newest {
                return Err(corrupt(format!("entry {} has unknown kind {kind}", Shown(name))));
            }
            let (new, parent) = match keep {
                Keep::All => (i, parent),
                Keep::Only(_) => {
                    kept_chain.truncate(depth as usize);
                    let Some(new) = kept.next(i) else {
                        kept_chain.push(NO_PARENT);
                        continue;
                    };
                    let parent = match depth {
                        0 => None,
                        _ => match kept_chain[depth as usize - 1] {
                            NO_PARENT => return Err(corrupt("index: a kept entry's directory is not kept")),
                            parent => Some(parent),
                        },
                    };
                    kept_chain.push(new as u32);
                    (new, parent)
                }
            };
            debug_assert_eq!(new, entries.len());
            names.push(name);
            let mut entry = Entry::new(Kind::Dir, parent, depth as u16, 0, Mtime { secs: 0, nanos: 0 }, 0, 0);
            // The kinds with data get theirs below, in their columns' loops.
            entry.tag = kind;
            entries.push(entry);
        }
        // Each holds as many integers as entries: what follows the last is a cut one.
        if !depths.unpack.is_done() {
            return Err(col_error(Col::Depths, "ends inside an integer"));
        }

        // Of an index of some entries, a column whose bytes are plainly valid (which a pass
        // over them says at once) is read only at the entries kept: its errors would be the
        // ones of reading it all, and it has none. Any other is read value by value.
        let plain =
            |col: Col, bits: u32| matches!(keep, Keep::Only(_)) && plainly_valid(packed.column(col), bits);
        let mut modes = column(Col::Modes);
        if plain(Col::Modes, 12) {
            modes.read_kept(keep, |new, mode| entries.get_mut(new).map(|e| e.mode = mode as u16));
        } else {
            let mut kept = keep.cursor();
            for i in 0..count {
                let mode = modes.uint(u16::MAX.into())? as u16;
                if mode > 0o7777 {
                    return Err(corrupt(format!("entry {} has mode {mode:o}", shown(i))));
                }
                if let Some(entry) = kept.next(i).and_then(|new| entries.get_mut(new)) {
                    entry.mode = mode;
                }
            }
        }
        let (mut mtime_secs, mut mtime_nanos) = (column(Col::MtimeSecs), column(Col::MtimeNanos));
        let mut kept = keep.cursor();
        // Under 2^29, every value is below a second.
        if plain(Col::MtimeNanos, 29) {
            // Each second is the sum of the differences before it: all are read.
            for i in 0..count {
                let secs = mtime_secs.delta()?;
                if let Some(entry) = kept.next(i).and_then(|new| entries.get_mut(new)) {
                    entry.mtime.secs = secs;
                }
            }
            mtime_nanos
                .read_kept(keep, |new, nanos| entries.get_mut(new).map(|e| e.mtime.nanos = nanos as u32));
        } else {
            for i in 0..count {
                let mtime =
                    Mtime { secs: mtime_secs.delta()?, nanos: mtime_nanos.uint(u32::MAX.into())? as u32 };
                if mtime.nanos >= 1_000_000_000 {
                    return Err(corrupt(format!("entry {} has {} nanoseconds", shown(i), { mtime.nanos })));
                }
                if let Some(entry) = kept.next(i).and_then(|new| entries.get_mut(new)) {
                    entry.mtime = mtime;
                }
            }
        }
        let (mut uids, mut gids) = (column(Col::Uids), column(Col::Gids));
        if owners && plain(Col::Uids, 32) && plain(Col::Gids, 32) {
            uids.read_kept(keep, |new, uid| entries.get_mut(new).map(|e| e.uid = uid as u32));
            gids.read_kept(keep, |new, gid| entries.get_mut(new).map(|e| e.gid = gid as u32));
        } else {
            let mut kept = keep.cursor();
            for i in 0..owner_count {
                let (uid, gid) = (uids.uint(u32::MAX.into())? as u32, gids.uint(u32::MAX.into())? as u32);
                if let Some(entry) = kept.next(i).and_then(|new| entries.get_mut(new)) {
                    (entry.uid, entry.gid) = (uid, gid);
                }
            }
        }
        for column in [&modes, &mtime_secs, &mtime_nanos, &uids, &gids] {
            if !column.unpack.is_done() {
                return Err(col_error(column.col, "ends inside an integer"));
            }
        }

        // Regular files: sizes, sparse extents, and where each one's bytes lie.
        let mut files = Vec::with_capacity(if kept_count == count { file_count } else { 0 });
        let mut offsets = Vec::with_capacity(if kept_count == count { file_count + 1 } else { 0 });
        let mut sizes = column(Col::Sizes);
        let mut sparse_rows = sparse.iter().peekable();
        let mut copy_rows = copies.iter().peekable();
        // The size of each copy's source, once met (a source comes before its copies).
        let mut source_sizes: Vec<(u32, u64)> = copies.iter().map(|&(_, s)| (s, 0)).collect();
        source_sizes.sort_unstable();
        source_sizes.dedup();
        let mut next_source = 0;
        // The first entry in any of those tables.
        let mut next_special = [
            sparse.first().map(|(e, _)| *e),
            copies.first().map(|(c, _)| *c),
            source_sizes.first().map(|(s, _)| *s),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(u32::MAX);
        let mut kept = keep.cursor();
        let mut offset: u64 = 0;
        // Where the last kept file's bytes end: a gap follows it when the next kept file
        // starts later (only when some entries are left out).
        let mut kept_end: u64 = 0;
        let fewer = || corrupt("fewer sizes than files");
        let overflow = || corrupt("file sizes overflow");
        let mut i = 0;
        while i < kinds.len() {
            // Up to the next entry kept or in a table, only the files' sizes count.
            let plain_end = kept.upcoming(i).min(next_special as usize).min(kinds.len());
            if i < plain_end {
                for _ in kinds[i..plain_end].iter().filter(|&&kind| kind == KIND_FILE) {
                    let size = sizes.next_uint(u64::MAX).ok_or_else(fewer)??;
                    offset = offset.checked_add(size).ok_or_else(overflow)?;
                }
                i = plain_end;
                continue;
            }
            let kind = kinds[i];
            let new = kept.next(i);
            if kind != KIND_FILE {
                i += 1;
                continue;
            }
            let size = sizes.next_uint(u64::MAX).ok_or_else(fewer)??;
            // Most files are in no table: one comparison, not one per table.
            let stored = if (i as u32) < next_special {
                size
            } else {
                let sparse_row = sparse_rows.next_if(|(e, _)| *e == i as u32);
                // Sources come in order, as files do: one step at a time, no search per file.
                if let Some(source) = source_sizes.get_mut(next_source).filter(|(s, _)| *s == i as u32) {
                    if sparse_row.is_some() || size == 0 {
                        return Err(corrupt(format!("copied file {} is sparse or empty", shown(i))));
                    }
                    source.1 = size;
                    next_source += 1;
                }
                let stored = match (sparse_row, copy_rows.next_if(|(c, _)| *c == i as u32)) {
                    (None, Some(&(_, source))) => {
                        let k = source_sizes.binary_search_by_key(&source, |&(s, _)| s).unwrap_or(0);
                        if source_sizes[k].1 != size {
                            return Err(corrupt(format!(
                                "copy {} differs in size from its source",
                                shown(i)
                            )));
                        }
                        0
                    }
                    (Some(_), Some(_)) => return Err(corrupt(format!("copy {} is sparse", shown(i)))),
                    (Some((_, extents)), None) => {
                        let end = extents.last().map_or(0, |x| x.offset + x.len);
                        if end > size {
                            return Err(corrupt(format!(
                                "sparse file {} has an extent past its end",
                                shown(i)
                            )));
                        }
                        extents.iter().map(|x| x.len).sum()
                    }
                    (None, None) => size,
                };
                next_special = [
                    sparse_rows.peek().map(|(e, _)| *e),
                    copy_rows.peek().map(|(c, _)| *c),
                    source_sizes.get(next_source).map(|(s, _)| *s),
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(u32::MAX);
                stored
            };
            if let Some(new) = new {
                entries[new].data = size;
                if stored > 0 {
                    if let (Some(&last), true) = (files.last(), kept_end != offset) {
                        files.push(last | GAP);
                        offsets.push(kept_end);
                    }
                    files.push(new as u32);
                    offsets.push(offset);
                }
            }
            offset = offset.checked_add(stored).ok_or_else(overflow)?;
            if new.is_some() && stored > 0 {
                kept_end = offset;
            }
            i += 1;
        }
        offsets.push(kept_end);
        if let Some((e, _)) = sparse_rows.next() {
            return Err(corrupt(format!("sparse extents for entry {e}, which is not a regular file")));
        }
        if !sizes.unpack.is_done() {
            return Err(corrupt("more sizes than files"));
        }

        // Symlinks' targets, hard links, devices.
        let mut targets = match keep {
            Keep::All => Names::with_capacity(target_count, target_bytes),
            Keep::Only(_) => Names::with_capacity(0, 0),
        };
        let mut target_column = column(Col::Targets);
        let mut links = column(Col::Links);
        let (mut majors, mut minors) = (column(Col::DevMajors), column(Col::DevMinors));
        let mut kept = keep.cursor();
        for (i, &kind) in kinds.iter().enumerate() {
            let new = kept.next(i);
            let data = match kind {
                KIND_SYMLINK => {
                    let target = target_column
                        .next_string(MAX_TARGET_LEN)
                        .ok_or_else(|| corrupt("fewer targets than symlinks"))??;
                    if target.is_empty() || target.contains(&0) {
                        return Err(corrupt(format!("symlink {} has an invalid target", shown(i))));
                    }
                    if new.is_none() {
                        continue;
                    }
                    targets.push(target);
                    targets.len() as u64 - 1
                }
                KIND_LINK => {
                    let target = links
                        .next_uint(u32::MAX.into())
                        .ok_or_else(|| corrupt("fewer links than hard links"))??;
                    // Only an earlier regular file: never a path, never a link to a link.
                    if target >= i as u64 || kinds[target as usize] != KIND_FILE {
                        return Err(corrupt(format!(
                            "hard link {} does not refer to an earlier regular file",
                            shown(i)
                        )));
                    }
                    if new.is_none() {
                        continue;
                    }
                    keep.renumbered(target as u32)
                        .ok_or_else(|| corrupt("index: a kept hard link's file is not kept"))?
                        .into()
                }
                KIND_CHAR | KIND_BLOCK => {
                    let fewer = || corrupt("fewer device numbers than devices");
                    let major = majors.next_uint(u32::MAX.into()).ok_or_else(fewer)??;
                    let minor = minors.next_uint(u32::MAX.into()).ok_or_else(fewer)??;
                    major << 32 | minor
                }
                _ => continue,
            };
            if let Some(new) = new {
                entries[new].data = data;
            }
        }
        for (column, what) in [(&target_column, "targets than symlinks"), (&links, "links than hard links")] {
            if !column.unpack.is_done() {
                return Err(corrupt(format!("more {what}")));
            }
        }
        if !majors.unpack.is_done() {
            return Err(corrupt("more device numbers than devices"));
        }
        let (blocks, final_record) = block_table(block_record, offset, data_end, packed.version)?;
        if let Keep::Only(list) = keep {
            // The tables' rows of the entries kept, under their new numbers.
            renumber(&mut sparse, list);
            renumber(&mut xattrs, list);
            renumber(&mut copies, list);
            for (_, source) in &mut copies {
                *source = keep
                    .renumbered(*source)
                    .ok_or_else(|| corrupt("index: a kept copy's source is not kept"))?;
            }
        }
        let shared = shared_of(&copies);
        let tables = Tables { owners, sparse, copies, xattrs, users, groups };
        Ok(Index { entries, names, targets, blocks, final_record, tables, files, offsets, shared })
    }

    /// Checks a record and builds its index, through its serialized form (for tests and tools;
    /// the budget is the largest an archive may have).
    pub fn from_record(record: IndexRecord, data_end: u64) -> Result<Index, FormatError> {
        let mut budget = Budget::for_archive(u64::MAX);
        let mut cbor = Vec::new();
        ciborium::into_writer(&record, &mut cbor).map_err(|e| corrupt(format!("index: {e}")))?;
        let mut packed = decode_cbor(&cbor, 2, &mut budget)?;
        packed.version = record.version;
        Index::from_packed(&packed, data_end, &mut budget, Keep::All)
    }

    /// The record that serializes this index; the inverse of [`Index::from_record`] (for tests
    /// and tools). It is read back from [`Index::as_record`]'s bytes, so the two cannot differ.
    pub fn into_record(self) -> IndexRecord {
        let mut cbor = Vec::new();
        let mut budget = Budget::for_archive(u64::MAX);
        ciborium::into_writer(&self.as_record(), &mut cbor)
            .map_err(|e| corrupt(format!("index: {e}")))
            .and_then(|()| decode_cbor(&cbor, 2, &mut budget))
            .and_then(|packed| packed.record(&mut budget))
            .map(|record| IndexRecord { version: super::VERSION, ..record })
            .unwrap_or_else(|e| unreachable!("an index serializes to a record it reads back: {e}"))
    }

    /// The index serialized as its [`IndexRecord`] would be (the same bytes: a unit test
    /// compares), column by column straight from the entries, without the record's copy of
    /// them: what a writer of a million entries serializes.
    pub fn as_record(&self) -> impl serde::Serialize + '_ {
        RecordView { index: self, range: 0..self.entries.len(), base: 0, whole: true }
    }

    /// The record of entries `range` (FORMAT.md §3.2): the index map of those entries alone,
    /// numbered from `range.start + base` (their tables' rows are found by those numbers),
    /// with the owner names they use and no block table. What the writer puts before each
    /// block and `verify` compares the records with.
    pub fn run_record(&self, range: std::ops::Range<usize>, base: u32) -> impl serde::Serialize + '_ {
        RecordView { index: self, range, base, whole: false }
    }

    /// The entries of one record, for [`Index::run_record`] to serialize (the writer): their
    /// tables keyed by the entries' numbers in the archive, no blocks, and no spans (which
    /// need the entries before them).
    pub fn of_run(entries: Vec<Entry>, names: Names, targets: Names, tables: Tables) -> Index {
        let (files, offsets, shared) = (Vec::new(), Vec::new(), Default::default());
        Index { entries, names, targets, blocks: Vec::new(), final_record: 0, tables, files, offsets, shared }
    }

    /// Builds an index from entries, names, targets, blocks and tables the caller made
    /// consistent (the writer): no check is made here beyond what [`Index::from_packed`] would
    /// refuse later when the archive is read.
    pub fn from_parts(
        entries: Vec<Entry>,
        names: Names,
        targets: Names,
        blocks: Vec<Block>,
        final_record: u64,
        tables: Tables,
    ) -> Index {
        let shared = shared_of(&tables.copies);
        let mut index = Index {
            entries,
            names,
            targets,
            blocks,
            final_record,
            tables,
            files: Vec::new(),
            offsets: Vec::new(),
            shared,
        };
        let mut offset = 0;
        for i in 0..index.entries.len() {
            let stored = match index.extents(i) {
                Some(extents) => extents.iter().map(|x| x.len).sum(),
                None if index.copy_source(i).is_some() => 0,
                None => index.entries[i].size(),
            };
            if stored > 0 {
                index.files.push(i as u32);
                index.offsets.push(offset);
                offset += stored;
            }
        }
        index.offsets.push(offset);
        index
    }

    /// Bytes of all names.
    pub fn names_len(&self) -> usize {
        self.names.total_len()
    }

    /// Symlink `i`'s target (empty for the other kinds).
    pub fn target(&self, i: usize) -> &[u8] {
        match self.entries[i].kind() {
            Kind::Symlink { target } => self.targets.get(target as usize),
            _ => &[],
        }
    }

    /// Where regular file `i`'s stored bytes lie in the data stream, (offset, length), its own
    /// or for a copy its source's: `None` when it has none (an empty file, or not a file).
    pub fn span(&self, i: usize) -> Option<(u64, u64)> {
        self.own_span(i).or_else(|| self.copy_source(i).and_then(|s| self.own_span(s as usize)))
    }

    /// [`Index::span`] of the bytes stored for file `i` itself: none for a copy.
    fn own_span(&self, i: usize) -> Option<(u64, u64)> {
        // A gap after file `i` has the same number with GAP set: the file comes first.
        let k = self.files.partition_point(|&f| f & !GAP < i as u32);
        (self.files.get(k) == Some(&(i as u32)))
            .then(|| (self.offsets[k], self.offsets[k + 1] - self.offsets[k]))
    }

    /// Bytes of entry `i`'s contents in the data stream: a file's size, or for a sparse file
    /// the sum of its extents (a copy's are its source's); 0 for the other kinds.
    pub fn stored(&self, i: usize) -> u64 {
        self.span(i).map_or(0, |(_, stored)| stored)
    }

    /// The file whose stored bytes file `i` shares, if it is a copy (FORMAT.md §4.8).
    pub fn copy_source(&self, i: usize) -> Option<u32> {
        let rows = &self.tables.copies;
        if rows.is_empty() {
            return None;
        }
        rows.binary_search_by_key(&(i as u32), |&(c, _)| c).ok().map(|r| rows[r].1)
    }

    /// The copies of file `s`, in entry order.
    pub fn copies_of(&self, s: u32) -> impl Iterator<Item = u32> + '_ {
        self.shared.range((s, 0)..=(s, u32::MAX)).map(|&(_, c)| c)
    }

    /// Entry `i`'s name: one path component.
    pub fn name(&self, i: usize) -> &[u8] {
        self.names.get(i)
    }

    /// The data extents of sparse file `i`; `None` for a dense file (one extent, all of it).
    pub fn extents(&self, i: usize) -> Option<&[Extent]> {
        let rows = &self.tables.sparse;
        rows.binary_search_by_key(&(i as u32), |(e, _)| *e).ok().map(|r| rows[r].1.as_slice())
    }

    /// The extended attributes of entry `i`, sorted by name.
    pub fn xattrs(&self, i: usize) -> &[Xattr] {
        let rows = &self.tables.xattrs;
        rows.binary_search_by_key(&(i as u32), |(e, _)| *e).map_or(&[], |r| rows[r].1.as_slice())
    }

    /// The name of user `uid` where the archive was written, if it had one.
    pub fn user_name(&self, uid: u32) -> Option<&[u8]> {
        lookup(&self.tables.users, uid)
    }

    /// The name of group `gid` where the archive was written, if it had one.
    pub fn group_name(&self, gid: u32) -> Option<&[u8]> {
        lookup(&self.tables.groups, gid)
    }

    /// The regular file entry whose data entry `i` has: itself, or for a hard link its target.
    pub fn data_entry(&self, i: usize) -> Option<usize> {
        match self.entries[i].kind() {
            Kind::File { .. } => Some(i),
            Kind::HardLink { target } => Some(target as usize),
            _ => None,
        }
    }

    /// The entry's path as bytes, as `list` prints it before escaping: root name first, `/`
    /// between components.
    pub fn path(&self, i: usize) -> Vec<u8> {
        let mut chain = vec![i];
        let mut at = i;
        while let Some(parent) = self.entries[at].parent() {
            at = parent as usize;
            chain.push(at);
        }
        let mut path = Vec::new();
        for (n, &e) in chain.iter().rev().enumerate() {
            if n > 0 {
                path.push(b'/');
            }
            path.extend_from_slice(self.names.get(e));
        }
        path
    }

    /// Appends the entries of a record read from a stream (FORMAT.md §3.2) to this index of
    /// the records before it, as if they had been in it from the start: what a reader of a
    /// pipe extracts from, block by block. `head` must follow on from this index (its block,
    /// first entry and offsets), `record_len` is its frame's length and `block_at` where its
    /// block's frame starts in the stream. The entries are checked as `from_packed` checks an
    /// index, together with the entries they hang from (the directories above them and the
    /// last entry before them, and the files their hard links name and the sources of their
    /// copies, with theirs): whatever
    /// is refused in an index is refused here. The whole index so made equals the index read
    /// from the archive's end, which the reader compares at the end. Returns the new entries.
    pub fn append_run(
        &mut self,
        head: &RecordHead,
        record_len: u64,
        block_at: u64,
        run: &IndexRecord,
    ) -> Result<std::ops::Range<usize>, FormatError> {
        let first = self.entries.len();
        let stored_end = self.offsets.last().copied().unwrap_or(0);
        if head.first_entry != first as u64
            || head.block != self.blocks.len() as u64
            || head.block_offset != self.data_len()
            || head.data_offset != stored_end
        {
            return Err(corrupt(format!(
                "record before block {}: it does not follow on from the records before it",
                head.block
            )));
        }
        let count = run.names.len();
        if first + count > MAX_ENTRIES {
            return Err(corrupt(format!("more than {MAX_ENTRIES} entries")));
        }
        // The entries the run hangs from: the last entry and the directories above it (its
        // siblings and parents are among them), and the files its hard links name.
        let mut context: Vec<u32> = Vec::new();
        let add = |index: &Index, e: u32, context: &mut Vec<u32>| {
            let mut at = Some(e);
            while let Some(i) = at {
                context.push(i);
                at = index.entries[i as usize].parent();
            }
        };
        if first > 0 {
            add(self, first as u32 - 1, &mut context);
            if let Kind::HardLink { target } = self.entries[first - 1].kind() {
                add(self, target, &mut context);
            }
        }
        for &target in run.links.iter().chain(&run.copies.sources) {
            if (target as usize) < first {
                add(self, target, &mut context);
            }
        }
        // A source before the run is checked here: the run's index does not know its tables.
        for &source in &run.copies.sources {
            let s = source as usize;
            if s < first && (self.copy_source(s).is_some() || self.extents(s).is_some()) {
                return Err(corrupt(format!(
                    "record before block {}: a copy's source is itself a copy, or sparse",
                    head.block
                )));
            }
        }
        context.sort_unstable();
        context.dedup();
        let numbered = |abs: u32| -> u32 {
            match context.binary_search(&abs) {
                Ok(k) => k as u32,
                Err(_) if (abs as usize) >= first => (context.len() + abs as usize - first) as u32,
                // Not an entry the run can name: refused below as the index would be.
                Err(_) => u32::MAX,
            }
        };
        // The context and the run, as one index of their own.
        let mut whole = IndexRecord::default();
        whole.blocks.records.clear();
        for &c in &context {
            let entry = &self.entries[c as usize];
            whole.names.push(self.names.get(c as usize));
            whole.depths.push(u32::from(entry.depth));
            whole.kinds.push(entry.tag);
            whole.modes.push(entry.mode);
            whole.mtime_secs.push(entry.mtime.secs);
            whole.mtime_nanos.push(entry.mtime.nanos);
            whole.uids.push(entry.uid);
            whole.gids.push(entry.gid);
            match entry.kind() {
                Kind::File { size } => whole.sizes.push(size),
                Kind::Symlink { .. } => whole.targets.push(self.target(c as usize).to_vec()),
                Kind::HardLink { target } => whole.links.push(numbered(target)),
                Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                    whole.dev_majors.push(major);
                    whole.dev_minors.push(minor);
                }
                Kind::Dir | Kind::Fifo => {}
            }
        }
        whole.push_entries(run, numbered);
        let in_run = |abs: u32| if (abs as usize) < first { u32::MAX } else { numbered(abs) };
        whole.sparse = SparseRecord {
            files: run.sparse.files.iter().map(|&e| in_run(e)).collect(),
            ..run.sparse.clone()
        };
        whole.copies = CopyRecord {
            files: run.copies.files.iter().map(|&e| in_run(e)).collect(),
            sources: run.copies.sources.iter().map(|&e| numbered(e)).collect(),
        };
        whole.xattrs = XattrRecord {
            entries: run.xattrs.entries.iter().map(|&e| in_run(e)).collect(),
            ..run.xattrs.clone()
        };
        whole.users = run.users.clone();
        whole.groups = run.groups.clone();
        // Blocks that hold the stored bytes (never read: only the sums are checked here).
        whole.stand_in_blocks(whole.stored_total());
        whole.blocks.records.push(0);
        let data_end = HEADER_LEN + whole.blocks.lens.len() as u64;
        let checked = Index::from_record(whole, data_end)
            .map_err(|e| corrupt(format!("record before block {}: {}", head.block, e.words())))?;
        // The run's entries, numbered as in the archive.
        let base = context.len();
        let absolute = |k: u32| -> u32 {
            match (k as usize).checked_sub(base) {
                Some(r) => (first + r) as u32,
                None => context[k as usize],
            }
        };
        let mut offset = stored_end;
        if !self.offsets.is_empty() {
            self.offsets.pop();
        }
        for k in base..checked.entries.len() {
            let mut entry = checked.entries[k].clone();
            entry.parent = entry.parent().map_or(NO_PARENT, absolute);
            match entry.kind() {
                Kind::HardLink { target } => entry.set_kind(Kind::HardLink { target: absolute(target) }),
                Kind::Symlink { .. } => {
                    entry.set_kind(Kind::Symlink { target: self.targets.len() as u32 });
                    self.targets.push(checked.target(k));
                }
                _ => {}
            }
            let abs = absolute(k as u32);
            if let Some(extents) = checked.extents(k) {
                self.tables.sparse.push((abs, extents.to_vec()));
            }
            let xattrs = checked.xattrs(k);
            if !xattrs.is_empty() {
                self.tables.xattrs.push((abs, xattrs.to_vec()));
            }
            if let Some(source) = checked.copy_source(k) {
                let source = absolute(source);
                self.tables.copies.push((abs, source));
                self.shared.insert((source, abs));
            }
            let stored = checked.own_span(k).map_or(0, |(_, stored)| stored);
            if stored > 0 {
                self.files.push(abs);
                self.offsets.push(offset);
                offset += stored;
            }
            self.names.push(checked.names.get(k));
            self.entries.push(entry);
        }
        self.offsets.push(offset);
        for (table, rows) in [
            (&mut self.tables.users, &checked.tables.users),
            (&mut self.tables.groups, &checked.tables.groups),
        ] {
            for (id, name) in rows {
                match table.binary_search_by_key(id, |(i, _)| *i) {
                    Ok(at) if table[at].1 != *name => {
                        return Err(corrupt(format!("records name owner id {id} differently")));
                    }
                    Ok(_) => {}
                    Err(at) => table.insert(at, (*id, name.clone())),
                }
            }
        }
        if head.is_final() {
            self.final_record = record_len;
        } else {
            self.blocks.push(Block {
                offset: block_at,
                record_len,
                len: head.block_len,
                raw_offset: head.block_offset,
                raw_len: head.block_raw_len,
                hash: head.block_hash,
            });
        }
        Ok(first..self.entries.len())
    }

    /// The owner names only of the ids its entries use: what the records of its archive name
    /// (an index may name more: a stream's reader compares the two without them).
    pub fn owners_used(mut self) -> Index {
        let (mut uids, mut gids): (Vec<u32>, Vec<u32>) = self.entries.iter().map(|e| (e.uid, e.gid)).unzip();
        for (ids, table) in [(&mut uids, &mut self.tables.users), (&mut gids, &mut self.tables.groups)] {
            ids.sort_unstable();
            ids.dedup();
            table.retain(|(id, _)| ids.binary_search(id).is_ok());
        }
        self
    }

    /// FORMAT.md §3.2: record `r` of this index's archive (the one before block `r`, or for
    /// `r` = the number of blocks the final one), with the entries it holds; `cbor_len` is
    /// left 0. A record holds the entries after the previous record's whose stored bytes start
    /// in its block, an entry without stored bytes counting as starting where the next stored
    /// byte would (inside the block, or at its end). The final record holds what is left:
    /// every entry of an archive without data, none of any other. For a whole index only (not
    /// [`Keep::Only`]); found by binary search, so a record costs no memory per block.
    pub fn record(&self, r: usize) -> (RecordHead, std::ops::Range<usize>) {
        let range = self.first_of_record(r)..self.first_of_record(r + 1);
        let mut parents = Vec::new();
        // A record without entries names no directories.
        let mut up = self.entries[range.clone()].first().and_then(Entry::parent);
        while let Some(p) = up {
            parents.push(self.names.get(p as usize).to_vec());
            up = self.entries[p as usize].parent();
        }
        parents.reverse();
        let (data_offset, _) = self.data_at(range.start);
        let head = match self.blocks.get(r) {
            Some(block) => RecordHead {
                block: r as u64,
                block_len: block.len,
                block_raw_len: block.raw_len,
                block_hash: block.hash,
                first_entry: range.start as u64,
                block_offset: block.raw_offset,
                data_offset,
                cbor_len: 0,
                parents,
            },
            None => RecordHead {
                block: self.blocks.len() as u64,
                first_entry: range.start as u64,
                block_offset: self.data_len(),
                data_offset,
                parents,
                ..RecordHead::default()
            },
        };
        (head, range)
    }

    /// Every record, in order ([`Index::record`]).
    pub fn records(&self) -> impl Iterator<Item = (RecordHead, std::ops::Range<usize>)> + '_ {
        (0..=self.blocks.len()).map(|r| self.record(r))
    }

    /// The first entry of record `r` (entries' records never decrease), or the number of
    /// entries past the last record.
    fn first_of_record(&self, r: usize) -> usize {
        if r > self.blocks.len() {
            return self.entries.len();
        }
        // Entries 0..n, then one past: n + 1 candidates.
        let (mut lo, mut hi) = (0usize, self.entries.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.record_of(mid) < r {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The record entry `e` belongs to.
    fn record_of(&self, e: usize) -> usize {
        let (data, stored) = self.data_at(e);
        match stored {
            true => self.blocks.partition_point(|b| b.raw_end() <= data),
            false => self.blocks.partition_point(|b| b.raw_end() < data),
        }
    }

    /// Where entry `e`'s stored bytes start in the data stream (or would: where the next
    /// file's start), and whether it has any.
    fn data_at(&self, e: usize) -> (u64, bool) {
        let k = self.files.partition_point(|&f| (f & !GAP) < e as u32);
        let data = self.offsets.get(k).copied().unwrap_or(0);
        (data, self.files.get(k) == Some(&(e as u32)))
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
        self.span(i).map_or(0..0, |(offset, stored)| self.blocks_for(offset, stored))
    }

    /// The files that have bytes in block `b`, in data-stream order, with where their bytes
    /// lie, each followed by its copies (the same bytes): the one lookup from a block to its
    /// files, used by read and verify.
    pub fn files_in(&self, b: usize) -> impl Iterator<Item = FilePiece> + '_ {
        self.stored_in(b).flat_map(move |piece| {
            let copies = self.copies_of(piece.entry).map(move |entry| FilePiece { entry, ..piece });
            std::iter::once(piece).chain(copies)
        })
    }

    /// [`Index::files_in`] without the copies.
    fn stored_in(&self, b: usize) -> impl Iterator<Item = FilePiece> + '_ {
        let block = self.blocks[b];
        let first = self.offsets[1..].partition_point(|&end| end <= block.raw_offset);
        (first..self.files.len())
            .map(move |k| (self.files[k], self.offsets[k], self.offsets[k + 1]))
            .take_while(move |&(_, offset, _)| offset < block.raw_end())
            .filter(|&(i, _, _)| i & GAP == 0)
            .map(move |(i, offset, file_end)| {
                let start = offset.max(block.raw_offset);
                let end = file_end.min(block.raw_end());
                FilePiece {
                    entry: i,
                    start_in_block: (start - block.raw_offset) as usize,
                    file_offset: start - offset,
                    len: (end - start) as usize,
                    whole: start == offset && end == file_end,
                }
            })
    }
}

/// Which entries [`Index::from_packed`] keeps; every entry is checked either way.
#[derive(Debug, Clone, Copy)]
pub enum Keep<'k> {
    All,
    /// These entries, by their numbers in the archive, sorted: they must include the
    /// directories above each and the file of each hard link ([`Tree::keep`] makes such a
    /// list). They are numbered anew, in order, in the index built.
    Only(&'k [u32]),
}

impl<'k> Keep<'k> {
    fn cursor(self) -> KeptCursor<'k> {
        KeptCursor { keep: self, at: 0 }
    }

    /// Entry `old`'s number in the index built, if it is kept.
    fn renumbered(self, old: u32) -> Option<u32> {
        match self {
            Keep::All => Some(old),
            Keep::Only(list) => list.binary_search(&old).ok().map(|new| new as u32),
        }
    }
}

/// Goes through the entries in order, saying which are kept and as what.
struct KeptCursor<'k> {
    keep: Keep<'k>,
    /// How many of the list are behind.
    at: usize,
}

impl KeptCursor<'_> {
    /// The next entry from `i` on that is kept: `i` itself when all are, past the last
    /// entry (`usize::MAX`) when none is left.
    #[inline(always)]
    fn upcoming(&self, i: usize) -> usize {
        match self.keep {
            Keep::All => i,
            Keep::Only(list) => list.get(self.at).map_or(usize::MAX, |&e| e as usize),
        }
    }

    /// Entry `i`'s number in the index built, if it is kept; `i` must grow from call to call.
    #[inline(always)]
    fn next(&mut self, i: usize) -> Option<usize> {
        match self.keep {
            Keep::All => Some(i),
            Keep::Only(list) => (list.get(self.at) == Some(&(i as u32))).then(|| {
                self.at += 1;
                self.at - 1
            }),
        }
    }
}

/// Keeps the rows of `list`'s entries, under their new numbers.
fn renumber<T>(rows: &mut Vec<(u32, T)>, list: &[u32]) {
    rows.retain_mut(|(e, _)| match list.binary_search(e) {
        Ok(new) => {
            *e = new as u32;
            true
        }
        Err(_) => false,
    });
}

/// Entry `i`'s name in a packed index (for messages: found again from the start).
fn name_at(packed: &Packed, i: usize) -> &[u8] {
    let mut names = Unpack::new(packed.column(Col::Names));
    (0..=i).map(|_| names.string(MAX_NAME_LEN).unwrap_or_default()).last().unwrap_or_default()
}

/// The tree of an index alone (names, depths and kinds), checked whole by the rules
/// [`Index::from_packed`] applies to them, nothing else read: what `list` needs, without
/// building the index. [`Tree::walk`] then goes through it again without the checks.
pub struct Tree<'a> {
    packed: &'a Packed,
    /// Where [`Tree::find`] found the first entry it found (the smallest, if more), for
    /// [`Tree::keep`] to start there.
    found: std::cell::RefCell<Option<Mark>>,
}

/// An entry found by [`Tree::find`] and what a walk needs to go on from it: where its name
/// and depth start in their columns, and the entries above it (which a search for its path
/// went through: each is the component above).
struct Mark {
    entry: usize,
    names_at: usize,
    depths_at: usize,
    chain: Vec<u32>,
}

/// A walk of a tree not checked ([`Tree::walk_from`]): each entry's number, name, depth and
/// kind, in order. It stops early at a value that does not parse or an entry deeper than one
/// below the one before, so that whoever follows the depths (a stack of the names above) can
/// trust them.
struct TreeWalk<'a> {
    kinds: &'a [u8],
    names: Unpack<'a>,
    depths: Unpack<'a>,
    next: usize,
    deepest: usize,
}

impl<'a> Iterator for TreeWalk<'a> {
    type Item = (usize, &'a [u8], usize, u8);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let &kind = self.kinds.get(self.next)?;
        let name = self.names.string(MAX_NAME_LEN).ok()?;
        let depth = self.depths.uint(MAX_DEPTH.into()).ok()? as usize;
        if depth > self.deepest {
            return None;
        }
        self.deepest = depth + 1;
        self.next += 1;
        Some((self.next - 1, name, depth, kind))
    }
}

impl<'a> Tree<'a> {
    pub fn check(packed: &'a Packed) -> Result<Tree<'a>, FormatError> {
        check_tree(packed)?;
        Ok(Tree::unchecked(packed))
    }

    /// The tree of `packed`, not checked: what [`Tree::find`] and [`Tree::keep`] look through
    /// to choose which entries to build an index with. Their answers mean something once
    /// [`Index::from_packed`] has built the index from the same `packed`, which checks it all.
    pub fn unchecked(packed: &'a Packed) -> Tree<'a> {
        Tree { packed, found: std::cell::RefCell::new(None) }
    }

    /// How many entries the index holds.
    pub fn len(&self) -> usize {
        self.packed.column(Col::Kinds).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The walk from entry `at` (its name and depth at those bytes of their columns), the
    /// entry before it `deepest - 1` deep.
    fn walk_from(&self, at: usize, names_at: usize, depths_at: usize, deepest: usize) -> TreeWalk<'a> {
        TreeWalk {
            kinds: self.packed.column(Col::Kinds),
            names: Unpack::new_at(self.packed.column(Col::Names), names_at),
            depths: Unpack::new_at(self.packed.column(Col::Depths), depths_at),
            next: at,
            deepest,
        }
    }

    /// Each entry's number, name, depth and kind, in order.
    fn entries(&self) -> TreeWalk<'a> {
        self.walk_from(0, 0, 0, 0)
    }

    /// Calls `visit(name, depth, is_dir)` for each entry, in order.
    pub fn walk(&self, mut visit: impl FnMut(&[u8], usize, bool)) {
        for (_, name, depth, kind) in self.entries() {
            visit(name, depth, kind == KIND_DIR);
        }
    }

    /// The entry whose path is `components` (the root's name first), if there is one.
    pub fn find(&self, components: &[&[u8]]) -> Option<usize> {
        if components.is_empty() {
            return None;
        }
        // The entries matched so far, one per component: the chain of the entry found.
        let mut matched: Vec<u32> = Vec::with_capacity(components.len());
        let mut walk = self.entries();
        loop {
            let (names_at, depths_at) = (walk.names.at(), walk.depths.at());
            let (i, name, depth, _) = walk.next()?;
            if depth < matched.len() {
                // Out of the subtree of the last component matched: not there.
                return None;
            }
            if depth == matched.len() && name == components[depth] {
                if depth + 1 < components.len() {
                    matched.push(i as u32);
                    continue;
                }
                let mut found = self.found.borrow_mut();
                if found.as_ref().map_or(true, |mark| i < mark.entry) {
                    *found = Some(Mark { entry: i, names_at, depths_at, chain: matched });
                }
                return Some(i);
            }
        }
    }

    /// The entries an index of the subtrees of `roots` is built with ([`Keep::Only`]): each
    /// root and everything beneath it, the directories above them, and the file of each of
    /// their hard links with the directories above it; sorted. `None` when that is more than
    /// `limit` entries (then the whole index is as good). What it allocates on the way stays
    /// within `limit` entries of 12 bytes, plus the directories above one entry.
    pub fn keep(&self, roots: &[usize], limit: usize) -> Option<Vec<u32>> {
        let mut roots = roots.to_vec();
        roots.sort_unstable();
        // A PATH given twice is one root (else the second would wait for its entry forever).
        roots.dedup();
        let mut roots = roots.into_iter().peekable();
        let mut keep = Vec::new();
        let mut files = Vec::new();
        let mut links = Unpack::new(self.packed.column(Col::Links));
        let (mut copies, mut sources) = (
            Unpack::new(self.packed.column(Col::CopyFiles)),
            Unpack::new(self.packed.column(Col::CopySources)),
        );
        // The chain of entries above the current one.
        let mut chain: Vec<u32> = Vec::new();
        // From the first root if `find` found it (what is before it is only its chain), else
        // from the first entry.
        let mut walk = self.entries();
        if let Some(mark) = self.found.borrow().as_ref().filter(|mark| roots.peek() == Some(&mark.entry)) {
            walk = self.walk_from(mark.entry, mark.names_at, mark.depths_at, mark.chain.len());
            chain.clone_from(&mark.chain);
            // The hard links and copies before it are not the walk's.
            let kinds = self.packed.column(Col::Kinds);
            for _ in kinds[..mark.entry].iter().filter(|&&k| k == KIND_LINK) {
                let _ = links.uint(u32::MAX.into());
            }
        }
        let first = walk.next as u64;
        let mut copy = copies.uint(u32::MAX.into()).ok();
        while copy.is_some_and(|c| c < first) {
            copy = copies.uint(u32::MAX.into()).ok();
            let _ = sources.uint(u32::MAX.into());
        }
        // The depth of the root whose subtree the walk is in.
        let mut inside: Option<usize> = None;
        for (i, _, depth, kind) in walk {
            chain.truncate(depth);
            if inside.is_some_and(|root| depth <= root) {
                inside = None;
            }
            if inside.is_none() && roots.peek().is_none() {
                // Past the last subtree: nothing more to keep.
                break;
            }
            let root = roots.next_if_eq(&i).is_some();
            if root && inside.is_none() {
                keep.extend_from_slice(&chain);
                inside = Some(depth);
            }
            let link = (kind == KIND_LINK).then(|| links.uint(u32::MAX.into()).unwrap_or(0));
            let source = (copy == Some(i as u64)).then(|| {
                copy = copies.uint(u32::MAX.into()).ok();
                sources.uint(u32::MAX.into()).unwrap_or(0)
            });
            if inside.is_some() {
                keep.push(i as u32);
                files.extend(link);
                files.extend(source);
            }
            if keep.len() > limit {
                return None;
            }
            chain.push(i as u32);
        }
        if !files.is_empty() {
            // A hard link's file may be a copy: its source is kept too. Both lists are in
            // order (the copies' as the index must have them): one pass, nothing allocated.
            files.sort_unstable();
            let (mut copied, mut sources) = (
                Unpack::new(self.packed.column(Col::CopyFiles)),
                Unpack::new(self.packed.column(Col::CopySources)),
            );
            let mut linked = 0;
            let mut found = Vec::new();
            while let (Ok(copy), Ok(source)) = (copied.uint(u32::MAX.into()), sources.uint(u32::MAX.into())) {
                while files.get(linked).is_some_and(|&f| f < copy) {
                    linked += 1;
                }
                if files.get(linked) == Some(&copy) {
                    found.push(source);
                }
                if linked == files.len() || found.len() > limit {
                    break;
                }
            }
            files.extend(found);
            files.sort_unstable();
            let mut files = files.into_iter().peekable();
            chain.clear();
            for (i, _, depth, _) in self.entries() {
                if files.peek().is_none() || keep.len() > limit {
                    break;
                }
                chain.truncate(depth);
                if files.next_if(|&f| f == i as u64).is_some() {
                    keep.extend_from_slice(&chain);
                    keep.push(i as u32);
                    while files.next_if(|&f| f == i as u64).is_some() {}
                }
                chain.push(i as u32);
            }
        }
        keep.sort_unstable();
        keep.dedup();
        (keep.len() <= limit).then_some(keep)
    }
}

/// Checks the tree of an index, entry by entry ([`Tree::check`]).
fn check_tree(packed: &Packed) -> Result<(), FormatError> {
    let kinds = packed.column(Col::Kinds);
    let (names, depths) = (packed.column(Col::Names), packed.column(Col::Depths));
    let count = kinds.len();
    if count > MAX_ENTRIES {
        return Err(corrupt(format!("{count} entries is over the limit")));
    }
    if count_uints(depths) != count {
        return Err(corrupt(format!(
            "{} has {} values for {count} entries",
            Col::Depths.shown(),
            count_uints(depths)
        )));
    }
    let newest = if packed.version >= 2 { KIND_BLOCK } else { KIND_SYMLINK };
    let mut name_column = Column { col: Col::Names, unpack: Unpack::new(names) };
    let mut depth_column = Column { col: Col::Depths, unpack: Unpack::new(depths) };
    let mut tree = TreeCheck::default();
    for (i, &kind) in kinds.iter().enumerate() {
        let name = name_column.next_string(MAX_NAME_LEN).ok_or_else(|| {
            corrupt(format!("{} has fewer names than the {count} entries", Col::Names.shown()))
        })??;
        let depth = depth_column.uint(u32::MAX.into())?;
        tree.step(i, name, depth, kinds)?;
        if kind > newest {
            return Err(corrupt(format!("entry {} has unknown kind {kind}", Shown(name))));
        }
    }
    if !name_column.unpack.is_done() {
        return Err(corrupt(format!("{} has more names than the {count} entries", Col::Names.shown())));
    }
    if !depth_column.unpack.is_done() {
        return Err(col_error(Col::Depths, "ends inside an integer"));
    }
    Ok(())
}

/// The rules of the tree (FORMAT.md §4.1), checked entry by entry in pre-order: each name is
/// one safe component, each entry is at most one level below the one before and inside a
/// directory, and siblings are strictly sorted by name bytes (so there are no duplicates).
#[derive(Default)]
struct TreeCheck<'a> {
    /// The current entry's chain of ancestors and itself: entry number and name at each depth.
    /// The entry at depth `d` is also the sibling the next entry at depth `d` must sort after
    /// (an entry at a shallower depth in between would have cut the chain).
    chain: Vec<(u32, &'a [u8])>,
}

impl<'a> TreeCheck<'a> {
    /// Checks entry `i` (of `kinds`, the index's kinds column) and returns its parent.
    #[inline]
    fn step(
        &mut self,
        i: usize,
        name: &'a [u8],
        depth: u64,
        kinds: &[u8],
    ) -> Result<Option<u32>, FormatError> {
        check_name(name)?;
        // For messages only: made when one is.
        let shown = Shown(name);
        if depth > MAX_DEPTH.into() {
            return Err(corrupt(format!("nesting deeper than {MAX_DEPTH}")));
        }
        let depth = depth as usize;
        if depth > self.chain.len() {
            return Err(corrupt(format!("entry {shown} has no parent directory")));
        }
        let parent = match depth {
            0 => None,
            _ => {
                let parent = self.chain[depth - 1].0;
                if kinds[parent as usize] != KIND_DIR {
                    return Err(corrupt(format!("entry {shown} is inside a non-directory")));
                }
                Some(parent)
            }
        };
        if let Some(&(_, sibling)) = self.chain.get(depth) {
            if !sorts_before(sibling, name) {
                return Err(corrupt(format!("entry {shown} is a duplicate or out of order")));
            }
        }
        self.chain.truncate(depth);
        self.chain.push((i as u32, name));
        Ok(parent)
    }
}

/// Whether `a < b` in byte order, the first eight bytes compared as one number: siblings
/// mostly differ there, and every entry of every index is compared with the one before.
#[inline]
fn sorts_before(a: &[u8], b: &[u8]) -> bool {
    if let (Some(a8), Some(b8)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        let (a8, b8) = (u64::from_be_bytes(*a8), u64::from_be_bytes(*b8));
        if a8 != b8 {
            return a8 < b8;
        }
    }
    a < b
}

/// [`Index::as_record`] and [`Index::run_record`]: the entries of `range`, numbered from
/// `range.start + base` in the archive; `whole` for the index itself (every name and owner,
/// the block table).
struct RecordView<'a> {
    index: &'a Index,
    range: std::ops::Range<usize>,
    base: u32,
    whole: bool,
}

/// A packed column of unsigned integers, made from the entries when it is serialized.
struct Uints<F>(F);

impl<F: Fn() -> I, I: ExactSizeIterator<Item = u64>> serde::Serialize for Uints<F> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        super::packed::uints_of((self.0)(), serializer)
    }
}

/// A packed column of signed integers as differences, likewise.
struct Deltas<F>(F);

impl<F: Fn() -> I, I: ExactSizeIterator<Item = i64>> serde::Serialize for Deltas<F> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        super::packed::deltas_of((self.0)(), serializer)
    }
}

impl serde::Serialize for RecordView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let RecordView { index, range, base, whole } = self;
        let entries = &index.entries[range.clone()];
        // Entry numbers as the archive has them: the tables' rows of this run.
        let numbers = range.start as u32 + base..range.end as u32 + base;
        // The kind-dependent columns, in entry order.
        let of_kind = |tags: &'static [u8]| entries.iter().filter(move |e| tags.contains(&e.tag));
        let count = |tags: &'static [u8]| of_kind(tags).count();
        let (files, links, devices) =
            (count(&[KIND_FILE]), count(&[KIND_LINK]), count(&[KIND_CHAR, KIND_BLOCK]));
        let mut record = serializer.serialize_struct("IndexRecord", 19)?;
        if *whole {
            record.serialize_field("names", &index.names)?;
        } else {
            let names = Strings(|| range.clone().map(|i| index.names.get(i)));
            record.serialize_field("names", &names)?;
        }
        record.serialize_field("depths", &Uints(|| entries.iter().map(|e| u64::from(e.depth))))?;
        record.serialize_field(
            "kinds",
            serde_bytes::Bytes::new(&entries.iter().map(|e| e.tag).collect::<Vec<u8>>()),
        )?;
        record.serialize_field("modes", &Uints(|| entries.iter().map(|e| u64::from(e.mode))))?;
        record.serialize_field("mtime_secs", &Deltas(|| entries.iter().map(|e| e.mtime.secs)))?;
        record.serialize_field("mtime_nanos", &Uints(|| entries.iter().map(|e| u64::from(e.mtime.nanos))))?;
        record.serialize_field("uids", &Uints(|| entries.iter().map(|e| u64::from(e.uid))))?;
        record.serialize_field("gids", &Uints(|| entries.iter().map(|e| u64::from(e.gid))))?;
        record.serialize_field(
            "sizes",
            &Uints(|| ExactLen(files, Box::new(of_kind(&[KIND_FILE]).map(|e| e.data)))),
        )?;
        if *whole {
            record.serialize_field("targets", &index.targets)?;
        } else {
            let targets = Strings(|| {
                range.clone().filter(|&i| index.entries[i].tag == KIND_SYMLINK).map(|i| index.target(i))
            });
            record.serialize_field("targets", &targets)?;
        }
        record.serialize_field(
            "links",
            &Uints(|| ExactLen(links, Box::new(of_kind(&[KIND_LINK]).map(|e| e.data)))),
        )?;
        let devices_of = |half: fn(u64) -> u64| {
            Uints(move || {
                ExactLen(devices, Box::new(of_kind(&[KIND_CHAR, KIND_BLOCK]).map(move |e| half(e.data))))
            })
        };
        record.serialize_field("dev_majors", &devices_of(|data| data >> 32))?;
        record.serialize_field("dev_minors", &devices_of(|data| data & u64::from(u32::MAX)))?;
        let tables = &index.tables;
        let mut sparse = SparseRecord::default();
        for (entry, extents) in rows_of(&tables.sparse, &numbers) {
            sparse.files.push(*entry);
            sparse.counts.push(extents.len() as u32);
            sparse.offsets.extend(extents.iter().map(|x| x.offset));
            sparse.lens.extend(extents.iter().map(|x| x.len));
        }
        record.serialize_field("sparse", &sparse)?;
        let (files, sources) = rows_of(&tables.copies, &numbers).iter().copied().unzip();
        record.serialize_field("copies", &CopyRecord { files, sources })?;
        let mut xattrs = XattrRecord::default();
        for (entry, list) in rows_of(&tables.xattrs, &numbers) {
            xattrs.entries.push(*entry);
            xattrs.counts.push(list.len() as u32);
            xattrs.names.extend(list.iter().map(|x| x.name.clone()));
            xattrs.values.extend(list.iter().map(|x| x.value.clone()));
        }
        record.serialize_field("xattrs", &xattrs)?;
        // The whole index names every owner the writer met; a run, those of its entries.
        let owners = |table: &NameTable, id: fn(&Entry) -> u32| {
            let used: Vec<u32> = match whole {
                true => Vec::new(),
                false => {
                    let mut used: Vec<u32> = entries.iter().map(id).collect();
                    used.sort_unstable();
                    used.dedup();
                    used
                }
            };
            let rows = table.iter().filter(|(i, _)| *whole || used.binary_search(i).is_ok());
            let (ids, names) = rows.map(|(i, name)| (*i, name.clone())).unzip();
            OwnerRecord { ids, names }
        };
        record.serialize_field("users", &owners(&tables.users, |e| e.uid))?;
        record.serialize_field("groups", &owners(&tables.groups, |e| e.gid))?;
        let blocks = match whole {
            true => BlockRecord {
                lens: index.blocks.iter().map(|b| b.len).collect(),
                raw_lens: index.blocks.iter().map(|b| b.raw_len).collect(),
                hashes: index.blocks.iter().map(|b| b.hash).collect(),
                records: index.blocks.iter().map(|b| b.record_len).chain([index.final_record]).collect(),
            },
            // A record's block is told by the record's head (FORMAT.md §3.2).
            false => BlockRecord::default(),
        };
        record.serialize_field("blocks", &blocks)?;
        record.end()
    }
}

/// The rows of a table (sorted by entry number) whose entries are `numbers`.
fn rows_of<'t, T>(table: &'t [(u32, T)], numbers: &std::ops::Range<u32>) -> &'t [(u32, T)] {
    let start = table.partition_point(|(e, _)| *e < numbers.start);
    let end = table.partition_point(|(e, _)| *e < numbers.end);
    &table[start..end]
}

/// A packed column of strings, made when it is serialized.
struct Strings<F>(F);

impl<'s, F: Fn() -> I, I: Iterator<Item = &'s [u8]>> serde::Serialize for Strings<F> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (count, bytes) = (self.0)().fold((0, 0), |(n, b), s| (n + 1, b + s.len()));
        super::packed::strings_of((self.0)(), bytes + count, serializer)
    }
}

/// An iterator whose length is known ahead (the count of entries of some kinds).
struct ExactLen<'a>(usize, Box<dyn Iterator<Item = u64> + 'a>);

impl Iterator for ExactLen<'_> {
    type Item = u64;
    fn next(&mut self) -> Option<u64> {
        self.1.next()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.0, Some(self.0))
    }
}

impl ExactSizeIterator for ExactLen<'_> {}

/// A packed column being read, named in its errors.
struct Column<'a> {
    col: Col,
    unpack: Unpack<'a>,
}

impl<'a> Column<'a> {
    #[inline(always)]
    fn uint(&mut self, max: u64) -> Result<u64, FormatError> {
        self.unpack.uint(max).map_err(|why| col_error(self.col, &why))
    }

    #[inline(always)]
    fn delta(&mut self) -> Result<i64, FormatError> {
        self.unpack.delta().map_err(|why| col_error(self.col, &why))
    }

    #[inline(always)]
    fn string(&mut self, max: usize) -> Result<&'a [u8], FormatError> {
        self.unpack.string(max).map_err(|why| col_error(self.col, &why))
    }

    /// The values of the entries `keep` keeps, in a column [`plainly_valid`] said yes to:
    /// each handed to `set` with the entry's number in the index built; then the column is
    /// read to its end.
    fn read_kept<T>(&mut self, keep: Keep<'_>, mut set: impl FnMut(usize, u64) -> T) {
        let Keep::Only(list) = keep else { return };
        let mut next = 0;
        for (new, &old) in list.iter().enumerate() {
            self.unpack.skip((old as usize).saturating_sub(next));
            set(new, self.unpack.uint(u64::MAX).unwrap_or(0));
            next = old as usize + 1;
        }
        self.unpack.finish();
    }

    /// The next value of a column with one per entry of a kind: `None` past its end.
    #[inline(always)]
    fn next_uint(&mut self, max: u64) -> Option<Result<u64, FormatError>> {
        (!self.unpack.is_done()).then(|| self.uint(max))
    }

    #[inline(always)]
    fn next_string(&mut self, max: usize) -> Option<Result<&'a [u8], FormatError>> {
        (!self.unpack.is_done()).then(|| self.string(max))
    }
}

/// The bytes of one file that lie in one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilePiece {
    pub entry: u32,
    /// Where the piece starts in the block's decompressed bytes.
    pub start_in_block: usize,
    /// Where the piece starts in the file's stored bytes: its offset in the file, unless the
    /// file is sparse (see [`file_writes`]).
    pub file_offset: u64,
    pub len: usize,
    /// The piece is the whole file (the file lies in this one block).
    pub whole: bool,
}

/// A name in a message about a corrupt index (bytes that are not UTF-8 as U+FFFD: this layer
/// knows no escaping), formatted only when a message is made.
struct Shown<'a>(&'a [u8]);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

/// Where the stored bytes `[stored_offset, stored_offset + len)` of a file go in it: for a dense
/// file (`extents` is `None`) the same offsets; for a sparse one, split at its extents. Yields
/// (offset in the file, range of the piece's bytes).
pub fn file_writes(
    extents: Option<&[Extent]>,
    stored_offset: u64,
    len: usize,
) -> impl Iterator<Item = (u64, std::ops::Range<usize>)> + '_ {
    let dense = extents.is_none().then_some((stored_offset, 0..len));
    let mut at = 0u64; // stored offset of the current extent
    let sparse = extents.unwrap_or(&[]).iter().filter_map(move |x| {
        let start = at;
        at += x.len;
        let (from, to) = (stored_offset.max(start), (stored_offset + len as u64).min(at));
        (from < to).then(|| {
            let piece = (from - stored_offset) as usize..(to - stored_offset) as usize;
            (x.offset + (from - start), piece)
        })
    });
    dense.into_iter().chain(sparse)
}

fn lookup(table: &[(u32, Vec<u8>)], id: u32) -> Option<&[u8]> {
    table.binary_search_by_key(&id, |(i, _)| *i).ok().map(|r| table[r].1.as_slice())
}

/// A name must be one safe path component (FORMAT.md §4.1).
fn check_name(name: &[u8]) -> Result<(), FormatError> {
    if let [] | [b'.'] | [b'.', b'.'] = name {
        return Err(corrupt(format!("invalid entry name '{}'", String::from_utf8_lossy(name))));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(corrupt("entry name too long"));
    }
    if has_slash_or_nul(name) {
        return Err(corrupt(format!("entry name {} contains '/' or NUL", String::from_utf8_lossy(name))));
    }
    Ok(())
}

/// Whether `bytes` hold a `/` or a NUL, eight bytes at a time (the last word overlapping the
/// one before, a short name padded): every name of every index goes through this.
fn has_slash_or_nul(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const SLASHES: u64 = u64::from_ne_bytes([b'/'; 8]);
    // Nonzero exactly when some byte of `word` is zero.
    let has_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS != 0;
    let found = |w: &[u8]| {
        let word = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        has_zero(word) || has_zero(word ^ SLASHES)
    };
    match bytes.len() {
        0..8 => {
            let mut padded = [b'a'; 8];
            padded[..bytes.len()].copy_from_slice(bytes);
            found(&padded)
        }
        len => bytes.chunks_exact(8).any(found) || found(&bytes[len - 8..]),
    }
}

/// Splits `counts[k]` consecutive elements off `items` for each row: the rows of a table
/// (FORMAT.md §4.4, §4.5), checked to add up.
fn rows<T>(counts: &[u32], items: Vec<T>, table: &str) -> Result<Vec<Vec<T>>, FormatError> {
    let total = counts.iter().try_fold(0u64, |sum, &c| sum.checked_add(c.into()));
    if total != Some(items.len() as u64) {
        return Err(corrupt(format!("index table {table}: counts do not add up to its elements")));
    }
    let mut items = items.into_iter();
    Ok(counts.iter().map(|&c| items.by_ref().take(c as usize).collect()).collect())
}

/// Entry numbers of a table: increasing, and below `count`.
fn check_keys(keys: &[u32], count: usize, table: &str) -> Result<(), FormatError> {
    if keys.windows(2).any(|w| w[0] >= w[1]) || keys.last().is_some_and(|&k| k as usize >= count) {
        return Err(corrupt(format!("index table {table}: entry numbers out of order or range")));
    }
    Ok(())
}

fn sparse_table(record: SparseRecord, count: usize) -> Result<Vec<(u32, Vec<Extent>)>, FormatError> {
    let SparseRecord { files, counts, offsets, lens } = record;
    if counts.len() != files.len() || offsets.len() != lens.len() {
        return Err(corrupt("index table sparse: columns differ in length"));
    }
    check_keys(&files, count, "sparse")?;
    let extents: Vec<Extent> =
        offsets.into_iter().zip(lens).map(|(offset, len)| Extent { offset, len }).collect();
    let rows = rows(&counts, extents, "sparse")?;
    for (&file, extents) in files.iter().zip(&rows) {
        let mut end = 0u64;
        for x in extents {
            let overlaps = x.offset < end;
            match x.offset.checked_add(x.len) {
                Some(next) if x.len > 0 && !overlaps => end = next,
                _ => {
                    return Err(corrupt(format!("sparse file entry {file} has overlapping or empty extents")))
                }
            }
        }
    }
    Ok(files.into_iter().zip(rows).collect())
}

/// FORMAT.md §4.8: each copy a regular file after its source, which is a regular file and
/// no copy (sizes and sparseness are checked with the sizes).
fn copy_table(record: CopyRecord, kinds: &[u8]) -> Result<Vec<(u32, u32)>, FormatError> {
    let CopyRecord { files, sources } = record;
    if files.len() != sources.len() {
        return Err(corrupt("index table copies: columns differ in length"));
    }
    check_keys(&files, kinds.len(), "copies")?;
    for (&file, &source) in files.iter().zip(&sources) {
        let is_file = |e: u32| kinds[e as usize] == KIND_FILE;
        if source >= file || !is_file(file) || !is_file(source) || files.binary_search(&source).is_ok() {
            return Err(corrupt(format!(
                "index table copies: entry {file} is not a copy of an earlier regular file"
            )));
        }
    }
    Ok(files.into_iter().zip(sources).collect())
}

/// The copies by source: [`Index::copies_of`]'s table.
fn shared_of(copies: &[(u32, u32)]) -> std::collections::BTreeSet<(u32, u32)> {
    copies.iter().map(|&(c, s)| (s, c)).collect()
}

fn xattr_table(record: XattrRecord, count: usize) -> Result<Vec<(u32, Vec<Xattr>)>, FormatError> {
    let XattrRecord { entries, counts, names, values } = record;
    if counts.len() != entries.len() || names.len() != values.len() {
        return Err(corrupt("index table xattrs: columns differ in length"));
    }
    check_keys(&entries, count, "xattrs")?;
    let xattrs: Vec<Xattr> =
        names.into_iter().zip(values).map(|(name, value)| Xattr { name, value }).collect();
    let rows = rows(&counts, xattrs, "xattrs")?;
    for (&entry, xattrs) in entries.iter().zip(&rows) {
        let bad = |what: &str| corrupt(format!("extended attributes of entry {entry}: {what}"));
        if xattrs.is_empty() {
            return Err(bad("none listed"));
        }
        if xattrs.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(bad("names out of order or repeated"));
        }
        let mut list = 0usize;
        for x in xattrs {
            if x.name.is_empty() || x.name.len() > MAX_XATTR_NAME || x.name.contains(&0) {
                return Err(bad("an invalid name"));
            }
            list += x.name.len() + 1;
        }
        if list > MAX_XATTR_LIST {
            return Err(bad(&format!("names longer than {MAX_XATTR_LIST} bytes in all")));
        }
    }
    Ok(entries.into_iter().zip(rows).collect())
}

fn owner_table(record: OwnerRecord, table: &str) -> Result<NameTable, FormatError> {
    let OwnerRecord { ids, names } = record;
    if ids.len() != names.len() {
        return Err(corrupt(format!("index table {table}: columns differ in length")));
    }
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err(corrupt(format!("index table {table}: ids out of order or repeated")));
    }
    if names.iter().any(|n| n.is_empty() || n.len() > MAX_OWNER_NAME || n.contains(&0)) {
        return Err(corrupt(format!("index table {table}: an invalid name")));
    }
    Ok(ids.into_iter().zip(names).collect())
}

/// FORMAT.md §4.3: the block table, each block's frame after its record, then the final
/// record, up to `data_end`, where the index frame starts. Returns the blocks and the final
/// record's length.
fn block_table(
    record: BlockRecord,
    data_len: u64,
    data_end: u64,
    version: u16,
) -> Result<(Vec<Block>, u64), FormatError> {
    let BlockRecord { lens, raw_lens, hashes, mut records } = record;
    if raw_lens.len() != lens.len() || hashes.len() != lens.len() || records.len() != lens.len() + 1 {
        return Err(corrupt("block table columns differ in length"));
    }
    let final_record = records.pop().unwrap_or(0);
    let mut blocks = Vec::with_capacity(lens.len());
    let mut offset = HEADER_LEN;
    let mut raw_offset = 0u64;
    let overflow = || corrupt("block offsets overflow");
    for (((len, raw_len), hash), record_len) in lens.into_iter().zip(raw_lens).zip(hashes).zip(records) {
        if len == 0 || len > MAX_BLOCK_LEN || raw_len == 0 || raw_len > MAX_BLOCK_RAW {
            return Err(corrupt(format!("block {} has invalid lengths", blocks.len())));
        }
        if version == 1 && record_len != 0 {
            return Err(corrupt("version 1 has no records"));
        }
        offset = offset.checked_add(record_len).ok_or_else(overflow)?;
        blocks.push(Block { offset, record_len, len, raw_offset, raw_len, hash });
        offset = offset.checked_add(len).ok_or_else(overflow)?;
        raw_offset = raw_offset.checked_add(raw_len).ok_or_else(|| corrupt("block sizes overflow"))?;
    }
    if version == 1 && final_record != 0 {
        return Err(corrupt("version 1 has no records"));
    }
    let offset = offset.checked_add(final_record).ok_or_else(overflow)?;
    if offset != data_end {
        return Err(corrupt(format!("blocks end at byte {offset} but the index starts at byte {data_end}")));
    }
    if raw_offset != data_len {
        return Err(corrupt(format!("blocks hold {raw_offset} bytes but the files need {data_len}")));
    }
    Ok((blocks, final_record))
}

/// For tests of code that works from an index: `r/` holding files `a` (3 bytes), `b` (0),
/// `c` (6), `d` (2) and a symlink `link`, over blocks of 4, 4 and 3 bytes, so that `c` spans
/// all three blocks.
#[cfg(test)]
pub fn spanning_index() -> Index {
    let record = IndexRecord {
        names: ["r", "a", "b", "c", "d", "link"].into_iter().collect(),
        depths: vec![0, 1, 1, 1, 1, 1],
        kinds: vec![KIND_DIR, KIND_FILE, KIND_FILE, KIND_FILE, KIND_FILE, KIND_SYMLINK],
        modes: vec![0o755, 0o644, 0o644, 0o644, 0o644, 0o777],
        mtime_secs: vec![0; 6],
        mtime_nanos: vec![0; 6],
        uids: vec![0; 6],
        gids: vec![0; 6],
        sizes: vec![3, 0, 6, 2],
        targets: vec!["a".into()],
        blocks: BlockRecord {
            lens: vec![1, 1, 1],
            raw_lens: vec![4, 4, 3],
            hashes: vec![0; 3],
            records: vec![0; 4],
        },
        ..IndexRecord::default()
    };
    Index::from_record(record, HEADER_LEN + 3).expect("a valid index")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> IndexRecord {
        IndexRecord {
            names: ["r", "a", "x", "b", "l"].into_iter().collect(),
            depths: vec![0, 1, 2, 1, 1],
            kinds: vec![KIND_DIR, KIND_DIR, KIND_FILE, KIND_FILE, KIND_SYMLINK],
            modes: vec![0o755, 0o700, 0o644, 0o600, 0o777],
            mtime_secs: vec![0; 5],
            mtime_nanos: vec![0; 5],
            uids: vec![0, 1, 2, 3, 4],
            gids: vec![5; 5],
            sizes: vec![3, 4],
            targets: vec!["../elsewhere".into()],
            blocks: BlockRecord { lens: vec![10], raw_lens: vec![7], hashes: vec![0], records: vec![0; 2] },
            ..IndexRecord::default()
        }
    }

    const DATA_END: u64 = HEADER_LEN + 10;

    #[test]
    fn builds_tree_with_offsets_and_paths() {
        let index = Index::from_record(record(), DATA_END).expect("valid");
        assert_eq!(index.path(2), b"r/a/x");
        assert_eq!(index.path(4), b"r/l");
        assert_eq!(index.entries[3].kind(), Kind::File { size: 4 });
        assert_eq!(index.span(3), Some((3, 4)));
        assert_eq!(index.span(1), None);
        assert_eq!((index.entries[3].uid, index.entries[3].gid), (3, 5));
        assert_eq!(index.entries[4].kind(), Kind::Symlink { target: 0 });
        assert_eq!(index.target(4), b"../elsewhere");
        assert_eq!(index.subtree_end(1), 3);
        assert_eq!(index.subtree_end(0), 5);
        assert_eq!(index.blocks_for(3, 4), 0..1);
        assert_eq!(index.blocks_for(3, 0), 0..0);
        assert_eq!(Index::from_record(index.clone().into_record(), DATA_END), Ok(index));
    }

    /// What [`Index::as_record`] serializes from the index built from `record` is the bytes
    /// of `record` itself.
    fn serializes_as_its_record(record: IndexRecord) {
        let cbor = |value: &dyn erased::Ser| value.cbor();
        let index = Index::from_record(record.clone(), DATA_END).expect("valid");
        assert_eq!(cbor(&index.as_record()), cbor(&record));
    }

    mod erased {
        pub trait Ser {
            fn cbor(&self) -> Vec<u8>;
        }
        impl<T: serde::Serialize> Ser for T {
            fn cbor(&self) -> Vec<u8> {
                let mut out = Vec::new();
                ciborium::into_writer(self, &mut out).expect("serializing");
                out
            }
        }
    }

    #[test]
    fn the_view_serializes_as_the_record() {
        serializes_as_its_record(record());
        serializes_as_its_record(with_links());
        let mut r = with_links();
        r.kinds[4] = KIND_CHAR;
        r.dev_majors = vec![u32::MAX];
        r.dev_minors = vec![7];
        r.targets.clear();
        r.xattrs = XattrRecord {
            entries: vec![2],
            counts: vec![1],
            names: vec![b"user.a".to_vec()],
            values: vec![vec![0, 255]],
        };
        r.users = OwnerRecord { ids: vec![0], names: vec![b"root".to_vec()] };
        r.sparse = SparseRecord { files: vec![2], counts: vec![1], offsets: vec![0], lens: vec![3] };
        serializes_as_its_record(r);
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
    fn entries_are_small_and_keep_their_kind() {
        // What a million entries cost in memory (SECURITY.md §8 charges it).
        assert_eq!(std::mem::size_of::<Entry>(), 40);
        let mtime = Mtime { secs: -1, nanos: 7 };
        for kind in [
            Kind::Dir,
            Kind::File { size: u64::MAX },
            Kind::Symlink { target: u32::MAX },
            Kind::HardLink { target: 3 },
            Kind::Fifo,
            Kind::CharDevice { major: u32::MAX, minor: 1 },
            Kind::BlockDevice { major: 0, minor: u32::MAX },
        ] {
            for parent in [None, Some(0), Some(MAX_ENTRIES as u32)] {
                let entry = Entry::new(kind, parent, 2, 0o644, mtime, 1, 2);
                assert_eq!((entry.kind(), entry.parent(), entry.is_dir()), (kind, parent, kind == Kind::Dir));
            }
        }
    }

    #[test]
    fn slashes_and_nuls_are_found_anywhere() {
        for len in 1..20 {
            assert!(!has_slash_or_nul(&vec![b'a'; len]));
            for at in 0..len {
                for bad in [b'/', 0] {
                    let mut name = vec![0xffu8; len];
                    name[at] = bad;
                    assert!(has_slash_or_nul(&name), "{len} {at} {bad}");
                }
                // Bytes next to the ones looked for are not them.
                let mut name = vec![b'a'; len];
                name[at] = [b'.', b'0', 1, 0x80, 0xaf][at % 5];
                assert!(!has_slash_or_nul(&name), "{name:?}");
            }
        }
    }

    #[test]
    fn names_sort_as_their_bytes() {
        let names: [&[u8]; 12] = [
            b"",
            b"a",
            b"ab",
            b"abcdefg",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            b"abcdefgi",
            b"abcdefh",
            b"b",
            b"\x7f",
            b"\xffabcdefgh",
        ];
        for a in names {
            for b in names {
                assert_eq!(sorts_before(a, b), a < b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn refuses_unsafe_names() {
        for bad in ["", ".", "..", "a/b", "/abs", "nul\0"] {
            refused(|r| r.names = r.names.replaced(2, bad.as_bytes()));
        }
        refused(|r| r.names = r.names.replaced(2, "x".repeat(256).as_bytes()));
        // Any other bytes are a name (Linux's rule), UTF-8 or not.
        let mut r = record();
        r.names = r.names.replaced(2, b"caf\xe9");
        assert!(Index::from_record(r, DATA_END).is_ok());
    }

    #[test]
    fn refuses_malformed_trees() {
        assert!(refused(|r| r.names = r.names.replaced(3, b"a")).contains("duplicate"));
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

    /// The record with `r/a/x` (3 bytes) given two hard links `r/h1` and `r/h2` after `r/b`.
    fn with_links() -> IndexRecord {
        let mut r = record();
        for name in ["m1", "m2"] {
            r.names.push(name.as_bytes());
            r.depths.push(1);
            r.kinds.push(KIND_LINK);
            r.modes.push(0o644);
            r.mtime_secs.push(0);
            r.mtime_nanos.push(0);
            r.uids.push(0);
            r.gids.push(0);
            r.links.push(2);
        }
        r
    }

    /// The index of the subtree of entry `root` of `record` alone, with what it keeps.
    fn some_of(record: &IndexRecord, root: usize) -> (Index, Vec<u32>) {
        let mut cbor = Vec::new();
        ciborium::into_writer(record, &mut cbor).expect("serializes");
        let mut budget = Budget::for_archive(u64::MAX);
        let packed = decode_cbor(&cbor, 2, &mut budget).expect("parses");
        let keep = Tree::unchecked(&packed).keep(&[root], usize::MAX).expect("no limit");
        let index = Index::from_packed(&packed, DATA_END, &mut budget, Keep::Only(&keep)).expect("valid");
        (index, keep)
    }

    #[test]
    fn an_index_of_some_entries_keeps_their_bytes_where_they_are() {
        // r/c holds an empty file and a hard link to r/a/x: its index keeps x (3 bytes at 0)
        // and leaves out r/b (4 bytes after x's), which the empty file follows.
        let record = IndexRecord {
            names: ["r", "a", "x", "b", "c", "e", "m"].into_iter().collect(),
            depths: vec![0, 1, 2, 1, 1, 2, 2],
            kinds: vec![KIND_DIR, KIND_DIR, KIND_FILE, KIND_FILE, KIND_DIR, KIND_FILE, KIND_LINK],
            modes: vec![0o755; 7],
            mtime_secs: vec![0; 7],
            mtime_nanos: vec![0; 7],
            uids: vec![0; 7],
            gids: vec![0; 7],
            sizes: vec![3, 4, 0],
            links: vec![2],
            blocks: BlockRecord { lens: vec![10], raw_lens: vec![7], hashes: vec![0], records: vec![0; 2] },
            ..IndexRecord::default()
        };
        let (index, keep) = some_of(&record, 4);
        assert_eq!(keep, [0, 1, 2, 4, 5, 6]);
        assert_eq!(index.path(5), b"r/c/m");
        assert_eq!(index.entries[5].kind(), Kind::HardLink { target: 2 });
        assert_eq!((index.span(2), index.span(4)), (Some((0, 3)), None));
        let pieces: Vec<_> = index.files_in(0).map(|p| (p.entry, p.start_in_block, p.len)).collect();
        assert_eq!(pieces, [(2, 0, 3)]);
        // Of r/b alone: its bytes after the gap where x's are.
        let (index, keep) = some_of(&record, 3);
        assert_eq!((keep.as_slice(), index.span(1)), (&[0, 3][..], Some((3, 4))));
        let pieces: Vec<_> = index.files_in(0).map(|p| (p.entry, p.start_in_block, p.len)).collect();
        assert_eq!(pieces, [(1, 3, 4)]);
    }

    #[test]
    fn hard_links_refer_to_earlier_regular_files_only() {
        let index = Index::from_record(with_links(), DATA_END).expect("valid");
        assert_eq!(index.entries[5].kind(), Kind::HardLink { target: 2 });
        assert_eq!(index.data_entry(6), Some(2));
        assert_eq!(Index::from_record(index.clone().into_record(), DATA_END), Ok(index));
        let refused_links = |change: &dyn Fn(&mut IndexRecord)| {
            let mut r = with_links();
            change(&mut r);
            match Index::from_record(r, DATA_END) {
                Err(FormatError::Corrupt(why)) => why,
                other => panic!("expected corrupt, got {other:?}"),
            }
        };
        // To a directory, a symlink, itself, a later entry, another link, nothing.
        for target in [0, 4, 5, 6, 99] {
            let why = refused_links(&|r| r.links[0] = target);
            assert!(why.contains("does not refer to an earlier regular file"), "{target}: {why}");
        }
        assert!(refused_links(&|r| r.links[1] = 5).contains("earlier regular file"), "a link to a link");
        assert!(refused_links(&|r| {
            r.links.pop();
        })
        .contains("fewer links"));
        assert!(refused_links(&|r| r.links.push(2)).contains("more links"));
        // Version 1 had no links: kind 3 there is unknown.
        let v1 = |r: &mut IndexRecord| {
            r.version = 1;
            r.uids.clear();
            r.gids.clear();
        };
        assert!(refused_links(&v1).contains("unknown kind 3"));
    }

    #[test]
    fn sparse_extents_are_checked() {
        // x (3 bytes stored) as a 100-byte file with data at 10..12 and 50..51.
        let sparse = |offsets: Vec<u64>, lens: Vec<u64>| {
            let mut r = record();
            r.sizes[0] = 100;
            r.sparse = SparseRecord { files: vec![2], counts: vec![offsets.len() as u32], offsets, lens };
            Index::from_record(r, DATA_END)
        };
        let index = sparse(vec![10, 50], vec![2, 1]).expect("valid");
        assert_eq!(index.entries[2].kind(), Kind::File { size: 100 });
        assert_eq!((index.span(2), index.stored(2)), (Some((0, 3)), 3));
        assert_eq!(
            index.extents(2),
            Some(&[Extent { offset: 10, len: 2 }, Extent { offset: 50, len: 1 }][..])
        );
        assert_eq!(index.extents(3), None);
        assert_eq!(Index::from_record(index.clone().into_record(), DATA_END), Ok(index));
        for (offsets, lens, why) in [
            (vec![10, 11], vec![2, 1], "overlapping"),
            (vec![10, 50], vec![2, 0], "empty"),
            (vec![10, 99], vec![1, 2], "past its end"),
            (vec![u64::MAX], vec![3], "overlapping or empty"),
        ] {
            let error = sparse(offsets.clone(), lens.clone()).expect_err("refused").to_string();
            assert!(error.contains(why) || error.contains("blocks hold"), "{offsets:?} {lens:?}: {error}");
        }
        let mut r = record();
        r.sparse = SparseRecord { files: vec![1], counts: vec![0], offsets: vec![], lens: vec![] };
        assert!(Index::from_record(r, DATA_END)
            .expect_err("a directory")
            .to_string()
            .contains("not a regular file"));
    }

    #[test]
    fn file_writes_split_stored_bytes_at_extents() {
        let extents = [Extent { offset: 10, len: 2 }, Extent { offset: 50, len: 3 }];
        let writes = |from, len| file_writes(Some(&extents), from, len).collect::<Vec<_>>();
        assert_eq!(writes(0, 5), [(10, 0..2), (50, 2..5)]);
        assert_eq!(writes(1, 2), [(11, 0..1), (50, 1..2)]);
        assert_eq!(writes(3, 2), [(51, 0..2)]);
        assert_eq!(file_writes(None, 7, 4).collect::<Vec<_>>(), [(7, 0..4)]);
    }

    #[test]
    fn xattrs_and_owner_tables_are_checked() {
        let with = |xattrs: XattrRecord| {
            let mut r = record();
            r.xattrs = xattrs;
            r.users = OwnerRecord { ids: vec![0, 3], names: vec!["root".into(), "u3".into()] };
            Index::from_record(r, DATA_END)
        };
        let xattrs = |entries: Vec<u32>, counts: Vec<u32>, names: Vec<&str>| XattrRecord {
            entries,
            counts,
            values: names.iter().map(|_| b"v".to_vec()).collect(),
            names: names.into_iter().map(Vec::from).collect(),
        };
        let index = with(xattrs(vec![2, 4], vec![2, 1], vec!["user.a", "user.b", "security.selinux"]))
            .expect("valid");
        assert_eq!(index.xattrs(2).len(), 2);
        assert_eq!(index.xattrs(3), &[]);
        assert_eq!(index.user_name(3), Some(&b"u3"[..]));
        assert_eq!(index.user_name(1), None);
        assert_eq!(Index::from_record(index.clone().into_record(), DATA_END), Ok(index));
        for (bad, why) in [
            (xattrs(vec![2, 2], vec![1, 1], vec!["user.a", "user.b"]), "out of order"),
            (xattrs(vec![9], vec![1], vec!["user.a"]), "out of order or range"),
            (xattrs(vec![2], vec![2], vec!["user.b", "user.a"]), "names out of order"),
            (xattrs(vec![2], vec![2], vec!["user.a", "user.a"]), "repeated"),
            (xattrs(vec![2], vec![0], vec![]), "none listed"),
            (xattrs(vec![2], vec![2], vec!["user.a"]), "do not add up"),
            (xattrs(vec![2], vec![1], vec![""]), "invalid name"),
            (xattrs(vec![2], vec![1], vec!["user.\0"]), "invalid name"),
        ] {
            let error = with(bad).expect_err(why).to_string();
            assert!(error.contains(why), "{why}: {error}");
        }
        let mut r = record();
        r.groups = OwnerRecord { ids: vec![5, 5], names: vec!["a".into(), "b".into()] };
        assert!(Index::from_record(r, DATA_END)
            .expect_err("repeated")
            .to_string()
            .contains("ids out of order"));
    }
}
