//! Sort indexes of the in-memory graph: per exact model and sort path, the
//! twin ids by value, so an ordered page reads about as many twins as it
//! lists instead of sorting every match.
//!
//! Which indexes exist is decided by the queries: the first list ordered
//! by a path builds that path's index for every model it reads (one scan
//! of those models' twins), and from then on [`Graph::apply`] keeps it
//! current. An index costs about 60 bytes per twin of its model.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};

use super::filter::value_at;
use super::graph::Graph;
use super::order::{Key, Position, SortKey, cmp_key};
use super::state::Twin;

/// The ids of one model's twins by the value at one path.
#[derive(Debug, Default)]
struct SortIndex {
    keyed: BTreeMap<Key, BTreeSet<Arc<str>>>,
    /// Twins without a value there.
    missing: BTreeSet<Arc<str>>,
}

/// An entry of a walk: the key (`None`: absent) and the twin id.
type Entry<'a> = (Option<&'a Key>, &'a str);
type Walk<'a> = Box<dyn Iterator<Item = Entry<'a>> + 'a>;

impl SortIndex {
    fn insert(&mut self, id: Arc<str>, key: Option<Key>) {
        match key {
            Some(k) => {
                self.keyed.entry(k).or_default().insert(id);
            }
            None => {
                self.missing.insert(id);
            }
        }
    }

    fn remove(&mut self, id: &str, key: Option<&Key>) {
        match key {
            Some(k) => {
                if let Some(ids) = self.keyed.get_mut(k) {
                    ids.remove(id);
                    if ids.is_empty() {
                        self.keyed.remove(k);
                    }
                }
            }
            None => {
                self.missing.remove(id);
            }
        }
    }

    /// The entries in list order (by key, descending when `desc`; ids
    /// ascending; absent keys last), or its reverse when `backward`,
    /// starting after `from` (its key and, unless the whole group of
    /// that key is wanted, its id).
    fn walk<'a>(
        &'a self,
        desc: bool,
        backward: bool,
        from: Option<(Option<&Key>, Option<&str>)>,
    ) -> Walk<'a> {
        let from_key: Option<Option<Key>> = from.map(|(k, _)| k.cloned());
        let from_id: Option<String> = from.and_then(|(_, id)| id.map(str::to_owned));
        // The keyed groups in travel order, from the group of `from`.
        let ascending = desc == backward;
        let groups: Box<dyn Iterator<Item = (&'a Key, &'a BTreeSet<Arc<str>>)> + 'a> =
            match &from_key {
                // Starting among the absent: forward, no keyed group is left.
                Some(None) if !backward => Box::new(std::iter::empty()),
                Some(Some(k)) if ascending => Box::new(
                    self.keyed
                        .range::<Key, _>((Bound::Included(k), Bound::Unbounded)),
                ),
                Some(Some(k)) => Box::new(
                    self.keyed
                        .range::<Key, _>((Bound::Unbounded, Bound::Included(k)))
                        .rev(),
                ),
                _ if ascending => Box::new(self.keyed.iter()),
                _ => Box::new(self.keyed.iter().rev()),
            };
        let start_key = from_key.clone().flatten();
        let start_id = from_id.clone();
        let keyed = groups.flat_map(move |(k, ids)| -> Walk<'a> {
            let first = start_key.as_ref().is_some_and(|s| s == k);
            let ids: Box<dyn Iterator<Item = &'a Arc<str>> + 'a> =
                match (first, start_id.as_deref(), backward) {
                    (true, Some(id), false) => {
                        Box::new(ids.range::<str, _>((Bound::Excluded(id), Bound::Unbounded)))
                    }
                    (true, Some(id), true) => Box::new(
                        ids.range::<str, _>((Bound::Unbounded, Bound::Excluded(id)))
                            .rev(),
                    ),
                    (_, _, false) => Box::new(ids.iter()),
                    (_, _, true) => Box::new(ids.iter().rev()),
                };
            Box::new(ids.map(move |id| (Some(k), &**id)))
        });
        let missing: Walk<'a> = {
            let ids: Box<dyn Iterator<Item = &'a Arc<str>> + 'a> =
                match (&from_key, from_id.as_deref(), backward) {
                    // Starting among the keyed: going backward, no absent is left.
                    (Some(Some(_)), _, true) => Box::new(std::iter::empty()),
                    (Some(None), Some(id), false) => Box::new(
                        self.missing
                            .range::<str, _>((Bound::Excluded(id), Bound::Unbounded)),
                    ),
                    (Some(None), Some(id), true) => Box::new(
                        self.missing
                            .range::<str, _>((Bound::Unbounded, Bound::Excluded(id)))
                            .rev(),
                    ),
                    (_, _, false) => Box::new(self.missing.iter()),
                    (_, _, true) => Box::new(self.missing.iter().rev()),
                };
            Box::new(ids.map(|id| (None, &**id)))
        };
        if backward {
            Box::new(missing.chain(keyed))
        } else {
            Box::new(keyed.chain(missing))
        }
    }
}

/// Every sort index: by exact model, then by path.
#[derive(Debug, Default)]
pub struct Indexes {
    by_model: HashMap<Arc<str>, HashMap<Vec<String>, SortIndex>>,
}

impl Indexes {
    /// Takes a twin out of its model's indexes (before it changes).
    pub(super) fn remove(&mut self, t: &Twin) {
        if self.by_model.is_empty() {
            return; // no index yet: nothing to hash
        }
        if let Some(paths) = self.by_model.get_mut(&*t.model) {
            for (path, ix) in paths {
                ix.remove(&t.id, value_at(t, path).as_ref().and_then(Key::of).as_ref());
            }
        }
    }

    /// Puts a twin into its model's indexes (after it changed).
    pub(super) fn insert(&mut self, t: &Twin) {
        if self.by_model.is_empty() {
            return;
        }
        if let Some(paths) = self.by_model.get_mut(&*t.model) {
            for (path, ix) in paths {
                ix.insert(t.id.clone(), value_at(t, path).as_ref().and_then(Key::of));
            }
        }
    }

    /// How many indexes exist (for logs and tests).
    pub fn len(&self) -> usize {
        self.by_model.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads the lock whatever a panicking holder left (the indexes are
/// rebuilt from the twins, never the source of truth).
fn read(lock: &RwLock<Indexes>) -> std::sync::RwLockReadGuard<'_, Indexes> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

impl Graph {
    /// How many sort indexes the graph keeps.
    pub fn sort_index_count(&self) -> usize {
        read(&self.indexes).len()
    }

    /// Builds the index of `path` for each of `models` that lacks it.
    fn ensure_indexes(&self, models: &[&str], path: &[String]) {
        let lacking: Vec<&str> = {
            let ix = read(&self.indexes);
            models
                .iter()
                .copied()
                .filter(|m| ix.by_model.get(*m).is_none_or(|p| !p.contains_key(path)))
                .collect()
        };
        if lacking.is_empty() {
            return;
        }
        let mut ix = self.indexes.write().unwrap_or_else(PoisonError::into_inner);
        for m in lacking {
            let Some((model, ids)) = self.by_model.get_key_value(m) else {
                continue;
            };
            let paths = ix.by_model.entry(model.clone()).or_default();
            if paths.contains_key(path) {
                continue;
            }
            let mut index = SortIndex::default();
            for t in self.twins_of(ids.iter().map(|id| &**id)) {
                index.insert(t.id.clone(), value_at(t, path).as_ref().and_then(Key::of));
            }
            paths.insert(path.to_vec(), index);
        }
    }

    /// How many twins of exactly these `models` have each value at `path`
    /// (`None`: no value), from the sort index of `path` (built if
    /// missing): no twin is read.
    pub fn count_by(&self, models: &[&str], path: &[String]) -> BTreeMap<Option<Key>, u64> {
        self.ensure_indexes(models, path);
        let ix = read(&self.indexes);
        let mut out: BTreeMap<Option<Key>, u64> = BTreeMap::new();
        for index in models.iter().filter_map(|m| ix.by_model.get(*m)?.get(path)) {
            for (k, ids) in &index.keyed {
                *out.entry(Some(k.clone())).or_default() += ids.len() as u64;
            }
            if !index.missing.is_empty() {
                *out.entry(None).or_default() += index.missing.len() as u64;
            }
        }
        out
    }

    /// Twins of exactly these `models` that `keep` accepts, in `order`
    /// (then by id), strictly between `after` and `before`, at most
    /// `limit`, in travel order (from the end going backward). The first
    /// key's index gives the order; further keys sort each group of equal
    /// first keys.
    #[allow(clippy::too_many_arguments)]
    pub fn twins_ordered<'a>(
        &'a self,
        models: &[&str],
        order: &[SortKey],
        after: Option<&Position>,
        before: Option<&Position>,
        backward: bool,
        limit: usize,
        keep: impl Fn(&Twin) -> bool,
    ) -> Vec<&'a Twin> {
        let Some(first) = order.first() else {
            return Vec::new();
        };
        self.ensure_indexes(models, &first.path);
        let (start, stop) = if backward {
            (before, after)
        } else {
            (after, before)
        };
        let single = order.len() == 1;
        // Past `stop` (or at it): the walk is over.
        let travel = |a: &Position, b: &Position| {
            let o = a.cmp_in(b, order);
            if backward { o.reverse() } else { o }
        };
        let ix = read(&self.indexes);
        let from = start.map(|p| {
            (
                p.keys.first().and_then(Option::as_ref),
                single.then_some(p.id.as_str()),
            )
        });
        let mut runs: Vec<std::iter::Peekable<Walk<'_>>> = models
            .iter()
            .filter_map(|m| ix.by_model.get(*m)?.get(&first.path))
            .map(|index| index.walk(first.desc, backward, from).peekable())
            .collect();
        // The runs merged into one walk in travel order.
        let entry_order = |a: &Entry<'_>, b: &Entry<'_>| {
            let o = cmp_key(a.0, b.0, first.desc).then_with(|| a.1.cmp(b.1));
            if backward { o.reverse() } else { o }
        };
        let merged = std::iter::from_fn(|| {
            let mut best: Option<(usize, Entry<'_>)> = None;
            for (k, run) in runs.iter_mut().enumerate() {
                if let Some(&e) = run.peek()
                    && best.is_none_or(|(_, b)| entry_order(&e, &b) == Ordering::Less)
                {
                    best = Some((k, e));
                }
            }
            let (k, _) = best?;
            runs[k].next()
        });
        let mut out: Vec<&'a Twin> = Vec::new();
        if single {
            for (key, id) in merged {
                if out.len() >= limit {
                    break;
                }
                if let Some(stop) = stop {
                    let here = Position {
                        keys: vec![key.cloned()],
                        id: id.to_owned(),
                    };
                    if travel(&here, stop) != Ordering::Less {
                        break;
                    }
                }
                if let Some(t) = self.twins.get(id)
                    && keep(t)
                {
                    out.push(t);
                }
            }
            return out;
        }
        // Several keys: each group of equal first keys sorted whole.
        let mut merged = merged.peekable();
        while out.len() < limit {
            let Some((key, id)) = merged.next() else {
                break;
            };
            let mut group: Vec<&'a Twin> = self.twins.get(id).map(|t| &**t).into_iter().collect();
            while let Some(&(k, id)) = merged.peek() {
                if cmp_key(k, key, false) != Ordering::Equal {
                    break;
                }
                group.extend(self.twins.get(id).map(|t| &**t));
                merged.next();
            }
            let mut group: Vec<(Position, &'a Twin)> = group
                .into_iter()
                .filter(|t| keep(t))
                .map(|t| (Position::of(t, order), t))
                .collect();
            group.sort_by(|a, b| travel(&a.0, &b.0));
            for (p, t) in group {
                if start.is_some_and(|s| travel(&p, s) != Ordering::Greater) {
                    continue;
                }
                if stop.is_some_and(|s| travel(&p, s) != Ordering::Less) {
                    return out;
                }
                out.push(t);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out
    }
}
