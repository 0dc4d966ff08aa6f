//! The progress line (indicatif), and the counters the working threads bump for it.
//!
//! One thread redraws the line from [`Counters`] about 12 times a second while a job runs: a
//! bar with percentage, rate and time left when the total is known (read, verify), a spinner
//! with counts and rate when it is not (write). The line is cut to the terminal's width and
//! says what is being done ("writing"); lines printed meanwhile (`-v` paths, warnings) go
//! through the bar, which steps aside, so nothing tears. When the job succeeds the bar is
//! cleared and one summary line says what was done ("wrote"): it is the last line printed.
//!
//! The counters mean the same in every command: entries handled, data bytes (file contents,
//! uncompressed) and archive bytes (compressed blocks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Console;

/// Counters the working threads bump and the progress thread reads.
#[derive(Default)]
pub struct Counters {
    /// Entries written, extracted or checked.
    pub entries: AtomicU64,
    /// Bytes of file contents, uncompressed.
    pub data: AtomicU64,
    /// Bytes of the archive's blocks, compressed.
    pub archive: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What a job is, for its progress line and summary.
#[derive(Debug, Clone, Copy)]
pub struct Task {
    /// While working: "writing".
    pub doing: &'static str,
    /// In the summary: "wrote".
    pub done: &'static str,
    /// Data bytes the job will handle, when known (it makes the line a bar).
    pub total: Option<u64>,
    /// Whether data becomes archive (write) or archive becomes data (read, verify): the
    /// direction of the summary's arrow.
    pub packs: bool,
}

/// Runs `job` on this thread while a progress thread draws `task`'s line from `counters` on
/// stderr (when the console shows progress); when the job succeeds, the line gives way to the
/// summary, else it is cleared for the error message that follows.
pub fn with_progress<T, E>(
    console: &Console,
    counters: &Counters,
    task: Task,
    job: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    if !console.shows_progress() {
        return job();
    }
    let width = usize::from(::console::Term::stderr().size().1).max(20);
    let bar = new_bar(task, width);
    console.attach(bar.clone());
    let started = Instant::now();
    let (done_tx, done_rx) = sync_channel::<()>(1);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| redraw(&bar, counters, task, started, done_rx));
        let result = job();
        // Dropping the sender tells the thread to stop, whatever the outcome.
        drop(done_tx);
        result
    });
    bar.finish_and_clear();
    console.detach();
    if result.is_ok() {
        console.summary(&summary(counters, task, started.elapsed(), width));
    }
    result
}

fn new_bar(task: Task, width: usize) -> ProgressBar {
    // Redrawn by `redraw`, at most 15 times a second.
    let target = ProgressDrawTarget::stderr_with_hz(15);
    match task.total {
        Some(total) => {
            let bar_width = (width / 4).clamp(8, 30);
            let template = format!("{{percent:>3}}% {{bar:{bar_width}}} {{wide_msg}}");
            let style = ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            ProgressBar::with_draw_target(Some(total.max(1)), target).with_style(style)
        }
        None => {
            let style = ProgressStyle::with_template("{spinner} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            ProgressBar::with_draw_target(None, target).with_style(style)
        }
    }
}

/// The progress thread: updates the bar until `done` is closed.
fn redraw(bar: &ProgressBar, counters: &Counters, task: Task, started: Instant, done: Receiver<()>) {
    loop {
        let data = Counters::get(&counters.data);
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let rate = (data as f64 / secs) as u64;
        let message = match task.total {
            Some(total) => {
                bar.set_position(data.min(total));
                let left = match rate {
                    0 => String::new(),
                    _ => format!(", {} left", clock(total.saturating_sub(data) / rate.max(1))),
                };
                format!("{} {} of {}, {}/s{left}", task.doing, size(data), size(total), size(rate))
            }
            None => {
                bar.tick();
                format!(
                    "{} {} entries, {}, {}/s",
                    task.doing,
                    Counters::get(&counters.entries),
                    size(data),
                    size(rate)
                )
            }
        };
        bar.set_message(message);
        match done.recv_timeout(Duration::from_millis(80)) {
            Err(RecvTimeoutError::Timeout) => continue,
            _ => return,
        }
    }
}

/// The summary: the longest of its forms that fits `width`.
fn summary(counters: &Counters, task: Task, elapsed: Duration, width: usize) -> String {
    let entries = Counters::get(&counters.entries);
    let (data, archive) = (Counters::get(&counters.data), Counters::get(&counters.archive));
    let (from, to) = if task.packs { (data, archive) } else { (archive, data) };
    let secs = elapsed.as_secs_f64();
    let rate = size((data as f64 / secs.max(1e-3)) as u64);
    let head = format!("{} {entries} entries", task.done);
    let forms = [
        format!("{head}, {} -> {} in {secs:.1} s ({rate}/s)", size(from), size(to)),
        format!("{head}, {} -> {} in {secs:.1} s", size(from), size(to)),
        format!("{head} in {secs:.1} s"),
        head.clone(),
    ];
    let fits = forms.iter().find(|form| form.chars().count() <= width);
    fits.cloned().unwrap_or_else(|| head.chars().take(width).collect())
}

fn size(bytes: u64) -> String {
    ByteSize(bytes).display().iec().to_string()
}

/// `1:02:03` or `2:03`.
fn clock(secs: u64) -> String {
    match secs {
        0..=3599 => format!("{}:{:02}", secs / 60, secs % 60),
        _ => format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_fits_the_width() {
        let counters = Counters::default();
        Counters::add(&counters.entries, 14_000);
        Counters::add(&counters.data, 229 << 20);
        Counters::add(&counters.archive, 61 << 20);
        let task = Task { doing: "writing", done: "wrote", total: None, packs: true };
        let long = summary(&counters, task, Duration::from_millis(1200), 120);
        assert_eq!(long, "wrote 14000 entries, 229.0 MiB -> 61.0 MiB in 1.2 s (190.8 MiB/s)");
        let narrow = summary(&counters, task, Duration::from_millis(1200), 40);
        assert_eq!(narrow, "wrote 14000 entries in 1.2 s");
        let read = Task { doing: "reading", done: "read", total: Some(1), packs: false };
        assert!(summary(&counters, read, Duration::from_secs(1), 120).contains("61.0 MiB -> 229.0 MiB"));
        assert_eq!(clock(62), "1:02");
        assert_eq!(clock(3723), "1:02:03");
    }
}
