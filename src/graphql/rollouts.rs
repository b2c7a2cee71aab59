//! Rollouts: a configuration version staged out to twins, gated on their
//! devices' acknowledgements, with automatic rollback; the queries, the
//! commands and the `rolloutProgress` subscription over
//! [`crate::rollout::Rollouts`].

use crate::records::Record;
use async_graphql::Error;
use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputObject, InputValue, ResolverContext, TypeRef,
};
use serde_json::{Value, json};

use super::builder::{Builder, Shutdown};
use super::context::{
    access_of, actor_of, input_arg, json_arg, require, rollouts_of, store_of, str_arg, usize_arg,
};
use super::errors::{bad_request, rollout_error, store_error};
use super::record::{SEQ_RENAMED, deprecated_alias, nested, record, records};
use crate::auth::Action;
use crate::rollout::plan::{Plan, RolloutSpec, Target};
use crate::rollout::run::{Rollout, RolloutState, TwinState};
use crate::rollout::{RolloutError, Rollouts};
use crate::twin::format_time;

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
    let state = rollouts_of(ctx)?.state();
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
            let r = rollouts_of(&ctx)?;
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
        Change::Record(Record::RolloutTwinsSettled { outcomes, .. }) => outcomes
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
        "seq": e.seq,
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

fn enumeration(name: &str, doc: &str, items: &[&str]) -> async_graphql::dynamic::Enum {
    items.iter().fold(
        async_graphql::dynamic::Enum::new(name).description(doc),
        |e, i| e.item(async_graphql::dynamic::EnumItem::new(*i)),
    )
}

pub(super) fn register(b: &mut Builder) {
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
                let first = usize_arg(&ctx, "first", 100, 10_000)?;
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

    for ty in [state, twin_state, failure] {
        b.register(ty);
    }
    for ty in [counts, stage, twin, rollout] {
        b.register(ty);
    }
    for ty in [
        target_input,
        stage_input,
        rate_input,
        abort_input,
        plan_input,
    ] {
        b.register(ty);
    }
    b.query(
        Field::new("rollout", opt("Rollout"), |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?;
                let r = rollouts_of(&ctx)?;
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
    );
    b.query(
        Field::new("rollouts", TypeRef::named_nn_list_nn("Rollout"), |ctx| {
            FieldFuture::new(async move {
                let wanted: Option<RolloutState> = match ctx.args.get("state") {
                    Some(v) if !v.is_null() => Some(
                        serde_json::from_value(Value::String(v.enum_name()?.to_owned()))
                            .map_err(|e| bad_request(format!("state: {e}")))?,
                    ),
                    _ => None,
                };
                let r = rollouts_of(&ctx)?;
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
                let items: Vec<Value> = shown
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
    b.mutation(
        Field::new("startRollout", s("Rollout"), |ctx| {
            FieldFuture::new(async move {
                let version = ctx.args.try_get("version")?.i64()?;
                let spec = RolloutSpec {
                    id: str_arg(&ctx, "id")?.unwrap_or_default(),
                    configuration: ctx.args.try_get("configuration")?.string()?.to_owned(),
                    version: u32::try_from(version)
                        .map_err(|_| bad_request("version must be a version number"))?,
                    target: input_arg::<Target>(&ctx, "target")?.unwrap_or_default(),
                    parameters: match json_arg(&ctx, "parameters")? {
                        None => serde_json::Map::new(),
                        Some(Value::Object(m)) => m,
                        Some(_) => return Err(bad_request("parameters must be an object")),
                    },
                    plan: input_arg::<Plan>(&ctx, "plan")?.unwrap_or_default(),
                    description: str_arg(&ctx, "description")?,
                };
                require(&ctx, Action::Rollouts)?;
                let r = rollouts_of(&ctx)?;
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
    );
    b.mutation(command(
        "pauseRollout",
        "Stops applying more twins (twins awaiting their devices still settle).",
        |r, id, actor| Box::pin(r.pause_rollout(id, actor)),
    ));
    b.mutation(command(
        "resumeRollout",
        "Resumes a paused rollout.",
        |r, id, actor| Box::pin(r.resume_rollout(id, actor)),
    ));
    b.mutation(command(
        "cancelRollout",
        "Stops the rollout for good, keeping what was applied.",
        |r, id, actor| Box::pin(r.cancel_rollout(id, actor)),
    ));
    b.mutation(command(
        "rollbackRollout",
        "Restores, on every twin the rollout touched, the configuration and desired values it replaced (tracked: ROLLING_BACK, then ROLLED_BACK).",
        |r, id, actor| Box::pin(r.rollback_rollout(id, actor)),
    ));
    register_progress(b);
}

/// The `rolloutProgress` subscription.
fn register_progress(b: &mut Builder) {
    use async_graphql::dynamic::{SubscriptionField, SubscriptionFieldFuture};
    use futures_util::StreamExt;
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let progress = record(
        "RolloutProgress",
        "One recorded step of a rollout.",
        &[
            ("seq", s("Long"), "Sequence number of the record in the event log."),
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
    ))
    .field(deprecated_alias("sequence", s("Long"), "seq", SEQ_RENAMED));
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
    b.subscription(SubscriptionField::new("rolloutProgress", s("RolloutProgress"), |ctx| {
        SubscriptionFieldFuture::new(async move {
            let id = ctx.args.try_get("id")?.string()?.to_owned();
            let r = rollouts_of(&ctx)?.clone();
            let rx = r.progress();
            if !rollout_visible(&ctx, &r, &id).await? {
                return Err(rollout_error(&RolloutError::RolloutNotFound(id)));
            }
            let closing = ctx.data::<Shutdown>()?.clone().triggered();
            let stream = futures_util::stream::unfold((rx, r, id), |(mut rx, r, id)| async move {
                loop {
                    match rx.recv().await {
                        Ok(p) if p.rollout == id => {
                            let item = Ok(FieldValue::owned_any(progress_json(&p)));
                            return Some((item, (rx, r, id)));
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let e = super::errors::lagged(format!(
                                "the subscriber fell {n} records behind; read the rollout again"
                            ), None);
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
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID))));
    b.register(progress);
    b.register(twin_change);
}
