//! End to end: the real HTTP server on 127.0.0.1:0, spoken to over TCP.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use twingraph::graphql;
use twingraph::server::{self, AppState};
use twingraph::store::{GraphStore, Store, StoreConfig};

use crate::support::{sample_models, sample_sources};

pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    /// Completes the subscriptions (what `serve` does on SIGTERM).
    pub(crate) live: graphql::Shutdown,
    /// The router served (to serve it again, e.g. over TLS).
    pub(crate) app: axum::Router,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub(crate) async fn start() -> Running {
    start_with(StoreConfig::default()).await
}

/// A server over an in-memory store with `config` (subscribers may fall
/// `config.live_buffer` events behind, shared or not).
pub(crate) async fn start_with(config: StoreConfig) -> Running {
    let limits = graphql::schema::Limits {
        live_buffer: config.live_buffer,
        ..graphql::schema::Limits::default()
    };
    serve(Arc::new(Store::in_memory(sample_models(), config)), limits).await
}

/// A server over `store`.
pub(crate) async fn start_on(store: Arc<dyn GraphStore>) -> Running {
    serve(store, graphql::schema::Limits::default()).await
}

pub(crate) async fn serve(store: Arc<dyn GraphStore>, limits: graphql::schema::Limits) -> Running {
    serve_auth(store, limits, None).await
}

/// A server over `store` that authenticates with `jwt`.
pub(crate) async fn start_secured(
    store: Arc<dyn GraphStore>,
    jwt: twingraph::auth::JwtConfig,
) -> Running {
    let verifier = twingraph::auth::Verifier::new(jwt).expect("JWT settings");
    serve_auth(
        store,
        graphql::schema::Limits::default(),
        Some(Arc::new(verifier)),
    )
    .await
}

pub(crate) async fn serve_auth(
    store: Arc<dyn GraphStore>,
    limits: graphql::schema::Limits,
    auth: Option<Arc<twingraph::auth::Verifier>>,
) -> Running {
    serve_full(store, limits, auth, server::HttpSettings::default()).await
}

/// A server with every setting given (bodies up to 64 KiB).
pub(crate) async fn serve_full(
    store: Arc<dyn GraphStore>,
    limits: graphql::schema::Limits,
    auth: Option<Arc<twingraph::auth::Verifier>>,
    http_settings: server::HttpSettings,
) -> Running {
    serve_bodies(store, limits, auth, http_settings, 64 * 1024).await
}

/// A server over `store` whose configurations and rollouts `rollouts`
/// serves (e.g. on a stepped clock).
pub(crate) async fn serve_rollouts(
    store: Arc<dyn GraphStore>,
    rollouts: Arc<twingraph::rollout::Rollouts>,
) -> Running {
    serve_parts(
        store,
        graphql::schema::Limits::default(),
        None,
        server::HttpSettings::default(),
        64 * 1024,
        Services {
            rollouts: Some(rollouts),
            ..Services::default()
        },
    )
    .await
}

/// [`serve_full`] taking bodies up to `max_body_bytes`.
pub(crate) async fn serve_bodies(
    store: Arc<dyn GraphStore>,
    limits: graphql::schema::Limits,
    auth: Option<Arc<twingraph::auth::Verifier>>,
    http_settings: server::HttpSettings,
    max_body_bytes: usize,
) -> Running {
    serve_parts(
        store,
        limits,
        auth,
        http_settings,
        max_body_bytes,
        Services::default(),
    )
    .await
}

/// A server over an in-memory store that keeps time series (in memory),
/// its follower reading the store's log (so not for tests that count the
/// store's calls).
pub(crate) async fn start_with_series() -> Running {
    serve_parts(
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default())),
        graphql::schema::Limits::default(),
        None,
        server::HttpSettings::default(),
        64 * 1024,
        Services {
            series: true,
            ..Services::default()
        },
    )
    .await
}

/// A server over `store` whose alarms `alarms` serves (e.g. on a stepped
/// clock).
pub(crate) async fn serve_alarms(
    store: Arc<dyn GraphStore>,
    alarms: Arc<twingraph::alarms::Alarms>,
) -> Running {
    serve_parts(
        store,
        graphql::schema::Limits::default(),
        None,
        server::HttpSettings::default(),
        64 * 1024,
        Services {
            alarms: Some(alarms),
            ..Services::default()
        },
    )
    .await
}

/// The services a test server runs besides the store (defaults: its own
/// rollouts and alarms on the system clock, no series).
#[derive(Default)]
struct Services {
    rollouts: Option<Arc<twingraph::rollout::Rollouts>>,
    /// Time series in memory, followed from the store's log.
    series: bool,
    alarms: Option<Arc<twingraph::alarms::Alarms>>,
}

async fn serve_parts(
    store: Arc<dyn GraphStore>,
    limits: graphql::schema::Limits,
    auth: Option<Arc<twingraph::auth::Verifier>>,
    http_settings: server::HttpSettings,
    max_body_bytes: usize,
    services: Services,
) -> Running {
    let Services {
        rollouts,
        series: with_series,
        alarms,
    } = services;
    let rollouts = match rollouts {
        Some(r) => r,
        None => twingraph::rollout::Rollouts::start(store.clone())
            .await
            .expect("rollouts"),
    };
    let live = graphql::Shutdown::default();
    let metrics = Arc::new(twingraph::metrics::Metrics::default());
    let devices = twingraph::devices::Devices::start(
        store.clone(),
        twingraph::devices::service::Options {
            secret: Some(twingraph::devices::keys::Secret::new(&[7; 32]).expect("a secret")),
            ..twingraph::devices::service::Options::default()
        },
    )
    .await
    .expect("devices");
    // Series in memory, like the volatile stores the tests run on.
    let series = with_series.then(|| {
        let series = Arc::new(
            twingraph::series::Series::new(
                twingraph::series::Backend::memory(),
                twingraph::series::SeriesConfig::default(),
            )
            .expect("series"),
        );
        tokio::spawn(
            series
                .clone()
                .follow(store.clone(), live.clone().triggered()),
        );
        series
    });
    // Alarms on the system clock, decided every 20 ms, unless given.
    let alarms = match alarms {
        Some(a) => a,
        None => twingraph::alarms::Alarms::start(
            store.clone(),
            twingraph::alarms::Options {
                tick: std::time::Duration::from_millis(20),
                ..Default::default()
            },
            live.clone().triggered(),
        )
        .await
        .expect("alarms"),
    };
    let schema = graphql::build_served(
        store.clone(),
        limits,
        live.clone(),
        metrics.clone(),
        Arc::new(graphql::ModelLibrary::new(sample_sources(), None)),
        rollouts,
        graphql::Served {
            devices,
            series,
            alarms: Some(alarms),
            lifecycle: Some(
                twingraph::lifecycle::Lifecycle::start(store.clone())
                    .await
                    .expect("lifecycle"),
            ),
        },
    )
    .expect("schema");
    schema.follow_uploads();
    let app = server::app(AppState {
        store,
        schema,
        ready: Arc::new(AtomicBool::new(true)),
        max_body_bytes,
        metrics,
        auth,
        http: http_settings,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::run(listener, app.clone(), async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        live,
        app,
        stop: Some(stop),
        task,
    }
}

impl Running {
    pub(crate) async fn shutdown(mut self) {
        self.live.trigger();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.expect("server task").expect("server ran");
    }
}

/// One HTTP/1.1 request; returns status and body.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    http_as(addr, method, path, body, None).await
}

/// [`http`] with an `Authorization` header when given.
pub(crate) async fn http_as(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    authorization: Option<&str>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or("");
    let auth = authorization.map_or_else(String::new, |a| format!("Authorization: {a}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

pub(crate) async fn gql(addr: SocketAddr, query: &str, variables: Value) -> Value {
    let body = json!({"query": query, "variables": variables}).to_string();
    let (status, text) = http(addr, "POST", "/graphql", Some(&body)).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_codes_are_in_the_table(&v);
    v
}

/// Every error of a response is a row of the error table: its code and
/// reason are one of the table's pairs.
pub(crate) fn assert_codes_are_in_the_table(v: &Value) {
    for e in v["errors"].as_array().into_iter().flatten() {
        let (code, reason) = (&e["extensions"]["code"], &e["extensions"]["reason"]);
        assert!(
            twingraph::codes::Code::ALL
                .iter()
                .any(|c| *code == c.graphql() && *reason == c.reason()),
            "an error outside the table: {e}"
        );
    }
}

pub(crate) fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn health_readiness_and_graphiql_are_served() {
    let s = start().await;
    assert_eq!(
        http(s.addr, "GET", "/healthz", None).await,
        (200, "ok".to_owned())
    );
    assert_eq!(http(s.addr, "GET", "/readyz", None).await.0, 200);
    let (status, page) = http(s.addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(page.contains("graphiql"), "GraphiQL page");
    // Every response carries a request id: the client's, or a new one.
    let mut tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    tcp.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nx-request-id: trace-42\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.expect("read");
    assert!(
        raw.to_ascii_lowercase().contains("x-request-id: trace-42"),
        "{raw}"
    );
    // GraphQL over HTTP answers with the GraphQL response media type.
    let body = r#"{"query":"{ twins { nodes { id } } }"}"#;
    let mut tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    tcp.write_all(
        format!(
            "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/graphql-response+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.expect("read");
    assert!(
        raw.to_ascii_lowercase()
            .contains("content-type: application/graphql-response+json"),
        "{raw}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn twins_are_created_read_and_patched_over_graphql() {
    let s = start().await;
    let v = gql(
        s.addr,
        r#"mutation($r: JSON) { createTwin(id: "p1", model: "dtmi:twingraph:isa95:Pump;1", reported: $r) { id model version etag reported } }"#,
        json!({"r": {"flowRate": 3.5}}),
    )
    .await;
    assert_eq!(v["data"]["createTwin"]["version"], 1, "{v}");
    assert_eq!(v["data"]["createTwin"]["reported"]["flowRate"], 3.5);
    let v = gql(
        s.addr,
        r#"mutation { patchDesired(id: "p1", patch: {flowSetpoint: 12.0}, ifVersion: 1) { version desired delta metadata } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["patchDesired"]["version"], 2, "{v}");
    assert_eq!(v["data"]["patchDesired"]["delta"]["flowSetpoint"], 12.0);
    assert_eq!(
        v["data"]["patchDesired"]["metadata"]["flowSetpoint"]["ackStatus"],
        "pending"
    );
    // GET works too.
    let (status, text) = http(
        s.addr,
        "GET",
        "/graphql?query=%7Btwin(id:%22p1%22)%7Bversion%7D%7D",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.contains("\"version\":2"), "{text}");
    s.shutdown().await;
}

#[tokio::test]
async fn errors_carry_stable_codes() {
    let s = start().await;
    gql(
        s.addr,
        r#"mutation { createTwin(id: "p1", model: "dtmi:twingraph:isa95:Pump;1") { id } }"#,
        json!({}),
    )
    .await;
    let v = gql(
        s.addr,
        r#"mutation { patchDesired(id: "p1", patch: {flowSetpoint: "fast"}) { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "VALIDATION_FAILED", "{v}");
    assert_eq!(v["errors"][0]["extensions"]["path"], "flowSetpoint");
    let v = gql(
        s.addr,
        r#"mutation { patchDesired(id: "p1", patch: {flowSetpoint: 1.0}, ifVersion: 7) { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "VERSION_CONFLICT", "{v}");
    assert_eq!(v["errors"][0]["extensions"]["currentVersion"], 1);
    let v = gql(
        s.addr,
        r#"mutation { patchDesired(id: "nobody", patch: {}) { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    let v = gql(
        s.addr,
        r#"mutation { createTwin(id: "x", model: "dtmi:nope:X;1") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "MODEL_NOT_FOUND", "{v}");
    let v = gql(
        s.addr,
        r#"{ twins(model: "dtmi:nope:X;1") { nodes { id } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "MODEL_NOT_FOUND", "{v}");
    let v = gql(
        s.addr,
        r#"{ twins(first: 5000) { nodes { id } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    assert!(
        gql(s.addr, r#"{ twin(id: "nobody") { id } }"#, json!({})).await["data"]["twin"].is_null()
    );
    // Errors of the GraphQL engine itself (syntax, validation, limits) carry a code too.
    let v = gql(s.addr, "{ twin(id: \"p1\") { nonsense } }", json!({})).await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    let v = gql(s.addr, "{ twin(", json!({})).await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} name {} }} }} }} }} }}",
        "ofType { ".repeat(16),
        "}".repeat(16)
    );
    let v = gql(s.addr, &deep, json!({})).await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nested too deep")),
        "{v}"
    );
    // The body limit (64 KiB here) refuses larger requests before parsing.
    let big =
        json!({"query": "{ twins { nodes { id } } }", "variables": {"pad": "x".repeat(70_000)}})
            .to_string();
    let (status, body) = http(s.addr, "POST", "/graphql", Some(&big)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("BAD_REQUEST"), "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn lists_paginate_include_subtypes_and_time_travel() {
    let s = start().await;
    for (id, m) in [
        ("m1", "Motor"),
        ("p1", "Pump"),
        ("p2", "Pump"),
        ("site", "Site"),
    ] {
        gql(
            s.addr,
            &format!(r#"mutation {{ createTwin(id: "{id}", model: "dtmi:twingraph:isa95:{m};1") {{ id }} }}"#),
            json!({}),
        )
        .await;
    }
    let q = r#"query($after: String) { twins(model: "dtmi:twingraph:isa95:Equipment;1", first: 2, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }"#;
    let v = gql(s.addr, q, json!({"after": null})).await;
    assert_eq!(
        v["data"]["twins"]["nodes"],
        json!([{"id": "m1"}, {"id": "p1"}]),
        "{v}"
    );
    assert_eq!(v["data"]["twins"]["pageInfo"]["hasNextPage"], true);
    let v = gql(s.addr, q, json!({"after": "p1"})).await;
    assert_eq!(v["data"]["twins"]["nodes"], json!([{"id": "p2"}]));
    assert_eq!(v["data"]["twins"]["pageInfo"]["hasNextPage"], false);

    let before = gql(s.addr, r#"{ twin(id: "p1") { updatedAt } }"#, json!({})).await["data"]["twin"]["updatedAt"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    gql(
        s.addr,
        r#"mutation { patchDesired(id: "p1", patch: {flowSetpoint: 5.0}) { id } }"#,
        json!({}),
    )
    .await;
    let v = gql(
        s.addr,
        r#"query($t: DateTime) { twin(id: "p1", asOf: $t) { version desired } }"#,
        json!({"t": before}),
    )
    .await;
    assert_eq!(v["data"]["twin"]["version"], 1, "{v}");
    assert_eq!(v["data"]["twin"]["desired"], json!({}));
    s.shutdown().await;
}

/// The binary: `serve --demo` on an ephemeral port, queried, then SIGTERM:
/// it exits cleanly and the store keeps what was written.
#[test]
fn serve_with_demo_data_answers_and_shuts_down_gracefully() {
    let dir = crate::store_conformance::fresh_dir();
    let (child, addr) = spawn_serve(&dir);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let v = rt.block_on(gql(
        addr,
        r#"{ twins(model: "dtmi:twingraph:isa95:Asset;1", first: 1000) { nodes { id } } }"#,
        json!({}),
    ));
    let n = v["data"]["twins"]["nodes"].as_array().map_or(0, Vec::len);
    assert!(n > 98, "the demo plant is there ({n} assets): {v}");
    // The typed API has data to show: a pump's flow and setpoint, typed edges.
    let v = rt.block_on(gql(
        addr,
        r#"{ pumps(first: 1) { nodes { flowRate flowSetpointDesired dependsOn { edges { kind critical node { __typename } } } } } }"#,
        json!({}),
    ));
    let pump = &v["data"]["pumps"]["nodes"][0];
    assert!(pump["flowRate"].as_f64().is_some(), "{v}");
    assert_eq!(pump["flowSetpointDesired"], 12.0, "{v}");
    assert_eq!(
        pump["dependsOn"]["edges"][0]["kind"], "compressedAir",
        "{v}"
    );
    assert_eq!(
        pump["dependsOn"]["edges"][0]["node"]["__typename"], "CompressorTwin",
        "{v}"
    );
    // A model uploaded at runtime (the schema hot-swaps), and a twin of it.
    let v = rt.block_on(gql(
        addr,
        r#"mutation($m: [JSON!]!) { uploadModels(models: $m) { models } }"#,
        json!({"m": [{
            "@context": "dtmi:dtdl:context;3", "@id": "dtmi:example:SmartPump;1",
            "@type": "Interface", "extends": "dtmi:twingraph:isa95:Pump;1"
        }]}),
    ));
    assert!(v.get("errors").is_none(), "{v}");
    let v = rt.block_on(gql(
        addr,
        r#"mutation { createSmartPump(id: "sp1", reported: {flowRate: 2.5}) { __typename flowRate } }"#,
        json!({}),
    ));
    assert_eq!(
        v["data"]["createSmartPump"],
        json!({"__typename": "SmartPumpTwin", "flowRate": 2.5}),
        "{v}"
    );
    stop_serve(child);

    // Restarted on the same data: the plant, the uploaded model and its twin are all there.
    let (child, addr) = spawn_serve(&dir);
    let v = rt.block_on(gql(
        addr,
        r#"{ twin(id: "sp1") { model __typename } twins(model: "dtmi:twingraph:isa95:Asset;1", first: 1000) { nodes { id } } }"#,
        json!({}),
    ));
    assert_eq!(
        v["data"]["twin"],
        json!({"model": "dtmi:example:SmartPump;1", "__typename": "SmartPumpTwin"}),
        "uploaded models are typed after a restart too: {v}"
    );
    let m = v["data"]["twins"]["nodes"].as_array().map_or(0, Vec::len);
    assert_eq!(m, n + 1, "{v}");
    stop_serve(child);
}

/// Starts `twingraph serve --demo` on an ephemeral port over `dir/data`.
pub(crate) fn spawn_serve(dir: &std::path::Path) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twingraph"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--models")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dtdl"))
        .env("TWINGRAPH_DEMO_CELLS", "2")
        // Info: request logs are written from worker threads while the test queries.
        .env("TWINGRAPH_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve");
    let addr = crate::support::listening(&mut child).expect("serve exited before listening");
    (child, addr)
}

/// SIGTERM; the server must exit cleanly.
pub(crate) fn stop_serve(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
}

/// Relationships, traversal, containment, history, the event log, models and
/// atomic batches through the graph half of the API.
#[tokio::test]
async fn graph_queries_history_and_atomic_batches() {
    let s = start().await;
    let m = |n: &str| format!("dtmi:twingraph:isa95:{n};1");
    let ops = json!([
        {"op": "createTwin", "id": "site", "model": m("Site")},
        {"op": "createTwin", "id": "area", "model": m("Area")},
        {"op": "createTwin", "id": "line", "model": m("ProductionLine")},
        {"op": "createTwin", "id": "cell", "model": m("WorkCell")},
        {"op": "createTwin", "id": "p1", "model": m("Pump")},
        {"op": "createTwin", "id": "p2", "model": m("Pump")},
        {"op": "createRelationship", "source": "site", "id": "c1", "name": "contains", "target": "area"},
        {"op": "createRelationship", "source": "area", "id": "c2", "name": "contains", "target": "line"},
        {"op": "createRelationship", "source": "line", "id": "c3", "name": "contains", "target": "cell"},
        {"op": "createRelationship", "source": "cell", "id": "c4", "name": "contains", "target": "p1"},
        {"op": "createRelationship", "source": "cell", "id": "c5", "name": "contains", "target": "p2"},
    ]);
    let v = gql(
        s.addr,
        "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied lastSequence events { seq kind twins } } }",
        json!({"ops": ops}),
    )
    .await;
    assert_eq!(v["data"]["batch"]["applied"], 11, "{v}");
    assert_eq!(v["data"]["batch"]["lastSequence"], 11);
    let events = v["data"]["batch"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(events.len(), 11);
    assert_eq!(events[0]["kind"], "twinCreated");
    assert_eq!(events[10]["twins"], json!(["cell", "p2"]));

    // A batch that fails part-way writes nothing and names the operation.
    let v = gql(
        s.addr,
        "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }",
        json!({"ops": [
            {"op": "createTwin", "id": "p3", "model": m("Pump")},
            {"op": "patchDesired", "id": "ghost", "patch": {}},
        ]}),
    )
    .await;
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    assert_eq!(v["errors"][0]["extensions"]["operation"], 1);
    assert!(gql(s.addr, r#"{ twin(id: "p3") { id } }"#, json!({})).await["data"]["twin"].is_null());
    let v = gql(
        s.addr,
        "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }",
        json!({"ops": [{"op": "launchRocket"}]}),
    )
    .await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");

    let v = gql(
        s.addr,
        r#"mutation { createRelationship(source: "p1", name: "feeds", target: "p2", properties: {medium: "water"}) { id name version properties sourceTwin { id } targetTwin { id model } } }"#,
        json!({}),
    )
    .await;
    let rel = &v["data"]["createRelationship"];
    assert_eq!(rel["name"], "feeds", "{v}");
    assert_eq!(rel["properties"], json!({"medium": "water"}));
    assert_eq!(rel["targetTwin"], json!({"id": "p2", "model": m("Pump")}));
    let rel_id = rel["id"].as_str().expect("generated id").to_owned();
    let v = gql(
        s.addr,
        r#"mutation($id: ID!) { updateRelationship(source: "p1", id: $id, patch: {medium: "oil"}, ifVersion: 1) { version properties } }"#,
        json!({"id": rel_id}),
    )
    .await;
    assert_eq!(v["data"]["updateRelationship"]["version"], 2, "{v}");
    assert_eq!(
        v["data"]["updateRelationship"]["properties"]["medium"],
        "oil"
    );
    let v = gql(
        s.addr,
        r#"mutation { createRelationship(source: "p1", name: "feeds", target: "p2", properties: {medium: 3}) { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "VALIDATION_FAILED", "{v}");

    let v = gql(
        s.addr,
        r#"{ out: relationships(source: "p1") { nodes { name target } }
             in: relationships(target: "p2") { nodes { name source } }
             both: relationships(source: "cell", target: "p2") { nodes { id } }
             named: relationships(source: "cell", name: "contains", first: 1) { nodes { target } pageInfo { hasNextPage endCursor } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        v["data"]["out"]["nodes"],
        json!([{"name": "feeds", "target": "p2"}]),
        "{v}"
    );
    assert_eq!(
        v["data"]["in"]["nodes"],
        json!([{"name": "contains", "source": "cell"}, {"name": "feeds", "source": "p1"}])
    );
    assert_eq!(v["data"]["both"]["nodes"], json!([{"id": "c5"}]));
    assert_eq!(v["data"]["named"]["nodes"], json!([{"target": "p1"}]));
    assert_eq!(v["data"]["named"]["pageInfo"]["hasNextPage"], true);
    let v = gql(
        s.addr,
        r#"query($a: String) { relationships(source: "cell", name: "contains", after: $a) { nodes { target } pageInfo { hasNextPage } } }"#,
        json!({"a": v["data"]["named"]["pageInfo"]["endCursor"]}),
    )
    .await;
    assert_eq!(
        v["data"]["relationships"]["nodes"],
        json!([{"target": "p2"}]),
        "{v}"
    );
    assert_eq!(v["data"]["relationships"]["pageInfo"]["hasNextPage"], false);
    assert_eq!(
        code(&gql(s.addr, "{ relationships { nodes { id } } }", json!({})).await),
        "BAD_REQUEST"
    );

    let v = gql(
        s.addr,
        r#"{ traverse(from: "p2", direction: IN, relationships: ["contains"], maxDepth: 2) { depth twin { id } path hops { source name target } }
             ancestors(id: "p1") { id }
             descendants(id: "line") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        v["data"]["traverse"],
        json!([
            {"depth": 1, "twin": {"id": "cell"}, "path": ["p2", "cell"],
             "hops": [{"source": "cell", "name": "contains", "target": "p2"}]},
            {"depth": 2, "twin": {"id": "line"}, "path": ["p2", "cell", "line"], "hops": [
                {"source": "cell", "name": "contains", "target": "p2"},
                {"source": "line", "name": "contains", "target": "cell"}]},
        ]),
        "{v}"
    );
    assert_eq!(
        v["data"]["ancestors"],
        json!([{"id": "cell"}, {"id": "line"}, {"id": "area"}, {"id": "site"}])
    );
    assert_eq!(
        v["data"]["descendants"],
        json!([{"id": "cell"}, {"id": "p1"}, {"id": "p2"}])
    );

    let v = gql(
        s.addr,
        r#"mutation($id: ID!) { deleteRelationship(id: $id) }"#,
        json!({"id": rel_id}),
    )
    .await;
    assert_eq!(v["data"]["deleteRelationship"], true, "{v}");
    let v = gql(
        s.addr,
        r#"mutation($id: ID!) { deleteRelationship(id: $id) }"#,
        json!({"id": rel_id}),
    )
    .await;
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    let v = gql(
        s.addr,
        r#"{ history(id: "p1") { nodes { kind actor } pageInfo { hasNextPage } } }"#,
        json!({}),
    )
    .await;
    let kinds: Vec<&str> = v["data"]["history"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "twinCreated",
            "relationshipCreated",
            "relationshipCreated",
            "relationshipUpdated",
            "relationshipDeleted"
        ]
    );

    // The global log pages by cursor with nothing skipped or repeated.
    let q = "query($a: String) { events(first: 4, after: $a) { nodes { seq } pageInfo { hasNextPage endCursor } } }";
    let (mut seen, mut after) = (Vec::new(), Value::Null);
    loop {
        let v = gql(s.addr, q, json!({"a": after})).await;
        let page = &v["data"]["events"];
        seen.extend(
            page["nodes"]
                .as_array()
                .unwrap_or_else(|| panic!("{v}"))
                .iter()
                .filter_map(|e| e["seq"].as_u64()),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, (1..=14).collect::<Vec<u64>>());

    let v = gql(s.addr, "{ models { id ancestors displayName } }", json!({})).await;
    let pump = v["data"]["models"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .find(|x| x["id"] == m("Pump"))
        .cloned()
        .expect("Pump model listed");
    assert!(
        pump["ancestors"]
            .as_array()
            .is_some_and(|a| a.contains(&json!(m("Equipment")))),
        "{pump}"
    );
    // Events asked for through a fragment and an alias come too.
    let v = gql(
        s.addr,
        "mutation($ops: [JSON!]!) { batch(operations: $ops) { ...F } } \
         fragment F on BatchResult { applied done: events { kind } }",
        json!({"ops": [{"op": "patchDesired", "id": "p1", "patch": {}}]}),
    )
    .await;
    assert_eq!(
        v["data"]["batch"]["done"],
        json!([{"kind": "desiredPatched"}]),
        "{v}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn lists_filter_with_where_and_paginate_over_matches() {
    let s = start().await;
    for i in 0..30 {
        let v = gql(
            s.addr,
            &format!(
                r#"mutation {{ createTwin(id: "p{i:02}", model: "dtmi:twingraph:isa95:Pump;1", reported: {{flowRate: {i}.0}}) {{ id }} }}"#
            ),
            json!({}),
        )
        .await;
        assert!(v.get("errors").is_none(), "{v}");
    }
    let q = r#"query($w: JSON, $after: String) { twins(model: "dtmi:twingraph:isa95:Equipment;1", where: $w, first: 3, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }"#;
    let w = json!({"reported.flowRate": {"gte": 20}, "not": {"id": {"in": ["p21", "p22"]}}});
    let (mut ids, mut after) = (Vec::new(), Value::Null);
    loop {
        let v = gql(s.addr, q, json!({"w": w, "after": after})).await;
        let page = &v["data"]["twins"];
        ids.extend(
            page["nodes"]
                .as_array()
                .unwrap_or_else(|| panic!("{v}"))
                .iter()
                .filter_map(|n| n["id"].as_str().map(str::to_owned)),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(
        ids,
        ["p20", "p23", "p24", "p25", "p26", "p27", "p28", "p29"]
    );
    let v = gql(s.addr, q, json!({"w": {"reported.flowRate": {"near": 1}}})).await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown operator")),
        "{v}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn models_can_be_uploaded_but_never_changed() {
    let s = start().await;
    let smart = json!({
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:SmartPump;1",
        "@type": "Interface",
        "extends": "dtmi:twingraph:isa95:Pump;1",
        "contents": [{"@type": "Property", "name": "efficiency", "schema": "double"}]
    });
    let up = r#"mutation($m: [JSON!]!) { uploadModels(models: $m) { models sequence } }"#;
    let v = gql(s.addr, up, json!({"m": [smart]})).await;
    assert_eq!(
        v["data"]["uploadModels"]["models"],
        json!(["dtmi:example:SmartPump;1"]),
        "{v}"
    );
    // Usable at once, and polymorphic with what it extends.
    let v = gql(
        s.addr,
        r#"mutation { createTwin(id: "sp1", model: "dtmi:example:SmartPump;1", reported: {efficiency: 0.9, flowRate: 2.0}) { model } }"#,
        json!({}),
    )
    .await;
    assert!(v.get("errors").is_none(), "{v}");
    let v = gql(
        s.addr,
        r#"{ twins(model: "dtmi:twingraph:isa95:Pump;1") { nodes { id } } models { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["twins"]["nodes"], json!([{"id": "sp1"}]), "{v}");
    assert!(
        v["data"]["models"]
            .as_array()
            .is_some_and(|m| m.contains(&json!({"id": "dtmi:example:SmartPump;1"})))
    );
    let v = gql(
        s.addr,
        r#"{ events(after: "0") { nodes { kind } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        v["data"]["events"]["nodes"][0]["kind"], "modelsChanged",
        "{v}"
    );

    // Changing an existing model could break its twins: refused.
    let v = gql(s.addr, up, json!({"m": [smart]})).await;
    assert_eq!(code(&v), "VALIDATION_FAILED", "{v}");
    assert_eq!(v["errors"][0]["extensions"]["reason"], "model_exists");
    // Invalid DTDL: refused with the engine's diagnostics, nothing added.
    let bad = json!({
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:Broken;1",
        "@type": "Interface",
        "contents": [{"@type": "Property", "name": "x", "schema": "doubel"}]
    });
    let v = gql(s.addr, up, json!({"m": [bad]})).await;
    assert_eq!(code(&v), "VALIDATION_FAILED", "{v}");
    assert_eq!(
        v["errors"][0]["extensions"]["diagnostics"][0]["path"], "$.contents[0].schema",
        "{v}"
    );
    let v = gql(
        s.addr,
        r#"mutation { createTwin(id: "b1", model: "dtmi:example:Broken;1") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "MODEL_NOT_FOUND", "{v}");
    s.shutdown().await;
}

/// DTDL Interfaces are GraphQL types: a list of a base model answers typed
/// fragments on each subtype.
#[tokio::test]
async fn twins_are_typed_and_polymorphic() {
    let s = start().await;
    for (id, model, reported) in [
        ("m1", "Motor", json!({})),
        ("p1", "Pump", json!({"flowRate": 3.5})),
    ] {
        let v = gql(
            s.addr,
            &format!(r#"mutation($r: JSON) {{ createTwin(id: "{id}", model: "dtmi:twingraph:isa95:{model};1", reported: $r) {{ id }} }}"#),
            json!({"r": reported}),
        )
        .await;
        assert!(v.get("errors").is_none(), "{v}");
    }
    let v = gql(
        s.addr,
        r#"{ twins(model: "dtmi:twingraph:isa95:Equipment;1") { nodes { __typename id ... on Pump { flowRate } } }
             twin(id: "p1") { __typename ... on Equipment { id } ... on PumpTwin { flowRate version } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        v["data"]["twins"]["nodes"],
        json!([
            {"__typename": "MotorTwin", "id": "m1"},
            {"__typename": "PumpTwin", "id": "p1", "flowRate": 3.5},
        ]),
        "{v}"
    );
    assert_eq!(
        v["data"]["twin"],
        json!({"__typename": "PumpTwin", "id": "p1", "flowRate": 3.5, "version": 1})
    );
    // The DTMI is in the type's description.
    let v = gql(
        s.addr,
        r#"{ __type(name: "Pump") { kind description } object: __type(name: "PumpTwin") { interfaces { name } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["__type"]["kind"], "INTERFACE", "{v}");
    assert!(
        v["data"]["__type"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("dtmi:twingraph:isa95:Pump;1")),
        "{v}"
    );
    let implemented = v["data"]["object"]["interfaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for base in ["Twin", "Pump", "Equipment", "Asset"] {
        assert!(implemented.contains(&json!({"name": base})), "{base}: {v}");
    }
    s.shutdown().await;
}

/// A device whose clock runs years ahead is told so, on the generic and
/// the typed mutation, and its report is not taken.
#[tokio::test]
async fn reports_stamped_in_the_future_are_refused_over_graphql() {
    let s = start().await;
    let v = gql(
        s.addr,
        r#"mutation { createTwin(id: "p", model: "dtmi:twingraph:isa95:Pump;1") { id } }"#,
        json!({}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    for m in [
        r#"mutation { patchReported(id: "p", patch: {flowRate: 9}, sourceTime: "2030-01-01T00:00:00Z") { version } }"#,
        r#"mutation { updatePump(id: "p", reported: {flowRate: 9}, sourceTime: "2030-01-01T00:00:00Z") { version } }"#,
    ] {
        let v = gql(s.addr, m, json!({})).await;
        let e = &v["errors"][0];
        assert_eq!(e["extensions"]["code"], "VALIDATION_FAILED", "{v}");
        assert_eq!(e["extensions"]["reason"], "source_time_ahead", "{v}");
        let message = e["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("twin p: sourceTime is ") && message.contains("s ahead"),
            "{message}"
        );
    }
    let v = gql(
        s.addr,
        r#"{ twin(id: "p") { version reported } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["twin"]["version"], 1, "nothing written: {v}");
    // A report stamped now is taken.
    let now = chrono_now();
    let v = gql(
        s.addr,
        r#"mutation($t: DateTime) { patchReported(id: "p", patch: {flowRate: 3}, sourceTime: $t) { version } }"#,
        json!({ "t": now }),
    )
    .await;
    assert_eq!(v["data"]["patchReported"]["version"], 2, "{v}");
    s.shutdown().await;
}

/// The current time as RFC 3339 (UTC).
fn chrono_now() -> String {
    let micros = twingraph::twin::clock::Clock::now(&twingraph::twin::clock::SystemClock);
    twingraph::twin::format_time(micros)
}

/// Errors speak of what the client sent: a single mutation's error is
/// about the twin (no batch position the client never wrote), while the
/// `batch` mutation's names the operation; both are rows of the table.
#[tokio::test]
async fn error_messages_name_what_the_client_sent() {
    let s = start().await;
    let v = gql(
        s.addr,
        r#"mutation { createTwin(id: "p", model: "dtmi:twingraph:isa95:Pump;1") { id } }"#,
        json!({}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    let v = gql(
        s.addr,
        r#"mutation { patchReported(id: "p", patch: {flowRate: "fast"}) { id } }"#,
        json!({}),
    )
    .await;
    let e = &v["errors"][0];
    let message = e["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("twin p: flowRate: "), "{message}");
    assert_eq!(e["extensions"]["code"], "VALIDATION_FAILED", "{e}");
    assert_eq!(e["extensions"]["reason"], "validation_failed", "{e}");
    assert_eq!(e["extensions"]["path"], "flowRate", "{e}");
    assert!(e["extensions"]["operation"].is_null(), "{e}");
    let v = gql(
        s.addr,
        r#"mutation { updatePump(id: "p", desired: {flowSetpoint: 2}, reported: {flowRate: 1}, ifVersion: 7) { id } }"#,
        json!({}),
    )
    .await;
    let e = &v["errors"][0];
    assert_eq!(e["extensions"]["reason"], "version_conflict", "{e}");
    assert_eq!(e["extensions"]["currentVersion"], 1, "{e}");
    assert!(
        !e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("operation"),
        "{e}"
    );
    let v = gql(
        s.addr,
        "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }",
        json!({"ops": [
            {"op": "patchDesired", "id": "p", "patch": {"flowSetpoint": 1.0}},
            {"op": "patchReported", "id": "p", "patch": {"flowRate": "fast"}},
        ]}),
    )
    .await;
    let e = &v["errors"][0];
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("operation 1: twin p: flowRate: "),
        "{e}"
    );
    assert_eq!(e["extensions"]["operation"], 1, "{e}");
    s.shutdown().await;
}

/// A big upload (the Azure building ontology: 768 Interfaces, 4 MB) is
/// checked and compiled off the async workers: on a runtime of one thread,
/// other requests are answered while it runs.
#[tokio::test(flavor = "current_thread")]
async fn a_big_upload_does_not_hold_up_other_requests() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    let s = serve_bodies(
        store,
        graphql::schema::Limits::default(),
        None,
        server::HttpSettings::default(),
        16 << 20,
    )
    .await;
    let docs: Vec<Value> =
        walkdir::WalkDir::new(crate::support::corpus_dir().join("models/azure-building"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).expect("read");
                // Some of the ontology's files start with a byte-order mark.
                serde_json::from_str(text.trim_start_matches('\u{feff}')).expect("json")
            })
            .collect();
    assert!(docs.len() > 700, "{}", docs.len());
    // Pings from another thread, back to back, for as long as the upload
    // runs: none may wait long (on one runtime thread, work done on it
    // would hold every ping in flight until it ends).
    let addr = s.addr;
    let done = Arc::new(AtomicBool::new(false));
    let pinger = {
        let done = done.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mut latencies = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let started = std::time::Instant::now();
                let v = rt.block_on(gql(addr, "{ twins(first: 1) { nodes { id } } }", json!({})));
                assert!(v["errors"].is_null(), "{v}");
                latencies.push(started.elapsed());
            }
            latencies
        })
    };
    let started = std::time::Instant::now();
    let v = gql(
        addr,
        "mutation($m: [JSON!]!) { uploadModels(models: $m) { models } }",
        json!({"m": docs}),
    )
    .await;
    let took = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Release);
    // Joined off this thread: it serves the pinger's last request.
    let latencies = tokio::task::spawn_blocking(move || pinger.join().expect("pinger"))
        .await
        .expect("join");
    assert!(v["errors"].is_null(), "{v}");
    let worst = latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "upload {took:?}, {} pings, worst {worst:?}",
        latencies.len()
    );
    assert!(
        latencies.len() >= 10 && worst < took / 4,
        "a ping waited {worst:?} while the upload took {took:?} ({} pings)",
        latencies.len()
    );
    s.shutdown().await;
}
