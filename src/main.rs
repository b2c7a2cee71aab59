//! The `twingraph` binary: parse the command line, run, map to an exit code.

use std::process::ExitCode;

use clap::Parser;

// mimalloc: the engine builds many small values; measured ~25% faster than the
// system allocator on `check` of RealEstateCore (benches/compare-reference.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    use std::io::Write;
    let cli = twingraph::cli::Cli::parse();
    // Buffered but not locked: `serve` logs to stdout from worker threads,
    // which a lock held here for the whole run would block forever.
    let mut stdout = std::io::BufWriter::new(std::io::stdout());
    let result = twingraph::cli::run(cli, &mut stdout);
    let flushed = stdout.flush();
    match result.and_then(|code| flushed.map(|()| code).map_err(Into::into)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(twingraph::cli::EXIT_USAGE)
        }
    }
}
