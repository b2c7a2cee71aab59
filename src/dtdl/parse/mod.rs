//! Parsing: DTDL JSON documents into a flat list of raw elements.
//!
//! The parser walks each document once, driven by the metamodel tables. It
//! resolves `@context`, `@type` and property names (short terms or full
//! DTMIs), checks every value locally (types, lengths, patterns, counts) and
//! gives every element an identifier (its own `@id`, or one generated from
//! its parent's). References by DTMI are kept unresolved here; `rules.rs`
//! resolves them once every document has been read.
//!
//! Invariant: every problem found is pushed to `diags`; parsing then goes on
//! with the next value, so one run reports all errors of a model set.
//!
//! Layout: this file holds the parsed types and the document level;
//! [`context`] handles `@context`, [`element`] one element object (types,
//! identifier, properties), [`values`] property values and references,
//! [`literal`] literals and localizable strings.

mod context;
mod element;
mod literal;
mod values;

pub use literal::is_language_tag;
pub use values::accepts_v2_elements;

use std::sync::Arc;

use super::diag::{Diagnostic, code};
use super::dtmi::Version;
use super::json::Value;
use super::metamodel::{Class, PropDef, Range};
use super::vocab::{Adjunct, ContextId, Def, Primitive, StdSchema, vocab};

/// A JSON path inside a document (`$[0].contents[2].schema`), built as a
/// chain on the stack and rendered only when a diagnostic needs it.
#[derive(Debug, Clone, Copy)]
pub enum JPath<'a> {
    Root,
    Key(&'a JPath<'a>, &'a str),
    Index(&'a JPath<'a>, usize),
}

impl<'a> JPath<'a> {
    pub fn key(&'a self, k: &'a str) -> JPath<'a> {
        JPath::Key(self, k)
    }

    pub fn index(&'a self, i: usize) -> JPath<'a> {
        JPath::Index(self, i)
    }
}

impl std::fmt::Display for JPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JPath::Root => f.write_str("$"),
            JPath::Key(parent, k) => write!(f, "{parent}.{k}"),
            JPath::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Index of an element in [`Parsed::elements`].
pub type ElemId = usize;

/// A value of a property, after local checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A localizable string: `(language, text)` pairs.
    Lang(Vec<(String, String)>),
    /// An element defined inline.
    Elem(ElemId),
    /// A reference to an element by DTMI, resolved later.
    Ref(String),
    Primitive(Primitive),
    StdSchema(StdSchema),
    /// A standard Enum of the v3 quantitativeTypes extension (e.g. `TemperatureUnit`).
    QuantEnum(&'static str),
    /// A standard value given by term that needs no further meaning
    /// (`synchronous`, a unit).
    Term(&'static str),
}

/// One property of an element with its values.
#[derive(Debug, Clone)]
pub struct PropValue {
    pub def: PropDef,
    pub items: Vec<Item>,
    /// The member name it was given under (its term, or its full DTMI).
    pub key: &'static str,
}

/// A parsed element.
#[derive(Debug, Clone)]
pub struct Element {
    pub id: String,
    /// Whether `@id` was written (rather than generated).
    pub explicit_id: bool,
    pub class: Class,
    pub version: Version,
    pub semantic_type: Option<SemanticCotype>,
    pub adjuncts: Vec<Adjunct>,
    /// Other co-types accepted because an undefined extension could define them.
    pub open_cotypes: Vec<String>,
    pub props: Vec<PropValue>,
    pub doc: usize,
    pub path: String,
    pub parent: Option<ElemId>,
    /// The property of the parent this element is a value of.
    pub parent_prop: Option<&'static str>,
    /// The top-level element (an Interface) this element is defined in.
    pub top: ElemId,
    /// Whether a DTMI reference to this element may be made from another
    /// Interface (top-level elements only).
    pub contexts: Vec<ContextId>,
}

impl Element {
    pub fn prop(&self, term: &str) -> Option<&PropValue> {
        self.props.iter().find(|p| p.def.term == term)
    }

    pub fn str_prop(&self, term: &str) -> Option<&str> {
        match self.prop(term)?.items.first()? {
            Item::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn name(&self) -> Option<&str> {
        self.str_prop("name")
    }
}

/// A semantic-type co-type with its unit class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemanticCotype {
    pub term: &'static str,
    pub unit_class: u16,
}

/// How to treat `@context` entries that name no known extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UndefinedExtensions {
    /// DTDL's default: allowed in v2, rejected in v3.
    #[default]
    VersionDefault,
    Allow,
    Deny,
}

/// The documents of one model set, and what parsing found in them.
#[derive(Debug, Default)]
pub struct Parsed {
    pub elements: Vec<Element>,
    pub diags: Vec<Diagnostic>,
    /// Source names, indexed by `Element::doc`.
    pub docs: Vec<Arc<str>>,
}

#[derive(Debug, Clone)]
struct Ctx {
    version: Version,
    contexts: Vec<ContextId>,
    undefined_ext: bool,
}

impl Ctx {
    fn term(&self, t: &str) -> Option<Def> {
        vocab().term(&self.contexts, t)
    }

    fn dtmi(&self, d: &str) -> Option<Def> {
        vocab().dtmi(&self.contexts, d)
    }

    /// A key or string value: term, or DTMI of a definition in scope.
    fn lookup(&self, s: &str) -> Option<Def> {
        if s.starts_with("dtmi:") {
            self.dtmi(s)
        } else {
            self.term(s)
        }
    }
}

/// Where a nested element hangs: its parent and the property it is a value of.
#[derive(Debug, Clone, Copy)]
struct Slot<'a> {
    parent: ElemId,
    parent_id: &'a str,
    prop: &'static str,
    range: Range,
    index: usize,
    /// The property admits many values (ids use the index when unnamed).
    plural: bool,
}

/// Parses documents into elements. `docs` pairs a source name with its JSON.
pub fn parse_documents(docs: &[(Arc<str>, Value)], undefined: UndefinedExtensions) -> Parsed {
    let mut p = Parser {
        out: Parsed::default(),
        undefined,
        doc: 0,
    };
    for (i, (name, value)) in docs.iter().enumerate() {
        p.out.docs.push(name.clone());
        p.doc = i;
        p.document(value);
    }
    p.out
}

struct Parser {
    out: Parsed,
    undefined: UndefinedExtensions,
    doc: usize,
}

impl Parser {
    fn err(&mut self, code: &'static str, path: &JPath<'_>, dtmi: Option<&str>, message: String) {
        self.out.diags.push(Diagnostic {
            code,
            file: self.out.docs[self.doc].clone(),
            path: path.to_string(),
            dtmi: dtmi.map(str::to_owned),
            message,
        });
    }

    fn document(&mut self, root: &Value) {
        match root {
            Value::Object(_) => self.top_level(root, &JPath::Root),
            Value::Array(items) => self.document_array(items, &JPath::Root),
            other => self.err(
                code::ROOT_NOT_OBJECT_OR_ARRAY,
                &JPath::Root,
                None,
                format!(
                    "a DTDL document must be an object or an array of objects, found {}",
                    other.kind()
                ),
            ),
        }
    }

    /// A top-level array: objects, or (flattened, as JSON-LD does) arrays of them.
    fn document_array(&mut self, items: &[Value], path: &JPath<'_>) {
        for (i, item) in items.iter().enumerate() {
            let path = path.index(i);
            match item {
                Value::Object(_) => self.top_level(item, &path),
                Value::Array(nested) => self.document_array(nested, &path),
                other => self.err(
                    code::ROOT_NOT_OBJECT_OR_ARRAY,
                    &path,
                    None,
                    format!(
                        "a document array may hold only objects, found {}",
                        other.kind()
                    ),
                ),
            }
        }
    }

    fn top_level(&mut self, obj: &Value, path: &JPath<'_>) {
        if matches!(obj.get("@value"), Some(Value::Array(_) | Value::Object(_))) {
            // Not an element: JSON-LD reads it as a (malformed) value object.
            self.err(
                code::ROOT_NOT_OBJECT_OR_ARRAY,
                path,
                None,
                "a top-level object whose @value is an array or object is not a DTDL element"
                    .to_owned(),
            );
            return;
        }
        let Some(ctx_value) = obj.get("@context") else {
            let id = obj.get("@id").and_then(Value::as_str);
            self.err(
                code::CONTEXT_MISSING,
                path,
                id,
                "a top-level element must have an @context naming the DTDL version, e.g. \"dtmi:dtdl:context;3\"".to_owned(),
            );
            return;
        };
        let Some(ctx) = self.context(ctx_value, None, false, &path.key("@context")) else {
            return;
        };
        self.element(obj, path, &ctx, None, &[Class::Interface], true);
    }
}
