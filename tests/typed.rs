//! The typed schema end to end: per-model queries and mutations, every
//! DTDL schema kind as GraphQL types, typed relationship connections,
//! commands, and the schema hot-swapped when models are uploaded.

use serde_json::{Value, json};

use super::backend::start;
use crate::server::{code, gql};

fn ok(v: &Value) -> &Value {
    assert!(v.get("errors").is_none(), "{v}");
    &v["data"]
}

#[tokio::test]
async fn typed_values_round_trip_for_every_schema_kind() {
    let s = start().await;
    let v = gql(
        s.addr,
        r#"mutation {
          createPump(id: "p1",
            reported: {flowRate: 3.5, runState: fault, operatingHours: 12,
                       alarm: {code: "E7", severity: critical, message: "dry run"},
                       drive: {speed: 1450, windingTemperature: 61.5}},
            desired: {flowSetpoint: 4.0, maintenanceInterval: "P30D",
                      tags: [{key: "line", value: "L1"}, {key: "crit", value: "A"}],
                      drive: {ratedPower: 11}}) {
            __typename id version
            flowRate runState operatingHours
            alarm { code severity message }
            flowSetpoint flowSetpointDesired flowSetpointDelta
            flowSetpointMetadata { desiredVersion ackStatus inDelta reportedVersion }
            maintenanceIntervalDesired
            tagsDesired { key value }
            drive { speed windingTemperature ratedPowerDesired ratedPowerDelta ratedPowerMetadata { ackStatus } }
            desired reported
          }
        }"#,
        json!({}),
    )
    .await;
    let p = &ok(&v)["createPump"];
    assert_eq!(p["__typename"], "PumpTwin");
    assert_eq!(p["runState"], "fault", "an Enum is shown by name");
    assert_eq!(
        p["alarm"],
        json!({"code": "E7", "severity": "critical", "message": "dry run"})
    );
    assert_eq!(p["flowSetpoint"], Value::Null);
    assert_eq!(p["flowSetpointDesired"], 4.0);
    assert_eq!(p["flowSetpointDelta"], 4.0, "not reported yet: in delta");
    assert_eq!(
        p["flowSetpointMetadata"],
        json!({"desiredVersion": 1, "ackStatus": "PENDING", "inDelta": true, "reportedVersion": null})
    );
    assert_eq!(p["maintenanceIntervalDesired"], "P30D");
    assert_eq!(
        p["tagsDesired"],
        json!([{"key": "crit", "value": "A"}, {"key": "line", "value": "L1"}]),
        "a Map is a list of entries named by mapKey/mapValue"
    );
    assert_eq!(
        p["drive"],
        json!({"speed": 1450.0, "windingTemperature": 61.5, "ratedPowerDesired": 11.0,
               "ratedPowerDelta": 11.0, "ratedPowerMetadata": {"ackStatus": "PENDING"}})
    );
    // Stored as the generic API sees it: Enums by enumValue (the severity is an integer Enum).
    assert_eq!(p["reported"]["alarm"]["severity"], 3, "{p}");
    assert_eq!(p["desired"]["tags"], json!({"line": "L1", "crit": "A"}));
    assert_eq!(p["desired"]["drive"], json!({"ratedPower": 11.0}));

    // Arrays and dates (Robot, Sensor).
    let v = gql(
        s.addr,
        r#"mutation {
          r: createRobot(id: "r1", reported: {jointPositions: [0, 45.5, -90]}) { jointPositions }
          s: createPressureSensor(id: "s1", reported: {calibratedAt: "2026-01-31"}) { calibratedAt }
        }"#,
        json!({}),
    )
    .await;
    assert_eq!(ok(&v)["r"]["jointPositions"], json!([0.0, 45.5, -90.0]));
    assert_eq!(ok(&v)["s"]["calibratedAt"], "2026-01-31");
    // Scalars validate: a bad date never reaches the store.
    let v = gql(
        s.addr,
        r#"mutation { createPressureSensor(id: "s2", reported: {calibratedAt: "2026-02-30x"}) { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    let v = gql(s.addr, r#"{ twin(id: "s2") { id } }"#, json!({})).await;
    assert_eq!(ok(&v)["twin"], Value::Null);

    // Acknowledgement shows in the metadata; reported equal to desired leaves the delta.
    let v = gql(
        s.addr,
        r#"mutation { patchReported(id: "p1", patch: {flowSetpoint: {value: 4.0, ac: 200, av: 1, ad: "ok"}}) { version } }"#,
        json!({}),
    )
    .await;
    ok(&v);
    let v = gql(
        s.addr,
        r#"{ pump(id: "p1") { flowSetpoint flowSetpointDelta flowSetpointMetadata { ackStatus ackCode ackVersion ackDescription inDelta } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ok(&v)["pump"],
        json!({"flowSetpoint": 4.0, "flowSetpointDelta": null, "flowSetpointMetadata":
            {"ackStatus": "ACKNOWLEDGED", "ackCode": 200, "ackVersion": 1, "ackDescription": "ok", "inDelta": false}})
    );
    s.shutdown().await;
}

async fn seed_pumps(addr: std::net::SocketAddr) {
    for (id, flow, state) in [
        ("a", 1.0, "running"),
        ("b", 5.0, "fault"),
        ("c", 3.0, "running"),
        ("d", 4.0, "idle"),
        ("e", 2.0, "fault"),
    ] {
        let v = gql(
            addr,
            &format!(
                r#"mutation {{ createPump(id: "{id}", reported: {{flowRate: {flow}, runState: {state}}}, desired: {{flowSetpoint: {flow}}}) {{ id }} }}"#
            ),
            json!({}),
        )
        .await;
        ok(&v);
    }
    let v = gql(
        addr,
        r#"mutation { createMotor(id: "m", reported: {runState: fault}) { id } createPump(id: "z") { id } }"#,
        json!({}),
    )
    .await;
    ok(&v);
}

fn ids(v: &Value) -> Vec<String> {
    v["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Per-model aggregates: counts, numbers, groups, `where`, `under`, and
/// `totalCount` on lists, all counted by the store.
#[tokio::test]
async fn aggregates_count_and_group_in_the_store() {
    let s = start().await;
    seed_pumps(s.addr).await;
    let v = gql(
        s.addr,
        r#"{ pumpsAggregate { count flowRate { count min max avg sum }
               groupBy(field: runState) { key count flowRate { count avg } } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ok(&v)["pumpsAggregate"],
        json!({
            "count": 6,
            "flowRate": {"count": 5, "min": 1.0, "max": 5.0, "avg": 3.0, "sum": 15.0},
            "groupBy": [
                {"key": "fault", "count": 2, "flowRate": {"count": 2, "avg": 3.5}},
                {"key": "idle", "count": 1, "flowRate": {"count": 1, "avg": 4.0}},
                {"key": "running", "count": 2, "flowRate": {"count": 2, "avg": 2.0}},
                {"key": null, "count": 1, "flowRate": {"count": 0, "avg": null}}
            ]
        })
    );
    // Subtypes included; filtered; the list's totalCount agrees.
    let v = gql(
        s.addr,
        r#"{ equipmentsAggregate { count groupBy(field: runState) { key count } }
             strong: pumpsAggregate(where: {flowRate: {gte: 3}}) { count }
             pumps(where: {runState: {eq: fault}}, first: 1) { totalCount nodes { id } }
             twins(model: "dtmi:twingraph:isa95:Equipment;1", first: 2) { totalCount } }"#,
        json!({}),
    )
    .await;
    let d = ok(&v);
    assert_eq!(d["equipmentsAggregate"]["count"], 7);
    assert_eq!(
        d["equipmentsAggregate"]["groupBy"],
        json!([{"key": "fault", "count": 3}, {"key": "idle", "count": 1},
               {"key": "running", "count": 2}, {"key": null, "count": 1}])
    );
    assert_eq!(d["strong"]["count"], 3);
    assert_eq!(d["pumps"]["totalCount"], 2);
    assert_eq!(ids(&d["pumps"]).len(), 1);
    assert_eq!(d["twins"]["totalCount"], 7);
    // Under a twin, at any depth.
    let v = gql(
        s.addr,
        r#"mutation { createWorkCell(id: "cell") { id }
             r1: createRelationship(source: "cell", name: "contains", target: "a") { id }
             r2: createRelationship(source: "cell", name: "contains", target: "b") { id }
             r3: createRelationship(source: "cell", name: "contains", target: "m") { id } }"#,
        json!({}),
    )
    .await;
    ok(&v);
    let v = gql(
        s.addr,
        r#"{ equipmentsAggregate(under: "cell") { count power { count } groupBy(field: runState) { key count } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ok(&v)["equipmentsAggregate"],
        json!({"count": 3, "power": {"count": 0},
               "groupBy": [{"key": "fault", "count": 2}, {"key": "running", "count": 1}]})
    );
    let v = gql(
        s.addr,
        r#"{ pumpsAggregate(under: "nowhere") { count } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    s.shutdown().await;
}

/// Lists and aggregates as they were at a past moment: values then, twins
/// deleted since included, twins created since left out.
#[tokio::test]
async fn lists_and_aggregates_travel_in_time() {
    let s = start().await;
    seed_pumps(s.addr).await;
    let v = gql(s.addr, "{ events(last: 1) { nodes { time } } }", json!({})).await;
    let then = ok(&v)["events"]["nodes"][0]["time"].clone();
    let v = gql(
        s.addr,
        r#"mutation { updatePump(id: "a", reported: {flowRate: 100}) { id }
             deleteTwin(id: "b") createPump(id: "new", reported: {flowRate: 50}) { id } }"#,
        json!({}),
    )
    .await;
    ok(&v);
    let q = r#"query($at: DateTime, $w: JSON) {
        pumps(asOf: $at, orderBy: [{flowRate: DESC}], first: 3) { totalCount nodes { id flowRate } }
        pumpsAggregate(asOf: $at) { count flowRate { sum max } }
        twins(asOf: $at, model: "dtmi:twingraph:isa95:Pump;1", where: $w) { nodes { id } } }"#;
    let w = json!({"reported.flowRate": {"gte": 4}});
    let v = gql(s.addr, q, json!({"at": then, "w": w})).await;
    assert_eq!(
        ok(&v),
        &json!({
            "pumps": {"totalCount": 6, "nodes": [
                {"id": "b", "flowRate": 5.0}, {"id": "d", "flowRate": 4.0}, {"id": "c", "flowRate": 3.0}]},
            "pumpsAggregate": {"count": 6, "flowRate": {"sum": 15.0, "max": 5.0}},
            "twins": {"nodes": [{"id": "b"}, {"id": "d"}]}
        })
    );
    // Now, for comparison.
    let v = gql(s.addr, q, json!({"at": null, "w": w})).await;
    assert_eq!(
        ok(&v)["pumps"],
        json!({"totalCount": 6, "nodes": [
            {"id": "a", "flowRate": 100.0}, {"id": "new", "flowRate": 50.0}, {"id": "d", "flowRate": 4.0}]})
    );
    // Paged as of then, by cursor.
    let v = gql(
        s.addr,
        r#"query($at: DateTime) { pumps(asOf: $at, first: 2) { nodes { id } pageInfo { endCursor hasNextPage } } }"#,
        json!({"at": then}),
    )
    .await;
    let first = ok(&v)["pumps"].clone();
    assert_eq!(first["nodes"], json!([{"id": "a"}, {"id": "b"}]));
    let v = gql(
        s.addr,
        r#"query($at: DateTime, $c: String) { pumps(asOf: $at, first: 10, after: $c) { nodes { id } pageInfo { hasNextPage hasPreviousPage } } }"#,
        json!({"at": then, "c": first["pageInfo"]["endCursor"]}),
    )
    .await;
    assert_eq!(
        ok(&v)["pumps"],
        json!({"nodes": [{"id": "c"}, {"id": "d"}, {"id": "e"}, {"id": "z"}],
               "pageInfo": {"hasNextPage": false, "hasPreviousPage": true}})
    );
    s.shutdown().await;
}

#[tokio::test]
async fn per_model_lists_filter_order_and_paginate() {
    let s = start().await;
    seed_pumps(s.addr).await;
    let v = gql(
        s.addr,
        r#"{
          fast: pumps(where: {flowRate: {gt: 2.5}}) { nodes { id } }
          faulty: equipments(where: {runState: {eq: fault}}) { nodes { __typename id } }
          either: pumps(where: {or: [{flowRate: {lte: 1}}, {runState: {in: [idle]}}]}) { nodes { id } }
          notFault: pumps(where: {not: {runState: {eq: fault}}, flowRate: {exists: true}}) { nodes { id } }
          wanted: pumps(where: {flowSetpointDesired: {gte: 4}}) { nodes { id } }
          byId: pumps(where: {id: {in: ["a", "c", "m"]}}) { nodes { id } }
          one: pump(id: "c") { id flowRate }
          notAPump: pump(id: "m") { id }
        }"#,
        json!({}),
    )
    .await;
    let d = ok(&v);
    assert_eq!(ids(&d["fast"]), ["b", "c", "d"]);
    assert_eq!(
        d["faulty"]["nodes"],
        json!([{"__typename": "PumpTwin", "id": "b"}, {"__typename": "PumpTwin", "id": "e"},
               {"__typename": "MotorTwin", "id": "m"}]),
        "a base model's list includes subtypes"
    );
    assert_eq!(ids(&d["either"]), ["a", "d"]);
    assert_eq!(ids(&d["notFault"]), ["a", "c", "d"]);
    assert_eq!(ids(&d["wanted"]), ["b", "d"]);
    assert_eq!(ids(&d["byId"]), ["a", "c"]);
    assert_eq!(d["one"], json!({"id": "c", "flowRate": 3.0}));
    assert_eq!(
        d["notAPump"],
        Value::Null,
        "lookup of another model is null"
    );

    // Ordering, descending, absent values last; paged with cursors, no gap or repeat.
    let q = r#"query($after: String) { pumps(orderBy: [{flowRate: DESC}], first: 2, after: $after) {
        nodes { id } pageInfo { hasNextPage endCursor } } }"#;
    let mut seen = Vec::new();
    let mut after = Value::Null;
    for _ in 0..10 {
        let v = gql(s.addr, q, json!({"after": after})).await;
        let page = &ok(&v)["pumps"];
        seen.extend(ids(page));
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(seen, ["b", "d", "c", "e", "a", "z"]);
    let v = gql(
        s.addr,
        r#"{ pumps(orderBy: [{runState: ASC}, {flowRate: DESC}]) { nodes { id } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(ids(&ok(&v)["pumps"]), ["b", "e", "d", "c", "a", "z"]);
    // Id-ordered paging without orderBy.
    let v = gql(
        s.addr,
        r#"{ pumps(first: 2, after: "b") { nodes { id } pageInfo { hasNextPage } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(ids(&ok(&v)["pumps"]), ["c", "d"]);

    // Bad input: clear errors.
    for (q, want) in [
        (
            r#"{ pumps(where: {flowRate: {gt: "fast"}}) { nodes { id } } }"#,
            "BAD_REQUEST",
        ),
        (
            r#"{ pumps(where: {runState: {eq: exploded}}) { nodes { id } } }"#,
            "BAD_REQUEST",
        ),
        (
            r#"{ pumps(orderBy: [{flowRate: DESC}], after: "nonsense") { nodes { id } } }"#,
            "BAD_REQUEST",
        ),
        (r#"{ pumps(first: 5000) { nodes { id } } }"#, "BAD_REQUEST"),
    ] {
        let v = gql(s.addr, q, json!({})).await;
        assert_eq!(code(&v), want, "{q}: {v}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn relationships_are_typed_connections_with_edge_properties() {
    let s = start().await;
    seed_pumps(s.addr).await;
    let v = gql(
        s.addr,
        r#"mutation { batch(operations: [
            {op: "createTwin", id: "comp", model: "dtmi:twingraph:isa95:Compressor;1"},
            {op: "createRelationship", source: "a", name: "dependsOn", target: "comp", id: "r1", properties: {kind: "compressedAir", critical: true}},
            {op: "createRelationship", source: "a", name: "dependsOn", target: "b", id: "r2", properties: {kind: "power"}},
            {op: "createRelationship", source: "a", name: "dependsOn", target: "c", id: "r3"},
            {op: "createRelationship", source: "a", name: "feeds", target: "d", id: "f1", properties: {medium: "water"}},
            {op: "createRelationship", source: "e", name: "feeds", target: "d"}
          ]) { events { seq } } }"#,
        json!({}),
    )
    .await;
    ok(&v);
    let v = gql(
        s.addr,
        r#"{ pump(id: "a") {
            dependsOn { totalCount edges { cursor relationshipId kind critical node { __typename id } } }
            faulty: dependsOn(where: {id: {in: ["b", "c"]}}) { nodes { id } }
            feeds { edges { medium node { id ... on Pump { flowRate } } } }
          }
          d: pump(id: "d") { incomingRelationships { nodes { source name } } fromE: incomingRelationships(name: "feeds", first: 1, after: "a\nf1") { nodes { source } } } }"#,
        json!({}),
    )
    .await;
    let d = ok(&v);
    let dep = &d["pump"]["dependsOn"];
    assert_eq!(dep["totalCount"], 3);
    let edges: Vec<Value> = dep["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut e| {
            e.as_object_mut().map(|o| o.remove("cursor"));
            e
        })
        .collect();
    assert_eq!(
        edges,
        [
            json!({"relationshipId": "r2", "kind": "power", "critical": null, "node": {"__typename": "PumpTwin", "id": "b"}}),
            json!({"relationshipId": "r3", "kind": null, "critical": null, "node": {"__typename": "PumpTwin", "id": "c"}}),
            json!({"relationshipId": "r1", "kind": "compressedAir", "critical": true, "node": {"__typename": "CompressorTwin", "id": "comp"}}),
        ],
        "ordered by target id; typed edge properties"
    );
    assert_eq!(ids(&d["pump"]["faulty"]), ["b", "c"]);
    assert_eq!(
        d["pump"]["feeds"]["edges"],
        json!([{"medium": "water", "node": {"id": "d", "flowRate": 4.0}}])
    );
    assert_eq!(
        d["d"]["incomingRelationships"]["nodes"],
        json!([{"source": "a", "name": "feeds"}, {"source": "e", "name": "feeds"}])
    );
    assert_eq!(d["d"]["fromE"]["nodes"], json!([{"source": "e"}]));

    // Cursor pagination over a relationship connection.
    let v = gql(
        s.addr,
        r#"query($after: String) { pump(id: "a") { dependsOn(first: 2, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } } }"#,
        json!({"after": null}),
    )
    .await;
    let page = &ok(&v)["pump"]["dependsOn"];
    assert_eq!(ids(page), ["b", "c"]);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let v = gql(
        s.addr,
        r#"query($after: String) { pump(id: "a") { dependsOn(first: 2, after: $after) { nodes { id } pageInfo { hasNextPage } } } }"#,
        json!({"after": page["pageInfo"]["endCursor"]}),
    )
    .await;
    assert_eq!(ids(&ok(&v)["pump"]["dependsOn"]), ["comp"]);
    s.shutdown().await;
}

#[tokio::test]
async fn typed_updates_are_atomic_and_checked() {
    let s = start().await;
    seed_pumps(s.addr).await;
    let v = gql(
        s.addr,
        r#"mutation { updatePump(id: "a", ifVersion: 1, desired: {flowSetpoint: 9}, reported: {flowRate: 8.5, drive: {speed: 900}}) {
            version flowSetpointDesired flowRate drive { speed } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ok(&v)["updatePump"],
        json!({"version": 3, "flowSetpointDesired": 9.0, "flowRate": 8.5, "drive": {"speed": 900.0}})
    );
    // Time travel through the typed lookup.
    let v = gql(s.addr, r#"{ now: pump(id: "a") { createdAt } }"#, json!({})).await;
    let created = ok(&v)["now"]["createdAt"].clone();
    let v = gql(
        s.addr,
        r#"query($t: DateTime) { then: pump(id: "a", asOf: $t) { version flowRate } }"#,
        json!({"t": created}),
    )
    .await;
    assert_eq!(ok(&v)["then"], json!({"version": 1, "flowRate": 1.0}));
    let v = gql(
        s.addr,
        r#"{ pump(id: "a", asOf: "yesterday") { version } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "BAD_REQUEST", "a DateTime is validated: {v}");
    // Stale version: VERSION_CONFLICT, nothing written.
    let v = gql(
        s.addr,
        r#"mutation { updatePump(id: "a", ifVersion: 1, desired: {flowSetpoint: 1}) { version } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "VERSION_CONFLICT", "{v}");
    // One invalid part fails the whole update (desired valid, reported not).
    let v = gql(
        s.addr,
        r#"mutation { updateEquipment(id: "a", desired: {maintenanceInterval: "PT1H"}, reported: {maintenanceInterval: "soon"}) { version } }"#,
        json!({}),
    )
    .await;
    assert!(
        matches!(code(&v), "VALIDATION_FAILED" | "BAD_REQUEST"),
        "{v}"
    );
    let v = gql(
        s.addr,
        r#"{ pump(id: "a") { version maintenanceIntervalDesired } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ok(&v)["pump"],
        json!({"version": 3, "maintenanceIntervalDesired": null})
    );
    // Null removes a property.
    let v = gql(
        s.addr,
        r#"mutation { updatePump(id: "a", desired: {flowSetpoint: null}) { flowSetpointDesired } }"#,
        json!({}),
    )
    .await;
    assert_eq!(ok(&v)["updatePump"]["flowSetpointDesired"], Value::Null);
    // Updating through a model the twin is not: NOT_FOUND; missing twin too.
    for q in [
        r#"mutation { updateMotor(id: "a", reported: {vibration: 1}) { id } }"#,
        r#"mutation { updatePump(id: "nope", reported: {flowRate: 1}) { id } }"#,
    ] {
        let v = gql(s.addr, q, json!({})).await;
        assert_eq!(code(&v), "NOT_FOUND", "{q}: {v}");
    }
    // The base model's update reaches a subtype's inherited properties.
    let v = gql(
        s.addr,
        r#"mutation { updateEquipment(id: "b", reported: {runState: running}) { __typename ... on Pump { runState } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ok(&v)["updateEquipment"],
        json!({"__typename": "PumpTwin", "runState": "running"})
    );
    s.shutdown().await;
}

#[tokio::test]
async fn commands_are_mutations_recorded_as_events() {
    let s = start().await;
    seed_pumps(s.addr).await;
    let v = gql(
        s.addr,
        r#"mutation { stop: equipmentStop(id: "a", emergency: true) { invocationId twinId command request sequence }
                      start: equipmentStart(id: "m") { command request } }"#,
        json!({}),
    )
    .await;
    let d = ok(&v);
    assert_eq!(d["stop"]["twinId"], "a");
    assert_eq!(d["stop"]["command"], "stop");
    assert_eq!(d["stop"]["request"], true);
    assert_eq!(d["start"], json!({"command": "start", "request": null}));
    let seq = d["stop"]["sequence"].as_u64().expect("sequence");
    let v = gql(
        s.addr,
        r#"query($after: String) { events(after: $after, first: 1) { nodes { kind twins change } } }"#,
        json!({"after": (seq - 1).to_string()}),
    )
    .await;
    let e = &ok(&v)["events"]["nodes"][0];
    assert_eq!(e["kind"], "commandInvoked", "{e}");
    assert_eq!(e["twins"], json!(["a"]));
    assert_eq!(e["change"]["request"], true);
    assert_eq!(e["change"]["invocation"], d["stop"]["invocationId"]);
    // A Component's command names the Component.
    let v = gql(
        s.addr,
        r#"mutation { pumpDriveResetOverload(id: "a", force: true) { command component request } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ok(&v)["pumpDriveResetOverload"],
        json!({"command": "resetOverload", "component": "drive", "request": true})
    );
    // The twin itself is unchanged by a command.
    let v = gql(s.addr, r#"{ pump(id: "a") { version } }"#, json!({})).await;
    assert_eq!(ok(&v)["pump"]["version"], 1);
    // A command of another model, a wrong request type, a missing twin.
    for (q, want) in [
        (
            r#"mutation { conveyorSetDirection(id: "a", direction: reverse) { command } }"#,
            "NOT_FOUND",
        ),
        (
            r#"mutation { equipmentStop(id: "a", emergency: "yes") { command } }"#,
            "BAD_REQUEST",
        ),
        (
            r#"mutation { equipmentStart(id: "nope") { command } }"#,
            "NOT_FOUND",
        ),
    ] {
        let v = gql(s.addr, q, json!({})).await;
        assert_eq!(code(&v), want, "{q}: {v}");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn uploaded_models_hot_swap_the_typed_schema() {
    let s = start().await;
    let v = gql(s.addr, r#"{ smartPump(id: "x") { id } }"#, json!({})).await;
    assert_eq!(code(&v), "BAD_REQUEST", "not in the schema yet: {v}");
    let smart = json!({
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:SmartPump;1",
        "@type": "Interface",
        "extends": "dtmi:twingraph:isa95:Pump;1",
        "contents": [
            {"@type": "Property", "name": "efficiency", "schema": "double", "writable": true},
            {"@type": "Telemetry", "name": "mode", "schema": {"@type": "Enum", "valueSchema": "integer",
                "enumValues": [{"name": "eco", "enumValue": 1}, {"name": "boost", "enumValue": 2}]}}
        ]
    });
    let v = gql(
        s.addr,
        r#"mutation($m: [JSON!]!) { uploadModels(models: $m) { models } }"#,
        json!({"m": [smart]}),
    )
    .await;
    ok(&v);
    let v = gql(
        s.addr,
        r#"mutation { createSmartPump(id: "sp", reported: {mode: boost, flowRate: 2}, desired: {efficiency: 0.8}) {
            __typename mode efficiencyDesired flowRate } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ok(&v)["createSmartPump"],
        json!({"__typename": "SmartPumpTwin", "mode": "boost", "efficiencyDesired": 0.8, "flowRate": 2.0})
    );
    // Polymorphic at once: the new type is a Pump.
    let v = gql(
        s.addr,
        r#"{ pumps { nodes { __typename ... on SmartPump { mode } } } smartPumps(where: {mode: {eq: boost}}) { nodes { id } } }"#,
        json!({}),
    )
    .await;
    let d = ok(&v);
    assert_eq!(
        d["pumps"]["nodes"],
        json!([{"__typename": "SmartPumpTwin", "mode": "boost"}])
    );
    assert_eq!(ids(&d["smartPumps"]), ["sp"]);
    s.shutdown().await;
}

/// DTDL names that collide with the generated API's own names (`and` in a
/// filter, `id` and `prop_id`, a Map whose key and value share a name, a
/// command request named `id`) still compile, and behave.
#[tokio::test]
async fn colliding_names_compile_and_work() {
    let s = start().await;
    let odd = json!({
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:Odd;1",
        "@type": "Interface",
        "contents": [
            {"@type": "Property", "name": "and", "schema": "integer"},
            {"@type": "Property", "name": "id", "schema": "string"},
            {"@type": "Property", "name": "prop_id", "schema": "string"},
            {"@type": "Property", "name": "labels", "writable": true, "schema": {"@type": "Map",
                "mapKey": {"name": "name", "schema": "string"}, "mapValue": {"name": "name", "schema": "string"}}},
            {"@type": "Command", "name": "ping", "request": {"name": "id", "schema": "integer"}}
        ]
    });
    let v = gql(
        s.addr,
        r#"mutation($m: [JSON!]!) { uploadModels(models: $m) { models } }"#,
        json!({"m": [odd]}),
    )
    .await;
    ok(&v);
    let v = gql(
        s.addr,
        r#"mutation { createOdd(id: "o1", reported: {and: 3, prop_id: "x", prop_id_: "y"}, desired: {labels: [{name: "k", name_: "v"}]}) {
            id and prop_id prop_id_ labelsDesired { name name_ } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ok(&v)["createOdd"],
        json!({"id": "o1", "and": 3, "prop_id": "x", "prop_id_": "y", "labelsDesired": [{"name": "k", "name_": "v"}]})
    );
    let v = gql(
        s.addr,
        r#"query($none: Int) { odds(where: {prop_and: {eq: 3}, prop_id: {eq: "x"}}) { nodes { id } }
                  all: odds(where: {prop_and: {gt: $none}}) { nodes { id } }
                  none: odds(where: {and: [{prop_and: {lt: 3}}]}) { nodes { id } } }"#,
        json!({}),
    )
    .await;
    let d = ok(&v);
    assert_eq!(ids(&d["odds"]), ["o1"]);
    assert_eq!(ids(&d["all"]), ["o1"], "a null operator is no test");
    assert_eq!(ids(&d["none"]), Vec::<String>::new());
    let v = gql(
        s.addr,
        r#"mutation { oddPing(id: "o1", request: 7) { request } }"#,
        json!({}),
    )
    .await;
    assert_eq!(ok(&v)["oddPing"]["request"], 7);
    s.shutdown().await;
}
