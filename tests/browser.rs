//! GraphiQL in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (`tools/browser/`), with no network but the server under
//! test. The page must load from the server alone (no CDN), break none of
//! its own Content-Security-Policy, and run a query and a subscription
//! through its editor.

use serde_json::{Value, json};

use crate::server::{gql, start};

/// The browser, installed if missing and allowed (`ensure-chromium.sh`).
fn chromium() -> String {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/browser/ensure-chromium.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .expect("bash runs tools/browser/ensure-chromium.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_query_offline_in_chromium() {
    let dir = crate::support::npm_tool("browser", "playwright-core");
    let browser = chromium();
    let s = start().await;
    let v = gql(
        s.addr,
        r#"mutation { createPump(id: "seen-in-graphiql", reported: {flowRate: 2.5}) { id } }"#,
        json!({}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    // The page's policy names no other origin.
    let page = raw_get(s.addr, "/").await;
    let policy = page
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("content-security-policy:")
        })
        .expect("a Content-Security-Policy")
        .to_owned();
    assert!(
        !policy.contains("http:") && !policy.contains("https:") && !policy.contains("//"),
        "{policy}"
    );
    assert!(!page.contains("unpkg") && !page.contains("cdn"), "{page}");

    let out = tokio::process::Command::new("node")
        .arg(dir.join("graphiql.mjs"))
        .arg(format!("http://{}/", s.addr))
        .arg(r#"{ pumps(where: {flowRate: {gt: 2}}) { nodes { id flowRate } } }"#)
        .arg(r#"subscription { twinChanged(id: "seen-in-graphiql") { twin { id } } }"#)
        .arg(r#"mutation { updatePump(id: "seen-in-graphiql", reported: {flowRate: 3.5}) { version } }"#)
        .env("CHROMIUM", &browser)
        .output()
        .await
        .expect("the browser test needs Node.js (node)");
    assert!(
        out.status.success(),
        "driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(
        seen["blocked"],
        json!([]),
        "requests off the server: {seen}"
    );
    assert_eq!(seen["violations"], json!([]), "CSP violations: {seen}");
    assert_eq!(seen["errors"], json!([]), "page errors: {seen}");
    assert_eq!(seen["title"], "twingraph · GraphiQL");
    assert_eq!(
        seen["response"],
        json!({"data": {"pumps": {"nodes": [{"id": "seen-in-graphiql", "flowRate": 2.5}]}}}),
        "{seen}"
    );
    // The subscription ran from the page too, over its WebSocket.
    assert_eq!(
        seen["event"],
        json!({"data": {"twinChanged": {"twin": {"id": "seen-in-graphiql"}}}}),
        "{seen}"
    );
    s.shutdown().await;
}

/// A plain GET: the status line, headers and body as text.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("send");
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}
