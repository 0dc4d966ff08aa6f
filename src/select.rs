//! Choosing entries by PATH and `--glob`, shared by `read` and `list`.
//!
//! A glob is matched against the whole path as `list` prints it, unescaped; `*` and `?` do not
//! cross `/`, `**` does.
//!
//! A PATH is written as `list` prints it (`root/dir/file`, escaped as [`crate::ui::escape`]
//! escapes names; the name itself, unescaped, is accepted too); it selects that entry and,
//! for a directory, its whole subtree. A glob is matched against the same full paths. Ancestors of
//! what is selected come along so the tree can be rebuilt above it.

use anyhow::{bail, Context, Result};
use std::os::unix::ffi::OsStrExt;

use globset::{GlobBuilder, GlobSetBuilder};

use crate::format::{Index, Tree};
use crate::ui::{bytes_of, unescape};

/// Why an entry is in the selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    No,
    /// Named, matched, or inside a named or matched directory.
    Yes,
    /// Only an ancestor of something selected.
    Ancestor,
}

/// Everything when no PATH or glob is given; an error naming the first PATH or glob that
/// matches nothing.
pub fn select(index: &Index, paths: &[String], globs: &[String]) -> Result<Vec<Selected>> {
    let count = index.entries.len();
    if paths.is_empty() && globs.is_empty() {
        return Ok(vec![Selected::Yes; count]);
    }
    let mut selected = vec![Selected::No; count];
    for path in paths {
        let Some(found) = find_printed(index, path) else {
            bail!("{path} is not in the archive");
        };
        selected[found..index.subtree_end(found)].fill(Selected::Yes);
    }
    if !globs.is_empty() {
        let mut builder = GlobSetBuilder::new();
        for glob in globs {
            // `*` and `?` stop at `/`; `**` crosses it (as in .gitignore and rsync).
            let parsed = GlobBuilder::new(glob).literal_separator(true).build();
            builder.add(parsed.with_context(|| format!("parsing --glob {glob}"))?);
        }
        let set = builder.build().context("building the glob set")?;
        let mut hits = vec![false; globs.len()];
        let mut i = 0;
        let mut paths = PathStack::default();
        while i < count {
            let path = paths.enter(index, i);
            let matches = set.matches(std::path::Path::new(std::ffi::OsStr::from_bytes(path)));
            if matches.is_empty() {
                i += 1;
                continue;
            }
            for m in matches {
                hits[m] = true;
            }
            // A matched directory brings its subtree, which need not be matched again.
            let end = index.subtree_end(i);
            selected[i..end].fill(Selected::Yes);
            i += 1;
            while i < end {
                paths.enter(index, i);
                i += 1;
            }
        }
        if let Some(missed) = hits.iter().position(|hit| !hit) {
            bail!("--glob {} matches nothing in the archive", globs[missed]);
        }
    }
    for i in 0..count {
        if selected[i] == Selected::Yes {
            let mut at = index.entries[i].parent();
            while let Some(p) = at {
                let p = p as usize;
                if selected[p] != Selected::No {
                    break;
                }
                selected[p] = Selected::Ancestor;
                at = index.entries[p].parent();
            }
        }
    }
    Ok(selected)
}

/// The entries whose subtrees PATHs select, found in a tree not yet built into an index (for
/// [`crate::archive::Archive::open_some`]); none when there is a glob or a PATH not there,
/// which need the whole index (a glob to match every path, a missing PATH to be reported
/// as [`select`] reports it).
pub fn roots(tree: &Tree, paths: &[String], globs: &[String]) -> Vec<usize> {
    if !globs.is_empty() {
        return Vec::new();
    }
    paths.iter().map(|path| find_printed_in(tree, path)).collect::<Option<_>>().unwrap_or_default()
}

/// The entry whose path `list` prints as `path`; failing that, the entry whose raw path is
/// `path`, so that a name holding a backslash can be typed either way. The printed form wins:
/// with entries `a\nb` (a backslash and an n) and `a<newline>b`, `a\nb` typed selects the
/// second, and the first is typed as `a\\nb`.
pub fn find_printed(index: &Index, path: &str) -> Option<usize> {
    printed(path, |path| find(index, path))
}

/// The same in a tree not yet built into an index (see [`Tree::unchecked`]).
fn find_printed_in(tree: &Tree, path: &str) -> Option<usize> {
    printed(path, |path| tree.find(&components(path)))
}

fn printed(path: &str, find: impl Fn(&[u8]) -> Option<usize>) -> Option<usize> {
    unescape(path).and_then(|raw| find(&bytes_of(&raw))).or_else(|| find(path.as_bytes()))
}

/// Selection of an archive read from a pipe, decided a record at a time as its entries come
/// (`read -`). A PATH selects the entry whose path it is (as `list` prints it, or raw) and
/// what is beneath it; a glob, what it matches and what is beneath that. The directories above
/// something selected become [`Selected::Ancestor`] when it comes, though they came before
/// (the reader makes them then). Unlike [`select`], an entry that a PATH names in both its
/// printed and its raw form selects both entries, since the other may not have come yet.
pub struct Streaming {
    /// Each PATH as typed, and the paths it may stand for (printed form unescaped, raw).
    paths: Vec<(String, Vec<Vec<u8>>)>,
    globs: Option<(globset::GlobSet, Vec<String>)>,
    /// Whether each PATH, then each glob, has selected something.
    hits: Vec<bool>,
    /// The decision for every entry so far.
    pub selected: Vec<Selected>,
    stack: PathStack,
}

impl Streaming {
    pub fn new(paths: &[String], globs: &[String]) -> Result<Streaming> {
        let paths: Vec<(String, Vec<Vec<u8>>)> = paths
            .iter()
            .map(|path| {
                let mut forms: Vec<Vec<u8>> = Vec::new();
                if let Some(raw) = unescape(path) {
                    forms.push(components(&bytes_of(&raw)).join(&b'/'));
                }
                forms.push(components(path.as_bytes()).join(&b'/'));
                forms.dedup();
                (path.clone(), forms)
            })
            .collect();
        let globs = match globs.is_empty() {
            true => None,
            false => {
                let mut builder = GlobSetBuilder::new();
                for glob in globs {
                    let parsed = GlobBuilder::new(glob).literal_separator(true).build();
                    builder.add(parsed.with_context(|| format!("parsing --glob {glob}"))?);
                }
                Some((builder.build().context("building the glob set")?, globs.to_vec()))
            }
        };
        let hits = vec![false; paths.len() + globs.as_ref().map_or(0, |(_, g)| g.len())];
        Ok(Streaming { paths, globs, hits, selected: Vec::new(), stack: PathStack::default() })
    }

    /// Decides the entries of `range`, the next of `index` in pre-order. Returns the entries
    /// before `range` that have become ancestors of something selected, parents first: the
    /// reader makes them before those of `range`.
    pub fn decide(&mut self, index: &Index, range: std::ops::Range<usize>) -> Vec<usize> {
        let everything = self.hits.is_empty();
        let start = range.start;
        let mut late = Vec::new();
        for i in range {
            let path = self.stack.enter(index, i);
            let parent = index.entries[i].parent().map(|p| p as usize);
            let mut chosen = everything || parent.is_some_and(|p| self.selected[p] == Selected::Yes);
            if !chosen {
                for (k, (_, forms)) in self.paths.iter().enumerate() {
                    if forms.iter().any(|f| f.as_slice() == path) {
                        self.hits[k] = true;
                        chosen = true;
                    }
                }
                if let Some((set, _)) = &self.globs {
                    for m in set.matches(std::path::Path::new(std::ffi::OsStr::from_bytes(path))) {
                        self.hits[self.paths.len() + m] = true;
                        chosen = true;
                    }
                }
            }
            self.selected.push(if chosen { Selected::Yes } else { Selected::No });
            if chosen {
                let mut at = parent;
                while let Some(p) = at.filter(|&p| self.selected[p] == Selected::No) {
                    self.selected[p] = Selected::Ancestor;
                    if p < start {
                        late.push(p);
                    }
                    at = index.entries[p].parent().map(|p| p as usize);
                }
            }
        }
        late.reverse();
        late
    }

    /// Once every entry is decided: an error naming the first PATH or glob that selected
    /// nothing, as [`select`] gives it.
    pub fn missed(&self) -> Result<()> {
        if let Some(k) = self.hits.iter().position(|hit| !hit) {
            match self.paths.get(k) {
                Some((path, _)) => bail!("{path} is not in the archive"),
                None => {
                    let globs = self.globs.as_ref().map(|(_, g)| g.as_slice()).unwrap_or_default();
                    bail!("--glob {} matches nothing in the archive", globs[k - self.paths.len()])
                }
            }
        }
        Ok(())
    }
}

/// The components of a path as typed: a trailing `/` and `./` prefixes are allowed.
fn components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect()
}

/// The entry whose path is `path` (a trailing `/` and `./` prefixes are allowed).
pub fn find(index: &Index, path: &[u8]) -> Option<usize> {
    let components = components(path);
    let (first, rest) = components.split_first()?;
    // Siblings are found by hopping over subtrees.
    let mut at = find_sibling(index, 0, index.entries.len(), first)?;
    for name in rest {
        if !index.entries[at].is_dir() {
            return None;
        }
        let end = index.subtree_end(at);
        at = find_sibling(index, at + 1, end, name)?;
    }
    Some(at)
}

fn find_sibling(index: &Index, mut i: usize, end: usize, name: &[u8]) -> Option<usize> {
    while i < end {
        if index.name(i) == name {
            return Some(i);
        }
        i = index.subtree_end(i);
    }
    None
}

/// Builds full paths incrementally while going through entries in pre-order.
#[derive(Default)]
pub struct PathStack {
    path: Vec<u8>,
    /// `ends[d]`: length of `path` up to the end of the depth-d ancestor's name.
    ends: Vec<usize>,
}

impl PathStack {
    /// The path of entry `i`; calls must visit every entry in pre-order.
    pub fn enter(&mut self, index: &Index, i: usize) -> &[u8] {
        self.enter_as(index, i, |name, path| path.extend_from_slice(name))
    }

    /// The same with each name as `push` writes it (`list` writes it escaped, once per name
    /// rather than once per path below it).
    pub fn enter_as(&mut self, index: &Index, i: usize, push: impl FnOnce(&[u8], &mut Vec<u8>)) -> &[u8] {
        self.push_as(index.entries[i].depth.into(), index.name(i), push)
    }

    /// The path of the entry named `name` at `depth`, the next in pre-order, its name as `push`
    /// writes it (for a walk of the tree alone, [`crate::format::Tree`]).
    pub fn push_as(&mut self, depth: usize, name: &[u8], push: impl FnOnce(&[u8], &mut Vec<u8>)) -> &[u8] {
        self.ends.truncate(depth);
        let start = if depth == 0 { 0 } else { self.ends[depth - 1] };
        self.path.truncate(start);
        if depth > 0 {
            self.path.push(b'/');
        }
        push(name, &mut self.path);
        self.ends.push(self.path.len());
        &self.path
    }
}
