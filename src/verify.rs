//! `arc verify`: every block read, checked and decompressed in parallel, nothing written.
//!
//! Opening the archive already checked header, trailer, index checksum and index structure,
//! including that the blocks tile the data region and that their sizes add up to the files'.
//! Verify adds every block's checksum and decompressed length, which together cover every
//! remaining byte of the archive. Damaged blocks do not stop the check: all of them, and every
//! entry whose bytes they hold, are reported.

use anyhow::{bail, Result};
use camino::Utf8PathBuf;
use rayon::prelude::*;

use crate::archive::Archive;
use crate::stop::Stop;
use crate::ui::{with_progress, Console, Counters};

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
    let pool = crate::sys::thread_pool(options.threads)?;
    let damaged: Vec<(usize, String)> = with_progress(&console, &counters, "verified", || {
        Ok::<_, anyhow::Error>(pool.install(|| {
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
        }))
    })?;
    stop.check()?;
    if damaged.is_empty() {
        return Ok(());
    }
    let mut affected = 0;
    let mut last_reported = None;
    for (b, why) in &damaged {
        console.warn(why);
        for piece in index.files_in(*b) {
            // A file spanning two damaged blocks is named once.
            if last_reported == Some(piece.entry) {
                continue;
            }
            last_reported = Some(piece.entry);
            affected += 1;
            console.note("damaged", index.path(piece.entry as usize));
        }
    }
    bail!(
        "verifying {}: {} of {} blocks damaged, {affected} entries affected",
        options.archive,
        damaged.len(),
        index.blocks.len()
    )
}
