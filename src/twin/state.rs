//! Twin and relationship state, and how events change it.
//!
//! State only changes through [`Twin::apply`] (and the relationship
//! equivalents in `graph.rs`), which fold an [`Event`] into it. The delta and
//! acknowledgement status are computed from stored state, never stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::{Change, Entry, Event, Micros, Side};

/// A writable-property acknowledgement (IoT Plug and Play convention):
/// `ac` status code, `av` the desired version acknowledged, `ad` description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub code: i64,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Where a writable property's desired value stands with the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AckStatus {
    /// No desired value is set.
    None,
    /// The device has not (yet) acknowledged the current desired version.
    Pending,
    /// The device acknowledged the current desired version with a 2xx code.
    Acknowledged,
    /// The device rejected the current desired version (code 4xx/5xx).
    Failed,
}

/// A reported value with its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reported {
    pub value: Value,
    pub last_updated: Micros,
    /// Twin version of the change that last set it.
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_time: Option<Micros>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Box<Ack>>,
}

/// A desired value with its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    pub value: Value,
    pub last_updated: Micros,
    /// Twin version of the change that last set it: the version a device acknowledges.
    pub version: u64,
    /// The configuration that set it (none: set directly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Box<DesiredSource>>,
}

/// The configuration (version, rollout) a desired value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredSource {
    pub configuration: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

/// A configuration assigned to a twin: the property values it sets (a
/// desired patch with its parameters filled; each value replaces the
/// property's desired value whole) and how it ranks against the twin's
/// other configurations (higher `priority` wins; ties: higher `seq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub version: u32,
    #[serde(default)]
    pub priority: i64,
    /// Sequence number of the event that assigned it (set when planned).
    #[serde(default)]
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    pub values: Value,
}

impl Assignment {
    /// The value it sets for a property, if any.
    pub fn value(&self, component: Option<&str>, name: &str) -> Option<&Value> {
        match component {
            None => self.values.get(name),
            Some(c) => self.values.get(c)?.get(name),
        }
    }

    /// The properties it sets, as `(component, name)`.
    pub fn paths(&self, is_component: impl Fn(&str) -> bool) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        for (k, v) in self.values.as_object().into_iter().flatten() {
            match v.as_object() {
                Some(inner) if is_component(k) => {
                    out.extend(inner.keys().map(|n| (Some(k.clone()), n.clone())));
                }
                _ => out.push((None, k.clone())),
            }
        }
        out
    }

    fn ranks_above(&self, other: &Assignment) -> bool {
        (self.priority, self.seq) > (other.priority, other.seq)
    }
}

/// State of one Property (desired and reported) or Telemetry (reported only).
/// Boxed sides keep an unset side at pointer size (most twins set few).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PropState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Box<Reported>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Box<Desired>>,
}

impl PropState {
    /// Acknowledgement status of the current desired value.
    pub fn ack_status(&self) -> AckStatus {
        let Some(desired) = &self.desired else {
            return AckStatus::None;
        };
        match self.reported.as_ref().and_then(|r| r.ack.as_ref()) {
            Some(ack)
                if ack.version >= desired.version
                    && (200..300).contains(&ack.code)
                    && ack.code != 202 =>
            {
                AckStatus::Acknowledged
            }
            Some(ack) if ack.version >= desired.version && ack.code >= 400 => AckStatus::Failed,
            _ => AckStatus::Pending,
        }
    }

    /// Whether the desired value differs from the reported one.
    pub fn in_delta(&self) -> bool {
        match (&self.desired, &self.reported) {
            (Some(d), Some(r)) => d.value != r.value,
            (Some(_), None) => true,
            _ => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.reported.is_none() && self.desired.is_none()
    }
}

/// The properties and telemetry of a twin or of one of its Components.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentState {
    pub props: PropMap,
}

/// Property states by name: a sorted vector, far smaller than a tree map
/// for the handful of properties a twin carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PropMap(Vec<(Arc<str>, PropState)>);

impl PropMap {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&PropState> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &PropState)> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }

    /// The state of `name`, inserted empty if absent.
    pub fn entry(&mut self, name: &str) -> &mut PropState {
        let i = match self.find(name) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (Arc::from(name), PropState::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    pub fn remove(&mut self, name: &str) -> Option<PropState> {
        self.find(name).ok().map(|i| self.0.remove(i).1)
    }

    /// Replaces every key by the copy `intern` returns (to share names),
    /// and gives back spare capacity: long-lived maps should be tight.
    pub(crate) fn intern_keys(&mut self, intern: &mut impl FnMut(&Arc<str>) -> Arc<str>) {
        for (k, _) in &mut self.0 {
            *k = intern(k);
        }
        self.0.shrink_to_fit();
    }
}

impl Serialize for PropMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (&**k, v)))
    }
}

impl<'de> Deserialize<'de> for PropMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m: BTreeMap<String, PropState> = BTreeMap::deserialize(d)?;
        Ok(PropMap(
            m.into_iter().map(|(k, v)| (Arc::from(k), v)).collect(),
        ))
    }
}

/// A digital twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Twin {
    pub id: Arc<str>,
    /// DTMI of the twin's Interface.
    pub model: Arc<str>,
    /// Starts at 1, grows by one with every change to the twin.
    pub version: u64,
    pub created_at: Micros,
    pub updated_at: Micros,
    /// Properties and telemetry of the twin itself.
    pub root: ComponentState,
    /// Components by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentState>,
    /// Configurations assigned to it, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configurations: BTreeMap<String, Assignment>,
}

impl Twin {
    /// A twin with no state yet (version 0).
    pub fn blank(id: &str, model: impl Into<Arc<str>>) -> Twin {
        Twin {
            id: Arc::from(id),
            model: model.into(),
            version: 0,
            created_at: 0,
            updated_at: 0,
            root: ComponentState::default(),
            components: BTreeMap::new(),
            configurations: BTreeMap::new(),
        }
    }

    /// The assigned configuration that decides a property's desired value:
    /// the highest ranked that sets it.
    pub fn deciding(&self, component: Option<&str>, name: &str) -> Option<(&str, &Assignment)> {
        self.configurations
            .iter()
            .filter(|(_, a)| a.value(component, name).is_some())
            .fold(
                None,
                |best: Option<(&str, &Assignment)>, (n, a)| match best {
                    Some((_, b)) if !a.ranks_above(b) => best,
                    _ => Some((n.as_str(), a)),
                },
            )
    }

    /// The twin created by a `TwinCreated` event.
    pub fn created(event: &Event) -> Option<Twin> {
        let Change::TwinCreated {
            twin,
            model,
            entries,
        } = &event.change
        else {
            return None;
        };
        let mut t = Twin::blank(twin, model.as_str());
        t.version = 1;
        t.created_at = event.time;
        t.updated_at = event.time;
        t.set_entries(entries, event.time, 1);
        Some(t)
    }

    /// Folds a change to this twin into its state.
    pub fn apply(&mut self, event: &Event) {
        let (version, entries) = match &event.change {
            Change::DesiredPatched {
                version, entries, ..
            }
            | Change::ReportedPatched {
                version, entries, ..
            } => (version, entries),
            Change::ConfigurationAssigned {
                version,
                configuration,
                assignment,
                entries,
                ..
            } => {
                self.configurations
                    .insert(configuration.clone(), assignment.clone());
                (version, entries)
            }
            Change::ConfigurationRestored {
                version,
                configuration,
                assignment,
                entries,
                ..
            } => {
                match assignment {
                    Some(a) => {
                        self.configurations.insert(configuration.clone(), a.clone());
                    }
                    None => {
                        self.configurations.remove(configuration);
                    }
                }
                (version, entries)
            }
            _ => return,
        };
        self.set_entries(entries, event.time, *version);
        self.version = *version;
        self.updated_at = event.time;
    }

    fn set_entries(&mut self, entries: &[Entry], time: Micros, version: u64) {
        for e in entries {
            let comp = match &e.component {
                Some(c) => self.components.entry(c.clone()).or_default(),
                None => &mut self.root,
            };
            let slot = comp.props.entry(&e.name);
            match (e.side, &e.value) {
                (Side::Desired, Some(v)) => {
                    slot.desired = Some(Box::new(Desired {
                        value: v.clone(),
                        last_updated: time,
                        version,
                        source: e.source.clone(),
                    }));
                }
                (Side::Desired, None) => slot.desired = None,
                (Side::Reported, Some(v)) => {
                    slot.reported = Some(Box::new(Reported {
                        value: v.clone(),
                        last_updated: time,
                        version,
                        source_time: e.source_time,
                        ack: e.ack.clone().map(Box::new),
                    }));
                }
                (Side::Reported, None) => slot.reported = None,
            }
            if slot.is_empty() {
                comp.props.remove(&e.name);
            }
        }
    }

    /// Replaces every property name by the copy `intern` returns.
    pub(crate) fn intern_names(&mut self, mut intern: impl FnMut(&Arc<str>) -> Arc<str>) {
        self.root.props.intern_keys(&mut intern);
        for c in self.components.values_mut() {
            c.props.intern_keys(&mut intern);
        }
    }

    /// The state of a component (`None` = the twin itself).
    pub fn component(&self, name: Option<&str>) -> Option<&ComponentState> {
        match name {
            None => Some(&self.root),
            Some(c) => self.components.get(c),
        }
    }

    /// An entity tag for optimistic concurrency in HTTP terms.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }

    /// Writable properties whose desired value differs from the reported one,
    /// as `(component, name)`.
    pub fn delta(&self) -> Vec<(Option<&str>, &str)> {
        let mut out = Vec::new();
        for (name, p) in self.root.props.iter() {
            if p.in_delta() {
                out.push((None, name));
            }
        }
        for (c, comp) in &self.components {
            for (name, p) in comp.props.iter() {
                if p.in_delta() {
                    out.push((Some(c.as_str()), name));
                }
            }
        }
        out
    }
}

/// A relationship between two twins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    /// Unique among the relationships of its source twin.
    pub id: String,
    pub source: String,
    /// A Relationship declared on the source's model (inherited ones included).
    pub name: String,
    pub target: String,
    pub properties: serde_json::Map<String, Value>,
    pub version: u64,
    pub created_at: Micros,
    pub updated_at: Micros,
}

impl Relationship {
    /// Applies a `RelationshipUpdated` change.
    pub fn update(
        &mut self,
        properties: &serde_json::Map<String, Value>,
        version: u64,
        time: Micros,
    ) {
        self.properties = properties.clone();
        self.version = version;
        self.updated_at = time;
    }
}
