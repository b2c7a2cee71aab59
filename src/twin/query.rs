//! Reads over the in-memory graph: traversal (impact analysis), the
//! containment hierarchy, and twins by model (subtypes included).

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::error::TwinError;
use super::graph::Graph;
use super::rels::RelView;
use super::state::Twin;
use crate::dtdl::model::ModelSet;

/// Which relationships a traversal follows from a twin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Direction {
    /// From source to target.
    #[default]
    Out,
    /// From target to source.
    In,
    Both,
}

/// A range of twin ids, and which end a list starts from.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdRange<'a> {
    /// Only ids after this one.
    pub after: Option<&'a str>,
    /// Only ids before this one.
    pub before: Option<&'a str>,
    /// From the last id down.
    pub backward: bool,
}

/// A traversal request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Traversal {
    pub start: String,
    /// Relationship names to follow; empty follows every relationship.
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub direction: Direction,
    pub max_depth: usize,
}

impl Traversal {
    /// Refuses a traversal deeper than `limit_depth` hops.
    pub fn within(&self, limit_depth: usize) -> Result<(), TwinError> {
        if self.max_depth > limit_depth {
            return Err(TwinError::invalid(
                &self.start,
                "maxDepth",
                format!(
                    "traversals are limited to {limit_depth} hops, {} asked",
                    self.max_depth
                ),
            ));
        }
        Ok(())
    }
}

/// One step of a path: the relationship crossed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    pub source: String,
    pub relationship: String,
    pub name: String,
    pub target: String,
}

/// A twin reached by a traversal, at its shortest depth, with one shortest path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reached {
    pub twin: String,
    pub depth: usize,
    pub path: Vec<Hop>,
}

/// A twin a traversal reached, without the path: who, of which model, how
/// far (what a caller that needs neither paths nor state asks for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub twin: String,
    pub model: std::sync::Arc<str>,
    pub depth: usize,
}

/// How a twin was reached: depth, and the twin and relationship it came from.
type Visit<'a> = (usize, Option<(&'a str, RelView<'a>)>);

/// The deepest traversal allowed unless configured otherwise.
pub const DEFAULT_MAX_DEPTH: usize = 10;

impl Graph {
    /// Breadth-first traversal from `t.start`: every twin reached within
    /// `t.max_depth` hops (the start excluded), each once, nearest first (then by id).
    pub fn traverse(&self, t: &Traversal, limit_depth: usize) -> Result<Vec<Reached>, TwinError> {
        if self.twin(&t.start).is_none() {
            return Err(TwinError::NotFound(t.start.clone()));
        }
        t.within(limit_depth)?;
        let follows = |r: &RelView<'_>| t.names.is_empty() || t.names.iter().any(|n| n == r.name);
        // twin -> (depth, previous twin and the relationship crossed)
        let mut seen: HashMap<&str, Visit<'_>> = HashMap::new();
        seen.insert(t.start.as_str(), (0, None));
        let mut order: Vec<&str> = Vec::new();
        let mut queue: VecDeque<(&str, usize)> = VecDeque::from([(t.start.as_str(), 0)]);
        while let Some((twin, depth)) = queue.pop_front() {
            if depth == t.max_depth {
                continue;
            }
            if matches!(t.direction, Direction::Out | Direction::Both) {
                for r in self.rels.outgoing(twin).map(|r| r.view()) {
                    if follows(&r) && !seen.contains_key(r.target) {
                        seen.insert(r.target, (depth + 1, Some((twin, r))));
                        order.push(r.target);
                        queue.push_back((r.target, depth + 1));
                    }
                }
            }
            if matches!(t.direction, Direction::In | Direction::Both) {
                for r in self.rels.incoming(twin).map(|r| r.view()) {
                    if follows(&r) && !seen.contains_key(r.source) {
                        seen.insert(r.source, (depth + 1, Some((twin, r))));
                        order.push(r.source);
                        queue.push_back((r.source, depth + 1));
                    }
                }
            }
        }
        // Nearest first; at equal depth by id, so results are deterministic.
        order.sort_by(|a, b| {
            let da = seen.get(a).map_or(0, |s| s.0);
            let db = seen.get(b).map_or(0, |s| s.0);
            da.cmp(&db).then_with(|| a.cmp(b))
        });
        Ok(order
            .into_iter()
            .map(|twin| {
                let mut path = Vec::new();
                let mut cur = twin;
                while let Some((_, Some((prev, r)))) = seen.get(cur) {
                    path.push(Hop {
                        source: r.source.to_owned(),
                        relationship: r.id.to_owned(),
                        name: r.name.to_owned(),
                        target: r.target.to_owned(),
                    });
                    cur = prev;
                }
                path.reverse();
                Reached {
                    twin: twin.to_owned(),
                    depth: seen.get(twin).map_or(0, |s| s.0),
                    path,
                }
            })
            .collect())
    }

    /// The containers of a twin, nearest first (following containment upwards).
    pub fn ancestors(&self, id: &str) -> Result<Vec<String>, TwinError> {
        if self.twin(id).is_none() {
            return Err(TwinError::NotFound(id.to_owned()));
        }
        let mut out = Vec::new();
        let mut cur = id;
        while let Some(parent) = self
            .incoming(cur)
            .find(|r| r.name == self.config.containment)
            .map(|r| r.source)
        {
            if out.iter().any(|o: &String| o == parent) || out.len() > 1_000_000 {
                break; // containment has no cycles; this guards against a corrupt store
            }
            out.push(parent.to_owned());
            cur = parent;
        }
        Ok(out)
    }

    /// The twins `roots` contain at any depth, with the roots themselves
    /// when `with_roots`; a root that does not exist contains nothing.
    pub fn contained<'a>(&'a self, roots: &[&str], with_roots: bool) -> HashSet<&'a str> {
        let mut seen: HashSet<&'a str> = HashSet::new();
        let mut queue: VecDeque<&'a str> = VecDeque::new();
        for root in roots {
            if let Some((id, _)) = self.twins.get_key_value(*root) {
                queue.push_back(id);
                if with_roots {
                    seen.insert(id);
                }
            }
        }
        while let Some(twin) = queue.pop_front() {
            for r in self.rels.outgoing(twin).map(|r| r.view()) {
                if r.name == self.config.containment && seen.insert(r.target) {
                    queue.push_back(r.target);
                }
            }
        }
        seen
    }

    /// Everything a twin contains, transitively, up to `max_depth` levels.
    pub fn descendants(
        &self,
        id: &str,
        max_depth: usize,
        limit_depth: usize,
    ) -> Result<Vec<Reached>, TwinError> {
        self.traverse(
            &Traversal {
                start: id.to_owned(),
                names: vec![self.config.containment.clone()],
                direction: Direction::Out,
                max_depth,
            },
            limit_depth,
        )
    }

    /// Twins whose model is `model` or (with `subtypes`) extends it, and
    /// that `keep` accepts, ordered by id.
    ///
    /// In id order within `range` (from its end going backward), at most
    /// `limit`: a merge of the per-model sorted indexes, so a page costs
    /// O(limit × models) (plus the twins `keep` refuses), not a sort of
    /// every matching twin.
    pub fn twins_of_model<'a>(
        &'a self,
        models: &ModelSet,
        model: &str,
        subtypes: bool,
        range: IdRange<'_>,
        limit: usize,
        keep: impl Fn(&Twin) -> bool,
    ) -> Vec<&'a Twin> {
        let ids = |m: &str| -> Box<dyn Iterator<Item = &'a str> + 'a> {
            let run = self.with_model_between(m, range.after, range.before);
            if range.backward {
                Box::new(run.rev())
            } else {
                Box::new(run)
            }
        };
        let runs: Vec<std::iter::Peekable<_>> = if subtypes {
            models
                .implementors(model)
                .map(|i| ids(&i.id).peekable())
                .collect()
        } else {
            vec![ids(model).peekable()]
        };
        self.merge_runs(runs, range.backward, limit, keep)
    }

    /// Twins of every model within `range`, in id order (either way): the
    /// models' runs merged, so a page costs its length (times the number
    /// of models), not a sort of every id.
    pub fn twins_in_range<'a>(
        &'a self,
        range: IdRange<'_>,
        limit: usize,
        keep: impl Fn(&Twin) -> bool,
    ) -> Vec<&'a Twin> {
        let runs = self
            .twin_models()
            .map(|m| {
                let run = self.with_model_between(m, range.after, range.before);
                let run: Box<dyn Iterator<Item = &'a str> + 'a> = if range.backward {
                    Box::new(run.rev())
                } else {
                    Box::new(run)
                };
                run.peekable()
            })
            .collect();
        self.merge_runs(runs, range.backward, limit, keep)
    }

    /// Up to `limit` twins of the merged `runs` of ids (each in order) that
    /// `keep` keeps (looked up a chunk at a time: [`Graph::twins_of`]).
    fn merge_runs<'a>(
        &'a self,
        mut runs: Vec<std::iter::Peekable<Box<dyn Iterator<Item = &'a str> + 'a>>>,
        backward: bool,
        limit: usize,
        keep: impl Fn(&Twin) -> bool,
    ) -> Vec<&'a Twin> {
        let merged = std::iter::from_fn(move || {
            // The run whose next id comes first (the smallest, or the
            // largest going backward).
            let mut best: Option<(usize, &str)> = None;
            for (k, run) in runs.iter_mut().enumerate() {
                if let Some(&id) = run.peek()
                    && best.is_none_or(|(_, b)| if backward { id > b } else { id < b })
                {
                    best = Some((k, id));
                }
            }
            let (k, _) = best?;
            runs[k].next()
        });
        self.twins_of(merged)
            .filter(|t| keep(t))
            .take(limit)
            .collect()
    }
}
