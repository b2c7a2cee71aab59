//! The embedded store's durability: reopening, format versions, corrupt
//! files, and crash safety under SIGKILL.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable};
use serde_json::json;
use twingraph::store::{GraphStore, StoreConfig, StoreError, embedded};
use twingraph::twin::{Event, Graph, GraphConfig};

use crate::store_conformance::fresh_dir;
use crate::store_suite::{PUMP, create, desired, must, rel};
use crate::support::sample_models;

fn open(dir: &Path) -> Result<twingraph::store::Store, StoreError> {
    embedded::open(dir, sample_models(), StoreConfig::default())
}

#[tokio::test]
async fn state_and_history_survive_reopening() {
    let dir = fresh_dir();
    {
        let s = open(&dir).expect("open");
        must(
            &s,
            vec![create("p", PUMP), create("q", PUMP), rel("p", "feeds", "q")],
        )
        .await;
        must(&s, vec![desired("p", json!({"flowSetpoint": 7.0}))]).await;
        s.close();
    }
    let s = open(&dir).expect("reopen");
    assert_eq!(s.last_seq(), 4);
    let p = s.twin("p").await.expect("read").expect("p survives");
    assert_eq!(p.version, 2);
    assert_eq!(
        s.relationships("p", Default::default(), None)
            .await
            .expect("rels")
            .len(),
        1
    );
    let evs = must(&s, vec![desired("q", json!({"flowSetpoint": 1.0}))]).await;
    assert_eq!(evs[0].seq, 5, "the sequence continues without a gap");
    assert_eq!(
        s.twin_events("p", None, None).await.expect("history").len(),
        3
    );
}

/// Closing while a checkpoint is half written writes the rest of it and
/// everything after it; the reopened store has every change.
#[tokio::test]
async fn closing_in_the_middle_of_a_checkpoint_finishes_it() {
    let dir = fresh_dir();
    // 8 changed rows start a checkpoint, written a row per commit: after
    // 8 creations and 4 more commits it is half written.
    let config = || StoreConfig {
        checkpoint_rows: 8,
        checkpoint_chunk: 1,
        ..StoreConfig::default()
    };
    {
        let s = embedded::open(&dir, sample_models(), config()).expect("open");
        for i in 0..8 {
            must(&s, vec![create(&format!("p{i}"), PUMP)]).await;
        }
        for i in 0..4 {
            must(
                &s,
                vec![desired(
                    &format!("p{i}"),
                    json!({"flowSetpoint": f64::from(i)}),
                )],
            )
            .await;
        }
        s.close();
    }
    let s = embedded::open(&dir, sample_models(), config()).expect("reopen");
    for i in 0..8 {
        let p = s
            .twin(&format!("p{i}"))
            .await
            .expect("read")
            .expect("there");
        assert_eq!(p.version, if i < 4 { 2 } else { 1 }, "p{i}");
    }
    assert_eq!(s.last_seq(), 12);
}

/// A store of format 1 (one file; state rows of plain JSON, before rows
/// carried the event they reflect; events of plain JSON, per-twin history
/// in the `twin_events` index, a row per relationship) opens as it is, its
/// state moved into the state file, keeps its history, and is marked
/// format 6 from then on (older builds must refuse the rows it now writes).
#[tokio::test]
async fn a_format_1_store_opens_keeps_its_history_and_is_marked_format_6() {
    let dir = fresh_dir();
    // The twins as format 1 kept them: their JSON.
    let mut json_rows = std::collections::HashMap::new();
    let relationships;
    {
        let s = open(&dir).expect("create");
        must(
            &s,
            vec![create("p", PUMP), create("q", PUMP), rel("p", "feeds", "q")],
        )
        .await;
        must(&s, vec![desired("p", json!({"flowSetpoint": 3.0}))]).await;
        for id in ["p", "q"] {
            let t = s.twin(id).await.expect("read").expect("twin");
            json_rows.insert(id.to_owned(), serde_json::to_vec(&*t).expect("json"));
        }
        relationships = s
            .relationships("p", Default::default(), None)
            .await
            .expect("rels");
        s.close();
    }
    let meta = redb::TableDefinition::<&str, u64>::new("meta");
    let twins = redb::TableDefinition::<&str, &[u8]>::new("twins");
    let rels = redb::TableDefinition::<(&str, &str), &[u8]>::new("relationships");
    let events = redb::TableDefinition::<u64, &[u8]>::new("events");
    let heads = redb::TableDefinition::<&str, u64>::new("heads");
    let index = redb::TableDefinition::<(&str, u64), ()>::new("twin_events");
    // Format 1 kept its state in the log's file: take it from the state file.
    let (twin_rows, mark): (Vec<(String, Vec<u8>)>, u64) = {
        let db = redb::Database::open(dir.join("state.redb")).expect("open state");
        let read = db.begin_read().expect("read");
        let t = read.open_table(twins).expect("twins");
        let twin_rows = t
            .iter()
            .expect("iter")
            .map(|r| {
                let (k, v) = r.expect("row");
                (k.value().to_owned(), v.value().to_vec())
            })
            .collect();
        let mark = read
            .open_table(meta)
            .expect("meta")
            .get("checkpoint")
            .expect("get")
            .map_or(0, |v| v.value());
        (twin_rows, mark)
    };
    std::fs::remove_file(dir.join("state.redb")).expect("remove the state file");
    {
        // Write the rows into the log's file as format 1 wrote them.
        let db = redb::Database::open(dir.join("twingraph.redb")).expect("open raw");
        let txn = db.begin_write().expect("write");
        {
            let mut t = txn.open_table(twins).expect("twins");
            assert_eq!(twin_rows.len(), 2);
            for (k, v) in twin_rows {
                assert_eq!(v[0], 3, "twin rows are binary (start with 3)");
                t.insert(k.as_str(), json_rows[&k].as_slice())
                    .expect("insert");
            }
            let mut r = txn.open_table(rels).expect("rels");
            assert_eq!(relationships.len(), 1);
            for rel in &relationships {
                r.insert(
                    (rel.source.as_str(), rel.id.as_str()),
                    serde_json::to_vec(rel).expect("json").as_slice(),
                )
                .expect("insert");
            }
            // Events: the JSON alone, their twins in the index.
            let mut e = txn.open_table(events).expect("events");
            let rows: Vec<(u64, Vec<u8>)> = e
                .iter()
                .expect("iter")
                .map(|r| {
                    let (k, v) = r.expect("row");
                    (k.value(), v.value().to_vec())
                })
                .collect();
            let mut idx = txn.open_table(index).expect("index");
            for (seq, v) in rows {
                assert_eq!(v[0], 1, "event rows start with 1");
                let json = &v[2 + 8 * usize::from(v[1])..];
                let event: Event = serde_json::from_slice(json).expect("event");
                for t in event.change.twins() {
                    idx.insert((t, seq), ()).expect("index");
                }
                e.insert(seq, json).expect("insert");
            }
            let mut m = txn.open_table(meta).expect("meta");
            m.insert("checkpoint", mark).expect("mark");
            m.insert("format", 1).expect("format");
            m.remove("links_from").expect("links_from");
        }
        txn.commit().expect("commit");
    }
    {
        let s = open(&dir).expect("a format 1 store opens");
        let p = s.twin("p").await.expect("read").expect("p");
        assert_eq!(p.version, 2);
        assert_eq!(
            s.relationships("p", Default::default(), None)
                .await
                .expect("rels")
                .len(),
            1
        );
        // History continues across the change of format.
        must(&s, vec![desired("p", json!({"flowSetpoint": 4.0}))]).await;
        let history = s.twin_events("p", None, None).await.expect("history");
        let seqs: Vec<u64> = history.iter().map(|e| e.seq).collect();
        assert_eq!(seqs.len(), 4, "created, related, set, set again: {seqs:?}");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        s.close();
    }
    {
        let s = open(&dir).expect("reopens");
        assert_eq!(
            s.twin_events("p", None, None).await.expect("history").len(),
            4
        );
        assert_eq!(
            s.twin_events("q", None, None).await.expect("history").len(),
            2
        );
        s.close();
    }
    let db = redb::Database::open(dir.join("twingraph.redb")).expect("open raw");
    let read = db.begin_read().expect("read");
    let format = read
        .open_table(meta)
        .expect("meta")
        .get("format")
        .expect("get")
        .map(|v| v.value());
    assert_eq!(format, Some(6));
    // The log keeps no state rows; the state file has them, and the heads.
    assert!(read.open_table(twins).is_err(), "state left the log");
    assert!(read.open_table(rels).is_err(), "state left the log");
    let state = redb::Database::open(dir.join("state.redb")).expect("open state");
    let read = state.begin_read().expect("read");
    assert!(
        read.open_table(rels).is_err(),
        "a row per relationship is replaced by rows of sources"
    );
    let by_source = redb::TableDefinition::<(&str, u32), &[u8]>::new("relationship_rows");
    assert_eq!(
        redb::ReadableTableMetadata::len(&read.open_table(by_source).expect("rows")).expect("len"),
        1
    );
    assert_eq!(
        redb::ReadableTableMetadata::len(&read.open_table(twins).expect("twins")).expect("len"),
        2
    );
    assert!(
        read.open_table(heads)
            .expect("heads")
            .get("p")
            .expect("get")
            .is_some(),
        "the head of p, written since"
    );
}

/// A twin's history is the chain of its events (each links to the twin's
/// previous one): it spans deletion and re-creation, self-relationships,
/// restarts, and a start that has to rebuild every head from the log (a
/// crash before any checkpoint, made here by removing the mark and heads).
#[tokio::test]
async fn twin_history_follows_links_across_deletion_and_restart() {
    let dir = fresh_dir();
    let expected: Vec<u64>;
    {
        let s = open(&dir).expect("create");
        must(&s, vec![create("p", PUMP), create("q", PUMP)]).await;
        must(&s, vec![rel("p", "feeds", "p"), rel("p", "feeds", "q")]).await;
        must(&s, vec![desired("q", json!({"flowSetpoint": 1.0}))]).await;
        let rels = s
            .relationships("p", Default::default(), None)
            .await
            .expect("rels");
        let deletes = rels
            .iter()
            .map(|r| twingraph::twin::Op::DeleteRelationship {
                source: r.source.clone(),
                id: r.id.clone(),
                expected_version: None,
            })
            .collect();
        must(&s, deletes).await;
        must(
            &s,
            vec![twingraph::twin::Op::DeleteTwin {
                id: "p".into(),
                expected_version: None,
            }],
        )
        .await;
        must(&s, vec![create("p", PUMP)]).await;
        must(&s, vec![desired("p", json!({"flowSetpoint": 2.0}))]).await;
        let all = s.events_after(0, 100).await.expect("events");
        expected = all
            .iter()
            .filter(|e| e.change.twins().contains(&"p"))
            .map(|e| e.seq)
            .collect();
        assert_eq!(
            expected.len(),
            8,
            "2 creates, 2 relationships, 2 deletions of them, a deletion, a set"
        );
        let seqs: Vec<u64> = s
            .twin_events("p", None, None)
            .await
            .expect("history")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, expected, "before a restart");
        s.close();
    }
    async fn history(s: &twingraph::store::Store) -> Vec<u64> {
        s.twin_events("p", None, None)
            .await
            .expect("history")
            .iter()
            .map(|e| e.seq)
            .collect()
    }
    let mut expected = expected;
    {
        let s = open(&dir).expect("reopen");
        assert_eq!(history(&s).await, expected, "after a restart");
        // A write after the restart links to the head the table kept.
        let evs = must(&s, vec![desired("p", json!({"flowSetpoint": 3.0}))]).await;
        expected.push(evs[0].seq);
        assert_eq!(history(&s).await, expected, "a write after a restart");
        s.close();
    }
    {
        let db = redb::Database::open(dir.join("state.redb")).expect("open raw");
        let txn = db.begin_write().expect("write");
        {
            let mut m = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .expect("meta");
            m.remove("checkpoint").expect("mark");
            let mut h = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("heads"))
                .expect("heads");
            h.retain(|_, _| false).expect("clear");
        }
        txn.commit().expect("commit");
    }
    let s = open(&dir).expect("reopen after the heads are gone");
    assert_eq!(history(&s).await, expected, "heads rebuilt from the log");
    assert_eq!(
        s.twin_events("q", None, None).await.expect("history").len(),
        4,
        "created, related, set, unrelated"
    );
    s.close();
}

/// A relationship row as formats 3–5 wrote it, one per relationship.
fn format_5_rel_row(seq: u64, r: &twingraph::twin::Relationship) -> Vec<u8> {
    let mut out = vec![2];
    out.extend_from_slice(&seq.to_be_bytes());
    for s in [&r.name, &r.target] {
        out.extend_from_slice(&u32::try_from(s.len()).expect("short").to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&r.version.to_be_bytes());
    out.extend_from_slice(&r.created_at.to_be_bytes());
    out.extend_from_slice(&r.updated_at.to_be_bytes());
    if !r.properties.is_empty() {
        out.extend_from_slice(&serde_json::to_vec(&r.properties).expect("json"));
    }
    out
}

/// The outgoing relationships of `id`, by id.
async fn rels_of(s: &twingraph::store::Store, id: &str) -> Vec<twingraph::twin::Relationship> {
    let mut r = s
        .relationships(id, Default::default(), None)
        .await
        .expect("relationships");
    r.sort_by(|a, b| a.id.cmp(&b.id));
    r
}

/// A store of format 5 (a row per relationship) opens with every
/// relationship as it was, then keeps them as rows of sources (a source
/// with more than a row holds in several); rows of relationships deleted
/// since go with them.
#[tokio::test]
async fn a_format_5_store_keeps_its_relationships_as_rows_of_sources() {
    use twingraph::twin::Op;
    let dir = fresh_dir();
    let (hub, other);
    {
        let s = open(&dir).expect("create");
        let mut ops = vec![create("h", PUMP), create("ünï", PUMP)];
        ops.extend((0..300).map(|i| create(&format!("t{i:03}"), PUMP)));
        must(&s, ops).await;
        let mut ops: Vec<Op> = (0..299)
            .map(|i| rel("h", "feeds", &format!("t{i:03}")))
            .collect();
        ops.push(Op::CreateRelationship {
            source: "h".into(),
            id: Some("custom id".into()),
            name: "feeds".into(),
            target: "t299".into(),
            properties: Some(json!({"medium": "water"})),
        });
        ops.push(rel("ünï", "feeds", "h"));
        must(&s, ops).await;
        hub = rels_of(&s, "h").await;
        other = rels_of(&s, "ünï").await;
        assert_eq!(hub.len(), 300);
        s.close();
    }
    let meta = redb::TableDefinition::<&str, u64>::new("meta");
    let old = redb::TableDefinition::<(&str, &str), &[u8]>::new("relationships");
    let rows = redb::TableDefinition::<(&str, u32), &[u8]>::new("relationship_rows");
    let row_keys = |dir: &Path| -> Vec<(String, u32)> {
        let db = redb::Database::open(dir.join("state.redb")).expect("open state");
        let read = db.begin_read().expect("read");
        assert!(read.open_table(old).is_err(), "no row per relationship");
        let t = read.open_table(rows).expect("rows");
        t.iter()
            .expect("iter")
            .map(|r| {
                let (k, _) = r.expect("row");
                (k.value().0.to_owned(), k.value().1)
            })
            .collect()
    };
    assert_eq!(
        row_keys(&dir),
        [("h".into(), 0), ("h".into(), 1), ("ünï".into(), 0)],
        "300 relationships of h in two rows"
    );
    // Make it the store format 5 wrote: a row per relationship.
    {
        let db = redb::Database::open(dir.join("state.redb")).expect("open state");
        let txn = db.begin_write().expect("write");
        {
            let mark = txn
                .open_table(meta)
                .expect("meta")
                .get("checkpoint")
                .expect("get")
                .expect("a mark")
                .value();
            let mut t = txn.open_table(old).expect("old");
            for r in hub.iter().chain(&other) {
                t.insert(
                    (r.source.as_str(), r.id.as_str()),
                    format_5_rel_row(mark, r).as_slice(),
                )
                .expect("insert");
            }
            txn.open_table(meta)
                .expect("meta")
                .remove("relationships")
                .expect("remove");
        }
        txn.delete_table(rows).expect("drop rows");
        txn.commit().expect("commit");
        let db = redb::Database::open(dir.join("twingraph.redb")).expect("open log");
        let txn = db.begin_write().expect("write");
        txn.open_table(meta)
            .expect("meta")
            .insert("format", 5)
            .expect("format");
        txn.commit().expect("commit");
    }
    {
        let s = open(&dir).expect("a format 5 store opens");
        assert_eq!(rels_of(&s, "h").await, hub);
        assert_eq!(rels_of(&s, "ünï").await, other);
        let incoming = s
            .relationships("t299", Default::default(), None)
            .await
            .expect("incoming");
        assert!(incoming.is_empty(), "t299 has no outgoing relationships");
        s.close();
    }
    assert_eq!(
        row_keys(&dir),
        [("h".into(), 0), ("h".into(), 1), ("ünï".into(), 0)],
        "rewritten as rows of sources at startup"
    );
    {
        let db = redb::Database::open(dir.join("twingraph.redb")).expect("open log");
        let read = db.begin_read().expect("read");
        let format = read
            .open_table(meta)
            .expect("meta")
            .get("format")
            .expect("get")
            .map(|v| v.value());
        assert_eq!(format, Some(6));
    }
    // Deleting 100 of h's relationships leaves one row for the rest.
    {
        let s = open(&dir).expect("reopen");
        let ops = hub[..100]
            .iter()
            .map(|r| Op::DeleteRelationship {
                source: "h".into(),
                id: r.id.clone(),
                expected_version: None,
            })
            .collect();
        must(&s, ops).await;
        s.close();
    }
    assert_eq!(
        row_keys(&dir),
        [("h".into(), 0), ("ünï".into(), 0)],
        "the second row of h is gone"
    );
    let s = open(&dir).expect("reopen");
    assert_eq!(rels_of(&s, "h").await, hub[100..].to_vec());
    assert_eq!(rels_of(&s, "ünï").await, other);
    s.close();
}

#[tokio::test]
async fn a_newer_data_format_is_refused_and_left_alone() {
    let dir = fresh_dir();
    {
        let s = open(&dir).expect("create");
        must(&s, vec![create("p", PUMP)]).await;
        s.close();
    }
    let meta = redb::TableDefinition::<&str, u64>::new("meta");
    let twins = redb::TableDefinition::<&str, &[u8]>::new("twins");
    {
        let db = redb::Database::open(dir.join("twingraph.redb")).expect("open raw");
        let txn = db.begin_write().expect("txn");
        txn.open_table(meta)
            .expect("meta")
            .insert("format", 99)
            .expect("write");
        txn.commit().expect("commit");
    }
    let e = open(&dir).expect_err("newer format");
    assert_eq!(e.code().reason(), "data_directory_unusable");
    assert!(
        e.to_string().contains("newer twingraph (data format 99)"),
        "{e}"
    );
    // Nothing was changed: the format mark and the data are as they were.
    let db = redb::Database::open(dir.join("twingraph.redb")).expect("open raw");
    let read = db.begin_read().expect("read");
    let format = read
        .open_table(meta)
        .expect("meta")
        .get("format")
        .expect("get")
        .map(|v| v.value());
    assert_eq!(format, Some(99));
    let state = redb::Database::open(dir.join("state.redb")).expect("open state");
    let read = state.begin_read().expect("read");
    assert!(
        read.open_table(twins)
            .expect("twins")
            .get("p")
            .expect("get")
            .is_some()
    );
}

#[tokio::test]
async fn a_corrupt_data_file_is_a_clear_error() {
    let dir = fresh_dir();
    std::fs::write(
        dir.join("twingraph.redb"),
        b"this is not a database, it is a poem",
    )
    .expect("write");
    let e = open(&dir).expect_err("corrupt");
    assert_eq!(e.code().reason(), "data_directory_unusable");
    assert!(e.to_string().contains("twingraph.redb"), "{e}");
    // A state file from a later moment than its log is refused.
    let dir = fresh_dir();
    {
        let s = open(&dir).expect("create");
        must(&s, vec![create("p", PUMP)]).await;
        s.close();
    }
    let early = std::fs::read(dir.join("twingraph.redb")).expect("copy the log");
    {
        let s = open(&dir).expect("reopen");
        must(&s, vec![create("q", PUMP)]).await;
        s.close();
    }
    std::fs::write(dir.join("twingraph.redb"), early).expect("restore the early log");
    let e = open(&dir).expect_err("state ahead of the log");
    assert_eq!(e.code().reason(), "data_directory_unusable");
    assert!(
        e.to_string()
            .contains("state.redb is as of event 2, but the log ends at event 1"),
        "{e}"
    );
    // A corrupt state file beside a sound log is named too.
    let dir = fresh_dir();
    open(&dir).expect("create").close();
    std::fs::write(dir.join("state.redb"), b"nor is this").expect("write");
    let e = open(&dir).expect_err("corrupt state");
    assert_eq!(e.code().reason(), "data_directory_unusable");
    assert!(e.to_string().contains("state.redb"), "{e}");
}

/// Kills a writer process (8 concurrent writers, group commit) with SIGKILL
/// at random moments, again and again, and checks after each kill that every
/// acknowledged batch is there whole, no batch is there in part, and state
/// equals the fold of the event log (no event without its state or back).
/// Checkpoints are small and spread thin (64 rows, 4 per commit), so kills
/// land in the middle of one: in even rounds every chunk is committed
/// durably, so some state rows are newer than the mark, the replay skips
/// the events such a row already has and must still end at the state the
/// log says (every batch also updates the twin `a.hot`, so rows change
/// across checkpoints, not only appear). In odd rounds chunks are durable
/// only every 50 ms (the store's way, faster), so a kill also loses chunks
/// committed without waiting for the disk.
#[test]
fn sigkill_never_loses_acknowledged_writes_or_half_applies_a_batch() {
    // The event a twin row is as of: binary rows (a 3, then a LEB128
    // varint), JSON rows (a 0, then 8 bytes big-endian).
    fn row_seq(v: &[u8]) -> u64 {
        match v {
            [3, rest @ ..] => {
                let mut n = 0u64;
                for (i, b) in rest.iter().take(10).enumerate() {
                    n |= u64::from(b & 0x7f) << (7 * i);
                    if *b < 0x80 {
                        break;
                    }
                }
                n
            }
            [0, rest @ ..] if rest.len() >= 8 => {
                u64::from_be_bytes(rest[..8].try_into().expect("8 bytes"))
            }
            _ => 0,
        }
    }
    let dir = fresh_dir();
    let data = dir.join("data");
    // Every batch acknowledged so far, in any round.
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("dtdl");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut acked_total = 0;
    let mut half_written = 0;
    for round in 0..6u64 {
        // A file per round: a kill may cut the last line short, and the
        // next round must not append to that fragment.
        let acked_file = dir.join(format!("acked-{round}.txt"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_twingraph"))
            .args([
                "write-load",
                "--writers",
                "8",
                "--prefix",
                &format!("r{round}"),
                "--checkpoint-rows",
                "64",
                "--checkpoint-chunk",
                "4",
                "--checkpoint-sync-ms",
                if round % 2 == 0 { "0" } else { "50" },
            ])
            .arg("--data")
            .arg(&data)
            .arg("--models")
            .arg(&models)
            .arg("--acked")
            .arg(&acked_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start writer");
        // Let it write for a while; vary the moment of the kill.
        std::thread::sleep(Duration::from_millis(300 + (round * 137) % 400));
        child.kill().expect("SIGKILL the writer");
        let status = child.wait().expect("reap");
        assert!(!status.success(), "the writer was killed, not finished");

        // Whole lines only: a line the kill cut short was never finished.
        acked.extend(
            std::fs::read_to_string(&acked_file)
                .unwrap_or_default()
                .split_inclusive('\n')
                .filter_map(|l| l.strip_suffix('\n'))
                .map(str::to_owned),
        );
        // Before reopening: was a checkpoint half written?
        {
            let db = redb::Database::open(data.join("state.redb")).expect("open raw");
            let read = db.begin_read().expect("read");
            let mark = read
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .expect("meta")
                .get("checkpoint")
                .expect("get")
                .map_or(0, |v| v.value());
            let twins = read
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("twins"))
                .expect("twins");
            let newer = twins.iter().expect("iter").any(|row| {
                let (_, v) = row.expect("row");
                row_seq(v.value()) > mark
            });
            if newer {
                half_written += 1;
            }
        }
        rt.block_on(async {
            let s = open(&data).expect("reopen after SIGKILL");
            // Every acknowledged batch is there, whole.
            for id in &acked {
                let a = s.twin(&format!("a.{id}")).await.expect("read");
                let a = a.unwrap_or_else(|| panic!("acknowledged batch {id} lost"));
                assert_eq!(a.version, 2, "batch {id} applied whole");
                assert!(
                    s.twin(&format!("b.{id}")).await.expect("read").is_some(),
                    "{id}"
                );
                assert!(
                    s.relationship(&format!("a.{id}"), "flow")
                        .await
                        .expect("read")
                        .is_some(),
                    "{id}"
                );
            }
            // No batch is there in part, acknowledged or not.
            let all = s
                .twins(&twingraph::store::TwinQuery {
                    limit: usize::MAX - 1,
                    ..Default::default()
                })
                .await
                .expect("list");
            for t in &all.items {
                let id = &t.id[2..];
                let partner = if t.id.starts_with("a.") {
                    format!("b.{id}")
                } else {
                    format!("a.{id}")
                };
                assert!(
                    s.twin(&partner).await.expect("read").is_some(),
                    "half batch: {} without {partner}",
                    t.id
                );
            }
            // State is exactly the fold of the event log, which has no gaps.
            let events: Vec<Event> = s.events_after(0, usize::MAX).await.expect("events");
            assert_eq!(events.len() as u64, s.last_seq());
            assert!(
                events
                    .iter()
                    .enumerate()
                    .all(|(i, e)| e.seq == i as u64 + 1),
                "gap-free log"
            );
            let mut folded = Graph::new(GraphConfig::default());
            for e in &events {
                folded.apply(e);
            }
            assert_eq!(folded.twin_count(), all.items.len());
            for t in &all.items {
                assert_eq!(
                    folded.twin(&t.id),
                    Some(t),
                    "state of {} equals its events",
                    t.id
                );
            }
            s.close();
        });
        acked_total = acked.len();
    }
    assert!(
        acked_total > 50,
        "the writer made progress ({acked_total} acknowledged batches)"
    );
    assert!(
        half_written > 0,
        "no kill landed in the middle of a checkpoint: the test did not test recovery from one"
    );
}

#[tokio::test]
async fn retention_prunes_old_history_but_keeps_state() {
    let dir = fresh_dir();
    let config = StoreConfig {
        retention: Some(Duration::from_millis(1)),
        ..StoreConfig::default()
    };
    {
        let s = embedded::open(&dir, sample_models(), config.clone()).expect("open");
        // A configuration record: streams are never pruned.
        let record = twingraph::twin::Op::Record {
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
        s.close(); // checkpoint: the state tables are current
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let s = embedded::open(&dir, sample_models(), config).expect("reopen");
    let removed = s.prune_history().expect("prune");
    assert_eq!(
        removed, 6,
        "all but the last event are older than the horizon"
    );
    let kept = s.events_after(0, 100).await.expect("events");
    assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![7]);
    let stream = s.stream_events("rollouts", 0, 10).await.expect("stream");
    assert_eq!(stream.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
    // State is untouched and history before the horizon is reported as pruned.
    let p = s.twin("p").await.expect("read").expect("exists");
    assert_eq!(p.version, 6);
    let e = s
        .twin_as_of("p", twingraph::store::At::Seq(2))
        .await
        .expect_err("pruned");
    assert_eq!(e.code().reason(), "history_pruned");
    let e = s
        .twin_as_of("p", twingraph::store::At::Time(1))
        .await
        .expect_err("a time before the oldest event kept");
    assert_eq!(e.code().reason(), "history_pruned");
    // Lists and counts as of then say so too (the log that would lead back
    // there is gone); as of the last event kept they answer.
    let pumps = twingraph::store::TwinQuery {
        model: Some(PUMP.to_owned()),
        limit: 10,
        ..twingraph::store::TwinQuery::default()
    };
    let e = s
        .twins_at(&pumps, twingraph::store::At::Seq(2))
        .await
        .expect_err("pruned");
    assert_eq!(e.code().reason(), "history_pruned");
    let e = s
        .aggregate(&twingraph::store::AggregateQuery {
            model: Some(PUMP.to_owned()),
            at: Some(twingraph::store::At::Seq(3)),
            ..twingraph::store::AggregateQuery::default()
        })
        .await
        .expect_err("pruned");
    assert_eq!(e.code().reason(), "history_pruned");
    let then = s
        .twins_at(&pumps, twingraph::store::At::Seq(7))
        .await
        .expect("as of the last event kept");
    assert_eq!(then.items.len(), 1);
    // The log goes on from where it was.
    let next = must(&s, vec![desired("p", json!({"flowSetpoint": 9.0}))]).await;
    assert_eq!(next[0].seq, 8);
}
