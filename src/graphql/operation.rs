//! What the executor does around the engine for every operation: checks
//! of the parsed document before anything runs (the alias limit), a code
//! on every error the engine reports without one, and per-operation
//! metrics and logs (here rather than in engine extensions, which would
//! wrap every field of every answer in more futures).

use std::time::Instant;

use async_graphql::parser::types::{DocumentOperations, Selection, SelectionSet};
use async_graphql::{Request, Response, ServerError};

use super::errors::write;
use crate::codes::Code;
use crate::metrics::Metrics;

/// Sets `BAD_REQUEST` on errors that have no code (parse, validation and
/// limit errors from the GraphQL engine carry none of their own).
pub(super) fn code_all(errors: &mut [ServerError]) {
    for e in errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            write(ext, Code::InvalidDocument);
        }
    }
}

/// Whether the engine refused the request before executing it (the
/// document did not parse or validate, variables did not coerce): no
/// data, and only errors the engine made itself (without a code, which
/// every resolver error carries) and about no field (no path).
pub(super) fn engine_refused(resp: &Response) -> bool {
    resp.data == async_graphql::Value::Null
        && !resp.errors.is_empty()
        && resp.errors.iter().all(|e| {
            e.path.is_empty()
                && e.extensions
                    .as_ref()
                    .is_none_or(|x| x.get("code").is_none())
        })
}

/// A finished operation's response with every error coded; counted and
/// logged with its duration and error codes.
pub(super) fn finish(mut resp: Response, started: Instant, metrics: &Metrics) -> Response {
    code_all(&mut resp.errors);
    let codes: Vec<String> = resp
        .errors
        .iter()
        .filter_map(|e| match e.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .collect();
    metrics.graphql_request(started.elapsed().as_secs_f64(), &codes);
    tracing::info!(
        duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        errors = ?codes,
        "graphql request"
    );
    resp
}

/// Parses the request's document (kept in the request: the engine does not
/// parse it again) and refuses it when it has more than `max_aliases`
/// aliased fields (fragments included), before anything runs: aliases
/// multiply the work of one field without deepening the query, so depth
/// and complexity limits alone let a small document ask for thousands of
/// lookups. A document that does not parse is left to the engine, which
/// reports why.
///
/// Answers the name the operation is logged under: the one asked for,
/// else the document's only operation's, else `-`.
pub(super) fn check_document(
    request: &mut Request,
    max_aliases: usize,
) -> Result<String, ServerError> {
    let asked = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return Ok(asked.unwrap_or_else(|| "-".to_owned()));
    };
    let n: usize = doc
        .operations
        .iter()
        .map(|(_, op)| aliases(&op.node.selection_set.node))
        .chain(
            doc.fragments
                .values()
                .map(|f| aliases(&f.node.selection_set.node)),
        )
        .sum();
    if n > max_aliases {
        let mut e = ServerError::new(
            format!("the document has {n} aliases; at most {max_aliases} are allowed"),
            None,
        );
        let mut ext = async_graphql::ErrorExtensionValues::default();
        write(&mut ext, Code::TooManyAliases);
        e.extensions = Some(ext);
        return Err(e);
    }
    let only = match &doc.operations {
        DocumentOperations::Multiple(ops) if ops.len() == 1 => {
            ops.keys().next().map(|n| n.to_string())
        }
        _ => None,
    };
    Ok(asked.or(only).unwrap_or_else(|| "-".to_owned()))
}

fn aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|s| match &s.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + aliases(&f.node.selection_set.node)
            }
            Selection::InlineFragment(i) => aliases(&i.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}
