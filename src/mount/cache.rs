//! The mount's block cache: decompressed blocks, shared by every open file and every
//! thread, within a fixed budget of bytes.
//!
//! Invariants:
//! - a block is decompressed once while it stays cached, whatever the number of readers
//!   asking for it at once (the others wait for the first);
//! - a block is checked (its XXH3 and zstd's checksum) each time it is decompressed, so a
//!   damaged or changed archive gives errors, never wrong bytes; a block that fails is
//!   remembered as failed, and said once;
//! - the bytes held are at most the budget, plus the blocks readers still hold (one per
//!   reading thread) and the one being added.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::view::View;

/// A block's bytes, or why they cannot be had (the message names the block; it is logged
/// once, when the block first fails).
pub type BlockBytes = Arc<str>;

type Loaded = Result<Arc<Vec<u8>>, BlockBytes>;

struct Slot {
    cell: Arc<OnceLock<Loaded>>,
    /// When it was last asked for (a counter), for least-recently-used eviction.
    used: u64,
}

#[derive(Default)]
struct State {
    slots: HashMap<usize, Slot>,
    held: u64,
    clock: u64,
}

pub struct Cache {
    budget: u64,
    state: Mutex<State>,
    /// Called with the message of each block that fails, once.
    report: Box<dyn Fn(&str) + Send + Sync>,
}

impl Cache {
    pub fn new(budget: u64, report: impl Fn(&str) + Send + Sync + 'static) -> Cache {
        Cache { budget, state: Mutex::new(State::default()), report: Box::new(report) }
    }

    /// Block `b`'s bytes if they are cached, never waiting.
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

    /// Block `b`'s bytes, decompressed now if they are not cached.
    pub fn block(&self, view: &View, b: usize) -> Result<Arc<Vec<u8>>, BlockBytes> {
        let cell = {
            let mut state = self.lock();
            state.clock += 1;
            let clock = state.clock;
            let slot =
                state.slots.entry(b).or_insert_with(|| Slot { cell: Arc::new(OnceLock::new()), used: 0 });
            slot.used = clock;
            Arc::clone(&slot.cell)
        };
        let mut fresh = false;
        let loaded = cell.get_or_init(|| {
            fresh = true;
            let block = view.archive.index.blocks[b];
            let (mut frame, mut out) = (Vec::new(), Vec::new());
            match view.archive.read_block(&block, &mut frame, &mut out) {
                Ok(()) => Ok(Arc::new(out)),
                Err(e) => {
                    let mut files: Vec<String> = view.files_in_block(b).take(11).collect();
                    let more = if files.len() > 10 { ", ..." } else { "" };
                    files.truncate(10);
                    let message = format!(
                        "block {b} of {}: {e}; reads of its files fail with EIO: {}{more}",
                        view.archive.path,
                        files.join(", ")
                    );
                    (self.report)(&message);
                    Err(message.into())
                }
            }
        });
        let result = loaded.clone();
        if fresh {
            let len = result.as_ref().map_or(0, |bytes| bytes.len() as u64);
            self.evict_for(b, len);
        }
        result
    }

    /// Counts `len` more bytes held for block `b`, and drops the least recently used other
    /// blocks until what is held fits the budget.
    fn evict_for(&self, b: usize, len: u64) {
        let mut state = self.lock();
        state.held += len;
        while state.held > self.budget {
            let oldest = state
                .slots
                .iter()
                .filter(|(&k, slot)| k != b && slot.cell.get().is_some())
                .min_by_key(|(_, slot)| slot.used)
                .map(|(&k, _)| k);
            let Some(k) = oldest else { break };
            if let Some(slot) = state.slots.remove(&k) {
                let freed =
                    slot.cell.get().and_then(|l| l.as_ref().ok()).map_or(0, |bytes| bytes.len() as u64);
                state.held -= freed;
            }
        }
    }
}
