//! Relationship storage inside the graph, laid out for memory: records in a
//! slab addressed by `u32` handles, adjacency as handle lists per twin (both
//! ways in one entry), twin ids shared (`Arc<str>`: among a twin's
//! relationships, and with the twin index for those made at run time; a
//! store's startup loads them apart, with ids of their own), names
//! interned, ids of up to 24 bytes inline. About 104 bytes per
//! relationship instead of several copies of its key strings.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::event::Micros;
use super::state::Relationship;

/// A relationship as stored.
#[derive(Debug, Clone)]
pub(super) struct RelRec {
    /// Inline up to 24 bytes (most ids): no allocation of its own.
    pub id: compact_str::CompactString,
    pub source: Arc<str>,
    /// Interned for the process (see [`intern_name`]): a thin pointer.
    pub name: &'static String,
    pub target: Arc<str>,
    /// `None` when the relationship has no properties (most have none).
    pub properties: Option<Box<Map<String, Value>>>,
    pub version: u64,
    pub created_at: Micros,
    pub updated_at: Micros,
}

impl RelRec {
    pub fn row(&self) -> RelRow<'_> {
        RelRow {
            id: &self.id,
            name: self.name,
            target: &self.target,
            properties: self.properties.as_deref(),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    pub fn view(&self) -> RelView<'_> {
        RelView {
            source: &self.source,
            id: &self.id,
            name: self.name,
            target: &self.target,
        }
    }

    pub fn to_relationship(&self) -> Relationship {
        Relationship {
            id: self.id.to_string(),
            source: self.source.to_string(),
            name: self.name.clone(),
            target: self.target.to_string(),
            properties: self.properties.as_deref().cloned().unwrap_or_default(),
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A borrowed view of a relationship's identity and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelView<'a> {
    pub source: &'a str,
    pub id: &'a str,
    pub name: &'a str,
    pub target: &'a str,
}

impl<'a> From<&'a Relationship> for RelView<'a> {
    fn from(r: &'a Relationship) -> RelView<'a> {
        RelView {
            source: &r.source,
            id: &r.id,
            name: &r.name,
            target: &r.target,
        }
    }
}

/// A relationship as a store reads it at startup, borrowed from its row.
#[derive(Debug, Clone)]
pub struct RelParts<'a> {
    pub source: &'a str,
    pub id: &'a str,
    pub name: &'a str,
    pub target: &'a str,
    pub properties: Option<Map<String, Value>>,
    pub version: u64,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// A relationship borrowed in full from its graph (what a store writes).
#[derive(Debug, Clone, Copy)]
pub struct RelRow<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub target: &'a str,
    pub properties: Option<&'a Map<String, Value>>,
    pub version: u64,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// A twin's relationships: handles of those it is the source of, and of
/// those it is the target of.
#[derive(Debug, Default)]
struct Adj {
    out: Vec<u32>,
    inn: Vec<u32>,
}

/// Relationships loaded apart from their graph (a store's startup loads
/// them on another thread while it loads the twins): their ends are ids of
/// their own, not the graph's. [`super::Graph::adopt_relationships`] takes
/// them into a graph that has none yet.
#[derive(Debug, Default)]
pub struct RelLoader {
    pub(super) store: RelStore,
    last_source: Option<Arc<str>>,
}

impl RelLoader {
    /// Room for `rels` relationships among `twins` twins.
    pub fn with_capacity(twins: usize, rels: usize) -> RelLoader {
        let mut l = RelLoader::default();
        l.store.reserve(twins, rels);
        l
    }

    /// Adds one (rows come in source order; keys are unique).
    pub fn load(&mut self, parts: RelParts<'_>) {
        let source = match &self.last_source {
            Some(s) if **s == *parts.source => s.clone(),
            _ => {
                let s = self
                    .store
                    .adj
                    .get_key_value(parts.source)
                    .map_or_else(|| Arc::from(parts.source), |(k, _)| k.clone());
                self.last_source = Some(s.clone());
                s
            }
        };
        self.store.load(parts, source, |id| Arc::from(id));
    }
}

/// All relationships of a graph.
#[derive(Debug, Default)]
pub(super) struct RelStore {
    slab: Vec<Option<RelRec>>,
    free: Vec<u32>,
    adj: HashMap<Arc<str>, Adj, super::graph::IdHasher>,
    /// Names this store used, to skip the process-wide lookup.
    names: Vec<&'static String>,
}

/// One copy of each relationship name for the whole process, referenced by
/// a thin pointer (8 bytes a relationship instead of an `Arc<str>`'s 16).
/// Names come from the models' Relationship declarations, a few dozen, so
/// the copies kept for good stay few; and graphs built for one request (the
/// Neo4j store's) share them instead of adding their own.
fn intern_name(name: &str) -> &'static String {
    static NAMES: std::sync::LazyLock<std::sync::Mutex<HashMap<&'static str, &'static String>>> =
        std::sync::LazyLock::new(Default::default);
    let mut names = NAMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = names.get(name) {
        return n;
    }
    let n: &'static String = Box::leak(Box::new(name.to_owned()));
    names.insert(n.as_str(), n);
    n
}

impl RelStore {
    /// Room for `rels` more relationships among `twins` twins, taken at
    /// once (a store loading a million grows no table step by step: each
    /// step copies everything into memory touched for the first time).
    pub(super) fn reserve(&mut self, twins: usize, rels: usize) {
        self.slab.reserve_exact(rels);
        self.adj.reserve(twins);
    }

    /// The interned copy of a relationship name.
    fn name(&mut self, name: &str) -> &'static String {
        if let Some(n) = self.names.iter().find(|n| n.as_str() == name) {
            return n;
        }
        let n = intern_name(name);
        if self.names.len() < 32 {
            self.names.push(n);
        }
        n
    }

    pub fn is_empty(&self) -> bool {
        self.slab.len() == self.free.len()
    }

    pub fn len(&self) -> usize {
        self.slab.len() - self.free.len()
    }

    /// Twins that are the source of a relationship.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.adj
            .iter()
            .filter(|(_, a)| !a.out.is_empty())
            .map(|(k, _)| &**k)
    }

    fn rec(&self, h: u32) -> Option<&RelRec> {
        self.slab.get(h as usize).and_then(Option::as_ref)
    }

    fn handle(&self, source: &str, id: &str) -> Option<u32> {
        self.adj
            .get(source)?
            .out
            .iter()
            .copied()
            .find(|&h| self.rec(h).is_some_and(|r| &*r.id == id))
    }

    pub fn get(&self, source: &str, id: &str) -> Option<&RelRec> {
        self.handle(source, id).and_then(|h| self.rec(h))
    }

    /// Every relationship with this id, whatever its source (a full scan).
    pub fn with_id<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a RelRec> + 'a {
        self.slab.iter().flatten().filter(move |r| &*r.id == id)
    }

    pub fn outgoing(&self, twin: &str) -> impl Iterator<Item = &RelRec> {
        self.adj
            .get(twin)
            .into_iter()
            .flat_map(|a| &a.out)
            .filter_map(|&h| self.rec(h))
    }

    pub fn incoming(&self, twin: &str) -> impl Iterator<Item = &RelRec> {
        self.adj
            .get(twin)
            .into_iter()
            .flat_map(|a| &a.inn)
            .filter_map(|&h| self.rec(h))
    }

    /// Inserts a relationship; `source` and `target` are the graph's shared ids.
    pub fn insert(&mut self, r: Relationship, source: Arc<str>, target: Arc<str>) {
        if let Some(h) = self.handle(&r.source, &r.id) {
            self.remove_handle(h);
        }
        let rec = RelRec {
            id: r.id.as_str().into(),
            name: self.name(&r.name),
            source: source.clone(),
            target: target.clone(),
            properties: (!r.properties.is_empty()).then(|| Box::new(r.properties)),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        };
        let h = match self.free.pop() {
            Some(h) => {
                self.slab[h as usize] = Some(rec);
                h
            }
            None => {
                let h = u32::try_from(self.slab.len()).expect("fewer than 2^32 relationships");
                self.slab.push(Some(rec));
                h
            }
        };
        self.adj.entry(source).or_default().out.push(h);
        self.adj.entry(target).or_default().inn.push(h);
    }

    /// Adds a relationship read at startup (keys are unique there: no
    /// check for one it replaces). `source` is the graph's shared id; the
    /// target's is the one this store holds already, or `target()`'s.
    pub fn load(
        &mut self,
        p: RelParts<'_>,
        source: Arc<str>,
        target: impl FnOnce(&str) -> Arc<str>,
    ) {
        // Most targets have relationships loaded already: their adjacency
        // entry holds the shared id (one lookup instead of two).
        let target = match self.adj.get_key_value(p.target) {
            Some((k, _)) => k.clone(),
            None => target(p.target),
        };
        let rec = RelRec {
            id: p.id.into(),
            name: self.name(p.name),
            source: source.clone(),
            target: target.clone(),
            properties: p.properties.filter(|m| !m.is_empty()).map(Box::new),
            version: p.version,
            created_at: p.created_at,
            updated_at: p.updated_at,
        };
        let h = u32::try_from(self.slab.len()).expect("fewer than 2^32 relationships");
        self.slab.push(Some(rec));
        self.adj.entry(source).or_default().out.push(h);
        self.adj.entry(target).or_default().inn.push(h);
    }

    pub fn update(
        &mut self,
        source: &str,
        id: &str,
        properties: &Map<String, Value>,
        version: u64,
        time: Micros,
    ) {
        if let Some(h) = self.handle(source, id)
            && let Some(Some(r)) = self.slab.get_mut(h as usize)
        {
            r.properties = (!properties.is_empty()).then(|| Box::new(properties.clone()));
            r.version = version;
            r.updated_at = time;
        }
    }

    pub fn remove(&mut self, source: &str, id: &str) {
        if let Some(h) = self.handle(source, id) {
            self.remove_handle(h);
        }
    }

    fn remove_handle(&mut self, h: u32) {
        let Some(rec) = self.slab.get_mut(h as usize).and_then(Option::take) else {
            return;
        };
        for (key, out) in [(&rec.source, true), (&rec.target, false)] {
            if let Some(a) = self.adj.get_mut(key) {
                let list = if out { &mut a.out } else { &mut a.inn };
                list.retain(|&x| x != h);
                if a.out.is_empty() && a.inn.is_empty() {
                    self.adj.remove(key);
                }
            }
        }
        self.free.push(h);
    }
}
