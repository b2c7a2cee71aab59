//! A JSON tree that keeps what DTDL needs and `serde_json::Value` drops.
//!
//! DTDL documents are JSON-LD: member order matters for `@context`, duplicate
//! member names must be reported rather than silently merged, and integers
//! must stay distinguishable from doubles (`1` is an integer, `1.0` is not).
//! Objects are therefore kept as ordered `(name, value)` lists.
//!
//! Parsing never panics: serde_json enforces a nesting limit (128) and every
//! syntax error becomes a [`JsonError`] with a line and column.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON number, keeping the integer/float distinction of its source text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A number written without fraction or exponent that fits in an `i64`.
    Int(i64),
    /// A non-negative integer above `i64::MAX`.
    UInt(u64),
    /// Anything else.
    Float(f64),
}

impl Number {
    /// The value as an `i64`, if it is an integer that fits. A number
    /// written with a fraction or exponent counts when its value is
    /// integral (`3.0`, `1e2`), as DTDL's reference parser reads it.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(i),
            Number::UInt(u) => i64::try_from(u).ok(),
            Number::Float(f) => (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64)
                .then_some(f as i64),
        }
    }

    /// The value as an `f64` (integers converted, possibly losing precision).
    #[allow(clippy::cast_precision_loss)]
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::UInt(u) => u as f64,
            Number::Float(f) => f,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(i) => write!(f, "{i}"),
            Number::UInt(u) => write!(f, "{u}"),
            Number::Float(x) => write!(f, "{x}"),
        }
    }
}

/// A parsed JSON value; objects keep member order and duplicate names.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The JSON type name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(Number::Float(_)) => "number",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The first member with this name, if this is an object.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.as_object()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// A short rendering for messages, cut to `max` characters.
    pub fn excerpt(&self, max: usize) -> String {
        let text = match self {
            Value::String(s) => format!("\"{s}\""),
            Value::Null => "null".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Array(_) => "[...]".to_owned(),
            Value::Object(_) => "{...}".to_owned(),
        };
        if text.chars().count() > max {
            let cut: String = text.chars().take(max).collect();
            format!("{cut}...")
        } else {
            text
        }
    }
}

/// A document that is not well-formed JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line} column {column}")]
pub struct JsonError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// Parses one JSON document, ignoring a leading UTF-8 byte-order mark.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Value::deserialize(&mut de).map_err(to_json_error)?;
    de.end().map_err(to_json_error)?;
    Ok(value)
}

fn to_json_error(e: serde_json::Error) -> JsonError {
    let full = e.to_string();
    // serde_json appends " at line L column C"; keep only the cause.
    let message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    };
    JsonError {
        message,
        line: e.line(),
        column: e.column(),
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(Number::Int(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(match i64::try_from(v) {
            Ok(i) => Number::Int(i),
            Err(_) => Number::UInt(v),
        }))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(Number::Float(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value()?;
            members.push((key, value));
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_duplicate_members_in_order() {
        let v = parse(br#"{"b":1,"a":2,"b":3}"#).expect("valid json");
        let names: Vec<&str> = v
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(names, ["b", "a", "b"]);
    }

    #[test]
    fn distinguishes_integers_from_doubles() {
        assert_eq!(parse(b"1").expect("json"), Value::Number(Number::Int(1)));
        assert_eq!(
            parse(b"1.0").expect("json"),
            Value::Number(Number::Float(1.0))
        );
    }

    #[test]
    fn strips_byte_order_mark() {
        assert_eq!(
            parse(b"\xEF\xBB\xBF[]").expect("json"),
            Value::Array(vec![])
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        let err = parse(deep.as_bytes()).expect_err("too deep");
        assert!(err.message.contains("recursion"), "{err}");
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let err = parse(b"{} x").expect_err("trailing characters");
        assert_eq!(err.line, 1);
    }
}
