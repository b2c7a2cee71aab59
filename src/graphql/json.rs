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
                json!({"version": d.version, "lastUpdated": format_time(d.last_updated)}),
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
