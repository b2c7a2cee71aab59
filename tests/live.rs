//! Subscriptions end to end: a real server on 127.0.0.1:0, spoken to over
//! WebSocket in both protocols (`graphql-transport-ws` and the legacy
//! `graphql-ws`).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{WebSocketStream, client_async};

use twingraph::store::StoreConfig;

use super::backend::{start, start_with};
use crate::server::{code, gql};

const WAIT: Duration = Duration::from_secs(10);

/// A subscription client speaking one of the two protocols.
pub(crate) struct Client {
    ws: WebSocketStream<TcpStream>,
    legacy: bool,
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr, legacy: bool) -> Client {
        let mut c = Client::open(addr, legacy).await;
        c.send(json!({"type": "connection_init", "payload": {}}))
            .await;
        let ack = c.recv().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        c
    }

    /// A connection before `connection_init`.
    async fn open(addr: SocketAddr, legacy: bool) -> Client {
        let protocol = if legacy {
            "graphql-ws"
        } else {
            "graphql-transport-ws"
        };
        let mut req = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
        let tcp = TcpStream::connect(addr).await.expect("connect");
        // As browsers do: back-to-back small messages are not held back
        // (Nagle) until the server acknowledges the previous one.
        tcp.set_nodelay(true).expect("nodelay");
        let (ws, resp) = client_async(req, tcp).await.expect("websocket handshake");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(protocol)
        );
        Client { ws, legacy }
    }

    /// The close code and reason the server ends the connection with
    /// (protocol messages before it skipped).
    async fn closed(&mut self) -> (u16, String) {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the wait")
                .expect("stream open")
                .expect("frame");
            if let Message::Close(frame) = msg {
                let frame = frame.expect("a close frame with a code");
                return (frame.code.into(), frame.reason.to_string());
            }
        }
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// The next protocol message (pings answered, keep-alives skipped).
    async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message within the wait")
                .expect("stream open")
                .expect("frame");
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(&t).expect("json message");
            match v["type"].as_str() {
                Some("ka") => continue,
                Some("ping") => self.send(json!({"type": "pong"})).await,
                _ => return v,
            }
        }
    }

    pub(crate) async fn subscribe(&mut self, id: &str, query: &str) {
        let kind = if self.legacy { "start" } else { "subscribe" };
        self.send(json!({"type": kind, "id": id, "payload": {"query": query}}))
            .await;
    }

    /// The payload of the next result of subscription `id`.
    pub(crate) async fn next_data(&mut self, id: &str) -> Value {
        let v = self.recv().await;
        let kind = if self.legacy { "data" } else { "next" };
        assert_eq!(v["type"], kind, "{v}");
        assert_eq!(v["id"], id);
        v["payload"].clone()
    }
}

async fn mutate(addr: SocketAddr, q: &str) {
    let v = gql(addr, q, json!({})).await;
    assert!(v.get("errors").is_none(), "{q}: {v}");
}

fn pump(id: &str) -> String {
    format!(
        r#"mutation {{ createTwin(id: "{id}", model: "dtmi:twingraph:isa95:Pump;1") {{ id }} }}"#
    )
}

#[tokio::test]
async fn twin_changes_are_pushed_filtered_by_model_with_state_after() {
    let s = start().await;
    mutate(s.addr, &pump("p1")).await;
    mutate(
        s.addr,
        r#"mutation { createTwin(id: "site", model: "dtmi:twingraph:isa95:Site;1") { id } }"#,
    )
    .await;
    let mut c = Client::connect(s.addr, false).await;
    c.subscribe(
        "1",
        r#"subscription { twinChanged(model: "dtmi:twingraph:isa95:Equipment;1") { sequence kind twinId patch twin { id version reported } } }"#,
    )
    .await;
    // The subscription starts asynchronously: write until the first change arrives.
    let first = loop {
        mutate(
            s.addr,
            r#"mutation { patchReported(id: "p1", patch: {flowRate: 1.0}) { id } }"#,
        )
        .await;
        if let Ok(v) = tokio::time::timeout(Duration::from_millis(200), c.next_data("1")).await {
            break v;
        }
    };
    assert_eq!(
        first["data"]["twinChanged"]["kind"], "reportedPatched",
        "{first}"
    );
    let mut seq = first["data"]["twinChanged"]["sequence"]
        .as_u64()
        .expect("sequence");
    // Drain the changes from any retries that raced the first delivery.
    let (version, _) = {
        let v = gql(s.addr, r#"{ twin(id: "p1") { version } }"#, json!({})).await;
        (v["data"]["twin"]["version"].as_u64().expect("version"), ())
    };
    let mut seen_version = first["data"]["twinChanged"]["twin"]["version"]
        .as_u64()
        .expect("twin version");
    while seen_version < version {
        let v = c.next_data("1").await;
        seq = v["data"]["twinChanged"]["sequence"].as_u64().expect("seq");
        seen_version = v["data"]["twinChanged"]["twin"]["version"]
            .as_u64()
            .expect("twin version");
    }

    // The site is not Equipment: filtered out. The pump's changes arrive in order.
    mutate(
        s.addr,
        r#"mutation { patchDesired(id: "site", patch: {}) { id } }"#,
    )
    .await;
    mutate(
        s.addr,
        r#"mutation { patchReported(id: "p1", patch: {flowRate: 7.5}) { id } }"#,
    )
    .await;
    mutate(s.addr, &pump("p2")).await;
    mutate(s.addr, r#"mutation { deleteTwin(id: "p2") }"#).await;

    let v = c.next_data("1").await;
    let ch = &v["data"]["twinChanged"];
    assert_eq!(ch["sequence"].as_u64(), Some(seq + 2), "{v}");
    assert_eq!(ch["twinId"], "p1");
    assert_eq!(ch["patch"], json!({"reported": {"flowRate": 7.5}}));
    assert_eq!(ch["twin"]["reported"]["flowRate"], 7.5);
    let v = c.next_data("1").await;
    assert_eq!(v["data"]["twinChanged"]["kind"], "twinCreated", "{v}");
    assert_eq!(v["data"]["twinChanged"]["twin"]["version"], 1);
    let v = c.next_data("1").await;
    let ch = &v["data"]["twinChanged"];
    assert_eq!(ch["kind"], "twinDeleted", "{v}");
    assert_eq!(ch["twinId"], "p2");
    assert!(ch["twin"].is_null(), "no state after a delete: {v}");

    // Unsubscribing ends the stream; the connection stays usable.
    c.send(json!({"type": "complete", "id": "1"})).await;
    c.send(json!({"type": "ping"})).await;
    let mut v = c.recv().await;
    if v["type"] == "complete" {
        assert_eq!(v["id"], "1");
        v = c.recv().await;
    }
    assert_eq!(v["type"], "pong", "{v}");
    s.shutdown().await;
}

#[tokio::test]
async fn event_stream_resumes_after_disconnect_without_gap_or_duplicate() {
    for legacy in [false, true] {
        let s = start().await;
        for i in 0..5 {
            mutate(s.addr, &pump(&format!("p{i}"))).await;
        }
        let q =
            |after: u64| format!("subscription {{ events(after: {after}) {{ seq kind twins }} }}");
        let mut c = Client::connect(s.addr, legacy).await;
        c.subscribe("a", &q(2)).await;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(c.next_data("a").await["data"]["events"]["seq"].as_u64());
        }
        assert_eq!(
            got,
            [Some(3), Some(4), Some(5)],
            "replayed (legacy: {legacy})"
        );
        mutate(s.addr, &pump("live")).await;
        let v = c.next_data("a").await;
        assert_eq!(v["data"]["events"]["seq"], 6, "{v}");
        assert_eq!(v["data"]["events"]["twins"], json!(["live"]));

        // Disconnect; changes happen meanwhile; resume from the last seen.
        drop(c);
        for i in 0..3 {
            mutate(
                s.addr,
                &format!(
                    r#"mutation {{ patchReported(id: "p{i}", patch: {{flowRate: 2.0}}) {{ id }} }}"#
                ),
            )
            .await;
        }
        let mut c = Client::connect(s.addr, legacy).await;
        c.subscribe("b", &q(6)).await;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(c.next_data("b").await["data"]["events"]["seq"].as_u64());
        }
        mutate(s.addr, &pump("after")).await;
        got.push(c.next_data("b").await["data"]["events"]["seq"].as_u64());
        assert_eq!(
            got,
            [Some(7), Some(8), Some(9), Some(10)],
            "legacy: {legacy}"
        );

        // Filtered by kind.
        c.subscribe(
            "c",
            "subscription { events(after: 0, kinds: [\"reportedPatched\"]) { seq } }",
        )
        .await;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(c.next_data("c").await["data"]["events"]["seq"].as_u64());
        }
        assert_eq!(got, [Some(7), Some(8), Some(9)]);
        s.shutdown().await;
    }
}

#[tokio::test]
async fn subscription_errors_carry_codes() {
    let s = start().await;
    let mut c = Client::connect(s.addr, false).await;
    c.subscribe(
        "x",
        r#"subscription { twinChanged(model: "dtmi:nope:X;1") { sequence } }"#,
    )
    .await;
    // A resolver error arrives as a result with errors, then the stream completes.
    let v = c.next_data("x").await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "MODEL_NOT_FOUND",
        "{v}"
    );
    let v = c.recv().await;
    assert_eq!(
        (v["type"].as_str(), v["id"].as_str()),
        (Some("complete"), Some("x"))
    );
    c.subscribe("y", "subscription { events(after: 99) { seq } }")
        .await;
    let v = c.next_data("y").await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{v}");
    let v = c.recv().await;
    assert_eq!(
        (v["type"].as_str(), v["id"].as_str()),
        (Some("complete"), Some("y"))
    );
    // The alias limit holds for subscriptions too.
    let many: String = (0..201).map(|i| format!("a{i}: sequence ")).collect();
    c.subscribe(
        "z",
        &format!("subscription {{ twinChanged(id: \"p1\") {{ {many} }} }}"),
    )
    .await;
    let v = c.next_data("z").await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{v}");
    assert_eq!(
        v["errors"][0]["extensions"]["reason"], "too_many_aliases",
        "{v}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_where_to_resume() {
    let s = start_with(StoreConfig {
        live_buffer: 16,
        ..StoreConfig::default()
    })
    .await;
    mutate(s.addr, &pump("p1")).await;
    let mut c = Client::connect(s.addr, false).await;
    c.subscribe(
        "1",
        r#"subscription { twinChanged(id: "p1") { sequence } }"#,
    )
    .await;
    let patch = r#"mutation { patchReported(id: "p1", patch: {flowRate: 1.0}) { id } }"#;
    let mut last_delivered = loop {
        mutate(s.addr, patch).await;
        if let Ok(v) = tokio::time::timeout(Duration::from_millis(200), c.next_data("1")).await {
            break v["data"]["twinChanged"]["sequence"].as_u64().expect("seq");
        }
    };
    // Stop reading while far more changes are written than the buffer and
    // the socket can hold.
    let ops: Vec<Value> = (0..1000)
        .map(|i| json!({"op": "patchReported", "id": "p1", "patch": {"flowRate": f64::from(i)}}))
        .collect();
    for _ in 0..40 {
        let v = gql(
            s.addr,
            "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }",
            json!({"ops": ops}),
        )
        .await;
        assert_eq!(v["data"]["batch"]["applied"], 1000, "{v}");
    }
    let lag = loop {
        let v = c.next_data("1").await;
        if v.get("errors").is_some() {
            break v;
        }
        last_delivered = v["data"]["twinChanged"]["sequence"].as_u64().expect("seq");
    };
    assert_eq!(code(&lag), "SUBSCRIBER_LAGGED", "{lag}");
    assert_eq!(
        lag["errors"][0]["extensions"]["lastSequence"].as_u64(),
        Some(last_delivered),
        "{lag}"
    );
    let v = c.recv().await;
    assert_eq!(v["type"], "complete", "the lagging stream ends: {v}");
    // Resuming from there misses nothing.
    c.subscribe(
        "2",
        &format!("subscription {{ events(after: {last_delivered}) {{ seq }} }}"),
    )
    .await;
    let v = c.next_data("2").await;
    assert_eq!(
        v["data"]["events"]["seq"].as_u64(),
        Some(last_delivered + 1),
        "{v}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn shutdown_completes_open_subscriptions() {
    let s = start().await;
    mutate(s.addr, &pump("p1")).await;
    let mut c = Client::connect(s.addr, false).await;
    c.subscribe(
        "t",
        r#"subscription { twinChanged(id: "p1") { sequence } }"#,
    )
    .await;
    c.subscribe("e", "subscription { events(after: 0) { seq } }")
        .await;
    // Messages are handled in order: "t" is running once "e" delivers.
    assert_eq!(c.next_data("e").await["data"]["events"]["seq"], 1);
    s.live.trigger();
    let mut completed = Vec::new();
    for _ in 0..2 {
        let v = c.recv().await;
        assert_eq!(v["type"], "complete", "{v}");
        completed.push(v["id"].as_str().unwrap_or_default().to_owned());
    }
    completed.sort();
    assert_eq!(completed, ["e", "t"]);
    // Then the server says goodbye.
    assert_eq!(c.closed().await.0, 1001);
    s.shutdown().await;
}

/// The protocol's rules, with `graphql-transport-ws` close codes.
#[tokio::test]
async fn protocol_violations_close_the_connection_with_their_codes() {
    let s = start().await;
    // Subscribing before connection_init: 4401.
    let mut c = Client::open(s.addr, false).await;
    c.subscribe("1", r#"subscription { events { seq } }"#).await;
    assert_eq!(c.closed().await.0, 4401);
    // Not a protocol message: 4400.
    let mut c = Client::connect(s.addr, false).await;
    c.ws.send(Message::Text("{\"type\": \"launch\"}".into()))
        .await
        .expect("send");
    assert_eq!(c.closed().await.0, 4400);
    // A second connection_init: 4429.
    let mut c = Client::connect(s.addr, false).await;
    c.send(json!({"type": "connection_init"})).await;
    assert_eq!(c.closed().await.0, 4429);
    // A subscription id in use: 4409, with the id in the reason.
    let mut c = Client::connect(s.addr, false).await;
    c.subscribe("dup", r#"subscription { events { seq } }"#)
        .await;
    c.subscribe("dup", r#"subscription { events { seq } }"#)
        .await;
    let (code, reason) = c.closed().await;
    assert_eq!(code, 4409);
    assert!(reason.contains("dup"), "{reason}");
    // No protocol offered: refused before the upgrade.
    let req = format!("ws://{}/graphql/ws", s.addr)
        .into_client_request()
        .expect("request");
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    match client_async(req, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    s.shutdown().await;
}

#[tokio::test]
async fn pings_are_answered_and_legacy_stops_are_confirmed() {
    let s = start().await;
    let mut c = Client::connect(s.addr, false).await;
    c.send(json!({"type": "ping", "payload": {"at": 7}})).await;
    let v = c.recv().await;
    assert_eq!(v, json!({"type": "pong", "payload": {"at": 7}}));
    // graphql-transport-ws: the client's complete is not echoed.
    c.subscribe("1", r#"subscription { events { seq } }"#).await;
    c.send(json!({"type": "complete", "id": "1"})).await;
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.recv().await, json!({"type": "pong"}));

    let mut c = Client::connect(s.addr, true).await;
    c.subscribe("1", r#"subscription { events { seq } }"#).await;
    c.send(json!({"type": "stop", "id": "1"})).await;
    assert_eq!(c.recv().await, json!({"type": "complete", "id": "1"}));
    // A legacy start with an id in use replaces that operation.
    c.subscribe(
        "2",
        r#"subscription { twinChanged(id: "p1") { sequence } }"#,
    )
    .await;
    c.subscribe("2", r#"subscription { events { seq kind } }"#)
        .await;
    mutate(s.addr, &pump("p1")).await;
    let v = c.next_data("2").await;
    assert_eq!(v["data"]["events"]["kind"], "twinCreated", "{v}");
    c.send(json!({"type": "connection_terminate"})).await;
    s.shutdown().await;
}

/// `/metrics` counts requests, errors by code, operation latency, open
/// subscriptions and committed events.
#[tokio::test]
async fn metrics_are_exposed_for_prometheus() {
    let s = start().await;
    mutate(s.addr, &pump("p1")).await;
    let v = gql(
        s.addr,
        r#"{ twins(model: "dtmi:nope:X;1") { nodes { id } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "MODEL_NOT_FOUND");
    let mut c = Client::connect(s.addr, false).await;
    c.subscribe("e", "subscription { events(after: 0) { seq } }")
        .await;
    assert_eq!(c.next_data("e").await["data"]["events"]["seq"], 1);
    let (status, text) = crate::server::http(s.addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    // Read as a scraper reads it: the Prometheus client's strict parser.
    let samples = crate::support::openmetrics_samples(&text);
    let value = |sample: &str| -> f64 {
        samples
            .iter()
            .find(|(name, _)| name == sample)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {sample} in\n{text}"))
    };
    assert_eq!(value("twingraph_subscriptions_active"), 1.0);
    assert_eq!(value("twingraph_events_committed_total"), 1.0);
    assert_eq!(
        value(r#"twingraph_graphql_errors_total{code="MODEL_NOT_FOUND"}"#),
        1.0
    );
    assert!(
        value("twingraph_graphql_request_duration_seconds_count") >= 2.0,
        "{text}"
    );
    assert_eq!(
        value(r#"twingraph_http_requests_total{route="/graphql",status="200"}"#),
        2.0,
        "{text}"
    );
    drop(c);
    // The closed connection's subscription stops being counted.
    let mut active = 1.0;
    for _ in 0..100 {
        let (_, text) = crate::server::http(s.addr, "GET", "/metrics", None).await;
        active = text
            .lines()
            .find(|l| l.starts_with("twingraph_subscriptions_active"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(-1.0);
        if active == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(active, 0.0);
    s.shutdown().await;
}

/// A model upload swaps the schema; subscriptions opened on the old one keep
/// delivering, new requests see the new types.
#[tokio::test]
async fn subscriptions_survive_a_schema_swap() {
    let s = start().await;
    mutate(s.addr, &pump("p1")).await;
    let mut c = Client::connect(s.addr, false).await;
    c.subscribe("1", "subscription { events(after: 0) { seq kind twins } }")
        .await;
    let v = c.next_data("1").await;
    assert_eq!(v["data"]["events"]["kind"], "twinCreated", "{v}");
    let smart = json!({
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:SmartPump;1",
        "@type": "Interface",
        "extends": "dtmi:twingraph:isa95:Pump;1",
        "contents": [{"@type": "Property", "name": "efficiency", "schema": "double"}]
    });
    let v = gql(
        s.addr,
        r#"mutation($m: [JSON!]!) { uploadModels(models: $m) { models } }"#,
        json!({"m": [smart]}),
    )
    .await;
    assert!(v.get("errors").is_none(), "{v}");
    mutate(
        s.addr,
        r#"mutation { createSmartPump(id: "sp", reported: {efficiency: 0.7}) { efficiency } }"#,
    )
    .await;
    let v = c.next_data("1").await;
    assert_eq!(v["data"]["events"]["kind"], "modelsChanged", "{v}");
    let v = c.next_data("1").await;
    assert_eq!(v["data"]["events"]["kind"], "twinCreated", "{v}");
    assert_eq!(v["data"]["events"]["twins"], json!(["sp"]));
    s.shutdown().await;
}

async fn active_subscriptions(addr: SocketAddr) -> f64 {
    let (_, text) = crate::server::http(addr, "GET", "/metrics", None).await;
    text.lines()
        .find(|l| l.starts_with("twingraph_subscriptions_active"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1.0)
}

async fn wait_active(addr: SocketAddr, want: f64) {
    let mut active = -1.0;
    for _ in 0..200 {
        active = active_subscriptions(addr).await;
        if active == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{active} subscriptions active, expected {want}");
}

/// The next change of subscription `id` that set `flowRate` to `x`.
async fn until_flow(c: &mut Client, id: &str, x: f64) -> Value {
    loop {
        let v = c.next_data(id).await;
        if v["data"]["twinChanged"]["patch"]["reported"]["flowRate"] == x {
            return v;
        }
    }
}

/// Identical subscriptions share one execution: each subscriber still gets
/// every change, is counted, may leave alone, and a new one after everyone
/// left starts afresh.
#[tokio::test]
async fn identical_subscriptions_share_one_execution() {
    let s = start().await;
    mutate(s.addr, &pump("p1")).await;
    let q = r#"subscription { twinChanged(id: "p1") { sequence patch } }"#;
    let mut clients = Vec::new();
    for legacy in [false, true, false] {
        let mut c = Client::connect(s.addr, legacy).await;
        c.subscribe("s", q).await;
        clients.push(c);
    }
    // A different selection is a different execution.
    let mut other = Client::connect(s.addr, false).await;
    other
        .subscribe(
            "o",
            r#"subscription { twinChanged(id: "p1") { sequence kind } }"#,
        )
        .await;
    wait_active(s.addr, 4.0).await;
    let patch = |x: f64| {
        format!(r#"mutation {{ patchReported(id: "p1", patch: {{flowRate: {x:.1}}}) {{ id }} }}"#)
    };
    // Subscriptions start asynchronously: write until every one has seen a change.
    let mut live = [false; 4];
    while live.contains(&false) {
        mutate(s.addr, &patch(0.5)).await;
        for (i, c) in clients
            .iter_mut()
            .chain(std::iter::once(&mut other))
            .enumerate()
        {
            let id = if i == 3 { "o" } else { "s" };
            if !live[i]
                && tokio::time::timeout(Duration::from_millis(200), c.next_data(id))
                    .await
                    .is_ok()
            {
                live[i] = true;
            }
        }
    }
    mutate(s.addr, &patch(1.5)).await;
    let mut seqs = Vec::new();
    for c in &mut clients {
        let v = until_flow(c, "s", 1.5).await;
        seqs.push(v["data"]["twinChanged"]["sequence"].clone());
    }
    let v = loop {
        let v = other.next_data("o").await;
        if v["data"]["twinChanged"]["sequence"] == seqs[0] {
            break v;
        }
    };
    assert_eq!(v["data"]["twinChanged"]["kind"], "reportedPatched", "{v}");
    assert!(seqs.iter().all(|x| *x == seqs[0]), "{seqs:?}");

    // One leaves; the others go on.
    let mut gone = clients.remove(0);
    gone.send(json!({"type": "complete", "id": "s"})).await;
    wait_active(s.addr, 3.0).await;
    mutate(s.addr, &patch(2.5)).await;
    for c in &mut clients {
        let v = c.next_data("s").await;
        assert_eq!(
            v["data"]["twinChanged"]["patch"]["reported"]["flowRate"], 2.5,
            "{v}"
        );
    }
    // Everyone leaves; a newcomer gets a working subscription of its own.
    drop(clients);
    drop(other);
    drop(gone);
    wait_active(s.addr, 0.0).await;
    let mut late = Client::connect(s.addr, false).await;
    late.subscribe("s", q).await;
    wait_active(s.addr, 1.0).await;
    mutate(s.addr, &patch(3.5)).await;
    let v = late.next_data("s").await;
    assert_eq!(
        v["data"]["twinChanged"]["patch"]["reported"]["flowRate"], 3.5,
        "{v}"
    );
    s.shutdown().await;
}
