//! [`GuardedStore`]: the store as one principal sees it.
//!
//! Writes: each operation needs a role that grants it, and every twin it
//! touches must be in scope; otherwise the whole batch is refused
//! (`FORBIDDEN` for a role, and for scope the very error a missing twin
//! gives, so nothing out of scope is revealed). Events name the principal
//! as actor, whatever the caller passed.
//!
//! Reads: twins out of scope do not exist; relationships with an end out
//! of scope do not exist; traversals do not pass through twins out of
//! scope; history and time travel answer only for twins in scope now.
//! Scope is the containment hierarchy as it is at the time of the read
//! (moving a twin moves its access): a guarded store (one per token,
//! shared by its requests) remembers who is in scope only until the
//! store's [`hierarchy_version`](GraphStore::hierarchy_version) moves.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{Action, Principal, Scope};
use crate::dtdl::ModelSet;
use crate::store::{AggregateQuery, At, GraphStore, Page, StoreError, TwinQuery, Within};
use crate::twin::aggregate::Aggregate;
use crate::twin::query::{Direction, Reach, Reached, Traversal};
use crate::twin::{Batch, BatchError, Change, Event, Micros, Op, Relationship, Twin, TwinError};

/// The store through one principal's eyes.
pub struct GuardedStore {
    inner: Arc<dyn GraphStore>,
    principal: Arc<Principal>,
    actor: String,
    scope: Option<Scope>,
    /// What it learnt of the hierarchy, at which version of it.
    memo: Mutex<Memo>,
}

/// Twins known to be in scope (true) or not (false), as of a version of
/// the hierarchy ([`GraphStore::hierarchy_version`]).
#[derive(Debug, Default)]
struct Memo {
    version: u64,
    known: HashMap<String, bool>,
}

/// Twins a memo remembers at most (it starts over when full).
const MEMO_MAX: usize = 200_000;

impl Memo {
    /// Forgets everything if the hierarchy moved on (or it is full).
    fn at(&mut self, version: u64) -> &mut Memo {
        if self.version != version || self.known.len() > MEMO_MAX {
            self.known.clear();
            self.version = version;
        }
        self
    }
}

impl std::fmt::Debug for GuardedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedStore")
            .field("principal", &self.principal.sub)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

fn twin_id(t: &Twin) -> &str {
    &t.id
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl GuardedStore {
    pub fn new(inner: Arc<dyn GraphStore>, principal: Arc<Principal>) -> GuardedStore {
        GuardedStore {
            actor: principal.actor(),
            scope: principal.scope(),
            principal,
            inner,
            memo: Mutex::new(Memo::default()),
        }
    }

    /// The store underneath (for owners that check scope themselves).
    pub fn inner(&self) -> &Arc<dyn GraphStore> {
        &self.inner
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Whether every twin is in scope.
    pub fn unscoped(&self) -> bool {
        self.scope.is_none()
    }

    /// Whether `twin` is in scope now.
    pub async fn contains(&self, twin: &str) -> Result<bool, StoreError> {
        let Some(scope) = &self.scope else {
            return Ok(true);
        };
        if scope.roots.iter().any(|r| r == twin) {
            return Ok(true);
        }
        if !scope.subtree {
            return Ok(false);
        }
        let version = self.inner.hierarchy_version();
        if let Some(k) = lock(&self.memo).at(version).known.get(twin) {
            return Ok(*k);
        }
        let inside = match self.inner.ancestors(twin).await {
            Ok(ancestors) => ancestors.iter().any(|a| scope.roots.contains(a)),
            // A twin that does not exist is in no scope.
            Err(StoreError::Twin(TwinError::NotFound(_))) => false,
            Err(e) => return Err(e),
        };
        let mut memo = lock(&self.memo);
        if memo.version == version {
            memo.known.insert(twin.to_owned(), inside);
        }
        Ok(inside)
    }

    /// Which of `twins` are in scope: their containers are read level by
    /// level (one store call per level for all of them), and everything
    /// learnt on the way is remembered.
    pub async fn filter(&self, twins: &[&str]) -> Result<HashSet<String>, StoreError> {
        let Some(scope) = &self.scope else {
            return Ok(twins.iter().map(|t| (*t).to_owned()).collect());
        };
        let decided = |t: &str, known: &HashMap<String, bool>| -> Option<bool> {
            if scope.roots.iter().any(|r| r == t) {
                Some(true)
            } else if !scope.subtree {
                Some(false)
            } else {
                known.get(t).copied()
            }
        };
        let version = self.inner.hierarchy_version();
        // Usually the memo knows them all (the same caller asks about the
        // same twins again and again).
        {
            let mut memo = lock(&self.memo);
            let memo = memo.at(version);
            let mut inside = HashSet::with_capacity(twins.len());
            let all_known = twins.iter().all(|t| match decided(t, &memo.known) {
                Some(true) => {
                    if !inside.contains(*t) {
                        inside.insert((*t).to_owned());
                    }
                    true
                }
                Some(false) => true,
                None => false,
            });
            if all_known {
                return Ok(inside);
            }
        }
        // What the memo knows now (learning goes into a copy of it).
        let mut known: HashMap<String, bool> = HashMap::new();
        {
            let mut memo = lock(&self.memo);
            let memo = memo.at(version);
            for t in twins {
                if let Some(k) = memo.known.get(*t) {
                    known.insert((*t).to_owned(), *k);
                }
            }
        }
        // Each undecided twin's container, as far as needed.
        let mut parent: HashMap<String, Option<String>> = HashMap::new();
        let mut frontier: Vec<String> = {
            let mut f: Vec<String> = twins
                .iter()
                .filter(|t| decided(t, &known).is_none())
                .map(|t| (*t).to_owned())
                .collect();
            f.sort_unstable();
            f.dedup();
            f
        };
        let containment = self.inner.containment();
        while !frontier.is_empty() {
            let up = self
                .inner
                .relationships_of(&frontier, Direction::In, Some(&containment))
                .await?;
            for t in &frontier {
                parent.insert(t.clone(), None);
            }
            let mut next = Vec::new();
            {
                let mut memo = lock(&self.memo);
                let memo = memo.at(version);
                for r in up {
                    if let Some(k) = memo.known.get(&r.source) {
                        known.insert(r.source.clone(), *k);
                    }
                    if decided(&r.source, &known).is_none() && !parent.contains_key(&r.source) {
                        next.push(r.source.clone());
                    }
                    parent.insert(r.target, Some(r.source));
                }
            }
            next.sort_unstable();
            next.dedup();
            frontier = next;
        }
        // Follow each chain up to a decided twin (or its top: outside).
        let mut inside = HashSet::new();
        for &t in twins {
            let mut chain = Vec::new();
            let mut at = t.to_owned();
            let verdict = loop {
                if let Some(v) = decided(&at, &known) {
                    break v;
                }
                match parent.get(&at) {
                    Some(Some(p)) if !chain.contains(p) => {
                        chain.push(at);
                        at = p.clone();
                    }
                    _ => break false,
                }
            };
            chain.push(at);
            for c in chain {
                known.entry(c).or_insert(verdict);
            }
            if verdict {
                inside.insert(t.to_owned());
            }
        }
        let mut memo = lock(&self.memo);
        if memo.version == version {
            memo.known.extend(known);
        }
        Ok(inside)
    }

    async fn rels_inside(&self, rels: Vec<Relationship>) -> Result<Vec<Relationship>, StoreError> {
        if self.scope.is_none() {
            return Ok(rels);
        }
        let ends: Vec<&str> = rels
            .iter()
            .flat_map(|r| [r.source.as_str(), r.target.as_str()])
            .collect();
        let inside = self.filter(&ends).await?;
        Ok(rels
            .into_iter()
            .filter(|r| inside.contains(&r.source) && inside.contains(&r.target))
            .collect())
    }

    /// Traversal hits whose twin and every twin on the way are in scope.
    async fn reached_inside(&self, hits: Vec<Reached>) -> Result<Vec<Reached>, StoreError> {
        if self.scope.is_none() {
            return Ok(hits);
        }
        let mut twins: Vec<&str> = Vec::new();
        for h in &hits {
            twins.push(&h.twin);
            for p in &h.path {
                twins.push(&p.source);
                twins.push(&p.target);
            }
        }
        let inside = self.filter(&twins).await?;
        Ok(hits
            .into_iter()
            .filter(|h| {
                inside.contains(&h.twin)
                    && h.path
                        .iter()
                        .all(|p| inside.contains(&p.source) && inside.contains(&p.target))
            })
            .collect())
    }

    /// Whether the principal may see `event` (its twins in scope now).
    async fn sees(&self, event: &Event) -> Result<bool, StoreError> {
        if self.scope.is_none() {
            return Ok(true);
        }
        let twins = event.change.twins();
        if twins.is_empty() {
            return Ok(matches!(event.change, Change::ModelsChanged { .. }));
        }
        for t in twins {
            if !self.contains(t).await? {
                return Ok(false);
            }
        }
        if let Change::RelationshipUpdated { source, id, .. } = &event.change {
            return match self.inner.relationship(source, id).await? {
                Some(r) => self.contains(&r.target).await,
                None => Ok(false),
            };
        }
        Ok(true)
    }

    async fn events_inside(&self, events: Vec<Event>) -> Result<Vec<Event>, StoreError> {
        if self.scope.is_none() {
            return Ok(events);
        }
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            if self.sees(&e).await? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// A page of `query.limit` items in scope: the pages `fetch` lists,
    /// read on past what is out of scope.
    async fn page_inside<T: Send>(
        &self,
        query: &TwinQuery,
        fetch: impl Fn(
            TwinQuery,
        ) -> futures_util::future::BoxFuture<'static, Result<Page<T>, StoreError>>
        + Send
        + Sync,
        id_of: fn(&T) -> &str,
        past: fn(&mut TwinQuery, &T),
    ) -> Result<Page<T>, StoreError> {
        let mut q = query.clone();
        let mut items = Vec::new();
        loop {
            let page = fetch(q.clone()).await?;
            let inside = {
                let ids: Vec<&str> = page.items.iter().map(id_of).collect();
                self.filter(&ids).await?
            };
            let n = page.items.len();
            // In the order of travel: from the end of the range going backward.
            let mut travel = page.items;
            if query.backward {
                travel.reverse();
            }
            for item in travel {
                if items.len() == query.limit {
                    return Ok(Page {
                        items: in_order(items, query.backward),
                        has_more: true,
                    });
                }
                past(&mut q, &item);
                let id = id_of(&item);
                if inside.contains(id) {
                    items.push(item);
                }
            }
            if !page.has_more || n == 0 || items.len() == query.limit {
                let has_more = page.has_more && n > 0;
                return Ok(Page {
                    items: in_order(items, query.backward),
                    has_more,
                });
            }
        }
    }

    /// Refuses the batch unless every operation is allowed and in scope.
    async fn check(&self, batch: &Batch) -> Result<(), StoreError> {
        let forbidden = |action: Action| {
            StoreError::Forbidden(format!("{} may not {}", self.principal.sub, action.name()))
        };
        let containment = self.inner.containment();
        // Twins this batch creates under a twin in scope (in this batch).
        let mut created_inside: HashSet<&str> = HashSet::new();
        let created: HashSet<&str> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::CreateTwin { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        for op in &batch.ops {
            if let Op::CreateRelationship {
                source,
                name,
                target,
                ..
            } = op
                && *name == containment
                && created.contains(target.as_str())
                && (created_inside.contains(source.as_str()) || self.contains(source).await?)
            {
                created_inside.insert(target.as_str());
            }
        }
        let missing = |index: usize, twin: &str| {
            StoreError::Batch(BatchError {
                index,
                error: TwinError::NotFound(twin.to_owned()),
            })
        };
        for (index, op) in batch.ops.iter().enumerate() {
            let (action, twins): (Action, Vec<&str>) = match op {
                Op::CreateTwin { .. } => (Action::CreateTwin, Vec::new()),
                Op::DeleteTwin { id, .. } => (Action::DeleteTwin, vec![id.as_str()]),
                Op::PatchDesired { id, .. } => (Action::PatchDesired, vec![id.as_str()]),
                Op::PatchReported { id, .. } => (Action::PatchReported, vec![id.as_str()]),
                Op::InvokeCommand { id, .. } => (Action::Commands, vec![id.as_str()]),
                Op::CreateRelationship { source, target, .. } => (
                    Action::Relationships,
                    vec![source.as_str(), target.as_str()],
                ),
                Op::UpdateRelationship { source, .. } | Op::DeleteRelationship { source, .. } => {
                    (Action::Relationships, vec![source.as_str()])
                }
                // Internal operations: never a caller's.
                Op::Record { .. }
                | Op::AssignConfiguration { .. }
                | Op::RestoreConfiguration { .. }
                | Op::ExpectStream { .. } => return Err(forbidden(Action::Configurations)),
            };
            if !self.principal.may(action) {
                return Err(forbidden(action));
            }
            if self.scope.is_none() {
                continue;
            }
            if let Op::CreateTwin { id, .. } = op
                && !created_inside.contains(id.as_str())
            {
                return Err(StoreError::Forbidden(format!(
                    "twin {id} must be created under a twin in scope (with a {containment} relationship in the same batch)"
                )));
            }
            for t in twins {
                if !created_inside.contains(t) && !self.contains(t).await? {
                    return Err(missing(index, t));
                }
            }
            if let Op::UpdateRelationship { source, id, .. }
            | Op::DeleteRelationship { source, id, .. } = op
            {
                let target_inside = match self.inner.relationship(source, id).await? {
                    Some(r) => self.contains(&r.target).await?,
                    None => true,
                };
                if !target_inside {
                    return Err(StoreError::Batch(BatchError {
                        index,
                        error: TwinError::RelationshipNotFound {
                            source_id: source.clone(),
                            id: id.clone(),
                        },
                    }));
                }
            }
        }
        Ok(())
    }
}

/// Items gathered in the order of travel, in id order.
fn in_order<T>(mut items: Vec<T>, backward: bool) -> Vec<T> {
    if backward {
        items.reverse();
    }
    items
}

#[async_trait]
impl GraphStore for GuardedStore {
    fn models(&self) -> Arc<ModelSet> {
        self.inner.models()
    }

    async fn set_models(
        &self,
        models: Arc<ModelSet>,
        documents: Vec<serde_json::Value>,
        expect: Option<u64>,
        _actor: &str,
    ) -> Result<u64, StoreError> {
        if !self.principal.may(Action::Models) {
            return Err(StoreError::Forbidden(format!(
                "{} may not {}",
                self.principal.sub,
                Action::Models.name()
            )));
        }
        self.inner
            .set_models(models, documents, expect, &self.actor)
            .await
    }

    async fn apply(&self, batch: Batch, _actor: &str) -> Result<Vec<Event>, StoreError> {
        self.check(&batch).await?;
        self.inner.apply(batch, &self.actor).await
    }

    async fn twin(&self, id: &str) -> Result<Option<Arc<Twin>>, StoreError> {
        if !self.contains(id).await? {
            return Ok(None);
        }
        self.inner.twin(id).await
    }

    async fn twins_by_ids(&self, ids: &[String]) -> Result<Vec<Arc<Twin>>, StoreError> {
        let twins = self.inner.twins_by_ids(ids).await?;
        if self.scope.is_none() {
            return Ok(twins);
        }
        let ids: Vec<&str> = twins.iter().map(|t| &*t.id).collect();
        let inside = self.filter(&ids).await?;
        Ok(twins
            .into_iter()
            .filter(|t| inside.contains(&*t.id))
            .collect())
    }

    async fn twins(&self, query: &TwinQuery) -> Result<Page<Twin>, StoreError> {
        if self.scope.is_none() {
            return self.inner.twins(query).await;
        }
        let inner = self.inner.clone();
        self.page_inside(
            query,
            move |q| {
                let inner = inner.clone();
                Box::pin(async move { inner.twins(&q).await })
            },
            twin_id,
            TwinQuery::past,
        )
        .await
    }

    async fn twins_at(&self, query: &TwinQuery, at: At) -> Result<Page<Twin>, StoreError> {
        if self.scope.is_none() {
            return self.inner.twins_at(query, at).await;
        }
        let inner = self.inner.clone();
        self.page_inside(
            query,
            move |q| {
                let inner = inner.clone();
                Box::pin(async move { inner.twins_at(&q, at).await })
            },
            twin_id,
            TwinQuery::past,
        )
        .await
    }

    async fn twin_ids(&self, query: &TwinQuery) -> Result<Page<String>, StoreError> {
        if self.scope.is_none() {
            return self.inner.twin_ids(query).await;
        }
        if !query.order.is_empty() {
            // Continuing an ordered list takes the sort values of the twins.
            let page = self.twins(query).await?;
            return Ok(Page {
                items: page.items.iter().map(|t| t.id.to_string()).collect(),
                has_more: page.has_more,
            });
        }
        let inner = self.inner.clone();
        self.page_inside(
            query,
            move |q| {
                let inner = inner.clone();
                Box::pin(async move { inner.twin_ids(&q).await })
            },
            String::as_str,
            |q, id| {
                if q.backward {
                    q.before = Some(id.clone());
                } else {
                    q.after = Some(id.clone());
                }
            },
        )
        .await
    }

    async fn relationship(
        &self,
        source: &str,
        id: &str,
    ) -> Result<Option<Relationship>, StoreError> {
        let Some(r) = self.inner.relationship(source, id).await? else {
            return Ok(None);
        };
        Ok(self.rels_inside(vec![r]).await?.pop())
    }

    async fn relationships_with_id(&self, id: &str) -> Result<Vec<Relationship>, StoreError> {
        let rels = self.inner.relationships_with_id(id).await?;
        self.rels_inside(rels).await
    }

    async fn relationships(
        &self,
        twin: &str,
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<Relationship>, StoreError> {
        if !self.contains(twin).await? {
            return Ok(Vec::new());
        }
        let rels = self.inner.relationships(twin, direction, name).await?;
        self.rels_inside(rels).await
    }

    async fn relationships_of(
        &self,
        twins: &[String],
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<Relationship>, StoreError> {
        let rels = self.inner.relationships_of(twins, direction, name).await?;
        self.rels_inside(rels).await
    }

    async fn relationships_with_ends(
        &self,
        twins: &[String],
        direction: Direction,
        name: Option<&str>,
    ) -> Result<Vec<(Relationship, Option<Arc<Twin>>)>, StoreError> {
        let found = self
            .inner
            .relationships_with_ends(twins, direction, name)
            .await?;
        if self.scope.is_none() {
            return Ok(found);
        }
        let ends: Vec<&str> = found
            .iter()
            .flat_map(|(r, _)| [r.source.as_str(), r.target.as_str()])
            .collect();
        let inside = self.filter(&ends).await?;
        Ok(found
            .into_iter()
            .filter(|(r, _)| inside.contains(&r.source) && inside.contains(&r.target))
            .collect())
    }

    async fn traverse(&self, traversal: &Traversal) -> Result<Vec<Reached>, StoreError> {
        if !self.contains(&traversal.start).await? {
            return Ok(Vec::new());
        }
        let hits = self.inner.traverse(traversal).await?;
        self.reached_inside(hits).await
    }

    async fn traverse_twins(
        &self,
        traversal: &Traversal,
    ) -> Result<(Vec<Reached>, Vec<Arc<Twin>>), StoreError> {
        if !self.contains(&traversal.start).await? {
            return Ok((Vec::new(), Vec::new()));
        }
        let (hits, twins) = self.inner.traverse_twins(traversal).await?;
        if self.scope.is_none() {
            return Ok((hits, twins));
        }
        let hits = self.reached_inside(hits).await?;
        let kept: HashSet<&str> = hits.iter().map(|h| h.twin.as_str()).collect();
        let twins = twins
            .into_iter()
            .filter(|t| kept.contains(&*t.id))
            .collect();
        Ok((hits, twins))
    }

    async fn reach(&self, traversal: &Traversal) -> Result<Vec<Reach>, StoreError> {
        if self.scope.is_none() {
            return self.inner.reach(traversal).await;
        }
        // Scope is judged on paths: the full traversal, kept to the scope.
        let (hits, twins) = self.traverse_twins(traversal).await?;
        Ok(crate::store::reach_of(hits, &twins))
    }

    async fn aggregate(&self, query: &AggregateQuery) -> Result<Aggregate, StoreError> {
        let Some(scope) = &self.scope else {
            return self.inner.aggregate(query).await;
        };
        if let Some(under) = &query.under {
            if !self.contains(under).await? {
                // Out of scope is as missing.
                return Err(TwinError::NotFound(under.clone()).into());
            }
            if scope.subtree {
                // Everything below a twin in scope is in scope.
                return self.inner.aggregate(query).await;
            }
        }
        let q = AggregateQuery {
            within: Some(Within {
                roots: scope.roots.clone(),
                subtrees: scope.subtree,
            }),
            ..query.clone()
        };
        self.inner.aggregate(&q).await
    }

    async fn ancestors(&self, id: &str) -> Result<Vec<String>, StoreError> {
        if !self.contains(id).await? {
            return Ok(Vec::new());
        }
        let all = self.inner.ancestors(id).await?;
        if self.scope.is_none() {
            return Ok(all);
        }
        let mut out = Vec::new();
        for a in all {
            if !self.contains(&a).await? {
                break;
            }
            out.push(a);
        }
        Ok(out)
    }

    async fn descendants(&self, id: &str, max_depth: usize) -> Result<Vec<Reached>, StoreError> {
        if !self.contains(id).await? {
            return Ok(Vec::new());
        }
        let hits = self.inner.descendants(id, max_depth).await?;
        self.reached_inside(hits).await
    }

    async fn events_after(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        if self.scope.is_none() {
            return self.inner.events_after(seq, limit).await;
        }
        let mut after = seq;
        let mut out = Vec::new();
        loop {
            let page = self.inner.events_after(after, limit).await?;
            let n = page.len();
            if let Some(last) = page.last() {
                after = last.seq;
            }
            for e in page {
                if out.len() == limit {
                    return Ok(out);
                }
                if self.sees(&e).await? {
                    out.push(e);
                }
            }
            if n < limit || out.len() == limit {
                return Ok(out);
            }
        }
    }

    async fn events_before(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        if self.scope.is_none() {
            return self.inner.events_before(seq, limit).await;
        }
        // Windows of the log going back, each twice the last (few calls
        // whether the caller sees much of the log or little), until
        // `limit` events it may see are found or the log's start is reached.
        let mut before = seq;
        let mut window = limit.max(16);
        let mut found: Vec<Event> = Vec::new();
        while found.len() < limit && before > 1 {
            let page = self.inner.events_before(before, window).await?;
            let Some(first) = page.first().map(|e| e.seq) else {
                break;
            };
            let mut seen = Vec::new();
            for e in page {
                if self.sees(&e).await? {
                    seen.push(e);
                }
            }
            seen.append(&mut found);
            found = seen;
            before = first;
            window = window.saturating_mul(2);
        }
        let extra = found.len().saturating_sub(limit);
        found.drain(..extra);
        Ok(found)
    }

    async fn stream_events(
        &self,
        stream: &str,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        if self.scope.is_some() {
            return Ok(Vec::new());
        }
        self.inner.stream_events(stream, seq, limit).await
    }

    async fn twin_events(
        &self,
        twin: &str,
        from: Option<Micros>,
        to: Option<Micros>,
    ) -> Result<Vec<Event>, StoreError> {
        if !self.contains(twin).await? {
            return Ok(Vec::new());
        }
        let events = self.inner.twin_events(twin, from, to).await?;
        self.events_inside(events).await
    }

    async fn twin_as_of(&self, twin: &str, at: At) -> Result<Option<Twin>, StoreError> {
        if !self.contains(twin).await? {
            return Ok(None);
        }
        self.inner.twin_as_of(twin, at).await
    }

    async fn relationships_as_of(
        &self,
        twin: &str,
        at: At,
    ) -> Result<Vec<Relationship>, StoreError> {
        if !self.contains(twin).await? {
            return Ok(Vec::new());
        }
        let rels = self.inner.relationships_as_of(twin, at).await?;
        self.rels_inside(rels).await
    }

    fn last_seq(&self) -> u64 {
        self.inner.last_seq()
    }

    fn containment(&self) -> String {
        self.inner.containment()
    }

    /// Every committed event: consumers keep those [`visible`](GraphStore::visible).
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.subscribe()
    }

    /// Judged by the hierarchy as it is when the event is looked at (a
    /// twin detached from the scope, or deleted, is out of it by then).
    async fn visible(&self, event: &Event) -> bool {
        match self.sees(event).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check an event's scope; withheld");
                false
            }
        }
    }

    fn hierarchy_version(&self) -> u64 {
        self.inner.hierarchy_version()
    }

    fn adopt_models(&self, models: Arc<ModelSet>) {
        self.inner.adopt_models(models);
    }

    async fn lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        if !self.principal.may(Action::Configurations) {
            return Err(StoreError::Forbidden("leases are the server's own".into()));
        }
        self.inner.lease(name, holder, ttl).await
    }

    fn connection_counts(&self) -> Vec<crate::metrics::ConnectionCounts> {
        self.inner.connection_counts()
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }
}
