//! The dynamic schema: scalars, the `Twin` interface and its generic
//! implementation, connections, queries and mutations.

use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, Interface, InterfaceField, Object, ResolverContext,
    Scalar, Schema, SchemaBuilder, SchemaError, TypeRef,
};
use async_graphql::{Error, Value as GqlValue};

use super::errors::{bad_request, store_error};
use super::json;
use super::typed::{ModelOrder, Reserved, TwinTypes};
use crate::store::{At, GraphStore, TwinQuery};
use crate::twin::{Batch, Op, Twin, format_time, parse_time};

/// Limits of the schema (configurable).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub depth: usize,
    pub complexity: usize,
    /// Largest page a connection returns.
    pub max_page: usize,
    /// Responses a subscriber may fall behind a shared subscription
    /// before it is told `SUBSCRIBER_LAGGED` (as the store's live buffer).
    pub live_buffer: usize,
    /// Aliased fields a document may have.
    pub aliases: usize,
    /// Operations one `batch` mutation may carry.
    pub batch_ops: usize,
    /// Whether the schema answers introspection (`__schema`, `__type`).
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: 16,
            complexity: 10_000,
            max_page: 1000,
            live_buffer: 4096,
            aliases: 200,
            batch_ops: 10_000,
            introspection: true,
        }
    }
}

/// The store as the caller sees it (its guarded view when authentication
/// is on; see [`super::reload`]).
pub(super) fn store_of<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Arc<dyn GraphStore>, Error> {
    ctx.data::<Arc<dyn GraphStore>>()
}

/// The caller (`None`: authentication is off, everyone may do everything).
pub(super) fn access_of<'a>(ctx: &ResolverContext<'a>) -> Option<&'a crate::auth::Access> {
    ctx.data_opt::<crate::auth::Access>()
}

/// How the caller is named in the events it causes.
pub(super) fn actor_of(ctx: &ResolverContext<'_>) -> String {
    access_of(ctx).map_or_else(|| "anonymous".to_owned(), |a| a.principal.actor())
}

/// `FORBIDDEN` unless the caller may do `action`.
pub(super) fn require(ctx: &ResolverContext<'_>, action: crate::auth::Action) -> Result<(), Error> {
    match access_of(ctx) {
        Some(a) => a.require(action).map_err(|e| store_error(&e)),
        None => Ok(()),
    }
}

pub(super) fn to_gql(v: serde_json::Value) -> Result<GqlValue, Error> {
    GqlValue::from_json(v).map_err(|e| Error::new(format!("cannot render value: {e}")))
}

/// A twin as a GraphQL value of its model's object type (`GenericTwin` for
/// models the schema was not compiled with).
pub(super) fn twin_value(types: &TwinTypes, t: Twin) -> FieldValue<'static> {
    let ty = types.of(&t.model).to_owned();
    FieldValue::owned_any(t).with_type(ty)
}

/// A twin the parent value owns, as a GraphQL value of its model's object
/// type, borrowed (no copy of its state).
pub(super) fn twin_ref<'a>(types: &TwinTypes, t: &'a Twin) -> FieldValue<'a> {
    FieldValue::borrowed_any(t).with_type(types.of(&t.model).to_owned())
}

/// The model → object type map of the schema.
pub(super) fn types_of<'a>(ctx: &ResolverContext<'a>) -> Result<&'a TwinTypes, Error> {
    ctx.data::<TwinTypes>()
}

fn parent<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Twin, Error> {
    ctx.parent_value.try_downcast_ref::<Twin>()
}

/// A `Twin` field: name, type, description, value.
pub(super) type TwinFieldDef = (&'static str, TypeRef, &'static str, fn(&Twin) -> GqlValue);

/// A JSON view of a twin as a GraphQL value.
fn json_view(v: serde_json::Value) -> GqlValue {
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
            json::reported_gql,
        ),
        (
            "desired",
            TypeRef::named("JSON"),
            "Desired state of writable properties.",
            json::desired_gql,
        ),
        (
            "delta",
            TypeRef::named("JSON"),
            "Writable properties whose desired value differs from the reported one.",
            json::delta_gql,
        ),
        (
            "metadata",
            TypeRef::named("JSON"),
            "Per property: versions, times, acknowledgement, and the configuration a desired value comes from (`desired.source`).",
            |t| json_view(json::metadata(t)),
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
        ready(parent(&ctx).map(|t| Some(FieldValue::value(f(t)))))
    })
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

/// Twins of `model` (subtypes included; all when `None`) matching
/// `filter`, in id order after `after`: the first `first`, and whether more
/// follow. One store call (the store evaluates the filter).
pub(super) async fn list_twins(
    store: &Arc<dyn GraphStore>,
    model: Option<String>,
    filter: Option<crate::twin::filter::Filter>,
    after: Option<String>,
    first: usize,
) -> Result<(Vec<Twin>, bool), Error> {
    let page = store
        .twins(&TwinQuery {
            model,
            subtypes: true,
            filter: filter.map(Arc::new),
            after,
            limit: first,
        })
        .await
        .map_err(|e| store_error(&e))?;
    Ok((page.items, page.has_more))
}

/// Applies one operation and returns the twin after it.
async fn write_and_read(
    store: &Arc<dyn GraphStore>,
    types: &TwinTypes,
    op: Op,
    id: &str,
) -> Result<Option<FieldValue<'static>>, Error> {
    store
        .apply(Batch::one(op), "anonymous")
        .await
        .map_err(|e| store_error(&e))?;
    let t = store.twin(id).await.map_err(|e| store_error(&e))?;
    Ok(t.map(|t| twin_value(types, t)))
}

/// Builds the schema over `store` (recompiled when models are uploaded);
/// `shutdown` ends its subscriptions; `metrics` counts operations, errors
/// and subscriptions; `library` holds the model documents; `rollouts` owns
/// configurations and rollouts.
pub fn build(
    store: Arc<dyn GraphStore>,
    limits: Limits,
    shutdown: super::live::Shutdown,
    metrics: Arc<crate::metrics::Metrics>,
    library: Arc<super::upload::ModelLibrary>,
    rollouts: Arc<crate::rollout::Rollouts>,
) -> Result<super::reload::LiveSchema, SchemaError> {
    super::reload::LiveSchema::new(super::reload::Parts {
        store,
        limits,
        shutdown,
        metrics,
        library,
        rollouts,
    })
}

/// The schema of `models` (ranked by `order`) over the parts' store.
pub(super) fn build_schema(
    parts: &super::reload::Parts,
    models: &crate::dtdl::ModelSet,
    order: &ModelOrder,
    reloader: super::reload::Reloader,
) -> Result<Schema, SchemaError> {
    let super::reload::Parts {
        store,
        limits,
        shutdown,
        metrics,
        library,
        rollouts,
    } = parts.clone();
    let (builder, twin_types) = assemble(models, order, reserved(), limits);
    let builder = builder
        .data(twin_types)
        .data(super::loader::twins(store.clone()))
        .data(super::loader::relationships(store.clone()))
        .data(super::loader::edges(store.clone()))
        .data(store)
        .data(shutdown)
        .data(metrics)
        .data(library)
        .data(rollouts)
        .data(reloader)
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity);
    let builder = if limits.introspection {
        builder
    } else {
        builder.disable_introspection()
    };
    builder.finish()
}

/// The names the schema takes whatever the models: the generic API's types
/// and root fields, the typed schema's fixed types and GraphQL's own, read
/// off the schema of no models (so the typed schema can never replace one
/// of them, and no list is kept by hand). Computed once.
pub fn reserved() -> &'static Reserved {
    static RESERVED: std::sync::OnceLock<Reserved> = std::sync::OnceLock::new();
    RESERVED.get_or_init(|| {
        let empty = crate::dtdl::ModelSet::default();
        let (builder, _) = assemble(
            &empty,
            &ModelOrder::default(),
            &Reserved::default(),
            Limits::default(),
        );
        let schema = builder
            .finish()
            .expect("the schema of no models is valid (a unit test builds it)");
        let registry = schema.registry();
        let fields = |root: Option<&str>| -> std::collections::HashSet<String> {
            root.and_then(|r| registry.types.get(r))
                .and_then(|t| t.fields())
                .map(|f| f.keys().cloned().collect())
                .unwrap_or_default()
        };
        let mut queries = fields(Some(registry.query_type.as_str()));
        queries.extend(["__typename", "__schema", "__type"].map(str::to_owned));
        Reserved {
            types: registry.types.keys().cloned().collect(),
            queries,
            mutations: fields(registry.mutation_type.as_deref()),
        }
    })
}

/// The twin type names the schema of `models` gives each Interface (all
/// of one rank).
pub fn type_names(
    models: &crate::dtdl::ModelSet,
) -> std::collections::BTreeMap<String, super::names::TypeNames> {
    let taken = &reserved().types;
    super::names::assign(models.interfaces().map(|i| i.id.as_str()), |n| {
        taken.contains(n)
    })
}

/// Every type and root field of the schema of `models`, the typed schema's
/// names avoiding `reserved`; no data attached.
fn assemble(
    models: &crate::dtdl::ModelSet,
    order: &ModelOrder,
    reserved: &Reserved,
    limits: Limits,
) -> (SchemaBuilder, TwinTypes) {
    let json = Scalar::new("JSON").description("Any JSON value.");
    let long = Scalar::new("Long")
        .description("A 64-bit integer (DTDL long). Serialized as a JSON number.");
    let date_time = Scalar::new("DateTime")
        .description("An RFC 3339 date-time, e.g. 2026-11-26T08:00:00Z.")
        .validator(|v| matches!(v, GqlValue::String(s) if parse_time(s).is_some()));

    let mut twin_iface = Interface::new("Twin").description("A digital twin.");
    for (name, ty, doc, _) in twin_fields() {
        twin_iface = twin_iface.field(InterfaceField::new(name, ty).description(doc));
    }
    let mut generic = Object::new("GenericTwin")
        .description("A twin seen through the model-agnostic API.")
        .implement("Twin");
    for (name, ty, doc, f) in twin_fields() {
        generic = generic.field(twin_field(name, ty, f).description(doc));
    }

    let edge = Object::new("TwinEdge")
        .field(Field::new(
            "cursor",
            TypeRef::named_nn(TypeRef::STRING),
            |ctx| {
                FieldFuture::new(async move {
                    let t = ctx.parent_value.try_downcast_ref::<Twin>()?;
                    Ok(Some(FieldValue::value(t.id.to_string())))
                })
            },
        ))
        .field(Field::new("node", TypeRef::named_nn("Twin"), |ctx| {
            FieldFuture::new(async move {
                let t = ctx.parent_value.try_downcast_ref::<Twin>()?;
                Ok(Some(twin_ref(types_of(&ctx)?, t)))
            })
        }));
    let page_info = Object::new("PageInfo")
        .field(Field::new(
            "hasNextPage",
            TypeRef::named_nn(TypeRef::BOOLEAN),
            |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<PageInfo>()?;
                    Ok(Some(FieldValue::value(p.has_next_page)))
                })
            },
        ))
        .field(Field::new(
            "endCursor",
            TypeRef::named(TypeRef::STRING),
            |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<PageInfo>()?;
                    Ok(p.end_cursor.clone().map(FieldValue::value))
                })
            },
        ));
    let connection = Object::new("TwinConnection")
        .field(Field::new(
            "edges",
            TypeRef::named_nn_list_nn("TwinEdge"),
            |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<Page>()?;
                    Ok(Some(FieldValue::list(
                        p.items.iter().cloned().map(FieldValue::owned_any),
                    )))
                })
            },
        ))
        .field(Field::new(
            "nodes",
            TypeRef::named_nn_list_nn("Twin"),
            |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<Page>()?;
                    let types = types_of(&ctx)?;
                    Ok(Some(FieldValue::list(
                        p.items.iter().map(|t| twin_ref(types, t)),
                    )))
                })
            },
        ))
        .field(Field::new(
            "pageInfo",
            TypeRef::named_nn("PageInfo"),
            |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<Page>()?;
                    Ok(Some(FieldValue::owned_any(PageInfo {
                        has_next_page: p.has_more,
                        end_cursor: p.items.last().map(|t| t.id.to_string()),
                    })))
                })
            },
        ));

    let max_page = limits.max_page;
    let query = Object::new("Query")
        .field(
            Field::new("twin", TypeRef::named("Twin"), |ctx| {
                FieldFuture::new(async move {
                    let store = store_of(&ctx)?;
                    let id = ctx.args.try_get("id")?.string()?;
                    let t = match time_arg(&ctx, "asOf")? {
                        Some(at) => store.twin_as_of(id, At::Time(at)).await,
                        None => store.twin(id).await,
                    }
                    .map_err(|e| store_error(&e))?;
                    let types = types_of(&ctx)?;
                    Ok(t.map(|t| twin_value(types, t)))
                })
            })
            .description("One twin by id; with `asOf`, as it was then (time travel).")
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("asOf", TypeRef::named("DateTime"))),
        )
        .field(
            Field::new("twins", TypeRef::named_nn("TwinConnection"), move |ctx| {
                FieldFuture::new(async move {
                    let store = store_of(&ctx)?;
                    let model = str_arg(&ctx, "model")?;
                    if let Some(m) = &model
                        && store.models().interface(m).is_none()
                    {
                        return Err(store_error(&crate::twin::TwinError::UnknownModel(m.clone()).into()));
                    }
                    let first = usize_arg(&ctx, "first", 100, max_page)?;
                    let after = str_arg(&ctx, "after")?;
                    let filter = json_arg(&ctx, "where")?
                        .map(|w| crate::twin::filter::Filter::parse(&w))
                        .transpose()
                        .map_err(|e| bad_request(format!("where: {e}")))?;
                    let (items, has_more) =
                        list_twins(store, model, filter, after, first).await?;
                    Ok(Some(FieldValue::owned_any(Page { items, has_more })))
                })
            })
            .description("Twins, optionally of a model (subtypes included), in id order, with cursor pagination.")
            .argument(InputValue::new("model", TypeRef::named(TypeRef::STRING)))
            .argument(InputValue::new("where", TypeRef::named("JSON")).description(
                "A predicate over id, model, version, reported.* and desired.*: \
                 {\"reported.power\": {\"gt\": 5}}; operators eq, ne, in, gt, gte, lt, lte, \
                 contains, startsWith, exists; combine with and, or, not.",
            ))
            .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING))),
        );

    let mutation = Object::new("Mutation")
        .field(
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
                    write_and_read(store, types_of(&ctx)?, op, &id).await
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("model", TypeRef::named_nn(TypeRef::STRING)))
            .argument(InputValue::new("reported", TypeRef::named("JSON")))
            .argument(InputValue::new("desired", TypeRef::named("JSON"))),
        )
        .field(
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
                    write_and_read(store, types_of(&ctx)?, op, &id).await
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("patch", TypeRef::named_nn("JSON")))
            .argument(InputValue::new("ifVersion", TypeRef::named("Long"))),
        )
        .field(
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
                    write_and_read(store, types_of(&ctx)?, op, &id).await
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("patch", TypeRef::named_nn("JSON")))
            .argument(InputValue::new("ifVersion", TypeRef::named("Long")))
            .argument(InputValue::new("sourceTime", TypeRef::named("DateTime"))),
        )
        .field(
            Field::new("deleteTwin", TypeRef::named_nn(TypeRef::BOOLEAN), |ctx| {
                FieldFuture::new(async move {
                    let store = store_of(&ctx)?;
                    let op = Op::DeleteTwin {
                        id: ctx.args.try_get("id")?.string()?.to_owned(),
                        expected_version: long_arg(&ctx, "ifVersion")?,
                    };
                    store
                        .apply(Batch::one(op), "anonymous")
                        .await
                        .map_err(|e| store_error(&e))?;
                    Ok(Some(FieldValue::value(true)))
                })
            })
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("ifVersion", TypeRef::named("Long"))),
        );

    let (query, mutation, extra) = super::graph_api::extend(query, mutation, limits);
    let (query, mutation, rollout_types) = super::rollout_api::extend(query, mutation);
    let (subscription, live_types) = super::live::subscription();
    let (progress, progress_types) = super::rollout_api::progress_subscription();
    let (drift, drift_types) = super::rollout_api::drift_subscription();
    let subscription = subscription.field(progress).field(drift);
    let compiled = super::typed::compile(models, order, reserved, limits.max_page);
    let (mut query, mut mutation) = (query, mutation);
    for f in compiled.queries {
        query = query.field(f);
    }
    for f in compiled.mutations {
        mutation = mutation.field(f);
    }
    let twin_types = compiled.twin_types;
    let mut builder =
        Schema::build("Query", Some("Mutation"), Some("Subscription")).register(subscription);
    for ty in extra
        .into_iter()
        .chain(rollout_types)
        .chain(progress_types)
        .chain(drift_types)
        .chain(live_types)
        .chain(compiled.types)
    {
        builder = builder.register(ty);
    }
    let builder = builder
        .register(json)
        .register(long)
        .register(date_time)
        .register(twin_iface)
        .register(generic)
        .register(edge)
        .register(page_info)
        .register(connection)
        .register(query)
        .register(mutation);
    (builder, twin_types)
}

/// What a `PageInfo` shows.
#[derive(Debug, Clone)]
pub(super) struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// A page of twins, as the connection types see it.
#[derive(Debug, Clone)]
struct Page {
    items: Vec<Twin>,
    has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reserved names are what the schema of no models registers: the
    /// generic API's types and root fields, the typed schema's fixed types,
    /// GraphQL's own.
    #[test]
    fn reserved_names_are_read_off_the_generic_api() {
        let r = reserved();
        for ty in [
            "Twin",
            "Rollout",
            "Configuration",
            "Event",
            "PageInfo",
            "IntFilter",
            "String",
            "__Type",
        ] {
            assert!(r.types.contains(ty), "{ty}");
        }
        for q in ["twins", "rollouts", "drift", "__typename"] {
            assert!(r.queries.contains(q), "{q}");
        }
        for m in ["createTwin", "startRollout", "uploadModels"] {
            assert!(r.mutations.contains(m), "{m}");
        }
        assert!(!r.types.contains("Pump"), "no model types");
    }
}
