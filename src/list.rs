//! `arc list`: the index as text, long text or JSON lines, read from trailer and index only.
//!
//! Text output is for people and scripts alike: one entry per line, directories ending in
//! `/`, names escaped by [`crate::ui::escape`] so that every entry is exactly one line and
//! can be typed back as a PATH.

use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use bytesize::ByteSize;
use camino::Utf8PathBuf;
use serde::Serialize;

use crate::archive::Archive;
use crate::format::{Entry, Kind};
use crate::select::{self, PathStack, Selected};
use crate::ui::{escape, write_json};

#[derive(Debug, Clone)]
pub struct ListOptions {
    pub archive: Utf8PathBuf,
    pub paths: Vec<String>,
    pub globs: Vec<String>,
    pub long: bool,
    pub bytes: bool,
    pub json: bool,
}

pub fn run(options: &ListOptions) -> Result<()> {
    let archive = Archive::open(&options.archive)?;
    let selected = select::select(&archive.index, &options.paths, &options.globs)
        .with_context(|| format!("listing {}", options.archive))?;
    match print(&archive, &selected, options) {
        // `arc list x.arc | head` ends quietly, as other Unix tools do.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing the listing to stdout"),
    }
}

fn print(archive: &Archive, selected: &[Selected], options: &ListOptions) -> std::io::Result<()> {
    let index = &archive.index;
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut paths = PathStack::default();
    for (i, entry) in index.entries.iter().enumerate() {
        let path = paths.enter(index, i);
        if selected[i] != Selected::Yes {
            continue;
        }
        if options.json {
            write_json(&mut out, &JsonEntry::new(path, entry))?;
        } else if options.long {
            writeln!(out, "{}", long_line(path, entry, options.bytes))?;
        } else {
            let slash = if entry.is_dir() { "/" } else { "" };
            writeln!(out, "{}{slash}", escape(path))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `drwxr-xr-x  4.0 KiB 2024-05-01 12:00:00 UTC path/` or with a symlink's ` -> target`.
fn long_line(path: &str, entry: &Entry, exact: bool) -> String {
    let size = entry.size();
    let size = if exact { size.to_string() } else { ByteSize(size).display().iec().to_string() };
    let (type_char, slash) = match entry.kind {
        Kind::Dir => ('d', "/"),
        Kind::File { .. } => ('-', ""),
        Kind::Symlink { .. } => ('l', ""),
    };
    let mut line = format!(
        "{type_char}{} {size:>10} {} {}{slash}",
        mode_string(entry.mode),
        utc_time(entry.mtime.secs),
        escape(path)
    );
    if let Kind::Symlink { target } = &entry.kind {
        line.push_str(" -> ");
        line.push_str(&escape(target));
    }
    line
}

fn mode_string(mode: u16) -> String {
    let mut s = String::with_capacity(9);
    for (shift, special, lower, upper) in
        [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S'), (0, 0o1000, 't', 'T')]
    {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => lower,
            (true, false) => upper,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `YYYY-MM-DD HH:MM:SS UTC`, so listings do not depend on the machine's time zone, and say so.
fn utc_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Days to a civil date (the proleptic Gregorian calendar), after H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

#[derive(Serialize)]
struct JsonEntry<'a> {
    path: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: String,
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
}

impl<'a> JsonEntry<'a> {
    fn new(path: &'a str, entry: &'a Entry) -> JsonEntry<'a> {
        JsonEntry {
            path,
            kind: match entry.kind {
                Kind::Dir => "dir",
                Kind::File { .. } => "file",
                Kind::Symlink { .. } => "symlink",
            },
            mode: format!("{:04o}", entry.mode),
            size: entry.size(),
            mtime: entry.mtime.secs,
            mtime_nsec: entry.mtime.nanos,
            target: match &entry.kind {
                Kind::Symlink { target } => Some(target),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_known_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_time(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(0o755), "rwxr-xr-x");
        assert_eq!(mode_string(0o4755), "rwsr-xr-x");
        assert_eq!(mode_string(0o2644), "rw-r-Sr--");
        assert_eq!(mode_string(0o1777), "rwxrwxrwt");
    }
}
