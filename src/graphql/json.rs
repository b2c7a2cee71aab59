//! The JSON views of a twin that the generic API returns: `reported`,
//! `desired`, `delta` (property → value; Components nested by name) and
//! `metadata` (property → versions, times, acknowledgement).

use serde_json::{Map, Value, json};

use crate::twin::state::{ComponentState, PropState};
use crate::twin::{Twin, format_time};

fn side(c: &ComponentState, pick: impl Fn(&PropState) -> Option<Value>) -> Map<String, Value> {
    c.props
        .iter()
        .filter_map(|(k, p)| pick(p).map(|v| (k.to_owned(), v)))
        .collect()
}

fn nested(t: &Twin, pick: impl Fn(&PropState) -> Option<Value> + Copy) -> Value {
    let mut m = side(&t.root, pick);
    for (name, c) in &t.components {
        let inner = side(c, pick);
        if !inner.is_empty() {
            m.insert(name.clone(), Value::Object(inner));
        }
    }
    Value::Object(m)
}

/// A JSON value as a GraphQL value, without an intermediate copy.
pub fn gql(v: &Value) -> async_graphql::Value {
    use async_graphql::{Name, Value as G};
    match v {
        Value::Null => G::Null,
        Value::Bool(b) => G::Boolean(*b),
        Value::Number(n) => G::Number(n.clone()),
        Value::String(s) => G::String(s.clone()),
        Value::Array(a) => G::List(a.iter().map(gql).collect()),
        Value::Object(o) => G::Object(o.iter().map(|(k, x)| (Name::new(k), gql(x))).collect()),
    }
}

/// Like [`nested`], straight to a GraphQL value (the hot path of
/// `reported`, `desired` and `delta`).
fn nested_gql(
    t: &Twin,
    pick: impl Fn(&PropState) -> Option<&Value> + Copy,
) -> async_graphql::Value {
    use async_graphql::{Name, Value as G};
    let side = |c: &ComponentState| -> async_graphql::indexmap::IndexMap<Name, G> {
        c.props
            .iter()
            .filter_map(|(k, p)| pick(p).map(|v| (Name::new(k), gql(v))))
            .collect()
    };
    let mut m = side(&t.root);
    for (name, c) in &t.components {
        let inner = side(c);
        if !inner.is_empty() {
            m.insert(Name::new(name), G::Object(inner));
        }
    }
    G::Object(m)
}

/// `reported` as a GraphQL value.
pub fn reported_gql(t: &Twin) -> async_graphql::Value {
    nested_gql(t, |p| p.reported.as_ref().map(|r| &r.value))
}

/// `desired` as a GraphQL value.
pub fn desired_gql(t: &Twin) -> async_graphql::Value {
    nested_gql(t, |p| p.desired.as_ref().map(|d| &d.value))
}

/// `delta` as a GraphQL value.
pub fn delta_gql(t: &Twin) -> async_graphql::Value {
    nested_gql(t, |p| {
        if p.in_delta() {
            p.desired.as_ref().map(|d| &d.value)
        } else {
            None
        }
    })
}

pub fn reported(t: &Twin) -> Value {
    nested(t, |p| p.reported.as_ref().map(|r| r.value.clone()))
}

pub fn desired(t: &Twin) -> Value {
    nested(t, |p| p.desired.as_ref().map(|d| d.value.clone()))
}

/// Writable properties whose desired value differs from the reported one:
/// property → desired value.
pub fn delta(t: &Twin) -> Value {
    nested(t, |p| {
        if p.in_delta() {
            p.desired.as_ref().map(|d| d.value.clone())
        } else {
            None
        }
    })
}

pub fn metadata(t: &Twin) -> Value {
    nested(t, |p| {
        let mut m = Map::new();
        if let Some(d) = &p.desired {
            m.insert(
                "desired".into(),
                match &d.source {
                    Some(s) => {
                        json!({"version": d.version, "lastUpdated": format_time(d.last_updated),
                                      "source": s})
                    }
                    None => {
                        json!({"version": d.version, "lastUpdated": format_time(d.last_updated)})
                    }
                },
            );
            m.insert(
                "ackStatus".into(),
                serde_json::to_value(p.ack_status()).unwrap_or(Value::Null),
            );
        }
        if let Some(r) = &p.reported {
            let mut rm = Map::new();
            rm.insert("version".into(), json!(r.version));
            rm.insert("lastUpdated".into(), json!(format_time(r.last_updated)));
            if let Some(s) = r.source_time {
                rm.insert("sourceTime".into(), json!(format_time(s)));
            }
            if let Some(a) = &r.ack {
                rm.insert(
                    "ack".into(),
                    json!({"code": a.code, "version": a.version, "description": a.description}),
                );
            }
            m.insert("reported".into(), Value::Object(rm));
        }
        Some(Value::Object(m))
    })
}
