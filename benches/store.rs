//! Twin store benchmark on a generated ISA-95 plant (sample models).
//!
//! `cargo bench --bench store` builds a plant of ~100,000 twins with ~5
//! relationships each in an embedded store (in `target/bench-store`), then
//! measures point reads, a 3-hop traversal, reported-state ingest from 64
//! concurrent writers (against redb alone doing the same batched writes, in
//! the same run), reading the event log back, one hot twin updated from
//! many writers, and startup of the resulting store (over a million
//! events). Figures are medians where repeated. `TWINGRAPH_BENCH_CELLS`
//! scales the plant (default 2,000 work cells ≈ 100,000 twins).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use twingraph::demo::{PER_CELL_EQUIPMENT, eq_id, plant};
use twingraph::dtdl::{self, Options, load};
use twingraph::store::{GraphStore, Store, StoreConfig, embedded};
use twingraph::twin::query::{Direction, Traversal};
use twingraph::twin::{Batch, Change, Op};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn models() -> Arc<dtdl::ModelSet> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dtdl");
    let sources = load::read_paths(&[dir]).expect("sample models");
    Arc::new(
        dtdl::check(&sources, &Options::default())
            .model
            .expect("valid"),
    )
}

/// The store's settings: the defaults, with `TWINGRAPH_BENCH_CACHE_MB` as
/// the storage cache when set (to compare cache sizes at one plant size).
fn config() -> StoreConfig {
    let mut c = StoreConfig::default();
    if let Some(mb) = std::env::var("TWINGRAPH_BENCH_CACHE_MB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        c.storage_cache_bytes = mb * 1024 * 1024;
    }
    c
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-store");
    if std::env::var("TWINGRAPH_BENCH_PHASE").as_deref() == Ok("startup") {
        startup_phase(&dir);
        return;
    }
    let cells: usize = std::env::var("TWINGRAPH_BENCH_CELLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let models = models();
    let (batches, twin_count) = plant(cells);
    let ops: usize = batches.iter().map(|b| b.ops.len()).sum();

    let store: Arc<Store> = Arc::new(embedded::open(&dir, models.clone(), config()).expect("open"));
    let t = Instant::now();
    rt.block_on(async {
        for b in batches {
            store.apply(b, "bench").await.expect("plant batch");
        }
    });
    let load = t.elapsed();
    println!(
        "plant: {twin_count} twins, {} relationships ({ops} ops) loaded in {:.1} s ({:.0} ops/s)",
        ops - twin_count,
        load.as_secs_f64(),
        ops as f64 / load.as_secs_f64()
    );

    // Point reads.
    let ids: Vec<String> = (0..10_000)
        .map(|i| eq_id((i * 7919) % cells, i % PER_CELL_EQUIPMENT))
        .collect();
    let mut samples = Vec::new();
    rt.block_on(async {
        for chunk in ids.chunks(1000) {
            let t = Instant::now();
            for id in chunk {
                std::hint::black_box(store.twin(id).await.expect("read").expect("exists"));
            }
            samples.push(t.elapsed() / 1000);
        }
    });
    println!(
        "point read: median {:.2} µs per twin",
        median(samples).as_secs_f64() * 1e6
    );

    // A 3-hop traversal.
    let traversal = Traversal {
        start: "cell10".into(),
        names: vec!["contains".into(), "feeds".into()],
        direction: Direction::Out,
        max_depth: 3,
    };
    let mut samples = Vec::new();
    let mut reached = 0;
    rt.block_on(async {
        for _ in 0..200 {
            let t = Instant::now();
            reached = store.traverse(&traversal).await.expect("traverse").len();
            samples.push(t.elapsed());
        }
    });
    println!(
        "3-hop traversal: {reached} twins, median {:.3} ms",
        median(samples).as_secs_f64() * 1e3
    );

    // Reported-state ingest: 64 writers, batches of 100 updates.
    let writers = 64;
    let per_batch = 100;
    let rounds = 100;
    let updates = writers * per_batch * rounds;
    let ingest = |store: &Arc<Store>, round: usize| {
        let t = Instant::now();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..writers {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for r in 0..rounds {
                        let ops = (0..per_batch)
                            .map(|i| {
                                let n = (w * rounds + r) * per_batch + i;
                                Op::PatchReported {
                                    id: eq_id((n * 31) % cells, 5 * ((n / 7) % 6)),
                                    patch: json!({"power": ((n + round) % 1000) as f64 / 10.0, "operatingHours": (n + round) as f64}),
                                    expected_version: None,
                                    source_time: None,
                                }
                            })
                            .collect();
                        store.apply(Batch { ops }, "ingest").await.expect("ingest batch");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("writer");
            }
        });
        t.elapsed()
    };
    let took = ingest(&store, 0);
    let ingest_rate = updates as f64 / took.as_secs_f64();
    println!(
        "ingest: {updates} validated, durable, evented reported updates from {writers} writers in {:.2} s = {:.0} updates/s",
        took.as_secs_f64(),
        ingest_rate
    );
    // Reading the log back (a subscriber catching up, `events(after:)`):
    // the last 200,000 events in pages of 1,000, decoded.
    let last = store.last_seq();
    let span = 200_000.min(last);
    let mut reads = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut seq = last - span;
        while seq < last {
            let page = rt.block_on(store.events_after(seq, 1000)).expect("events");
            seq = page.last().expect("a page").seq;
        }
        reads.push(t.elapsed());
    }
    let read = median(reads);
    println!(
        "log read: {span} events in pages of 1,000 in {:.2} s = {:.0} events/s (median of 3)",
        read.as_secs_f64(),
        span as f64 / read.as_secs_f64()
    );

    // The storage engine alone, same batched writes (same record sizes), same grouping.
    let sample_event = rt
        .block_on(store.events_after(store.last_seq() - 1, 1))
        .expect("events");
    let event_bytes = serde_json::to_vec(&sample_event[0]).expect("encode");
    let twin_bytes = serde_json::to_vec(
        &rt.block_on(store.twin(&eq_id(1, 5)))
            .expect("read")
            .expect("twin"),
    )
    .expect("encode");
    let raw_rate = raw_redb(
        &dir.join("raw.redb"),
        updates,
        writers * per_batch,
        &event_bytes,
        &twin_bytes,
    );
    println!(
        "redb alone, same batched writes: {raw_rate:.0} updates/s; twingraph reaches {:.0}% of it",
        100.0 * ingest_rate / raw_rate
    );

    // One hot twin, many writers.
    let hot = eq_id(3, 3);
    let hot_updates = 4000;
    let t = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..writers {
            let store = store.clone();
            let hot = hot.clone();
            tasks.push(tokio::spawn(async move {
                for k in 0..hot_updates / writers {
                    store
                        .apply(
                            Batch::one(Op::PatchReported {
                                id: hot.clone(),
                                patch: json!({"power": (w * 1000 + k) as f64}),
                                expected_version: None,
                                source_time: None,
                            }),
                            "hot",
                        )
                        .await
                        .expect("hot update");
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
    });
    let hot_time = t.elapsed();
    let history = rt
        .block_on(store.twin_events(&hot, None, None))
        .expect("history");
    let versions: Vec<u64> = history
        .iter()
        .filter_map(|e| match &e.change {
            Change::ReportedPatched { version, .. } => Some(*version),
            _ => None,
        })
        .collect();
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "hot twin updates are ordered"
    );
    println!(
        "hot twin: {hot_updates} ordered updates from {writers} writers in {:.2} s = {:.0} updates/s",
        hot_time.as_secs_f64(),
        hot_updates as f64 / hot_time.as_secs_f64()
    );

    // Startup of the resulting store, and its memory, in a fresh process.
    let events = store.last_seq();
    store.close();
    drop(store);
    drop(models);
    let out = std::process::Command::new(std::env::current_exe().expect("bench binary"))
        .env("TWINGRAPH_BENCH_PHASE", "startup")
        .env("TWINGRAPH_BENCH_EVENTS", events.to_string())
        .env("TWINGRAPH_BENCH_TWINS", twin_count.to_string())
        .output()
        .expect("startup phase");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The same ingest on the reopened store with the pumps' sort indexes
    // on both updated fields (made by a dashboard's ordered lists): what
    // keeping them costs writes. Last, so the figures above (startup
    // included) are of the same log as before.
    let store = Arc::new(embedded::open(&dir, self::models(), config()).expect("reopen"));
    for field in ["power", "operatingHours"] {
        rt.block_on(store.twins(&twingraph::store::TwinQuery {
            model: Some("dtmi:twingraph:isa95:Pump;1".into()),
            subtypes: true,
            order: vec![twingraph::twin::order::SortKey {
                path: vec!["reported".into(), field.into()],
                desc: true,
            }],
            limit: 1,
            ..Default::default()
        }))
        .expect("ordered list");
    }
    let indexed = ingest(&store, 1);
    let indexed_rate = updates as f64 / indexed.as_secs_f64();
    println!(
        "ingest with sort indexes on both updated fields: {indexed_rate:.0} updates/s ({:.2}x the rate without)",
        indexed_rate / ingest_rate
    );
    store.close();
}

/// Opens the benchmark's store in this (fresh) process: startup time and
/// the memory the loaded graph takes.
fn startup_phase(dir: &std::path::Path) {
    // TWINGRAPH_BENCH_LOG=info: the store's own account of its startup.
    if let Ok(filter) = std::env::var("TWINGRAPH_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let events: u64 = std::env::var("TWINGRAPH_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let twins: usize = std::env::var("TWINGRAPH_BENCH_TWINS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let models = models();
    let before = rss_kb();
    let t = Instant::now();
    let store = embedded::open(dir, models, config()).expect("reopen");
    let startup = t.elapsed();
    let after = rss_kb();
    assert_eq!(store.last_seq(), events);
    println!(
        "startup: {events} events, {twins} twins: {:.2} s",
        startup.as_secs_f64()
    );
    let grown = after.saturating_sub(before) as f64;
    let cache_kb = (config().storage_cache_bytes / 1024) as f64;
    println!(
        "memory after startup: {:.0} MB resident = {:.2} KB per twin (typical state, ~5 relationships each); \
         {:.2} KB per twin without the {:.0} MiB storage cache",
        grown / 1024.0,
        grown / twins as f64,
        (grown - cache_kb).max(0.0) / twins as f64,
        cache_kb / 1024.0
    );
}

/// redb alone: `total` updates in transactions of `group` updates, each
/// writing an event record, a twin record and an index entry, committed durably.
fn raw_redb(path: &std::path::Path, total: usize, group: usize, event: &[u8], twin: &[u8]) -> f64 {
    let events = redb::TableDefinition::<u64, &[u8]>::new("events");
    let twins = redb::TableDefinition::<&str, &[u8]>::new("twins");
    let index = redb::TableDefinition::<(&str, u64), ()>::new("twin_events");
    let _ = std::fs::remove_file(path);
    let db = redb::Database::create(path).expect("raw db");
    let t = Instant::now();
    let mut seq = 0u64;
    for g in 0..total.div_ceil(group) {
        let txn = db.begin_write().expect("txn");
        {
            let mut ev = txn.open_table(events).expect("events");
            let mut tw = txn.open_table(twins).expect("twins");
            let mut ix = txn.open_table(index).expect("index");
            for i in 0..group {
                seq += 1;
                let id = format!("c{}.e{}", (g * group + i) % 2000, i % 30);
                ev.insert(seq, event).expect("insert");
                tw.insert(id.as_str(), twin).expect("insert");
                ix.insert((id.as_str(), seq), ()).expect("insert");
            }
        }
        txn.commit().expect("commit");
    }
    total as f64 / t.elapsed().as_secs_f64()
}
