//! `kpis(twin, from, to, below, runState)`: an asset's indicators over a
//! window, or its subtree's summed ([`crate::kpi`]), from the event log:
//! its reported run-state history and the alarms raised on it. The twins'
//! own `kpis` field, and the computation, are in `views`.

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputObject, InputValue, TypeRef};

use super::builder::Builder;
use super::context::{require, store_of};
use super::errors::{not_found, store_error};
use super::record::{nested, record, twin_at_key};
use super::views::{kpi_arguments, kpis_for};
use crate::auth::Action;
use crate::codes::Code;

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
    let field = Field::new("kpis", s("AssetKpis"), |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let twin = ctx.args.try_get("twin")?.string()?.to_owned();
                if store_of(&ctx)?.twin(&twin).await.map_err(|e| store_error(&e))?.is_none() {
                    return Err(not_found(format!("twin {twin} not found"), Code::TwinNotFound));
                }
                Ok(Some(FieldValue::owned_any(kpis_for(&ctx, &twin).await?)))
            })
        })
        .description("An asset's indicators over `from`..`to` (with `below`, summed over its subtree, at most 10,000 twins): availability, utilization, failures, MTBF and MTTR from its reported run state, and the alarms raised on it by severity.")
        .argument(InputValue::new("twin", s(TypeRef::ID)));
    b.query(kpi_arguments().into_iter().fold(field, Field::argument));
}
