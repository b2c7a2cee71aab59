//! The rule engine: follows every committed event ([`Tail`]), evaluates the
//! rules of each reporting twin's model on the values the event reports,
//! and raises and clears alarms when a condition has held (or not) for the
//! rule's on-delay (off-delay), on the service's clock. Stale-data rules
//! and delays are decided on a tick too. Idle (following nothing) while
//! there are no rules.
//!
//! What it decides it records through the book's writer, checked again
//! against the book: two servers over one store raise an alarm once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::book::Book;
use super::rule::{holds, message};
use crate::dtdl::ModelSet;
use crate::records::{AlarmRaise, AlarmRuleSpec, Condition, Record, Side};
use crate::store::fold::Folded;
use crate::store::tail::Tail;
use crate::store::{GraphStore, TwinQuery};
use crate::twin::clock::Clock;
use crate::twin::{Change, Event, Micros, Twin};

/// The actor of the engine's records.
pub const ACTOR: &str = "alarm rules";

/// Twins read per store call when a rule is (re)evaluated on every twin.
const SYNC_PAGE: usize = 1000;

/// What the engine knows of one rule on one twin.
#[derive(Debug, Clone)]
struct Tracker {
    /// Whether the condition holds.
    holds: bool,
    /// Since when it holds (or does not).
    since: Micros,
    /// The last value reported.
    value: Value,
    /// Rate rules: the last numeric value and its time.
    prev: Option<(f64, Micros)>,
    /// Stale rules: the last report.
    last_report: Micros,
    /// The twin was deleted.
    gone: bool,
}

impl Tracker {
    fn new(now: Micros) -> Tracker {
        Tracker {
            holds: false,
            since: now,
            value: Value::Null,
            prev: None,
            last_report: now,
            gone: false,
        }
    }

    fn set(&mut self, holds: bool, at: Micros) {
        if holds != self.holds {
            self.holds = holds;
            self.since = at;
        }
    }
}

/// A decision to record.
enum Action {
    Raise {
        spec: Arc<AlarmRuleSpec>,
        twin: String,
        value: Value,
    },
    Clear {
        rule: String,
        twin: String,
        value: Value,
        reason: Option<String>,
    },
    Unshelve {
        rule: String,
        twin: String,
    },
}

pub(super) struct Engine {
    store: Arc<dyn GraphStore>,
    book: Arc<Folded<Book>>,
    clock: Arc<dyn Clock>,
    /// The rules as the log has them (the book may fold them a little later).
    rules: HashMap<String, Arc<AlarmRuleSpec>>,
    /// Rules by the model of a twin they apply to (subtypes resolved).
    by_model: HashMap<String, Vec<Arc<AlarmRuleSpec>>>,
    models: Arc<ModelSet>,
    /// Rule → twin → tracker.
    trackers: HashMap<String, HashMap<String, Tracker>>,
    /// Trackers the last events touched (decided at once).
    dirty: HashSet<(String, String)>,
    passes: Arc<std::sync::atomic::AtomicU64>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn GraphStore>,
        book: Arc<Folded<Book>>,
        clock: Arc<dyn Clock>,
        passes: Arc<std::sync::atomic::AtomicU64>,
    ) -> Engine {
        let models = store.models();
        Engine {
            store,
            book,
            clock,
            rules: HashMap::new(),
            by_model: HashMap::new(),
            models,
            trackers: HashMap::new(),
            dirty: HashSet::new(),
            passes,
        }
    }

    /// Runs until `shutdown`: idle while there are no rules, otherwise
    /// following the log and deciding on every `tick`.
    pub async fn run(mut self, tick: std::time::Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut changes = self.book.changes();
        'idle: loop {
            if self.book.read().rules().next().is_none() {
                // Wait for a rule.
                loop {
                    tokio::select! {
                        e = changes.recv() => match e {
                            Ok(e) if matches!(&e.change, Change::Record(Record::AlarmRulePublished { .. })) => break,
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                if self.book.read().rules().next().is_some() {
                                    break;
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        },
                        () = &mut shutdown => return,
                    }
                }
            }
            // Followed from here; every twin of every rule evaluated as it
            // stands (events in between are seen twice, harmlessly).
            let mut tail = Tail::new(self.store.clone(), self.store.last_seq());
            self.rules = self
                .book
                .read()
                .rules()
                .map(|r| (r.current().name.clone(), r.current().clone()))
                .collect();
            self.trackers.clear();
            self.index();
            let names: Vec<String> = self.rules.keys().cloned().collect();
            for name in names {
                self.sync(&name).await;
            }
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let full = tokio::select! {
                    events = tail.next() => match events {
                        Some(events) => {
                            self.observe(&events).await;
                            false
                        }
                        None => return,
                    },
                    _ = ticks.tick() => true,
                    () = &mut shutdown => return,
                };
                // Keep the broadcast from lagging while idle or busy.
                while changes.try_recv().is_ok() {}
                self.decide(full).await;
                if self.rules.is_empty() {
                    continue 'idle;
                }
            }
        }
    }

    /// Which rules apply to twins of each model.
    fn index(&mut self) {
        self.models = self.store.models();
        self.by_model.clear();
        for iface in self.models.interfaces() {
            let rules: Vec<Arc<AlarmRuleSpec>> = self
                .rules
                .values()
                .filter(|r| iface.is_a(&r.model))
                .cloned()
                .collect();
            if !rules.is_empty() {
                self.by_model.insert(iface.id.clone(), rules);
            }
        }
    }

    /// Evaluates rule `name` on every twin of its model as it stands, and
    /// on every twin it has an active alarm on.
    async fn sync(&mut self, name: &str) {
        let Some(spec) = self.rules.get(name).cloned() else {
            return;
        };
        let now = self.clock.now();
        let mut trackers: HashMap<String, Tracker> = HashMap::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .twins(&TwinQuery {
                    model: Some(spec.model.clone()),
                    subtypes: true,
                    after: after.clone(),
                    limit: SYNC_PAGE,
                    ..Default::default()
                })
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(rule = name, error = %e, "alarm rules: cannot list the rule's twins");
                    break;
                }
            };
            for t in &page.items {
                let active = self
                    .book
                    .read()
                    .alarm(name, &t.id)
                    .is_some_and(|a| a.active);
                if let Some(tracker) = evaluate_current(&spec, t, active, now) {
                    trackers.insert(t.id.to_string(), tracker);
                }
            }
            after = page.items.last().map(|t| t.id.to_string());
            if !page.has_more || after.is_none() {
                break;
            }
        }
        // Active alarms on twins no longer of the rule (deleted, or of
        // another model now) clear.
        let orphans: Vec<String> = self
            .book
            .read()
            .alarms()
            .filter(|a| a.rule == name && a.active && !trackers.contains_key(&a.twin))
            .map(|a| a.twin.clone())
            .collect();
        for twin in orphans {
            let mut t = Tracker::new(now);
            t.set(false, now - 1);
            trackers.insert(twin.clone(), t);
            self.dirty.insert((name.to_owned(), twin));
        }
        for twin in trackers.keys() {
            self.dirty.insert((name.to_owned(), twin.clone()));
        }
        self.trackers.insert(name.to_owned(), trackers);
    }

    /// Folds committed events into the trackers.
    async fn observe(&mut self, events: &[Arc<Event>]) {
        let mut reported: Vec<&Arc<Event>> = Vec::new();
        for e in events {
            match &e.change {
                Change::Record(Record::AlarmRulePublished { rule }) => {
                    self.rules.insert(rule.name.clone(), rule.clone());
                    self.index();
                    self.sync(&rule.name).await;
                }
                Change::Record(Record::AlarmRuleDeleted { rule }) => {
                    self.rules.remove(rule);
                    self.trackers.remove(rule);
                    self.dirty.retain(|(r, _)| r != rule);
                    self.index();
                }
                Change::ModelsChanged { .. } => self.index(),
                Change::TwinDeleted { twin, .. } => {
                    for (rule, trackers) in &mut self.trackers {
                        if let Some(t) = trackers.get_mut(twin) {
                            t.set(false, e.time);
                            t.gone = true;
                            self.dirty.insert((rule.clone(), twin.clone()));
                        }
                    }
                }
                Change::ReportedPatched { .. } | Change::TwinCreated { .. }
                    if !self.by_model.is_empty() =>
                {
                    reported.push(e);
                }
                _ => {}
            }
        }
        if reported.is_empty() {
            return;
        }
        // The models of the reporting twins, in one store call.
        let mut ids: Vec<String> = reported
            .iter()
            .filter_map(|e| e.change.twins().first().map(|t| (*t).to_owned()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let models: HashMap<String, Arc<str>> = match self.store.twins_by_ids(&ids).await {
            Ok(twins) => twins
                .into_iter()
                .map(|t| (t.id.to_string(), t.model.clone()))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "alarm rules: cannot read the reporting twins");
                return;
            }
        };
        let book = self.book.clone();
        let book = book.read();
        for e in reported {
            let (twin, entries) = match &e.change {
                Change::ReportedPatched { twin, entries, .. } => (twin, entries),
                Change::TwinCreated { twin, entries, .. } => (twin, entries),
                _ => continue,
            };
            let Some(rules) = models.get(twin).and_then(|m| self.by_model.get(&**m)) else {
                continue;
            };
            for spec in rules {
                let field = spec.condition.field();
                let entry = entries
                    .iter()
                    .filter(|en| en.side == Side::Reported)
                    .find(|en| {
                        field.is_none_or(|f| match &en.component {
                            Some(c) => f.split_once('.') == Some((c.as_str(), en.name.as_str())),
                            None => f == en.name,
                        })
                    });
                let Some(entry) = entry else { continue };
                let value = entry.value.clone().unwrap_or(Value::Null);
                let trackers = self.trackers.entry(spec.name.clone()).or_default();
                let active = book.alarm(&spec.name, twin).is_some_and(|a| a.active);
                match &spec.condition {
                    Condition::Stale { .. } => {
                        let t = trackers
                            .entry(twin.clone())
                            .or_insert_with(|| Tracker::new(e.time));
                        t.gone = false;
                        t.last_report = e.time;
                        t.value = value;
                        t.set(false, e.time);
                    }
                    Condition::RateAbove { per_second, .. } => {
                        let at = entry.source_time.unwrap_or(e.time);
                        let t = trackers
                            .entry(twin.clone())
                            .or_insert_with(|| Tracker::new(e.time));
                        t.gone = false;
                        if let Some(v) = value.as_f64() {
                            if let Some((pv, pt)) = t.prev
                                && at > pt
                            {
                                let rate = (v - pv).abs() / ((at - pt) as f64 / 1e6);
                                t.set(rate > *per_second, e.time);
                            }
                            t.prev = Some((v, at));
                        }
                        t.value = value;
                    }
                    c => {
                        let h = holds(c, &value, active);
                        if !h && !active {
                            if trackers.remove(twin).is_none() {
                                continue;
                            }
                        } else {
                            let t = trackers
                                .entry(twin.clone())
                                .or_insert_with(|| Tracker::new(e.time));
                            t.gone = false;
                            t.set(h, e.time);
                            t.value = value;
                        }
                    }
                }
                self.dirty.insert((spec.name.clone(), twin.clone()));
            }
        }
    }

    /// Decides on the trackers the last events touched, or (`full`) on
    /// every one and on shelves that expired; records what it decided.
    async fn decide(&mut self, full: bool) {
        let now = self.clock.now();
        let mut actions = Vec::new();
        {
            let book = self.book.read();
            let dirty = std::mem::take(&mut self.dirty);
            for (rule, trackers) in &mut self.trackers {
                let Some(spec) = self.rules.get(rule) else {
                    continue;
                };
                // Value rules forget a twin whose condition does not hold
                // and whose alarm is not active (or clears now).
                let keeps = matches!(
                    spec.condition,
                    Condition::Stale { .. } | Condition::RateAbove { .. }
                );
                let mut decide = |twin: &String, t: &mut Tracker| -> bool {
                    if t.gone {
                        t.holds = false;
                    } else if let Condition::Stale { seconds, .. } = &spec.condition {
                        let after = (*seconds * 1e6) as i64;
                        let stale = now - t.last_report >= after;
                        if stale != t.holds {
                            t.set(stale, if stale { t.last_report + after } else { now });
                        }
                    }
                    let alarm = book.alarm(rule, twin);
                    let active = alarm.is_some_and(|a| a.active);
                    let elapsed = now - t.since;
                    let on = i64::try_from(spec.on_delay_ms * 1000).unwrap_or(i64::MAX);
                    let off = i64::try_from(spec.off_delay_ms * 1000).unwrap_or(i64::MAX);
                    if t.holds
                        && elapsed >= on
                        && (!active || alarm.is_some_and(|a| a.version != spec.version))
                    {
                        actions.push(Action::Raise {
                            spec: spec.clone(),
                            twin: twin.clone(),
                            value: t.value.clone(),
                        });
                    } else if !t.holds && active && elapsed >= off {
                        actions.push(Action::Clear {
                            rule: rule.clone(),
                            twin: twin.clone(),
                            value: t.value.clone(),
                            reason: t.gone.then(|| "twin deleted".to_owned()),
                        });
                        return keeps && !t.gone;
                    }
                    keeps && !t.gone || t.holds || active
                };
                if full {
                    trackers.retain(|twin, t| decide(twin, t));
                } else {
                    for (r, twin) in &dirty {
                        if r == rule
                            && let Some(t) = trackers.get_mut(twin)
                            && !decide(twin, t)
                        {
                            trackers.remove(twin);
                        }
                    }
                }
            }
            if full {
                for a in book.alarms() {
                    if a.shelved_until.is_some_and(|u| u <= now) {
                        actions.push(Action::Unshelve {
                            rule: a.rule.clone(),
                            twin: a.twin.clone(),
                        });
                    }
                }
            }
        }
        if !actions.is_empty() {
            self.record(actions, now).await;
        }
        if full {
            self.passes
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    async fn record(&self, actions: Vec<Action>, now: Micros) {
        // Where each raised alarm counts: its twin's containers now.
        let mut ancestors: HashMap<String, Vec<String>> = HashMap::new();
        for a in &actions {
            if let Action::Raise { twin, .. } = a
                && !ancestors.contains_key(twin)
            {
                let up = self.store.ancestors(twin).await.unwrap_or_default();
                ancestors.insert(twin.clone(), up);
            }
        }
        let written = self
            .book
            .write(
                ACTOR,
                |book: &Book| -> Result<Vec<Record>, crate::store::StoreError> {
                    let mut out = Vec::new();
                    for a in &actions {
                        match a {
                            Action::Raise { spec, twin, value } => {
                                let current = book.rule(&spec.name).map(|r| r.current());
                                if current.is_none_or(|c| c.version != spec.version) {
                                    continue;
                                }
                                let alarm = book.alarm(&spec.name, twin);
                                if alarm.is_some_and(|a| a.active && a.version == spec.version) {
                                    continue;
                                }
                                out.push(Record::AlarmRaised {
                                    alarm: Arc::new(AlarmRaise {
                                        rule: spec.name.clone(),
                                        version: spec.version,
                                        twin: twin.clone(),
                                        severity: spec.severity,
                                        message: message(spec, twin, value),
                                        value: value.clone(),
                                        ancestors: ancestors.get(twin).cloned().unwrap_or_default(),
                                        depth: spec.depth,
                                    }),
                                });
                            }
                            Action::Clear {
                                rule,
                                twin,
                                value,
                                reason,
                            } => {
                                if book.alarm(rule, twin).is_some_and(|a| a.active) {
                                    out.push(Record::AlarmCleared {
                                        rule: rule.clone(),
                                        twin: twin.clone(),
                                        value: value.clone(),
                                        reason: reason.clone(),
                                    });
                                }
                            }
                            Action::Unshelve { rule, twin } => {
                                if book
                                    .alarm(rule, twin)
                                    .is_some_and(|a| a.shelved_until.is_some_and(|u| u <= now))
                                {
                                    out.push(Record::AlarmUnshelved {
                                        rule: rule.clone(),
                                        twin: twin.clone(),
                                        reason: Some("expired".into()),
                                    });
                                }
                            }
                        }
                    }
                    Ok(out)
                },
            )
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "alarm rules: cannot record alarms; deciding again on the next tick");
        }
    }
}

/// The tracker of `spec` on twin `t` as it stands (none: nothing to track).
fn evaluate_current(spec: &AlarmRuleSpec, t: &Twin, active: bool, now: Micros) -> Option<Tracker> {
    let field = spec.condition.field();
    let reported = field.and_then(|f| {
        let (component, name) = match f.split_once('.') {
            Some((c, n)) => (t.components.get(c)?, n),
            None => (&t.root, f),
        };
        component.props.get(name)?.reported.as_deref()
    });
    let mut tracker = Tracker::new(now);
    match &spec.condition {
        Condition::Stale { .. } => {
            tracker.last_report = match (field, reported) {
                (Some(_), Some(r)) => r.last_updated,
                // Never reported: stale since the twin was created.
                (Some(_), None) => t.created_at,
                (None, _) => last_report(t),
            };
            tracker.value = reported.map_or(Value::Null, |r| r.value.clone());
            Some(tracker)
        }
        Condition::RateAbove { .. } => {
            if let Some(r) = reported {
                tracker.value = r.value.clone();
                tracker.prev = r
                    .value
                    .as_f64()
                    .map(|v| (v, r.source_time.unwrap_or(r.last_updated)));
            }
            // A rate needs two reports: an active alarm stays until then.
            tracker.holds = active;
            Some(tracker)
        }
        c => {
            let value = reported.map_or(Value::Null, |r| r.value.clone());
            let h = holds(c, &value, active);
            if !h && !active {
                return None;
            }
            tracker.holds = h;
            tracker.since = reported.map_or(now, |r| r.last_updated.min(now));
            tracker.value = value;
            Some(tracker)
        }
    }
}

/// The twin's last report of anything.
fn last_report(t: &Twin) -> Micros {
    std::iter::once(&t.root)
        .chain(t.components.values())
        .flat_map(|c| c.props.iter())
        .filter_map(|(_, p)| p.reported.as_ref().map(|r| r.last_updated))
        .max()
        .unwrap_or(t.created_at)
}
