//! A real tree of this machine, not one a test made up: /usr/share/doc (thousands of files,
//! symlinks, some of them absolute or dangling on many systems, compressed and plain text).
//! The copy is checked twice, by `diff -r --no-dereference` and by [`assert_same_tree`].

use std::path::Path;
use std::process::Command;

use crate::support::{assert_same_tree, snapshot, Kind, TestEnv};

const REAL_TREE: &str = "/usr/share/doc";

#[test]
fn usr_share_doc_round_trips() {
    let src = Path::new(REAL_TREE);
    if !src.is_dir() {
        eprintln!("note: {REAL_TREE} is missing; skipping the real-tree round trip");
        return;
    }
    // tmpfs when there is one: this test writes the tree twice more.
    let shm = Path::new("/dev/shm");
    let env = if shm.is_dir() { TestEnv::new_in(shm) } else { TestEnv::new() };
    let archive = env.path("doc.arc");
    let run = env.arc([std::ffi::OsStr::new("write"), "-o".as_ref(), archive.as_os_str(), src.as_os_str()]);
    if run.code == 1 {
        // Special files or unreadable entries in someone's /usr/share/doc: not this test's concern,
        // but then the trees cannot be compared whole.
        eprintln!("note: arc warned about {REAL_TREE}, skipping the comparison:\n{}", run.stderr);
        return;
    }
    run.success();
    env.arc(["verify", "doc.arc"]).success();
    env.arc(["read", "doc.arc", "-C", "out"]).success();
    let copy = env.path("out/doc");

    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(src)
        .arg(&copy)
        .output()
        .expect("running diff");
    assert_eq!(String::from_utf8_lossy(&diff.stdout), "", "diff found differences");
    assert_eq!(String::from_utf8_lossy(&diff.stderr), "");
    assert!(diff.status.success(), "diff exited {:?}", diff.status);

    assert_same_tree(src, &copy);

    let tree = snapshot(src);
    let listed = env.arc(["list", "doc.arc"]).success().stdout_lines();
    assert_eq!(listed.len(), tree.len());
    let symlinks = tree.values().filter(|n| n.kind == Kind::Symlink).count();
    let dangling = tree.iter().filter(|(p, n)| n.kind == Kind::Symlink && !src.join(p).exists()).count();
    eprintln!("{REAL_TREE}: {} entries, {symlinks} symlinks ({dangling} dangling)", tree.len());
}
