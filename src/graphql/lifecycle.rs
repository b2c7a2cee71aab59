//! Asset lifecycles and diagnostic reports over
//! [`crate::lifecycle::Lifecycle`]: `lifecycle(twin)`, `lifecycles(state,
//! under)` (a connection of the twins in some states), `setLifecycle`
//! (operators and integrations, on twins in their scope); `diagnostics(twin)`
//! and `attachDiagnostic` (devices on their own twin too). The twins' own
//! `lifecycleState` field is in `views`.

use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{Enum, Field, FieldFuture, FieldValue, InputValue, TypeRef};
use serde_json::{Value, json};

use super::builder::Builder;
use super::connection::{Page, PageArgs, connection, with_page_arguments};
use super::context::{actor_of, json_arg, require, store_of, str_arg};
use super::errors::{bad_request, error, error_with, not_found, store_error};
use super::record::{nested, record, twin_at_key};
use super::views::{lifecycle_json, lifecycle_of};
use crate::auth::Action;
use crate::codes::Code;
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::records::{LifecycleState, Record};
use crate::twin::{Change, Event, format_time};

/// Diagnostics a `diagnostics` list returns at most.
const MAX_DIAGNOSTICS: i64 = 1000;

fn service<'a>(
    ctx: &async_graphql::dynamic::ResolverContext<'a>,
) -> Result<&'a Arc<Lifecycle>, Error> {
    lifecycle_of(ctx).ok_or_else(|| {
        error(
            Code::LifecycleUnavailable,
            "this server does not serve lifecycles",
        )
    })
}

fn lifecycle_error(e: &LifecycleError) -> Error {
    match e {
        LifecycleError::Store(s) => store_error(s),
        LifecycleError::Invalid { path, .. } | LifecycleError::Diagnostic { path, .. } => {
            let path = path.clone();
            error_with(e.code(), e.to_string(), move |ext| {
                ext.set("path", path.as_str())
            })
        }
        _ => {
            let current = e.current().map(LifecycleState::name);
            error_with(e.code(), e.to_string(), move |ext| {
                ext.set("current", current)
            })
        }
    }
}

/// The twin, if the caller may see it; `twin_not_found` otherwise.
async fn seen(ctx: &async_graphql::dynamic::ResolverContext<'_>, twin: &str) -> Result<(), Error> {
    store_of(ctx)?
        .twin(twin)
        .await
        .map_err(|e| store_error(&e))?
        .map(|_| ())
        .ok_or_else(|| not_found(format!("twin {twin} not found"), Code::TwinNotFound))
}

fn state_arg(v: async_graphql::dynamic::ValueAccessor<'_>) -> Result<LifecycleState, Error> {
    let name = v.enum_name()?;
    LifecycleState::parse(name)
        .ok_or_else(|| bad_request(format!("unknown lifecycle state {name}")))
}

/// A diagnostic report's event as a JSON record (the `Diagnostic` type).
fn diagnostic_json(e: &Event) -> Option<Value> {
    let Change::Record(Record::DiagnosticReported {
        twin,
        summary,
        report,
    }) = &e.change
    else {
        return None;
    };
    Some(json!({
        "seq": e.seq,
        "twinId": twin,
        "at": format_time(e.time),
        "by": e.actor,
        "summary": summary,
        "report": report,
    }))
}

pub(super) fn register(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let f = |n: &str| TypeRef::named(n.to_owned());
    b.register(
        Enum::new("LifecycleState")
            .description("Where an asset is in its life: PLANNED → COMMISSIONED → IN_SERVICE ⇄ MAINTENANCE; any → DECOMMISSIONED (final).")
            .items(LifecycleState::ALL.map(LifecycleState::name)),
    );
    b.register(record(
        "LifecycleTransition",
        "A move to a lifecycle state.",
        &[
            ("state", s("LifecycleState"), ""),
            ("at", s("DateTime"), ""),
            ("by", s(TypeRef::STRING), "Who moved it."),
            ("reason", f(TypeRef::STRING), ""),
            ("seq", s("Long"), "Its event's sequence number."),
        ],
    ));
    b.register(
        record(
            "TwinLifecycle",
            "An asset's lifecycle state and its recent transitions (the twin's history has them all).",
            &[
                ("twinId", s(TypeRef::ID), ""),
                ("state", s("LifecycleState"), ""),
                ("since", s("DateTime"), ""),
                ("changedBy", s(TypeRef::STRING), ""),
                ("reason", f(TypeRef::STRING), ""),
            ],
        )
        .field(nested(
            "history",
            TypeRef::named_nn_list_nn("LifecycleTransition"),
            "history",
            "Its last 100 transitions, oldest first.",
        ))
        .field(twin_at_key("twin", "twinId", "")),
    );
    b.register(
        record(
            "Diagnostic",
            "A diagnostic report attached to a twin (by a device or an operator); part of the twin's history.",
            &[
                ("seq", s("Long"), "Its event's sequence number."),
                ("twinId", s(TypeRef::ID), ""),
                ("at", s("DateTime"), ""),
                ("by", s(TypeRef::STRING), "Who attached it."),
                ("summary", f(TypeRef::STRING), ""),
                ("report", s("JSON"), "The report, a JSON object."),
            ],
        )
        .field(twin_at_key("twin", "twinId", "")),
    );
    let [conn, edge] = connection::<Value>(
        "TwinLifecycleConnection",
        "TwinLifecycleEdge",
        "TwinLifecycle",
        |_, v| Ok(FieldValue::borrowed_any(v)),
        "The twin's lifecycle.",
        Vec::new(),
        Some((
            TypeRef::named_nn(TypeRef::INT),
            "Twins in the whole list (the caller's view).",
        )),
    );
    b.register(conn);
    b.register(edge);
    queries(b);
    mutations(b);
}

fn queries(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    b.query(
        Field::new("lifecycle", TypeRef::named("TwinLifecycle"), |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let twin = ctx.args.try_get("twin")?.string()?.to_owned();
                if store_of(&ctx)?.twin(&twin).await.map_err(|e| store_error(&e))?.is_none() {
                    return Ok(None);
                }
                let entry = service(&ctx)?.book().get(&twin).cloned();
                Ok(entry.map(|e| FieldValue::owned_any(lifecycle_json(&e))))
            })
        })
        .description("A twin's lifecycle (null if it was never given one, or is not in the caller's view); the same as its `lifecycleState` field.")
        .argument(InputValue::new("twin", s(TypeRef::ID))),
    );
    let max_page = b.limits.max_page;
    b.query(with_page_arguments(
        Field::new("lifecycles", s("TwinLifecycleConnection"), move |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let args = PageArgs::read(&ctx, max_page)?;
                let states: Vec<LifecycleState> = ctx
                    .args
                    .try_get("state")?
                    .list()?
                    .iter()
                    .map(state_arg)
                    .collect::<Result<_, _>>()?;
                let under = str_arg(&ctx, "under")?;
                let mut ids: Vec<String> = {
                    let book = service(&ctx)?.book();
                    states
                        .iter()
                        .flat_map(|s| book.in_state(*s, None))
                        .map(str::to_owned)
                        .collect()
                };
                ids.sort_unstable();
                let store = store_of(&ctx)?;
                // Twins that exist in the caller's view (and under `under`).
                let existing = store
                    .twins_by_ids(&ids)
                    .await
                    .map_err(|e| store_error(&e))?;
                let mut kept: Vec<String> = Vec::with_capacity(existing.len());
                for t in existing {
                    if let Some(u) = &under
                        && *t.id != **u
                        && !store
                            .ancestors(&t.id)
                            .await
                            .map_err(|e| store_error(&e))?
                            .contains(u)
                    {
                        continue;
                    }
                    kept.push(t.id.to_string());
                }
                kept.sort_unstable();
                let items: Vec<Value> = {
                    let book = service(&ctx)?.book();
                    kept.iter()
                        .filter_map(|id| book.get(id).map(lifecycle_json))
                        .collect()
                };
                let id_of = |v: &Value| v["twinId"].as_str().unwrap_or_default().to_owned();
                let (after, before) = (args.after.clone(), args.before.clone());
                let page = Page::of_sorted(
                    items,
                    &args,
                    id_of,
                    |v| {
                        after
                            .as_deref()
                            .is_none_or(|c| v["twinId"].as_str().is_some_and(|id| id > c))
                    },
                    |v| {
                        before
                            .as_deref()
                            .is_none_or(|c| v["twinId"].as_str().is_some_and(|id| id < c))
                    },
                );
                Ok(Some(FieldValue::owned_any(page)))
            })
        })
        .description(
            "The twins in some lifecycle states, in the caller's view, by id. A Relay connection.",
        )
        .argument(InputValue::new(
            "state",
            TypeRef::named_nn_list_nn("LifecycleState"),
        ))
        .argument(
            InputValue::new("under", TypeRef::named(TypeRef::ID))
                .description("Only this twin and the twins it contains."),
        ),
    ));
    b.query(
        Field::new("diagnostics", TypeRef::named_nn_list_nn("Diagnostic"), |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let twin = ctx.args.try_get("twin")?.string()?.to_owned();
                let last = match ctx.args.get("last") {
                    Some(v) if !v.is_null() => v.i64()?,
                    _ => 20,
                };
                if !(1..=MAX_DIAGNOSTICS).contains(&last) {
                    return Err(bad_request(format!("last: 1 to {MAX_DIAGNOSTICS}")));
                }
                seen(&ctx, &twin).await?;
                let events = store_of(&ctx)?
                    .twin_events(&twin, None, None)
                    .await
                    .map_err(|e| store_error(&e))?;
                let list: Vec<FieldValue<'_>> = events
                    .iter()
                    .rev()
                    .filter_map(diagnostic_json)
                    .take(usize::try_from(last).unwrap_or(20))
                    .map(FieldValue::owned_any)
                    .collect();
                Ok(Some(FieldValue::list(list)))
            })
        })
        .description("The diagnostic reports attached to a twin, newest first (they are in its `history` too).")
        .argument(InputValue::new("twin", s(TypeRef::ID)))
        .argument(InputValue::new("last", TypeRef::named(TypeRef::INT)).description("How many, newest first (20 when absent, at most 1000).")),
    );
}

fn mutations(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    b.mutation(
        Field::new("setLifecycle", s("TwinLifecycle"), |ctx| {
            FieldFuture::new(async move {
                let twin = ctx.args.try_get("twin")?.string()?.to_owned();
                let state = state_arg(ctx.args.try_get("state")?)?;
                let expected = match ctx.args.get("expected") {
                    Some(v) if !v.is_null() => Some(state_arg(v)?),
                    _ => None,
                };
                let reason = str_arg(&ctx, "reason")?;
                require(&ctx, Action::Lifecycle)?;
                seen(&ctx, &twin).await?;
                let entry = service(&ctx)?
                    .set(&twin, state, reason, expected, &actor_of(&ctx))
                    .await
                    .map_err(|e| lifecycle_error(&e))?;
                Ok(Some(FieldValue::owned_any(lifecycle_json(&entry))))
            })
        })
        .description("Moves an asset to a lifecycle state (PLANNED → COMMISSIONED → IN_SERVICE ⇄ MAINTENANCE; any → DECOMMISSIONED, final; the first state may be any). With `expected`, only from that state (`lifecycle_conflict` otherwise). Recorded with who and why; moving to the state it is in records nothing.")
        .argument(InputValue::new("twin", s(TypeRef::ID)))
        .argument(InputValue::new("state", s("LifecycleState")))
        .argument(InputValue::new("reason", TypeRef::named(TypeRef::STRING)).description("Why (at most 1024 bytes)."))
        .argument(InputValue::new("expected", TypeRef::named("LifecycleState")).description("The state it must be in now.")),
    );
    b.mutation(
        Field::new("attachDiagnostic", s("Diagnostic"), |ctx| {
            FieldFuture::new(async move {
                let twin = ctx.args.try_get("twin")?.string()?.to_owned();
                let report = json_arg(&ctx, "report")?.unwrap_or(Value::Null);
                let summary = str_arg(&ctx, "summary")?;
                require(&ctx, Action::Diagnostics)?;
                seen(&ctx, &twin).await?;
                let event = service(&ctx)?
                    .report(&twin, summary, report, &actor_of(&ctx))
                    .await
                    .map_err(|e| lifecycle_error(&e))?;
                diagnostic_json(&event)
                    .map(|v| Some(FieldValue::owned_any(v)))
                    .ok_or_else(|| error(Code::Internal, "the report was recorded as something else"))
            })
        })
        .description("Attaches a diagnostic report (a JSON object of at most 64 KiB, and a one-line summary) to a twin: a device on its own twin, an operator or an integration on twins in their scope. Part of the twin's history.")
        .argument(InputValue::new("twin", s(TypeRef::ID)))
        .argument(InputValue::new("report", s("JSON")))
        .argument(InputValue::new("summary", TypeRef::named(TypeRef::STRING))),
    );
}
