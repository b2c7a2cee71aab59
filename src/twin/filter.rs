//! A JSON predicate over a twin's id, model, version and reported/desired
//! values: the `where` of the GraphQL lists, evaluated by the stores (the
//! Neo4j store also turns what it can of it into Cypher).
//!
//! ```json
//! {"reported.power": {"gt": 5}, "model": {"startsWith": "dtmi:twingraph"}}
//! {"or": [{"reported.runState": "fault"}, {"not": {"reported.power": {"exists": true}}}]}
//! ```
//!
//! Keys are paths (`id`, `model`, `version`, `reported.<prop>`,
//! `desired.<prop>`, `reported.<component>.<prop>`, deeper into objects);
//! several keys in one object must all hold; `and`, `or`, `not` combine.
//! A path maps to a value (shorthand for `eq`) or to operators: `eq`, `ne`,
//! `in`, `gt`, `gte`, `lt`, `lte` (numbers, or strings such as date-times),
//! `contains`, `startsWith` (strings), `exists` (true or false).
//! The filter is checked once, up front: a malformed one is a `BAD_REQUEST`.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::state::{ComponentState, PropState, Twin};

/// A checked filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Test { path: Vec<String>, op: Op },
}

/// One test of a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Cmp(Ordering, bool, Value),
    Contains(String),
    StartsWith(String),
    Exists(bool),
}

impl Filter {
    /// Checks a `where` argument.
    pub fn parse(v: &Value) -> Result<Filter, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("a filter must be an object, found {v}"))?;
        let mut all = Vec::new();
        for (key, val) in obj {
            all.push(match key.as_str() {
                "and" | "or" => {
                    let list = val
                        .as_array()
                        .ok_or_else(|| format!("{key} takes a list of filters"))?;
                    let parts = list.iter().map(Filter::parse).collect::<Result<_, _>>()?;
                    if key == "and" {
                        Filter::And(parts)
                    } else {
                        Filter::Or(parts)
                    }
                }
                "not" => Filter::Not(Box::new(Filter::parse(val)?)),
                path => Self::tests(path, val)?,
            });
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Filter::And(all)
        })
    }

    fn tests(path: &str, val: &Value) -> Result<Filter, String> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("{path:?} is not a path"));
        }
        match segments[0].as_str() {
            "id" | "model" | "version" if segments.len() == 1 => {}
            "reported" | "desired" if segments.len() > 1 => {}
            _ => {
                return Err(format!(
                    "{path:?}: paths are id, model, version, reported.<property> or desired.<property>"
                ));
            }
        }
        let ops = match val {
            Value::Object(ops) => ops,
            other => {
                return Ok(Filter::Test {
                    path: segments,
                    op: Op::Eq(other.clone()),
                });
            }
        };
        let mut tests = Vec::new();
        for (name, arg) in ops {
            tests.push(Filter::Test {
                path: segments.clone(),
                op: op(path, name, arg)?,
            });
        }
        if tests.is_empty() {
            return Err(format!("{path:?}: no operator given"));
        }
        Ok(if tests.len() == 1 {
            tests.remove(0)
        } else {
            Filter::And(tests)
        })
    }

    /// Whether `twin` satisfies the filter.
    pub fn matches(&self, twin: &Twin) -> bool {
        self.eval(&Doc(twin))
    }

    fn eval(&self, doc: &Doc<'_>) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.eval(doc)),
            Filter::Or(any) => any.iter().any(|f| f.eval(doc)),
            Filter::Not(f) => !f.eval(doc),
            Filter::Test { path, op } => test(op, doc.get(path).as_deref()),
        }
    }
}

fn op(path: &str, name: &str, arg: &Value) -> Result<Op, String> {
    let string = || {
        arg.as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{path:?}: {name} takes a string"))
    };
    let comparable = || {
        if arg.is_number() || arg.is_string() {
            Ok(arg.clone())
        } else {
            Err(format!("{path:?}: {name} takes a number or a string"))
        }
    };
    Ok(match name {
        "eq" => Op::Eq(arg.clone()),
        "ne" => Op::Ne(arg.clone()),
        "in" => Op::In(
            arg.as_array()
                .cloned()
                .ok_or_else(|| format!("{path:?}: in takes a list"))?,
        ),
        "gt" => Op::Cmp(Ordering::Greater, false, comparable()?),
        "gte" => Op::Cmp(Ordering::Greater, true, comparable()?),
        "lt" => Op::Cmp(Ordering::Less, false, comparable()?),
        "lte" => Op::Cmp(Ordering::Less, true, comparable()?),
        "contains" => Op::Contains(string()?),
        "startsWith" => Op::StartsWith(string()?),
        "exists" => Op::Exists(
            arg.as_bool()
                .ok_or_else(|| format!("{path:?}: exists takes true or false"))?,
        ),
        other => {
            return Err(format!(
                "{path:?}: unknown operator {other:?} (eq, ne, in, gt, gte, lt, lte, contains, startsWith, exists)"
            ));
        }
    })
}

/// The value at `path` (a filter path, split at its dots) of a twin.
pub fn value_at(t: &Twin, path: &[String]) -> Option<Value> {
    Doc(t).get(path).map(Cow::into_owned)
}

/// [`value_at`], borrowed from the twin where the value is stored as such.
pub fn value_ref<'a>(t: &'a Twin, path: &[String]) -> Option<Cow<'a, Value>> {
    Doc(t).get(path)
}

/// Equality across JSON number representations (`3` equals `3.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers(x, y) == Some(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x == y || strings(x, y) == Ordering::Equal,
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(strings(x, y)),
        _ => None,
    }
}

/// Integers exactly (a Long beyond 2^53 is not a float), else as floats.
fn numbers(x: &serde_json::Number, y: &serde_json::Number) -> Option<Ordering> {
    match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
        (Some(a), Some(b), ..) => Some(a.cmp(&b)),
        (_, _, Some(a), Some(b)) => Some(a.cmp(&b)),
        (Some(_), None, _, Some(_)) => Some(Ordering::Less),
        (None, Some(_), Some(_), _) => Some(Ordering::Greater),
        _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
    }
}

/// Date-times by instant (`…00Z` equals `…01:00+01:00`), other text as text.
fn strings(x: &str, y: &str) -> Ordering {
    match (crate::twin::parse_time(x), crate::twin::parse_time(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => x.cmp(y),
    }
}

fn test(op: &Op, v: Option<&Value>) -> bool {
    let present = v.filter(|v| !v.is_null());
    match op {
        Op::Exists(want) => present.is_some() == *want,
        Op::Ne(x) => !present.is_some_and(|v| same(v, x)),
        Op::Eq(x) => present.map_or(x.is_null(), |v| same(v, x)),
        Op::In(xs) => present.is_some_and(|v| xs.iter().any(|x| same(v, x))),
        Op::Cmp(dir, or_equal, x) => present
            .and_then(|v| order(v, x))
            .is_some_and(|o| o == *dir || (*or_equal && o == Ordering::Equal)),
        Op::Contains(s) => present
            .and_then(Value::as_str)
            .is_some_and(|v| v.contains(s.as_str())),
        Op::StartsWith(s) => present
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with(s.as_str())),
    }
}

/// The values a filter reads, straight from the twin (no document built).
struct Doc<'a>(&'a Twin);

/// One side (reported or desired) of a property's state.
fn side_of(p: &PropState, desired: bool) -> Option<&Value> {
    if desired {
        p.desired.as_ref().map(|d| &d.value)
    } else {
        p.reported.as_ref().map(|r| &r.value)
    }
}

/// A Component's values of one side, as an object.
fn component_object(c: &ComponentState, desired: bool) -> Value {
    Value::Object(
        c.props
            .iter()
            .filter_map(|(k, p)| side_of(p, desired).map(|v| (k.to_string(), v.clone())))
            .collect(),
    )
}

fn descend<'a>(mut at: &'a Value, rest: &[String]) -> Option<Cow<'a, Value>> {
    for key in rest {
        at = at
            .as_object()
            .and_then(|o: &Map<String, Value>| o.get(key))?;
    }
    Some(Cow::Borrowed(at))
}

impl<'a> Doc<'a> {
    fn get(&self, path: &[String]) -> Option<Cow<'a, Value>> {
        let t = self.0;
        let (root, rest) = path.split_first()?;
        let desired = match root.as_str() {
            "id" => return Some(Cow::Owned(Value::String(t.id.to_string()))),
            "model" => return Some(Cow::Owned(Value::String(t.model.to_string()))),
            "version" => return Some(Cow::Owned(Value::from(t.version))),
            "reported" => false,
            "desired" => true,
            _ => return None,
        };
        let (name, rest) = rest.split_first()?;
        if let Some(p) = t.root.props.get(name) {
            return descend(side_of(p, desired)?, rest);
        }
        let c = t.components.get(name.as_str())?;
        match rest.split_first() {
            None => {
                let o = component_object(c, desired);
                (o.as_object().is_some_and(|m| !m.is_empty())).then_some(Cow::Owned(o))
            }
            Some((prop, deeper)) => descend(side_of(c.props.get(prop)?, desired)?, deeper),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The twin `doc` describes (`id`, `model`, `version`, and top-level
    /// `reported`/`desired` values).
    fn twin(doc: &Value) -> Twin {
        use crate::twin::{Change, Entry, Event, Side};
        let mut entries = Vec::new();
        for (side, key) in [(Side::Reported, "reported"), (Side::Desired, "desired")] {
            for (name, v) in doc[key].as_object().into_iter().flatten() {
                entries.push(Entry {
                    side,
                    component: None,
                    name: name.clone(),
                    value: Some(v.clone()),
                    source_time: None,
                    ack: None,
                    source: None,
                });
            }
        }
        let e = Event {
            seq: 1,
            time: 0,
            actor: "test".into(),
            change: Change::TwinCreated {
                twin: doc["id"].as_str().unwrap_or("t").into(),
                model: doc["model"].as_str().unwrap_or("m").into(),
                entries,
            },
        };
        let mut t = Twin::created(&e).expect("a created twin");
        t.version = doc["version"].as_u64().unwrap_or(1);
        t
    }

    fn eval(filter: Value, doc: Value) -> bool {
        let f = Filter::parse(&filter).expect("valid filter");
        f.matches(&twin(&doc))
    }

    #[test]
    fn operators_combine_and_compare_by_type() {
        let doc = json!({"id": "p1", "model": "dtmi:a:Pump;1", "version": 3,
            "reported": {"power": 7.5, "runState": "running", "motor": {"rpm": 1200}},
            "desired": {}});
        assert!(eval(
            json!({"reported.power": {"gt": 5, "lte": 7.5}}),
            doc.clone()
        ));
        assert!(!eval(json!({"reported.power": {"gt": 7.5}}), doc.clone()));
        assert!(eval(json!({"version": 3.0}), doc.clone()));
        assert!(eval(
            json!({"reported.motor.rpm": {"in": [1000, 1200]}}),
            doc.clone()
        ));
        assert!(eval(
            json!({"model": {"startsWith": "dtmi:a:", "contains": "Pump"}}),
            doc.clone()
        ));
        assert!(eval(
            json!({"desired.speed": {"exists": false}}),
            doc.clone()
        ));
        assert!(eval(
            json!({"or": [{"id": "x"}, {"not": {"reported.runState": "fault"}}]}),
            doc.clone()
        ));
        assert!(!eval(
            json!({"and": [{"id": "p1"}, {"reported.runState": {"ne": "running"}}]}),
            doc.clone()
        ));
        // A string never compares with a number.
        assert!(!eval(json!({"reported.runState": {"gt": 1}}), doc));
    }

    #[test]
    fn longs_compare_exactly_and_date_times_by_instant() {
        let doc = json!({"id": "p", "model": "m", "version": 1,
            "reported": {"count": 9_007_199_254_740_993_i64, "at": "2026-11-26T08:00:00+01:00"},
            "desired": {}});
        assert!(eval(
            json!({"reported.count": {"gt": 9_007_199_254_740_992_i64}}),
            doc.clone()
        ));
        assert!(!eval(
            json!({"reported.count": 9_007_199_254_740_992_i64}),
            doc.clone()
        ));
        assert!(eval(
            json!({"reported.at": "2026-11-26T07:00:00Z"}),
            doc.clone()
        ));
        assert!(eval(
            json!({"reported.at": {"lt": "2026-11-26T07:00:00.5Z"}}),
            doc.clone()
        ));
        assert!(!eval(
            json!({"reported.at": {"gt": "2026-11-26T07:00:00.5Z"}}),
            doc
        ));
    }

    #[test]
    fn malformed_filters_are_refused_with_a_reason() {
        for (bad, says) in [
            (json!([1]), "must be an object"),
            (json!({"and": {}}), "list of filters"),
            (json!({"reported.power": {"near": 1}}), "unknown operator"),
            (json!({"power": 1}), "paths are"),
            (
                json!({"reported.power": {"gt": true}}),
                "number or a string",
            ),
            (json!({"reported.x": {}}), "no operator"),
            (json!({"reported..x": 1}), "not a path"),
        ] {
            let e = Filter::parse(&bad).expect_err("refused");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
