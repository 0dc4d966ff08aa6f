//! What a user sees when something is wrong: bad arguments, inputs and outputs that cannot be
//! used, files that are not archives, truncated or damaged archives. Every error is one line on
//! stderr starting `arc: error: `, with exit status 2 ([`crate::support::Run::error`] checks
//! both, and every run is checked for panics), names what it is about, and leaves nothing half
//! done.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::support::harness::index_of;
use crate::support::{mtime_of, pseudo_random, snapshot, stamp_mtimes, temp_files, TestEnv, BLOCK_SIZE};

/// A small archive at `x.arc` of `src/tree`: two blocks, the second holding `tree/z-last`.
fn make_archive(env: &TestEnv) -> Vec<u8> {
    let src = env.mkdir("src/tree");
    env.file("src/tree/a-first", pseudo_random(BLOCK_SIZE - 10, 1));
    env.file("src/tree/b-small", "small\n");
    env.file("src/tree/z-last", "in the second block\n");
    env.symlink("a-first", "src/tree/link");
    env.mkdir("src/tree/empty");
    stamp_mtimes(&src, 1);
    env.arc(["write", "-o", "x.arc", "-C", "src", "tree"]).success();
    fs::read(env.path("x.arc")).expect("reading x.arc")
}

/// Asserts that DEST was not created, or is empty.
fn assert_nothing_written(dest: &Path) {
    if dest.exists() {
        let entries: Vec<_> = fs::read_dir(dest).expect("ls").map(|e| e.expect("ls").path()).collect();
        assert!(entries.is_empty(), "{} has {entries:?}", dest.display());
    }
}

fn assert_no_temp_files(root: &Path) {
    assert_eq!(temp_files(root), Vec::<PathBuf>::new(), "temporary files left behind");
}

// --- arguments ---

#[test]
fn out_of_range_levels_and_thread_counts_are_rejected() {
    let env = TestEnv::new();
    env.file("src/t/a", "a\n");
    for args in [
        ["-l", "0"],
        ["-l", "23"],
        ["-l", "-1"],
        ["-l", "fast"],
        ["-j", "0"],
        ["-j", "many"],
        ["--level", "100"],
        ["--threads", "0"],
    ] {
        let mut command = vec!["write", "-o", "x.arc", "-C", "src", "t"];
        command.extend_from_slice(&args);
        let run = env.arc(&command);
        run.code(2);
        // clap's own message, which names the value and the option.
        assert!(run.stderr.contains(&format!("'{}'", args[1])), "{}", run.stderr);
        assert!(!env.path("x.arc").exists(), "{args:?} wrote an archive");
    }
    for level in ["1", "22"] {
        env.arc(["write", "-l", level, "-o", &format!("l{level}.arc"), "-C", "src", "t"]).success();
    }
    env.arc(["read", "-j", "0", "l1.arc", "-C", "out"]).code(2);
    assert!(!env.path("out").exists());
}

#[test]
fn duplicate_input_names_are_refused() {
    let env = TestEnv::new();
    env.file("one/same/a", "a\n");
    env.file("two/same/b", "b\n");
    let error = env.arc(["write", "-o", "x.arc", "-C", "one", "same", "-C", "../two", "same"]).error();
    assert!(error.contains("two inputs are both stored as \"same\""), "{error}");
    assert!(!env.path("x.arc").exists());
}

// --- inputs ---

#[test]
fn missing_input_is_an_error_naming_it() {
    let env = TestEnv::new();
    env.file("src/t/a", "a\n");
    let error = env.arc(["write", "-o", "x.arc", "-C", "src", "t", "no-such-input"]).error();
    assert!(error.contains("src/no-such-input"), "{error}");
    assert!(error.contains("No such file or directory"), "{error}");
    assert!(!env.path("x.arc").exists());
    assert_no_temp_files(env.root());
}

#[test]
fn special_file_as_input_is_refused() {
    let env = TestEnv::new();
    let error = env.arc(["write", "-o", "x.arc", "/dev/null"]).error();
    assert!(error.contains("/dev/null") && error.contains("not a directory or regular file"), "{error}");
    assert!(!env.path("x.arc").exists());
}

#[test]
fn names_and_targets_that_are_not_utf8_round_trip() {
    // Linux names are bytes: arc stores them as they are, prints the bytes that are not UTF-8
    // as `\xff`, takes that printed form back as a PATH, and recreates the exact bytes.
    let env = TestEnv::new();
    env.file("src/t/a", "a\n");
    env.mkdir("src/t/links");
    std::os::unix::fs::symlink(
        std::ffi::OsStr::from_bytes(b"bad \xff target"),
        env.path("src/t/links/l\u{e9}"),
    )
    .expect("symlink");
    fs::write(env.path("src/t").join(std::ffi::OsStr::from_bytes(b"caf\xe9 \\x")), "bytes\n").expect("write");
    env.arc(["write", "-o", "x.arc", "-C", "src", "t"]).success();
    let listing = env.arc(["list", "-l", "x.arc"]).success().stdout_str();
    assert!(listing.contains("t/links/l\u{e9} -> bad \\xff target"), "{listing}");
    assert!(listing.contains("t/caf\\xe9 \\\\x"), "a real backslash is doubled: {listing}");
    env.arc(["read", "x.arc", "-C", "out", "t/caf\\xe9 \\\\x", "t/links"]).success();
    let file = env.path("out/t").join(std::ffi::OsStr::from_bytes(b"caf\xe9 \\x"));
    assert_eq!(fs::read(&file).expect("the file by its bytes"), b"bytes\n");
    let target = fs::read_link(env.path("out/t/links/l\u{e9}")).expect("the link");
    assert_eq!(target.as_os_str().as_bytes(), b"bad \xff target");
    // JSON carries the printed form and the exact bytes.
    let json = env.arc(["list", "--json", "x.arc"]).success().stdout_str();
    let line = json.lines().find(|l| l.contains("caf")).expect("the file's line");
    let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
    assert_eq!(value["path"], "t/caf\\xe9 \\\\x");
    let bytes: Vec<u8> = serde_json::from_value(value["path_bytes"].clone()).expect("bytes");
    assert_eq!(bytes, b"t/caf\xe9 \\x");
}

// --- outputs ---

#[test]
fn unusable_output_paths_are_errors_naming_them() {
    let env = TestEnv::new();
    env.file("src/t/a", "a\n");
    env.file("a-file", "not a directory\n");
    for (out, named) in [
        ("no/such/dir/x.arc", "no/such/dir"),
        ("a-file/x.arc", "a-file"),
        ("/proc/x.arc", "/proc"),
        ("/proc/self/x.arc", "/proc/self"),
    ] {
        let error = env.arc(["write", "-o", out, "-C", "src", "t"]).error();
        assert!(error.contains(named), "{error} does not name {named}");
    }
    assert_eq!(fs::read_to_string(env.path("a-file")).expect("read"), "not a directory\n");
    assert_no_temp_files(env.root());
}

#[test]
fn archive_given_as_its_own_input_is_refused() {
    let env = TestEnv::new();
    env.file("x.arc", "the user's data, not an archive\n");
    let error = env.arc(["write", "-o", "x.arc", "x.arc"]).error();
    assert!(error.contains("x.arc"), "{error}");
    assert_eq!(fs::read_to_string(env.path("x.arc")).expect("read"), "the user's data, not an archive\n");
}

#[test]
fn full_device_is_an_error_naming_the_output() {
    let env = TestEnv::new();
    env.file("src/t/a", pseudo_random(100_000, 3));
    let error = env.arc(["write", "-o", "/dev/full", "-C", "src", "t"]).error();
    assert!(error.contains("writing /dev/full") && error.contains("No space left on device"), "{error}");
    // A device is written in place, and /dev/null takes anything.
    env.arc(["write", "-o", "/dev/null", "-C", "src", "t"]).success();

    env.arc(["write", "-o", "t.arc", "-C", "src", "t"]).success();
    for args in [
        &["write", "-o", "-", "-C", "src", "t"][..],
        &["list", "t.arc"][..],
        &["list", "--json", "t.arc"][..],
    ] {
        // Exit status 2 and one error line.
        let error = env.arc_into_full_device(args).error();
        assert!(error.contains("No space left on device"), "{args:?}: {error}");
    }
}

#[test]
fn failed_listing_says_it_was_writing_stdout() {
    let env = TestEnv::new();
    env.file("src/t/a", "a\n");
    env.arc(["write", "-o", "t.arc", "-C", "src", "t"]).success();
    let run = env.arc_into_full_device(["list", "t.arc"]);
    assert!(run.stderr.contains("writing"), "{}", run.describe());
}

#[test]
fn output_that_is_a_directory_is_refused() {
    let env = TestEnv::new();
    env.file("src/t/a", "a\n");
    env.file("out-dir/keep", "keep\n");
    let before = snapshot(&env.path("out-dir"));
    let error = env.arc(["write", "-o", "out-dir", "-C", "src", "t"]).error();
    assert!(error.contains("out-dir") && error.contains("is a directory"), "{error}");
    assert_eq!(snapshot(&env.path("out-dir")), before);
    let error = env.arc(["write", "-o", "out-dir/", "-C", "src", "t"]).error();
    assert!(error.contains("out-dir"), "{error}");
    assert_eq!(snapshot(&env.path("out-dir")), before);
}

#[test]
fn failed_write_leaves_an_existing_archive_untouched_and_no_temp_files() {
    let env = TestEnv::new();
    let old = make_archive(&env);
    let old_mtime = mtime_of(&env.path("x.arc"));
    // Inputs that fail late: a few blocks are written before the unreadable input is reached
    // (/proc/self/mem reads as an I/O error at offset 0, even for root).
    env.file("bad/a-big", pseudo_random((9 << 20) + 3, 2));
    let unreadable = "/proc/self/mem";
    for inputs in
        [&["bad", unreadable][..], &["src/tree", "missing"][..], &["src/tree", "bad", unreadable][..]]
    {
        let mut command = vec!["write", "-o", "x.arc"];
        command.extend_from_slice(inputs);
        env.arc(&command).error();
        assert!(fs::read(env.path("x.arc")).expect("read") == old, "x.arc changed after {inputs:?}");
        assert_eq!(mtime_of(&env.path("x.arc")), old_mtime);
        assert_no_temp_files(env.root());
    }
    // The same with the archive in another directory and given by an absolute path.
    env.mkdir("archives");
    fs::write(env.path("archives/y.arc"), &old).expect("write");
    let out = env.path("archives/y.arc");
    env.arc([
        std::ffi::OsStr::new("write"),
        "-o".as_ref(),
        out.as_os_str(),
        "bad".as_ref(),
        unreadable.as_ref(),
    ])
    .error();
    assert!(fs::read(&out).expect("read") == old);
    assert_no_temp_files(env.root());
}

// --- archives that are not, or no longer, archives ---

/// Runs list, read and verify on `archive`; each must fail with an error containing `wanted`
/// and naming the archive, and read must write nothing.
fn refused_by_every_command(env: &TestEnv, archive: &str, wanted: &str) {
    let dest = env.path("dest");
    for command in [
        vec!["list", archive],
        vec!["list", "-l", archive],
        vec!["verify", archive],
        vec!["read", archive, "-C", "dest"],
    ] {
        let error = env.arc(&command).error();
        assert!(error.contains(wanted), "{command:?}: {error} does not say {wanted:?}");
        assert!(error.contains(archive), "{command:?}: {error} does not name {archive}");
        assert_nothing_written(&dest);
    }
}

#[test]
fn missing_archive_is_an_error_naming_it() {
    let env = TestEnv::new();
    refused_by_every_command(&env, "no-such.arc", "No such file or directory");
}

#[test]
fn non_archives_are_recognised() {
    let env = TestEnv::new();
    env.file("text.txt", "just some text, long enough to have a header and a trailer in it\n".repeat(3));
    refused_by_every_command(&env, "text.txt", "not an arc archive");
    env.file("empty.arc", "");
    refused_by_every_command(&env, "empty.arc", "not an arc archive");
    // A zstd frame, as if someone renamed an .zst file.
    fs::write(env.path("frame.arc"), zstd::bulk::compress(b"hello", 3).expect("zstd")).expect("write");
    refused_by_every_command(&env, "frame.arc", "not an arc archive");
    env.mkdir("a-dir.arc");
    let error = env.arc(["list", "a-dir.arc"]).error();
    assert!(error.contains("a-dir.arc"), "{error}");
}

#[test]
fn archive_from_a_newer_version_is_refused() {
    let env = TestEnv::new();
    let mut bytes = make_archive(&env);
    assert_eq!(&bytes[..8], b"\x89ARC\r\n\x1a\n");
    assert_eq!(&bytes[8..10], [2, 0], "the version is not 2");
    bytes[8] = 3;
    fs::write(env.path("newer.arc"), &bytes).expect("write");
    refused_by_every_command(&env, "newer.arc", "made by a newer arc (format 3)");
    bytes[8] = 0;
    fs::write(env.path("zero.arc"), &bytes).expect("write");
    refused_by_every_command(&env, "zero.arc", "corrupt archive: unknown format version 0");
}

#[test]
fn truncated_archives_are_refused_before_anything_is_written() {
    let env = TestEnv::new();
    let bytes = make_archive(&env);
    let len = bytes.len();
    for cut in
        [4, 8, 12, 15, 16, 17, 1000, len / 2, len - 200, len - 33, len - 32, len - 31, len - 8, len - 1]
    {
        let name = format!("cut-{cut}.arc");
        fs::write(env.path(&name), &bytes[..cut]).expect("write");
        let wanted = if cut < 8 { "not an arc archive" } else { "truncated archive" };
        refused_by_every_command(&env, &name, wanted);
    }
}

#[test]
fn damaged_data_names_the_damaged_files() {
    let env = TestEnv::new();
    let bytes = make_archive(&env);
    let blocks = blocks_of(env.path("x.arc").as_path());
    assert_eq!(blocks.len(), 2, "{blocks:?}");

    // The second block holds only the end of z-last, which starts in the first block.
    let (offset, block_len) = blocks[1];
    let mut damaged = bytes.clone();
    damaged[(offset + block_len / 2) as usize] ^= 0x40;
    fs::write(env.path("second.arc"), &damaged).expect("write");

    let error = env.arc(["read", "second.arc", "-C", "dest"]).error();
    assert!(error.contains("second.arc") && error.contains("damaged data of tree/z-last"), "{error}");
    assert!(error.contains("checksum mismatch"), "{error}");
    assert!(!env.path("dest/tree/z-last").exists(), "the damaged file was written");
    assert_no_temp_files(&env.path("dest"));

    let damage = verify_damage(&env, "second.arc", "1 of 2 blocks damaged, 1 entries affected");
    assert_eq!(damage, ["tree/z-last"]);

    // The undamaged block still comes out.
    env.arc(["read", "second.arc", "tree/a-first", "tree/b-small", "-C", "partial"]).success();
    for file in ["a-first", "b-small"] {
        let wanted = fs::read(env.path("src/tree").join(file)).expect("read");
        assert!(fs::read(env.path("partial/tree").join(file)).expect("read") == wanted, "{file} differs");
    }

    // The first block holds a-first, b-small and the start of z-last.
    let (offset, block_len) = blocks[0];
    let mut damaged = bytes;
    damaged[(offset + block_len - 7) as usize] ^= 0x01;
    fs::write(env.path("first.arc"), &damaged).expect("write");
    let error = env.arc(["read", "first.arc", "-C", "dest-first"]).error();
    assert!(error.contains("damaged data of tree/a-first, tree/b-small, tree/z-last"), "{error}");
    for file in ["a-first", "b-small", "z-last"] {
        assert!(!env.path("dest-first/tree").join(file).exists(), "the damaged {file} was written");
    }
    assert_no_temp_files(&env.path("dest-first"));
    let damage = verify_damage(&env, "first.arc", "1 of 2 blocks damaged, 3 entries affected");
    assert_eq!(damage, ["tree/a-first", "tree/b-small", "tree/z-last"]);
}

/// Runs verify on a damaged archive: a warning per damaged block, an `arc: damaged: PATH` line
/// per affected file, then one error line containing `summary`. Returns the damaged paths.
fn verify_damage(env: &TestEnv, archive: &str, summary: &str) -> Vec<String> {
    let run = env.arc(["verify", archive]);
    run.code(2);
    let lines: Vec<&str> = run.stderr.lines().collect();
    let (last, others) = lines.split_last().expect("verify printed nothing");
    assert!(last.starts_with("arc: error: verifying ") && last.contains(archive), "{}", run.stderr);
    assert!(last.contains(summary), "{}", run.stderr);
    assert!(
        others.iter().any(|l| l.starts_with("arc: warning: ") && l.contains("checksum mismatch")),
        "{}",
        run.stderr
    );
    let mut damaged = Vec::new();
    for line in others {
        if let Some(path) = line.strip_prefix("arc: damaged: ") {
            damaged.push(path.to_owned());
        } else {
            assert!(line.starts_with("arc: warning: "), "unexpected line {line:?}");
        }
    }
    damaged
}

/// (offset, length) in the archive of each block.
fn blocks_of(archive: &Path) -> Vec<(u64, u64)> {
    index_of(archive).blocks.iter().map(|b| (b.offset, b.len)).collect()
}

#[test]
fn damaged_index_trailer_or_header_is_refused_before_anything_is_written() {
    let env = TestEnv::new();
    let bytes = make_archive(&env);
    let len = bytes.len();
    let index_len = u64::from_le_bytes(bytes[len - 32..len - 24].try_into().expect("8 bytes")) as usize;
    let index_at = len - 32 - index_len;
    let trailer = len - 32;
    for (at, wanted) in [
        (index_at + index_len / 2, "index checksum mismatch"),
        (index_at, "index checksum mismatch"),
        (trailer - 1, "index checksum mismatch"),
        // index_len, index_raw_len, the hash, the trailer's magic.
        (trailer, "corrupt archive"),
        (trailer + 8, "index checksum mismatch"),
        (trailer + 12, "corrupt archive: index size"),
        (trailer + 16, "index checksum mismatch"),
        (trailer + 28, "truncated archive"),
        (12, "reserved header bytes"),
        (2, "not an arc archive"),
    ] {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x01;
        let name = format!("flip-{at}.arc");
        fs::write(env.path(&name), &damaged).expect("write");
        refused_by_every_command(&env, &name, wanted);
    }
}

// --- reading into a destination ---

#[test]
fn existing_files_are_not_replaced_by_default() {
    let env = TestEnv::new();
    make_archive(&env);
    env.arc(["read", "x.arc", "-C", "dest"]).success();
    fs::write(env.path("dest/tree/b-small"), "mine\n").expect("write");
    let before = snapshot(&env.path("dest"));
    let error = env.arc(["read", "x.arc", "-C", "dest"]).error();
    assert!(error.contains("refusing to replace existing"), "{error}");
    assert!(error.contains("dest/tree/"), "{error}");
    assert!(error.contains("--overwrite") && error.contains("--keep-existing"), "{error}");
    assert_eq!(snapshot(&env.path("dest")), before, "a refused read changed DEST");
    assert_no_temp_files(&env.path("dest"));

    let error = env.arc(["read", "--overwrite", "--keep-existing", "x.arc", "-C", "dest"]);
    error.code(2);
    assert_eq!(snapshot(&env.path("dest")), before);
}

#[test]
fn destination_that_cannot_be_a_directory_is_an_error_naming_it() {
    let env = TestEnv::new();
    make_archive(&env);
    env.file("a-file", "x\n");
    for dest in ["a-file", "a-file/below"] {
        let error = env.arc(["read", "x.arc", "-C", dest]).error();
        assert!(error.contains(dest), "{error} does not name {dest}");
    }
    assert_eq!(fs::read_to_string(env.path("a-file")).expect("read"), "x\n");
}

#[test]
fn bad_glob_is_an_error_naming_it() {
    let env = TestEnv::new();
    make_archive(&env);
    let error = env.arc(["list", "x.arc", "--glob", "tree/[unclosed"]).error();
    assert!(error.contains("tree/[unclosed"), "{error}");
    let error = env.arc(["read", "x.arc", "--glob", "tree/[unclosed", "-C", "dest"]).error();
    assert!(error.contains("tree/[unclosed"), "{error}");
    assert_nothing_written(&env.path("dest"));
}
