//! Library-level throughput of arc: `write::run` and `read::run` on two generated trees (many
//! small files, few large ones), and the index codec on 100k entries.
//!
//! `cargo bench --bench throughput` runs everything in about a minute on two cores; pass a
//! filter to run less (`cargo bench --bench throughput -- read`). Whole-tool comparisons
//! against tar are in `compare.sh` and `scale.sh`; docs/BENCHMARKS.md explains all three.
//!
//! The trees are generated once, on first use, under one scratch directory in /dev/shm (or the
//! system temp dir when there is no /dev/shm), so that the disk is not what is measured; the
//! scratch directory is removed when the run ends.

use std::sync::OnceLock;

use arc::format::{self, BlockRecord, Index, IndexRecord};
use arc::read::{Existing, ReadOptions};
use arc::stop::Stop;
use arc::write::WriteOptions;
use camino::{Utf8Path, Utf8PathBuf};
use divan::counter::{BytesCount, ItemsCount};
use divan::Bencher;

fn main() {
    divan::main();
    // The scratch TempDir lives in a static, which is never dropped.
    if let Some(scratch) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(scratch.path());
    }
}

/// zstd level, as `arc write` defaults to.
const LEVEL: i32 = 3;

static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();

/// Where trees, archives and extractions go: tmpfs when there is one.
fn scratch() -> &'static Utf8Path {
    let dir = SCRATCH.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("arc-bench-")
            .tempdir_in(tmpfs())
            .expect("creating the scratch directory")
    });
    Utf8Path::from_path(dir.path()).expect("the scratch path is UTF-8")
}

fn tmpfs() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A generated input tree and an archive of it.
struct Tree {
    dir: Utf8PathBuf,
    archive: Utf8PathBuf,
    /// Bytes of file contents: what write reads and read writes.
    bytes: u64,
}

/// 5000 files of 1–8 KiB in 50 directories.
fn small_files() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut text = Text::new(1);
        make_tree("small", 50, 100, || 1024 + text.below(7 * 1024 + 1) as usize, &mut Text::new(2))
    })
}

/// 4 files of 16 MiB.
fn large_files() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| make_tree("large", 1, 4, || 16 << 20, &mut Text::new(3)))
}

fn make_tree(
    name: &str,
    dirs: usize,
    files_per_dir: usize,
    mut size: impl FnMut() -> usize,
    text: &mut Text,
) -> Tree {
    let dir = scratch().join(name);
    let mut bytes = 0;
    let mut buf = Vec::new();
    for d in 0..dirs {
        let sub = dir.join(format!("d{d:03}"));
        std::fs::create_dir_all(&sub).expect("creating a tree directory");
        for f in 0..files_per_dir {
            buf.clear();
            text.fill(&mut buf, size());
            std::fs::write(sub.join(format!("f{f:04}.txt")), &buf).expect("writing a tree file");
            bytes += buf.len() as u64;
        }
    }
    let archive = scratch().join(format!("{name}.arc"));
    arc::write::run(&write_options(&dir, &archive), &Stop::default()).expect("archiving the tree");
    Tree { dir, archive, bytes }
}

fn write_options(dir: &Utf8Path, output: &Utf8Path) -> WriteOptions {
    WriteOptions {
        block_size: arc::format::BLOCK_SIZE,
        output: output.to_owned(),
        inputs: vec![arc::write::Input::new(dir)],
        level: LEVEL,
        threads: threads(),
        verbose: false,
        quiet: true,
        ignore_failed_read: false,
        exclude: Default::default(),
    }
}

fn read_options(archive: &Utf8Path, dest: &Utf8Path) -> ReadOptions {
    ReadOptions {
        archive: archive.to_owned(),
        dest: dest.to_owned(),
        paths: Vec::new(),
        globs: Vec::new(),
        threads: threads(),
        verbose: false,
        quiet: true,
        existing: Existing::Refuse,
        same_permissions: false,
        strip_components: 0,
        salvage: false,
        owners: arc::read::Owners::ByName,
    }
}

/// Semi-compressible text: words drawn from a fixed vocabulary with a skewed distribution, so
/// zstd -3 gets about 3.5:1, between source code and already compressed data.
struct Text {
    state: u64,
    words: Vec<Vec<u8>>,
}

impl Text {
    fn new(seed: u64) -> Text {
        let mut text = Text { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, words: Vec::new() };
        for _ in 0..2048 {
            let len = 2 + text.below(9) as usize;
            let word = (0..len).map(|_| b'a' + text.below(26) as u8).collect();
            text.words.push(word);
        }
        text
    }

    /// xorshift64*: fast, deterministic, good enough for test data.
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, out: &mut Vec<u8>, len: usize) {
        let target = out.len() + len;
        while out.len() < target {
            let r = self.next();
            // Three words in four come from the 64 most common ones.
            let word = if r & 3 == 0 { (r >> 8) % 2048 } else { (r >> 8) % 64 };
            out.extend_from_slice(&self.words[word as usize]);
            out.push(if (r >> 40) % 12 == 0 { b'\n' } else { b' ' });
        }
        out.truncate(target);
    }
}

mod write {
    use super::*;

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn small_files(bencher: Bencher) {
        bench_write(bencher, super::small_files(), "write-small.arc");
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn large_files(bencher: Bencher) {
        bench_write(bencher, super::large_files(), "write-large.arc");
    }

    fn bench_write(bencher: Bencher, tree: &Tree, output: &str) {
        let options = write_options(&tree.dir, &scratch().join(output));
        let stop = Stop::default();
        bencher
            .counter(BytesCount::new(tree.bytes))
            .bench_local(|| arc::write::run(&options, &stop).expect("arc write"));
    }
}

mod read {
    use super::*;

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn small_files(bencher: Bencher) {
        bench_read(bencher, super::small_files());
    }

    #[divan::bench(sample_count = 10, sample_size = 1)]
    fn large_files(bencher: Bencher) {
        bench_read(bencher, super::large_files());
    }

    /// Each iteration extracts into a fresh directory, removed after the timing.
    fn bench_read(bencher: Bencher, tree: &Tree) {
        let stop = Stop::default();
        bencher
            .counter(BytesCount::new(tree.bytes))
            .with_inputs(|| {
                tempfile::Builder::new().prefix("read-").tempdir_in(scratch()).expect("creating DEST")
            })
            .bench_local_refs(|dest| {
                let dest = Utf8Path::from_path(dest.path()).expect("DEST is UTF-8");
                arc::read::run(&read_options(&tree.archive, dest), &stop).expect("arc read")
            });
    }
}

mod index {
    use super::*;

    /// Directories of 999 files each: 100 make 100,001 entries with the root, 1,000 make
    /// 1,000,001.
    const FILES_PER_DIR: usize = 999;
    const DIRS: [usize; 2] = [100, 1_000];

    /// An index record shaped like a real one: sorted names, plausible modes and mtimes. Every
    /// size is 0 and there are no blocks, which is consistent with data ending at the header.
    fn record(dirs: usize) -> IndexRecord {
        let mut text = Text::new(4);
        let mut record = IndexRecord::default();
        let mut push = |name: String, depth: u32, kind: u8, record: &mut IndexRecord| {
            record.names.push(name.as_bytes());
            record.depths.push(depth);
            record.uids.push(1000);
            record.gids.push(1000);
            record.kinds.push(kind);
            record.modes.push(if kind == format::KIND_DIR { 0o755 } else { 0o644 });
            record.mtime_secs.push(1_700_000_000 + text.below(10_000_000) as i64);
            record.mtime_nanos.push(text.below(1_000_000_000) as u32);
            if kind == format::KIND_FILE {
                record.sizes.push(0);
            }
        };
        push("root".into(), 0, format::KIND_DIR, &mut record);
        for d in 0..dirs {
            push(format!("directory-{d:04}"), 1, format::KIND_DIR, &mut record);
            for f in 0..FILES_PER_DIR {
                push(format!("file-{f:04}.txt"), 2, format::KIND_FILE, &mut record);
            }
        }
        record.blocks = BlockRecord::default();
        record
    }

    #[divan::bench(sample_count = 10, sample_size = 1, args = DIRS)]
    fn encode(bencher: Bencher, dirs: usize) {
        let record = record(dirs);
        let (_, raw_len) = format::encode_index(&record, LEVEL).expect("encoding the index");
        bencher
            .counter(ItemsCount::new(record.names.len()))
            .counter(BytesCount::new(raw_len))
            .bench_local(|| format::encode_index(&record, LEVEL).expect("encoding the index"));
    }

    /// What opening an archive costs beyond reading the frame: decompress, parse the CBOR, and
    /// check the tree.
    #[divan::bench(sample_count = 10, sample_size = 1, args = DIRS)]
    fn decode(bencher: Bencher, dirs: usize) {
        let record = record(dirs);
        let entries = record.names.len();
        let (frame, raw_len) = format::encode_index(&record, LEVEL).expect("encoding the index");
        bencher.counter(ItemsCount::new(entries)).counter(BytesCount::new(raw_len)).bench_local(|| {
            let mut budget = format::Budget::for_archive(frame.len() as u64 + (1 << 30));
            let packed = format::decode_index(&frame, raw_len, format::VERSION, &mut budget)
                .expect("decoding the index");
            Index::from_packed(&packed, format::HEADER_LEN, &mut budget, format::Keep::All)
                .expect("checking the index")
        });
    }

    /// What one file out costs beyond reading the frame: decompress, find the file's path in
    /// the tree, and build the index of it alone (every entry still checked).
    #[divan::bench(sample_count = 10, sample_size = 1, args = DIRS)]
    fn decode_one(bencher: Bencher, dirs: usize) {
        let record = record(dirs);
        let entries = record.names.len();
        let (frame, raw_len) = format::encode_index(&record, LEVEL).expect("encoding the index");
        let path = format!("root/directory-{:04}/file-0500.txt", dirs / 2);
        let components: Vec<&[u8]> = path.split('/').map(str::as_bytes).collect();
        bencher.counter(ItemsCount::new(entries)).bench_local(|| {
            let mut budget = format::Budget::for_archive(frame.len() as u64 + (1 << 30));
            let packed = format::decode_index(&frame, raw_len, format::VERSION, &mut budget)
                .expect("decoding the index");
            let tree = format::Tree::unchecked(&packed);
            let found = tree.find(&components).expect("the file is there");
            let keep = tree.keep(&[found], entries).expect("no limit");
            let index =
                Index::from_packed(&packed, format::HEADER_LEN, &mut budget, format::Keep::Only(&keep))
                    .expect("checking the index");
            assert_eq!(index.entries.len(), 3);
        });
    }

    /// The checking part of `decode` alone: every column read, the tree, names and block
    /// table checked, the entries built.
    #[divan::bench(sample_count = 10, sample_size = 1, args = DIRS)]
    fn check(bencher: Bencher, dirs: usize) {
        let record = record(dirs);
        let (frame, raw_len) = format::encode_index(&record, LEVEL).expect("encoding the index");
        let mut budget = format::Budget::for_archive(frame.len() as u64 + (1 << 30));
        let packed =
            format::decode_index(&frame, raw_len, format::VERSION, &mut budget).expect("decoding the index");
        bencher.counter(ItemsCount::new(record.names.len())).bench_local(|| {
            let mut budget = format::Budget::for_archive(frame.len() as u64 + (1 << 30));
            Index::from_packed(&packed, format::HEADER_LEN, &mut budget, format::Keep::All)
                .expect("checking the index")
        });
    }
}
