//! Errors of the twin domain. Each maps to a row of the error table
//! ([`crate::codes`]) and has a message that names the twin, the property
//! path and what was expected.

use crate::codes::Code;

/// Why a twin operation was refused. Nothing is written when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TwinError {
    #[error("invalid twin id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("twin {0} already exists")]
    AlreadyExists(String),
    #[error("twin {0} does not exist")]
    NotFound(String),
    #[error("relationship {id} of twin {source_id} does not exist")]
    RelationshipNotFound { source_id: String, id: String },
    #[error("relationship {id} of twin {source_id} already exists")]
    RelationshipExists { source_id: String, id: String },
    #[error("model {0} is not in the loaded model set")]
    UnknownModel(String),
    #[error("twin {twin}: {path}: {message}")]
    Invalid {
        twin: String,
        path: String,
        message: String,
    },
    #[error(
        "twin {twin}: version conflict: expected version {expected}, current version is {current}"
    )]
    Conflict {
        twin: String,
        expected: u64,
        current: u64,
    },
    #[error("twin {twin} cannot be deleted: it has {count} relationship(s); delete them first")]
    HasRelationships { twin: String, count: usize },
    #[error("twin {twin}: containment: {message}")]
    Containment { twin: String, message: String },
    #[error("relationship {name} of twin {twin}: at most {max} allowed")]
    Multiplicity {
        twin: String,
        name: String,
        max: i64,
    },
    /// A batch expected stream `stream` to end at record `expected`;
    /// another writer appended since (optimistic concurrency of records).
    #[error("stream {stream}: expected its last record to be {expected}, it is {current}")]
    StreamMoved {
        stream: String,
        expected: u64,
        current: u64,
    },
    /// A report's source time is further ahead of the server's clock than
    /// the allowed skew: accepted, it would make every later, correct
    /// report look stale.
    #[error(
        "twin {twin}: sourceTime is {ahead_seconds} s ahead of the server's clock; at most {skew_seconds} s is allowed (devices.max_clock_skew_seconds): fix the device's clock"
    )]
    SourceTimeAhead {
        twin: String,
        ahead_seconds: i64,
        skew_seconds: i64,
    },
}

impl TwinError {
    /// Its row of the error table.
    pub fn code(&self) -> Code {
        match self {
            TwinError::InvalidId { .. } => Code::InvalidTwinId,
            TwinError::AlreadyExists(_) => Code::TwinExists,
            TwinError::NotFound(_) => Code::TwinNotFound,
            TwinError::RelationshipNotFound { .. } => Code::RelationshipNotFound,
            TwinError::RelationshipExists { .. } => Code::RelationshipExists,
            TwinError::UnknownModel(_) => Code::UnknownModel,
            TwinError::Invalid { .. } => Code::ValidationFailed,
            TwinError::Conflict { .. } => Code::VersionConflict,
            TwinError::HasRelationships { .. } => Code::TwinHasRelationships,
            TwinError::Containment { .. } => Code::ContainmentViolation,
            TwinError::Multiplicity { .. } => Code::MultiplicityExceeded,
            TwinError::StreamMoved { .. } => Code::StreamMoved,
            TwinError::SourceTimeAhead { .. } => Code::SourceTimeAhead,
        }
    }

    pub(crate) fn invalid(
        twin: &str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> TwinError {
        TwinError::Invalid {
            twin: twin.to_owned(),
            path: path.into(),
            message: message.into(),
        }
    }
}
