//! Subscriptions: live changes pushed over WebSocket.
//!
//! Both streams read the store's broadcast of committed events. `events`
//! is resumable: it subscribes to the broadcast first, then replays the
//! durable log after the client's sequence number page by page, then goes
//! live, skipping what it already sent, so there is no gap and no
//! duplicate; should it ever see a gap in the broadcast it re-reads the log.
//! The broadcast buffer is bounded: a subscriber that falls more than that
//! far behind gets one `SUBSCRIBER_LAGGED` error carrying the last sequence
//! it was sent (resume with `events(after:)`), and its stream ends; it never
//! grows memory and is never silently skipped.

use std::collections::VecDeque;
use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, Object, SubscriptionField, SubscriptionFieldFuture,
    TypeRef,
};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::Value;
use tokio::sync::broadcast::{Receiver, error::RecvError};

use super::builder::{Builder, HubExecution, Shutdown};
use super::context::{long_arg, store_of, str_arg, to_gql, twin_value, types_of};
use super::errors::{bad_request, store_error};
use super::record::SEQ_RENAMED;
use super::views::event_json;
use crate::metrics::{Metrics, SubscriptionGuard};
use crate::store::{At, GraphStore};
use crate::twin::{Change, Event, Twin};

/// Events read from the log per replay step.
const REPLAY_PAGE: usize = 1000;

/// One change as `twinChanged` reports it.
struct TwinChange {
    sequence: u64,
    kind: &'static str,
    twin_id: String,
    event: Arc<Event>,
    /// The state after the change, when the filter already had to look it
    /// up; otherwise resolved only if the subscriber selects `twin`.
    twin: Option<Option<Arc<Twin>>>,
}

fn change_field(
    name: &str,
    ty: TypeRef,
    doc: &str,
    f: fn(&TwinChange) -> Option<FieldValue<'static>>,
) -> Field {
    Field::new(name, ty, move |ctx| {
        FieldFuture::new(async move {
            let c = ctx.parent_value.try_downcast_ref::<TwinChange>()?;
            Ok(f(c))
        })
    })
    .description(doc)
}

/// The version a change gave its twin, when it records one.
fn version_after(change: &Change) -> Option<u64> {
    match change {
        Change::TwinCreated { .. } => Some(1),
        Change::DesiredPatched { version, .. }
        | Change::ReportedPatched { version, .. }
        | Change::ConfigurationAssigned { version, .. }
        | Change::ConfigurationRestored { version, .. } => Some(*version),
        _ => None,
    }
}

fn patch_of(change: &Change) -> Option<Value> {
    match change {
        Change::DesiredPatched { patch, .. } => Some(serde_json::json!({ "desired": patch })),
        Change::ReportedPatched { patch, .. } => Some(serde_json::json!({ "reported": patch })),
        Change::RelationshipCreated { relationship } => serde_json::to_value(relationship).ok(),
        Change::RelationshipUpdated { id, patch, .. } => {
            Some(serde_json::json!({ "relationship": id, "properties": patch }))
        }
        Change::RelationshipDeleted {
            id, name, target, ..
        } => Some(serde_json::json!({ "relationship": id, "name": name, "target": target })),
        Change::CommandInvoked {
            component,
            command,
            request,
            invocation,
            ..
        } => Some(serde_json::json!({
            "command": command, "component": component, "request": request, "invocation": invocation,
        })),
        _ => None,
    }
}

/// The error that ends a stream whose subscriber fell behind.
fn lagged(last_sent: u64) -> Error {
    super::errors::lagged(
        format!(
            "this subscription fell too far behind and was stopped; resume with events(after: {last_sent})"
        ),
        Some(last_sent),
    )
}

/// What a twin filter needs to know of the twin an event concerns.
struct Filter {
    id: Option<String>,
    model: Option<String>,
}

impl Filter {
    /// The twins of `event` this filter selects, with their state after it.
    async fn select(
        &self,
        store: &Arc<dyn GraphStore>,
        event: &Event,
    ) -> Result<Vec<(String, Option<Option<Arc<Twin>>>)>, Error> {
        let mut out = Vec::new();
        for id in event.change.twins() {
            if self.id.as_deref().is_some_and(|want| want != id) {
                continue;
            }
            let Some(model) = &self.model else {
                out.push((id.to_owned(), None));
                continue;
            };
            let twin = state_after(store, id, event).await?;
            {
                let twin_model = match (&twin, &event.change) {
                    (Some(t), _) => Some(t.model.to_string()),
                    // Gone: ask history what it was just before.
                    (None, _) => store
                        .twin_as_of(id, At::Seq(event.seq.saturating_sub(1)))
                        .await
                        .map_err(|e| store_error(&e))?
                        .map(|t| t.model.to_string()),
                };
                let models = store.models();
                let is_a = twin_model
                    .and_then(|m| models.interface(&m).map(|i| i.is_a(model)))
                    .unwrap_or(false);
                if !is_a {
                    continue;
                }
            }
            out.push((id.to_owned(), Some(twin)));
        }
        Ok(out)
    }
}

/// The twin as it was right after `event` (current state when nothing newer happened to it).
async fn state_after(
    store: &Arc<dyn GraphStore>,
    id: &str,
    event: &Event,
) -> Result<Option<Arc<Twin>>, Error> {
    if matches!(event.change, Change::TwinDeleted { .. }) {
        return Ok(None);
    }
    let now = store.twin(id).await.map_err(|e| store_error(&e))?;
    let current = match (&now, version_after(&event.change)) {
        (Some(t), Some(v)) => t.version == v,
        // Relationship changes do not move the twin's version: current state
        // is right unless the twin changed since.
        (Some(t), None) => t.updated_at <= event.time,
        (None, _) => false,
    };
    if current {
        return Ok(now);
    }
    store
        .twin_as_of(id, At::Seq(event.seq))
        .await
        .map(|t| t.map(Arc::new))
        .map_err(|e| store_error(&e))
}

/// State of a resumable event stream.
struct Replay {
    store: Arc<dyn GraphStore>,
    rx: Receiver<Arc<Event>>,
    /// Last sequence number read (sent or filtered out).
    last: u64,
    backlog: VecDeque<Event>,
    caught_up: bool,
    /// No log page was read since `rx` was last renewed.
    fresh_rx: bool,
    kinds: Option<Vec<String>>,
    done: bool,
    _counted: Option<SubscriptionGuard>,
}

impl Replay {
    /// The next event to deliver, in order, exactly once.
    async fn next(&mut self) -> Option<Result<Event, Error>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(e) = self.backlog.pop_front() {
                self.last = e.seq;
                let wanted = self
                    .kinds
                    .as_ref()
                    .is_none_or(|k| k.iter().any(|k| k == e.change.kind()));
                if wanted && self.store.visible(&e).await {
                    return Some(Ok(e));
                }
                continue;
            }
            if !self.caught_up {
                match self.store.events_after(self.last, REPLAY_PAGE).await {
                    // The receiver may have overflowed while the log was
                    // replayed (that is no lag: the log had it all). Renew it,
                    // then read the log once more: events are logged before
                    // they are broadcast, so nothing falls between the two.
                    Ok(page) if page.is_empty() && !self.fresh_rx => {
                        self.rx = self.rx.resubscribe();
                        self.fresh_rx = true;
                    }
                    Ok(page) if page.is_empty() => self.caught_up = true,
                    Ok(page) => {
                        self.fresh_rx = false;
                        self.backlog.extend(page);
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(store_error(&e)));
                    }
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(e) if e.seq <= self.last => {}
                Ok(e) if e.seq == self.last + 1 => self.backlog.push_back((*e).clone()),
                // A gap cannot happen while subscribed, but if it did the
                // log has what was missed.
                Ok(_) => self.caught_up = false,
                Err(RecvError::Lagged(_)) => {
                    self.done = true;
                    return Some(Err(lagged(self.last)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn events_stream<'a>(
    store: Arc<dyn GraphStore>,
    after: u64,
    kinds: Option<Vec<String>>,
    counted: Option<SubscriptionGuard>,
) -> impl Stream<Item = Result<FieldValue<'a>, Error>> + Send + 'a {
    let replay = Replay {
        rx: store.subscribe(),
        store,
        last: after,
        backlog: VecDeque::new(),
        caught_up: false,
        fresh_rx: true,
        kinds,
        done: false,
        _counted: counted,
    };
    stream::unfold(replay, |mut r| async move {
        let item = r.next().await?;
        Some((item.map(|e| FieldValue::owned_any(event_json(&e))), r))
    })
}

/// State of a `twinChanged` stream.
struct Watch {
    store: Arc<dyn GraphStore>,
    rx: Receiver<Arc<Event>>,
    filter: Filter,
    last: u64,
    pending: VecDeque<TwinChange>,
    done: bool,
    _counted: Option<SubscriptionGuard>,
}

impl Watch {
    async fn next(&mut self) -> Option<Result<TwinChange, Error>> {
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Some(Ok(c));
            }
            if self.done {
                return None;
            }
            let event = match self.rx.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) => {
                    self.done = true;
                    return Some(Err(lagged(self.last)));
                }
                Err(RecvError::Closed) => return None,
            };
            self.last = event.seq;
            if !self.store.visible(&event).await {
                continue;
            }
            let selected = match self.filter.select(&self.store, &event).await {
                Ok(s) => s,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            let kind = event.change.kind();
            for (twin_id, twin) in selected {
                self.pending.push_back(TwinChange {
                    sequence: event.seq,
                    kind,
                    twin_id,
                    event: event.clone(),
                    twin,
                });
            }
        }
    }
}

/// The metrics guard of a subscription; none for a shared subscription's
/// own execution (its subscribers are counted one by one).
fn counted(
    ctx: &async_graphql::dynamic::ResolverContext<'_>,
) -> Result<Option<SubscriptionGuard>, Error> {
    if ctx.data_opt::<HubExecution>().is_some() {
        return Ok(None);
    }
    Ok(Some(ctx.data::<Arc<Metrics>>()?.subscription()))
}

pub(super) fn register(b: &mut Builder) {
    let nn = |n: &str| TypeRef::named_nn(n.to_owned());
    let change = Object::new("TwinChange")
        .description("A change to a twin, pushed live.")
        .field(change_field("seq", nn("Long"), "Sequence number of the event (as `Event.seq`).", |c| {
            Some(FieldValue::value(c.sequence))
        }))
        .field(
            change_field("sequence", nn("Long"), "Sequence number of the event.", |c| {
                Some(FieldValue::value(c.sequence))
            })
            .deprecation(Some(SEQ_RENAMED)),
        )
        .field(change_field(
            "kind",
            nn(TypeRef::STRING),
            "twinCreated, twinDeleted, desiredPatched, reportedPatched, relationshipCreated, relationshipUpdated, relationshipDeleted, commandInvoked.",
            |c| Some(FieldValue::value(c.kind)),
        ))
        .field(change_field("twinId", nn(TypeRef::ID), "The twin concerned.", |c| {
            Some(FieldValue::value(c.twin_id.clone()))
        }))
        .field(change_field(
            "patch",
            TypeRef::named("JSON"),
            "What changed: `{desired: patch}`, `{reported: patch}`, or the relationship change.",
            |c| patch_of(&c.event.change).and_then(|p| to_gql(p).ok()).map(FieldValue::value),
        ))
        .field(
            Field::new("twin", TypeRef::named("Twin"), |ctx| {
                FieldFuture::new(async move {
                    let c = ctx.parent_value.try_downcast_ref::<TwinChange>()?;
                    let twin = match &c.twin {
                        Some(t) => t.clone(),
                        None => state_after(store_of(&ctx)?, &c.twin_id, &c.event).await?,
                    };
                    let types = types_of(&ctx)?;
                    Ok(twin.map(|t| twin_value(types, t)))
                })
            })
            .description("The twin right after the change; null after a delete."),
        );

    let twin_changed = SubscriptionField::new("twinChanged", nn("TwinChange"), |ctx| {
        SubscriptionFieldFuture::new(async move {
            let store = store_of(&ctx)?.clone();
            let filter = Filter {
                id: str_arg(&ctx, "id")?,
                model: str_arg(&ctx, "model")?,
            };
            if let Some(m) = &filter.model
                && store.models().interface(m).is_none()
            {
                return Err(store_error(
                    &crate::twin::TwinError::UnknownModel(m.clone()).into(),
                ));
            }
            let watcher = Watch {
                rx: store.subscribe(),
                last: store.last_seq(),
                store,
                filter,
                pending: VecDeque::new(),
                done: false,
                _counted: counted(&ctx)?,
            };
            let closing = ctx.data::<Shutdown>()?.clone().triggered();
            Ok(stream::unfold(watcher, |mut w| async move {
                let item = w.next().await?;
                Some((item.map(FieldValue::owned_any), w))
            })
            .take_until(Box::pin(closing)))
        })
    })
    .description("Live changes to one twin (`id`), to twins of a model and its subtypes (`model`), or to all twins.")
    .argument(InputValue::new("id", TypeRef::named(TypeRef::ID)))
    .argument(InputValue::new("model", TypeRef::named(TypeRef::STRING)));

    let events = SubscriptionField::new("events", nn("Event"), |ctx| {
        SubscriptionFieldFuture::new(async move {
            let store = store_of(&ctx)?.clone();
            let after = long_arg(&ctx, "after")?.unwrap_or_else(|| store.last_seq());
            let kinds = match ctx.args.get("kinds") {
                Some(l) if !l.is_null() => Some(
                    l.list()?
                        .iter()
                        .map(|k| k.string().map(str::to_owned))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                _ => None,
            };
            if after > store.last_seq() {
                return Err(bad_request(format!(
                    "after: {after} is beyond the last event ({})",
                    store.last_seq()
                )));
            }
            let closing = ctx.data::<Shutdown>()?.clone().triggered();
            let counted = counted(&ctx)?;
            Ok(events_stream(store, after, kinds, counted).take_until(Box::pin(closing)))
        })
    })
    .description("Every committed event, live. With `after`, first replays the events after that sequence number, then continues live: no gap, no duplicate. Without it, starts now.")
    .argument(InputValue::new("after", TypeRef::named("Long")))
    .argument(InputValue::new("kinds", TypeRef::named_nn_list(TypeRef::STRING)));

    b.register(change);
    b.subscription(twin_changed);
    b.subscription(events);
}
