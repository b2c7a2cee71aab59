//! Events: every change to the twin graph, immutable and numbered.
//!
//! An event carries what was asked (the merge patch as given) and what it
//! did (the resulting value of every property it touched, the resulting
//! version). State is a pure fold of events ([`super::state`]): the live
//! write path and time travel apply the very same function, so they cannot
//! disagree, and replay needs no model.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::{Ack, Assignment, DesiredSource, Relationship};
pub use crate::records::{Record, Side};

/// Microseconds since the Unix epoch (UTC).
pub type Micros = i64;

/// One committed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Global, gap-free sequence number, from 1.
    pub seq: u64,
    pub time: Micros,
    /// Who made the change (a principal; `"system"` until authentication exists).
    pub actor: String,
    pub change: Change,
}

/// The change an event records.
///
/// Serialized with its `kind` first; a [`Record`] as the record itself
/// (its own `kind`). The derive below covers the twin kinds only (as
/// inherent functions, `remote = "Self"`); the `Serialize` and
/// `Deserialize` impls in [`wire`] send record kinds to [`Record`], so
/// decoding a change buffers it once, like any internally tagged enum,
/// and a malformed one is told what is wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", tag = "kind", rename_all = "camelCase")]
pub enum Change {
    #[serde(rename_all = "camelCase")]
    TwinCreated {
        twin: String,
        model: String,
        /// Initial state: desired and reported entries.
        entries: Vec<Entry>,
    },
    #[serde(rename_all = "camelCase")]
    TwinDeleted { twin: String, version: u64 },
    #[serde(rename_all = "camelCase")]
    DesiredPatched {
        twin: String,
        version: u64,
        patch: Value,
        entries: Vec<Entry>,
    },
    #[serde(rename_all = "camelCase")]
    ReportedPatched {
        twin: String,
        version: u64,
        patch: Value,
        entries: Vec<Entry>,
        /// Properties left unchanged because the stored value is newer
        /// (by device source time) than this update.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        stale: Vec<String>,
    },
    #[serde(rename_all = "camelCase")]
    RelationshipCreated { relationship: Relationship },
    #[serde(rename_all = "camelCase")]
    RelationshipUpdated {
        source: String,
        id: String,
        version: u64,
        patch: Value,
        properties: serde_json::Map<String, Value>,
    },
    #[serde(rename_all = "camelCase")]
    RelationshipDeleted {
        source: String,
        id: String,
        target: String,
        name: String,
    },
    /// The model set now holds `models`; `documents` are the DTDL documents
    /// uploaded by this change (so every server over the store can load
    /// them; none for other changes of the set).
    #[serde(rename_all = "camelCase")]
    ModelsChanged {
        models: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        documents: Vec<Value>,
    },
    /// A command to deliver to the twin's device; the twin itself is unchanged.
    #[serde(rename_all = "camelCase")]
    CommandInvoked {
        twin: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        component: Option<String>,
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<Value>,
        /// Unique id of the invocation (for correlating the device's response).
        invocation: String,
    },
    /// A configuration was assigned to a twin (directly or by a rollout):
    /// `entries` are the desired values that changed, as the twin's
    /// configurations rank; `previous` is what a rollback restores.
    #[serde(rename_all = "camelCase")]
    ConfigurationAssigned {
        twin: String,
        version: u64,
        configuration: String,
        assignment: Assignment,
        previous: Previous,
        entries: Vec<Entry>,
    },
    /// A twin's configuration and desired values were put back as they were
    /// before an assignment (a rollback).
    #[serde(rename_all = "camelCase")]
    ConfigurationRestored {
        twin: String,
        version: u64,
        configuration: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rollout: Option<String>,
        /// The assignment restored (none: the configuration is unassigned).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assignment: Option<Assignment>,
        entries: Vec<Entry>,
    },
    /// A record of another domain (configurations, rollouts), carried
    /// as its owner wrote it: serialized as the record itself.
    #[serde(skip)]
    Record(Record),
}

pub use crate::records::{
    ALARMS_STREAM, DEVICES_STREAM, LIFECYCLE_STREAM, RECORD_STREAMS, ROLLOUTS_STREAM,
};

/// The stream of uploaded models ([`Change::ModelsChanged`] with documents).
pub const MODELS_STREAM: &str = "models";

impl Change {
    /// Its kind, as serialized (`twinCreated`, `reportedPatched`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Change::TwinCreated { .. } => "twinCreated",
            Change::TwinDeleted { .. } => "twinDeleted",
            Change::DesiredPatched { .. } => "desiredPatched",
            Change::ReportedPatched { .. } => "reportedPatched",
            Change::RelationshipCreated { .. } => "relationshipCreated",
            Change::RelationshipUpdated { .. } => "relationshipUpdated",
            Change::RelationshipDeleted { .. } => "relationshipDeleted",
            Change::ModelsChanged { .. } => "modelsChanged",
            Change::CommandInvoked { .. } => "commandInvoked",
            Change::ConfigurationAssigned { .. } => "configurationAssigned",
            Change::ConfigurationRestored { .. } => "configurationRestored",
            Change::Record(r) => r.kind(),
        }
    }

    /// A change of a twin's desired state (a desired patch, a configuration
    /// assigned or restored) that touches at least one desired value: the
    /// twin, its version after the change (what a device acknowledges) and
    /// the entries.
    pub fn desired(&self) -> Option<(&str, u64, &[Entry])> {
        match self {
            Change::DesiredPatched {
                twin,
                version,
                entries,
                ..
            }
            | Change::ConfigurationAssigned {
                twin,
                version,
                entries,
                ..
            }
            | Change::ConfigurationRestored {
                twin,
                version,
                entries,
                ..
            } if entries.iter().any(|e| e.side == Side::Desired) => Some((twin, *version, entries)),
            _ => None,
        }
    }

    /// The twins this change concerns (for per-twin history): the twin, or a
    /// relationship's source and target.
    pub fn twins(&self) -> Vec<&str> {
        match self {
            Change::TwinCreated { twin, .. }
            | Change::TwinDeleted { twin, .. }
            | Change::DesiredPatched { twin, .. }
            | Change::ReportedPatched { twin, .. }
            | Change::CommandInvoked { twin, .. }
            | Change::ConfigurationAssigned { twin, .. }
            | Change::ConfigurationRestored { twin, .. } => vec![twin],
            Change::RelationshipCreated { relationship } => {
                vec![&relationship.source, &relationship.target]
            }
            Change::RelationshipUpdated { source, .. } => vec![source],
            Change::RelationshipDeleted { source, target, .. } => vec![source, target],
            Change::Record(r) => r.twin().into_iter().collect(),
            Change::ModelsChanged { .. } => Vec::new(),
        }
    }

    /// Whether it changes the containment hierarchy (named `containment`):
    /// a containment relationship made or removed, or a twin deleted.
    pub fn changes_hierarchy(&self, containment: &str) -> bool {
        match self {
            Change::RelationshipCreated { relationship } => relationship.name == containment,
            Change::RelationshipDeleted { name, .. } => name == containment,
            Change::TwinDeleted { .. } => true,
            _ => false,
        }
    }

    /// The stream a record belongs to, for changes that are not about the
    /// twin graph itself: stores index them so that their owner can read
    /// them back (all of them, in order) without scanning the whole log,
    /// and never prune them.
    pub fn stream(&self) -> Option<&'static str> {
        match self {
            Change::Record(r) => r.stream(),
            // A rollout's own twin changes are its per-twin record.
            Change::ConfigurationAssigned { assignment, .. } if assignment.rollout.is_some() => {
                Some(ROLLOUTS_STREAM)
            }
            Change::ConfigurationRestored { rollout, .. } if rollout.is_some() => {
                Some(ROLLOUTS_STREAM)
            }
            Change::ModelsChanged { documents, .. } if !documents.is_empty() => Some(MODELS_STREAM),
            _ => None,
        }
    }
}

/// The resulting state of one property (or telemetry) after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub side: Side,
    /// Component name, for a property of a Component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    pub name: String,
    /// The resulting value; `None` when the property was removed.
    pub value: Option<Value>,
    /// The device's source time of a reported value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_time: Option<Micros>,
    /// A writable-property acknowledgement that came with a reported value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
    /// The configuration a desired value comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<DesiredSource>>,
}

/// What a configuration assignment replaced on a twin: the assignment of
/// the same configuration before (if any) and the desired value (with its
/// source) of every property the new assignment sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Previous {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub desired: Vec<Entry>,
}

/// How a [`Change`] is written and read.
mod wire {
    use std::borrow::Cow;

    use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Change, Record};

    impl Serialize for Change {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self {
                Change::Record(r) => r.serialize(s),
                twin => Change::serialize(twin, s),
            }
        }
    }

    impl<'de> Deserialize<'de> for Change {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Change, D::Error> {
            d.deserialize_map(ChangeVisitor)
        }
    }

    struct ChangeVisitor;

    impl<'de> Visitor<'de> for ChangeVisitor {
        type Value = Change;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a change (an object with its `kind`)")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Change, A::Error> {
            let Some(first) = map.next_key_seed(Text)? else {
                return Err(de::Error::missing_field("kind"));
            };
            if first == "kind" {
                // As written: the kind first, read without buffering (and,
                // from bytes, without copying it).
                let kind = map.next_value_seed(Text)?;
                let record = Record::KINDS.contains(&kind.as_ref());
                let rest = de::value::MapAccessDeserializer::new(KindThen {
                    kind: Some(kind),
                    key: true,
                    rest: map,
                });
                return if record {
                    Record::deserialize(rest).map(Change::Record)
                } else {
                    Change::deserialize(rest)
                };
            }
            // Written some other way: the whole change, then its kind.
            let mut whole = serde_json::Map::new();
            whole.insert(first.into_owned(), map.next_value()?);
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                whole.insert(k, v);
            }
            let record = whole
                .get("kind")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|k| Record::KINDS.contains(&k));
            let whole = serde_json::Value::Object(whole);
            if record {
                Record::deserialize(whole).map(Change::Record)
            } else {
                Change::deserialize(whole)
            }
            .map_err(de::Error::custom)
        }
    }

    /// A string, borrowed from the input where it can be (keys and kinds
    /// hold no escapes, so from bytes they always are).
    struct Text;

    impl<'de> DeserializeSeed<'de> for Text {
        type Value = Cow<'de, str>;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for Text {
        type Value = Cow<'de, str>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }

        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
            Ok(Cow::Borrowed(v))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
            Ok(Cow::Owned(v.to_owned()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
            Ok(Cow::Owned(v))
        }
    }

    /// The entries of a map whose `kind` was read already: `kind` again,
    /// then the rest.
    struct KindThen<'de, A> {
        kind: Option<Cow<'de, str>>,
        key: bool,
        rest: A,
    }

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for KindThen<'de, A> {
        type Error = A::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, A::Error> {
            if self.key {
                self.key = false;
                return seed
                    .deserialize(IntoDeserializer::<A::Error>::into_deserializer("kind"))
                    .map(Some);
            }
            self.rest.next_key_seed(seed)
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(
            &mut self,
            seed: V,
        ) -> Result<V::Value, A::Error> {
            match self.kind.take() {
                Some(Cow::Borrowed(kind)) => {
                    seed.deserialize(de::value::BorrowedStrDeserializer::<A::Error>::new(kind))
                }
                Some(Cow::Owned(kind)) => {
                    seed.deserialize(IntoDeserializer::<A::Error>::into_deserializer(kind))
                }
                None => self.rest.next_value_seed(seed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which variant a change is: the match is exhaustive, so a new kind of
    /// change cannot be added without showing up here (and then in the
    /// golden file below).
    fn variant(c: &Change) -> usize {
        match c {
            Change::TwinCreated { .. } => 0,
            Change::TwinDeleted { .. } => 1,
            Change::DesiredPatched { .. } => 2,
            Change::ReportedPatched { .. } => 3,
            Change::RelationshipCreated { .. } => 4,
            Change::RelationshipUpdated { .. } => 5,
            Change::RelationshipDeleted { .. } => 6,
            Change::ModelsChanged { .. } => 7,
            Change::CommandInvoked { .. } => 8,
            Change::ConfigurationAssigned { .. } => 9,
            Change::ConfigurationRestored { .. } => 10,
            Change::Record(Record::ConfigurationRemediationSet { .. }) => 11,
            Change::Record(Record::RolloutStarted { .. }) => 12,
            Change::Record(Record::RolloutTwinsSettled { .. }) => 13,
            Change::Record(Record::RolloutChanged { .. }) => 14,
            Change::Record(Record::ConfigurationCreated { .. }) => 15,
            Change::Record(Record::ConfigurationVersionPublished { .. }) => 16,
            Change::Record(Record::DeviceRegistered { .. }) => 17,
            Change::Record(Record::DeviceKeyRotated { .. }) => 18,
            Change::Record(Record::DeviceStatusSet { .. }) => 19,
            Change::Record(Record::DeviceDeleted { .. }) => 20,
            Change::Record(Record::DeviceConnected { .. }) => 21,
            Change::Record(Record::DeviceDisconnected { .. }) => 22,
            Change::Record(Record::EnrollmentGroupCreated { .. }) => 23,
            Change::Record(Record::EnrollmentGroupDeleted { .. }) => 24,
            Change::Record(Record::DeviceMethodRequested { .. }) => 25,
            Change::Record(Record::DeviceMethodAnswered { .. }) => 26,
            Change::Record(Record::AlarmRulePublished { .. }) => 27,
            Change::Record(Record::AlarmRuleDeleted { .. }) => 28,
            Change::Record(Record::AlarmRaised { .. }) => 29,
            Change::Record(Record::AlarmCleared { .. }) => 30,
            Change::Record(Record::AlarmAcknowledged { .. }) => 31,
            Change::Record(Record::AlarmShelved { .. }) => 32,
            Change::Record(Record::AlarmUnshelved { .. }) => 33,
            Change::Record(Record::AlarmCommented { .. }) => 34,
            Change::Record(Record::LifecycleChanged { .. }) => 35,
            Change::Record(Record::DiagnosticReported { .. }) => 36,
        }
    }

    /// The stored event format, pinned: `tests/golden/events.jsonl` holds
    /// events as the stores wrote them (one of every kind, taken from a
    /// real run: twin writes, a rollout rolled back, an upload). Each must
    /// still decode, and encode to the very same bytes, so a change to an
    /// event type that would make old logs unreadable, or write them
    /// differently, fails here.
    #[test]
    fn stored_events_decode_and_encode_unchanged() {
        let golden = include_str!("../../tests/golden/events.jsonl");
        let mut seen = [false; 37];
        for (i, line) in golden.lines().enumerate() {
            let event: Event = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("line {}: cannot decode: {e}", i + 1));
            let again = serde_json::to_string(&event).expect("encodes");
            assert_eq!(again, line, "line {}: encodes differently", i + 1);
            seen[variant(&event.change)] = true;
        }
        let missing: Vec<usize> = (0..seen.len()).filter(|&i| !seen[i]).collect();
        assert!(
            missing.is_empty(),
            "tests/golden/events.jsonl has no event of variants {missing:?}"
        );
    }

    #[test]
    fn kind_names_the_serialized_kind() {
        let changes = [
            Change::TwinDeleted {
                twin: "t".into(),
                version: 2,
            },
            Change::ReportedPatched {
                twin: "t".into(),
                version: 2,
                patch: serde_json::json!({"power": 1}),
                entries: Vec::new(),
                stale: Vec::new(),
            },
            Change::RelationshipDeleted {
                source: "a".into(),
                id: "r".into(),
                target: "b".into(),
                name: "feeds".into(),
            },
            Change::ModelsChanged {
                models: vec!["dtmi:x:T;1".into()],
                documents: Vec::new(),
            },
            Change::Record(Record::ConfigurationRemediationSet {
                configuration: "c".into(),
                per_minute: None,
            }),
            Change::Record(Record::RolloutTwinsSettled {
                rollout: "r".into(),
                outcomes: Vec::new(),
            }),
        ];
        for c in changes {
            let v = serde_json::to_value(&c).expect("serializable");
            assert_eq!(v["kind"], c.kind(), "{c:?}");
        }
    }

    /// A change reads the same whatever the order of its entries (the
    /// stores write `kind` first; JSON does not promise it), and a
    /// malformed one says what is wrong with it.
    #[test]
    fn changes_decode_in_any_order_and_say_what_is_wrong() {
        let golden = include_str!("../../tests/golden/events.jsonl");
        for (i, line) in golden.lines().enumerate() {
            let event: Event = serde_json::from_str(line).expect("golden");
            // `kind` last (written as text: `Map` sorts its keys).
            let v: Value = serde_json::from_str(line).expect("json");
            let change = v["change"].as_object().expect("object");
            let (kind, others): (Vec<_>, Vec<_>) = change.iter().partition(|(k, _)| *k == "kind");
            let entries: Vec<String> = others
                .into_iter()
                .chain(kind)
                .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
                .collect();
            assert!(entries.len() > 1, "{line}");
            let reordered = format!(
                r#"{{"seq":{},"time":{},"actor":{},"change":{{{}}}}}"#,
                v["seq"],
                v["time"],
                v["actor"],
                entries.join(",")
            );
            let again: Event = serde_json::from_str(&reordered)
                .unwrap_or_else(|e| panic!("line {}: reordered: {e}", i + 1));
            assert_eq!(again, event, "line {}", i + 1);
        }
        for (change, says) in [
            (
                r#"{"kind":"twinDeleted","twin":5,"version":1}"#,
                "invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"version":1,"twin":5,"kind":"twinDeleted"}"#,
                "invalid type: integer `5`, expected a string",
            ),
            (
                r#"{"kind":"rolloutChanged","rollout":"r","stage":1}"#,
                "missing field `state`",
            ),
            (r#"{"kind":"twinRenamed"}"#, "unknown variant `twinRenamed`"),
            (r#"{"twin":"a"}"#, "missing field `kind`"),
            (r#"{}"#, "missing field `kind`"),
            (r#"[1]"#, "expected a change"),
        ] {
            let line = format!(r#"{{"seq":1,"time":1,"actor":"a","change":{change}}}"#);
            let err = serde_json::from_str::<Event>(&line)
                .expect_err(change)
                .to_string();
            assert!(err.contains(says), "{change}: {err}");
        }
    }
}
