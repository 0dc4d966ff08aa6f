//! What a mount shows, computed from the index alone: inode numbers, attributes, directory
//! listings, names looked up, extended attributes, and where each byte of a file lies.
//!
//! Invariants:
//! - inode 1 is the mount's root, a directory holding the archive's top-level entries;
//!   entry `i` is inode `i + 2`, and a hard link is its target's inode (one inode, all its
//!   names, the right link count), so inode numbers are stable for the life of the mount;
//! - a directory's children are listed in archive order, which is name order: a lookup is a
//!   binary search, and a walk of the mount reads the blocks in order;
//! - nothing here reads the archive's blocks: that is [`super::cache`]'s, through
//!   [`View::read`].

use std::time::{Duration, SystemTime};

use fuser::{FileAttr, FileType};

use crate::archive::Archive;
use crate::format::{Entry, Kind, Mtime};

use std::sync::Arc;

use super::cache::BlockBytes;

/// The mount's root directory.
pub const ROOT: u64 = fuser::FUSE_ROOT_ID;

/// The block size `stat` reports, and the unit of `statfs`.
const BLOCK: u32 = 4096;

/// Owners shown instead of the stored ones (`-o uid=N,gid=N`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The root directory's attributes: the archive file's owner and mtime.
#[derive(Debug, Clone, Copy)]
pub struct RootAttr {
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
}

pub struct View {
    pub archive: Archive,
    /// The children of slot `s` (0 the root, `i + 1` entry `i`) are
    /// `children[first[s]..first[s + 1]]`, entry numbers in archive order.
    first: Vec<u32>,
    children: Vec<u32>,
    /// The link count of each entry's inode (a hard link's is its target's).
    nlink: Vec<u32>,
    root_nlink: u32,
    shown: Shown,
    root: RootAttr,
}

/// An entry number from an inode number, if the inode is one the view gave out.
fn entry_of(ino: u64, count: usize) -> Option<usize> {
    ino.checked_sub(2).and_then(|i| usize::try_from(i).ok()).filter(|&i| i < count)
}

impl View {
    pub fn new(archive: Archive, shown: Shown, root: RootAttr) -> View {
        let index = &archive.index;
        let count = index.entries.len();
        let slot = |e: &Entry| e.parent().map_or(0, |p| p as usize + 1);
        let mut first = vec![0u32; count + 2];
        for entry in &index.entries {
            first[slot(entry) + 1] += 1;
        }
        for s in 1..first.len() {
            first[s] += first[s - 1];
        }
        let mut fill = first.clone();
        let mut children = vec![0u32; count];
        for (i, entry) in index.entries.iter().enumerate() {
            let s = slot(entry);
            children[fill[s] as usize] = i as u32;
            fill[s] += 1;
        }
        // Directories: 2 and one per subdirectory; files: one per name.
        let mut nlink = vec![1u32; count];
        let mut root_nlink = 2;
        for (i, entry) in index.entries.iter().enumerate() {
            match entry.kind() {
                Kind::Dir => {
                    nlink[i] += 1;
                    match entry.parent() {
                        Some(p) => nlink[p as usize] += 1,
                        None => root_nlink += 1,
                    }
                }
                Kind::HardLink { target } => nlink[target as usize] += 1,
                _ => {}
            }
        }
        for (i, entry) in index.entries.iter().enumerate() {
            if let Kind::HardLink { target } = entry.kind() {
                nlink[i] = nlink[target as usize];
            }
        }
        View { archive, first, children, nlink, root_nlink, shown, root }
    }

    fn count(&self) -> usize {
        self.archive.index.entries.len()
    }

    /// The inode of entry `i`: its own, or for a hard link its target's.
    pub fn ino(&self, i: usize) -> u64 {
        match self.archive.index.entries[i].kind() {
            Kind::HardLink { target } => u64::from(target) + 2,
            _ => i as u64 + 2,
        }
    }

    /// The entries directly in directory `ino` (the root's for [`ROOT`]), in archive order;
    /// `None` if `ino` is not a directory.
    pub fn children(&self, ino: u64) -> Option<&[u32]> {
        let slot = match ino {
            ROOT => 0,
            _ => {
                let i = entry_of(ino, self.count())?;
                if !self.archive.index.entries[i].is_dir() {
                    return None;
                }
                i + 1
            }
        };
        Some(&self.children[self.first[slot] as usize..self.first[slot + 1] as usize])
    }

    /// The parent directory's inode of directory `ino`.
    pub fn parent(&self, ino: u64) -> u64 {
        entry_of(ino, self.count())
            .and_then(|i| self.archive.index.entries[i].parent())
            .map_or(ROOT, |p| u64::from(p) + 2)
    }

    /// The entry named `name` in directory `ino`.
    pub fn lookup(&self, ino: u64, name: &[u8]) -> Option<usize> {
        let children = self.children(ino)?;
        let index = &self.archive.index;
        children.binary_search_by(|&c| index.name(c as usize).cmp(name)).ok().map(|k| children[k] as usize)
    }

    pub fn name(&self, i: usize) -> &[u8] {
        self.archive.index.name(i)
    }

    pub fn kind(&self, i: usize) -> FileType {
        match self.archive.index.entries[i].kind() {
            Kind::Dir => FileType::Directory,
            Kind::File { .. } | Kind::HardLink { .. } => FileType::RegularFile,
            Kind::Symlink { .. } => FileType::Symlink,
            Kind::Fifo => FileType::NamedPipe,
            Kind::CharDevice { .. } => FileType::CharDevice,
            Kind::BlockDevice { .. } => FileType::BlockDevice,
        }
    }

    /// The type of inode `ino`, if the view gave it out: what a listing and the checks of
    /// requests need, without the attributes.
    pub fn kind_of(&self, ino: u64) -> Option<FileType> {
        match ino {
            ROOT => Some(FileType::Directory),
            _ => entry_of(ino, self.count()).map(|i| self.kind(i)),
        }
    }

    /// The attributes of inode `ino`.
    pub fn attr(&self, ino: u64) -> Option<FileAttr> {
        if ino == ROOT {
            let RootAttr { uid, gid, mtime } = self.root;
            return Some(self.attr_of(
                ino,
                FileType::Directory,
                0o755,
                0,
                0,
                self.root_nlink,
                (uid, gid),
                mtime,
                0,
            ));
        }
        let i = entry_of(ino, self.count())?;
        let index = &self.archive.index;
        let entry = &index.entries[i];
        let (size, stored, rdev) = match entry.kind() {
            Kind::File { size } => (size, index.stored(i), 0),
            Kind::Symlink { .. } => (index.target(i).len() as u64, 0, 0),
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                (0, 0, rustix::fs::makedev(major, minor))
            }
            _ => (0, 0, 0),
        };
        // A device number that does not fit the 32 bits FUSE carries is shown as 0.
        let rdev = u32::try_from(rdev).unwrap_or(0);
        let mtime = system_time(entry.mtime);
        let owner = (entry.uid, entry.gid);
        Some(self.attr_of(ino, self.kind(i), entry.mode, size, stored, self.nlink[i], owner, mtime, rdev))
    }

    #[allow(clippy::too_many_arguments)]
    fn attr_of(
        &self,
        ino: u64,
        kind: FileType,
        mode: u16,
        size: u64,
        stored: u64,
        nlink: u32,
        (uid, gid): (u32, u32),
        mtime: SystemTime,
        rdev: u32,
    ) -> FileAttr {
        FileAttr {
            ino,
            size,
            // What the archive stores of it: a sparse file's holes take nothing.
            blocks: stored.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm: mode,
            nlink,
            uid: self.shown.uid.unwrap_or(uid),
            gid: self.shown.gid.unwrap_or(gid),
            rdev,
            blksize: BLOCK,
            flags: 0,
        }
    }

    /// Symlink `ino`'s target.
    pub fn target(&self, ino: u64) -> Option<&[u8]> {
        let i = entry_of(ino, self.count())?;
        matches!(self.archive.index.entries[i].kind(), Kind::Symlink { .. })
            .then(|| self.archive.index.target(i))
    }

    /// The regular file that inode `ino` is, and its size.
    pub fn file(&self, ino: u64) -> Option<(usize, u64)> {
        let i = entry_of(ino, self.count())?;
        match self.archive.index.entries[i].kind() {
            Kind::File { size } => Some((i, size)),
            _ => None,
        }
    }

    /// The extended attributes of inode `ino`, as (name, value).
    pub fn xattrs(&self, ino: u64) -> impl Iterator<Item = (&[u8], &[u8])> {
        let xattrs = entry_of(ino, self.count()).map_or(&[][..], |i| self.archive.index.xattrs(i));
        xattrs.iter().map(|x| (x.name.as_slice(), x.value.as_slice()))
    }

    /// Totals for `statfs`: (blocks of [`BLOCK`] bytes, inodes). The bytes are the data
    /// stream's: every inode's stored bytes once (FORMAT.md §4.2), copies not again.
    pub fn totals(&self) -> (u64, u64) {
        (self.archive.index.data_len().div_ceil(u64::from(BLOCK)), self.count() as u64 + 1)
    }

    pub fn block_size(&self) -> u32 {
        BLOCK
    }

    /// Bytes `[offset, offset + len)` of file `i` (cut at its end), its holes as zeros, from
    /// the blocks `block` gives (`block(b, n)`: at least the first `n` bytes of block `b`);
    /// `None` as soon as it gives none or too few (what is not cached, when only the cache
    /// is asked), or the error of the first block that failed.
    pub fn read(
        &self,
        i: usize,
        size: u64,
        offset: u64,
        len: u32,
        mut block: impl FnMut(usize, usize) -> Result<Option<Arc<Vec<u8>>>, BlockBytes>,
    ) -> Result<Option<Vec<u8>>, BlockBytes> {
        let end = size.min(offset.saturating_add(u64::from(len)));
        if offset >= end {
            return Ok(Some(Vec::new()));
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let index = &self.archive.index;
        let Some((at, _)) = index.span(i) else { return Ok(Some(out)) };
        match index.extents(i) {
            None => {
                if !self.copy_stream(at + offset, &mut out, &mut block)? {
                    return Ok(None);
                }
            }
            Some(extents) => {
                // Each extent's bytes follow the one before's in the stored bytes.
                let mut stored = 0;
                for x in extents {
                    let (from, to) = (offset.max(x.offset), end.min(x.offset + x.len));
                    if from < to {
                        let dst = &mut out[(from - offset) as usize..(to - offset) as usize];
                        if !self.copy_stream(at + stored + (from - x.offset), dst, &mut block)? {
                            return Ok(None);
                        }
                    }
                    stored += x.len;
                }
            }
        }
        Ok(Some(out))
    }

    /// Fills `dst` with the data stream's bytes from `at` on; false if `block` gave none.
    fn copy_stream(
        &self,
        at: u64,
        dst: &mut [u8],
        block: &mut impl FnMut(usize, usize) -> Result<Option<Arc<Vec<u8>>>, BlockBytes>,
    ) -> Result<bool, BlockBytes> {
        let index = &self.archive.index;
        let end = at + dst.len() as u64;
        for b in index.blocks_for(at, dst.len() as u64) {
            let (start, stop) = (index.blocks[b].raw_offset, index.blocks[b].raw_end());
            let (from, to) = (at.max(start), end.min(stop));
            let Some(bytes) = block(b, (to - start) as usize)? else { return Ok(false) };
            if bytes.len() < (to - start) as usize {
                return Ok(false);
            }
            let src = &bytes[(from - start) as usize..(to - start) as usize];
            dst[(from - at) as usize..(to - at) as usize].copy_from_slice(src);
        }
        Ok(true)
    }

    /// Where the data or the next hole at or after `offset` is in file `i` (SEEK_DATA with
    /// `data`, else SEEK_HOLE): `None` past the end (ENXIO).
    pub fn seek(&self, i: usize, size: u64, offset: u64, data: bool) -> Option<u64> {
        if offset >= size {
            return None;
        }
        let Some(extents) = self.archive.index.extents(i) else {
            // Dense: data everywhere, the only hole the end.
            return Some(if data { offset } else { size });
        };
        if data {
            extents.iter().find(|x| x.offset + x.len > offset && x.len > 0).map(|x| x.offset.max(offset))
        } else {
            let mut at = offset;
            for x in extents.iter().filter(|x| x.offset + x.len > offset && x.len > 0) {
                if x.offset > at {
                    break;
                }
                at = x.offset + x.len;
            }
            Some(at.min(size))
        }
    }

    /// The paths of the files with bytes in block `b` (the copies included), for a message.
    pub fn files_in_block(&self, b: usize) -> impl Iterator<Item = String> + '_ {
        self.archive
            .index
            .files_in(b)
            .map(|piece| crate::ui::text_of(&self.archive.index.path(piece.entry as usize)).into_owned())
    }
}

/// An archived mtime as the `SystemTime` fuser turns into the kernel's (seconds, nanoseconds)
/// pair; one this system cannot represent (an archive may hold any 64-bit second) is shown as
/// the epoch.
///
/// Before 1970 fuser sends minus the whole seconds before the epoch and the remaining
/// nanoseconds, `(-(d.secs), d.nanos)` for `d = EPOCH - t`, where the kernel's pair means
/// `secs + nanos / 10^9`. So an mtime of (-2 s, 999,999,999 ns), 1.000000001 s before the
/// epoch, is handed over as 2.999999999 s before it, which fuser sends as (-2, 999999999).
fn system_time(mtime: Mtime) -> SystemTime {
    let (secs, nanos) = (mtime.secs, mtime.nanos);
    let time = match secs >= 0 {
        true => SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos)),
        false => SystemTime::UNIX_EPOCH.checked_sub(Duration::new(secs.unsigned_abs(), nanos)),
    };
    time.unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What fuser sends the kernel for `time` (its `time_from_system_time`).
    fn sent(time: SystemTime) -> (i64, u32) {
        match time.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(before) => (-(before.duration().as_secs() as i64), before.duration().subsec_nanos()),
        }
    }

    #[test]
    fn the_kernel_gets_each_mtime_as_archived_and_extreme_ones_do_not_panic() {
        for (secs, nanos) in [(1, 5), (0, 0), (-1, 0), (-2, 999_999_999), (-1, 1), (1_700_000_000, 123)] {
            assert_eq!(sent(system_time(Mtime { secs, nanos })), (secs, nanos), "{secs} s {nanos} ns");
        }
        for secs in [i64::MIN, i64::MAX, i64::MAX - 1] {
            let _ = system_time(Mtime { secs, nanos: 999_999_999 });
        }
    }
}
