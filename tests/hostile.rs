//! Hostile archives: crafted byte by byte with valid checksums, so that only arc's own checks
//! stand between them and the disk (docs/SECURITY.md's threat model). Every extraction runs in
//! a [`Scene`]: a sentinel file and a sentinel directory beside DEST, which [`Scene::read`]
//! snapshots (contents, mode, mtime, ctime, inode) together with everything else outside DEST
//! and checks after arc ran. A refused archive must also leave DEST empty.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::harness::{index_of, open, read_in_process, verify_in_process, Existing};
use crate::support::{
    arc, assemble, assemble_cbor, assemble_index_frame, cbor, compress, craft, craft_frames, expect_tree,
    format, index_offset, patch, rle_bomb, stat, temp_files, trailer, tree, IndexRecord, Kind, Run, Scene,
    Spec, Trailer, HEADER_LEN, TRAILER_LEN,
};

/// `len` bytes that differ from position to position (and from seed to seed).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(u32::from(seed) % 32) as u8).collect()
}

/// 10,000 bytes that zstd shrinks to a few dozen per 4 KiB block, so that archives holding
/// them stay small enough to damage byte by byte.
fn compressible() -> Vec<u8> {
    (0..10_000usize).map(|i| b"0123456789abcdef"[i % 16] ^ (i / 1000) as u8).collect()
}

/// A small valid tree: a file spanning several 4 KiB blocks, small and empty files, nested
/// directories and a symlink.
fn small_tree() -> Spec {
    Spec::new()
        .dir(0, "r")
        .file(1, "a", "alpha\n")
        .dir(1, "d")
        .file(2, "big", compressible())
        .dir(2, "e")
        .file(2, "empty", "")
        .symlink(1, "l", "a")
}

/// The three ways to treat what already exists in DEST, as arguments to `arc read`.
const EXISTING: [&[&str]; 3] = [&[], &["--overwrite"], &["--keep-existing"]];

/// Reads `archive` once for each of [`EXISTING`], into DEST as `prepare` leaves it each time:
/// by default arc must refuse, saying `refusal`, and with `--keep-existing` succeed, both
/// leaving DEST as it was; with `--overwrite` it must succeed and leave `overwritten`.
fn read_over_existing(
    scene: &Scene,
    prepare: impl Fn(),
    archive: &[u8],
    refusal: &str,
    overwritten: &BTreeMap<String, String>,
) {
    for existing in EXISTING {
        prepare();
        let before = scene.dest_tree();
        let run = scene.read(archive, existing);
        let expected = match existing {
            [] => {
                run.refused(refusal);
                &before
            }
            ["--overwrite"] => {
                run.code(0);
                overwritten
            }
            _ => {
                run.code(0);
                &before
            }
        };
        assert_eq!(&scene.dest_tree(), expected, "{}", run.describe());
    }
}

#[test]
fn crafted_archive_extracts_as_specified() {
    // The helpers themselves must make archives arc accepts, or every refusal below could be
    // for the wrong reason.
    let scene = Scene::new();
    let spec = small_tree();
    let run = scene.read(&spec.archive(), &[]);
    run.code(0);
    let mut expected = expect_tree(&[
        ("r", "d 755"),
        ("r/a", "f 644 alpha\n"),
        ("r/d", "d 755"),
        ("r/d/empty", "f 644 "),
        ("r/d/e", "d 755"),
        ("r/l", "l a"),
    ]);
    let big = String::from_utf8_lossy(&compressible()).into_owned();
    expected.insert("r/d/big".into(), format!("f 644 {big}"));
    assert_eq!(scene.dest_tree(), expected);
    assert_eq!(fs::read(scene.dest().join("r/d/big")).expect("reading big"), compressible());
    scene.verify().code(0);
    // The same tree in one block, and in blocks of one byte, reads the same.
    for block_size in [1 << 20, 1] {
        scene.clear_dest();
        scene.read(&spec.archive_with_blocks(block_size), &[]).code(0);
        assert_eq!(scene.dest_tree(), expected, "block size {block_size}");
    }
}

#[test]
fn absolute_names_are_refused() {
    let scene = Scene::new();
    let outside = format!("/tmp/arc-hostile-absolute-{}", std::process::id());
    let target = scene.sentinel_dir().join("planted").to_str().expect("UTF-8").to_owned();
    for spec in [
        Spec::new().file(0, &outside, "evil"),
        Spec::new().dir(0, "r").file(1, &outside, "evil"),
        Spec::new().dir(0, "r").dir(1, "s").file(2, &target, "evil"),
        Spec::new().dir(0, &outside).file(1, "x", "evil"),
        Spec::new().symlink(0, &target, "/etc"),
    ] {
        let run = scene.refuses(&spec.archive(), "contains '/' or NUL");
        assert!(!Path::new(&outside).exists(), "{outside} was created: {}", run.describe());
    }
}

#[test]
fn dot_dot_names_are_refused_at_every_position() {
    let scene = Scene::new();
    for (bad, why) in [("..", "invalid entry name"), (".", "invalid entry name"), ("", "invalid entry name")]
    {
        for spec in [
            // As the root, as a root file, as a child, deep down, and as a directory with
            // something beneath it.
            Spec::new().dir(0, bad).file(1, "sentinel", "evil"),
            Spec::new().file(0, bad, "evil"),
            Spec::new().dir(0, "r").file(1, bad, "evil"),
            Spec::new().dir(0, "r").dir(1, "a").dir(2, "b").file(3, bad, "evil"),
            Spec::new().dir(0, "r").dir(1, bad).dir(2, bad).file(3, "sentinel", "evil"),
            Spec::new().dir(0, "r").dir(1, "a").symlink(2, bad, "/"),
        ] {
            scene.refuses(&spec.archive(), why);
        }
    }
}

#[test]
fn names_with_nul_or_slash_are_refused() {
    let scene = Scene::new();
    for bad in ["a/b", "/", "a/", "../sentinel", "a\0b", "\0", "sentinel\0/../x"] {
        for spec in [
            Spec::new().file(0, bad, "evil"),
            Spec::new().dir(0, "r").file(1, bad, "evil"),
            Spec::new().dir(0, "r").dir(1, bad).file(2, "x", "evil"),
        ] {
            scene.refuses(&spec.archive(), "contains '/' or NUL");
        }
    }
    // Too long for any filesystem; and bytes that are not UTF-8 around a `/`: names are bytes
    // (version 2), so the `/` is what is refused.
    scene.refuses(
        &Spec::new().dir(0, "r").file(1, &"n".repeat(256), "x").archive(),
        "a string of 256 bytes is longer than 255",
    );
    let (record, frame) = Spec::new().dir(0, "r").file(1, "MARKER", "x").record_in_one_block();
    let mut bytes = cbor(&record);
    patch(&mut bytes, b"MARKER", b"\xff\xfe..\xc0/");
    scene.refuses(&assemble_cbor(&frame, &bytes), "contains '/' or NUL");
}

#[test]
fn unusual_but_safe_names_stay_inside_dest() {
    // Names that look like paths or options but are single components extract as they are.
    let scene = Scene::new();
    let spec = Spec::new()
        .dir(0, "-rf")
        .file(1, " ", "space")
        .file(1, "...", "dots")
        .file(1, "..a", "dot dot a")
        .file(1, ".arc-1-0.tmp", "like a temp name")
        .file(1, "\\..\\sentinel", "backslashes")
        .file(1, "a\nb", "newline")
        .file(1, "~", "tilde");
    let run = scene.read(&spec.archive(), &[]);
    run.code(0);
    assert_eq!(
        scene.dest_tree(),
        expect_tree(&[
            ("-rf", "d 755"),
            ("-rf/ ", "f 644 space"),
            ("-rf/...", "f 644 dots"),
            ("-rf/..a", "f 644 dot dot a"),
            ("-rf/.arc-1-0.tmp", "f 644 like a temp name"),
            ("-rf/\\..\\sentinel", "f 644 backslashes"),
            ("-rf/a\nb", "f 644 newline"),
            ("-rf/~", "f 644 tilde"),
        ])
    );
}

#[test]
fn duplicate_and_unsorted_names_are_refused() {
    let scene = Scene::new();
    for spec in [
        Spec::new().dir(0, "r").file(1, "a", "1").file(1, "a", "2"),
        Spec::new().dir(0, "r").dir(1, "a").file(1, "a", "file after dir"),
        Spec::new().dir(0, "r").file(1, "a", "file before dir").dir(1, "a").file(2, "x", "x"),
        Spec::new().dir(0, "r").file(1, "b", "b").file(1, "a", "a"),
        Spec::new().dir(0, "r").dir(0, "r"),
        Spec::new().file(0, "r", "1").file(0, "r", "2"),
        // The same name again after a subtree in between.
        Spec::new().dir(0, "r").dir(1, "a").dir(2, "z").file(3, "zz", "1").file(1, "a", "2"),
    ] {
        scene.refuses(&spec.archive(), "is a duplicate or out of order");
    }
}

#[test]
fn no_entry_can_be_beneath_a_symlink() {
    let scene = Scene::new();
    let target = scene.sentinel_dir().to_str().expect("UTF-8").to_owned();
    let cases: [(Spec, &str); 6] = [
        // The symlink, then a directory of the same name with a file in it.
        (Spec::new().dir(0, "r").symlink(1, "l", &target).dir(1, "l").file(2, "x", "evil"), "duplicate"),
        // The same, the other way round.
        (Spec::new().dir(0, "r").dir(1, "l").file(2, "x", "evil").symlink(1, "l", &target), "duplicate"),
        // The symlink, then a file of the same name.
        (Spec::new().dir(0, "r").symlink(1, "l", &target).file(1, "l", "evil"), "duplicate"),
        // A file one level deeper than the symlink: its parent would be the symlink.
        (Spec::new().dir(0, "r").symlink(1, "l", &target).file(2, "x", "evil"), "inside a non-directory"),
        // The same at the top, and deeper still.
        (Spec::new().symlink(0, "l", &target).dir(1, "d").file(2, "x", "evil"), "inside a non-directory"),
        (Spec::new().symlink(0, "l", &target).symlink(0, "l", "..").file(1, "x", "evil"), "duplicate"),
    ];
    for (spec, why) in cases {
        scene.refuses(&spec.archive(), why);
    }
    // A file beneath a file is refused the same way.
    scene.refuses(
        &Spec::new().dir(0, "r").file(1, "f", "").file(2, "x", "evil").archive(),
        "inside a non-directory",
    );
}

/// A first archive plants a symlink out of DEST; a second writes beneath the same name. arc
/// must refuse, replace the link itself, or skip, but never write through it.
#[test]
fn symlink_planted_by_one_archive_is_not_followed_by_the_next() {
    let scene = Scene::new();
    let absolute = scene.sentinel_dir().to_str().expect("UTF-8").to_owned();
    let sentinel = scene.sentinel().to_str().expect("UTF-8").to_owned();
    for target in [absolute.as_str(), "../../sentinel_dir"] {
        let plant = Spec::new().dir(0, "r").symlink(1, "l", target).symlink(1, "m", &sentinel);
        let second = Spec::new()
            .dir(0, "r")
            .dir(1, "l")
            .mode(0o777)
            .mtime(12_345, 0)
            .file(2, "keep", "overwritten through the link")
            .file(2, "x", "evil")
            .file(1, "m", "written through the link")
            .mode(0o666);
        let plant_first = || {
            scene.clear_dest();
            scene.read(&plant.archive(), &[]).code(0);
            assert_eq!(
                scene.dest_tree(),
                expect_tree(&[
                    ("r", "d 755"),
                    ("r/l", &format!("l {target}")),
                    ("r/m", &format!("l {sentinel}"))
                ])
            );
        };
        let overwritten = expect_tree(&[
            ("r", "d 755"),
            ("r/l", "d 777"),
            ("r/l/keep", "f 644 overwritten through the link"),
            ("r/l/x", "f 644 evil"),
            ("r/m", "f 666 written through the link"),
        ]);
        read_over_existing(
            &scene,
            plant_first,
            &second.archive(),
            "refusing to replace existing",
            &overwritten,
        );
    }
}

#[test]
fn symlink_chain_out_of_dest_is_stored_not_followed() {
    let scene = Scene::new();
    // r/a -> b -> c -> ../../sentinel_dir, the last one relative to DEST/r.
    let chain = Spec::new().dir(0, "r").symlink(1, "a", "b").symlink(1, "b", "c").symlink(
        1,
        "c",
        "../../sentinel_dir",
    );
    let run = scene.read(&chain.archive(), &[]);
    run.code(0);
    let planted =
        expect_tree(&[("r", "d 755"), ("r/a", "l b"), ("r/b", "l c"), ("r/c", "l ../../sentinel_dir")]);
    assert_eq!(scene.dest_tree(), planted);
    // The chain does lead out: following it reaches the sentinel directory.
    assert_eq!(fs::read(scene.dest().join("r/a/keep")).expect("through the chain"), b"keep\n");
    let through =
        Spec::new().dir(0, "r").dir(1, "a").mode(0o777).file(2, "keep", "evil").file(2, "new", "evil");
    for existing in EXISTING {
        let run = scene.read(&through.archive(), existing);
        if existing.is_empty() {
            run.refused("refusing to replace existing");
        } else {
            run.code(0);
        }
        if existing == ["--overwrite"] {
            assert_eq!(scene.dest_tree().get("r/a").map(String::as_str), Some("d 777"));
            scene.clear_dest();
            scene.read(&chain.archive(), &[]).code(0);
        }
        assert_eq!(scene.dest_tree(), planted);
    }
}

#[test]
fn symlink_to_dest_itself_is_never_used() {
    let scene = Scene::new();
    let dest = scene.dest().to_str().expect("UTF-8").to_owned();
    // Links to DEST, to the root directory and to themselves, created after everything else.
    let spec = Spec::new()
        .dir(0, "r")
        .symlink(1, "abs", &dest)
        .symlink(1, "dot", ".")
        .symlink(1, "loop", "loop")
        .symlink(1, "up", "..")
        .file(1, "z", "z");
    scene.read(&spec.archive(), &[]).code(0);
    let planted = expect_tree(&[
        ("r", "d 755"),
        ("r/abs", &format!("l {dest}")),
        ("r/dot", "l ."),
        ("r/loop", "l loop"),
        ("r/up", "l .."),
        ("r/z", "f 644 z"),
    ]);
    assert_eq!(scene.dest_tree(), planted);
    // A second archive with directories named like the links: merging into DEST through one
    // of them would put `r/up/r/z` at `r/z` (a conflict) or create `DEST/x`.
    let second = Spec::new()
        .dir(0, "r")
        .dir(1, "abs")
        .file(2, "x", "evil")
        .dir(1, "dot")
        .file(2, "x", "evil")
        .dir(1, "up")
        .dir(2, "r")
        .file(3, "z", "evil");
    for existing in [&["--keep-existing"][..], &[]] {
        let run = scene.read(&second.archive(), existing);
        if existing.is_empty() {
            run.refused("refusing to replace existing");
        } else {
            run.code(0);
        }
        assert_eq!(scene.dest_tree(), planted, "{}", run.describe());
    }
    let run = scene.read(&second.archive(), &["--overwrite"]);
    run.code(0);
    let tree = scene.dest_tree();
    assert_eq!(tree.get("r/up/r/z").map(String::as_str), Some("f 644 evil"));
    assert_eq!(tree.get("r/z").map(String::as_str), Some("f 644 z"), "{tree:#?}");
    assert!(!tree.contains_key("x"), "{tree:#?}");
}

/// Symlinks already in DEST (an earlier archive's, or another user's) where the archive
/// writes: a directory on the way down, a root, a file.
#[test]
fn preexisting_symlinks_in_dest_are_never_written_through() {
    let scene = Scene::new();
    let sentinel_dir = scene.sentinel_dir().to_str().expect("UTF-8").to_owned();
    let sentinel = scene.sentinel().to_str().expect("UTF-8").to_owned();
    struct Case {
        link: &'static str,
        target: String,
        archive: Spec,
        overwritten: Vec<(&'static str, &'static str)>,
    }
    let cases = [
        Case {
            link: "root/sub",
            target: sentinel_dir.clone(),
            archive: Spec::new().dir(0, "root").dir(1, "sub").file(2, "keep", "evil").file(2, "new", "evil"),
            overwritten: vec![
                ("root", "d 755"),
                ("root/sub", "d 755"),
                ("root/sub/keep", "f 644 evil"),
                ("root/sub/new", "f 644 evil"),
            ],
        },
        Case {
            link: "root/sub",
            target: "../../sentinel_dir".into(),
            archive: Spec::new().dir(0, "root").dir(1, "sub").dir(2, "deeper").file(3, "new", "evil"),
            overwritten: vec![
                ("root", "d 755"),
                ("root/sub", "d 755"),
                ("root/sub/deeper", "d 755"),
                ("root/sub/deeper/new", "f 644 evil"),
            ],
        },
        Case {
            link: "root",
            target: sentinel_dir.clone(),
            archive: Spec::new().dir(0, "root").file(1, "keep", "evil"),
            overwritten: vec![("root", "d 755"), ("root/keep", "f 644 evil")],
        },
        Case {
            link: "root/f",
            target: sentinel.clone(),
            archive: Spec::new().dir(0, "root").file(1, "f", "evil").mode(0o600),
            overwritten: vec![("root", "d 755"), ("root/f", "f 600 evil")],
        },
        Case {
            link: "root/f",
            target: "../../sentinel".into(),
            archive: Spec::new().dir(0, "root").symlink(1, "f", "elsewhere"),
            overwritten: vec![("root", "d 755"), ("root/f", "l elsewhere")],
        },
    ];
    for case in &cases {
        let link = scene.dest().join(case.link);
        let plant = || {
            scene.clear_dest();
            fs::create_dir_all(link.parent().expect("a parent")).expect("creating the link's parent");
            std::os::unix::fs::symlink(&case.target, &link).expect("planting the link");
        };
        let refusal = format!("refusing to replace existing {}", link.display());
        read_over_existing(&scene, plant, &case.archive.archive(), &refusal, &expect_tree(&case.overwritten));
    }
}

#[test]
fn directory_entry_over_a_symlink_leaks_no_mode_or_mtime() {
    let scene = Scene::new();
    let target = scene.sentinel_dir().to_str().expect("UTF-8").to_owned();
    // Modes and mtimes that would show if they were applied to the link's target.
    let archive =
        Spec::new().dir(0, "root").mode(0o700).mtime(1, 0).dir(1, "sub").mode(0o777).mtime(2, 0).archive();
    for link in ["root", "root/sub"] {
        for existing in EXISTING {
            scene.clear_dest();
            if link == "root/sub" {
                fs::create_dir(scene.dest().join("root")).expect("creating root");
            }
            std::os::unix::fs::symlink(&target, scene.dest().join(link)).expect("planting the link");
            let before = stat(&scene.sentinel_dir());
            let run = scene.read(&archive, existing);
            let after = stat(&scene.sentinel_dir());
            assert_eq!(after.mode, 0o750, "{}", run.describe());
            assert_eq!((after.mtime, after.ctime), (before.mtime, before.ctime), "{}", run.describe());
            let link_now = stat(&scene.dest().join(link));
            match existing {
                [] => {
                    run.refused("refusing to replace existing");
                    assert_eq!(link_now.kind, Kind::Symlink);
                }
                ["--overwrite"] => {
                    run.code(0);
                    assert_eq!(link_now.kind, Kind::Dir);
                }
                _ => {
                    run.code(0);
                    assert_eq!(link_now.kind, Kind::Symlink);
                }
            }
        }
    }
}

#[test]
fn every_truncated_prefix_is_refused() {
    let scene = Scene::new();
    let archive = small_tree().archive();
    assert!(archive.len() < 2000, "keep the archive small: {} bytes", archive.len());
    for len in 0..archive.len() {
        let run = scene.read(&archive[..len], &[]);
        run.code(2);
        scene.assert_dest_empty(&run);
        // list and verify open archives the same way.
        assert!(open(&scene.archive_path()).is_err(), "a prefix of {len} bytes opens");
    }
    scene.read(&archive, &[]).code(0);
}

/// Every single-bit flip anywhere in a small archive must be noticed by `read` and `verify`;
/// a flip in the header, index or trailer before anything is written, and a flip in a block
/// before any file holding its bytes appears. Runs the library in-process to stay fast.
#[test]
fn every_bit_flip_is_detected() {
    let scene = Scene::new();
    // Blocks of 8 bytes: `big` spans both, `a` shares the first with it.
    let spec = Spec::new()
        .dir(0, "r")
        .file(1, "a", "alpha\n")
        .dir(1, "d")
        .file(2, "big", "0123456789")
        .symlink(1, "l", "a");
    let archive = spec.archive_with_blocks(8);
    assert!(archive.len() < 1400, "keep the archive small: {} bytes", archive.len());
    let index_offset = index_offset(&archive) as u64;
    // The records (FORMAT.md §3.2): `read` of a file does not use them, `verify` checks them.
    let records: Vec<std::ops::Range<u64>> = {
        let path = scene.archive_path();
        fs::write(&path, &archive).expect("writing the archive");
        let index = index_of(&path);
        let blocks_end = index.blocks.last().map_or(HEADER_LEN, |b| b.offset + b.len);
        let mut records: Vec<_> = index.blocks.iter().map(|b| b.offset - b.record_len..b.offset).collect();
        records.push(blocks_end..blocks_end + index.final_record);
        records
    };
    let expected = {
        scene.read(&archive, &[]).code(0);
        let tree = scene.dest_tree();
        scene.clear_dest();
        tree
    };
    let before = scene.outside();
    // The flipped archives live outside the scene, which must not change.
    let elsewhere = tempfile::tempdir().expect("creating a temp dir");
    let path = elsewhere.path().join("flipped.arc");
    let dest = scene.dest().join("flip");
    let mut unnoticed = Vec::new();
    for byte in 0..archive.len() {
        for bit in 0..8 {
            let mut flipped = archive.clone();
            flipped[byte] ^= 1 << bit;
            fs::write(&path, &flipped).expect("writing the flipped archive");
            let in_blocks = (HEADER_LEN..index_offset).contains(&(byte as u64));
            let read = read_in_process(&path, &dest, Existing::Refuse, false, false);
            // A damaged block makes verify print warnings, so that one runs as a process, whose
            // stderr is kept; elsewhere the archive does not open and nothing is printed.
            let verify = if in_blocks {
                let run = arc(["verify".as_ref(), "-q".as_ref(), path.as_os_str()]);
                if run.code == 0 {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("exit status {}", run.code))
                }
            } else {
                verify_in_process(&path)
            };
            let in_record = records.iter().any(|r| r.contains(&(byte as u64)));
            if (read.is_ok() && !in_record) || verify.is_ok() {
                unnoticed.push(format!("byte {byte} bit {bit}: read {read:?}, verify {verify:?}"));
            }
            if dest.exists() {
                let got = tree(&dest);
                if !in_blocks {
                    assert!(got.is_empty(), "byte {byte} bit {bit} (outside the blocks) wrote {got:?}");
                }
                // Whatever came out is complete and correct.
                for (rel, short) in &got {
                    if short.starts_with('f') {
                        assert_eq!(Some(short), expected.get(rel), "byte {byte} bit {bit}: {rel}");
                    }
                }
                assert!(temp_files(&dest).is_empty(), "byte {byte} bit {bit}: temporary files left");
                fs::remove_dir_all(&dest).expect("clearing DEST");
            }
        }
    }
    scene.assert_outside(&before, "in-process reads of flipped archives");
    assert!(unnoticed.is_empty(), "{} flips went unnoticed:\n{}", unnoticed.len(), unnoticed.join("\n"));
}

/// A change to a valid index record, and what arc must then say.
type Change = Box<dyn Fn(&mut IndexRecord)>;

#[test]
fn huge_declared_sizes_are_refused() {
    let scene = Scene::new();
    let (record, frame) =
        Spec::new().dir(0, "r").file(1, "a", "hello").file(1, "b", "world").record_in_one_block();
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|r| r.sizes = vec![u64::MAX, 10]), "file sizes overflow"),
        (Box::new(|r| r.sizes = vec![u64::MAX - 4, 5]), "file sizes overflow"),
        (Box::new(|r| r.sizes = vec![u64::MAX, 0]), "blocks hold 10 bytes but the files need"),
        (Box::new(|r| r.sizes = vec![1 << 62, 1 << 62]), "blocks hold 10 bytes but the files need"),
        (Box::new(|r| r.blocks.raw_lens = vec![format::MAX_BLOCK_RAW + 1]), "invalid lengths"),
        (Box::new(|r| r.blocks.raw_lens = vec![u64::MAX]), "invalid lengths"),
        (Box::new(|r| r.blocks.raw_lens = vec![0]), "invalid lengths"),
        (Box::new(|r| r.blocks.lens = vec![u64::MAX]), "invalid lengths"),
        (Box::new(|r| r.blocks.lens = vec![0]), "invalid lengths"),
        (Box::new(|r| r.blocks.lens = vec![format::MAX_BLOCK_LEN]), "blocks end at byte"),
        (Box::new(|r| r.mtime_secs = vec![i64::MIN, i64::MAX, 0]), ""),
    ];
    for (change, why) in cases {
        let mut record = record.clone();
        change(&mut record);
        let run = scene.read(&assemble(&frame, &record), &[]);
        if why.is_empty() {
            // Mtimes no filesystem can hold: the kernel clamps them (ext4, tmpfs) or refuses
            // them, which is an error naming the entry; either way nothing panics.
            assert!(run.code == 0 || run.stderr.contains("setting mode and mtime"), "{}", run.describe());
            assert!(temp_files(&scene.dest()).is_empty(), "{}", run.describe());
            scene.clear_dest();
            continue;
        }
        run.refused(why);
        scene.assert_dest_empty(&run);
    }
}

/// DEST holds the directory `r` (made before any block was read) and nothing else: no file,
/// complete or not, and no temporary file.
fn assert_only_root_dir(scene: &Scene, run: &Run) {
    let tree = scene.dest_tree();
    assert_eq!(tree.keys().collect::<Vec<_>>(), ["r"], "{}", run.describe());
    assert!(tree["r"].starts_with('d'), "{}", run.describe());
}

/// Blocks whose decompressed length is not the one the index claims: found when the block is
/// decompressed, and no file with bytes in the block appears.
#[test]
fn lying_block_lengths_are_refused() {
    let scene = Scene::new();
    let first = pattern(8192, 2);
    // Index: 4 MiB, block: 5 bytes.
    let (record, _) = Spec::new().dir(0, "r").file(1, "f", vec![0u8; 4 << 20]).record();
    let archive = craft_frames(record, &[(compress(b"hello"), 4 << 20)]);
    let run = scene.read(&archive, &[]);
    run.refused("zstd frame declares 5 bytes, the index says 4194304");
    assert_only_root_dir(&scene, &run);
    scene.verify().refused("1 of 1 blocks damaged");
    scene.clear_dest();
    // Index: 3 bytes, block: 5, after a larger block whose buffer is reused (one thread).
    let (record, _) = Spec::new().dir(0, "r").file(1, "a", &first).file(1, "b", "hel").record();
    let archive = craft_frames(record, &[(compress(&first), 8192), (compress(b"hello"), 3)]);
    let run = scene.read(&archive, &["-j1"]);
    run.refused("zstd frame declares 5 bytes, the index says 3");
    let tree = scene.dest_tree();
    assert!(!tree.contains_key("r/b"), "{tree:?}");
    assert!(temp_files(&scene.dest()).is_empty());
    scene.verify().refused("1 of 2 blocks damaged");
    // A file spanning both blocks: its temporary file goes away.
    scene.clear_dest();
    let mut both = first.clone();
    both.extend_from_slice(b"hel");
    let (record, _) = Spec::new().dir(0, "r").file(1, "a", &both).record();
    let archive = craft_frames(record, &[(compress(&first), 8192), (compress(b"hello"), 3)]);
    let run = scene.read(&archive, &["-j1"]);
    run.refused("zstd frame declares 5 bytes, the index says 3");
    assert_only_root_dir(&scene, &run);
}

/// CBOR whose arrays claim 2^62 elements, index columns of different lengths, a block table of
/// many blocks: refused without allocating by the claimed counts.
#[test]
fn huge_declared_counts_are_refused() {
    let scene = Scene::new();
    // A map of nine fields whose first, `names`, claims 2^62 strings and holds one.
    let mut bytes = vec![0xa9, 0x65];
    bytes.extend_from_slice(b"names");
    bytes.push(0x9b);
    bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
    bytes.extend_from_slice(&[0x61, b'r']);
    scene.assert_refused(&limited(&scene, &assemble_cbor(&[], &bytes)), "corrupt archive: index");
    // The same for `kinds`, a byte string of 2^62 bytes.
    let mut bytes = vec![0xa9, 0x65];
    bytes.extend_from_slice(b"kinds");
    bytes.push(0x5b);
    bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
    bytes.extend_from_slice(b"\x01\x01");
    scene.assert_refused(&limited(&scene, &assemble_cbor(&[], &bytes)), "corrupt archive: index");

    let (valid, frame) = Spec::new().dir(0, "r").file(1, "a", "hello").record_in_one_block();
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|r| r.depths.push(1)), "index column depths has 3 values for 2 entries"),
        (Box::new(|r| r.modes.truncate(1)), "index column modes has 1 values"),
        (Box::new(|r| r.kinds.extend_from_slice(&[1; 1000])), "index column kinds"),
        (Box::new(|r| r.sizes.extend_from_slice(&[0; 100_000])), "more sizes than files"),
        (Box::new(|r| r.targets.push("t".into())), "more targets than symlinks"),
        (Box::new(|r| r.names.truncate(0)), "index column depths has 2 values for 0 entries"),
        (
            Box::new(|r| {
                r.blocks.lens.extend(std::iter::repeat(1).take(200_000));
                r.blocks.raw_lens.extend(std::iter::repeat(1).take(200_000));
                r.blocks.hashes.extend(std::iter::repeat(0).take(200_000));
                r.blocks.records.extend(std::iter::repeat(0).take(200_000));
            }),
            "blocks end at byte",
        ),
        (Box::new(|r| r.blocks.hashes.push(0)), "block table columns differ"),
    ];
    for (change, why) in cases {
        let mut record = valid.clone();
        change(&mut record);
        scene.refuses(&assemble(&frame, &record), why);
    }
}

#[test]
fn trailer_lies_are_refused() {
    let scene = Scene::new();
    let archive = small_tree().archive();
    let len = archive.len();
    let trailer_at = len - TRAILER_LEN as usize;
    let with_trailer = |index_len: u64, raw_len: u64, hash: Option<u64>| {
        let mut bytes = archive.clone();
        let mut trailer = Trailer { index_len, index_raw_len: raw_len, index_hash: 0 }.encode();
        if let Some(hash) = hash {
            trailer[16..24].copy_from_slice(&hash.to_le_bytes());
        } else {
            trailer[16..24].copy_from_slice(&archive[trailer_at + 16..trailer_at + 24]);
        }
        bytes[trailer_at..].copy_from_slice(&trailer);
        bytes
    };
    let real = trailer(&archive).expect("a valid trailer");
    let index_frame = &archive[trailer_at - real.index_len as usize..trailer_at];
    for (bytes, why) in [
        (with_trailer(u64::MAX, real.index_raw_len, None), "out of range"),
        (with_trailer(0, real.index_raw_len, None), "out of range"),
        (with_trailer(len as u64, real.index_raw_len, None), "index length larger than the archive"),
        (
            with_trailer(len as u64 - TRAILER_LEN - HEADER_LEN + 1, real.index_raw_len, None),
            "larger than the archive",
        ),
        (with_trailer(real.index_len, format::MAX_INDEX_RAW + 1, None), "out of range"),
        (with_trailer(real.index_len, u64::MAX, None), "out of range"),
        (with_trailer(real.index_len + 1, real.index_raw_len, None), "index checksum mismatch"),
        (with_trailer(real.index_len, real.index_raw_len + 1, None), "index checksum mismatch"),
    ] {
        scene.refuses(&bytes, why);
    }
    // Checksums made to match the lie: the frame then declares another length than the
    // trailer. The largest claim is refused before decompressing: a small frame may not expand
    // that far.
    let declares = format!("corrupt archive: index: zstd frame declares {} bytes", real.index_raw_len);
    for (raw_len, why) in [
        (real.index_raw_len - 1, declares.as_str()),
        (real.index_raw_len + 1, declares.as_str()),
        (format::MAX_INDEX_RAW, "corrupt archive: index claims to expand"),
    ] {
        let hash = Trailer::new(index_frame, raw_len).index_hash;
        scene.refuses(&with_trailer(real.index_len, raw_len, Some(hash)), why);
    }
}

#[test]
fn nesting_deeper_than_the_cap_is_refused() {
    let scene = Scene::new();
    let deep = |dirs: u32| {
        let mut spec = Spec::new();
        for depth in 0..dirs {
            spec = spec.dir(depth, "d");
        }
        spec.file(dirs, "f", "at the bottom")
    };
    scene.refuses(&deep(format::MAX_DEPTH + 1).archive(), "nesting deeper than 1024");
    scene.refuses(&deep(5000).archive(), "nesting deeper than 1024");
    // At the cap, the tree comes out whole, also when arc may keep no directory open (the
    // open-files limit leaves it no handles to cache).
    let bottom = scene.dest().join("d/".repeat(format::MAX_DEPTH as usize)).join("f");
    scene.read(&deep(format::MAX_DEPTH).archive(), &[]).code(0);
    assert_eq!(fs::read(&bottom).expect("reading the deepest file"), b"at the bottom");
    if Path::new("/usr/bin/prlimit").exists() {
        scene.clear_dest();
        scene.read_wrapped(&["/usr/bin/prlimit", "--nofile=128:128", "--"], &[]).code(0);
        assert_eq!(fs::read(&bottom).expect("reading the deepest file"), b"at the bottom");
    }
}

/// Runs `arc read` on `archive` with at most 1 GiB of address space, so that an allocation
/// sized by a hostile number fails the test (arc aborts) instead of slowing the machine.
fn limited(scene: &Scene, archive: &[u8]) -> Run {
    scene.write_archive(archive);
    let started = Instant::now();
    let prlimit = if Path::new("/usr/bin/prlimit").exists() {
        vec!["/usr/bin/prlimit", "--as=1073741824", "--"]
    } else {
        eprintln!("note: /usr/bin/prlimit is missing; running without a memory limit");
        vec![]
    };
    let run = scene.read_wrapped(&prlimit, &[]);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}: {}", started.elapsed(), run.describe());
    run
}

#[test]
fn block_decompression_bombs_are_refused() {
    let scene = Scene::new();
    let size = 4u64 << 20;
    let (record, _) = Spec::new().dir(0, "r").file(1, "f", vec![0u8; size as usize]).record();
    // A control: a real 4 MiB block extracts under the same memory limit.
    limited(&scene, &craft(record.clone(), &vec![b'A'; size as usize], size as usize)).code(0);
    assert_eq!(fs::metadata(scene.dest().join("r/f")).expect("the control file").len(), size);
    for frame in [
        // 2 GiB from 64 KiB, the content size not declared, declared truthfully, or as 4 MiB.
        rle_bomb(2 << 30, 17, None),
        rle_bomb(2 << 30, 17, Some(2 << 30)),
        rle_bomb(2 << 30, 17, Some(size)),
    ] {
        assert!(frame.len() < 70_000);
        scene.clear_dest();
        let run = limited(&scene, &craft_frames(record.clone(), &[(frame.clone(), size)]));
        run.refused("block at byte ");
        assert_only_root_dir(&scene, &run);
        assert!(temp_files(&scene.dest()).is_empty());
        scene.verify().refused("1 of 1 blocks damaged");
    }
    // A frame that asks for a window over 2^27 bytes is refused (FORMAT.md §3.1), even where
    // it would be harmless, as `zstd -d` refuses it: the format does not allow it.
    for window_log in [28, 31] {
        scene.clear_dest();
        let frame = rle_bomb(size, window_log, Some(size));
        let run = limited(&scene, &craft_frames(record.clone(), &[(frame, size)]));
        run.refused(&format!(
            "zstd window of {} bytes is over the limit of 134217728 bytes",
            1u64 << window_log
        ));
        assert_only_root_dir(&scene, &run);
        scene.verify().refused("1 of 1 blocks damaged");
    }
}

#[test]
fn index_decompression_bombs_are_refused() {
    let scene = Scene::new();
    // 1 GiB from 32 KiB, while the trailer says 100 bytes: not CBOR of an index, so refused
    // at its first bytes, long before the decoder has produced much.
    scene.assert_refused(
        &limited(&scene, &assemble_index_frame(&[], &rle_bomb(1 << 30, 17, None), 100)),
        "corrupt archive: index",
    );
    scene.assert_refused(
        &limited(&scene, &assemble_index_frame(&[], &rle_bomb(1 << 30, 17, Some(100)), 100)),
        "corrupt archive: index",
    );
    scene.assert_refused(
        &limited(&scene, &assemble_index_frame(&[], &rle_bomb(1000, 31, None), 1000)),
        "corrupt archive: index",
    );
}

#[test]
fn leading_and_trailing_garbage_is_refused() {
    let scene = Scene::new();
    let archive = small_tree().archive();
    let trailer = archive[archive.len() - TRAILER_LEN as usize..].to_vec();
    let index_at = index_offset(&archive);
    let cat = |parts: &[&[u8]]| parts.concat();
    for (bytes, why) in [
        (cat(&[&archive, b"garbage"]), "no index trailer at the end"),
        (cat(&[&archive, &[0]]), "no index trailer at the end"),
        // Garbage that ends like a trailer: the index would then be somewhere else.
        (cat(&[&archive, b"garbage", &trailer]), "index checksum mismatch"),
        (cat(&[b"g", &archive]), "not an arc archive"),
        (cat(&[&[0; 16], &archive]), "not an arc archive"),
        // Two archives back to back: the second one's index does not describe the first.
        (cat(&[&archive, &archive]), "blocks end at byte"),
        // Garbage between the blocks and the index.
        (cat(&[&archive[..index_at], b"gap", &archive[index_at..]]), "blocks end at byte"),
    ] {
        scene.refuses(&bytes, why);
    }
}

#[test]
fn setuid_and_setgid_come_back_only_with_same_permissions() {
    let scene = Scene::new();
    let archive = Spec::new()
        .dir(0, "r")
        .file(1, "both", "b")
        .mode(0o6711)
        .file(1, "setgid", "g")
        .mode(0o2755)
        .dir(1, "setgid-dir")
        .mode(0o2775)
        .file(1, "setuid", "u")
        .mode(0o4755)
        .dir(1, "sticky")
        .mode(0o1777)
        .archive();
    let mode =
        |rel: &str| fs::symlink_metadata(scene.dest().join(rel)).expect("stat").permissions().mode() & 0o7777;
    scene.read(&archive, &[]).code(0);
    let dropped = [
        ("r/setgid", 0o755),
        ("r/setuid", 0o755),
        ("r/setgid-dir", 0o775),
        ("r/sticky", 0o1777),
        ("r/both", 0o711),
    ];
    for (rel, expected) in dropped {
        assert_eq!(mode(rel), expected, "{rel}: {:o}", mode(rel));
    }
    scene.clear_dest();
    scene.read(&archive, &["--same-permissions"]).code(0);
    let kept = [
        ("r/setgid", 0o2755),
        ("r/setuid", 0o4755),
        ("r/setgid-dir", 0o2775),
        ("r/sticky", 0o1777),
        ("r/both", 0o6711),
    ];
    for (rel, expected) in kept {
        assert_eq!(mode(rel), expected, "{rel}: {:o}", mode(rel));
    }
}

#[test]
fn control_characters_in_names_never_reach_the_terminal() {
    let scene = Scene::new();
    let name = "\x1b]0;owned\x07\x1b[2J";
    let archive = Spec::new().dir(0, "r").file(1, name, "x").symlink(1, "l", "\x1b[31m").archive();
    scene.write_archive(&archive);
    let list = arc([std::ffi::OsStr::new("list"), "-l".as_ref(), scene.archive_path().as_os_str()]);
    list.code(0);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(!listed.contains('\x1b') && !listed.contains('\x07'), "{listed:?}");
    let run = scene.read(&archive, &["-v"]);
    run.code(0);
    // A conflict names the entry in the error.
    let run = scene.read(&archive, &[]);
    run.refused("refusing to replace existing");
    assert!(!run.stderr.contains('\x1b') && !run.stderr.contains('\x07'), "{:?}", run.stderr);
}

// --- the entry kinds of format version 2 ---

#[test]
fn hard_links_to_anything_but_an_earlier_file_are_refused() {
    let scene = Scene::new();
    // r, r/a (dir), r/f (file), r/l (symlink), then a link to each candidate.
    let base = || Spec::new().dir(0, "r").dir(1, "a").file(1, "f", "data").symlink(1, "l", "/etc/passwd");
    for target in [0, 1, 3, 4, 5, 99] {
        let archive = base().hard_link(1, "z", target).archive();
        scene.refuses(&archive, "does not refer to an earlier regular file");
    }
    // A link to a link is refused too, even when that one is good.
    let archive = base().hard_link(1, "y", 2).hard_link(1, "z", 4).archive();
    scene.refuses(&archive, "does not refer to an earlier regular file");
    // The good one extracts as one inode.
    let run = scene.read(&base().hard_link(1, "y", 2).archive(), &[]);
    run.success();
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| fs::symlink_metadata(scene.dest().join(p)).expect("stat").ino();
    assert_eq!(ino("r/f"), ino("r/y"));
}

#[test]
fn a_hard_link_never_reaches_what_dest_held_before() {
    // DEST holds r/f as a symlink to the sentinel outside; with --keep-existing, r/f is kept, and
    // the link r/y to it must get the archive's data, not become a name of the sentinel.
    let scene = Scene::new();
    let archive = Spec::new().dir(0, "r").file(1, "f", "archive data").hard_link(1, "y", 1).archive();
    fs::create_dir_all(scene.dest().join("r")).expect("mkdir");
    std::os::unix::fs::symlink(scene.sentinel(), scene.dest().join("r/f")).expect("plant a symlink");
    let before = fs::read(scene.sentinel()).expect("the sentinel");
    scene.read(&archive, &["--keep-existing"]).success();
    assert_eq!(fs::read(scene.dest().join("r/y")).expect("r/y"), b"archive data");
    let y = fs::symlink_metadata(scene.dest().join("r/y")).expect("stat");
    assert!(y.is_file(), "r/y is a file of its own");
    assert_eq!(fs::read(scene.sentinel()).expect("the sentinel"), before);
    // Only the link selected: it gets the data.
    scene.clear_dest();
    scene.read(&archive, &["r/y"]).success();
    assert_eq!(fs::read(scene.dest().join("r/y")).expect("r/y"), b"archive data");
    assert!(!scene.dest().join("r/f").exists());
}

#[test]
fn devices_from_an_archive_need_same_permissions() {
    let scene = Scene::new();
    let archive = Spec::new()
        .dir(0, "r")
        .device(1, "disk", false, 8, 0)
        .device(1, "kmem", true, 1, 2)
        .fifo(1, "pipe")
        .file(1, "z", "after")
        .archive();
    let run = scene.read(&archive, &[]);
    run.code(1);
    for name in ["r/kmem", "r/disk"] {
        assert!(
            run.stderr.contains(&format!("skipping device {}/{name}", scene.dest().display())),
            "{}",
            run.describe()
        );
        assert!(fs::symlink_metadata(scene.dest().join(name)).is_err(), "{name} was made");
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(scene.dest().join("r/pipe")).expect("the FIFO").file_type().is_fifo());
    assert_eq!(fs::read(scene.dest().join("r/z")).expect("r/z"), b"after");
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: making devices with --same-permissions needs root");
        return;
    }
    scene.clear_dest();
    scene.read(&archive, &["--same-permissions"]).success();
    let kmem = fs::symlink_metadata(scene.dest().join("r/kmem")).expect("made with -p");
    assert!(kmem.file_type().is_char_device());
    use std::os::unix::fs::MetadataExt;
    assert_eq!((rustix::fs::major(kmem.rdev()), rustix::fs::minor(kmem.rdev())), (1, 2));
}

#[test]
fn privileged_attributes_and_bits_need_same_permissions() {
    let scene = Scene::new();
    let archive = Spec::new()
        .dir(0, "r")
        .file(1, "tool", "#!/bin/sh\n")
        .mode(0o4755)
        .owner(0, 0)
        .xattr("security.capability", &[1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .xattr("trusted.evil", b"x")
        .xattr("user.ok", b"fine")
        .archive();
    scene.read(&archive, &[]).success();
    let tool = scene.dest().join("r/tool");
    let names = |p: &Path| {
        let mut buf = vec![0u8; 4096];
        let n = rustix::fs::listxattr(p, &mut buf[..]).expect("listxattr");
        buf.truncate(n);
        buf.split(|&b| b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&tool), ["user.ok"], "only user.* without -p");
    assert_eq!(fs::symlink_metadata(&tool).expect("stat").permissions().mode() & 0o7777, 0o755);
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: restoring security.* and trusted.* attributes needs root");
        return;
    }
    scene.clear_dest();
    scene.read(&archive, &["-p"]).success();
    let mut all = names(&tool);
    all.sort();
    assert_eq!(all, ["security.capability", "trusted.evil", "user.ok"]);
    assert_eq!(fs::symlink_metadata(&tool).expect("stat").permissions().mode() & 0o7777, 0o4755);
}

#[test]
fn hostile_sparse_extents_are_refused() {
    let scene = Scene::new();
    let (mut record, frame) = Spec::new().dir(0, "r").file(1, "s", "abcdef").record_in_one_block();
    record.sizes[0] = 1 << 40;
    for (offsets, lens, why) in [
        (vec![10, 12], vec![3, 3], "overlapping"),
        (vec![(1 << 40) - 2], vec![6], "past its end"),
        (vec![u64::MAX - 1], vec![6], "overlapping or empty"),
        (vec![0, 100], vec![6, 0], "overlapping or empty"),
        (vec![0], vec![5], "blocks hold"),
    ] {
        record.sparse =
            format::SparseRecord { files: vec![1], counts: vec![offsets.len() as u32], offsets, lens };
        scene.refuses(&assemble(&frame, &record), why);
    }
    // The same file, sane: 6 bytes at the end of a terabyte of hole, which costs nothing.
    record.sparse =
        format::SparseRecord { files: vec![1], counts: vec![1], offsets: vec![(1 << 40) - 6], lens: vec![6] };
    scene.read(&assemble(&frame, &record), &[]).success();
    let s = fs::symlink_metadata(scene.dest().join("r/s")).expect("r/s");
    use std::os::unix::fs::MetadataExt;
    assert_eq!((s.len(), s.blocks() * 512 <= 64 << 10), (1 << 40, true));
}
