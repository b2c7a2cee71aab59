//! The write path: one writer task per store commits the batches waiting
//! for it in one transaction (group commit), retried as a whole when the
//! database reports a transient failure.
//!
//! In the transaction, in order: take the sequence counter (serializing
//! writers across replicas), load the part of the graph the batches touch,
//! plan them with the shared planner (each batch all or nothing; a refused
//! one does not stop the others), then write the new state, the events and
//! the counter, and commit. An expected-version check therefore reads the
//! version inside the transaction that writes: no lost update between
//! replicas.
//!
//! Large batches have their twins read ahead, as they arrive, while the
//! transaction before them runs ([`Ahead`]); the transaction takes them
//! instead of reading them again when the counter shows that nothing but
//! this writer's own commits came in between (less the twins those wrote),
//! so the read-ahead never stands in for a newer state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use neo4rs::{BoltType, Query, Txn, query};
use tokio::sync::mpsc;

use super::layout::{self, EVENT, META, SERIES_BLOCK, TWIN, decode};
use super::lines::Ended;
use super::{Shared, WriteRequest, db_error, transient};
use crate::dtdl::ModelSet;
use crate::store::StoreError;
use crate::twin::event::MODELS_STREAM;
use crate::twin::{Batch, Event, Graph, Micros, Op, Relationship, Twin, TwinError};

/// Batches committed together at most.
const MAX_GROUP: usize = 256;

/// Why an attempt failed.
enum Failure {
    /// From the database (maybe transient).
    Db(neo4rs::Error),
    /// From the store itself: no point retrying.
    Store(StoreError),
}

impl From<neo4rs::Error> for Failure {
    fn from(e: neo4rs::Error) -> Failure {
        Failure::Db(e)
    }
}

impl Ended for Failure {
    /// A store failure may come in the middle of an answer: the
    /// connection is not kept.
    fn ended(&self) -> bool {
        match self {
            Failure::Db(e) => e.ended(),
            Failure::Store(_) => false,
        }
    }
}

/// Set once an attempt has sent its COMMIT: if the exchange is then cut,
/// whether the change was applied is unknown.
type Sent = Arc<std::sync::atomic::AtomicBool>;

/// Commits `txn`, marking `sent` first.
async fn commit(txn: Txn, sent: &Sent) -> Result<(), neo4rs::Error> {
    sent.store(true, Ordering::Release);
    txn.commit().await
}

/// `e`, saying that the change may have been applied when the COMMIT had
/// been sent.
fn unsure(e: StoreError, sent: &Sent) -> StoreError {
    if !sent.load(Ordering::Acquire) {
        return e;
    }
    let unknown = "the COMMIT had been sent, so the change may have been applied: read it back before retrying";
    match e {
        StoreError::Timeout(why) => StoreError::Timeout(format!("{why}; {unknown}")),
        StoreError::Unavailable(why) => StoreError::Unavailable(format!("{why}; {unknown}")),
        other => other,
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}

/// The last sequence number and commit time.
pub(super) async fn position(shared: &Shared) -> Result<(u64, Micros), StoreError> {
    let q = query(&format!(
        "MATCH (m:{META} {{key: 'seq'}}) RETURN m.seq AS seq, m.time AS time"
    ));
    let run = |db: neo4rs::Graph| async move {
        let mut rows = db.execute(q).await?;
        let mut out = (0, 0);
        if let Some(row) = rows.next().await? {
            let get = |k: &str| {
                row.get::<i64>(k)
                    .map_err(neo4rs::Error::DeserializationError)
            };
            out = (get("seq")?, get("time")?);
        }
        Ok::<_, neo4rs::Error>(out)
    };
    let (seq, time) = super::within(shared, &shared.writes, run).await?;
    Ok((u64::try_from(seq).unwrap_or(0), time))
}

/// Batches with at least this many operations have their twins read ahead.
const READ_AHEAD_MIN: usize = 64;

/// Twin states read ahead of their transaction: `at` is the counter, read
/// before them.
struct Ahead {
    at: u64,
    twins: HashMap<String, Twin>,
}

/// A request and, for a large batch, its read-ahead.
type Queued = (WriteRequest, Option<tokio::task::JoinHandle<Option<Ahead>>>);

/// Reads the twins of a batch ahead (`None` if the database would not say).
async fn read_ahead(shared: Arc<Shared>, ids: BTreeSet<String>) -> Option<Ahead> {
    let (at, _) = position(&shared).await.ok()?;
    let q = super::twins_by_id(ids_param(&ids));
    let found = super::rows_on(&shared, &shared.writes, q, "s").await.ok()?;
    let mut twins = HashMap::with_capacity(found.len());
    for s in found {
        let t: Twin = decode("twin", &s).ok()?;
        twins.insert(t.id.to_string(), t);
    }
    Some(Ahead { at, twins })
}

/// Hands requests to the writer as they arrive, each large batch with its
/// read-ahead already started.
async fn receive(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<WriteRequest>,
    tx: mpsc::UnboundedSender<Queued>,
) {
    while let Some(r) = rx.recv().await {
        let ahead = match &r {
            WriteRequest::Batch { batch, .. } if batch.ops.len() >= READ_AHEAD_MIN => {
                let ids = needs(&[(batch, "")], &shared.config.graph.containment).twins;
                Some(tokio::spawn(read_ahead(shared.clone(), ids)))
            }
            _ => None,
        };
        if tx.send((r, ahead)).is_err() {
            return;
        }
    }
}

/// This writer's recent commits: their sequence numbers and the twins
/// they wrote.
#[derive(Default)]
struct Own {
    commits: VecDeque<(u64, u64, HashSet<String>)>,
}

/// Commits remembered for judging read-aheads.
const OWN_COMMITS: usize = 64;

impl Own {
    fn record(&mut self, first: u64, last: u64, twins: HashSet<String>) {
        self.commits.push_back((first, last, twins));
        if self.commits.len() > OWN_COMMITS {
            self.commits.pop_front();
        }
    }

    /// The read-ahead twins still current with the counter at `now`: none
    /// unless every commit since each was read is this writer's own; less
    /// the twins those commits wrote.
    fn current(&self, aheads: Vec<Ahead>, now: u64) -> HashMap<String, Twin> {
        let mut out = HashMap::new();
        for mut ahead in aheads {
            let mut covered = ahead.at;
            let mut written: HashSet<&str> = HashSet::new();
            for (first, last, twins) in &self.commits {
                if *last <= covered {
                    continue;
                }
                if *first != covered + 1 {
                    break;
                }
                covered = *last;
                written.extend(twins.iter().map(String::as_str));
            }
            if covered != now {
                continue;
            }
            ahead.twins.retain(|id, _| !written.contains(id.as_str()));
            out.extend(ahead.twins);
        }
        out
    }
}

/// Commits what is asked of it until the store is dropped.
pub(super) async fn writer(shared: Arc<Shared>, outer: mpsc::Receiver<WriteRequest>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(receive(shared.clone(), outer, tx));
    let mut own = Own::default();
    let mut held: Option<Queued> = None;
    loop {
        let (first, ahead) = match held.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        match first {
            WriteRequest::Models {
                models,
                documents,
                expect,
                actor,
                reply,
            } => {
                let r = commit_models(&shared, models, documents, expect, &actor).await;
                if let Ok(seq) = &r {
                    own.record(*seq, *seq, HashSet::new());
                }
                let _ = reply.send(r);
            }
            WriteRequest::Batch {
                batch,
                actor,
                reply,
            } => {
                let mut group = vec![(batch, actor, reply)];
                let mut pending = vec![ahead];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok((
                            WriteRequest::Batch {
                                batch,
                                actor,
                                reply,
                            },
                            ahead,
                        )) => {
                            group.push((batch, actor, reply));
                            pending.push(ahead);
                        }
                        // A model change commits alone, after this group.
                        Ok(models) => {
                            held = Some(models);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut aheads = Vec::new();
                for handle in pending.into_iter().flatten() {
                    if let Ok(Some(a)) = handle.await {
                        aheads.push(a);
                    }
                }
                let batches: Vec<(&Batch, &str)> =
                    group.iter().map(|(b, a, _)| (b, a.as_str())).collect();
                let results = commit_batches(&shared, &batches, &mut own, aheads).await;
                drop(batches);
                for ((_, _, reply), r) in group.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or the store's
/// timeout has passed while it kept conflicting with other writers. The
/// waits between tries are random (up to a bound that doubles, to 100 ms):
/// on a database that detects conflicts at commit (ArcadeDB), two replicas
/// retrying in step would otherwise keep colliding, the same one losing.
async fn retrying<T, F, Fut>(shared: &Shared, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut(neo4rs::Graph, Sent) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    super::available(shared)?;
    let started = std::time::Instant::now();
    let mut bound = Duration::from_millis(5);
    for n in 1.. {
        let sent = Sent::default();
        let budget = shared.bolt.statement_timeout;
        let outcome = shared
            .writes
            .lend_here(budget, |db| attempt(db, sent.clone()))
            .await;
        match outcome {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(Failure::Store(e))) => return Err(e),
            // Refused with the database's own FAILURE (at COMMIT too): not
            // applied, so a retry cannot apply it twice.
            Ok(Err(Failure::Db(e))) if transient(&e) => {
                if started.elapsed() >= shared.bolt.timeout {
                    tracing::warn!(error = %e, attempts = n, "giving up on a conflicting write");
                    break;
                }
                tracing::debug!(error = %e, attempt = n, "transient database failure; retrying");
            }
            Ok(Err(Failure::Db(e))) => return Err(unsure(db_error(e), &sent)),
            Err(cut) => return Err(unsure(super::cut_error(shared, cut), &sent)),
        }
        tokio::time::sleep(jitter(bound)).await;
        bound = (bound * 2).min(Duration::from_millis(100));
    }
    Err(StoreError::Unavailable(
        "too many conflicting writers".into(),
    ))
}

/// A random duration up to `bound`.
fn jitter(bound: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let micros = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX).max(1);
    Duration::from_micros(r % micros)
}

/// Takes, renews or releases lease `name` for `holder` ([`crate::store::claim`]),
/// in a transaction that first locks the lease's node.
pub(super) async fn lease(
    shared: &Shared,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let key = &format!("lease:{name}");
    retrying(shared, |db, sent| async move {
        let mut txn = db.start_txn().await?;
        let q = query(&format!(
            "MERGE (l:{META} {{key: $key}}) SET l.lock = coalesce(l.lock, 0) + 1 \
             RETURN l.holder AS holder, l.until AS until"
        ))
        .param("key", key.as_str());
        let mut rows = txn.execute(q).await?;
        let mut current = None;
        while let Some(row) = rows.next(txn.handle()).await? {
            if let (Ok(holder), Ok(until)) = (row.get::<String>("holder"), row.get::<i64>("until"))
            {
                current = Some(crate::store::Lease { holder, until });
            }
        }
        let (after, held) =
            crate::store::claim(current.as_ref(), holder, shared.config.clock.now(), ttl);
        if after != current {
            let (h, u) = match &after {
                Some(l) => (BoltType::from(l.holder.as_str()), BoltType::from(l.until)),
                None => (
                    BoltType::Null(neo4rs::BoltNull),
                    BoltType::Null(neo4rs::BoltNull),
                ),
            };
            txn.run(
                query(&format!(
                    "MATCH (l:{META} {{key: $key}}) SET l.holder = $holder, l.until = $until"
                ))
                .param("key", key.as_str())
                .param("holder", h)
                .param("until", u),
            )
            .await?;
        }
        commit(txn, &sent).await?;
        Ok(held)
    })
    .await
}

/// Writes series blocks and the series mark in one transaction (see
/// [`super::BoltStore::series_write`]).
pub(super) async fn series_write(
    shared: &Shared,
    blocks: Vec<((String, String, Micros), String)>,
    mark: u64,
    prune_before: Option<(Option<Micros>, Option<Micros>, Option<Micros>)>,
) -> Result<(), StoreError> {
    let rows: Vec<BoltType> = blocks
        .into_iter()
        .map(|((twin, field, start), points)| {
            let mut m = neo4rs::BoltMap::new();
            m.put("twin".into(), BoltType::from(twin));
            m.put("field".into(), BoltType::from(field));
            m.put("start".into(), BoltType::from(start));
            m.put("points".into(), BoltType::from(points));
            BoltType::Map(m)
        })
        .collect();
    let seq = BoltType::from(i64::try_from(mark).unwrap_or(i64::MAX));
    retrying(shared, |db, sent| {
        let (rows, seq) = (rows.clone(), seq.clone());
        async move {
            let mut txn = db.start_txn().await?;
            if !rows.is_empty() {
                txn.run(
                    query(&format!(
                        "UNWIND $rows AS r \
                         MERGE (b:{SERIES_BLOCK} {{twin: r.twin, field: r.field, start: r.start}}) \
                         SET b.points = r.points"
                    ))
                    .param("rows", rows),
                )
                .await?;
            }
            if let Some((raw, minute, hour)) = prune_before {
                txn.run(
                    query(&format!(
                        "MATCH (b:{SERIES_BLOCK}) WHERE \
                           ($raw IS NOT NULL AND NOT b.field CONTAINS '#' AND b.start < $raw) \
                           OR ($minute IS NOT NULL AND b.field CONTAINS '#1m:' AND b.start < $minute) \
                           OR ($hour IS NOT NULL AND b.field CONTAINS '#1h:' AND b.start < $hour) \
                         DETACH DELETE b"
                    ))
                    .param("raw", raw)
                    .param("minute", minute)
                    .param("hour", hour),
                )
                .await?;
            }
            txn.run(
                query(&format!("MERGE (m:{META} {{key: $key}}) SET m.seq = $seq"))
                    .param("key", "series:mark")
                    .param("seq", seq),
            )
            .await?;
            commit(txn, &sent).await?;
            Ok(())
        }
    })
    .await
}

/// Commits a group of batches; one result per batch, in order.
async fn commit_batches(
    shared: &Shared,
    batches: &[(&Batch, &str)],
    own: &mut Own,
    aheads: Vec<Ahead>,
) -> Vec<Result<Vec<Event>, StoreError>> {
    let mut aheads = Some(aheads);
    let outcome = retrying(shared, |db, sent| {
        // A retry reads everything again.
        let aheads = aheads.take().unwrap_or_default();
        attempt_batches(shared, db, sent, batches, &*own, aheads)
    })
    .await;
    match outcome {
        Ok((results, events, written)) => {
            if let (Some(first), Some(last)) = (events.first(), events.last()) {
                own.record(first.seq, last.seq, written);
            }
            publish(shared, events);
            results
        }
        Err(e) => batches.iter().map(|_| Err(e.clone())).collect(),
    }
}

async fn commit_models(
    shared: &Shared,
    models: Arc<ModelSet>,
    documents: Vec<serde_json::Value>,
    expect: Option<u64>,
    actor: &str,
) -> Result<u64, StoreError> {
    let event = retrying(shared, |db, sent| {
        attempt_models(shared, db, sent, &models, &documents, expect, actor)
    })
    .await?;
    let seq = event.seq;
    adopt(shared, models);
    publish(shared, vec![event]);
    Ok(seq)
}

/// Serves `models` (and their labels) from now on.
pub(super) fn adopt(shared: &Shared, models: Arc<ModelSet>) {
    let labels = Arc::new(layout::ModelLabels::new(&models));
    let mut current = shared
        .models
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *current = (models, labels);
}

/// Sends committed events to subscribers, in order and without gaps: the
/// writer right after its commit, the tailer for everything else (other
/// replicas' commits, or a gap the writer could not fill).
pub(super) fn publish(shared: &Shared, events: Vec<Event>) {
    let _order = shared
        .publishing
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for e in events {
        let last = shared.last_seq.load(Ordering::Acquire);
        if e.seq == last + 1 {
            if e.change.changes_hierarchy(&shared.config.graph.containment) {
                shared.hierarchy.fetch_add(1, Ordering::AcqRel);
            }
            shared.last_seq.store(e.seq, Ordering::Release);
            let _ = shared.events.send(Arc::new(e));
        } else if e.seq > last + 1 {
            // Someone else's commit is in between: the tailer catches up.
            shared.tail.notify_one();
            break;
        }
    }
}

/// Takes the sequence counter for this transaction: its last value and time.
async fn lock_counter(txn: &mut Txn) -> Result<(u64, Micros), Failure> {
    let q = query(&format!(
        "MATCH (m:{META} {{key: 'seq'}}) SET m.lock = coalesce(m.lock, 0) + 1 \
         RETURN m.seq AS seq, m.time AS time"
    ));
    let mut rows = txn.execute(q).await?;
    let Some(row) = rows.next(txn.handle()).await? else {
        return Err(StoreError::Storage("the sequence counter is missing".into()).into());
    };
    let seq: i64 = row
        .get("seq")
        .map_err(|e| StoreError::Storage(e.to_string()))?;
    let time: i64 = row
        .get("time")
        .map_err(|e| StoreError::Storage(e.to_string()))?;
    while rows.next(txn.handle()).await?.is_some() {}
    Ok((u64::try_from(seq).unwrap_or(0), time))
}

/// String column `col` of every row of `q`, in the transaction.
async fn column(txn: &mut Txn, q: Query, col: &str) -> Result<Vec<String>, Failure> {
    let mut rows = txn.execute(q).await?;
    let mut out = Vec::new();
    while let Some(row) = rows.next(txn.handle()).await? {
        if let Ok(v) = row.get::<String>(col) {
            out.push(v);
        }
    }
    Ok(out)
}

/// What the batches need to see of the graph.
#[derive(Default)]
struct Needs {
    twins: BTreeSet<String>,
    /// Twins whose outgoing relationships are needed.
    out: BTreeSet<String>,
    /// Twins whose incoming relationships are needed.
    inc: BTreeSet<String>,
    /// Twins whose chain of containers is needed.
    chain: BTreeSet<String>,
    /// Streams whose last record is expected.
    streams: BTreeSet<String>,
}

fn needs(batches: &[(&Batch, &str)], containment: &str) -> Needs {
    let mut n = Needs::default();
    for (b, _) in batches {
        for op in &b.ops {
            match op {
                Op::CreateTwin { id, .. }
                | Op::PatchDesired { id, .. }
                | Op::PatchReported { id, .. }
                | Op::InvokeCommand { id, .. }
                | Op::AssignConfiguration { id, .. }
                | Op::RestoreConfiguration { id, .. } => {
                    n.twins.insert(id.clone());
                }
                Op::DeleteTwin { id, .. } => {
                    n.twins.insert(id.clone());
                    n.out.insert(id.clone());
                    n.inc.insert(id.clone());
                }
                Op::CreateRelationship {
                    source,
                    name,
                    target,
                    ..
                } => {
                    n.twins.insert(source.clone());
                    n.twins.insert(target.clone());
                    n.out.insert(source.clone());
                    if name == containment {
                        n.chain.insert(source.clone());
                        n.chain.insert(target.clone());
                    }
                }
                Op::UpdateRelationship { source, .. } | Op::DeleteRelationship { source, .. } => {
                    n.twins.insert(source.clone());
                    n.out.insert(source.clone());
                }
                Op::ExpectStream { stream, .. } => {
                    n.streams.insert(stream.clone());
                }
                Op::Record { .. } => {}
            }
        }
    }
    n
}

fn ids_param(ids: &BTreeSet<String>) -> BoltType {
    BoltType::from(ids.iter().cloned().collect::<Vec<String>>())
}

/// The part of the graph `needs` names, read in the transaction, with
/// `known` twins (current, read ahead).
async fn load(
    txn: &mut Txn,
    shared: &Shared,
    n: &Needs,
    known: impl Iterator<Item = Twin>,
) -> Result<Graph, Failure> {
    let mut g = Graph::new(shared.config.graph.clone());
    for t in known {
        g.insert_twin(t);
    }
    if !n.twins.is_empty() {
        let q = super::twins_by_id(ids_param(&n.twins));
        for s in column(txn, q, "s").await? {
            g.insert_twin(decode::<Twin>("twin", &s)?);
        }
    }
    let mut rels: BTreeMap<(String, String), Relationship> = BTreeMap::new();
    let mut add = |found: Vec<String>| -> Result<(), StoreError> {
        for j in found {
            let r: Relationship = decode("relationship", &j)?;
            rels.insert((r.source.clone(), r.id.clone()), r);
        }
        Ok(())
    };
    if !n.out.is_empty() {
        let q = query(&format!(
            "UNWIND $ids AS id MATCH (a:{TWIN} {{id: id}})-[r]->(:{TWIN}) RETURN r.json AS j"
        ))
        .param("ids", ids_param(&n.out));
        add(column(txn, q, "j").await?)?;
    }
    if !n.inc.is_empty() {
        let q = query(&format!(
            "UNWIND $ids AS id MATCH (:{TWIN})-[r]->(b:{TWIN} {{id: id}}) RETURN r.json AS j"
        ))
        .param("ids", ids_param(&n.inc));
        add(column(txn, q, "j").await?)?;
    }
    if !n.chain.is_empty() {
        let containment = layout::quoted(&shared.config.graph.containment)?;
        let q = query(&format!(
            "MATCH p = (:{TWIN})-[:{containment}*1..]->(n:{TWIN}) WHERE n.id IN $ids \
             UNWIND relationships(p) AS r RETURN DISTINCT r.json AS j"
        ))
        .param("ids", ids_param(&n.chain));
        add(column(txn, q, "j").await?)?;
    }
    if !n.streams.is_empty() {
        let keys: Vec<String> = n.streams.iter().map(|s| stream_key(s)).collect();
        let q = query(&format!(
            "UNWIND $keys AS k MATCH (m:{META} {{key: k}}) RETURN m.key AS k, m.seq AS seq"
        ))
        .param("keys", keys);
        let mut rows = txn.execute(q).await?;
        while let Some(row) = rows.next(txn.handle()).await? {
            let key: String = row
                .get("k")
                .map_err(|e| StoreError::Storage(e.to_string()))?;
            let seq: i64 = row
                .get("seq")
                .map_err(|e| StoreError::Storage(e.to_string()))?;
            if let Some(stream) = key.strip_prefix(STREAM_KEY) {
                g.set_stream_head(stream, u64::try_from(seq).unwrap_or(0));
            }
        }
    }
    // Adjacency in creation order, as the embedded store keeps it.
    let mut rels: Vec<Relationship> = rels.into_values().collect();
    rels.sort_by(|a, b| (a.created_at, &a.source, &a.id).cmp(&(b.created_at, &b.source, &b.id)));
    for r in rels {
        g.insert_relationship(r);
    }
    Ok(g)
}

type Results = Vec<Result<Vec<Event>, StoreError>>;

async fn attempt_batches(
    shared: &Shared,
    db: neo4rs::Graph,
    sent: Sent,
    batches: &[(&Batch, &str)],
    own: &Own,
    aheads: Vec<Ahead>,
) -> Result<(Results, Vec<Event>, HashSet<String>), Failure> {
    let mut txn = db.start_txn().await?;
    let (seq, time) = lock_counter(&mut txn).await?;
    let (models, labels) = super::read(&shared.models).clone();
    let mut need = needs(batches, &shared.config.graph.containment);
    let known = own.current(aheads, seq);
    need.twins.retain(|id| !known.contains_key(id));
    let mut g = load(&mut txn, shared, &need, known.into_values()).await?;
    g.set_position(seq, time);
    let now = shared.config.clock.now().max(time);
    let mut planner = g.planner(&models);
    let mut results = Vec::with_capacity(batches.len());
    let mut events = Vec::new();
    for (batch, actor) in batches {
        match planner.plan(batch, now, actor) {
            Ok(evs) => {
                events.extend(evs.iter().cloned());
                results.push(Ok(evs));
            }
            Err(e) => results.push(Err(StoreError::Batch(e))),
        }
    }
    if events.is_empty() {
        txn.rollback().await?;
        return Ok((results, events, HashSet::new()));
    }
    let staged = planner.into_staged();
    let written: HashSet<String> = staged.twins.iter().map(|(id, _)| id.clone()).collect();
    // The events' rows are built while the database takes in the state.
    let (state, rows) = tokio::join!(write_state(&mut txn, &g, &labels, staged), async {
        event_rows(&events)
    });
    state?;
    write_events(&mut txn, &events, rows?).await?;
    commit(txn, &sent).await?;
    Ok((results, events, written))
}

async fn attempt_models(
    shared: &Shared,
    db: neo4rs::Graph,
    sent: Sent,
    models: &ModelSet,
    documents: &[serde_json::Value],
    expect: Option<u64>,
    actor: &str,
) -> Result<Event, Failure> {
    let mut txn = db.start_txn().await?;
    // The counter is locked: no other server's upload can land between
    // this check and the commit.
    let (seq, time) = lock_counter(&mut txn).await?;
    if let Some(expected) = expect {
        let q = query(&format!(
            "MATCH (m:{META} {{key: $key}}) RETURN m.seq AS seq"
        ))
        .param("key", stream_key(MODELS_STREAM));
        let mut rows = txn.execute(q).await?;
        let current = match rows.next(txn.handle()).await? {
            Some(row) => row
                .get::<i64>("seq")
                .map_err(|e| StoreError::Storage(e.to_string()))?,
            None => 0,
        };
        let current = u64::try_from(current).unwrap_or(0);
        if current != expected {
            return Err(StoreError::from(TwinError::StreamMoved {
                stream: MODELS_STREAM.to_owned(),
                expected,
                current,
            })
            .into());
        }
    }
    let current = super::read(&shared.models).0.clone();
    let mut g = Graph::new(shared.config.graph.clone());
    g.set_position(seq, time);
    let mut ids: Vec<String> = models.interfaces().map(|i| i.id.clone()).collect();
    ids.sort();
    let event = g.planner(&current).models_changed(
        ids,
        documents.to_vec(),
        shared.config.clock.now().max(time),
        actor,
    );
    let rows = event_rows(std::slice::from_ref(&event))?;
    write_events(&mut txn, std::slice::from_ref(&event), rows).await?;
    commit(txn, &sent).await?;
    Ok(event)
}

/// Writes the state the planner staged, against what was loaded (`base`).
async fn write_state(
    txn: &mut Txn,
    base: &Graph,
    labels: &layout::ModelLabels,
    staged: crate::twin::graph::Staged,
) -> Result<(), Failure> {
    let mut create_twins: HashMap<String, Vec<BoltType>> = HashMap::new();
    let mut update_twins = Vec::new();
    let mut delete_twins = Vec::new();
    for (id, after) in staged.twins {
        let before = base.twin(&id);
        match (before, after) {
            (Some(b), Some(t)) if b.model == t.model => {
                let mut row = neo4rs::BoltMap::new();
                row.put("id".into(), BoltType::from(&*t.id));
                row.put("props".into(), layout::twin_update(b, &t)?);
                update_twins.push(BoltType::Map(row));
            }
            (before, Some(t)) => {
                if before.is_some() {
                    delete_twins.push(id.clone());
                }
                let (label, ids) = labels.of(&t.model);
                create_twins
                    .entry(label)
                    .or_default()
                    .push(layout::twin_props(&t, ids)?);
            }
            (Some(_), None) => delete_twins.push(id),
            (None, None) => {}
        }
    }
    let mut create_rels: HashMap<String, Vec<BoltType>> = HashMap::new();
    let mut update_rels = Vec::new();
    let mut delete_rels = Vec::new();
    for ((source, id), after) in staged.rels {
        let before = base.relationship(&source, &id);
        let key = || {
            let mut m = neo4rs::BoltMap::new();
            m.put("source".into(), BoltType::from(source.as_str()));
            m.put("id".into(), BoltType::from(id.as_str()));
            BoltType::Map(m)
        };
        match (before, after) {
            (Some(b), Some(r)) if b.target == r.target && b.name == r.name => {
                let mut m = neo4rs::BoltMap::new();
                m.put("source".into(), BoltType::from(source.as_str()));
                m.put("id".into(), BoltType::from(id.as_str()));
                m.put("props".into(), layout::rel_props(&r)?);
                update_rels.push(BoltType::Map(m));
            }
            (before, Some(r)) => {
                if before.is_some() {
                    delete_rels.push(key());
                }
                let mut m = neo4rs::BoltMap::new();
                m.put("source".into(), BoltType::from(r.source.as_str()));
                m.put("target".into(), BoltType::from(r.target.as_str()));
                m.put("props".into(), layout::rel_props(&r)?);
                create_rels
                    .entry(layout::quoted(&r.name)?)
                    .or_default()
                    .push(BoltType::Map(m));
            }
            (Some(_), None) => delete_rels.push(key()),
            (None, None) => {}
        }
    }
    if !delete_rels.is_empty() {
        txn.run(
            query(&format!(
                "UNWIND $rows AS row MATCH (:{TWIN} {{id: row.source}})-[r]->(:{TWIN}) \
                 WHERE r.id = row.id DELETE r"
            ))
            .param("rows", delete_rels),
        )
        .await?;
    }
    if !delete_twins.is_empty() {
        txn.run(
            query(&format!(
                "UNWIND $ids AS id MATCH (n:{TWIN} {{id: id}}) DETACH DELETE n"
            ))
            .param("ids", delete_twins),
        )
        .await?;
    }
    for (label, rows) in create_twins {
        txn.run(
            query(&format!(
                "UNWIND $rows AS row CREATE (n:{label}) SET n = row"
            ))
            .param("rows", rows),
        )
        .await?;
    }
    if !update_twins.is_empty() {
        txn.run(
            query(&format!(
                "UNWIND $rows AS row MATCH (n:{TWIN} {{id: row.id}}) SET n += row.props"
            ))
            .param("rows", update_twins),
        )
        .await?;
    }
    for (ty, rows) in create_rels {
        txn.run(
            query(&format!(
                "UNWIND $rows AS row MATCH (a:{TWIN} {{id: row.source}}), (b:{TWIN} {{id: row.target}}) \
                 CREATE (a)-[r:{ty}]->(b) SET r = row.props"
            ))
            .param("rows", rows),
        )
        .await?;
    }
    if !update_rels.is_empty() {
        txn.run(
            query(&format!(
                "UNWIND $rows AS row MATCH (:{TWIN} {{id: row.source}})-[r]->(:{TWIN}) \
                 WHERE r.id = row.id SET r = row.props"
            ))
            .param("rows", update_rels),
        )
        .await?;
    }
    Ok(())
}

/// Key prefix of the bookkeeping node that holds where a stream ends.
const STREAM_KEY: &str = "stream:";

fn stream_key(stream: &str) -> String {
    format!("{STREAM_KEY}{stream}")
}

/// The events' nodes.
fn event_rows(events: &[Event]) -> Result<Vec<BoltType>, StoreError> {
    events.iter().map(layout::event_props).collect()
}

/// Appends the events (`rows`: their nodes) and moves the counter to the
/// last one (and each stream's end to its last record).
async fn write_events(txn: &mut Txn, events: &[Event], rows: Vec<BoltType>) -> Result<(), Failure> {
    let Some(last) = events.last() else {
        return Ok(());
    };
    txn.run(
        query(&format!(
            "UNWIND $rows AS row CREATE (e:{EVENT}) SET e = row"
        ))
        .param("rows", rows),
    )
    .await?;
    txn.run(
        query(&format!(
            "MATCH (m:{META} {{key: 'seq'}}) SET m.seq = $seq, m.time = $time"
        ))
        .param("seq", i64::try_from(last.seq).unwrap_or(i64::MAX))
        .param("time", last.time),
    )
    .await?;
    let mut heads: BTreeMap<&str, u64> = BTreeMap::new();
    for e in events {
        if let Some(stream) = e.change.stream() {
            heads.insert(stream, e.seq);
        }
    }
    if !heads.is_empty() {
        let rows: Vec<BoltType> = heads
            .into_iter()
            .map(|(stream, seq)| {
                let mut row = neo4rs::BoltMap::new();
                row.put("key".into(), BoltType::from(stream_key(stream)));
                row.put(
                    "seq".into(),
                    BoltType::from(i64::try_from(seq).unwrap_or(i64::MAX)),
                );
                BoltType::Map(row)
            })
            .collect();
        txn.run(
            query(&format!(
                "UNWIND $rows AS row MERGE (m:{META} {{key: row.key}}) SET m.seq = row.seq"
            ))
            .param("rows", rows),
        )
        .await?;
    }
    Ok(())
}

/// Events removed per retention transaction at most.
const PRUNE_CHUNK: usize = 5000;

/// How often each server applies the retention setting.
pub(super) const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// The sequence number below which events may have been removed by
/// retention (1: none removed), and the time of the last one removed.
pub(super) async fn pruned_before(
    shared: &Shared,
    lines: &super::Lines,
) -> Result<(u64, Micros), StoreError> {
    let q = query(&format!(
        "MATCH (m:{META} {{key: 'pruned'}}) RETURN m.before AS before, m.time AS time"
    ));
    let fetch = |db: neo4rs::Graph| async move {
        let mut rows = db.execute(q).await?;
        let mut out = (1, Micros::MIN);
        if let Some(row) = rows.next().await? {
            out = (
                row.get::<i64>("before").unwrap_or(1),
                row.get::<i64>("time").unwrap_or(Micros::MIN),
            );
        }
        Ok::<_, neo4rs::Error>(out)
    };
    let (before, time) = super::within(shared, lines, fetch).await?;
    Ok((u64::try_from(before).unwrap_or(1).max(1), time))
}

/// Applies the retention setting: removes the events older than it
/// (never stream records, never state), oldest first, in chunks; moves the
/// `pruned` mark. How many were removed.
pub(super) async fn prune(shared: &Shared) -> Result<usize, StoreError> {
    let Some(keep) = shared.config.retention else {
        return Ok(0);
    };
    let horizon = shared
        .config
        .clock
        .now()
        .saturating_sub(Micros::try_from(keep.as_micros()).unwrap_or(Micros::MAX));
    let mut removed = 0;
    loop {
        let n = retrying(shared, |db, sent| async move {
            let mut txn = db.start_txn().await?;
            let q = query(&format!(
                "MATCH (e:{EVENT}) WHERE e.time < $horizon AND e.stream IS NULL \
                 RETURN e.seq AS seq, e.time AS time ORDER BY seq LIMIT {PRUNE_CHUNK}"
            ))
            .param("horizon", horizon);
            let mut rows = txn.execute(q).await?;
            let mut seqs: Vec<i64> = Vec::new();
            let mut latest = Micros::MIN;
            while let Some(row) = rows.next(txn.handle()).await? {
                if let Ok(s) = row.get::<i64>("seq") {
                    seqs.push(s);
                    latest = latest.max(row.get::<i64>("time").unwrap_or(Micros::MIN));
                }
            }
            let Some(&last) = seqs.iter().max() else {
                txn.rollback().await?;
                return Ok(0);
            };
            txn.run(
                query(&format!(
                    "UNWIND $seqs AS s MATCH (e:{EVENT} {{seq: s}}) DELETE e"
                ))
                .param("seqs", seqs.clone()),
            )
            .await?;
            let q = query(&format!(
                "MERGE (m:{META} {{key: 'pruned'}}) SET m.lock = coalesce(m.lock, 0) + 1 \
                 RETURN m.before AS before, m.time AS time"
            ));
            let mut rows = txn.execute(q).await?;
            let (mut before, mut time) = (1, Micros::MIN);
            while let Some(row) = rows.next(txn.handle()).await? {
                before = row.get::<i64>("before").unwrap_or(1);
                time = row.get::<i64>("time").unwrap_or(Micros::MIN);
            }
            txn.run(
                query(&format!(
                    "MATCH (m:{META} {{key: 'pruned'}}) SET m.before = $before, m.time = $time"
                ))
                .param("before", before.max(last + 1))
                .param("time", time.max(latest)),
            )
            .await?;
            commit(txn, &sent).await?;
            Ok(seqs.len())
        })
        .await?;
        removed += n;
        if n < PRUNE_CHUNK {
            return Ok(removed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ahead(at: u64, ids: &[&str]) -> Ahead {
        Ahead {
            at,
            twins: ids
                .iter()
                .map(|id| ((*id).to_owned(), Twin::blank(id, "dtmi:x:T;1")))
                .collect(),
        }
    }

    fn kept(own: &Own, aheads: Vec<Ahead>, now: u64) -> Vec<String> {
        let mut ids: Vec<String> = own.current(aheads, now).into_keys().collect();
        ids.sort();
        ids
    }

    #[test]
    fn read_aheads_count_only_when_nothing_but_own_commits_came_between() {
        let mut own = Own::default();
        own.record(11, 20, HashSet::from(["a".to_owned()]));
        own.record(21, 21, HashSet::new());
        // Read at 10; since then only our own 11..=21: kept, less what they wrote.
        assert_eq!(
            kept(&own, vec![ahead(10, &["a", "b", "c"])], 21),
            ["b", "c"]
        );
        // Nothing committed since: all of it.
        assert_eq!(kept(&own, vec![ahead(21, &["a", "b"])], 21), ["a", "b"]);
        // Someone else committed 22 (the counter is ahead of our commits).
        assert!(kept(&own, vec![ahead(10, &["b"])], 22).is_empty());
        // Someone else committed 10 (read at 9, our commits start at 11).
        assert!(kept(&own, vec![ahead(9, &["b"])], 21).is_empty());
        // Several read-aheads, each judged alone.
        own.record(25, 30, HashSet::from(["b".to_owned()]));
        assert_eq!(
            kept(&own, vec![ahead(24, &["b", "c"]), ahead(21, &["d"])], 30),
            ["c"],
        );
    }

    #[test]
    fn read_aheads_older_than_the_remembered_commits_are_not_used() {
        let mut own = Own::default();
        for k in 0..(OWN_COMMITS as u64 + 5) {
            own.record(k + 1, k + 1, HashSet::new());
        }
        let now = OWN_COMMITS as u64 + 5;
        assert!(kept(&own, vec![ahead(0, &["a"])], now).is_empty());
        assert_eq!(kept(&own, vec![ahead(now - 3, &["a"])], now), ["a"]);
    }
}
