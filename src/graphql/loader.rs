//! Batching: resolvers that need twins by id (relationship ends, traversal
//! hits, the hierarchy) load them through one [`DataLoader`] per schema, so
//! a list of N items costs one store call, not N.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::dynamic::ResolverContext;

use super::errors::store_error;
use crate::store::{GraphStore, StoreError};
use crate::twin::query::Direction;
use crate::twin::{Relationship, Twin};

/// How long a loader waits to gather keys into one batch.
const BATCH_WINDOW: Duration = Duration::from_micros(200);

/// Loads twins by id with [`GraphStore::twins_by_ids`].
#[derive(Debug)]
pub struct TwinLoader(Arc<dyn GraphStore>);

impl Loader<String> for TwinLoader {
    type Value = Arc<Twin>;
    type Error = StoreError;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Arc<Twin>>, StoreError> {
        let twins = self.0.twins_by_ids(keys).await?;
        Ok(twins.into_iter().map(|t| (t.id.to_string(), t)).collect())
    }
}

/// The loader a schema over `store` uses (no cache: every request sees current state).
pub fn twins(store: Arc<dyn GraphStore>) -> DataLoader<TwinLoader> {
    DataLoader::new(TwinLoader(store), tokio::spawn).delay(BATCH_WINDOW)
}

/// Which relationships of one twin a [`RelLoader`] key asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelKey {
    pub twin: String,
    /// Only relationships of this name; all when `None`.
    pub name: Option<String>,
    /// Relationships pointing at the twin instead of from it.
    pub incoming: bool,
}

/// Loads relationships of many twins with [`GraphStore::relationships_of`]:
/// one store call per distinct (name, direction) in a batch.
#[derive(Debug)]
pub struct RelLoader(Arc<dyn GraphStore>);

impl Loader<RelKey> for RelLoader {
    type Value = Vec<Relationship>;
    type Error = StoreError;

    async fn load(
        &self,
        keys: &[RelKey],
    ) -> Result<HashMap<RelKey, Vec<Relationship>>, StoreError> {
        let store = &self.0;
        grouped(
            keys,
            |twins, direction, name| async move {
                store
                    .relationships_of(&twins, direction, name.as_deref())
                    .await
            },
            |r| r,
        )
        .await
    }
}

/// Answers `keys` with one `fetch` per distinct (name, direction), each
/// item (its relationship read by `rel`) going to the key of the twin it
/// was asked for.
async fn grouped<V, Fut>(
    keys: &[RelKey],
    fetch: impl Fn(Vec<String>, Direction, Option<String>) -> Fut,
    rel: impl Fn(&V) -> &Relationship,
) -> Result<HashMap<RelKey, Vec<V>>, StoreError>
where
    Fut: Future<Output = Result<Vec<V>, StoreError>>,
{
    let mut groups: HashMap<(Option<String>, bool), Vec<String>> = HashMap::new();
    for k in keys {
        groups
            .entry((k.name.clone(), k.incoming))
            .or_default()
            .push(k.twin.clone());
    }
    let mut out: HashMap<RelKey, Vec<V>> = keys.iter().map(|k| (k.clone(), Vec::new())).collect();
    for ((name, incoming), twins) in groups {
        let direction = if incoming {
            Direction::In
        } else {
            Direction::Out
        };
        for item in fetch(twins, direction, name.clone()).await? {
            let r = rel(&item);
            let key = RelKey {
                twin: if incoming { &r.target } else { &r.source }.clone(),
                name: name.clone(),
                incoming,
            };
            if let Some(v) = out.get_mut(&key) {
                v.push(item);
            }
        }
    }
    Ok(out)
}

/// The relationship loader a schema over `store` uses (no cache).
pub fn relationships(store: Arc<dyn GraphStore>) -> DataLoader<RelLoader> {
    DataLoader::new(RelLoader(store), tokio::spawn).delay(BATCH_WINDOW)
}

/// Loads relationships with the twins at their other ends
/// ([`GraphStore::relationships_with_ends`]): a level of nested
/// relationships costs one store call per distinct (name, direction).
#[derive(Debug)]
pub struct EdgeLoader(Arc<dyn GraphStore>);

impl Loader<RelKey> for EdgeLoader {
    type Value = Vec<(Relationship, Arc<Twin>)>;
    type Error = StoreError;

    async fn load(
        &self,
        keys: &[RelKey],
    ) -> Result<HashMap<RelKey, Vec<(Relationship, Arc<Twin>)>>, StoreError> {
        let store = &self.0;
        grouped(
            keys,
            |twins, direction, name| async move {
                let edges = store
                    .relationships_with_ends(&twins, direction, name.as_deref())
                    .await?;
                // An end that no longer exists: no edge.
                Ok(edges
                    .into_iter()
                    .filter_map(|(r, end)| Some((r, end?)))
                    .collect())
            },
            |(r, _)| r,
        )
        .await
    }
}

/// The edge loader a schema over `store` uses (no cache).
pub fn edges(store: Arc<dyn GraphStore>) -> DataLoader<EdgeLoader> {
    DataLoader::new(EdgeLoader(store), tokio::spawn).delay(BATCH_WINDOW)
}

/// One twin through the request's batching loader.
pub(super) async fn load_twin(
    ctx: &ResolverContext<'_>,
    id: &str,
) -> Result<Option<Arc<Twin>>, async_graphql::Error> {
    ctx.data::<DataLoader<TwinLoader>>()?
        .load_one(id.to_owned())
        .await
        .map_err(|e| store_error(&e))
}
