//! Server settings, in sections (`[http]`, `[store]`, `[models]`, `[auth]`,
//! `[limits]`, `[graphql]`, `[demo]`, `[rollouts]`, `[series]`, `[alarms]`, ...), layered file <
//! environment < command-line flags.
//!
//! - Each default is written once, by the component that owns it (the
//!   server's limits, the store's pool, the schema's depth...); a section's
//!   `Default` reads it from there.
//! - [`SETTINGS`] lists every setting once: its key, how a value is read
//!   from the environment, the names it was known by before sections, its
//!   flag and meaning. The environment variable is derived from the key
//!   (`store.pool` → `TWINGRAPH_STORE_POOL`); the older flat file keys and
//!   variables keep working. `docs/settings.md` is generated from it
//!   (`twingraph settings`) and a test fails when it is stale.
//! - Unknown keys in the file are an error (a typo must not silently fall
//!   back to a default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every setting of `twingraph serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Log filter (`tracing` syntax), e.g. `info` or `twingraph=debug`.
    pub log: String,
    pub http: Http,
    pub store: StoreSettings,
    pub models: ModelSettings,
    pub auth: crate::auth::JwtConfig,
    pub limits: Limits,
    pub graphql: GraphqlSettings,
    pub demo: DemoSettings,
    pub rollouts: RolloutSettings,
    pub series: SeriesSettings,
    pub alarms: AlarmSettings,
    pub devices: DeviceSettings,
    pub mqtt: MqttSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log: "info".to_owned(),
            http: Http::default(),
            store: StoreSettings::default(),
            models: ModelSettings::default(),
            auth: crate::auth::JwtConfig::default(),
            limits: Limits::default(),
            graphql: GraphqlSettings::default(),
            demo: DemoSettings::default(),
            rollouts: RolloutSettings::default(),
            series: SeriesSettings::default(),
            alarms: AlarmSettings::default(),
            devices: DeviceSettings::default(),
            mqtt: MqttSettings::default(),
        }
    }
}

/// `[http]`: the listener and what the HTTP layer serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    pub listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub cors_origins: Vec<String>,
    pub metrics_token: Option<String>,
}

impl Default for Http {
    fn default() -> Self {
        let server = crate::server::HttpSettings::default();
        Http {
            listen: crate::server::DEFAULT_LISTEN,
            tls_cert: None,
            tls_key: None,
            cors_origins: server.cors_origins,
            metrics_token: server.metrics_token,
        }
    }
}

/// `[store]`: where twins live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `embedded`, or a Neo4j URI.
    pub uri: String,
    pub data: PathBuf,
    pub user: String,
    pub password: String,
    pub database: Option<String>,
    pub pool: usize,
    pub poll_ms: u64,
    pub timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub retention_days: Option<u64>,
    /// Page cache of the embedded store (MiB); unset: sized from the machine.
    pub cache_mb: Option<u64>,
    /// Events after which the embedded store starts a checkpoint.
    pub checkpoint_events: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        let bolt = crate::store::bolt::BoltConfig::default();
        StoreSettings {
            uri: crate::store::EMBEDDED.to_owned(),
            data: PathBuf::from(crate::store::DEFAULT_DATA),
            user: bolt.user,
            password: bolt.password,
            database: bolt.database,
            pool: bolt.max_connections,
            poll_ms: u64::try_from(bolt.poll.as_millis()).unwrap_or(u64::MAX),
            timeout_ms: u64::try_from(bolt.timeout.as_millis()).unwrap_or(u64::MAX),
            statement_timeout_ms: u64::try_from(bolt.statement_timeout.as_millis())
                .unwrap_or(u64::MAX),
            retention_days: None,
            cache_mb: None,
            checkpoint_events: crate::store::StoreConfig::default_checkpoint_events(),
        }
    }
}

/// `[models]`: the DTDL models served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSettings {
    pub folder: PathBuf,
    pub containment: String,
    /// Device model repositories (DMR-layout folders) models devices
    /// announce are loaded from.
    pub repositories: Vec<PathBuf>,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            folder: PathBuf::from(crate::dtdl::load::DEFAULT_FOLDER),
            containment: crate::twin::GraphConfig::default().containment,
            repositories: Vec::new(),
        }
    }
}

/// `[limits]`: what one request, connection or caller may ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_query_depth: usize,
    pub max_query_complexity: usize,
    pub max_page: usize,
    pub max_aliases: usize,
    pub max_batch_operations: usize,
    pub max_traversal_depth: usize,
    pub max_body_bytes: usize,
    pub max_operations_per_request: usize,
    pub max_subscriptions_per_connection: usize,
    pub live_buffer: usize,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let schema = crate::graphql::Limits::default();
        let http = crate::server::HttpSettings::default();
        let store = crate::store::StoreConfig::default();
        Limits {
            max_query_depth: schema.depth,
            max_query_complexity: schema.complexity,
            max_page: schema.max_page,
            max_aliases: schema.aliases,
            max_batch_operations: schema.batch_ops,
            max_traversal_depth: store.max_depth,
            max_body_bytes: crate::server::DEFAULT_MAX_BODY_BYTES,
            max_operations_per_request: http.max_operations,
            max_subscriptions_per_connection: http.max_subscriptions,
            live_buffer: store.live_buffer,
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
        }
    }
}

/// `[graphql]`: the schema's own switches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphqlSettings {
    pub introspection: bool,
}

impl Default for GraphqlSettings {
    fn default() -> Self {
        GraphqlSettings {
            introspection: crate::graphql::Limits::default().introspection,
        }
    }
}

/// `[demo]`: the generated demo plant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoSettings {
    pub enabled: bool,
    pub cells: usize,
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings {
            enabled: false,
            cells: crate::demo::DEFAULT_CELLS,
        }
    }
}

/// `[rollouts]`: configuration rollouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSettings {
    pub scheduler: bool,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        RolloutSettings {
            scheduler: crate::rollout::Options::default().schedule,
        }
    }
}

/// `[series]`: time series of numeric reported values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesSettings {
    pub flush_seconds: u64,
    pub retention_days: Option<u64>,
    pub minute_retention_days: Option<u64>,
    pub hour_retention_days: Option<u64>,
}

impl Default for SeriesSettings {
    fn default() -> Self {
        let d = crate::series::SeriesConfig::default();
        SeriesSettings {
            flush_seconds: d.flush_every.as_secs(),
            retention_days: d.retention.map(|r| r.as_secs() / 86_400),
            minute_retention_days: d.minute_retention.map(|r| r.as_secs() / 86_400),
            hour_retention_days: d.hour_retention.map(|r| r.as_secs() / 86_400),
        }
    }
}

impl SeriesSettings {
    /// The series configuration these settings make.
    pub fn config(&self) -> crate::series::SeriesConfig {
        crate::series::SeriesConfig {
            flush_every: std::time::Duration::from_secs(self.flush_seconds.max(1)),
            retention: days(self.retention_days),
            minute_retention: days(self.minute_retention_days),
            hour_retention: days(self.hour_retention_days),
            ..crate::series::SeriesConfig::default()
        }
    }
}

fn days(d: Option<u64>) -> Option<std::time::Duration> {
    d.map(|d| std::time::Duration::from_secs(d.saturating_mul(86_400)))
}

/// `[alarms]`: alarm rules and alarms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmSettings {
    pub tick_ms: u64,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings {
            tick_ms: u64::try_from(crate::alarms::Options::default().tick.as_millis())
                .unwrap_or(1000),
        }
    }
}

/// `[devices]`: device identities and what is accepted from devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSettings {
    pub max_clock_skew_seconds: u64,
    /// What device keys derive from; unset: generated into the embedded
    /// store's data folder (other stores: symmetric keys unavailable).
    pub secret: Option<String>,
    /// The host name devices reach the endpoint at.
    pub hostname: String,
    pub method_timeout_seconds: u64,
    /// PEM files of the certificate authorities whose device certificates
    /// identify `X509_CA` devices.
    pub ca_certificates: Vec<PathBuf>,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        let service = crate::devices::service::Options::default();
        DeviceSettings {
            max_clock_skew_seconds: u64::try_from(
                crate::twin::graph::DEFAULT_MAX_CLOCK_SKEW / 1_000_000,
            )
            .unwrap_or(300),
            secret: None,
            hostname: service.hostname,
            method_timeout_seconds: service.method_timeout.as_secs(),
            ca_certificates: Vec::new(),
        }
    }
}

/// `[mqtt]`: the MQTT device endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// Where it listens; unset: no endpoint.
    pub listen: Option<SocketAddr>,
    /// Its own certificate (devices often reach another host name than
    /// the API's); unset: the HTTP listener's.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Also serve it over WebSocket on the HTTP port (`/mqtt`,
    /// `/$iothub/websocket`).
    pub websocket: bool,
    pub max_message_bytes: u64,
    pub messages_per_second: u64,
}

impl Default for MqttSettings {
    fn default() -> Self {
        let o = crate::devices::mqtt::Options::default();
        MqttSettings {
            listen: None,
            tls_cert: None,
            tls_key: None,
            websocket: true,
            max_message_bytes: o.max_message_bytes as u64,
            messages_per_second: o.messages_per_second as u64,
        }
    }
}

/// How a setting's value is written in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text (also addresses and paths).
    Text,
    /// Text; empty: unset.
    OptText,
    /// A whole number.
    Number,
    /// A whole number; empty: unset.
    OptNumber,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`).
    Bool,
    /// Comma-separated.
    List,
}

/// One setting: its key (`section.name`), how the environment writes it,
/// the names it had before sections (a flat file key, an environment
/// variable), its flag and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub kind: Kind,
    pub legacy_key: Option<&'static str>,
    pub legacy_env: Option<&'static str>,
    pub flag: Option<&'static str>,
    pub doc: &'static str,
}

const fn setting(key: &'static str, kind: Kind, doc: &'static str) -> Setting {
    Setting {
        key,
        kind,
        legacy_key: None,
        legacy_env: None,
        flag: None,
        doc,
    }
}

impl Setting {
    /// Known before sections as the flat file key `key` (and its variable).
    const fn was(self, key: &'static str, env: &'static str) -> Setting {
        Setting {
            legacy_key: Some(key),
            legacy_env: Some(env),
            ..self
        }
    }

    const fn flag(self, flag: &'static str) -> Setting {
        Setting {
            flag: Some(flag),
            ..self
        }
    }

    /// Its environment variable: `TWINGRAPH_` and the key in capitals.
    pub fn env(&self) -> String {
        format!(
            "TWINGRAPH_{}",
            self.key.to_ascii_uppercase().replace('.', "_")
        )
    }
}

use Kind::{Bool, List, Number, OptNumber, OptText, Text};

/// Every setting, once.
pub const SETTINGS: &[Setting] = &[
    setting("log", Text, "Log filter (`tracing` syntax), e.g. `info` or `twingraph=debug`."),
    setting("http.listen", Text, "Address to listen on. Without authentication only a loopback address is served.")
        .was("listen", "TWINGRAPH_LISTEN")
        .flag("--listen"),
    setting("http.tls_cert", OptText, "PEM certificate chain; with `http.tls_key`, serve HTTPS / WSS.")
        .was("tls_cert", "TWINGRAPH_TLS_CERT")
        .flag("--tls-cert"),
    setting("http.tls_key", OptText, "PEM private key of `http.tls_cert`.")
        .was("tls_key", "TWINGRAPH_TLS_KEY")
        .flag("--tls-key"),
    setting("http.cors_origins", List, "Origins browsers may call the API from (CORS); none: same origin only.")
        .was("cors_origins", "TWINGRAPH_CORS_ORIGINS"),
    setting("http.metrics_token", OptText, "Bearer token `/metrics` requires; unset: `/metrics` is open (aggregate counts).")
        .was("metrics_token", "TWINGRAPH_METRICS_TOKEN"),
    setting("store.uri", Text, "`embedded` (a durable store in `store.data`), or a Neo4j URI: `bolt://`, `bolt+s://`, `neo4j://`, `neo4j+s://`.")
        .was("store", "TWINGRAPH_STORE")
        .flag("--store"),
    setting("store.data", Text, "Data directory of the embedded store (and of uploaded models).")
        .was("data", "TWINGRAPH_DATA")
        .flag("--data"),
    setting("store.user", Text, "Neo4j user.")
        .was("store_user", "TWINGRAPH_STORE_USER")
        .flag("--store-user"),
    setting("store.password", Text, "Neo4j password (prefer the environment: flags show in `ps`).")
        .was("store_password", "TWINGRAPH_STORE_PASSWORD")
        .flag("--store-password"),
    setting("store.database", OptText, "Neo4j database; unset: the server's default.")
        .was("store_database", "TWINGRAPH_STORE_DATABASE")
        .flag("--store-database"),
    setting("store.pool", Number, "Neo4j connections for reads (writes have 4 of their own, the event tailer 1; see schema/neo4j.md).")
        .was("store_pool", "TWINGRAPH_STORE_POOL"),
    setting("store.poll_ms", Number, "How often (ms) the Neo4j event log is read for other replicas' changes.")
        .was("store_poll_ms", "TWINGRAPH_STORE_POLL_MS"),
    setting("store.timeout_ms", Number, "How long (ms) connecting to Neo4j may take at startup, and a write may keep retrying conflicts, before `STORE_UNAVAILABLE`.")
        .was("store_timeout_ms", "TWINGRAPH_STORE_TIMEOUT_MS"),
    setting("store.statement_timeout_ms", Number, "Budget (ms) of one Neo4j statement or write transaction, its wait for a free connection included; past it the statement is stopped in the database and the request fails with `STORE_TIMEOUT`."),
    setting("store.retention_days", OptNumber, "Keep the event log this many days (configuration and rollout records always); unset: forever. History before the oldest kept event answers `history_pruned`.")
        .was("retention_days", "TWINGRAPH_RETENTION_DAYS"),
    setting("store.cache_mb", OptNumber, "Page cache (MiB) of the embedded store, a quarter for the log (twingraph.redb), the rest for the checkpointed state (state.redb). Reads come from the in-memory graph; the cache holds the pages writes touch. Unset: 1/64 of the memory the server may use (physical, or its cgroup's limit), between 16 and 512 MiB."),
    setting("store.checkpoint_events", Number, "The embedded store starts a checkpoint (writes the current state of what changed, spread over the next commits) after this many events, or 30 s: what a start after a crash replays is bounded by it. Larger: fewer, cheaper-per-update checkpoints; longer recovery."),
    setting("models.folder", Text, "Folder of DTDL models (every `*.json` below it).")
        .was("models", "TWINGRAPH_MODELS")
        .flag("--models"),
    setting("models.containment", Text, "The relationship name that means containment (scopes, hierarchy, `under`).")
        .was("containment", "TWINGRAPH_CONTAINMENT"),
    setting("models.repositories", List, "Device model repositories: folders in the DMR layout (`dtmi/com/example/thermostat-1.json`, as Azure/iot-plugandplay-models or a mirror of it). A device an enrollment group provisions that announces a model the server lacks gets it from there, with what it references, as an upload would add it."),
    setting("auth.jwt_secret", OptText, "HS256 secret of bearer tokens; setting a key turns authentication on.")
        .was("jwt_secret", "TWINGRAPH_JWT_SECRET")
        .flag("--jwt-secret"),
    setting("auth.jwt_public_key", OptText, "PEM public key of bearer tokens (RSA: RS256, P-256: ES256).")
        .was("jwt_public_key", "TWINGRAPH_JWT_PUBLIC_KEY")
        .flag("--jwt-public-key"),
    setting("auth.jwks", OptText, "JWKS file of bearer-token keys by `kid` (re-read when it changes).")
        .was("jwks", "TWINGRAPH_JWKS")
        .flag("--jwks"),
    setting("auth.jwt_issuer", OptText, "Required `iss` of tokens; unset: any.")
        .was("jwt_issuer", "TWINGRAPH_JWT_ISSUER")
        .flag("--jwt-issuer"),
    setting("auth.jwt_audience", OptText, "Required `aud` of tokens; unset: not checked.")
        .was("jwt_audience", "TWINGRAPH_JWT_AUDIENCE")
        .flag("--jwt-audience"),
    setting("auth.jwt_leeway_seconds", Number, "Clock skew tolerated on `exp` and `nbf`, in seconds.")
        .was("jwt_leeway_seconds", "TWINGRAPH_JWT_LEEWAY_SECONDS"),
    setting("auth.jwt_roles_claim", Text, "The claim listing a token's roles.")
        .was("jwt_roles_claim", "TWINGRAPH_JWT_ROLES_CLAIM"),
    setting("auth.jwt_twins_claim", Text, "The claim listing the twins a token is scoped to.")
        .was("jwt_twins_claim", "TWINGRAPH_JWT_TWINS_CLAIM"),
    setting("limits.max_query_depth", Number, "Deepest GraphQL selection nesting accepted.")
        .was("max_query_depth", "TWINGRAPH_MAX_QUERY_DEPTH"),
    setting("limits.max_query_complexity", Number, "Largest GraphQL query complexity (one per field) accepted.")
        .was("max_query_complexity", "TWINGRAPH_MAX_QUERY_COMPLEXITY"),
    setting("limits.max_page", Number, "Largest page a connection returns (`first`, `last`).")
        .was("max_page", "TWINGRAPH_MAX_PAGE"),
    setting("limits.max_aliases", Number, "Aliased fields a document may have.")
        .was("max_aliases", "TWINGRAPH_MAX_ALIASES"),
    setting("limits.max_batch_operations", Number, "Operations one `batch` mutation may carry.")
        .was("max_batch_operations", "TWINGRAPH_MAX_BATCH_OPERATIONS"),
    setting("limits.max_traversal_depth", Number, "Deepest traversal accepted.")
        .was("max_traversal_depth", "TWINGRAPH_MAX_TRAVERSAL_DEPTH"),
    setting("limits.max_body_bytes", Number, "Largest request body, in bytes (larger ones get 413).")
        .was("max_body_bytes", "TWINGRAPH_MAX_BODY_BYTES"),
    setting("limits.max_operations_per_request", Number, "Operations one HTTP request (a JSON array) may carry.")
        .was("max_operations_per_request", "TWINGRAPH_MAX_OPERATIONS_PER_REQUEST"),
    setting("limits.max_subscriptions_per_connection", Number, "Subscriptions one WebSocket connection may hold at once.")
        .was("max_subscriptions_per_connection", "TWINGRAPH_MAX_SUBSCRIPTIONS_PER_CONNECTION"),
    setting("limits.live_buffer", Number, "Events a live subscriber may fall behind before `SUBSCRIBER_LAGGED`.")
        .was("live_buffer", "TWINGRAPH_LIVE_BUFFER"),
    setting("limits.rate_limit_per_second", Number, "Operations and subscriptions per second per token subject (then 429 `RATE_LIMITED` with `Retry-After`); 0: unlimited.")
        .was("rate_limit_per_second", "TWINGRAPH_RATE_LIMIT_PER_SECOND"),
    setting("limits.rate_limit_burst", Number, "Operations a caller may send at once above its rate; 0: twice the rate.")
        .was("rate_limit_burst", "TWINGRAPH_RATE_LIMIT_BURST"),
    setting("graphql.introspection", Bool, "Whether the schema answers introspection (`__schema`, `__type`).")
        .was("introspection", "TWINGRAPH_INTROSPECTION"),
    setting("demo.enabled", Bool, "Load the generated demo plant into an empty store.")
        .was("demo", "TWINGRAPH_DEMO")
        .flag("--demo"),
    setting("demo.cells", Number, "Work cells of the demo plant (49 twins each, plus the hierarchy above them).")
        .was("demo_cells", "TWINGRAPH_DEMO_CELLS"),
    setting("devices.max_clock_skew_seconds", Number, "How far ahead of the server's clock a reported `sourceTime` may be; a report stamped further ahead is refused (`SOURCE_TIME_AHEAD`), as it would make later, correct reports look stale."),
    setting("devices.secret", OptText, "What device keys derive from (at least 32 bytes of text; prefer the environment); the same on every server over one store. Unset: generated once into `device-secret` in the embedded store's data folder; with Neo4j, symmetric-key devices need it set."),
    setting("devices.hostname", Text, "The host name devices reach the MQTT endpoint at, as the connection strings of registrations show it."),
    setting("devices.method_timeout_seconds", Number, "How long a command waits for the device's answer (a direct method) unless the mutation says (`timeoutSeconds`)."),
    setting("devices.ca_certificates", List, "PEM files of certificate authorities (roots or intermediates) the device endpoint trusts: a device registered with `X509_CA` connects with a certificate one of them (or an enrollment group's) issued, whose common name is its id."),
    setting("mqtt.listen", OptText, "Address of the MQTT device endpoint (MQTT 3.1.1 with Azure IoT Hub's device topics); over TLS with `mqtt.tls_cert` (or `http.tls_cert`), else plain TCP. Unset: no endpoint.")
        .flag("--mqtt-listen"),
    setting("mqtt.tls_cert", OptText, "PEM certificate chain of the MQTT endpoint, with `mqtt.tls_key` (devices often reach it by another name than the API); unset: `http.tls_cert`'s."),
    setting("mqtt.tls_key", OptText, "PEM private key of `mqtt.tls_cert`."),
    setting("mqtt.websocket", Bool, "Also serve the MQTT device endpoint over WebSocket on the HTTP port, at `/mqtt` and `/$iothub/websocket` (where the Azure IoT device SDKs connect with `websockets=True`; over HTTPS when `http.tls_cert` is set)."),
    setting("mqtt.max_message_bytes", Number, "The largest MQTT packet a device may send; a larger one closes its connection."),
    setting("mqtt.messages_per_second", Number, "Messages one device may send a second (as many at once); twin requests over it are answered 429, telemetry waits."),
    setting("rollouts.scheduler", Bool, "Whether this process may drive rollouts and remediation (among replicas, the one holding the scheduler lease does; another takes over within 10 s when it stops answering).")
        .was("rollout_scheduler", "TWINGRAPH_ROLLOUT_SCHEDULER"),
    setting("series.flush_seconds", Number, "How often (s) the newest points of the time series are written into compressed blocks (embedded store: `series.redb` in `store.data`). Until then they are answered from memory; a restart reads them again from the event log."),
    setting("alarms.tick_ms", Number, "How often (ms, at least 10) alarm rules' on- and off-delays, stale-data conditions and shelf expiries are looked at; conditions on reported values are decided as the reports commit."),
    setting("series.retention_days", OptNumber, "Keep time series this many days (whole hour blocks, counted back from the newest point); unset: forever. The event log's own retention is `store.retention_days`. Older buckets are answered from the roll-ups (at steps that are multiples of a minute or an hour)."),
    setting("series.minute_retention_days", OptNumber, "Keep the per-minute roll-ups (min, max, sum, count, first, last of each minute) this many days; unset: forever."),
    setting("series.hour_retention_days", OptNumber, "Keep the per-hour roll-ups this many days; unset: forever."),
];

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}={value:?}: {message}")]
    Env {
        var: String,
        value: String,
        message: String,
    },
}

/// Settings given on the command line (each overrides file and environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub models: Option<PathBuf>,
    pub store: Option<String>,
    pub store_user: Option<String>,
    pub store_password: Option<String>,
    pub store_database: Option<String>,
    pub demo: bool,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<PathBuf>,
    pub jwks: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub mqtt_listen: Option<SocketAddr>,
}

fn boolean(value: &str) -> Result<bool, String> {
    match value {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// The value at `key` (dotted) of a JSON tree, made if missing.
fn at<'v>(tree: &'v mut Value, key: &str) -> &'v mut Value {
    key.split('.').fold(tree, |node, part| {
        if !node.is_object() {
            *node = Value::Object(serde_json::Map::new());
        }
        let Value::Object(m) = node else {
            unreachable!("made an object above")
        };
        m.entry(part).or_insert(Value::Null)
    })
}

/// A setting's value as the environment writes it, as JSON.
fn parse_env(kind: Kind, value: &str) -> Result<Value, String> {
    let number = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map(Value::from)
            .map_err(|e| format!("expected a whole number: {e}"))
    };
    Ok(match kind {
        Text => Value::from(value),
        OptText if value.is_empty() => Value::Null,
        OptText => Value::from(value),
        Number => number(value)?,
        OptNumber if value.trim().is_empty() => Value::Null,
        OptNumber => number(value)?,
        Bool => Value::from(boolean(value)?),
        List => Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(Value::from)
                .collect(),
        ),
    })
}

impl Config {
    /// Defaults, then `file` (if given), then the environment, then `flags`.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let bad = |message: String| ConfigError::File {
                    path: path.to_owned(),
                    message,
                };
                let table: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
                let mut tree = serde_json::to_value(&table).map_err(|e| bad(e.to_string()))?;
                migrate(&mut tree).map_err(bad)?;
                // Checked as written (unknown keys are errors) before the
                // environment adds to it.
                serde_json::from_value::<Config>(tree.clone()).map_err(|e| bad(e.to_string()))?;
                tree
            }
            None => Value::Object(serde_json::Map::new()),
        };
        // The environment: the names from before sections first, so that
        // the current names win when both are set.
        for s in SETTINGS {
            let names = s.legacy_env.into_iter().map(str::to_owned).chain([s.env()]);
            for var in names {
                let Some(value) = env(&var) else { continue };
                let parsed = parse_env(s.kind, &value).map_err(|message| ConfigError::Env {
                    var: var.clone(),
                    value: value.clone(),
                    message,
                })?;
                *at(&mut tree, s.key) = parsed;
                serde_json::from_value::<Config>(tree.clone()).map_err(|e| ConfigError::Env {
                    var: var.clone(),
                    value: value.clone(),
                    message: e.to_string(),
                })?;
            }
        }
        let mut c: Config = serde_json::from_value(tree).map_err(|e| ConfigError::File {
            path: file.map(Path::to_owned).unwrap_or_default(),
            message: e.to_string(),
        })?;
        c.apply(flags);
        Ok(c)
    }

    fn apply(&mut self, flags: &Overrides) {
        fn set<T: Clone>(slot: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                slot.clone_from(v);
            }
        }
        fn set_opt<T: Clone>(slot: &mut Option<T>, v: &Option<T>) {
            if v.is_some() {
                slot.clone_from(v);
            }
        }
        set(&mut self.http.listen, &flags.listen);
        set(&mut self.store.data, &flags.data);
        set(&mut self.models.folder, &flags.models);
        set(&mut self.store.uri, &flags.store);
        set(&mut self.store.user, &flags.store_user);
        set(&mut self.store.password, &flags.store_password);
        set_opt(&mut self.store.database, &flags.store_database);
        self.demo.enabled |= flags.demo;
        set_opt(&mut self.auth.secret, &flags.jwt_secret);
        set_opt(&mut self.auth.public_key, &flags.jwt_public_key);
        set_opt(&mut self.auth.jwks, &flags.jwks);
        set_opt(&mut self.auth.issuer, &flags.jwt_issuer);
        set_opt(&mut self.auth.audience, &flags.jwt_audience);
        set_opt(&mut self.http.tls_cert, &flags.tls_cert);
        set_opt(&mut self.http.tls_key, &flags.tls_key);
        set_opt(&mut self.mqtt.listen, &flags.mqtt_listen);
    }

    /// The settings surface in Markdown (`docs/settings.md`): every key,
    /// its environment variable and older names, flag, default and meaning.
    pub fn surface() -> String {
        let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
        let mut out = String::from(
            "# Settings\n\n\
             Generated from `src/config.rs` by `twingraph settings`; a test fails when this file is stale.\n\n\
             In increasing precedence: the config file (`--config`, or `./twingraph.toml` when present; unknown\n\
             keys are an error), environment variables, flags. In the file a setting `section.name` is `name`\n\
             under `[section]`. The names from before sections (a flat key in the file, another variable) keep\n\
             working; where both are given, the current one wins.\n\n\
             | setting | environment | flag | default | also read from | meaning |\n|---|---|---|---|---|---|\n",
        );
        for s in SETTINGS {
            let default = s
                .key
                .split('.')
                .try_fold(&defaults, |v, part| v.get(part))
                .map_or_else(|| "unset".to_owned(), render);
            let legacy = match (s.legacy_key, s.legacy_env) {
                (Some(k), Some(e)) if e == s.env() => format!("`{k}`"),
                (Some(k), Some(e)) => format!("`{k}`, `{e}`"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "| `{}` | `{}` | {} | {default} | {legacy} | {} |\n",
                s.key,
                s.env(),
                s.flag.map_or_else(String::new, |f| format!("`{f}`")),
                s.doc
            ));
        }
        out
    }
}

/// A default as the settings table shows it.
fn render(v: &Value) -> String {
    match v {
        Value::Null => "unset".to_owned(),
        Value::String(s) if s.is_empty() => "empty".to_owned(),
        Value::Array(a) if a.is_empty() => "none".to_owned(),
        other => format!("`{other}`"),
    }
}

/// Moves the flat keys from before sections (`listen`, `store_pool`, ...)
/// to their sections. `store`, `models` and `demo` were values before they
/// were sections: a value there is the old key.
fn migrate(tree: &mut Value) -> Result<(), String> {
    let Value::Object(top) = tree else {
        return Err("expected a table of settings".to_owned());
    };
    let mut moved = Vec::new();
    for s in SETTINGS {
        let Some(old) = s.legacy_key else { continue };
        let is_section = matches!(top.get(old), Some(Value::Object(_)));
        if old == s.key || is_section {
            continue;
        }
        if let Some(v) = top.remove(old) {
            moved.push((s.key, old, v));
        }
    }
    for (key, old, v) in moved {
        let slot = at(tree, key);
        if !slot.is_null() {
            return Err(format!(
                "`{old}` and `{key}` are the same setting; give one"
            ));
        }
        *slot = v;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("twingraph-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        let f = file(
            "layers.toml",
            "[http]\nlisten = \"127.0.0.1:5000\"\n[store]\ndata = \"/file/data\"\n[models]\nfolder = \"/file/models\"\n",
        );
        let env = env_of(&[
            ("TWINGRAPH_STORE_DATA", "/env/data"),
            ("TWINGRAPH_MODELS_FOLDER", "/env/models"),
        ]);
        let flags = Overrides {
            models: Some(PathBuf::from("/flag/models")),
            ..Overrides::default()
        };
        let c = Config::load(Some(&f), &env, &flags).expect("config");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:5000", "from the file");
        assert_eq!(c.store.data, PathBuf::from("/env/data"), "env beats file");
        assert_eq!(
            c.models.folder,
            PathBuf::from("/flag/models"),
            "flag beats env"
        );
        assert_eq!(c.models.containment, "contains", "default");
    }

    /// Files and variables from before sections mean what they meant.
    #[test]
    fn the_names_from_before_sections_keep_working() {
        let f = file(
            "flat.toml",
            "listen = \"127.0.0.1:5001\"\nstore = \"bolt://db:7687\"\nstore_pool = 3\nmodels = \"/m\"\ndemo = true\ndemo_cells = 2\nrollout_scheduler = false\njwt_leeway_seconds = 5\nmax_page = 50\nmetrics_token = \"t\"\n",
        );
        let c = Config::load(Some(&f), &|_| None, &Overrides::default()).expect("config");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:5001");
        assert_eq!(c.store.uri, "bolt://db:7687");
        assert_eq!(c.store.pool, 3);
        assert_eq!(c.models.folder, PathBuf::from("/m"));
        assert!(c.demo.enabled && c.demo.cells == 2);
        assert!(!c.rollouts.scheduler);
        assert_eq!(c.auth.leeway_seconds, 5);
        assert_eq!(c.limits.max_page, 50);
        assert_eq!(c.http.metrics_token.as_deref(), Some("t"));
        let env = env_of(&[
            ("TWINGRAPH_LISTEN", "127.0.0.1:5002"),
            ("TWINGRAPH_JWT_SECRET", "s"),
            ("TWINGRAPH_MAX_PAGE", "7"),
            ("TWINGRAPH_CORS_ORIGINS", "https://a, https://b"),
            ("TWINGRAPH_ROLLOUT_SCHEDULER", "no"),
        ]);
        let c = Config::load(None, &env, &Overrides::default()).expect("config");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:5002");
        assert_eq!(c.auth.secret.as_deref(), Some("s"));
        assert_eq!(c.limits.max_page, 7);
        assert_eq!(c.http.cors_origins, ["https://a", "https://b"]);
        assert!(!c.rollouts.scheduler);
        // Both names: the current one wins.
        let env = env_of(&[
            ("TWINGRAPH_MAX_PAGE", "7"),
            ("TWINGRAPH_LIMITS_MAX_PAGE", "9"),
        ]);
        let c = Config::load(None, &env, &Overrides::default()).expect("config");
        assert_eq!(c.limits.max_page, 9);
        // One setting twice in a file is refused.
        let f = file("twice.toml", "max_page = 3\n[limits]\nmax_page = 4\n");
        let e = Config::load(Some(&f), &|_| None, &Overrides::default()).expect_err("twice");
        assert!(e.to_string().contains("max_page"), "{e}");
    }

    #[test]
    fn the_metrics_token_comes_from_the_file_or_the_environment() {
        let f = file("mt.toml", "[http]\nmetrics_token = \"from-file\"\n");
        let none = Overrides::default();
        let c = Config::load(Some(&f), &|_| None, &none).expect("config");
        assert_eq!(c.http.metrics_token.as_deref(), Some("from-file"));
        let env = env_of(&[("TWINGRAPH_HTTP_METRICS_TOKEN", "from-env")]);
        let c = Config::load(Some(&f), &env, &none).expect("config");
        assert_eq!(c.http.metrics_token.as_deref(), Some("from-env"));
        // Set but empty: no token.
        let c =
            Config::load(None, &env_of(&[("TWINGRAPH_METRICS_TOKEN", "")]), &none).expect("config");
        assert_eq!(c.http.metrics_token, None);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let f = file("bad.toml", "listne = \"127.0.0.1:5000\"\n");
        let e = Config::load(Some(&f), &|_| None, &Overrides::default()).expect_err("typo");
        assert!(e.to_string().contains("listne"), "{e}");
        let f = file("bad-section.toml", "[store]\npoool = 3\n");
        let e = Config::load(Some(&f), &|_| None, &Overrides::default()).expect_err("typo");
        assert!(e.to_string().contains("poool"), "{e}");
        for (var, value) in [
            ("TWINGRAPH_LISTEN", "not an address"),
            ("TWINGRAPH_HTTP_LISTEN", "not an address"),
            ("TWINGRAPH_STORE_POOL", "many"),
            ("TWINGRAPH_DEMO_ENABLED", "perhaps"),
            ("TWINGRAPH_LIMITS_RATE_LIMIT_BURST", "5000000000"),
        ] {
            let env = move |k: &str| (k == var).then(|| value.to_owned());
            let e = Config::load(None, &env, &Overrides::default()).expect_err("bad env");
            assert!(e.to_string().contains(var), "{e}");
        }
    }

    /// Every leaf of the settings tree is listed once in [`SETTINGS`], and
    /// every listed setting is a leaf: the table cannot drift from the
    /// structs.
    #[test]
    fn every_setting_is_listed_once() {
        fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) if !m.is_empty() => {
                    for (k, x) in m {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        leaves(&key, x, out);
                    }
                }
                _ => out.push(prefix.to_owned()),
            }
        }
        let mut keys = Vec::new();
        leaves(
            "",
            &serde_json::to_value(Config::default()).expect("json"),
            &mut keys,
        );
        keys.sort();
        let mut listed: Vec<String> = SETTINGS.iter().map(|s| s.key.to_owned()).collect();
        listed.sort();
        assert_eq!(keys, listed);
    }

    /// `docs/settings.md` is what the table generates.
    #[test]
    fn the_committed_settings_surface_is_current() {
        let committed = include_str!("../docs/settings.md");
        assert!(
            committed == Config::surface(),
            "docs/settings.md is stale: run `cargo run -- settings > docs/settings.md` and review the diff"
        );
    }
}
