//! The `arc` binary: parse, run, map the outcome to an exit status.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = arc::cli::Cli::parse();
    match arc::run(cli.into_config()) {
        Ok(arc::Outcome::Clean) => ExitCode::SUCCESS,
        Ok(arc::Outcome::Warnings) => ExitCode::from(1),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the whole cause chain, outermost first.
            eprintln!("arc: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// `arc list x.arc | head` ends quietly, as other Unix tools do.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
