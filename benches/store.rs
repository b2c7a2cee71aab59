//! Twin store benchmark on a generated ISA-95 plant (sample models).
//!
//! `cargo bench --bench store` builds a plant of ~100,000 twins with ~5
//! relationships each in an embedded store (in `target/bench-store`), then
//! measures point reads, a 3-hop traversal, reported-state ingest from 64
//! concurrent writers (against redb alone doing the same batched writes, in
//! the same run), an aggregate over every pump (per pump), reading the
//! event log back, one hot twin updated from
//! many writers, and startup of the resulting store (over a million
//! events), then a crash: the same writers on the reopened store, killed
//! with SIGKILL mid-ingest, and every acknowledged write checked after
//! recovery. Figures are medians where repeated. `TWINGRAPH_BENCH_CELLS`
//! scales the plant (default 2,000 work cells ≈ 100,000 twins); a list
//! (`2000,20000`: 100,000 and 1,000,000 twins) runs each size in turn, in
//! its own process, and ends with the table of both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use twingraph::demo::{PER_CELL_EQUIPMENT, eq_id, plant};
use twingraph::dtdl::{self, Options, load};
use twingraph::store::{AggregateQuery, GraphStore, Store, StoreConfig, embedded};
use twingraph::twin::aggregate::Measures;
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

/// A figure of one run, as `name=value` on a `figure:` line (read by
/// the process that runs several sizes).
fn figure(name: &str, value: f64) {
    println!("figure: {name}={value}");
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-store");
    match std::env::var("TWINGRAPH_BENCH_PHASE").as_deref() {
        Ok("startup") => return startup_phase(&dir),
        Ok("crash") => return crash_phase(&dir),
        _ => {}
    }
    let sizes: Vec<usize> = std::env::var("TWINGRAPH_BENCH_CELLS")
        .unwrap_or_else(|_| "2000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("TWINGRAPH_BENCH_CELLS: work cells, or a list of them")
        })
        .collect();
    match sizes.as_slice() {
        [cells] => run(&dir, *cells),
        _ => scaling(&sizes),
    }
}

/// Each size in its own process, one after the other; then the table.
fn scaling(sizes: &[usize]) {
    use std::io::BufRead;
    let mut runs: Vec<std::collections::BTreeMap<String, f64>> = Vec::new();
    for cells in sizes {
        println!("== {cells} work cells ==");
        let mut child = std::process::Command::new(std::env::current_exe().expect("bench binary"))
            .arg("--bench")
            .env("TWINGRAPH_BENCH_CELLS", cells.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("a run");
        let mut figures = std::collections::BTreeMap::new();
        for line in std::io::BufReader::new(child.stdout.take().expect("stdout")).lines() {
            let line = line.expect("output");
            match line
                .strip_prefix("figure: ")
                .and_then(|f| f.split_once('='))
            {
                Some((k, v)) => {
                    figures.insert(k.to_owned(), v.parse().expect("a number"));
                }
                None => println!("{line}"),
            }
        }
        assert!(
            child.wait().expect("run").success(),
            "the run of {cells} cells failed"
        );
        runs.push(figures);
    }
    let rows: [(&str, &str, &str); 12] = [
        ("twins", "twins", "{:.0}"),
        ("events", "events in the log at startup", "{:.0}"),
        ("load", "load (ops/s)", "{:.0}"),
        ("point_read_us", "point read (µs, median)", "{:.2}"),
        ("traversal_ms", "3-hop traversal (ms, median)", "{:.3}"),
        (
            "aggregate_us",
            "every pump's power by run state (µs per pump, median)",
            "{:.3}",
        ),
        (
            "ingest",
            "durable reported ingest, 64 writers (updates/s)",
            "{:.0}",
        ),
        ("ingest_vs_redb", "… as % of redb alone, same run", "{:.0}"),
        ("hot", "hot twin (updates/s)", "{:.0}"),
        ("startup_s", "startup (s)", "{:.2}"),
        (
            "memory_kb",
            "memory after startup (KB/twin, resident)",
            "{:.2}",
        ),
        ("recovery_s", "start after SIGKILL mid-ingest (s)", "{:.2}"),
    ];
    println!();
    print!("| |");
    for r in &runs {
        print!(" {:.0} twins |", r.get("twins").copied().unwrap_or(0.0));
    }
    println!();
    println!("|---|{}", "---|".repeat(runs.len()));
    for (key, label, format) in rows {
        print!("| {label} |");
        for r in &runs {
            let v = r.get(key).copied().unwrap_or(f64::NAN);
            let text = match format {
                "{:.0}" => format!("{v:.0}"),
                "{:.2}" => format!("{v:.2}"),
                _ => format!("{v:.3}"),
            };
            print!(" {text} |");
        }
        println!();
    }
    if let [first, .., last] = runs.as_slice() {
        let ratio = |k: &str| {
            last.get(k).copied().unwrap_or(f64::NAN) / first.get(k).copied().unwrap_or(f64::NAN)
        };
        println!(
            "largest/smallest: ingest {:.2}x, point read {:.2}x, traversal {:.2}x, aggregate per pump {:.2}x, startup {:.2}x",
            ratio("ingest"),
            ratio("point_read_us"),
            ratio("traversal_ms"),
            ratio("aggregate_us"),
            ratio("startup_s")
        );
    }
}

/// The whole benchmark at one size.
fn run(dir: &std::path::Path, cells: usize) {
    let _ = std::fs::remove_dir_all(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let models = models();
    let (batches, twin_count) = plant(cells);
    let ops: usize = batches.iter().map(|b| b.ops.len()).sum();

    let store: Arc<Store> = Arc::new(embedded::open(dir, models.clone(), config()).expect("open"));
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
    figure("twins", twin_count as f64);
    figure("load", ops as f64 / load.as_secs_f64());

    // Point reads: 100,000 distinct machines at any size from 2,000 cells
    // (a stride coprime with their count), each read once, in 100 chunks.
    // Until 2026-12-05 it read 10,000 ids chosen by (i·7919 mod cells,
    // i mod 50): a function of i mod lcm(cells, 50), so 2,000 distinct
    // twins read five times each at 100k (warm in the CPU's cache) against
    // 10,000 read once at 1M.
    let machines = cells * PER_CELL_EQUIPMENT;
    let ids: Vec<String> = (0..100_000)
        .map(|i| {
            let j = (i * 7919) % machines;
            eq_id(j / PER_CELL_EQUIPMENT, j % PER_CELL_EQUIPMENT)
        })
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
    let read = median(samples).as_secs_f64() * 1e6;
    println!("point read: median {read:.2} µs per twin");
    figure("point_read_us", read);

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
    let hops = median(samples).as_secs_f64() * 1e3;
    println!("3-hop traversal: {reached} twins, median {hops:.3} ms");
    figure("traversal_ms", hops);

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
                        let batch =
                            ingest_batch(cells, per_batch, (w * rounds + r) * per_batch, round);
                        store.apply(batch, "ingest").await.expect("ingest batch");
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
    figure("ingest", ingest_rate);
    println!(
        "ingest: {updates} validated, durable, evented reported updates from {writers} writers in {:.2} s = {:.0} updates/s",
        took.as_secs_f64(),
        ingest_rate
    );

    // A dashboard's aggregate over a whole model: every pump's power (mean,
    // max) by run state, in the store (no filter, no index answers it: a
    // scan of the pumps, each read once per query). Per pump, so the sizes
    // compare. After the ingest, which rewrote the power of most pumps:
    // their values are no longer laid out in memory in the order the
    // plant was loaded (a freshly loaded store scans near sequentially).
    let query = AggregateQuery {
        model: Some("dtmi:twingraph:isa95:Pump;1".into()),
        measures: Measures {
            fields: vec![vec!["reported".into(), "power".into()]],
            group_by: Some(vec!["reported".into(), "runState".into()]),
        },
        ..AggregateQuery::default()
    };
    let mut samples = Vec::new();
    let mut pumps = 0;
    rt.block_on(async {
        for _ in 0..21 {
            let t = Instant::now();
            let answer = store.aggregate(&query).await.expect("aggregate");
            samples.push(t.elapsed());
            pumps = answer.all.count;
            // Every pump has a power and a run state: the scan read them.
            assert_eq!(answer.all.fields[0].count, pumps, "pumps with a power");
            assert!(answer.groups.len() >= 2, "run states: {:?}", answer.groups);
        }
    });
    let per_pump = median(samples).as_secs_f64() * 1e6 / pumps.max(1) as f64;
    println!(
        "aggregate of every pump's power by run state: {pumps} pumps, median {:.2} ms = {per_pump:.3} µs per pump",
        per_pump * pumps as f64 / 1e3
    );
    figure("aggregate_us", per_pump);
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
    figure("ingest_vs_redb", 100.0 * ingest_rate / raw_rate);

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
    figure("hot", hot_updates as f64 / hot_time.as_secs_f64());

    // The same ingest on the reopened store with the pumps' sort indexes
    // on both updated fields (made by a dashboard's ordered lists): what
    // keeping them costs writes.
    store.close();
    drop(store);
    let store = Arc::new(embedded::open(dir, models, config()).expect("reopen"));
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
    // Startup of the resulting store (every event above in its log), and
    // its memory, in a fresh process.
    let events = store.last_seq();
    store.close();
    drop(store);
    let out = std::process::Command::new(std::env::current_exe().expect("bench binary"))
        .env("TWINGRAPH_BENCH_PHASE", "startup")
        .env("TWINGRAPH_BENCH_EVENTS", events.to_string())
        .env("TWINGRAPH_BENCH_TWINS", twin_count.to_string())
        .output()
        .expect("startup phase");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    // The store's own account of its startup (TWINGRAPH_BENCH_LOG=info).
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    crash(dir, cells);
}

/// `n`-th batch of the ingest: `per_batch` reported updates of equipment
/// twins spread over the plant (`round` varies the values).
fn ingest_batch(cells: usize, per_batch: usize, first: usize, round: usize) -> Batch {
    let ops = (0..per_batch)
        .map(|i| {
            let n = first + i;
            Op::PatchReported {
                id: eq_id((n * 31) % cells, 5 * ((n / 7) % 6)),
                patch: json!({"power": ((n + round) % 1000) as f64 / 10.0, "operatingHours": (n + round) as f64}),
                expected_version: None,
                source_time: None,
            }
        })
        .collect();
    Batch { ops }
}

/// Crash recovery at this size: a child process runs the ingest's 64
/// writers on the store, printing the sequence numbers of each batch it
/// has had acknowledged, and is killed with SIGKILL once it has had more
/// acknowledged than a checkpoint covers (so one is being written).
/// Reopening must then find every acknowledged event, each twin as of
/// its last event in the log (nothing half applied, nothing applied twice).
fn crash(dir: &std::path::Path, cells: usize) {
    use std::io::BufRead;
    let before = {
        let store = embedded::open(dir, models(), config()).expect("reopen");
        let seq = store.last_seq();
        store.close();
        seq
    };
    let wanted = StoreConfig::default().checkpoint_events as usize * 5 / 4;
    let mut child = std::process::Command::new(std::env::current_exe().expect("bench binary"))
        .env("TWINGRAPH_BENCH_PHASE", "crash")
        .env("TWINGRAPH_BENCH_CELLS", cells.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("crash phase");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut count = 0usize;
    while count < wanted {
        let line = lines
            .next()
            .expect("the child ended early")
            .expect("a line");
        let (a, b) = line.split_once(' ').expect("first last");
        let range = (a.parse().expect("seq"), b.parse().expect("seq"));
        count += (range.1 - range.0 + 1) as usize;
        acked.push(range);
    }
    child.kill().expect("SIGKILL");
    // What it printed before dying was acknowledged too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some((a, b)) = line.split_once(' ')
            && let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>())
        {
            acked.push((a, b));
        }
    }
    let _ = child.wait();
    let t = Instant::now();
    let store = embedded::open(dir, models(), config()).expect("recovers");
    let recovery = t.elapsed();
    let last = store.last_seq();
    let max_acked = acked.iter().map(|r| r.1).max().unwrap_or(0);
    assert!(
        last >= max_acked,
        "acknowledged up to {max_acked}, the log ends at {last}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Every event since the crash phase began, and each twin's last one.
    let mut seen = std::collections::HashSet::new();
    let mut latest: std::collections::HashMap<String, twingraph::twin::Event> = Default::default();
    let mut seq = before;
    while seq < last {
        for e in rt
            .block_on(store.events_after(seq, 10_000))
            .expect("events")
        {
            seq = e.seq;
            seen.insert(e.seq);
            if let Change::ReportedPatched { twin, .. } = &e.change {
                latest.insert(twin.clone(), e);
            }
        }
    }
    let acked_count: usize = acked.iter().map(|r| (r.1 - r.0 + 1) as usize).sum();
    for (a, b) in &acked {
        assert!(
            (*a..=*b).all(|s| seen.contains(&s)),
            "acknowledged events {a}..={b} are in the log"
        );
    }
    for (id, e) in &latest {
        let Change::ReportedPatched { version, patch, .. } = &e.change else {
            unreachable!()
        };
        let t = rt.block_on(store.twin(id)).expect("read").expect("twin");
        assert_eq!(t.version, *version, "{id} is as of its last event");
        let power = t
            .root
            .props
            .get("power")
            .and_then(|p| p.reported.as_ref())
            .map(|r| r.value.clone());
        assert_eq!(
            power.as_ref(),
            patch.get("power"),
            "{id}'s last reported power"
        );
    }
    println!(
        "crash: SIGKILL after {acked_count} acknowledged updates ({} events committed): all in the log, {} twins as of their last event; recovery (reopen) {:.2} s",
        last - before,
        latest.len(),
        recovery.as_secs_f64()
    );
    figure("recovery_s", recovery.as_secs_f64());
    store.close();
}

/// The child of [`crash`]: writes until killed, printing the first and
/// last sequence numbers of each acknowledged batch.
fn crash_phase(dir: &std::path::Path) {
    use std::io::Write;
    let cells: usize = std::env::var("TWINGRAPH_BENCH_CELLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(embedded::open(dir, models(), config()).expect("open"));
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..64usize {
            let (store, out) = (store.clone(), out.clone());
            tasks.push(tokio::spawn(async move {
                for r in 0.. {
                    let batch = ingest_batch(cells, 100, (w * 1_000_000 + r) * 100, 7);
                    let events = store.apply(batch, "crash").await.expect("batch");
                    let (Some(a), Some(b)) = (events.first(), events.last()) else {
                        continue;
                    };
                    let mut out = out.lock().expect("stdout");
                    // A closed pipe: the parent has what it needs.
                    if writeln!(out, "{} {}", a.seq, b.seq)
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
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
    if events > 0 {
        assert_eq!(store.last_seq(), events);
    }
    println!(
        "startup: {events} events, {twins} twins: {:.2} s",
        startup.as_secs_f64()
    );
    figure("events", events as f64);
    figure("startup_s", startup.as_secs_f64());
    // The storage cache starts empty (startup reads through a small one)
    // and fills with the pages writes touch, up to its setting.
    let grown = after.saturating_sub(before) as f64;
    println!(
        "memory after startup: {:.0} MB resident = {:.2} KB per twin (typical state, ~5 relationships each); \
         the storage cache may grow by up to {} MiB more",
        grown / 1024.0,
        grown / twins as f64,
        config().storage_cache_bytes / (1024 * 1024),
    );
    figure("memory_kb", grown / twins as f64);
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
