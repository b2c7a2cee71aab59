//! `twingraph simulate`: devices for demos, through the GraphQL API. One
//! WebSocket (`graphql-transport-ws`) carries both directions: the
//! `events` subscription brings every desired change, and each answer goes
//! back as a `batch` mutation of `patchReported` operations, as real
//! devices (or their gateway) would write them.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::simulator::Behaviour;
use crate::twin::Change;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The server's GraphQL WebSocket endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:4000/graphql/ws")]
    pub url: String,
    /// Share of devices (0..1) that reject desired changes.
    #[arg(long, default_value_t = 0.0)]
    pub reject_rate: f64,
    /// Share of devices that never answer (their rollouts time out).
    #[arg(long, default_value_t = 0.0)]
    pub silent_rate: f64,
    /// Share of devices that acknowledge but report another value.
    #[arg(long, default_value_t = 0.0)]
    pub diverge_rate: f64,
    /// Status code of a rejection.
    #[arg(long, default_value_t = 500)]
    pub reject_code: i64,
    /// How long a device takes to answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Seed of the draw that decides which device does what.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bearer token, when the server authenticates (it reports for many
    /// twins: an admin token, e.g. from `twingraph token --role admin`).
    #[arg(long, env = "TWINGRAPH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Play the devices over the server's MQTT device endpoint
    /// (`mqtt://host:port`, or `mqtts://host:port` with --ca) instead of
    /// GraphQL: each twin of --model gets a device identity (registered
    /// through GraphQL as `sim-{twin}`, its key rotated if it exists), which
    /// connects with a SAS token, reads its twin, acknowledges desired
    /// changes and answers direct methods.
    #[arg(long, value_name = "URL", requires = "model")]
    pub mqtt: Option<String>,
    /// The CA certificate (PEM) an mqtts:// endpoint's certificate chains to.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// With --mqtt: the twins of this model (subtypes included) get devices.
    #[arg(long, value_name = "DTMI")]
    pub model: Option<String>,
    /// With --mqtt: at most this many devices.
    #[arg(long)]
    pub limit: Option<usize>,
}

const EVENTS: &str = r#"subscription { events(kinds: ["desiredPatched", "configurationAssigned", "configurationRestored"]) { seq change } }"#;
const TWINS: &str = "query($after: String) { twins(first: 500, after: $after) { nodes { id desired metadata } pageInfo { hasNextPage endCursor } } }";
const ANSWER: &str = "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }";

pub fn run(args: &SimulateArgs) -> anyhow::Result<u8> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .try_init();
    let behaviour = Behaviour {
        reject_rate: args.reject_rate,
        silent_rate: args.silent_rate,
        diverge_rate: args.diverge_rate,
        reject_code: args.reject_code,
        delay: Duration::from_millis(args.delay_ms),
        seed: args.seed,
        ..Behaviour::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match (&args.mqtt, &args.model) {
        (Some(mqtt), Some(model)) => rt.block_on(super::simulate_mqtt::run(
            super::simulate_mqtt::Plan {
                url: &args.url,
                token: args.token.as_deref(),
                mqtt,
                ca: args.ca.as_deref(),
                model,
                limit: args.limit.unwrap_or(usize::MAX),
            },
            behaviour,
        ))?,
        _ => rt.block_on(simulate(&args.url, args.token.as_deref(), behaviour))?,
    }
    Ok(super::EXIT_OK)
}

async fn simulate(url: &str, token: Option<&str>, behaviour: Behaviour) -> anyhow::Result<()> {
    let mut request = url.into_client_request().context("the --url")?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().context("protocol header")?,
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let (mut tx, mut rx) = ws.split();
    let send = |v: Value| Message::Text(v.to_string().into());
    let init = match token {
        Some(t) => {
            json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {t}")}})
        }
        None => json!({"type": "connection_init"}),
    };
    tx.send(send(init)).await?;
    tx.send(send(
        json!({"type": "subscribe", "id": "events", "payload": {"query": EVENTS}}),
    ))
    .await?;
    // Devices read their twins when they connect: what is still pending
    // gets its answer too.
    tx.send(send(
        json!({"type": "subscribe", "id": "sweep0", "payload": {"query": TWINS}}),
    ))
    .await?;
    println!("simulating devices on {url}");
    let (answers, mut pending) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let mut n = 0u64;
    loop {
        tokio::select! {
            msg = rx.next() => {
                let Some(msg) = msg else { anyhow::bail!("the server closed the connection") };
                let Message::Text(text) = msg? else { continue };
                let v: Value = serde_json::from_str(&text)?;
                match v["type"].as_str() {
                    Some("next") if v["id"] == "events" => {
                        let change = &v["payload"]["data"]["events"]["change"];
                        let Ok(change) = serde_json::from_value::<Change>(change.clone()) else {
                            continue;
                        };
                        if let Some(op) = behaviour.answer_to(&change) {
                            let op = serde_json::to_value(op)?;
                            let delay = behaviour.delay;
                            let answers = answers.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = answers.send(op);
                            });
                        }
                    }
                    Some("next") if v["id"].as_str().is_some_and(|id| id.starts_with("sweep")) => {
                        let page = &v["payload"]["data"]["twins"];
                        for t in page["nodes"].as_array().into_iter().flatten() {
                            let id = t["id"].as_str().unwrap_or_default();
                            if let Some(op) = behaviour.answer_pending(id, &t["desired"], &t["metadata"]) {
                                let _ = answers.send(serde_json::to_value(op)?);
                            }
                        }
                        if page["pageInfo"]["hasNextPage"] == true {
                            let after = page["pageInfo"]["endCursor"].clone();
                            n += 1;
                            tx.send(send(json!({"type": "subscribe", "id": format!("sweep{n}"),
                                "payload": {"query": TWINS, "variables": {"after": after}}})))
                                .await?;
                        }
                    }
                    Some("next") => {
                        if let Some(errors) = v["payload"]["errors"].as_array() {
                            tracing::warn!(?errors, "an answer was refused");
                        }
                    }
                    Some("error") => tracing::warn!(message = %v, "server error"),
                    Some("ping") => tx.send(send(json!({"type": "pong"}))).await?,
                    _ => {}
                }
            }
            Some(op) = pending.recv() => {
                let mut ops = vec![op];
                while let Ok(more) = pending.try_recv() {
                    ops.push(more);
                    if ops.len() >= 1000 {
                        break;
                    }
                }
                n += 1;
                tx.send(send(json!({"type": "subscribe", "id": format!("a{n}"),
                    "payload": {"query": ANSWER, "variables": {"ops": ops}}})))
                    .await?;
            }
        }
    }
}
