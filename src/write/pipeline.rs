//! The threads and channels of `arc write`, and the block-ordering protocol between them.
//!
//! The walker hands each block, with the run of entries its record tells, to [`send_block`],
//! which gives them to the compressor pool with a one-shot reply channel and gives the
//! receiving end of that channel, in block order, to the writer. A compressor compresses the
//! block, then makes the record (FORMAT.md §3.2), which names the block's length and
//! checksum. The writer therefore writes records and blocks in order without a reorder
//! buffer, and the channel capacities bound the blocks in flight (at most `j + 3`), which
//! bounds memory. The final record comes the same way, with no block.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::{anyhow, bail, Context, Result};

use super::sink::Sink;
use super::walk::{Root, Run, Settings, Walker};
use super::WriteOptions;
use crate::format::{self, Block, Index};
use crate::stop::{Failure, Stop, Stopped};
use crate::ui::{Console, Counters};

/// A block of the data stream (empty after the last) and the entries of its record, on their
/// way to a compressor.
struct Job {
    data: Vec<u8>,
    run: Run,
    reply: SyncSender<Result<Frame>>,
}

/// A record and its compressed block (none for the final record), on their way to the writer.
struct Frame {
    record: Vec<u8>,
    block: Vec<u8>,
    raw_len: u64,
    hash: u64,
}

/// Runs walker, compressors and writer in one scope; returns the finished index (entries from
/// the walker, block table from the writer) and where the region of records and blocks ends.
pub(super) fn run(
    settings: &Settings,
    options: &WriteOptions,
    roots: &[Root],
    console: &Console,
    counters: &Counters,
    stop: &Stop,
    sink: &mut Sink,
) -> Result<(Index, u64)> {
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
            let send = move |data, run| send_block(&job_tx, &order_tx, data, run);
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
        (Some((entries, names, targets, tables)), Some((blocks, final_record, data_end))) => {
            Ok((Index::from_parts(entries, names, targets, blocks, final_record, tables), data_end))
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
    run: Run,
) -> Result<()> {
    let (reply, receiver) = sync_channel(1);
    order.send(receiver).map_err(|_| Stopped)?;
    jobs.send(Job { data, run, reply }).map_err(|_| Stopped)?;
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
        let result = frame(&mut zstd, level, job.data, job.run);
        // The writer may have stopped; then nobody wants the result.
        let _ = job.reply.send(result);
    }
}

/// Compresses a block and makes the record that goes before it.
fn frame(
    zstd: &mut Option<zstd::bulk::Compressor<'static>>,
    level: i32,
    data: Vec<u8>,
    run: Run,
) -> Result<Frame> {
    let raw_len = data.len() as u64;
    let block = if data.is_empty() { Vec::new() } else { compress(zstd, level, &data)? };
    drop(data);
    let hash = if block.is_empty() { 0 } else { format::block_hash(&block) };
    let Run { entries, base, mut head } = run;
    let mut cbor = Vec::new();
    ciborium::into_writer(&entries.run_record(0..entries.entries.len(), base), &mut cbor)
        .map_err(|e| anyhow!("serializing a record: {e}"))?;
    (head.block_len, head.block_raw_len, head.block_hash) = (block.len() as u64, raw_len, hash);
    head.cbor_len = cbor.len() as u64;
    let record = format::encode_record(&head, &compress(zstd, level, &cbor)?);
    Ok(Frame { record, block, raw_len, hash })
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

/// The writer: receives records and blocks in order, appends them to OUT and builds the block
/// table. Returns it, the final record's length, and where the final record ends.
fn writer(
    sink: &mut Sink,
    order: Receiver<Receiver<Result<Frame>>>,
    counters: &Counters,
    failure: &Failure,
) -> Result<(Vec<Block>, u64, u64)> {
    sink.write_all(&format::encode_header()).with_context(|| format!("writing {}", sink.path))?;
    let mut blocks = Vec::new();
    let mut offset = format::HEADER_LEN;
    let mut raw_offset = 0;
    let mut finished = None;
    for reply in order {
        failure.check()?;
        let Frame { record, block, raw_len, hash } = match reply.recv() {
            Ok(result) => result.context("compressing")?,
            Err(_) => {
                // Compressors leave when the run is stopping; otherwise this is a bug.
                failure.check()?;
                bail!("a compressor thread stopped unexpectedly")
            }
        };
        if finished.is_some() {
            bail!("a block came after the final record");
        }
        for bytes in [&record, &block] {
            sink.write_all(bytes).with_context(|| format!("writing {}", sink.path))?;
            Counters::add(&counters.archive, bytes.len() as u64);
        }
        let record_len = record.len() as u64;
        offset += record_len;
        if block.is_empty() {
            finished = Some(record_len);
            continue;
        }
        let len = block.len() as u64;
        blocks.push(Block { offset, record_len, len, raw_offset, raw_len, hash });
        offset += len;
        raw_offset += raw_len;
    }
    failure.check()?;
    // Without the final record the walker stopped: its error, not this echo, is reported.
    let Some(final_record) = finished else { return Err(Stopped.into()) };
    Ok((blocks, final_record, offset))
}
