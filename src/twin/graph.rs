//! The in-memory twin graph: twins, relationships, adjacency both ways and
//! an index by model, plus the planner that turns a [`Batch`] into events.
//!
//! Writing is two-step. [`Graph::planner`] validates operations against the
//! models and the current graph *without changing it*, staging their effects
//! in an overlay so later operations (and later batches of the same group
//! commit) see earlier ones; a failed batch is rolled back out of the overlay
//! alone. Once the events are durable, [`Graph::apply`] folds them in. Readers
//! therefore never see a change that is not committed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::batch::{Batch, Op};
use super::error::TwinError;
use super::event::{Change, Entry, Event, Micros, Previous, Side};
use super::id;
use super::rels::{RelStore, RelView};
use super::state::{Ack, Assignment, DesiredSource, Relationship, Twin};
use super::value::{merge_patch, validate};
use crate::dtdl::model::{Content, ContentKind, Interface, ModelSet, Schema};

/// A relationship's key: `(source twin, relationship id)`.
pub type RelKey = (String, String);

/// Settings of the graph's behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphConfig {
    /// The relationship name that means containment (hierarchy).
    pub containment: String,
    /// How far ahead of the server's clock a report's source time may be
    /// (microseconds).
    pub max_clock_skew: Micros,
}

/// Five minutes: device clocks drift, and NTP-less devices by more.
pub const DEFAULT_MAX_CLOCK_SKEW: Micros = 300_000_000;

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            containment: "contains".to_owned(),
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
        }
    }
}

/// The hasher of maps keyed by twin ids: foldhash (seeded per map, several
/// times faster than the standard SipHash on short ids; a million-twin
/// store hashes every id several times as it loads).
pub(crate) type IdHasher = foldhash::quality::RandomState;

/// Twins looked up together by [`Graph::twins_of`].
const LOOKUP_CHUNK: usize = 32;

/// The current state of every twin and relationship, indexed for reads.
#[derive(Debug, Default)]
pub struct Graph {
    pub(super) config: GraphConfig,
    /// Twins by id; the key is shared with relationship ends and indexes.
    /// Behind a pointer: a hash table has up to twice the slots of its
    /// entries, and a slot is then a pointer, not a whole twin. Shared: a
    /// read hands out the pointer, not a deep copy, and a write to a twin
    /// a reader still holds copies it then ([`Arc::make_mut`]).
    pub(super) twins: HashMap<Arc<str>, Arc<Twin>, IdHasher>,
    pub(super) rels: RelStore,
    /// Property names shared by all twins.
    pub(super) prop_names: std::collections::HashSet<Arc<str>>,
    /// Twin ids by exact model (the key is the interned model id twins share).
    pub(super) by_model: HashMap<Arc<str>, BTreeSet<Arc<str>>, IdHasher>,
    /// Sequence number of the last event applied.
    pub(super) last_seq: u64,
    /// Time of the last event applied.
    pub(super) last_time: Micros,
    /// The last record of each stream ([`Change::stream`]) by name.
    pub(super) streams: HashMap<String, u64>,
    /// Sort indexes, built when an ordered list first needs them (under a
    /// read of the graph, hence the lock), then kept by [`Graph::apply`].
    pub(super) indexes: std::sync::RwLock<super::index::Indexes>,
}

/// State changed by planned batches: twins and relationships as they are
/// after them (`None` = deleted).
#[derive(Debug, Default)]
pub struct Staged {
    pub twins: Vec<(String, Option<Twin>)>,
    pub rels: Vec<(RelKey, Option<Relationship>)>,
}

/// A batch that failed: which operation, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation {index}: {error}")]
pub struct BatchError {
    pub index: usize,
    #[source]
    pub error: TwinError,
}

impl Graph {
    pub fn new(config: GraphConfig) -> Graph {
        Graph {
            config,
            ..Graph::default()
        }
    }

    pub fn config(&self) -> &GraphConfig {
        &self.config
    }

    pub fn twin(&self, id: &str) -> Option<&Twin> {
        self.twins.get(id).map(|t| &**t)
    }

    /// The twin `id` as shared: a read that outlives the graph's lock
    /// without copying the twin.
    pub fn twin_shared(&self, id: &str) -> Option<Arc<Twin>> {
        self.twins.get(id).cloned()
    }

    /// The twins of `ids` that exist, in that order, as shared (a batch
    /// of reads, such as a DataLoader's). All are looked up before any is
    /// shared: the lookups do not depend on each other, so the CPU
    /// overlaps their cache misses, which sharing (an atomic increment on
    /// each twin) would serialize.
    pub fn twins_shared(&self, ids: &[String]) -> Vec<Arc<Twin>> {
        let found: Vec<&Arc<Twin>> = ids
            .iter()
            .filter_map(|id| self.twins.get(id.as_str()))
            .collect();
        found.into_iter().cloned().collect()
    }

    /// The twins of `ids` that exist, in that order, looked up
    /// [`LOOKUP_CHUNK`] at a time before any is handed on. A scan over a
    /// large model misses the CPU's cache on nearly every twin; the
    /// lookups of a chunk do not depend on each other, so the CPU overlaps
    /// their misses instead of waiting for each in turn behind the work
    /// done with the one before.
    pub fn twins_of<'a>(
        &'a self,
        mut ids: impl Iterator<Item = &'a str> + 'a,
    ) -> impl Iterator<Item = &'a Twin> + 'a {
        let mut chunk: Vec<&'a Twin> = Vec::with_capacity(LOOKUP_CHUNK);
        let mut next = 0;
        std::iter::from_fn(move || {
            while next == chunk.len() {
                chunk.clear();
                next = 0;
                let mut taken = 0;
                for id in ids.by_ref().take(LOOKUP_CHUNK) {
                    taken += 1;
                    chunk.extend(self.twin(id));
                }
                if taken == 0 {
                    return None;
                }
            }
            next += 1;
            Some(chunk[next - 1])
        })
    }

    pub fn twin_count(&self) -> usize {
        self.twins.len()
    }

    pub fn relationship(&self, source: &str, id: &str) -> Option<Relationship> {
        self.rels.get(source, id).map(|r| r.to_relationship())
    }

    /// Relationships with this id from any source (ids are unique per
    /// source only); a scan over all relationships.
    pub fn relationships_with_id(&self, id: &str) -> Vec<Relationship> {
        self.rels.with_id(id).map(|r| r.to_relationship()).collect()
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn last_time(&self) -> Micros {
        self.last_time
    }

    /// The sequence number of the last record of `stream` (0: none).
    pub fn stream_head(&self, stream: &str) -> u64 {
        self.streams.get(stream).copied().unwrap_or(0)
    }

    /// Sets where `stream` ends (store startup, or a partial graph loaded
    /// for a write).
    pub fn set_stream_head(&mut self, stream: &str, seq: u64) {
        self.streams.insert(stream.to_owned(), seq);
    }

    pub fn twin_ids(&self) -> impl Iterator<Item = &str> {
        self.twins.keys().map(|k| &**k)
    }

    /// How many twins are of exactly `model`.
    pub fn model_count(&self, model: &str) -> usize {
        self.by_model.get(model).map_or(0, BTreeSet::len)
    }

    /// The models that have twins.
    pub fn twin_models(&self) -> impl Iterator<Item = &str> {
        self.by_model
            .iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(m, _)| &**m)
    }

    /// The graph's shared copy of a twin id (a new one if the twin is unknown).
    fn shared_id(&self, id: &str) -> Arc<str> {
        self.twins
            .get_key_value(id)
            .map_or_else(|| Arc::from(id), |(k, _)| k.clone())
    }

    /// Loads a twin from a snapshot (store startup).
    pub fn insert_twin(&mut self, mut t: Twin) {
        self.last_time = self.last_time.max(t.updated_at);
        // Share one copy of each model id among all its twins.
        match self.by_model.get_key_value(&*t.model) {
            Some((m, _)) => t.model = m.clone(),
            None => {
                self.by_model.insert(t.model.clone(), BTreeSet::new());
            }
        }
        if let Some(set) = self.by_model.get_mut(&*t.model) {
            set.insert(t.id.clone());
        }
        let names = &mut self.prop_names;
        t.intern_names(|k| intern(names, k));
        self.indexes_mut().insert(&t);
        self.twins.insert(t.id.clone(), Arc::new(t));
    }

    /// Loads a relationship from a snapshot (store startup).
    /// Room for `twins` more twins and `rels` more relationships, taken at
    /// once (before loading that many).
    pub fn reserve(&mut self, twins: usize, rels: usize) {
        self.twins.reserve(twins);
        self.rels.reserve(twins, rels);
    }

    /// Takes relationships loaded apart (see [`super::rels::RelLoader`]);
    /// the graph must have none yet.
    pub fn adopt_relationships(&mut self, loaded: super::rels::RelLoader) {
        debug_assert!(
            self.rels.is_empty(),
            "relationships adopted once, into an empty graph"
        );
        self.rels = loaded.store;
    }

    pub fn insert_relationship(&mut self, r: Relationship) {
        let (source, target) = (self.shared_id(&r.source), self.shared_id(&r.target));
        self.rels.insert(r, source, target);
    }

    /// Sets the position in the event log after loading a snapshot.
    pub fn set_position(&mut self, seq: u64, time: Micros) {
        self.last_seq = seq;
        self.last_time = self.last_time.max(time);
    }

    /// Outgoing relationships of a twin.
    pub fn outgoing(&self, twin: &str) -> impl Iterator<Item = RelView<'_>> {
        self.rels.outgoing(twin).map(|r| r.view())
    }

    /// Incoming relationships of a twin.
    pub fn incoming(&self, twin: &str) -> impl Iterator<Item = RelView<'_>> {
        self.rels.incoming(twin).map(|r| r.view())
    }

    /// Outgoing relationships of a twin, borrowed in full.
    pub fn outgoing_rows(&self, twin: &str) -> impl Iterator<Item = super::rels::RelRow<'_>> {
        self.rels.outgoing(twin).map(|r| r.row())
    }

    /// Twins that are the source of a relationship.
    pub fn relationship_sources(&self) -> impl Iterator<Item = &str> {
        self.rels.sources()
    }

    /// How many relationships the graph holds.
    pub fn relationship_count(&self) -> usize {
        self.rels.len()
    }

    /// Outgoing relationships of a twin, in full.
    pub fn outgoing_full(&self, twin: &str) -> Vec<Relationship> {
        self.rels
            .outgoing(twin)
            .map(|r| r.to_relationship())
            .collect()
    }

    /// Incoming relationships of a twin, in full.
    pub fn incoming_full(&self, twin: &str) -> Vec<Relationship> {
        self.rels
            .incoming(twin)
            .map(|r| r.to_relationship())
            .collect()
    }

    /// Ids of the twins of exactly `model` after `after` and before
    /// `before`, in order (either way).
    pub fn with_model_between<'a>(
        &'a self,
        model: &str,
        after: Option<&str>,
        before: Option<&str>,
    ) -> impl DoubleEndedIterator<Item = &'a str> + 'a {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let upper = before.map_or(Bound::Unbounded, Bound::Excluded);
        // (`range` panics on an empty range of two exclusive bounds.)
        let empty = after.zip(before).is_some_and(|(a, b)| a >= b);
        self.by_model
            .get(model)
            .filter(|_| !empty)
            .map(|set| set.range::<str, _>((lower, upper)))
            .into_iter()
            .flatten()
            .map(|k| &**k)
    }

    /// Folds a committed event into the graph.
    pub fn apply(&mut self, event: &Event) {
        self.advance(event);
        self.apply_state(event);
    }

    /// The log position `event` moves the graph to (sequence, time, its
    /// stream's head), without its change to twins and relationships (a
    /// replayed event whose entity is already stored as of a later event).
    pub fn advance(&mut self, event: &Event) {
        self.last_seq = self.last_seq.max(event.seq);
        self.last_time = self.last_time.max(event.time);
        if let Some(stream) = event.change.stream() {
            match self.streams.get_mut(stream) {
                Some(head) => *head = event.seq,
                None => {
                    self.streams.insert(stream.to_owned(), event.seq);
                }
            }
        }
    }

    /// What `event` changes of twins and relationships.
    fn apply_state(&mut self, event: &Event) {
        match &event.change {
            Change::TwinCreated { .. } => {
                if let Some(t) = Twin::created(event) {
                    self.insert_twin(t);
                }
            }
            Change::TwinDeleted { twin, .. } => {
                if let Some(t) = self.twins.remove(twin.as_str()) {
                    self.indexes_mut().remove(&t);
                    if let Some(set) = self.by_model.get_mut(&*t.model) {
                        set.remove(twin.as_str());
                    }
                }
            }
            Change::DesiredPatched { twin, .. }
            | Change::ReportedPatched { twin, .. }
            | Change::ConfigurationAssigned { twin, .. }
            | Change::ConfigurationRestored { twin, .. } => {
                if let Some(t) = self.twins.get_mut(twin.as_str()) {
                    let t = Arc::make_mut(t);
                    let indexes = self
                        .indexes
                        .get_mut()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    indexes.remove(t);
                    t.apply(event);
                    indexes.insert(t);
                    let names = &mut self.prop_names;
                    t.intern_names(|k| intern(names, k));
                }
            }
            Change::RelationshipCreated { relationship } => {
                self.insert_relationship(relationship.clone());
            }
            Change::RelationshipUpdated {
                source,
                id,
                version,
                properties,
                ..
            } => self
                .rels
                .update(source, id, properties, *version, event.time),
            Change::RelationshipDeleted { source, id, .. } => self.rels.remove(source, id),
            Change::ModelsChanged { .. } | Change::CommandInvoked { .. } | Change::Record(_) => {}
        }
    }

    fn indexes_mut(&mut self) -> &mut super::index::Indexes {
        self.indexes
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts planning writes on top of the current state.
    pub fn planner<'a>(&'a self, models: &'a ModelSet) -> Planner<'a> {
        Planner {
            g: self,
            models,
            twins: HashMap::new(),
            rels: HashMap::new(),
            journal: Vec::new(),
            next_seq: self.last_seq + 1,
            streams: HashMap::new(),
        }
    }
}

/// The shared copy of a name.
fn intern(set: &mut std::collections::HashSet<Arc<str>>, name: &Arc<str>) -> Arc<str> {
    match set.get(name) {
        Some(shared) => shared.clone(),
        None => {
            set.insert(name.clone());
            name.clone()
        }
    }
}

enum Undo {
    Twin(String, Option<Option<Twin>>),
    Rel(String, String, Option<Option<Relationship>>),
}

/// Validates batches and stages their effects; see the module docs.
pub struct Planner<'a> {
    g: &'a Graph,
    models: &'a ModelSet,
    /// Staged twins (`None` = deleted).
    twins: HashMap<String, Option<Twin>>,
    /// Staged relationships by source, then id (`None` = deleted).
    rels: HashMap<String, HashMap<String, Option<Relationship>>>,
    journal: Vec<Undo>,
    next_seq: u64,
    /// Stream heads moved by the batches planned so far.
    streams: HashMap<&'static str, u64>,
}

impl std::fmt::Debug for Planner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl Planner<'_> {
    /// Refuses a report stamped further ahead of `now` than the allowed
    /// clock skew.
    fn in_time(&self, op: &Op, now: Micros) -> Result<(), TwinError> {
        let Op::PatchReported {
            id,
            source_time: Some(at),
            ..
        } = op
        else {
            return Ok(());
        };
        let skew = self.g.config().max_clock_skew;
        if *at <= now.saturating_add(skew) {
            return Ok(());
        }
        Err(TwinError::SourceTimeAhead {
            twin: id.clone(),
            ahead_seconds: at.saturating_sub(now) / 1_000_000,
            skew_seconds: skew / 1_000_000,
        })
    }

    /// Plans one batch: its events, numbered from the planner's next
    /// sequence number, or the first failing operation (and nothing staged).
    pub fn plan(
        &mut self,
        batch: &Batch,
        now: Micros,
        actor: &str,
    ) -> Result<Vec<Event>, BatchError> {
        let mark = self.journal.len();
        let seq_mark = self.next_seq;
        let mut events = Vec::with_capacity(batch.ops.len());
        for (index, op) in batch.ops.iter().enumerate() {
            let planned = match op {
                Op::ExpectStream { stream, seq } => self.expect_stream(stream, *seq).map(|()| None),
                _ => self.in_time(op, now).and_then(|()| self.op(op)).map(Some),
            };
            match planned {
                Ok(None) => {}
                Ok(Some(mut change)) => {
                    if let Change::RelationshipCreated { relationship } = &mut change {
                        relationship.created_at = now;
                        relationship.updated_at = now;
                    }
                    let event = Event {
                        seq: self.next_seq,
                        time: now,
                        actor: actor.to_owned(),
                        change,
                    };
                    self.next_seq += 1;
                    self.stage(&event);
                    events.push(event);
                }
                Err(error) => {
                    self.rollback(mark);
                    self.next_seq = seq_mark;
                    return Err(BatchError { index, error });
                }
            }
        }
        for e in &events {
            if let Some(stream) = e.change.stream() {
                self.streams.insert(stream, e.seq);
            }
        }
        Ok(events)
    }

    /// Passes when `stream` ends at `seq` (counting batches planned before).
    fn expect_stream(&self, stream: &str, seq: u64) -> Result<(), TwinError> {
        let current = self
            .streams
            .get(stream)
            .copied()
            .unwrap_or_else(|| self.g.stream_head(stream));
        if current == seq {
            Ok(())
        } else {
            Err(TwinError::StreamMoved {
                stream: stream.to_owned(),
                expected: seq,
                current,
            })
        }
    }

    /// Plans a model-set change event.
    pub fn models_changed(
        &mut self,
        models: Vec<String>,
        documents: Vec<Value>,
        now: Micros,
        actor: &str,
    ) -> Event {
        let e = Event {
            seq: self.next_seq,
            time: now,
            actor: actor.to_owned(),
            change: Change::ModelsChanged { models, documents },
        };
        self.next_seq += 1;
        e
    }

    /// The state staged by the successful batches: twins and relationships
    /// as they will be once committed (`None` = deleted).
    pub fn into_staged(self) -> Staged {
        Staged {
            twins: self.twins.into_iter().collect(),
            rels: self
                .rels
                .into_iter()
                .flat_map(|(source, m)| m.into_iter().map(move |(id, r)| ((source.clone(), id), r)))
                .collect(),
        }
    }

    fn rollback(&mut self, mark: usize) {
        while self.journal.len() > mark {
            match self.journal.pop() {
                Some(Undo::Twin(k, prev)) => match prev {
                    Some(p) => {
                        self.twins.insert(k, p);
                    }
                    None => {
                        self.twins.remove(&k);
                    }
                },
                Some(Undo::Rel(source, id, prev)) => {
                    let m = self.rels.entry(source).or_default();
                    match prev {
                        Some(p) => {
                            m.insert(id, p);
                        }
                        None => {
                            m.remove(&id);
                        }
                    }
                }
                None => break,
            }
        }
    }

    fn set_twin(&mut self, id: String, t: Option<Twin>) {
        let prev = self.twins.insert(id.clone(), t);
        self.journal.push(Undo::Twin(id, prev));
    }

    fn set_rel(&mut self, source: &str, id: &str, r: Option<Relationship>) {
        let prev = self
            .rels
            .entry(source.to_owned())
            .or_default()
            .insert(id.to_owned(), r);
        self.journal
            .push(Undo::Rel(source.to_owned(), id.to_owned(), prev));
    }

    /// Stages the effect of a planned event.
    fn stage(&mut self, e: &Event) {
        match &e.change {
            Change::TwinCreated { twin, .. } => {
                let t = Twin::created(e);
                self.set_twin(twin.clone(), t);
            }
            Change::TwinDeleted { twin, .. } => self.set_twin(twin.clone(), None),
            Change::DesiredPatched { twin, .. }
            | Change::ReportedPatched { twin, .. }
            | Change::ConfigurationAssigned { twin, .. }
            | Change::ConfigurationRestored { twin, .. } => {
                if let Some(mut t) = self.twin(twin).cloned() {
                    t.apply(e);
                    self.set_twin(twin.clone(), Some(t));
                }
            }
            Change::RelationshipCreated { relationship: r } => {
                self.set_rel(&r.source, &r.id, Some(r.clone()));
            }
            Change::RelationshipUpdated {
                source,
                id,
                version,
                properties,
                ..
            } => {
                if let Some(mut r) = self.rel(source, id) {
                    r.update(properties, *version, e.time);
                    self.set_rel(source, id, Some(r));
                }
            }
            Change::RelationshipDeleted { source, id, .. } => {
                self.set_rel(source, id, None);
            }
            Change::ModelsChanged { .. } | Change::CommandInvoked { .. } | Change::Record(_) => {}
        }
    }

    fn twin(&self, id: &str) -> Option<&Twin> {
        match self.twins.get(id) {
            Some(staged) => staged.as_ref(),
            None => self.g.twin(id),
        }
    }

    fn staged_rel(&self, source: &str, id: &str) -> Option<&Option<Relationship>> {
        self.rels.get(source).and_then(|m| m.get(id))
    }

    /// A relationship as staged or committed.
    fn rel(&self, source: &str, id: &str) -> Option<Relationship> {
        match self.staged_rel(source, id) {
            Some(staged) => staged.clone(),
            None => self.g.relationship(source, id),
        }
    }

    /// A relationship that must exist, at the expected version if one is given.
    fn existing_rel(
        &self,
        source: &str,
        id: &str,
        expected: Option<u64>,
    ) -> Result<Relationship, TwinError> {
        let r = self
            .rel(source, id)
            .ok_or_else(|| TwinError::RelationshipNotFound {
                source_id: source.to_owned(),
                id: id.to_owned(),
            })?;
        check_version(&format!("{source}/{id}"), expected, r.version)?;
        Ok(r)
    }

    /// Relationships touching `twin` (outgoing when `out`, else incoming), staged ones included.
    fn rels_of(&self, twin: &str, out: bool) -> Vec<RelView<'_>> {
        let base: Vec<RelView<'_>> = if out {
            self.g.outgoing(twin).collect()
        } else {
            self.g.incoming(twin).collect()
        };
        let mut v: Vec<RelView<'_>> = base
            .into_iter()
            .filter(|r| self.staged_rel(r.source, r.id).is_none())
            .collect();
        for r in self.rels.values().flat_map(HashMap::values).flatten() {
            if (if out { &r.source } else { &r.target }) == twin {
                v.push(RelView::from(r));
            }
        }
        v
    }

    fn interface(&self, twin: &Twin) -> Result<&Interface, TwinError> {
        self.models
            .interface(&twin.model)
            .ok_or_else(|| TwinError::UnknownModel(twin.model.to_string()))
    }

    fn op(&mut self, op: &Op) -> Result<Change, TwinError> {
        match op {
            // Records of other domains only: a twin change always goes
            // through the validation below.
            Op::Record { change }
                if matches!(**change, Change::Record(_)) || change.stream().is_some() =>
            {
                Ok((**change).clone())
            }
            // Checked by `plan` itself: it plans no change.
            Op::ExpectStream { stream, seq } => Err(TwinError::StreamMoved {
                stream: stream.clone(),
                expected: *seq,
                current: self.g.stream_head(stream),
            }),
            Op::Record { .. } => Err(TwinError::invalid(
                "",
                "",
                "only records of other domains may be recorded as such",
            )),
            Op::AssignConfiguration {
                id,
                configuration,
                assignment,
                expected_version,
                force,
            } => self.assign(id, configuration, assignment, *expected_version, *force),
            Op::RestoreConfiguration {
                id,
                configuration,
                rollout,
                previous,
            } => {
                let t = self
                    .twin(id)
                    .ok_or_else(|| TwinError::NotFound(id.clone()))?;
                Ok(Change::ConfigurationRestored {
                    twin: id.clone(),
                    version: t.version + 1,
                    configuration: configuration.clone(),
                    rollout: rollout.clone(),
                    assignment: previous.assignment.clone(),
                    entries: previous.desired.clone(),
                })
            }
            Op::CreateTwin {
                id,
                model,
                desired,
                reported,
            } => {
                id::check(id)?;
                if self.twin(id).is_some() {
                    return Err(TwinError::AlreadyExists(id.clone()));
                }
                let iface = self
                    .models
                    .interface(model)
                    .ok_or_else(|| TwinError::UnknownModel(model.clone()))?;
                let empty = Twin::blank(id, model.as_str());
                let mut entries = Vec::new();
                if let Some(p) = desired {
                    entries.extend(self.patch_entries(&empty, iface, p, Side::Desired, None)?.0);
                }
                if let Some(p) = reported {
                    entries.extend(
                        self.patch_entries(&empty, iface, p, Side::Reported, None)?
                            .0,
                    );
                }
                Ok(Change::TwinCreated {
                    twin: id.clone(),
                    model: model.clone(),
                    entries,
                })
            }
            Op::DeleteTwin {
                id,
                expected_version,
            } => {
                let t = self
                    .twin(id)
                    .ok_or_else(|| TwinError::NotFound(id.clone()))?;
                check_version(id, *expected_version, t.version)?;
                let count = self.rels_of(id, true).len() + self.rels_of(id, false).len();
                if count > 0 {
                    return Err(TwinError::HasRelationships {
                        twin: id.clone(),
                        count,
                    });
                }
                Ok(Change::TwinDeleted {
                    twin: id.clone(),
                    version: t.version + 1,
                })
            }
            Op::PatchDesired {
                id,
                patch,
                expected_version,
            } => {
                let t = self
                    .twin(id)
                    .ok_or_else(|| TwinError::NotFound(id.clone()))?;
                check_version(id, *expected_version, t.version)?;
                let iface = self.interface(t)?;
                let (entries, _) = self.patch_entries(t, iface, patch, Side::Desired, None)?;
                Ok(Change::DesiredPatched {
                    twin: id.clone(),
                    version: t.version + 1,
                    patch: patch.clone(),
                    entries,
                })
            }
            Op::PatchReported {
                id,
                patch,
                expected_version,
                source_time,
            } => {
                let t = self
                    .twin(id)
                    .ok_or_else(|| TwinError::NotFound(id.clone()))?;
                check_version(id, *expected_version, t.version)?;
                let iface = self.interface(t)?;
                let (entries, stale) =
                    self.patch_entries(t, iface, patch, Side::Reported, *source_time)?;
                Ok(Change::ReportedPatched {
                    twin: id.clone(),
                    version: t.version + 1,
                    patch: patch.clone(),
                    entries,
                    stale,
                })
            }
            Op::InvokeCommand {
                id,
                component,
                command,
                request,
            } => {
                let t = self
                    .twin(id)
                    .ok_or_else(|| TwinError::NotFound(id.clone()))?;
                let mut iface = self.interface(t)?;
                if let Some(c) = component {
                    let schema = match iface.content(c).map(|x| &x.kind) {
                        Some(ContentKind::Component { schema }) => schema,
                        _ => {
                            return Err(TwinError::invalid(
                                id,
                                c.as_str(),
                                format!("{} has no Component {c}", t.model),
                            ));
                        }
                    };
                    iface = self
                        .models
                        .interface(schema)
                        .ok_or_else(|| TwinError::UnknownModel(schema.clone()))?;
                }
                let path = match component {
                    Some(c) => format!("{c}.{command}"),
                    None => command.clone(),
                };
                let payload = match iface.content(command).map(|x| &x.kind) {
                    Some(ContentKind::Command { request, .. }) => request,
                    _ => {
                        return Err(TwinError::invalid(
                            id,
                            path,
                            format!("{} declares no command {command}", iface.id),
                        ));
                    }
                };
                match (payload, request) {
                    (Some(p), Some(v)) if !v.is_null() => {
                        validate(&p.schema, v).map_err(|m| {
                            TwinError::invalid(
                                id,
                                format!("{path}.{}{}", p.name, m.path),
                                m.message,
                            )
                        })?;
                    }
                    (None, Some(v)) if !v.is_null() => {
                        return Err(TwinError::invalid(
                            id,
                            path,
                            format!("command {command} takes no request"),
                        ));
                    }
                    _ => {}
                }
                Ok(Change::CommandInvoked {
                    twin: id.clone(),
                    component: component.clone(),
                    command: command.clone(),
                    request: request.clone().filter(|v| !v.is_null()),
                    invocation: uuid::Uuid::new_v4().to_string(),
                })
            }
            Op::CreateRelationship {
                source,
                id,
                name,
                target,
                properties,
            } => self.create_relationship(source, id.as_deref(), name, target, properties.as_ref()),
            Op::UpdateRelationship {
                source,
                id,
                patch,
                expected_version,
            } => {
                let r = self.existing_rel(source, id, *expected_version)?;
                let src = self
                    .twin(source)
                    .ok_or_else(|| TwinError::NotFound(source.clone()))?;
                let iface = self.interface(src)?;
                let decl = relationship_decl(iface, &r.name).ok_or_else(|| {
                    TwinError::invalid(
                        source,
                        &r.name,
                        "relationship is no longer declared by the model",
                    )
                })?;
                let mut props = Value::Object(r.properties.clone());
                merge_patch(&mut props, patch);
                let properties = self.relationship_properties(source, decl, &props)?;
                Ok(Change::RelationshipUpdated {
                    source: source.clone(),
                    id: id.clone(),
                    version: r.version + 1,
                    patch: patch.clone(),
                    properties,
                })
            }
            Op::DeleteRelationship {
                source,
                id,
                expected_version,
            } => {
                let r = self.existing_rel(source, id, *expected_version)?;
                Ok(Change::RelationshipDeleted {
                    source: source.clone(),
                    id: id.clone(),
                    target: r.target.clone(),
                    name: r.name.clone(),
                })
            }
        }
    }

    fn create_relationship(
        &self,
        source: &str,
        id: Option<&str>,
        name: &str,
        target: &str,
        properties: Option<&Value>,
    ) -> Result<Change, TwinError> {
        let src = self
            .twin(source)
            .ok_or_else(|| TwinError::NotFound(source.to_owned()))?;
        let iface = self.interface(src)?;
        let decl = relationship_decl(iface, name).ok_or_else(|| {
            TwinError::invalid(
                source,
                name,
                format!("model {} declares no relationship \"{name}\"", iface.id),
            )
        })?;
        let tgt = self
            .twin(target)
            .ok_or_else(|| TwinError::NotFound(target.to_owned()))?;
        let ContentKind::Relationship {
            target: allowed,
            max_multiplicity,
            ..
        } = &decl.kind
        else {
            return Err(TwinError::invalid(source, name, "not a relationship"));
        };
        if let Some(allowed) = allowed {
            let tiface = self.interface(tgt)?;
            if !tiface.is_a(allowed) {
                return Err(TwinError::invalid(
                    source,
                    name,
                    format!(
                        "target {target} has model {}, which is not {allowed} or a subtype of it",
                        tgt.model
                    ),
                ));
            }
        }
        let rel_id = match id {
            Some(i) => {
                id::check(i)?;
                i.to_owned()
            }
            None => uuid::Uuid::new_v4().to_string(),
        };
        if self.rel(source, &rel_id).is_some() {
            return Err(TwinError::RelationshipExists {
                source_id: source.to_owned(),
                id: rel_id,
            });
        }
        let existing = self.rels_of(source, true);
        if let Some(max) = max_multiplicity {
            let count = existing.iter().filter(|r| r.name == name).count();
            if i64::try_from(count).unwrap_or(i64::MAX) >= *max {
                return Err(TwinError::Multiplicity {
                    twin: source.to_owned(),
                    name: name.to_owned(),
                    max: *max,
                });
            }
        }
        if name == self.g.config.containment {
            self.check_containment(source, target)?;
        }
        let props = properties
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()));
        let properties = self.relationship_properties(source, decl, &props)?;
        Ok(Change::RelationshipCreated {
            relationship: Relationship {
                id: rel_id,
                source: source.to_owned(),
                name: name.to_owned(),
                target: target.to_owned(),
                properties,
                version: 1,
                created_at: 0,
                updated_at: 0,
            },
        })
    }

    /// A twin has at most one container, and containment has no cycles.
    fn check_containment(&self, source: &str, target: &str) -> Result<(), TwinError> {
        let containment = &self.g.config.containment;
        if let Some(existing) = self
            .rels_of(target, false)
            .into_iter()
            .find(|r| r.name == containment)
        {
            return Err(TwinError::Containment {
                twin: target.to_owned(),
                message: format!("it is already contained by {}", existing.source),
            });
        }
        // Walk up from the source: the target must not be among its containers.
        let mut current = source.to_owned();
        let mut steps = 0usize;
        loop {
            if current == target {
                return Err(TwinError::Containment {
                    twin: target.to_owned(),
                    message: format!(
                        "{target} contains {source} (directly or not): containment cannot form a cycle"
                    ),
                });
            }
            let parent = self
                .rels_of(&current, false)
                .into_iter()
                .find(|r| r.name == containment)
                .map(|r| r.source.to_owned());
            match parent {
                Some(p) if steps < 1_000_000 => {
                    current = p;
                    steps += 1;
                }
                _ => return Ok(()),
            }
        }
    }

    fn relationship_properties(
        &self,
        twin: &str,
        decl: &Content,
        props: &Value,
    ) -> Result<Map<String, Value>, TwinError> {
        let ContentKind::Relationship { properties, .. } = &decl.kind else {
            return Ok(Map::new());
        };
        let Value::Object(m) = props else {
            return Err(TwinError::invalid(
                twin,
                &decl.name,
                "relationship properties must be an object",
            ));
        };
        for (k, v) in m {
            let Some(p) = properties.iter().find(|p| &p.name == k) else {
                return Err(TwinError::invalid(
                    twin,
                    format!("{}.{k}", decl.name),
                    format!("relationship \"{}\" has no property \"{k}\"", decl.name),
                ));
            };
            if let ContentKind::Property { schema, .. } = &p.kind {
                validate(schema, v).map_err(|m| {
                    TwinError::invalid(twin, format!("{}.{k}{}", decl.name, m.path), m.message)
                })?;
            }
        }
        Ok(m.clone())
    }

    /// Validates a desired or reported patch against the twin's model and
    /// returns the resulting entries (and, for reported, the stale paths).
    fn patch_entries(
        &self,
        twin: &Twin,
        iface: &Interface,
        patch: &Value,
        side: Side,
        source_time: Option<Micros>,
    ) -> Result<(Vec<Entry>, Vec<String>), TwinError> {
        let Value::Object(members) = patch else {
            return Err(TwinError::invalid(
                &twin.id,
                "",
                "a patch must be a JSON object",
            ));
        };
        let mut entries = Vec::new();
        let mut stale = Vec::new();
        for (key, value) in members {
            let content = iface.content(key).ok_or_else(|| {
                TwinError::invalid(
                    &twin.id,
                    key,
                    format!("model {} has no property or telemetry \"{key}\"", iface.id),
                )
            })?;
            if let ContentKind::Component { schema } = &content.kind {
                let comp_iface = self
                    .models
                    .interface(schema)
                    .ok_or_else(|| TwinError::UnknownModel(schema.clone()))?;
                let Value::Object(inner) = value else {
                    return Err(TwinError::invalid(
                        &twin.id,
                        key,
                        "a component patch must be an object",
                    ));
                };
                for (k, v) in inner {
                    let c = comp_iface.content(k).ok_or_else(|| {
                        TwinError::invalid(
                            &twin.id,
                            format!("{key}.{k}"),
                            format!(
                                "component model {} has no property or telemetry \"{k}\"",
                                comp_iface.id
                            ),
                        )
                    })?;
                    self.entry(
                        twin,
                        Some(key),
                        c,
                        v,
                        side,
                        source_time,
                        &mut entries,
                        &mut stale,
                    )?;
                }
            } else {
                self.entry(
                    twin,
                    None,
                    content,
                    value,
                    side,
                    source_time,
                    &mut entries,
                    &mut stale,
                )?;
            }
        }
        Ok((entries, stale))
    }

    /// Plans assigning a configuration to a twin: its values are checked
    /// as whole desired values of the twin's model; every property it sets
    /// (or set before) takes the value of the highest-ranked configuration
    /// that sets it, recording what it replaced.
    fn assign(
        &self,
        id: &str,
        configuration: &str,
        assignment: &Assignment,
        expected: Option<u64>,
        force: bool,
    ) -> Result<Change, TwinError> {
        let t = self
            .twin(id)
            .ok_or_else(|| TwinError::NotFound(id.to_owned()))?;
        check_version(id, expected, t.version)?;
        let iface = self.interface(t)?;
        let blank = Twin::blank(id, t.model.clone());
        let (checked, _) =
            self.patch_entries(&blank, iface, &assignment.values, Side::Desired, None)?;
        let mut after = t.clone();
        let old = after.configurations.insert(
            configuration.to_owned(),
            Assignment {
                seq: self.next_seq,
                ..assignment.clone()
            },
        );
        let mut paths: Vec<(Option<String>, String)> =
            checked.into_iter().map(|e| (e.component, e.name)).collect();
        if let Some(old) = &old {
            paths.extend(old.paths(|k| {
                matches!(
                    iface.content(k).map(|c| &c.kind),
                    Some(ContentKind::Component { .. })
                )
            }));
        }
        paths.sort();
        paths.dedup();
        let mut entries = Vec::new();
        let mut replaced = Vec::new();
        for (component, name) in paths {
            let Some((winner, w)) = after.deciding(component.as_deref(), &name) else {
                continue;
            };
            let Some(value) = w.value(component.as_deref(), &name) else {
                continue;
            };
            let source = DesiredSource {
                configuration: winner.to_owned(),
                version: w.version,
                rollout: w.rollout.clone(),
            };
            let current = t
                .component(component.as_deref())
                .and_then(|c| c.props.get(&name))
                .and_then(|p| p.desired.as_deref());
            if !force
                && current
                    .is_some_and(|d| d.value == *value && d.source.as_deref() == Some(&source))
            {
                continue;
            }
            replaced.push(Entry {
                side: Side::Desired,
                component: component.clone(),
                name: name.clone(),
                value: current.map(|d| d.value.clone()),
                source_time: None,
                ack: None,
                source: current.and_then(|d| d.source.clone()),
            });
            entries.push(Entry {
                side: Side::Desired,
                component,
                name,
                value: Some(value.clone()),
                source_time: None,
                ack: None,
                source: Some(Box::new(source)),
            });
        }
        Ok(Change::ConfigurationAssigned {
            twin: id.to_owned(),
            version: t.version + 1,
            configuration: configuration.to_owned(),
            assignment: Assignment {
                seq: self.next_seq,
                ..assignment.clone()
            },
            previous: Previous {
                assignment: old,
                desired: replaced,
            },
            entries,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        twin: &Twin,
        component: Option<&str>,
        content: &Content,
        value: &Value,
        side: Side,
        source_time: Option<Micros>,
        entries: &mut Vec<Entry>,
        stale: &mut Vec<String>,
    ) -> Result<(), TwinError> {
        let path = match component {
            Some(c) => format!("{c}.{}", content.name),
            None => content.name.clone(),
        };
        let (schema, writable) = match (&content.kind, side) {
            (ContentKind::Property { schema, writable }, _) => (schema, *writable),
            (ContentKind::Telemetry { schema }, Side::Reported) => (schema, false),
            (ContentKind::Telemetry { .. }, Side::Desired) => {
                return Err(TwinError::invalid(
                    &twin.id,
                    path,
                    "telemetry has no desired state",
                ));
            }
            _ => {
                return Err(TwinError::invalid(
                    &twin.id,
                    path,
                    "only properties (and, when reported, telemetry) carry state",
                ));
            }
        };
        if side == Side::Desired && !writable {
            return Err(TwinError::invalid(
                &twin.id,
                path,
                "the property is not writable, so it has no desired state",
            ));
        }
        let current = twin
            .component(component)
            .and_then(|c| c.props.get(&content.name));
        if side == Side::Reported
            && let (Some(new), Some(old)) = (
                source_time,
                current
                    .and_then(|p| p.reported.as_ref())
                    .and_then(|r| r.source_time),
            )
            && new < old
        {
            stale.push(path);
            return Ok(());
        }
        // A reported writable property may come as an acknowledgement envelope.
        let (value, ack) = match (side, writable) {
            (Side::Reported, true) => {
                split_ack(value).map_err(|m| TwinError::invalid(&twin.id, &path, m))?
            }
            _ => (Some(value.clone()), None),
        };
        let has_value = value.is_some();
        // An acknowledgement without a value (a rejection, typically)
        // keeps the value reported before; with none before, the
        // acknowledgement lives on a null value.
        let resulting = if let Some(value) = value.filter(|v| !v.is_null()) {
            let before = current.and_then(|p| match side {
                Side::Desired => p.desired.as_ref().map(|d| &d.value),
                Side::Reported => p.reported.as_ref().map(|r| &r.value),
            });
            let merged = match (before, schema) {
                (Some(b), Schema::Object { .. } | Schema::Map { .. }) if value.is_object() => {
                    let mut m = b.clone();
                    merge_patch(&mut m, &value);
                    m
                }
                _ => value,
            };
            validate(schema, &merged).map_err(|m| {
                TwinError::invalid(&twin.id, format!("{path}{}", m.path), m.message)
            })?;
            Some(merged)
        } else if ack.is_some() && !has_value {
            Some(
                current
                    .and_then(|p| p.reported.as_ref())
                    .map_or(Value::Null, |r| r.value.clone()),
            )
        } else {
            None
        };
        entries.push(Entry {
            side,
            component: component.map(str::to_owned),
            name: content.name.clone(),
            value: resulting,
            source_time: if side == Side::Reported {
                source_time
            } else {
                None
            },
            ack,
            source: None,
        });
        Ok(())
    }
}

/// Splits `{"value": v, "ac": code, "av": version, "ad": "text"}` into the
/// value and its acknowledgement; any other value has no acknowledgement.
/// A reported value and its acknowledgement; the value is `None` when an
/// acknowledgement envelope carries none.
fn split_ack(v: &Value) -> Result<(Option<Value>, Option<Ack>), String> {
    let Value::Object(m) = v else {
        return Ok((Some(v.clone()), None));
    };
    let is_envelope = m.contains_key("ac")
        && m.keys()
            .all(|k| matches!(k.as_str(), "value" | "ac" | "av" | "ad"));
    if !is_envelope {
        return Ok((Some(v.clone()), None));
    }
    let code = m
        .get("ac")
        .and_then(Value::as_i64)
        .ok_or("\"ac\" must be an integer status code")?;
    let version = match m.get("av") {
        None => 0,
        Some(a) => a
            .as_u64()
            .ok_or("\"av\" must be the desired version acknowledged")?,
    };
    let description = match m.get("ad") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("\"ad\" must be a string".to_owned()),
    };
    let value = m.get("value").cloned();
    Ok((
        value,
        Some(Ack {
            code,
            version,
            description,
        }),
    ))
}

fn check_version(what: &str, expected: Option<u64>, current: u64) -> Result<(), TwinError> {
    match expected {
        Some(e) if e != current => Err(TwinError::Conflict {
            twin: what.to_owned(),
            expected: e,
            current,
        }),
        _ => Ok(()),
    }
}

/// The Relationship content `name` of an interface (inherited ones included).
fn relationship_decl<'i>(iface: &'i Interface, name: &str) -> Option<&'i Content> {
    iface
        .content(name)
        .filter(|c| matches!(c.kind, ContentKind::Relationship { .. }))
}
