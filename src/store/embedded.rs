//! The embedded durable store: events and current state in one redb file in
//! the data directory (`<data>/twingraph.redb`).
//!
//! Tables: `events` (seq → event), `twins` (id → twin), `relationships`
//! ((source, id) → relationship), `twin_events` ((twin, seq) → ()) for
//! per-twin history, `meta` (format version, first kept seq). One group of
//! writes is one redb transaction committed with `Durability::Immediate`:
//! its events become durable together or not at all. The state tables are
//! written by checkpoints spread over later commits (see [`RedbJournal`]);
//! startup loads them and replays the events after the last complete
//! checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::StoreError;
use super::core::{Store, StoreConfig};
use super::journal::{Changed, Journal};
use crate::dtdl::ModelSet;
use crate::twin::graph::RelKey;
use crate::twin::{Event, Graph, Micros, Relationship, Twin};

/// The data format this build writes (it reads format 1 too: state rows of
/// plain JSON, as format 2 rows whose sequence number is 0).
pub const FORMAT_VERSION: u64 = 2;

const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
const EVENTS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("events");
const TWINS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("twins");
const RELS: TableDefinition<'static, (&str, &str), &[u8]> = TableDefinition::new("relationships");
const TWIN_EVENTS: TableDefinition<'static, (&str, u64), ()> = TableDefinition::new("twin_events");
/// Records of streams (configurations, rollouts), a copy retention never prunes.
const STREAMS: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("streams");

fn storage<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Storage(e.into().to_string())
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Storage(format!("cannot encode: {e}")))
}

/// When checkpoints start and how they are spread (see [`StoreConfig`]): a
/// commit of more events than `chunk` takes as many rows as it has events
/// (up to four chunks), so a checkpoint keeps up with the load that makes
/// it, and none of the commits stalls writing it all.
#[derive(Debug, Clone, Copy)]
struct CheckpointLimits {
    rows: usize,
    every: std::time::Duration,
    chunk: usize,
}

/// A state row: a 0 byte, the sequence number of the last event it
/// reflects (8 bytes, big-endian), then the JSON. Format 1 rows are the
/// JSON alone (sequence number 0: as of the checkpoint they were written in).
fn encode_row<T: serde::Serialize>(seq: u64, v: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(256);
    out.push(0);
    out.extend_from_slice(&seq.to_be_bytes());
    serde_json::to_writer(&mut out, v)
        .map_err(|e| StoreError::Storage(format!("cannot encode: {e}")))?;
    Ok(out)
}

/// The sequence number and JSON of a state row.
fn decode_row(bytes: &[u8]) -> (u64, &[u8]) {
    match bytes {
        [0, rest @ ..] if rest.len() >= 8 => {
            let (seq, json) = rest.split_at(8);
            let mut n = [0u8; 8];
            n.copy_from_slice(seq);
            (u64::from_be_bytes(n), json)
        }
        json => (0, json),
    }
}

/// State changed since the last checkpoint, waiting to be written.
#[derive(Debug, Default)]
struct Pending {
    twins: HashMap<String, Option<Twin>>,
    rels: HashMap<RelKey, Option<Relationship>>,
    last_seq: u64,
    since: Option<std::time::Instant>,
    /// The checkpoint being written, a chunk per commit.
    writing: Option<Checkpoint>,
}

/// A checkpoint: the state of what changed up to event `seq`, frozen, and
/// how many of its rows are written. The `checkpoint` mark moves to `seq`
/// with its last row.
#[derive(Debug)]
struct Checkpoint {
    seq: u64,
    twins: Vec<(String, Option<Twin>)>,
    rels: Vec<(RelKey, Option<Relationship>)>,
    written: usize,
    started: std::time::Instant,
}

impl Checkpoint {
    fn rows(&self) -> usize {
        self.twins.len() + self.rels.len()
    }
}

/// Events and state in a redb database.
///
/// Every commit writes its events (durably, with their per-twin index). The
/// current state of what they changed is written lazily, in checkpoints: the
/// state as of one event, frozen, written a chunk of rows per later commit
/// (in the commit's own transaction), so no commit carries a whole
/// checkpoint. Each state row records the last event it reflects; the
/// `checkpoint` meta entry says up to which event every row is current (it
/// moves with a checkpoint's last chunk). Startup replays the events after
/// it, each only onto rows older than it (rows of an unfinished checkpoint
/// are newer). So an update writes its event, not a copy of the whole twin,
/// and recovery is bounded by the checkpoint interval.
#[derive(Debug)]
pub struct RedbJournal {
    db: Database,
    path: PathBuf,
    pending: Mutex<Pending>,
    limits: CheckpointLimits,
}

/// Opens (creating if needed) the store in `dir`.
pub fn open(dir: &Path, models: Arc<ModelSet>, config: StoreConfig) -> Result<Store, StoreError> {
    let unusable = |message: String| StoreError::Unusable {
        path: dir.display().to_string(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| unusable(format!("cannot create it: {e}")))?;
    let path = dir.join("twingraph.redb");
    let db = Database::builder()
        .set_cache_size(config.storage_cache_bytes)
        .create(&path)
        .map_err(|e| {
        unusable(format!(
            "cannot open {}: {e} (is it a twingraph data file, and not in use by another process?)",
            path.display()
        ))
    })?;
    let journal = RedbJournal {
        db,
        path,
        pending: Mutex::new(Pending::default()),
        limits: CheckpointLimits {
            rows: config.checkpoint_rows.max(1),
            every: config.checkpoint_every,
            chunk: config.checkpoint_chunk.max(1),
        },
    };
    let graph = journal.load(&config).map_err(|e| match e {
        StoreError::Storage(m) => unusable(m),
        other => other,
    })?;
    Ok(Store::start(graph, models, Arc::new(journal), config))
}

/// Writes state rows into `txn`, each as of event `seq`.
fn write_rows<'a>(
    txn: &redb::WriteTransaction,
    seq: u64,
    twins: impl Iterator<Item = (&'a String, &'a Option<Twin>)>,
    rels: impl Iterator<Item = (&'a RelKey, &'a Option<Relationship>)>,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(TWINS).map_err(storage)?;
    for (id, t) in twins {
        match t {
            Some(t) => {
                table
                    .insert(id.as_str(), encode_row(seq, t)?.as_slice())
                    .map_err(storage)?;
            }
            None => {
                table.remove(id.as_str()).map_err(storage)?;
            }
        }
    }
    let mut table = txn.open_table(RELS).map_err(storage)?;
    for ((source, id), r) in rels {
        match r {
            Some(r) => {
                table
                    .insert(
                        (source.as_str(), id.as_str()),
                        encode_row(seq, r)?.as_slice(),
                    )
                    .map_err(storage)?;
            }
            None => {
                table
                    .remove((source.as_str(), id.as_str()))
                    .map_err(storage)?;
            }
        }
    }
    Ok(())
}

fn set_mark(txn: &redb::WriteTransaction, seq: u64) -> Result<(), StoreError> {
    if seq > 0 {
        txn.open_table(META)
            .map_err(storage)?
            .insert("checkpoint", seq)
            .map_err(storage)?;
    }
    Ok(())
}

/// Writes up to `n` more rows of checkpoint `c` into `txn` (and the mark,
/// with its last row); how many it wrote.
fn write_chunk(
    txn: &redb::WriteTransaction,
    c: &Checkpoint,
    n: usize,
) -> Result<usize, StoreError> {
    let end = c.written.saturating_add(n).min(c.rows());
    let split = c.twins.len();
    let twins = &c.twins[c.written.min(split)..end.min(split)];
    let rels = &c.rels[c.written.max(split) - split..end.max(split) - split];
    write_rows(
        txn,
        c.seq,
        twins.iter().map(|(k, v)| (k, v)),
        rels.iter().map(|(k, v)| (k, v)),
    )?;
    if end == c.rows() {
        set_mark(txn, c.seq)?;
    }
    Ok(end - c.written)
}

impl RedbJournal {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Pending is only replaced wholesale, so a poisoned lock holds a consistent value.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes everything pending now, the rest of a checkpoint being
    /// written first (on shutdown, so startup replays nothing).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut pending = self.lock_pending();
        if pending.twins.is_empty() && pending.rels.is_empty() && pending.writing.is_none() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(storage)?;
        if let Some(c) = &pending.writing {
            write_chunk(&txn, c, usize::MAX)?;
        }
        write_rows(
            &txn,
            pending.last_seq,
            pending.twins.iter(),
            pending.rels.iter(),
        )?;
        set_mark(&txn, pending.last_seq)?;
        txn.commit().map_err(storage)?;
        *pending = Pending::default();
        Ok(())
    }

    /// Checks the format and loads the current state into a graph.
    fn load(&self, config: &StoreConfig) -> Result<Graph, StoreError> {
        // Check the format with a read transaction first: a newer format is
        // refused before this build writes anything.
        let format = {
            let read = self.db.begin_read().map_err(storage)?;
            match read.open_table(META) {
                Ok(meta) => meta.get("format").map_err(storage)?.map(|v| v.value()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(storage(e)),
            }
        };
        if let Some(f) = format
            && f > FORMAT_VERSION
        {
            return Err(StoreError::Unusable {
                path: self.path.display().to_string(),
                message: format!(
                    "it was written by a newer twingraph (data format {f}); this build reads format {FORMAT_VERSION}. Nothing was changed."
                ),
            });
        }
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut meta = txn.open_table(META).map_err(storage)?;
            // Format 1 is read as it is; rows written from now on are of
            // this build's format, which older builds must refuse.
            if format.is_none_or(|f| f < FORMAT_VERSION) {
                meta.insert("format", FORMAT_VERSION).map_err(storage)?;
            }
            txn.open_table(EVENTS).map_err(storage)?;
            txn.open_table(TWINS).map_err(storage)?;
            txn.open_table(RELS).map_err(storage)?;
            txn.open_table(TWIN_EVENTS).map_err(storage)?;
            txn.open_table(STREAMS).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;

        let mut graph = Graph::new(config.graph.clone());
        let read = self.db.begin_read().map_err(storage)?;
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Storage(format!("corrupt {what} record: {e}"))
        };
        // Every row is current up to the checkpoint; rows written since, by
        // a checkpoint that did not finish, are newer (their own sequence).
        let checkpoint = read
            .open_table(META)
            .map_err(storage)?
            .get("checkpoint")
            .map_err(storage)?
            .map_or(0, |v| v.value());
        let started = std::time::Instant::now();
        {
            let count = |n: Result<u64, redb::StorageError>| {
                n.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            };
            let twins = count(read.open_table(TWINS).map_err(storage)?.len()).map_err(storage)?;
            let rels = count(read.open_table(RELS).map_err(storage)?.len()).map_err(storage)?;
            graph.reserve(twins, rels);
        }
        let mut newer_twins: HashMap<String, u64> = HashMap::new();
        let mut newer_rels: HashMap<RelKey, u64> = HashMap::new();
        for row in read
            .open_table(TWINS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (k, v) = row.map_err(storage)?;
            let (seq, json) = decode_row(v.value());
            let t: Twin = serde_json::from_slice(json).map_err(|e| corrupt("twin", e))?;
            if seq > checkpoint {
                newer_twins.insert(k.value().to_owned(), seq);
            }
            graph.insert_twin(t);
        }
        let twins_read = started.elapsed();
        for row in read
            .open_table(RELS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (k, v) = row.map_err(storage)?;
            let (seq, json) = decode_row(v.value());
            let r: Relationship =
                serde_json::from_slice(json).map_err(|e| corrupt("relationship", e))?;
            if seq > checkpoint {
                let (source, id) = k.value();
                newer_rels.insert((source.to_owned(), id.to_owned()), seq);
            }
            graph.insert_relationship(r);
        }
        let rels_read = started.elapsed() - twins_read;
        let events = read.open_table(EVENTS).map_err(storage)?;
        if let Some((_, v)) = events.last().map_err(storage)? {
            let e: Event = serde_json::from_slice(v.value()).map_err(|e| corrupt("event", e))?;
            graph.set_position(checkpoint.min(e.seq), e.time.min(graph.last_time()));
        }
        let mut pending = self.lock_pending();
        for row in events
            .range(checkpoint.saturating_add(1)..)
            .map_err(storage)?
        {
            let (_, v) = row.map_err(storage)?;
            let e: Event = serde_json::from_slice(v.value()).map_err(|e| corrupt("event", e))?;
            // A row already as of this event (or later) has its change.
            let stored = match &e.change {
                crate::twin::Change::RelationshipCreated { relationship: r } => {
                    newer_rels.get(&(r.source.clone(), r.id.clone())).copied()
                }
                crate::twin::Change::RelationshipUpdated { source, id, .. }
                | crate::twin::Change::RelationshipDeleted { source, id, .. } => {
                    newer_rels.get(&(source.clone(), id.clone())).copied()
                }
                change => change
                    .twins()
                    .first()
                    .and_then(|t| newer_twins.get(*t).copied()),
            };
            if stored.is_some_and(|s| s >= e.seq) {
                graph.advance(&e);
            } else {
                graph.apply(&e);
            }
            // What the replayed events changed goes into the next checkpoint.
            for t in e.change.twins() {
                pending.twins.insert(t.to_owned(), graph.twin(t).cloned());
            }
            match &e.change {
                crate::twin::Change::RelationshipCreated { relationship: r } => {
                    let k = (r.source.clone(), r.id.clone());
                    pending
                        .rels
                        .insert(k.clone(), graph.relationship(&k.0, &k.1));
                }
                crate::twin::Change::RelationshipUpdated { source, id, .. }
                | crate::twin::Change::RelationshipDeleted { source, id, .. } => {
                    pending
                        .rels
                        .insert((source.clone(), id.clone()), graph.relationship(source, id));
                }
                _ => {}
            }
            pending.last_seq = e.seq;
        }
        let streams = read.open_table(STREAMS).map_err(storage)?;
        for stream in crate::twin::event::RECORD_STREAMS {
            if let Some((k, _)) = streams
                .range((stream, 0)..=(stream, u64::MAX))
                .map_err(storage)?
                .next_back()
                .transpose()
                .map_err(storage)?
            {
                graph.set_stream_head(stream, k.value().1);
            }
        }
        tracing::info!(
            twins = graph.twin_count(),
            twins_s = twins_read.as_secs_f64(),
            relationships_s = rels_read.as_secs_f64(),
            replayed = pending.last_seq.saturating_sub(checkpoint),
            total_s = started.elapsed().as_secs_f64(),
            "embedded store: loaded"
        );
        Ok(graph)
    }
}

impl Journal for RedbJournal {
    fn commit(&self, events: &[Event], changed: Changed) -> Result<(), StoreError> {
        let mut pending = self.lock_pending();
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut ev = txn.open_table(EVENTS).map_err(storage)?;
            let mut idx = txn.open_table(TWIN_EVENTS).map_err(storage)?;
            let mut streams = txn.open_table(STREAMS).map_err(storage)?;
            for e in events {
                let bytes = encode(e)?;
                ev.insert(e.seq, bytes.as_slice()).map_err(storage)?;
                for t in e.change.twins() {
                    idx.insert((t, e.seq), ()).map_err(storage)?;
                }
                if let Some(stream) = e.change.stream() {
                    streams
                        .insert((stream, e.seq), bytes.as_slice())
                        .map_err(storage)?;
                }
            }
        }
        // Merge into the pending state, remembering what each key held
        // before so a failed commit can put it back exactly.
        let mut undo_twins = Vec::with_capacity(changed.twins.len());
        for (id, t) in changed.twins {
            let old = pending.twins.insert(id.clone(), t);
            undo_twins.push((id, old));
        }
        let mut undo_rels = Vec::with_capacity(changed.rels.len());
        for (k, r) in changed.rels {
            let old = pending.rels.insert(k.clone(), r);
            undo_rels.push((k, old));
        }
        let old_seq = pending.last_seq;
        if let Some(last) = events.last() {
            pending.last_seq = last.seq;
        }
        let old_since = pending.since;
        let since = *pending.since.get_or_insert_with(std::time::Instant::now);
        // A chunk of the checkpoint being written rides along.
        let chunk = match &pending.writing {
            Some(c) => write_chunk(
                &txn,
                c,
                events.len().clamp(self.limits.chunk, 4 * self.limits.chunk),
            ),
            None => Ok(0),
        };
        match chunk.and_then(|n| txn.commit().map_err(storage).map(|()| n)) {
            Ok(n) => {
                if let Some(c) = &mut pending.writing {
                    c.written += n;
                    if c.written == c.rows() {
                        tracing::debug!(
                            seq = c.seq,
                            rows = c.rows(),
                            ms = c.started.elapsed().as_secs_f64() * 1000.0,
                            "embedded store: checkpoint written"
                        );
                        pending.writing = None;
                    }
                }
                let due = pending.twins.len() + pending.rels.len() >= self.limits.rows
                    || since.elapsed() >= self.limits.every;
                if due && pending.writing.is_none() {
                    // Freeze what changed up to here; the next commits write
                    // it, in key order: each chunk then touches neighbouring
                    // pages of the tables, not pages all over them.
                    let p = &mut *pending;
                    let mut twins: Vec<_> = p.twins.drain().collect();
                    twins.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    let mut rels: Vec<_> = p.rels.drain().collect();
                    rels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    p.writing = Some(Checkpoint {
                        seq: p.last_seq,
                        twins,
                        rels,
                        written: 0,
                        started: std::time::Instant::now(),
                    });
                    p.since = None;
                }
                Ok(())
            }
            Err(e) => {
                for (id, old) in undo_twins.into_iter().rev() {
                    match old {
                        Some(o) => pending.twins.insert(id, o),
                        None => pending.twins.remove(&id),
                    };
                }
                for (k, old) in undo_rels.into_iter().rev() {
                    match old {
                        Some(o) => pending.rels.insert(k, o),
                        None => pending.rels.remove(&k),
                    };
                }
                pending.last_seq = old_seq;
                pending.since = old_since;
                Err(e)
            }
        }
    }

    fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let read = self.db.begin_read().map_err(storage)?;
        let table = read.open_table(EVENTS).map_err(storage)?;
        let mut out = Vec::new();
        for row in table
            .range(seq.saturating_add(1)..)
            .map_err(storage)?
            .take(limit)
        {
            let (_, v) = row.map_err(storage)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Storage(format!("corrupt event record: {e}")))?,
            );
        }
        Ok(out)
    }

    fn twin_events(&self, twin: &str) -> Result<Vec<Event>, StoreError> {
        let read = self.db.begin_read().map_err(storage)?;
        let idx = read.open_table(TWIN_EVENTS).map_err(storage)?;
        let events = read.open_table(EVENTS).map_err(storage)?;
        let mut out = Vec::new();
        for row in idx
            .range((twin, 0u64)..=(twin, u64::MAX))
            .map_err(storage)?
        {
            let (k, _) = row.map_err(storage)?;
            let (_, seq) = k.value();
            if let Some(v) = events.get(seq).map_err(storage)? {
                out.push(
                    serde_json::from_slice(v.value())
                        .map_err(|e| StoreError::Storage(format!("corrupt event record: {e}")))?,
                );
            }
        }
        Ok(out)
    }

    fn stream_events(
        &self,
        stream: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let read = self.db.begin_read().map_err(storage)?;
        let table = read.open_table(STREAMS).map_err(storage)?;
        let mut out = Vec::new();
        for row in table
            .range((stream, seq.saturating_add(1))..=(stream, u64::MAX))
            .map_err(storage)?
            .take(limit)
        {
            let (_, v) = row.map_err(storage)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Storage(format!("corrupt stream record: {e}")))?,
            );
        }
        Ok(out)
    }

    fn first_seq(&self) -> u64 {
        let first = || -> Result<u64, StoreError> {
            let read = self.db.begin_read().map_err(storage)?;
            let table = read.open_table(EVENTS).map_err(storage)?;
            Ok(table
                .first()
                .map_err(storage)?
                .map_or(1, |(k, _)| k.value()))
        };
        first().unwrap_or(1)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.checkpoint()
    }

    fn prune_before(&self, time: Micros) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let removed;
        {
            // Events after the checkpoint are still needed to rebuild state.
            let checkpoint = txn
                .open_table(META)
                .map_err(storage)?
                .get("checkpoint")
                .map_err(storage)?
                .map_or(0, |v| v.value());
            let mut ev = txn.open_table(EVENTS).map_err(storage)?;
            let mut idx = txn.open_table(TWIN_EVENTS).map_err(storage)?;
            let mut old: Vec<(u64, Vec<String>)> = Vec::new();
            for row in ev.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let e: Event = serde_json::from_slice(v.value())
                    .map_err(|e| StoreError::Storage(format!("corrupt event record: {e}")))?;
                if e.time >= time || e.seq > checkpoint {
                    break;
                }
                old.push((
                    k.value(),
                    e.change.twins().into_iter().map(str::to_owned).collect(),
                ));
            }
            // Keep at least the last event, so the log position survives.
            if ev.len().map_err(storage)? as usize == old.len() {
                old.pop();
            }
            for (seq, twins) in &old {
                ev.remove(*seq).map_err(storage)?;
                for t in twins {
                    idx.remove((t.as_str(), *seq)).map_err(storage)?;
                }
            }
            removed = old.len();
        }
        txn.commit().map_err(storage)?;
        Ok(removed)
    }
}
