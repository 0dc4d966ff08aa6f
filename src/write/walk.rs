//! The walker stage of `arc write`: visits the input trees in sorted order, records one index
//! entry per directory, file and symlink, and packs file contents into blocks of `--block-size` bytes.
//!
//! Invariants:
//! - entries are produced in pre-order with siblings sorted by name bytes, which is the order
//!   the index stores and the order file bytes take in the data stream;
//! - a file is read in bounded chunks straight into the current block, never whole;
//! - the size recorded for a file is the number of bytes that went into the stream, even when
//!   the file changed while it was read (that is a warning), so the archive stays consistent;
//! - symlinks are recorded as links and never followed; only the top-level inputs are;
//! - the walker hands finished blocks to a closure and knows nothing of threads or channels.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::format::{self, Entry, Kind, Mtime};
use crate::stop::{Failure, Stopped};
use crate::ui::{Console, Counters};

use super::exclude::{ExcludeOptions, Excluder};

/// A top-level input and the name its entry gets in the archive.
#[derive(Debug)]
pub struct Root {
    pub name: String,
    pub path: Utf8PathBuf,
}

/// Names the inputs: the last component of each path (as `tar -C parent -cf x name` would),
/// sorted, so that the archive does not depend on argument order.
pub fn roots(inputs: &[Utf8PathBuf]) -> Result<Vec<Root>> {
    let mut roots = Vec::new();
    for path in inputs {
        let meta = fs::metadata(path).with_context(|| format!("reading {path}"))?;
        if !meta.is_dir() && !meta.is_file() {
            bail!("reading {path}: not a directory or regular file");
        }
        let name = match path.file_name() {
            Some(name) => name.to_owned(),
            None => {
                // `.`, `..` or `/`: name the input after what it resolves to.
                let real = path.canonicalize_utf8().with_context(|| format!("reading {path}"))?;
                real.file_name()
                    .ok_or_else(|| {
                        anyhow!("reading {path}: the root directory has no name to archive it under")
                    })?
                    .to_owned()
            }
        };
        roots.push(Root { name, path: path.clone() });
    }
    roots.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for pair in roots.windows(2) {
        if pair[0].name == pair[1].name {
            bail!("reading {}: two inputs are both named {:?} in the archive", pair[1].path, pair[1].name);
        }
    }
    Ok(roots)
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

pub struct Walker<'a, F> {
    settings: &'a Settings,
    console: &'a Console,
    counters: &'a Counters,
    failure: &'a Failure<'a>,
    /// Takes each finished block of the data stream, in order.
    send_block: F,
    excluder: Excluder,
    /// The path of the entry being visited as the archive stores it (`root/dir/name`).
    stored: String,
    block: Vec<u8>,
    entries: Vec<Entry>,
    /// Next byte's offset in the data stream.
    offset: u64,
}

impl<'a, F: FnMut(Vec<u8>) -> Result<()>> Walker<'a, F> {
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
            stored: String::new(),
            block: Vec::with_capacity(settings.block_size),
            entries: Vec::new(),
            offset: 0,
        })
    }

    pub fn walk(mut self, roots: &[Root]) -> Result<Vec<Entry>> {
        for root in roots {
            // Top-level inputs are followed if they are symlinks; nothing below them is.
            let meta = Meta::of(rustix::fs::stat(root.path.as_str()))
                .with_context(|| format!("reading {}", root.path))?;
            if self.settings.skip.contains(&(meta.dev, meta.ino)) {
                bail!("reading {}: this is the archive being written", root.path);
            }
            let place = Place::Root(&root.path);
            self.visit(Found {
                place,
                path: &root.path,
                name: root.name.clone(),
                parent: None,
                depth: 0,
                meta,
            })?;
        }
        self.flush()?;
        Ok(self.entries)
    }

    fn visit(&mut self, found: Found<'_>) -> Result<()> {
        let Found { path, depth, meta, .. } = found;
        self.failure.check()?;
        if depth > format::MAX_DEPTH {
            bail!("reading {path}: nested deeper than {} directories", format::MAX_DEPTH);
        }
        let file_type = meta.file_type();
        let parent_len = self.stored.len();
        if depth > 0 {
            self.stored.push('/');
        }
        self.stored.push_str(&found.name);
        let result = if self.excluder.excludes(&self.stored, &found.name, file_type == FileType::Directory) {
            Ok(())
        } else {
            self.visit_kept(found)
        };
        self.stored.truncate(parent_len);
        result
    }

    /// [`Walker::visit`] for an entry that is not excluded.
    fn visit_kept(&mut self, found: Found<'_>) -> Result<()> {
        let Found { place, path, name, parent, depth, meta } = found;
        let file_type = meta.file_type();
        match file_type {
            FileType::RegularFile if self.settings.skip.contains(&(meta.dev, meta.ino)) => return Ok(()),
            FileType::Directory | FileType::RegularFile | FileType::Symlink => {}
            // A socket cannot be archived and is no loss: tar ignores it, saying so, exit 0.
            FileType::Socket => {
                self.console.notice(format!("{path}: socket ignored"));
                return Ok(());
            }
            other => {
                let what = if other == FileType::Fifo { "FIFO" } else { "device file" };
                self.console.warn(format!("skipping {what} {path}"));
                return Ok(());
            }
        }
        let mut entry = Entry {
            name,
            parent,
            depth,
            kind: Kind::Dir,
            mode: (meta.mode & 0o7777) as u16,
            mtime: Mtime { secs: meta.mtime, nanos: meta.mtime_nanos },
        };
        match file_type {
            FileType::Directory => {
                // Open and list first, so an unreadable directory can be left out whole.
                let listed = place.open(&entry.name, DIR_FLAGS).and_then(|fd| Ok((list_dir(&fd)?, fd)));
                let (children, dir) = match listed {
                    Ok(listed) => listed,
                    Err(e) => return self.failed_read(read_error(e, path)),
                };
                let children = children.map_err(|raw| {
                    anyhow!(
                        "reading {}: file name is not UTF-8 (arc stores names as UTF-8)",
                        path.as_std_path().join(std::ffi::OsStr::from_bytes(&raw)).display()
                    )
                })?;
                let me = self.entries.len() as u32;
                self.push(path, entry);
                let console = self.console;
                let pushed = self.excluder.enter(dir.as_fd(), &self.stored, |warning| console.warn(warning));
                let result = self.visit_children(&dir, path, children, me, depth);
                self.excluder.leave(pushed);
                result?;
            }
            FileType::RegularFile => {
                // O_NOFOLLOW: if the file was replaced by a symlink since it was listed, fail
                // rather than archive whatever the link points at.
                let file = match place.open(&entry.name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC)
                {
                    Ok(fd) => File::from(fd),
                    Err(e) => return self.failed_read(read_error(e, path)),
                };
                let offset = self.offset;
                let size = self.read_file(path, file, &meta)?;
                entry.kind = Kind::File { size, offset };
                self.push(path, entry);
            }
            _ => {
                let target = match place {
                    Place::In(dir) => rustix::fs::readlinkat(dir, entry.name.as_str(), Vec::new()),
                    Place::Root(root) => rustix::fs::readlink(root.as_str(), Vec::new()),
                };
                let target = target.map_err(|e| read_error(e.into(), path))?;
                let target = target.into_string().map_err(|t| {
                    anyhow!("reading {path}: symlink target {:?} is not UTF-8", t.into_cstring())
                })?;
                if target.len() > format::MAX_TARGET_LEN {
                    bail!("reading {path}: symlink target longer than {} bytes", format::MAX_TARGET_LEN);
                }
                entry.kind = Kind::Symlink { target };
                self.push(path, entry);
            }
        }
        Ok(())
    }

    /// Visits the children of directory entry `me` (open as `dir`), in sorted order.
    fn visit_children(
        &mut self,
        dir: &OwnedFd,
        path: &Utf8Path,
        children: Vec<String>,
        me: u32,
        depth: u32,
    ) -> Result<()> {
        for child_name in children {
            let child_path = path.join(&child_name);
            let child_meta =
                match Meta::of(rustix::fs::statat(dir, child_name.as_str(), AtFlags::SYMLINK_NOFOLLOW)) {
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
            })?;
        }
        Ok(())
    }

    fn push(&mut self, path: &Utf8Path, entry: Entry) {
        self.console.path(|| path);
        Counters::add(&self.counters.entries, 1);
        self.entries.push(entry);
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

    /// Reads a file into the data stream and returns how many bytes went in. Reads one byte
    /// past the expected size to notice a file that grew; the extra byte is dropped.
    fn read_file(&mut self, path: &Utf8Path, mut file: File, listed: &Meta) -> Result<u64> {
        let expected = listed.size;
        let mut done: u64 = 0;
        loop {
            if self.block.len() == self.settings.block_size {
                self.flush()?;
            }
            let room = (self.settings.block_size - self.block.len()) as u64;
            let want = room.min(expected + 1 - done);
            let before = self.block.len();
            let read = (&mut file).take(want).read_to_end(&mut self.block);
            let got = (self.block.len() - before) as u64;
            done += got;
            self.offset += got;
            Counters::add(&self.counters.data, got);
            if let Err(e) = read {
                let error = anyhow::Error::new(e).context(format!("reading {path}"));
                if !self.settings.ignore_failed_read {
                    return Err(error);
                }
                // Bytes already read may sit in blocks that are gone: keep what was read.
                self.console.warn(format!("{error:#} (archived only its first {done} of {expected} bytes)"));
                return Ok(done);
            }
            if done > expected {
                self.block.pop();
                self.offset -= 1;
                self.console.warn(format!(
                    "reading {path}: file grew while it was read (archived its first {expected} bytes)"
                ));
                return Ok(expected);
            }
            if got < want {
                if done < expected {
                    self.console.warn(format!(
                        "reading {path}: file shrank while it was read (archived {done} of {expected} bytes)"
                    ));
                } else if Meta::of(rustix::fs::fstat(&file)).is_ok_and(|now| listed.changed_since(&now)) {
                    // Rewritten in place, same size: the bytes stored may mix old and new, as
                    // GNU tar warns ("file changed as we read it").
                    self.console.warn(format!("reading {path}: file changed while it was read"));
                }
                return Ok(done);
            }
        }
    }

    /// Hands the current block on.
    fn flush(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.failure.check()?;
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(self.settings.block_size));
        (self.send_block)(data)
    }
}

/// An entry found by the walker, on its way to being visited.
struct Found<'p> {
    place: Place<'p>,
    /// Its path on the filesystem, for messages.
    path: &'p Utf8Path,
    name: String,
    parent: Option<u32>,
    depth: u32,
    meta: Meta,
}

const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Where an entry is found: a top-level input, opened by its path (following a symlink), or
/// a name inside a directory the walker holds open. Working from directory handles keeps
/// every lookup one component long, so trees deeper than PATH_MAX are archived too.
#[derive(Clone, Copy)]
enum Place<'a> {
    Root(&'a Utf8Path),
    In(BorrowedFd<'a>),
}

impl Place<'_> {
    /// Opens the entry: `name` inside the directory, or the root by `path`.
    fn open(self, name: &str, flags: OFlags) -> std::io::Result<OwnedFd> {
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
    size: u64,
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
            size: stat.st_size.max(0) as u64,
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
}

/// Names in a directory, sorted by bytes; `Err(name)` for the first name that is not UTF-8.
fn list_dir(dir: &OwnedFd) -> std::io::Result<std::result::Result<Vec<String>, Vec<u8>>> {
    let mut names = Vec::new();
    for item in rustix::fs::Dir::read_from(dir)? {
        let item = item?;
        let name = item.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        match String::from_utf8(name.to_vec()) {
            Ok(name) => names.push(name),
            Err(raw) => return Ok(Err(raw.into_bytes())),
        }
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(Ok(names))
}

fn read_error(error: std::io::Error, path: &Utf8Path) -> anyhow::Error {
    anyhow::Error::new(error).context(format!("reading {path}"))
}
