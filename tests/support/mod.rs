//! What the integration tests share: running arc ([`run`]), building and comparing trees
//! ([`tree`]), trees of everything arc keeps as root and their exact comparison
//! ([`fidelity`]), crafting archives byte by byte ([`craft`]), sentinels around DEST
//! ([`scene`]), and arc's library run in-process, fuzz checks included ([`harness`]).
//!
//! craft.rs, scene.rs, tree.rs and harness.rs are also included by the fuzz crate
//! (fuzz/src/lib.rs), so they refer to each other as `super::...` and use nothing that only
//! cargo's test build provides; run.rs, which needs the binary, and fidelity.rs are the
//! tests' alone.

pub mod craft;
pub mod fidelity;
pub mod harness;
pub mod run;
pub mod scene;
pub mod tree;

pub use craft::*;
pub use run::*;
pub use scene::*;
pub use tree::*;
