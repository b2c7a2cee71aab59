//! Requests abandoned in the middle of an exchange with the database (a
//! client gone, a request dropped, a timeout) never leave a pooled
//! connection owing replies: the next request on that connection reads its
//! own answer. Against a scripted Bolt server (`bolt_peer`), so the moment
//! of abandonment is exact.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use twingraph::store::bolt::{BoltConfig, BoltStore};
use twingraph::store::{GraphStore, StoreConfig};
use twingraph::twin::Twin;

use crate::bolt_peer::{Answer, Peer, Script};
use crate::support::sample_models;

const PUMP: &str = "dtmi:twingraph:isa95:Pump;1";

/// A store over a peer that answers twin lookups (the twin `slow` after
/// `slow_for`, saying on `asked` when its RUN arrived), on one pooled
/// connection.
async fn store_over_peer(slow_for: Duration, asked: Arc<Notify>) -> Arc<BoltStore> {
    let script: Script = Arc::new(move |query, params| {
        if !query.contains("RETURN n.state AS s") || !query.contains("{id: $id}") {
            return Answer::default();
        }
        let id = params.get("id").and_then(Value::as_str).unwrap_or_default();
        let state = serde_json::to_string(&Twin::blank(id, PUMP)).expect("twin");
        if id == "slow" {
            asked.notify_one();
        }
        Answer {
            fields: vec!["s".into()],
            rows: vec![vec![Value::from(state)]],
            delay: if id == "slow" {
                slow_for
            } else {
                Duration::ZERO
            },
        }
    });
    let peer = Peer::start(script).await;
    let mut bolt = BoltConfig::new(&format!("bolt://{}", peer.addr), "neo4j", "secret");
    bolt.max_connections = 1;
    // The event tailer stays away from the one connection.
    bolt.poll = Duration::from_secs(3600);
    Arc::new(
        BoltStore::connect(bolt, sample_models(), StoreConfig::default())
            .await
            .expect("a store over the scripted peer"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_abandoned_before_its_answer_leaves_no_reply_owed() {
    let asked = Arc::new(Notify::new());
    let store = store_over_peer(Duration::from_millis(300), asked.clone()).await;
    // Abandoned after its RUN reached the database, before the answer.
    let s = store.clone();
    let read = tokio::spawn(async move { s.twin("slow").await });
    asked.notified().await;
    read.abort();
    assert!(read.await.is_err(), "the slow read was abandoned");
    for id in ["a", "b", "c"] {
        let t = store
            .twin(id)
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"))
            .unwrap_or_else(|| panic!("{id}: none"));
        assert_eq!(&*t.id, id, "read its own answer");
    }
}
