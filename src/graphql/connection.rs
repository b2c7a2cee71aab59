//! Pages of lists as connections: `PageInfo`, and connections of JSON
//! records (`nodes`, `pageInfo`).

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, Object, TypeRef};
use serde_json::Value;

use super::record::records;
use super::views::{event_json, relationship_json};
use crate::twin::{Event, Relationship};

/// What a `PageInfo` shows.
#[derive(Debug, Clone)]
pub(super) struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// The `PageInfo` type.
pub(super) fn page_info_type() -> Object {
    Object::new("PageInfo")
        .field(Field::new(
            "hasNextPage",
            TypeRef::named_nn(TypeRef::BOOLEAN),
            |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<PageInfo>()?;
                    Ok(Some(FieldValue::value(p.has_next_page)))
                })
            },
        ))
        .field(Field::new(
            "endCursor",
            TypeRef::named(TypeRef::STRING),
            |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<PageInfo>()?;
                    Ok(p.end_cursor.clone().map(FieldValue::value))
                })
            },
        ))
}

/// A page of JSON records, as a record connection sees it.
pub(super) struct RecordPage {
    pub nodes: Vec<Value>,
    pub page: PageInfo,
}

/// A connection over JSON records: `nodes` and `pageInfo`.
pub(super) fn record_connection(name: &str, node: &str) -> Object {
    Object::new(name)
        .field(Field::new(
            "nodes",
            TypeRef::named_nn_list_nn(node.to_owned()),
            |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<RecordPage>()?;
                    Ok(Some(records(p.nodes.iter().cloned())))
                })
            },
        ))
        .field(Field::new(
            "pageInfo",
            TypeRef::named_nn("PageInfo"),
            |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<RecordPage>()?;
                    Ok(Some(FieldValue::owned_any(p.page.clone())))
                })
            },
        ))
}

fn rel_cursor(r: &Relationship) -> String {
    format!("{}\n{}", r.source, r.id)
}

/// The first `first` of `rels` (ordered by source and id, after the
/// cursor) as a `RelationshipConnection` value.
pub(super) fn relationship_page(mut rels: Vec<Relationship>, first: usize) -> FieldValue<'static> {
    let has_next_page = rels.len() > first;
    rels.truncate(first);
    let page = PageInfo {
        has_next_page,
        end_cursor: rels.last().map(rel_cursor),
    };
    FieldValue::owned_any(RecordPage {
        nodes: rels.iter().map(relationship_json).collect(),
        page,
    })
}

/// A page of events as an `EventConnection` value.
pub(super) fn event_page(mut events: Vec<Event>, first: usize) -> FieldValue<'static> {
    let has_next_page = events.len() > first;
    events.truncate(first);
    let page = PageInfo {
        has_next_page,
        end_cursor: events.last().map(|e| e.seq.to_string()),
    };
    FieldValue::owned_any(RecordPage {
        nodes: events.iter().map(event_json).collect(),
        page,
    })
}
