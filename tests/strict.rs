//! The reader keeps every promise of FORMAT.md and SECURITY.md: exactly one zstd frame per
//! block and for the index (§3.1), CBOR of exactly the types of §4.2, and memory bounded by the
//! archive (SECURITY.md §8): every command, on every input, peaks at 64 MiB + 32 bytes per byte
//! of archive at most (the archives here have no block larger than themselves, the one
//! exception), measured here for each run (GNU time's maximum resident size).
//!
//! The archives are crafted from FORMAT.md with the helpers of `support::craft`; each case was
//! accepted, or took gigabytes, before the strict reader.

use std::ffi::OsStr;
use std::io::Write;
use std::process::Command;

use crate::support::{
    arc_measured, assemble, assemble_cbor, assemble_exactly, assemble_index_frame, cbor, compress,
    craft_frames, format, gnu_time, pseudo_random, rle_bomb, run, BlockRecord, Run, Scene, Spec, ARC,
};

/// SECURITY.md §8: what any command may use on an archive of `len` bytes.
fn bound(len: u64) -> u64 {
    ((64 << 20) + 32 * len).min(1 << 30)
}

/// Runs `arc ARGS TOP/x.arc` (for read, with `-C DEST`), checks that nothing outside DEST
/// changed and, where GNU time is there to measure it, that arc stayed within the bound of
/// the archive's size.
fn measured(scene: &Scene, args: &[&str]) -> Run {
    measured_with(scene, args, &[])
}

/// [`measured`], with more variables in arc's environment.
fn measured_with(scene: &Scene, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let len = std::fs::metadata(scene.archive_path()).expect("the archive").len();
    let archive = scene.archive_path();
    let dest = scene.dest();
    let mut all: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    all.push(archive.as_os_str());
    if args[0] == "read" {
        all.extend([OsStr::new("-C"), dest.as_os_str()]);
    }
    let before = scene.outside();
    let run = match gnu_time() {
        Some(time) => {
            let (run, peak) = arc_measured(time, &all, envs);
            assert!(
                peak <= bound(len),
                "`{}` peaked at {} MiB on an archive of {len} bytes (bound {} MiB)",
                run.command,
                peak >> 20,
                bound(len) >> 20
            );
            run
        }
        None => run(Command::new(ARC).args(&all).envs(envs.iter().copied())),
    };
    scene.assert_outside(&before, &run.describe());
    run
}

/// `commands` refuse `archive`, saying `why`, within the memory bound; read leaves DEST empty.
fn refused_by(commands: &[&[&str]], archive: &[u8], why: &str) {
    let scene = Scene::new();
    scene.write_archive(archive);
    for args in commands {
        measured(&scene, args).refused(why);
    }
    // Directories are made before the first block is read; no file may be there.
    let tree = scene.dest_tree();
    assert!(tree.values().all(|t| t.starts_with('d')), "read left files in DEST: {tree:?}");
}

/// Every command refuses `archive` (damage in the index, which every command reads).
fn refused_by_every_command(archive: &[u8], why: &str) {
    refused_by(
        &[&["list"], &["list", "-l"], &["list", "--json"], &["verify", "-q"], &["read", "-q"]],
        archive,
        why,
    );
}

/// Damage in the index outside its tree (names, depths, kinds): every command that reads that
/// part refuses `archive`; a plain `list`, which reads the tree alone (SECURITY.md §8), lists
/// it.
fn refused_by_readers_beyond_the_tree(archive: &[u8], why: &str) {
    refused_by(&[&["list", "-l"], &["list", "--json"], &["verify", "-q"], &["read", "-q"]], archive, why);
    let scene = Scene::new();
    scene.write_archive(archive);
    measured(&scene, &["list"]).success();
}

/// The commands that read blocks refuse `archive` (damage in a block, which `list` never
/// reads).
fn refused_by_block_readers(archive: &[u8], why: &str) {
    refused_by(&[&["verify", "-q"], &["read", "-q"]], archive, why);
}

/// A tree of one file, `r/f`, holding `contents`, with its record (block table empty).
fn one_file(contents: &[u8]) -> format::IndexRecord {
    Spec::new().dir(0, "r").file(1, "f", contents).record().0
}

/// Archives with a block that is not exactly one frame as FORMAT.md §3.1 allows, with what
/// arc says.
fn misframed_blocks() -> Vec<(Vec<u8>, &'static str)> {
    let hello = compress(b"hello");
    // Two frames: the second rides along unseen by the index.
    let two = [hello.clone(), compress(b"hidden payload")].concat();
    // A skippable frame (RFC 8878 §3.1.2) before the real one.
    let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 6, 0, 0, 0];
    skippable.extend_from_slice(b"hidden");
    skippable.extend_from_slice(&hello);
    // A frame without the checksum arc always writes.
    let mut bare = zstd::bulk::Compressor::new(3).expect("compressor");
    bare.include_checksum(false).expect("flag");
    let no_checksum = bare.compress(b"hello").expect("compress");
    // A frame asking for a window of 2^28 bytes.
    let wide = rle_bomb(5, 28, Some(5));
    vec![
        (craft_frames(one_file(b"hello"), &[(two, 5)]), "bytes follow the zstd frame"),
        (craft_frames(one_file(b"hello"), &[(skippable, 5)]), "not a zstd frame"),
        (craft_frames(one_file(b"hello"), &[(no_checksum, 5)]), "no content checksum"),
        (craft_frames(one_file(b"AAAAA"), &[(wide, 5)]), "zstd window of 268435456 bytes is over the limit"),
    ]
}

#[test]
fn a_block_is_exactly_one_frame() {
    for (archive, why) in misframed_blocks() {
        refused_by_block_readers(&archive, why);
    }
}

/// The index frame with bytes after it inside the index's length, all checksums true.
fn index_with_extra_bytes() -> Vec<u8> {
    let (record, region) = Spec::new().dir(0, "r").file(1, "f", "hello").record_in_one_block();
    let cbor = cbor(&record);
    let extended = [compress(&cbor), b"extra bytes".to_vec()].concat();
    assemble_index_frame(&region, &extended, cbor.len() as u64)
}

#[test]
fn the_index_is_exactly_one_frame() {
    let (record, region) = Spec::new().dir(0, "r").file(1, "f", "hello").record_in_one_block();
    let scene = Scene::new();
    scene.write_archive(&assemble(&region, &record));
    measured(&scene, &["verify", "-q"]).success();
    refused_by_every_command(&index_with_extra_bytes(), "index: 11 bytes follow the zstd frame");
}

/// Archives whose index breaks one rule of FORMAT.md §4 each, with what arc says.
fn mistyped_indexes() -> Vec<(Vec<u8>, &'static str)> {
    let (record, region) = Spec::new().dir(0, "r").file(1, "f", "hello").record_in_one_block();
    let good = cbor(&record);
    let patched = |from: &[u8], to: &[u8]| {
        let mut bytes = good.clone();
        let at = bytes.windows(from.len()).position(|w| w == from).expect("pattern");
        bytes.splice(at..at + from.len(), to.iter().copied());
        assemble_cbor(&region, &bytes)
    };
    vec![
        // A map key as a byte string.
        (
            patched(b"\x65names", b"\x45names"),
            "index column names: expected the key \"names\", found a byte string",
        ),
        // kinds and a packed column (depths) as arrays of integers.
        (
            patched(b"\x65kinds\x42\x00\x01", b"\x65kinds\x82\x00\x01"),
            "index column kinds: expected a byte string",
        ),
        (
            patched(b"\x66depths\x42\x00\x01", b"\x66depths\x82\x00\x01"),
            "index column depths: expected a byte string, found an array of 2",
        ),
        // Tags, on a value and on a key.
        (patched(b"\x65modes\x44", b"\x65modes\xc1\x44"), "index column modes: a tag (1)"),
        (patched(b"\x65modes", b"\xd9\xd9\xf7\x65modes"), "index column modes: a tag (55799)"),
        // An indefinite-length byte string, which arc never writes.
        (
            patched(b"\x65sizes\x41\x05", b"\x65sizes\x5f\x41\x05\xff"),
            "index column sizes: expected a byte string",
        ),
        // An integer in a longer form than needed: one archive, one encoding.
        (
            patched(b"\x65sizes\x41\x05", b"\x65sizes\x42\x85\x00"),
            "index column sizes: an integer in a longer form",
        ),
        // An extra item after the map: the trailer counts it, the parser does not.
        (assemble_cbor(&region, &[good.clone(), vec![0]].concat()), "index: bytes follow the index map"),
    ]
}

#[test]
fn the_index_has_exactly_the_types_of_the_format() {
    for (archive, why) in mistyped_indexes() {
        // The one value-level case is in a column a plain list does not read.
        if why.contains("index column sizes: an integer") {
            refused_by_readers_beyond_the_tree(&archive, why);
        } else {
            refused_by_every_command(&archive, why);
        }
    }
    // The same index, unpatched, is fine.
    let (record, region) = Spec::new().dir(0, "r").file(1, "f", "hello").record_in_one_block();
    let scene = Scene::new();
    scene.write_archive(&assemble_cbor(&region, &cbor(&record)));
    measured(&scene, &["read", "-q"]).success();
}

#[test]
fn a_damaged_tree_lists_nothing() {
    // The third entry repeats the second's name: a plain list checks the whole tree before it
    // prints a line.
    let (mut record, region) =
        Spec::new().dir(0, "r").file(1, "a", "x").file(1, "b", "y").record_in_one_block();
    record.names = record.names.replaced(2, b"a");
    let scene = Scene::new();
    scene.write_archive(&assemble_cbor(&region, &cbor(&record)));
    let run = measured(&scene, &["list"]);
    run.refused("entry a is a duplicate or out of order");
    assert!(run.stdout.is_empty(), "{}", run.stdout_str());
}

/// An index frame made by streaming `write` into a zstd encoder that declares `raw_len` bytes
/// (the frame as arc writes one), for indexes too large to hold in memory here.
fn streamed_index(raw_len: u64, write: impl FnOnce(&mut dyn Write)) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
    encoder.include_checksum(true).expect("flag");
    encoder.set_pledged_src_size(Some(raw_len)).expect("pledge");
    let mut counted = Counted { inner: &mut encoder, written: 0 };
    write(&mut counted);
    assert_eq!(counted.written, raw_len, "the stream is not the length declared");
    encoder.finish().expect("finishing the frame")
}

struct Counted<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
}

impl<W: Write> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `len` pseudo-random lowercase letters: names that compress, but not much.
fn letters(len: usize, seed: u64) -> Vec<u8> {
    pseudo_random(len, seed).into_iter().map(|b| b'a' + b % 26).collect()
}

/// CBOR: the map of version 2's 19 columns, the key `names`, and the head of its packed byte
/// string of `len` bytes (FORMAT.md §4.7).
fn names_head(len: u32) -> Vec<u8> {
    let mut head = vec![0xb3, 0x65];
    head.extend_from_slice(b"names");
    head.push(0x5a);
    head.extend_from_slice(&len.to_be_bytes());
    head
}

/// 2^24 names of 25 bytes, every byte present: 436 MB of CBOR in a frame of about 500 KB
/// (one name in 512 is random letters, so that the frame is large enough for the expansion
/// cap and reaches the parser).
fn sixteen_million_names() -> Vec<u8> {
    let count = 1u32 << 24;
    let name = |letters: &[u8]| [[25u8].as_slice(), letters].concat();
    let same = name(b"a name of twenty-five b..");
    let head = names_head(count * same.len() as u32);
    let raw_len = head.len() as u64 + u64::from(count) * same.len() as u64;
    let random = letters(25 * (count as usize / 512), 1);
    let frame = streamed_index(raw_len, |out| {
        out.write_all(&head).expect("write");
        let run = same.repeat(511);
        for letters in random.chunks(25) {
            out.write_all(&run).expect("write");
            out.write_all(&name(letters)).expect("write");
        }
    });
    assert!(raw_len / (frame.len() as u64) < 1024, "the frame would be refused by the ratio cap");
    assemble_index_frame(&[], &frame, raw_len)
}

#[test]
fn sixteen_million_real_names_are_refused_within_the_bound() {
    // The CBOR is charged as a whole before it is decompressed.
    refused_by_every_command(
        &sixteen_million_names(),
        "the index's CBOR needs more memory than an archive of this size may ask for",
    );
}

/// One name declared 1.1 GiB long, in a few bytes: refused by its length before anything is
/// read or allocated for it.
fn gigabyte_name() -> Vec<u8> {
    let mut len = Vec::new();
    let mut value: u64 = 1_100 << 20;
    while value >= 0x80 {
        len.push(value as u8 | 0x80);
        value >>= 7;
    }
    len.push(value as u8);
    // A well-formed index whose names column is that one length.
    let cbor = cbor(&one_file(&[]));
    let at = cbor.windows(6).position(|w| w == b"\x65names").expect("the names key") + 6;
    let old = usize::from(cbor[at] - 0x40);
    let mut patched = cbor[..at].to_vec();
    patched.push(0x40 + len.len() as u8);
    patched.extend_from_slice(&len);
    patched.extend_from_slice(&cbor[at + 1 + old..]);
    assemble_cbor(&[], &patched)
}

#[test]
fn a_gigabyte_name_is_refused_by_its_length() {
    refused_by_every_command(
        &gigabyte_name(),
        "index column names: a string of 1153433600 bytes is longer than 255",
    );
}

/// An archive of one file of `count` bytes in `count` blocks of one byte, each block a single
/// (pseudo-random) byte that is not a zstd frame, its checksum true: every block is damaged.
fn one_byte_blocks(count: usize) -> Vec<u8> {
    let region = pseudo_random(count, 3);
    let hashes: Vec<u64> = (0..=255u8).map(|b| format::block_hash(&[b])).collect();
    let mut record = one_file(&[]);
    record.sizes = vec![count as u64];
    record.blocks = BlockRecord {
        lens: vec![1; count],
        raw_lens: vec![1; count],
        hashes: region.iter().map(|&b| hashes[usize::from(b)]).collect(),
        records: vec![0; count + 1],
    };
    // No records: a million of them would take minutes to make (verify counts them damaged).
    assemble_exactly(&region, &record)
}

#[test]
fn millions_of_blocks_stay_within_the_bound() {
    // A million damaged one-byte blocks: listed, and verified with a report of a screenful,
    // within the bound of the archive's size.
    let scene = Scene::new();
    scene.write_archive(&one_byte_blocks(1 << 20));
    assert_eq!(measured(&scene, &["list"]).success().stdout_str(), "r/\nr/f\n");
    let run = measured(&scene, &["verify", "-q"]);
    run.code(2);
    assert!(run.stderr.lines().count() <= 15, "{}", run.stderr);
    assert!(run.stderr.contains("and 1048566 more damaged blocks"), "{}", run.stderr);
    measured(&scene, &["read", "-q"]).refused("damaged data of r/f");
    // Four million in 11 MB, and the cap of 2^24 blocks in 44 MB: the block table, and what
    // the commands keep per block, would take more than the archive may ask for.
    for count in [4 << 20, 1 << 24] {
        refused_by_readers_beyond_the_tree(
            &one_byte_blocks(count),
            "needs more memory than an archive of this size may ask for",
        );
    }
}

#[test]
fn many_damaged_blocks_make_a_short_report() {
    let count = 100_000;
    let scene = Scene::new();
    scene.write_archive(&one_byte_blocks(count));
    let run = measured(&scene, &["verify", "-q"]);
    run.code(2);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(lines.len() <= 15, "{} lines of report:\n{}", lines.len(), run.stderr);
    assert!(run.stderr.contains("and 99990 more damaged blocks"), "{}", run.stderr);
    assert!(
        lines.last().expect("a line").contains("100000 of 100000 blocks damaged, 1 entries affected ("),
        "{}",
        run.stderr
    );
    // A read stops at the first damaged block, without an error value (and a backtrace, when
    // asked for) for every block left.
    let run = measured_with(&scene, &["read", "-q"], &[("RUST_BACKTRACE", "1")]);
    run.refused("damaged data of r/f");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[test]
fn json_escapes_what_text_escapes() {
    let archive =
        Spec::new().dir(0, "r").file(1, "del\u{7f} c1\u{85} bidi\u{202e} zw\u{200b}", "x").archive();
    let scene = Scene::new();
    scene.write_archive(&archive);
    let run = measured(&scene, &["list", "--json"]);
    let out = run.success().stdout_str();
    assert!(out.contains(r#""path":"r/del\u007f c1\u0085 bidi\u202e zw\u200b""#), "{out}");
    assert!(out.is_ascii(), "raw characters in {out}");
    let text = measured(&scene, &["list"]).success().stdout_str();
    assert!(text.contains(r"r/del\u{7f} c1\u{85} bidi\u{202e} zw\u{200b}"), "{text}");
}

#[test]
fn good_archives_read_within_the_bound() {
    // A control for the measurement: a real archive of several blocks, listed, verified and
    // read within the bound of its size.
    let contents: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let spec = Spec::new().dir(0, "r").file(1, "big", &contents).file(1, "small", "small");
    let scene = Scene::new();
    scene.write_archive(&spec.archive_with_blocks(1 << 20));
    for args in [&["list"][..], &["verify", "-q"], &["read", "-q"]] {
        measured(&scene, args).success();
    }
    assert_eq!(std::fs::read(scene.dest().join("r/big")).expect("r/big"), contents);
}

/// Writes the small archives of this module into the fuzz corpus (as raw archives, the first
/// byte 0), so that fuzzing starts from what the strict reader refuses and the corpus replay
/// keeps checking them.
#[test]
#[ignore = "writes fuzz/corpus; run by hand: cargo test --test tests -- --ignored write_strict_seeds"]
fn write_strict_seeds() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, (archive, _)) in misframed_blocks().into_iter().enumerate() {
        seeds.push((format!("strict-block-{i}"), archive));
    }
    for (i, (archive, _)) in mistyped_indexes().into_iter().enumerate() {
        seeds.push((format!("strict-cbor-{i}"), archive));
    }
    seeds.push(("strict-index-extra-bytes".into(), index_with_extra_bytes()));
    seeds.push(("strict-damaged-blocks".into(), one_byte_blocks(300)));
    for (name, archive) in seeds {
        for target in ["index", "read"] {
            std::fs::write(fuzz.join(target).join(&name), [&[0u8][..], &archive].concat())
                .expect("writing a seed");
        }
    }
}

/// Writes the archives of this module's examples into $ARC_CASES_DIR, to measure arc on them
/// by hand (`/usr/bin/time -v arc verify DIR/NAME.arc`), this build or another.
#[test]
#[ignore = "writes archives of up to 17 MB; run by hand with ARC_CASES_DIR=DIR"]
fn write_cases() {
    let Some(dir) = std::env::var_os("ARC_CASES_DIR") else {
        eprintln!("note: set ARC_CASES_DIR to a directory to write the cases into");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("names-2e24".into(), sixteen_million_names()),
        ("name-1.1GiB".into(), gigabyte_name()),
        ("blocks-4M".into(), one_byte_blocks(4 << 20)),
        ("blocks-2e24".into(), one_byte_blocks(1 << 24)),
        ("index-extra-bytes".into(), index_with_extra_bytes()),
    ];
    for (i, (archive, _)) in misframed_blocks().into_iter().enumerate() {
        cases.push((format!("block-{i}"), archive));
    }
    for (i, (archive, _)) in mistyped_indexes().into_iter().enumerate() {
        cases.push((format!("cbor-{i}"), archive));
    }
    for (name, archive) in cases {
        std::fs::write(dir.join(format!("{name}.arc")), archive).expect("writing a case");
    }
}

#[test]
fn write_refuses_an_archive_readers_would_refuse() {
    // A quarter of a million empty files with long names: their index compresses to little, too
    // little archive for the memory the entries take to read (SECURITY.md §8). Refused at
    // write, with no archive left, rather than written unreadable.
    let shm = std::path::Path::new("/dev/shm");
    let env =
        if shm.is_dir() { crate::support::TestEnv::new_in(shm) } else { crate::support::TestEnv::new() };
    for d in 0..250 {
        let dir = env.mkdir(format!("t/d{d:03}"));
        for f in 0..1000 {
            let name = format!("f{f:04}{}", "x".repeat(240));
            std::fs::File::create(dir.join(name)).expect("creating a file");
        }
    }
    let run = env.arc(["write", "-q", "-o", "x.arc", "t"]);
    let error = run.error();
    assert!(
        error.contains("250251 entries need") && error.contains("archive fewer entries at once"),
        "{error}"
    );
    assert!(!env.path("x.arc").exists());
}

#[test]
fn a_copies_table_costs_a_selective_read_nothing_before_it_is_checked() {
    // A hard link inside the PATH makes the reader look up copies among the files it keeps,
    // before the index is checked: 20 million rows of zeros (refused once checked) must not
    // be gathered.
    let spec = Spec::new().dir(0, "r").dir(1, "d").file(2, "f", "data").hard_link(2, "l", 2);
    let (mut record, data) = spec.record();
    record.copies.files = vec![0; 20_000_000];
    record.copies.sources = vec![0; 20_000_000];
    let archive = crate::support::craft(record, &data, 4096);
    let scene = Scene::new();
    scene.write_archive(&archive);
    let (path, dest) = (scene.archive_path(), scene.dest());
    let (path, dest) = (path.as_os_str(), dest.as_os_str());
    let os = OsStr::new;
    for args in [
        vec![os("read"), os("-q"), path, os("-C"), dest, os("r/d")],
        vec![os("cat"), path, os("r/d/l")],
        vec![os("list"), os("-l"), path, os("r/d")],
    ] {
        match gnu_time() {
            Some(time) => {
                let (run, peak) = arc_measured(time, &args, &[]);
                run.refused("corrupt archive");
                let bound = bound(archive.len() as u64);
                assert!(
                    peak <= bound,
                    "`{}` peaked at {} MiB (bound {} MiB)",
                    run.command,
                    peak >> 20,
                    bound >> 20
                );
            }
            None => {
                run(Command::new(ARC).args(&args)).refused("corrupt archive");
            }
        };
    }
    assert!(scene.dest_tree().is_empty());
}
