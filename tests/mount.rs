//! `arc mount`: the view a mount gives compared exactly with the tree archived, reads in
//! parallel and through a small cache, damaged and truncated archives, unmounting (with a
//! reader inside, by signal, when idle), two mounts of one archive, and every refusal before
//! the mount is ready.
//!
//! The tests need FUSE: /dev/fuse that opens, and root (arc mounts with mount(2) as root;
//! another user needs fusermount3). Where that is missing each test says "skipped" on stderr
//! and passes. Every mount is held by a [`Mounted`] guard that unmounts it when the test ends,
//! failed or not, so no mount survives a run.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::fidelity::{
    base_keeping, build_fidelity_tree, compare_trees, is_root, Expect, EVERYTHING, SOCKET,
};
use crate::support::{pseudo_random, run, run_program, Run, TestEnv, ARC};

/// Whether FUSE mounts can be made here; says why not on stderr.
fn skipped(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipped: {test} mounts with mount(2), which needs root");
        return true;
    }
    if let Err(e) = fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        eprintln!("skipped: {test} needs FUSE, and /dev/fuse does not open: {e}");
        return true;
    }
    false
}

/// The mount points of this process's mount namespace.
fn mount_points() -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/self/mountinfo").expect("reading /proc/self/mountinfo");
    table.lines().filter_map(|line| line.split(' ').nth(4)).map(PathBuf::from).collect()
}

fn is_mounted(point: &Path) -> bool {
    let point = point.canonicalize().unwrap_or_else(|_| point.to_owned());
    mount_points().contains(&point)
}

/// The options field of `point`'s line in /proc/mounts.
fn mount_options(point: &Path) -> String {
    let point = point.canonicalize().expect("mount point");
    let table = fs::read_to_string("/proc/mounts").expect("reading /proc/mounts");
    table
        .lines()
        .map(|line| line.split(' ').collect::<Vec<_>>())
        .find(|fields| fields.get(1) == Some(&point.to_str().expect("UTF-8 path")))
        .map(|fields| fields[3].to_owned())
        .unwrap_or_default()
}

/// Waits up to 10 s for `done`; whether it came.
fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// A mount made by a test, unmounted (lazily, so that a reader left inside cannot stop it)
/// when dropped.
struct Mounted {
    point: PathBuf,
}

impl Mounted {
    /// `arc mount ARGS ARCHIVE POINT` in `env`, required to succeed and leave a mount.
    fn new(env: &TestEnv, archive: &str, point: &str, args: &[&str]) -> Mounted {
        let point = env.mkdir(point);
        let mounted = Mounted { point: point.clone() };
        let run = env.arc(["mount"].iter().chain(args).chain(&[archive, point.to_str().expect("UTF-8")]));
        run.success();
        assert!(run.stdout.is_empty(), "`arc mount` wrote to stdout: {}", run.describe());
        assert!(is_mounted(&point), "`arc mount` succeeded but nothing is mounted on {}", point.display());
        mounted
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.point) {
            let _ = rustix::mount::unmount(&self.point, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// The process serving the mount on `point` (its command line names it).
fn server_of(point: &Path) -> Option<u32> {
    let point = point.to_str()?;
    fs::read_dir("/proc").ok()?.flatten().find_map(|proc| {
        let pid: u32 = proc.file_name().to_str()?.parse().ok()?;
        let cmdline = fs::read(proc.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        (args.first().is_some_and(|a| a.ends_with(b"arc"))
            && args.contains(&&b"mount"[..])
            && args.contains(&point.as_bytes()))
        .then_some(pid)
    })
}

/// Whether process `pid` has ended: gone, or a zombie its new parent (init, once `arc mount`
/// has returned) has not reaped yet.
fn ended(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// A tree of `files` files of pseudo-random bytes (some compressible), written to `name`
/// with 64 KiB blocks so that it spans many.
fn archived_files(env: &TestEnv, name: &str, files: usize) -> PathBuf {
    let src = env.mkdir("src/data");
    for n in 0..files {
        let len = 1000 + (n * 7919) % 150_000;
        let mut bytes = pseudo_random(len, n as u64 + 1);
        if n % 3 == 0 {
            bytes.iter_mut().step_by(2).for_each(|b| *b = b'a');
        }
        fs::write(src.join(format!("f{n:03}")), bytes).expect("writing a file");
    }
    env.arc(["write", "-q", "--block-size", "64K", "-o", name, src.to_str().expect("UTF-8")]).success();
    src
}

/// The names in `dir` in the order a listing gives them.
fn listed(dir: &Path) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    fs::read_dir(dir).expect("listing").map(|e| e.expect("entry").file_name().as_bytes().to_vec()).collect()
}

#[test]
fn a_mount_shows_the_fidelity_tree_exactly() {
    if skipped("a_mount_shows_the_fidelity_tree_exactly") {
        return;
    }
    let env = TestEnv::new_in(&base_keeping(EVERYTHING));
    let src = env.path("src/tree");
    build_fidelity_tree(&src);
    env.arc([
        OsStr::new("write"),
        OsStr::new("-q"),
        OsStr::new("-o"),
        OsStr::new("tree.arc"),
        src.as_os_str(),
    ])
    .success();
    let mount = Mounted::new(&env, "tree.arc", "mnt", &[]);
    let shown = mount.point.join("tree");

    // Every entry's type, mode, owners, size, contents, holes, ns mtime, device numbers,
    // symlink target, xattrs (ACLs and capabilities included) and hard-link groups: the
    // comparison tests/fidelity.rs makes of an extraction. The socket is not archived.
    let expect = Expect { sockets_absent: true, ..Expect::exact() };
    let problems = compare_trees(&src, &shown, &expect);
    assert!(problems.is_empty(), "the mount differs from its source:\n{}", problems.join("\n"));
    assert!(!shown.join(SOCKET).exists());

    // Read-only, and said so; nosuid and nodev.
    let options = mount_options(&mount.point);
    for option in ["ro", "nosuid", "nodev"] {
        assert!(options.split(',').any(|o| o == option), "/proc/mounts says {options:?}, without {option}");
    }
    let write = fs::OpenOptions::new().write(true).open(shown.join("a/two"));
    assert_eq!(write.map_err(|e| e.raw_os_error()).err(), Some(Some(libc::EROFS)));

    // Directory link counts as a real file system gives them, the root's included.
    let subdirs =
        |dir: &Path| fs::read_dir(dir).expect("listing").flatten().filter(|e| e.path().is_dir()).count();
    for dir in [&mount.point, &shown, &shown.join("a")] {
        let nlink = fs::symlink_metadata(dir).expect("stat").nlink();
        assert_eq!(nlink, 2 + subdirs(dir) as u64, "link count of {}", dir.display());
    }

    // A listing is in archive order, which is what `arc list` prints.
    let list = env.arc(["list", "tree.arc"]);
    let in_archive: Vec<Vec<u8>> = list
        .stdout
        .split(|&b| b == b'\n')
        .filter_map(|line| line.strip_prefix(b"tree/a/"))
        .filter(|rest| !rest.is_empty() && !rest.trim_ascii_end().contains(&b'/'))
        .map(|rest| rest.strip_suffix(b"/").unwrap_or(rest).to_vec())
        .collect();
    assert_eq!(listed(&shown.join("a")), in_archive);

    // statfs: every inode, and the blocks the files take.
    let stat = rustix::fs::statfs(&mount.point).expect("statfs");
    let entries = env.arc(["list", "tree.arc"]).stdout_lines().len() as u64;
    assert_eq!(stat.f_files as u64, entries + 1, "statfs counts every entry and the root");
    assert!(stat.f_blocks > 0);
}

#[test]
fn many_readers_at_once_read_every_byte_through_a_small_cache() {
    if skipped("many_readers_at_once_read_every_byte_through_a_small_cache") {
        return;
    }
    let env = TestEnv::new_in(Path::new("/dev/shm"));
    let src = archived_files(&env, "data.arc", 120);
    // Two blocks' worth of cache: most reads decompress again, by more workers than cores.
    let mount = Mounted::new(&env, "data.arc", "mnt", &["--cache", "128K", "-j", "8"]);
    let names: Vec<_> = fs::read_dir(&src).expect("listing").map(|e| e.expect("entry").file_name()).collect();
    std::thread::scope(|scope| {
        for t in 0..6 {
            let (names, src, point) = (&names, &src, &mount.point);
            scope.spawn(move || {
                for name in names.iter().skip(t).step_by(2) {
                    let shown = fs::read(point.join("data").join(name)).expect("reading through the mount");
                    assert!(shown == fs::read(src.join(name)).expect("source"), "{name:?} differs");
                }
            });
        }
    });
    // Reads that bypass the page cache (O_DIRECT), at random places, all at once: each one
    // reaches the server, which decompresses, replaces and evicts blocks under all of them.
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (names, src, point) = (&names, &src, &mount.point);
            scope.spawn(move || {
                use std::os::unix::fs::OpenOptionsExt;
                let mut seed = t + 1;
                for _ in 0..150 {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let name = &names[(seed >> 33) as usize % names.len()];
                    let want = fs::read(src.join(name)).expect("source");
                    let file = fs::OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_DIRECT)
                        .open(point.join("data").join(name))
                        .expect("open O_DIRECT");
                    let offset = (seed >> 20) as usize % want.len();
                    let mut buf = vec![0u8; 20_000];
                    let n = file.read_at(&mut buf, offset as u64).expect("pread O_DIRECT");
                    assert!(
                        buf[..n] == want[offset..(offset + 20_000).min(want.len())],
                        "{name:?} at {offset}"
                    );
                }
            });
        }
    });
    // Reads at any offset and length, straddling blocks.
    let file = fs::File::open(mount.point.join("data/f001")).expect("open");
    let whole = fs::read(src.join("f001")).expect("source");
    for (offset, len) in [(0, 1), (65_000, 2_000), (whole.len() as u64 - 3, 10), (whole.len() as u64 + 5, 4)]
    {
        let mut buf = vec![0u8; len];
        let n = file.read_at(&mut buf, offset).expect("pread");
        let from = (offset as usize).min(whole.len());
        let to = (from + len).min(whole.len());
        assert_eq!(&buf[..n], &whole[from..to], "pread({offset}, {len})");
    }
}

/// Flips one byte in the middle of the frame of the block that holds `file`'s first bytes.
fn damage_block_of(archive: &Path, file: &str) {
    let opened = arc::archive::Archive::open(archive.to_str().expect("UTF-8").into()).expect("opening");
    let index = &opened.index;
    let entry = (0..index.entries.len())
        .find(|&i| index.path(i).ends_with(file.as_bytes()))
        .unwrap_or_else(|| panic!("{file} is not in the archive"));
    let block = index.blocks[index.blocks_of(entry).start];
    let mut bytes = fs::read(archive).expect("reading the archive");
    bytes[(block.offset + block.len / 2) as usize] ^= 0x55;
    fs::write(archive, bytes).expect("writing the damaged archive");
}

#[test]
fn a_damaged_block_gives_eio_to_its_files_only_and_is_logged() {
    if skipped("a_damaged_block_gives_eio_to_its_files_only_and_is_logged") {
        return;
    }
    let env = TestEnv::new_in(Path::new("/dev/shm"));
    let src = archived_files(&env, "data.arc", 60);
    damage_block_of(&env.path("data.arc"), "f030");
    let log = env.path("mount.log");
    let mount = Mounted::new(&env, "data.arc", "mnt", &["--log", log.to_str().expect("UTF-8")]);
    let (mut failed, mut good) = (Vec::new(), 0);
    for n in 0..60 {
        let name = format!("f{n:03}");
        match fs::read(mount.point.join("data").join(&name)) {
            Ok(bytes) => {
                assert!(
                    bytes == fs::read(src.join(&name)).expect("source"),
                    "{name}: wrong bytes, not an error"
                );
                good += 1;
            }
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{name}: {e}");
                failed.push(name);
            }
        }
    }
    assert!(failed.contains(&"f030".to_owned()), "f030 read, from a damaged block");
    assert!(good > 40, "only {good} files read: the damage reached beyond one block");
    // The mount is still up and answers.
    assert!(mount.point.join("data/f000").metadata().is_ok());
    let logged = fs::read_to_string(&log).expect("the log");
    let lines: Vec<&str> = logged.lines().collect();
    assert_eq!(lines.len(), 1, "one line for the damaged block: {logged}");
    assert!(lines[0].starts_with("arc: error: block ") && lines[0].contains("f030"), "{logged}");
}

#[test]
fn an_archive_truncated_under_a_mount_gives_errors_never_wrong_bytes() {
    if skipped("an_archive_truncated_under_a_mount_gives_errors_never_wrong_bytes") {
        return;
    }
    let env = TestEnv::new_in(Path::new("/dev/shm"));
    let src = archived_files(&env, "data.arc", 60);
    let mount = Mounted::new(&env, "data.arc", "mnt", &["--cache", "64K"]);
    let archive = fs::OpenOptions::new().write(true).open(env.path("data.arc")).expect("open");
    let len = archive.metadata().expect("stat").len();
    archive.set_len(len / 2).expect("truncating");
    let mut errors = 0;
    for n in 0..60 {
        let name = format!("f{n:03}");
        match fs::read(mount.point.join("data").join(&name)) {
            Ok(bytes) => assert!(bytes == fs::read(src.join(&name)).expect("source"), "{name}: wrong bytes"),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{name}: {e}");
                errors += 1;
            }
        }
    }
    assert!(errors > 0, "no read failed, though half the archive is gone");
}

#[test]
fn unmounting_with_a_reader_inside_waits_for_it_and_the_server_then_ends() {
    if skipped("unmounting_with_a_reader_inside_waits_for_it_and_the_server_then_ends") {
        return;
    }
    let env = TestEnv::new_in(Path::new("/dev/shm"));
    let src = archived_files(&env, "data.arc", 10);
    let mount = Mounted::new(&env, "data.arc", "mnt", &[]);
    let server = server_of(&mount.point).expect("the server process");
    let mut file = fs::File::open(mount.point.join("data/f003")).expect("open");
    // Busy: a plain umount fails, and leaves the mount whole.
    let plain = run(Command::new("umount").arg(&mount.point));
    assert_ne!(plain.code, 0, "umount of a busy mount succeeded");
    assert!(is_mounted(&mount.point));
    // A lazy one detaches it; the reader keeps reading right bytes.
    run(Command::new("umount").arg("-l").arg(&mount.point)).success();
    assert!(!is_mounted(&mount.point));
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).expect("reading after the unmount");
    assert!(bytes == fs::read(src.join("f003")).expect("source"));
    assert!(!ended(server), "the server ended while a file was open");
    drop(file);
    assert!(wait_for(|| ended(server)), "the server did not end");
}

#[test]
fn two_mounts_of_one_archive_each_serve_it() {
    if skipped("two_mounts_of_one_archive_each_serve_it") {
        return;
    }
    let env = TestEnv::new_in(Path::new("/dev/shm"));
    let src = archived_files(&env, "data.arc", 8);
    let first = Mounted::new(&env, "data.arc", "m1", &[]);
    let second = Mounted::new(&env, "data.arc", "m2", &["-o", "uid=1234,gid=5678", "-o", "allow_other"]);
    for n in 0..8 {
        let name = format!("data/f{n:03}");
        let want = fs::read(src.join(&name[5..])).expect("source");
        assert!(fs::read(first.point.join(&name)).expect("first") == want);
        assert!(fs::read(second.point.join(&name)).expect("second") == want);
    }
    let meta = fs::metadata(second.point.join("data/f000")).expect("stat");
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678), "-o uid=,gid= shows every entry so owned");
    assert_eq!(fs::metadata(first.point.join("data/f000")).expect("stat").uid(), 0);
    // Other users come in only with allow_other, and the modes shown are enforced.
    crate::support::set_mode(env.root(), 0o755);
    let cat_as_nobody = |point: &Path| {
        run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(point.join("data/f000")))
    };
    let refused = cat_as_nobody(&first.point);
    assert!(refused.code != 0 && refused.stderr.contains("Permission denied"), "{}", refused.describe());
    let allowed = cat_as_nobody(&second.point);
    allowed.success();
    assert!(allowed.stdout == fs::read(src.join("f000")).expect("source"));
    // Ending one leaves the other.
    run(Command::new("umount").arg(&first.point)).success();
    assert!(is_mounted(&second.point));
    assert!(second.point.join("data/f007").metadata().is_ok());
}

#[test]
fn the_foreground_mount_ends_on_sigterm_and_the_idle_one_by_itself() {
    if skipped("the_foreground_mount_ends_on_sigterm_and_the_idle_one_by_itself") {
        return;
    }
    let env = TestEnv::new_in(Path::new("/dev/shm"));
    archived_files(&env, "data.arc", 4);
    let point = env.mkdir("fg");
    let _guard = Mounted { point: point.clone() };
    let child = Command::new(ARC)
        .args(["mount", "-f", "data.arc", "fg"])
        .current_dir(env.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting arc mount -f");
    assert!(wait_for(|| is_mounted(&point)), "arc mount -f mounted nothing");
    assert!(point.join("data/f000").metadata().is_ok());
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    )
    .expect("kill");
    let output = child.wait_with_output().expect("waiting for arc");
    let run = Run::from_output("arc mount -f".to_owned(), output);
    run.code(143);
    assert!(!is_mounted(&point), "SIGTERM left the mount");

    let idle = Mounted::new(&env, "data.arc", "idle", &["--idle-exit", "1"]);
    assert!(idle.point.join("data/f001").metadata().is_ok());
    assert!(wait_for(|| !is_mounted(&idle.point)), "--idle-exit 1 did not unmount within 10 s");
}

#[test]
fn what_is_wrong_before_the_mount_is_said_and_leaves_no_mount() {
    if skipped("what_is_wrong_before_the_mount_is_said_and_leaves_no_mount") {
        return;
    }
    // In the temporary directory, not /dev/shm: the no-FUSE case hides /dev.
    let env = TestEnv::new();
    archived_files(&env, "data.arc", 3);
    env.file("not.arc", b"hello, this is not an archive at all, just some text\n");
    let bytes = fs::read(env.path("data.arc")).expect("archive");
    let mut damaged = bytes.clone();
    let at = bytes.len() - 40;
    damaged[at] ^= 1;
    fs::write(env.path("damaged.arc"), damaged).expect("writing");
    env.mkdir("mnt");
    env.file("plain", b"a file");
    let before = mount_points();
    let cases: &[(&[&str], &str)] = &[
        (&["mount", "not.arc", "mnt"], "arc: error: reading not.arc: "),
        (&["mount", "damaged.arc", "mnt"], "arc: error: reading damaged.arc: "),
        (&["mount", "missing.arc", "mnt"], "arc: error: opening missing.arc: "),
        (&["mount", "data.arc", "nowhere"], "arc: error: mounting on nowhere: No such file or directory"),
        (&["mount", "data.arc", "plain"], "arc: error: mounting on plain: not a directory"),
        (&["mount", "-o", "rw", "data.arc", "mnt"], "arc: error: mount option \"rw\" is not one arc knows"),
    ];
    for (args, said) in cases {
        let run = env.arc(*args);
        run.code(2);
        assert!(run.stderr.starts_with(said), "{}", run.describe());
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.describe());
    }
    let zero = env.arc(["mount", "--idle-exit", "0", "data.arc", "mnt"]);
    zero.code(2);
    assert!(zero.stderr.starts_with("arc: error: invalid value '0' for '--idle-exit"), "{}", zero.describe());
    // No FUSE in this "container": /dev without fuse, in a mount namespace of its own.
    let (archive, point) = (env.path("data.arc"), env.path("mnt"));
    let no_fuse = run_program(
        &["unshare", "--mount", "--propagation", "private", "sh", "-c"],
        [format!("mount -t tmpfs none /dev && exec {ARC} mount {} {}", archive.display(), point.display())],
    );
    // unshare may be refused where the test runs (a container without the right); then it
    // says so rather than run arc.
    if no_fuse.stderr.contains("unshare:") {
        eprintln!("note: unshare is not allowed here, so the no-FUSE case is not tested: {}", no_fuse.stderr);
    } else {
        no_fuse.code(2);
        assert!(no_fuse.stderr.contains("/dev/fuse is missing"), "{}", no_fuse.describe());
    }
    // No permission on /dev/fuse: another user, who may read the archive and the mount point.
    for (path, mode) in [(env.root().to_owned(), 0o755), (archive.clone(), 0o644), (point.clone(), 0o777)] {
        crate::support::set_mode(&path, mode);
    }
    let nobody = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", ARC, "mount"])
        .arg(&archive)
        .arg(&point));
    nobody.code(2);
    assert!(nobody.stderr.contains("no permission to open /dev/fuse"), "{}", nobody.describe());
    assert_eq!(mount_points(), before, "a refused mount left a mount behind");
}

#[test]
fn a_user_other_than_root_mounts_through_fusermount3() {
    if skipped("a_user_other_than_root_mounts_through_fusermount3") {
        return;
    }
    if which("fusermount3").is_none() || which("unshare").is_none() || which("setpriv").is_none() {
        eprintln!("skipped: a_user_other_than_root_mounts_through_fusermount3 needs fusermount3, unshare and setpriv");
        return;
    }
    // In the temporary directory: the script below mounts over a directory of its own.
    let env = TestEnv::new();
    let src = archived_files(&env, "data.arc", 5);
    let point = env.mkdir("m");
    let dev = env.mkdir("dev");
    crate::support::set_mode(env.root(), 0o755);
    crate::support::set_mode(&env.path("data.arc"), 0o644);
    std::os::unix::fs::chown(&point, Some(65534), Some(65534)).expect("chown");
    // In a mount namespace of its own, /dev/fuse is replaced by a node `nobody` may open (the
    // machine's own keeps its mode); `nobody` mounts, reads, and unmounts with fusermount3.
    let as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
    let script = format!(
        "set -e; mount -t tmpfs none {dev}; mknod -m 666 {dev}/fuse c 10 229; mount --bind {dev}/fuse /dev/fuse; \
         {as_nobody} {ARC} mount {archive} {point}; \
         grep ' {point} ' /proc/mounts; \
         {as_nobody} cat {point}/data/f002 > {dev}/copy; \
         {as_nobody} fusermount3 -u {point}; cat {dev}/copy",
        dev = dev.display(),
        archive = env.path("data.arc").display(),
        point = point.display(),
    );
    let run = run_program(&["unshare", "--mount", "--propagation", "private", "sh", "-c"], [script]);
    if run.stderr.contains("unshare:") {
        eprintln!("skipped: unshare is not allowed here: {}", run.stderr);
        return;
    }
    run.success();
    let out = run.stdout.as_slice();
    let line_end = out.iter().position(|&b| b == b'\n').expect("the /proc/mounts line");
    let line = String::from_utf8_lossy(&out[..line_end]);
    assert!(line.contains("user_id=65534") && line.contains(" ro,"), "mounted as: {line}");
    assert!(
        out[line_end + 1..] == fs::read(src.join("f002")).expect("source")[..],
        "nobody read other bytes"
    );
    assert!(!is_mounted(&point));
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Every entry beneath `dir` visited through the mount: listed, stat'ed, files read (EIO is
/// the one error a damaged block may give), symlinks read, attributes listed. Returns how
/// many entries.
fn walk(dir: &Path) -> usize {
    let mut count = 0;
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display())) {
        let path = entry.expect("an entry").path();
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        count += 1;
        let _ = rustix::fs::listxattr(&path, &mut [0u8; 4096][..]);
        if meta.is_dir() {
            count += walk(&path);
        } else if meta.file_type().is_symlink() {
            fs::read_link(&path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()));
        } else if meta.is_file() {
            if let Err(e) = fs::read(&path) {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "reading {}: {e}", path.display());
            }
        }
    }
    count
}

/// The daemon's peak memory, MiB.
fn peak_mib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("a number") / 1024
}

#[test]
fn hostile_and_damaged_archives_mount_no_worse_than_they_list() {
    if skipped("hostile_and_damaged_archives_mount_no_worse_than_they_list") {
        return;
    }
    let env = TestEnv::new_in(Path::new("/dev/shm"));
    // The read fuzz target's corpus (damaged blocks, crafted indexes, names of every kind),
    // and names that look like paths or options.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/read");
    let mut archives: Vec<(String, Vec<u8>)> = fs::read_dir(&corpus)
        .expect("the read corpus")
        .map(|e| e.expect("an input").path())
        .map(|path| {
            let input = fs::read(&path).expect("an input");
            let name = path.file_name().expect("a name").to_string_lossy().into_owned();
            (name, crate::support::harness::archive_from_input(input[0], &input[1..]))
        })
        .collect();
    let names = crate::support::Spec::new()
        .dir(0, "-rf")
        .file(1, " ", "space")
        .file(1, "..a", "dot dot a")
        .file(1, "\\..\\sentinel", "backslashes")
        .file(1, "a\nb", "newline")
        .file(1, "esc\u{1b}[31m", "escape");
    archives.push(("odd-names".to_owned(), names.archive()));
    let (mut mounted, mut refused) = (0, 0);
    for (name, bytes) in &archives {
        let archive = env.path(format!("{name}.arc"));
        fs::write(&archive, bytes).expect("writing the archive");
        let archive = archive.to_str().expect("UTF-8");
        // `list -l` checks the whole index, as a mount does (a plain `list` only the tree).
        let listed = env.arc(["list", "-l", archive]);
        let point = env.mkdir(format!("m-{name}"));
        let guard = Mounted { point: point.clone() };
        let mount = env.arc(["mount", "--cache", "1M", archive, point.to_str().expect("UTF-8")]);
        if mount.code != 0 {
            // Refused as `arc list -l` refuses it, in one line, leaving nothing mounted.
            mount.code(2);
            assert_ne!(listed.code, 0, "{name}: listed, yet not mounted: {}", mount.describe());
            assert_eq!(mount.stderr.lines().count(), 1, "{}", mount.describe());
            assert!(!is_mounted(&point), "{name}: a refused mount left a mount");
            refused += 1;
            continue;
        }
        listed.success();
        let server = server_of(&point).expect("the server");
        let entries = walk(&point);
        assert_eq!(entries, listed.stdout_lines().len(), "{name}: the mount shows another number of entries");
        assert!(point.metadata().is_ok(), "{name}: the mount stopped answering");
        // The index and the cache, and the blocks being decompressed: these are small.
        let peak = peak_mib(server);
        assert!(peak <= 64, "{name}: the server peaked at {peak} MiB");
        drop(guard);
        assert!(wait_for(|| ended(server)), "{name}: the server did not end");
        mounted += 1;
    }
    eprintln!("note: {mounted} archives mounted and walked, {refused} refused");
    assert!(
        mounted >= 5 && refused >= 5,
        "the corpus lost its variety: {mounted} mounted, {refused} refused"
    );
}

#[test]
fn a_mount_made_again_on_the_same_directory_stays() {
    if skipped("a_mount_made_again_on_the_same_directory_stays") {
        return;
    }
    let env = TestEnv::new_in(Path::new("/dev/shm"));
    archived_files(&env, "data.arc", 3);
    let point = env.mkdir("m");
    let _guard = Mounted { point: point.clone() };
    for _ in 0..8 {
        env.arc(["mount", "data.arc", "m"]).success();
        assert!(point.join("data/f000").metadata().is_ok());
        run(Command::new("umount").arg(&point)).success();
        // The server of the mount just ended must not take the next one away as it ends.
        env.arc(["mount", "data.arc", "m"]).success();
        std::thread::sleep(Duration::from_millis(100));
        assert!(is_mounted(&point), "the new mount was taken away");
        run(Command::new("umount").arg(&point)).success();
    }
}

#[test]
fn the_background_server_keeps_no_file_of_its_caller_and_reads_ahead() {
    if skipped("the_background_server_keeps_no_file_of_its_caller_and_reads_ahead") {
        return;
    }
    let env = TestEnv::new_in(Path::new("/dev/shm"));
    // One file of 40 blocks of 64 KiB.
    let src = env.mkdir("src/data");
    fs::write(src.join("big"), pseudo_random(40 << 16, 7)).expect("writing");
    env.arc(["write", "-q", "--block-size", "64K", "-o", "data.arc", "src/data"]).success();
    let point = env.mkdir("m");
    let _guard = Mounted { point: point.clone() };
    let log = env.path("mount.log");
    // A caller whose stdout is a pipe another program reads to its end: it must see the end
    // when `arc mount` returns, though the server runs on.
    let script = format!("{ARC} mount --debug --log {} data.arc m 3>&1 | cat; echo done", log.display());
    let started = Instant::now();
    let piped = run(Command::new("timeout").args(["10", "sh", "-c", &script]).current_dir(env.root()));
    piped.success();
    assert!(started.elapsed() < Duration::from_secs(5), "the caller's pipe stayed open in the server");
    assert!(is_mounted(&point));
    assert!(
        fs::read(point.join("src/data/big")).expect("read") == fs::read(src.join("big")).expect("source")
    );
    let logged = fs::read_to_string(&log).expect("the log");
    let ahead = logged.lines().filter(|l| l.contains("read-ahead of block")).count();
    // How many depends on how fast the reads come (the kernel reads ahead too); none would
    // mean it never happens.
    assert!(ahead >= 1, "no block read ahead for a file of 40 read in order:\n{logged}");
}
