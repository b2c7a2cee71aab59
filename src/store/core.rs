//! The store shared by every journal: reads from the in-memory graph, writes
//! through one writer thread with group commit.
//!
//! Writers send their batch to the writer thread and wait. The thread takes
//! every request waiting (up to [`MAX_GROUP`]), plans them one after another
//! (each sees the ones before it), commits all their events and state in one
//! journal commit (one fsync), then applies them to the graph and answers
//! each writer. A batch that fails validation is answered at once and takes
//! nothing with it; a failed commit fails the whole group and changes
//! nothing. Readers only ever see committed state.
//!
//! Locks: `graph` is a std `RwLock`, held briefly and never across `.await`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot};

use super::journal::Journal;
use super::{AggregateQuery, At, GraphStore, Page, StoreError, TwinQuery};
use crate::dtdl::ModelSet;
use crate::twin::TwinError;
use crate::twin::aggregate::{Aggregate, Stats, Tally};
use crate::twin::clock::{Clock, SystemClock};
use crate::twin::event::MODELS_STREAM;
use crate::twin::graph::RelKey;
use crate::twin::query::{DEFAULT_MAX_DEPTH, Direction, Reach, Reached, Traversal};
use crate::twin::{Batch, Change, Event, Graph, GraphConfig, Micros, Relationship, Twin};

/// Most requests committed together.
pub const MAX_GROUP: usize = 1024;

/// Behaviour settings common to every store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub graph: GraphConfig,
    /// Deepest traversal accepted.
    pub max_depth: usize,
    /// Keep events for this long (`None`: forever).
    pub retention: Option<std::time::Duration>,
    /// Memory the storage engine may use to cache pages (embedded store).
    pub storage_cache_bytes: usize,
    /// Events buffered for live subscribers; one that falls further behind
    /// is told it lagged (memory per subscriber stays bounded).
    pub live_buffer: usize,
    /// What events and leases are stamped with.
    pub clock: Arc<dyn Clock>,
    /// When the embedded store starts a checkpoint (the current state of
    /// what changed, written so startup need not replay it): this many
    /// changed twins and relationships, this many events, or this long
    /// after the last, whichever comes first. Startup replays at most
    /// about `checkpoint_events` plus what a checkpoint takes to write.
    pub checkpoint_rows: usize,
    pub checkpoint_events: u64,
    pub checkpoint_every: std::time::Duration,
    /// Rows of a checkpoint written with each commit, at least (it is
    /// spread over the commits after it starts).
    pub checkpoint_chunk: usize,
    /// A chunk of a checkpoint is committed to the state file without
    /// waiting for the disk, and durably when this long has passed since
    /// the last durable one (and with its last row). A crash loses the
    /// chunks since: replay makes them good.
    pub checkpoint_sync: std::time::Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            graph: GraphConfig::default(),
            max_depth: DEFAULT_MAX_DEPTH,
            retention: None,
            storage_cache_bytes: machine_cache_bytes(),
            live_buffer: 4096,
            clock: Arc::new(SystemClock),
            checkpoint_rows: 500_000,
            checkpoint_events: StoreConfig::default_checkpoint_events(),
            checkpoint_every: std::time::Duration::from_secs(30),
            checkpoint_chunk: 512,
            checkpoint_sync: std::time::Duration::from_secs(1),
        }
    }
}

/// The embedded store's page cache unless set: 1/64 of the memory this
/// process may use (the machine's, or its cgroup's limit when lower),
/// between 16 MiB and 512 MiB. Reads are served from the in-memory graph;
/// the cache holds the pages writes touch (the log's tail, the state and
/// history-head rows checkpoints rewrite), so it need not grow with the
/// store, and what it takes stays small beside the graph itself.
pub fn machine_cache_bytes() -> usize {
    const MIB: u64 = 1024 * 1024;
    let total = machine_memory_bytes().unwrap_or(1024 * MIB);
    usize::try_from((total / 64).clamp(16 * MIB, 512 * MIB)).unwrap_or(usize::MAX)
}

/// Memory this process may use: physical memory (`/proc/meminfo`), or the
/// cgroup's limit (`/sys/fs/cgroup/memory.max`) when lower.
pub fn machine_memory_bytes() -> Option<u64> {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)?;
    let limit = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok());
    Some(limit.map_or(physical, |l| l.min(physical)))
}

impl StoreConfig {
    /// Events after which a checkpoint starts, unless set.
    pub const fn default_checkpoint_events() -> u64 {
        500_000
    }
}

type BatchReply = oneshot::Sender<Result<Vec<Event>, StoreError>>;

enum Request {
    Batch {
        batch: Batch,
        actor: String,
        reply: BatchReply,
    },
    Models {
        models: Arc<ModelSet>,
        documents: Vec<serde_json::Value>,
        expect: Option<u64>,
        actor: String,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

struct Shared {
    graph: RwLock<Graph>,
    models: RwLock<Arc<ModelSet>>,
    journal: Arc<dyn Journal>,
    events: broadcast::Sender<Arc<Event>>,
    /// Consumers of every commit (see [`GraphStore::feed`]).
    feeds: Mutex<Vec<tokio::sync::mpsc::Sender<crate::store::Committed>>>,
    last_seq: AtomicU64,
    /// Moves whenever the containment hierarchy changes.
    hierarchy: AtomicU64,
    config: StoreConfig,
}

/// A twin store: the in-memory graph over a [`Journal`].
pub struct Store {
    shared: Arc<Shared>,
    tx: Mutex<Option<std::sync::mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Leases among the users of this store (one process holds the store).
    leases: Mutex<std::collections::HashMap<String, super::Lease>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("journal", &self.shared.journal)
            .field("last_seq", &self.shared.last_seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Graph updates are plain inserts/removes done after a successful commit;
    // a panic mid-way cannot happen on input, so poisoning is only reported.
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Store {
    /// Starts a store over `journal`, with `graph` as the state it holds.
    pub fn start(
        graph: Graph,
        models: Arc<ModelSet>,
        journal: Arc<dyn Journal>,
        config: StoreConfig,
    ) -> Store {
        let (events, _) = broadcast::channel(config.live_buffer.max(1));
        let shared = Arc::new(Shared {
            last_seq: AtomicU64::new(graph.last_seq()),
            hierarchy: AtomicU64::new(0),
            graph: RwLock::new(graph),
            models: RwLock::new(models),
            journal,
            events,
            feeds: Mutex::new(Vec::new()),
            config,
        });
        let (tx, rx) = std::sync::mpsc::channel::<Request>();
        let worker = shared.clone();
        let writer = std::thread::Builder::new()
            .name("twingraph-writer".to_owned())
            .spawn(move || writer_loop(&worker, &rx))
            .ok();
        Store {
            shared,
            tx: Mutex::new(writer.as_ref().map(|_| tx)),
            writer: Mutex::new(writer),
            leases: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A store whose events live in memory only.
    pub fn in_memory(models: Arc<ModelSet>, config: StoreConfig) -> Store {
        let journal = Arc::new(super::memory::MemoryJournal::new());
        Store::start(Graph::new(config.graph.clone()), models, journal, config)
    }

    /// Applies the retention setting now: removes events older than it
    /// (never the current state, never events a restart still needs).
    /// Returns how many were removed. The writer also does this periodically.
    pub fn prune_history(&self) -> Result<usize, StoreError> {
        match self.shared.config.retention {
            Some(keep) => self
                .shared
                .journal
                .prune_before(retention_horizon(self.shared.config.clock.now(), keep)),
            None => Ok(0),
        }
    }

    /// Stops accepting writes and waits for the writer to finish what it holds.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = h.join();
            let graph = read(&self.shared.graph);
            if let Err(e) = self.shared.journal.flush(&graph) {
                tracing_free_warning(&e);
            }
        }
    }

    fn send(&self, req: Request) -> Result<(), StoreError> {
        let tx = self.tx.lock().map_err(|_| StoreError::Closed)?;
        tx.as_ref()
            .ok_or(StoreError::Closed)?
            .send(req)
            .map_err(|_| StoreError::Closed)
    }

    fn graph(&self) -> std::sync::RwLockReadGuard<'_, Graph> {
        read(&self.shared.graph)
    }

    fn check_history(&self, at: At) -> Result<(), StoreError> {
        let first = self.shared.journal.first_seq();
        if first > 1 {
            let too_old = match at {
                At::Seq(s) => s < first,
                // Before the oldest event kept: some of that time is gone.
                At::Time(t) => self
                    .shared
                    .journal
                    .events_after(first - 1, 1)?
                    .first()
                    .is_none_or(|e| t < e.time),
            };
            if too_old {
                return Err(StoreError::Pruned(first));
            }
        }
        Ok(())
    }
}

/// A failed flush on shutdown loses nothing (the events are durable; the next
/// start replays them), so it is only reported.
fn tracing_free_warning(e: &StoreError) {
    eprintln!(
        "twingraph: could not write a checkpoint on shutdown ({e}); the next start will replay the log"
    );
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop(shared: &Shared, rx: &std::sync::mpsc::Receiver<Request>) {
    let mut commits: u64 = 0;
    let mut pending: Option<Request> = None;
    loop {
        let first = match pending.take() {
            Some(r) => r,
            None => match rx.recv() {
                Ok(r) => r,
                Err(_) => return, // every sender dropped: shut down
            },
        };
        if let Request::Models {
            models,
            documents,
            expect,
            actor,
            reply,
        } = first
        {
            let r = commit_models(shared, models, documents, expect, &actor);
            let _ = reply.send(r);
            continue;
        }
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r @ Request::Batch { .. }) => group.push(r),
                Ok(r @ Request::Models { .. }) => {
                    pending = Some(r);
                    break;
                }
                Err(_) => break,
            }
        }
        commit_group(shared, group);
        commits += 1;
        if let Some(keep) = shared.config.retention
            && commits.is_multiple_of(1000)
        {
            // A failed prune keeps history longer; it is retried at the next interval.
            let _ = shared
                .journal
                .prune_before(retention_horizon(shared.config.clock.now(), keep));
        }
    }
}

fn retention_horizon(now: Micros, keep: std::time::Duration) -> Micros {
    now.saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX))
}

fn commit_time(shared: &Shared) -> Micros {
    // Timestamps never go backwards, even if the clock does.
    let last = read(&shared.graph).last_time();
    shared.config.clock.now().max(last)
}

fn commit_group(shared: &Shared, group: Vec<Request>) {
    let now = commit_time(shared);
    let models = read(&shared.models).clone();
    let mut answers: Vec<(BatchReply, Result<Vec<Event>, StoreError>)> =
        Vec::with_capacity(group.len());
    let mut all: Vec<Event> = Vec::new();
    {
        let graph = read(&shared.graph);
        let mut planner = graph.planner(&models);
        for req in group {
            if let Request::Batch {
                batch,
                actor,
                reply,
            } = req
            {
                match planner.plan(&batch, now, &actor) {
                    Ok(events) => {
                        all.extend(events.iter().cloned());
                        answers.push((reply, Ok(events)));
                    }
                    Err(e) => answers.push((reply, Err(StoreError::Batch(e)))),
                }
            }
        }
    }
    // The journal reads the graph as it is before these events (the state
    // of earlier changes it writes lazily); only this thread changes it.
    if !all.is_empty()
        && let Err(e) = shared.journal.commit(&all, &read(&shared.graph))
    {
        for (reply, r) in answers {
            let _ = reply.send(r.and(Err(e.clone())));
        }
        return;
    }
    {
        let mut graph = write(&shared.graph);
        let containment = &shared.config.graph.containment;
        let mut moved = false;
        for e in &all {
            graph.apply(e);
            moved |= e.change.changes_hierarchy(containment);
        }
        if moved {
            shared.hierarchy.fetch_add(1, Ordering::AcqRel);
        }
    }
    if let Some(last) = all.last() {
        shared.last_seq.store(last.seq, Ordering::Release);
    }
    publish(shared, all.into_iter().map(Arc::new).collect());
    for (reply, r) in answers {
        let _ = reply.send(r);
    }
}

fn commit_models(
    shared: &Shared,
    models: Arc<ModelSet>,
    documents: Vec<serde_json::Value>,
    expect: Option<u64>,
    actor: &str,
) -> Result<u64, StoreError> {
    let now = commit_time(shared);
    let mut ids: Vec<String> = models.interfaces().map(|i| i.id.clone()).collect();
    ids.sort();
    let event = {
        let graph = read(&shared.graph);
        let current = graph.stream_head(MODELS_STREAM);
        if let Some(expected) = expect
            && expected != current
        {
            return Err(TwinError::StreamMoved {
                stream: MODELS_STREAM.to_owned(),
                expected,
                current,
            }
            .into());
        }
        let current = read(&shared.models).clone();
        let mut planner = graph.planner(&current);
        planner.models_changed(ids, documents, now, actor)
    };
    shared
        .journal
        .commit(std::slice::from_ref(&event), &read(&shared.graph))?;
    write(&shared.graph).apply(&event);
    *write(&shared.models) = models;
    shared.last_seq.store(event.seq, Ordering::Release);
    let seq = event.seq;
    publish(shared, vec![Arc::new(event)]);
    Ok(seq)
}

/// Hands committed events to live subscribers and to feeds (without
/// waiting: a full feed misses them, a closed one is dropped).
fn publish(shared: &Shared, events: Vec<Arc<Event>>) {
    if events.is_empty() {
        return;
    }
    for e in &events {
        let _ = shared.events.send(e.clone());
    }
    let mut feeds = shared
        .feeds
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !feeds.is_empty() {
        let events: crate::store::Committed = events.into();
        feeds.retain(|f| {
            !matches!(
                f.try_send(events.clone()),
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_))
            )
        });
    }
}

/// The twins a list query selects (a page, and whether more follow).
fn list<'a>(graph: &'a Graph, models: &ModelSet, q: &TwinQuery) -> (Vec<&'a Twin>, bool) {
    let limit = q.limit.max(1);
    let keep = |t: &Twin| q.filter.as_ref().is_none_or(|f| f.matches(t));
    let range = crate::twin::query::IdRange {
        after: q.after.as_deref(),
        before: q.before.as_deref(),
        backward: q.backward,
    };
    let mut items: Vec<&Twin> = match &q.model {
        _ if !q.order.is_empty() => {
            let models: Vec<&str> = match &q.model {
                Some(m) if q.subtypes => models.implementors(m).map(|i| i.id.as_str()).collect(),
                Some(m) => vec![m.as_str()],
                None => graph.twin_models().collect(),
            };
            graph.twins_ordered(
                &models,
                &q.order,
                q.after_position().as_ref(),
                q.before_position().as_ref(),
                q.backward,
                limit.saturating_add(1),
                keep,
            )
        }
        Some(m) => {
            graph.twins_of_model(models, m, q.subtypes, range, limit.saturating_add(1), keep)
        }
        None => graph.twins_in_range(range, limit.saturating_add(1), keep),
    };
    let has_more = items.len() > limit;
    items.truncate(limit);
    if q.backward {
        items.reverse();
    }
    (items, has_more)
}

/// Folds a twin's events (ordered) up to `at` into its state then.
pub(crate) fn twin_at(events: &[Event], twin: &str, at: At) -> Option<Twin> {
    let mut state: Option<Twin> = None;
    for e in events.iter().filter(|e| super::at_or_before(e, at)) {
        match &e.change {
            Change::TwinCreated { twin: t, .. } if t == twin => state = Twin::created(e),
            Change::TwinDeleted { twin: t, .. } if t == twin => state = None,
            Change::DesiredPatched { twin: t, .. }
            | Change::ReportedPatched { twin: t, .. }
            | Change::ConfigurationAssigned { twin: t, .. }
            | Change::ConfigurationRestored { twin: t, .. }
                if t == twin =>
            {
                if let Some(s) = state.as_mut() {
                    s.apply(e);
                }
            }
            _ => {}
        }
    }
    state
}

/// Folds events (in order) up to `at` into the relationships they leave.
pub(crate) fn relationships_at(events: &[Event], at: At) -> Vec<Relationship> {
    let mut rels: std::collections::BTreeMap<RelKey, Relationship> =
        std::collections::BTreeMap::new();
    for e in events.iter().filter(|e| super::at_or_before(e, at)) {
        match &e.change {
            Change::RelationshipCreated { relationship } => {
                rels.insert(
                    (relationship.source.clone(), relationship.id.clone()),
                    relationship.clone(),
                );
            }
            Change::RelationshipUpdated {
                source,
                id,
                version,
                properties,
                ..
            } => {
                if let Some(r) = rels.get_mut(&(source.clone(), id.clone())) {
                    r.update(properties, *version, e.time);
                }
            }
            Change::RelationshipDeleted { source, id, .. } => {
                rels.remove(&(source.clone(), id.clone()));
            }
            _ => {}
        }
    }
    rels.into_values().collect()
}

#[async_trait]
impl GraphStore for Store {
    fn models(&self) -> Arc<ModelSet> {
        read(&self.shared.models).clone()
    }

    async fn set_models(
        &self,
        models: Arc<ModelSet>,
        documents: Vec<serde_json::Value>,
        expect: Option<u64>,
        actor: &str,
    ) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Models {
            models,
            documents,
            expect,
            actor: actor.to_owned(),
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn apply(&self, batch: Batch, actor: &str) -> Result<Vec<Event>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Batch {
            batch,
            actor: actor.to_owned(),
            reply,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn twin(&self, id: &str) -> Result<Option<Arc<Twin>>, StoreError> {
        Ok(self.graph().twin_shared(id))
    }

    async fn twins_by_ids(&self, ids: &[String]) -> Result<Vec<Arc<Twin>>, StoreError> {
        let graph = self.graph();
        Ok(graph.twins_shared(ids))
    }

    async fn twin_models(&self, ids: &[String]) -> Result<Vec<Option<Arc<str>>>, StoreError> {
        let graph = self.graph();
        Ok(ids
            .iter()
            .map(|id| graph.twin(id).map(|t| t.model.clone()))
            .collect())
    }

    async fn twins(&self, q: &TwinQuery) -> Result<Page<Twin>, StoreError> {
        let graph = self.graph();
        let (items, has_more) = list(&graph, &self.models(), q);
        Ok(Page {
            items: items.into_iter().cloned().collect(),
            has_more,
        })
    }

    async fn aggregate(&self, q: &AggregateQuery) -> Result<Aggregate, StoreError> {
        if q.at.is_some() {
            return super::aggregate_by_reading(self, q).await;
        }
        let graph = self.graph();
        let models = self.models();
        let of_model: HashSet<&str> = match &q.model {
            Some(m) if q.subtypes => models.implementors(m).map(|i| i.id.as_str()).collect(),
            Some(m) => HashSet::from([m.as_str()]),
            None => graph.twin_models().collect(),
        };
        // The twins `under` and `within` allow, when they narrow the set.
        let mut allowed: Option<HashSet<&str>> = None;
        if let Some(under) = &q.under {
            if graph.twin(under).is_none() {
                return Err(TwinError::NotFound(under.clone()).into());
            }
            allowed = Some(graph.contained(&[under.as_str()], false));
        }
        if let Some(w) = &q.within {
            let roots: Vec<&str> = w.roots.iter().map(String::as_str).collect();
            let view: HashSet<&str> = if w.subtrees {
                graph.contained(&roots, true)
            } else {
                roots
                    .iter()
                    .filter_map(|r| graph.twin(r))
                    .map(|t| &*t.id)
                    .collect()
            };
            allowed = Some(match allowed {
                Some(a) => a.intersection(&view).copied().collect(),
                None => view,
            });
        }
        let mut tally = Tally::new(&q.measures);
        if allowed.is_none() && q.filter.is_none() && q.measures.fields.is_empty() {
            // Counts only: from the model index, or per value from the
            // sort index of the grouping path; no twin is read.
            let models: Vec<&str> = of_model.iter().copied().collect();
            match &q.measures.group_by {
                Some(path) => {
                    for (key, n) in graph.count_by(&models, path) {
                        let stats = Stats {
                            count: n,
                            fields: Vec::new(),
                        };
                        tally.add_group(
                            key.map_or(serde_json::Value::Null, |k| k.to_value()),
                            &stats,
                        );
                    }
                }
                None => {
                    let count = models.iter().map(|m| graph.model_count(m) as u64).sum();
                    tally.add_group(
                        serde_json::Value::Null,
                        &Stats {
                            count,
                            fields: Vec::new(),
                        },
                    );
                }
            }
            return Ok(tally.finish());
        }
        let keep = |t: &Twin| q.filter.as_ref().is_none_or(|f| f.matches(t));
        match &allowed {
            Some(ids) => {
                for t in graph.twins_of(ids.iter().copied()) {
                    if of_model.contains(&*t.model) && keep(t) {
                        tally.add(t);
                    }
                }
            }
            None => {
                for m in &of_model {
                    for t in graph.twins_of(graph.with_model_between(m, None, None)) {
                        if keep(t) {
                            tally.add(t);
                        }
                    }
                }
            }
        }
        Ok(tally.finish())
    }

    async fn twin_ids(&self, q: &TwinQuery) -> Result<Page<String>, StoreError> {
        let graph = self.graph();
        let (items, has_more) = list(&graph, &self.models(), q);
        Ok(Page {
            items: items.into_iter().map(|t| t.id.to_string()).collect(),
            has_more,
        })
    }

    async fn relationship(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<Relationship>, StoreError> {
        Ok(self.graph().relationship(source, id))
    }

    async fn relationships_with_id(&self, id: &str) -> Result<Vec<Relationship>, StoreError> {
        Ok(self.graph().relationships_with_id(id))
    }

    async fn relationships(
        &self,
        twin: &str,
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<Relationship>, StoreError> {
        let graph = self.graph();
        if graph.twin(twin).is_none() {
            return Err(TwinError::NotFound(twin.to_owned()).into());
        }
        let named = |r: &Relationship| name.is_none_or(|n| r.name == n);
        let mut v: Vec<Relationship> = Vec::new();
        if matches!(direction, Direction::Out | Direction::Both) {
            v.extend(graph.outgoing_full(twin).into_iter().filter(named));
        }
        if matches!(direction, Direction::In | Direction::Both) {
            v.extend(graph.incoming_full(twin).into_iter().filter(named));
        }
        Ok(v)
    }

    async fn relationships_of(
        &self,
        twins: &[String],
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<Relationship>, StoreError> {
        let graph = self.graph();
        let named = |r: &Relationship| name.is_none_or(|n| r.name == n);
        let mut v: Vec<Relationship> = Vec::new();
        for twin in twins {
            if graph.twin(twin).is_none() {
                continue;
            }
            if matches!(direction, Direction::Out | Direction::Both) {
                v.extend(graph.outgoing_full(twin).into_iter().filter(named));
            }
            if matches!(direction, Direction::In | Direction::Both) {
                v.extend(graph.incoming_full(twin).into_iter().filter(named));
            }
        }
        Ok(v)
    }

    async fn traverse(&self, t: &Traversal) -> Result<Vec<Reached>, StoreError> {
        Ok(self.graph().traverse(t, self.shared.config.max_depth)?)
    }

    async fn reach(&self, t: &Traversal) -> Result<Vec<Reach>, StoreError> {
        let graph = self.graph();
        let hits = graph.traverse(t, self.shared.config.max_depth)?;
        Ok(hits
            .into_iter()
            .filter_map(|h| {
                let model = Arc::clone(&graph.twin(&h.twin)?.model);
                Some(Reach {
                    twin: h.twin,
                    model,
                    depth: h.depth,
                })
            })
            .collect())
    }

    async fn ancestors(&self, id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.graph().ancestors(id)?)
    }

    async fn descendants(&self, id: &str, max_depth: usize) -> Result<Vec<Reached>, StoreError> {
        Ok(self
            .graph()
            .descendants(id, max_depth, self.shared.config.max_depth)?)
    }

    async fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.shared.journal.events_after(seq, limit)
    }

    async fn stream_events(
        &self,
        stream: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.shared.journal.stream_events(stream, seq, limit)
    }

    async fn twin_events(
        &self,
        twin: &str,
        from: Option<Micros>,
        to: Option<Micros>,
    ) -> Result<Vec<Event>, StoreError> {
        let events = self.shared.journal.twin_events(twin)?;
        Ok(events
            .into_iter()
            .filter(|e| from.is_none_or(|f| e.time >= f) && to.is_none_or(|t| e.time <= t))
            .collect())
    }

    async fn twin_as_of(&self, twin: &str, at: At) -> Result<Option<Twin>, StoreError> {
        self.check_history(at)?;
        let events = self.shared.journal.twin_events(twin)?;
        Ok(twin_at(&events, twin, at))
    }

    async fn relationships_as_of(
        &self,
        twin: &str,
        at: At,
    ) -> Result<Vec<Relationship>, StoreError> {
        self.check_history(at)?;
        let events = self.shared.journal.twin_events(twin)?;
        Ok(relationships_at(&events, at))
    }

    fn last_seq(&self) -> u64 {
        self.shared.last_seq.load(Ordering::Acquire)
    }

    fn containment(&self) -> String {
        self.shared.config.graph.containment.clone()
    }

    fn hierarchy_version(&self) -> u64 {
        self.shared.hierarchy.load(Ordering::Acquire)
    }

    fn adopt_models(&self, models: Arc<ModelSet>) {
        *write(&self.shared.models) = models;
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.shared.events.subscribe()
    }

    fn feed(&self, capacity: usize) -> Option<crate::store::Feed> {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        self.shared
            .feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tx);
        Some(rx)
    }

    async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let (after, held) = super::claim(
            leases.get(name),
            holder,
            self.shared.config.clock.now(),
            ttl,
        );
        match after {
            Some(l) => leases.insert(name.to_owned(), l),
            None => leases.remove(name),
        };
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cache_is_sized_from_the_machine_within_bounds() {
        let cache = machine_cache_bytes();
        assert!((16 << 20..=512 << 20).contains(&cache), "{cache}");
        let total = machine_memory_bytes().expect("this machine's memory");
        let expected = usize::try_from((total / 64).clamp(16 << 20, 512 << 20)).expect("fits");
        assert_eq!(cache, expected);
    }
}
