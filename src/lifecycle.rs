//! Asset lifecycle: `planned`, `commissioned`, `inService`, `maintenance`,
//! `decommissioned`. Every change is a record in the `lifecycle` stream,
//! and in its twin's history (who moved it, when, why); the [`Book`] folds
//! the stream into each twin's state, its recent transitions, and the
//! twins in each state (what lists filter by). A twin never moved has no
//! lifecycle state. Transitions follow [`LifecycleState::may_become`];
//! `expected` makes a change conditional on the state it moves from.
//!
//! Diagnostic reports (structured JSON a device or an operator attaches to
//! a twin) are records too, in no stream: they are part of the twin's
//! history, listed and pruned with it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::codes::Code;
use crate::records::{LIFECYCLE_STREAM, LifecycleState, Record};
use crate::store::fold::{Fold, Folded, Read};
use crate::store::{GraphStore, StoreError};
use crate::twin::{Change, Event, Micros};

/// The transitions each twin keeps in memory (the log has them all).
const RECENT: usize = 100;

/// Longest reason, in bytes.
pub const MAX_REASON: usize = 1024;

/// Largest diagnostic report (its JSON), in bytes.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// Longest diagnostic summary, in characters.
pub const MAX_SUMMARY: usize = 256;

/// A move from one state to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub state: LifecycleState,
    pub at: Micros,
    pub by: String,
    pub reason: Option<String>,
    pub seq: u64,
}

/// A twin's lifecycle: its state and its recent transitions (oldest first;
/// the last is the current state's).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub twin: String,
    pub history: Vec<Transition>,
}

impl Entry {
    pub fn current(&self) -> &Transition {
        self.history.last().expect("an entry has a transition")
    }
}

/// The fold of the `lifecycle` stream.
#[derive(Debug, Default)]
pub struct Book {
    twins: HashMap<String, Entry>,
    by_state: BTreeMap<LifecycleState, BTreeSet<String>>,
}

impl Fold for Book {
    const STREAM: &'static str = LIFECYCLE_STREAM;
    const OBSERVES: bool = false;

    fn apply(&mut self, e: &Event) {
        let Change::Record(Record::LifecycleChanged {
            twin,
            state,
            reason,
        }) = &e.change
        else {
            return;
        };
        let t = Transition {
            state: *state,
            at: e.time,
            by: e.actor.clone(),
            reason: reason.clone(),
            seq: e.seq,
        };
        let entry = self.twins.entry(twin.clone()).or_insert_with(|| Entry {
            twin: twin.clone(),
            history: Vec::new(),
        });
        if let Some(before) = entry.history.last()
            && let Some(set) = self.by_state.get_mut(&before.state)
        {
            set.remove(twin);
        }
        entry.history.push(t);
        if entry.history.len() > RECENT {
            entry.history.remove(0);
        }
        self.by_state
            .entry(*state)
            .or_default()
            .insert(twin.clone());
    }
}

impl Book {
    pub fn get(&self, twin: &str) -> Option<&Entry> {
        self.twins.get(twin)
    }

    /// Twins in `state`, by id, after `after`.
    pub fn in_state<'a>(
        &'a self,
        state: LifecycleState,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.by_state
            .get(&state)
            .into_iter()
            .flat_map(move |set| set.range::<str, _>((lower, Bound::Unbounded)))
            .map(String::as_str)
    }

    /// How many twins are in each state.
    pub fn counts(&self) -> impl Iterator<Item = (LifecycleState, usize)> + '_ {
        self.by_state.iter().map(|(s, set)| (*s, set.len()))
    }
}

/// Why a lifecycle change was refused.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("{twin} may not move from {} to {}", from.name(), to.name())]
    Transition {
        twin: String,
        from: LifecycleState,
        to: LifecycleState,
    },
    #[error("{twin} is {}, not {} as expected", current.map_or("without a lifecycle state", LifecycleState::name), expected.name())]
    Conflict {
        twin: String,
        expected: LifecycleState,
        current: Option<LifecycleState>,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {message}")]
    Diagnostic { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LifecycleError {
    pub fn code(&self) -> Code {
        match self {
            LifecycleError::Transition { .. } => Code::InvalidLifecycleTransition,
            LifecycleError::Conflict { .. } => Code::LifecycleConflict,
            LifecycleError::Invalid { .. } => Code::InvalidArgument,
            LifecycleError::Diagnostic { .. } => Code::InvalidDiagnostic,
            LifecycleError::Store(s) => s.code(),
        }
    }

    /// The twin's state when it was refused.
    pub fn current(&self) -> Option<LifecycleState> {
        match self {
            LifecycleError::Transition { from, .. } => Some(*from),
            LifecycleError::Conflict { current, .. } => *current,
            _ => None,
        }
    }
}

/// The lifecycle service: the book, and the one writer of its records.
#[derive(Debug)]
pub struct Lifecycle {
    book: Arc<Folded<Book>>,
    store: Arc<dyn GraphStore>,
}

impl Lifecycle {
    /// Reads the stream back and follows it.
    pub async fn start(store: Arc<dyn GraphStore>) -> Result<Arc<Lifecycle>, StoreError> {
        Ok(Arc::new(Lifecycle {
            book: Folded::start(store.clone()).await?,
            store,
        }))
    }

    /// The service of nothing (a schema that is printed, never executed).
    pub fn unstarted(store: Arc<dyn GraphStore>) -> Arc<Lifecycle> {
        Arc::new(Lifecycle {
            book: Folded::unstarted(store.clone()),
            store,
        })
    }

    pub fn book(&self) -> Read<'_, Book> {
        self.book.read()
    }

    /// Stops following the stream.
    pub async fn stop(&self) {
        self.book.stop().await;
    }

    /// Moves `twin` (which the caller checked exists and may be changed by
    /// it) to `to`; with `expected`, only from that state. Moving to the
    /// state it is in writes nothing.
    pub async fn set(
        &self,
        twin: &str,
        to: LifecycleState,
        reason: Option<String>,
        expected: Option<LifecycleState>,
        actor: &str,
    ) -> Result<Entry, LifecycleError> {
        if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
            return Err(LifecycleError::Invalid {
                path: "reason".into(),
                message: format!("at most {MAX_REASON} bytes"),
            });
        }
        self.book
            .write(actor, |book: &Book| {
                let current = book.get(twin).map(|e| e.current().state);
                if let Some(expected) = expected
                    && current != Some(expected)
                {
                    return Err(LifecycleError::Conflict {
                        twin: twin.to_owned(),
                        expected,
                        current,
                    });
                }
                match current {
                    Some(from) if from == to => return Ok(Vec::new()),
                    Some(from) if !from.may_become(to) => {
                        return Err(LifecycleError::Transition {
                            twin: twin.to_owned(),
                            from,
                            to,
                        });
                    }
                    _ => {}
                }
                Ok(vec![Record::LifecycleChanged {
                    twin: twin.to_owned(),
                    state: to,
                    reason: reason.clone(),
                }])
            })
            .await?;
        self.book().get(twin).cloned().ok_or_else(|| {
            StoreError::Storage(format!("the lifecycle of {twin} was not folded")).into()
        })
    }
}

impl Lifecycle {
    /// Attaches a diagnostic report to `twin` (which the caller checked
    /// exists and may be reported on by it): a JSON object of at most
    /// [`MAX_REPORT_BYTES`], with an optional one-line summary. The event
    /// that records it.
    pub async fn report(
        &self,
        twin: &str,
        summary: Option<String>,
        report: serde_json::Value,
        actor: &str,
    ) -> Result<Event, LifecycleError> {
        let invalid = |path: &str, message: String| LifecycleError::Diagnostic {
            path: path.to_owned(),
            message,
        };
        if !report.is_object() {
            return Err(invalid("report", "must be a JSON object".into()));
        }
        let size = serde_json::to_vec(&report).map_or(usize::MAX, |v| v.len());
        if size > MAX_REPORT_BYTES {
            return Err(invalid(
                "report",
                format!("{size} bytes; at most {MAX_REPORT_BYTES}"),
            ));
        }
        if summary
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_SUMMARY || s.chars().any(char::is_control))
        {
            return Err(invalid(
                "summary",
                format!("one line of at most {MAX_SUMMARY} characters"),
            ));
        }
        let batch = crate::twin::Batch {
            ops: vec![crate::twin::Op::Record {
                change: Box::new(Change::Record(Record::DiagnosticReported {
                    twin: twin.to_owned(),
                    summary,
                    report,
                })),
            }],
        };
        let events = self.store.apply(batch, actor).await?;
        events
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Storage("the report was not recorded".into()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, twin: &str, state: LifecycleState) -> Event {
        Event {
            seq,
            time: seq as i64 * 1000,
            actor: "op".into(),
            change: Change::Record(Record::LifecycleChanged {
                twin: twin.into(),
                state,
                reason: None,
            }),
        }
    }

    #[test]
    fn the_book_keeps_each_twins_state_history_and_the_twins_in_each_state() {
        use LifecycleState::*;
        let mut b = Book::default();
        b.apply(&event(1, "p2", Planned));
        b.apply(&event(2, "p1", Planned));
        b.apply(&event(3, "p1", Commissioned));
        b.apply(&event(4, "p1", InService));
        let p1 = b.get("p1").expect("p1");
        assert_eq!(p1.current().state, InService);
        assert_eq!(p1.history.len(), 3);
        assert_eq!(b.in_state(Planned, None).collect::<Vec<_>>(), ["p2"]);
        assert_eq!(b.in_state(InService, None).collect::<Vec<_>>(), ["p1"]);
        assert_eq!(b.in_state(Planned, Some("p2")).count(), 0);
        assert!(b.get("p3").is_none());
        for i in 0..150 {
            b.apply(&event(
                10 + i,
                "p3",
                if i % 2 == 0 { Maintenance } else { InService },
            ));
        }
        assert_eq!(b.get("p3").expect("p3").history.len(), RECENT);
    }

    #[test]
    fn transitions_follow_the_lifecycle() {
        use LifecycleState::*;
        assert!(Planned.may_become(Commissioned));
        assert!(!Planned.may_become(InService));
        assert!(InService.may_become(Maintenance) && Maintenance.may_become(InService));
        assert!(Commissioned.may_become(Decommissioned));
        assert!(!Decommissioned.may_become(InService));
        assert!(!InService.may_become(Planned));
    }
}
