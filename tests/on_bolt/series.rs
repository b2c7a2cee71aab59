//! Time series over the Neo4j store, with two server replicas on one
//! database: both follow the log, one (the holder of the `series` lease)
//! writes the blocks, each answers every point, and a server started later
//! reads them from the database.

use std::sync::Arc;
use std::time::Duration;

use twingraph::series::{Aggregate, Backend, Series, SeriesConfig, Window};
use twingraph::store::GraphStore;
use twingraph::twin::{Batch, Op, parse_time};

use super::replicas::replica;
use crate::bolt::fresh_database;
use crate::store_suite::{PUMP, create, must};

const T0: &str = "2026-12-01T10:00:00Z";

fn window() -> Window {
    let t0 = parse_time(T0).expect("T0");
    Window {
        from: t0,
        to: t0 + 86_400_000_000,
        step: None,
        aggregate: Aggregate::Mean,
    }
}

/// Waits until `series` answers `n` points of p1's flow rate.
async fn points(series: &Series, n: usize) -> Vec<f64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got: Vec<f64> = series
            .points("p1", "flowRate", window())
            .await
            .expect("points")
            .into_iter()
            .map(|p| p.value)
            .collect();
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the database's series mark reaches event `last`.
async fn until_stored(a: &twingraph::store::bolt::BoltStore, last: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while a.series_mark().await.expect("mark") < last {
        assert!(
            tokio::time::Instant::now() < deadline,
            "blocks never written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config() -> SeriesConfig {
    SeriesConfig {
        flush_every: Duration::from_millis(100),
        ..SeriesConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn series_on_neo4j_are_written_once_and_read_by_every_replica() {
    let bolt = fresh_database().await;
    let (a, b) = (
        replica(&bolt, Default::default()).await,
        replica(&bolt, Default::default()).await,
    );
    let store: Arc<dyn GraphStore> = Arc::new(a.clone());
    must(store.as_ref(), vec![create("p1", PUMP)]).await;
    let t0 = parse_time(T0).expect("T0");
    let ops = (0..30i64)
        .map(|i| Op::PatchReported {
            id: "p1".into(),
            patch: serde_json::json!({"flowRate": i as f64 * 1.5}),
            expected_version: None,
            source_time: Some(t0 + i * 60_000_000),
        })
        .collect::<Vec<_>>();
    for op in ops {
        store
            .apply(Batch { ops: vec![op] }, "test")
            .await
            .expect("report");
    }
    let last = store.last_seq();
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    let mut replicas = Vec::new();
    for s in [a.clone(), b.clone()] {
        let series = Arc::new(
            Series::open(Backend::bolt(s.clone()), config())
                .await
                .expect("series"),
        );
        let stop = stop.clone();
        let follower: Arc<dyn GraphStore> = Arc::new(s);
        tasks.push(tokio::spawn(series.clone().follow(follower, async move {
            stop.notified().await;
        })));
        replicas.push(series);
    }
    let want: Vec<f64> = (0..30).map(|i| f64::from(i) * 1.5).collect();
    for series in &replicas {
        assert_eq!(
            points(series, 30).await,
            want,
            "every replica answers every point"
        );
    }
    // The lease holder stores them: the database's mark reaches the log's end.
    until_stored(&a, last).await;
    // A server started now reads them from the database, nothing followed.
    let c = replica(&bolt, Default::default()).await;
    let fresh = Series::open(Backend::bolt(c.clone()), config())
        .await
        .expect("series");
    assert!(fresh.seq() >= last, "starts at the stored mark");
    let got: Vec<f64> = fresh
        .points("p1", "flowRate", window())
        .await
        .expect("points")
        .into_iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(got, want, "from the blocks, once each");
    // Downsampled from the blocks: ten-minute means.
    let tens = fresh
        .points(
            "p1",
            "flowRate",
            Window {
                step: Some(600_000_000),
                ..window()
            },
        )
        .await
        .expect("points");
    assert_eq!(tens.len(), 3);
    assert!((tens[0].value - 6.75).abs() < 1e-9, "{tens:?}");
    stop.notify_waiters();
    for t in tasks {
        t.await.expect("follower");
    }
    a.close();
    b.close();
    c.close();
}

/// Lifecycles and diagnostics over the Neo4j store: a change through one
/// replica is seen by the other, each state is recorded once (the
/// `lifecycle` stream's expected end), and both are in the twin's history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycles_on_neo4j_are_shared_by_replicas() {
    use twingraph::lifecycle::Lifecycle;
    use twingraph::records::LifecycleState;
    let bolt = fresh_database().await;
    let (a, b) = (
        replica(&bolt, Default::default()).await,
        replica(&bolt, Default::default()).await,
    );
    let (sa, sb): (Arc<dyn GraphStore>, Arc<dyn GraphStore>) =
        (Arc::new(a.clone()), Arc::new(b.clone()));
    must(sa.as_ref(), vec![create("p1", PUMP)]).await;
    let (la, lb) = (
        Lifecycle::start(sa.clone()).await.expect("lifecycle"),
        Lifecycle::start(sb.clone()).await.expect("lifecycle"),
    );
    la.set("p1", LifecycleState::Planned, None, None, "a")
        .await
        .expect("planned");
    // B decides on the state A recorded (its fold catches up first).
    let e = lb
        .set("p1", LifecycleState::InService, None, None, "b")
        .await
        .expect_err("planned cannot go into service");
    assert_eq!(e.code().reason(), "invalid_lifecycle_transition");
    lb.set(
        "p1",
        LifecycleState::Commissioned,
        Some("on site".into()),
        None,
        "b",
    )
    .await
    .expect("commissioned");
    // A follows B's record (replicas poll the log).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while la.book().get("p1").map(|e| e.current().state) != Some(LifecycleState::Commissioned) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never saw B's change"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = la
        .set(
            "p1",
            LifecycleState::Maintenance,
            None,
            Some(LifecycleState::Planned),
            "a",
        )
        .await
        .expect_err("not planned any more");
    assert_eq!(e.code().reason(), "lifecycle_conflict");
    la.report(
        "p1",
        Some("vibration".into()),
        serde_json::json!({"rms": 4.2}),
        "a",
    )
    .await
    .expect("report");
    let entry = la.book().get("p1").cloned().expect("p1");
    assert_eq!(entry.current().state, LifecycleState::Commissioned);
    assert_eq!(entry.current().by, "b");
    let kinds: Vec<&'static str> = sb
        .twin_events("p1", None, None)
        .await
        .expect("history")
        .iter()
        .map(|e| e.change.kind())
        .collect();
    assert_eq!(
        kinds,
        [
            "twinCreated",
            "lifecycleChanged",
            "lifecycleChanged",
            "diagnosticReported"
        ]
    );
    la.stop().await;
    lb.stop().await;
    a.close();
    b.close();
}

/// Retention on the Neo4j store: blocks older than `series.retention_days`
/// (counted back from the newest point) go in the transaction that writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn series_retention_on_neo4j_removes_old_blocks() {
    let bolt = fresh_database().await;
    let a = replica(&bolt, Default::default()).await;
    let store: Arc<dyn GraphStore> = Arc::new(a.clone());
    must(store.as_ref(), vec![create("p1", PUMP)]).await;
    let t0 = parse_time(T0).expect("T0");
    for (h, v) in [(0i64, 1.0), (1, 2.0), (5, 3.0)] {
        let op = Op::PatchReported {
            id: "p1".into(),
            patch: serde_json::json!({"flowRate": v}),
            expected_version: None,
            source_time: Some(t0 + h * 3_600_000_000),
        };
        store
            .apply(Batch { ops: vec![op] }, "test")
            .await
            .expect("report");
    }
    let series = Arc::new(
        Series::open(
            Backend::bolt(a.clone()),
            SeriesConfig {
                retention: Some(Duration::from_secs(2 * 3600)),
                ..config()
            },
        )
        .await
        .expect("series"),
    );
    let stop = Arc::new(tokio::sync::Notify::new());
    let task = {
        let stop = stop.clone();
        tokio::spawn(series.clone().follow(store.clone(), async move {
            stop.notified().await;
        }))
    };
    let last = store.last_seq();
    until_stored(&a, last).await;
    stop.notify_waiters();
    task.await.expect("follower");
    let fresh = Series::open(Backend::bolt(a.clone()), config())
        .await
        .expect("series");
    let got: Vec<f64> = fresh
        .points("p1", "flowRate", window())
        .await
        .expect("points")
        .into_iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(got, [3.0], "the blocks of 10:00 and 11:00 are gone");
    a.close();
}

/// The Neo4j store's series survive a SIGKILL of the binary: blocks in
/// the database, acknowledged points read again from the log from the
/// database's series mark, retention and roll-ups (see
/// `series::series_survive_sigkill`). The killed server held the `series`
/// lease; the restarted one answers every point while it waits for it.
#[test]
fn series_on_neo4j_survive_sigkill_of_the_binary() {
    let bolt = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(fresh_database());
    let dir = crate::store_conformance::fresh_dir();
    let args: Vec<String> = vec![
        "--store".into(),
        bolt.uri.clone(),
        "--store-user".into(),
        bolt.user.clone(),
        "--store-database".into(),
        bolt.database.clone().expect("a database"),
    ];
    crate::series::series_survive_sigkill(|| {
        crate::series::spawn_series_serve(&dir, &args, Some(&bolt.password))
    });
}
