//! `twingraph serve`: the GraphQL server over the embedded store or Neo4j.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Args;

use crate::config::{Config, Overrides};
use crate::dtdl::{self, Options, load};
use crate::graphql;
use crate::server::{self, AppState};
use crate::store::bolt::{BoltConfig, BoltStore};
use crate::store::{GraphStore, StoreConfig, StoreError, embedded};
use crate::twin::GraphConfig;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (TOML). Default: ./twingraph.toml when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:4000].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// Data directory of the embedded store [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Folder of DTDL models [default: ./dtdl].
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// Store [default: embedded], or a Neo4j URI: bolt://host:7687,
    /// neo4j://, bolt+s://, neo4j+s://.
    #[arg(long, value_name = "URI")]
    pub store: Option<String>,
    /// Neo4j user [default: neo4j].
    #[arg(long, value_name = "USER")]
    pub store_user: Option<String>,
    /// Neo4j password (prefer TWINGRAPH_STORE_PASSWORD: flags show in `ps`).
    #[arg(long, value_name = "PASSWORD")]
    pub store_password: Option<String>,
    /// Neo4j database [default: the server's default].
    #[arg(long, value_name = "NAME")]
    pub store_database: Option<String>,
    /// Load a generated demo plant into an empty store.
    #[arg(long)]
    pub demo: bool,
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// PEM certificate chain: serve HTTPS / WSS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve the MQTT device endpoint (Azure IoT Hub's device protocol) on
    /// this address; over TLS with --tls-cert.
    #[arg(long, value_name = "ADDR:PORT")]
    pub mqtt_listen: Option<std::net::SocketAddr>,
}

/// Bearer-token settings (authentication is on once a key is given).
#[derive(Debug, Clone, Default, Args)]
pub struct JwtArgs {
    /// HS256 shared secret (prefer TWINGRAPH_JWT_SECRET: flags show in `ps`).
    #[arg(long, value_name = "SECRET")]
    pub jwt_secret: Option<String>,
    /// PEM file with the RS256 (RSA) or ES256 (P-256) public key.
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,
    /// JWKS file with public keys by `kid` (reloaded when it changes).
    #[arg(long, value_name = "FILE")]
    pub jwks: Option<PathBuf>,
    /// Required token issuer (`iss`).
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Option<String>,
    /// Required token audience (`aud`).
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Option<String>,
}

impl JwtArgs {
    pub fn overrides(&self, base: Overrides) -> Overrides {
        Overrides {
            jwt_secret: self.jwt_secret.clone(),
            jwt_public_key: self.jwt_public_key.clone(),
            jwks: self.jwks.clone(),
            jwt_issuer: self.jwt_issuer.clone(),
            jwt_audience: self.jwt_audience.clone(),
            ..base
        }
    }
}

pub fn run(args: &ServeArgs) -> anyhow::Result<u8> {
    let file = args
        .config
        .clone()
        .or_else(|| Some(PathBuf::from("twingraph.toml")).filter(|p| p.is_file()));
    let overrides = Overrides {
        listen: args.listen,
        data: args.data.clone(),
        models: args.models.clone(),
        store: args.store.clone(),
        store_user: args.store_user.clone(),
        store_password: args.store_password.clone(),
        store_database: args.store_database.clone(),
        demo: args.demo,
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        mqtt_listen: args.mqtt_listen,
        ..Overrides::default()
    };
    let overrides = args.jwt.overrides(overrides);
    let config = Config::load(file.as_deref(), &|k| std::env::var(k).ok(), &overrides)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("log filter {:?}", config.log))?;
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(config))?;
    Ok(super::EXIT_OK)
}

/// The store `config` names, opened.
enum Opened {
    Embedded(Arc<crate::store::Store>),
    Bolt(BoltStore),
}

impl Opened {
    fn graph_store(&self) -> Arc<dyn GraphStore> {
        match self {
            Opened::Embedded(s) => s.clone(),
            Opened::Bolt(s) => Arc::new(s.clone()),
        }
    }

    fn close(&self) {
        match self {
            Opened::Embedded(s) => s.close(),
            Opened::Bolt(s) => s.close(),
        }
    }
}

async fn open_store(
    config: &Config,
    models: Arc<dtdl::ModelSet>,
    store_config: StoreConfig,
) -> anyhow::Result<Opened> {
    let scheme = config.store.uri.split("://").next().unwrap_or_default();
    match (config.store.uri.as_str(), scheme) {
        (crate::store::EMBEDDED, _) => Ok(Opened::Embedded(Arc::new(embedded::open(
            &config.store.data,
            models,
            store_config,
        )?))),
        (_, "bolt" | "bolt+s" | "bolt+ssc" | "neo4j" | "neo4j+s" | "neo4j+ssc") => {
            let mut bolt = BoltConfig::new(
                &config.store.uri,
                &config.store.user,
                &config.store.password,
            );
            bolt.database.clone_from(&config.store.database);
            bolt.max_connections = config.store.pool;
            bolt.poll = std::time::Duration::from_millis(config.store.poll_ms.max(1));
            bolt.timeout = std::time::Duration::from_millis(config.store.timeout_ms.max(1));
            bolt.statement_timeout =
                std::time::Duration::from_millis(config.store.statement_timeout_ms.max(1));
            // Neo4j may start after us (compose, Kubernetes): wait for it,
            // saying so, rather than exit; anything else fails at once.
            let mut delay = std::time::Duration::from_millis(500);
            let stop = shutdown_signal();
            tokio::pin!(stop);
            loop {
                let connect =
                    BoltStore::connect(bolt.clone(), models.clone(), store_config.clone());
                let outcome = tokio::select! {
                    r = connect => r,
                    () = &mut stop => anyhow::bail!("stopped while waiting for Neo4j"),
                };
                match outcome {
                    Ok(store) => return Ok(Opened::Bolt(store)),
                    Err(StoreError::Unavailable(why) | StoreError::Timeout(why)) => {
                        tracing::warn!(store = %config.store.uri, error = %why, "waiting for Neo4j");
                    }
                    Err(e) => {
                        return Err(anyhow::Error::new(e)).with_context(|| {
                            format!("opening the Neo4j store at {}", config.store.uri)
                        });
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = &mut stop => anyhow::bail!("stopped while waiting for Neo4j"),
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
        }
        _ => anyhow::bail!(
            "store {:?} is not supported; use \"embedded\" or a bolt://, bolt+s://, neo4j:// or neo4j+s:// URI",
            config.store.uri
        ),
    }
}

/// The token verifier, or `None` in development mode (no key configured),
/// which only a loopback address may serve.
fn authentication(config: &Config) -> anyhow::Result<Option<Arc<crate::auth::Verifier>>> {
    let jwt = config.auth.clone();
    if jwt.enabled() {
        let verifier = crate::auth::Verifier::new(jwt).context("JWT key settings")?;
        return Ok(Some(Arc::new(verifier)));
    }
    if !config.http.listen.ip().is_loopback() {
        anyhow::bail!(
            "no JWT key is configured, so authentication is off (development mode), which serves loopback addresses only; \
             configure a key (TWINGRAPH_JWT_SECRET, --jwt-public-key or --jwks) to listen on {}",
            config.http.listen
        );
    }
    tracing::warn!(
        "authentication is OFF: no JWT key is configured (development mode, loopback only); every request may do everything"
    );
    Ok(None)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let auth = authentication(&config)?;
    // Models come from the models folder plus those uploaded at runtime.
    let uploaded = config.store.data.join("models");
    let mut model_paths = vec![config.models.folder.clone()];
    if uploaded.is_dir() {
        model_paths.push(uploaded.clone());
    }
    // Reading and checking the models is heavy: off the async workers.
    let (sources, outcome) = tokio::task::spawn_blocking(move || {
        let sources = load::read_paths(&model_paths)?;
        let outcome = dtdl::check(&sources, &Options::default());
        Ok::<_, anyhow::Error>((sources, outcome))
    })
    .await?
    .with_context(|| format!("reading models from {}", config.models.folder.display()))?;
    let Some(models) = outcome.model else {
        for d in outcome.diagnostics.iter().take(20) {
            eprintln!("{d}");
        }
        anyhow::bail!(
            "the models in {} are invalid or incomplete (run `twingraph check {}`)",
            config.models.folder.display(),
            config.models.folder.display()
        );
    };
    let store_config = StoreConfig {
        graph: GraphConfig {
            containment: config.models.containment.clone(),
            max_clock_skew: i64::try_from(config.devices.max_clock_skew_seconds)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
        },
        max_depth: config.limits.max_traversal_depth,
        retention: config
            .store
            .retention_days
            .map(|d| std::time::Duration::from_secs(d * 86_400)),
        live_buffer: config.limits.live_buffer,
        storage_cache_bytes: config.store.cache_mb.map_or_else(
            crate::store::core::machine_cache_bytes,
            |mb| {
                // 1 MiB at least: redb needs a few pages of cache to write.
                usize::try_from(mb.max(1).saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
            },
        ),
        checkpoint_events: config.store.checkpoint_events,
        ..StoreConfig::default()
    };
    let store = open_store(&config, Arc::new(models), store_config).await?;
    let dyn_store = store.graph_store();
    // Models uploaded through other servers over the same store (Neo4j
    // replicas) that this one's folders do not hold.
    let library = Arc::new(graphql::ModelLibrary::new(sources, Some(uploaded)));
    if graphql::upload::adopt_uploaded(&library, &dyn_store)
        .await
        .map_err(anyhow::Error::msg)?
        .is_some()
    {
        tracing::info!("took in models uploaded through other servers");
    }
    if config.demo.enabled && dyn_store.last_seq() == 0 {
        let (batches, twins) = crate::demo::plant(config.demo.cells);
        for b in batches {
            dyn_store.apply(b, "demo").await?;
        }
        tracing::info!(twins, "loaded the demo plant");
    }
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let rollouts = crate::rollout::Rollouts::start_with(
        dyn_store.clone(),
        crate::rollout::Options {
            schedule: config.rollouts.scheduler,
            ..crate::rollout::Options::default()
        },
    )
    .await?;
    let devices = crate::devices::Devices::start(
        dyn_store.clone(),
        crate::devices::service::Options {
            secret: device_secret(&config, matches!(store, Opened::Embedded(_)))?,
            hostname: config.devices.hostname.clone(),
            method_timeout: std::time::Duration::from_secs(
                config.devices.method_timeout_seconds.max(1),
            ),
            authorities: device_authorities(&config.devices.ca_certificates)?,
            ..crate::devices::service::Options::default()
        },
    )
    .await?;
    // Time series, derived from the log by a follower (the embedded store's
    // in `series.redb` beside it; the Neo4j store's in its database,
    // written by the server holding the `series` lease).
    let series = match &store {
        Opened::Embedded(_) => {
            let backend = crate::series::Backend::open(&config.store.data)?;
            Some(Arc::new(crate::series::Series::new(
                backend,
                config.series.config(),
            )?))
        }
        Opened::Bolt(b) => Some(Arc::new(
            crate::series::Series::open(
                crate::series::Backend::bolt(b.clone()),
                config.series.config(),
            )
            .await?,
        )),
    };
    let live = graphql::Shutdown::default();
    let series_task = series
        .clone()
        .map(|s| tokio::spawn(s.follow(dyn_store.clone(), live.clone().triggered())));
    // Alarm rules evaluated on this server (every server may: each alarm
    // is recorded once), until shutdown.
    let alarms = crate::alarms::Alarms::start(
        dyn_store.clone(),
        crate::alarms::Options {
            tick: std::time::Duration::from_millis(config.alarms.tick_ms.max(10)),
            ..Default::default()
        },
        live.clone().triggered(),
    )
    .await?;
    let lifecycle = crate::lifecycle::Lifecycle::start(dyn_store.clone()).await?;
    let limits = graphql::schema::Limits {
        depth: config.limits.max_query_depth,
        complexity: config.limits.max_query_complexity,
        max_page: config.limits.max_page,
        live_buffer: config.limits.live_buffer,
        aliases: config.limits.max_aliases,
        batch_ops: config.limits.max_batch_operations,
        introspection: config.graphql.introspection,
    };
    // Compiling the schema is heavy: off the async workers.
    let schema = {
        let (store, live, metrics, rollouts) = (
            dyn_store.clone(),
            live.clone(),
            metrics.clone(),
            rollouts.clone(),
        );
        let served = graphql::Served {
            devices: devices.clone(),
            series: series.clone(),
            alarms: Some(alarms.clone()),
            lifecycle: Some(lifecycle.clone()),
        };
        tokio::task::spawn_blocking(move || {
            graphql::build_served(store, limits, live, metrics, library, rollouts, served)
        })
        .await??
    };
    schema.follow_uploads();
    if !config.models.repositories.is_empty() {
        devices.resolve_models_with(schema.model_resolver(config.models.repositories.clone()));
    }
    let ready = Arc::new(AtomicBool::new(false));
    if auth.is_some()
        && config
            .http
            .metrics_token
            .as_deref()
            .is_none_or(str::is_empty)
    {
        tracing::warn!(
            "/metrics is readable without a token (aggregate counts only); set metrics_token to require one"
        );
    }
    let tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls::config(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("TLS needs both tls_cert and tls_key"),
    };
    let mqtt_tls = match (
        (&config.mqtt.tls_cert, &config.mqtt.tls_key),
        (&config.http.tls_cert, &config.http.tls_key),
    ) {
        ((Some(cert), Some(key)), _) | ((None, None), (Some(cert), Some(key))) => {
            Some(server::tls::device_config(cert, key)?)
        }
        ((None, None), _) => None,
        _ => anyhow::bail!("the MQTT endpoint's TLS needs both mqtt.tls_cert and mqtt.tls_key"),
    };
    let endpoint = (config.mqtt.listen.is_some() || config.mqtt.websocket).then(|| {
        crate::devices::mqtt::Endpoint::new(
            devices.clone(),
            crate::devices::mqtt::Options {
                max_message_bytes: usize::try_from(config.mqtt.max_message_bytes)
                    .unwrap_or(usize::MAX),
                messages_per_second: config.mqtt.messages_per_second.max(1) as f64,
                metrics: Some(metrics.clone()),
                ..crate::devices::mqtt::Options::default()
            },
            mqtt_tls.clone(),
        )
    });
    let mqtt = match (config.mqtt.listen, &endpoint) {
        (Some(at), Some(endpoint)) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("MQTT endpoint: listening on {at}"))?;
            let local = l.local_addr()?;
            let scheme = if mqtt_tls.is_some() { "mqtts" } else { "mqtt" };
            if mqtt_tls.is_none() && !local.ip().is_loopback() {
                tracing::warn!(%local, "the MQTT endpoint is plain TCP (no tls_cert): device tokens travel unencrypted");
            }
            println!("twingraph MQTT device endpoint on {scheme}://{local}");
            Some(tokio::spawn(endpoint.clone().serve(l)))
        }
        _ => None,
    };
    let app = server::app(AppState {
        store: dyn_store,
        schema,
        ready: ready.clone(),
        max_body_bytes: config.limits.max_body_bytes,
        metrics,
        auth,
        http: server::HttpSettings {
            max_operations: config.limits.max_operations_per_request,
            max_subscriptions: config.limits.max_subscriptions_per_connection,
            rate: (config.limits.rate_limit_per_second > 0).then(|| {
                let rate = f64::from(config.limits.rate_limit_per_second);
                let burst = match config.limits.rate_limit_burst {
                    0 => rate * 2.0,
                    b => f64::from(b),
                };
                Arc::new(server::RateLimiter::new(rate, burst))
            }),
            cors_origins: config.http.cors_origins.clone(),
            metrics_token: config.http.metrics_token.clone().filter(|t| !t.is_empty()),
            mqtt: endpoint.clone().filter(|_| config.mqtt.websocket),
        },
    });
    let listener = server::bind(config.http.listen)
        .with_context(|| format!("listening on {}", config.http.listen))?;

    let addr = listener.local_addr()?;
    // Listening for signals before saying we listen: a SIGTERM sent as soon
    // as the address is printed still shuts down gracefully.
    let stop = shutdown_signal();
    ready.store(true, Ordering::Release);
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("twingraph listening on {scheme}://{addr} (GraphiQL at /, GraphQL at /graphql)");
    let shutdown = async move {
        stop.await;
        tracing::info!("shutdown requested: completing subscriptions, finishing requests");
        live.trigger();
    };
    match tls {
        Some(tls) => server::run_tls(listener, tls, app, shutdown).await?,
        None => server::run(listener, app, shutdown).await?,
    }
    if let Some(endpoint) = &endpoint {
        endpoint.stop();
    }
    if let Some(task) = mqtt {
        let _ = task.await;
    }
    devices.stop().await;
    rollouts.stop().await;
    lifecycle.stop().await;
    if let Some(task) = series_task {
        // Its last flush, before the store closes.
        let _ = task.await;
    }
    tracing::info!("shutting down: flushing the store");
    store.close();
    Ok(())
}

/// The device secret: the setting, else (embedded store) the one kept in
/// the data folder, made on first use; else none.
/// The certificate authorities of `devices.ca_certificates`.
fn device_authorities(files: &[PathBuf]) -> anyhow::Result<Vec<crate::devices::x509::Authority>> {
    let mut out = Vec::new();
    for f in files {
        let pem = std::fs::read_to_string(f).map_err(|e| {
            anyhow::anyhow!("devices.ca_certificates: cannot read {}: {e}", f.display())
        })?;
        let cas = crate::devices::x509::Authority::from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("devices.ca_certificates: {}: {e}", f.display()))?;
        for ca in &cas {
            tracing::info!(
                subject = ca.subject,
                thumbprint = ca.thumbprint,
                "trusting a device certificate authority"
            );
        }
        out.extend(cas);
    }
    Ok(out)
}

fn device_secret(
    config: &Config,
    embedded: bool,
) -> anyhow::Result<Option<crate::devices::keys::Secret>> {
    use crate::devices::keys::Secret;
    if let Some(s) = config.devices.secret.as_deref().filter(|s| !s.is_empty()) {
        return Secret::new(s.as_bytes())
            .map(Some)
            .map_err(|e| anyhow::anyhow!("devices.secret: {e}"));
    }
    if !embedded {
        tracing::warn!(
            "devices.secret is not set: symmetric-key devices cannot be registered or connect (set the same secret on every server over this store)"
        );
        return Ok(None);
    }
    let path = config.store.data.join("device-secret");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let t = Secret::generate();
            write_private(&path, &t)
                .with_context(|| format!("writing the device secret {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated the device secret (device keys derive from it: back it up with the data)");
            t
        }
        Err(e) => {
            return Err(e).with_context(|| format!("reading the device secret {}", path.display()));
        }
    };
    Secret::new(text.trim().as_bytes())
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes a file only its owner may read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed
/// here, at the call, not when the future is first polled: a signal that
/// comes before then must not kill the process unannounced.
fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        tokio::select! {
            () = received(int) => {},
            () = received(term) => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The next delivery of a signal (never, if it could not be listened to).
#[cfg(unix)]
async fn received(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
