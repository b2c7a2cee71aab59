//! State kept as the fold of one stream of records, by the domain that owns
//! the stream (device identities; configurations and rollouts keep their
//! own, older follower in `rollout::service`).
//!
//! One follower task applies every committed event, whoever wrote it (this
//! server or another replica over Neo4j): at startup it reads the stream
//! back, then follows the store's live events, re-reading the stream when it
//! falls behind. Writers decide against the fold under one lock, commit
//! their records with [`Op::ExpectStream`] (so two servers never both take
//! one name) and wait until the follower has applied them, so an answer
//! always reflects its own write.

use std::sync::{Arc, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use tokio::sync::{Mutex, broadcast, watch};

use super::{GraphStore, StoreError};
use crate::records::Record;
use crate::twin::{Batch, Change, Event, Op, TwinError};

/// What a stream's records fold into.
pub trait Fold: Default + Send + Sync + 'static {
    /// The stream (`Record::stream`) it folds.
    const STREAM: &'static str;

    /// Folds a record of the stream, in order, exactly once.
    fn apply(&mut self, event: &Event);

    /// Sees a live event of no concern to the stream (e.g. a record in no
    /// stream); not read back at startup or after lagging.
    fn observe(&mut self, _event: &Event) {}

    /// Whether events of no concern to the stream are observed (and passed
    /// on to [`Folded::changes`]); a fold of its stream alone says no, and
    /// the follower then does nothing for the rest of the log.
    const OBSERVES: bool = true;
}

/// Records read back per store call.
const PAGE: usize = 1000;

/// How long a writer waits for its committed record to be folded.
const VISIBLE_WITHIN: Duration = Duration::from_secs(30);

/// Attempts of a write whose records other servers' keep getting ahead of.
const WRITE_ATTEMPTS: usize = 20;

struct Inner<F> {
    fold: F,
    /// The last stream record applied.
    seq: u64,
}

/// A [`Fold`] over a store, kept current.
pub struct Folded<F: Fold> {
    store: Arc<dyn GraphStore>,
    state: RwLock<Inner<F>>,
    /// The highest store sequence number the follower has seen.
    seen: watch::Sender<u64>,
    writing: Mutex<()>,
    /// Every event applied or observed, after it was.
    changes: broadcast::Sender<Arc<Event>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<F: Fold> std::fmt::Debug for Folded<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Folded")
            .field("stream", &F::STREAM)
            .finish_non_exhaustive()
    }
}

/// A guard over the fold, to read.
pub struct Read<'a, F>(RwLockReadGuard<'a, Inner<F>>);

impl<F: std::fmt::Debug> std::fmt::Debug for Read<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fold.fmt(f)
    }
}

impl<F> std::ops::Deref for Read<'_, F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.0.fold
    }
}

impl<F: Fold> Folded<F> {
    /// Reads the stream back from `store` and starts following it.
    pub async fn start(store: Arc<dyn GraphStore>) -> Result<Arc<Folded<F>>, StoreError> {
        // Subscribe before reading back, so nothing falls between the two.
        let live = store.subscribe();
        let f = Folded::unstarted(store);
        f.catch_up().await?;
        let task = tokio::spawn(follow(Arc::downgrade(&f), live));
        *f.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        Ok(f)
    }

    /// The fold of nothing, following nothing (a schema that is printed,
    /// never executed).
    pub fn unstarted(store: Arc<dyn GraphStore>) -> Arc<Folded<F>> {
        Arc::new(Folded {
            store,
            state: RwLock::new(Inner {
                fold: F::default(),
                seq: 0,
            }),
            seen: watch::channel(0).0,
            writing: Mutex::new(()),
            changes: broadcast::channel(4096).0,
            task: std::sync::Mutex::new(None),
        })
    }

    /// Stops following the store.
    pub async fn stop(&self) {
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }

    pub fn store(&self) -> &Arc<dyn GraphStore> {
        &self.store
    }

    /// The fold as it stands.
    pub fn read(&self) -> Read<'_, F> {
        Read(self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Events applied or observed from now on.
    pub fn changes(&self) -> broadcast::Receiver<Arc<Event>> {
        self.changes.subscribe()
    }

    fn apply(&self, e: &Arc<Event>) {
        if !F::OBSERVES && e.change.stream() != Some(F::STREAM) {
            return;
        }
        {
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            if e.change.stream() == Some(F::STREAM) {
                if e.seq <= s.seq {
                    return;
                }
                s.fold.apply(e);
                s.seq = e.seq;
            } else {
                s.fold.observe(e);
            }
        }
        let _ = self.changes.send(e.clone());
    }

    fn saw(&self, seq: u64) {
        self.seen.send_if_modified(|s| {
            let newer = seq > *s;
            *s = (*s).max(seq);
            newer
        });
    }

    async fn catch_up(&self) -> Result<(), StoreError> {
        loop {
            let after = self.state.read().unwrap_or_else(|p| p.into_inner()).seq;
            let page = self.store.stream_events(F::STREAM, after, PAGE).await?;
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

    /// Waits until the follower has seen `seq`.
    async fn visible(&self, seq: u64) -> Result<(), StoreError> {
        let mut seen = self.seen.subscribe();
        let folded = tokio::time::timeout(VISIBLE_WITHIN, seen.wait_for(|s| *s >= seq));
        match folded.await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(StoreError::Unavailable(format!(
                "record {seq} was committed but is not visible yet"
            ))),
        }
    }

    /// Decides records against the fold (`build`) and commits them, under
    /// the write lock, provided the stream still ends where the decision was
    /// made; when another server's record got in first, reads it and decides
    /// again. Returns the committed events once they are folded.
    pub async fn write<E>(
        &self,
        actor: &str,
        mut build: impl FnMut(&F) -> Result<Vec<Record>, E>,
    ) -> Result<Vec<Event>, E>
    where
        E: From<StoreError>,
    {
        let _w = self.writing.lock().await;
        for _ in 0..WRITE_ATTEMPTS {
            let (records, basis) = {
                let s = self.state.read().unwrap_or_else(|p| p.into_inner());
                (build(&s.fold)?, s.seq)
            };
            if records.is_empty() {
                return Ok(Vec::new());
            }
            let mut ops = vec![Op::ExpectStream {
                stream: F::STREAM.to_owned(),
                seq: basis,
            }];
            ops.extend(records.into_iter().map(|r| Op::Record {
                change: Box::new(Change::Record(r)),
            }));
            match self.store.apply(Batch { ops }, actor).await {
                Ok(events) => {
                    if let Some(last) = events.last() {
                        self.visible(last.seq).await?;
                    }
                    return Ok(events);
                }
                Err(StoreError::Batch(b)) => match b.error {
                    TwinError::StreamMoved { current, .. } => self.visible(current).await?,
                    error => {
                        return Err(StoreError::Batch(crate::twin::BatchError {
                            index: b.index.saturating_sub(1),
                            error,
                        })
                        .into());
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable(format!(
            "other servers keep writing {} records first; try again",
            F::STREAM
        ))
        .into())
    }

    /// Commits records in no stream (nothing to decide against: e.g. a
    /// device connecting), without waiting for the follower.
    pub async fn note(&self, records: Vec<Record>, actor: &str) -> Result<Vec<Event>, StoreError> {
        let ops = records
            .into_iter()
            .map(|r| Op::Record {
                change: Box::new(Change::Record(r)),
            })
            .collect();
        self.store.apply(Batch { ops }, actor).await
    }
}

/// Applies the store's committed events until the store closes or the fold
/// is dropped.
async fn follow<F: Fold>(f: Weak<Folded<F>>, mut live: broadcast::Receiver<Arc<Event>>) {
    loop {
        let next = live.recv().await;
        let Some(f) = f.upgrade() else { return };
        match next {
            Ok(e) => {
                f.apply(&e);
                f.saw(e.seq);
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let last = f.store.last_seq();
                while let Err(e) = f.catch_up().await {
                    tracing::error!(stream = F::STREAM, error = %e, "cannot read the stream back; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                f.saw(last);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
