//! The durability seam: what a store must persist, and read back, besides
//! the in-memory graph.

pub use crate::twin::graph::Staged as Changed;
use crate::twin::{Event, Micros};

use super::StoreError;

/// Durable storage of events and the current state.
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// Appends events and the state they produce, atomically and durably:
    /// when this returns `Ok`, both survive a crash; when it fails, neither
    /// was written.
    fn commit(&self, events: &[Event], changed: Changed) -> Result<(), StoreError>;

    /// Events with a sequence number above `seq`, in order, at most `limit`.
    fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// Every retained event concerning a twin, in order.
    fn twin_events(&self, twin: &str) -> Result<Vec<Event>, StoreError>;

    /// The records of a stream ([`crate::twin::Change::stream`]) with a
    /// sequence number above `seq`, in order, at most `limit`. Streams are
    /// kept whole: retention never prunes them.
    fn stream_events(&self, stream: &str, seq: u64, limit: usize)
    -> Result<Vec<Event>, StoreError>;

    /// The lowest sequence number still kept (1 when nothing was pruned).
    fn first_seq(&self) -> u64;

    /// Removes events older than `time` (retention). Current state is kept.
    fn prune_before(&self, time: Micros) -> Result<usize, StoreError>;

    /// Makes everything committed cheap to load at the next start (called on shutdown).
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
