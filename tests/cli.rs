//! The command line a tar user expects: `arc cat`, completions and the man page, `list -v`,
//! usage errors with clap's suggestions. (Their exact text is pinned by tests/ui_text.rs.)

use std::fs;
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
    archived(&env);
    let mut child = Command::new(ARC)
        .args(["cat", "t.arc", "t/big", "t/big", "t/big"])
        .current_dir(env.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning arc");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("waiting for arc");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
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
