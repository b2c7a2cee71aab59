//! Errors as GraphQL errors: every one is a row of the error table
//! ([`crate::codes`]) whose `extensions.code` and `extensions.reason`
//! [`write`] sets, the only place that does; some add details (`path`,
//! `currentVersion`, `operation`, `lastSequence`). Internal details are
//! logged, never returned.

use async_graphql::{Error, ErrorExtensionValues, ErrorExtensions};

use crate::alarms::AlarmError;
use crate::codes::Code;
use crate::devices::DeviceError;
use crate::rollout::RolloutError;
use crate::store::StoreError;
use crate::twin::TwinError;

/// Sets the extensions of `code` (the only writer of `code` and `reason`).
pub(super) fn write(ext: &mut ErrorExtensionValues, code: Code) {
    for (key, value) in code.extensions() {
        ext.set(key, value);
    }
}

/// An error of `code` saying `message`.
pub fn error(code: Code, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(move |_, ext| write(ext, code))
}

/// An error of `code` saying `message`, with more extensions from `more`.
pub(super) fn error_with(
    code: Code,
    message: impl Into<String>,
    more: impl Fn(&mut ErrorExtensionValues) + Send + Sync + 'static,
) -> Error {
    Error::new(message.into()).extend_with(move |_, ext| {
        write(ext, code);
        more(ext);
    })
}

/// An argument the API cannot take.
pub fn bad_request(message: impl Into<String>) -> Error {
    error(Code::InvalidArgument, message)
}

/// Something the request names does not exist.
pub fn not_found(message: impl Into<String>, code: Code) -> Error {
    error(code, message)
}

/// The GraphQL error for a store error, as a request of one operation (or
/// several the client did not list itself) sees it: about the twin, not
/// about an operation's place in a batch.
pub fn store_error(e: &StoreError) -> Error {
    store_error_as(e, false)
}

/// The GraphQL error for a store error of the `batch` mutation: the
/// message and `extensions.operation` say which of the client's
/// operations failed.
pub(super) fn batch_store_error(e: &StoreError) -> Error {
    store_error_as(e, true)
}

fn store_error_as(e: &StoreError, in_batch: bool) -> Error {
    let code = e.code();
    let (twin, index) = match e {
        StoreError::Batch(b) => (Some(&b.error), Some(b.index)),
        StoreError::Twin(t) => (Some(t), None),
        _ => (None, None),
    };
    let message = match (e, twin) {
        (StoreError::Batch(b), _) if in_batch => b.to_string(),
        (_, Some(t)) => t.to_string(),
        (StoreError::Pruned(_), _) => e.to_string(),
        (StoreError::Forbidden(why), _) => format!("forbidden: {why}"),
        (StoreError::Closed, _) => "the server is shutting down".to_owned(),
        (StoreError::Unavailable(why), _) => {
            tracing::warn!(error = %why, "store unavailable");
            format!("the twin store is unavailable ({why}); retry later")
        }
        (StoreError::Timeout(why), _) => {
            tracing::warn!(error = %why, "store timeout");
            format!("the twin store timed out: {why}")
        }
        _ => {
            tracing::error!(error = %e, "store failure");
            "internal error".to_owned()
        }
    };
    let index = index.filter(|_| in_batch);
    let details = match twin {
        Some(TwinError::Invalid { path, .. }) => Detail::Path(path.clone()),
        Some(TwinError::Conflict { current, .. }) => Detail::Version(*current),
        _ => Detail::None,
    };
    error_with(code, message, move |ext| {
        if let Some(i) = index {
            ext.set("operation", i64::try_from(i).unwrap_or(i64::MAX));
        }
        match &details {
            Detail::Path(path) => ext.set("path", path.as_str()),
            Detail::Version(v) => ext.set("currentVersion", i64::try_from(*v).unwrap_or(i64::MAX)),
            Detail::None => {}
        }
    })
}

/// What a twin error adds to its extensions.
enum Detail {
    Path(String),
    Version(u64),
    None,
}

/// The GraphQL error for a refused configuration or rollout request.
pub(super) fn rollout_error(e: &RolloutError) -> Error {
    match e {
        RolloutError::Store(s) => store_error(s),
        RolloutError::Invalid { path, .. } | RolloutError::InvalidRollout { path, .. } => {
            let path = path.clone();
            error_with(e.code(), e.to_string(), move |ext| {
                ext.set("path", path.as_str())
            })
        }
        _ => error(e.code(), e.to_string()),
    }
}

/// The GraphQL error for a refused alarm request (`extensions.path`
/// names the offending part of an invalid one).
pub(super) fn alarm_error(e: &AlarmError) -> Error {
    match (e, e.path()) {
        (AlarmError::Store(s), _) => store_error(s),
        (_, Some(path)) => {
            let path = path.to_owned();
            error_with(e.code(), e.to_string(), move |ext| {
                ext.set("path", path.as_str())
            })
        }
        _ => error(e.code(), e.to_string()),
    }
}

/// The GraphQL error for a refused device request.
pub(crate) fn device_error(e: &DeviceError) -> Error {
    match e {
        DeviceError::Store(s) => store_error(s),
        DeviceError::Invalid { path, .. } => {
            let path = path.clone();
            error_with(e.code(), e.to_string(), move |ext| {
                ext.set("path", path.as_str())
            })
        }
        _ => error(e.code(), e.to_string()),
    }
}

/// The error that ends a live stream whose subscriber fell behind; with
/// the sequence number of the last event it was sent, where it resumes.
pub(super) fn lagged(message: impl Into<String>, last_sent: Option<u64>) -> Error {
    error_with(Code::SubscriberLagged, message, move |ext| {
        if let Some(seq) = last_sent {
            ext.set("lastSequence", i64::try_from(seq).unwrap_or(i64::MAX));
        }
    })
}
