//! Per-model aggregations of the typed schema: for an Interface `Pump`,
//!
//! ```graphql
//! pumpsAggregate(where: PumpWhere, under: ID): PumpAggregate!
//! type PumpAggregate { count: Int!  power: NumberAggregate  ...
//!                      groupBy(field: PumpGroupField!): [PumpGroup!]! }
//! type PumpGroup { key: JSON  count: Int!  power: NumberAggregate  ... }
//! ```
//!
//! a field per numeric property or telemetry (reported values), groups by
//! enum, boolean and string fields. The store counts (`GraphStore::aggregate`):
//! the whole is asked once however many of its fields are selected, each
//! `groupBy` once.

use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, Type,
    TypeRef,
};
use async_graphql::{Error, Value as GqlValue};
use serde_json::Value;

use crate::dtdl::model::Schema;
use crate::dtdl::vocab::Primitive;
use crate::graphql::context::{ready, store_of};
use crate::graphql::errors::{bad_request, store_error};
use crate::store::AggregateQuery;
use crate::twin::aggregate::{Aggregate, Measures, Numbers, Stats};

/// What a model's aggregate types offer: numeric fields and grouping fields
/// (GraphQL name, path).
#[derive(Debug, Default)]
pub(super) struct AggregateSpec {
    pub numeric: Vec<(String, Vec<String>)>,
    pub groups: Vec<(String, Vec<String>)>,
}

impl AggregateSpec {
    /// Adds a property of `schema` under the GraphQL name `name`.
    pub fn add(&mut self, name: &str, property: &str, schema: &Schema) {
        let path = vec!["reported".to_owned(), property.to_owned()];
        match schema {
            Schema::Primitive {
                primitive:
                    Primitive::Double | Primitive::Float | Primitive::Integer | Primitive::Long,
            } => self.numeric.push((name.to_owned(), path)),
            Schema::Primitive {
                primitive: Primitive::Boolean | Primitive::String,
            }
            | Schema::Enum { .. }
                if !matches!(name, "true" | "false" | "null") =>
            {
                self.groups.push((name.to_owned(), path))
            }
            _ => {}
        }
    }
}

/// The aggregation a `<plural>Aggregate` field asked for, answered lazily.
struct Asked {
    query: AggregateQuery,
    spec: Arc<AggregateSpec>,
    /// Per numeric field of the spec, its place among the measured ones
    /// (only the selected fields are measured).
    slots: Slots,
    whole: tokio::sync::OnceCell<Stats>,
}

/// One group of a `groupBy`.
struct Grouped {
    key: Value,
    stats: Stats,
    slots: Slots,
}

type Slots = Arc<Vec<Option<usize>>>;

/// The numeric fields of `spec` that `selected` names, as slots and paths.
fn select(spec: &AggregateSpec, selected: impl Fn(&str) -> bool) -> (Slots, Vec<Vec<String>>) {
    let mut slots = Vec::new();
    let mut paths = Vec::new();
    for (name, path) in &spec.numeric {
        if selected(name) {
            slots.push(Some(paths.len()));
            paths.push(path.clone());
        } else {
            slots.push(None);
        }
    }
    (Arc::new(slots), paths)
}

/// The `NumberAggregate` type (once per schema).
pub(super) fn number_type() -> Type {
    let number = |name: &str, doc: &str, f: fn(&Numbers) -> Option<f64>| {
        Field::new(name, TypeRef::named(TypeRef::FLOAT), move |ctx| {
            ready(
                ctx.parent_value
                    .try_downcast_ref::<Numbers>()
                    .map(|n| f(n).map(|x| FieldValue::value(GqlValue::from(x)))),
            )
        })
        .description(doc)
    };
    Object::new("NumberAggregate")
        .description("Aggregates of a numeric field over the twins that have a value there.")
        .field(
            Field::new("count", TypeRef::named_nn(TypeRef::INT), |ctx| {
                ready(
                    ctx.parent_value
                        .try_downcast_ref::<Numbers>()
                        .map(|n| Some(FieldValue::value(n.count as i64))),
                )
            })
            .description("How many twins have a value."),
        )
        .field(number("min", "The smallest value.", |n| n.min))
        .field(number("max", "The largest value.", |n| n.max))
        .field(number("avg", "The mean.", Numbers::avg))
        .field(number("sum", "The sum (0 without values).", |n| {
            Some(n.sum)
        }))
        .into()
}

/// Fields shared by `<Name>Aggregate` and `<Name>Group`: `count` and one
/// per numeric field, over the stats `stats_of` finds.
fn stat_fields<F>(mut object: Object, spec: &AggregateSpec, stats_of: F) -> Object
where
    F: for<'a> Fn(
            &'a ResolverContext<'a>,
        )
            -> futures_util::future::BoxFuture<'a, Result<(&'a Stats, &'a Slots), Error>>
        + Send
        + Sync
        + Copy
        + 'static,
{
    object = object.field(
        Field::new("count", TypeRef::named_nn(TypeRef::INT), move |ctx| {
            FieldFuture::new(async move {
                let (s, _) = stats_of(&ctx).await?;
                Ok(Some(FieldValue::value(s.count as i64)))
            })
        })
        .description("How many twins."),
    );
    for (i, (name, _)) in spec.numeric.iter().enumerate() {
        object = object.field(
            Field::new(name, TypeRef::named("NumberAggregate"), move |ctx| {
                FieldFuture::new(async move {
                    let (s, slots) = stats_of(&ctx).await?;
                    let at = slots.get(i).copied().flatten();
                    Ok(at
                        .and_then(|at| s.fields.get(at))
                        .cloned()
                        .map(FieldValue::owned_any))
                })
            })
            .description(format!("Aggregates of `{name}`.")),
        );
    }
    object
}

/// The stats of the whole an `Asked` names (counted on first use).
fn whole<'a>(
    ctx: &'a ResolverContext<'a>,
) -> futures_util::future::BoxFuture<'a, Result<(&'a Stats, &'a Slots), Error>> {
    Box::pin(async move {
        let asked = ctx.parent_value.try_downcast_ref::<Asked>()?;
        let stats = asked
            .whole
            .get_or_try_init(|| async {
                let store = store_of(ctx)?;
                let fields = asked
                    .spec
                    .numeric
                    .iter()
                    .zip(asked.slots.iter())
                    .filter(|(_, slot)| slot.is_some())
                    .map(|((_, p), _)| p.clone())
                    .collect();
                let q = AggregateQuery {
                    measures: Measures {
                        fields,
                        group_by: None,
                    },
                    ..asked.query.clone()
                };
                let a: Aggregate = store.aggregate(&q).await.map_err(|e| store_error(&e))?;
                Ok::<_, Error>(a.all)
            })
            .await?;
        Ok((stats, &asked.slots))
    })
}

fn group_stats<'a>(
    ctx: &'a ResolverContext<'a>,
) -> futures_util::future::BoxFuture<'a, Result<(&'a Stats, &'a Slots), Error>> {
    Box::pin(async move {
        let g = ctx.parent_value.try_downcast_ref::<Grouped>()?;
        Ok((&g.stats, &g.slots))
    })
}

/// `<Name>Aggregate`, `<Name>Group` and `<Name>GroupField` (when the model
/// has a field to group by).
pub(super) fn types(
    aggregate: &str,
    group: &str,
    group_field: &str,
    interface: &str,
    spec: &Arc<AggregateSpec>,
) -> Vec<Type> {
    let mut out = Vec::new();
    let mut agg = stat_fields(
        Object::new(aggregate).description(format!(
            "Counts and aggregates of {interface} twins (subtypes included), answered by the store."
        )),
        spec,
        whole,
    );
    if !spec.groups.is_empty() {
        let mut fields = Enum::new(group_field)
            .description(format!("A field of {interface} twins to group by."));
        for (name, _) in &spec.groups {
            fields = fields.item(EnumItem::new(name));
        }
        out.push(fields.into());
        let group_type = stat_fields(
            Object::new(group).description(format!(
                "The {interface} twins with one value of the grouping field."
            )),
            spec,
            group_stats,
        )
        .field(
            Field::new("key", TypeRef::named("JSON"), |ctx| {
                ready(
                    ctx.parent_value
                        .try_downcast_ref::<Grouped>()
                        .and_then(|g| {
                            GqlValue::from_json(g.key.clone())
                                .map(|v| Some(FieldValue::value(v)))
                                .map_err(|e| Error::new(e.to_string()))
                        }),
                )
            })
            .description("The value (null: the twins without one)."),
        );
        out.push(group_type.into());
        let spec_g = spec.clone();
        agg = agg.field(
            Field::new("groupBy", TypeRef::named_nn_list_nn(group), move |ctx| {
                let spec = spec_g.clone();
                FieldFuture::new(async move {
                    let asked = ctx.parent_value.try_downcast_ref::<Asked>()?;
                    let field = ctx.args.try_get("field")?.enum_name()?.to_owned();
                    let path = spec
                        .groups
                        .iter()
                        .find(|(n, _)| *n == field)
                        .map(|(_, p)| p.clone())
                        .ok_or_else(|| bad_request(format!("cannot group by {field}")))?;
                    let look = ctx.look_ahead();
                    let (slots, fields) = select(&spec, |name| look.field(name).exists());
                    let q = AggregateQuery {
                        measures: Measures {
                            fields,
                            group_by: Some(path),
                        },
                        ..asked.query.clone()
                    };
                    let store = store_of(&ctx)?;
                    let a = store.aggregate(&q).await.map_err(|e| store_error(&e))?;
                    Ok(Some(FieldValue::list(a.groups.into_iter().map(|g| {
                        FieldValue::owned_any(Grouped {
                            key: g.key,
                            stats: g.stats,
                            slots: slots.clone(),
                        })
                    }))))
                })
            })
            .description("The twins per value of a field, in value order (twins without a value last), each with the same aggregates.")
            .argument(InputValue::new("field", TypeRef::named_nn(group_field))),
        );
    }
    out.push(agg.into());
    out
}

/// The value of a `<plural>Aggregate` field: what to count, for its
/// fields (only the numeric fields the request selects are measured).
pub(super) fn asked(
    ctx: &ResolverContext<'_>,
    query: AggregateQuery,
    spec: Arc<AggregateSpec>,
) -> FieldValue<'static> {
    let look = ctx.look_ahead();
    let (slots, _) = select(&spec, |name| look.field(name).exists());
    FieldValue::owned_any(Asked {
        query,
        spec,
        slots,
        whole: tokio::sync::OnceCell::new(),
    })
}
