//! Relay cursor connections, built once for every list: `edges { cursor
//! node }`, `nodes`, `pageInfo { hasNextPage hasPreviousPage startCursor
//! endCursor }`, forward (`first`, `after`) and backward (`last`,
//! `before`) pagination, and `totalCount` where a list is at hand whole.
//!
//! A resolver reads the arguments with [`PageArgs::read`] and answers a
//! [`Page`]: from a sorted list in memory with [`Page::of_sorted`], or from
//! a store page it asked for itself. [`connection`] declares the types.

use std::any::Any;
use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{Field, FieldValue, InputValue, Object, ResolverContext, TypeRef};

use super::context::{ready, str_arg, usize_arg};
use super::errors::{bad_request, store_error};
use super::views::relationship_json;
use crate::store::{AggregateQuery, At, GraphStore, TwinQuery};
use crate::twin::filter::Filter;
use crate::twin::order::{Position, SortKey};
use crate::twin::{Relationship, Twin};

/// Items a page holds when the client asks for no number.
pub(super) const DEFAULT_PAGE: usize = 100;

/// The pagination arguments of a connection field.
#[derive(Debug, Clone, Default)]
pub(super) struct PageArgs {
    pub first: Option<usize>,
    pub after: Option<String>,
    pub last: Option<usize>,
    pub before: Option<String>,
}

impl PageArgs {
    /// The arguments of this field, each count at most `max_page`; without
    /// `first` and `last`, the first [`DEFAULT_PAGE`].
    pub fn read(ctx: &ResolverContext<'_>, max_page: usize) -> Result<PageArgs, Error> {
        let count = |name: &str| -> Result<Option<usize>, Error> {
            match ctx.args.get(name) {
                Some(v) if !v.is_null() => usize_arg(ctx, name, 0, max_page).map(Some),
                _ => Ok(None),
            }
        };
        let (first, last) = (count("first")?, count("last")?);
        Ok(PageArgs {
            first: first.or(if last.is_none() {
                Some(DEFAULT_PAGE.min(max_page))
            } else {
                None
            }),
            after: str_arg(ctx, "after")?,
            last,
            before: str_arg(ctx, "before")?,
        })
    }

    /// Whether the page is read from the end (`last` without `first`).
    pub fn backward(&self) -> bool {
        self.first.is_none() && self.last.is_some()
    }

    /// How many items to read in the direction of travel.
    pub fn limit(&self) -> usize {
        if self.backward() {
            self.last.unwrap_or(DEFAULT_PAGE)
        } else {
            self.first.unwrap_or(DEFAULT_PAGE)
        }
    }
}

/// The pagination arguments: name, type, description.
pub(super) fn page_arguments() -> [(&'static str, TypeRef, &'static str); 4] {
    [
        (
            "first",
            TypeRef::named(TypeRef::INT),
            "The first this many (default 100 unless `last` is given).",
        ),
        (
            "after",
            TypeRef::named(TypeRef::STRING),
            "Only items after this cursor.",
        ),
        (
            "last",
            TypeRef::named(TypeRef::INT),
            "The last this many (of the first `first`, when both are given).",
        ),
        (
            "before",
            TypeRef::named(TypeRef::STRING),
            "Only items before this cursor.",
        ),
    ]
}

/// `first`, `after`, `last` and `before` on a connection field.
pub(super) fn with_page_arguments(field: Field) -> Field {
    page_arguments()
        .into_iter()
        .fold(field, |f, (name, ty, doc)| {
            f.argument(InputValue::new(name, ty).description(doc))
        })
}

/// One page of a connection: its items with their cursors, in order.
#[derive(Debug)]
pub(super) struct Page<T> {
    pub edges: Vec<(String, T)>,
    pub has_next: bool,
    pub has_previous: bool,
    /// Items of the whole list, when known without reading them all.
    pub total: Option<usize>,
}

impl<T> Page<T> {
    /// The same page with every item turned into another.
    pub fn map<U>(self, f: impl Fn(T) -> U) -> Page<U> {
        Page {
            edges: self.edges.into_iter().map(|(c, t)| (c, f(t))).collect(),
            has_next: self.has_next,
            has_previous: self.has_previous,
            total: self.total,
        }
    }

    /// The page `args` ask for of `items`, which are sorted; `after_cursor`
    /// and `before_cursor` say whether an item comes after or before the
    /// client's cursors (as decoded by the caller); `cursor` encodes one.
    /// Exact in every flag: the whole list is at hand.
    pub fn of_sorted(
        items: Vec<T>,
        args: &PageArgs,
        cursor: impl Fn(&T) -> String,
        after_cursor: impl Fn(&T) -> bool,
        before_cursor: impl Fn(&T) -> bool,
    ) -> Page<T> {
        let total = items.len();
        let mut before_after = false;
        let mut after_before = false;
        let mut kept: Vec<T> = Vec::with_capacity(items.len().min(args.limit() + 1));
        for item in items {
            if args.after.is_some() && !after_cursor(&item) {
                before_after = true;
            } else if args.before.is_some() && !before_cursor(&item) {
                after_before = true;
            } else {
                kept.push(item);
            }
        }
        let mut has_next = after_before;
        let mut has_previous = before_after;
        if let Some(first) = args.first {
            has_next |= kept.len() > first;
            kept.truncate(first);
        }
        if let Some(last) = args.last
            && kept.len() > last
        {
            has_previous = true;
            kept.drain(..kept.len() - last);
        }
        Page {
            edges: kept.into_iter().map(|t| (cursor(&t), t)).collect(),
            has_next,
            has_previous,
            total: Some(total),
        }
    }

    /// A page of a list read in the direction `args` ask (a store page of
    /// `limit` items and whether more follow in that direction);
    /// `up_to_after` and `from_before` say whether items lie at or before
    /// the `after` cursor and at or after the `before` cursor, where known.
    pub fn of_store(
        items: Vec<T>,
        more: bool,
        args: &PageArgs,
        up_to_after: bool,
        from_before: bool,
        cursor: impl Fn(&T) -> String,
    ) -> Page<T> {
        let backward = args.backward();
        Page {
            edges: items.into_iter().map(|t| (cursor(&t), t)).collect(),
            has_next: (!backward && more) || from_before,
            has_previous: (backward && more) || up_to_after,
            total: None,
        }
    }
}

/// Whether the client selected `pageInfo { <flag> }` (the flag on the far
/// side of a store-read page costs one more store call, made only then).
pub(super) fn wants_page_flag(ctx: &ResolverContext<'_>, flag: &str) -> bool {
    ctx.look_ahead().field("pageInfo").field(flag).exists()
}

/// What `pageInfo` shows.
#[derive(Debug, Clone)]
struct PageInfo {
    has_next: bool,
    has_previous: bool,
    start: Option<String>,
    end: Option<String>,
}

/// The `PageInfo` type (once per schema).
pub(super) fn page_info_type() -> Object {
    let flag = |name: &str, doc: &str, f: fn(&PageInfo) -> bool| {
        Field::new(name, TypeRef::named_nn(TypeRef::BOOLEAN), move |ctx| {
            ready(
                ctx.parent_value
                    .try_downcast_ref::<PageInfo>()
                    .map(|p| Some(FieldValue::value(f(p)))),
            )
        })
        .description(doc)
    };
    let cursor = |name: &str, doc: &str, f: fn(&PageInfo) -> Option<String>| {
        Field::new(name, TypeRef::named(TypeRef::STRING), move |ctx| {
            ready(
                ctx.parent_value
                    .try_downcast_ref::<PageInfo>()
                    .map(|p| f(p).map(FieldValue::value)),
            )
        })
        .description(doc)
    };
    Object::new("PageInfo")
        .description("Where a page stands in its list (Relay cursor connections).")
        .field(flag(
            "hasNextPage",
            "Items follow this page (paging backward: items follow the `before` cursor).",
            |p| p.has_next,
        ))
        .field(flag(
            "hasPreviousPage",
            "Items precede this page (paging forward: items precede the `after` cursor).",
            |p| p.has_previous,
        ))
        .field(cursor(
            "startCursor",
            "The cursor of the first item of the page.",
            |p| p.start.clone(),
        ))
        .field(cursor(
            "endCursor",
            "The cursor of the last item of the page.",
            |p| p.end.clone(),
        ))
}

/// How a connection shows one of its items as a node.
pub(super) type NodeOf<T> =
    for<'a> fn(&ResolverContext<'a>, &'a T) -> Result<FieldValue<'a>, Error>;

/// The connection type `name` and its edge type `edge` over pages of `T`,
/// whose nodes are of type `node` (shown by `node_of`, described by
/// `node_doc`); `edge_fields` are
/// more fields of an edge (read its item with [`edge_item`]); with
/// `total`, a `totalCount` field of that type and description.
pub(super) fn connection<T: Any + Send + Sync>(
    name: &str,
    edge: &str,
    node: &str,
    node_of: NodeOf<T>,
    node_doc: &str,
    edge_fields: Vec<Field>,
    total: Option<(TypeRef, &str)>,
) -> [Object; 2] {
    let page = page_of::<T>;
    let mut e = Object::new(edge)
        .description(format!("An item of a {name} and its cursor."))
        .field(
            Field::new("cursor", TypeRef::named_nn(TypeRef::STRING), |ctx| {
                ready(edge_of::<T>(&ctx).map(|(c, _)| Some(FieldValue::value(c.clone()))))
            })
            .description("Where the item stands, for `after` and `before`."),
        )
        .field(
            Field::new("node", TypeRef::named_nn(node), move |ctx| {
                ready(edge_of::<T>(&ctx).and_then(|(_, t)| node_of(&ctx, t).map(Some)))
            })
            .description(node_doc),
        );
    for f in edge_fields {
        e = e.field(f);
    }
    let mut c = Object::new(name)
        .description(format!(
            "A page of a list of {node} (a Relay cursor connection)."
        ))
        .field(
            Field::new("edges", TypeRef::named_nn_list_nn(edge), move |ctx| {
                ready(page(&ctx).map(|p| {
                    Some(FieldValue::list(p.edges.iter().map(|e| {
                        FieldValue::borrowed_any(e as &(dyn Any + Send + Sync))
                    })))
                }))
            })
            .description("The items with their cursors."),
        )
        .field(
            Field::new("nodes", TypeRef::named_nn_list_nn(node), move |ctx| {
                ready(page(&ctx).and_then(|p| {
                    let nodes = p
                        .edges
                        .iter()
                        .map(|(_, t)| node_of(&ctx, t))
                        .collect::<Result<Vec<_>, Error>>()?;
                    Ok(Some(FieldValue::list(nodes)))
                }))
            })
            .description("The items (as the edges' nodes)."),
        )
        .field(
            Field::new("pageInfo", TypeRef::named_nn("PageInfo"), move |ctx| {
                ready(page(&ctx).map(|p| {
                    Some(FieldValue::owned_any(PageInfo {
                        has_next: p.has_next,
                        has_previous: p.has_previous,
                        start: p.edges.first().map(|(c, _)| c.clone()),
                        end: p.edges.last().map(|(c, _)| c.clone()),
                    }))
                }))
            })
            .description("Where this page stands."),
        );
    if let Some((ty, doc)) = total {
        c = c.field(
            Field::new("totalCount", ty, move |ctx| {
                ready(page(&ctx).map(|p| p.total.map(|n| FieldValue::value(n as i64))))
            })
            .description(doc),
        );
    }
    [c, e]
}

/// The page a connection field reads.
fn page_of<'a, T: Any + Send + Sync>(ctx: &ResolverContext<'a>) -> Result<&'a Page<T>, Error> {
    ctx.parent_value.try_downcast_ref::<Page<T>>()
}

/// The edge an edge field reads: its cursor and item.
fn edge_of<'a, T: Any + Send + Sync>(ctx: &ResolverContext<'a>) -> Result<&'a (String, T), Error> {
    ctx.parent_value.try_downcast_ref::<(String, T)>()
}

/// The item of the edge an edge field reads.
pub(super) fn edge_item<'a, T: Any + Send + Sync>(
    ctx: &ResolverContext<'a>,
) -> Result<&'a T, Error> {
    edge_of::<T>(ctx).map(|(_, t)| t)
}

/// A cursor of two parts (`a` newline `b`), as relationship lists use.
pub(super) fn pair_cursor(a: &str, b: &str) -> String {
    format!("{a}\n{b}")
}

/// The parts of a [`pair_cursor`]; a clear error for anything else.
pub(super) fn parse_pair_cursor(cursor: &str) -> Result<(&str, &str), Error> {
    cursor
        .split_once('\n')
        .ok_or_else(|| bad_request(format!("{cursor:?} is not a cursor of this connection")))
}

/// The page `args` ask for of the twins of `model` (subtypes included; all
/// when `None`) that `filter` accepts, in `order` (then id; id order when
/// empty), read from the store: one call, and for the flag beyond the
/// client's cursor (`hasPreviousPage` paging forward, `hasNextPage` paging
/// backward) one or two lean calls more, only when the client selects it.
/// Cursors are twin ids in id order, and carry the sort values with an
/// order ([`twin_cursor`]), so the next page starts where this one ended.
pub(super) async fn twin_page(
    ctx: &ResolverContext<'_>,
    store: &Arc<dyn GraphStore>,
    model: Option<String>,
    filter: Option<Filter>,
    order: Vec<SortKey>,
    at: Option<At>,
    args: &PageArgs,
) -> Result<Page<Twin>, Error> {
    let after = args
        .after
        .as_deref()
        .map(|c| parse_twin_cursor(c, &order))
        .transpose()?;
    let before = args
        .before
        .as_deref()
        .map(|c| parse_twin_cursor(c, &order))
        .transpose()?;
    let query = TwinQuery {
        model,
        subtypes: true,
        filter: filter.map(Arc::new),
        after: after.as_ref().map(|(id, _)| id.clone()),
        after_values: after.as_ref().map(|(_, v)| v.clone()).unwrap_or_default(),
        before: before.as_ref().map(|(id, _)| id.clone()),
        before_values: before.as_ref().map(|(_, v)| v.clone()).unwrap_or_default(),
        order,
        limit: args.limit(),
        backward: args.backward(),
    };
    let page = match at {
        Some(at) => store.twins_at(&query, at).await,
        None => store.twins(&query).await,
    }
    .map_err(|e| store_error(&e))?;
    let (mut items, more) = (page.items, page.has_more);
    // Both `first` and `last`: the last `last` of the first `first`.
    let mut dropped = false;
    if let (Some(_), Some(last)) = (args.first, args.last)
        && items.len() > last
    {
        items.drain(..items.len() - last);
        dropped = true;
    }
    let from_before = match &before {
        // As of a past moment, a cursor given stands for a list beyond it.
        Some(_) if at.is_some() => true,
        Some(b) if wants_page_flag(ctx, "hasNextPage") => {
            twins_at_or_beyond(store, &query, b, false).await?
        }
        _ => false,
    };
    let up_to_after = match &after {
        Some(_) if at.is_some() => true,
        Some(a) if wants_page_flag(ctx, "hasPreviousPage") => {
            twins_at_or_beyond(store, &query, a, true).await?
        }
        _ => false,
    };
    let total = if ctx.look_ahead().field("totalCount").exists() {
        let whole = AggregateQuery {
            model: query.model.clone(),
            subtypes: query.subtypes,
            filter: query.filter.clone(),
            at,
            ..AggregateQuery::default()
        };
        let a = store.aggregate(&whole).await.map_err(|e| store_error(&e))?;
        Some(usize::try_from(a.all.count).unwrap_or(usize::MAX))
    } else {
        None
    };
    let order = query.order;
    let mut page = Page::of_store(items, more, args, up_to_after, from_before, |t: &Twin| {
        twin_cursor(t, &order)
    });
    page.has_previous |= dropped;
    page.total = total;
    Ok(page)
}

/// The `totalCount` of twin lists: the store counts, asked only when selected.
pub(super) fn twin_total() -> Option<(TypeRef, &'static str)> {
    Some((
        TypeRef::named_nn(TypeRef::INT),
        "How many twins the whole list has (counted by the store, without reading them, only when selected).",
    ))
}

/// The cursor of a twin in a list in `order`: its id in id order, else the
/// JSON list of its sort values and its id.
pub(super) fn twin_cursor(t: &Twin, order: &[SortKey]) -> String {
    if order.is_empty() {
        return t.id.to_string();
    }
    let mut values = Position::values(t, order);
    values.push(serde_json::Value::from(&*t.id));
    serde_json::Value::Array(values).to_string()
}

/// The twin id and sort values of a [`twin_cursor`].
fn parse_twin_cursor(
    cursor: &str,
    order: &[SortKey],
) -> Result<(String, Vec<serde_json::Value>), Error> {
    if order.is_empty() {
        return Ok((cursor.to_owned(), Vec::new()));
    }
    let refused = || bad_request(format!("{cursor:?} is not a cursor of this ordering"));
    let mut values: Vec<serde_json::Value> = serde_json::from_str(cursor).map_err(|_| refused())?;
    if values.len() != order.len() + 1 {
        return Err(refused());
    }
    match values.pop() {
        Some(serde_json::Value::String(id)) => Ok((id, values)),
        _ => Err(refused()),
    }
}

/// Whether a twin of `query`'s list stands at the cursor `at` or beyond it
/// (before it when `backward`, else after it).
async fn twins_at_or_beyond(
    store: &Arc<dyn GraphStore>,
    query: &TwinQuery,
    (id, values): &(String, Vec<serde_json::Value>),
    backward: bool,
) -> Result<bool, Error> {
    let beyond = TwinQuery {
        after: (!backward).then(|| id.clone()),
        after_values: values.clone(),
        before: backward.then(|| id.clone()),
        before_values: values.clone(),
        limit: 1,
        backward,
        ..query.clone()
    };
    if !store
        .twin_ids(&beyond)
        .await
        .map_err(|e| store_error(&e))?
        .items
        .is_empty()
    {
        return Ok(true);
    }
    let models = store.models();
    Ok(store
        .twins_by_ids(std::slice::from_ref(id))
        .await
        .map_err(|e| store_error(&e))?
        .iter()
        .any(|t| {
            query
                .model
                .as_deref()
                .is_none_or(|m| models.interface(&t.model).is_some_and(|i| i.is_a(m)))
                && query.filter.as_ref().is_none_or(|f| f.matches(t))
        }))
}

/// The page `args` ask for of relationships, in (source, id) order, as
/// `Relationship` records; cursors are source and id.
pub(super) fn relationship_page(
    mut rels: Vec<Relationship>,
    args: &PageArgs,
) -> Result<Page<serde_json::Value>, Error> {
    rels.sort_by(|a, b| (&a.source, &a.id).cmp(&(&b.source, &b.id)));
    let after = args.after.as_deref().map(parse_pair_cursor).transpose()?;
    let before = args.before.as_deref().map(parse_pair_cursor).transpose()?;
    fn key(r: &Relationship) -> (&str, &str) {
        (r.source.as_str(), r.id.as_str())
    }
    let page = Page::of_sorted(
        rels,
        args,
        |r| pair_cursor(&r.source, &r.id),
        |r| after.is_none_or(|a| key(r) > a),
        |r| before.is_none_or(|b| key(r) < b),
    );
    Ok(page.map(|r| relationship_json(&r)))
}

/// The `RelationshipConnection` type and its edge.
pub(super) fn relationship_connection() -> [Object; 2] {
    connection::<serde_json::Value>(
        "RelationshipConnection",
        "RelationshipEdge",
        "Relationship",
        |_, r| Ok(FieldValue::borrowed_any(r)),
        "The relationship.",
        Vec::new(),
        Some((
            TypeRef::named_nn(TypeRef::INT),
            "Relationships in the whole list (it is read whole).",
        )),
    )
}
