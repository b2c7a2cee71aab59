//! What a resolver knows of its request: the store as the caller sees it,
//! the caller (its rights, and how it is named in the events it causes),
//! the schema-wide data, argument readers and value conversion. Every
//! feature reads its request through here, nothing else.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::dynamic::{FieldFuture, FieldValue, ResolverContext};
use async_graphql::{Error, Value as GqlValue};

use super::errors::{bad_request, store_error};
use crate::auth::{Access, Action};
use crate::rollout::Rollouts;
use crate::store::GraphStore;
use crate::twin::{Twin, parse_time};

/// The store as the caller sees it (its guarded view when authentication
/// is on; see `reload::with_access`).
pub(super) fn store_of<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Arc<dyn GraphStore>, Error> {
    ctx.data::<Arc<dyn GraphStore>>()
}

/// The caller (`None`: authentication is off, everyone may do everything).
pub(super) fn access_of<'a>(ctx: &ResolverContext<'a>) -> Option<&'a Access> {
    ctx.data_opt::<Access>()
}

/// How the caller is named in the events it causes: its token's subject
/// and role, or [`crate::auth::ANONYMOUS`] when authentication is off.
pub(super) fn actor_of(ctx: &ResolverContext<'_>) -> String {
    access_of(ctx).map_or_else(
        || crate::auth::ANONYMOUS.to_owned(),
        |a| a.principal.actor(),
    )
}

/// `FORBIDDEN` unless the caller may do `action`.
pub(super) fn require(ctx: &ResolverContext<'_>, action: Action) -> Result<(), Error> {
    match access_of(ctx) {
        Some(a) => a.require(action).map_err(|e| store_error(&e)),
        None => Ok(()),
    }
}

/// The owner of configurations and rollouts.
pub(super) fn rollouts_of<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Arc<Rollouts>, Error> {
    ctx.data::<Arc<Rollouts>>()
}

/// The object type of each model's twins (DTMI → type name), as the typed
/// schema compiled it.
#[derive(Debug, Default, Clone)]
pub struct TwinTypes(Arc<BTreeMap<String, String>>);

impl TwinTypes {
    pub(super) fn new(types: BTreeMap<String, String>) -> TwinTypes {
        TwinTypes(Arc::new(types))
    }

    /// The object type for a twin of `model`; `GenericTwin` for models the
    /// schema was not compiled with.
    pub fn of(&self, model: &str) -> &str {
        self.0.get(model).map_or("GenericTwin", String::as_str)
    }
}

/// The model → object type map of the schema.
pub(super) fn types_of<'a>(ctx: &ResolverContext<'a>) -> Result<&'a TwinTypes, Error> {
    ctx.data::<TwinTypes>()
}

/// A twin as a GraphQL value of its model's object type (`GenericTwin` for
/// models the schema was not compiled with).
pub(super) fn twin_value(types: &TwinTypes, t: impl Into<Arc<Twin>>) -> FieldValue<'static> {
    let t: Arc<Twin> = t.into();
    let ty = types.of(&t.model).to_owned();
    FieldValue::owned_any(t).with_type(ty)
}

/// A twin the parent value owns, as a GraphQL value of its model's object
/// type, borrowed (no copy of its state).
pub(super) fn twin_ref<'a>(types: &TwinTypes, t: &'a Twin) -> FieldValue<'a> {
    FieldValue::borrowed_any(t).with_type(types.of(&t.model).to_owned())
}

/// The twin a field of a twin type reads.
pub(super) fn parent_twin<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Twin, Error> {
    match ctx.parent_value.downcast_ref::<Arc<Twin>>() {
        Some(t) => Ok(t),
        None => ctx.parent_value.try_downcast_ref::<Twin>(),
    }
}

pub(super) fn to_gql(v: serde_json::Value) -> Result<GqlValue, Error> {
    GqlValue::from_json(v).map_err(|e| Error::new(format!("cannot render value: {e}")))
}

/// The answer of a resolver that needs no waiting, as a value the engine
/// takes without polling a future (one allocation fewer per field, which
/// counts in long lists).
pub(super) fn ready<'a>(answer: Result<Option<FieldValue<'a>>, Error>) -> FieldFuture<'a> {
    match answer {
        Ok(v) => FieldFuture::Value(v),
        Err(e) => FieldFuture::new(async move { Err::<Option<FieldValue<'a>>, _>(e) }),
    }
}

pub(super) fn json_arg(
    ctx: &ResolverContext<'_>,
    name: &str,
) -> Result<Option<serde_json::Value>, Error> {
    match ctx.args.get(name) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => v
            .as_value()
            .clone()
            .into_json()
            .map(Some)
            .map_err(|e| bad_request(format!("argument {name}: {e}"))),
    }
}

/// An input argument as a typed value (through its JSON form; input
/// objects arrive with explicit nulls for absent fields, which are dropped).
pub(super) fn input_arg<T: serde::de::DeserializeOwned>(
    ctx: &ResolverContext<'_>,
    name: &str,
) -> Result<Option<T>, Error> {
    match json_arg(ctx, name)? {
        None => Ok(None),
        Some(v) => serde_json::from_value(strip_nulls(v))
            .map(Some)
            .map_err(|e| bad_request(format!("{name}: {e}"))),
    }
}

fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

pub(super) fn long_arg(ctx: &ResolverContext<'_>, name: &str) -> Result<Option<u64>, Error> {
    match ctx.args.get(name) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => match v.as_value() {
            GqlValue::Number(n) => n.as_u64().map(Some).ok_or_else(|| {
                bad_request(format!("argument {name} must be a non-negative integer"))
            }),
            GqlValue::String(s) => s.parse().map(Some).map_err(|_| {
                bad_request(format!("argument {name} must be a non-negative integer"))
            }),
            _ => Err(bad_request(format!("argument {name} must be a Long"))),
        },
    }
}

pub(super) fn time_arg(ctx: &ResolverContext<'_>, name: &str) -> Result<Option<i64>, Error> {
    match ctx.args.get(name) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => {
            let s = v.string()?;
            parse_time(s).map(Some).ok_or_else(|| {
                bad_request(format!(
                    "argument {name}: {s:?} is not an RFC 3339 date-time"
                ))
            })
        }
    }
}

/// An optional count argument, `default` when absent, refused above `max`.
pub(super) fn usize_arg(
    ctx: &ResolverContext<'_>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, Error> {
    let n = match ctx.args.get(name) {
        Some(v) if !v.is_null() => usize::try_from(v.i64()?)
            .map_err(|_| bad_request(format!("{name} must not be negative")))?,
        _ => default,
    };
    if n > max {
        return Err(bad_request(format!("{name} may be at most {max}")));
    }
    Ok(n)
}

pub(super) fn str_arg(ctx: &ResolverContext<'_>, name: &str) -> Result<Option<String>, Error> {
    match ctx.args.get(name) {
        Some(v) if !v.is_null() => Ok(Some(v.string()?.to_owned())),
        _ => Ok(None),
    }
}

/// The twin the `id` argument names: as it is, or with `asOf` as it was
/// then (time travel).
pub(super) async fn twin_arg(ctx: &ResolverContext<'_>) -> Result<Option<Arc<Twin>>, Error> {
    let store = store_of(ctx)?;
    let id = ctx.args.try_get("id")?.string()?;
    match time_arg(ctx, "asOf")? {
        Some(at) => store
            .twin_as_of(id, crate::store::At::Time(at))
            .await
            .map(|t| t.map(Arc::new)),
        None => store.twin(id).await,
    }
    .map_err(|e| store_error(&e))
}
