//! The FUSE side of a mount: the kernel's requests answered from the [`View`].
//!
//! Invariants:
//! - metadata (lookup, getattr, readdir, readlink, xattrs, statfs) is answered on the
//!   session's thread from memory, at once; reads, which may decompress a block, go to a pool
//!   of worker threads over a bounded channel, so one slow block never stalls a `stat`;
//! - nothing is ever written: every request that would change something is refused by the
//!   kernel (the mount is read-only) or here (EROFS);
//! - what cannot change is cached by the kernel for as long as it likes: entries and
//!   attributes for a day, and the page cache is kept when a file is opened again.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{
    consts, KernelConfig, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

use super::cache::Cache;
use super::view::View;
use super::Log;

/// How long the kernel may keep entries and attributes: nothing in an archive changes.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// When the mount was last asked anything: what `--idle-exit` watches (files still open
/// keep the mount busy, and unmounting then fails until they are closed).
pub struct Activity {
    start: Instant,
    last: AtomicU64,
}

impl Activity {
    pub fn new() -> Activity {
        Activity { start: Instant::now(), last: AtomicU64::new(0) }
    }

    fn touch(&self) {
        self.last.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The time since the last request.
    pub fn idle(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// A read for a worker, or a block to decompress ahead of the reads that will want it.
pub enum Job {
    Read {
        ino: u64,
        offset: u64,
        len: u32,
        reply: ReplyData,
    },
    Ahead(usize),
    /// The mount has ended: the worker that takes this stops.
    Stop,
}

pub struct Fs {
    pub view: Arc<View>,
    pub cache: Arc<Cache>,
    /// Where reads go to wait for a worker.
    pub jobs: SyncSender<Job>,
    pub activity: Arc<Activity>,
    pub log: Arc<Log>,
    /// `--debug`: every request logged.
    pub debug: bool,
}

impl Fs {
    fn seen(&self, what: impl FnOnce() -> String) {
        self.activity.touch();
        if self.debug {
            self.log.line(&format!("arc: mount: {}", what()));
        }
    }
}

/// Serves the reads of `jobs` until the channel closes. After a read that reaches the last
/// quarter of a block, the next block is queued to be decompressed ahead (when the queue has
/// room: read-ahead never waits).
/// With `--debug`, each block decompressed ahead is logged to `trace`.
pub fn worker(
    view: &View,
    cache: &Cache,
    jobs: &Mutex<Receiver<Job>>,
    ahead: &SyncSender<Job>,
    trace: Option<&Log>,
) {
    loop {
        let job = match jobs.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        match job {
            Job::Stop => return,
            Job::Ahead(b) => {
                if let Some(log) = trace {
                    log.line(&format!("arc: mount: read-ahead of block {b}"));
                }
                // Its errors are said when it is decompressed, and again to the read that
                // wants it.
                let _ = cache.block(view, b, usize::MAX);
            }
            Job::Read { ino, offset, len, reply } => {
                let Some((i, size)) = view.file(ino) else {
                    reply.error(libc::EINVAL);
                    continue;
                };
                match view.read(i, size, offset, len, |b, wanted| cache.block(view, b, wanted).map(Some)) {
                    Ok(Some(bytes)) => {
                        reply.data(&bytes);
                        read_ahead(view, cache, i, offset + bytes.len() as u64, ahead);
                    }
                    Ok(None) | Err(_) => reply.error(libc::EIO),
                }
            }
        }
    }
}

/// After a read of file `i` that ended at byte `end` of its stored bytes, queues what the next
/// reads will want and is not cached: the block holding byte `end`, and the one after it too
/// once `end` is in the last quarter of its block. Called after every read served, from the
/// cache or by a worker; the queue is never waited for.
fn read_ahead(view: &View, cache: &Cache, i: usize, end: u64, ahead: &SyncSender<Job>) {
    let index = &view.archive.index;
    let Some((at, stored)) = index.span(i) else { return };
    if index.extents(i).is_some() || end >= stored {
        return;
    }
    let Some(b) = index.blocks_for(at + end, 1).next() else { return };
    let block = index.blocks[b];
    let late = (at + end - block.raw_offset) * 4 >= block.raw_len * 3;
    let wanted = [Some(b), late.then_some(b + 1)];
    for next in wanted.into_iter().flatten().filter(|&n| n < index.blocks.len() && !cache.has(n)) {
        match ahead.try_send(Job::Ahead(next)) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Fs {
    /// Directory `ino`'s listing from `offset` on: `.`, `..`, then its entries in archive
    /// order, each with the offset that comes after it (the kernel asks again from there).
    fn listed(&self, ino: u64, offset: i64) -> Option<impl Iterator<Item = (i64, u64, &[u8])> + '_> {
        let children = self.view.children(ino)?;
        let dots = [(ino, &b"."[..]), (self.view.parent(ino), &b".."[..])];
        let entries = children.iter().map(|&c| (self.view.ino(c as usize), self.view.name(c as usize)));
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        Some(
            dots.into_iter()
                .chain(entries)
                .enumerate()
                .skip(skip)
                .map(|(n, (ino, name))| (n as i64 + 1, ino, name)),
        )
    }
}

impl fuser::Filesystem for Fs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        // Symlinks never change; the kernel may look up a directory's entries in parallel.
        let _ = config.add_capabilities(consts::FUSE_CACHE_SYMLINKS | consts::FUSE_PARALLEL_DIROPS);
        // A listing brings its entries' attributes: a walk then needs no lookup per name.
        let _ = config.add_capabilities(consts::FUSE_DO_READDIRPLUS);
        // As much read-ahead as the kernel allows.
        if let Err(max) = config.set_max_readahead(1 << 20) {
            let _ = config.set_max_readahead(max);
        }
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        self.seen(|| format!("lookup {parent} {:?}", name));
        match self.view.lookup(parent, name.as_bytes()).and_then(|i| self.view.attr(self.view.ino(i))) {
            Some(attr) => reply.entry(&TTL, &attr, 0),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        self.seen(|| format!("getattr {ino}"));
        match self.view.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(libc::ENOENT),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        self.seen(|| format!("readlink {ino}"));
        match self.view.target(ino) {
            Some(target) => reply.data(target),
            None => reply.error(libc::EINVAL),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        // ENOSYS: the kernel opens and releases files itself from now on (FUSE 7.23's "no
        // open"), keeping their page cache: two round trips fewer for every file read.
        self.seen(|| format!("open {ino}"));
        reply.error(libc::ENOSYS);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        len: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        self.seen(|| format!("read {ino} {offset} {len}"));
        let Ok(offset) = u64::try_from(offset) else { return reply.error(libc::EINVAL) };
        // Bytes that are in the cache are copied here, at once; only a read that needs a
        // block decompressed waits for a worker.
        if let Some((i, size)) = self.view.file(ino) {
            if let Ok(Some(bytes)) = self.view.read(i, size, offset, len, |b, _| Ok(self.cache.cached(b))) {
                reply.data(&bytes);
                read_ahead(&self.view, &self.cache, i, offset + bytes.len() as u64, &self.jobs);
                return;
            }
        }
        if let Err(e) = self.jobs.send(Job::Read { ino, offset, len, reply }) {
            // The workers are gone: only when the mount is ending.
            if let Job::Read { reply, .. } = e.0 {
                reply.error(libc::EIO);
            }
        }
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        // Likewise for directories (FUSE 7.29), whose listings the kernel then caches.
        self.seen(|| format!("opendir {ino}"));
        reply.error(libc::ENOSYS);
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        self.seen(|| format!("readdir {ino} {offset}"));
        let Some(listed) = self.listed(ino, offset) else { return reply.error(libc::ENOTDIR) };
        for (next, child_ino, name) in listed {
            let kind = self.view.kind_of(child_ino).unwrap_or(fuser::FileType::RegularFile);
            if reply.add(child_ino, next, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.seen(|| format!("readdirplus {ino} {offset}"));
        let Some(listed) = self.listed(ino, offset) else { return reply.error(libc::ENOTDIR) };
        for (next, child_ino, name) in listed {
            let Some(attr) = self.view.attr(child_ino) else { continue };
            if reply.add(child_ino, next, OsStr::from_bytes(name), &TTL, &attr, 0) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        self.seen(|| "statfs".to_owned());
        let (blocks, files) = self.view.totals();
        let bsize = self.view.block_size();
        reply.statfs(blocks, 0, 0, files, 0, bsize, 255, bsize);
    }

    fn getxattr(&mut self, _req: &Request<'_>, ino: u64, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.seen(|| format!("getxattr {ino} {name:?}"));
        if self.view.kind_of(ino).is_none() {
            return reply.error(libc::ENOENT);
        }
        match self.view.xattrs(ino).find(|(n, _)| *n == name.as_bytes()) {
            None => reply.error(libc::ENODATA),
            Some((_, value)) => xattr_reply(value, size, reply),
        }
    }

    fn listxattr(&mut self, _req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        self.seen(|| format!("listxattr {ino}"));
        if self.view.kind_of(ino).is_none() {
            return reply.error(libc::ENOENT);
        }
        let mut names = Vec::new();
        for (name, _) in self.view.xattrs(ino) {
            names.extend_from_slice(name);
            names.push(0);
        }
        xattr_reply(&names, size, reply);
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, mask: i32, reply: ReplyEmpty) {
        self.seen(|| format!("access {ino} {mask:#o}"));
        // The kernel checks the modes (default_permissions); writing is refused here too.
        match self.view.kind_of(ino) {
            None => reply.error(libc::ENOENT),
            Some(_) if mask & libc::W_OK != 0 => reply.error(libc::EROFS),
            Some(_) => reply.ok(),
        }
    }

    fn lseek(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, whence: i32, reply: ReplyLseek) {
        self.seen(|| format!("lseek {ino} {offset} {whence}"));
        let Some((i, size)) = self.view.file(ino) else { return reply.error(libc::EINVAL) };
        let Ok(offset) = u64::try_from(offset) else { return reply.error(libc::ENXIO) };
        let data = match whence {
            libc::SEEK_DATA => true,
            libc::SEEK_HOLE => false,
            _ => return reply.error(libc::EINVAL),
        };
        match self.view.seek(i, size, offset, data) {
            Some(at) => reply.offset(at as i64),
            None => reply.error(libc::ENXIO),
        }
    }
}

/// An attribute's value, or the list of names: its size when asked for 0 bytes, ERANGE when
/// it does not fit what was asked for.
fn xattr_reply(bytes: &[u8], size: u32, reply: ReplyXattr) {
    if size == 0 {
        reply.size(bytes.len() as u32);
    } else if bytes.len() > size as usize {
        reply.error(libc::ERANGE);
    } else {
        reply.data(bytes);
    }
}

/// The cache a mount of `view` uses, reporting failed blocks to `log`.
/// `threads` workers decompress blocks.
pub fn cache_for(view: &View, budget: u64, threads: usize, log: &Arc<Log>) -> Arc<Cache> {
    let log = Arc::clone(log);
    let largest = view.archive.index.blocks.iter().map(|b| b.raw_len).max().unwrap_or(0);
    let report = move |message: &str| log.line(&format!("arc: error: {message}"));
    Arc::new(Cache::new(budget, largest, threads, report))
}
