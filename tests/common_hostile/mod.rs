//! Helpers for the hostile-archive and fault tests: archives crafted byte by byte (valid
//! checksums included, so only arc's own checks stand between them and the disk), a scene of
//! sentinels around DEST that must never change, and a way to run the real binary.
//!
//! The archive layout is the one `arc::format` documents: header | blocks | index | trailer.
//! Blocks have no stored offsets: they tile the region from the header to the index, so the
//! helpers here only have to lay them out back to back.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use arc::format::{self, BlockRecord, IndexRecord, KIND_DIR, KIND_FILE, KIND_SYMLINK};

/// The binary under test, built by cargo for this test run.
pub const ARC: &str = env!("CARGO_BIN_EXE_arc");

/// A zstd frame of `data` as arc writes one: with a checksum and the content size.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut compressor = zstd::bulk::Compressor::new(3).expect("zstd compressor");
    compressor.include_checksum(true).expect("zstd checksum flag");
    compressor.include_contentsize(true).expect("zstd content size flag");
    compressor.compress(data).expect("zstd compression")
}

/// A whole archive: `data_stream` cut into blocks of `block_size` bytes, each compressed on
/// its own; the record's block table is filled in to match.
pub fn craft(record: IndexRecord, data_stream: &[u8], block_size: usize) -> Vec<u8> {
    let frames: Vec<(Vec<u8>, u64)> =
        data_stream.chunks(block_size.max(1)).map(|chunk| (compress(chunk), chunk.len() as u64)).collect();
    craft_frames(record, &frames)
}

/// A whole archive from ready-made block frames, each with the decompressed length the index
/// is to claim for it (which may be a lie). Lengths and checksums of the frames are filled in
/// truthfully, so the index passes every check that does not decompress.
pub fn craft_frames(mut record: IndexRecord, frames: &[(Vec<u8>, u64)]) -> Vec<u8> {
    record.blocks = BlockRecord {
        lens: frames.iter().map(|(frame, _)| frame.len() as u64).collect(),
        raw_lens: frames.iter().map(|&(_, raw_len)| raw_len).collect(),
        hashes: frames.iter().map(|(frame, _)| format::block_hash(frame)).collect(),
    };
    let frames: Vec<Vec<u8>> = frames.iter().map(|(frame, _)| frame.clone()).collect();
    assemble(&frames, &record)
}

/// Header, `frames` back to back, and the index of `record` exactly as given (its block table
/// is not touched), with a valid trailer.
pub fn assemble(frames: &[Vec<u8>], record: &IndexRecord) -> Vec<u8> {
    let (index_frame, cbor_len) = format::encode_index(record, 3).expect("encoding the index");
    assemble_index_frame(frames, &index_frame, cbor_len)
}

/// Like [`assemble`], with the index given as raw CBOR bytes (which need not decode).
pub fn assemble_cbor(frames: &[Vec<u8>], cbor: &[u8]) -> Vec<u8> {
    assemble_index_frame(frames, &compress(cbor), cbor.len() as u64)
}

/// Like [`assemble`], with the index frame and the length the trailer declares for its
/// decompressed contents given as they are; the trailer's checksum is valid.
pub fn assemble_index_frame(frames: &[Vec<u8>], index_frame: &[u8], declared_raw_len: u64) -> Vec<u8> {
    let mut archive = format::encode_header().to_vec();
    for frame in frames {
        archive.extend_from_slice(frame);
    }
    archive.extend_from_slice(index_frame);
    archive.extend_from_slice(&format::Trailer::new(index_frame, declared_raw_len).encode());
    archive
}

/// The CBOR of `record`, for tests that patch bytes the serializer would never write.
pub fn cbor(record: &IndexRecord) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(record, &mut out).expect("serializing the index");
    out
}

/// Replaces the only occurrence of `from` in `bytes` with `to` (same length).
pub fn patch(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len(), "a patch must keep the length");
    let at: Vec<usize> =
        bytes.windows(from.len()).enumerate().filter(|(_, w)| *w == from).map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "{from:?} must occur exactly once");
    bytes[at[0]..at[0] + from.len()].copy_from_slice(to);
}

/// zstd's largest block: RLE blocks bigger than this are invalid.
const ZSTD_BLOCK_MAX: u64 = 128 << 10;

/// A valid zstd frame, written by hand, that expands to `total` bytes of `b'A'` while being
/// about `total / 32768` bytes long: a run of RLE blocks of 128 KiB, four bytes each. The
/// frame's window is 2^`window_log` bytes; `content_size`, if given, is declared in the frame
/// header (and may be a lie).
pub fn rle_bomb(total: u64, window_log: u8, content_size: Option<u64>) -> Vec<u8> {
    assert!((10..=41).contains(&window_log) && total > 0);
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header descriptor: content size field of 8 bytes or none, not single-segment (so
    // a window descriptor follows), no checksum, no dictionary.
    frame.push(if content_size.is_some() { 0xc0 } else { 0x00 });
    frame.push((window_log - 10) << 3);
    if let Some(size) = content_size {
        frame.extend_from_slice(&size.to_le_bytes());
    }
    let block_max = ZSTD_BLOCK_MAX.min(1 << window_log);
    let mut left = total;
    while left > 0 {
        let n = left.min(block_max);
        left -= n;
        let last = u32::from(left == 0);
        // Block header: last-block bit, type 1 (RLE), size in bits 3..24.
        let header = last | (1 << 1) | ((n as u32) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(b'A');
    }
    frame
}

/// What one entry of a crafted tree is.
#[derive(Debug, Clone)]
pub enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

#[derive(Debug, Clone)]
struct SpecEntry {
    depth: u32,
    name: String,
    node: Node,
    mode: u16,
    mtime: (i64, u32),
}

/// A tree to craft an archive of, entries given in the order they are to be stored (which a
/// hostile archive chooses freely; for a valid one, pre-order with sorted siblings).
#[derive(Debug, Clone, Default)]
pub struct Spec {
    entries: Vec<SpecEntry>,
}

impl Spec {
    pub fn new() -> Spec {
        Spec::default()
    }

    fn push(mut self, depth: u32, name: &str, node: Node, mode: u16) -> Spec {
        self.entries.push(SpecEntry { depth, name: name.to_owned(), node, mode, mtime: (1_000_000_000, 0) });
        self
    }

    pub fn dir(self, depth: u32, name: &str) -> Spec {
        self.push(depth, name, Node::Dir, 0o755)
    }

    pub fn file(self, depth: u32, name: &str, contents: impl AsRef<[u8]>) -> Spec {
        self.push(depth, name, Node::File(contents.as_ref().to_vec()), 0o644)
    }

    pub fn symlink(self, depth: u32, name: &str, target: &str) -> Spec {
        self.push(depth, name, Node::Symlink(target.to_owned()), 0o777)
    }

    /// Sets the mode of the entry added last.
    pub fn mode(mut self, mode: u16) -> Spec {
        self.entries.last_mut().expect("an entry to set the mode of").mode = mode;
        self
    }

    /// Sets the mtime of the entry added last.
    pub fn mtime(mut self, secs: i64, nanos: u32) -> Spec {
        self.entries.last_mut().expect("an entry to set the mtime of").mtime = (secs, nanos);
        self
    }

    /// The index columns (block table left empty) and the data stream.
    pub fn record(&self) -> (IndexRecord, Vec<u8>) {
        let mut record = IndexRecord::default();
        let mut data = Vec::new();
        for entry in &self.entries {
            record.names.push(entry.name.clone());
            record.depths.push(entry.depth);
            record.modes.push(entry.mode);
            record.mtime_secs.push(entry.mtime.0);
            record.mtime_nanos.push(entry.mtime.1);
            match &entry.node {
                Node::Dir => record.kinds.push(KIND_DIR),
                Node::File(contents) => {
                    record.kinds.push(KIND_FILE);
                    record.sizes.push(contents.len() as u64);
                    data.extend_from_slice(contents);
                }
                Node::Symlink(target) => {
                    record.kinds.push(KIND_SYMLINK);
                    record.targets.push(target.clone());
                }
            }
        }
        (record, data)
    }

    /// The archive, with blocks of `block_size` bytes of the data stream.
    pub fn archive_with_blocks(&self, block_size: usize) -> Vec<u8> {
        let (record, data) = self.record();
        craft(record, &data, block_size)
    }

    /// The archive, with blocks of 4 KiB.
    pub fn archive(&self) -> Vec<u8> {
        self.archive_with_blocks(4096)
    }
}

/// What one run of arc did.
#[derive(Debug)]
pub struct Run {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn describe(&self) -> String {
        format!("`{}` exited {}\nstdout:\n{}\nstderr:\n{}", self.command, self.code, self.stdout, self.stderr)
    }

    /// Exit status `code`; returns the run for more checks.
    pub fn code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit status: {}", self.describe());
        self
    }

    /// Exit status 2, an error line last, and `why` said on stderr.
    pub fn refused(&self, why: &str) -> &Run {
        self.code(2);
        let last = self.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("arc: error: "), "no error line last: {}", self.describe());
        assert!(self.stderr.contains(why), "the error does not say {why:?}: {}", self.describe());
        self
    }
}

/// Runs `program args` with no standard input and checks what holds for every run of arc:
/// it exits (is not killed by a signal) and never panics.
pub fn run_program<I, S>(program: &[&str], args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let command = program
        .iter()
        .map(|s| s.to_string())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new(program[0])
        .args(&program[1..])
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {command}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let Some(code) = output.status.code() else {
        panic!("`{command}` was killed: {:?}\nstderr:\n{stderr}", output.status);
    };
    assert!(!stderr.contains("panicked"), "`{command}` panicked:\n{stderr}");
    Run { command, code, stdout: String::from_utf8_lossy(&output.stdout).into_owned(), stderr }
}

/// Runs arc.
pub fn arc<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_program(&[ARC], args)
}

/// Everything lstat says about one entry that arc could change, plus its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub mtime: (i64, i64),
    /// Changes with any chmod, chown, rename or link count change, even one undone later.
    pub ctime: (i64, i64),
    pub ino: u64,
    /// A file's contents or a symlink's target.
    pub contents: Vec<u8>,
}

pub fn stat(path: &Path) -> Stat {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    let file_type = meta.file_type();
    let (kind, contents) = if file_type.is_dir() {
        ('d', Vec::new())
    } else if file_type.is_file() {
        ('f', fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
    } else if file_type.is_symlink() {
        let target = fs::read_link(path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()));
        ('l', target.into_os_string().into_encoded_bytes())
    } else if file_type.is_fifo() || file_type.is_socket() {
        ('p', Vec::new())
    } else {
        ('?', Vec::new())
    };
    Stat {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
        ino: meta.ino(),
        contents,
    }
}

/// Every entry beneath and including `root` (key `""`), without following symlinks, leaving
/// out the subtrees whose relative path is in `except`.
pub fn snapshot(root: &Path, except: &[&str]) -> BTreeMap<String, Stat> {
    fn visit(path: &Path, rel: &str, except: &[&str], out: &mut BTreeMap<String, Stat>) {
        if except.contains(&rel) {
            return;
        }
        let stat = stat(path);
        let is_dir = stat.kind == 'd';
        out.insert(rel.to_owned(), stat);
        if is_dir {
            for child in fs::read_dir(path).unwrap_or_else(|e| panic!("listing {}: {e}", path.display())) {
                let name = child.expect("listing").file_name().into_string().expect("UTF-8 test names");
                let child_rel = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                visit(&path.join(&name), &child_rel, except, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    visit(root, "", except, &mut out);
    out
}

/// A tree in a short form for comparisons: relative path to `d MODE`, `f MODE CONTENTS` or
/// `l TARGET` (contents and targets lossily as UTF-8).
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    snapshot(root, &[])
        .into_iter()
        .filter(|(rel, _)| !rel.is_empty())
        .map(|(rel, s)| {
            let text = String::from_utf8_lossy(&s.contents);
            let short = match s.kind {
                'd' => format!("d {:o}", s.mode),
                'f' => format!("f {:o} {text}", s.mode),
                'l' => format!("l {text}"),
                other => format!("{other}"),
            };
            (rel, short)
        })
        .collect()
}

/// Builds the expected value of [`tree`] from `(path, short form)` pairs.
pub fn expect_tree(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect()
}

/// A temporary directory holding DEST and, around it, things no archive may touch:
///
/// ```text
/// TOP/                   the scene (its own mtime and ctime are watched too)
/// TOP/sentinel           a file, 0o640
/// TOP/sentinel_dir/      a directory, 0o750, holding `keep` (0o600)
/// TOP/dest/              DEST
/// TOP/x.arc              the archive under test
/// ```
///
/// [`Scene::read`] snapshots everything but DEST before running arc and checks it after.
pub struct Scene {
    dir: tempfile::TempDir,
}

impl Default for Scene {
    fn default() -> Self {
        Self::new()
    }
}

impl Scene {
    pub fn new() -> Scene {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new().prefix("arc-hostile-").tempdir().expect("creating a temp dir");
        let top = dir.path();
        fs::write(top.join("sentinel"), b"sentinel: must never change\n").expect("writing the sentinel");
        fs::set_permissions(top.join("sentinel"), fs::Permissions::from_mode(0o640)).expect("chmod");
        fs::create_dir(top.join("sentinel_dir")).expect("creating the sentinel dir");
        fs::write(top.join("sentinel_dir/keep"), b"keep\n").expect("writing sentinel_dir/keep");
        fs::set_permissions(top.join("sentinel_dir/keep"), fs::Permissions::from_mode(0o600)).expect("chmod");
        fs::set_permissions(top.join("sentinel_dir"), fs::Permissions::from_mode(0o750)).expect("chmod");
        fs::create_dir(top.join("dest")).expect("creating DEST");
        Scene { dir }
    }

    pub fn top(&self) -> &Path {
        self.dir.path()
    }

    pub fn dest(&self) -> PathBuf {
        self.top().join("dest")
    }

    pub fn sentinel(&self) -> PathBuf {
        self.top().join("sentinel")
    }

    pub fn sentinel_dir(&self) -> PathBuf {
        self.top().join("sentinel_dir")
    }

    pub fn archive_path(&self) -> PathBuf {
        self.top().join("x.arc")
    }

    /// Everything in the scene but DEST.
    pub fn outside(&self) -> BTreeMap<String, Stat> {
        snapshot(self.top(), &["dest"])
    }

    /// Writes `archive` to TOP/x.arc and runs `arc read -q -C DEST TOP/x.arc ARGS`, then checks
    /// that nothing outside DEST changed.
    pub fn read(&self, archive: &[u8], args: &[&str]) -> Run {
        fs::write(self.archive_path(), archive).expect("writing the archive");
        let before = self.outside();
        let run = arc([OsStr::new("read"), OsStr::new("-q"), OsStr::new("-C"), self.dest().as_os_str()]
            .into_iter()
            .chain([self.archive_path().as_os_str()])
            .chain(args.iter().map(OsStr::new)));
        self.assert_outside(&before, &run);
        run
    }

    /// Runs `arc verify` on TOP/x.arc as [`Scene::read`] last wrote it.
    pub fn verify(&self) -> Run {
        let before = self.outside();
        let run = arc([OsStr::new("verify"), OsStr::new("-q"), self.archive_path().as_os_str()]);
        self.assert_outside(&before, &run);
        run
    }

    pub fn assert_outside(&self, before: &BTreeMap<String, Stat>, run: &Run) {
        let after = self.outside();
        if &after != before {
            let mut diff = Vec::new();
            for (k, v) in before {
                match after.get(k) {
                    None => diff.push(format!("{k}: removed")),
                    Some(a) if a != v => diff.push(format!("{k}: {v:?} -> {a:?}")),
                    Some(_) => {}
                }
            }
            for k in after.keys().filter(|k| !before.contains_key(*k)) {
                diff.push(format!("{k}: appeared"));
            }
            panic!("something outside DEST changed:\n{}\n{}", diff.join("\n"), run.describe());
        }
    }

    /// DEST as [`tree`] shows it.
    pub fn dest_tree(&self) -> BTreeMap<String, String> {
        tree(&self.dest())
    }

    pub fn assert_dest_empty(&self, run: &Run) {
        let tree = self.dest_tree();
        assert!(tree.is_empty(), "DEST is not empty: {tree:#?}\n{}", run.describe());
    }

    /// Removes and recreates DEST (empty).
    pub fn clear_dest(&self) {
        fs::remove_dir_all(self.dest()).expect("removing DEST");
        fs::create_dir(self.dest()).expect("creating DEST");
    }
}

/// Names of arc's temporary files (`.arc-*.tmp`) beneath `root`, as relative paths.
pub fn temp_files(root: &Path) -> Vec<String> {
    snapshot(root, &[])
        .into_keys()
        .filter(|rel| {
            let name = rel.rsplit('/').next().unwrap_or(rel);
            name.starts_with(".arc-") && name.ends_with(".tmp")
        })
        .collect()
}
