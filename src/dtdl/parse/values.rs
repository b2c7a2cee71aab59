//! Property values: counting (nested arrays flatten), literals versus
//! element-valued properties, inline elements versus references by DTMI, and
//! standard values given by term (primitive and geospatial schemas, units,
//! command types).

use super::literal::truncate;
use super::{Ctx, ElemId, Item, JPath, Parser, Slot};
use crate::dtdl::diag::code;
use crate::dtdl::dtmi::{self, Version};
use crate::dtdl::json::Value;
use crate::dtdl::metamodel::{self, Kind, PropDef, Range, limits};
use crate::dtdl::vocab::{ContextId, Primitive, Sym, vocab};

/// The property whose values are being parsed, and where.
#[derive(Clone, Copy)]
pub(super) struct At<'a> {
    /// The element the property belongs to.
    pub owner: ElemId,
    pub def: &'a PropDef,
    pub ctx: &'a Ctx,
    /// The owner's DTMI, for diagnostics.
    pub id: Option<&'a str>,
}

impl Parser {
    /// Parses the values of one property.
    pub(super) fn values(
        &mut self,
        at: At<'_>,
        value: &Value,
        path: &JPath<'_>,
    ) -> Option<Vec<Item>> {
        let At { def, ctx, id, .. } = at;
        // Localizable strings have their own array form.
        if let Kind::LangString(max) = def.kind {
            return self
                .lang_string(value, max, path, id, def.term, ctx.version)
                .map(|v| vec![Item::Lang(v)]);
        }
        // JSON-LD flattens nested arrays: `[a, [b, c], []]` holds a, b and c.
        let count = leaf_count(value);
        if count > def.max {
            self.err(
                code::PROPERTY_COUNT,
                path,
                id,
                if def.max == 1 {
                    format!(
                        "property \"{}\" takes a single value, found {count}",
                        def.term
                    )
                } else {
                    format!(
                        "property \"{}\" takes at most {} values, found {count}",
                        def.term, def.max
                    )
                },
            );
            return None;
        }
        if count < def.min.max(usize::from(def.required)) {
            self.err(
                code::PROPERTY_COUNT,
                path,
                id,
                format!(
                    "property \"{}\" needs at least {} value(s), found {count}",
                    def.term,
                    def.min.max(1)
                ),
            );
            return None;
        }
        let mut items = Vec::with_capacity(count);
        let mut ok = true;
        self.leaf_values(at, value, path, &mut items, &mut ok);
        ok.then_some(items)
    }

    /// Parses every leaf of a (possibly nested) array value, in order.
    fn leaf_values(
        &mut self,
        at: At<'_>,
        value: &Value,
        path: &JPath<'_>,
        items: &mut Vec<Item>,
        ok: &mut bool,
    ) {
        match value {
            Value::Array(list) => {
                for (i, v) in list.iter().enumerate() {
                    self.leaf_values(at, v, &path.index(i), items, ok);
                }
            }
            v => match self.value(at, v, path, items.len()) {
                Some(item) => items.push(item),
                None => *ok = false,
            },
        }
    }

    /// One value; `index` is its position among the property's values.
    fn value(&mut self, at: At<'_>, v: &Value, path: &JPath<'_>, index: usize) -> Option<Item> {
        let At { def, ctx, id, .. } = at;
        match def.kind {
            Kind::Elements(range) => self.element_value(at, range, v, path, index),
            Kind::LangString(_) => None,
            Kind::DtmiLiteral => self.check_literal(def, v, path, ctx, id),
            _ => {
                let lit = self.literal(v, path, id, def.term, ctx.version)?;
                self.check_literal(def, lit, path, ctx, id)
            }
        }
    }

    fn element_value(
        &mut self,
        at: At<'_>,
        range: Range,
        v: &Value,
        path: &JPath<'_>,
        index: usize,
    ) -> Option<Item> {
        let At {
            owner,
            def,
            ctx,
            id,
        } = at;
        match v {
            Value::String(s) => self.element_reference(at, range, s, path),
            Value::Object(_) => {
                if range_id_required(range) {
                    self.err(
                        code::REFERENCE_INVALID,
                        path,
                        id,
                        format!("property \"{}\" must be given as a DTMI or term, not an inline definition", def.term),
                    );
                    return None;
                }
                let classes = metamodel::range_classes(range, ctx.version);
                if classes.is_empty() {
                    self.err(
                        code::VALUE_NOT_ALLOWED,
                        path,
                        id,
                        format!(
                            "property \"{}\" takes a standard value, not an object",
                            def.term
                        ),
                    );
                    return None;
                }
                let parent_id = self.out.elements[owner].id.clone();
                let slot = Slot {
                    parent: owner,
                    parent_id: &parent_id,
                    prop: def.term,
                    range,
                    index,
                    plural: def.max > 1,
                };
                self.element(v, path, ctx, Some(slot), classes, false)
                    .map(Item::Elem)
            }
            other => {
                self.err(
                    code::VALUE_TYPE,
                    path,
                    id,
                    format!(
                        "property \"{}\" must be a DTMI, a term or an object, found {}",
                        def.term,
                        other.kind()
                    ),
                );
                None
            }
        }
    }

    fn element_reference(
        &mut self,
        at: At<'_>,
        range: Range,
        s: &str,
        path: &JPath<'_>,
    ) -> Option<Item> {
        let At { def, ctx, id, .. } = at;
        // Standard elements of any DTDL version may be named by DTMI
        // (a v3 schema may be `dtmi:dtdl:instance:Schema:double;2`).
        let found = ctx.lookup(s).or_else(|| {
            s.starts_with("dtmi:")
                .then(|| vocab().dtmi(&ContextId::ALL, s))
                .flatten()
                .filter(|d| {
                    matches!(
                        d.sym,
                        Sym::Primitive(_) | Sym::StdSchema(_) | Sym::CommandType
                    )
                })
        });
        let sym = found.map(|d| d.sym);
        let standard = match (range, sym) {
            (Range::Schema, Some(Sym::Primitive(p))) => Some(Item::Primitive(p)),
            (Range::Schema, Some(Sym::StdSchema(g))) => Some(Item::StdSchema(g)),
            (Range::Schema, Some(Sym::QuantEnum(name))) => Some(Item::QuantEnum(name)),
            // v3 units and prefixes are standard EnumValue elements.
            (Range::EnumValues, Some(Sym::Unit(_) | Sym::Prefix)) if ctx.version == Version::V3 => {
                Some(Item::Term(found.map_or("", |d| d.term)))
            }
            (
                Range::EnumValueSchema,
                Some(Sym::Primitive(p @ (Primitive::Integer | Primitive::String))),
            ) => Some(Item::Primitive(p)),
            (Range::StringSchema, Some(Sym::Primitive(Primitive::String))) => {
                Some(Item::Primitive(Primitive::String))
            }
            (Range::CommandType, Some(Sym::CommandType)) => {
                Some(Item::Term(found.map_or("", |d| d.term)))
            }
            (Range::Unit, Some(Sym::Unit(_))) => Some(Item::Term(found.map_or("", |d| d.term))),
            _ => None,
        };
        if let Some(item) = standard {
            return Some(item);
        }
        let elem_range = !metamodel::range_classes(range, ctx.version).is_empty();
        if elem_range && s.starts_with("dtmi:") && found.is_none() {
            match dtmi::check(s, Version::V3, false) {
                Ok(()) if s.len() <= limits::ID_MAX => return Some(Item::Ref(s.to_owned())),
                _ => {}
            }
            self.err(
                code::REFERENCE_INVALID,
                path,
                id,
                format!(
                    "\"{}\" is not a valid DTMI reference for \"{}\"",
                    truncate(s, 80),
                    def.term
                ),
            );
            return None;
        }
        self.err(
            code::VALUE_NOT_ALLOWED,
            path,
            id,
            format!(
                "\"{}\" is not an allowed value of \"{}\"{}",
                truncate(s, 80),
                def.term,
                allowed_values_hint(range)
            ),
        );
        None
    }
}

/// DTDL v3 properties whose values may be DTDL v2 elements.
pub fn accepts_v2_elements(prop: &str) -> bool {
    matches!(
        prop,
        "contents" | "extends" | "schema" | "elementSchema" | "properties"
    )
}

/// How many non-array values a (possibly nested) array holds.
pub(super) fn leaf_count(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.iter().map(leaf_count).sum(),
        _ => 1,
    }
}

/// Ranges whose values must be references or terms, never inline objects.
pub(super) fn range_id_required(range: Range) -> bool {
    matches!(
        range,
        Range::EnumValueSchema | Range::StringSchema | Range::CommandType | Range::Unit
    )
}

/// Ranges whose elements may omit `@type` (the class is implied).
pub(super) fn type_optional(range: Range, _version: Version) -> bool {
    match range {
        Range::EnumValues | Range::Fields | Range::MapKey | Range::MapValue => true,
        Range::Request | Range::Response => true,
        Range::RelationshipProperties => false,
        _ => false,
    }
}

pub(super) fn allowed_values_hint(range: Range) -> &'static str {
    match range {
        Range::Schema => {
            "; use a primitive schema (boolean, date, dateTime, double, duration, float, integer, long, string, time), a geospatial schema, a complex schema object or the DTMI of one"
        }
        Range::EnumValueSchema => "; use integer or string",
        Range::StringSchema => "; use string",
        Range::CommandType => "; use synchronous or asynchronous",
        Range::Unit => "; use a unit of the element's semantic type",
        Range::Interface => "; use the DTMI of an Interface",
        _ => "",
    }
}
