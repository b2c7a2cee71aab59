//! Load benchmark of the GraphQL server: the demo plant (~100,000 twins) on
//! the embedded store, served on 127.0.0.1 by the real router, driven by
//! keep-alive HTTP/1.1 clients and WebSocket subscribers in the same process.
//!
//! Scenarios (each for `TWINGRAPH_BENCH_SECS`, default 5 s, with
//! `TWINGRAPH_BENCH_CONNS` connections, default 32):
//! - `static`: `GET /healthz`, the server's trivial response (the baseline);
//! - `point`: `twin(id)` of a random machine;
//! - `2-hop`: `traverse` two hops out of a work cell (about 100 twins);
//! - `list`: a filtered list: the first 100 running pumps above a power
//!   threshold (`pumps(where:)`, four thresholds in turn);
//! - `running` and `ordered`: the first 100 running pumps in id order, and
//!   the top 100 by power (`orderBy: [{power: DESC}]`), side by side: the
//!   cost of an order (the store's sort index against its id index);
//! - `count`: every pump counted by run state (`pumpsAggregate { groupBy }`),
//!   also timed one request at a time before the load;
//! - `fan-out`: a change delivered to `TWINGRAPH_BENCH_SUBSCRIBERS`
//!   (default 10,000) WebSocket subscribers; latency from the mutation to
//!   each delivery (wall clock, same machine); 5 changes half a second
//!   apart, medians of their p50/p99 reported (each round printed). The subscribers run in a
//!   second process (this binary, `TWINGRAPH_BENCH_PHASE=subscribers`), so
//!   each side needs one file descriptor per subscriber.
//!
//! Reports requests/s, p50 and p99 per scenario, and the GraphQL overhead
//! ratio (point query against the static response, same run).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use twingraph::demo::{PER_CELL_EQUIPMENT, eq_id, plant};
use twingraph::graphql::{self, Shutdown, schema::Limits};
use twingraph::server::{self, AppState};
use twingraph::store::{GraphStore, StoreConfig, embedded};

#[path = "support/http.rs"]
mod http;
use http::{Conn, Outcome, drive, env_usize, models, percentile, post};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Microseconds since the Unix epoch: comparable across the two processes.
fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One WebSocket subscriber: connects, subscribes to the target twin, and
/// reports when it sees the probe and when it sees the marked change.
async fn subscriber(
    addr: SocketAddr,
    ready: tokio::sync::mpsc::UnboundedSender<()>,
    got: tokio::sync::mpsc::UnboundedSender<(usize, u64)>,
) {
    // Small buffers, as the server's: tungstenite's 128 KiB defaults cost
    // gigabytes (and page faults) for 10,000 connections.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(0);
    // Thousands connect at once: a full accept queue resets some; retry.
    let mut attempt = 0u64;
    let mut ws = loop {
        let mut req = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        let connected = match TcpStream::connect(addr).await {
            Ok(tcp) => tokio_tungstenite::client_async_with_config(req, tcp, Some(config))
                .await
                .map(|(ws, _)| ws)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match connected {
            Ok(ws) => break ws,
            Err(e) if attempt >= 20 => {
                println!("fan-out: a subscriber cannot connect: {e}");
                return;
            }
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
        }
    };
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"type": "connection_init"})))
        .await
        .expect("init");
    ws.send(send(json!({"type": "subscribe", "id": "1", "payload": {
        "query": "subscription { twinChanged(id: \"fanout-target\") { sequence patch } }"
    }})))
    .await
    .expect("subscribe");
    let mut probed = false;
    let mut measured = 0;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        if !t.contains("\"next\"") {
            continue;
        }
        if let Some(at) = t.find("measure-") {
            let round: usize = t[at + 8..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(usize::MAX);
            let _ = got.send((round, wall_us()));
            measured += 1;
            if measured == ROUNDS {
                // Keep the socket open until the parent has measured everyone.
                let _ = ws.next().await;
                return;
            }
            continue;
        }
        if !probed {
            probed = true;
            let _ = ready.send(());
        }
    }
}

/// Changes measured in the fan-out scenario (medians over these are reported).
const ROUNDS: usize = 5;

/// The subscriber process (a second process: each side then needs only one
/// file descriptor per subscriber). Prints `ready` once every subscriber saw
/// a probe, then one line of delivery times of the measured change.
fn subscriber_process(addr: SocketAddr, n: usize) {
    // One thread: the load generator takes at most one of the two cores.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
        let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..n {
            tokio::spawn(subscriber(addr, ready_tx.clone(), got_tx.clone()));
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        drop((ready_tx, got_tx));
        for _ in 0..n {
            ready_rx.recv().await.expect("subscriber up");
        }
        println!("ready");
        let mut times: Vec<Vec<String>> = (0..ROUNDS).map(|_| Vec::with_capacity(n)).collect();
        let mut total = 0;
        while total < n * ROUNDS {
            match tokio::time::timeout(Duration::from_secs(30), got_rx.recv()).await {
                Ok(Some((round, t))) if round < ROUNDS => {
                    times[round].push(t.to_string());
                    total += 1;
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        for (round, t) in times.iter().enumerate() {
            println!("got {round} {}", t.join(" "));
        }
    });
    rt.shutdown_timeout(Duration::from_millis(100));
}

async fn fan_out(addr: SocketAddr, n: usize) -> Option<Outcome> {
    use std::io::BufRead;
    let exe = std::env::current_exe().expect("own path");
    let mut child = std::process::Command::new(exe)
        .env("TWINGRAPH_BENCH_PHASE", "subscribers")
        .env("TWINGRAPH_BENCH_ADDR", addr.to_string())
        .env("TWINGRAPH_BENCH_SUBSCRIBERS", n.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("subscriber process");
    let stdout = child.stdout.take().expect("stdout");
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut c = Conn::open(addr).await;
    let probe = post(
        addr,
        r#"mutation { patchReported(id: "fanout-target", patch: {manufacturer: "probe"}) { version } }"#,
        json!({}),
    );
    let wait = Instant::now();
    loop {
        c.call(&probe).await;
        match tokio::time::timeout(Duration::from_millis(250), line_rx.recv()).await {
            Ok(Some(l)) if l == "ready" => break,
            Ok(None) => {
                println!("fan-out: the subscriber process ended early");
                let _ = child.wait();
                return None;
            }
            _ if wait.elapsed() > Duration::from_secs(180) => {
                println!("fan-out: {n} subscribers did not come up in 180 s; skipping");
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            _ => {}
        }
    }
    println!(
        "fan-out: {n} subscribers up in {:.1} s",
        wait.elapsed().as_secs_f64()
    );
    // Rounds apart, so each change fans out alone; the subscriber process
    // prints the delivery times of every round once all are in.
    let mut sent = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let measure = post(
            addr,
            &format!(
                r#"mutation {{ patchReported(id: "fanout-target", patch: {{manufacturer: "measure-{round}"}}) {{ version }} }}"#
            ),
            json!({}),
        );
        sent.push(wall_us());
        c.call(&measure).await;
    }
    let mut rounds: Vec<Vec<Duration>> = Vec::new();
    while rounds.len() < ROUNDS {
        match line_rx.recv().await {
            Some(l) if l.starts_with("got") => {
                let mut parts = l.split_whitespace().skip(1);
                let round: usize = parts.next().and_then(|r| r.parse().ok()).unwrap_or(0);
                let t0 = sent.get(round).copied().unwrap_or(0);
                let mut lat: Vec<Duration> = parts
                    .filter_map(|t| t.parse::<u64>().ok())
                    .map(|t| Duration::from_micros(t.saturating_sub(t0)))
                    .collect();
                lat.sort();
                rounds.push(lat);
            }
            Some(_) => {}
            None => {
                let _ = child.wait();
                return None;
            }
        }
    }
    let _ = child.wait();
    for (i, lat) in rounds.iter().enumerate() {
        println!(
            "fan-out round {i}: {} of {n} subscribers got the change; p50 {:.1} ms, p99 {:.1} ms, last {:.1} ms",
            lat.len(),
            percentile(lat, 0.5).as_secs_f64() * 1e3,
            percentile(lat, 0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    if rounds.iter().any(|r| r.len() < n) {
        println!("fan-out: some subscribers missed a change");
        return None;
    }
    // Medians over the rounds.
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let p50 = median(rounds.iter().map(|r| percentile(r, 0.5)).collect());
    let p99 = median(rounds.iter().map(|r| percentile(r, 0.99)).collect());
    let last = median(
        rounds
            .iter()
            .map(|r| r.last().copied().unwrap_or_default())
            .collect(),
    );
    Some(Outcome {
        name: "fan-out",
        per_sec: n as f64 / last.as_secs_f64().max(1e-6),
        p50,
        p99,
        errors: 0,
    })
}

fn main() {
    if std::env::var("TWINGRAPH_BENCH_PHASE").as_deref() == Ok("subscribers") {
        let addr = std::env::var("TWINGRAPH_BENCH_ADDR")
            .expect("TWINGRAPH_BENCH_ADDR")
            .parse()
            .expect("address");
        subscriber_process(addr, env_usize("TWINGRAPH_BENCH_SUBSCRIBERS", 10_000));
        return;
    }
    let cells = env_usize("TWINGRAPH_BENCH_CELLS", 2000);
    let secs = env_usize("TWINGRAPH_BENCH_SECS", 5) as u64;
    let conns = env_usize("TWINGRAPH_BENCH_CONNS", 32);
    let subscribers = env_usize("TWINGRAPH_BENCH_SUBSCRIBERS", 10_000);
    let dir = std::env::temp_dir().join(format!("twingraph-bench-server-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store: Arc<dyn GraphStore> = Arc::new(
            embedded::open(&dir, models(), StoreConfig::default()).expect("open store"),
        );
        let (batches, twins) = plant(cells);
        let t = Instant::now();
        for b in batches {
            store.apply(b, "demo").await.expect("demo batch");
        }
        store
            .apply(
                twingraph::twin::Op::CreateTwin {
                    id: "fanout-target".into(),
                    model: "dtmi:twingraph:isa95:Pump;1".into(),
                    desired: None,
                    reported: None,
                }
                .into(),
                "bench",
            )
            .await
            .expect("target twin");
        println!(
            "demo plant: {twins} twins loaded in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let live = Shutdown::default();
        let metrics = Arc::new(twingraph::metrics::Metrics::default());
        let schema = graphql::build(store.clone(), Limits::default(), live.clone(),
            metrics.clone(),
            Arc::new(graphql::ModelLibrary::new(Vec::new(), None)),
            twingraph::rollout::Rollouts::start(store.clone()).await.expect("rollouts"),
        )
            .expect("schema");
        let app = server::app(AppState {
            store: store.clone(),
            schema,
            ready: Arc::new(AtomicBool::new(true)),
            max_body_bytes: 4 * 1024 * 1024,
            metrics,
            auth: None,
            http: server::HttpSettings::default(),
        });
        let listener = server::bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server::run(listener, app, async move {
            let _ = stopped.await;
        }));

        let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
        let point: Vec<Vec<u8>> = (0..1000)
            .map(|i| {
                post(
                    addr,
                    "query($id: ID!) { twin(id: $id) { id version reported } }",
                    json!({"id": eq_id((i * 7919) % cells, i % PER_CELL_EQUIPMENT)}),
                )
            })
            .collect();
        let two_hop_q = r#"query($id: ID!) { traverse(from: $id, relationships: ["contains", "feeds"], maxDepth: 2) { depth twin { id model } } }"#;
        let two_hop: Vec<Vec<u8>> = (0..200)
            .map(|i| post(addr, two_hop_q, json!({"id": format!("cell{}", (i * 37) % cells)})))
            .collect();
        {
            // How many twins the 2-hop query returns.
            let body = json!({"query": two_hop_q, "variables": {"id": "cell1"}}).to_string();
            let mut c = Conn::open(addr).await;
            c.call(&post(addr, two_hop_q, json!({"id": "cell1"}))).await;
            let v: Value = serde_json::from_slice(&c.body).expect("json");
            let n = v["data"]["traverse"].as_array().map_or(0, Vec::len);
            println!("2-hop query returns {n} twins ({} bytes asked)", body.len());
        }
        // A filtered list: running pumps above a power threshold (20 % to
        // 80 % of the pumps match), the first 100 in id order.
        let list: Vec<Vec<u8>> = [6.0, 7.0, 8.0, 9.0]
            .iter()
            .map(|min| {
                post(
                    addr,
                    r#"query($min: Float!) { pumps(where: {power: {gte: $min}, runState: {eq: running}}, first: 100) { nodes { id power flowRate } pageInfo { endCursor } } }"#,
                    json!({"min": min}),
                )
            })
            .collect();
        // The dashboard's question: the top 100 running pumps by power
        // (`ordered`), next to the same filter in id order (`running`).
        let running_q = r#"{ pumps(where: {runState: {eq: running}}, first: 100) { nodes { id power flowRate } pageInfo { endCursor } } }"#;
        let ordered_q = r#"{ pumps(where: {runState: {eq: running}}, orderBy: [{power: DESC}], first: 100) { nodes { id power flowRate } pageInfo { endCursor } } }"#;
        // A dashboard's count: every pump by run state.
        let count_q = r#"{ pumpsAggregate { count groupBy(field: runState) { key count } } }"#;
        let count = vec![post(addr, count_q, json!({}))];
        {
            // One at a time: the latency of the count itself.
            let mut c = Conn::open(addr).await;
            let mut lat = Vec::new();
            for _ in 0..50 {
                let t = Instant::now();
                c.call(&count[0]).await;
                lat.push(t.elapsed());
            }
            lat.sort();
            let v: Value = serde_json::from_slice(&c.body).expect("json");
            println!(
                "count of every pump by run state ({} pumps): median {:.2} ms one request at a time (50 requests)",
                v["data"]["pumpsAggregate"]["count"],
                percentile(&lat, 0.5).as_secs_f64() * 1e3
            );
        }
        {
            // Read in the store: one site's pumps by run state with their power.
            let q = r#"{ pumpsAggregate(under: "site1") { count power { avg max } groupBy(field: runState) { key count power { avg } } } }"#;
            let request = post(addr, q, json!({}));
            let mut c = Conn::open(addr).await;
            let mut lat = Vec::new();
            for _ in 0..50 {
                let t = Instant::now();
                c.call(&request).await;
                lat.push(t.elapsed());
            }
            lat.sort();
            let v: Value = serde_json::from_slice(&c.body).expect("json");
            let every = r#"{ pumpsAggregate { count power { avg max } groupBy(field: runState) { key count power { avg } } } }"#;
            let request = post(addr, every, json!({}));
            let mut all = Vec::new();
            for _ in 0..50 {
                let t = Instant::now();
                c.call(&request).await;
                all.push(t.elapsed());
            }
            all.sort();
            println!(
                "power of one site's pumps by run state ({} pumps): median {:.2} ms; of every pump: {:.2} ms (one request at a time, 50 each)",
                v["data"]["pumpsAggregate"]["count"],
                percentile(&lat, 0.5).as_secs_f64() * 1e3,
                percentile(&all, 0.5).as_secs_f64() * 1e3
            );
        }
        let running = vec![post(addr, running_q, json!({}))];
        let ordered = vec![post(addr, ordered_q, json!({}))];

        let mut outcomes = Vec::new();
        outcomes.push(drive("static", addr, Arc::new(vec![healthz]), conns, secs).await);
        outcomes.push(drive("point", addr, Arc::new(point), conns, secs).await);
        outcomes.push(drive("2-hop", addr, Arc::new(two_hop), conns, secs).await);
        outcomes.push(drive("list", addr, Arc::new(list), conns, secs).await);
        outcomes.push(drive("running", addr, Arc::new(running), conns, secs).await);
        outcomes.push(drive("ordered", addr, Arc::new(ordered), conns, secs).await);
        outcomes.push(drive("count", addr, Arc::new(count), conns, secs).await);
        if subscribers > 0
            && let Some(o) = fan_out(addr, subscribers).await
        {
            outcomes.push(o);
        }

        println!("\n{conns} connections, {secs} s per scenario, {twins} twins");
        println!("{:<10} {:>12} {:>10} {:>10}", "scenario", "per second", "p50 ms", "p99 ms");
        for o in &outcomes {
            println!(
                "{:<10} {:>12.0} {:>10.3} {:>10.3}",
                o.name,
                o.per_sec,
                o.p50.as_secs_f64() * 1e3,
                o.p99.as_secs_f64() * 1e3
            );
        }
        let (s, p) = (&outcomes[0], &outcomes[1]);
        println!(
            "GraphQL overhead (point query vs static response): {:.2}x the p50 latency, {:.2}x fewer requests/s",
            p.p50.as_secs_f64() / s.p50.as_secs_f64(),
            s.per_sec / p.per_sec
        );
        if let (Some(r), Some(o)) = (
            outcomes.iter().find(|o| o.name == "running"),
            outcomes.iter().find(|o| o.name == "ordered"),
        ) {
            println!(
                "orderBy cost (ordered vs running, same filter, first 100): {:.2}x the p50 latency, {:.2}x fewer requests/s",
                o.p50.as_secs_f64() / r.p50.as_secs_f64(),
                r.per_sec / o.per_sec
            );
        }
        live.trigger();
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
}
