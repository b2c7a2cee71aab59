//! Errors of the twin domain. Each has a stable machine-readable code (the
//! GraphQL layer puts it in `extensions.code`) and a message that names the
//! twin, the property path and what was expected.

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
}

impl TwinError {
    /// Stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            TwinError::InvalidId { .. } => "invalid_twin_id",
            TwinError::AlreadyExists(_) => "twin_exists",
            TwinError::NotFound(_) => "twin_not_found",
            TwinError::RelationshipNotFound { .. } => "relationship_not_found",
            TwinError::RelationshipExists { .. } => "relationship_exists",
            TwinError::UnknownModel(_) => "unknown_model",
            TwinError::Invalid { .. } => "validation_failed",
            TwinError::Conflict { .. } => "version_conflict",
            TwinError::HasRelationships { .. } => "twin_has_relationships",
            TwinError::Containment { .. } => "containment_violation",
            TwinError::Multiplicity { .. } => "multiplicity_exceeded",
            TwinError::StreamMoved { .. } => "stream_moved",
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
