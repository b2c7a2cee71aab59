//! Store errors as GraphQL errors. Every error carries a stable
//! `extensions.code` (`NOT_FOUND`, `VALIDATION_FAILED`, `VERSION_CONFLICT`,
//! `MODEL_NOT_FOUND`, `BAD_REQUEST`, `STORE_UNAVAILABLE`, `INTERNAL`) and the finer store code in
//! `extensions.reason`. Internal details are logged, never returned.

use std::time::Instant;

use async_graphql::parser::types::{DocumentOperations, Selection, SelectionSet};
use async_graphql::{Error, ErrorExtensions, Request, Response, ServerError};

use crate::metrics::Metrics;

use crate::store::StoreError;
use crate::twin::TwinError;

/// The GraphQL error for a store error.
pub fn store_error(e: &StoreError) -> Error {
    let twin = match e {
        StoreError::Batch(b) => Some((&b.error, Some(b.index))),
        StoreError::Twin(t) => Some((t, None)),
        _ => None,
    };
    let (code, message) = match (e, twin) {
        (_, Some((t, _))) => (twin_code(t), e.to_string()),
        (StoreError::Pruned(_), _) => ("BAD_REQUEST", e.to_string()),
        (StoreError::Forbidden(why), _) => ("FORBIDDEN", format!("forbidden: {why}")),
        (StoreError::Closed, _) => ("INTERNAL", "the server is shutting down".to_owned()),
        (StoreError::Unavailable(why), _) => {
            tracing::warn!(error = %why, "store unavailable");
            (
                "STORE_UNAVAILABLE",
                "the twin store is unavailable; retry later".to_owned(),
            )
        }
        _ => {
            tracing::error!(error = %e, "store failure");
            ("INTERNAL", "internal error".to_owned())
        }
    };
    let reason = e.code();
    Error::new(message).extend_with(|_, ext| {
        ext.set("code", code);
        ext.set("reason", reason);
        if let Some((t, index)) = twin {
            if let Some(i) = index {
                ext.set("operation", i64::try_from(i).unwrap_or(i64::MAX));
            }
            match t {
                TwinError::Invalid { path, .. } => ext.set("path", path.as_str()),
                TwinError::Conflict { current, .. } => {
                    ext.set(
                        "currentVersion",
                        i64::try_from(*current).unwrap_or(i64::MAX),
                    );
                }
                _ => {}
            }
        }
    })
}

fn twin_code(t: &TwinError) -> &'static str {
    match t {
        TwinError::NotFound(_) | TwinError::RelationshipNotFound { .. } => "NOT_FOUND",
        TwinError::UnknownModel(_) => "MODEL_NOT_FOUND",
        TwinError::Conflict { .. } => "VERSION_CONFLICT",
        TwinError::Invalid { .. }
        | TwinError::Multiplicity { .. }
        | TwinError::Containment { .. } => "VALIDATION_FAILED",
        _ => "BAD_REQUEST",
    }
}

/// A request the API cannot take (bad arguments).
pub fn bad_request(message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, ext| ext.set("code", "BAD_REQUEST"))
}

/// Something the request names does not exist.
pub fn not_found(message: impl Into<String>, reason: &'static str) -> Error {
    Error::new(message.into()).extend_with(move |_, ext| {
        ext.set("code", "NOT_FOUND");
        ext.set("reason", reason);
    })
}

/// Sets `BAD_REQUEST` on errors that have no code (parse, validation and
/// limit errors from the GraphQL engine carry none of their own).
pub fn code_all(errors: &mut [ServerError]) {
    for e in errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", "BAD_REQUEST");
        }
    }
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
        ext.set("code", "BAD_REQUEST");
        ext.set("reason", "too_many_aliases");
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
