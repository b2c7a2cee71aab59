//! Configurations and their rollouts (see `ARCHITECTURE.md`). Their
//! records' types live in [`crate::records`]; this module owns their rules.
//!
//! - [`config`]: configurations (templates of desired values), their
//!   immutable versions, validation against the models, diffs; the fold of
//!   their records.
//! - [`plan`]: what a rollout is asked to do, checked.
//! - [`run`]: rollouts as the fold of their records, and the pure decisions
//!   on them (a twin's outcome, abort criteria, stage results).
//! - [`drift`]: drift as a fold of twin events.
//! - [`service`]: the owner of the configuration and rollout state: the only
//!   writer of their records, which it reads back from the store's
//!   `rollouts` stream at startup and follows live.
//! - `commands`: the public commands (start, pause, resume, cancel, roll
//!   back); they only record.
//! - `scheduler`: the scheduler of one server: the lease, and
//!   passes that settle, gate, apply and roll back, on the service's clock.
//! - `remediation`: drifted twins get their configuration's values again.

mod commands;
pub mod config;
pub mod drift;
pub mod plan;
mod remediation;
pub mod run;
mod scheduler;
pub mod service;

use crate::store::StoreError;

pub use crate::twin::clock::{Clock, SteppedClock, SystemClock};
pub use service::{Options, Rollouts};

/// Why a configuration or rollout request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    #[error("configuration {0} does not exist")]
    ConfigurationNotFound(String),
    #[error("configuration {0} already exists")]
    ConfigurationExists(String),
    /// The request is invalid: `path` names the offending part.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    /// The rollout request is invalid: `path` names the offending part.
    #[error("{path}: {message}")]
    InvalidRollout { path: String, message: String },
    #[error("rollout {0} does not exist")]
    RolloutNotFound(String),
    /// Another active rollout already targets a twin.
    #[error("twin {twin} is targeted by active rollout {rollout}")]
    Conflict { twin: String, rollout: String },
    /// The rollout cannot do that in its state.
    #[error("rollout {rollout} is {state}: cannot {action}")]
    State {
        rollout: String,
        state: String,
        action: &'static str,
    },
    /// Another server recorded first (the fold has it now): decide again.
    #[error("another server changed the rollout records (up to {current}); try again")]
    Overtaken { current: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RolloutError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> RolloutError {
        RolloutError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn invalid_rollout(path: impl Into<String>, message: impl Into<String>) -> RolloutError {
        RolloutError::InvalidRollout {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Its row of the error table.
    pub fn code(&self) -> crate::codes::Code {
        use crate::codes::Code;
        match self {
            RolloutError::ConfigurationNotFound(_) => Code::ConfigurationNotFound,
            RolloutError::ConfigurationExists(_) => Code::ConfigurationExists,
            RolloutError::Invalid { .. } => Code::InvalidConfiguration,
            RolloutError::InvalidRollout { .. } => Code::InvalidRollout,
            RolloutError::RolloutNotFound(_) => Code::RolloutNotFound,
            RolloutError::Conflict { .. } => Code::RolloutConflict,
            RolloutError::State { .. } => Code::InvalidRolloutState,
            RolloutError::Overtaken { .. } => Code::ConcurrentChange,
            RolloutError::Store(s) => s.code(),
        }
    }
}
