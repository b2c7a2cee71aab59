//! Aggregates over twins, as dashboards ask for them: how many, the
//! minimum, maximum, sum and mean of numeric values, overall and per value
//! of a grouping path. [`Tally`] folds twins one at a time (the embedded
//! store scans inside the store, other stores fold what they read);
//! [`Aggregate`] is the answer every store gives.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::filter::value_ref;
use super::order::Key;
use super::state::Twin;

/// Count, sum, minimum and maximum of the numbers found at one path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Numbers {
    /// How many twins had a number there.
    pub count: u64,
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Numbers {
    pub fn add(&mut self, x: f64) {
        self.count += 1;
        self.sum += x;
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
    }

    /// Folds in another tally of the same path.
    pub fn merge(&mut self, other: &Numbers) {
        self.count += other.count;
        self.sum += other.sum;
        for (mine, theirs, pick) in [
            (&mut self.min, other.min, f64::min as fn(f64, f64) -> f64),
            (&mut self.max, other.max, f64::max),
        ] {
            if let Some(t) = theirs {
                *mine = Some(mine.map_or(t, |m| pick(m, t)));
            }
        }
    }

    /// The mean (none without numbers).
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// The aggregates of a set of twins: how many, and per asked path its numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub count: u64,
    /// In the order the paths were asked.
    pub fields: Vec<Numbers>,
}

impl Stats {
    fn new(fields: usize) -> Stats {
        Stats {
            count: 0,
            fields: vec![Numbers::default(); fields],
        }
    }

    /// Folds in another tally of the same paths.
    pub fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        for (mine, theirs) in self.fields.iter_mut().zip(&other.fields) {
            mine.merge(theirs);
        }
    }
}

/// The twins with one value at the grouping path.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// The value (null: twins without one).
    pub key: Value,
    pub stats: Stats,
}

/// What an aggregation answers: the whole, and with a grouping path its
/// groups in value order (twins without a value last).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Aggregate {
    pub all: Stats,
    pub groups: Vec<Group>,
}

/// What to aggregate: numbers at `fields`, groups by the value at `group_by`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Measures {
    pub fields: Vec<Vec<String>>,
    pub group_by: Option<Vec<String>>,
}

/// An aggregation under way: twins folded in one at a time.
#[derive(Debug)]
pub struct Tally<'m> {
    measures: &'m Measures,
    all: Stats,
    /// Groups in the order first seen; text values found by `by_text`.
    groups: Vec<(Value, Stats)>,
    by_text: HashMap<String, usize, foldhash::fast::RandomState>,
    numbers: Vec<Option<f64>>,
}

impl<'m> Tally<'m> {
    pub fn new(measures: &'m Measures) -> Tally<'m> {
        Tally {
            measures,
            all: Stats::new(measures.fields.len()),
            groups: Vec::new(),
            by_text: HashMap::default(),
            numbers: Vec::with_capacity(measures.fields.len()),
        }
    }

    /// Folds in one twin (its values read in place, not copied).
    pub fn add(&mut self, t: &Twin) {
        self.numbers.clear();
        for path in &self.measures.fields {
            let v = value_ref(t, path);
            self.numbers.push(v.as_deref().and_then(Value::as_f64));
        }
        fold(&mut self.all, &self.numbers);
        if let Some(path) = &self.measures.group_by {
            let v = value_ref(t, path);
            let at = self.group(v.as_deref().unwrap_or(&Value::Null));
            fold(&mut self.groups[at].1, &self.numbers);
        }
    }

    /// The index of the group of `key`, made if new.
    fn group(&mut self, key: &Value) -> usize {
        let found = match key {
            Value::String(s) => self.by_text.get(s.as_str()).copied(),
            other => self.groups.iter().position(|(k, _)| k == other),
        };
        found.unwrap_or_else(|| {
            if let Value::String(s) = key {
                self.by_text.insert(s.clone(), self.groups.len());
            }
            self.groups
                .push((key.clone(), Stats::new(self.measures.fields.len())));
            self.groups.len() - 1
        })
    }

    /// Folds in a group counted elsewhere (a database's answer).
    pub fn add_group(&mut self, key: Value, stats: &Stats) {
        self.all.merge(stats);
        if self.measures.group_by.is_some() {
            let at = self.group(&key);
            self.groups[at].1.merge(stats);
        }
    }

    /// The whole and the groups in value order (equal values, such as `3`
    /// and `3.0`, in one group), twins without a value last.
    pub fn finish(self) -> Aggregate {
        let mut sorted: BTreeMap<Option<Key>, (Value, Stats)> = BTreeMap::new();
        for (value, stats) in self.groups {
            match sorted.entry(Key::of(&value)) {
                std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().1.merge(&stats),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert((value, stats));
                }
            }
        }
        // `None` (no value) sorts first in a map; it goes last.
        let (missing, keyed): (Vec<_>, Vec<_>) = sorted.into_iter().partition(|(k, _)| k.is_none());
        Aggregate {
            all: self.all,
            groups: keyed
                .into_iter()
                .chain(missing)
                .map(|(_, (key, stats))| Group { key, stats })
                .collect(),
        }
    }
}

fn fold(stats: &mut Stats, numbers: &[Option<f64>]) {
    stats.count += 1;
    for (n, x) in stats.fields.iter_mut().zip(numbers) {
        if let Some(x) = x {
            n.add(*x);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::twin::{Change, Entry, Event, Side};

    fn twin(id: &str, reported: Value) -> Twin {
        let entries = reported
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| Entry {
                side: Side::Reported,
                component: None,
                name: k.clone(),
                value: Some(v.clone()),
                source_time: None,
                ack: None,
                source: None,
            })
            .collect();
        Twin::created(&Event {
            seq: 1,
            time: 0,
            actor: "t".into(),
            change: Change::TwinCreated {
                twin: id.into(),
                model: "m".into(),
                entries,
            },
        })
        .expect("twin")
    }

    #[test]
    fn tallies_count_numbers_and_group_by_value() {
        let m = Measures {
            fields: vec![vec!["reported".into(), "power".into()]],
            group_by: Some(vec!["reported".into(), "state".into()]),
        };
        let mut t = Tally::new(&m);
        for (id, v) in [
            ("a", json!({"state": "run", "power": 2.0})),
            ("b", json!({"state": "run", "power": 4})),
            ("c", json!({"state": "fault"})),
            ("d", json!({"power": 10.0})),
            ("e", json!({"state": "fault", "power": -1.5})),
        ] {
            t.add(&twin(id, v));
        }
        let a = t.finish();
        assert_eq!(a.all.count, 5);
        let p = &a.all.fields[0];
        assert_eq!(
            (p.count, p.sum, p.min, p.max),
            (4, 14.5, Some(-1.5), Some(10.0))
        );
        assert_eq!(p.avg(), Some(14.5 / 4.0));
        let keys: Vec<&Value> = a.groups.iter().map(|g| &g.key).collect();
        assert_eq!(keys, [&json!("fault"), &json!("run"), &Value::Null]);
        assert_eq!(a.groups[0].stats.count, 2);
        assert_eq!(a.groups[0].stats.fields[0].max, Some(-1.5));
        assert_eq!(a.groups[1].stats.fields[0].avg(), Some(3.0));
        assert_eq!(a.groups[2].stats.count, 1);
        // Groups counted elsewhere fold in the same.
        let mut again = Tally::new(&m);
        for g in &a.groups {
            again.add_group(g.key.clone(), &g.stats);
        }
        assert_eq!(again.finish(), a);
    }
}
