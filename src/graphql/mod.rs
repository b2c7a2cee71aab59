//! The GraphQL API, built with async-graphql's dynamic schema: a generic,
//! model-agnostic API (twins, the graph, history, models, configurations,
//! rollouts, drift, live changes) and the typed schema compiled from the
//! DTDL models. Resolvers never see HTTP: the store and the caller reach
//! them as request data.
//!
//! The modules form three layers, listed here bottom up; a module imports
//! only what is listed before it, and features never import one another
//! (`tests/architecture.rs` checks this list against the code).
//!
//! Below the features:
//! - [`errors`]: domain errors as GraphQL errors with stable codes
//! - [`names`]: GraphQL type names of DTDL Interfaces; the order models arrived in
//! - [`context`]: what a resolver knows of its request: store, caller, arguments
//! - [`builder`]: what features register into; limits, shutdown, recompilation
//! - [`views`]: twins, relationships and events as GraphQL values
//! - [`loader`]: batching loaders (no N+1)
//! - [`record`]: object types over JSON records
//! - [`connection`]: pages as connections
//! - [`trend`]: time series arguments and answers (`series`, typed `…Series`)
//! - [`upload`]: the model library and `uploadModels`
//!
//! Features, one `register(&mut Builder)` each:
//! - [`twins`]: the `Twin` interface, `twin`, `twins`, twin writes, `batch`
//! - [`graph`]: relationships, traversal, the containment hierarchy
//! - [`history`]: the event log and twin history
//! - [`series`]: time series of numeric fields (trends)
//! - [`live`]: `twinChanged` and `events` subscriptions
//! - [`models`]: the loaded models, `uploadModels`
//! - [`configurations`]: configurations and their versions
//! - [`rollouts`]: rollouts, their commands and progress
//! - [`drift`]: drift, queried and live
//! - [`devices`]: device identities, their keys and connections
//! - [`alarms`]: alarm rules, alarms, health, and their subscriptions
//! - [`forecast`]: forecasts of numeric fields and when limit rules would be met
//! - [`lifecycle`]: asset lifecycles and diagnostic reports
//! - [`kpi`]: indicators of an asset or subtree over a window
//! - [`typed`]: the typed schema compiled from the models
//!
//! On top:
//! - [`schema`]: the assembly of every feature
//! - [`operation`]: checks, codes, metrics and logs around each operation
//! - [`documents`]: parsed documents by query text
//! - [`shared`]: identical subscriptions executed once
//! - [`reload`]: [`LiveSchema`], the hot-swapped executor the server calls

mod builder;
mod connection;
mod context;
pub mod errors;
mod loader;
pub mod names;
mod record;
mod trend;
pub mod upload;
mod views;

mod alarms;
mod configurations;
mod devices;
mod drift;
mod forecast;
mod graph;
mod history;
mod kpi;
mod lifecycle;
mod live;
mod models;
mod rollouts;
mod series;
mod twins;
mod typed;

mod documents;
mod operation;
mod reload;
pub mod schema;
mod shared;

pub use builder::{Limits, Recompile, Shutdown};
pub use context::TwinTypes;
pub use reload::{Executed, LiveSchema, Reloader, Served, build, build_served};
pub use shared::Delivery;
pub use upload::ModelLibrary;
