//! The on-disk format, version 2 (and version 1, which is still read): its records, limits and errors, and the checked in-memory
//! [`Index`] built from them.
//!
//! This folder owns every byte layout of an archive; docs/FORMAT.md is its specification and
//! names the same records, one file each: [`header`], [`block`], [`run`] (the records of the
//! data region), [`record`] (the serialized index), [`trailer`]; [`index`] holds the in-memory tree every command works from.
//!
//! An archive is `Header | (Record Block)* | Record | Index | Trailer` (FORMAT.md §1).
//!
//! Architecture Invariant: nothing here touches the filesystem, threads or the terminal, and
//! nothing here imports from the rest of the crate: callers hand in bytes and get typed
//! records back, so the parsers can be unit-tested and fuzzed alone.
//!
//! Invariant: every function that decodes untrusted bytes returns a [`FormatError`] for any
//! input, never panics, and never allocates more than the caps below allow.

mod block;
mod frame;
mod header;
mod index;
mod packed;
mod record;
mod run;
mod trailer;

pub use block::{block_hash, decode_block, decode_block_start};
pub use header::{decode_header, encode_header};
#[cfg(test)]
pub use index::spanning_index;
pub use index::{
    file_writes, Block, Entry, Extent, FilePiece, Index, Keep, Kind, Mtime, NameTable, Tables, Tree, Xattr,
};
pub use record::{
    decode_cbor, decode_index, encode_index, reader_memory, BlockRecord, Budget, CopyRecord, IndexRecord,
    Names, OwnerRecord, SparseRecord, XattrRecord, KIND_BLOCK, KIND_CHAR, KIND_DIR, KIND_FIFO, KIND_FILE,
    KIND_LINK, KIND_SYMLINK,
};
pub use record::{Col, Packed};
pub use run::{
    check_record, decode_record, decode_record_entries, encode_record, encode_records, join_runs, record_len,
    RecordHead, MAX_RECORD_CONTENT, RECORD_FRAME_HEAD, RECORD_MAGIC,
};
pub use trailer::Trailer;

/// FORMAT.md §2: the first eight bytes of every archive. Like PNG's, the magic has a high-bit
/// byte and CR LF / LF so that text-mode transfers that mangle bytes are caught at once.
pub const MAGIC: [u8; 8] = *b"\x89ARC\r\n\x1a\n";
/// FORMAT.md §5: the last eight bytes of every archive.
pub const TRAILER_MAGIC: [u8; 8] = *b"\x89ARCIDX\n";
/// The format version this build writes and the newest it reads.
pub const VERSION: u16 = 2;
/// The oldest version this build reads (FORMAT.md §9).
pub const OLDEST_VERSION: u16 = 1;
pub const HEADER_LEN: u64 = 16;
pub const TRAILER_LEN: u64 = 32;

/// Uncompressed bytes per block, by default. Small enough that two cores get many blocks to share on
/// modest trees and that one file comes out without decompressing much else; large enough
/// that zstd's ratio is within a percent of compressing the whole stream.
pub const BLOCK_SIZE: usize = 4 << 20;
/// The range `--block-size` accepts. Larger blocks compress a little better (each block
/// starts with an empty history) at the cost of memory and of selective-read latency.
pub const MIN_BLOCK_SIZE: u64 = 64 << 10;

/// Caps on numbers read from an archive (FORMAT.md §6). A writer never comes near them; a
/// reader refuses anything above them before allocating.
pub const MAX_BLOCK_RAW: u64 = 64 << 20;
/// zstd's worst case for MAX_BLOCK_RAW bytes is a little over them (ZSTD_compressBound).
pub const MAX_BLOCK_LEN: u64 = MAX_BLOCK_RAW + (MAX_BLOCK_RAW >> 7) + (1 << 10);
pub const MAX_INDEX_LEN: u64 = 1 << 30;
pub const MAX_INDEX_RAW: u64 = 4 << 30;
/// Beyond this size, the CBOR index may be at most MAX_INDEX_RATIO times its compressed frame.
/// Real indexes compress 10-30:1; the cap keeps a few kilobytes of hostile index (one huge
/// name or `kinds` string, which no column count limits) from expanding into gigabytes.
pub const INDEX_RATIO_FLOOR: u64 = 64 << 20;
pub const MAX_INDEX_RATIO: u64 = 1024;
pub const MAX_ENTRIES: usize = 1 << 24;
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_TARGET_LEN: usize = 4095;
/// Linux's own limits on extended attributes (XATTR_NAME_MAX, XATTR_SIZE_MAX, XATTR_LIST_MAX):
/// a name, a value, and all of one file's names with a NUL after each.
pub const MAX_XATTR_NAME: usize = 255;
pub const MAX_XATTR_VALUE: usize = 65536;
pub const MAX_XATTR_LIST: usize = 65536;
/// A user or group name.
pub const MAX_OWNER_NAME: usize = 255;
pub const MAX_DEPTH: u32 = 1024;
/// zstd's decoder refuses frames whose window is larger than this (2^27 = 128 MiB, zstd's own
/// default limit), so a hostile frame cannot make the decoder allocate gigabytes.
pub const MAX_WINDOW_LOG: u32 = 27;

/// What is wrong with bytes that claim to be an archive. Typed so that tests and callers can
/// tell "not an archive" from "damaged archive".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not an arc archive")]
    NotArc,
    #[error("made by a newer arc (format {0}); this arc reads format {VERSION}")]
    NewerVersion(u16),
    #[error("truncated archive ({0})")]
    Truncated(&'static str),
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    /// Valid or not, the archive declares more than a reader may allocate for an archive of
    /// its size (SECURITY.md §8).
    #[error("{what} needs more memory than an archive of this size may ask for ({budget} bytes in all)")]
    OverBudget { what: String, budget: u64 },
}

impl FormatError {
    /// The error in words without the "corrupt archive: " its kind adds, for a message that
    /// says where (`record before block 3: ...`).
    pub fn words(&self) -> String {
        match self {
            FormatError::Corrupt(why) => why.clone(),
            other => other.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, FormatError>;

pub fn corrupt(what: impl Into<String>) -> FormatError {
    FormatError::Corrupt(what.into())
}
