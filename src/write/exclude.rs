//! Leaving entries out of an archive: `--exclude` patterns (and `--exclude-from` files),
//! `--exclude-vcs`, and, with `--gitignore`, the `.gitignore` and `.ignore` files found in the
//! tree (plus `.git/info/exclude` at a repository's top), as git, ripgrep and fd honour them.
//!
//! Patterns use gitignore syntax (the `ignore` crate's matcher) and are matched against the
//! path as it is stored in the archive (`root/dir/file`): a pattern without a `/` matches a name
//! at any depth, one with a `/` is anchored at the archive's roots, a trailing `/` matches
//! directories only. Ignore files found in the tree are matched relative to their directory,
//! the deepest first, and `!pattern` there re-includes what a shallower file left out.
//!
//! Invariant: ignore files are opened through the walker's directory handles, never by a
//! path, so the traversal stays handle-relative; an excluded directory is not descended into.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};
use camino::Utf8PathBuf;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use rustix::fs::{Mode, OFlags};

use crate::ui::text_of;

/// What `--exclude`, `--exclude-from`, `--exclude-vcs` and `--gitignore` asked for.
#[derive(Debug, Clone, Default)]
pub struct ExcludeOptions {
    pub patterns: Vec<String>,
    pub from_files: Vec<Utf8PathBuf>,
    pub vcs: bool,
    pub gitignore: bool,
}

/// Directories of version-control systems, left out by `--exclude-vcs`. Unlike GNU tar's
/// list, files such as `.gitignore` are kept: they are part of the sources.
const VCS_DIRS: [&str; 11] =
    [".git", ".hg", ".svn", ".bzr", "_darcs", ".pijul", ".fossil-settings", "CVS", "RCS", "SCCS", ".jj"];

/// Ignore files read in every directory with `--gitignore`, in this order (later ones win).
const IGNORE_FILES: [&str; 2] = [".gitignore", ".ignore"];

/// Ignore files larger than this are not read (with a warning): no real one comes close.
const MAX_IGNORE_FILE: u64 = 1 << 20;

pub struct Excluder {
    /// `--exclude` and `--exclude-from`, matched against stored paths.
    patterns: Option<Gitignore>,
    vcs: bool,
    gitignore: bool,
    /// The ignore files of the directories being walked, outermost first.
    stack: Vec<Gitignore>,
}

impl Excluder {
    pub fn new(options: &ExcludeOptions) -> Result<Excluder> {
        let mut patterns = None;
        if !options.patterns.is_empty() || !options.from_files.is_empty() {
            let mut builder = GitignoreBuilder::new("");
            for pattern in &options.patterns {
                builder.add_line(None, pattern).with_context(|| format!("parsing --exclude {pattern}"))?;
            }
            for file in &options.from_files {
                let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
                for line in text.lines() {
                    builder
                        .add_line(None, line)
                        .with_context(|| format!("reading {file}: pattern {line}"))?;
                }
            }
            patterns = Some(builder.build().context("building the --exclude patterns")?);
        }
        Ok(Excluder { patterns, vcs: options.vcs, gitignore: options.gitignore, stack: Vec::new() })
    }

    /// Whether anything may be left out at all.
    pub fn is_active(&self) -> bool {
        self.vcs || self.gitignore || self.patterns.is_some()
    }

    /// Whether the entry stored as `stored`, named `name`, is left out.
    pub fn excludes(&self, stored: &[u8], name: &[u8], is_dir: bool) -> bool {
        if self.vcs && VCS_DIRS.iter().any(|vcs| vcs.as_bytes() == name) {
            return true;
        }
        let stored = Path::new(OsStr::from_bytes(stored));
        if let Some(patterns) = &self.patterns {
            if patterns.matched(stored, is_dir).is_ignore() {
                return true;
            }
        }
        for rules in self.stack.iter().rev() {
            match rules.matched(stored, is_dir) {
                Match::None => continue,
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
            }
        }
        false
    }

    /// Entering directory `stored` (open as `dir`): with `--gitignore`, reads its ignore files.
    /// Returns whether rules were pushed, for [`Excluder::leave`]; problems with an ignore file
    /// are warnings for `warn`, never errors.
    pub fn enter(&mut self, dir: BorrowedFd<'_>, stored: &[u8], warn: impl Fn(String)) -> bool {
        if !self.gitignore {
            return false;
        }
        let mut builder = GitignoreBuilder::new(Path::new(OsStr::from_bytes(stored)));
        let stored = text_of(stored);
        let mut found = false;
        // A repository's own excludes, at its top.
        let files = std::iter::once(".git/info/exclude").chain(IGNORE_FILES);
        for file in files {
            match read_small(dir, file) {
                Ok(None) => {}
                Ok(Some(text)) => {
                    found = true;
                    for line in text.lines() {
                        if let Err(e) = builder.add_line(None, line) {
                            warn(format!("reading {stored}/{file}: {e} (line left out)"));
                        }
                    }
                }
                Err(e) => warn(format!("reading {stored}/{file}: {e} (not honoured)")),
            }
        }
        if !found {
            return false;
        }
        match builder.build() {
            Ok(rules) => {
                self.stack.push(rules);
                true
            }
            Err(e) => {
                warn(format!("reading the ignore files of {stored}: {e} (not honoured)"));
                false
            }
        }
    }

    /// Leaving the directory that [`Excluder::enter`] was called for.
    pub fn leave(&mut self, pushed: bool) {
        if pushed {
            self.stack.pop();
        }
    }
}

/// The text of file `path` (components separated by `/`) beneath `dir`, if there is a
/// regular file there. No component is followed if it is a symlink, and the file is opened
/// non-blocking: a FIFO named `.gitignore` must not stall the walk.
fn read_small(dir: BorrowedFd<'_>, path: &str) -> std::io::Result<Option<String>> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let missing = |e: rustix::io::Errno| {
        matches!(e, rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP)
    };
    let mut components = path.split('/').peekable();
    let mut held: Option<std::os::fd::OwnedFd> = None;
    let fd = loop {
        let Some(name) = components.next() else { return Ok(None) };
        let at = held.as_ref().map_or(dir, |fd| fd.as_fd());
        let last = components.peek().is_none();
        let opened = match last {
            true => rustix::fs::openat(at, name, flags, Mode::empty()),
            false => rustix::fs::openat(at, name, flags | OFlags::DIRECTORY, Mode::empty()),
        };
        match opened {
            Ok(fd) if last => break fd,
            Ok(fd) => held = Some(fd),
            Err(e) if missing(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    };
    let file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    let mut text = String::new();
    let read = file.take(MAX_IGNORE_FILE + 1).read_to_string(&mut text)?;
    if read as u64 > MAX_IGNORE_FILE {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_stored_paths_like_gitignore() {
        let options = ExcludeOptions {
            patterns: vec!["target/".into(), "*.o".into(), "proj/build".into()],
            vcs: true,
            ..ExcludeOptions::default()
        };
        let excluder = Excluder::new(&options).expect("valid patterns");
        assert!(excluder.excludes(b"proj/target", b"target", true));
        assert!(!excluder.excludes(b"proj/target", b"target", false), "a trailing / means directories only");
        assert!(excluder.excludes(b"proj/src/deep/x.o", b"x.o", false));
        assert!(excluder.excludes(b"proj/build", b"build", true));
        assert!(!excluder.excludes(b"proj/src/build", b"build", true), "a / anchors the pattern");
        assert!(excluder.excludes(b"proj/.git", b".git", true));
        assert!(!excluder.excludes(b"proj/.gitignore", b".gitignore", false));
        assert!(!excluder.excludes(b"proj/src/main.rs", b"main.rs", false));
    }
}
