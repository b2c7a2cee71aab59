//! Stores: where the twin graph and its event log live.
//!
//! [`GraphStore`] is the one interface every layer above uses (as
//! `Arc<dyn GraphStore>`); every store passes the same conformance suite
//! (`tests/store_suite.rs`). The stores here share [`core::Core`]: the in-memory
//! [`Graph`](crate::twin::Graph) serves every read, and one writer thread
//! commits batches in groups (many writers, one durable commit), appending
//! events and state together through a [`journal::Journal`].
//!
//! Layout: [`core`] the shared writer and reads, [`journal`] the durability
//! seam, [`memory`] a volatile journal (tests, ephemeral use), [`embedded`]
//! the durable default on redb ([`row`] its binary twin rows), [`fold`] state
//! kept as the fold of a stream of records, [`tail`] every committed event
//! in order for a consumer deriving state from the log.

pub mod bolt;
pub mod core;
pub mod embedded;
pub mod fold;
pub mod journal;
pub mod memory;
mod row;
pub mod tail;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::dtdl::ModelSet;
use crate::twin::aggregate::{Aggregate, Measures, Tally};
use crate::twin::filter::Filter;
use crate::twin::order::{Position, SortKey};
use crate::twin::query::DEFAULT_MAX_DEPTH;
use crate::twin::query::{Direction, Reach, Reached, Traversal};
use crate::twin::{Batch, BatchError, Event, Micros, Relationship, Twin, TwinError};

pub use core::{Store, StoreConfig};

/// A point in history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum At {
    /// As of this time (events at or before it).
    Time(Micros),
    /// As of this sequence number (events up to and including it).
    Seq(u64),
}

/// The store setting that names the embedded store (anything else is a
/// Neo4j URI).
pub const EMBEDDED: &str = "embedded";

/// The embedded store's data directory unless told otherwise.
pub const DEFAULT_DATA: &str = "data";

/// Which twins to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TwinQuery {
    /// Only twins of this model (and, with `subtypes`, of models extending it).
    pub model: Option<String>,
    pub subtypes: bool,
    /// Only twins this filter accepts.
    pub filter: Option<Arc<Filter>>,
    /// Only ids after this one (keyset pagination).
    pub after: Option<String>,
    /// Only ids before this one.
    pub before: Option<String>,
    /// The order: sort keys in precedence, then id; empty: id order.
    pub order: Vec<SortKey>,
    /// With an `order`: the sort values of the twin `after` names (as
    /// [`Position::values`](crate::twin::order::Position::values) gives them).
    pub after_values: Vec<serde_json::Value>,
    /// With an `order`: the sort values of the twin `before` names.
    pub before_values: Vec<serde_json::Value>,
    /// At most this many (at least one).
    pub limit: usize,
    /// The last `limit` of the range rather than the first (still listed
    /// in id order); `has_more` then says whether more come before them.
    pub backward: bool,
}

impl TwinQuery {
    /// Where the list starts: after this twin (its id, and with an order
    /// its sort values).
    pub fn after_position(&self) -> Option<Position> {
        self.after
            .as_deref()
            .map(|id| Position::from_values(&self.after_values, id))
    }

    /// Where the list ends: before this twin.
    pub fn before_position(&self) -> Option<Position> {
        self.before
            .as_deref()
            .map(|id| Position::from_values(&self.before_values, id))
    }

    /// Continues after `t` (before it, going backward): the next page's query.
    pub fn past(&mut self, t: &Twin) {
        let values = Position::values(t, &self.order);
        if self.backward {
            self.before = Some(t.id.to_string());
            self.before_values = values;
        } else {
            self.after = Some(t.id.to_string());
            self.after_values = values;
        }
    }
}

/// Twins a caller may count: these roots and, with `subtrees`, what they
/// contain (a scoped caller's view, set by `auth::GuardedStore`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Within {
    pub roots: Vec<String>,
    pub subtrees: bool,
}

/// Which twins to aggregate, and what of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggregateQuery {
    /// Only twins of this model (and, with `subtypes`, of models extending it).
    pub model: Option<String>,
    pub subtypes: bool,
    /// Only twins this filter accepts.
    pub filter: Option<Arc<Filter>>,
    /// Only twins this twin contains, at any depth (not itself).
    pub under: Option<String>,
    /// Only twins in this view.
    pub within: Option<Within>,
    /// The twins as they were then (`under` and `within` read today's
    /// hierarchy); now when `None`.
    pub at: Option<At>,
    pub measures: Measures,
}

/// An aggregation by reading: the twins a list would give, folded here,
/// `under` and `within` taken from [`GraphStore::descendants`] (up to
/// [`DEFAULT_MAX_DEPTH`] levels). The fallback of stores that cannot
/// aggregate in place.
pub async fn aggregate_by_reading<S: GraphStore + ?Sized>(
    store: &S,
    q: &AggregateQuery,
) -> Result<Aggregate, StoreError> {
    let mut allowed: Option<std::collections::HashSet<String>> = None;
    let mut narrow = |ids: std::collections::HashSet<String>| {
        allowed = Some(match allowed.take() {
            Some(a) => a.intersection(&ids).cloned().collect(),
            None => ids,
        });
    };
    if let Some(under) = &q.under {
        let below = store.descendants(under, DEFAULT_MAX_DEPTH).await?;
        narrow(below.into_iter().map(|r| r.twin).collect());
    }
    if let Some(within) = &q.within {
        let mut ids: std::collections::HashSet<String> = within.roots.iter().cloned().collect();
        if within.subtrees {
            for root in &within.roots {
                match store.descendants(root, DEFAULT_MAX_DEPTH).await {
                    Ok(below) => ids.extend(below.into_iter().map(|r| r.twin)),
                    Err(StoreError::Twin(TwinError::NotFound(_))) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        narrow(ids);
    }
    let mut tally = Tally::new(&q.measures);
    let allowed_twin = |t: &Twin| {
        allowed
            .as_ref()
            .is_none_or(|a: &std::collections::HashSet<String>| a.contains(&*t.id))
    };
    if let Some(at) = q.at {
        for t in twins_then(store, q.model.as_deref(), q.subtypes, at).await? {
            if allowed_twin(&t) && q.filter.as_ref().is_none_or(|f| f.matches(&t)) {
                tally.add(&t);
            }
        }
        return Ok(tally.finish());
    }
    let mut list = TwinQuery {
        model: q.model.clone(),
        subtypes: q.subtypes,
        filter: q.filter.clone(),
        limit: 1000,
        ..TwinQuery::default()
    };
    loop {
        let page = store.twins(&list).await?;
        for t in &page.items {
            if allowed_twin(t) {
                tally.add(t);
            }
        }
        list.after = page.items.last().map(|t| t.id.to_string());
        if !page.has_more {
            break;
        }
    }
    Ok(tally.finish())
}

/// A page of results and whether more follow (in the direction listed).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

/// A page of `twins` (any order) in `order`: strictly between `after` and
/// `before`, the first `limit` (the last, when `backward`), listed in
/// order, and whether more lie beyond them.
pub fn sorted_page(
    twins: Vec<Twin>,
    after: Option<Position>,
    before: Option<Position>,
    order: &[SortKey],
    backward: bool,
    limit: usize,
) -> Page<Twin> {
    let mut keyed: Vec<(Position, Twin)> = twins
        .into_iter()
        .map(|t| (Position::of(&t, order), t))
        .filter(|(p, _)| {
            after
                .as_ref()
                .is_none_or(|a| p.cmp_in(a, order) == std::cmp::Ordering::Greater)
                && before
                    .as_ref()
                    .is_none_or(|b| p.cmp_in(b, order) == std::cmp::Ordering::Less)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp_in(&b.0, order));
    let has_more = keyed.len() > limit;
    if backward {
        keyed.drain(..keyed.len().saturating_sub(limit));
    } else {
        keyed.truncate(limit);
    }
    Page {
        items: keyed.into_iter().map(|(_, t)| t).collect(),
        has_more,
    }
}

/// Whether event `e` is at or before `at`.
pub fn at_or_before(e: &Event, at: At) -> bool {
    match at {
        At::Seq(s) => e.seq <= s,
        At::Time(t) => e.time <= t,
    }
}

/// The twins of `model` (with `subtypes`, of models extending it; every
/// twin without a model) as they were at `at`: today's twins that no event
/// after `at` concerns, as they are, and the others folded from their
/// history (those deleted since included). Reads the log back from its end
/// to `at`, so it costs what changed since, plus one read of the model's
/// twins.
pub async fn twins_then<S: GraphStore + ?Sized>(
    store: &S,
    model: Option<&str>,
    subtypes: bool,
    at: At,
) -> Result<Vec<Twin>, StoreError> {
    let mut touched: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut before = store.last_seq().saturating_add(1);
    'log: loop {
        let page = store.events_before(before, 1000).await?;
        let Some(first) = page.first().map(|e| e.seq) else {
            if before > 1 {
                // The log ends before `at` was reached: retention removed
                // what that moment needs.
                return Err(StoreError::Pruned(before));
            }
            break;
        };
        for e in page.iter().rev() {
            if at_or_before(e, at) {
                break 'log;
            }
            touched.extend(e.change.twins().into_iter().map(str::to_owned));
        }
        if first <= 1 {
            break;
        }
        before = first;
    }
    let models = store.models();
    let of_model = |m: &str| {
        model.is_none_or(|q| {
            if subtypes {
                models.interface(m).is_some_and(|i| i.is_a(q))
            } else {
                m == q
            }
        })
    };
    let mut out = Vec::new();
    let mut list = TwinQuery {
        model: model.map(str::to_owned),
        subtypes,
        limit: 1000,
        ..TwinQuery::default()
    };
    loop {
        let page = store.twins(&list).await?;
        list.after = page.items.last().map(|t| t.id.to_string());
        out.extend(page.items.into_iter().filter(|t| !touched.contains(&*t.id)));
        if !page.has_more {
            break;
        }
    }
    for id in &touched {
        if let Some(t) = store.twin_as_of(id, at).await?
            && of_model(&t.model)
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A batch was refused; nothing of it was written.
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Twin(#[from] TwinError),
    /// The storage engine failed (I/O); the write was not applied.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The data directory cannot be used as is.
    #[error("data directory {path}: {message}")]
    Unusable { path: String, message: String },
    /// History before this point was removed by the retention setting.
    #[error("history before sequence {0} is no longer kept")]
    Pruned(u64),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// The database server cannot be reached (or did not answer in time);
    /// nothing was written. Worth retrying later.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// A statement outlasted its budget and was stopped. Nothing was
    /// written, unless the message says that the COMMIT had been sent.
    #[error("the store timed out: {0}")]
    Timeout(String),
    /// The caller's roles do not allow this; nothing was written.
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl StoreError {
    /// Its row of the error table.
    pub fn code(&self) -> crate::codes::Code {
        use crate::codes::Code;
        match self {
            StoreError::Batch(b) => b.error.code(),
            StoreError::Twin(t) => t.code(),
            StoreError::Storage(_) => Code::StorageFailure,
            StoreError::Unusable { .. } => Code::DataDirectoryUnusable,
            StoreError::Pruned(_) => Code::HistoryPruned,
            StoreError::Closed => Code::ShuttingDown,
            StoreError::Unavailable(_) => Code::StoreUnavailable,
            StoreError::Timeout(_) => Code::StoreTimeout,
            StoreError::Forbidden(_) => Code::Forbidden,
        }
    }
}

/// Traversal hits as [`Reach`]es, their models from `twins` (a hit whose
/// twin is not among them is left out).
pub fn reach_of(hits: Vec<Reached>, twins: &[Arc<Twin>]) -> Vec<Reach> {
    let models: std::collections::HashMap<&str, &Arc<str>> =
        twins.iter().map(|t| (&*t.id, &t.model)).collect();
    hits.into_iter()
        .filter_map(|h| {
            let model = Arc::clone(models.get(h.twin.as_str())?);
            Some(Reach {
                twin: h.twin,
                model,
                depth: h.depth,
            })
        })
        .collect()
}

/// A named role that one replica at a time holds (e.g. the rollout
/// scheduler): who holds it, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub until: Micros,
}

/// What `holder` asking for a lease for `ttl` at `now` makes of the
/// `current` one: the lease after (`None`: free) and whether `holder` holds
/// it. A zero `ttl` releases it (if `holder` has it).
pub fn claim(
    current: Option<&Lease>,
    holder: &str,
    now: Micros,
    ttl: std::time::Duration,
) -> (Option<Lease>, bool) {
    let free = current.is_none_or(|l| l.holder == holder || l.until <= now);
    match (free, ttl.is_zero()) {
        (false, _) => (current.cloned(), false),
        (true, true) => (None, false),
        (true, false) => {
            let ttl = Micros::try_from(ttl.as_micros()).unwrap_or(Micros::MAX);
            let lease = Lease {
                holder: holder.to_owned(),
                until: now.saturating_add(ttl),
            };
            (Some(lease), true)
        }
    }
}

/// Everything the layers above need of a twin store.
/// One commit's events, as a [`Feed`] hands them over.
pub type Committed = Arc<[Arc<Event>]>;

/// The receiving end of [`GraphStore::feed`]: each commit's events.
pub type Feed = tokio::sync::mpsc::Receiver<Committed>;

#[async_trait]
pub trait GraphStore: Send + Sync + std::fmt::Debug {
    /// The model set twins are validated against.
    fn models(&self) -> Arc<ModelSet>;

    /// Replaces the model set; records a `ModelsChanged` event (with the
    /// uploaded `documents` that made it, if any, in the `models` stream).
    /// Returns its sequence number. With `expect`, the last upload the
    /// caller knows of (the head of the `models` stream): if another was
    /// recorded since (through another server over the same store), nothing
    /// is written and the answer is [`TwinError::StreamMoved`], so two
    /// servers never both add the same model unaware of each other.
    async fn set_models(
        &self,
        models: Arc<ModelSet>,
        documents: Vec<serde_json::Value>,
        expect: Option<u64>,
        actor: &str,
    ) -> Result<u64, StoreError>;

    /// Serves `models` from now on without recording anything: another
    /// server over the same store recorded the change (see
    /// [`set_models`](GraphStore::set_models)).
    fn adopt_models(&self, models: Arc<ModelSet>);

    /// Applies a batch atomically and durably; returns its events.
    async fn apply(&self, batch: Batch, actor: &str) -> Result<Vec<Event>, StoreError>;

    async fn twin(&self, id: &str) -> Result<Option<Arc<Twin>>, StoreError>;

    /// The twins with these ids that exist, in one call (for batching loaders).
    async fn twins_by_ids(&self, ids: &[String]) -> Result<Vec<Arc<Twin>>, StoreError>;

    /// The model of each of `ids` (none: no such twin), in their order, in
    /// one call: for a consumer of the log that needs only the models, and
    /// would otherwise hold twins a writer is about to change (which then
    /// copies them).
    async fn twin_models(&self, ids: &[String]) -> Result<Vec<Option<Arc<str>>>, StoreError> {
        let twins = self.twins_by_ids(ids).await?;
        let by_id: std::collections::HashMap<&str, &Arc<str>> =
            twins.iter().map(|t| (&*t.id, &t.model)).collect();
        Ok(ids
            .iter()
            .map(|id| by_id.get(id.as_str()).map(|m| Arc::clone(m)))
            .collect())
    }

    async fn twins(&self, query: &TwinQuery) -> Result<Page<Twin>, StoreError>;

    /// A page of [`twins`](GraphStore::twins) as the list was at `at`
    /// (see [`twins_then`]): every twin of the model then, filtered,
    /// ordered and paged here.
    async fn twins_at(&self, query: &TwinQuery, at: At) -> Result<Page<Twin>, StoreError> {
        let then = twins_then(self, query.model.as_deref(), query.subtypes, at).await?;
        let kept: Vec<Twin> = then
            .into_iter()
            .filter(|t| query.filter.as_ref().is_none_or(|f| f.matches(t)))
            .collect();
        Ok(sorted_page(
            kept,
            query.after_position(),
            query.before_position(),
            &query.order,
            query.backward,
            query.limit.max(1),
        ))
    }

    /// Counts and aggregates of the twins `query` names, with its groups.
    /// Stores aggregate in place where they can (the embedded store over
    /// its graph, Neo4j in one statement); the default reads the twins.
    async fn aggregate(&self, query: &AggregateQuery) -> Result<Aggregate, StoreError> {
        aggregate_by_reading(self, query).await
    }

    /// The ids [`twins`](GraphStore::twins) would list (stores override it
    /// when they can skip reading the twins).
    async fn twin_ids(&self, query: &TwinQuery) -> Result<Page<String>, StoreError> {
        let page = self.twins(query).await?;
        Ok(Page {
            items: page.items.into_iter().map(|t| t.id.to_string()).collect(),
            has_more: page.has_more,
        })
    }

    async fn relationship(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<Relationship>, StoreError>;

    /// Relationships with this id, from any source (ids are unique per
    /// source; generated ids are unique globally). May scan every relationship.
    async fn relationships_with_id(&self, id: &str) -> Result<Vec<Relationship>, StoreError>;

    /// Relationships of a twin in a direction, optionally of one name.
    async fn relationships(
        &self,
        twin: &str,
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<Relationship>, StoreError>;

    /// The relationships of several twins in a direction, optionally of one
    /// name, in one call (for batching loaders); missing twins are skipped.
    async fn relationships_of(
        &self,
        twins: &[String],
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<Relationship>, StoreError>;

    /// [`relationships_of`](GraphStore::relationships_of), each with the
    /// twin at its other end (the source when `direction` is `In`, else the
    /// target), in one call when the store can (by
    /// default `relationships_of`, then `twins_by_ids`). An end that no
    /// longer exists is `None`.
    async fn relationships_with_ends(
        &self,
        twins: &[String],
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<(Relationship, Option<Arc<Twin>>)>, StoreError> {
        let rels = self.relationships_of(twins, direction, name).await?;
        let end = |r: &Relationship| {
            if direction == Direction::In {
                r.source.clone()
            } else {
                r.target.clone()
            }
        };
        let mut ids: Vec<String> = rels.iter().map(end).collect();
        ids.sort();
        ids.dedup();
        let found: std::collections::HashMap<String, Arc<Twin>> = self
            .twins_by_ids(&ids)
            .await?
            .into_iter()
            .map(|t| (t.id.to_string(), t))
            .collect();
        Ok(rels
            .into_iter()
            .map(|r| {
                let t = found.get(&end(&r)).cloned();
                (r, t)
            })
            .collect())
    }

    async fn traverse(&self, traversal: &Traversal) -> Result<Vec<Reached>, StoreError>;

    /// A traversal and the twins it reaches, in one call (a store that can
    /// read both at once does; by default `traverse`, then `twins_by_ids`).
    async fn traverse_twins(
        &self,
        traversal: &Traversal,
    ) -> Result<(Vec<Reached>, Vec<Arc<Twin>>), StoreError> {
        let hits = self.traverse(traversal).await?;
        let ids: Vec<String> = hits.iter().map(|h| h.twin.clone()).collect();
        let twins = self.twins_by_ids(&ids).await?;
        Ok((hits, twins))
    }

    /// Who a traversal reaches, how far and of which model, in
    /// `traverse`'s order; no paths, no state. A store that can answer
    /// this more cheaply than [`GraphStore::traverse_twins`] does (the
    /// Neo4j store: one statement returning three columns).
    async fn reach(&self, traversal: &Traversal) -> Result<Vec<Reach>, StoreError> {
        let (hits, twins) = self.traverse_twins(traversal).await?;
        Ok(reach_of(hits, &twins))
    }

    /// Containers of a twin, nearest first.
    async fn ancestors(&self, id: &str) -> Result<Vec<String>, StoreError>;

    async fn descendants(&self, id: &str, max_depth: usize) -> Result<Vec<Reached>, StoreError>;

    /// Events with a sequence number above `seq`, in order, at most `limit`.
    async fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// The last `limit` events with a sequence number below `seq`, in
    /// order (to page the log backward). Sequence numbers have no gaps, so
    /// a store reads exactly the `limit` before `seq` (fewer where
    /// retention removed them).
    async fn events_before(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let from = seq.saturating_sub(1).saturating_sub(limit as u64);
        let n = usize::try_from(seq.saturating_sub(1) - from).unwrap_or(usize::MAX);
        let mut events = self.events_after(from, n).await?;
        events.retain(|e| e.seq < seq);
        Ok(events)
    }

    /// The records of a stream ([`crate::twin::Change::stream`]: the
    /// configurations and rollouts) above `seq`, in order, at most `limit`;
    /// retention never removes them.
    async fn stream_events(
        &self,
        stream: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;

    /// Events concerning a twin (its own and its relationships'), in order,
    /// within `[from, to]` when given.
    async fn twin_events(
        &self,
        twin: &str,
        from: Option<Micros>,
        to: Option<Micros>,
    ) -> Result<Vec<Event>, StoreError>;

    /// The twin as it was at `at` (`None` if it did not exist then).
    async fn twin_as_of(&self, twin: &str, at: At) -> Result<Option<Twin>, StoreError>;

    /// The relationships from and to a twin as they were at `at`.
    async fn relationships_as_of(
        &self,
        twin: &str,
        at: At,
    ) -> Result<Vec<Relationship>, StoreError>;

    /// Sequence number of the last committed event.
    fn last_seq(&self) -> u64;

    /// The relationship name that means containment.
    fn containment(&self) -> String;

    /// Committed events as they happen (for live subscriptions).
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;

    /// Committed events for an in-process consumer that must see every
    /// one (a derived index, such as time series): each commit's events in
    /// one message, in order. Writers never wait for it: a consumer more
    /// than `capacity` commits behind misses commits (it sees the gap in
    /// sequence numbers and reads the log). `None`: this store has no feed
    /// (the consumer reads the log).
    fn feed(&self, capacity: usize) -> Option<Feed> {
        let _ = capacity;
        None
    }

    /// A number that changes whenever the containment hierarchy does (a
    /// containment relationship made or removed, a twin deleted), for
    /// caches of who contains what. By default the last sequence number
    /// (any write).
    fn hierarchy_version(&self) -> u64 {
        self.last_seq()
    }

    /// Whether a reader of this store may see `event` from
    /// [`subscribe`](GraphStore::subscribe) (a guarded store answers for
    /// its principal's scope; a plain store sees everything).
    async fn visible(&self, _event: &Event) -> bool {
        true
    }

    /// Takes or renews lease `name` for `holder` for `ttl` (a zero `ttl`
    /// releases it); whether `holder` holds it now. Serialized with every
    /// other lease request on the same database (see [`claim`]).
    async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;

    /// The store's sets of database connections (`/metrics`); none for a
    /// store in this process.
    fn connection_counts(&self) -> Vec<crate::metrics::ConnectionCounts> {
        Vec::new()
    }

    /// Whether the store can serve now (`/readyz`): a remote database that
    /// cannot be reached makes it not ready until it can again.
    fn is_ready(&self) -> bool {
        true
    }
}
