//! Configurations and rollouts in the schema: the queries, mutations and
//! the `rolloutProgress` subscription over [`crate::rollout::Rollouts`].
//! Records travel as JSON objects read by the generic field resolvers of
//! `graph_api::record`.

use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Type, TypeRef,
};
use async_graphql::{Error, ErrorExtensions};
use serde_json::{Value, json};

use super::errors::{bad_request, store_error};
use super::graph_api::record;
use super::schema::{access_of, actor_of, json_arg, require, store_of, str_arg};
use crate::auth::Action;
use crate::rollout::config::{
    BaseRef, Configuration, ConfigurationSpec, Parameter, Version, VersionSpec,
};
use crate::rollout::plan::{Plan, RolloutSpec, Target};
use crate::rollout::run::{Rollout, RolloutState, TwinState};
use crate::rollout::{RolloutError, Rollouts};
use crate::twin::format_time;

fn rollouts<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Arc<Rollouts>, Error> {
    ctx.data::<Arc<Rollouts>>()
}

/// The GraphQL error for a refused configuration or rollout request.
pub(super) fn rollout_error(e: &RolloutError) -> Error {
    match e {
        RolloutError::Store(s) => store_error(s),
        RolloutError::Invalid { path, .. } | RolloutError::InvalidRollout { path, .. } => {
            let path = path.clone();
            Error::new(e.to_string()).extend_with(move |_, ext| {
                ext.set("code", e.code());
                ext.set("path", path.as_str());
            })
        }
        _ => Error::new(e.to_string()).extend_with(|_, ext| ext.set("code", e.code())),
    }
}

/// A field of a JSON record holding a record (or a list of records) under `key`.
fn nested(name: &str, ty: TypeRef, key: &'static str, doc: &str) -> Field {
    Field::new(name, ty, move |ctx| {
        FieldFuture::new(async move {
            let v = ctx.parent_value.try_downcast_ref::<Value>()?;
            Ok(match v.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::Array(items)) => Some(records(items.clone())),
                Some(x) => Some(FieldValue::owned_any(x.clone())),
            })
        })
    })
    .description(doc)
}

fn version_json(name: &str, v: &Version) -> Value {
    json!({
        "configuration": name,
        "number": v.spec.number,
        "values": v.spec.values,
        "effectiveValues": v.effective,
        "parameters": v.parameters.values().collect::<Vec<_>>(),
        "base": v.spec.base,
        "description": v.spec.description,
        "publishedAt": format_time(v.published_at),
        "publishedBy": v.published_by,
    })
}

fn configuration_json(c: &Configuration) -> Value {
    json!({
        "name": c.spec.name,
        "target": c.spec.target,
        "priority": c.spec.priority,
        "description": c.spec.description,
        "createdAt": format_time(c.created_at),
        "createdBy": c.created_by,
        "versionCount": c.versions.len(),
        "remediationPerMinute": c.remediation_per_minute,
    })
}

/// The configuration named by the parent record.
fn with_parent<T>(
    ctx: &ResolverContext<'_>,
    f: impl FnOnce(&Configuration) -> T,
) -> Result<Option<T>, Error> {
    let name = ctx
        .parent_value
        .try_downcast_ref::<Value>()?
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let r = rollouts(ctx)?;
    let state = r.state();
    Ok(state.configurations.get(&name).map(f))
}

fn version_number(ctx: &ResolverContext<'_>, arg: &str) -> Result<u32, Error> {
    let n = ctx.args.try_get(arg)?.i64()?;
    u32::try_from(n).map_err(|_| bad_request(format!("{arg} must be a version number")))
}

fn records(items: Vec<Value>) -> FieldValue<'static> {
    FieldValue::list(items.into_iter().map(FieldValue::owned_any))
}

fn screaming<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn rollout_json(r: &Rollout) -> Value {
    let spec = &r.start.spec;
    json!({
        "id": spec.id,
        "configuration": spec.configuration,
        "version": spec.version,
        "description": spec.description,
        "state": screaming(&r.state),
        "stage": r.stage + 1,
        "stageCount": r.start.stage_ends.len(),
        "bakingSince": r.baking_since.map(format_time),
        "reason": r.reason,
        "twinCount": r.start.twins.len(),
        "counts": r.counts,
        "target": spec.target,
        "plan": spec.plan,
        "parameters": spec.parameters,
        "createdAt": format_time(r.created_at),
        "createdBy": r.created_by,
        "updatedAt": format_time(r.updated_at),
    })
}

fn stage_json(r: &Rollout, i: usize) -> Value {
    let range = r.stage_range(i);
    let plan = r.start.spec.plan.stage(i);
    let mut counts = crate::rollout::run::Counts::default();
    for run in &r.runs[range.clone()] {
        match run.state {
            TwinState::Pending => counts.pending += 1,
            TwinState::Applied => counts.applied += 1,
            TwinState::Succeeded => counts.succeeded += 1,
            TwinState::Failed => counts.failed += 1,
            TwinState::TimedOut => counts.timed_out += 1,
            TwinState::RolledBack => counts.rolled_back += 1,
        }
    }
    json!({
        "number": i + 1,
        "size": range.len(),
        "successThreshold": plan.success_threshold,
        "bakeSeconds": plan.bake_seconds,
        "counts": counts,
        "successRate": r.stage_result(i),
    })
}

fn rollout_twin_json(r: &Rollout, i: usize) -> Value {
    let run = &r.runs[i];
    json!({
        "twin": r.start.twins[i],
        "stage": r.stage_of(i) + 1,
        "state": screaming(&run.state),
        "attempts": run.attempts,
        "appliedAt": (run.attempts > 0).then(|| format_time(run.applied_at)),
        "failure": run.failure.map(|f| screaming(&f)),
        "code": run.code,
        "reason": run.reason,
        "parent": r.start.parents.get(i).cloned().flatten(),
    })
}

/// The rollout named by the parent record.
fn with_rollout<T>(
    ctx: &ResolverContext<'_>,
    f: impl FnOnce(&Rollout) -> T,
) -> Result<Option<T>, Error> {
    let id = ctx
        .parent_value
        .try_downcast_ref::<Value>()?
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let state = rollouts(ctx)?.state();
    Ok(state.runs.get(&id).map(f))
}

fn rollout_value(r: &Rollouts, id: &str) -> Result<FieldValue<'static>, Error> {
    let state = r.state();
    let rollout = state
        .runs
        .get(id)
        .ok_or_else(|| rollout_error(&RolloutError::RolloutNotFound(id.to_owned())))?;
    Ok(FieldValue::owned_any(rollout_json(rollout)))
}

/// An input argument as a typed value (through its JSON form).
fn input<T: serde::de::DeserializeOwned>(
    ctx: &ResolverContext<'_>,
    name: &str,
) -> Result<Option<T>, Error> {
    match json_arg(ctx, name)? {
        None => Ok(None),
        Some(v) => serde_json::from_value(strip_nulls(v))
            .map(Some)
            .map_err(|e| bad_request(format!("{name}: {e}"))),
    }
}

/// Input objects arrive with explicit nulls for absent fields.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// A rollout command mutation: `f` on the rollout `id`, then its state.
/// Whether the caller may see rollout `id`: every twin it targets is in
/// the caller's scope (a rollout it may not see does not exist for it).
async fn rollout_visible(ctx: &ResolverContext<'_>, r: &Rollouts, id: &str) -> Result<bool, Error> {
    let Some(access) = access_of(ctx).filter(|a| !a.store.unscoped()) else {
        return Ok(true);
    };
    let Some(twins) = r.state().runs.get(id).map(|x| x.start.twins.clone()) else {
        return Ok(false);
    };
    let refs: Vec<&str> = twins.iter().map(String::as_str).collect();
    let inside = access
        .store
        .filter(&refs)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(inside.len() == refs.len())
}

fn command(
    name: &str,
    doc: &str,
    f: for<'a> fn(
        &'a Rollouts,
        &'a str,
        &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), RolloutError>>,
) -> Field {
    Field::new(name, TypeRef::named_nn("Rollout"), move |ctx| {
        FieldFuture::new(async move {
            require(&ctx, Action::Rollouts)?;
            let id = ctx.args.try_get("id")?.string()?.to_owned();
            let r = rollouts(&ctx)?;
            if !rollout_visible(&ctx, r, &id).await? {
                return Err(rollout_error(&RolloutError::RolloutNotFound(id)));
            }
            f(r, &id, &actor_of(&ctx))
                .await
                .map_err(|e| rollout_error(&e))?;
            Ok(Some(rollout_value(r, &id)?))
        })
    })
    .description(doc)
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
}

/// The `rolloutProgress` subscription.
pub(super) fn progress_subscription() -> (async_graphql::dynamic::SubscriptionField, Vec<Type>) {
    use async_graphql::dynamic::{SubscriptionField, SubscriptionFieldFuture};
    use futures_util::StreamExt;
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let progress = record(
        "RolloutProgress",
        "One recorded step of a rollout.",
        &[
            ("sequence", s("Long"), "Sequence number of the record in the event log."),
            ("time", s("DateTime"), ""),
            ("kind", s(TypeRef::STRING), "rolloutStarted, configurationAssigned (a twin APPLIED), rolloutTwinsSettled, rolloutChanged (state, stage, bake), configurationRestored (a twin ROLLED_BACK)."),
            ("actor", s(TypeRef::STRING), ""),
            ("state", s("RolloutState"), "The rollout's state after the step."),
            ("stage", s(TypeRef::INT), "Its stage after the step (from 1)."),
            ("reason", TypeRef::named(TypeRef::STRING), ""),
        ],
    )
    .field(nested(
        "counts",
        s("RolloutCounts"),
        "counts",
        "Twins by state after the step.",
    ))
    .field(nested(
        "twins",
        TypeRef::named_nn_list_nn("RolloutTwinChange"),
        "twins",
        "The twins this step moved.",
    ));
    let twin_change = record(
        "RolloutTwinChange",
        "A twin moved by a rollout step.",
        &[
            ("twin", s(TypeRef::ID), ""),
            ("state", s("RolloutTwinState"), ""),
            ("failure", TypeRef::named("RolloutFailure"), ""),
            ("code", TypeRef::named(TypeRef::INT), ""),
            ("reason", TypeRef::named(TypeRef::STRING), ""),
        ],
    );
    let field = SubscriptionField::new("rolloutProgress", s("RolloutProgress"), |ctx| {
        SubscriptionFieldFuture::new(async move {
            let id = ctx.args.try_get("id")?.string()?.to_owned();
            let r = rollouts(&ctx)?.clone();
            let rx = r.progress();
            if !rollout_visible(&ctx, &r, &id).await? {
                return Err(rollout_error(&RolloutError::RolloutNotFound(id)));
            }
            let closing = ctx.data::<super::live::Shutdown>()?.clone().triggered();
            let stream = futures_util::stream::unfold((rx, r, id), |(mut rx, r, id)| async move {
                loop {
                    match rx.recv().await {
                        Ok(p) if p.rollout == id => {
                            let item = Ok(FieldValue::owned_any(progress_json(&p)));
                            return Some((item, (rx, r, id)));
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let e = Error::new(format!(
                                "the subscriber fell {n} records behind; read the rollout again"
                            ))
                            .extend_with(|_, ext| ext.set("code", "SUBSCRIBER_LAGGED"));
                            // The stream ends after telling why.
                            let (tx, closed) = tokio::sync::broadcast::channel(1);
                            drop(tx);
                            return Some((Err(e), (closed, r, id)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            })
            .take_until(Box::pin(closing));
            Ok(stream)
        })
    })
    .description("Every recorded step of rollout `id`, live: twins applied, settled, rolled back, and state and stage changes.")
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)));
    (field, vec![progress.into(), twin_change.into()])
}

fn progress_json(p: &crate::rollout::service::Progress) -> Value {
    use crate::twin::Change;
    let e = &p.event;
    let twins: Vec<Value> = match &e.change {
        Change::ConfigurationAssigned { twin, .. } => {
            vec![json!({"twin": twin, "state": "APPLIED"})]
        }
        Change::ConfigurationRestored { twin, .. } => {
            vec![json!({"twin": twin, "state": "ROLLED_BACK"})]
        }
        Change::RolloutTwinsSettled { outcomes, .. } => outcomes
            .iter()
            .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
            .collect(),
        _ => Vec::new(),
    };
    let kind = serde_json::to_value(&e.change)
        .ok()
        .and_then(|c| c.get("kind").cloned())
        .unwrap_or(Value::Null);
    let rollout = p.standing.as_ref();
    json!({
        "sequence": e.seq,
        "time": format_time(e.time),
        "kind": kind,
        "actor": e.actor,
        "state": rollout.map(|x| screaming(&x.state)),
        "stage": rollout.map(|x| x.stage + 1),
        "reason": rollout.and_then(|x| x.reason.clone()),
        "counts": rollout.map(|x| serde_json::to_value(&x.counts).unwrap_or(Value::Null)),
        "twins": twins,
    })
}

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

/// The `driftChanged` subscription and the drift types.
pub(super) fn drift_subscription() -> (async_graphql::dynamic::SubscriptionField, Vec<Type>) {
    use async_graphql::dynamic::{SubscriptionField, SubscriptionFieldFuture};
    use futures_util::StreamExt;
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
    let field = SubscriptionField::new("driftChanged", TypeRef::named_nn("DriftChange"), |ctx| {
        SubscriptionFieldFuture::new(async move {
            let configuration = str_arg(&ctx, "configuration")?;
            let twin = str_arg(&ctx, "twin")?;
            let rx = rollouts(&ctx)?.drift_changes();
            let closing = ctx.data::<super::live::Shutdown>()?.clone().triggered();
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
                            let e = Error::new(format!(
                                "the subscriber fell {n} drift changes behind; query drift again"
                            ))
                            .extend_with(|_, ext| ext.set("code", "SUBSCRIBER_LAGGED"));
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
    .argument(InputValue::new("twin", TypeRef::named(TypeRef::ID)));
    (field, vec![change.into()])
}

/// The `drift` query.
fn drift_query(query: Object) -> (Object, Vec<Type>) {
    let drift = drift_record(
        "Drift",
        "A property whose reported value differs from the value its configuration decides (twins a rollout is still waiting for are not drifting).",
        &[(
            "seconds",
            TypeRef::named_nn(TypeRef::FLOAT),
            "How long it has drifted.",
        )],
    );
    let query = query.field(
        Field::new("drift", TypeRef::named_nn_list_nn("Drift"), |ctx| {
            FieldFuture::new(async move {
                let configuration = str_arg(&ctx, "configuration")?;
                let model = str_arg(&ctx, "model")?;
                let under = str_arg(&ctx, "under")?;
                let first = super::schema::usize_arg(&ctx, "first", 100, 10_000)?;
                let after = str_arg(&ctx, "after")?;
                let r = rollouts(&ctx)?;
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
                let items = found
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
    (query, vec![drift.into()])
}

/// Adds the configuration queries and mutations and their types.
pub(super) fn extend(query: Object, mutation: Object) -> (Object, Object, Vec<Type>) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let configuration = record(
        "Configuration",
        "A named template of desired values for the twins of one Interface (subtypes included), with immutable, numbered versions.",
        &[
            ("name", s(TypeRef::STRING), "Unique name."),
            ("target", s(TypeRef::STRING), "DTMI of the Interface it targets."),
            ("priority", s(TypeRef::INT), "When assigned configurations set the same property, the highest priority wins (ties: the most recently assigned)."),
            ("description", TypeRef::named(TypeRef::STRING), ""),
            ("createdAt", s("DateTime"), ""),
            ("createdBy", s(TypeRef::STRING), ""),
            ("versionCount", s(TypeRef::INT), "Versions published so far."),
            ("remediationPerMinute", TypeRef::named(TypeRef::FLOAT), "When set, drifted twins get their values again (at most this many a minute, each twin at most once a minute); see `setConfigurationRemediation`."),
        ],
    )
    .field(
        Field::new("versions", TypeRef::named_nn_list_nn("ConfigurationVersion"), |ctx| {
            FieldFuture::new(async move {
                let vs = with_parent(&ctx, |c| {
                    c.versions
                        .iter()
                        .map(|v| version_json(&c.spec.name, v))
                        .collect::<Vec<_>>()
                })?;
                Ok(Some(records(vs.unwrap_or_default())))
            })
        })
        .description("Every version, oldest first."),
    )
    .field(
        Field::new("version", TypeRef::named("ConfigurationVersion"), |ctx| {
            FieldFuture::new(async move {
                let n = version_number(&ctx, "number")?;
                let v = with_parent(&ctx, |c| c.version(n).map(|v| version_json(&c.spec.name, v)))?;
                Ok(v.flatten().map(FieldValue::owned_any))
            })
        })
        .argument(InputValue::new("number", TypeRef::named_nn(TypeRef::INT))),
    )
    .field(
        Field::new("latestVersion", TypeRef::named("ConfigurationVersion"), |ctx| {
            FieldFuture::new(async move {
                let v = with_parent(&ctx, |c| c.latest().map(|v| version_json(&c.spec.name, v)))?;
                Ok(v.flatten().map(FieldValue::owned_any))
            })
        }),
    )
    .field(
        Field::new("diff", TypeRef::named_nn_list_nn("ValueChange"), |ctx| {
            FieldFuture::new(async move {
                let (from, to) = (version_number(&ctx, "from")?, version_number(&ctx, "to")?);
                let changes = with_parent(&ctx, |c| c.diff(from, to))?
                    .unwrap_or_else(|| Ok(Vec::new()))
                    .map_err(|e| rollout_error(&e))?;
                let items = changes
                    .iter()
                    .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
                    .collect();
                Ok(Some(records(items)))
            })
        })
        .description("What changes from version `from` to version `to` (effective values, leaf by leaf).")
        .argument(InputValue::new("from", TypeRef::named_nn(TypeRef::INT)))
        .argument(InputValue::new("to", TypeRef::named_nn(TypeRef::INT))),
    );
    let version = record(
        "ConfigurationVersion",
        "An immutable version of a configuration.",
        &[
            ("configuration", s(TypeRef::STRING), ""),
            ("number", s(TypeRef::INT), "1, 2, ..."),
            (
                "values",
                s("JSON"),
                "The desired values this version sets itself (a desired patch; `{\"$param\": name}` marks a parameter).",
            ),
            (
                "effectiveValues",
                s("JSON"),
                "Its base's effective values with its own merged over them.",
            ),
            ("description", TypeRef::named(TypeRef::STRING), ""),
            ("publishedAt", s("DateTime"), ""),
            ("publishedBy", s(TypeRef::STRING), ""),
        ],
    );
    let version = version
        .field(nested(
            "parameters",
            TypeRef::named_nn_list_nn("ConfigurationParameter"),
            "parameters",
            "Every parameter in effect, inherited ones included.",
        ))
        .field(nested(
            "base",
            TypeRef::named("ConfigurationVersionRef"),
            "base",
            "The version it builds on.",
        ));
    let version_ref = record(
        "ConfigurationVersionRef",
        "A version of a configuration.",
        &[
            ("configuration", s(TypeRef::STRING), ""),
            ("version", s(TypeRef::INT), ""),
        ],
    );
    let parameter = record(
        "ConfigurationParameter",
        "A value filled per twin (`source`), else per rollout, else from `default`.",
        &[
            ("name", s(TypeRef::STRING), ""),
            ("default", TypeRef::named("JSON"), ""),
            (
                "source",
                TypeRef::named("JSON"),
                "`{\"from\": \"property\", \"path\", \"side\"}` or `{\"from\": \"related\", \"relationship\", \"incoming\", \"path\"}`.",
            ),
            ("description", TypeRef::named(TypeRef::STRING), ""),
        ],
    );
    let change = record(
        "ValueChange",
        "One difference between two versions.",
        &[
            ("path", s(TypeRef::STRING), "Dotted path of the value."),
            ("from", TypeRef::named("JSON"), "Absent: not set before."),
            ("to", TypeRef::named("JSON"), "Absent: not set after."),
        ],
    );
    let parameter_input = InputObject::new("ConfigurationParameterInput")
        .field(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING)))
        .field(InputValue::new("default", TypeRef::named("JSON")))
        .field(InputValue::new("source", TypeRef::named("JSON")))
        .field(InputValue::new(
            "description",
            TypeRef::named(TypeRef::STRING),
        ));
    let ref_input = InputObject::new("ConfigurationVersionRefInput")
        .field(InputValue::new(
            "configuration",
            TypeRef::named_nn(TypeRef::STRING),
        ))
        .field(InputValue::new("version", TypeRef::named_nn(TypeRef::INT)));

    let query = query
        .field(
            Field::new("configuration", TypeRef::named("Configuration"), |ctx| {
                FieldFuture::new(async move {
                    let name = ctx.args.try_get("name")?.string()?;
                    let state = rollouts(&ctx)?.state();
                    Ok(state
                        .configurations
                        .get(name)
                        .map(|c| FieldValue::owned_any(configuration_json(c))))
                })
            })
            .argument(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING))),
        )
        .field(
            Field::new(
                "configurations",
                TypeRef::named_nn_list_nn("Configuration"),
                |ctx| {
                    FieldFuture::new(async move {
                        let target = str_arg(&ctx, "target")?;
                        let state = rollouts(&ctx)?.state();
                        let items = state
                            .configurations
                            .iter()
                            .filter(|c| target.as_ref().is_none_or(|t| *t == c.spec.target))
                            .map(configuration_json)
                            .collect();
                        Ok(Some(records(items)))
                    })
                },
            )
            .description(
                "Every configuration (of one target Interface when `target` is given), by name.",
            )
            .argument(InputValue::new("target", TypeRef::named(TypeRef::STRING))),
        );

    let mutation = mutation
        .field(
            Field::new("setConfigurationRemediation", TypeRef::named_nn("Configuration"), |ctx| {
                FieldFuture::new(async move {
                    let name = ctx.args.try_get("configuration")?.string()?.to_owned();
                    let per_minute = match ctx.args.get("perMinute") {
                        Some(v) if !v.is_null() => Some(v.f64()?),
                        _ => None,
                    };
                    require(&ctx, Action::Configurations)?;
                    let r = rollouts(&ctx)?;
                    r.set_remediation(&name, per_minute, &actor_of(&ctx))
                        .await
                        .map_err(|e| rollout_error(&e))?;
                    let state = r.state();
                    let c = state
                        .configurations
                        .get(&name)
                        .ok_or_else(|| Error::new("the configuration vanished"))?;
                    Ok(Some(FieldValue::owned_any(configuration_json(c))))
                })
            })
            .description("Automatic remediation: drifted twins of this configuration get its values again (a new desired version for their devices, recorded as events by `remediation`), at most `perMinute` a minute; null turns it off.")
            .argument(InputValue::new("configuration", TypeRef::named_nn(TypeRef::STRING)))
            .argument(InputValue::new("perMinute", TypeRef::named(TypeRef::FLOAT))),
        )
        .field(
            Field::new("createConfiguration", TypeRef::named_nn("Configuration"), |ctx| {
                FieldFuture::new(async move {
                    let priority = match ctx.args.get("priority") {
                        Some(v) if !v.is_null() => v.i64()?,
                        _ => 0,
                    };
                    let spec = ConfigurationSpec {
                        name: ctx.args.try_get("name")?.string()?.to_owned(),
                        target: ctx.args.try_get("target")?.string()?.to_owned(),
                        priority,
                        description: str_arg(&ctx, "description")?,
                    };
                    require(&ctx, Action::Configurations)?;
                    let r = rollouts(&ctx)?;
                    r.create_configuration(spec.clone(), &actor_of(&ctx))
                        .await
                        .map_err(|e| rollout_error(&e))?;
                    let state = r.state();
                    let c = state
                        .configurations
                        .get(&spec.name)
                        .ok_or_else(|| Error::new("the configuration vanished"))?;
                    Ok(Some(FieldValue::owned_any(configuration_json(c))))
                })
            })
            .description("Creates a configuration (publish versions with `publishConfigurationVersion`).")
            .argument(InputValue::new("name", TypeRef::named_nn(TypeRef::STRING)))
            .argument(InputValue::new("target", TypeRef::named_nn(TypeRef::STRING)).description("DTMI of the Interface it targets."))
            .argument(InputValue::new("priority", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new("description", TypeRef::named(TypeRef::STRING))),
        )
        .field(
            Field::new("publishConfigurationVersion", TypeRef::named_nn("ConfigurationVersion"), |ctx| {
                FieldFuture::new(async move {
                    let name = ctx.args.try_get("configuration")?.string()?.to_owned();
                    let values = json_arg(&ctx, "values")?.unwrap_or(Value::Null);
                    let mut parameters = Vec::new();
                    if let Some(list) = ctx.args.get("parameters").filter(|v| !v.is_null()) {
                        for (i, p) in list.list()?.iter().enumerate() {
                            let json = p.as_value().clone().into_json().map_err(|e| {
                                bad_request(format!("parameters[{i}]: {e}"))
                            })?;
                            let param: Parameter = serde_json::from_value(json).map_err(|e| {
                                bad_request(format!("parameters[{i}]: {e}"))
                            })?;
                            parameters.push(param);
                        }
                    }
                    let base = match ctx.args.get("base").filter(|v| !v.is_null()) {
                        Some(b) => {
                            let json = b.as_value().clone().into_json().map_err(|e| {
                                bad_request(format!("base: {e}"))
                            })?;
                            Some(serde_json::from_value::<BaseRef>(json).map_err(|e| {
                                bad_request(format!("base: {e}"))
                            })?)
                        }
                        None => None,
                    };
                    let spec = VersionSpec {
                        number: 0,
                        values,
                        parameters,
                        base,
                        description: str_arg(&ctx, "description")?,
                    };
                    require(&ctx, Action::Configurations)?;
                    let r = rollouts(&ctx)?;
                    let n = r
                        .publish_version(&name, spec, &actor_of(&ctx))
                        .await
                        .map_err(|e| rollout_error(&e))?;
                    let state = r.state();
                    let v = state
                        .configurations
                        .get(&name)
                        .and_then(|c| c.version(n))
                        .ok_or_else(|| Error::new("the version vanished"))?;
                    Ok(Some(FieldValue::owned_any(version_json(&name, v))))
                })
            })
            .description("Publishes the next version of a configuration, validated against the target model (the error's `path` names the offending value). Versions are immutable.")
            .argument(InputValue::new("configuration", TypeRef::named_nn(TypeRef::STRING)))
            .argument(InputValue::new("values", TypeRef::named_nn("JSON")).description("Desired values (a desired patch); `{\"$param\": name}` marks a parameter."))
            .argument(InputValue::new("parameters", TypeRef::named_nn_list("ConfigurationParameterInput")))
            .argument(InputValue::new("base", TypeRef::named("ConfigurationVersionRefInput")).description("A version (of this or another configuration of the same or an ancestor Interface) to build on."))
            .argument(InputValue::new("description", TypeRef::named(TypeRef::STRING))),
        );
    let (query, mutation, rollout_types) = extend_rollouts(query, mutation);
    let (query, drift_types) = drift_query(query);
    (
        query,
        mutation,
        vec![
            configuration.into(),
            version.into(),
            version_ref.into(),
            parameter.into(),
            change.into(),
            parameter_input.into(),
            ref_input.into(),
        ]
        .into_iter()
        .chain(rollout_types)
        .chain(drift_types)
        .collect(),
    )
}

fn enumeration(name: &str, doc: &str, items: &[&str]) -> async_graphql::dynamic::Enum {
    items.iter().fold(
        async_graphql::dynamic::Enum::new(name).description(doc),
        |e, i| e.item(async_graphql::dynamic::EnumItem::new(*i)),
    )
}

/// The rollout queries, mutations and types.
fn extend_rollouts(query: Object, mutation: Object) -> (Object, Object, Vec<Type>) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let opt = |n: &str| TypeRef::named(n.to_owned());
    let state = enumeration(
        "RolloutState",
        "Where a rollout stands.",
        &[
            "PENDING",
            "RUNNING",
            "PAUSED",
            "SUCCEEDED",
            "FAILED",
            "ROLLING_BACK",
            "ROLLED_BACK",
            "CANCELED",
        ],
    );
    let twin_state = enumeration(
        "RolloutTwinState",
        "Where one twin of a rollout stands: PENDING, then APPLIED (desired values written), then SUCCEEDED (acknowledged with a 2xx code and reporting the desired values), FAILED or TIMED_OUT; ROLLED_BACK once its previous values are restored.",
        &[
            "PENDING",
            "APPLIED",
            "SUCCEEDED",
            "FAILED",
            "TIMED_OUT",
            "ROLLED_BACK",
        ],
    );
    let failure = enumeration(
        "RolloutFailure",
        "Why a twin failed: REJECTED (the device acknowledged with an error code), TIMED_OUT, DIVERGED (acknowledged, but reports another value), ERROR (the twin could not be updated); ANY in abort criteria.",
        &["REJECTED", "TIMED_OUT", "DIVERGED", "ERROR", "ANY"],
    );
    let counts = record(
        "RolloutCounts",
        "Twins by state.",
        &[
            ("pending", s(TypeRef::INT), ""),
            ("applied", s(TypeRef::INT), ""),
            ("succeeded", s(TypeRef::INT), ""),
            ("failed", s(TypeRef::INT), ""),
            ("timedOut", s(TypeRef::INT), ""),
            ("rolledBack", s(TypeRef::INT), ""),
        ],
    );
    let stage = record(
        "RolloutStage",
        "One stage of a rollout.",
        &[
            ("number", s(TypeRef::INT), "From 1."),
            ("size", s(TypeRef::INT), "Twins in the stage."),
            (
                "successThreshold",
                s(TypeRef::FLOAT),
                "Percent of its twins that must succeed.",
            ),
            ("bakeSeconds", s(TypeRef::FLOAT), ""),
            (
                "successRate",
                opt(TypeRef::FLOAT),
                "Percent of its twins that succeeded, once all settled.",
            ),
        ],
    )
    .field(nested(
        "counts",
        s("RolloutCounts"),
        "counts",
        "Its twins by state.",
    ));
    let twin = record(
        "RolloutTwin",
        "One twin of a rollout.",
        &[
            ("twin", s(TypeRef::ID), "The twin's id."),
            ("stage", s(TypeRef::INT), "Its stage (from 1)."),
            ("state", s("RolloutTwinState"), ""),
            ("attempts", s(TypeRef::INT), "Times applied."),
            ("appliedAt", opt("DateTime"), "When last applied."),
            ("failure", opt("RolloutFailure"), ""),
            ("code", opt(TypeRef::INT), "The device's status code."),
            (
                "reason",
                opt(TypeRef::STRING),
                "Why it failed (or is retried).",
            ),
            (
                "parent",
                opt(TypeRef::ID),
                "Its container (when the plan orders by hierarchy).",
            ),
        ],
    );
    let rollout = record(
        "Rollout",
        "A staged rollout of a configuration version to a set of twins.",
        &[
            ("id", s(TypeRef::ID), ""),
            ("configuration", s(TypeRef::STRING), ""),
            ("version", s(TypeRef::INT), ""),
            ("description", opt(TypeRef::STRING), ""),
            ("state", s("RolloutState"), ""),
            ("stage", s(TypeRef::INT), "The stage running (from 1)."),
            ("stageCount", s(TypeRef::INT), ""),
            ("bakingSince", opt("DateTime"), "When the current stage met its threshold (it bakes until its bake time has passed)."),
            ("reason", opt(TypeRef::STRING), "Why it last changed state (an abort criterion, a failed stage, a request)."),
            ("twinCount", s(TypeRef::INT), ""),
            ("target", s("JSON"), ""),
            ("plan", s("JSON"), ""),
            ("parameters", s("JSON"), ""),
            ("createdAt", s("DateTime"), ""),
            ("createdBy", s(TypeRef::STRING), ""),
            ("updatedAt", s("DateTime"), ""),
        ],
    )
    .field(nested("counts", s("RolloutCounts"), "counts", "Twins by state."))
    .field(
        Field::new("stages", TypeRef::named_nn_list_nn("RolloutStage"), |ctx| {
            FieldFuture::new(async move {
                let stages = with_rollout(&ctx, |r| {
                    (0..r.start.stage_ends.len())
                        .map(|i| stage_json(r, i))
                        .collect::<Vec<_>>()
                })?;
                Ok(Some(records(stages.unwrap_or_default())))
            })
        }),
    )
    .field(
        Field::new("twins", TypeRef::named_nn_list_nn("RolloutTwin"), |ctx| {
            FieldFuture::new(async move {
                let state: Option<TwinState> = match ctx.args.get("state") {
                    Some(v) if !v.is_null() => Some(
                        serde_json::from_value(Value::String(v.enum_name()?.to_owned()))
                            .map_err(|e| bad_request(format!("state: {e}")))?,
                    ),
                    _ => None,
                };
                let first = super::schema::usize_arg(&ctx, "first", 100, 10_000)?;
                let after = str_arg(&ctx, "after")?;
                let twins = with_rollout(&ctx, |r| {
                    let start = match &after {
                        Some(a) => r.position(a).map_or(r.runs.len(), |i| i + 1),
                        None => 0,
                    };
                    (start..r.runs.len())
                        .filter(|&i| state.is_none_or(|s| r.runs[i].state == s))
                        .take(first)
                        .map(|i| rollout_twin_json(r, i))
                        .collect::<Vec<_>>()
                })?;
                let mut twins = twins.unwrap_or_default();
                // A container out of the caller's scope is not named.
                if let Some(access) = access_of(&ctx).filter(|a| !a.store.unscoped()) {
                    let parents: Vec<&str> =
                        twins.iter().filter_map(|t| t["parent"].as_str()).collect();
                    let inside = access
                        .store
                        .filter(&parents)
                        .await
                        .map_err(|e| store_error(&e))?;
                    for t in &mut twins {
                        if t["parent"].as_str().is_some_and(|p| !inside.contains(p)) {
                            t["parent"] = Value::Null;
                        }
                    }
                }
                Ok(Some(records(twins)))
            })
        })
        .description("Its twins in rollout order (optionally in one state), the first `first` after twin `after`.")
        .argument(InputValue::new("state", opt("RolloutTwinState")))
        .argument(InputValue::new("first", opt(TypeRef::INT)))
        .argument(InputValue::new("after", opt(TypeRef::ID))),
    );
    let target_input = InputObject::new("RolloutTargetInput")
        .description("Which twins: every criterion given must hold.")
        .field(
            InputValue::new("ids", TypeRef::named_nn_list(TypeRef::ID))
                .description("Exactly these twins."),
        )
        .field(InputValue::new("model", opt(TypeRef::STRING)).description(
            "Twins of this model (subtypes included); default: the configuration's target.",
        ))
        .field(
            InputValue::new("where", opt("JSON"))
                .description("A filter over twin values, as `twins(where:)` takes it."),
        )
        .field(
            InputValue::new("under", opt(TypeRef::ID))
                .description("Twins contained (transitively) by this twin."),
        );
    let stage_input = InputObject::new("RolloutStageInput")
        .description("A stage: `count` twins or `percent` of the target (the last stage takes the rest); `successThreshold` percent must succeed; then it bakes `bakeSeconds`.")
        .field(InputValue::new("count", opt(TypeRef::INT)))
        .field(InputValue::new("percent", opt(TypeRef::FLOAT)))
        .field(InputValue::new("successThreshold", opt(TypeRef::FLOAT)))
        .field(InputValue::new("bakeSeconds", opt(TypeRef::FLOAT)));
    let rate_input = InputObject::new("RolloutRateInput")
        .description("At most `perMinute` twins applied per minute, multiplied by `growthFactor` every `growEvery` successes.")
        .field(InputValue::new("perMinute", s(TypeRef::FLOAT)))
        .field(InputValue::new("growthFactor", opt(TypeRef::FLOAT)))
        .field(InputValue::new("growEvery", opt(TypeRef::INT)));
    let abort_input = InputObject::new("RolloutAbortInput")
        .description("Roll back when `thresholdPercent` of the twins executed failed this way, once `minExecuted` have.")
        .field(InputValue::new("failure", opt("RolloutFailure")))
        .field(InputValue::new("thresholdPercent", s(TypeRef::FLOAT)))
        .field(InputValue::new("minExecuted", opt(TypeRef::INT)));
    let plan_input = InputObject::new("RolloutPlanInput")
        .field(InputValue::new(
            "stages",
            TypeRef::named_nn_list("RolloutStageInput"),
        ))
        .field(InputValue::new("rate", opt("RolloutRateInput")))
        .field(InputValue::new(
            "abort",
            TypeRef::named_nn_list("RolloutAbortInput"),
        ))
        .field(
            InputValue::new("twinTimeoutSeconds", opt(TypeRef::FLOAT))
                .description("How long a device has to acknowledge and converge (default 300)."),
        )
        .field(
            InputValue::new("retries", opt(TypeRef::INT)).description(
                "How many times a failed or timed-out twin is applied again (default 0).",
            ),
        )
        .field(
            InputValue::new("orderByHierarchy", opt(TypeRef::BOOLEAN))
                .description("Order twins by their containment path: one site / line at a time."),
        )
        .field(
            InputValue::new("maxInFlightPerParent", opt(TypeRef::INT))
                .description("Never more twins sharing a parent awaiting their devices at once."),
        );

    let query = query
        .field(
            Field::new("rollout", opt("Rollout"), |ctx| {
                FieldFuture::new(async move {
                    let id = ctx.args.try_get("id")?.string()?;
                    let r = rollouts(&ctx)?;
                    if !rollout_visible(&ctx, r, id).await? {
                        return Ok(None);
                    }
                    let state = r.state();
                    Ok(state
                        .runs
                        .get(id)
                        .map(|r| FieldValue::owned_any(rollout_json(r))))
                })
            })
            .argument(InputValue::new("id", s(TypeRef::ID))),
        )
        .field(
            Field::new("rollouts", TypeRef::named_nn_list_nn("Rollout"), |ctx| {
                FieldFuture::new(async move {
                    let wanted: Option<RolloutState> = match ctx.args.get("state") {
                        Some(v) if !v.is_null() => Some(
                            serde_json::from_value(Value::String(v.enum_name()?.to_owned()))
                                .map_err(|e| bad_request(format!("state: {e}")))?,
                        ),
                        _ => None,
                    };
                    let r = rollouts(&ctx)?;
                    let ids: Vec<String> = r
                        .state()
                        .runs
                        .iter()
                        .filter(|x| wanted.is_none_or(|w| x.state == w))
                        .map(|x| x.id().to_owned())
                        .collect();
                    let mut shown = Vec::with_capacity(ids.len());
                    for id in ids {
                        if rollout_visible(&ctx, r, &id).await? {
                            shown.push(id);
                        }
                    }
                    let state = r.state();
                    let items = shown
                        .iter()
                        .filter_map(|id| state.runs.get(id))
                        .map(rollout_json)
                        .collect();
                    Ok(Some(records(items)))
                })
            })
            .description("Every rollout (in one state when `state` is given), oldest first.")
            .argument(InputValue::new("state", opt("RolloutState"))),
        );
    let mutation = mutation
        .field(
            Field::new("startRollout", s("Rollout"), |ctx| {
                FieldFuture::new(async move {
                    let version = ctx.args.try_get("version")?.i64()?;
                    let spec = RolloutSpec {
                        id: str_arg(&ctx, "id")?.unwrap_or_default(),
                        configuration: ctx.args.try_get("configuration")?.string()?.to_owned(),
                        version: u32::try_from(version)
                            .map_err(|_| bad_request("version must be a version number"))?,
                        target: input::<Target>(&ctx, "target")?.unwrap_or_default(),
                        parameters: match json_arg(&ctx, "parameters")? {
                            None => serde_json::Map::new(),
                            Some(Value::Object(m)) => m,
                            Some(_) => return Err(bad_request("parameters must be an object")),
                        },
                        plan: input::<Plan>(&ctx, "plan")?.unwrap_or_default(),
                        description: str_arg(&ctx, "description")?,
                    };
                    require(&ctx, Action::Rollouts)?;
                    let r = rollouts(&ctx)?;
                    // The target resolves in the caller's view: twins out
                    // of its scope do not exist.
                    let view = store_of(&ctx)?;
                    let id = r
                        .start_rollout_in(spec, &actor_of(&ctx), &**view)
                        .await
                        .map_err(|e| rollout_error(&e))?;
                    Ok(Some(rollout_value(r, &id)?))
                })
            })
            .description("Starts rolling a configuration version out to the target twins, stage by stage as the plan says. Refused (ROLLOUT_CONFLICT) when an active rollout already targets one of them.")
            .argument(InputValue::new("configuration", s(TypeRef::STRING)))
            .argument(InputValue::new("version", s(TypeRef::INT)))
            .argument(InputValue::new("target", s("RolloutTargetInput")))
            .argument(InputValue::new("plan", opt("RolloutPlanInput")))
            .argument(InputValue::new("parameters", opt("JSON")).description("Values of the version's parameters (twin sources take precedence, then these, then defaults)."))
            .argument(InputValue::new("id", opt(TypeRef::ID)).description("Default: generated."))
            .argument(InputValue::new("description", opt(TypeRef::STRING))),
        )
        .field(command(
            "pauseRollout",
            "Stops applying more twins (twins awaiting their devices still settle).",
            |r, id, actor| Box::pin(r.pause_rollout(id, actor)),
        ))
        .field(command(
            "resumeRollout",
            "Resumes a paused rollout.",
            |r, id, actor| Box::pin(r.resume_rollout(id, actor)),
        ))
        .field(command(
            "cancelRollout",
            "Stops the rollout for good, keeping what was applied.",
            |r, id, actor| Box::pin(r.cancel_rollout(id, actor)),
        ))
        .field(command(
            "rollbackRollout",
            "Restores, on every twin the rollout touched, the configuration and desired values it replaced (tracked: ROLLING_BACK, then ROLLED_BACK).",
            |r, id, actor| Box::pin(r.rollback_rollout(id, actor)),
        ));
    (
        query,
        mutation,
        vec![
            state.into(),
            twin_state.into(),
            failure.into(),
            counts.into(),
            stage.into(),
            twin.into(),
            rollout.into(),
            target_input.into(),
            stage_input.into(),
            rate_input.into(),
            abort_input.into(),
            plan_input.into(),
        ],
    )
}
