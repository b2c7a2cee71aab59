//! The `twingraph` binary: parse the command line, run, map to an exit code.

use std::process::ExitCode;

use clap::Parser;

// mimalloc: the engine builds many small values; measured ~25% faster than the
// system allocator on `check` of RealEstateCore (benches/compare-reference.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
