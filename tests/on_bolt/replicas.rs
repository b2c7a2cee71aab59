//! Two server replicas on one Neo4j database: no lost update between
//! them, one gap-free sequence, and each replica's subscribers see every
//! change, in order, whichever replica wrote it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use twingraph::store::bolt::BoltStore;
use twingraph::store::{GraphStore, StoreConfig, StoreError};
use twingraph::twin::{Batch, Op, TwinError};

use crate::bolt::fresh_database;
use crate::store_suite::{PUMP, create, must};
use crate::support::sample_models;

/// Another server's connection to the database `bolt` (polling the log
/// every 20 ms).
pub(crate) async fn replica(
    bolt: &twingraph::store::bolt::BoltConfig,
    config: StoreConfig,
) -> BoltStore {
    let mut b = bolt.clone();
    b.poll = Duration::from_millis(20);
    BoltStore::connect(b, sample_models(), config)
        .await
        .expect("replica")
}

/// [`replica`] as the layers above see it.
pub(crate) async fn shared_replica(
    bolt: &twingraph::store::bolt::BoltConfig,
) -> Arc<dyn GraphStore> {
    Arc::new(replica(bolt, StoreConfig::default()).await)
}

/// Adds one to the twin's `flowRate` with an expected-version check,
/// retrying on conflicts: a read-modify-write that loses nothing only if
/// the check holds across replicas.
async fn increment(s: &dyn GraphStore) {
    loop {
        let t = s.twin("counter").await.expect("read").expect("counter");
        let now = t
            .root
            .props
            .get("flowRate")
            .and_then(|p| p.reported.as_ref())
            .and_then(|r| r.value.as_f64())
            .unwrap_or(0.0);
        let op = Op::PatchReported {
            id: "counter".into(),
            patch: json!({"flowRate": now + 1.0}),
            expected_version: Some(t.version),
            source_time: None,
        };
        match s.apply(Batch::one(op), "test").await {
            Ok(_) => return,
            Err(StoreError::Batch(b)) if matches!(b.error, TwinError::Conflict { .. }) => {}
            Err(e) => panic!("increment: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_lose_no_update_and_share_one_ordered_stream() {
    let bolt = fresh_database().await;
    let open = || shared_replica(&bolt);
    let (a, b) = (open().await, open().await);
    let mut on_b = b.subscribe();
    let mut on_a = a.subscribe();
    must(&*a, vec![create("counter", PUMP)]).await;

    let (writers, per) = (6u32, 10u32);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let s = if w % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                increment(&*s).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    let total = writers * per;
    let counter = b.twin("counter").await.expect("read").expect("counter");
    let value = counter
        .root
        .props
        .get("flowRate")
        .and_then(|p| p.reported.as_ref())
        .and_then(|r| r.value.as_f64());
    assert_eq!(value, Some(f64::from(total)), "no lost update");
    assert_eq!(counter.version, 1 + u64::from(total));

    // One gap-free sequence: creation plus every increment.
    let events = a.events_after(0, 10_000).await.expect("events");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=1 + u64::from(total)).collect::<Vec<_>>());

    // Each replica's subscribers got all of it, in order.
    for (name, rx) in [("a", &mut on_a), ("b", &mut on_b)] {
        let mut got = Vec::new();
        while got.len() < seqs.len() {
            let e = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("replica {name}: only {} events arrived", got.len()))
                .expect("live events");
            got.push(e.seq);
        }
        assert_eq!(got, seqs, "replica {name}");
    }
}

/// Large batches (their twins read ahead of their transaction) from two
/// replicas at once: A's two writers take one half of the twins each, B's
/// two writers all of them. A read-ahead of one half, taken while A commits
/// the other, goes stale whenever B commits in between; each twin must
/// still end with every change counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_batches_from_two_replicas_lose_nothing() {
    let bolt = fresh_database().await;
    let (a, b) = (shared_replica(&bolt).await, shared_replica(&bolt).await);
    let ids: Vec<String> = (0..200).map(|i| format!("bulk{i:03}")).collect();
    must(&*a, ids.iter().map(|id| create(id, PUMP)).collect()).await;
    let rounds = 8;
    let halves: Vec<Vec<String>> = ids.chunks(100).map(<[String]>::to_vec).collect();
    let writers = [
        (a.clone(), halves[0].clone()),
        (a.clone(), halves[1].clone()),
        (b.clone(), ids.clone()),
        (b.clone(), ids.clone()),
    ];
    let mut tasks = Vec::new();
    for (w, (store, mine)) in writers.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for k in 0..rounds {
                let power = f64::from(u32::try_from(w * 100 + k).unwrap_or(0));
                let ops = mine
                    .iter()
                    .map(|id| crate::store_suite::reported(id, json!({"power": power})))
                    .collect();
                must(&*store, ops).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    // One writer of A and both of B changed every twin `rounds` times.
    let changes = 3 * rounds as u64;
    for id in [&ids[0], &ids[57], &ids[100], &ids[199]] {
        let t = b.twin(id).await.expect("read").expect("twin");
        assert_eq!(t.version, 1 + changes, "{id}: no lost update");
        let mut versions: Vec<u64> = a
            .twin_events(id, None, None)
            .await
            .expect("history")
            .iter()
            .filter_map(|e| match &e.change {
                twingraph::twin::Change::ReportedPatched { version, .. } => Some(*version),
                _ => None,
            })
            .collect();
        versions.sort_unstable();
        assert_eq!(
            versions,
            (2..=1 + changes).collect::<Vec<_>>(),
            "{id}: every version once"
        );
    }
}

/// Models uploaded through one replica reach the others: live (their
/// schema is recompiled and swapped in) and at startup (read back from the
/// store's `models` stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_models_reach_every_replica() {
    let bolt = fresh_database().await;
    let open = || shared_replica(&bolt);
    let limits = twingraph::graphql::schema::Limits::default();
    let a = crate::server::serve(open().await, limits).await;
    let b = crate::server::serve(open().await, limits).await;
    let smart = json!({
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:example:SmartPump;1",
        "@type": "Interface",
        "extends": "dtmi:twingraph:isa95:Pump;1",
        "contents": [{"@type": "Property", "name": "efficiency", "schema": "double", "writable": true}]
    });
    let v = crate::server::gql(
        a.addr,
        "mutation($m: [JSON!]!) { uploadModels(models: $m) { models } }",
        json!({"m": [smart]}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    // Replica b takes the upload in and serves the new type.
    let create = r#"mutation { createSmartPump(id: "sp", desired: {efficiency: 0.8}) { __typename efficiencyDesired } }"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = crate::server::gql(b.addr, create, json!({})).await;
        if v["errors"].is_null() {
            assert_eq!(
                v["data"]["createSmartPump"]["__typename"], "SmartPumpTwin",
                "{v}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replica b never took the model in: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A replica started afterwards knows it from the store.
    let c_store = open().await;
    let library = twingraph::graphql::ModelLibrary::new(crate::support::sample_sources(), None);
    let adopted = twingraph::graphql::upload::adopt_uploaded(&library, &c_store)
        .await
        .expect("adopt");
    assert!(adopted.is_some(), "the upload is read back at startup");
    assert!(
        c_store
            .models()
            .interface("dtmi:example:SmartPump;1")
            .is_some()
    );
    let t = c_store.twin("sp").await.expect("read").expect("sp");
    assert_eq!(&*t.model, "dtmi:example:SmartPump;1");
    a.shutdown().await;
    b.shutdown().await;
}

/// Two replicas uploading unaware of each other: the one whose upload
/// was overtaken is refused (`VERSION_CONFLICT`), nothing of it written;
/// once it has read the other's upload, the same model is an existing one
/// and a new one goes through. The store never holds two definitions of a
/// model, so a replica started later reads every upload back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overtaken_uploads_are_refused_not_recorded_twice() {
    use twingraph::graphql::ModelLibrary;
    use twingraph::graphql::upload::{Uploaded, adopt_uploaded, upload};
    /// Uploads an Interface `id` (a Pump with a `property`) through `lib`.
    async fn send(
        lib: &ModelLibrary,
        store: &Arc<dyn GraphStore>,
        id: &str,
        property: &str,
    ) -> Result<Uploaded, async_graphql::Error> {
        let doc = json!({
            "@context": "dtmi:dtdl:context;3", "@id": id, "@type": "Interface",
            "extends": "dtmi:twingraph:isa95:Pump;1",
            "contents": [{"@type": "Property", "name": property, "schema": "double"}]
        });
        upload(lib, store, vec![doc], "admin", None).await
    }
    let ext = |e: &async_graphql::Error, key: &str| {
        e.extensions
            .as_ref()
            .and_then(|x| x.get(key))
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    let bolt = fresh_database().await;
    let (a, b) = (shared_replica(&bolt).await, shared_replica(&bolt).await);
    let library = || ModelLibrary::new(crate::support::sample_sources(), None);
    let (lib_a, lib_b) = (library(), library());
    for (lib, store) in [(&lib_a, &a), (&lib_b, &b)] {
        assert!(adopt_uploaded(lib, store).await.expect("adopt").is_none());
    }
    send(&lib_a, &a, "dtmi:example:Twice;1", "efficiency")
        .await
        .expect("a's upload");
    let seq = a.last_seq();
    // b has not read a's upload yet: its own definition is refused.
    let e = send(&lib_b, &b, "dtmi:example:Twice;1", "head")
        .await
        .expect_err("overtaken");
    assert_eq!(ext(&e, "code"), "\"VERSION_CONFLICT\"", "{e:?}");
    assert_eq!(ext(&e, "reason"), "\"models_changed\"", "{e:?}");
    assert_eq!(a.last_seq(), seq, "nothing written");
    // Having read it, b knows the model and adds others.
    assert!(adopt_uploaded(&lib_b, &b).await.expect("adopt").is_some());
    let e = send(&lib_b, &b, "dtmi:example:Twice;1", "head")
        .await
        .expect_err("exists");
    assert_eq!(ext(&e, "reason"), "\"model_exists\"", "{e:?}");
    send(&lib_b, &b, "dtmi:example:Other;1", "head")
        .await
        .expect("b's upload after reading a's");
    // A replica started now reads both uploads back, one definition each.
    let c = shared_replica(&bolt).await;
    assert!(
        adopt_uploaded(&library(), &c)
            .await
            .expect("adopt")
            .is_some()
    );
    let models = c.models();
    let twice = models.interface("dtmi:example:Twice;1").expect("Twice");
    assert!(
        twice.content("efficiency").is_some() && twice.content("head").is_none(),
        "a's definition, the first recorded"
    );
    assert!(models.interface("dtmi:example:Other;1").is_some());
}

/// Retention on Neo4j: old events go (stream records stay), state stays,
/// history before the mark is reported as pruned, the log goes on; a
/// replica that was behind the removed range goes on after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_history_but_keeps_state() {
    use crate::store_suite::desired;
    let bolt = fresh_database().await;
    let config = StoreConfig {
        retention: Some(Duration::from_millis(300)),
        ..StoreConfig::default()
    };
    let s = replica(&bolt, config.clone()).await;
    // A replica that will be away (its line cut) while events are written
    // and removed.
    let proxy = crate::bolt::Proxy::start(crate::bolt::bolt_addr(&bolt.uri)).await;
    let away = {
        let mut b = bolt.clone();
        b.uri = format!("bolt://{}", proxy.addr);
        b.poll = Duration::from_millis(20);
        b.timeout = Duration::from_secs(3);
        BoltStore::connect(b, sample_models(), config.clone())
            .await
            .expect("away replica")
    };
    let mut away_live = away.subscribe();
    proxy.cut();
    let record = Op::Record {
        change: Box::new(twingraph::twin::Change::Record(
            twingraph::records::Record::ConfigurationCreated {
                configuration: twingraph::rollout::config::ConfigurationSpec {
                    name: "kept".into(),
                    target: PUMP.into(),
                    priority: 0,
                    description: None,
                },
            },
        )),
    };
    must(&s, vec![record]).await;
    must(&s, vec![create("p", PUMP)]).await;
    for v in 0..5 {
        must(
            &s,
            vec![desired("p", json!({"flowSetpoint": f64::from(v)}))],
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let last = must(&s, vec![desired("p", json!({"flowSetpoint": 7.0}))]).await;
    assert_eq!(last[0].seq, 8);
    let removed = s.prune_history().await.expect("prune");
    assert_eq!(removed, 6, "events 2..=7 are older than the horizon");
    let kept = s.events_after(0, 100).await.expect("events");
    assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 8]);
    let stream = s.stream_events("rollouts", 0, 10).await.expect("stream");
    assert_eq!(stream.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
    let p = s.twin("p").await.expect("read").expect("exists");
    assert_eq!(p.version, 7, "state is untouched");
    let e = s
        .twin_as_of("p", twingraph::store::At::Seq(3))
        .await
        .expect_err("pruned");
    assert_eq!(e.code().reason(), "history_pruned");
    let e = s
        .twin_as_of("p", twingraph::store::At::Time(1))
        .await
        .expect_err("a time before the oldest event kept");
    assert_eq!(e.code().reason(), "history_pruned");
    let next = must(&s, vec![desired("p", json!({"flowSetpoint": 9.0}))]).await;
    assert_eq!(next[0].seq, 9, "the log goes on");
    // The replica that was away comes back behind the removed range: it
    // delivers what is left (the stream record, then 8 and 9) and goes on.
    proxy.restore();
    let mut seen = Vec::new();
    while seen.last() != Some(&9) {
        let e = tokio::time::timeout(Duration::from_secs(15), away_live.recv())
            .await
            .expect("the replica that was away goes on")
            .expect("event");
        seen.push(e.seq);
    }
    assert_eq!(seen, vec![1, 8, 9]);
}
