//! What arc prints besides data: warnings and the progress line on stderr, paths on stdout.
//!
//! Invariant: stdout carries data only (paths with `-v`, listings). The progress line is drawn
//! only when stderr is a terminal and not `-q`; warnings always reach stderr. One mutex guards
//! stderr so a warning never tears the progress line.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytesize::ByteSize;

pub struct Console {
    show_progress: bool,
    verbose: bool,
    /// `-v` paths go to stderr when stdout carries the archive itself.
    paths_on_stderr: bool,
    line_shown: Mutex<bool>,
    warned: AtomicBool,
}

impl Console {
    pub fn new(quiet: bool, verbose: bool) -> Console {
        Console {
            show_progress: !quiet && std::io::stderr().is_terminal(),
            verbose,
            paths_on_stderr: false,
            line_shown: Mutex::new(false),
            warned: AtomicBool::new(false),
        }
    }

    /// Prints `arc: warning: ...` and remembers that the run should exit with status 1.
    pub fn warn(&self, message: impl std::fmt::Display) {
        self.warned.store(true, Ordering::Relaxed);
        let mut shown = self.line_shown.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if *shown {
            let _ = write!(err, "\r\x1b[K");
            *shown = false;
        }
        // Paths in messages may hold control characters; never let them reach the terminal.
        let _ = writeln!(err, "arc: warning: {}", crate::list::escape(&message.to_string()));
    }

    pub fn warned(&self) -> bool {
        self.warned.load(Ordering::Relaxed)
    }

    /// With `-v`, prints one path to stdout. Lines are written whole under stdout's lock, so
    /// threads never interleave within a line; a closed stdout only stops the listing. The
    /// path is only built when it will be printed.
    pub fn path<S: AsRef<str>>(&self, path: impl FnOnce() -> S) {
        if !self.verbose {
            return;
        }
        let path = path();
        let line = crate::list::escape(path.as_ref());
        if self.paths_on_stderr {
            let mut shown = self.line_shown.lock().unwrap_or_else(|e| e.into_inner());
            let mut err = std::io::stderr().lock();
            if *shown {
                let _ = write!(err, "\r\x1b[K");
                *shown = false;
            }
            let _ = writeln!(err, "{line}");
        } else {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }

    /// For `write -o -`: stdout is the archive, so `-v` paths go to stderr (as with tar).
    pub fn paths_on_stderr(mut self) -> Console {
        self.paths_on_stderr = true;
        self
    }

    fn draw(&self, line: &str, last: bool) {
        if !self.show_progress {
            return;
        }
        let mut shown = self.line_shown.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        if last {
            let _ = writeln!(err);
        }
        *shown = !last;
    }
}

/// Counters the pipeline stages bump and the progress thread reads.
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

/// The progress thread: redraws about 12 times a second until `done` is closed (its sender
/// dropped), then draws the summary line once.
pub fn progress(console: &Console, counters: &Counters, verb: &str, done: Receiver<()>) {
    let started = Instant::now();
    loop {
        match done.recv_timeout(Duration::from_millis(80)) {
            Err(RecvTimeoutError::Timeout) => console.draw(&counters.line(verb, started), false),
            Ok(()) => {
                console.draw(&counters.line(verb, started), true);
                return;
            }
            Err(RecvTimeoutError::Disconnected) => {
                // The stages failed; the error message follows on a clean line.
                console.draw("", false);
                return;
            }
        }
    }
}
