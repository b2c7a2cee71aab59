//! Key performance indicators of assets over a time window, computed from
//! the event log: how long each asset's run-state field held running and
//! fault values (its reported history), so availability, utilization,
//! failures, MTBF and MTTR; and how many alarms were raised on it, by
//! severity. Per asset, and summed over a subtree (durations and counts add
//! up; the ratios are of the sums).

use std::collections::HashMap;

use serde_json::Value;

use crate::records::{Record, Severity};
use crate::twin::{Change, Event, Micros, Side};

/// Which values of which field are running and fault states.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStates {
    /// The reported field (`component.field` for a Component's).
    pub field: String,
    pub running: Vec<Value>,
    pub fault: Vec<Value>,
}

impl Default for RunStates {
    fn default() -> Self {
        RunStates {
            field: "runState".into(),
            running: vec![Value::from("running")],
            fault: vec![Value::from("fault")],
        }
    }
}

/// An asset's (or a subtree's) indicators over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kpis {
    /// Assets counted (those that reported the field by the window's end).
    pub assets: usize,
    /// Time within the window with a known run state (from the first
    /// report), in microseconds; the ratios are of it.
    pub observed: Micros,
    pub running: Micros,
    pub fault: Micros,
    /// Entries into a fault state within the window (from a reported
    /// state that was not one).
    pub failures: u64,
    /// Fault periods that ended within the window, and their total length.
    pub repairs: u64,
    pub repair_time: Micros,
    /// Alarms raised within the window, by severity (critical, high,
    /// medium, low).
    pub alarms: [u64; 4],
}

impl Kpis {
    /// Share of the observed time not in a fault state.
    pub fn availability(&self) -> Option<f64> {
        (self.observed > 0).then(|| (self.observed - self.fault) as f64 / self.observed as f64)
    }

    /// Share of the observed time in a running state.
    pub fn utilization(&self) -> Option<f64> {
        (self.observed > 0).then(|| self.running as f64 / self.observed as f64)
    }

    /// Mean time between failures: time not in fault per failure.
    pub fn mtbf(&self) -> Option<Micros> {
        (self.failures > 0).then(|| (self.observed - self.fault) / self.failures as i64)
    }

    /// Mean time to repair: the mean length of the fault periods that
    /// ended within the window.
    pub fn mttr(&self) -> Option<Micros> {
        (self.repairs > 0).then(|| self.repair_time / self.repairs as i64)
    }

    /// Adds another asset's (or subtree's).
    pub fn add(&mut self, o: &Kpis) {
        self.assets += o.assets;
        self.observed += o.observed;
        self.running += o.running;
        self.fault += o.fault;
        self.failures += o.failures;
        self.repairs += o.repairs;
        self.repair_time += o.repair_time;
        for (a, b) in self.alarms.iter_mut().zip(o.alarms) {
            *a += b;
        }
    }
}

/// Where a severity counts in [`Kpis::alarms`].
fn slot(s: Severity) -> usize {
    match s {
        Severity::Critical => 0,
        Severity::High => 1,
        Severity::Medium => 2,
        Severity::Low => 3,
    }
}

/// The run-state indicators of one twin over `from..to`, from its events
/// (oldest first; those before `from` give the state it starts in). A
/// value counts from its source time (when the device saw it), not from
/// when it was recorded.
pub fn of_twin(twin: &str, events: &[Event], states: &RunStates, from: Micros, to: Micros) -> Kpis {
    let (component, name) = match states.field.split_once('.') {
        Some((c, n)) => (Some(c), n),
        None => (None, states.field.as_str()),
    };
    // The run state's changes: (time, value), in order.
    let mut changes: Vec<(Micros, &Value)> = Vec::new();
    for e in events {
        let entries = match &e.change {
            Change::ReportedPatched {
                twin: t, entries, ..
            }
            | Change::TwinCreated {
                twin: t, entries, ..
            } if t == twin => entries,
            Change::TwinDeleted { twin: t, .. } if t == twin => {
                changes.clear();
                continue;
            }
            _ => continue,
        };
        for en in entries {
            if en.side == Side::Reported
                && en.name == name
                && en.component.as_deref() == component
                && let Some(v) = &en.value
            {
                let at = en.source_time.unwrap_or(e.time);
                changes.push((at, v));
            }
        }
    }
    changes.sort_by_key(|(t, _)| *t);
    let mut k = Kpis::default();
    if to <= from || changes.first().is_none_or(|(t, _)| *t >= to) {
        return k;
    }
    k.assets = 1;
    let is = |v: &Value, set: &[Value]| set.contains(v);
    let mut fault_since: Option<Micros> = None;
    for (i, &(at, v)) in changes.iter().enumerate() {
        let end = changes.get(i + 1).map_or(to, |(t, _)| *t).min(to);
        let start = at.max(from);
        let faulted = is(v, &states.fault);
        let was_fault = i > 0 && is(changes[i - 1].1, &states.fault);
        if faulted && !was_fault {
            fault_since = Some(at);
            // A first report already in fault is a state, not a failure.
            if i > 0 && at >= from && at < to {
                k.failures += 1;
            }
        }
        if !faulted
            && was_fault
            && let Some(since) = fault_since.take()
            && at >= from
            && at < to
        {
            k.repairs += 1;
            k.repair_time += at - since;
        }
        if end <= start {
            continue;
        }
        let span = end - start;
        k.observed += span;
        if is(v, &states.running) {
            k.running += span;
        }
        if faulted {
            k.fault += span;
        }
    }
    k
}

/// Counts the alarms raised on the twins of `assets` within `from..to`,
/// from the `alarms` stream's events, into each twin's indicators.
pub fn count_alarms(
    alarms: &[Event],
    assets: &mut HashMap<String, Kpis>,
    from: Micros,
    to: Micros,
) {
    for e in alarms {
        if e.time < from || e.time >= to {
            continue;
        }
        if let Change::Record(Record::AlarmRaised { alarm }) = &e.change
            && let Some(k) = assets.get_mut(&alarm.twin)
        {
            k.alarms[slot(alarm.severity)] += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twin::Entry;
    use serde_json::json;

    fn report(seq: u64, at: Micros, state: &str) -> Event {
        Event {
            seq,
            time: at,
            actor: "plc".into(),
            change: Change::ReportedPatched {
                twin: "p1".into(),
                version: seq,
                patch: json!({"runState": state}),
                entries: vec![Entry {
                    side: Side::Reported,
                    component: None,
                    name: "runState".into(),
                    value: Some(json!(state)),
                    source_time: None,
                    ack: None,
                    source: None,
                }],
                stale: Vec::new(),
            },
        }
    }

    const H: Micros = 3_600_000_000;

    #[test]
    fn run_states_give_availability_utilization_mtbf_and_mttr() {
        // Running from before the window, a fault at 2 h repaired at 3 h,
        // idle from 6 h, another fault at 8 h still open at 10 h.
        let events = [
            report(1, -H, "running"),
            report(2, 2 * H, "fault"),
            report(3, 3 * H, "running"),
            report(4, 6 * H, "idle"),
            report(5, 8 * H, "fault"),
        ];
        let k = of_twin("p1", &events, &RunStates::default(), 0, 10 * H);
        assert_eq!(k.observed, 10 * H);
        assert_eq!(k.running, 5 * H);
        assert_eq!(k.fault, 3 * H);
        assert_eq!(k.failures, 2);
        assert_eq!((k.repairs, k.repair_time), (1, H));
        assert_eq!(k.availability(), Some(0.7));
        assert_eq!(k.utilization(), Some(0.5));
        assert_eq!(k.mtbf(), Some(7 * H / 2));
        assert_eq!(k.mttr(), Some(H));
        // A window before the first report sees nothing.
        let none = of_twin("p1", &events, &RunStates::default(), -3 * H, -2 * H);
        assert_eq!(none, Kpis::default());
        assert_eq!(none.availability(), None);
        // Rolled up: sums, ratios of the sums.
        let mut sum = k.clone();
        sum.add(&of_twin(
            "p1",
            &events[..2],
            &RunStates::default(),
            0,
            4 * H,
        ));
        assert_eq!(sum.assets, 2);
        assert_eq!(sum.observed, 14 * H);
        assert_eq!(sum.fault, 5 * H);
    }
}
