//! The MQTT device endpoint: MQTT 3.1.1 (rumqttc's packet codec) with the
//! topics, payloads and authentication of Azure IoT Hub's device protocol,
//! so devices built on the Azure IoT device SDKs connect unchanged.
//!
//! ```text
//! CONNECT  client id = device id, user name {host}/{deviceId}/?api-version=..[&model-id=..],
//!          password = SAS token signed with the device's key
//!   ──▶ Devices::authenticate ──▶ CONNACK ──▶ Hub::attach, deviceConnected
//! device ──▶ devices/{id}/messages/events/{properties}  telemetry ──▶ PatchReported
//!            $iothub/twin/GET/?$rid=                   ──▶ $iothub/twin/res/200/?$rid=
//!            $iothub/twin/PATCH/properties/reported/?$rid=
//!                                                      ──▶ PatchReported ──▶ res/204/?$rid=&$version=
//!            $iothub/methods/res/{status}/?$rid=       ──▶ the caller of the method
//! server ──▶ $iothub/twin/PATCH/properties/desired/?$version=   (from the hub)
//!            $iothub/methods/POST/{name}/?$rid=                 (from the hub)
//! ```
//!
//! Every write goes through the device's own [`GuardedStore`]: confined to
//! its twin, as the device role is over GraphQL. A packet the protocol does
//! not allow (another device's topic, QoS 2, a malformed packet, one over
//! the size limit) ends the connection; a twin request the store refuses is
//! answered with IoT Hub's status and a JSON body saying why.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use super::hub::{Attached, MethodAnswer, ToDevice};
use super::service::{Devices, Refusal};
use super::wire::{Conn, percent_decode, query_pairs};
use crate::auth::{Access, Principal};
use crate::store::{GraphStore, StoreError};
use crate::twin::{Batch, Op};

/// How the endpoint runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The largest packet a device may send (IoT Hub: 256 KiB messages).
    pub max_message_bytes: usize,
    /// Messages a device may send per second (a bucket of as many); twin
    /// requests over it get 429, telemetry waits.
    pub messages_per_second: f64,
    /// How long a connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Where connections and messages are counted.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_message_bytes: 256 * 1024,
            messages_per_second: 100.0,
            connect_timeout: Duration::from_secs(10),
            metrics: None,
        }
    }
}

/// The endpoint: accepts device connections and serves them.
pub struct Endpoint {
    devices: Arc<Devices>,
    options: Options,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Turns true when the server stops: every session ends.
    stopping: watch::Sender<bool>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("options", &self.options)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// The longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Endpoint {
    /// `tls`: the server's certificate (MQTT over TLS, as devices dial port
    /// 8883); `None` serves plain MQTT (development, a TLS proxy in front).
    pub fn new(
        devices: Arc<Devices>,
        options: Options,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Arc<Endpoint> {
        let tls = tls.map(|c| {
            let mut c = (*c).clone();
            // Device SDKs offer no ALPN (or "mqtt"); HTTP's would refuse them.
            c.alpn_protocols.clear();
            tokio_rustls::TlsAcceptor::from(Arc::new(c))
        });
        Arc::new(Endpoint {
            devices,
            options,
            tls,
            stopping: watch::channel(false).0,
        })
    }

    /// Ends every session and stops accepting connections.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// Accepts connections on `listener` until [`stop`](Endpoint::stop).
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let mut stop = self.stopping.subscribe();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = stopping(&mut stop) => return,
            };
            let (tcp, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "mqtt: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let endpoint = self.clone();
            tokio::spawn(async move {
                match &endpoint.tls {
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                        match handshake {
                            Ok(Ok(tls)) => {
                                let cert = tls
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(super::x509::ClientChain::new);
                                endpoint.session_with(tls, "mqtt", peer, cert).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "mqtt: TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "mqtt: TLS handshake timed out"),
                        }
                    }
                    None => endpoint.session(tcp, "mqtt", peer).await,
                }
            });
        }
    }

    /// Serves one connection (TCP, TLS or a WebSocket's byte stream).
    pub async fn session<S>(self: Arc<Self>, stream: S, protocol: &'static str, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        self.session_with(stream, protocol, peer, None).await;
    }

    /// [`session`](Endpoint::session) of a device that presented a client
    /// certificate chain `cert` in the TLS handshake.
    pub async fn session_with<S>(
        self: Arc<Self>,
        stream: S,
        protocol: &'static str,
        peer: SocketAddr,
        cert: Option<super::x509::ClientChain>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let shutdown = self.stopping.subscribe();
        let (rd, wr) = tokio::io::split(stream);
        let mut conn = Conn::new(rd, wr, self.options.max_message_bytes);
        let connect = tokio::time::timeout(self.options.connect_timeout, conn.next()).await;
        let connect = match connect {
            Ok(Ok(Some(Packet::Connect(c)))) => c,
            Ok(Ok(Some(other))) => {
                tracing::debug!(%peer, packet = ?other, "mqtt: the first packet is not CONNECT");
                return;
            }
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "mqtt: unreadable CONNECT");
                return;
            }
        };
        let refuse = |code| Packet::ConnAck(ConnAck::new(code, false));
        if connect.protocol != rumqttc::mqttbytes::Protocol::V4 {
            let _ = conn
                .send(&refuse(ConnectReturnCode::RefusedProtocolVersion))
                .await;
            return;
        }
        let device = connect.client_id.clone();
        let (username, password) = match &connect.login {
            Some(l) => (l.username.as_str(), l.password.as_str()),
            None => ("", ""),
        };
        let checked = match check_username(username, &device) {
            Ok(model) => {
                let now = self.devices.clock().now() / 1_000_000;
                self.devices
                    .admit(&device, password, model.as_deref(), now, cert.as_ref())
                    .await
                    .map(|d| (d, model))
            }
            Err(e) => Err(e),
        };
        let (identity, model_id) = match checked {
            Ok(d) => d,
            Err(refusal) => {
                tracing::info!(%peer, device, reason = %refusal, "mqtt: connection refused");
                if let Some(m) = &self.options.metrics {
                    m.device_refused();
                }
                let code = match refusal {
                    Refusal::BadCredentials(_) => ConnectReturnCode::BadUserNamePassword,
                    Refusal::NotAuthorized(_) => ConnectReturnCode::NotAuthorized,
                };
                let _ = conn.send(&refuse(code)).await;
                return;
            }
        };
        let twin = identity.spec.twin.clone();
        let store = self.devices.store().clone();
        match store.twin(&twin).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::info!(%peer, device, twin, "mqtt: refused: the device's twin does not exist");
                let _ = conn.send(&refuse(ConnectReturnCode::NotAuthorized)).await;
                return;
            }
            Err(e) => {
                tracing::warn!(%peer, device, error = %e, "mqtt: refused: the store is unavailable");
                let _ = conn
                    .send(&refuse(ConnectReturnCode::ServiceUnavailable))
                    .await;
                return;
            }
        }
        let access = Access::new(Principal::device(&device, &twin), store);
        let attached = self.devices.hub().attach(&device, &twin);
        if conn
            .send(&Packet::ConnAck(ConnAck::new(
                ConnectReturnCode::Success,
                false,
            )))
            .await
            .is_err()
        {
            self.devices.hub().detach(&device, attached.session);
            return;
        }
        let _counted = self.options.metrics.as_ref().map(|m| m.device_connected());
        self.devices.connected(&device, protocol).await;
        tracing::info!(%peer, device, twin, model = model_id.as_deref().unwrap_or(""), "mqtt: device connected");
        let keep_alive = match connect.keep_alive {
            // None asked: IoT Hub's longest.
            0 => Duration::from_secs(1767),
            k => Duration::from_secs(u64::from(k)),
        };
        let session_id = attached.session;
        let mut s = Session {
            metrics: self.options.metrics.clone(),
            device: device.clone(),
            twin,
            access,
            subscribed: Subscribed::default(),
            last_desired: 0,
            pending: HashMap::new(),
            next_rid: 0,
            bucket: Bucket::new(self.options.messages_per_second),
            unknown_telemetry_logged: false,
        };
        let reason = s.run(&mut conn, attached, keep_alive, shutdown).await;
        tracing::info!(%peer, device, reason, "mqtt: device disconnected");
        self.devices.hub().detach(&device, session_id);
        self.devices.disconnected(&device, reason).await;
    }
}

/// Resolves when `shutdown` turns true (or its sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The model a device announces (`model-id` in the user name), after the
/// user name is checked: `{host}/{deviceId}/?{query}` for this device.
fn check_username(username: &str, device: &str) -> Result<Option<String>, Refusal> {
    let bad = || {
        Refusal::BadCredentials(format!(
            "the user name must be {{host}}/{device}/?api-version=..., not {username:?}"
        ))
    };
    let (path, query) = username.split_once("/?").unwrap_or((username, ""));
    let mut parts = path.splitn(2, '/');
    let _host = parts.next().filter(|h| !h.is_empty()).ok_or_else(bad)?;
    let named = parts.next().ok_or_else(bad)?;
    let named = named.strip_suffix('/').unwrap_or(named);
    if named != device && percent_decode(named).as_deref() != Some(device) {
        return Err(bad());
    }
    Ok(query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "model-id")
        .map(|(_, v)| v))
}

/// Which of the device's topics it subscribed to.
#[derive(Debug, Default)]
struct Subscribed {
    twin_responses: bool,
    desired: bool,
    methods: bool,
}

/// A token bucket: `rate` a second, as many at once.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        Bucket {
            rate,
            tokens: rate,
            at: Instant::now(),
        }
    }

    /// Takes a token; else how long until one is there.
    fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

struct Session {
    metrics: Option<Arc<crate::metrics::Metrics>>,
    device: String,
    twin: String,
    access: Access,
    subscribed: Subscribed,
    /// The newest twin version whose desired state the device has (sent or
    /// read): older notifications are not sent.
    last_desired: u64,
    /// Method calls sent, by request id.
    pending: HashMap<String, oneshot::Sender<MethodAnswer>>,
    next_rid: u64,
    bucket: Bucket,
    unknown_telemetry_logged: bool,
}

/// What ends a session, said in the disconnection record.
type Reason = &'static str;

impl Session {
    async fn run<R, W>(
        &mut self,
        conn: &mut Conn<R, W>,
        mut attached: Attached,
        keep_alive: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) -> Reason
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // MQTT: a server may close a connection silent for 1.5 keep-alives.
        let silence = keep_alive + keep_alive / 2;
        let mut heard = Instant::now();
        loop {
            loop {
                match conn.buffered() {
                    Ok(Some(p)) => {
                        heard = Instant::now();
                        if let Err(reason) = self.packet(conn, p).await {
                            let _ = conn.flush().await;
                            return reason;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(device = self.device, error = %e, "mqtt: closing the connection");
                        return "a malformed or oversized packet";
                    }
                }
            }
            if conn.flush().await.is_err() {
                return "the connection broke";
            }
            let deadline = heard + silence;
            tokio::select! {
                read = conn.fill() => match read {
                    Ok(true) => {}
                    Ok(false) => return "closed by the device",
                    Err(_) => return "the connection broke",
                },
                msg = attached.rx.recv() => match msg {
                    Some(ToDevice::Close { reason }) => return reason,
                    Some(m) => self.deliver(conn, m).await,
                    None => return "the server stopped",
                },
                _ = attached.shared.wake.notified() => {
                    if attached.shared.resync.swap(false, Ordering::AcqRel) {
                        self.resync(conn).await;
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => return "keep-alive expired",
                () = stopping(&mut shutdown) => return "the server is shutting down",
            }
        }
    }

    /// Handles one packet from the device; `Err` ends the connection.
    async fn packet<R, W>(&mut self, conn: &mut Conn<R, W>, p: Packet) -> Result<(), Reason>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        match p {
            Packet::Publish(p) => self.publish(conn, p).await,
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                for f in &s.filters {
                    let topic = f.path.as_str();
                    if topic.starts_with("$iothub/twin/res/") || topic == "$iothub/twin/res/#" {
                        self.subscribed.twin_responses = true;
                    } else if topic.starts_with("$iothub/twin/PATCH/properties/desired/") {
                        self.subscribed.desired = true;
                    } else if topic.starts_with("$iothub/methods/POST/") {
                        self.subscribed.methods = true;
                    } else if self.own_devicebound(topic) {
                        // Cloud-to-device messages: none are sent yet.
                    } else {
                        tracing::info!(
                            device = self.device,
                            topic,
                            "mqtt: a subscription to a topic not its own"
                        );
                        return Err("a subscription to a topic not its own");
                    }
                    let qos = match f.qos {
                        QoS::AtMostOnce => QoS::AtMostOnce,
                        _ => QoS::AtLeastOnce,
                    };
                    codes.push(SubscribeReasonCode::Success(qos));
                }
                conn.queue(&Packet::SubAck(SubAck::new(s.pkid, codes)));
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                for t in &u.topics {
                    if t.starts_with("$iothub/twin/res/") {
                        self.subscribed.twin_responses = false;
                    } else if t.starts_with("$iothub/twin/PATCH/properties/desired/") {
                        self.subscribed.desired = false;
                    } else if t.starts_with("$iothub/methods/POST/") {
                        self.subscribed.methods = false;
                    }
                }
                conn.queue(&Packet::UnsubAck(UnsubAck::new(u.pkid)));
                Ok(())
            }
            Packet::PingReq => {
                conn.queue(&Packet::PingResp);
                Ok(())
            }
            // Server → device messages go at QoS 0: nothing to acknowledge.
            Packet::PubAck(_) => Ok(()),
            Packet::Disconnect => Err("closed by the device"),
            Packet::Connect(_) => Err("a second CONNECT"),
            _ => Err("a packet a device may not send"),
        }
    }

    fn own_devicebound(&self, topic: &str) -> bool {
        let prefix = format!("devices/{}/messages/devicebound/", self.device);
        topic.starts_with(&prefix)
    }

    async fn publish<R, W>(&mut self, conn: &mut Conn<R, W>, p: Publish) -> Result<(), Reason>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if p.qos == QoS::ExactlyOnce {
            return Err("QoS 2 is not supported");
        }
        let topic = p.topic.as_str();
        let ack = |conn: &mut Conn<R, W>| {
            if p.qos == QoS::AtLeastOnce {
                conn.queue(&Packet::PubAck(PubAck::new(p.pkid)));
            }
        };
        if let Some(rest) = topic.strip_prefix("$iothub/twin/") {
            let (op, query) = rest.split_once("/?").unwrap_or((rest, ""));
            let rid = query_pairs(query)
                .into_iter()
                .find(|(k, _)| k == "$rid")
                .map(|(_, v)| v)
                .unwrap_or_default();
            let answer = if self.bucket.take().is_err() {
                Answer::error(
                    429,
                    "throttled",
                    "too many messages from this device; slow down",
                )
            } else {
                match op {
                    "GET" | "GET/" => self.get_twin().await,
                    "PATCH/properties/reported" | "PATCH/properties/reported/" => {
                        self.patch_reported(&p.payload).await
                    }
                    _ => return Err("a twin topic it may not publish to"),
                }
            };
            ack(conn);
            if let Some(m) = &self.metrics {
                let kind = if op.starts_with("GET") {
                    "twin_get"
                } else {
                    "reported"
                };
                m.device_message(kind, answer.status < 300);
            }
            if self.subscribed.twin_responses {
                let mut topic = format!("$iothub/twin/res/{}/?$rid={}", answer.status, rid);
                if let Some(v) = answer.version {
                    topic.push_str(&format!("&$version={v}"));
                }
                conn.queue(&publish0(topic, answer.body));
            }
            return Ok(());
        }
        if let Some(rest) = topic.strip_prefix("$iothub/methods/res/") {
            let (status, query) = rest.split_once("/?").unwrap_or((rest, ""));
            let status: i64 = status
                .parse()
                .map_err(|_| "a method answer without a status")?;
            let rid = query_pairs(query)
                .into_iter()
                .find(|(k, _)| k == "$rid")
                .map(|(_, v)| v)
                .unwrap_or_default();
            let payload = if p.payload.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&p.payload).unwrap_or_else(|_| {
                    Value::from(String::from_utf8_lossy(&p.payload).into_owned())
                })
            };
            let known = self.pending.remove(&rid);
            if let Some(m) = &self.metrics {
                m.device_message("method_answer", known.is_some());
            }
            if let Some(reply) = known {
                let _ = reply.send(MethodAnswer { status, payload });
            }
            ack(conn);
            return Ok(());
        }
        let events = format!("devices/{}/messages/events/", self.device);
        if let Some(props) = topic.strip_prefix(&events) {
            while let Err(wait) = self.bucket.take() {
                tokio::time::sleep(wait).await;
            }
            self.telemetry(props, &p.payload).await;
            ack(conn);
            return Ok(());
        }
        tracing::info!(
            device = self.device,
            topic,
            "mqtt: a publish to a topic not its own"
        );
        Err("a publish to a topic not its own")
    }

    async fn get_twin(&mut self) -> Answer {
        match self.access.store.twin(&self.twin).await {
            Ok(Some(t)) => {
                let models = self.access.store.models();
                self.last_desired = self.last_desired.max(t.version);
                Answer {
                    status: 200,
                    version: None,
                    body: super::service::twin_document(&t, &models)
                        .to_string()
                        .into_bytes(),
                }
            }
            Ok(None) => Answer::error(404, "twin_not_found", "the device's twin does not exist"),
            Err(e) => Answer::store(&e),
        }
    }

    async fn patch_reported(&mut self, payload: &[u8]) -> Answer {
        let patch: Value = match serde_json::from_slice(payload) {
            Ok(Value::Object(m)) => Value::Object(strip_component_markers(m)),
            Ok(_) => {
                return Answer::error(
                    400,
                    "invalid_argument",
                    "the reported patch must be a JSON object",
                );
            }
            Err(e) => {
                return Answer::error(
                    400,
                    "invalid_argument",
                    &format!("the reported patch is not JSON: {e}"),
                );
            }
        };
        let op = Op::PatchReported {
            id: self.twin.clone(),
            patch,
            expected_version: None,
            source_time: None,
        };
        match self.access.store.apply(Batch { ops: vec![op] }, "").await {
            Ok(events) => Answer {
                status: 204,
                version: events.iter().rev().find_map(|e| twin_version(&e.change)),
                body: Vec::new(),
            },
            Err(e) => Answer::store(&e),
        }
    }

    /// Telemetry: the fields that are Telemetry of the twin's model (of the
    /// Component named by `$.sub`) become its telemetry values; others are
    /// not kept (IoT Hub routes any message; only declared telemetry has a
    /// place on the twin).
    async fn telemetry(&mut self, props: &str, payload: &[u8]) {
        let props = query_pairs(props);
        let prop = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(payload) else {
            self.log_unkept("the message body is not a JSON object");
            return;
        };
        let component = prop("$.sub");
        let source_time = prop("iothub-creation-time-utc")
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| (t.unix_timestamp_nanos() / 1000) as i64);
        let Ok(Some(twin)) = self.access.store.twin(&self.twin).await else {
            return;
        };
        let models = self.access.store.models();
        let kept: Map<String, Value> = fields
            .into_iter()
            .filter(|(name, _)| is_telemetry(&models, &twin.model, component, name))
            .collect();
        if kept.is_empty() {
            self.log_unkept("no field of it is Telemetry of the twin's model");
            return;
        }
        let patch = match component {
            None => Value::Object(kept),
            Some(c) => serde_json::json!({ c: kept }),
        };
        let op = Op::PatchReported {
            id: self.twin.clone(),
            patch,
            expected_version: None,
            source_time,
        };
        match self.access.store.apply(Batch { ops: vec![op] }, "").await {
            Ok(_) => {
                if let Some(m) = &self.metrics {
                    m.device_message("telemetry", true);
                }
            }
            Err(e) => self.log_unkept(&e.to_string()),
        }
    }

    fn log_unkept(&mut self, why: &str) {
        if let Some(m) = &self.metrics {
            m.device_message("telemetry", false);
        }
        if !self.unknown_telemetry_logged {
            self.unknown_telemetry_logged = true;
            tracing::info!(
                device = self.device,
                why,
                "mqtt: telemetry not kept (logged once per connection)"
            );
        }
    }

    async fn deliver<R, W>(&mut self, conn: &mut Conn<R, W>, m: ToDevice)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        match m {
            ToDevice::Desired { version, mut patch } => {
                if version <= self.last_desired || !self.subscribed.desired {
                    return;
                }
                self.last_desired = version;
                patch.insert("$version".into(), Value::from(version));
                conn.queue(&publish0(
                    format!("$iothub/twin/PATCH/properties/desired/?$version={version}"),
                    Value::Object(patch).to_string().into_bytes(),
                ));
            }
            ToDevice::Method {
                name,
                payload,
                reply,
            } => {
                if !self.subscribed.methods {
                    // Dropping `reply`: the caller learns the device is not
                    // listening for methods, as if offline.
                    return;
                }
                self.pending.retain(|_, r| !r.is_closed());
                self.next_rid += 1;
                let rid = format!("{:x}", self.next_rid);
                self.pending.insert(rid.clone(), reply);
                conn.queue(&publish0(
                    format!("$iothub/methods/POST/{name}/?$rid={rid}"),
                    payload.to_string().into_bytes(),
                ));
            }
            ToDevice::Close { .. } => {}
        }
    }

    /// Sends the whole desired state (notifications were dropped).
    async fn resync<R, W>(&mut self, conn: &mut Conn<R, W>)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Ok(Some(t)) = self.access.store.twin(&self.twin).await else {
            return;
        };
        let doc = super::service::twin_document(&t, &self.access.store.models());
        if let Some(Value::Object(desired)) = doc.get("desired").cloned() {
            let mut desired = desired;
            desired.remove("$version");
            desired.remove("$metadata");
            self.last_desired = self.last_desired.min(t.version.saturating_sub(1));
            self.deliver(
                conn,
                ToDevice::Desired {
                    version: t.version,
                    patch: desired,
                },
            )
            .await;
        }
    }
}

/// A twin request's answer.
struct Answer {
    status: u16,
    version: Option<u64>,
    body: Vec<u8>,
}

impl Answer {
    fn error(status: u16, reason: &str, message: &str) -> Answer {
        Answer {
            status,
            version: None,
            body: serde_json::json!({ "code": reason, "message": message })
                .to_string()
                .into_bytes(),
        }
    }

    fn store(e: &StoreError) -> Answer {
        let code = e.code();
        let message = match e {
            StoreError::Batch(b) => b.error.to_string(),
            StoreError::Twin(t) => t.to_string(),
            StoreError::Forbidden(why) => format!("forbidden: {why}"),
            StoreError::Unavailable(_) | StoreError::Timeout(_) | StoreError::Closed => {
                "the twin store is unavailable; retry later".to_owned()
            }
            other => {
                tracing::error!(error = %other, "mqtt: store failure");
                "internal error".to_owned()
            }
        };
        let status = code.status().unwrap_or(500);
        // IoT Hub answers a validation failure with 400.
        let status = if status == 422 { 400 } else { status };
        Answer::error(status, code.reason(), &message)
    }
}

fn publish0(topic: String, payload: Vec<u8>) -> Packet {
    Packet::Publish(Publish::new(topic, QoS::AtMostOnce, payload))
}

fn twin_version(c: &crate::twin::Change) -> Option<u64> {
    use crate::twin::Change;
    match c {
        Change::ReportedPatched { version, .. } | Change::DesiredPatched { version, .. } => {
            Some(*version)
        }
        _ => None,
    }
}

/// Plug and Play marks a Component's values with `"__t": "c"`; the twin's
/// state has no such value.
fn strip_component_markers(mut m: Map<String, Value>) -> Map<String, Value> {
    for v in m.values_mut() {
        if let Value::Object(inner) = v
            && inner.get("__t").and_then(Value::as_str) == Some("c")
        {
            inner.remove("__t");
        }
    }
    m
}

fn is_telemetry(
    models: &crate::dtdl::ModelSet,
    model: &str,
    component: Option<&str>,
    name: &str,
) -> bool {
    use crate::dtdl::model::ContentKind;
    let Some(i) = models.interface(model) else {
        return false;
    };
    let i = match component {
        None => i,
        Some(c) => match i.content(c).map(|c| &c.kind) {
            Some(ContentKind::Component { schema }) => match models.interface(schema) {
                Some(ci) => ci,
                None => return false,
            },
            _ => return false,
        },
    };
    matches!(
        i.content(name).map(|c| &c.kind),
        Some(ContentKind::Telemetry { .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn user_names_name_the_device_and_its_model() {
        assert_eq!(
            check_username(
                "hub.example/pump-1/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3APump%3B1",
                "pump-1"
            ),
            Ok(Some("dtmi:com:example:Pump;1".to_owned()))
        );
        assert_eq!(
            check_username("localhost/pump-1/?api-version=2019-10-01", "pump-1"),
            Ok(None)
        );
        for bad in ["", "pump-1", "host/other/?api-version=1", "/pump-1/?x=1"] {
            assert!(check_username(bad, "pump-1").is_err(), "{bad}");
        }
    }

    #[test]
    fn property_bags_decode() {
        assert_eq!(
            query_pairs("%24.ct=application%2Fjson&%24.ce=utf-8&%24.sub=thermostat1"),
            vec![
                ("$.ct".to_owned(), "application/json".to_owned()),
                ("$.ce".to_owned(), "utf-8".to_owned()),
                ("$.sub".to_owned(), "thermostat1".to_owned()),
            ]
        );
        assert_eq!(
            query_pairs("a=%zz&b=1"),
            vec![("b".to_owned(), "1".to_owned())]
        );
    }

    #[test]
    fn buckets_refill_at_their_rate() {
        let mut b = Bucket::new(2.0);
        assert!(b.take().is_ok() && b.take().is_ok());
        let wait = b.take().expect_err("empty");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
    }

    /// Whatever bytes arrive, the codec answers (a packet or an error),
    /// never panics: this is what every connection reads first.
    #[test]
    fn the_codec_survives_any_bytes() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..300), |bytes| {
                let mut buf = BytesMut::from(&bytes[..]);
                for _ in 0..8 {
                    if Packet::read(&mut buf, 1024).is_err() {
                        break;
                    }
                }
                Ok(())
            })
            .expect("no panic");
        // Valid headers with bodies cut or lying about their length.
        for first in [0x10u8, 0x30, 0x32, 0x82, 0xA2, 0xC0, 0xE0] {
            for len in 0..40u8 {
                let mut bytes = vec![first, len];
                bytes.extend((0..len).map(|i| i.wrapping_mul(37)));
                let mut buf = BytesMut::from(&bytes[..]);
                let _ = Packet::read(&mut buf, 1024);
            }
        }
    }
}
