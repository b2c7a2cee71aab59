//! Neo4j going away and coming back: `/readyz`, `STORE_UNAVAILABLE`, and
//! reconnecting by itself, with no acknowledged write lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use twingraph::store::StoreConfig;
use twingraph::store::bolt::BoltStore;

use crate::bolt::{Proxy, bolt_addr, fresh_database};
use crate::server::{code, gql, http};
use crate::support::sample_models;

async fn wait_for_readyz(addr: std::net::SocketAddr, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, _) = http(addr, "GET", "/readyz", None).await;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {got}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_and_is_reconnected() {
    let mut bolt = fresh_database().await;
    let proxy = Proxy::start(bolt_addr(&bolt.uri)).await;
    bolt.uri = format!("bolt://{}", proxy.addr);
    bolt.poll = Duration::from_millis(50);
    bolt.timeout = Duration::from_secs(3);
    let store = BoltStore::connect(bolt, sample_models(), StoreConfig::default())
        .await
        .expect("store");
    let s = crate::server::serve(Arc::new(store), Default::default()).await;
    let create = r#"mutation { createTwin(id: "p1", model: "dtmi:twingraph:isa95:Pump;1", reported: {flowRate: 1.5}) { version } }"#;
    let v = gql(s.addr, create, json!({})).await;
    assert_eq!(v["data"]["createTwin"]["version"], 1, "{v}");
    wait_for_readyz(s.addr, 200).await;

    proxy.cut();
    wait_for_readyz(s.addr, 503).await;
    let t = Instant::now();
    let v = gql(s.addr, r#"{ twin(id: "p1") { id } }"#, json!({})).await;
    assert_eq!(code(&v), "STORE_UNAVAILABLE", "{v}");
    let v = gql(
        s.addr,
        r#"mutation { patchReported(id: "p1", patch: {flowRate: 2.5}) { version } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "STORE_UNAVAILABLE", "{v}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "failing took {:?}",
        t.elapsed()
    );

    proxy.restore();
    wait_for_readyz(s.addr, 200).await;
    let v = gql(
        s.addr,
        r#"mutation { patchReported(id: "p1", patch: {flowRate: 3.5}) { version } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["patchReported"]["version"], 2, "{v}");
    let v = gql(
        s.addr,
        r#"{ twin(id: "p1") { version reported } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["twin"]["reported"]["flowRate"], 3.5, "{v}");
    s.shutdown().await;
}

/// What the writers and readers of the chaos run saw.
#[derive(Default)]
struct Seen {
    /// Per pump: the writes acknowledged, as (version, flowRate).
    acknowledged: Vec<Vec<(u64, u64)>>,
    /// Every error answered: its code and message.
    errors: Vec<(String, String)>,
    reads: usize,
}

/// The database goes away under load (its connections cut, new ones
/// refused) and comes back: writers and readers go on throughout. No
/// acknowledged write is lost, every error says the store is unavailable
/// or timed out, and the server recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_under_load_survive_the_database_going_away() {
    let mut bolt = fresh_database().await;
    let proxy = Arc::new(Proxy::start(bolt_addr(&bolt.uri)).await);
    bolt.uri = format!("bolt://{}", proxy.addr);
    let (cut, restore) = (proxy.clone(), proxy.clone());
    under_load_while(
        bolt,
        async move { cut.cut() },
        async move { restore.restore() },
    )
    .await;
}

/// The database process stopped under load (as an operator stops it:
/// ArcadeDB ends every session, then closes) and started again on its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_under_load_survive_the_database_restarting() {
    let db = Arc::new(
        tokio::task::spawn_blocking(crate::bolt::OwnArcade::start)
            .await
            .expect("ArcadeDB starter"),
    );
    let bolt = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || db.database("chaos"))
            .await
            .expect("database")
    };
    let (stop, start) = (db.clone(), db.clone());
    under_load_while(
        bolt,
        async move {
            tokio::task::spawn_blocking(move || stop.stop())
                .await
                .expect("stopped");
        },
        async move {
            tokio::task::spawn_blocking(move || start.restart())
                .await
                .expect("started");
        },
    )
    .await;
    tokio::task::spawn_blocking(move || drop(db))
        .await
        .expect("ArcadeDB stopped");
}

/// Writers and readers through the real server over `bolt`, the database
/// taken away (`away`) and given back (`back`) under them: no acknowledged
/// write lost, every error a clear store error, recovery by itself.
async fn under_load_while(
    mut bolt: twingraph::store::bolt::BoltConfig,
    away: impl Future<Output = ()>,
    back: impl Future<Output = ()>,
) {
    const PUMPS: usize = 4;
    bolt.poll = Duration::from_millis(50);
    bolt.timeout = Duration::from_secs(3);
    bolt.statement_timeout = Duration::from_secs(2);
    let store = BoltStore::connect(bolt, sample_models(), StoreConfig::default())
        .await
        .expect("store");
    let store = Arc::new(store);
    let s = crate::server::serve(store.clone(), Default::default()).await;
    let addr = s.addr;
    for p in 0..PUMPS {
        let create = format!(
            r#"mutation {{ createTwin(id: "p{p}", model: "dtmi:twingraph:isa95:Pump;1", reported: {{flowRate: 0}}) {{ version }} }}"#
        );
        let v = gql(addr, &create, json!({})).await;
        assert_eq!(v["data"]["createTwin"]["version"], 1, "{v}");
    }
    let seen = Arc::new(std::sync::Mutex::new(Seen {
        acknowledged: vec![Vec::new(); PUMPS],
        ..Seen::default()
    }));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for p in 0..PUMPS {
        let (seen, stop) = (seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                n += 1;
                let m = format!(
                    r#"mutation {{ patchReported(id: "p{p}", patch: {{flowRate: {n}}}) {{ version }} }}"#
                );
                let v = gql(addr, &m, json!({})).await;
                let version = v["data"]["patchReported"]["version"].as_u64();
                {
                    let mut seen = seen.lock().expect("lock");
                    match version {
                        Some(version) => seen.acknowledged[p].push((version, n)),
                        None => seen.errors.push(error_of(&v)),
                    }
                }
                if version.is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    for r in 0..2 {
        let (seen, stop) = (seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let q = format!(r#"{{ twin(id: "p{}") {{ id reported }} }}"#, r);
                let v = gql(addr, &q, json!({})).await;
                let failed = !v["errors"].is_null();
                {
                    let mut seen = seen.lock().expect("lock");
                    seen.reads += 1;
                    if failed {
                        seen.errors.push(error_of(&v));
                    } else {
                        assert_eq!(v["data"]["twin"]["id"], format!("p{r}"), "{v}");
                    }
                }
                if failed {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    let acknowledged = |seen: &std::sync::Mutex<Seen>| -> usize {
        seen.lock()
            .expect("lock")
            .acknowledged
            .iter()
            .map(Vec::len)
            .sum()
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before_cut = acknowledged(&seen);
    away.await;
    wait_for_readyz(addr, 503).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let during_cut = acknowledged(&seen);
    back.await;
    wait_for_readyz(addr, 200).await;
    let restored = Instant::now();
    // Writes are acknowledged again, with no one's help.
    while acknowledged(&seen) < during_cut + 20 {
        assert!(
            restored.elapsed() < Duration::from_secs(20),
            "no writes acknowledged after the database came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    for t in tasks {
        t.await.expect("a client");
    }
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    assert!(before_cut > 0, "writes before the cut");
    assert!(!seen.errors.is_empty(), "the cut was felt");
    let unclear: Vec<_> = seen
        .errors
        .iter()
        .filter(|(c, _)| c != "STORE_UNAVAILABLE" && c != "STORE_TIMEOUT")
        .collect();
    assert!(
        unclear.is_empty(),
        "{} of {} errors not a clear store error: {:?}",
        unclear.len(),
        seen.errors.len(),
        &unclear[..unclear.len().min(5)]
    );
    // Every acknowledged write is in the twin's history, with its value,
    // and the twin's value is the last acknowledged or a later one.
    for (p, acks) in seen.acknowledged.iter().enumerate() {
        let mut recorded = std::collections::HashMap::new();
        let mut after = serde_json::Value::Null;
        loop {
            let q = r#"query($id: ID!, $after: String) { history(id: $id, first: 100, after: $after) {
                nodes { kind change } pageInfo { hasNextPage endCursor } } }"#;
            let v = gql(addr, q, json!({"id": format!("p{p}"), "after": after})).await;
            let page = &v["data"]["history"];
            for e in page["nodes"]
                .as_array()
                .unwrap_or_else(|| panic!("history: {v}"))
            {
                if e["kind"] == "reportedPatched" {
                    let c = &e["change"];
                    recorded.insert(
                        c["version"].as_u64().expect("version"),
                        c["patch"]["flowRate"].as_u64().expect("flowRate"),
                    );
                }
            }
            if page["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = page["pageInfo"]["endCursor"].clone();
        }
        let v = gql(
            addr,
            &format!(r#"{{ twin(id: "p{p}") {{ reported }} }}"#),
            json!({}),
        )
        .await;
        for (version, n) in acks {
            assert_eq!(
                recorded.get(version),
                Some(n),
                "p{p}: acknowledged write {n} (version {version}) lost"
            );
        }
        let last = acks.last().map_or(0, |(_, n)| *n);
        let now = v["data"]["twin"]["reported"]["flowRate"]
            .as_u64()
            .expect("flowRate");
        assert!(now >= last, "p{p}: {now} after acknowledged {last}");
    }
    eprintln!(
        "chaos: {} writes acknowledged, {} reads, {} errors; {:?}",
        acknowledged_total(&seen),
        seen.reads,
        seen.errors.len(),
        store.connections()
    );
    s.shutdown().await;
}

/// The code and message of a response's first error.
fn error_of(v: &serde_json::Value) -> (String, String) {
    let e = &v["errors"][0];
    (
        e["extensions"]["code"]
            .as_str()
            .unwrap_or("none")
            .to_owned(),
        e["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn acknowledged_total(seen: &Seen) -> usize {
    seen.acknowledged.iter().map(Vec::len).sum()
}
