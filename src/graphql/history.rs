//! The audit trail: the global event log and one twin's history, both
//! oldest first with cursors.

use async_graphql::Error;
use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputValue, ResolverContext, TypeRef,
};
use serde_json::Value;

use super::builder::Builder;
use super::connection::{Page, PageArgs, connection, wants_page_flag, with_page_arguments};
use super::context::{store_of, time_arg};
use super::errors::{bad_request, store_error};
use super::record::record;
use super::views::event_json;
use crate::twin::Event;

pub(super) fn register(b: &mut Builder) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let event = record(
        "Event",
        "One committed change; immutable.",
        &[
            ("seq", s("Long"), "Global, gap-free sequence number."),
            ("cursor", s(TypeRef::STRING), "Cursor for `events(after:)`."),
            ("time", s("DateTime"), "When it was committed."),
            ("actor", s(TypeRef::STRING), "Who made it."),
            (
                "kind",
                s(TypeRef::STRING),
                "twinCreated, desiredPatched, relationshipCreated, ...",
            ),
            (
                "twins",
                TypeRef::named_nn_list_nn(TypeRef::ID),
                "Twins it concerns.",
            ),
            ("change", s("JSON"), "The change in full."),
        ],
    );
    let [connection, edge] = connection::<Value>(
        "EventConnection",
        "EventEdge",
        "Event",
        |_, e| Ok(FieldValue::borrowed_any(e)),
        "The event.",
        Vec::new(),
        Some((
            TypeRef::named(TypeRef::INT),
            "Events in the whole list: for `history` (a twin's trail is read whole); null for the global `events` log, which is not counted.",
        )),
    );
    b.register(event);
    b.register(connection);
    b.register(edge);
    let max_page = b.limits.max_page;
    b.query(with_page_arguments(
        Field::new("history", s("EventConnection"), move |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?;
                let args = PageArgs::read(&ctx, max_page)?;
                let (after, before) = (seq_cursor(&args.after)?, seq_cursor(&args.before)?);
                let events = store_of(&ctx)?
                    .twin_events(id, time_arg(&ctx, "from")?, time_arg(&ctx, "to")?)
                    .await
                    .map_err(|e| store_error(&e))?;
                let page = Page::of_sorted(
                    events,
                    &args,
                    |e| e.seq.to_string(),
                    |e| after.is_none_or(|a| e.seq > a),
                    |e| before.is_none_or(|b| e.seq < b),
                );
                Ok(Some(FieldValue::owned_any(page.map(|e| event_json(&e)))))
            })
        })
        .description("The audit trail of one twin (its own changes and its relationships'), oldest first; a Relay connection (cursors are sequence numbers).")
        .argument(InputValue::new("id", s(TypeRef::ID)))
        .argument(InputValue::new("from", TypeRef::named("DateTime")))
        .argument(InputValue::new("to", TypeRef::named("DateTime"))),
    ));
    b.query(with_page_arguments(
        Field::new("events", s("EventConnection"), move |ctx| {
            FieldFuture::new(async move {
                let args = PageArgs::read(&ctx, max_page)?;
                let page = log_page(&ctx, &args).await?;
                Ok(Some(FieldValue::owned_any(page.map(|e| event_json(&e)))))
            })
        })
        .description("The global event log, oldest first; a Relay connection (cursors are sequence numbers: `after: \"0\"` is the start, `last` alone the latest events).")
    ));
}

/// A page of the global log, read forward or backward from the store.
async fn log_page(ctx: &ResolverContext<'_>, args: &PageArgs) -> Result<Page<Event>, Error> {
    let store = store_of(ctx)?;
    let (after, before) = (seq_cursor(&args.after)?, seq_cursor(&args.before)?);
    let end = before.unwrap_or(u64::MAX);
    let limit = args.limit();
    let (mut events, more) = if args.backward() {
        let start = before.unwrap_or_else(|| store.last_seq().saturating_add(1));
        let mut events = store
            .events_before(start, limit + 1)
            .await
            .map_err(|e| store_error(&e))?;
        events.retain(|e| after.is_none_or(|a| e.seq > a));
        let more = events.len() > limit;
        let extra = events.len().saturating_sub(limit);
        events.drain(..extra);
        (events, more)
    } else {
        let mut events = store
            .events_after(after.unwrap_or(0), limit + 1)
            .await
            .map_err(|e| store_error(&e))?;
        events.retain(|e| e.seq < end);
        let more = events.len() > limit;
        events.truncate(limit);
        (events, more)
    };
    let from_before = match before {
        Some(b) if wants_page_flag(ctx, "hasNextPage") => !store
            .events_after(b.saturating_sub(1), 1)
            .await
            .map_err(|e| store_error(&e))?
            .is_empty(),
        _ => false,
    };
    let up_to_after = match after {
        Some(a) if a > 0 && wants_page_flag(ctx, "hasPreviousPage") => !store
            .events_before(a.saturating_add(1), 1)
            .await
            .map_err(|e| store_error(&e))?
            .is_empty(),
        _ => false,
    };
    // Both `first` and `last`: the last `last` of the first `first`.
    let mut dropped = false;
    if let (Some(_), Some(last)) = (args.first, args.last)
        && events.len() > last
    {
        events.drain(..events.len() - last);
        dropped = true;
    }
    let mut page = Page::of_store(events, more, args, up_to_after, from_before, |e| {
        e.seq.to_string()
    });
    page.has_previous |= dropped;
    Ok(page)
}

/// A sequence-number cursor.
fn seq_cursor(cursor: &Option<String>) -> Result<Option<u64>, Error> {
    cursor
        .as_deref()
        .map(|c| {
            c.parse()
                .map_err(|_| bad_request(format!("{c:?} is not an event cursor")))
        })
        .transpose()
}
