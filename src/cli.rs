//! The command line: clap types, turned into plain option structs before any work starts.
//!
//! Architecture Invariant: nothing but this module sees clap; even completions and the man
//! page are rendered here, into text that `lib` prints.

use camino::Utf8PathBuf;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::cat::CatOptions;
use crate::list::ListOptions;
use crate::mount::MountOptions;
use crate::read::{Existing, Owners, ReadOptions};
use crate::verify::VerifyOptions;
use crate::write::{Input, WriteOptions};

const EXIT_CODES: &str = "\
Exit status: 0 success; 1 done with warnings; 2 error; 130 or 143 stopped by SIGINT or
SIGTERM (after removing what was half done). `arc COMMAND --help` says more.";
const WRITE_EXIT: &str = "\
Exit status: 0 success; 1 archive made, with warnings (special files skipped, files that
changed while read, unreadable files left out with --ignore-failed-read); 2 error (no archive
made, an existing OUT untouched); 130/143 stopped by SIGINT/SIGTERM (no archive made).";
const READ_EXIT: &str = "\
Exit status: 0 success; 2 error (damaged archive, existing files in the way, ...: files
extracted before the error are complete, none half-written); 130/143 stopped by
SIGINT/SIGTERM (likewise).";
const LIST_EXIT: &str = "\
Exit status: 0 success (also when stdout is closed early, as by `| head`); 2 error (not an
archive, damaged index, a PATH or --glob that matches nothing).";
const VERIFY_EXIT: &str = "\
Exit status: 0 every byte checked and sound; 2 damage found (the damaged blocks and the entries
they hold are named) or another error; 130/143 stopped by SIGINT/SIGTERM.";
const CAT_EXIT: &str = "\
Exit status: 0 success (also when stdout is closed early); 2 error (damaged data, a PATH that
is not in the archive or not a file or directory).";
const MOUNT_EXIT: &str = "\
Exit status: 0 the mount is ready (in the background: `umount MOUNTPOINT` or `fusermount3 -u
MOUNTPOINT` ends it); 2 error before the mount was ready (not an archive, damaged index, no
such directory, no FUSE here, ...), and nothing is left mounted. With -f: 0 once unmounted,
130/143 after SIGINT/SIGTERM (which unmount it).

As root, arc mounts with mount(2); another user needs fusermount3 (the fuse3 package) and
read-write access to /dev/fuse. `-o allow_other` lets other users in; for a user other than
root it needs `user_allow_other` in /etc/fuse.conf. The mount is read-only, nosuid and nodev:
setuid bits and device nodes are shown as archived, and take no effect.";
const GLOBS: &str = "\
A --glob is matched against whole paths as `arc list` prints them: `*` and `?` stop at `/`,
`**` crosses it (`**/*.md` is every .md file, `linux/*.c` only those directly in linux/).";

/// A fast, parallel, indexed archiver.
///
/// Archives are zstd-compressed blocks followed by an index, so they are written and read on
/// all cores, listed without decompressing, and one file comes out without reading the rest.
#[derive(Debug, Parser)]
#[command(name = "arc", version, after_help = EXIT_CODES, max_term_width = 100, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pack directories (or files) into an archive.
    ///
    /// A relative input is stored under its path (`arc write -o x.arc proj/src` makes
    /// `proj/src/...`); an absolute one under its last component (`/home/me/linux` makes
    /// `linux/...`); `-C DIR` reads the inputs after it from DIR.
    #[command(after_help = WRITE_EXIT)]
    Write(WriteArgs),
    /// Extract an archive, or only the named entries, into a directory.
    #[command(after_help = format!("{GLOBS}\n\n{READ_EXIT}"))]
    Read(ReadArgs),
    /// List the entries of an archive (reads only its index).
    #[command(after_help = format!("{GLOBS}\n\n{LIST_EXIT}"))]
    List(ListArgs),
    /// Check every checksum of an archive without extracting anything.
    #[command(after_help = VERIFY_EXIT)]
    Verify(VerifyArgs),
    /// Write the contents of files in an archive to stdout (like `tar -xOf`), decompressing
    /// only their blocks.
    ///
    /// Each PATH, written as `arc list` prints it, is a file, or a directory whose files are
    /// written in archive order; PATHs are written in the order given.
    #[command(after_help = CAT_EXIT)]
    Cat(CatArgs),
    /// Show an archive as a read-only directory tree (FUSE), decompressing only the blocks
    /// that reads need.
    ///
    /// By default arc returns once the mount answers and serves it from a background process;
    /// `umount MOUNTPOINT` (or `fusermount3 -u MOUNTPOINT`) ends it.
    #[command(after_help = MOUNT_EXIT)]
    Mount(MountArgs),
    /// Print a completion script for SHELL to stdout.
    ///
    /// bash: `arc completions bash > ~/.local/share/bash-completion/completions/arc`;
    /// zsh: `arc completions zsh > ~/.zfunc/_arc` (with ~/.zfunc in fpath);
    /// fish: `arc completions fish > ~/.config/fish/completions/arc.fish`.
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print arc's manual page (roff) to stdout: `arc man > arc.1; man ./arc.1`.
    Man,
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
    /// Directories or files to pack. A relative path is stored as given (`proj/src`), an
    /// absolute one under its last component (`/usr/share/doc` as `doc`).
    #[arg(value_name = "DIR", required = true)]
    inputs: Vec<Utf8PathBuf>,
    /// Read the inputs that follow from DIR (`-C /usr/share doc` packs /usr/share/doc as
    /// `doc`); repeatable, each relative to the one before, as tar's -C.
    #[arg(short = 'C', long = "directory", value_name = "DIR")]
    directories: Vec<Utf8PathBuf>,
    /// zstd compression level, 1 (fastest) to 22 (smallest).
    #[arg(short, long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    level: i32,
    /// Uncompressed bytes per block, 64KiB to 64MiB (`64K` and `16M` are binary, as dd and
    /// tar read them; `KB` and `MB` are decimal). Larger blocks compress a little better;
    /// smaller ones parallelize small trees better and make one-file reads faster.
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = parse_block_size)]
    block_size: usize,
    /// Print each path to stdout as it is archived (to stderr when OUT is `-`, stdout).
    #[arg(short, long)]
    verbose: bool,
    /// Leave out files and directories that cannot be read, with a warning (exit status 1),
    /// instead of failing.
    #[arg(long)]
    ignore_failed_read: bool,
    /// Leave out entries whose path, as stored (`root/dir/name`), matches PATTERN
    /// (gitignore syntax: `target/`, `*.o`, `root/build`); repeatable.
    #[arg(long = "exclude", value_name = "PATTERN")]
    excludes: Vec<String>,
    /// Read --exclude patterns from FILE, one per line (`#` comments); repeatable.
    #[arg(long = "exclude-from", value_name = "FILE")]
    exclude_from: Vec<Utf8PathBuf>,
    /// Leave out version-control directories (.git, .hg, .svn, .bzr, CVS, ...); their ignore
    /// files (.gitignore, ...) are kept.
    #[arg(long)]
    exclude_vcs: bool,
    /// Honour the .gitignore and .ignore files found in the tree (and .git/info/exclude), as
    /// git, ripgrep and fd do.
    #[arg(long)]
    gitignore: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct ReadArgs {
    /// The archive to read; `-` for stdin (or a pipe), extracted as it arrives.
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
    /// Restore privileges too: setuid and setgid bits, file capabilities and the other
    /// `security.*` and `trusted.*` attributes, and device nodes (all left out by default).
    #[arg(short = 'p', long, visible_alias = "preserve-permissions")]
    same_permissions: bool,
    /// As root, give entries their stored owner and group by number only (by default, by
    /// name where the name exists on this system).
    #[arg(long, conflicts_with = "no_same_owner")]
    numeric_owner: bool,
    /// As root, leave entries owned by root rather than by their stored owners (others
    /// never restore owners).
    #[arg(long)]
    no_same_owner: bool,
    /// Leave out the first N components of every path (`linux/kernel/x.c` with N=1 is
    /// written as `kernel/x.c`); entries with no more than N components are not extracted.
    #[arg(long, value_name = "N", default_value_t = 0)]
    strip_components: u32,
    /// Recover what can be recovered of a damaged or cut archive (read from the front by its
    /// records when its index is lost); name on stderr what was lost, and exit with status 2.
    #[arg(long)]
    salvage: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// The archive to list; `-` for stdin, listed as it arrives.
    archive: Utf8PathBuf,
    /// Only these entries (and what is beneath them).
    #[arg(value_name = "PATH")]
    paths: Vec<String>,
    /// Only entries whose path matches this glob (and what is beneath them); repeatable.
    #[arg(long = "glob", value_name = "PATTERN")]
    globs: Vec<String>,
    /// Type, mode, size, mtime (UTC) and symlink targets, like `tar -tv`.
    #[arg(short, long, conflicts_with = "json", visible_short_alias = 'v', visible_alias = "verbose")]
    long: bool,
    /// Sizes in exact bytes rather than KiB/MiB.
    #[arg(long)]
    bytes: bool,
    /// One JSON object per entry per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CatArgs {
    /// The archive to read; `-` for stdin, whose files come out in the archive's order.
    archive: Utf8PathBuf,
    /// Files, or directories whose files to write, as `arc list` prints them.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<String>,
    /// Worker threads [default: available cores]
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The archive to check; `-` for stdin.
    archive: Utf8PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct MountArgs {
    /// The archive to show.
    archive: Utf8PathBuf,
    /// An existing directory to show it on.
    mountpoint: Utf8PathBuf,
    /// Stay attached: serve until unmounted, or until Ctrl-C or SIGTERM (which unmount).
    #[arg(short, long)]
    foreground: bool,
    /// Mount options, comma-separated: `allow_other` or `allow_root` (let other users, or
    /// root, in), `uid=N` and `gid=N` (show every entry as owned by N), `ro`.
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// Bytes of decompressed blocks to keep in memory, shared by all open files.
    #[arg(long, value_name = "SIZE", default_value = crate::mount::DEFAULT_CACHE, value_parser = parse_size)]
    cache: u64,
    /// Unmount after SECONDS with no request and no file open.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    idle_exit: Option<u64>,
    /// In the background, append messages (damaged blocks, with --debug every request) to FILE.
    #[arg(long, value_name = "FILE")]
    log: Option<Utf8PathBuf>,
    /// Log every request the kernel makes (to stderr with -f, else to --log).
    #[arg(long)]
    debug: bool,
    /// Worker threads for reads [default: available cores]
    #[arg(short = 'j', long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

/// A parsed command, as plain options.
#[derive(Debug)]
pub enum Config {
    Write(WriteOptions),
    Read(ReadOptions),
    List(ListOptions),
    Verify(VerifyOptions),
    Cat(CatOptions),
    Mount(MountOptions),
    /// Text to print to stdout as it is: a completion script, the man page.
    Print(Vec<u8>),
}

/// Parses the command line (clap's error for a usage error, `--help` or `--version`).
pub fn parse() -> Result<Config, clap::Error> {
    use clap::FromArgMatches;
    let matches = Cli::command().try_get_matches()?;
    let cli = Cli::from_arg_matches(&matches)?;
    let inputs = matches.subcommand_matches("write").map(inputs_with_directories);
    Ok(cli.into_config(inputs))
}

/// The inputs of `write`, each with the `-C` directories given before it.
fn inputs_with_directories(matches: &clap::ArgMatches) -> Vec<Input> {
    let positioned = |id: &str| -> Vec<(usize, Utf8PathBuf)> {
        match (matches.indices_of(id), matches.get_many::<Utf8PathBuf>(id)) {
            (Some(indices), Some(values)) => indices.zip(values.cloned()).collect(),
            _ => Vec::new(),
        }
    };
    let directories = positioned("directories");
    positioned("inputs")
        .into_iter()
        .map(|(at, path)| {
            let mut base = Utf8PathBuf::new();
            for (_, dir) in directories.iter().filter(|(d, _)| *d < at) {
                base.push(dir);
            }
            Input { base, path }
        })
        .collect()
}

impl Cli {
    /// The plain options of the command; `write_inputs` replaces `write`'s inputs (with their
    /// `-C` directories applied).
    pub fn into_config(self, write_inputs: Option<Vec<Input>>) -> Config {
        match self.command {
            Command::Write(a) => Config::Write(WriteOptions {
                threads: a.common.threads(),
                quiet: a.common.quiet,
                output: a.output,
                inputs: write_inputs.unwrap_or_else(|| a.inputs.into_iter().map(Input::new).collect()),
                level: a.level,
                block_size: a.block_size,
                verbose: a.verbose,
                ignore_failed_read: a.ignore_failed_read,
                exclude: crate::write::ExcludeOptions {
                    patterns: a.excludes,
                    from_files: a.exclude_from,
                    vcs: a.exclude_vcs,
                    gitignore: a.gitignore,
                },
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
                owners: match (a.no_same_owner, a.numeric_owner) {
                    (true, _) => Owners::Skip,
                    (false, true) => Owners::Numeric,
                    (false, false) => Owners::ByName,
                },
                strip_components: a.strip_components,
                salvage: a.salvage,
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
            Command::Cat(a) => {
                let threads = Common { threads: a.threads, quiet: true }.threads();
                Config::Cat(CatOptions { archive: a.archive, paths: a.paths, threads })
            }
            Command::Mount(a) => Config::Mount(MountOptions {
                threads: Common { threads: a.threads, quiet: true }.threads(),
                archive: a.archive,
                mountpoint: a.mountpoint,
                foreground: a.foreground,
                debug: a.debug,
                cache: a.cache,
                idle_exit: a.idle_exit,
                log: a.log,
                options: a.options,
            }),
            Command::Completions { shell } => {
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "arc", &mut script);
                Config::Print(script)
            }
            Command::Man => {
                let mut page = Vec::new();
                // Rendering into memory cannot fail but for a bug.
                match clap_mangen::Man::new(Cli::command()).render(&mut page) {
                    Ok(()) => Config::Print(page),
                    Err(e) => {
                        Config::Print(format!(".\\\" the man page could not be rendered: {e}\n").into_bytes())
                    }
                }
            }
        }
    }
}

/// A usage error as arc prints it: clap's message, with `arc: error: ` and the first line
/// made whole (the arguments clap lists under "were not provided:" join it), then clap's
/// tips and usage lines as they are.
pub fn usage_error(clap_text: &str) -> String {
    let text = clap_text.trim_end();
    let text = text.strip_prefix("error: ").unwrap_or(text);
    let mut lines = text.lines();
    let mut first = lines.next().unwrap_or("invalid arguments").to_owned();
    let mut rest: Vec<&str> = lines.collect();
    if first.ends_with(':') {
        let missing: Vec<&str> = rest.iter().take_while(|l| l.starts_with("  ")).map(|l| l.trim()).collect();
        rest.drain(..missing.len());
        first = format!("{first} {}", missing.join(", "));
    }
    let mut out = format!("arc: error: {first}\n");
    for line in rest {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn parse_block_size(text: &str) -> Result<usize, String> {
    let size = parse_size(text)?;
    let range = crate::format::MIN_BLOCK_SIZE..=crate::format::MAX_BLOCK_RAW;
    if !range.contains(&size) {
        return Err(format!("{text} is not between 64KiB and 64MiB"));
    }
    usize::try_from(size).map_err(|e| e.to_string())
}

/// A size in bytes, as dd and tar read them: `64K` and `16M` binary, `KB` and `MB` decimal.
fn parse_size(text: &str) -> Result<u64, String> {
    // A bare K, M or G is binary, as coreutils, dd and tar take it (bytesize reads it as
    // decimal, which `64K`, a block size people type, would miss by 1,536 bytes).
    let trimmed = text.trim();
    let binary = match trimmed.chars().last() {
        Some(unit @ ('K' | 'k' | 'M' | 'm' | 'G' | 'g')) => {
            Some(format!("{}{}iB", &trimmed[..trimmed.len() - 1], unit.to_ascii_uppercase()))
        }
        _ => None,
    };
    let size: bytesize::ByteSize = binary.as_deref().unwrap_or(text).parse()?;
    Ok(size.as_u64())
}
