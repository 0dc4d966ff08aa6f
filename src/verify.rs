//! `arc verify`: every block read, checked and decompressed in parallel, nothing written.
//!
//! Opening the archive already checked header, trailer, index checksum and index structure,
//! including that the blocks tile the data region and that their sizes add up to the files'.
//! Verify adds every block's frame, checksum and decompressed length, which together cover
//! every remaining byte of the archive. Damaged blocks do not stop the check: all of them are
//! counted, with the entries whose bytes they hold, and the first of each are named; the
//! report stays a screenful however many there are.

use anyhow::{bail, Result};
use camino::Utf8PathBuf;
use rayon::prelude::*;

use crate::archive::Archive;
use crate::stop::Stop;
use crate::ui::{with_progress, Console, Counters};

/// Damaged blocks, and damaged entries, named before the rest are only counted.
const NAMED: usize = 10;

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
    let pool = crate::sys::thread_pool(archive.decode_threads(options.threads))?;
    // Only the numbers of damaged blocks are kept: the reasons of the few that are named are
    // found again below. (Pushed under a lock rather than collected: a parallel collect keeps
    // a list node per damaged block until the end, gigabytes for millions of them.)
    let damaged = std::sync::Mutex::new(Vec::<u32>::new());
    with_progress(&console, &counters, "verified", || {
        pool.install(|| {
            (0..index.blocks.len()).into_par_iter().with_min_len(16).for_each_init(
                || (Vec::new(), Vec::new()),
                |(frame, data), b| {
                    if stop.check().is_err() {
                        return;
                    }
                    let block = &index.blocks[b];
                    let result = archive.read_block(block, frame, data);
                    Counters::add(&counters.bytes_in, block.raw_len);
                    Counters::add(&counters.bytes_out, block.len);
                    if result.is_err() {
                        damaged.lock().unwrap_or_else(|e| e.into_inner()).push(b as u32);
                    }
                },
            )
        });
        Ok::<_, anyhow::Error>(())
    })?;
    let mut damaged = damaged.into_inner().unwrap_or_else(|e| e.into_inner());
    damaged.sort_unstable();
    stop.check()?;
    if damaged.is_empty() {
        return Ok(());
    }
    let (mut frame, mut data) = (Vec::new(), Vec::new());
    for &b in damaged.iter().take(NAMED) {
        if let Err(why) = archive.read_block(&index.blocks[b as usize], &mut frame, &mut data) {
            console.warn(why);
        }
    }
    if damaged.len() > NAMED {
        console.warn(format!("and {} more damaged blocks", damaged.len() - NAMED));
    }
    let mut affected = 0;
    let mut last = None;
    for &b in &damaged {
        for piece in index.files_in(b as usize) {
            // A file spanning two damaged blocks counts once.
            if last == Some(piece.entry) {
                continue;
            }
            last = Some(piece.entry);
            if affected < NAMED {
                console.note("damaged", index.path(piece.entry as usize));
            }
            affected += 1;
        }
    }
    if affected > NAMED {
        console.note("damaged", format!("and {} more entries", affected - NAMED));
    }
    bail!(
        "verifying {}: {} of {} blocks damaged, {affected} entries affected",
        options.archive,
        damaged.len(),
        index.blocks.len()
    )
}
