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

    fn measures(&self, group_by: Option<Vec<String>>) -> Measures {
        Measures {
            fields: self.numeric.iter().map(|(_, p)| p.clone()).collect(),
            group_by,
        }
    }
}

/// The aggregation a `<plural>Aggregate` field asked for, answered lazily.
struct Asked {
    query: AggregateQuery,
    spec: Arc<AggregateSpec>,
    whole: tokio::sync::OnceCell<Stats>,
}

/// One group of a `groupBy`.
struct Grouped {
    key: Value,
    stats: Stats,
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
        ) -> futures_util::future::BoxFuture<'a, Result<&'a Stats, Error>>
        + Send
        + Sync
        + Copy
        + 'static,
{
    object = object.field(
        Field::new("count", TypeRef::named_nn(TypeRef::INT), move |ctx| {
            FieldFuture::new(async move {
                let s = stats_of(&ctx).await?;
                Ok(Some(FieldValue::value(s.count as i64)))
            })
        })
        .description("How many twins."),
    );
    for (i, (name, _)) in spec.numeric.iter().enumerate() {
        object = object.field(
            Field::new(name, TypeRef::named("NumberAggregate"), move |ctx| {
                FieldFuture::new(async move {
                    let s = stats_of(&ctx).await?;
                    Ok(s.fields.get(i).cloned().map(FieldValue::owned_any))
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
) -> futures_util::future::BoxFuture<'a, Result<&'a Stats, Error>> {
    Box::pin(async move {
        let asked = ctx.parent_value.try_downcast_ref::<Asked>()?;
        asked
            .whole
            .get_or_try_init(|| async {
                let store = store_of(ctx)?;
                let q = AggregateQuery {
                    measures: asked.spec.measures(None),
                    ..asked.query.clone()
                };
                let a: Aggregate = store.aggregate(&q).await.map_err(|e| store_error(&e))?;
                Ok::<_, Error>(a.all)
            })
            .await
    })
}

fn group_stats<'a>(
    ctx: &'a ResolverContext<'a>,
) -> futures_util::future::BoxFuture<'a, Result<&'a Stats, Error>> {
    Box::pin(async move { Ok(&ctx.parent_value.try_downcast_ref::<Grouped>()?.stats) })
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
                    let q = AggregateQuery {
                        measures: spec.measures(Some(path)),
                        ..asked.query.clone()
                    };
                    let store = store_of(&ctx)?;
                    let a = store.aggregate(&q).await.map_err(|e| store_error(&e))?;
                    Ok(Some(FieldValue::list(a.groups.into_iter().map(|g| {
                        FieldValue::owned_any(Grouped {
                            key: g.key,
                            stats: g.stats,
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

/// The value of a `<plural>Aggregate` field: what to count, for its fields.
pub(super) fn asked(query: AggregateQuery, spec: Arc<AggregateSpec>) -> FieldValue<'static> {
    FieldValue::owned_any(Asked {
        query,
        spec,
        whole: tokio::sync::OnceCell::new(),
    })
}
