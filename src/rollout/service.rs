//! The owner of configuration (and rollout) state.
//!
//! State is the fold of the store's `rollouts` stream. One follower task
//! applies every committed record, whoever wrote it (this server or another
//! replica over Neo4j): at startup it reads the stream back from the store,
//! then follows the store's live events, re-reading the stream when it falls
//! behind. Writers validate against the fold under one lock, commit their
//! record through the store and wait until the follower has applied it, so
//! a mutation's answer always reflects its own write.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::{Mutex, broadcast, watch};

use super::RolloutError;
use super::config::{ConfigurationSpec, Configurations, VersionSpec};
use crate::store::{GraphStore, StoreError};
use crate::twin::event::ROLLOUTS_STREAM;
use crate::twin::{Batch, Change, Event, Op};

/// Records read back per store call.
const PAGE: usize = 1000;

/// How long a writer waits for its committed record to be folded.
const VISIBLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// What the follower has folded.
#[derive(Debug, Default)]
pub struct State {
    pub configurations: Configurations,
    /// The last stream record applied.
    seq: u64,
}

/// Configurations and rollouts over a store.
#[derive(Debug)]
pub struct Rollouts {
    store: Arc<dyn GraphStore>,
    state: RwLock<State>,
    /// The highest store sequence number the follower has seen.
    seen: watch::Sender<u64>,
    /// Serializes validation and commit of writes.
    writing: Mutex<()>,
}

impl Rollouts {
    /// Reads the stream back from `store` and starts following it.
    pub async fn start(store: Arc<dyn GraphStore>) -> Result<Arc<Rollouts>, StoreError> {
        // Subscribe before reading back, so nothing falls between the two.
        let live = store.subscribe();
        let r = Rollouts::unstarted(store);
        r.catch_up().await?;
        tokio::spawn(follow(Arc::downgrade(&r), live));
        Ok(r)
    }

    /// The service with nothing read back and nothing followed: only for a
    /// schema that is printed, never executed.
    pub fn unstarted(store: Arc<dyn GraphStore>) -> Arc<Rollouts> {
        Arc::new(Rollouts {
            store,
            state: RwLock::new(State::default()),
            seen: watch::channel(0).0,
            writing: Mutex::new(()),
        })
    }

    /// The folded state, to read.
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, e: &Event) {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        if e.seq > s.seq && e.change.stream() == Some(ROLLOUTS_STREAM) {
            s.configurations.apply(e);
            s.seq = e.seq;
        }
    }

    fn saw(&self, seq: u64) {
        self.seen.send_if_modified(|s| {
            let newer = seq > *s;
            *s = (*s).max(seq);
            newer
        });
    }

    /// Applies the stream's records after the last one applied.
    async fn catch_up(&self) -> Result<(), StoreError> {
        loop {
            let after = self.state().seq;
            let page = self
                .store
                .stream_events(ROLLOUTS_STREAM, after, PAGE)
                .await?;
            for e in &page {
                self.apply(e);
            }
            if let Some(last) = page.last() {
                self.saw(last.seq);
            }
            if page.len() < PAGE {
                return Ok(());
            }
        }
    }

    /// Commits records (already validated) and waits until they are folded.
    async fn record(&self, changes: Vec<Change>, actor: &str) -> Result<Vec<Event>, RolloutError> {
        let ops = changes
            .into_iter()
            .map(|change| Op::Record {
                change: Box::new(change),
            })
            .collect();
        let events = self.store.apply(Batch { ops }, actor).await?;
        if let Some(last) = events.last() {
            let mut seen = self.seen.subscribe();
            let folded = tokio::time::timeout(VISIBLE_WITHIN, seen.wait_for(|s| *s >= last.seq));
            if !matches!(folded.await, Ok(Ok(_))) {
                return Err(StoreError::Unavailable(format!(
                    "record {} was committed but is not visible yet",
                    last.seq
                ))
                .into());
            }
        }
        Ok(events)
    }

    /// Creates a configuration.
    pub async fn create_configuration(
        &self,
        spec: ConfigurationSpec,
        actor: &str,
    ) -> Result<(), RolloutError> {
        let _w = self.writing.lock().await;
        let change = self
            .state()
            .configurations
            .check_create(&self.store.models(), &spec)?;
        self.record(vec![change], actor).await?;
        Ok(())
    }

    /// Publishes the next version of configuration `name`; its number.
    pub async fn publish_version(
        &self,
        name: &str,
        spec: VersionSpec,
        actor: &str,
    ) -> Result<u32, RolloutError> {
        let _w = self.writing.lock().await;
        let change = self
            .state()
            .configurations
            .check_publish(&self.store.models(), name, spec)?;
        let number = match &change {
            Change::ConfigurationVersionPublished { version, .. } => version.number,
            _ => 0,
        };
        self.record(vec![change], actor).await?;
        Ok(number)
    }
}

/// Applies the store's committed records until the store closes or the
/// service is dropped.
async fn follow(r: std::sync::Weak<Rollouts>, mut live: broadcast::Receiver<Arc<Event>>) {
    loop {
        let next = live.recv().await;
        let Some(r) = r.upgrade() else { return };
        match next {
            Ok(e) => {
                r.apply(&e);
                r.saw(e.seq);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Missed some: read the stream back from the last applied.
                let last = r.store.last_seq();
                while let Err(e) = r.catch_up().await {
                    tracing::error!(error = %e, "rollouts: cannot read the stream back; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                r.saw(last);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
