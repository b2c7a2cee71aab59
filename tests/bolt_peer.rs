//! A scripted Bolt server for the tests: the handshake (Bolt 4.1), HELLO,
//! RUN / PULL (in batches of the `n` asked, `has_more` between them) /
//! DISCARD, BEGIN / COMMIT / ROLLBACK, RESET and GOODBYE, one message at a
//! time per connection, as a database does. What a statement answers, and
//! how long its RUN and each of its batches take, is the script's. Like a
//! database, it stops a statement whose connection closes while it works,
//! and counts it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a statement answers.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub fields: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    /// How long the database "works" before answering the RUN.
    pub delay: Duration,
    /// How long it works before each batch of records after the first.
    pub batch_delay: Duration,
    /// Notified when a batch after the first is asked for.
    pub more: Option<Arc<tokio::sync::Notify>>,
    /// Refuse the RUN with this `FAILURE` (code, message) instead; the
    /// connection then ignores everything but RESET.
    pub failure: Option<(String, String)>,
}

/// The script: the answer to a statement and its parameters.
pub type Script = Arc<dyn Fn(&str, &Map<String, Value>) -> Answer + Send + Sync>;

/// What the peer saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Connections accepted.
    pub opened: AtomicUsize,
    /// Connections closed by the client.
    pub closed: AtomicUsize,
    /// Statements stopped because their connection closed while they ran.
    pub stopped: AtomicUsize,
    /// While set, new connections are closed at once (a database going
    /// down refuses them).
    pub refuse: std::sync::atomic::AtomicBool,
}

/// A running peer.
pub struct Peer {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl Peer {
    pub async fn start(script: Script) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Seen::default());
        let seen2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                if seen2.refuse.load(Ordering::Acquire) {
                    drop(socket);
                    continue;
                }
                seen2.opened.fetch_add(1, Ordering::AcqRel);
                let (script, seen) = (script.clone(), seen2.clone());
                tokio::spawn(async move {
                    let _ = serve(socket, script, &seen).await;
                    seen.closed.fetch_add(1, Ordering::AcqRel);
                });
            }
        });
        Peer { addr, seen }
    }
}

/// Works for `delay`, unless the connection closes first (then false).
/// Messages that arrive meanwhile wait their turn (a RESET too), as
/// databases that answer one message after the other (ArcadeDB) do.
async fn work(s: &mut TcpStream, delay: Duration) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    let mut one = [0u8; 1];
    tokio::select! {
        () = &mut sleep => true,
        // A client sends nothing while it waits: this returns when it
        // closes (or breaks) the connection, or sends another message.
        peeked = s.peek(&mut one) => match peeked {
            Ok(0) | Err(_) => false,
            Ok(_) => {
                sleep.await;
                true
            }
        },
    }
}

async fn serve(mut s: TcpStream, script: Script, seen: &Seen) -> std::io::Result<()> {
    let mut hello = [0u8; 20];
    s.read_exact(&mut hello).await?;
    s.write_all(&[0, 0, 1, 4]).await?; // Bolt 4.1
    let mut pending: std::collections::VecDeque<Vec<Value>> = Default::default();
    let mut batch_delay = Duration::ZERO;
    let mut more = None;
    let mut first_batch = true;
    let mut failed = false;
    let stopped = || {
        seen.stopped.fetch_add(1, Ordering::AcqRel);
        Err(std::io::ErrorKind::ConnectionAborted.into())
    };
    loop {
        let (signature, fields) = read_message(&mut s).await?;
        if failed && signature != 0x0F && signature != 0x02 {
            send(&mut s, 0x7E, &[]).await?; // IGNORED
            continue;
        }
        match signature {
            0x01 => {
                let mut m = Map::new();
                m.insert("server".into(), "Neo4j/4.4.0".into());
                m.insert("connection_id".into(), "peer".into());
                send(&mut s, 0x70, &[Value::Object(m)]).await?;
            }
            0x10 => {
                let query = fields.first().and_then(Value::as_str).unwrap_or_default();
                let params = fields
                    .get(1)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let answer = script(query, &params);
                if !work(&mut s, answer.delay).await {
                    return stopped();
                }
                if let Some((code, message)) = answer.failure {
                    let mut m = Map::new();
                    m.insert("code".into(), code.into());
                    m.insert("message".into(), message.into());
                    send(&mut s, 0x7F, &[Value::Object(m)]).await?;
                    failed = true;
                    continue;
                }
                let mut m = Map::new();
                m.insert(
                    "fields".into(),
                    answer
                        .fields
                        .iter()
                        .map(|f| Value::from(f.as_str()))
                        .collect(),
                );
                send(&mut s, 0x70, &[Value::Object(m)]).await?;
                pending = answer.rows.into();
                batch_delay = answer.batch_delay;
                more = answer.more;
                first_batch = true;
            }
            0x3F => {
                let asked = fields
                    .first()
                    .and_then(|m| m.get("n"))
                    .and_then(Value::as_i64)
                    .unwrap_or(-1);
                if !first_batch {
                    if let Some(more) = &more {
                        more.notify_one();
                    }
                    if !work(&mut s, batch_delay).await {
                        return stopped();
                    }
                }
                first_batch = false;
                let n = usize::try_from(asked).unwrap_or(usize::MAX);
                for row in pending.drain(..n.min(pending.len())) {
                    send(&mut s, 0x71, &[Value::Array(row)]).await?;
                }
                let mut m = Map::new();
                if !pending.is_empty() {
                    m.insert("has_more".into(), true.into());
                }
                send(&mut s, 0x70, &[Value::Object(m)]).await?;
            }
            0x12 => {
                let mut m = Map::new();
                m.insert("bookmark".into(), "peer:1".into());
                send(&mut s, 0x70, &[Value::Object(m)]).await?;
            }
            0x02 => return Ok(()),
            // DISCARD, BEGIN, ROLLBACK, RESET
            _ => {
                failed = false;
                pending.clear();
                send(&mut s, 0x70, &[Value::Object(Map::new())]).await?;
            }
        }
    }
}

/// One message: its chunks joined, then a struct (signature, fields).
async fn read_message(s: &mut TcpStream) -> std::io::Result<(u8, Vec<Value>)> {
    let mut bytes = Vec::new();
    loop {
        let size = s.read_u16().await? as usize;
        if size == 0 {
            if bytes.is_empty() {
                continue; // a no-op chunk
            }
            break;
        }
        let start = bytes.len();
        bytes.resize(start + size, 0);
        s.read_exact(&mut bytes[start..]).await?;
    }
    let mut r = Reader { b: &bytes, at: 0 };
    let marker = r.byte();
    let n = (marker & 0x0F) as usize;
    let signature = r.byte();
    let fields = (0..n).map(|_| r.value()).collect();
    Ok((signature, fields))
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let v = self.b.get(self.at).copied().unwrap_or(0xC0);
        self.at += 1;
        v
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let end = (self.at + n).min(self.b.len());
        let s = &self.b[self.at..end];
        self.at = end;
        s
    }

    fn uint(&mut self, n: usize) -> usize {
        self.take(n)
            .iter()
            .fold(0, |a, b| (a << 8) | usize::from(*b))
    }

    fn text(&mut self, n: usize) -> Value {
        Value::from(String::from_utf8_lossy(self.take(n)).into_owned())
    }

    fn value(&mut self) -> Value {
        let m = self.byte();
        match m {
            0x00..=0x7F => Value::from(i64::from(m)),
            0xF0..=0xFF => Value::from(i64::from(m as i8)),
            0x80..=0x8F => self.text((m & 0x0F) as usize),
            0xD0 => {
                let n = self.uint(1);
                self.text(n)
            }
            0xD1 => {
                let n = self.uint(2);
                self.text(n)
            }
            0xD2 => {
                let n = self.uint(4);
                self.text(n)
            }
            0x90..=0x9F => self.list((m & 0x0F) as usize),
            0xD4 => {
                let n = self.uint(1);
                self.list(n)
            }
            0xD5 => {
                let n = self.uint(2);
                self.list(n)
            }
            0xA0..=0xAF => self.map((m & 0x0F) as usize),
            0xD8 => {
                let n = self.uint(1);
                self.map(n)
            }
            0xD9 => {
                let n = self.uint(2);
                self.map(n)
            }
            0xC2 => Value::Bool(false),
            0xC3 => Value::Bool(true),
            0xC8 => Value::from(i64::from(self.take(1)[0] as i8)),
            0xC9 => Value::from(i64::from(i16::from_be_bytes([self.byte(), self.byte()]))),
            0xCA => {
                let b = self.take(4);
                Value::from(i64::from(i32::from_be_bytes([b[0], b[1], b[2], b[3]])))
            }
            0xCB => {
                let b: [u8; 8] = self.take(8).try_into().unwrap_or([0; 8]);
                Value::from(i64::from_be_bytes(b))
            }
            0xC1 => {
                let b: [u8; 8] = self.take(8).try_into().unwrap_or([0; 8]);
                Value::from(f64::from_be_bytes(b))
            }
            _ => Value::Null,
        }
    }

    fn list(&mut self, n: usize) -> Value {
        Value::Array((0..n).map(|_| self.value()).collect())
    }

    fn map(&mut self, n: usize) -> Value {
        let mut m = Map::new();
        for _ in 0..n {
            let k = self.value();
            let v = self.value();
            m.insert(k.as_str().unwrap_or_default().to_owned(), v);
        }
        Value::Object(m)
    }
}

async fn send(s: &mut TcpStream, signature: u8, fields: &[Value]) -> std::io::Result<()> {
    let mut b = vec![0xB0 | fields.len() as u8, signature];
    for f in fields {
        write(&mut b, f);
    }
    for chunk in b.chunks(u16::MAX as usize) {
        s.write_u16(chunk.len() as u16).await?;
        s.write_all(chunk).await?;
    }
    s.write_u16(0).await?;
    s.flush().await
}

fn sized(b: &mut Vec<u8>, tiny: u8, big: [u8; 3], n: usize) {
    if n < 16 {
        b.push(tiny | n as u8);
    } else if n < 256 {
        b.extend([big[0], n as u8]);
    } else if n < 65_536 {
        b.push(big[1]);
        b.extend((n as u16).to_be_bytes());
    } else {
        b.push(big[2]);
        b.extend((n as u32).to_be_bytes());
    }
}

fn write(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => b.push(0xC0),
        Value::Bool(x) => b.push(if *x { 0xC3 } else { 0xC2 }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => {
                b.push(0xCB);
                b.extend(i.to_be_bytes());
            }
            None => {
                b.push(0xC1);
                b.extend(n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        },
        Value::String(s) => {
            sized(b, 0x80, [0xD0, 0xD1, 0xD2], s.len());
            b.extend(s.as_bytes());
        }
        Value::Array(a) => {
            sized(b, 0x90, [0xD4, 0xD5, 0xD6], a.len());
            for x in a {
                write(b, x);
            }
        }
        Value::Object(m) => {
            sized(b, 0xA0, [0xD8, 0xD9, 0xDA], m.len());
            for (k, x) in m {
                write(b, &Value::from(k.as_str()));
                write(b, x);
            }
        }
    }
}
