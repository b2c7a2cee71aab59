//! The alarm book: alarm rules (every version) and alarms (their ISA-18.2
//! state, comments and recent transitions), the fold of the `alarms`
//! stream; and what is active at and below every twin, counted as alarms
//! change (an alarm counts at its twin and at its containers up to its
//! rule's depth, those recorded when it was raised).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::records::{ALARMS_STREAM, AlarmRuleSpec, Record, Severity};
use crate::store::fold::Fold;
use crate::twin::{Change, Event, Micros};

/// Transitions an alarm keeps in memory (its whole history is in the log).
const RECENT: usize = 50;

/// Comments an alarm keeps in memory.
const COMMENTS: usize = 100;

/// Where an alarm stands (ISA-18.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmState {
    /// Active, not acknowledged.
    ActiveUnacknowledged,
    /// Active, acknowledged.
    ActiveAcknowledged,
    /// Cleared, never acknowledged.
    ClearedUnacknowledged,
    /// Cleared and acknowledged.
    Normal,
}

impl AlarmState {
    pub const ALL: [AlarmState; 4] = [
        AlarmState::ActiveUnacknowledged,
        AlarmState::ActiveAcknowledged,
        AlarmState::ClearedUnacknowledged,
        AlarmState::Normal,
    ];

    /// As GraphQL spells it.
    pub fn name(self) -> &'static str {
        match self {
            AlarmState::ActiveUnacknowledged => "ACTIVE_UNACKNOWLEDGED",
            AlarmState::ActiveAcknowledged => "ACTIVE_ACKNOWLEDGED",
            AlarmState::ClearedUnacknowledged => "CLEARED_UNACKNOWLEDGED",
            AlarmState::Normal => "NORMAL",
        }
    }

    pub fn parse(s: &str) -> Option<AlarmState> {
        AlarmState::ALL.into_iter().find(|v| v.name() == s)
    }
}

/// A rule and its versions.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Every version, oldest first (`versions[n - 1]` is version `n`).
    pub versions: Vec<Arc<AlarmRuleSpec>>,
    pub created_at: Micros,
    pub created_by: String,
    pub updated_at: Micros,
    pub updated_by: String,
}

impl Rule {
    pub fn current(&self) -> &Arc<AlarmRuleSpec> {
        // A rule exists only once its first version is published.
        &self.versions[self.versions.len() - 1]
    }
}

/// A comment on an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub text: String,
    pub by: String,
    pub at: Micros,
}

/// One change of an alarm, as its history lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// `raised`, `cleared`, `acknowledged`, `shelved`, `unshelved`, `commented`.
    pub kind: &'static str,
    pub at: Micros,
    pub by: String,
    pub seq: u64,
    pub state: AlarmState,
    /// The comment, reason or value that came with it.
    pub note: Option<String>,
}

/// An alarm: one rule on one twin, across its occurrences.
#[derive(Debug, Clone)]
pub struct Alarm {
    pub rule: String,
    pub twin: String,
    pub version: u32,
    pub severity: Severity,
    pub message: String,
    pub value: Value,
    pub active: bool,
    pub acknowledged: bool,
    pub shelved_until: Option<Micros>,
    pub raised_at: Micros,
    /// The event that raised it last (its place in alarm lists).
    pub raised_seq: u64,
    pub cleared_at: Option<Micros>,
    pub acknowledged_at: Option<Micros>,
    pub acknowledged_by: Option<String>,
    pub changed_at: Micros,
    /// The twin's containers when it was raised, nearest first.
    pub ancestors: Vec<String>,
    pub depth: Option<u32>,
    /// A detector's reasons (SUSPECT alarms), as of its last raise.
    pub evidence: Option<crate::records::Evidence>,
    pub comments: Vec<Comment>,
    pub recent: Vec<Transition>,
}

impl Alarm {
    pub fn id(&self) -> String {
        format!("{}/{}", self.rule, self.twin)
    }

    pub fn state(&self) -> AlarmState {
        match (self.active, self.acknowledged) {
            (true, false) => AlarmState::ActiveUnacknowledged,
            (true, true) => AlarmState::ActiveAcknowledged,
            (false, false) => AlarmState::ClearedUnacknowledged,
            (false, true) => AlarmState::Normal,
        }
    }

    /// Whether it counts in health: active and not shelved.
    pub fn counts(&self) -> bool {
        self.active && self.shelved_until.is_none()
    }

    /// The containers it counts at (up to its depth).
    pub fn counted_at(&self) -> &[String] {
        let n = self.depth.map_or(self.ancestors.len(), |d| {
            (d as usize).min(self.ancestors.len())
        });
        &self.ancestors[..n]
    }

    /// Whether it is on `twin` or below it (within the recorded containers).
    pub fn under(&self, twin: &str) -> bool {
        self.twin == twin || self.ancestors.iter().any(|a| a == twin)
    }
}

/// Active, unshelved alarms by severity (`Severity::ALL` order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts(pub [u32; 4]);

impl Counts {
    fn add(&mut self, s: Severity, n: i32) {
        let c = &mut self.0[s as usize];
        *c = c.saturating_add_signed(n);
    }

    pub fn of(&self, s: Severity) -> u32 {
        self.0[s as usize]
    }

    pub fn total(&self) -> u32 {
        self.0.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The worst severity with an alarm.
    pub fn worst(&self) -> Option<Severity> {
        Severity::ALL.into_iter().rev().find(|s| self.of(*s) > 0)
    }

    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.saturating_add(b);
        }
    }
}

/// Rules and alarms, as the stream has them.
#[derive(Debug, Default)]
pub struct Book {
    rules: BTreeMap<String, Rule>,
    /// Alarms by rule, then twin.
    alarms: HashMap<String, HashMap<String, Alarm>>,
    /// Alarms by twin.
    by_twin: HashMap<String, Vec<String>>,
    /// What counts at each twin: on it, and below it.
    own: HashMap<String, Counts>,
    below: HashMap<String, Counts>,
    /// The last record folded.
    seq: u64,
}

impl Book {
    /// The sequence number of the last record folded.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.get(name)
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.values()
    }

    pub fn alarm(&self, rule: &str, twin: &str) -> Option<&Alarm> {
        self.alarms.get(rule)?.get(twin)
    }

    /// The alarm of an id (`rule/twin`).
    pub fn by_id(&self, id: &str) -> Option<&Alarm> {
        let (rule, twin) = id.split_once('/')?;
        self.alarm(rule, twin)
    }

    pub fn alarms(&self) -> impl Iterator<Item = &Alarm> {
        self.alarms.values().flat_map(HashMap::values)
    }

    /// The alarms of one twin.
    pub fn of_twin<'a>(&'a self, twin: &'a str) -> impl Iterator<Item = &'a Alarm> + 'a {
        self.by_twin
            .get(twin)
            .into_iter()
            .flatten()
            .filter_map(move |rule| self.alarm(rule, twin))
    }

    /// What counts on `twin` itself, and below it.
    pub fn counts(&self, twin: &str) -> (Counts, Counts) {
        (
            self.own.get(twin).copied().unwrap_or_default(),
            self.below.get(twin).copied().unwrap_or_default(),
        )
    }

    /// Counts `a` (`n` = 1) or stops counting it (`n` = -1).
    fn count(&mut self, (rule, twin): (&str, &str), n: i32) {
        let Some(a) = self.alarms.get(rule).and_then(|r| r.get(twin)) else {
            return;
        };
        if !a.counts() {
            return;
        }
        let severity = a.severity;
        self.own.entry(a.twin.clone()).or_default().add(severity, n);
        for t in a.counted_at() {
            self.below.entry(t.clone()).or_default().add(severity, n);
        }
    }

    /// Changes an alarm, keeping the counts right.
    fn change(&mut self, rule: &str, twin: &str, f: impl FnOnce(&mut Alarm)) {
        self.count((rule, twin), -1);
        if let Some(a) = self.alarms.get_mut(rule).and_then(|r| r.get_mut(twin)) {
            f(a);
        }
        self.count((rule, twin), 1);
    }
}

fn transition(a: &mut Alarm, kind: &'static str, e: &Event, note: Option<String>) {
    a.changed_at = e.time;
    a.recent.push(Transition {
        kind,
        at: e.time,
        by: e.actor.clone(),
        seq: e.seq,
        state: a.state(),
        note,
    });
    if a.recent.len() > RECENT {
        a.recent.remove(0);
    }
}

impl Fold for Book {
    const STREAM: &'static str = ALARMS_STREAM;
    const OBSERVES: bool = false;

    fn apply(&mut self, e: &Event) {
        let Change::Record(r) = &e.change else { return };
        self.seq = self.seq.max(e.seq);
        match r {
            Record::AlarmRulePublished { rule } => match self.rules.get_mut(&rule.name) {
                Some(existing) => {
                    existing.versions.push(rule.clone());
                    existing.updated_at = e.time;
                    existing.updated_by = e.actor.clone();
                }
                None => {
                    self.rules.insert(
                        rule.name.clone(),
                        Rule {
                            versions: vec![rule.clone()],
                            created_at: e.time,
                            created_by: e.actor.clone(),
                            updated_at: e.time,
                            updated_by: e.actor.clone(),
                        },
                    );
                }
            },
            Record::AlarmRuleDeleted { rule } => {
                self.rules.remove(rule);
                // Its alarms return to normal (their history stays in the log).
                let twins: Vec<String> = self
                    .alarms
                    .get(rule)
                    .map(|r| r.keys().cloned().collect())
                    .unwrap_or_default();
                for twin in &twins {
                    self.count((rule, twin), -1);
                    if let Some(v) = self.by_twin.get_mut(twin) {
                        v.retain(|r| r != rule);
                        if v.is_empty() {
                            self.by_twin.remove(twin);
                        }
                    }
                }
                self.alarms.remove(rule);
            }
            Record::AlarmRaised { alarm: raise } => {
                if self.alarm(&raise.rule, &raise.twin).is_none() {
                    self.by_twin
                        .entry(raise.twin.clone())
                        .or_default()
                        .push(raise.rule.clone());
                    self.alarms.entry(raise.rule.clone()).or_default().insert(
                        raise.twin.clone(),
                        Alarm {
                            rule: raise.rule.clone(),
                            twin: raise.twin.clone(),
                            version: raise.version,
                            severity: raise.severity,
                            message: raise.message.clone(),
                            value: raise.value.clone(),
                            active: false,
                            acknowledged: true,
                            shelved_until: None,
                            raised_at: e.time,
                            raised_seq: e.seq,
                            cleared_at: None,
                            acknowledged_at: None,
                            acknowledged_by: None,
                            changed_at: e.time,
                            ancestors: Vec::new(),
                            depth: None,
                            evidence: None,
                            comments: Vec::new(),
                            recent: Vec::new(),
                        },
                    );
                }
                self.change(&raise.rule, &raise.twin, |a| {
                    // A new occurrence is unacknowledged; raising an active
                    // alarm again (its rule changed) keeps its acknowledgement.
                    if !a.active {
                        a.acknowledged = false;
                        a.acknowledged_at = None;
                        a.acknowledged_by = None;
                        a.raised_at = e.time;
                        a.raised_seq = e.seq;
                        a.cleared_at = None;
                    }
                    a.active = true;
                    a.version = raise.version;
                    a.severity = raise.severity;
                    a.message = raise.message.clone();
                    a.value = raise.value.clone();
                    a.ancestors = raise.ancestors.clone();
                    a.depth = raise.depth;
                    a.evidence = raise.evidence;
                    transition(a, "raised", e, Some(raise.message.clone()));
                });
            }
            Record::AlarmCleared {
                rule,
                twin,
                value,
                reason,
            } => self.change(rule, twin, |a| {
                a.active = false;
                a.cleared_at = Some(e.time);
                if !value.is_null() {
                    a.value = value.clone();
                }
                transition(a, "cleared", e, reason.clone());
            }),
            Record::AlarmAcknowledged {
                rule,
                twin,
                comment,
            } => self.change(rule, twin, |a| {
                a.acknowledged = true;
                a.acknowledged_at = Some(e.time);
                a.acknowledged_by = Some(e.actor.clone());
                if let Some(text) = comment {
                    add_comment(a, text, e);
                }
                transition(a, "acknowledged", e, comment.clone());
            }),
            Record::AlarmShelved {
                rule,
                twin,
                until,
                comment,
            } => self.change(rule, twin, |a| {
                a.shelved_until = Some(*until);
                if let Some(text) = comment {
                    add_comment(a, text, e);
                }
                transition(a, "shelved", e, comment.clone());
            }),
            Record::AlarmUnshelved { rule, twin, reason } => self.change(rule, twin, |a| {
                a.shelved_until = None;
                transition(a, "unshelved", e, reason.clone());
            }),
            Record::AlarmCommented { rule, twin, text } => {
                if let Some(a) = self.alarms.get_mut(rule).and_then(|r| r.get_mut(twin)) {
                    add_comment(a, text, e);
                    transition(a, "commented", e, Some(text.clone()));
                }
            }
            _ => {}
        }
    }
}

fn add_comment(a: &mut Alarm, text: &str, e: &Event) {
    a.comments.push(Comment {
        text: text.to_owned(),
        by: e.actor.clone(),
        at: e.time,
    });
    if a.comments.len() > COMMENTS {
        a.comments.remove(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{AlarmRaise, Condition};
    use serde_json::json;

    fn event(seq: u64, r: Record) -> Event {
        Event {
            seq,
            time: seq as i64 * 1000,
            actor: "op".into(),
            change: Change::Record(r),
        }
    }

    fn raise(rule: &str, twin: &str, severity: Severity, depth: Option<u32>) -> Record {
        Record::AlarmRaised {
            alarm: Arc::new(AlarmRaise {
                rule: rule.into(),
                version: 1,
                twin: twin.into(),
                severity,
                message: "m".into(),
                value: json!(9),
                evidence: None,
                ancestors: vec!["line".into(), "area".into(), "site".into()],
                depth,
            }),
        }
    }

    #[test]
    fn states_and_counts_follow_isa_18_2() {
        let mut b = Book::default();
        b.apply(&event(
            1,
            Record::AlarmRulePublished {
                rule: Arc::new(AlarmRuleSpec {
                    name: "hot".into(),
                    version: 1,
                    model: "dtmi:x:P;1".into(),
                    condition: Condition::Above {
                        field: "p".into(),
                        limit: 1.0,
                        deadband: 0.0,
                    },
                    severity: Severity::High,
                    message: "m".into(),
                    on_delay_ms: 0,
                    off_delay_ms: 0,
                    depth: None,
                    description: None,
                }),
            },
        ));
        b.apply(&event(2, raise("hot", "p1", Severity::High, Some(2))));
        let a = b.alarm("hot", "p1").expect("alarm");
        assert_eq!(a.state(), AlarmState::ActiveUnacknowledged);
        assert_eq!(b.counts("p1").0.of(Severity::High), 1);
        assert_eq!(b.counts("line").1.of(Severity::High), 1);
        assert_eq!(b.counts("area").1.of(Severity::High), 1);
        // Depth 2: the site does not count it.
        assert!(b.counts("site").1.is_empty());
        let ack = |seq| {
            event(
                seq,
                Record::AlarmAcknowledged {
                    rule: "hot".into(),
                    twin: "p1".into(),
                    comment: Some("on it".into()),
                },
            )
        };
        b.apply(&ack(3));
        assert_eq!(
            b.alarm("hot", "p1").expect("alarm").state(),
            AlarmState::ActiveAcknowledged
        );
        assert_eq!(b.alarm("hot", "p1").expect("alarm").comments.len(), 1);
        let clear = |seq| {
            event(
                seq,
                Record::AlarmCleared {
                    rule: "hot".into(),
                    twin: "p1".into(),
                    value: json!(0.5),
                    reason: None,
                },
            )
        };
        b.apply(&clear(4));
        assert_eq!(
            b.alarm("hot", "p1").expect("alarm").state(),
            AlarmState::Normal
        );
        assert!(b.counts("line").1.is_empty());
        // A new occurrence, cleared before anyone acknowledged it.
        b.apply(&event(5, raise("hot", "p1", Severity::High, Some(2))));
        assert_eq!(
            b.alarm("hot", "p1").expect("alarm").state(),
            AlarmState::ActiveUnacknowledged
        );
        b.apply(&clear(6));
        assert_eq!(
            b.alarm("hot", "p1").expect("alarm").state(),
            AlarmState::ClearedUnacknowledged
        );
        b.apply(&ack(7));
        assert_eq!(
            b.alarm("hot", "p1").expect("alarm").state(),
            AlarmState::Normal
        );
        // Shelved alarms do not count; unshelved they do again.
        b.apply(&event(8, raise("hot", "p1", Severity::High, None)));
        assert_eq!(b.counts("site").1.of(Severity::High), 1);
        b.apply(&event(
            9,
            Record::AlarmShelved {
                rule: "hot".into(),
                twin: "p1".into(),
                until: 99_000,
                comment: None,
            },
        ));
        assert!(b.counts("site").1.is_empty());
        assert!(b.counts("p1").0.is_empty());
        b.apply(&event(
            10,
            Record::AlarmUnshelved {
                rule: "hot".into(),
                twin: "p1".into(),
                reason: Some("expired".into()),
            },
        ));
        assert_eq!(b.counts("site").1.worst(), Some(Severity::High));
        // Deleting the rule returns its alarms to normal.
        b.apply(&event(11, Record::AlarmRuleDeleted { rule: "hot".into() }));
        assert!(b.alarm("hot", "p1").is_none());
        assert!(b.counts("site").1.is_empty());
        assert!(b.counts("p1").0.is_empty());
    }
}
