//! The threads and channels of `arc write`, and the block-ordering protocol between them.
//!
//! The walker hands each block to [`send_block`], which gives it to the compressor pool with
//! a one-shot reply channel and gives the receiving end of that channel, in block order, to
//! the writer. The writer therefore writes blocks in order without a reorder buffer, and the
//! channel capacities bound the blocks in flight (at most `j + 3`), which bounds memory.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{anyhow, bail, Context, Result};

use super::sink::Sink;
use super::walk::{Root, Settings, Walker};
use super::WriteOptions;
use crate::format::{self, Block, Index};
use crate::stop::{Failure, Stop, Stopped};
use crate::ui::{Console, Counters};

/// A block of the data stream on its way to a compressor.
struct Job {
    data: Vec<u8>,
    reply: SyncSender<Result<Frame>>,
}

/// A compressed block on its way to the writer.
struct Frame {
    bytes: Vec<u8>,
    raw_len: u64,
}

/// Runs walker, compressors and writer in one scope; returns the finished index (entries from
/// the walker, block table from the writer).
pub(super) fn run(
    settings: &Settings,
    options: &WriteOptions,
    roots: &[Root],
    console: &Console,
    counters: &Counters,
    stop: &Stop,
    sink: &mut Sink,
) -> Result<Index> {
    let threads = options.threads.max(1);
    let failure = Failure::new(stop);
    let (job_tx, job_rx) = sync_channel::<Job>(threads);
    let (order_tx, order_rx) = sync_channel::<Receiver<Result<Frame>>>(threads + 2);
    let job_rx = Arc::new(Mutex::new(job_rx));

    let (entries, blocks) = thread::scope(|scope| {
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let level = options.level;
            let failure = &failure;
            scope.spawn(move || compressor(&job_rx, level, failure));
        }
        drop(job_rx);
        let walker = scope.spawn(|| {
            // The closure owns the senders: when the walker is done, they drop and the
            // compressors and the writer see their channels close.
            let send = move |data| send_block(&job_tx, &order_tx, data);
            Walker::new(settings, console, counters, &failure, send)
                .and_then(|walker| walker.walk(roots))
                .map_err(|e| failure.record(e))
                .ok()
        });
        let blocks = writer(sink, order_rx, counters, &failure).map_err(|e| failure.record(e)).ok();
        let entries = walker.join().unwrap_or_else(|_| {
            failure.record(anyhow!("the walker thread panicked"));
            None
        });
        (entries, blocks)
    });
    failure.take()?;
    match (entries, blocks) {
        (Some((entries, names, targets, tables)), Some(blocks)) => {
            Ok(Index::from_parts(entries, names, targets, blocks, tables))
        }
        _ => bail!("the pipeline stopped without saying why"),
    }
}

/// Sends a block to the compressors, and its reply channel to the writer, in that order of
/// blocks.
fn send_block(
    jobs: &SyncSender<Job>,
    order: &SyncSender<Receiver<Result<Frame>>>,
    data: Vec<u8>,
) -> Result<()> {
    let (reply, receiver) = sync_channel(1);
    order.send(receiver).map_err(|_| Stopped)?;
    jobs.send(Job { data, reply }).map_err(|_| Stopped)?;
    Ok(())
}

/// One compressor: takes blocks off the shared queue until the walker closes it.
fn compressor(jobs: &Mutex<Receiver<Job>>, level: i32, failure: &Failure) {
    let mut zstd = None;
    loop {
        // After a failure or a signal, queued blocks are dropped rather than compressed, so
        // that Ctrl-C takes effect within one block even at level 22.
        if failure.stopping() {
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
    let compressor = match zstd {
        Some(compressor) => compressor,
        None => {
            let mut compressor = zstd::bulk::Compressor::new(level)?;
            compressor.include_checksum(true)?;
            compressor.include_contentsize(true)?;
            zstd.insert(compressor)
        }
    };
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
        Counters::add(&counters.archive, len);
    }
    Ok(blocks)
}
