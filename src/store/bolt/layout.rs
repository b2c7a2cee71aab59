//! How twins, relationships and events are laid out in the property graph
//! (documented for Cypher users in `schema/neo4j.md`).
//!
//! - A twin is a node labelled `:Twin` plus one label per Interface of its
//!   inheritance chain (the DTMI's last segment: `Pump`, `Equipment`, …).
//!   Properties: `id`, `model` (DTMI), `models` (the DTMI and its
//!   ancestors), `version`, `createdAt`, `updatedAt` (µs since the epoch),
//!   `state` (the whole twin as JSON: the exact round trip), and, to filter
//!   in Cypher, every top-level scalar reported value under its own name and
//!   every scalar desired value as `desired_<name>`.
//! - A relationship is a Neo4j relationship typed by its DTDL name, with
//!   `id`, `version`, `createdAt`, `updatedAt`, `json` (the exact round
//!   trip) and its scalar properties under their own names.
//! - An event is a `:TwinEvent` node: `seq` (gap-free, unique), `time`,
//!   `kind`, `actor`, `twin` and `other` (the twins it concerns), `stream`
//!   (configuration and rollout records), `json`.
//! - `(:TwinGraphMeta {key: 'seq'})` holds the last sequence number and
//!   time; every write transaction updates it, which serializes writers.

use std::collections::HashMap;

use neo4rs::{BoltMap, BoltType};
use serde_json::Value;

use crate::dtdl::model::ModelSet;
use crate::store::StoreError;
use crate::twin::{Event, Relationship, Twin};

/// Labels and relationship types the store uses itself.
pub const TWIN: &str = "Twin";
pub const EVENT: &str = "TwinEvent";
pub const META: &str = "TwinGraphMeta";
/// The label of a time series block's node.
pub const SERIES_BLOCK: &str = "SeriesBlock";

/// Twin node properties that are not flattened values.
pub const RESERVED_NODE_KEYS: &[&str] = &[
    "id",
    "model",
    "models",
    "version",
    "createdAt",
    "updatedAt",
    "state",
];

/// Relationship properties that are not flattened values.
const RESERVED_REL_KEYS: &[&str] = &["id", "version", "createdAt", "updatedAt", "json"];

/// Whether `name` may be written into Cypher as a label or relationship
/// type (backquoted): DTDL names and DTMI segments always are; anything
/// else is refused rather than escaped.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

/// A label or relationship type as Cypher text (backquoted), checked.
pub fn quoted(name: &str) -> Result<String, StoreError> {
    if is_identifier(name) {
        Ok(format!("`{name}`"))
    } else {
        Err(StoreError::Storage(format!(
            "{name:?} cannot be used as a label or relationship type"
        )))
    }
}

/// The label of an Interface: the last segment of its DTMI
/// (`dtmi:com:example:Pump;1` → `Pump`).
pub fn label_of(dtmi: &str) -> Option<&str> {
    let path = dtmi.split(';').next()?;
    let last = path.rsplit(':').next()?;
    (is_identifier(last) && last != EVENT && last != META).then_some(last)
}

/// Labels and model ids of twins by model, computed once per model set.
#[derive(Debug, Default)]
pub struct ModelLabels {
    by_model: HashMap<String, (String, Vec<String>)>,
}

impl ModelLabels {
    pub fn new(models: &ModelSet) -> ModelLabels {
        let mut by_model = HashMap::new();
        for i in models.interfaces() {
            let mut ids = vec![i.id.clone()];
            ids.extend(i.ancestors.iter().cloned());
            let mut labels: Vec<&str> = vec![TWIN];
            for id in &ids {
                if let Some(l) = label_of(id)
                    && !labels.contains(&l)
                {
                    labels.push(l);
                }
            }
            let text = labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(":");
            by_model.insert(i.id.clone(), (text, ids));
        }
        ModelLabels { by_model }
    }

    /// `:`-joined quoted labels of a twin of `model` (`Twin` alone for a
    /// model not in the set), and the model with its ancestors.
    pub fn of(&self, model: &str) -> (String, Vec<String>) {
        self.by_model
            .get(model)
            .cloned()
            .unwrap_or_else(|| (format!("`{TWIN}`"), vec![model.to_owned()]))
    }
}

/// A JSON scalar as a Bolt value; `None` for objects, arrays, null and
/// integers beyond Bolt's 64-bit signed range.
fn scalar(v: &Value) -> Option<BoltType> {
    match v {
        Value::Bool(b) => Some(BoltType::from(*b)),
        Value::String(s) => Some(BoltType::from(s.as_str())),
        Value::Number(n) => n
            .as_i64()
            .map(BoltType::from)
            .or_else(|| n.is_f64().then(|| n.as_f64().map(BoltType::from)).flatten()),
        _ => None,
    }
}

fn micros(v: i64) -> BoltType {
    BoltType::from(v)
}

fn int(v: u64) -> BoltType {
    BoltType::from(i64::try_from(v).unwrap_or(i64::MAX))
}

fn put(m: &mut BoltMap, k: &str, v: BoltType) {
    m.put(k.into(), v);
}

fn encode<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Storage(format!("cannot encode: {e}")))
}

/// The properties of a twin's node.
pub fn twin_props(t: &Twin, models: Vec<String>) -> Result<BoltType, StoreError> {
    let mut m = flat_props(t);
    put(&mut m, "id", BoltType::from(&*t.id));
    put(&mut m, "model", BoltType::from(&*t.model));
    put(&mut m, "models", BoltType::from(models));
    put(&mut m, "createdAt", micros(t.created_at));
    changing_props(&mut m, t)?;
    Ok(BoltType::Map(m))
}

/// What changes on the node of `before` to make it the node of `after`
/// (the same model): the flattened values that differ (null for those
/// gone), version, time and state; id, model and labels stay, so the
/// database leaves their indexes alone.
pub fn twin_update(before: &Twin, after: &Twin) -> Result<BoltType, StoreError> {
    let (old, new) = (flat_props(before), flat_props(after));
    let mut m = BoltMap::new();
    for (k, v) in &new.value {
        if old.value.get(k) != Some(v) {
            m.value.insert(k.clone(), v.clone());
        }
    }
    for k in old.value.into_keys() {
        if !new.value.contains_key(&k) {
            m.value.insert(k, BoltType::Null(neo4rs::BoltNull));
        }
    }
    changing_props(&mut m, after)?;
    Ok(BoltType::Map(m))
}

/// The reported and desired scalars of a twin's root, flattened.
fn flat_props(t: &Twin) -> BoltMap {
    let mut m = BoltMap::new();
    for (name, p) in t.root.props.iter() {
        let name: &str = name;
        if let Some(r) = &p.reported
            && !RESERVED_NODE_KEYS.contains(&name)
            && !name.starts_with("desired_")
            && let Some(v) = scalar(&r.value)
        {
            put(&mut m, name, v);
        }
        if let Some(d) = &p.desired
            && let Some(v) = scalar(&d.value)
        {
            put(&mut m, &format!("desired_{name}"), v);
        }
    }
    m
}

/// The properties every change of a twin sets: version, time, state.
fn changing_props(m: &mut BoltMap, t: &Twin) -> Result<(), StoreError> {
    put(m, "version", int(t.version));
    put(m, "updatedAt", micros(t.updated_at));
    put(m, "state", BoltType::from(encode(t)?));
    Ok(())
}

/// The properties of a relationship.
pub fn rel_props(r: &Relationship) -> Result<BoltType, StoreError> {
    let mut m = BoltMap::new();
    for (k, v) in &r.properties {
        if !RESERVED_REL_KEYS.contains(&k.as_str())
            && let Some(v) = scalar(v)
        {
            put(&mut m, k, v);
        }
    }
    put(&mut m, "id", BoltType::from(r.id.as_str()));
    put(&mut m, "version", int(r.version));
    put(&mut m, "createdAt", micros(r.created_at));
    put(&mut m, "updatedAt", micros(r.updated_at));
    put(&mut m, "json", BoltType::from(encode(r)?));
    Ok(BoltType::Map(m))
}

/// The properties of an event's node.
pub fn event_props(e: &Event) -> Result<BoltType, StoreError> {
    // Straight to text: no JSON tree (this runs for every event written).
    let json = encode(e)?;
    let kind = e.change.kind();
    debug_assert_eq!(
        serde_json::from_str::<Value>(&json)
            .ok()
            .and_then(|v| v.pointer("/change/kind").cloned()),
        Some(Value::from(kind)),
        "Change::kind names the serialized kind"
    );
    let twins = e.change.twins();
    let mut m = BoltMap::new();
    put(&mut m, "seq", int(e.seq));
    put(&mut m, "time", micros(e.time));
    put(&mut m, "kind", BoltType::from(kind));
    put(&mut m, "actor", BoltType::from(e.actor.as_str()));
    // Absent rather than null when there is none: nothing to index.
    if let Some(twin) = twins.first() {
        put(&mut m, "twin", BoltType::from(*twin));
    }
    if let Some(other) = twins.get(1) {
        put(&mut m, "other", BoltType::from(*other));
    }
    if let Some(stream) = e.change.stream() {
        put(&mut m, "stream", BoltType::from(stream));
    }
    put(&mut m, "json", BoltType::from(json));
    Ok(BoltType::Map(m))
}

/// A stored JSON column back as a value.
pub fn decode<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Storage(format!("corrupt {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_last_dtmi_segment_and_checked() {
        assert_eq!(label_of("dtmi:com:example:Pump;1"), Some("Pump"));
        assert_eq!(label_of("dtmi:com:example:TwinEvent;1"), None);
        assert!(is_identifier("contains"));
        assert!(!is_identifier("a`b"));
        assert!(!is_identifier("1a"));
        assert!(quoted("x) DETACH DELETE (n").is_err());
    }
}
