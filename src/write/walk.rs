//! The walker stage of `arc write`: visits the input trees in sorted order, records one index
//! entry per directory, file, symlink, hard link, FIFO and device, with owners and extended
//! attributes, and packs file contents (only the data of sparse files) into blocks of
//! `--block-size` bytes.
//!
//! Invariants:
//! - entries are produced in pre-order with siblings sorted by name bytes, which is the order
//!   the index stores and the order file bytes take in the data stream;
//! - a file is read in bounded chunks straight into the current block, never whole (except a
//!   file that may be a copy of one stored already, up to 1 MiB, read aside to be compared:
//!   [`super::share`]);
//! - a file with the contents of a file stored already is a copy of it, with no bytes of its
//!   own (FORMAT.md §4.8), decided by comparing the two byte for byte;
//! - a file's entry is made before its bytes are read, with the size it was listed with: a
//!   file that shrinks while it is read is padded with zeros to that size and one that grows
//!   is cut at it (both a warning, as GNU tar does), so the entries of a block are known when
//!   the block is full, and the record before it (FORMAT.md §3.2) can tell them;
//! - symlinks are recorded as links and never followed; only the top-level inputs are;
//! - a file whose inode was stored already (same device and inode, more than one link) is a
//!   hard link entry to the first, which is always an earlier regular file entry;
//! - the walker hands each finished block, with the [`Run`] of entries that start in it, to
//!   a closure, and the final run after the last block; it knows nothing of threads or
//!   channels.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use camino::Utf8PathBuf;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, SeekFrom};
use rustix::io::Errno;

use crate::format::{self, Entry, Extent, Index, Kind, Mtime, NameTable, Names, RecordHead, Tables, Xattr};
use crate::stop::{Failure, Stopped};
use crate::ui::{text_of, Console, Counters};

use super::exclude::{ExcludeOptions, Excluder};
use super::share::{Candidate, Shared};

/// What the command line names to archive: `path` as typed, read from `base` (the `-C`
/// directories given before it, joined; empty for the working directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub base: Utf8PathBuf,
    pub path: Utf8PathBuf,
}

impl Input {
    /// An input read from the working directory.
    pub fn new(path: impl Into<Utf8PathBuf>) -> Input {
        Input { base: Utf8PathBuf::new(), path: path.into() }
    }
}

/// A top-level input: where it is read from, and the path the archive stores it under, one
/// component or more. `dirs[k]` is where the directory stored as `stored[..=k]` is read from.
#[derive(Debug)]
pub struct Root {
    pub path: Utf8PathBuf,
    pub stored: Vec<Vec<u8>>,
    dirs: Vec<Utf8PathBuf>,
}

/// Where each input goes in the archive, as tar does for relative paths: an input given as a
/// relative path is stored under that path (`proj1/src`, with `.` components dropped and
/// everything up to a `..` removed, with a notice); an absolute path is stored under its last
/// component, so that `arc write -o x.arc /usr/share/doc` and `arc read x.arc -C DEST` make
/// `DEST/doc`; `.` is named after the directory it is. The roots are sorted (the index keeps
/// siblings sorted); two inputs stored under one path are refused, and an input stored inside
/// another is archived once, with a notice.
pub fn roots(inputs: &[Input], console: &Console) -> Result<Vec<Root>> {
    use camino::Utf8Component;
    let mut roots = Vec::new();
    for input in inputs {
        let path = input.base.join(&input.path);
        let meta = fs::metadata(&path).with_context(|| format!("reading {path}"))?;
        if !meta.is_dir() && !meta.is_file() {
            bail!("reading {path}: not a directory or regular file");
        }
        let mut parts: Vec<&str> = Vec::new();
        let mut dropped = false;
        for component in input.path.components() {
            match component {
                Utf8Component::Normal(part) => parts.push(part),
                Utf8Component::CurDir => {}
                Utf8Component::ParentDir => {
                    parts.clear();
                    dropped = true;
                }
                Utf8Component::RootDir | Utf8Component::Prefix(_) => {}
            }
        }
        if input.path.is_absolute() {
            parts = parts.split_off(parts.len().saturating_sub(1));
        }
        let (stored, dirs): (Vec<Vec<u8>>, Vec<Utf8PathBuf>) = if parts.is_empty() {
            // `.`, `..` or `/`: name the input after what it resolves to.
            let real = path.canonicalize_utf8().with_context(|| format!("reading {path}"))?;
            let name = real.file_name().ok_or_else(|| {
                anyhow!("reading {path}: the root directory has no name to archive it under")
            })?;
            (vec![name.as_bytes().to_vec()], vec![path.clone()])
        } else {
            // The directories on the way down, read from where the input is.
            let top = path.ancestors().nth(parts.len() - 1).unwrap_or(&path).to_owned();
            let mut dirs = vec![top];
            for part in &parts[1..] {
                let next = dirs.last().map(|d| d.join(part)).unwrap_or_default();
                dirs.push(next);
            }
            (parts.iter().map(|p| p.as_bytes().to_vec()).collect(), dirs)
        };
        if dropped && !parts.is_empty() && !input.path.is_absolute() {
            let shown: Vec<_> = stored.iter().map(|c| text_of(c).into_owned()).collect();
            console.notice(format!("{}: stored as {} (leading \"..\" removed)", input.path, shown.join("/")));
        }
        roots.push(Root { path, stored, dirs });
    }
    roots.sort_by(|a, b| a.stored.cmp(&b.stored));
    let shown =
        |root: &Root| root.stored.iter().map(|c| text_of(c).into_owned()).collect::<Vec<_>>().join("/");
    let mut kept: Vec<Root> = Vec::with_capacity(roots.len());
    for root in roots {
        if let Some(outer) = kept.iter().rev().find(|k| root.stored.starts_with(&k.stored)) {
            if outer.stored.len() == root.stored.len() {
                bail!(
                    "reading {}: two inputs are both stored as \"{}\" in the archive",
                    root.path,
                    shown(&root)
                );
            }
            if !fs::metadata(&outer.path).is_ok_and(|m| m.is_dir()) {
                bail!("reading {}: it would be stored inside {}, which is a file", root.path, outer.path);
            }
            console.notice(format!("{}: inside {}, archived once", root.path, outer.path));
            continue;
        }
        kept.push(root);
    }
    Ok(kept)
}

/// What the walker needs to know of the command line.
pub struct Settings {
    /// Uncompressed bytes per block.
    pub block_size: usize,
    pub ignore_failed_read: bool,
    /// (device, inode) of files never to archive: the archive being written.
    pub skip: Vec<(u64, u64)>,
    pub exclude: ExcludeOptions,
}

/// The entries of one record (FORMAT.md §3.2): those after the previous record's, up to the
/// last whose stored bytes start in the block the record comes before (all that are left,
/// for the final record), as an index of their own numbered from `base`; and the record's
/// head, its block's fields left for whoever compresses the block to fill in.
pub struct Run {
    pub entries: Index,
    pub base: u32,
    pub head: RecordHead,
}

pub struct Walker<'a, F> {
    settings: &'a Settings,
    console: &'a Console,
    counters: &'a Counters,
    failure: &'a Failure<'a>,
    /// Takes each finished block of the data stream, in order.
    send_block: F,
    excluder: Excluder,
    /// The path of the entry being visited as the archive stores it (`root/dir/name`).
    stored: Vec<u8>,
    block: Vec<u8>,
    entries: Vec<Entry>,
    /// The entries' names, in one buffer.
    names: Names,
    /// The symlinks' targets, likewise.
    targets: Names,
    /// Sparse files' extents and entries' extended attributes, by entry.
    tables: Tables,
    owners: Owners,
    /// The entry of each inode with more than one link stored so far, by (device, inode).
    links: HashMap<(u64, u64), u32>,
    /// The stored files whose contents later files may share.
    shared: Shared,
    /// Next byte's offset in the data stream.
    offset: u64,
    /// The stored bytes of every entry made so far, the file being read included.
    pushed_stored: u64,
    /// Where the current run starts: its first entry, the number of symlink targets before
    /// it, and the stored bytes of the entries before it.
    run_start: usize,
    run_targets: usize,
    run_data: u64,
    /// Blocks handed on so far.
    blocks: u64,
}

impl<'a, F: FnMut(Vec<u8>, Run) -> Result<()>> Walker<'a, F> {
    pub fn new(
        settings: &'a Settings,
        console: &'a Console,
        counters: &'a Counters,
        failure: &'a Failure<'a>,
        send_block: F,
    ) -> Result<Walker<'a, F>> {
        Ok(Walker {
            settings,
            console,
            counters,
            failure,
            send_block,
            excluder: Excluder::new(&settings.exclude)?,
            stored: Vec::new(),
            block: Vec::with_capacity(settings.block_size),
            entries: Vec::new(),
            names: Names::default(),
            targets: Names::default(),
            tables: Tables::default(),
            owners: Owners::default(),
            links: HashMap::new(),
            shared: Shared::new(),
            offset: 0,
            pushed_stored: 0,
            run_start: 0,
            run_targets: 0,
            run_data: 0,
            blocks: 0,
        })
    }

    /// Walks the trees; returns the entries, their names and their tables, owner names
    /// included.
    pub fn walk(mut self, roots: &[Root]) -> Result<(Vec<Entry>, Names, Names, Tables)> {
        self.walk_level(roots, 0, None)?;
        self.flush()?;
        // The final record: the entries after the last block's, with no block after it.
        self.failure.check()?;
        let run = self.run(self.offset);
        (self.send_block)(Vec::new(), run)?;
        // The names of the owners of what was archived (a socket left out is not).
        (self.tables.users, self.tables.groups) = self.owners.tables_of(&self.entries);
        Ok((self.entries, self.names, self.targets, self.tables))
    }

    /// The entries at `depth` of `roots` (sorted, sharing their stored path above `depth`),
    /// under entry `parent`: an input is visited whole, a directory on the way down to inputs
    /// is stored with only them inside.
    fn walk_level(&mut self, roots: &[Root], depth: usize, parent: Option<u32>) -> Result<()> {
        let mut i = 0;
        while i < roots.len() {
            let name = &roots[i].stored[depth];
            let group = roots[i..].iter().take_while(|r| &r.stored[depth] == name).count();
            let (first, group) = (&roots[i], &roots[i..i + group]);
            i += group.len();
            // Top-level inputs and the directories above them are followed if they are
            // symlinks; nothing below them is.
            let path = &first.dirs[depth];
            let meta =
                Meta::of(rustix::fs::stat(path.as_str())).with_context(|| format!("reading {path}"))?;
            if first.stored.len() == depth + 1 {
                if self.settings.skip.contains(&(meta.dev, meta.ino)) {
                    bail!("reading {path}: this is the archive being written");
                }
                let place = Place::Root(path);
                let name = name.clone();
                let found = Found {
                    place,
                    path: path.as_std_path(),
                    name,
                    parent,
                    depth: depth as u32,
                    meta,
                    file: None,
                    excluded_file: None,
                };
                // Below it, files are found again from here (if it is stored: else forgotten).
                let root = self.entries.len();
                self.shared.root(root as u32, path.as_std_path().to_path_buf());
                self.visit(found)?;
                if self.entries.len() == root {
                    self.shared.forget_root();
                }
                continue;
            }
            // A directory named on the way to an input: its metadata, and only the inputs
            // inside it; its ignore files apply to them (--gitignore).
            if meta.file_type() != FileType::Directory {
                bail!("reading {path}: not a directory");
            }
            let dir =
                Place::Root(path).open(name, DIR_FLAGS).map_err(|e| read_error(e, path.as_std_path()))?;
            let me = self.entries.len() as u32;
            self.owners.note(meta.uid, meta.gid);
            self.read_xattrs(me, path.as_std_path(), XattrSource::Fd(dir.as_fd()));
            let entry = meta.entry(parent, depth as u32);
            let stored_len = self.stored.len();
            if depth > 0 {
                self.stored.push(b'/');
            }
            self.stored.extend_from_slice(name);
            self.push(path.as_std_path(), entry, name)?;
            let console = self.console;
            let pushed = self.excluder.enter(dir.as_fd(), &self.stored, |warning| console.warn(warning));
            let result = self.walk_level(group, depth + 1, Some(me));
            self.excluder.leave(pushed);
            self.stored.truncate(stored_len);
            result?;
        }
        Ok(())
    }

    fn visit(&mut self, found: Found<'_>) -> Result<()> {
        let Found { path, depth, meta, .. } = found;
        self.failure.check()?;
        if depth > format::MAX_DEPTH {
            bail!("reading {}: nested deeper than {} directories", shown(path), format::MAX_DEPTH);
        }
        let file_type = meta.file_type();
        let parent_len = self.stored.len();
        if depth > 0 {
            self.stored.push(b'/');
        }
        self.stored.extend_from_slice(&found.name);
        // Asked already for a file its listing called regular, before opening it.
        let excluded = match (found.excluded_file, file_type) {
            (Some(excluded), FileType::RegularFile) => excluded,
            _ => self.excluder.excludes(&self.stored, &found.name, file_type == FileType::Directory),
        };
        let result = if excluded { Ok(()) } else { self.visit_kept(found) };
        self.stored.truncate(parent_len);
        result
    }

    /// [`Walker::visit`] for an entry that is not excluded.
    fn visit_kept(&mut self, found: Found<'_>) -> Result<()> {
        let Found { place, path, name, parent, depth, meta, file, .. } = found;
        let file_type = meta.file_type();
        let mut entry = meta.entry(parent, depth);
        let me = self.entries.len() as u32;
        self.owners.note(meta.uid, meta.gid);
        match file_type {
            FileType::RegularFile if self.settings.skip.contains(&(meta.dev, meta.ino)) => return Ok(()),
            // A socket cannot be archived and is no loss: tar ignores it, saying so, exit 0.
            FileType::Socket => {
                self.console.notice(format!("{}: socket ignored", shown(path)));
                return Ok(());
            }
            FileType::Directory => {
                // Open and list first, so an unreadable directory can be left out whole.
                let listed = place.open(&name, DIR_FLAGS).and_then(|fd| Ok((list_dir(&fd)?, fd)));
                let (children, dir) = match listed {
                    Ok(listed) => listed,
                    Err(e) => return self.failed_read(read_error(e, path)),
                };
                self.read_xattrs(me, path, XattrSource::Fd(dir.as_fd()));
                self.push(path, entry, &name)?;
                let console = self.console;
                let pushed = self.excluder.enter(dir.as_fd(), &self.stored, |warning| console.warn(warning));
                let result = self.visit_children(&dir, meta.dev, path, children, me, depth);
                self.excluder.leave(pushed);
                result?;
            }
            FileType::RegularFile => {
                let inode = (meta.dev, meta.ino);
                if let Some(&target) = self.links.get(&inode).filter(|_| meta.nlink > 1) {
                    // Another name of a file stored already: its data and attributes are there.
                    entry.set_kind(Kind::HardLink { target });
                    self.push(path, entry, &name)?;
                    return Ok(());
                }
                let file = match file.map_or_else(|| place.open(&name, FILE_FLAGS).map(File::from), Ok) {
                    Ok(file) => file,
                    Err(e) => return self.failed_read(read_error(e, path)),
                };
                self.read_xattrs(me, path, XattrSource::Fd(file.as_fd()));
                let extents =
                    if meta.looks_sparse() { data_extents(&file, meta.size, MAX_EXTENTS) } else { None };
                // The entry first, with the size as listed: its bytes follow, that many.
                entry.set_kind(Kind::File { size: meta.size });
                if meta.nlink > 1 {
                    self.links.insert(inode, me);
                }
                let stored = extents.as_ref().map_or(meta.size, |x| x.iter().map(|x| x.len).sum());
                // The same contents as a file stored already: stored once, there.
                // What was read aside, and its hash when that is all of the file.
                let (mut aside, mut known) = (Vec::new(), None);
                if extents.is_none() && self.shared.may_copy(meta.size) {
                    match self.shared.candidate(&file, meta.size, &self.entries, &self.names) {
                        Candidate::Copy(source) => {
                            self.tables.copies.push((me, source));
                            self.warn_if_changed(path, &file, &meta);
                            return self.push(path, entry, &name);
                        }
                        Candidate::Read(bytes, hash) => (aside, known) = (bytes, hash),
                        Candidate::Store => {}
                    }
                }
                if let Some(extents) = &extents {
                    self.tables.sparse.push((me, extents.clone()));
                }
                if stored > 0 && self.block.len() == self.settings.block_size {
                    // Its bytes start in the next block, and so it is in the next record.
                    self.flush()?;
                }
                self.push(path, entry, &name)?;
                self.pushed_stored += stored;
                match extents {
                    Some(extents) => self.read_sparse(path, &file, &meta, &extents)?,
                    None => {
                        let mut hasher = known.is_none().then(|| Shared::hasher(meta.size, false)).flatten();
                        let read = aside.as_slice().chain(&file);
                        let clean = self.read_file(path, read, &file, &meta, hasher.as_mut())?;
                        if let Some(hash) = known.or_else(|| hasher.map(|h| h.digest128())).filter(|_| clean)
                        {
                            self.shared.stored(hash, meta.size, me, inode, meta.ctime);
                        }
                    }
                }
            }
            FileType::Symlink => {
                let target = match place {
                    Place::In(dir) => rustix::fs::readlinkat(dir, name.as_slice(), Vec::new()),
                    Place::Root(root) => rustix::fs::readlink(root.as_str(), Vec::new()),
                };
                let target = target.map_err(|e| read_error(e.into(), path))?.into_bytes();
                if target.len() > format::MAX_TARGET_LEN {
                    bail!(
                        "reading {}: symlink target longer than {} bytes",
                        shown(path),
                        format::MAX_TARGET_LEN
                    );
                }
                self.read_xattrs(me, path, place.at_path(&name));
                if !self.targets.fits(target.len()) {
                    bail!("reading {}: the symlinks' targets take more than 4 GiB", shown(path));
                }
                entry.set_kind(Kind::Symlink { target: self.targets.len() as u32 });
                self.targets.push(&target);
                self.push(path, entry, &name)?;
            }
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                let (major, minor) = (rustix::fs::major(meta.rdev), rustix::fs::minor(meta.rdev));
                entry.set_kind(match file_type {
                    FileType::Fifo => Kind::Fifo,
                    FileType::CharacterDevice => Kind::CharDevice { major, minor },
                    _ => Kind::BlockDevice { major, minor },
                });
                self.read_xattrs(me, path, place.at_path(&name));
                self.push(path, entry, &name)?;
            }
            FileType::Unknown => {
                self.console.warn(format!("skipping {}: a file of unknown type", shown(path)));
                return Ok(());
            }
        }
        Ok(())
    }

    /// Stores the extended attributes of entry `me`, if it has any. One that cannot be read is
    /// a warning naming it: never a silent loss.
    fn read_xattrs(&mut self, me: u32, path: &Path, source: XattrSource<'_>) {
        match source.read() {
            Ok(xattrs) if xattrs.is_empty() => {}
            Ok(xattrs) => self.tables.xattrs.push((me, xattrs)),
            Err(e) => self.console.warn(format!("reading extended attributes of {}: {e}", shown(path))),
        }
    }

    /// Visits the children of directory entry `me` (open as `dir`), in sorted order.
    fn visit_children(
        &mut self,
        dir: &OwnedFd,
        dev: u64,
        path: &Path,
        children: Vec<Child>,
        me: u32,
        depth: u32,
    ) -> Result<()> {
        for Child { name: child_name, regular, ino } in children {
            let child_path = path.join(OsStr::from_bytes(&child_name));
            // Another name of a file stored already is not opened: a hard link needs only its
            // lookup. (The listing's inode number is the file's, unless something is mounted
            // on it: then either way is right, only slower.)
            let linked = self.links.contains_key(&(dev, ino));
            let excluded_file = regular.then(|| self.excludes_file(&child_name));
            let opened = (regular && !linked && excluded_file == Some(false))
                .then(|| open_listed(dir, &child_name))
                .flatten();
            let (listed, file) = match opened {
                Some((meta, file)) => (Ok(meta), Some(file)),
                None => (
                    Meta::of(rustix::fs::statat(dir, child_name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)),
                    None,
                ),
            };
            let child_meta = match listed {
                Ok(m) => m,
                // Gone since the listing: nothing to archive, as with tar.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.failed_read(read_error(e, &child_path))?;
                    continue;
                }
            };
            let place = Place::In(dir.as_fd());
            let parent = Some(me);
            self.visit(Found {
                place,
                path: &child_path,
                name: child_name,
                parent,
                depth: depth + 1,
                meta: child_meta,
                file,
                excluded_file,
            })?;
        }
        Ok(())
    }

    /// Whether a file `name` in the directory being visited would be left out: it is not
    /// opened before it is looked up, then.
    fn excludes_file(&mut self, name: &[u8]) -> bool {
        if !self.excluder.is_active() {
            return false;
        }
        let stored_len = self.stored.len();
        self.stored.push(b'/');
        self.stored.extend_from_slice(name);
        let excluded = self.excluder.excludes(&self.stored, name, false);
        self.stored.truncate(stored_len);
        excluded
    }

    fn push(&mut self, path: &Path, entry: Entry, name: &[u8]) -> Result<()> {
        if !self.names.fits(name.len()) {
            bail!("reading {}: the names of the entries take more than 4 GiB", shown(path));
        }
        self.console.path(|| shown(path));
        Counters::add(&self.counters.entries, 1);
        self.entries.push(entry);
        self.names.push(name);
        Ok(())
    }

    /// An entry could not be read: an error, or with `--ignore-failed-read` a warning and the
    /// entry left out.
    fn failed_read(&self, error: anyhow::Error) -> Result<()> {
        if self.settings.ignore_failed_read && !error.is::<Stopped>() {
            self.console.warn(format!("{error:#} (left out)"));
            Ok(())
        } else {
            Err(error)
        }
    }

    /// Reads a file into the data stream: its listed size, no more, no less. A read that ends
    /// there is taken as the end, and the file's size afterwards tells whether it grew
    /// meanwhile: one read for a small file, where reading to the end takes two. A file listed
    /// as empty is asked for one byte all the same: files of /proc and /sys say 0 and are not,
    /// and must not be archived empty unsaid. A file that shrank, or (with
    /// `--ignore-failed-read`) failed, is padded with zeros to its listed size. The bytes come
    /// from `reader` (`file`, or what was read of it aside, then `file`), and go through
    /// `hasher` too if there is one. Returns whether they are the file's as listed (no
    /// warning).
    fn read_file(
        &mut self,
        path: &Path,
        mut reader: impl Read,
        file: &File,
        listed: &Meta,
        mut hasher: Option<&mut xxhash_rust::xxh3::Xxh3>,
    ) -> Result<bool> {
        let expected = listed.size;
        let mut done: u64 = 0;
        let mut grew = false;
        let mut error = None;
        if expected == 0 {
            // Asked aside, not into the block: a full block waits for bytes that are there.
            let probe = loop {
                match reader.read(&mut [0u8; 1]) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    result => break result,
                }
            };
            match probe {
                Ok(got) => grew = got > 0,
                Err(e) => error = Some(e),
            }
        }
        while done < expected {
            if self.block.len() == self.settings.block_size {
                self.flush()?;
            }
            let room = (self.settings.block_size - self.block.len()) as u64;
            let want = room.min(expected - done);
            let before = self.block.len();
            // Take stops at `want` without asking the file again.
            let read = (&mut reader).take(want).read_to_end(&mut self.block);
            let got = (self.block.len() - before) as u64;
            if let Some(hasher) = &mut hasher {
                hasher.update(&self.block[before..]);
            }
            done += got;
            self.stored(got)?;
            if let Err(e) = read {
                error = Some(e);
                break;
            }
            if got < want {
                break;
            }
        }
        if done < expected || error.is_some() {
            self.pad_short(path, error, done, expected, expected - done)?;
            return Ok(false);
        }
        let path = shown(path);
        match Meta::of(rustix::fs::fstat(file)) {
            Ok(now) if grew || now.size > expected => self.console.warn(format!(
                "reading {path}: file grew while it was read (archived its first {expected} bytes)"
            )),
            // Rewritten in place, same size: the bytes stored may mix old and new, as GNU tar
            // warns ("file changed as we read it").
            Ok(now) if listed.changed_since(&now) => {
                self.console.warn(format!("reading {path}: file changed while it was read"))
            }
            Ok(_) => return Ok(true),
            Err(_) => {}
        }
        Ok(false)
    }

    /// Reads the data extents of a sparse file into the data stream, as [`Walker::read_file`]
    /// does a dense one, padding with zeros what could not be read.
    fn read_sparse(&mut self, path: &Path, file: &File, listed: &Meta, extents: &[Extent]) -> Result<()> {
        let total: u64 = extents.iter().map(|x| x.len).sum();
        let mut stored = 0u64;
        for extent in extents {
            let mut done = 0u64;
            while done < extent.len {
                if self.block.len() == self.settings.block_size {
                    self.flush()?;
                }
                let want = ((self.settings.block_size - self.block.len()) as u64).min(extent.len - done);
                let before = self.block.len();
                self.block.resize(before + want as usize, 0);
                let read = read_at_most(file, &mut self.block[before..], extent.offset + done);
                let got = *read.as_ref().unwrap_or(&0) as u64;
                self.block.truncate(before + got as usize);
                done += got;
                self.stored(got)?;
                if got < want {
                    let error = read.err();
                    return self.pad_short(path, error, stored + done, listed.size, total - stored - done);
                }
            }
            stored += extent.len;
        }
        self.warn_if_changed(path, file, listed);
        Ok(())
    }

    /// Warns, as GNU tar does, if `file` changed since it was `listed`: what was stored may mix
    /// old and new.
    fn warn_if_changed(&self, path: &Path, file: &File, listed: &Meta) {
        if Meta::of(rustix::fs::fstat(file)).is_ok_and(|now| listed.changed_since(&now)) {
            self.console.warn(format!("reading {}: file changed while it was read", shown(path)));
        }
    }

    /// A file read short, `done` bytes of `size`: an error, or (it shrank, or failed with
    /// `--ignore-failed-read`) a warning and `missing` zeros in the stream in place of what
    /// was not read, so that it keeps the size its entry says.
    fn pad_short(
        &mut self,
        path: &Path,
        error: Option<std::io::Error>,
        done: u64,
        size: u64,
        missing: u64,
    ) -> Result<()> {
        let why = match error {
            Some(e) if !self.settings.ignore_failed_read => {
                return Err(anyhow::Error::new(e).context(format!("reading {}", shown(path))))
            }
            Some(e) => e.to_string(),
            None => "file shrank while it was read".to_owned(),
        };
        self.console.warn(format!(
            "reading {}: {why} (archived its first {done} of {size} bytes, the rest as zeros)",
            shown(path)
        ));
        let mut left = missing;
        while left > 0 {
            if self.block.len() == self.settings.block_size {
                self.flush()?;
            }
            let n = ((self.settings.block_size - self.block.len()) as u64).min(left);
            self.block.resize(self.block.len() + n as usize, 0);
            left -= n;
            self.stored(n)?;
        }
        Ok(())
    }

    /// `n` more bytes are in the block. A full block is handed on when more bytes come (or
    /// an entry that has some), so that the entries without bytes made meanwhile are in its
    /// record (FORMAT.md §3.2).
    fn stored(&mut self, n: u64) -> Result<()> {
        self.offset += n;
        Counters::add(&self.counters.data, n);
        Ok(())
    }

    /// Hands the current block on, with the run of entries that start in it.
    fn flush(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.failure.check()?;
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(self.settings.block_size));
        let run = self.run(self.offset - data.len() as u64);
        (self.send_block)(data, run)?;
        self.blocks += 1;
        Ok(())
    }

    /// The entries made since the last run, as the next record tells them; `block_offset` is
    /// where its block starts in the data stream (the stream's end for the final record).
    /// The run after it starts now.
    fn run(&mut self, block_offset: u64) -> Run {
        let (start, end) = (self.run_start, self.entries.len());
        let mut parents = Vec::new();
        let mut up = self.entries.get(start).and_then(|e| e.parent());
        while let Some(p) = up {
            parents.push(self.names.get(p as usize).to_vec());
            up = self.entries[p as usize].parent();
        }
        parents.reverse();
        let mut entries = self.entries[start..end].to_vec();
        let mut names = Names::with_capacity(end - start, 0);
        for i in start..end {
            names.push(self.names.get(i));
        }
        let mut targets = Names::default();
        for t in self.run_targets..self.targets.len() {
            targets.push(self.targets.get(t));
        }
        for entry in &mut entries {
            if let Kind::Symlink { target } = entry.kind() {
                entry.set_kind(Kind::Symlink { target: target - self.run_targets as u32 });
            }
        }
        let sparse = rows_from(&self.tables.sparse, start).to_vec();
        let copies = rows_from(&self.tables.copies, start).to_vec();
        let xattrs = rows_from(&self.tables.xattrs, start).to_vec();
        let (users, groups) = self.owners.tables_of(&entries);
        let tables = Tables { owners: true, sparse, copies, xattrs, users, groups };
        let head = RecordHead {
            block: self.blocks,
            first_entry: start as u64,
            block_offset,
            data_offset: self.run_data,
            parents,
            ..RecordHead::default()
        };
        let run = Run { entries: Index::of_run(entries, names, targets, tables), base: start as u32, head };
        self.run_start = end;
        self.run_targets = self.targets.len();
        self.run_data = self.pushed_stored;
        run
    }
}

/// An entry found by the walker, on its way to being visited.
struct Found<'p> {
    place: Place<'p>,
    /// Its path on the filesystem, for messages.
    path: &'p Path,
    name: Vec<u8>,
    parent: Option<u32>,
    depth: u32,
    meta: Meta,
    /// The file, open already if it is a regular file its directory listed as one.
    file: Option<File>,
    /// Whether it is left out if it is a regular file, when that was asked already.
    excluded_file: Option<bool>,
}

/// How the walker opens a regular file. O_NOFOLLOW: if the file was replaced by a symlink
/// since it was listed, fail rather than archive whatever the link points at.
const FILE_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Where an entry is found: a top-level input, opened by its path (following a symlink), or
/// a name inside a directory the walker holds open. Working from directory handles keeps
/// every lookup one component long, so trees deeper than PATH_MAX are archived too.
#[derive(Clone, Copy)]
enum Place<'a> {
    Root(&'a camino::Utf8Path),
    In(BorrowedFd<'a>),
}

impl<'a> Place<'a> {
    /// Where the extended attributes of `name` are read without following it, for entries
    /// that cannot be opened for that (symlinks, FIFOs, devices).
    fn at_path(self, name: &[u8]) -> XattrSource<'a> {
        match self {
            Place::In(dir) => {
                // The directory by its handle, then one component: never a path walk.
                let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
                path.extend_from_slice(name);
                XattrSource::Path(path)
            }
            Place::Root(root) => XattrSource::Path(root.as_str().as_bytes().to_vec()),
        }
    }

    /// Opens the entry: `name` inside the directory, or the root by `path`.
    fn open(self, name: &[u8], flags: OFlags) -> std::io::Result<OwnedFd> {
        Ok(match self {
            Place::In(dir) => rustix::fs::openat(dir, name, flags, Mode::empty())?,
            // A root is followed if it is a symlink: the user named what it points at.
            Place::Root(path) => {
                rustix::fs::open(path.as_str(), flags.difference(OFlags::NOFOLLOW), Mode::empty())?
            }
        })
    }
}

/// The metadata the walker uses, from `stat`.
#[derive(Clone, Copy)]
struct Meta {
    dev: u64,
    ino: u64,
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    rdev: u64,
    size: u64,
    /// Allocated 512-byte blocks.
    blocks: u64,
    mtime: i64,
    mtime_nanos: u32,
    /// Status change time, (seconds, nanoseconds): any write, chmod or rename moves it.
    ctime: (i64, i64),
}

impl Meta {
    // Field types of `Stat` differ between architectures; the casts are identities on some.
    #[allow(clippy::unnecessary_cast)]
    fn of(stat: rustix::io::Result<rustix::fs::Stat>) -> std::io::Result<Meta> {
        let stat = stat?;
        Ok(Meta {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            mode: stat.st_mode as u32,
            nlink: stat.st_nlink as u64,
            uid: stat.st_uid,
            gid: stat.st_gid,
            rdev: stat.st_rdev as u64,
            size: stat.st_size.max(0) as u64,
            blocks: stat.st_blocks.max(0) as u64,
            mtime: stat.st_mtime as i64,
            mtime_nanos: (stat.st_mtime_nsec as u32).min(999_999_999),
            ctime: (stat.st_ctime as i64, stat.st_ctime_nsec as i64),
        })
    }

    /// Whether `self` and `now` say the file's contents or status changed between them.
    fn changed_since(&self, now: &Meta) -> bool {
        (self.size, self.mtime, self.mtime_nanos, self.ctime)
            != (now.size, now.mtime, now.mtime_nanos, now.ctime)
    }

    fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }

    /// The entry of what this metadata is of, as a directory until its kind is known.
    fn entry(&self, parent: Option<u32>, depth: u32) -> Entry {
        let mtime = Mtime { secs: self.mtime, nanos: self.mtime_nanos };
        Entry::new(Kind::Dir, parent, depth as u16, (self.mode & 0o7777) as u16, mtime, self.uid, self.gid)
    }

    /// Fewer bytes allocated than the size: holes, most likely (or compression, which
    /// [`data_extents`] tells apart).
    fn looks_sparse(&self) -> bool {
        self.size > 0 && self.blocks.saturating_mul(512) < self.size
    }
}

/// More extents than this in one file are stored as a dense file: an index of millions of
/// extents would cost more than the zeros, which compress to almost nothing.
const MAX_EXTENTS: usize = 1 << 16;

/// The data extents of a file with holes, found with SEEK_DATA and SEEK_HOLE; `None` for a file
/// that turns out to be dense (one extent, all of it), that the filesystem cannot tell about,
/// or that has more than `max` extents. The file's offset is back at 0 whatever the answer
/// (dense files are read sequentially from it); where it cannot be put back, the whole file is
/// one extent, which is read at its offsets.
fn data_extents(file: &File, size: u64, max: usize) -> Option<Vec<Extent>> {
    let found = probe_extents(file, size, max);
    if rustix::fs::seek(file, SeekFrom::Start(0)).is_err() {
        return Some(vec![Extent { offset: 0, len: size }]);
    }
    match found?.as_slice() {
        [only] if only.offset == 0 && only.len == size => None,
        extents => Some(extents.to_vec()),
    }
}

/// The SEEK_DATA/SEEK_HOLE walk of [`data_extents`]; it moves the file's offset.
fn probe_extents(file: &File, size: u64, max: usize) -> Option<Vec<Extent>> {
    let mut extents = Vec::new();
    let mut at = 0u64;
    while at < size {
        let start = match rustix::fs::seek(file, SeekFrom::Data(at)) {
            Ok(start) => start,
            // No data past `at`: the rest is a hole.
            Err(Errno::NXIO) => break,
            Err(_) => return None,
        };
        if start >= size {
            break;
        }
        let end = rustix::fs::seek(file, SeekFrom::Hole(start)).ok()?.min(size);
        if end <= start || extents.len() == max {
            return None;
        }
        extents.push(Extent { offset: start, len: end - start });
        at = end;
    }
    Some(extents)
}

/// Fills `buf` from `offset` of `file`, short only at the end of the file.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Where extended attributes are read from: an open file or directory, or a path that is
/// not followed if it is a symlink.
enum XattrSource<'a> {
    Fd(BorrowedFd<'a>),
    Path(Vec<u8>),
}

impl XattrSource<'_> {
    /// Every attribute, sorted by name; none where the filesystem has no attributes at all.
    fn read(&self) -> std::io::Result<Vec<Xattr>> {
        let list = |buf: &mut [u8]| match self {
            XattrSource::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            XattrSource::Path(path) => rustix::fs::llistxattr(OsStr::from_bytes(path), buf),
        };
        let get = |name: &[u8], buf: &mut [u8]| match self {
            XattrSource::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
            XattrSource::Path(path) => rustix::fs::lgetxattr(OsStr::from_bytes(path), name, buf),
        };
        let names = match grow(|buf| list(buf)) {
            Ok(names) => names,
            Err(Errno::OPNOTSUPP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut xattrs = Vec::new();
        for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            match grow(|buf| get(name, buf)) {
                Ok(value) => xattrs.push(Xattr { name: name.to_vec(), value }),
                // Removed since it was listed.
                Err(Errno::NODATA) => {}
                Err(e) => {
                    return Err(std::io::Error::other(format!(
                        "{}: {}",
                        String::from_utf8_lossy(name),
                        std::io::Error::from(e)
                    )))
                }
            }
        }
        xattrs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(xattrs)
    }
}

/// Calls `fill` with a buffer that grows until what it returns fits (xattr calls say ERANGE
/// when the buffer is too small, and a size query can be stale by the next call).
fn grow(mut fill: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>) -> rustix::io::Result<Vec<u8>> {
    // Most files have no attributes, or a short list: asked into the stack first, the heap
    // is not touched for them.
    let mut first = [0u8; 256];
    match fill(&mut first) {
        Ok(n) => return Ok(first[..n].to_vec()),
        Err(Errno::RANGE) => {}
        Err(e) => return Err(e),
    }
    let mut buf = vec![0u8; 1024];
    loop {
        match fill(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < format::MAX_XATTR_VALUE.max(format::MAX_XATTR_LIST) => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// User and group names by id, each looked up once (getpwuid_r reads /etc/passwd or asks NSS).
#[derive(Default)]
struct Owners {
    users: HashMap<u32, Option<Vec<u8>>>,
    groups: HashMap<u32, Option<Vec<u8>>>,
    /// The ids noted last: the files of a tree mostly have one owner, and hashing both ids
    /// for every file shows in a walk of a million tiny files.
    last: Option<(u32, u32)>,
}

impl Owners {
    fn note(&mut self, uid: u32, gid: u32) {
        if self.last.replace((uid, gid)) == Some((uid, gid)) {
            return;
        }
        self.users.entry(uid).or_insert_with(|| {
            let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid));
            user.ok().flatten().map(|u| u.name.into_bytes())
        });
        self.groups.entry(gid).or_insert_with(|| {
            let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid));
            group.ok().flatten().map(|g| g.name.into_bytes())
        });
    }

    /// The name tables of `entries` (a run's, or all of them for the index): the names of the
    /// ids they use, sorted by id.
    fn tables_of(&self, entries: &[Entry]) -> (NameTable, NameTable) {
        let table = |names: &HashMap<u32, Option<Vec<u8>>>, ids: &mut Vec<u32>| -> NameTable {
            ids.sort_unstable();
            ids.dedup();
            let name = |id: &u32| names.get(id).cloned().flatten().filter(|n| storable(n));
            ids.iter().filter_map(|id| name(id).map(|n| (*id, n))).collect()
        };
        let mut uids: Vec<u32> = entries.iter().map(|e| e.uid).collect();
        let mut gids: Vec<u32> = entries.iter().map(|e| e.gid).collect();
        (table(&self.users, &mut uids), table(&self.groups, &mut gids))
    }
}

/// The rows of a table (sorted by entry number) of entries `start` and after.
fn rows_from<T>(table: &[(u32, T)], start: usize) -> &[(u32, T)] {
    &table[table.partition_point(|(e, _)| (*e as usize) < start)..]
}

/// Whether an owner name can be stored (FORMAT.md §4.6).
fn storable(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= format::MAX_OWNER_NAME && !name.contains(&0)
}

/// A path on the filesystem as text for messages (bytes that are not UTF-8 print as `\xff`).
fn shown(path: &Path) -> Cow<'_, str> {
    text_of(path.as_os_str().as_bytes())
}

/// An entry of a directory as listed: its name, and whether the listing says it is a
/// regular file (`d_type`; a filesystem that does not say is looked up first).
struct Child {
    name: Vec<u8>,
    regular: bool,
    /// Its inode number (`d_ino`).
    ino: u64,
}

/// The entries of a directory, sorted by name bytes.
fn list_dir(dir: &OwnedFd) -> std::io::Result<Vec<Child>> {
    let mut children = Vec::new();
    for item in rustix::fs::Dir::read_from(dir)? {
        let item = item?;
        let name = item.file_name().to_bytes();
        if name != b"." && name != b".." {
            let regular = item.file_type() == FileType::RegularFile;
            children.push(Child { name: name.to_vec(), regular, ino: item.ino() });
        }
    }
    children.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(children)
}

/// A file its directory lists as regular, opened first and its metadata read from the open
/// file: one path lookup, not two (a tree of a million tiny files makes a million fewer
/// system calls), and the metadata is that of what is read. `None` for what is not a regular
/// file once opened, or cannot be opened: it is looked up as the other kinds are, and the
/// error, if any, is the one opening it again gives.
///
/// A device bind-mounted on a file is listed as the file, and so is opened (and let go)
/// here, as looking it up first would not have done.
fn open_listed(dir: &OwnedFd, name: &[u8]) -> Option<(Meta, File)> {
    // O_NONBLOCK: a name listed as a file may be a FIFO by now (the listing is older than the
    // walk of the entries before it, and a FIFO bind-mounted on a file is listed as the file),
    // and opening a FIFO waits for a writer; it is checked and let go here. On a regular file
    // the flag changes nothing (open(2)). O_NOCTTY: a terminal mounted on a file must not
    // become the controlling terminal of a session leader running arc.
    let flags = FILE_FLAGS | OFlags::NONBLOCK | OFlags::NOCTTY;
    let file = File::from(rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?);
    let meta = Meta::of(rustix::fs::fstat(&file)).ok()?;
    (meta.file_type() == FileType::RegularFile).then_some((meta, file))
}

fn read_error(error: std::io::Error, path: &Path) -> anyhow::Error {
    anyhow::Error::new(error).context(format!("reading {}", shown(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    /// A file of 1 MiB with `pieces` bytes of data at every 128 KiB, the rest holes (where the
    /// filesystem of the temporary directory has holes).
    fn sparse_file(pieces: u64) -> File {
        let mut file = tempfile::tempfile().expect("a temporary file");
        file.set_len(1 << 20).expect("set_len");
        for k in 0..pieces {
            std::os::unix::fs::FileExt::write_all_at(&file, b"data", k * (128 << 10)).expect("write");
        }
        file.flush().expect("flush");
        file
    }

    #[test]
    fn extents_are_found_and_the_offset_is_back_at_zero_whatever_the_answer() {
        let mut file = sparse_file(3);
        let Some(extents) = data_extents(&file, 1 << 20, 10) else {
            eprintln!("note: the temporary directory's filesystem reports no holes; skipping");
            return;
        };
        assert_eq!(extents.len(), 3);
        assert!(extents.iter().enumerate().all(|(k, x)| x.offset <= k as u64 * (128 << 10) && x.len >= 4));
        assert_eq!(file.stream_position().expect("offset"), 0);
        // Over the cap: dense, and still read from the start (the probe had moved the offset
        // near the end of the file: that lost all but the file's tail).
        assert_eq!(data_extents(&file, 1 << 20, 2), None);
        assert_eq!(file.stream_position().expect("offset"), 0);
    }
}
