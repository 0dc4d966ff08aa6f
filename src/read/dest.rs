//! Filesystem operations confined beneath a destination directory handle.
//!
//! Every operation takes a directory file descriptor and a single name component (checked by
//! [`crate::format::Index`]), and no operation follows a symlink at that name: directories are opened
//! with `O_DIRECTORY | O_NOFOLLOW`, files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`
//! under a temporary name and renamed into place, and modes and times are applied through the
//! file descriptor that was created or opened without following links (Linux's `fchmodat`
//! ignores `AT_SYMLINK_NOFOLLOW`, so it is never used).
//!
//! Architecture Invariant: reading never writes outside DEST, never through a symlink, and
//! never leaves a half-written file under its final name.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::os::fd::AsRawFd;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, Timespec, Timestamps};

use crate::format::{Mtime, Xattr};

/// A directory handle, borrowed from a cache or opened for one use.
pub enum DirFd<'a> {
    Borrowed(BorrowedFd<'a>),
    Owned(OwnedFd),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirFd::Borrowed(fd) => *fd,
            DirFd::Owned(fd) => fd.as_fd(),
        }
    }
}

/// Opens the directory `name` in `parent` without following a symlink there.
pub fn open_dir(parent: impl AsFd, name: &[u8]) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(parent, name, flags, Mode::empty())?)
}

/// Creates directory `name` in `parent`, owner-writable until its mode is applied at the end.
pub fn make_dir(parent: impl AsFd, name: &[u8]) -> io::Result<()> {
    Ok(rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))?)
}

/// What is at `name` in `parent` now, without following a symlink; `None` if nothing.
pub fn probe(parent: impl AsFd, name: &[u8]) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn remove(parent: impl AsFd, name: &[u8], dir: bool) -> io::Result<()> {
    let flags = if dir { AtFlags::REMOVEDIR } else { AtFlags::empty() };
    Ok(rustix::fs::unlinkat(parent, name, flags)?)
}

fn timestamps(mtime: Mtime) -> Timestamps {
    Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
        last_modification: Timespec { tv_sec: mtime.secs, tv_nsec: mtime.nanos.into() },
    }
}

/// What is restored of an entry besides its contents, in this order: owner (chown clears
/// setuid bits and file capabilities, so it comes first), extended attributes (before the
/// mode, which may make the file read-only; an access ACL agrees with the mode's group bits,
/// which hold its mask, so the chmod after it keeps it), mode, mtime.
pub struct Attrs<'x> {
    /// Owner and group to give, or `None` to leave them (not root, `--no-same-owner`).
    pub owner: Option<(u32, u32)>,
    pub mode: u16,
    pub mtime: Mtime,
    /// The attributes to restore (the caller leaves out what needs `--same-permissions`).
    pub xattrs: Vec<&'x Xattr>,
}

/// Attributes the destination refused, with why: warnings for the caller, never silence.
pub type Refused = Vec<(Vec<u8>, io::Error)>;

/// Applies `attrs` through a descriptor, which cannot be a symlink.
pub fn set_metadata(fd: impl AsFd, attrs: &Attrs) -> io::Result<Refused> {
    if let Some((uid, gid)) = attrs.owner {
        rustix::fs::fchown(&fd, Some(uid_of(uid)), Some(gid_of(gid)))?;
    }
    // Attributes before the mode: a user may not set `user.*` attributes on a file it has
    // made read-only. (An access ACL and the mode agree: chmod after it keeps its mask.)
    let refused = set_xattrs(attrs, |name, value| {
        rustix::fs::fsetxattr(&fd, name, value, rustix::fs::XattrFlags::empty())
    });
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(attrs.mode.into()))?;
    rustix::fs::futimens(&fd, &timestamps(attrs.mtime))?;
    Ok(refused)
}

fn set_xattrs(attrs: &Attrs, mut set: impl FnMut(&[u8], &[u8]) -> rustix::io::Result<()>) -> Refused {
    let mut refused = Vec::new();
    for xattr in &attrs.xattrs {
        if let Err(e) = set(&xattr.name, &xattr.value) {
            refused.push((xattr.name.clone(), e.into()));
        }
    }
    refused
}

fn uid_of(uid: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(uid)
}

fn gid_of(gid: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(gid)
}

/// The path that reaches `name` in `dir` through the directory's handle, without a path walk
/// and without following `name` if the call does not: for the calls that have no
/// descriptor-based form for symlinks and special files (lsetxattr).
fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> Vec<u8> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name);
    path
}

/// Applies `attrs` to `name` in `dir` without following it: for symlinks (whose mode cannot
/// be set and is not) and, through a handle opened with `O_PATH`, FIFOs and devices.
pub fn set_metadata_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
    attrs: &Attrs,
    symlink: bool,
) -> io::Result<Refused> {
    if let Some((uid, gid)) = attrs.owner {
        rustix::fs::chownat(dir, name, Some(uid_of(uid)), Some(gid_of(gid)), AtFlags::SYMLINK_NOFOLLOW)?;
    }
    if !symlink {
        // A handle on exactly the node made (O_PATH: a FIFO is not opened for reading, a
        // device not touched); its /proc path reaches that inode and nothing else.
        let fd =
            rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        let own = format!("/proc/self/fd/{}", fd.as_raw_fd());
        rustix::fs::chmod(own.as_str(), Mode::from_raw_mode(attrs.mode.into()))?;
    }
    let path = proc_path(dir, name);
    let path = std::ffi::OsStr::from_bytes(&path);
    let refused =
        set_xattrs(attrs, |n, v| rustix::fs::lsetxattr(path, n, v, rustix::fs::XattrFlags::empty()));
    rustix::fs::utimensat(dir, name, &timestamps(attrs.mtime), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(refused)
}

/// Reads regular file `name` in `dir`, which this extraction made, with `read`: never through
/// a link, never blocking on a FIFO put there since. A file whose mode (the archive's, applied
/// already) denies arc reading it is read through a handle on exactly its inode, owner-readable
/// meanwhile, its mode put back after.
pub fn read_made(
    dir: BorrowedFd<'_>,
    name: &[u8],
    read: impl FnOnce(File) -> io::Result<()>,
) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let not_a_file = || io::Error::other("not a regular file");
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => {
            if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != FileType::RegularFile {
                return Err(not_a_file());
            }
            read(File::from(fd))
        }
        Err(rustix::io::Errno::ACCESS) => {
            let node = rustix::fs::openat(
                dir,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let stat = rustix::fs::fstat(&node)?;
            if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                return Err(not_a_file());
            }
            let own = format!("/proc/self/fd/{}", node.as_raw_fd());
            let mode = Mode::from_raw_mode(stat.st_mode & 0o7777);
            rustix::fs::chmod(own.as_str(), mode | Mode::RUSR)?;
            let opened = rustix::fs::open(
                own.as_str(),
                OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            );
            let result = opened.map_err(io::Error::from).and_then(|fd| read(File::from(fd)));
            let restored = rustix::fs::chmod(own.as_str(), mode);
            result?;
            Ok(restored?)
        }
        Err(e) => Err(e.into()),
    }
}

/// What [`make_special`] makes.
#[derive(Debug, Clone, Copy)]
pub enum Special {
    Fifo,
    Char(u32, u32),
    Block(u32, u32),
}

/// Creates FIFO or device node `name` in `dir` (mode 0600 until [`set_metadata_at`]). Returns
/// false if `name` exists and `replace` is [`Replace::Never`].
pub fn make_special(
    dir: BorrowedFd<'_>,
    name: &[u8],
    special: Special,
    replace: Replace,
) -> io::Result<bool> {
    let (kind, dev) = match special {
        Special::Fifo => (FileType::Fifo, 0),
        Special::Char(major, minor) => (FileType::CharacterDevice, rustix::fs::makedev(major, minor)),
        Special::Block(major, minor) => (FileType::BlockDevice, rustix::fs::makedev(major, minor)),
    };
    let mode = Mode::from_raw_mode(0o600);
    match replace {
        Replace::Never => match rustix::fs::mknodat(dir, name, kind, mode, dev) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        },
        Replace::Always => {
            let temp = temp_name();
            rustix::fs::mknodat(dir, temp.as_str(), kind, mode, dev)?;
            if let Err(e) = rename_into_place(dir, temp.as_bytes(), name, replace) {
                let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
                return Err(e);
            }
            Ok(true)
        }
    }
}

/// Makes `name` in `dir` another name of `from` in `from_dir` (linkat, never following a
/// symlink at `from`). Returns false if `name` exists and `replace` is [`Replace::Never`].
pub fn hard_link(
    from_dir: BorrowedFd<'_>,
    from: &[u8],
    dir: BorrowedFd<'_>,
    name: &[u8],
    replace: Replace,
) -> io::Result<bool> {
    match replace {
        Replace::Never => match rustix::fs::linkat(from_dir, from, dir, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        },
        Replace::Always => {
            let temp = temp_name();
            rustix::fs::linkat(from_dir, from, dir, temp.as_str(), AtFlags::empty())?;
            if let Err(e) = rename_into_place(dir, temp.as_bytes(), name, replace) {
                let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
                return Err(e);
            }
            Ok(true)
        }
    }
}

/// How a final rename treats an existing entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Fail with `AlreadyExists` (renameat2's RENAME_NOREPLACE: atomic, no check-then-act gap).
    Never,
    /// Replace a file or symlink (the link itself, never what it points at).
    Always,
}

fn rename_into_place(dir: BorrowedFd<'_>, from: &[u8], to: &[u8], replace: Replace) -> io::Result<()> {
    match replace {
        Replace::Always => Ok(rustix::fs::renameat(dir, from, dir, to)?),
        Replace::Never => match rustix::fs::renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
            // NFS, 9p and some FUSE filesystems know no rename flags. A hard link fails just as
            // atomically on an existing name; the temporary name is removed after.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                match rustix::fs::linkat(dir, from, dir, to, AtFlags::empty()) {
                    Ok(()) => {
                        // The file is in place; a temporary name that cannot be removed is
                        // only clutter, not an error.
                        let _ = rustix::fs::unlinkat(dir, from, AtFlags::empty());
                        Ok(())
                    }
                    // No hard links either (CIFS, sshfs...): check, then rename. Not atomic, but
                    // the best such a filesystem allows.
                    Err(
                        rustix::io::Errno::PERM | rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOSYS,
                    ) => {
                        if probe(dir, to)?.is_some() {
                            return Err(io::ErrorKind::AlreadyExists.into());
                        }
                        Ok(rustix::fs::renameat(dir, from, dir, to)?)
                    }
                    Err(e) => Err(e.into()),
                }
            }
            result => Ok(result?),
        },
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_name() -> String {
    // A random tag, drawn once, so that names an archive might hold cannot be predicted;
    // O_EXCL and NOREPLACE make a clash a retry or an error anyway.
    static TAG: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let tag = TAG.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.finish()
    });
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(".arc-{tag:016x}-{n}.tmp")
}

/// A file being extracted under a temporary name in its final directory. Dropped before
/// [`TempFile::persist`] succeeds, it removes itself, so an error or an interrupt leaves no
/// partial file behind.
pub struct TempFile<'a> {
    dir: DirFd<'a>,
    name: String,
    pub file: File,
    persisted: AtomicBool,
}

impl<'a> TempFile<'a> {
    pub fn create(dir: DirFd<'a>) -> io::Result<TempFile<'a>> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        loop {
            let name = temp_name();
            match rustix::fs::openat(&dir, name.as_str(), flags, Mode::from_raw_mode(0o600)) {
                Ok(fd) => {
                    return Ok(TempFile {
                        dir,
                        name,
                        file: File::from(fd),
                        persisted: AtomicBool::new(false),
                    })
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Applies `attrs`, then renames the file to `name`. Returns false (and removes the
    /// temporary file) if `name` exists and `replace` is [`Replace::Never`], and the
    /// attributes the destination refused.
    pub fn persist(&self, name: &[u8], attrs: &Attrs, replace: Replace) -> io::Result<(bool, Refused)> {
        let refused = set_metadata(&self.file, attrs)?;
        match rename_into_place(self.dir.as_fd(), self.name.as_bytes(), name, replace) {
            Ok(()) => {
                self.persisted.store(true, Ordering::Relaxed);
                Ok((true, refused))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((false, refused)),
            Err(e) => Err(e),
        }
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if !self.persisted.load(Ordering::Relaxed) {
            let _ = rustix::fs::unlinkat(&self.dir, self.name.as_str(), AtFlags::empty());
        }
    }
}

/// Creates symlink `name` -> `target` in `dir` and sets its mtime (on the link, not through
/// it). The target is stored text, never resolved. Returns false if `name` exists and
/// `replace` is [`Replace::Never`].
pub fn symlink(
    dir: BorrowedFd<'_>,
    target: &[u8],
    name: &[u8],
    attrs: &Attrs,
    replace: Replace,
) -> io::Result<(bool, Refused)> {
    let created = match replace {
        Replace::Never => match rustix::fs::symlinkat(target, dir, name) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(e.into()),
        },
        Replace::Always => {
            let temp = temp_name();
            rustix::fs::symlinkat(target, dir, temp.as_str())?;
            if let Err(e) = rename_into_place(dir, temp.as_bytes(), name, replace) {
                let _ = rustix::fs::unlinkat(dir, temp.as_str(), AtFlags::empty());
                return Err(e);
            }
            true
        }
    };
    if !created {
        return Ok((false, Vec::new()));
    }
    Ok((true, set_metadata_at(dir, name, attrs, true)?))
}
