//! Forecasts over the trends: `forecast(twin, field, from, to, step,
//! horizon, level)`, the next steps of a series fitted on its buckets in a
//! window (exponential smoothing with prediction intervals,
//! [`crate::alarms::detect::forecast`]); and `alarmOutlook`, when the
//! twin's limit rules (ABOVE, BELOW, OUTSIDE) would be met if the field
//! goes on as it did: "reaches its alarm limit in about 6 days".

use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, ResolverContext, TypeRef,
};
use serde_json::json;

use super::builder::Builder;
use super::context::{require, store_of};
use super::errors::{bad_request, error, not_found, store_error};
use super::record::{nested, record, twin_at_key};
use super::trend::{series_error, window_of, with_window_args};
use crate::alarms::Alarms;
use crate::alarms::detect::{Forecast, MIN_FORECAST_POINTS, crossing, forecast};
use crate::auth::Action;
use crate::codes::Code;
use crate::records::Condition;
use crate::series::{Series, check_field};
use crate::twin::{Micros, format_time};

/// The most steps a forecast looks ahead.
const MAX_HORIZON: i64 = 1000;

/// A fitted forecast of one field, and where its steps fall.
struct Fitted {
    forecast: Forecast,
    /// The time of the first forecast step, and of each next one.
    first: Micros,
    step: Micros,
    /// The end of the data fitted on (`to`).
    end: Micros,
}

/// Fits the forecast the request's arguments ask for, of `field` of
/// `twin` (a twin the caller may see, a numeric field).
async fn fitted(ctx: &ResolverContext<'_>, twin: &str, field: &str) -> Result<Fitted, Error> {
    require(ctx, Action::Read)?;
    let window = window_of(ctx)?;
    let step = window
        .step
        .ok_or_else(|| bad_request("a forecast needs a `step`: it forecasts one value per step"))?;
    let horizon = ctx.args.try_get("horizon")?.i64()?;
    if !(1..=MAX_HORIZON).contains(&horizon) {
        return Err(bad_request(format!("horizon: 1 to {MAX_HORIZON} steps")));
    }
    let level = match ctx.args.get("level") {
        Some(v) if !v.is_null() => v.f64()?,
        _ => 0.95,
    };
    if !(level > 0.0 && level < 1.0) {
        return Err(bad_request(
            "level: a probability above 0 and below 1 (0.95 when absent)",
        ));
    }
    let store = store_of(ctx)?;
    let t = store
        .twin(twin)
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(|| not_found(format!("twin {twin} not found"), Code::TwinNotFound))?;
    check_field(&store.models(), &t.model, field).map_err(|e| series_error(&e))?;
    let series = ctx
        .data::<Arc<Series>>()
        .map_err(|_| error(Code::SeriesUnavailable, "this server keeps no time series"))?;
    let points = series
        .points(twin, field, window)
        .await
        .map_err(|e| series_error(&e))?;
    let Some(last) = points.last().map(|p| p.time) else {
        return Err(bad_request(format!(
            "{twin} has no values of {field} between `from` and `to` to forecast from"
        )));
    };
    if points.len() < MIN_FORECAST_POINTS {
        return Err(bad_request(format!(
            "{} buckets of {field} between `from` and `to`; a forecast needs at least {MIN_FORECAST_POINTS}",
            points.len()
        )));
    }
    let values: Vec<f64> = points.iter().map(|p| p.value).collect();
    let horizon = usize::try_from(horizon).unwrap_or(1);
    let forecast = tokio::task::spawn_blocking(move || forecast(&values, horizon, level))
        .await
        .map_err(|e| error(Code::Internal, format!("forecast task: {e}")))?
        .map_err(bad_request)?;
    Ok(Fitted {
        forecast,
        first: last.saturating_add(step),
        step,
        end: window.to,
    })
}

fn at(f: &Fitted, i: usize) -> Micros {
    f.first
        .saturating_add(f.step.saturating_mul(i64::try_from(i).unwrap_or(i64::MAX)))
}

fn forecast_args(field: Field) -> Field {
    with_window_args(field)
        .argument(
            InputValue::new("horizon", TypeRef::named_nn(TypeRef::INT))
                .description("How many steps to forecast past the last bucket: 1 to 1000."),
        )
        .argument(
            InputValue::new("level", TypeRef::named(TypeRef::FLOAT)).description(
                "The probability each step's value falls in its band (0.95 when absent).",
            ),
        )
}

pub(super) fn register(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let f = |n: &str| TypeRef::named(n.to_owned());
    b.register(record(
        "ForecastPoint",
        "One step of a forecast: its time, the expected value, and the band the value falls in with the asked probability.",
        &[
            ("time", s("DateTime"), "The start of its step."),
            ("value", s(TypeRef::FLOAT), "The expected value."),
            ("lower", s(TypeRef::FLOAT), ""),
            ("upper", s(TypeRef::FLOAT), ""),
        ],
    ));
    b.register(
        record(
            "AlarmOutlook",
            "When a limit rule (ABOVE, BELOW, OUTSIDE) on the twin would be met if its field goes on as the forecast expects.",
            &[
                ("ruleName", s(TypeRef::STRING), ""),
                ("field", s(TypeRef::STRING), ""),
                ("severity", s("AlarmSeverity"), ""),
                ("twinId", s(TypeRef::ID), ""),
                (
                    "reachesAt",
                    f("DateTime"),
                    "The first step whose expected value meets the rule (null: not within the horizon).",
                ),
                (
                    "inSeconds",
                    f(TypeRef::FLOAT),
                    "From the end of the data (`to`) to `reachesAt`.",
                ),
                (
                    "earliestAt",
                    f("DateTime"),
                    "The first step whose band meets the rule: the earliest it may.",
                ),
                ("earliestInSeconds", f(TypeRef::FLOAT), ""),
            ],
        )
        .field(nested("condition", s("AlarmCondition"), "condition", ""))
        .field(twin_at_key("twin", "twinId", "")),
    );
    b.query(forecast_args(
        Field::new("forecast", TypeRef::named_nn_list_nn("ForecastPoint"), |ctx| {
            FieldFuture::new(async move {
                let twin = ctx.args.try_get("twin")?.string()?.to_owned();
                let field = ctx.args.try_get("field")?.string()?.to_owned();
                let f = fitted(&ctx, &twin, &field).await?;
                let points: Vec<_> = (0..f.forecast.point.len())
                    .map(|i| {
                        FieldValue::owned_any(json!({
                            "time": format_time(at(&f, i)),
                            "value": f.forecast.point[i],
                            "lower": f.forecast.lower[i],
                            "upper": f.forecast.upper[i],
                        }))
                    })
                    .collect();
                Ok(Some(FieldValue::list(points)))
            })
        })
        .description("A forecast of one numeric field of a twin: fitted on its series between `from` and `to` at `step` (the buckets' `aggregate`, MEAN by default; empty buckets are left out, at least 10 needed), the next `horizon` steps after the last bucket, by exponential smoothing (the best of the non-seasonal models), each with a prediction band.")
        .argument(InputValue::new("twin", s(TypeRef::ID)))
        .argument(InputValue::new("field", s(TypeRef::STRING))),
    ));
    b.query(forecast_args(
        Field::new("alarmOutlook", TypeRef::named_nn_list_nn("AlarmOutlook"), |ctx| {
            FieldFuture::new(async move {
                let twin = ctx.args.try_get("twin")?.string()?.to_owned();
                let alarms = ctx.data_opt::<Arc<Alarms>>().ok_or_else(|| {
                    error(Code::AlarmsUnavailable, "this server does not serve alarms")
                })?;
                require(&ctx, Action::Read)?;
                let store = store_of(&ctx)?;
                let t = store
                    .twin(&twin)
                    .await
                    .map_err(|e| store_error(&e))?
                    .ok_or_else(|| not_found(format!("twin {twin} not found"), Code::TwinNotFound))?;
                let models = store.models();
                let Some(iface) = models.interface(&t.model) else {
                    return Ok(Some(FieldValue::list(Vec::<FieldValue<'_>>::new())));
                };
                // The twin's limit rules, by field (one forecast a field).
                let mut rules: Vec<_> = alarms
                    .book()
                    .rules()
                    .map(|r| r.current().clone())
                    .filter(|r| iface.is_a(&r.model))
                    .filter(|r| {
                        matches!(
                            r.condition,
                            Condition::Above { .. } | Condition::Below { .. } | Condition::Outside { .. }
                        )
                    })
                    .collect();
                rules.sort_by(|a, b| a.name.cmp(&b.name));
                let mut out = Vec::new();
                let mut fields: Vec<(String, Fitted)> = Vec::new();
                for r in rules {
                    let Some(field) = r.condition.field() else {
                        continue;
                    };
                    if !fields.iter().any(|(f, _)| f == field) {
                        let fitted = fitted(&ctx, &twin, field).await?;
                        fields.push((field.to_owned(), fitted));
                    }
                    let Some((_, f)) = fields.iter().find(|(x, _)| x == field) else {
                        continue;
                    };
                    let Some((expected, possible)) = crossing(&f.forecast, &r.condition) else {
                        continue;
                    };
                    let seconds = |i: usize| (at(f, i) - f.end) as f64 / 1e6;
                    out.push(FieldValue::owned_any(json!({
                        "ruleName": r.name,
                        "field": field,
                        "severity": r.severity.name(),
                        "condition": super::views::condition_json(&r.condition),
                        "twinId": twin,
                        "reachesAt": expected.map(|i| format_time(at(f, i))),
                        "inSeconds": expected.map(seconds),
                        "earliestAt": possible.map(|i| format_time(at(f, i))),
                        "earliestInSeconds": possible.map(seconds),
                    })));
                }
                Ok(Some(FieldValue::list(out)))
            })
        })
        .description("For each limit rule (ABOVE, BELOW, OUTSIDE) on the twin's model, when the twin's field would meet it if it goes on as forecast (see `forecast`: fitted between `from` and `to` at `step`, `horizon` steps ahead).")
        .argument(InputValue::new("twin", s(TypeRef::ID))),
    ));
}
