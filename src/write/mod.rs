//! `arc write`: directory trees into an archive, through a threaded pipeline.
//!
//! ```text
//!  walker ──Job{block, reply}──▶ compressor × N ──reply (one-shot)──┐
//!     │                                                             ▼
//!     └──────────── reply receivers, in block order ──────────▶ writer ──▶ OUT (temp file)
//!  progress thread: reads Counters, draws stderr
//! ```
//!
//! Rooms: [`walk`] visits the trees and cuts the data stream into blocks (it hands each block
//! to a closure and knows nothing of channels); [`pipeline`] owns the threads and channels
//! (compressors, writer, the block-ordering protocol); [`sink`] owns OUT. This file checks the
//! inputs, runs the pipeline, and appends index and trailer.
//!
//! Architecture Invariant: `write` never imports from `read`, `list` or `verify`.
//!
//! Invariants:
//! - the archive is the same bytes for the same tree and level, whatever `-j` is: blocks are
//!   cut by the walker alone and each is compressed independently;
//! - a failing stage records its error and drops its channel ends; every other stage then sees
//!   a closed channel and stops, and the first recorded error is the one reported;
//! - OUT is written under a temporary name beside it and renamed only after the trailer is
//!   written, so a failed or interrupted write leaves an existing OUT untouched.

mod exclude;
mod pipeline;
mod share;
mod sink;
mod walk;

pub use exclude::ExcludeOptions;
pub use walk::Input;

use std::os::unix::fs::MetadataExt;

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;

use crate::format::{self, Index};
use crate::stop::Stop;
use crate::ui::{with_progress, Console, Counters, Outcome, Task};
use sink::Sink;

#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub output: Utf8PathBuf,
    pub inputs: Vec<Input>,
    pub level: i32,
    /// Uncompressed bytes per block ([`format::BLOCK_SIZE`] by default).
    pub block_size: usize,
    pub threads: usize,
    pub verbose: bool,
    pub quiet: bool,
    pub ignore_failed_read: bool,
    pub exclude: ExcludeOptions,
}

pub fn run(options: &WriteOptions, stop: &Stop) -> Result<Outcome> {
    let mut console = Console::new(options.quiet, options.verbose);
    if options.output.as_str() == "-" {
        console = console.paths_on_stderr();
    }
    let roots = walk::roots(&options.inputs, &console)?;
    // The walker holds a handle per directory level of the deepest path.
    crate::sys::raise_fd_limit();
    let mut sink = Sink::open(&options.output)?;
    // Never archive the archive: leave out the file being written, and an old OUT if it is
    // inside the tree.
    let mut skip = vec![sink.identity()?];
    if let Ok(meta) = std::fs::metadata(&options.output) {
        skip.push((meta.dev(), meta.ino()));
    }

    let counters = Counters::default();
    let task = Task { doing: "writing", done: "wrote", total: None, packs: true };
    // The whole write, index, trailer and rename included, is the job: the summary comes
    // only once the archive is in place.
    with_progress(&console, &counters, task, || -> Result<()> {
        let settings = walk::Settings {
            block_size: options.block_size,
            ignore_failed_read: options.ignore_failed_read,
            skip,
            exclude: options.exclude.clone(),
        };
        let (index, data_end) =
            pipeline::run(&settings, options, &roots, &console, &counters, stop, &mut sink)?;
        finish(options, index, data_end, sink, stop)
    })?;
    Ok(console.outcome())
}

/// Appends the index and trailer of `index` to the archive and puts it in place, after
/// checking that readers will take it.
fn finish(options: &WriteOptions, index: Index, data_end: u64, mut sink: Sink, stop: &Stop) -> Result<()> {
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
    let entries = index.entries.len();
    let (frame, raw_len) = format::encode_index(&index.as_record(), options.level)
        .with_context(|| format!("writing {}", options.output))?;
    // Never make an archive that readers would refuse for the memory its index needs
    // (SECURITY.md §8): many entries without data compress to almost nothing.
    let archive_len = data_end + frame.len() as u64 + format::TRAILER_LEN;
    let needed = format::reader_memory(&index, frame.len() as u64, raw_len);
    let allowed = format::Budget::for_archive(archive_len).left();
    if needed > allowed {
        bail!(
            "writing {}: {entries} entries need {} of memory to read, more than an archive of {} may ask \
             for ({}); archive fewer entries at once",
            options.output,
            bytesize::ByteSize(needed).display().iec(),
            bytesize::ByteSize(archive_len).display().iec(),
            bytesize::ByteSize(allowed).display().iec()
        );
    }
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
    sink.finish().with_context(|| format!("writing {}", options.output))
}
