//! Where blocks live: a redb file of their own (`series.redb`, beside the
//! embedded store's files), or memory (the volatile store's series, gone
//! with the process like its twins).
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

type Blocks = BTreeMap<(String, String, i64), Vec<u8>>;

/// Where a store's series blocks are kept.
#[derive(Debug, Clone)]
pub enum Backend {
    File(Arc<Database>),
    Memory(Arc<Mutex<Blocks>>, Arc<AtomicU64>),
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
        }
    }

    /// Writes `points` (per series, in the order they were reported; a
    /// later report of the same time wins) into blocks of `bucket`, with
    /// `mark`; removes blocks of buckets before `prune_before`.
    pub fn write(
        &self,
        points: Points,
        bucket: Micros,
        mark: u64,
        prune_before: Option<Micros>,
    ) -> Result<(), SeriesError> {
        // Per series and bucket, in time order, one per time.
        let mut by_block: BTreeMap<(String, String, i64), Vec<Point>> = BTreeMap::new();
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
        match self {
            Backend::File(db) => {
                let txn = db.begin_write().map_err(storage)?;
                {
                    let mut blocks = txn.open_table(BLOCKS).map_err(storage)?;
                    for ((twin, field, start), pts) in by_block {
                        let key = (twin.as_str(), field.as_str(), start);
                        let older = match blocks.get(key).map_err(storage)? {
                            Some(v) => block::decode(v.value())?,
                            None => Vec::new(),
                        };
                        let bytes = block::encode(&block::merge(older, &pts))?;
                        blocks.insert(key, bytes.as_slice()).map_err(storage)?;
                    }
                    if let Some(before) = prune_before {
                        blocks
                            .retain(|(_, _, start), _| start >= before)
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
                    let older = match blocks.get(&key) {
                        Some(v) => block::decode(v)?,
                        None => Vec::new(),
                    };
                    blocks.insert(key, block::encode(&block::merge(older, &pts))?);
                }
                if let Some(before) = prune_before {
                    blocks.retain(|(_, _, start), _| *start >= before);
                }
                m.store(mark, Ordering::Release);
            }
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
        }
        Ok(n)
    }
}
