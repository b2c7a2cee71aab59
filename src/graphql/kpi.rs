//! `kpis(twin, from, to, below, runState)`: an asset's indicators over a
//! window, or its subtree's summed ([`crate::kpi`]), from the event log:
//! its reported run-state history and the alarms raised on it.

use std::collections::HashMap;

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputObject, InputValue, TypeRef};
use serde_json::{Value, json};

use super::builder::Builder;
use super::context::{json_arg, require, store_of, time_arg};
use super::errors::{bad_request, not_found, store_error};
use super::record::{nested, record, twin_at_key};
use crate::auth::Action;
use crate::codes::Code;
use crate::kpi::{Kpis, RunStates, count_alarms, of_twin};
use crate::records::ALARMS_STREAM;
use crate::twin::{format_time, now_micros};

/// Records of the alarms stream read per store call.
const PAGE: usize = 10_000;

/// The most twins a subtree's indicators are computed over.
const MAX_ASSETS: usize = 10_000;

fn seconds(m: i64) -> f64 {
    m as f64 / 1e6
}

fn kpis_json(twin: &str, from: i64, to: i64, k: &Kpis) -> Value {
    let [critical, high, medium, low] = k.alarms;
    json!({
        "twinId": twin,
        "from": format_time(from),
        "to": format_time(to),
        "assets": k.assets,
        "observedSeconds": seconds(k.observed),
        "runningSeconds": seconds(k.running),
        "faultSeconds": seconds(k.fault),
        "availability": k.availability(),
        "utilization": k.utilization(),
        "failures": k.failures,
        "repairs": k.repairs,
        "mtbfSeconds": k.mtbf().map(seconds),
        "mttrSeconds": k.mttr().map(seconds),
        "alarms": {
            "critical": critical, "high": high, "medium": medium, "low": low,
            "total": critical + high + medium + low,
        },
    })
}

/// The run states a request names (the default: `runState`, running
/// `running`, fault `fault`).
fn run_states(v: Option<Value>) -> Result<RunStates, async_graphql::Error> {
    let mut s = RunStates::default();
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(s);
    };
    if let Some(f) = v.get("field").and_then(Value::as_str) {
        s.field = f.to_owned();
    }
    for (key, into) in [("running", &mut s.running), ("fault", &mut s.fault)] {
        match v.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(values)) if !values.is_empty() => *into = values.clone(),
            Some(_) => {
                return Err(bad_request(format!(
                    "runState.{key}: a non-empty list of the field's values"
                )));
            }
        }
    }
    Ok(s)
}

pub(super) fn register(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let f = |n: &str| TypeRef::named(n.to_owned());
    b.register(
        record(
            "AssetKpis",
            "An asset's indicators over a window (with `below`, summed over it and the twins it contains: durations and counts add up, the ratios are of the sums), from the event log.",
            &[
                ("twinId", s(TypeRef::ID), ""),
                ("from", s("DateTime"), ""),
                ("to", s("DateTime"), "The window's end (now, if it was asked for later)."),
                ("assets", s(TypeRef::INT), "Assets counted: those that reported their run state by the window's end."),
                ("observedSeconds", s(TypeRef::FLOAT), "Time within the window with a known run state (from an asset's first report)."),
                ("runningSeconds", s(TypeRef::FLOAT), ""),
                ("faultSeconds", s(TypeRef::FLOAT), ""),
                ("availability", f(TypeRef::FLOAT), "Share of the observed time not in a fault state (null: nothing observed)."),
                ("utilization", f(TypeRef::FLOAT), "Share of the observed time in a running state."),
                ("failures", s(TypeRef::INT), "Entries into a fault state within the window."),
                ("repairs", s(TypeRef::INT), "Fault periods that ended within the window."),
                ("mtbfSeconds", f(TypeRef::FLOAT), "Mean time between failures: time not in fault per failure (null: no failure)."),
                ("mttrSeconds", f(TypeRef::FLOAT), "Mean time to repair: the mean length of the fault periods that ended within the window (null: none did)."),
            ],
        )
        .field(nested(
            "alarms",
            s("AlarmCounts"),
            "alarms",
            "Alarms raised within the window, by severity.",
        ))
        .field(twin_at_key("twin", "twinId", "")),
    );
    b.register(
        InputObject::new("RunStateInput")
            .description("Which reported field is an asset's run state, and which of its values are running and fault states.")
            .field(InputValue::new("field", TypeRef::named(TypeRef::STRING)).description("`runState` when absent (`component.field` for a Component's)."))
            .field(InputValue::new("running", TypeRef::named_nn_list("JSON")).description("[\"running\"] when absent."))
            .field(InputValue::new("fault", TypeRef::named_nn_list("JSON")).description("[\"fault\"] when absent.")),
    );
    b.query(
        Field::new("kpis", s("AssetKpis"), |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let twin = ctx.args.try_get("twin")?.string()?.to_owned();
                let from = time_arg(&ctx, "from")?.ok_or_else(|| bad_request("`from` is required"))?;
                let to = time_arg(&ctx, "to")?.ok_or_else(|| bad_request("`to` is required"))?;
                if to <= from {
                    return Err(bad_request("`to` must be later than `from`"));
                }
                let to = to.min(now_micros()).max(from);
                let below = match ctx.args.get("below") {
                    Some(v) if !v.is_null() => v.boolean()?,
                    _ => false,
                };
                let states = run_states(json_arg(&ctx, "runState")?)?;
                let store = store_of(&ctx)?;
                if store.twin(&twin).await.map_err(|e| store_error(&e))?.is_none() {
                    return Err(not_found(format!("twin {twin} not found"), Code::TwinNotFound));
                }
                let mut ids = vec![twin.clone()];
                if below {
                    let reached = store
                        .descendants(&twin, crate::twin::query::DEFAULT_MAX_DEPTH)
                        .await
                        .map_err(|e| store_error(&e))?;
                    ids.extend(reached.into_iter().map(|r| r.twin));
                    ids.sort_unstable();
                    ids.dedup();
                    if ids.len() > MAX_ASSETS {
                        return Err(bad_request(format!(
                            "{} twins under {twin}; indicators are computed over at most {MAX_ASSETS}: ask for a smaller subtree",
                            ids.len()
                        )));
                    }
                }
                let mut per: HashMap<String, Kpis> = HashMap::new();
                for id in &ids {
                    let events = store
                        .twin_events(id, None, None)
                        .await
                        .map_err(|e| store_error(&e))?;
                    per.insert(id.clone(), of_twin(id, &events, &states, from, to));
                }
                let mut seq = 0;
                loop {
                    let page = store
                        .stream_events(ALARMS_STREAM, seq, PAGE)
                        .await
                        .map_err(|e| store_error(&e))?;
                    count_alarms(&page, &mut per, from, to);
                    match page.last() {
                        Some(last) if page.len() == PAGE => seq = last.seq,
                        _ => break,
                    }
                }
                let mut total = Kpis::default();
                for k in per.values() {
                    total.add(k);
                }
                Ok(Some(FieldValue::owned_any(kpis_json(&twin, from, to, &total))))
            })
        })
        .description("An asset's indicators over `from`..`to` (with `below`, summed over its subtree, at most 10,000 twins): availability, utilization, failures, MTBF and MTTR from its reported run state, and the alarms raised on it by severity.")
        .argument(InputValue::new("twin", s(TypeRef::ID)))
        .argument(InputValue::new("from", s("DateTime")))
        .argument(InputValue::new("to", s("DateTime")))
        .argument(InputValue::new("below", TypeRef::named(TypeRef::BOOLEAN)).description("Also the twins it contains (false when absent)."))
        .argument(InputValue::new("runState", TypeRef::named("RunStateInput"))),
    );
}
