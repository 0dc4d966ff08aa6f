//! The command line a tar user expects: `arc cat`, completions and the man page, `list -v`,
//! usage errors with clap's suggestions. (Their exact text is pinned by tests/ui_text.rs.)

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::support::{run, TestEnv, ARC};

/// A small tree `t/` with files in two blocks' worth of a 64 KiB block size, archived as
/// `t.arc`.
fn archived(env: &TestEnv) -> Vec<u8> {
    let big: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    env.file("t/a.txt", "alpha\n");
    env.file("t/big", &big);
    env.file("t/sub/b.txt", "bravo\n");
    env.symlink("a.txt", "t/link");
    env.arc(["write", "--block-size", "64KiB", "-o", "t.arc", "t"]).success();
    big
}

#[test]
fn cat_writes_files_in_the_order_given() {
    let env = TestEnv::new();
    let big = archived(&env);
    assert_eq!(env.arc(["cat", "t.arc", "t/a.txt"]).success().stdout, b"alpha\n");
    // A file spanning blocks, then another: in the order given, not the archive's.
    let both = env.arc(["cat", "t.arc", "t/sub/b.txt", "t/big"]).success().stdout.clone();
    assert_eq!(both, [b"bravo\n".as_slice(), &big].concat());
    // A directory: its files in archive order (symlinks have no contents to write).
    let all = env.arc(["cat", "t.arc", "t"]).success().stdout.clone();
    assert_eq!(all, [b"alpha\n".as_slice(), &big, b"bravo\n"].concat());
}

#[test]
fn cat_writes_holes_as_zeros_and_hard_links_as_their_file() {
    let env = TestEnv::new();
    // Data pieces spanning 64 KiB blocks, holes between, at the start and at the end.
    let sparse = env.path("t/sparse");
    env.mkdir("t");
    let file = fs::File::create(&sparse).expect("create");
    file.set_len(3 << 20).expect("set_len");
    let piece = crate::support::pseudo_random(100_000, 9);
    for at in [200_000u64, 1 << 20, (3 << 20) - 100_000] {
        std::os::unix::fs::FileExt::write_all_at(&file, &piece, at).expect("write");
    }
    drop(file);
    fs::hard_link(&sparse, env.path("t/again")).expect("link");
    env.arc(["write", "--block-size", "64KiB", "-o", "t.arc", "t"]).success();
    let json = env.arc(["list", "--json", "t.arc"]).success().stdout_str();
    assert!(json.contains("\"extents\":[["), "stored sparse: {json}");
    let expected = fs::read(&sparse).expect("read");
    assert_eq!(env.arc(["cat", "t.arc", "t/sparse"]).success().stdout, expected);
    assert_eq!(env.arc(["cat", "t.arc", "t/again"]).success().stdout, expected);
    // A directory: each name's contents, in archive order (`again` first).
    assert_eq!(env.arc(["cat", "t.arc", "t"]).success().stdout, [&expected[..], &expected[..]].concat());
}

/// `arc cat` into a regular file (`> file`) writes blocks at their offsets in parallel; the
/// file must hold exactly what a pipe gets, after what was there, with the offset left at the
/// end; opened for appending (`>> file`) it writes in order.
#[test]
fn cat_into_a_file_is_what_a_pipe_gets() {
    use std::io::{Seek, Write};
    let env = TestEnv::new();
    env.mkdir("t");
    let sparse = fs::File::create(env.path("t/sparse")).expect("create");
    sparse.set_len(5 << 20).expect("set_len");
    std::os::unix::fs::FileExt::write_all_at(&sparse, &crate::support::pseudo_random(300_000, 7), 1 << 20)
        .expect("write");
    drop(sparse);
    env.file("t/big", crate::support::pseudo_random(3 << 20, 8));
    env.arc(["write", "--block-size", "64KiB", "-o", "t.arc", "t"]).success();
    let piped = env.arc(["cat", "t.arc", "t/sparse", "t/big", "t/sparse"]).success().stdout.clone();
    assert_eq!(piped.len(), (13 << 20) as usize);
    let cat_into = |file: fs::File| {
        let run = crate::support::run(
            Command::new(crate::support::ARC)
                .args(["cat", "t.arc", "t/sparse", "t/big", "t/sparse"])
                .current_dir(env.root())
                .stdout(file),
        );
        run.success();
    };
    // A fresh file, with something before arc's bytes and after them (the offset moved on).
    let mut out = fs::File::create(env.path("out")).expect("create");
    out.write_all(b"before\n").expect("write");
    cat_into(out.try_clone().expect("dup"));
    assert_eq!(
        out.stream_position().expect("offset"),
        7 + piped.len() as u64,
        "the offset is left at the end"
    );
    out.write_all(b"after\n").expect("write");
    assert_eq!(fs::read(env.path("out")).expect("read"), [&b"before\n"[..], &piped, b"after\n"].concat());
    // Over older, longer contents (no O_TRUNC): the holes are written as zeros.
    fs::write(env.path("over"), vec![b'x'; 20 << 20]).expect("write");
    cat_into(fs::OpenOptions::new().write(true).open(env.path("over")).expect("open"));
    let over = fs::read(env.path("over")).expect("read");
    assert_eq!(&over[..piped.len()], &piped[..]);
    assert!(over[piped.len()..].iter().all(|&b| b == b'x'));
    // Appending.
    fs::write(env.path("appended"), b"head\n").expect("write");
    cat_into(fs::OpenOptions::new().append(true).open(env.path("appended")).expect("open"));
    assert_eq!(fs::read(env.path("appended")).expect("read"), [&b"head\n"[..], &piped].concat());
}

#[test]
fn cat_refuses_what_it_cannot_write_before_writing_anything() {
    let env = TestEnv::new();
    archived(&env);
    for (path, why) in
        [("t/nope", "t/nope is not in the archive"), ("t/link", "t/link is a symlink (to a.txt)")]
    {
        let run = env.arc(["cat", "t.arc", "t/a.txt", path]);
        assert!(run.error().contains(why), "{}", run.describe());
        assert!(run.stdout.is_empty(), "{}", run.describe());
    }
    let run = env.arc(["cat", "t.arc"]);
    run.code(2);
    let first = run.stderr.lines().next().unwrap_or_default();
    assert_eq!(first, "arc: error: the following required arguments were not provided: <PATH>...");
}

#[test]
fn cat_into_a_closed_pipe_ends_quietly() {
    let env = TestEnv::new();
    // Many blocks, more than stdout's buffer: the writer fails while decoders are ahead.
    env.file("t/big", crate::support::pseudo_random(8 << 20, 3));
    env.arc(["write", "--block-size", "64KiB", "-o", "t.arc", "t"]).success();
    // Close arc's stdout at once: the writer fails while decoders are ahead.
    let run = arc_within_30s(&env, &["cat", "t.arc", "t/big"], true);
    assert_eq!(run.code, 0, "{}", run.describe());
    assert!(run.stderr.is_empty(), "{}", run.describe());
}

#[test]
fn list_v_is_list_l() {
    let env = TestEnv::new();
    archived(&env);
    let long = env.arc(["list", "-l", "t.arc"]).success().stdout_str();
    assert_eq!(env.arc(["list", "-v", "t.arc"]).success().stdout_str(), long);
    assert_eq!(env.arc(["list", "--verbose", "t.arc"]).success().stdout_str(), long);
    assert!(long.lines().all(|l| l.contains(" UTC ")), "{long}");
}

#[test]
fn completions_generate_and_bash_completes_a_command() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = env.arc(["completions", shell]).success().stdout_str();
        assert!(script.contains("write") && script.contains("block-size"), "{shell}: {script}");
    }
    let Ok(bash) = which("bash") else {
        eprintln!("note: no bash here; the completion is not exercised");
        return;
    };
    fs::write(env.path("arc.bash"), env.arc(["completions", "bash"]).success().stdout.clone())
        .expect("write");
    // What bash does on `arc wr<TAB>`: the completion function fills COMPREPLY.
    let probe = r#"source ./arc.bash
COMP_WORDS=(arc wr); COMP_CWORD=1; COMP_LINE="arc wr"; COMP_POINT=6
_arc arc wr arc
echo "${COMPREPLY[@]}""#;
    let done = run(Command::new(bash).args(["-c", probe]).current_dir(env.root()));
    assert_eq!(done.code, 0, "{}", done.describe());
    assert_eq!(done.stdout_str().trim(), "write", "{}", done.describe());
}

#[test]
fn man_page_is_roff_with_every_command() {
    let env = TestEnv::new();
    let page = env.arc(["man"]).success().stdout_str();
    assert!(page.contains(".TH arc 1"), "{page}");
    for command in ["write", "read", "list", "verify", "cat", "completions"] {
        assert!(page.contains(command), "the man page does not name {command}");
    }
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .ok_or(())
}

#[test]
fn exclude_vcs_and_gitignore_store_what_git_lists() {
    let Ok(git) = which("git") else {
        eprintln!("note: git is not installed; skipping the comparison with git ls-files");
        return;
    };
    let env = TestEnv::new();
    for (path, contents) in [
        ("repo/.gitignore", "target/\n*.log\n/only-top.txt\n"),
        ("repo/src/main.rs", "fn main() {}\n"),
        ("repo/src/only-top.txt", "not at the top: kept\n"),
        ("repo/only-top.txt", "ignored\n"),
        ("repo/target/debug/app", "binary\n"),
        ("repo/build.log", "ignored\n"),
        ("repo/sub/.gitignore", "!keep.log\ntmp/\n"),
        ("repo/sub/keep.log", "re-included\n"),
        ("repo/sub/tmp/scratch", "ignored\n"),
        ("repo/sub/deeper/drop.log", "ignored by the top file\n"),
        ("repo/untracked.txt", "untracked, not ignored\n"),
        ("repo/private.key", "excluded by .git/info/exclude\n"),
    ] {
        env.file(path, contents);
    }
    let git_in_repo = |args: &[&str]| run(Command::new(&git).args(args).current_dir(env.path("repo")));
    git_in_repo(&["init", "-q"]).code(0);
    fs::write(env.path("repo/.git/info/exclude"), "private.key\n").expect("writing .git/info/exclude");
    git_in_repo(&["add", "src", ".gitignore", "sub"]).code(0);
    let listed = git_in_repo(&["ls-files", "--cached", "--others", "--exclude-standard"]);
    let mut expected: Vec<String> = listed.stdout_str().lines().map(|l| format!("repo/{l}")).collect();
    expected.sort();

    env.arc(["write", "--exclude-vcs", "--gitignore", "-o", "x.arc", "repo"]).success();
    let mut stored: Vec<String> = env
        .arc(["list", "x.arc"])
        .success()
        .stdout_lines()
        .into_iter()
        .filter(|l| !l.ends_with('/'))
        .collect();
    stored.sort();
    assert_eq!(stored, expected);
    // Without the options, everything is there, .git included.
    env.arc(["write", "-o", "all.arc", "repo"]).success();
    let all = env.arc(["list", "all.arc"]).success().stdout_str();
    assert!(all.contains("repo/.git/HEAD") && all.contains("repo/target/debug/app"), "{all}");
}

#[test]
fn exclude_patterns_round_trip_the_rest() {
    let env = TestEnv::new();
    for path in ["t/keep.c", "t/skip.o", "t/deep/also.o", "t/deep/keep.h", "t/build/out", "t/src/build/kept"]
    {
        env.file(path, path);
    }
    env.file("patterns", "# comments and blank lines are fine\n\n*.o\n");
    env.arc(["write", "--exclude", "t/build", "--exclude-from", "patterns", "-o", "x.arc", "t"]).success();
    let listed = env.arc(["list", "x.arc"]).success().stdout_lines();
    assert_eq!(
        listed,
        ["t/", "t/deep/", "t/deep/keep.h", "t/keep.c", "t/src/", "t/src/build/", "t/src/build/kept"]
    );
    env.arc(["read", "x.arc", "-C", "out"]).success();
    assert_eq!(fs::read_to_string(env.path("out/t/src/build/kept")).expect("read"), "t/src/build/kept");
    let run = env.arc(["write", "--exclude-from", "missing", "-o", "y.arc", "t"]);
    assert!(run.error().contains("reading missing"), "{}", run.describe());
}

#[test]
fn a_file_left_out_is_never_opened() {
    // The walker opens the files a directory lists as regular before it looks at them (one
    // lookup for both), but never one --exclude leaves out: opening a file can hang (a
    // dead network mount) or be watched. inotify sees every open in the directory.
    let env = TestEnv::new();
    env.file("t/keep.c", "kept");
    env.file("t/skip.o", "left out");
    let dir = std::ffi::CString::new(env.path("t").as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: plain system calls on a descriptor this test owns (closed when `watch` drops),
    // with a buffer of its own.
    let watch = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if watch < 0 {
        // EMFILE on a host whose inotify instances are used up: nothing to watch with.
        let why = std::io::Error::last_os_error();
        eprintln!("note: inotify_init1 failed ({why}): a_file_left_out_is_never_opened skipped");
        return;
    }
    let watch = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(watch) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&watch);
    assert!(unsafe { libc::inotify_add_watch(raw, dir.as_ptr(), libc::IN_OPEN) } >= 0, "inotify_add_watch");
    env.arc(["write", "--exclude", "*.o", "-o", "x.arc", "t"]).success();
    let mut events = vec![0u8; 1 << 16];
    let n = unsafe { libc::read(raw, events.as_mut_ptr().cast(), events.len()) };
    assert!(n > 0, "no open seen at all");
    let mut opened = Vec::new();
    let mut at = 0;
    let head = std::mem::size_of::<libc::inotify_event>();
    while at + head <= n as usize {
        let len = u32::from_ne_bytes(events[at + 12..at + 16].try_into().expect("len")) as usize;
        let name = &events[at + head..at + head + len];
        opened.push(String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or(b"")).into_owned());
        at += head + len;
    }
    assert!(opened.iter().any(|name| name == "keep.c"), "the kept file is opened: {opened:?}");
    assert!(!opened.iter().any(|name| name == "skip.o"), "the file left out is opened: {opened:?}");
    assert_eq!(env.arc(["list", "x.arc"]).success().stdout_lines(), ["t/", "t/keep.c"]);
}

#[test]
fn strip_components_leaves_out_leading_directories() {
    let env = TestEnv::new();
    archived(&env);
    env.arc(["read", "--strip-components", "1", "t.arc", "-C", "one"]).success();
    let mut names: Vec<String> = fs::read_dir(env.path("one"))
        .expect("ls")
        .map(|e| e.expect("ls").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "big", "link", "sub"]);
    assert_eq!(fs::read_to_string(env.path("one/sub/b.txt")).expect("read"), "bravo\n");
    assert_eq!(fs::read_link(env.path("one/link")).expect("readlink").to_str(), Some("a.txt"));
    // Two components: only what is below t/sub/ is left; a selection still works.
    env.arc(["read", "--strip-components", "2", "t.arc", "-C", "two", "t/sub"]).success();
    assert_eq!(fs::read_dir(env.path("two")).expect("ls").count(), 1);
    assert_eq!(fs::read_to_string(env.path("two/b.txt")).expect("read"), "bravo\n");
    // Messages name the path written.
    let run = env.arc(["read", "--strip-components", "1", "t.arc", "-C", "one"]);
    assert!(
        run.error().contains("refusing to replace existing one/a.txt (and 3 more)"),
        "{}",
        run.describe()
    );
}

#[test]
fn an_archive_of_nothing_reads_as_nothing() {
    // Everything left out: tar makes an empty archive then, and so does arc; it lists, reads
    // and verifies as empty.
    let env = TestEnv::new();
    env.file("t/a", "a");
    env.arc(["write", "--exclude", "*", "-o", "x.arc", "t"]).success();
    assert!(env.arc(["list", "x.arc"]).success().stdout.is_empty());
    env.arc(["verify", "x.arc"]).success();
    env.arc(["read", "x.arc", "-C", "out"]).success();
    assert_eq!(fs::read_dir(env.path("out")).expect("ls").count(), 0);
}

#[test]
fn write_reads_inputs_from_the_directories_given_before_them() {
    let env = TestEnv::new();
    env.file("a/proj/x", "in a");
    env.file("b/c/other/y", "in b/c");
    env.file("top", "here");
    // -C applies to the inputs after it, each relative to the one before; OUT stays where
    // arc was started, as with tar.
    env.arc(["write", "-o", "x.arc", "-C", "a", "proj", "-C", "../b", "-C", "c", "other", "top"]).code(2);
    env.arc(["write", "-o", "x.arc", "top", "-C", "a", "proj", "-C", "../b", "-C", "c", "other"]).success();
    let listed = env.arc(["list", "x.arc"]).success().stdout_lines();
    assert_eq!(listed, ["other/", "other/y", "proj/", "proj/x", "top"]);
    assert!(!env.path("a/x.arc").exists() && env.path("x.arc").exists());
}

#[test]
fn relative_inputs_keep_their_path_and_absolute_ones_their_name() {
    let env = TestEnv::new();
    env.file("proj1/src/a.rs", "one");
    env.file("proj1/src/sub/b.rs", "one b");
    env.file("proj1/README", "not archived: only proj1/src was named");
    env.file("proj2/src/a.rs", "two");
    env.file("proj1/lib/c.rs", "lib");
    // Two inputs with the same last name, given in any order: stored under their paths, the
    // directory on the way (proj1) once, with only what was named inside it.
    env.arc(["write", "-o", "x.arc", "proj2/src", "./proj1/src", "proj1/lib/"]).success();
    let listed = env.arc(["list", "x.arc"]).success().stdout_lines();
    assert_eq!(
        listed,
        [
            "proj1/",
            "proj1/lib/",
            "proj1/lib/c.rs",
            "proj1/src/",
            "proj1/src/a.rs",
            "proj1/src/sub/",
            "proj1/src/sub/b.rs",
            "proj2/",
            "proj2/src/",
            "proj2/src/a.rs"
        ]
    );
    env.arc(["read", "x.arc", "-C", "out"]).success();
    for path in ["proj1/src/a.rs", "proj1/src/sub/b.rs", "proj2/src/a.rs", "proj1/lib/c.rs"] {
        assert_eq!(fs::read(env.path("out").join(path)).expect(path), fs::read(env.path(path)).expect(path));
    }
    assert!(!env.path("out/proj1/README").exists());
    // The directory on the way keeps its own mode and mtime.
    crate::support::set_mode(&env.path("proj1"), 0o750);
    env.arc(["write", "-o", "y.arc", "proj1/src"]).success();
    env.arc(["read", "y.arc", "-C", "out2"]).success();
    let mode = fs::metadata(env.path("out2/proj1")).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750);
    // An absolute input is stored under its last component (DEST/<name of DIR>).
    let absolute = env.path("proj1/src");
    env.arc([OsStr::new("write"), OsStr::new("-o"), OsStr::new("z.arc"), absolute.as_os_str()]).success();
    assert_eq!(env.arc(["list", "z.arc"]).success().stdout_lines()[0], "src/");
    // Leading `..` is removed, with a notice; an input inside another is archived once.
    let run = env.arc_in(&env.path("proj1"), ["write", "-o", "../w.arc", "../proj2/src", "src", "src/sub"]);
    assert_eq!(
        run.code(0).stderr.lines().collect::<Vec<_>>(),
        [
            "arc: notice: ../proj2/src: stored as proj2/src (leading \"..\" removed)",
            "arc: notice: src/sub: inside src, archived once"
        ]
    );
    let listed = env.arc(["list", "w.arc"]).success().stdout_lines();
    assert_eq!(
        listed,
        ["proj2/", "proj2/src/", "proj2/src/a.rs", "src/", "src/a.rs", "src/sub/", "src/sub/b.rs"]
    );
    // Two inputs stored under one path are refused.
    let run = env.arc(["write", "-o", "v.arc", "-C", "proj1", "src", "-C", "../proj2", "src"]);
    assert!(run.error().contains("two inputs are both stored as \"src\""), "{}", run.describe());
}

/// Runs arc with `args` in `env`, failing the test if it has not ended after 30 s. Its
/// stdout goes nowhere (a pipe nobody reads would fill up), or with `close_stdout` to a pipe
/// closed at once.
fn arc_within_30s(env: &TestEnv, args: &[&str], close_stdout: bool) -> crate::support::Run {
    let mut child = Command::new(ARC)
        .args(args)
        .current_dir(env.root())
        .stdin(Stdio::null())
        .stdout(if close_stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning arc");
    drop(child.stdout.take());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("waiting").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("arc {args:?} did not end within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("waiting for arc");
    crate::support::Run::from_output(format!("arc {args:?}"), output)
}

#[test]
fn a_fifo_named_gitignore_does_not_stall_the_walk() {
    let env = TestEnv::new();
    env.file("t/a", "a");
    crate::support::make_fifo(&env.path("t/.gitignore"));
    let run = arc_within_30s(&env, &["write", "--gitignore", "-o", "x.arc", "t"], false);
    // Not read as an ignore file, and stored as the FIFO it is.
    assert_eq!(run.code(0).stderr, "");
    let listed = env.arc(["list", "x.arc"]).success().stdout_lines();
    assert_eq!(listed, ["t/", "t/.gitignore", "t/a"]);
}

#[test]
fn cat_of_a_damaged_block_is_an_error_not_a_hang() {
    let env = TestEnv::new();
    env.file("t/big", crate::support::pseudo_random(4 << 20, 4));
    env.arc(["write", "--block-size", "64KiB", "-o", "t.arc", "t"]).success();
    let mut bytes = fs::read(env.path("t.arc")).expect("read");
    bytes[2 << 20] ^= 1;
    fs::write(env.path("t.arc"), bytes).expect("write");
    let run = arc_within_30s(&env, &["cat", "t.arc", "t/big"], false);
    run.code(2);
    assert!(run.stderr.contains("damaged data of t/big"), "{}", run.describe());
}

#[test]
fn strip_components_merges_directories_and_settles_files_that_land_together() {
    let env = TestEnv::new();
    env.file("s1/d/x", "from s1");
    env.file("s1/only1", "only in s1");
    env.file("s2/d/y", "from s2");
    env.file("s2/d/x", "from s2");
    env.arc(["write", "-o", "t.arc", "s1", "s2"]).success();
    // d/ from both merge; d/x from both is refused by default, naming it, before anything.
    let run = env.arc(["read", "--strip-components", "1", "t.arc", "-C", "refused"]);
    assert!(run.error().contains("refusing to replace existing refused/d/x"), "{}", run.describe());
    assert!(!env.path("refused/d").exists());
    // --keep-existing: the first wins; --overwrite: the last, whatever the threads do.
    for (mode, dest, x) in [("--keep-existing", "kept", "from s1"), ("--overwrite", "over", "from s2")] {
        env.arc(["read", "--strip-components", "1", mode, "t.arc", "-C", dest]).success();
        assert_eq!(fs::read_to_string(env.path(dest).join("d/x")).expect("d/x"), x, "{mode}");
        assert_eq!(fs::read_to_string(env.path(dest).join("d/y")).expect("d/y"), "from s2");
        assert_eq!(fs::read_to_string(env.path(dest).join("only1")).expect("only1"), "only in s1");
    }
}

#[test]
fn block_sizes_read_as_tar_and_dd_read_them() {
    // `64K` is 65,536 bytes, as dd and tar take it; `64KiB` the same; `64KB` is 64,000, too small.
    let env = TestEnv::new();
    env.file("t/a", "alpha\n");
    env.arc(["write", "-q", "--block-size", "64K", "-o", "k.arc", "t"]).success();
    env.arc(["write", "-q", "--block-size", "64KiB", "-o", "kib.arc", "t"]).success();
    assert_eq!(std::fs::read(env.path("k.arc")).ok(), std::fs::read(env.path("kib.arc")).ok());
    env.arc(["write", "-q", "--block-size", "16m", "-o", "m.arc", "t"]).success();
    let run = env.arc(["write", "-q", "--block-size", "64KB", "-o", "kb.arc", "t"]);
    run.code(2);
    assert!(run.stderr.contains("64KB is not between 64KiB and 64MiB"), "{}", run.describe());
}
