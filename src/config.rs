//! Server settings: one struct, defaults in one place, layered
//! file < environment (`TWINGRAPH_*`) < command-line flags.
//!
//! Unknown keys in the file are an error (a typo must not silently fall back
//! to a default). Environment variables are read by name; see [`ENV_VARS`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Every setting of `twingraph serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory of the embedded store.
    pub data: PathBuf,
    /// Folder of DTDL models (every `*.json` below it).
    pub models: PathBuf,
    /// Store: `embedded` (default), or a Neo4j URI (`bolt://`, `bolt+s://`,
    /// `neo4j://`, `neo4j+s://`).
    pub store: String,
    /// Neo4j user.
    pub store_user: String,
    /// Neo4j password.
    pub store_password: String,
    /// Neo4j database (unset: the server's default).
    pub store_database: Option<String>,
    /// Neo4j connections in the pool.
    pub store_pool: usize,
    /// How often (ms) the Neo4j event log is read for other replicas' changes.
    pub store_poll_ms: u64,
    /// How long (ms) a Neo4j call may take before it fails as unavailable.
    pub store_timeout_ms: u64,
    /// Load the generated demo plant when the store is empty.
    pub demo: bool,
    /// Work cells in the demo plant (49 twins each, plus the hierarchy above).
    pub demo_cells: usize,
    /// The relationship name that means containment.
    pub containment: String,
    /// Deepest traversal accepted.
    pub max_traversal_depth: usize,
    /// Keep the event log this many days (unset: forever).
    pub retention_days: Option<u64>,
    /// Log filter (`tracing` syntax), e.g. `info` or `twingraph=debug`.
    pub log: String,
    /// Deepest GraphQL selection nesting accepted.
    pub max_query_depth: usize,
    /// Largest GraphQL query complexity (one per field) accepted.
    pub max_query_complexity: usize,
    /// Largest page a list returns (`first`).
    pub max_page: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Events buffered per live subscriber before it is told it lagged.
    pub live_buffer: usize,
    /// May this process drive rollouts (and remediation)? Among the
    /// servers over one store that may, the one holding the scheduler lease
    /// does; the others take over within the lease time when it stops.
    pub rollout_scheduler: bool,
    /// HS256 shared secret for bearer tokens (authentication on).
    pub jwt_secret: Option<String>,
    /// PEM file with the RS256 / ES256 public key of bearer tokens.
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS file with the public keys of bearer tokens (by `kid`; reloaded
    /// when it changes).
    pub jwks: Option<PathBuf>,
    /// Required `iss` of tokens.
    pub jwt_issuer: Option<String>,
    /// Required `aud` of tokens.
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `exp` / `nbf`, in seconds.
    pub jwt_leeway_seconds: u64,
    /// The claim listing a token's roles.
    pub jwt_roles_claim: String,
    /// The claim listing the twin ids a token is scoped to.
    pub jwt_twins_claim: String,
    /// Aliased fields a GraphQL document may have.
    pub max_aliases: usize,
    /// Operations one HTTP request (a JSON array batch) may carry.
    pub max_operations_per_request: usize,
    /// Operations one `batch` mutation may carry.
    pub max_batch_operations: usize,
    /// Subscriptions one WebSocket connection may hold at once.
    pub max_subscriptions_per_connection: usize,
    /// Requests (operations, subscriptions) per second per token subject;
    /// 0: unlimited.
    pub rate_limit_per_second: u32,
    /// Requests a token may make at once above its rate (0: twice the rate).
    pub rate_limit_burst: u32,
    /// Whether the schema answers introspection (turn off in production if
    /// clients do not need it).
    pub introspection: bool,
    /// Origins browsers may call the API from (CORS); none: same origin only.
    pub cors_origins: Vec<String>,
    /// PEM certificate chain: with `tls_key`, `serve` speaks HTTPS / WSS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Bearer token `/metrics` requires (unset: anyone who reaches the
    /// port may read the metrics, which are aggregate counts).
    pub metrics_token: Option<String>,
}

impl Config {
    /// The bearer-token settings.
    pub fn jwt(&self) -> crate::auth::JwtConfig {
        crate::auth::JwtConfig {
            secret: self.jwt_secret.clone(),
            public_key: self.jwt_public_key.clone(),
            jwks: self.jwks.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_seconds: self.jwt_leeway_seconds,
            roles_claim: self.jwt_roles_claim.clone(),
            twins_claim: self.jwt_twins_claim.clone(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 4000)),
            data: PathBuf::from("data"),
            models: PathBuf::from("dtdl"),
            store: "embedded".to_owned(),
            store_user: "neo4j".to_owned(),
            store_password: String::new(),
            store_database: None,
            store_pool: 16,
            store_poll_ms: 100,
            store_timeout_ms: 10_000,
            demo: false,
            demo_cells: 40,
            containment: "contains".to_owned(),
            max_traversal_depth: 10,
            retention_days: None,
            log: "info".to_owned(),
            max_query_depth: 16,
            max_query_complexity: 10_000,
            max_page: 1000,
            max_body_bytes: 4 * 1024 * 1024,
            live_buffer: 4096,
            rollout_scheduler: true,
            jwt_secret: None,
            jwt_public_key: None,
            jwks: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_seconds: 30,
            jwt_roles_claim: "roles".to_owned(),
            jwt_twins_claim: "twins".to_owned(),
            max_aliases: 200,
            max_operations_per_request: 10,
            max_batch_operations: 10_000,
            max_subscriptions_per_connection: 100,
            rate_limit_per_second: 0,
            rate_limit_burst: 0,
            introspection: true,
            cors_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
            metrics_token: None,
        }
    }
}

/// Environment variables read, and the setting each one sets.
pub const ENV_VARS: [(&str, &str); 41] = [
    ("TWINGRAPH_LISTEN", "listen"),
    ("TWINGRAPH_DATA", "data"),
    ("TWINGRAPH_MODELS", "models"),
    ("TWINGRAPH_STORE", "store"),
    ("TWINGRAPH_STORE_USER", "store_user"),
    ("TWINGRAPH_STORE_PASSWORD", "store_password"),
    ("TWINGRAPH_STORE_DATABASE", "store_database"),
    ("TWINGRAPH_STORE_POOL", "store_pool"),
    ("TWINGRAPH_STORE_POLL_MS", "store_poll_ms"),
    ("TWINGRAPH_STORE_TIMEOUT_MS", "store_timeout_ms"),
    ("TWINGRAPH_DEMO", "demo"),
    ("TWINGRAPH_DEMO_CELLS", "demo_cells"),
    ("TWINGRAPH_CONTAINMENT", "containment"),
    ("TWINGRAPH_MAX_TRAVERSAL_DEPTH", "max_traversal_depth"),
    ("TWINGRAPH_RETENTION_DAYS", "retention_days"),
    ("TWINGRAPH_LOG", "log"),
    ("TWINGRAPH_MAX_QUERY_DEPTH", "max_query_depth"),
    ("TWINGRAPH_MAX_QUERY_COMPLEXITY", "max_query_complexity"),
    ("TWINGRAPH_MAX_PAGE", "max_page"),
    ("TWINGRAPH_MAX_BODY_BYTES", "max_body_bytes"),
    ("TWINGRAPH_LIVE_BUFFER", "live_buffer"),
    ("TWINGRAPH_ROLLOUT_SCHEDULER", "rollout_scheduler"),
    ("TWINGRAPH_JWT_SECRET", "jwt_secret"),
    ("TWINGRAPH_JWT_PUBLIC_KEY", "jwt_public_key"),
    ("TWINGRAPH_JWKS", "jwks"),
    ("TWINGRAPH_JWT_ISSUER", "jwt_issuer"),
    ("TWINGRAPH_JWT_AUDIENCE", "jwt_audience"),
    ("TWINGRAPH_JWT_LEEWAY_SECONDS", "jwt_leeway_seconds"),
    ("TWINGRAPH_JWT_ROLES_CLAIM", "jwt_roles_claim"),
    ("TWINGRAPH_JWT_TWINS_CLAIM", "jwt_twins_claim"),
    ("TWINGRAPH_MAX_ALIASES", "max_aliases"),
    (
        "TWINGRAPH_MAX_OPERATIONS_PER_REQUEST",
        "max_operations_per_request",
    ),
    ("TWINGRAPH_MAX_BATCH_OPERATIONS", "max_batch_operations"),
    (
        "TWINGRAPH_MAX_SUBSCRIPTIONS_PER_CONNECTION",
        "max_subscriptions_per_connection",
    ),
    ("TWINGRAPH_RATE_LIMIT_PER_SECOND", "rate_limit_per_second"),
    ("TWINGRAPH_RATE_LIMIT_BURST", "rate_limit_burst"),
    ("TWINGRAPH_INTROSPECTION", "introspection"),
    ("TWINGRAPH_CORS_ORIGINS", "cors_origins"),
    ("TWINGRAPH_TLS_CERT", "tls_cert"),
    ("TWINGRAPH_TLS_KEY", "tls_key"),
    ("TWINGRAPH_METRICS_TOKEN", "metrics_token"),
];

fn boolean(value: &str) -> Result<bool, String> {
    match value {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

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
        var: &'static str,
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
}

impl Config {
    /// Defaults, then `file` (if given), then the environment, then `flags`.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut c = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::File {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        c.apply_env(env)?;
        if let Some(v) = flags.listen {
            c.listen = v;
        }
        if let Some(v) = &flags.data {
            c.data.clone_from(v);
        }
        if let Some(v) = &flags.models {
            c.models.clone_from(v);
        }
        if let Some(v) = &flags.store {
            c.store.clone_from(v);
        }
        if let Some(v) = &flags.store_user {
            c.store_user.clone_from(v);
        }
        if let Some(v) = &flags.store_password {
            c.store_password.clone_from(v);
        }
        if let Some(v) = &flags.store_database {
            c.store_database = Some(v.clone());
        }
        if flags.demo {
            c.demo = true;
        }
        if let Some(v) = &flags.jwt_secret {
            c.jwt_secret = Some(v.clone());
        }
        if let Some(v) = &flags.jwt_public_key {
            c.jwt_public_key = Some(v.clone());
        }
        if let Some(v) = &flags.jwks {
            c.jwks = Some(v.clone());
        }
        if let Some(v) = &flags.jwt_issuer {
            c.jwt_issuer = Some(v.clone());
        }
        if let Some(v) = &flags.jwt_audience {
            c.jwt_audience = Some(v.clone());
        }
        if let Some(v) = &flags.tls_cert {
            c.tls_cert = Some(v.clone());
        }
        if let Some(v) = &flags.tls_key {
            c.tls_key = Some(v.clone());
        }
        Ok(c)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for (var, _) in ENV_VARS {
            let Some(value) = env(var) else { continue };
            let bad = |message: String| ConfigError::Env {
                var,
                value: value.clone(),
                message,
            };
            let num = |v: &str| v.parse::<usize>().map_err(|e| bad(e.to_string()));
            match var {
                "TWINGRAPH_LISTEN" => {
                    self.listen = value
                        .parse()
                        .map_err(|e: std::net::AddrParseError| bad(e.to_string()))?;
                }
                "TWINGRAPH_DATA" => self.data = PathBuf::from(&value),
                "TWINGRAPH_MODELS" => self.models = PathBuf::from(&value),
                "TWINGRAPH_STORE" => self.store.clone_from(&value),
                "TWINGRAPH_STORE_USER" => self.store_user.clone_from(&value),
                "TWINGRAPH_STORE_PASSWORD" => self.store_password.clone_from(&value),
                "TWINGRAPH_STORE_DATABASE" => {
                    self.store_database = Some(value.clone()).filter(|v| !v.is_empty());
                }
                "TWINGRAPH_STORE_POOL" => self.store_pool = num(&value)?,
                "TWINGRAPH_STORE_POLL_MS" => self.store_poll_ms = num(&value)? as u64,
                "TWINGRAPH_STORE_TIMEOUT_MS" => self.store_timeout_ms = num(&value)? as u64,
                "TWINGRAPH_DEMO" => self.demo = boolean(&value).map_err(bad)?,
                "TWINGRAPH_ROLLOUT_SCHEDULER" => {
                    self.rollout_scheduler = boolean(&value).map_err(bad)?;
                }
                "TWINGRAPH_DEMO_CELLS" => self.demo_cells = num(&value)?,
                "TWINGRAPH_CONTAINMENT" => self.containment.clone_from(&value),
                "TWINGRAPH_MAX_TRAVERSAL_DEPTH" => self.max_traversal_depth = num(&value)?,
                "TWINGRAPH_RETENTION_DAYS" => {
                    self.retention_days = Some(
                        value
                            .parse()
                            .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
                    );
                }
                "TWINGRAPH_LOG" => self.log.clone_from(&value),
                "TWINGRAPH_MAX_QUERY_DEPTH" => self.max_query_depth = num(&value)?,
                "TWINGRAPH_MAX_QUERY_COMPLEXITY" => self.max_query_complexity = num(&value)?,
                "TWINGRAPH_MAX_PAGE" => self.max_page = num(&value)?,
                "TWINGRAPH_MAX_BODY_BYTES" => self.max_body_bytes = num(&value)?,
                "TWINGRAPH_LIVE_BUFFER" => self.live_buffer = num(&value)?,
                "TWINGRAPH_JWT_SECRET" => {
                    self.jwt_secret = Some(value.clone()).filter(|v| !v.is_empty())
                }
                "TWINGRAPH_JWT_PUBLIC_KEY" => {
                    self.jwt_public_key = Some(PathBuf::from(&value)).filter(|_| !value.is_empty());
                }
                "TWINGRAPH_JWKS" => {
                    self.jwks = Some(PathBuf::from(&value)).filter(|_| !value.is_empty())
                }
                "TWINGRAPH_JWT_ISSUER" => {
                    self.jwt_issuer = Some(value.clone()).filter(|v| !v.is_empty())
                }
                "TWINGRAPH_JWT_AUDIENCE" => {
                    self.jwt_audience = Some(value.clone()).filter(|v| !v.is_empty());
                }
                "TWINGRAPH_JWT_LEEWAY_SECONDS" => self.jwt_leeway_seconds = num(&value)? as u64,
                "TWINGRAPH_JWT_ROLES_CLAIM" => self.jwt_roles_claim.clone_from(&value),
                "TWINGRAPH_JWT_TWINS_CLAIM" => self.jwt_twins_claim.clone_from(&value),
                "TWINGRAPH_MAX_ALIASES" => self.max_aliases = num(&value)?,
                "TWINGRAPH_MAX_OPERATIONS_PER_REQUEST" => {
                    self.max_operations_per_request = num(&value)?;
                }
                "TWINGRAPH_MAX_BATCH_OPERATIONS" => self.max_batch_operations = num(&value)?,
                "TWINGRAPH_MAX_SUBSCRIPTIONS_PER_CONNECTION" => {
                    self.max_subscriptions_per_connection = num(&value)?;
                }
                "TWINGRAPH_RATE_LIMIT_PER_SECOND" => {
                    self.rate_limit_per_second =
                        u32::try_from(num(&value)?).map_err(|e| bad(e.to_string()))?;
                }
                "TWINGRAPH_RATE_LIMIT_BURST" => {
                    self.rate_limit_burst =
                        u32::try_from(num(&value)?).map_err(|e| bad(e.to_string()))?;
                }
                "TWINGRAPH_INTROSPECTION" => self.introspection = boolean(&value).map_err(bad)?,
                "TWINGRAPH_CORS_ORIGINS" => {
                    self.cors_origins = value
                        .split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "TWINGRAPH_TLS_CERT" => {
                    self.tls_cert = Some(PathBuf::from(&value)).filter(|_| !value.is_empty())
                }
                "TWINGRAPH_TLS_KEY" => {
                    self.tls_key = Some(PathBuf::from(&value)).filter(|_| !value.is_empty())
                }
                "TWINGRAPH_METRICS_TOKEN" => {
                    self.metrics_token = Some(value.clone()).filter(|v| !v.is_empty())
                }
                _ => {}
            }
        }
        Ok(())
    }
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

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        let dir = std::env::temp_dir().join(format!("twingraph-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("twingraph.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:5000\"\ndata = \"/file/data\"\nmodels = \"/file/models\"\n",
        )
        .expect("write config");
        let env = env_of(&[
            ("TWINGRAPH_DATA", "/env/data"),
            ("TWINGRAPH_MODELS", "/env/models"),
        ]);
        let flags = Overrides {
            models: Some(PathBuf::from("/flag/models")),
            ..Overrides::default()
        };
        let c = Config::load(Some(&file), &env, &flags).expect("config");
        assert_eq!(
            c.listen,
            SocketAddr::from(([127, 0, 0, 1], 5000)),
            "from the file"
        );
        assert_eq!(c.data, PathBuf::from("/env/data"), "env beats file");
        assert_eq!(c.models, PathBuf::from("/flag/models"), "flag beats env");
        assert_eq!(c.containment, "contains", "default");
    }

    #[test]
    fn the_metrics_token_comes_from_the_file_or_the_environment() {
        let dir = std::env::temp_dir().join(format!("twingraph-config-mt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("twingraph.toml");
        std::fs::write(&file, "metrics_token = \"from-file\"\n").expect("write config");
        let none = Overrides::default();
        let c = Config::load(Some(&file), &|_| None, &none).expect("config");
        assert_eq!(c.metrics_token.as_deref(), Some("from-file"));
        let env = env_of(&[("TWINGRAPH_METRICS_TOKEN", "from-env")]);
        let c = Config::load(Some(&file), &env, &none).expect("config");
        assert_eq!(c.metrics_token.as_deref(), Some("from-env"));
        // Set but empty: no token.
        let c =
            Config::load(None, &env_of(&[("TWINGRAPH_METRICS_TOKEN", "")]), &none).expect("config");
        assert_eq!(c.metrics_token, None);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let dir = std::env::temp_dir().join(format!("twingraph-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("bad.toml");
        std::fs::write(&file, "listne = \"127.0.0.1:5000\"\n").expect("write config");
        let e = Config::load(Some(&file), &|_| None, &Overrides::default()).expect_err("typo");
        assert!(e.to_string().contains("listne"), "{e}");
        let e = Config::load(
            None,
            &env_of(&[("TWINGRAPH_LISTEN", "not an address")]),
            &Overrides::default(),
        )
        .expect_err("bad env");
        assert!(e.to_string().contains("TWINGRAPH_LISTEN"), "{e}");
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(c.data, PathBuf::from("data"));
        assert_eq!(c.models, PathBuf::from("dtdl"));
        assert_eq!(c.max_traversal_depth, 10);
    }
}
