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

pub use view::{Shown, View};

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
    let mounting = Mounting { options, fuse, mountpoint, stop };
    if options.foreground {
        let log = Arc::new(Log::to(Box::new(std::io::stderr())));
        mounting.serve(view, log, |_| {})
    } else {
        let log = match &options.log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening log {path}"))?;
                Log::to(Box::new(file))
            }
            None => Log::to(Box::new(std::io::sink())),
        };
        background(|ready| mounting.serve(view, Arc::new(log), ready))
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

/// Where the mount's messages go: stderr in the foreground, the `--log` file (or nowhere) in
/// the background. One line at a time, whole.
pub struct Log {
    out: Mutex<Box<dyn Write + Send>>,
}

impl Log {
    fn to(out: Box<dyn Write + Send>) -> Log {
        Log { out: Mutex::new(out) }
    }

    pub fn line(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{}", crate::ui::escape(text)).and_then(|()| out.flush());
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
    fn serve(&self, view: View, log: Arc<Log>, ready: impl FnOnce(&Log) + Send) -> Result<()> {
        let options = self.options;
        let view = Arc::new(view);
        let cache = fs::cache_for(options.cache, &log);
        let activity = Arc::new(fs::Activity::new());
        let threads = options.threads.max(1);
        let (jobs, queue) = mpsc::sync_channel(threads * 16);
        let queue = Mutex::new(queue);
        let what = || format!("mounting {} on {}", options.archive, self.mountpoint);
        let filesystem = fs::Fs::new(
            Arc::clone(&view),
            Arc::clone(&cache),
            jobs.clone(),
            Arc::clone(&activity),
            Arc::clone(&log),
            options.debug,
        );
        let mut session =
            fuser::Session::new(filesystem, self.mountpoint.as_std_path(), &self.fuse_options())
                .with_context(what)?;
        let finished = AtomicBool::new(false);
        std::thread::scope(|scope| -> Result<()> {
            for _ in 0..threads {
                let (view, cache, queue, ahead) = (&view, &cache, &queue, jobs.clone());
                scope.spawn(move || fs::worker(view, cache, queue, &ahead));
            }
            // Ready once the root answers a stat, which goes through the kernel to this
            // process's session loop below.
            let mountpoint = &self.mountpoint;
            let log_ref = &log;
            scope.spawn(move || {
                if std::fs::metadata(mountpoint).is_ok() {
                    ready(log_ref);
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
        drop(session);
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
                // Readers still inside keep what they have open; the mount leaves the tree.
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
            let idle = self.options.idle_exit.is_some_and(|limit| activity.idle() >= limit);
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
/// session and the working directory, its stdin and stdout are /dev/null, and its stderr
/// is the log (what `serve` writes to `log` goes there).
fn background(serve: impl FnOnce(Box<dyn FnOnce(&Log) + Send>) -> Result<()>) -> Result<()> {
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
            match said.strip_prefix("ready") {
                Some(_) => Ok(()),
                None => {
                    let _ = nix::sys::wait::waitpid(child, None);
                    match said.is_empty() {
                        true => bail!("the background process ended before the mount was ready"),
                        false => Err(anyhow!(said)),
                    }
                }
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(from_child);
            let _ = nix::unistd::setsid();
            let _ = std::env::set_current_dir("/");
            if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                let _ = rustix::stdio::dup2_stdin(&null);
                let _ = rustix::stdio::dup2_stdout(&null);
            }
            let to_parent = Arc::new(Mutex::new(Some(to_parent)));
            let said = Arc::clone(&to_parent);
            let ready = Box::new(move |_: &Log| {
                if let Some(mut pipe) = said.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = pipe.write_all(b"ready");
                }
                // From now on, stderr is where nobody reads: /dev/null.
                if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                    let _ = rustix::stdio::dup2_stderr(&null);
                }
            });
            let result = serve(ready);
            let code = match result {
                Ok(()) => 0,
                Err(e) => {
                    let message = format!("{e:#}");
                    match to_parent.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        // Not ready yet: the command says it.
                        Some(mut pipe) => {
                            let _ = pipe.write_all(message.as_bytes());
                        }
                        None => eprintln!("arc: error: {message}"),
                    }
                    2
                }
            };
            std::process::exit(code);
        }
    }
}
