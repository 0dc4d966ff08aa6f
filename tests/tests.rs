//! The integration tests: one binary (as ripgrep's tests/tests.rs), one module per theme, all
//! of them built on [`support`]. Run one theme with `cargo test --test tests THEME::`, e.g.
//! `cargo test --test tests hostile::`.

mod support;

mod architecture;
mod cli;
mod copies;
mod errors;
mod faults;
mod fidelity;
mod fuzz_corpus;
mod golden;
mod hostile;
mod mount;
mod proptest_roundtrip;
mod real_tree;
mod records;
mod roundtrip;
mod strict;
mod terminal;
mod ui_text;
