//! Running the real `arc` binary and keeping what it printed ([`Run`]), and a temporary
//! directory to build trees and run arc in ([`TestEnv`]).
//!
//! Every run of the binary is checked for the promises that hold whatever the command: arc
//! exits (is not killed by a signal), and never prints a panic.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::scene::Scene;
use super::tree::make_writable;

/// The binary under test, built by cargo for this test run.
pub const ARC: &str = env!("CARGO_BIN_EXE_arc");

/// What one run of arc did.
#[derive(Debug)]
pub struct Run {
    pub command: String,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs `command` (with no standard input unless it has one) and checks what holds for every
/// run of arc.
pub fn run(command: &mut Command) -> Run {
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("running {shown}: {e}"));
    Run::from_output(shown, output)
}

/// Runs arc in the current directory.
pub fn arc<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new(ARC).args(args))
}

/// Runs `program` (its first element, with the others as its first arguments) then `args`:
/// for arc under prlimit or setpriv.
pub fn run_program<I, S>(program: &[&str], args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new(program[0]).args(&program[1..]).args(args))
}

/// GNU time, which measures a child's peak memory: `None`, after saying so, where it is not
/// installed (Debian's package `time`; .ci/run installs it).
pub fn gnu_time() -> Option<&'static str> {
    const TIME: &str = "/usr/bin/time";
    if std::path::Path::new(TIME).exists() {
        Some(TIME)
    } else {
        eprintln!("note: {TIME} (GNU time) is not installed; memory bounds are not measured");
        None
    }
}

/// Runs `arc ARGS` under GNU time and returns the run and arc's peak resident memory in
/// bytes. (The kernel's own count, from `wait4` here, would include this test process's
/// memory from before `exec`; GNU time forks arc from a process of its own size.)
pub fn arc_measured(time: &str, args: &[&OsStr], envs: &[(&str, &str)]) -> (Run, u64) {
    let report = tempfile::NamedTempFile::new().expect("a file for GNU time's report");
    let mut command = Command::new(time);
    command.arg("-f").arg("%M").arg("-o").arg(report.path()).arg(ARC).args(args).envs(envs.iter().copied());
    let run = run(&mut command);
    let text = fs::read_to_string(report.path()).expect("reading GNU time's report");
    let kib: u64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("GNU time reported {text:?} for {}", run.command));
    (run, kib * 1024)
}

/// /dev/full opened for writing: standard output that cannot take anything.
pub fn full_device() -> fs::File {
    fs::OpenOptions::new().write(true).open("/dev/full").expect("opening /dev/full")
}

impl Run {
    /// Checks what holds for every run of arc in what `command` (as shown in messages) did.
    pub fn from_output(command: String, output: Output) -> Run {
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let Some(code) = output.status.code() else {
            panic!("`{command}` was killed: {:?}\nstderr:\n{stderr}", output.status);
        };
        assert!(!stderr.contains("panicked"), "`{command}` panicked:\n{stderr}");
        Run { command, code, stdout: output.stdout, stderr }
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8(self.stdout.clone())
            .unwrap_or_else(|_| panic!("`{}` printed non-UTF-8 on stdout", self.command))
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_str().lines().map(str::to_owned).collect()
    }

    pub fn describe(&self) -> String {
        format!(
            "`{}` exited {}\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.code,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }

    /// Exit status 0 with nothing on stderr.
    pub fn success(&self) -> &Run {
        assert!(self.code == 0 && self.stderr.is_empty(), "expected a clean success: {}", self.describe());
        self
    }

    /// Exit status `code`, whatever was printed.
    pub fn code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit status: {}", self.describe());
        self
    }

    /// Exit status 2 and exactly one line on stderr, starting with `arc: error: `; returns it.
    pub fn error(&self) -> String {
        self.code(2);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected exactly one line on stderr: {}", self.describe());
        assert!(lines[0].starts_with("arc: error: "), "badly formed error: {}", self.describe());
        assert!(self.stderr.ends_with('\n'), "error line not terminated: {}", self.describe());
        lines[0].to_owned()
    }

    /// Exit status 2, an error line last, and `why` said on stderr.
    pub fn refused(&self, why: &str) -> &Run {
        self.code(2);
        let last = self.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("arc: error: "), "no error line last: {}", self.describe());
        assert!(self.stderr.contains(why), "the error does not say {why:?}: {}", self.describe());
        self
    }
}

/// A temporary directory that trees, archives and extractions live in; removed when dropped.
pub struct TestEnv {
    dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv::new_in(&std::env::temp_dir())
    }

    /// A test environment beneath `base` (e.g. /dev/shm for speed).
    pub fn new_in(base: &Path) -> TestEnv {
        let dir = tempfile::Builder::new().prefix("arc-test-").tempdir_in(base).expect("creating a temp dir");
        TestEnv { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `rel` beneath the environment's root.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Creates directory `rel` and its parents.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        path
    }

    /// Writes file `rel` (creating its parents) with `contents`.
    pub fn file(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Creates symlink `rel` pointing at `target` (stored as is, never resolved).
    pub fn symlink(&self, target: impl AsRef<Path>, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        std::os::unix::fs::symlink(target.as_ref(), &path)
            .unwrap_or_else(|e| panic!("creating symlink {}: {e}", path.display()));
        path
    }

    /// Runs arc with the environment's root as the working directory.
    pub fn arc<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.arc_in(self.root(), args)
    }

    /// Runs arc in `cwd`.
    pub fn arc_in<I, S>(&self, cwd: &Path, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(Command::new(ARC).args(args).current_dir(cwd))
    }

    /// Runs arc in the environment's root with `input` on its standard input, through a pipe
    /// (written from another thread, so that arc may read as it goes).
    pub fn arc_fed<I, S>(&self, input: &[u8], args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_fed(Command::new(ARC).args(args).current_dir(self.root()), input)
    }

    /// Runs arc in the environment's root with standard output on /dev/full.
    pub fn arc_into_full_device<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(Command::new(ARC).args(args).current_dir(self.root()).stdout(full_device()))
    }

    /// `arc write -o ARCHIVE SRC`, then `arc read ARCHIVE -C DEST`, both required to succeed
    /// cleanly; returns where the input's copy is (DEST/<name of SRC>).
    pub fn round_trip(&self, src: &Path, archive: &str, dest: &str) -> PathBuf {
        self.arc([OsStr::new("write"), OsStr::new("-o"), OsStr::new(archive), src.as_os_str()]).success();
        self.arc(["read", archive, "-C", dest]).success();
        self.path(dest).join(src.file_name().expect("input has a name"))
    }
}

/// Runs `command` with `input` on its standard input, through a pipe.
pub fn run_fed(command: &mut Command, input: &[u8]) -> Run {
    use std::io::Write;
    let shown = format!("{:?} < ({} bytes)", command, input.len());
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {shown}: {e}"));
    let mut stdin = child.stdin.take().expect("a pipe to arc");
    let output = std::thread::scope(|scope| {
        // arc may stop reading early (an error): the rest is not written.
        scope.spawn(move || {
            let _ = stdin.write_all(input);
        });
        child.wait_with_output().unwrap_or_else(|e| panic!("running {shown}: {e}"))
    });
    Run::from_output(shown, output)
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Read-only directories would stop the removal for a user other than root.
        make_writable(self.dir.path());
    }
}

/// The scene's runs of the binary (the fuzz harness, which cannot run it, includes scene.rs
/// without them).
impl Scene {
    /// Writes `archive` to TOP/x.arc and runs `arc read -q -C DEST TOP/x.arc ARGS`, then checks
    /// that nothing outside DEST changed.
    pub fn read(&self, archive: &[u8], args: &[&str]) -> Run {
        self.write_archive(archive);
        self.read_wrapped(&[], args)
    }

    /// Runs `WRAPPER arc read -q -C DEST TOP/x.arc ARGS` on the archive already there, then
    /// checks that nothing outside DEST changed. WRAPPER is a program and its arguments to run
    /// arc with (prlimit and its limits), or nothing.
    pub fn read_wrapped(&self, wrapper: &[&str], args: &[&str]) -> Run {
        let mut command = match wrapper {
            [] => Command::new(ARC),
            [program, options @ ..] => {
                let mut command = Command::new(program);
                command.args(options).arg(ARC);
                command
            }
        };
        command.args(["read", "-q", "-C"]).arg(self.dest()).arg(self.archive_path()).args(args);
        self.run_watched(&mut command)
    }

    /// Runs `arc verify` on TOP/x.arc as [`Scene::read`] last wrote it.
    pub fn verify(&self) -> Run {
        self.run_watched(Command::new(ARC).args(["verify", "-q"]).arg(self.archive_path()))
    }

    /// Runs `command`, then checks that nothing outside DEST changed.
    fn run_watched(&self, command: &mut Command) -> Run {
        let before = self.outside();
        let run = run(command);
        self.assert_outside(&before, &run.describe());
        run
    }

    /// Writes `archive` to TOP/x.arc and runs `arc read` on it as [`Scene::read`] does; arc
    /// must refuse it, saying `why`, and leave DEST empty.
    pub fn refuses(&self, archive: &[u8], why: &str) -> Run {
        let run = self.read(archive, &[]);
        self.assert_refused(&run, why);
        run
    }

    /// `run` was refused, saying `why`, and left DEST empty.
    pub fn assert_refused(&self, run: &Run, why: &str) {
        run.refused(why);
        self.assert_dest_empty(run);
    }

    pub fn assert_dest_empty(&self, run: &Run) {
        let tree = self.dest_tree();
        assert!(tree.is_empty(), "DEST is not empty: {tree:#?}\n{}", run.describe());
    }
}
