//! Every committed event, in order and without gaps, for an in-process
//! consumer that derives state from the log (alarms): the store's feed
//! while it keeps up, the log itself when the consumer starts behind or
//! falls behind (a full feed misses commits), and the log now and then on
//! a store without a feed.

use std::sync::Arc;
use std::time::Duration;

use super::{Feed, GraphStore, StoreError};
use crate::twin::Event;

/// Commits a feed holds before the consumer falls behind and reads the log.
pub const FEED_COMMITS: usize = 1024;

/// Events read from the log per store call.
const LOG_PAGE: usize = 4096;

/// How often a store without a feed is asked for new events.
const LOG_POLL: Duration = Duration::from_millis(200);

/// The log from one point on.
pub struct Tail {
    store: Arc<dyn GraphStore>,
    feed: Option<Feed>,
    seq: u64,
    behind: bool,
    /// A store without a feed: when its log is read next (kept across
    /// cancelled calls, so a caller that polls often still gets there).
    next_poll: tokio::time::Instant,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail")
            .field("seq", &self.seq)
            .field("behind", &self.behind)
            .finish_non_exhaustive()
    }
}

impl Tail {
    /// The events after `after`: the feed is taken before anything is read,
    /// so nothing committed from here on is missed.
    pub fn new(store: Arc<dyn GraphStore>, after: u64) -> Tail {
        let feed = store.feed(FEED_COMMITS);
        Tail {
            store,
            feed,
            seq: after,
            behind: true,
            next_poll: tokio::time::Instant::now(),
        }
    }

    /// The last event handed out.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Whether the last events came from the log (the consumer was behind).
    pub fn behind(&self) -> bool {
        self.behind
    }

    /// The next events (at least one), in order; `None` once the store is
    /// closed. Cancel-safe: a call dropped before it returns hands out
    /// nothing, and the next one starts where it would have.
    pub async fn next(&mut self) -> Option<Vec<Arc<Event>>> {
        loop {
            if self.behind {
                match self.store.events_after(self.seq, LOG_PAGE).await {
                    Ok(events) if !events.is_empty() => {
                        self.seq = events.last().map_or(self.seq, |e| e.seq);
                        return Some(events.into_iter().map(Arc::new).collect());
                    }
                    Ok(_) => {
                        self.behind = false;
                        self.next_poll = tokio::time::Instant::now() + LOG_POLL;
                    }
                    Err(StoreError::Closed) => return None,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the log failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            let Some(feed) = &mut self.feed else {
                tokio::time::sleep_until(self.next_poll).await;
                self.behind = true;
                continue;
            };
            let commit = feed.recv().await?;
            let mut out = Vec::new();
            let mut next = Some(commit);
            while let Some(events) = next.take() {
                for e in events.iter() {
                    if e.seq <= self.seq {
                        continue;
                    }
                    if e.seq != self.seq + 1 {
                        // Commits were missed: the log has them.
                        self.behind = true;
                        break;
                    }
                    self.seq = e.seq;
                    out.push(e.clone());
                }
                if !self.behind {
                    next = feed.try_recv().ok();
                }
            }
            if !out.is_empty() {
                return Some(out);
            }
        }
    }
}
