//! Alarm rules: checked against the models as twin writes are (the
//! offending part named by its path), and their conditions evaluated on a
//! value, pure functions both.

use serde_json::Value;

use super::AlarmError;
use crate::dtdl::ModelSet;
use crate::dtdl::model::{ContentKind, Schema};
use crate::records::{AlarmRuleSpec, Condition, Evidence};

/// Longest on- or off-delay, stale period and shelf: a week.
pub const MAX_DELAY_MS: u64 = 7 * 24 * 3600 * 1000;

/// The fewest and most reports an anomaly rule compares a value with.
pub const MIN_WINDOW: u32 = 10;
pub const MAX_WINDOW: u32 = 10_000;

/// The most reports a change-point rule looks at (its detector's state
/// grows with the window, and every `window` reports it steps over all of
/// it again).
pub const MAX_SHIFT_WINDOW: u32 = 2_000;

/// The shortest window a peers rule compares twins over.
pub const MIN_PEER_WINDOW_S: f64 = 10.0;

/// Longest message template.
const MAX_MESSAGE: usize = 1024;

/// Deepest propagation a rule may ask for.
pub const MAX_DEPTH: u32 = 64;

/// The placeholders a message may use.
pub const PLACEHOLDERS: [&str; 7] = [
    "twin", "field", "value", "limit", "rule", "severity", "model",
];

/// Whether `name` may name a rule: 1 to 64 ASCII letters, digits, `-`, `_`
/// or `.` (alarm ids are `rule/twin`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks a rule against the models: its model exists, its field is a
/// Property or Telemetry of it whose schema fits the condition, and its
/// numbers, delays and message make sense.
pub fn check(models: &ModelSet, spec: &AlarmRuleSpec) -> Result<(), AlarmError> {
    if !valid_name(&spec.name) {
        return Err(AlarmError::invalid(
            "name",
            "1 to 64 ASCII letters, digits, '-', '_' or '.'",
        ));
    }
    if models.interface(&spec.model).is_none() {
        return Err(AlarmError::invalid(
            "model",
            format!("{} is not a loaded model", spec.model),
        ));
    }
    check_condition(models, &spec.model, &spec.condition)?;
    for (path, ms) in [
        ("onDelay", spec.on_delay_ms),
        ("offDelay", spec.off_delay_ms),
    ] {
        if ms > MAX_DELAY_MS {
            return Err(AlarmError::invalid(path, "at most 7 days"));
        }
    }
    if spec.depth.is_some_and(|d| d > MAX_DEPTH) {
        return Err(AlarmError::invalid("depth", format!("at most {MAX_DEPTH}")));
    }
    check_message(&spec.message)?;
    Ok(())
}

fn check_message(message: &str) -> Result<(), AlarmError> {
    if message.trim().is_empty() || message.len() > MAX_MESSAGE {
        return Err(AlarmError::invalid(
            "message",
            format!("1 to {MAX_MESSAGE} bytes"),
        ));
    }
    let mut rest = message;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(AlarmError::invalid("message", "a `{` is never closed"));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(AlarmError::invalid(
                "message",
                format!(
                    "unknown placeholder {{{name}}}; known: {}",
                    PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                ),
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// The schema of `field` (`component.field` for a Component's) of `model`:
/// a Property's or a Telemetry's.
fn schema_of<'m>(models: &'m ModelSet, model: &str, field: &str) -> Option<&'m Schema> {
    let iface = models.interface(model)?;
    let (iface, name) = match field.split_once('.') {
        Some((component, name)) => match iface.content(component).map(|c| &c.kind) {
            Some(ContentKind::Component { schema }) => (models.interface(schema)?, name),
            _ => return None,
        },
        None => (iface, field),
    };
    match &iface.content(name)?.kind {
        ContentKind::Telemetry { schema } | ContentKind::Property { schema, .. } => Some(schema),
        _ => None,
    }
}

fn check_condition(models: &ModelSet, model: &str, c: &Condition) -> Result<(), AlarmError> {
    let schema = match c.field() {
        Some(field) => Some(schema_of(models, model, field).ok_or_else(|| {
            AlarmError::invalid(
                "condition.field",
                format!("{model} has no property or telemetry `{field}`"),
            )
        })?),
        None => None,
    };
    let numeric = || match schema {
        Some(Schema::Primitive { primitive }) if primitive.is_numeric() => Ok(()),
        _ => Err(AlarmError::invalid(
            "condition.field",
            format!(
                "`{}` is not numeric: this condition compares numbers",
                c.field().unwrap_or_default()
            ),
        )),
    };
    let finite = |path: &str, v: f64| {
        if v.is_finite() {
            Ok(())
        } else {
            Err(AlarmError::invalid(path, "must be a finite number"))
        }
    };
    let deadband = |d: f64| {
        finite("condition.deadband", d)?;
        if d < 0.0 {
            return Err(AlarmError::invalid(
                "condition.deadband",
                "must not be negative",
            ));
        }
        Ok(())
    };
    match c {
        Condition::Above {
            limit, deadband: d, ..
        }
        | Condition::Below {
            limit, deadband: d, ..
        } => {
            numeric()?;
            finite("condition.limit", *limit)?;
            deadband(*d)
        }
        Condition::Outside {
            low,
            high,
            deadband: d,
            ..
        } => {
            numeric()?;
            finite("condition.low", *low)?;
            finite("condition.high", *high)?;
            if low >= high {
                return Err(AlarmError::invalid("condition.high", "must be above low"));
            }
            deadband(*d)
        }
        Condition::Equals { value, .. } | Condition::NotEquals { value, .. } => {
            let Some(schema) = schema else {
                return Err(AlarmError::invalid("condition.field", "required"));
            };
            crate::twin::value::validate(schema, value)
                .map_err(|m| AlarmError::invalid(format!("condition.value{}", m.path), m.message))
        }
        Condition::RateAbove { per_second, .. } => {
            numeric()?;
            finite("condition.perSecond", *per_second)?;
            if *per_second <= 0.0 {
                return Err(AlarmError::invalid(
                    "condition.perSecond",
                    "must be above 0",
                ));
            }
            Ok(())
        }
        Condition::Anomaly {
            sensitivity,
            window,
            ..
        } => {
            numeric()?;
            check_sensitivity(*sensitivity)?;
            if !(MIN_WINDOW..=MAX_WINDOW).contains(window) {
                return Err(AlarmError::invalid(
                    "condition.window",
                    format!("{MIN_WINDOW} to {MAX_WINDOW} reports"),
                ));
            }
            Ok(())
        }
        Condition::ChangePoint {
            sensitivity,
            window,
            ..
        } => {
            numeric()?;
            check_sensitivity(*sensitivity)?;
            let least = super::detect::MIN_SHIFT_VALUES as u32;
            if !(least..=MAX_SHIFT_WINDOW).contains(window) {
                return Err(AlarmError::invalid(
                    "condition.window",
                    format!("{least} to {MAX_SHIFT_WINDOW} reports"),
                ));
            }
            Ok(())
        }
        Condition::Peers {
            sensitivity,
            window_seconds,
            ..
        } => {
            numeric()?;
            check_sensitivity(*sensitivity)?;
            finite("condition.windowSeconds", *window_seconds)?;
            if *window_seconds < MIN_PEER_WINDOW_S || *window_seconds * 1000.0 > MAX_DELAY_MS as f64
            {
                return Err(AlarmError::invalid(
                    "condition.windowSeconds",
                    format!("{MIN_PEER_WINDOW_S} s to 7 days"),
                ));
            }
            Ok(())
        }
        Condition::Stale { seconds, .. } => {
            finite("condition.seconds", *seconds)?;
            if *seconds <= 0.0 || *seconds * 1000.0 > MAX_DELAY_MS as f64 {
                return Err(AlarmError::invalid(
                    "condition.seconds",
                    "above 0 and at most 7 days",
                ));
            }
            Ok(())
        }
    }
}

/// A detector's sensitivity: above 0 and below 1.
fn check_sensitivity(s: f64) -> Result<(), AlarmError> {
    if s.is_finite() && s > 0.0 && s < 1.0 {
        Ok(())
    } else {
        Err(AlarmError::invalid(
            "condition.sensitivity",
            "above 0 and below 1 (higher flags more; 0.5: an anomaly about 2.9 median absolute deviations out, a level shift of 4 noise deviations)",
        ))
    }
}

/// Whether a value condition holds for `value`; `active`: the alarm is
/// active, so it holds until the value is back by the deadband. Stale and
/// rate conditions are decided elsewhere (they need time); a value of the
/// wrong kind never holds.
pub fn holds(c: &Condition, value: &Value, active: bool) -> bool {
    let band = |d: f64| if active { d } else { 0.0 };
    match c {
        Condition::Above {
            limit, deadband, ..
        } => value.as_f64().is_some_and(|v| v > limit - band(*deadband)),
        Condition::Below {
            limit, deadband, ..
        } => value.as_f64().is_some_and(|v| v < limit + band(*deadband)),
        Condition::Outside {
            low,
            high,
            deadband,
            ..
        } => value
            .as_f64()
            .is_some_and(|v| v < low + band(*deadband) || v > high - band(*deadband)),
        Condition::Equals { value: x, .. } => value == x,
        Condition::NotEquals { value: x, .. } => value != x,
        Condition::RateAbove { .. }
        | Condition::Stale { .. }
        | Condition::Anomaly { .. }
        | Condition::ChangePoint { .. }
        | Condition::Peers { .. } => false,
    }
}

/// The limit a message's `{limit}` shows (of a detector: the band it
/// expected).
fn limit_of(c: &Condition, evidence: Option<&Evidence>) -> String {
    if let Some(e) = evidence {
        return format!("{:.4}..{:.4}", e.low, e.high);
    }
    match c {
        Condition::Above { limit, .. } | Condition::Below { limit, .. } => limit.to_string(),
        Condition::Outside { low, high, .. } => format!("{low}..{high}"),
        Condition::Equals { value, .. } | Condition::NotEquals { value, .. } => text(value),
        Condition::RateAbove { per_second, .. } => format!("{per_second}/s"),
        Condition::Stale { seconds, .. } => format!("{seconds} s"),
        Condition::Anomaly { .. } | Condition::ChangePoint { .. } | Condition::Peers { .. } => {
            "the expected band".to_owned()
        }
    }
}

/// A value as a message shows it: text without quotes, the rest as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// The rule's message for `twin` with `value`, placeholders filled.
pub fn message(
    spec: &AlarmRuleSpec,
    twin: &str,
    value: &Value,
    evidence: Option<&Evidence>,
) -> String {
    let mut out = String::with_capacity(spec.message.len() + 32);
    let mut rest = spec.message.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        match &after[..close] {
            "twin" => out.push_str(twin),
            "field" => out.push_str(spec.condition.field().unwrap_or("any field")),
            "value" => out.push_str(&text(value)),
            "limit" => out.push_str(&limit_of(&spec.condition, evidence)),
            "rule" => out.push_str(&spec.name),
            "severity" => out.push_str(spec.severity.name()),
            "model" => out.push_str(&spec.model),
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Severity;
    use serde_json::json;

    fn above(limit: f64, deadband: f64) -> Condition {
        Condition::Above {
            field: "power".into(),
            limit,
            deadband,
        }
    }

    #[test]
    fn thresholds_hold_with_their_deadband_once_active() {
        let c = above(10.0, 2.0);
        assert!(!holds(&c, &json!(10.0), false));
        assert!(holds(&c, &json!(10.5), false));
        // Active: holds until the value is below 8.
        assert!(holds(&c, &json!(9.0), true));
        assert!(!holds(&c, &json!(7.5), true));
        let below = Condition::Below {
            field: "p".into(),
            limit: 1.0,
            deadband: 0.5,
        };
        assert!(holds(&below, &json!(0.9), false));
        assert!(holds(&below, &json!(1.2), true));
        assert!(!holds(&below, &json!(1.6), true));
        let outside = Condition::Outside {
            field: "p".into(),
            low: 0.0,
            high: 10.0,
            deadband: 1.0,
        };
        assert!(holds(&outside, &json!(-0.1), false));
        assert!(holds(&outside, &json!(10.1), false));
        assert!(!holds(&outside, &json!(5), false));
        assert!(holds(&outside, &json!(9.5), true));
        assert!(!holds(&outside, &json!(8.5), true));
        // Not a number: never holds.
        assert!(!holds(&c, &json!("high"), false));
        let eq = Condition::Equals {
            field: "runState".into(),
            value: json!("fault"),
        };
        assert!(holds(&eq, &json!("fault"), false));
        assert!(!holds(&eq, &json!("running"), false));
    }

    #[test]
    fn messages_fill_their_placeholders() {
        let spec = AlarmRuleSpec {
            name: "hot".into(),
            version: 1,
            model: "dtmi:x:Pump;1".into(),
            condition: above(7.5, 0.0),
            severity: Severity::High,
            message: "{twin}: {field} {value} above {limit} ({severity}, {rule}) {".into(),
            on_delay_ms: 0,
            off_delay_ms: 0,
            depth: None,
            description: None,
        };
        assert_eq!(
            message(&spec, "c1.e2", &json!(8.25), None),
            "c1.e2: power 8.25 above 7.5 (HIGH, hot) {"
        );
        assert!(check_message("{twin} is {state}").is_err());
        assert!(check_message("{twin").is_err());
        assert!(check_message("  ").is_err());
        assert!(check_message("{value} over {limit}").is_ok());
        assert!(valid_name("pump.hot-1_a"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }
}
