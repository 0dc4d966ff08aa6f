//! The checks the fuzz targets run live with the integration tests' support code, in
//! tests/support/harness.rs (its module documentation describes the input format), so that the
//! tests replay the committed corpus through exactly the same checks on stable Rust. This crate
//! includes that file and the helpers it uses; the targets call the re-exports below.

// The fuzz targets use a part of what the helpers offer the tests.
#[allow(dead_code)]
#[path = "../../tests/support/craft.rs"]
mod craft;
#[allow(dead_code)]
#[path = "../../tests/support/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../../tests/support/scene.rs"]
mod scene;
#[allow(dead_code)]
#[path = "../../tests/support/tree.rs"]
mod tree;

pub use harness::{check_index, check_read, check_stream, inputs_from_archive};
