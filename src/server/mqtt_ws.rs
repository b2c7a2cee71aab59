//! MQTT over WebSocket (`/mqtt`, and `/$iothub/websocket` where the Azure
//! IoT device SDKs look for it): the subprotocol `mqtt`, each binary message
//! a piece of the MQTT byte stream, handed to the device endpoint as any
//! other connection (over this server's TLS when it has one).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::devices::mqtt::Endpoint;

/// Bytes in flight between the WebSocket and the session, each way.
const PIPE: usize = 64 * 1024;

/// Upgrades to an MQTT session (the client must offer the `mqtt`
/// subprotocol); 404 where the endpoint is not served.
pub(super) async fn upgrade(
    State(endpoint): State<Option<Arc<Endpoint>>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(endpoint) = endpoint else {
        return (
            StatusCode::NOT_FOUND,
            "the MQTT device endpoint is not served here\n",
        )
            .into_response();
    };
    let offered = headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
    if !offered {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer mqtt\n",
        )
            .into_response();
    }
    upgrade
        .protocols(["mqtt"])
        .on_upgrade(move |socket| bridge(socket, endpoint))
}

/// Carries the WebSocket's binary messages to and from an MQTT session.
async fn bridge(socket: WebSocket, endpoint: Arc<Endpoint>) {
    let (mine, theirs) = tokio::io::duplex(PIPE);
    // The HTTP layer does not keep the peer's address; logs show none.
    let peer = SocketAddr::from(([0, 0, 0, 0], 0));
    let session = tokio::spawn(endpoint.session(theirs, "mqtt-ws", peer));
    let (mut rd, mut wr) = tokio::io::split(mine);
    let (mut sink, mut stream) = socket.split();
    let inbound = async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Binary(b) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                // MQTT travels in binary messages only.
                Message::Text(_) => break,
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        let _ = wr.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
    }
    let _ = session.await;
}
