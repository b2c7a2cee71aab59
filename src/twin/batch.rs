//! Write requests. Every write is a [`Batch`] of operations that applies
//! atomically: all of them, or none.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::Micros;

/// One write operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    /// Creates a twin with optional initial desired and reported state
    /// (objects shaped like the corresponding patches).
    #[serde(rename_all = "camelCase")]
    CreateTwin {
        id: String,
        model: String,
        #[serde(default)]
        desired: Option<Value>,
        #[serde(default)]
        reported: Option<Value>,
    },
    /// Deletes a twin that has no relationships left.
    #[serde(rename_all = "camelCase")]
    DeleteTwin {
        id: String,
        #[serde(default)]
        expected_version: Option<u64>,
    },
    /// Merge-patches desired state: `{"prop": value | null, "component": {"prop": ...}}`.
    #[serde(rename_all = "camelCase")]
    PatchDesired {
        id: String,
        patch: Value,
        #[serde(default)]
        expected_version: Option<u64>,
    },
    /// Merge-patches reported state (properties and telemetry). A writable
    /// property may be reported as `{"value", "ac", "av", "ad"}`.
    #[serde(rename_all = "camelCase")]
    PatchReported {
        id: String,
        patch: Value,
        #[serde(default)]
        expected_version: Option<u64>,
        /// When the device observed these values; older than stored values means stale.
        #[serde(default)]
        source_time: Option<Micros>,
    },
    /// Records a command invocation for the twin's device (no state change):
    /// the command must be declared by the twin's model (or by the
    /// Interface of `component`), the request valid for its schema.
    #[serde(rename_all = "camelCase")]
    InvokeCommand {
        id: String,
        #[serde(default)]
        component: Option<String>,
        command: String,
        #[serde(default)]
        request: Option<Value>,
    },
    /// Creates a relationship; an id is generated when none is given.
    #[serde(rename_all = "camelCase")]
    CreateRelationship {
        source: String,
        #[serde(default)]
        id: Option<String>,
        name: String,
        target: String,
        #[serde(default)]
        properties: Option<Value>,
    },
    /// Merge-patches a relationship's own properties.
    #[serde(rename_all = "camelCase")]
    UpdateRelationship {
        source: String,
        id: String,
        patch: Value,
        #[serde(default)]
        expected_version: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    DeleteRelationship {
        source: String,
        id: String,
        #[serde(default)]
        expected_version: Option<u64>,
    },
    /// Records a change of another domain (configurations, rollouts) that
    /// its owner has already validated; the twin graph is unchanged. Not
    /// accepted from clients (never deserialized).
    #[serde(skip_deserializing)]
    Record { change: Box<super::Change> },
    /// Assigns a configuration to a twin (by a rollout: `assignment.rollout`).
    /// Internal: only the rollout owner issues it.
    #[serde(skip_deserializing, rename_all = "camelCase")]
    AssignConfiguration {
        id: String,
        configuration: String,
        assignment: super::state::Assignment,
        expected_version: Option<u64>,
        /// Writes its values again even where they are already desired (a
        /// new desired version for the device to acknowledge: a retry).
        force: bool,
    },
    /// Puts back what an assignment replaced (a rollback). Internal.
    #[serde(skip_deserializing, rename_all = "camelCase")]
    RestoreConfiguration {
        id: String,
        configuration: String,
        rollout: Option<String>,
        previous: super::event::Previous,
    },
    /// Passes only while the last record of `stream` is `seq` (0: none
    /// yet); changes nothing. A writer that validated against the stream
    /// as of `seq` adds it so that a record another writer appended
    /// meanwhile refuses the batch instead of being overlooked. Internal.
    #[serde(skip_deserializing)]
    ExpectStream { stream: String, seq: u64 },
}

/// Operations applied together, in order, all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn one(op: Op) -> Batch {
        Batch { ops: vec![op] }
    }
}

impl From<Op> for Batch {
    fn from(op: Op) -> Batch {
        Batch::one(op)
    }
}
