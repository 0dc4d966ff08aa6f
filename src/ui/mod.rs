//! What arc shows a person: warnings and the progress line on stderr, `-v` paths on stdout,
//! and the one escaping rule for every name printed.
//!
//! Architecture Invariant: `ui` imports nothing else from the crate; commands hand it text
//! and counters.
//!
//! Invariant: stdout carries data only (paths with `-v`, listings). The progress line is drawn
//! only when stderr is a terminal and not `-q`; warnings always reach stderr. While a progress
//! bar is drawn, every other line is printed through it, so nothing tears.

mod console;
mod escape;
mod progress;

pub use console::{Console, Outcome};
pub use escape::{bytes_of, escape, push_escaped, text_of, unescape, write_json};
pub use progress::{with_progress, Counters, Task};
