//! `arc verify`: every block read, checked and decompressed in parallel, nothing written.
//!
//! Opening the archive already checked header, trailer, index checksum and index structure,
//! including that the blocks tile the data region and that their sizes add up to the files'.
//! Verify adds every block's frame, checksum and decompressed length, and every record
//! (FORMAT.md §3.2): its checksum, and that it says what the index says. Together they cover
//! every remaining byte of the archive. Damaged blocks and records do not stop the check: all
//! of them are counted, with the entries whose bytes the blocks hold, and the first of each
//! are named; the report stays a screenful however many there are.

use anyhow::{bail, Context, Result};
use camino::Utf8PathBuf;
use rayon::prelude::*;

use crate::archive::Archive;
use crate::format::Index;
use crate::stop::Stop;
use crate::ui::{text_of, with_progress, Console, Counters, Task};

/// Damaged blocks, and damaged entries, named before the rest are only counted.
const NAMED: usize = 10;

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub archive: Utf8PathBuf,
    pub threads: usize,
    pub quiet: bool,
}

pub fn run(options: &VerifyOptions, stop: &Stop) -> Result<()> {
    let console = Console::new(options.quiet, false);
    if options.archive.as_str() == "-" {
        return verify_stream(options, &console, stop);
    }
    let archive = match Archive::open(&options.archive) {
        Ok(archive) => archive,
        Err(error) => {
            // A damaged index or trailer: say what reading from the front would recover.
            return Err(match crate::archive::salvage_estimate(&options.archive, &error) {
                Some((recovered, found)) => anyhow::anyhow!(
                    "{error:#} (arc read --salvage would recover {recovered} of the {found} entries its records tell)"
                ),
                None => error,
            });
        }
    };
    let index = &archive.index;
    let counters = Counters::default();
    let pool = crate::sys::thread_pool(archive.decode_threads(options.threads))?;
    let task = Task { doing: "verifying", done: "verified", total: Some(index.data_len()), packs: false };
    with_progress(&console, &counters, task, || {
        // Only the numbers of damaged blocks are kept: the reasons of the few that are named
        // are found again below. (Pushed under a lock rather than collected: a parallel
        // collect keeps a list node per damaged block until the end, gigabytes for millions.)
        let damaged = std::sync::Mutex::new(Vec::<u32>::new());
        let records = index.blocks.len() + 1;
        let bad_records = std::sync::Mutex::new(Vec::<u32>::new());
        pool.install(|| {
            (0..records).into_par_iter().with_min_len(16).for_each_init(
                || (Vec::new(), Vec::new()),
                |(frame, data), b| {
                    if stop.check().is_err() {
                        return;
                    }
                    if archive.check_record(&index.record(b), frame).is_err() {
                        bad_records.lock().unwrap_or_else(|e| e.into_inner()).push(b as u32);
                    }
                    // The final record has no block.
                    let Some(block) = index.blocks.get(b) else { return };
                    let result = archive.read_block(block, frame, data);
                    Counters::add(&counters.data, block.raw_len);
                    Counters::add(&counters.archive, block.len);
                    if result.is_err() {
                        damaged.lock().unwrap_or_else(|e| e.into_inner()).push(b as u32);
                    }
                },
            )
        });
        stop.check()?;
        let mut damaged = damaged.into_inner().unwrap_or_else(|e| e.into_inner());
        damaged.sort_unstable();
        let mut bad_records = bad_records.into_inner().unwrap_or_else(|e| e.into_inner());
        bad_records.sort_unstable();
        if damaged.is_empty() && bad_records.is_empty() {
            counters.entries.store(index.entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        report(&archive, &console, &damaged, &bad_records);
        let affected = affected_entries(index, &damaged).count();
        let mut what = Vec::new();
        if !damaged.is_empty() {
            let entries = index.entries.len();
            what.push(format!(
                "{} of {} blocks damaged, {affected} entries affected (arc read --salvage would recover the \
                 other {} of {entries})",
                damaged.len(),
                index.blocks.len(),
                entries - affected
            ));
        }
        if !bad_records.is_empty() {
            what.push(format!(
                "{} of {} records damaged (reading from a pipe or with --salvage would suffer)",
                bad_records.len(),
                records
            ));
        }
        bail!("verifying {}: {}", options.archive, what.join("; "))
    })
}

/// The entries whose bytes lie in the `damaged` blocks (sorted), each once.
fn affected_entries<'i>(index: &'i Index, damaged: &'i [u32]) -> impl Iterator<Item = u32> + 'i {
    let mut last = None;
    damaged.iter().flat_map(move |&b| index.files_in(b as usize)).map(|piece| piece.entry).filter(
        move |&entry| {
            // A file spanning two damaged blocks counts once.
            let new = last != Some(entry);
            last = Some(entry);
            new
        },
    )
}

/// Names the first damaged blocks and then records, with why, and the first entries the blocks
/// hold; counts the rest.
fn report(archive: &Archive, console: &Console, damaged: &[u32], bad_records: &[u32]) {
    let index = &archive.index;
    let (mut frame, mut data) = (Vec::new(), Vec::new());
    for &b in damaged.iter().take(NAMED) {
        if let Err(why) = archive.read_block(&index.blocks[b as usize], &mut frame, &mut data) {
            console.warn(why);
        }
    }
    if damaged.len() > NAMED {
        console.warn(format!("and {} more damaged blocks", damaged.len() - NAMED));
    }
    let named = NAMED.saturating_sub(damaged.len());
    for &r in bad_records.iter().take(named) {
        if let Err(why) = archive.check_record(&index.record(r as usize), &mut frame) {
            console.warn(why);
        }
    }
    if bad_records.len() > named {
        console.warn(format!("and {} more damaged records", bad_records.len() - named));
    }
    name_affected(index, console, damaged);
}

/// Names the first entries whose bytes the `damaged` blocks hold; counts the rest.
fn name_affected(index: &Index, console: &Console, damaged: &[u32]) {
    for (named, entry) in affected_entries(index, damaged).enumerate() {
        if named == NAMED {
            let rest = affected_entries(index, damaged).count() - NAMED;
            console.note("damaged", format!("and {rest} more entries"));
            break;
        }
        console.note("damaged", text_of(&index.path(entry as usize)));
    }
}

/// `arc verify -`: the archive read from stdin as it arrives. Every record is checked and
/// joined to the index so far, every block checked and decompressed (as many at once as there
/// are threads), and the index at the end must say what the records said. Damaged blocks are
/// counted and named, as for a file; anything else wrong ends it.
fn verify_stream(options: &VerifyOptions, console: &Console, stop: &Stop) -> Result<()> {
    use crate::archive::{Item, Stream};
    let name = &options.archive;
    let pool = crate::sys::thread_pool(options.threads)?;
    let mut stream =
        Stream::new(crate::sys::stdin_for_streaming()?).with_context(|| format!("reading {name}"))?;
    let counters = Counters::default();
    let task = Task { doing: "verifying", done: "verified", total: None, packs: false };
    with_progress(console, &counters, task, || {
        let mut damaged: Vec<(usize, crate::format::FormatError)> = Vec::new();
        let mut batch: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut check = |batch: &mut Vec<(usize, Vec<u8>)>, index: &Index| {
            let found: Vec<_> = pool.install(|| {
                batch
                    .par_iter()
                    .filter_map(|(b, frame)| {
                        let mut data = Vec::new();
                        let block = &index.blocks[*b];
                        Counters::add(&counters.data, block.raw_len);
                        Counters::add(&counters.archive, block.len);
                        crate::format::decode_block(block, frame, &mut data).err().map(|e| (*b, e))
                    })
                    .collect()
            });
            damaged.extend(found);
            batch.clear();
        };
        loop {
            stop.check()?;
            match stream.next_item().with_context(|| format!("reading {name}"))? {
                Item::Entries(_) => {}
                Item::Block(b, frame) => {
                    batch.push((b, frame));
                    if batch.len() >= options.threads.max(1) {
                        check(&mut batch, stream.index());
                    }
                }
                Item::End => break,
            }
        }
        let index = stream.index();
        check(&mut batch, index);
        counters.entries.store(index.entries.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if damaged.is_empty() {
            return Ok(());
        }
        damaged.sort_by_key(|(b, _)| *b);
        for (_, why) in damaged.iter().take(NAMED) {
            console.warn(why);
        }
        if damaged.len() > NAMED {
            console.warn(format!("and {} more damaged blocks", damaged.len() - NAMED));
        }
        let blocks: Vec<u32> = damaged.iter().map(|(b, _)| *b as u32).collect();
        name_affected(index, console, &blocks);
        bail!(
            "verifying {name}: {} of {} blocks damaged, {} entries affected",
            damaged.len(),
            index.blocks.len(),
            affected_entries(index, &blocks).count()
        )
    })
}
