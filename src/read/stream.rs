//! `arc read -`: an archive read from a pipe as it arrives (FORMAT.md §3.2).
//!
//! The archive is read from the front by [`Stream`]: each record's entries are checked and
//! joined to the index so far, then probed and their directories made (passes 1 and 2 for
//! those entries); each block goes to a decoder thread as it arrives, and once decoded, in
//! order, its files are written (pass 3 for that block: a file spanning blocks is created by
//! its first piece and put in place by its last). At the end, when the index read from the
//! archive's end has been found equal to the records', hard links, special files and symlinks
//! are made and directories finished (passes 4 and 5), as for a file.
//!
//! Memory: the index so far, plus at most twice as many blocks as decoders (frames queued,
//! contents waiting their turn), whatever the archive's size.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use camino::Utf8Path;

use super::extract::{Extraction, FileJob, Report, SpanWrite};
use super::ReadOptions;
use crate::archive::{Item, Stream};
use crate::format::{self, Block, Index};
use crate::select::Streaming;
use crate::stop::{Failure, Stop};
use crate::ui::{Console, Counters};

/// A block on its way to a decoder, with where its contents go back.
type Job = (Block, Buffers, SyncSender<Decoded>);

/// A block's frame, and the buffer its contents go to: both go round, from the stream to a
/// decoder to the writer and back.
struct Buffers {
    frame: Vec<u8>,
    data: Vec<u8>,
    /// Bytes the decoder writes into files spanning blocks, once the block is decoded.
    spans: Vec<SpanWrite>,
    /// The files that lie whole in the block, which the decoder writes then.
    files: Vec<FileJob>,
}

/// A block decoded (its contents in the buffers) and its span writes made, or why not.
type Decoded = (Result<()>, Buffers);

/// Blocks sent to the decoders, in order, each with where its contents will come.
type Waiting = VecDeque<(usize, Receiver<Decoded>)>;

/// Extracts the archive `reader` gives, named `name` in messages.
pub(super) fn extract(
    options: &ReadOptions,
    reader: impl std::io::Read,
    name: &Utf8Path,
    console: &Console,
    counters: &Counters,
    stop: &Stop,
) -> Result<()> {
    let mut select = Streaming::new(&options.paths, &options.globs)?;
    let mut stream = Stream::new(reader).with_context(|| format!("reading {name}"))?;
    let extraction = Extraction::of(options, None, name, empty(), console, counters)?;
    let decoders = options.threads.max(1);
    let replace = match options.existing {
        super::Existing::Overwrite => super::dest::Replace::Always,
        _ => super::dest::Replace::Never,
    };
    let report = Report { console, counters, existing: options.existing, replace };
    let failure = Failure::new(stop);
    let (jobs, job_rx) = sync_channel::<Job>(2 * decoders);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let extraction = std::thread::scope(|scope| {
        for _ in 0..decoders {
            let job_rx = Arc::clone(&job_rx);
            let report = &report;
            scope.spawn(move || decoder(&job_rx, report));
        }
        drop(job_rx);
        // The queue closes when `pump` returns, and the decoders with it.
        pump(&mut stream, name, &mut select, extraction, jobs, decoders, &failure)
    })?;
    select.missed().with_context(|| format!("reading {name}"))?;
    failure.take()?;
    let index = stream.index();
    let mut done = extraction.grown(index);
    done.make_late_copies(stop)?;
    done.make_links(stop)?;
    done.finish_dirs(&select.selected)
}

/// Reads the stream to its end: entries probed and directories made as their records come,
/// blocks sent to the decoders, and each block's files written once it is decoded, in order.
#[allow(clippy::too_many_arguments)]
fn pump<'a, R: std::io::Read>(
    stream: &mut Stream<R>,
    name: &Utf8Path,
    select: &mut Streaming,
    mut extraction: Extraction<'a, 'static>,
    jobs: SyncSender<Job>,
    decoders: usize,
    failure: &Failure,
) -> Result<Extraction<'a, 'static>> {
    let mut waiting = Waiting::new();
    // Buffers that go round: contents kept here, frames given back to the stream.
    let (mut spare, mut frames): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    loop {
        failure.check()?;
        for frame in frames.drain(..) {
            stream.give_back(frame);
        }
        let item = stream.next_item().with_context(|| format!("reading {name}"))?;
        let index = stream.index();
        match item {
            Item::Entries(range) => {
                let late = select.decide(index, range.clone());
                let selected = |i: usize| select.selected[i];
                let mut here = extraction.grown(index);
                // Directories that came before and hold something selected now.
                for d in late {
                    here.probe_range(d..d + 1, selected)?;
                    here.make_dirs_range(d..d + 1)?;
                }
                here.probe_range(range.clone(), selected)?;
                here.note_late_copies(range.clone());
                here.make_dirs_range(range.clone())?;
                here.write_empty_range(range)?;
                extraction = here.grown(empty());
            }
            Item::Block(b, frame) => {
                let (spans, files, back) = block_jobs(extraction, index, b)?;
                extraction = back;
                if spans.is_empty() && files.is_empty() {
                    // Read past: none of its files is extracted.
                    frames.push(frame);
                    continue;
                }
                let (reply, contents) = sync_channel(1);
                let data = spare.pop().unwrap_or_default();
                jobs.send((index.blocks[b], Buffers { frame, data, spans, files }, reply))
                    .map_err(|_| anyhow::anyhow!("the decoders stopped"))?;
                waiting.push_back((b, contents));
                // The oldest block is written once as many as there are decoders wait.
                while waiting.len() > 2 * decoders {
                    let buffers;
                    (extraction, buffers) = write_next(extraction, index, &mut waiting)?;
                    spare.push(buffers.data);
                    frames.push(buffers.frame);
                }
            }
            Item::End => break,
        }
    }
    drop(jobs);
    let index = stream.index();
    while !waiting.is_empty() {
        extraction = write_next(extraction, index, &mut waiting)?.0;
    }
    Ok(extraction)
}

/// Writes the files of the oldest block waiting, once it is decoded.
fn write_next<'a>(
    extraction: Extraction<'a, '_>,
    index: &Index,
    waiting: &mut Waiting,
) -> Result<(Extraction<'a, 'static>, Buffers)> {
    let Some((b, contents)) = waiting.pop_front() else { unreachable!("a block waits") };
    let here = extraction.grown(index);
    let (decoded, buffers) = contents.recv().map_err(|_| anyhow::anyhow!("a decoder stopped"))?;
    decoded.map_err(|e| match e.downcast::<format::FormatError>() {
        Ok(e) => here.damaged_block(b, e),
        Err(e) => e,
    })?;
    here.write_streamed(b, &buffers.spans)?;
    Ok((here.grown(empty()), buffers))
}

/// What the decoder of block `b` writes ([`Extraction::span_writes`],
/// [`Extraction::file_jobs`]), and the extraction back.
#[allow(clippy::type_complexity)]
fn block_jobs<'a>(
    extraction: Extraction<'a, 'static>,
    index: &Index,
    b: usize,
) -> Result<(Vec<SpanWrite>, Vec<FileJob>, Extraction<'a, 'static>)> {
    let here = extraction.grown(index);
    let spans = here.span_writes(b)?;
    let files = here.file_jobs(b)?;
    Ok((spans, files, here.grown(empty())))
}

/// The empty index an extraction is set aside with between records and blocks.
fn empty() -> &'static Index {
    static EMPTY: std::sync::OnceLock<Index> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Index::default)
}

/// A decoder: checks and decompresses blocks until the reader closes the queue, and writes
/// what of each the reader handed it (bytes of files spanning blocks, whole files).
fn decoder(jobs: &Mutex<std::sync::mpsc::Receiver<Job>>, report: &Report) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((block, mut buffers, reply)) = job else { return };
        let result = format::decode_block(&block, &buffers.frame, &mut buffers.data)
            .map_err(anyhow::Error::new)
            .and_then(|()| {
                use std::os::unix::fs::FileExt;
                for span in &buffers.spans {
                    for (offset, range) in &span.places {
                        span.file
                            .write_all_at(&buffers.data[range.clone()], *offset)
                            .with_context(|| format!("writing {}", span.shown))?;
                    }
                }
                for file in &buffers.files {
                    file.write(report, &buffers.data)?;
                }
                Ok(())
            });
        let _ = reply.send((result, buffers));
    }
}
