//! Identical contents stored once (FORMAT.md §4.8): the writer finds copies, every reader
//! (a file, a pipe, a selection, `cat` and `cat -`, `verify`, salvage) writes them as files of
//! their own, and an index whose copies table lies is refused.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::support::craft::Spec;
use crate::support::harness::index_of;
use crate::support::{assert_same_tree, pseudo_random, set_mode, set_mtime, Scene, TestEnv};

const BLOCK: usize = 64 << 10;

/// A tree with copies of every kind: of a small file and of one spanning blocks, in other
/// directories, with their own modes, mtimes, attributes and hard links; and identical files
/// too small to be shared. Returns the sizes of the distinct contents stored.
fn tree_with_copies(env: &TestEnv) -> u64 {
    let small = pseudo_random(10_000, 1);
    let large = pseudo_random(3 * BLOCK + 123, 2);
    env.file("t/a/one", &small);
    env.file("t/a/spans", &large);
    env.file("t/b/one again", &small);
    set_mode(&env.path("t/b/one again"), 0o600);
    set_mtime(&env.path("t/b/one again"), 1_500_000_000, 5);
    env.file("t/b/spans again", &large);
    env.file("t/c/one, third", &small);
    rustix::fs::setxattr(
        env.path("t/c/one, third").as_path(),
        "user.arc.test",
        b"mine",
        rustix::fs::XattrFlags::empty(),
    )
    .ok();
    fs::hard_link(env.path("t/c/one, third"), env.path("t/c/third's link")).expect("hard link");
    env.file("t/c/tiny", "tiny and the same\n");
    env.file("t/d/tiny", "tiny and the same\n");
    env.file("t/d/other", pseudo_random(10_000, 3));
    // A file is shared only once it is older than the write.
    std::thread::sleep(std::time::Duration::from_millis(100));
    (small.len() + large.len() + 10_000 + 2 * 18) as u64
}

/// The copies of the archive at `rel`, as (copy, source) paths.
fn copies_of(env: &TestEnv, rel: &str) -> Vec<(String, String)> {
    let index = index_of(&env.path(rel));
    let path = |i: u32| String::from_utf8_lossy(&index.path(i as usize)).into_owned();
    index.tables.copies.iter().map(|&(c, s)| (path(c), path(s))).collect()
}

#[test]
fn identical_files_are_stored_once_and_read_back_as_files_of_their_own() {
    let env = TestEnv::new();
    let distinct = tree_with_copies(&env);
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "x.arc", "t"]).success();
    let copies = copies_of(&env, "x.arc");
    let pair = |c: &str, s: &str| (c.to_owned(), s.to_owned());
    assert_eq!(
        copies,
        [
            pair("t/b/one again", "t/a/one"),
            pair("t/b/spans again", "t/a/spans"),
            pair("t/c/one, third", "t/a/one"),
        ]
    );
    // The data stream holds each distinct contents once (the random bytes do not compress).
    let index = index_of(&env.path("x.arc"));
    assert_eq!(index.data_len(), distinct);
    env.arc(["verify", "-q", "x.arc"]).success();
    env.arc(["read", "-q", "-C", "out", "x.arc"]).success();
    assert_same_tree(&env.path("t"), &env.path("out/t"));
    let ino = |p: &str| fs::metadata(env.path(p)).expect("stat").ino();
    assert_ne!(ino("out/t/a/one"), ino("out/t/b/one again"));
    assert_ne!(ino("out/t/a/one"), ino("out/t/c/one, third"));
    assert_eq!(ino("out/t/c/one, third"), ino("out/t/c/third's link"));
    // cat writes a copy's contents.
    let run = env.arc(["cat", "x.arc", "t/b/spans again"]);
    assert!(run.stdout == fs::read(env.path("t/a/spans")).expect("read"), "{}", run.describe());
    // The same bytes whatever the threads.
    env.arc(["write", "-q", "-j", "1", "--block-size", "64KiB", "-o", "one.arc", "t"]).success();
    env.arc(["write", "-q", "-j", "3", "--block-size", "64KiB", "-o", "three.arc", "t"]).success();
    assert_eq!(fs::read(env.path("one.arc")).ok(), fs::read(env.path("three.arc")).ok());
}

#[test]
fn a_copy_comes_out_alone_and_from_a_pipe() {
    let env = TestEnv::new();
    tree_with_copies(&env);
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "x.arc", "t"]).success();
    let archive = fs::read(env.path("x.arc")).expect("reading the archive");
    // From the file: a copy alone, its source not extracted.
    env.arc(["read", "-q", "-C", "alone", "x.arc", "t/b"]).success();
    assert!(!env.path("alone/t/a").exists());
    for name in ["one again", "spans again"] {
        assert_eq!(
            fs::read(env.path("alone/t/b").join(name)).ok(),
            fs::read(env.path("t/b").join(name)).ok()
        );
    }
    // From a pipe, whole: the copies whose source came in an earlier block are made at the end.
    env.arc_fed(&archive, ["read", "-q", "-", "-C", "piped"]).success();
    assert_same_tree(&env.path("t"), &env.path("piped/t"));
    // From a pipe, a selection with the sources.
    env.arc_fed(&archive, ["read", "-q", "-", "-C", "both", "t/a", "t/c"]).success();
    assert_same_tree(&env.path("t/c"), &env.path("both/t/c"));
    // Without them, their bytes are gone by the time the copies come: a warning each, no
    // silent loss.
    let run = env.arc_fed(&archive, ["read", "-q", "-", "-C", "gone", "t/b"]);
    run.code(1);
    for name in ["one again", "spans again"] {
        assert!(
            run.stderr.contains(&format!("skipping gone/t/b/{name}: its contents are those of")),
            "{}",
            run.describe()
        );
        assert!(!env.path("gone/t/b").join(name).exists());
    }
    // verify and list of a stream see the copies too.
    env.arc_fed(&archive, ["verify", "-q", "-"]).success();
}

#[test]
fn a_damaged_block_names_the_copies_of_its_files_and_salvage_keeps_the_others() {
    let env = TestEnv::new();
    tree_with_copies(&env);
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "x.arc", "t"]).success();
    let index = index_of(&env.path("x.arc"));
    let mut archive = fs::read(env.path("x.arc")).expect("reading the archive");
    // Damage the last block of t/a/spans: its copy is damaged with it, nothing else.
    let spans = (0..index.entries.len()).find(|&i| index.path(i) == b"t/a/spans").expect("t/a/spans");
    let last = index.blocks_of(spans).end - 1;
    let block = index.blocks[last];
    archive[(block.offset + block.len / 2) as usize] ^= 0xff;
    fs::write(env.path("bad.arc"), &archive).expect("write");
    let run = env.arc(["verify", "bad.arc"]);
    run.code(2);
    assert!(run.stderr.contains("t/b/spans again"), "{}", run.describe());
    let run = env.arc(["read", "-q", "--salvage", "-C", "out", "bad.arc"]);
    run.code(2);
    assert!(!env.path("out/t/a/spans").exists() && !env.path("out/t/b/spans again").exists());
    for name in ["a/one", "b/one again", "c/one, third", "c/third's link"] {
        assert_eq!(
            fs::read(env.path("out/t").join(name)).ok(),
            fs::read(env.path("t").join(name)).ok(),
            "{name}"
        );
    }
    // The index lost: salvage by the records places every copy, the late ones too.
    let sound = fs::read(env.path("x.arc")).expect("reading the archive");
    fs::write(env.path("cut.arc"), &sound[..sound.len() - 10]).expect("write");
    let run = env.arc(["read", "-q", "--salvage", "-C", "cut", "cut.arc"]);
    run.code(2);
    assert_same_tree(&env.path("t"), &env.path("cut/t"));
}

#[test]
fn copies_that_are_not_copies_of_an_earlier_file_are_refused() {
    let scene = Scene::new();
    // r, r/a (dir), r/f (file of 4 bytes), r/l (symlink), then a copy of each candidate.
    let base = || Spec::new().dir(0, "r").dir(1, "a").file(1, "f", "data").symlink(1, "l", "/etc/passwd");
    for source in [0, 1, 3, 4, 5, 99] {
        let archive = base().copy(1, "z", source, 4).archive();
        scene.refuses(&archive, "is not a copy of an earlier regular file");
    }
    // A copy of another size, of an empty file, of a copy.
    scene.refuses(&base().copy(1, "z", 2, 5).archive(), "differs in size from its source");
    let empty = Spec::new().dir(0, "r").file(1, "e", "").copy(1, "z", 1, 0).archive();
    scene.refuses(&empty, "is sparse or empty");
    let chain = base().copy(1, "y", 2, 4).copy(1, "z", 4, 4).archive();
    scene.refuses(&chain, "is not a copy of an earlier regular file");
    // The good one extracts as two files, and a pipe refuses what a file does.
    let good = base().copy(1, "z", 2, 4).archive();
    scene.read(&good, &[]).success();
    assert_eq!(fs::read(scene.dest().join("r/z")).expect("r/z"), b"data");
}

#[test]
fn a_record_whose_copy_lies_is_refused_before_it_is_written() {
    let env = TestEnv::new();
    env.file("t/a", pseudo_random(600, 1));
    env.file("t/b", pseudo_random(600, 1));
    std::thread::sleep(std::time::Duration::from_millis(100));
    env.arc(["write", "-q", "-o", "x.arc", "t"]).success();
    let mut archive = fs::read(env.path("x.arc")).expect("reading the archive");
    let index = index_of(&env.path("x.arc"));
    assert_eq!(index.tables.copies, [(2, 1)]);
    // The record says b is a copy of t, the directory.
    let (at, end, record) =
        crate::records::patched_record(&archive, &index, b"sources\x41\x01", b"sources\x41\x00");
    archive.splice(at..end, record);
    let run = env.arc_fed(&archive, ["read", "-q", "-", "-C", "out"]);
    run.code(2);
    assert!(run.stderr.contains("is not a copy of an earlier regular file"), "{}", run.describe());
    assert!(!env.path("out/t").exists(), "nothing of the record is written");
}

/// A tree whose copies come after a file spanning blocks of 64 KiB: their records come after
/// their source's bytes, so a reader of a stream makes them from the file it extracted.
fn late_copies(env: &TestEnv) -> Vec<u8> {
    env.file("v/a", pseudo_random(10_000, 1));
    env.file("v/big", pseudo_random(4 * BLOCK, 2));
    env.file("v/sub/c", pseudo_random(10_000, 1));
    fs::hard_link(env.path("v/sub/c"), env.path("v/sub/l")).expect("hard link");
    set_mode(&env.path("v/a"), 0o200);
    set_mode(&env.path("v/sub/c"), 0o200);
    std::thread::sleep(std::time::Duration::from_millis(100));
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "v.arc", "v"]).success();
    assert_eq!(copies_of(env, "v.arc"), [("v/sub/c".to_owned(), "v/a".to_owned())]);
    fs::read(env.path("v.arc")).expect("reading the archive")
}

#[test]
fn a_late_copy_left_without_its_source_is_skipped_with_its_links_and_the_read_finishes() {
    let env = TestEnv::new();
    let archive = late_copies(&env);
    set_mode(&env.path("v/sub"), 0o750);
    let archive = {
        // The directory's mode as changed, in an archive made again.
        std::thread::sleep(std::time::Duration::from_millis(100));
        env.arc(["write", "-q", "--block-size", "64KiB", "-o", "v2.arc", "v"]).success();
        drop(archive);
        fs::read(env.path("v2.arc")).expect("reading the archive")
    };
    let run = env.arc_fed(&archive, ["read", "-q", "-", "-C", "out", "v/sub"]);
    run.code(1);
    assert!(run.stderr.contains("skipping out/v/sub/c: its contents are those of v/a"), "{}", run.describe());
    assert!(run.stderr.contains("skipping hard link out/v/sub/l: its file v/sub/c"), "{}", run.describe());
    assert!(!env.path("out/v/sub/c").exists() && !env.path("out/v/sub/l").exists());
    // The read went on to its end: the directory has its mode.
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(env.path("out/v/sub")).expect("out/v/sub").permissions().mode();
    assert_eq!(mode & 0o7777, 0o750);
}

#[test]
fn a_late_copy_is_made_from_a_source_its_mode_denies_reading() {
    let Some(arc_user) = crate::faults::as_unprivileged() else { return };
    let env = TestEnv::new();
    let archive = late_copies(&env);
    let out = env.mkdir("out");
    // Whoever extracts must be able to write there.
    set_mode(&out, 0o777);
    set_mode(env.root(), 0o755);
    let mut command = std::process::Command::new(arc_user[0]);
    command.args(&arc_user[1..]).args(["read", "-q", "-", "-C"]).arg(&out);
    let run = crate::support::run_fed(&mut command, &archive);
    run.success();
    for name in ["a", "sub/c", "sub/l"] {
        let path = out.join("v").join(name);
        set_mode(&path, 0o600);
        assert_eq!(fs::read(&path).ok(), Some(pseudo_random(10_000, 1)), "{name}");
    }
}

#[test]
fn cat_of_a_stream_writes_a_copy_in_its_source_s_record_and_refuses_a_late_one() {
    let env = TestEnv::new();
    env.file("t/a", pseudo_random(10_000, 1));
    env.file("t/b", pseudo_random(5_000, 2));
    env.file("t/c", pseudo_random(10_000, 1));
    env.file("t/d", "small\n");
    std::thread::sleep(std::time::Duration::from_millis(100));
    env.arc(["write", "-q", "-o", "x.arc", "t"]).success();
    let archive = fs::read(env.path("x.arc")).expect("reading the archive");
    let expected =
        [pseudo_random(10_000, 1), pseudo_random(5_000, 2), pseudo_random(10_000, 1), b"small\n".to_vec()];
    let run = env.arc_fed(&archive, ["cat", "-", "t"]);
    assert!(run.code == 0 && run.stdout == expected.concat(), "{}", run.describe());
    // A copy whose source's bytes came in an earlier block: from the file only.
    let late = late_copies(&env);
    let run = env.arc_fed(&late, ["cat", "-", "v/sub/c"]);
    run.code(2);
    assert!(
        run.stderr.contains("v/sub/c has the contents of v/a, whose bytes came before it"),
        "{}",
        run.describe()
    );
    let run = env.arc(["cat", "v.arc", "v/sub/c"]);
    assert_eq!(run.stdout, pseudo_random(10_000, 1));
}
