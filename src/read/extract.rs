//! The extraction passes of `arc read` (see the parent module for their order), carried out
//! through [`super::dest`] beneath a handle on DEST.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;

use super::dest::{self, Attrs, DirFd, Refused, Replace, Special, TempFile};
use super::plan::{self, creates, Action, Decision, Plan};
use super::{Existing, Owners, ReadOptions};
use crate::archive::Archive;
use crate::format::{file_writes, FilePiece, Index, Kind};
use crate::select::Selected;
use crate::stop::{Failure, Stop};
use crate::ui::{text_of, Console, Counters};

/// How many files of one block a thread creates before others may take the rest.
const PIECES_PER_TASK: usize = 32;

pub(super) struct Extraction<'a, 'i> {
    options: &'a ReadOptions,
    /// The archive file; `None` for an archive read from a pipe, whose blocks are handed in.
    archive: Option<&'a Archive>,
    /// The archive's name in messages.
    archive_name: &'a camino::Utf8Path,
    index: &'i Index,
    console: &'a Console,
    dest_fd: OwnedFd,
    actions: Vec<Action>,
    /// Open handles on directories, by entry, kept while within `dir_budget`.
    dirs: Vec<Option<OwnedFd>>,
    dir_budget: usize,
    mode_mask: u16,
    replace: Replace,
    counters: &'a Counters,
    /// Directories that land where an earlier directory of this run does (see
    /// `settle_duplicate`): opened, not made.
    merged: Vec<bool>,
    /// The file work, once probed.
    plan: Plan,
    /// Owners to give, by the ids the archive stores: `None` when owners are not restored.
    owners: Option<OwnerMap>,
    /// arc's effective uid and gid.
    ids: (u32, u32),
    /// With `--strip-components`, what this run creates, by path (see `settle_duplicate`).
    planned: HashMap<String, usize>,
    /// Of an archive read from a pipe: files spanning blocks being written, by entry, with
    /// their bytes still to come.
    open: Mutex<HashMap<u32, (TempFile<'static>, u64)>>,
    /// The owner names of the index `owners` was made from (a pipe's index grows).
    owner_rows: usize,
    /// Of an archive read from a pipe: the copies to make whose source's bytes came before
    /// their record did, in order (see [`Extraction::note_late_copies`]).
    late: Vec<u32>,
    /// When owners are restored, the group a new entry gets in each directory this run writes
    /// into (Linux's rule: the directory's group if it is setgid, else arc's; new directories
    /// inherit the rule), by directory entry, `None` for DEST: so that a chown that would
    /// change nothing (root extracting root's files) is not made, one system call a file.
    new_group: HashMap<Option<u32>, u32>,
}

/// The ids to give for the archive's ids: by name where the name exists here (tar's rule), else
/// the same number.
struct OwnerMap {
    users: HashMap<u32, u32>,
    groups: HashMap<u32, u32>,
}

impl OwnerMap {
    fn new(index: &Index, by_name: bool) -> OwnerMap {
        let mut map = OwnerMap { users: HashMap::new(), groups: HashMap::new() };
        if !by_name {
            return map;
        }
        for (id, name) in &index.tables.users {
            let Ok(name) = std::str::from_utf8(name) else { continue };
            if let Ok(Some(user)) = nix::unistd::User::from_name(name) {
                map.users.insert(*id, user.uid.as_raw());
            }
        }
        for (id, name) in &index.tables.groups {
            let Ok(name) = std::str::from_utf8(name) else { continue };
            if let Ok(Some(group)) = nix::unistd::Group::from_name(name) {
                map.groups.insert(*id, group.gid.as_raw());
            }
        }
        map
    }

    fn get(&self, uid: u32, gid: u32) -> (u32, u32) {
        (*self.users.get(&uid).unwrap_or(&uid), *self.groups.get(&gid).unwrap_or(&gid))
    }
}

/// Bytes of a block that go into a file spanning blocks, read from a pipe: the file's
/// temporary file, and (offset in the file, range in the block) of each write.
pub(super) struct SpanWrite {
    entry: u32,
    pub file: std::fs::File,
    pub places: Vec<(u64, std::ops::Range<usize>)>,
    len: u64,
    /// The file's path beneath DEST, for messages.
    pub shown: String,
}

/// What reports on a file written: it is counted and named for `-v`, the attributes refused
/// are warned of, and something that appeared at its name is an error without `--overwrite`
/// or `--keep-existing`.
pub(super) struct Report<'r> {
    pub console: &'r Console,
    pub counters: &'r Counters,
    pub existing: Existing,
    pub replace: Replace,
}

/// Where a whole file goes and how its bytes lie in it.
struct File<'d, 'x> {
    dir: DirFd<'d>,
    name: &'x [u8],
    /// Its extents and size, if stored sparse.
    sparse: Option<(&'x [crate::format::Extent], u64)>,
}

/// Writes a whole file: under a temporary name in its directory, its bytes (a sparse file's in
/// its extents, its holes never written), then [`finish_file`]. `shown` names it beneath DEST
/// in messages, `listed` as `-v` prints it. What both readers, of a file and of a pipe, do.
fn write_file(
    report: &Report,
    file: File,
    bytes: &[u8],
    attrs: &Attrs,
    shown: &dyn Fn() -> String,
    listed: &dyn Fn() -> String,
) -> Result<()> {
    let temp = TempFile::create(file.dir).with_context(|| format!("creating {}", shown()))?;
    match file.sparse {
        Some((extents, _)) => {
            for (offset, range) in file_writes(Some(extents), 0, bytes.len()) {
                temp.file
                    .write_all_at(&bytes[range], offset)
                    .with_context(|| format!("writing {}", shown()))?;
            }
        }
        None => (&temp.file).write_all(bytes).with_context(|| format!("writing {}", shown()))?,
    }
    finish_file(report, &temp, file.name, file.sparse.map(|(_, size)| size), attrs, shown, listed)
}

/// Puts a written file in place as `name` with its owner, attributes, mode and mtime; a sparse
/// file first gets its `size` (it may end in a hole).
fn finish_file(
    report: &Report,
    temp: &TempFile,
    name: &[u8],
    size: Option<u64>,
    attrs: &Attrs,
    shown: &dyn Fn() -> String,
    listed: &dyn Fn() -> String,
) -> Result<()> {
    if let Some(size) = size {
        temp.file.set_len(size).with_context(|| format!("writing {}", shown()))?;
    }
    let (placed, refused) =
        temp.persist(name, attrs, report.replace).with_context(|| format!("writing {}", shown()))?;
    warn_refused(report.console, &refused, shown);
    note_placed(report, placed, shown, listed)
}

/// After a create that refuses to replace: `placed` is false if something appeared at the
/// entry's name since the probe.
fn note_placed(
    report: &Report,
    placed: bool,
    shown: &dyn Fn() -> String,
    listed: &dyn Fn() -> String,
) -> Result<()> {
    if placed {
        Counters::add(&report.counters.entries, 1);
        report.console.path(listed);
    } else if report.existing == Existing::Refuse {
        bail!("refusing to replace existing {}: it appeared during extraction", shown());
    }
    Ok(())
}

/// Warns of the attributes the destination refused.
fn warn_refused(console: &Console, refused: &Refused, shown: &dyn Fn() -> String) {
    if let Some((_, why)) = refused.first() {
        let names: Vec<_> = refused.iter().map(|(name, _)| text_of(name).into_owned()).collect();
        console.warn(format!(
            "setting extended attributes {} of {}: {why} (not restored)",
            names.join(", "),
            shown()
        ));
    }
}

/// A whole file of a block read from a pipe, as [`Extraction::file_jobs`] makes it: all a
/// decoder needs to write it. Small (a block of tiny files holds tens of thousands, and
/// several blocks are in flight): its directory is shared, what few files have is boxed.
pub(super) struct FileJob {
    dir: std::sync::Arc<JobDir>,
    name: Box<[u8]>,
    /// Its bytes in the block.
    range: std::ops::Range<usize>,
    owner: Option<(u32, u32)>,
    mode: u16,
    mtime: crate::format::Mtime,
    rare: Option<Box<Rare>>,
}

/// The directory of [`FileJob`]s: a handle on it, and its path as messages and `-v` give it.
struct JobDir {
    fd: OwnedFd,
    shown: String,
    listed: String,
}

/// What only some files have: extents and size if stored sparse, extended attributes.
struct Rare {
    sparse: Option<(Vec<crate::format::Extent>, u64)>,
    xattrs: Vec<crate::format::Xattr>,
}

impl FileJob {
    /// Writes the file from the decoded block `data`.
    pub(super) fn write(&self, report: &Report, data: &[u8]) -> Result<()> {
        let rare = self.rare.as_deref();
        let xattrs = rare.map(|r| r.xattrs.iter().collect()).unwrap_or_default();
        let attrs = Attrs { owner: self.owner, mode: self.mode, mtime: self.mtime, xattrs };
        let sparse = rare.and_then(|r| r.sparse.as_ref()).map(|(extents, size)| (extents.as_slice(), *size));
        let file = File { dir: DirFd::Borrowed(self.dir.fd.as_fd()), name: &self.name, sparse };
        let bytes = &data[self.range.clone()];
        let name = || text_of(&self.name).into_owned();
        let shown = || format!("{}/{}", self.dir.shown, name());
        let listed = || match self.dir.listed.is_empty() {
            true => name(),
            false => format!("{}/{}", self.dir.listed, name()),
        };
        write_file(report, file, bytes, &attrs, &shown, &listed)?;
        Counters::add(&report.counters.data, bytes.len() as u64);
        Ok(())
    }
}

/// Owners to give, if owners are restored.
fn owner_map(options: &ReadOptions, index: &Index) -> Option<OwnerMap> {
    match options.owners {
        // Only root can give files away; anyone else keeps them, which is no loss to warn
        // about (tar's rule too).
        _ if !rustix::process::geteuid().is_root() || !index.tables.owners => None,
        Owners::Skip => None,
        Owners::ByName => Some(OwnerMap::new(index, true)),
        Owners::Numeric => Some(OwnerMap::new(index, false)),
    }
}

/// What the block decoders of pass 3 share.
#[derive(Clone, Copy)]
struct FileWork<'w, 's> {
    plan: &'w Plan,
    spans: &'w [Span<'s>],
    failure: &'w Failure<'w>,
    pool: &'w crate::sys::LazyPool,
}

/// A file whose bytes span several blocks. Its temporary file is created by the first piece
/// to arrive and taken by the last, so open handles track the files in progress, not the
/// archive's size.
struct Span<'a> {
    temp: Mutex<Option<TempFile<'a>>>,
    blocks_left: AtomicUsize,
}

impl<'a, 'i> Extraction<'a, 'i> {
    /// Opens DEST (which must exist) for an extraction of `archive`.
    pub(super) fn new(
        options: &'a ReadOptions,
        archive: &'i Archive,
        console: &'a Console,
        counters: &'a Counters,
    ) -> Result<Self>
    where
        'i: 'a,
    {
        Extraction::of(options, Some(archive), &archive.path, &archive.index, console, counters)
    }

    /// The same for an archive read from a pipe, named `path`, whose `index` grows (call
    /// [`Extraction::grown`] after it does).
    pub(super) fn of(
        options: &'a ReadOptions,
        archive: Option<&'a Archive>,
        archive_name: &'a camino::Utf8Path,
        index: &'i Index,
        console: &'a Console,
        counters: &'a Counters,
    ) -> Result<Self> {
        let dest_fd = rustix::fs::open(
            options.dest.as_str(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .with_context(|| format!("opening {}", options.dest))?;
        let count = index.entries.len();
        let mut dirs = Vec::new();
        dirs.resize_with(count, || None);
        Ok(Extraction {
            options,
            archive,
            archive_name,
            index,
            console,
            dest_fd,
            actions: vec![Action::Skip; count],
            dirs,
            dir_budget: crate::sys::raise_fd_limit(),
            mode_mask: if options.same_permissions { 0o7777 } else { 0o1777 },
            replace: if options.existing == Existing::Overwrite { Replace::Always } else { Replace::Never },
            counters,
            merged: vec![false; count],
            plan: Plan::default(),
            ids: (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw()),
            new_group: HashMap::new(),
            owners: owner_map(options, index),
            planned: HashMap::new(),
            open: Mutex::new(HashMap::new()),
            owner_rows: index.tables.users.len() + index.tables.groups.len(),
            late: Vec::new(),
        })
        .map(|mut extraction| {
            let dest = extraction.dest_fd.try_clone();
            if let Ok(dest) = dest {
                extraction.note_new_group(None, dest.as_fd());
            }
            extraction
        })
    }

    /// The same extraction over `index`, the index it had grown by entries (and blocks) read
    /// from a pipe since: everything decided and opened so far carries over.
    pub(super) fn grown<'j>(self, index: &'j Index) -> Extraction<'a, 'j> {
        // Never fewer: the index this one is set aside with (`Extraction::aside`) is empty.
        let count = index.entries.len().max(self.actions.len());
        let (mut actions, mut dirs, mut merged) = (self.actions, self.dirs, self.merged);
        actions.resize(count, Action::Skip);
        dirs.resize_with(count, || None);
        merged.resize(count, false);
        let rows = index.tables.users.len() + index.tables.groups.len();
        let (owners, owner_rows) = match rows == self.owner_rows || index.entries.is_empty() {
            true => (self.owners, self.owner_rows),
            // New owner names: the map is made again (there are few).
            false => (owner_map(self.options, index), rows),
        };
        Extraction {
            options: self.options,
            archive: self.archive,
            archive_name: self.archive_name,
            index,
            console: self.console,
            dest_fd: self.dest_fd,
            actions,
            dirs,
            dir_budget: self.dir_budget,
            mode_mask: self.mode_mask,
            replace: self.replace,
            counters: self.counters,
            merged,
            plan: self.plan,
            owners,
            ids: self.ids,
            new_group: self.new_group,
            planned: self.planned,
            open: self.open,
            owner_rows,
            late: self.late,
        }
    }

    /// Records the group new entries get in directory `key` (open as `dir`), if owners are
    /// restored. A directory that cannot be looked at gets no entry: its entries are always
    /// given their owners.
    fn note_new_group(&mut self, key: Option<u32>, dir: BorrowedFd<'_>) {
        if self.owners.is_none() {
            return;
        }
        if let Ok(stat) = rustix::fs::fstat(dir) {
            let setgid = stat.st_mode & 0o2000 != 0;
            self.new_group.insert(key, if setgid { stat.st_gid } else { self.ids.1 });
        }
    }

    /// The directory entry that holds entry `i` as extraction sees it (`None`: DEST).
    fn parent_key(&self, i: usize) -> Option<u32> {
        self.index.entries[i].parent().filter(|&p| !self.stripped(p as usize))
    }

    /// Bytes of file contents the extraction will write, once probed.
    pub(super) fn data_to_write(&self) -> u64 {
        (0..self.index.entries.len())
            .filter(|&i| self.plan.writes(self.index, &self.actions, i))
            .filter_map(|i| self.index.data_entry(i))
            .map(|d| self.index.stored(d))
            .sum()
    }

    /// The entry's path beneath DEST, for messages (escaped when printed, not here): its path
    /// in the archive less the `--strip-components` leading ones.
    fn display(&self, i: usize) -> String {
        let path = self.index.path(i);
        let strip = self.options.strip_components as usize;
        let kept = path.splitn(strip + 1, |&b| b == b'/').nth(strip).unwrap_or(&path);
        format!("{}/{}", self.options.dest.as_str().trim_end_matches('/'), text_of(kept))
    }

    /// The entry's path in the archive, for `-v`.
    fn archive_path(&self, i: usize) -> String {
        text_of(&self.index.path(i)).into_owned()
    }

    /// What is restored of entry `i` besides its contents. The extended attributes are those
    /// of its data entry for a hard link that holds data (they are one inode).
    fn attrs(&self, i: usize) -> Attrs<'i> {
        let entry = &self.index.entries[i];
        let index: &'i Index = self.index;
        let all = self.options.same_permissions;
        let xattrs = index
            .xattrs(index.data_entry(i).unwrap_or(i))
            .iter()
            .filter(|x| all || restored_by_default(&x.name))
            .collect();
        // An entry this run made is arc's, in the group of its directory's rule: no chown is
        // needed when that is the owner wanted.
        let made_here = self.actions[i] != Action::Merge;
        let unchanged = |&(uid, gid): &(u32, u32)| {
            made_here && uid == self.ids.0 && self.new_group.get(&self.parent_key(i)) == Some(&gid)
        };
        Attrs {
            owner: self
                .owners
                .as_ref()
                .map(|map| map.get(entry.uid, entry.gid))
                .filter(|ids| !unchanged(ids)),
            mode: entry.mode & self.mode_mask,
            mtime: entry.mtime,
            xattrs,
        }
    }

    /// Warns of the attributes the destination refused for entry `i`.
    fn refused(&self, i: usize, refused: Refused) {
        warn_refused(self.console, &refused, &|| self.display(i));
    }

    /// Whether entry `i` is one of the leading components `--strip-components` leaves out.
    fn stripped(&self, i: usize) -> bool {
        u32::from(self.index.entries[i].depth) < self.options.strip_components
    }

    /// A handle on the directory that holds entry `i` (DEST for a root, or for an entry right
    /// below the components stripped).
    fn parent_dir(&self, i: usize) -> Result<DirFd<'_>> {
        match self.index.entries[i].parent() {
            Some(p) if !self.stripped(p as usize) => self.dir(p as usize),
            _ => Ok(DirFd::Borrowed(self.dest_fd.as_fd())),
        }
    }

    /// A handle on directory entry `i`: cached, or opened from its parent without following
    /// links.
    fn dir(&self, i: usize) -> Result<DirFd<'_>> {
        if let Some(fd) = &self.dirs[i] {
            return Ok(DirFd::Borrowed(fd.as_fd()));
        }
        let parent = self.parent_dir(i)?;
        let fd = dest::open_dir(&parent, self.index.name(i))
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
    pub(super) fn probe(&mut self, selected: &[Selected]) -> Result<()> {
        self.probe_range(0..selected.len(), |i| selected[i])?;
        self.plan = Plan::new(self.index, &self.actions);
        Ok(())
    }

    /// [`Extraction::probe`] for the entries of `range` (of an archive read from a pipe, those
    /// of one record): what is refused, is refused before they are written.
    pub(super) fn probe_range(
        &mut self,
        range: std::ops::Range<usize>,
        selected: impl Fn(usize) -> Selected,
    ) -> Result<()> {
        let mut conflicts = Vec::new();
        // With --strip-components, two entries can land on one path (`a/x` and `b/x`): what
        // this run will create, by path (`planned`), to merge directories and settle files as
        // tar does.
        let mut planned = std::mem::take(&mut self.planned);
        for i in range {
            if selected(i) == Selected::No {
                continue;
            }
            if self.stripped(i) {
                // Not created; what is below it goes into DEST.
                continue;
            }
            let entry = &self.index.entries[i];
            let parent_action =
                entry.parent().filter(|&p| !self.stripped(p as usize)).map(|p| self.actions[p as usize]);
            let action = match plan::inherited(parent_action) {
                Some(action) => action,
                None => {
                    let parent = self.parent_dir(i)?;
                    let found = dest::probe(&parent, self.index.name(i))
                        .with_context(|| format!("reading {}", self.display(i)))?;
                    drop(parent);
                    match plan::decide(entry.is_dir(), found, self.options.existing) {
                        Decision::Act(Action::Merge) => {
                            match self.dir(i)? {
                                DirFd::Owned(fd) => {
                                    self.note_new_group(Some(i as u32), fd.as_fd());
                                    self.cache_dir(i, fd);
                                }
                                DirFd::Borrowed(fd) => {
                                    let fd = fd.try_clone_to_owned()?;
                                    self.note_new_group(Some(i as u32), fd.as_fd());
                                }
                            }
                            Action::Merge
                        }
                        Decision::Act(action) => action,
                        Decision::Conflict => {
                            conflicts.push(i);
                            Action::Skip
                        }
                        Decision::WouldReplaceDir => {
                            bail!("refusing to replace directory {} with a non-directory", self.display(i))
                        }
                    }
                }
            };
            let action = match action {
                Action::Create | Action::Replace if self.options.strip_components > 0 => {
                    self.settle_duplicate(i, action, &mut planned, &mut conflicts)?
                }
                action => action,
            };
            self.actions[i] = action;
        }
        self.planned = planned;
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

    /// For an entry this run creates, with `--strip-components`: if an earlier entry lands on
    /// the same path, directories merge (the later one is made by the earlier), and a file
    /// follows the existing-file policy against the earlier entry: refused, kept (the later
    /// one skipped), or with `--overwrite` the later one wins, deterministically.
    fn settle_duplicate(
        &mut self,
        i: usize,
        action: Action,
        planned: &mut HashMap<String, usize>,
        conflicts: &mut Vec<usize>,
    ) -> Result<Action> {
        let path = self.display(i);
        let Some(&earlier) = planned.get(&path) else {
            planned.insert(path, i);
            return Ok(action);
        };
        let (first, second) = (&self.index.entries[earlier], &self.index.entries[i]);
        if first.is_dir() && second.is_dir() {
            self.merged[i] = true;
            return Ok(action);
        }
        match self.options.existing {
            Existing::Refuse => {
                conflicts.push(i);
                Ok(Action::Skip)
            }
            Existing::Keep => Ok(Action::Skip),
            Existing::Overwrite if first.is_dir() || second.is_dir() => {
                bail!("refusing to replace directory {path} with a non-directory (two entries land there)")
            }
            Existing::Overwrite => {
                self.actions[earlier] = Action::Skip;
                planned.insert(path, i);
                Ok(action)
            }
        }
    }

    /// Pass 2: create directories, parents first.
    pub(super) fn make_dirs(&mut self) -> Result<()> {
        self.make_dirs_range(0..self.index.entries.len())
    }

    /// [`Extraction::make_dirs`] for the entries of `range`.
    pub(super) fn make_dirs_range(&mut self, range: std::ops::Range<usize>) -> Result<()> {
        for i in range {
            let entry = &self.index.entries[i];
            let action = self.actions[i];
            if !entry.is_dir() || !matches!(action, Action::Create | Action::Replace) {
                continue;
            }
            let parent = self.parent_dir(i)?;
            let path = || self.display(i);
            if action == Action::Replace && !self.merged[i] {
                dest::remove(&parent, self.index.name(i), false)
                    .with_context(|| format!("removing {}", path()))?;
            }
            // A directory merged with an earlier one of this run (--strip-components) exists.
            if !self.merged[i] {
                dest::make_dir(&parent, self.index.name(i))
                    .with_context(|| format!("creating {}", path()))?;
            }
            let fd =
                dest::open_dir(&parent, self.index.name(i)).with_context(|| format!("opening {}", path()))?;
            drop(parent);
            if let Some(&group) = self.new_group.get(&self.parent_key(i)) {
                self.new_group.insert(Some(i as u32), group);
            }
            Counters::add(&self.counters.entries, 1);
            self.console.path(|| self.archive_path(i));
            self.cache_dir(i, fd);
        }
        Ok(())
    }

    /// Pass 3: file contents, block by block on all threads.
    /// Block decoders are plain threads, each with its own two buffers, taking the needed blocks
    /// in turn; the files of a block are written on the rayon pool. So the number of blocks
    /// in memory is exactly the number of decoders ([`Archive::decode_threads`], within the
    /// archive's budget): a rayon task never decodes a block, so none can start a second one
    /// while it waits for the files of the first.
    pub(super) fn write_files(&self, stop: &Stop) -> Result<()> {
        let failure = Failure::new(stop);
        let plan = &self.plan;
        let spans: Vec<Span> = plan
            .spans
            .iter()
            .map(|&(_, blocks)| Span { temp: Mutex::new(None), blocks_left: AtomicUsize::new(blocks) })
            .collect();
        let pool = crate::sys::LazyPool::new(self.options.threads);
        if !plan.empty.is_empty() {
            pool.get()?.install(|| {
                plan.empty.par_iter().for_each(|&i| {
                    if !failure.stopping() {
                        if let Err(e) = self.write_whole(i as usize, &[]) {
                            failure.record(e);
                        }
                    }
                });
            });
        }
        let next = AtomicUsize::new(0);
        let decode = || {
            let (mut frame, mut data) = (Vec::new(), Vec::new());
            while !failure.stopping() {
                let Some(&b) = plan.blocks.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                let work = FileWork { plan, spans: &spans, failure: &failure, pool: &pool };
                let written = self.write_block(b, &work, &mut frame, &mut data);
                if let Err(e) = written {
                    failure.record(e);
                }
            }
        };
        // No more decoders than blocks; one (a file out of one block, say) on this thread.
        let archive = self.archive.ok_or_else(|| anyhow!("no archive file to read blocks from"))?;
        match archive.decode_threads(self.options.threads).min(plan.blocks.len()) {
            0 => {}
            1 => decode(),
            decoders => std::thread::scope(|scope| {
                for _ in 0..decoders {
                    scope.spawn(decode);
                }
            }),
        }
        failure.take()
    }

    fn write_block<'s>(
        &'s self,
        b: usize,
        work: &FileWork<'_, 's>,
        frame: &mut Vec<u8>,
        data: &mut Vec<u8>,
    ) -> Result<()> {
        let FileWork { plan, spans, failure, pool } = *work;
        let block = &self.index.blocks[b];
        let pieces: Vec<FilePiece> = plan.pieces(self.index, &self.actions, b).collect();
        // Only as far as the last piece wanted: one file out of a block stops there.
        let wanted = pieces.iter().map(|p| p.start_in_block + p.len).max().unwrap_or(0);
        let archive = self.archive.ok_or_else(|| anyhow!("no archive file to read blocks from"))?;
        archive.read_block_start(block, frame, data, wanted).map_err(|e| self.damaged(&pieces, e))?;
        Counters::add(&self.counters.archive, block.len);
        self.write_pieces(&pieces, data, failure, pool, |piece, bytes| match plan.span_of(piece.entry) {
            None => self.write_whole(piece.entry as usize, bytes),
            Some(s) => self.write_span_piece(piece, bytes, &spans[s]),
        })
    }

    /// The same for block `b` of an archive read from a pipe.
    pub(super) fn damaged_block(
        &self,
        b: usize,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> anyhow::Error {
        let pieces: Vec<FilePiece> = self.index.files_in(b).collect();
        self.damaged(&pieces, e)
    }

    /// The error of a block that does not decode, naming the first entries it holds.
    fn damaged(
        &self,
        pieces: &[FilePiece],
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> anyhow::Error {
        let mut names: Vec<String> =
            pieces.iter().take(5).map(|p| self.archive_path(p.entry as usize)).collect();
        if pieces.len() > 5 {
            names.push(format!("and {} more", pieces.len() - 5));
        }
        anyhow::Error::new(e).context(format!(
            "reading {}: damaged data of {}",
            self.archive_name,
            names.join(", ")
        ))
    }

    /// Writes the pieces of a decoded block, each with `write`: on this thread if there are
    /// few, else shared out on the pool in tasks of [`PIECES_PER_TASK`].
    fn write_pieces(
        &self,
        pieces: &[FilePiece],
        data: &[u8],
        failure: &Failure,
        pool: &crate::sys::LazyPool,
        write: impl Fn(&FilePiece, &[u8]) -> Result<()> + Sync,
    ) -> Result<()> {
        let write_chunk = |chunk: &[FilePiece]| -> Result<()> {
            for piece in chunk {
                if failure.stopping() {
                    // The first error is recorded already; this piece has nothing to add.
                    return Ok(());
                }
                write(piece, &data[piece.start_in_block..piece.start_in_block + piece.len])?;
                Counters::add(&self.counters.data, piece.len as u64);
            }
            Ok(())
        };
        if pieces.len() <= PIECES_PER_TASK {
            return write_chunk(pieces);
        }
        // A block of small files holds hundreds of them: share them out on the pool, so that
        // the threads are not idle while one of them creates every file of the block.
        pool.get()?.install(|| pieces.par_chunks(PIECES_PER_TASK).try_for_each(write_chunk))
    }

    /// Of an archive read from a pipe: the files of `range` (a record's entries) that have no
    /// bytes in the data stream, created at once (empty, or all holes).
    pub(super) fn write_empty_range(&self, range: std::ops::Range<usize>) -> Result<()> {
        for i in range {
            let empty =
                matches!(self.index.entries[i].kind(), Kind::File { .. }) && self.index.stored(i) == 0;
            if empty && creates(self.actions[i]) {
                self.write_whole(i, &[])?;
            }
        }
        Ok(())
    }

    /// Of an archive read from a pipe: the pieces of files spanning blocks that block `b`
    /// holds, each with a handle on its file's temporary file (made by the first piece that
    /// comes) and where its bytes go in it: written by the decoder of the block as soon as it
    /// is decoded, as a reader of a file writes them, while this thread goes on.
    pub(super) fn span_writes(&self, b: usize) -> Result<Vec<SpanWrite>> {
        let mut writes = Vec::new();
        for piece in self.index.files_in(b).filter(|p| !p.whole && self.streams(p.entry)) {
            let i = piece.entry as usize;
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            if let std::collections::hash_map::Entry::Vacant(slot) = open.entry(piece.entry) {
                // The directory by a handle of its own: the file outlives this extraction value.
                let dir = match self.parent_dir(i)? {
                    DirFd::Owned(fd) => fd,
                    DirFd::Borrowed(fd) => fd.try_clone_to_owned()?,
                };
                let temp = TempFile::create(DirFd::Owned(dir))
                    .with_context(|| format!("creating {}", self.display(i)))?;
                let stored = self.index.stored(self.index.data_entry(i).unwrap_or(i));
                slot.insert((temp, stored));
            }
            let (temp, _) = &open[&piece.entry];
            let file = temp.file.try_clone().with_context(|| format!("writing {}", self.display(i)))?;
            let extents = self.index.data_entry(i).and_then(|d| self.index.extents(d));
            let at = piece.start_in_block;
            let places = file_writes(extents, piece.file_offset, piece.len)
                .map(|(offset, range)| (offset, range.start + at..range.end + at))
                .collect();
            let shown = self.display(i);
            writes.push(SpanWrite { entry: piece.entry, file, places, len: piece.len as u64, shown });
        }
        Ok(writes)
    }

    /// Of an archive read from a pipe: block `b` is decoded, its whole files and its
    /// `span_writes` written by its decoder. Puts in place the files spanning blocks that it
    /// completes.
    pub(super) fn write_streamed(&self, b: usize, spans: &[SpanWrite]) -> Result<()> {
        Counters::add(&self.counters.archive, self.index.blocks[b].len);
        for span in spans {
            Counters::add(&self.counters.data, span.len);
            let done = {
                let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                let left = open.get_mut(&span.entry).map(|(_, left)| {
                    *left -= span.len;
                    *left
                });
                match left {
                    Some(0) => open.remove(&span.entry).map(|(temp, _)| temp),
                    _ => None,
                }
            };
            if let Some(temp) = done {
                self.persist(span.entry as usize, &temp)?;
            }
        }
        Ok(())
    }

    /// Writes one piece of a file spanning blocks at its offset; the last piece renames it.
    fn write_span_piece<'s>(&'s self, piece: &FilePiece, bytes: &[u8], span: &Span<'s>) -> Result<()> {
        let i = piece.entry as usize;
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
        self.write_at(i, &file, bytes, piece.file_offset)?;
        drop(file);
        // Every other piece has been written once the count reaches zero.
        if span.blocks_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let temp = span.temp.lock().unwrap_or_else(|e| e.into_inner()).take();
            let temp = temp.ok_or_else(|| anyhow!("{}: spanning file vanished", self.display(i)))?;
            self.persist(i, &temp)?;
        }
        Ok(())
    }

    /// Writes the stored bytes of entry `i`'s file from `stored_offset` on where they belong:
    /// at the same offset, or for a sparse file in its extents (the holes are never written).
    fn write_at(&self, i: usize, file: &std::fs::File, bytes: &[u8], stored_offset: u64) -> Result<()> {
        let extents = self.index.data_entry(i).and_then(|d| self.index.extents(d));
        for (offset, range) in file_writes(extents, stored_offset, bytes.len()) {
            file.write_all_at(&bytes[range], offset)
                .with_context(|| format!("writing {}", self.display(i)))?;
        }
        Ok(())
    }

    fn write_whole(&self, i: usize, bytes: &[u8]) -> Result<()> {
        let file = File { dir: self.parent_dir(i)?, name: self.index.name(i), sparse: self.sparse(i) };
        write_file(&self.report(), file, bytes, &self.attrs(i), &|| self.display(i), &|| self.archive_path(i))
    }

    fn persist(&self, i: usize, temp: &TempFile) -> Result<()> {
        let size = self.sparse(i).map(|(_, size)| size);
        let (name, attrs) = (self.index.name(i), self.attrs(i));
        finish_file(&self.report(), temp, name, size, &attrs, &|| self.display(i), &|| self.archive_path(i))
    }

    /// Entry `i`'s extents and size, if its data is stored sparse.
    fn sparse(&self, i: usize) -> Option<(&'i [crate::format::Extent], u64)> {
        let index: &'i Index = self.index;
        let d = index.data_entry(i)?;
        index.extents(d).map(|extents| (extents, index.entries[d].size()))
    }

    /// What reports on the files this extraction writes.
    fn report(&self) -> Report<'a> {
        Report {
            console: self.console,
            counters: self.counters,
            existing: self.options.existing,
            replace: self.replace,
        }
    }

    /// After a create that refuses to replace: `placed` is false if something appeared at the
    /// entry's name since the probe.
    fn placed(&self, i: usize, placed: bool) -> Result<()> {
        note_placed(&self.report(), placed, &|| self.display(i), &|| self.archive_path(i))
    }

    /// Of an archive read from a pipe: the files that lie whole in block `b`, each as a job
    /// that needs nothing of the index (a handle on its directory, its name, what to restore,
    /// the names messages give it): written by the decoder of the block, in parallel with the
    /// reading of the stream, which goes on growing the index.
    pub(super) fn file_jobs(&self, b: usize) -> Result<Vec<FileJob>> {
        let mut dirs: HashMap<Option<u32>, std::sync::Arc<JobDir>> = HashMap::new();
        let mut jobs = Vec::new();
        for piece in self.index.files_in(b).filter(|p| p.whole && self.streams(p.entry)) {
            let i = piece.entry as usize;
            let key = self.parent_key(i);
            let dir = match dirs.get(&key) {
                Some(dir) => dir.clone(),
                None => {
                    let fd = match self.parent_dir(i)? {
                        DirFd::Owned(fd) => fd,
                        DirFd::Borrowed(fd) => fd.try_clone_to_owned()?,
                    };
                    // How messages and `-v` name what is in it (DEST itself above the roots).
                    let dest = self.options.dest.as_str().trim_end_matches('/').to_owned();
                    let (shown, listed) = match self.index.entries[i].parent() {
                        Some(p) if !self.stripped(p as usize) => {
                            (self.display(p as usize), self.archive_path(p as usize))
                        }
                        Some(p) => (dest, self.archive_path(p as usize)),
                        None => (dest, String::new()),
                    };
                    let dir = std::sync::Arc::new(JobDir { fd, shown, listed });
                    dirs.insert(key, dir.clone());
                    dir
                }
            };
            let attrs = self.attrs(i);
            let rare = match (self.sparse(i), attrs.xattrs.is_empty()) {
                (None, true) => None,
                (sparse, _) => Some(Box::new(Rare {
                    sparse: sparse.map(|(extents, size)| (extents.to_vec(), size)),
                    xattrs: attrs.xattrs.into_iter().cloned().collect(),
                })),
            };
            jobs.push(FileJob {
                dir,
                name: self.index.name(i).into(),
                range: piece.start_in_block..piece.start_in_block + piece.len,
                owner: attrs.owner,
                mode: attrs.mode,
                mtime: attrs.mtime,
                rare,
            });
        }
        Ok(jobs)
    }

    /// Of an archive read from a pipe: whether file `i`'s contents are written from the
    /// blocks as they come (a file created, unless a late copy).
    fn streams(&self, i: u32) -> bool {
        creates(self.actions[i as usize]) && self.late.binary_search(&i).is_err()
    }

    /// Of an archive read from a pipe: notes the copies among `range` (a record's entries)
    /// whose source is in an earlier record. Its bytes came in blocks that are gone, so they
    /// are made at the end from the file extracted with them
    /// ([`Extraction::make_late_copies`]).
    pub(super) fn note_late_copies(&mut self, range: std::ops::Range<usize>) {
        for i in range.clone() {
            let late = self.index.copy_source(i).is_some_and(|s| (s as usize) < range.start);
            if late && creates(self.actions[i]) {
                self.late.push(i as u32);
            }
        }
    }

    /// Of an archive read from a pipe, once every block is written: the late copies, each
    /// from a file extracted with its contents (its source, or another copy of it); a copy
    /// none was extracted for is skipped with a warning (and so are its hard links, in pass
    /// 4), as GNU tar skips a hard link to a file it did not extract from a stream.
    pub(super) fn make_late_copies(&mut self, stop: &Stop) -> Result<()> {
        // The file that holds each source's contents in DEST, found once per source.
        let mut holders: HashMap<u32, Option<u32>> = HashMap::new();
        for k in 0..self.late.len() {
            stop.check()?;
            let c = self.late[k] as usize;
            let Some(source) = self.index.copy_source(c) else { continue };
            let holder = *holders.entry(source).or_insert_with(|| {
                std::iter::once(source).chain(self.index.copies_of(source)).find(|&h| self.streams(h))
            });
            let Some(holder) = holder.map(|h| h as usize) else {
                self.console.warn(format!(
                    "skipping {}: its contents are those of {}, which was not extracted from this \
                     stream (read the archive from a file, or name that file too)",
                    self.display(c),
                    self.archive_path(source as usize)
                ));
                self.actions[c] = Action::Skip;
                continue;
            };
            let size = self.index.entries[c].size();
            let temp = TempFile::create(self.parent_dir(c)?)
                .with_context(|| format!("creating {}", self.display(c)))?;
            let from_dir = self.parent_dir(holder)?;
            dest::read_made(from_dir.as_fd(), self.index.name(holder), |from| {
                let copied = std::io::copy(&mut std::io::Read::take(from, size), &mut &temp.file)?;
                match copied == size {
                    true => Ok(()),
                    false => Err(std::io::Error::other("it changed since it was extracted")),
                }
            })
            .with_context(|| format!("copying {} to {}", self.display(holder), self.display(c)))?;
            Counters::add(&self.counters.data, size);
            self.persist(c, &temp)?;
        }
        Ok(())
    }

    /// Pass 4: hard links, FIFOs, devices and symlinks, once every file is in place.
    pub(super) fn make_links(&self, stop: &Stop) -> Result<()> {
        for (i, entry) in self.index.entries.iter().enumerate() {
            if !creates(self.actions[i]) {
                continue;
            }
            stop.check()?;
            match &entry.kind() {
                Kind::HardLink { .. } => {
                    let Some(source) = plan::link_source(self.index, &self.actions, &self.plan.holders, i)
                    else {
                        let Kind::HardLink { target } = entry.kind() else { continue };
                        if self.plan.holders.get(&target) != Some(&(i as u32)) {
                            // From a stream, a file not extracted is gone when its link comes.
                            self.console.warn(format!(
                                "skipping hard link {}: its file {} was not extracted from this \
                                 stream (read the archive from a file, or name that file too)",
                                self.display(i),
                                self.archive_path(target as usize)
                            ));
                        }
                        continue;
                    };
                    let source = source as usize;
                    let (from_dir, dir) = (self.parent_dir(source)?, self.parent_dir(i)?);
                    let from = self.index.name(source);
                    let placed = dest::hard_link(
                        from_dir.as_fd(),
                        from,
                        dir.as_fd(),
                        self.index.name(i),
                        self.replace,
                    )
                    .with_context(|| format!("linking {} to {}", self.display(i), self.display(source)))?;
                    self.placed(i, placed)?;
                }
                Kind::Symlink { .. } => {
                    let parent = self.parent_dir(i)?;
                    let (placed, refused) = dest::symlink(
                        parent.as_fd(),
                        self.index.target(i),
                        self.index.name(i),
                        &self.attrs(i),
                        self.replace,
                    )
                    .with_context(|| format!("creating symlink {}", self.display(i)))?;
                    self.refused(i, refused);
                    self.placed(i, placed)?;
                }
                Kind::Fifo | Kind::CharDevice { .. } | Kind::BlockDevice { .. } => self.make_special(i)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// A FIFO, for anyone; a device only with `--same-permissions` (a device node from an
    /// archive is a privilege), else a warning. A device the system refuses (not root) is a
    /// warning too: the rest of the archive is no less worth extracting.
    fn make_special(&self, i: usize) -> Result<()> {
        let entry = &self.index.entries[i];
        let special = match entry.kind() {
            Kind::CharDevice { major, minor } => Special::Char(major, minor),
            Kind::BlockDevice { major, minor } => Special::Block(major, minor),
            _ => Special::Fifo,
        };
        let device = !matches!(special, Special::Fifo);
        if device && !self.options.same_permissions {
            self.console.warn(format!(
                "skipping device {} (use --same-permissions to create devices)",
                self.display(i)
            ));
            return Ok(());
        }
        let parent = self.parent_dir(i)?;
        let placed = match dest::make_special(parent.as_fd(), self.index.name(i), special, self.replace) {
            Err(e) if device && e.kind() == std::io::ErrorKind::PermissionDenied => {
                self.console.warn(format!("skipping device {}: {e}", self.display(i)));
                return Ok(());
            }
            made => made.with_context(|| format!("creating {}", self.display(i)))?,
        };
        if placed {
            let refused = dest::set_metadata_at(parent.as_fd(), self.index.name(i), &self.attrs(i), false)
                .with_context(|| format!("setting the metadata of {}", self.display(i)))?;
            self.refused(i, refused);
        }
        self.placed(i, placed)
    }

    /// Pass 5: directory modes and mtimes, children before parents so that creating entries
    /// does not disturb a parent's mtime afterwards. Pre-existing directories that are only
    /// ancestors of the selection are left as they were.
    pub(super) fn finish_dirs(&self, selected: &[Selected]) -> Result<()> {
        for i in (0..self.index.entries.len()).rev() {
            let entry = &self.index.entries[i];
            let apply = match self.actions[i] {
                Action::Skip => false,
                Action::Merge => selected[i] == Selected::Yes,
                Action::Create | Action::Replace => true,
            };
            if !entry.is_dir() || !apply {
                continue;
            }
            let fd = self.dir(i)?;
            let refused = dest::set_metadata(&fd, &self.attrs(i))
                .with_context(|| format!("setting the metadata of {}", self.display(i)))?;
            self.refused(i, refused);
        }
        Ok(())
    }
}

/// Extended attributes restored without `--same-permissions`: the user namespace and POSIX
/// ACLs. The others (`security.*`: file capabilities, SELinux labels; `trusted.*`) are
/// privileges, as setuid bits are.
fn restored_by_default(name: &[u8]) -> bool {
    name.starts_with(b"user.") || name == b"system.posix_acl_access" || name == b"system.posix_acl_default"
}
