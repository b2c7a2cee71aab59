//! Drift: twins whose devices report other values than the configuration
//! that decides their desired values. A fold of twin events (desired
//! values with their configuration source, reported values), seeded at
//! startup from the twins themselves, so asking is free and every start or
//! end of a drift can be pushed to subscribers.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::twin::state::DesiredSource;
use crate::twin::{Change, Entry, Event, Micros, Side, Twin};

/// A property path: `property` or `component.property`.
pub type Path = String;

fn path_of(component: Option<&str>, name: &str) -> Path {
    match component {
        Some(c) => format!("{c}.{name}"),
        None => name.to_owned(),
    }
}

/// One drifting property.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    pub twin: String,
    pub path: Path,
    pub configuration: String,
    pub version: u32,
    pub desired: Value,
    pub reported: Value,
    /// When it started drifting (as far as this server knows: since its
    /// start when it drifted already).
    pub since: Micros,
}

/// A drift starting or ending.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftChange {
    pub drifting: bool,
    pub time: Micros,
    #[serde(flatten)]
    pub drift: Drift,
}

#[derive(Debug, Clone, Default)]
struct TwinValues {
    /// Desired values a configuration decides.
    desired: BTreeMap<Path, (DesiredSource, Value)>,
    reported: BTreeMap<Path, Value>,
    /// Drifting paths, since when.
    drifting: BTreeMap<Path, Micros>,
}

/// Every configuration-managed twin's values and drifts.
#[derive(Debug, Clone, Default)]
pub struct Drifts {
    twins: HashMap<String, TwinValues>,
}

impl Drifts {
    /// Seeds a twin from its state (at startup); its current drifts date
    /// from their last change.
    pub fn seed(&mut self, t: &Twin) {
        let mut v = TwinValues::default();
        let comps = std::iter::once((None, &t.root))
            .chain(t.components.iter().map(|(n, c)| (Some(n.as_str()), c)));
        for (component, state) in comps {
            for (name, p) in state.props.iter() {
                let path = path_of(component, name);
                if let Some(d) = &p.desired
                    && let Some(s) = &d.source
                {
                    v.desired
                        .insert(path.clone(), ((**s).clone(), d.value.clone()));
                }
                if let Some(r) = &p.reported {
                    v.reported.insert(path.clone(), r.value.clone());
                }
                let since = p
                    .desired
                    .as_ref()
                    .map_or(0, |d| d.last_updated)
                    .max(p.reported.as_ref().map_or(0, |r| r.last_updated));
                if drifts(&v, &path) {
                    v.drifting.insert(path, since);
                }
            }
        }
        if !v.desired.is_empty() {
            self.twins.insert(t.id.to_string(), v);
        }
    }

    /// Folds a committed event; the drifts it started or ended.
    pub fn apply(&mut self, e: &Event) -> Vec<DriftChange> {
        let (twin, entries): (&str, &[Entry]) = match &e.change {
            Change::DesiredPatched { twin, entries, .. }
            | Change::ReportedPatched { twin, entries, .. }
            | Change::ConfigurationAssigned { twin, entries, .. }
            | Change::ConfigurationRestored { twin, entries, .. } => (twin, entries),
            Change::TwinDeleted { twin, .. } => {
                let Some(v) = self.twins.remove(twin.as_str()) else {
                    return Vec::new();
                };
                return v
                    .drifting
                    .iter()
                    .filter_map(|(p, since)| change(twin, &v, p, *since, false, e.time))
                    .collect();
            }
            _ => return Vec::new(),
        };
        let managed = entries
            .iter()
            .any(|x| x.side == Side::Desired && x.source.is_some());
        if !managed && !self.twins.contains_key(twin) {
            return Vec::new();
        }
        let v = self.twins.entry(twin.to_owned()).or_default();
        // Drifts as they were, to report the ones that end.
        let was: HashMap<Path, Drift> = entries
            .iter()
            .map(|x| path_of(x.component.as_deref(), &x.name))
            .filter_map(|p| {
                let since = *v.drifting.get(&p)?;
                Some((p.clone(), drift(twin, v, &p, since)?))
            })
            .collect();
        let mut touched = Vec::new();
        for x in entries {
            let path = path_of(x.component.as_deref(), &x.name);
            match (x.side, &x.value, &x.source) {
                (Side::Desired, Some(value), Some(source)) => {
                    v.desired
                        .insert(path.clone(), ((**source).clone(), value.clone()));
                }
                (Side::Desired, _, _) => {
                    v.desired.remove(&path);
                }
                (Side::Reported, Some(value), _) => {
                    v.reported.insert(path.clone(), value.clone());
                }
                (Side::Reported, None, _) => {
                    v.reported.remove(&path);
                }
            }
            touched.push(path);
        }
        let mut out = Vec::new();
        for path in touched {
            let now = drifts(v, &path);
            match (v.drifting.get(&path).copied(), now) {
                (None, true) => {
                    v.drifting.insert(path.clone(), e.time);
                    out.extend(change(twin, v, &path, e.time, true, e.time));
                }
                (Some(_), false) => {
                    v.drifting.remove(&path);
                    if let Some(d) = was.get(&path) {
                        out.push(DriftChange {
                            drifting: false,
                            time: e.time,
                            drift: d.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        if v.desired.is_empty() {
            self.twins.remove(twin);
        }
        out
    }

    /// Every drift, by twin then path.
    pub fn all(&self) -> Vec<Drift> {
        let mut out: Vec<Drift> = self
            .twins
            .iter()
            .flat_map(|(twin, v)| {
                v.drifting
                    .iter()
                    .filter_map(move |(p, since)| drift(twin, v, p, *since))
            })
            .collect();
        out.sort_by(|a, b| (&a.twin, &a.path).cmp(&(&b.twin, &b.path)));
        out
    }

    /// A twin's drifts.
    pub fn of(&self, twin: &str) -> Vec<Drift> {
        self.twins.get(twin).map_or_else(Vec::new, |v| {
            v.drifting
                .iter()
                .filter_map(|(p, since)| drift(twin, v, p, *since))
                .collect()
        })
    }
}

/// Whether a configuration decides `path` and the device reports another value.
fn drifts(v: &TwinValues, path: &str) -> bool {
    match (v.desired.get(path), v.reported.get(path)) {
        (Some((_, desired)), Some(reported)) => desired != reported,
        _ => false,
    }
}

fn drift(twin: &str, v: &TwinValues, path: &str, since: Micros) -> Option<Drift> {
    let (source, desired) = v.desired.get(path)?;
    Some(Drift {
        twin: twin.to_owned(),
        path: path.to_owned(),
        configuration: source.configuration.clone(),
        version: source.version,
        desired: desired.clone(),
        reported: v.reported.get(path).cloned().unwrap_or(Value::Null),
        since,
    })
}

fn change(
    twin: &str,
    v: &TwinValues,
    path: &str,
    since: Micros,
    drifting: bool,
    time: Micros,
) -> Option<DriftChange> {
    Some(DriftChange {
        drifting,
        time,
        drift: drift(twin, v, path, since)?,
    })
}
