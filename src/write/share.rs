//! Identical contents stored once (FORMAT.md §4.8): the walker asks [`Shared`] whether a
//! file it is about to store has the contents of a file it stored already, and if so makes
//! it a copy of that file, which costs the archive a row of the index instead of its bytes.
//!
//! How a copy is found, and why it cannot be wrong:
//! - only a dense file of at least [`MIN_SHARED`] bytes whose size a stored file has is a
//!   candidate, so most files cost nothing but a look-up of their size;
//! - a candidate's contents are hashed (XXH3-128, seeded with the size) and looked up among
//!   the stored files' hashes, taken while they were stored;
//! - the stored file the hash names is opened again and compared with the candidate byte
//!   for byte: the hash only says which file to compare with. It must still be the same
//!   inode, and its status change time must be older than the write: then what is on disk
//!   is what was stored. A hash collision, a file changed or replaced meanwhile, a file that
//!   cannot be read again: each only means the candidate is stored as any file.
//!
//! The decisions depend on the tree alone, so the archive is the same whatever `-j` is.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use rustix::fs::OFlags;
use xxhash_rust::xxh3::Xxh3;

use crate::format::{Entry, Names};

/// Files smaller than this are always stored: a copy would save at most what zstd makes of
/// them (a few dozen bytes; their duplicates in the same block cost almost nothing already),
/// and a million tiny files would cost the writer a hash table row each.
pub const MIN_SHARED: u64 = 512;

/// A candidate up to this size is read once, aside, then compared, and stored from there if
/// it is no copy; a larger one is hashed and compared from the file, and read again if it is
/// no copy.
const SIDE_MAX: u64 = 1 << 20;

/// Bytes compared or hashed at a time from a file.
const CHUNK: usize = 1 << 18;

/// Status change times this close to the write's start count as after it: file times come
/// from a clock that lags by up to a tick.
const CLOCK_SLACK_NS: i64 = 50_000_000;

/// A stored file that copies may share.
#[derive(Clone, Copy)]
struct Source {
    entry: u32,
    dev: u64,
    ino: u64,
}

/// What [`Shared::candidate`] found.
pub enum Candidate {
    /// A copy of this stored file: nothing more to read.
    Copy(u32),
    /// Not a copy; its bytes as read aside (all of them, or fewer if the file shrank or
    /// failed, which reading on from the file will tell), to be stored first, and their hash
    /// when they are all of them (not to be taken twice).
    Read(Vec<u8>, Option<u128>),
    /// Not a copy, read from the file again from its start.
    Store,
}

pub struct Shared {
    /// The stored files by hash of their contents (the first of each).
    by_hash: HashMap<u128, Source>,
    /// The sizes of the files in `by_hash`.
    sizes: HashSet<u64>,
    /// The write's start: a status change before it is older than what was stored.
    since: (i64, i64),
    /// The inputs' top entries and the paths they were read from, by entry.
    roots: Vec<(u32, PathBuf)>,
    /// Two buffers of [`CHUNK`] bytes, for comparisons.
    chunks: (Vec<u8>, Vec<u8>),
}

impl Shared {
    pub fn new() -> Shared {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let nanos =
            now.as_secs() as i128 * 1_000_000_000 + now.subsec_nanos() as i128 - CLOCK_SLACK_NS as i128;
        let since = ((nanos.div_euclid(1_000_000_000)) as i64, nanos.rem_euclid(1_000_000_000) as i64);
        Shared {
            by_hash: HashMap::new(),
            sizes: HashSet::new(),
            since,
            roots: Vec::new(),
            chunks: (Vec::new(), Vec::new()),
        }
    }

    /// Entry `entry` is an input read from `path` (entries below it are found from there).
    pub fn root(&mut self, entry: u32, path: PathBuf) {
        self.roots.push((entry, path));
    }

    /// The last input [`Shared::root`] named was left out: no entry has its number.
    pub fn forget_root(&mut self) {
        self.roots.pop();
    }

    /// The hasher of a file of `size` bytes whose contents later files may share, if it may be
    /// shared: dense (`sparse` false) and large enough.
    pub fn hasher(size: u64, sparse: bool) -> Option<Xxh3> {
        (!sparse && size >= MIN_SHARED).then(|| Xxh3::with_seed(size))
    }

    /// Whether a file of `size` bytes (dense, large enough) may be a copy of a stored file.
    pub fn may_copy(&self, size: u64) -> bool {
        size >= MIN_SHARED && self.sizes.contains(&size)
    }

    /// Stored file `entry` (device `dev`, inode `ino`, status changed at `ctime` before it was
    /// read) hashes to `hash`, every byte read as listed: later copies may share it.
    pub fn stored(&mut self, hash: u128, size: u64, entry: u32, (dev, ino): (u64, u64), ctime: (i64, i64)) {
        if self.older(ctime) {
            self.by_hash.entry(hash).or_insert(Source { entry, dev, ino });
            self.sizes.insert(size);
        }
    }

    /// Whether `file`, `size` bytes long, is a copy of a stored file (see the module's
    /// comment); `entries` and `names` are the walker's so far, to find the stored file.
    pub fn candidate(&mut self, file: &File, size: u64, entries: &[Entry], names: &Names) -> Candidate {
        if size <= SIDE_MAX {
            let mut bytes = Vec::with_capacity(size as usize);
            let read = Read::take(file, size).read_to_end(&mut bytes);
            if read.is_err() || bytes.len() as u64 != size {
                return Candidate::Read(bytes, None);
            }
            let mut hasher = Xxh3::with_seed(size);
            hasher.update(&bytes);
            let hash = hasher.digest128();
            match self.source_of(hash, entries, names) {
                Some(found)
                    if self.same_as_stored(&found, size, |at, theirs, _| {
                        bytes.get(at as usize..at as usize + theirs.len()) == Some(theirs)
                    }) =>
                {
                    Candidate::Copy(found.0.entry)
                }
                _ => Candidate::Read(bytes, Some(hash)),
            }
        } else {
            let mut hasher = Xxh3::with_seed(size);
            let mut chunk = std::mem::take(&mut self.chunks.0);
            chunk.resize(CHUNK, 0);
            let mut at = 0u64;
            while at < size {
                let want = (size - at).min(CHUNK as u64) as usize;
                if file.read_exact_at(&mut chunk[..want], at).is_err() {
                    break;
                }
                hasher.update(&chunk[..want]);
                at += want as u64;
            }
            self.chunks.0 = chunk;
            if at < size {
                return Candidate::Store;
            }
            match self.source_of(hasher.digest128(), entries, names) {
                Some(found)
                    if self.same_as_stored(&found, size, |at, theirs, ours| {
                        file.read_exact_at(ours, at).is_ok() && ours == theirs
                    }) =>
                {
                    Candidate::Copy(found.0.entry)
                }
                _ => Candidate::Store,
            }
        }
    }

    /// The stored file with contents of `hash`, opened again as it was stored (same inode,
    /// unchanged since the write started).
    fn source_of(&self, hash: u128, entries: &[Entry], names: &Names) -> Option<(Source, File)> {
        let source = *self.by_hash.get(&hash)?;
        let path = self.path_of(source.entry, entries, names)?;
        // O_NONBLOCK: a FIFO put in its place since is not waited on (and is not the inode).
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let file = File::from(rustix::fs::open(&path, flags, rustix::fs::Mode::empty()).ok()?);
        self.unchanged(&source, &file).then_some((source, file))
    }

    /// Whether a status change at `ctime` came before the write began. A time of whole
    /// seconds may come from a filesystem that keeps no finer ones (a change a moment ago
    /// shows as the second before): it counts as two seconds later.
    fn older(&self, (secs, nanos): (i64, i64)) -> bool {
        let ctime = if nanos == 0 { (secs.saturating_add(2), 0) } else { (secs, nanos) };
        ctime < self.since
    }

    /// Whether `file` is `source` as it was stored: the same inode, its status unchanged since
    /// the write began.
    fn unchanged(&self, source: &Source, file: &File) -> bool {
        #[allow(clippy::unnecessary_cast)]
        rustix::fs::fstat(file).is_ok_and(|stat| {
            (stat.st_dev as u64, stat.st_ino as u64) == (source.dev, source.ino)
                && self.older((stat.st_ctime as i64, stat.st_ctime_nsec as i64))
        })
    }

    /// Whether `source` holds exactly `size` bytes that `matches` finds the candidate's: it is
    /// given each chunk of the source's, where it lies, and a buffer of its length to read the
    /// candidate's into if they are not in memory.
    fn same(&mut self, source: &File, size: u64, matches: impl Fn(u64, &[u8], &mut [u8]) -> bool) -> bool {
        let (mut ours, mut theirs) = std::mem::take(&mut self.chunks);
        ours.resize(CHUNK, 0);
        theirs.resize(CHUNK, 0);
        let mut at = 0u64;
        let mut same = true;
        while same && at < size {
            let want = (size - at).min(CHUNK as u64) as usize;
            same = source.read_exact_at(&mut theirs[..want], at).is_ok()
                && matches(at, &theirs[..want], &mut ours[..want]);
            at += want as u64;
        }
        // Nothing after: the source has not grown since.
        same = same && matches!(source.read_at(&mut theirs[..1], size), Ok(0));
        self.chunks = (ours, theirs);
        same
    }

    /// [`Shared::same`], then the source checked again: unchanged while it was compared.
    fn same_as_stored(
        &mut self,
        (source, file): &(Source, File),
        size: u64,
        matches: impl Fn(u64, &[u8], &mut [u8]) -> bool,
    ) -> bool {
        self.same(file, size, matches) && self.unchanged(source, file)
    }

    /// Where entry `e` is on disk: below the input it belongs to.
    fn path_of(&self, e: u32, entries: &[Entry], names: &Names) -> Option<PathBuf> {
        let mut below = Vec::new();
        let mut at = e;
        loop {
            if let Ok(k) = self.roots.binary_search_by_key(&at, |(root, _)| *root) {
                let mut path = self.roots[k].1.clone();
                for &name in below.iter().rev() {
                    path.push(std::ffi::OsStr::from_bytes(names.get(name as usize)));
                }
                return Some(path);
            }
            below.push(at);
            at = entries.get(at as usize)?.parent()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Kind, Mtime};

    /// A file of `bytes` in `dir`, open.
    fn file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> (PathBuf, File) {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        (path.clone(), File::open(path).expect("open"))
    }

    #[test]
    fn a_copy_is_found_by_comparing_and_never_of_a_file_changed_since_the_write_began() {
        let dir = tempfile::tempdir().expect("temp dir");
        let contents = vec![7u8; 1000];
        let (path, source) = file(dir.path(), "source", &contents);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (_, candidate) = file(dir.path(), "candidate", &contents);
        let (_, other) = file(dir.path(), "other", &[8u8; 1000]);
        let entries =
            [Entry::new(Kind::File { size: 1000 }, None, 0, 0o644, Mtime { secs: 0, nanos: 0 }, 0, 0)];
        let names: Names = [&b"source"[..]].into_iter().collect();
        let stat = rustix::fs::fstat(&source).expect("stat");
        #[allow(clippy::unnecessary_cast)]
        let (inode, ctime) =
            ((stat.st_dev as u64, stat.st_ino as u64), (stat.st_ctime as i64, stat.st_ctime_nsec as i64));
        let mut hasher = Shared::hasher(1000, false).expect("large enough to share");
        hasher.update(&contents);
        let hash = hasher.digest128();

        let mut shared = Shared::new();
        shared.root(0, path.clone());
        assert!(!shared.may_copy(1000));
        shared.stored(hash, 1000, 0, inode, ctime);
        assert!(shared.may_copy(1000));
        assert!(matches!(shared.candidate(&candidate, 1000, &entries, &names), Candidate::Copy(0)));
        // Same size, other contents: read aside, to be stored.
        assert!(
            matches!(shared.candidate(&other, 1000, &entries, &names), Candidate::Read(b, Some(_)) if b.len() == 1000)
        );

        // Above SIDE_MAX, hashed and compared from the file: a copy, or read again from its start.
        let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        let (big_path, big_source) = file(dir.path(), "big", &big);
        let mut other_big = big.clone();
        *other_big.last_mut().expect("bytes") ^= 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (_, big_copy) = file(dir.path(), "big copy", &big);
        let (_, big_other) = file(dir.path(), "big other", &other_big);
        let stat = rustix::fs::fstat(&big_source).expect("stat");
        #[allow(clippy::unnecessary_cast)]
        let (big_inode, big_ctime) =
            ((stat.st_dev as u64, stat.st_ino as u64), (stat.st_ctime as i64, stat.st_ctime_nsec as i64));
        let mut hasher = Shared::hasher(big.len() as u64, false).expect("large enough to share");
        hasher.update(&big);
        let mut big_shared = Shared::new();
        big_shared.root(0, big_path);
        big_shared.stored(hasher.digest128(), big.len() as u64, 0, big_inode, big_ctime);
        let len = big.len() as u64;
        let big_names: Names = [&b"big"[..]].into_iter().collect();
        assert!(matches!(big_shared.candidate(&big_copy, len, &entries, &big_names), Candidate::Copy(0)));
        assert!(matches!(big_shared.candidate(&big_other, len, &entries, &big_names), Candidate::Store));

        // A write that began before the source last changed never shares it.
        std::fs::write(&path, &contents).expect("rewrite");
        let candidate = File::open(dir.path().join("candidate")).expect("open");
        assert!(matches!(shared.candidate(&candidate, 1000, &entries, &names), Candidate::Read(..)));
        // Nor a file whose status changed after the write began.
        let mut fresh = Shared::new();
        fresh.stored(hash, 1000, 0, inode, (i64::MAX, 0));
        assert!(!fresh.may_copy(1000));
        // A time of whole seconds (a filesystem that keeps no finer) counts as two later.
        let since = fresh.since.0;
        assert!(!fresh.older((since - 1, 0)) && fresh.older((since - 3, 0)));
        assert!(fresh.older((since - 1, 1)));
    }
}
