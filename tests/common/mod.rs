//! Shared helpers for the integration tests: a temporary directory to build trees in
//! ([`TestEnv`]), a way to run the real `arc` binary and keep what it printed ([`Run`]), and a
//! comparison of two trees that does not follow symlinks ([`assert_same_tree`]).
//!
//! Every run of the binary is checked for the promises that hold whatever the command: arc
//! exits (is not killed by a signal), and never prints a panic.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The binary under test, built by cargo for this test run.
pub const ARC: &str = env!("CARGO_BIN_EXE_arc");

/// Uncompressed bytes per block, as in `arc::format::BLOCK_SIZE` (kept here as a literal so a
/// change of the constant is noticed by the tests that build files around it).
pub const BLOCK_SIZE: usize = 4 << 20;

/// A temporary directory that trees, archives and extractions live in; removed when dropped.
pub struct TestEnv {
    dir: tempfile::TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new().prefix("arc-test-").tempdir().expect("creating a temp dir");
        TestEnv { dir }
    }

    /// A test environment beneath `base` (e.g. /dev/shm for speed).
    pub fn new_in(base: &Path) -> TestEnv {
        let dir = tempfile::Builder::new().prefix("arc-test-").tempdir_in(base).expect("creating a temp dir");
        TestEnv { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` beneath the environment's root.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Creates directory `rel` and its parents.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        path
    }

    /// Writes file `rel` (creating its parents) with `contents`.
    pub fn file(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Creates symlink `rel` pointing at `target` (stored as is, never resolved).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        std::os::unix::fs::symlink(target.as_ref(), &path)
            .unwrap_or_else(|e| panic!("creating symlink {}: {e}", path.display()));
        path
    }

    /// Runs arc with the environment's root as the working directory.
    pub fn arc<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_arc(self.root(), args)
    }

    /// Runs arc in `cwd`.
    pub fn arc_in<I, S>(&self, cwd: &Path, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_arc(cwd, args)
    }

    /// `arc write -o ARCHIVE SRC`, then `arc read ARCHIVE -C DEST`, both required to succeed
    /// cleanly; returns where the input's copy is (DEST/<name of SRC>).
    pub fn round_trip(&self, src: &Path, archive: &str, dest: &str) -> PathBuf {
        self.arc([OsStr::new("write"), OsStr::new("-o"), OsStr::new(archive), src.as_os_str()]).success();
        self.arc(["read", archive, "-C", dest]).success();
        self.path(dest).join(src.file_name().expect("input has a name"))
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Read-only directories would stop the removal for a user other than root.
        make_writable(self.dir.path());
    }
}

fn make_writable(path: &Path) {
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

/// What one run of arc did.
#[derive(Debug)]
pub struct Run {
    pub command: String,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs the binary with no standard input and checks what holds for every command.
pub fn run_arc<I, S>(cwd: &Path, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let command = format!("arc {}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" "));
    let output = Command::new(ARC)
        .args(&args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {command}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let Some(code) = output.status.code() else {
        panic!("`{command}` was killed: {:?}\nstderr:\n{stderr}", output.status);
    };
    assert!(!stderr.contains("panicked"), "`{command}` panicked:\n{stderr}");
    Run { command, code, stdout: output.stdout, stderr }
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8(self.stdout.clone())
            .unwrap_or_else(|_| panic!("`{}` printed non-UTF-8 on stdout", self.command))
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_str().lines().map(str::to_owned).collect()
    }

    fn describe(&self) -> String {
        format!(
            "`{}` exited {}\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.code,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }

    /// Exit status 0 with nothing on stderr.
    pub fn success(&self) -> &Run {
        assert!(self.code == 0 && self.stderr.is_empty(), "expected a clean success: {}", self.describe());
        self
    }

    /// Exit status `code`, whatever was printed.
    pub fn code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit status: {}", self.describe());
        self
    }

    /// Exit status 1 and only `arc: warning: ` lines on stderr; returns the warnings.
    pub fn warnings(&self) -> Vec<String> {
        self.code(1);
        let lines: Vec<String> = self.stderr.lines().map(str::to_owned).collect();
        assert!(!lines.is_empty(), "exit status 1 without a warning: {}", self.describe());
        for line in &lines {
            assert!(line.starts_with("arc: warning: "), "not a warning line {line:?}: {}", self.describe());
        }
        lines
    }

    /// Exit status 2 and exactly one line on stderr, starting with `arc: error: `; returns it.
    pub fn error(&self) -> String {
        self.code(2);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected exactly one line on stderr: {}", self.describe());
        assert!(lines[0].starts_with("arc: error: "), "badly formed error: {}", self.describe());
        assert!(self.stderr.ends_with('\n'), "error line not terminated: {}", self.describe());
        lines[0].to_owned()
    }
}

/// Sets the permission bits of `path` (following no symlink: `path` must not be one).
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, path.display()));
}

/// Sets the mtime of `path` itself, also when it is a symlink; leaves atime alone.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD, UTIME_OMIT};
    let times = Timestamps {
        last_access: Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT },
        last_modification: Timespec { tv_sec: secs, tv_nsec: nanos.into() },
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("setting the mtime of {}: {e}", path.display()));
}

/// (seconds, nanoseconds) of `path` itself.
pub fn mtime_of(path: &Path) -> (i64, i64) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (meta.mtime(), meta.mtime_nsec())
}

/// Gives every entry beneath and including `root` a distinct mtime with nanoseconds, children
/// before their directory so that the directories keep theirs. Derived from the path and
/// `seed`, so the same tree gets the same times.
pub fn stamp_mtimes(root: &Path, seed: u64) {
    fn visit(path: &Path, rel: &Path, seed: u64) {
        let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        if meta.is_dir() {
            let mut children: Vec<_> = fs::read_dir(path)
                .unwrap_or_else(|e| panic!("listing {}: {e}", path.display()))
                .map(|c| c.expect("listing").file_name())
                .collect();
            children.sort();
            for name in children {
                visit(&path.join(&name), &rel.join(&name), seed);
            }
        }
        let h = hash(rel.as_os_str().as_bytes(), seed);
        // Between 2001 and 2033, any nanosecond.
        let secs = 1_000_000_000 + (h % 1_000_000_000) as i64;
        let nanos = ((h >> 32) % 1_000_000_000) as u32;
        set_mtime(path, secs, nanos);
    }
    visit(root, Path::new(""), seed);
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

/// Whether the filesystem holding `dir` keeps an mtime before 1970 (ext4 and tmpfs do).
pub fn keeps_negative_mtime(dir: &Path) -> bool {
    let probe = dir.join(".negative-mtime-probe");
    fs::write(&probe, b"").expect("writing the probe");
    let wanted = (-86_400 * 365 - 1, 123_456_789);
    let kept = rustix::fs::utimensat(
        rustix::fs::CWD,
        &probe,
        &rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
            last_modification: rustix::fs::Timespec { tv_sec: wanted.0, tv_nsec: wanted.1 },
        },
        rustix::fs::AtFlags::empty(),
    )
    .is_ok()
        && mtime_of(&probe) == wanted;
    fs::remove_file(&probe).expect("removing the probe");
    kept
}

/// The type of a tree entry as [`assert_same_tree`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// One entry of a tree, as lstat sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// `mode & 0o7777`.
    pub mode: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub target: Option<PathBuf>,
}

/// Every entry beneath and including `root` (the key `""`), by relative path, without
/// following symlinks.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    fn visit(path: &Path, rel: PathBuf, out: &mut BTreeMap<PathBuf, Node>) {
        let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
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
        let target = (kind == Kind::Symlink)
            .then(|| fs::read_link(path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display())));
        let node = Node {
            kind,
            mode: meta.mode() & 0o7777,
            mtime: (meta.mtime(), meta.mtime_nsec()),
            size: if kind == Kind::File { meta.len() } else { 0 },
            target,
        };
        out.insert(rel.clone(), node);
        if kind == Kind::Dir {
            for child in fs::read_dir(path).unwrap_or_else(|e| panic!("listing {}: {e}", path.display())) {
                let name = child.expect("listing").file_name();
                visit(&path.join(&name), rel.join(&name), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(root, PathBuf::new(), &mut out);
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
    fn visit(path: &Path, shown: String, out: &mut Vec<String>) {
        let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        if meta.is_dir() {
            out.push(format!("{shown}/"));
            let mut names: Vec<_> = fs::read_dir(path)
                .unwrap_or_else(|e| panic!("listing {}: {e}", path.display()))
                .map(|c| c.expect("listing").file_name())
                .collect();
            names.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
            for child in names {
                let child_shown = format!("{shown}/{}", child.to_str().expect("UTF-8 name"));
                visit(&path.join(&child), child_shown, out);
            }
        } else if meta.is_file() || meta.file_type().is_symlink() {
            out.push(shown);
        }
    }
    let mut out = Vec::new();
    visit(root, name.to_owned(), &mut out);
    out
}

/// Every path beneath `root` (relative, `root` itself left out) whose name starts with
/// `prefix`: used to look for temporary files left behind.
pub fn find_named(root: &Path, prefix: &str) -> Vec<PathBuf> {
    snapshot(root)
        .into_keys()
        .filter(|p| p.file_name().is_some_and(|n| n.as_bytes().starts_with(prefix.as_bytes())))
        .collect()
}
