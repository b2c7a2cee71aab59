//! GraphQL over WebSocket: the `graphql-transport-ws` protocol and the
//! legacy `graphql-ws` (subscriptions-transport-ws) one, on `/graphql/ws`.
//!
//! One task per connection reads client messages and writes the results of
//! its subscriptions. Results shared by many subscribers (see
//! [`crate::graphql::Delivery`]) arrive serialized: a connection only wraps
//! them in its frame (`{"type":"next","id":..,"payload":<shared JSON>}`),
//! so a change fanned out to 10,000 dashboards is encoded once, not 10,000
//! times.
//!
//! Protocol errors close the connection with the `graphql-transport-ws`
//! close codes: 4400 (invalid message), 4401 (subscribe before
//! `connection_ack`), 4408 (no `connection_init` in time), 4409 (a
//! subscription id already in use), 4429 (a second `connection_init`).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::stream::BoxStream;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::http::HeaderMap;
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use tokio_stream::StreamMap;

use crate::graphql::{Delivery, LiveSchema};

/// The two GraphQL-over-WebSocket protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// `graphql-transport-ws` (the `graphql-ws` library's protocol).
    TransportWs,
    /// The legacy `graphql-ws` (Apollo's subscriptions-transport-ws).
    Legacy,
}

impl Protocol {
    /// The first protocol the client offers that the server speaks.
    pub(super) fn negotiate(headers: &HeaderMap) -> Option<Protocol> {
        headers
            .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)?
            .to_str()
            .ok()?
            .split(',')
            .find_map(|p| match p.trim() {
                "graphql-transport-ws" => Some(Protocol::TransportWs),
                "graphql-ws" => Some(Protocol::Legacy),
                _ => None,
            })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::Legacy => "graphql-ws",
        }
    }
}

/// How long a client has to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the legacy protocol's `ka` (keep-alive) goes out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A client message of either protocol.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<serde_json::Value>,
    },
    #[serde(alias = "start")]
    Subscribe {
        id: String,
        payload: Box<async_graphql::Request>,
    },
    #[serde(alias = "stop")]
    Complete {
        id: String,
    },
    ConnectionTerminate,
    Ping {
        #[serde(default)]
        payload: Option<serde_json::Value>,
    },
    Pong {},
}

/// A subscription id: the client's string and its JSON form (written into
/// every frame of the subscription), looked up by the string.
#[derive(Debug, Clone)]
struct SubId(Arc<(String, String)>);

impl SubId {
    fn new(id: String) -> SubId {
        let json = serde_json::Value::String(id.clone()).to_string();
        SubId(Arc::new((id, json)))
    }
    fn json(&self) -> &str {
        &self.0.1
    }
}

impl Borrow<str> for SubId {
    fn borrow(&self) -> &str {
        &self.0.0
    }
}
impl PartialEq for SubId {
    fn eq(&self, other: &SubId) -> bool {
        self.0.0 == other.0.0
    }
}
impl Eq for SubId {}
impl Hash for SubId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.0.hash(state);
    }
}

/// What the connection does after a client message.
enum Step {
    Send(Vec<Message>),
    /// Close with this code and reason.
    Close(u16, String),
    /// The client ended the connection.
    End,
}

struct Connection {
    protocol: Protocol,
    schema: LiveSchema,
    acked: bool,
    gate: super::Gate,
    /// The `Authorization` header of the upgrade request.
    upgrade_token: Option<String>,
    /// The caller (with authentication on), from `connection_init`.
    access: Option<crate::auth::Access>,
    /// Each subscription's results, then `None` once it has ended.
    streams: StreamMap<SubId, BoxStream<'static, Option<Delivery>>>,
}

fn text(s: String) -> Message {
    Message::Text(Utf8Bytes::from(s))
}

/// `{"type":<kind>,"id":<id>}`
fn id_message(kind: &str, id: &SubId) -> Message {
    text(format!(r#"{{"type":"{kind}","id":{}}}"#, id.json()))
}

impl Connection {
    fn on_message(&mut self, raw: &[u8]) -> Step {
        let msg = match serde_json::from_slice::<ClientMessage>(raw) {
            Ok(msg) => msg,
            Err(e) => return Step::Close(4400, format!("invalid message: {e}")),
        };
        match msg {
            ClientMessage::ConnectionInit { .. } if self.acked => {
                Step::Close(4429, "too many initialisation requests".into())
            }
            ClientMessage::ConnectionInit { payload } => {
                // The token of `connection_init`, else the upgrade request's.
                let token = payload
                    .as_ref()
                    .and_then(|p| p.get("Authorization").or_else(|| p.get("authorization")))
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| self.upgrade_token.clone());
                match self.gate.admit(token.as_deref()) {
                    Ok(access) => self.access = access,
                    Err(refusal) => {
                        return Step::Close(4403, format!("Forbidden: {}", refusal.message()));
                    }
                }
                self.acked = true;
                let mut out = vec![text(r#"{"type":"connection_ack"}"#.into())];
                if self.protocol == Protocol::Legacy {
                    out.push(text(r#"{"type":"ka"}"#.into()));
                }
                Step::Send(out)
            }
            ClientMessage::Subscribe { .. } if !self.acked => {
                Step::Close(4401, "unauthorized: connection_init first".into())
            }
            ClientMessage::Subscribe { id, payload } => {
                let id = SubId::new(id);
                if self.streams.contains_key::<str>(&id.0.0) {
                    match self.protocol {
                        Protocol::TransportWs => {
                            return Step::Close(
                                4409,
                                format!("subscriber for {} already exists", id.0.0),
                            );
                        }
                        // The legacy protocol replaces the operation.
                        Protocol::Legacy => {
                            self.streams.remove::<str>(&id.0.0);
                        }
                    }
                }
                let refused = if self.streams.len() >= self.gate.max_subscriptions {
                    Some(super::Refusal::Limit(format!(
                        "a connection may hold at most {} subscriptions",
                        self.gate.max_subscriptions
                    )))
                } else {
                    self.gate.charge(self.access.as_ref(), 1).err()
                };
                if let Some(r) = refused {
                    let error = r.graphql_error();
                    let payload = match self.protocol {
                        Protocol::TransportWs => serde_json::json!([error]),
                        Protocol::Legacy => error,
                    };
                    let msg =
                        serde_json::json!({"type": "error", "id": id.0.0, "payload": payload});
                    return Step::Send(vec![text(msg.to_string())]);
                }
                let mut request = *payload;
                if let Some(a) = &self.access {
                    request = request.data(a.clone());
                }
                let stream = self
                    .schema
                    .subscribe(request, None)
                    .map(Some)
                    .chain(stream::once(async { None }))
                    .boxed();
                self.streams.insert(id, stream);
                Step::Send(Vec::new())
            }
            ClientMessage::Complete { id } => {
                let removed = self.streams.remove::<str>(&id);
                match (self.protocol, removed) {
                    // The legacy protocol confirms a stop.
                    (Protocol::Legacy, Some(_)) => {
                        Step::Send(vec![id_message("complete", &SubId::new(id))])
                    }
                    _ => Step::Send(Vec::new()),
                }
            }
            ClientMessage::ConnectionTerminate => Step::End,
            ClientMessage::Ping { payload } => {
                let pong = match payload {
                    Some(p) => format!(r#"{{"type":"pong","payload":{p}}}"#),
                    None => r#"{"type":"pong"}"#.to_owned(),
                };
                Step::Send(vec![text(pong)])
            }
            ClientMessage::Pong {} => Step::Send(Vec::new()),
        }
    }

    /// The frame of one result of subscription `id`.
    fn result(&self, id: &SubId, delivery: &Delivery) -> Message {
        let kind = match self.protocol {
            Protocol::TransportWs => "next",
            Protocol::Legacy => "data",
        };
        let mut out = String::with_capacity(64 + id.json().len());
        out.push_str(r#"{"type":""#);
        out.push_str(kind);
        out.push_str(r#"","id":"#);
        out.push_str(id.json());
        out.push_str(r#","payload":"#);
        delivery.write_json(&mut out);
        out.push('}');
        text(out)
    }
}

/// `reason` cut to what a close frame carries (123 bytes), on a character
/// boundary.
fn close_reason(mut reason: String) -> String {
    const MAX: usize = 123;
    if reason.len() > MAX {
        let mut end = MAX;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// How long a closing connection waits for the client's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The closing handshake: sends a close frame, then waits (a little) for
/// the client's. Dropping the socket at once would make the kernel reset
/// the connection when the client's reply arrives, and a reset discards
/// what the client had not read yet (the last results, the close frame).
async fn close(mut socket: WebSocket, code: u16, reason: String) {
    let frame = CloseFrame {
        code,
        reason: close_reason(reason).into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// How long until a token expiring at `exp` (seconds since the epoch) has
/// expired.
fn until_expiry(exp: u64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(exp).saturating_sub(now)
}

/// Serves one upgraded connection until either side ends it (or, with
/// authentication on, its token expires: closed with 4403).
pub(super) async fn serve(
    mut socket: WebSocket,
    schema: LiveSchema,
    protocol: Protocol,
    gate: super::Gate,
    upgrade_token: Option<String>,
) {
    let closing = schema.closing();
    let mut conn = Connection {
        protocol,
        schema,
        acked: false,
        gate,
        upgrade_token,
        access: None,
        streams: StreamMap::new(),
    };
    // Armed once the caller is known (far off until then).
    let expiry = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    let mut expiry_armed = false;
    let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
    let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
    keep_alive.reset();
    tokio::pin!(init_deadline, closing, expiry);
    let mut shutting_down = false;
    loop {
        let step = tokio::select! {
            // The client's messages first: a `complete` takes effect before
            // the subscription's next result goes out.
            biased;
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => conn.on_message(t.as_bytes()),
                Some(Ok(Message::Binary(b))) => conn.on_message(&b),
                // Pings are answered by the WebSocket layer.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Step::Send(Vec::new()),
                Some(Ok(Message::Close(_)) | Err(_)) | None => Step::End,
            },
            Some((id, delivery)) = conn.streams.next(), if !conn.streams.is_empty() => {
                match delivery {
                    Some(d) => Step::Send(vec![conn.result(&id, &d)]),
                    None => {
                        // Ended: out of the map now (not at its next poll).
                        conn.streams.remove::<str>(&id.0.0);
                        Step::Send(vec![id_message("complete", &id)])
                    }
                }
            }
            () = &mut init_deadline, if !conn.acked => {
                Step::Close(4408, "connection initialisation timeout".into())
            }
            () = &mut expiry, if expiry_armed => {
                Step::Close(4403, "Forbidden: the token has expired".into())
            }
            _ = keep_alive.tick(), if conn.acked && protocol == Protocol::Legacy => {
                Step::Send(vec![text(r#"{"type":"ka"}"#.into())])
            }
            () = &mut closing, if !shutting_down => {
                shutting_down = true;
                Step::Send(Vec::new())
            }
        };
        let result = match step {
            Step::Send(msgs) => {
                let mut sent = Ok(());
                for m in msgs {
                    sent = socket.send(m).await;
                    if sent.is_err() {
                        break;
                    }
                }
                sent
            }
            Step::Close(code, reason) => return close(socket, code, reason).await,
            Step::End => return,
        };
        if !expiry_armed && let Some(exp) = conn.access.as_ref().and_then(|a| a.principal.expires) {
            expiry_armed = true;
            expiry
                .as_mut()
                .reset(tokio::time::Instant::now() + until_expiry(exp));
        }
        if result.is_err() {
            return;
        }
        // Shutting down: once every subscription has completed, say goodbye.
        if shutting_down && conn.streams.is_empty() {
            return close(socket, 1001, "server shutting down".into()).await;
        }
    }
}
