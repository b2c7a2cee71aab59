//! The resolved model: typed, with inheritance flattened and every reference
//! replaced by what it refers to.
//!
//! A [`ModelSet`] is built only from a model set that passed every rule, so
//! the lowering here cannot fail: where it meets something the rules
//! guarantee away, it falls back to a neutral value rather than panicking.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use serde::Serialize;

use super::dtmi::Version;
use super::metamodel::Class;
use super::parse::{ElemId, Element, Item, Parsed};
use super::rules::Checked;
use super::vocab::{Adjunct, Primitive, StdSchema};

/// Localizable text: `(language, text)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LangString(pub Vec<(String, String)>);

impl LangString {
    /// The text for `lang`, else English, else any.
    pub fn get(&self, lang: &str) -> Option<&str> {
        let find = |l: &str| {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(l))
                .map(|(_, t)| t.as_str())
        };
        find(lang)
            .or_else(|| find("en"))
            .or_else(|| self.0.first().map(|(_, t)| t.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Documentation shared by every element.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Docs {
    pub display_name: LangString,
    pub description: LangString,
    pub comment: Option<String>,
}

/// A data schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Schema {
    Primitive {
        primitive: Primitive,
    },
    /// GeoJSON schemas and the IoT Central `geopoint` / `vector`.
    Standard {
        schema: StdSchema,
    },
    Array {
        id: String,
        docs: Docs,
        element: Box<Schema>,
    },
    Enum {
        id: String,
        docs: Docs,
        value_schema: Primitive,
        values: Vec<EnumValue>,
    },
    Map {
        id: String,
        docs: Docs,
        key_name: String,
        value_name: String,
        value: Box<Schema>,
    },
    Object {
        id: String,
        docs: Docs,
        fields: Vec<Field>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnumValue {
    pub id: String,
    pub name: String,
    pub value: EnumLiteral,
    pub docs: Docs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum EnumLiteral {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub id: String,
    pub name: String,
    pub schema: Schema,
    pub docs: Docs,
    pub semantic_type: Option<String>,
    pub unit: Option<String>,
}

/// A Command's request or response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payload {
    pub id: String,
    pub name: String,
    pub schema: Schema,
    pub docs: Docs,
}

/// What kind of content an Interface member is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ContentKind {
    Telemetry {
        schema: Schema,
    },
    Property {
        schema: Schema,
        writable: bool,
    },
    Command {
        request: Option<Box<Payload>>,
        response: Option<Box<Payload>>,
    },
    Relationship {
        /// DTMI of the Interface targets must implement; any when `None`.
        target: Option<String>,
        min_multiplicity: i64,
        max_multiplicity: Option<i64>,
        properties: Vec<Content>,
        writable: bool,
    },
    Component {
        /// DTMI of the Interface the Component is an instance of.
        schema: String,
    },
}

/// A member of an Interface's contents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Content {
    pub id: String,
    pub name: String,
    pub kind: ContentKind,
    pub docs: Docs,
    /// Semantic type term (e.g. `Temperature`), when co-typed with one.
    pub semantic_type: Option<String>,
    pub unit: Option<String>,
    /// Extension co-types, e.g. `Historized`.
    pub adjuncts: Vec<String>,
    /// DTMI of the Interface that declares it (an ancestor, for inherited contents).
    pub defined_in: String,
}

/// A resolved Interface.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interface {
    pub id: String,
    pub version: u8,
    pub docs: Docs,
    /// Interfaces named in `extends`.
    pub extends: Vec<String>,
    /// Every ancestor, nearest first.
    pub ancestors: Vec<String>,
    /// Own contents followed by inherited ones (each name once). Inherited
    /// contents are shared with the Interface that declares them.
    pub contents: Vec<Arc<Content>>,
    /// Reusable schemas declared in `schemas`.
    pub schemas: Vec<Schema>,
    pub adjuncts: Vec<String>,
}

impl Interface {
    pub fn content(&self, name: &str) -> Option<&Content> {
        self.contents.iter().find(|c| c.name == name).map(|c| &**c)
    }

    /// True if this Interface is `other` or extends it.
    pub fn is_a(&self, other: &str) -> bool {
        self.id == other || self.ancestors.iter().any(|a| a == other)
    }
}

/// Element counts by class, for summaries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub interfaces: usize,
    pub elements: usize,
    pub by_kind: BTreeMap<&'static str, usize>,
}

/// A complete, valid, resolved set of DTDL models (the default: none).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelSet {
    interfaces: BTreeMap<String, Interface>,
    counts: Counts,
}

impl ModelSet {
    pub fn interface(&self, id: &str) -> Option<&Interface> {
        self.interfaces.get(id)
    }

    pub fn interfaces(&self) -> impl Iterator<Item = &Interface> {
        self.interfaces.values()
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Interfaces that are `id` or extend it.
    pub fn implementors<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Interface> + 'a {
        self.interfaces.values().filter(move |i| i.is_a(id))
    }
}

pub(crate) fn lower(p: &Parsed, c: &Checked) -> ModelSet {
    let l = Lowerer {
        p,
        c,
        own: std::cell::RefCell::new(HashMap::new()),
    };
    let mut interfaces = BTreeMap::new();
    let mut counts = Counts::default();
    for (e, el) in p.elements.iter().enumerate() {
        counts.elements += 1;
        *counts.by_kind.entry(el.class.term()).or_default() += 1;
        if el.class == Class::Interface && !interfaces.contains_key(&el.id) {
            interfaces.insert(el.id.clone(), l.interface(e));
        }
    }
    counts.interfaces = interfaces.len();
    ModelSet { interfaces, counts }
}

struct Lowerer<'a> {
    p: &'a Parsed,
    c: &'a Checked,
    /// Each Interface's own contents, lowered once and shared with its descendants.
    own: std::cell::RefCell<HashMap<ElemId, Arc<Vec<Arc<Content>>>>>,
}

impl Lowerer<'_> {
    fn el(&self, e: ElemId) -> &Element {
        &self.p.elements[e]
    }

    fn resolve(&self, item: &Item) -> Option<ElemId> {
        match item {
            Item::Elem(e) => Some(*e),
            Item::Ref(d) => self.c.index.get(d).copied(),
            _ => None,
        }
    }

    fn elems(&self, e: ElemId, term: &str) -> Vec<ElemId> {
        self.el(e)
            .prop(term)
            .map(|p| p.items.iter().filter_map(|i| self.resolve(i)).collect())
            .unwrap_or_default()
    }

    fn docs(&self, e: ElemId) -> Docs {
        let el = self.el(e);
        let lang = |term: &str| match el.prop(term).and_then(|p| p.items.first()) {
            Some(Item::Lang(v)) => LangString(v.clone()),
            _ => LangString::default(),
        };
        Docs {
            display_name: lang("displayName"),
            description: lang("description"),
            comment: el.str_prop("comment").map(str::to_owned),
        }
    }

    fn schema_of(&self, e: ElemId, term: &str) -> Schema {
        match self.el(e).prop(term).and_then(|p| p.items.first()) {
            Some(Item::Primitive(p)) => Schema::Primitive { primitive: *p },
            Some(Item::StdSchema(s)) => Schema::Standard { schema: *s },
            Some(Item::QuantEnum(name)) => quant_enum(name),
            Some(item) => match self.resolve(item) {
                Some(s) => self.complex(s),
                None => Schema::Primitive {
                    primitive: Primitive::String,
                },
            },
            None => Schema::Primitive {
                primitive: Primitive::String,
            },
        }
    }

    fn complex(&self, s: ElemId) -> Schema {
        let el = self.el(s);
        let id = el.id.clone();
        let docs = self.docs(s);
        match el.class {
            Class::Array => Schema::Array {
                id,
                docs,
                element: Box::new(self.schema_of(s, "elementSchema")),
            },
            Class::Enum => {
                let value_schema = match el.prop("valueSchema").and_then(|p| p.items.first()) {
                    Some(Item::Primitive(p)) => *p,
                    _ => Primitive::String,
                };
                let values = self
                    .elems(s, "enumValues")
                    .into_iter()
                    .map(|v| {
                        let ve = self.el(v);
                        EnumValue {
                            id: ve.id.clone(),
                            name: ve.name().unwrap_or_default().to_owned(),
                            value: match ve.prop("enumValue").and_then(|p| p.items.first()) {
                                Some(Item::Int(i)) => EnumLiteral::Int(*i),
                                Some(Item::Str(t)) => EnumLiteral::Str(t.clone()),
                                _ => EnumLiteral::Str(String::new()),
                            },
                            docs: self.docs(v),
                        }
                    })
                    .collect();
                Schema::Enum {
                    id,
                    docs,
                    value_schema,
                    values,
                }
            }
            Class::Map => {
                let key = self.elems(s, "mapKey").first().copied();
                let value = self.elems(s, "mapValue").first().copied();
                Schema::Map {
                    id,
                    docs,
                    key_name: key
                        .and_then(|k| self.el(k).name().map(str::to_owned))
                        .unwrap_or_default(),
                    value_name: value
                        .and_then(|k| self.el(k).name().map(str::to_owned))
                        .unwrap_or_default(),
                    value: Box::new(value.map_or(
                        Schema::Primitive {
                            primitive: Primitive::String,
                        },
                        |v| self.schema_of(v, "schema"),
                    )),
                }
            }
            Class::Object => Schema::Object {
                id,
                docs,
                fields: self
                    .elems(s, "fields")
                    .into_iter()
                    .map(|f| {
                        let fe = self.el(f);
                        Field {
                            id: fe.id.clone(),
                            name: fe.name().unwrap_or_default().to_owned(),
                            schema: self.schema_of(f, "schema"),
                            docs: self.docs(f),
                            semantic_type: fe.semantic_type.map(|s| s.term.to_owned()),
                            unit: self.unit(f),
                        }
                    })
                    .collect(),
            },
            _ => Schema::Primitive {
                primitive: Primitive::String,
            },
        }
    }

    fn unit(&self, e: ElemId) -> Option<String> {
        match self.el(e).prop("unit").and_then(|p| p.items.first()) {
            Some(Item::Term(t)) => Some((*t).to_owned()),
            _ => None,
        }
    }

    fn payload(&self, e: ElemId, term: &str) -> Option<Payload> {
        let p = self.elems(e, term).first().copied()?;
        let pe = self.el(p);
        Some(Payload {
            id: pe.id.clone(),
            name: pe.name().unwrap_or_default().to_owned(),
            schema: self.schema_of(p, "schema"),
            docs: self.docs(p),
        })
    }

    fn bool_prop(&self, e: ElemId, term: &str) -> bool {
        matches!(
            self.el(e).prop(term).and_then(|p| p.items.first()),
            Some(Item::Bool(true))
        )
    }

    fn int_prop(&self, e: ElemId, term: &str) -> Option<i64> {
        match self.el(e).prop(term).and_then(|p| p.items.first()) {
            Some(Item::Int(i)) => Some(*i),
            _ => None,
        }
    }

    fn content(&self, e: ElemId, defined_in: &str) -> Content {
        let el = self.el(e);
        let kind = match el.class {
            Class::Telemetry => ContentKind::Telemetry {
                schema: self.schema_of(e, "schema"),
            },
            Class::Property => ContentKind::Property {
                schema: self.schema_of(e, "schema"),
                writable: self.bool_prop(e, "writable"),
            },
            Class::Command => ContentKind::Command {
                request: self.payload(e, "request").map(Box::new),
                response: self.payload(e, "response").map(Box::new),
            },
            Class::Relationship => ContentKind::Relationship {
                target: el.str_prop("target").map(str::to_owned),
                min_multiplicity: self.int_prop(e, "minMultiplicity").unwrap_or(0),
                max_multiplicity: self.int_prop(e, "maxMultiplicity"),
                properties: self
                    .elems(e, "properties")
                    .into_iter()
                    .map(|p| self.content(p, defined_in))
                    .collect(),
                writable: self.bool_prop(e, "writable"),
            },
            _ => ContentKind::Component {
                schema: self
                    .elems(e, "schema")
                    .first()
                    .map(|i| self.el(*i).id.clone())
                    .unwrap_or_default(),
            },
        };
        Content {
            id: el.id.clone(),
            name: el.name().unwrap_or_default().to_owned(),
            kind,
            docs: self.docs(e),
            semantic_type: el.semantic_type.map(|s| s.term.to_owned()),
            unit: self.unit(e),
            adjuncts: el.adjuncts.iter().map(adjunct_name).collect(),
            defined_in: defined_in.to_owned(),
        }
    }

    fn own_contents(&self, i: ElemId) -> Arc<Vec<Arc<Content>>> {
        if let Some(c) = self.own.borrow().get(&i) {
            return c.clone();
        }
        let owner = self.el(i).id.clone();
        let list: Arc<Vec<Arc<Content>>> = Arc::new(
            self.elems(i, "contents")
                .into_iter()
                .map(|c| Arc::new(self.content(c, &owner)))
                .collect(),
        );
        self.own.borrow_mut().insert(i, list.clone());
        list
    }

    fn interface(&self, e: ElemId) -> Interface {
        let el = self.el(e);
        let ancestors: Vec<ElemId> = self.c.ancestors.get(&e).cloned().unwrap_or_default();
        let mut contents = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for i in std::iter::once(e).chain(ancestors.iter().copied()) {
            for content in self.own_contents(i).iter() {
                if seen.insert(content.name.clone()) {
                    contents.push(content.clone());
                }
            }
        }
        Interface {
            id: el.id.clone(),
            version: match el.version {
                Version::V2 => 2,
                Version::V3 => 3,
            },
            docs: self.docs(e),
            extends: self
                .elems(e, "extends")
                .into_iter()
                .map(|i| self.el(i).id.clone())
                .collect(),
            ancestors: ancestors.iter().map(|&a| self.el(a).id.clone()).collect(),
            contents,
            schemas: self
                .elems(e, "schemas")
                .into_iter()
                .map(|s| self.complex(s))
                .collect(),
            adjuncts: el.adjuncts.iter().map(adjunct_name).collect(),
        }
    }
}

/// A quantitativeTypes Enum (`TemperatureUnit`, `DecimalPrefix`, ...) as a schema.
fn quant_enum(name: &str) -> Schema {
    let v = super::vocab::vocab();
    let ctx = super::vocab::ContextId::QuantitativeTypes1;
    Schema::Enum {
        id: v.dtmi_of(ctx, name).unwrap_or_default().to_owned(),
        docs: Docs {
            display_name: LangString(vec![("en".to_owned(), name.to_owned())]),
            ..Docs::default()
        },
        value_schema: Primitive::String,
        values: v
            .quant_enum_values(name)
            .into_iter()
            .map(|u| EnumValue {
                id: v.dtmi_of(ctx, u).unwrap_or_default().to_owned(),
                name: u.to_owned(),
                value: EnumLiteral::Str(u.to_owned()),
                docs: Docs::default(),
            })
            .collect(),
    }
}

fn adjunct_name(a: &Adjunct) -> String {
    format!("{a:?}")
}
