//! Alarms and health benchmark (`cargo bench --bench health`), on the
//! embedded store in `target/bench-health`, over the demo plant:
//!
//! 1. Reported-state ingest from 64 writers (batches of 100 updates to the
//!    plant's machines) with 100 alarm rules active and with none (the
//!    alarm service running, as in a server), taking turns, each on a fresh
//!    store: the engine follows the log and never holds writers up, so the
//!    rates should be alike (target: within 15 %). A third run without the
//!    service shows what the service itself costs.
//! 2. A real server with the 100 rules and a `healthChanged(under: site0)`
//!    subscriber over WebSocket: a leaf pump's power crosses a limit
//!    (raise) and falls back (clear), one at a time; the time from sending
//!    the `patchReported` mutation to the site's health arriving at the
//!    subscriber (target: p99 ≤ 100 ms).
//!
//! 3. What a detector rule costs per report of its field on one twin, on a
//!    realistic signal (a slow cycle, drift, noise, a level shift): the
//!    anomaly rule (median absolute deviation, refitted every 16th of its
//!    window) and the change-point rule (Bayesian online change-point
//!    detection stepped once per report, starting afresh on the window
//!    every `window` reports), at a few windows;
//!    medians of five runs.
//!
//! `TWINGRAPH_BENCH_UPDATES` sets phase 1's updates (default 400,000),
//! `TWINGRAPH_BENCH_CHANGES` phase 2's changes (default 400); five runs
//! each way in phase 1, medians.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use twingraph::alarms::detect::Recent;
use twingraph::alarms::{Alarms, Options, RuleRequest};
use twingraph::demo::{DEFAULT_CELLS, PER_CELL_EQUIPMENT, eq_id, plant};
use twingraph::dtdl::{self, load};
use twingraph::graphql::{self, Shutdown, schema::Limits};
use twingraph::records::{Condition, Severity};
use twingraph::server::{self, AppState};
use twingraph::store::{GraphStore, StoreConfig, embedded};
use twingraph::twin::{Batch, Op};

// The allocator the server binary uses (src/main.rs), so the figures are
// the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn models() -> Arc<dtdl::ModelSet> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dtdl");
    let sources = load::read_paths(&[dir]).expect("sample models");
    Arc::new(
        dtdl::check(&sources, &dtdl::Options::default())
            .model
            .expect("valid"),
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fresh() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-health");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

fn m(n: &str) -> String {
    format!("dtmi:twingraph:isa95:{n};1")
}

/// 100 rules as a plant would have them: thresholds on every machine's
/// power and each kind's own signal (some with on-delays), run-state
/// faults, and stale data.
fn rules() -> Vec<(String, RuleRequest)> {
    let rule = |model: &str, condition: Condition, severity, on_delay_ms| RuleRequest {
        model: m(model),
        condition,
        severity,
        message: "{twin}: {field} {value} ({limit})".into(),
        on_delay_ms,
        off_delay_ms: 0,
        depth: None,
        description: None,
    };
    let mut out = Vec::new();
    for i in 0..40 {
        out.push((
            format!("power-{i}"),
            rule(
                "Equipment",
                Condition::Above {
                    field: "power".into(),
                    limit: 12.0 + f64::from(i),
                    deadband: 0.5,
                },
                Severity::ALL[i as usize % 4],
                if i % 2 == 0 { 0 } else { 10_000 },
            ),
        ));
    }
    for i in 0..20 {
        out.push((
            format!("flow-{i}"),
            rule(
                "Pump",
                Condition::Outside {
                    field: "flowRate".into(),
                    low: 1.0,
                    high: 30.0 + f64::from(i),
                    deadband: 0.5,
                },
                Severity::Medium,
                5_000,
            ),
        ));
    }
    for i in 0..20 {
        out.push((
            format!("vibration-{i}"),
            rule(
                "Motor",
                Condition::RateAbove {
                    field: "vibration".into(),
                    per_second: 100.0 + f64::from(i),
                },
                Severity::Low,
                0,
            ),
        ));
    }
    for (i, model) in ["Pump", "Motor", "Conveyor", "Robot", "Compressor"]
        .iter()
        .enumerate()
    {
        out.push((
            format!("fault-{i}"),
            rule(
                model,
                Condition::Equals {
                    field: "runState".into(),
                    value: json!("fault"),
                },
                Severity::Critical,
                0,
            ),
        ));
        out.push((
            format!("silent-{i}"),
            rule(
                model,
                Condition::Stale {
                    field: Some("power".into()),
                    seconds: 3600.0,
                },
                Severity::Low,
                0,
            ),
        ));
    }
    for i in 0..10 {
        out.push((
            format!("site-power-{i}"),
            rule(
                "Equipment",
                Condition::Below {
                    field: "power".into(),
                    limit: -1.0 - f64::from(i),
                    deadband: 0.0,
                },
                Severity::High,
                0,
            ),
        ));
    }
    assert_eq!(out.len(), 100);
    out
}

async fn open_plant() -> Arc<dyn GraphStore> {
    let store: Arc<dyn GraphStore> =
        Arc::new(embedded::open(&fresh(), models(), StoreConfig::default()).expect("open"));
    for b in plant(DEFAULT_CELLS).0 {
        store.apply(b, "demo").await.expect("demo batch");
    }
    store
}

async fn with_rules(store: &Arc<dyn GraphStore>, tick: Duration) -> Arc<Alarms> {
    let alarms = Alarms::start(
        store.clone(),
        Options {
            tick,
            ..Options::default()
        },
        std::future::pending(),
    )
    .await
    .expect("alarms");
    for (name, rule) in rules() {
        alarms
            .create_rule(&name, rule, "bench")
            .await
            .expect("rule");
    }
    alarms
}

/// How phase 1 runs.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    /// No alarm service at all.
    Bare,
    /// The alarm service, no rules (a server's baseline).
    NoRules,
    /// The alarm service with the 100 rules.
    Rules,
}

/// Phase 1: updates per second from 64 writers.
fn ingest(updates: usize, setup: Setup) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = open_plant().await;
        let alarms = match setup {
            Setup::Bare => None,
            Setup::NoRules => Some(
                Alarms::start(store.clone(), Options::default(), std::future::pending())
                    .await
                    .expect("alarms"),
            ),
            Setup::Rules => Some(with_rules(&store, Duration::from_secs(1)).await),
        };
        let per_writer = updates / 64;
        let t = Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for b in 0..per_writer / 100 {
                        let ops = (0..100)
                            .map(|i| {
                                let n = w * 7919 + b * 131 + i;
                                let cell = n % DEFAULT_CELLS;
                                let k = (n / DEFAULT_CELLS) % PER_CELL_EQUIPMENT;
                                Op::PatchReported {
                                    id: eq_id(cell, k),
                                    patch: json!({"power": 5.0 + (n % 10) as f64 / 2.0}),
                                    expected_version: None,
                                    source_time: None,
                                }
                            })
                            .collect();
                        store.apply(Batch { ops }, "writer").await.expect("ingest");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("writer");
        }
        let rate = (per_writer / 100 * 100 * 64) as f64 / t.elapsed().as_secs_f64();
        if let Some(a) = &alarms {
            if setup == Setup::Rules {
                let active = a.book().alarms().filter(|x| x.active).count();
                println!(
                    "  with rules: {active} alarms active after the ingest; the engine was busy {:.2} s ({:.2} µs per update)",
                    a.busy().as_secs_f64(),
                    a.busy().as_secs_f64() * 1e6 / updates as f64
                );
            }
            a.stop().await;
        }
        rate
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Phase 2: leaf changes to the site's `healthChanged` subscriber.
fn health_latency(changes: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = open_plant().await;
        let alarms = with_rules(&store, Duration::from_secs(1)).await;
        alarms
            .create_rule(
                "leaf-hot",
                RuleRequest {
                    model: m("Pump"),
                    condition: Condition::Above {
                        field: "bearingTemperature".into(),
                        limit: 90.0,
                        deadband: 0.0,
                    },
                    severity: Severity::High,
                    message: "{twin} bearing {value}".into(),
                    on_delay_ms: 0,
                    off_delay_ms: 0,
                    depth: None,
                    description: None,
                },
                "bench",
            )
            .await
            .expect("rule");
        let live = Shutdown::default();
        let metrics = Arc::new(twingraph::metrics::Metrics::default());
        let devices = twingraph::devices::Devices::start(store.clone(), Default::default())
            .await
            .expect("devices");
        let schema = graphql::build_served(
            store.clone(),
            Limits::default(),
            live.clone(),
            metrics.clone(),
            Arc::new(graphql::ModelLibrary::new(Vec::new(), None)),
            twingraph::rollout::Rollouts::start(store.clone())
                .await
                .expect("rollouts"),
            graphql::Served {
                devices,
                series: None,
                alarms: Some(alarms.clone()),
                lifecycle: None,
            },
        )
        .expect("schema");
        let app = server::app(AppState {
            store: store.clone(),
            schema,
            ready: Arc::new(AtomicBool::new(true)),
            max_body_bytes: 1024 * 1024,
            metrics,
            auth: None,
            http: server::HttpSettings::default(),
        });
        let listener = server::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(server::run(listener, app, std::future::pending()));

        let mut ws = subscribe(addr).await;
        // The subscription starts asynchronously: change a pump until the
        // site's health arrives, then measure one change at a time.
        let pump = |i: usize| eq_id(i % DEFAULT_CELLS, 0);
        let mut hot = false;
        loop {
            hot = !hot;
            report(addr, &pump(0), if hot { 95.0 } else { 40.0 }).await;
            if tokio::time::timeout(Duration::from_millis(500), site_health(&mut ws))
                .await
                .is_ok()
            {
                break;
            }
        }
        if hot {
            report(addr, &pump(0), 40.0).await;
            site_health(&mut ws).await;
        }
        let mut lat = Vec::with_capacity(changes);
        for i in 0..changes {
            let (p, temp) = (pump(i / 2 + 1), if i % 2 == 0 { 95.0 } else { 40.0 });
            let t = Instant::now();
            report(addr, &p, temp).await;
            site_health(&mut ws).await;
            lat.push(t.elapsed());
        }
        lat.sort();
        println!(
            "health: a leaf pump's alarm raised or cleared, to the site's healthChanged subscriber (WebSocket, {changes} changes, 101 rules): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&lat, 0.5).as_secs_f64() * 1000.0,
            percentile(&lat, 0.99).as_secs_f64() * 1000.0,
            lat[lat.len() - 1].as_secs_f64() * 1000.0,
        );
        live.trigger();
    });
}

async fn report(addr: SocketAddr, twin: &str, temp: f64) {
    let body = json!({
        "query": "mutation($t: ID!, $p: JSON!) { patchReported(id: $t, patch: $p) { version } }",
        "variables": {"t": twin, "p": {"bearingTemperature": temp}},
    })
    .to_string();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    assert!(
        out.starts_with(b"HTTP/1.1 200") && !out.windows(8).any(|w| w == b"\"errors\""),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn subscribe(addr: SocketAddr) -> Ws {
    let mut req = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let (mut ws, _) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("handshake");
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"type": "connection_init"})))
        .await
        .expect("init");
    ws.send(send(json!({"type": "subscribe", "id": "1", "payload": {
        "query": "subscription { healthChanged(under: \"site0\") { twinId seq health { status } } }"
    }})))
    .await
    .expect("subscribe");
    ws
}

/// Waits for the next health change of the site itself.
async fn site_health(ws: &mut Ws) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        if t.contains("\"next\"") && t.contains("\"twinId\":\"site0\"") {
            return;
        }
    }
    panic!("the subscription ended");
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let updates = env_usize("TWINGRAPH_BENCH_UPDATES", 400_000);
    let changes = env_usize("TWINGRAPH_BENCH_CHANGES", 400);
    println!(
        "ingest: {updates} reported updates from 64 writers on the demo plant ({DEFAULT_CELLS} cells), 100 alarm rules active or none, taking turns"
    );
    let (mut bare, mut without, mut with) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..5 {
        let a = ingest(updates, Setup::Bare);
        let b = ingest(updates, Setup::NoRules);
        let c = ingest(updates, Setup::Rules);
        println!(
            "  run {run}: no alarm service {a:.0}/s, service without rules {b:.0}/s, with 100 rules {c:.0}/s"
        );
        bare.push(a);
        without.push(b);
        with.push(c);
    }
    let (a, b, c) = (median(bare), median(without), median(with));
    println!(
        "ingest medians: no alarm service {a:.0}/s, without rules {b:.0}/s, with 100 rules {c:.0}/s: rules {:.2}x the run without (target ≥ 0.85x); the service itself {:.2}x none",
        c / b,
        b / a
    );
    health_latency(changes);
    detectors();
}

/// A realistic signal: a slow cycle, drift, noise (xorshift, roughly
/// normal) and a level shift of six noise deviations half way.
fn signal(n: usize) -> Vec<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|i| {
            let t = i as f64;
            let noise = (0..12).map(|_| uniform()).sum::<f64>() - 6.0;
            let shift = if i >= n / 2 { 2.4 } else { 0.0 };
            50.0 + 5.0 * (t / 600.0).sin() + t * 0.0005 + 0.4 * noise + shift
        })
        .collect()
}

/// Phase 3: microseconds per report of a detector rule's judgement.
fn detectors() {
    let values = signal(20_000);
    // Each judges a report as the engine does, keeping it in the window.
    let per_report = |judge: &dyn Fn(&mut Recent, i64, f64, usize) -> bool, window: usize| {
        let runs: Vec<f64> = (0..5)
            .map(|_| {
                let mut recent = Recent::default();
                let mut flagged = 0usize;
                let start = Instant::now();
                for (i, &v) in values.iter().enumerate() {
                    flagged += usize::from(judge(&mut recent, i as i64, v, window));
                }
                std::hint::black_box(flagged);
                start.elapsed().as_secs_f64() * 1e6 / values.len() as f64
            })
            .collect();
        median(runs)
    };
    for window in [100, 200, 500, 2_000] {
        let anomaly = per_report(
            &|r, at, v, w| {
                let outlying = r.anomaly(v, 0.5, w).is_some_and(|(o, _)| o);
                r.push(at, v, w, i64::MIN);
                outlying
            },
            window,
        );
        // The change-point rule judges the window with the value in it.
        let shift = per_report(
            &|r, at, v, w| {
                r.push(at, v, w, i64::MIN);
                r.shift(0.5, w).is_some_and(|(s, _)| s)
            },
            window,
        );
        println!(
            "detectors, window {window}: anomaly {anomaly:.2} µs per report, change point {shift:.2} µs per report"
        );
    }
}
