//! The fuzz corpus, replayed on stable Rust: every input under fuzz/corpus/<target>/ and
//! fuzz/regressions/<target>/ goes through the same checks as the cargo-fuzz targets (both
//! use support/harness.rs), so CI notices a regression without nightly or cargo-fuzz.
//! `regenerate_seed_corpus` (ignored) rewrites the seeds from real archives.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::support::harness::{
    archive_from_input, check_index, check_read, check_stream, inputs_from_archive,
};
use crate::support::{arc, craft, Spec};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every input of `target`, seeds and regressions, by path.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all = Vec::new();
    for dir in [fuzz_dir().join("corpus").join(target), fuzz_dir().join("regressions").join(target)] {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("listing the corpus").path();
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            all.push((path, bytes));
        }
    }
    all.sort();
    all
}

/// Runs `check` on every input of `target`, none of which may fail it; returns how many
/// inputs there were and for how many `check` returned true.
fn replay(target: &str, check: fn(&[u8]) -> bool) -> (usize, usize) {
    let inputs = inputs(target);
    assert!(inputs.len() >= 10, "the {target} corpus is missing");
    let mut passed = 0;
    for (path, bytes) in &inputs {
        match std::panic::catch_unwind(|| check(bytes)) {
            Ok(true) => passed += 1,
            Ok(false) => {}
            Err(_) => panic!("{} fails the {target} checks", path.display()),
        }
    }
    (inputs.len(), passed)
}

#[test]
fn index_corpus_passes_the_index_checks() {
    let (inputs, built) = replay("index", check_index);
    // The seeds are valid archives and indexes: if none builds, the harness is broken.
    assert!(built * 2 >= inputs, "only {built} of {inputs} inputs built an index");
}

#[test]
fn read_corpus_passes_the_stream_checks() {
    // The read corpus stands for the stream target's too: the same inputs, read from a pipe.
    let (inputs, extracted) = replay("read", check_stream);
    assert!(extracted * 2 >= inputs, "only {extracted} of {inputs} inputs extracted from a pipe");
}

#[test]
fn read_corpus_passes_the_extraction_checks() {
    let (inputs, extracted) = replay("read", check_read);
    assert!(extracted * 2 >= inputs, "only {extracted} of {inputs} inputs extracted");
}

#[test]
fn harness_rebuilds_the_archive_from_each_kind_of_input() {
    // Each kind of input made from an archive stands for an archive that extracts.
    let (record, data) = seed_spec().record();
    let archive = craft(record, &data, 64);
    let inputs = inputs_from_archive(&archive);
    assert_eq!(inputs.iter().map(|(kind, _)| *kind).collect::<Vec<_>>(), ["raw", "frames", "data"]);
    for (kind, input) in &inputs {
        assert!(check_read(input), "the {kind} input does not extract");
    }
    assert_eq!(archive_from_input(inputs[0].1[0], &inputs[0].1[1..]), archive);
    assert!(check_index(&[&[0u8][..], &archive].concat()));
}

/// A tree with every kind of entry, a setuid file and a file spanning several blocks.
fn seed_spec() -> Spec {
    Spec::new()
        .dir(0, "r")
        .file(1, "a", "alpha\n")
        .dir(1, "d")
        .mode(0o700)
        .file(2, "big", (0..300u32).map(|i| (i % 7) as u8 + b'a').collect::<Vec<u8>>())
        .dir(2, "e")
        .file(2, "empty", "")
        .file(1, "l", "link")
        .symlink(1, "m", "../elsewhere")
        .file(1, "suid", "#!/bin/sh\n")
        .mode(0o4755)
}

/// A tree with every entry kind of version 2, owners and extended attributes.
fn version_2_spec() -> Spec {
    Spec::new()
        .dir(0, "r")
        .owner(1000, 1000)
        // A default ACL of user::rwx group::r-x other::r-x (posix_acl_xattr, version 2).
        .xattr(
            "system.posix_acl_default",
            b"\x02\x00\x00\x00\x01\x00\x07\x00\xff\xff\xff\xff\x04\x00\x05\x00\xff\xff\xff\xff\x20\x00\x05\x00\xff\xff\xff\xff",
        )
        .file(1, "a", "alpha\n")
        .owner(33, 34)
        .xattr("security.capability", &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .xattr("user.x", b"1")
        .device(1, "b", false, 8, 1)
        .device(1, "c", true, 1, 3)
        .fifo(1, "f")
        .hard_link(1, "h", 1)
        .file(1, "z", "zulu\n")
        .mode(0o4755)
        .copy(1, "zz", 1, 6)
}

#[test]
#[ignore = "rewrites fuzz/corpus; run by hand: cargo test --test tests -- --ignored regenerate_seed_corpus"]
fn regenerate_seed_corpus() {
    let work = tempfile::tempdir().expect("temp dir");
    let src = work.path().join("t");
    fs::create_dir_all(src.join("d/e")).expect("mkdir");
    fs::write(src.join("a"), "alpha\n").expect("write");
    fs::write(src.join("d/b"), "bravo\n".repeat(40)).expect("write");
    fs::write(src.join("d/empty"), "").expect("write");
    std::os::unix::fs::symlink("a", src.join("l")).expect("symlink");
    std::os::unix::fs::symlink("../../outside", src.join("d/up")).expect("symlink");
    // What version 2 stores: hard links, a FIFO, a sparse file, an extended attribute, and
    // a name and a target that are not UTF-8.
    fs::hard_link(src.join("d/b"), src.join("hard")).expect("hard link");
    crate::support::make_fifo(&src.join("d/fifo"));
    let sparse = fs::File::create(src.join("sparse")).expect("create");
    sparse.set_len(256 << 10).expect("set_len");
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"island", 128 << 10).expect("write");
    let name = std::ffi::OsStr::from_bytes(b"n\xff");
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(b"t\xfe"), src.join(name)).expect("symlink");
    let _ = rustix::fs::setxattr(src.join("a").as_path(), "user.seed", b"v", rustix::fs::XattrFlags::empty());
    // Two files of the same contents, the later a copy (FORMAT.md §4.8), once the write is
    // later than both.
    fs::write(src.join("d/c"), "charlie\n".repeat(80)).expect("write");
    fs::write(src.join("d/e/c again"), "charlie\n".repeat(80)).expect("write");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let write = |name: &str, inputs: &[&Path]| {
        let out = work.path().join(name);
        let mut args = vec!["write".as_ref(), "-q".as_ref(), "-o".as_ref(), out.as_os_str()];
        args.extend(inputs.iter().map(|p| p.as_os_str()));
        arc(args).code(0);
        fs::read(&out).expect("reading the archive")
    };
    let empty = work.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let archives: Vec<(&str, Vec<u8>)> = vec![
        ("tree", write("tree.arc", &[&src])),
        ("empty-dir", write("empty.arc", &[&empty])),
        ("one-file", write("one.arc", &[&src.join("a")])),
        ("two-roots", write("two.arc", &[&src.join("d"), &src.join("a")])),
        ("small-blocks", craft(seed_spec().record().0, &seed_spec().record().1, 64)),
        // Every kind of version 2, owners and attributes, crafted (devices too, which a tree
        // made here without root could not hold).
        ("kinds", version_2_spec().archive_with_blocks(64)),
        // Version 1, as the last arc of that format wrote it.
        ("v1-golden", include_bytes!("golden/small-v1.arc").to_vec()),
    ];
    for target in ["index", "read"] {
        let dir = fuzz_dir().join("corpus").join(target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
    }
    for (name, archive) in &archives {
        for (kind, input) in inputs_from_archive(archive) {
            fs::write(fuzz_dir().join(format!("corpus/read/{name}-{kind}")), &input).expect("write");
        }
        fs::write(fuzz_dir().join(format!("corpus/index/{name}-archive")), [&[0u8][..], archive].concat())
            .expect("write");
        if let Some((_, frames)) = inputs_from_archive(archive).into_iter().find(|(k, _)| *k == "frames") {
            // The CBOR of the index alone: the second kind of `index` input.
            let len = u32::from_le_bytes(frames[1..5].try_into().expect("four bytes")) as usize;
            let cbor = &frames[5..5 + len];
            fs::write(fuzz_dir().join(format!("corpus/index/{name}-cbor")), [&[1u8][..], cbor].concat())
                .expect("write");
        }
    }
    // Options for the tree: --same-permissions, two threads with a second extraction that
    // overwrites, and one that keeps.
    let tree = &archives[0].1;
    for (name, first) in
        [("same-permissions", 3u8), ("overwrite-twice", 3 * (2 << 2 | 2)), ("keep-twice", 3 * (3 << 2))]
    {
        fs::write(fuzz_dir().join(format!("corpus/read/tree-{name}")), [&[first][..], tree].concat())
            .expect("write");
    }
}
