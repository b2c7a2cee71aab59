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
//! *line*: a `neo4rs::Graph` of its own, a pool of one. [`Lines::lend`]
//! lends a line for one exchange (a statement and its whole answer, or a
//! whole transaction). If the exchange ends, answered or refused with the
//! database's own `FAILURE`, the line is kept for the next exchange, and
//! neo4rs's RESET then finds nothing owed. If it does not end (its caller
//! dropped at any await point, its budget spent, any other failure), the
//! line is dropped, and its socket closes with it. A database stops the
//! work of a connection that closed: Neo4j marks the transaction for
//! termination and rolls it back, so the abandoned statement stops there
//! too. ArcadeDB finishes the statement it is running and only then finds
//! the connection gone. No connection is ever reused after an exchange
//! that was cut.
//!
//! The store keeps one [`Lines`] per kind of work (user reads, writes, the
//! event tailer), each with its own size, so the tailer (which is also the
//! health probe) never waits behind user queries.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::metrics::ConnectionCounts;
use tokio::time::Instant;

/// Lines for one kind of work.
pub(super) struct Lines {
    /// What they are for (`reads`, `writes`, `tailer`).
    purpose: &'static str,
    config: neo4rs::Config,
    size: usize,
    idle: Mutex<Vec<neo4rs::Graph>>,
    permits: Semaphore,
    opened: AtomicU64,
    dropped: AtomicU64,
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
}

/// Whether an exchange that failed with this error ended at a message
/// boundary, the connection owing nothing.
pub(super) trait Ended {
    fn ended(&self) -> bool;
}

impl Ended for neo4rs::Error {
    /// Only the database's own `FAILURE`: the reply to the request just
    /// sent, read whole. Anything else may have been cut within one.
    fn ended(&self) -> bool {
        matches!(self, neo4rs::Error::Neo4j(_))
    }
}

/// A line lent for one exchange; dropped with it unless the exchange ended.
struct Lent<'a> {
    lines: &'a Lines,
    line: Option<neo4rs::Graph>,
    ended: bool,
    _permit: SemaphorePermit<'a>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let Some(line) = self.line.take() else { return };
        if self.ended {
            lock(&self.lines.idle).push(line);
        } else {
            // The last handle of the line's pool: its connection closes
            // once the exchange's own handles are gone too.
            self.lines.dropped.fetch_add(1, Ordering::Relaxed);
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
        Lines {
            purpose,
            config: config.clone(),
            size: size.max(1),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1)),
            opened: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub(super) fn counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            purpose: self.purpose,
            size: self.size,
            lent: self.size - self.permits.available_permits(),
            opened: self.opened.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Runs `exchange` on a line of its own, within `budget` (the wait for
    /// a free line included). The exchange gets the line as a
    /// `neo4rs::Graph` holding one connection: statements one after the
    /// other, each one's row stream dropped before the next is sent (else
    /// the next waits for the connection until the budget ends), or one
    /// transaction.
    pub(super) async fn lend<T, E, F, Fut>(
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
        let busy = || Cut::Busy {
            purpose: self.purpose,
            size: self.size,
        };
        let permit = match tokio::time::timeout_at(deadline, self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => return Err(busy()),
        };
        let line = self.take().await.map_err(Cut::Unusable)?;
        let mut lent = Lent {
            lines: self,
            line: Some(line.clone()),
            ended: false,
            _permit: permit,
        };
        match tokio::time::timeout_at(deadline, exchange(line)).await {
            Ok(answer) => {
                lent.ended = answer.as_ref().err().is_none_or(Ended::ended);
                Ok(answer)
            }
            Err(_) => Err(Cut::Late),
        }
    }

    /// An idle line, or a new one (which connects when first used).
    async fn take(&self) -> Result<neo4rs::Graph, neo4rs::Error> {
        if let Some(line) = lock(&self.idle).pop() {
            return Ok(line);
        }
        let line = neo4rs::Graph::connect(self.config.clone()).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(line)
    }
}
