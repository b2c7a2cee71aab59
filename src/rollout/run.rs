//! Rollouts as the fold of their records, and the pure decisions the
//! scheduler takes on them (a twin's outcome, abort criteria, stage gates).
//!
//! Records: `rolloutStarted` (the request and its ordered twins),
//! `configurationAssigned` events of the rollout (a twin APPLIED: the very
//! twin write, so applied-ness and the write are one transaction),
//! `rolloutTwinsSettled` (SUCCEEDED / FAILED / TIMED_OUT, or back to
//! PENDING for a retry), `rolloutChanged` (state, stage, bake),
//! `configurationRestored` events of the rollout (a twin ROLLED_BACK).

use std::collections::HashMap;

use serde::Serialize;

use super::plan::FailureKind;
use crate::records::Record;
pub use crate::records::{Outcome, RolloutStart, RolloutState, TwinState};
use crate::twin::event::Previous;
use crate::twin::{Change, Event, Micros, Twin};

impl RolloutState {
    /// Whether the rollout still holds its twins (no other rollout may
    /// target them).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RolloutState::Pending
                | RolloutState::Running
                | RolloutState::Paused
                | RolloutState::RollingBack
        )
    }
}

impl TwinState {
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            TwinState::Succeeded | TwinState::Failed | TwinState::TimedOut
        )
    }
}

/// One twin of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TwinRun {
    pub state: TwinState,
    /// Times applied.
    pub attempts: u32,
    /// When last applied.
    pub applied_at: Micros,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the first application replaced (what a rollback restores);
    /// boxed, so that the runs of a large rollout stay small until applied.
    #[serde(skip)]
    pub previous: Option<Box<Previous>>,
}

/// Twins by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub pending: usize,
    pub applied: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub timed_out: usize,
    pub rolled_back: usize,
}

impl Counts {
    fn slot(&mut self, s: TwinState) -> &mut usize {
        match s {
            TwinState::Pending => &mut self.pending,
            TwinState::Applied => &mut self.applied,
            TwinState::Succeeded => &mut self.succeeded,
            TwinState::Failed => &mut self.failed,
            TwinState::TimedOut => &mut self.timed_out,
            TwinState::RolledBack => &mut self.rolled_back,
        }
    }

    fn moved(&mut self, from: TwinState, to: TwinState) {
        *self.slot(from) -= 1;
        *self.slot(to) += 1;
    }
}

/// A rollout as its records leave it.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub start: std::sync::Arc<RolloutStart>,
    pub runs: Vec<TwinRun>,
    /// Positions in `start.twins` ordered by twin id (none: already ordered).
    by_id: Option<Vec<u32>>,
    pub state: RolloutState,
    /// The stage running (or baking).
    pub stage: usize,
    /// When the current stage met its threshold (it bakes until then + bake).
    pub baking_since: Option<Micros>,
    pub reason: Option<String>,
    pub counts: Counts,
    /// Failures by kind among settled twins.
    pub failures: HashMap<FailureKind, usize>,
    pub created_at: Micros,
    pub created_by: String,
    pub updated_at: Micros,
    /// When it first ran (rate limits count from here).
    pub running_since: Option<Micros>,
}

impl Rollout {
    pub fn id(&self) -> &str {
        &self.start.spec.id
    }

    pub fn position(&self, twin: &str) -> Option<usize> {
        let twins = &self.start.twins;
        match &self.by_id {
            None => twins.binary_search_by(|t| t.as_str().cmp(twin)).ok(),
            Some(order) => order
                .binary_search_by(|&i| twins[i as usize].as_str().cmp(twin))
                .ok()
                .map(|k| order[k] as usize),
        }
    }

    /// Positions of the twins awaiting their devices.
    pub fn applied(&self) -> impl Iterator<Item = usize> + '_ {
        self.runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == TwinState::Applied)
            .map(|(i, _)| i)
    }

    /// The stage a twin (by position) belongs to.
    pub fn stage_of(&self, i: usize) -> usize {
        self.start.stage_ends.partition_point(|&end| end <= i)
    }

    /// Positions of the current stage.
    pub fn stage_range(&self, stage: usize) -> std::ops::Range<usize> {
        let start = if stage == 0 {
            0
        } else {
            self.start.stage_ends[stage - 1]
        };
        start..self.start.stage_ends[stage]
    }

    /// Twins settled so far (final outcomes: retries pending excluded).
    pub fn executed(&self) -> usize {
        self.counts.succeeded + self.counts.failed + self.counts.timed_out
    }

    /// The abort criterion that trips now, as a reason.
    pub fn abort_reason(&self) -> Option<String> {
        let executed = self.executed();
        for a in &self.start.spec.plan.abort {
            if executed == 0 || executed < a.min_executed {
                continue;
            }
            let failed = match a.failure {
                FailureKind::Any => self.counts.failed + self.counts.timed_out,
                k => self.failures.get(&k).copied().unwrap_or(0),
            };
            let pct = failed as f64 * 100.0 / executed as f64;
            if pct >= a.threshold_percent {
                return Some(format!(
                    "abort criterion met: {failed} of {executed} executed twins failed ({:?}, {pct:.1}% >= {}%)",
                    a.failure, a.threshold_percent
                ));
            }
        }
        None
    }

    /// The share of the stage's twins that succeeded, once all settled.
    pub fn stage_result(&self, stage: usize) -> Option<f64> {
        let range = self.stage_range(stage);
        if range.is_empty() {
            return Some(100.0);
        }
        let len = range.len();
        let mut ok = 0;
        for r in &self.runs[range] {
            match r.state {
                TwinState::Succeeded => ok += 1,
                TwinState::Failed | TwinState::TimedOut => {}
                _ => return None,
            }
        }
        Some(ok as f64 * 100.0 / len as f64)
    }
}

/// Every rollout.
#[derive(Debug, Clone, Default)]
pub struct Runs {
    by_id: HashMap<String, Rollout>,
    /// Ids in start order.
    order: Vec<String>,
    /// The active ones (they hold their twins).
    active: Vec<String>,
}

impl Runs {
    pub fn get(&self, id: &str) -> Option<&Rollout> {
        self.by_id.get(id)
    }

    /// Every rollout, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Rollout> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }

    fn active(&self) -> impl Iterator<Item = &Rollout> {
        self.active.iter().filter_map(|id| self.by_id.get(id))
    }

    /// The active rollout holding a twin.
    pub fn holder(&self, twin: &str) -> Option<&str> {
        self.active()
            .find(|r| r.position(twin).is_some())
            .map(Rollout::id)
    }

    /// The rollout waiting for a twin's device, if any.
    pub fn in_flight(&self, twin: &str) -> Option<&str> {
        self.active()
            .find(|r| {
                r.position(twin)
                    .is_some_and(|i| r.runs[i].state == TwinState::Applied)
            })
            .map(Rollout::id)
    }

    /// Whether any twin awaits its device.
    pub fn any_in_flight(&self) -> bool {
        self.active().any(|r| r.counts.applied > 0)
    }

    /// Every twin awaiting its device.
    pub fn all_in_flight(&self) -> Vec<String> {
        self.active()
            .flat_map(|r| r.applied().map(|i| r.start.twins[i].clone()))
            .collect()
    }

    /// Applies a committed record; the rollout it concerns, if any.
    pub fn apply(&mut self, e: &Event) -> Option<String> {
        match &e.change {
            Change::Record(Record::RolloutStarted { rollout }) => {
                let start = rollout.clone();
                let id = start.spec.id.clone();
                let n = start.twins.len();
                let by_id = if start.twins.is_sorted() {
                    None
                } else {
                    let mut order: Vec<u32> = (0..n as u32).collect();
                    order.sort_unstable_by(|&a, &b| {
                        start.twins[a as usize].cmp(&start.twins[b as usize])
                    });
                    Some(order)
                };
                let run = TwinRun {
                    state: TwinState::Pending,
                    attempts: 0,
                    applied_at: 0,
                    failure: None,
                    code: None,
                    reason: None,
                    previous: None,
                };
                self.by_id.insert(
                    id.clone(),
                    Rollout {
                        start,
                        runs: vec![run; n],
                        by_id,
                        state: RolloutState::Pending,
                        stage: 0,
                        baking_since: None,
                        reason: None,
                        counts: Counts {
                            pending: n,
                            ..Counts::default()
                        },
                        failures: HashMap::new(),
                        created_at: e.time,
                        created_by: e.actor.clone(),
                        updated_at: e.time,
                        running_since: None,
                    },
                );
                self.order.push(id.clone());
                self.active.push(id.clone());
                Some(id)
            }
            Change::ConfigurationAssigned {
                twin,
                assignment,
                previous,
                ..
            } => {
                let id = assignment.rollout.as_ref()?;
                // Remediation re-applies a finished rollout's values: not
                // the rollout's business any more.
                let r = self.by_id.get_mut(id).filter(|r| r.state.is_active())?;
                let i = r.position(twin)?;
                let run = &mut r.runs[i];
                r.counts.moved(run.state, TwinState::Applied);
                run.state = TwinState::Applied;
                run.attempts += 1;
                run.applied_at = e.time;
                if run.previous.is_none() {
                    run.previous = Some(Box::new(previous.clone()));
                }
                r.updated_at = e.time;
                Some(id.clone())
            }
            Change::ConfigurationRestored { twin, rollout, .. } => {
                let id = rollout.as_ref()?;
                let r = self.by_id.get_mut(id)?;
                let i = r.position(twin)?;
                let run = &mut r.runs[i];
                r.counts.moved(run.state, TwinState::RolledBack);
                run.state = TwinState::RolledBack;
                r.updated_at = e.time;
                Some(id.clone())
            }
            Change::Record(Record::RolloutTwinsSettled { rollout, outcomes }) => {
                let r = self.by_id.get_mut(rollout)?;
                for o in outcomes {
                    let Some(i) = r.position(&o.twin) else {
                        continue;
                    };
                    let run = &mut r.runs[i];
                    r.counts.moved(run.state, o.state);
                    if o.state.is_settled()
                        && let Some(k) = o.failure
                    {
                        *r.failures.entry(k).or_default() += 1;
                    }
                    run.state = o.state;
                    run.failure = o.failure;
                    run.code = o.code;
                    run.reason.clone_from(&o.reason);
                }
                r.updated_at = e.time;
                Some(rollout.clone())
            }
            Change::Record(Record::RolloutChanged {
                rollout,
                state,
                stage,
                baking_since,
                reason,
            }) => {
                let r = self.by_id.get_mut(rollout)?;
                if *state == RolloutState::Running && r.running_since.is_none() {
                    r.running_since = Some(e.time);
                }
                r.state = *state;
                r.stage = *stage;
                r.baking_since = *baking_since;
                if reason.is_some() {
                    r.reason.clone_from(reason);
                }
                r.updated_at = e.time;
                self.active.retain(|a| a != rollout);
                if state.is_active() {
                    self.active.push(rollout.clone());
                }
                Some(rollout.clone())
            }
            _ => None,
        }
    }
}

/// A twin's outcome in a rollout of `configuration`, from its state; `None`
/// while its device has not answered for every property the rollout set.
/// A property another configuration decides (higher priority) counts as
/// done: this rollout does not own it.
pub fn evaluate(twin: &Twin, configuration: &str, rollout: &str) -> Option<Outcome> {
    let outcome = |state, failure, code, reason| {
        Some(Outcome {
            twin: twin.id.to_string(),
            state,
            failure,
            code,
            reason,
        })
    };
    let Some(a) = twin.configurations.get(configuration) else {
        return outcome(
            TwinState::Failed,
            Some(FailureKind::Error),
            None,
            Some("the configuration is no longer assigned".into()),
        );
    };
    if a.rollout.as_deref() != Some(rollout) {
        return outcome(
            TwinState::Failed,
            Some(FailureKind::Error),
            None,
            Some("another assignment of the configuration replaced it".into()),
        );
    }
    let mut waiting = false;
    for (component, name) in a.paths(|k| twin.components.contains_key(k)) {
        match twin.deciding(component.as_deref(), &name) {
            Some((c, _)) if c == configuration => {}
            _ => continue,
        }
        let Some(p) = twin
            .component(component.as_deref())
            .and_then(|c| c.props.get(&name))
        else {
            waiting = true;
            continue;
        };
        let Some(desired) = &p.desired else {
            continue;
        };
        let path = match &component {
            Some(c) => format!("{c}.{name}"),
            None => name.clone(),
        };
        let ack = p
            .reported
            .as_ref()
            .and_then(|r| r.ack.as_ref())
            .filter(|ack| ack.version >= desired.version);
        match ack {
            Some(ack) if ack.code >= 400 => {
                return outcome(
                    TwinState::Failed,
                    Some(FailureKind::Rejected),
                    Some(ack.code),
                    Some(format!(
                        "{path}: rejected ({}){}",
                        ack.code,
                        ack.description
                            .as_deref()
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    )),
                );
            }
            Some(ack) if (200..300).contains(&ack.code) && ack.code != 202 => {
                let reported = p.reported.as_ref().map(|r| &r.value);
                if reported != Some(&desired.value) {
                    return outcome(
                        TwinState::Failed,
                        Some(FailureKind::Diverged),
                        Some(ack.code),
                        Some(format!(
                            "{path}: acknowledged, but reports {} instead of {}",
                            reported.map_or("nothing".to_owned(), ToString::to_string),
                            desired.value
                        )),
                    );
                }
            }
            _ => waiting = true,
        }
    }
    if waiting {
        None
    } else {
        outcome(TwinState::Succeeded, None, None, None)
    }
}
