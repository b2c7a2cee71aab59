//! Typed GraphQL types compiled from the DTDL model set (first slice).
//!
//! For every Interface: a GraphQL interface (named by [`super::names`])
//! implementing `Twin` and the interfaces of all its ancestors, and an object
//! type `<Name>Twin` for twins whose model is exactly that Interface, which
//! implements them all. So `twins(model: Equipment)` answers
//! `... on Pump { flowRate }` for pumps, whatever the query asked for.
//!
//! Fields: the `Twin` fields, then one field per Property and Telemetry with
//! the reported value (DTDL primitives as GraphQL scalars: `long` as `Long`,
//! date-times as `DateTime`, other date/time types as `String`; complex
//! schemas as `JSON`). A DTDL name that is also a `Twin` field gets the
//! prefix `prop_`. The DTMI, display name, description, semantic type and
//! unit go into descriptions.
//!
//! Not yet: typed desired/delta/metadata per property, Enums and Objects as
//! GraphQL types, Components as nested fields, relationship connections,
//! per-model queries and inputs, commands.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, Interface, InterfaceField, Object, Type, TypeRef,
};
use serde_json::Value;

use super::names::{self, TypeNames};
use super::schema::{to_gql, twin_field, twin_fields};
use crate::dtdl::ModelSet;
use crate::dtdl::model::{Content, ContentKind, Schema};
use crate::dtdl::vocab::Primitive;
use crate::twin::Twin;

/// The object type of each model's twins (DTMI → type name).
#[derive(Debug, Default, Clone)]
pub struct TwinTypes(Arc<BTreeMap<String, String>>);

impl TwinTypes {
    /// The object type for a twin of `model`; `GenericTwin` for models the
    /// schema was not compiled with.
    pub fn of(&self, model: &str) -> &str {
        self.0.get(model).map_or("GenericTwin", String::as_str)
    }
}

fn scalar(schema: &Schema) -> TypeRef {
    match schema {
        Schema::Primitive { primitive } => TypeRef::named(match primitive {
            Primitive::Boolean => TypeRef::BOOLEAN,
            Primitive::Integer => TypeRef::INT,
            Primitive::Long => "Long",
            Primitive::Double | Primitive::Float => TypeRef::FLOAT,
            Primitive::DateTime => "DateTime",
            Primitive::Date | Primitive::Time | Primitive::Duration | Primitive::String => {
                TypeRef::STRING
            }
        }),
        _ => TypeRef::named("JSON"),
    }
}

/// Properties and telemetry: the typed fields.
fn typed_contents(contents: &[Arc<Content>]) -> Vec<(String, TypeRef, String, String)> {
    let reserved: Vec<&str> = twin_fields().iter().map(|(n, ..)| *n).collect();
    contents
        .iter()
        .filter_map(|c| {
            let (schema, what) = match &c.kind {
                ContentKind::Property { schema, writable } => (
                    schema,
                    if *writable {
                        "Writable property (reported value)"
                    } else {
                        "Property"
                    },
                ),
                ContentKind::Telemetry { schema } => (schema, "Telemetry (last reported value)"),
                _ => return None,
            };
            let field = if reserved.contains(&c.name.as_str()) {
                format!("prop_{}", c.name)
            } else {
                c.name.clone()
            };
            let mut doc = format!("{what} `{}`", c.name);
            if let Some(d) = c.docs.display_name.get("en") {
                doc.push_str(&format!(": {d}"));
            }
            if let Some(d) = c.docs.description.get("en") {
                doc.push_str(&format!(". {d}"));
            }
            if let Some(s) = &c.semantic_type {
                doc.push_str(&format!(" Semantic type: {s}."));
            }
            if let Some(u) = &c.unit {
                doc.push_str(&format!(" Unit: {u}."));
            }
            Some((field, scalar(schema), doc, c.name.clone()))
        })
        .collect()
}

fn reported_field(field: &str, ty: TypeRef, doc: &str, property: String) -> Field {
    Field::new(field, ty, move |ctx| {
        let property = property.clone();
        FieldFuture::new(async move {
            let t = ctx.parent_value.try_downcast_ref::<Twin>()?;
            let value = t
                .root
                .props
                .get(&property)
                .and_then(|p| p.reported.as_ref())
                .map(|r| r.value.clone());
            match value {
                None | Some(Value::Null) => Ok(None),
                Some(v) => Ok(Some(FieldValue::value(to_gql(v)?))),
            }
        })
    })
    .description(doc)
}

/// The typed types of `models`, and which object type each model's twins take.
pub fn compile(models: &ModelSet) -> (Vec<Type>, TwinTypes) {
    let names: BTreeMap<String, TypeNames> =
        names::assign(models.interfaces().map(|i| i.id.as_str()));
    let mut types = Vec::new();
    let mut objects = BTreeMap::new();
    for (dtmi, n) in &names {
        let Some(iface) = models.interface(dtmi) else {
            continue;
        };
        let mut doc = format!("DTDL Interface `{dtmi}`");
        if let Some(d) = iface.docs.display_name.get("en") {
            doc.push_str(&format!(": {d}"));
        }
        if let Some(d) = iface.docs.description.get("en") {
            doc.push_str(&format!(". {d}"));
        }
        let ancestors: Vec<&str> = iface
            .ancestors
            .iter()
            .filter_map(|a| names.get(a).map(|n| n.interface.as_str()))
            .collect();
        let contents = typed_contents(&iface.contents);

        let mut gi = Interface::new(&n.interface)
            .description(doc.clone())
            .implement("Twin");
        let mut obj = Object::new(&n.object)
            .description(format!("A twin whose model is exactly {doc}."))
            .implement("Twin")
            .implement(&n.interface);
        for a in &ancestors {
            gi = gi.implement(*a);
            obj = obj.implement(*a);
        }
        for (name, ty, fdoc, f) in twin_fields() {
            gi = gi.field(InterfaceField::new(name, ty.clone()).description(fdoc));
            obj = obj.field(twin_field(name, ty, f).description(fdoc));
        }
        for (field, ty, fdoc, property) in contents {
            gi = gi.field(InterfaceField::new(&field, ty.clone()).description(&fdoc));
            obj = obj.field(reported_field(&field, ty, &fdoc, property));
        }
        types.push(Type::from(gi));
        types.push(Type::from(obj));
        objects.insert(dtmi.clone(), n.object.clone());
    }
    (types, TwinTypes(Arc::new(objects)))
}
