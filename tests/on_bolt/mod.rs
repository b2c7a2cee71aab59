//! The end-to-end GraphQL tests (`live`, `typed`) again, over the Neo4j
//! store: the same files, with `super::backend` starting the server on a
//! fresh Neo4j database (see `bolt`).

mod backend {
    pub(crate) use crate::bolt::{start, start_with};
}

#[path = "../live.rs"]
mod live;
mod outage;
#[path = "../typed.rs"]
mod typed;
