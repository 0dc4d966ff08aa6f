//! The command line: clap types, turned into plain option structs before any work starts.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

use crate::list::ListOptions;
use crate::read::{Existing, ReadOptions};
use crate::verify::VerifyOptions;
use crate::write::WriteOptions;

const EXIT_CODES: &str = "\
Exit status: 0 success; 1 done with warnings (special files skipped, files that changed while
read, read failures ignored with --ignore-failed-read); 2 error (nothing or no archive made).";

/// arc: a fast, parallel, indexed archiver.
///
/// Archives are zstd-compressed blocks followed by an index, so they are written and read on
/// all cores, listed without decompressing, and one file comes out without reading the rest.
#[derive(Debug, Parser)]
#[command(name = "arc", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pack directories (or files) into an archive.
    ///
    /// Each input is stored under its last path component: `arc write -o x.arc src/linux`
    /// makes an archive whose root is `linux`.
    #[command(after_help = EXIT_CODES)]
    Write(WriteArgs),
    /// Extract an archive, or only the named entries, into a directory.
    #[command(after_help = EXIT_CODES)]
    Read(ReadArgs),
    /// List the entries of an archive (reads only its index).
    #[command(after_help = EXIT_CODES)]
    List(ListArgs),
    /// Check every checksum of an archive without extracting anything.
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Worker threads [default: available cores]
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
    /// Print nothing but errors and warnings (no progress line, no summary).
    #[arg(short, long)]
    quiet: bool,
}

impl Common {
    fn threads(&self) -> usize {
        match self.threads {
            Some(n) => n.into(),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

#[derive(Debug, Args)]
struct WriteArgs {
    /// The archive to write; `-` for stdout. Written under a temporary name and renamed into
    /// place on success, so a failed write leaves an existing archive untouched.
    #[arg(short, long, value_name = "OUT")]
    output: Utf8PathBuf,
    /// Directories or files to pack.
    #[arg(value_name = "DIR", required = true)]
    inputs: Vec<Utf8PathBuf>,
    /// zstd compression level, 1 (fastest) to 22 (smallest).
    #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    level: i32,
    /// Uncompressed bytes per block, 64KiB to 64MiB. Larger blocks compress a little better;
    /// smaller ones parallelize small trees better and make one-file reads faster.
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = parse_block_size)]
    block_size: usize,
    /// Print each path to stdout as it is archived.
    #[arg(short, long)]
    verbose: bool,
    /// Leave out files and directories that cannot be read, with a warning (exit status 1),
    /// instead of failing.
    #[arg(long)]
    ignore_failed_read: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct ReadArgs {
    /// The archive to read.
    archive: Utf8PathBuf,
    /// Only these entries (and what is beneath them), written as `arc list` prints them.
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
    /// Directory to extract into; created if missing.
    #[arg(short = 'C', long = "directory", value_name = "DEST", default_value = ".")]
    dest: Utf8PathBuf,
    /// Only entries whose path matches this glob (and what is beneath them); repeatable.
    #[arg(long = "glob", value_name = "PATTERN")]
    globs: Vec<String>,
    /// Print each path to stdout as it is extracted.
    #[arg(short, long)]
    verbose: bool,
    /// Replace existing files and symlinks (never following them); by default arc refuses.
    #[arg(long, conflicts_with = "keep_existing")]
    overwrite: bool,
    /// Leave existing files and symlinks as they are and skip those entries.
    #[arg(long)]
    keep_existing: bool,
    /// Restore setuid and setgid bits too (left out by default).
    #[arg(long)]
    same_permissions: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// The archive to list.
    archive: Utf8PathBuf,
    /// Only these entries (and what is beneath them).
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
    /// Only entries whose path matches this glob (and what is beneath them); repeatable.
    #[arg(long = "glob", value_name = "PATTERN")]
    globs: Vec<String>,
    /// Type, mode, size, mtime (UTC) and symlink targets, like `tar -tv`.
    #[arg(short, long, conflicts_with = "json")]
    long: bool,
    /// Sizes in exact bytes rather than KiB/MiB.
    #[arg(long)]
    bytes: bool,
    /// One JSON object per entry per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The archive to check.
    archive: Utf8PathBuf,
    #[command(flatten)]
    common: Common,
}

/// A parsed command, as plain options.
#[derive(Debug)]
pub enum Config {
    Write(WriteOptions),
    Read(ReadOptions),
    List(ListOptions),
    Verify(VerifyOptions),
}

impl Cli {
    pub fn into_config(self) -> Config {
        match self.command {
            Command::Write(a) => Config::Write(WriteOptions {
                threads: a.common.threads(),
                quiet: a.common.quiet,
                output: a.output,
                inputs: a.inputs,
                level: a.level,
                block_size: a.block_size,
                verbose: a.verbose,
                ignore_failed_read: a.ignore_failed_read,
            }),
            Command::Read(a) => Config::Read(ReadOptions {
                threads: a.common.threads(),
                quiet: a.common.quiet,
                archive: a.archive,
                dest: a.dest,
                paths: a.paths,
                globs: a.globs,
                verbose: a.verbose,
                existing: if a.overwrite {
                    Existing::Overwrite
                } else if a.keep_existing {
                    Existing::Keep
                } else {
                    Existing::Refuse
                },
                same_permissions: a.same_permissions,
            }),
            Command::List(a) => Config::List(ListOptions {
                archive: a.archive,
                paths: a.paths,
                globs: a.globs,
                long: a.long,
                bytes: a.bytes,
                json: a.json,
            }),
            Command::Verify(a) => Config::Verify(VerifyOptions {
                archive: a.archive,
                threads: a.common.threads(),
                quiet: a.common.quiet,
            }),
        }
    }
}

fn parse_block_size(text: &str) -> Result<usize, String> {
    let size: bytesize::ByteSize = text.parse()?;
    let range = crate::format::MIN_BLOCK_SIZE..=crate::format::MAX_BLOCK_RAW;
    if !range.contains(&size.as_u64()) {
        return Err(format!("{text} is not between 64KiB and 64MiB"));
    }
    usize::try_from(size.as_u64()).map_err(|e| e.to_string())
}
