//! No N+1: nested fields that need twins load them in batches, so the number
//! of store calls a query makes does not grow with the size of its result.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::broadcast;
use twingraph::dtdl::ModelSet;
use twingraph::store::{At, GraphStore, Page, Store, StoreConfig, StoreError, TwinQuery};
use twingraph::twin::query::{Direction, Reached, Traversal};
use twingraph::twin::{Batch, Event, Micros, Relationship, Twin};

use crate::server::{gql, start_on};
use crate::support::sample_models;

/// A store that counts the reads made through it.
#[derive(Debug)]
struct Counting {
    inner: Store,
    reads: AtomicUsize,
}

impl Counting {
    fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl GraphStore for Counting {
    fn models(&self) -> Arc<ModelSet> {
        self.inner.models()
    }
    async fn set_models(
        &self,
        models: Arc<ModelSet>,
        documents: Vec<serde_json::Value>,
        expect: Option<u64>,
        actor: &str,
    ) -> Result<u64, StoreError> {
        self.inner
            .set_models(models, documents, expect, actor)
            .await
    }
    fn adopt_models(&self, models: Arc<ModelSet>) {
        self.inner.adopt_models(models)
    }
    async fn apply(&self, batch: Batch, actor: &str) -> Result<Vec<Event>, StoreError> {
        self.inner.apply(batch, actor).await
    }
    async fn twin(&self, id: &str) -> Result<Option<Arc<Twin>>, StoreError> {
        self.read();
        self.inner.twin(id).await
    }
    async fn twins_by_ids(&self, ids: &[String]) -> Result<Vec<Arc<Twin>>, StoreError> {
        self.read();
        self.inner.twins_by_ids(ids).await
    }
    async fn twins(&self, query: &TwinQuery) -> Result<Page<Twin>, StoreError> {
        self.read();
        self.inner.twins(query).await
    }
    async fn relationship(&self, s: &str, id: &str) -> Result<Option<Relationship>, StoreError> {
        self.read();
        self.inner.relationship(s, id).await
    }
    async fn relationships_with_id(&self, id: &str) -> Result<Vec<Relationship>, StoreError> {
        self.read();
        self.inner.relationships_with_id(id).await
    }
    async fn relationships(
        &self,
        twin: &str,
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<Relationship>, StoreError> {
        self.read();
        self.inner.relationships(twin, direction, name).await
    }
    async fn relationships_of(
        &self,
        twins: &[String],
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<Relationship>, StoreError> {
        self.read();
        self.inner.relationships_of(twins, direction, name).await
    }
    async fn traverse(&self, t: &Traversal) -> Result<Vec<Reached>, StoreError> {
        self.read();
        self.inner.traverse(t).await
    }
    async fn ancestors(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.read();
        self.inner.ancestors(id).await
    }
    async fn descendants(&self, id: &str, depth: usize) -> Result<Vec<Reached>, StoreError> {
        self.read();
        self.inner.descendants(id, depth).await
    }
    async fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.read();
        self.inner.events_after(seq, limit).await
    }
    async fn stream_events(
        &self,
        stream: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.read();
        self.inner.stream_events(stream, seq, limit).await
    }
    async fn twin_events(
        &self,
        twin: &str,
        from: Option<Micros>,
        to: Option<Micros>,
    ) -> Result<Vec<Event>, StoreError> {
        self.read();
        self.inner.twin_events(twin, from, to).await
    }
    async fn twin_as_of(&self, twin: &str, at: At) -> Result<Option<Twin>, StoreError> {
        self.read();
        self.inner.twin_as_of(twin, at).await
    }
    async fn relationships_as_of(
        &self,
        twin: &str,
        at: At,
    ) -> Result<Vec<Relationship>, StoreError> {
        self.read();
        self.inner.relationships_as_of(twin, at).await
    }
    fn last_seq(&self) -> u64 {
        self.inner.last_seq()
    }
    fn containment(&self) -> String {
        self.inner.containment()
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.subscribe()
    }
    async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.inner.lease(name, holder, ttl).await
    }
}

#[tokio::test]
async fn nested_twin_fields_cost_the_same_store_calls_whatever_the_fan_out() {
    let store = Arc::new(Counting {
        inner: Store::in_memory(sample_models(), StoreConfig::default()),
        reads: AtomicUsize::new(0),
    });
    store
        .apply(crate::support::three_levels(), "test")
        .await
        .expect("setup");
    let s = start_on(store.clone()).await;
    let mut calls = Vec::new();
    for cell in ["small", "large"] {
        for q in [
            "query($c: ID!) { relationships(source: $c) { nodes { sourceTwin { id } targetTwin { id model version } } } }",
            "query($c: ID!) { traverse(from: $c, maxDepth: 2) { twin { id reported } } }",
            "query($c: ID!) { descendants(id: $c) { id } }",
        ] {
            let before = store.reads.load(Ordering::SeqCst);
            let v = gql(s.addr, q, json!({"c": cell})).await;
            assert!(v.get("errors").is_none(), "{v}");
            calls.push((cell, store.reads.load(Ordering::SeqCst) - before));
        }
    }
    let (small, large) = calls.split_at(3);
    for ((_, a), (_, b)) in small.iter().zip(large) {
        assert_eq!(a, b, "store calls grow with the result: {calls:?}");
    }
    assert!(
        large.iter().all(|(_, n)| *n <= 3),
        "more than 3 store calls for one query: {calls:?}"
    );
    s.shutdown().await;
}

/// Three levels of typed relationship connections: the store calls stay
/// the same whether each level holds 3 twins or 60.
#[tokio::test]
async fn three_levels_of_typed_relationships_make_a_bounded_number_of_store_calls() {
    let store = Arc::new(Counting {
        inner: Store::in_memory(sample_models(), StoreConfig::default()),
        reads: AtomicUsize::new(0),
    });
    let m = |n: &str| format!("dtmi:twingraph:isa95:{n};1");
    let mut ops = Vec::new();
    for (cell, children) in [("small", 3), ("large", 60)] {
        ops.push(json!({"op": "createTwin", "id": cell, "model": m("WorkCell")}));
        for k in 0..children {
            let pump = format!("{cell}-{k}");
            let air = format!("{cell}-{k}-air");
            ops.push(json!({"op": "createTwin", "id": pump, "model": m("Pump"), "reported": {"flowRate": k}}));
            ops.push(json!({"op": "createTwin", "id": air, "model": m("Compressor")}));
            ops.push(json!({"op": "createRelationship", "source": cell, "name": "contains", "target": pump}));
            ops.push(json!({"op": "createRelationship", "source": pump, "name": "dependsOn", "target": air, "properties": {"kind": "compressedAir"}}));
            ops.push(
                json!({"op": "createRelationship", "source": air, "name": "feeds", "target": pump}),
            );
        }
    }
    let batch = Batch {
        ops: ops
            .into_iter()
            .map(|o| serde_json::from_value(o).expect("op"))
            .collect(),
    };
    store.apply(batch, "test").await.expect("setup");
    let s = start_on(store.clone()).await;
    let q = crate::support::THREE_LEVELS_QUERY;
    let mut calls = Vec::new();
    for (cell, children) in [("small", 3), ("large", 60)] {
        let before = store.reads.load(Ordering::SeqCst);
        let v = gql(s.addr, q, json!({"c": cell})).await;
        assert!(v.get("errors").is_none(), "{v}");
        calls.push(store.reads.load(Ordering::SeqCst) - before);
        let nodes = v["data"]["workCell"]["contains"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(nodes.len(), children, "{v}");
        // The third level answers: each compressor feeds its pump back.
        let fed = &nodes[0]["dependsOn"]["edges"][0]["node"]["feeds"]["nodes"][0]["id"];
        assert_eq!(fed, &nodes[0]["id"], "{v}");
    }
    assert_eq!(
        calls[0], calls[1],
        "store calls grow with the result: {calls:?}"
    );
    // One lookup, then per level one relationship load and one twin load.
    assert!(calls[1] <= 7, "too many store calls: {calls:?}");
    s.shutdown().await;
}
