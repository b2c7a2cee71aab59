//! A list's `where` filter as a Cypher condition on the twin node `n`.
//!
//! The condition reads the properties the layout flattens (`id`, `model`,
//! `version`, top-level scalar reported values by name, desired ones as
//! `desired_<name>`), always through parameters. What Cypher cannot decide
//! the same way as [`Filter::matches`] (negations, `exists`, values inside
//! Objects or Components, date-times, which compare as instants) is left
//! out, so the condition may accept more twins than the filter, never
//! fewer: the store applies the filter to what comes back, and when the
//! condition is exact nothing is dropped (one statement per page).

use neo4rs::BoltType;
use serde_json::Value;

use super::layout::{RESERVED_NODE_KEYS, is_identifier};
use crate::twin::filter::{Filter, Op};

/// A Cypher condition, its parameters, and whether it is exactly the filter.
#[derive(Debug)]
pub struct Condition {
    /// `None`: no condition could be written (every twin qualifies).
    pub text: Option<String>,
    pub params: Vec<(String, BoltType)>,
    pub exact: bool,
}

/// The condition of `f` on node `n`.
pub fn condition(f: &Filter) -> Condition {
    let mut c = Condition {
        text: None,
        params: Vec::new(),
        exact: true,
    };
    c.text = translate(f, &mut c);
    c
}

/// The property of `n` a filter path reads, when the layout flattens it.
pub(super) fn column(path: &[String]) -> Option<String> {
    match path {
        [one] if one == "id" || one == "model" || one == "version" => Some(format!("n.{one}")),
        [side, name]
            if side == "reported"
                && is_identifier(name)
                && !RESERVED_NODE_KEYS.contains(&name.as_str())
                && !name.starts_with("desired_") =>
        {
            Some(format!("n.`{name}`"))
        }
        [side, name] if side == "desired" && is_identifier(name) => {
            Some(format!("n.`desired_{name}`"))
        }
        _ => None,
    }
}

/// A value Cypher compares as the filter does: a boolean, a number, or a
/// string that is not a date-time.
pub(super) fn plain(v: &Value) -> Option<BoltType> {
    match v {
        Value::Bool(b) => Some(BoltType::from(*b)),
        Value::Number(n) => n
            .as_i64()
            .map(BoltType::from)
            .or_else(|| n.as_f64().map(BoltType::from)),
        Value::String(s) if crate::twin::parse_time(s).is_none() => {
            Some(BoltType::from(s.as_str()))
        }
        _ => None,
    }
}

fn translate(f: &Filter, c: &mut Condition) -> Option<String> {
    let out = match f {
        Filter::And(all) => {
            let parts: Vec<String> = all.iter().filter_map(|x| translate(x, c)).collect();
            (!parts.is_empty()).then(|| format!("({})", parts.join(" AND ")))
        }
        Filter::Or(any) => {
            let parts: Vec<Option<String>> = any.iter().map(|x| translate(x, c)).collect();
            parts
                .into_iter()
                .collect::<Option<Vec<String>>>()
                .map(|p| format!("({})", p.join(" OR ")))
        }
        Filter::Not(_) => None,
        Filter::Test { path, op } => test(path, op, c),
    };
    if out.is_none() {
        c.exact = false;
    }
    out
}

fn test(path: &[String], op: &Op, c: &mut Condition) -> Option<String> {
    let col = column(path)?;
    let mut param = |v: BoltType| {
        let name = format!("f{}", c.params.len());
        c.params.push((name.clone(), v));
        format!("${name}")
    };
    Some(match op {
        Op::Eq(v) => format!("{col} = {}", param(plain(v)?)),
        Op::In(list) if list.is_empty() => "false".to_owned(),
        Op::In(list) => {
            let values = list.iter().map(plain).collect::<Option<Vec<_>>>()?;
            format!("{col} IN {}", param(BoltType::from(values)))
        }
        Op::Cmp(dir, or_equal, v) => {
            let sign = match (dir, or_equal) {
                (std::cmp::Ordering::Greater, false) => ">",
                (std::cmp::Ordering::Greater, true) => ">=",
                (std::cmp::Ordering::Less, false) => "<",
                (std::cmp::Ordering::Less, true) => "<=",
                (std::cmp::Ordering::Equal, _) => "=",
            };
            format!("{col} {sign} {}", param(plain(v)?))
        }
        Op::Contains(s) => format!("{col} CONTAINS {}", param(BoltType::from(s.as_str()))),
        Op::StartsWith(s) => format!("{col} STARTS WITH {}", param(BoltType::from(s.as_str()))),
        Op::Ne(_) | Op::Exists(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cypher(f: Value) -> (Option<String>, bool) {
        let c = condition(&Filter::parse(&f).expect("filter"));
        (c.text, c.exact)
    }

    #[test]
    fn flattened_scalars_translate_exactly() {
        let (text, exact) = cypher(json!({"reported.power": {"gt": 5, "lte": 7.5}, "model": "m"}));
        assert!(exact);
        let text = text.expect("a condition");
        assert!(text.contains("n.`power` > $f"), "{text}");
        assert!(text.contains("n.model = $f"), "{text}");
        let (text, exact) =
            cypher(json!({"or": [{"desired.flowSetpoint": 3}, {"id": {"startsWith": "c1."}}]}));
        assert!(exact);
        assert_eq!(
            text.as_deref(),
            Some("(n.`desired_flowSetpoint` = $f0 OR n.id STARTS WITH $f1)")
        );
    }

    #[test]
    fn what_cypher_cannot_decide_is_left_to_the_store() {
        // Nested values, negation, date-times, exists: a superset, not exact.
        let (text, exact) = cypher(json!({"reported.motor.rpm": 5, "reported.power": {"gt": 1}}));
        assert!(!exact);
        assert_eq!(text.as_deref(), Some("(n.`power` > $f0)"));
        assert_eq!(cypher(json!({"not": {"id": "a"}})), (None, false));
        assert_eq!(
            cypher(json!({"reported.at": {"gt": "2024-01-01T00:00:00Z"}})),
            (None, false)
        );
        assert_eq!(
            cypher(json!({"or": [{"id": "a"}, {"reported.x": {"exists": true}}]})),
            (None, false)
        );
        // A property name is never spliced in unchecked.
        assert_eq!(cypher(json!({"reported.a`b": 1})), (None, false));
    }
}
