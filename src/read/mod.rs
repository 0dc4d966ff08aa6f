//! `arc read`: extraction, in five passes over a checked index.
//!
//! 1. probe: find what already exists in DEST where the archive will write (no writes yet),
//!    and refuse, skip or plan replacements according to `--overwrite`/`--keep-existing`;
//! 2. directories, in pre-order, created owner-writable;
//! 3. files, in parallel: each needed block is read, checked and decompressed once, and the
//!    files in it are written under temporary names and renamed into place with their mode
//!    and mtime already set. A file spanning blocks is written at its offsets by whichever
//!    thread holds each block; the last one renames it;
//! 4. hard links, FIFOs, devices and symlinks, after all files, so no file is ever written
//!    through a link from the archive;
//! 5. directory modes and mtimes, deepest first, through handles opened without following
//!    links.
//!
//! Rooms: [`plan`] decides, without I/O, what each entry becomes and which blocks hold which
//! pieces; [`extract`] carries the passes out; [`dest`] is the only code that touches DEST.
//!
//! Architecture Invariant: `read` never imports from `write`, `list` or `verify`; all
//! filesystem access beneath DEST goes through [`dest`]. Memory is bounded by the threads
//! times the block size, plus the index.

mod dest;
mod extract;
mod plan;
mod stream;

use anyhow::{Context, Result};
use camino::Utf8PathBuf;

use crate::archive::{Archive, Salvaged};
use crate::select;
use crate::stop::{Interrupted, Stop};
use crate::ui::{with_progress, Console, Counters, Outcome, Task};
use extract::Extraction;

#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub archive: Utf8PathBuf,
    pub dest: Utf8PathBuf,
    pub paths: Vec<String>,
    pub globs: Vec<String>,
    pub threads: usize,
    pub verbose: bool,
    pub quiet: bool,
    pub existing: Existing,
    pub same_permissions: bool,
    /// Leading path components left out of every entry's path, as tar's option of that name;
    /// entries with no more components than that are not extracted.
    pub strip_components: u32,
    /// Whether and how owners are restored (only ever as root).
    pub owners: Owners,
    /// Recover what can be recovered of a damaged or cut archive (`Archive::salvage`).
    pub salvage: bool,
}

/// How `read` gives entries their owners, when it runs as root (as another user it cannot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// By the stored user and group names where they exist here, else by the stored ids.
    ByName,
    /// By the stored ids only (`--numeric-owner`).
    Numeric,
    /// Not at all (`--no-same-owner`): entries belong to whoever extracts.
    Skip,
}

/// What to do with an entry that already exists in DEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Refuse,
    Overwrite,
    Keep,
}

pub fn run(options: &ReadOptions, stop: &Stop) -> Result<Outcome> {
    if let Some(result) = from_a_pipe(options, stop) {
        return result;
    }
    let (archive, salvaged) = match options.salvage {
        true => Archive::salvage(&options.archive).map(|(archive, salvaged)| (archive, Some(salvaged)))?,
        false => {
            let archive = Archive::open_some(&options.archive, |tree| {
                select::roots(tree, &options.paths, &options.globs)
            })
            .map_err(|e| match crate::archive::salvage_estimate(&options.archive, &e) {
                Some((recovered, found)) => anyhow::anyhow!(
                    "{e:#} (arc read --salvage would recover {recovered} of the {found} entries its records tell)"
                ),
                None => e,
            })?;
            (archive, None)
        }
    };
    let selected = select::select(&archive.index, &options.paths, &options.globs)
        .with_context(|| format!("reading {}", options.archive))?;
    let console = Console::new(options.quiet, options.verbose);
    std::fs::create_dir_all(&options.dest).with_context(|| format!("creating {}", options.dest))?;
    let counters = Counters::default();
    let mut extraction = Extraction::new(options, &archive, &console, &counters)?;
    extraction.probe(&selected)?;
    let task = Task { doing: "reading", done: "read", total: Some(extraction.data_to_write()), packs: false };
    with_progress(&console, &counters, task, || {
        extraction.make_dirs()?;
        if let Err(error) = extraction.write_files(stop) {
            if !error.is::<Interrupted>() {
                // As tar does: finish what can be finished (links, directory modes and
                // times), then report the first error.
                let _ = extraction.make_links(stop);
                let _ = extraction.finish_dirs(&selected);
            }
            return Err(error);
        }
        extraction.make_links(stop)?;
        extraction.finish_dirs(&selected)
    })?;
    if let Some(salvaged) = salvaged.filter(|s| !s.damage.is_empty()) {
        return Err(salvage_report(options, &console, &salvaged));
    }
    Ok(console.outcome())
}

/// `arc read -`, or of a pipe or FIFO: the archive read as it arrives ([`stream`]). `None` for
/// an archive file, read from its two ends.
fn from_a_pipe(options: &ReadOptions, stop: &Stop) -> Option<Result<Outcome>> {
    let name = &options.archive;
    let file = match name.as_str() {
        "-" => None,
        _ => match std::fs::File::open(name) {
            Ok(file) if file.metadata().is_ok_and(|m| !m.is_file()) && !options.salvage => Some(file),
            _ => return None,
        },
    };
    Some(match file {
        Some(file) => run_stream(options, std::io::BufReader::new(file), stop),
        None => crate::sys::stdin_for_streaming().and_then(|stdin| run_stream(options, stdin, stop)),
    })
}

/// Extracts the archive `reader` gives as it arrives (`arc read -`; also what the fuzz
/// harness runs in-process): see [`stream`].
pub fn run_stream(options: &ReadOptions, reader: impl std::io::Read, stop: &Stop) -> Result<Outcome> {
    let console = Console::new(options.quiet, options.verbose);
    let counters = Counters::default();
    std::fs::create_dir_all(&options.dest).with_context(|| format!("creating {}", options.dest))?;
    let task = Task { doing: "reading", done: "read", total: None, packs: false };
    with_progress(&console, &counters, task, || {
        stream::extract(options, reader, &options.archive, &console, &counters, stop)
    })?;
    Ok(console.outcome())
}

/// What a salvage lost, on stderr, and the error that ends it (exit status 2): the archive was
/// damaged, whatever could be recovered.
fn salvage_report(options: &ReadOptions, console: &Console, salvaged: &Salvaged) -> anyhow::Error {
    for damage in &salvaged.damage {
        console.warn(damage);
    }
    for (path, why) in &salvaged.lost {
        console.note("lost", format!("{}: {why}", crate::ui::text_of(path)));
    }
    let recovered = salvaged.found - salvaged.lost.len();
    anyhow::anyhow!(
        "reading {}: damaged archive: recovered {recovered} of the {} entries found, {} lost",
        options.archive,
        salvaged.found,
        salvaged.lost.len()
    )
}
