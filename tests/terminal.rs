//! What a person sees in a terminal: arc run in a pseudo-terminal of 40 and 120 columns, with
//! `-v`, writing and reading a tree large enough to draw progress; its output is played into a
//! terminal emulator (vt100) and the screen is checked as a person would read it: no line
//! holds both a path and progress text (nothing tears), no line is longer than the terminal
//! (nothing wraps), the summary is the last line, and percentages only grow.

use std::io::Read;
use std::path::Path;

use portable_pty::{native_pty_system, CommandBuilder, PtySize};

use crate::support::{pseudo_random, TestEnv, ARC};

/// Runs arc with `args` in `cwd` in a pseudo-terminal of `cols` columns; returns its exit
/// status and everything it drew.
fn in_terminal(cwd: &Path, cols: u16, args: &[&str]) -> (u32, Vec<u8>) {
    let pty = native_pty_system()
        .openpty(PtySize { rows: 24, cols, pixel_width: 0, pixel_height: 0 })
        .expect("opening a pseudo-terminal");
    let mut command = CommandBuilder::new(ARC);
    command.args(args);
    command.cwd(cwd);
    let mut child = pty.slave.spawn_command(command).expect("starting arc in the terminal");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("reading the terminal");
    let output = std::thread::spawn(move || {
        let mut output = Vec::new();
        // Once arc has exited and the terminal is closed, reading fails (EIO): that is the end.
        let mut chunk = [0u8; 1 << 16];
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 {
                break;
            }
            output.extend_from_slice(&chunk[..n]);
        }
        output
    });
    let status = child.wait().expect("waiting for arc");
    drop(pty.master);
    (status.exit_code(), output.join().expect("the reader thread"))
}

/// The screen `output` leaves in a terminal of `cols` columns, tall enough that nothing
/// scrolls away: every row, and whether the terminal wrapped it.
fn screen(output: &[u8], cols: u16) -> Vec<(String, bool)> {
    let mut parser = vt100::Parser::new(5000, cols, 0);
    parser.process(output);
    let screen = parser.screen();
    let rows: Vec<String> = screen.rows(0, cols).collect();
    let last = rows.iter().rposition(|r| !r.trim().is_empty()).map_or(0, |i| i + 1);
    rows.into_iter().take(last).enumerate().map(|(i, row)| (row, screen.row_wrapped(i as u16))).collect()
}

/// Every percentage drawn, in order.
fn percentages(output: &[u8]) -> Vec<u32> {
    let text = String::from_utf8_lossy(output);
    let mut found = Vec::new();
    for (at, _) in text.match_indices('%') {
        let digits: String = text[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if let Ok(n) = digits.parse() {
            found.push(n);
        }
    }
    found
}

fn check(what: &str, cols: u16, output: &[u8], summary_starts: &str) {
    let rows = screen(output, cols);
    let show = || rows.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join("\n");
    for (row, wrapped) in &rows {
        assert!(!wrapped, "{what} at {cols} columns: a line wrapped: {row:?}\n{}", show());
        let path = row.contains("t/");
        let progress = ["%", "MiB", "KiB", "entries", "writing", "reading"].iter().any(|w| row.contains(w));
        assert!(
            !(path && progress),
            "{what} at {cols} columns: a path and progress on one line: {row:?}\n{}",
            show()
        );
    }
    let last = rows.last().map(|(r, _)| r.as_str()).unwrap_or_default();
    assert!(
        last.starts_with(summary_starts),
        "{what} at {cols} columns: the last line is {last:?}\n{}",
        show()
    );
    let shown = percentages(output);
    assert!(
        shown.windows(2).all(|w| w[0] <= w[1]),
        "{what} at {cols} columns: percentages went back: {shown:?}"
    );
}

#[test]
fn progress_never_tears_wraps_or_goes_back() {
    let env = TestEnv::new();
    for i in 0..400u64 {
        env.file(format!("t/d{}/f{i:03}", i % 7), pseudo_random(64 << 10, i));
    }
    for cols in [40, 120] {
        let (status, output) = in_terminal(env.root(), cols, &["write", "-v", "-j1", "-o", "x.arc", "t"]);
        assert_eq!(status, 0, "{}", String::from_utf8_lossy(&output));
        check("write", cols, &output, "wrote 408 entries");
        let dest = format!("out{cols}");
        let (status, output) = in_terminal(env.root(), cols, &["read", "-v", "-j1", "x.arc", "-C", &dest]);
        assert_eq!(status, 0, "{}", String::from_utf8_lossy(&output));
        check("read", cols, &output, "read 408 entries");
        let shown = percentages(&output);
        assert!(
            !shown.is_empty(),
            "read at {cols} columns drew no percentage:\n{}",
            String::from_utf8_lossy(&output)
        );
    }
}

/// `arc read -` (and `list -`) with a terminal for standard input refuse at once, rather than
/// wait for an archive typed in: what would look like a hang.
#[test]
fn reading_an_archive_from_a_terminal_is_refused() {
    let env = TestEnv::new();
    for args in [&["read", "-", "-C", "out"][..], &["list", "-"], &["verify", "-"], &["cat", "-", "x"]] {
        let (status, output) = in_terminal(env.root(), 120, args);
        let shown = String::from_utf8_lossy(&output);
        assert_eq!(status, 2, "{args:?}: {shown}");
        assert!(shown.contains("standard input is a terminal"), "{args:?}: {shown}");
    }
    assert!(!env.path("out").exists());
}
