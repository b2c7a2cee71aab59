//! `twingraph write-load` (hidden, for tests): writes batches into an
//! embedded store from several concurrent writers until stopped, appending
//! the id of every acknowledged batch to a file. The crash-safety test kills
//! it with SIGKILL at random moments and checks the store afterwards.
//!
//! Batch `<prefix>-<writer>-<n>` creates Pump `a.<...>`, Motor `b.<...>`,
//! a `feeds` relationship between them, and reports a value on the Pump.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde_json::json;

use crate::dtdl::{Options, load};
use crate::store::{GraphStore, StoreConfig, embedded};
use crate::twin::{Batch, Op};

#[derive(Debug, Args)]
pub struct WriteLoadArgs {
    /// Data directory of the embedded store.
    #[arg(long)]
    pub data: PathBuf,
    /// Model folder (the sample models).
    #[arg(long)]
    pub models: PathBuf,
    /// File to append acknowledged batch ids to.
    #[arg(long)]
    pub acked: PathBuf,
    /// Prefix of batch ids (unique per run).
    #[arg(long)]
    pub prefix: String,
    #[arg(long, default_value_t = 8)]
    pub writers: usize,
    /// Batches per writer (then exit).
    #[arg(long, default_value_t = 1_000_000)]
    pub batches: usize,
    /// Start a checkpoint at this many changed rows (the store's default
    /// when absent); with a small `--checkpoint-chunk`, checkpoints span
    /// many commits and a kill lands in the middle of one.
    #[arg(long)]
    pub checkpoint_rows: Option<usize>,
    #[arg(long)]
    pub checkpoint_chunk: Option<usize>,
    /// Commit a checkpoint's chunks durably this often at most, in
    /// milliseconds (0: every chunk; the store's default when absent).
    #[arg(long)]
    pub checkpoint_sync_ms: Option<u64>,
}

/// Twins every batch also updates (`a.hot`, and `b.hot` beside it, so
/// that every `a.` twin has its `b.`): their state is the sum of updates
/// across checkpoints, which a replay applied twice would break.
const HOT: &str = "a.hot";

/// The operations of batch `id`.
pub fn batch_for(id: &str) -> Batch {
    let a = format!("a.{id}");
    let b = format!("b.{id}");
    Batch {
        ops: vec![
            Op::CreateTwin {
                id: a.clone(),
                model: "dtmi:twingraph:isa95:Pump;1".into(),
                desired: Some(json!({"flowSetpoint": 10.0})),
                reported: None,
            },
            Op::CreateTwin {
                id: b.clone(),
                model: "dtmi:twingraph:isa95:Motor;1".into(),
                desired: None,
                reported: None,
            },
            Op::CreateRelationship {
                source: a.clone(),
                id: Some("flow".into()),
                name: "feeds".into(),
                target: b,
                properties: Some(json!({"medium": "water"})),
            },
            Op::PatchReported {
                id: a,
                patch: json!({"flowRate": 4.5}),
                expected_version: None,
                source_time: None,
            },
            Op::PatchReported {
                id: HOT.into(),
                patch: json!({"manufacturer": id}),
                expected_version: None,
                source_time: None,
            },
        ],
    }
}

pub fn run(args: &WriteLoadArgs) -> anyhow::Result<u8> {
    let sources = load::read_paths(std::slice::from_ref(&args.models))?;
    let models = crate::dtdl::check(&sources, &Options::default())
        .model
        .ok_or_else(|| anyhow::anyhow!("the models in {} are not valid", args.models.display()))?;
    let defaults = StoreConfig::default();
    let store: Arc<dyn GraphStore> = Arc::new(embedded::open(
        &args.data,
        Arc::new(models),
        StoreConfig {
            checkpoint_rows: args.checkpoint_rows.unwrap_or(defaults.checkpoint_rows),
            checkpoint_chunk: args.checkpoint_chunk.unwrap_or(defaults.checkpoint_chunk),
            checkpoint_sync: args
                .checkpoint_sync_ms
                .map_or(defaults.checkpoint_sync, std::time::Duration::from_millis),
            ..defaults
        },
    )?);
    let acked = Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&args.acked)?,
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        if store.twin(HOT).await?.is_none() {
            let ops = ["a.hot", "b.hot"]
                .map(|id| Op::CreateTwin {
                    id: id.into(),
                    model: "dtmi:twingraph:isa95:Pump;1".into(),
                    desired: None,
                    reported: None,
                })
                .into();
            store.apply(Batch { ops }, "write-load").await?;
        }
        let mut tasks = Vec::new();
        for w in 0..args.writers {
            let store = store.clone();
            let acked = acked.clone();
            let prefix = args.prefix.clone();
            let batches = args.batches;
            tasks.push(tokio::spawn(async move {
                for n in 0..batches {
                    let id = format!("{prefix}-{w}-{n}");
                    store.apply(batch_for(&id), "write-load").await?;
                    // Acknowledged: record it. (A kill before this line only under-counts.)
                    let mut f = acked
                        .lock()
                        .map_err(|_| anyhow::anyhow!("ack file lock poisoned"))?;
                    writeln!(f, "{id}")?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })?;
    Ok(super::EXIT_OK)
}
