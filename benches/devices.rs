//! The MQTT device endpoint under fleet load, against the `twingraph serve`
//! binary (embedded store, the demo plant), its devices in this process
//! (`twingraph::devices::client`, plain MQTT over loopback):
//!
//! 1. provisioning: every device connects for the first time through an
//!    enrollment group (its twin exists: the identity is created);
//! 2. connected at once: all devices connect again; the server's memory
//!    per connected device (its RSS, from /proc);
//! 3. ingest: every device patches its reported state at QoS 1, one
//!    request in flight each, each counted when the server answers 204
//!    (after the write is durable); meanwhile a desired change every
//!    20 ms, timed from the GraphQL mutation to the device's notification;
//! 4. the same reported patches through GraphQL `batch` (100 a request,
//!    8 connections), as the comparison;
//! 5. reconnect: every device disconnects, then connects and reads its
//!    twin; the time until all have.
//!
//! `TWINGRAPH_BENCH_DEVICES` (default 10000), `TWINGRAPH_BENCH_SECS`
//! (default 10), `TWINGRAPH_BENCH_RATE` (default 20000);
//! `TWINGRAPH_BENCH_LOG` the server's log filter (default `warn`), and
//! `TWINGRAPH_BENCH_SHOW_SLOW` prints each desired change over 50 ms with
//! its arrival time, to set beside that log. Needs as many open files as devices and some more, on
//! both sides: run `ulimit -n $(ulimit -Hn)` first (`benches/devices.sh`).
//! Figures are medians of per-second rates.

#[path = "support/http.rs"]
mod support;

use std::collections::HashMap;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::TcpStream;
use twingraph::devices::client::{Client, Incoming};

use support::{Conn, env_usize, percentile, post};

// The allocator the server binary uses (src/main.rs), so the figures are
// the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Device = Client<TcpStream>;

/// The server's resident memory, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn gql(addr: SocketAddr, query: &str, variables: Value) -> Value {
    let mut c = Conn::open(addr).await;
    c.send(&post(addr, query, variables)).await;
    serde_json::from_slice(&c.body).expect("JSON")
}

/// Connects every device (`parallel` at a time); the clients, in order.
async fn connect_all(
    mqtt: SocketAddr,
    devices: &[(String, String, String)],
    parallel: usize,
) -> Vec<Device> {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(devices.len());
    for (id, model, key) in devices {
        let (id, model, key) = (id.clone(), model.clone(), key.clone());
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("open");
            let tcp = TcpStream::connect(mqtt).await.expect("connects");
            let _ = tcp.set_nodelay(true);
            Client::connect_as(tcp, "localhost", &id, &key, Some(&model))
                .await
                .unwrap_or_else(|e| panic!("{id}: {e}"))
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("joins"));
    }
    out
}

fn main() {
    let n = env_usize("TWINGRAPH_BENCH_DEVICES", 10_000);
    let secs = env_usize("TWINGRAPH_BENCH_SECS", 10) as u64;
    let rate = env_usize("TWINGRAPH_BENCH_RATE", 20_000) as f64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("twingraph-bench-devices-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cells = n.div_ceil(49) + 1;
    let mut server = Command::new(env!("CARGO_BIN_EXE_twingraph"))
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(&dir)
        .arg("--models")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dtdl"))
        .env("TWINGRAPH_DEMO_CELLS", cells.to_string())
        .env(
            "TWINGRAPH_LOG",
            std::env::var("TWINGRAPH_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        .env("TWINGRAPH_MQTT_MESSAGES_PER_SECOND", "10000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let pid = server.id();
    // Stops the server however this ends (a panic included).
    struct Stop(u32);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.to_string()])
                .status();
        }
    }
    let _stop = Stop(pid);
    let mut lines = std::io::BufReader::new(server.stdout.take().expect("piped"));
    let (mut http, mut mqtt) = (None, None);
    let mut line = String::new();
    while http.is_none() {
        line.clear();
        assert!(
            lines.read_line(&mut line).expect("reads") > 0,
            "serve exited"
        );
        let addr = line
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok());
        if line.contains("MQTT device endpoint") {
            mqtt = addr;
        } else if line.contains("listening on") {
            http = addr;
        }
    }
    let (http, mqtt) = (http.expect("HTTP"), mqtt.expect("MQTT"));
    // The server logs to its standard output: shown with
    // TWINGRAPH_BENCH_LOG, else dropped.
    let show = std::env::var("TWINGRAPH_BENCH_LOG").is_ok();
    std::thread::spawn(move || {
        let mut sink = String::new();
        while lines.read_line(&mut sink).is_ok_and(|n| n > 0) {
            if show {
                eprint!("server: {sink}");
            }
            sink.clear();
        }
    });
    rt.block_on(run(http, mqtt, pid, n, secs, rate));
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn run(http: SocketAddr, mqtt: SocketAddr, pid: u32, n: usize, secs: u64, rate: f64) {
    // The twins, and a device for each (through an enrollment group).
    let mut twins: Vec<(String, String)> = Vec::new();
    let mut after = Value::Null;
    while twins.len() < n {
        let v = gql(
            http,
            "query($after: String) { twins(first: 1000, after: $after) { nodes { id model } pageInfo { hasNextPage endCursor } } }",
            json!({"after": after}),
        )
        .await;
        let page = &v["data"]["twins"];
        for t in page["nodes"].as_array().expect("twins") {
            twins.push((
                t["id"].as_str().expect("id").to_owned(),
                t["model"].as_str().expect("model").to_owned(),
            ));
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    twins.truncate(n);
    let n = twins.len();
    let v = gql(
        http,
        r#"mutation { createDeviceEnrollmentGroup(name: "bench", parent: "enterprise") { groupKey } }"#,
        json!({}),
    )
    .await;
    let group = v["data"]["createDeviceEnrollmentGroup"]["groupKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no group key: {v}"))
        .to_owned();
    let devices: Vec<(String, String, String)> = twins
        .iter()
        .map(|(id, model)| {
            let key = twingraph::devices::keys::group_device_key(&group, id).expect("key");
            (id.clone(), model.clone(), key)
        })
        .collect();
    println!("devices: {n} (demo plant, embedded store, plain MQTT over loopback)");

    // 1. Provisioning; the server's memory before and with every device
    // connected (identities and their connection records included: an
    // upper bound of a connection's cost).
    let before = rss_kib(pid);
    let started = Instant::now();
    let clients = connect_all(mqtt, &devices, 64).await;
    println!(
        "provisioning: {n} first connects in {:.2} s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = rss_kib(pid);
    println!(
        "memory: server RSS {} MiB with no device, {} MiB with {n} connected: {:.1} KiB per device",
        before / 1024,
        with / 1024,
        with.saturating_sub(before) as f64 / n as f64
    );
    drop(clients);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2. All connected at once.
    let started = Instant::now();
    let clients = connect_all(mqtt, &devices, 512).await;
    println!(
        "connected at once: {n} in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    // 3. Ingest: as fast as the devices get answers, then paced at
    // `rate` with desired changes timed meanwhile.
    let (clients, rates, refused, _) = ingest(clients, &twins, http, secs, None).await;
    println!(
        "MQTT reported patches (QoS 1, answered when durable), unpaced: {:.0}/s median of {secs} one-second rates (min {:.0}, max {:.0}); refused {refused}",
        median(rates.clone()),
        rates.iter().copied().fold(f64::INFINITY, f64::min),
        rates.iter().copied().fold(0.0, f64::max),
    );
    let (clients, rates, refused, lat) = ingest(clients, &twins, http, secs, Some(rate)).await;
    println!(
        "MQTT reported patches paced at {rate:.0}/s: {:.0}/s median; refused {refused}; desired change -> device meanwhile: p50 {:.1} ms, p99 {:.1} ms ({} changes)",
        median(rates),
        percentile(&lat, 0.5).as_secs_f64() * 1000.0,
        percentile(&lat, 0.99).as_secs_f64() * 1000.0,
        lat.len()
    );

    // 4. The same through GraphQL batch.
    let batches: Arc<Vec<Vec<u8>>> = Arc::new(
        twins
            .chunks(100)
            .map(|chunk| {
                let ops: Vec<Value> = chunk
                    .iter()
                    .map(|(id, _)| json!({"op": "patchReported", "id": id, "patch": {"displayLabel": format!("{id} via batch")}}))
                    .collect();
                post(
                    http,
                    "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }",
                    json!({"ops": ops}),
                )
            })
            .collect(),
    );
    let ops = Arc::new(AtomicU64::new(0));
    let halt = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut drivers = Vec::new();
    for d in 0..8 {
        let (batches, ops, halt) = (batches.clone(), ops.clone(), halt.clone());
        drivers.push(tokio::spawn(async move {
            let mut conn = Conn::open(http).await;
            let mut i = d;
            while !halt.load(Ordering::Relaxed) {
                conn.call(&batches[i % batches.len()]).await;
                ops.fetch_add(100, Ordering::Relaxed);
                i += 8;
            }
        }));
    }
    let mut rates = Vec::new();
    let mut last = ops.load(Ordering::Relaxed);
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = ops.load(Ordering::Relaxed);
        rates.push((now - last) as f64);
        last = now;
    }
    halt.store(true, Ordering::Relaxed);
    for d in drivers {
        let _ = d.await;
    }
    println!(
        "GraphQL batch reported patches (100 a request, 8 connections): {:.0}/s median",
        median(rates)
    );

    // 5. Reconnect and read twins.
    drop(clients);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let clients = connect_all(mqtt, &devices, 512).await;
    let mut reads = Vec::new();
    for mut c in clients {
        reads.push(tokio::spawn(async move {
            let rid = c.request_twin().await.expect("asks");
            while let Ok(Some(m)) = c.next().await {
                if let Incoming::Twin { rid: r, status, .. } = m
                    && r == rid
                {
                    assert_eq!(status, 200);
                    return c;
                }
            }
            panic!("no twin");
        }));
    }
    let mut back = Vec::new();
    for r in reads {
        back.push(r.await.expect("joins"));
    }
    println!(
        "reconnect: {n} devices connected again and read their twins in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    drop(back);
}

/// Every device patches its reported state, one request in flight each
/// (`rate`: at most that many a second in all, each device on its own
/// slot), for `secs`, while a desired change every 20 ms is timed from
/// the mutation to the device's notification. The clients back, the
/// per-second rates, refusals, and the sorted latencies.
async fn ingest(
    clients: Vec<Device>,
    twins: &[(String, String)],
    http: SocketAddr,
    secs: u64,
    rate: Option<f64>,
) -> (Vec<Device>, Vec<f64>, u64, Vec<Duration>) {
    let n = clients.len();
    let done = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let probes: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = std::env::var("TWINGRAPH_BENCH_SHOW_SLOW").is_ok();
    let interval = rate.map(|r| Duration::from_secs_f64(n as f64 / r));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        let twin = twins[i].0.clone();
        let (done, refused, probes, latencies, stopping) = (
            done.clone(),
            refused.clone(),
            probes.clone(),
            latencies.clone(),
            stopping.clone(),
        );
        // Each device's slots, spread over the interval.
        let mut due = interval.map(|iv| start + iv.mul_f64(i as f64 / n as f64));
        tasks.push(tokio::spawn(async move {
            // Waits for the device's slot, taking notifications meanwhile
            // (a device that did not read them would delay their timing).
            async fn wait_for_slot(
                c: &mut Device,
                until: Instant,
                twin: &str,
                probes: &Mutex<HashMap<String, Instant>>,
                latencies: &Mutex<Vec<Duration>>,
                slow: bool,
            ) -> bool {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(until.into()) => return true,
                        m = c.next() => match m {
                            Ok(Some(Incoming::Desired { .. })) => {
                                if let Some(s) = probes.lock().expect("probes").remove(twin) {
                                    seen(latencies, s.elapsed(), slow);
                                }
                            }
                            Ok(Some(_)) => {}
                            _ => return false,
                        },
                    }
                }
            }
            if let Some(d) = due
                && !wait_for_slot(&mut c, d, &twin, &probes, &latencies, slow).await
            {
                return c;
            }
            let mut k = 0u64;
            let mut waiting = c
                .report(&json!({"displayLabel": format!("{twin} #{k}")}))
                .await
                .expect("reports");
            while let Ok(Some(m)) = c.next().await {
                match m {
                    Incoming::Twin { rid, status, .. } if rid == waiting => {
                        if status == 204 {
                            done.fetch_add(1, Ordering::Relaxed);
                        } else {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        if stopping.load(Ordering::Relaxed) {
                            break;
                        }
                        if let (Some(d), Some(iv)) = (due.as_mut(), interval) {
                            *d += iv;
                            // A device that cannot keep its slot reads
                            // no further than now (no burst to catch up).
                            let now = Instant::now();
                            if *d < now {
                                *d = now;
                            }
                            if !wait_for_slot(&mut c, *d, &twin, &probes, &latencies, slow).await {
                                return c;
                            }
                        }
                        k += 1;
                        waiting = c
                            .report(&json!({"displayLabel": format!("{twin} #{k}")}))
                            .await
                            .expect("reports");
                    }
                    Incoming::Desired { .. } => {
                        let start = probes.lock().expect("probes").remove(&twin);
                        if let Some(start) = start {
                            seen(&latencies, start.elapsed(), slow);
                        }
                    }
                    _ => {}
                }
            }
            c
        }));
    }
    let prober = {
        let (probes, twins, stop) = (probes.clone(), twins.to_vec(), stop.clone());
        tokio::spawn(async move {
            let mut conn = Conn::open(http).await;
            let mut i = 0usize;
            loop {
                let twin = &twins[(i * 7919) % twins.len()].0;
                i += 1;
                probes
                    .lock()
                    .expect("probes")
                    .insert(twin.clone(), Instant::now());
                conn.call(&post(
                    http,
                    "mutation($id: ID!, $p: JSON!) { patchDesired(id: $id, patch: $p) { version } }",
                    json!({"id": twin, "p": {"displayLabel": format!("probe {i}")}}),
                ))
                .await;
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                    () = stop.notified() => return,
                }
            }
        })
    };
    let mut rates = Vec::new();
    let mut last = done.load(Ordering::Relaxed);
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = done.load(Ordering::Relaxed);
        rates.push((now - last) as f64);
        last = now;
    }
    stop.notify_one();
    let _ = prober.await;
    stopping.store(true, Ordering::Relaxed);
    let mut clients = Vec::new();
    for t in tasks {
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(30), t).await {
            clients.push(c);
        }
    }
    // Notifications still on their way count as seen, late.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut lat = latencies.lock().expect("latencies").clone();
    lat.sort();
    (clients, rates, refused.load(Ordering::Relaxed), lat)
}

/// Records a probe's latency; with `show`, prints a slow one (over 50 ms)
/// with the wall-clock time it arrived, to set beside the server's log.
fn seen(latencies: &Mutex<Vec<Duration>>, took: Duration, show: bool) {
    if show && took > Duration::from_millis(50) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        eprintln!(
            "slow desired change: {:.1} ms, arrived at {}.{:03} (Unix)",
            took.as_secs_f64() * 1000.0,
            now.as_secs(),
            now.subsec_millis()
        );
    }
    latencies.lock().expect("latencies").push(took);
}
