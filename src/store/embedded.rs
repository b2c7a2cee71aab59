//! The embedded durable store: two redb files in the data directory, the
//! log (`<data>/twingraph.redb`) and the state as of the last checkpoint
//! (`<data>/state.redb`).
//!
//! The log's tables: `events` (seq → event, with links to each of its
//! twins' previous event), `streams` (copies of configuration and rollout
//! records), `meta` (format version, where linked events start), and
//! `twin_events` ((twin, seq) → ()), the per-twin history index of stores
//! written before format 3 (read, never written). One group of writes is
//! one redb transaction of the log committed with `Durability::Immediate`:
//! its events become durable together or not at all.
//!
//! The state file's tables: `twins` (id → twin), `relationship_rows`
//! ((source, part) → the source's outgoing relationships, see
//! [`super::row`]), `heads` (twin → its last event: where its history
//! starts) and `meta` (its format, the checkpoint mark). They are written by
//! checkpoints spread over later commits (see [`RedbJournal`]); startup
//! loads them and replays the log's events after the mark. Apart from the
//! log, the state is laid out on its own: startup reads one file a fraction
//! of the log's size, not pages spread over the whole log.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::StoreError;
use super::core::{Store, StoreConfig};
use super::journal::Journal;
use crate::dtdl::ModelSet;
use crate::twin::graph::{IdHasher, RelKey};
use crate::twin::rels::{RelLoader, RelParts, RelRow};
use crate::twin::{Change, Event, Graph, Micros, Relationship, Twin};

/// The data format this build writes. It reads formats 1 and 2 too: their
/// state rows are JSON (format 1 without, format 2 with the sequence number
/// of the event they reflect), their events carry no links, and their
/// per-twin history is the `twin_events` index.
///
/// Format 4 keeps the state in a file of its own (`state.redb`); the state
/// tables of a format 1–3 store move there when it is first opened.
///
/// Format 5 writes twin rows in binary ([`super::row`]), a third of their
/// JSON; JSON rows of earlier formats are read as they are, and rewritten
/// when their twin next changes.
///
/// Format 6 keeps a source's outgoing relationships in one row
/// (`relationship_rows`) instead of a row per relationship: a million twins
/// with five relationships each are a million rows, not five, and a
/// quarter of the bytes. The per-relationship table of earlier formats is
/// read, then rewritten as rows of sources once at startup.
pub const FORMAT_VERSION: u64 = 6;

/// The state file's format.
const STATE_FORMAT: u64 = 1;

/// The state file's name in the data directory.
pub const STATE_FILE: &str = "state.redb";

/// The share of the storage cache the log takes (the state file the rest):
/// appends touch only the log's last pages; checkpoints and history heads
/// read and rewrite state pages all over it.
const LOG_CACHE_SHARE: usize = 4;

const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
const EVENTS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("events");
const TWINS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("twins");
const RELS: TableDefinition<'static, (&str, u32), &[u8]> =
    TableDefinition::new("relationship_rows");
/// A row per relationship (formats 1–5): read at startup, then replaced.
const OLD_RELS: TableDefinition<'static, (&str, &str), &[u8]> =
    TableDefinition::new("relationships");
const HEADS: TableDefinition<'static, &str, u64> = TableDefinition::new("heads");
/// Per-twin history of events before `links_from` (formats 1 and 2).
const TWIN_EVENTS: TableDefinition<'static, (&str, u64), ()> = TableDefinition::new("twin_events");
/// Records of streams (configurations, rollouts), a copy retention never prunes.
const STREAMS: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("streams");

fn storage<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Storage(e.into().to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(format!("corrupt {what} record: {e}"))
}

/// When checkpoints start and how they are spread (see [`StoreConfig`]): a
/// commit of more events than `chunk` takes as many rows as it has events
/// (up to four chunks), so a checkpoint keeps up with the load that makes
/// it, and none of the commits stalls writing it all.
#[derive(Debug, Clone, Copy)]
struct CheckpointLimits {
    rows: usize,
    events: u64,
    every: std::time::Duration,
    chunk: usize,
    /// A non-final chunk is committed without waiting for the disk, but
    /// durably this long after the last durable one, so that pages the
    /// chunks freed become reusable (redb reuses them after a durable
    /// commit).
    sync: std::time::Duration,
}

/// An event row (format 3): a 1 byte, how many twins the event concerns
/// (`n`, those of [`Change::twins`], in that order), for each the sequence
/// number of that twin's previous event (8 bytes, big-endian; 0: none),
/// then the event's JSON. A twin's history is the chain of these links
/// from its head: appending an event writes no index entry in the middle
/// of a table. Rows of earlier formats are the JSON alone.
fn encode_event(e: &Event, links: &[u64]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(2 + 8 * links.len() + 320);
    out.push(1);
    out.push(u8::try_from(links.len()).unwrap_or(u8::MAX));
    for l in links {
        out.extend_from_slice(&l.to_be_bytes());
    }
    serde_json::to_writer(&mut out, e)
        .map_err(|e| StoreError::Storage(format!("cannot encode: {e}")))?;
    Ok(out)
}

/// The links and JSON of an event row (no links: a row of an earlier format).
fn split_event(bytes: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    match bytes {
        [1, n, rest @ ..] => {
            let n = usize::from(*n) * 8;
            if rest.len() < n {
                return Err(corrupt("event", "truncated links"));
            }
            Ok(rest.split_at(n))
        }
        json => Ok((&[], json)),
    }
}

/// Link `i` of an event row's links (0 when it has none).
fn link(links: &[u8], i: usize) -> u64 {
    links
        .get(i * 8..i * 8 + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

fn decode_event(bytes: &[u8]) -> Result<Event, StoreError> {
    let (_, json) = split_event(bytes)?;
    serde_json::from_slice(json).map_err(|e| corrupt("event", e))
}

/// The sequence number and JSON of a JSON state row (formats 2–4): a 0
/// byte, the sequence number of the last event it reflects (8 bytes,
/// big-endian), then the JSON. Format 1 rows are the JSON alone (sequence
/// number 0: as of the checkpoint they were written in).
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

/// The sequence number and twin of the row of twin `id`: binary (format
/// 5) or JSON (earlier formats).
fn decode_twin_row(id: &str, bytes: &[u8]) -> Result<(Twin, u64), StoreError> {
    if bytes.first() == Some(&super::row::TWIN_ROW) {
        let (seq, t) = super::row::decode_twin(id, bytes).map_err(|e| corrupt("twin", e))?;
        return Ok((t, seq));
    }
    let (seq, json) = decode_row(bytes);
    let t: Twin = serde_json::from_slice(json).map_err(|e| corrupt("twin", e))?;
    Ok((t, seq))
}

// A relationship row of formats 3–5 (its key holds source and id): a 2
// byte, the sequence number of the last event it reflects, the name and the
// target (each a 4-byte length and the bytes), version, creation and update
// times (8 bytes each), then the properties' JSON (nothing: none). Read by
// `load_rel_row`; format 6 writes rows of sources instead.

/// Reads the fields of a binary row in order.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt("relationship", "truncated"));
        }
        let (part, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(part)
    }

    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut n = [0u8; 8];
        n.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(n))
    }

    fn text(&mut self) -> Result<&'a str, StoreError> {
        let mut n = [0u8; 4];
        n.copy_from_slice(self.take(4)?);
        let len = usize::try_from(u32::from_be_bytes(n)).unwrap_or(usize::MAX);
        std::str::from_utf8(self.take(len)?).map_err(|e| corrupt("relationship", e))
    }
}

/// Loads a relationship row (its key holds source and id); the sequence
/// number of the last event it reflects.
fn load_rel_row(
    loaded: &mut RelLoader,
    (source, id): (&str, &str),
    bytes: &[u8],
) -> Result<u64, StoreError> {
    let [2, rest @ ..] = bytes else {
        let (seq, json) = decode_row(bytes);
        let r: Relationship =
            serde_json::from_slice(json).map_err(|e| corrupt("relationship", e))?;
        loaded.load(RelParts {
            source: &r.source,
            id: &r.id,
            name: &r.name,
            target: &r.target,
            properties: Some(r.properties),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        });
        return Ok(seq);
    };
    let mut c = Cursor(rest);
    let seq = c.u64()?;
    let name = c.text()?;
    let target = c.text()?;
    let version = c.u64()?;
    let created_at = c.u64()?.cast_signed();
    let updated_at = c.u64()?.cast_signed();
    let properties = if c.0.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(c.0).map_err(|e| corrupt("relationship", e))?)
    };
    loaded.load(RelParts {
        source,
        id,
        name,
        target,
        properties,
        version,
        created_at,
        updated_at,
    });
    Ok(seq)
}

/// What changed since the last checkpoint (keys only: a checkpoint writes
/// the graph's current state of them), and the head of every twin's history.
#[derive(Debug, Default)]
struct Pending {
    /// Twins whose row and head are to be written (events touched them).
    twins: HashSet<String, IdHasher>,
    /// Sources whose relationship rows are to be written.
    rels: HashSet<String, IdHasher>,
    /// Events since the last checkpoint started.
    events: u64,
    last_seq: u64,
    since: Option<std::time::Instant>,
    /// The checkpoint being written, a chunk per commit.
    writing: Option<Checkpoint>,
    /// The last event of each twin touched since startup (deleted twins'
    /// too: their history stays); the `heads` table has the others'.
    heads: HashMap<Arc<str>, u64, IdHasher>,
}

/// A checkpoint: what changed up to event `seq`, frozen in key order, and
/// how many of its rows are written. Rows hold the state current when they
/// are written (as of a later event, which they record); the `checkpoint`
/// mark moves to `seq` with the last row.
#[derive(Debug)]
struct Checkpoint {
    seq: u64,
    twins: Vec<String>,
    /// Sources of relationships.
    rels: Vec<String>,
    written: usize,
    started: std::time::Instant,
    /// When a chunk of it was last committed durably.
    synced: std::time::Instant,
}

impl Checkpoint {
    fn rows(&self) -> usize {
        self.twins.len() + self.rels.len()
    }
}

/// Relationships loaded at startup apart from the graph.
struct RelsLoaded {
    loaded: RelLoader,
    /// Rows of relationships (formats 1–5) newer than the checkpoint.
    newer_rels: HashMap<RelKey, u64>,
    /// Rows of sources newer than the checkpoint.
    newer_sources: HashMap<String, u64>,
    /// How many rows the per-relationship table had, if there is one.
    old_rows: Option<u64>,
    took: std::time::Duration,
}

/// Events in one redb database, state in another.
///
/// Every commit appends its events to the log, each linked to its twins'
/// previous events (durably). The current state of what they changed is
/// written lazily, in checkpoints: the keys changed up to one event,
/// frozen, their rows (and history heads) written from the graph into the
/// state file a chunk after each later commit, so no commit carries a whole
/// checkpoint. Each state row records the last event it reflects; the
/// state's `checkpoint` meta entry says up to which event every row is
/// current (it moves with a checkpoint's last chunk, committed durably).
/// State is never ahead of the log: a chunk is written after the commit
/// whose graph it reads is durable. Startup replays the events after the
/// mark, each only onto rows older than it. So an update writes its event
/// at the end of the log, not a copy of the whole twin, and recovery is
/// bounded by the checkpoint interval.
#[derive(Debug)]
pub struct RedbJournal {
    /// The log.
    db: Database,
    /// The state as of the checkpoint.
    state: Database,
    path: PathBuf,
    pending: Mutex<Pending>,
    limits: CheckpointLimits,
    /// The first event with links: the history of earlier ones is `twin_events`.
    links_from: std::sync::atomic::AtomicU64,
}

/// Opens (creating if needed) the store in `dir`.
pub fn open(dir: &Path, models: Arc<ModelSet>, config: StoreConfig) -> Result<Store, StoreError> {
    let unusable = |message: String| StoreError::Unusable {
        path: dir.display().to_string(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| unusable(format!("cannot create it: {e}")))?;
    let path = dir.join("twingraph.redb");
    let state_path = dir.join(STATE_FILE);
    let open_db = |path: &Path, cache: usize| {
        Database::builder()
            .set_cache_size(cache)
            .create(path)
            .map_err(|e| {
                unusable(format!(
                    "cannot open {}: {e} (is it a twingraph data file, and not in use by another process?)",
                    path.display()
                ))
            })
    };
    // redb needs a few pages of cache to write.
    const MIN_CACHE: usize = 1024 * 1024;
    let log_cache = (config.storage_cache_bytes / LOG_CACHE_SHARE).max(MIN_CACHE);
    let state_cache =
        (config.storage_cache_bytes - config.storage_cache_bytes / LOG_CACHE_SHARE).max(MIN_CACHE);
    let db = open_db(&path, log_cache)?;
    // A newer format is refused before this build writes anything.
    check_format(&db, &path)?;
    // Loading reads every state row once: through a small cache, then the
    // file is reopened with the configured one (which would otherwise
    // start full of pages no write needs, memory taken for nothing).
    const LOAD_CACHE: usize = 4 * 1024 * 1024;
    let mut journal = RedbJournal {
        db,
        state: open_db(&state_path, LOAD_CACHE.min(state_cache))?,
        path: path.clone(),
        pending: Mutex::new(Pending::default()),
        limits: CheckpointLimits {
            rows: config.checkpoint_rows.max(1),
            events: config.checkpoint_events.max(1),
            every: config.checkpoint_every,
            chunk: config.checkpoint_chunk.max(1),
            sync: config.checkpoint_sync,
        },
        links_from: std::sync::atomic::AtomicU64::new(1),
    };
    let graph = journal.load(&config).map_err(|e| match e {
        StoreError::Storage(m) => unusable(m),
        other => other,
    })?;
    if state_cache > LOAD_CACHE {
        let RedbJournal {
            db,
            state,
            path,
            pending,
            limits,
            links_from,
        } = journal;
        // Closed before the file opens again.
        drop(state);
        journal = RedbJournal {
            db,
            state: open_db(&state_path, state_cache)?,
            path,
            pending,
            limits,
            links_from,
        };
    }
    Ok(Store::start(graph, models, Arc::new(journal), config))
}

/// Writes the graph's current state of `twins` (rows and history heads) and
/// of the relationships of `sources` into `txn`, each row as of the graph's
/// last event.
fn write_rows<'a>(
    txn: &redb::WriteTransaction,
    graph: &Graph,
    heads: &HashMap<Arc<str>, u64, IdHasher>,
    twins: impl Iterator<Item = &'a String> + Clone,
    sources: impl Iterator<Item = &'a String>,
) -> Result<(), StoreError> {
    let seq = graph.last_seq();
    let mut table = txn.open_table(TWINS).map_err(storage)?;
    for id in twins.clone() {
        match graph.twin(id) {
            Some(t) => {
                table
                    .insert(
                        id.as_str(),
                        super::row::encode_twin(seq, t)
                            .map_err(|e| {
                                StoreError::Storage(format!("cannot encode twin {id}: {e}"))
                            })?
                            .as_slice(),
                    )
                    .map_err(storage)?;
            }
            None => {
                table.remove(id.as_str()).map_err(storage)?;
            }
        }
    }
    let mut table = txn.open_table(HEADS).map_err(storage)?;
    for id in twins {
        if let Some(&head) = heads.get(id.as_str()) {
            table.insert(id.as_str(), head).map_err(storage)?;
        }
    }
    let mut table = txn.open_table(RELS).map_err(storage)?;
    let mut rels: Vec<RelRow<'_>> = Vec::new();
    let mut wrote = false;
    for source in sources {
        wrote = true;
        rels.clear();
        rels.extend(graph.outgoing_rows(source));
        // In id order, as rows of a relationship each were (and so the
        // order of a twin's relationships after a restart).
        rels.sort_unstable_by(|a, b| a.id.cmp(b.id));
        let mut part = 0u32;
        for chunk in rels.chunks(super::row::RELS_PER_ROW) {
            let row = super::row::encode_rels(seq, source, chunk).map_err(|e| {
                StoreError::Storage(format!("cannot encode relationships of {source}: {e}"))
            })?;
            table
                .insert((source.as_str(), part), row.as_slice())
                .map_err(storage)?;
            part += 1;
        }
        // Rows past the last written, of relationships since deleted.
        while table
            .remove((source.as_str(), part))
            .map_err(storage)?
            .is_some()
        {
            part += 1;
        }
    }
    if wrote {
        // How many relationships a startup makes room for at once.
        txn.open_table(META)
            .map_err(storage)?
            .insert("relationships", graph.relationship_count() as u64)
            .map_err(storage)?;
    }
    Ok(())
}

/// Refuses a log of a newer format (read only: nothing is changed).
fn check_format(db: &Database, path: &Path) -> Result<(), StoreError> {
    let read = db.begin_read().map_err(storage)?;
    let format = match read.open_table(META) {
        Ok(meta) => meta.get("format").map_err(storage)?.map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(storage(e)),
    };
    match format {
        Some(f) if f > FORMAT_VERSION => Err(StoreError::Unusable {
            path: path.display().to_string(),
            message: format!(
                "it was written by a newer twingraph (data format {f}); this build reads format {FORMAT_VERSION}. Nothing was changed."
            ),
        }),
        _ => Ok(()),
    }
}

/// The state's checkpoint mark: every row is current up to that event.
fn mark(state: &redb::ReadTransaction) -> Result<u64, StoreError> {
    match state.open_table(META) {
        Ok(meta) => Ok(meta
            .get("checkpoint")
            .map_err(storage)?
            .map_or(0, |v| v.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(storage(e)),
    }
}

/// Copies every row of `def` from `from` into `to` as it is.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &redb::ReadTransaction,
    to: &redb::WriteTransaction,
    def: TableDefinition<'static, K, V>,
) -> Result<u64, StoreError>
where
    for<'a> K::SelfType<'a>: std::borrow::Borrow<K::SelfType<'a>>,
    for<'a> V::SelfType<'a>: std::borrow::Borrow<V::SelfType<'a>>,
{
    let mut out = to.open_table(def).map_err(storage)?;
    let table = match from.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(storage(e)),
    };
    let mut n = 0;
    for row in table.iter().map_err(storage)? {
        let (k, v) = row.map_err(storage)?;
        out.insert(k.value(), v.value()).map_err(storage)?;
        n += 1;
    }
    Ok(n)
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
    graph: &Graph,
    heads: &HashMap<Arc<str>, u64, IdHasher>,
) -> Result<usize, StoreError> {
    let end = c.written.saturating_add(n).min(c.rows());
    let split = c.twins.len();
    let twins = &c.twins[c.written.min(split)..end.min(split)];
    let rels = &c.rels[c.written.max(split) - split..end.max(split) - split];
    write_rows(txn, graph, heads, twins.iter(), rels.iter())?;
    if end == c.rows() {
        set_mark(txn, c.seq)?;
    }
    Ok(end - c.written)
}

/// Writes what `p` has pending (the rest of a checkpoint being written
/// first) into `txn`, and the mark after it.
fn write_pending(
    txn: &redb::WriteTransaction,
    p: &Pending,
    graph: &Graph,
) -> Result<(), StoreError> {
    if let Some(c) = &p.writing {
        write_chunk(txn, c, usize::MAX, graph, &p.heads)?;
    }
    // In key order, as checkpoints write (neighbouring pages).
    let mut twins: Vec<&String> = p.twins.iter().collect();
    twins.sort_unstable();
    let mut sources: Vec<&String> = p.rels.iter().collect();
    sources.sort_unstable();
    write_rows(txn, graph, &p.heads, twins.into_iter(), sources.into_iter())?;
    set_mark(txn, p.last_seq)
}

/// Marks what `e` touched as changed since the last checkpoint, and moves
/// its twins' heads to it.
fn touch(pending: &mut Pending, e: &Event) {
    for t in e.change.twins() {
        match pending.heads.get_mut(t) {
            Some(h) => *h = e.seq,
            None => {
                pending.heads.insert(Arc::from(t), e.seq);
            }
        }
        if !pending.twins.contains(t) {
            pending.twins.insert(t.to_owned());
        }
    }
    match &e.change {
        Change::RelationshipCreated {
            relationship: Relationship { source, .. },
        }
        | Change::RelationshipUpdated { source, .. }
        | Change::RelationshipDeleted { source, .. }
            if !pending.rels.contains(source) =>
        {
            pending.rels.insert(source.clone());
        }
        _ => {}
    }
    pending.events += 1;
    pending.last_seq = e.seq;
}

impl RedbJournal {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // Pending is only replaced wholesale, so a poisoned lock holds a consistent value.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives the state file the state tables a store of format 1–3 kept in
    /// the log, rows and mark as they are, then drops them from the log.
    /// Each step is one transaction, and repeating it is harmless: the
    /// state file is marked with its format in the copy's transaction, and
    /// a marked file is never copied into again.
    fn move_state(&self) -> Result<(), StoreError> {
        let txn = self.state.begin_write().map_err(storage)?;
        {
            let mut meta = txn.open_table(META).map_err(storage)?;
            if meta.get("format").map_err(storage)?.is_none() {
                let started = std::time::Instant::now();
                let log = self.db.begin_read().map_err(storage)?;
                let twins = copy_table(&log, &txn, TWINS)?;
                let rels = copy_table(&log, &txn, OLD_RELS)?;
                copy_table(&log, &txn, HEADS)?;
                let checkpoint = mark(&log)?;
                if checkpoint > 0 {
                    meta.insert("checkpoint", checkpoint).map_err(storage)?;
                }
                meta.insert("format", STATE_FORMAT).map_err(storage)?;
                if twins + rels > 0 {
                    tracing::info!(
                        twins,
                        relationships = rels,
                        seconds = started.elapsed().as_secs_f64(),
                        "embedded store: state moved from the log into {STATE_FILE}"
                    );
                }
            }
            txn.open_table(TWINS).map_err(storage)?;
            txn.open_table(RELS).map_err(storage)?;
            txn.open_table(HEADS).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        let txn = self.db.begin_write().map_err(storage)?;
        txn.delete_table(TWINS).map_err(storage)?;
        txn.delete_table(OLD_RELS).map_err(storage)?;
        txn.delete_table(HEADS).map_err(storage)?;
        txn.open_table(META)
            .map_err(storage)?
            .remove("checkpoint")
            .map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(())
    }

    /// Writes up to `n` more rows of the checkpoint being written into the
    /// state file, in a transaction of its own (durable with the last row,
    /// or a while after the last durable one); how many it wrote.
    fn write_state_chunk(
        &self,
        c: &Checkpoint,
        n: usize,
        graph: &Graph,
        heads: &HashMap<Arc<str>, u64, IdHasher>,
    ) -> Result<(usize, bool), StoreError> {
        let mut txn = self.state.begin_write().map_err(storage)?;
        let last = c.written.saturating_add(n) >= c.rows();
        let durable = last || c.synced.elapsed() >= self.limits.sync;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Storage(e.to_string()))?;
        }
        let written = write_chunk(&txn, c, n, graph, heads)?;
        txn.commit().map_err(storage)?;
        Ok((written, durable))
    }

    /// Writes everything pending now, the rest of a checkpoint being
    /// written first (on shutdown, so startup replays nothing).
    pub fn checkpoint(&self, graph: &Graph) -> Result<(), StoreError> {
        let mut pending = self.lock_pending();
        if pending.twins.is_empty() && pending.rels.is_empty() && pending.writing.is_none() {
            return Ok(());
        }
        let txn = self.state.begin_write().map_err(storage)?;
        let p = &mut *pending;
        write_pending(&txn, p, graph)?;
        txn.commit().map_err(storage)?;
        p.twins.clear();
        p.rels.clear();
        p.events = 0;
        p.since = None;
        p.writing = None;
        Ok(())
    }

    /// Marks the log as of this build's format, moves the state of an
    /// older store into the state file, and loads the current state into a
    /// graph.
    fn load(&self, config: &StoreConfig) -> Result<Graph, StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut meta = txn.open_table(META).map_err(storage)?;
            // Formats 1 to 3 are read as they are; rows written from now
            // on are of this build's format, which older builds must refuse.
            let format = meta.get("format").map_err(storage)?.map(|v| v.value());
            if format.is_none_or(|f| f < FORMAT_VERSION) {
                meta.insert("format", FORMAT_VERSION).map_err(storage)?;
            }
            // Events from here on are linked; earlier ones have their index.
            if meta.get("links_from").map_err(storage)?.is_none() {
                let next = txn
                    .open_table(EVENTS)
                    .map_err(storage)?
                    .last()
                    .map_err(storage)?
                    .map_or(1, |(k, _)| k.value() + 1);
                meta.insert("links_from", next).map_err(storage)?;
            }
            let links_from = meta
                .get("links_from")
                .map_err(storage)?
                .map_or(1, |v| v.value());
            self.links_from
                .store(links_from, std::sync::atomic::Ordering::Release);
            txn.open_table(EVENTS).map_err(storage)?;
            txn.open_table(TWIN_EVENTS).map_err(storage)?;
            txn.open_table(STREAMS).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        self.move_state()?;

        let mut graph = Graph::new(config.graph.clone());
        let state = self.state.begin_read().map_err(storage)?;
        // Every row is current up to the checkpoint; rows written since, by
        // a checkpoint that did not finish, are newer (their own sequence).
        let checkpoint = mark(&state)?;
        // The log always keeps its last event, and state is written only
        // after the events it reflects: a state file ahead of the log is
        // from another moment (a copy of one file and not the other).
        let log_end = self
            .db
            .begin_read()
            .map_err(storage)?
            .open_table(EVENTS)
            .map_err(storage)?
            .last()
            .map_err(storage)?
            .map_or(0, |(k, _)| k.value());
        if checkpoint > log_end {
            return Err(StoreError::Unusable {
                path: self.path.display().to_string(),
                message: format!(
                    "{STATE_FILE} is as of event {checkpoint}, but the log ends at event {log_end}: the two files are not of the same moment (restore both from one copy). Nothing was changed."
                ),
            });
        }
        let started = std::time::Instant::now();
        let (twin_rows, rel_count) = {
            let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
            let twins = count(
                state
                    .open_table(TWINS)
                    .map_err(storage)?
                    .len()
                    .map_err(storage)?,
            );
            // As many as the last checkpoint wrote (a hint: room taken at
            // once), or the rows of a per-relationship table.
            let rels = match state.open_table(META) {
                Ok(meta) => meta
                    .get("relationships")
                    .map_err(storage)?
                    .map(|v| count(v.value())),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(storage(e)),
            };
            let rels = match rels {
                Some(n) => n,
                None => match state.open_table(OLD_RELS) {
                    Ok(t) => count(t.len().map_err(storage)?),
                    Err(redb::TableError::TableDoesNotExist(_)) => 0,
                    Err(e) => return Err(storage(e)),
                },
            };
            graph.reserve(twins, 0);
            (twins, rels)
        };
        let mut newer_twins: HashMap<String, u64> = HashMap::new();
        // Relationships load on a thread of their own (their ends are ids of
        // their own, the graph adopts them after), while twin rows are
        // parsed on two more (each every other batch) and indexed on this one.
        let (rels, twins_read) = std::thread::scope(|scope| -> Result<_, StoreError> {
            let rels = scope.spawn(move || self.load_rels(twin_rows, rel_count, checkpoint));
            const PARSERS: usize = 2;
            let (tx, rx) =
                std::sync::mpsc::sync_channel::<Result<Vec<(Twin, u64)>, StoreError>>(64);
            for part in 0..PARSERS {
                let tx = tx.clone();
                scope.spawn(move || {
                    if let Err(e) = self.parse_twins(&tx, part, PARSERS) {
                        let _ = tx.send(Err(e));
                    }
                });
            }
            drop(tx);
            for batch in rx {
                for (t, seq) in batch? {
                    if seq > checkpoint {
                        newer_twins.insert(t.id.to_string(), seq);
                    }
                    graph.insert_twin(t);
                }
            }
            let twins_read = started.elapsed();
            let rels = rels
                .join()
                .map_err(|_| StoreError::Storage("loading relationships failed".into()))??;
            Ok((rels, twins_read))
        })?;
        let RelsLoaded {
            loaded,
            newer_rels,
            newer_sources,
            old_rows,
            took: rels_read,
        } = rels;
        graph.adopt_relationships(loaded);
        // Heads are not loaded: the table has them, the journal takes each
        // when its twin is next touched (or its history read).
        let mut pending = self.lock_pending();
        let read = self.db.begin_read().map_err(storage)?;
        let events = read.open_table(EVENTS).map_err(storage)?;
        if let Some((_, v)) = events.last().map_err(storage)? {
            let e = decode_event(v.value())?;
            graph.set_position(checkpoint.min(e.seq), e.time.min(graph.last_time()));
        }
        for row in events
            .range(checkpoint.saturating_add(1)..)
            .map_err(storage)?
        {
            let (_, v) = row.map_err(storage)?;
            let e = decode_event(v.value())?;
            // A row already as of this event (or later) has its change.
            let stored = match &e.change {
                Change::RelationshipCreated {
                    relationship: Relationship { source, id, .. },
                }
                | Change::RelationshipUpdated { source, id, .. }
                | Change::RelationshipDeleted { source, id, .. } => newer_sources
                    .get(source)
                    .or_else(|| newer_rels.get(&(source.clone(), id.clone())))
                    .copied(),
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
            touch(&mut pending, &e);
        }
        let replayed = pending.events;
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
        if let Some(rows) = old_rows {
            self.rewrite_relationships(&mut pending, &graph, rows)?;
        }
        tracing::info!(
            twins = graph.twin_count(),
            twins_s = twins_read.as_secs_f64(),
            relationships_s = rels_read.as_secs_f64(),
            replayed,
            total_s = started.elapsed().as_secs_f64(),
            cache_mb = config.storage_cache_bytes / (1024 * 1024),
            "embedded store: loaded"
        );
        Ok(graph)
    }

    /// Parses batch `part` of every `parts` batches of the twin rows,
    /// sending them (with the sequence number each is as of); stops when
    /// the receiver is gone.
    fn parse_twins(
        &self,
        tx: &std::sync::mpsc::SyncSender<Result<Vec<(Twin, u64)>, StoreError>>,
        part: usize,
        parts: usize,
    ) -> Result<(), StoreError> {
        const BATCH: usize = 256;
        let read = self.state.begin_read().map_err(storage)?;
        let mut batch = Vec::with_capacity(BATCH);
        for (n, row) in read
            .open_table(TWINS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
            .enumerate()
        {
            if (n / BATCH) % parts != part {
                continue;
            }
            let (k, v) = row.map_err(storage)?;
            batch.push(decode_twin_row(k.value(), v.value())?);
            if batch.len() == BATCH
                && tx
                    .send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))))
                    .is_err()
            {
                return Ok(());
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(Ok(batch));
        }
        Ok(())
    }

    /// Loads every relationship apart from the graph: the rows of sources,
    /// and those of a per-relationship table (formats 1–5).
    fn load_rels(
        &self,
        twins: usize,
        rels: usize,
        checkpoint: u64,
    ) -> Result<RelsLoaded, StoreError> {
        let started = std::time::Instant::now();
        let mut loaded = RelLoader::with_capacity(twins, rels);
        let mut newer_sources: HashMap<String, u64> = HashMap::new();
        let read = self.state.begin_read().map_err(storage)?;
        for row in read
            .open_table(RELS)
            .map_err(storage)?
            .iter()
            .map_err(storage)?
        {
            let (k, v) = row.map_err(storage)?;
            let (source, _) = k.value();
            let seq = super::row::decode_rels(source, v.value(), |p| loaded.load(p))
                .map_err(|e| corrupt("relationship", e))?;
            if seq > checkpoint {
                newer_sources.insert(source.to_owned(), seq);
            }
        }
        let mut newer_rels = HashMap::new();
        let old_rows = match read.open_table(OLD_RELS) {
            Ok(table) => {
                let mut n = 0u64;
                for row in table.iter().map_err(storage)? {
                    let (k, v) = row.map_err(storage)?;
                    let (source, id) = k.value();
                    let seq = load_rel_row(&mut loaded, (source, id), v.value())?;
                    if seq > checkpoint {
                        newer_rels.insert((source.to_owned(), id.to_owned()), seq);
                    }
                    n += 1;
                }
                Some(n)
            }
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(storage(e)),
        };
        Ok(RelsLoaded {
            loaded,
            newer_rels,
            newer_sources,
            old_rows,
            took: started.elapsed(),
        })
    }

    /// Replaces the per-relationship table of an older store (`rows` rows,
    /// loaded into `graph`) by rows of sources, with everything else
    /// pending, in one transaction: the mark moves to the graph's last
    /// event, and a crash before the commit leaves the old table as it was.
    fn rewrite_relationships(
        &self,
        pending: &mut Pending,
        graph: &Graph,
        rows: u64,
    ) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        for source in graph.relationship_sources() {
            if !pending.rels.contains(source) {
                pending.rels.insert(source.to_owned());
            }
        }
        let txn = self.state.begin_write().map_err(storage)?;
        write_pending(&txn, pending, graph)?;
        txn.delete_table(OLD_RELS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        tracing::info!(
            relationships = rows,
            sources = pending.rels.len(),
            seconds = started.elapsed().as_secs_f64(),
            "embedded store: relationships rewritten as a row per source (data format {FORMAT_VERSION})"
        );
        pending.twins.clear();
        pending.rels.clear();
        pending.events = 0;
        pending.since = None;
        Ok(())
    }

    /// Events of `twin` before linked events started (formats 1 and 2), by
    /// their index, below `below`.
    fn indexed_events(
        read: &redb::ReadTransaction,
        twin: &str,
        below: u64,
        out: &mut Vec<Event>,
    ) -> Result<(), StoreError> {
        let idx = read.open_table(TWIN_EVENTS).map_err(storage)?;
        let events = read.open_table(EVENTS).map_err(storage)?;
        for row in idx.range((twin, 0u64)..(twin, below)).map_err(storage)? {
            let (k, _) = row.map_err(storage)?;
            if let Some(v) = events.get(k.value().1).map_err(storage)? {
                out.push(decode_event(v.value())?);
            }
        }
        Ok(())
    }
}

impl Journal for RedbJournal {
    fn commit(&self, events: &[Event], graph: &Graph) -> Result<(), StoreError> {
        let mut pending = self.lock_pending();
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut ev = txn.open_table(EVENTS).map_err(storage)?;
            let mut streams = txn.open_table(STREAMS).map_err(storage)?;
            // Heads of twins not touched since startup, read when needed.
            let mut stored = None;
            // Heads moved by earlier events of this group.
            let mut moved: HashMap<&str, u64, IdHasher> = HashMap::default();
            let mut links = Vec::with_capacity(2);
            for e in events {
                links.clear();
                for t in e.change.twins() {
                    let prev = match moved.get(t).or_else(|| pending.heads.get(t)) {
                        Some(&seq) => seq,
                        None => {
                            if stored.is_none() {
                                let read = self.state.begin_read().map_err(storage)?;
                                stored = Some(read.open_table(HEADS).map_err(storage)?);
                            }
                            let heads = stored.as_ref().expect("just opened");
                            heads.get(t).map_err(storage)?.map_or(0, |v| v.value())
                        }
                    };
                    links.push(prev);
                    moved.insert(t, e.seq);
                }
                let bytes = encode_event(e, &links)?;
                ev.insert(e.seq, bytes.as_slice()).map_err(storage)?;
                if let Some(stream) = e.change.stream() {
                    let (_, json) = split_event(&bytes)?;
                    streams.insert((stream, e.seq), json).map_err(storage)?;
                }
            }
        }
        txn.commit().map_err(storage)?;
        let since = *pending.since.get_or_insert_with(std::time::Instant::now);
        // A chunk of the checkpoint being written follows, from the graph
        // as of events that are all durable now. The commit stands if it
        // fails: the chunk is written again after the next commit.
        let chunk = match &pending.writing {
            Some(c) => self
                .write_state_chunk(
                    c,
                    events.len().clamp(self.limits.chunk, 4 * self.limits.chunk),
                    graph,
                    &pending.heads,
                )
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "embedded store: a checkpoint chunk was not written; it is retried");
                    (0, false)
                }),
            None => (0, false),
        };
        // Durable: what the events touched is now pending.
        for e in events {
            touch(&mut pending, e);
        }
        if let Some(c) = &mut pending.writing {
            let (n, synced) = chunk;
            c.written += n;
            if synced {
                c.synced = std::time::Instant::now();
            }
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
        let due = pending.events >= self.limits.events
            || pending.twins.len() + pending.rels.len() >= self.limits.rows
            || since.elapsed() >= self.limits.every;
        if due && pending.writing.is_none() {
            // Freeze what changed up to here; the next commits write it, in
            // key order: each chunk then touches neighbouring pages of the
            // tables, not pages all over them.
            let p = &mut *pending;
            let mut twins: Vec<String> = p.twins.drain().collect();
            twins.sort_unstable();
            let mut rels: Vec<String> = p.rels.drain().collect();
            rels.sort_unstable();
            p.writing = Some(Checkpoint {
                seq: p.last_seq,
                twins,
                rels,
                written: 0,
                started: std::time::Instant::now(),
                synced: std::time::Instant::now(),
            });
            p.since = None;
            p.events = 0;
        }
        Ok(())
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
            out.push(decode_event(v.value())?);
        }
        Ok(out)
    }

    fn twin_events(&self, twin: &str) -> Result<Vec<Event>, StoreError> {
        // The head first: every event up to it is in any later snapshot.
        let known = self.lock_pending().heads.get(twin).copied();
        let links_from = self.links_from.load(std::sync::atomic::Ordering::Acquire);
        let head = match known {
            Some(seq) => seq,
            None => self
                .state
                .begin_read()
                .map_err(storage)?
                .open_table(HEADS)
                .map_err(storage)?
                .get(twin)
                .map_err(storage)?
                .map_or(0, |v| v.value()),
        };
        let read = self.db.begin_read().map_err(storage)?;
        let mut out = Vec::new();
        {
            let events = read.open_table(EVENTS).map_err(storage)?;
            let mut seq = head;
            while seq >= links_from && seq > 0 {
                // A missing event was pruned: so were all before it.
                let Some(v) = events.get(seq).map_err(storage)? else {
                    break;
                };
                let (links, json) = split_event(v.value())?;
                let e: Event = serde_json::from_slice(json).map_err(|e| corrupt("event", e))?;
                let at = e.change.twins().iter().position(|t| *t == twin);
                let prev = at.map_or(0, |i| link(links, i));
                out.push(e);
                if prev >= seq {
                    return Err(corrupt("event", "a link that does not go back"));
                }
                seq = prev;
            }
        }
        out.reverse();
        if links_from > 1 {
            let mut older = Vec::new();
            Self::indexed_events(&read, twin, links_from, &mut older)?;
            older.append(&mut out);
            out = older;
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
            out.push(serde_json::from_slice(v.value()).map_err(|e| corrupt("stream", e))?);
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

    fn flush(&self, graph: &Graph) -> Result<(), StoreError> {
        self.checkpoint(graph)
    }

    fn prune_before(&self, time: Micros) -> Result<usize, StoreError> {
        let links_from = self.links_from.load(std::sync::atomic::Ordering::Acquire);
        let txn = self.db.begin_write().map_err(storage)?;
        let removed;
        {
            // Events after the checkpoint are still needed to rebuild state.
            let checkpoint = mark(&self.state.begin_read().map_err(storage)?)?;
            let mut ev = txn.open_table(EVENTS).map_err(storage)?;
            let mut idx = txn.open_table(TWIN_EVENTS).map_err(storage)?;
            let mut old: Vec<(u64, Vec<String>)> = Vec::new();
            for row in ev.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let e = decode_event(v.value())?;
                if e.time >= time || e.seq > checkpoint {
                    break;
                }
                // Only events of earlier formats have index entries.
                let indexed = if e.seq < links_from {
                    e.change.twins().into_iter().map(str::to_owned).collect()
                } else {
                    Vec::new()
                };
                old.push((k.value(), indexed));
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
