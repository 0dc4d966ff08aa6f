//! The `arc` binary: parse, run, map the outcome to an exit status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match arc::cli::parse() {
        Ok(config) => config,
        // --help, --version, and bare `arc` (help, then exit status 2).
        Err(err)
            if !err.use_stderr()
                || err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            err.exit()
        }
        Err(err) => {
            eprint!("{}", arc::cli::usage_error(&err.to_string()));
            return ExitCode::from(2);
        }
    };
    match arc::run(config) {
        Ok(arc::Outcome::Clean) => ExitCode::SUCCESS,
        Ok(arc::Outcome::Warnings) => ExitCode::from(1),
        Err(err) => {
            // One line: the whole cause chain, outermost first.
            eprintln!("arc: error: {}", arc::ui::escape(&format!("{err:#}")));
            match err.downcast_ref::<arc::stop::Interrupted>() {
                Some(interrupted) => ExitCode::from(interrupted.exit_status()),
                None => ExitCode::from(2),
            }
        }
    }
}
