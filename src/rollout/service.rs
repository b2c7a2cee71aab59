//! The owner of configuration (and rollout) state.
//!
//! State is the fold of the store's `rollouts` stream. One follower task
//! applies every committed record, whoever wrote it (this server or another
//! replica over Neo4j): at startup it reads the stream back from the store,
//! then follows the store's live events, re-reading the stream when it falls
//! behind. Writers validate against the fold under one lock, commit their
//! record through the store and wait until the follower has applied it, so
//! a mutation's answer always reflects its own write.

use crate::records::Record;
use std::collections::HashSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::{Mutex, Notify, broadcast, watch};

use super::RolloutError;
use super::config::{ConfigurationSpec, Configurations, VersionSpec};
use super::run::Runs;
use super::scheduler::{Scheduler, Status};
use crate::store::{GraphStore, StoreError};
use crate::twin::clock::{Clock, SystemClock};
use crate::twin::event::ROLLOUTS_STREAM;
use crate::twin::{Batch, Change, Event, Op};

/// A folded rollout record, for `rolloutProgress` subscribers, with where
/// the rollout stood right after it (not when a subscriber gets to it).
#[derive(Debug, Clone)]
pub struct Progress {
    pub rollout: String,
    pub event: Arc<Event>,
    pub standing: Option<Standing>,
}

/// Where a rollout stands: its state, stage, reason and counts.
#[derive(Debug, Clone)]
pub struct Standing {
    pub state: super::run::RolloutState,
    pub stage: usize,
    pub reason: Option<String>,
    pub counts: super::run::Counts,
}

/// Records read back per store call.
const PAGE: usize = 1000;

/// How long a writer waits for its committed record to be folded.
const VISIBLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// How a [`Rollouts`] service runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Whether this server may drive rollouts and remediation. Among the
    /// servers over one store that may, the one holding the scheduler lease
    /// does.
    pub schedule: bool,
    /// How long the scheduler lease lasts unless renewed (a server that
    /// stops answering is replaced after at most this long).
    pub lease_ttl: std::time::Duration,
    /// The time timeouts, bake times, rates and cooldowns are measured in.
    pub clock: Arc<dyn Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            schedule: true,
            lease_ttl: std::time::Duration::from_secs(10),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Attempts of a request whose records other servers' records keep
/// getting ahead of.
const WRITE_ATTEMPTS: usize = 20;

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
    /// The follower and the scheduler.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(super) options: Options,
    /// What the scheduler shows of itself.
    pub(super) scheduler: Arc<Status>,
    /// The last stream record the decisions being written were made on
    /// (set by the holder of `writing` from the fold it read; moved on by
    /// its own commits): what every commit expects to be the last.
    basis: std::sync::atomic::AtomicU64,
}

impl Rollouts {
    /// Reads the stream back from `store`, starts following it and
    /// scheduling rollouts.
    pub async fn start(store: Arc<dyn GraphStore>) -> Result<Arc<Rollouts>, StoreError> {
        Rollouts::start_with(store, Options::default()).await
    }

    /// [`start`](Rollouts::start) with `options` (e.g. without the
    /// scheduler: a replica that only takes requests).
    pub async fn start_with(
        store: Arc<dyn GraphStore>,
        options: Options,
    ) -> Result<Arc<Rollouts>, StoreError> {
        // Subscribe before reading back, so nothing falls between the two.
        let live = store.subscribe();
        let schedule = options.schedule;
        let r = Rollouts::new(store, options);
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
            tasks.push(tokio::spawn(Scheduler::new(&r).run()));
        }
        *r.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(r)
    }

    /// Stops following the store and scheduling, and hands the scheduler
    /// lease back (at shutdown: what is recorded is durable; a scheduler
    /// pass cut short resumes from the records, here at the next start or
    /// on the server that takes the lease).
    pub async fn stop(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let scheduled = tasks.len() > 1;
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        if scheduled {
            self.scheduler
                .scheduling
                .store(false, std::sync::atomic::Ordering::Release);
            let released = self
                .store
                .lease(
                    super::scheduler::LEASE,
                    &self.scheduler.holder,
                    std::time::Duration::ZERO,
                )
                .await;
            if let Err(e) = released {
                tracing::warn!(error = %e, "rollouts: cannot hand the scheduler lease back; it expires by itself");
            }
        }
    }

    /// The service with nothing read back and nothing followed: only for a
    /// schema that is printed, never executed.
    pub fn unstarted(store: Arc<dyn GraphStore>) -> Arc<Rollouts> {
        Rollouts::new(store, Options::default())
    }

    fn new(store: Arc<dyn GraphStore>, options: Options) -> Arc<Rollouts> {
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
            options,
            scheduler: Arc::new(Status::new()),
            basis: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Whether this server drives rollouts and remediation now (it holds
    /// the scheduler lease).
    pub fn schedules(&self) -> bool {
        self.scheduler
            .scheduling
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Wakes the scheduler and waits until it has made a whole pass that
    /// began after this call (so it saw everything done before, the clock
    /// included); `false` when none came within `within` (this server does
    /// not schedule).
    pub async fn next_pass(&self, within: std::time::Duration) -> bool {
        let mut passes = self.scheduler.passes.subscribe();
        let from = *passes.borrow_and_update();
        self.wake.notify_one();
        // The pass under way may have begun before the call: the one after.
        let done = passes.wait_for(|n| *n >= from + 2);
        matches!(tokio::time::timeout(within, done).await, Ok(Ok(_)))
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
            let standing = rollout
                .as_ref()
                .and_then(|id| s.runs.get(id))
                .map(|r| Standing {
                    state: r.state,
                    stage: r.stage,
                    reason: r.reason.clone(),
                    counts: r.counts.clone(),
                });
            drop(s);
            if let Some(rollout) = rollout {
                let _ = self.progress.send(Progress {
                    rollout,
                    event: e.clone(),
                    standing,
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

    /// Validates a request against the fold (`build`: its records) and
    /// commits them, under the write lock; when another server's record got
    /// in first, reads it and decides again.
    pub(super) async fn write<F>(
        &self,
        actor: &str,
        mut build: F,
    ) -> Result<Vec<Event>, RolloutError>
    where
        F: FnMut(&State) -> Result<Vec<Change>, RolloutError>,
    {
        let _w = self.writing.lock().await;
        for _ in 0..WRITE_ATTEMPTS {
            let changes = {
                let state = self.state();
                self.decide_on(&state);
                build(&state)?
            };
            match self.record(changes, actor).await {
                Err(RolloutError::Overtaken { .. }) => {}
                done => return done,
            }
        }
        Err(StoreError::Unavailable(
            "other servers keep writing rollout records first; try again".into(),
        )
        .into())
    }

    /// Decisions about to be written are made on `state` (the holder of
    /// `writing` calls it before reading the fold to decide).
    pub(super) fn decide_on(&self, state: &State) {
        self.basis
            .store(state.seq, std::sync::atomic::Ordering::Release);
    }

    /// Commits a batch, provided the stream still ends where the decisions
    /// were made ([`decide_on`](Rollouts::decide_on), moved on by this
    /// writer's own commits; else [`RolloutError::Overtaken`], once the fold
    /// has caught up), and waits until the follower has folded it.
    pub(super) async fn commit(
        &self,
        mut batch: Batch,
        actor: &str,
    ) -> Result<Vec<Event>, RolloutError> {
        batch.ops.insert(
            0,
            Op::ExpectStream {
                stream: ROLLOUTS_STREAM.to_owned(),
                seq: self.basis.load(std::sync::atomic::Ordering::Acquire),
            },
        );
        let events = match self.store.apply(batch, actor).await {
            Ok(events) => events,
            Err(StoreError::Batch(b)) => {
                if let crate::twin::TwinError::StreamMoved { current, .. } = b.error {
                    let mut seen = self.seen.subscribe();
                    let caught_up =
                        tokio::time::timeout(VISIBLE_WITHIN, seen.wait_for(|s| *s >= current));
                    if !matches!(caught_up.await, Ok(Ok(_))) {
                        return Err(StoreError::Unavailable(format!(
                            "record {current} of another server is not visible yet"
                        ))
                        .into());
                    }
                    return Err(RolloutError::Overtaken { current });
                }
                // Indexes as the caller numbered its operations.
                return Err(StoreError::Batch(crate::twin::BatchError {
                    index: b.index.saturating_sub(1),
                    error: b.error,
                })
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        // The stream now ends at this writer's own last record.
        if let Some(own) = events
            .iter()
            .rev()
            .find(|e| e.change.stream() == Some(ROLLOUTS_STREAM))
        {
            self.basis
                .store(own.seq, std::sync::atomic::Ordering::Release);
        }
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
        let models = self.store.models();
        self.write(actor, |state| {
            Ok(vec![state.configurations.check_create(&models, &spec)?])
        })
        .await?;
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
        self.write(actor, |state| {
            if state.configurations.get(name).is_none() {
                return Err(RolloutError::ConfigurationNotFound(name.to_owned()));
            }
            Ok(vec![Change::Record(Record::ConfigurationRemediationSet {
                configuration: name.to_owned(),
                per_minute,
            })])
        })
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
        let models = self.store.models();
        let events = self
            .write(actor, |state| {
                Ok(vec![state.configurations.check_publish(
                    &models,
                    name,
                    spec.clone(),
                )?])
            })
            .await?;
        Ok(events
            .iter()
            .find_map(|e| match &e.change {
                Change::Record(Record::ConfigurationVersionPublished { version, .. }) => {
                    Some(version.number)
                }
                _ => None,
            })
            .unwrap_or(0))
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
