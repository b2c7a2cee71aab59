//! Twins through the model-agnostic API: the `Twin` interface and its
//! generic implementation, `twin` and `twins`, the twin mutations and the
//! atomic `batch`.

use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Interface,
    InterfaceField, Object, ResolverContext, TypeRef,
};
use serde_json::{Value, json};

use super::builder::Builder;
use super::connection::{PageArgs, connection, twin_page, twin_total, with_page_arguments};
use super::context::{
    actor_of, json_arg, long_arg, store_of, str_arg, time_arg, twin_arg, twin_ref, twin_value,
    types_of,
};
use super::errors::{bad_request, batch_store_error, store_error};
use super::record::{deprecated_alias, record, record_of, records};
use super::views::{event_json, twin_field, twin_fields};
use crate::store::{At, GraphStore};
use crate::twin::order::SortKey;
use crate::twin::{Batch, Op, Twin};

/// Applies one operation as `actor` and returns the twin after it.
async fn write_and_read(
    store: &Arc<dyn GraphStore>,
    types: &super::context::TwinTypes,
    op: Op,
    id: &str,
    actor: &str,
) -> Result<Option<FieldValue<'static>>, Error> {
    store
        .apply(Batch::one(op), actor)
        .await
        .map_err(|e| store_error(&e))?;
    let t = store.twin(id).await.map_err(|e| store_error(&e))?;
    Ok(t.map(|t| twin_value(types, t)))
}

pub(super) fn register(b: &mut Builder) {
    let mut twin_iface = Interface::new("Twin")
        .description("A digital twin.")
        .implement("Node");
    for (name, ty, doc, _) in twin_fields() {
        twin_iface = twin_iface.field(InterfaceField::new(name, ty).description(doc));
    }
    twin_iface = twin_iface
        .field(super::views::twin_device_interface_field())
        .field(super::views::twin_health_interface_field())
        .field(super::views::twin_alarms_interface_field())
        .field(super::views::twin_lifecycle_interface_field())
        .field(super::views::twin_kpis_interface_field());
    let mut generic = Object::new("GenericTwin")
        .description("A twin seen through the model-agnostic API.")
        .implement("Node")
        .implement("Twin");
    for (name, ty, doc, f) in twin_fields() {
        generic = generic.field(twin_field(name, ty, f).description(doc));
    }
    generic = generic
        .field(super::views::twin_device_field())
        .field(super::views::twin_health_field())
        .field(super::views::twin_alarms_field())
        .field(super::views::twin_lifecycle_field())
        .field(super::views::twin_kpis_field());
    let [connection, edge] = connection::<Twin>(
        "TwinConnection",
        "TwinEdge",
        "Twin",
        |ctx, t| Ok(twin_ref(types_of(ctx)?, t)),
        "The twin.",
        Vec::new(),
        twin_total(),
    );
    let node = Interface::new("Node")
        .description("An object with an id by which `node` refetches it (Relay object identification): every twin.")
        .field(InterfaceField::new("id", TypeRef::named_nn(TypeRef::ID)).description("Its id."));
    b.register(node);
    b.register(
        Enum::new("SortDirection")
            .description("Ascending or descending; twins without the value come last either way.")
            .item(EnumItem::new("ASC"))
            .item(EnumItem::new("DESC")),
    );
    b.register(
        InputObject::new("TwinOrder")
            .description("One sort key of `twins`: a path as in `where` (`reported.power`, `desired.setpoint`, `id`, `model`, `version`).")
            .field(InputValue::new("path", TypeRef::named_nn(TypeRef::STRING)))
            .field(
                InputValue::new("direction", TypeRef::named_nn("SortDirection"))
                    .default_value(async_graphql::Value::Enum(async_graphql::Name::new("ASC"))),
            ),
    );
    b.register(twin_iface);
    b.register(generic);
    b.register(edge);
    b.register(connection);

    let max_page = b.limits.max_page;
    b.query(
        Field::new("twin", TypeRef::named("Twin"), |ctx| {
            FieldFuture::new(async move {
                let t = twin_arg(&ctx).await?;
                let types = types_of(&ctx)?;
                Ok(t.map(|t| twin_value(types, t)))
            })
        })
        .description("One twin by id; with `asOf`, as it was then (time travel).")
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .argument(InputValue::new("asOf", TypeRef::named("DateTime"))),
    );
    b.query(with_page_arguments(
        Field::new("twins", TypeRef::named_nn("TwinConnection"), move |ctx| {
            FieldFuture::new(async move {
                let store = store_of(&ctx)?;
                let model = str_arg(&ctx, "model")?;
                if let Some(m) = &model
                    && store.models().interface(m).is_none()
                {
                    return Err(store_error(
                        &crate::twin::TwinError::UnknownModel(m.clone()).into(),
                    ));
                }
                let args = PageArgs::read(&ctx, max_page)?;
                let filter = json_arg(&ctx, "where")?
                    .map(|w| crate::twin::filter::Filter::parse(&w))
                    .transpose()
                    .map_err(|e| bad_request(format!("where: {e}")))?;
                let order = order_arg(&ctx)?;
                let at = time_arg(&ctx, "asOf")?.map(At::Time);
                let page = twin_page(&ctx, store, model, filter, order, at, &args).await?;
                Ok(Some(FieldValue::owned_any(page)))
            })
        })
        .description(
            "Twins, optionally of a model (subtypes included), in `orderBy` order (then by id; id order without it); a Relay connection.",
        )
        .argument(InputValue::new("model", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("where", TypeRef::named("JSON")).description(
            "A predicate over id, model, version, reported.* and desired.*: \
             {\"reported.power\": {\"gt\": 5}}; operators eq, ne, in, gt, gte, lt, lte, \
             contains, startsWith, exists; combine with and, or, not.",
        ))
        .argument(
            InputValue::new("orderBy", TypeRef::named_nn_list("TwinOrder")).description(
                "Sort keys in order of precedence (then id); the store answers it from its indexes.",
            ),
        )
        .argument(InputValue::new("asOf", TypeRef::named("DateTime")).description(
            "The list as it was then: the twins that existed, with their state then.",
        )),
    ));
    b.query(
        Field::new("node", TypeRef::named("Node"), |ctx| {
            FieldFuture::new(async move {
                let store = store_of(&ctx)?;
                let id = ctx.args.try_get("id")?.string()?;
                let t = store.twin(id).await.map_err(|e| store_error(&e))?;
                let types = types_of(&ctx)?;
                Ok(t.map(|t| twin_value(types, t)))
            })
        })
        .description("Any object by its id (Relay object identification): the twin with this id, typed by its model; null when there is none.")
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID))),
    );

    b.mutation(
        Field::new("createTwin", TypeRef::named_nn("Twin"), |ctx| {
            FieldFuture::new(async move {
                let store = store_of(&ctx)?;
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let op = Op::CreateTwin {
                    id: id.clone(),
                    model: ctx.args.try_get("model")?.string()?.to_owned(),
                    desired: json_arg(&ctx, "desired")?,
                    reported: json_arg(&ctx, "reported")?,
                };
                write_and_read(store, types_of(&ctx)?, op, &id, &actor_of(&ctx)).await
            })
        })
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .argument(InputValue::new("model", TypeRef::named_nn(TypeRef::STRING)))
        .argument(InputValue::new("reported", TypeRef::named("JSON")))
        .argument(InputValue::new("desired", TypeRef::named("JSON"))),
    );
    b.mutation(
        Field::new("patchDesired", TypeRef::named_nn("Twin"), |ctx| {
            FieldFuture::new(async move {
                let store = store_of(&ctx)?;
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let op = Op::PatchDesired {
                    id: id.clone(),
                    patch: json_arg(&ctx, "patch")?
                        .ok_or_else(|| bad_request("patch is required"))?,
                    expected_version: long_arg(&ctx, "ifVersion")?,
                };
                write_and_read(store, types_of(&ctx)?, op, &id, &actor_of(&ctx)).await
            })
        })
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .argument(InputValue::new("patch", TypeRef::named_nn("JSON")))
        .argument(InputValue::new("ifVersion", TypeRef::named("Long"))),
    );
    b.mutation(
        Field::new("patchReported", TypeRef::named_nn("Twin"), |ctx| {
            FieldFuture::new(async move {
                let store = store_of(&ctx)?;
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let op = Op::PatchReported {
                    id: id.clone(),
                    patch: json_arg(&ctx, "patch")?
                        .ok_or_else(|| bad_request("patch is required"))?,
                    expected_version: long_arg(&ctx, "ifVersion")?,
                    source_time: time_arg(&ctx, "sourceTime")?,
                };
                write_and_read(store, types_of(&ctx)?, op, &id, &actor_of(&ctx)).await
            })
        })
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .argument(InputValue::new("patch", TypeRef::named_nn("JSON")))
        .argument(InputValue::new("ifVersion", TypeRef::named("Long")))
        .argument(InputValue::new("sourceTime", TypeRef::named("DateTime"))),
    );
    b.mutation(
        Field::new("deleteTwin", TypeRef::named_nn(TypeRef::BOOLEAN), |ctx| {
            FieldFuture::new(async move {
                let store = store_of(&ctx)?;
                let op = Op::DeleteTwin {
                    id: ctx.args.try_get("id")?.string()?.to_owned(),
                    expected_version: long_arg(&ctx, "ifVersion")?,
                };
                store
                    .apply(Batch::one(op), &actor_of(&ctx))
                    .await
                    .map_err(|e| store_error(&e))?;
                Ok(Some(FieldValue::value(true)))
            })
        })
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .argument(InputValue::new("ifVersion", TypeRef::named("Long"))),
    );
    register_batch(b);
}

/// The atomic `batch` mutation and its `BatchResult`.
fn register_batch(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let batch_ops = b.limits.batch_ops;
    b.mutation(
        Field::new("batch", s("BatchResult"), move |ctx| {
            FieldFuture::new(async move {
                let list = ctx.args.try_get("operations")?.list()?;
                if list.len() > batch_ops {
                    return Err(bad_request(format!(
                        "a batch may carry at most {batch_ops} operations ({} given)",
                        list.len()
                    )));
                }
                let ops = list
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let json = v
                            .as_value()
                            .clone()
                            .into_json()
                            .map_err(|e| bad_request(format!("operation {i}: {e}")))?;
                        serde_json::from_value::<Op>(json)
                            .map_err(|e| bad_request(format!("operation {i}: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let events = store_of(&ctx)?
                    .apply(Batch { ops }, &actor_of(&ctx))
                    .await
                    .map_err(|e| batch_store_error(&e))?;
                // The events as records only when asked for (a JSON tree
                // per event otherwise built and dropped unread).
                let records: Vec<Value> = if ctx.look_ahead().field("events").exists() {
                    events.iter().map(event_json).collect()
                } else {
                    Vec::new()
                };
                Ok(Some(FieldValue::owned_any(json!({
                    "applied": events.len(),
                    "lastSeq": events.last().map(|e| e.seq),
                    "events": records,
                }))))
            })
        })
        .description("Applies operations atomically: all or none. Each is an object with `op` (createTwin, deleteTwin, patchDesired, patchReported, createRelationship, updateRelationship, deleteRelationship) and that operation's fields.")
        .argument(InputValue::new("operations", TypeRef::named_nn_list_nn("JSON"))),
    );
    let result = record(
        "BatchResult",
        "What an atomic batch did.",
        &[
            (
                "applied",
                s(TypeRef::INT),
                "Events written (one per operation).",
            ),
            (
                "lastSeq",
                TypeRef::named("Long"),
                "Sequence number of its last event.",
            ),
        ],
    )
    .field(deprecated_alias(
        "lastSequence",
        TypeRef::named("Long"),
        "lastSeq",
        "Use `lastSeq`: the sequence number has one name across the API (`Event.seq`).",
    ))
    .field(
        Field::new("events", TypeRef::named_nn_list_nn("Event"), |ctx| {
            FieldFuture::new(async move {
                let v = record_of(&ctx)?;
                let events = v
                    .get("events")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                Ok(Some(records(events)))
            })
        })
        .description("The events, in order."),
    );
    b.register(result);
}

/// The sort keys of `orderBy`, checked as `where` paths are.
fn order_arg(ctx: &ResolverContext<'_>) -> Result<Vec<SortKey>, Error> {
    let Some(items) = ctx.args.get("orderBy").filter(|o| !o.is_null()) else {
        return Ok(Vec::new());
    };
    let mut order = Vec::new();
    for item in items.list()?.iter() {
        let item = item.object()?;
        let path = item.try_get("path")?.string()?;
        crate::twin::filter::Filter::parse(&serde_json::json!({ path: {"exists": true} }))
            .map_err(|e| bad_request(format!("orderBy: {e}")))?;
        let desc = match item.get("direction") {
            Some(d) => d.enum_name()? == "DESC",
            None => false,
        };
        order.push(SortKey {
            path: path.split('.').map(str::to_owned).collect(),
            desc,
        });
    }
    Ok(order)
}
