//! Batching: resolvers that need twins by id (relationship ends, traversal
//! hits, the hierarchy) load them through one [`DataLoader`] per schema, so
//! a list of N items costs one store call, not N.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};

use crate::store::{GraphStore, StoreError};
use crate::twin::Twin;

/// How long a loader waits to gather keys into one batch.
const BATCH_WINDOW: Duration = Duration::from_micros(200);

/// Loads twins by id with [`GraphStore::twins_by_ids`].
#[derive(Debug)]
pub struct TwinLoader(Arc<dyn GraphStore>);

impl Loader<String> for TwinLoader {
    type Value = Twin;
    type Error = StoreError;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Twin>, StoreError> {
        let twins = self.0.twins_by_ids(keys).await?;
        Ok(twins.into_iter().map(|t| (t.id.to_string(), t)).collect())
    }
}

/// The loader a schema over `store` uses (no cache: every request sees current state).
pub fn twins(store: Arc<dyn GraphStore>) -> DataLoader<TwinLoader> {
    DataLoader::new(TwinLoader(store), tokio::spawn).delay(BATCH_WINDOW)
}
