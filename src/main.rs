//! The `arc` binary: parse, run, map the outcome to an exit status.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match arc::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            // Usage errors in arc's one-line form; `--help` has the details.
            let text = err.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("arc: error: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match arc::run(cli.into_config()) {
        Ok(arc::Outcome::Clean) => ExitCode::SUCCESS,
        Ok(arc::Outcome::Warnings) => ExitCode::from(1),
        Err(err) => {
            // One line: the whole cause chain, outermost first.
            eprintln!("arc: error: {}", arc::ui::escape(&format!("{err:#}")));
            ExitCode::from(2)
        }
    }
}
