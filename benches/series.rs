//! Time series benchmark (`cargo bench --bench series`), on the embedded
//! store in `target/bench-series`:
//!
//! 1. One day of 1-second data of one pump's flow rate (86,400 reported
//!    updates, a realistic signal: daily cycle, drift, noise at the
//!    instrument's 0.01 resolution): how fast the follower derives the
//!    series from the log, the bytes a stored point costs (and the ratio
//!    to 16 uncompressed), and the median time of the day's query
//!    downsampled to 1,440 one-minute means, and raw.
//! 2. Reported-state ingest from 64 writers (1,000 twins, batches of 100)
//!    with the series follower running and without, taking turns, each on
//!    a fresh store: writers never wait for series, so the rates should be
//!    alike.
//!
//! `TWINGRAPH_BENCH_UPDATES` sets phase 2's updates (default 400,000);
//! three runs each way, medians.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use twingraph::dtdl::{self, Options, load};
use twingraph::series::{Aggregate, Backend, Series, SeriesConfig, Window};
use twingraph::store::{GraphStore, Store, StoreConfig, embedded};
use twingraph::twin::{Batch, Op};

// The allocator the server binary uses (src/main.rs), so the figures are
// the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PUMP: &str = "dtmi:twingraph:isa95:Pump;1";
/// 2026-01-01T00:00:00Z.
const DAY0: i64 = 1_767_225_600_000_000;

fn models() -> Arc<dtdl::ModelSet> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dtdl");
    let sources = load::read_paths(&[dir]).expect("sample models");
    Arc::new(
        dtdl::check(&sources, &Options::default())
            .model
            .expect("valid"),
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn fresh(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

/// The flow rate at second `i` of the day, as a flow meter reports it.
fn flow(i: i64, noise: &mut impl FnMut() -> f64) -> f64 {
    let t = i as f64;
    let raw =
        42.0 + 3.0 * (t / 86_400.0 * std::f64::consts::TAU).sin() + t / 100_000.0 + 0.2 * noise();
    (raw * 100.0).round() / 100.0
}

fn xorshift() -> impl FnMut() -> f64 {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1000) as f64 / 1000.0 - 0.5
    }
}

fn reported(id: &str, value: f64, time: i64) -> Op {
    Op::PatchReported {
        id: id.to_owned(),
        patch: json!({ "flowRate": value }),
        expected_version: None,
        source_time: Some(time),
    }
}

/// Runs the follower until it has folded everything the store holds, then
/// writes its head; how long that took.
async fn catch_up(series: &Arc<Series>, store: &Arc<Store>) -> Duration {
    let t = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(series.clone().follow(
        store.clone() as Arc<dyn GraphStore>,
        async {
            let _ = stopped.await;
        },
    ));
    while series.seq() < store.last_seq() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(());
    follower.await.expect("follower");
    t.elapsed()
}

fn one_day(rt: &tokio::runtime::Runtime) {
    let dir = fresh("bench-series");
    let store = Arc::new(embedded::open(&dir, models(), StoreConfig::default()).expect("open"));
    let mut noise = xorshift();
    rt.block_on(async {
        store
            .apply(
                Batch::one(Op::CreateTwin {
                    id: "p".into(),
                    model: PUMP.into(),
                    reported: None,
                    desired: None,
                }),
                "bench",
            )
            .await
            .expect("create");
        for chunk in 0..86 {
            let ops = (0..1000)
                .map(|j| {
                    let i = chunk * 1000 + j;
                    // Reports jitter by a few milliseconds, as devices' do.
                    let jitter = (noise() * 8000.0) as i64;
                    reported("p", flow(i, &mut noise), DAY0 + i * 1_000_000 + jitter)
                })
                .collect();
            store.apply(Batch { ops }, "bench").await.expect("day");
        }
        let ops = (86_000..86_400)
            .map(|i| reported("p", flow(i, &mut noise), DAY0 + i * 1_000_000))
            .collect();
        store.apply(Batch { ops }, "bench").await.expect("day");
    });
    let series = Arc::new(
        Series::new(
            Backend::open(&dir).expect("series file"),
            SeriesConfig::default(),
        )
        .expect("series"),
    );
    let took = rt.block_on(catch_up(&series, &store));
    println!(
        "follower: 86,400 points derived from the log and written in {:.2} s ({:.0} points/s)",
        took.as_secs_f64(),
        86_400.0 / took.as_secs_f64()
    );
    let (blocks, bytes) = series.size().expect("size");
    let per_point = bytes as f64 / 86_400.0;
    println!(
        "stored: {blocks} blocks, {bytes} bytes = {per_point:.2} bytes per point (16 uncompressed: {:.1}x smaller)",
        16.0 / per_point
    );
    let day = |step: Option<i64>| Window {
        from: DAY0,
        to: DAY0 + 86_400_000_000,
        step,
        aggregate: Aggregate::Mean,
    };
    for (what, window, n) in [
        ("1,440 one-minute means", day(Some(60_000_000)), 1440),
        ("raw (86,400 points)", day(None), 86_400),
    ] {
        let mut samples = Vec::new();
        for _ in 0..31 {
            let t = Instant::now();
            let points = rt
                .block_on(series.points("p", "flowRate", window))
                .expect("query");
            samples.push(t.elapsed());
            assert_eq!(points.len(), n, "{what}");
        }
        println!(
            "a day's query, {what}: median {:.2} ms",
            median(samples).as_secs_f64() * 1000.0
        );
    }
    store.close();
}

/// Durable reported ingest from 64 writers on a fresh store, with or
/// without a series follower; updates per second.
fn ingest(rt: &tokio::runtime::Runtime, updates: usize, follow: bool) -> f64 {
    let dir = fresh("bench-series-ingest");
    let store = Arc::new(embedded::open(&dir, models(), StoreConfig::default()).expect("open"));
    const TWINS: usize = 1000;
    rt.block_on(async {
        let ops = (0..TWINS)
            .map(|i| Op::CreateTwin {
                id: format!("p{i}"),
                model: PUMP.into(),
                reported: None,
                desired: None,
            })
            .collect();
        store.apply(Batch { ops }, "bench").await.expect("twins");
    });
    let series = Arc::new(
        Series::new(
            Backend::open(&dir).expect("series file"),
            SeriesConfig::default(),
        )
        .expect("series"),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = follow.then(|| {
        rt.spawn(
            series
                .clone()
                .follow(store.clone() as Arc<dyn GraphStore>, async {
                    let _ = stopped.await;
                }),
        )
    });
    let per_writer = updates / 64;
    let t = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for b in 0..per_writer / 100 {
                        let ops = (0..100)
                            .map(|k| {
                                let n = (w * per_writer + b * 100 + k) as i64;
                                reported(
                                    &format!("p{}", n as usize % TWINS),
                                    n as f64 / 10.0,
                                    DAY0 + n * 1000,
                                )
                            })
                            .collect();
                        store.apply(Batch { ops }, "bench").await.expect("ingest");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("writer");
        }
    });
    let rate = (per_writer / 100 * 100 * 64) as f64 / t.elapsed().as_secs_f64();
    if follow {
        println!(
            "  the follower read {} of {} events back from the log",
            series.read_from_log(),
            store.last_seq()
        );
    }
    let _ = stop.send(());
    if let Some(f) = follower {
        rt.block_on(f).expect("follower");
    }
    store.close();
    rate
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    one_day(&rt);
    let updates: usize = std::env::var("TWINGRAPH_BENCH_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    let mut without = Vec::new();
    let mut with = Vec::new();
    for round in 0..6 {
        // Taking turns: the machine's drift falls on both.
        let follow = round % 2 == 1;
        let rate = ingest(&rt, updates, follow);
        println!(
            "ingest {} the series follower: {rate:.0} updates/s",
            if follow { "with" } else { "without" }
        );
        if follow {
            with.push(rate);
        } else {
            without.push(rate);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (with, without) = (median(&mut with), median(&mut without));
    println!(
        "ingest, medians of 3: {without:.0} updates/s without the follower, {with:.0} with: {:.2}x",
        with / without
    );
}
