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

use std::sync::Arc;

use super::diag::{Diagnostic, code};
use super::dtmi::{self, DtmiError, Version};
use super::json::{Number, Value};
use super::metamodel::{self, Class, Kind, PropDef, Range, limits};
use super::vocab::{Adjunct, ContextId, Def, Primitive, StdSchema, Sym, vocab};

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

/// How an unrecognized string in `@type` or a property name is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// `dtmi:` but not a valid DTMI.
    InvalidDtmi,
    /// A term or DTMI defined in scope, but meaningless here.
    Irrelevant,
    /// A term not defined in any context in scope.
    UndefinedTerm,
    /// Neither a DTMI nor a term (e.g. an http IRI).
    NotDtmiNorTerm,
}

fn classify_unknown(s: &str, known: bool) -> Unknown {
    if s.starts_with("dtmi:") {
        if dtmi::is_dtmi_any(s) {
            Unknown::Irrelevant
        } else {
            Unknown::InvalidDtmi
        }
    } else if known {
        Unknown::Irrelevant
    } else if s.contains(':') || s.is_empty() {
        Unknown::NotDtmiNorTerm
    } else {
        Unknown::UndefinedTerm
    }
}

/// The verdict DTDL gives an unknown co-type or property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Valid,
    /// Valid only when something undefined could define it.
    Tenable,
    Invalid,
}

fn cotype_verdict(version: Version, u: Unknown) -> Verdict {
    match (version, u) {
        (_, Unknown::InvalidDtmi) => Verdict::Invalid,
        (_, Unknown::Irrelevant) => Verdict::Tenable,
        (Version::V2, _) => Verdict::Valid,
        (Version::V3, Unknown::UndefinedTerm) => Verdict::Tenable,
        (Version::V3, Unknown::NotDtmiNorTerm) => Verdict::Invalid,
    }
}

fn property_verdict(version: Version, u: Unknown) -> Verdict {
    // An unknown property is only ever acceptable on an element with an
    // unknown co-type that could define it (the caller checks that).
    match (version, u) {
        (Version::V2, _) => Verdict::Tenable,
        (Version::V3, Unknown::InvalidDtmi | Unknown::NotDtmiNorTerm) => Verdict::Invalid,
        (Version::V3, _) => Verdict::Tenable,
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

    /// Processes an `@context` value. `outer` is the context in force around
    /// a nested `@context` (`None` for a top-level one); `may_switch` says
    /// whether a nested context may change the DTDL version (v3 properties
    /// that accept v2 elements).
    fn context(
        &mut self,
        value: &Value,
        outer: Option<&Ctx>,
        may_switch: bool,
        path: &JPath<'_>,
    ) -> Option<Ctx> {
        let entries: Vec<(&Value, JPath<'_>)> = match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (v, path.index(i)))
                .collect(),
            v => vec![(v, *path)],
        };
        let mut ctx = outer.cloned();
        let mut ok = true;
        let mut core_seen: Option<Version> = None;
        let mut extension_seen = false;
        for (entry, epath) in &entries {
            let Some(s) = entry.as_str() else {
                self.err(
                    code::CONTEXT_INVALID,
                    epath,
                    None,
                    format!(
                        "an @context entry must be a string (a context DTMI), found {}",
                        entry.kind()
                    ),
                );
                ok = false;
                continue;
            };
            let known = ContextId::from_dtmi(s);
            if let Some(core) = known.filter(|k| !k.is_extension()) {
                // A later DTDL context replaces an earlier one (JSON-LD
                // semantics); it must still precede every extension.
                let version = core.version();
                if extension_seen && core_seen.is_some_and(|v| v != version) {
                    self.err(
                        code::CONTEXT_INVALID,
                        epath,
                        None,
                        format!("the DTDL context \"{s}\" must come before any extension context"),
                    );
                    ok = false;
                    continue;
                }
                core_seen = Some(version);
                match &ctx {
                    Some(c) if c.version == version => {}
                    Some(c) if outer.is_some() && !may_switch => {
                        self.err(
                            code::CONTEXT_INVALID,
                            epath,
                            None,
                            format!(
                                "a DTDL v{} element cannot be defined here, inside DTDL v{}",
                                version.number(),
                                c.version.number()
                            ),
                        );
                        ok = false;
                    }
                    _ => {
                        let mut contexts = vec![core];
                        // Affiliate contexts given before the DTDL context (IoT Central) stay.
                        if let Some(c) = &ctx {
                            contexts.extend(
                                c.contexts
                                    .iter()
                                    .copied()
                                    .filter(|x| x.version() == version && x.is_extension()),
                            );
                        }
                        ctx = Some(Ctx {
                            version,
                            contexts,
                            undefined_ext: false,
                        });
                    }
                }
                continue;
            }
            if known == Some(ContextId::IotCentral2) && ctx.is_none() {
                // The IoT Central context implies DTDL v2 and may precede the DTDL context.
                ctx = Some(Ctx {
                    version: Version::V2,
                    contexts: vec![ContextId::CoreV2, ContextId::IotCentral2],
                    undefined_ext: false,
                });
                continue;
            }
            extension_seen = true;
            let Some(c) = ctx.as_mut() else {
                self.err(
                    code::CONTEXT_INVALID,
                    epath,
                    None,
                    format!("the DTDL context must come first in @context, before \"{s}\""),
                );
                ok = false;
                continue;
            };
            if let Some(ext) = known {
                if ext.version() != c.version {
                    self.err(
                        code::CONTEXT_INVALID,
                        epath,
                        None,
                        format!("\"{s}\" is not available in DTDL v{}", c.version.number()),
                    );
                    ok = false;
                } else if !c.contexts.contains(&ext) {
                    c.contexts.push(ext);
                }
                continue;
            }
            // Not a known context: it must be a DTMI with a version.
            let versioned = dtmi::check(s, Version::V2, false).is_ok()
                || (s.contains(';') && dtmi::check(s, Version::V3, false).is_ok());
            if !versioned {
                self.err(
                    code::CONTEXT_INVALID,
                    epath,
                    None,
                    format!("@context entry \"{s}\" is not a DTMI with a version"),
                );
                ok = false;
                continue;
            }
            if s.starts_with("dtmi:dtdl:context;") {
                self.err(
                    code::CONTEXT_INVALID,
                    epath,
                    None,
                    format!("\"{s}\" is not a DTDL version this engine supports (2 or 3)"),
                );
                ok = false;
                continue;
            }
            let allowed = match self.undefined {
                UndefinedExtensions::Allow => true,
                UndefinedExtensions::Deny => false,
                UndefinedExtensions::VersionDefault => c.version == Version::V2,
            };
            if allowed {
                c.undefined_ext = true;
            } else {
                self.err(
                    code::CONTEXT_UNDEFINED_EXTENSION,
                    epath,
                    None,
                    format!("\"{s}\" is not a known DTDL extension; allow undefined extensions to accept it"),
                );
                ok = false;
            }
        }
        if outer.is_none() && core_seen.is_none() && ok {
            self.err(
                code::CONTEXT_MISSING,
                path,
                None,
                "@context must name the DTDL version, e.g. \"dtmi:dtdl:context;3\"".to_owned(),
            );
            return None;
        }
        if ok { ctx } else { None }
    }

    /// Parses one element object. Returns its index, or `None` if it is
    /// unusable (errors already reported).
    fn element(
        &mut self,
        obj: &Value,
        path: &JPath<'_>,
        outer: &Ctx,
        slot: Option<Slot<'_>>,
        allowed: &[Class],
        top: bool,
    ) -> Option<ElemId> {
        let members = obj.as_object()?;
        // The element's identifier: its @id, or one generated from its parent's
        // (known up front so that diagnostics and children can use it).
        let generated = slot.map(|s| {
            let (base, version) = dtmi::split_version(s.parent_id);
            let name = obj.get("name").and_then(Value::as_str);
            let leaf = match (name, s.plural) {
                (Some(n), _) => format!(":_{}:__{}", s.prop, n),
                (None, true) => format!(":_{}:__{}", s.prop, s.index),
                (None, false) => format!(":_{}", s.prop),
            };
            format!("{base}{leaf}{version}")
        });
        let diag_id: Option<String> = obj
            .get("@id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| generated.clone());
        let explicit_id_str = diag_id.as_deref();

        // Duplicate member names.
        for (i, (k, _)) in members.iter().enumerate() {
            if members[..i].iter().any(|(k2, _)| k2 == k) {
                self.err(
                    code::JSON_DUPLICATE_MEMBER,
                    &path.key(k),
                    explicit_id_str,
                    format!("member \"{k}\" appears more than once"),
                );
            }
        }

        // Nested @context.
        let ctx_owned;
        let ctx = match (top, obj.get("@context")) {
            (false, Some(v)) => {
                let may_switch = outer.version == Version::V3
                    && slot.is_some_and(|s| accepts_v2_elements(s.prop));
                ctx_owned = self.context(v, Some(outer), may_switch, &path.key("@context"))?;
                &ctx_owned
            }
            _ => outer,
        };

        // @type: material class and co-types.
        let single_default = match slot {
            Some(s) if type_optional(s.range, ctx.version) => allowed.first().copied(),
            _ => None,
        };
        let mut class: Option<Class> = None;
        let mut semantic_type = None;
        let mut adjuncts = Vec::new();
        let mut open_cotypes = Vec::new();
        let mut type_ok = true;
        match obj.get("@type") {
            None => {
                if let Some(c) = single_default {
                    class = Some(c);
                } else {
                    self.err(
                        code::TYPE_MISSING,
                        path,
                        explicit_id_str,
                        format!("element has no @type; expected {}", class_list(allowed)),
                    );
                    return None;
                }
            }
            Some(t) => {
                let type_path = path.key("@type");
                let types: Vec<(&str, JPath<'_>)> = match t {
                    Value::String(s) => vec![(s.as_str(), type_path)],
                    Value::Array(items) if !items.is_empty() => {
                        let mut v = Vec::new();
                        for (i, it) in items.iter().enumerate() {
                            let tp = JPath::Index(&type_path, i);
                            match it.as_str() {
                                Some(s) => v.push((s, tp)),
                                None => {
                                    self.err(
                                        code::TYPE_INVALID,
                                        &tp,
                                        explicit_id_str,
                                        format!(
                                            "@type entries must be strings, found {}",
                                            it.kind()
                                        ),
                                    );
                                    type_ok = false;
                                }
                            }
                        }
                        v
                    }
                    other => {
                        self.err(
                            code::TYPE_INVALID,
                            &path.key("@type"),
                            explicit_id_str,
                            format!(
                                "@type must be a string or an array of strings, found {}",
                                other.kind()
                            ),
                        );
                        return None;
                    }
                };
                let mut seen_terms: Vec<(Sym, bool)> = Vec::new();
                for (s, tp) in &types {
                    let def = ctx.lookup(s);
                    if let Some(d) = def {
                        let by_dtmi = s.starts_with("dtmi:");
                        if seen_terms
                            .iter()
                            .any(|(sym, b)| *sym == d.sym && *b != by_dtmi)
                        {
                            // The same type given as term and as DTMI: allowed (a recommendation only).
                        }
                        seen_terms.push((d.sym, by_dtmi));
                    }
                    match def.map(|d| d.sym) {
                        Some(Sym::Class(c)) if allowed.contains(&c) => match class {
                            Some(prev) if prev != c => {
                                self.err(
                                    code::TYPE_INVALID,
                                    tp,
                                    explicit_id_str,
                                    format!(
                                        "@type names two element classes, {} and {}",
                                        prev.term(),
                                        c.term()
                                    ),
                                );
                                type_ok = false;
                            }
                            _ => class = Some(c),
                        },
                        Some(Sym::Class(c)) => {
                            self.err(
                                code::TYPE_NOT_ALLOWED,
                                tp,
                                explicit_id_str,
                                format!(
                                    "@type {} is not allowed here; expected {}",
                                    c.term(),
                                    class_list(allowed)
                                ),
                            );
                            type_ok = false;
                        }
                        Some(Sym::SemanticType(uc)) => {
                            if let Some(prev) = semantic_type {
                                let prev: SemanticCotype = prev;
                                if prev.term != def.map_or("", |d| d.term) {
                                    self.err(
                                        code::COTYPE_INVALID,
                                        tp,
                                        explicit_id_str,
                                        format!("an element may have only one semantic type; found {} and {s}", prev.term),
                                    );
                                    type_ok = false;
                                }
                            } else {
                                semantic_type = Some(SemanticCotype {
                                    term: def.map_or("", |d| d.term),
                                    unit_class: uc,
                                });
                            }
                        }
                        Some(Sym::Adjunct(a)) => {
                            if !adjuncts.contains(&a) {
                                adjuncts.push(a);
                            }
                        }
                        _ => {
                            let u = classify_unknown(s, def.is_some());
                            match cotype_verdict(ctx.version, u) {
                                Verdict::Valid => open_cotypes.push((*s).to_owned()),
                                Verdict::Tenable if ctx.undefined_ext => {
                                    open_cotypes.push((*s).to_owned());
                                }
                                Verdict::Tenable | Verdict::Invalid => {
                                    self.err(
                                        code::COTYPE_INVALID,
                                        tp,
                                        explicit_id_str,
                                        unknown_type_message(s, u),
                                    );
                                    type_ok = false;
                                }
                            }
                        }
                    }
                }
                if class.is_none() && type_ok {
                    self.err(
                        code::TYPE_MISSING,
                        &path.key("@type"),
                        explicit_id_str,
                        format!("@type must include one of {}", class_list(allowed)),
                    );
                    type_ok = false;
                }
            }
        }
        let class = class?;

        // @id.
        let mut id_ok = true;
        let (id, explicit_id) = match obj.get("@id") {
            Some(Value::String(s)) => {
                if !self.check_id(s, class, ctx.version, &path.key("@id")) {
                    id_ok = false;
                }
                (s.clone(), true)
            }
            Some(other) => {
                self.err(
                    code::ID_INVALID,
                    &path.key("@id"),
                    None,
                    format!("@id must be a string DTMI, found {}", other.kind()),
                );
                return None;
            }
            None => {
                let needs_id = top
                    || class == Class::Interface
                    || matches!(slot, Some(s) if s.range == Range::InterfaceSchemas);
                if needs_id {
                    self.err(
                        code::ID_MISSING,
                        path,
                        None,
                        format!("{} here must have an @id", class.term()),
                    );
                    return None;
                }
                (generated.clone().unwrap_or_default(), false)
            }
        };
        let _ = id_ok;

        let idx = self.out.elements.len();
        let top_idx = match slot {
            Some(s) => self.out.elements[s.parent].top,
            None => idx,
        };
        self.out.elements.push(Element {
            id,
            explicit_id,
            class,
            version: ctx.version,
            semantic_type,
            adjuncts,
            open_cotypes,
            props: Vec::new(),
            doc: self.doc,
            path: path.to_string(),
            parent: slot.map(|s| s.parent),
            parent_prop: slot.map(|s| s.prop),
            top: top_idx,
            contexts: ctx.contexts.clone(),
        });

        // Properties.
        let has_open = !self.out.elements[idx].open_cotypes.is_empty();
        let mut seen: Vec<(&'static str, bool)> = Vec::new();
        let mut props: Vec<PropValue> = Vec::new();
        for (key, value) in members {
            let kpath = path.key(key);
            match key.as_str() {
                "@id" | "@type" | "@context" => continue,
                k if k.starts_with('@') => {
                    if ctx.version == Version::V2 && k != "@graph" {
                        // DTDL v2 ignores other JSON-LD keywords (discouraged, not invalid).
                        continue;
                    }
                    self.err(
                        code::KEYWORD_INVALID,
                        &kpath,
                        explicit_id_str,
                        format!("JSON-LD keyword \"{k}\" is not allowed in DTDL"),
                    );
                    continue;
                }
                _ => {}
            }
            let def = ctx.lookup(key);
            let by_dtmi = key.starts_with("dtmi:");
            let pdef = match def.map(|d| d.sym) {
                Some(Sym::Prop(term)) => {
                    let elem = &self.out.elements[idx];
                    prop_def(
                        elem.class,
                        elem.version,
                        elem.semantic_type,
                        &elem.adjuncts,
                        term,
                    )
                }
                _ => None,
            };
            let Some(pdef) = pdef else {
                let u = classify_unknown(key, def.is_some());
                let verdict = property_verdict(ctx.version, u);
                let ok = match verdict {
                    Verdict::Valid => true,
                    Verdict::Tenable => has_open,
                    Verdict::Invalid => false,
                };
                if !ok {
                    self.err(
                        code::PROPERTY_UNKNOWN,
                        &kpath,
                        explicit_id_str,
                        format!(
                            "\"{key}\" is not a property of {}{}",
                            class.term(),
                            match u {
                                Unknown::InvalidDtmi => " (and not a valid DTMI)",
                                Unknown::NotDtmiNorTerm => " (it is neither a term nor a DTMI)",
                                _ => "",
                            }
                        ),
                    );
                }
                continue;
            };
            if let Some((_, prev_dtmi)) = seen.iter().find(|(t, _)| *t == pdef.term) {
                let msg = if *prev_dtmi != by_dtmi {
                    format!(
                        "property \"{}\" is given both by term and by DTMI",
                        pdef.term
                    )
                } else {
                    format!("property \"{}\" is given more than once", pdef.term)
                };
                self.err(code::PROPERTY_DUPLICATE, &kpath, explicit_id_str, msg);
                continue;
            }
            seen.push((pdef.term, by_dtmi));
            let key_static = match def {
                Some(d) if by_dtmi => d.dtmi,
                _ => pdef.term,
            };
            let items = self.values(idx, &pdef, value, &kpath, ctx, explicit_id_str);
            if let Some(items) = items {
                props.push(PropValue {
                    def: pdef,
                    items,
                    key: key_static,
                });
            }
        }

        // Required properties (of the class and of its co-types).
        let elem = &self.out.elements[idx];
        let required: Vec<PropDef> =
            all_props(elem.class, elem.version, elem.semantic_type, &elem.adjuncts)
                .into_iter()
                .filter(|d| d.required)
                .collect();
        for d in required {
            if !seen.iter().any(|(t, _)| *t == d.term) {
                self.err(
                    code::PROPERTY_REQUIRED,
                    path,
                    explicit_id_str,
                    format!("{} requires property \"{}\"", class.term(), d.term),
                );
            }
        }
        let _ = type_ok;

        self.out.elements[idx].props = props;
        Some(idx)
    }

    fn check_id(&mut self, s: &str, class: Class, version: Version, path: &JPath<'_>) -> bool {
        match dtmi::check(s, version, false) {
            Ok(()) => {}
            Err(DtmiError::SystemSegment) => {
                self.err(
                    code::ID_INVALID,
                    path,
                    None,
                    format!("@id \"{s}\" uses a segment starting with '_', which is reserved for generated identifiers"),
                );
                return false;
            }
            Err(DtmiError::Syntax) => {
                self.err(
                    code::ID_INVALID,
                    path,
                    None,
                    format!(
                        "@id \"{}\" is not a valid DTDL v{} DTMI",
                        truncate(s, 80),
                        version.number()
                    ),
                );
                return false;
            }
        }
        let max = if class == Class::Interface {
            limits::INTERFACE_ID_MAX
        } else {
            match version {
                Version::V2 => limits::ID_MAX_V2,
                Version::V3 => limits::ID_MAX_V3,
            }
        };
        if s.len() > max {
            self.err(
                code::ID_TOO_LONG,
                path,
                None,
                format!(
                    "@id of {} is {} characters long; the limit is {max}",
                    class.term(),
                    s.len()
                ),
            );
            return false;
        }
        if s.starts_with("dtmi:dtdl:") || s.starts_with("dtmi:standard:") {
            self.err(
                code::ID_RESERVED,
                path,
                None,
                format!("@id \"{s}\" uses a reserved prefix (dtmi:dtdl: and dtmi:standard: are reserved)"),
            );
            return false;
        }
        true
    }

    /// Parses the values of one property.
    fn values(
        &mut self,
        owner: ElemId,
        def: &PropDef,
        value: &Value,
        path: &JPath<'_>,
        ctx: &Ctx,
        id: Option<&str>,
    ) -> Option<Vec<Item>> {
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
                        "property \"{}\" takes a single value, found {}",
                        def.term, count
                    )
                } else {
                    format!(
                        "property \"{}\" takes at most {} values, found {}",
                        def.term, def.max, count
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
                    "property \"{}\" needs at least {} value(s), found {}",
                    def.term,
                    def.min.max(1),
                    count
                ),
            );
            return None;
        }
        let plural = def.max > 1;
        let mut items = Vec::with_capacity(count);
        let mut ok = true;
        self.leaf_values(
            owner, def, value, path, ctx, id, plural, &mut items, &mut ok,
        );
        ok.then_some(items)
    }

    /// Parses every leaf of a (possibly nested) array value, in order.
    #[allow(clippy::too_many_arguments)]
    fn leaf_values(
        &mut self,
        owner: ElemId,
        def: &PropDef,
        value: &Value,
        path: &JPath<'_>,
        ctx: &Ctx,
        id: Option<&str>,
        plural: bool,
        items: &mut Vec<Item>,
        ok: &mut bool,
    ) {
        match value {
            Value::Array(list) => {
                for (i, v) in list.iter().enumerate() {
                    self.leaf_values(owner, def, v, &path.index(i), ctx, id, plural, items, ok);
                }
            }
            v => {
                let index = items.len();
                match self.value(owner, def, v, path, ctx, id, index, plural) {
                    Some(item) => items.push(item),
                    None => *ok = false,
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn value(
        &mut self,
        owner: ElemId,
        def: &PropDef,
        v: &Value,
        path: &JPath<'_>,
        ctx: &Ctx,
        id: Option<&str>,
        index: usize,
        plural: bool,
    ) -> Option<Item> {
        match def.kind {
            Kind::Elements(range) => {
                self.element_value(owner, def, range, v, path, ctx, id, index, plural)
            }
            Kind::LangString(_) => None,
            Kind::DtmiLiteral => self.check_literal(def, v, path, ctx, id),
            _ => {
                let lit = self.literal(v, path, id, def.term, ctx.version)?;
                self.check_literal(def, lit, path, ctx, id)
            }
        }
    }

    /// Unwraps a literal: plain JSON or a value object `{"@value": x, "@type": "xsd:..."}`.
    fn literal<'v>(
        &mut self,
        v: &'v Value,
        path: &JPath<'_>,
        id: Option<&str>,
        term: &str,
        version: Version,
    ) -> Option<&'v Value> {
        let Value::Object(members) = v else {
            return Some(v);
        };
        let mut value = None;
        let mut ok = true;
        for (k, mv) in members {
            match k.as_str() {
                "@value" => value = Some(mv),
                "@type" => {}
                // DTDL v2 ignores JSON-LD keywords other than these three.
                k2 if version == Version::V2
                    && k2.starts_with('@')
                    && !matches!(k2, "@id" | "@context" | "@graph") => {}
                other => {
                    self.err(
                        code::LITERAL_INVALID,
                        &path.key(other),
                        id,
                        format!("a value object for \"{term}\" may hold only @value and @type, found \"{other}\""),
                    );
                    ok = false;
                }
            }
        }
        let Some(value) = value else {
            self.err(
                code::LITERAL_INVALID,
                path,
                id,
                format!(
                    "property \"{term}\" needs a literal value; an object must hold it in @value"
                ),
            );
            return None;
        };
        if let Some(t) = v.get("@type") {
            let name = match t {
                Value::String(s) => Some(s.as_str()),
                Value::Array(a) if a.len() == 1 => a[0].as_str(),
                _ => None,
            }
            .and_then(|s| {
                s.strip_prefix("xsd:")
                    .or_else(|| s.strip_prefix("http://www.w3.org/2001/XMLSchema#"))
            });
            let expected = match value {
                Value::String(_) => "string",
                Value::Bool(_) => "boolean",
                Value::Number(Number::Float(_)) => "double",
                Value::Number(_) => "integer",
                _ => "",
            };
            if name != Some(expected) {
                self.err(
                    code::LITERAL_INVALID,
                    &path.key("@type"),
                    id,
                    format!("the @type of the value object for \"{term}\" must be xsd:{expected}"),
                );
                ok = false;
            }
        }
        ok.then_some(value)
    }

    fn check_literal(
        &mut self,
        def: &PropDef,
        v: &Value,
        path: &JPath<'_>,
        ctx: &Ctx,
        id: Option<&str>,
    ) -> Option<Item> {
        let type_err = |p: &mut Self, expected: &str| {
            p.err(
                code::VALUE_TYPE,
                path,
                id,
                format!(
                    "property \"{}\" must be {expected}, found {}",
                    def.term,
                    v.excerpt(40)
                ),
            );
            None
        };
        match def.kind {
            Kind::Name => {
                let Some(s) = v.as_str() else {
                    return type_err(self, "a string");
                };
                let max = metamodel::name_max_len(ctx.version);
                if s.chars().count() > max {
                    self.err(
                        code::VALUE_TOO_LONG,
                        path,
                        id,
                        format!(
                            "name is {} characters long; the limit is {max}",
                            s.chars().count()
                        ),
                    );
                    return None;
                }
                if !metamodel::is_valid_name(s) {
                    self.err(
                        code::VALUE_PATTERN,
                        path,
                        id,
                        format!("name \"{}\" must start with a letter and contain only letters, digits and underscores, not ending in an underscore", truncate(s, 64)),
                    );
                    return None;
                }
                Some(Item::Str(s.to_owned()))
            }
            Kind::Str(max) => {
                let Some(s) = v.as_str() else {
                    return type_err(self, "a string");
                };
                if s.chars().count() > max {
                    self.err(
                        code::VALUE_TOO_LONG,
                        path,
                        id,
                        format!(
                            "\"{}\" is {} characters long; the limit is {max}",
                            def.term,
                            s.chars().count()
                        ),
                    );
                    return None;
                }
                Some(Item::Str(s.to_owned()))
            }
            Kind::Bool => match v {
                Value::Bool(b) => Some(Item::Bool(*b)),
                _ => type_err(self, "a boolean"),
            },
            Kind::Int { min, max } => {
                let Value::Number(n) = v else {
                    return type_err(self, "an integer");
                };
                let Some(i) = n.as_i64() else {
                    return type_err(self, "an integer");
                };
                if i < min || i > max {
                    self.err(
                        code::VALUE_RANGE,
                        path,
                        id,
                        if min == max {
                            format!("\"{}\" must be {min}, found {i}", def.term)
                        } else if max == i64::from(i32::MAX) {
                            format!("\"{}\" must be at least {min}, found {i}", def.term)
                        } else {
                            format!(
                                "\"{}\" must be between {min} and {max}, found {i}",
                                def.term
                            )
                        },
                    );
                    return None;
                }
                Some(Item::Int(i))
            }
            Kind::IntOrString => match v {
                Value::String(s) => Some(Item::Str(s.clone())),
                Value::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
                    Some(i) => Some(Item::Int(i64::from(i))),
                    None => type_err(self, "an integer or a string"),
                },
                _ => type_err(self, "an integer or a string"),
            },
            Kind::DtmiLiteral => {
                let Some(s) = v.as_str() else {
                    return type_err(self, "a DTMI string");
                };
                // JSON-LD expands a term given as an identifier to its DTMI.
                let s = match ctx.term(s) {
                    Some(d) if !s.starts_with("dtmi:") => d.dtmi,
                    _ => s,
                };
                if dtmi::check(s, ctx.version, false).is_err() || s.len() > limits::ID_MAX_V2 {
                    self.err(
                        code::REFERENCE_INVALID,
                        path,
                        id,
                        format!(
                            "\"{}\" must be a DTMI, found \"{}\"",
                            def.term,
                            truncate(s, 80)
                        ),
                    );
                    return None;
                }
                Some(Item::Str(s.to_owned()))
            }
            Kind::LangString(_) | Kind::Elements(_) => None,
        }
    }

    /// A localizable string: a plain string (English), a language map
    /// `{"en": "...", "de": "..."}`, or an array of strings and
    /// `{"@value": "...", "@language": "..."}` objects. Each language once.
    fn lang_string(
        &mut self,
        v: &Value,
        max: usize,
        path: &JPath<'_>,
        id: Option<&str>,
        term: &str,
        version: Version,
    ) -> Option<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut ok = true;
        // (language, text, path) before length and uniqueness checks.
        let mut entries: Vec<(String, &str, JPath<'_>)> = Vec::new();
        match v {
            Value::String(s) => entries.push(("en".to_owned(), s, *path)),
            Value::Object(members) => {
                for (lang, text) in members {
                    let mpath = path.key(lang);
                    if !is_language_tag(lang) {
                        self.err(
                            code::LANGSTRING_INVALID,
                            &mpath,
                            id,
                            format!("\"{lang}\" is not a language tag"),
                        );
                        ok = false;
                        continue;
                    }
                    match text.as_str() {
                        Some(t) => entries.push((lang.clone(), t, mpath)),
                        None => {
                            self.err(
                                code::LANGSTRING_INVALID,
                                &mpath,
                                id,
                                format!(
                                    "the \"{lang}\" text of \"{term}\" must be a string, found {}",
                                    text.kind()
                                ),
                            );
                            ok = false;
                        }
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ipath = path.index(i);
                    match item {
                        Value::String(s) => entries.push(("en".to_owned(), s, ipath)),
                        Value::Object(members) => {
                            let mut text = None;
                            let mut lang = None;
                            for (k, mv) in members {
                                match k.as_str() {
                                    "@value" => match mv.as_str() {
                                        Some(s) => text = Some(s),
                                        None => {
                                            self.err(
                                                code::LANGSTRING_INVALID,
                                                &ipath.key("@value"),
                                                id,
                                                format!("@value of \"{term}\" must be a string"),
                                            );
                                            ok = false;
                                        }
                                    },
                                    "@language" => {
                                        match mv.as_str() {
                                            Some(s) if is_language_tag(s) => lang = Some(s),
                                            _ => {
                                                self.err(
                                                code::LANGSTRING_INVALID,
                                                &ipath.key("@language"),
                                                id,
                                                format!("@language of \"{term}\" must be a language tag"),
                                            );
                                                ok = false;
                                            }
                                        }
                                    }
                                    k2 if version == Version::V2
                                        && k2.starts_with('@')
                                        && !matches!(k2, "@id" | "@context" | "@graph") => {}
                                    other => {
                                        self.err(
                                            code::LANGSTRING_INVALID,
                                            &ipath.key(other),
                                            id,
                                            format!("a \"{term}\" entry may hold only @value and @language, found \"{other}\""),
                                        );
                                        ok = false;
                                    }
                                }
                            }
                            match text {
                                Some(t) => {
                                    entries.push((lang.unwrap_or("en").to_owned(), t, ipath))
                                }
                                None => {
                                    self.err(
                                        code::LANGSTRING_INVALID,
                                        &ipath,
                                        id,
                                        format!("a \"{term}\" entry must have @value"),
                                    );
                                    ok = false;
                                }
                            }
                        }
                        other => {
                            self.err(
                                code::LANGSTRING_INVALID,
                                &ipath,
                                id,
                                format!(
                                    "\"{term}\" entries must be strings or objects, found {}",
                                    other.kind()
                                ),
                            );
                            ok = false;
                        }
                    }
                }
            }
            other => {
                self.err(
                    code::LANGSTRING_INVALID,
                    path,
                    id,
                    format!(
                        "\"{term}\" must be a string, a language map or an array, found {}",
                        other.kind()
                    ),
                );
                return None;
            }
        }
        for (lang, text, epath) in entries {
            let len = text.chars().count();
            if len > max {
                self.err(
                    code::VALUE_TOO_LONG,
                    &epath,
                    id,
                    format!("\"{term}\" is {len} characters long; the limit is {max}"),
                );
                ok = false;
            }
            if out.iter().any(|(l, _)| l.eq_ignore_ascii_case(&lang)) {
                self.err(
                    code::LANGSTRING_INVALID,
                    &epath,
                    id,
                    format!("\"{term}\" has two texts for language \"{lang}\" (a text without a language counts as \"en\")"),
                );
                ok = false;
            }
            out.push((lang, text.to_owned()));
        }
        ok.then_some(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn element_value(
        &mut self,
        owner: ElemId,
        def: &PropDef,
        range: Range,
        v: &Value,
        path: &JPath<'_>,
        ctx: &Ctx,
        id: Option<&str>,
        index: usize,
        plural: bool,
    ) -> Option<Item> {
        match v {
            Value::String(s) => self.element_reference(owner, def, range, s, path, ctx, id),
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
                    plural,
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

    #[allow(clippy::too_many_arguments)]
    fn element_reference(
        &mut self,
        owner: ElemId,
        def: &PropDef,
        range: Range,
        s: &str,
        path: &JPath<'_>,
        ctx: &Ctx,
        id: Option<&str>,
    ) -> Option<Item> {
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
                Ok(()) if s.len() <= limits::ID_MAX_V3 => return Some(Item::Ref(s.to_owned())),
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
        let _ = owner;
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
pub(crate) fn accepts_v2_elements(prop: &str) -> bool {
    matches!(
        prop,
        "contents" | "extends" | "schema" | "elementSchema" | "properties"
    )
}

/// How many non-array values a (possibly nested) array holds.
fn leaf_count(v: &Value) -> usize {
    match v {
        Value::Array(items) => items.iter().map(leaf_count).sum(),
        _ => 1,
    }
}

/// Ranges whose values must be references or terms, never inline objects.
fn range_id_required(range: Range) -> bool {
    matches!(
        range,
        Range::EnumValueSchema | Range::StringSchema | Range::CommandType | Range::Unit
    )
}

/// Ranges whose elements may omit `@type` (the class is implied).
fn type_optional(range: Range, _version: Version) -> bool {
    match range {
        Range::EnumValues | Range::Fields | Range::MapKey | Range::MapValue => true,
        Range::Request | Range::Response => true,
        Range::RelationshipProperties => false,
        _ => false,
    }
}

fn allowed_values_hint(range: Range) -> &'static str {
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

/// The properties an element may have: its class's and its co-types'.
pub fn all_props(
    class: Class,
    version: Version,
    semantic: Option<SemanticCotype>,
    adjuncts: &[Adjunct],
) -> Vec<PropDef> {
    let mut v: Vec<PropDef> = metamodel::properties(class, version).to_vec();
    if semantic.is_some() {
        v.push(UNIT_REQUIRED);
    }
    for a in adjuncts {
        v.extend_from_slice(adjunct_props(*a));
    }
    v
}

fn prop_def(
    class: Class,
    version: Version,
    semantic: Option<SemanticCotype>,
    adjuncts: &[Adjunct],
    term: &str,
) -> Option<PropDef> {
    if let Some(d) = metamodel::properties(class, version)
        .iter()
        .find(|d| d.term == term)
    {
        return Some(*d);
    }
    if term == "unit" {
        if semantic.is_some() {
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

fn class_list(classes: &[Class]) -> String {
    let names: Vec<&str> = classes.iter().map(|c| c.term()).collect();
    match names.as_slice() {
        [] => "nothing".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn unknown_type_message(s: &str, u: Unknown) -> String {
    match u {
        Unknown::InvalidDtmi => format!("@type \"{}\" is not a valid DTMI", truncate(s, 80)),
        Unknown::Irrelevant => format!("@type \"{}\" cannot co-type this element", truncate(s, 80)),
        Unknown::UndefinedTerm => format!(
            "@type \"{}\" is not defined by any context in scope (an extension's @context may be missing)",
            truncate(s, 80)
        ),
        Unknown::NotDtmiNorTerm => {
            format!("@type \"{}\" is neither a term nor a DTMI", truncate(s, 80))
        }
    }
}

/// A language tag as DTDL's reference parser accepts it: a language of two to
/// four lower-case letters, then optionally a title-case script (`Hant`) and
/// a region (`TW`, or three digits such as `155`): `en`, `zh-Hant-TW`, `fr-155`.
pub fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    let lang = parts.next().unwrap_or_default();
    if !(2..=4).contains(&lang.len()) || !lang.bytes().all(|b| b.is_ascii_lowercase()) {
        return false;
    }
    let mut next = parts.next();
    if let Some(script) = next {
        let b = script.as_bytes();
        if b.len() == 4 && b[0].is_ascii_uppercase() && b[1..].iter().all(u8::is_ascii_lowercase) {
            next = parts.next();
        }
    }
    if let Some(region) = next {
        let b = region.as_bytes();
        let upper = b.len() == 2 && b.iter().all(u8::is_ascii_uppercase);
        let digits = b.len() == 3 && b.iter().all(u8::is_ascii_digit);
        if !(upper || digits) {
            return false;
        }
        next = parts.next();
    }
    next.is_none()
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}...")
    }
}
