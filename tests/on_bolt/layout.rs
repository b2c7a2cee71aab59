//! The graph as a Cypher user sees it (`schema/neo4j.md`): a twin is a
//! node labelled by its model's inheritance chain, with its scalar values
//! flattened and kept current as it changes; relationships are typed by
//! name; events are nodes of their own.

use neo4rs::query;
use serde_json::json;
use twingraph::store::bolt::BoltStore;
use twingraph::store::{GraphStore, StoreConfig};

use crate::bolt::fresh_database;
use crate::store_suite::{MOTOR, PUMP, create, desired, must, rel, reported};
use crate::support::sample_models;

/// One row of `q` (which must return one).
async fn one(db: &neo4rs::Graph, q: &str) -> neo4rs::Row {
    let mut rows = db.execute(query(q)).await.expect("cypher");
    rows.next().await.expect("row").expect("one row")
}

#[tokio::test]
async fn the_graph_reads_in_cypher_as_documented() {
    let config = fresh_database().await;
    let mut direct = neo4rs::ConfigBuilder::default()
        .uri(config.uri.as_str())
        .user(config.user.as_str())
        .password(config.password.as_str());
    if let Some(db) = &config.database {
        direct = direct.db(db.as_str());
    }
    let db = neo4rs::Graph::connect(direct.build().expect("config"))
        .await
        .expect("direct connection");
    let store = BoltStore::connect(config, sample_models(), StoreConfig::default())
        .await
        .expect("store");
    must(
        &store,
        vec![
            create("p", PUMP),
            create("m", MOTOR),
            rel("p", "feeds", "m"),
            reported("p", json!({"power": 4.5, "operatingHours": 10.0})),
            desired("p", json!({"manufacturer": "Acme"})),
        ],
    )
    .await;
    let q = "MATCH (n:Equipment {id: 'p'}) RETURN n.model AS model, n.power AS power, \
             n.operatingHours AS hours, n.desired_manufacturer AS maker, n.version AS version, \
             'Pump' IN labels(n) AND 'Twin' IN labels(n) AS labelled";
    let row = one(&db, q).await;
    assert_eq!(row.get::<String>("model").expect("model"), PUMP);
    assert_eq!(row.get::<f64>("power").expect("power"), 4.5);
    assert_eq!(row.get::<f64>("hours").expect("hours"), 10.0);
    assert_eq!(row.get::<String>("maker").expect("maker"), "Acme");
    assert!(row.get::<bool>("labelled").expect("labels"));
    let version = row.get::<i64>("version").expect("version");

    // A change rewrites what changed and removes what is gone.
    must(
        &store,
        vec![reported(
            "p",
            json!({"power": 7.25, "operatingHours": null}),
        )],
    )
    .await;
    let row = one(&db, q).await;
    assert_eq!(row.get::<f64>("power").expect("power"), 7.25);
    assert_eq!(row.get::<Option<f64>>("hours").expect("hours"), None);
    assert_eq!(row.get::<String>("maker").expect("maker"), "Acme");
    assert_eq!(row.get::<i64>("version").expect("version"), version + 1);
    assert!(row.get::<bool>("labelled").expect("labels"));
    let row = one(
        &db,
        "MATCH (n:Twin) WHERE n.power > 7.0 RETURN count(n) AS n, collect(n.id) AS ids",
    )
    .await;
    assert_eq!(row.get::<i64>("n").expect("count"), 1);
    let row = one(
        &db,
        "MATCH (:Pump {id: 'p'})-[r:feeds]->(:Motor {id: 'm'}) RETURN r.id AS id",
    )
    .await;
    assert!(!row.get::<String>("id").expect("relationship id").is_empty());
    let row = one(
        &db,
        "MATCH (e:TwinEvent) WHERE e.twin = 'p' AND e.kind = 'reportedPatched' RETURN count(e) AS n",
    )
    .await;
    assert_eq!(row.get::<i64>("n").expect("count"), 2);
    let stored = store.twin("p").await.expect("read").expect("p");
    assert_eq!(stored.version as i64, version + 1);
}
