//! GraphQL requests to a running server over its `graphql-transport-ws`
//! WebSocket, one after the other: what `simulate` and `device` speak.

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// GraphQL requests over one `graphql-transport-ws` connection, in turn.
pub(super) struct Gql {
    ws: Ws,
    n: u64,
}

impl Gql {
    pub(super) async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<Gql> {
        let mut request = url.into_client_request().context("the --url")?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().context("protocol header")?,
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let init = match token {
            Some(t) => {
                json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {t}")}})
            }
            None => json!({"type": "connection_init"}),
        };
        ws.send(Message::Text(init.to_string().into())).await?;
        loop {
            let Some(msg) = ws.next().await else {
                anyhow::bail!("the server closed the connection");
            };
            if let Message::Text(t) = msg? {
                let v: Value = serde_json::from_str(&t)?;
                match v["type"].as_str() {
                    Some("connection_ack") => return Ok(Gql { ws, n: 0 }),
                    Some("ping") => {
                        ws.send(Message::Text(json!({"type": "pong"}).to_string().into()))
                            .await?;
                    }
                    _ => anyhow::bail!("the server refused the connection: {v}"),
                }
            }
        }
    }

    /// The response to one operation.
    pub(super) async fn call(&mut self, query: &str, variables: Value) -> anyhow::Result<Value> {
        self.n += 1;
        let id = format!("q{}", self.n);
        let msg = json!({"type": "subscribe", "id": id, "payload": {"query": query, "variables": variables}});
        self.ws.send(Message::Text(msg.to_string().into())).await?;
        loop {
            let Some(msg) = self.ws.next().await else {
                anyhow::bail!("the server closed the connection");
            };
            let Message::Text(t) = msg? else { continue };
            let v: Value = serde_json::from_str(&t)?;
            match v["type"].as_str() {
                Some("next") if v["id"] == id.as_str() => return Ok(v["payload"].clone()),
                Some("error") if v["id"] == id.as_str() => anyhow::bail!("refused: {v}"),
                Some("ping") => {
                    self.ws
                        .send(Message::Text(json!({"type": "pong"}).to_string().into()))
                        .await?;
                }
                _ => {}
            }
        }
    }
}
