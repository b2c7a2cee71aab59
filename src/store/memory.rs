//! A volatile journal: events kept in memory, nothing on disk. For tests and
//! for ephemeral use; behaves like the durable store in every other way.

use std::collections::HashMap;
use std::sync::Mutex;

use super::StoreError;
use super::journal::Journal;
use crate::twin::{Event, Graph, Micros};

#[derive(Debug, Default)]
struct Log {
    events: Vec<Event>,
    /// Positions in `events` by twin.
    by_twin: HashMap<String, Vec<usize>>,
    /// Stream records (copies: pruning never touches them).
    streams: HashMap<&'static str, Vec<Event>>,
    pruned: usize,
}

/// Events in memory.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    log: Mutex<Log>,
}

impl MemoryJournal {
    pub fn new() -> MemoryJournal {
        MemoryJournal::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log half-written
        // (appends are single pushes), so a poisoned lock is still usable.
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Journal for MemoryJournal {
    fn commit(&self, events: &[Event], _graph: &Graph) -> Result<(), StoreError> {
        let mut log = self.lock();
        for e in events {
            let pos = log.events.len();
            for t in e.change.twins() {
                log.by_twin.entry(t.to_owned()).or_default().push(pos);
            }
            if let Some(stream) = e.change.stream() {
                log.streams.entry(stream).or_default().push(e.clone());
            }
            log.events.push(e.clone());
        }
        Ok(())
    }

    fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let log = self.lock();
        let start = log.events.partition_point(|e| e.seq <= seq);
        Ok(log.events[start..].iter().take(limit).cloned().collect())
    }

    fn twin_events(&self, twin: &str) -> Result<Vec<Event>, StoreError> {
        let log = self.lock();
        Ok(log
            .by_twin
            .get(twin)
            .into_iter()
            .flatten()
            .filter_map(|&i| log.events.get(i))
            .filter(|e| e.seq > 0)
            .cloned()
            .collect())
    }

    fn stream_events(
        &self,
        stream: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let log = self.lock();
        let records = log.streams.get(stream).map_or(&[][..], Vec::as_slice);
        let start = records.partition_point(|e| e.seq <= seq);
        Ok(records[start..].iter().take(limit).cloned().collect())
    }

    fn first_seq(&self) -> u64 {
        let log = self.lock();
        log.events
            .iter()
            .find(|e| e.seq > 0)
            .map_or(log.events.len() as u64 + 1, |e| e.seq)
    }

    fn prune_before(&self, time: Micros) -> Result<usize, StoreError> {
        let mut log = self.lock();
        // Pruned events are tombstoned (seq 0) so positions stay valid.
        let mut n = 0;
        for e in log.events.iter_mut().filter(|e| e.seq > 0 && e.time < time) {
            e.seq = 0;
            n += 1;
        }
        log.pruned += n;
        Ok(n)
    }
}
