//! The twin graph domain: twins with desired/reported state validated
//! against their DTDL model, relationships, the events that change them, and
//! the in-memory graph with its queries. Store-independent: the stores in
//! `crate::store` persist what this module decides.
//!
//! Layout: [`id`] identifiers, [`value`] values against schemas and merge
//! patch, [`state`] twins and relationships and how events change them,
//! [`event`] the event log's records (other domains' records ride along as
//! [`crate::records::Record`], unknown to this module), [`batch`] write
//! requests, [`graph`] the in-memory graph and the planner that turns
//! batches into events, [`query`] traversal, hierarchy and listing,
//! [`filter`] list predicates, [`order`] the order of lists and
//! [`index`] the sort indexes that answer it, [`clock`] time as an input,
//! [`error`] the domain errors (rows of [`crate::codes`]).

pub mod aggregate;
pub mod batch;
pub mod clock;
pub mod error;
pub mod event;
pub mod filter;
pub mod graph;
pub mod id;
pub mod index;
pub mod order;
pub mod query;
pub mod rels;
pub mod state;
pub mod value;

pub use batch::{Batch, Op};
pub use error::TwinError;
pub use event::{Change, Entry, Event, Micros, Side};
pub use graph::{BatchError, Graph, GraphConfig};
pub use state::{Ack, AckStatus, Relationship, Twin};

/// The current time in microseconds since the Unix epoch.
pub fn now_micros() -> Micros {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Formats microseconds since the epoch as RFC 3339 (UTC).
pub fn format_time(t: Micros) -> String {
    let nanos = i128::from(t) * 1000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// Parses an RFC 3339 timestamp into microseconds since the epoch.
pub fn parse_time(s: &str) -> Option<Micros> {
    let d = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(d.unix_timestamp_nanos() / 1000).ok()
}
