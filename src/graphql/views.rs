//! Domain values as GraphQL sees them: the fields of the `Twin` interface
//! (shared by the generic and the typed twin types), the JSON views of a
//! twin (`reported`, `desired`, `delta`: property → value, Components nested
//! by name; `metadata`: property → versions, times, acknowledgement), and
//! relationships and events as JSON records; alarms and health, and the
//! twins' `health` and `alarms` fields.

use async_graphql::Value as GqlValue;
use async_graphql::dynamic::{Field, FieldValue, TypeRef};
use serde_json::{Map, Value, json};

use std::collections::HashMap;
use std::sync::Arc;

use super::context::{json_arg, parent_twin, ready, store_of, time_arg};
use super::errors::{bad_request, store_error};
use crate::alarms::{Alarm, AlarmState, Alarms, Health};
use crate::devices::Devices;
use crate::devices::registry::Device;
use crate::kpi::{Kpis, RunStates, count_alarms, of_twin};
use crate::records::ALARMS_STREAM;
use crate::records::{DeviceAuth, Severity};
use crate::twin::state::{ComponentState, PropState};
use crate::twin::{Event, Relationship, Twin, format_time, now_micros};

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

/// The `health` field of every twin type.
pub(super) const TWIN_HEALTH_FIELD: &str = "health";

/// The `alarms` field of every twin type.
pub(super) const TWIN_ALARMS_FIELD: &str = "alarms";

const TWIN_HEALTH_DOC: &str = "Its health: the active, unshelved alarms on it and below it in the containment hierarchy (those the caller may see).";

const TWIN_ALARMS_DOC: &str = "Its alarms (with `below`, also those of the twins it contains), newest first; by default those not NORMAL.";

/// An alarm as a JSON record (the `Alarm` type).
pub(super) fn alarm_json(a: &Alarm) -> Value {
    json!({
        "id": a.id(),
        "ruleName": a.rule,
        "ruleVersion": a.version,
        "twinId": a.twin,
        "severity": a.severity.name(),
        "state": a.state().name(),
        "active": a.active,
        "acknowledged": a.acknowledged,
        "shelved": a.shelved_until.is_some(),
        "shelvedUntil": a.shelved_until.map(format_time),
        "message": a.message,
        "value": a.value,
        "raisedAt": format_time(a.raised_at),
        "clearedAt": a.cleared_at.map(format_time),
        "acknowledgedAt": a.acknowledged_at.map(format_time),
        "acknowledgedBy": a.acknowledged_by,
        "changedAt": format_time(a.changed_at),
        "containers": a.ancestors,
        "suspect": a.evidence.is_some(),
        "evidence": a.evidence.map(|e| json!({
            "observed": e.observed,
            "expectedLow": e.low,
            "expectedHigh": e.high,
            "score": e.score,
        })),
        "comments": a.comments.iter().map(|c| json!({
            "text": c.text, "by": c.by, "at": format_time(c.at),
        })).collect::<Vec<_>>(),
        "history": a.recent.iter().map(|t| json!({
            "kind": t.kind.to_uppercase(),
            "at": format_time(t.at),
            "by": t.by,
            "seq": t.seq,
            "state": t.state.name(),
            "note": t.note,
        })).collect::<Vec<_>>(),
    })
}

/// A health as a JSON record (the `TwinHealth` type).
pub(super) fn health_json(twin: &str, h: &Health) -> Value {
    let c = &h.counts;
    json!({
        "twinId": twin,
        "status": h.status(),
        "worstSeverity": c.worst().map(|s| s.name()),
        "activeCounts": {
            "critical": c.of(Severity::Critical),
            "high": c.of(Severity::High),
            "medium": c.of(Severity::Medium),
            "low": c.of(Severity::Low),
            "total": c.total(),
        },
        "score": h.score(),
    })
}

/// The health of `twin` as the caller may see it: for a caller scoped to
/// part of the graph, only the alarms of twins in its scope count.
pub(super) async fn health_for(
    ctx: &async_graphql::dynamic::ResolverContext<'_>,
    alarms: &Alarms,
    twin: &str,
) -> Result<Health, async_graphql::Error> {
    let guard = super::context::access_of(ctx)
        .filter(|a| !a.store.unscoped())
        .map(|a| &a.store);
    health_seen(guard, alarms, twin)
        .await
        .map_err(|e| store_error(&e))
}

/// The health of `twin` counting only the alarms of twins `guard` lets
/// its caller see (all without one).
pub(super) async fn health_seen(
    guard: Option<&Arc<crate::auth::GuardedStore>>,
    alarms: &Alarms,
    twin: &str,
) -> Result<Health, crate::store::StoreError> {
    let Some(guard) = guard else {
        return Ok(alarms.health(twin));
    };
    let counted: Vec<(String, Severity)> = alarms
        .book()
        .alarms()
        .filter(|a| a.counts() && (a.twin == twin || a.counted_at().iter().any(|t| t == twin)))
        .map(|a| (a.twin.clone(), a.severity))
        .collect();
    let ids: Vec<&str> = counted.iter().map(|(t, _)| t.as_str()).collect();
    let seen = guard.filter(&ids).await?;
    let mut counts = crate::alarms::Counts::default();
    for (t, s) in &counted {
        if seen.contains(t) {
            counts.0[*s as usize] += 1;
        }
    }
    Ok(Health { counts })
}

pub(super) fn twin_health_field() -> Field {
    Field::new(TWIN_HEALTH_FIELD, TypeRef::named_nn("TwinHealth"), |ctx| {
        async_graphql::dynamic::FieldFuture::new(async move {
            let twin = parent_twin(&ctx)?.id.clone();
            let health = match ctx.data_opt::<Arc<Alarms>>() {
                Some(alarms) => health_for(&ctx, alarms, &twin).await?,
                None => Health::default(),
            };
            Ok(Some(FieldValue::owned_any(health_json(&twin, &health))))
        })
    })
    .description(TWIN_HEALTH_DOC)
}

pub(super) fn twin_health_interface_field() -> async_graphql::dynamic::InterfaceField {
    async_graphql::dynamic::InterfaceField::new(TWIN_HEALTH_FIELD, TypeRef::named_nn("TwinHealth"))
        .description(TWIN_HEALTH_DOC)
}

/// The arguments of the twins' `alarms` field.
fn twin_alarms_arguments() -> [async_graphql::dynamic::InputValue; 3] {
    use async_graphql::dynamic::InputValue;
    [
        InputValue::new("severity", TypeRef::named_nn_list("AlarmSeverity"))
            .description("Only these severities."),
        InputValue::new("state", TypeRef::named_nn_list("AlarmState"))
            .description("Only these states (by default every state but NORMAL)."),
        InputValue::new("below", TypeRef::named(TypeRef::BOOLEAN))
            .description("Also the alarms of the twins it contains (false when absent)."),
    ]
}

/// The severities and states of an `alarms` field's arguments (states:
/// every one but NORMAL when absent).
pub(super) fn alarm_filters(
    ctx: &async_graphql::dynamic::ResolverContext<'_>,
) -> Result<(Option<Vec<Severity>>, Vec<AlarmState>), async_graphql::Error> {
    let names = |arg: &str| -> Result<Option<Vec<String>>, async_graphql::Error> {
        match ctx.args.get(arg) {
            Some(v) if !v.is_null() => Ok(Some(
                v.list()?
                    .iter()
                    .map(|x| x.enum_name().map(str::to_owned))
                    .collect::<Result<_, _>>()?,
            )),
            _ => Ok(None),
        }
    };
    let severities =
        names("severity")?.map(|v| v.iter().filter_map(|s| Severity::parse(s)).collect());
    let states = match names("state")? {
        Some(v) => v.iter().filter_map(|s| AlarmState::parse(s)).collect(),
        None => AlarmState::ALL
            .into_iter()
            .filter(|s| *s != AlarmState::Normal)
            .collect(),
    };
    Ok((severities, states))
}

pub(super) fn twin_alarms_field() -> Field {
    let f = Field::new(
        TWIN_ALARMS_FIELD,
        TypeRef::named_nn_list_nn("Alarm"),
        |ctx| {
            async_graphql::dynamic::FieldFuture::new(async move {
                let twin = parent_twin(&ctx)?.id.clone();
                let Some(alarms) = ctx.data_opt::<Arc<Alarms>>() else {
                    return Ok(Some(FieldValue::list(Vec::<FieldValue<'_>>::new())));
                };
                let (severities, states) = alarm_filters(&ctx)?;
                let below = match ctx.args.get("below") {
                    Some(v) if !v.is_null() => v.boolean()?,
                    _ => false,
                };
                let mut found: Vec<Alarm> = alarms
                    .book()
                    .alarms()
                    .filter(|a| {
                        if below {
                            a.under(&twin)
                        } else {
                            *a.twin == *twin
                        }
                    })
                    .filter(|a| severities.as_ref().is_none_or(|s| s.contains(&a.severity)))
                    .filter(|a| states.contains(&a.state()))
                    .cloned()
                    .collect();
                if let Some(access) =
                    super::context::access_of(&ctx).filter(|a| !a.store.unscoped())
                {
                    let ids: Vec<&str> = found.iter().map(|a| a.twin.as_str()).collect();
                    let seen = access
                        .store
                        .filter(&ids)
                        .await
                        .map_err(|e| store_error(&e))?;
                    found.retain(|a| seen.contains(&a.twin));
                }
                found.sort_by_key(|a| std::cmp::Reverse(a.raised_seq));
                Ok(Some(FieldValue::list(
                    found.iter().map(|a| FieldValue::owned_any(alarm_json(a))),
                )))
            })
        },
    )
    .description(TWIN_ALARMS_DOC);
    // The interface's field describes the arguments (the SDL of a large
    // model set repeats this field on every twin type).
    [
        ("severity", TypeRef::named_nn_list("AlarmSeverity")),
        ("state", TypeRef::named_nn_list("AlarmState")),
        ("below", TypeRef::named(TypeRef::BOOLEAN)),
    ]
    .into_iter()
    .fold(f, |f, (name, ty)| {
        f.argument(async_graphql::dynamic::InputValue::new(name, ty))
    })
}

pub(super) fn twin_alarms_interface_field() -> async_graphql::dynamic::InterfaceField {
    let f = async_graphql::dynamic::InterfaceField::new(
        TWIN_ALARMS_FIELD,
        TypeRef::named_nn_list_nn("Alarm"),
    )
    .description(TWIN_ALARMS_DOC);
    twin_alarms_arguments()
        .into_iter()
        .fold(f, |f, a| f.argument(a))
}

/// An alarm rule's condition as a JSON record (the `AlarmCondition` type).
pub(super) fn condition_json(c: &crate::records::Condition) -> Value {
    use crate::records::Condition;
    match c {
        Condition::Above {
            field,
            limit,
            deadband,
        } => json!({"type": "ABOVE", "field": field, "limit": limit, "deadband": deadband}),
        Condition::Below {
            field,
            limit,
            deadband,
        } => json!({"type": "BELOW", "field": field, "limit": limit, "deadband": deadband}),
        Condition::Outside {
            field,
            low,
            high,
            deadband,
        } => {
            json!({"type": "OUTSIDE", "field": field, "low": low, "high": high, "deadband": deadband})
        }
        Condition::Equals { field, value } => {
            json!({"type": "EQUALS", "field": field, "value": value})
        }
        Condition::NotEquals { field, value } => {
            json!({"type": "NOT_EQUALS", "field": field, "value": value})
        }
        Condition::RateAbove { field, per_second } => {
            json!({"type": "RATE_ABOVE", "field": field, "perSecond": per_second})
        }
        Condition::Stale { field, seconds } => {
            json!({"type": "STALE", "field": field, "seconds": seconds})
        }
        Condition::Anomaly {
            field,
            sensitivity,
            window,
        } => {
            json!({"type": "ANOMALY", "field": field, "sensitivity": sensitivity, "window": window})
        }
        Condition::ChangePoint {
            field,
            sensitivity,
            window,
        } => {
            json!({"type": "CHANGE_POINT", "field": field, "sensitivity": sensitivity, "window": window})
        }
        Condition::Peers {
            field,
            sensitivity,
            window_seconds,
        } => json!({
            "type": "PEERS", "field": field, "sensitivity": sensitivity, "windowSeconds": window_seconds
        }),
    }
}

/// The `lifecycleState` field of every twin type (not `lifecycle`: models
/// declare properties of that name, the sample Asset among them).
pub(super) const TWIN_LIFECYCLE_FIELD: &str = "lifecycleState";

const TWIN_LIFECYCLE_DOC: &str =
    "Its lifecycle state and recent transitions (null if it was never given one).";

/// The lifecycle service, if this server serves lifecycles.
pub(super) fn lifecycle_of<'a>(
    ctx: &async_graphql::dynamic::ResolverContext<'a>,
) -> Option<&'a Arc<crate::lifecycle::Lifecycle>> {
    ctx.data_opt::<Arc<crate::lifecycle::Lifecycle>>()
}

/// A twin's lifecycle as a JSON record (the `TwinLifecycle` type).
pub(super) fn lifecycle_json(e: &crate::lifecycle::Entry) -> Value {
    let current = e.current();
    json!({
        "twinId": e.twin,
        "state": current.state.name(),
        "since": format_time(current.at),
        "changedBy": current.by,
        "reason": current.reason,
        "history": e.history.iter().map(|t| json!({
            "state": t.state.name(),
            "at": format_time(t.at),
            "by": t.by,
            "reason": t.reason,
            "seq": t.seq,
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn twin_lifecycle_field() -> Field {
    Field::new(
        TWIN_LIFECYCLE_FIELD,
        TypeRef::named("TwinLifecycle"),
        |ctx| {
            async_graphql::dynamic::FieldFuture::new(async move {
                let twin = parent_twin(&ctx)?.id.clone();
                let entry = lifecycle_of(&ctx).and_then(|l| l.book().get(&twin).cloned());
                Ok(entry.map(|e| FieldValue::owned_any(lifecycle_json(&e))))
            })
        },
    )
    .description(TWIN_LIFECYCLE_DOC)
}

pub(super) fn twin_lifecycle_interface_field() -> async_graphql::dynamic::InterfaceField {
    async_graphql::dynamic::InterfaceField::new(
        TWIN_LIFECYCLE_FIELD,
        TypeRef::named("TwinLifecycle"),
    )
    .description(TWIN_LIFECYCLE_DOC)
}

// Indicators (the `kpis` query and field; see `crate::kpi`).

/// Records of the alarms stream read per store call.
const PAGE: usize = 10_000;

/// The most twins a subtree's indicators are computed over.
const MAX_ASSETS: usize = 10_000;

fn seconds(m: i64) -> f64 {
    m as f64 / 1e6
}

fn kpis_json(twin: &str, from: i64, to: i64, k: &Kpis) -> Value {
    let [critical, high, medium, low] = k.alarms;
    json!({
        "twinId": twin,
        "from": format_time(from),
        "to": format_time(to),
        "assets": k.assets,
        "observedSeconds": seconds(k.observed),
        "runningSeconds": seconds(k.running),
        "faultSeconds": seconds(k.fault),
        "availability": k.availability(),
        "utilization": k.utilization(),
        "failures": k.failures,
        "repairs": k.repairs,
        "mtbfSeconds": k.mtbf().map(seconds),
        "mttrSeconds": k.mttr().map(seconds),
        "alarms": {
            "critical": critical, "high": high, "medium": medium, "low": low,
            "total": critical + high + medium + low,
        },
    })
}

/// The run states a request names (the default: `runState`, running
/// `running`, fault `fault`).
fn run_states(v: Option<Value>) -> Result<RunStates, async_graphql::Error> {
    let mut s = RunStates::default();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(s);
    };
    if let Some(f) = v.get("field").and_then(Value::as_str) {
        s.field = f.to_owned();
    }
    for (key, into) in [("running", &mut s.running), ("fault", &mut s.fault)] {
        match v.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(values)) if !values.is_empty() => *into = values.clone(),
            Some(_) => {
                return Err(bad_request(format!(
                    "runState.{key}: a non-empty list of the field's values"
                )));
            }
        }
    }
    Ok(s)
}

/// The indicators of `twin` (which the caller may see) over the window
/// the request's arguments ask for (`from`, `to`, `below`, `runState`).
pub(super) async fn kpis_for(
    ctx: &async_graphql::dynamic::ResolverContext<'_>,
    twin: &str,
) -> Result<Value, async_graphql::Error> {
    let from = time_arg(ctx, "from")?.ok_or_else(|| bad_request("`from` is required"))?;
    let to = time_arg(ctx, "to")?.ok_or_else(|| bad_request("`to` is required"))?;
    if to <= from {
        return Err(bad_request("`to` must be later than `from`"));
    }
    let to = to.min(now_micros()).max(from);
    let below = match ctx.args.get("below") {
        Some(v) if !v.is_null() => v.boolean()?,
        _ => false,
    };
    let states = run_states(json_arg(ctx, "runState")?)?;
    let store = store_of(ctx)?;
    let mut ids = vec![twin.to_owned()];
    if below {
        let reached = store
            .descendants(twin, crate::twin::query::DEFAULT_MAX_DEPTH)
            .await
            .map_err(|e| store_error(&e))?;
        ids.extend(reached.into_iter().map(|r| r.twin));
        ids.sort_unstable();
        ids.dedup();
        if ids.len() > MAX_ASSETS {
            return Err(bad_request(format!(
                "{} twins under {twin}; indicators are computed over at most {MAX_ASSETS}: ask for a smaller subtree",
                ids.len()
            )));
        }
    }
    let mut per: HashMap<String, Kpis> = HashMap::new();
    for id in &ids {
        let events = store
            .twin_events(id, None, None)
            .await
            .map_err(|e| store_error(&e))?;
        per.insert(id.clone(), of_twin(id, &events, &states, from, to));
    }
    let mut seq = 0;
    loop {
        let page = store
            .stream_events(ALARMS_STREAM, seq, PAGE)
            .await
            .map_err(|e| store_error(&e))?;
        count_alarms(&page, &mut per, from, to);
        match page.last() {
            Some(last) if page.len() == PAGE => seq = last.seq,
            _ => break,
        }
    }
    let mut total = Kpis::default();
    for k in per.values() {
        total.add(k);
    }
    Ok(kpis_json(twin, from, to, &total))
}

/// The arguments of a `kpis` field.
pub(super) fn kpi_arguments() -> [async_graphql::dynamic::InputValue; 4] {
    use async_graphql::dynamic::InputValue;
    [
        InputValue::new("from", TypeRef::named_nn("DateTime")),
        InputValue::new("to", TypeRef::named_nn("DateTime")),
        InputValue::new("below", TypeRef::named(TypeRef::BOOLEAN))
            .description("Also the twins it contains (false when absent)."),
        InputValue::new("runState", TypeRef::named("RunStateInput")),
    ]
}

/// The `kpis` field of every twin type.
pub(super) const TWIN_KPIS_FIELD: &str = "kpis";

const TWIN_KPIS_DOC: &str = "Its indicators over `from`..`to` (with `below`, summed over its subtree): availability, utilization, failures, MTBF and MTTR from its reported run state, and the alarms raised on it by severity.";

pub(super) fn twin_kpis_field() -> Field {
    let f = Field::new(TWIN_KPIS_FIELD, TypeRef::named_nn("AssetKpis"), |ctx| {
        async_graphql::dynamic::FieldFuture::new(async move {
            let twin = parent_twin(&ctx)?.id.clone();
            Ok(Some(FieldValue::owned_any(kpis_for(&ctx, &twin).await?)))
        })
    })
    .description(TWIN_KPIS_DOC);
    kpi_arguments().into_iter().fold(f, Field::argument)
}

pub(super) fn twin_kpis_interface_field() -> async_graphql::dynamic::InterfaceField {
    let f = async_graphql::dynamic::InterfaceField::new(
        TWIN_KPIS_FIELD,
        TypeRef::named_nn("AssetKpis"),
    )
    .description(TWIN_KPIS_DOC);
    kpi_arguments()
        .into_iter()
        .fold(f, async_graphql::dynamic::InterfaceField::argument)
}
