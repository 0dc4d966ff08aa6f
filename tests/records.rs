//! The records of the data region (FORMAT.md §3.2): what the writer puts before each block is
//! exactly what the index says, at every kind of block boundary, and `verify` names a record
//! that disagrees.

use std::fs;

use crate::support::harness::index_of;
use crate::support::{format, pseudo_random, TestEnv};

const BLOCK: usize = 64 << 10;

/// A tree whose entries fall on every kind of boundary between blocks of 64 KiB: a file that
/// ends exactly at a block's end followed by entries without bytes, a file that spans blocks,
/// a file that starts a block, and a trailing directory after the last byte.
fn boundary_tree(env: &TestEnv) {
    env.file("t/a-full", pseudo_random(BLOCK, 1));
    env.file("t/b-empty", "");
    env.mkdir("t/c-dir/inner");
    env.file("t/c-dir/inner/d-empty", "");
    env.file("t/e-spans", pseudo_random(3 * BLOCK + 17, 2));
    env.file("t/f-small", "small\n");
    env.file("t/g-rest", pseudo_random(BLOCK - 17 - 6, 3));
    env.file("t/h-next", "starts a block\n");
    env.mkdir("t/z-last");
    std::os::unix::fs::symlink("a-full", env.path("t/z-link")).expect("symlink");
}

#[test]
fn the_records_written_are_the_records_of_the_index() {
    let env = TestEnv::new();
    boundary_tree(&env);
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "x.arc", "t"]).success();
    let archive = fs::read(env.path("x.arc")).expect("reading the archive");
    let index = index_of(&env.path("x.arc"));
    assert!(index.blocks.len() >= 5, "{} blocks", index.blocks.len());
    // What the index says the records are, made again, byte for byte where they lie.
    let expected = format::encode_records(&index, 3).expect("encoding the records");
    assert_eq!(expected.len(), index.blocks.len() + 1);
    let mut at = format::HEADER_LEN as usize;
    for (r, record) in expected.iter().enumerate() {
        assert_eq!(&archive[at..at + record.len()], &record[..], "record {r}");
        at += record.len();
        if let Some(block) = index.blocks.get(r) {
            assert_eq!((at as u64, record.len() as u64), (block.offset, block.record_len));
            at += block.len as usize;
        }
    }
    // Every entry is in exactly one record, in order; with data, the final one holds none.
    let ranges: Vec<_> = index.records().map(|(_, range)| range).collect();
    assert_eq!(ranges.first().map(|r| r.start), Some(0));
    assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
    assert_eq!(ranges.last().map(|r| (r.start, r.end)), Some((index.entries.len(), index.entries.len())));
    // The empty entries after the full block are in its record, not the next one's.
    let (_, first) = index.record(0);
    let names: Vec<&[u8]> = first.clone().map(|e| index.name(e)).collect();
    assert_eq!(names, [&b"t"[..], b"a-full", b"b-empty", b"c-dir", b"inner", b"d-empty"]);
    env.arc(["verify", "-q", "x.arc"]).success();
}

#[test]
fn an_archive_without_data_has_one_record_holding_everything() {
    let env = TestEnv::new();
    env.mkdir("t/a/b");
    env.file("t/empty", "");
    env.arc(["write", "-q", "-o", "x.arc", "t"]).success();
    let index = index_of(&env.path("x.arc"));
    assert!(index.blocks.is_empty());
    let records: Vec<_> = index.records().collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1, 0..index.entries.len());
    env.arc(["verify", "-q", "x.arc"]).success();
}

#[test]
fn verify_names_a_record_that_disagrees_with_the_index_and_read_does_not_need_it() {
    let env = TestEnv::new();
    boundary_tree(&env);
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "x.arc", "t"]).success();
    let mut archive = fs::read(env.path("x.arc")).expect("reading the archive");
    let index = index_of(&env.path("x.arc"));
    // Record 1, rewritten with a checksum that matches and a head that lies.
    let block = index.blocks[1];
    let at = (block.offset - block.record_len) as usize;
    let (mut head, cbor) = {
        let (head, cbor) = format::decode_record(&archive[at..block.offset as usize]).expect("a record");
        (head, cbor.to_vec())
    };
    head.data_offset += 1;
    let lying = format::encode_record(&head, &cbor);
    assert_eq!(lying.len() as u64, block.record_len);
    archive[at..block.offset as usize].copy_from_slice(&lying);
    fs::write(env.path("x.arc"), &archive).expect("writing the archive");
    let run = env.arc(["verify", "x.arc"]);
    run.code(2);
    assert!(run.stderr.contains("record before block 1: its data offset is"), "{}", run.describe());
    assert!(run.stderr.contains("1 of 7 records damaged"), "{}", run.describe());
    // The index is the authority for a file: read takes the archive whole, exactly.
    env.arc(["read", "-q", "-C", "out", "x.arc"]).success();
    for name in ["a-full", "e-spans", "g-rest", "h-next"] {
        assert_eq!(fs::read(env.path("out/t").join(name)).ok(), fs::read(env.path("t").join(name)).ok());
    }
}

/// A tree of `count` files of 0 to 40 KiB (pseudo-random, so blocks do not shrink much),
/// written in blocks of 64 KiB: many files a block, some spanning blocks.
fn salvage_tree(env: &TestEnv, count: usize) -> Vec<u8> {
    for i in 0..count {
        let len = (i * 7919) % (40 << 10);
        env.file(format!("t/d{}/f{i:04}", i % 7), pseudo_random(len, i as u64));
    }
    std::os::unix::fs::symlink("d1/f0001", env.path("t/link")).expect("symlink");
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "x.arc", "t"]).success();
    fs::read(env.path("x.arc")).expect("reading the archive")
}

/// Every file under `out/t` is the one under `t`, byte for byte; how many there are.
fn recovered_files(env: &TestEnv) -> usize {
    let mut count = 0;
    for entry in walkdir(&env.path("out/t")) {
        let rel = entry.strip_prefix(env.path("out")).expect("inside out");
        assert_eq!(fs::read(&entry).ok(), fs::read(env.path(rel)).ok(), "{} differs", rel.display());
        count += 1;
    }
    count
}

fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(read) = fs::read_dir(&dir) else { continue };
        for entry in read.flatten() {
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

#[test]
fn salvage_recovers_every_file_whose_blocks_are_before_the_cut() {
    let env = TestEnv::new();
    let archive = salvage_tree(&env, 120);
    let index = index_of(&env.path("x.arc"));
    let len = archive.len();
    for k in 1..=9 {
        let cut = len * k / 10;
        fs::write(env.path("cut.arc"), &archive[..cut]).expect("writing the cut archive");
        // Without --salvage nothing is written, and the error says what to do.
        let run = env.arc(["read", "-q", "-C", "out", "cut.arc"]);
        run.code(2);
        assert!(run.stderr.contains("arc read --salvage would recover"), "{}", run.describe());
        assert!(!env.path("out/t").exists());
        let run = env.arc(["read", "-q", "--salvage", "-C", "out", "cut.arc"]);
        run.code(2);
        assert!(run.stderr.contains("damaged archive: recovered"), "{}", run.describe());
        let got = recovered_files(&env);
        // Every file whose blocks all end before the cut is there.
        let before = (0..index.entries.len())
            .filter(|&i| matches!(index.entries[i].kind(), format::Kind::File { .. }))
            .filter(|&i| {
                index.blocks_of(i).all(|b| (index.blocks[b].offset + index.blocks[b].len) as usize <= cut)
            })
            .count();
        assert!(got >= before, "cut at {cut}: {got} files recovered, {before} lie before it");
        assert!(crate::support::temp_files(&env.path("out")).is_empty());
        // verify says as much.
        let run = env.arc(["verify", "cut.arc"]);
        run.code(2);
        assert!(run.stderr.contains("arc read --salvage would recover"), "{}", run.describe());
        fs::remove_dir_all(env.path("out")).expect("clearing out");
    }
}

#[test]
fn salvage_of_a_sound_archive_is_a_plain_read() {
    let env = TestEnv::new();
    salvage_tree(&env, 30);
    env.arc(["read", "-q", "--salvage", "-C", "out", "x.arc"]).success();
    assert_eq!(recovered_files(&env), 30);
}

#[test]
fn salvage_leaves_out_the_files_of_a_damaged_block_and_names_them() {
    let env = TestEnv::new();
    let mut archive = salvage_tree(&env, 60);
    let index = index_of(&env.path("x.arc"));
    let block = index.blocks[2];
    let hit: Vec<String> = index
        .files_in(2)
        .map(|p| String::from_utf8_lossy(&index.path(p.entry as usize)).into_owned())
        .collect();
    archive[(block.offset + block.len / 2) as usize] ^= 1;
    // From a pipe, verify names the same block's entries as from the file.
    let run = env.arc_fed(&archive, ["verify", "-"]);
    run.code(2);
    assert!(run.stderr.contains(&format!("arc: damaged: {}", hit[0])), "{}", run.describe());
    assert!(run.stderr.contains("1 of"), "{}", run.describe());
    for (case, bytes) in
        [("index intact", archive.clone()), ("index lost", archive[..archive.len() - 10].to_vec())]
    {
        fs::write(env.path("bad.arc"), &bytes).expect("writing the damaged archive");
        let run = env.arc(["read", "-q", "--salvage", "-C", "out", "bad.arc"]);
        run.code(2);
        for path in &hit {
            assert!(
                run.stderr.contains(&format!("arc: lost: {path}: its data is damaged")),
                "{case}: {}",
                run.describe()
            );
            assert!(!env.path("out").join(path).exists(), "{case}: {path} was written");
        }
        assert_eq!(recovered_files(&env), 60 - hit.len(), "{case}");
        fs::remove_dir_all(env.path("out")).expect("clearing out");
    }
}

/// `arc write -o - | arc read -`: through a real pipe between two processes, the tree comes
/// back exactly (contents, modes, ns mtimes, symlinks, hard links, empty directories), as from
/// the file.
#[test]
fn a_pipe_reads_back_exactly_as_the_file() {
    let env = TestEnv::new();
    boundary_tree(&env);
    env.file("t/hard-a", "linked\n");
    fs::hard_link(env.path("t/hard-a"), env.path("t/hard-b")).expect("hard link");
    env.mkdir("t/empty-dir");
    let script = format!(
        "set -e; '{arc}' write -q --block-size 64KiB -o - t | '{arc}' read -q - -C piped",
        arc = crate::support::ARC
    );
    let run =
        crate::support::run(std::process::Command::new("sh").arg("-c").arg(&script).current_dir(env.root()));
    assert_eq!(run.code, 0, "{}", run.describe());
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "x.arc", "t"]).success();
    env.arc(["read", "-q", "x.arc", "-C", "filed"]).success();
    crate::support::assert_same_tree(&env.path("t"), &env.path("piped/t"));
    crate::support::assert_same_tree(&env.path("filed/t"), &env.path("piped/t"));
    let piped = fs::metadata(env.path("piped/t/hard-a")).expect("stat");
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&piped), 2);
    // list and verify from a pipe say what they say of the file.
    let archive = fs::read(env.path("x.arc")).expect("reading the archive");
    for args in [&["list"][..], &["list", "-l"], &["list", "--json"]] {
        let filed = env.arc(args.iter().copied().chain(["x.arc"])).success().stdout.clone();
        let piped = env.arc_fed(&archive, args.iter().copied().chain(["-"])).success().stdout.clone();
        assert_eq!(filed, piped, "{args:?}");
    }
    env.arc_fed(&archive, ["verify", "-"]).success();
}

#[test]
fn a_stream_cut_short_is_an_error_and_leaves_no_half_written_file() {
    let env = TestEnv::new();
    let archive = salvage_tree(&env, 60);
    for k in 1..=4 {
        let cut = archive.len() * k / 5;
        let run = env.arc_fed(&archive[..cut], ["read", "-q", "-", "-C", "out"]);
        run.code(2);
        assert!(run.stderr.contains("truncated archive"), "{}", run.describe());
        assert!(crate::support::temp_files(&env.path("out")).is_empty(), "cut at {cut}");
        // What was written is whole.
        recovered_files(&env);
        let _ = fs::remove_dir_all(env.path("out"));
        env.arc_fed(&archive[..cut], ["verify", "-"]).code(2);
        env.arc_fed(&archive[..cut], ["list", "-"]).code(2);
    }
}

/// The record before the first block of `archive` with `from` replaced by `to` in its
/// entries, its checksum made true again; and where the record it replaces lies.
pub(crate) fn patched_record(
    archive: &[u8],
    index: &format::Index,
    from: &[u8],
    to: &[u8],
) -> (usize, usize, Vec<u8>) {
    let block = index.blocks[0];
    let (at, end) = ((block.offset - block.record_len) as usize, block.offset as usize);
    let (head, cbor_frame) = format::decode_record(&archive[at..end]).expect("a record");
    let mut cbor = zstd::bulk::decompress(cbor_frame, head.cbor_len as usize).expect("the entries");
    crate::support::patch(&mut cbor, from, to);
    (at, end, format::encode_record(&head, &crate::support::compress(&cbor)))
}

#[test]
fn a_stream_whose_records_and_index_disagree_is_an_error_at_its_end() {
    let env = TestEnv::new();
    env.file("t/a", "one\n");
    env.file("t/b", "two\n");
    env.arc(["write", "-q", "-o", "x.arc", "t"]).success();
    let mut archive = fs::read(env.path("x.arc")).expect("reading the archive");
    let index = index_of(&env.path("x.arc"));
    // The record before the first block names `b` as `c`, its checksum made true again; the
    // index still says `b`.
    let (at, end, record) = patched_record(&archive, &index, b"\x01b", b"\x01c");
    // The index made again with the record's new length: a file reader finds its blocks.
    let mut index_record = index.clone().into_record();
    index_record.blocks.records[0] = record.len() as u64;
    let mut region = archive[format::HEADER_LEN as usize..crate::support::index_offset(&archive)].to_vec();
    region.splice(at - format::HEADER_LEN as usize..end - format::HEADER_LEN as usize, record);
    archive = crate::support::assemble_exactly(&region, &index_record);
    let run = env.arc_fed(&archive, ["read", "-q", "-", "-C", "out"]);
    run.code(2);
    assert!(
        run.stderr.contains("the index at the end does not say what the records said"),
        "{}",
        run.describe()
    );
    // The file reader goes by the index, and verify names the record.
    fs::write(env.path("lie.arc"), &archive).expect("writing");
    env.arc(["read", "-q", "lie.arc", "-C", "filed"]).success();
    assert!(env.path("filed/t/b").exists());
    let run = env.arc(["verify", "lie.arc"]);
    run.code(2);
    assert!(
        run.stderr.contains("record before block 0: its entries are not the index's"),
        "{}",
        run.describe()
    );
}

#[test]
fn a_record_naming_a_path_out_of_dest_is_refused_before_it_is_written() {
    let env = TestEnv::new();
    env.file("t/aa", "one\n");
    env.arc(["write", "-q", "-o", "x.arc", "t"]).success();
    let mut archive = fs::read(env.path("x.arc")).expect("reading the archive");
    let index = index_of(&env.path("x.arc"));
    let (at, end, record) = patched_record(&archive, &index, b"\x02aa", b"\x02..");
    // Its length may differ: a stream is read by its records, the index only checked at the end.
    archive.splice(at..end, record);
    let run = env.arc_fed(&archive, ["read", "-q", "-", "-C", "out/in"]);
    run.code(2);
    assert!(run.stderr.contains("invalid entry name '..'"), "{}", run.describe());
    assert!(!env.path("out/in/t").exists(), "nothing of the record is written");
    assert!(!env.path("out/aa").exists());
}

#[test]
fn a_selective_read_from_a_pipe_takes_what_the_file_gives() {
    let env = TestEnv::new();
    boundary_tree(&env);
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "x.arc", "t"]).success();
    let archive = fs::read(env.path("x.arc")).expect("reading the archive");
    for (k, selection) in [
        &["t/c-dir"][..],
        &["t/e-spans", "t/z-link"],
        &["--glob", "**/d-*"],
        &["--glob", "t/*-small", "t/h-next"],
    ]
    .into_iter()
    .enumerate()
    {
        let (filed, piped) = (format!("filed{k}"), format!("piped{k}"));
        let file_args =
            ["read", "-q", "x.arc", "-C", filed.as_str()].into_iter().chain(selection.iter().copied());
        env.arc(file_args).success();
        let pipe_args =
            ["read", "-q", "-", "-C", piped.as_str()].into_iter().chain(selection.iter().copied());
        env.arc_fed(&archive, pipe_args).success();
        crate::support::assert_same_tree(&env.path(&filed).join("t"), &env.path(&piped).join("t"));
    }
    // A PATH that is not there is an error, as from the file.
    let run = env.arc_fed(&archive, ["read", "-q", "-", "-C", "none", "t/nothing"]);
    run.code(2);
    assert!(run.stderr.contains("t/nothing is not in the archive"), "{}", run.describe());
}

#[test]
fn cat_from_a_pipe_writes_the_files_in_the_archives_order() {
    let env = TestEnv::new();
    boundary_tree(&env);
    // A sparse file: holes before, between and after its data.
    let sparse = fs::File::create(env.path("t/s-sparse")).expect("create");
    sparse.set_len(3 << 20).expect("set_len");
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"island", 1 << 20).expect("write");
    drop(sparse);
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "x.arc", "t"]).success();
    let archive = fs::read(env.path("x.arc")).expect("reading the archive");
    let cat = |args: &[&str]| env.arc(["cat", "x.arc"].iter().chain(args)).success().stdout.clone();
    let piped =
        |args: &[&str]| env.arc_fed(&archive, ["cat", "-"].iter().chain(args)).success().stdout.clone();
    assert_eq!(piped(&["t"]), cat(&["t"]));
    assert_eq!(piped(&["t/s-sparse"]), fs::read(env.path("t/s-sparse")).expect("read"));
    // Two PATHs given out of order come in the archive's order, as from `tar -xOf -`.
    assert_eq!(piped(&["t/h-next", "t/e-spans"]), cat(&["t/e-spans", "t/h-next"]));
    let run = env.arc_fed(&archive, ["cat", "-", "t/z-link"]);
    run.code(2);
    assert!(run.stderr.contains("is a symlink"), "{}", run.describe());
}

/// An entry left out (a socket) whose owner has a name: the index must not name more owners
/// than the records do, or a stream of an honest archive would not match its index. (Found by
/// fuzzing, with an index naming an owner no entry has.)
#[test]
fn an_owner_only_a_socket_had_is_in_neither_records_nor_index() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("note: skipped: giving a socket to another user needs root");
        return;
    }
    let env = TestEnv::new();
    env.file("t/a", "one\n");
    let socket = std::os::unix::net::UnixListener::bind(env.path("t/sock")).expect("a socket");
    // `nobody` has a name on every Debian system.
    rustix::fs::chown(env.path("t/sock"), Some(rustix::fs::Uid::from_raw(65534)), None).expect("chown");
    env.arc(["write", "-q", "-o", "x.arc", "t"]).success();
    drop(socket);
    let index = index_of(&env.path("x.arc"));
    assert!(index.tables.users.iter().all(|(id, _)| *id != 65534), "{:?}", index.tables.users);
    let archive = fs::read(env.path("x.arc")).expect("reading the archive");
    env.arc_fed(&archive, ["read", "-q", "-", "-C", "out"]).success();
    env.arc(["verify", "-q", "x.arc"]).success();
}
