//! arc: a parallel, indexed archiver. See ARCHITECTURE.md for the map of this crate and
//! docs/FORMAT.md for the on-disk format.

pub mod archive;
pub mod cat;
pub mod cli;
pub mod format;
pub mod list;
pub mod mount;
pub mod read;
pub mod select;
pub mod stop;
pub mod sys;
pub mod ui;
pub mod verify;
pub mod write;

pub use ui::Outcome;

/// Runs one parsed command.
pub fn run(config: cli::Config) -> anyhow::Result<Outcome> {
    let stop = stop::Stop::install()?;
    match config {
        cli::Config::Write(options) => write::run(&options, &stop),
        cli::Config::Read(options) => read::run(&options, &stop),
        cli::Config::List(options) => list::run(&options).map(|()| Outcome::Clean),
        cli::Config::Verify(options) => verify::run(&options, &stop).map(|()| Outcome::Clean),
        cli::Config::Cat(options) => cat::run(&options, &stop).map(|()| Outcome::Clean),
        cli::Config::Mount(options) => mount::run(&options, &stop).map(|()| Outcome::Clean),
        cli::Config::Print(text) => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&text).and_then(|()| stdout.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(e).context("writing to stdout"))
                }
                _ => Ok(Outcome::Clean),
            }
        }
    }
}
