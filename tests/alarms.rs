//! Alarms through the real server: rules raise, propagate, acknowledge,
//! clear and shelve alarms (ISA-18.2 states); delays, deadbands and stale
//! data on a stepped clock; invalid rules and requests refused with their
//! codes and nothing written; scoped callers see and handle only their
//! subtree; the subscriptions push alarm and health changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use twingraph::alarms::{Alarms, Options};
use twingraph::store::{GraphStore, Store, StoreConfig};
use twingraph::twin::Batch;
use twingraph::twin::clock::SteppedClock;

use crate::server::{gql, serve_alarms, start_on};
use crate::support::sample_models;

const WAIT: Duration = Duration::from_secs(10);

/// The stable reason of the first error.
pub(crate) fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["reason"]
        .as_str()
        .unwrap_or("")
}

pub(crate) fn m(n: &str) -> String {
    format!("dtmi:twingraph:isa95:{n};1")
}

/// site > area > line1 > cell1 > p1, p2; and line2 > cell2 > p3.
pub(crate) async fn plant(store: &Arc<dyn GraphStore>) {
    let mut ops = vec![
        json!({"op": "createTwin", "id": "site", "model": m("Site")}),
        json!({"op": "createTwin", "id": "area", "model": m("Area")}),
        json!({"op": "createRelationship", "source": "site", "name": "contains", "target": "area"}),
    ];
    for (line, cell, pumps) in [
        ("line1", "cell1", &["p1", "p2"][..]),
        ("line2", "cell2", &["p3"][..]),
    ] {
        ops.push(json!({"op": "createTwin", "id": line, "model": m("ProductionLine")}));
        ops.push(json!({"op": "createTwin", "id": cell, "model": m("WorkCell")}));
        ops.push(json!({"op": "createRelationship", "source": "area", "name": "contains", "target": line}));
        ops.push(
            json!({"op": "createRelationship", "source": line, "name": "contains", "target": cell}),
        );
        for p in pumps {
            ops.push(json!({"op": "createTwin", "id": p, "model": m("Pump"), "reported": {"power": 5.0}}));
            ops.push(json!({"op": "createRelationship", "source": cell, "name": "contains", "target": p}));
        }
    }
    let batch = Batch {
        ops: serde_json::from_value(json!(ops)).expect("ops"),
    };
    store.apply(batch, "test").await.expect("plant");
}

pub(crate) async fn ok(addr: SocketAddr, q: &str, vars: Value) -> Value {
    let v = gql(addr, q, vars).await;
    assert!(v.get("errors").is_none(), "{q}: {v}");
    v["data"].clone()
}

pub(crate) async fn report(addr: SocketAddr, twin: &str, patch: Value) {
    ok(
        addr,
        "mutation($t: ID!, $p: JSON!) { patchReported(id: $t, patch: $p) { version } }",
        json!({"t": twin, "p": patch}),
    )
    .await;
}

const ALARM: &str = "id state severity active acknowledged shelved message value twinId containers acknowledgedBy comments { text by } history { kind state by }";

pub(crate) async fn alarm(addr: SocketAddr, id: &str) -> Value {
    let q = format!("query($id: ID!) {{ alarm(id: $id) {{ {ALARM} }} }}");
    ok(addr, &q, json!({"id": id})).await["alarm"].clone()
}

pub(crate) async fn health(addr: SocketAddr, twin: &str) -> Value {
    ok(
        addr,
        "query($t: ID!) { twinHealth(twin: $t) { status worstSeverity score activeCounts { critical high medium low total } } }",
        json!({"t": twin}),
    )
    .await["twinHealth"]
        .clone()
}

/// Polls until `f` holds of the alarm (or its absence), or fails.
pub(crate) async fn until_alarm(
    addr: SocketAddr,
    id: &str,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let a = alarm(addr, id).await;
        if f(&a) {
            return a;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id}: {what} never happened; last {a}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn state(a: &Value) -> &str {
    a["state"].as_str().unwrap_or("")
}

pub(crate) async fn create_rule(addr: SocketAddr, name: &str, rule: Value) -> Value {
    ok(
        addr,
        "mutation($n: String!, $r: AlarmRuleInput!) { createAlarmRule(name: $n, rule: $r) { name version model severity activeAlarms condition { type field limit deadband } } }",
        json!({"n": name, "r": rule}),
    )
    .await["createAlarmRule"]
        .clone()
}

#[tokio::test]
async fn rules_raise_propagate_acknowledge_clear_and_shelve_alarms() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    plant(&store).await;
    let s = start_on(store.clone()).await;
    let rule = create_rule(
        s.addr,
        "pump-hot",
        json!({
            "model": m("Equipment"),
            "condition": {"field": "power", "above": 7.5},
            "severity": "HIGH",
            "message": "{twin}: power {value} kW above {limit} kW",
            "depth": 3
        }),
    )
    .await;
    assert_eq!(rule["version"], 1);
    assert_eq!(rule["condition"]["type"], "ABOVE");
    // A rule on Equipment applies to pumps (a subtype).
    report(s.addr, "p1", json!({"power": 8.25})).await;
    let a = until_alarm(s.addr, "pump-hot/p1", "raise", |a| !a.is_null()).await;
    assert_eq!(state(&a), "ACTIVE_UNACKNOWLEDGED");
    assert_eq!(a["severity"], "HIGH");
    assert_eq!(a["message"], "p1: power 8.25 kW above 7.5 kW");
    assert_eq!(a["value"], 8.25);
    assert_eq!(a["containers"], json!(["cell1", "line1", "area", "site"]));
    // Propagation: the pump, its cell, line and area (depth 3), not the site.
    for twin in ["p1", "cell1", "line1", "area"] {
        let h = health(s.addr, twin).await;
        assert_eq!(h["status"], "ALARM", "{twin}: {h}");
        assert_eq!(h["worstSeverity"], "HIGH");
        assert_eq!(h["activeCounts"]["high"], 1);
        assert_eq!(h["score"], 80);
    }
    assert_eq!(health(s.addr, "site").await["status"], "OK");
    assert_eq!(health(s.addr, "line2").await["activeCounts"]["total"], 0);
    // The typed and generic twin fields say the same.
    let v = ok(
        s.addr,
        r#"{ line: twin(id: "line1") { health { status } alarms { id } below: alarms(below: true) { id state } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["line"]["health"]["status"], "ALARM");
    assert_eq!(v["line"]["alarms"], json!([]));
    assert_eq!(v["line"]["below"][0]["id"], "pump-hot/p1");
    // Lists under a twin, by severity and state.
    let list = ok(
        s.addr,
        r#"{ a: alarms(under: "area") { totalCount edges { node { id } } }
             low: alarms(under: "area", severity: [LOW]) { totalCount }
             other: alarms(under: "line2") { totalCount } }"#,
        json!({}),
    )
    .await;
    assert_eq!(list["a"]["totalCount"], 1);
    assert_eq!(list["low"]["totalCount"], 0);
    assert_eq!(list["other"]["totalCount"], 0);

    // Acknowledged, then cleared: NORMAL.
    let a = ok(
        s.addr,
        r#"mutation { acknowledgeAlarm(id: "pump-hot/p1", comment: "crew on the way") { state acknowledgedBy comments { text by } } }"#,
        json!({}),
    )
    .await["acknowledgeAlarm"]
        .clone();
    assert_eq!(state(&a), "ACTIVE_ACKNOWLEDGED");
    assert_eq!(a["acknowledgedBy"], "anonymous");
    assert_eq!(a["comments"][0]["text"], "crew on the way");
    report(s.addr, "p1", json!({"power": 6.0})).await;
    let a = until_alarm(s.addr, "pump-hot/p1", "clear", |a| state(a) == "NORMAL").await;
    assert_eq!(a["active"], false);
    assert_eq!(health(s.addr, "area").await["status"], "OK");
    // NORMAL alarms leave the default list, not the NORMAL one.
    let list = ok(
        s.addr,
        r#"{ a: alarms { totalCount } n: alarms(state: [NORMAL]) { totalCount } }"#,
        json!({}),
    )
    .await;
    assert_eq!(list["a"]["totalCount"], 0);
    assert_eq!(list["n"]["totalCount"], 1);

    // Raised and cleared before anyone acknowledged: CLEARED_UNACKNOWLEDGED.
    report(s.addr, "p1", json!({"power": 9.0})).await;
    until_alarm(s.addr, "pump-hot/p1", "raise again", |a| {
        state(a) == "ACTIVE_UNACKNOWLEDGED"
    })
    .await;
    report(s.addr, "p1", json!({"power": 1.0})).await;
    until_alarm(s.addr, "pump-hot/p1", "clear unacknowledged", |a| {
        state(a) == "CLEARED_UNACKNOWLEDGED"
    })
    .await;
    let a = ok(
        s.addr,
        r#"mutation { acknowledgeAlarm(id: "pump-hot/p1") { state } }"#,
        json!({}),
    )
    .await;
    assert_eq!(a["acknowledgeAlarm"]["state"], "NORMAL");

    // Shelved: active, but in no health; unshelved: counted again.
    report(s.addr, "p2", json!({"power": 10.0})).await;
    until_alarm(s.addr, "pump-hot/p2", "raise p2", |a| a["active"] == true).await;
    assert_eq!(health(s.addr, "cell1").await["activeCounts"]["high"], 1);
    let a = ok(
        s.addr,
        r#"mutation { shelveAlarm(id: "pump-hot/p2", forSeconds: 3600, comment: "sensor swap") { shelved state } }"#,
        json!({}),
    )
    .await;
    assert_eq!(a["shelveAlarm"]["shelved"], true);
    assert_eq!(a["shelveAlarm"]["state"], "ACTIVE_UNACKNOWLEDGED");
    assert_eq!(health(s.addr, "cell1").await["status"], "OK");
    assert_eq!(health(s.addr, "p2").await["status"], "OK");
    ok(
        s.addr,
        r#"mutation { unshelveAlarm(id: "pump-hot/p2") { shelved } }"#,
        json!({}),
    )
    .await;
    assert_eq!(health(s.addr, "cell1").await["status"], "ALARM");
    ok(
        s.addr,
        r#"mutation { commentAlarm(id: "pump-hot/p2", text: "bearing noise too") { id } }"#,
        json!({}),
    )
    .await;
    let a = alarm(s.addr, "pump-hot/p2").await;
    let kinds: Vec<&str> = a["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|t| t["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["RAISED", "SHELVED", "UNSHELVED", "COMMENTED"]);
    assert_eq!(a["history"][0]["by"], "alarm rules");
    assert_eq!(a["comments"].as_array().map(Vec::len), Some(2));

    // Every change is an event: the audit says who acknowledged.
    let events = store.events_after(0, 10_000).await.expect("log");
    let acks: Vec<&twingraph::twin::Event> = events
        .iter()
        .filter(|e| e.change.kind() == "alarmAcknowledged")
        .collect();
    assert_eq!(acks.len(), 2);
    assert!(acks.iter().all(|e| e.actor == "anonymous"));

    // A new version with a higher limit clears what no longer holds; one
    // with a new severity re-raises what does.
    ok(
        s.addr,
        r#"mutation { updateAlarmRule(name: "pump-hot", rule: {model: "dtmi:twingraph:isa95:Equipment;1", condition: {field: "power", above: 10.5}, severity: CRITICAL, message: "{twin} hot"}) { version } }"#,
        json!({}),
    )
    .await;
    report(s.addr, "p3", json!({"power": 11.0})).await;
    let a = until_alarm(s.addr, "pump-hot/p3", "raise p3 under v2", |a| {
        a["active"] == true
    })
    .await;
    assert_eq!(a["severity"], "CRITICAL");
    until_alarm(s.addr, "pump-hot/p2", "p2 clears under v2", |a| {
        a["active"] == false
    })
    .await;
    let r = ok(
        s.addr,
        r#"{ alarmRule(name: "pump-hot") { version activeAlarms versions { version severity } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(r["alarmRule"]["version"], 2);
    assert_eq!(r["alarmRule"]["activeAlarms"], 1);
    assert_eq!(r["alarmRule"]["versions"][0]["severity"], "HIGH");

    // Deleting the rule clears its alarms.
    ok(
        s.addr,
        r#"mutation { deleteAlarmRule(name: "pump-hot") }"#,
        json!({}),
    )
    .await;
    assert_eq!(health(s.addr, "line2").await["status"], "OK");
    assert!(alarm(s.addr, "pump-hot/p3").await.is_null());
    s.shutdown().await;
}

#[tokio::test]
async fn invalid_rules_and_requests_are_refused_with_their_code_and_nothing_written() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    plant(&store).await;
    let s = start_on(store.clone()).await;
    let before = store.last_seq();
    let refuse = |rule: Value, reason: &'static str, path: &'static str| {
        let addr = s.addr;
        async move {
            let v = gql(
                addr,
                "mutation($r: AlarmRuleInput!) { createAlarmRule(name: \"r\", rule: $r) { name } }",
                json!({"r": rule}),
            )
            .await;
            assert_eq!(code(&v), reason, "{rule}: {v}");
            assert_eq!(v["errors"][0]["extensions"]["path"], path, "{rule}: {v}");
        }
    };
    let base = |condition: Value| json!({"model": m("Pump"), "condition": condition, "severity": "LOW", "message": "{twin}"});
    refuse(
        base(json!({"field": "flowRat", "above": 1})),
        "invalid_alarm_rule",
        "condition.field",
    )
    .await;
    refuse(
        base(json!({"field": "manufacturer", "above": 1})),
        "invalid_alarm_rule",
        "condition.field",
    )
    .await;
    refuse(
        base(json!({"field": "runState", "equals": "exploded"})),
        "invalid_alarm_rule",
        "condition.value",
    )
    .await;
    refuse(
        base(json!({"field": "power", "above": 1, "below": 0})),
        "invalid_alarm_rule",
        "condition",
    )
    .await;
    refuse(
        base(json!({"field": "power", "outside": {"low": 5, "high": 1}})),
        "invalid_alarm_rule",
        "condition.high",
    )
    .await;
    refuse(
        base(json!({"field": "power", "above": 1, "deadband": -1})),
        "invalid_alarm_rule",
        "condition.deadband",
    )
    .await;
    refuse(
        base(json!({"field": "drive.nothing", "above": 1})),
        "invalid_alarm_rule",
        "condition.field",
    )
    .await;
    refuse(
        json!({"model": m("Pump"), "condition": {"field": "power", "above": 1}, "severity": "LOW", "message": "{twin} {colour}"}),
        "invalid_alarm_rule",
        "message",
    )
    .await;
    refuse(
        json!({"model": "dtmi:x:Nothing;1", "condition": {"field": "power", "above": 1}, "severity": "LOW", "message": "m"}),
        "invalid_alarm_rule",
        "model",
    )
    .await;
    refuse(
        json!({"model": m("Pump"), "condition": {"staleSeconds": 60}, "severity": "LOW", "message": "m", "onDelaySeconds": 700000}),
        "invalid_alarm_rule",
        "onDelay",
    )
    .await;
    assert_eq!(store.last_seq(), before, "nothing was written");
    // A rule on a Component's field, and an enum equality, are fine.
    create_rule(
        s.addr,
        "drive-hot",
        json!({"model": m("Pump"), "condition": {"field": "drive.windingTemperature", "above": 80}, "severity": "MEDIUM", "message": "{twin} drive {value}"}),
    )
    .await;
    create_rule(
        s.addr,
        "fault",
        json!({"model": m("Equipment"), "condition": {"field": "runState", "equals": "fault"}, "severity": "CRITICAL", "message": "{twin} in fault"}),
    )
    .await;
    let v = gql(
        s.addr,
        r#"mutation { createAlarmRule(name: "fault", rule: {model: "dtmi:twingraph:isa95:Pump;1", condition: {field: "power", above: 1}, severity: LOW, message: "m"}) { name } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "alarm_rule_exists", "{v}");
    let v = gql(
        s.addr,
        r#"mutation { updateAlarmRule(name: "fault", rule: {model: "dtmi:twingraph:isa95:Pump;1", condition: {field: "power", above: 1}, severity: LOW, message: "m"}) { name } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "invalid_alarm_rule", "a rule's model stays: {v}");
    let v = gql(
        s.addr,
        r#"mutation { deleteAlarmRule(name: "nope") }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "alarm_rule_not_found", "{v}");
    let v = gql(
        s.addr,
        r#"mutation { acknowledgeAlarm(id: "fault/p9") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "alarm_not_found", "{v}");
    // A fault raises; a shelf in the past or too far ahead is refused.
    report(s.addr, "p1", json!({"runState": "fault"})).await;
    until_alarm(s.addr, "fault/p1", "raise", |a| a["active"] == true).await;
    let seq = store.last_seq();
    for (args, why) in [
        (r#"until: "2001-01-01T00:00:00Z""#, "past"),
        ("forSeconds: 9999999", "too far"),
        ("forSeconds: 5, until: \"2031-01-01T00:00:00Z\"", "both"),
    ] {
        let q = format!(r#"mutation {{ shelveAlarm(id: "fault/p1", {args}) {{ id }} }}"#);
        let v = gql(s.addr, &q, json!({})).await;
        assert_eq!(code(&v), "invalid_alarm_request", "{why}: {v}");
    }
    let v = gql(
        s.addr,
        r#"mutation($t: String!) { commentAlarm(id: "fault/p1", text: $t) { id } }"#,
        json!({"t": "x".repeat(2001)}),
    )
    .await;
    assert_eq!(code(&v), "invalid_alarm_request", "{v}");
    assert_eq!(store.last_seq(), seq, "nothing was written");
    s.shutdown().await;
}

/// Steps the clock, then waits for two full passes of the engine (the
/// second began after the step).
async fn step(alarms: &Alarms, clock: &SteppedClock, by: Duration) {
    clock.advance(by);
    let start = alarms.passes();
    let deadline = tokio::time::Instant::now() + WAIT;
    while alarms.passes() < start + 2 {
        assert!(tokio::time::Instant::now() < deadline, "the engine stopped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn delays_deadbands_and_stale_data_follow_the_stepped_clock() {
    let clock = Arc::new(SteppedClock::new());
    let store: Arc<dyn GraphStore> = Arc::new(Store::in_memory(
        sample_models(),
        StoreConfig {
            clock: clock.clone(),
            ..StoreConfig::default()
        },
    ));
    plant(&store).await;
    let alarms = Alarms::start(
        store.clone(),
        Options {
            clock: clock.clone(),
            tick: Duration::from_millis(5),
            evaluate: true,
        },
        std::future::pending(),
    )
    .await
    .expect("alarms");
    let s = serve_alarms(store.clone(), alarms.clone()).await;
    create_rule(
        s.addr,
        "hot",
        json!({
            "model": m("Pump"),
            "condition": {"field": "bearingTemperature", "above": 80, "deadband": 5},
            "severity": "HIGH",
            "message": "{twin} bearing {value} °C",
            "onDelaySeconds": 30,
            "offDelaySeconds": 60
        }),
    )
    .await;
    create_rule(
        s.addr,
        "silent",
        json!({
            "model": m("Pump"),
            "condition": {"field": "flowRate", "staleSeconds": 120},
            "severity": "MEDIUM",
            "message": "{twin}: no flow rate for {limit}"
        }),
    )
    .await;
    for p in ["p1", "p2", "p3"] {
        report(s.addr, p, json!({"flowRate": 10.0})).await;
    }
    step(&alarms, &clock, Duration::from_secs(1)).await;
    report(s.addr, "p1", json!({"bearingTemperature": 85.0})).await;
    step(&alarms, &clock, Duration::from_secs(20)).await;
    assert!(alarm(s.addr, "hot/p1").await.is_null(), "on-delay not over");
    step(&alarms, &clock, Duration::from_secs(15)).await;
    let a = alarm(s.addr, "hot/p1").await;
    assert_eq!(a["active"], true, "raised after 30 s: {a}");
    // Back under the limit but within the deadband: still active.
    report(s.addr, "p1", json!({"bearingTemperature": 77.0})).await;
    step(&alarms, &clock, Duration::from_secs(100)).await;
    assert_eq!(alarm(s.addr, "hot/p1").await["active"], true, "deadband");
    // Below the deadband: clears after the off-delay, not before.
    report(s.addr, "p1", json!({"bearingTemperature": 74.0})).await;
    step(&alarms, &clock, Duration::from_secs(30)).await;
    assert_eq!(alarm(s.addr, "hot/p1").await["active"], true, "off-delay");
    // A brief spike during the off-delay restarts nothing: it is shorter
    // than the on-delay, and the alarm is still active anyway.
    step(&alarms, &clock, Duration::from_secs(35)).await;
    let a = alarm(s.addr, "hot/p1").await;
    assert_eq!(a["active"], false, "cleared after 60 s: {a}");
    // A spike shorter than the on-delay never raises.
    report(s.addr, "p2", json!({"bearingTemperature": 95.0})).await;
    step(&alarms, &clock, Duration::from_secs(10)).await;
    report(s.addr, "p2", json!({"bearingTemperature": 60.0})).await;
    step(&alarms, &clock, Duration::from_secs(60)).await;
    assert!(alarm(s.addr, "hot/p2").await.is_null(), "spike ignored");

    // Stale data: every pump has been silent for minutes (their alarms
    // are active); all report, then p3 falls silent.
    assert_eq!(alarm(s.addr, "silent/p1").await["active"], true, "stale");
    for p in ["p1", "p2", "p3"] {
        report(s.addr, p, json!({"flowRate": 11.0})).await;
    }
    step(&alarms, &clock, Duration::from_secs(60)).await;
    for p in ["p1", "p2", "p3"] {
        let id = format!("silent/{p}");
        assert_eq!(alarm(s.addr, &id).await["active"], false, "{p} reported");
    }
    for p in ["p1", "p2"] {
        report(s.addr, p, json!({"flowRate": 12.0})).await;
    }
    step(&alarms, &clock, Duration::from_secs(61)).await;
    let a = alarm(s.addr, "silent/p3").await;
    assert_eq!(a["active"], true, "p3 silent 120+ s: {a}");
    assert_eq!(a["message"], "p3: no flow rate for 120 s");
    assert_eq!(alarm(s.addr, "silent/p1").await["active"], false);
    // It reports again: the alarm clears at once (no off-delay).
    report(s.addr, "p3", json!({"flowRate": 9.0})).await;
    until_alarm(s.addr, "silent/p3", "clear on report", |a| {
        a["active"] == false
    })
    .await;

    // A shelf expires by itself.
    report(s.addr, "p2", json!({"bearingTemperature": 99.0})).await;
    step(&alarms, &clock, Duration::from_secs(31)).await;
    assert_eq!(alarm(s.addr, "hot/p2").await["active"], true);
    ok(
        s.addr,
        r#"mutation { shelveAlarm(id: "hot/p2", forSeconds: 600) { shelved } }"#,
        json!({}),
    )
    .await;
    assert_eq!(health(s.addr, "p2").await["status"], "OK");
    step(&alarms, &clock, Duration::from_secs(601)).await;
    let a = until_alarm(s.addr, "hot/p2", "shelf expiry", |a| a["shelved"] == false).await;
    assert_eq!(
        a["history"]
            .as_array()
            .and_then(|h| h.last())
            .map(|t| t["kind"].clone()),
        Some(json!("UNSHELVED"))
    );
    assert_eq!(health(s.addr, "p2").await["status"], "ALARM");
    s.shutdown().await;
}

pub(crate) const SECRET: &str = "alarm-test-secret-of-at-least-32-bytes";

/// A token signed with [`SECRET`] for `sub` with `roles`, scoped to
/// `twins` if given.
pub(crate) fn token(sub: &str, roles: &[&str], twins: Option<&[&str]>) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let mut claims = json!({"sub": sub, "roles": roles, "exp": exp});
    if let Some(t) = twins {
        claims["twins"] = json!(t);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

async fn gql_as(addr: SocketAddr, bearer: &str, query: &str) -> Value {
    gql_vars_as(addr, bearer, query, json!({})).await
}

/// `query` with `vars` as the bearer of `bearer`; the answer (HTTP 200, its
/// codes in the table).
pub(crate) async fn gql_vars_as(addr: SocketAddr, bearer: &str, query: &str, vars: Value) -> Value {
    let body = json!({"query": query, "variables": vars}).to_string();
    let (status, text) = crate::server::http_as(
        addr,
        "POST",
        "/graphql",
        Some(&body),
        Some(&format!("Bearer {bearer}")),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    crate::server::assert_codes_are_in_the_table(&v);
    v
}

#[tokio::test]
async fn a_scoped_caller_sees_and_handles_only_the_alarms_of_its_subtree() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    plant(&store).await;
    let s = crate::server::start_secured(
        store.clone(),
        twingraph::auth::JwtConfig {
            secret: Some(SECRET.into()),
            ..twingraph::auth::JwtConfig::default()
        },
    )
    .await;
    let admin = token("admin", &["admin"], None);
    let line1_ops = token("line1-ops", &["operator"], Some(&["line1"]));
    let line1_viewer = token("line1-viewer", &["viewer"], Some(&["line1"]));
    let scoped_admin = token("line1-admin", &["admin"], Some(&["line1"]));
    let v = gql_as(
        s.addr,
        &admin,
        r#"mutation { createAlarmRule(name: "hot", rule: {model: "dtmi:twingraph:isa95:Pump;1", condition: {field: "power", above: 7}, severity: MEDIUM, message: "{twin} hot"}) { name } }"#,
    )
    .await;
    assert!(v.get("errors").is_none(), "{v}");
    for p in ["p1", "p3"] {
        let q = format!(
            r#"mutation {{ patchReported(id: "{p}", patch: {{power: 9}}) {{ version }} }}"#
        );
        let v = gql_as(s.addr, &admin, &q).await;
        assert!(v.get("errors").is_none(), "{v}");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = gql_as(s.addr, &admin, "{ alarms { totalCount } }").await;
        if v["data"]["alarms"]["totalCount"] == 2 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The scoped operator sees p1's alarm, not p3's, and line1's health.
    let v = gql_as(
        s.addr,
        &line1_ops,
        r#"{ alarms { totalCount edges { node { id } } }
             p3: alarm(id: "hot/p3") { id }
             line: twinHealth(twin: "line1") { status activeCounts { medium } }
             area: twinHealth(twin: "area") { status }
             twin(id: "line1") { health { activeCounts { total } } alarms(below: true) { id } } }"#,
    )
    .await;
    assert!(v.get("errors").is_none(), "{v}");
    let d = &v["data"];
    assert_eq!(d["alarms"]["totalCount"], 1, "{v}");
    assert_eq!(d["alarms"]["edges"][0]["node"]["id"], "hot/p1");
    assert!(d["p3"].is_null());
    assert_eq!(d["line"]["activeCounts"]["medium"], 1);
    assert!(d["area"].is_null(), "area is out of scope: {v}");
    assert_eq!(d["twin"]["health"]["activeCounts"]["total"], 1);
    assert_eq!(d["twin"]["alarms"].as_array().map(Vec::len), Some(1));
    // The admin sees both under the area.
    let v = gql_as(
        s.addr,
        &admin,
        r#"{ twinHealth(twin: "area") { activeCounts { medium } } }"#,
    )
    .await;
    assert_eq!(v["data"]["twinHealth"]["activeCounts"]["medium"], 2, "{v}");
    // Acknowledging out of scope: as if it did not exist.
    let v = gql_as(
        s.addr,
        &line1_ops,
        r#"mutation { acknowledgeAlarm(id: "hot/p3") { id } }"#,
    )
    .await;
    assert_eq!(code(&v), "alarm_not_found", "{v}");
    let v = gql_as(
        s.addr,
        &line1_ops,
        r#"mutation { acknowledgeAlarm(id: "hot/p1") { state acknowledgedBy } }"#,
    )
    .await;
    assert_eq!(
        v["data"]["acknowledgeAlarm"]["state"], "ACTIVE_ACKNOWLEDGED",
        "{v}"
    );
    assert_eq!(
        v["data"]["acknowledgeAlarm"]["acknowledgedBy"],
        "line1-ops (operator)"
    );
    // A viewer may not acknowledge; a scoped admin may not change rules.
    let v = gql_as(
        s.addr,
        &line1_viewer,
        r#"mutation { commentAlarm(id: "hot/p1", text: "x") { id } }"#,
    )
    .await;
    assert_eq!(code(&v), "forbidden", "{v}");
    let v = gql_as(
        s.addr,
        &scoped_admin,
        r#"mutation { deleteAlarmRule(name: "hot") }"#,
    )
    .await;
    assert_eq!(code(&v), "forbidden", "{v}");
    let v = gql_as(
        s.addr,
        &line1_ops,
        r#"mutation { createAlarmRule(name: "x", rule: {model: "dtmi:twingraph:isa95:Pump;1", condition: {field: "power", above: 7}, severity: LOW, message: "m"}) { name } }"#,
    )
    .await;
    assert_eq!(code(&v), "forbidden", "{v}");
    s.shutdown().await;
}

#[tokio::test]
async fn subscribers_get_alarm_and_health_changes_under_their_twin() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    plant(&store).await;
    let s = start_on(store.clone()).await;
    create_rule(
        s.addr,
        "hot",
        json!({"model": m("Pump"), "condition": {"field": "power", "above": 7}, "severity": "HIGH", "message": "{twin} hot"}),
    )
    .await;
    report(s.addr, "p2", json!({"power": 8.0})).await;
    until_alarm(s.addr, "hot/p2", "raise p2", |a| a["active"] == true).await;
    let last_seq = |a: &Value| {
        a["history"]
            .as_array()
            .and_then(|h| h.last())
            .and_then(|t| t["seq"].as_u64())
            .unwrap_or(0)
    };
    const HISTORY: &str = "query { alarm(id: \"hot/p2\") { history { seq } } }";

    // Alarms under line1. The subscription starts asynchronously: comment
    // on p2's alarm until a comment arrives, then drain the others.
    let mut c = crate::live::Client::connect(s.addr, false).await;
    c.subscribe(
        "a",
        r#"subscription { alarmChanged(under: "line1") { kind seq alarm { id state twin { id } } } }"#,
    )
    .await;
    let mut got = loop {
        ok(
            s.addr,
            r#"mutation { commentAlarm(id: "hot/p2", text: "prime") { id } }"#,
            json!({}),
        )
        .await;
        if let Ok(d) = tokio::time::timeout(Duration::from_millis(300), c.next_data("a")).await {
            assert_eq!(d["data"]["alarmChanged"]["kind"], "COMMENTED", "{d}");
            break d["data"]["alarmChanged"]["seq"].as_u64();
        }
    };
    let primed = last_seq(&ok(s.addr, HISTORY, json!({})).await["alarm"]);
    while got != Some(primed) {
        got = c.next_data("a").await["data"]["alarmChanged"]["seq"].as_u64();
    }
    // p3 is not under line1: its alarm is not sent; p1's is.
    report(s.addr, "p3", json!({"power": 8.0})).await;
    until_alarm(s.addr, "hot/p3", "raise p3", |a| a["active"] == true).await;
    report(s.addr, "p1", json!({"power": 9.0})).await;
    let d = c.next_data("a").await;
    let change = &d["data"]["alarmChanged"];
    assert_eq!(change["kind"], "RAISED", "{d}");
    assert_eq!(
        change["alarm"]["id"], "hot/p1",
        "p3's alarm is not under line1"
    );
    assert_eq!(change["alarm"]["twin"]["id"], "p1");
    ok(
        s.addr,
        r#"mutation { acknowledgeAlarm(id: "hot/p1") { id } }"#,
        json!({}),
    )
    .await;
    let d = c.next_data("a").await;
    assert_eq!(d["data"]["alarmChanged"]["kind"], "ACKNOWLEDGED");
    assert_eq!(
        d["data"]["alarmChanged"]["alarm"]["state"],
        "ACTIVE_ACKNOWLEDGED"
    );

    // Health under the area: shelve p2's alarm until a change arrives.
    let mut h = crate::live::Client::connect(s.addr, false).await;
    h.subscribe(
        "h",
        r#"subscription { healthChanged(under: "area") { twinId seq health { status activeCounts { high } } } }"#,
    )
    .await;
    let mut got = loop {
        ok(
            s.addr,
            r#"mutation { shelveAlarm(id: "hot/p2", forSeconds: 600) { id } }"#,
            json!({}),
        )
        .await;
        if let Ok(d) = tokio::time::timeout(Duration::from_millis(300), h.next_data("h")).await {
            break d["data"]["healthChanged"].clone();
        }
    };
    let primed = last_seq(&ok(s.addr, HISTORY, json!({})).await["alarm"]);
    while !(got["seq"].as_u64() == Some(primed) && got["twinId"] == "area") {
        got = h.next_data("h").await["data"]["healthChanged"].clone();
    }
    // p2 back: its twin, cell, line and the area change; not the site
    // (above `under`). The area counts p1, p2 and p3.
    ok(
        s.addr,
        r#"mutation { unshelveAlarm(id: "hot/p2") { id } }"#,
        json!({}),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let d = h.next_data("h").await;
        let c = &d["data"]["healthChanged"];
        assert_eq!(c["health"]["status"], "ALARM", "{d}");
        seen.push((
            c["twinId"].as_str().unwrap_or("").to_owned(),
            c["health"]["activeCounts"]["high"].clone(),
        ));
    }
    assert_eq!(
        seen,
        [
            ("p2".to_owned(), json!(1)),
            ("cell1".to_owned(), json!(2)),
            ("line1".to_owned(), json!(2)),
            ("area".to_owned(), json!(3)),
        ]
    );
    s.shutdown().await;
}

/// The binary on the embedded store: rules, alarms, acknowledgements and
/// comments survive a SIGKILL (they are records in the log), and the engine
/// picks up where it was: an alarm active before the kill clears after.
#[test]
fn alarms_survive_sigkill_of_the_binary_and_the_engine_resumes() {
    let dir = crate::store_conformance::fresh_dir();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (mut child, addr) = crate::server::spawn_serve(&dir);
    rt.block_on(async {
        create_rule(
            addr,
            "bearing",
            json!({"model": m("Pump"), "condition": {"field": "bearingTemperature", "above": 80}, "severity": "HIGH", "message": "{twin} bearing {value}"}),
        )
        .await;
        report(addr, "c0.e0", json!({"bearingTemperature": 95.0})).await;
        report(addr, "c0.e5", json!({"bearingTemperature": 91.0})).await;
        until_alarm(addr, "bearing/c0.e5", "raise", |a| a["active"] == true).await;
        until_alarm(addr, "bearing/c0.e0", "raise", |a| a["active"] == true).await;
        ok(
            addr,
            r#"mutation { acknowledgeAlarm(id: "bearing/c0.e0", comment: "oil ordered") { id } }"#,
            json!({}),
        )
        .await;
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let (child, addr) = crate::server::spawn_serve(&dir);
    rt.block_on(async {
        let a = alarm(addr, "bearing/c0.e0").await;
        assert_eq!(a["state"], "ACTIVE_ACKNOWLEDGED", "{a}");
        assert_eq!(a["comments"][0]["text"], "oil ordered");
        assert_eq!(
            alarm(addr, "bearing/c0.e5").await["state"],
            "ACTIVE_UNACKNOWLEDGED"
        );
        let h = health(addr, "cell0").await;
        assert_eq!(h["activeCounts"]["high"], 2, "{h}");
        // The engine resumed: the value falls back, the alarm clears.
        report(addr, "c0.e0", json!({"bearingTemperature": 60.0})).await;
        until_alarm(addr, "bearing/c0.e0", "clear after restart", |a| {
            a["state"] == "NORMAL"
        })
        .await;
        let v = ok(
            addr,
            r#"{ alarmRule(name: "bearing") { version activeAlarms } }"#,
            json!({}),
        )
        .await;
        assert_eq!(v["alarmRule"], json!({"version": 1, "activeAlarms": 1}));
    });
    crate::server::stop_serve(child);
}

const SUSPECT: &str = "id state active suspect severity message value evidence { observed expectedLow expectedHigh score }";

async fn suspect(addr: SocketAddr, id: &str) -> Value {
    let q = format!("query($id: ID!) {{ alarm(id: $id) {{ {SUSPECT} }} }}");
    ok(addr, &q, json!({"id": id})).await["alarm"].clone()
}

/// Detectors through the real server: an ANOMALY rule raises a SUSPECT
/// alarm with its evidence on a value unlike the pump's last reports (and
/// clears when they are usual again); a CHANGE_POINT rule one on a level
/// that shifted and stays (not on a spike), until it comes back; a PEERS
/// rule flags the pump of a cell that runs unlike the cell's others, on a
/// stepped clock; invalid detector settings are refused with their path.
#[tokio::test]
async fn detectors_raise_suspect_alarms_with_their_evidence() {
    let clock = Arc::new(SteppedClock::new());
    let store: Arc<dyn GraphStore> = Arc::new(Store::in_memory(
        sample_models(),
        StoreConfig {
            clock: clock.clone(),
            ..StoreConfig::default()
        },
    ));
    plant(&store).await;
    // Two more pumps in cell1: four peers (p1, p2, p4, p5).
    let batch = Batch {
        ops: serde_json::from_value(json!([
            {"op": "createTwin", "id": "p4", "model": m("Pump")},
            {"op": "createRelationship", "source": "cell1", "name": "contains", "target": "p4"},
            {"op": "createTwin", "id": "p5", "model": m("Pump")},
            {"op": "createRelationship", "source": "cell1", "name": "contains", "target": "p5"},
        ]))
        .expect("ops"),
    };
    store.apply(batch, "test").await.expect("more pumps");
    let alarms = Alarms::start(
        store.clone(),
        Options {
            clock: clock.clone(),
            tick: Duration::from_millis(5),
            evaluate: true,
        },
        std::future::pending(),
    )
    .await
    .expect("alarms");
    let s = serve_alarms(store.clone(), alarms.clone()).await;

    // Invalid detector settings: refused with the path, nothing written.
    for (condition, path) in [
        (
            json!({"field": "flowRate", "anomaly": {"sensitivity": 1.5}}),
            "condition.sensitivity",
        ),
        (
            json!({"field": "flowRate", "anomaly": {"window": 5}}),
            "condition.window",
        ),
        (
            json!({"field": "runState", "anomaly": {}}),
            "condition.field",
        ),
        (
            json!({"field": "power", "peers": {"windowSeconds": 1}}),
            "condition.windowSeconds",
        ),
        (
            json!({"field": "power", "peers": {"sensitivity": 0}}),
            "condition.sensitivity",
        ),
        (
            json!({"field": "power", "above": 1, "peers": {}}),
            "condition",
        ),
        (
            json!({"field": "dischargePressure", "changePoint": {"window": 5000}}),
            "condition.window",
        ),
        (
            json!({"field": "dischargePressure", "changePoint": {"sensitivity": 1}}),
            "condition.sensitivity",
        ),
        (
            json!({"field": "runState", "changePoint": {}}),
            "condition.field",
        ),
    ] {
        let v = gql(
            s.addr,
            "mutation($r: AlarmRuleInput!) { createAlarmRule(name: \"bad\", rule: $r) { name } }",
            json!({"r": {"model": m("Pump"), "condition": condition, "severity": "LOW", "message": "m"}}),
        )
        .await;
        assert_eq!(code(&v), "invalid_alarm_rule", "{condition}: {v}");
        assert_eq!(
            v["errors"][0]["extensions"]["path"], path,
            "{condition}: {v}"
        );
    }
    let rules = ok(s.addr, "{ alarmRules { name } }", json!({})).await;
    assert_eq!(rules["alarmRules"], json!([]), "nothing written");

    let rule = create_rule(
        s.addr,
        "flow-odd",
        json!({
            "model": m("Pump"),
            "condition": {"field": "flowRate", "anomaly": {"sensitivity": 0.5, "window": 50}},
            "severity": "LOW",
            "message": "{twin} flow {value} outside {limit}"
        }),
    )
    .await;
    assert_eq!(rule["condition"]["type"], "ANOMALY", "{rule}");
    // Forty usual values around 10, then 30.
    for i in 0..40 {
        let v = 10.0 + 0.1 * f64::from((i * 7) % 11 - 5);
        report(s.addr, "p1", json!({"flowRate": v})).await;
    }
    step(&alarms, &clock, Duration::from_secs(1)).await;
    assert!(
        suspect(s.addr, "flow-odd/p1").await.is_null(),
        "usual values"
    );
    report(s.addr, "p1", json!({"flowRate": 30.0})).await;
    let a = until_alarm(s.addr, "flow-odd/p1", "suspect", |a| a["active"] == true).await;
    let a = suspect(s.addr, a["id"].as_str().expect("id")).await;
    assert_eq!(a["suspect"], true, "{a}");
    assert_eq!(a["evidence"]["observed"], 30.0, "{a}");
    let (low, high) = (
        a["evidence"]["expectedLow"].as_f64().expect("low"),
        a["evidence"]["expectedHigh"].as_f64().expect("high"),
    );
    assert!(low < 10.0 && 10.0 < high && high < 30.0, "{a}");
    assert!(a["evidence"]["score"].as_f64().expect("score") > 2.9, "{a}");
    assert!(
        a["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("p1 flow 30") && m.contains(" outside 8.")),
        "{a}"
    );
    // Usual again: it clears (no off-delay).
    report(s.addr, "p1", json!({"flowRate": 10.1})).await;
    until_alarm(s.addr, "flow-odd/p1", "clear", |a| a["active"] == false).await;

    // A level shift: p2's discharge pressure steps from about 4 to 6 bar
    // and stays; one spike on the way is no shift.
    let rule = create_rule(
        s.addr,
        "pressure-shift",
        json!({
            "model": m("Pump"),
            "condition": {"field": "dischargePressure", "changePoint": {"window": 60}},
            "severity": "MEDIUM",
            "message": "{twin} pressure now {value}, was {limit}"
        }),
    )
    .await;
    assert_eq!(rule["condition"]["type"], "CHANGE_POINT", "{rule}");
    let settings = ok(
        s.addr,
        "{ alarmRule(name: \"pressure-shift\") { condition { sensitivity window } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        settings["alarmRule"]["condition"],
        json!({"sensitivity": 0.5, "window": 60}),
        "the default sensitivity"
    );
    let pressure = |i: i32, level: f64| level + 0.05 * f64::from((i * 7) % 11 - 5);
    for i in 0..30 {
        let v = if i == 20 { 9.0 } else { pressure(i, 4.0) };
        report(s.addr, "p2", json!({"dischargePressure": v})).await;
    }
    step(&alarms, &clock, Duration::from_secs(1)).await;
    assert!(
        suspect(s.addr, "pressure-shift/p2").await.is_null(),
        "one level and a spike"
    );
    for i in 30..34 {
        report(s.addr, "p2", json!({"dischargePressure": pressure(i, 6.0)})).await;
    }
    let a = until_alarm(s.addr, "pressure-shift/p2", "shift", |a| {
        a["active"] == true
    })
    .await;
    let a = suspect(s.addr, a["id"].as_str().expect("id")).await;
    assert_eq!(a["suspect"], true, "{a}");
    let e = &a["evidence"];
    let observed = e["observed"].as_f64().expect("observed");
    assert!((observed - 6.0).abs() < 0.3, "the new level: {a}");
    let (low, high) = (
        e["expectedLow"].as_f64().expect("low"),
        e["expectedHigh"].as_f64().expect("high"),
    );
    assert!(
        low < 4.0 && 4.0 < high && high < 6.0,
        "about the old level: {a}"
    );
    assert!(e["score"].as_f64().expect("score") >= 4.0, "{a}");
    assert!(
        a["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("p2 pressure now ") && m.contains(", was 3.")),
        "{a}"
    );
    // Back at 4: the level came back, so it clears.
    for i in 34..40 {
        report(s.addr, "p2", json!({"dischargePressure": pressure(i, 4.0)})).await;
    }
    until_alarm(s.addr, "pressure-shift/p2", "level back", |a| {
        a["active"] == false
    })
    .await;
    assert!(
        suspect(s.addr, "flow-odd/p2").await.is_null(),
        "the anomaly rule watches flowRate only"
    );

    // Peers: p5 runs at 9 kW, its cell's others at 5; p3 (alone in cell2)
    // has no peers to compare with.
    create_rule(
        s.addr,
        "power-odd",
        json!({
            "model": m("Pump"),
            "condition": {"field": "power", "peers": {"sensitivity": 0.5, "windowSeconds": 60}},
            "severity": "MEDIUM",
            "message": "{twin} power {value} unlike its peers ({limit})"
        }),
    )
    .await;
    for k in 0..12 {
        let wobble = 0.05 * f64::from(k % 3);
        for (p, base) in [
            ("p1", 5.0),
            ("p2", 5.02),
            ("p4", 4.98),
            ("p5", 9.0),
            ("p3", 20.0),
        ] {
            report(s.addr, p, json!({"power": base + wobble})).await;
        }
        step(&alarms, &clock, Duration::from_secs(5)).await;
    }
    let a = until_alarm(s.addr, "power-odd/p5", "peers", |a| a["active"] == true).await;
    let a = suspect(s.addr, a["id"].as_str().expect("id")).await;
    assert_eq!(a["suspect"], true, "{a}");
    let e = &a["evidence"];
    assert!(e["observed"].as_f64().expect("observed") > 8.9, "{a}");
    assert!(e["expectedHigh"].as_f64().expect("high") < 5.2, "{a}");
    assert!(e["score"].as_f64().expect("score") >= 0.5, "{a}");
    for p in ["p1", "p2", "p3", "p4"] {
        let id = format!("power-odd/{p}");
        assert!(
            suspect(s.addr, &id).await.is_null(),
            "{p} is like its peers"
        );
    }
    // p5 back in line: cleared once its window holds usual values.
    for _ in 0..14 {
        for (p, v) in [("p1", 5.0), ("p2", 5.02), ("p4", 4.98), ("p5", 5.01)] {
            report(s.addr, p, json!({"power": v})).await;
        }
        step(&alarms, &clock, Duration::from_secs(5)).await;
    }
    until_alarm(s.addr, "power-odd/p5", "peers clear", |a| {
        a["active"] == false
    })
    .await;
    // The health of the cell counted it while it was active: now OK.
    assert_eq!(health(s.addr, "cell1").await["status"], "OK");
    s.shutdown().await;
}
