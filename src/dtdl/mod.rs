//! The DTDL v2/v3 language engine: documents in, a resolved model set out.
//!
//! Flow: [`json`] parses bytes (keeping member order, duplicates and the
//! integer/double distinction) → [`parse`] walks each document against the
//! [`metamodel`] and the [`vocab`]ularies into raw elements → [`rules`]
//! checks everything that spans elements and resolves references →
//! [`model`] lowers the result into the typed, flattened [`ModelSet`] that
//! the rest of twingraph uses. [`load`] reads files, folders and device
//! model repositories. [`datatypes`] holds the lexical rules of the temporal
//! primitive schemas.
//!
//! Invariant: a [`ModelSet`] exists only for a model set with no errors and
//! no unresolved references (parse, don't validate).

pub mod datatypes;
pub mod diag;
pub mod dtmi;
pub mod json;
pub mod load;
pub mod metamodel;
pub mod model;
pub mod parse;
pub mod rules;
pub mod vocab;

use std::sync::Arc;

pub use diag::Diagnostic;
pub use dtmi::Version;
pub use model::ModelSet;
pub use parse::UndefinedExtensions;

/// How to parse a model set.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub undefined_extensions: UndefinedExtensions,
}

/// One source document: a name for diagnostics and its bytes.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: Arc<str>,
    pub text: Vec<u8>,
}

impl Source {
    pub fn new(name: impl Into<Arc<str>>, text: impl Into<Vec<u8>>) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// The result of checking a model set.
#[derive(Debug)]
pub struct Outcome {
    /// The resolved model, when there are no errors and nothing is unresolved.
    pub model: Option<ModelSet>,
    /// Every error found, in document order.
    pub diagnostics: Vec<Diagnostic>,
    /// DTMIs referenced but defined nowhere in the set.
    pub unresolved: Vec<String>,
}

impl Outcome {
    /// Valid and complete.
    pub fn is_ok(&self) -> bool {
        self.model.is_some()
    }
}

/// Parses, checks and resolves a set of documents as one model set.
pub fn check(sources: &[Source], options: &Options) -> Outcome {
    let mut diagnostics = Vec::new();
    let mut docs = Vec::with_capacity(sources.len());
    for s in sources {
        match json::parse(&s.text) {
            Ok(v) => docs.push((s.name.clone(), v)),
            Err(e) => diagnostics.push(Diagnostic {
                code: diag::code::JSON_SYNTAX,
                file: s.name.clone(),
                path: format!("line {} column {}", e.line, e.column),
                dtmi: None,
                message: format!("not valid JSON: {}", e.message),
            }),
        }
    }
    check_values(docs, diagnostics, options)
}

/// Like [`check`], for documents already parsed as JSON.
pub fn check_values(
    docs: Vec<(Arc<str>, json::Value)>,
    mut diagnostics: Vec<Diagnostic>,
    options: &Options,
) -> Outcome {
    let mut parsed = parse::parse_documents(&docs, options.undefined_extensions);
    let checked = rules::check(&mut parsed);
    diagnostics.append(&mut parsed.diags);
    let mut unresolved: Vec<String> = checked.unresolved.iter().map(|(d, _)| d.clone()).collect();
    unresolved.sort();
    unresolved.dedup();
    let model = if diagnostics.is_empty() && unresolved.is_empty() {
        Some(model::lower(&parsed, &checked))
    } else {
        None
    };
    Outcome {
        model,
        diagnostics,
        unresolved,
    }
}
