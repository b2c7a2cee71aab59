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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
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
    #[serde(untagged)]
    Record(Record),
}

/// The stream of configuration and rollout records (see [`Change::stream`]).
pub const ROLLOUTS_STREAM: &str = "rollouts";

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
            Change::ModelsChanged { .. } | Change::Record(_) => Vec::new(),
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
            Change::Record(_) => Some(ROLLOUTS_STREAM),
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
        let mut seen = [false; 17];
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
}
