//! One element object: its nested `@context`, `@type` (material class and
//! co-types), `@id` (given or generated), and its properties, each resolved
//! from a term or a DTMI against the metamodel. Unknown co-types and
//! properties get DTDL's per-version verdict here.

use super::literal::{truncate, v2_ignores_keyword};
use super::values::{At, accepts_v2_elements, type_optional};
use super::{Ctx, ElemId, Element, JPath, Parser, PropValue, SemanticCotype, Slot};
use crate::dtdl::diag::code;
use crate::dtdl::dtmi::{self, DtmiError, Version};
use crate::dtdl::json::Value;
use crate::dtdl::metamodel::{self, Class, PropDef, Range, limits};
use crate::dtdl::vocab::Sym;

impl Parser {
    /// Parses one element object. Returns its index, or `None` if it is
    /// unusable (errors already reported).
    pub(super) fn element(
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
                }
            }
        }
        let class = class?;

        // @id.
        let (id, explicit_id) = match obj.get("@id") {
            Some(Value::String(s)) => {
                // An invalid @id is reported; the element is still parsed for more errors.
                self.check_id(s, class, ctx.version, &path.key("@id"));
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
                    if v2_ignores_keyword(ctx.version, k) {
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
                    metamodel::element_prop(
                        elem.class,
                        elem.version,
                        elem.semantic_type.is_some(),
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
            let at = At {
                owner: idx,
                def: &pdef,
                ctx,
                id: explicit_id_str,
            };
            let items = self.values(at, value, &kpath);
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
        let required: Vec<PropDef> = metamodel::element_props(
            elem.class,
            elem.version,
            elem.semantic_type.is_some(),
            &elem.adjuncts,
        )
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

        self.out.elements[idx].props = props;
        Some(idx)
    }

    pub(super) fn check_id(
        &mut self,
        s: &str,
        class: Class,
        version: Version,
        path: &JPath<'_>,
    ) -> bool {
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
            limits::ID_MAX
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

/// The verdict DTDL gives an unknown co-type or property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Valid,
    /// Valid only when something undefined could define it.
    Tenable,
    Invalid,
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
