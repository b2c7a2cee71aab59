//! Benchmark of the Neo4j store (`cargo bench --bench neo4j`), against the
//! Bolt server the tests use (`TWINGRAPH_TEST_BOLT_URI`, else a local
//! ArcadeDB with its Bolt plugin, see `tests/bolt.rs`), on a new database
//! loaded with the demo plant (`TWINGRAPH_BENCH_CELLS` work cells, default
//! 2,000: about 100,000 twins).
//!
//! - `load`: the plant written through the store (2,000 operations per batch),
//!   then `TWINGRAPH_BENCH_SETTLE` seconds (default 0) left to the database;
//! - `2-hop`: the server bench's `traverse` query over GraphQL (the real
//!   server on 127.0.0.1, one keep-alive connection) against the statement
//!   the store sends for it (`bolt::reach_statement`) sent directly with
//!   neo4rs, the store's own call (`reach`) and the GraphQL query executed
//!   in the process (no HTTP), the four taking turns at going first on
//!   each start twin, `TWINGRAPH_BENCH_ROUNDS` times (default 300, the
//!   first 50 a warm-up); medians, and the ratio of the first two;
//! - `ingest`: reported-state updates through the GraphQL `batch` mutation
//!   (`TWINGRAPH_BENCH_BATCH` updates each, default 1,000, each to a
//!   different twin) from `TWINGRAPH_BENCH_CONNS` connections (default 4) for
//!   `TWINGRAPH_BENCH_SECS` (default 10 s): updates per second; after
//!   `TWINGRAPH_BENCH_INGEST_WARMUP` seconds (default 5) of the same on other
//!   twins, reported but not counted (a JVM database is still compiling its
//!   update paths then: ArcadeDB's C2 compiler thread took ~60 % of a core
//!   in the first seconds of ingest, `top -H`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use twingraph::demo::{PER_CELL_EQUIPMENT, eq_id, plant};
use twingraph::store::GraphStore;
use twingraph::store::StoreConfig;
use twingraph::store::bolt::BoltStore;

#[path = "support/http.rs"]
mod http;
use http::{Conn, env_usize, models, post};

#[allow(dead_code)] // the tests' helpers this benchmark does not use
#[path = "../tests/bolt.rs"]
mod bolt;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let cells = env_usize("TWINGRAPH_BENCH_CELLS", 2000);
    let secs = env_usize("TWINGRAPH_BENCH_SECS", 10) as u64;
    let conns = env_usize("TWINGRAPH_BENCH_CONNS", 4);
    let per_batch = env_usize("TWINGRAPH_BENCH_BATCH", 1000);
    let rounds = env_usize("TWINGRAPH_BENCH_ROUNDS", 300).max(51);
    let settle = env_usize("TWINGRAPH_BENCH_SETTLE", 0) as u64;
    let warm_up = env_usize("TWINGRAPH_BENCH_INGEST_WARMUP", 5) as u64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let config = bolt::fresh_database().await;
        let uri = config.uri.clone();
        let database = config.database.clone();
        let (user, password) = (config.user.clone(), config.password.clone());
        let store = BoltStore::connect(config, models(), StoreConfig::default())
            .await
            .expect("Neo4j store");
        let store: Arc<dyn GraphStore> = Arc::new(store);

        // Load: the plant's batches (2,000 operations each) in order, as
        // they depend on each other.
        let (batches, twins) = plant(cells);
        let t = Instant::now();
        for b in batches {
            store.apply(b, "demo").await.expect("demo batch");
        }
        let load = t.elapsed();
        println!(
            "load: {twins} twins in {:.1} s ({:.0} twins/s) into {uri}",
            load.as_secs_f64(),
            twins as f64 / load.as_secs_f64()
        );

        // A database that has just taken in a bulk load may still be
        // digesting it (ArcadeDB compacts its indexes in the background).
        if settle > 0 {
            println!("settling for {settle} s");
            tokio::time::sleep(Duration::from_secs(settle)).await;
        }

        // The real server over the store.
        let (addr, schema) = http::serve(store.clone()).await;

        // 2-hop: GraphQL against the same answer straight from Cypher.
        let mut direct = neo4rs::ConfigBuilder::default()
            .uri(uri.as_str())
            .user(user.as_str())
            .password(password.as_str());
        if let Some(db) = &database {
            direct = direct.db(db.as_str());
        }
        let direct = neo4rs::Graph::connect(direct.build().expect("config"))
            .await
            .expect("direct connection");
        let two_hop_q = r#"query($id: ID!) { traverse(from: $id, relationships: ["contains", "feeds"], maxDepth: 2) { depth twin { id model } } }"#;
        let mut c = Conn::open(addr).await;
        let mut times: [Vec<Duration>; 4] = Default::default();
        let mut sizes = (0, 0);
        for i in 0..rounds {
            let id = format!("cell{}", (i * 37) % cells);
            let traversal = twingraph::twin::query::Traversal {
                start: id.clone(),
                names: vec!["contains".into(), "feeds".into()],
                direction: twingraph::twin::query::Direction::Out,
                max_depth: 2,
            };
            // The very statement the store sends for it.
            let cypher = twingraph::store::bolt::reach_statement(&traversal);
            let req = post(addr, two_hop_q, json!({"id": id}));
            let (mut from_gql, mut from_cypher) = (Vec::new(), Vec::new());
            // Each round's first reader meets the twin's data cold: the
            // three take turns at being first.
            for k in 0..4 {
                let which = (i + k) % 4;
                let t = Instant::now();
                match which {
                    0 => {
                        c.send(&req).await;
                        let v: serde_json::Value =
                            serde_json::from_slice(&c.body).expect("json");
                        assert!(v.get("errors").is_none(), "{v}");
                        from_gql = v["data"]["traverse"]
                            .as_array()
                            .expect("hits")
                            .iter()
                            .map(|h| h["twin"]["id"].as_str().expect("id").to_owned())
                            .collect();
                    }
                    1 => {
                        let mut rows = direct
                            .execute(neo4rs::query(&cypher).param("start", id.as_str()))
                            .await
                            .expect("cypher");
                        while let Some(row) = rows.next().await.expect("row") {
                            let _: Option<String> = row.get("model").expect("model");
                            let _: Option<i64> = row.get("depth").expect("depth");
                            from_cypher.extend(row.get::<Option<String>>("id").expect("id"));
                        }
                    }
                    2 => {
                        // The store alone (the GraphQL layer adds the rest).
                        store.reach(&traversal).await.expect("store traversal");
                    }
                    _ => {
                        // GraphQL in the process, without HTTP.
                        let r = async_graphql::Request::new(two_hop_q)
                            .variables(async_graphql::Variables::from_json(json!({"id": id})));
                        let resp = async_graphql::Executor::execute(&schema, r).await;
                        assert!(resp.errors.is_empty(), "{:?}", resp.errors);
                        std::hint::black_box(serde_json::to_vec(&resp).expect("json"));
                    }
                }
                // The first 50 rounds warm up.
                if i >= 50 {
                    times[which].push(t.elapsed());
                }
            }
            from_gql.sort();
            from_cypher.sort();
            assert_eq!(from_gql, from_cypher, "GraphQL and Cypher reach the same twins");
            sizes = (from_gql.len(), from_cypher.len());
        }
        let [gql, cy, st, inproc] = times;
        let (g, d, sd, ip) = (median(gql), median(cy), median(st), median(inproc));
        println!(
            "2-hop ({} twins): GraphQL median {:.2} ms, direct Cypher median {:.2} ms, ratio {:.2}x (the store's traversal alone: {:.2} ms; GraphQL without HTTP: {:.2} ms)",
            sizes.0,
            g.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3,
            g.as_secs_f64() / d.as_secs_f64(),
            sd.as_secs_f64() * 1e3,
            ip.as_secs_f64() * 1e3,
        );

        // Ingest: reported state through `batch`, after a warm-up.
        if warm_up > 0 {
            let (n, t) = ingest(addr, conns, per_batch, cells, warm_up, 1).await;
            println!(
                "ingest warm-up (not counted): {n} reported updates in {:.1} s: {:.0} updates/s",
                t.as_secs_f64(),
                n as f64 / t.as_secs_f64()
            );
        }
        let (updates, elapsed) = ingest(addr, conns, per_batch, cells, secs, 2).await;
        println!(
            "ingest: {updates} reported updates in {:.1} s: {:.0} updates/s ({conns} connections, {per_batch} per batch)",
            elapsed.as_secs_f64(),
            updates as f64 / elapsed.as_secs_f64()
        );
    });
}

/// Reported-state updates through the `batch` mutation from `conns`
/// connections for `secs` seconds (`phase` picks which twins): how many,
/// in how long (batches under way at the deadline finish and count).
async fn ingest(
    addr: std::net::SocketAddr,
    conns: usize,
    per_batch: usize,
    cells: usize,
    secs: u64,
    phase: usize,
) -> (usize, Duration) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for k in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            let mut done = 0usize;
            let mut i = k * 7919 + phase * 1_000_003;
            while Instant::now() < deadline {
                let ops: Vec<serde_json::Value> = (0..per_batch)
                    .map(|j| {
                        i += 1;
                        json!({"op": "patchReported",
                               "id": eq_id((i * 31 + j) % cells, i % PER_CELL_EQUIPMENT),
                               "patch": {"power": (i % 1000) as f64 / 10.0}})
                    })
                    .collect();
                let req = post(
                    addr,
                    "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }",
                    json!({"ops": ops}),
                );
                c.call(&req).await;
                done += per_batch;
            }
            done
        }));
    }
    let mut updates = 0;
    for t in tasks {
        updates += t.await.expect("writer");
    }
    (updates, start.elapsed())
}
