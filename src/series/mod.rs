//! Time series (trends): every numeric reported value of every twin
//! (telemetry and reported properties, a Component's as
//! `component.field`), kept per twin and field at its source time.
//!
//! Series are derived from the event log, never written beside it: a
//! follower ([`Series::follow`]) reads the log after the last event it
//! folded, keeps the newest points in memory (the head) and writes them,
//! every `flush_every`, into compressed blocks of one bucket of time
//! ([`block`]) together with that event's sequence number (the mark), in
//! one transaction. A restart or a crash loses nothing: the follower reads
//! the log again from the mark. Queries read the blocks and the head.
//! Writers never wait for series.
//!
//! Layout:
//! - [`block`]: the compressed block of one series and bucket (pco).
//! - [`window`]: downsampling a range into buckets of a step.
//! - [`backend`]: where blocks live (a redb file beside the embedded
//!   store's, or memory for the volatile store).

pub mod backend;
pub mod block;
pub mod rollup;
pub mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use backend::Backend;
pub use window::{Aggregate, MAX_POINTS, Window};

use crate::codes::Code;
use crate::store::{GraphStore, StoreError};
use crate::twin::{Change, Event, Micros, Side};

/// One value of a series at its time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time: Micros,
    pub value: f64,
}

/// Why a series operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SeriesError {
    #[error("cannot compress a block: {0}")]
    Codec(String),
    #[error("a stored block is damaged: {0}")]
    Corrupt(String),
    #[error("a block of {0} points or bytes is too large")]
    TooLarge(usize),
    #[error("{0}")]
    Window(String),
    #[error("series storage failed: {0}")]
    Storage(String),
    #[error("{0}")]
    Field(String),
}

impl SeriesError {
    /// The stable code a client sees.
    pub fn code(&self) -> Code {
        match self {
            SeriesError::Window(_) | SeriesError::Field(_) => Code::InvalidArgument,
            _ => Code::StorageFailure,
        }
    }
}

/// How series are kept (see [`crate::config`]'s `series.*` settings).
#[derive(Debug, Clone)]
pub struct SeriesConfig {
    /// The time one block covers.
    pub bucket: Duration,
    /// How often the head is written into blocks (and so how much of the
    /// log a restart reads again, at most).
    pub flush_every: Duration,
    /// The head is written early when it holds this many points.
    pub max_head_points: usize,
    /// Blocks older than this (by their bucket's end, against the newest
    /// point seen) are removed; `None`: kept forever.
    pub retention: Option<Duration>,
    /// The same, of the minute roll-ups and of the hour roll-ups.
    pub minute_retention: Option<Duration>,
    pub hour_retention: Option<Duration>,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        SeriesConfig {
            bucket: Duration::from_secs(3600),
            flush_every: Duration::from_secs(10),
            max_head_points: 2_000_000,
            retention: None,
            minute_retention: None,
            hour_retention: None,
        }
    }
}

/// Commits the store's feed holds for the follower; one further behind
/// misses commits and reads them from the log.
const FEED_COMMITS: usize = 1024;

/// How often the log of a store without a feed is read.
const LOG_POLL: Duration = Duration::from_millis(200);

/// Points per twin, then per field (looked up by `&str`: folding a point
/// of a known series allocates nothing).
pub type Points = HashMap<Arc<str>, HashMap<Arc<str>, Vec<Point>>>;

#[derive(Debug, Default)]
struct Head {
    /// Points not yet in blocks, per series, in the order events gave them.
    points: Points,
    /// Points being written (still answered from here until they are).
    flushing: Points,
    len: usize,
    /// The last event folded into the head.
    seq: u64,
    /// The newest point's time (retention counts back from it).
    newest: Micros,
    /// The mark last written with blocks.
    written: u64,
    /// Blocks before these buckets are gone: raw, minute and hour roll-ups.
    pruned: [Micros; 3],
}

/// The series of a store: its blocks and its head.
#[derive(Debug)]
pub struct Series {
    backend: Backend,
    head: Mutex<Head>,
    config: SeriesConfig,
    /// Serializes flushes (the follower's and a final one on shutdown).
    flush: tokio::sync::Mutex<()>,
    /// Events read back from the log (at start, or after falling behind
    /// the live channel), for logs and the benchmark.
    from_log: std::sync::atomic::AtomicU64,
}

/// The points of one series in `points`.
fn series_in<'a>(points: &'a Points, twin: &str, field: &str) -> Option<&'a Vec<Point>> {
    points.get(twin).and_then(|f| f.get(field))
}

/// The field a reported entry sets (`component.name` for a Component's).
fn field_of<'a>(component: Option<&str>, name: &'a str) -> std::borrow::Cow<'a, str> {
    match component {
        Some(c) => format!("{c}.{name}").into(),
        None => name.into(),
    }
}

/// The numeric reported values an event sets, as (twin, field, point).
pub fn points_of(e: &Event) -> Vec<(&str, std::borrow::Cow<'_, str>, Point)> {
    let (twin, entries) = match &e.change {
        Change::ReportedPatched { twin, entries, .. }
        | Change::TwinCreated { twin, entries, .. } => (twin.as_str(), entries),
        _ => return Vec::new(),
    };
    entries
        .iter()
        .filter(|en| en.side == Side::Reported)
        .filter_map(|en| {
            let value = en.value.as_ref()?.as_f64()?;
            Some((
                twin,
                field_of(en.component.as_deref(), &en.name),
                Point {
                    time: en.source_time.unwrap_or(e.time),
                    value,
                },
            ))
        })
        .collect()
}

impl Head {
    /// Adds the points of `e`, the event after the last folded.
    fn fold(&mut self, e: &Event) {
        for (twin, field, p) in points_of(e) {
            self.newest = self.newest.max(p.time);
            if !self.points.contains_key(twin) {
                self.points.insert(Arc::from(twin), HashMap::new());
            }
            let fields = self.points.get_mut(twin).expect("just inserted");
            match fields.get_mut(&*field) {
                Some(v) => v.push(p),
                None => {
                    fields.insert(Arc::from(&*field), vec![p]);
                }
            }
            self.len += 1;
        }
        self.seq = e.seq;
    }
}

impl Head {
    /// Points taken for a flush that did not store them: back into the
    /// head, before anything newer.
    fn restore(&mut self, flushing: Points) {
        for (twin, fields) in flushing {
            let into = self.points.entry(twin).or_default();
            let mut added = 0;
            for (field, mut v) in fields {
                added += v.len();
                v.extend(into.remove(&field).unwrap_or_default());
                into.insert(field, v);
            }
            self.len += added;
        }
    }
}

impl Series {
    /// The series of a local backend (file or memory).
    pub fn new(backend: Backend, config: SeriesConfig) -> Result<Series, SeriesError> {
        let seq = backend.mark()?;
        Ok(Series::at(backend, config, seq))
    }

    /// The series of any backend (the Neo4j store's mark is read from it).
    pub async fn open(backend: Backend, config: SeriesConfig) -> Result<Series, SeriesError> {
        let seq = backend.stored_mark().await?;
        Ok(Series::at(backend, config, seq))
    }

    fn at(backend: Backend, config: SeriesConfig, seq: u64) -> Series {
        Series {
            backend,
            head: Mutex::new(Head {
                seq,
                written: seq,
                pruned: [Micros::MIN; 3],
                ..Head::default()
            }),
            config,
            flush: tokio::sync::Mutex::new(()),
            from_log: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Head> {
        // The head is only changed whole per event: a poisoned lock holds
        // a consistent value.
        self.head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bucket(&self) -> Micros {
        i64::try_from(self.config.bucket.as_micros())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// Events the follower read back from the log (not live).
    pub fn read_from_log(&self) -> u64 {
        self.from_log.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stored blocks and their bytes.
    pub fn size(&self) -> Result<(usize, usize), SeriesError> {
        self.backend.size()
    }

    /// The last event folded (into blocks or the head).
    pub fn seq(&self) -> u64 {
        self.lock().seq
    }

    /// Folds `events` (the log's next ones, in order) into the head.
    pub fn fold(&self, events: &[Event]) {
        let mut head = self.lock();
        for e in events {
            if e.seq > head.seq {
                head.fold(e);
            }
        }
    }

    /// Folds live events (in order, maybe overlapping what is folded);
    /// false at a gap (events were missed: the log has them), folding
    /// nothing from there on.
    fn fold_live(&self, events: &[Arc<Event>]) -> bool {
        let mut head = self.lock();
        for e in events {
            if e.seq <= head.seq {
                continue;
            }
            if e.seq != head.seq + 1 {
                return false;
            }
            head.fold(e);
        }
        true
    }

    /// Writes the head into blocks, with the mark of the last event folded.
    pub async fn flush(&self) -> Result<(), SeriesError> {
        let _one = self.flush.lock().await;
        let bucket = self.bucket();
        let (taken, seq, prune, cut) = {
            let mut head = self.lock();
            if head.points.is_empty() && head.seq <= head.written {
                return Ok(());
            }
            let taken = std::mem::take(&mut head.points);
            head.flushing = taken.clone();
            head.len = 0;
            // Retention per tier: whole buckets, the scan only when one more
            // is due.
            let cut = |r: Option<Duration>| {
                r.map(|r| {
                    let keep = i64::try_from(r.as_micros()).unwrap_or(i64::MAX);
                    block::bucket_of(head.newest.saturating_sub(keep), bucket)
                })
            };
            let cuts = [
                cut(self.config.retention),
                cut(self.config.minute_retention),
                cut(self.config.hour_retention),
            ];
            let due = cuts
                .iter()
                .zip(head.pruned)
                .any(|(c, done)| c.is_some_and(|c| c > done));
            let prune = due.then_some(backend::Prune {
                raw: cuts[0],
                minute: cuts[1],
                hour: cuts[2],
            });
            // Raw blocks before this are (or are now being) removed.
            let cut = prune
                .and_then(|p| p.raw)
                .map_or(head.pruned[0], |c| c.max(head.pruned[0]));
            (taken, head.seq, prune, cut)
        };
        let written = self
            .backend
            .write_points(taken, bucket, seq, prune, cut)
            .await;
        let mut head = self.lock();
        match written {
            // Another server stored them (its mark is past them): dropped.
            Ok(backend::Written::ByAnother(stored)) if stored >= seq => {
                head.flushing.clear();
                head.written = seq;
                Ok(())
            }
            // Another server writes, and has yet to store them: kept.
            Ok(backend::Written::ByAnother(_)) => {
                let flushing = std::mem::take(&mut head.flushing);
                head.restore(flushing);
                Ok(())
            }
            Ok(backend::Written::Stored) => {
                head.flushing.clear();
                head.written = seq;
                if let Some(p) = prune {
                    for (done, cut) in head.pruned.iter_mut().zip([p.raw, p.minute, p.hour]) {
                        if let Some(c) = cut {
                            *done = c;
                        }
                    }
                }
                Ok(())
            }
            Err(e) => {
                let flushing = std::mem::take(&mut head.flushing);
                head.restore(flushing);
                Err(e)
            }
        }
    }

    /// Where raw blocks end, going back: the last cut, or (before this
    /// process made one) the retention counted back from now.
    fn raw_cutoff(&self) -> Option<Micros> {
        let r = self.config.retention?;
        let keep = i64::try_from(r.as_micros()).unwrap_or(i64::MAX);
        let now = block::bucket_of(
            crate::twin::now_micros().saturating_sub(keep),
            self.bucket(),
        );
        Some(self.lock().pruned[0].max(now))
    }

    /// The points of `twin`'s `field` in `window`, downsampled as it asks.
    /// With a `step` that is a multiple of a minute, buckets before the
    /// raw blocks' retention come from the minute or hour roll-ups (other
    /// steps are answered from what raw blocks are left).
    pub async fn points(
        &self,
        twin: &str,
        field: &str,
        window: Window,
    ) -> Result<Vec<Point>, SeriesError> {
        window.check()?;
        if let (Some(step), Some(cut)) = (window.step, self.raw_cutoff())
            && window.from < cut
            && step % rollup::MINUTE.step == 0
        {
            let b = block::bucket_of(cut, step);
            let split = if b < cut { b.saturating_add(step) } else { b }.min(window.to);
            let mut out = self
                .rolled(
                    twin,
                    field,
                    Window {
                        to: split,
                        ..window
                    },
                    step,
                )
                .await?;
            if split < window.to {
                out.extend(
                    self.raw_points(
                        twin,
                        field,
                        Window {
                            from: split,
                            ..window
                        },
                    )
                    .await?,
                );
            }
            return Ok(out);
        }
        self.raw_points(twin, field, window).await
    }

    /// The buckets of `window` from the finest roll-up tier whose step
    /// divides `step` (none: no buckets).
    async fn rolled(
        &self,
        twin: &str,
        field: &str,
        window: Window,
        step: Micros,
    ) -> Result<Vec<Point>, SeriesError> {
        let Some(tier) = rollup::TIERS.into_iter().find(|t| step % t.step == 0) else {
            return Ok(Vec::new());
        };
        let bucket = self.bucket();
        let (first, last) = (
            block::bucket_of(window.from, bucket),
            block::bucket_of(window.to - 1, bucket),
        );
        let mut stats: [Vec<Point>; 6] = Default::default();
        for (s, stat) in stats.iter_mut().zip(rollup::STATS) {
            *s = self
                .backend
                .read_points(twin, &rollup::field_of(field, tier, stat), first, last)
                .await?
                .into_iter()
                .filter(|p| p.time >= window.from && p.time < window.to)
                .collect();
        }
        Ok(rollup::apply(&stats, step, window.aggregate))
    }

    /// The raw points of `twin`'s `field` in `window`, downsampled as it
    /// asks.
    async fn raw_points(
        &self,
        twin: &str,
        field: &str,
        window: Window,
    ) -> Result<Vec<Point>, SeriesError> {
        let bucket = self.bucket();
        let (first, last) = (
            block::bucket_of(window.from, bucket),
            block::bucket_of(window.to - 1, bucket),
        );
        let stored = self.backend.read_points(twin, field, first, last).await?;
        let within = |p: &Point| p.time >= window.from && p.time < window.to;
        let mut points: Vec<Point> = stored.into_iter().filter(within).collect();
        let mut recent: Vec<Point> = {
            let head = self.lock();
            series_in(&head.flushing, twin, field)
                .into_iter()
                .chain(series_in(&head.points, twin, field))
                .flatten()
                .copied()
                .filter(within)
                .collect()
        };
        if !recent.is_empty() {
            // Later reports of the same time win: a stable sort keeps them after.
            recent.sort_by_key(|p| p.time);
            let mut newest: Vec<Point> = Vec::with_capacity(recent.len());
            for p in recent {
                match newest.last_mut() {
                    Some(l) if l.time == p.time => *l = p,
                    _ => newest.push(p),
                }
            }
            points = block::merge(points, &newest);
        }
        window.apply(&points)
    }

    /// Follows `store`'s log until `shutdown`: folds new events as they
    /// commit, writes the head every `flush_every` (or when it is full),
    /// and once more at the end.
    pub async fn follow(
        self: Arc<Self>,
        store: Arc<dyn GraphStore>,
        shutdown: impl Future<Output = ()>,
    ) {
        // Fed before reading the log: nothing committed from here on is
        // missed (what both give is folded once, by sequence).
        let mut feed = store.feed(FEED_COMMITS);
        let mut last_flush = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        // Whether the head is behind the live events (at start, after
        // falling behind the channel): the log is read until it is not.
        let mut behind = true;
        'follow: loop {
            if behind {
                match store.events_after(self.seq(), 4096).await {
                    Ok(events) if !events.is_empty() => {
                        self.from_log
                            .fetch_add(events.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        self.fold(&events);
                    }
                    Ok(_) => behind = false,
                    Err(StoreError::Closed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "series: reading the log failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = &mut shutdown => break 'follow,
                        }
                    }
                }
            } else {
                let due = last_flush + self.config.flush_every;
                match &mut feed {
                    // Each commit's events as the store hands them over:
                    // no read of the log, no decoding.
                    Some(feed) => tokio::select! {
                        commit = feed.recv() => match commit {
                            Some(events) => {
                                let mut whole = self.fold_live(&events);
                                while whole {
                                    match feed.try_recv() {
                                        Ok(more) => whole = self.fold_live(&more),
                                        Err(_) => break,
                                    }
                                }
                                behind = !whole;
                            }
                            None => break,
                        },
                        () = tokio::time::sleep_until(due) => {}
                        () = &mut shutdown => break,
                    },
                    // A store without a feed: its log, now and then.
                    None => tokio::select! {
                        () = tokio::time::sleep(LOG_POLL) => behind = true,
                        () = tokio::time::sleep_until(due) => {}
                        () = &mut shutdown => break,
                    },
                }
            }
            let full = self.lock().len >= self.config.max_head_points;
            if full || last_flush.elapsed() >= self.config.flush_every {
                self.flush_logged().await;
                last_flush = tokio::time::Instant::now();
            }
        }
        self.flush_logged().await;
        // Stopping: another server (or this one, restarted) may write at
        // once instead of waiting out the lease.
        self.backend.release().await;
    }

    async fn flush_logged(&self) {
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "series: writing blocks failed; the points stay in memory and are written again");
        }
    }
}

/// Checks that `field` of a twin of `model` is a numeric Telemetry or
/// Property (`component.field` for a Component's), so a misspelt field is
/// an error, not an empty chart.
pub fn check_field(
    models: &crate::dtdl::ModelSet,
    model: &str,
    field: &str,
) -> Result<(), SeriesError> {
    use crate::dtdl::model::{ContentKind, Schema};
    let unknown = || {
        SeriesError::Field(format!(
            "{model} has no numeric telemetry or property `{field}`"
        ))
    };
    let iface = models.interface(model).ok_or_else(unknown)?;
    let (iface, name) = match field.split_once('.') {
        Some((component, name)) => match iface.content(component).map(|c| &c.kind) {
            Some(ContentKind::Component { schema }) => {
                (models.interface(schema).ok_or_else(unknown)?, name)
            }
            _ => return Err(unknown()),
        },
        None => (iface, field),
    };
    match iface.content(name).map(|c| &c.kind) {
        Some(
            ContentKind::Telemetry {
                schema: Schema::Primitive { primitive },
            }
            | ContentKind::Property {
                schema: Schema::Primitive { primitive },
                ..
            },
        ) if primitive.is_numeric() => Ok(()),
        _ => Err(unknown()),
    }
}
