//! What arc asks of the process and the operating system before it works: the open-file
//! limit and the worker thread pool.
//!
//! Architecture Invariant: `sys` imports nothing else from the crate.

use anyhow::{Context, Result};

/// Raises the soft limit on open files to the hard limit and returns how many directory
/// handles a command may keep open (half the limit, less a margin for files being written,
/// the archive and the threads' own needs).
pub fn raise_fd_limit() -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        if limit.current.is_some_and(|cur| cur < max) {
            limit.current = Some(max);
            let _ = setrlimit(Resource::Nofile, limit);
        }
    }
    let current = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
    (current / 2).saturating_sub(64).min(1 << 20) as usize
}

/// Standard input, for an archive read as it arrives: if it is a pipe, its buffer is made as
/// large as an unprivileged process may (1 MiB by default), so that the writer and arc wake
/// each other a sixteenth as often (with the default 64 KiB, moving a large archive through
/// the pipe costs more system time than decompressing it). Anything else is left as it is.
/// A terminal is refused: an archive is never typed, and waiting for one would look like a hang
/// (as `write -o -` refuses to write an archive to a terminal).
pub fn stdin_for_streaming() -> Result<std::io::StdinLock<'static>> {
    let stdin = std::io::stdin();
    if std::io::IsTerminal::is_terminal(&stdin) {
        anyhow::bail!("reading -: standard input is a terminal; pipe an archive in (arc read - < x.arc)");
    }
    widen_pipe(&stdin);
    Ok(stdin.lock())
}

/// Makes the buffer of `fd`, if it is a pipe, as large as an unprivileged process may, up to
/// 1 MiB (see [`stdin_for_streaming`]; `write -o -` does the same on its side).
pub fn widen_pipe(fd: &impl std::os::fd::AsFd) {
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(1 << 20)
        .min(1 << 20);
    // Fails on what is not a pipe, which is fine.
    let _ = rustix::pipe::fcntl_setpipe_size(fd, max);
}

/// The worker pool of `read` and `verify`: `threads` rayon threads (at least one).
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().context("starting threads")
}

/// A worker pool started the first time it is needed: one file out of one block needs none,
/// and starting threads costs more than writing it.
pub struct LazyPool {
    threads: usize,
    pool: std::sync::OnceLock<rayon::ThreadPool>,
}

impl LazyPool {
    pub fn new(threads: usize) -> LazyPool {
        LazyPool { threads, pool: std::sync::OnceLock::new() }
    }

    /// The pool, started now if it is not yet (by two threads at once, one pool is kept).
    pub fn get(&self) -> Result<&rayon::ThreadPool> {
        if let Some(pool) = self.pool.get() {
            return Ok(pool);
        }
        let pool = thread_pool(self.threads)?;
        Ok(self.pool.get_or_init(|| pool))
    }
}
