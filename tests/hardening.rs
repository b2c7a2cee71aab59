//! Bad and hostile input: request limits, rate limits, introspection,
//! CORS, security headers, TLS, and a property test of hostile GraphQL
//! documents (the server answers each with a clear error, stays up, and
//! its memory stays bounded).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use twingraph::graphql::schema::Limits;
use twingraph::server::{HttpSettings, RateLimiter};
use twingraph::store::{GraphStore, Store, StoreConfig};
use twingraph::twin::Batch;

use crate::server::{Running, serve_full};
use crate::store_suite::{PUMP, create};

async fn store() -> Arc<dyn GraphStore> {
    let s: Arc<dyn GraphStore> = Arc::new(Store::in_memory(
        crate::support::sample_models(),
        StoreConfig::default(),
    ));
    s.apply(
        Batch {
            ops: vec![create("p1", PUMP), create("p2", PUMP)],
        },
        "test",
    )
    .await
    .expect("twins");
    s
}

/// One raw HTTP/1.1 exchange: status, lower-cased headers, body.
async fn raw(addr: SocketAddr, request: String) -> (u16, Vec<(String, String)>, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    parse_response(&out)
}

fn parse_response(out: &[u8]) -> (u16, Vec<(String, String)>, String) {
    let text = String::from_utf8_lossy(out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn post_request(addr: SocketAddr, body: &str, extra: &str) -> String {
    format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn post(addr: SocketAddr, body: Value) -> (u16, Value) {
    let (status, _, text) = raw(addr, post_request(addr, &body.to_string(), "")).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

fn aliased(n: usize) -> String {
    let fields: Vec<String> = (0..n)
        .map(|i| format!("a{i}: twin(id: \"p1\") {{ id }}"))
        .collect();
    format!("{{ {} }}", fields.join(" "))
}

#[tokio::test]
async fn request_limits_are_enforced_with_clear_errors() {
    let s = serve_full(
        store().await,
        Limits {
            aliases: 5,
            batch_ops: 3,
            ..Limits::default()
        },
        None,
        HttpSettings {
            max_operations: 2,
            ..HttpSettings::default()
        },
    )
    .await;
    let a = s.addr;
    // Aliases.
    let (status, v) = post(a, json!({"query": aliased(5)})).await;
    assert_eq!(status, 200);
    assert!(v["errors"].is_null(), "{v}");
    let (_, v) = post(a, json!({"query": aliased(6)})).await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    assert_eq!(
        v["errors"][0]["extensions"]["reason"], "too_many_aliases",
        "{v}"
    );
    assert!(v["data"].is_null());
    // Depth.
    let deep = format!(
        "{{ twin(id: \"p1\") {}{} }}",
        "{ relationships { target ".repeat(20),
        "} ".repeat(20)
    );
    let (_, v) = post(a, json!({"query": deep})).await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    // Operations of a batch mutation.
    let ops: Vec<Value> = (0..4)
        .map(|_| json!({"op": "patchReported", "id": "p1", "patch": {"flowRate": 1.0}}))
        .collect();
    let (_, v) = post(
        a,
        json!({"query": "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }", "variables": {"ops": ops}}),
    )
    .await;
    assert_eq!(code(&v), "BAD_REQUEST", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("at most 3"),
        "{v}"
    );
    // Operations per HTTP request.
    let one = json!({"query": "{ twin(id: \"p1\") { id } }"});
    let (status, v) = post(a, json!([one, one])).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    let (status, v) = post(a, json!([one, one, one])).await;
    assert_eq!((status, code(&v)), (400, "BAD_REQUEST"), "{v}");
    // A body over the limit (64 KiB in the test server).
    let big = json!({"query": format!("{{ twin(id: \"{}\") {{ id }} }}", "x".repeat(70_000))});
    let (status, _, _) = raw(a, post_request(a, &big.to_string(), "")).await;
    assert_eq!(status, 413);
    s.shutdown().await;
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let st = store().await;
    let on = serve_full(st.clone(), Limits::default(), None, HttpSettings::default()).await;
    let off = serve_full(
        st,
        Limits {
            introspection: false,
            ..Limits::default()
        },
        None,
        HttpSettings::default(),
    )
    .await;
    let q = json!({"query": "{ __schema { queryType { name } } }"});
    let (_, v) = post(on.addr, q.clone()).await;
    assert_eq!(v["data"]["__schema"]["queryType"]["name"], "Query", "{v}");
    let (_, v) = post(off.addr, q).await;
    assert!(v["errors"].is_array(), "{v}");
    assert!(v["data"]["__schema"].is_null(), "{v}");
    let (_, v) = post(off.addr, json!({"query": "{ twin(id: \"p1\") { id } }"})).await;
    assert_eq!(v["data"]["twin"]["id"], "p1", "queries still work: {v}");
    on.shutdown().await;
    off.shutdown().await;
}

#[tokio::test]
async fn each_token_has_its_own_request_rate() {
    use jsonwebtoken::{EncodingKey, Header};
    let secret = "rate-secret-rate-secret-rate-secret!";
    let verifier = twingraph::auth::Verifier::new(twingraph::auth::JwtConfig {
        secret: Some(secret.into()),
        roles_claim: "roles".into(),
        twins_claim: "twins".into(),
        ..twingraph::auth::JwtConfig::default()
    })
    .expect("verifier");
    let s = serve_full(
        store().await,
        Limits::default(),
        Some(Arc::new(verifier)),
        HttpSettings {
            rate: Some(Arc::new(RateLimiter::new(0.5, 5.0))),
            ..HttpSettings::default()
        },
    )
    .await;
    let token = |sub: &str| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 600;
        jsonwebtoken::encode(
            &Header::default(),
            &json!({"sub": sub, "roles": ["viewer"], "exp": exp}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("token")
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let body = json!({"query": "{ twin(id: \"p1\") { id } }"}).to_string();
    let ask = |t: String| {
        let req = post_request(s.addr, &body, &format!("Authorization: Bearer {t}\r\n"));
        async move { raw(s.addr, req).await }
    };
    for i in 0..5 {
        assert_eq!(
            ask(alice.clone()).await.0,
            200,
            "request {i} within the burst"
        );
    }
    let (status, headers, text) = ask(alice.clone()).await;
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("RATE_LIMITED"), "{text}");
    assert!(header(&headers, "retry-after").is_some(), "{headers:?}");
    assert_eq!(ask(bob).await.0, 200, "another token is not held back");
    s.shutdown().await;
}

async fn next_message<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("frame")
}

#[tokio::test]
async fn websocket_connections_hold_a_bounded_number_of_subscriptions() {
    let s = serve_full(
        store().await,
        Limits::default(),
        None,
        HttpSettings {
            max_subscriptions: 2,
            ..HttpSettings::default()
        },
    )
    .await;
    let mut req = format!("ws://{}/graphql/ws", s.addr)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"type": "connection_init"})))
        .await
        .expect("init");
    let ack = next_message(&mut ws).await;
    assert!(ack.to_string().contains("connection_ack"), "{ack}");
    for id in ["1", "2", "3"] {
        ws.send(send(json!({"type": "subscribe", "id": id, "payload": {"query": "subscription { events { seq } }"}})))
            .await
            .expect("subscribe");
    }
    let refused: Value = match next_message(&mut ws).await {
        Message::Text(t) => serde_json::from_str(&t).expect("json"),
        other => panic!("{other:?}"),
    };
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "3");
    assert!(
        refused["payload"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("at most 2"),
        "{refused}"
    );
    // A message over the size limit ends the connection.
    ws.send(Message::Text("x".repeat(100_000).into()))
        .await
        .ok();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break true,
            Ok(Some(Ok(_))) => {}
            Err(_) => break false,
        }
    };
    assert!(ended, "an oversized message closes the connection");
    s.shutdown().await;
}

#[tokio::test]
async fn cors_is_denied_by_default_and_allowed_per_origin() {
    let st = store().await;
    let closed = serve_full(st.clone(), Limits::default(), None, HttpSettings::default()).await;
    let open = serve_full(
        st,
        Limits::default(),
        None,
        HttpSettings {
            cors_origins: vec!["https://ops.example".into()],
            ..HttpSettings::default()
        },
    )
    .await;
    let preflight = |addr: SocketAddr, origin: &str| {
        format!(
            "OPTIONS /graphql HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"
        )
    };
    let (_, h, _) = raw(closed.addr, preflight(closed.addr, "https://ops.example")).await;
    assert_eq!(header(&h, "access-control-allow-origin"), None, "{h:?}");
    let (_, h, _) = raw(open.addr, preflight(open.addr, "https://ops.example")).await;
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://ops.example"),
        "{h:?}"
    );
    let allowed = header(&h, "access-control-allow-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{h:?}");
    let (_, h, _) = raw(open.addr, preflight(open.addr, "https://evil.example")).await;
    assert_eq!(header(&h, "access-control-allow-origin"), None, "{h:?}");
    closed.shutdown().await;
    open.shutdown().await;
}

#[tokio::test]
async fn the_graphiql_page_is_served_with_security_headers() {
    let s = serve_full(
        store().await,
        Limits::default(),
        None,
        HttpSettings::default(),
    )
    .await;
    let (status, h, body) = raw(
        s.addr,
        format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            s.addr
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("graphiql"));
    let csp = header(&h, "content-security-policy").unwrap_or("");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&h, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&h, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&h, "referrer-policy"), Some("no-referrer"));
    s.shutdown().await;
}

#[tokio::test]
async fn tls_is_terminated_by_the_server() {
    use tokio_rustls::rustls;
    let keys = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let config = twingraph::server::tls::config(&keys.join("tls.crt"), &keys.join("tls.key"))
        .expect("TLS config");
    let st = store().await;
    let plain = serve_full(st.clone(), Limits::default(), None, HttpSettings::default()).await;
    // The same app over TLS, on its own port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = plain.app.clone();
    let server = tokio::spawn(twingraph::server::run_tls(
        listener,
        config,
        app,
        std::future::pending(),
    ));
    // A client that trusts the test certificate.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(keys.join("ca.crt")).expect("CA cert");
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.expect("cert")).expect("root");
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let body = json!({"query": "{ twin(id: \"p1\") { id } }"}).to_string();
    tls.write_all(post_request(addr, &body, "").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.ok();
    let (status, _, text) = parse_response(&out);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"p1\""), "{text}");
    // Plain HTTP to the TLS port gets no answer.
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(post_request(addr, &body, "").as_bytes())
        .await
        .ok();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
    server.abort();
    plain.shutdown().await;
}

/// Resident memory of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Hostile documents: deep nesting, thousands of aliases or fields,
/// fragment cycles, garbage.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        (1usize..3000).prop_map(|n| format!(
            "{}{}",
            "{ twin(id: \"p1\") { relationships ".repeat(n),
            "}".repeat(n)
        )),
        (1usize..3000).prop_map(|n| format!("{}{}", "{".repeat(n), "}".repeat(n))),
        (1usize..5000).prop_map(aliased),
        (1usize..5000).prop_map(|n| format!("{{ {} }}", "twin(id: \"p1\") { id } ".repeat(n))),
        Just("query { ...a } fragment a on Query { ...b } fragment b on Query { ...a }".to_owned()),
        (1usize..2000).prop_map(|n| format!(
            "{{ twins(first: 1000000) {{ nodes {{ {} }} }} }}",
            "id ".repeat(n)
        )),
        "\\PC{0,2000}",
    ]
}

#[test]
fn hostile_documents_get_errors_and_the_server_stays_up_and_bounded() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let s: Running = rt.block_on(async {
        serve_full(
            store().await,
            Limits::default(),
            None,
            HttpSettings::default(),
        )
        .await
    });
    let addr = s.addr;
    let before = rss_kib();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    });
    runner
        .run(&hostile(), |doc| {
            let (status, text) = rt.block_on(async {
                let body = json!({"query": doc}).to_string();
                let (status, _, text) = raw(addr, post_request(addr, &body, "")).await;
                (status, text)
            });
            prop_assert!(matches!(status, 200 | 400 | 413), "status {status}: {text}");
            if status != 413 {
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
                prop_assert!(v["data"].is_object() || v["errors"].is_array(), "{text}");
            }
            Ok(())
        })
        .expect("every hostile document is answered");
    let (status, _, _) = rt.block_on(raw(
        addr,
        format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    ));
    assert_eq!(status, 200, "still up");
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 256 * 1024, "memory grew by {grown} KiB");
    rt.block_on(s.shutdown());
}

/// With a metrics token, `/metrics` answers only requests that carry it
/// (`Authorization: Bearer <token>`); everything else gets a 401 without
/// the metrics, and other routes do not need it.
#[tokio::test]
async fn a_metrics_token_guards_the_metrics() {
    const TOKEN: &str = "m3trics-t0ken";
    let s = serve_full(
        store().await,
        Limits::default(),
        None,
        HttpSettings {
            metrics_token: Some(TOKEN.to_owned()),
            ..HttpSettings::default()
        },
    )
    .await;
    let refused = [
        None,
        Some("Bearer wrong"),
        Some("Bearer m3trics-t0ke"),
        Some("Bearer m3trics-t0kenX"),
        Some("Basic m3trics-t0ken"),
        Some("m3trics-t0ken"),
    ];
    for authorization in refused {
        let (status, text) =
            crate::server::http_as(s.addr, "GET", "/metrics", None, authorization).await;
        assert_eq!(status, 401, "{authorization:?}: {text}");
        assert!(text.contains("metrics token"), "{text}");
        assert!(!text.contains("twingraph_"), "{text}");
    }
    // The refusal says how to authenticate.
    let mut raw = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    raw.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut head = String::new();
    raw.read_to_string(&mut head).await.expect("read");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    let bearer = format!("Bearer {TOKEN}");
    let (status, text) =
        crate::server::http_as(s.addr, "GET", "/metrics", None, Some(&bearer)).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("twingraph_events_committed_total 2"),
        "{text}"
    );
    let (status, _) = crate::server::http(s.addr, "GET", "/healthz", None).await;
    assert_eq!(status, 200);
    let (status, v) = post(s.addr, json!({"query": "{ twin(id: \"p1\") { id } }"})).await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["twin"]["id"], "p1", "{v}");
    s.shutdown().await;
}
