//! The walker stage of `arc write`: visits the input trees in sorted order, records one index
//! entry per directory, file and symlink, and packs file contents into blocks.
//!
//! Invariants:
//! - entries are produced in pre-order with siblings sorted by name bytes, which is the order
//!   the index stores and the order file bytes take in the data stream;
//! - a file is read in bounded chunks straight into the current block, never whole;
//! - the size recorded for a file is the number of bytes that went into the stream, even when
//!   the file changed while it was read (that is a warning), so the archive stays consistent;
//! - symlinks are recorded as links and never followed; only the top-level inputs are.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::format::{self, BLOCK_SIZE};
use crate::index::{Entry, Kind, Mtime};
use crate::stop::{Failure, Stopped};
use crate::ui::{Console, Counters};
use crate::write::{Frame, Job, WriteOptions};

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

pub struct Walker<'a> {
    options: &'a WriteOptions,
    console: &'a Console,
    counters: &'a Counters,
    failure: &'a Failure<'a>,
    /// (device, inode) of files never to archive: the archive being written.
    skip: Vec<(u64, u64)>,
    jobs: SyncSender<Job>,
    order: SyncSender<Receiver<Result<Frame>>>,
    block: Vec<u8>,
    entries: Vec<Entry>,
    /// Next byte's offset in the data stream.
    offset: u64,
}

impl<'a> Walker<'a> {
    pub fn new(
        options: &'a WriteOptions,
        console: &'a Console,
        counters: &'a Counters,
        failure: &'a Failure<'a>,
        skip: Vec<(u64, u64)>,
        jobs: SyncSender<Job>,
        order: SyncSender<Receiver<Result<Frame>>>,
    ) -> Walker<'a> {
        Walker {
            options,
            console,
            counters,
            failure,
            skip,
            jobs,
            order,
            block: Vec::with_capacity(BLOCK_SIZE),
            entries: Vec::new(),
            offset: 0,
        }
    }

    pub fn walk(mut self, roots: &[Root]) -> Result<Vec<Entry>> {
        for root in roots {
            let meta = fs::metadata(&root.path).with_context(|| format!("reading {}", root.path))?;
            if self.skip.contains(&(meta.dev(), meta.ino())) {
                bail!("reading {}: this is the archive being written", root.path);
            }
            self.visit(&root.path, root.name.clone(), None, 0, &meta)?;
        }
        self.flush()?;
        Ok(self.entries)
    }

    fn visit(
        &mut self,
        path: &Utf8Path,
        name: String,
        parent: Option<u32>,
        depth: u32,
        meta: &fs::Metadata,
    ) -> Result<()> {
        self.failure.check()?;
        if depth > format::MAX_DEPTH {
            bail!("reading {path}: nested deeper than {} directories", format::MAX_DEPTH);
        }
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_file() {
            if self.skip.contains(&(meta.dev(), meta.ino())) {
                return Ok(());
            }
            Kind::File
        } else if file_type.is_symlink() {
            Kind::Symlink
        } else {
            let what = if file_type.is_socket() {
                "socket"
            } else if file_type.is_fifo() {
                "FIFO"
            } else {
                "device file"
            };
            self.console.warn(format!("skipping {what} {path}"));
            return Ok(());
        };
        let mut entry = Entry {
            name,
            parent,
            depth,
            kind,
            mode: (meta.mode() & 0o7777) as u16,
            mtime: Mtime { secs: meta.mtime(), nanos: meta.mtime_nsec().clamp(0, 999_999_999) as u32 },
            size: 0,
            offset: self.offset,
            target: None,
        };
        match kind {
            Kind::Dir => {
                // Read the listing first so an unreadable directory can be left out whole.
                let children = match self.list_dir(path) {
                    Ok(children) => children,
                    Err(e) => return self.failed_read(e),
                };
                let me = self.entries.len() as u32;
                self.push(path, entry);
                for (child_name, child_path) in children {
                    let child_meta = match fs::symlink_metadata(&child_path) {
                        Ok(m) => m,
                        // Gone since the listing: nothing to archive, as with tar.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            self.failed_read(anyhow::Error::new(e).context(format!("reading {child_path}")))?;
                            continue;
                        }
                    };
                    self.visit(&child_path, child_name, Some(me), depth + 1, &child_meta)?;
                }
            }
            Kind::File => {
                let file = match open_nofollow(path) {
                    Ok(f) => f,
                    Err(e) => {
                        return self.failed_read(anyhow::Error::new(e).context(format!("reading {path}")))
                    }
                };
                entry.size = self.read_file(path, file, meta.len())?;
                self.push(path, entry);
            }
            Kind::Symlink => {
                let target = fs::read_link(path).with_context(|| format!("reading {path}"))?;
                let target = target
                    .into_os_string()
                    .into_string()
                    .map_err(|t| anyhow!("reading {path}: symlink target {t:?} is not UTF-8"))?;
                if target.len() > format::MAX_TARGET_LEN {
                    bail!("reading {path}: symlink target longer than {} bytes", format::MAX_TARGET_LEN);
                }
                entry.target = Some(target);
                self.push(path, entry);
            }
        }
        Ok(())
    }

    fn push(&mut self, path: &Utf8Path, entry: Entry) {
        self.console.path(|| path);
        Counters::add(&self.counters.entries, 1);
        self.entries.push(entry);
    }

    /// Children of a directory, sorted by name bytes, as (name, path).
    fn list_dir(&self, dir: &Utf8Path) -> Result<Vec<(String, Utf8PathBuf)>> {
        let mut names = Vec::new();
        for item in fs::read_dir(dir).with_context(|| format!("reading {dir}"))? {
            let item = item.with_context(|| format!("reading {dir}"))?;
            let name = item.file_name().into_string().map_err(|raw| {
                anyhow!(
                    "reading {}: file name is not UTF-8 (arc stores names as UTF-8)",
                    dir.as_std_path().join(raw).display()
                )
            })?;
            if name.len() > format::MAX_NAME_LEN {
                bail!("reading {dir}/{name}: name longer than {} bytes", format::MAX_NAME_LEN);
            }
            names.push(name);
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(names.into_iter().map(|name| (name.clone(), dir.join(name))).collect())
    }

    /// An entry could not be read: an error, or with `--ignore-failed-read` a warning and the
    /// entry left out.
    fn failed_read(&self, error: anyhow::Error) -> Result<()> {
        if self.options.ignore_failed_read && !error.is::<Stopped>() {
            self.console.warn(format!("{error:#} (left out)"));
            Ok(())
        } else {
            Err(error)
        }
    }

    /// Reads a file into the data stream and returns how many bytes went in. Reads one byte
    /// past the expected size to notice a file that grew; the extra byte is dropped.
    fn read_file(&mut self, path: &Utf8Path, mut file: File, expected: u64) -> Result<u64> {
        let mut done: u64 = 0;
        loop {
            if self.block.len() == BLOCK_SIZE {
                self.flush()?;
            }
            let room = (BLOCK_SIZE - self.block.len()) as u64;
            let want = room.min(expected + 1 - done);
            let before = self.block.len();
            let read = (&mut file).take(want).read_to_end(&mut self.block);
            let got = (self.block.len() - before) as u64;
            done += got;
            self.offset += got;
            Counters::add(&self.counters.bytes_in, got);
            if let Err(e) = read {
                let error = anyhow::Error::new(e).context(format!("reading {path}"));
                self.failed_read(error)?;
                return Ok(done);
            }
            if done > expected {
                self.block.pop();
                self.offset -= 1;
                self.console.warn(format!(
                    "{path}: file grew while it was read; archived its first {expected} bytes"
                ));
                return Ok(expected);
            }
            if got < want {
                if done < expected {
                    self.console.warn(format!(
                        "{path}: file shrank while it was read; archived {done} of {expected} bytes"
                    ));
                }
                return Ok(done);
            }
        }
    }

    /// Sends the current block to the compressors, and its reply channel to the writer.
    fn flush(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.failure.check()?;
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let (reply, receiver) = sync_channel(1);
        self.order.send(receiver).map_err(|_| Stopped)?;
        self.jobs.send(Job { data, reply }).map_err(|_| Stopped)?;
        Ok(())
    }
}

fn open_nofollow(path: &Utf8Path) -> std::io::Result<File> {
    // O_NOFOLLOW: if the file was replaced by a symlink since it was listed, fail rather than
    // archive whatever the link points at.
    File::options().read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32).open(path)
}
