//! Store errors as GraphQL errors. Every error carries a stable
//! `extensions.code` (`NOT_FOUND`, `VALIDATION_FAILED`, `VERSION_CONFLICT`,
//! `MODEL_NOT_FOUND`, `BAD_REQUEST`, `STORE_UNAVAILABLE`, `INTERNAL`) and the finer store code in
//! `extensions.reason`. Internal details are logged, never returned.

use async_graphql::{Error, ErrorExtensions};

use crate::rollout::RolloutError;
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

/// The GraphQL error for a refused configuration or rollout request.
pub(super) fn rollout_error(e: &RolloutError) -> Error {
    match e {
        RolloutError::Store(s) => store_error(s),
        RolloutError::Invalid { path, .. } | RolloutError::InvalidRollout { path, .. } => {
            let path = path.clone();
            Error::new(e.to_string()).extend_with(move |_, ext| {
                ext.set("code", e.code());
                ext.set("path", path.as_str());
            })
        }
        _ => Error::new(e.to_string()).extend_with(|_, ext| ext.set("code", e.code())),
    }
}
