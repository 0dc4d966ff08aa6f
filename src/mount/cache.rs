//! The mount's block cache: decompressed blocks, shared by every open file and every
//! thread, within a fixed budget of bytes.
//!
//! Invariants:
//! - a block is decompressed once while it stays cached, whatever the number of readers
//!   asking for it at once (the others wait for the first);
//! - a block is checked (its XXH3, and zstd's checksum when it is decompressed to its end)
//!   each time it is decompressed, so a damaged or changed archive gives errors, never wrong
//!   bytes; a block that fails is
//!   remembered as failed, and said once;
//! - the bytes held are at most the budget: the cached blocks, [`SPARES`] buffers of evicted
//!   blocks kept to decompress into (a fresh buffer costs a page fault per page), and room for
//!   a block being decompressed by each thread; beyond it only blocks evicted while a reader
//!   still copies from them, and the newest block if the budget is smaller than the room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::view::View;

/// A block's bytes, or why they cannot be had (the message names the block; it is logged
/// once, when the block first fails).
pub type BlockBytes = Arc<str>;

type Loaded = Result<Arc<Vec<u8>>, BlockBytes>;

struct Slot {
    cell: Arc<OnceLock<Loaded>>,
    /// What this slot's bytes add to [`State::held`]: 0 until its decompression is counted
    /// (under the lock, and only if the cell is still this slot's).
    counted: u64,
    /// When it was last asked for (a counter), for least-recently-used eviction.
    used: u64,
}

#[derive(Default)]
struct State {
    slots: HashMap<usize, Slot>,
    held: u64,
    clock: u64,
}

/// Buffers of evicted blocks kept for reuse, within the budget.
const SPARES: usize = 2;

thread_local! {
    /// Each thread's buffer for compressed frames, reused.
    static FRAME: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub struct Cache {
    budget: u64,
    /// Room kept in the budget for [`SPARES`] buffers of the largest block, and for a block
    /// being decompressed by each thread.
    reserve: u64,
    spares: Mutex<Vec<Vec<u8>>>,
    state: Mutex<State>,
    /// Called with the message of each block that fails, once.
    report: Box<dyn Fn(&str) + Send + Sync>,
}

impl Cache {
    /// A cache of at most `budget` bytes of blocks of at most `largest` bytes, decompressed
    /// by at most `threads` threads at once.
    pub fn new(
        budget: u64,
        largest: u64,
        threads: usize,
        report: impl Fn(&str) + Send + Sync + 'static,
    ) -> Cache {
        Cache {
            budget,
            reserve: (SPARES + threads) as u64 * largest,
            spares: Mutex::new(Vec::new()),
            state: Mutex::new(State::default()),
            report: Box::new(report),
        }
    }

    /// Block `b`'s bytes if they are cached (as far as they were decompressed), never waiting.
    pub fn cached(&self, b: usize) -> Option<Arc<Vec<u8>>> {
        let mut state = self.lock();
        state.clock += 1;
        let clock = state.clock;
        let slot = state.slots.get_mut(&b)?;
        slot.used = clock;
        slot.cell.get().and_then(|loaded| loaded.as_ref().ok()).cloned()
    }

    /// Whether block `b` is cached (or being decompressed).
    pub fn has(&self, b: usize) -> bool {
        self.lock().slots.contains_key(&b)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while the lock was held leaves the map consistent: each step is one call.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// At least the first `wanted` bytes of block `b`, decompressed now if they are not
    /// cached. A block is first decompressed only as far as it is wanted (a read of one small
    /// file pays for the bytes before it, not for the whole block); a later read beyond that
    /// decompresses all of it, so no block is decompressed more than twice while cached.
    pub fn block(&self, view: &View, b: usize, wanted: usize) -> Result<Arc<Vec<u8>>, BlockBytes> {
        let block = view.archive.index.blocks[b];
        let raw_len = block.raw_len as usize;
        let wanted = wanted.min(raw_len);
        // After the first round, a cell found too short is replaced by a whole decode. Other
        // readers may evict and decode the block partly again meanwhile: a few rounds at most.
        for round in 0..4 {
            let cell = {
                let mut state = self.lock();
                state.clock += 1;
                let clock = state.clock;
                let slot = state.slots.entry(b).or_insert_with(|| Slot {
                    cell: Arc::new(OnceLock::new()),
                    counted: 0,
                    used: 0,
                });
                slot.used = clock;
                let short = slot.cell.get().filter(|loaded| round > 0 && decoded(loaded) < wanted);
                if short.is_some() {
                    // Its buffer is dropped, not kept: other readers may hold it.
                    slot.cell = Arc::new(OnceLock::new());
                    let (cell, freed) = (Arc::clone(&slot.cell), std::mem::take(&mut slot.counted));
                    state.held -= freed;
                    cell
                } else {
                    Arc::clone(&slot.cell)
                }
            };
            let until = if round > 0 { raw_len } else { wanted };
            let mut fresh = false;
            let loaded = cell.get_or_init(|| {
                fresh = true;
                let mut out = self.spare();
                let read = FRAME.with(|frame| {
                    view.archive.read_block_start(&block, &mut frame.borrow_mut(), &mut out, until)
                });
                match read {
                    Ok(()) => Ok(Arc::new(out)),
                    Err(e) => Err(self.failed(view, b, &e.to_string()).into()),
                }
            });
            if fresh {
                self.count(b, &cell, held_by(loaded));
            }
            match loaded {
                Ok(bytes) if bytes.len() < wanted => continue,
                Ok(bytes) => return Ok(Arc::clone(bytes)),
                Err(message) => return Err(Arc::clone(message)),
            }
        }
        Err(format!("block {b} of {}: decompressed too short, again and again", view.archive.path).into())
    }

    /// A buffer to decompress a block into: one of an evicted block, whose pages are in
    /// memory already (a fresh one costs a page fault per 4 KiB on first touch), else new.
    fn spare(&self) -> Vec<u8> {
        self.spares.lock().unwrap_or_else(|p| p.into_inner()).pop().unwrap_or_default()
    }

    /// Keeps the buffer of an evicted block for the next decompression, if no reader holds
    /// it any more and fewer than [`SPARES`] are kept.
    fn recycle(&self, cell: Arc<OnceLock<Loaded>>) {
        let bytes = Arc::into_inner(cell).and_then(OnceLock::into_inner).and_then(Result::ok);
        if let Some(buffer) = bytes.and_then(Arc::into_inner) {
            let mut spares = self.spares.lock().unwrap_or_else(|p| p.into_inner());
            if spares.len() < SPARES {
                spares.push(buffer);
            }
        }
    }

    /// Says that block `b` failed, naming its files; the message.
    fn failed(&self, view: &View, b: usize, why: &str) -> String {
        let mut files: Vec<String> = view.files_in_block(b).take(11).collect();
        let more = if files.len() > 10 { ", ..." } else { "" };
        files.truncate(10);
        let message = format!(
            "block {b} of {}: {why}; reads of its files fail with EIO: {}{more}",
            view.archive.path,
            files.join(", ")
        );
        (self.report)(&message);
        message
    }

    /// Counts the `len` bytes of block `b`'s `cell`, just decompressed, if the cell is still
    /// the block's (another reader may have replaced or evicted it meanwhile), and drops the
    /// least recently used other blocks until what is held fits the budget.
    fn count(&self, b: usize, cell: &Arc<OnceLock<Loaded>>, len: u64) {
        let mut state = self.lock();
        match state.slots.get_mut(&b) {
            Some(slot) if Arc::ptr_eq(&slot.cell, cell) => slot.counted = len,
            _ => return,
        }
        state.held += len;
        // The blocks, and the spare buffers beside them, within the budget.
        while state.held + self.reserve > self.budget {
            let oldest = state
                .slots
                .iter()
                .filter(|(&k, slot)| k != b && slot.cell.get().is_some())
                .min_by_key(|(_, slot)| slot.used)
                .map(|(&k, _)| k);
            let Some(k) = oldest else { break };
            if let Some(slot) = state.slots.remove(&k) {
                state.held -= slot.counted;
                self.recycle(slot.cell);
            }
        }
    }
}

/// The memory a cached block holds: its buffer's whole capacity, not only what was
/// decompressed into it (a recycled buffer's pages are all in memory).
fn held_by(loaded: &Loaded) -> u64 {
    loaded.as_ref().map_or(0, |bytes| bytes.capacity() as u64)
}

/// How much of a cached block was decompressed.
fn decoded(loaded: &Loaded) -> usize {
    loaded.as_ref().map_or(usize::MAX, |bytes| bytes.len())
}
