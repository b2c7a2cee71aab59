//! Alarms over [`crate::alarms::Alarms`]: `alarmRules`, `alarmRule`,
//! `alarms`, `alarm`, `twinHealth`; `createAlarmRule`, `updateAlarmRule`,
//! `deleteAlarmRule` (admin, unscoped: a rule applies to every twin of its
//! model); `acknowledgeAlarm`, `shelveAlarm`, `unshelveAlarm`,
//! `commentAlarm` (operators, on alarms of twins in their scope); and the
//! `alarmChanged` and `healthChanged` subscriptions. The twins' own
//! `health` and `alarms` fields are in `views`.

use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, ResolverContext,
    SubscriptionField, SubscriptionFieldFuture, TypeRef,
};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::builder::{Builder, Shutdown};
use super::connection::{Page, PageArgs, connection, with_page_arguments};
use super::context::{access_of, actor_of, json_arg, require, str_arg, time_arg};
use super::errors::{alarm_error, error, error_with, lagged, store_error};
use super::record::{nested, record, twin_at_key};
use super::views::{
    alarm_filters, alarm_json, condition_json, health_for, health_json, health_seen,
};
use crate::alarms::{Alarm, AlarmError, Alarms, Rule, RuleRequest};
use crate::auth::Action;
use crate::codes::Code;
use crate::records::{AlarmRuleSpec, Condition, Record, Severity};
use crate::twin::{Change, format_time};

fn alarms_of<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Arc<Alarms>, Error> {
    ctx.data_opt::<Arc<Alarms>>()
        .ok_or_else(|| error(Code::AlarmsUnavailable, "this server does not serve alarms"))
}

/// The alarm if the caller may see its twin; `ALARM_NOT_FOUND` otherwise.
async fn visible(ctx: &ResolverContext<'_>, id: &str) -> Result<Alarm, Error> {
    let not_found = || alarm_error(&AlarmError::NotFound(id.to_owned()));
    let a = alarms_of(ctx)?
        .book()
        .by_id(id)
        .cloned()
        .ok_or_else(not_found)?;
    if let Some(access) = access_of(ctx) {
        let seen = access
            .store
            .contains(&a.twin)
            .await
            .map_err(|e| store_error(&e))?;
        if !seen {
            return Err(not_found());
        }
    }
    Ok(a)
}

/// Rules apply to every twin of a model: only an unscoped caller may
/// change them.
fn require_rules(ctx: &ResolverContext<'_>) -> Result<(), Error> {
    require(ctx, Action::AlarmRules)?;
    if access_of(ctx).is_some_and(|a| !a.store.unscoped()) {
        return Err(error(
            Code::Forbidden,
            "an alarm rule applies to every twin of its model: a caller scoped to part of the graph may not change rules",
        ));
    }
    Ok(())
}

fn seconds_of(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn version_json(v: &AlarmRuleSpec) -> Value {
    json!({
        "name": v.name,
        "version": v.version,
        "model": v.model,
        "condition": condition_json(&v.condition),
        "severity": v.severity.name(),
        "message": v.message,
        "onDelaySeconds": seconds_of(v.on_delay_ms),
        "offDelaySeconds": seconds_of(v.off_delay_ms),
        "depth": v.depth,
        "description": v.description,
    })
}

fn rule_json(r: &Rule, alarms: &Alarms) -> Value {
    let mut v = version_json(r.current());
    let name = &r.current().name;
    let book = alarms.book();
    v["activeAlarms"] = json!(
        book.alarms()
            .filter(|a| a.rule == *name && a.active)
            .count()
    );
    v["createdAt"] = json!(format_time(r.created_at));
    v["createdBy"] = json!(r.created_by);
    v["updatedAt"] = json!(format_time(r.updated_at));
    v["updatedBy"] = json!(r.updated_by);
    v["versions"] = Value::Array(r.versions.iter().map(|s| version_json(s)).collect());
    v
}

/// A number of an input object, if given.
fn number(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

/// A rule as the `AlarmRuleInput` asks for it.
fn rule_request(v: &Value) -> Result<RuleRequest, AlarmError> {
    let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let model = text("model").unwrap_or_default();
    let c = v.get("condition").cloned().unwrap_or(Value::Null);
    let field = c.get("field").and_then(Value::as_str).map(str::to_owned);
    let deadband = number(&c, "deadband").unwrap_or(0.0);
    let need_field = |field: Option<String>| {
        field.ok_or_else(|| AlarmError::invalid("condition.field", "required for this condition"))
    };
    let mut conditions = Vec::new();
    if let Some(limit) = number(&c, "above") {
        conditions.push(Condition::Above {
            field: need_field(field.clone())?,
            limit,
            deadband,
        });
    }
    if let Some(limit) = number(&c, "below") {
        conditions.push(Condition::Below {
            field: need_field(field.clone())?,
            limit,
            deadband,
        });
    }
    if let Some(range) = c.get("outside").filter(|r| !r.is_null()) {
        conditions.push(Condition::Outside {
            field: need_field(field.clone())?,
            low: number(range, "low").unwrap_or(f64::NAN),
            high: number(range, "high").unwrap_or(f64::NAN),
            deadband,
        });
    }
    if let Some(value) = c.get("equals").filter(|x| !x.is_null()) {
        conditions.push(Condition::Equals {
            field: need_field(field.clone())?,
            value: value.clone(),
        });
    }
    if let Some(value) = c.get("notEquals").filter(|x| !x.is_null()) {
        conditions.push(Condition::NotEquals {
            field: need_field(field.clone())?,
            value: value.clone(),
        });
    }
    if let Some(per_second) = number(&c, "rateAbove") {
        conditions.push(Condition::RateAbove {
            field: need_field(field.clone())?,
            per_second,
        });
    }
    if let Some(seconds) = number(&c, "staleSeconds") {
        conditions.push(Condition::Stale {
            field: field.clone(),
            seconds,
        });
    }
    let sensitivity = |d: &Value| number(d, "sensitivity").unwrap_or(0.5);
    let window = |d: &Value, default: u32| match d.get("window").filter(|w| !w.is_null()) {
        None => Ok(default),
        Some(w) => w
            .as_u64()
            .and_then(|w| u32::try_from(w).ok())
            .ok_or_else(|| AlarmError::invalid("condition.window", "a number of reports")),
    };
    if let Some(d) = c.get("anomaly").filter(|x| !x.is_null()) {
        conditions.push(Condition::Anomaly {
            field: need_field(field.clone())?,
            sensitivity: sensitivity(d),
            window: window(d, 500)?,
        });
    }
    if let Some(d) = c.get("changePoint").filter(|x| !x.is_null()) {
        conditions.push(Condition::ChangePoint {
            field: need_field(field.clone())?,
            sensitivity: sensitivity(d),
            window: window(d, 200)?,
        });
    }
    if let Some(d) = c.get("peers").filter(|x| !x.is_null()) {
        conditions.push(Condition::Peers {
            field: need_field(field.clone())?,
            sensitivity: sensitivity(d),
            window_seconds: number(d, "windowSeconds").unwrap_or(3600.0),
        });
    }
    let condition = match conditions.len() {
        1 => conditions.remove(0),
        n => {
            return Err(AlarmError::invalid(
                "condition",
                format!(
                    "exactly one of above, below, outside, equals, notEquals, rateAbove, staleSeconds, anomaly, changePoint, peers (got {n})"
                ),
            ));
        }
    };
    let delay = |key: &str| -> Result<u64, AlarmError> {
        match number(v, key) {
            None => Ok(0),
            Some(s) if s.is_finite() && s >= 0.0 => Ok((s * 1000.0).round() as u64),
            Some(_) => Err(AlarmError::invalid(key, "seconds, 0 or more")),
        }
    };
    let severity = text("severity")
        .and_then(|s| Severity::parse(&s))
        .ok_or_else(|| AlarmError::invalid("severity", "LOW, MEDIUM, HIGH or CRITICAL"))?;
    let depth = match v.get("depth").filter(|d| !d.is_null()) {
        None => None,
        Some(d) => Some(
            d.as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| AlarmError::invalid("depth", "a number of levels, 0 or more"))?,
        ),
    };
    Ok(RuleRequest {
        model,
        condition,
        severity,
        message: text("message").unwrap_or_default(),
        on_delay_ms: delay("onDelaySeconds")?,
        off_delay_ms: delay("offDelaySeconds")?,
        depth,
        description: text("description"),
    })
}

pub(super) fn register(b: &mut Builder) {
    types(b);
    queries(b);
    mutations(b);
    subscriptions(b);
}

fn types(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let f = |n: &str| TypeRef::named(n.to_owned());
    b.register(
        Enum::new("AlarmSeverity")
            .description("How urgent an alarm is (ISA-18.2 priorities).")
            .items(Severity::ALL.map(|s| s.name())),
    );
    b.register(
        Enum::new("AlarmState")
            .description("Where an alarm stands (ISA-18.2): active or cleared, acknowledged or not; NORMAL is cleared and acknowledged.")
            .items(crate::alarms::AlarmState::ALL.map(|s| s.name())),
    );
    b.register(
        Enum::new("HealthStatus")
            .description("OK: nothing active; WARNING: LOW or MEDIUM alarms; ALARM: HIGH; CRITICAL: CRITICAL.")
            .items(["OK", "WARNING", "ALARM", "CRITICAL"]),
    );
    b.register(Enum::new("AlarmConditionType").items([
        "ABOVE",
        "BELOW",
        "OUTSIDE",
        "EQUALS",
        "NOT_EQUALS",
        "RATE_ABOVE",
        "STALE",
        "ANOMALY",
        "CHANGE_POINT",
        "PEERS",
    ]));
    b.register(record(
        "AlarmCondition",
        "What a rule watches.",
        &[
            ("type", s("AlarmConditionType"), ""),
            ("field", f(TypeRef::STRING), "The Property or Telemetry (`component.field` for a Component's); none: a STALE rule on any report."),
            ("limit", f(TypeRef::FLOAT), "ABOVE, BELOW."),
            ("low", f(TypeRef::FLOAT), "OUTSIDE."),
            ("high", f(TypeRef::FLOAT), "OUTSIDE."),
            ("deadband", f(TypeRef::FLOAT), "How far back past the limit the value must go before an active alarm clears (hysteresis)."),
            ("value", f("JSON"), "EQUALS, NOT_EQUALS."),
            ("perSecond", f(TypeRef::FLOAT), "RATE_ABOVE: the change per second (either way) between two reports."),
            ("seconds", f(TypeRef::FLOAT), "STALE: no report for this long."),
            ("sensitivity", f(TypeRef::FLOAT), "ANOMALY, CHANGE_POINT, PEERS: the detector's sensitivity, above 0 and below 1 (higher flags more)."),
            ("window", f(TypeRef::INT), "ANOMALY: how many of the twin's last reports a value is compared with; CHANGE_POINT: how many are split into levels."),
            ("windowSeconds", f(TypeRef::FLOAT), "PEERS: the span of the twins' reports compared."),
        ],
    ));
    b.register(record(
        "AlarmEvidence",
        "Why a detector found a value unusual (SUSPECT alarms).",
        &[
            ("observed", s(TypeRef::FLOAT), "The value judged (CHANGE_POINT: the median of the new level; PEERS: the twin's mean over the last tenth of the window)."),
            ("expectedLow", s(TypeRef::FLOAT), "The band of values expected: ANOMALY, the median give or take the threshold in median absolute deviations; CHANGE_POINT, the level before the shift give or take the threshold in noise deviations; PEERS, the range of the peers' values then."),
            ("expectedHigh", s(TypeRef::FLOAT), ""),
            ("score", s(TypeRef::FLOAT), "ANOMALY: median absolute deviations from the median; CHANGE_POINT: the shift in noise deviations; PEERS: the share of the window in which the twin was unlike its peers."),
        ],
    ));
    let version_fields: [(&str, TypeRef, &str); 9] = [
        ("name", s(TypeRef::STRING), ""),
        (
            "version",
            s(TypeRef::INT),
            "Versions are immutable; an update publishes the next.",
        ),
        (
            "model",
            s(TypeRef::STRING),
            "The model it applies to (twins of subtypes included).",
        ),
        ("severity", s("AlarmSeverity"), ""),
        (
            "message",
            s(TypeRef::STRING),
            "The template of its alarms' messages.",
        ),
        (
            "onDelaySeconds",
            s(TypeRef::FLOAT),
            "How long the condition must hold before the alarm is raised.",
        ),
        (
            "offDelaySeconds",
            s(TypeRef::FLOAT),
            "How long it must not hold before the alarm clears.",
        ),
        (
            "depth",
            f(TypeRef::INT),
            "How many containers up its alarms count in health (null: all).",
        ),
        ("description", f(TypeRef::STRING), ""),
    ];
    let mut version = record(
        "AlarmRuleVersion",
        "One published version of an alarm rule.",
        &version_fields,
    );
    version = version.field(nested("condition", s("AlarmCondition"), "condition", ""));
    b.register(version);
    let mut rule_fields = version_fields.to_vec();
    rule_fields.extend([
        ("activeAlarms", s(TypeRef::INT), "Its alarms active now."),
        ("createdAt", s("DateTime"), ""),
        ("createdBy", s(TypeRef::STRING), ""),
        ("updatedAt", s("DateTime"), ""),
        ("updatedBy", s(TypeRef::STRING), ""),
    ]);
    let mut rule = record(
        "AlarmRule",
        "An alarm rule: a condition on a field of every twin of a model, with its delays, severity and message; versioned like configurations.",
        &rule_fields,
    );
    rule = rule
        .field(nested("condition", s("AlarmCondition"), "condition", ""))
        .field(nested(
            "versions",
            TypeRef::named_nn_list_nn("AlarmRuleVersion"),
            "versions",
            "Every version, oldest first.",
        ));
    b.register(rule);
    b.register(record(
        "AlarmComment",
        "A comment on an alarm.",
        &[
            ("text", s(TypeRef::STRING), ""),
            ("by", s(TypeRef::STRING), ""),
            ("at", s("DateTime"), ""),
        ],
    ));
    b.register(record(
        "AlarmTransition",
        "A change of an alarm (the last 50; the event log has them all).",
        &[
            (
                "kind",
                s(TypeRef::STRING),
                "RAISED, CLEARED, ACKNOWLEDGED, SHELVED, UNSHELVED or COMMENTED.",
            ),
            ("at", s("DateTime"), ""),
            (
                "by",
                s(TypeRef::STRING),
                "Who: an operator, or `alarm rules`.",
            ),
            ("seq", s(TypeRef::INT), "Its event's sequence number."),
            ("state", s("AlarmState"), "The state after it."),
            (
                "note",
                f(TypeRef::STRING),
                "Its comment, reason or message.",
            ),
        ],
    ));
    let alarm = record(
        "Alarm",
        "An alarm: one rule on one twin, across its occurrences (ISA-18.2). Its id is `rule/twin`.",
        &[
            ("id", s(TypeRef::ID), "`rule/twin`."),
            ("ruleName", s(TypeRef::STRING), ""),
            (
                "ruleVersion",
                s(TypeRef::INT),
                "The rule's version that raised it last.",
            ),
            ("twinId", s(TypeRef::ID), ""),
            ("severity", s("AlarmSeverity"), ""),
            ("state", s("AlarmState"), ""),
            ("active", s(TypeRef::BOOLEAN), "The condition holds."),
            ("acknowledged", s(TypeRef::BOOLEAN), ""),
            (
                "shelved",
                s(TypeRef::BOOLEAN),
                "Shelved alarms count in no health.",
            ),
            ("shelvedUntil", f("DateTime"), ""),
            ("message", s(TypeRef::STRING), ""),
            ("value", f("JSON"), "The value that raised (or cleared) it."),
            ("raisedAt", s("DateTime"), "When it was last raised."),
            ("clearedAt", f("DateTime"), ""),
            ("acknowledgedAt", f("DateTime"), ""),
            ("acknowledgedBy", f(TypeRef::STRING), ""),
            ("changedAt", s("DateTime"), ""),
            (
                "containers",
                TypeRef::named_nn_list_nn(TypeRef::ID),
                "The twin's containers when it was raised, nearest first.",
            ),
            (
                "suspect",
                s(TypeRef::BOOLEAN),
                "SUSPECT: raised by a detector (an ANOMALY, CHANGE_POINT or PEERS rule) that found the value unusual, not by a limit.",
            ),
        ],
    )
    .field(twin_at_key(
        "twin",
        "twinId",
        "Its twin (null if out of the caller's view or deleted).",
    ))
    .field(nested(
        "evidence",
        f("AlarmEvidence"),
        "evidence",
        "SUSPECT alarms: the detector's reasons when it was last raised.",
    ))
    .field(nested(
        "comments",
        TypeRef::named_nn_list_nn("AlarmComment"),
        "comments",
        "Oldest first.",
    ))
    .field(nested(
        "history",
        TypeRef::named_nn_list_nn("AlarmTransition"),
        "history",
        "Its recent changes, oldest first.",
    ));
    b.register(alarm);
    b.register(record(
        "AlarmCounts",
        "Active, unshelved alarms by severity.",
        &[
            ("critical", s(TypeRef::INT), ""),
            ("high", s(TypeRef::INT), ""),
            ("medium", s(TypeRef::INT), ""),
            ("low", s(TypeRef::INT), ""),
            ("total", s(TypeRef::INT), ""),
        ],
    ));
    b.register(
        record(
            "TwinHealth",
            "A twin's health: the active, unshelved alarms on it and below it (each counts up to its rule's depth).",
            &[
                ("twinId", s(TypeRef::ID), ""),
                ("status", s("HealthStatus"), ""),
                ("worstSeverity", f("AlarmSeverity"), "Null when nothing is active."),
                ("score", s(TypeRef::INT), "100 with nothing active, less 40 per CRITICAL, 20 per HIGH, 5 per MEDIUM and 1 per LOW alarm, at least 0."),
            ],
        )
        .field(nested("activeCounts", s("AlarmCounts"), "activeCounts", "")),
    );
    b.register(
        record(
            "AlarmChange",
            "An alarm changed.",
            &[
                (
                    "kind",
                    s(TypeRef::STRING),
                    "RAISED, CLEARED, ACKNOWLEDGED, SHELVED, UNSHELVED or COMMENTED.",
                ),
                ("seq", s(TypeRef::INT), "The event's sequence number."),
                ("time", s("DateTime"), ""),
            ],
        )
        .field(nested(
            "alarm",
            s("Alarm"),
            "alarm",
            "The alarm after the change.",
        )),
    );
    b.register(
        record(
            "TwinHealthChange",
            "A twin's health changed.",
            &[
                ("twinId", s(TypeRef::ID), ""),
                ("seq", s(TypeRef::INT), "The event that changed it."),
                ("time", s("DateTime"), ""),
            ],
        )
        .field(nested("health", s("TwinHealth"), "health", ""))
        .field(twin_at_key("twin", "twinId", "")),
    );
    b.register(
        InputObject::new("AlarmRangeInput")
            .field(InputValue::new("low", s(TypeRef::FLOAT)))
            .field(InputValue::new("high", s(TypeRef::FLOAT))),
    );
    b.register(
        InputObject::new("AlarmAnomalyInput")
            .field(InputValue::new("sensitivity", f(TypeRef::FLOAT)).description("Above 0 and below 1; 0.5 when absent (a value about 2.9 median absolute deviations from the median)."))
            .field(InputValue::new("window", f(TypeRef::INT)).description("How many of the twin's last reports a value is compared with: 10 to 10,000; 500 when absent. The first judgement waits for 30 (or the window).")),
    );
    b.register(
        InputObject::new("AlarmChangePointInput")
            .field(InputValue::new("sensitivity", f(TypeRef::FLOAT)).description("Above 0 and below 1; 0.5 when absent: a shift of 2 / sensitivity noise deviations counts (0.5: 4)."))
            .field(InputValue::new("window", f(TypeRef::INT)).description("How many of the twin's last reports are split into levels: 20 to 2,000; 200 when absent. Judged on every report from the 20th; a shift is reported until the level comes back or its change point leaves the window.")),
    );
    b.register(
        InputObject::new("AlarmPeersInput")
            .field(InputValue::new("sensitivity", f(TypeRef::FLOAT)).description("Above 0 and below 1; 0.5 when absent (higher flags more)."))
            .field(InputValue::new("windowSeconds", f(TypeRef::FLOAT)).description("The span compared, in ten buckets: 10 s to 7 days; 3600 when absent. Compared every tenth of it (1 s to 60 s); at least 3 peers with reports.")),
    );
    b.register(
        InputObject::new("AlarmConditionInput")
            .description("A field and exactly one of the conditions.")
            .field(InputValue::new("field", f(TypeRef::STRING)).description("A Property or Telemetry of the model (`component.field` for a Component's); optional for staleSeconds (any report)."))
            .field(InputValue::new("above", f(TypeRef::FLOAT)))
            .field(InputValue::new("below", f(TypeRef::FLOAT)))
            .field(InputValue::new("outside", f("AlarmRangeInput")))
            .field(InputValue::new("equals", f("JSON")).description("A value of the field's schema (an enum's value, a string, a boolean)."))
            .field(InputValue::new("notEquals", f("JSON")))
            .field(InputValue::new("rateAbove", f(TypeRef::FLOAT)).description("Change per second, either way, between two reports."))
            .field(InputValue::new("staleSeconds", f(TypeRef::FLOAT)).description("No report for this long."))
            .field(InputValue::new("anomaly", f("AlarmAnomalyInput")).description("A value unlike the twin's recent ones: a SUSPECT alarm with the evidence."))
            .field(InputValue::new("changePoint", f("AlarmChangePointInput")).description("The field's level shifted (Bayesian online change-point detection) and has not come back: a SUSPECT alarm with the evidence."))
            .field(InputValue::new("peers", f("AlarmPeersInput")).description("A twin whose values are unlike its peers' (twins of the model in the same container): a SUSPECT alarm with the evidence."))
            .field(InputValue::new("deadband", f(TypeRef::FLOAT)).description("above, below, outside: how far back the value must go before an active alarm clears.")),
    );
    b.register(
        InputObject::new("AlarmRuleInput")
            .field(InputValue::new("model", s(TypeRef::STRING)).description("The model (DTMI) it applies to, subtypes included; an update keeps it."))
            .field(InputValue::new("condition", s("AlarmConditionInput")))
            .field(InputValue::new("severity", s("AlarmSeverity")))
            .field(InputValue::new("message", s(TypeRef::STRING)).description("Its alarms' message: {twin}, {field}, {value}, {limit}, {rule}, {severity} and {model} are filled in."))
            .field(InputValue::new("onDelaySeconds", f(TypeRef::FLOAT)).description("0 when absent; at most 7 days."))
            .field(InputValue::new("offDelaySeconds", f(TypeRef::FLOAT)).description("0 when absent; at most 7 days."))
            .field(InputValue::new("depth", f(TypeRef::INT)).description("How many containers up its alarms count in health; all when absent."))
            .field(InputValue::new("description", f(TypeRef::STRING))),
    );
    let [conn, edge] = connection::<Value>(
        "AlarmConnection",
        "AlarmEdge",
        "Alarm",
        |_, a| Ok(FieldValue::borrowed_any(a)),
        "The alarm.",
        Vec::new(),
        Some((
            TypeRef::named_nn(TypeRef::INT),
            "Alarms in the whole list (the caller's view).",
        )),
    );
    b.register(conn);
    b.register(edge);
}

fn queries(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    b.query(
        Field::new("alarmRules", TypeRef::named_nn_list_nn("AlarmRule"), |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let model = str_arg(&ctx, "model")?;
                let alarms = alarms_of(&ctx)?;
                let models = super::context::store_of(&ctx)?.models();
                let rules: Vec<Value> = alarms
                    .book()
                    .rules()
                    .filter(|r| {
                        model.as_ref().is_none_or(|m| {
                            // Rules of the model and of what it extends.
                            models
                                .interface(m)
                                .is_some_and(|i| i.is_a(&r.current().model))
                        })
                    })
                    .map(|r| rule_json(r, alarms))
                    .collect();
                Ok(Some(FieldValue::list(rules.into_iter().map(FieldValue::owned_any))))
            })
        })
        .description("Alarm rules, by name; with `model`, those that apply to its twins (rules of the model and of the models it extends).")
        .argument(InputValue::new("model", TypeRef::named(TypeRef::STRING))),
    );
    b.query(
        Field::new("alarmRule", TypeRef::named("AlarmRule"), |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let name = ctx.args.try_get("name")?.string()?.to_owned();
                let alarms = alarms_of(&ctx)?;
                let rule = alarms.book().rule(&name).map(|r| rule_json(r, alarms));
                Ok(rule.map(FieldValue::owned_any))
            })
        })
        .argument(InputValue::new("name", s(TypeRef::STRING))),
    );
    b.query(
        Field::new("alarm", TypeRef::named("Alarm"), |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                Ok(visible(&ctx, &id)
                    .await
                    .ok()
                    .map(|a| FieldValue::owned_any(alarm_json(&a))))
            })
        })
        .description(
            "An alarm by id (`rule/twin`); null if none or its twin is out of the caller's view.",
        )
        .argument(InputValue::new("id", s(TypeRef::ID))),
    );
    let max_page = b.limits.max_page;
    b.query(with_page_arguments(
        Field::new("alarms", s("AlarmConnection"), move |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let args = PageArgs::read(&ctx, max_page)?;
                let under = str_arg(&ctx, "under")?;
                let twin = str_arg(&ctx, "twin")?;
                let rule = str_arg(&ctx, "rule")?;
                let (severities, states) = alarm_filters(&ctx)?;
                let alarms = alarms_of(&ctx)?;
                let mut items: Vec<Alarm> = alarms
                    .book()
                    .alarms()
                    .filter(|a| under.as_ref().is_none_or(|u| a.under(u)))
                    .filter(|a| twin.as_ref().is_none_or(|t| a.twin == *t))
                    .filter(|a| rule.as_ref().is_none_or(|r| a.rule == *r))
                    .filter(|a| severities.as_ref().is_none_or(|s| s.contains(&a.severity)))
                    .filter(|a| states.contains(&a.state()))
                    .cloned()
                    .collect();
                if let Some(a) = access_of(&ctx).filter(|a| !a.store.unscoped()) {
                    let twins: Vec<&str> = items.iter().map(|x| x.twin.as_str()).collect();
                    let seen = a.store.filter(&twins).await.map_err(|e| store_error(&e))?;
                    items.retain(|x| seen.contains(&x.twin));
                }
                // Newest first: by the event that raised each last.
                items.sort_by_key(|a| std::cmp::Reverse(a.raised_seq));
                let cursor = |s: &Option<String>| -> Result<Option<u64>, Error> {
                    s.as_ref()
                        .map(|c| {
                            c.parse::<u64>().map_err(|_| {
                                super::errors::bad_request(format!("cursor {c:?}: not an alarms cursor"))
                            })
                        })
                        .transpose()
                };
                let (after, before) = (cursor(&args.after)?, cursor(&args.before)?);
                let page = Page::of_sorted(
                    items,
                    &args,
                    |a| a.raised_seq.to_string(),
                    |a| after.is_none_or(|c| a.raised_seq < c),
                    |a| before.is_none_or(|c| a.raised_seq > c),
                );
                Ok(Some(FieldValue::owned_any(page.map(|a| alarm_json(&a)))))
            })
        })
        .description("Alarms in the caller's view, newest raised first; by default those not NORMAL (active, or cleared and not acknowledged). A Relay connection.")
        .argument(InputValue::new("under", TypeRef::named(TypeRef::ID)).description("Only alarms of this twin and the twins it contains."))
        .argument(InputValue::new("twin", TypeRef::named(TypeRef::ID)).description("Only this twin's alarms."))
        .argument(InputValue::new("rule", TypeRef::named(TypeRef::STRING)).description("Only this rule's alarms."))
        .argument(InputValue::new("severity", TypeRef::named_nn_list("AlarmSeverity")))
        .argument(InputValue::new("state", TypeRef::named_nn_list("AlarmState")).description("Only these states (by default every state but NORMAL).")),
    ));
    b.query(
        Field::new("twinHealth", TypeRef::named("TwinHealth"), |ctx| {
            FieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let id = ctx.args.try_get("twin")?.string()?.to_owned();
                let seen = super::context::store_of(&ctx)?
                    .twin(&id)
                    .await
                    .map_err(|e| store_error(&e))?;
                if seen.is_none() {
                    return Ok(None);
                }
                let health = health_for(&ctx, alarms_of(&ctx)?, &id).await?;
                Ok(Some(FieldValue::owned_any(health_json(&id, &health))))
            })
        })
        .description("A twin's health (null if no such twin in the caller's view); the same as its `health` field.")
        .argument(InputValue::new("twin", s(TypeRef::ID))),
    );
}

fn mutations(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    for (name, create) in [("createAlarmRule", true), ("updateAlarmRule", false)] {
        b.mutation(
            Field::new(name, s("AlarmRule"), move |ctx| {
                FieldFuture::new(async move {
                    let rule_name = ctx.args.try_get("name")?.string()?.to_owned();
                    let input = json_arg(&ctx, "rule")?.unwrap_or(Value::Null);
                    require_rules(&ctx)?;
                    let request = rule_request(&input).map_err(|e| alarm_error(&e))?;
                    let alarms = alarms_of(&ctx)?;
                    let actor = actor_of(&ctx);
                    if create {
                        alarms.create_rule(&rule_name, request, &actor).await
                    } else {
                        alarms.update_rule(&rule_name, request, &actor).await
                    }
                    .map_err(|e| alarm_error(&e))?;
                    let rule = alarms
                        .book()
                        .rule(&rule_name)
                        .map(|r| rule_json(r, alarms))
                        .ok_or_else(|| alarm_error(&AlarmError::RuleNotFound(rule_name.clone())))?;
                    Ok(Some(FieldValue::owned_any(rule)))
                })
            })
            .description(if create {
                "Creates an alarm rule (admin; version 1), checked against its model: a bad field, a condition that does not fit the field's schema, a bad delay or message is refused with INVALID_ALARM_RULE and `extensions.path`. It is evaluated on every twin of the model at once."
            } else {
                "Publishes the next version of an alarm rule (admin; its model stays). Active alarms take the new version's severity and message if its condition still holds, and clear if not."
            })
            .argument(InputValue::new("name", s(TypeRef::STRING)).description("1 to 64 ASCII letters, digits, '-', '_' or '.'."))
            .argument(InputValue::new("rule", s("AlarmRuleInput"))),
        );
    }
    b.mutation(
        Field::new("deleteAlarmRule", s(TypeRef::STRING), |ctx| {
            FieldFuture::new(async move {
                let name = ctx.args.try_get("name")?.string()?.to_owned();
                require_rules(&ctx)?;
                alarms_of(&ctx)?
                    .delete_rule(&name, &actor_of(&ctx))
                    .await
                    .map_err(|e| alarm_error(&e))?;
                Ok(Some(FieldValue::value(name)))
            })
        })
        .description("Deletes an alarm rule (admin): its active alarms clear, and its alarms leave the lists (their history stays in the event log). Returns the name.")
        .argument(InputValue::new("name", s(TypeRef::STRING))),
    );
    b.mutation(
        Field::new("acknowledgeAlarm", s("Alarm"), |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let comment = str_arg(&ctx, "comment")?;
                require(&ctx, Action::Alarms)?;
                visible(&ctx, &id).await?;
                let a = alarms_of(&ctx)?
                    .acknowledge(&id, comment, &actor_of(&ctx))
                    .await
                    .map_err(|e| alarm_error(&e))?;
                Ok(Some(FieldValue::owned_any(alarm_json(&a))))
            })
        })
        .description("Acknowledges an alarm (operator; who and when are recorded): ACTIVE_UNACKNOWLEDGED becomes ACTIVE_ACKNOWLEDGED, CLEARED_UNACKNOWLEDGED becomes NORMAL. An acknowledged alarm is returned as it is.")
        .argument(InputValue::new("id", s(TypeRef::ID)))
        .argument(InputValue::new("comment", TypeRef::named(TypeRef::STRING))),
    );
    b.mutation(
        Field::new("shelveAlarm", s("Alarm"), |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let comment = str_arg(&ctx, "comment")?;
                let until = time_arg(&ctx, "until")?;
                let for_seconds = match ctx.args.get("forSeconds") {
                    Some(v) if !v.is_null() => Some(v.f64()?),
                    _ => None,
                };
                require(&ctx, Action::Alarms)?;
                let alarms = alarms_of(&ctx)?;
                let until = match (until, for_seconds) {
                    (Some(u), None) => u,
                    (None, Some(s)) if s.is_finite() && s > 0.0 => {
                        alarms.now().saturating_add((s * 1e6) as i64)
                    }
                    _ => {
                        return Err(error_with(
                            Code::InvalidAlarmRequest,
                            "until or forSeconds (above 0): exactly one",
                            |ext| ext.set("path", "until"),
                        ));
                    }
                };
                visible(&ctx, &id).await?;
                let a = alarms
                    .shelve(&id, until, comment, &actor_of(&ctx))
                    .await
                    .map_err(|e| alarm_error(&e))?;
                Ok(Some(FieldValue::owned_any(alarm_json(&a))))
            })
        })
        .description("Shelves an alarm (operator) until a time at most 7 days ahead: it counts in no health meanwhile, and comes back by itself when the shelf expires.")
        .argument(InputValue::new("id", s(TypeRef::ID)))
        .argument(InputValue::new("until", TypeRef::named("DateTime")))
        .argument(InputValue::new("forSeconds", TypeRef::named(TypeRef::FLOAT)))
        .argument(InputValue::new("comment", TypeRef::named(TypeRef::STRING))),
    );
    b.mutation(
        Field::new("unshelveAlarm", s("Alarm"), |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                require(&ctx, Action::Alarms)?;
                visible(&ctx, &id).await?;
                let a = alarms_of(&ctx)?
                    .unshelve(&id, &actor_of(&ctx))
                    .await
                    .map_err(|e| alarm_error(&e))?;
                Ok(Some(FieldValue::owned_any(alarm_json(&a))))
            })
        })
        .description("Puts a shelved alarm back (operator).")
        .argument(InputValue::new("id", s(TypeRef::ID))),
    );
    b.mutation(
        Field::new("commentAlarm", s("Alarm"), |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let text = ctx.args.try_get("text")?.string()?.to_owned();
                require(&ctx, Action::Alarms)?;
                visible(&ctx, &id).await?;
                let a = alarms_of(&ctx)?
                    .comment(&id, &text, &actor_of(&ctx))
                    .await
                    .map_err(|e| alarm_error(&e))?;
                Ok(Some(FieldValue::owned_any(alarm_json(&a))))
            })
        })
        .description("Adds a comment to an alarm (operator; up to 2000 bytes).")
        .argument(InputValue::new("id", s(TypeRef::ID)))
        .argument(InputValue::new("text", s(TypeRef::STRING))),
    );
}

/// The alarm an alarm record is about.
fn alarm_of_record(r: &Record) -> Option<(&'static str, &str, &str)> {
    Some(match r {
        Record::AlarmRaised { alarm } => ("RAISED", alarm.rule.as_str(), alarm.twin.as_str()),
        Record::AlarmCleared { rule, twin, .. } => ("CLEARED", rule, twin),
        Record::AlarmAcknowledged { rule, twin, .. } => ("ACKNOWLEDGED", rule, twin),
        Record::AlarmShelved { rule, twin, .. } => ("SHELVED", rule, twin),
        Record::AlarmUnshelved { rule, twin, .. } => ("UNSHELVED", rule, twin),
        Record::AlarmCommented { rule, twin, .. } => ("COMMENTED", rule, twin),
        _ => return None,
    })
}

/// The end of a lagging subscriber's stream.
fn lag_end<T>(n: u64) -> (Result<FieldValue<'static>, Error>, Option<T>) {
    (
        Err(lagged(
            format!("the subscriber fell {n} events behind; query alarms again"),
            None,
        )),
        None,
    )
}

fn subscriptions(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    b.subscription(
        SubscriptionField::new("alarmChanged", s("AlarmChange"), |ctx| {
            SubscriptionFieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let under = str_arg(&ctx, "under")?;
                let (severities, _) = alarm_filters(&ctx)?;
                let alarms = alarms_of(&ctx)?.clone();
                let rx = alarms.changes();
                let closing = ctx.data::<Shutdown>()?.clone().triggered();
                let guard = access_of(&ctx)
                    .filter(|a| !a.store.unscoped())
                    .map(|a| a.store.clone());
                let stream = futures_util::stream::unfold(Some(rx), move |rx| {
                    let (under, severities, alarms, guard) =
                        (under.clone(), severities.clone(), alarms.clone(), guard.clone());
                    async move {
                        let mut rx = rx?;
                        loop {
                            let e = match rx.recv().await {
                                Ok(e) => e,
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                    return Some(lag_end(n));
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                            };
                            let Change::Record(r) = &e.change else { continue };
                            let Some((kind, rule, twin)) = alarm_of_record(r) else { continue };
                            let Some(a) = alarms.book().alarm(rule, twin).cloned() else { continue };
                            if under.as_ref().is_some_and(|u| !a.under(u))
                                || severities.as_ref().is_some_and(|s| !s.contains(&a.severity))
                            {
                                continue;
                            }
                            if let Some(g) = &guard
                                && !g.contains(&a.twin).await.unwrap_or(false)
                            {
                                continue;
                            }
                            let v = json!({
                                "kind": kind,
                                "seq": e.seq,
                                "time": format_time(e.time),
                                "alarm": alarm_json(&a),
                            });
                            return Some((Ok(FieldValue::owned_any(v)), Some(rx)));
                        }
                    }
                });
                Ok(stream.take_until(Box::pin(closing)))
            })
        })
        .description("Live: alarms raised, cleared, acknowledged, shelved, unshelved or commented on (under a twin, of some severities), in the caller's view.")
        .argument(InputValue::new("under", TypeRef::named(TypeRef::ID)).description("Only alarms of this twin and the twins it contains."))
        .argument(InputValue::new("severity", TypeRef::named_nn_list("AlarmSeverity"))),
    );
    b.subscription(
        SubscriptionField::new("healthChanged", s("TwinHealthChange"), |ctx| {
            SubscriptionFieldFuture::new(async move {
                require(&ctx, Action::Read)?;
                let under = str_arg(&ctx, "under")?;
                let alarms = alarms_of(&ctx)?.clone();
                let rx = alarms.changes();
                let closing = ctx.data::<Shutdown>()?.clone().triggered();
                let guard = access_of(&ctx)
                    .filter(|a| !a.store.unscoped())
                    .map(|a| a.store.clone());
                // Health changes come several at a time (a twin and its
                // containers): the pending ones are sent one by one.
                let pending: std::collections::VecDeque<Value> = std::collections::VecDeque::new();
                let stream = futures_util::stream::unfold(Some((rx, pending)), move |state| {
                    let (under, alarms, guard) = (under.clone(), alarms.clone(), guard.clone());
                    async move {
                        let (mut rx, mut pending) = state?;
                        loop {
                            if let Some(v) = pending.pop_front() {
                                return Some((Ok(FieldValue::owned_any(v)), Some((rx, pending))));
                            }
                            let e = match rx.recv().await {
                                Ok(e) => e,
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                    return Some(lag_end(n));
                                }
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                            };
                            let Change::Record(r) = &e.change else { continue };
                            if matches!(r, Record::AlarmAcknowledged { .. } | Record::AlarmCommented { .. }) {
                                continue;
                            }
                            let Some((_, rule, twin)) = alarm_of_record(r) else { continue };
                            let Some(a) = alarms.book().alarm(rule, twin).cloned() else { continue };
                            // The twin and the containers it counts at; each
                            // under `under` if `under` is it or above it.
                            let chain: Vec<String> = std::iter::once(a.twin.clone())
                                .chain(a.ancestors.iter().cloned())
                                .collect();
                            let counted = 1 + a.counted_at().len();
                            for (i, t) in chain.iter().enumerate().take(counted) {
                                if under.as_ref().is_some_and(|u| !chain[i..].contains(u)) {
                                    continue;
                                }
                                if let Some(g) = &guard
                                    && !g.contains(t).await.unwrap_or(false)
                                {
                                    continue;
                                }
                                let health = match health_seen(guard.as_ref(), &alarms, t).await {
                                    Ok(h) => h,
                                    Err(_) => continue,
                                };
                                pending.push_back(json!({
                                    "twinId": t,
                                    "seq": e.seq,
                                    "time": format_time(e.time),
                                    "health": health_json(t, &health),
                                }));
                            }
                        }
                    }
                });
                Ok(stream.take_until(Box::pin(closing)))
            })
        })
        .description("Live: the health of a twin (and of every twin below it) as alarms raise, clear, shelve and unshelve; one message per twin whose health changed.")
        .argument(InputValue::new("under", TypeRef::named(TypeRef::ID)).description("Only this twin and the twins it contains.")),
    );
}
