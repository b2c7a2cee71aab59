//! The audit trail: the global event log and one twin's history, both
//! oldest first with cursors.

use async_graphql::Error;
use async_graphql::dynamic::{Field, FieldFuture, InputValue, ResolverContext, TypeRef};

use super::builder::Builder;
use super::connection::{event_page, record_connection};
use super::context::{long_arg, store_of, str_arg, time_arg, usize_arg};
use super::errors::{bad_request, store_error};
use super::record::record;
use crate::twin::Event;

fn cursor_arg(ctx: &ResolverContext<'_>) -> Result<u64, Error> {
    match str_arg(ctx, "after")? {
        None => Ok(0),
        Some(s) => s
            .parse()
            .map_err(|_| bad_request(format!("after: {s:?} is not an event cursor"))),
    }
}

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
    b.register(event);
    b.register(record_connection("EventConnection", "Event"));
    let max_page = b.limits.max_page;
    b.query(
        Field::new("history", s("EventConnection"), move |ctx| {
            FieldFuture::new(async move {
                let id = ctx.args.try_get("id")?.string()?;
                let first = usize_arg(&ctx, "first", 100, max_page)?;
                let after = cursor_arg(&ctx)?;
                let events = store_of(&ctx)?
                    .twin_events(id, time_arg(&ctx, "from")?, time_arg(&ctx, "to")?)
                    .await
                    .map_err(|e| store_error(&e))?;
                let page: Vec<Event> = events
                    .into_iter()
                    .filter(|e| e.seq > after)
                    .take(first + 1)
                    .collect();
                Ok(Some(event_page(page, first)))
            })
        })
        .description(
            "The audit trail of one twin (its own changes and its relationships'), oldest first.",
        )
        .argument(InputValue::new("id", s(TypeRef::ID)))
        .argument(InputValue::new("from", TypeRef::named("DateTime")))
        .argument(InputValue::new("to", TypeRef::named("DateTime")))
        .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
        .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING))),
    );
    b.query(
        Field::new("events", s("EventConnection"), move |ctx| {
            FieldFuture::new(async move {
                let first = usize_arg(&ctx, "first", 100, max_page)?;
                let after = long_arg(&ctx, "after")?.unwrap_or(0);
                let events = store_of(&ctx)?
                    .events_after(after, first + 1)
                    .await
                    .map_err(|e| store_error(&e))?;
                Ok(Some(event_page(events, first)))
            })
        })
        .description("The global event log, oldest first, after a sequence number.")
        .argument(InputValue::new("after", TypeRef::named("Long")))
        .argument(InputValue::new("first", TypeRef::named(TypeRef::INT))),
    );
}
