//! Records without behaviour (relationships, hops, events, models,
//! configurations, rollouts) travel as JSON objects: [`record`] declares a
//! GraphQL object whose fields read the keys of that JSON, so each type is
//! declared once, by its field list.

use async_graphql::Error;
use async_graphql::dynamic::{Field, FieldFuture, FieldValue, Object, ResolverContext, TypeRef};
use serde_json::Value;

use super::context::{to_gql, twin_value, types_of};
use super::loader::load_twin;

/// A GraphQL object over a JSON object: each field reads its key.
pub(super) fn record(name: &str, description: &str, fields: &[(&str, TypeRef, &str)]) -> Object {
    let mut obj = Object::new(name).description(description);
    for (field, ty, doc) in fields {
        let key = (*field).to_owned();
        let mut f = Field::new(*field, ty.clone(), move |ctx| {
            let key = key.clone();
            FieldFuture::new(async move {
                let v = record_of(&ctx)?;
                match v.get(&key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(x) => Ok(Some(FieldValue::value(to_gql(x.clone())?))),
                }
            })
        });
        if !doc.is_empty() {
            f = f.description(*doc);
        }
        obj = obj.field(f);
    }
    obj
}

/// A deprecated field of a record that reads the key of another (a name
/// kept for the clients that use it, `reason` saying what replaces it).
pub(super) fn deprecated_alias(
    name: &str,
    ty: TypeRef,
    key: &'static str,
    reason: &'static str,
) -> Field {
    Field::new(name, ty, move |ctx| {
        FieldFuture::new(async move {
            let v = record_of(&ctx)?;
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => Ok(Some(FieldValue::value(to_gql(x.clone())?))),
            }
        })
    })
    .deprecation(Some(reason))
}

/// Why a field named `sequence` (or `lastSequence`) is deprecated.
pub(super) const SEQ_RENAMED: &str =
    "Use `seq`: the sequence number has one name across the API (`Event.seq`).";

/// The JSON of a record parent.
pub(super) fn record_of<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Value, Error> {
    ctx.parent_value.try_downcast_ref::<Value>()
}

/// Records as a GraphQL list.
pub(super) fn records(items: impl IntoIterator<Item = Value>) -> FieldValue<'static> {
    FieldValue::list(items.into_iter().map(FieldValue::owned_any))
}

/// A field of a record holding a record (or a list of records) under `key`.
pub(super) fn nested(name: &str, ty: TypeRef, key: &'static str, doc: &str) -> Field {
    Field::new(name, ty, move |ctx| {
        FieldFuture::new(async move {
            let v = record_of(&ctx)?;
            Ok(match v.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::Array(items)) => Some(records(items.clone())),
                Some(x) => Some(FieldValue::owned_any(x.clone())),
            })
        })
    })
    .description(doc)
}

/// A field of a record that resolves the twin whose id is under `key`.
pub(super) fn twin_at_key(name: &str, key: &'static str, doc: &str) -> Field {
    Field::new(name, TypeRef::named("Twin"), move |ctx| {
        FieldFuture::new(async move {
            let v = record_of(&ctx)?;
            let Some(id) = v.get(key).and_then(Value::as_str) else {
                return Ok(None);
            };
            let t = load_twin(&ctx, id).await?;
            let types = types_of(&ctx)?;
            Ok(t.map(|t| twin_value(types, t)))
        })
    })
    .description(doc)
}
