//! GraphQL type names for DTDL Interfaces: readable, deterministic and
//! collision-free. The first piece of the typed-schema compiler.
//!
//! An Interface is named after the last segment of its DTMI
//! (`dtmi:com:example:Pump;1` → `Pump`). Only when that clashes — with
//! another Interface, with a derived name (`<Name>Twin`, the object type
//! implementing the GraphQL interface), or with a name already taken (a
//! type of the generic API, or one an earlier upload's models took) — are
//! preceding namespace segments prepended (`ExamplePump`), and only when
//! the whole path clashes (versions of one Interface) is the version
//! appended (`PumpV2`). The result depends only on the set of DTMIs and
//! the names taken, not on order.

use std::collections::{BTreeMap, HashMap, HashSet};

/// When each Interface arrived, as a rank: 0 for the models a server
/// starts with, then one more per upload, in the order the store recorded
/// them. Names are handed out rank by rank, so a type that exists keeps
/// its name (and its fields) whatever is uploaded later: the newcomer's
/// name is the one that gets longer, and queries clients have keep working.
#[derive(Debug, Clone, Default)]
pub struct ModelOrder(HashMap<String, u32>);

impl ModelOrder {
    /// The rank of `dtmi` (0 unless it came with an upload).
    pub fn rank(&self, dtmi: &str) -> u32 {
        self.0.get(dtmi).copied().unwrap_or(0)
    }

    /// The highest rank given.
    pub fn last(&self) -> u32 {
        self.0.values().copied().max().unwrap_or(0)
    }

    /// Ranks `dtmis` after everything ranked so far (one upload), unless
    /// they have a rank already.
    pub fn push(&mut self, dtmis: impl IntoIterator<Item = impl Into<String>>) {
        let next = self.last() + 1;
        for d in dtmis {
            self.0.entry(d.into()).or_insert(next);
        }
    }
}

/// Names the rest of the schema has taken, which the typed schema never
/// gives out: read off what the generic API registers (see
/// `schema::reserved`), never kept by hand.
#[derive(Debug, Clone, Default)]
pub struct Reserved {
    /// Type names.
    pub types: HashSet<String>,
    /// Fields of `Query`.
    pub queries: HashSet<String>,
    /// Fields of `Mutation`.
    pub mutations: HashSet<String>,
}

/// Suffixes of the names [`assign`] keeps distinct: the GraphQL interface
/// and its object type. (Other derived names, `PumpWhere` and so on, yield
/// to these: see `typed`.)
const SUFFIXES: [&str; 2] = ["", "Twin"];

/// The two GraphQL types of one Interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeNames {
    /// The GraphQL interface (what `... on Pump` names; implemented by subtypes).
    pub interface: String,
    /// The object type of twins whose model is exactly this Interface.
    pub object: String,
}

struct Parts {
    segments: Vec<String>,
    version: String,
}

fn parts(dtmi: &str) -> Parts {
    let body = dtmi.strip_prefix("dtmi:").unwrap_or(dtmi);
    let (path, version) = body.split_once(';').unwrap_or((body, ""));
    Parts {
        segments: path.split(':').map(str::to_owned).collect(),
        version: version.replace('.', "_"),
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// `segments[len - level..]` in UpperCamel, plus the version when asked.
fn candidate(p: &Parts, level: usize, versioned: bool) -> String {
    let start = p.segments.len().saturating_sub(level);
    let mut name: String = p.segments[start..].iter().map(|s| upper_first(s)).collect();
    if versioned && !p.version.is_empty() {
        name.push('V');
        name.push_str(&p.version);
    }
    name
}

/// Names for every DTMI in `dtmis`, none of them `taken`.
pub fn assign<'a>(
    dtmis: impl IntoIterator<Item = &'a str>,
    taken: impl Fn(&str) -> bool,
) -> BTreeMap<String, TypeNames> {
    let mut ids: Vec<&str> = dtmis.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let all: Vec<Parts> = ids.iter().map(|d| parts(d)).collect();
    let mut level = vec![1usize; ids.len()];
    let mut versioned = vec![false; ids.len()];
    let mut names: Vec<String> = Vec::new();
    // Each round lengthens every name still in a clash; the loop ends
    // because full paths plus versions differ (see the fallback below).
    for _ in 0..64 {
        names = (0..ids.len())
            .map(|i| candidate(&all[i], level[i], versioned[i]))
            .collect();
        let mut owners: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            for s in SUFFIXES {
                owners.entry(format!("{n}{s}")).or_default().push(i);
            }
        }
        let mut clashing = vec![false; ids.len()];
        let mut version_clash = vec![false; ids.len()];
        for (name, who) in &owners {
            let mut distinct = who.clone();
            distinct.dedup();
            if distinct.len() > 1 || taken(name) {
                for &i in &distinct {
                    clashing[i] = true;
                    // Versions of one Interface: only the version tells them apart.
                    version_clash[i] |= distinct
                        .iter()
                        .any(|&j| j != i && all[j].segments == all[i].segments);
                }
            }
        }
        if !clashing.contains(&true) {
            break;
        }
        for i in 0..ids.len() {
            if !clashing[i] {
                continue;
            }
            if (version_clash[i] && !versioned[i]) || level[i] >= all[i].segments.len() {
                versioned[i] = true;
            } else {
                level[i] += 1;
            }
        }
    }
    // Names equal only by letter case of their segments (`a:room` and
    // `A:Room`) survive every round: number them in DTMI order.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for n in &mut names {
        let count = seen.entry(n.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            n.push_str(&format!("_{count}"));
        }
    }
    ids.iter()
        .zip(names)
        .map(|(id, n)| {
            (
                (*id).to_owned(),
                TypeNames {
                    object: format!("{n}Twin"),
                    interface: n,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ids: &[&str]) -> Vec<String> {
        let m = assign(ids.iter().copied(), |n| n == "Event");
        ids.iter().map(|i| m[*i].interface.clone()).collect()
    }

    #[test]
    fn short_when_unique_longer_only_when_needed() {
        assert_eq!(
            names(&[
                "dtmi:com:example:Pump;1",
                "dtmi:com:example:building:Room;1",
                "dtmi:com:example:office:Room;1",
                "dtmi:com:example:Valve;1",
                "dtmi:com:example:Valve;2",
                "dtmi:com:example:Event;1",
            ]),
            [
                "Pump",
                "BuildingRoom",
                "OfficeRoom",
                "ValveV1",
                "ValveV2",
                "ExampleEvent"
            ]
        );
    }

    #[test]
    fn derived_object_names_do_not_clash_with_interfaces() {
        let m = assign(["dtmi:a:Pump;1", "dtmi:a:PumpTwin;1"], |_| false);
        let all: Vec<&String> = m.values().flat_map(|t| [&t.interface, &t.object]).collect();
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(all.len(), unique.len(), "{m:?}");
    }

    #[test]
    fn case_only_differences_still_get_distinct_names() {
        let m = assign(["dtmi:a:room;1", "dtmi:A:Room;1"], |_| false);
        assert_ne!(m["dtmi:a:room;1"].interface, m["dtmi:A:Room;1"].interface);
    }

    #[test]
    fn order_does_not_matter() {
        let a = assign(["dtmi:x:b:C;1", "dtmi:x:d:C;1", "dtmi:x:E;1"], |_| false);
        let b = assign(["dtmi:x:E;1", "dtmi:x:d:C;1", "dtmi:x:b:C;1"], |_| false);
        assert_eq!(a, b);
    }
}
