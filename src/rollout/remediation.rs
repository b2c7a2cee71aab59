//! Remediation: the drifted twins of configurations with remediation on get
//! their configuration's values again (a new desired version for their
//! devices), within each configuration's rate, each twin at most once per
//! cooldown, never a twin an active rollout holds. Part of each scheduler
//! pass; its memory of what it did lately is its own (not recorded).

use std::collections::{HashMap, VecDeque};

use super::RolloutError;
use super::service::Rollouts;
use crate::store::StoreError;
use crate::twin::{Batch, Micros, Op};

/// Who remediation's writes name.
const REMEDIATION: &str = "remediation";

/// Remediation rates count over this window (µs).
const RATE_WINDOW: Micros = 60_000_000;

/// A remediated twin is left to its device this long before the next try (µs).
const REMEDIATION_COOLDOWN: Micros = 60_000_000;

/// When each twin was last remediated, and each configuration's recent
/// remediations (for its rate).
#[derive(Debug, Default)]
pub(super) struct Remediation {
    last: HashMap<String, Micros>,
    recent: HashMap<String, VecDeque<Micros>>,
}

impl Remediation {
    /// Re-applies their configuration's values to drifted twins (of
    /// configurations with remediation on), within each one's rate, not
    /// twice within a cooldown, never to a twin an active rollout holds.
    pub(super) async fn pass(&mut self, svc: &Rollouts, now: Micros) -> Result<(), RolloutError> {
        let wanted: Vec<(String, f64, Vec<String>)> = {
            let state = svc.state();
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
                let Remediation { last, recent } = self;
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
            let mut ops: Vec<Op> = svc
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
                match svc.commit(Batch { ops: ops.clone() }, REMEDIATION).await {
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
}
