//! The store's connections to the database, lent one exchange at a time.
//! This is the one place that decides whether a connection may be used
//! again, so that no call site has to.
//!
//! neo4rs keeps connections in a pool and, when one is taken again, sends
//! RESET and reads one reply. A connection that went back to that pool in
//! the middle of an exchange (its caller dropped while a statement's answer
//! was still coming) still owes replies: the RESET takes one of them for its
//! own, and the next borrower reads the rest as its answer
//! (neo4j-labs/neo4rs#295).
//!
//! So a connection is never shared through neo4rs's pool. Each one is a
//! *line*: a `neo4rs::Graph` of its own, a pool of one, lent for one
//! exchange (a statement and its whole answer, or a whole transaction). A
//! line is used again only if its exchange ended: answered, or refused with
//! the database's own `FAILURE` (the whole reply). Otherwise it is dropped
//! and its socket closes with it.
//!
//! An exchange whose caller goes away is not cut there: [`Lines::lend`]
//! runs every exchange on a task of its own, which reads the answer to its
//! end (then the line is clean and is kept) or until the statement's budget
//! runs out, whichever comes first. At the budget the line is closed: a
//! database stops the work of a connection that closed (Neo4j marks the
//! transaction for termination and rolls it back; ArcadeDB finishes the
//! statement first). Until then the abandoned statement keeps its line, so
//! abandoned statements never load the database more than awaited ones do:
//! closing at once would free the line for the next statement while a
//! database that does not stop on close (ArcadeDB) still runs the old one,
//! and a storm of abandoned requests would pile up unbounded work there.
//! [`Lines::lend_here`] runs the exchange in the caller itself, for the
//! store's own tasks (the writer, the tailer), which are never abandoned
//! and are cut only at their budget.
//!
//! The store keeps one [`Lines`] per kind of work (user reads, writes, the
//! event tailer), each with its own size, so the tailer (which is also the
//! health probe) never waits behind user queries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::ConnectionCounts;
use tokio::time::Instant;

/// Lines for one kind of work (cheap to clone: one set, shared).
#[derive(Clone)]
pub(super) struct Lines(Arc<Inner>);

struct Inner {
    /// What they are for (`reads`, `writes`, `tailer`).
    purpose: &'static str,
    config: neo4rs::Config,
    size: usize,
    idle: Mutex<Vec<neo4rs::Graph>>,
    permits: Arc<Semaphore>,
    opened: AtomicU64,
    dropped: AtomicU64,
    abandoned: AtomicU64,
}

/// Why an exchange did not end.
#[derive(Debug)]
pub(super) enum Cut {
    /// No line came free within the budget: all of them were busy.
    Busy { purpose: &'static str, size: usize },
    /// The exchange outlasted its budget; its line was closed.
    Late,
    /// A line could not be made (an unusable URI: checked at startup).
    Unusable(neo4rs::Error),
    /// The exchange's task failed (a bug: it panicked).
    Failed(String),
}

/// Whether an exchange that failed with this error ended at a message
/// boundary, the connection owing nothing.
pub(super) trait Ended {
    fn ended(&self) -> bool;
}

impl Ended for neo4rs::Error {
    /// Only the database's own `FAILURE`: the reply to the request just
    /// sent, read whole. Anything else may have been cut within one. Not
    /// a failure that ends the connection's session (a database shutting
    /// down): that connection is done.
    fn ended(&self) -> bool {
        match self {
            neo4rs::Error::Neo4j(n) => !n.code().starts_with("Neo.ClientError.Security."),
            _ => false,
        }
    }
}

/// A line lent for one exchange; back to the idle lines if the exchange
/// ended, else dropped (its connection closes once the exchange's own
/// handles are gone too). Holds the line's place among the lines.
struct Lent {
    lines: Lines,
    line: Option<neo4rs::Graph>,
    ended: bool,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(line) = self.line.take() else { return };
        if self.ended {
            lock(&self.lines.0.idle).push(line);
        } else {
            self.lines.0.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts the exchange as abandoned if its caller leaves before the answer.
struct Waiting<'a> {
    lines: &'a Lines,
    answered: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.lines.0.abandoned.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Lines {
    /// At most `size` lines to the database of `config` (its own
    /// `max_connections` is ignored: a line is one connection).
    pub(super) fn new(purpose: &'static str, config: &neo4rs::Config, size: usize) -> Lines {
        Lines(Arc::new(Inner {
            purpose,
            config: config.clone(),
            size: size.max(1),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
            opened: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        }))
    }

    pub(super) fn counts(&self) -> ConnectionCounts {
        let i = &self.0;
        ConnectionCounts {
            purpose: i.purpose,
            size: i.size,
            lent: i.size - i.permits.available_permits(),
            opened: i.opened.load(Ordering::Relaxed),
            dropped: i.dropped.load(Ordering::Relaxed),
            abandoned: i.abandoned.load(Ordering::Relaxed),
        }
    }

    /// Runs `exchange` on a line, on a task of its own, within `budget`
    /// (the wait for a free line included). The exchange gets the line as a
    /// `neo4rs::Graph` holding one connection: statements one after the
    /// other, each one's row stream dropped before the next is sent (else
    /// the next waits for the connection until the budget ends), or one
    /// transaction. If the caller goes away, the task goes on to the end of
    /// the exchange or of the budget (see the module's documentation).
    pub(super) async fn lend<T, E, F, Fut>(
        &self,
        budget: Duration,
        exchange: F,
    ) -> Result<Result<T, E>, Cut>
    where
        F: FnOnce(neo4rs::Graph) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Ended + Send + 'static,
    {
        let deadline = Instant::now() + budget;
        let lent = self.take(deadline).await?;
        let mut waiting = Waiting {
            lines: self,
            answered: false,
        };
        let task = tokio::spawn(run(lent, deadline, exchange));
        let outcome = task.await;
        waiting.answered = true;
        outcome.map_err(|e| Cut::Failed(e.to_string()))?
    }

    /// [`Lines::lend`] in the caller itself: if the caller goes away, the
    /// line is closed at once. For the store's own tasks, which are not
    /// abandoned (and whose exchanges borrow from them).
    pub(super) async fn lend_here<T, E, F, Fut>(
        &self,
        budget: Duration,
        exchange: F,
    ) -> Result<Result<T, E>, Cut>
    where
        F: FnOnce(neo4rs::Graph) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Ended,
    {
        let deadline = Instant::now() + budget;
        let lent = self.take(deadline).await?;
        run(lent, deadline, exchange).await
    }

    /// Whether the database answers a trivial statement on a new
    /// connection of its own (made, used and closed here, outside the
    /// lines) within `within`.
    pub(super) async fn probe(&self, within: Duration) -> Result<(), String> {
        let config = self.0.config.clone();
        let ask = async move {
            let db = neo4rs::Graph::connect(config).await?;
            db.run(neo4rs::query("RETURN 1")).await
        };
        match tokio::time::timeout(within, ask).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer to a probe within {within:?}")),
        }
    }

    /// A line and its place among the lines, waiting for one until
    /// `deadline`; an idle line, or a new one (which connects when first
    /// used).
    async fn take(&self, deadline: Instant) -> Result<Lent, Cut> {
        let i = &self.0;
        let permit = tokio::time::timeout_at(deadline, i.permits.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(Cut::Busy {
                purpose: i.purpose,
                size: i.size,
            })?;
        let idle = lock(&i.idle).pop();
        let line = match idle {
            Some(line) => line,
            None => {
                let line = neo4rs::Graph::connect(i.config.clone())
                    .await
                    .map_err(Cut::Unusable)?;
                i.opened.fetch_add(1, Ordering::Relaxed);
                line
            }
        };
        Ok(Lent {
            lines: self.clone(),
            line: Some(line),
            ended: false,
            _permit: permit,
        })
    }
}

/// The exchange on its line until `deadline`; the line is kept only if the
/// exchange ended.
async fn run<T, E, F, Fut>(
    mut lent: Lent,
    deadline: Instant,
    exchange: F,
) -> Result<Result<T, E>, Cut>
where
    F: FnOnce(neo4rs::Graph) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Ended,
{
    let Some(line) = lent.line.clone() else {
        return Err(Cut::Failed("a lent line without its connection".into()));
    };
    match tokio::time::timeout_at(deadline, exchange(line)).await {
        Ok(answer) => {
            lent.ended = answer.as_ref().err().is_none_or(Ended::ended);
            Ok(answer)
        }
        Err(_) => Err(Cut::Late),
    }
}
