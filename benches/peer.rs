//! twingraph next to a peer, side by side (`cargo bench --bench peer`): the
//! demo plant (`TWINGRAPH_BENCH_CELLS` work cells, default 2,000: about
//! 100,000 twins) served by
//! - twingraph on the embedded store (in this process, as `serve` runs it),
//! - twingraph on Neo4j (the Bolt server the tests use: a local ArcadeDB
//!   unless `TWINGRAPH_TEST_BOLT_URI` names one; `TWINGRAPH_PEER_NEO4J=0`
//!   leaves it out, saying so),
//! - PostGraphile 4 over PostgreSQL 15 (`benches/peer/`: PostGraphile 5
//!   needs Node 22, this machine has Node 20), with the filter and
//!   aggregate plugins and the indexes `benches/peer/load.sql` creates,
//!   both installed, started and loaded by the benchmark itself;
//!
//! and the same questions asked through each system's own GraphQL API by
//! the same client (keep-alive HTTP/1.1, `TWINGRAPH_BENCH_CONNS`
//! connections, default 32, `TWINGRAPH_BENCH_SECS` per question and
//! system, default 5), the systems taking turns question by question:
//! - `point`: one pump by id;
//! - `2-hop`: what a work cell reaches over `contains` and `feeds` in two
//!   hops (twingraph: `traverse`, the distinct twins; PostGraphile: the
//!   nested relationship connections, the tree);
//! - `filtered`: the first 100 running pumps above a power threshold, by id;
//! - `ordered`: the top 100 running pumps by power;
//! - `count`: every pump counted by run state.
//!
//! Reports requests/s, p50, p99 and answers with errors (a system that
//! fails under the load says so instead of stopping the run) per question
//! and system, and the ratios of twingraph's figures to the peer's.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twingraph::demo::{PER_CELL_EQUIPMENT, eq_id, plant};
use twingraph::store::{GraphStore, StoreConfig, embedded};
use twingraph::twin::{Batch, Op};

#[path = "support/http.rs"]
mod http;
use http::{Conn, Outcome, drive_counting_errors, env_usize, models, post};

#[allow(dead_code)] // the tests' helpers this benchmark does not use
#[path = "../tests/bolt.rs"]
mod bolt;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PUMP: &str = "dtmi:twingraph:isa95:Pump;1";

/// The questions (name, GraphQL text) in one system's idiom.
type Questions = [(&'static str, &'static str); 5];

/// A system under test: its name, address and questions.
type System = (&'static str, SocketAddr, &'static Questions);

/// The questions, as twingraph is asked them (`$id`, `$min` variables).
const TWINGRAPH: Questions = [
    (
        "point",
        "query($id: ID!) { pump(id: $id) { id runState power flowRate } }",
    ),
    (
        "2-hop",
        r#"query($cell: ID!) { traverse(from: $cell, relationships: ["contains", "feeds"], maxDepth: 2) { depth twin { id model } } }"#,
    ),
    (
        "filtered",
        "query($min: Float!) { pumps(where: {power: {gte: $min}, runState: {eq: running}}, first: 100) { nodes { id power flowRate } } }",
    ),
    (
        "ordered",
        "{ pumps(where: {runState: {eq: running}}, orderBy: [{power: DESC}], first: 100) { nodes { id power flowRate } } }",
    ),
    (
        "count",
        "{ pumpsAggregate { groupBy(field: runState) { key count } } }",
    ),
];

/// The same questions as PostGraphile is asked them.
const PEER: Questions = [
    (
        "point",
        "query($id: String!) { pumpById(id: $id) { id runState power flowRate } }",
    ),
    (
        "2-hop",
        r#"query($cell: String!) { twinById(id: $cell) { id relationshipsBySource(filter: {name: {in: ["contains", "feeds"]}}) { nodes { twinByTarget { id model relationshipsBySource(filter: {name: {in: ["contains", "feeds"]}}) { nodes { twinByTarget { id model } } } } } } } }"#,
    ),
    (
        "filtered",
        r#"query($min: Float!) { allPumps(filter: {power: {greaterThanOrEqualTo: $min}, runState: {equalTo: "running"}}, orderBy: PRIMARY_KEY_ASC, first: 100) { nodes { id power flowRate } } }"#,
    ),
    (
        "ordered",
        r#"{ allPumps(filter: {runState: {equalTo: "running"}}, orderBy: [POWER_DESC, PRIMARY_KEY_ASC], first: 100) { nodes { id power flowRate } } }"#,
    ),
    (
        "count",
        "{ allPumps { groupedAggregates(groupBy: [RUN_STATE]) { keys distinctCount { id } } } }",
    ),
];

/// The requests of question `q` for a system, with varied arguments.
fn requests(addr: SocketAddr, q: &str, text: &str, cells: usize) -> Vec<Vec<u8>> {
    match q {
        "point" => (0..1000)
            .map(|i| {
                // Pumps are every fifth machine of a cell.
                let k = (i * 5) % PER_CELL_EQUIPMENT;
                post(addr, text, json!({"id": eq_id((i * 7919) % cells, k)}))
            })
            .collect(),
        "2-hop" => (0..100)
            .map(|i| {
                post(
                    addr,
                    text,
                    json!({"cell": format!("cell{}", (i * 37) % cells)}),
                )
            })
            .collect(),
        "filtered" => [6.0, 7.0, 8.0, 9.0]
            .iter()
            .map(|min| post(addr, text, json!({"min": min})))
            .collect(),
        _ => vec![post(addr, text, json!({}))],
    }
}

/// The plant as the peer's CSV files: twins, relationships, pumps.
fn write_csv(dir: &Path, batches: &[Batch]) {
    let file =
        |name: &str| std::io::BufWriter::new(std::fs::File::create(dir.join(name)).expect("csv"));
    let (mut twins, mut rels, mut pumps) =
        (file("twin.csv"), file("relationship.csv"), file("pump.csv"));
    let plain = |s: &str| {
        assert!(!s.contains([',', '"', '\n']), "{s}");
        s.to_owned()
    };
    let number = |v: Option<&Value>| {
        v.and_then(Value::as_f64)
            .map_or_else(String::new, |x| x.to_string())
    };
    for op in batches.iter().flat_map(|b| &b.ops) {
        match op {
            Op::CreateTwin {
                id,
                model,
                reported,
                desired,
            } => {
                writeln!(twins, "{},{}", plain(id), plain(model)).expect("write");
                if model == PUMP {
                    let r = reported.clone().unwrap_or_default();
                    let d = desired.clone().unwrap_or_default();
                    writeln!(
                        pumps,
                        "{},{},{},{},{}",
                        plain(id),
                        r["runState"].as_str().map(plain).unwrap_or_default(),
                        number(r.get("power")),
                        number(r.get("flowRate")),
                        number(d.get("flowSetpoint")),
                    )
                    .expect("write");
                }
            }
            Op::CreateRelationship {
                source,
                id,
                name,
                target,
                ..
            } => {
                let id = id.clone().unwrap_or_else(|| format!("{name}-{target}"));
                writeln!(
                    rels,
                    "{},{},{},{}",
                    plain(source),
                    plain(&id),
                    plain(name),
                    plain(target)
                )
                .expect("write");
            }
            _ => {}
        }
    }
    for mut f in [twins, rels, pumps] {
        f.flush().expect("flush");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn run(what: &str, cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The peer: PostgreSQL started and loaded, PostGraphile serving it.
struct Peer {
    dir: PathBuf,
    node: Child,
    addr: SocketAddr,
}

impl Peer {
    fn start(batches: &[Batch]) -> Peer {
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer");
        let dir = std::env::temp_dir().join(format!("twingraph-peer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let script = tools.join("postgres.sh");
        let pg_port = free_port().to_string();
        let t = Instant::now();
        run(
            "start PostgreSQL",
            Command::new("bash")
                .arg(&script)
                .args(["start"])
                .arg(&dir)
                .arg(&pg_port),
        );
        std::fs::copy(tools.join("load.sql"), dir.join("load.sql")).expect("load.sql");
        write_csv(&dir, batches);
        run(
            "load PostgreSQL",
            Command::new("bash")
                .arg(&script)
                .args(["load"])
                .arg(&dir)
                .arg(&pg_port),
        );
        println!(
            "peer: PostgreSQL 15 started and loaded in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        if !tools
            .join("node_modules/postgraphile/package.json")
            .is_file()
        {
            run(
                "npm ci in benches/peer (PostGraphile needs Node.js and npm)",
                Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                    .current_dir(&tools),
            );
        }
        let port = free_port();
        let mut node = Command::new("node")
            .arg(tools.join("server.cjs"))
            .arg(format!("postgres://postgres@127.0.0.1:{pg_port}/postgres"))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("PostGraphile needs Node.js (node)");
        let mut lines = BufReader::new(node.stdout.take().expect("stdout")).lines();
        match lines.next() {
            Some(Ok(l)) if l.contains("listening") => {}
            other => panic!("PostGraphile did not start: {other:?}"),
        }
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Peer {
            dir,
            node,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.node.kill();
        let _ = self.node.wait();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer/postgres.sh");
        let _ = Command::new("bash")
            .arg(script)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

async fn load(store: &Arc<dyn GraphStore>, batches: &[Batch], name: &str) {
    let t = Instant::now();
    for b in batches {
        store.apply(b.clone(), "demo").await.expect("demo batch");
    }
    println!("{name}: plant loaded in {:.1} s", t.elapsed().as_secs_f64());
}

/// One answer of each question from each system, printed in short, so a
/// reader sees they answer alike (and the run stops if one errs).
async fn show(systems: &[System], cells: usize) {
    for (i, (q, _)) in TWINGRAPH.iter().enumerate() {
        for (name, addr, texts) in systems {
            let r = &requests(*addr, q, texts[i].1, cells)[0];
            let mut c = Conn::open(*addr).await;
            c.call(r).await;
            let body = String::from_utf8_lossy(&c.body);
            let short: String = body.chars().take(160).collect();
            println!("  {q:<9} {name:<22} {} bytes: {short}…", body.len());
        }
    }
}

fn main() {
    let cells = env_usize("TWINGRAPH_BENCH_CELLS", 2000);
    let secs = env_usize("TWINGRAPH_BENCH_SECS", 5) as u64;
    let conns = env_usize("TWINGRAPH_BENCH_CONNS", 32);
    let with_neo4j = std::env::var("TWINGRAPH_PEER_NEO4J").as_deref() != Ok("0");
    let (batches, twins) = plant(cells);
    println!("demo plant: {twins} twins ({cells} work cells)");
    let peer = Peer::start(&batches);
    let dir = std::env::temp_dir().join(format!("twingraph-peer-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let embedded: Arc<dyn GraphStore> =
            Arc::new(embedded::open(&dir, models(), StoreConfig::default()).expect("open store"));
        load(&embedded, &batches, "twingraph (embedded)").await;
        let mut systems: Vec<System> = vec![(
            "twingraph (embedded)",
            http::serve(embedded).await.0,
            &TWINGRAPH,
        )];
        if with_neo4j {
            let config = bolt::fresh_database().await;
            let store: Arc<dyn GraphStore> = Arc::new(
                twingraph::store::bolt::BoltStore::connect(
                    config,
                    models(),
                    StoreConfig::default(),
                )
                .await
                .expect("Neo4j store"),
            );
            load(&store, &batches, "twingraph (Neo4j: ArcadeDB)").await;
            systems.push(("twingraph (Neo4j)", http::serve(store).await.0, &TWINGRAPH));
        } else {
            println!("twingraph on Neo4j left out (TWINGRAPH_PEER_NEO4J=0)");
        }
        systems.push(("PostGraphile 4 + PG 15", peer.addr, &PEER));
        println!("one answer of each:");
        show(&systems, cells).await;

        let mut rows: Vec<(&str, &str, Outcome)> = Vec::new();
        for (i, (q, _)) in TWINGRAPH.iter().enumerate() {
            for (name, addr, texts) in &systems {
                let reqs = Arc::new(requests(*addr, q, texts[i].1, cells));
                let o = drive_counting_errors(q, *addr, reqs, conns, secs).await;
                rows.push((q, name, o));
            }
        }
        println!("\n{conns} connections, {secs} s per question and system, {twins} twins");
        println!(
            "{:<9} {:<22} {:>11} {:>9} {:>9} {:>7}",
            "question", "system", "per second", "p50 ms", "p99 ms", "errors"
        );
        for (q, name, o) in &rows {
            println!(
                "{q:<9} {name:<22} {:>11.0} {:>9.3} {:>9.3} {:>7}",
                o.per_sec,
                o.p50.as_secs_f64() * 1e3,
                o.p99.as_secs_f64() * 1e3,
                o.errors
            );
        }
        println!("\nratios to the peer (requests/s: higher is better; p50: lower is better)");
        for (q, _) in TWINGRAPH {
            let peer = rows
                .iter()
                .find(|(x, n, _)| *x == q && n.starts_with("PostGraphile"));
            for (x, name, o) in rows
                .iter()
                .filter(|(x, n, _)| *x == q && n.starts_with("twingraph"))
            {
                if let Some((_, _, p)) = peer {
                    println!(
                        "{x:<9} {name:<22} {:>6.2}x the requests/s, {:>6.2}x the p50",
                        o.per_sec / p.per_sec,
                        o.p50.as_secs_f64() / p.p50.as_secs_f64()
                    );
                }
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(peer);
    let _ = std::fs::remove_dir_all(&dir);
}
