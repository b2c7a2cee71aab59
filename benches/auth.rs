//! What authorization costs: the point and 2-hop queries of the server
//! benchmark against two servers over one store (the demo plant, ~100,000
//! twins, embedded), one without authentication and one checking an HS256
//! bearer token scoped to `site0` (every queried twin is under it, so both
//! answer the same), measured in turns, side by side, in one run.
//!
//! `TWINGRAPH_BENCH_SECS` (default 3) per measurement, `TWINGRAPH_BENCH_CONNS`
//! (default 16) connections, `TWINGRAPH_BENCH_ROUNDS` (default 3) turns;
//! reports the median requests/s and p50 of each, and the ratios.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twingraph::auth::jwt::{Claims, SigningKey, mint};
use twingraph::auth::{JwtConfig, Verifier};
use twingraph::demo::{PER_CELL_EQUIPMENT, eq_id, plant};
use twingraph::graphql::{self, Shutdown, schema::Limits};
use twingraph::server::{self, AppState};
use twingraph::store::{GraphStore, StoreConfig, embedded};

#[path = "support/http.rs"]
mod http;
use http::{Conn, Outcome, drive, env_usize, models, post_as};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "bench-secret-bench-secret-bench-secret";

async fn serve(
    store: Arc<dyn GraphStore>,
    auth: Option<Arc<Verifier>>,
    live: Shutdown,
    rollouts: Arc<twingraph::rollout::Rollouts>,
) -> SocketAddr {
    let metrics = Arc::new(twingraph::metrics::Metrics::default());
    let schema = graphql::build(
        store.clone(),
        Limits::default(),
        live,
        metrics.clone(),
        Arc::new(graphql::ModelLibrary::new(Vec::new(), None)),
        rollouts,
    )
    .expect("schema");
    let app = server::app(AppState {
        store,
        schema,
        ready: Arc::new(AtomicBool::new(true)),
        max_body_bytes: 4 * 1024 * 1024,
        metrics,
        auth,
        http: server::HttpSettings::default(),
    });
    let listener = server::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(server::run(listener, app, std::future::pending()));
    addr
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let cells = env_usize("TWINGRAPH_BENCH_CELLS", 2000);
    let secs = env_usize("TWINGRAPH_BENCH_SECS", 3) as u64;
    let conns = env_usize("TWINGRAPH_BENCH_CONNS", 16);
    let rounds = env_usize("TWINGRAPH_BENCH_ROUNDS", 3);
    let dir = std::env::temp_dir().join(format!("twingraph-bench-auth-{}", std::process::id()));
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
        for b in batches {
            store.apply(b, "demo").await.expect("demo batch");
        }
        let live = Shutdown::default();
        let rollouts = twingraph::rollout::Rollouts::start(store.clone())
            .await
            .expect("rollouts");
        let config = JwtConfig {
            secret: Some(SECRET.into()),
            leeway_seconds: 30,
            roles_claim: "roles".into(),
            twins_claim: "twins".into(),
            ..JwtConfig::default()
        };
        let verifier = Arc::new(Verifier::new(config.clone()).expect("verifier"));
        let off = serve(store.clone(), None, live.clone(), rollouts.clone()).await;
        let on = serve(store.clone(), Some(verifier), live.clone(), rollouts.clone()).await;
        let token = mint(
            &SigningKey::Secret(SECRET.into()),
            &Claims {
                sub: "bench".into(),
                roles: vec!["viewer".into()],
                // TWINGRAPH_BENCH_SCOPE=none: an unscoped token (what the
                // token check alone costs).
                twins: match std::env::var("TWINGRAPH_BENCH_SCOPE").as_deref() {
                    Ok("none") => None,
                    _ => Some(vec!["site0".into()]),
                },
                ttl: Duration::from_secs(86_400),
                ..Claims::default()
            },
            &config,
        )
        .expect("token");

        // Cells under site0 (cell c is in line c/10, area c/40, site (c/40) % sites).
        let sites = (cells / 200).max(1);
        let in_site: Vec<usize> = (0..cells).filter(|c| (c / 40) % sites == 0).collect();
        let point_q = "query($id: ID!) { twin(id: $id) { id version reported } }";
        let two_hop_q = r#"query($id: ID!) { traverse(from: $id, relationships: ["contains", "feeds"], maxDepth: 2) { depth twin { id model } } }"#;
        let requests = |addr: SocketAddr, token: Option<&str>| {
            let point: Vec<Vec<u8>> = (0..1000)
                .map(|i| {
                    let cell = in_site[(i * 7919) % in_site.len()];
                    post_as(addr, token, point_q, json!({"id": eq_id(cell, i % PER_CELL_EQUIPMENT)}))
                })
                .collect();
            let two_hop: Vec<Vec<u8>> = (0..200)
                .map(|i| {
                    let cell = in_site[(i * 37) % in_site.len()];
                    post_as(addr, token, two_hop_q, json!({"id": format!("cell{cell}")}))
                })
                .collect();
            (Arc::new(point), Arc::new(two_hop))
        };
        let (point_off, hop_off) = requests(off, None);
        let (point_on, hop_on) = requests(on, Some(&token));
        // Both answer the same.
        for (a, b) in [(&point_off[3], &point_on[3]), (&hop_off[5], &hop_on[5])] {
            let mut c = Conn::open(off).await;
            c.call(a).await;
            let x: Value = serde_json::from_slice(&c.body).expect("json");
            let mut c = Conn::open(on).await;
            c.call(b).await;
            let y: Value = serde_json::from_slice(&c.body).expect("json");
            assert_eq!(x, y, "scoped and unscoped answers differ");
        }
        let hop_twins = {
            let mut c = Conn::open(on).await;
            c.call(&hop_on[0]).await;
            let v: Value = serde_json::from_slice(&c.body).expect("json");
            v["data"]["traverse"].as_array().map_or(0, Vec::len)
        };
        println!(
            "{twins} twins; scope site0 ({} cells); 2-hop returns {hop_twins} twins; {conns} connections, {secs} s each, {rounds} rounds",
            in_site.len()
        );
        let started = Instant::now();
        let mut results: Vec<(&str, Vec<Outcome>)> = vec![
            ("point, auth off", Vec::new()),
            ("point, auth on", Vec::new()),
            ("2-hop, auth off", Vec::new()),
            ("2-hop, auth on", Vec::new()),
        ];
        for _ in 0..rounds {
            results[0].1.push(drive("point off", off, point_off.clone(), conns, secs).await);
            results[1].1.push(drive("point on", on, point_on.clone(), conns, secs).await);
            results[2].1.push(drive("2-hop off", off, hop_off.clone(), conns, secs).await);
            results[3].1.push(drive("2-hop on", on, hop_on.clone(), conns, secs).await);
        }
        println!("{:<18} {:>12} {:>10} {:>10}", "scenario", "per second", "p50 ms", "p99 ms");
        let mut med = Vec::new();
        for (name, outs) in &results {
            let per_sec = median(outs.iter().map(|o| o.per_sec).collect());
            let p50 = median(outs.iter().map(|o| o.p50.as_secs_f64() * 1e3).collect());
            let p99 = median(outs.iter().map(|o| o.p99.as_secs_f64() * 1e3).collect());
            println!("{name:<18} {per_sec:>12.0} {p50:>10.3} {p99:>10.3}");
            med.push((per_sec, p50));
        }
        for (label, off, on) in [("point", med[0], med[1]), ("2-hop", med[2], med[3])] {
            println!(
                "{label}: auth costs {:+.1}% throughput, {:+.1}% p50 (target: at most 15%)",
                (off.0 / on.0 - 1.0) * 100.0,
                (on.1 / off.1 - 1.0) * 100.0
            );
        }
        println!("measured in {:.0} s", started.elapsed().as_secs_f64());
        live.trigger();
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
}
