//! The end-to-end GraphQL tests (`live`, `typed`) again, over the Neo4j
//! store: the same files, with `super::backend` starting the server on a
//! fresh Neo4j database (see `bolt`).

mod backend {
    /// The real server over a Neo4j store on a new, empty database.
    pub(crate) async fn start() -> crate::server::Running {
        start_with(twingraph::store::StoreConfig::default()).await
    }

    /// [`start`] with `config` (subscribers may fall `config.live_buffer`
    /// events behind, shared or not).
    pub(crate) async fn start_with(
        config: twingraph::store::StoreConfig,
    ) -> crate::server::Running {
        let limits = twingraph::graphql::schema::Limits {
            live_buffer: config.live_buffer,
            ..twingraph::graphql::schema::Limits::default()
        };
        let store = crate::bolt::store(crate::support::sample_models(), config).await;
        crate::server::serve(std::sync::Arc::new(store), limits).await
    }
}

mod alarms;
mod layout;
#[path = "../live.rs"]
mod live;
mod outage;
mod replicas;
mod rollouts;
mod series;
mod startup;
mod statements;
#[path = "../typed.rs"]
mod typed;
