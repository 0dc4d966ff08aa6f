//! A temporary directory holding DEST and, around it, things no archive may touch. The tests
//! run the binary in it (`impl Scene` in run.rs); the fuzz harness runs the library in it.
//!
//! Also included by the fuzz harness (fuzz/src/lib.rs), so nothing here runs the binary.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::tree::{make_writable, set_mode, snapshot_with_contents, tree, Stat};

/// Everything in a scene but DEST, by path relative to the scene.
pub type Outside = BTreeMap<PathBuf, Stat>;

/// A temporary directory holding DEST and sentinels around it:
///
/// ```text
/// TOP/                   the scene (its own mtime and ctime are watched too)
/// TOP/sentinel           a file, 0o640
/// TOP/sentinel_dir/      a directory, 0o750, holding `keep` (0o600)
/// TOP/dest/              DEST
/// TOP/x.arc              the archive under test
/// ```
///
/// Take [`Scene::outside`] before arc runs and give it to [`Scene::assert_outside`] after.
pub struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    pub fn new() -> Scene {
        let dir = tempfile::Builder::new().prefix("arc-scene-").tempdir().expect("creating a temp dir");
        let top = dir.path();
        fs::write(top.join("sentinel"), b"sentinel: must never change\n").expect("writing the sentinel");
        set_mode(&top.join("sentinel"), 0o640);
        fs::create_dir(top.join("sentinel_dir")).expect("creating the sentinel dir");
        fs::write(top.join("sentinel_dir/keep"), b"keep\n").expect("writing sentinel_dir/keep");
        set_mode(&top.join("sentinel_dir/keep"), 0o600);
        set_mode(&top.join("sentinel_dir"), 0o750);
        fs::create_dir(top.join("dest")).expect("creating DEST");
        Scene { dir }
    }

    pub fn top(&self) -> &Path {
        self.dir.path()
    }

    pub fn dest(&self) -> PathBuf {
        self.top().join("dest")
    }

    pub fn sentinel(&self) -> PathBuf {
        self.top().join("sentinel")
    }

    pub fn sentinel_dir(&self) -> PathBuf {
        self.top().join("sentinel_dir")
    }

    pub fn archive_path(&self) -> PathBuf {
        self.top().join("x.arc")
    }

    /// Writes `archive` to TOP/x.arc.
    pub fn write_archive(&self, archive: &[u8]) {
        fs::write(self.archive_path(), archive).expect("writing the archive");
    }

    /// Everything in the scene but DEST: contents, mode, owner, mtime, ctime, inode.
    pub fn outside(&self) -> Outside {
        snapshot_with_contents(self.top(), &["dest"])
    }

    /// Panics if anything outside DEST changed, was removed or appeared since `before` was
    /// taken; `what` says what ran in the meantime.
    pub fn assert_outside(&self, before: &Outside, what: &str) {
        let after = self.outside();
        if &after != before {
            let mut diff = Vec::new();
            for (k, v) in before {
                match after.get(k) {
                    None => diff.push(format!("{k:?}: removed")),
                    Some(a) if a != v => diff.push(format!("{k:?}: {v:?} -> {a:?}")),
                    Some(_) => {}
                }
            }
            for k in after.keys().filter(|k| !before.contains_key(*k)) {
                diff.push(format!("{k:?}: appeared"));
            }
            panic!("something outside DEST changed:\n{}\n{what}", diff.join("\n"));
        }
    }

    /// DEST as [`tree`] shows it.
    pub fn dest_tree(&self) -> BTreeMap<String, String> {
        tree(&self.dest())
    }

    /// Removes and recreates DEST (empty).
    pub fn clear_dest(&self) {
        make_writable(&self.dest());
        fs::remove_dir_all(self.dest()).expect("removing DEST");
        fs::create_dir(self.dest()).expect("creating DEST");
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        // Directories an extraction left read-only would stop the removal for a user other
        // than root.
        make_writable(&self.dest());
    }
}
