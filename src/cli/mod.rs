//! The command-line interface: argument definitions and subcommand runners.
//!
//! Exit codes are a contract: 0 success, 1 the models are invalid or
//! incomplete, 2 usage or I/O error (clap also exits 2 on bad arguments).

mod check;
pub mod device;
mod remote;
pub mod schema;
pub mod serve;
pub mod simulate;
mod simulate_mqtt;
pub mod token;
pub mod writeload;

use std::io::Write;

use clap::{Parser, Subcommand};

pub use check::CheckArgs;

/// Models are valid and complete / the command succeeded.
pub const EXIT_OK: u8 = 0;
/// Models are invalid or incomplete.
pub const EXIT_INVALID: u8 = 1;
/// Usage or I/O error.
pub const EXIT_USAGE: u8 = 2;

/// twingraph: a GraphQL digital-twin graph server built on DTDL models.
#[derive(Debug, Parser)]
#[command(name = "twingraph", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate and resolve DTDL v2/v3 models.
    ///
    /// Every PATH is a .json file (one document: an object or an array of
    /// objects) or a folder (every *.json below it). All PATHs together form
    /// one model set. Exit status: 0 valid and complete, 1 invalid or
    /// incomplete, 2 usage or I/O error.
    Check(CheckArgs),
    /// Run the GraphQL server over the embedded store.
    ///
    /// Settings come from a config file, TWINGRAPH_* environment variables
    /// and these flags (file < environment < flag); see the README.
    Serve(serve::ServeArgs),
    /// Print the GraphQL schema (SDL) generated from DTDL models.
    ///
    /// PATHs as for `check` (default: ./dtdl). `schema/twingraph.graphql`
    /// holds the output for the sample models; a test fails when it is stale.
    Schema(schema::SchemaArgs),
    /// Play devices against a running server: answer every desired change
    /// (acknowledge, reject, diverge or stay silent, after a delay).
    Simulate(simulate::SimulateArgs),
    /// Manage the device identities and enrollment groups of a running
    /// server (through its GraphQL API; an admin token when it
    /// authenticates). Prints JSON; exit status 2 when the server refuses.
    Device(device::DeviceArgs),
    /// Print every error code clients can see (Markdown; `--json` for a
    /// machine): GraphQL `extensions.code` and `reason`, HTTP status,
    /// meaning. `docs/errors.md` holds the output; a test fails when it is
    /// stale.
    Errors {
        /// One JSON array of `{code, reason, status, meaning}`.
        #[arg(long)]
        json: bool,
    },
    /// Print every setting of `serve` (Markdown): key, environment
    /// variable, flag, default, older names, meaning. `docs/settings.md`
    /// holds the output; a test fails when it is stale.
    Settings,
    /// Mint a bearer token (development and tests) with the configured
    /// HS256 secret or a PEM private key; prints it.
    Token(token::TokenArgs),
    /// Test support: concurrent writes into an embedded store until killed.
    #[command(hide = true)]
    WriteLoad(writeload::WriteLoadArgs),
}

/// Runs a parsed command line, writing its report to `out`; returns the exit code.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => check::run(&args, out),
        Command::Serve(args) => serve::run(&args),
        Command::Schema(args) => schema::run(&args, out),
        Command::Simulate(args) => simulate::run(&args),
        Command::Device(args) => device::run(&args, out),
        Command::Errors { json } => errors(json, out),
        Command::Settings => {
            out.write_all(crate::config::Config::surface().as_bytes())?;
            Ok(EXIT_OK)
        }
        Command::Token(args) => token::run(&args, out),
        Command::WriteLoad(args) => writeload::run(&args),
    }
}

/// `twingraph errors`: the error table.
fn errors(json: bool, out: &mut dyn Write) -> anyhow::Result<u8> {
    use crate::codes::Code;
    if json {
        let rows: Vec<serde_json::Value> = Code::ALL
            .iter()
            .map(|c| {
                serde_json::json!({
                    "code": c.graphql(), "reason": c.reason(),
                    "status": c.status(), "meaning": c.meaning(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        out.write_all(Code::markdown().as_bytes())?;
    }
    Ok(EXIT_OK)
}
