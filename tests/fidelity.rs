//! Full fidelity (format version 2): what `arc read` restores of a tree with everything in it
//! (owners by name or number, hard links, holes, FIFOs, devices, xattrs of every namespace,
//! POSIX ACLs, setuid bits, non-UTF-8 names and targets), as root with and without
//! `--same-permissions`, `--numeric-owner` and `--no-same-owner`, and as an unprivileged user.
//! Each comparison is exact but for what [`Expect`] names; the comparison itself is checked
//! first, on copies with one thing changed.
//!
//! Tests that need root say "skipped" on stderr and pass when run as another user.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::support::fidelity::{
    allocated, assert_trees_match, base_keeping, build_fidelity_tree, compare_trees, effective_ids, gid_of,
    is_root, make_sparse_file, remove_xattr, set_xattr, sparse_pieces, uid_of, with_named_owner_renumbered,
    xattrs, Expect, Feature, Owners, ACL_DEFAULT, ALLOCATION_SLACK, CAPABLE, DEVICES, EVERYTHING,
    NAMED_OWNER, SOCKET, SPARSE, SPARSE_LEN, SPARSE_PIECE,
};
use crate::support::{
    mtime_of, pseudo_random, run_program, set_mode, set_mtime, stamp_mtimes, Run, TestEnv, ARC,
};

/// The uid and gid arc runs as in [`read_as_unprivileged_user`] (`nobody`).
const NOBODY: u32 = 65534;

/// Whether `test` cannot run here because it needs root; says so on stderr.
fn skipped_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("skipped: {test} needs root");
    true
}

/// What `arc read` leaves out as root without `--same-permissions`.
fn without_same_permissions() -> Expect {
    Expect {
        sockets_absent: true,
        devices_absent: true,
        privileged_xattrs_absent: true,
        special_bits_cleared: true,
        owners: Owners::Same,
    }
}

/// Builds the fidelity tree at `src/tree` and writes it to `tree.arc` in `env`, requiring
/// that arc leaves out the socket with a notice naming it and nothing else, exit status 0
/// (without `-q`, which silences notices).
fn archived_fidelity_tree(env: &TestEnv) -> PathBuf {
    let src = env.path("src/tree");
    build_fidelity_tree(&src);
    let write = env.arc([OsStr::new("write"), OsStr::new("-o"), OsStr::new("tree.arc"), src.as_os_str()]);
    write.code(0);
    assert!(
        write.stderr.contains(SOCKET),
        "`arc write` did not name the socket it left out: {}",
        write.describe()
    );
    assert_only_lines_naming(&write, &[SOCKET]);
    src
}

/// Every line `run` printed on stderr names one of `paths`, and each of `paths` is named.
fn assert_only_lines_naming(run: &Run, paths: &[&str]) {
    for path in paths {
        assert!(run.stderr.contains(path), "stderr does not name {path}: {}", run.describe());
    }
    let others: Vec<&str> =
        run.stderr.lines().filter(|line| !paths.iter().any(|p| line.contains(p))).collect();
    assert!(others.is_empty(), "unexpected lines on stderr {others:?}: {}", run.describe());
}

/// `arc read -q tree.arc -C DEST ARGS` in `env`.
fn read(env: &TestEnv, dest: &str, args: &[&str]) -> Run {
    env.arc(["read", "-q", "tree.arc", "-C", dest].iter().chain(args))
}

/// A small tree that any user can make on a filesystem with user xattrs and holes: a file
/// with xattrs, two names of one inode in two directories, a symlink, a directory, a sparse
/// file, each with its own mtime.
fn build_small_tree(root: &Path) {
    fs::create_dir_all(root.join("a")).expect("mkdir a");
    fs::create_dir_all(root.join("b")).expect("mkdir b");
    fs::create_dir_all(root.join("d")).expect("mkdir d");
    fs::write(root.join("f"), "data\n").expect("write f");
    set_mode(&root.join("f"), 0o644);
    set_xattr(&root.join("f"), "user.comment", b"a comment");
    set_xattr(&root.join("f"), "user.empty", b"");
    fs::write(root.join("a/linked"), "linked\n").expect("write a/linked");
    fs::hard_link(root.join("a/linked"), root.join("b/linked")).expect("link b/linked");
    std::os::unix::fs::symlink("f", root.join("l")).expect("symlink l");
    let len = 1 << 20;
    make_sparse_file(&root.join("sparse"), len, &[(len / 4, pseudo_random(SPARSE_PIECE, 5))]);
    stamp_mtimes(root, 9);
}

/// Runs `change` on `path` and gives its parent directory back the mtime it had, so that the
/// change is the only difference.
fn keeping_parent_mtime(path: &Path, change: impl FnOnce(&Path)) {
    let parent = path.parent().expect("a parent");
    let (secs, nanos) = mtime_of(parent);
    change(path);
    set_mtime(parent, secs, nanos as u32);
}

/// Asserts that `problems` (from [`compare_trees`]) report each of `paths` for `what`, and
/// nothing else.
fn assert_reported(problems: &[String], paths: &[&str], what: &str, change: &str) {
    for path in paths {
        assert!(
            problems.iter().any(|p| p.starts_with(&format!("{path}: ")) && p.contains(what)),
            "a change of {change} went unnoticed: no \"{path}: ...{what}...\" in {problems:#?}"
        );
    }
    let others: Vec<&String> =
        problems.iter().filter(|p| !paths.iter().any(|path| p.starts_with(&format!("{path}: ")))).collect();
    assert!(others.is_empty(), "a change of {change} was reported where it was not made: {others:#?}");
}

/// The comparison is able to fail: each single change to a copy of a small tree (mode, an
/// xattr's value, a removed or an added xattr, a broken hard link, an mtime off by a
/// nanosecond on a file, symlink, directory or the root, a symlink's target, contents, a
/// sparse file made dense, a missing or an extra entry, and as root an owner) is reported at
/// its path and nowhere else, and two builds of the tree compare equal.
#[test]
fn the_comparison_notices_each_kind_of_difference() {
    // Otherwise an exact round trip would prove nothing.
    type Change = (&'static str, &'static [&'static str], &'static str, fn(&Path));
    let mut changes: Vec<Change> = vec![
        ("mode", &["f"], "mode 0644 vs 0600", |t| set_mode(&t.join("f"), 0o600)),
        ("an xattr's value", &["f"], "xattr user.comment", |t| {
            set_xattr(&t.join("f"), "user.comment", b"another comment")
        }),
        ("an empty xattr removed", &["f"], "xattr user.empty missing", |t| {
            remove_xattr(&t.join("f"), "user.empty")
        }),
        ("an xattr added", &["d"], "xattr user.new only in the copy", |t| {
            set_xattr(&t.join("d"), "user.new", b"x")
        }),
        ("a broken hard link", &["a/linked", "b/linked"], "hard links", |t| {
            keeping_parent_mtime(&t.join("b/linked"), |p| {
                let (secs, nanos) = mtime_of(p);
                let mode = fs::symlink_metadata(p).expect("stat").mode();
                fs::remove_file(p).expect("rm");
                fs::write(p, "linked\n").expect("write");
                set_mode(p, mode & 0o7777);
                set_mtime(p, secs, nanos as u32);
            })
        }),
        ("a file's mtime, by a nanosecond", &["f"], "mtime", |t| {
            let (secs, nanos) = mtime_of(&t.join("f"));
            set_mtime(&t.join("f"), secs, nanos as u32 + 1);
        }),
        ("a symlink's mtime", &["l"], "mtime", |t| set_mtime(&t.join("l"), 5, 5)),
        ("a directory's mtime", &["d"], "mtime", |t| set_mtime(&t.join("d"), 5, 5)),
        ("the root's mtime", &["(root)"], "mtime", |t| set_mtime(t, 5, 5)),
        ("a symlink's target", &["l"], "symlink target f vs g", |t| {
            keeping_parent_mtime(&t.join("l"), |p| {
                let (secs, nanos) = mtime_of(p);
                fs::remove_file(p).expect("rm");
                std::os::unix::fs::symlink("g", p).expect("symlink");
                set_mtime(p, secs, nanos as u32);
            })
        }),
        ("contents", &["f"], "contents differ from byte 3", |t| {
            let (secs, nanos) = mtime_of(&t.join("f"));
            fs::OpenOptions::new()
                .write(true)
                .open(t.join("f"))
                .expect("open")
                .write_all_at(b"A", 3)
                .expect("write");
            set_mtime(&t.join("f"), secs, nanos as u32);
        }),
        ("a sparse file made dense", &["sparse"], "allocated", |t| {
            let (secs, nanos) = mtime_of(&t.join("sparse"));
            let contents = fs::read(t.join("sparse")).expect("read");
            fs::write(t.join("sparse"), contents).expect("write");
            set_mtime(&t.join("sparse"), secs, nanos as u32);
        }),
        ("a missing directory", &["d"], "missing from the copy", |t| {
            keeping_parent_mtime(&t.join("d"), |p| fs::remove_dir(p).expect("rmdir"))
        }),
        ("an extra file", &["new"], "only in the copy", |t| {
            keeping_parent_mtime(&t.join("new"), |p| fs::write(p, "").expect("write"))
        }),
    ];
    if is_root() {
        changes.push(("owner", &["f"], "owner", |t| {
            std::os::unix::fs::lchown(t.join("f"), Some(1), Some(1)).expect("chown")
        }));
    }
    let base = base_keeping(&[Feature::UserXattrs, Feature::Holes]);
    for (change, paths, what, make) in changes {
        let env = TestEnv::new_in(&base);
        build_small_tree(&env.path("a"));
        build_small_tree(&env.path("b"));
        let same = compare_trees(&env.path("a"), &env.path("b"), &Expect::exact());
        assert!(same.is_empty(), "two builds of the same tree differ: {same:#?}");
        make(&env.path("b"));
        assert_reported(
            &compare_trees(&env.path("a"), &env.path("b"), &Expect::exact()),
            paths,
            what,
            change,
        );
    }
}

/// Two builds of the fidelity tree compare equal; a copy stripped as an unprivileged read
/// strips it (no socket, no devices, no security.* or trusted.* xattrs, no setuid or setgid,
/// everything nobody's) passes with that [`Expect`] and fails the exact comparison at each
/// change; and an allowance is a requirement: what should be gone but is there is reported.
#[test]
fn the_comparison_of_fidelity_trees_allows_only_what_is_expected() {
    if skipped_unless_root("the_comparison_of_fidelity_trees_allows_only_what_is_expected") {
        return;
    }
    let env = TestEnv::new_in(&base_keeping(EVERYTHING));
    build_fidelity_tree(&env.path("a"));
    build_fidelity_tree(&env.path("b"));
    let b = env.path("b");
    assert_trees_match(&env.path("a"), &b, &Expect::exact());

    // Make of b what an extraction without --same-permissions by nobody makes; the parents'
    // mtimes are kept so that only what is allowed differs.
    keeping_parent_mtime(&b.join(SOCKET), |p| fs::remove_file(p).expect("rm socket"));
    for device in DEVICES {
        keeping_parent_mtime(&b.join(device), |p| fs::remove_file(p).expect("rm device"));
    }
    remove_xattr(&b.join(CAPABLE), "security.capability");
    remove_xattr(&b.join("xattrs/trusted"), "trusted.fidelity");
    set_mode(&b.join("modes/setuid"), 0o755);
    set_mode(&b.join("modes/setgid"), 0o755);
    chown_tree(&b, NOBODY);
    let unprivileged =
        Expect { owners: Owners::All { uid: NOBODY, gid: NOBODY }, ..without_same_permissions() };
    assert_trees_match(&env.path("a"), &b, &unprivileged);

    let problems = compare_trees(&env.path("a"), &b, &Expect::exact());
    for (path, what) in [
        (SOCKET, "missing from the copy"),
        (DEVICES[0], "missing from the copy"),
        (DEVICES[1], "missing from the copy"),
        (CAPABLE, "xattr security.capability missing"),
        ("xattrs/trusted", "xattr trusted.fidelity missing"),
        ("modes/setuid", "mode 4755 vs 0755"),
        ("modes/setgid", "mode 2755 vs 0755"),
        ("owners/numeric", "owner 1234:5678 vs 65534:65534"),
        ("(root)", "vs 65534:65534"),
    ] {
        let found = problems.iter().any(|p| p.starts_with(&format!("{path}: ")) && p.contains(what));
        assert!(found, "the exact comparison did not report \"{path}: ...{what}...\": {problems:#?}");
    }
    // Each allowance is a requirement too: what is allowed to go must be gone.
    let problems = compare_trees(&env.path("a"), &env.path("a"), &unprivileged);
    for (path, what) in
        [(SOCKET, "in the copy"), (DEVICES[0], "in the copy"), (CAPABLE, "xattr security.capability")]
    {
        let found = problems.iter().any(|p| p.starts_with(&format!("{path}: ")) && p.contains(what));
        assert!(found, "an allowed difference that did not happen was not reported at {path}: {problems:#?}");
    }
}

/// Gives everything beneath and including `path` to `id`:`id`, keeping setuid and setgid
/// bits (which chown clears).
fn chown_tree(path: &Path, id: u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    std::os::unix::fs::lchown(path, Some(id), Some(id))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    if !meta.is_symlink() {
        set_mode(path, meta.mode() & 0o7777);
    }
    if meta.is_dir() {
        for child in fs::read_dir(path).unwrap_or_else(|e| panic!("listing {}: {e}", path.display())) {
            chown_tree(&child.unwrap_or_else(|e| panic!("listing {}: {e}", path.display())).path(), id);
        }
    }
}

/// As root with `--same-permissions`, `arc read` gives back the fidelity tree exactly (owners,
/// hard links, holes, FIFO, devices, xattrs of every namespace, ACLs, setuid and setgid,
/// non-UTF-8 names and targets, mtimes to the nanosecond), but for the socket, which `arc
/// write` leaves out with a notice naming it and exit status 0.
#[test]
fn round_trip_as_root_is_exact() {
    if skipped_unless_root("round_trip_as_root_is_exact") {
        return;
    }
    let env = TestEnv::new_in(&base_keeping(EVERYTHING));
    let src = archived_fidelity_tree(&env);
    read(&env, "out", &["--same-permissions"]).success();
    assert_trees_match(&src, &env.path("out/tree"), &Expect { sockets_absent: true, ..Expect::exact() });
}

/// As root without `--same-permissions`, `arc read` leaves out the devices with a warning
/// naming each (exit status 1, nothing else on stderr), security.* and trusted.* xattrs, and
/// setuid and setgid bits; everything else is exact, owners and ACLs included.
#[test]
fn read_without_same_permissions() {
    if skipped_unless_root("read_without_same_permissions") {
        return;
    }
    let env = TestEnv::new_in(&base_keeping(EVERYTHING));
    let src = archived_fidelity_tree(&env);
    let run = read(&env, "out", &[]);
    run.code(1);
    assert_only_lines_naming(&run, &DEVICES);
    assert_trees_match(&src, &env.path("out/tree"), &without_same_permissions());
}

/// Owners are restored by name where the name exists: with www-data and backup renumbered
/// on the reading side, their files get the new ids; files of ids without names keep them.
#[test]
fn owners_are_restored_by_name() {
    if skipped_unless_root("owners_are_restored_by_name") {
        return;
    }
    // Where the names of the archive stand for other ids than on the machine that wrote it,
    // the names win. The ids are changed for arc alone, in a mount namespace.
    let env = TestEnv::new_in(&base_keeping(EVERYTHING));
    let src = archived_fidelity_tree(&env);
    let renumbered = (4321, 4322);
    let Some(wrapper) = with_named_owner_renumbered(env.root(), renumbered) else {
        eprintln!("skipped: owners_are_restored_by_name cannot renumber accounts");
        return;
    };
    let dest = env.path("out");
    let run = read_renumbered(&wrapper, &env, &dest, &["--same-permissions"]);
    run.success();
    let owners = Owners::Renumbered {
        uids: vec![(uid_of(NAMED_OWNER.0), renumbered.0)],
        gids: vec![(gid_of(NAMED_OWNER.1), renumbered.1)],
    };
    assert_trees_match(&src, &dest.join("tree"), &Expect { sockets_absent: true, owners, ..Expect::exact() });
}

/// `WRAPPER arc read -q ARCHIVE -C DEST ARGS` with absolute paths (the wrapper runs in the
/// test's working directory).
fn read_renumbered(wrapper: &[String], env: &TestEnv, dest: &Path, args: &[&str]) -> Run {
    let program: Vec<&str> = wrapper.iter().map(String::as_str).chain([ARC]).collect();
    let archive = env.path("tree.arc");
    let fixed =
        [OsStr::new("read"), OsStr::new("-q"), archive.as_os_str(), OsStr::new("-C"), dest.as_os_str()];
    run_program(&program, fixed.into_iter().chain(args.iter().map(OsStr::new)))
}

/// With `--numeric-owner` owners are restored by id, even where the names stand for other ids
/// on the reading side.
#[test]
fn numeric_owner() {
    if skipped_unless_root("numeric_owner") {
        return;
    }
    // With --numeric-owner the ids of the archive win over its names: to tell one from the
    // other, the names stand for other ids while arc reads.
    let env = TestEnv::new_in(&base_keeping(EVERYTHING));
    let src = archived_fidelity_tree(&env);
    let dest = env.path("out");
    let args = ["--same-permissions", "--numeric-owner"];
    let run = match with_named_owner_renumbered(env.root(), (4321, 4322)) {
        Some(wrapper) => read_renumbered(&wrapper, &env, &dest, &args),
        None => {
            eprintln!("note: numeric_owner reads with names and ids that agree: it cannot tell them apart");
            read(&env, "out", &args)
        }
    };
    run.success();
    assert_trees_match(&src, &dest.join("tree"), &Expect { sockets_absent: true, ..Expect::exact() });
}

/// With `--no-same-owner` everything belongs to the user who reads (root here); all else is
/// exact.
#[test]
fn no_same_owner() {
    if skipped_unless_root("no_same_owner") {
        return;
    }
    let env = TestEnv::new_in(&base_keeping(EVERYTHING));
    let src = archived_fidelity_tree(&env);
    read(&env, "out", &["--same-permissions", "--no-same-owner"]).success();
    let (uid, gid) = effective_ids();
    let expect = Expect { sockets_absent: true, owners: Owners::All { uid, gid }, ..Expect::exact() };
    assert_trees_match(&src, &env.path("out/tree"), &expect);
}

/// Read by `nobody` (through setpriv): everything is nobody's, which is no warning; devices
/// are skipped with a warning each (exit status 1); security.* and trusted.* xattrs and
/// setuid bits are not restored; user xattrs, ACLs (default ones too), hard links, holes and
/// mtimes are.
#[test]
fn read_as_unprivileged_user() {
    if skipped_unless_root("read_as_unprivileged_user") {
        return;
    }
    let env = TestEnv::new_in(&base_keeping(EVERYTHING));
    let src = archived_fidelity_tree(&env);
    // nobody must reach the archive and write to DEST.
    set_mode(env.root(), 0o755);
    set_mode(&env.path("tree.arc"), 0o644);
    let dest = env.path("out");
    fs::create_dir(&dest).expect("mkdir out");
    std::os::unix::fs::lchown(&dest, Some(NOBODY), Some(NOBODY)).expect("chown out");
    let nobody = format!("--reuid={NOBODY}");
    let nogroup = format!("--regid={NOBODY}");
    let setpriv = ["/usr/bin/setpriv", &nobody, &nogroup, "--clear-groups", "--inh-caps=-all", ARC];
    let archive = env.path("tree.arc");
    let run = run_program(
        &setpriv,
        [OsStr::new("read"), OsStr::new("-q"), archive.as_os_str(), OsStr::new("-C"), dest.as_os_str()],
    );
    run.code(1);
    // Devices are skipped with a warning each; that the files are nobody's is no warning.
    assert_only_lines_naming(&run, &DEVICES);
    for word in ["owner", "chown", "www-data"] {
        assert!(!run.stderr.contains(word), "stderr mentions {word:?}: {}", run.describe());
    }
    let expect = Expect { owners: Owners::All { uid: NOBODY, gid: NOBODY }, ..without_same_permissions() };
    assert_trees_match(&src, &dest.join("tree"), &expect);
    let acl = xattrs(&dest.join("tree/acl/dir"));
    assert!(acl.contains_key(ACL_DEFAULT.as_bytes()), "nobody's copy lost the default ACL: {acl:?}");
}

/// As root, arc skips a chown that would change nothing; a directory in DEST with the setgid
/// bit gives new entries its group, so there the chown is needed, also in the directories
/// made inside it (which inherit the bit).
#[test]
fn owners_are_exact_inside_setgid_directories() {
    if skipped_unless_root("owners_are_exact_inside_setgid_directories") {
        return;
    }
    let env = TestEnv::new();
    env.file("src/t/file", "root's\n");
    env.file("src/t/sub/deeper", "root's too\n");
    env.arc(["write", "-o", "t.arc", "-C", "src", "t"]).success();
    let shared = env.mkdir("out/t");
    std::os::unix::fs::chown(&shared, Some(1234), Some(5678)).expect("chown");
    set_mode(&shared, 0o2775);
    env.arc(["read", "t.arc", "-C", "out"]).success();
    for path in ["out/t/file", "out/t/sub", "out/t/sub/deeper"] {
        let meta = fs::symlink_metadata(env.path(path)).expect(path);
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path}");
    }
    // The merged directory itself is given the archive's owner and mode, as tar does.
    let meta = fs::symlink_metadata(&shared).expect("out/t");
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
}

/// A user may not set attributes on a file it has made read-only: `read` sets them before the
/// mode, so that nobody's copy of a read-only file and a read-only directory keeps its
/// `user.*` attributes.
#[test]
fn unprivileged_read_keeps_attributes_of_read_only_entries() {
    if skipped_unless_root("unprivileged_read_keeps_attributes_of_read_only_entries") {
        return;
    }
    let env = TestEnv::new_in(&base_keeping(&[Feature::UserXattrs]));
    let file = env.file("src/ro/file", "read only\n");
    set_xattr(&file, "user.note", b"kept");
    set_mode(&file, 0o444);
    let dir = env.path("src/ro");
    set_xattr(&dir, "user.note", b"kept too");
    set_mode(&dir, 0o555);
    env.arc([OsStr::new("write"), OsStr::new("-o"), OsStr::new("ro.arc"), dir.as_os_str()]).success();
    set_mode(env.root(), 0o755);
    set_mode(&env.path("ro.arc"), 0o644);
    let dest = env.path("out");
    fs::create_dir(&dest).expect("mkdir out");
    std::os::unix::fs::lchown(&dest, Some(NOBODY), Some(NOBODY)).expect("chown out");
    let nobody = format!("--reuid={NOBODY}");
    let nogroup = format!("--regid={NOBODY}");
    let setpriv = ["/usr/bin/setpriv", &nobody, &nogroup, "--clear-groups", "--inh-caps=-all", ARC];
    let archive = env.path("ro.arc");
    let run =
        run_program(&setpriv, [OsStr::new("read"), archive.as_os_str(), OsStr::new("-C"), dest.as_os_str()]);
    assert_eq!(run.code(0).stderr, "");
    assert_eq!(
        xattrs(&dest.join("ro/file")).get(b"user.note".as_slice()).map(Vec::as_slice),
        Some(&b"kept"[..])
    );
    assert_eq!(
        xattrs(&dest.join("ro")).get(b"user.note".as_slice()).map(Vec::as_slice),
        Some(&b"kept too"[..])
    );
    set_mode(&dest.join("ro"), 0o755);
}

/// Three names of one 2 MiB file that does not compress are stored once: the archive is at
/// most 10% larger than that of one name, `arc list -l` says `link to`, and the copy has one
/// inode with three names.
#[test]
fn hard_links_share_data() {
    let env = TestEnv::new();
    let data = pseudo_random(2 << 20, 11);
    env.file("one/a/file", &data);
    env.file("three/a/file", &data);
    env.mkdir("three/b");
    env.mkdir("three/c");
    fs::hard_link(env.path("three/a/file"), env.path("three/b/same")).expect("link three/b/same");
    fs::hard_link(env.path("three/a/file"), env.path("three/c/same-again")).expect("link three/c/same-again");
    // Bytes after the linked file's that a read of three/c leaves out, then an empty file it
    // keeps: the linked file must end where its own bytes do.
    env.file("three/a/zz", b"not the file's bytes");
    env.file("three/c/empty", b"");
    stamp_mtimes(&env.path("one"), 12);
    stamp_mtimes(&env.path("three"), 12);
    env.arc(["write", "-q", "-o", "one.arc", "one"]).success();
    env.arc(["write", "-q", "-o", "three.arc", "three"]).success();
    let size = |name: &str| fs::metadata(env.path(name)).expect("stat archive").len();
    let (one, three) = (size("one.arc"), size("three.arc"));
    assert!(
        three * 10 <= one * 11,
        "three names take {three} bytes, one name {one}: the data was stored again"
    );

    let listing = env.arc(["list", "-l", "three.arc"]).code(0).stdout_str();
    assert!(listing.contains("link to"), "`arc list -l` shows no hard link:\n{listing}");

    env.arc(["read", "-q", "three.arc", "-C", "out"]).success();
    assert_trees_match(&env.path("three"), &env.path("out/three"), &Expect::exact());

    // Selected alone, a link whose file is not selected gets the data itself; selected with
    // it, the link is made again (the index is then built with those entries only).
    env.arc(["read", "-q", "three.arc", "-C", "alone", "three/c/same-again"]).success();
    assert_eq!(fs::read(env.path("alone/three/c/same-again")).expect("read the link"), data);
    assert!(!env.path("alone/three/a").exists(), "the link's file was extracted too");
    env.arc(["read", "-q", "three.arc", "-C", "dir", "three/c"]).success();
    assert_eq!(fs::read(env.path("dir/three/c/same-again")).expect("read the link"), data);
    assert_eq!(env.arc(["cat", "three.arc", "three/c"]).code(0).stdout, data, "cat of three/c");
    // A PATH given twice is one PATH.
    env.arc(["read", "-q", "three.arc", "-C", "twice", "three/c", "three/c", "three/b"]).success();
    assert!(env.path("twice/three/b/same").exists() && env.path("twice/three/c/empty").exists());
    env.arc(["read", "-q", "three.arc", "-C", "both", "three/c", "three/a"]).success();
    let ino = |name: &str| fs::metadata(env.path(name)).expect("stat").ino();
    assert_eq!(ino("both/three/c/same-again"), ino("both/three/a/file"));
    assert!(!env.path("both/three/b").exists(), "three/b was not selected");
}

/// A 1 GiB file with 12 KiB of data takes less than 1 MiB in the archive, and its copy has
/// holes where it had them (at most [`ALLOCATION_SLACK`] more allocated than its data).
#[test]
fn sparse_file_stays_sparse() {
    // The fidelity tree's sparse file alone: 1 GiB with 12 KiB of data.
    let env = TestEnv::new_in(&base_keeping(&[Feature::Holes]));
    let src = env.path("src/tree");
    let file = src.join(SPARSE);
    fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
    make_sparse_file(&file, SPARSE_LEN, &sparse_pieces(SPARSE_LEN));
    stamp_mtimes(&src, 13);
    env.arc([
        OsStr::new("write"),
        OsStr::new("-q"),
        OsStr::new("-o"),
        OsStr::new("sparse.arc"),
        src.as_os_str(),
    ])
    .success();
    let archive = fs::metadata(env.path("sparse.arc")).expect("stat archive").len();
    assert!(archive < 1 << 20, "a 1 GiB file with 12 KiB of data takes {archive} bytes in the archive");

    env.arc(["read", "-q", "sparse.arc", "-C", "out"]).success();
    let data = 3 * SPARSE_PIECE as u64;
    let taken = allocated(&env.path("out/tree").join(SPARSE));
    assert!(
        taken <= data + ALLOCATION_SLACK,
        "the copy has {taken} bytes allocated for {data} bytes of data"
    );
    assert_trees_match(&src, &env.path("out/tree"), &Expect::exact());
}
