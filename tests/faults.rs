//! Faults from outside the archive: files that cannot be read, a full disk, files that change
//! while they are archived, and SIGINT in the middle of `write` and `read`. In each case arc
//! ends with the promised exit status and leaves no partial output: no temporary file, no
//! half-written archive, no incomplete file under its final name (docs/SECURITY.md).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::support::{
    arc, make_fifo, pseudo_random as random_bytes, run_program, set_mode, snapshot_readable,
    snapshot_with_contents, temp_files, tree, Kind, Run, TestEnv, ARC,
};

/// `len` bytes of text made of a few hundred pseudo-words: zstd has real work to do on it at
/// higher levels, which keeps arc busy long enough to be interrupted.
fn pseudo_text(len: usize, seed: u64) -> Vec<u8> {
    let letters = random_bytes(4096, seed);
    let words: Vec<&[u8]> = letters.chunks(8).map(|w| &w[..2 + usize::from(w[0]) % 7]).collect();
    let choices = random_bytes(len / 3 + 16, seed + 1);
    let mut out = Vec::with_capacity(len + 16);
    for (i, &c) in choices.iter().enumerate() {
        if out.len() >= len {
            break;
        }
        out.extend(words[(usize::from(c) + i % 251) % words.len()].iter().map(|b| b'a' + b % 26));
        out.push(if c % 11 == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// A test environment everyone may write to (for runs as `nobody`).
fn open_env() -> TestEnv {
    let env = TestEnv::new();
    set_mode(env.root(), 0o777);
    env
}

fn os(path: &Path) -> &std::ffi::OsStr {
    path.as_os_str()
}

/// How to run arc as a user who cannot read mode-000 files: through setpriv as `nobody` when
/// the tests run as root; `None` (with a note) if that is impossible.
pub(crate) fn as_unprivileged() -> Option<Vec<&'static str>> {
    if !rustix::process::geteuid().is_root() {
        return Some(vec![ARC]);
    }
    let setpriv = Command::new("setpriv").arg("--version").output();
    if setpriv.is_ok_and(|o| o.status.success()) {
        Some(vec!["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ARC])
    } else {
        eprintln!("note: setpriv is missing, so the unreadable-file tests cannot drop root: skipped");
        None
    }
}

fn list(archive: &Path) -> Vec<String> {
    arc(["list".as_ref(), os(archive)]).code(0).stdout_lines()
}

/// A tree `t/` in an environment everyone may write to, one entry of which is unreadable to
/// the user arc runs as.
struct Unreadable {
    env: TestEnv,
    arc_user: Vec<&'static str>,
    src: PathBuf,
    /// The unreadable entry.
    closed: PathBuf,
    /// Where the archive goes.
    out: PathBuf,
}

impl Unreadable {
    /// `t/` made of `files`, then `closed` (one of them, or a directory of them) made mode 000;
    /// `None` where arc cannot run as a user who cannot read it.
    fn new(files: &[(&str, &str)], closed: &str) -> Option<Unreadable> {
        let arc_user = as_unprivileged()?;
        let env = open_env();
        for (rel, contents) in files {
            env.file(Path::new("t").join(rel), contents);
        }
        let closed = env.path("t").join(closed);
        set_mode(&closed, 0o000);
        Some(Unreadable { src: env.path("t"), out: env.path("x.arc"), closed, arc_user, env })
    }

    /// `arc write -q [--ignore-failed-read] -o x.arc t` as that user.
    fn write(&self, ignore_failed_read: bool) -> Run {
        let mut args = vec!["write".as_ref(), "-q".as_ref()];
        if ignore_failed_read {
            args.push("--ignore-failed-read".as_ref());
        }
        args.extend(["-o".as_ref(), os(&self.out), os(&self.src)]);
        run_program(&self.arc_user, args)
    }

    /// Without --ignore-failed-read: an error naming the unreadable entry, and no archive.
    fn refused(&self) -> Run {
        let run = self.write(false);
        run.refused(&format!("{}", self.closed.display()));
        assert!(!self.out.exists(), "an archive was made: {}", run.describe());
        run
    }

    fn assert_no_temp_files(&self) {
        assert_eq!(temp_files(self.env.root()), Vec::<PathBuf>::new());
    }
}

#[test]
fn unreadable_file_is_an_error_or_with_ignore_failed_read_a_warning() {
    let files = [("a", "readable\n"), ("secret", "not for nobody\n"), ("sub/b", "readable too\n")];
    let Some(case) = Unreadable::new(&files, "secret") else { return };
    let run = case.refused();
    assert!(run.stderr.contains("Permission denied"), "{}", run.describe());
    case.assert_no_temp_files();

    let run = case.write(true);
    run.code(1);
    let warnings: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{}", run.describe());
    assert!(warnings[0].starts_with("arc: warning: "), "{}", run.describe());
    assert!(warnings[0].contains(&format!("{}", case.closed.display())), "{}", run.describe());
    assert!(warnings[0].contains("left out"), "{}", run.describe());
    assert_eq!(list(&case.out), ["t/", "t/a", "t/sub/", "t/sub/b"]);
    arc(["verify".as_ref(), os(&case.out)]).code(0);
    case.assert_no_temp_files();
}

#[test]
fn unreadable_directory_is_an_error_or_with_ignore_failed_read_a_warning() {
    let files = [("a", "readable\n"), ("closed/inside", "unreachable\n"), ("z", "after it\n")];
    let Some(case) = Unreadable::new(&files, "closed") else { return };
    case.refused();

    let run = case.write(true);
    run.code(1);
    assert!(run.stderr.contains(&format!("{}", case.closed.display())), "{}", run.describe());
    assert_eq!(list(&case.out), ["t/", "t/a", "t/z"]);
    case.assert_no_temp_files();
}

#[test]
fn full_device_is_an_error() {
    let env = TestEnv::new();
    let src = env.root().join("t");
    env.file("t/a", random_bytes(100_000, 1));
    // OUT a character device, written in place.
    let run = arc(["write".as_ref(), "-q".as_ref(), "-o".as_ref(), "/dev/full".as_ref(), os(&src)]);
    run.refused("No space left on device");
    // Standard output that cannot take the archive.
    env.arc_into_full_device(["write", "-q", "-o", "-", "t"]).refused("No space left on device");
    assert_eq!(temp_files(env.root()), Vec::<PathBuf>::new());
}

/// A tmpfs of 1 MiB, unmounted when dropped.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount() -> Option<SmallFs> {
        let dir = tempfile::Builder::new().prefix("arc-smallfs-").tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallFs { dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[test]
fn full_filesystem_leaves_the_old_archive_and_no_temporary_file() {
    let Some(small) = SmallFs::mount() else {
        eprintln!("note: cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN): skipped");
        return;
    };
    let mnt = small.dir.path();
    let env = TestEnv::new();
    let old_src = env.root().join("old");
    env.file("old/a", b"the old archive's file\n");
    let out = mnt.join("x.arc");
    arc(["write".as_ref(), "-q".as_ref(), "-o".as_ref(), os(&out), os(&old_src)]).code(0);
    // Everything in the filesystem but its root, whose mtime the temporary file changes.
    let contents = || {
        let mut all = snapshot_with_contents(mnt, &[]);
        all.remove(Path::new(""));
        all
    };
    let before = contents();

    let src = env.root().join("t");
    env.file("t/big", random_bytes(3 << 20, 2));
    let run = arc(["write".as_ref(), "-q".as_ref(), "-o".as_ref(), os(&out), os(&src)]);
    run.refused("No space left on device");
    assert_eq!(contents(), before, "the old archive changed or a file was left: {}", run.describe());
    assert_eq!(list(&out), ["old/", "old/a"]);
    arc(["verify".as_ref(), os(&out)]).code(0);
}

/// Byte `k` of every file the mutating threads write: whatever arc reads of such a file, at
/// whatever moment, must agree with this.
fn pattern_byte(k: u64) -> u8 {
    (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

fn pattern_range(from: u64, len: usize) -> Vec<u8> {
    (from..from + len as u64).map(pattern_byte).collect()
}

///
/// A zero is accepted too: the kernel does not make a write atomic for a concurrent reader,
/// so a page being refilled after a truncation can be read while still zero-filled. What is
/// refused is any other byte: data from elsewhere, or from another offset.
fn assert_pattern(path: &Path) {
    let bytes = fs::read(path).expect("reading an extracted file");
    if let Some(k) = (0..bytes.len()).find(|&k| bytes[k] != pattern_byte(k as u64) && bytes[k] != 0) {
        panic!("{}: byte {k} of {} is not what was ever written there", path.display(), bytes.len());
    }
}

/// Appends to `path` a little at a time until `stop` (or 16 MiB).
fn grow(path: PathBuf, stop: &AtomicBool) {
    let mut file = fs::OpenOptions::new().append(true).open(&path).expect("opening the growing file");
    let mut len = fs::metadata(&path).expect("stat").len();
    while !stop.load(Ordering::Relaxed) && len < 16 << 20 {
        file.write_all(&pattern_range(len, 4096)).expect("appending");
        len += 4096;
        thread::sleep(Duration::from_micros(200));
    }
}

/// Cuts `path` from 2 MiB to 1 MiB and fills it again, over and over until `stop`.
fn shrink(path: PathBuf, stop: &AtomicBool) {
    use std::os::unix::fs::FileExt;
    let file = fs::OpenOptions::new().write(true).open(&path).expect("opening the shrinking file");
    let half = 1 << 20;
    let second_half = pattern_range(half, half as usize);
    while !stop.load(Ordering::Relaxed) {
        file.write_all_at(&second_half, half).expect("refilling");
        thread::sleep(Duration::from_micros(200));
        // At a page boundary, so no page is ever partly zeroed under a reader.
        file.set_len(half).expect("truncating");
        thread::sleep(Duration::from_micros(200));
    }
}

/// Files that grow or shrink while arc reads them: the archive stays consistent (verify
/// passes, read gives back files whose bytes are ones that were written there), and exit
/// status 1 goes with the warning. Whether arc catches a change in the act is up to timing, so
/// the run is repeated a few times to see both warnings, but their absence is not a failure.
#[test]
fn files_changing_while_read_give_a_consistent_archive() {
    let env = TestEnv::new();
    let src = env.root().join("t");
    env.file("t/aa-before", random_bytes(2 << 20, 3));
    env.file("t/grow", pattern_range(0, 1 << 20));
    env.file("t/shrink", pattern_range(0, 2 << 20));
    env.file("t/zz-after", random_bytes(2 << 20, 4));
    let out = env.root().join("x.arc");
    let mut seen = (false, false);
    for attempt in 0..6 {
        fs::write(src.join("grow"), pattern_range(0, 1 << 20)).expect("resetting the growing file");
        let stop = AtomicBool::new(false);
        let run = thread::scope(|scope| {
            scope.spawn(|| grow(src.join("grow"), &stop));
            scope.spawn(|| shrink(src.join("shrink"), &stop));
            thread::sleep(Duration::from_millis(5));
            let run = arc(["write".as_ref(), "-q".as_ref(), "-o".as_ref(), os(&out), os(&src)]);
            stop.store(true, Ordering::Relaxed);
            run
        });
        let grew = run.stderr.contains("file grew while it was read");
        let shrank = run.stderr.contains("file shrank while it was read");
        // Changed after it was listed, its size as listed when read to the end.
        let changed = run.stderr.contains("file changed while it was read");
        if grew || shrank || changed {
            run.code(1);
            assert!(run.stderr.lines().all(|l| l.starts_with("arc: warning: ")), "{}", run.describe());
        } else {
            run.code(0);
            assert_eq!(run.stderr, "", "{}", run.describe());
        }
        seen = (seen.0 || grew, seen.1 || shrank);
        arc(["verify".as_ref(), "-q".as_ref(), os(&out)]).code(0);
        let dest = env.root().join(format!("dest{attempt}"));
        arc(["read".as_ref(), "-q".as_ref(), "-C".as_ref(), os(&dest), os(&out)]).code(0);
        for name in ["aa-before", "zz-after"] {
            assert!(
                fs::read(dest.join("t").join(name)).expect("reading")
                    == fs::read(src.join(name)).expect("reading")
            );
        }
        assert_pattern(&dest.join("t/grow"));
        assert_pattern(&dest.join("t/shrink"));
        fs::remove_dir_all(&dest).expect("removing DEST");
        if seen == (true, true) {
            break;
        }
    }
    if seen != (true, true) {
        eprintln!("note: arc did not catch every kind of change in the act (grew, shrank) = {seen:?}");
    }
}

/// The state letter of a process (`R`, `S`, `T` for stopped, `Z`...), from /proc.
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn signal(child: &Child, signal: Signal) {
    kill_process(Pid::from_child(child), signal).expect("sending a signal");
}

/// Runs `command`, freezing it (SIGSTOP) every few milliseconds to look at `progressed`; once
/// that holds while arc is still running, sends `stop_with` and lets it go on. Returns the run and
/// how long arc took to exit after the signal, or `None` if arc finished before progress
/// showed.
fn interrupt_when(
    command: &mut Command,
    stop_with: Signal,
    progressed: impl Fn() -> bool,
) -> Option<(Run, Duration)> {
    act_when(command, |_| progressed(), |child| signal(child, stop_with))
}

/// Runs `command`, freezing it (SIGSTOP) every few milliseconds to look at `progressed` (given
/// arc's pid); once that holds while arc is still running, does `act` while arc is frozen and
/// lets it go on. Returns the run and how long arc took to exit after, or `None` if arc
/// finished first.
fn act_when(
    command: &mut Command,
    progressed: impl Fn(u32) -> bool,
    act: impl FnOnce(&Child),
) -> Option<(Run, Duration)> {
    let mut act = Some(act);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning arc");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let sent = loop {
        thread::sleep(Duration::from_millis(3));
        signal(&child, Signal::STOP);
        let stopped = loop {
            if child.try_wait().expect("waiting").is_some() {
                break false;
            }
            if process_state(pid) == Some('T') {
                break true;
            }
            thread::sleep(Duration::from_micros(200));
        };
        if !stopped {
            break None;
        }
        if progressed(pid) {
            if let Some(act) = act.take() {
                act(&child);
            }
            signal(&child, Signal::CONT);
            break Some(Instant::now());
        }
        signal(&child, Signal::CONT);
        assert!(Instant::now() < deadline, "arc made no visible progress in a minute");
    };
    let output = child.wait_with_output().expect("waiting for arc");
    let elapsed = sent.map(|at| at.elapsed());
    let run = Run::from_output(format!("{command:?}"), output);
    elapsed.map(|e| (run, e))
}

#[test]
fn sigint_during_write_leaves_no_archive_and_no_temporary_file() {
    let env = TestEnv::new();
    let src = env.root().join("t");
    let outdir = env.root().join("out");
    fs::create_dir(&outdir).expect("mkdir");
    let out = outdir.join("x.arc");
    let mut size = 24 << 20;
    for _ in 0..3 {
        for i in 0..4 {
            env.file(format!("t/f{i}"), pseudo_text(size / 4, i as u64));
        }
        // A temporary file with bytes in it: the writer is under way, and OUT not yet renamed.
        let writing = || {
            !out.exists()
                && fs::read_dir(&outdir)
                    .expect("ls")
                    .any(|e| e.expect("ls").metadata().is_ok_and(|m| m.len() > 0))
        };
        let mut command = Command::new(ARC);
        command.args(["write".as_ref(), "-l".as_ref(), "6".as_ref(), "-o".as_ref(), os(&out), os(&src)]);
        let Some((run, took)) = interrupt_when(&mut command, Signal::INT, writing) else {
            // Finished before it could be caught writing: try again with more to do.
            let _ = fs::remove_file(&out);
            size *= 2;
            continue;
        };
        // 128 + SIGINT, as shells and tar report it.
        assert_eq!(run.code, 130, "{}", run.describe());
        assert!(run.stderr.contains("interrupted"), "{}", run.describe());
        assert!(took < Duration::from_secs(5), "arc took {took:?} to stop");
        assert!(!out.exists(), "an archive was left: {}", run.describe());
        assert_eq!(temp_files(&outdir), Vec::<PathBuf>::new(), "{}", run.describe());
        assert_eq!(fs::read_dir(&outdir).expect("ls").count(), 0);
        return;
    }
    panic!("arc always finished before it could be interrupted");
}

/// Regular files beneath `dir` under their final names (not arc's temporary ones).
fn count_files(dir: &Path) -> usize {
    snapshot_readable(dir)
        .iter()
        .filter(|(rel, s)| {
            s.kind == Kind::File && !rel.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".arc-"))
        })
        .count()
}

#[test]
fn sigterm_during_read_leaves_only_complete_files() {
    let env = TestEnv::new();
    let src = env.root().join("t");
    let text = pseudo_text(8 << 20, 9);
    // Files of many sizes, three of them spanning blocks.
    for i in 0..240usize {
        let len = 1 + (i * 7919) % 120_000;
        let at = (i * 104_729) % (text.len() - len);
        env.file(format!("t/d{}/f{i:03}", i % 7), &text[at..at + len]);
    }
    for i in 0..3u64 {
        env.file(format!("t/span{i}"), random_bytes(6 << 20, 10 + i));
    }
    let archive = env.root().join("x.arc");
    arc([
        "write".as_ref(),
        "-q".as_ref(),
        "-l".as_ref(),
        "1".as_ref(),
        "-o".as_ref(),
        os(&archive),
        os(&src),
    ])
    .code(0);
    let expected = tree(&src);
    let total_files = expected.values().filter(|s| s.starts_with('f')).count();

    for attempt in 0..3 {
        let dest = env.root().join(format!("dest{attempt}"));
        let under_way = || {
            let n = count_files(&dest);
            n > 0 && n < total_files / 2
        };
        let mut command = Command::new(ARC);
        command.args(["read".as_ref(), "-j".as_ref(), "2".as_ref(), "-C".as_ref(), os(&dest), os(&archive)]);
        let Some((run, took)) = interrupt_when(&mut command, Signal::TERM, under_way) else { continue };
        // 128 + SIGTERM.
        assert_eq!(run.code, 143, "{}", run.describe());
        assert!(run.stderr.contains("interrupted"), "{}", run.describe());
        assert!(took < Duration::from_secs(5), "arc took {took:?} to stop");
        assert_eq!(temp_files(&dest), Vec::<PathBuf>::new(), "{}", run.describe());
        let got = tree(&dest.join("t"));
        let mut complete = 0;
        for (rel, short) in &got {
            if short.starts_with('f') {
                // Modes and contents as in the source (directories may still be 700).
                assert_eq!(Some(short), expected.get(rel), "{rel} is incomplete or wrong");
                complete += 1;
            }
        }
        assert!(complete < total_files, "everything was extracted: the test did not interrupt");
        return;
    }
    panic!("arc always finished before it could be interrupted");
}

#[test]
fn a_file_rewritten_in_place_while_read_is_a_warning() {
    let env = TestEnv::new();
    let mut size = 64 << 20;
    for _ in 0..3 {
        let big = env.file("t/big", random_bytes(size, 9));
        let _ = fs::remove_file(env.path("x.arc"));
        let mut command = Command::new(ARC);
        command.current_dir(env.root()).args(["write", "-q", "-j1", "-o", "x.arc", "t"]);
        // arc holds t/big open: it is reading it.
        let holds_big = |pid: u32| {
            let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
            fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == big))
        };
        // Same size, new bytes at the start: only the times tell.
        let rewrite = |_: &Child| {
            let file = fs::OpenOptions::new().write(true).open(&big).expect("opening t/big");
            std::os::unix::fs::FileExt::write_all_at(&file, b"rewritten", 0).expect("rewriting t/big");
        };
        let Some((run, _)) = act_when(&mut command, holds_big, rewrite) else {
            size *= 2;
            continue;
        };
        run.code(1);
        assert_eq!(
            run.stderr,
            "arc: warning: reading t/big: file changed while it was read\n",
            "{}",
            run.describe()
        );
        // The archive is made, and consistent.
        env.arc(["verify", "x.arc"]).success();
        return;
    }
    panic!("arc always finished reading before the file could be rewritten");
}

#[test]
fn a_file_replaced_by_a_fifo_after_its_directory_was_listed_is_stored_as_a_fifo() {
    // The walker lists a directory, then opens each file its listing calls regular, maybe
    // long after (here, after walking t/a). A FIFO put in a file's place meanwhile must
    // neither hang the walk (opening a FIFO waits for a writer) nor be read as a file.
    let env = TestEnv::new();
    let mut count = 10_000;
    for _ in 0..3 {
        let _ = fs::remove_dir_all(env.path("t"));
        for k in 0..count {
            env.file(format!("t/a/{k:05}"), "");
        }
        let z = env.file("t/z", "a file when listed");
        let a = env.path("t/a");
        let _ = fs::remove_file(env.path("x.arc"));
        let mut command = Command::new(ARC);
        command.current_dir(env.root()).args(["write", "-q", "-o", "x.arc", "t"]);
        // arc is inside t/a: t/ was listed, t/z not reached yet.
        let in_a = |pid: u32| {
            let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
            fds.flatten().any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target == a))
        };
        let replace = |child: &Child| {
            fs::remove_file(&z).expect("removing t/z");
            make_fifo(&z);
            // Should arc wait on the FIFO, it is killed, and the run says so.
            let pid = Pid::from_child(child);
            thread::spawn(move || {
                thread::sleep(Duration::from_secs(30));
                let _ = kill_process(pid, Signal::KILL);
            });
        };
        let Some((run, _)) = act_when(&mut command, in_a, replace) else {
            count *= 4;
            continue;
        };
        run.success();
        let listed = env.arc(["list", "-l", "x.arc"]).success().stdout_str();
        let z_line = listed.lines().find(|line| line.ends_with(" t/z")).expect("t/z is listed");
        assert!(z_line.starts_with('p'), "t/z is stored as what it is now, a FIFO: {listed}");
        return;
    }
    panic!("arc always walked t/a before it could be seen inside it");
}

#[test]
fn a_fifo_mounted_on_a_file_is_stored_as_a_fifo() {
    // A FIFO bind-mounted on a file (containers mount files so) is listed as the file
    // underneath, every time: the walker, which opens files as their listing calls them, must
    // see a FIFO and not wait on it. In a mount namespace of its own, so nothing is left
    // mounted.
    if !rustix::process::geteuid().is_root() {
        eprintln!("note: not root, so a_fifo_mounted_on_a_file_is_stored_as_a_fifo cannot mount: skipped");
        return;
    }
    let env = TestEnv::new();
    env.file("t/placeholder", "a file underneath");
    env.file("t/kept", "kept");
    make_fifo(&env.path("fifo"));
    let script =
        format!("mount --bind fifo t/placeholder && exec timeout -s KILL 30 {ARC} write -q -o x.arc t");
    let mut command = Command::new("unshare");
    command.current_dir(env.root()).args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    let run = crate::support::run(&mut command);
    if run.stderr.contains("unshare:") || run.stderr.contains("mount:") {
        eprintln!(
            "note: no mount namespace here, so a_fifo_mounted_on_a_file_is_stored_as_a_fifo is skipped: {}",
            run.stderr
        );
        return;
    }
    // timeout's status 137 (killed) if arc waited on the FIFO.
    run.success();
    let listed = env.arc(["list", "-l", "x.arc"]).success().stdout_str();
    let line = listed.lines().find(|line| line.ends_with(" t/placeholder")).expect("t/placeholder is listed");
    assert!(line.starts_with('p'), "stored as a FIFO: {listed}");
    assert!(listed.lines().any(|line| line.starts_with('-') && line.ends_with(" t/kept")), "{listed}");
}

#[test]
fn a_file_listed_as_empty_that_is_not_is_a_warning() {
    // /proc says 0 bytes for files that have some: arc reads one byte of every empty file, so
    // such a file is never archived empty without a word (tar: "file changed as we read it").
    let env = TestEnv::new();
    let run = env.arc(["write", "-o", "p.arc", "/proc/self/status"]);
    run.code(1);
    assert!(run.stderr.contains("/proc/self/status: file grew while it was read"), "{}", run.describe());
    // A truly empty file is no warning, and costs nothing more.
    env.file("t/empty", "");
    env.arc(["write", "-o", "e.arc", "t"]).success();
}
