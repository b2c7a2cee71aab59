//! Driving rollouts: the scheduler is one task (per server) that, on every
//! wake-up, settles the twins whose devices answered or timed out, checks
//! the abort criteria and the stage gate, and applies the next twins within
//! the plan's limits, all under the service's write lock and always from
//! the folded records, so that a restart resumes exactly where the records
//! stop. Time is read from the service's [`Clock`] once per pass.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use serde_json::Value;

use super::RolloutError;
use super::config::{ParamSource, Version, substitute};
use super::plan::{FailureKind, RolloutSpec};
use super::remediation::Remediation;
use super::run::{Outcome, Rollout, RolloutState, TwinState, evaluate};
use super::service::Rollouts;
use crate::records::Record;
use crate::store::StoreError;
use crate::twin::clock::Clock;
use crate::twin::query::Direction;
use crate::twin::state::Assignment;
use crate::twin::{Batch, Change, Micros, Op, Side, Twin};

/// Twins written per store batch.
const CHUNK: usize = 2000;

/// Twins applied per scheduler pass at most.
const PER_STEP: usize = 10_000;

/// Outcomes per `rolloutTwinsSettled` record.
const SETTLE_CHUNK: usize = 5000;

/// The scheduler looks at least this often (timeouts, bake, rate).
const TICK: Duration = Duration::from_millis(100);

/// Who the scheduler's own records name.
const SCHEDULER: &str = "rollout-scheduler";

/// The lease the scheduling server holds.
pub(super) const LEASE: &str = "rollout-scheduler";

/// Runs the scheduler until the service is dropped: while this server holds
/// the scheduler lease, steps every rollout and remediation.
///
/// The lease picks one scheduling server among several over one store; it
/// is renewed every third of its time and tried for as often while another
/// server holds it. It is not what keeps the records right: every write
/// expects the stream's last record (see [`Rollouts::commit`]), so a server
/// that lost the lease without knowing it has its next write refused.
/// The scheduler of one server: a task that, while this server holds the
/// scheduler lease, passes over every active rollout and then remediation,
/// on every wake-up (a record folded, a device answering a twin in flight,
/// a command) and at least every [`TICK`]. It owns what no other part
/// needs: the lease, remediation's memory and the clock its decisions read.
///
/// The lease picks one scheduling server among several over one store; it
/// is renewed every third of its time and tried for as often while another
/// server holds it. It is not what keeps the records right: every write
/// expects the stream's last record (see [`Rollouts::commit`]), so a server
/// that lost the lease without knowing it has its next write refused.
pub(super) struct Scheduler {
    service: Weak<Rollouts>,
    wake: Arc<tokio::sync::Notify>,
    clock: Arc<dyn Clock>,
    lease: Lease,
    remediation: Remediation,
    status: Arc<Status>,
}

/// The lease as the scheduler holds it.
struct Lease {
    ttl: Duration,
    /// When the lease was last taken or renewed, while held.
    renewed: Option<Instant>,
    next_try: Instant,
}

/// What the rest of the service sees of its scheduler.
#[derive(Debug)]
pub(super) struct Status {
    /// This server's name in the scheduler lease.
    pub holder: String,
    /// Whether this server holds the lease (as of its last try).
    pub scheduling: AtomicBool,
    /// Passes done while holding it (tests wait for the next).
    pub passes: watch::Sender<u64>,
}

impl Status {
    pub fn new() -> Status {
        Status {
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            scheduling: AtomicBool::new(false),
            passes: watch::channel(0).0,
        }
    }
}

impl Scheduler {
    pub fn new(service: &Arc<Rollouts>) -> Scheduler {
        Scheduler {
            service: Arc::downgrade(service),
            wake: service.wake.clone(),
            clock: service.options.clock.clone(),
            lease: Lease {
                ttl: service.options.lease_ttl,
                renewed: None,
                next_try: Instant::now(),
            },
            remediation: Remediation::default(),
            status: service.scheduler.clone(),
        }
    }

    /// Runs until the service is dropped.
    pub async fn run(mut self) {
        loop {
            {
                let Some(svc) = self.service.upgrade() else {
                    return;
                };
                let holds = self.hold_lease(&svc).await;
                self.status.scheduling.store(holds, Ordering::Release);
                if holds {
                    match self.pass(&svc).await {
                        Ok(()) => {}
                        Err(RolloutError::Overtaken { .. }) => {
                            tracing::debug!(
                                "rollout scheduler: another server recorded first; stepping again"
                            );
                            self.wake.notify_one();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "rollout scheduler step failed; retrying")
                        }
                    }
                    self.status.passes.send_modify(|n| *n += 1);
                }
            }
            // A wake-up while stepping left a permit: no change is missed.
            let _ = tokio::time::timeout(TICK, self.wake.notified()).await;
        }
    }

    /// Takes or renews the lease when due; whether this server holds it.
    async fn hold_lease(&mut self, svc: &Rollouts) -> bool {
        let lease = &mut self.lease;
        let now = Instant::now();
        if now >= lease.next_try {
            lease.next_try = now + lease.ttl / 3;
            match svc
                .store()
                .lease(LEASE, &self.status.holder, lease.ttl)
                .await
            {
                Ok(true) => {
                    if lease.renewed.is_none() {
                        tracing::info!(holder = %self.status.holder, "rollouts: this server schedules now");
                        svc.take_over();
                    }
                    lease.renewed = Some(now);
                }
                Ok(false) => {
                    if lease.renewed.take().is_some() {
                        tracing::warn!("rollouts: another server took the scheduler lease");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rollouts: cannot renew the scheduler lease");
                    if lease
                        .renewed
                        .is_some_and(|t| now.duration_since(t) >= lease.ttl / 2)
                    {
                        lease.renewed = None;
                        lease.next_try = now;
                    }
                }
            }
        }
        lease.renewed.is_some()
    }

    /// One pass: every active rollout, then remediation, under the write
    /// lock, at the clock's now.
    async fn pass(&mut self, svc: &Rollouts) -> Result<(), RolloutError> {
        let now = self.clock.now();
        let _w = svc.writing.lock().await;
        svc.step(now).await?;
        self.remediation.pass(svc, now).await
    }
}

impl Rollouts {
    /// One pass over every active rollout, at `now` (the caller holds the
    /// write lock).
    pub(super) async fn step(&self, now: Micros) -> Result<(), RolloutError> {
        // Every decision of this pass is made on the fold as of now (and
        // this pass's own records): a record another server adds meanwhile
        // refuses the pass's next write, and the next pass starts over.
        let active: Vec<String> = {
            let state = self.state();
            self.decide_on(&state);
            state
                .runs
                .iter()
                .filter(|r| r.state.is_active())
                .map(|r| r.id().to_owned())
                .collect()
        };
        let dirty: HashSet<String> =
            std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|p| p.into_inner()));
        for id in active {
            if let Err(e) = self.step_rollout(&id, &dirty, now).await {
                // Look at them again in the next pass.
                self.dirty
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(dirty);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Taking over scheduling: every twin in flight is looked at again (its
    /// device may have answered while another server scheduled).
    pub(super) fn take_over(&self) {
        let in_flight = self.state().runs.all_in_flight();
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(in_flight);
    }

    async fn step_rollout(
        &self,
        id: &str,
        dirty: &HashSet<String>,
        now: Micros,
    ) -> Result<(), RolloutError> {
        let Some(state) = self.state().runs.get(id).map(|r| r.state) else {
            return Ok(());
        };
        match state {
            RolloutState::Pending => self.change(id, RolloutState::Running, 0, None, None).await,
            RolloutState::Running | RolloutState::Paused => {
                self.settle(id, dirty, now).await?;
                if state == RolloutState::Running {
                    self.advance(id, now).await?;
                }
                Ok(())
            }
            RolloutState::RollingBack => self.roll_back(id).await,
            _ => Ok(()),
        }
    }

    async fn change(
        &self,
        id: &str,
        state: RolloutState,
        stage: usize,
        baking_since: Option<Micros>,
        reason: Option<String>,
    ) -> Result<(), RolloutError> {
        self.record(
            vec![Change::Record(Record::RolloutChanged {
                rollout: id.to_owned(),
                state,
                stage,
                baking_since,
                reason,
            })],
            SCHEDULER,
        )
        .await?;
        Ok(())
    }

    /// Settles the twins in flight whose devices answered, or whose time
    /// is up (a retry sends them back to PENDING).
    async fn settle(
        &self,
        id: &str,
        dirty: &HashSet<String>,
        now: Micros,
    ) -> Result<(), RolloutError> {
        let (config, candidates, timeout, retries) = {
            let state = self.state();
            let Some(r) = state.runs.get(id) else {
                return Ok(());
            };
            let plan = &r.start.spec.plan;
            let timeout = (plan.twin_timeout_seconds * 1e6) as Micros;
            let candidates: Vec<(String, Micros, u32)> = r
                .start
                .twins
                .iter()
                .zip(&r.runs)
                .filter(|(t, run)| {
                    run.state == TwinState::Applied
                        && (dirty.contains(*t) || now - run.applied_at >= timeout)
                })
                .map(|(t, run)| (t.clone(), run.applied_at, run.attempts))
                .collect();
            (
                r.start.spec.configuration.clone(),
                candidates,
                timeout,
                plan.retries,
            )
        };
        if candidates.is_empty() {
            return Ok(());
        }
        let mut outcomes = Vec::new();
        for chunk in candidates.chunks(CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|(t, _, _)| t.clone()).collect();
            let twins: HashMap<String, Arc<Twin>> = self
                .store()
                .twins_by_ids(&ids)
                .await?
                .into_iter()
                .map(|t| (t.id.to_string(), t))
                .collect();
            for (t, applied_at, attempts) in chunk {
                let outcome = match twins.get(t) {
                    None => Some(Outcome {
                        twin: t.clone(),
                        state: TwinState::Failed,
                        failure: Some(FailureKind::Error),
                        code: None,
                        reason: Some("the twin was deleted".into()),
                    }),
                    Some(twin) => evaluate(twin, &config, id),
                };
                let outcome = match outcome {
                    Some(o) => Some(o),
                    None if now - applied_at >= timeout => Some(Outcome {
                        twin: t.clone(),
                        state: TwinState::TimedOut,
                        failure: Some(FailureKind::TimedOut),
                        code: None,
                        reason: Some(format!(
                            "no acknowledgement within {} s",
                            timeout as f64 / 1e6
                        )),
                    }),
                    None => None,
                };
                if let Some(mut o) = outcome {
                    let retry = o.state != TwinState::Succeeded
                        && o.failure != Some(FailureKind::Error)
                        && *attempts <= retries;
                    if retry {
                        o.reason = o
                            .reason
                            .map(|why| format!("attempt {attempts}: {why}; retrying"));
                        o.state = TwinState::Pending;
                    }
                    outcomes.push(o);
                }
            }
        }
        self.record_outcomes(id, outcomes).await
    }

    async fn record_outcomes(&self, id: &str, outcomes: Vec<Outcome>) -> Result<(), RolloutError> {
        let mut changes = Vec::new();
        let mut outcomes = outcomes.into_iter().peekable();
        while outcomes.peek().is_some() {
            changes.push(Change::Record(Record::RolloutTwinsSettled {
                rollout: id.to_owned(),
                outcomes: outcomes.by_ref().take(SETTLE_CHUNK).collect(),
            }));
        }
        if !changes.is_empty() {
            self.record(changes, SCHEDULER).await?;
        }
        Ok(())
    }

    /// Abort criteria, the stage gate, then the next twins.
    async fn advance(&self, id: &str, now: Micros) -> Result<(), RolloutError> {
        let (abort, stage, stages, result, threshold, bake, baking) = {
            let state = self.state();
            let Some(r) = state.runs.get(id) else {
                return Ok(());
            };
            let s = r.start.spec.plan.stage(r.stage);
            (
                r.abort_reason(),
                r.stage,
                r.start.stage_ends.len(),
                r.stage_result(r.stage),
                s.success_threshold,
                (s.bake_seconds * 1e6) as Micros,
                r.baking_since,
            )
        };
        if let Some(reason) = abort {
            return self
                .change(id, RolloutState::RollingBack, stage, None, Some(reason))
                .await;
        }
        match result {
            None => self.apply_next(id, now).await,
            Some(pct) if pct + 1e-9 < threshold => {
                let reason = format!(
                    "stage {}: {pct:.1}% of its twins succeeded, {threshold}% needed",
                    stage + 1
                );
                self.change(id, RolloutState::RollingBack, stage, None, Some(reason))
                    .await
            }
            Some(_) => {
                if bake > 0 && baking.is_none() {
                    return self
                        .change(id, RolloutState::Running, stage, Some(now), None)
                        .await;
                }
                if baking.is_some_and(|since| now - since < bake) {
                    return Ok(());
                }
                if stage + 1 < stages {
                    self.change(id, RolloutState::Running, stage + 1, None, None)
                        .await?;
                    self.apply_next(id, now).await
                } else {
                    self.change(id, RolloutState::Succeeded, stage, None, None)
                        .await
                }
            }
        }
    }

    /// Applies the current stage's next pending twins, as far as the rate
    /// and the per-parent limit allow.
    async fn apply_next(&self, id: &str, now: Micros) -> Result<(), RolloutError> {
        let (spec, version, priority, picked) = {
            let state = self.state();
            let Some(r) = state.runs.get(id) else {
                return Ok(());
            };
            let Some(version) = state
                .configurations
                .get(&r.start.spec.configuration)
                .and_then(|c| c.version(r.start.spec.version))
                .cloned()
            else {
                return Ok(());
            };
            (
                r.start.spec.clone(),
                version,
                r.start.priority,
                pick(r, now),
            )
        };
        // A bounded share per pass, so that requests (pause, ...) wait
        // little for the write lock; the next pass follows at once.
        if picked.len() > PER_STEP {
            self.wake.notify_one();
        }
        for chunk in picked[..picked.len().min(PER_STEP)].chunks(CHUNK) {
            let (ops, mut failed) = self.assignments(&spec, &version, priority, chunk).await?;
            let mut ops = ops;
            // A twin the store refuses (deleted meanwhile, ...) fails alone.
            loop {
                if ops.is_empty() {
                    break;
                }
                match self.commit(Batch { ops: ops.clone() }, SCHEDULER).await {
                    Ok(_) => break,
                    Err(RolloutError::Store(StoreError::Batch(b))) => {
                        let op = ops.remove(b.index);
                        if let Op::AssignConfiguration { id: twin, .. } = op {
                            failed.push(Outcome {
                                twin,
                                state: TwinState::Failed,
                                failure: Some(FailureKind::Error),
                                code: None,
                                reason: Some(b.error.to_string()),
                            });
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            self.record_outcomes(id, failed).await?;
        }
        Ok(())
    }

    /// The assignment of each twin (parameters filled), and the twins whose
    /// parameters cannot be filled.
    async fn assignments(
        &self,
        spec: &RolloutSpec,
        version: &Version,
        priority: i64,
        picked: &[(String, u32)],
    ) -> Result<(Vec<Op>, Vec<Outcome>), RolloutError> {
        let ids: Vec<String> = picked.iter().map(|(t, _)| t.clone()).collect();
        let needs_twin = version.parameters.values().any(|p| p.source.is_some());
        let twins: HashMap<String, Arc<Twin>> = if needs_twin {
            self.store()
                .twins_by_ids(&ids)
                .await?
                .into_iter()
                .map(|t| (t.id.to_string(), t))
                .collect()
        } else {
            HashMap::new()
        };
        // Twins at the other end of the relationships parameters read.
        let mut related: HashMap<(String, String, bool), Arc<Twin>> = HashMap::new();
        for p in version.parameters.values() {
            if let Some(ParamSource::Related {
                relationship,
                incoming,
                ..
            }) = &p.source
            {
                let direction = if *incoming {
                    Direction::In
                } else {
                    Direction::Out
                };
                for (rel, end) in self
                    .store()
                    .relationships_with_ends(&ids, direction, Some(relationship))
                    .await?
                {
                    let from = if *incoming { rel.target } else { rel.source };
                    if let Some(end) = end {
                        related
                            .entry((from, relationship.clone(), *incoming))
                            .or_insert(end);
                    }
                }
            }
        }
        let mut ops = Vec::new();
        let mut failed = Vec::new();
        for (twin, attempts) in picked {
            let filled = substitute(&version.effective, &mut |name| {
                let p = version.parameters.get(name).ok_or_else(|| {
                    RolloutError::invalid_rollout("parameters", format!("unknown parameter {name}"))
                })?;
                let from_twin = p.source.as_ref().and_then(|src| {
                    let t = twins.get(twin)?;
                    match src {
                        ParamSource::Property { path, side } => value_at(t, path, *side),
                        ParamSource::Related {
                            relationship,
                            incoming,
                            path,
                        } => {
                            let end =
                                related.get(&(twin.clone(), relationship.clone(), *incoming))?;
                            match path {
                                None => Some(Value::String(end.id.to_string())),
                                Some(path) => value_at(end, path, Side::Reported),
                            }
                        }
                    }
                });
                match from_twin
                    .or_else(|| spec.parameters.get(name).cloned())
                    .or_else(|| p.default.clone())
                {
                    Some(v) => Ok(Some(v)),
                    None => Err(RolloutError::invalid_rollout(
                        format!("parameters.{name}"),
                        format!("parameter {name} has no value for twin {twin}"),
                    )),
                }
            });
            match filled {
                Ok(values) => ops.push(Op::AssignConfiguration {
                    id: twin.clone(),
                    configuration: spec.configuration.clone(),
                    assignment: Assignment {
                        version: spec.version,
                        priority,
                        seq: 0,
                        rollout: Some(spec.id.clone()),
                        values,
                    },
                    expected_version: None,
                    force: *attempts > 0,
                }),
                Err(e) => failed.push(Outcome {
                    twin: twin.clone(),
                    state: TwinState::Failed,
                    failure: Some(FailureKind::Error),
                    code: None,
                    reason: Some(e.to_string()),
                }),
            }
        }
        Ok((ops, failed))
    }

    /// Restores what the rollout replaced, twin by twin, then ends it.
    async fn roll_back(&self, id: &str) -> Result<(), RolloutError> {
        let (config, todo, stage) = {
            let state = self.state();
            let Some(r) = state.runs.get(id) else {
                return Ok(());
            };
            let todo: Vec<(String, crate::twin::event::Previous)> = r
                .start
                .twins
                .iter()
                .zip(&r.runs)
                .filter(|(_, run)| run.state != TwinState::RolledBack)
                .filter_map(|(t, run)| Some((t.clone(), (**run.previous.as_ref()?).clone())))
                .collect();
            (r.start.spec.configuration.clone(), todo, r.stage)
        };
        for chunk in todo.chunks(CHUNK) {
            let mut ops: Vec<Op> = chunk
                .iter()
                .map(|(t, previous)| Op::RestoreConfiguration {
                    id: t.clone(),
                    configuration: config.clone(),
                    rollout: Some(id.to_owned()),
                    previous: previous.clone(),
                })
                .collect();
            let mut gone = Vec::new();
            loop {
                if ops.is_empty() {
                    break;
                }
                match self.commit(Batch { ops: ops.clone() }, SCHEDULER).await {
                    Ok(_) => break,
                    Err(RolloutError::Store(StoreError::Batch(b))) => {
                        if let Op::RestoreConfiguration { id: twin, .. } = ops.remove(b.index) {
                            gone.push(Outcome {
                                twin,
                                state: TwinState::RolledBack,
                                failure: None,
                                code: None,
                                reason: Some(format!("nothing to restore: {}", b.error)),
                            });
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            self.record_outcomes(id, gone).await?;
        }
        self.change(id, RolloutState::RolledBack, stage, None, None)
            .await
    }
}

/// The current stage's pending twins that may be applied now (with their
/// attempts so far), within the rate and the per-parent limit.
fn pick(r: &Rollout, now: Micros) -> Vec<(String, u32)> {
    let plan = &r.start.spec.plan;
    let range = r.stage_range(r.stage);
    let mut budget = usize::MAX;
    if let Some(rate) = &plan.rate {
        let grown = match (rate.growth_factor, rate.grow_every) {
            (Some(f), Some(every)) => f.powi((r.counts.succeeded / every).min(64) as i32),
            _ => 1.0,
        };
        let per_minute = rate.per_minute * grown;
        // Paced, not in bursts: at most `per_minute / 60 × window` twins in
        // the last window of a second (longer for slow rates: one twin).
        let window_secs = (60.0 / per_minute).max(1.0);
        let allowed = (per_minute * window_secs / 60.0).floor().max(1.0) as usize;
        let since = now - (window_secs * 1e6) as Micros;
        let recent = r
            .runs
            .iter()
            .filter(|run| run.attempts > 0 && run.applied_at > since)
            .count();
        budget = allowed.saturating_sub(recent);
    }
    let mut in_flight: HashMap<&str, usize> = HashMap::new();
    let per_parent = plan.max_in_flight_per_parent;
    if per_parent.is_some() {
        for (i, run) in r.runs.iter().enumerate() {
            if run.state == TwinState::Applied
                && let Some(Some(p)) = r.start.parents.get(i)
            {
                *in_flight.entry(p.as_str()).or_default() += 1;
            }
        }
    }
    let mut out = Vec::new();
    for i in range {
        if out.len() >= budget {
            break;
        }
        let run = &r.runs[i];
        if run.state != TwinState::Pending {
            continue;
        }
        if let (Some(k), Some(Some(p))) = (per_parent, r.start.parents.get(i)) {
            let n = in_flight.entry(p.as_str()).or_default();
            if *n >= k {
                continue;
            }
            *n += 1;
        }
        out.push((r.start.twins[i].clone(), run.attempts));
    }
    out
}

/// The value at `path` (`property`, `component.property`, then fields) of
/// a twin's reported (or desired) state.
fn value_at(t: &Twin, path: &str, side: Side) -> Option<Value> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    let (component, name, fields) = match rest.split_first() {
        Some((second, fields)) if t.components.contains_key(first) => {
            (Some(first), *second, fields.to_vec())
        }
        _ => (None, first, rest),
    };
    let p = t.component(component)?.props.get(name)?;
    let mut v = match side {
        Side::Reported => &p.reported.as_ref()?.value,
        Side::Desired => &p.desired.as_ref()?.value,
    };
    for f in fields {
        v = v.get(f)?;
    }
    Some(v.clone())
}
