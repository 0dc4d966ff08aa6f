//! `arc list`: the index as text, long text or JSON lines, read from trailer and index only.
//!
//! Text output is for people and scripts alike: one entry per line, directories ending in
//! `/`, names escaped by [`crate::ui::escape`] so that every entry is exactly one line and
//! can be typed back as a PATH.

use std::collections::HashMap;
use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use bytesize::ByteSize;
use camino::Utf8PathBuf;
use serde::Serialize;

use crate::archive::Archive;
use crate::format::{Entry, Index, Kind, Tree};
use crate::select::{self, PathStack, Selected};
use crate::ui::{escape, push_escaped, text_of, write_json};

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
    if options.archive.as_str() == "-" {
        return quiet_broken_pipe(print_stream(options));
    }
    if !options.long && !options.json && options.paths.is_empty() && options.globs.is_empty() {
        return quiet_broken_pipe(print_tree(options));
    }
    let archive =
        Archive::open_some(&options.archive, |tree| select::roots(tree, &options.paths, &options.globs))?;
    let selected = select::select(&archive.index, &options.paths, &options.globs)
        .with_context(|| format!("listing {}", options.archive))?;
    let printed = print(&archive, &selected, options);
    // The index is left to the end of the process: freeing a million names one by one takes
    // longer than the listing.
    std::mem::forget(archive);
    quiet_broken_pipe(printed.context("writing the listing to stdout"))
}

/// `arc list x.arc | head` ends quietly, as other Unix tools do.
fn quiet_broken_pipe(result: Result<()>) -> Result<()> {
    match result {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        result => result,
    }
}

/// Every path, from the tree alone (names, depths, kinds): the index is not built. The tree is
/// checked whole before a line is printed, so a damaged one prints nothing.
fn print_tree(options: &ListOptions) -> Result<()> {
    let packed = Archive::open_packed(&options.archive)?;
    let tree = Tree::check(&packed).with_context(|| format!("reading {}", options.archive))?;
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut printed = PathStack::default();
    let mut failed = None;
    tree.walk(|name, depth, is_dir| {
        if failed.is_none() {
            let path = printed.push_as(depth, name, push_escaped);
            let end: &[u8] = if is_dir { b"/\n" } else { b"\n" };
            if let Err(e) = out.write_all(path).and_then(|()| out.write_all(end)) {
                failed = Some(e);
            }
        }
    });
    match failed {
        Some(e) => Err(e),
        None => out.flush(),
    }
    .map_err(|e| anyhow::Error::new(e).context("writing the listing to stdout"))
}

fn print(archive: &Archive, selected: &[Selected], options: &ListOptions) -> std::io::Result<()> {
    let index = &archive.index;
    let mut printer = Printer::new(options);
    printer.print(index, 0..index.entries.len(), |i| selected[i])?;
    printer.out.flush()
}

/// An archive read from stdin as it arrives (FORMAT.md §3.2): each record's entries are
/// printed once they are checked; blocks are read past. The index at the end must agree with
/// the records, else the listing ends with an error (exit status 2).
fn print_stream(options: &ListOptions) -> Result<()> {
    let mut select = select::Streaming::new(&options.paths, &options.globs)?;
    let mut stream = crate::archive::Stream::new(crate::sys::stdin_for_streaming()?).context("reading -")?;
    let mut printer = Printer::new(options);
    loop {
        match stream.next_item().context("reading -")? {
            crate::archive::Item::Entries(range) => {
                select.decide(stream.index(), range.clone());
                let selected = |i: usize| select.selected[i];
                printer.print(stream.index(), range, selected).context("writing the listing to stdout")?
            }
            crate::archive::Item::Block(..) => {}
            crate::archive::Item::End => break,
        }
    }
    printer.out.flush().context("writing the listing to stdout")?;
    select.missed().context("listing -")
}

/// Writes listing lines, entry after entry in pre-order, in one call or in many (a stream's
/// records).
struct Printer<'o> {
    options: &'o ListOptions,
    out: BufWriter<std::io::StdoutLock<'static>>,
    paths: PathStack,
    /// Paths as they are printed, a name escaped at a time: escaping is per character and
    /// never touches `/`, so this is the escaped full path.
    printed: PathStack,
    owners: HashMap<(u32, u32), String>,
    day: Option<(i64, String)>,
}

impl<'o> Printer<'o> {
    fn new(options: &'o ListOptions) -> Self {
        Printer {
            options,
            out: BufWriter::with_capacity(1 << 16, std::io::stdout().lock()),
            paths: PathStack::default(),
            printed: PathStack::default(),
            owners: HashMap::new(),
            day: None,
        }
    }

    /// The entries of `range` that `selected` says are selected.
    fn print(
        &mut self,
        index: &Index,
        range: std::ops::Range<usize>,
        selected: impl Fn(usize) -> Selected,
    ) -> std::io::Result<()> {
        let options = self.options;
        let (owners, day) = (std::mem::take(&mut self.owners), self.day.take());
        let mut long = Long { index, exact: options.bytes, owners, day };
        let out = &mut self.out;
        for i in range {
            let entry = &index.entries[i];
            if options.json {
                let path = self.paths.enter(index, i);
                if selected(i) == Selected::Yes {
                    write_json(&mut *out, &JsonEntry::new(index, i, path))?;
                }
                continue;
            }
            let path = self.printed.enter_as(index, i, push_escaped);
            if selected(i) != Selected::Yes {
                continue;
            }
            if options.long {
                long.write(&mut *out, i, path)?;
            } else {
                out.write_all(path)?;
                out.write_all(if entry.is_dir() { b"/\n" } else { b"\n" })?;
            }
        }
        (self.owners, self.day) = (long.owners, long.day);
        Ok(())
    }
}

/// Long lines, `drwxr-xr-x root/root      4.0 KiB 2024-05-01 12:00:00 UTC path/`, as
/// `tar -tv` prints them: a symlink with ` -> target`, a hard link with ` link to PATH`, a
/// device with its numbers in place of a size. A version-1 archive stores no owners and shows
/// none. Written straight to the output, with what repeats from line to line (owners, the
/// date) made once.
struct Long<'a> {
    index: &'a Index,
    /// Sizes in bytes rather than KiB/MiB.
    exact: bool,
    /// `user/group`, padded, by (uid, gid).
    owners: HashMap<(u32, u32), String>,
    /// The last day printed (days since the epoch) and its date.
    day: Option<(i64, String)>,
}

impl Long<'_> {
    fn write(&mut self, out: &mut impl Write, i: usize, path: &[u8]) -> std::io::Result<()> {
        let index = self.index;
        let entry = &index.entries[i];
        let (type_char, slash) = match entry.kind() {
            Kind::Dir => ('d', "/"),
            Kind::File { .. } => ('-', ""),
            Kind::Symlink { .. } => ('l', ""),
            Kind::HardLink { .. } => ('h', ""),
            Kind::Fifo => ('p', ""),
            Kind::CharDevice { .. } => ('c', ""),
            Kind::BlockDevice { .. } => ('b', ""),
        };
        write!(out, "{type_char}{} ", mode_string(entry.mode))?;
        if index.tables.owners {
            let owner = self
                .owners
                .entry((entry.uid, entry.gid))
                .or_insert_with(|| format!("{:<17} ", owner(index, entry)));
            out.write_all(owner.as_bytes())?;
        }
        match entry.kind() {
            Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                write!(out, "{:>10}", format!("{major},{minor}"))?
            }
            _ => {
                let size = index.data_entry(i).map_or(0, |d| index.entries[d].size());
                match self.exact {
                    true => write!(out, "{size:>10}")?,
                    false => write!(out, "{:>10}", ByteSize(size).display().iec().to_string())?,
                }
            }
        }
        let secs = entry.mtime.secs;
        let days = secs.div_euclid(86_400);
        if self.day.as_ref().map(|(d, _)| *d) != Some(days) {
            self.day = Some((days, civil_date(days)));
        }
        let date = self.day.as_ref().map_or("", |(_, date)| date.as_str());
        let rem = secs.rem_euclid(86_400);
        write!(out, " {date} {:02}:{:02}:{:02} UTC ", rem / 3600, rem / 60 % 60, rem % 60)?;
        out.write_all(path)?;
        out.write_all(slash.as_bytes())?;
        match &entry.kind() {
            Kind::Symlink { .. } => write!(out, " -> {}", escape(&text_of(index.target(i))))?,
            Kind::HardLink { target } => {
                write!(out, " link to {}", escape(&text_of(&index.path(*target as usize))))?
            }
            _ => {}
        }
        out.write_all(b"\n")
    }
}

/// `user/group` by name where the archive was written had one, else by number, as tar shows.
fn owner(index: &Index, entry: &Entry) -> String {
    let name = |name: Option<&[u8]>, id: u32| {
        name.map_or_else(|| id.to_string(), |n| escape(&text_of(n)).into_owned())
    };
    format!(
        "{}/{}",
        name(index.user_name(entry.uid), entry.uid),
        name(index.group_name(entry.gid), entry.gid)
    )
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
#[cfg(test)]
fn utc_time(secs: i64) -> String {
    let rem = secs.rem_euclid(86_400);
    let date = civil_date(secs.div_euclid(86_400));
    format!("{date} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01.
fn civil_date(days: i64) -> String {
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
    format!("{year:04}-{month:02}-{day:02}")
}

/// One line of `arc list --json`. Names that are not UTF-8 cannot be JSON strings: `path` (and
/// `target`) then hold the printed form (`\\xff` escapes, accepted back as a PATH), and
/// `path_bytes` (`target_bytes`) the exact bytes.
#[derive(Serialize)]
struct JsonEntry<'a> {
    path: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<&'a [u8]>,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: String,
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<std::borrow::Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_bytes: Option<&'a [u8]>,
    /// A hard link's other name, the entry that holds the data.
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<[u32; 2]>,
    /// A sparse file's data, as `[offset, length]` pairs; the rest is holes.
    #[serde(skip_serializing_if = "Option::is_none")]
    extents: Option<Vec<[u64; 2]>>,
    /// Extended attributes: name and value in hexadecimal (values are often binary: ACLs,
    /// capabilities).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<JsonXattr<'a>>,
}

#[derive(Serialize)]
struct JsonXattr<'a> {
    name: std::borrow::Cow<'a, str>,
    value: String,
}

/// Text for a JSON string: the name itself when it is UTF-8, else its printed form with the
/// exact bytes beside it.
fn json_text(bytes: &[u8]) -> (std::borrow::Cow<'_, str>, Option<&[u8]>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.into(), None),
        Err(_) => (escape(&text_of(bytes)).into_owned().into(), Some(bytes)),
    }
}

impl<'a> JsonEntry<'a> {
    fn new(index: &'a Index, i: usize, path: &'a [u8]) -> JsonEntry<'a> {
        let entry = &index.entries[i];
        let (path, path_bytes) = json_text(path);
        let (target, target_bytes) = match &entry.kind() {
            Kind::Symlink { .. } => {
                let (text, bytes) = json_text(index.target(i));
                (Some(text), bytes)
            }
            _ => (None, None),
        };
        let owners = index.tables.owners;
        let name = |name: Option<&'a [u8]>| name.map(|n| json_text(n).0);
        JsonEntry {
            path,
            path_bytes,
            kind: match entry.kind() {
                Kind::Dir => "dir",
                Kind::File { .. } => "file",
                Kind::Symlink { .. } => "symlink",
                Kind::HardLink { .. } => "hardlink",
                Kind::Fifo => "fifo",
                Kind::CharDevice { .. } => "char",
                Kind::BlockDevice { .. } => "block",
            },
            mode: format!("{:04o}", entry.mode),
            size: index.data_entry(i).map_or(0, |d| index.entries[d].size()),
            mtime: entry.mtime.secs,
            mtime_nsec: entry.mtime.nanos,
            uid: owners.then_some(entry.uid),
            gid: owners.then_some(entry.gid),
            user: name(index.user_name(entry.uid)).filter(|_| owners),
            group: name(index.group_name(entry.gid)).filter(|_| owners),
            target,
            target_bytes,
            link: match entry.kind() {
                Kind::HardLink { target } => {
                    Some(escape(&text_of(&index.path(target as usize))).into_owned())
                }
                _ => None,
            },
            device: match entry.kind() {
                Kind::CharDevice { major, minor } | Kind::BlockDevice { major, minor } => {
                    Some([major, minor])
                }
                _ => None,
            },
            extents: index.extents(i).map(|xs| xs.iter().map(|x| [x.offset, x.len]).collect()),
            xattrs: index
                .xattrs(i)
                .iter()
                .map(|x| JsonXattr { name: json_text(&x.name).0, value: hex(&x.value) })
                .collect(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
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
