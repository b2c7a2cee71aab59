//! The embedded durable store: events and current state in one redb file in
//! the data directory (`<data>/twingraph.redb`).
//!
//! Tables: `events` (seq → event), `twins` (id → twin), `relationships`
//! ((source, id) → relationship), `twin_events` ((twin, seq) → ()) for
//! per-twin history, `meta` (format version, first kept seq). One group of
//! writes is one redb transaction committed with `Durability::Immediate`:
//! an event and the state it produced become durable together or not at all.
//! Startup loads `twins` and `relationships` (the always-current snapshot);
//! it never replays the event history.

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

/// The data format this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;

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

/// Write the current state of changed twins and relationships (a
/// checkpoint) once this many are pending, or this long after the last one.
const CHECKPOINT_PENDING: usize = 20_000;
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// State changed since the last checkpoint, waiting to be written.
#[derive(Debug, Default)]
struct Pending {
    twins: HashMap<String, Option<Twin>>,
    rels: HashMap<RelKey, Option<Relationship>>,
    last_seq: u64,
    since: Option<std::time::Instant>,
}

/// Events and state in a redb database.
///
/// Every commit writes its events (durably, with their per-twin index). The
/// current state of what they changed is written lazily, in checkpoints
/// folded into a later commit's transaction; the `checkpoint` meta entry
/// records up to which event the state tables are current, and startup
/// replays the (few) events after it. So an update writes its event, not a
/// copy of the whole twin, and recovery is bounded by the checkpoint interval.
#[derive(Debug)]
pub struct RedbJournal {
    db: Database,
    path: PathBuf,
    pending: Mutex<Pending>,
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
    };
    let graph = journal.load(&config).map_err(|e| match e {
        StoreError::Storage(m) => unusable(m),
        other => other,
    })?;
    Ok(Store::start(graph, models, Arc::new(journal), config))
}

/// Writes the pending state and the checkpoint mark into `txn`.
fn write_checkpoint(txn: &redb::WriteTransaction, p: &Pending) -> Result<(), StoreError> {
    let mut twins = txn.open_table(TWINS).map_err(storage)?;
    for (id, t) in &p.twins {
        match t {
            Some(t) => {
                twins
                    .insert(id.as_str(), encode(t)?.as_slice())
                    .map_err(storage)?;
            }
            None => {
                twins.remove(id.as_str()).map_err(storage)?;
            }
        }
    }
    let mut rels = txn.open_table(RELS).map_err(storage)?;
    for ((source, id), r) in &p.rels {
        match r {
            Some(r) => {
                rels.insert((source.as_str(), id.as_str()), encode(r)?.as_slice())
                    .map_err(storage)?;
            }
            None => {
                rels.remove((source.as_str(), id.as_str()))
                    .map_err(storage)?;
            }
        }
    }
    if p.last_seq > 0 {
        txn.open_table(META)
            .map_err(storage)?
            .insert("checkpoint", p.last_seq)
            .map_err(storage)?;
    }
    Ok(())
}

impl RedbJournal {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Pending is only replaced wholesale, so a poisoned lock holds a consistent value.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes everything pending now (on shutdown, so startup replays nothing).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut pending = self.lock_pending();
        if pending.twins.is_empty() && pending.rels.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(storage)?;
        write_checkpoint(&txn, &pending)?;
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
            if format.is_none() {
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
        for row in read
            .open_table(TWINS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (_, v) = row.map_err(storage)?;
            let t: Twin = serde_json::from_slice(v.value()).map_err(|e| corrupt("twin", e))?;
            graph.insert_twin(t);
        }
        for row in read
            .open_table(RELS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (_, v) = row.map_err(storage)?;
            let r: Relationship =
                serde_json::from_slice(v.value()).map_err(|e| corrupt("relationship", e))?;
            graph.insert_relationship(r);
        }
        // The state tables are current up to the checkpoint; replay the rest.
        let checkpoint = read
            .open_table(META)
            .map_err(storage)?
            .get("checkpoint")
            .map_err(storage)?
            .map_or(0, |v| v.value());
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
            graph.apply(&e);
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
        let due = pending.twins.len() + pending.rels.len() >= CHECKPOINT_PENDING
            || since.elapsed() >= CHECKPOINT_EVERY;
        let started = std::time::Instant::now();
        let written = if due {
            write_checkpoint(&txn, &pending)
        } else {
            Ok(())
        };
        match written.and_then(|()| txn.commit().map_err(storage)) {
            Ok(()) => {
                if due {
                    tracing::debug!(
                        twins = pending.twins.len(),
                        relationships = pending.rels.len(),
                        ms = started.elapsed().as_secs_f64() * 1000.0,
                        "embedded store: checkpoint written with a commit"
                    );
                    *pending = Pending::default();
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
