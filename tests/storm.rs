//! Storms of heavy requests abandoned at varied moments (clients gone, as
//! browsers, proxies and client timeouts leave them), then hundreds of
//! ordinary requests from several connections: every answer is the
//! request's own and correct, and the server is ready again within a
//! second. On the embedded store and on the Neo4j store (ArcadeDB here),
//! through the real server over the demo plant.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use twingraph::store::{GraphStore, StoreConfig};

use crate::server::{gql, http};
use crate::support::sample_models;

/// Work cells of the plant (49 assets each, with the hierarchy above).
const CELLS: usize = 40;

/// Requests that make the store work: a traversal of the whole plant, an
/// ordered and filtered list, a large page with its total, a grouped
/// aggregation.
const HEAVY: [&str; 4] = [
    r#"{ traverse(from: "enterprise", maxDepth: 8) { depth twin { id } } }"#,
    r#"{ pumps(where: {runState: {eq: running}}, orderBy: [{power: DESC}], first: 200) { totalCount nodes { id power } } }"#,
    r#"{ twins(first: 1000) { totalCount nodes { id version reported } } }"#,
    r#"{ pumpsAggregate { count power { avg max } groupBy(field: runState) { key count power { avg max } } } }"#,
];

/// The plant on `store`.
async fn plant(store: &dyn GraphStore) {
    let (batches, _) = twingraph::demo::plant(CELLS);
    for b in batches {
        store.apply(b, "setup").await.expect("plant");
    }
}

/// Sends `query` and leaves before the answer: after `wait`, the client
/// closes its connection.
async fn abandon(addr: SocketAddr, query: &str, wait: Duration) {
    let body = json!({ "query": query }).to_string();
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let req = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(req.as_bytes()).await;
    tokio::time::sleep(wait).await;
    drop(s);
}

/// How long each heavy request takes, answered (for the log: the storm
/// leaves at moments within these).
async fn heavy_times(addr: SocketAddr) -> Vec<Duration> {
    let mut times = Vec::new();
    for q in HEAVY {
        let t = Instant::now();
        let v = gql(addr, q, json!({})).await;
        assert!(v["errors"].is_null(), "{q}: {v}");
        times.push(t.elapsed());
    }
    times
}

/// The storm: `clients` connections in turn send heavy requests and leave
/// each after 0 to 1.5 times what it takes answered.
async fn storm(addr: SocketAddr, clients: usize, each: usize, times: &[Duration]) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let times = times.to_vec();
        tasks.push(tokio::spawn(async move {
            for j in 0..each {
                let i = c * each + j;
                let k = i % HEAVY.len();
                // Varied moments: 0 %, 7 %, 14 %, ... 147 % of its time.
                let wait = times[k].mul_f64(((i * 7) % 150) as f64 / 100.0);
                abandon(addr, HEAVY[k], wait).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("storm client");
    }
}

/// Power a demo machine reports (as `twingraph::demo` makes it).
fn power(cell: usize, k: usize) -> f64 {
    5.0 + ((cell * 7 + k * 3) % 10) as f64 / 2.0
}

/// Waits for `/readyz` to say ready; how long that took.
async fn ready_after(addr: SocketAddr) -> Duration {
    let t = Instant::now();
    loop {
        let (status, _) = http(addr, "GET", "/readyz", None).await;
        if status == 200 {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "/readyz stayed {status}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `per` ordinary lookups from each of `connections` clients: each answer
/// is the twin asked for, with its own state.
async fn ordinary(addr: SocketAddr, connections: usize, per: usize) {
    let mut tasks = Vec::new();
    for c in 0..connections {
        tasks.push(tokio::spawn(async move {
            for j in 0..per {
                let (cell, k) = ((c * 31 + j * 7) % CELLS, (c + j) % 30);
                let id = twingraph::demo::eq_id(cell, k);
                let v = gql(
                    addr,
                    r#"query($id: ID!) { twin(id: $id) { id reported } }"#,
                    json!({ "id": id }),
                )
                .await;
                assert!(v["errors"].is_null(), "{id}: {v}");
                assert_eq!(v["data"]["twin"]["id"], Value::from(id.as_str()), "{v}");
                assert_eq!(
                    v["data"]["twin"]["reported"]["power"],
                    json!(power(cell, k)),
                    "{id}: {v}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("an ordinary client");
    }
}

/// The storm and what must hold after it, on the server at `addr`.
async fn storm_then_ordinary(addr: SocketAddr) {
    let times = heavy_times(addr).await;
    eprintln!("heavy requests answered in {times:?}");
    storm(addr, 8, 12, &times).await;
    let ready = ready_after(addr).await;
    assert!(
        ready <= Duration::from_secs(1),
        "ready {ready:?} after the storm"
    );
    ordinary(addr, 6, 50).await;
    // And once more, heavy requests answered whole.
    heavy_times(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_abandoned_requests_on_the_embedded_store() {
    let dir = crate::support::scratch_dir("storm");
    let store: Arc<dyn GraphStore> = Arc::new(
        twingraph::store::embedded::open(&dir, sample_models(), StoreConfig::default())
            .expect("store"),
    );
    plant(&*store).await;
    let s = crate::server::start_on(store).await;
    storm_then_ordinary(s.addr).await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_abandoned_requests_on_the_neo4j_store() {
    let store = Arc::new(crate::bolt::store(sample_models(), StoreConfig::default()).await);
    plant(&*store).await;
    let s = crate::server::start_on(store.clone()).await;
    storm_then_ordinary(s.addr).await;
    let c = store.connections();
    eprintln!("connections after the storm: {c:?}");
    assert!(
        c.reads.abandoned > 0,
        "the storm left no statement behind: it tested nothing ({c:?})"
    );
    // The same counts, for Prometheus.
    let (status, text) = http(s.addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let value = |sample: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {sample} in\n{text}"))
    };
    let c = store.connections();
    assert_eq!(
        value(r#"twingraph_store_connections_dropped_total{kind="reads"}"#),
        c.reads.dropped
    );
    assert_eq!(
        value(r#"twingraph_store_connections{kind="reads",state="size"}"#),
        16
    );
    assert_eq!(
        value(r#"twingraph_store_connections_opened_total{kind="tailer"}"#),
        c.tailer.opened
    );
    assert_eq!(
        value(r#"twingraph_store_statements_abandoned_total{kind="reads"}"#),
        c.reads.abandoned
    );
    s.shutdown().await;
}
