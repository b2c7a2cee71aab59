//! What the feature modules register into: the root types, the types they
//! add, the schema's limits and the scalars every part shares. Each feature
//! exposes one `register(&mut Builder)`; [`super::schema`] calls them all.
//!
//! Also the schema-wide pieces below every feature: [`Shutdown`], which
//! ends live streams, and [`Recompile`], through which `uploadModels`
//! reaches the schema serving it without knowing the executor above.

use std::sync::Arc;

use async_graphql::Value as GqlValue;
use async_graphql::dynamic::{
    Field, Object, Scalar, Schema, SchemaBuilder, SchemaError, Subscription, SubscriptionField,
    Type,
};
use tokio::sync::watch;

use super::names::ModelOrder;
use crate::dtdl::ModelSet;
use crate::twin::parse_time;

/// Limits of the schema (configurable).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub depth: usize,
    pub complexity: usize,
    /// Largest page a connection returns.
    pub max_page: usize,
    /// Responses a subscriber may fall behind a shared subscription
    /// before it is told `SUBSCRIBER_LAGGED` (as the store's live buffer).
    pub live_buffer: usize,
    /// Aliased fields a document may have.
    pub aliases: usize,
    /// Operations one `batch` mutation may carry.
    pub batch_ops: usize,
    /// Whether the schema answers introspection (`__schema`, `__type`).
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: 16,
            complexity: 10_000,
            max_page: 1000,
            live_buffer: 4096,
            aliases: 200,
            batch_ops: 10_000,
            introspection: true,
        }
    }
}

/// The schema under construction.
#[derive(Debug)]
pub(super) struct Builder {
    query: Object,
    mutation: Object,
    subscription: Subscription,
    types: Vec<Type>,
    pub limits: Limits,
}

impl Builder {
    /// Empty roots and the shared scalars: `JSON`, `Long`, `DateTime`.
    pub fn new(limits: Limits) -> Builder {
        let json = Scalar::new("JSON").description("Any JSON value.");
        let long = Scalar::new("Long")
            .description("A 64-bit integer (DTDL long). Serialized as a JSON number.");
        let date_time = Scalar::new("DateTime")
            .description("An RFC 3339 date-time, e.g. 2026-11-26T08:00:00Z.")
            .validator(|v| matches!(v, GqlValue::String(s) if parse_time(s).is_some()));
        Builder {
            query: Object::new("Query"),
            mutation: Object::new("Mutation"),
            subscription: Subscription::new("Subscription"),
            types: vec![json.into(), long.into(), date_time.into()],
            limits,
        }
    }

    /// Adds a field to `Query`.
    pub fn query(&mut self, field: Field) {
        self.query = std::mem::replace(&mut self.query, Object::new("Query")).field(field);
    }

    /// Adds a field to `Mutation`.
    pub fn mutation(&mut self, field: Field) {
        self.mutation = std::mem::replace(&mut self.mutation, Object::new("Mutation")).field(field);
    }

    /// Adds a field to `Subscription`.
    pub fn subscription(&mut self, field: SubscriptionField) {
        self.subscription =
            std::mem::replace(&mut self.subscription, Subscription::new("Subscription"))
                .field(field);
    }

    /// Adds a type.
    pub fn register(&mut self, ty: impl Into<Type>) {
        self.types.push(ty.into());
    }

    /// Everything registered, as the engine's schema builder (no data yet).
    pub fn finish(self) -> SchemaBuilder {
        let builder = Schema::build("Query", Some("Mutation"), Some("Subscription"))
            .register(self.query)
            .register(self.mutation)
            .register(self.subscription);
        self.types.into_iter().fold(builder, |b, ty| b.register(ty))
    }
}

/// Ends every live stream when the server shuts down, so each subscriber
/// gets a `complete` for each of its subscriptions instead of a dropped socket.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    /// Completes every open subscription stream, present and future.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Resolves once `trigger` was called.
    pub async fn triggered(self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail.
        let _ = rx.wait_for(|closed| *closed).await;
    }
}

/// Schema data through which `uploadModels` compiles the schema of a new
/// model set and, once the models are durable, serves it (implemented by
/// the executor, [`super::LiveSchema`]).
pub trait Recompile: Send + Sync {
    /// The schema `models` (ranked by `order`) compile to, not yet serving;
    /// `None` once the executor is gone.
    fn build_for(
        &self,
        models: &ModelSet,
        order: &ModelOrder,
    ) -> Option<Result<Schema, SchemaError>>;

    /// Serves `schema` from now on.
    fn install(&self, schema: Schema);
}

/// Request data marking a shared subscription's own execution (its
/// subscription is counted per subscriber instead; see `shared`).
#[derive(Debug, Clone, Copy)]
pub struct HubExecution;

/// The recompiler as schema data.
pub(super) type Recompiler = Arc<dyn Recompile>;
