//! No GraphQL request sends more than one Cypher statement per nesting
//! level: three levels of typed relationships under a lookup cost four
//! read statements, whether each level holds 3 twins or 60; a filtered
//! list is one statement.

use std::sync::Arc;

use serde_json::json;
use twingraph::store::bolt::BoltStore;
use twingraph::store::{GraphStore, StoreConfig};

use crate::bolt::fresh_database;
use crate::server::gql;
use crate::support::sample_models;

#[tokio::test]
async fn one_statement_per_nesting_level() {
    let store = Arc::new(
        BoltStore::connect(
            fresh_database().await,
            sample_models(),
            StoreConfig::default(),
        )
        .await
        .expect("store"),
    );
    store
        .apply(crate::support::three_levels(), "test")
        .await
        .expect("setup");
    let s = crate::server::start_on(store.clone()).await;
    let q = crate::support::THREE_LEVELS_QUERY;
    let mut statements = Vec::new();
    for (cell, children) in [("small", 3), ("large", 60)] {
        let before = store.reads();
        let v = gql(s.addr, q, json!({"c": cell})).await;
        statements.push(store.reads() - before);
        let nodes = v["data"]["workCell"]["contains"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(nodes.len(), children, "{v}");
        let fed = &nodes[0]["dependsOn"]["edges"][0]["node"]["feeds"]["nodes"][0]["id"];
        assert_eq!(fed, &nodes[0]["id"], "{v}");
    }
    assert_eq!(
        statements,
        [4, 4],
        "the lookup, then one statement per level"
    );
    s.shutdown().await;
}
