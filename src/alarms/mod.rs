//! Alarms in the manner of ISA-18.2 (see `ARCHITECTURE.md`): rules per
//! model, versioned like configurations; alarms raised and cleared by the
//! rules on reported values, acknowledged, shelved and commented on by
//! operators; and health: what is active at and below every twin of the
//! containment hierarchy.
//!
//! Every change is a record in the log's `alarms` stream, so history,
//! audit and every server over one store agree; the state is the fold of
//! that stream ([`book`]).
//!
//! - [`rule`]: rules checked against the models; conditions evaluated.
//! - [`book`]: the fold: rules, alarms and their states, counts by twin.
//! - `engine`: follows the log, decides when alarms raise and clear.

pub mod book;
pub mod detect;
mod engine;
pub mod rule;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::records::{AlarmRuleSpec, Condition, Record, Severity};
use crate::store::fold::{Folded, Read};
use crate::store::{GraphStore, StoreError};
use crate::twin::Micros;
use crate::twin::clock::{Clock, SystemClock};

pub use book::{Alarm, AlarmState, Book, Counts, Rule};

/// Longest comment.
const MAX_COMMENT: usize = 2000;

/// Why an alarm request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AlarmError {
    #[error("alarm rule {0} does not exist")]
    RuleNotFound(String),
    #[error("alarm rule {0} exists already")]
    RuleExists(String),
    /// The rule is invalid: `path` names the offending part.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("alarm {0} does not exist")]
    NotFound(String),
    /// The request on an alarm is invalid (`path` names the argument).
    #[error("{path}: {message}")]
    Request { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AlarmError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> AlarmError {
        AlarmError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn request(path: impl Into<String>, message: impl Into<String>) -> AlarmError {
        AlarmError::Request {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Its row of the error table.
    pub fn code(&self) -> crate::codes::Code {
        use crate::codes::Code;
        match self {
            AlarmError::RuleNotFound(_) => Code::AlarmRuleNotFound,
            AlarmError::RuleExists(_) => Code::AlarmRuleExists,
            AlarmError::Invalid { .. } => Code::InvalidAlarmRule,
            AlarmError::NotFound(_) => Code::AlarmNotFound,
            AlarmError::Request { .. } => Code::InvalidAlarmRequest,
            AlarmError::Store(s) => s.code(),
        }
    }

    /// The path of the offending part, for errors that name one.
    pub fn path(&self) -> Option<&str> {
        match self {
            AlarmError::Invalid { path, .. } | AlarmError::Request { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The time delays, stale data and shelves are measured in.
    pub clock: Arc<dyn Clock>,
    /// How often delays, stale data and shelves are looked at.
    pub tick: Duration,
    /// Whether this server evaluates rules (every server may: the book
    /// records each alarm once).
    pub evaluate: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
            tick: Duration::from_secs(1),
            evaluate: true,
        }
    }
}

/// A rule as asked for: a new rule's first version, or any later one.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRequest {
    pub model: String,
    pub condition: Condition,
    pub severity: Severity,
    pub message: String,
    pub on_delay_ms: u64,
    pub off_delay_ms: u64,
    pub depth: Option<u32>,
    pub description: Option<String>,
}

/// A twin's health: what is active on it and below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    /// Active, unshelved alarms on the twin and below it, by severity.
    pub counts: Counts,
}

impl Health {
    /// `OK`, `WARNING` (low or medium alarms), `ALARM` (high) or `CRITICAL`.
    pub fn status(&self) -> &'static str {
        match self.counts.worst() {
            None => "OK",
            Some(Severity::Low | Severity::Medium) => "WARNING",
            Some(Severity::High) => "ALARM",
            Some(Severity::Critical) => "CRITICAL",
        }
    }

    /// 100 with nothing active, less 40 per critical, 20 per high, 5 per
    /// medium and 1 per low alarm, never below 0.
    pub fn score(&self) -> u32 {
        let c = &self.counts;
        let penalty = 40 * c.of(Severity::Critical)
            + 20 * c.of(Severity::High)
            + 5 * c.of(Severity::Medium)
            + c.of(Severity::Low);
        100u32.saturating_sub(penalty)
    }
}

/// The alarm service: the only writer of the `alarms` stream.
pub struct Alarms {
    book: Arc<Folded<Book>>,
    options: Options,
    engine: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Full passes the engine made (every rule, twin and shelf decided).
    passes: Arc<std::sync::atomic::AtomicU64>,
    /// Time the engine spent observing and deciding (µs).
    busy: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Alarms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alarms").finish_non_exhaustive()
    }
}

impl Alarms {
    /// Reads the stream back from `store`, follows it, and (with
    /// `options.evaluate`) evaluates the rules until `shutdown`.
    pub async fn start(
        store: Arc<dyn GraphStore>,
        options: Options,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Arc<Alarms>, StoreError> {
        let book = Folded::start(store.clone()).await?;
        let alarms = Arc::new(Alarms {
            book: book.clone(),
            options: options.clone(),
            engine: std::sync::Mutex::new(None),
            passes: Arc::default(),
            busy: Arc::default(),
        });
        if options.evaluate {
            let engine = engine::Engine::new(
                store,
                book,
                options.clock.clone(),
                alarms.passes.clone(),
                alarms.busy.clone(),
            );
            let task = tokio::spawn(engine.run(options.tick, shutdown));
            *alarms.engine.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
        Ok(alarms)
    }

    /// The service of nothing (a schema that is printed, never executed).
    pub fn unstarted(store: Arc<dyn GraphStore>) -> Arc<Alarms> {
        Arc::new(Alarms {
            book: Folded::unstarted(store),
            options: Options::default(),
            engine: std::sync::Mutex::new(None),
            passes: Arc::default(),
            busy: Arc::default(),
        })
    }

    /// Stops evaluating and following.
    pub async fn stop(&self) {
        let task = self.engine.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
        self.book.stop().await;
    }

    /// How many full passes the engine has made: each decided every rule on
    /// every twin and every shelf on the clock as it then stood (a test
    /// steps the clock, then waits for two more).
    pub fn passes(&self) -> u64 {
        self.passes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// How long the engine has spent observing events and deciding, in
    /// all (what rules cost, for benchmarks and metrics).
    pub fn busy(&self) -> Duration {
        Duration::from_micros(self.busy.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The book as it stands.
    pub fn book(&self) -> Read<'_, Book> {
        self.book.read()
    }

    /// Every event the book applied, after it did.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<crate::twin::Event>> {
        self.book.changes()
    }

    pub fn now(&self) -> Micros {
        self.options.clock.now()
    }

    /// The health of `twin`: its own alarms and those below it.
    pub fn health(&self, twin: &str) -> Health {
        let (mut own, below) = self.book().counts(twin);
        own.merge(&below);
        Health { counts: own }
    }

    /// Creates a rule (version 1).
    pub async fn create_rule(
        &self,
        name: &str,
        request: RuleRequest,
        actor: &str,
    ) -> Result<Arc<AlarmRuleSpec>, AlarmError> {
        let spec = Arc::new(spec_of(name, 1, request));
        rule::check(&self.book.store().models(), &spec)?;
        self.book
            .write(actor, |book: &Book| {
                if book.rule(name).is_some() {
                    return Err(AlarmError::RuleExists(name.to_owned()));
                }
                Ok(vec![Record::AlarmRulePublished { rule: spec.clone() }])
            })
            .await?;
        Ok(spec)
    }

    /// Publishes a new version of a rule (its model stays).
    pub async fn update_rule(
        &self,
        name: &str,
        request: RuleRequest,
        actor: &str,
    ) -> Result<Arc<AlarmRuleSpec>, AlarmError> {
        let models = self.book.store().models();
        let mut published = None;
        self.book
            .write(actor, |book: &Book| {
                let current = book
                    .rule(name)
                    .ok_or_else(|| AlarmError::RuleNotFound(name.to_owned()))?
                    .current();
                if current.model != request.model {
                    return Err(AlarmError::invalid(
                        "model",
                        format!(
                            "a rule's model stays {} (create another rule for another model)",
                            current.model
                        ),
                    ));
                }
                let spec = Arc::new(spec_of(name, current.version + 1, request.clone()));
                rule::check(&models, &spec)?;
                published = Some(spec.clone());
                Ok(vec![Record::AlarmRulePublished { rule: spec }])
            })
            .await?;
        published.ok_or_else(|| AlarmError::RuleNotFound(name.to_owned()))
    }

    /// Deletes a rule: its active alarms clear, and every alarm of it
    /// returns to normal.
    pub async fn delete_rule(&self, name: &str, actor: &str) -> Result<(), AlarmError> {
        self.book
            .write(actor, |book: &Book| {
                if book.rule(name).is_none() {
                    return Err(AlarmError::RuleNotFound(name.to_owned()));
                }
                let mut out: Vec<Record> = book
                    .alarms()
                    .filter(|a| a.rule == name && a.active)
                    .map(|a| Record::AlarmCleared {
                        rule: a.rule.clone(),
                        twin: a.twin.clone(),
                        value: Value::Null,
                        reason: Some("rule deleted".into()),
                    })
                    .collect();
                out.push(Record::AlarmRuleDeleted {
                    rule: name.to_owned(),
                });
                Ok(out)
            })
            .await?;
        Ok(())
    }

    /// Acknowledges an alarm (nothing to do if it is acknowledged).
    pub async fn acknowledge(
        &self,
        id: &str,
        comment: Option<String>,
        actor: &str,
    ) -> Result<Alarm, AlarmError> {
        check_comment("comment", comment.as_deref())?;
        self.on_alarm(id, actor, |a| {
            Ok((!a.acknowledged).then(|| Record::AlarmAcknowledged {
                rule: a.rule.clone(),
                twin: a.twin.clone(),
                comment: comment.clone(),
            }))
        })
        .await
    }

    /// Shelves an alarm until `until` (at most 7 days ahead).
    pub async fn shelve(
        &self,
        id: &str,
        until: Micros,
        comment: Option<String>,
        actor: &str,
    ) -> Result<Alarm, AlarmError> {
        check_comment("comment", comment.as_deref())?;
        let now = self.now();
        if until <= now {
            return Err(AlarmError::request("until", "must be in the future"));
        }
        let max = i64::try_from(rule::MAX_DELAY_MS * 1000).unwrap_or(i64::MAX);
        if until - now > max {
            return Err(AlarmError::request("until", "at most 7 days ahead"));
        }
        self.on_alarm(id, actor, |a| {
            Ok(Some(Record::AlarmShelved {
                rule: a.rule.clone(),
                twin: a.twin.clone(),
                until,
                comment: comment.clone(),
            }))
        })
        .await
    }

    /// Puts a shelved alarm back (nothing to do if it is not shelved).
    pub async fn unshelve(&self, id: &str, actor: &str) -> Result<Alarm, AlarmError> {
        self.on_alarm(id, actor, |a| {
            Ok(a.shelved_until.is_some().then(|| Record::AlarmUnshelved {
                rule: a.rule.clone(),
                twin: a.twin.clone(),
                reason: Some("by hand".into()),
            }))
        })
        .await
    }

    /// Comments on an alarm.
    pub async fn comment(&self, id: &str, text: &str, actor: &str) -> Result<Alarm, AlarmError> {
        if text.trim().is_empty() {
            return Err(AlarmError::request("text", "must not be empty"));
        }
        check_comment("text", Some(text))?;
        self.on_alarm(id, actor, |a| {
            Ok(Some(Record::AlarmCommented {
                rule: a.rule.clone(),
                twin: a.twin.clone(),
                text: text.to_owned(),
            }))
        })
        .await
    }

    /// Records what `decide` makes of alarm `id`, and returns the alarm after.
    async fn on_alarm(
        &self,
        id: &str,
        actor: &str,
        decide: impl Fn(&Alarm) -> Result<Option<Record>, AlarmError>,
    ) -> Result<Alarm, AlarmError> {
        self.book
            .write(actor, |book: &Book| {
                let a = book
                    .by_id(id)
                    .ok_or_else(|| AlarmError::NotFound(id.to_owned()))?;
                Ok::<_, AlarmError>(decide(a)?.into_iter().collect())
            })
            .await?;
        self.book()
            .by_id(id)
            .cloned()
            .ok_or_else(|| AlarmError::NotFound(id.to_owned()))
    }
}

fn check_comment(path: &str, text: Option<&str>) -> Result<(), AlarmError> {
    if text.is_some_and(|t| t.len() > MAX_COMMENT) {
        return Err(AlarmError::request(
            path,
            format!("at most {MAX_COMMENT} bytes"),
        ));
    }
    Ok(())
}

fn spec_of(name: &str, version: u32, r: RuleRequest) -> AlarmRuleSpec {
    AlarmRuleSpec {
        name: name.to_owned(),
        version,
        model: r.model,
        condition: r.condition,
        severity: r.severity,
        message: r.message,
        on_delay_ms: r.on_delay_ms,
        off_delay_ms: r.off_delay_ms,
        depth: r.depth,
        description: r.description,
    }
}
