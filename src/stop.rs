//! Stopping early: the signal flag, and the first-error slot the pipeline stages share.
//!
//! A stage that fails calls [`Failure::record`]; other stages poll [`Failure::check`] between
//! units of work and return [`Stopped`], which is never reported itself. SIGINT and SIGTERM set
//! the [`Stop`] flag the same way, so an interrupted command unwinds like a failed one: temporary
//! files are removed by their owners' destructors and the exit status is non-zero.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;

/// This stage stopped because another one failed; the other one's error is the one to report.
#[derive(Debug, thiserror::Error)]
#[error("stopped because another stage failed")]
pub struct Stopped;

/// The command was stopped by a signal; the exit status is 128 + the signal's number, as
/// shells report it (130 for SIGINT, 143 for SIGTERM).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("interrupted by signal {signal}")]
pub struct Interrupted {
    pub signal: i32,
}

impl Interrupted {
    pub fn exit_status(self) -> u8 {
        u8::try_from(128 + self.signal).unwrap_or(255)
    }
}

/// Set by SIGINT or SIGTERM.
#[derive(Clone, Default)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    /// The signal that set the flag.
    signal: Arc<AtomicUsize>,
}

impl Stop {
    /// Routes SIGINT and SIGTERM to the flag. A second signal while the first is being handled
    /// ends the process at once, for a user who does not want to wait for the clean-up.
    pub fn install() -> Result<Stop> {
        let stop = Stop::default();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let status = 128 + signal;
            signal_hook::flag::register_conditional_shutdown(signal, status, Arc::clone(&stop.flag))?;
            signal_hook::flag::register_usize(signal, Arc::clone(&stop.signal), signal as usize)?;
            signal_hook::flag::register(signal, Arc::clone(&stop.flag))?;
        }
        Ok(stop)
    }

    pub fn check(&self) -> Result<(), Interrupted> {
        if self.flag.load(Ordering::Relaxed) {
            let signal = self.signal.load(Ordering::Relaxed);
            Err(Interrupted { signal: i32::try_from(signal).unwrap_or(signal_hook::consts::SIGINT) })
        } else {
            Ok(())
        }
    }
}

/// The first error of a group of threads, and a flag telling the others to stop.
pub struct Failure<'a> {
    stop: &'a Stop,
    failed: AtomicBool,
    first: Mutex<Option<anyhow::Error>>,
}

impl<'a> Failure<'a> {
    pub fn new(stop: &'a Stop) -> Failure<'a> {
        Failure { stop, failed: AtomicBool::new(false), first: Mutex::new(None) }
    }

    /// Keeps `error` if it is the first real one; a [`Stopped`] is only an echo of another.
    pub fn record(&self, error: anyhow::Error) {
        self.failed.store(true, Ordering::Relaxed);
        if error.is::<Stopped>() {
            return;
        }
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(error);
    }

    /// Whether the group is stopping (a stage failed or a signal came): a check that makes no
    /// error value, for loops over many units of work, where an error per unit would cost
    /// (a backtrace each, with RUST_BACKTRACE set) and say nothing new.
    pub fn stopping(&self) -> bool {
        self.failed.load(Ordering::Relaxed) || self.stop.check().is_err()
    }

    /// Err([`Stopped`]) once any stage failed, Err([`Interrupted`]) after a signal.
    pub fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(Stopped.into());
        }
        Ok(self.stop.check()?)
    }

    /// The first recorded error, else Interrupted if a signal came, else Ok.
    pub fn take(&self) -> Result<()> {
        if let Some(error) = self.first.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(error);
        }
        Ok(self.stop.check()?)
    }
}
