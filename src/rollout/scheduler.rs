//! Starting rollouts and driving them: the scheduler is one task (per
//! server) that, on every wake-up (a record folded, a device answering a
//! twin in flight, or a tick), settles the twins whose devices answered or
//! timed out, checks the abort criteria and the stage gate, and applies the
//! next twins within the plan's limits, all under the service's write lock
//! and always from the folded records, so that a restart resumes exactly
//! where the records stop.

use crate::records::Record;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::RolloutError;
use super::config::{ParamSource, Version, substitute};
use super::plan::{FailureKind, RolloutSpec};
use super::run::{Outcome, Rollout, RolloutStart, RolloutState, TwinState, evaluate};
use super::service::Rollouts;
use crate::store::{StoreError, TwinQuery};
use crate::twin::filter::Filter;
use crate::twin::query::Direction;
use crate::twin::state::Assignment;
use crate::twin::{Batch, Change, Micros, Op, Side, Twin, now_micros};

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

/// Who remediation's writes name.
const REMEDIATION: &str = "remediation";

/// Remediation rates count over this window (µs).
const RATE_WINDOW: Micros = 60_000_000;

/// A remediated twin is left to its device this long before the next try (µs).
const REMEDIATION_COOLDOWN: Micros = 60_000_000;

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
pub(super) async fn schedule(r: Weak<Rollouts>, wake: Arc<tokio::sync::Notify>) {
    // When the lease was last taken or renewed, while held.
    let mut renewed: Option<Instant> = None;
    let mut next_try = Instant::now();
    loop {
        {
            let Some(svc) = r.upgrade() else { return };
            let ttl = svc.options.lease_ttl;
            let now = Instant::now();
            if now >= next_try {
                next_try = now + ttl / 3;
                match svc.store().lease(LEASE, &svc.holder, ttl).await {
                    Ok(true) => {
                        if renewed.is_none() {
                            tracing::info!(holder = %svc.holder, "rollouts: this server schedules now");
                            svc.take_over();
                        }
                        renewed = Some(now);
                    }
                    Ok(false) => {
                        if renewed.take().is_some() {
                            tracing::warn!("rollouts: another server took the scheduler lease");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rollouts: cannot renew the scheduler lease");
                        if renewed.is_some_and(|t| now.duration_since(t) >= ttl / 2) {
                            renewed = None;
                            next_try = now;
                        }
                    }
                }
            }
            svc.scheduling
                .store(renewed.is_some(), std::sync::atomic::Ordering::Release);
            if renewed.is_some() {
                match svc.step().await {
                    Ok(()) => {}
                    Err(RolloutError::Overtaken { .. }) => {
                        tracing::debug!(
                            "rollout scheduler: another server recorded first; stepping again"
                        );
                        svc.wake.notify_one();
                    }
                    Err(e) => tracing::warn!(error = %e, "rollout scheduler step failed; retrying"),
                }
            }
        }
        // A wake-up while stepping left a permit: no change is missed.
        let _ = tokio::time::timeout(TICK, wake.notified()).await;
    }
}

impl Rollouts {
    /// Starts a rollout: resolves and orders its twins, checks that no
    /// active rollout holds any of them, records the start. Its id.
    pub async fn start_rollout(
        &self,
        spec: RolloutSpec,
        actor: &str,
    ) -> Result<String, RolloutError> {
        let store = self.store().clone();
        self.start_rollout_in(spec, actor, &*store).await
    }

    /// [`start_rollout`](Rollouts::start_rollout) with the target resolved
    /// in `view` (a caller's view of the store: twins it may not see are
    /// not targeted, and naming one is naming a twin that does not exist).
    pub async fn start_rollout_in(
        &self,
        mut spec: RolloutSpec,
        actor: &str,
        view: &dyn crate::store::GraphStore,
    ) -> Result<String, RolloutError> {
        spec.plan.check()?;
        if spec.id.is_empty() {
            spec.id = format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        }
        let (target, version, priority) = {
            let state = self.state();
            if state.runs.get(&spec.id).is_some() {
                return Err(RolloutError::invalid_rollout(
                    "id",
                    format!("rollout {} already exists", spec.id),
                ));
            }
            let c = state
                .configurations
                .get(&spec.configuration)
                .ok_or_else(|| RolloutError::ConfigurationNotFound(spec.configuration.clone()))?;
            let v = c.version(spec.version).ok_or_else(|| {
                RolloutError::invalid_rollout(
                    "version",
                    format!("{} has no version {}", spec.configuration, spec.version),
                )
            })?;
            (c.spec.target.clone(), v.clone(), c.spec.priority)
        };
        check_parameters(&self.store().models(), &target, &version, &spec.parameters)?;
        let twins = self.resolve(&spec, &target, view).await?;
        let hierarchy =
            spec.plan.order_by_hierarchy || spec.plan.max_in_flight_per_parent.is_some();
        let (twins, parents) = if hierarchy {
            self.order_by_hierarchy(twins).await?
        } else {
            (twins, Vec::new())
        };
        let stage_ends = spec.plan.stage_ends(twins.len());
        let id = spec.id.clone();
        let start = Arc::new(RolloutStart {
            spec,
            twins,
            parents,
            stage_ends,
            priority,
        });
        self.write(actor, |state| {
            if state.runs.get(&id).is_some() {
                return Err(RolloutError::invalid_rollout(
                    "id",
                    format!("rollout {id} already exists"),
                ));
            }
            if let Some((twin, holder)) = start
                .twins
                .iter()
                .find_map(|t| state.runs.holder(t).map(|h| (t.clone(), h.to_owned())))
            {
                return Err(RolloutError::Conflict {
                    twin,
                    rollout: holder,
                });
            }
            Ok(vec![Change::Record(Record::RolloutStarted {
                rollout: start.clone(),
            })])
        })
        .await?;
        self.wake.notify_one();
        Ok(id)
    }

    /// Pauses a pending or running rollout: nothing more is applied (twins
    /// in flight still settle).
    pub async fn pause_rollout(&self, id: &str, actor: &str) -> Result<(), RolloutError> {
        self.transition(id, actor, "pause", RolloutState::Paused, |s| {
            matches!(s, RolloutState::Pending | RolloutState::Running)
        })
        .await
    }

    pub async fn resume_rollout(&self, id: &str, actor: &str) -> Result<(), RolloutError> {
        self.transition(id, actor, "resume", RolloutState::Running, |s| {
            s == RolloutState::Paused
        })
        .await
    }

    /// Stops a rollout for good, keeping what was applied.
    pub async fn cancel_rollout(&self, id: &str, actor: &str) -> Result<(), RolloutError> {
        self.transition(id, actor, "cancel", RolloutState::Canceled, |s| {
            matches!(
                s,
                RolloutState::Pending | RolloutState::Running | RolloutState::Paused
            )
        })
        .await
    }

    /// Restores, on every twin the rollout touched, what it replaced.
    pub async fn rollback_rollout(&self, id: &str, actor: &str) -> Result<(), RolloutError> {
        self.transition(id, actor, "roll back", RolloutState::RollingBack, |s| {
            !matches!(s, RolloutState::RollingBack | RolloutState::RolledBack)
        })
        .await
    }

    async fn transition(
        &self,
        id: &str,
        actor: &str,
        action: &'static str,
        to: RolloutState,
        allowed: impl Fn(RolloutState) -> bool,
    ) -> Result<(), RolloutError> {
        self.write(actor, |state| {
            let r = state
                .runs
                .get(id)
                .ok_or_else(|| RolloutError::RolloutNotFound(id.to_owned()))?;
            if !allowed(r.state) {
                return Err(RolloutError::State {
                    rollout: id.to_owned(),
                    state: format!("{:?}", r.state).to_uppercase(),
                    action,
                });
            }
            // Taking the twins back for a rollback after the rollout ended.
            if to.is_active()
                && !r.state.is_active()
                && let Some((twin, holder)) = r.start.twins.iter().find_map(|t| {
                    state
                        .runs
                        .holder(t)
                        .filter(|h| *h != id)
                        .map(|h| (t.clone(), h.to_owned()))
                })
            {
                return Err(RolloutError::Conflict {
                    twin,
                    rollout: holder,
                });
            }
            Ok(vec![Change::Record(Record::RolloutChanged {
                rollout: id.to_owned(),
                state: to,
                stage: r.stage,
                baking_since: r.baking_since,
                reason: Some(format!("{action} requested by {actor}")),
            })])
        })
        .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// One pass over every active rollout.
    pub(super) async fn step(&self) -> Result<(), RolloutError> {
        let _w = self.writing.lock().await;
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
            if let Err(e) = self.step_rollout(&id, &dirty).await {
                // Look at them again in the next pass.
                self.dirty
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(dirty);
                return Err(e);
            }
        }
        self.remediate().await
    }

    /// Taking over scheduling: every twin in flight is looked at again (its
    /// device may have answered while another server scheduled).
    fn take_over(&self) {
        let in_flight = self.state().runs.all_in_flight();
        self.dirty
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(in_flight);
    }

    /// Re-applies their configuration's values to drifted twins (of
    /// configurations with remediation on), within each one's rate, not
    /// twice within a cooldown, never to a twin an active rollout holds.
    async fn remediate(&self) -> Result<(), RolloutError> {
        let now = now_micros();
        let wanted: Vec<(String, f64, Vec<String>)> = {
            let state = self.state();
            let on: Vec<(String, f64)> = state
                .configurations
                .iter()
                .filter_map(|c| Some((c.spec.name.clone(), c.remediation_per_minute?)))
                .collect();
            if on.is_empty() {
                return Ok(());
            }
            let drifts = state.drifts.all();
            on.into_iter()
                .map(|(name, per_minute)| {
                    let mut twins: Vec<String> = drifts
                        .iter()
                        .filter(|d| d.configuration == name && state.runs.holder(&d.twin).is_none())
                        .map(|d| d.twin.clone())
                        .collect();
                    twins.dedup();
                    (name, per_minute, twins)
                })
                .collect()
        };
        for (name, per_minute, twins) in wanted {
            let picked: Vec<String> = {
                let mut memory = self.remediated.lock().unwrap_or_else(|p| p.into_inner());
                let super::service::Remediated { last, recent } = &mut *memory;
                let window = recent.entry(name.clone()).or_default();
                while window.front().is_some_and(|&t| now - t > RATE_WINDOW) {
                    window.pop_front();
                }
                let budget = (per_minute.floor() as usize).saturating_sub(window.len());
                let picked: Vec<String> = twins
                    .into_iter()
                    .filter(|t| {
                        last.get(t)
                            .is_none_or(|&at| now - at > REMEDIATION_COOLDOWN)
                    })
                    .take(budget)
                    .collect();
                for t in &picked {
                    last.insert(t.clone(), now);
                    window.push_back(now);
                }
                picked
            };
            if picked.is_empty() {
                continue;
            }
            let mut ops: Vec<Op> = self
                .store()
                .twins_by_ids(&picked)
                .await?
                .into_iter()
                .filter_map(|t| {
                    let a = t.configurations.get(&name)?.clone();
                    Some(Op::AssignConfiguration {
                        id: t.id.to_string(),
                        configuration: name.clone(),
                        assignment: a,
                        expected_version: None,
                        force: true,
                    })
                })
                .collect();
            while !ops.is_empty() {
                match self.commit(Batch { ops: ops.clone() }, REMEDIATION).await {
                    Ok(_) => break,
                    Err(RolloutError::Store(StoreError::Batch(b))) => {
                        ops.remove(b.index);
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn step_rollout(&self, id: &str, dirty: &HashSet<String>) -> Result<(), RolloutError> {
        let Some(state) = self.state().runs.get(id).map(|r| r.state) else {
            return Ok(());
        };
        match state {
            RolloutState::Pending => self.change(id, RolloutState::Running, 0, None, None).await,
            RolloutState::Running | RolloutState::Paused => {
                self.settle(id, dirty).await?;
                if state == RolloutState::Running {
                    self.advance(id).await?;
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
    async fn settle(&self, id: &str, dirty: &HashSet<String>) -> Result<(), RolloutError> {
        let now = now_micros();
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
            let twins: HashMap<String, Twin> = self
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
    async fn advance(&self, id: &str) -> Result<(), RolloutError> {
        let now = now_micros();
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
        let twins: HashMap<String, Twin> = if needs_twin {
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
        let mut related: HashMap<(String, String, bool), Twin> = HashMap::new();
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

    /// The twins the target names, by id.
    async fn resolve(
        &self,
        spec: &RolloutSpec,
        target: &str,
        view: &dyn crate::store::GraphStore,
    ) -> Result<Vec<String>, RolloutError> {
        let t = &spec.target;
        let models = view.models();
        let model = t.model.clone().unwrap_or_else(|| target.to_owned());
        match models.interface(&model) {
            Some(i) if i.is_a(target) => {}
            Some(_) => {
                return Err(RolloutError::invalid_rollout(
                    "target.model",
                    format!("{model} does not extend the configuration's target {target}"),
                ));
            }
            None => {
                return Err(RolloutError::invalid_rollout(
                    "target.model",
                    format!("no Interface {model}"),
                ));
            }
        }
        let filter = match &t.filter {
            Some(f) => {
                Some(Arc::new(Filter::parse(f).map_err(|m| {
                    RolloutError::invalid_rollout("target.where", m)
                })?))
            }
            None => None,
        };
        let mut ids: Vec<String> = if t.ids.is_empty() {
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let page = view
                    .twin_ids(&TwinQuery {
                        model: Some(model.clone()),
                        subtypes: true,
                        filter: filter.clone(),
                        after: after.clone(),
                        limit: 10_000,
                        ..TwinQuery::default()
                    })
                    .await?;
                after = page.items.last().cloned();
                out.extend(page.items);
                if !page.has_more {
                    break out;
                }
            }
        } else {
            let mut wanted = t.ids.clone();
            wanted.sort();
            wanted.dedup();
            let found = view.twins_by_ids(&wanted).await?;
            let by_id: HashMap<&str, &Twin> = found.iter().map(|t| (&*t.id, t)).collect();
            let mut out = Vec::new();
            for id in &wanted {
                let twin = by_id.get(id.as_str()).ok_or_else(|| {
                    RolloutError::invalid_rollout("target.ids", format!("twin {id} does not exist"))
                })?;
                let is_a = models
                    .interface(&twin.model)
                    .is_some_and(|i| i.is_a(&model));
                if t.model.is_none() && !is_a {
                    return Err(RolloutError::invalid_rollout(
                        "target.ids",
                        format!("twin {id} is a {}, not a {target}", twin.model),
                    ));
                }
                if is_a && filter.as_ref().is_none_or(|f| f.matches(twin)) {
                    out.push(id.clone());
                }
            }
            out
        };
        if let Some(root) = &t.under {
            let under: HashSet<String> = view
                .descendants(root, crate::twin::query::DEFAULT_MAX_DEPTH)
                .await
                .map_err(|e| RolloutError::invalid_rollout("target.under", e.to_string()))?
                .into_iter()
                .map(|h| h.twin)
                .collect();
            ids.retain(|id| under.contains(id));
        }
        if ids.is_empty() {
            return Err(RolloutError::invalid_rollout(
                "target",
                "no twin matches the target",
            ));
        }
        ids.sort();
        Ok(ids)
    }

    /// Orders twins by their containment path (root first), so that the
    /// twins of one site / line are applied together; each twin's parent.
    async fn order_by_hierarchy(
        &self,
        twins: Vec<String>,
    ) -> Result<(Vec<String>, Vec<Option<String>>), RolloutError> {
        let containment = self.store().containment();
        let mut parent_of: HashMap<String, String> = HashMap::new();
        let mut frontier: Vec<String> = twins.clone();
        let mut seen: HashSet<String> = twins.iter().cloned().collect();
        while !frontier.is_empty() {
            let rels = self
                .store()
                .relationships_of(&frontier, Direction::In, Some(&containment))
                .await?;
            frontier.clear();
            for r in rels {
                parent_of
                    .entry(r.target.clone())
                    .or_insert(r.source.clone());
                if seen.insert(r.source.clone()) {
                    frontier.push(r.source);
                }
            }
        }
        let path = |t: &str| {
            let mut chain = Vec::new();
            let mut at = t;
            while let Some(p) = parent_of.get(at) {
                if chain.len() > 64 {
                    break;
                }
                chain.push(p.clone());
                at = p;
            }
            chain.reverse();
            chain
        };
        let mut keyed: Vec<(Vec<String>, String)> =
            twins.into_iter().map(|t| (path(&t), t)).collect();
        keyed.sort();
        let parents = keyed
            .iter()
            .map(|(_, t)| parent_of.get(t).cloned())
            .collect();
        Ok((keyed.into_iter().map(|(_, t)| t).collect(), parents))
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

/// Checks the rollout's parameter values: each names a declared parameter,
/// and with them (and the defaults) filled the values are valid; a
/// parameter without any value must come from the twins.
fn check_parameters(
    models: &crate::dtdl::ModelSet,
    target: &str,
    version: &Version,
    given: &Map<String, Value>,
) -> Result<(), RolloutError> {
    for name in given.keys() {
        if !version.parameters.contains_key(name) {
            return Err(RolloutError::invalid_rollout(
                format!("parameters.{name}"),
                format!(
                    "version {} declares no parameter {name}",
                    version.spec.number
                ),
            ));
        }
    }
    for (name, p) in &version.parameters {
        if p.source.is_none() && p.default.is_none() && !given.contains_key(name) {
            return Err(RolloutError::invalid_rollout(
                format!("parameters.{name}"),
                format!("parameter {name} needs a value"),
            ));
        }
    }
    let filled = substitute(&version.effective, &mut |name| {
        Ok(given
            .get(name)
            .cloned()
            .or_else(|| version.parameters.get(name).and_then(|p| p.default.clone())))
    })?;
    super::config::check_desired(models, target, &filled).map_err(|e| match e {
        RolloutError::Invalid { path, message } => RolloutError::invalid_rollout(path, message),
        other => other,
    })
}
