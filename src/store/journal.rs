//! The durability seam: what a store must persist, and read back, besides
//! the in-memory graph.

use crate::twin::{Event, Graph, Micros};

use super::StoreError;

/// Durable storage of events and the current state.
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// Appends events, atomically and durably: when this returns `Ok`, they
    /// survive a crash (and so does the state they produce, from the events
    /// or from state the journal wrote); when it fails, none was written.
    /// `graph` is the state before them: every earlier event applied, and
    /// only the store's writer changes it.
    fn commit(&self, events: &[Event], graph: &Graph) -> Result<(), StoreError>;

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
    fn flush(&self, _graph: &Graph) -> Result<(), StoreError> {
        Ok(())
    }
}
