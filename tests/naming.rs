//! Uploaded models never take a name the schema already gives out: not a
//! type or root field of the generic API (derived from what it registers),
//! and not a type an earlier model set generated. The newcomer's name is
//! the one that gets longer, so the queries clients already have keep
//! working, across restarts too.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::server::{gql, start};

const UPLOAD: &str = r#"mutation($m: [JSON!]!) { uploadModels(models: $m) { models } }"#;

/// Every type of the schema, by name, as introspection shows it.
const INTROSPECT: &str = r#"
fragment R on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }
query { __schema { types { kind name description
    fields(includeDeprecated: true) { name description isDeprecated deprecationReason
        args { name description defaultValue type { ...R } } type { ...R } }
    inputFields { name description defaultValue type { ...R } }
    interfaces { name }
    enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
    possibleTypes { name } } } }"#;

async fn types(addr: SocketAddr) -> BTreeMap<String, Value> {
    let v = gql(addr, INTROSPECT, json!({})).await;
    assert!(v.get("errors").is_none(), "{v}");
    v["data"]["__schema"]["types"]
        .as_array()
        .expect("types")
        .iter()
        .map(|t| (t["name"].as_str().expect("name").to_owned(), t.clone()))
        .collect()
}

/// Every type of `before` is unchanged in `after`: the same definition,
/// except that root types may gain fields and interfaces implementors.
fn unchanged(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) {
    for (name, old) in before {
        let new = after
            .get(name)
            .unwrap_or_else(|| panic!("type {name} is gone"));
        if matches!(name.as_str(), "Query" | "Mutation" | "Subscription") {
            for f in old["fields"].as_array().expect("root fields") {
                assert!(
                    new["fields"].as_array().expect("root fields").contains(f),
                    "{name}.{} changed or is gone",
                    f["name"]
                );
            }
            continue;
        }
        let (mut old, mut new) = (old.clone(), new.clone());
        if old["kind"] == "INTERFACE" {
            for p in old["possibleTypes"].as_array().expect("implementors") {
                assert!(
                    new["possibleTypes"]
                        .as_array()
                        .expect("implementors")
                        .contains(p),
                    "{name} lost implementor {p}"
                );
            }
            old["possibleTypes"] = Value::Null;
            new["possibleTypes"] = Value::Null;
        }
        assert_eq!(old, new, "type {name} changed");
    }
}

fn interface(dtmi: &str, contents: Value) -> Value {
    json!({"@context": "dtmi:dtdl:context;3", "@id": dtmi, "@type": "Interface", "contents": contents})
}

/// The Query field that looks a twin of interface type `ty` up by id.
async fn lookup_field(addr: SocketAddr, ty: &str) -> String {
    let v = gql(
        addr,
        "{ __schema { queryType { fields { name args { name } type { kind name } } } } }",
        json!({}),
    )
    .await;
    v["data"]["__schema"]["queryType"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["type"]["name"] == ty && f["args"].as_array().is_some_and(|a| a.len() == 2))
        .and_then(|f| f["name"].as_str())
        .unwrap_or_else(|| panic!("no lookup field for {ty}: {v}"))
        .to_owned()
}

/// Interfaces named after every type and root query field of the generic
/// API (read off the schema, not listed here) compile to types of their
/// own: every type that existed is unchanged and the generic API answers
/// as before, while each newcomer is typed and queryable.
#[tokio::test]
async fn interfaces_named_like_the_generic_api_leave_it_intact() {
    let s = start().await;
    let reserved = twingraph::graphql::schema::reserved();
    for name in [
        "Configuration",
        "Rollout",
        "Event",
        "Model",
        "Relationship",
        "Twin",
        "PageInfo",
    ] {
        assert!(reserved.types.contains(name), "{name} is registered");
    }
    let segment = regex::Regex::new("^[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?$").expect("regex");
    let upper = |s: &str| s[..1].to_ascii_uppercase() + &s[1..];
    let mut names: Vec<String> = reserved
        .types
        .iter()
        .cloned()
        .chain(reserved.queries.iter().map(|q| upper(q)))
        .chain(["Alarm", "Device"].map(str::to_owned))
        .filter(|n| segment.is_match(n))
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() > 60, "{names:?}");

    let before = types(s.addr).await;
    let docs: Vec<Value> = names
        .iter()
        .map(|n| {
            interface(
                &format!("dtmi:acme:{n};1"),
                json!([{"@type": "Property", "name": "wave", "schema": "double"},
                       {"@type": "Property", "name": "level", "schema": "integer", "writable": true}]),
            )
        })
        .collect();
    let v = gql(s.addr, UPLOAD, json!({"m": docs})).await;
    assert!(v.get("errors").is_none(), "{v}");
    unchanged(&before, &types(s.addr).await);

    // The generic API, rollouts included, still validates and answers.
    let v = gql(
        s.addr,
        r#"{ rollouts { id state stages { number } counts { succeeded } }
             configurations { name versions { number } }
             twins(first: 1) { nodes { id model } pageInfo { hasNextPage } }
             events(first: 1) { nodes { seq kind } }
             models { id } drift { twin } }"#,
        json!({}),
    )
    .await;
    assert!(v.get("errors").is_none(), "{v}");

    // Each newcomer is a typed model of its own.
    for (i, n) in names.iter().enumerate() {
        let dtmi = format!("dtmi:acme:{n};1");
        let id = format!("t{i}");
        let v = gql(
            s.addr,
            r#"mutation($id: ID!, $m: String!, $w: Float!) {
                 createTwin(id: $id, model: $m, reported: {wave: $w}, desired: {level: 3}) { __typename } }"#,
            json!({"id": id, "m": dtmi, "w": i as f64}),
        )
        .await;
        let object = v["data"]["createTwin"]["__typename"]
            .as_str()
            .unwrap_or_else(|| panic!("{dtmi}: {v}"))
            .to_owned();
        assert!(
            !before.contains_key(&object) && object.ends_with("Twin"),
            "{dtmi} got type {object}"
        );
        let iface = object
            .strip_suffix("Twin")
            .expect("object types end with Twin");
        let field = lookup_field(s.addr, iface).await;
        let v = gql(
            s.addr,
            &format!(r#"{{ {field}(id: "{id}") {{ __typename wave levelDesired }} }}"#),
            json!({}),
        )
        .await;
        assert_eq!(
            v["data"][&field],
            json!({"__typename": object, "wave": i as f64, "levelDesired": 3}),
            "{dtmi}: {v}"
        );
    }
    s.shutdown().await;
}

/// Over the binary and its embedded store: uploads whose names clash with
/// types that exist (an Interface named like the generated Object type
/// `AssetLocation`, another `Pump`, a `Pump` subtype declaring a property
/// named like Pump's generated `flowSetpointDesired`) leave every existing
/// type as it was; between two uploads, the earlier keeps the short name;
/// and a restart gives every type the name it had.
#[test]
fn an_upload_never_renames_or_changes_a_type_that_existed() {
    let dir = crate::store_conformance::fresh_dir();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (child, addr) = crate::server::spawn_serve(&dir);
    let before = rt.block_on(types(addr));
    assert!(
        before.contains_key("AssetLocation"),
        "the sample models generate it"
    );
    let first = vec![
        interface(
            "dtmi:acme:AssetLocation;1",
            json!([{"@type": "Property", "name": "site", "schema": "string"}]),
        ),
        interface("dtmi:acme:Pump;1", json!([])),
        interface("dtmi:acme:Widget;1", json!([])),
        json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:acme:SmartPump;1", "@type": "Interface",
               "extends": "dtmi:twingraph:isa95:Pump;1",
               "contents": [{"@type": "Property", "name": "flowSetpointDesired", "schema": "double", "writable": true}]}),
    ];
    let v = rt.block_on(gql(addr, UPLOAD, json!({"m": first})));
    assert!(v.get("errors").is_none(), "{v}");
    let v = rt.block_on(gql(
        addr,
        UPLOAD,
        json!({"m": [interface("dtmi:other:Widget;1", json!([]))]}),
    ));
    assert!(v.get("errors").is_none(), "{v}");
    let after = rt.block_on(types(addr));
    unchanged(&before, &after);
    // The newcomers' names: longer where they clashed, and the earlier
    // upload keeps the short one.
    for (dtmi, object) in [
        ("dtmi:acme:AssetLocation;1", "AcmeAssetLocationTwin"),
        ("dtmi:acme:Pump;1", "AcmePumpTwin"),
        ("dtmi:acme:Widget;1", "WidgetTwin"),
        ("dtmi:other:Widget;1", "OtherWidgetTwin"),
        ("dtmi:acme:SmartPump;1", "SmartPumpTwin"),
    ] {
        let v = rt.block_on(gql(
            addr,
            r#"mutation($id: ID!, $m: String!) { createTwin(id: $id, model: $m) { __typename } }"#,
            json!({"id": dtmi.replace([':', ';'], "-"), "m": dtmi}),
        ));
        assert_eq!(v["data"]["createTwin"]["__typename"], object, "{v}");
    }
    // The subtype's own property yields to the field it inherits.
    let v = rt.block_on(gql(
        addr,
        r#"mutation { updateSmartPump(id: "dtmi-acme-SmartPump-1", desired: {flowSetpoint: 2, prop_flowSetpointDesired: 0.5}) {
             flowSetpointDesired ... on SmartPump { prop_flowSetpointDesired prop_flowSetpointDesiredDesired } } }"#,
        json!({}),
    ));
    assert_eq!(
        v["data"]["updateSmartPump"],
        json!({"flowSetpointDesired": 2.0, "prop_flowSetpointDesired": null, "prop_flowSetpointDesiredDesired": 0.5}),
        "{v}"
    );
    crate::server::stop_serve(child);

    let (child, addr) = crate::server::spawn_serve(&dir);
    let restarted = rt.block_on(types(addr));
    assert_eq!(
        restarted.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the same types after a restart"
    );
    for (name, t) in &after {
        assert_eq!(&restarted[name], t, "{name} after a restart");
    }
    crate::server::stop_serve(child);
}
