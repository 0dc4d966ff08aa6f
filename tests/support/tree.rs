//! Trees on disk: building them (modes, mtimes to the nanosecond, pseudo-random contents),
//! taking snapshots of them as lstat sees them, and comparing them.
//!
//! Also included by the fuzz harness (fuzz/src/lib.rs), so it uses nothing that only cargo's
//! test build provides.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Uncompressed bytes per block, as in `arc::format::BLOCK_SIZE` (kept here as a literal so a
/// change of the constant is noticed by the tests that build files around it).
pub const BLOCK_SIZE: usize = 4 << 20;

/// The type of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// A FIFO, socket or device.
    Other,
}

/// Everything lstat says about one entry that arc could change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    /// `mode & 0o7777`.
    pub mode: u32,
    pub uid: u32,
    pub mtime: (i64, i64),
    /// Changes with any chmod, chown, rename or link count change, even one undone later.
    pub ctime: (i64, i64),
    pub ino: u64,
    /// A file's size; 0 for anything else.
    pub size: u64,
    /// A symlink's target.
    pub target: Option<PathBuf>,
    /// A file's contents, read only by [`snapshot_with_contents`].
    pub contents: Option<Vec<u8>>,
}

/// `path` itself (a symlink is not followed), without its contents.
pub fn stat(path: &Path) -> Stat {
    try_stat(path, false).unwrap_or_else(|e| panic!("{e}"))
}

fn try_stat(path: &Path, contents: bool) -> Result<Stat, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("stat {}: {e}", path.display()))?;
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_file() {
        Kind::File
    } else if file_type.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Other
    };
    let target = match kind {
        Kind::Symlink => Some(fs::read_link(path).map_err(|e| format!("readlink {}: {e}", path.display()))?),
        _ => None,
    };
    let contents = match kind {
        Kind::File if contents => {
            Some(fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?)
        }
        _ => None,
    };
    Ok(Stat {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        ino: meta.ino(),
        size: if kind == Kind::File { meta.len() } else { 0 },
        target,
        contents,
    })
}

/// How [`Walk::run`] goes through a tree.
#[derive(Clone, Copy, Default)]
struct Walk<'a> {
    /// Relative paths whose subtrees are left out.
    except: &'a [&'a str],
    /// Whether files' contents are read.
    contents: bool,
    /// Whether what cannot be read is passed over (else the walk panics).
    lenient: bool,
}

impl Walk<'_> {
    /// Every entry beneath and including `root` (the key `""`), by relative path, without
    /// following symlinks.
    fn run(self, root: &Path) -> BTreeMap<PathBuf, Stat> {
        let mut out = BTreeMap::new();
        self.visit(root, PathBuf::new(), &mut out);
        out
    }

    fn visit(self, path: &Path, rel: PathBuf, out: &mut BTreeMap<PathBuf, Stat>) {
        if self.except.iter().any(|except| rel == Path::new(except)) {
            return;
        }
        let stat = match try_stat(path, self.contents) {
            Ok(stat) => stat,
            Err(_) if self.lenient => return,
            Err(e) => panic!("{e}"),
        };
        let is_dir = stat.kind == Kind::Dir;
        out.insert(rel.clone(), stat);
        if !is_dir {
            return;
        }
        let children = match fs::read_dir(path) {
            Ok(children) => children,
            Err(_) if self.lenient => return,
            Err(e) => panic!("listing {}: {e}", path.display()),
        };
        for child in children {
            let name = match child {
                Ok(child) => child.file_name(),
                Err(_) if self.lenient => continue,
                Err(e) => panic!("listing {}: {e}", path.display()),
            };
            self.visit(&path.join(&name), rel.join(&name), out);
        }
    }
}

/// Every entry beneath and including `root` (the key `""`), by relative path, without
/// following symlinks or reading contents.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Stat> {
    Walk::default().run(root)
}

/// Like [`snapshot`], with files' contents, leaving out the subtrees whose relative path is in
/// `except`.
pub fn snapshot_with_contents(root: &Path, except: &[&str]) -> BTreeMap<PathBuf, Stat> {
    Walk { except, contents: true, lenient: false }.run(root)
}

/// Like [`snapshot`], passing over what cannot be read: a directory an archive made
/// unreadable (for an unprivileged run), a file that went away while arc was running.
pub fn snapshot_readable(root: &Path) -> BTreeMap<PathBuf, Stat> {
    Walk { lenient: true, ..Walk::default() }.run(root)
}

/// Relative paths of everything readable beneath `root` (itself left out), in the order of
/// [`snapshot`].
pub fn paths_under(root: &Path) -> Vec<String> {
    snapshot_readable(root)
        .into_keys()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// A tree in a short form for comparisons: relative path to `d MODE`, `f MODE CONTENTS` or
/// `l TARGET` (contents and targets lossily as UTF-8), `?` for anything else.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    snapshot_with_contents(root, &[])
        .into_iter()
        .filter(|(rel, _)| !rel.as_os_str().is_empty())
        .map(|(rel, s)| {
            let short = match s.kind {
                Kind::Dir => format!("d {:o}", s.mode),
                Kind::File => {
                    let contents = s.contents.as_deref().unwrap_or_default();
                    format!("f {:o} {}", s.mode, String::from_utf8_lossy(contents))
                }
                Kind::Symlink => format!("l {}", s.target.as_deref().unwrap_or(Path::new("")).display()),
                Kind::Other => "?".to_owned(),
            };
            (rel.to_string_lossy().into_owned(), short)
        })
        .collect()
}

/// Builds the expected value of [`tree`] from `(path, short form)` pairs.
pub fn expect_tree(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// Names of arc's temporary files (`.arc-*.tmp`) beneath `root`, as relative paths.
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    snapshot(root)
        .into_keys()
        .filter(|rel| {
            rel.file_name().is_some_and(|name| {
                let name = name.as_bytes();
                name.starts_with(b".arc-") && name.ends_with(b".tmp")
            })
        })
        .collect()
}

/// Gives the owner full access to every directory beneath and including `path`, so that the
/// tree can be listed and removed (an extraction may leave directories read-only or closed).
pub fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else { return };
    if meta.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(children) = fs::read_dir(path) {
            for child in children.flatten() {
                make_writable(&child.path());
            }
        }
    }
}

/// Sets the permission bits of `path` (following no symlink: `path` must not be one).
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

fn try_set_mtime(path: &Path, secs: i64, nanos: u32) -> rustix::io::Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD, UTIME_OMIT};
    let times = Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        last_modification: Timespec { tv_sec: secs, tv_nsec: nanos.into() },
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
}

/// Sets the mtime of `path` itself, also when it is a symlink; leaves atime alone.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    try_set_mtime(path, secs, nanos)
        .unwrap_or_else(|e| panic!("setting the mtime of {}: {e}", path.display()));
}

/// (seconds, nanoseconds) of `path` itself.
pub fn mtime_of(path: &Path) -> (i64, i64) {
    stat(path).mtime
}

/// Whether the filesystem holding `dir` keeps an mtime before 1970 (ext4 and tmpfs do).
pub fn keeps_negative_mtime(dir: &Path) -> bool {
    let probe = dir.join(".negative-mtime-probe");
    fs::write(&probe, b"").expect("writing the probe");
    let wanted = (-86_400 * 365 - 1, 123_456_789);
    let kept = try_set_mtime(&probe, wanted.0, wanted.1 as u32).is_ok() && mtime_of(&probe) == wanted;
    fs::remove_file(&probe).expect("removing the probe");
    kept
}

/// Gives every entry beneath and including `root` a distinct mtime with nanoseconds, children
/// before their directory so that the directories keep theirs. Derived from the path and
/// `seed`, so the same tree gets the same times.
pub fn stamp_mtimes(root: &Path, seed: u64) {
    let entries = snapshot(root);
    // Reverse order of the paths: children before their parents.
    for rel in entries.keys().rev() {
        let h = hash(rel.as_os_str().as_bytes(), seed);
        // Between 2001 and 2033, any nanosecond.
        let secs = 1_000_000_000 + (h % 1_000_000_000) as i64;
        let nanos = ((h >> 32) % 1_000_000_000) as u32;
        set_mtime(&beneath(root, rel), secs, nanos);
    }
}

/// FNV-1a mixed with a seed: enough to spread test values, no dependency needed.
pub fn hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// `len` bytes that zstd cannot shrink much (xorshift64*), the same for the same seed.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts that trees `a` and `b` (both included) hold the same names, types, contents,
/// permission bits (setuid and setgid aside: arc drops them by default), mtimes to the
/// nanosecond, and symlink targets. Symlinks are compared, never followed. Lists every
/// difference found, up to a limit, when it fails.
pub fn assert_same_tree(a: &Path, b: &Path) {
    const SPECIAL: u32 = 0o6000;
    let left = snapshot(a);
    let right = snapshot(b);
    let mut problems = Vec::new();
    for path in left.keys().filter(|p| !right.contains_key(*p)) {
        problems.push(format!("{}: only in {}", show(path), a.display()));
    }
    for path in right.keys().filter(|p| !left.contains_key(*p)) {
        problems.push(format!("{}: only in {}", show(path), b.display()));
    }
    for (path, l) in &left {
        let Some(r) = right.get(path) else { continue };
        if l.kind != r.kind {
            problems.push(format!("{}: {:?} vs {:?}", show(path), l.kind, r.kind));
            continue;
        }
        if l.mode & !SPECIAL != r.mode & !SPECIAL {
            problems.push(format!("{}: mode {:o} vs {:o}", show(path), l.mode, r.mode));
        }
        if l.mtime != r.mtime {
            problems.push(format!("{}: mtime {:?} vs {:?}", show(path), l.mtime, r.mtime));
        }
        if l.target != r.target {
            problems.push(format!("{}: symlink target {:?} vs {:?}", show(path), l.target, r.target));
        }
        if l.kind == Kind::File {
            if l.size != r.size {
                problems.push(format!("{}: size {} vs {}", show(path), l.size, r.size));
            } else if let Some(at) = first_difference(&beneath(a, path), &beneath(b, path)) {
                problems.push(format!("{}: contents differ from byte {at}", show(path)));
            }
        }
    }
    if !problems.is_empty() {
        let mut message =
            format!("trees differ: {} and {} ({} differences)\n", a.display(), b.display(), problems.len());
        for problem in problems.iter().take(40) {
            let _ = writeln!(message, "  {problem}");
        }
        panic!("{message}");
    }
}

/// `root/rel`, or `root` itself for the empty path (`join` would add a trailing slash).
fn beneath(root: &Path, rel: &Path) -> PathBuf {
    if rel.as_os_str().is_empty() {
        root.to_owned()
    } else {
        root.join(rel)
    }
}

fn show(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        "(root)".to_owned()
    } else {
        format!("{:?}", path)
    }
}

fn first_difference(a: &Path, b: &Path) -> Option<usize> {
    let left = fs::read(a).unwrap_or_else(|e| panic!("reading {}: {e}", a.display()));
    let right = fs::read(b).unwrap_or_else(|e| panic!("reading {}: {e}", b.display()));
    if left == right {
        return None;
    }
    Some(left.iter().zip(&right).position(|(x, y)| x != y).unwrap_or(left.len().min(right.len())))
}

/// What `arc list` should print for a tree archived under `name`: pre-order, siblings sorted by
/// name bytes, directories ending in `/`. Names must not need escaping.
pub fn expected_listing(root: &Path, name: &str) -> Vec<String> {
    // A snapshot is sorted by path components, each by its bytes: pre-order with sorted
    // siblings.
    snapshot(root)
        .into_iter()
        .filter(|(_, s)| s.kind != Kind::Other)
        .map(|(rel, s)| {
            let mut shown = name.to_owned();
            if !rel.as_os_str().is_empty() {
                shown = format!("{name}/{}", rel.to_str().expect("UTF-8 name"));
            }
            if s.kind == Kind::Dir {
                shown.push('/');
            }
            shown
        })
        .collect()
}

/// Makes a FIFO at `path` (mode 0644).
pub fn make_fifo(path: &Path) {
    let mode = rustix::fs::Mode::from_raw_mode(0o644);
    rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, mode, 0)
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}
