//! DTDL vocabularies: the terms each `@context` defines and what they mean.
//!
//! The term tables under `vocab/` are the published DTDL contexts (core v2 and
//! v3, the v3 language extensions and the IoT Central v2 context): one
//! `term<TAB>DTMI` per line. Unit tables list, per unit class, the units it
//! admits; semantic tables map each semantic type to its unit class.
//!
//! Tables are parsed once, on first use, into maps keyed by term and by DTMI.

use foldhash::{HashMap, HashMapExt};
use std::sync::OnceLock;

use super::dtmi::Version;
use super::metamodel::Class;

/// A `@context` the engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContextId {
    CoreV2,
    CoreV3,
    QuantitativeTypes1,
    Historization1,
    Annotation1,
    Overriding1,
    Mqtt1,
    IotCentral2,
}

impl ContextId {
    pub const ALL: [ContextId; 8] = [
        ContextId::CoreV2,
        ContextId::CoreV3,
        ContextId::QuantitativeTypes1,
        ContextId::Historization1,
        ContextId::Annotation1,
        ContextId::Overriding1,
        ContextId::Mqtt1,
        ContextId::IotCentral2,
    ];

    /// The context's DTMI, as written in `@context`.
    pub fn dtmi(self) -> &'static str {
        match self {
            ContextId::CoreV2 => "dtmi:dtdl:context;2",
            ContextId::CoreV3 => "dtmi:dtdl:context;3",
            ContextId::QuantitativeTypes1 => "dtmi:dtdl:extension:quantitativeTypes;1",
            ContextId::Historization1 => "dtmi:dtdl:extension:historization;1",
            ContextId::Annotation1 => "dtmi:dtdl:extension:annotation;1",
            ContextId::Overriding1 => "dtmi:dtdl:extension:overriding;1",
            ContextId::Mqtt1 => "dtmi:dtdl:extension:mqtt;1",
            ContextId::IotCentral2 => "dtmi:iotcentral:context;2",
        }
    }

    pub fn from_dtmi(s: &str) -> Option<ContextId> {
        ContextId::ALL.into_iter().find(|c| c.dtmi() == s)
    }

    /// The DTDL version a document using this context must be written in.
    pub fn version(self) -> Version {
        match self {
            ContextId::CoreV2 | ContextId::IotCentral2 => Version::V2,
            _ => Version::V3,
        }
    }

    /// Whether this is a language extension (as opposed to a core context).
    pub fn is_extension(self) -> bool {
        !matches!(self, ContextId::CoreV2 | ContextId::CoreV3)
    }

    fn table(self) -> &'static str {
        match self {
            ContextId::CoreV2 => include_str!("vocab/core-v2.tsv"),
            ContextId::CoreV3 => include_str!("vocab/core-v3.tsv"),
            ContextId::QuantitativeTypes1 => include_str!("vocab/quantitativeTypes-1.tsv"),
            ContextId::Historization1 => include_str!("vocab/historization-1.tsv"),
            ContextId::Annotation1 => include_str!("vocab/annotation-1.tsv"),
            ContextId::Overriding1 => include_str!("vocab/overriding-1.tsv"),
            ContextId::Mqtt1 => include_str!("vocab/mqtt-1.tsv"),
            ContextId::IotCentral2 => include_str!("vocab/iotcentral-2.tsv"),
        }
    }
}

/// A primitive schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Primitive {
    Boolean,
    Date,
    DateTime,
    Double,
    Duration,
    Float,
    Integer,
    Long,
    String,
    Time,
}

impl Primitive {
    pub fn from_term(t: &str) -> Option<Primitive> {
        Some(match t {
            "boolean" => Primitive::Boolean,
            "date" => Primitive::Date,
            "dateTime" => Primitive::DateTime,
            "double" => Primitive::Double,
            "duration" => Primitive::Duration,
            "float" => Primitive::Float,
            "integer" => Primitive::Integer,
            "long" => Primitive::Long,
            "string" => Primitive::String,
            "time" => Primitive::Time,
            _ => return None,
        })
    }

    pub fn term(self) -> &'static str {
        match self {
            Primitive::Boolean => "boolean",
            Primitive::Date => "date",
            Primitive::DateTime => "dateTime",
            Primitive::Double => "double",
            Primitive::Duration => "duration",
            Primitive::Float => "float",
            Primitive::Integer => "integer",
            Primitive::Long => "long",
            Primitive::String => "string",
            Primitive::Time => "time",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Primitive::Double | Primitive::Float | Primitive::Integer | Primitive::Long
        )
    }
}

/// A standard (built-in) schema that is not primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StdSchema {
    Point,
    MultiPoint,
    LineString,
    MultiLineString,
    Polygon,
    MultiPolygon,
    /// IoT Central `geopoint` (`lon`, `lat`, `alt`).
    #[serde(rename = "geopoint")]
    GeoPoint,
    /// IoT Central `vector` (`x`, `y`, `z`).
    Vector,
}

impl StdSchema {
    fn from_term(t: &str) -> Option<StdSchema> {
        Some(match t {
            "point" => StdSchema::Point,
            "multiPoint" => StdSchema::MultiPoint,
            "lineString" => StdSchema::LineString,
            "multiLineString" => StdSchema::MultiLineString,
            "polygon" => StdSchema::Polygon,
            "multiPolygon" => StdSchema::MultiPolygon,
            "geopoint" => StdSchema::GeoPoint,
            "vector" => StdSchema::Vector,
            _ => return None,
        })
    }

    pub fn term(self) -> &'static str {
        match self {
            StdSchema::Point => "point",
            StdSchema::MultiPoint => "multiPoint",
            StdSchema::LineString => "lineString",
            StdSchema::MultiLineString => "multiLineString",
            StdSchema::Polygon => "polygon",
            StdSchema::MultiPolygon => "multiPolygon",
            StdSchema::GeoPoint => "geopoint",
            StdSchema::Vector => "vector",
        }
    }

    pub fn is_geospatial(self) -> bool {
        !matches!(self, StdSchema::GeoPoint | StdSchema::Vector)
    }
}

/// A co-type that adds meaning (and sometimes properties) to a material class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Adjunct {
    Historized,
    ValueAnnotation,
    Override,
    Mqtt,
    Indexed,
    Cacheable,
    Idempotent,
    /// IoT Central `Event` (schema numeric or string).
    Event,
    /// IoT Central `State` (schema an Enum).
    State,
    /// IoT Central `Location` (schema geospatial or geopoint).
    Location,
    /// IoT Central `AccelerationVector` / `VelocityVector` (schema `vector`).
    AccelerationVector,
    VelocityVector,
}

impl Adjunct {
    /// The material classes this adjunct may co-type.
    pub fn cotypes(self) -> &'static [Class] {
        match self {
            Adjunct::Historized | Adjunct::ValueAnnotation => &[Class::Property, Class::Telemetry],
            Adjunct::Override => &[Class::Property],
            Adjunct::Mqtt => &[Class::Interface],
            Adjunct::Indexed => &[Class::EnumValue, Class::Field, Class::Telemetry],
            Adjunct::Cacheable | Adjunct::Idempotent => &[Class::Command],
            Adjunct::Event
            | Adjunct::State
            | Adjunct::Location
            | Adjunct::AccelerationVector
            | Adjunct::VelocityVector => &[Class::Property, Class::Telemetry],
        }
    }
}

/// What a term or DTMI denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sym {
    /// A material class.
    Class(Class),
    /// A property; the term is its short name (`schema`, `unit`, `annotates`).
    Prop(&'static str),
    Primitive(Primitive),
    StdSchema(StdSchema),
    /// `synchronous` / `asynchronous` (v2 Command `commandType`).
    CommandType,
    /// A semantic type; the index is its unit class in [`Vocab::unit_classes`].
    SemanticType(u16),
    /// A unit and the unit classes (indices) it belongs to.
    Unit(u16),
    Adjunct(Adjunct),
    /// A standard Enum of the v3 quantitativeTypes extension (a unit class
    /// such as `TemperatureUnit`, or a prefix set), usable as a schema.
    QuantEnum(&'static str),
    /// A unit prefix (`kilo`, `kibi`): a standard EnumValue in v3.
    Prefix,
    /// Defined, but never a material class, property or value in a model
    /// (abstract classes, unit classes, prefixes, meta terms).
    Other,
}

/// One definition: the DTMI a term expands to and its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Def {
    pub term: &'static str,
    pub dtmi: &'static str,
    pub sym: Sym,
}

/// A unit class and its units.
#[derive(Debug, Clone)]
pub struct UnitClass {
    pub name: &'static str,
    pub units: Vec<&'static str>,
}

/// All vocabularies, indexed.
#[derive(Debug)]
pub struct Vocab {
    by_term: HashMap<ContextId, HashMap<&'static str, Def>>,
    by_dtmi: HashMap<ContextId, HashMap<&'static str, Def>>,
    /// Unit classes per unit context (core v2, quantitativeTypes 1).
    pub unit_classes: Vec<UnitClass>,
}

/// The shared vocabulary.
pub fn vocab() -> &'static Vocab {
    static VOCAB: OnceLock<Vocab> = OnceLock::new();
    VOCAB.get_or_init(Vocab::build)
}

fn tsv(text: &'static str) -> impl Iterator<Item = (&'static str, &'static str)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once('\t'))
}

impl Vocab {
    fn build() -> Vocab {
        let mut unit_classes: Vec<UnitClass> = Vec::new();
        let mut by_term = HashMap::new();
        let mut by_dtmi = HashMap::new();
        for ctx in ContextId::ALL {
            // Unit and semantic tables of the contexts that define quantities.
            let (units, semantics) = match ctx {
                ContextId::CoreV2 => (
                    include_str!("vocab/units-v2.tsv"),
                    include_str!("vocab/semantic-v2.tsv"),
                ),
                ContextId::QuantitativeTypes1 => (
                    include_str!("vocab/units-quantitativeTypes-1.tsv"),
                    include_str!("vocab/semantic-quantitativeTypes-1.tsv"),
                ),
                _ => ("", ""),
            };
            let base = unit_classes.len();
            let mut unit_of: HashMap<&'static str, u16> = HashMap::new();
            let mut class_index: HashMap<&'static str, u16> = HashMap::new();
            for (class, list) in tsv(units) {
                let idx = u16::try_from(unit_classes.len()).expect("fewer than 65536 unit classes");
                class_index.insert(class, idx);
                let units: Vec<&'static str> = list.split_whitespace().collect();
                for u in &units {
                    unit_of.entry(u).or_insert(idx);
                }
                unit_classes.push(UnitClass { name: class, units });
            }
            let semantic: HashMap<&'static str, u16> = tsv(semantics)
                .filter_map(|(sem, class)| class_index.get(class).map(|i| (sem, *i)))
                .collect();
            debug_assert!(base <= unit_classes.len());

            let mut terms = HashMap::new();
            let mut dtmis = HashMap::new();
            for (term, dtmi) in tsv(ctx.table()) {
                let sym = classify(ctx, term, dtmi, &semantic, &unit_of);
                let def = Def { term, dtmi, sym };
                terms.insert(term, def);
                dtmis.insert(dtmi, def);
            }
            by_term.insert(ctx, terms);
            by_dtmi.insert(ctx, dtmis);
        }
        Vocab {
            by_term,
            by_dtmi,
            unit_classes,
        }
    }

    /// Looks a term up in the active contexts; later contexts take precedence.
    pub fn term(&self, active: &[ContextId], term: &str) -> Option<Def> {
        active
            .iter()
            .rev()
            .find_map(|c| self.by_term.get(c).and_then(|m| m.get(term)).copied())
    }

    /// Looks a DTMI up among the definitions of the active contexts.
    pub fn dtmi(&self, active: &[ContextId], dtmi: &str) -> Option<Def> {
        active
            .iter()
            .rev()
            .find_map(|c| self.by_dtmi.get(c).and_then(|m| m.get(dtmi)).copied())
    }

    /// The enum values (unit or prefix terms) of a quantitativeTypes Enum.
    pub fn quant_enum_values(&self, name: &str) -> Vec<&'static str> {
        let class = if name == "EnergyRateUnit" {
            "PowerUnit"
        } else {
            name
        };
        if let Some(c) = self.unit_classes.iter().rev().find(|c| c.name == class) {
            return c.units.clone();
        }
        let binary = name == "BinaryPrefix";
        self.by_term
            .get(&ContextId::QuantitativeTypes1)
            .map(|m| {
                let mut v: Vec<&'static str> = m
                    .values()
                    .filter(|d| d.sym == Sym::Prefix && d.term.ends_with("bi") == binary)
                    .map(|d| d.term)
                    .collect();
                v.sort_unstable();
                v
            })
            .unwrap_or_default()
    }

    /// The DTMI a term of `ctx` expands to.
    pub fn dtmi_of(&self, ctx: ContextId, term: &str) -> Option<&'static str> {
        self.by_term
            .get(&ctx)
            .and_then(|m| m.get(term))
            .map(|d| d.dtmi)
    }

    /// Whether the unit at `unit` may be used with a semantic type of unit class `class`.
    pub fn unit_in_class(&self, unit: &str, class: u16) -> bool {
        self.unit_classes
            .get(usize::from(class))
            .is_some_and(|c| c.units.contains(&unit))
    }
}

fn classify(
    ctx: ContextId,
    term: &'static str,
    dtmi: &'static str,
    semantic: &HashMap<&'static str, u16>,
    unit_of: &HashMap<&'static str, u16>,
) -> Sym {
    let core = matches!(ctx, ContextId::CoreV2 | ContextId::CoreV3);
    if core {
        if let Some(rest) = dtmi.strip_prefix("dtmi:dtdl:class:") {
            let name = rest.split(';').next().unwrap_or_default();
            return Class::ALL
                .into_iter()
                .find(|c| c.term() == name && c.in_version(ctx.version()))
                .map_or(Sym::Other, Sym::Class);
        }
        if dtmi.starts_with("dtmi:dtdl:property:") {
            return match term {
                // Unit-definition properties only appear on unit elements.
                "languageMajorVersion"
                | "aliasFor"
                | "baseUnit"
                | "bottomUnit"
                | "topUnit"
                | "prefix"
                | "exponent"
                | "symbol" => Sym::Other,
                _ => Sym::Prop(term),
            };
        }
        if dtmi.starts_with("dtmi:dtdl:instance:Schema:") {
            return Primitive::from_term(term).map_or(Sym::Other, Sym::Primitive);
        }
        if dtmi.starts_with("dtmi:dtdl:instance:CommandType:") {
            return Sym::CommandType;
        }
    }
    if dtmi.starts_with("dtmi:standard:schema:geospatial:")
        || dtmi.starts_with("dtmi:iotcentral:schema:")
    {
        return StdSchema::from_term(term).map_or(Sym::Other, Sym::StdSchema);
    }
    if let Some(class) = semantic.get(term) {
        return Sym::SemanticType(*class);
    }
    if let Some(class) = unit_of.get(term)
        && dtmi.contains(":unit:")
    {
        return Sym::Unit(*class);
    }
    if ctx == ContextId::QuantitativeTypes1 {
        if dtmi.contains(":v1:enum:") {
            return Sym::QuantEnum(term);
        }
        if dtmi.contains(":v1:unitprefix:") {
            return Sym::Prefix;
        }
    }
    match (ctx, term) {
        (ContextId::QuantitativeTypes1, "unit") => Sym::Prop("unit"),
        (ContextId::Historization1, "Historized") => Sym::Adjunct(Adjunct::Historized),
        (ContextId::Annotation1, "ValueAnnotation") => Sym::Adjunct(Adjunct::ValueAnnotation),
        (ContextId::Annotation1, "annotates") => Sym::Prop("annotates"),
        (ContextId::Overriding1, "Override") => Sym::Adjunct(Adjunct::Override),
        (ContextId::Overriding1, "overrides") => Sym::Prop("overrides"),
        (ContextId::Mqtt1, "Mqtt") => Sym::Adjunct(Adjunct::Mqtt),
        (ContextId::Mqtt1, "Indexed") => Sym::Adjunct(Adjunct::Indexed),
        (ContextId::Mqtt1, "Cacheable") => Sym::Adjunct(Adjunct::Cacheable),
        (ContextId::Mqtt1, "Idempotent") => Sym::Adjunct(Adjunct::Idempotent),
        (
            ContextId::Mqtt1,
            "telemetryTopic" | "commandTopic" | "payloadFormat" | "index" | "ttl",
        ) => Sym::Prop(term),
        (ContextId::IotCentral2, "Event") => Sym::Adjunct(Adjunct::Event),
        (ContextId::IotCentral2, "State") => Sym::Adjunct(Adjunct::State),
        (ContextId::IotCentral2, "Location") => Sym::Adjunct(Adjunct::Location),
        (ContextId::IotCentral2, "AccelerationVector") => Sym::Adjunct(Adjunct::AccelerationVector),
        (ContextId::IotCentral2, "VelocityVector") => Sym::Adjunct(Adjunct::VelocityVector),
        _ => Sym::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_terms_resolve_per_version() {
        let v = vocab();
        let d = v
            .term(&[ContextId::CoreV3], "schema")
            .expect("schema is a v3 term");
        assert_eq!(d.dtmi, "dtmi:dtdl:property:schema;3");
        assert_eq!(d.sym, Sym::Prop("schema"));
        assert_eq!(
            v.term(&[ContextId::CoreV2], "CommandPayload")
                .map(|d| d.sym),
            Some(Sym::Class(Class::CommandPayload))
        );
        assert_eq!(
            v.term(&[ContextId::CoreV3], "CommandPayload")
                .map(|d| d.sym),
            Some(Sym::Other)
        );
    }

    #[test]
    fn semantic_types_know_their_units() {
        let v = vocab();
        let Some(Sym::SemanticType(class)) =
            v.term(&[ContextId::CoreV2], "Temperature").map(|d| d.sym)
        else {
            panic!("Temperature is a v2 semantic type");
        };
        assert!(v.unit_in_class("degreeCelsius", class));
        assert!(!v.unit_in_class("metre", class));
        assert!(v.term(&[ContextId::CoreV3], "Temperature").is_none());
        assert!(matches!(
            v.term(
                &[ContextId::CoreV3, ContextId::QuantitativeTypes1],
                "Temperature"
            )
            .map(|d| d.sym),
            Some(Sym::SemanticType(_))
        ));
    }
}
