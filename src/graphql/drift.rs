//! Drift: properties whose reported value differs from the value the
//! configuration deciding them sets, queried and followed live.

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, Object, SubscriptionField, SubscriptionFieldFuture,
    TypeRef,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::builder::{Builder, Shutdown};
use super::context::{access_of, rollouts_of, store_of, str_arg, usize_arg};
use super::errors::store_error;
use super::record::{record, records};
use crate::twin::format_time;

fn drift_json(d: &crate::rollout::drift::Drift, now: crate::twin::Micros) -> Value {
    json!({
        "twin": d.twin,
        "path": d.path,
        "configuration": d.configuration,
        "version": d.version,
        "desired": d.desired,
        "reported": d.reported,
        "since": format_time(d.since),
        "seconds": ((now - d.since).max(0) as f64) / 1e6,
    })
}

const DRIFT_FIELDS: [(&str, &str, &str); 7] = [
    ("twin", "ID", "The twin."),
    (
        "path",
        "String",
        "The property: `name` or `component.name`.",
    ),
    (
        "configuration",
        "String",
        "The configuration that decides its desired value.",
    ),
    ("version", "Int", "Its version."),
    ("desired", "JSON", ""),
    ("reported", "JSON", ""),
    (
        "since",
        "DateTime",
        "When it started drifting (for drifts older than the server's start: the last change of the property).",
    ),
];

fn drift_record(name: &str, doc: &str, extra: &[(&str, TypeRef, &str)]) -> Object {
    let mut fields: Vec<(&str, TypeRef, &str)> = DRIFT_FIELDS
        .iter()
        .map(|(n, t, d)| (*n, TypeRef::named_nn(*t), *d))
        .collect();
    fields.extend(extra.iter().cloned());
    record(name, doc, &fields)
}

pub(super) fn register(b: &mut Builder) {
    let drift = drift_record(
        "Drift",
        "A property whose reported value differs from the value its configuration decides (twins a rollout is still waiting for are not drifting).",
        &[(
            "seconds",
            TypeRef::named_nn(TypeRef::FLOAT),
            "How long it has drifted.",
        )],
    );
    b.query(
        Field::new("drift", TypeRef::named_nn_list_nn("Drift"), |ctx| {
            FieldFuture::new(async move {
                let configuration = str_arg(&ctx, "configuration")?;
                let model = str_arg(&ctx, "model")?;
                let under = str_arg(&ctx, "under")?;
                let first = usize_arg(&ctx, "first", 100, 10_000)?;
                let after = str_arg(&ctx, "after")?;
                let r = rollouts_of(&ctx)?;
                let mut found: Vec<crate::rollout::drift::Drift> = {
                    let state = r.state();
                    state
                        .drifts
                        .all()
                        .into_iter()
                        .filter(|d| configuration.as_ref().is_none_or(|c| *c == d.configuration))
                        .filter(|d| state.runs.in_flight(&d.twin).is_none())
                        .filter(|d| {
                            after.as_ref().is_none_or(|a| format!("{}\n{}", d.twin, d.path) > *a)
                        })
                        .collect()
                };
                let store = store_of(&ctx)?;
                if let Some(m) = &model {
                    let models = store.models();
                    let ids: Vec<String> = found.iter().map(|d| d.twin.clone()).collect();
                    let of_model: std::collections::HashSet<String> = store
                        .twins_by_ids(&ids)
                        .await
                        .map_err(|e| store_error(&e))?
                        .into_iter()
                        .filter(|t| models.interface(&t.model).is_some_and(|i| i.is_a(m)))
                        .map(|t| t.id.to_string())
                        .collect();
                    found.retain(|d| of_model.contains(&d.twin));
                }
                if let Some(root) = &under {
                    let inside: std::collections::HashSet<String> = store
                        .descendants(root, crate::twin::query::DEFAULT_MAX_DEPTH)
                        .await
                        .map_err(|e| store_error(&e))?
                        .into_iter()
                        .map(|h| h.twin)
                        .collect();
                    found.retain(|d| inside.contains(&d.twin));
                }
                if let Some(access) = access_of(&ctx).filter(|a| !a.store.unscoped()) {
                    let twins: Vec<&str> = found.iter().map(|d| d.twin.as_str()).collect();
                    let inside = access.store.filter(&twins).await.map_err(|e| store_error(&e))?;
                    found.retain(|d| inside.contains(&d.twin));
                }
                let now = crate::twin::now_micros();
                let items: Vec<Value> = found
                    .iter()
                    .take(first)
                    .map(|d| drift_json(d, now))
                    .collect();
                Ok(Some(records(items)))
            })
        })
        .description("Drifting properties (by twin, then path), optionally of one configuration, of twins of a model (subtypes included), or under a twin; page with `first` and `after` (`twin` + newline + `path` of the last one).")
        .argument(InputValue::new("configuration", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("model", TypeRef::named(TypeRef::STRING)))
        .argument(InputValue::new("under", TypeRef::named(TypeRef::ID)))
        .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
        .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING))),
    );
    b.register(drift);
    let change = drift_record(
        "DriftChange",
        "A property starting or ending to drift.",
        &[
            (
                "drifting",
                TypeRef::named_nn(TypeRef::BOOLEAN),
                "True when it starts, false when it ends.",
            ),
            ("time", TypeRef::named_nn("DateTime"), ""),
        ],
    );
    b.subscription(SubscriptionField::new("driftChanged", TypeRef::named_nn("DriftChange"), |ctx| {
        SubscriptionFieldFuture::new(async move {
            let configuration = str_arg(&ctx, "configuration")?;
            let twin = str_arg(&ctx, "twin")?;
            let rx = rollouts_of(&ctx)?.drift_changes();
            let closing = ctx.data::<Shutdown>()?.clone().triggered();
            let guard = access_of(&ctx)
                .filter(|a| !a.store.unscoped())
                .map(|a| a.store.clone());
            let wanted = move |c: &crate::rollout::drift::DriftChange| {
                configuration.as_ref().is_none_or(|x| *x == c.drift.configuration)
                    && twin.as_ref().is_none_or(|x| *x == c.drift.twin)
            };
            Ok(futures_util::stream::unfold((rx, wanted), move |(mut rx, wanted)| {
                let guard = guard.clone();
                async move {
                loop {
                    match rx.recv().await {
                        Ok(c) if wanted(&c) => {
                            if let Some(g) = &guard
                                && !g.contains(&c.drift.twin).await.unwrap_or(false)
                            {
                                continue;
                            }
                            let mut v = drift_json(&c.drift, c.time);
                            v["drifting"] = json!(c.drifting);
                            v["time"] = json!(format_time(c.time));
                            return Some((Ok(FieldValue::owned_any(v)), (rx, wanted)));
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let e = super::errors::lagged(format!(
                                "the subscriber fell {n} drift changes behind; query drift again"
                            ), None);
                            let (tx, closed) = tokio::sync::broadcast::channel(1);
                            drop(tx);
                            return Some((Err(e), (closed, wanted)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
                }
            })
            .take_until(Box::pin(closing)))
        })
    })
    .description("Live: a property of a twin starts or stops drifting from the configuration that decides it (of one configuration, one twin, or all).")
    .argument(InputValue::new("configuration", TypeRef::named(TypeRef::STRING)))
    .argument(InputValue::new("twin", TypeRef::named(TypeRef::ID))));
    b.register(change);
}
