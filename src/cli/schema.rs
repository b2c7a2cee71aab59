//! `twingraph schema`: prints the GraphQL schema (SDL) generated from a
//! model set, exactly as `serve` would serve it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::{EXIT_INVALID, EXIT_OK};
use crate::dtdl::{self, Options, load};
use crate::graphql;
use crate::store::{GraphStore, Store, StoreConfig};

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Model files or folders (default: ./dtdl).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// The SDL of the schema over `models`.
pub fn sdl(models: dtdl::ModelSet) -> anyhow::Result<String> {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(Arc::new(models), StoreConfig::default()));
    let schema = graphql::build(
        store.clone(),
        graphql::schema::Limits::default(),
        graphql::Shutdown::default(),
        Arc::new(crate::metrics::Metrics::default()),
        Arc::new(graphql::ModelLibrary::new(Vec::new(), None)),
        crate::rollout::Rollouts::unstarted(store),
    )?;
    Ok(schema.sdl())
}

pub fn run(args: &SchemaArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("dtdl")]
    } else {
        args.paths.clone()
    };
    let sources = load::read_paths(&paths)?;
    let outcome = dtdl::check(&sources, &Options::default());
    let Some(models) = outcome.model else {
        for d in &outcome.diagnostics {
            writeln!(out, "{d}")?;
        }
        if !outcome.unresolved.is_empty() {
            writeln!(out, "undefined: {}", outcome.unresolved.join(", "))?;
        }
        return Ok(EXIT_INVALID);
    };
    out.write_all(sdl(models)?.as_bytes())?;
    Ok(EXIT_OK)
}
