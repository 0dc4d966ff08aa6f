//! Text a user reads, pinned: `--help` of every command and representative messages (usage
//! errors, each class of error of docs/SECURITY.md, warnings, escaped names), one golden file
//! each under `tests/golden/text/`, holding the command, its exit status, stdout and stderr.
//! A change to what users read shows in review as a diff of those files.
//!
//! They are regenerated with the golden archives, by the same switch (see tests/golden.rs),
//! then reviewed as a diff:
//!
//! ```text
//! ARC_REGENERATE_GOLDEN=1 cargo test --test tests -- --ignored regenerate_golden
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{assemble, assemble_cbor, compress, stamp_mtimes, BlockRecord, Spec, TestEnv};

/// A tree whose names need escaping: a backslash, a tab, a newline, an escape sequence, a
/// right-to-left override that would show `exe.txt` as `txt.exe`, and a zero-width space.
fn tricky_tree(env: &TestEnv) {
    env.file("x/hello.txt", "hello\n");
    env.file("x/a\\b", "backslash\n");
    env.file("x/tab\there", "tab\n");
    env.file("x/new\nline", "newline\n");
    env.file("x/esc\u{1b}[31mred", "escape\n");
    env.file("x/evil\u{202e}txt.exe", "bidi\n");
    env.file("x/zero\u{200b}width", "zero width\n");
    env.file("x/del\u{7f}c1\u{85}", "DEL and C1\n");
    env.file("x/sub/deep.txt", "deep\n");
    // Fixed times, so that long and JSON listings are the same every run.
    stamp_mtimes(&env.path("x"), 7);
}

/// The tricky tree and `x.arc` made of it.
fn archived(env: &TestEnv) {
    tricky_tree(env);
    env.arc(["write", "-o", "x.arc", "x"]).success();
}

/// `x.arc` with byte `at` (counted from the end when negative) flipped.
fn damaged(env: &TestEnv, at: i64) {
    archived(env);
    let path = env.path("x.arc");
    let mut bytes = fs::read(&path).expect("reading x.arc");
    let at = if at < 0 { bytes.len() - at.unsigned_abs() as usize } else { at as usize };
    bytes[at] ^= 0x40;
    fs::write(&path, bytes).expect("writing x.arc");
}

/// `x.arc` with a byte of its first block flipped.
fn damaged_block(env: &TestEnv) {
    archived(env);
    let block = crate::support::harness::index_of(&env.path("x.arc")).blocks[0];
    damaged(env, block.offset as i64 + 4);
}

/// `x.arc` cut inside its final record: its index and trailer are lost, its blocks are not.
fn cut_archive(env: &TestEnv) {
    archived(env);
    let path = env.path("x.arc");
    let bytes = fs::read(&path).expect("reading x.arc");
    let index = crate::support::index_offset(&bytes);
    fs::write(&path, &bytes[..index - 5]).expect("writing x.arc");
}

fn write_archive(env: &TestEnv, bytes: &[u8]) {
    fs::write(env.path("x.arc"), bytes).expect("writing x.arc");
}

/// `x.arc` holding 30 files in 30 blocks, every block's checksum wrong.
fn all_blocks_damaged(env: &TestEnv) {
    let spec =
        (0..30).fold(Spec::new().dir(0, "r"), |spec, i| spec.file(1, &format!("f{i:02}"), [i as u8; 100]));
    let (mut record, data) = spec.record();
    let frames: Vec<Vec<u8>> = data.chunks(100).map(compress).collect();
    record.blocks = BlockRecord {
        lens: frames.iter().map(|f| f.len() as u64).collect(),
        raw_lens: vec![100; frames.len()],
        hashes: vec![0; frames.len()],
        records: vec![0; frames.len() + 1],
    };
    write_archive(env, &assemble(&frames.concat(), &record));
}

type Setup = fn(&TestEnv);

/// Each case: golden file name, what to prepare, and arc's arguments.
fn cases() -> Vec<(&'static str, Setup, Vec<&'static str>)> {
    fn none(_: &TestEnv) {}
    vec![
        ("help", none, vec!["--help"]),
        ("help-write", none, vec!["write", "--help"]),
        ("help-read", none, vec!["read", "--help"]),
        ("help-list", none, vec!["list", "--help"]),
        ("help-verify", none, vec!["verify", "--help"]),
        ("help-cat", none, vec!["cat", "--help"]),
        ("help-completions", none, vec!["completions", "--help"]),
        ("help-mount", none, vec!["mount", "--help"]),
        ("mount-not-a-directory", archived, vec!["mount", "x.arc", "x/hello.txt"]),
        ("mount-unknown-option", archived, vec!["mount", "-o", "rw,exec", "x.arc", "x"]),
        ("usage-bare", none, vec![]),
        ("usage-typo-command", none, vec!["wirte", "-o", "x.arc", "x"]),
        ("usage-typo-flag", archived, vec!["list", "--jsn", "x.arc"]),
        ("usage-missing-output", tricky_tree, vec!["write", "x"]),
        ("usage-block-size", tricky_tree, vec!["write", "--block-size", "1KiB", "-o", "y.arc", "x"]),
        ("list-escaped-names", archived, vec!["list", "x.arc"]),
        (
            "list-printed-name-typed-back",
            archived,
            vec!["list", "x.arc", "x/a\\\\b", "x/evil\\u{202e}txt.exe", "x/tab\\there", "x/new\\nline"],
        ),
        ("read-verbose-escaped", archived, vec!["read", "-v", "x.arc", "-C", "out"]),
        (
            "read-refuses-existing",
            |env| {
                archived(env);
                env.arc(["read", "x.arc", "-C", "out"]).success();
            },
            vec!["read", "x.arc", "-C", "out"],
        ),
        (
            "read-refuses-dir-for-file",
            |env| {
                archived(env);
                env.mkdir("out/x/hello.txt");
            },
            vec!["read", "--overwrite", "x.arc", "-C", "out"],
        ),
        ("read-path-not-found", archived, vec!["read", "x.arc", "-C", "out", "x/no\u{202e}pe"]),
        ("list-glob-matches-nothing", archived, vec!["list", "x.arc", "--glob", "*.nothing"]),
        (
            "list-not-an-archive",
            |env| {
                env.file("x.arc", "just some text, long enough to be more than a header\n");
            },
            vec!["list", "x.arc"],
        ),
        ("list-missing-archive", none, vec!["list", "missing.arc"]),
        (
            "list-truncated",
            |env| {
                archived(env);
                let bytes = fs::read(env.path("x.arc")).expect("reading x.arc");
                write_archive(env, &bytes[..bytes.len() / 2]);
            },
            vec!["list", "x.arc"],
        ),
        ("list-newer-version", |env| damaged(env, 8), vec!["list", "x.arc"]),
        ("list-index-checksum", |env| damaged(env, -40), vec!["list", "x.arc"]),
        (
            "list-malformed-cbor",
            |env| write_archive(env, &assemble_cbor(&[], &[0x1c])),
            vec!["list", "x.arc"],
        ),
        (
            "list-index-ends-early",
            |env| write_archive(env, &assemble_cbor(&[], &[0xb3])),
            vec!["list", "x.arc"],
        ),
        (
            "list-index-wrong-type",
            |env| write_archive(env, &assemble_cbor(&[], &[0x05])),
            vec!["list", "x.arc"],
        ),
        (
            "read-unsafe-name",
            |env| {
                write_archive(env, &Spec::new().dir(0, "r").file(1, "..", "escape").archive());
            },
            vec!["read", "x.arc", "-C", "out"],
        ),
        ("read-damaged-block", damaged_block, vec!["read", "x.arc", "-C", "out"]),
        ("verify-damaged-block", damaged_block, vec!["verify", "x.arc"]),
        // A flip inside the record before the first block: only verify reads records.
        ("verify-damaged-record", |env| damaged(env, 40), vec!["verify", "x.arc"]),
        ("read-cut-archive", cut_archive, vec!["read", "x.arc", "-C", "out"]),
        ("read-salvage-cut-archive", cut_archive, vec!["read", "--salvage", "x.arc", "-C", "out"]),
        ("verify-cut-archive", cut_archive, vec!["verify", "x.arc"]),
        ("verify-many-damaged-blocks", all_blocks_damaged, vec!["verify", "x.arc"]),
        (
            "read-block-of-two-frames",
            |env| {
                let two = [compress(b"hello"), compress(b"hidden")].concat();
                let (record, _) = Spec::new().dir(0, "r").file(1, "f", "hello").record();
                write_archive(env, &crate::support::craft_frames(record, &[(two, 5)]));
            },
            vec!["read", "x.arc", "-C", "out"],
        ),
        ("list-json-escaped", archived, vec!["list", "--json", "x.arc"]),
        ("list-long", archived, vec!["list", "-l", "x.arc"]),
        ("write-missing-input", none, vec!["write", "-o", "y.arc", "missing"]),
        ("write-archive-into-itself", archived, vec!["write", "-o", "x.arc", "x.arc"]),
        (
            "write-stores-fifo-ignores-socket",
            |env| {
                env.file("x/hello.txt", "hello\n");
                crate::support::make_fifo(&env.path("x/fifo"));
                drop(std::os::unix::net::UnixListener::bind(env.path("x/socket")).expect("binding a socket"));
            },
            vec!["write", "-o", "y.arc", "x"],
        ),
    ]
}

/// What a person sees of one run: the command, the exit status, stdout and stderr, with the
/// test's temporary directory written as `$TMP`.
fn transcript(env: &TestEnv, args: &[&str]) -> String {
    let run = env.arc(args);
    let tmp = env.root().to_string_lossy().into_owned();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).replace(&tmp, "$TMP");
    let shown: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "$ arc {}\nexit status: {}\n--- stdout\n{}--- stderr\n{}",
        shown.join(" "),
        run.code,
        text(&run.stdout),
        text(run.stderr.as_bytes())
    )
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/text")
}

/// Every case's golden file name and what arc prints for it now.
fn transcripts() -> Vec<(PathBuf, String)> {
    cases()
        .into_iter()
        .map(|(name, setup, args)| {
            let env = TestEnv::new();
            setup(&env);
            (golden_dir().join(format!("{name}.txt")), transcript(&env, &args))
        })
        .collect()
}

/// Rewrites every golden text file; called by `golden::regenerate_golden`.
pub fn regenerate() {
    let dir = golden_dir();
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("removing tests/golden/text");
    }
    fs::create_dir_all(&dir).expect("creating tests/golden/text");
    for (file, now) in transcripts() {
        fs::write(&file, now).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    }
}

#[test]
fn golden_text_is_what_arc_prints() {
    let mut changed = Vec::new();
    for (file, now) in transcripts() {
        let golden = fs::read_to_string(&file).unwrap_or_default();
        if golden != now {
            changed.push(format!("{}:\n--- golden\n{golden}--- now\n{now}", file.display()));
        }
    }
    assert!(
        changed.is_empty(),
        "what arc prints changed; if intended, regenerate (see tests/ui_text.rs) and review:\n\n{}",
        changed.join("\n")
    );
}

#[test]
fn golden_text_files_are_all_cases() {
    let names: Vec<String> = cases().into_iter().map(|(name, _, _)| format!("{name}.txt")).collect();
    assert!(names.len() >= 25, "fewer cases than the issue asks for");
    for entry in fs::read_dir(golden_dir()).expect("listing tests/golden/text") {
        let name = entry.expect("listing").file_name().to_string_lossy().into_owned();
        assert!(names.contains(&name), "tests/golden/text/{name} belongs to no case: remove it");
    }
}
