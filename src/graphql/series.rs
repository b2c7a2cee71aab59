//! Trends: `series(twin, field, from, to, step, aggregate)`, the points of
//! one numeric field of one twin (raw, or one per step), a plain list of
//! `{ time value }` that Grafana's Infinity data source charts as it is.

use async_graphql::dynamic::{Enum, EnumItem, Field, FieldFuture, InputValue, TypeRef};

use super::builder::Builder;
use super::context::store_of;
use super::errors::{not_found, store_error};
use super::record::record;
use super::trend::{answer, series_error, window_of, with_window_args};
use crate::codes::Code;
use crate::series::{Aggregate, check_field};

pub(super) fn register(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    b.register(record(
        "SeriesPoint",
        "One point of a series: a reported value at its source time, or a bucket of them (its start, and their aggregate).",
        &[
            ("time", s("DateTime"), "The value's source time, or the start of its bucket."),
            ("value", s(TypeRef::FLOAT), "The value, or the bucket's aggregate."),
        ],
    ));
    let mut aggregates = Enum::new("SeriesAggregate")
        .description("How the values of one bucket of a series become one.");
    for a in Aggregate::ALL {
        aggregates = aggregates.item(EnumItem::new(a.name()).description(a.describe()));
    }
    b.register(aggregates);
    b.query(with_window_args(
        Field::new("series", TypeRef::named_nn_list_nn("SeriesPoint"), |ctx| {
            FieldFuture::new(async move {
                let twin = ctx.args.try_get("twin")?.string()?;
                let field = ctx.args.try_get("field")?.string()?;
                // Refused before anything is read.
                window_of(&ctx)?;
                // The caller's view of the store: a twin out of its scope
                // is not found, like any other read.
                let store = store_of(&ctx)?;
                let t = store
                    .twin(twin)
                    .await
                    .map_err(|e| store_error(&e))?
                    .ok_or_else(|| not_found(format!("twin {twin} not found"), Code::TwinNotFound))?;
                check_field(&store.models(), &t.model, field).map_err(|e| series_error(&e))?;
                answer(&ctx, twin, field).await
            })
        })
        .description("The series of one numeric telemetry or reported property of a twin (`component.field` for a Component's), at source time: points with `from <= time < to`, raw, or one per `step` (`30s`, `1m`, `1h`, `1d`, `500ms` or ISO 8601 `PT1M`; buckets aligned to multiples of the step) aggregated by `aggregate` (default MEAN); buckets without points are left out. At most 100,000 points.")
        .argument(InputValue::new("twin", s(TypeRef::ID)))
        .argument(InputValue::new("field", s(TypeRef::STRING)))
    ));
}
