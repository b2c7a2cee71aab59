//! One integration-test binary (keeps link time low); one module per area.

// `live.rs` and `typed.rs` are loaded twice on purpose: once over the
// in-memory store, once over Neo4j (`on_bolt`).
#![allow(clippy::duplicate_mod)]

mod support;

mod architecture;

mod cli;
mod conformance;
mod corpora;
mod robustness;
mod rules;
#[macro_use]
mod store_suite;
mod alarms;
mod batching;
mod bolt;
mod bolt_peer;
mod browser;
mod cancellation;
mod connections;
mod devices;
mod embedded;
mod hardening;
mod http;
mod lifecycle;
mod live;
mod naming;
mod rollouts;
mod security;
mod series;
mod server;
mod settings;
mod store_conformance;
mod storm;
mod typed;

/// The server the end-to-end modules (`live`, `typed`) start: over the
/// in-memory store here, over Neo4j in [`on_bolt`].
mod backend {
    pub(crate) use crate::server::{start, start_with};
}

/// The end-to-end GraphQL tests again, over the Neo4j store (see `bolt`).
mod on_bolt;
