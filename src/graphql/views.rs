//! Domain values as GraphQL sees them: the fields of the `Twin` interface
//! (shared by the generic and the typed twin types), the JSON views of a
//! twin (`reported`, `desired`, `delta`: property → value, Components nested
//! by name; `metadata`: property → versions, times, acknowledgement), and
//! relationships and events as JSON records.

use async_graphql::Value as GqlValue;
use async_graphql::dynamic::{Field, FieldValue, TypeRef};
use serde_json::{Map, Value, json};

use std::sync::Arc;

use super::context::{parent_twin, ready};
use crate::devices::Devices;
use crate::devices::registry::Device;
use crate::records::DeviceAuth;
use crate::twin::state::{ComponentState, PropState};
use crate::twin::{Event, Relationship, Twin, format_time};

/// A `Twin` field: name, type, description, value.
pub(super) type TwinFieldDef = (&'static str, TypeRef, &'static str, fn(&Twin) -> GqlValue);

/// A JSON view of a twin as a GraphQL value.
fn json_view(v: Value) -> GqlValue {
    GqlValue::from_json(v).unwrap_or(GqlValue::Null)
}

/// The fields of the `Twin` interface.
pub(super) fn twin_fields() -> [TwinFieldDef; 11] {
    [
        (
            "id",
            TypeRef::named_nn(TypeRef::ID),
            "The twin's id.",
            |t| GqlValue::String(t.id.to_string()),
        ),
        (
            "model",
            TypeRef::named_nn(TypeRef::STRING),
            "DTMI of the twin's model.",
            |t| GqlValue::String(t.model.to_string()),
        ),
        (
            "version",
            TypeRef::named_nn("Long"),
            "Grows by one with every change.",
            |t| GqlValue::from(t.version),
        ),
        (
            "etag",
            TypeRef::named_nn(TypeRef::STRING),
            "Entity tag of this version.",
            |t| GqlValue::String(t.etag()),
        ),
        (
            "createdAt",
            TypeRef::named_nn("DateTime"),
            "When the twin was created.",
            |t| GqlValue::String(format_time(t.created_at)),
        ),
        (
            "updatedAt",
            TypeRef::named_nn("DateTime"),
            "When the twin last changed.",
            |t| GqlValue::String(format_time(t.updated_at)),
        ),
        (
            "reported",
            TypeRef::named("JSON"),
            "Reported state: what the device says.",
            reported_gql,
        ),
        (
            "desired",
            TypeRef::named("JSON"),
            "Desired state of writable properties.",
            desired_gql,
        ),
        (
            "delta",
            TypeRef::named("JSON"),
            "Writable properties whose desired value differs from the reported one.",
            delta_gql,
        ),
        (
            "metadata",
            TypeRef::named("JSON"),
            "Per property: versions, times, acknowledgement, and the configuration a desired value comes from (`desired.source`).",
            |t| json_view(metadata(t)),
        ),
        (
            "configurations",
            TypeRef::named_nn("JSON"),
            "Configurations assigned to the twin, by name: version, priority, rollout, the values it sets. Where several set a property, the highest priority (then the most recent) decides.",
            |t| json_view(serde_json::to_value(&t.configurations).unwrap_or_default()),
        ),
    ]
}

/// A twin field computed from the parent twin.
pub(super) fn twin_field(name: &str, ty: TypeRef, f: fn(&Twin) -> GqlValue) -> Field {
    Field::new(name, ty, move |ctx| {
        ready(parent_twin(&ctx).map(|t| Some(FieldValue::value(f(t)))))
    })
}

/// A relationship as the `Relationship` record.
pub(super) fn relationship_json(r: &Relationship) -> Value {
    json!({
        "id": r.id,
        "source": r.source,
        "target": r.target,
        "name": r.name,
        "properties": r.properties,
        "version": r.version,
        "createdAt": format_time(r.created_at),
        "updatedAt": format_time(r.updated_at),
    })
}

/// An event as the `Event` record.
pub(super) fn event_json(e: &Event) -> Value {
    let change = serde_json::to_value(&e.change).unwrap_or(Value::Null);
    let kind = e.change.kind();
    json!({
        "seq": e.seq,
        "cursor": e.seq.to_string(),
        "time": format_time(e.time),
        "actor": e.actor,
        "kind": kind,
        "twins": e.change.twins(),
        "change": change,
    })
}

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
pub(super) fn gql(v: &Value) -> async_graphql::Value {
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
pub(super) fn reported_gql(t: &Twin) -> async_graphql::Value {
    nested_gql(t, |p| p.reported.as_ref().map(|r| &r.value))
}

/// `desired` as a GraphQL value.
pub(super) fn desired_gql(t: &Twin) -> async_graphql::Value {
    nested_gql(t, |p| p.desired.as_ref().map(|d| &d.value))
}

/// `delta` as a GraphQL value.
pub(super) fn delta_gql(t: &Twin) -> async_graphql::Value {
    nested_gql(t, |p| {
        if p.in_delta() {
            p.desired.as_ref().map(|d| &d.value)
        } else {
            None
        }
    })
}

pub(super) fn metadata(t: &Twin) -> Value {
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

/// A device identity as the `DeviceIdentity` record.
pub(super) fn device_json(d: &Device, devices: &Devices) -> Value {
    let (kind, primary, secondary) = match &d.spec.auth {
        DeviceAuth::SymmetricKey { .. } => ("SYMMETRIC_KEY", None, None),
        DeviceAuth::EnrollmentGroupKey {} => ("ENROLLMENT_GROUP_KEY", None, None),
        DeviceAuth::X509Thumbprint { primary, secondary } => {
            ("X509_THUMBPRINT", Some(primary.clone()), secondary.clone())
        }
        DeviceAuth::X509Ca {} => ("X509_CA", None, None),
    };
    let here = devices.hub().is_connected(&d.spec.id);
    let last_activity = d
        .connection
        .as_ref()
        .map(|c| c.since)
        .into_iter()
        .chain(d.disconnected_at)
        .max();
    json!({
        "id": d.spec.id,
        "twinId": d.spec.twin,
        "status": if d.enabled { "ENABLED" } else { "DISABLED" },
        "statusReason": d.reason,
        "authentication": {
            "type": kind,
            "primaryThumbprint": primary,
            "secondaryThumbprint": secondary,
        },
        "connected": d.connection.is_some() || here,
        "session": d.connection.as_ref().map(|c| json!({
            "protocol": c.protocol,
            "server": c.server,
            "since": format_time(c.since),
        })),
        "lastActivity": last_activity.map(format_time),
        "enrollment": d.spec.enrollment,
        "registeredAt": format_time(d.registered_at),
        "registeredBy": d.registered_by,
        "updatedAt": format_time(d.updated_at),
    })
}

/// The `deviceIdentity` field of every twin type: the twin's device, its
/// connection state and last activity (null if it has none, or the server
/// serves no devices). Reading the parent twin already passed the caller's
/// view, so the device is visible too.
pub(super) const TWIN_DEVICE_FIELD: &str = "deviceIdentity";
const TWIN_DEVICE_DOC: &str =
    "The device identity of this twin (connection state, last activity); null if it has none.";

pub(super) fn twin_device_field() -> Field {
    Field::new(TWIN_DEVICE_FIELD, TypeRef::named("DeviceIdentity"), |ctx| {
        let answer = (|| {
            let twin = parent_twin(&ctx)?;
            let Some(devices) = ctx.data_opt::<Arc<Devices>>() else {
                return Ok(None);
            };
            let device = devices.registry().of_twin(&twin.id).cloned();
            Ok(device.map(|d| FieldValue::owned_any(device_json(&d, devices))))
        })();
        ready(answer)
    })
    .description(TWIN_DEVICE_DOC)
}

pub(super) fn twin_device_interface_field() -> async_graphql::dynamic::InterfaceField {
    async_graphql::dynamic::InterfaceField::new(TWIN_DEVICE_FIELD, TypeRef::named("DeviceIdentity"))
        .description(TWIN_DEVICE_DOC)
}
