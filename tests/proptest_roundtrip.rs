//! Property: any tree of directories, files and symlinks, with any names arc can store, any
//! modes and any mtimes, comes back from `write` then `read` exactly as it was, from the file
//! and from a pipe, and `list` prints it in order. Some files share their contents, so that
//! copies (FORMAT.md §4.8) come in every position: in their source's record or later, of
//! files that span blocks or not.
//!
//! Trees are small (file sizes below 20 000 bytes, blocks of 64 KiB) so that each case costs a
//! few short runs of the binary.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use proptest::prelude::*;

use crate::support::{assert_same_tree, expected_listing, pseudo_random, set_mode, set_mtime, TestEnv};

#[derive(Debug, Clone)]
enum Node {
    File { contents: Contents, mode: u32, mtime: (i64, u32) },
    Symlink { target: String, mtime: (i64, u32) },
    Dir { children: BTreeMap<String, Node>, mode: u32, mtime: (i64, u32) },
}

/// File contents, described rather than stored so that failures print short.
#[derive(Debug, Clone)]
enum Contents {
    Random { len: usize, seed: u64 },
    Repeated { byte: u8, len: usize },
}

impl Contents {
    fn bytes(&self) -> Vec<u8> {
        match *self {
            Contents::Random { len, seed } => pseudo_random(len, seed),
            Contents::Repeated { byte, len } => vec![byte; len],
        }
    }
}

/// Names as a user might have them: ASCII, punctuation, spaces, accents, CJK, emoji; never `.`
/// or `..`, never `/` or NUL.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._,+=@#%~'()\\-éüßçø日本語🎉]{1,12}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

fn mtime() -> impl Strategy<Value = (i64, u32)> {
    // Before 1970 to 2096, any nanosecond; filesystems without pre-1970 times store something
    // else, but the same for source and copy.
    (-1_000_000_000i64..4_000_000_000, 0u32..1_000_000_000)
}

fn contents() -> impl Strategy<Value = Contents> {
    prop_oneof![
        2 => Just(Contents::Repeated { byte: 0, len: 0 }),
        4 => (0usize..600, any::<u64>()).prop_map(|(len, seed)| Contents::Random { len, seed }),
        2 => (0usize..20_000, any::<u64>()).prop_map(|(len, seed)| Contents::Random { len, seed }),
        2 => (any::<u8>(), 0usize..20_000).prop_map(|(byte, len)| Contents::Repeated { byte, len }),
        // Few enough that files of the same contents, large enough to be copies, are common.
        3 => (prop::sample::select(vec![600usize, 5_000, 19_000]), 0u64..2)
            .prop_map(|(len, seed)| Contents::Random { len, seed }),
    ]
}

fn file_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o644, 0o600, 0o755, 0o444, 0o640, 0o700, 0o751, 0o4755, 0o2711])
}

fn dir_mode() -> impl Strategy<Value = u32> {
    prop::sample::select(vec![0o755, 0o700, 0o555, 0o1777, 0o750, 0o2775])
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        3 => (contents(), file_mode(), mtime()).prop_map(|(contents, mode, mtime)| Node::File { contents, mode, mtime }),
        1 => ("[a-z0-9 ./é-]{1,24}", mtime()).prop_map(|(target, mtime)| Node::Symlink { target, mtime }),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        (prop::collection::btree_map(name(), inner, 0..6), dir_mode(), mtime())
            .prop_map(|(children, mode, mtime)| Node::Dir { children, mode, mtime })
    })
}

fn tree() -> impl Strategy<Value = Node> {
    (prop::collection::btree_map(name(), node(), 0..8), dir_mode(), mtime())
        .prop_map(|(children, mode, mtime)| Node::Dir { children, mode, mtime })
}

/// Creates `node` at `path`; modes and mtimes are applied after the children, so that a
/// directory keeps its own.
fn build(path: &Path, node: &Node) {
    match node {
        Node::File { contents, mode, mtime } => {
            fs::write(path, contents.bytes()).expect("write");
            set_mode(path, *mode);
            set_mtime(path, mtime.0, mtime.1);
        }
        Node::Symlink { target, mtime } => {
            std::os::unix::fs::symlink(target, path).expect("symlink");
            set_mtime(path, mtime.0, mtime.1);
        }
        Node::Dir { children, mode, mtime } => {
            fs::create_dir(path).expect("mkdir");
            for (name, child) in children {
                build(&path.join(name), child);
            }
            set_mode(path, *mode);
            set_mtime(path, mtime.0, mtime.1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(tree in tree()) {
        let env = TestEnv::new();
        let src = env.mkdir("src").join("root tree");
        build(&src, &tree);
        // Files are copies of others only once older than the write (FORMAT.md §4.8).
        std::thread::sleep(std::time::Duration::from_millis(60));
        env.arc(["write", "--block-size", "64KiB", "-o", "t.arc", "-C", "src", "root tree"]).success();
        env.arc(["read", "t.arc", "-C", "out"]).success();
        assert_same_tree(&src, &env.path("out/root tree"));
        let archive = fs::read(env.path("t.arc")).expect("reading the archive");
        env.arc_fed(&archive, ["read", "-", "-C", "piped"]).success();
        assert_same_tree(&src, &env.path("piped/root tree"));
        let listed = env.arc(["list", "t.arc"]).success().stdout_lines();
        prop_assert_eq!(listed, expected_listing(&src, "root tree"));
    }
}
