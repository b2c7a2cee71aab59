//! The public commands of rollouts: start one (its twins resolved in the
//! caller's view, ordered, checked against every other active rollout),
//! pause, resume, cancel, roll back. Commands only record; the scheduler
//! ([`super::scheduler`]) acts on the records.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::RolloutError;
use super::config::{Version, substitute};
use super::plan::RolloutSpec;
use super::run::{RolloutStart, RolloutState};
use super::service::Rollouts;
use crate::records::Record;
use crate::store::TwinQuery;
use crate::twin::filter::Filter;
use crate::twin::query::Direction;
use crate::twin::{Change, Twin};

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
            let by_id: HashMap<&str, &Twin> = found.iter().map(|t| (&*t.id, &**t)).collect();
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
