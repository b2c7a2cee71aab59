//! The GraphQL API, built with async-graphql's dynamic schema.
//!
//! This first slice serves the model-agnostic ("generic") API over any
//! `GraphStore`: the `Twin` interface, `twin`/`twins` queries and the twin
//! mutations, with stable error codes. The DTDL → typed-schema compiler
//! arrives on top of it (issue 4).
//!
//! Layout: [`schema`] builds the schema, [`json`] converts twins to the
//! JSON views the generic fields return, [`errors`] maps store errors to
//! GraphQL errors with `extensions.code`.
//!
//! Resolvers never see HTTP: the store reaches them as schema data.

mod documents;
pub mod errors;
mod graph_api;
pub mod json;
pub mod live;
mod loader;
pub mod names;
mod reload;
mod rollout_api;
pub mod schema;
mod shared;
pub mod typed;
pub mod upload;

pub use live::Shutdown;
pub use reload::{LiveSchema, Reloader};
pub use schema::build;
pub use shared::Delivery;
pub use upload::ModelLibrary;
