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
