//! DTDL schemas as GraphQL types, and values both ways.
//!
//! | DTDL | output | input | filter |
//! |---|---|---|---|
//! | `boolean` | `Boolean` | `Boolean` | `BooleanFilter` |
//! | `integer` | `Int` | `Int` | `IntFilter` |
//! | `long` | `Long` | `Long` | `LongFilter` |
//! | `double`, `float` | `Float` | `Float` | `FloatFilter` |
//! | `string` | `String` | `String` | `StringFilter` |
//! | `dateTime` | `DateTime` | `DateTime` | `DateTimeFilter` |
//! | `date`, `time`, `duration` | `Date`, `Time`, `Duration` | same | `StringFilter` |
//! | Enum | enum `E` (items named as the enumValues) | `E` | `EFilter` |
//! | Object | object `O` | `OInput` | none |
//! | Map | `[MEntry!]` (fields named by mapKey/mapValue) | `[MEntryInput!]` | none |
//! | Array | `[T]` | `[TInput]` | none |
//! | GeoJSON, geopoint, vector | `JSON` | `JSON` | none |
//!
//! Named schemas (declared in `schemas` with their own DTMI) take the last
//! segment of the DTMI; inline ones are named after where they are used
//! (`EquipmentAlarm`, `EquipmentAlarmSeverity`). One DTDL schema is one
//! GraphQL type however often it is used. Enum values are stored as their
//! `enumValue` and shown as their `name`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, Scalar, Type,
    TypeRef,
};
use async_graphql::{Error, Name, Value as GqlValue};
use serde_json::{Map, Value};

use crate::dtdl::model::{Docs, EnumLiteral, Schema};
use crate::dtdl::vocab::Primitive;
use crate::graphql::context::to_gql;

/// Hands out type names, never the same one twice.
#[derive(Debug, Default)]
pub(super) struct Namer {
    taken: HashSet<String>,
}

impl Namer {
    pub fn reserve(&mut self, name: impl Into<String>) {
        self.taken.insert(name.into());
    }

    pub fn is_taken(&self, name: &str) -> bool {
        self.taken.contains(name)
    }

    /// `name`, or with `_` appended until free; claims it.
    pub fn exact(&mut self, name: String) -> String {
        let mut n = name;
        while self.taken.contains(&n) {
            n.push('_');
        }
        self.taken.insert(n.clone());
        n
    }

    /// `base`, or `base2`, `base3`, ...: the first for which every
    /// `base + suffix` is free; claims them all.
    pub fn claim(&mut self, base: &str, suffixes: &[&str]) -> String {
        let mut n = 1u64;
        loop {
            let candidate = if n == 1 {
                base.to_owned()
            } else {
                format!("{base}{n}")
            };
            if suffixes
                .iter()
                .all(|s| !self.taken.contains(&format!("{candidate}{s}")))
            {
                for s in suffixes {
                    self.taken.insert(format!("{candidate}{s}"));
                }
                return candidate;
            }
            n += 1;
        }
    }
}

/// `speed` → `Speed`.
pub(super) fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// An English description from DTDL docs (display name, description).
pub(super) fn describe(what: &str, docs: &Docs) -> String {
    let mut doc = what.to_owned();
    if let Some(d) = docs.display_name.get("en") {
        doc.push_str(&format!(": {d}"));
    }
    if let Some(d) = docs.description.get("en") {
        doc.push_str(&format!(". {d}"));
    }
    if !doc.ends_with(['.', '!', '?']) {
        doc.push('.');
    }
    doc
}

/// The GraphQL name of an enum value (`true`, `false` and `null` cannot be).
fn enum_item(name: &str) -> String {
    match name {
        "true" | "false" | "null" => format!("{name}_"),
        n => n.to_owned(),
    }
}

fn literal_json(l: &EnumLiteral) -> Value {
    match l {
        EnumLiteral::Int(i) => Value::from(*i),
        EnumLiteral::Str(s) => Value::from(s.clone()),
    }
}

fn primitive_type(p: Primitive) -> &'static str {
    match p {
        Primitive::Boolean => TypeRef::BOOLEAN,
        Primitive::Integer => TypeRef::INT,
        Primitive::Long => "Long",
        Primitive::Double | Primitive::Float => TypeRef::FLOAT,
        Primitive::DateTime => "DateTime",
        Primitive::Date => "Date",
        Primitive::Time => "Time",
        Primitive::Duration => "Duration",
        Primitive::String => TypeRef::STRING,
    }
}

/// The field of a Map entry's value: the mapValue name, with `_` appended
/// when the mapKey has the same name.
fn map_value_field(key_name: &str, value_name: &str) -> String {
    if key_name == value_name {
        format!("{value_name}_")
    } else {
        value_name.to_owned()
    }
}

/// A map entry as its GraphQL object sees it.
#[derive(Debug)]
struct MapEntry(String, Value);

/// The GraphQL types of the DTDL schemas met so far.
#[derive(Debug, Default)]
pub(super) struct Schemas {
    /// Schema id → base name of its GraphQL types.
    names: HashMap<String, String>,
    pub types: Vec<Type>,
}

impl Schemas {
    fn base(&mut self, namer: &mut Namer, id: &str, hint: &str, suffixes: &[&str]) -> String {
        let preferred = if id.contains(":_") || id.is_empty() {
            hint.to_owned()
        } else {
            let body = id.split(';').next().unwrap_or(id);
            upper_first(body.rsplit(':').next().unwrap_or(body))
        };
        let name = namer.claim(&preferred, suffixes);
        self.names.insert(id.to_owned(), name.clone());
        name
    }

    /// The output type of values of `schema`; `hint` names inline schemas.
    pub fn output(&mut self, namer: &mut Namer, schema: &Schema, hint: &str) -> TypeRef {
        match schema {
            Schema::Primitive { primitive } => TypeRef::named(primitive_type(*primitive)),
            Schema::Standard { .. } => TypeRef::named("JSON"),
            Schema::Array { element, .. } => TypeRef::List(Box::new(self.output(
                namer,
                element,
                &format!("{hint}Item"),
            ))),
            Schema::Enum { id, .. } => TypeRef::named(self.enum_type(namer, schema, id, hint)),
            Schema::Object { fields, .. } if fields.is_empty() => TypeRef::named("JSON"),
            Schema::Object { id, .. } => TypeRef::named(self.object_types(namer, schema, id, hint)),
            Schema::Map { id, .. } => {
                TypeRef::named_nn_list(format!("{}Entry", self.map_types(namer, schema, id, hint)))
            }
        }
    }

    /// The input type of values of `schema` (registering it if new).
    pub fn input(&mut self, namer: &mut Namer, schema: &Schema, hint: &str) -> TypeRef {
        match schema {
            Schema::Primitive { primitive } => TypeRef::named(primitive_type(*primitive)),
            Schema::Standard { .. } => TypeRef::named("JSON"),
            Schema::Array { element, .. } => {
                TypeRef::List(Box::new(self.input(namer, element, &format!("{hint}Item"))))
            }
            Schema::Enum { id, .. } => TypeRef::named(self.enum_type(namer, schema, id, hint)),
            Schema::Object { fields, .. } if fields.is_empty() => TypeRef::named("JSON"),
            Schema::Object { id, .. } => TypeRef::named(format!(
                "{}Input",
                self.object_types(namer, schema, id, hint)
            )),
            Schema::Map { id, .. } => TypeRef::named_nn_list(format!(
                "{}EntryInput",
                self.map_types(namer, schema, id, hint)
            )),
        }
    }

    /// The filter input of values of `schema`, for the schemas that have one.
    pub fn filter(&mut self, namer: &mut Namer, schema: &Schema, hint: &str) -> Option<TypeRef> {
        let name = match schema {
            Schema::Primitive { primitive } => match primitive {
                Primitive::Boolean => "BooleanFilter".to_owned(),
                Primitive::Integer => "IntFilter".to_owned(),
                Primitive::Long => "LongFilter".to_owned(),
                Primitive::Double | Primitive::Float => "FloatFilter".to_owned(),
                Primitive::DateTime => "DateTimeFilter".to_owned(),
                Primitive::Date | Primitive::Time | Primitive::Duration | Primitive::String => {
                    "StringFilter".to_owned()
                }
            },
            Schema::Enum { id, .. } => format!("{}Filter", self.enum_type(namer, schema, id, hint)),
            _ => return None,
        };
        Some(TypeRef::named(name))
    }

    fn enum_type(&mut self, namer: &mut Namer, schema: &Schema, id: &str, hint: &str) -> String {
        if let Some(n) = self.names.get(id) {
            return n.clone();
        }
        let Schema::Enum { docs, values, .. } = schema else {
            return "JSON".to_owned();
        };
        let name = self.base(namer, id, hint, &["", "Filter"]);
        let mut e = Enum::new(&name).description(describe(&format!("DTDL Enum `{id}`"), docs));
        for v in values {
            let shown = literal_json(&v.value);
            e = e.item(
                EnumItem::new(enum_item(&v.name))
                    .description(describe(&format!("Stored as {shown}"), &v.docs)),
            );
        }
        let filter = InputObject::new(format!("{name}Filter"))
            .description(format!("Tests of a {name} value."))
            .field(InputValue::new("eq", TypeRef::named(&name)))
            .field(InputValue::new("ne", TypeRef::named(&name)))
            .field(InputValue::new("in", TypeRef::named_nn_list(&name)))
            .field(InputValue::new("exists", TypeRef::named(TypeRef::BOOLEAN)));
        self.types.push(e.into());
        self.types.push(filter.into());
        name
    }

    fn object_types(&mut self, namer: &mut Namer, schema: &Schema, id: &str, hint: &str) -> String {
        if let Some(n) = self.names.get(id) {
            return n.clone();
        }
        let Schema::Object { docs, fields, .. } = schema else {
            return "JSON".to_owned();
        };
        let name = self.base(namer, id, hint, &["", "Input"]);
        let mut obj =
            Object::new(&name).description(describe(&format!("DTDL Object `{id}`"), docs));
        let mut input = InputObject::new(format!("{name}Input"))
            .description(describe(&format!("DTDL Object `{id}`"), docs));
        for f in fields {
            let field_hint = format!("{name}{}", upper_first(&f.name));
            let out = self.output(namer, &f.schema, &field_hint);
            let inp = self.input(namer, &f.schema, &field_hint);
            let mut doc = describe(&format!("Field `{}`", f.name), &f.docs);
            if let Some(u) = &f.unit {
                doc.push_str(&format!(" Unit: {u}."));
            }
            let field_schema = Arc::new(f.schema.clone());
            let key = f.name.clone();
            obj = obj.field(
                Field::new(&f.name, out, move |ctx| {
                    let (schema, key) = (field_schema.clone(), key.clone());
                    FieldFuture::new(async move {
                        let v = ctx.parent_value.try_downcast_ref::<Value>()?;
                        match v.get(&key) {
                            None | Some(Value::Null) => Ok(None),
                            Some(x) => render(&schema, x).map(Some),
                        }
                    })
                })
                .description(&doc),
            );
            input = input.field(InputValue::new(&f.name, inp).description(doc));
        }
        self.types.push(obj.into());
        self.types.push(input.into());
        name
    }

    fn map_types(&mut self, namer: &mut Namer, schema: &Schema, id: &str, hint: &str) -> String {
        if let Some(n) = self.names.get(id) {
            return n.clone();
        }
        let Schema::Map {
            docs,
            key_name,
            value_name,
            value,
            ..
        } = schema
        else {
            return "JSON".to_owned();
        };
        let name = self.base(namer, id, hint, &["Entry", "EntryInput"]);
        let value_field = map_value_field(key_name, value_name);
        let value_hint = format!("{name}{}", upper_first(value_name));
        let out = self.output(namer, value, &value_hint);
        let inp = self.input(namer, value, &value_hint);
        let value_schema = Arc::new((**value).clone());
        let doc = describe(&format!("An entry of DTDL Map `{id}`"), docs);
        let entry = Object::new(format!("{name}Entry"))
            .description(&doc)
            .field(Field::new(
                key_name,
                TypeRef::named_nn(TypeRef::STRING),
                |ctx| {
                    FieldFuture::new(async move {
                        let e = ctx.parent_value.try_downcast_ref::<MapEntry>()?;
                        Ok(Some(FieldValue::value(e.0.clone())))
                    })
                },
            ))
            .field(Field::new(&value_field, out, move |ctx| {
                let schema = value_schema.clone();
                FieldFuture::new(async move {
                    let e = ctx.parent_value.try_downcast_ref::<MapEntry>()?;
                    if e.1.is_null() {
                        return Ok(None);
                    }
                    render(&schema, &e.1).map(Some)
                })
            }));
        let entry_input = InputObject::new(format!("{name}EntryInput"))
            .description(doc)
            .field(InputValue::new(
                key_name,
                TypeRef::named_nn(TypeRef::STRING),
            ))
            .field(InputValue::new(&value_field, inp));
        self.types.push(entry.into());
        self.types.push(entry_input.into());
        name
    }
}

/// A stored value of `schema` as a GraphQL value of its output type.
pub(super) fn render(schema: &Schema, v: &Value) -> Result<FieldValue<'static>, Error> {
    Ok(match schema {
        Schema::Enum { values, .. } => values
            .iter()
            .find(|e| literal_json(&e.value) == *v)
            .map_or(FieldValue::NULL, |e| {
                FieldValue::value(GqlValue::Enum(Name::new(enum_item(&e.name))))
            }),
        Schema::Object { fields, .. } if !fields.is_empty() => {
            if v.is_object() {
                FieldValue::owned_any(v.clone())
            } else {
                FieldValue::NULL
            }
        }
        Schema::Array { element, .. } => match v.as_array() {
            Some(items) => FieldValue::list(
                items
                    .iter()
                    .map(|x| {
                        if x.is_null() {
                            Ok(FieldValue::NULL)
                        } else {
                            render(element, x)
                        }
                    })
                    .collect::<Result<Vec<_>, Error>>()?,
            ),
            None => FieldValue::NULL,
        },
        Schema::Map { .. } => match v.as_object() {
            Some(m) => FieldValue::list(
                m.iter()
                    .map(|(k, x)| FieldValue::owned_any(MapEntry(k.clone(), x.clone()))),
            ),
            None => FieldValue::NULL,
        },
        // A Float is a float even when stored as `3`.
        Schema::Primitive {
            primitive: Primitive::Double | Primitive::Float,
        } => match v.as_f64() {
            Some(f) => FieldValue::value(f),
            None => FieldValue::NULL,
        },
        _ => FieldValue::value(to_gql(v.clone())?),
    })
}

/// A GraphQL input value of `schema`'s input type as the JSON stored.
/// Errors name the path below `at`.
pub(super) fn parse(schema: &Schema, v: &GqlValue, at: &str) -> Result<Value, String> {
    match (schema, v) {
        (_, GqlValue::Null) => Ok(Value::Null),
        (Schema::Enum { values, .. }, GqlValue::Enum(_) | GqlValue::String(_)) => {
            let name = match v {
                GqlValue::Enum(n) => n.as_str(),
                GqlValue::String(s) => s.as_str(),
                _ => "",
            };
            values
                .iter()
                .find(|e| enum_item(&e.name) == name)
                .map(|e| literal_json(&e.value))
                .ok_or_else(|| format!("{at}: {name} is not a value of the enum"))
        }
        (Schema::Object { fields, .. }, GqlValue::Object(m)) if !fields.is_empty() => {
            let mut out = Map::new();
            for (k, x) in m {
                let f = fields
                    .iter()
                    .find(|f| f.name == k.as_str())
                    .ok_or_else(|| format!("{at}: no field {k}"))?;
                let x = parse(&f.schema, x, &format!("{at}.{k}"))?;
                if !x.is_null() {
                    out.insert(k.to_string(), x);
                }
            }
            Ok(Value::Object(out))
        }
        (
            Schema::Map {
                key_name,
                value_name,
                value,
                ..
            },
            GqlValue::List(items),
        ) => {
            let mut out = Map::new();
            for (i, item) in items.iter().enumerate() {
                let GqlValue::Object(e) = item else {
                    return Err(format!("{at}[{i}]: a map entry must be an object"));
                };
                let Some(GqlValue::String(key)) = e.get(key_name.as_str()) else {
                    return Err(format!("{at}[{i}]: {key_name} is required"));
                };
                let x = e
                    .get(map_value_field(key_name, value_name).as_str())
                    .unwrap_or(&GqlValue::Null);
                out.insert(key.clone(), parse(value, x, &format!("{at}.{key}"))?);
            }
            Ok(Value::Object(out))
        }
        (Schema::Array { element, .. }, GqlValue::List(items)) => items
            .iter()
            .enumerate()
            .map(|(i, x)| parse(element, x, &format!("{at}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (
            Schema::Primitive {
                primitive: Primitive::Double | Primitive::Float,
            },
            GqlValue::Number(n),
        ) => Ok(n.as_f64().map_or(Value::Null, Value::from)),
        // A single value where a list is expected is a list of one (GraphQL input coercion).
        (Schema::Array { element, .. }, x) => Ok(Value::Array(vec![parse(element, x, at)?])),
        (_, x) => x.clone().into_json().map_err(|e| format!("{at}: {e}")),
    }
}

/// A typed filter's operators (`{gt: 5}`) as the JSON filter's (enum names
/// become stored values).
pub(super) fn filter_ops(schema: &Schema, ops: &GqlValue, at: &str) -> Result<Value, String> {
    let GqlValue::Object(m) = ops else {
        return Err(format!("{at}: a filter is an object of operators"));
    };
    let mut out = Map::new();
    for (op, arg) in m {
        if matches!(arg, GqlValue::Null) {
            continue;
        }
        let x = match (op.as_str(), arg) {
            ("exists", x) => x.clone().into_json().map_err(|e| e.to_string())?,
            ("in", GqlValue::List(items)) => Value::Array(
                items
                    .iter()
                    .map(|x| parse(schema, x, at))
                    .collect::<Result<_, _>>()?,
            ),
            (_, x) => parse(schema, x, at)?,
        };
        out.insert(op.to_string(), x);
    }
    Ok(Value::Object(out))
}

/// Types every typed schema shares: date/time scalars, the primitive
/// filters, sort direction, property metadata.
pub(super) fn shared_types() -> Vec<Type> {
    fn valid(p: Primitive) -> impl Fn(&GqlValue) -> bool + Send + Sync + 'static {
        move |v| match v {
            GqlValue::String(s) => crate::twin::value::validate(
                &Schema::Primitive { primitive: p },
                &Value::from(s.clone()),
            )
            .is_ok(),
            _ => false,
        }
    }
    let scalars = [
        ("Date", "A date, YYYY-MM-DD (DTDL date).", Primitive::Date),
        (
            "Time",
            "A time of day with offset, hh:mm:ss[.fff]Z (DTDL time).",
            Primitive::Time,
        ),
        (
            "Duration",
            "An ISO 8601 duration such as PT15M (DTDL duration).",
            Primitive::Duration,
        ),
    ];
    let mut types: Vec<Type> = scalars
        .into_iter()
        .map(|(n, d, p)| Scalar::new(n).description(d).validator(valid(p)).into())
        .collect();
    let ordered = |name: &str, ty: &str, doc: &str| {
        InputObject::new(name)
            .description(doc)
            .field(InputValue::new("eq", TypeRef::named(ty)))
            .field(InputValue::new("ne", TypeRef::named(ty)))
            .field(InputValue::new("in", TypeRef::named_nn_list(ty)))
            .field(InputValue::new("gt", TypeRef::named(ty)))
            .field(InputValue::new("gte", TypeRef::named(ty)))
            .field(InputValue::new("lt", TypeRef::named(ty)))
            .field(InputValue::new("lte", TypeRef::named(ty)))
            .field(InputValue::new("exists", TypeRef::named(TypeRef::BOOLEAN)))
    };
    types.push(ordered("IntFilter", TypeRef::INT, "Tests of an Int value.").into());
    types.push(ordered("LongFilter", "Long", "Tests of a Long value.").into());
    types.push(ordered("FloatFilter", TypeRef::FLOAT, "Tests of a Float value.").into());
    types.push(ordered("DateTimeFilter", "DateTime", "Tests of a DateTime value.").into());
    types.push(
        ordered(
            "StringFilter",
            TypeRef::STRING,
            "Tests of a String value (also dates, times and durations; ranges compare text).",
        )
        .field(InputValue::new("contains", TypeRef::named(TypeRef::STRING)))
        .field(InputValue::new(
            "startsWith",
            TypeRef::named(TypeRef::STRING),
        ))
        .into(),
    );
    types.push(
        InputObject::new("IDFilter")
            .description("Tests of a twin id.")
            .field(InputValue::new("eq", TypeRef::named(TypeRef::ID)))
            .field(InputValue::new("ne", TypeRef::named(TypeRef::ID)))
            .field(InputValue::new("in", TypeRef::named_nn_list(TypeRef::ID)))
            .field(InputValue::new(
                "startsWith",
                TypeRef::named(TypeRef::STRING),
            ))
            .into(),
    );
    types.push(
        InputObject::new("BooleanFilter")
            .description("Tests of a Boolean value.")
            .field(InputValue::new("eq", TypeRef::named(TypeRef::BOOLEAN)))
            .field(InputValue::new("ne", TypeRef::named(TypeRef::BOOLEAN)))
            .field(InputValue::new("exists", TypeRef::named(TypeRef::BOOLEAN)))
            .into(),
    );
    // (`SortDirection` is the generic API's: `twins(orderBy:)`.)
    types
}
