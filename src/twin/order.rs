//! The order of twin lists: sort keys over the paths of filters
//! (`reported.power`, `desired.x`, `id`, `model`, `version`, ...), each
//! ascending or descending, absent values last in either direction, ties
//! broken by id (ascending). Every store orders this way; the embedded
//! store through [`super::index`], Neo4j through `ORDER BY`.

use std::cmp::Ordering;

use serde_json::Value;

use super::filter::value_at;
use super::state::Twin;

/// One key of an order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortKey {
    /// A filter path, split at its dots.
    pub path: Vec<String>,
    pub desc: bool,
}

/// A value as it sorts: booleans, then numbers, then date-times (by
/// instant), then other text, then anything else (arrays, objects, as
/// their JSON text). Null is not a key: absent values sort last.
#[derive(Debug, Clone)]
pub enum Key {
    Bool(bool),
    /// As a float (total order), then exactly where the number is an integer.
    Num(f64, Option<i64>),
    Time(super::Micros),
    Text(Box<str>),
    Other(Box<str>),
}

impl Key {
    /// The key of a value (`None` for null).
    pub fn of(v: &Value) -> Option<Key> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => Key::Bool(*b),
            Value::Number(n) => Key::Num(n.as_f64().unwrap_or(f64::NAN), n.as_i64()),
            Value::String(s) => match super::parse_time(s) {
                Some(t) => Key::Time(t),
                None => Key::Text(s.as_str().into()),
            },
            other => Key::Other(other.to_string().into()),
        })
    }

    /// A value of this key (a date-time in UTC, as RFC 3339).
    pub fn to_value(&self) -> Value {
        match self {
            Key::Bool(b) => Value::Bool(*b),
            Key::Num(_, Some(i)) => Value::from(*i),
            Key::Num(f, None) => Value::from(*f),
            Key::Time(t) => Value::String(super::format_time(*t)),
            Key::Text(s) => Value::String(s.to_string()),
            Key::Other(json) => serde_json::from_str(json).unwrap_or(Value::Null),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Key::Bool(_) => 0,
            Key::Num(..) => 1,
            Key::Time(_) => 2,
            Key::Text(_) => 3,
            Key::Other(_) => 4,
        }
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::Bool(a), Key::Bool(b)) => a.cmp(b),
            (Key::Num(a, x), Key::Num(b, y)) => a.total_cmp(b).then_with(|| x.cmp(y)),
            (Key::Time(a), Key::Time(b)) => a.cmp(b),
            (Key::Text(a), Key::Text(b)) | (Key::Other(a), Key::Other(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

/// Two values of one key in list order: by [`Key`], reversed when
/// descending, absent (`None`) last either way.
pub fn cmp_key(a: Option<&Key>, b: Option<&Key>, desc: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) if desc => b.cmp(a),
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// Where a twin stands in an order: its keys, then its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub keys: Vec<Option<Key>>,
    pub id: String,
}

impl Position {
    /// The position of `t` in `order`.
    pub fn of(t: &Twin, order: &[SortKey]) -> Position {
        Position {
            keys: order
                .iter()
                .map(|k| value_at(t, &k.path).as_ref().and_then(Key::of))
                .collect(),
            id: t.id.to_string(),
        }
    }

    /// The position a cursor's values name (as [`Position::values`] wrote them).
    pub fn from_values(values: &[Value], id: &str) -> Position {
        Position {
            keys: values.iter().map(Key::of).collect(),
            id: id.to_owned(),
        }
    }

    /// The sort values of a twin, as a cursor carries them.
    pub fn values(t: &Twin, order: &[SortKey]) -> Vec<Value> {
        order
            .iter()
            .map(|k| value_at(t, &k.path).unwrap_or(Value::Null))
            .collect()
    }

    /// The list order of two positions.
    pub fn cmp_in(&self, other: &Position, order: &[SortKey]) -> Ordering {
        for (i, k) in order.iter().enumerate() {
            let o = cmp_key(
                self.keys.get(i).and_then(Option::as_ref),
                other.keys.get(i).and_then(Option::as_ref),
                k.desc,
            );
            if o != Ordering::Equal {
                return o;
            }
        }
        self.id.as_str().cmp(other.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_order_by_kind_then_value_and_absent_values_come_last() {
        let k = |v: Value| Key::of(&v);
        assert!(k(json!(false)) < k(json!(true)));
        assert!(k(json!(true)) < k(json!(-5)));
        assert!(k(json!(2)) < k(json!(2.5)));
        assert!(k(json!(i64::MAX - 1)) < k(json!(i64::MAX)));
        assert!(k(json!(10)) < k(json!("2024-01-01T00:00:00Z")));
        // Date-times by instant, not by text.
        assert_eq!(
            k(json!("2024-01-01T01:00:00+01:00")),
            k(json!("2024-01-01T00:00:00Z"))
        );
        assert!(k(json!("2024-01-01T00:00:00Z")) < k(json!("a")));
        assert!(k(json!("a")) < k(json!("b")));
        assert!(k(json!("z")) < k(json!([1])));
        assert_eq!(k(json!(null)), None);
        let (one, two) = (k(json!(1)), k(json!(2)));
        assert_eq!(cmp_key(one.as_ref(), two.as_ref(), false), Ordering::Less);
        assert_eq!(cmp_key(one.as_ref(), two.as_ref(), true), Ordering::Greater);
        for desc in [false, true] {
            assert_eq!(cmp_key(one.as_ref(), None, desc), Ordering::Less);
            assert_eq!(cmp_key(None, one.as_ref(), desc), Ordering::Greater);
        }
    }

    #[test]
    fn positions_break_ties_by_id() {
        let order = [SortKey {
            path: vec!["reported".into(), "power".into()],
            desc: true,
        }];
        let at = |v: Value, id: &str| Position::from_values(&[v], id);
        assert_eq!(
            at(json!(5), "b").cmp_in(&at(json!(3), "a"), &order),
            Ordering::Less
        );
        assert_eq!(
            at(json!(5), "a").cmp_in(&at(json!(5), "b"), &order),
            Ordering::Less
        );
        assert_eq!(
            at(json!(null), "a").cmp_in(&at(json!(1), "b"), &order),
            Ordering::Greater
        );
    }
}
