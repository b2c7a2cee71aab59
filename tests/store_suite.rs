//! The store conformance suite: every behaviour a `GraphStore` must have.
//!
//! Each check is a function over `&dyn GraphStore` (an empty store loaded
//! with the sample models). `store_conformance!` turns the whole list into
//! `#[tokio::test]`s for one store; every store runs it (see
//! `tests/store_conformance.rs`).

use std::sync::Arc;

use serde_json::{Value, json};
use twingraph::records::Record;
use twingraph::store::{At, GraphStore, StoreError, TwinQuery};
use twingraph::twin::query::{Direction, Traversal};
use twingraph::twin::{AckStatus, Batch, Change, Op, Twin, TwinError};

pub const PUMP: &str = "dtmi:twingraph:isa95:Pump;1";
pub const MOTOR: &str = "dtmi:twingraph:isa95:Motor;1";
pub const EQUIPMENT: &str = "dtmi:twingraph:isa95:Equipment;1";
pub const SENSOR: &str = "dtmi:twingraph:isa95:TemperatureSensor;1";
pub const SITE: &str = "dtmi:twingraph:isa95:Site;1";
pub const AREA: &str = "dtmi:twingraph:isa95:Area;1";
pub const LINE: &str = "dtmi:twingraph:isa95:ProductionLine;1";

pub fn create(id: &str, model: &str) -> Op {
    Op::CreateTwin {
        id: id.to_owned(),
        model: model.to_owned(),
        desired: None,
        reported: None,
    }
}

pub fn rel(source: &str, name: &str, target: &str) -> Op {
    Op::CreateRelationship {
        source: source.to_owned(),
        id: None,
        name: name.to_owned(),
        target: target.to_owned(),
        properties: None,
    }
}

pub fn desired(id: &str, patch: Value) -> Op {
    Op::PatchDesired {
        id: id.to_owned(),
        patch,
        expected_version: None,
    }
}

pub fn reported(id: &str, patch: Value) -> Op {
    Op::PatchReported {
        id: id.to_owned(),
        patch,
        expected_version: None,
        source_time: None,
    }
}

pub async fn apply(
    s: &dyn GraphStore,
    ops: Vec<Op>,
) -> Result<Vec<twingraph::twin::Event>, StoreError> {
    s.apply(Batch { ops }, "test").await
}

pub async fn must(s: &dyn GraphStore, ops: Vec<Op>) -> Vec<twingraph::twin::Event> {
    apply(s, ops).await.expect("batch applies")
}

async fn twin(s: &dyn GraphStore, id: &str) -> Arc<Twin> {
    s.twin(id).await.expect("read").expect("twin exists")
}

fn prop<'a>(t: &'a Twin, name: &str) -> &'a twingraph::twin::state::PropState {
    t.root.props.get(name).expect("property present")
}

pub async fn twin_is_created_and_read_back(s: &dyn GraphStore) {
    let events = must(
        s,
        vec![Op::CreateTwin {
            id: "pump-1".into(),
            model: PUMP.into(),
            desired: Some(json!({"flowSetpoint": 12.5})),
            reported: Some(json!({"flowSetpoint": 10.0, "manufacturer": "Grundfos"})),
        }],
    )
    .await;
    assert_eq!(events.len(), 1);
    let t = twin(s, "pump-1").await;
    assert_eq!(&*t.model, PUMP);
    assert_eq!(t.version, 1);
    assert_eq!(t.etag(), "W/\"1\"");
    assert_eq!(t.created_at, t.updated_at);
    assert_eq!(
        prop(&t, "flowSetpoint").desired.as_ref().map(|d| &d.value),
        Some(&json!(12.5))
    );
    assert_eq!(
        prop(&t, "manufacturer").reported.as_ref().map(|r| &r.value),
        Some(&json!("Grundfos"))
    );
    // Delta: the desired setpoint differs from the reported one.
    assert_eq!(t.delta(), vec![(None, "flowSetpoint")]);
}

pub async fn bad_ids_unknown_models_and_duplicates_are_refused(s: &dyn GraphStore) {
    for (op, code) in [
        (create("", PUMP), "invalid_twin_id"),
        (create("a\u{7}b", PUMP), "invalid_twin_id"),
        (create(&"x".repeat(257), PUMP), "invalid_twin_id"),
        (create("p", "dtmi:nope:Nothing;1"), "unknown_model"),
    ] {
        let e = apply(s, vec![op]).await.expect_err("refused");
        assert_eq!(e.code().reason(), code, "{e}");
    }
    must(s, vec![create("p", PUMP)]).await;
    let e = apply(s, vec![create("p", MOTOR)])
        .await
        .expect_err("duplicate");
    assert_eq!(e.code().reason(), "twin_exists");
}

pub async fn invalid_values_are_refused_and_nothing_is_written(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP)]).await;
    let before = s.last_seq();
    for (patch, path_part) in [
        (json!({"flowSetpoint": "fast"}), "flowSetpoint"),
        (json!({"noSuchThing": 1}), "noSuchThing"),
        (json!({"lifecycle": "retired"}), "lifecycle"),
        (json!({"location": {"floor": 3}}), "location.floor"),
        (
            json!({"maintenanceInterval": "every week"}),
            "maintenanceInterval",
        ),
    ] {
        let e = apply(s, vec![desired("p", patch.clone())])
            .await
            .expect_err("invalid");
        assert_eq!(e.code().reason(), "validation_failed", "{patch}: {e}");
        let msg = e.to_string();
        assert!(msg.contains("twin p") && msg.contains(path_part), "{msg}");
    }
    assert_eq!(s.last_seq(), before, "no event was written");
    assert_eq!(twin(s, "p").await.version, 1);
}

pub async fn only_writable_properties_have_desired_state(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP)]).await;
    let e = apply(s, vec![desired("p", json!({"runState": "running"}))])
        .await
        .expect_err("read-only");
    assert!(e.to_string().contains("not writable"), "{e}");
    let e = apply(s, vec![desired("p", json!({"flowRate": 1.0}))])
        .await
        .expect_err("telemetry");
    assert_eq!(e.code().reason(), "validation_failed");
    // Reported state takes read-only properties and telemetry.
    must(
        s,
        vec![reported(
            "p",
            json!({"runState": "running", "flowRate": 4.2}),
        )],
    )
    .await;
}

pub async fn merge_patch_merges_objects_and_null_removes(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP)]).await;
    must(
        s,
        vec![desired(
            "p",
            json!({"location": {"building": "B1", "floor": "2"}, "displayLabel": "P1"}),
        )],
    )
    .await;
    must(
        s,
        vec![desired(
            "p",
            json!({"location": {"floor": "3"}, "displayLabel": null}),
        )],
    )
    .await;
    let t = twin(s, "p").await;
    assert_eq!(
        prop(&t, "location").desired.as_ref().map(|d| &d.value),
        Some(&json!({"building": "B1", "floor": "3"}))
    );
    assert!(!t.root.props.contains_key("displayLabel"));
    assert_eq!(t.version, 3);
}

pub async fn stale_expected_version_is_a_conflict_that_writes_nothing(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP)]).await;
    must(s, vec![desired("p", json!({"flowSetpoint": 1.0}))]).await;
    let before = s.last_seq();
    let e = apply(
        s,
        vec![Op::PatchDesired {
            id: "p".into(),
            patch: json!({"flowSetpoint": 2.0}),
            expected_version: Some(1),
        }],
    )
    .await
    .expect_err("stale");
    assert_eq!(e.code().reason(), "version_conflict");
    assert!(e.to_string().contains("current version is 2"), "{e}");
    assert_eq!(s.last_seq(), before);
    must(
        s,
        vec![Op::PatchDesired {
            id: "p".into(),
            patch: json!({"flowSetpoint": 2.0}),
            expected_version: Some(2),
        }],
    )
    .await;
}

pub async fn stale_device_data_never_wins(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP)]).await;
    let at = |patch: Value, t: i64| Op::PatchReported {
        id: "p".into(),
        patch,
        expected_version: None,
        source_time: Some(t),
    };
    must(s, vec![at(json!({"flowRate": 5.0}), 2_000)]).await;
    let events = must(
        s,
        vec![at(
            json!({"flowRate": 1.0, "dischargePressure": 80.0}),
            1_000,
        )],
    )
    .await;
    let t = twin(s, "p").await;
    let flow = prop(&t, "flowRate").reported.as_ref().expect("reported");
    assert_eq!(flow.value, json!(5.0), "older data did not overwrite");
    assert_eq!(flow.source_time, Some(2_000));
    assert_eq!(
        prop(&t, "dischargePressure")
            .reported
            .as_ref()
            .map(|r| &r.value),
        Some(&json!(80.0))
    );
    let Change::ReportedPatched { stale, .. } = &events[0].change else {
        panic!("a reported patch event");
    };
    assert_eq!(
        stale,
        &vec!["flowRate".to_owned()],
        "the stale update is recorded"
    );
}

/// A report stamped further ahead of the server's clock than the allowed
/// skew (5 minutes by default) is refused and writes nothing; within the
/// skew it is taken. Accepted, a report from 2030 would make every later,
/// correct report look stale.
pub async fn reports_from_the_future_are_refused(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP)]).await;
    use twingraph::twin::clock::Clock as _;
    let now = twingraph::twin::clock::SystemClock.now();
    let at = |flow: f64, t: i64| Op::PatchReported {
        id: "p".into(),
        patch: json!({ "flowRate": flow }),
        expected_version: None,
        source_time: Some(t),
    };
    let e = s
        .apply(
            Batch {
                ops: vec![at(1.0, now + 600_000_000)],
            },
            "device",
        )
        .await
        .expect_err("ten minutes ahead");
    assert_eq!(e.code(), twingraph::codes::Code::SourceTimeAhead, "{e}");
    assert!(
        e.to_string().contains("ahead of the server's clock")
            && e.to_string().contains("devices.max_clock_skew_seconds"),
        "{e}"
    );
    let t = twin(s, "p").await;
    assert_eq!(t.version, 1, "nothing written");
    must(s, vec![at(2.0, now + 60_000_000)]).await;
    let t = twin(s, "p").await;
    let flow = prop(&t, "flowRate").reported.as_ref().expect("reported");
    assert_eq!(flow.value, json!(2.0), "a minute ahead is within the skew");
}

pub async fn writable_properties_track_acknowledgements(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP)]).await;
    must(s, vec![desired("p", json!({"flowSetpoint": 12.0}))]).await; // version 2
    assert_eq!(
        prop(&*twin(s, "p").await, "flowSetpoint").ack_status(),
        AckStatus::Pending
    );
    must(
        s,
        vec![reported(
            "p",
            json!({"flowSetpoint": {"value": 12.0, "ac": 200, "av": 2, "ad": "applied"}}),
        )],
    )
    .await;
    let t = twin(s, "p").await;
    let p = prop(&t, "flowSetpoint");
    assert_eq!(p.ack_status(), AckStatus::Acknowledged);
    assert_eq!(p.reported.as_ref().map(|r| &r.value), Some(&json!(12.0)));
    assert!(t.delta().is_empty());
    must(s, vec![desired("p", json!({"flowSetpoint": 99.0}))]).await; // version 4
    assert_eq!(
        prop(&*twin(s, "p").await, "flowSetpoint").ack_status(),
        AckStatus::Pending
    );
    must(
        s,
        vec![reported(
            "p",
            json!({"flowSetpoint": {"value": 12.0, "ac": 500, "av": 4, "ad": "out of range"}}),
        )],
    )
    .await;
    assert_eq!(
        prop(&*twin(s, "p").await, "flowSetpoint").ack_status(),
        AckStatus::Failed
    );
}

pub async fn components_hold_nested_state(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP)]).await;
    must(
        s,
        vec![reported(
            "p",
            json!({"drive": {"speed": 1450.0, "current": 12.3}}),
        )],
    )
    .await;
    must(s, vec![desired("p", json!({"drive": {"ratedPower": 7.5}}))]).await;
    let t = twin(s, "p").await;
    let drive = t.components.get("drive").expect("component state");
    assert_eq!(
        drive
            .props
            .get("speed")
            .and_then(|p| p.reported.as_ref())
            .map(|r| &r.value),
        Some(&json!(1450.0))
    );
    assert_eq!(t.delta(), vec![(Some("drive"), "ratedPower")]);
    let e = apply(s, vec![reported("p", json!({"drive": {"torque": 1.0}}))])
        .await
        .expect_err("unknown");
    assert!(e.to_string().contains("drive.torque"), "{e}");
}

pub async fn relationships_follow_their_declaration(s: &dyn GraphStore) {
    must(
        s,
        vec![
            create("p", PUMP),
            create("m", MOTOR),
            create("t", SENSOR),
            create("site", SITE),
        ],
    )
    .await;
    // Inherited declaration (Equipment.feeds), generated id, properties validated.
    let ev = must(
        s,
        vec![Op::CreateRelationship {
            source: "p".into(),
            id: None,
            name: "feeds".into(),
            target: "m".into(),
            properties: Some(json!({"medium": "water"})),
        }],
    )
    .await;
    let Change::RelationshipCreated { relationship } = &ev[0].change else {
        panic!("relationship created");
    };
    assert!(!relationship.id.is_empty());
    assert_eq!(
        s.relationship("p", &relationship.id)
            .await
            .expect("read")
            .map(|r| r.target),
        Some("m".into())
    );
    for (op, code) in [
        (rel("p", "feeds", "nobody"), "twin_not_found"),
        (rel("p", "owns", "m"), "validation_failed"),
        (rel("t", "monitors", "site"), "validation_failed"), // target must be Equipment
        (
            Op::CreateRelationship {
                source: "p".into(),
                id: None,
                name: "feeds".into(),
                target: "m".into(),
                properties: Some(json!({"medium": 3})),
            },
            "validation_failed",
        ),
    ] {
        let e = apply(s, vec![op]).await.expect_err("refused");
        assert_eq!(e.code().reason(), code, "{e}");
    }
    // maxMultiplicity: a sensor monitors one piece of equipment.
    must(s, vec![rel("t", "monitors", "p")]).await;
    let e = apply(s, vec![rel("t", "monitors", "m")])
        .await
        .expect_err("multiplicity");
    assert_eq!(e.code().reason(), "multiplicity_exceeded");
    // Twins with relationships cannot be deleted.
    let e = apply(
        s,
        vec![Op::DeleteTwin {
            id: "m".into(),
            expected_version: None,
        }],
    )
    .await
    .expect_err("has rels");
    assert_eq!(e.code().reason(), "twin_has_relationships");
    let out = s
        .relationships("p", Direction::Out, None)
        .await
        .expect("rels");
    assert_eq!(out.len(), 1);
    let inc = s
        .relationships("p", Direction::In, Some("monitors"))
        .await
        .expect("rels");
    assert_eq!(inc.len(), 1);
}

pub async fn relationship_updates_and_deletes_are_versioned(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP), create("m", MOTOR)]).await;
    must(
        s,
        vec![Op::CreateRelationship {
            source: "p".into(),
            id: Some("r1".into()),
            name: "feeds".into(),
            target: "m".into(),
            properties: None,
        }],
    )
    .await;
    must(
        s,
        vec![Op::UpdateRelationship {
            source: "p".into(),
            id: "r1".into(),
            patch: json!({"medium": "oil"}),
            expected_version: Some(1),
        }],
    )
    .await;
    let r = s
        .relationship("p", "r1")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(r.version, 2);
    assert_eq!(r.properties.get("medium"), Some(&json!("oil")));
    let e = apply(
        s,
        vec![Op::DeleteRelationship {
            source: "p".into(),
            id: "r1".into(),
            expected_version: Some(1),
        }],
    )
    .await
    .expect_err("stale");
    assert_eq!(e.code().reason(), "version_conflict");
    must(
        s,
        vec![
            Op::DeleteRelationship {
                source: "p".into(),
                id: "r1".into(),
                expected_version: Some(2),
            },
            Op::DeleteTwin {
                id: "m".into(),
                expected_version: None,
            },
        ],
    )
    .await;
    assert!(s.twin("m").await.expect("read").is_none());
}

pub async fn containment_is_a_tree(s: &dyn GraphStore) {
    must(
        s,
        vec![
            create("site", SITE),
            create("area", AREA),
            create("area2", AREA),
            create("line", LINE),
            rel("site", "contains", "area"),
            rel("area", "contains", "line"),
        ],
    )
    .await;
    assert_eq!(
        s.ancestors("line").await.expect("ancestors"),
        vec!["area".to_owned(), "site".to_owned()]
    );
    let d = s.descendants("site", 5).await.expect("descendants");
    let ids: Vec<(&str, usize)> = d.iter().map(|r| (r.twin.as_str(), r.depth)).collect();
    assert_eq!(ids, vec![("area", 1), ("line", 2)]);
    // One container at most.
    let e = apply(s, vec![rel("area2", "contains", "line")])
        .await
        .expect_err("second container");
    assert_eq!(e.code().reason(), "containment_violation");
}

pub async fn containment_cycles_are_refused(s: &dyn GraphStore) {
    let ws = "dtmi:twingraph:isa95:WorkCell;1";
    must(
        s,
        vec![create("a", ws), create("b", ws), rel("a", "contains", "b")],
    )
    .await;
    let e = apply(s, vec![rel("b", "contains", "a")])
        .await
        .expect_err("cycle");
    assert_eq!(e.code().reason(), "containment_violation");
    let e = apply(s, vec![rel("a", "contains", "a")])
        .await
        .expect_err("self");
    assert_eq!(e.code().reason(), "containment_violation");
}

pub async fn traversal_follows_names_directions_and_depth(s: &dyn GraphStore) {
    // p1 -feeds-> p2 -feeds-> p3 -feeds-> p4; c dependsOn p1 is reversed-reachable.
    must(
        s,
        vec![
            create("p1", PUMP),
            create("p2", PUMP),
            create("p3", PUMP),
            create("p4", PUMP),
            create("c", "dtmi:twingraph:isa95:Compressor;1"),
            rel("p1", "feeds", "p2"),
            rel("p2", "feeds", "p3"),
            rel("p3", "feeds", "p4"),
            rel("p1", "feeds", "p3"),
            rel("p2", "dependsOn", "c"),
        ],
    )
    .await;
    let t = |names: Vec<&str>, direction, max_depth| Traversal {
        start: "p1".into(),
        names: names.into_iter().map(str::to_owned).collect(),
        direction,
        max_depth,
    };
    let r = s
        .traverse(&t(vec!["feeds"], Direction::Out, 10))
        .await
        .expect("traverse");
    let got: Vec<(&str, usize)> = r.iter().map(|x| (x.twin.as_str(), x.depth)).collect();
    assert_eq!(
        got,
        vec![("p2", 1), ("p3", 1), ("p4", 2)],
        "deduplicated, shortest depth"
    );
    let p4 = r.iter().find(|x| x.twin == "p4").expect("p4");
    assert_eq!(p4.path.len(), 2);
    assert_eq!(p4.path[0].source, "p1");
    assert_eq!(p4.path[1].target, "p4");
    let r = s
        .traverse(&t(vec!["feeds"], Direction::Out, 1))
        .await
        .expect("traverse");
    assert_eq!(r.len(), 2);
    let r = s
        .traverse(&t(vec![], Direction::Out, 10))
        .await
        .expect("traverse");
    assert!(
        r.iter().any(|x| x.twin == "c"),
        "no names: every relationship"
    );
    // "What depends on the compressor?"
    let up = s
        .traverse(&Traversal {
            start: "c".into(),
            names: vec!["dependsOn".into(), "feeds".into()],
            direction: Direction::In,
            max_depth: 10,
        })
        .await
        .expect("traverse");
    let ids: Vec<&str> = up.iter().map(|x| x.twin.as_str()).collect();
    assert_eq!(ids, vec!["p2", "p1"]);
    let e = s
        .traverse(&t(vec![], Direction::Out, 11))
        .await
        .expect_err("too deep");
    assert_eq!(e.code().reason(), "validation_failed");
}

/// A relationship name that would end the pattern and delete the start if
/// it were pasted into Cypher.
const INJECTED: &str = "feeds`]-() DETACH DELETE s //";

/// `reach` answers what `traverse` does (who, how far, in order) with each
/// twin's model: along cycles, both ways, by name, at every depth.
pub async fn reach_agrees_with_traverse(s: &dyn GraphStore) {
    let compressor = "dtmi:twingraph:isa95:Compressor;1";
    must(
        s,
        vec![
            create("r1", PUMP),
            create("r2", PUMP),
            create("r3", MOTOR),
            create("r4", compressor),
            create("lonely", PUMP),
            rel("r1", "feeds", "r2"),
            rel("r2", "feeds", "r1"),
            rel("r2", "feeds", "r3"),
            rel("r3", "dependsOn", "r4"),
            rel("r1", "dependsOn", "r4"),
        ],
    )
    .await;
    let mut checked = 0;
    for start in ["r1", "r2", "r4", "lonely"] {
        for names in [
            vec![],
            vec!["feeds"],
            vec!["dependsOn", "feeds"],
            vec!["feeds", INJECTED],
            vec!["not a name"],
        ] {
            for direction in [Direction::Out, Direction::In, Direction::Both] {
                for max_depth in [0, 1, 2, 3, 10] {
                    let t = Traversal {
                        start: start.into(),
                        names: names.iter().map(|n| (*n).to_owned()).collect(),
                        direction,
                        max_depth,
                    };
                    let hits = s.traverse(&t).await.expect("traverse");
                    let reach = s.reach(&t).await.expect("reach");
                    let want: Vec<(&str, usize)> =
                        hits.iter().map(|h| (h.twin.as_str(), h.depth)).collect();
                    let got: Vec<(&str, usize)> =
                        reach.iter().map(|r| (r.twin.as_str(), r.depth)).collect();
                    assert_eq!(got, want, "{t:?}");
                    for r in &reach {
                        let twin = s.twin(&r.twin).await.expect("read").expect("reached");
                        assert_eq!(r.model, twin.model, "{t:?}");
                    }
                    checked += usize::from(!reach.is_empty());
                }
            }
        }
    }
    assert!(checked > 20, "most traversals reach something ({checked})");
    // Names that can be no relationship's are crossed by nothing, and
    // change nothing.
    let by = |names: &[&str]| Traversal {
        start: "r1".into(),
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        direction: Direction::Both,
        max_depth: 3,
    };
    let feeds = s.reach(&by(&["feeds"])).await.expect("reach");
    assert_eq!(feeds.len(), 2, "r2 and r3 by feeds: {feeds:?}");
    assert_eq!(
        s.reach(&by(&["feeds", INJECTED])).await.expect("reach"),
        feeds
    );
    for odd in [&["not a name"][..], &[INJECTED], &["nosuch"]] {
        assert_eq!(
            s.reach(&by(odd)).await.expect("reach"),
            Vec::new(),
            "{odd:?}"
        );
        assert_eq!(
            s.traverse(&by(odd)).await.expect("traverse").len(),
            0,
            "{odd:?}"
        );
    }
    assert!(
        s.twin("r1").await.expect("read").is_some(),
        "r1 is still there"
    );
    let from_r1 = s
        .reach(&Traversal {
            start: "r1".into(),
            names: vec![],
            direction: Direction::Out,
            max_depth: 10,
        })
        .await
        .expect("reach");
    let got: Vec<(&str, &str, usize)> = from_r1
        .iter()
        .map(|r| (r.twin.as_str(), &*r.model, r.depth))
        .collect();
    assert_eq!(
        got,
        vec![("r2", PUMP, 1), ("r4", compressor, 1), ("r3", MOTOR, 2)],
        "the start is not reached again through the cycle"
    );
    let missing = Traversal {
        start: "nobody".into(),
        names: vec![],
        direction: Direction::Out,
        max_depth: 2,
    };
    let e = s.reach(&missing).await.expect_err("unknown start");
    assert_eq!(e.code().reason(), "twin_not_found");
    let e = s
        .reach(&Traversal {
            start: "r1".into(),
            max_depth: 11,
            ..missing
        })
        .await
        .expect_err("too deep");
    assert_eq!(e.code().reason(), "validation_failed");
}

pub async fn batches_are_all_or_nothing(s: &dyn GraphStore) {
    let before = s.last_seq();
    let e = apply(
        s,
        vec![
            create("a", PUMP),
            create("b", MOTOR),
            rel("a", "feeds", "b"),
            desired("b", json!({"speedSetpoint": "fast"})),
        ],
    )
    .await
    .expect_err("last op invalid");
    let StoreError::Batch(b) = &e else {
        panic!("a batch error: {e}");
    };
    assert_eq!(b.index, 3);
    assert_eq!(s.last_seq(), before);
    assert!(
        s.twin("a").await.expect("read").is_none(),
        "nothing of the batch is visible"
    );
    let events = must(
        s,
        vec![
            create("a", PUMP),
            create("b", MOTOR),
            rel("a", "feeds", "b"),
        ],
    )
    .await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![before + 1, before + 2, before + 3]);
}

pub async fn events_are_gap_free_and_readable(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP)]).await;
    must(s, vec![desired("p", json!({"flowSetpoint": 1.0}))]).await;
    let _ = apply(s, vec![desired("p", json!({"flowSetpoint": "x"}))]).await;
    must(s, vec![reported("p", json!({"flowRate": 2.0}))]).await;
    let all = s.events_after(0, 100).await.expect("events");
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free from 1"
    );
    assert!(all.windows(2).all(|w| w[0].time <= w[1].time));
    assert_eq!(all.last().map(|e| e.seq), Some(s.last_seq()));
    let tail = s.events_after(1, 1).await.expect("events");
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].seq, 2);
    let hist = s.twin_events("p", None, None).await.expect("history");
    assert_eq!(hist.len(), 3);
    assert!(hist.iter().all(|e| e.actor == "test"));
    let first = hist[0].time;
    let none = s
        .twin_events("p", Some(first + 1_000_000_000), None)
        .await
        .expect("history");
    assert!(none.is_empty());
}

pub async fn time_travel_restores_twins_and_relationships(s: &dyn GraphStore) {
    must(s, vec![create("p", PUMP), create("m", MOTOR)]).await;
    let v1 = s.last_seq();
    must(s, vec![desired("p", json!({"flowSetpoint": 1.0}))]).await;
    let v2 = s.last_seq();
    must(
        s,
        vec![
            desired("p", json!({"flowSetpoint": 2.0})),
            rel("p", "feeds", "m"),
        ],
    )
    .await;
    let v3 = s.last_seq();
    let all_rels = s
        .relationships("p", Direction::Out, None)
        .await
        .expect("rels");
    must(
        s,
        vec![Op::DeleteRelationship {
            source: "p".into(),
            id: all_rels[0].id.clone(),
            expected_version: None,
        }],
    )
    .await;
    must(
        s,
        vec![Op::DeleteTwin {
            id: "p".into(),
            expected_version: None,
        }],
    )
    .await;

    let at = |seq| At::Seq(seq);
    let t1 = s
        .twin_as_of("p", at(v1))
        .await
        .expect("as of")
        .expect("existed");
    assert!(t1.root.props.is_empty());
    let t2 = s
        .twin_as_of("p", at(v2))
        .await
        .expect("as of")
        .expect("existed");
    assert_eq!(
        prop(&t2, "flowSetpoint").desired.as_ref().map(|d| &d.value),
        Some(&json!(1.0))
    );
    let t3 = s
        .twin_as_of("p", at(v3))
        .await
        .expect("as of")
        .expect("existed");
    assert_eq!(t3.version, 3);
    assert!(
        s.twin_as_of("p", at(s.last_seq()))
            .await
            .expect("as of")
            .is_none(),
        "deleted"
    );
    assert!(
        s.twin_as_of("p", at(0)).await.expect("as of").is_none(),
        "not yet created"
    );
    assert_eq!(
        s.relationships_as_of("p", at(v3))
            .await
            .expect("rels")
            .len(),
        1
    );
    assert_eq!(
        s.relationships_as_of("p", at(v2))
            .await
            .expect("rels")
            .len(),
        0
    );
    assert_eq!(
        s.relationships_as_of("m", at(v3))
            .await
            .expect("rels")
            .len(),
        1,
        "incoming too"
    );
    // By time: the latest state at the time of the third batch.
    let time3 = s.events_after(v3 - 1, 1).await.expect("events")[0].time;
    let by_time = s
        .twin_as_of("p", At::Time(time3))
        .await
        .expect("as of")
        .expect("existed");
    assert_eq!(by_time.version, 3);
}

pub async fn concurrent_writers_are_serialized_without_loss(s: Arc<dyn GraphStore>) {
    let n = 16usize;
    let per = 20usize;
    let mut ops = Vec::new();
    for i in 0..n {
        ops.push(create(&format!("t{i}"), PUMP));
    }
    ops.push(create("hot", PUMP));
    must(&*s, ops).await;
    let start = s.last_seq();
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..per {
                #[allow(clippy::cast_precision_loss)]
                let v = k as f64;
                apply(
                    &*s,
                    vec![reported(&format!("t{i}"), json!({"flowRate": v}))],
                )
                .await
                .expect("own twin");
                apply(&*s, vec![reported("hot", json!({"flowRate": v}))])
                    .await
                    .expect("hot twin");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let total = (n * per * 2) as u64;
    assert_eq!(s.last_seq(), start + total);
    let hot = twin(&*s, "hot").await;
    assert_eq!(
        hot.version,
        1 + (n * per) as u64,
        "every hot update applied once"
    );
    let events = s.twin_events("hot", None, None).await.expect("history");
    let versions: Vec<u64> = events
        .iter()
        .filter_map(|e| match &e.change {
            Change::ReportedPatched { version, .. } => Some(*version),
            _ => None,
        })
        .collect();
    assert_eq!(
        versions,
        (2..=1 + (n * per) as u64).collect::<Vec<_>>(),
        "ordered, no gaps"
    );
}

pub async fn subscribers_see_committed_events_in_order(s: &dyn GraphStore) {
    let mut rx = s.subscribe();
    must(
        s,
        vec![
            create("p", PUMP),
            desired("p", json!({"flowSetpoint": 3.0})),
        ],
    )
    .await;
    let a = rx.recv().await.expect("event");
    let b = rx.recv().await.expect("event");
    assert_eq!(b.seq, a.seq + 1);
    assert!(matches!(a.change, Change::TwinCreated { .. }));
    assert!(matches!(b.change, Change::DesiredPatched { .. }));
}

pub async fn twins_are_listed_by_model_with_subtypes(s: &dyn GraphStore) {
    must(
        s,
        vec![
            create("p1", PUMP),
            create("p2", PUMP),
            create("m1", MOTOR),
            create("site", SITE),
        ],
    )
    .await;
    let q = |model: &str, subtypes, after: Option<&str>, limit| TwinQuery {
        filter: None,
        model: Some(model.to_owned()),
        subtypes,
        after: after.map(str::to_owned),
        limit,
        ..TwinQuery::default()
    };
    let page = s.twins(&q(EQUIPMENT, true, None, 10)).await.expect("list");
    let ids: Vec<&str> = page.items.iter().map(|t| &*t.id).collect();
    assert_eq!(ids, vec!["m1", "p1", "p2"]);
    assert!(
        s.twins(&q(EQUIPMENT, false, None, 10))
            .await
            .expect("list")
            .items
            .is_empty()
    );
    let first = s.twins(&q(PUMP, false, None, 1)).await.expect("list");
    assert!(first.has_more);
    let next = s.twins(&q(PUMP, false, Some("p1"), 1)).await.expect("list");
    assert_eq!(&*next.items[0].id, "p2");
    assert!(!next.has_more);
    let all = s
        .twins(&TwinQuery {
            limit: 100,
            ..TwinQuery::default()
        })
        .await
        .expect("list");
    assert_eq!(all.items.len(), 4);
}

/// Lists with a `where` filter: what the store can hand to its query
/// engine and what it must check itself give the same pages.
pub async fn twins_are_filtered_by_their_values(s: &dyn GraphStore) {
    let mut ops = Vec::new();
    for i in 0..12u32 {
        let id = format!("p{i:02}");
        ops.push(create(&id, PUMP));
        let maker = if i % 2 == 0 { "acme" } else { "zenith" };
        ops.push(reported(
            &id,
            json!({"flowRate": f64::from(i), "manufacturer": maker}),
        ));
        ops.push(desired(&id, json!({"flowSetpoint": f64::from(i % 3)})));
    }
    ops.push(create("m1", MOTOR));
    must(s, ops).await;
    let list = |f: Value, after: Option<&str>, limit| {
        let filter = twingraph::twin::filter::Filter::parse(&f).expect("filter");
        TwinQuery {
            model: Some(PUMP.to_owned()),
            subtypes: true,
            filter: Some(Arc::new(filter)),
            after: after.map(str::to_owned),
            limit,
            ..TwinQuery::default()
        }
    };
    let ids = |p: &twingraph::store::Page<Twin>| -> Vec<String> {
        p.items.iter().map(|t| t.id.to_string()).collect()
    };
    // Plain comparisons on top-level values, paged.
    let f = json!({"reported.flowRate": {"gt": 5}, "reported.manufacturer": {"startsWith": "ac"}});
    let page = s.twins(&list(f.clone(), None, 2)).await.expect("list");
    assert_eq!(
        (ids(&page), page.has_more),
        (vec!["p06".into(), "p08".into()], true)
    );
    let page = s.twins(&list(f, Some("p08"), 2)).await.expect("list");
    assert_eq!((ids(&page), page.has_more), (vec!["p10".into()], false));
    // Negation (checked by the store itself), paged.
    let f = json!({"not": {"reported.manufacturer": "acme"}, "reported.flowRate": {"lt": 6}});
    let page = s.twins(&list(f.clone(), None, 2)).await.expect("list");
    assert_eq!(
        (ids(&page), page.has_more),
        (vec!["p01".into(), "p03".into()], true)
    );
    let page = s.twins(&list(f, Some("p03"), 2)).await.expect("list");
    assert_eq!((ids(&page), page.has_more), (vec!["p05".into()], false));
    // Desired values, `in`, `or`, `ne`.
    let f = json!({"or": [{"desired.flowSetpoint": 2}, {"id": {"in": ["p00", "p01"]}}]});
    let page = s.twins(&list(f, None, 100)).await.expect("list");
    assert_eq!(ids(&page), ["p00", "p01", "p02", "p05", "p08", "p11"]);
    let f = json!({"reported.flowRate": {"ne": 0}});
    let page = s.twins(&list(f, None, 100)).await.expect("list");
    assert_eq!(page.items.len(), 11);
    // Nothing matches: an empty page.
    let f = json!({"reported.flowRate": {"gt": 100}});
    let page = s.twins(&list(f, None, 10)).await.expect("list");
    assert!(page.items.is_empty() && !page.has_more);
}

/// Lists read from either end of a range of ids: the last page of a
/// range, going backward, has the same twins in the same order as going
/// forward, with filters, subtypes and through a scoped view too.
pub async fn twins_are_listed_backward_between_bounds(s: &dyn GraphStore) {
    let mut ops = Vec::new();
    for i in 0..10u32 {
        let id = format!("p{i}");
        ops.push(create(&id, PUMP));
        ops.push(reported(&id, json!({"flowRate": f64::from(i)})));
    }
    ops.push(create("m1", MOTOR));
    ops.push(create("site", SITE));
    must(s, ops).await;
    let ids = |p: &twingraph::store::Page<Twin>| -> Vec<String> {
        p.items.iter().map(|t| t.id.to_string()).collect()
    };
    let q = |after: Option<&str>, before: Option<&str>, limit, backward| TwinQuery {
        model: Some(EQUIPMENT.to_owned()),
        subtypes: true,
        after: after.map(str::to_owned),
        before: before.map(str::to_owned),
        limit,
        backward,
        ..TwinQuery::default()
    };
    // The last three, then the three before them.
    let page = s.twins(&q(None, None, 3, true)).await.expect("list");
    assert_eq!(
        (ids(&page), page.has_more),
        (vec!["p7".into(), "p8".into(), "p9".into()], true)
    );
    let page = s.twins(&q(None, Some("p7"), 3, true)).await.expect("list");
    assert_eq!(
        (ids(&page), page.has_more),
        (vec!["p4".into(), "p5".into(), "p6".into()], true)
    );
    // Both bounds, either way.
    let forward = s
        .twins(&q(Some("m1"), Some("p3"), 10, false))
        .await
        .expect("list");
    let backward = s
        .twins(&q(Some("m1"), Some("p3"), 10, true))
        .await
        .expect("list");
    assert_eq!(ids(&forward), ["p0", "p1", "p2"]);
    assert_eq!(ids(&backward), ids(&forward));
    assert!(!forward.has_more && !backward.has_more);
    let page = s.twins(&q(None, Some("m1"), 5, true)).await.expect("list");
    assert_eq!((ids(&page), page.has_more), (Vec::<String>::new(), false));
    // All models, backward, up to the first.
    let all = TwinQuery {
        limit: 2,
        backward: true,
        ..TwinQuery::default()
    };
    let page = s.twins(&all).await.expect("list");
    assert_eq!(ids(&page), ["p9", "site"]);
    let page = s
        .twins(&TwinQuery {
            before: Some("m1".into()),
            ..all
        })
        .await
        .expect("list");
    assert_eq!((ids(&page), page.has_more), (Vec::<String>::new(), false));
    // With a filter the store checks itself (a negation), backward.
    let filter =
        twingraph::twin::filter::Filter::parse(&json!({"not": {"reported.flowRate": {"lt": 4}}}))
            .expect("filter");
    let page = s
        .twins(&TwinQuery {
            filter: Some(Arc::new(filter)),
            ..q(None, Some("p9"), 2, true)
        })
        .await
        .expect("list");
    assert_eq!(
        (ids(&page), page.has_more),
        (vec!["p7".into(), "p8".into()], true)
    );
    let page = s
        .twin_ids(&q(Some("p2"), None, 2, true))
        .await
        .expect("ids");
    assert_eq!(page.items, ["p8", "p9"]);
}

/// Ordered lists: by one key or several, either direction, absent values
/// last both ways, ties by id, across subtypes, filtered, paged by
/// position forward and backward, and kept in order as twins change.
pub async fn twins_are_listed_in_order(s: &dyn GraphStore) {
    use twingraph::twin::order::SortKey;
    let power = [
        Some(3.0),
        Some(1.0),
        None,
        Some(3.0),
        Some(7.0),
        None,
        Some(1.0),
        Some(5.0),
        Some(3.0),
        Some(0.5),
        Some(7.0),
        Some(2.0),
    ];
    let states = ["running", "idle", "fault"];
    let mut ops = Vec::new();
    for (i, p) in power.iter().enumerate() {
        // Pumps and motors (both Equipment), ids not in power order.
        let id = format!("e{:02}", (i * 7) % 12);
        ops.push(create(&id, if i % 3 == 0 { MOTOR } else { PUMP }));
        let mut patch = json!({"runState": states[i % 3]});
        if let Some(p) = p {
            patch["power"] = json!(p);
        }
        ops.push(reported(&id, patch));
    }
    ops.push(create("site", SITE));
    must(s, ops).await;
    let key = |name: &str, desc: bool| SortKey {
        path: vec!["reported".into(), name.into()],
        desc,
    };
    let ids = |p: &twingraph::store::Page<Twin>| -> Vec<String> {
        p.items.iter().map(|t| t.id.to_string()).collect()
    };
    // The whole list, every page of it forward and backward.
    let listed = |order: Vec<SortKey>, filter: Option<Value>| {
        let filter =
            filter.map(|f| Arc::new(twingraph::twin::filter::Filter::parse(&f).expect("filter")));
        async move {
            let q = TwinQuery {
                model: Some(EQUIPMENT.to_owned()),
                subtypes: true,
                filter,
                order,
                limit: 100,
                ..TwinQuery::default()
            };
            let whole = s.twins(&q).await.expect("list");
            assert!(!whole.has_more);
            for backward in [false, true] {
                let mut at = TwinQuery {
                    limit: 3,
                    backward,
                    ..q.clone()
                };
                let mut pages: Vec<Vec<String>> = Vec::new();
                loop {
                    let page = s.twins(&at).await.expect("page");
                    let next = if backward {
                        page.items.first()
                    } else {
                        page.items.last()
                    };
                    if let Some(t) = next {
                        at.past(t);
                    }
                    pages.push(ids(&page));
                    if !page.has_more {
                        break;
                    }
                }
                if backward {
                    pages.reverse();
                }
                assert_eq!(pages.concat(), ids(&whole), "paged (backward: {backward})");
            }
            ids(&whole)
        }
    };
    // e00 e07 e02 e09 e04 e11 e06 e01 e08 e03 e10 e05 have
    // 3   1   -   3   7   -   1   5   3   .5  7   2
    let by_power_desc = [
        "e04", "e10", "e01", "e00", "e08", "e09", "e05", "e06", "e07", "e03", "e02", "e11",
    ];
    assert_eq!(listed(vec![key("power", true)], None).await, by_power_desc);
    let by_power = [
        "e03", "e06", "e07", "e05", "e00", "e08", "e09", "e01", "e04", "e10", "e02", "e11",
    ];
    assert_eq!(listed(vec![key("power", false)], None).await, by_power);
    // Two keys: run state up (fault, idle, running), then power down.
    assert_eq!(
        listed(vec![key("runState", false), key("power", true)], None).await,
        [
            "e08", "e05", "e02", "e11", "e04", "e10", "e01", "e07", "e00", "e09", "e06", "e03"
        ]
    );
    // Filtered (exactly in Cypher, and not).
    assert_eq!(
        listed(
            vec![key("power", true)],
            Some(json!({"reported.runState": "running"}))
        )
        .await,
        ["e00", "e09", "e06", "e03"]
    );
    assert_eq!(
        listed(
            vec![key("power", true)],
            Some(json!({"not": {"reported.runState": "running"}}))
        )
        .await,
        ["e04", "e10", "e01", "e08", "e05", "e07", "e02", "e11"]
    );
    // Kept in order as values change and twins go.
    must(
        s,
        vec![
            reported("e02", json!({"power": 100.0})),
            reported("e04", json!({"power": null})),
            Op::DeleteTwin {
                id: "e10".into(),
                expected_version: None,
            },
        ],
    )
    .await;
    assert_eq!(
        listed(vec![key("power", true)], None).await,
        [
            "e02", "e01", "e00", "e08", "e09", "e05", "e06", "e07", "e03", "e04", "e11"
        ]
    );
}

/// Aggregates: counts and numbers per model (subtypes included), grouped,
/// filtered (exactly in Cypher and not), under a twin, within a view.
pub async fn twins_are_aggregated(s: &dyn GraphStore) {
    use twingraph::store::{AggregateQuery, Within};
    use twingraph::twin::aggregate::Measures;
    // site ─ area ─ line ┬ a1 (a cell) ─ p1 (running 2), p2 (running 4), m1 (fault, no power)
    //                    └ a2 (a cell) ─ p3 (idle 10), m2 (running 1.5)
    //   and p4 (no state, 7) outside the site
    let cell = "dtmi:twingraph:isa95:WorkCell;1";
    let mut ops = vec![
        create("site", SITE),
        create("area", AREA),
        create("line", LINE),
        create("a1", cell),
        create("a2", cell),
    ];
    ops.push(rel("site", "contains", "area"));
    ops.push(rel("area", "contains", "line"));
    ops.push(rel("line", "contains", "a1"));
    ops.push(rel("line", "contains", "a2"));
    for (id, model, area, v) in [
        (
            "p1",
            PUMP,
            Some("a1"),
            json!({"runState": "running", "power": 2.0}),
        ),
        (
            "p2",
            PUMP,
            Some("a1"),
            json!({"runState": "running", "power": 4.0}),
        ),
        ("m1", MOTOR, Some("a1"), json!({"runState": "fault"})),
        (
            "p3",
            PUMP,
            Some("a2"),
            json!({"runState": "idle", "power": 10.0}),
        ),
        (
            "m2",
            MOTOR,
            Some("a2"),
            json!({"runState": "running", "power": 1.5}),
        ),
        ("p4", PUMP, None, json!({"power": 7.0})),
    ] {
        ops.push(create(id, model));
        ops.push(reported(id, v));
        if let Some(a) = area {
            ops.push(rel(a, "contains", id));
        }
    }
    must(s, ops).await;
    let path = |p: &str| vec!["reported".to_owned(), p.to_owned()];
    let q = |model: &str| AggregateQuery {
        model: Some(model.to_owned()),
        subtypes: true,
        measures: Measures {
            fields: vec![path("power")],
            group_by: Some(path("runState")),
        },
        ..AggregateQuery::default()
    };
    // (key, count, power count, sum, min, max) of each group.
    type Seen = (Value, u64, u64, f64, Option<f64>, Option<f64>);
    let seen = |a: &twingraph::twin::aggregate::Aggregate| -> Vec<Seen> {
        a.groups
            .iter()
            .map(|g| {
                let n = &g.stats.fields[0];
                (g.key.clone(), g.stats.count, n.count, n.sum, n.min, n.max)
            })
            .collect()
    };
    let all = s.aggregate(&q(EQUIPMENT)).await.expect("aggregate");
    assert_eq!(all.all.count, 6);
    assert_eq!(all.all.fields[0].sum, 24.5);
    assert_eq!(all.all.fields[0].avg(), Some(24.5 / 5.0));
    assert_eq!(
        seen(&all),
        [
            (json!("fault"), 1, 0, 0.0, None, None),
            (json!("idle"), 1, 1, 10.0, Some(10.0), Some(10.0)),
            (json!("running"), 3, 3, 7.5, Some(1.5), Some(4.0)),
            (Value::Null, 1, 1, 7.0, Some(7.0), Some(7.0)),
        ]
    );
    // Counts alone (what sort indexes answer on the embedded store) agree,
    // and follow changes.
    let counts = |q: AggregateQuery| AggregateQuery {
        measures: Measures {
            fields: Vec::new(),
            group_by: q.measures.group_by.clone(),
        },
        ..q
    };
    let per_state = |a: &twingraph::twin::aggregate::Aggregate| -> Vec<(Value, u64)> {
        a.groups
            .iter()
            .map(|g| (g.key.clone(), g.stats.count))
            .collect()
    };
    let c = s.aggregate(&counts(q(EQUIPMENT))).await.expect("counts");
    assert_eq!(c.all.count, 6);
    assert_eq!(
        per_state(&c),
        [
            (json!("fault"), 1),
            (json!("idle"), 1),
            (json!("running"), 3),
            (Value::Null, 1)
        ]
    );
    must(
        s,
        vec![
            reported("p4", json!({"runState": "idle"})),
            reported("m2", json!({"runState": "fault"})),
        ],
    )
    .await;
    let c = s.aggregate(&counts(q(EQUIPMENT))).await.expect("counts");
    assert_eq!(
        per_state(&c),
        [
            (json!("fault"), 2),
            (json!("idle"), 2),
            (json!("running"), 2)
        ]
    );
    must(
        s,
        vec![
            reported("p4", json!({"runState": null})),
            reported("m2", json!({"runState": "running"})),
        ],
    )
    .await;
    let c = s
        .aggregate(&AggregateQuery {
            measures: Measures::default(),
            ..q(PUMP)
        })
        .await
        .expect("count");
    assert_eq!((c.all.count, c.groups.len()), (4, 0));
    // One model only; no grouping.
    let pumps = s
        .aggregate(&AggregateQuery {
            subtypes: false,
            measures: Measures {
                fields: vec![path("power")],
                group_by: None,
            },
            ..q(PUMP)
        })
        .await
        .expect("pumps");
    assert_eq!((pumps.all.count, pumps.all.fields[0].max), (4, Some(10.0)));
    assert!(pumps.groups.is_empty());
    // Under a twin (at any depth), and filtered: exactly and not.
    let under = s
        .aggregate(&AggregateQuery {
            under: Some("site".into()),
            ..q(EQUIPMENT)
        })
        .await
        .expect("under");
    assert_eq!(under.all.count, 5);
    for f in [
        json!({"reported.power": {"gte": 2}}),
        json!({"reported.power": {"exists": true}, "not": {"reported.power": {"lt": 2}}}),
    ] {
        let filter = twingraph::twin::filter::Filter::parse(&f).expect("filter");
        let a = s
            .aggregate(&AggregateQuery {
                under: Some("a1".into()),
                filter: Some(Arc::new(filter)),
                ..q(EQUIPMENT)
            })
            .await
            .expect("filtered");
        assert_eq!(
            seen(&a),
            [(json!("running"), 2, 2, 6.0, Some(2.0), Some(4.0))],
            "{f}"
        );
    }
    // Within a view: a subtree (a root inside another counted once), or
    // the roots alone.
    let view = |roots: &[&str], subtrees| AggregateQuery {
        within: Some(Within {
            roots: roots.iter().map(|r| (*r).to_owned()).collect(),
            subtrees,
        }),
        ..q(EQUIPMENT)
    };
    let a = s
        .aggregate(&view(&["a2", "site", "p3", "gone"], true))
        .await
        .expect("view");
    assert_eq!(a.all.count, 5);
    let a = s.aggregate(&view(&["a2"], true)).await.expect("view");
    assert_eq!(seen(&a).len(), 2);
    assert_eq!(a.all.fields[0].sum, 11.5);
    let a = s
        .aggregate(&view(&["a2", "p4"], false))
        .await
        .expect("roots");
    assert_eq!((a.all.count, a.all.fields[0].sum), (1, 7.0));
    // Under a twin that does not exist.
    let missing = s
        .aggregate(&AggregateQuery {
            under: Some("nowhere".into()),
            ..q(EQUIPMENT)
        })
        .await;
    assert!(
        matches!(missing, Err(StoreError::Twin(TwinError::NotFound(_)))),
        "{missing:?}"
    );
}

pub async fn model_changes_are_events(s: &dyn GraphStore) {
    let models = s.models();
    let seq = s
        .set_models(models.clone(), Vec::new(), None, "admin")
        .await
        .expect("set models");
    let e = s.events_after(seq - 1, 1).await.expect("events");
    let Change::ModelsChanged {
        models: ids,
        documents,
    } = &e[0].change
    else {
        panic!("models changed");
    };
    assert!(ids.iter().any(|i| i == PUMP));
    assert!(documents.is_empty());
    assert_eq!(e[0].actor, "admin");
    assert!(
        s.stream_events("models", 0, 10)
            .await
            .expect("stream")
            .is_empty(),
        "a change without documents is no upload"
    );
    // An upload's documents are kept in the `models` stream.
    let doc = json!({"@id": "dtmi:example:Extra;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3"});
    let seq = s
        .set_models(models.clone(), vec![doc.clone()], Some(0), "admin")
        .await
        .expect("set models");
    let kept = s.stream_events("models", 0, 10).await.expect("stream");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].seq, seq);
    assert!(
        matches!(&kept[0].change, Change::ModelsChanged { documents, .. } if documents == &vec![doc])
    );
    // An upload that expects an older head of the stream (another server's
    // upload got in first) writes nothing.
    let other = json!({"@id": "dtmi:example:Other;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3"});
    let stale = s
        .set_models(models.clone(), vec![other.clone()], Some(0), "admin")
        .await
        .expect_err("the stream moved");
    assert!(
        matches!(
            &stale,
            StoreError::Twin(TwinError::StreamMoved { expected: 0, current, .. }) if *current == seq
        ),
        "{stale:?}"
    );
    assert_eq!(s.last_seq(), seq, "nothing written");
    assert_eq!(
        s.stream_events("models", 0, 10)
            .await
            .expect("stream")
            .len(),
        1
    );
    // Expecting the head it is: recorded.
    let next = s
        .set_models(models, vec![other], Some(seq), "admin")
        .await
        .expect("set models");
    assert_eq!(
        s.stream_events("models", 0, 10)
            .await
            .expect("stream")
            .len(),
        2
    );
    assert_eq!(s.last_seq(), next);
}

pub async fn stream_records_are_kept_and_read_back_in_order(s: &dyn GraphStore) {
    use twingraph::rollout::config::ConfigurationSpec;
    let record = |name: &str| Op::Record {
        change: Box::new(Change::Record(Record::ConfigurationCreated {
            configuration: ConfigurationSpec {
                name: name.to_owned(),
                target: PUMP.to_owned(),
                priority: 0,
                description: None,
            },
        })),
    };
    must(s, vec![create("p1", PUMP)]).await;
    let first = must(s, vec![record("a"), record("b")]).await;
    must(s, vec![desired("p1", json!({"flowSetpoint": 1.0}))]).await;
    must(s, vec![record("c")]).await;
    let all = s.stream_events("rollouts", 0, 100).await.expect("stream");
    let names: Vec<&str> = all
        .iter()
        .map(|e| match &e.change {
            Change::Record(Record::ConfigurationCreated { configuration }) => {
                configuration.name.as_str()
            }
            other => panic!("not a stream record: {other:?}"),
        })
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    // Paging: after a record, at most `limit`.
    let page = s
        .stream_events("rollouts", first[0].seq, 1)
        .await
        .expect("page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].seq, first[1].seq);
    assert!(
        s.stream_events("other", 0, 10)
            .await
            .expect("none")
            .is_empty()
    );
    // Records are events of the log too, and concern no twin.
    let logged = s.events_after(first[0].seq - 1, 1).await.expect("log");
    assert_eq!(logged[0], first[0]);
    assert!(s.twin_events("p1", None, None).await.expect("p1").len() == 2);
    // A twin change cannot be smuggled in as a record.
    let smuggled = Op::Record {
        change: Box::new(Change::TwinDeleted {
            twin: "p1".to_owned(),
            version: 9,
        }),
    };
    let before = s.last_seq();
    assert!(apply(s, vec![smuggled]).await.is_err());
    assert_eq!(s.last_seq(), before, "nothing written");
    assert_eq!(twin(s, "p1").await.version, 2);
}

fn configuration_record(name: &str) -> Op {
    Op::Record {
        change: Box::new(Change::Record(Record::ConfigurationCreated {
            configuration: twingraph::rollout::config::ConfigurationSpec {
                name: name.to_owned(),
                target: PUMP.to_owned(),
                priority: 0,
                description: None,
            },
        })),
    }
}

fn expect_stream(seq: u64) -> Op {
    Op::ExpectStream {
        stream: "rollouts".to_owned(),
        seq,
    }
}

pub async fn stream_expectations_refuse_writers_that_were_overtaken(s: &dyn GraphStore) {
    use twingraph::twin::TwinError;
    // An empty stream ends at 0.
    let first = must(s, vec![expect_stream(0), configuration_record("a")]).await;
    assert_eq!(first.len(), 1, "the expectation itself records nothing");
    let head = first[0].seq;
    // Expecting an older end: refused at the expectation, nothing written.
    let before = s.last_seq();
    let e = apply(
        s,
        vec![
            expect_stream(0),
            create("p9", PUMP),
            configuration_record("b"),
        ],
    )
    .await
    .expect_err("overtaken");
    let StoreError::Batch(b) = e else {
        panic!("a batch error: {e:?}");
    };
    assert_eq!(b.index, 0);
    assert_eq!(
        b.error,
        TwinError::StreamMoved {
            stream: "rollouts".into(),
            expected: 0,
            current: head
        }
    );
    assert_eq!(b.error.code().reason(), "stream_moved");
    assert_eq!(s.last_seq(), before, "nothing written");
    assert!(s.twin("p9").await.expect("read").is_none());
    // Twin changes do not move the stream; records do.
    must(s, vec![create("p1", PUMP)]).await;
    let second = must(s, vec![expect_stream(head), configuration_record("b")]).await;
    let head = second[0].seq;
    // Writers racing on the same end: exactly one gets through.
    let racers = (0..6).map(|i| {
        let ops = vec![expect_stream(head), configuration_record(&format!("r{i}"))];
        apply(s, ops)
    });
    let outcomes = futures_util::future::join_all(racers).await;
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(won, 1, "{outcomes:?}");
    for o in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert_eq!(o.code().reason(), "stream_moved", "{o:?}");
    }
    let records = s.stream_events("rollouts", 0, 100).await.expect("stream");
    assert_eq!(records.len(), 3);
}

pub async fn leases_have_one_holder_at_a_time(s: &dyn GraphStore) {
    use std::time::Duration;
    let name = "test-lease";
    let ttl = Duration::from_millis(800);
    let lease = |holder: &'static str, ttl: Duration| async move {
        s.lease(name, holder, ttl).await.expect("lease")
    };
    assert!(lease("a", ttl).await, "a free lease is taken");
    assert!(!lease("b", ttl).await, "held by another");
    assert!(lease("a", ttl).await, "renewed by its holder");
    assert!(
        !lease("b", Duration::ZERO).await,
        "only the holder releases"
    );
    assert!(!lease("b", ttl).await, "still held");
    assert!(!lease("a", Duration::ZERO).await, "released");
    assert!(lease("b", ttl).await, "a released lease is taken");
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert!(lease("a", ttl).await, "an expired lease is taken");
    assert!(!lease("b", ttl).await);
    // Claims racing for a free lease: exactly one wins.
    let claims = ["c1", "c2", "c3", "c4", "c5"].map(|h| s.lease("raced", h, ttl));
    let won = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    assert_eq!(won, 1);
}

fn assign(id: &str, configuration: &str, version: u32, priority: i64, values: Value) -> Op {
    Op::AssignConfiguration {
        id: id.to_owned(),
        configuration: configuration.to_owned(),
        assignment: twingraph::twin::state::Assignment {
            version,
            priority,
            seq: 0,
            rollout: None,
            values,
        },
        expected_version: None,
        force: false,
    }
}

fn desired_of(t: &Twin, component: Option<&str>, name: &str) -> Option<(Value, Option<String>)> {
    let d = t.component(component)?.props.get(name)?.desired.as_ref()?;
    let source = d
        .source
        .as_ref()
        .map(|s| format!("{}@{}", s.configuration, s.version));
    Some((d.value.clone(), source))
}

pub async fn configurations_are_layered_by_priority_and_restored(s: &dyn GraphStore) {
    must(s, vec![create("p1", PUMP)]).await;
    must(s, vec![desired("p1", json!({"flowSetpoint": 1.0}))]).await;
    let first = must(
        s,
        vec![assign(
            "p1",
            "a",
            1,
            0,
            json!({"flowSetpoint": 10.0, "drive": {"ratedPower": 3.0}}),
        )],
    )
    .await;
    let t = twin(s, "p1").await;
    assert_eq!(
        desired_of(&t, None, "flowSetpoint"),
        Some((json!(10.0), Some("a@1".into())))
    );
    assert_eq!(
        desired_of(&t, Some("drive"), "ratedPower"),
        Some((json!(3.0), Some("a@1".into())))
    );
    let Change::ConfigurationAssigned { previous, .. } = &first[0].change else {
        panic!("assigned: {:?}", first[0].change);
    };
    assert!(previous.assignment.is_none());
    let before: Vec<_> = previous
        .desired
        .iter()
        .map(|e| (e.component.clone(), e.name.clone(), e.value.clone()))
        .collect();
    assert_eq!(
        before,
        [
            (None, "flowSetpoint".to_owned(), Some(json!(1.0))),
            (Some("drive".to_owned()), "ratedPower".to_owned(), None),
        ]
    );
    // A higher priority wins the property it sets; a lower one keeps the rest.
    must(
        s,
        vec![assign("p1", "b", 1, 5, json!({"flowSetpoint": 20.0}))],
    )
    .await;
    let second = must(
        s,
        vec![assign(
            "p1",
            "a",
            2,
            0,
            json!({"flowSetpoint": 11.0, "drive": {"ratedPower": 4.0}}),
        )],
    )
    .await;
    let t = twin(s, "p1").await;
    assert_eq!(
        desired_of(&t, None, "flowSetpoint"),
        Some((json!(20.0), Some("b@1".into())))
    );
    assert_eq!(
        desired_of(&t, Some("drive"), "ratedPower"),
        Some((json!(4.0), Some("a@2".into())))
    );
    assert_eq!(t.deciding(None, "flowSetpoint").map(|(n, _)| n), Some("b"));
    assert_eq!(t.configurations["a"].version, 2);
    // Putting back what the second assignment of `a` replaced.
    let Change::ConfigurationAssigned { previous, .. } = &second[0].change else {
        panic!("assigned");
    };
    must(
        s,
        vec![Op::RestoreConfiguration {
            id: "p1".into(),
            configuration: "a".into(),
            rollout: None,
            previous: previous.clone(),
        }],
    )
    .await;
    let t = twin(s, "p1").await;
    assert_eq!(t.configurations["a"].version, 1);
    assert_eq!(
        desired_of(&t, Some("drive"), "ratedPower"),
        Some((json!(3.0), Some("a@1".into())))
    );
    assert_eq!(
        desired_of(&t, None, "flowSetpoint"),
        Some((json!(20.0), Some("b@1".into())))
    );
    // Equal priority: the most recent assignment wins.
    must(
        s,
        vec![assign("p1", "c", 1, 5, json!({"flowSetpoint": 30.0}))],
    )
    .await;
    let t = twin(s, "p1").await;
    assert_eq!(
        desired_of(&t, None, "flowSetpoint"),
        Some((json!(30.0), Some("c@1".into())))
    );
    // A direct patch clears the source.
    must(s, vec![desired("p1", json!({"flowSetpoint": 31.0}))]).await;
    let t = twin(s, "p1").await;
    assert_eq!(
        desired_of(&t, None, "flowSetpoint"),
        Some((json!(31.0), None))
    );
    // Invalid values and missing twins are refused; nothing is written.
    let last = s.last_seq();
    let e = apply(
        s,
        vec![assign("p1", "d", 1, 0, json!({"flowSetpoint": "x"}))],
    )
    .await
    .expect_err("invalid");
    assert_eq!(e.code().reason(), "validation_failed", "{e}");
    let e = apply(
        s,
        vec![assign("nope", "d", 1, 0, json!({"flowSetpoint": 1.0}))],
    )
    .await
    .expect_err("missing");
    assert_eq!(e.code().reason(), "twin_not_found", "{e}");
    assert_eq!(s.last_seq(), last);
    // Time travel sees assignments.
    let then = s
        .twin_as_of("p1", At::Seq(first[0].seq))
        .await
        .expect("as of")
        .expect("existed");
    assert_eq!(then.configurations.keys().collect::<Vec<_>>(), ["a"]);
    // Clients cannot send these operations.
    let op: Result<Op, _> = serde_json::from_value(
        json!({"op": "assignConfiguration", "id": "p1", "configuration": "x",
               "assignment": {"version": 1, "values": {}}}),
    );
    assert!(op.is_err());
}

/// Reads, lists and aggregates over more twins than a store looks up at
/// once (the embedded store reads a model's twins 32 at a time): asked
/// ids that do not exist, long runs of twins a filter refuses and twins
/// deleted in the middle of a model change nothing of the answers, their
/// order or their limits.
pub async fn many_twins_are_read_listed_and_aggregated_in_order(s: &dyn GraphStore) {
    use twingraph::store::AggregateQuery;
    use twingraph::twin::aggregate::Measures;
    let state = |i: u32| {
        if i.is_multiple_of(3) {
            "fault"
        } else {
            "running"
        }
    };
    let mut ops = Vec::new();
    for i in 0..150u32 {
        let id = format!("p{i:03}");
        ops.push(create(&id, PUMP));
        ops.push(reported(
            &id,
            json!({"power": f64::from(i), "runState": state(i)}),
        ));
    }
    must(s, ops).await;
    // A run of 40 deleted: a whole chunk and more of ids with no twin.
    let gone = 50..90u32;
    must(
        s,
        gone.clone()
            .map(|i| Op::DeleteTwin {
                id: format!("p{i:03}"),
                expected_version: None,
            })
            .collect(),
    )
    .await;
    let kept: Vec<u32> = (0..150).filter(|i| !gone.contains(i)).collect();

    // A batch of reads (in no particular order), the missing left out.
    let asked: Vec<String> = (0..150u32)
        .rev()
        .step_by(2)
        .map(|i| format!("p{i:03}"))
        .chain((0..40).map(|i| format!("nope{i}")))
        .chain(["p000".to_owned()])
        .collect();
    let mut read: Vec<String> = s
        .twins_by_ids(&asked)
        .await
        .expect("read")
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    let mut want: Vec<String> = asked
        .iter()
        .filter(|id| {
            id.strip_prefix('p')
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| kept.contains(&n))
        })
        .cloned()
        .collect();
    read.sort();
    want.sort();
    want.dedup();
    assert_eq!(read, want);

    // A filter that refuses the first 100 twins (50 of them existing),
    // paged past the point where it starts to match.
    let filter = twingraph::twin::filter::Filter::parse(&json!({"reported.power": {"gte": 95}}))
        .expect("filter");
    let page = |after: Option<&str>, limit| TwinQuery {
        model: Some(PUMP.to_owned()),
        subtypes: true,
        filter: Some(Arc::new(filter.clone())),
        after: after.map(str::to_owned),
        limit,
        ..TwinQuery::default()
    };
    let ids = |p: &twingraph::store::Page<Twin>| -> Vec<String> {
        p.items.iter().map(|t| t.id.to_string()).collect()
    };
    let first = s.twins(&page(None, 45)).await.expect("list");
    let expected: Vec<String> = (95..140).map(|i| format!("p{i:03}")).collect();
    assert_eq!((ids(&first), first.has_more), (expected, true));
    let rest = s.twins(&page(Some("p139"), 45)).await.expect("list");
    let expected: Vec<String> = (140..150).map(|i| format!("p{i:03}")).collect();
    assert_eq!((ids(&rest), rest.has_more), (expected, false));

    // Every pump's power by run state, against the same sums made here.
    let path = |p: &str| vec!["reported".to_owned(), p.to_owned()];
    let a = s
        .aggregate(&AggregateQuery {
            model: Some(PUMP.to_owned()),
            subtypes: true,
            measures: Measures {
                fields: vec![path("power")],
                group_by: Some(path("runState")),
            },
            ..AggregateQuery::default()
        })
        .await
        .expect("aggregate");
    let of = |st: &str| -> (u64, f64) {
        let v: Vec<u32> = kept.iter().copied().filter(|&i| state(i) == st).collect();
        (v.len() as u64, v.iter().map(|&i| f64::from(i)).sum())
    };
    assert_eq!(a.all.count, kept.len() as u64);
    assert_eq!(
        a.all.fields[0].sum,
        kept.iter().map(|&i| f64::from(i)).sum::<f64>()
    );
    let groups: Vec<(Value, u64, f64)> = a
        .groups
        .iter()
        .map(|g| (g.key.clone(), g.stats.count, g.stats.fields[0].sum))
        .collect();
    let (fault, running) = (of("fault"), of("running"));
    assert_eq!(
        groups,
        [
            (json!("fault"), fault.0, fault.1),
            (json!("running"), running.0, running.1)
        ]
    );
}

/// Generates one `#[tokio::test]` per suite behaviour for a store factory.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@tests $make;
            twin_is_created_and_read_back,
            bad_ids_unknown_models_and_duplicates_are_refused,
            invalid_values_are_refused_and_nothing_is_written,
            only_writable_properties_have_desired_state,
            merge_patch_merges_objects_and_null_removes,
            stale_expected_version_is_a_conflict_that_writes_nothing,
            stale_device_data_never_wins,
            reports_from_the_future_are_refused,
            writable_properties_track_acknowledgements,
            components_hold_nested_state,
            relationships_follow_their_declaration,
            relationship_updates_and_deletes_are_versioned,
            containment_is_a_tree,
            containment_cycles_are_refused,
            traversal_follows_names_directions_and_depth,
            reach_agrees_with_traverse,
            batches_are_all_or_nothing,
            events_are_gap_free_and_readable,
            time_travel_restores_twins_and_relationships,
            subscribers_see_committed_events_in_order,
            twins_are_listed_by_model_with_subtypes,
            twins_are_filtered_by_their_values,
            twins_are_listed_backward_between_bounds,
            twins_are_listed_in_order,
            twins_are_aggregated,
            many_twins_are_read_listed_and_aggregated_in_order,
            model_changes_are_events,
            stream_records_are_kept_and_read_back_in_order,
            configurations_are_layered_by_priority_and_restored,
            stream_expectations_refuse_writers_that_were_overtaken,
            leases_have_one_holder_at_a_time
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_writers_are_serialized_without_loss() {
            let s: std::sync::Arc<dyn twingraph::store::GraphStore> = $make;
            $crate::store_suite::concurrent_writers_are_serialized_without_loss(s).await;
        }
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let s: std::sync::Arc<dyn twingraph::store::GraphStore> = $make;
                $crate::store_suite::$name(&*s).await;
            }
        )*
    };
}
