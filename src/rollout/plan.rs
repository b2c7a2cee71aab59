//! What a rollout is asked to do: which twins (target), in which stages,
//! how fast, when to give up (abort criteria), and per-twin timeout and
//! retries. Recorded whole in the `rolloutStarted` event.

use super::RolloutError;
use crate::records::default_timeout;
pub use crate::records::{AbortCriterion, FailureKind, Plan, Rate, RolloutSpec, Stage, Target};

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            stages: Vec::new(),
            rate: None,
            abort: Vec::new(),
            twin_timeout_seconds: default_timeout(),
            retries: 0,
            order_by_hierarchy: false,
            max_in_flight_per_parent: None,
        }
    }
}

impl Plan {
    /// Checks the numbers.
    pub fn check(&self) -> Result<(), RolloutError> {
        let bad = |path: String, m: &str| Err(RolloutError::invalid_rollout(path, m.to_owned()));
        for (i, s) in self.stages.iter().enumerate() {
            let path = format!("plan.stages[{i}]");
            match (s.count, s.percent) {
                (Some(0), _) => return bad(path, "a stage needs at least one twin"),
                (Some(_), Some(_)) => return bad(path, "give a count or a percent, not both"),
                (None, Some(p)) if !(p > 0.0 && p <= 100.0) => {
                    return bad(path, "percent must be in (0, 100]");
                }
                (None, None) if i + 1 < self.stages.len() => {
                    return bad(path, "only the last stage may omit its size");
                }
                _ => {}
            }
            if !(0.0..=100.0).contains(&s.success_threshold) {
                return bad(path, "successThreshold must be in [0, 100]");
            }
            if !(s.bake_seconds >= 0.0 && s.bake_seconds.is_finite()) {
                return bad(path, "bakeSeconds must not be negative");
            }
        }
        if let Some(r) = &self.rate {
            if !(r.per_minute > 0.0 && r.per_minute.is_finite()) {
                return bad("plan.rate.perMinute".into(), "must be positive");
            }
            if r.growth_factor
                .is_some_and(|f| !(f >= 1.0 && f.is_finite()))
            {
                return bad("plan.rate.growthFactor".into(), "must be at least 1");
            }
            if r.grow_every == Some(0) {
                return bad("plan.rate.growEvery".into(), "must be positive");
            }
        }
        for (i, a) in self.abort.iter().enumerate() {
            if !(0.0..=100.0).contains(&a.threshold_percent) {
                return bad(
                    format!("plan.abort[{i}].thresholdPercent"),
                    "must be in [0, 100]",
                );
            }
        }
        if !(self.twin_timeout_seconds > 0.0 && self.twin_timeout_seconds.is_finite()) {
            return bad("plan.twinTimeoutSeconds".into(), "must be positive");
        }
        if self.max_in_flight_per_parent == Some(0) {
            return bad("plan.maxInFlightPerParent".into(), "must be positive");
        }
        Ok(())
    }

    /// Where each stage ends (exclusive indices into the ordered twins);
    /// the last always ends at `total`.
    pub fn stage_ends(&self, total: usize) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut at = 0usize;
        let n = self.stages.len().max(1);
        for (i, s) in self.stages.iter().enumerate() {
            if i + 1 == n {
                break;
            }
            let size = match (s.count, s.percent) {
                (Some(c), _) => c,
                (None, Some(p)) => ((total as f64) * p / 100.0).ceil() as usize,
                (None, None) => total,
            };
            at = (at + size.max(1)).min(total);
            ends.push(at);
        }
        ends.push(total);
        ends
    }

    /// The stage's settings (the default stage when none are given).
    pub fn stage(&self, i: usize) -> Stage {
        self.stages.get(i).cloned().unwrap_or(Stage {
            count: None,
            percent: None,
            success_threshold: 100.0,
            bake_seconds: 0.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(count: Option<usize>, percent: Option<f64>) -> Stage {
        Stage {
            count,
            percent,
            success_threshold: 100.0,
            bake_seconds: 0.0,
        }
    }

    #[test]
    fn stages_split_the_twins_and_the_last_takes_the_rest() {
        let plan = Plan {
            stages: vec![
                stage(Some(10), None),
                stage(None, Some(30.0)),
                stage(None, None),
            ],
            ..Plan::default()
        };
        assert_eq!(plan.stage_ends(1000), vec![10, 310, 1000]);
        assert_eq!(plan.stage_ends(5), vec![5, 5, 5]);
        assert_eq!(Plan::default().stage_ends(7), vec![7]);
        assert!(plan.check().is_ok());
        let bad = Plan {
            stages: vec![stage(None, None), stage(Some(1), None)],
            ..Plan::default()
        };
        assert!(bad.check().is_err());
        let bad = Plan {
            stages: vec![stage(Some(0), None)],
            ..Plan::default()
        };
        assert!(bad.check().is_err());
    }
}
