//! `arc read`: extraction, in five passes over a checked index.
//!
//! 1. probe: find what already exists in DEST where the archive will write (no writes yet),
//!    and refuse, skip or plan replacements according to `--overwrite`/`--keep-existing`;
//! 2. directories, in pre-order, created owner-writable;
//! 3. files, in parallel: each needed block is read, checked and decompressed once, and the
//!    files in it are written under temporary names and renamed into place with their mode
//!    and mtime already set. A file spanning blocks is created before this pass and written at
//!    its offsets by whichever thread holds each block; the last one renames it;
//! 4. symlinks, after all files, so no file is ever written through a link from the archive;
//! 5. directory modes and mtimes, deepest first, through handles opened without following
//!    links.
//!
//! All filesystem access goes through [`crate::dest`]; see its invariants. Memory is bounded by
//! the threads times the block size, plus the index.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use rayon::prelude::*;
use rustix::fs::FileType;

use crate::archive::Archive;
use crate::dest::{self, DirFd, Replace, TempFile};
use crate::index::{Entry, Index, Kind};
use crate::select::{self, Selected};
use crate::stop::{Failure, Interrupted, Stop};
use crate::ui::{Console, Counters};
use crate::Outcome;

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
}

/// What to do with an entry that already exists in DEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Refuse,
    Overwrite,
    Keep,
}

/// The plan for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Not selected, kept as it is in DEST, or beneath such an entry.
    Skip,
    /// Nothing there yet: create.
    Create,
    /// A directory that exists already: merge into it.
    Merge,
    /// Something there to be replaced (`--overwrite`).
    Replace,
}

pub fn run(options: &ReadOptions, stop: &Stop) -> Result<Outcome> {
    let archive = Archive::open(&options.archive)?;
    let selected = select::select(&archive.index, &options.paths, &options.globs)
        .with_context(|| format!("reading {}", options.archive))?;
    let console = Console::new(options.quiet, options.verbose);
    std::fs::create_dir_all(&options.dest).with_context(|| format!("creating {}", options.dest))?;
    let dest = rustix::fs::open(
        options.dest.as_str(),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .with_context(|| format!("opening {}", options.dest))?;

    let mut extraction = Extraction {
        options,
        archive: &archive,
        index: &archive.index,
        console: &console,
        dest: &options.dest,
        dest_fd: dest,
        actions: vec![Action::Skip; archive.index.entries.len()],
        dirs: Vec::new(),
        dir_budget: dest::raise_fd_limit(),
        mode_mask: if options.same_permissions { 0o7777 } else { 0o1777 },
        replace: if options.existing == Existing::Overwrite { Replace::Always } else { Replace::Never },
        counters: Counters::default(),
    };
    extraction.dirs.resize_with(archive.index.entries.len(), || None);
    extraction.probe(&selected)?;
    extraction.make_dirs()?;
    let failure = Failure::new(stop);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::scope(|scope| {
        scope.spawn(|| crate::ui::progress(&console, &extraction.counters, "read", done_rx));
        let result = extraction.write_files(&failure);
        if let Err(e) = result {
            failure.record(e);
        } else {
            let _ = done_tx.send(());
        }
        drop(done_tx);
    });
    if let Err(error) = failure.take() {
        if !error.is::<Interrupted>() {
            // As tar does: finish what can be finished (links, directory modes and times),
            // then report the first error.
            let _ = extraction.make_symlinks(stop);
            let _ = extraction.finish_dirs(&selected);
        }
        return Err(error);
    }
    extraction.make_symlinks(stop)?;
    extraction.finish_dirs(&selected)?;
    Ok(if console.warned() { Outcome::Warnings } else { Outcome::Clean })
}

struct Extraction<'a> {
    options: &'a ReadOptions,
    archive: &'a Archive,
    index: &'a Index,
    console: &'a Console,
    dest: &'a Utf8Path,
    dest_fd: OwnedFd,
    actions: Vec<Action>,
    /// Open handles on directories, by entry, kept while within `dir_budget`.
    dirs: Vec<Option<OwnedFd>>,
    dir_budget: usize,
    mode_mask: u16,
    replace: Replace,
    counters: Counters,
}

/// How many files of one block a thread creates before others may take the rest.
const PIECES_PER_TASK: usize = 32;

/// Bytes of one file that live in one block.
struct Piece {
    entry: u32,
    /// Index into the spanning files, for a file that spans blocks.
    span: Option<u32>,
    start_in_block: usize,
    file_offset: u64,
    len: usize,
}

/// A file whose bytes span several blocks. Its temporary file is created by the first piece
/// to arrive and taken by the last, so open handles track the files in progress, not the
/// archive's size.
struct Span<'a> {
    entry: u32,
    temp: Mutex<Option<TempFile<'a>>>,
    blocks_left: AtomicUsize,
}

impl<'a> Extraction<'a> {
    /// The entry's path for messages; names come from the archive, so they are escaped and an
    /// error never carries terminal control sequences.
    fn display(&self, i: usize) -> String {
        self.dest.join(crate::list::escape(&self.index.path(i)).as_ref()).into_string()
    }

    /// A handle on the directory that holds entry `i` (DEST for a root).
    fn parent_dir(&self, i: usize) -> Result<DirFd<'_>> {
        match self.index.entries[i].parent {
            None => Ok(DirFd::Borrowed(self.dest_fd.as_fd())),
            Some(p) => self.dir(p as usize),
        }
    }

    /// A handle on directory entry `i`: cached, or opened from its parent without following
    /// links.
    fn dir(&self, i: usize) -> Result<DirFd<'_>> {
        if let Some(fd) = &self.dirs[i] {
            return Ok(DirFd::Borrowed(fd.as_fd()));
        }
        let parent = self.parent_dir(i)?;
        let fd = dest::open_dir(&parent, &self.index.entries[i].name)
            .with_context(|| format!("opening {}", self.display(i)))?;
        Ok(DirFd::Owned(fd))
    }

    fn cache_dir(&mut self, i: usize, fd: OwnedFd) {
        if self.dir_budget > 0 {
            self.dir_budget -= 1;
            self.dirs[i] = Some(fd);
        }
    }

    /// Pass 1: decide an action for every selected entry by looking at what DEST holds, and
    /// refuse before writing anything if something would be replaced without `--overwrite`.
    fn probe(&mut self, selected: &[Selected]) -> Result<()> {
        let mut conflicts = Vec::new();
        for (i, &selection) in selected.iter().enumerate() {
            if selection == Selected::No {
                continue;
            }
            let entry = &self.index.entries[i];
            let parent_action = entry.parent.map_or(Action::Merge, |p| self.actions[p as usize]);
            let action = match parent_action {
                Action::Skip => Action::Skip,
                // A new directory holds nothing yet.
                Action::Create | Action::Replace => Action::Create,
                Action::Merge => {
                    let parent = self.parent_dir(i)?;
                    let found = dest::probe(&parent, &entry.name)
                        .with_context(|| format!("reading {}", self.display(i)))?;
                    drop(parent);
                    match found {
                        None => Action::Create,
                        Some(FileType::Directory) if entry.kind == Kind::Dir => {
                            let fd = self.dir(i)?;
                            if let DirFd::Owned(fd) = fd {
                                self.cache_dir(i, fd);
                            }
                            Action::Merge
                        }
                        Some(found) => self.conflict(i, found, &mut conflicts)?,
                    }
                }
            };
            self.actions[i] = action;
        }
        if let Some(&first) = conflicts.first() {
            let more = match conflicts.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            bail!(
                "refusing to replace existing {}{more}: use --overwrite to replace or --keep-existing to skip",
                self.display(first)
            );
        }
        Ok(())
    }

    fn conflict(&self, i: usize, found: FileType, conflicts: &mut Vec<usize>) -> Result<Action> {
        match self.options.existing {
            Existing::Refuse => {
                conflicts.push(i);
                Ok(Action::Skip)
            }
            Existing::Keep => Ok(Action::Skip),
            Existing::Overwrite if found == FileType::Directory => {
                bail!("refusing to replace directory {} with a non-directory", self.display(i))
            }
            Existing::Overwrite => Ok(Action::Replace),
        }
    }

    /// Pass 2: create directories, parents first.
    fn make_dirs(&mut self) -> Result<()> {
        for i in 0..self.index.entries.len() {
            let entry = &self.index.entries[i];
            let action = self.actions[i];
            if entry.kind != Kind::Dir || !matches!(action, Action::Create | Action::Replace) {
                continue;
            }
            let parent = self.parent_dir(i)?;
            let path = || self.display(i);
            if action == Action::Replace {
                dest::remove(&parent, &entry.name, false).with_context(|| format!("removing {}", path()))?;
            }
            dest::make_dir(&parent, &entry.name).with_context(|| format!("creating {}", path()))?;
            let fd = dest::open_dir(&parent, &entry.name).with_context(|| format!("opening {}", path()))?;
            drop(parent);
            self.console.path(|| self.index.path(i));
            self.cache_dir(i, fd);
        }
        Ok(())
    }

    fn wanted_file(&self, i: usize) -> bool {
        self.index.entries[i].kind == Kind::File
            && matches!(self.actions[i], Action::Create | Action::Replace)
    }

    /// Pass 3: file contents, block by block on all threads.
    fn write_files(&self, failure: &Failure) -> Result<()> {
        let blocks = &self.index.blocks;
        let mut pieces: Vec<Vec<Piece>> = Vec::new();
        pieces.resize_with(blocks.len(), Vec::new);
        let mut spans = Vec::new();
        let mut empty = Vec::new();
        for i in 0..self.index.entries.len() {
            if !self.wanted_file(i) {
                continue;
            }
            let entry = &self.index.entries[i];
            let range = self.index.blocks_for(entry.offset, entry.size);
            if range.is_empty() {
                empty.push(i as u32);
                continue;
            }
            let span = if range.len() > 1 {
                let temp = Mutex::new(None);
                spans.push(Span { entry: i as u32, temp, blocks_left: AtomicUsize::new(range.len()) });
                Some(spans.len() as u32 - 1)
            } else {
                None
            };
            for b in range {
                let block = &blocks[b];
                let start = entry.offset.max(block.raw_offset);
                let end = (entry.offset + entry.size).min(block.raw_offset + block.raw_len);
                pieces[b].push(Piece {
                    entry: i as u32,
                    span,
                    start_in_block: (start - block.raw_offset) as usize,
                    file_offset: start - entry.offset,
                    len: (end - start) as usize,
                });
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.options.threads.max(1))
            .build()
            .context("starting threads")?;
        let work: Vec<usize> = (0..blocks.len()).filter(|&b| !pieces[b].is_empty()).collect();
        pool.install(|| {
            empty.par_iter().for_each(|&i| {
                if failure.check().is_ok() {
                    if let Err(e) = self.write_whole(i as usize, &[]) {
                        failure.record(e);
                    }
                }
            });
            work.par_iter().for_each_init(
                || (Vec::new(), Vec::new()),
                |(frame, data), &b| {
                    if failure.check().is_err() {
                        return;
                    }
                    if let Err(e) = self.write_block(b, &pieces[b], &spans, frame, data, failure) {
                        failure.record(e);
                    }
                },
            );
        });
        failure.take()?;
        drop(spans);
        Ok(())
    }

    fn write_block<'s>(
        &'s self,
        b: usize,
        pieces: &[Piece],
        spans: &[Span<'s>],
        frame: &mut Vec<u8>,
        data: &mut Vec<u8>,
        failure: &Failure,
    ) -> Result<()> {
        let block = &self.index.blocks[b];
        self.archive.read_block(block, frame, data).map_err(|e| {
            let mut names: Vec<String> = pieces
                .iter()
                .take(5)
                .map(|p| crate::list::escape(&self.index.path(p.entry as usize)).into_owned())
                .collect();
            if pieces.len() > 5 {
                names.push(format!("and {} more", pieces.len() - 5));
            }
            e.context(format!("reading {}: damaged data of {}", self.archive.path, names.join(", ")))
        })?;
        Counters::add(&self.counters.bytes_out, block.len);
        // A block of small files holds hundreds of them: share them out, so that the threads
        // are not idle while one of them creates every file of the block.
        pieces.par_chunks(PIECES_PER_TASK).try_for_each(|chunk| {
            for piece in chunk {
                failure.check()?;
                self.write_piece(
                    piece,
                    &data[piece.start_in_block..piece.start_in_block + piece.len],
                    spans,
                )?;
            }
            Ok(())
        })
    }

    fn write_piece<'s>(&'s self, piece: &Piece, bytes: &[u8], spans: &[Span<'s>]) -> Result<()> {
        let i = piece.entry as usize;
        match piece.span {
            None => self.write_whole(i, bytes)?,
            Some(s) => {
                let span = &spans[s as usize];
                // Write through a duplicate handle so that pieces go in parallel, outside the lock.
                let file = {
                    let mut slot = span.temp.lock().unwrap_or_else(|e| e.into_inner());
                    let temp = match slot.take() {
                        Some(temp) => temp,
                        None => TempFile::create(self.parent_dir(i)?)
                            .with_context(|| format!("creating {}", self.display(i)))?,
                    };
                    let file = temp.file.try_clone().with_context(|| format!("writing {}", self.display(i)));
                    *slot = Some(temp);
                    file?
                };
                file.write_all_at(bytes, piece.file_offset)
                    .with_context(|| format!("writing {}", self.display(i)))?;
                drop(file);
                // Every other piece has been written once the count reaches zero.
                if span.blocks_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let temp = span.temp.lock().unwrap_or_else(|e| e.into_inner()).take();
                    let temp = temp.ok_or_else(|| anyhow!("{}: spanning file vanished", self.display(i)))?;
                    self.persist(span.entry as usize, &temp)?;
                }
            }
        }
        Counters::add(&self.counters.bytes_in, piece.len as u64);
        Ok(())
    }

    fn write_whole(&self, i: usize, bytes: &[u8]) -> Result<()> {
        let temp =
            TempFile::create(self.parent_dir(i)?).with_context(|| format!("creating {}", self.display(i)))?;
        (&temp.file).write_all(bytes).with_context(|| format!("writing {}", self.display(i)))?;
        self.persist(i, &temp)
    }

    fn persist(&self, i: usize, temp: &TempFile) -> Result<()> {
        let entry = &self.index.entries[i];
        let placed = temp
            .persist(&entry.name, entry.mode & self.mode_mask, entry.mtime, self.replace)
            .with_context(|| format!("writing {}", self.display(i)))?;
        self.placed(i, placed)
    }

    /// After a create that refuses to replace: `placed` is false if something appeared at the
    /// entry's name since the probe.
    fn placed(&self, i: usize, placed: bool) -> Result<()> {
        if placed {
            Counters::add(&self.counters.entries, 1);
            self.console.path(|| self.index.path(i));
        } else if self.options.existing == Existing::Refuse {
            bail!("refusing to replace existing {}: it appeared during extraction", self.display(i));
        }
        Ok(())
    }

    /// Pass 4: symlinks, once every file is in place.
    fn make_symlinks(&self, stop: &Stop) -> Result<()> {
        for i in 0..self.index.entries.len() {
            let entry: &Entry = &self.index.entries[i];
            if entry.kind != Kind::Symlink || !matches!(self.actions[i], Action::Create | Action::Replace) {
                continue;
            }
            stop.check()?;
            let target = entry.target.as_deref().ok_or_else(|| anyhow!("symlink without a target"))?;
            let parent = self.parent_dir(i)?;
            let placed = dest::symlink(parent.as_fd(), target, &entry.name, entry.mtime, self.replace)
                .with_context(|| format!("creating symlink {}", self.display(i)))?;
            self.placed(i, placed)?;
        }
        Ok(())
    }

    /// Pass 5: directory modes and mtimes, children before parents so that creating entries
    /// does not disturb a parent's mtime afterwards. Pre-existing directories that are only
    /// ancestors of the selection are left as they were.
    fn finish_dirs(&self, selected: &[Selected]) -> Result<()> {
        for i in (0..self.index.entries.len()).rev() {
            let entry = &self.index.entries[i];
            let action = self.actions[i];
            let apply = match action {
                Action::Skip => false,
                Action::Merge => selected[i] == Selected::Yes,
                Action::Create | Action::Replace => true,
            };
            if entry.kind != Kind::Dir || !apply {
                continue;
            }
            let fd = self.dir(i)?;
            dest::set_metadata(&fd, entry.mode & self.mode_mask, entry.mtime)
                .with_context(|| format!("setting mode and mtime of {}", self.display(i)))?;
        }
        Ok(())
    }
}
