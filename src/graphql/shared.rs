//! Shared subscriptions: identical live subscriptions run once.
//!
//! Dashboards subscribe by the thousand to the same few twins. Executing
//! the selection set once per subscriber and event would make a change's
//! fan-out cost grow with GraphQL work per subscriber; instead, subscriptions
//! with the same document, operation and variables (and no per-connection
//! data) share one execution (a *hub*): each of its responses is serialized
//! once and goes through a broadcast channel to every subscriber, whose
//! connection only frames the shared JSON (see [`Delivery`]).
//!
//! Only subscriptions that start "now" may share: every root field is
//! `twinChanged`, or `events` without `after` (a replay depends on where it
//! starts), and selects its event's `sequence`/`seq` (unaliased). A late
//! joiner sees the changes from about when it joined (possibly one the hub
//! was still delivering). A subscriber that falls more than the buffer
//! behind is told so with `SUBSCRIBER_LAGGED` and the sequence of the last
//! response it was sent (read from that field), from which `events(after:)`
//! resumes without a gap. The hub stops when its last subscriber leaves, and
//! its subscribers' streams end when it ends (shutdown, or an error).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_graphql::futures_util::stream::{self, BoxStream, StreamExt};
use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Request, Response, ServerError};
use tokio::sync::broadcast::{self, error::RecvError};

use super::builder::HubExecution;
use crate::metrics::{Metrics, SubscriptionGuard};

/// One result of a subscription stream, as a connection sends it.
#[derive(Debug)]
pub enum Delivery {
    /// A result of this subscriber's own execution.
    Own(Box<Response>),
    /// A result shared by every subscriber of a hub.
    Shared(Arc<SharedResult>),
}

/// A hub's result and its JSON, serialized once for all its subscribers.
#[derive(Debug)]
pub struct SharedResult {
    response: Response,
    json: Box<str>,
}

impl SharedResult {
    fn new(response: Response) -> SharedResult {
        // A `Response` is plain data: serializing it cannot fail.
        let json = serde_json::to_string(&response)
            .unwrap_or_else(|_| r#"{"data":null}"#.to_owned())
            .into_boxed_str();
        SharedResult { response, json }
    }
}

impl Delivery {
    /// The result as GraphQL-over-WebSocket `payload` JSON, appended to `out`.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Delivery::Own(r) => match serde_json::to_string(r) {
                Ok(json) => out.push_str(&json),
                Err(_) => out.push_str(r#"{"data":null}"#),
            },
            Delivery::Shared(s) => out.push_str(&s.json),
        }
    }

    /// The result as a [`Response`] of its own.
    pub fn into_response(self) -> Response {
        match self {
            Delivery::Own(r) => *r,
            Delivery::Shared(s) => copy(&s.response),
        }
    }
}

/// The key of identical subscriptions.
type Key = (u64, String);

/// The hubs of one schema generation and up.
#[derive(Debug)]
pub(super) struct Hubs {
    hubs: Mutex<HashMap<Key, Weak<Hub>>>,
    capacity: usize,
}

#[derive(Debug)]
struct Hub {
    /// `None` once the execution has ended: late joiners start a new hub.
    tx: Mutex<Option<broadcast::Sender<Arc<SharedResult>>>>,
    /// The execution's task, aborted when the last subscriber leaves.
    task: OnceLock<tokio::task::AbortHandle>,
    key: Key,
    hubs: Weak<Hubs>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
        if let Some(hubs) = self.hubs.upgrade()
            && let Ok(mut map) = hubs.hubs.lock()
            && map.get(&self.key).is_some_and(|w| w.strong_count() == 0)
        {
            map.remove(&self.key);
        }
    }
}

/// Whether `request` may share an execution; its key if so.
fn share_key(generation: u64, request: &Request) -> Option<Key> {
    // Only the caller may be attached, and callers share only with those
    // that see the same twins.
    let view = match request.data.len() {
        0 => String::new(),
        1 => request
            .data
            .get(&std::any::TypeId::of::<crate::auth::Access>())?
            .downcast_ref::<crate::auth::Access>()?
            .view(),
        _ => return None,
    };
    let doc = async_graphql::parser::parse_query(&request.query).ok()?;
    let op = match (&doc.operations, request.operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        (DocumentOperations::Multiple(_), None) => return None,
    };
    if op.node.ty != OperationType::Subscription || !doc.fragments.is_empty() {
        return None;
    }
    // Every root field starts now and selects its event's sequence number
    // under its own name (what a lag reports as the resume point).
    let shareable = op
        .node
        .selection_set
        .node
        .items
        .iter()
        .all(|s| match &s.node {
            Selection::Field(f) => {
                let seq: &[&str] = match f.node.name.node.as_str() {
                    "twinChanged" => &["seq", "sequence"],
                    "events" if f.node.get_argument("after").is_none() => &["seq"],
                    _ => return false,
                };
                let items = &f.node.selection_set.node.items;
                let selects_seq = items.iter().any(|i| {
                    matches!(&i.node, Selection::Field(x)
                    if seq.contains(&x.node.name.node.as_str()) && x.node.alias.is_none())
                });
                let seq_aliased = items.iter().any(|i| {
                    matches!(&i.node, Selection::Field(x)
                    if x.node.alias.as_ref().is_some_and(|a| seq.contains(&a.node.as_str())))
                });
                selects_seq && !seq_aliased
            }
            _ => false,
        });
    if !shareable {
        return None;
    }
    let variables = serde_json::to_string(&request.variables).ok()?;
    Some((
        generation,
        format!(
            "{view}\u{1}{}\u{0}{}\u{0}{variables}",
            request.operation_name.as_deref().unwrap_or(""),
            request.query
        ),
    ))
}

/// The event sequence number a live response carries, if any.
fn sequence_of(r: &Response) -> Option<u64> {
    let async_graphql::Value::Object(root) = &r.data else {
        return None;
    };
    root.values().find_map(|v| match v {
        async_graphql::Value::Object(o) => {
            ["seq", "sequence"].iter().find_map(|k| match o.get(*k) {
                Some(async_graphql::Value::Number(n)) => n.as_u64(),
                _ => None,
            })
        }
        _ => None,
    })
}

/// A subscriber's copy of a shared response.
fn copy(r: &Response) -> Response {
    let mut out = Response::new(r.data.clone());
    out.extensions = r.extensions.clone();
    out.cache_control = r.cache_control;
    out.errors = r.errors.clone();
    out.http_headers = r.http_headers.clone();
    out
}

fn lagged(last_sent: u64) -> Response {
    let err = super::errors::lagged(
        format!(
            "this subscription fell too far behind and was stopped; resume with events(after: {last_sent})"
        ),
        Some(last_sent),
    );
    Response::from_errors(vec![ServerError {
        message: err.message,
        source: None,
        locations: Vec::new(),
        path: Vec::new(),
        extensions: err.extensions,
    }])
}

impl Hubs {
    pub fn new(capacity: usize) -> Arc<Hubs> {
        Arc::new(Hubs {
            hubs: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        })
    }

    /// The stream of `request`, a share of a hub, when it may share (`start`
    /// runs a new hub's execution); else the request back. `last_seq` is the
    /// store's last sequence now (what a lag before the first delivery
    /// reports).
    pub fn join(
        self: &Arc<Self>,
        generation: u64,
        request: Request,
        last_seq: u64,
        metrics: &Arc<Metrics>,
        start: impl FnOnce(Request) -> BoxStream<'static, Response>,
    ) -> Result<BoxStream<'static, Delivery>, Box<Request>> {
        let Some(key) = share_key(generation, &request) else {
            return Err(Box::new(request));
        };
        // Never drop a Hub while holding the map's lock (its Drop takes it).
        let existing = match self.hubs.lock() {
            Ok(map) => map.get(&key).and_then(Weak::upgrade),
            Err(_) => return Err(Box::new(request)),
        };
        let live = existing.and_then(|hub| {
            let rx = hub.tx.lock().ok()?.as_ref()?.subscribe();
            Some((hub, rx))
        });
        let (hub, rx) = match live {
            Some(x) => x,
            None => {
                let (tx, rx) = broadcast::channel(self.capacity);
                let hub = Arc::new(Hub {
                    tx: Mutex::new(Some(tx.clone())),
                    task: OnceLock::new(),
                    key: key.clone(),
                    hubs: Arc::downgrade(self),
                });
                let upstream = start(request.data(HubExecution));
                let weak = Arc::downgrade(&hub);
                let task = tokio::spawn(async move {
                    let mut upstream = upstream;
                    while let Some(r) = upstream.next().await {
                        // No receiver right now is no reason to stop: the
                        // last subscriber to leave aborts this task.
                        let _ = tx.send(Arc::new(SharedResult::new(r)));
                    }
                    // Ended: late joiners start afresh; dropping `tx` (the
                    // last sender) closes every subscriber's stream.
                    if let Some(hub) = weak.upgrade()
                        && let Ok(mut tx) = hub.tx.lock()
                    {
                        *tx = None;
                    }
                });
                let _ = hub.task.set(task.abort_handle());
                if let Ok(mut map) = self.hubs.lock() {
                    map.insert(key, Arc::downgrade(&hub));
                }
                (hub, rx)
            }
        };
        struct Share {
            rx: broadcast::Receiver<Arc<SharedResult>>,
            _hub: Arc<Hub>,
            _counted: SubscriptionGuard,
            last: u64,
            done: bool,
        }
        let share = Share {
            rx,
            _hub: hub,
            _counted: metrics.subscription(),
            last: last_seq,
            done: false,
        };
        Ok(stream::unfold(share, |mut s| async move {
            if s.done {
                return None;
            }
            match s.rx.recv().await {
                Ok(r) => {
                    if let Some(seq) = sequence_of(&r.response) {
                        s.last = seq;
                    }
                    Some((Delivery::Shared(r), s))
                }
                Err(RecvError::Lagged(_)) => {
                    s.done = true;
                    let last = s.last;
                    Some((Delivery::Own(Box::new(lagged(last))), s))
                }
                Err(RecvError::Closed) => None,
            }
        })
        .boxed())
    }
}
