//! Time series arguments and answers, shared by the `series` query and
//! the typed `<field>Series` fields: the window a request asks for (`from`,
//! `to`, `step`, `aggregate`), and its points as `SeriesPoint` values.

use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{FieldValue, ResolverContext, TypeRef};
use serde_json::json;

use super::context::time_arg;
use super::errors::{bad_request, error};
use crate::codes::Code;
use crate::series::{Aggregate, Series, SeriesError, Window};
use crate::twin::{Micros, format_time};

/// The arguments of a series field, after those naming the series.
pub(super) fn window_args() -> Vec<(&'static str, TypeRef, &'static str)> {
    vec![
        (
            "from",
            TypeRef::named_nn("DateTime"),
            "Start of the range (included), at source time.",
        ),
        (
            "to",
            TypeRef::named_nn("DateTime"),
            "End of the range (excluded).",
        ),
        (
            "step",
            TypeRef::named(TypeRef::STRING),
            "One point per step (`500ms`, `30s`, `5m`, `1h`, `1d`, or ISO 8601 `PT1M`; buckets aligned to multiples of it, empty ones left out); absent: the raw points.",
        ),
        (
            "aggregate",
            TypeRef::named("SeriesAggregate"),
            "How a bucket's values become one (default MEAN).",
        ),
    ]
}

/// `f` with the window arguments.
pub(super) fn with_window_args(f: async_graphql::dynamic::Field) -> async_graphql::dynamic::Field {
    window_args().into_iter().fold(f, |f, (n, ty, d)| {
        f.argument(async_graphql::dynamic::InputValue::new(n, ty).description(d))
    })
}

/// The points of `twin`'s `field` in the window the request's arguments
/// ask for, as `[SeriesPoint!]!`. The caller checked that it may see the
/// twin and that the field is a numeric one.
pub(super) async fn answer(
    ctx: &ResolverContext<'_>,
    twin: &str,
    field: &str,
) -> Result<Option<FieldValue<'static>>, Error> {
    let series = ctx
        .data::<Arc<Series>>()
        .map_err(|_| error(Code::SeriesUnavailable, "this server keeps no time series"))?;
    let window = window_of(ctx)?;
    let points = series
        .points(twin, field, window)
        .await
        .map_err(|e| series_error(&e))?;
    Ok(Some(FieldValue::list(points.into_iter().map(|p| {
        FieldValue::owned_any(json!({"time": format_time(p.time), "value": p.value}))
    }))))
}

/// The window the request's arguments ask for.
pub(super) fn window_of(ctx: &ResolverContext<'_>) -> Result<Window, Error> {
    let from = time_arg(ctx, "from")?.ok_or_else(|| bad_request("`from` is required"))?;
    let to = time_arg(ctx, "to")?.ok_or_else(|| bad_request("`to` is required"))?;
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
    let window = Window {
        from,
        to,
        step,
        aggregate,
    };
    window.check().map_err(|e| series_error(&e))?;
    Ok(window)
}

pub(super) fn series_error(e: &SeriesError) -> Error {
    error(e.code(), e.to_string())
}

/// A step as `<number><unit>` (ms, s, m, h, d) or ISO 8601 `PT…` (hours,
/// minutes, seconds), in microseconds.
pub(super) fn parse_step(s: &str) -> Result<Micros, Error> {
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
