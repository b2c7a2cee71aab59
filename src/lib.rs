//! twingraph: a GraphQL digital-twin graph server.
//!
//! DTDL models are compiled into a GraphQL schema over a property graph of
//! industrial assets and their dependencies.
//!
//! # Layout
//!
//! Bottom up; a module uses only those listed before it
//! (`tests/architecture.rs` checks this list against the code).
//!
//! - [`codes`]: the table of error codes clients see
//! - [`metrics`]: the Prometheus registry
//! - [`dtdl`]: the DTDL v2/v3 language engine: parse, validate and resolve
//!   models into a typed [`dtdl::ModelSet`]
//! - [`records`]: records other domains keep in the event log
//!   (configurations, rollouts) and the vocabulary they share with twins
//! - [`twin`]: the twin graph domain: twins, relationships, desired/reported
//!   state validated against models, events, the in-memory graph and queries
//! - [`store`]: the `GraphStore` trait and its stores (embedded durable
//!   default on redb; in-memory for tests; Neo4j), event log and time travel
//! - [`series`]: time series of numeric reported values (trends), derived
//!   from the event log into compressed blocks
//! - [`alarms`]: alarm rules, alarms in the manner of ISA-18.2 and health
//!   over the containment hierarchy, kept as records in the event log
//! - [`lifecycle`]: asset lifecycle states and their history, kept as
//!   records in the event log
//! - [`kpi`]: indicators of assets over a window (availability,
//!   utilization, MTBF, MTTR, alarms), computed from their events
//! - [`auth`]: bearer tokens (JWT), roles and graph scope: the store as
//!   one caller sees it
//! - [`rollout`]: configurations, staged rollouts, drift and remediation
//! - [`devices`]: device identities, keys and the MQTT device endpoint
//!   (Azure IoT Hub's device protocol)
//! - [`simulator`]: simulated devices (tests, benchmarks, `simulate`)
//! - [`demo`]: the generated demo plant
//! - [`graphql`]: the GraphQL API (generic and typed) and its executor
//! - [`server`]: HTTP only: routes, authentication gate, WebSocket, TLS
//! - [`config`]: the server's settings, file < environment < flag
//! - [`cli`]: the command-line interface (`twingraph check`, `serve`, ...),
//!   kept out of `main` so it can be tested

pub mod alarms;
pub mod auth;
pub mod cli;
pub mod codes;
pub mod config;
pub mod demo;
pub mod devices;
pub mod dtdl;
pub mod graphql;
pub mod kpi;
pub mod lifecycle;
pub mod metrics;
pub mod records;
pub mod rollout;
pub mod series;
pub mod server;
pub mod simulator;
pub mod store;
pub mod twin;
