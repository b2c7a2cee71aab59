//! Configurations: named templates of desired values for the twins of one
//! DTDL Interface (subtypes included), with immutable, numbered versions.
//!
//! A version holds a desired-state patch (the shape `patchDesired` takes:
//! writable properties, Components as nested objects). A value may be a
//! parameter placeholder, `{"$param": "name"}`, filled per rollout or per
//! twin; a version may build on a version of another configuration (its
//! base): the effective values are the base's effective values merged with
//! the version's own (JSON merge patch). Publishing validates the effective
//! values against the model exactly as a desired patch is validated, with
//! the property path of the first problem.
//!
//! Configurations and versions are recorded as events
//! ([`Change::ConfigurationCreated`], [`Change::ConfigurationVersionPublished`]);
//! [`Configurations`] is their fold.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::RolloutError;
use crate::dtdl::ModelSet;
use crate::records::Record;
pub use crate::records::{BaseRef, ConfigurationSpec, ParamSource, Parameter, VersionSpec};
use crate::twin::value::merge_patch;
use crate::twin::{Batch, Change, Event, Graph, Micros, Op, TwinError};

/// The key of a parameter placeholder: `{"$param": "name"}`.
pub const PARAM_KEY: &str = "$param";

/// Longest configuration or parameter name, in characters.
const MAX_NAME: usize = 128;

/// A published version, as the fold keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    #[serde(flatten)]
    pub spec: VersionSpec,
    /// The base's effective values merged with this version's own.
    pub effective: Value,
    /// Every parameter in effect (inherited ones included), by name.
    pub parameters: BTreeMap<String, Parameter>,
    pub published_at: Micros,
    pub published_by: String,
}

/// A configuration and its versions (oldest first; number = index + 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    #[serde(flatten)]
    pub spec: ConfigurationSpec,
    pub created_at: Micros,
    pub created_by: String,
    pub versions: Vec<Version>,
    /// Drifted twins get their values again, at most this many a minute.
    pub remediation_per_minute: Option<f64>,
}

impl Configuration {
    pub fn version(&self, number: u32) -> Option<&Version> {
        let i = usize::try_from(number).ok()?.checked_sub(1)?;
        self.versions.get(i)
    }

    pub fn latest(&self) -> Option<&Version> {
        self.versions.last()
    }

    /// The changes from version `from` to version `to`.
    pub fn diff(&self, from: u32, to: u32) -> Result<Vec<ValueChange>, RolloutError> {
        let version = |n: u32| {
            self.version(n).ok_or_else(|| {
                RolloutError::invalid("version", format!("{} has no version {n}", self.spec.name))
            })
        };
        let (a, b) = (version(from)?, version(to)?);
        let mut out = Vec::new();
        diff_values("", Some(&a.effective), Some(&b.effective), &mut out);
        Ok(out)
    }
}

/// One difference between two versions' effective values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueChange {
    /// Dotted path of the value (`property`, `component.property.field`).
    pub path: String,
    /// `None`: not set in the older version.
    pub from: Option<Value>,
    /// `None`: not set in the newer version.
    pub to: Option<Value>,
}

/// The fold of configuration events.
#[derive(Debug, Clone, Default)]
pub struct Configurations {
    by_name: BTreeMap<String, Configuration>,
}

impl Configurations {
    pub fn get(&self, name: &str) -> Option<&Configuration> {
        self.by_name.get(name)
    }

    /// Every configuration, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Configuration> {
        self.by_name.values()
    }

    /// Applies a committed event (others are ignored).
    pub fn apply(&mut self, e: &Event) {
        match &e.change {
            Change::Record(Record::ConfigurationCreated { configuration }) => {
                self.by_name.insert(
                    configuration.name.clone(),
                    Configuration {
                        spec: configuration.clone(),
                        created_at: e.time,
                        created_by: e.actor.clone(),
                        versions: Vec::new(),
                        remediation_per_minute: None,
                    },
                );
            }
            Change::Record(Record::ConfigurationVersionPublished {
                configuration,
                version,
            }) => {
                let (effective, parameters) = self.effective(version);
                if let Some(c) = self.by_name.get_mut(configuration) {
                    c.versions.push(Version {
                        spec: version.clone(),
                        effective,
                        parameters,
                        published_at: e.time,
                        published_by: e.actor.clone(),
                    });
                }
            }
            Change::Record(Record::ConfigurationRemediationSet {
                configuration,
                per_minute,
            }) => {
                if let Some(c) = self.by_name.get_mut(configuration) {
                    c.remediation_per_minute = *per_minute;
                }
            }
            _ => {}
        }
    }

    /// A version's effective values and parameters: its base's (recursively)
    /// with its own merged over them.
    fn effective(&self, v: &VersionSpec) -> (Value, BTreeMap<String, Parameter>) {
        let (mut values, mut params) = match &v.base {
            Some(b) => self
                .get(&b.configuration)
                .and_then(|c| c.version(b.version))
                .map(|bv| (bv.effective.clone(), bv.parameters.clone()))
                .unwrap_or_default(),
            None => (Value::Object(Default::default()), BTreeMap::new()),
        };
        merge_patch(&mut values, &v.values);
        for p in &v.parameters {
            params.insert(p.name.clone(), p.clone());
        }
        (values, params)
    }

    /// The event creating a configuration, or why it cannot be created.
    pub fn check_create(
        &self,
        models: &ModelSet,
        spec: &ConfigurationSpec,
    ) -> Result<Change, RolloutError> {
        check_name("configuration", &spec.name)?;
        if self.by_name.contains_key(&spec.name) {
            return Err(RolloutError::ConfigurationExists(spec.name.clone()));
        }
        if models.interface(&spec.target).is_none() {
            return Err(RolloutError::invalid(
                "target",
                format!("no Interface {} among the models", spec.target),
            ));
        }
        Ok(Change::Record(Record::ConfigurationCreated {
            configuration: spec.clone(),
        }))
    }

    /// The event publishing the next version of `name`, or why it cannot be
    /// published. `spec.number` is ignored (the next number is assigned).
    pub fn check_publish(
        &self,
        models: &ModelSet,
        name: &str,
        mut spec: VersionSpec,
    ) -> Result<Change, RolloutError> {
        let c = self
            .get(name)
            .ok_or_else(|| RolloutError::ConfigurationNotFound(name.to_owned()))?;
        spec.number = u32::try_from(c.versions.len() + 1)
            .map_err(|_| RolloutError::invalid("", "too many versions"))?;
        if !spec.values.is_object() {
            return Err(RolloutError::invalid(
                "values",
                "the values must be a JSON object of desired properties",
            ));
        }
        if let Some(b) = &spec.base {
            let base = self.get(&b.configuration).ok_or_else(|| {
                RolloutError::invalid("base", format!("no configuration {}", b.configuration))
            })?;
            if base.version(b.version).is_none() {
                return Err(RolloutError::invalid(
                    "base",
                    format!("{} has no version {}", b.configuration, b.version),
                ));
            }
            let target = models
                .interface(&c.spec.target)
                .ok_or_else(|| RolloutError::invalid("target", "the target model is gone"))?;
            if !target.is_a(&base.spec.target) {
                return Err(RolloutError::invalid(
                    "base",
                    format!(
                        "{} targets {}, which {} does not extend",
                        b.configuration, base.spec.target, c.spec.target
                    ),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &spec.parameters {
            check_name("parameter", &p.name)?;
            if !names.insert(p.name.as_str()) {
                return Err(RolloutError::invalid(
                    format!("parameters.{}", p.name),
                    "declared twice",
                ));
            }
        }
        let (effective, params) = self.effective(&spec);
        if effective.as_object().is_none_or(|m| m.is_empty()) {
            return Err(RolloutError::invalid(
                "values",
                "a version must set at least one property",
            ));
        }
        // Every placeholder names a parameter; with the defaults filled in
        // (and placeholders without one left out) the values must be a
        // valid desired patch of the target.
        let mut missing = None;
        let filled = substitute(&effective, &mut |p| match params.get(p) {
            Some(param) => Ok(param.default.clone()),
            None => {
                missing.get_or_insert_with(|| p.to_owned());
                Ok(None)
            }
        })?;
        if let Some(p) = missing {
            return Err(RolloutError::invalid(
                "values",
                format!("the placeholder names parameter {p}, which is not declared"),
            ));
        }
        check_desired(models, &c.spec.target, &filled)?;
        Ok(Change::Record(Record::ConfigurationVersionPublished {
            configuration: name.to_owned(),
            version: spec,
        }))
    }
}

/// Checks a configuration or parameter name: a letter, then letters,
/// digits, `_`, `-`, `.`; at most 128 characters.
fn check_name(what: &str, name: &str) -> Result<(), RolloutError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name.len() <= MAX_NAME;
    if ok {
        Ok(())
    } else {
        Err(RolloutError::invalid(
            "name",
            format!(
                "{what} name {name:?} must start with a letter and hold only letters, digits, '_', '-' and '.' (at most {MAX_NAME})"
            ),
        ))
    }
}

/// The parameter a value is a placeholder for.
pub fn placeholder(v: &Value) -> Option<&str> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get(PARAM_KEY)?.as_str(),
        _ => None,
    }
}

/// `values` with every placeholder replaced by `fill(name)`; `Ok(None)`
/// leaves the member out.
pub fn substitute(
    values: &Value,
    fill: &mut dyn FnMut(&str) -> Result<Option<Value>, RolloutError>,
) -> Result<Value, RolloutError> {
    match values {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                if let Some(p) = placeholder(v) {
                    if let Some(x) = fill(p)? {
                        out.insert(k.clone(), x);
                    }
                } else {
                    out.insert(k.clone(), substitute(v, fill)?);
                }
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Validates a desired patch against `model` as a twin's would be.
pub fn check_desired(models: &ModelSet, model: &str, patch: &Value) -> Result<(), RolloutError> {
    let g = Graph::default();
    let mut planner = g.planner(models);
    let batch = Batch::one(Op::CreateTwin {
        id: "configuration".to_owned(),
        model: model.to_owned(),
        desired: Some(patch.clone()),
        reported: None,
    });
    match planner.plan(&batch, 0, "") {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.error {
            TwinError::Invalid { path, message, .. } => {
                RolloutError::invalid(format!("values.{path}").trim_end_matches('.'), message)
            }
            other => RolloutError::invalid("values", other.to_string()),
        }),
    }
}

/// Leaf differences between two values (objects are walked; a missing
/// object counts as an empty one).
fn diff_values(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<ValueChange>) {
    /// `Some(None)`: missing; `Some(Some(members))`: an object to walk.
    fn walked(v: Option<&Value>) -> Option<Option<&serde_json::Map<String, Value>>> {
        match v {
            Some(o @ Value::Object(m)) if placeholder(o).is_none() => Some(Some(m)),
            None => Some(None),
            _ => None,
        }
    }
    match (walked(a), walked(b)) {
        (Some(x), Some(y)) if x.is_some() || y.is_some() => {
            let empty = serde_json::Map::new();
            let (x, y) = (x.unwrap_or(&empty), y.unwrap_or(&empty));
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_values(&p, x.get(k), y.get(k), out);
            }
        }
        _ if a != b => out.push(ValueChange {
            path: path.to_owned(),
            from: a.cloned(),
            to: b.cloned(),
        }),
        _ => {}
    }
}
