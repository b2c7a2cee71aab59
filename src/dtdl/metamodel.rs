//! The DTDL metamodel: which element classes exist in each language version,
//! which properties each class takes, and the limits on them.
//!
//! This is the single table the parser is driven by; rules that span several
//! elements (inheritance, uniqueness, depth) live in `rules.rs`.

use super::dtmi::Version;
use super::vocab::Adjunct;

/// A concrete ("material") DTDL element class that can appear in `@type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Interface,
    Telemetry,
    Property,
    Command,
    Relationship,
    Component,
    /// DTDL v2 request/response of a Command.
    CommandPayload,
    /// DTDL v3 request of a Command.
    CommandRequest,
    /// DTDL v3 response of a Command.
    CommandResponse,
    Array,
    Enum,
    EnumValue,
    Map,
    MapKey,
    MapValue,
    Object,
    Field,
}

impl Class {
    pub const ALL: [Class; 17] = [
        Class::Interface,
        Class::Telemetry,
        Class::Property,
        Class::Command,
        Class::Relationship,
        Class::Component,
        Class::CommandPayload,
        Class::CommandRequest,
        Class::CommandResponse,
        Class::Array,
        Class::Enum,
        Class::EnumValue,
        Class::Map,
        Class::MapKey,
        Class::MapValue,
        Class::Object,
        Class::Field,
    ];

    /// The term that names the class in `@type`.
    pub fn term(self) -> &'static str {
        match self {
            Class::Interface => "Interface",
            Class::Telemetry => "Telemetry",
            Class::Property => "Property",
            Class::Command => "Command",
            Class::Relationship => "Relationship",
            Class::Component => "Component",
            Class::CommandPayload => "CommandPayload",
            Class::CommandRequest => "CommandRequest",
            Class::CommandResponse => "CommandResponse",
            Class::Array => "Array",
            Class::Enum => "Enum",
            Class::EnumValue => "EnumValue",
            Class::Map => "Map",
            Class::MapKey => "MapKey",
            Class::MapValue => "MapValue",
            Class::Object => "Object",
            Class::Field => "Field",
        }
    }

    /// Whether the class exists (as a material class) in `version`.
    pub fn in_version(self, version: Version) -> bool {
        match self {
            Class::CommandPayload => version == Version::V2,
            Class::CommandRequest | Class::CommandResponse => version == Version::V3,
            _ => true,
        }
    }

    /// Complex schemas: the classes whose nesting depth is limited.
    pub fn is_complex_schema(self) -> bool {
        matches!(
            self,
            Class::Array | Class::Enum | Class::Map | Class::Object
        )
    }

    /// Classes that carry a `name` (NamedEntity).
    pub fn is_named(self) -> bool {
        !matches!(
            self,
            Class::Interface | Class::Array | Class::Enum | Class::Map | Class::Object
        )
    }
}

/// What a property's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `name`: string matching the name pattern, length by version.
    Name,
    /// A plain string up to this many characters.
    Str(usize),
    /// A localizable string; each text up to this many characters.
    LangString(usize),
    Bool,
    /// An integer in `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// `enumValue`: integer or string, matched against the Enum's `valueSchema`.
    IntOrString,
    /// A DTMI literal (Relationship `target`): not dereferenced.
    DtmiLiteral,
    /// Elements of a class set, or standard instances, or references.
    Elements(Range),
}

/// The values an object-valued property admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// Interface `contents`.
    Contents,
    /// Interface `schemas`: complex schemas with explicit `@id`s.
    InterfaceSchemas,
    /// An Interface (`extends`, Component `schema`).
    Interface,
    /// Any schema: primitive, geospatial or complex.
    Schema,
    /// Relationship `properties`.
    RelationshipProperties,
    EnumValues,
    /// Enum `valueSchema`: `integer` or `string`.
    EnumValueSchema,
    MapKey,
    MapValue,
    /// MapKey `schema`: `string` only.
    StringSchema,
    Fields,
    Request,
    Response,
    /// v2 Command `commandType`: `synchronous` or `asynchronous`.
    CommandType,
    /// A unit (co-type property of a semantic type).
    Unit,
}

/// One property of a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropDef {
    pub term: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// Fewest values when present (only `enumValues` and `fields` need more than 0).
    pub min: usize,
    /// Most values.
    pub max: usize,
}

const MANY: usize = usize::MAX;

const fn p(term: &'static str, kind: Kind) -> PropDef {
    PropDef {
        term,
        kind,
        required: false,
        min: 0,
        max: 1,
    }
}

const fn req(mut d: PropDef) -> PropDef {
    d.required = true;
    d
}

const fn many(mut d: PropDef, min: usize, max: usize) -> PropDef {
    d.min = min;
    d.max = max;
    d
}

const COMMENT: PropDef = p("comment", Kind::Str(512));
const DESC: PropDef = p("description", Kind::LangString(512));
const DN_V2: PropDef = p("displayName", Kind::LangString(64));
const DN_V3: PropDef = p("displayName", Kind::LangString(512));
const NAME: PropDef = req(p("name", Kind::Name));
const SCHEMA: PropDef = req(p("schema", Kind::Elements(Range::Schema)));

macro_rules! props {
    ($v2:expr, $v3:expr) => {{
        const V2: &[PropDef] = &$v2;
        const V3: &[PropDef] = &$v3;
        (V2, V3)
    }};
}

/// The properties of `class` in `version`, in the order DTDL documents them.
pub fn properties(class: Class, version: Version) -> &'static [PropDef] {
    let (v2, v3): (&'static [PropDef], &'static [PropDef]) = match class {
        Class::Interface => props!(
            [
                COMMENT,
                many(p("contents", Kind::Elements(Range::Contents)), 0, 300),
                DESC,
                DN_V2,
                many(p("extends", Kind::Elements(Range::Interface)), 0, 2),
                many(
                    p("schemas", Kind::Elements(Range::InterfaceSchemas)),
                    0,
                    MANY
                ),
            ],
            [
                COMMENT,
                many(p("contents", Kind::Elements(Range::Contents)), 0, MANY),
                DESC,
                DN_V3,
                many(p("extends", Kind::Elements(Range::Interface)), 0, MANY),
                many(
                    p("schemas", Kind::Elements(Range::InterfaceSchemas)),
                    0,
                    MANY
                ),
            ]
        ),
        Class::Telemetry => props!(
            [COMMENT, DESC, DN_V2, NAME, SCHEMA],
            [COMMENT, DESC, DN_V3, NAME, SCHEMA]
        ),
        Class::Property => props!(
            [
                COMMENT,
                DESC,
                DN_V2,
                NAME,
                SCHEMA,
                p("writable", Kind::Bool)
            ],
            [
                COMMENT,
                DESC,
                DN_V3,
                NAME,
                SCHEMA,
                p("writable", Kind::Bool)
            ]
        ),
        Class::Command => props!(
            [
                p("commandType", Kind::Elements(Range::CommandType)),
                COMMENT,
                DESC,
                DN_V2,
                NAME,
                p("request", Kind::Elements(Range::Request)),
                p("response", Kind::Elements(Range::Response)),
            ],
            [
                p("commandType", Kind::Elements(Range::CommandType)),
                COMMENT,
                DESC,
                DN_V3,
                NAME,
                p("request", Kind::Elements(Range::Request)),
                p("response", Kind::Elements(Range::Response)),
            ]
        ),
        Class::CommandPayload => props!([COMMENT, DESC, DN_V2, NAME, SCHEMA], []),
        Class::CommandRequest | Class::CommandResponse => {
            props!([], [COMMENT, DESC, DN_V3, NAME, SCHEMA])
        }
        Class::Relationship => props!(
            [
                COMMENT,
                DESC,
                DN_V2,
                p("maxMultiplicity", Kind::Int { min: 1, max: 500 }),
                p("minMultiplicity", Kind::Int { min: 0, max: 0 }),
                NAME,
                many(
                    p("properties", Kind::Elements(Range::RelationshipProperties)),
                    0,
                    300
                ),
                p("target", Kind::DtmiLiteral),
                p("writable", Kind::Bool),
            ],
            [
                COMMENT,
                DESC,
                DN_V3,
                p(
                    "maxMultiplicity",
                    Kind::Int {
                        min: 1,
                        max: i32::MAX as i64
                    }
                ),
                p("minMultiplicity", Kind::Int { min: 0, max: 0 }),
                NAME,
                many(
                    p("properties", Kind::Elements(Range::RelationshipProperties)),
                    0,
                    MANY
                ),
                p("target", Kind::DtmiLiteral),
                p("writable", Kind::Bool),
            ]
        ),
        Class::Component => props!(
            [
                COMMENT,
                DESC,
                DN_V2,
                NAME,
                req(p("schema", Kind::Elements(Range::Interface)))
            ],
            [
                COMMENT,
                DESC,
                DN_V3,
                NAME,
                req(p("schema", Kind::Elements(Range::Interface)))
            ]
        ),
        Class::Array => props!(
            [
                COMMENT,
                DESC,
                DN_V2,
                req(p("elementSchema", Kind::Elements(Range::Schema)))
            ],
            [
                COMMENT,
                DESC,
                DN_V3,
                req(p("elementSchema", Kind::Elements(Range::Schema)))
            ]
        ),
        Class::Enum => props!(
            [
                COMMENT,
                DESC,
                DN_V2,
                req(many(
                    p("enumValues", Kind::Elements(Range::EnumValues)),
                    1,
                    100
                )),
                req(p("valueSchema", Kind::Elements(Range::EnumValueSchema))),
            ],
            [
                COMMENT,
                DESC,
                DN_V3,
                many(p("enumValues", Kind::Elements(Range::EnumValues)), 0, MANY),
                req(p("valueSchema", Kind::Elements(Range::EnumValueSchema))),
            ]
        ),
        Class::EnumValue => props!(
            [
                COMMENT,
                DESC,
                DN_V2,
                req(p("enumValue", Kind::IntOrString)),
                NAME
            ],
            [
                COMMENT,
                DESC,
                DN_V3,
                req(p("enumValue", Kind::IntOrString)),
                NAME
            ]
        ),
        Class::Map => props!(
            [
                COMMENT,
                DESC,
                DN_V2,
                req(p("mapKey", Kind::Elements(Range::MapKey))),
                req(p("mapValue", Kind::Elements(Range::MapValue))),
            ],
            [
                COMMENT,
                DESC,
                DN_V3,
                req(p("mapKey", Kind::Elements(Range::MapKey))),
                req(p("mapValue", Kind::Elements(Range::MapValue))),
            ]
        ),
        Class::MapKey => props!(
            [
                COMMENT,
                DESC,
                DN_V2,
                NAME,
                req(p("schema", Kind::Elements(Range::StringSchema)))
            ],
            [
                COMMENT,
                DESC,
                DN_V3,
                NAME,
                req(p("schema", Kind::Elements(Range::StringSchema)))
            ]
        ),
        Class::MapValue => props!(
            [COMMENT, DESC, DN_V2, NAME, SCHEMA],
            [COMMENT, DESC, DN_V3, NAME, SCHEMA]
        ),
        Class::Object => props!(
            [
                COMMENT,
                DESC,
                DN_V2,
                req(many(p("fields", Kind::Elements(Range::Fields)), 1, 30))
            ],
            [
                COMMENT,
                DESC,
                DN_V3,
                many(p("fields", Kind::Elements(Range::Fields)), 0, MANY)
            ]
        ),
        Class::Field => props!(
            [COMMENT, DESC, DN_V2, NAME, SCHEMA],
            [COMMENT, DESC, DN_V3, NAME, SCHEMA]
        ),
    };
    match version {
        Version::V2 => v2,
        Version::V3 => v3,
    }
}

/// The classes admitted by an element-valued property.
pub fn range_classes(range: Range, version: Version) -> &'static [Class] {
    match range {
        Range::Contents => &[
            Class::Telemetry,
            Class::Property,
            Class::Command,
            Class::Relationship,
            Class::Component,
        ],
        Range::InterfaceSchemas | Range::Schema => {
            &[Class::Array, Class::Enum, Class::Map, Class::Object]
        }
        Range::Interface => &[Class::Interface],
        Range::RelationshipProperties => &[Class::Property],
        Range::EnumValues => &[Class::EnumValue],
        Range::MapKey => &[Class::MapKey],
        Range::MapValue => &[Class::MapValue],
        Range::Fields => &[Class::Field],
        Range::Request => match version {
            Version::V2 => &[Class::CommandPayload],
            Version::V3 => &[Class::CommandRequest],
        },
        Range::Response => match version {
            Version::V2 => &[Class::CommandPayload],
            Version::V3 => &[Class::CommandResponse],
        },
        Range::EnumValueSchema | Range::StringSchema | Range::CommandType | Range::Unit => &[],
    }
}

/// Maximum length of a `name` in `version`.
pub fn name_max_len(version: Version) -> usize {
    match version {
        Version::V2 => 64,
        Version::V3 => 512,
    }
}

/// Whether `s` is a valid DTDL `name`: a letter, then letters, digits or
/// underscores, not ending in an underscore.
pub fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphabetic()
                && *l != b'_'
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        }
        _ => false,
    }
}

// Properties contributed by co-types: a semantic type adds `unit`; extension
// adjunct types add their own.

/// The properties an element may have: its class's and its co-types'.
pub fn element_props(
    class: Class,
    version: Version,
    semantic: bool,
    adjuncts: &[Adjunct],
) -> Vec<PropDef> {
    let mut v: Vec<PropDef> = properties(class, version).to_vec();
    if semantic {
        v.push(UNIT_REQUIRED);
    }
    for a in adjuncts {
        v.extend_from_slice(adjunct_props(*a));
    }
    v
}

/// The definition of property `term` on an element of `class` with these co-types.
pub fn element_prop(
    class: Class,
    version: Version,
    semantic: bool,
    adjuncts: &[Adjunct],
    term: &str,
) -> Option<PropDef> {
    if let Some(d) = properties(class, version).iter().find(|d| d.term == term) {
        return Some(*d);
    }
    if term == "unit" {
        if semantic {
            return Some(UNIT_REQUIRED);
        }
        if adjuncts
            .iter()
            .any(|a| matches!(a, Adjunct::AccelerationVector | Adjunct::VelocityVector))
        {
            return Some(UNIT_OPTIONAL);
        }
        return None;
    }
    adjuncts
        .iter()
        .flat_map(|a| adjunct_props(*a).iter())
        .find(|d| d.term == term)
        .copied()
}

const UNIT_REQUIRED: PropDef = PropDef {
    term: "unit",
    kind: Kind::Elements(Range::Unit),
    required: true,
    min: 0,
    max: 1,
};

const UNIT_OPTIONAL: PropDef = PropDef {
    term: "unit",
    kind: Kind::Elements(Range::Unit),
    required: false,
    min: 0,
    max: 1,
};

const fn cotype_prop(term: &'static str, kind: Kind, required: bool) -> PropDef {
    PropDef {
        term,
        kind,
        required,
        min: 0,
        max: 1,
    }
}

const ANNOTATION_PROPS: [PropDef; 1] = [cotype_prop("annotates", Kind::Str(usize::MAX), true)];
const OVERRIDE_PROPS: [PropDef; 1] = [cotype_prop("overrides", Kind::Str(usize::MAX), true)];
const MQTT_PROPS: [PropDef; 3] = [
    cotype_prop("telemetryTopic", Kind::Str(usize::MAX), false),
    cotype_prop("commandTopic", Kind::Str(usize::MAX), false),
    cotype_prop("payloadFormat", Kind::Str(usize::MAX), true),
];
const INDEXED_PROPS: [PropDef; 1] = [cotype_prop(
    "index",
    Kind::Int {
        min: 1,
        max: i64::MAX,
    },
    true,
)];
const CACHEABLE_PROPS: [PropDef; 1] = [cotype_prop("ttl", Kind::Str(usize::MAX), true)];

fn adjunct_props(a: Adjunct) -> &'static [PropDef] {
    match a {
        Adjunct::ValueAnnotation => &ANNOTATION_PROPS,
        Adjunct::Override => &OVERRIDE_PROPS,
        Adjunct::Mqtt => &MQTT_PROPS,
        Adjunct::Indexed => &INDEXED_PROPS,
        Adjunct::Cacheable => &CACHEABLE_PROPS,
        _ => &[],
    }
}

/// Limits that span several elements.
pub mod limits {
    /// Maximum length of an Interface `@id` (both versions).
    pub const INTERFACE_ID_MAX: usize = 128;
    /// Maximum length of any other identifier (both versions).
    pub const ID_MAX: usize = 2048;
    /// Maximum depth of an `extends` hierarchy.
    pub const EXTENDS_DEPTH: usize = 10;
    /// v3: maximum number of interfaces in an `extends` tree.
    pub const EXTENDS_TOTAL_V3: usize = 1024;
    /// Most `schema`/`elementSchema` links on a chain below a complex schema.
    pub const SCHEMA_DEPTH: usize = 5;
    /// v3: maximum number of contents in an Interface including inherited ones.
    pub const CONTENTS_TOTAL_V3: usize = 100_000;
}
