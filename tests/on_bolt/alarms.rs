//! Alarms over the Neo4j store, with two server replicas on one database:
//! both engines evaluate every rule, and each alarm is still raised,
//! acknowledged and cleared once (the records go through the `alarms`
//! stream's expected end), and either replica's API sees it.

use std::sync::Arc;

use serde_json::json;
use twingraph::store::GraphStore;

use super::replicas::shared_replica;
use crate::alarms::{create_rule, health, m, ok, plant, report, until_alarm};
use crate::bolt::fresh_database;
use crate::server::start_on;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_raise_acknowledge_and_clear_each_alarm_once() {
    let bolt = fresh_database().await;
    let (a, b): (Arc<dyn GraphStore>, Arc<dyn GraphStore>) =
        (shared_replica(&bolt).await, shared_replica(&bolt).await);
    plant(&a).await;
    let (sa, sb) = (start_on(a.clone()).await, start_on(b.clone()).await);
    create_rule(
        sa.addr,
        "hot",
        json!({"model": m("Pump"), "condition": {"field": "power", "above": 7.5}, "severity": "HIGH", "message": "{twin} hot"}),
    )
    .await;
    report(sb.addr, "p1", json!({"power": 9.0})).await;
    // Raised once, seen through either replica.
    let on_a = until_alarm(sa.addr, "hot/p1", "raise on A", |a| a["active"] == true).await;
    assert_eq!(on_a["state"], "ACTIVE_UNACKNOWLEDGED");
    until_alarm(sb.addr, "hot/p1", "raise on B", |a| a["active"] == true).await;
    assert_eq!(health(sa.addr, "site").await["status"], "ALARM");
    ok(
        sb.addr,
        r#"mutation { acknowledgeAlarm(id: "hot/p1") { state } }"#,
        json!({}),
    )
    .await;
    until_alarm(sa.addr, "hot/p1", "acknowledged on A", |a| {
        a["state"] == "ACTIVE_ACKNOWLEDGED"
    })
    .await;
    report(sa.addr, "p1", json!({"power": 5.0})).await;
    until_alarm(sb.addr, "hot/p1", "clear on B", |a| a["state"] == "NORMAL").await;
    until_alarm(sa.addr, "hot/p1", "clear on A", |a| a["state"] == "NORMAL").await;
    // Let both engines look again; still one record of each.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let events = a.events_after(0, 100_000).await.expect("log");
    let count = |kind: &str| events.iter().filter(|e| e.change.kind() == kind).count();
    assert_eq!(count("alarmRaised"), 1, "raised once by two engines");
    assert_eq!(count("alarmAcknowledged"), 1);
    assert_eq!(count("alarmCleared"), 1, "cleared once by two engines");
    assert_eq!(health(sb.addr, "site").await["status"], "OK");
    sa.shutdown().await;
    sb.shutdown().await;
}
