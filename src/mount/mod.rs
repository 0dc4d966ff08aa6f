//! `arc mount ARCHIVE MOUNTPOINT`: a read-only FUSE view of an archive, served from its index
//! and its blocks, decompressed as reads need them.
//!
//! Rooms: [`view`] is what the mount shows (inodes, attributes, listings, bytes), computed
//! from the index; [`cache`] holds decompressed blocks within a budget; [`fs`] answers the
//! kernel (metadata on the session's thread, reads on a pool of workers). This file checks
//! what can be checked before mounting, mounts, and runs the mount in the foreground or in a
//! background process that the command leaves once the mount answers.
//!
//! Invariants:
//! - everything that can fail before the mount is ready fails in the command itself, with the
//!   usual one-line error and exit status 2, and leaves no mount behind: the archive and its
//!   index are read and checked, the mount point looked at and /dev/fuse opened before the
//!   background process is made (by `fork`, before any thread exists), and the background
//!   process reports the mount's own failure back through a pipe;
//! - the mount is read-only (`ro` in /proc/mounts), nosuid and nodev, with the kernel checking
//!   modes (`default_permissions`);
//! - it ends cleanly on `umount`/`fusermount3 -u`, on SIGINT or SIGTERM, and after
//!   `--idle-exit` seconds with nothing open and nothing asked.

mod cache;
mod fs;
mod view;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use camino::{Utf8Path, Utf8PathBuf};
use fuser::MountOption;

use crate::archive::Archive;
use crate::stop::Stop;
use crate::ui::escape;

pub use view::{Shown, View};

/// Reads waiting for a worker, at most.
const READS_QUEUED: usize = 4096;

/// The block cache's budget when `--cache` is not given.
pub const DEFAULT_CACHE: &str = "128MiB";

#[derive(Debug, Clone)]
pub struct MountOptions {
    pub archive: Utf8PathBuf,
    pub mountpoint: Utf8PathBuf,
    pub foreground: bool,
    pub debug: bool,
    /// Bytes of decompressed blocks kept.
    pub cache: u64,
    pub idle_exit: Option<u64>,
    /// Where a background mount writes its messages (else nowhere).
    pub log: Option<Utf8PathBuf>,
    /// The `-o` options, each a comma-separated list.
    pub options: Vec<String>,
    pub threads: usize,
}

/// What `-o` asked for.
#[derive(Debug, Default)]
struct FuseOptions {
    allow_other: bool,
    allow_root: bool,
    shown: Shown,
}

fn parse_options(lists: &[String]) -> Result<FuseOptions> {
    let mut parsed = FuseOptions::default();
    let id = |option: &str, value: &str| -> Result<u32> {
        value.parse().map_err(|_| anyhow!("mount option {option}: {value:?} is not a number"))
    };
    for option in lists.iter().flat_map(|list| list.split(',')).filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            None if option == "ro" => {}
            None if option == "allow_other" => parsed.allow_other = true,
            None if option == "allow_root" => parsed.allow_root = true,
            Some(("uid", value)) => parsed.shown.uid = Some(id(option, value)?),
            Some(("gid", value)) => parsed.shown.gid = Some(id(option, value)?),
            _ => bail!(
                "mount option {option:?} is not one arc knows (ro, allow_other, allow_root, uid=N, gid=N)"
            ),
        }
    }
    if parsed.allow_other && parsed.allow_root {
        bail!("mount options allow_other and allow_root: give one of them");
    }
    Ok(parsed)
}

pub fn run(options: &MountOptions, stop: &Stop) -> Result<()> {
    let fuse = parse_options(&options.options)?;
    let archive = Archive::open(&options.archive)?;
    let meta = std::fs::metadata(&options.archive).with_context(|| format!("reading {}", options.archive))?;
    let root = {
        use std::os::unix::fs::MetadataExt;
        view::RootAttr {
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    };
    let mountpoint = check_mountpoint(&options.mountpoint)?;
    check_fuse(&mountpoint)?;
    let view = View::new(archive, fuse.shown, root);
    blocks_from_the_system();
    let mounting = Mounting { options, fuse, mountpoint, stop };
    // Messages go to stderr: the terminal with -f, else the --log file (or nowhere).
    let log = Arc::new(Log);
    if options.foreground {
        return mounting.serve(view, log, |_| {});
    }
    let log_file = match &options.log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening log {path}"))?,
        ),
        None => None,
    };
    let keep = [std::os::fd::AsRawFd::as_raw_fd(&view.archive)];
    background(&mounting, log_file, &keep, |ready| mounting.serve(view, log, ready))
}

/// Makes glibc take every buffer of a block (and of a frame) from the system and give it back
/// when it is freed. By default its threshold for that rises after the first such buffer is
/// freed, and blocks evicted from the cache then stay in the worker threads' heaps: the
/// server's memory grew 20 MiB beyond the index and the budget on the Linux archive. Spare
/// buffers are reused (`cache`), so this costs few page faults.
fn blocks_from_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets a parameter of glibc's allocator; no thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The mount point, made absolute (a background mount leaves the working directory), if it
/// is a directory.
fn check_mountpoint(path: &Utf8Path) -> Result<Utf8PathBuf> {
    let what = || format!("mounting on {path}");
    let meta = std::fs::metadata(path).with_context(what)?;
    if !meta.is_dir() {
        return Err(anyhow!("not a directory")).with_context(what);
    }
    path.canonicalize_utf8().with_context(what)
}

/// Whether FUSE can be used here: /dev/fuse opens, and as another user than root,
/// `fusermount3` is there to mount with.
fn check_fuse(mountpoint: &Utf8Path) -> Result<()> {
    let what = || format!("mounting on {mountpoint}");
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(anyhow!(
                "/dev/fuse is missing: this kernel or container has no FUSE (load the fuse module, or \
                 give the container the device /dev/fuse)"
            ))
            .with_context(what)
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(anyhow!(
                "no permission to open /dev/fuse (run as root, or join the group that owns it)"
            ))
            .with_context(what)
        }
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) || e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(anyhow!("this kernel has no FUSE (/dev/fuse: {e})")).with_context(what)
        }
        Err(e) => return Err(anyhow!("/dev/fuse: {e}")).with_context(what),
    }
    if !rustix::process::geteuid().is_root()
        && which("fusermount3").is_none()
        && which("fusermount").is_none()
    {
        return Err(anyhow!(
            "fusermount3 is not installed (the fuse3 package): a user other than root mounts through it"
        ))
        .with_context(what);
    }
    Ok(())
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Where the mount's messages go: stderr, which is the terminal in the foreground and the
/// `--log` file (or /dev/null) in the background. One line at a time, whole, escaped.
pub struct Log;

impl Log {
    pub fn line(&self, text: &str) {
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "{}", escape(text));
    }
}

/// One mount being made.
struct Mounting<'a> {
    options: &'a MountOptions,
    fuse: FuseOptions,
    mountpoint: Utf8PathBuf,
    stop: &'a Stop,
}

impl Mounting<'_> {
    /// Whether a mount of this archive is on the mount point (one a background process that
    /// died left).
    fn left_mounted(&self) -> bool {
        let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
        table.lines().any(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let after = fields.iter().position(|&f| f == "-").map_or(&[][..], |k| &fields[k + 1..]);
            fields.get(4) == Some(&self.mountpoint.as_str())
                && after.first().is_some_and(|t| t.starts_with("fuse"))
                && after.get(1) == Some(&self.options.archive.as_str())
        })
    }

    fn fuse_options(&self) -> Vec<MountOption> {
        let mut list = vec![
            MountOption::RO,
            MountOption::FSName(self.options.archive.to_string()),
            MountOption::Subtype("arc".to_owned()),
            MountOption::DefaultPermissions,
            MountOption::NoSuid,
            MountOption::NoDev,
        ];
        if self.fuse.allow_other {
            list.push(MountOption::AllowOther);
        }
        if self.fuse.allow_root {
            list.push(MountOption::AllowRoot);
        }
        list
    }

    /// Mounts `view`, calls `ready` once the mount answers, and serves it until it is
    /// unmounted.
    fn serve(&self, view: View, log: Arc<Log>, ready: impl FnOnce(Result<(), String>) + Send) -> Result<()> {
        let options = self.options;
        let view = Arc::new(view);
        let activity = Arc::new(fs::Activity::new());
        let threads = options.threads.max(1);
        // The workers, and the session's thread for reads of the cache (which decompress
        // nothing): `threads` decompressing at once.
        let cache = fs::cache_for(&view, options.cache, threads, &log);
        // Bounded far above what the kernel keeps in flight (its max_background asynchronous
        // requests, and one synchronous request per calling thread): the session thread,
        // which answers every stat, never waits for room behind reads.
        let (jobs, queue) = mpsc::sync_channel(READS_QUEUED);
        let queue = Mutex::new(queue);
        let what = || format!("mounting {} on {}", options.archive, self.mountpoint);
        let filesystem = fs::Fs {
            view: Arc::clone(&view),
            cache: Arc::clone(&cache),
            jobs: jobs.clone(),
            activity: Arc::clone(&activity),
            log: Arc::clone(&log),
            debug: options.debug,
        };
        let mut session =
            fuser::Session::new(filesystem, self.mountpoint.as_std_path(), &self.fuse_options())
                .with_context(what)?;
        let finished = AtomicBool::new(false);
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..threads {
                let (view, cache, queue, ahead) = (&view, &cache, &queue, jobs.clone());
                let trace = options.debug.then_some(&*log);
                scope.spawn(move || fs::worker(view, cache, queue, &ahead, trace));
            }
            // Ready once the root (inode 1) answers a stat, which goes through the kernel to
            // this process's session loop below. If it does not, the mount is taken away.
            let mountpoint = &self.mountpoint;
            scope.spawn(move || {
                use std::os::unix::fs::MetadataExt;
                match std::fs::metadata(mountpoint) {
                    Ok(meta) if meta.ino() == view::ROOT => ready(Ok(())),
                    answer => {
                        let why =
                            answer.map_or_else(|e| e.to_string(), |_| "another file system answers".into());
                        ready(Err(format!("{}: the mount does not answer: {why}", what())));
                        let _ = unmount(mountpoint, true);
                    }
                }
            });
            scope.spawn(|| self.watch(&activity, &finished));
            let served = session.run().with_context(what);
            finished.store(true, Ordering::Relaxed);
            for _ in 0..threads {
                let _ = jobs.send(fs::Job::Stop);
            }
            served
        })?;
        // Not dropped: fuser's drop would unmount the mount point if its device looked still
        // mounted, and a device whose file system is gone can look so: a new mount made on
        // the same directory meanwhile would be taken away. The session ended because the
        // file system was unmounted; the process ends now.
        std::mem::forget(session);
        // Unmounted by a signal: the command says so, with 128 + its number.
        self.stop.check()?;
        Ok(())
    }

    /// Unmounts on SIGINT or SIGTERM, and after `--idle-exit` seconds of idleness, until the
    /// session ends.
    fn watch(&self, activity: &fs::Activity, finished: &AtomicBool) {
        let tick = Duration::from_millis(100);
        while !finished.load(Ordering::Relaxed) {
            std::thread::sleep(tick);
            if let Err(interrupted) = self.stop.check() {
                // Detached even if busy, as libfuse does on a signal; readers still inside get
                // ENOTCONN once this process has ended (2 s at most after the signal).
                let _ = unmount(&self.mountpoint, true);
                let deadline = Instant::now() + Duration::from_secs(2);
                while !finished.load(Ordering::Relaxed) && Instant::now() < deadline {
                    std::thread::sleep(tick);
                }
                if !finished.load(Ordering::Relaxed) {
                    std::process::exit(interrupted.exit_status().into());
                }
                return;
            }
            let idle =
                self.options.idle_exit.is_some_and(|limit| activity.idle() >= Duration::from_secs(limit));
            if idle && unmount(&self.mountpoint, false).is_ok() {
                return;
            }
        }
    }
}

/// Unmounts `mountpoint` (`lazy`: even if busy, detaching it): umount2 as root, else
/// through fusermount3.
fn unmount(mountpoint: &Utf8Path, lazy: bool) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        let flags =
            if lazy { rustix::mount::UnmountFlags::DETACH } else { rustix::mount::UnmountFlags::empty() };
        rustix::mount::unmount(mountpoint.as_str(), flags)?;
        return Ok(());
    }
    let program = if which("fusermount3").is_some() { "fusermount3" } else { "fusermount" };
    let mut command = std::process::Command::new(program);
    command.arg("-u").arg("-q");
    if lazy {
        command.arg("-z");
    }
    let status = command.arg(mountpoint.as_str()).stderr(std::process::Stdio::null()).status()?;
    if !status.success() {
        bail!("{program} -u {mountpoint} failed");
    }
    Ok(())
}

/// Runs `serve` in a background process and returns once it says the mount is ready, or
/// with its error. The process is made before any thread exists; it leaves the terminal's
/// session and the working directory; its stdin and stdout are /dev/null, its stderr the log
/// (`log`, else /dev/null), and it keeps no other file of this process but those in `keep`.
/// If it ends before it said either, a mount of this archive it left is taken away.
fn background(
    mounting: &Mounting<'_>,
    log: Option<std::fs::File>,
    keep: &[std::os::fd::RawFd],
    serve: impl FnOnce(Box<dyn FnOnce(Result<(), String>) + Send>) -> Result<()>,
) -> Result<()> {
    use std::os::fd::AsRawFd;
    let (mut from_child, to_parent) = {
        let (r, w) = rustix::pipe::pipe().context("making a pipe")?;
        (std::fs::File::from(r), std::fs::File::from(w))
    };
    // SAFETY: no thread has been started in this process yet (the mount's threads start in
    // the child), so the child is a whole copy of a single-threaded process.
    match unsafe { nix::unistd::fork() }.context("starting the background process")? {
        nix::unistd::ForkResult::Parent { child } => {
            drop(to_parent);
            let mut said = String::new();
            let _ = from_child.read_to_string(&mut said);
            if said == "ready" {
                // Stopped while waiting: the mount is not wanted any more.
                if let Err(interrupted) = mounting.stop.check() {
                    if let Some(pid) = rustix::process::Pid::from_raw(child.as_raw()) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                    }
                    return Err(interrupted.into());
                }
                return Ok(());
            }
            let _ = nix::sys::wait::waitpid(child, None);
            if said.is_empty() {
                if mounting.left_mounted() {
                    let _ = unmount(&mounting.mountpoint, true);
                }
                bail!("the background process ended before the mount was ready");
            }
            Err(anyhow!(said))
        }
        nix::unistd::ForkResult::Child => {
            drop(from_child);
            let _ = nix::unistd::setsid();
            let _ = std::env::set_current_dir("/");
            if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                let _ = rustix::stdio::dup2_stdin(&null);
                let _ = rustix::stdio::dup2_stdout(&null);
                let _ = rustix::stdio::dup2_stderr(log.as_ref().unwrap_or(&null));
            }
            drop(log);
            let mut kept = keep.to_vec();
            kept.push(to_parent.as_raw_fd());
            close_all_but(&kept);
            let to_parent = Arc::new(Mutex::new(Some(to_parent)));
            let said = Arc::clone(&to_parent);
            let ready = Box::new(move |result: Result<(), String>| {
                if let Some(mut pipe) = said.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = pipe.write_all(result.as_ref().map_or_else(|e| e.as_bytes(), |()| b"ready"));
                }
            });
            let code = match serve(ready) {
                Ok(()) => 0,
                Err(e) => {
                    let message = format!("{e:#}");
                    match to_parent.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        // Not ready yet: the command says it.
                        Some(mut pipe) => {
                            let _ = pipe.write_all(message.as_bytes());
                        }
                        None => eprintln!("arc: error: {}", escape(&message)),
                    }
                    2
                }
            };
            std::process::exit(code);
        }
    }
}

/// Closes every file descriptor above stderr but `keep`: what the command was started with
/// (a pipe a script waits on, say) must not stay open in the background process.
fn close_all_but(keep: &[std::os::fd::RawFd]) {
    let open: Vec<std::os::fd::RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect(),
        Err(_) => return,
    };
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: nothing in this process uses these descriptors: the archive's and the pipe's
        // are kept, and no thread exists yet. One already closed (the listing's) is EBADF.
        unsafe {
            libc::close(fd);
        }
    }
}
