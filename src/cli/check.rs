//! `twingraph check`: validate a model set and report diagnostics or a summary.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::dtdl::load::{self, LoadError};
use crate::dtdl::{Diagnostic, Options, Outcome, UndefinedExtensions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Accept @context entries naming unknown extensions (DTDL v2's default).
    #[arg(long, conflicts_with = "deny_undefined_extensions")]
    pub allow_undefined_extensions: bool,

    /// Reject @context entries naming unknown extensions (DTDL v3's default).
    #[arg(long)]
    pub deny_undefined_extensions: bool,

    /// A device model repository folder (DMR layout) to resolve missing DTMIs from; repeatable.
    #[arg(long = "repository", value_name = "DIR")]
    pub repositories: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Files (.json) or folders to check, together, as one model set.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a crate::dtdl::model::Counts>,
    diagnostics: &'a [Diagnostic],
    unresolved: &'a [String],
}

pub fn run(args: &CheckArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let options = Options {
        undefined_extensions: if args.allow_undefined_extensions {
            UndefinedExtensions::Allow
        } else if args.deny_undefined_extensions {
            UndefinedExtensions::Deny
        } else {
            UndefinedExtensions::VersionDefault
        },
    };
    let outcome = match load::read_paths(&args.paths)
        .and_then(|sources| load::check_with_repositories(sources, &args.repositories, &options))
    {
        Ok(o) => o,
        Err(e) => return io_error(&e, args.format, out),
    };
    report(&outcome, args.format, out)?;
    Ok(if outcome.is_ok() {
        EXIT_OK
    } else {
        EXIT_INVALID
    })
}

fn io_error(e: &LoadError, format: Format, out: &mut dyn Write) -> anyhow::Result<u8> {
    match format {
        Format::Text => eprintln!("error: {e}"),
        Format::Json => {
            let v = serde_json::json!({ "error": { "code": "io", "message": e.to_string() } });
            writeln!(out, "{v}")?;
        }
    }
    Ok(EXIT_USAGE)
}

fn report(o: &Outcome, format: Format, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let r = JsonReport {
                valid: o.diagnostics.is_empty(),
                complete: o.unresolved.is_empty(),
                summary: o.model.as_ref().map(|m| m.counts()),
                diagnostics: &o.diagnostics,
                unresolved: &o.unresolved,
            };
            serde_json::to_writer_pretty(&mut *out, &r)?;
            writeln!(out)?;
        }
        Format::Text => {
            for d in &o.diagnostics {
                writeln!(out, "{d}")?;
            }
            if !o.unresolved.is_empty() {
                writeln!(
                    out,
                    "incomplete: {} referenced DTMI(s) are not defined: {}",
                    o.unresolved.len(),
                    o.unresolved.join(", ")
                )?;
            }
            match &o.model {
                Some(m) => {
                    let c = m.counts();
                    let kinds: Vec<String> =
                        c.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
                    writeln!(
                        out,
                        "ok: {} interfaces, {} elements ({})",
                        c.interfaces,
                        c.elements,
                        kinds.join(", ")
                    )?;
                }
                None => writeln!(
                    out,
                    "invalid: {} error(s), {} unresolved reference(s)",
                    o.diagnostics.len(),
                    o.unresolved.len()
                )?,
            }
        }
    }
    Ok(())
}
