//! Records other domains keep in the twin event log: configurations and
//! rollouts, as their owner ([`crate::rollout`]) validated them, and device
//! identities ([`crate::devices`]). The twin
//! domain carries them ([`crate::twin::Change::Record`]) without knowing
//! them; a new kind of record is a new [`Record`] variant here, and touches
//! nothing else of the log. Also the vocabulary both domains share
//! ([`Side`]).
//!
//! These are stored formats: `tests/golden/events.jsonl` pins them. Their
//! behaviour (validation, folds) lives with their owner.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which side of a property an entry sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Side {
    Desired,
    Reported,
}

/// A record of configurations and rollouts, as the log keeps it (in the
/// `rollouts` stream): each kind serialized with its `kind` like every
/// change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Record {
    /// A configuration (template of desired values) was created.
    #[serde(rename_all = "camelCase")]
    ConfigurationCreated { configuration: ConfigurationSpec },
    /// A new, immutable version of a configuration was published.
    #[serde(rename_all = "camelCase")]
    ConfigurationVersionPublished {
        configuration: String,
        version: VersionSpec,
    },
    /// Automatic remediation of a configuration's drifted twins was turned
    /// on (`per_minute` twins at most) or off.
    #[serde(rename_all = "camelCase")]
    ConfigurationRemediationSet {
        configuration: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        per_minute: Option<f64>,
    },
    /// A rollout started: its request and its twins, in order.
    #[serde(rename_all = "camelCase")]
    RolloutStarted { rollout: Arc<RolloutStart> },
    /// Twins of a rollout settled (or go back to PENDING for a retry).
    #[serde(rename_all = "camelCase")]
    RolloutTwinsSettled {
        rollout: String,
        outcomes: Vec<Outcome>,
    },
    /// A rollout changed state or stage.
    #[serde(rename_all = "camelCase")]
    RolloutChanged {
        rollout: String,
        state: RolloutState,
        stage: usize,
        /// Microseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        baking_since: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A device identity was registered for a twin (in the `devices`
    /// stream, like every device record).
    #[serde(rename_all = "camelCase")]
    DeviceRegistered { device: DeviceSpec },
    /// One of a device's symmetric keys was replaced: the key of `slot` is
    /// now the one derived at `generation`.
    #[serde(rename_all = "camelCase")]
    DeviceKeyRotated {
        device: String,
        slot: KeySlot,
        generation: u32,
    },
    /// A device was disabled (it may not connect; connected, it is cut
    /// off) or enabled again.
    #[serde(rename_all = "camelCase")]
    DeviceStatusSet {
        device: String,
        enabled: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A device identity was deleted (its twin stays).
    #[serde(rename_all = "camelCase")]
    DeviceDeleted { device: String },
    /// An enrollment group was created: devices that sign with a key derived
    /// from its key are provisioned on first connect.
    #[serde(rename_all = "camelCase")]
    EnrollmentGroupCreated { group: EnrollmentSpec },
    /// An enrollment group was deleted (devices it provisioned stay, and
    /// can no longer connect: their keys derived from it).
    #[serde(rename_all = "camelCase")]
    EnrollmentGroupDeleted { group: String },
    /// A device connected to a server's device endpoint (in no stream).
    #[serde(rename_all = "camelCase")]
    DeviceConnected {
        device: String,
        /// `mqtt` or `mqtt-ws`.
        protocol: String,
        /// The server it connected to.
        server: String,
    },
    /// A device's connection ended.
    #[serde(rename_all = "camelCase")]
    DeviceDisconnected {
        device: String,
        server: String,
        /// Why, in a few words (`closed by the device`, `disabled`, ...).
        reason: String,
    },
    /// A direct method call issued on one server for a device connected to
    /// another (`server`), relayed through the log (in no stream).
    #[serde(rename_all = "camelCase")]
    DeviceMethodRequested {
        /// Pairs the answer with the call.
        request: String,
        device: String,
        twin: String,
        method: String,
        #[serde(default)]
        payload: Value,
        timeout_ms: u64,
        /// The server the device is connected to, which delivers it.
        server: String,
    },
    /// The answer to a relayed method call: the device's `status` and
    /// `payload`, or why there is none (`error`: `offline`, `timeout`).
    #[serde(rename_all = "camelCase")]
    DeviceMethodAnswered {
        request: String,
        device: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<i64>,
        #[serde(default)]
        payload: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A version of an alarm rule was published (version 1 creates it).
    #[serde(rename_all = "camelCase")]
    AlarmRulePublished { rule: Arc<AlarmRuleSpec> },
    /// An alarm rule was deleted: its alarms return to normal.
    #[serde(rename_all = "camelCase")]
    AlarmRuleDeleted { rule: String },
    /// A rule's condition held on a twin (for the rule's on-delay): its
    /// alarm is active (again, or with the rule's new version).
    #[serde(rename_all = "camelCase")]
    AlarmRaised { alarm: Arc<AlarmRaise> },
    /// The condition no longer holds (for the rule's off-delay), or the
    /// twin is gone.
    #[serde(rename_all = "camelCase")]
    AlarmCleared {
        rule: String,
        twin: String,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        value: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An operator acknowledged the alarm (the event's actor).
    #[serde(rename_all = "camelCase")]
    AlarmAcknowledged {
        rule: String,
        twin: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// The alarm was shelved until `until` (microseconds since the Unix
    /// epoch): it counts in no health while shelved.
    #[serde(rename_all = "camelCase")]
    AlarmShelved {
        rule: String,
        twin: String,
        until: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// The alarm is no longer shelved (by hand, or its shelf expired).
    #[serde(rename_all = "camelCase")]
    AlarmUnshelved {
        rule: String,
        twin: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A comment on an alarm.
    #[serde(rename_all = "camelCase")]
    AlarmCommented {
        rule: String,
        twin: String,
        text: String,
    },
    /// An asset moved to a lifecycle state (in the `lifecycle` stream, and
    /// in its twin's history).
    #[serde(rename_all = "camelCase")]
    LifecycleChanged {
        twin: String,
        state: LifecycleState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A diagnostic report attached to a twin, by a device or an operator
    /// (in no stream: in the twin's history, pruned with it).
    #[serde(rename_all = "camelCase")]
    DiagnosticReported {
        twin: String,
        /// A short line for lists.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        /// Structured, bounded in size (`diagnostics::MAX_REPORT_BYTES`).
        report: Value,
    },
}

/// The lifecycle of an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LifecycleState {
    Planned,
    Commissioned,
    InService,
    Maintenance,
    Decommissioned,
}

impl LifecycleState {
    pub const ALL: [LifecycleState; 5] = [
        LifecycleState::Planned,
        LifecycleState::Commissioned,
        LifecycleState::InService,
        LifecycleState::Maintenance,
        LifecycleState::Decommissioned,
    ];

    /// Its GraphQL enum value.
    pub fn name(self) -> &'static str {
        match self {
            LifecycleState::Planned => "PLANNED",
            LifecycleState::Commissioned => "COMMISSIONED",
            LifecycleState::InService => "IN_SERVICE",
            LifecycleState::Maintenance => "MAINTENANCE",
            LifecycleState::Decommissioned => "DECOMMISSIONED",
        }
    }

    pub fn parse(s: &str) -> Option<LifecycleState> {
        LifecycleState::ALL.into_iter().find(|v| v.name() == s)
    }

    /// Whether an asset may move from this state to `to`: planned →
    /// commissioned → in service ⇄ maintenance, and any of them →
    /// decommissioned, which is final.
    pub fn may_become(self, to: LifecycleState) -> bool {
        use LifecycleState::*;
        match (self, to) {
            (Decommissioned, _) => false,
            (_, Decommissioned) => true,
            (Planned, Commissioned)
            | (Commissioned, InService)
            | (Commissioned, Maintenance)
            | (InService, Maintenance)
            | (Maintenance, InService) => true,
            _ => false,
        }
    }
}

impl Record {
    /// Every kind, as serialized (`kind` below names each of them).
    pub const KINDS: [&'static str; 26] = [
        "configurationCreated",
        "configurationVersionPublished",
        "configurationRemediationSet",
        "rolloutStarted",
        "rolloutTwinsSettled",
        "rolloutChanged",
        "deviceRegistered",
        "deviceKeyRotated",
        "deviceStatusSet",
        "deviceDeleted",
        "enrollmentGroupCreated",
        "enrollmentGroupDeleted",
        "deviceConnected",
        "deviceDisconnected",
        "deviceMethodRequested",
        "deviceMethodAnswered",
        "alarmRulePublished",
        "alarmRuleDeleted",
        "alarmRaised",
        "alarmCleared",
        "alarmAcknowledged",
        "alarmShelved",
        "alarmUnshelved",
        "alarmCommented",
        "lifecycleChanged",
        "diagnosticReported",
    ];

    /// Its kind, as serialized.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::ConfigurationCreated { .. } => "configurationCreated",
            Record::ConfigurationVersionPublished { .. } => "configurationVersionPublished",
            Record::ConfigurationRemediationSet { .. } => "configurationRemediationSet",
            Record::RolloutStarted { .. } => "rolloutStarted",
            Record::RolloutTwinsSettled { .. } => "rolloutTwinsSettled",
            Record::RolloutChanged { .. } => "rolloutChanged",
            Record::DeviceRegistered { .. } => "deviceRegistered",
            Record::DeviceKeyRotated { .. } => "deviceKeyRotated",
            Record::DeviceStatusSet { .. } => "deviceStatusSet",
            Record::DeviceDeleted { .. } => "deviceDeleted",
            Record::EnrollmentGroupCreated { .. } => "enrollmentGroupCreated",
            Record::EnrollmentGroupDeleted { .. } => "enrollmentGroupDeleted",
            Record::DeviceConnected { .. } => "deviceConnected",
            Record::DeviceDisconnected { .. } => "deviceDisconnected",
            Record::DeviceMethodRequested { .. } => "deviceMethodRequested",
            Record::DeviceMethodAnswered { .. } => "deviceMethodAnswered",
            Record::AlarmRulePublished { .. } => "alarmRulePublished",
            Record::AlarmRuleDeleted { .. } => "alarmRuleDeleted",
            Record::AlarmRaised { .. } => "alarmRaised",
            Record::AlarmCleared { .. } => "alarmCleared",
            Record::AlarmAcknowledged { .. } => "alarmAcknowledged",
            Record::AlarmShelved { .. } => "alarmShelved",
            Record::AlarmUnshelved { .. } => "alarmUnshelved",
            Record::AlarmCommented { .. } => "alarmCommented",
            Record::LifecycleChanged { .. } => "lifecycleChanged",
            Record::DiagnosticReported { .. } => "diagnosticReported",
        }
    }

    /// The twin whose history it is part of, if any (its events link to
    /// the twin's like the twin's own changes).
    pub fn twin(&self) -> Option<&str> {
        match self {
            Record::LifecycleChanged { twin, .. } | Record::DiagnosticReported { twin, .. } => {
                Some(twin)
            }
            _ => None,
        }
    }

    /// The stream its owner reads it back from: `rollouts` (configurations
    /// and rollouts) or `devices` (identities); none for connections, which
    /// are history like twin changes (retention prunes them) and mean
    /// nothing after a restart.
    pub fn stream(&self) -> Option<&'static str> {
        Some(match self {
            Record::ConfigurationCreated { .. }
            | Record::ConfigurationVersionPublished { .. }
            | Record::ConfigurationRemediationSet { .. }
            | Record::RolloutStarted { .. }
            | Record::RolloutTwinsSettled { .. }
            | Record::RolloutChanged { .. } => ROLLOUTS_STREAM,
            Record::DeviceRegistered { .. }
            | Record::DeviceKeyRotated { .. }
            | Record::DeviceStatusSet { .. }
            | Record::DeviceDeleted { .. }
            | Record::EnrollmentGroupCreated { .. }
            | Record::EnrollmentGroupDeleted { .. } => DEVICES_STREAM,
            Record::DeviceConnected { .. }
            | Record::DeviceDisconnected { .. }
            | Record::DeviceMethodRequested { .. }
            | Record::DeviceMethodAnswered { .. } => return None,
            Record::AlarmRulePublished { .. }
            | Record::AlarmRuleDeleted { .. }
            | Record::AlarmRaised { .. }
            | Record::AlarmCleared { .. }
            | Record::AlarmAcknowledged { .. }
            | Record::AlarmShelved { .. }
            | Record::AlarmUnshelved { .. }
            | Record::AlarmCommented { .. } => ALARMS_STREAM,
            Record::LifecycleChanged { .. } => LIFECYCLE_STREAM,
            Record::DiagnosticReported { .. } => return None,
        })
    }
}

/// The stream of configuration and rollout records.
pub const ROLLOUTS_STREAM: &str = "rollouts";

/// The stream of device identity and connection records.
pub const DEVICES_STREAM: &str = "devices";

/// The stream of alarm rules and alarms.
pub const ALARMS_STREAM: &str = "alarms";

/// The stream of lifecycle changes.
pub const LIFECYCLE_STREAM: &str = "lifecycle";

/// Every stream of records, for stores that restore where each ends.
pub const RECORD_STREAMS: [&str; 4] = [
    ROLLOUTS_STREAM,
    DEVICES_STREAM,
    ALARMS_STREAM,
    LIFECYCLE_STREAM,
];

// Alarms.

/// How urgent an alarm is (ISA-18.2 priorities), lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// As GraphQL spells it.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|v| v.name() == s)
    }
}

/// What an alarm rule watches on a twin. `field` is a Property or
/// Telemetry of the rule's model (`component.field` for a Component's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Condition {
    /// The value is above `limit`; once active, until it falls below
    /// `limit - deadband`.
    #[serde(rename_all = "camelCase")]
    Above {
        field: String,
        limit: f64,
        #[serde(default, skip_serializing_if = "is_zero")]
        deadband: f64,
    },
    /// The value is below `limit`; once active, until it rises above
    /// `limit + deadband`.
    #[serde(rename_all = "camelCase")]
    Below {
        field: String,
        limit: f64,
        #[serde(default, skip_serializing_if = "is_zero")]
        deadband: f64,
    },
    /// The value is outside `low..=high`; once active, until it is back
    /// inside by `deadband`.
    #[serde(rename_all = "camelCase")]
    Outside {
        field: String,
        low: f64,
        high: f64,
        #[serde(default, skip_serializing_if = "is_zero")]
        deadband: f64,
    },
    /// The value equals `value` (an enum's value, a string, a boolean).
    #[serde(rename_all = "camelCase")]
    Equals { field: String, value: Value },
    /// The value differs from `value`.
    #[serde(rename_all = "camelCase")]
    NotEquals { field: String, value: Value },
    /// The value changes faster than `per_second` (either way) between
    /// two reports.
    #[serde(rename_all = "camelCase")]
    RateAbove { field: String, per_second: f64 },
    /// No report for `seconds`: of `field`, or of anything when none.
    #[serde(rename_all = "camelCase")]
    Stale {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        seconds: f64,
    },
    /// The value is unlike the field's last `window` reports on this twin:
    /// its distance from their median, in median absolute deviations
    /// (apart above and below the median), is above the threshold
    /// `sensitivity` (0 to 1, exclusive) sets: 0.5 is about 2.9. Raises
    /// SUSPECT alarms with the evidence.
    #[serde(rename_all = "camelCase")]
    Anomaly {
        field: String,
        sensitivity: f64,
        window: u32,
    },
    /// The field's level shifted within its last `window` reports on this
    /// twin: Bayesian online change-point detection splits them into
    /// levels, and the last is at least `2 / sensitivity` noise deviations
    /// from the level before the first such shift (0.5: 4). Raises SUSPECT
    /// alarms with the evidence; clears when the level comes back or its
    /// change point leaves the window.
    #[serde(rename_all = "camelCase")]
    ChangePoint {
        field: String,
        sensitivity: f64,
        window: u32,
    },
    /// The twin's values over the last `window_seconds` are unlike those
    /// of its peers (twins of the rule's model in the same container),
    /// compared bucket by bucket (DBSCAN, its distance set by
    /// `sensitivity`). Raises SUSPECT alarms with the evidence.
    #[serde(rename_all = "camelCase")]
    Peers {
        field: String,
        sensitivity: f64,
        window_seconds: f64,
    },
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Condition {
    /// The field it watches (none: a stale rule on any report).
    pub fn field(&self) -> Option<&str> {
        match self {
            Condition::Above { field, .. }
            | Condition::Below { field, .. }
            | Condition::Outside { field, .. }
            | Condition::Equals { field, .. }
            | Condition::NotEquals { field, .. }
            | Condition::RateAbove { field, .. }
            | Condition::Anomaly { field, .. }
            | Condition::ChangePoint { field, .. }
            | Condition::Peers { field, .. } => Some(field),
            Condition::Stale { field, .. } => field.as_deref(),
        }
    }

    /// Whether its alarms are SUSPECT: a detector's judgement that a value
    /// is unusual, not a limit crossed.
    pub fn suspect(&self) -> bool {
        matches!(
            self,
            Condition::Anomaly { .. } | Condition::ChangePoint { .. } | Condition::Peers { .. }
        )
    }
}

/// Why a detector found a value unusual.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// The value judged (of peers: the twin's last bucket's mean).
    pub observed: f64,
    /// The band of values expected.
    pub low: f64,
    pub high: f64,
    /// How unusual: MADs from the median; of peers, the share of buckets
    /// in which the twin was unlike the others.
    pub score: f64,
}

/// A version of an alarm rule, as published (immutable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmRuleSpec {
    pub name: String,
    pub version: u32,
    /// DTMI of the Interface it applies to (twins of subtypes included).
    pub model: String,
    pub condition: Condition,
    pub severity: Severity,
    /// The alarm's message; `{twin}`, `{field}`, `{value}`, `{limit}`,
    /// `{rule}`, `{severity}` and `{model}` are filled in.
    pub message: String,
    /// How long the condition must hold before the alarm is raised.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub on_delay_ms: u64,
    /// How long it must not hold before the alarm clears.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub off_delay_ms: u64,
    /// How many containers up an active alarm counts in health (none:
    /// every one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// What raising an alarm records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmRaise {
    pub rule: String,
    /// The rule's version that raised it.
    pub version: u32,
    pub twin: String,
    pub severity: Severity,
    pub message: String,
    /// The value that made it (null for a stale rule).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
    /// The twin's containers when it was raised, nearest first (where it
    /// counts, up to the rule's depth).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<u32>,
    /// A detector's reasons (SUSPECT alarms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

// Devices.

/// What registering a device records. Symmetric keys are never stored:
/// each is derived from the server's device secret, the device id, the
/// slot and its generation (`crate::devices::keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSpec {
    pub id: String,
    /// The twin it is the device of.
    pub twin: String,
    pub auth: DeviceAuth,
    /// The enrollment group that provisioned it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<String>,
}

/// How a device proves who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum DeviceAuth {
    /// SAS tokens signed with its primary or secondary key, each the key
    /// derived at its generation.
    #[serde(rename_all = "camelCase")]
    SymmetricKey { primary: u32, secondary: u32 },
    /// SAS tokens signed with the key its enrollment group derives for its
    /// id (the Device Provisioning Service's group enrollment).
    #[serde(rename_all = "camelCase")]
    EnrollmentGroupKey {},
    /// A client certificate with one of these SHA-256 thumbprints (hex).
    #[serde(rename_all = "camelCase")]
    X509Thumbprint {
        primary: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secondary: Option<String>,
    },
    /// A client certificate whose subject's common name is its id, issued
    /// by a certificate authority the server trusts (its enrollment
    /// group's, for a device an enrollment group provisioned).
    #[serde(rename_all = "camelCase")]
    X509Ca {},
}

/// What creating an enrollment group records (its key derives from the
/// device secret, its name and `generation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentSpec {
    pub name: String,
    /// The twin new devices' twins are placed under.
    pub parent: String,
    /// The relationship from `parent` to each new twin.
    pub relationship: String,
    /// Models devices may announce (each with its subtypes); empty: any
    /// model the server knows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    pub generation: u32,
    /// The certificate authority (PEM: a root or an intermediate) whose
    /// device certificates the group takes, instead of a group key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

/// Which of a device's two symmetric keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeySlot {
    Primary,
    Secondary,
}

impl KeySlot {
    pub fn name(self) -> &'static str {
        match self {
            KeySlot::Primary => "primary",
            KeySlot::Secondary => "secondary",
        }
    }
}

// Configurations.

/// What creating a configuration records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationSpec {
    pub name: String,
    /// DTMI of the Interface it targets (twins of subtypes included).
    pub target: String,
    /// When several assigned configurations set one property of a twin, the
    /// highest priority wins (ties: the most recently assigned).
    #[serde(default)]
    pub priority: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A version of another configuration that a version builds on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseRef {
    pub configuration: String,
    pub version: u32,
}

/// Where a parameter takes its value on each twin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "camelCase")]
pub enum ParamSource {
    /// A value of the twin itself: `path` is `property`, `component.property`
    /// or a path into an Object value (`property.field`); the reported value
    /// unless `side` is `desired`.
    #[serde(rename_all = "camelCase")]
    Property {
        path: String,
        #[serde(default = "reported")]
        side: Side,
    },
    /// The twin at the other end of the twin's first relationship of this
    /// name (outgoing unless `incoming`): its id, or the value at `path`.
    #[serde(rename_all = "camelCase")]
    Related {
        relationship: String,
        #[serde(default)]
        incoming: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
}

fn reported() -> Side {
    Side::Reported
}

/// A parameter of a version: filled from the twin (`source`), else from
/// the rollout, else from `default`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ParamSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What publishing a version records (its number is assigned on publish).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionSpec {
    pub number: u32,
    /// The desired values this version sets itself (placeholders allowed).
    pub values: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

// Rollouts.

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    Pending,
    Running,
    Paused,
    Succeeded,
    Failed,
    RollingBack,
    RolledBack,
    Canceled,
}

/// Where one twin of a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TwinState {
    Pending,
    Applied,
    Succeeded,
    Failed,
    TimedOut,
    RolledBack,
}

/// A twin's outcome, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub twin: String,
    /// SUCCEEDED, FAILED, TIMED_OUT, or PENDING (to be applied again).
    pub state: TwinState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
    /// The device's status code (`ac`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What starting a rollout records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStart {
    pub spec: RolloutSpec,
    /// The target twins, in the order they are applied.
    pub twins: Vec<String>,
    /// Each twin's container (aligned with `twins`; empty when the plan
    /// does not need it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<Option<String>>,
    /// Where each stage ends in `twins` (exclusive).
    pub stage_ends: Vec<usize>,
    /// The configuration's priority when the rollout started.
    #[serde(default)]
    pub priority: i64,
}

/// Which twins a rollout targets: every criterion given must hold (an
/// intersection); twins must be of the configuration's Interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Exactly these twins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// Twins of this model (subtypes included); default: the
    /// configuration's target Interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A `where` filter over twin values, as lists take it.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "where")]
    pub filter: Option<Value>,
    /// Twins contained (transitively) by this twin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under: Option<String>,
}

/// One stage: its size (a count, or a percentage of the target; the last
/// stage takes whatever is left), the share of its twins that must succeed,
/// and how long it must then stay healthy before the next stage starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Percent of the stage's twins that must succeed (default 100).
    #[serde(default = "hundred")]
    pub success_threshold: f64,
    #[serde(default)]
    pub bake_seconds: f64,
}

fn hundred() -> f64 {
    100.0
}

/// A rate limit: at most `per_minute` twins applied per minute, multiplied
/// by `growth_factor` each time `grow_every` more twins have succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    pub per_minute: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth_factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grow_every: Option<usize>,
}

/// Why a twin failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureKind {
    /// The device acknowledged with an error code.
    Rejected,
    /// No acknowledgement within the per-twin timeout.
    TimedOut,
    /// The device acknowledged but reports another value than desired.
    Diverged,
    /// The twin could not be updated (deleted, parameter without value).
    Error,
    /// Any of the above (abort criteria only).
    Any,
}

/// Stops the rollout (and rolls it back) when at least `threshold_percent`
/// of the twins executed so far failed this way, once `min_executed` have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortCriterion {
    #[serde(default = "any")]
    pub failure: FailureKind,
    pub threshold_percent: f64,
    #[serde(default)]
    pub min_executed: usize,
}

fn any() -> FailureKind {
    FailureKind::Any
}

/// How a rollout proceeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Stages in order; none: one stage of every twin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abort: Vec<AbortCriterion>,
    /// Seconds a device has to acknowledge and converge (default 300).
    #[serde(default = "default_timeout")]
    pub twin_timeout_seconds: f64,
    /// How many times a failed or timed-out twin is applied again.
    #[serde(default)]
    pub retries: u32,
    /// Orders twins by their place in the containment hierarchy, so that
    /// waves go one site / line at a time.
    #[serde(default)]
    pub order_by_hierarchy: bool,
    /// Never more than this many twins sharing a parent in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight_per_parent: Option<usize>,
}

pub(crate) fn default_timeout() -> f64 {
    300.0
}

/// A rollout request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    pub id: String,
    pub configuration: String,
    pub version: u32,
    pub target: Target,
    /// Parameter values for every twin (twin sources take precedence).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub plan: Plan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}
