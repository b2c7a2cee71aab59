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

/// The plant of [`crate::support::three_levels`] on a new database, and
/// the real server over it.
async fn three_levels_served() -> (Arc<BoltStore>, crate::server::Running) {
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
    (store, s)
}

#[tokio::test]
async fn one_statement_per_nesting_level() {
    let (store, s) = three_levels_served().await;
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

/// A traversal is one statement, whatever it selects; when it reads only
/// depths, ids and models (`GraphStore::reach`) it answers what the full
/// traversal answers.
#[tokio::test]
async fn a_traversal_is_one_statement_and_its_lean_answer_matches_the_full_one() {
    let (store, s) = three_levels_served().await;
    let ask = |selection: &str| {
        format!(r#"query($c: ID!) {{ traverse(from: $c, maxDepth: 3) {{ {selection} }} }}"#)
    };
    let lean = ask("depth twin { id model __typename }");
    let fragments = ask("__typename depth twin { ... on Pump { id } ... on Twin { model } }");
    let full = ask("depth path twin { id model __typename version }");
    for cell in ["small", "large"] {
        let mut answers = Vec::new();
        for q in [&lean, &fragments, &full] {
            let before = store.reads();
            let v = gql(s.addr, q, json!({"c": cell})).await;
            assert_eq!(store.reads() - before, 1, "one statement: {q}");
            let hits = v["data"]["traverse"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(!hits.is_empty(), "{v}");
            answers.push(hits);
        }
        let [lean, fragments, full] = <[_; 3]>::try_from(answers).expect("three answers");
        assert_eq!(lean.len(), full.len());
        assert_eq!(fragments.len(), full.len());
        for ((l, f), x) in lean.iter().zip(&fragments).zip(&full) {
            assert_eq!(l["depth"], x["depth"], "{l} {x}");
            assert_eq!(l["twin"]["id"], x["twin"]["id"], "{l} {x}");
            assert_eq!(l["twin"]["model"], x["twin"]["model"], "{l} {x}");
            assert_eq!(l["twin"]["__typename"], x["twin"]["__typename"], "{l} {x}");
            assert_eq!(f["twin"]["model"], x["twin"]["model"], "{f} {x}");
            if x["twin"]["__typename"] == "Pump" {
                assert_eq!(f["twin"]["id"], x["twin"]["id"], "{f} {x}");
            }
            assert!(x["twin"]["version"].as_i64().unwrap_or(0) >= 1, "{x}");
        }
    }
    s.shutdown().await;
}
