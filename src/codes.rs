//! The error codes clients see, in one table (after meilisearch's
//! `make_error_codes!`): each once, with the GraphQL `extensions.code` it
//! shows (a coarse class clients branch on), its `extensions.reason` (the
//! precise, stable cause), the HTTP status that goes with it, and what it
//! means. Every domain error maps to a row (`TwinError::code`,
//! `StoreError::code`, `RolloutError::code`); the GraphQL and HTTP layers
//! write `extensions` from the row and nothing else (see
//! [`Code::extensions`]). `docs/errors.md` is generated from this table
//! (`twingraph errors`) and a test fails when it is stale.
//!
//! Codes are part of the API: a row's `code` and `reason` never change
//! spelling once released; new rows may be added.

macro_rules! error_codes {
    ($(
        $(#[$doc:meta])*
        $variant:ident => $code:literal, $reason:literal, $status:literal, $meaning:literal;
    )*) => {
        /// An error a client can see, as the table defines it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The GraphQL `extensions.code`: the class of the error.
            pub fn graphql(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// The GraphQL `extensions.reason`: the precise cause.
            pub fn reason(self) -> &'static str {
                match self { $(Code::$variant => $reason,)* }
            }

            /// The HTTP status of a response this error refuses whole
            /// (inside a GraphQL result the status follows GraphQL over
            /// HTTP instead); `None` for errors that only end live streams.
            pub fn status(self) -> Option<u16> {
                match self { $(Code::$variant => if $status == 0 { None } else { Some($status) },)* }
            }

            /// What it means, in a line.
            pub fn meaning(self) -> &'static str {
                match self { $(Code::$variant => $meaning,)* }
            }
        }
    };
}

error_codes! {
    // The request itself.
    Unauthenticated => "UNAUTHENTICATED", "unauthenticated", 401,
        "No valid bearer token came with the request (missing, malformed, expired or signed by an unknown key).";
    Forbidden => "FORBIDDEN", "forbidden", 403,
        "The caller's roles or graph scope do not allow this; nothing was written.";
    RateLimited => "RATE_LIMITED", "rate_limited", 429,
        "The caller sent more operations than its rate allows; retry after `Retry-After` seconds.";
    InvalidRequest => "BAD_REQUEST", "invalid_request", 400,
        "The HTTP request is not a GraphQL request (the body is not JSON, or lacks `query`, or a parameter has the wrong type).";
    UnsupportedMediaType => "BAD_REQUEST", "unsupported_media_type", 415,
        "A POST body must be `application/json` in UTF-8.";
    NotAcceptable => "BAD_REQUEST", "not_acceptable", 406,
        "The client accepts neither `application/json` nor `application/graphql-response+json`.";
    MutationOverGet => "BAD_REQUEST", "mutation_over_get", 405,
        "Mutations are sent with POST, never GET.";
    BodyTooLarge => "BAD_REQUEST", "body_too_large", 413,
        "The request body is larger than `max_body_bytes`.";
    TooManyOperations => "BAD_REQUEST", "too_many_operations", 400,
        "More operations in one request (a JSON array), or subscriptions on one connection, than the limits allow.";
    InvalidDocument => "BAD_REQUEST", "invalid_document", 400,
        "The document does not parse or validate against the schema, its variables do not coerce, or it is too deep or complex.";
    TooManyAliases => "BAD_REQUEST", "too_many_aliases", 400,
        "The document has more aliased fields than `max_aliases`.";
    InvalidArgument => "BAD_REQUEST", "invalid_argument", 400,
        "An argument is malformed or out of range (the message names it).";
    // Twins and relationships.
    InvalidTwinId => "BAD_REQUEST", "invalid_twin_id", 400,
        "A twin id is empty, longer than 256 characters or has control characters.";
    TwinExists => "BAD_REQUEST", "twin_exists", 409,
        "A twin with this id exists already.";
    TwinNotFound => "NOT_FOUND", "twin_not_found", 404,
        "The twin does not exist (or is out of the caller's scope, or not of the model asked for).";
    RelationshipNotFound => "NOT_FOUND", "relationship_not_found", 404,
        "The relationship does not exist (or is out of the caller's scope).";
    RelationshipExists => "BAD_REQUEST", "relationship_exists", 409,
        "The source twin has a relationship with this id already.";
    TwinHasRelationships => "BAD_REQUEST", "twin_has_relationships", 409,
        "A twin with relationships cannot be deleted; delete them first.";
    UnknownModel => "MODEL_NOT_FOUND", "unknown_model", 404,
        "The model (DTMI) is not in the loaded model set.";
    ValidationFailed => "VALIDATION_FAILED", "validation_failed", 422,
        "A value does not fit its model; `extensions.path` names the property.";
    ContainmentViolation => "VALIDATION_FAILED", "containment_violation", 422,
        "The change would give a twin two containers or make a containment cycle.";
    MultiplicityExceeded => "VALIDATION_FAILED", "multiplicity_exceeded", 422,
        "A twin would have more relationships of a name than its model allows.";
    SourceTimeAhead => "VALIDATION_FAILED", "source_time_ahead", 422,
        "A reported `sourceTime` is further ahead of the server's clock than `devices.max_clock_skew_seconds` allows; nothing was written. Fix the device's clock.";
    VersionConflict => "VERSION_CONFLICT", "version_conflict", 409,
        "`ifVersion` did not match the twin's version; `extensions.currentVersion` has it.";
    StreamMoved => "BAD_REQUEST", "stream_moved", 409,
        "Another writer appended to a record stream first (retried by the server; seen only through the store API).";
    // History and the store.
    HistoryPruned => "BAD_REQUEST", "history_pruned", 410,
        "History before this point was removed by `retention_days`.";
    SeriesUnavailable => "BAD_REQUEST", "series_unavailable", 400,
        "This server keeps no time series (a schema built without them); nothing was read.";
    StoreUnavailable => "STORE_UNAVAILABLE", "store_unavailable", 503,
        "The database cannot be reached; nothing was written (unless the message says the COMMIT had been sent); retry later.";
    StoreTimeout => "STORE_TIMEOUT", "store_timeout", 504,
        "A statement outlasted its budget (`store.statement_timeout_ms`, the wait for a free connection included) and was stopped in the database; nothing was written (unless the message says the COMMIT had been sent). Narrow the query or retry later.";
    ShuttingDown => "INTERNAL", "store_closed", 503,
        "The server is shutting down.";
    StorageFailure => "INTERNAL", "storage_failure", 500,
        "The storage engine failed; nothing was written. Details are in the server's log.";
    DataDirectoryUnusable => "INTERNAL", "data_directory_unusable", 500,
        "The data directory cannot be used as it is.";
    Internal => "INTERNAL", "internal", 500,
        "An unexpected failure; details are in the server's log.";
    // Models.
    NoModels => "BAD_REQUEST", "no_models", 400,
        "An upload needs at least one DTDL document.";
    MissingId => "VALIDATION_FAILED", "missing_id", 422,
        "An uploaded document has no top-level `@id`.";
    ModelExists => "VALIDATION_FAILED", "model_exists", 409,
        "The model is defined already; models are immutable: publish a new version.";
    InvalidModels => "VALIDATION_FAILED", "invalid_models", 422,
        "The uploaded DTDL is invalid or incomplete; `extensions.diagnostics` lists why.";
    SchemaConflict => "VALIDATION_FAILED", "schema_conflict", 422,
        "The models are valid DTDL but cannot be compiled to GraphQL.";
    ModelsChanged => "VERSION_CONFLICT", "models_changed", 409,
        "Another server recorded an upload first; retry once this one has taken it in.";
    // Configurations and rollouts.
    ConfigurationNotFound => "CONFIGURATION_NOT_FOUND", "configuration_not_found", 404,
        "The configuration does not exist.";
    ConfigurationExists => "CONFIGURATION_EXISTS", "configuration_exists", 409,
        "A configuration with this name exists already.";
    InvalidConfiguration => "INVALID_CONFIGURATION", "invalid_configuration", 422,
        "The configuration or version is invalid; `extensions.path` names the value.";
    InvalidRollout => "INVALID_ROLLOUT", "invalid_rollout", 422,
        "The rollout request is invalid; `extensions.path` names the part.";
    RolloutNotFound => "ROLLOUT_NOT_FOUND", "rollout_not_found", 404,
        "The rollout does not exist (or targets twins out of the caller's scope).";
    RolloutConflict => "ROLLOUT_CONFLICT", "rollout_conflict", 409,
        "An active rollout already targets one of the twins.";
    InvalidRolloutState => "INVALID_ROLLOUT_STATE", "invalid_rollout_state", 409,
        "The rollout cannot do that in the state it is in.";
    ConcurrentChange => "CONCURRENT_CHANGE", "concurrent_change", 409,
        "Another server changed the rollout records first; try again.";
    // Devices.
    DeviceNotFound => "DEVICE_NOT_FOUND", "device_not_found", 404,
        "No device identity with this id (or its twin is out of the caller's scope).";
    DeviceExists => "DEVICE_EXISTS", "device_exists", 409,
        "A device identity with this id exists already, or the twin has one.";
    InvalidDevice => "INVALID_DEVICE", "invalid_device", 422,
        "The device registration is invalid; `extensions.path` names the value.";
    DeviceOffline => "DEVICE_OFFLINE", "device_offline", 404,
        "The twin's device is not connected (or is disabled): the command was not delivered.";
    DeviceTimeout => "DEVICE_TIMEOUT", "device_timeout", 504,
        "The device got the command but did not answer within the timeout.";
    DevicesUnconfigured => "BAD_REQUEST", "devices_unconfigured", 400,
        "Device keys need a device secret (`devices.secret`); none is set for this store.";
    // Alarms.
    AlarmRuleNotFound => "ALARM_RULE_NOT_FOUND", "alarm_rule_not_found", 404,
        "The alarm rule does not exist.";
    AlarmRuleExists => "ALARM_RULE_EXISTS", "alarm_rule_exists", 409,
        "An alarm rule with this name exists already.";
    InvalidAlarmRule => "INVALID_ALARM_RULE", "invalid_alarm_rule", 422,
        "The alarm rule does not fit its model or makes no sense; `extensions.path` names the part; nothing was written.";
    AlarmNotFound => "ALARM_NOT_FOUND", "alarm_not_found", 404,
        "No alarm with this id (`rule/twin`), or its twin is out of the caller's scope.";
    AlarmsUnavailable => "BAD_REQUEST", "alarms_unavailable", 400,
        "This server does not serve alarms (a schema printed without a store); nothing was written.";
    InvalidAlarmRequest => "BAD_REQUEST", "invalid_alarm_request", 400,
        "An argument of an alarm request is invalid (a shelf in the past, a comment too long); `extensions.path` names it; nothing was written.";
    // Lifecycle and diagnostics.
    InvalidLifecycleTransition => "VALIDATION_FAILED", "invalid_lifecycle_transition", 409,
        "The asset may not move from its lifecycle state to the one asked for (planned → commissioned → in service ⇄ maintenance; any → decommissioned, which is final); `extensions.current` has its state; nothing was written.";
    LifecycleConflict => "VERSION_CONFLICT", "lifecycle_conflict", 409,
        "`expected` did not match the asset's lifecycle state (another change came first); `extensions.current` has it; nothing was written.";
    InvalidDiagnostic => "BAD_REQUEST", "invalid_diagnostic", 400,
        "A diagnostic report is not a JSON object, or is larger than 64 KiB, or its summary longer than 256 characters; nothing was written.";
    LifecycleUnavailable => "BAD_REQUEST", "lifecycle_unavailable", 400,
        "This server does not serve lifecycles (a schema printed without a store); nothing was written.";
    // Live streams.
    SubscriberLagged => "SUBSCRIBER_LAGGED", "subscriber_lagged", 0,
        "The subscriber fell too far behind and its stream ended; `extensions.lastSequence` says where to resume.";
}

impl Code {
    /// The `extensions` entries every error of this code carries.
    pub fn extensions(self) -> [(&'static str, &'static str); 2] {
        [("code", self.graphql()), ("reason", self.reason())]
    }

    /// The table in Markdown (`docs/errors.md`).
    pub fn markdown() -> String {
        let mut out = String::from(
            "# Error codes\n\n\
             Generated from `src/codes.rs` by `twingraph errors`; a test fails when this file is stale.\n\n\
             Every error a client sees carries `extensions.code` (the class to branch on) and\n\
             `extensions.reason` (the precise cause). The HTTP status is the one a request refused\n\
             whole gets; inside a GraphQL result the status follows GraphQL over HTTP (200 with\n\
             `application/json`). Codes never change spelling; new ones may be added.\n\n\
             | code | reason | HTTP | meaning |\n|---|---|---|---|\n",
        );
        for c in Code::ALL {
            let status = c.status().map_or_else(|| "—".to_owned(), |s| s.to_string());
            out.push_str(&format!(
                "| `{}` | `{}` | {status} | {} |\n",
                c.graphql(),
                c.reason(),
                c.meaning()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_one_row() {
        let mut reasons: Vec<&str> = Code::ALL.iter().map(|c| c.reason()).collect();
        reasons.sort_unstable();
        let n = reasons.len();
        reasons.dedup();
        assert_eq!(reasons.len(), n, "a reason names one row");
        for c in Code::ALL {
            assert!(
                c.graphql()
                    .chars()
                    .all(|x| x.is_ascii_uppercase() || x == '_'),
                "{c:?}"
            );
            assert!(
                c.reason()
                    .chars()
                    .all(|x| x.is_ascii_lowercase() || x == '_'),
                "{c:?}"
            );
        }
    }

    /// `docs/errors.md` is what the table generates.
    #[test]
    fn the_committed_list_of_codes_is_current() {
        let committed = include_str!("../docs/errors.md");
        assert!(
            committed == Code::markdown(),
            "docs/errors.md is stale: run `cargo run -- errors > docs/errors.md`"
        );
    }
}
