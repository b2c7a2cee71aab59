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
use super::detect::Recent;
use super::rule::{holds, message};
use crate::dtdl::ModelSet;
use crate::records::{AlarmRaise, AlarmRuleSpec, Condition, Evidence, Record, Side};
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
    /// Anomaly, change-point and peers rules: the field's recent values.
    recent: Option<Box<Recent>>,
    /// A detector's reasons when it last judged the value unusual.
    evidence: Option<Evidence>,
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
            recent: None,
            evidence: None,
        }
    }

    /// Records whether the condition holds at `at`; whether that changed.
    fn set(&mut self, holds: bool, at: Micros) -> bool {
        let changed = holds != self.holds;
        if changed {
            self.holds = holds;
            self.since = at;
        }
        changed
    }
}

/// The rules of a model that watch one field (`component.name`; none: a
/// stale rule on any report), thresholds sorted by limit.
struct Group {
    component: Option<String>,
    name: Option<String>,
    above: Vec<(f64, Arc<AlarmRuleSpec>)>,
    below: Vec<(f64, Arc<AlarmRuleSpec>)>,
    other: Vec<Arc<AlarmRuleSpec>>,
}

impl Group {
    fn all(&self) -> impl Iterator<Item = &Arc<AlarmRuleSpec>> {
        self.above
            .iter()
            .chain(&self.below)
            .map(|(_, r)| r)
            .chain(&self.other)
    }
}

/// How long the engine lets commits gather after it woke for some: it then
/// wakes a few hundred times a second at most under load, and a change is
/// decided at most this much later.
const GATHER: std::time::Duration = std::time::Duration::from_millis(5);

/// A decision to record.
enum Action {
    Raise {
        spec: Arc<AlarmRuleSpec>,
        twin: String,
        value: Value,
        evidence: Option<Evidence>,
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
    /// Rules by the model of a twin they apply to (subtypes resolved),
    /// grouped by the field they watch.
    by_model: HashMap<String, Arc<Vec<Group>>>,
    /// Twins that may have a tracker of a value or rate rule (rebuilt on
    /// every full pass): the others skip the rules their value does not
    /// cross.
    hot: HashSet<String>,
    models: Arc<ModelSet>,
    /// Rule → twin → tracker.
    trackers: HashMap<String, HashMap<String, Tracker>>,
    /// Trackers the last events touched (decided at once).
    dirty: HashSet<(String, String)>,
    passes: Arc<std::sync::atomic::AtomicU64>,
    /// Time spent observing events and deciding (µs).
    busy: Arc<std::sync::atomic::AtomicU64>,
    /// The last event observed: decisions wait until the trackers have seen
    /// every event the book has (another server's record may be about a
    /// report this one has yet to see).
    seen: u64,
    /// Each twin's container, as peers rules group twins (forgotten when
    /// the hierarchy changes).
    parents: HashMap<String, Option<String>>,
    /// When each peers rule last compared its twins.
    compared: HashMap<String, Micros>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn GraphStore>,
        book: Arc<Folded<Book>>,
        clock: Arc<dyn Clock>,
        passes: Arc<std::sync::atomic::AtomicU64>,
        busy: Arc<std::sync::atomic::AtomicU64>,
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
            hot: HashSet::new(),
            dirty: HashSet::new(),
            passes,
            busy,
            seen: 0,
            parents: HashMap::new(),
            compared: HashMap::new(),
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
            self.seen = tail.seq();
            self.rules = self
                .book
                .read()
                .rules()
                .map(|r| (r.current().name.clone(), r.current().clone()))
                .collect();
            self.trackers.clear();
            self.hot.clear();
            self.index();
            let names: Vec<String> = self.rules.keys().cloned().collect();
            for name in names {
                self.sync(&name).await;
            }
            let mut ticks = tokio::time::interval(tick);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let mut observed = std::time::Duration::ZERO;
                let full = tokio::select! {
                    events = tail.next() => match events {
                        Some(mut events) => {
                            // Let the commits of the next moments gather.
                            tokio::select! {
                                () = tokio::time::sleep(GATHER) => {}
                                () = &mut shutdown => return,
                            }
                            while let Some(more) = tokio::time::timeout(std::time::Duration::ZERO, tail.next())
                                .await
                                .ok()
                                .flatten()
                            {
                                events.extend(more);
                            }
                            let started = std::time::Instant::now();
                            self.observe(&events).await;
                            self.seen = tail.seq();
                            observed = started.elapsed();
                            false
                        }
                        None => return,
                    },
                    _ = ticks.tick() => true,
                    () = &mut shutdown => return,
                };
                // Keep the broadcast from lagging while idle or busy.
                while changes.try_recv().is_ok() {}
                let started = std::time::Instant::now();
                self.decide(full).await;
                self.busy.fetch_add(
                    u64::try_from((started.elapsed() + observed).as_micros()).unwrap_or(u64::MAX),
                    std::sync::atomic::Ordering::Relaxed,
                );
                if self.rules.is_empty() {
                    continue 'idle;
                }
            }
        }
    }

    /// Which rules apply to twins of each model, by field.
    fn index(&mut self) {
        self.models = self.store.models();
        self.by_model.clear();
        for iface in self.models.interfaces() {
            let mut groups: Vec<Group> = Vec::new();
            for r in self.rules.values().filter(|r| iface.is_a(&r.model)) {
                let field = r.condition.field();
                let (component, name) = match field.map(|f| f.split_once('.')) {
                    Some(Some((c, n))) => (Some(c.to_owned()), Some(n.to_owned())),
                    Some(None) => (None, field.map(str::to_owned)),
                    None => (None, None),
                };
                let at = match groups
                    .iter()
                    .position(|g| g.component == component && g.name == name)
                {
                    Some(at) => at,
                    None => {
                        groups.push(Group {
                            component,
                            name,
                            above: Vec::new(),
                            below: Vec::new(),
                            other: Vec::new(),
                        });
                        groups.len() - 1
                    }
                };
                let g = &mut groups[at];
                match &r.condition {
                    Condition::Above { limit, .. } => g.above.push((*limit, r.clone())),
                    Condition::Below { limit, .. } => g.below.push((*limit, r.clone())),
                    _ => g.other.push(r.clone()),
                }
            }
            for g in &mut groups {
                g.above.sort_by(|a, b| a.0.total_cmp(&b.0));
                g.below.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
            if !groups.is_empty() {
                self.by_model.insert(iface.id.clone(), Arc::new(groups));
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
        let stale = matches!(spec.condition, Condition::Stale { .. });
        for twin in trackers.keys() {
            self.dirty.insert((name.to_owned(), twin.clone()));
            if !stale {
                self.hot.insert(twin.clone());
            }
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
                Change::RelationshipCreated { .. } | Change::RelationshipDeleted { .. } => {
                    self.parents.clear();
                }
                Change::TwinDeleted { twin, .. } => {
                    self.parents.remove(twin);
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
        let models = match self.store.twin_models(&ids).await {
            Ok(models) => models,
            Err(e) => {
                tracing::warn!(error = %e, "alarm rules: cannot read the reporting twins' models");
                return;
            }
        };
        let model_of = |twin: &str| {
            ids.binary_search_by(|id| id.as_str().cmp(twin))
                .ok()
                .and_then(|i| models.get(i).cloned().flatten())
        };
        let book = self.book.clone();
        let book = book.read();
        for e in reported {
            let (twin, entries) = match &e.change {
                Change::ReportedPatched { twin, entries, .. } => (twin, entries),
                Change::TwinCreated { twin, entries, .. } => (twin, entries),
                _ => continue,
            };
            let Some(groups) = model_of(twin).and_then(|m| self.by_model.get(&*m).cloned()) else {
                continue;
            };
            // A twin no value or rate rule tracks: only the rules whose
            // threshold the value crosses are looked at (most are not).
            let tracked = self.hot.contains(twin.as_str());
            for group in groups.iter() {
                let entry = entries
                    .iter()
                    .filter(|en| en.side == Side::Reported)
                    .find(|en| {
                        group.name.as_deref().is_none_or(|n| {
                            en.name == n && en.component.as_deref() == group.component.as_deref()
                        })
                    });
                let Some(entry) = entry else { continue };
                let value = entry.value.as_ref().unwrap_or(&Value::Null);
                if tracked {
                    for spec in group.all() {
                        self.evaluate(&book, spec, twin, entry, value, e.time);
                    }
                    continue;
                }
                if let Some(v) = value.as_f64() {
                    let crossed = group.above.partition_point(|(limit, _)| *limit < v);
                    for (_, spec) in &group.above[..crossed] {
                        self.evaluate(&book, spec, twin, entry, value, e.time);
                    }
                    let crossed = group.below.partition_point(|(limit, _)| *limit <= v);
                    for (_, spec) in &group.below[crossed..] {
                        self.evaluate(&book, spec, twin, entry, value, e.time);
                    }
                }
                for spec in &group.other {
                    self.evaluate(&book, spec, twin, entry, value, e.time);
                }
            }
        }
    }

    /// Folds one reported value into the tracker of `spec` on `twin`.
    fn evaluate(
        &mut self,
        book: &Book,
        spec: &Arc<AlarmRuleSpec>,
        twin: &str,
        entry: &crate::twin::Entry,
        value: &Value,
        time: Micros,
    ) {
        if !self.trackers.contains_key(spec.name.as_str()) {
            self.trackers.insert(spec.name.clone(), HashMap::new());
        }
        let Some(trackers) = self.trackers.get_mut(spec.name.as_str()) else {
            return;
        };
        // Whether the condition changed: decided at once (delays and stale
        // data are decided on the ticks).
        let changed = match &spec.condition {
            Condition::Stale { .. } => {
                let t = tracker(trackers, twin, time);
                t.gone = false;
                t.last_report = time;
                let changed = t.set(false, time);
                if changed {
                    t.value = value.clone();
                }
                changed
            }
            Condition::RateAbove { per_second, .. } => {
                let at = entry.source_time.unwrap_or(time);
                if !trackers.contains_key(twin) {
                    self.hot.insert(twin.to_owned());
                }
                let t = tracker(trackers, twin, time);
                t.gone = false;
                let mut changed = false;
                if let Some(v) = value.as_f64() {
                    if let Some((pv, pt)) = t.prev
                        && at > pt
                    {
                        let rate = (v - pv).abs() / ((at - pt) as f64 / 1e6);
                        changed = t.set(rate > *per_second, time);
                    }
                    t.prev = Some((v, at));
                }
                if changed || t.holds {
                    t.value = value.clone();
                }
                changed
            }
            Condition::Anomaly {
                sensitivity,
                window,
                ..
            }
            | Condition::ChangePoint {
                sensitivity,
                window,
                ..
            } => {
                let Some(v) = value.as_f64() else {
                    return;
                };
                if !trackers.contains_key(twin) {
                    self.hot.insert(twin.to_owned());
                }
                let t = tracker(trackers, twin, time);
                t.gone = false;
                let window = *window as usize;
                let recent = t.recent.get_or_insert_default();
                let at = entry.source_time.unwrap_or(time);
                let judged = if matches!(spec.condition, Condition::Anomaly { .. }) {
                    // Judged against the values before it.
                    let judged = recent.anomaly(v, *sensitivity, window);
                    recent.push(at, v, window, Micros::MIN);
                    judged
                } else {
                    // Part of the levels it is judged among.
                    recent.push(at, v, window, Micros::MIN);
                    recent.shift(*sensitivity, window)
                };
                let mut changed = false;
                if let Some((unusual, evidence)) = judged {
                    changed = t.set(unusual, time);
                    if unusual {
                        t.evidence = Some(evidence);
                    }
                }
                if changed || t.holds {
                    t.value = value.clone();
                }
                changed
            }
            Condition::Peers { window_seconds, .. } => {
                // Compared with the twin's peers on the ticks.
                let Some(v) = value.as_f64() else {
                    return;
                };
                if !trackers.contains_key(twin) {
                    self.hot.insert(twin.to_owned());
                }
                let t = tracker(trackers, twin, time);
                t.gone = false;
                let span = (*window_seconds * 1e6) as i64;
                t.recent.get_or_insert_default().push(
                    entry.source_time.unwrap_or(time),
                    v,
                    usize::MAX,
                    time - span,
                );
                if t.holds {
                    t.value = value.clone();
                }
                false
            }
            c => {
                // Holding without the deadband holds either way; a twin
                // without a tracker has no active alarm.
                let strict = holds(c, value, false);
                match trackers.get_mut(twin) {
                    None if !strict => return,
                    None => {
                        let mut t = Tracker::new(time);
                        t.set(true, time);
                        t.value = value.clone();
                        trackers.insert(twin.to_owned(), t);
                        self.hot.insert(twin.to_owned());
                        true
                    }
                    Some(t) => {
                        let active = book.alarm(&spec.name, twin).is_some_and(|a| a.active);
                        let h = strict || (active && holds(c, value, true));
                        t.gone = false;
                        let changed = t.set(h, time);
                        t.value = value.clone();
                        if !h && !active {
                            trackers.remove(twin);
                        }
                        changed
                    }
                }
            }
        };
        if changed {
            self.dirty.insert((spec.name.clone(), twin.to_owned()));
        }
    }

    /// Decides on the trackers the last events touched, or (`full`) on
    /// every one and on shelves that expired; records what it decided.
    async fn decide(&mut self, full: bool) {
        let now = self.clock.now();
        if full {
            self.compare_peers(now).await;
        }
        let mut actions = Vec::new();
        {
            let book = self.book.read();
            if book.seq() > self.seen {
                // The book is ahead of what the trackers have seen: decide
                // once they have caught up (the dirty ones stay dirty).
                return;
            }
            let dirty = std::mem::take(&mut self.dirty);
            for (rule, trackers) in &mut self.trackers {
                let Some(spec) = self.rules.get(rule) else {
                    continue;
                };
                // Value rules forget a twin whose condition does not hold
                // and whose alarm is not active (or clears now).
                let keeps = matches!(
                    spec.condition,
                    Condition::Stale { .. }
                        | Condition::RateAbove { .. }
                        | Condition::Anomaly { .. }
                        | Condition::ChangePoint { .. }
                        | Condition::Peers { .. }
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
                            evidence: t.evidence,
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
        if full {
            // Twins with a tracker of a value or rate rule, as they now are.
            let rules = &self.rules;
            self.hot = self
                .trackers
                .iter()
                .filter(|(rule, _)| {
                    rules
                        .get(*rule)
                        .is_some_and(|r| !matches!(r.condition, Condition::Stale { .. }))
                })
                .flat_map(|(_, t)| t.keys().cloned())
                .collect();
        }
        if !actions.is_empty() {
            self.record(actions, now).await;
        }
        if full {
            self.passes
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Compares the twins of each peers rule with their peers (twins of
    /// the rule's model in the same container), every tenth of its window
    /// (between a second and a minute).
    async fn compare_peers(&mut self, now: Micros) {
        let due: Vec<(String, f64, f64)> = self
            .rules
            .values()
            .filter_map(|r| match r.condition {
                Condition::Peers {
                    sensitivity,
                    window_seconds,
                    ..
                } => {
                    let every = ((window_seconds / 10.0).clamp(1.0, 60.0) * 1e6) as i64;
                    self.compared
                        .get(&r.name)
                        .is_none_or(|&at| now - at >= every)
                        .then(|| (r.name.clone(), sensitivity, window_seconds))
                }
                _ => None,
            })
            .collect();
        for (rule, sensitivity, window_seconds) in due {
            self.compared.insert(rule.clone(), now);
            let twins: Vec<String> = self
                .trackers
                .get(&rule)
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default();
            for twin in &twins {
                if !self.parents.contains_key(twin) {
                    match self.store.ancestors(twin).await {
                        Ok(up) => {
                            self.parents.insert(twin.clone(), up.into_iter().next());
                        }
                        Err(e) => {
                            tracing::debug!(twin = %twin, error = %e, "alarm rules: container unknown; compared later");
                        }
                    }
                }
            }
            let Some(trackers) = self.trackers.get_mut(&rule) else {
                continue;
            };
            let mut groups: HashMap<&str, Vec<&String>> = HashMap::new();
            for twin in &twins {
                if let Some(Some(parent)) = self.parents.get(twin) {
                    groups.entry(parent.as_str()).or_default().push(twin);
                }
            }
            let from = now - (window_seconds * 1e6) as i64;
            let empty = Recent::default();
            for members in groups.values() {
                let judged = {
                    let recents: Vec<&Recent> = members
                        .iter()
                        .map(|t| {
                            trackers
                                .get(*t)
                                .and_then(|t| t.recent.as_deref())
                                .unwrap_or(&empty)
                        })
                        .collect();
                    super::detect::peers(&recents, from, now, sensitivity)
                };
                for (twin, judged) in members.iter().zip(judged) {
                    let Some(t) = trackers.get_mut(*twin) else {
                        continue;
                    };
                    let Some((unlike, evidence)) = judged else {
                        continue;
                    };
                    if unlike {
                        t.evidence = Some(evidence);
                        t.value = serde_json::json!(evidence.observed);
                    }
                    if t.set(unlike, now) {
                        self.dirty.insert((rule.clone(), (*twin).clone()));
                    }
                }
            }
        }
    }

    async fn record(&self, actions: Vec<Action>, now: Micros) {
        let seen = self.seen;
        // Where each raised alarm counts: its twin's containers now.
        let mut ancestors: HashMap<String, Vec<String>> = HashMap::new();
        for a in &actions {
            if let Action::Raise { twin, .. } = a
                && !ancestors.contains_key(twin)
            {
                // A twin whose containers cannot be read now (or that is
                // gone) is not raised yet: the next pass decides again.
                match self.store.ancestors(twin).await {
                    Ok(up) => {
                        ancestors.insert(twin.clone(), up);
                    }
                    Err(e) => {
                        tracing::debug!(twin = %twin, error = %e, "alarm rules: containers unknown; raising later");
                    }
                }
            }
        }
        let written = self
            .book
            .write(
                ACTOR,
                |book: &Book| -> Result<Vec<Record>, crate::store::StoreError> {
                    let mut out = Vec::new();
                    if book.seq() > seen {
                        // Another server recorded since: decide again later.
                        return Ok(out);
                    }
                    for a in &actions {
                        match a {
                            Action::Raise {
                                spec,
                                twin,
                                value,
                                evidence,
                            } => {
                                let Some(up) = ancestors.get(twin) else {
                                    continue;
                                };
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
                                        message: message(spec, twin, value, evidence.as_ref()),
                                        value: value.clone(),
                                        ancestors: up.clone(),
                                        depth: spec.depth,
                                        evidence: *evidence,
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

/// The tracker of `twin`, new (as of `at`) if it had none.
fn tracker<'a>(
    trackers: &'a mut HashMap<String, Tracker>,
    twin: &str,
    at: Micros,
) -> &'a mut Tracker {
    if !trackers.contains_key(twin) {
        trackers.insert(twin.to_owned(), Tracker::new(at));
    }
    trackers.get_mut(twin).expect("inserted")
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
        Condition::Anomaly { .. } | Condition::ChangePoint { .. } | Condition::Peers { .. } => {
            // Judged once values come in; an active alarm stays until then.
            tracker.holds = active;
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
