//! Neo4j going away and coming back: `/readyz`, `STORE_UNAVAILABLE`, and
//! reconnecting by itself, with no acknowledged write lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use twingraph::store::StoreConfig;
use twingraph::store::bolt::BoltStore;

use crate::bolt::{Proxy, bolt_addr, fresh_database};
use crate::server::{code, gql, http};
use crate::support::sample_models;

async fn wait_for_readyz(addr: std::net::SocketAddr, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, _) = http(addr, "GET", "/readyz", None).await;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {got}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_and_is_reconnected() {
    let mut bolt = fresh_database().await;
    let proxy = Proxy::start(bolt_addr(&bolt.uri)).await;
    bolt.uri = format!("bolt://{}", proxy.addr);
    bolt.poll = Duration::from_millis(50);
    bolt.timeout = Duration::from_secs(3);
    let store = BoltStore::connect(bolt, sample_models(), StoreConfig::default())
        .await
        .expect("store");
    let s = crate::server::serve(Arc::new(store), Default::default()).await;
    let create = r#"mutation { createTwin(id: "p1", model: "dtmi:twingraph:isa95:Pump;1", reported: {flowRate: 1.5}) { version } }"#;
    let v = gql(s.addr, create, json!({})).await;
    assert_eq!(v["data"]["createTwin"]["version"], 1, "{v}");
    wait_for_readyz(s.addr, 200).await;

    proxy.cut();
    wait_for_readyz(s.addr, 503).await;
    let t = Instant::now();
    let v = gql(s.addr, r#"{ twin(id: "p1") { id } }"#, json!({})).await;
    assert_eq!(code(&v), "STORE_UNAVAILABLE", "{v}");
    let v = gql(
        s.addr,
        r#"mutation { patchReported(id: "p1", patch: {flowRate: 2.5}) { version } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "STORE_UNAVAILABLE", "{v}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "failing took {:?}",
        t.elapsed()
    );

    proxy.restore();
    wait_for_readyz(s.addr, 200).await;
    let v = gql(
        s.addr,
        r#"mutation { patchReported(id: "p1", patch: {flowRate: 3.5}) { version } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["patchReported"]["version"], 2, "{v}");
    let v = gql(
        s.addr,
        r#"{ twin(id: "p1") { version reported } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["twin"]["reported"]["flowRate"], 3.5, "{v}");
    s.shutdown().await;
}
