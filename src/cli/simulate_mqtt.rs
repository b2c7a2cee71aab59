//! `twingraph simulate --mqtt`: simulated devices over the MQTT device
//! endpoint, as real ones connect. Through GraphQL (the `--url` WebSocket)
//! each twin of the model gets a device identity and its key; each device
//! then connects with a SAS token signed with that key, reads its twin
//! (answering what is still pending), acknowledges desired changes as the
//! [`Behaviour`] says (Plug and Play `ac`/`av`/`ad`) and answers direct
//! methods. A device whose connection ends connects again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Map, Value, json};

use super::remote::Gql;
use crate::devices::client::{Client, Incoming};
use crate::simulator::{Answer, Behaviour};
use crate::twin::{Entry, Side};

/// What to simulate.
#[derive(Debug)]
pub struct Plan<'a> {
    pub url: &'a str,
    pub token: Option<&'a str>,
    pub mqtt: &'a str,
    pub ca: Option<&'a std::path::Path>,
    pub model: &'a str,
    pub limit: usize,
}

const TWINS: &str = "query($model: String, $after: String) { twins(model: $model, first: 500, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }";
const REGISTER: &str =
    "mutation($id: ID!, $twin: ID!) { registerDevice(id: $id, twin: $twin) { primaryKey } }";
const ROTATE: &str = "mutation($id: ID!) { rotateDeviceKey(id: $id) { key } }";

pub async fn run(plan: Plan<'_>, behaviour: Behaviour) -> anyhow::Result<()> {
    let mut gql = Gql::connect(plan.url, plan.token).await?;
    let mut twins = Vec::new();
    let mut after = Value::Null;
    while twins.len() < plan.limit {
        let page = gql
            .call(TWINS, json!({"model": plan.model, "after": after}))
            .await?;
        let t = &page["data"]["twins"];
        anyhow::ensure!(t.is_object(), "listing twins: {page}");
        twins.extend(
            t["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["id"].as_str().map(str::to_owned)),
        );
        if t["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = t["pageInfo"]["endCursor"].clone();
    }
    twins.truncate(plan.limit);
    let mut devices = Vec::new();
    for twin in twins {
        let id = format!("sim-{twin}");
        if let Err(why) = crate::devices::registry::check_id(&id) {
            tracing::warn!(
                twin,
                why,
                "no device for this twin: its id makes no device id"
            );
            continue;
        }
        let r = gql.call(REGISTER, json!({"id": id, "twin": twin})).await?;
        let key = match r["data"]["registerDevice"]["primaryKey"].as_str() {
            Some(k) => k.to_owned(),
            None => {
                // Registered by an earlier run: a new key.
                let r2 = gql.call(ROTATE, json!({"id": id})).await?;
                match r2["data"]["rotateDeviceKey"]["key"].as_str() {
                    Some(k) => k.to_owned(),
                    None => {
                        tracing::warn!(twin, answer = %r, "no device for this twin");
                        continue;
                    }
                }
            }
        };
        devices.push((id, twin, key));
    }
    let endpoint = Endpoint::parse(plan.mqtt, plan.ca)?;
    println!(
        "simulating {} devices over MQTT at {}",
        devices.len(),
        plan.mqtt
    );
    let behaviour = Arc::new(behaviour);
    let endpoint = Arc::new(endpoint);
    let mut tasks = tokio::task::JoinSet::new();
    for (id, twin, key) in devices {
        let (behaviour, endpoint) = (behaviour.clone(), endpoint.clone());
        tasks.spawn(async move {
            let mut wait = Duration::from_millis(200);
            loop {
                match play(&endpoint, &id, &twin, &key, &behaviour).await {
                    Ok(()) => wait = Duration::from_millis(200),
                    Err(e) => {
                        tracing::warn!(device = id, error = %e, "device connection ended; connecting again");
                        wait = (wait * 2).min(Duration::from_secs(10));
                    }
                }
                tokio::time::sleep(wait).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Where the endpoint is, and how to reach it.
struct Endpoint {
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Endpoint {
    fn parse(url: &str, ca: Option<&std::path::Path>) -> anyhow::Result<Endpoint> {
        let (scheme, rest) = url
            .split_once("://")
            .context("--mqtt: expected mqtt://host:port or mqtts://host:port")?;
        let (host, port) = rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .context("--mqtt: no port")?;
        let port: u16 = port.parse().context("--mqtt: the port")?;
        let tls = match scheme {
            "mqtt" => None,
            "mqtts" => {
                let ca =
                    ca.context("--mqtt mqtts:// needs --ca (the CA of the server's certificate)")?;
                Some(crate::devices::client::tls_connector(ca).map_err(anyhow::Error::msg)?)
            }
            other => anyhow::bail!("--mqtt: unknown scheme {other}"),
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

/// One connection of one device, until it ends.
async fn play(
    endpoint: &Endpoint,
    id: &str,
    twin: &str,
    key: &str,
    behaviour: &Behaviour,
) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    let _ = tcp.set_nodelay(true);
    match &endpoint.tls {
        None => {
            serve(
                Client::connect(tcp, &endpoint.host, id, key).await?,
                twin,
                behaviour,
            )
            .await
        }
        Some(tls) => {
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
                .context("the endpoint's host name")?;
            let stream = tls.connect(name, tcp).await?;
            serve(
                Client::connect(stream, &endpoint.host, id, key).await?,
                twin,
                behaviour,
            )
            .await
        }
    }
}

async fn serve<S>(mut c: Client<S>, twin: &str, behaviour: &Behaviour) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let get = c.request_twin().await?;
    while let Some(m) = c.next().await? {
        match m {
            Incoming::Twin {
                rid, status, body, ..
            } if rid == get => {
                anyhow::ensure!(status == 200, "reading its twin: {status} {body}");
                let version = body["desired"]["$version"].as_u64().unwrap_or(0);
                let pending = pending_entries(&body);
                if let Some(patch) = behaviour.reply(twin, version, &pending) {
                    tokio::time::sleep(behaviour.delay).await;
                    c.report(&patch).await?;
                }
            }
            Incoming::Twin { status, body, .. } if status >= 400 => {
                tracing::warn!(twin, status, %body, "a report was refused");
            }
            Incoming::Desired { version, patch } => {
                if let Some(patch) = behaviour.reply(twin, version, &entries(&patch)) {
                    tokio::time::sleep(behaviour.delay).await;
                    c.report(&patch).await?;
                }
            }
            Incoming::Method { name, rid, payload } => match behaviour.answer(twin) {
                Answer::Silent => {}
                Answer::Reject => {
                    c.answer(
                        &rid,
                        behaviour.reject_code,
                        &json!({"error": "rejected by the simulated device"}),
                    )
                    .await?;
                }
                Answer::Accept | Answer::Diverge => {
                    c.answer(&rid, 200, &json!({"method": name, "request": payload}))
                        .await?;
                }
            },
            Incoming::Twin { .. } | Incoming::Acked(_) => {}
        }
    }
    Ok(())
}

/// The entries of a desired patch (a Component's values under its name,
/// marked `"__t": "c"`).
fn entries(patch: &Map<String, Value>) -> Vec<Entry> {
    let entry = |component: Option<&str>, name: &str, value: &Value| Entry {
        side: Side::Desired,
        component: component.map(str::to_owned),
        name: name.to_owned(),
        value: (!value.is_null()).then(|| value.clone()),
        source_time: None,
        ack: None,
        source: None,
    };
    let mut out = Vec::new();
    for (k, v) in patch.iter().filter(|(k, _)| !k.starts_with('$')) {
        match v.as_object() {
            Some(m) if m.get("__t").and_then(Value::as_str) == Some("c") => {
                out.extend(
                    m.iter()
                        .filter(|(n, _)| *n != "__t")
                        .map(|(n, val)| entry(Some(k), n, val)),
                );
            }
            _ => out.push(entry(None, k, v)),
        }
    }
    out
}

/// The desired values of a twin document not yet acknowledged at their
/// version (`$metadata.{name}.$lastUpdatedVersion`).
fn pending_entries(doc: &Value) -> Vec<Entry> {
    let desired = doc["desired"].as_object().cloned().unwrap_or_default();
    let meta = &doc["desired"]["$metadata"];
    let reported = &doc["reported"];
    entries(&desired)
        .into_iter()
        .filter(|e| {
            let (m, r) = match &e.component {
                None => (&meta[&e.name], &reported[&e.name]),
                Some(c) => (&meta[c][&e.name], &reported[c][&e.name]),
            };
            let wanted = m["$lastUpdatedVersion"].as_u64().unwrap_or(0);
            r["av"].as_u64().is_none_or(|av| av < wanted)
        })
        .collect()
}
