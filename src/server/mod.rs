//! The HTTP layer: routes, the authentication gate, health checks, the
//! metrics, and the server loop with graceful shutdown. Only this module
//! knows HTTP: `graphql` is GraphQL over HTTP (media types, status
//! codes, request parsing), `ws` GraphQL over WebSocket, `tls` HTTPS.
//!
//! `app(state)` builds the router (tests can drive it without a socket);
//! `run(listener, app, shutdown)` serves it until `shutdown` resolves, then
//! stops accepting and lets in-flight requests finish.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::WebSocketUpgrade;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::codes::Code;
use crate::metrics::Metrics;
use crate::store::GraphStore;

mod graphiql;
mod graphql;
mod mqtt_ws;
pub mod rate;
pub mod tls;
mod ws;

pub use rate::RateLimiter;

/// The address served unless told otherwise (loopback: no token needed
/// in development).
pub const DEFAULT_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 4000);

/// The largest request body taken unless told otherwise.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What the HTTP layer enforces besides the schema's own limits.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Operations one request (a JSON array batch) may carry.
    pub max_operations: usize,
    /// Subscriptions one WebSocket connection may hold at once.
    pub max_subscriptions: usize,
    /// Requests per second per caller (its token's `sub`); `None`: unlimited.
    pub rate: Option<Arc<RateLimiter>>,
    /// Origins a browser may call from (CORS); empty: none (same origin only).
    pub cors_origins: Vec<String>,
    /// Bearer token `/metrics` requires; `None`: open.
    pub metrics_token: Option<String>,
    /// The MQTT device endpoint, also served over WebSocket at `/mqtt` and
    /// `/$iothub/websocket` (where the Azure IoT device SDKs look for it);
    /// `None`: not served.
    pub mqtt: Option<Arc<crate::devices::mqtt::Endpoint>>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_operations: 10,
            max_subscriptions: 100,
            rate: None,
            cors_origins: Vec::new(),
            metrics_token: None,
            mqtt: None,
        }
    }
}

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn GraphStore>,
    pub schema: crate::graphql::LiveSchema,
    /// Set once startup (models, store, demo data) is done.
    pub ready: Arc<AtomicBool>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub metrics: Arc<Metrics>,
    /// Checks bearer tokens; `None`: authentication is off (development
    /// mode: every request may do everything).
    pub auth: Option<Arc<crate::auth::Verifier>>,
    pub http: HttpSettings,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The router: `/graphql` (POST and GET), `/graphql/ws` (subscriptions over
/// WebSocket: `graphql-transport-ws` and the legacy `graphql-ws`), GraphiQL at `/`, `/healthz`, `/readyz`.
pub fn app(state: AppState) -> Router {
    let ready = state.ready.clone();
    let limit = state.max_body_bytes;
    let (metrics, scrape_metrics, store) = (
        state.metrics.clone(),
        state.metrics.clone(),
        state.store.clone(),
    );
    let ready_store = state.store.clone();
    let metrics_token = state.http.metrics_token.clone();
    let gate = Gate {
        auth: state.auth.clone(),
        store: state.store.clone(),
        rate: state.http.rate.clone(),
        max_operations: state.http.max_operations,
        max_subscriptions: state.http.max_subscriptions,
        verified: Arc::default(),
    };
    let graphql = {
        let (schema, gate) = (state.schema.clone(), gate.clone());
        let handler = move |req: Request| graphql::graphql_http(schema.clone(), gate.clone(), req);
        get(handler.clone()).post(handler)
    };
    let cors = cors_layer(&state.http.cors_origins);
    let router = Router::new()
        .merge(graphiql::routes())
        .route("/graphql", graphql)
        .route(
            "/graphql/ws",
            get({
                let schema = state.schema.clone();
                move |headers: axum::http::HeaderMap, upgrade: WebSocketUpgrade| {
                    subscriptions(schema.clone(), gate.clone(), limit, headers, upgrade)
                }
            }),
        )
        .route("/mqtt", get(mqtt_ws::upgrade).with_state(state.http.mqtt.clone()))
        .route(
            "/$iothub/websocket",
            get(mqtt_ws::upgrade).with_state(state.http.mqtt.clone()),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move |headers: axum::http::HeaderMap| {
                let text = metrics_allowed(metrics_token.as_deref(), &headers)
                    .then(|| scrape_metrics.render(store.last_seq(), &store.connection_counts()));
                async move {
                    match text {
                        Some(text) => (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response(),
                        None => (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, "Bearer")],
                            "/metrics needs the metrics token: Authorization: Bearer <metrics_token>\n",
                        )
                            .into_response(),
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                let store = ready_store.clone();
                async move {
                    if !ready.load(Ordering::Acquire) {
                        (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response()
                    } else if !store.is_ready() {
                        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
                    } else {
                        (StatusCode::OK, "ready").into_response()
                    }
                }
            }),
        )
        .layer(axum::middleware::from_fn(move |req, next| {
            limit_body(limit, req, next)
        }))
        .layer(axum::middleware::from_fn(no_sniff));
    let router = match cors {
        Some(c) => router.layer(c),
        None => router,
    };
    router.layer(axum::middleware::from_fn(move |req, next| {
        count(metrics.clone(), req, next)
    }))
}

/// Cross-origin access for `origins` (none: no CORS headers, so browsers
/// keep other origins out).
fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let list: Vec<header::HeaderValue> = origins
        .iter()
        .filter_map(|o| header::HeaderValue::from_str(o).ok())
        .collect();
    if list.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// Every response: its content type is to be taken as given.
async fn no_sniff(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Connections the kernel may queue before the server accepts them: after a
/// restart, thousands of dashboards reconnect at once, and a short queue
/// resets them (the kernel caps this at `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a deep accept queue.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Read buffer of one WebSocket connection. tungstenite zero-fills up to
/// this much on every read attempt, and a subscription connection is polled
/// (and tries a read) every time one of its streams yields: with the 128 KiB
/// default, a change fanned out to 10,000 subscribers meant 1.3 GB of
/// memset (and gigabytes of buffers). Client messages are small; longer
/// ones simply take several reads.
const WS_READ_BUFFER: usize = 1024;

/// Who may come in: checks bearer tokens into the caller's [`Access`],
/// and the request limits.
#[derive(Clone)]
pub(crate) struct Gate {
    auth: Option<Arc<crate::auth::Verifier>>,
    store: Arc<dyn GraphStore>,
    rate: Option<Arc<RateLimiter>>,
    max_operations: usize,
    max_subscriptions: usize,
    /// Tokens verified lately, with the key generation that verified them:
    /// a client sends the same token with every request, and its access
    /// (and what its guarded store learnt of the hierarchy) carries over.
    verified: Arc<std::sync::Mutex<std::collections::HashMap<String, (crate::auth::Access, u64)>>>,
}

/// Tokens remembered at most (all are forgotten when it fills up).
const VERIFIED_TOKENS: usize = 10_000;

/// Why a caller was turned away.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No usable token: `UNAUTHENTICATED` (HTTP 401).
    Unauthenticated(String),
    /// A valid token that grants nothing: `FORBIDDEN` (HTTP 403).
    Forbidden(String),
    /// Over the caller's request rate: `RATE_LIMITED` (HTTP 429), with
    /// how long to wait.
    RateLimited(std::time::Duration),
    /// Over a request limit: `BAD_REQUEST` (HTTP 400).
    Limit(String),
}

impl Refusal {
    fn code(&self) -> Code {
        match self {
            Refusal::Unauthenticated(_) => Code::Unauthenticated,
            Refusal::Forbidden(_) => Code::Forbidden,
            Refusal::RateLimited(_) => Code::RateLimited,
            Refusal::Limit(_) => Code::TooManyOperations,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Unauthenticated(m) | Refusal::Forbidden(m) | Refusal::Limit(m) => m.clone(),
            Refusal::RateLimited(wait) => {
                format!("too many requests; retry in {} ms", wait.as_millis().max(1))
            }
        }
    }

    /// As a GraphQL error (for WebSocket `error` messages).
    fn graphql_error(&self) -> serde_json::Value {
        graphql_error(self.code(), &self.message())
    }

    fn into_response(self) -> Response {
        let mut resp = refused(self.code(), &self.message());
        match self {
            Refusal::Unauthenticated(_) => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            Refusal::RateLimited(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                if let Ok(v) = header::HeaderValue::from_str(&secs.max(1).to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// A GraphQL-shaped error of `code` saying `message`, for answers the HTTP
/// layer gives itself (its extensions are the table's, as everywhere).
fn graphql_error(code: Code, message: &str) -> serde_json::Value {
    let extensions: serde_json::Map<String, serde_json::Value> = code
        .extensions()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    serde_json::json!({"message": message, "extensions": extensions})
}

/// A request refused whole with `code` (its status from the table).
fn refused(code: Code, message: &str) -> Response {
    let status = code
        .status()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    let body = serde_json::json!({"errors": [graphql_error(code, message)]});
    (status, axum::Json(body)).into_response()
}

/// Whether a request with `headers` may read `/metrics`: always when no
/// token is set, else only with that token (compared in constant time).
fn metrics_allowed(token: Option<&str>, headers: &axum::http::HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let Some(want) = token else { return true };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .is_some_and(|got| bool::from(got.as_bytes().ct_eq(want.as_bytes())))
}

/// The token of an `Authorization: Bearer …` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Gate {
    /// The caller of a request carrying `authorization` (a header value),
    /// when authentication is on.
    pub(crate) fn admit(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<crate::auth::Access>, Refusal> {
        let Some(verifier) = &self.auth else {
            return Ok(None);
        };
        let value = authorization.ok_or_else(|| {
            Refusal::Unauthenticated(
                "a bearer token is required (Authorization: Bearer ...)".into(),
            )
        })?;
        let token = bearer(value).ok_or_else(|| {
            Refusal::Unauthenticated("the Authorization header must be \"Bearer <token>\"".into())
        })?;
        verifier.refresh_keys();
        let generation = verifier.generation();
        {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((access, g)) = verified.get(token)
                && *g == generation
            {
                if verifier.unexpired(&access.principal) {
                    return Ok(Some(access.clone()));
                }
                return Err(Refusal::Unauthenticated(
                    "invalid token: the token has expired".into(),
                ));
            }
        }
        let principal = verifier
            .verify(token)
            .map_err(|e| Refusal::Unauthenticated(format!("invalid token: {e}")))?;
        if !principal.may(crate::auth::Action::Read) {
            return Err(Refusal::Forbidden(format!(
                "the token of {} grants no known role",
                principal.sub
            )));
        }
        let access = crate::auth::Access::new(principal, self.store.clone());
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_TOKENS {
            verified.clear();
        }
        verified.insert(token.to_owned(), (access.clone(), generation));
        Ok(Some(access))
    }

    /// Takes `cost` requests from the caller's rate (keyed by its token's
    /// subject; all anonymous callers share one key).
    pub(crate) fn charge(
        &self,
        access: Option<&crate::auth::Access>,
        cost: usize,
    ) -> Result<(), Refusal> {
        let Some(rate) = &self.rate else {
            return Ok(());
        };
        let key = access.map_or(crate::auth::ANONYMOUS, |a| a.principal.sub.as_str());
        rate.take(key, cost as f64).map_err(Refusal::RateLimited)
    }
}

/// A GraphQL WebSocket connection (`graphql-transport-ws` or `graphql-ws`);
/// each subscription runs on the schema serving when it starts. Client messages are
/// limited to `max_message` bytes, like request bodies. With authentication
/// on, the token comes with the upgrade request (`Authorization`) or in
/// `connection_init` (`{"Authorization": "Bearer ..."}`).
async fn subscriptions(
    schema: crate::graphql::LiveSchema,
    gate: Gate,
    max_message: usize,
    headers: axum::http::HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = ws::Protocol::negotiate(&headers) else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    // A token on the upgrade request is checked at once (a bad one is
    // refused before the upgrade); else `connection_init` must bring one.
    let upgrade_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if upgrade_token.is_some()
        && let Err(r) = gate.admit(upgrade_token.as_deref())
    {
        return r.into_response();
    }
    upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .protocols([protocol.name()])
        .on_upgrade(move |socket| ws::serve(socket, schema, protocol, gate, upgrade_token))
}

/// Counts requests by route (known routes only: bounded label values) and
/// status, and runs each request in a span carrying its request id (the
/// client's `x-request-id` when it sent a sane one, else a new UUID), which
/// the response echoes.
async fn count(metrics: Arc<Metrics>, req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let route: &'static str = match req.uri().path() {
        "/graphql" => "/graphql",
        "/graphql/ws" => "/graphql/ws",
        "/" => "/",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "other",
    };
    let span = tracing::info_span!("request", request_id = %id, route);
    let mut resp = next.run(req).instrument(span).await;
    metrics.http_request(route, resp.status().as_u16());
    if let Ok(v) = header::HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

const REQUEST_ID: &str = "x-request-id";

/// Refuses bodies over `limit` bytes: at once (413) when `Content-Length`
/// says so, else by cutting the stream off at the limit.
async fn limit_body(limit: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refused(
            Code::BodyTooLarge,
            &format!("request body larger than {limit} bytes"),
        );
    }
    next.run(req.map(|b| Body::new(http_body_util::Limited::new(b, limit))))
        .await
}

/// [`run`] over TLS: HTTPS and WSS with `tls` (see [`tls::config`]).
pub async fn run_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tls::TlsListener::new(listener, tls)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops
/// accepting and waits for in-flight requests.
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // No Nagle delay: responses and subscription messages are small writes.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
