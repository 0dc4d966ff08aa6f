//! `arc verify`: every block read, checked and decompressed in parallel, nothing written.
//!
//! Opening the archive already checked header, trailer, index checksum and index structure,
//! including that the blocks tile the data region and that their sizes add up to the files'.
//! Verify adds every block's checksum and decompressed length, which together cover every
//! remaining byte of the archive. Damaged blocks do not stop the check: all of them, and every
//! entry whose bytes they hold, are reported.

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;
use rayon::prelude::*;

use crate::archive::Archive;
use crate::index::Kind;
use crate::stop::Stop;
use crate::ui::{Console, Counters};

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub archive: Utf8PathBuf,
    pub threads: usize,
    pub quiet: bool,
}

pub fn run(options: &VerifyOptions, stop: &Stop) -> Result<()> {
    let archive = Archive::open(&options.archive)?;
    let index = &archive.index;
    let console = Console::new(options.quiet, false);
    let counters = Counters::default();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(options.threads.max(1))
        .build()
        .context("starting threads")?;
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let damaged: Vec<(usize, String)> = std::thread::scope(|scope| {
        scope.spawn(|| crate::ui::progress(&console, &counters, "verified", done_rx));
        let damaged = pool.install(|| {
            index
                .blocks
                .par_iter()
                .enumerate()
                .map_init(
                    || (Vec::new(), Vec::new()),
                    |(frame, data), (b, block)| {
                        if stop.check().is_err() {
                            return None;
                        }
                        let result = archive.read_block(block, frame, data);
                        Counters::add(&counters.bytes_in, block.raw_len);
                        Counters::add(&counters.bytes_out, block.len);
                        result.err().map(|e| (b, format!("{e:#}")))
                    },
                )
                .flatten()
                .collect()
        });
        let _ = done_tx.send(());
        damaged
    });
    stop.check()?;
    if damaged.is_empty() {
        return Ok(());
    }
    // Files with bytes, in data-stream order, so each block's files are found by bisection.
    let files: Vec<usize> = (0..index.entries.len())
        .filter(|&i| index.entries[i].kind == Kind::File && index.entries[i].size > 0)
        .collect();
    let mut affected = 0;
    let mut reported: Vec<usize> = Vec::new();
    for (b, why) in &damaged {
        console.warn(why);
        let block = &index.blocks[*b];
        let first = files.partition_point(|&i| {
            let e = &index.entries[i];
            e.offset + e.size <= block.raw_offset
        });
        for &i in &files[first..] {
            if index.entries[i].offset >= block.raw_offset + block.raw_len {
                break;
            }
            // A file spanning two damaged blocks is named once.
            if reported.last() == Some(&i) {
                continue;
            }
            reported.push(i);
            affected += 1;
            eprintln!("arc: damaged: {}", crate::list::escape(&index.path(i)));
        }
    }
    bail!(
        "verifying {}: {} of {} blocks damaged, {affected} entries affected",
        options.archive,
        damaged.len(),
        index.blocks.len()
    )
}
