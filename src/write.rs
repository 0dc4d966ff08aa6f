//! `arc write`: the threaded pipeline that turns directory trees into an archive.
//!
//! ```text
//!  walker ──Job{block, reply}──▶ compressor × N ──reply (one-shot)──┐
//!     │                                                             ▼
//!     └──────────── reply receivers, in block order ──────────▶ writer ──▶ OUT (temp file)
//!  progress thread: reads Counters, draws stderr
//! ```
//!
//! The walker (see [`crate::walk`]) visits entries in sorted order and packs file contents into
//! blocks of [`format::BLOCK_SIZE`] (or `--block-size`); each block goes to the compressor pool together with a one-shot
//! reply channel, whose receiving end goes, in block order, to the writer. The writer therefore
//! writes blocks in order without a reorder buffer, and the number of blocks in flight is
//! bounded by the channel capacities, which bounds memory.
//!
//! Invariants:
//! - the archive is the same bytes for the same tree and level, whatever `-j` is: blocks are
//!   cut by the walker alone and each is compressed independently;
//! - a failing stage records its error and drops its channel ends; every other stage then sees
//!   a closed channel and stops, and the first recorded error is the one reported;
//! - OUT is written under a temporary name beside it and renamed only after the trailer is
//!   written, so a failed or interrupted write leaves an existing OUT untouched.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::format;
use crate::index::{Block, Index};
use crate::stop::{Failure, Stop};
use crate::ui::{Console, Counters};
use crate::walk::{self, Walker};
use crate::Outcome;

#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub output: Utf8PathBuf,
    pub inputs: Vec<Utf8PathBuf>,
    pub level: i32,
    /// Uncompressed bytes per block ([`format::BLOCK_SIZE`] by default).
    pub block_size: usize,
    pub threads: usize,
    pub verbose: bool,
    pub quiet: bool,
    pub ignore_failed_read: bool,
}

/// A block of the data stream on its way to a compressor.
pub struct Job {
    pub data: Vec<u8>,
    pub reply: SyncSender<Result<Frame>>,
}

/// A compressed block on its way to the writer.
pub struct Frame {
    bytes: Vec<u8>,
    raw_len: u64,
}

pub fn run(options: &WriteOptions, stop: &Stop) -> Result<Outcome> {
    let roots = walk::roots(&options.inputs)?;
    // The walker holds a handle per directory level of the deepest path.
    crate::dest::raise_fd_limit();
    let mut console = Console::new(options.quiet, options.verbose);
    if options.output.as_str() == "-" {
        console = console.paths_on_stderr();
    }
    let mut sink = Sink::open(&options.output)?;
    // Never archive the archive: leave out the file being written, and an old OUT if it is
    // inside the tree.
    let mut skip = vec![sink.identity()?];
    if let Ok(meta) = std::fs::metadata(&options.output) {
        skip.push((meta.dev(), meta.ino()));
    }

    let index = pipeline(options, &roots, &console, stop, &mut sink, skip)?;
    // Never make an archive that read would refuse.
    for (count, what, hint) in
        [(index.blocks.len(), "blocks", "; use a larger --block-size"), (index.entries.len(), "entries", "")]
    {
        if count > format::MAX_ENTRIES {
            let max = format::MAX_ENTRIES;
            bail!(
                "writing {}: {count} {what} is more than an archive may hold ({max}){hint}",
                options.output
            );
        }
    }
    let record = index.into_record();
    let (frame, raw_len) = format::encode_index(&record, options.level)
        .with_context(|| format!("writing {}", options.output))?;
    let too_repetitive =
        raw_len > format::INDEX_RATIO_FLOOR && raw_len / frame.len() as u64 > format::MAX_INDEX_RATIO;
    if frame.len() as u64 > format::MAX_INDEX_LEN || raw_len > format::MAX_INDEX_RAW || too_repetitive {
        bail!("writing {}: the index is larger than an archive may hold", options.output);
    }
    let trailer = format::Trailer::new(&frame, raw_len);
    sink.write_all(&frame)
        .and_then(|()| sink.write_all(&trailer.encode()))
        .with_context(|| format!("writing {}", options.output))?;
    stop.check()?;
    sink.finish().with_context(|| format!("writing {}", options.output))?;
    Ok(if console.warned() { Outcome::Warnings } else { Outcome::Clean })
}

/// Runs walker, compressors, writer and progress in one scope; returns the finished index
/// (entries from the walker, block table from the writer).
fn pipeline(
    options: &WriteOptions,
    roots: &[walk::Root],
    console: &Console,
    stop: &Stop,
    sink: &mut Sink,
    skip: Vec<(u64, u64)>,
) -> Result<Index> {
    let threads = options.threads.max(1);
    let counters = Counters::default();
    let failure = Failure::new(stop);
    let (job_tx, job_rx) = sync_channel::<Job>(threads);
    let (order_tx, order_rx) = sync_channel::<Receiver<Result<Frame>>>(threads + 2);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = sync_channel::<()>(1);

    let (entries, blocks) = thread::scope(|scope| {
        scope.spawn(|| crate::ui::progress(console, &counters, "wrote", done_rx));
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let level = options.level;
            let failure = &failure;
            scope.spawn(move || compressor(&job_rx, level, failure));
        }
        drop(job_rx);
        let walker = scope.spawn(|| {
            let walker = Walker::new(options, console, &counters, &failure, skip, job_tx, order_tx);
            walker.walk(roots).map_err(|e| failure.record(e)).ok()
        });
        let blocks = writer(sink, order_rx, &counters, &failure).map_err(|e| failure.record(e)).ok();
        let entries = walker.join().unwrap_or_else(|_| {
            failure.record(anyhow!("the walker thread panicked"));
            None
        });
        if entries.is_some() && blocks.is_some() {
            let _ = done_tx.send(());
        }
        drop(done_tx);
        (entries, blocks)
    });
    failure.take()?;
    match (entries, blocks) {
        (Some(entries), Some(blocks)) => Ok(Index { entries, blocks }),
        _ => bail!("the pipeline stopped without saying why"),
    }
}

/// One compressor: takes blocks off the shared queue until the walker closes it.
fn compressor(jobs: &Mutex<Receiver<Job>>, level: i32, failure: &Failure) {
    let mut zstd = None;
    loop {
        // After a failure or a signal, queued blocks are dropped rather than compressed, so
        // that Ctrl-C takes effect within one block even at level 22.
        if failure.check().is_err() {
            return;
        }
        // Hold the lock only to take a job, not while compressing.
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let raw_len = job.data.len() as u64;
        let result = compress(&mut zstd, level, &job.data).map(|bytes| Frame { bytes, raw_len });
        drop(job.data);
        // The writer may have stopped; then nobody wants the result.
        let _ = job.reply.send(result);
    }
}

fn compress(zstd: &mut Option<zstd::bulk::Compressor<'static>>, level: i32, data: &[u8]) -> Result<Vec<u8>> {
    if zstd.is_none() {
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        compressor.include_checksum(true)?;
        compressor.include_contentsize(true)?;
        *zstd = Some(compressor);
    }
    let compressor = zstd.as_mut().ok_or_else(|| anyhow!("no compressor"))?;
    Ok(compressor.compress(data)?)
}

/// The writer: receives blocks in order, appends them to OUT and builds the block table.
fn writer(
    sink: &mut Sink,
    order: Receiver<Receiver<Result<Frame>>>,
    counters: &Counters,
    failure: &Failure,
) -> Result<Vec<Block>> {
    sink.write_all(&format::encode_header()).with_context(|| format!("writing {}", sink.path))?;
    let mut blocks = Vec::new();
    let mut offset = format::HEADER_LEN;
    let mut raw_offset = 0;
    for reply in order {
        failure.check()?;
        let Frame { bytes: frame, raw_len } = match reply.recv() {
            Ok(result) => result.context("compressing")?,
            Err(_) => {
                // Compressors leave when the run is stopping; otherwise this is a bug.
                failure.check()?;
                bail!("a compressor thread stopped unexpectedly")
            }
        };
        sink.write_all(&frame).with_context(|| format!("writing {}", sink.path))?;
        let len = frame.len() as u64;
        blocks.push(Block { offset, len, raw_offset, raw_len, hash: format::block_hash(&frame) });
        offset += len;
        raw_offset += raw_len;
        Counters::add(&counters.bytes_out, len);
    }
    Ok(blocks)
}

/// Where the archive goes: a temporary file renamed over OUT on success, or, when OUT is a
/// device, a pipe or `-`, OUT itself, written in place.
struct Sink {
    path: Utf8PathBuf,
    target: SinkTarget,
    /// An archive is there already: make the new one durable before it replaces the old.
    replaces: bool,
}

enum SinkTarget {
    /// The temporary file (removed when dropped unless persisted) and a buffered writer on a
    /// duplicate of its descriptor: writing through `NamedTempFile` itself would append its
    /// temporary path to every I/O error, which users should not see.
    Temp(tempfile::NamedTempFile, std::io::BufWriter<File>),
    InPlace(std::io::BufWriter<File>),
    Stdout(std::io::Stdout),
}

impl Sink {
    fn open(path: &Utf8Path) -> Result<Sink> {
        if path.as_str() == "-" {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                bail!("writing -: refusing to write an archive to a terminal (redirect stdout)");
            }
            return Ok(Sink {
                path: path.to_owned(),
                target: SinkTarget::Stdout(std::io::stdout()),
                replaces: false,
            });
        }
        // OUT that is a symlink: replace the file it points at, as `tar -f` would write
        // through it, rather than replacing the link with a regular file.
        let resolved;
        let path = match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_symlink() => {
                resolved = path.canonicalize_utf8().with_context(|| format!("resolving {path}"))?;
                resolved.as_path()
            }
            _ => path,
        };
        let special = std::fs::metadata(path).map(|m| {
            let t = m.file_type();
            t.is_char_device() || t.is_block_device() || t.is_fifo() || t.is_socket()
        });
        if let Ok(true) = special {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {path}"))?;
            return Ok(Sink {
                path: path.to_owned(),
                target: SinkTarget::InPlace(std::io::BufWriter::new(file)),
                replaces: false,
            });
        }
        if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
            bail!("writing {path}: is a directory");
        }
        let dir = match path.parent() {
            Some(p) if !p.as_str().is_empty() => p,
            _ => Utf8Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".arc-")
            .suffix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(dir)
            .map_err(plain_io_error)
            .with_context(|| format!("writing {path}: creating a temporary file in {dir}"))?;
        let file = temp.as_file().try_clone().with_context(|| format!("writing {path}"))?;
        let writer = std::io::BufWriter::with_capacity(1 << 20, file);
        let replaces = std::fs::symlink_metadata(path).is_ok();
        Ok(Sink { path: path.to_owned(), target: SinkTarget::Temp(temp, writer), replaces })
    }

    /// (device, inode) of the file being written, so the walker can leave it out.
    fn identity(&self) -> Result<(u64, u64)> {
        let meta = match &self.target {
            SinkTarget::Temp(temp, _) => temp.as_file().metadata()?,
            SinkTarget::InPlace(w) => w.get_ref().metadata()?,
            // stdout redirected into a file inside the tree must not be archived either.
            #[allow(clippy::unnecessary_cast)]
            SinkTarget::Stdout(out) => match rustix::fs::fstat(out) {
                Ok(stat) => return Ok((stat.st_dev as u64, stat.st_ino as u64)),
                Err(_) => return Ok((u64::MAX, u64::MAX)),
            },
        };
        Ok((meta.dev(), meta.ino()))
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.target {
            SinkTarget::Temp(_, w) => w.write_all(bytes),
            SinkTarget::InPlace(w) => w.write_all(bytes),
            SinkTarget::Stdout(w) => w.write_all(bytes),
        }
    }

    /// Flushes and puts the archive under its final name.
    fn finish(self) -> Result<()> {
        match self.target {
            SinkTarget::Temp(temp, w) => {
                w.into_inner().map_err(|e| e.into_error())?;
                if self.replaces {
                    // Without this, a crash soon after the rename could leave an empty file
                    // where the old archive was.
                    temp.as_file().sync_all()?;
                }
                temp.persist(&self.path).map_err(|e| plain_io_error(e.error))?;
            }
            SinkTarget::InPlace(mut w) => w.flush()?,
            SinkTarget::Stdout(mut w) => w.flush()?,
        }
        Ok(())
    }
}

/// The OS error alone, without the temporary path tempfile appends to its errors; arc's
/// context names the archive instead.
fn plain_io_error(error: std::io::Error) -> std::io::Error {
    if let Some(code) = error.raw_os_error() {
        return std::io::Error::from_raw_os_error(code);
    }
    // tempfile wraps the OS error in a private type whose message ends in ` at path "..."`
    // and which does not expose the OS error itself; keep the message up to there.
    let message = error.to_string();
    match message.rsplit_once(" at path ") {
        Some((cause, _)) => std::io::Error::new(error.kind(), cause.to_owned()),
        None => error,
    }
}
