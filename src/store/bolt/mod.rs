//! The Neo4j store: the twin graph in a Bolt database (Neo4j 5, or any
//! openCypher database that speaks Bolt), through neo4rs.
//!
//! Several server replicas may share one database. Every write goes through
//! one transaction that first takes the sequence counter
//! ([`layout::META`]), so writers are serialized cluster-wide and the event
//! sequence is gap-free; inside it, the batch is validated by the same
//! planner the embedded store uses, on the part of the graph it touches
//! (loaded in the transaction), and the new state and its events are
//! written together. Transient failures (deadlocks, leader switches,
//! conflicting commits) retry the whole transaction with backoff.
//!
//! Live events come from a tailer: it reads the event log in sequence order
//! (at once after a local write, else every `poll` interval), so a change
//! made through any replica reaches every replica's subscribers, in order,
//! without gaps.
//!
//! Layout: [`layout`] the graph layout, [`write`] the write path, this
//! module the reads, the tailer and the `GraphStore` implementation.

mod filter;
pub mod layout;
mod lines;
mod order;
mod write;

pub use crate::metrics::ConnectionCounts;
use lines::{Cut, Lines};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use neo4rs::{BoltType, Query, query};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use super::{AggregateQuery, At, GraphStore, Page, StoreConfig, StoreError, TwinQuery};
use crate::dtdl::ModelSet;
use crate::twin::aggregate::{Aggregate, Numbers, Stats, Tally};
use crate::twin::query::{Direction, Reach, Reached, Traversal};
use crate::twin::{Batch, Event, Graph, Micros, Relationship, Twin, TwinError};
use layout::{EVENT, META, ModelLabels, SERIES_BLOCK, TWIN, decode};

/// Where the database is and how to use it.
#[derive(Debug, Clone)]
pub struct BoltConfig {
    /// `bolt://`, `bolt+s://`, `neo4j://` or `neo4j+s://` URI.
    pub uri: String,
    pub user: String,
    pub password: String,
    /// Database name (`None`: the server's default).
    pub database: Option<String>,
    /// Connections for user reads (writes have [`WRITE_LINES`] of their
    /// own, the event tailer one).
    pub max_connections: usize,
    /// How often the event log is polled for other replicas' changes.
    pub poll: Duration,
    /// How long connecting may take at startup, and how long a write may
    /// keep retrying conflicts with other writers, before failing with
    /// `store_unavailable`.
    pub timeout: Duration,
    /// The budget of one statement (or write transaction), its wait for a
    /// free connection included: past it the statement is stopped (its
    /// connection closed) and the call fails with `store_timeout`.
    pub statement_timeout: Duration,
}

/// A store's connections, per kind of work ([`BoltStore::connections`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    pub reads: ConnectionCounts,
    pub writes: ConnectionCounts,
    pub tailer: ConnectionCounts,
}

/// Connections for writes: the writer's transactions, its read-ahead,
/// leases and retention.
pub const WRITE_LINES: usize = 4;

impl Default for BoltConfig {
    /// No URI yet; the user `neo4j`, 16 connections for reads, polled
    /// every 100 ms, 10 s to connect, statements given 10 s.
    fn default() -> Self {
        BoltConfig {
            uri: String::new(),
            user: "neo4j".to_owned(),
            password: String::new(),
            database: None,
            max_connections: 16,
            poll: Duration::from_millis(100),
            timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

impl BoltConfig {
    pub fn new(uri: &str, user: &str, password: &str) -> BoltConfig {
        BoltConfig {
            uri: uri.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
            ..BoltConfig::default()
        }
    }
}

/// Constraints and indexes applied at startup (idempotent): the statements
/// of `schema/neo4j.cypher`, which documents them.
const MIGRATIONS: &str = include_str!("../../../schema/neo4j.cypher");

/// The statements of a Cypher script: `;`-terminated, `//` comment lines.
fn statements(script: &str) -> Vec<String> {
    let text: String = script
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A request to the writer task.
enum WriteRequest {
    Batch {
        batch: Batch,
        actor: String,
        reply: oneshot::Sender<Result<Vec<Event>, StoreError>>,
    },
    Models {
        models: Arc<ModelSet>,
        documents: Vec<serde_json::Value>,
        expect: Option<u64>,
        actor: String,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

struct Shared {
    /// Connections for user reads.
    reads: Lines,
    /// Connections for the writer (and leases, retention).
    writes: Lines,
    /// The event tailer's connection: it is also the health probe, so it
    /// never waits behind the others.
    tailer: Lines,
    config: StoreConfig,
    bolt: BoltConfig,
    models: RwLock<(Arc<ModelSet>, Arc<ModelLabels>)>,
    /// Moves whenever a published event changes the containment hierarchy.
    hierarchy: AtomicU64,
    /// Sequence of the last event published to subscribers.
    last_seq: AtomicU64,
    events: broadcast::Sender<Arc<Event>>,
    /// Wakes the tailer (after a local commit).
    tail: Arc<Notify>,
    /// Held while publishing, so events go out once and in order.
    publishing: std::sync::Mutex<()>,
    closed: AtomicBool,
    /// Whether the database answered the tailer's last read.
    healthy: AtomicBool,
    /// Statements sent for reads (not the tailer's): see `reads`.
    read_statements: AtomicU64,
    /// Properties with a range index for ordered lists (made when a list
    /// is first ordered by them: `ensure_sort_index`).
    sort_indexes: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The Neo4j store.
#[derive(Clone)]
pub struct BoltStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteRequest>,
}

impl std::fmt::Debug for BoltStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoltStore")
            .field("uri", &self.shared.bolt.uri)
            .field("database", &self.shared.bolt.database)
            .finish_non_exhaustive()
    }
}

/// A database error as a store error: unreachable or slow is
/// `Unavailable` (worth retrying), the rest (wrong credentials included) a
/// storage failure.
fn db_error(e: neo4rs::Error) -> StoreError {
    match e {
        neo4rs::Error::IOError { .. } | neo4rs::Error::ConnectionError => {
            StoreError::Unavailable(e.to_string())
        }
        // A connection that broke while records streamed: neo4rs reports
        // the I/O error inside an "unexpected response" (its text is all
        // there is to go by).
        neo4rs::Error::UnexpectedMessage(m)
            if m.contains("Err(IOError") || m.contains("Err(ConnectionError") =>
        {
            StoreError::Unavailable(format!("the connection to the database broke: {m}"))
        }
        neo4rs::Error::AuthenticationError(why) => {
            StoreError::Storage(format!("the database refused the credentials: {why}"))
        }
        neo4rs::Error::Neo4j(ref n) if passing(n.code()) => {
            StoreError::Unavailable(format!("{}: {}", n.code(), n.message()))
        }
        neo4rs::Error::UnexpectedMessage(ref m) if PASSING.iter().any(|c| m.contains(c)) => {
            StoreError::Unavailable(m.clone())
        }
        other => StoreError::Storage(other.to_string()),
    }
}

/// Failures that say the database cannot serve this connection now, not
/// that the statement is wrong: transient ones (a database starting or
/// stopping, a leader switch, a deadlock), and the end of the connection's
/// session (a database shutting down ends every session: ArcadeDB answers
/// "the credentials of this connection are no longer valid"). A new
/// connection may succeed; wrong credentials then fail at its handshake.
const PASSING: [&str; 4] = [
    "Neo.TransientError.",
    "Neo.ClientError.Cluster.NotALeader",
    "Neo.ClientError.Security.Unauthorized",
    "Neo.ClientError.Security.AuthorizationExpired",
];

fn passing(code: &str) -> bool {
    PASSING.iter().any(|c| code.starts_with(c))
}

/// Whether retrying the write transaction may succeed: a transient
/// failure (deadlock, leader switch, conflicting commit), or a uniqueness
/// violation, which for twingraph's writes means that a concurrent writer
/// took the same sequence number or twin id after this one read (the
/// retry plans again on the new state: an id taken meanwhile is then
/// refused properly). Failures at COMMIT come back from neo4rs as an
/// unexpected message carrying the server's code, hence the text search.
fn transient(e: &neo4rs::Error) -> bool {
    const RETRYABLE: [&str; 3] = [
        "Neo.TransientError.",
        "Neo.ClientError.Cluster.NotALeader",
        "Neo.ClientError.Schema.ConstraintValidationFailed",
    ];
    match e {
        neo4rs::Error::Neo4j(n) => RETRYABLE.iter().any(|c| n.code().starts_with(c)),
        neo4rs::Error::UnexpectedMessage(m) => RETRYABLE.iter().any(|c| m.contains(c)),
        _ => false,
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BoltStore {
    /// Connects, applies the migrations, and starts the writer and the
    /// tailer (on the current Tokio runtime).
    pub async fn connect(
        bolt: BoltConfig,
        models: Arc<ModelSet>,
        config: StoreConfig,
    ) -> Result<BoltStore, StoreError> {
        let mut builder = neo4rs::ConfigBuilder::default()
            .uri(bolt.uri.as_str())
            .user(bolt.user.as_str())
            .password(bolt.password.as_str())
            // A line is one connection (see `lines`).
            .max_connections(1)
            .fetch_size(1000);
        if let Some(db) = &bolt.database {
            builder = builder.db(db.as_str());
        }
        let cfg = builder.build().map_err(db_error)?;
        let db =
            within_timeout(bolt.timeout, &bolt.uri, neo4rs::Graph::connect(cfg.clone())).await?;
        // A first connection outside the driver's retries: an unreachable
        // server or wrong credentials are reported at once.
        let probe = async { db.start_txn().await?.rollback().await };
        within_timeout(bolt.timeout, &bolt.uri, probe).await?;
        for m in statements(MIGRATIONS) {
            within_timeout(bolt.timeout, &bolt.uri, db.run(query(&m))).await?;
        }
        drop(db);
        let labels = Arc::new(ModelLabels::new(&models));
        let (events, _) = broadcast::channel(config.live_buffer.max(1));
        let shared = Arc::new(Shared {
            reads: Lines::new("reads", &cfg, bolt.max_connections),
            writes: Lines::new("writes", &cfg, WRITE_LINES),
            tailer: Lines::new("tailer", &cfg, 1),
            config,
            bolt,
            models: RwLock::new((models, labels)),
            last_seq: AtomicU64::new(0),
            hierarchy: AtomicU64::new(0),
            events,
            tail: Arc::new(Notify::new()),
            publishing: std::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            read_statements: AtomicU64::new(0),
            sort_indexes: std::sync::Mutex::new(std::collections::HashSet::new()),
        });
        let (seq, _) = write::position(&shared).await?;
        shared.last_seq.store(seq, Ordering::Release);
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(write::writer(shared.clone(), rx));
        tokio::spawn(tailer(Arc::downgrade(&shared)));
        if shared.config.retention.is_some() {
            tokio::spawn(pruner(Arc::downgrade(&shared)));
        }
        Ok(BoltStore { shared, writer: tx })
    }

    /// Applies the retention setting now: removes events older than it
    /// (never stream records, never current state); how many were removed.
    /// Every server also does this every ten minutes.
    pub async fn prune_history(&self) -> Result<usize, StoreError> {
        write::prune(&self.shared).await
    }

    /// History before this sequence number may have been removed.
    async fn check_history(&self, at: At) -> Result<(), StoreError> {
        if self.shared.config.retention.is_none() {
            return Ok(());
        }
        let (first, time) = write::pruned_before(&self.shared, &self.shared.reads).await?;
        match at {
            At::Seq(s) if first > 1 && s < first => Err(StoreError::Pruned(first)),
            At::Time(t) if first > 1 && t <= time => Err(StoreError::Pruned(first)),
            _ => Ok(()),
        }
    }

    /// Cypher statements sent for reads so far (each read is one
    /// statement; the tailer's are not counted): for tests and diagnostics.
    pub fn reads(&self) -> u64 {
        self.shared.read_statements.load(Ordering::Relaxed)
    }

    /// The store's connections, per kind of work: for diagnostics and
    /// tests.
    pub fn connections(&self) -> Connections {
        Connections {
            reads: self.shared.reads.counts(),
            writes: self.shared.writes.counts(),
            tailer: self.shared.tailer.counts(),
        }
    }

    /// Stops the tailer; pending writes still finish.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.tail.notify_one();
    }

    /// The values of column `col` (a string) of every row of `q`.
    async fn strings(&self, q: Query, col: &str) -> Result<Vec<String>, StoreError> {
        rows(&self.shared, q, col).await
    }

    async fn twins_where(&self, q: Query) -> Result<Vec<Twin>, StoreError> {
        self.strings(q, "s")
            .await?
            .iter()
            .map(|s| decode("twin", s))
            .collect()
    }

    /// The conditions and parameters of a list's model and filter.
    fn list_conditions(&self, tq: &TwinQuery) -> (Vec<String>, Vec<(String, BoltType)>) {
        let mut conditions = Vec::new();
        let mut params: Vec<(String, BoltType)> = Vec::new();
        if let Some(model) = &tq.model {
            conditions.push("n.model IN $models".to_owned());
            params.push((
                "models".into(),
                BoltType::from(model_ids(&self.models(), model, tq.subtypes)),
            ));
        }
        if let Some(f) = &tq.filter {
            let c = filter::condition(f);
            conditions.extend(c.text);
            params.extend(c.params);
        }
        (conditions, params)
    }

    /// A page of `tq`, the statement of each step written by `statement`
    /// from where the list stands: one step when Cypher decides the filter
    /// exactly (the usual case), more while the filter drops what Cypher
    /// let through. Going backward, from the end of the range.
    async fn filtered_page(
        &self,
        tq: &TwinQuery,
        statement: impl Fn(&TwinQuery, i64) -> Query,
    ) -> Result<Page<Twin>, StoreError> {
        let limit = tq.limit.max(1);
        let page = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let mut at = tq.clone();
        let mut items = Vec::new();
        loop {
            let found = self.twins_where(statement(&at, page)).await?;
            let full = found.len() > limit;
            if let Some(last) = found.last() {
                at.past(last);
            }
            items.extend(
                found
                    .into_iter()
                    .filter(|t| tq.filter.as_ref().is_none_or(|f| f.matches(t))),
            );
            if items.len() > limit || !full {
                break;
            }
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        if tq.backward {
            items.reverse();
        }
        Ok(Page { items, has_more })
    }

    /// A list in an order: `ORDER BY` over the flattened properties with a
    /// keyset condition per cursor; sorted here when a key is not flattened.
    async fn twins_ordered(&self, tq: &TwinQuery) -> Result<Page<Twin>, StoreError> {
        let Some(columns) = order::columns(&tq.order) else {
            return self.twins_sorted_here(tq).await;
        };
        self.ensure_sort_indexes(&columns).await;
        let (conditions, params) = self.list_conditions(tq);
        let order_by = order::order_by(&tq.order, &columns, tq.backward);
        self.filtered_page(tq, |at, page| {
            let mut all = conditions.clone();
            let mut p = params.clone();
            let o = &at.order;
            if let Some(id) = &at.after {
                let v = &at.after_values;
                all.push(order::beyond(o, &columns, v, id, true, "a", &mut p));
            }
            if let Some(id) = &at.before {
                let v = &at.before_values;
                all.push(order::beyond(o, &columns, v, id, false, "b", &mut p));
            }
            let text = format!(
                "MATCH (n:{TWIN}){}{} RETURN n.state AS s ORDER BY {order_by} LIMIT $limit",
                if all.is_empty() { "" } else { " WHERE " },
                all.join(" AND ")
            );
            query(&text)
                .params(p.iter().map(|(k, v)| (k.as_str(), v.clone())))
                .param("limit", page)
        })
        .await
    }

    /// A range index on each property `columns` read (`n.`name``), made
    /// the first time a list is ordered by it (`CREATE INDEX … IF NOT
    /// EXISTS`, so every replica may ask). A database that refuses is
    /// logged and the list is still answered, unindexed.
    async fn ensure_sort_indexes(&self, columns: &[String]) {
        for col in columns {
            let Some(name) = col.strip_prefix("n.`").and_then(|c| c.strip_suffix('`')) else {
                continue; // id, model, version: indexed already
            };
            let fresh = self
                .shared
                .sort_indexes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(name.to_owned());
            if !fresh {
                continue;
            }
            let statement =
                format!("CREATE INDEX twin_by_{name} IF NOT EXISTS FOR (n:{TWIN}) ON ({col})");
            let made = within(&self.shared, &self.shared.reads, |db| async move {
                db.run(query(&statement)).await
            })
            .await;
            match made {
                Ok(()) => tracing::info!(property = name, "sort index made for ordered lists"),
                Err(e) => {
                    tracing::warn!(property = name, error = %e, "cannot make a sort index; ordered lists by it scan")
                }
            }
        }
    }

    /// An ordered list whose keys Cypher cannot read: every match (in id
    /// order, a page at a time), sorted here.
    async fn twins_sorted_here(&self, tq: &TwinQuery) -> Result<Page<Twin>, StoreError> {
        let mut by_id = TwinQuery {
            order: Vec::new(),
            after: None,
            before: None,
            after_values: Vec::new(),
            before_values: Vec::new(),
            backward: false,
            limit: 1000,
            ..tq.clone()
        };
        let mut all = Vec::new();
        loop {
            let page = self.twins(&by_id).await?;
            by_id.after = page.items.last().map(|t| t.id.to_string());
            all.extend(page.items);
            if !page.has_more {
                break;
            }
        }
        Ok(super::sorted_page(
            all,
            tq.after_position(),
            tq.before_position(),
            &tq.order,
            tq.backward,
            tq.limit.max(1),
        ))
    }

    async fn rels_where(&self, q: Query) -> Result<Vec<Relationship>, StoreError> {
        let mut out: Vec<Relationship> = self
            .strings(q, "j")
            .await?
            .iter()
            .map(|s| decode("relationship", s))
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| (&a.source, &a.id).cmp(&(&b.source, &b.id)));
        out.dedup_by(|a, b| a.source == b.source && a.id == b.id);
        Ok(out)
    }

    async fn events_where(&self, q: Query) -> Result<Vec<Event>, StoreError> {
        self.strings(q, "j")
            .await?
            .iter()
            .map(|s| decode("event", s))
            .collect()
    }

    /// The part of the graph a traversal can reach, in one statement: the
    /// start twin and every relationship on a path of at most `max_depth`
    /// hops, and (`with_twins`) the twins at the ends of those paths.
    async fn neighbourhood(
        &self,
        t: &Traversal,
        with_twins: bool,
    ) -> Result<(Graph, Vec<Twin>), StoreError> {
        let depth = t.max_depth.clamp(1, self.shared.config.max_depth.max(1));
        let paths = paths_of(t, depth).optional_match();
        let twins = if with_twins {
            "collect(DISTINCT t.state)"
        } else {
            "[]"
        };
        let q = query(&format!(
            "MATCH (s:{TWIN} {{id: $start}}) {paths} \
             RETURN s.state AS start, collect([r IN rs | r.json]) AS paths, {twins} AS twins"
        ))
        .param("start", t.start.as_str());
        read_statement(&self.shared)?;
        let fetch = |db: neo4rs::Graph| async move {
            let mut stream = db.execute(q).await?;
            let mut out = None;
            if let Some(row) = stream.next().await? {
                let de = neo4rs::Error::DeserializationError;
                let start: String = row.get("start").map_err(de)?;
                let paths: Vec<Vec<String>> = row.get("paths").map_err(de)?;
                let twins: Vec<String> = row.get("twins").map_err(de)?;
                out = Some((start, paths, twins));
            }
            Ok::<_, neo4rs::Error>(out)
        };
        let found = within(&self.shared, &self.shared.reads, fetch).await?;
        let Some((start, paths, states)) = found else {
            return Err(TwinError::NotFound(t.start.clone()).into());
        };
        let mut g = Graph::new(self.shared.config.graph.clone());
        g.insert_twin(decode("twin", &start)?);
        let mut rels: Vec<Relationship> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for json in paths.iter().flatten() {
            if seen.insert(json.as_str()) {
                rels.push(decode("relationship", json)?);
            }
        }
        // Adjacency in creation order, as the embedded store keeps it.
        rels.sort_by(|a, b| {
            (a.created_at, &a.source, &a.id).cmp(&(b.created_at, &b.source, &b.id))
        });
        for r in rels {
            g.insert_relationship(r);
        }
        let twins = states
            .iter()
            .map(|s| decode("twin", s))
            .collect::<Result<Vec<Twin>, _>>()?;
        Ok((g, twins))
    }
}

/// The Cypher pattern of paths `rs` of 1 to `depth` relationships in
/// `direction`.
fn paths_of(t: &Traversal, depth: usize) -> Paths {
    // The relationship types in the pattern itself (names are checked
    // identifiers, backquoted): the database follows only those instead of
    // filtering every path it found. A name that is no identifier can be no
    // relationship type here, so it matches nothing.
    // Sorted and once each: one statement text per set of names, which the
    // database plans once.
    let types: Vec<String> = t
        .names
        .iter()
        .filter(|n| layout::is_identifier(n))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect();
    let rel = if types.is_empty() {
        format!("rs*1..{depth}")
    } else {
        format!("rs:{}*1..{depth}", types.join("|"))
    };
    let pattern = match t.direction {
        Direction::Out => format!("-[{rel}]->"),
        Direction::In => format!("<-[{rel}]-"),
        Direction::Both => format!("-[{rel}]-"),
    };
    Paths {
        pattern,
        none: !t.names.is_empty() && types.is_empty(),
    }
}

/// The statement [`GraphStore::reach`] sends for `t` (with parameter
/// `$start`, the start's id): depths in the database, three short columns
/// per twin reached, no paths, no state. One row of nulls when nothing is
/// reached, none when the start does not exist; the start itself comes
/// back when a cycle leads to it. Public so that the benchmark can send
/// the very same statement directly.
pub fn reach_statement(t: &Traversal) -> String {
    let paths = paths_of(t, t.max_depth).optional_match();
    format!(
        "MATCH (s:{TWIN} {{id: $start}}) {paths} \
         RETURN t.id AS id, t.model AS model, min(size(rs)) AS depth"
    )
}

/// A traversal's variable-length pattern, from its start `(s)` to `(t)`.
struct Paths {
    /// `-[rs:`a`|`b`*1..n]->` (direction, names and depth of the traversal).
    pattern: String,
    /// Whether no relationship can be crossed (names given, none of them
    /// possible).
    none: bool,
}

impl Paths {
    /// `OPTIONAL MATCH` of the paths from `s`, which keeps the start's row
    /// when nothing is reached.
    fn optional_match(&self) -> String {
        let Paths { pattern, none } = self;
        let filter = if *none { " WHERE false" } else { "" };
        format!("OPTIONAL MATCH (s){pattern}(t:{TWIN}){filter}")
    }
}

/// `f` within `timeout`, as a store result.
async fn within_timeout<T>(
    timeout: Duration,
    uri: &str,
    f: impl Future<Output = Result<T, neo4rs::Error>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| StoreError::Unavailable(format!("no answer from {uri}")))?
        .map_err(db_error)
}

/// Runs `exchange` (statements sent and their answers read to the end)
/// on a connection of `lines`, within the statement budget, as a store
/// result. Whatever happens to the caller, the connection is reused only
/// if the exchange ended ([`lines`]).
async fn within<T, F, Fut>(shared: &Shared, lines: &Lines, exchange: F) -> Result<T, StoreError>
where
    F: FnOnce(neo4rs::Graph) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, neo4rs::Error>> + Send + 'static,
    T: Send + 'static,
{
    match lines.lend(shared.bolt.statement_timeout, exchange).await {
        Ok(answer) => answer.map_err(db_error),
        Err(cut) => Err(cut_error(shared, cut)),
    }
}

/// An exchange that did not end, as a store error: `Timeout` while the
/// database answers the tailer, `Unavailable` when it does not.
fn cut_error(shared: &Shared, cut: Cut) -> StoreError {
    let budget = shared.bolt.statement_timeout;
    match cut {
        Cut::Unusable(e) => db_error(e),
        Cut::Failed(why) => StoreError::Storage(format!("a database exchange failed: {why}")),
        _ if !shared.healthy.load(Ordering::Acquire) => {
            StoreError::Unavailable("the database cannot be reached".into())
        }
        Cut::Busy { purpose, size } => StoreError::Timeout(format!(
            "all {size} database connections for {purpose} stayed busy for the statement budget ({budget:?}, store.statement_timeout_ms)"
        )),
        Cut::Late => StoreError::Timeout(format!(
            "the statement did not finish within its budget ({budget:?}, store.statement_timeout_ms) and was stopped"
        )),
    }
}

/// [`available`], counting the read statement about to be sent.
fn read_statement(shared: &Shared) -> Result<(), StoreError> {
    available(shared)?;
    shared.read_statements.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Fails at once while the database is known to be unreachable (the
/// tailer notices when it is back).
fn available(shared: &Shared) -> Result<(), StoreError> {
    if shared.healthy.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(StoreError::Unavailable(
            "the database cannot be reached".into(),
        ))
    }
}

/// Time series blocks (see [`crate::series`]): one `SeriesBlock` node per
/// twin, field and bucket, its points the block's bytes in base64; the
/// `series:mark` meta node holds the last event whose points are in blocks.
/// Written by one server at a time (the `series` lease).
impl BoltStore {
    /// The last event whose points are in blocks (0: none).
    pub async fn series_mark(&self) -> Result<u64, StoreError> {
        let q = query(&format!(
            "MATCH (m:{META} {{key: $key}}) RETURN toString(m.seq) AS s"
        ))
        .param("key", SERIES_MARK);
        Ok(rows(&self.shared, q, "s")
            .await?
            .first()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0))
    }

    /// The blocks of `twin`'s `field` in buckets `first..=last`, in order.
    pub async fn series_blocks(
        &self,
        twin: &str,
        field: &str,
        first: Micros,
        last: Micros,
    ) -> Result<Vec<String>, StoreError> {
        let q = query(&format!(
            "MATCH (b:{SERIES_BLOCK}) WHERE b.twin = $twin AND b.field = $field \
               AND b.start >= $first AND b.start <= $last \
             RETURN b.points AS p ORDER BY b.start"
        ))
        .param("twin", twin)
        .param("field", field)
        .param("first", first)
        .param("last", last);
        rows(&self.shared, q, "p").await
    }

    /// The stored blocks of these (twin, field, bucket) keys.
    pub async fn series_blocks_at(
        &self,
        keys: &[(String, String, Micros)],
    ) -> Result<Vec<((String, String, Micros), String)>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<BoltType> = keys
            .iter()
            .map(|(t, f, s)| {
                let mut m = neo4rs::BoltMap::new();
                m.put("twin".into(), BoltType::from(t.as_str()));
                m.put("field".into(), BoltType::from(f.as_str()));
                m.put("start".into(), BoltType::from(*s));
                BoltType::Map(m)
            })
            .collect();
        // Ids and field names hold no control characters: a newline
        // separates the parts of a row.
        let q = query(&format!(
            "UNWIND $keys AS k MATCH (b:{SERIES_BLOCK}) \
               WHERE b.twin = k.twin AND b.field = k.field AND b.start = k.start \
             RETURN b.twin + '\n' + b.field + '\n' + toString(b.start) + '\n' + b.points AS x"
        ))
        .param("keys", list);
        let mut out = Vec::new();
        for row in rows(&self.shared, q, "x").await? {
            let mut parts = row.splitn(4, '\n');
            if let (Some(t), Some(f), Some(s), Some(p)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
                && let Ok(start) = s.parse::<i64>()
            {
                out.push(((t.to_owned(), f.to_owned(), start), p.to_owned()));
            }
        }
        Ok(out)
    }

    /// Writes blocks (each replacing the stored one of its key) and the
    /// mark in one transaction; removes the blocks of buckets before the
    /// `prune` cutoffs: of raw series, of minute roll-ups (`…#1m:…`), of
    /// hour roll-ups (`…#1h:…`).
    pub async fn series_write(
        &self,
        blocks: Vec<((String, String, Micros), String)>,
        mark: u64,
        prune_before: Option<(Option<Micros>, Option<Micros>, Option<Micros>)>,
    ) -> Result<(), StoreError> {
        write::series_write(&self.shared, blocks, mark, prune_before).await
    }
}

/// The meta node of the series mark.
const SERIES_MARK: &str = "series:mark";

/// Every value of string column `col` of `q`'s rows.
async fn rows(shared: &Shared, q: Query, col: &str) -> Result<Vec<String>, StoreError> {
    read_statement(shared)?;
    rows_on(shared, &shared.reads, q, col).await
}

/// Every value of string column `col` of `q`'s rows, on a connection of
/// `lines`.
async fn rows_on(
    shared: &Shared,
    lines: &Lines,
    q: Query,
    col: &str,
) -> Result<Vec<String>, StoreError> {
    let col = col.to_owned();
    let fetch = |db: neo4rs::Graph| async move {
        let mut stream = db.execute(q).await?;
        let mut out = Vec::new();
        while let Some(row) = stream.next().await? {
            if let Ok(v) = row.get::<String>(&col) {
                out.push(v);
            }
        }
        Ok::<_, neo4rs::Error>(out)
    };
    within(shared, lines, fetch).await
}

/// The stats of one row of an aggregation: `count(*)`, then per column
/// its count, sum, minimum and maximum.
fn aggregate_row(a: &[serde_json::Value], columns: usize) -> Stats {
    let count = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_u64).unwrap_or(0);
    let number = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_f64);
    Stats {
        count: count(a.first()),
        fields: (0..columns)
            .map(|i| {
                let at = 1 + 4 * i;
                Numbers {
                    count: count(a.get(at)),
                    sum: number(a.get(at + 1)).unwrap_or(0.0),
                    min: number(a.get(at + 2)),
                    max: number(a.get(at + 3)),
                }
            })
            .collect(),
    }
}

/// Applies the retention setting now and every [`write::PRUNE_EVERY`].
async fn pruner(shared: std::sync::Weak<Shared>) {
    loop {
        {
            let Some(s) = shared.upgrade() else { return };
            if s.closed.load(Ordering::Acquire) {
                return;
            }
            match write::prune(&s).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "retention: old events removed"),
                Err(e) => {
                    tracing::warn!(error = %e, "retention: cannot remove old events; retrying later")
                }
            }
        }
        tokio::time::sleep(write::PRUNE_EVERY).await;
    }
}

/// How long the tailer's read of the log may take before the database is
/// probed, and how long the probe may take.
const PROBE_AFTER: Duration = Duration::from_secs(2);

/// Publishes committed events in sequence order: after a local commit at
/// once, else every `poll` interval (changes made through other replicas).
async fn tailer(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        if s.closed.load(Ordering::Acquire) {
            return;
        }
        let after = s.last_seq.load(Ordering::Acquire);
        let mut more = false;
        // On its own connection, so it never waits behind user queries. The
        // tailer is also the health probe: a database that refuses or drops
        // the connection is unavailable at once. A read that is slow may be
        // a busy database (heavy statements running) or one that hangs (a
        // database shutting down keeps its sockets open a while): after
        // `PROBE_AFTER`, a trivial statement on a new connection tells them
        // apart, and only a database that does not answer it is unavailable.
        let deadline = s.bolt.statement_timeout.max(s.bolt.poll);
        let answer = {
            let read = s
                .tailer
                .lend_here(deadline, |db| log_after(db, after, 1000));
            tokio::pin!(read);
            tokio::select! {
                r = &mut read => r,
                () = tokio::time::sleep(PROBE_AFTER) => {
                    if let Err(why) = s.tailer.probe(PROBE_AFTER).await
                        && s.healthy.swap(false, Ordering::AcqRel)
                    {
                        tracing::warn!(uri = %s.bolt.uri, error = %why, "the database cannot be reached");
                    }
                    read.await
                }
            }
        };
        let outcome = match answer {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(e.to_string()),
            Err(Cut::Unusable(e)) => Err(e.to_string()),
            Err(_) => Err("no answer".to_owned()),
        };
        let was = s.healthy.swap(outcome.is_ok(), Ordering::AcqRel);
        match (&outcome, was) {
            (Ok(_), false) => tracing::info!(uri = %s.bolt.uri, "the database is reachable again"),
            (Err(e), true) => {
                tracing::warn!(uri = %s.bolt.uri, error = %e, "the database cannot be reached")
            }
            _ => {}
        }
        if let Ok(found) = outcome {
            {
                more = found.len() == 1000;
                let mut events = Vec::with_capacity(found.len());
                for json in found {
                    match decode::<Event>("event", &json) {
                        Ok(e) => events.push(e),
                        Err(e) => {
                            tracing::error!(error = %e, "an undecodable event in the log");
                            more = false;
                            break;
                        }
                    }
                }
                // Published only from the next sequence number on, without
                // holes (a hole is a commit not visible yet: read again).
                let before = s.last_seq.load(Ordering::Acquire);
                let expected = before + events.len() as u64;
                let hole = events.first().is_some_and(|e| e.seq > before + 1);
                write::publish(&s, events);
                if s.last_seq.load(Ordering::Acquire) != expected {
                    more = false;
                }
                // A hole that retention made (this server was away longer
                // than the retention): go on after it.
                if hole
                    && s.config.retention.is_some()
                    && let Ok((mark, _)) = write::pruned_before(&s, &s.tailer).await
                    && mark > before + 1
                {
                    tracing::warn!(
                        from = before + 1,
                        to = mark - 1,
                        "events removed by retention before this server read them"
                    );
                    s.last_seq.fetch_max(mark - 1, Ordering::AcqRel);
                    more = true;
                }
            }
        }
        if more {
            continue;
        }
        let poll = s.bolt.poll;
        let tail = s.tail.clone();
        drop(s);
        tokio::select! {
            () = tail.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// The statement that reads twins by id: their state as column `s`.
fn twins_by_id(ids: impl Into<BoltType>) -> Query {
    query(&format!(
        "UNWIND $ids AS id MATCH (n:{TWIN} {{id: id}}) RETURN n.state AS s"
    ))
    .param("ids", ids)
}

/// Events read by sequence number per statement at most.
const LOG_WINDOW: u64 = 10_000;

/// The JSON of the events after `after`, at most `limit` (and at most
/// [`LOG_WINDOW`]), in order. The counter says where the log ends and the
/// events up to there are looked up by their sequence numbers, through the
/// unique index: a range predicate (`e.seq > $after`) makes some databases
/// (ArcadeDB) scan every event, which the tailer would do after every
/// commit and every poll. Where retention left holes, by range after all.
async fn log_after(
    db: neo4rs::Graph,
    after: u64,
    limit: usize,
) -> Result<Vec<String>, neo4rs::Error> {
    let window = u64::try_from(limit).unwrap_or(u64::MAX).min(LOG_WINDOW);
    if window == 0 {
        return Ok(Vec::new());
    }
    let (from, to) = (after.saturating_add(1), after.saturating_add(window));
    // Sequence 0 is never used: it stands for an empty range, so that the
    // log's end comes back even when nothing follows `after`.
    let q = query(&format!(
        "MATCH (m:{META} {{key: 'seq'}}) \
         WITH m.seq AS head, range($from, CASE WHEN m.seq < $to THEN m.seq ELSE $to END) AS seqs \
         UNWIND CASE WHEN size(seqs) = 0 THEN [0] ELSE seqs END AS s \
         OPTIONAL MATCH (e:{EVENT} {{seq: s}}) \
         RETURN head, e.json AS j ORDER BY s"
    ))
    .param("from", seq_param(from))
    .param("to", seq_param(to));
    let mut stream = db.execute(q).await?;
    let (mut head, mut out) = (0u64, Vec::new());
    while let Some(row) = stream.next().await? {
        head = u64::try_from(row.get::<i64>("head").unwrap_or(0)).unwrap_or(0);
        if let Ok(Some(j)) = row.get::<Option<String>>("j") {
            out.push(j);
        }
    }
    // The line's one connection comes back for the next statement.
    drop(stream);
    let expected = head.min(to).saturating_sub(after);
    if out.len() as u64 == expected {
        return Ok(out);
    }
    let q = query(&format!(
        "MATCH (e:{EVENT}) WHERE e.seq > $after RETURN e.json AS j ORDER BY e.seq LIMIT $limit"
    ))
    .param("after", seq_param(after))
    .param("limit", seq_param(window));
    let mut stream = db.execute(q).await?;
    let mut out = Vec::new();
    while let Some(row) = stream.next().await? {
        out.push(row.get::<String>("j").unwrap_or_default());
    }
    Ok(out)
}

fn seq_param(seq: u64) -> BoltType {
    BoltType::from(i64::try_from(seq).unwrap_or(i64::MAX))
}

/// The model DTMIs a list covers.
fn model_ids(models: &ModelSet, model: &str, subtypes: bool) -> Vec<String> {
    if subtypes {
        models.implementors(model).map(|i| i.id.clone()).collect()
    } else {
        vec![model.to_owned()]
    }
}

#[async_trait]
impl GraphStore for BoltStore {
    fn models(&self) -> Arc<ModelSet> {
        read(&self.shared.models).0.clone()
    }

    async fn set_models(
        &self,
        models: Arc<ModelSet>,
        documents: Vec<serde_json::Value>,
        expect: Option<u64>,
        actor: &str,
    ) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteRequest::Models {
                models,
                documents,
                expect,
                actor: actor.to_owned(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn apply(&self, batch: Batch, actor: &str) -> Result<Vec<Event>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteRequest::Batch {
                batch,
                actor: actor.to_owned(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn twin(&self, id: &str) -> Result<Option<Arc<Twin>>, StoreError> {
        let q = query(&format!("MATCH (n:{TWIN} {{id: $id}}) RETURN n.state AS s")).param("id", id);
        Ok(self.twins_where(q).await?.pop().map(Arc::new))
    }

    async fn twins_by_ids(&self, ids: &[String]) -> Result<Vec<Arc<Twin>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let twins = self.twins_where(twins_by_id(ids)).await?;
        Ok(twins.into_iter().map(Arc::new).collect())
    }

    async fn twins(&self, tq: &TwinQuery) -> Result<Page<Twin>, StoreError> {
        if !tq.order.is_empty() {
            return self.twins_ordered(tq).await;
        }
        let (mut conditions, params) = self.list_conditions(tq);
        conditions.insert(0, "n.id > $after".to_owned());
        // With an upper bound only where there is one: the plain range
        // keeps to the id index.
        let text = |bounded: bool| {
            format!(
                "MATCH (n:{TWIN}) WHERE {}{} RETURN n.state AS s ORDER BY n.id{} LIMIT $limit",
                conditions.join(" AND "),
                if bounded { " AND n.id < $before" } else { "" },
                if tq.backward { " DESC" } else { "" }
            )
        };
        self.filtered_page(tq, |at, page| {
            query(&text(at.before.is_some()))
                .params(params.iter().map(|(k, v)| (k.as_str(), v.clone())))
                .param("after", at.after.as_deref().unwrap_or_default())
                .param("before", at.before.as_deref().unwrap_or_default())
                .param("limit", page)
        })
        .await
    }

    async fn relationship(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<Relationship>, StoreError> {
        let q = query(&format!(
            "MATCH (:{TWIN} {{id: $source}})-[r]->(:{TWIN}) WHERE r.id = $id RETURN r.json AS j"
        ))
        .param("source", source)
        .param("id", id);
        Ok(self.rels_where(q).await?.pop())
    }

    async fn relationships_with_id(&self, id: &str) -> Result<Vec<Relationship>, StoreError> {
        let q = query(&format!(
            "MATCH (:{TWIN})-[r]->(:{TWIN}) WHERE r.id = $id RETURN r.json AS j"
        ))
        .param("id", id);
        self.rels_where(q).await
    }

    async fn relationships(
        &self,
        twin: &str,
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<Relationship>, StoreError> {
        self.relationships_of(&[twin.to_owned()], direction, name)
            .await
    }

    async fn relationships_of(
        &self,
        twins: &[String],
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<Relationship>, StoreError> {
        if twins.is_empty() {
            return Ok(Vec::new());
        }
        let out = "UNWIND $ids AS id MATCH (a:Twin {id: id})-[r]->(:Twin) WHERE $name IS NULL OR type(r) = $name RETURN r.json AS j";
        let inc = "UNWIND $ids AS id MATCH (:Twin)-[r]->(b:Twin {id: id}) WHERE $name IS NULL OR type(r) = $name RETURN r.json AS j";
        let text = match direction {
            Direction::Out => out.to_owned(),
            Direction::In => inc.to_owned(),
            Direction::Both => format!("{out} UNION {inc}"),
        };
        let q = query(&text)
            .param("ids", twins.to_vec())
            .param("name", name);
        self.rels_where(q).await
    }

    async fn relationships_with_ends(
        &self,
        twins: &[String],
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<(Relationship, Option<Arc<Twin>>)>, StoreError> {
        if twins.is_empty() {
            return Ok(Vec::new());
        }
        let text = match direction {
            Direction::In => format!(
                "UNWIND $ids AS id MATCH (a:{TWIN})-[r]->(b:{TWIN} {{id: id}}) WHERE $name IS NULL OR type(r) = $name \
                 RETURN r.json AS j, a.state AS s"
            ),
            Direction::Out | Direction::Both => format!(
                "UNWIND $ids AS id MATCH (a:{TWIN} {{id: id}})-[r]->(b:{TWIN}) WHERE $name IS NULL OR type(r) = $name \
                 RETURN r.json AS j, b.state AS s"
            ),
        };
        let q = query(&text)
            .param("ids", twins.to_vec())
            .param("name", name);
        read_statement(&self.shared)?;
        let fetch = |db: neo4rs::Graph| async move {
            let mut stream = db.execute(q).await?;
            let mut out = Vec::new();
            while let Some(row) = stream.next().await? {
                let de = neo4rs::Error::DeserializationError;
                out.push((
                    row.get::<String>("j").map_err(de)?,
                    row.get::<String>("s").map_err(de)?,
                ));
            }
            Ok::<_, neo4rs::Error>(out)
        };
        let rows = within(&self.shared, &self.shared.reads, fetch).await?;
        rows.iter()
            .map(|(j, s)| {
                let end: Twin = decode("twin", s)?;
                Ok((decode("relationship", j)?, Some(Arc::new(end))))
            })
            .collect()
    }

    async fn traverse(&self, t: &Traversal) -> Result<Vec<Reached>, StoreError> {
        let (g, _) = self.neighbourhood(t, false).await?;
        Ok(g.traverse(t, self.shared.config.max_depth)?)
    }

    async fn traverse_twins(
        &self,
        t: &Traversal,
    ) -> Result<(Vec<Reached>, Vec<Arc<Twin>>), StoreError> {
        let (g, mut twins) = self.neighbourhood(t, true).await?;
        let hits = g.traverse(t, self.shared.config.max_depth)?;
        // Ends of paths are the twins reached (the start excluded).
        twins.retain(|x| *x.id != *t.start);
        Ok((hits, twins.into_iter().map(Arc::new).collect()))
    }

    async fn reach(&self, t: &Traversal) -> Result<Vec<Reach>, StoreError> {
        t.within(self.shared.config.max_depth)?;
        if t.max_depth == 0 {
            return match self.twin(&t.start).await? {
                Some(_) => Ok(Vec::new()),
                None => Err(TwinError::NotFound(t.start.clone()).into()),
            };
        }
        let q = query(&reach_statement(t)).param("start", t.start.as_str());
        read_statement(&self.shared)?;
        let fetch = |db: neo4rs::Graph| async move {
            let mut stream = db.execute(q).await?;
            let mut rows = Vec::new();
            while let Some(row) = stream.next().await? {
                let de = neo4rs::Error::DeserializationError;
                let id: Option<String> = row.get("id").map_err(de)?;
                let model: Option<String> = row.get("model").map_err(de)?;
                let depth: Option<i64> = row.get("depth").map_err(de)?;
                rows.push((id, model, depth));
            }
            Ok::<_, neo4rs::Error>(rows)
        };
        let rows = within(&self.shared, &self.shared.reads, fetch).await?;
        if rows.is_empty() {
            return Err(TwinError::NotFound(t.start.clone()).into());
        }
        let mut reached: Vec<Reach> = rows
            .into_iter()
            .filter_map(|(id, model, depth)| {
                Some(Reach {
                    // Not the start, should a cycle lead back to it.
                    twin: id.filter(|id| *id != t.start)?,
                    model: Arc::from(model?),
                    depth: usize::try_from(depth?).ok()?,
                })
            })
            .collect();
        // Nearest first, then by id (as `traverse`; sorted here, where
        // strings compare as Rust compares them).
        reached.sort_by(|a, b| (a.depth, &a.twin).cmp(&(b.depth, &b.twin)));
        Ok(reached)
    }

    /// One Cypher aggregation (two for a view of subtrees: the roots, then
    /// what they contain) when every measured and grouping path is a
    /// column and the filter is exactly Cypher; else the twins are read.
    async fn aggregate(&self, q: &AggregateQuery) -> Result<Aggregate, StoreError> {
        let columns: Option<Vec<String>> = q
            .measures
            .fields
            .iter()
            .map(|p| filter::column(p))
            .collect();
        let group = match &q.measures.group_by {
            Some(p) => filter::column(p).map(Some),
            None => Some(None),
        };
        let exact = q.filter.as_ref().is_none_or(|f| filter::condition(f).exact);
        let (Some(columns), Some(group)) = (columns, group) else {
            return super::aggregate_by_reading(self, q).await;
        };
        if !exact || q.at.is_some() || (q.under.is_some() && q.within.is_some()) {
            return super::aggregate_by_reading(self, q).await;
        }
        let containment = layout::quoted(&self.shared.config.graph.containment)?;
        let mut starts: Vec<(String, Vec<(String, BoltType)>)> = Vec::new();
        match (&q.under, &q.within) {
            (Some(under), _) => {
                if self.twin(under).await?.is_none() {
                    return Err(TwinError::NotFound(under.clone()).into());
                }
                starts.push((
                    format!("MATCH (:{TWIN} {{id: $under}})-[:{containment}*1..]->(n:{TWIN}) WITH DISTINCT n"),
                    vec![("under".into(), BoltType::from(under.as_str()))],
                ));
            }
            (None, Some(w)) => {
                // Roots inside another root's subtree are counted with it.
                let mut roots = Vec::new();
                for r in &w.roots {
                    let above = match self.ancestors(r).await {
                        Ok(a) => a,
                        Err(StoreError::Twin(TwinError::NotFound(_))) => continue,
                        Err(e) => return Err(e),
                    };
                    if !(w.subtrees && above.iter().any(|a| w.roots.contains(a))) {
                        roots.push(r.clone());
                    }
                }
                let roots = vec![("roots".to_owned(), BoltType::from(roots))];
                starts.push((
                    format!("MATCH (n:{TWIN}) WHERE n.id IN $roots WITH n"),
                    roots.clone(),
                ));
                if w.subtrees {
                    starts.push((
                        format!("MATCH (r:{TWIN})-[:{containment}*1..]->(n:{TWIN}) WHERE r.id IN $roots WITH DISTINCT n"),
                        roots,
                    ));
                }
            }
            (None, None) => starts.push((format!("MATCH (n:{TWIN}) WITH n"), Vec::new())),
        }
        let list = TwinQuery {
            model: q.model.clone(),
            subtypes: q.subtypes,
            filter: q.filter.clone(),
            ..TwinQuery::default()
        };
        let (conditions, params) = self.list_conditions(&list);
        let mut measures = vec!["count(*)".to_owned()];
        for c in &columns {
            measures.extend([
                format!("count({c})"),
                format!("sum({c})"),
                format!("min({c})"),
                format!("max({c})"),
            ]);
        }
        let mut tally = Tally::new(&q.measures);
        for (start, start_params) in starts {
            let text = format!(
                "{start}{}{} RETURN {} AS g, [{}] AS a",
                if conditions.is_empty() { "" } else { " WHERE " },
                conditions.join(" AND "),
                group.as_deref().unwrap_or("null"),
                measures.join(", ")
            );
            let statement = query(&text).params(
                params
                    .iter()
                    .chain(&start_params)
                    .map(|(k, v)| (k.as_str(), v.clone())),
            );
            read_statement(&self.shared)?;
            let fetch = |db: neo4rs::Graph| async move {
                let mut stream = db.execute(statement).await?;
                let mut rows = Vec::new();
                while let Some(row) = stream.next().await? {
                    let de = neo4rs::Error::DeserializationError;
                    let g: serde_json::Value = row.get("g").map_err(de)?;
                    let a: Vec<serde_json::Value> = row.get("a").map_err(de)?;
                    rows.push((g, a));
                }
                Ok::<_, neo4rs::Error>(rows)
            };
            for (key, a) in within(&self.shared, &self.shared.reads, fetch).await? {
                tally.add_group(key, &aggregate_row(&a, columns.len()));
            }
        }
        Ok(tally.finish())
    }

    async fn ancestors(&self, id: &str) -> Result<Vec<String>, StoreError> {
        if self.twin(id).await?.is_none() {
            return Err(TwinError::NotFound(id.to_owned()).into());
        }
        let containment = layout::quoted(&self.shared.config.graph.containment)?;
        let q = query(&format!(
            "MATCH p = (:{TWIN})-[:{containment}*1..]->(n:{TWIN} {{id: $id}}) \
             RETURN [x IN nodes(p) | x.id] AS ids ORDER BY length(p) DESC LIMIT 1"
        ))
        .param("id", id);
        read_statement(&self.shared)?;
        let fetch = |db: neo4rs::Graph| async move {
            let mut stream = db.execute(q).await?;
            let mut ids: Vec<String> = Vec::new();
            if let Some(row) = stream.next().await? {
                ids = row.get("ids").unwrap_or_default();
            }
            Ok::<_, neo4rs::Error>(ids)
        };
        let mut ids = within(&self.shared, &self.shared.reads, fetch).await?;
        // The path runs from the root down to the twin: nearest first.
        ids.pop();
        ids.reverse();
        Ok(ids)
    }

    async fn descendants(&self, id: &str, max_depth: usize) -> Result<Vec<Reached>, StoreError> {
        self.traverse(&Traversal {
            start: id.to_owned(),
            names: vec![self.shared.config.graph.containment.clone()],
            direction: Direction::Out,
            max_depth,
        })
        .await
    }

    async fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let mut events: Vec<Event> = Vec::new();
        let mut after = seq;
        while events.len() < limit {
            read_statement(&self.shared)?;
            let want = limit - events.len();
            let found = within(&self.shared, &self.shared.reads, move |db| {
                log_after(db, after, want)
            })
            .await?;
            let full = found.len() as u64 == LOG_WINDOW;
            for json in &found {
                events.push(decode("event", json)?);
            }
            match events.last() {
                Some(e) if full => after = e.seq,
                _ => break,
            }
        }
        Ok(events)
    }

    async fn stream_events(
        &self,
        stream: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let q = query(&format!(
            "MATCH (e:{EVENT}) WHERE e.stream = $stream AND e.seq > $after \
             RETURN e.json AS j ORDER BY e.seq LIMIT $limit"
        ))
        .param("stream", stream)
        .param("after", seq_param(seq))
        .param("limit", i64::try_from(limit).unwrap_or(i64::MAX));
        self.events_where(q).await
    }

    async fn twin_events(
        &self,
        twin: &str,
        from: Option<Micros>,
        to: Option<Micros>,
    ) -> Result<Vec<Event>, StoreError> {
        let q = query(&format!(
            "MATCH (e:{EVENT}) WHERE e.twin = $id \
               AND ($from IS NULL OR e.time >= $from) AND ($to IS NULL OR e.time <= $to) \
             RETURN e.seq AS seq, e.json AS j \
             UNION \
             MATCH (e:{EVENT}) WHERE e.other = $id \
               AND ($from IS NULL OR e.time >= $from) AND ($to IS NULL OR e.time <= $to) \
             RETURN e.seq AS seq, e.json AS j"
        ))
        .param("id", twin)
        .param("from", from)
        .param("to", to);
        let mut events = self.events_where(q).await?;
        events.sort_by_key(|e| e.seq);
        events.dedup_by_key(|e| e.seq);
        Ok(events)
    }

    async fn twin_as_of(&self, twin: &str, at: At) -> Result<Option<Twin>, StoreError> {
        self.check_history(at).await?;
        let events = self.twin_events(twin, None, None).await?;
        Ok(super::core::twin_at(&events, twin, at))
    }

    async fn relationships_as_of(
        &self,
        twin: &str,
        at: At,
    ) -> Result<Vec<Relationship>, StoreError> {
        self.check_history(at).await?;
        let events = self.twin_events(twin, None, None).await?;
        Ok(super::core::relationships_at(&events, at))
    }

    fn last_seq(&self) -> u64 {
        self.shared.last_seq.load(Ordering::Acquire)
    }

    fn containment(&self) -> String {
        self.shared.config.graph.containment.clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.shared.events.subscribe()
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        write::lease(&self.shared, name, holder, ttl).await
    }

    fn hierarchy_version(&self) -> u64 {
        self.shared.hierarchy.load(Ordering::Acquire)
    }

    fn adopt_models(&self, models: Arc<ModelSet>) {
        write::adopt(&self.shared, models);
    }

    fn connection_counts(&self) -> Vec<ConnectionCounts> {
        let c = self.connections();
        vec![c.reads, c.writes, c.tailer]
    }

    fn is_ready(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_migration_script_splits_into_its_statements() {
        let s = super::statements(super::MIGRATIONS);
        assert_eq!(s.len(), 10, "{s:?}");
        assert!(s.iter().all(|x| !x.contains("//") && !x.ends_with(';')));
        assert!(s[0].starts_with("CREATE CONSTRAINT twin_id"));
    }

    fn reach_of(names: &[&str]) -> String {
        super::reach_statement(&crate::twin::query::Traversal {
            start: "s".into(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            direction: crate::twin::query::Direction::Out,
            max_depth: 2,
        })
    }

    #[test]
    fn a_traversal_statement_names_each_possible_type_once_in_order() {
        let s = reach_of(&["feeds", "contains", "feeds", "no such", "x`y"]);
        assert!(s.contains("-[rs:`contains`|`feeds`*1..2]->"), "{s}");
        assert_eq!(s, reach_of(&["contains", "feeds"]));
        assert!(!s.contains("WHERE false"), "{s}");
        assert!(reach_of(&[]).contains("-[rs*1..2]->"));
        let none = reach_of(&["no such", "x`y"]);
        assert!(none.contains("WHERE false"), "{none}");
        assert!(!none.contains("x`y") && !none.contains("no such"), "{none}");
    }
}
