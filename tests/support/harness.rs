//! arc's library run in-process: the checks the fuzz targets run, and the calls tests make
//! without the binary. The fuzz crate includes this file (with craft.rs, scene.rs and tree.rs)
//! from fuzz/src/lib.rs, and the `fuzz_corpus` tests replay the committed corpus through the
//! same checks, so `cargo test` runs them on stable Rust.
//!
//! An input's first byte says how the rest is read:
//!
//! - `first % 3 == 0`: an archive, byte for byte;
//! - `first % 3 == 1`: an unpacked archive, `u32 LE n | n bytes of CBOR index | block region`.
//!   The harness writes the real checksums of the region's blocks into the index and builds a
//!   valid trailer, so the fuzzer's changes to the index meet arc's structural checks rather
//!   than a checksum mismatch;
//! - `first % 3 == 2`: `u32 LE n | n bytes of CBOR index | data stream`. The harness compresses
//!   the data into the blocks the index declares (keeping the declared lengths, lies included)
//!   and fills in frame lengths and checksums.
//!
//! For `read`, `first / 3` also picks options: bit 0 `--same-permissions`, bit 1 two threads,
//! bits 2 and 3 a second extraction into the same DEST (none, refuse, `--overwrite`,
//! `--keep-existing`), which is how one archive can meet what an earlier one left.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use arc::format::{Index, Kind};
pub use arc::read::Existing;
use arc::{archive::Archive, stop::Stop, Outcome};
use camino::Utf8PathBuf;

use super::craft::{self, assemble, assemble_cbor, compress, format, IndexRecord, HEADER_LEN, TRAILER_LEN};
use super::scene::Scene;
use super::tree::{paths_under, temp_files};

/// Frames the harness compresses itself hold at most this much, whatever the index declares.
const MAX_HARNESS_BLOCK: u64 = 1 << 20;
/// Blocks the harness builds or re-hashes, at most.
const MAX_HARNESS_BLOCKS: usize = 4096;

/// `path` as camino wants it (test paths are UTF-8).
fn utf8(path: &Path) -> Utf8PathBuf {
    Utf8PathBuf::from_path_buf(path.to_owned()).expect("UTF-8 temp path")
}

/// Opens `archive` as list, read and verify do.
pub fn open(archive: &Path) -> anyhow::Result<Archive> {
    Archive::open(&utf8(archive))
}

/// The index of `archive`, which must open.
pub fn index_of(archive: &Path) -> Index {
    open(archive).expect("opening the archive").index
}

/// `arc read -q ARCHIVE -C DEST` in-process: one thread (two if `two_threads`), everything
/// selected.
pub fn read_in_process(
    archive: &Path,
    dest: &Path,
    existing: Existing,
    same_permissions: bool,
    two_threads: bool,
) -> anyhow::Result<Outcome> {
    let options = arc::read::ReadOptions {
        archive: utf8(archive),
        dest: utf8(dest),
        paths: Vec::new(),
        globs: Vec::new(),
        threads: if two_threads { 2 } else { 1 },
        verbose: false,
        quiet: true,
        existing,
        same_permissions,
        strip_components: 0,
        salvage: false,
        owners: arc::read::Owners::ByName,
    };
    arc::read::run(&options, &Stop::default())
}

/// `arc verify -q -j1 ARCHIVE` in-process.
pub fn verify_in_process(archive: &Path) -> anyhow::Result<()> {
    let options = arc::verify::VerifyOptions { archive: utf8(archive), threads: 1, quiet: true };
    arc::verify::run(&options, &Stop::default())
}

/// The bytes of the archive an input stands for (see the module documentation).
pub fn archive_from_input(first: u8, rest: &[u8]) -> Vec<u8> {
    match first % 3 {
        0 => rest.to_vec(),
        mode => {
            let Some((cbor, tail)) = split(rest) else { return rest.to_vec() };
            unpacked_archive(cbor, tail, mode == 2)
        }
    }
}

fn split(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let cbor = rest.get(4..4usize.checked_add(len)?)?;
    Some((cbor, &rest[4 + len..]))
}

fn unpacked_archive(cbor: &[u8], tail: &[u8], compress_data: bool) -> Vec<u8> {
    let mut budget = fuzz_budget();
    let record = format::decode_cbor(cbor, format::VERSION, &mut budget).and_then(|p| p.record(&mut budget));
    let Ok(mut record) = record else {
        // Not an index: still worth a trip through the trailer and the index decoder.
        return assemble_cbor(tail, cbor);
    };
    let region = if compress_data && record.blocks.raw_lens.len() <= MAX_HARNESS_BLOCKS {
        let mut region = Vec::new();
        let mut lens = Vec::new();
        let mut data = tail;
        for &raw_len in &record.blocks.raw_lens {
            let take = raw_len.min(MAX_HARNESS_BLOCK).min(data.len() as u64) as usize;
            let frame = compress(&data[..take]);
            data = &data[take..];
            lens.push(frame.len() as u64);
            region.extend_from_slice(&frame);
        }
        record.blocks.lens = lens;
        record.blocks.hashes.resize(record.blocks.raw_lens.len(), 0);
        // New frames: `assemble` puts records between them.
        record.blocks.records = vec![0; record.blocks.raw_lens.len() + 1];
        region
    } else {
        tail.to_vec()
    };
    // The real checksum of every block the index places inside the region.
    let mut at = 0u64;
    let blocks = &mut record.blocks;
    let records = blocks.records.iter().chain(std::iter::repeat(&0));
    for ((len, hash), record_len) in
        blocks.lens.iter().zip(blocks.hashes.iter_mut()).zip(records).take(MAX_HARNESS_BLOCKS)
    {
        at = at.saturating_add(*record_len);
        let end = at.saturating_add(*len);
        if let Some(frame) = region.get(at as usize..end.min(usize::MAX as u64) as usize) {
            *hash = format::block_hash(frame);
        }
        at = end;
    }
    assemble(&region, &record)
}

/// Turns a real archive into inputs of each kind: `(name suffix, input)`.
pub fn inputs_from_archive(archive: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut inputs = vec![("raw", [&[0u8][..], archive].concat())];
    let Some((record, region)) = parse(archive) else { return inputs };
    let cbor = craft::cbor(&record);
    let unpacked = |first: u8, tail: &[u8]| {
        let mut input = vec![first];
        input.extend_from_slice(&(cbor.len() as u32).to_le_bytes());
        input.extend_from_slice(&cbor);
        input.extend_from_slice(tail);
        input
    };
    inputs.push(("frames", unpacked(1, region)));
    let mut data = Vec::new();
    let mut at = 0usize;
    let blocks = &record.blocks;
    for ((&len, &raw_len), &record_len) in blocks.lens.iter().zip(&blocks.raw_lens).zip(&blocks.records) {
        at += record_len as usize;
        let frame = &region[at..at + len as usize];
        data.extend_from_slice(&zstd::bulk::decompress(frame, raw_len as usize).expect("a valid block"));
        at += len as usize;
    }
    inputs.push(("data", unpacked(2, &data)));
    inputs
}

/// The index record and block region of an archive, if its trailer and index decode.
fn parse(archive: &[u8]) -> Option<(IndexRecord, &[u8])> {
    let len = archive.len() as u64;
    let trailer = craft::trailer(archive)?;
    let index_offset = trailer.index_offset(len);
    let frame = archive.get(index_offset as usize..(len - TRAILER_LEN) as usize)?;
    let mut budget = fuzz_budget();
    let packed = format::decode_index(frame, trailer.index_raw_len, version(archive), &mut budget).ok()?;
    let record = packed.record(&mut budget).ok()?;
    Some((record, archive.get(HEADER_LEN as usize..index_offset as usize)?))
}

/// The `index` target: the parsers never panic, and whatever `Index::from_record` accepts is
/// consistent. Returns whether an index was built.
pub fn check_index(data: &[u8]) -> bool {
    let Some((&first, rest)) = data.split_first() else { return false };
    if first % 2 == 0 {
        // A whole archive. The checksum is checked but not required, so that the fuzzer's
        // changes reach the decoder.
        let version = format::decode_header(rest).unwrap_or(format::VERSION);
        let Some(trailer) = craft::trailer(rest) else { return false };
        let index_offset = trailer.index_offset(rest.len() as u64);
        let frame = &rest[index_offset as usize..rest.len() - TRAILER_LEN as usize];
        let _ = trailer.check(frame);
        let mut budget = fuzz_budget();
        let Ok(packed) = format::decode_index(frame, trailer.index_raw_len, version, &mut budget) else {
            return false;
        };
        check_packed(&packed, index_offset, &mut budget)
    } else {
        // CBOR alone, compressed here so that the fuzzer works on the index's own bytes.
        let frame = compress(rest);
        let mut budget = fuzz_budget();
        let Ok(packed) = format::decode_index(&frame, rest.len() as u64, format::VERSION, &mut budget) else {
            return false;
        };
        // The frame changes nothing.
        assert_eq!(format::decode_cbor(rest, format::VERSION, &mut fuzz_budget()).as_ref(), Ok(&packed));
        let Ok(record) = packed.record(&mut fuzz_budget()) else {
            // A value the columns' encoding refuses: the index is refused too.
            assert!(format::Index::from_packed(&packed, HEADER_LEN, &mut budget, format::Keep::All).is_err());
            return false;
        };
        // Serializing and parsing again gives the same record.
        let (again, raw_len) = format::encode_index(&record, 1).expect("encoding an index");
        let back = format::decode_index(&again, raw_len, format::VERSION, &mut fuzz_budget())
            .and_then(|p| p.record(&mut fuzz_budget()));
        assert_eq!(back.as_ref(), Ok(&record));
        // Where the blocks end if they are laid out as declared, so that the tiling check can
        // pass and the rest of the index is checked too.
        let blocks = &record.blocks;
        let data_end =
            blocks.lens.iter().chain(&blocks.records).fold(HEADER_LEN, |end, &len| end.saturating_add(len));
        check_packed(&packed, data_end, &mut budget)
    }
}

/// The format version an archive's header declares (the current one if it declares none).
fn version(archive: &[u8]) -> u16 {
    format::decode_header(archive).unwrap_or(format::VERSION)
}

/// The budget the harness parses indexes with: what a 1 MiB archive may use, so that an input
/// cannot make the fuzzer itself allocate gigabytes.
fn fuzz_budget() -> format::Budget {
    format::Budget::for_archive(1 << 20)
}

fn check_packed(packed: &format::Packed, data_end: u64, budget: &mut format::Budget) -> bool {
    let budget_for_some = *budget;
    let whole = Index::from_packed(packed, data_end, budget, format::Keep::All);
    // An index of some entries (the subtree of each entry of a small index, of the middle one
    // of a large one, with what it needs) is refused exactly when the whole one is, and
    // agrees with it.
    let tree = format::Tree::unchecked(packed);
    let roots = match tree.len() {
        0..=32 => 0..tree.len(),
        len => len / 2..len / 2 + 1,
    };
    for root in roots {
        let keep = tree.keep(&[root], usize::MAX).expect("no limit");
        let mut budget = budget_for_some;
        let some = Index::from_packed(packed, data_end, &mut budget, format::Keep::Only(&keep));
        if let Ok(whole) = &whole {
            // Found by its path first, the walk for what to keep starts at the root: the same.
            let path = whole.path(root);
            let components: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
            let tree = format::Tree::unchecked(packed);
            assert_eq!(tree.find(&components), Some(root), "the path of {root}");
            assert_eq!(tree.keep(&[root], usize::MAX).as_deref(), Some(keep.as_slice()), "kept for {root}");
        }
        match (&whole, some) {
            (Ok(whole), Ok(some)) => check_some(whole, &some, &keep, root),
            (Err(a), Err(b)) => assert_eq!(a, &b),
            (whole, some) => panic!("the whole index: {whole:?}; some of it: {some:?}"),
        }
    }
    match whole {
        Ok(index) => {
            check_invariants(&index, data_end);
            true
        }
        Err(_) => false,
    }
}

/// `some` is `whole` built with the entries `keep` only (their numbers in `whole`), for the
/// subtree of `root`: each kept entry as it is in the whole index, under its new number.
fn check_some(whole: &Index, some: &Index, keep: &[u32], root: usize) {
    let old = |new: u32| keep[new as usize];
    let end = whole.subtree_end(root);
    assert!((root..end).all(|i| keep.binary_search(&(i as u32)).is_ok()), "the subtree of {root} is kept");
    assert_eq!(some.entries.len(), keep.len());
    assert_eq!(some.blocks, whole.blocks);
    for (new, &o) in keep.iter().enumerate() {
        let o = o as usize;
        let (a, b) = (&whole.entries[o], &some.entries[new]);
        assert_eq!(whole.name(o), some.name(new));
        assert_eq!((a.mode, a.mtime, a.uid, a.gid, a.depth), (b.mode, b.mtime, b.uid, b.gid, b.depth));
        assert_eq!(a.parent(), b.parent().map(old), "the parent of entry {o}");
        // Above a kept entry, every directory is kept.
        assert!(a.parent().map_or(true, |p| keep.binary_search(&p).is_ok()));
        match (a.kind(), b.kind()) {
            (Kind::HardLink { target: t }, Kind::HardLink { target: u }) => assert_eq!(t, old(u)),
            (Kind::Symlink { .. }, Kind::Symlink { .. }) => assert_eq!(whole.target(o), some.target(new)),
            (x, y) => assert_eq!(x, y),
        }
        assert_eq!(whole.span(o), some.span(new), "where entry {o}'s bytes lie");
        assert_eq!(whole.extents(o), some.extents(new));
        assert_eq!(whole.xattrs(o), some.xattrs(new));
        for b in some.blocks_of(new) {
            // Each block's pieces are the whole index's pieces of the files kept.
            let pieces: Vec<_> = some.files_in(b).map(|p| (old(p.entry), p.start_in_block, p.len)).collect();
            assert!(pieces.iter().any(|&(e, ..)| e as usize == o));
            let expected: Vec<_> = whole
                .files_in(b)
                .filter(|p| keep.binary_search(&p.entry).is_ok())
                .map(|p| (p.entry, p.start_in_block, p.len))
                .collect();
            assert_eq!(pieces, expected, "the pieces of block {b}");
        }
    }
    assert_eq!(arc::select::find(some, &whole.path(root)), keep.binary_search(&(root as u32)).ok());
}

/// What list, read and verify rely on, for an index `from_record` accepted.
pub fn check_invariants(index: &Index, data_end: u64) {
    let entries = &index.entries;
    assert!(!entries.is_empty());
    let mut offset = 0u64;
    for (i, entry) in entries.iter().enumerate() {
        let name = index.name(i);
        assert!(!name.is_empty() && name != b"." && name != b"..", "entry {i}: name {name:?}");
        assert!(!name.contains(&b'/') && !name.contains(&0) && name.len() <= format::MAX_NAME_LEN);
        assert!(u32::from(entry.depth) <= format::MAX_DEPTH);
        match entry.parent() {
            None => assert_eq!(entry.depth, 0),
            Some(p) => {
                let parent = &entries[p as usize];
                assert!((p as usize) < i && parent.kind() == Kind::Dir && parent.depth + 1 == entry.depth);
            }
        }
        // Siblings strictly sorted: the previous entry with the same parent sorts first.
        if let Some(prev) = (0..i).rev().find(|&p| entries[p].depth <= entry.depth) {
            if entries[prev].depth == entry.depth {
                assert_eq!(entries[prev].parent(), entry.parent());
                assert!(index.name(prev) < name, "{:?} then {name:?}", index.name(prev));
            }
        }
        let end = index.subtree_end(i);
        assert!(end > i && entries[i + 1..end].iter().all(|e| e.depth > entry.depth));
        match &entry.kind() {
            &Kind::File { size } if index.copy_source(i).is_some() => {
                // A copy: its source's bytes, of its size; nothing of its own in the stream.
                let source = index.copy_source(i).unwrap_or_default() as usize;
                assert!(source < i && index.copy_source(source).is_none() && index.extents(i).is_none());
                assert_eq!((index.entries[source].size(), index.span(i)), (size, index.span(source)));
                assert!(size > 0 && index.extents(source).is_none());
                assert!(index.copies_of(source as u32).any(|c| c as usize == i));
                for b in index.blocks_of(i) {
                    assert!(index.files_in(b).any(|piece| piece.entry as usize == i));
                }
            }
            &Kind::File { size } => {
                let (start, stored) = index.span(i).unwrap_or((offset, 0));
                assert_eq!(start, offset);
                assert_eq!(stored, index.stored(i));
                offset += stored;
                match index.extents(i) {
                    None => assert_eq!(stored, size),
                    Some(extents) => {
                        assert_eq!(extents.iter().map(|x| x.len).sum::<u64>(), stored);
                        assert!(extents.windows(2).all(|w| w[0].offset + w[0].len <= w[1].offset));
                        assert!(extents.last().map_or(true, |x| x.offset + x.len <= size));
                    }
                }
                for b in index.blocks_of(i) {
                    let block = &index.blocks[b];
                    assert!(block.raw_offset < start + stored);
                    assert!(start < block.raw_offset + block.raw_len);
                    // The block->files lookup finds the file in each of its blocks.
                    assert!(index.files_in(b).any(|piece| piece.entry as usize == i));
                }
            }
            Kind::Dir | Kind::Fifo | Kind::CharDevice { .. } | Kind::BlockDevice { .. } => {}
            Kind::Symlink { .. } => {
                let target = index.target(i);
                assert!(!target.is_empty() && !target.contains(&0));
            }
            &Kind::HardLink { target } => {
                assert!((target as usize) < i && matches!(entries[target as usize].kind(), Kind::File { .. }))
            }
        }
    }
    assert_eq!(offset, index.data_len());
    let mut at = HEADER_LEN;
    let mut raw = 0;
    for block in &index.blocks {
        at += block.record_len;
        assert_eq!((block.offset, block.raw_offset), (at, raw));
        assert!(block.len > 0 && block.raw_len > 0 && block.raw_len <= format::MAX_BLOCK_RAW);
        at += block.len;
        raw += block.raw_len;
    }
    assert_eq!(at + index.final_record, data_end);
    // Serialized again, an index is version 2, which stores owners (version 1's read as 0).
    let mut expected = index.clone();
    expected.tables.owners = true;
    assert_eq!(Index::from_record(index.clone().into_record(), data_end), Ok(expected));
    if entries.len() <= 500 {
        for i in 0..entries.len() {
            assert_eq!(arc::select::find(index, &index.path(i)), Some(i), "path {:?}", lossy(&index.path(i)));
        }
    }
}

/// The paths of an archive's entries as they would be beneath DEST; `None` if it does not
/// open (then arc must not create anything at all).
fn entry_paths(archive: &Path) -> Option<BTreeSet<String>> {
    let index = open(archive).ok()?.index;
    Some((0..index.entries.len()).map(|i| lossy(&index.path(i))).collect())
}

/// A path as [`paths_under`] gives it.
fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// DEST holds only entries of the archive: no temporary file, nothing anywhere else.
fn assert_only_entries(dest: &Path, entries: Option<&BTreeSet<String>>) {
    let found: BTreeSet<String> = paths_under(dest).into_iter().collect();
    let empty = BTreeSet::new();
    let strays: Vec<&String> = found.difference(entries.unwrap_or(&empty)).collect();
    assert!(strays.is_empty(), "DEST holds what is not in the archive: {strays:?}");
}

/// The `read` target: a whole extraction into DEST, in a [`Scene`] with a sentinel file and
/// directory beside DEST. Nothing outside DEST may change or appear; DEST may hold nothing
/// but the archive's entries (no temporary file; nothing at all if the archive does not
/// open); and an extraction that succeeds must have produced exactly the archive's entries.
/// Returns whether it succeeded.
pub fn check_read(data: &[u8]) -> bool {
    let Some((&first, rest)) = data.split_first() else { return false };
    let flags = first / 3;
    let (same_permissions, two_threads) = (flags & 1 != 0, flags & 2 != 0);
    let scene = Scene::new();
    scene.write_archive(&archive_from_input(first, rest));
    let (path, dest) = (scene.archive_path(), scene.dest());
    let before = scene.outside();

    let entries = entry_paths(&path);
    let result = read_in_process(&path, &dest, Existing::Refuse, same_permissions, two_threads);
    scene.assert_outside(&before, "the first extraction");
    assert_only_entries(&dest, entries.as_ref());
    if result.is_ok() {
        check_extracted(&path, &dest);
    }
    let second = match (flags >> 2) & 3 {
        0 => None,
        1 => Some(Existing::Refuse),
        2 => Some(Existing::Overwrite),
        _ => Some(Existing::Keep),
    };
    if let Some(existing) = second {
        let _ = read_in_process(&path, &dest, existing, same_permissions, two_threads);
        scene.assert_outside(&before, "the second extraction");
        assert_only_entries(&dest, entries.as_ref());
    }
    result.is_ok()
}

/// The `stream` target: the archive read as from a pipe into DEST (in a [`Scene`]). Nothing
/// outside DEST may change; no temporary file may be left; if the archive verifies and
/// extracts from its file, the stream must succeed and give the same entries, each of the
/// same kind and size. Returns whether the stream succeeded.
pub fn check_stream(data: &[u8]) -> bool {
    let Some((&first, rest)) = data.split_first() else { return false };
    let same_permissions = (first / 3) & 1 != 0;
    let scene = Scene::new();
    let archive = archive_from_input(first, rest);
    scene.write_archive(&archive);
    let (path, dest) = (scene.archive_path(), scene.dest());
    let before = scene.outside();
    let streamed = stream_in_process(&archive, &dest, same_permissions);
    scene.assert_outside(&before, "the streamed extraction");
    assert!(temp_files(&dest).is_empty(), "temporary files left in DEST");
    let filed = tempfile::tempdir().expect("a temp dir");
    // Format 1 has no records: it is read from a file only. A record the file reader does not
    // need may be damaged: the stream must succeed where verify (which reads records) does.
    let recorded = format::decode_header(&archive).is_ok_and(|version| version >= 2);
    let sound = recorded && verify_in_process(&path).is_ok();
    if sound && read_in_process(&path, filed.path(), Existing::Refuse, same_permissions, false).is_ok() {
        assert!(streamed.is_ok(), "the file extracts but the stream does not: {streamed:?}");
        let found: BTreeSet<String> = paths_under(&dest).into_iter().collect();
        let filed_paths: BTreeSet<String> = paths_under(filed.path()).into_iter().collect();
        assert_eq!(found, filed_paths, "the stream and the file give different entries");
        check_extracted(&path, &dest);
    }
    streamed.is_ok()
}

/// `arc read -` in-process, `archive` as its standard input.
pub fn stream_in_process(archive: &[u8], dest: &Path, same_permissions: bool) -> anyhow::Result<Outcome> {
    let options = arc::read::ReadOptions {
        archive: Utf8PathBuf::from("-"),
        dest: utf8(dest),
        paths: Vec::new(),
        globs: Vec::new(),
        threads: 2,
        verbose: false,
        quiet: true,
        existing: Existing::Refuse,
        same_permissions,
        strip_components: 0,
        salvage: false,
        owners: arc::read::Owners::ByName,
    };
    arc::read::run_stream(&options, archive, &Stop::default())
}

/// After a successful extraction into an empty DEST: DEST holds exactly the archive's entries,
/// each of its kind, files of their size, links with their targets; and verify agrees that
/// the archive is sound.
fn check_extracted(archive: &Path, dest: &Path) {
    let index = open(archive).expect("an archive that extracted opens").index;
    let mut expected = BTreeSet::new();
    for (i, entry) in index.entries.iter().enumerate() {
        let raw = index.path(i);
        let at = dest.join(std::ffi::OsStr::from_bytes(&raw));
        let rel = lossy(&raw);
        let Ok(meta) = fs::symlink_metadata(&at) else {
            // Devices are made only with --same-permissions, and as root.
            assert!(
                matches!(entry.kind(), Kind::CharDevice { .. } | Kind::BlockDevice { .. }),
                "{rel} missing"
            );
            continue;
        };
        match &entry.kind() {
            Kind::Dir => assert!(meta.is_dir(), "{rel} is not a directory"),
            Kind::File { .. } | Kind::HardLink { .. } => {
                let size = index.data_entry(i).map_or(0, |d| index.entries[d].size());
                assert!(meta.is_file() && meta.len() == size, "{rel}: not a file of {size}")
            }
            Kind::Symlink { .. } => {
                let found = fs::read_link(&at).expect("readlink");
                assert_eq!(found.as_os_str().as_bytes(), index.target(i), "{rel}: wrong target");
            }
            Kind::Fifo => assert!(meta.file_type().is_fifo(), "{rel} is not a FIFO"),
            Kind::CharDevice { .. } => assert!(meta.file_type().is_char_device(), "{rel}"),
            Kind::BlockDevice { .. } => assert!(meta.file_type().is_block_device(), "{rel}"),
        }
        expected.insert(rel);
    }
    let found: BTreeSet<String> = paths_under(dest).into_iter().collect();
    assert_eq!(found, expected, "DEST does not hold exactly the archive's entries");
    // Every block read was sound; only the records, which a read of the file does not use,
    // may be what verify finds damaged.
    if let Err(e) = verify_in_process(archive) {
        let why = format!("{e:#}");
        assert!(
            why.contains("records damaged") && !why.contains("blocks damaged"),
            "read succeeded but verify failed: {why}"
        );
    }
}
