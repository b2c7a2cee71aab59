//! GraphQL over HTTP as its specification says, checked by a client nobody
//! on the team wrote: the `graphql-http` package's server audit (npm, run
//! with Node.js from `tools/http-audit/`), and the answers to malformed
//! requests one by one.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::start;

/// `tools/http-audit` with its packages installed.
fn audit_tool() -> &'static Path {
    crate::support::npm_tool("http-audit", "graphql-http")
}

/// graphql-http's audit of the whole specification: no MUST (`error`) and
/// no SHOULD (`warn`) fails; the MAY points are reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graphql_over_http_audit_passes() {
    let dir = audit_tool();
    let s = start().await;
    let url = format!("http://{}/graphql", s.addr);
    let out = tokio::process::Command::new("node")
        .arg(dir.join("audit.mjs"))
        .arg(&url)
        .output()
        .await
        .expect("the audit needs Node.js (node)");
    assert!(
        out.status.success(),
        "audit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("audit results");
    assert!(results.len() > 50, "{} audits", results.len());
    let failed: Vec<&Value> = results
        .iter()
        .filter(|r| r["status"] == "error" || r["status"] == "warn")
        .collect();
    assert!(
        failed.is_empty(),
        "GraphQL over HTTP: {}",
        serde_json::to_string_pretty(&failed).unwrap_or_default()
    );
    for r in results.iter().filter(|r| r["status"] == "notice") {
        eprintln!("MAY not done: {} ({})", r["name"], r["reason"]);
    }
    s.shutdown().await;
}

/// One raw HTTP/1.1 request: status, headers (lowercase names), body.
async fn raw(addr: SocketAddr, head: &str, body: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn content_type(head: &str) -> &str {
    head.lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap_or("")
}

const POST: &str = "POST /graphql HTTP/1.1";

/// Bodies that are not JSON or not GraphQL requests get 400 with a
/// GraphQL-shaped error a person can act on, never Rust debug output;
/// other content types 415; mutations over GET 405; and a client that
/// accepts no JSON 406.
#[tokio::test]
async fn malformed_requests_get_graphql_errors_with_the_right_status() {
    let s = start().await;
    let json = "Content-Type: application/json";
    for (head, body, status, says) in [
        (
            format!("{POST}\r\n{json}"),
            r#"{"query": "{ twins { "#,
            400,
            "not JSON: EOF while parsing a string",
        ),
        (format!("{POST}\r\n{json}"), "[]", 400, "the batch is empty"),
        (
            format!("{POST}\r\n{json}"),
            r#"{"operationName": "x"}"#,
            400,
            "needs `query`",
        ),
        (
            format!("{POST}\r\n{json}"),
            r#"{"query": 7}"#,
            400,
            "`query` must be a string",
        ),
        (
            format!("{POST}\r\n{json}"),
            r#"{"query": "{ __typename }", "variables": [1]}"#,
            400,
            "`variables` must be an object",
        ),
        (
            format!("{POST}\r\n{json}"),
            r#"[{"query": "{ __typename }", "operationName": 5}]"#,
            400,
            "request 0: `operationName` must be a string",
        ),
        (
            format!("{POST}\r\n{json}"),
            r#"[{"query": "{ __typename }"}, 3]"#,
            400,
            "request 1: a GraphQL request is a JSON object",
        ),
        (
            POST.to_owned(),
            r#"{"query": "{ __typename }"}"#,
            415,
            "has no Content-Type",
        ),
        (
            format!("{POST}\r\nContent-Type: text/plain"),
            "{ __typename }",
            415,
            "is not taken",
        ),
        (
            format!("{POST}\r\nContent-Type: application/json; charset=latin1"),
            r#"{"query": "{ __typename }"}"#,
            415,
            "UTF-8 only",
        ),
        (
            "GET /graphql?query=mutation%7BdeleteTwin(id%3A%22x%22)%7D HTTP/1.1".to_owned(),
            "",
            405,
            "never GET",
        ),
        (
            "GET /graphql HTTP/1.1".to_owned(),
            "",
            400,
            "needs a `query` parameter",
        ),
        (
            format!("{POST}\r\n{json}\r\nAccept: text/html"),
            r#"{"query": "{ __typename }"}"#,
            406,
            "accept one of them",
        ),
    ] {
        let (got, head, text) = raw(s.addr, &head, body).await;
        assert_eq!(got, status, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(
            v["errors"][0]["extensions"]["code"], "BAD_REQUEST",
            "{text}"
        );
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message}");
        assert!(
            !message.contains("InvalidRequest(") && v.get("data").is_none(),
            "{text}"
        );
        assert!(
            content_type(&head).starts_with("application/json"),
            "{head}"
        );
    }
    s.shutdown().await;
}

/// The response's media type follows `Accept`; with
/// `application/graphql-response+json` a request error (nothing executed)
/// is 400 without `data`, while field errors come with 200 and the data.
#[tokio::test]
async fn responses_follow_accept_and_request_errors_have_no_data() {
    let s = start().await;
    let ask = |accept: &str, query: &str| {
        let head = if accept.is_empty() {
            format!("{POST}\r\nContent-Type: application/json")
        } else {
            format!("{POST}\r\nContent-Type: application/json\r\nAccept: {accept}")
        };
        (head, json!({"query": query}).to_string())
    };
    let gql_json = "application/graphql-response+json";
    for (accept, media) in [
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (gql_json, gql_json),
        (
            "application/json, application/graphql-response+json;q=0.9",
            "application/json",
        ),
        (
            "application/graphql-response+json, application/json;q=0.9",
            gql_json,
        ),
    ] {
        let (head, body) = ask(accept, "{ __typename }");
        let (status, h, text) = raw(s.addr, &head, &body).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            content_type(&h).starts_with(media),
            "Accept {accept:?}: {h}"
        );
    }
    for (accept, status) in [("application/json", 200), (gql_json, 400)] {
        for bad in [
            "{ twins(",
            "{ nope }",
            "query($x: Int!) { twin(id: $x) { id } }",
        ] {
            let (head, body) = ask(accept, bad);
            let (got, _, text) = raw(s.addr, &head, &body).await;
            assert_eq!(got, status, "{accept} {bad}: {text}");
            let v: Value = serde_json::from_str(&text).expect("json");
            assert!(
                v.get("data").is_none(),
                "a request error has no data: {text}"
            );
            assert_eq!(
                v["errors"][0]["extensions"]["code"], "BAD_REQUEST",
                "{text}"
            );
        }
    }
    // A field error: execution ran, so the data entry is there (null
    // here: the failing field is non-null) and the status 200.
    let (head, body) = ask(
        gql_json,
        r#"{ twins(model: "dtmi:nope;1") { nodes { id } } }"#,
    );
    let (got, _, text) = raw(s.addr, &head, &body).await;
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!((got, v.get("data")), (200, Some(&Value::Null)), "{text}");
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "MODEL_NOT_FOUND",
        "{text}"
    );
    s.shutdown().await;
}
