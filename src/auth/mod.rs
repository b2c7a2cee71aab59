//! Who is asking, and what they may do.
//!
//! - [`jwt`]: bearer tokens: verification (HS256 secret, RS256/ES256 public
//!   key from a PEM file, or keys by `kid` from a JWKS file reloaded when it
//!   changes) into a [`Principal`]; minting for `twingraph token`.
//! - [`guarded`]: [`GuardedStore`], the store a request sees: the
//!   principal's roles decide which writes pass, its scope which twins exist
//!   at all (out-of-scope twins are indistinguishable from missing ones).
//!
//! Every layer above the store reads and writes through the request's
//! guarded store, so scope holds for lookups, lists, traversals, history,
//! time travel and batches by construction; live feeds ask
//! [`GraphStore::visible`](crate::store::GraphStore::visible) of each
//! event.

pub mod guarded;
pub mod jwt;

use std::sync::Arc;

pub use guarded::GuardedStore;
pub use jwt::{JwtConfig, Verifier};

/// What a token's `roles` claim may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Reads.
    Viewer,
    /// Reads, desired state, twins and relationships, commands, rollouts,
    /// alarms (acknowledge, shelve, comment).
    Operator,
    /// Like an operator; names an ERP/EAM system in the audit trail.
    Integration,
    /// Everything: also models, configurations and deletes.
    Admin,
    /// Its own twin only (`sub` is the twin id): reads it, reports its
    /// state, receives its desired changes.
    Device,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "integration" => Some(Role::Integration),
            "admin" => Some(Role::Admin),
            "device" => Some(Role::Device),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Integration => "integration",
            Role::Admin => "admin",
            Role::Device => "device",
        }
    }

    fn grants(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Operator | Role::Integration => matches!(
                action,
                Read | PatchDesired
                    | CreateTwin
                    | Relationships
                    | Commands
                    | Rollouts
                    | Alarms
                    | Lifecycle
                    | Diagnostics
            ),
            Role::Viewer => action == Read,
            Role::Device => matches!(action, Read | PatchReported | Diagnostics),
        }
    }
}

/// What a request may want to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    PatchDesired,
    PatchReported,
    CreateTwin,
    DeleteTwin,
    /// Create, update and delete relationships.
    Relationships,
    Commands,
    /// Start, pause, resume, cancel and roll back rollouts.
    Rollouts,
    /// Create configurations, publish versions, set remediation.
    Configurations,
    Models,
    /// Register, rotate, disable and delete device identities.
    Devices,
    /// Acknowledge, shelve and comment on alarms.
    Alarms,
    /// Create, change and delete alarm rules.
    AlarmRules,
    /// Move assets through their lifecycle.
    Lifecycle,
    /// Attach diagnostic reports to twins.
    Diagnostics,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::PatchDesired => "patch desired state",
            Action::PatchReported => "report state",
            Action::CreateTwin => "create twins",
            Action::DeleteTwin => "delete twins",
            Action::Relationships => "change relationships",
            Action::Commands => "invoke commands",
            Action::Rollouts => "manage rollouts",
            Action::Configurations => "manage configurations",
            Action::Models => "change models",
            Action::Devices => "manage devices",
            Action::Alarms => "handle alarms",
            Action::AlarmRules => "manage alarm rules",
            Action::Lifecycle => "change asset lifecycles",
            Action::Diagnostics => "attach diagnostic reports",
        }
    }
}

/// The twins a principal may see: these ids, and (with `subtree`)
/// everything under them in the containment hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub roots: Vec<String>,
    pub subtree: bool,
}

/// An authenticated caller.
/// How the caller is named when authentication is off (development mode).
pub const ANONYMOUS: &str = "anonymous";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject (a device's twin id for a device).
    pub sub: String,
    /// Roles granted (unknown names in the token are ignored).
    pub roles: Vec<Role>,
    /// Twin ids the token is scoped to (`None`: every twin).
    pub twins: Option<Vec<String>>,
    /// When the token expires (seconds since the epoch).
    pub expires: Option<u64>,
}

impl Principal {
    /// The caller when authentication is off (development mode): may do
    /// everything, everywhere.
    pub fn anonymous() -> Principal {
        Principal {
            sub: ANONYMOUS.to_owned(),
            roles: vec![Role::Admin],
            twins: None,
            expires: None,
        }
    }

    /// Whether any of its roles grants `action`.
    pub fn may(&self, action: Action) -> bool {
        self.roles.iter().any(|r| r.grants(action))
    }

    /// A device connected to the device endpoint: named by its id, confined
    /// to its twin.
    pub fn device(id: &str, twin: &str) -> Principal {
        Principal {
            sub: id.to_owned(),
            roles: vec![Role::Device],
            twins: Some(vec![twin.to_owned()]),
            expires: None,
        }
    }

    /// Only the device role: confined to its own twin.
    fn device_only(&self) -> bool {
        !self.roles.is_empty() && self.roles.iter().all(|r| *r == Role::Device)
    }

    /// The twins it may see (`None`: all).
    pub fn scope(&self) -> Option<Scope> {
        if self.device_only() {
            // A device's token names its twin as `sub`; a device connected
            // to the device endpoint is named by its id, its twin given.
            return Some(Scope {
                roots: self.twins.clone().unwrap_or_else(|| vec![self.sub.clone()]),
                subtree: false,
            });
        }
        self.twins.as_ref().map(|t| Scope {
            roots: t.clone(),
            subtree: true,
        })
    }

    /// How events name it: `sub` and its highest role, e.g.
    /// `erp-7 (integration)`; `anonymous` without authentication.
    pub fn actor(&self) -> String {
        match self.roles.iter().max() {
            Some(_) if self.sub == ANONYMOUS && self.roles == [Role::Admin] => self.sub.clone(),
            Some(r) => format!("{} ({})", self.sub, r.name()),
            None => self.sub.clone(),
        }
    }
}

/// A request's caller, as request data for the GraphQL layer: the
/// principal and the store it sees.
#[derive(Clone)]
pub struct Access {
    pub principal: Arc<Principal>,
    /// The principal's view of the store.
    pub store: Arc<GuardedStore>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl Access {
    pub fn new(principal: Principal, store: Arc<dyn crate::store::GraphStore>) -> Access {
        let principal = Arc::new(principal);
        Access {
            store: Arc::new(GuardedStore::new(store, principal.clone())),
            principal,
        }
    }

    /// Callers that see the same twins see the same results: the key that
    /// lets their identical subscriptions share one execution.
    pub fn view(&self) -> String {
        match self.principal.scope() {
            None => String::new(),
            Some(s) => {
                let mut roots = s.roots.clone();
                roots.sort();
                format!("{}:{}", s.subtree, roots.join("\u{0}"))
            }
        }
    }

    /// `Ok` when the principal may do `action`, else a `FORBIDDEN` error.
    pub fn require(&self, action: Action) -> Result<(), crate::store::StoreError> {
        if self.principal.may(action) {
            Ok(())
        } else {
            Err(crate::store::StoreError::Forbidden(format!(
                "{} may not {}",
                self.principal.sub,
                action.name()
            )))
        }
    }
}
