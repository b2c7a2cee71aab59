//! Requests abandoned in the middle of an exchange with the database (a
//! client gone, a request dropped, a timeout) never leave a connection
//! owing replies: the next request reads its own answer, and the abandoned
//! statement is stopped. User reads filling their connections leave the
//! event tailer (and so readiness) alone. Against a scripted Bolt server
//! (`bolt_peer`), so the moment of abandonment is exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use twingraph::codes::Code;
use twingraph::store::bolt::{BoltConfig, BoltStore};
use twingraph::store::{GraphStore, StoreConfig, StoreError};
use twingraph::twin::Twin;

use crate::bolt_peer::{Answer, Peer, Script};
use crate::support::sample_models;

const PUMP: &str = "dtmi:twingraph:isa95:Pump;1";

/// Records in the bulk read: three batches of neo4rs's 1000.
const BULK: usize = 2500;

/// The peer's hooks and counts.
#[derive(Default)]
struct Hooks {
    /// Notified when the RUN of the lookup of twin `slow` arrives.
    slow_asked: Notify,
    /// Notified when the bulk read asks for its second batch.
    bulk_more: Arc<Notify>,
    /// Reads of the event log (the tailer's).
    log_reads: AtomicUsize,
    /// While set, reads of the event log take 30 s.
    log_hangs: std::sync::atomic::AtomicBool,
}

fn state(id: &str) -> Value {
    Value::from(serde_json::to_string(&Twin::blank(id, PUMP)).expect("twin"))
}

/// A store over a peer that answers twin lookups at once (twin `slow`
/// after `slow_for`), the lookup of twins `bulk-*` with [`BULK`] records in
/// batches `slow_for` apart, and the event tailer's reads of an empty log.
/// `tune` sets the store's connections and budgets.
async fn store_over_peer(
    slow_for: Duration,
    tune: impl FnOnce(&mut BoltConfig),
) -> (Arc<BoltStore>, Peer, Arc<Hooks>) {
    let hooks = Arc::new(Hooks::default());
    let h = hooks.clone();
    let script: Script = Arc::new(move |query, params| {
        if query.contains("AS head") {
            h.log_reads.fetch_add(1, Ordering::AcqRel);
            let hangs = h.log_hangs.load(Ordering::Acquire);
            return Answer {
                fields: vec!["head".into(), "j".into()],
                rows: vec![vec![Value::from(0), Value::Null]],
                delay: if hangs {
                    Duration::from_secs(30)
                } else {
                    Duration::ZERO
                },
                ..Answer::default()
            };
        }
        if query.contains("UNWIND $ids AS id") {
            return Answer {
                fields: vec!["s".into()],
                rows: (0..BULK)
                    .map(|i| vec![state(&format!("bulk-{i}"))])
                    .collect(),
                batch_delay: slow_for,
                more: Some(h.bulk_more.clone()),
                ..Answer::default()
            };
        }
        if !query.contains("RETURN n.state AS s") || !query.contains("{id: $id}") {
            return Answer::default();
        }
        let id = params.get("id").and_then(Value::as_str).unwrap_or_default();
        if id == "slow" {
            h.slow_asked.notify_one();
        }
        if id == "ended" {
            // What ArcadeDB answers on every open connection as it shuts down.
            return Answer {
                failure: Some((
                    "Neo.ClientError.Security.Unauthorized".into(),
                    "The credentials of this connection are no longer valid".into(),
                )),
                ..Answer::default()
            };
        }
        Answer {
            fields: vec!["s".into()],
            rows: vec![vec![state(id)]],
            delay: if id == "slow" {
                slow_for
            } else {
                Duration::ZERO
            },
            ..Answer::default()
        }
    });
    let peer = Peer::start(script).await;
    let mut bolt = BoltConfig::new(&format!("bolt://{}", peer.addr), "neo4j", "secret");
    bolt.max_connections = 1;
    tune(&mut bolt);
    let store = BoltStore::connect(bolt, sample_models(), StoreConfig::default())
        .await
        .expect("a store over the scripted peer");
    (Arc::new(store), peer, hooks)
}

/// Lookups of a few twins each read their own answer.
async fn lookups_read_their_own(store: &BoltStore) {
    for id in ["a", "b", "c"] {
        let t = store
            .twin(id)
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"))
            .unwrap_or_else(|| panic!("{id}: none"));
        assert_eq!(&*t.id, id, "read its own answer");
    }
}

/// Waits (up to 5 s) until the peer has stopped `n` statements.
async fn stopped(peer: &Peer, n: usize) {
    for _ in 0..500 {
        if peer.seen.stopped.load(Ordering::Acquire) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the peer stopped {} statements, expected {n}: the abandoned connection stayed open",
        peer.seen.stopped.load(Ordering::Acquire)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_abandoned_before_its_answer_leaves_no_reply_owed() {
    let (store, peer, hooks) = store_over_peer(Duration::from_millis(300), |_| {}).await;
    // Abandoned after its RUN reached the database, before the answer.
    let s = store.clone();
    let read = tokio::spawn(async move { s.twin("slow").await });
    hooks.slow_asked.notified().await;
    read.abort();
    assert!(read.await.is_err(), "the slow read was abandoned");
    // The lookups take the one read connection after the abandoned
    // statement's answer was read to its end: the same connection, clean.
    lookups_read_their_own(&store).await;
    let c = store.connections().reads;
    assert_eq!((c.opened, c.dropped, c.abandoned), (1, 0, 1), "{c:?}");
    assert_eq!(peer.seen.stopped.load(Ordering::Acquire), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_abandoned_between_two_batches_leaves_no_reply_owed() {
    let (store, peer, hooks) = store_over_peer(Duration::from_millis(300), |_| {}).await;
    let ids: Vec<String> = (0..BULK).map(|i| format!("bulk-{i}")).collect();
    let s = store.clone();
    let read = tokio::spawn(async move { s.twins_by_ids(&ids).await });
    // The first batch was read, the second asked for and not yet sent.
    hooks.bulk_more.notified().await;
    read.abort();
    assert!(read.await.is_err(), "the bulk read was abandoned");
    lookups_read_their_own(&store).await;
    let c = store.connections().reads;
    assert_eq!((c.opened, c.dropped, c.abandoned), (1, 0, 1), "{c:?}");
    assert_eq!(peer.seen.stopped.load(Ordering::Acquire), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_read_still_running_at_its_budget_is_stopped() {
    let (store, peer, hooks) = store_over_peer(Duration::from_secs(30), |b| {
        b.statement_timeout = Duration::from_millis(500);
    })
    .await;
    let s = store.clone();
    let read = tokio::spawn(async move { s.twin("slow").await });
    hooks.slow_asked.notified().await;
    read.abort();
    assert!(read.await.is_err(), "the slow read was abandoned");
    // At its budget its connection is closed, which stops the statement
    // (long before its 30 s), and not used again.
    stopped(&peer, 1).await;
    lookups_read_their_own(&store).await;
    let c = store.connections().reads;
    assert_eq!((c.opened, c.dropped, c.abandoned), (2, 1, 1), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_its_budget_is_stopped_and_fails_with_store_timeout() {
    let (store, peer, _) = store_over_peer(Duration::from_secs(30), |b| {
        b.statement_timeout = Duration::from_millis(300);
    })
    .await;
    let started = std::time::Instant::now();
    let e = store.twin("slow").await.expect_err("past its budget");
    assert!(matches!(e, StoreError::Timeout(_)), "{e:?}");
    assert_eq!(e.code(), Code::StoreTimeout);
    assert!(e.to_string().contains("budget"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failed at its budget, not at the statement's end"
    );
    stopped(&peer, 1).await;
    lookups_read_their_own(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_filling_their_connections_leave_the_tailer_and_readiness_alone() {
    let (store, _peer, hooks) = store_over_peer(Duration::from_secs(30), |b| {
        b.poll = Duration::from_millis(20);
        b.statement_timeout = Duration::from_millis(1500);
    })
    .await;
    // The one connection for reads is taken by a slow statement.
    let s = store.clone();
    let slow = tokio::spawn(async move { s.twin("slow").await });
    hooks.slow_asked.notified().await;
    let before = hooks.log_reads.load(Ordering::Acquire);
    let mut ready_throughout = true;
    let mut waiting = None;
    for step in 0..40 {
        ready_throughout &= store.is_ready();
        if step == 20 {
            // Another read waits for the connection (its budget, the wait
            // included, ends after the slow one's).
            let s = store.clone();
            waiting = Some(tokio::spawn(async move { s.twin("a").await }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting = waiting.expect("started");
    let during = hooks.log_reads.load(Ordering::Acquire) - before;
    assert!(
        !waiting.is_finished(),
        "the other read waits for the connection"
    );
    assert!(
        during >= 5,
        "the tailer read the log {during} times in 0.8 s while reads were busy"
    );
    assert!(ready_throughout, "ready while only user reads are busy");
    // The slow statement is cut at its budget; the connection it held is
    // replaced and the waiting read gets its own answer.
    let e = slow
        .await
        .expect("the slow read")
        .expect_err("past its budget");
    assert_eq!(e.code(), Code::StoreTimeout, "{e}");
    let t = waiting
        .await
        .expect("the waiting read")
        .expect("answered once the slow one was cut")
        .expect("twin a");
    assert_eq!(&*t.id, "a");
    let c = store.connections().reads;
    assert_eq!((c.size, c.dropped), (1, 1), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_database_ends_is_unavailable_and_its_connection_replaced() {
    let (store, _peer, _) = store_over_peer(Duration::ZERO, |_| {}).await;
    let e = store.twin("ended").await.expect_err("the session ended");
    assert_eq!(e.code(), Code::StoreUnavailable, "{e}");
    assert!(e.to_string().contains("no longer valid"), "{e}");
    lookups_read_their_own(&store).await;
    let c = store.connections().reads;
    assert_eq!((c.opened, c.dropped), (2, 1), "a new connection: {c:?}");
}

/// Readiness over `window`: whether the store said ready at every look.
async fn ready_throughout(store: &BoltStore, window: Duration) -> bool {
    let started = std::time::Instant::now();
    let mut ready = true;
    while started.elapsed() < window {
        ready &= store.is_ready();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ready
}

/// A database that stops answering on the open connection and refuses new
/// ones (as one shutting down does) is reported unavailable within
/// seconds, not after a whole statement budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_is_unavailable_within_seconds() {
    let (store, peer, hooks) = store_over_peer(Duration::ZERO, |b| {
        b.poll = Duration::from_millis(20);
        b.statement_timeout = Duration::from_secs(30);
    })
    .await;
    assert!(ready_throughout(&store, Duration::from_millis(200)).await);
    hooks.log_hangs.store(true, Ordering::Release);
    peer.seen.refuse.store(true, Ordering::Release);
    let started = std::time::Instant::now();
    while store.is_ready() {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "still ready 8 s after the database stopped answering"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = store.twin("a").await.expect_err("unavailable");
    assert_eq!(e.code(), Code::StoreUnavailable, "{e}");
}

/// A database that is slow to read the log but answers a probe on a new
/// connection is busy, not down: the store stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_database_stays_ready() {
    let (store, _peer, hooks) = store_over_peer(Duration::ZERO, |b| {
        b.poll = Duration::from_millis(20);
        b.statement_timeout = Duration::from_secs(30);
    })
    .await;
    hooks.log_hangs.store(true, Ordering::Release);
    assert!(
        ready_throughout(&store, Duration::from_secs(4)).await,
        "a slow log read with the database answering probes is not an outage"
    );
    lookups_read_their_own(&store).await;
}
