//! Round trips through the real binary: trees are generated, written, read back and compared
//! entry by entry (names, types, contents, modes, mtimes to the nanosecond, symlink targets).
//! Also what a user sees of a good archive: `list` in its three forms, selective reads,
//! `verify`, and the exit status and warnings for special files.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::support::harness::index_of;
use crate::support::{
    assert_same_tree, expected_listing, keeps_negative_mtime, mtime_of, paths_under, pseudo_random, set_mode,
    set_mtime, snapshot, stamp_mtimes, temp_files, Kind, TestEnv, ARC, BLOCK_SIZE,
};

/// A tree with a bit of everything a round trip must keep, at `src/tree`.
fn build_varied_tree(env: &TestEnv) -> PathBuf {
    let root = env.mkdir("src/tree");
    env.file("src/tree/empty", "");
    env.mkdir("src/tree/empty-dir");
    env.mkdir("src/tree/nested-empty/a/b/c");
    env.file("src/tree/hello.txt", "hello, world\n");
    env.file("src/tree/text.txt", "compressible line of text\n".repeat(5000));
    env.file("src/tree/random.bin", pseudo_random(100_000, 7));

    let long_name = format!("{}x", "é".repeat(127));
    assert_eq!(long_name.len(), 255);
    for name in [
        "naïve café.txt",
        "日本語のファイル名",
        "  two leading, two trailing  ",
        "emoji 🎉 party",
        "tab\tin name",
        "back\\slash",
        "-starts-with-dash",
        ".hidden",
        "...",
        "ends with dot.",
        "UPPER",
        "upper",
        "a -> b",
        long_name.as_str(),
    ] {
        env.file(Path::new("src/tree/names").join(name), format!("the file named {name:?}\n"));
    }
    env.mkdir("src/tree/names/dir with spaces/ünïcödé dir");
    env.file("src/tree/names/dir with spaces/ünïcödé dir/inner file", "inner\n");

    env.symlink("../hello.txt", "src/tree/links/relative");
    env.symlink("/nonexistent/absolute/target", "src/tree/links/absolute");
    env.symlink("/usr", "src/tree/links/absolute-existing");
    env.symlink("no such file", "src/tree/links/dangling");
    env.symlink("../nested-empty", "src/tree/links/to-dir");
    env.symlink("self-loop", "src/tree/links/self-loop");
    env.symlink("target ☃ with spaces", "src/tree/links/unicode ☃");
    env.symlink("../../../../../../outside/the/tree", "src/tree/links/climbing");

    for (name, mode) in [("600", 0o600), ("755", 0o755), ("444", 0o444), ("751", 0o751), ("640", 0o640)] {
        let path = env.file(format!("src/tree/modes/{name}"), format!("mode {name}\n"));
        set_mode(&path, mode);
    }
    let sticky = env.mkdir("src/tree/modes/sticky-1777");
    env.file("src/tree/modes/sticky-1777/inside", "in a sticky dir\n");
    set_mode(&sticky, 0o1777);
    let private = env.mkdir("src/tree/modes/private-700");
    set_mode(&private, 0o700);
    let read_only = env.mkdir("src/tree/modes/read-only-555");
    env.file("src/tree/modes/read-only-555/kept", "in a read-only dir\n");
    env.mkdir("src/tree/modes/read-only-555/sub");
    set_mode(&read_only, 0o555);
    set_mode(&read_only.join("sub"), 0o500);

    let mut deep = PathBuf::from("src/tree/deep");
    for level in 0..60 {
        deep.push(format!("level-{level:02}"));
    }
    env.file(deep.join("leaf.txt"), "at the bottom\n");

    stamp_mtimes(&root, 1);
    set_mtime(&env.path("src/tree/hello.txt"), 0, 0);
    set_mtime(&env.path("src/tree/empty"), 4_102_444_800, 999_999_999);
    if keeps_negative_mtime(env.root()) {
        let old = env.file("src/tree/old/before-1970", "from the sixties\n");
        env.mkdir("src/tree/old/dir");
        set_mtime(&old, -1_234_567_890, 987_654_321);
        set_mtime(&env.path("src/tree/old/dir"), -1, 1);
        env.symlink("before-1970", "src/tree/old/link");
        set_mtime(&env.path("src/tree/old/link"), -86_400, 500);
        set_mtime(&env.path("src/tree/old"), -2_000_000_000, 0);
        // Adding src/tree/old changed the root's mtime.
        set_mtime(&root, 1_500_000_000, 123_456_789);
    } else {
        eprintln!("note: this filesystem does not keep mtimes before 1970; not testing them");
    }
    root
}

#[test]
fn varied_tree_round_trips() {
    let env = TestEnv::new();
    let src = build_varied_tree(&env);
    let out = env.round_trip(&src, "tree.arc", "out");
    assert_same_tree(&src, &out);
    env.arc(["verify", "tree.arc"]).success();
}

#[test]
fn the_tree_comparison_notices_each_kind_of_difference() {
    // Each change to a copy must make assert_same_tree fail; otherwise a passing round trip
    // would prove nothing.
    type Change = (&'static str, fn(&Path));
    let changes: [Change; 8] = [
        ("content", |t| fs::write(t.join("f"), "DATA\n").expect("write")),
        ("mode", |t| set_mode(&t.join("f"), 0o640)),
        ("nanoseconds", |t| {
            let (s, n) = mtime_of(&t.join("f"));
            set_mtime(&t.join("f"), s, n as u32 + 1);
        }),
        ("symlink target", |t| {
            let (s, n) = mtime_of(&t.join("l"));
            fs::remove_file(t.join("l")).expect("rm");
            std::os::unix::fs::symlink("g", t.join("l")).expect("symlink");
            set_mtime(&t.join("l"), s, n as u32);
        }),
        ("symlink mtime", |t| set_mtime(&t.join("l"), 5, 5)),
        ("empty dir", |t| {
            let (s, n) = mtime_of(t);
            fs::create_dir(t.join("new")).expect("mkdir");
            set_mtime(t, s, n as u32);
        }),
        ("type", |t| {
            let (s, n) = mtime_of(&t.join("d"));
            fs::remove_dir(t.join("d")).expect("rmdir");
            fs::write(t.join("d"), "").expect("write");
            set_mtime(&t.join("d"), s, n as u32);
        }),
        ("root mtime", |t| set_mtime(t, 7, 7)),
    ];
    for (what, change) in changes {
        let env = TestEnv::new();
        for side in ["a", "b"] {
            env.file(format!("{side}/f"), "data\n");
            set_mode(&env.path(format!("{side}/f")), 0o644);
            env.symlink("f", format!("{side}/l"));
            env.mkdir(format!("{side}/d"));
            stamp_mtimes(&env.path(side), 3);
        }
        assert_same_tree(&env.path("a"), &env.path("b"));
        change(&env.path("b"));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_same_tree(&env.path("a"), &env.path("b"))
        }));
        assert!(caught.is_err(), "a difference in {what} went unnoticed");
    }
}

#[test]
fn large_files_round_trip_across_blocks() {
    let env = TestEnv::new();
    let src = env.mkdir("src/big");
    env.file("src/big/a-small", "before the big ones\n");
    env.file("src/big/b-big.bin", pseudo_random((9 << 20) + 17, 1));
    env.file("src/big/c-exact-block.bin", pseudo_random(BLOCK_SIZE, 2));
    env.file("src/big/d-empty", "");
    env.file("src/big/e-text", "a line that compresses well\n".repeat(40_000));
    stamp_mtimes(&src, 2);
    let out = env.round_trip(&src, "big.arc", "out");
    assert_same_tree(&src, &out);
    env.arc(["verify", "big.arc"]).success();
    let blocks = blocks_of(&env.path("big.arc"));
    let data: u64 = blocks.iter().sum();
    assert_eq!(
        data,
        fs::read_dir(&src).expect("ls").map(|e| e.expect("ls").metadata().expect("stat").len()).sum::<u64>()
    );
    assert!(blocks.len() >= 4, "{} bytes in only {} blocks", data, blocks.len());
    assert!(blocks[..blocks.len() - 1].iter().all(|&b| b == BLOCK_SIZE as u64), "{blocks:?}");
}

/// The uncompressed length of each block of an archive, from its index.
fn blocks_of(archive: &Path) -> Vec<u64> {
    index_of(archive).blocks.iter().map(|b| b.raw_len).collect()
}

#[test]
fn file_of_exactly_one_block_fills_one_block() {
    let env = TestEnv::new();
    let src = env.mkdir("src/exact");
    env.file("src/exact/a", pseudo_random(BLOCK_SIZE, 3));
    env.file("src/exact/b-empty-at-the-boundary", "");
    env.file("src/exact/c", "starts the second block\n");
    stamp_mtimes(&src, 3);
    let out = env.round_trip(&src, "exact.arc", "out");
    assert_same_tree(&src, &out);
    assert_eq!(blocks_of(&env.path("exact.arc")), [BLOCK_SIZE as u64, 24]);

    // A tree of exactly one block's bytes makes exactly one block.
    fs::remove_file(src.join("c")).expect("rm");
    env.arc(["write", "-o", "one.arc", "-C", "src", "exact"]).success();
    assert_eq!(blocks_of(&env.path("one.arc")), [BLOCK_SIZE as u64]);
    env.arc(["read", "one.arc", "-C", "one"]).success();
    assert_same_tree(&src, &env.path("one/exact"));
}

#[test]
fn thousands_of_small_files_round_trip() {
    let env = TestEnv::new();
    let src = env.mkdir("src/many");
    for i in 0..3000 {
        let contents = match i % 4 {
            0 => Vec::new(),
            1 => format!("file {i}\n").into_bytes(),
            2 => pseudo_random(i % 700, i as u64),
            _ => format!("{i} ").repeat(i % 300).into_bytes(),
        };
        env.file(format!("src/many/dir-{:02}/file-{i:04}", i % 30), contents);
    }
    stamp_mtimes(&src, 4);
    let out = env.round_trip(&src, "many.arc", "out");
    assert_same_tree(&src, &out);
    let listed = env.arc(["list", "many.arc"]).success().stdout_lines();
    assert_eq!(listed.len(), 3000 + 30 + 1);
}

#[test]
fn empty_trees_round_trip() {
    let env = TestEnv::new();
    let src = env.mkdir("src/hollow");
    env.mkdir("src/hollow/a/b");
    env.file("src/hollow/a/nothing", "");
    stamp_mtimes(&src, 5);
    let out = env.round_trip(&src, "hollow.arc", "out");
    assert_same_tree(&src, &out);
    assert_eq!(blocks_of(&env.path("hollow.arc")), Vec::<u64>::new());

    let bare = env.mkdir("src/bare");
    let out = env.round_trip(&bare, "bare.arc", "out-bare");
    assert_same_tree(&bare, &out);
}

/// A tree of several blocks of different compressibility, for the determinism tests.
fn build_multi_block_tree(env: &TestEnv) -> PathBuf {
    let src = env.mkdir("src/blocks");
    env.file("src/blocks/random.bin", pseudo_random((6 << 20) + 5, 11));
    env.file("src/blocks/text", "some text that repeats\n".repeat(150_000));
    for i in 0..200 {
        env.file(format!("src/blocks/small/{i:03}"), format!("small file {i}\n"));
    }
    stamp_mtimes(&src, 6);
    src
}

#[test]
fn archives_do_not_depend_on_thread_count_or_output_kind() {
    let env = TestEnv::new();
    build_multi_block_tree(&env);
    for threads in ["1", "2", "4"] {
        env.arc(["write", "-j", threads, "-o", &format!("j{threads}.arc"), "-C", "src", "blocks"]).success();
    }
    let reference = fs::read(env.path("j1.arc")).expect("read j1.arc");
    assert!(blocks_of(&env.path("j1.arc")).len() >= 3);
    for other in ["j2.arc", "j4.arc"] {
        assert!(fs::read(env.path(other)).expect("read") == reference, "{other} differs from j1.arc");
    }
    let to_stdout = env.arc(["write", "-j", "2", "-o", "-", "-C", "src", "blocks"]);
    to_stdout.success();
    assert!(to_stdout.stdout == reference, "`write -o -` differs from writing a file");
}

#[test]
fn reading_does_not_depend_on_thread_count() {
    let env = TestEnv::new();
    let src = build_multi_block_tree(&env);
    env.arc(["write", "-o", "blocks.arc", "-C", "src", "blocks"]).success();
    for threads in ["1", "2", "4"] {
        let dest = format!("out-{threads}");
        env.arc(["read", "-j", threads, "blocks.arc", "-C", &dest]).success();
        assert_same_tree(&src, &env.path(dest).join("blocks"));
    }
    env.arc(["verify", "-j", "1", "blocks.arc"]).success();
}

#[test]
fn read_without_directory_extracts_into_the_working_directory() {
    let env = TestEnv::new();
    let src = env.mkdir("src/here");
    env.file("src/here/file", "here\n");
    env.symlink("file", "src/here/link");
    stamp_mtimes(&src, 7);
    env.arc(["write", "-o", "here.arc", "-C", "src", "here"]).success();
    let work = env.mkdir("work");
    env.arc_in(&work, ["read", "../here.arc"]).success();
    assert_same_tree(&src, &work.join("here"));
    let names: Vec<_> = fs::read_dir(&work).expect("ls").map(|e| e.expect("ls").file_name()).collect();
    assert_eq!(names, ["here"]);
}

#[test]
fn several_inputs_become_several_roots() {
    let env = TestEnv::new();
    let one = env.mkdir("first/place/one");
    env.file("first/place/one/a", "a\n");
    let two = env.mkdir("second/two");
    env.file("second/two/b", "b\n");
    env.mkdir("second/two/empty");
    let single = env.file("third/single.txt", "a file given as an input\n");
    let empty = env.file("third/zero", "");
    for path in [&one, &two, &single, &empty] {
        stamp_mtimes(path, 8);
    }
    // Absolute inputs are stored under their last component; the order given does not matter.
    let write = |out: &str, inputs: [&PathBuf; 4]| {
        let mut args = vec![OsStr::new("write"), OsStr::new("-o"), OsStr::new(out)];
        args.extend(inputs.iter().map(|p| p.as_os_str()));
        env.arc(args).success();
    };
    write("forward.arc", [&one, &two, &single, &empty]);
    write("backward.arc", [&empty, &single, &two, &one]);
    assert!(
        fs::read(env.path("forward.arc")).expect("read") == fs::read(env.path("backward.arc")).expect("read"),
        "the order of the inputs changed the archive"
    );
    let listed = env.arc(["list", "forward.arc"]).success().stdout_lines();
    assert_eq!(listed, ["one/", "one/a", "single.txt", "two/", "two/b", "two/empty/", "zero"]);
    env.arc(["read", "forward.arc", "-C", "out"]).success();
    assert_same_tree(&one, &env.path("out/one"));
    assert_same_tree(&two, &env.path("out/two"));
    assert_same_tree(&single, &env.path("out/single.txt"));
    assert_same_tree(&empty, &env.path("out/zero"));
    assert_eq!(fs::read_dir(env.path("out")).expect("ls").count(), 4);
}

#[test]
fn archive_inside_the_tree_leaves_itself_out() {
    let env = TestEnv::new();
    env.file("src/self/a", "a\n");
    env.file("src/self/b/c", "c\n");
    for round in ["first", "second, over the first"] {
        env.arc(["write", "-o", "src/self/b/self.arc", "-C", "src", "self"]).success();
        let listed = env.arc(["list", "src/self/b/self.arc"]).success().stdout_lines();
        assert_eq!(listed, ["self/", "self/a", "self/b/", "self/b/c"], "{round} write");
        assert_eq!(temp_files(env.root()), Vec::<PathBuf>::new());
    }
    env.arc(["read", "src/self/b/self.arc", "-C", "out"]).success();
    assert_eq!(fs::read_to_string(env.path("out/self/b/c")).expect("read"), "c\n");
}

#[test]
fn paths_longer_than_path_max_round_trip() {
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    let env = TestEnv::new();
    env.mkdir("src/deep");
    let component = "d".repeat(120);
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(env.path("src/deep"), dir_flags, Mode::empty()).expect("open");
    for _ in 0..40 {
        mkdirat(&dir, component.as_str(), Mode::from_raw_mode(0o755)).expect("mkdirat");
        dir = openat(&dir, component.as_str(), dir_flags, Mode::empty()).expect("openat");
    }
    let leaf =
        openat(&dir, "leaf", OFlags::WRONLY | OFlags::CREATE, Mode::from_raw_mode(0o644)).expect("create");
    rustix::io::write(&leaf, b"at the bottom\n").expect("write");

    env.arc(["write", "-o", "deep.arc", "-C", "src", "deep"]).success();
    let listed = env.arc(["list", "deep.arc"]).success().stdout_lines();
    assert_eq!(listed.len(), 42);
    assert!(listed[41].ends_with("/leaf") && listed[41].len() > 4096);
    env.arc(["read", "deep.arc", "-C", "out"]).success();
    let mut dir = rustix::fs::open(env.path("out/deep"), dir_flags, Mode::empty()).expect("open");
    for _ in 0..40 {
        dir = openat(&dir, component.as_str(), dir_flags, Mode::empty()).expect("openat");
    }
    let leaf = openat(&dir, "leaf", OFlags::RDONLY, Mode::empty()).expect("open leaf");
    let mut buf = [0u8; 64];
    let n = rustix::io::read(&leaf, &mut buf).expect("read");
    assert_eq!(&buf[..n], b"at the bottom\n");
}

#[test]
fn dot_input_is_named_after_the_directory() {
    let env = TestEnv::new();
    let src = env.mkdir("src/named");
    env.file("src/named/inside", "inside\n");
    stamp_mtimes(&src, 9);
    env.arc_in(&src, ["write", "-o", "../../dot.arc", "."]).success();
    assert_eq!(env.arc(["list", "dot.arc"]).success().stdout_lines(), ["named/", "named/inside"]);
    env.arc(["read", "dot.arc", "-C", "out"]).success();
    assert_same_tree(&src, &env.path("out/named"));
}

#[test]
fn fifos_are_stored_and_sockets_ignored_with_a_notice() {
    let env = TestEnv::new();
    let src = env.mkdir("src/special");
    env.file("src/special/regular", "kept\n");
    let fifo = env.path("src/special/sub/a-fifo");
    env.mkdir("src/special/sub");
    crate::support::make_fifo(&fifo);
    let socket = env.path("src/special/sub/b-socket");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("binding a socket"));
    env.file("src/special/sub/c-after", "after the special files\n");
    stamp_mtimes(&src, 10);

    // A socket cannot be archived and is no loss: a notice, exit status 0, as tar does.
    let run = env.arc(["write", "-o", "special.arc", "-C", "src", "special"]);
    assert_eq!(run.code(0).stderr, "arc: notice: src/special/sub/b-socket: socket ignored\n");
    let listed = env.arc(["list", "special.arc"]).success().stdout_lines();
    assert_eq!(
        listed,
        ["special/", "special/regular", "special/sub/", "special/sub/a-fifo", "special/sub/c-after"]
    );
    let long = env.arc(["list", "-l", "special.arc"]).success().stdout_str();
    assert!(long.lines().any(|l| l.starts_with("prw-") && l.ends_with(" special/sub/a-fifo")), "{long}");
    // -q silences notices.
    let quiet = env.arc(["write", "-q", "-o", "quiet.arc", "-C", "src", "special"]);
    assert_eq!(quiet.code(0).stderr, "");

    // The FIFO comes back, for anyone; the socket does not.
    env.arc(["read", "special.arc", "-C", "out"]).success();
    let made = fs::symlink_metadata(env.path("out/special/sub/a-fifo")).expect("the FIFO");
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&made.file_type()));
    let sub_mtime = mtime_of(&src.join("sub"));
    fs::remove_file(&socket).expect("rm socket");
    set_mtime(&src.join("sub"), sub_mtime.0, sub_mtime.1 as u32);
    assert_same_tree(&src, &env.path("out/special"));
}

#[test]
fn setuid_and_setgid_bits_come_back_only_with_same_permissions() {
    let env = TestEnv::new();
    let src = env.mkdir("src/suid");
    let program = env.file("src/suid/program", "#!/bin/sh\n");
    set_mode(&program, 0o4755);
    let shared = env.mkdir("src/suid/shared");
    set_mode(&shared, 0o2775);
    let both = env.file("src/suid/both", "");
    set_mode(&both, 0o6711);
    stamp_mtimes(&src, 12);
    let mode = |p: PathBuf| fs::symlink_metadata(p).expect("stat").mode() & 0o7777;
    assert_eq!(mode(program.clone()), 0o4755, "cannot make setuid files here");

    env.arc(["write", "-o", "suid.arc", "-C", "src", "suid"]).success();
    let long = env.arc(["list", "-l", "suid.arc"]).success().stdout_str();
    assert!(long.contains("-rwsr-xr-x"), "{long}");
    assert!(long.contains("drwxrwsr-x"), "{long}");
    assert!(long.contains("-rws--s--x"), "{long}");

    env.arc(["read", "suid.arc", "-C", "plain"]).success();
    assert_same_tree(&src, &env.path("plain/suid"));
    assert_eq!(mode(env.path("plain/suid/program")), 0o755);
    assert_eq!(mode(env.path("plain/suid/shared")), 0o775);
    assert_eq!(mode(env.path("plain/suid/both")), 0o711);

    env.arc(["read", "--same-permissions", "suid.arc", "-C", "same"]).success();
    assert_same_tree(&src, &env.path("same/suid"));
    assert_eq!(mode(env.path("same/suid/program")), 0o4755);
    assert_eq!(mode(env.path("same/suid/shared")), 0o2775);
    assert_eq!(mode(env.path("same/suid/both")), 0o6711);
}

#[test]
fn reading_again_overwrites_or_keeps_as_asked() {
    let env = TestEnv::new();
    let src = build_varied_tree(&env);
    let out = env.round_trip(&src, "tree.arc", "out");

    // Damage the copy, then --keep-existing restores only what is missing.
    fs::write(out.join("hello.txt"), "changed\n").expect("write");
    fs::remove_file(out.join("text.txt")).expect("rm");
    env.arc(["read", "--keep-existing", "tree.arc", "-C", "out"]).success();
    assert_eq!(fs::read_to_string(out.join("hello.txt")).expect("read"), "changed\n");
    assert_eq!(fs::read(out.join("text.txt")).expect("read"), fs::read(src.join("text.txt")).expect("read"));

    // --overwrite puts everything back as it was archived.
    env.arc(["read", "--overwrite", "tree.arc", "-C", "out"]).success();
    assert_same_tree(&src, &out);
    assert_eq!(temp_files(&out), Vec::<PathBuf>::new());
}

#[test]
fn modes_do_not_depend_on_the_umask() {
    let env = TestEnv::new();
    let src = build_list_tree(&env);
    env.arc(["write", "-o", "ls.arc", "-C", "src", "ls"]).success();
    for umask in ["077", "000", "277"] {
        let dest = format!("out-{umask}");
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("umask {umask} && exec \"$0\" read -q ls.arc -C {dest}"), ARC])
            .current_dir(env.root())
            .status()
            .expect("running sh");
        assert!(status.success(), "read under umask {umask}: {status:?}");
        assert_same_tree(&src, &env.path(dest).join("ls"));
    }
}

#[test]
fn verbose_read_prints_every_path() {
    let env = TestEnv::new();
    let src = build_varied_tree(&env);
    env.arc(["write", "-q", "-o", "tree.arc", "-C", "src", "tree"]).success();
    let printed: BTreeSet<String> =
        env.arc(["read", "-v", "tree.arc", "-C", "out"]).success().stdout_lines().into_iter().collect();
    let listed: BTreeSet<String> = env
        .arc(["list", "tree.arc"])
        .success()
        .stdout_lines()
        .into_iter()
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    assert_eq!(printed, listed);
    assert_eq!(listed.len(), snapshot(&src).len());
}

#[test]
fn verbose_write_prints_each_input_path_in_archive_order() {
    let env = TestEnv::new();
    let src = env.mkdir("src/v");
    env.file("src/v/b", "b\n");
    env.file("src/v/a/x", "x\n");
    env.symlink("b", "src/v/c");
    let printed = env.arc(["write", "-v", "-o", "v.arc", "-C", "src", "v"]).success().stdout_lines();
    assert_eq!(printed, ["src/v", "src/v/a", "src/v/a/x", "src/v/b", "src/v/c"]);
    let listed = expected_listing(&src, "v");
    assert_eq!(env.arc(["list", "v.arc"]).success().stdout_lines(), listed);
}

#[test]
fn verbose_write_to_stdout_keeps_the_archive_clean() {
    let env = TestEnv::new();
    env.file("src/v/a", "a\n");
    env.arc(["write", "-o", "plain.arc", "-C", "src", "v"]).success();
    let run = env.arc(["write", "-v", "-o", "-", "-C", "src", "v"]);
    run.code(0);
    assert!(run.stdout == fs::read(env.path("plain.arc")).expect("read"), "stdout is not the archive");
}

#[test]
fn verify_accepts_a_good_archive() {
    let env = TestEnv::new();
    build_multi_block_tree(&env);
    env.arc(["write", "-o", "good.arc", "-C", "src", "blocks"]).success();
    let run = env.arc(["verify", "good.arc"]);
    run.success();
    assert!(run.stdout.is_empty());
}

// --- list ---

/// A small tree for the listing tests, with every kind of entry and known mtimes.
fn build_list_tree(env: &TestEnv) -> PathBuf {
    let src = env.mkdir("src/ls");
    let file = env.file("src/ls/file.txt", "twelve bytes");
    set_mode(&file, 0o640);
    let kib = env.file("src/ls/data/two-kib", vec![b'k'; 2048]);
    set_mode(&kib, 0o600);
    env.file("src/ls/data/ünïcödé and spaces", "u\n");
    env.mkdir("src/ls/empty");
    let exe = env.file("src/ls/run", "#!/bin/sh\n");
    set_mode(&exe, 0o755);
    env.symlink("file.txt", "src/ls/link");
    env.symlink("/nowhere at all", "src/ls/dangling");
    stamp_mtimes(&src, 13);
    set_mtime(&file, 1_000_000_000, 5);
    src
}

#[test]
fn list_prints_the_tree() {
    let env = TestEnv::new();
    let src = build_list_tree(&env);
    env.arc(["write", "-o", "ls.arc", "-C", "src", "ls"]).success();
    let listed = env.arc(["list", "ls.arc"]).success().stdout_lines();
    assert_eq!(listed, expected_listing(&src, "ls"));
    assert_eq!(listed[0], "ls/");
    assert!(listed.contains(&"ls/empty/".to_owned()));
    assert!(listed.contains(&"ls/link".to_owned()));
}

/// `rwxr-x---` and friends, as ls prints them.
fn mode_string(mode: u32) -> String {
    let mut s = String::new();
    for (shift, special, set) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => set,
            (true, false) => set.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// The UTC date and time of `secs`, by date(1), so the test does not share arc's calendar code.
fn utc(secs: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d %H:%M:%S"])
        .output()
        .expect("running date");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned()
}

#[test]
fn list_long_describes_each_entry() {
    let env = TestEnv::new();
    let src = build_list_tree(&env);
    env.arc(["write", "-o", "ls.arc", "-C", "src", "ls"]).success();
    let listed = env.arc(["list", "-l", "--bytes", "ls.arc"]).success().stdout_lines();
    let names = expected_listing(&src, "ls");
    assert_eq!(listed.len(), names.len());
    for (line, name) in listed.iter().zip(&names) {
        let rel = name.trim_end_matches('/').strip_prefix("ls").expect("under ls").trim_start_matches('/');
        let node = &snapshot(&src.join(rel))[Path::new("")];
        let type_char = match node.kind {
            Kind::Dir => 'd',
            Kind::File => '-',
            Kind::Symlink => 'l',
            Kind::Other => unreachable!(),
        };
        let meta = fs::symlink_metadata(src.join(rel)).expect("stat");
        let user = nix::unistd::User::from_uid(meta.uid().into()).ok().flatten().map(|u| u.name);
        let group = nix::unistd::Group::from_gid(meta.gid().into()).ok().flatten().map(|g| g.name);
        let owner =
            format!("{}/{}", user.unwrap_or(meta.uid().to_string()), group.unwrap_or(meta.gid().to_string()));
        let mut expected = format!(
            "{type_char}{} {owner:<17} {:>10} {} UTC {name}",
            mode_string(node.mode),
            node.size,
            utc(node.mtime.0)
        );
        if let Some(target) = &node.target {
            expected.push_str(&format!(" -> {}", target.display()));
        }
        assert_eq!(line, &expected);
    }
    let file_line = listed.iter().find(|l| l.ends_with(" ls/file.txt")).expect("ls/file.txt listed");
    assert!(
        file_line.starts_with("-rw-r----- ") && file_line.contains("         12 2001-09-09 01:46:40 UTC")
    );

    // Without --bytes, sizes are for people.
    let human = env.arc(["list", "-l", "ls.arc"]).success().stdout_str();
    assert!(human.contains("    2.0 KiB ") && human.contains("       12 B "), "{human}");
}

#[test]
fn list_json_has_one_object_per_entry() {
    let env = TestEnv::new();
    let src = build_list_tree(&env);
    env.arc(["write", "-o", "ls.arc", "-C", "src", "ls"]).success();
    let lines = env.arc(["list", "--json", "ls.arc"]).success().stdout_lines();
    let tree = snapshot(&src);
    assert_eq!(lines.len(), tree.len());
    let mut seen = BTreeSet::new();
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        let object = value.as_object().unwrap_or_else(|| panic!("not an object: {line}"));
        let path = object["path"].as_str().expect("path");
        let rel = path.strip_prefix("ls").expect("under ls").trim_start_matches('/');
        let node = &tree[Path::new(rel)];
        let kind = match node.kind {
            Kind::Dir => "dir",
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::Other => unreachable!(),
        };
        assert_eq!(object["type"], kind, "{line}");
        assert_eq!(object["mode"], format!("{:04o}", node.mode), "{line}");
        assert_eq!(object["size"], node.size, "{line}");
        assert_eq!(object["mtime"], node.mtime.0, "{line}");
        assert_eq!(object["mtime_nsec"], node.mtime.1, "{line}");
        match &node.target {
            Some(target) => assert_eq!(object["target"], target.to_str().expect("UTF-8"), "{line}"),
            None => assert!(!object.contains_key("target"), "{line}"),
        }
        assert!(seen.insert(path.to_owned()), "{path} listed twice");
    }
}

#[test]
fn list_escapes_control_characters_one_entry_per_line() {
    let env = TestEnv::new();
    env.file("src/esc/line\nbreak", "");
    env.file("src/esc/tab\there", "");
    env.file("src/esc/back\\slash", "");
    env.file("src/esc/escape\x1b[31mred", "");
    env.symlink("target\nwith newline", "src/esc/link");
    env.arc(["write", "-o", "esc.arc", "-C", "src", "esc"]).success();
    let listed = env.arc(["list", "esc.arc"]).success().stdout_lines();
    assert_eq!(
        listed,
        [
            "esc/",
            "esc/back\\\\slash",
            "esc/escape\\u{1b}[31mred",
            "esc/line\\nbreak",
            "esc/link",
            "esc/tab\\there"
        ]
    );
    let long = env.arc(["list", "-l", "esc.arc"]).success().stdout_lines();
    assert_eq!(long.len(), 6);
    assert!(long[4].ends_with("esc/link -> target\\nwith newline"), "{}", long[4]);
    // JSON keeps the real names.
    let json = env.arc(["list", "--json", "esc.arc"]).success().stdout_lines();
    let paths: Vec<String> = json
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["path"]
                .as_str()
                .expect("path")
                .to_owned()
        })
        .collect();
    assert_eq!(paths[3], "esc/line\nbreak");
    // And the names come back as they were.
    env.arc(["read", "esc.arc", "-C", "out"]).success();
    assert_same_tree(&env.path("src/esc"), &env.path("out/esc"));
}

#[test]
fn list_into_a_closed_pipe_ends_quietly() {
    let env = TestEnv::new();
    // Enough listing (about 500 KiB) to fill the pipe and arc's buffer after head has gone.
    let long = "n".repeat(240);
    for i in 0..2000 {
        env.file(format!("src/pipe/{long}-{i:04}"), "");
    }
    env.arc(["write", "-o", "pipe.arc", "-C", "src", "pipe"]).success();
    let script = r#""$0" list "$1" 2>"$2" | head -n 1; echo "status ${PIPESTATUS[0]}""#;
    let out = std::process::Command::new("bash")
        .args(["-c", script, ARC, "pipe.arc", "stderr.txt"])
        .current_dir(env.root())
        .output()
        .expect("running bash");
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert_eq!(stdout, "pipe/\nstatus 0\n");
    assert_eq!(fs::read_to_string(env.path("stderr.txt")).expect("read stderr"), "");
}

// --- selection ---

/// A tree to select from: `src/sel` with files in several places.
fn build_selection_tree(env: &TestEnv) -> PathBuf {
    let src = env.mkdir("src/sel");
    env.file("src/sel/top.md", "top\n");
    env.file("src/sel/a.txt", "a\n");
    env.file("src/sel/sub/file", "the one file\n");
    env.file("src/sel/sub/deeper/x.txt", "x\n");
    env.file("src/sel/sub/deeper/y.md", "y\n");
    env.mkdir("src/sel/sub/empty");
    env.symlink("file", "src/sel/sub/link");
    env.file("src/sel/other/z.txt", "z\n");
    env.file("src/sel/other/big", pseudo_random(300_000, 14));
    stamp_mtimes(&src, 15);
    env.arc(["write", "-o", "sel.arc", "-C", "src", "sel"]).success();
    src
}

#[test]
fn read_one_file() {
    let env = TestEnv::new();
    let src = build_selection_tree(&env);
    env.arc(["read", "sel.arc", "sel/sub/file", "-C", "one"]).success();
    assert_eq!(paths_under(&env.path("one")), ["sel", "sel/sub", "sel/sub/file"]);
    assert_same_tree(&src.join("sub/file"), &env.path("one/sel/sub/file"));
}

#[test]
fn read_a_subtree() {
    let env = TestEnv::new();
    let src = build_selection_tree(&env);
    for (spelling, dest) in [("sel/sub", "plain"), ("sel/sub/", "slash"), ("./sel/sub", "dot")] {
        env.arc(["read", "sel.arc", spelling, "-C", dest]).success();
        let names: Vec<_> = fs::read_dir(env.path(dest).join("sel"))
            .expect("ls")
            .map(|e| e.expect("ls").file_name())
            .collect();
        assert_eq!(names, ["sub"], "reading {spelling}");
        assert_same_tree(&src.join("sub"), &env.path(dest).join("sel/sub"));
    }
    // Several PATHs at once.
    env.arc(["read", "sel.arc", "sel/other", "sel/top.md", "-C", "two"]).success();
    assert_eq!(
        paths_under(&env.path("two")),
        ["sel", "sel/other", "sel/other/big", "sel/other/z.txt", "sel/top.md"]
    );
    assert_same_tree(&src.join("other"), &env.path("two/sel/other"));
}

#[test]
fn read_by_glob() {
    let env = TestEnv::new();
    let src = build_selection_tree(&env);
    env.arc(["read", "sel.arc", "--glob", "**/*.txt", "-C", "txt"]).success();
    let got: Vec<String> =
        paths_under(&env.path("txt")).into_iter().filter(|p| env.path("txt").join(p).is_file()).collect();
    assert_eq!(got, ["sel/a.txt", "sel/other/z.txt", "sel/sub/deeper/x.txt"]);
    // `*` stops at `/`: one level only.
    env.arc(["read", "sel.arc", "--glob", "sel/*.txt", "-C", "one-level"]).success();
    assert_eq!(paths_under(&env.path("one-level")), ["sel", "sel/a.txt"]);
    env.arc(["read", "sel.arc", "--glob", "*.txt", "-C", "none"]).error();
    for file in &got {
        let rel = file.strip_prefix("sel/").expect("under sel");
        assert_same_tree(&src.join(rel), &env.path("txt").join(file));
    }
    // A glob that matches a directory brings its subtree; globs add up.
    env.arc(["read", "sel.arc", "--glob", "sel/sub/dee*", "--glob", "**/top.md", "-C", "mixed"]).success();
    assert_eq!(
        paths_under(&env.path("mixed")),
        ["sel", "sel/sub", "sel/sub/deeper", "sel/sub/deeper/x.txt", "sel/sub/deeper/y.md", "sel/top.md"]
    );
    assert_same_tree(&src.join("sub/deeper"), &env.path("mixed/sel/sub/deeper"));
}

#[test]
fn list_a_selection() {
    let env = TestEnv::new();
    build_selection_tree(&env);
    let listed = env.arc(["list", "sel.arc", "sel/sub"]).success().stdout_lines();
    assert_eq!(
        listed,
        [
            "sel/sub/",
            "sel/sub/deeper/",
            "sel/sub/deeper/x.txt",
            "sel/sub/deeper/y.md",
            "sel/sub/empty/",
            "sel/sub/file",
            "sel/sub/link"
        ]
    );
    let listed = env.arc(["list", "sel.arc", "--glob", "**/*.md"]).success().stdout_lines();
    assert_eq!(listed, ["sel/sub/deeper/y.md", "sel/top.md"]);
}

#[test]
fn selection_that_matches_nothing_is_an_error_naming_it() {
    let env = TestEnv::new();
    build_selection_tree(&env);
    for (args, named) in [
        (&["sel/nope"][..], "sel/nope"),
        (&["sel/sub/file", "sel/missing/deeper"][..], "sel/missing/deeper"),
        (&["sel/sub/file/below-a-file"][..], "sel/sub/file/below-a-file"),
        (&["sub"][..], "sub"),
        (&["--glob", "*.rs"][..], "*.rs"),
        (&["--glob", "**/*.txt", "--glob", "nothing*"][..], "nothing*"),
    ] {
        let mut command = vec!["read", "sel.arc", "-C", "dest"];
        command.extend_from_slice(args);
        let error = env.arc(&command).error();
        assert!(error.contains(named), "{error} does not name {named}");
        assert!(!env.path("dest").exists(), "read {args:?} created DEST");
        let mut command = vec!["list", "sel.arc"];
        command.extend_from_slice(args);
        let error = env.arc(&command).error();
        assert!(error.contains(named), "{error} does not name {named}");
    }
}
