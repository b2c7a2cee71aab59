//! Literal values: plain JSON or `{"@value", "@type"}` value objects, checked
//! against their property's kind (names, strings, integers, booleans, DTMIs),
//! and localizable strings in all their forms.

use super::{Ctx, Item, JPath, Parser};
use crate::dtdl::diag::code;
use crate::dtdl::dtmi::{self, Version};
use crate::dtdl::json::{Number, Value};
use crate::dtdl::metamodel::{self, Kind, PropDef, limits};

impl Parser {
    /// Unwraps a literal: plain JSON or a value object `{"@value": x, "@type": "xsd:..."}`.
    pub(super) fn literal<'v>(
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
                k2 if v2_ignores_keyword(version, k2) => {}
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

    pub(super) fn check_literal(
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
                if dtmi::check(s, ctx.version, false).is_err() || s.len() > limits::ID_MAX {
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
    pub(super) fn lang_string(
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
                                    k2 if v2_ignores_keyword(version, k2) => {}
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

/// DTDL v2 ignores JSON-LD keywords other than `@id`, `@context` and
/// `@graph` (discouraged, not invalid); v3 rejects them.
pub(super) fn v2_ignores_keyword(version: Version, k: &str) -> bool {
    version == Version::V2 && k.starts_with('@') && !matches!(k, "@id" | "@context" | "@graph")
}
