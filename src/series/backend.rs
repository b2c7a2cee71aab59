//! Where blocks live: a redb file of their own (`series.redb`, beside the
//! embedded store's files), memory (the volatile store's series, gone
//! with the process like its twins), or the Neo4j database (`SeriesBlock`
//! nodes, see `schema/neo4j.md`), written by one server at a time: the
//! holder of the `series` lease. The others keep their points in memory
//! until the holder's mark shows it has stored them.
//!
//! Tables of the file: `blocks` ((twin, field, bucket start) → block) and
//! `meta` (`mark`: the last event whose points are in blocks). A write is
//! one transaction: the blocks it changes and the mark together.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Point, Points, SeriesError, block};
use crate::twin::Micros;

const BLOCKS: TableDefinition<'static, (&str, &str, i64), &[u8]> = TableDefinition::new("blocks");
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");

/// The series file's name in the data directory.
pub const SERIES_FILE: &str = "series.redb";

type Blocks = BTreeMap<BlockKey, Vec<u8>>;

/// A block's key: twin, series (a field or a roll-up pseudo-series) and
/// the start of its bucket.
type BlockKey = (String, String, i64);

/// Where a store's series blocks are kept.
#[derive(Debug, Clone)]
pub enum Backend {
    File(Arc<Database>),
    Memory(Arc<Mutex<Blocks>>, Arc<AtomicU64>),
    /// The Neo4j store, and this server's name as a holder of the lease.
    Bolt(crate::store::bolt::BoltStore, Arc<str>),
}

/// The lease that makes one server the writer of a database's series.
const LEASE: &str = "series";

/// How long the lease lasts unless renewed (each flush renews it).
const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Which blocks a write removes: raw ones before `raw`, the minute tier's
/// before `minute`, the hour tier's before `hour` (bucket starts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prune {
    pub raw: Option<Micros>,
    pub minute: Option<Micros>,
    pub hour: Option<Micros>,
}

impl Prune {
    /// Whether the block of `field` (a raw or a roll-up series) starting
    /// at `start` stays.
    pub fn keeps(&self, field: &str, start: Micros) -> bool {
        let before = match super::rollup::tier_of(field) {
            None => self.raw,
            Some(t) if t == super::rollup::MINUTE => self.minute,
            Some(_) => self.hour,
        };
        before.is_none_or(|b| start >= b)
    }

    pub fn any(&self) -> bool {
        self.raw.is_some() || self.minute.is_some() || self.hour.is_some()
    }
}

/// The roll-up pseudo-series of `key`'s raw series (twin, field, start).
fn rollup_keys(key: &BlockKey, bucket: Micros) -> Vec<BlockKey> {
    super::rollup::TIERS
        .into_iter()
        .filter(|tier| bucket % tier.step == 0)
        .flat_map(|tier| {
            super::rollup::STATS.map(|stat| {
                (
                    key.0.clone(),
                    super::rollup::field_of(&key.1, tier, stat),
                    key.2,
                )
            })
        })
        .collect()
}

/// The blocks a raw block makes, each replacing the stored one of its key:
/// `merged` (the stored raw points and the new ones) itself unless its
/// bucket is before `cut` (raw blocks there are removed), and its roll-ups
/// (a block holds whole buckets of each tier). With a stored raw block
/// (`had_raw`) they are computed from `merged`, exactly; without one but
/// with stored roll-ups (`stored`: the raw block was removed, these are
/// late points) the new points are folded into those, so they neither
/// roll up alone nor are lost.
fn with_rollups(
    key: BlockKey,
    merged: Vec<Point>,
    had_raw: bool,
    mut stored: impl FnMut(&BlockKey) -> Result<Option<Vec<Point>>, SeriesError>,
    bucket: Micros,
    cut: Micros,
) -> Result<Vec<(BlockKey, Vec<Point>)>, SeriesError> {
    let mut out = Vec::with_capacity(13);
    for (tier, stat, points) in super::rollup::of_block(&merged) {
        if bucket % tier.step != 0 {
            continue;
        }
        let k = (
            key.0.clone(),
            super::rollup::field_of(&key.1, tier, stat),
            key.2,
        );
        let points = match (had_raw, stored(&k)?) {
            (false, Some(older)) => super::rollup::fold(stat, older, &points),
            _ => points,
        };
        out.push((k, points));
    }
    if key.2 >= cut {
        out.push((key, merged));
    }
    Ok(out)
}

/// What a flush did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The points are in blocks, with the mark.
    Stored,
    /// Another server writes the series; its mark is this.
    ByAnother(u64),
}

/// Points per series and bucket, in time order, one per time (a later
/// report of the same time wins).
fn by_block(points: Points, bucket: Micros) -> BTreeMap<BlockKey, Vec<Point>> {
    let mut by_block: BTreeMap<BlockKey, Vec<Point>> = BTreeMap::new();
    for (twin, fields) in points {
        for (field, mut pts) in fields {
            pts.reverse();
            // Stable: among equal times the latest report comes first now.
            pts.sort_by_key(|p| p.time);
            pts.dedup_by_key(|p| p.time);
            for p in pts {
                by_block
                    .entry((
                        twin.to_string(),
                        field.to_string(),
                        block::bucket_of(p.time, bucket),
                    ))
                    .or_default()
                    .push(p);
            }
        }
    }
    by_block
}

fn decode64(s: &str) -> Result<Vec<Point>, SeriesError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| SeriesError::Storage(format!("a series block is not base64: {e}")))?;
    block::decode(&bytes)
}

fn encode64(points: &[Point]) -> Result<String, SeriesError> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.encode(block::encode(points)?))
}

/// The Neo4j store's blocks are read and written through the async
/// functions ([`Backend::stored_mark`], [`Backend::write_points`],
/// [`Backend::read_points`]).
fn remote() -> SeriesError {
    SeriesError::Storage("the Neo4j store's series are read and written asynchronously".into())
}

fn storage(e: impl std::fmt::Display) -> SeriesError {
    SeriesError::Storage(e.to_string())
}

impl Backend {
    /// The series file in `dir` (created if needed).
    pub fn open(dir: &Path) -> Result<Backend, SeriesError> {
        let path = dir.join(SERIES_FILE);
        let db = Database::builder()
            .set_cache_size(16 * 1024 * 1024)
            .create(&path)
            .map_err(|e| {
                SeriesError::Storage(format!(
                    "cannot open {}: {e} (is it a twingraph series file, and not in use by another process?)",
                    path.display()
                ))
            })?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(BLOCKS).map_err(storage)?;
        txn.open_table(META).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Backend::File(Arc::new(db)))
    }

    pub fn memory() -> Backend {
        Backend::Memory(Arc::default(), Arc::default())
    }

    /// The Neo4j store's series.
    pub fn bolt(store: crate::store::bolt::BoltStore) -> Backend {
        let holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Backend::Bolt(store, Arc::from(holder))
    }

    /// [`Backend::mark`], of any backend.
    pub async fn stored_mark(&self) -> Result<u64, SeriesError> {
        match self {
            Backend::Bolt(b, _) => b.series_mark().await.map_err(storage),
            other => other.mark(),
        }
    }

    /// Gives up the Neo4j store's `series` lease if this process holds it
    /// (nothing for the others, which need none).
    pub async fn release(&self) {
        if let Backend::Bolt(b, holder) = self {
            use crate::store::GraphStore as _;
            if let Err(e) = b.lease(LEASE, holder, std::time::Duration::ZERO).await {
                tracing::warn!(error = %e, "series: releasing the lease failed; it lapses on its own");
            }
        }
    }

    /// [`Backend::write`], of any backend (the Neo4j store's only by the
    /// holder of the `series` lease).
    pub async fn write_points(
        &self,
        points: Points,
        bucket: Micros,
        mark: u64,
        prune_before: Option<Prune>,
        cut: Micros,
    ) -> Result<Written, SeriesError> {
        let Backend::Bolt(b, holder) = self else {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.write(points, bucket, mark, prune_before, cut))
                .await
                .map_err(|e| SeriesError::Storage(format!("flush task: {e}")))??;
            return Ok(Written::Stored);
        };
        use crate::store::GraphStore as _;
        if !b.lease(LEASE, holder, LEASE_TTL).await.map_err(storage)? {
            return Ok(Written::ByAnother(b.series_mark().await.map_err(storage)?));
        }
        let blocks = by_block(points, bucket);
        let keys: Vec<BlockKey> = blocks.keys().cloned().collect();
        let mut stored: std::collections::HashMap<BlockKey, String> = b
            .series_blocks_at(&keys)
            .await
            .map_err(storage)?
            .into_iter()
            .collect();
        // Blocks without a raw one stored: their roll-ups, if any (a
        // removed raw block's, for late points to fold into).
        let rollups: Vec<BlockKey> = keys
            .iter()
            .filter(|k| !stored.contains_key(*k))
            .flat_map(|k| rollup_keys(k, bucket))
            .collect();
        stored.extend(b.series_blocks_at(&rollups).await.map_err(storage)?);
        let mut rows = Vec::with_capacity(blocks.len());
        for (key, pts) in blocks {
            let older = stored.get(&key).map(|s| decode64(s)).transpose()?;
            let had_raw = older.is_some();
            let merged = block::merge(older.unwrap_or_default(), &pts);
            let rolled = |k: &BlockKey| stored.get(k).map(|s| decode64(s)).transpose();
            for (k, pts) in with_rollups(key, merged, had_raw, rolled, bucket, cut)? {
                rows.push((k, encode64(&pts)?));
            }
        }
        let prune = prune_before.map(|p| (p.raw, p.minute, p.hour));
        b.series_write(rows, mark, prune).await.map_err(storage)?;
        Ok(Written::Stored)
    }

    /// [`Backend::read`], of any backend.
    pub async fn read_points(
        &self,
        twin: &str,
        field: &str,
        first: Micros,
        last: Micros,
    ) -> Result<Vec<Point>, SeriesError> {
        if let Backend::Bolt(b, _) = self {
            let mut out = Vec::new();
            for s in b
                .series_blocks(twin, field, first, last)
                .await
                .map_err(storage)?
            {
                out.extend(decode64(&s)?);
            }
            return Ok(out);
        }
        let me = self.clone();
        let (t, f) = (twin.to_owned(), field.to_owned());
        tokio::task::spawn_blocking(move || me.read(&t, &f, first, last))
            .await
            .map_err(|e| SeriesError::Storage(format!("read task: {e}")))?
    }

    /// The last event whose points are in blocks.
    pub fn mark(&self) -> Result<u64, SeriesError> {
        match self {
            Backend::File(db) => Ok(db
                .begin_read()
                .map_err(storage)?
                .open_table(META)
                .map_err(storage)?
                .get("mark")
                .map_err(storage)?
                .map_or(0, |v| v.value())),
            Backend::Memory(_, mark) => Ok(mark.load(Ordering::Acquire)),
            Backend::Bolt(..) => Err(remote()),
        }
    }

    /// Writes `points` (per series, in the order they were reported; a
    /// later report of the same time wins) into blocks of `bucket`, with
    /// `mark`, and their roll-ups (see [`with_rollups`]: no raw blocks
    /// before bucket `cut`, whose raw blocks are removed); removes the
    /// blocks `prune_before` says.
    pub fn write(
        &self,
        points: Points,
        bucket: Micros,
        mark: u64,
        prune_before: Option<Prune>,
        cut: Micros,
    ) -> Result<(), SeriesError> {
        let by_block = by_block(points, bucket);
        match self {
            Backend::File(db) => {
                let txn = db.begin_write().map_err(storage)?;
                {
                    let mut blocks = txn.open_table(BLOCKS).map_err(storage)?;
                    for (key, pts) in by_block {
                        let stored = |k: &BlockKey| -> Result<_, SeriesError> {
                            match blocks
                                .get((k.0.as_str(), k.1.as_str(), k.2))
                                .map_err(storage)?
                            {
                                Some(v) => Ok(Some(block::decode(v.value())?)),
                                None => Ok(None),
                            }
                        };
                        let older = stored(&key)?;
                        let had_raw = older.is_some();
                        let merged = block::merge(older.unwrap_or_default(), &pts);
                        let made = with_rollups(key, merged, had_raw, stored, bucket, cut)?;
                        for ((twin, field, start), pts) in made {
                            let bytes = block::encode(&pts)?;
                            blocks
                                .insert((twin.as_str(), field.as_str(), start), bytes.as_slice())
                                .map_err(storage)?;
                        }
                    }
                    if let Some(prune) = prune_before {
                        blocks
                            .retain(|(_, field, start), _| prune.keeps(field, start))
                            .map_err(storage)?;
                    }
                    txn.open_table(META)
                        .map_err(storage)?
                        .insert("mark", mark)
                        .map_err(storage)?;
                }
                txn.commit().map_err(storage)?;
            }
            Backend::Memory(blocks, m) => {
                let mut blocks = blocks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (key, pts) in by_block {
                    let stored = |k: &BlockKey| -> Result<_, SeriesError> {
                        blocks.get(k).map(|v| block::decode(v)).transpose()
                    };
                    let older = stored(&key)?;
                    let had_raw = older.is_some();
                    let merged = block::merge(older.unwrap_or_default(), &pts);
                    for (k, pts) in with_rollups(key, merged, had_raw, stored, bucket, cut)? {
                        blocks.insert(k, block::encode(&pts)?);
                    }
                }
                if let Some(prune) = prune_before {
                    blocks.retain(|(_, field, start), _| prune.keeps(field, *start));
                }
                m.store(mark, Ordering::Release);
            }
            Backend::Bolt(..) => return Err(remote()),
        }
        Ok(())
    }

    /// The stored points of `twin`'s `field` in buckets `first..=last`.
    pub fn read(
        &self,
        twin: &str,
        field: &str,
        first: Micros,
        last: Micros,
    ) -> Result<Vec<Point>, SeriesError> {
        let mut out = Vec::new();
        match self {
            Backend::File(db) => {
                let read = db.begin_read().map_err(storage)?;
                let blocks = read.open_table(BLOCKS).map_err(storage)?;
                for row in blocks
                    .range((twin, field, first)..=(twin, field, last))
                    .map_err(storage)?
                {
                    let (_, v) = row.map_err(storage)?;
                    out.extend(block::decode(v.value())?);
                }
            }
            Backend::Memory(blocks, _) => {
                let blocks = blocks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let (t, f) = (twin.to_owned(), field.to_owned());
                for v in blocks
                    .range((t.clone(), f.clone(), first)..=(t, f, last))
                    .map(|(_, v)| v)
                {
                    out.extend(block::decode(v)?);
                }
            }
            Backend::Bolt(..) => return Err(remote()),
        }
        Ok(out)
    }

    /// Stored blocks and their size in bytes (for the benchmark and logs).
    pub fn size(&self) -> Result<(usize, usize), SeriesError> {
        let mut n = (0, 0);
        match self {
            Backend::File(db) => {
                let read = db.begin_read().map_err(storage)?;
                for row in read
                    .open_table(BLOCKS)
                    .map_err(storage)?
                    .iter()
                    .map_err(storage)?
                {
                    let (_, v) = row.map_err(storage)?;
                    n = (n.0 + 1, n.1 + v.value().len());
                }
            }
            Backend::Memory(blocks, _) => {
                let blocks = blocks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                n = (blocks.len(), blocks.values().map(Vec::len).sum());
            }
            Backend::Bolt(..) => return Err(remote()),
        }
        Ok(n)
    }
}
