//! Twin values against DTDL schemas, and JSON merge patch (RFC 7396).
//!
//! `validate` walks a JSON value and its resolved DTDL schema together and
//! names the first mismatch by path (`config.limits[2].max`) and by what was
//! expected. Integers are `integer` (32-bit) or `long` (64-bit); `float` is
//! bounded by `f32`; temporal strings follow RFC 3339 / ISO 8601; Objects
//! take only their declared fields; Enums only their declared values;
//! geospatial values follow GeoJSON.

use serde_json::Value;

use crate::dtdl::datatypes;
use crate::dtdl::model::{EnumLiteral, Schema};
use crate::dtdl::vocab::{Primitive, StdSchema};

/// A value that does not fit its schema: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Path below the property (`""` for the property itself, `.x`, `[2]`).
    pub path: String,
    pub message: String,
}

/// Checks `v` against `schema`.
pub fn validate(schema: &Schema, v: &Value) -> Result<(), Mismatch> {
    let mut path = String::new();
    check(schema, v, &mut path)
}

fn fail(path: &str, message: String) -> Result<(), Mismatch> {
    Err(Mismatch {
        path: path.to_owned(),
        message,
    })
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// An integer value, accepting integral numbers written as `3.0`.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
fn as_integer(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
    })
}

fn check(schema: &Schema, v: &Value, path: &mut String) -> Result<(), Mismatch> {
    match schema {
        Schema::Primitive { primitive } => primitive_check(*primitive, v, path),
        Schema::Standard { schema } => standard_check(*schema, v, path),
        Schema::Enum {
            values,
            value_schema,
            ..
        } => {
            let ok = values.iter().any(|e| match (&e.value, v) {
                (EnumLiteral::Int(i), _) => as_integer(v) == Some(*i),
                (EnumLiteral::Str(s), Value::String(t)) => s == t,
                _ => false,
            });
            if ok {
                Ok(())
            } else {
                let allowed: Vec<String> = values
                    .iter()
                    .take(12)
                    .map(|e| match &e.value {
                        EnumLiteral::Int(i) => i.to_string(),
                        EnumLiteral::Str(s) => format!("\"{s}\""),
                    })
                    .collect();
                fail(
                    path,
                    format!(
                        "expected one of the Enum's {} values ({}{}), found {}",
                        value_schema.term(),
                        allowed.join(", "),
                        if values.len() > 12 { ", ..." } else { "" },
                        describe(v)
                    ),
                )
            }
        }
        Schema::Array { element, .. } => {
            let Value::Array(items) = v else {
                return fail(path, format!("expected an array, found {}", describe(v)));
            };
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check(element, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Schema::Map { value, .. } => {
            let Value::Object(members) = v else {
                return fail(
                    path,
                    format!("expected an object (a Map), found {}", describe(v)),
                );
            };
            for (k, item) in members {
                let len = path.len();
                path.push_str(&format!(".{k}"));
                check(value, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Schema::Object { fields, .. } => {
            let Value::Object(members) = v else {
                return fail(path, format!("expected an object, found {}", describe(v)));
            };
            for (k, item) in members {
                let len = path.len();
                path.push_str(&format!(".{k}"));
                let Some(field) = fields.iter().find(|f| &f.name == k) else {
                    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                    return fail(
                        path,
                        format!("unknown field; the Object has fields {}", names.join(", ")),
                    );
                };
                check(&field.schema, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
    }
}

fn primitive_check(p: Primitive, v: &Value, path: &str) -> Result<(), Mismatch> {
    let ok = match p {
        Primitive::Boolean => v.is_boolean(),
        Primitive::Integer => as_integer(v).is_some_and(|i| i32::try_from(i).is_ok()),
        Primitive::Long => as_integer(v).is_some(),
        Primitive::Double => v.as_f64().is_some_and(f64::is_finite),
        #[allow(clippy::cast_possible_truncation)]
        Primitive::Float => v
            .as_f64()
            .is_some_and(|f| f.is_finite() && f.abs() <= f64::from(f32::MAX)),
        Primitive::String => v.is_string(),
        Primitive::Date => v.as_str().is_some_and(datatypes::is_date),
        Primitive::Time => v.as_str().is_some_and(datatypes::is_time),
        Primitive::DateTime => v.as_str().is_some_and(datatypes::is_date_time),
        Primitive::Duration => v.as_str().is_some_and(datatypes::is_duration),
    };
    if ok {
        return Ok(());
    }
    let expected = match p {
        Primitive::Boolean => "a boolean",
        Primitive::Integer => "an integer (32-bit)",
        Primitive::Long => "an integer (64-bit long)",
        Primitive::Double => "a number (double)",
        Primitive::Float => "a number within float range",
        Primitive::String => "a string",
        Primitive::Date => "a date (YYYY-MM-DD)",
        Primitive::Time => "a time (hh:mm:ss with offset, RFC 3339)",
        Primitive::DateTime => "a dateTime (RFC 3339, with offset)",
        Primitive::Duration => "an ISO 8601 duration (e.g. PT15M)",
    };
    fail(
        path,
        format!(
            "expected {expected} (schema {}), found {}",
            p.term(),
            describe(v)
        ),
    )
}

fn standard_check(s: StdSchema, v: &Value, path: &str) -> Result<(), Mismatch> {
    let ok = match s {
        StdSchema::GeoPoint => xyz(v, &["lon", "lat"], &["alt"]),
        StdSchema::Vector => xyz(v, &["x", "y", "z"], &[]),
        _ => geojson(s, v),
    };
    if ok {
        Ok(())
    } else {
        let expected = match s {
            StdSchema::Point => r#"a GeoJSON Point {"type":"Point","coordinates":[lon,lat]}"#,
            StdSchema::MultiPoint => "a GeoJSON MultiPoint",
            StdSchema::LineString => "a GeoJSON LineString (two or more positions)",
            StdSchema::MultiLineString => "a GeoJSON MultiLineString",
            StdSchema::Polygon => "a GeoJSON Polygon (closed rings of four or more positions)",
            StdSchema::MultiPolygon => "a GeoJSON MultiPolygon",
            StdSchema::GeoPoint => r#"a geopoint {"lon":..,"lat":..,"alt":..}"#,
            StdSchema::Vector => r#"a vector {"x":..,"y":..,"z":..}"#,
        };
        fail(path, format!("expected {expected}, found {}", describe(v)))
    }
}

fn xyz(v: &Value, required: &[&str], optional: &[&str]) -> bool {
    let Some(m) = v.as_object() else { return false };
    required
        .iter()
        .all(|k| m.get(*k).is_some_and(Value::is_number))
        && m.iter().all(|(k, x)| {
            (required.contains(&k.as_str()) || optional.contains(&k.as_str())) && x.is_number()
        })
}

fn geojson(s: StdSchema, v: &Value) -> bool {
    let Some(m) = v.as_object() else { return false };
    let expected_type = match s {
        StdSchema::Point => "Point",
        StdSchema::MultiPoint => "MultiPoint",
        StdSchema::LineString => "LineString",
        StdSchema::MultiLineString => "MultiLineString",
        StdSchema::Polygon => "Polygon",
        StdSchema::MultiPolygon => "MultiPolygon",
        StdSchema::GeoPoint | StdSchema::Vector => return false,
    };
    if m.get("type").and_then(Value::as_str) != Some(expected_type)
        || m.keys().any(|k| k != "type" && k != "coordinates")
    {
        return false;
    }
    let Some(c) = m.get("coordinates") else {
        return false;
    };
    match s {
        StdSchema::Point => position(c),
        StdSchema::MultiPoint => list(c, 0, position),
        StdSchema::LineString => line(c),
        StdSchema::MultiLineString => list(c, 0, line),
        StdSchema::Polygon => polygon(c),
        StdSchema::MultiPolygon => list(c, 0, polygon),
        StdSchema::GeoPoint | StdSchema::Vector => false,
    }
}

fn list(v: &Value, min: usize, item: fn(&Value) -> bool) -> bool {
    v.as_array()
        .is_some_and(|a| a.len() >= min && a.iter().all(item))
}

fn position(v: &Value) -> bool {
    v.as_array().is_some_and(|a| {
        (2..=3).contains(&a.len()) && a.iter().all(|x| x.as_f64().is_some_and(f64::is_finite))
    })
}

fn line(v: &Value) -> bool {
    list(v, 2, position)
}

fn ring(v: &Value) -> bool {
    list(v, 4, position) && v.as_array().is_some_and(|a| a.first() == a.last())
}

fn polygon(v: &Value) -> bool {
    list(v, 1, ring)
}

/// Applies a JSON merge patch (RFC 7396) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(serde_json::Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtdl::model::{Docs, EnumValue, Field};
    use serde_json::json;

    fn prim(p: Primitive) -> Schema {
        Schema::Primitive { primitive: p }
    }

    #[test]
    fn integers_respect_their_width() {
        assert!(validate(&prim(Primitive::Integer), &json!(2_147_483_647)).is_ok());
        assert!(validate(&prim(Primitive::Integer), &json!(2_147_483_648_i64)).is_err());
        assert!(validate(&prim(Primitive::Long), &json!(2_147_483_648_i64)).is_ok());
        assert!(validate(&prim(Primitive::Integer), &json!(1.5)).is_err());
        assert!(validate(&prim(Primitive::Integer), &json!(3.0)).is_ok());
        assert!(validate(&prim(Primitive::Float), &json!(1e39)).is_err());
        assert!(validate(&prim(Primitive::Double), &json!(1e39)).is_ok());
    }

    #[test]
    fn temporal_strings_are_checked() {
        assert!(validate(&prim(Primitive::Duration), &json!("PT15M")).is_ok());
        assert!(validate(&prim(Primitive::Duration), &json!("15 minutes")).is_err());
        assert!(validate(&prim(Primitive::DateTime), &json!("2026-01-01T00:00:00Z")).is_ok());
        assert!(validate(&prim(Primitive::Date), &json!("2026-02-30")).is_err());
    }

    #[test]
    fn objects_name_the_failing_field_path() {
        let s = Schema::Object {
            id: "dtmi:x:O;1".into(),
            docs: Docs::default(),
            fields: vec![Field {
                id: "f".into(),
                name: "limits".into(),
                schema: Schema::Array {
                    id: "a".into(),
                    docs: Docs::default(),
                    element: Box::new(prim(Primitive::Double)),
                },
                docs: Docs::default(),
                semantic_type: None,
                unit: None,
            }],
        };
        let err = validate(&s, &json!({"limits": [1.0, "x"]})).expect_err("string in double array");
        assert_eq!(err.path, ".limits[1]");
        let err = validate(&s, &json!({"other": 1})).expect_err("unknown field");
        assert!(err.message.contains("unknown field"), "{err:?}");
    }

    #[test]
    fn enums_take_only_declared_values() {
        let s = Schema::Enum {
            id: "e".into(),
            docs: Docs::default(),
            value_schema: Primitive::String,
            values: vec![EnumValue {
                id: "v".into(),
                name: "on".into(),
                value: EnumLiteral::Str("on".into()),
                docs: Docs::default(),
            }],
        };
        assert!(validate(&s, &json!("on")).is_ok());
        assert!(validate(&s, &json!("off")).is_err());
    }

    #[test]
    fn geospatial_values_follow_geojson() {
        let point = Schema::Standard {
            schema: StdSchema::Point,
        };
        assert!(
            validate(
                &point,
                &json!({"type": "Point", "coordinates": [4.9, 52.4]})
            )
            .is_ok()
        );
        assert!(validate(&point, &json!({"type": "Point", "coordinates": [4.9]})).is_err());
        let poly = Schema::Standard {
            schema: StdSchema::Polygon,
        };
        assert!(
            validate(
                &poly,
                &json!({"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,0]]]})
            )
            .is_ok()
        );
        assert!(
            validate(
                &poly,
                &json!({"type": "Polygon", "coordinates": [[[0,0],[1,0],[1,1],[0,1]]]})
            )
            .is_err()
        );
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!([1, 2]);
        merge_patch(&mut t, &json!({"a": 1}));
        assert_eq!(t, json!({"a": 1}));
    }
}
