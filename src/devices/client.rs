//! A device's side of the IoT Hub MQTT protocol, small: what
//! `twingraph simulate --mqtt` and the device benchmark speak to the
//! endpoint (the tests use Microsoft's SDK and Paho instead). Over any byte
//! stream: TCP, or TLS from [`tls_connector`].

use std::sync::Arc;

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Login, Packet, PubAck, Publish, Subscribe, SubscribeFilter,
};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};

use super::sas;
use super::wire::{Conn, ConnError, query_pairs};

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Conn(String),
    #[error("the server refused the connection: {0:?}")]
    Refused(ConnectReturnCode),
    #[error("the server closed the connection")]
    Closed,
    #[error("{0}")]
    Protocol(String),
}

impl From<ConnError> for ClientError {
    fn from(e: ConnError) -> Self {
        ClientError::Conn(e.to_string())
    }
}

/// What the server sends a device.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A desired-property patch (`$version` taken out).
    Desired {
        version: u64,
        patch: Map<String, Value>,
    },
    /// A direct method call, to answer with [`Client::answer`].
    Method {
        name: String,
        rid: String,
        payload: Value,
    },
    /// The answer to a twin request.
    Twin {
        status: u16,
        rid: String,
        version: Option<u64>,
        body: Value,
    },
    /// A QoS 1 publish of the device's was taken (durably, for reported
    /// state and telemetry).
    Acked(u16),
}

/// A connected device.
pub struct Client<S> {
    conn: Conn<ReadHalf<S>, WriteHalf<S>>,
    next_rid: u64,
    next_pkid: u16,
    device: String,
}

impl<S> std::fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// The largest packet a client takes from the server.
const MAX_IN: usize = 1024 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Connects `device` over `stream` with a SAS token signed with `key`
    /// (valid for an hour) for `host`, and subscribes to its twin answers,
    /// desired patches and direct methods.
    pub async fn connect(
        stream: S,
        host: &str,
        device: &str,
        key: &str,
    ) -> Result<Client<S>, ClientError> {
        Client::connect_as(stream, host, device, key, None).await
    }

    /// [`connect`](Client::connect), announcing the device's Plug and Play
    /// `model` (what provisioning by an enrollment group needs).
    pub async fn connect_as(
        stream: S,
        host: &str,
        device: &str,
        key: &str,
        model: Option<&str>,
    ) -> Result<Client<S>, ClientError> {
        let (rd, wr) = tokio::io::split(stream);
        let mut c = Client {
            conn: Conn::new(rd, wr, MAX_IN),
            next_rid: 0,
            next_pkid: 0,
            device: device.to_owned(),
        };
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
            + 3600;
        let token = sas::sign(&sas::device_resource(host, device), key, expiry)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut connect = Connect::new(device);
        connect.keep_alive = 60;
        let mut username = format!("{host}/{device}/?api-version=2021-04-12");
        if let Some(m) = model {
            username.push_str("&model-id=");
            username.push_str(&m.replace(':', "%3A").replace(';', "%3B"));
        }
        connect.login = Some(Login::new(username, token));
        c.conn.send(&Packet::Connect(connect)).await?;
        match c.conn.next().await? {
            Some(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success => {}
            Some(Packet::ConnAck(a)) => return Err(ClientError::Refused(a.code)),
            Some(other) => {
                return Err(ClientError::Protocol(format!(
                    "expected CONNACK, got {other:?}"
                )));
            }
            None => return Err(ClientError::Closed),
        }
        let pkid = c.pkid();
        let filters = [
            "$iothub/twin/res/#",
            "$iothub/twin/PATCH/properties/desired/#",
            "$iothub/methods/POST/#",
        ]
        .map(|t| SubscribeFilter::new(t.to_owned(), QoS::AtMostOnce));
        let mut sub = Subscribe::new_many(filters);
        sub.pkid = pkid;
        c.conn.send(&Packet::Subscribe(sub)).await?;
        loop {
            match c.conn.next().await? {
                Some(Packet::SubAck(_)) => break,
                Some(_) => {}
                None => return Err(ClientError::Closed),
            }
        }
        Ok(c)
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
        self.next_pkid
    }

    fn rid(&mut self) -> String {
        self.next_rid += 1;
        self.next_rid.to_string()
    }

    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
    ) -> Result<u16, ClientError> {
        let mut p = Publish::new(topic, qos, payload);
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            self.pkid()
        };
        p.pkid = pkid;
        self.conn.send(&Packet::Publish(p)).await?;
        Ok(pkid)
    }

    /// Asks for the twin document; the answer comes as [`Incoming::Twin`]
    /// with the returned request id.
    pub async fn request_twin(&mut self) -> Result<String, ClientError> {
        let rid = self.rid();
        self.publish(
            format!("$iothub/twin/GET/?$rid={rid}"),
            Vec::new(),
            QoS::AtMostOnce,
        )
        .await?;
        Ok(rid)
    }

    /// Patches reported properties (QoS 1: acked once durable); the request
    /// id of the answer to come.
    pub async fn report(&mut self, patch: &Value) -> Result<String, ClientError> {
        let rid = self.rid();
        self.publish(
            format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}"),
            patch.to_string().into_bytes(),
            QoS::AtLeastOnce,
        )
        .await?;
        Ok(rid)
    }

    /// Sends telemetry (QoS 1); the packet id its [`Incoming::Acked`] carries.
    pub async fn telemetry(&mut self, body: &Value) -> Result<u16, ClientError> {
        let topic = format!(
            "devices/{}/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8",
            self.device
        );
        self.publish(topic, body.to_string().into_bytes(), QoS::AtLeastOnce)
            .await
    }

    /// Answers direct method `rid`.
    pub async fn answer(
        &mut self,
        rid: &str,
        status: i64,
        payload: &Value,
    ) -> Result<(), ClientError> {
        self.publish(
            format!("$iothub/methods/res/{status}/?$rid={rid}"),
            payload.to_string().into_bytes(),
            QoS::AtMostOnce,
        )
        .await?;
        Ok(())
    }

    /// The next message from the server (`None`: the connection ended).
    pub async fn next(&mut self) -> Result<Option<Incoming>, ClientError> {
        loop {
            let Some(p) = self.conn.next().await? else {
                return Ok(None);
            };
            match p {
                Packet::Publish(p) => {
                    if p.qos == QoS::AtLeastOnce {
                        self.conn.send(&Packet::PubAck(PubAck::new(p.pkid))).await?;
                    }
                    if let Some(m) = incoming(&p) {
                        return Ok(Some(m));
                    }
                }
                Packet::PubAck(a) => return Ok(Some(Incoming::Acked(a.pkid))),
                Packet::PingResp | Packet::SubAck(_) | Packet::UnsubAck(_) => {}
                other => {
                    return Err(ClientError::Protocol(format!("unexpected {other:?}")));
                }
            }
        }
    }
}

/// What a publish from the server means.
fn incoming(p: &Publish) -> Option<Incoming> {
    let topic = p.topic.as_str();
    let body = || serde_json::from_slice::<Value>(&p.payload).unwrap_or(Value::Null);
    let param = |query: &str, k: &str| {
        query_pairs(query)
            .into_iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v)
    };
    if let Some(rest) = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/") {
        let query = rest.trim_start_matches('?');
        let mut patch = match body() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let version = patch
            .remove("$version")
            .and_then(|v| v.as_u64())
            .or_else(|| param(query, "$version").and_then(|v| v.parse().ok()))?;
        return Some(Incoming::Desired { version, patch });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/methods/POST/") {
        let (name, query) = rest.split_once("/?")?;
        return Some(Incoming::Method {
            name: name.to_owned(),
            rid: param(query, "$rid")?,
            payload: body(),
        });
    }
    if let Some(rest) = topic.strip_prefix("$iothub/twin/res/") {
        let (status, query) = rest.split_once("/?")?;
        return Some(Incoming::Twin {
            status: status.parse().ok()?,
            rid: param(query, "$rid")?,
            version: param(query, "$version").and_then(|v| v.parse().ok()),
            body: if p.payload.is_empty() {
                Value::Null
            } else {
                body()
            },
        });
    }
    None
}

/// A TLS connector trusting the certificates of `ca` (PEM) only, as a
/// device pinned to its hub's root does.
pub fn tls_connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
