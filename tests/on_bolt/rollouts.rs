//! A rollout end to end over the Neo4j store: configuration, staged
//! rollout with simulated devices, an abort that rolls back, and the
//! records read back by a second service over the same database.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use twingraph::simulator::{Behaviour, Simulator};
use twingraph::store::{GraphStore, StoreConfig};

use crate::rollouts::run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_and_a_rollback_on_neo4j() {
    let store: Arc<dyn GraphStore> =
        Arc::new(crate::bolt::store(crate::support::sample_models(), StoreConfig::default()).await);
    run::load(&*store, 60).await;
    let server = crate::server::start_on(store.clone()).await;
    run::configure(server.addr).await;
    let before = run::setpoints(&*store, 60).await;
    {
        let _devices = Simulator::start(store.clone(), Behaviour::default());
        let id = run::start(
            server.addr,
            json!({"ids": (0..30).map(run::pump).collect::<Vec<_>>()}),
            json!({"stages": [{"count": 5}, {}]}),
        )
        .await;
        let s = run::until(server.addr, &id, "SUCCEEDED", Duration::from_secs(60)).await;
        assert_eq!(s["counts"]["succeeded"], 30, "{s}");
    }
    // Every device rejects: the canary trips the abort criterion.
    let rejecting = Behaviour {
        reject_rate: 1.0,
        ..Behaviour::default()
    };
    let _devices = Simulator::start(store.clone(), rejecting);
    let id = run::start(
        server.addr,
        json!({"ids": (30..60).map(run::pump).collect::<Vec<_>>()}),
        json!({"stages": [{"count": 5}, {}],
               "abort": [{"failure": "REJECTED", "thresholdPercent": 50, "minExecuted": 3}]}),
    )
    .await;
    run::until(server.addr, &id, "ROLLED_BACK", Duration::from_secs(60)).await;
    let after = run::setpoints(&*store, 60).await;
    for i in 30..60 {
        assert_eq!(
            after[&run::pump(i)],
            before[&run::pump(i)],
            "{}",
            run::pump(i)
        );
    }
    for i in 0..30 {
        assert_eq!(after[&run::pump(i)], json!(42.0));
    }
    // Another service over the same database folds the same records.
    let other = twingraph::rollout::Rollouts::start(store.clone())
        .await
        .expect("second service");
    {
        let state = other.state();
        let r = state.runs.get(&id).expect("rollout read back");
        assert_eq!(r.state, twingraph::rollout::run::RolloutState::RolledBack);
        assert_eq!(r.counts.rolled_back + r.counts.pending, 30);
    }
    other.stop().await;
    server.shutdown().await;
}

/// Two replicas, each with its own connection to one Neo4j database: one
/// scheduler between them, requests decided as if one after the other,
/// and a takeover that applies no twin twice (see
/// [`crate::rollouts::two_replicas`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_scheduler_on_neo4j() {
    let bolt = crate::bolt::fresh_database().await;
    let open = || super::replicas::shared_replica(&bolt);
    let (a, b) = (open().await, open().await);
    crate::rollouts::two_replicas(a, b).await;
}
