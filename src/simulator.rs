//! A device simulator: plays the devices behind twins. It watches desired
//! changes (every committed change that writes desired values) and answers
//! each as a device following the IoT Plug and Play convention would: a
//! reported patch `{"prop": {"value", "ac", "av", "ad"}}` acknowledging the
//! desired version, after a delay; or a rejection (an error code, the old
//! value kept); or a wrong value (acknowledged but diverged); or nothing
//! (silence: the rollout times out). Which twin does what is decided by
//! explicit lists first, then by shares drawn from a hash of the twin id and
//! a seed, so a run is repeatable.
//!
//! Used by tests and benchmarks (over a store, in process) and by
//! `twingraph simulate`.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::store::{GraphStore, StoreError};
use crate::twin::{Batch, Change, Entry, Event, Op, Side};

/// What a device does with a desired change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Acknowledges with 200 and reports the desired values.
    Accept,
    /// Acknowledges with the rejection code; keeps its old values.
    Reject,
    /// Acknowledges with 200 but reports something else.
    Diverge,
    /// Never answers.
    Silent,
}

/// How the simulated devices behave.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Share of devices that reject (0..=1), drawn by twin id.
    pub reject_rate: f64,
    /// Share of devices that stay silent.
    pub silent_rate: f64,
    /// Share of devices that acknowledge but diverge.
    pub diverge_rate: f64,
    /// The status code of a rejection.
    pub reject_code: i64,
    /// How long a device takes to answer.
    pub delay: Duration,
    pub seed: u64,
    /// These twins reject, whatever the shares say.
    pub rejecting: HashSet<String>,
    /// These twins never answer.
    pub silent: HashSet<String>,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            reject_rate: 0.0,
            silent_rate: 0.0,
            diverge_rate: 0.0,
            reject_code: 500,
            delay: Duration::ZERO,
            seed: 0,
            rejecting: HashSet::new(),
            silent: HashSet::new(),
        }
    }
}

impl Behaviour {
    /// What the device of `twin` does.
    pub fn answer(&self, twin: &str) -> Answer {
        if self.rejecting.contains(twin) {
            return Answer::Reject;
        }
        if self.silent.contains(twin) {
            return Answer::Silent;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, twin).hash(&mut h);
        let x = (h.finish() % 1_000_000) as f64 / 1_000_000.0;
        if x < self.reject_rate {
            Answer::Reject
        } else if x < self.reject_rate + self.silent_rate {
            Answer::Silent
        } else if x < self.reject_rate + self.silent_rate + self.diverge_rate {
            Answer::Diverge
        } else {
            Answer::Accept
        }
    }

    /// The device's reported patch for desired `entries` written at twin
    /// version `version`, or `None` when it stays silent.
    pub fn reply(&self, twin: &str, version: u64, entries: &[Entry]) -> Option<Value> {
        let answer = self.answer(twin);
        if answer == Answer::Silent {
            return None;
        }
        let mut patch = Map::new();
        for e in entries.iter().filter(|e| e.side == Side::Desired) {
            let Some(value) = &e.value else { continue };
            let ack = match answer {
                Answer::Accept => {
                    json!({"value": value, "ac": 200, "av": version, "ad": "applied"})
                }
                Answer::Diverge => {
                    json!({"value": diverged(value), "ac": 200, "av": version, "ad": "applied"})
                }
                _ => {
                    json!({"ac": self.reject_code, "av": version, "ad": "rejected by the simulated device"})
                }
            };
            let slot = match &e.component {
                Some(c) => patch
                    .entry(c.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut(),
                None => Some(&mut patch),
            };
            if let Some(slot) = slot {
                slot.insert(e.name.clone(), ack);
            }
        }
        (!patch.is_empty()).then_some(Value::Object(patch))
    }
}

impl Behaviour {
    /// The device's answer to a committed change, as a `patchReported`
    /// operation: `None` for a change that writes no desired value, or
    /// when the device stays silent.
    pub fn answer_to(&self, change: &Change) -> Option<Op> {
        let (twin, version, entries) = desired_of(change)?;
        Some(Op::PatchReported {
            id: twin.to_owned(),
            patch: self.reply(twin, version, entries)?,
            expected_version: None,
            source_time: None,
        })
    }
}

impl Behaviour {
    /// What a device answers when it reads its twin: every writable
    /// property whose desired version it has not acknowledged yet.
    pub fn answer_twin(&self, t: &crate::twin::Twin) -> Option<Op> {
        let comps = std::iter::once((None, &t.root))
            .chain(t.components.iter().map(|(n, c)| (Some(n.as_str()), c)));
        let mut entries = Vec::new();
        for (component, state) in comps {
            for (name, p) in state.props.iter() {
                if p.ack_status() != crate::twin::AckStatus::Pending {
                    continue;
                }
                if let Some(d) = &p.desired {
                    entries.push((d.version, desired_entry(component, name, &d.value)));
                }
            }
        }
        self.merged_reply(&t.id, entries)
    }

    /// One reported patch answering entries of various desired versions.
    fn merged_reply(&self, twin: &str, entries: Vec<(u64, Entry)>) -> Option<Op> {
        let mut patch = Map::new();
        for (version, entry) in entries {
            if let Some(Value::Object(p)) = self.reply(twin, version, &[entry]) {
                for (k, v) in p {
                    match (patch.get_mut(&k), v) {
                        (Some(Value::Object(into)), Value::Object(more)) => into.extend(more),
                        (_, v) => {
                            patch.insert(k, v);
                        }
                    }
                }
            }
        }
        (!patch.is_empty()).then(|| Op::PatchReported {
            id: twin.to_owned(),
            patch: Value::Object(patch),
            expected_version: None,
            source_time: None,
        })
    }

    /// What a device answers when it (re)connects and reads its twin: every
    /// writable property whose desired version it has not acknowledged
    /// yet, from the twin's `desired` values and `metadata` (GraphQL JSON
    /// views), as one `patchReported` operation.
    pub fn answer_pending(&self, twin: &str, desired: &Value, metadata: &Value) -> Option<Op> {
        let mut entries = Vec::new();
        let mut visit = |component: Option<&str>, name: &str, value: &Value, meta: &Value| {
            if meta["ackStatus"] == "pending"
                && let Some(version) = meta["desired"]["version"].as_u64()
            {
                entries.push((version, desired_entry(component, name, value)));
            }
        };
        for (k, v) in desired.as_object().into_iter().flatten() {
            let meta = &metadata[k];
            if meta.get("ackStatus").is_some() {
                visit(None, k, v, meta);
            } else if let Value::Object(inner) = v {
                // A Component: its properties one level down.
                for (name, value) in inner {
                    visit(Some(k), name, value, &meta[name]);
                }
            }
        }
        self.merged_reply(twin, entries)
    }
}

fn desired_entry(component: Option<&str>, name: &str, value: &Value) -> Entry {
    Entry {
        side: Side::Desired,
        component: component.map(str::to_owned),
        name: name.to_owned(),
        value: Some(value.clone()),
        source_time: None,
        ack: None,
        source: None,
    }
}

/// Another value of the same kind.
fn diverged(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64().unwrap_or(0.0) + 1.0),
        Value::String(s) => json!(format!("{s}-other")),
        Value::Bool(b) => json!(!b),
        other => other.clone(),
    }
}

/// The desired values an event writes (a value, not only removals), with
/// the twin version devices acknowledge.
fn desired_of(change: &Change) -> Option<(&str, u64, &[Entry])> {
    change.desired().filter(|(_, _, entries)| {
        entries
            .iter()
            .any(|e| e.side == Side::Desired && e.value.is_some())
    })
}

/// Devices answering over a store, in process, until dropped.
#[derive(Debug)]
pub struct Simulator {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers written per batch.
const BATCH: usize = 2000;

impl Simulator {
    /// Starts answering: first what the twins still wait for, then every
    /// desired change committed from now on.
    pub fn start(store: Arc<dyn GraphStore>, behaviour: Behaviour) -> Simulator {
        let rx = store.subscribe();
        Simulator {
            task: tokio::spawn(run(store, behaviour, rx)),
        }
    }
}

async fn run(store: Arc<dyn GraphStore>, b: Behaviour, mut rx: broadcast::Receiver<Arc<Event>>) {
    // Devices coming online read their twins first.
    if let Err(e) = sweep(&*store, &b).await {
        tracing::warn!(error = %e, "simulator cannot read the twins");
    }
    loop {
        let first = match rx.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // As a device reconnecting: read the twins, answer what is
                // still pending.
                tracing::debug!(missed = n, "simulator fell behind; reading the twins");
                if let Err(e) = sweep(&*store, &b).await {
                    tracing::warn!(error = %e, "simulator cannot read the twins");
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        // Everything already committed joins this round.
        let mut events = vec![first];
        while events.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => events.push(e),
                Err(_) => break,
            }
        }
        let ops: Vec<Op> = events
            .iter()
            .filter_map(|e| b.answer_to(&e.change))
            .collect();
        if ops.is_empty() {
            continue;
        }
        if !b.delay.is_zero() {
            let (store, delay) = (store.clone(), b.delay);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                answer(&*store, ops).await;
            });
        } else {
            answer(&*store, ops).await;
        }
    }
}

/// Answers every twin whose device has a desired version to acknowledge.
async fn sweep(store: &dyn GraphStore, b: &Behaviour) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let page = store
            .twins(&crate::store::TwinQuery {
                after: after.clone(),
                limit: BATCH,
                ..crate::store::TwinQuery::default()
            })
            .await?;
        let ops: Vec<Op> = page.items.iter().filter_map(|t| b.answer_twin(t)).collect();
        answer(store, ops).await;
        after = page.items.last().map(|t| t.id.to_string());
        if !page.has_more {
            return Ok(());
        }
    }
}

/// Writes the answers; a twin gone meanwhile is left out.
async fn answer(store: &dyn GraphStore, mut ops: Vec<Op>) {
    while !ops.is_empty() {
        match store.apply(Batch { ops: ops.clone() }, "simulator").await {
            Ok(_) => return,
            Err(StoreError::Batch(b)) => {
                ops.remove(b.index);
            }
            Err(e) => {
                tracing::warn!(error = %e, "simulator cannot answer");
                return;
            }
        }
    }
}
