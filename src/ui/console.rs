//! The console: stderr shared by warnings and the progress line, stdout for `-v` paths.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use indicatif::ProgressBar;

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
    quiet: bool,
    show_progress: bool,
    verbose: bool,
    /// `-v` paths go to stderr when stdout carries the archive itself.
    paths_on_stderr: bool,
    /// The progress bar while one is drawn: every other line goes through it.
    bar: Mutex<Option<ProgressBar>>,
    warned: AtomicBool,
}

impl Console {
    pub fn new(quiet: bool, verbose: bool) -> Console {
        Console {
            quiet,
            show_progress: !quiet && std::io::stderr().is_terminal(),
            verbose,
            paths_on_stderr: false,
            bar: Mutex::new(None),
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

    /// Prints `arc: notice: MESSAGE`, something worth knowing that is no loss; `-q` silences it.
    pub fn notice(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            self.note("notice", message);
        }
    }

    /// Prints `arc: KIND: MESSAGE` on stderr, escaped, on a line of its own.
    pub fn note(&self, kind: &str, message: impl std::fmt::Display) {
        let line = format!("arc: {kind}: {}", escape(&message.to_string()));
        self.around_bar(|| {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        });
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
        self.around_bar(|| {
            let _ = if self.paths_on_stderr {
                writeln!(std::io::stderr().lock(), "{line}")
            } else {
                writeln!(std::io::stdout().lock(), "{line}")
            };
        });
    }

    /// Whether a progress line is drawn (stderr is a terminal, and no `-q`).
    pub(super) fn shows_progress(&self) -> bool {
        self.show_progress
    }

    /// From now on, lines are printed through `bar`.
    pub(super) fn attach(&self, bar: ProgressBar) {
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }

    pub(super) fn detach(&self) {
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The summary line, once the bar is gone.
    pub(super) fn summary(&self, line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    /// Runs `print` with the bar, if one is drawn, stepped aside, so that the line printed
    /// never shares a terminal line with it.
    fn around_bar(&self, print: impl FnOnce()) {
        let bar = self.bar.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}
