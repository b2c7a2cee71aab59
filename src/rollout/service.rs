//! The owner of configuration (and rollout) state.
//!
//! State is the fold of the store's `rollouts` stream. One follower task
//! applies every committed record, whoever wrote it (this server or another
//! replica over Neo4j): at startup it reads the stream back from the store,
//! then follows the store's live events, re-reading the stream when it falls
//! behind. Writers validate against the fold under one lock, commit their
//! record through the store and wait until the follower has applied it, so
//! a mutation's answer always reflects its own write.

use std::collections::HashSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::{Mutex, Notify, broadcast, watch};

use super::RolloutError;
use super::config::{ConfigurationSpec, Configurations, VersionSpec};
use super::run::Runs;
use crate::store::{GraphStore, StoreError};
use crate::twin::event::ROLLOUTS_STREAM;
use crate::twin::{Batch, Change, Event, Op};

/// When each twin was last remediated, and each configuration's recent
/// remediations (for its rate).
#[derive(Debug, Default)]
pub(super) struct Remediated {
    pub last: std::collections::HashMap<String, crate::twin::Micros>,
    pub recent: std::collections::HashMap<String, std::collections::VecDeque<crate::twin::Micros>>,
}

/// A folded rollout record, for `rolloutProgress` subscribers.
#[derive(Debug, Clone)]
pub struct Progress {
    pub rollout: String,
    pub event: Arc<Event>,
}

/// Records read back per store call.
const PAGE: usize = 1000;

/// How long a writer waits for its committed record to be folded.
const VISIBLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// What the follower has folded.
#[derive(Debug, Default)]
pub struct State {
    pub configurations: Configurations,
    pub runs: Runs,
    pub drifts: super::drift::Drifts,
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
    /// Serializes validation and commit of writes (requests and the
    /// scheduler alike).
    pub(super) writing: Mutex<()>,
    /// Twins in flight whose state changed since the scheduler last looked.
    pub(super) dirty: std::sync::Mutex<HashSet<String>>,
    /// Wakes the scheduler.
    pub(super) wake: Arc<Notify>,
    progress: broadcast::Sender<Progress>,
    drift: broadcast::Sender<Arc<super::drift::DriftChange>>,
    /// What remediation did lately (memory only).
    pub(super) remediated: std::sync::Mutex<Remediated>,
    /// The follower and the scheduler.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Rollouts {
    /// Reads the stream back from `store`, starts following it and
    /// scheduling rollouts.
    pub async fn start(store: Arc<dyn GraphStore>) -> Result<Arc<Rollouts>, StoreError> {
        Rollouts::start_with(store, true).await
    }

    /// [`start`](Rollouts::start); without the scheduler when `schedule` is
    /// false (a replica that only takes requests: another one drives the
    /// rollouts and remediation).
    pub async fn start_with(
        store: Arc<dyn GraphStore>,
        schedule: bool,
    ) -> Result<Arc<Rollouts>, StoreError> {
        // Subscribe before reading back, so nothing falls between the two.
        let live = store.subscribe();
        let r = Rollouts::unstarted(store);
        r.catch_up().await?;
        r.seed_drifts().await?;
        // Twins in flight when the server stopped: look at them again.
        {
            let state = r.state();
            let mut dirty = r.dirty.lock().unwrap_or_else(|p| p.into_inner());
            dirty.extend(state.runs.all_in_flight());
        }
        let mut tasks = vec![tokio::spawn(follow(Arc::downgrade(&r), live))];
        if schedule {
            tasks.push(tokio::spawn(super::scheduler::schedule(
                Arc::downgrade(&r),
                r.wake.clone(),
            )));
        }
        *r.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(r)
    }

    /// Stops following the store and scheduling (at shutdown: what is
    /// recorded is durable; a scheduler pass cut short resumes from the
    /// records at the next start).
    pub async fn stop(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    /// The service with nothing read back and nothing followed: only for a
    /// schema that is printed, never executed.
    pub fn unstarted(store: Arc<dyn GraphStore>) -> Arc<Rollouts> {
        Arc::new(Rollouts {
            store,
            state: RwLock::new(State::default()),
            seen: watch::channel(0).0,
            writing: Mutex::new(()),
            dirty: std::sync::Mutex::new(HashSet::new()),
            wake: Arc::new(Notify::new()),
            progress: broadcast::channel(4096).0,
            drift: broadcast::channel(4096).0,
            tasks: std::sync::Mutex::new(Vec::new()),
            remediated: std::sync::Mutex::new(Default::default()),
        })
    }

    /// The folded state, to read.
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn store(&self) -> &Arc<dyn GraphStore> {
        &self.store
    }

    /// Drifts starting and ending, as they happen.
    pub fn drift_changes(&self) -> broadcast::Receiver<Arc<super::drift::DriftChange>> {
        self.drift.subscribe()
    }

    /// Reads every twin once, for the drift fold.
    async fn seed_drifts(&self) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let page = self
                .store
                .twins(&crate::store::TwinQuery {
                    after: after.clone(),
                    limit: 10_000,
                    ..crate::store::TwinQuery::default()
                })
                .await?;
            {
                let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
                for t in &page.items {
                    if !t.configurations.is_empty() {
                        s.drifts.seed(t);
                    }
                }
            }
            after = page.items.last().map(|t| t.id.to_string());
            if !page.has_more {
                return Ok(());
            }
        }
    }

    /// Folded rollout records, as they are applied.
    pub fn progress(&self) -> broadcast::Receiver<Progress> {
        self.progress.subscribe()
    }

    fn apply(&self, e: &Arc<Event>) {
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        for c in s.drifts.apply(e) {
            let _ = self.drift.send(Arc::new(c));
        }
        if e.seq > s.seq && e.change.stream() == Some(ROLLOUTS_STREAM) {
            s.configurations.apply(e);
            let rollout = s.runs.apply(e);
            s.seq = e.seq;
            drop(s);
            if let Some(rollout) = rollout {
                let _ = self.progress.send(Progress {
                    rollout,
                    event: e.clone(),
                });
            }
            self.wake.notify_one();
        } else if s.runs.any_in_flight() {
            // A device answering (or anyone touching) a twin in flight.
            let touched: Vec<String> = e
                .change
                .twins()
                .into_iter()
                .filter(|t| s.runs.in_flight(t).is_some())
                .map(str::to_owned)
                .collect();
            drop(s);
            if !touched.is_empty() {
                self.dirty
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(touched);
                self.wake.notify_one();
            }
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
            for e in page.iter().cloned().map(Arc::new) {
                self.apply(&e);
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
    pub(super) async fn record(
        &self,
        changes: Vec<Change>,
        actor: &str,
    ) -> Result<Vec<Event>, RolloutError> {
        let ops = changes
            .into_iter()
            .map(|change| Op::Record {
                change: Box::new(change),
            })
            .collect();
        self.commit(Batch { ops }, actor).await
    }

    /// Commits a batch and waits until the follower has folded it.
    pub(super) async fn commit(
        &self,
        batch: Batch,
        actor: &str,
    ) -> Result<Vec<Event>, RolloutError> {
        let events = self.store.apply(batch, actor).await?;
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

    /// Turns automatic remediation of configuration `name` on (at most
    /// `per_minute` drifted twins re-applied a minute) or off (`None`).
    pub async fn set_remediation(
        &self,
        name: &str,
        per_minute: Option<f64>,
        actor: &str,
    ) -> Result<(), RolloutError> {
        if per_minute.is_some_and(|p| !(p > 0.0 && p.is_finite())) {
            return Err(RolloutError::invalid("perMinute", "must be positive"));
        }
        let _w = self.writing.lock().await;
        if self.state().configurations.get(name).is_none() {
            return Err(RolloutError::ConfigurationNotFound(name.to_owned()));
        }
        self.record(
            vec![Change::ConfigurationRemediationSet {
                configuration: name.to_owned(),
                per_minute,
            }],
            actor,
        )
        .await?;
        self.wake.notify_one();
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
                // Devices may have answered meanwhile: look at every twin
                // in flight again. (Drift seen by subscribers may miss the
                // changes skipped; the drift query reads the twins again.)
                {
                    let in_flight: Vec<String> = r.state().runs.all_in_flight();
                    r.dirty
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(in_flight);
                }
                while let Err(e) = r.seed_drifts().await {
                    tracing::error!(error = %e, "rollouts: cannot read the twins back; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                r.saw(last);
                r.wake.notify_one();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
