//! Golden archives: a small tree built here byte for byte the same every time, and the archive
//! arc made of it, committed as `tests/golden/small.arc` with its listing `small.list`. A change
//! of the bytes arc writes, of how it reads old archives, or of what `list` prints fails here.
//!
//! `small-v1.arc` and `small-v1.list` are the same tree (without what version 1 could not
//! store) as the last arc of format version 1 wrote it: never regenerated, they prove that
//! version-1 archives still read and list as they did.
//!
//! If a format change is intended, regenerate both files, review them (`small.list` by eye, the
//! archive with `arc list -l` and `arc verify`), and commit them with the change. The same
//! command regenerates the golden text of tests/ui_text.rs:
//!
//! ```text
//! ARC_REGENERATE_GOLDEN=1 cargo test --test tests -- --ignored regenerate_golden
//! ```
//!
//! The archive also depends on the zstd library's output at level 3; a zstd upgrade that changes
//! it shows up here too and is worth noticing (old archives must still read: see
//! `golden_archive_reads_back_as_the_tree`).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::support::{assert_same_tree, keeps_negative_mtime, mtime_of, set_mode, set_mtime, TestEnv};

const GOLDEN_ARCHIVE: &[u8] = include_bytes!("golden/small.arc");
const GOLDEN_LIST: &str = include_str!("golden/small.list");
const GOLDEN_V1_ARCHIVE: &[u8] = include_bytes!("golden/small-v1.arc");
const GOLDEN_V1_LIST: &str = include_str!("golden/small-v1.list");

/// What the golden tree holds, in creation order (parents first).
enum Item {
    Dir(u32),
    File(&'static str, u32),
    Symlink(&'static str),
}

/// Each entry: path, what it is, mtime. Directories' mtimes are applied last, deepest first.
fn golden_items() -> Vec<(&'static str, Item, (i64, u32))> {
    use Item::*;
    vec![
        ("golden", Dir(0o755), (1_600_000_000, 123_456_789)),
        ("golden/empty", File("", 0o644), (1_600_000_001, 1)),
        ("golden/empty-dir", Dir(0o700), (1_600_000_002, 999_999_999)),
        ("golden/hello.txt", File("hello, arc\n", 0o644), (1_600_000_003, 500_000_000)),
        ("golden/link", Symlink("hello.txt"), (1_600_000_004, 42)),
        ("golden/run.sh", File("#!/bin/sh\necho hi\n", 0o755), (1_600_000_005, 0)),
        ("golden/sub", Dir(0o750), (1_600_000_006, 7)),
        ("golden/sub/dangling", Symlink("../missing target"), (1_600_000_007, 8)),
        ("golden/sub/notes ünïcödé.txt", File(NOTES, 0o600), (1_600_000_008, 9)),
        ("golden/sub/old", File("from before 1970\n", 0o444), (-31_536_003, 250_000_000)),
        ("golden/sub/sticky", Dir(0o1777), (0, 0)),
    ]
}

const NOTES: &str = "notes that repeat, so that zstd has something to do\n\
                     notes that repeat, so that zstd has something to do\n\
                     notes that repeat, so that zstd has something to do\n\
                     notes that repeat, so that zstd has something to do\n";

/// What version 2 added to the golden tree: a hard link, a FIFO, a sparse file, an extended
/// attribute and a name that is not UTF-8. Owners are root's (the golden bytes are made as
/// root, whose name is `root` everywhere).
fn add_version_2_items(golden: &Path) {
    fs::hard_link(golden.join("hello.txt"), golden.join("sub/hello again")).expect("hard link");
    crate::support::make_fifo(&golden.join("fifo"));
    let sparse = fs::File::create(golden.join("sparse")).expect("create");
    sparse.set_len(1 << 20).expect("set_len");
    std::os::unix::fs::FileExt::write_all_at(&sparse, &[b's'; 4096], 512 << 10).expect("write");
    drop(sparse);
    fs::write(golden.join(std::ffi::OsStr::from_bytes(b"caf\xe9")), "latin-1\n").expect("write");
    // Two files of the same contents, large enough to be stored once (FORMAT.md §4.5).
    fs::write(golden.join("notes x4"), NOTES.repeat(4)).expect("write");
    fs::write(golden.join("sub/notes x4, again"), NOTES.repeat(4)).expect("write");
    rustix::fs::setxattr(
        golden.join("run.sh").as_path(),
        "user.arc.golden",
        b"\x00value\xff",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("setting a user xattr");
    for (path, (secs, nanos)) in [
        ("sub/hello again", (1_600_000_003, 500_000_000)),
        ("fifo", (1_600_000_010, 10)),
        ("sparse", (1_600_000_011, 11)),
        ("notes x4", (1_600_000_013, 13)),
        ("sub/notes x4, again", (1_600_000_014, 14)),
        ("run.sh", (1_600_000_005, 0)),
        ("sub", (1_600_000_006, 7)),
        ("", (1_600_000_000, 123_456_789)),
    ] {
        set_mtime(&golden.join(path), secs, nanos);
    }
    set_mtime(&golden.join(std::ffi::OsStr::from_bytes(b"caf\xe9")), 1_600_000_012, 12);
    set_mtime(golden, 1_600_000_000, 123_456_789);
    // A file is stored once for its copies only if it has not changed since the write began
    // (its status change time is older, by more than the clock's tick).
    std::thread::sleep(std::time::Duration::from_millis(100));
}

/// Builds the golden tree beneath `base`; returns `base/golden`.
fn build_golden_tree(base: &Path) -> PathBuf {
    let items = golden_items();
    for (path, item, _) in &items {
        let full = base.join(path);
        match item {
            Item::Dir(_) => fs::create_dir(&full).expect("mkdir"),
            Item::File(contents, mode) => {
                fs::write(&full, contents).expect("write");
                set_mode(&full, *mode);
            }
            Item::Symlink(target) => std::os::unix::fs::symlink(target, &full).expect("symlink"),
        }
    }
    for (path, item, (secs, nanos)) in items.iter().rev() {
        let full = base.join(path);
        if let Item::Dir(mode) = item {
            set_mode(&full, *mode);
        }
        set_mtime(&full, *secs, *nanos);
    }
    base.join("golden")
}

/// The environment and its golden tree as version 1 stored it, or `None` (with a note) where
/// the filesystem cannot hold the tree's pre-1970 mtime.
fn golden_v1_env() -> Option<(TestEnv, PathBuf)> {
    let env = TestEnv::new();
    if !keeps_negative_mtime(env.root()) {
        eprintln!("note: this filesystem does not keep mtimes before 1970; skipping the golden test");
        return None;
    }
    let tree = build_golden_tree(&env.mkdir("src"));
    Some((env, tree))
}

/// The same with what version 2 added, or `None` (with a note) where that cannot be made: not
/// root (the golden owners are root's), or no user xattrs on the temporary directory.
fn golden_env() -> Option<(TestEnv, PathBuf)> {
    if !rustix::process::geteuid().is_root() {
        eprintln!("note: the golden archive is made as root (its owners are root's); skipping");
        return None;
    }
    let (env, tree) = golden_v1_env()?;
    let probe = env.file("xattr-probe", "");
    if rustix::fs::setxattr(probe.as_path(), "user.probe", b"", rustix::fs::XattrFlags::empty()).is_err() {
        eprintln!("note: {} takes no user xattrs; skipping the golden test", env.root().display());
        return None;
    }
    fs::remove_file(probe).expect("rm");
    add_version_2_items(&tree);
    Some((env, tree))
}

#[test]
fn writing_the_golden_tree_gives_the_golden_bytes() {
    let Some((env, _)) = golden_env() else { return };
    for threads in ["1", "2"] {
        let out = format!("now-{threads}.arc");
        env.arc(["write", "-j", threads, "-o", &out, "-C", "src", "golden"]).success();
        let now = fs::read(env.path(&out)).expect("read");
        if now != GOLDEN_ARCHIVE {
            let at = now.iter().zip(GOLDEN_ARCHIVE).position(|(a, b)| a != b);
            panic!(
                "arc now writes {} bytes for the golden tree, the golden archive has {}; first \
                 difference at byte {:?}. If the format change is intended, see this file's docs \
                 to regenerate tests/golden/.",
                now.len(),
                GOLDEN_ARCHIVE.len(),
                at
            );
        }
    }
}

#[test]
fn golden_archive_reads_back_as_the_tree() {
    let Some((env, tree)) = golden_env() else { return };
    fs::write(env.path("golden.arc"), GOLDEN_ARCHIVE).expect("write");
    env.arc(["verify", "golden.arc"]).success();
    env.arc(["read", "golden.arc", "-C", "out"]).success();
    assert_same_tree(&tree, &env.path("out/golden"));
    // Spot checks that do not depend on the tree builder being right.
    assert_eq!(fs::read_to_string(env.path("out/golden/hello.txt")).expect("read"), "hello, arc\n");
    assert_eq!(
        fs::read_link(env.path("out/golden/sub/dangling")).expect("readlink"),
        Path::new("../missing target")
    );
    assert_eq!(mtime_of(&env.path("out/golden/sub/old")), (-31_536_003, 250_000_000));
    assert_eq!(mtime_of(&env.path("out/golden/empty-dir")), (1_600_000_002, 999_999_999));
    // What version 2 added.
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = |p: &str| fs::symlink_metadata(env.path("out/golden").join(p)).expect("stat");
    assert_eq!(meta("hello.txt").ino(), meta("sub/hello again").ino(), "the hard link is one inode");
    assert!(meta("fifo").file_type().is_fifo());
    assert_eq!((meta("sparse").len(), meta("sparse").blocks() * 512 <= 64 << 10), (1 << 20, true));
    let out = env.path("out/golden");
    let value = rustix::fs::getxattr(out.join("run.sh").as_path(), "user.arc.golden", &mut [0u8; 64][..]);
    assert_eq!(value.ok(), Some(7));
    assert_eq!(fs::read(out.join(std::ffi::OsStr::from_bytes(b"caf\xe9"))).expect("read"), b"latin-1\n");
}

#[test]
fn golden_version_1_archive_still_reads_back_as_the_tree() {
    let Some((env, tree)) = golden_v1_env() else { return };
    fs::write(env.path("golden.arc"), GOLDEN_V1_ARCHIVE).expect("write");
    assert_eq!(&GOLDEN_V1_ARCHIVE[8..10], [1, 0], "small-v1.arc is version 1");
    env.arc(["verify", "golden.arc"]).success();
    env.arc(["read", "golden.arc", "-C", "out"]).success();
    assert_same_tree(&tree, &env.path("out/golden"));
    assert_eq!(fs::read_to_string(env.path("out/golden/hello.txt")).expect("read"), "hello, arc\n");
    assert_eq!(mtime_of(&env.path("out/golden/sub/old")), (-31_536_003, 250_000_000));
}

#[test]
fn golden_archives_list_as_the_snapshots() {
    let env = TestEnv::new();
    // `TYPE+MODE [OWNER(17)] SIZE(10) DATE TIME UTC PATH[ -> TARGET| link to PATH]`: the path
    // starts at column 46, or 64 with owners (version 2).
    for (archive, list, column) in
        [(GOLDEN_ARCHIVE, GOLDEN_LIST, 64), (GOLDEN_V1_ARCHIVE, GOLDEN_V1_LIST, 46)]
    {
        fs::write(env.path("golden.arc"), archive).expect("write");
        let listed = env.arc(["list", "-l", "--bytes", "golden.arc"]).success().stdout_str();
        assert_eq!(listed, list, "`arc list -l --bytes` of a golden archive changed");
        // The plain listing is the same paths.
        let plain = env.arc(["list", "golden.arc"]).success().stdout_lines();
        let from_long: Vec<&str> = list
            .lines()
            .map(|l| {
                l[column..].split(" -> ").next().and_then(|p| p.split(" link to ").next()).expect("a path")
            })
            .collect();
        assert_eq!(plain, from_long);
    }
}

#[test]
#[ignore = "writes tests/golden/; run with ARC_REGENERATE_GOLDEN=1 after an intended change of the format or of what arc prints"]
fn regenerate_golden() {
    if std::env::var_os("ARC_REGENERATE_GOLDEN").as_deref() != Some("1".as_ref()) {
        eprintln!("note: set ARC_REGENERATE_GOLDEN=1 to rewrite tests/golden/");
        return;
    }
    let (env, _) = golden_env().expect("a filesystem that keeps pre-1970 mtimes is needed");
    env.arc(["write", "-o", "golden.arc", "-C", "src", "golden"]).success();
    let listed = env.arc(["list", "-l", "--bytes", "golden.arc"]).success().stdout_str();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    fs::create_dir_all(&dir).expect("mkdir tests/golden");
    // small-v1.arc and small-v1.list are never rewritten: they are what version 1 wrote.
    fs::copy(env.path("golden.arc"), dir.join("small.arc")).expect("writing small.arc");
    fs::write(dir.join("small.list"), listed).expect("writing small.list");
    crate::ui_text::regenerate();
    eprintln!("wrote {0}/small.arc, small.list and {0}/text/: review them before committing", dir.display());
}
