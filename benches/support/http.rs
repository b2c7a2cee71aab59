//! What the benchmarks share: settings from the environment, the sample
//! models, percentiles, and a minimal keep-alive HTTP/1.1 client (a real
//! client's overhead would blur the server's).

#![allow(dead_code)] // each benchmark uses its part

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

pub fn models() -> Arc<twingraph::dtdl::ModelSet> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dtdl");
    let sources = twingraph::dtdl::load::read_paths(&[dir]).expect("sample models");
    let outcome = twingraph::dtdl::check(&sources, &twingraph::dtdl::Options::default());
    Arc::new(outcome.model.expect("sample models are valid"))
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    io: BufReader<TcpStream>,
    line: String,
    pub body: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).await.expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            io: BufReader::new(s),
            line: String::new(),
            body: Vec::new(),
        }
    }

    /// Sends `req` and reads the response; panics unless it is a 200
    /// without GraphQL errors.
    pub async fn call(&mut self, req: &[u8]) {
        self.send(req).await;
        assert!(
            !self.body.starts_with(b"{\"data\":null") && !contains(&self.body, b"\"errors\""),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
    }

    /// Sends `req` and reads the response into `body`; panics unless it is
    /// a 200. For callers that parse the body anyway and look for errors
    /// in what they parsed.
    pub async fn send(&mut self, req: &[u8]) {
        self.io.get_mut().write_all(req).await.expect("write");
        let mut len = None;
        let mut status = String::new();
        loop {
            self.line.clear();
            let n = self.io.read_line(&mut self.line).await.expect("read");
            assert!(n > 0, "server closed the connection");
            if self.line == "\r\n" {
                break;
            }
            if status.is_empty() {
                status.clone_from(&self.line);
            } else if let Some((k, v)) = self.line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse::<usize>().ok();
            }
        }
        assert!(status.contains(" 200 "), "{status}");
        let len = len.expect("content-length");
        self.body.resize(len, 0);
        self.io.read_exact(&mut self.body).await.expect("body");
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

pub fn post(addr: SocketAddr, query: &str, variables: Value) -> Vec<u8> {
    post_as(addr, None, query, variables)
}

/// [`post`] with `Authorization: Bearer <token>` when given.
pub fn post_as(addr: SocketAddr, token: Option<&str>, query: &str, variables: Value) -> Vec<u8> {
    let body = json!({"query": query, "variables": variables}).to_string();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub struct Outcome {
    pub name: &'static str,
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// Answers with GraphQL errors (only [`drive_counting_errors`] counts
    /// them; [`drive`] stops at the first).
    pub errors: usize,
}

/// Runs `conns` clients for `secs`, each cycling through `requests`;
/// panics at an answer with errors.
pub async fn drive(
    name: &'static str,
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    conns: usize,
    secs: u64,
) -> Outcome {
    drive_with(name, addr, requests, conns, secs, false).await
}

/// [`drive`], counting answers with errors instead of stopping at one.
pub async fn drive_counting_errors(
    name: &'static str,
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    conns: usize,
    secs: u64,
) -> Outcome {
    drive_with(name, addr, requests, conns, secs, true).await
}

async fn drive_with(
    name: &'static str,
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    conns: usize,
    secs: u64,
    lenient: bool,
) -> Outcome {
    // Warm up one connection.
    let mut c = Conn::open(addr).await;
    for r in requests.iter().take(100) {
        if lenient {
            c.send(r).await;
        } else {
            c.call(r).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..conns {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut i = k * 7919;
            while Instant::now() < deadline {
                let r = &requests[i % requests.len()];
                i += 1;
                let t = Instant::now();
                if lenient {
                    c.send(r).await;
                    errors += usize::from(contains(&c.body, b"\"errors\""));
                } else {
                    c.call(r).await;
                }
                lat.push(t.elapsed());
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("client");
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed();
    all.sort();
    Outcome {
        name,
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        errors,
    }
}

/// The real server over `store` on a loopback port (no authentication),
/// serving until the process ends; its address and schema.
pub async fn serve(
    store: Arc<dyn twingraph::store::GraphStore>,
) -> (SocketAddr, twingraph::graphql::LiveSchema) {
    use twingraph::graphql;
    let schema = graphql::build(
        store.clone(),
        graphql::Limits::default(),
        graphql::Shutdown::default(),
        Arc::new(twingraph::metrics::Metrics::default()),
        Arc::new(graphql::ModelLibrary::new(Vec::new(), None)),
        twingraph::rollout::Rollouts::start(store.clone())
            .await
            .expect("rollouts"),
    )
    .expect("schema");
    let app = twingraph::server::app(twingraph::server::AppState {
        store,
        schema: schema.clone(),
        ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        max_body_bytes: 4 * 1024 * 1024,
        metrics: Arc::new(twingraph::metrics::Metrics::default()),
        auth: None,
        http: twingraph::server::HttpSettings::default(),
    });
    let listener = twingraph::server::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(twingraph::server::run(
        listener,
        app,
        std::future::pending(),
    ));
    (addr, schema)
}
