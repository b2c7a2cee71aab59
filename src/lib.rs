//! twingraph: a GraphQL digital-twin graph server.
//!
//! DTDL models are compiled into a GraphQL schema over a property graph of
//! industrial assets and their dependencies.
//!
//! # Layout
//!
//! - [`dtdl`]: the DTDL v2/v3 language engine: parse, validate and resolve
//!   models into a typed [`dtdl::ModelSet`].
//! - [`twin`]: the twin graph domain: twins, relationships, desired/reported
//!   state validated against models, events, the in-memory graph and queries.
//! - [`store`]: the `GraphStore` trait and its stores (embedded durable
//!   default on redb; in-memory for tests), event log and time travel.
//! - [`auth`]: bearer tokens (JWT), roles and graph scope: the store as
//!   one caller sees it.
//! - [`cli`]: the command-line interface (`twingraph check`, ...), kept out of
//!   `main` so it can be tested.

pub mod auth;
pub mod cli;
pub mod codes;
pub mod config;
pub mod demo;
pub mod dtdl;
pub mod graphql;
pub mod metrics;
pub mod rollout;
pub mod server;
pub mod simulator;
pub mod store;
pub mod twin;
