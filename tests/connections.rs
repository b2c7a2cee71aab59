//! Every connection follows the Relay cursor connections specification
//! (the types are read off the schema, not listed here), pages the same
//! list forward and backward with exact `pageInfo`, and every twin is a
//! `Node` that `node(id:)` refetches.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use twingraph::store::{GraphStore, Store, StoreConfig};

use crate::server::{code, gql, start_on};
use crate::support::{sample_models, three_levels};

fn ok(v: &Value) -> &Value {
    assert!(v.get("errors").is_none(), "{v}");
    &v["data"]
}

const TYPES: &str = r#"
fragment R on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
{ __schema { types { name kind
    fields { name args { name type { ...R } } type { ...R } }
    interfaces { name } } } }"#;

/// The named type under any wrappers.
fn named(t: &Value) -> &str {
    match t["name"].as_str() {
        Some(n) => n,
        None => named(&t["ofType"]),
    }
}

/// The type as written in SDL (`[TwinEdge!]!`).
fn written(t: &Value) -> String {
    match t["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", written(&t["ofType"])),
        Some("LIST") => format!("[{}]", written(&t["ofType"])),
        _ => t["name"].as_str().unwrap_or_default().to_owned(),
    }
}

/// The shape the specification asks of every type named `*Connection`,
/// of its edges, of `PageInfo`, and of the arguments of every field that
/// returns a connection; and every twin type is a `Node`.
#[tokio::test]
async fn every_connection_has_the_relay_shape() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    let s = start_on(store).await;
    let v = gql(s.addr, TYPES, json!({})).await;
    let types = ok(&v)["__schema"]["types"]
        .as_array()
        .expect("types")
        .clone();
    let by_name = |n: &str| types.iter().find(|t| t["name"] == n).cloned();
    let fields = |t: &Value| -> Vec<(String, String)> {
        t["fields"]
            .as_array()
            .map(|f| {
                f.iter()
                    .map(|f| {
                        (
                            f["name"].as_str().unwrap_or("").to_owned(),
                            written(&f["type"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let page_info = by_name("PageInfo").expect("PageInfo");
    for (f, ty) in [
        ("hasNextPage", "Boolean!"),
        ("hasPreviousPage", "Boolean!"),
        ("startCursor", "String"),
        ("endCursor", "String"),
    ] {
        assert!(
            fields(&page_info).contains(&(f.to_owned(), ty.to_owned())),
            "PageInfo.{f}: {ty}"
        );
    }
    let connections: Vec<&Value> = types
        .iter()
        .filter(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("Connection"))
        })
        .collect();
    assert!(connections.len() > 20, "{}", connections.len());
    for c in &connections {
        let name = c["name"].as_str().expect("name");
        let f = fields(c);
        let edges = f
            .iter()
            .find(|(n, _)| n == "edges")
            .unwrap_or_else(|| panic!("{name}.edges"));
        let edge = edges
            .1
            .trim_start_matches('[')
            .trim_end_matches(['!', ']'])
            .to_owned();
        assert!(
            edges.1 == format!("[{edge}!]!"),
            "{name}.edges: {}",
            edges.1
        );
        let edge_type = by_name(&edge).unwrap_or_else(|| panic!("{edge}"));
        let ef = fields(&edge_type);
        assert!(
            ef.contains(&("cursor".into(), "String!".into())),
            "{edge}.cursor"
        );
        let node = ef
            .iter()
            .find(|(n, _)| n == "node")
            .unwrap_or_else(|| panic!("{edge}.node"));
        assert!(node.1.ends_with('!'), "{edge}.node: {}", node.1);
        assert!(
            f.contains(&("nodes".into(), format!("[{}]!", node.1))),
            "{name}.nodes is the list of the edges' nodes"
        );
        assert!(
            f.contains(&("pageInfo".into(), "PageInfo!".into())),
            "{name}.pageInfo"
        );
    }
    // Every field returning a connection pages both ways.
    let mut paged = 0;
    for t in &types {
        for f in t["fields"].as_array().into_iter().flatten() {
            if !named(&f["type"]).ends_with("Connection") {
                continue;
            }
            let args: Vec<(String, String)> = f["args"]
                .as_array()
                .expect("args")
                .iter()
                .map(|a| {
                    (
                        a["name"].as_str().unwrap_or("").to_owned(),
                        written(&a["type"]),
                    )
                })
                .collect();
            for (a, ty) in [
                ("first", "Int"),
                ("after", "String"),
                ("last", "Int"),
                ("before", "String"),
            ] {
                assert!(
                    args.contains(&(a.to_owned(), ty.to_owned())),
                    "{}.{}({a}: {ty})",
                    t["name"],
                    f["name"]
                );
            }
            paged += 1;
        }
    }
    assert!(paged > 40, "{paged}");
    // Twins are nodes, all the way down the typed schema.
    for t in &types {
        let is_twin = t["interfaces"]
            .as_array()
            .is_some_and(|i| i.iter().any(|x| x["name"] == "Twin"));
        if is_twin {
            assert!(
                t["interfaces"]
                    .as_array()
                    .expect("interfaces")
                    .iter()
                    .any(|x| x["name"] == "Node"),
                "{} implements Node",
                t["name"]
            );
        }
    }
    s.shutdown().await;
}

/// What one page shows: the nodes' ids (or sequence numbers), its cursors
/// and flags.
struct Seen {
    ids: Vec<String>,
    cursors: Vec<String>,
    next: bool,
    previous: bool,
    start: Value,
    end: Value,
    total: Value,
}

/// `query` with the page arguments `page` spliced in at `PAGE`, and the
/// connection at `path` in the answer.
async fn page(addr: SocketAddr, query: &str, path: &[&str], page: &str, id: &str) -> Seen {
    let q = query.replace("PAGE", page);
    let v = gql(addr, &q, json!({})).await;
    let mut c = ok(&v);
    for p in path {
        c = &c[*p];
    }
    let edges = c["edges"].as_array().unwrap_or_else(|| panic!("{q}: {v}"));
    let key = |x: &Value| match &x[id] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let ids: Vec<String> = edges.iter().map(|e| key(&e["node"])).collect();
    let nodes: Vec<String> = c["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(key)
        .collect();
    assert_eq!(ids, nodes, "nodes are the edges' nodes: {q}");
    let cursors: Vec<String> = edges
        .iter()
        .map(|e| e["cursor"].as_str().expect("cursor").to_owned())
        .collect();
    let info = &c["pageInfo"];
    assert_eq!(
        info["startCursor"],
        cursors.first().map_or(Value::Null, |c| json!(c)),
        "{q}"
    );
    assert_eq!(
        info["endCursor"],
        cursors.last().map_or(Value::Null, |c| json!(c)),
        "{q}"
    );
    Seen {
        ids,
        cursors,
        next: info["hasNextPage"] == true,
        previous: info["hasPreviousPage"] == true,
        start: info["startCursor"].clone(),
        end: info["endCursor"].clone(),
        total: c.get("totalCount").cloned().unwrap_or(Value::Null),
    }
}

/// Walks the whole list forward in pages of `k`, then backward, checking
/// that both see the same items in the same order, that every flag is
/// exact, and that a page in the middle has both flags set; answers the
/// list.
async fn walk(addr: SocketAddr, query: &str, path: &[&str], id: &str, k: usize) -> Vec<String> {
    let all = page(addr, query, path, "first: 1000", id).await;
    assert!(!all.next && !all.previous, "{query}");
    let n = all.ids.len();
    assert!(n > 2 * k, "{query}: a list of {n} for pages of {k}");
    if !all.total.is_null() {
        assert_eq!(all.total, json!(n), "{query}: totalCount");
    }
    // Forward.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let args = match &after {
            Some(c) => format!("first: {k}, after: {}", json!(c)),
            None => format!("first: {k}"),
        };
        let p = page(addr, query, path, &args, id).await;
        assert_eq!(
            p.previous,
            after.is_some(),
            "{query} ({args}): hasPreviousPage"
        );
        seen.extend(p.ids.clone());
        assert_eq!(p.next, seen.len() < n, "{query} ({args}): hasNextPage");
        if !p.next {
            break;
        }
        after = p.end.as_str().map(str::to_owned);
    }
    assert_eq!(seen, all.ids, "{query}: forward");
    assert_eq!(
        page(addr, query, path, "first: 1", id).await.cursors,
        all.cursors[..1],
        "{query}: cursors do not depend on the page"
    );
    // Backward.
    let mut back: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let args = match &before {
            Some(c) => format!("last: {k}, before: {}", json!(c)),
            None => format!("last: {k}"),
        };
        let p = page(addr, query, path, &args, id).await;
        assert_eq!(p.next, before.is_some(), "{query} ({args}): hasNextPage");
        let mut ids = p.ids.clone();
        ids.append(&mut back);
        back = ids;
        assert_eq!(
            p.previous,
            back.len() < n,
            "{query} ({args}): hasPreviousPage"
        );
        if !p.previous {
            break;
        }
        before = p.start.as_str().map(str::to_owned);
    }
    assert_eq!(back, all.ids, "{query}: backward");
    // A window in the middle, from both of its ends.
    let (a, b) = (&all.cursors[k - 1], &all.cursors[2 * k + 1]);
    let window = format!("after: {}, before: {}", json!(a), json!(b));
    let fwd = page(addr, query, path, &format!("first: 100, {window}"), id).await;
    let bwd = page(addr, query, path, &format!("last: 100, {window}"), id).await;
    assert_eq!(fwd.ids, all.ids[k..=2 * k]);
    assert_eq!(bwd.ids, fwd.ids);
    assert!(
        fwd.next && fwd.previous && bwd.next && bwd.previous,
        "{query}: {window}"
    );
    // `first` and `last` together: the last of the first.
    let both = page(addr, query, path, "first: 5, last: 2", id).await;
    assert_eq!(both.ids, all.ids[3..5], "{query}: first 5, last 2");
    assert!(both.previous && both.next);
    all.ids
}

/// Every kind of connection, read from the store or from a list at hand,
/// pages forward and backward alike.
#[tokio::test]
async fn every_connection_pages_forward_and_backward_alike() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    store.apply(three_levels(), "test").await.expect("plant");
    for i in 0..12 {
        store
            .apply(
                twingraph::twin::Batch::one(
                    serde_json::from_value(
                        json!({"op": "patchReported", "id": "small-0", "patch": {"flowRate": i}}),
                    )
                    .expect("op"),
                ),
                "test",
            )
            .await
            .expect("report");
    }
    let s = start_on(store).await;
    let a = s.addr;
    let twins = walk(a, "{ twins(model: \"dtmi:twingraph:isa95:Pump;1\", PAGE) { edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", &["twins"], "id", 7).await;
    assert_eq!(twins.len(), 63);
    let filtered = walk(a, "{ pumps(where: {flowRate: {lt: 30}}, PAGE) { totalCount edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", &["pumps"], "id", 5).await;
    assert!(filtered.len() < twins.len());
    walk(a, "{ pumps(PAGE) { edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", &["pumps"], "id", 10).await;
    let sorted = walk(a, "{ pumps(orderBy: [{flowRate: DESC}], PAGE) { edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", &["pumps"], "id", 10).await;
    assert_eq!(sorted[0], "large-59", "ordered by flowRate, highest first");
    let generic = walk(a, "{ twins(model: \"dtmi:twingraph:isa95:Pump;1\", orderBy: [{path: \"reported.flowRate\", direction: DESC}], PAGE) { totalCount edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", &["twins"], "id", 10).await;
    assert_eq!(generic, sorted, "the generic list orders as the typed one");
    let two_keys = walk(a, "{ pumps(orderBy: [{runState: ASC}, {flowRate: ASC}], PAGE) { edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", &["pumps"], "id", 6).await;
    assert_eq!(two_keys.len(), sorted.len());
    walk(a, "{ relationships(source: \"large\", PAGE) { totalCount edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", &["relationships"], "id", 9).await;
    walk(a, "{ workCell(id: \"large\") { contains(PAGE) { totalCount edges { cursor node { id } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }", &["workCell", "contains"], "id", 8).await;
    walk(a, "{ history(id: \"small-0\", PAGE) { totalCount edges { cursor node { seq } } nodes { seq } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", &["history"], "seq", 3).await;
    let log = walk(a, "{ events(PAGE) { edges { cursor node { seq } } nodes { seq } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }", &["events"], "seq", 40).await;
    assert_eq!(log.len(), 63 * 5 + 2 + 12, "one event per operation");
    s.shutdown().await;
}

/// `node(id:)` refetches any twin as its typed object; unknown ids are null.
#[tokio::test]
async fn node_refetches_any_twin() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    store.apply(three_levels(), "test").await.expect("plant");
    let s = start_on(store).await;
    let v = gql(
        s.addr,
        r#"{ a: node(id: "small-1") { __typename id ... on Pump { flowRate } }
             b: node(id: "large") { __typename ... on Twin { model } }
             c: node(id: "nope") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        ok(&v),
        &json!({"a": {"__typename": "PumpTwin", "id": "small-1", "flowRate": 1.0},
                "b": {"__typename": "WorkCellTwin", "model": "dtmi:twingraph:isa95:WorkCell;1"},
                "c": null})
    );
    let v = gql(s.addr, r#"{ node { id } }"#, json!({})).await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    s.shutdown().await;
}

/// Cursors that do not belong to a list are refused with a clear error,
/// and counts are bounded as for `first`.
#[tokio::test]
async fn foreign_cursors_and_oversized_pages_are_refused() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    store.apply(three_levels(), "test").await.expect("plant");
    let s = start_on(store).await;
    for q in [
        r#"{ events(after: "x") { nodes { seq } } }"#,
        r#"{ relationships(source: "large", before: "no-newline") { nodes { id } } }"#,
        r#"{ pumps(orderBy: [{flowRate: ASC}], after: "[1]") { nodes { id } } }"#,
        r#"{ pumps(orderBy: [{flowRate: ASC}], after: "[1, 2]") { nodes { id } } }"#,
        r#"{ twins(orderBy: [{path: "power"}]) { nodes { id } } }"#,
        r#"{ twins(orderBy: [{path: "reported..x"}]) { nodes { id } } }"#,
        r#"{ twins(last: 100000) { nodes { id } } }"#,
        r#"{ twins(last: -1) { nodes { id } } }"#,
    ] {
        let v = gql(s.addr, q, json!({})).await;
        assert_eq!(code(&v), "BAD_REQUEST", "{q}: {v}");
    }
    s.shutdown().await;
}

/// The sequence number has one name across the API: every type with a
/// field called `sequence` (or `lastSequence`) also has `seq` (`lastSeq`),
/// and the old name is deprecated, never removed.
#[tokio::test]
async fn the_sequence_number_is_called_seq_everywhere() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    let s = start_on(store).await;
    let v = gql(
        s.addr,
        "{ __schema { types { name fields(includeDeprecated: true) { name isDeprecated deprecationReason } } } }",
        json!({}),
    )
    .await;
    let mut old_names = 0;
    for t in ok(&v)["__schema"]["types"].as_array().expect("types") {
        let fields = t["fields"].as_array().cloned().unwrap_or_default();
        for (old, new) in [("sequence", "seq"), ("lastSequence", "lastSeq")] {
            let Some(f) = fields.iter().find(|f| f["name"] == old) else {
                continue;
            };
            old_names += 1;
            assert_eq!(f["isDeprecated"], true, "{}.{old}", t["name"]);
            assert!(
                f["deprecationReason"]
                    .as_str()
                    .is_some_and(|r| r.contains(new)),
                "{}.{old}: {f}",
                t["name"]
            );
            assert!(
                fields
                    .iter()
                    .any(|f| f["name"] == new && f["isDeprecated"] == false),
                "{} has {new}",
                t["name"]
            );
        }
    }
    assert!(old_names >= 5, "{old_names}");
    // Both names answer, with the same number.
    let v = gql(
        s.addr,
        r#"mutation { batch(operations: [{op: "createTwin", id: "b", model: "dtmi:twingraph:isa95:Pump;1"}]) { lastSeq lastSequence } }"#,
        json!({}),
    )
    .await;
    let b = &ok(&v)["batch"];
    assert!(
        b["lastSeq"].as_u64().is_some() && b["lastSeq"] == b["lastSequence"],
        "{b}"
    );
    s.shutdown().await;
}
