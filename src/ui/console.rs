//! The console: stderr shared by warnings and the progress line, stdout for `-v` paths.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::escape;

/// How a command that did its job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Clean,
    /// Exit status 1: done, but warnings were printed.
    Warnings,
}

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

    /// For `write -o -`: stdout is the archive, so `-v` paths go to stderr (as with tar).
    pub fn paths_on_stderr(mut self) -> Console {
        self.paths_on_stderr = true;
        self
    }

    /// Prints `arc: warning: ...` and remembers that the run should exit with status 1.
    pub fn warn(&self, message: impl std::fmt::Display) {
        self.warned.store(true, Ordering::Relaxed);
        self.note("warning", message);
    }

    /// Prints `arc: KIND: MESSAGE` on stderr, escaped, on a line of its own.
    pub fn note(&self, kind: &str, message: impl std::fmt::Display) {
        self.stderr_line(&format!("arc: {kind}: {}", escape(&message.to_string())));
    }

    /// How the command ended, if it did its job: with warnings if any were printed.
    pub fn outcome(&self) -> Outcome {
        if self.warned.load(Ordering::Relaxed) {
            Outcome::Warnings
        } else {
            Outcome::Clean
        }
    }

    /// With `-v`, prints one path to stdout. Lines are written whole under stdout's lock, so
    /// threads never interleave within a line; a closed stdout only stops the listing. The
    /// path is only built when it will be printed.
    pub fn path<S: AsRef<str>>(&self, path: impl FnOnce() -> S) {
        if !self.verbose {
            return;
        }
        let path = path();
        let line = escape(path.as_ref());
        if self.paths_on_stderr {
            self.stderr_line(&line);
        } else {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }

    /// A whole line on stderr, after clearing the progress line if one is shown.
    fn stderr_line(&self, line: &str) {
        let mut shown = self.line_shown.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if *shown {
            let _ = write!(err, "\r\x1b[K");
            *shown = false;
        }
        let _ = writeln!(err, "{line}");
    }

    /// Redraws the progress line; `last` ends it with a newline (the summary).
    pub(super) fn draw(&self, line: &str, last: bool) {
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
