//! Asset lifecycles and diagnostic reports through the real server:
//! transitions checked, recorded with who and why, in the twin's history,
//! listed by state and subtree; diagnostics attached by a device (on its
//! own twin) or an operator, bounded, listed newest first; scoped callers
//! see and change only their subtree; both survive a restart of the
//! embedded store.

use std::sync::Arc;

use serde_json::{Value, json};
use twingraph::lifecycle::Lifecycle;
use twingraph::records::LifecycleState;
use twingraph::store::{GraphStore, Store, StoreConfig};

use crate::alarms::{SECRET, gql_vars_as, plant, token};
use crate::support::sample_models;

fn reason(v: &Value) -> &str {
    v["errors"][0]["extensions"]["reason"]
        .as_str()
        .unwrap_or("")
}

const SET: &str = "mutation($t: ID!, $s: LifecycleState!, $r: String, $e: LifecycleState) {
  setLifecycle(twin: $t, state: $s, reason: $r, expected: $e) { twinId state changedBy reason history { state by reason } } }";

async fn secured() -> (crate::server::Running, Arc<dyn GraphStore>) {
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
    (s, store)
}

#[tokio::test]
async fn assets_move_through_their_lifecycle_with_history_lists_and_scope() {
    let (s, _store) = secured().await;
    let admin = token("admin", &["admin"], None);
    let ops = token("line1-ops", &["operator"], Some(&["line1"]));
    let viewer = token("viewer", &["viewer"], None);
    let set = |who: &str, twin: &str, state: &str, extra: Value| {
        let mut vars = json!({"t": twin, "s": state});
        if let Value::Object(m) = extra {
            vars.as_object_mut().expect("object").extend(m);
        }
        let who = who.to_owned();
        async move { gql_vars_as(s.addr, &who, SET, vars).await }
    };
    let v = set(&admin, "p1", "PLANNED", json!({})).await;
    assert_eq!(v["data"]["setLifecycle"]["state"], "PLANNED", "{v}");
    assert_eq!(v["data"]["setLifecycle"]["changedBy"], "admin (admin)");
    // Planned cannot go straight into service.
    let v = set(&admin, "p1", "IN_SERVICE", json!({})).await;
    assert_eq!(reason(&v), "invalid_lifecycle_transition", "{v}");
    assert_eq!(v["errors"][0]["extensions"]["current"], "PLANNED", "{v}");
    set(&admin, "p1", "COMMISSIONED", json!({})).await;
    let v = set(
        &admin,
        "p1",
        "IN_SERVICE",
        json!({"r": "acceptance test passed"}),
    )
    .await;
    let l = &v["data"]["setLifecycle"];
    assert_eq!(l["reason"], "acceptance test passed", "{v}");
    let states: Vec<&str> = l["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|t| t["state"].as_str())
        .collect();
    assert_eq!(states, ["PLANNED", "COMMISSIONED", "IN_SERVICE"]);
    // Moving to the state it is in records nothing.
    let v = set(&admin, "p1", "IN_SERVICE", json!({})).await;
    assert_eq!(
        v["data"]["setLifecycle"]["history"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // A conditional change that lost the race.
    let v = set(&admin, "p1", "MAINTENANCE", json!({"e": "COMMISSIONED"})).await;
    assert_eq!(reason(&v), "lifecycle_conflict", "{v}");
    assert_eq!(v["errors"][0]["extensions"]["current"], "IN_SERVICE", "{v}");
    let v = set(
        &admin,
        "p1",
        "MAINTENANCE",
        json!({"e": "IN_SERVICE", "r": "bearing"}),
    )
    .await;
    assert_eq!(v["data"]["setLifecycle"]["state"], "MAINTENANCE", "{v}");
    let v = set(&admin, "p1", "PLANNED", json!({"r": "x".repeat(2000)})).await;
    assert_eq!(reason(&v), "invalid_argument", "{v}");
    assert_eq!(v["errors"][0]["extensions"]["path"], "reason");
    let v = set(&admin, "nope", "PLANNED", json!({})).await;
    assert_eq!(reason(&v), "twin_not_found", "{v}");

    // On the twin, and in its history with who and why.
    let v = gql_vars_as(
        s.addr,
        &admin,
        r#"{ twin(id: "p1") { lifecycleState { state reason changedBy } }
             history(id: "p1") { nodes { kind actor change } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        v["data"]["twin"]["lifecycleState"],
        json!({"state": "MAINTENANCE", "reason": "bearing", "changedBy": "admin (admin)"}),
        "{v}"
    );
    let changes: Vec<&Value> = v["data"]["history"]["nodes"]
        .as_array()
        .expect("history")
        .iter()
        .filter(|e| e["kind"] == "lifecycleChanged")
        .collect();
    assert_eq!(changes.len(), 4, "{v}");
    assert_eq!(changes[3]["change"]["state"], "maintenance");
    assert_eq!(changes[3]["actor"], "admin (admin)");

    // Lists by state and subtree; a scoped operator sees and moves only
    // its line's twins; a viewer moves none.
    set(&admin, "p2", "PLANNED", json!({})).await;
    set(&admin, "p3", "PLANNED", json!({})).await;
    let list = |who: &str, vars: Value| {
        let who = who.to_owned();
        async move {
            gql_vars_as(
                s.addr,
                &who,
                "query($s: [LifecycleState!]!, $u: ID) { lifecycles(state: $s, under: $u) { totalCount nodes { twinId state twin { id } } } }",
                vars,
            )
            .await
        }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["data"]["lifecycles"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .filter_map(|n| n["twinId"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        ids(&list(&admin, json!({"s": ["PLANNED"]})).await),
        ["p2", "p3"]
    );
    assert_eq!(
        ids(&list(
            &admin,
            json!({"s": ["PLANNED", "MAINTENANCE"], "u": "line1"})
        )
        .await),
        ["p1", "p2"]
    );
    assert_eq!(ids(&list(&ops, json!({"s": ["PLANNED"]})).await), ["p2"]);
    let v = set(&ops, "p3", "COMMISSIONED", json!({})).await;
    assert_eq!(reason(&v), "twin_not_found", "out of scope: {v}");
    let v = set(&ops, "p2", "COMMISSIONED", json!({})).await;
    assert_eq!(
        v["data"]["setLifecycle"]["changedBy"], "line1-ops (operator)",
        "{v}"
    );
    let v = set(&viewer, "p2", "IN_SERVICE", json!({})).await;
    assert_eq!(reason(&v), "forbidden", "{v}");
    // Decommissioned is final.
    set(&admin, "p2", "DECOMMISSIONED", json!({"r": "scrapped"})).await;
    let v = set(&admin, "p2", "IN_SERVICE", json!({})).await;
    assert_eq!(reason(&v), "invalid_lifecycle_transition", "{v}");
    let v = list(&admin, json!({"s": ["DECOMMISSIONED"]})).await;
    assert_eq!(
        v["data"]["lifecycles"]["nodes"][0]["twin"]["id"], "p2",
        "{v}"
    );
    s.shutdown().await;
}

const ATTACH: &str = "mutation($t: ID!, $r: JSON!, $s: String) {
  attachDiagnostic(twin: $t, report: $r, summary: $s) { seq twinId by summary report } }";

#[tokio::test]
async fn diagnostics_are_attached_bounded_listed_and_in_the_twins_history() {
    let (s, _store) = secured().await;
    let admin = token("admin", &["admin"], None);
    let device = token("p1", &["device"], None);
    let viewer = token("viewer", &["viewer"], None);
    let v = gql_vars_as(
        s.addr,
        &device,
        ATTACH,
        json!({"t": "p1", "r": {"firmware": "2.4.1", "selfTest": {"passed": false, "codes": [17, 42]}}, "s": "self test failed"}),
    )
    .await;
    let d = &v["data"]["attachDiagnostic"];
    assert_eq!(d["by"], "p1 (device)", "{v}");
    assert_eq!(d["report"]["selfTest"]["codes"], json!([17, 42]));
    // A device reports on its own twin only.
    let v = gql_vars_as(s.addr, &device, ATTACH, json!({"t": "p2", "r": {"a": 1}})).await;
    assert_eq!(reason(&v), "twin_not_found", "{v}");
    let v = gql_vars_as(s.addr, &viewer, ATTACH, json!({"t": "p1", "r": {"a": 1}})).await;
    assert_eq!(reason(&v), "forbidden", "{v}");
    let v = gql_vars_as(
        s.addr,
        &admin,
        ATTACH,
        json!({"t": "p1", "r": {"inspection": "ok"}}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    // Bad reports: refused with the part at fault, nothing written.
    for (report, summary, path) in [
        (json!([1, 2]), None, "report"),
        (json!({"a": 1}), Some("two\nlines".to_owned()), "summary"),
        (json!({"a": 1}), Some("y".repeat(300)), "summary"),
    ] {
        let v = gql_vars_as(
            s.addr,
            &admin,
            ATTACH,
            json!({"t": "p1", "r": report, "s": summary}),
        )
        .await;
        assert_eq!(reason(&v), "invalid_diagnostic", "{v}");
        assert_eq!(v["errors"][0]["extensions"]["path"], path, "{v}");
    }
    let v = gql_vars_as(
        s.addr,
        &viewer,
        r#"{ diagnostics(twin: "p1") { by summary report twin { id } }
             history(id: "p1") { nodes { kind actor } } }"#,
        json!({}),
    )
    .await;
    let list = v["data"]["diagnostics"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(list.len(), 2, "two attached, the bad ones not: {v}");
    assert_eq!(list[0]["by"], "admin (admin)", "newest first");
    assert_eq!(list[1]["summary"], "self test failed");
    assert_eq!(list[1]["twin"]["id"], "p1");
    let kinds: Vec<&str> = v["data"]["history"]["nodes"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .filter(|k| *k == "diagnosticReported")
        .collect();
    assert_eq!(kinds.len(), 2, "{v}");
    let v = gql_vars_as(
        s.addr,
        &admin,
        r#"{ diagnostics(twin: "p1", last: 0) { by } }"#,
        json!({}),
    )
    .await;
    assert_eq!(reason(&v), "invalid_argument", "{v}");
    s.shutdown().await;
}

/// Lifecycles and diagnostics are the log's: an embedded store reopened
/// has them, and the twin's history links them.
#[tokio::test]
async fn lifecycles_and_diagnostics_survive_a_restart_of_the_embedded_store() {
    let dir = crate::store_conformance::fresh_dir();
    let open = || {
        twingraph::store::embedded::open(&dir, sample_models(), StoreConfig::default())
            .expect("open")
    };
    {
        let concrete = Arc::new(open());
        let store: Arc<dyn GraphStore> = concrete.clone();
        plant(&store).await;
        let l = Lifecycle::start(store.clone()).await.expect("lifecycle");
        l.set(
            "p1",
            LifecycleState::Commissioned,
            Some("installed".into()),
            None,
            "eam",
        )
        .await
        .expect("set");
        l.set("p1", LifecycleState::InService, None, None, "eam")
            .await
            .expect("set");
        l.report(
            "p1",
            Some("vibration spectrum".into()),
            json!({"peakHz": 120.5}),
            "p1",
        )
        .await
        .expect("report");
        // Over 64 KiB: refused (the test server's request limit is lower).
        let e = l
            .report("p1", None, json!({"blob": "x".repeat(70_000)}), "p1")
            .await
            .expect_err("too large");
        assert_eq!(e.code().reason(), "invalid_diagnostic");
        l.stop().await;
        concrete.close();
    }
    let concrete = Arc::new(open());
    let store: Arc<dyn GraphStore> = concrete.clone();
    let l = Lifecycle::start(store.clone()).await.expect("lifecycle");
    let entry = l.book().get("p1").cloned().expect("p1's lifecycle");
    assert_eq!(entry.current().state, LifecycleState::InService);
    assert_eq!(entry.history.len(), 2);
    assert_eq!(entry.history[0].reason.as_deref(), Some("installed"));
    assert_eq!(entry.history[0].by, "eam");
    let history = store.twin_events("p1", None, None).await.expect("history");
    let kinds: Vec<&str> = history.iter().map(|e| e.change.kind()).collect();
    assert!(
        kinds.ends_with(&["lifecycleChanged", "lifecycleChanged", "diagnosticReported"]),
        "{kinds:?}"
    );
    l.stop().await;
    concrete.close();
}

/// Indicators through the real server: a pump's run-state history (source
/// times over ten hours) gives its availability, utilization, failures,
/// MTBF and MTTR; its line sums its pumps; alarms raised on it count by
/// severity; a caller out of scope gets nothing.
#[tokio::test]
async fn kpis_come_from_the_run_state_history_and_the_alarms() {
    let (s, _store) = secured().await;
    let admin = token("admin", &["admin"], None);
    const H: i64 = 3_600_000_000;
    let t0 = (twingraph::twin::now_micros() / H - 12) * H;
    let at = |h: i64| twingraph::twin::format_time(t0 + h * H);
    for (twin, h, state) in [
        ("p1", -1, "running"),
        ("p2", 0, "running"),
        ("p1", 2, "fault"),
        ("p1", 3, "running"),
        ("p1", 6, "idle"),
        ("p1", 8, "fault"),
    ] {
        let v = gql_vars_as(
            s.addr,
            &admin,
            "mutation($t: ID!, $at: DateTime, $p: JSON!) { patchReported(id: $t, patch: $p, sourceTime: $at) { version } }",
            json!({"t": twin, "at": at(h), "p": {"runState": state}}),
        )
        .await;
        assert!(v["errors"].is_null(), "{v}");
    }
    const KPIS: &str =
        "query($t: ID!, $from: DateTime!, $to: DateTime!, $below: Boolean, $rs: RunStateInput) {
      kpis(twin: $t, from: $from, to: $to, below: $below, runState: $rs) {
        assets observedSeconds runningSeconds faultSeconds availability utilization failures repairs
        mtbfSeconds mttrSeconds alarms { high total } twin { id } } }";
    let v = gql_vars_as(
        s.addr,
        &admin,
        KPIS,
        json!({"t": "p1", "from": at(0), "to": at(10)}),
    )
    .await;
    let k = &v["data"]["kpis"];
    assert_eq!(
        (
            k["assets"].clone(),
            k["observedSeconds"].clone(),
            k["runningSeconds"].clone(),
            k["faultSeconds"].clone()
        ),
        (json!(1), json!(36000.0), json!(18000.0), json!(10800.0)),
        "{v}"
    );
    assert_eq!(k["availability"], 0.7, "{v}");
    assert_eq!(k["utilization"], 0.5);
    assert_eq!(
        (k["failures"].clone(), k["repairs"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(k["mtbfSeconds"], 12600.0);
    assert_eq!(k["mttrSeconds"], 3600.0);
    assert_eq!(k["twin"]["id"], "p1");
    // The line: its two pumps summed (the line and cell report no run state).
    let v = gql_vars_as(
        s.addr,
        &admin,
        KPIS,
        json!({"t": "line1", "from": at(0), "to": at(10), "below": true}),
    )
    .await;
    let k = &v["data"]["kpis"];
    assert_eq!(k["assets"], 2, "{v}");
    assert_eq!(k["observedSeconds"], 72000.0);
    assert_eq!(k["runningSeconds"], 54000.0);
    assert_eq!(k["availability"], 61200.0 / 72000.0);
    // The same as a field of the twin, through the generic and the typed API.
    let v = gql_vars_as(
        s.addr,
        &admin,
        "query($from: DateTime!, $to: DateTime!) {
           twin(id: \"line1\") { kpis(from: $from, to: $to, below: true) { assets availability } }
           pump(id: \"p1\") { kpis(from: $from, to: $to) { availability mttrSeconds } } }",
        json!({"from": at(0), "to": at(10)}),
    )
    .await;
    assert_eq!(v["data"]["twin"]["kpis"]["assets"], 2, "{v}");
    assert_eq!(v["data"]["twin"]["kpis"]["availability"], 61200.0 / 72000.0);
    assert_eq!(
        v["data"]["pump"]["kpis"],
        json!({"availability": 0.7, "mttrSeconds": 3600.0})
    );
    // Idle counts as running when the caller says so.
    let v = gql_vars_as(
        s.addr,
        &admin,
        KPIS,
        json!({"t": "p1", "from": at(0), "to": at(10), "rs": {"running": ["running", "idle"]}}),
    )
    .await;
    assert_eq!(v["data"]["kpis"]["runningSeconds"], 25200.0, "{v}");
    // An alarm raised on the pump (it is in fault now) counts.
    let v = gql_vars_as(
        s.addr,
        &admin,
        "mutation { createAlarmRule(name: \"faulted\", rule: {model: \"dtmi:twingraph:isa95:Pump;1\", condition: {field: \"runState\", equals: \"fault\"}, severity: HIGH, message: \"{twin} in fault\"}) { name } }",
        json!({}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let v = gql_vars_as(
            s.addr,
            &admin,
            KPIS,
            json!({"t": "p1", "from": at(0), "to": at(20)}),
        )
        .await;
        if v["data"]["kpis"]["alarms"]["high"] == 1 {
            assert_eq!(v["data"]["kpis"]["alarms"]["total"], 1);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alarm counted: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Out of scope, bad windows, bad run states.
    let line2 = token("line2-ops", &["operator"], Some(&["line2"]));
    let v = gql_vars_as(
        s.addr,
        &line2,
        KPIS,
        json!({"t": "p1", "from": at(0), "to": at(10)}),
    )
    .await;
    assert_eq!(reason(&v), "twin_not_found", "{v}");
    let v = gql_vars_as(
        s.addr,
        &admin,
        KPIS,
        json!({"t": "p1", "from": at(10), "to": at(0)}),
    )
    .await;
    assert_eq!(reason(&v), "invalid_argument", "{v}");
    let v = gql_vars_as(
        s.addr,
        &admin,
        KPIS,
        json!({"t": "p1", "from": at(0), "to": at(10), "rs": {"fault": []}}),
    )
    .await;
    assert_eq!(reason(&v), "invalid_argument", "{v}");
    s.shutdown().await;
}
