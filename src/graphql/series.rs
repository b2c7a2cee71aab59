//! Trends: `series(twin, field, from, to, step, aggregate)`, the points of
//! one numeric field of one twin (raw, or one per step), a plain list of
//! `{ time value }` that Grafana's Infinity data source charts as it is.

use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{Enum, EnumItem, Field, FieldFuture, FieldValue, InputValue, TypeRef};
use serde_json::json;

use super::builder::Builder;
use super::context::{store_of, time_arg};
use super::errors::{bad_request, error, not_found, store_error};
use super::record::record;
use crate::codes::Code;
use crate::series::{Aggregate, Series, SeriesError, Window, check_field};
use crate::twin::{Micros, format_time};

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
    b.query(
        Field::new("series", TypeRef::named_nn_list_nn("SeriesPoint"), |ctx| {
            FieldFuture::new(async move {
                let series = ctx.data::<Arc<Series>>().map_err(|_| {
                    error(
                        Code::SeriesUnavailable,
                        "this store keeps no time series (the Neo4j store does not yet)",
                    )
                })?;
                let twin = ctx.args.try_get("twin")?.string()?;
                let field = ctx.args.try_get("field")?.string()?;
                let from = time_arg(&ctx, "from")?.ok_or_else(|| bad_request("`from` is required"))?;
                let to = time_arg(&ctx, "to")?.ok_or_else(|| bad_request("`to` is required"))?;
                let step = match ctx.args.get("step") {
                    Some(v) if !v.is_null() => Some(parse_step(v.string()?)?),
                    _ => None,
                };
                let aggregate = match ctx.args.get("aggregate") {
                    Some(v) if !v.is_null() => {
                        let name = v.enum_name()?;
                        Aggregate::parse(name)
                            .ok_or_else(|| bad_request(format!("unknown aggregate {name}")))?
                    }
                    _ => Aggregate::Mean,
                };
                // The caller's view of the store: a twin out of its scope
                // is not found, like any other read.
                let store = store_of(&ctx)?;
                let t = store
                    .twin(twin)
                    .await
                    .map_err(|e| store_error(&e))?
                    .ok_or_else(|| not_found(format!("twin {twin} not found"), Code::TwinNotFound))?;
                check_field(&store.models(), &t.model, field).map_err(|e| series_error(&e))?;
                let window = Window {
                    from,
                    to,
                    step,
                    aggregate,
                };
                let points = series
                    .points(twin, field, window)
                    .await
                    .map_err(|e| series_error(&e))?;
                Ok(Some(FieldValue::list(points.into_iter().map(|p| {
                    FieldValue::owned_any(json!({"time": format_time(p.time), "value": p.value}))
                }))))
            })
        })
        .description("The series of one numeric telemetry or reported property of a twin (`component.field` for a Component's), at source time: points with `from <= time < to`, raw, or one per `step` (`30s`, `1m`, `1h`, `1d`, `500ms` or ISO 8601 `PT1M`; buckets aligned to multiples of the step) aggregated by `aggregate` (default MEAN); buckets without points are left out. At most 100,000 points.")
        .argument(InputValue::new("twin", s(TypeRef::ID)))
        .argument(InputValue::new("field", s(TypeRef::STRING)))
        .argument(InputValue::new("from", s("DateTime")))
        .argument(InputValue::new("to", s("DateTime")))
        .argument(InputValue::new("step", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("aggregate", TypeRef::named("SeriesAggregate"))),
    );
}

fn series_error(e: &SeriesError) -> Error {
    error(e.code(), e.to_string())
}

/// A step as `<number><unit>` (ms, s, m, h, d) or ISO 8601 `PT…` (hours,
/// minutes, seconds), in microseconds.
fn parse_step(s: &str) -> Result<Micros, Error> {
    let bad = || {
        bad_request(format!(
            "step {s:?}: expected a duration such as 30s, 5m, 1h, 1d, 500ms or PT1M"
        ))
    };
    let unit = |u: &str| -> Option<f64> {
        Some(match u {
            "ms" => 1e3,
            "s" => 1e6,
            "m" => 60e6,
            "h" => 3600e6,
            "d" => 86_400e6,
            _ => return None,
        })
    };
    let micros = if let Some(rest) = s.strip_prefix("PT") {
        let mut total = 0.0;
        let mut number = String::new();
        for c in rest.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
            } else {
                let n: f64 = number.parse().map_err(|_| bad())?;
                let u = match c {
                    'H' => 3600e6,
                    'M' => 60e6,
                    'S' => 1e6,
                    _ => return Err(bad()),
                };
                total += n * u;
                number.clear();
            }
        }
        if !number.is_empty() || rest.is_empty() {
            return Err(bad());
        }
        total
    } else {
        let at = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = s[..at].parse().map_err(|_| bad())?;
        n * unit(&s[at..]).ok_or_else(bad)?
    };
    if !(1.0..1e17).contains(&micros) {
        return Err(bad());
    }
    Ok(micros as Micros)
}

#[cfg(test)]
mod tests {
    use super::parse_step;

    #[test]
    fn steps_are_read_as_grafana_and_iso_8601_write_them() {
        let ok = |s: &str| parse_step(s).expect(s);
        assert_eq!(ok("30s"), 30_000_000);
        assert_eq!(ok("1m"), 60_000_000);
        assert_eq!(ok("1.5h"), 5_400_000_000);
        assert_eq!(ok("1d"), 86_400_000_000);
        assert_eq!(ok("500ms"), 500_000);
        assert_eq!(ok("PT1M"), 60_000_000);
        assert_eq!(ok("PT1H30M"), 5_400_000_000);
        for bad in ["", "1", "m", "1w", "PT", "PT5", "-1s", "0s", "1e3s", "PT1D"] {
            assert!(parse_step(bad).is_err(), "{bad:?}");
        }
    }
}
