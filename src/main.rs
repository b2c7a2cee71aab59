//! The `twingraph` binary: parse the command line, run, map to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = twingraph::cli::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match twingraph::cli::run(cli, &mut stdout) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(twingraph::cli::EXIT_USAGE)
        }
    }
}
