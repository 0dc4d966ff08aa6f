//! The progress thread, and the counters the working threads bump for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytesize::ByteSize;

use super::Console;

/// Counters the working threads bump and the progress thread reads.
#[derive(Default)]
pub struct Counters {
    pub entries: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn line(&self, verb: &str, started: Instant) -> String {
        let entries = self.entries.load(Ordering::Relaxed);
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let bytes_out = self.bytes_out.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{verb} {entries} entries, {} -> {} ({}/s)",
            ByteSize(bytes_in).display().iec(),
            ByteSize(bytes_out).display().iec(),
            ByteSize((bytes_in as f64 / secs) as u64).display().iec(),
        )
    }
}

/// Runs `job` on this thread while a progress thread redraws a line from `counters` on
/// stderr (when the console shows progress); when the job succeeds, the line is drawn once
/// more as the summary, else it is cleared for the error message that follows.
pub fn with_progress<T, E>(
    console: &Console,
    counters: &Counters,
    verb: &str,
    job: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let (done_tx, done_rx) = sync_channel::<()>(1);
    std::thread::scope(|scope| {
        scope.spawn(|| progress(console, counters, verb, done_rx));
        let result = job();
        if result.is_ok() {
            let _ = done_tx.send(());
        }
        // Dropping the sender without a message tells the thread the job failed.
        drop(done_tx);
        result
    })
}

/// The progress thread: redraws about 12 times a second until `done` says how the job ended.
fn progress(console: &Console, counters: &Counters, verb: &str, done: Receiver<()>) {
    let started = Instant::now();
    loop {
        match done.recv_timeout(Duration::from_millis(80)) {
            Err(RecvTimeoutError::Timeout) => console.draw(&counters.line(verb, started), false),
            Ok(()) => {
                console.draw(&counters.line(verb, started), true);
                return;
            }
            Err(RecvTimeoutError::Disconnected) => {
                // The job failed; the error message follows on a clean line.
                console.draw("", false);
                return;
            }
        }
    }
}
