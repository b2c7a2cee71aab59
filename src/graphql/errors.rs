//! Store errors as GraphQL errors. Every error carries a stable
//! `extensions.code` (`NOT_FOUND`, `VALIDATION_FAILED`, `VERSION_CONFLICT`,
//! `MODEL_NOT_FOUND`, `BAD_REQUEST`, `STORE_UNAVAILABLE`, `INTERNAL`) and the finer store code in
//! `extensions.reason`. Internal details are logged, never returned.

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextRequest, NextSubscribe,
};
use async_graphql::{Error, ErrorExtensions, Response, ServerError};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

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

/// Gives every error a code: parse, validation and limit errors from the
/// GraphQL engine carry none of their own and become `BAD_REQUEST`. Also logs
/// each operation with its name, duration and error codes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coded;

impl ExtensionFactory for Coded {
    fn create(&self) -> std::sync::Arc<dyn Extension> {
        std::sync::Arc::new(Coded)
    }
}

/// Sets `BAD_REQUEST` on errors that have no code.
pub fn code_all(errors: &mut [ServerError]) {
    for e in errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", "BAD_REQUEST");
        }
    }
}

#[async_trait::async_trait]
impl Extension for Coded {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = std::time::Instant::now();
        let mut resp = next.run(ctx).await;
        code_all(&mut resp.errors);
        let codes: Vec<String> = resp
            .errors
            .iter()
            .filter_map(|e| match e.extensions.as_ref()?.get("code")? {
                async_graphql::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            })
            .collect();
        if let Some(m) = ctx.data_opt::<std::sync::Arc<crate::metrics::Metrics>>() {
            m.graphql_request(started.elapsed().as_secs_f64(), &codes);
        }
        tracing::info!(
            duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            errors = ?codes,
            "graphql request"
        );
        resp
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        use tracing::Instrument;
        let span = tracing::info_span!("operation", name = operation_name.unwrap_or("-"));
        next.run(ctx, operation_name).instrument(span).await
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut r| {
                code_all(&mut r.errors);
                r
            })
            .boxed()
    }
}

/// Refuses documents with more than `max` aliased fields (fragments
/// included) before anything runs: aliases multiply the work of one field
/// without deepening the query, so depth and complexity limits alone let a
/// small document ask for thousands of lookups.
#[derive(Debug, Clone, Copy)]
pub struct AliasLimit(pub usize);

impl ExtensionFactory for AliasLimit {
    fn create(&self) -> std::sync::Arc<dyn Extension> {
        std::sync::Arc::new(*self)
    }
}

fn aliases(set: &async_graphql::parser::types::SelectionSet) -> usize {
    use async_graphql::parser::types::Selection;
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

#[async_trait::async_trait]
impl Extension for AliasLimit {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &async_graphql::Variables,
        next: async_graphql::extensions::NextParseQuery<'_>,
    ) -> async_graphql::ServerResult<async_graphql::parser::types::ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
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
        if n > self.0 {
            let mut e = ServerError::new(
                format!(
                    "the document has {n} aliases; at most {} are allowed",
                    self.0
                ),
                None,
            );
            let mut ext = async_graphql::ErrorExtensionValues::default();
            ext.set("code", "BAD_REQUEST");
            ext.set("reason", "too_many_aliases");
            e.extensions = Some(ext);
            return Err(e);
        }
        Ok(doc)
    }
}
