//! The graph half of the generic API: relationships, traversal, the
//! containment hierarchy, history and the event log, the loaded models, and
//! the relationship and batch mutations.
//!
//! Records without behaviour (relationships, hops, events, models) travel as
//! JSON objects; [`record`] declares a GraphQL object whose fields read the
//! keys of that JSON, so each type is declared once, by its field list.

use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, Type,
    TypeRef,
};
use serde_json::{Value, json};

use super::errors::{bad_request, not_found, store_error};
use super::loader::TwinLoader;
use super::schema::{
    Limits, PageInfo, json_arg, long_arg, ready, store_of, str_arg, time_arg, to_gql, twin_ref,
    twin_value, types_of, usize_arg,
};
use super::typed::TwinTypes;
use crate::store::GraphStore;
use crate::twin::query::{DEFAULT_MAX_DEPTH, Direction, Reached, Traversal};
use crate::twin::{Batch, Event, Op, Relationship, format_time};
use async_graphql::dataloader::DataLoader;

/// A GraphQL object over a JSON object: each field reads its key.
pub(super) fn record(name: &str, description: &str, fields: &[(&str, TypeRef, &str)]) -> Object {
    let mut obj = Object::new(name).description(description);
    for (field, ty, doc) in fields {
        let key = (*field).to_owned();
        let mut f = Field::new(*field, ty.clone(), move |ctx| {
            let key = key.clone();
            FieldFuture::new(async move {
                let v = record_of(&ctx)?;
                match v.get(&key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(x) => Ok(Some(FieldValue::value(to_gql(x.clone())?))),
                }
            })
        });
        if !doc.is_empty() {
            f = f.description(*doc);
        }
        obj = obj.field(f);
    }
    obj
}

/// A traversal hit: what was reached from where, and its twin when already
/// loaded (one store call for all hits). Its fields are computed only when
/// asked for.
struct Hit {
    start: Arc<str>,
    reached: Reached,
    twin: Option<crate::twin::Twin>,
}

/// Whether a `traverse` selection reads no more than depths and the ids
/// and models of the twins reached (fragments included), which
/// [`crate::store::GraphStore::reach`] answers.
fn reach_is_enough(ctx: &ResolverContext<'_>) -> bool {
    ctx.field().selection_set().all(|hit| match hit.name() {
        "depth" | "__typename" => true,
        "twin" => hit
            .selection_set()
            .all(|t| matches!(t.name(), "id" | "model" | "__typename")),
        _ => false,
    })
}

fn hit<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Hit, Error> {
    ctx.parent_value.try_downcast_ref::<Hit>()
}

/// The JSON of a record parent.
fn record_of<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Value, Error> {
    ctx.parent_value.try_downcast_ref::<Value>()
}

/// A field of a JSON-backed record that resolves the twin whose id is under `key`.
fn twin_at_key(name: &str, key: &'static str, doc: &str) -> Field {
    Field::new(name, TypeRef::named("Twin"), move |ctx| {
        FieldFuture::new(async move {
            let v = record_of(&ctx)?;
            let Some(id) = v.get(key).and_then(Value::as_str) else {
                return Ok(None);
            };
            let t = load_twin(&ctx, id).await?;
            let types = types_of(&ctx)?;
            Ok(t.map(|t| twin_value(types, t)))
        })
    })
    .description(doc)
}

fn relationship_json(r: &Relationship) -> Value {
    json!({
        "id": r.id,
        "source": r.source,
        "target": r.target,
        "name": r.name,
        "properties": r.properties,
        "version": r.version,
        "createdAt": format_time(r.created_at),
        "updatedAt": format_time(r.updated_at),
    })
}

/// The twins on a hit's path, from the start to the hit.
fn hit_path(start: &str, r: &Reached) -> Vec<String> {
    let mut path = Vec::with_capacity(r.path.len() + 1);
    let mut at = start;
    path.push(at.to_owned());
    for hop in &r.path {
        at = if hop.source == at {
            &hop.target
        } else {
            &hop.source
        };
        path.push(at.to_owned());
    }
    path
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

pub(super) fn event_json(e: &Event) -> Value {
    let change = serde_json::to_value(&e.change).unwrap_or(Value::Null);
    let kind = e.change.kind();
    json!({
        "seq": e.seq,
        "cursor": e.seq.to_string(),
        "time": format_time(e.time),
        "actor": e.actor,
        "kind": kind,
        "twins": e.change.twins(),
        "change": change,
    })
}

fn records(items: impl IntoIterator<Item = Value>) -> FieldValue<'static> {
    FieldValue::list(items.into_iter().map(FieldValue::owned_any))
}

fn direction_arg(ctx: &ResolverContext<'_>) -> Result<Direction, Error> {
    match ctx.args.get("direction") {
        Some(d) if !d.is_null() => match d.enum_name()? {
            "OUT" => Ok(Direction::Out),
            "IN" => Ok(Direction::In),
            "BOTH" => Ok(Direction::Both),
            other => Err(bad_request(format!("unknown direction {other}"))),
        },
        _ => Ok(Direction::Out),
    }
}

/// A page of events as an `EventConnection` value.
fn event_page(mut events: Vec<Event>, first: usize) -> FieldValue<'static> {
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

/// A page of events, as the `EventConnection` type sees it.
struct RecordPage {
    nodes: Vec<Value>,
    page: PageInfo,
}

fn cursor_arg(ctx: &ResolverContext<'_>) -> Result<u64, Error> {
    match str_arg(ctx, "after")? {
        None => Ok(0),
        Some(s) => s
            .parse()
            .map_err(|_| bad_request(format!("after: {s:?} is not an event cursor"))),
    }
}

/// One twin through the batching loader.
async fn load_twin(
    ctx: &ResolverContext<'_>,
    id: &str,
) -> Result<Option<crate::twin::Twin>, Error> {
    ctx.data::<DataLoader<TwinLoader>>()?
        .load_one(id.to_owned())
        .await
        .map_err(|e| store_error(&e))
}

/// The twins with these ids, in order (ids that vanished meanwhile skipped), in one store call.
async fn twins_by_id(
    store: &Arc<dyn GraphStore>,
    types: &TwinTypes,
    ids: Vec<String>,
) -> Result<Option<FieldValue<'static>>, Error> {
    let twins = store
        .twins_by_ids(&ids)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(Some(FieldValue::list(
        twins.into_iter().map(|t| twin_value(types, t)),
    )))
}

/// A connection over JSON records: `nodes` and `pageInfo`.
fn record_connection(name: &str, node: &str) -> Object {
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

/// Applies a batch and returns its events.
async fn apply(store: &Arc<dyn GraphStore>, batch: Batch) -> Result<Vec<Event>, Error> {
    store
        .apply(batch, "anonymous")
        .await
        .map_err(|e| store_error(&e))
}

/// The relationship an event created or last touched.
async fn relationship_after(
    store: &Arc<dyn GraphStore>,
    events: &[Event],
) -> Result<Option<FieldValue<'static>>, Error> {
    use crate::twin::Change;
    let key = events.iter().rev().find_map(|e| match &e.change {
        Change::RelationshipCreated { relationship } => {
            Some((relationship.source.clone(), relationship.id.clone()))
        }
        Change::RelationshipUpdated { source, id, .. } => Some((source.clone(), id.clone())),
        _ => None,
    });
    let Some((source, id)) = key else {
        return Ok(None);
    };
    let r = store
        .relationship(&source, &id)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(r.map(|r| FieldValue::owned_any(relationship_json(&r))))
}

/// Adds the graph fields to `query` and `mutation`; returns the types they use.
pub(super) fn extend(
    query: Object,
    mutation: Object,
    limits: Limits,
) -> (Object, Object, Vec<Type>) {
    let s = |n: &str| TypeRef::named_nn(n.to_owned());
    let direction = Enum::new("Direction")
        .description("Which way relationships are followed.")
        .item(EnumItem::new("OUT").description("From source to target."))
        .item(EnumItem::new("IN").description("From target to source."))
        .item(EnumItem::new("BOTH"));
    let relationship = record(
        "Relationship",
        "A relationship between two twins.",
        &[
            (
                "id",
                s(TypeRef::ID),
                "Unique among its source's relationships.",
            ),
            ("source", s(TypeRef::ID), "Id of the source twin."),
            ("target", s(TypeRef::ID), "Id of the target twin."),
            (
                "name",
                s(TypeRef::STRING),
                "The DTDL Relationship it instantiates.",
            ),
            ("properties", s("JSON"), "Its own properties."),
            ("version", s("Long"), "Grows by one with every change."),
            ("createdAt", s("DateTime"), ""),
            ("updatedAt", s("DateTime"), ""),
        ],
    )
    .field(twin_at_key("sourceTwin", "source", "The source twin."))
    .field(twin_at_key("targetTwin", "target", "The target twin."));
    let hop = record(
        "Hop",
        "One relationship crossed on a path.",
        &[
            ("source", s(TypeRef::ID), ""),
            ("relationship", s(TypeRef::ID), "Id of the relationship."),
            ("name", s(TypeRef::STRING), ""),
            ("target", s(TypeRef::ID), ""),
        ],
    );
    let hit = Object::new("TraversalHit")
        .description("A twin reached by a traversal, at its shortest depth.")
        .field(
            Field::new("depth", s(TypeRef::INT), |ctx| {
                ready(hit(&ctx).map(|h| Some(FieldValue::value(h.reached.depth as i64))))
            })
            .description("Hops from the start."),
        )
        .field(
            Field::new("path", TypeRef::named_nn_list_nn(TypeRef::ID), |ctx| {
                FieldFuture::new(async move {
                    let h = hit(&ctx)?;
                    Ok(Some(FieldValue::list(
                        hit_path(&h.start, &h.reached)
                            .into_iter()
                            .map(FieldValue::value),
                    )))
                })
            })
            .description("Twins on one shortest path, from the start to this twin."),
        )
        .field(
            Field::new("hops", TypeRef::named_nn_list_nn("Hop"), |ctx| {
                FieldFuture::new(async move {
                    let h = hit(&ctx)?;
                    let hops = serde_json::to_value(&h.reached.path)
                        .ok()
                        .and_then(|v| v.as_array().cloned())
                        .unwrap_or_default();
                    Ok(Some(records(hops)))
                })
            })
            .description("The relationships crossed on that path."),
        )
        .field(
            Field::new("twin", s("Twin"), |ctx| {
                // The twin the hit holds, else loaded.
                if let Ok(Hit { twin: Some(t), .. }) = hit(&ctx) {
                    return ready(types_of(&ctx).map(|types| Some(twin_ref(types, t))));
                }
                FieldFuture::new(async move {
                    let h = hit(&ctx)?;
                    let t = load_twin(&ctx, &h.reached.twin)
                        .await?
                        .ok_or_else(|| Error::new(format!("twin {} vanished", h.reached.twin)))?;
                    Ok(Some(twin_value(types_of(&ctx)?, t)))
                })
            })
            .description("The twin reached."),
        );
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
    let rel_conn = record_connection("RelationshipConnection", "Relationship");
    let event_conn = record_connection("EventConnection", "Event");

    let model = record(
        "Model",
        "A loaded DTDL Interface.",
        &[
            ("id", s(TypeRef::ID), "Its DTMI."),
            ("displayName", TypeRef::named(TypeRef::STRING), ""),
            ("description", TypeRef::named(TypeRef::STRING), ""),
            (
                "extends",
                TypeRef::named_nn_list_nn(TypeRef::ID),
                "Interfaces it extends directly.",
            ),
            (
                "ancestors",
                TypeRef::named_nn_list_nn(TypeRef::ID),
                "Every ancestor, nearest first.",
            ),
            (
                "definition",
                s("JSON"),
                "The resolved Interface, contents flattened.",
            ),
        ],
    );
    let max_page = limits.max_page;

    let query = query
        .field(
            Field::new("relationships", s("RelationshipConnection"), move |ctx| {
                FieldFuture::new(async move {
                    let store = store_of(&ctx)?;
                    let source = str_arg(&ctx, "source")?;
                    let target = str_arg(&ctx, "target")?;
                    let name = str_arg(&ctx, "name")?;
                    let first = usize_arg(&ctx, "first", 100, max_page)?;
                    let after = str_arg(&ctx, "after")?;
                    let mut rels = match (&source, &target) {
                        (Some(src), _) => store.relationships(src, Direction::Out, name.as_deref()).await,
                        (None, Some(tgt)) => store.relationships(tgt, Direction::In, name.as_deref()).await,
                        (None, None) => {
                            return Err(bad_request("relationships needs a source or a target"));
                        }
                    }
                    .map_err(|e| store_error(&e))?;
                    if let Some(tgt) = &target {
                        rels.retain(|r| &r.target == tgt);
                    }
                    rels.sort_by(|a, b| (&a.source, &a.id).cmp(&(&b.source, &b.id)));
                    if let Some(after) = after {
                        let (src, id) = after
                            .split_once('\n')
                            .ok_or_else(|| bad_request("after: not a relationship cursor"))?;
                        rels.retain(|r| (r.source.as_str(), r.id.as_str()) > (src, id));
                    }
                    Ok(Some(relationship_page(rels, first)))
                })
            })
            .description("Relationships from `source` and/or to `target`, optionally of one name, ordered by (source, id), with cursor pagination. At least one of `source` and `target` is required.")
            .argument(InputValue::new("source", TypeRef::named(TypeRef::ID)))
            .argument(InputValue::new("target", TypeRef::named(TypeRef::ID)))
            .argument(InputValue::new("name", TypeRef::named(TypeRef::STRING)))
            .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING))),
        )
        .field(
            Field::new("traverse", TypeRef::named_nn_list_nn("TraversalHit"), |ctx| {
                FieldFuture::new(async move {
                    let names = match ctx.args.get("relationships") {
                        Some(l) if !l.is_null() => l
                            .list()?
                            .iter()
                            .map(|n| n.string().map(str::to_owned))
                            .collect::<Result<Vec<_>, _>>()?,
                        _ => Vec::new(),
                    };
                    let t = Traversal {
                        start: ctx.args.try_get("from")?.string()?.to_owned(),
                        names,
                        direction: direction_arg(&ctx)?,
                        max_depth: usize_arg(&ctx, "maxDepth", 3, usize::MAX)?,
                    };
                    let start: Arc<str> = Arc::from(t.start.as_str());
                    if reach_is_enough(&ctx) {
                        // Depths, ids and models only: no paths, no state
                        // from the store; each twin holds its id and model,
                        // all that the selection reads of it.
                        let reached = store_of(&ctx)?
                            .reach(&t)
                            .await
                            .map_err(|e| store_error(&e))?;
                        return Ok(Some(FieldValue::list(reached.into_iter().map(|r| {
                            let twin = crate::twin::Twin::blank(&r.twin, r.model.clone());
                            FieldValue::owned_any(Hit {
                                start: start.clone(),
                                reached: Reached {
                                    twin: r.twin,
                                    depth: r.depth,
                                    path: Vec::new(),
                                },
                                twin: Some(twin),
                            })
                        }))));
                    }
                    // Every hit's twin with the traversal, when asked for.
                    let (hits, mut twins) = if ctx.look_ahead().field("twin").exists() {
                        let (hits, twins) = store_of(&ctx)?
                            .traverse_twins(&t)
                            .await
                            .map_err(|e| store_error(&e))?;
                        let twins: std::collections::HashMap<String, crate::twin::Twin> =
                            twins.into_iter().map(|t| (t.id.to_string(), t)).collect();
                        (hits, twins)
                    } else {
                        let hits = store_of(&ctx)?
                            .traverse(&t)
                            .await
                            .map_err(|e| store_error(&e))?;
                        (hits, std::collections::HashMap::new())
                    };
                    Ok(Some(FieldValue::list(hits.into_iter().map(|reached| {
                        let twin = twins.remove(&reached.twin);
                        FieldValue::owned_any(Hit {
                            start: start.clone(),
                            reached,
                            twin,
                        })
                    }))))
                })
            })
            .description("Every twin reachable from `from` within `maxDepth` hops (impact analysis), nearest first.")
            .argument(InputValue::new("from", s(TypeRef::ID)))
            .argument(InputValue::new("relationships", TypeRef::named_nn_list(TypeRef::STRING)).description("Names to follow; all when omitted."))
            .argument(InputValue::new("direction", TypeRef::named("Direction")))
            .argument(InputValue::new("maxDepth", TypeRef::named(TypeRef::INT))),
        )
        .field(
            Field::new("ancestors", TypeRef::named_nn_list_nn("Twin"), |ctx| {
                FieldFuture::new(async move {
                    let store = store_of(&ctx)?;
                    let id = ctx.args.try_get("id")?.string()?;
                    let ids = store.ancestors(id).await.map_err(|e| store_error(&e))?;
                    twins_by_id(store, types_of(&ctx)?, ids).await
                })
            })
            .description("Containers of a twin (DTDL contains relationships), nearest first.")
            .argument(InputValue::new("id", s(TypeRef::ID))),
        )
        .field(
            Field::new("descendants", TypeRef::named_nn_list_nn("Twin"), |ctx| {
                FieldFuture::new(async move {
                    let store = store_of(&ctx)?;
                    let id = ctx.args.try_get("id")?.string()?;
                    let depth = usize_arg(&ctx, "maxDepth", DEFAULT_MAX_DEPTH, usize::MAX)?;
                    let hits = store
                        .descendants(id, depth)
                        .await
                        .map_err(|e| store_error(&e))?;
                    twins_by_id(store, types_of(&ctx)?, hits.into_iter().map(|h| h.twin).collect()).await
                })
            })
            .description("Everything a twin contains, transitively, nearest first (then by id).")
            .argument(InputValue::new("id", s(TypeRef::ID)))
            .argument(InputValue::new("maxDepth", TypeRef::named(TypeRef::INT))),
        )
        .field(
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
            .description("The audit trail of one twin (its own changes and its relationships'), oldest first.")
            .argument(InputValue::new("id", s(TypeRef::ID)))
            .argument(InputValue::new("from", TypeRef::named("DateTime")))
            .argument(InputValue::new("to", TypeRef::named("DateTime")))
            .argument(InputValue::new("first", TypeRef::named(TypeRef::INT)))
            .argument(InputValue::new("after", TypeRef::named(TypeRef::STRING))),
        )
        .field(
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
        )
        .field(
            Field::new("models", TypeRef::named_nn_list_nn("Model"), |ctx| {
                FieldFuture::new(async move {
                    let set = store_of(&ctx)?.models();
                    let mut ifaces: Vec<_> = set.interfaces().collect();
                    ifaces.sort_by(|a, b| a.id.cmp(&b.id));
                    let out = ifaces.into_iter().map(|i| {
                        json!({
                            "id": i.id,
                            "displayName": i.docs.display_name.get("en"),
                            "description": i.docs.description.get("en"),
                            "extends": i.extends,
                            "ancestors": i.ancestors,
                            "definition": serde_json::to_value(i).unwrap_or(Value::Null),
                        })
                    });
                    Ok(Some(records(out)))
                })
            })
            .description("The loaded DTDL Interfaces, by DTMI."),
        );

    let mutation = mutation
        .field(
            Field::new("uploadModels", s("ModelUploadResult"), |ctx| {
                FieldFuture::new(async move {
                    super::schema::require(&ctx, crate::auth::Action::Models)?;
                    let library = ctx.data::<Arc<super::upload::ModelLibrary>>()?;
                    let docs = ctx
                        .args
                        .try_get("models")?
                        .list()?
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            v.as_value()
                                .clone()
                                .into_json()
                                .map_err(|e| bad_request(format!("models[{i}]: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let done =
                        super::upload::upload(
                            library,
                            store_of(&ctx)?,
                            docs,
                            &super::schema::actor_of(&ctx),
                            ctx.data_opt::<super::reload::Reloader>(),
                        )
                        .await?;
                    Ok(Some(FieldValue::owned_any(json!({
                        "models": done.models,
                        "sequence": done.sequence,
                    }))))
                })
            })
            .description("Adds DTDL Interfaces (each item a DTDL document). Models are immutable: only new DTMIs are accepted, so no existing twin can break. Checked together with the loaded models; all or nothing; kept across restarts.")
            .argument(InputValue::new("models", TypeRef::named_nn_list_nn("JSON"))),
        )
        .field(
            Field::new("createRelationship", s("Relationship"), |ctx| {
                FieldFuture::new(async move {
                    let store = store_of(&ctx)?;
                    let op = Op::CreateRelationship {
                        source: ctx.args.try_get("source")?.string()?.to_owned(),
                        id: str_arg(&ctx, "id")?,
                        name: ctx.args.try_get("name")?.string()?.to_owned(),
                        target: ctx.args.try_get("target")?.string()?.to_owned(),
                        properties: json_arg(&ctx, "properties")?,
                    };
                    let events = apply(store, Batch::one(op)).await?;
                    relationship_after(store, &events).await
                })
            })
            .description("Creates a relationship; its id is generated unless given.")
            .argument(InputValue::new("source", s(TypeRef::ID)))
            .argument(InputValue::new("name", s(TypeRef::STRING)))
            .argument(InputValue::new("target", s(TypeRef::ID)))
            .argument(InputValue::new("id", TypeRef::named(TypeRef::ID)))
            .argument(InputValue::new("properties", TypeRef::named("JSON"))),
        )
        .field(
            Field::new("updateRelationship", s("Relationship"), |ctx| {
                FieldFuture::new(async move {
                    let store = store_of(&ctx)?;
                    let op = Op::UpdateRelationship {
                        source: ctx.args.try_get("source")?.string()?.to_owned(),
                        id: ctx.args.try_get("id")?.string()?.to_owned(),
                        patch: json_arg(&ctx, "patch")?
                            .ok_or_else(|| bad_request("patch is required"))?,
                        expected_version: long_arg(&ctx, "ifVersion")?,
                    };
                    let events = apply(store, Batch::one(op)).await?;
                    relationship_after(store, &events).await
                })
            })
            .description("Merge-patches a relationship's properties.")
            .argument(InputValue::new("source", s(TypeRef::ID)))
            .argument(InputValue::new("id", s(TypeRef::ID)))
            .argument(InputValue::new("patch", s("JSON")))
            .argument(InputValue::new("ifVersion", TypeRef::named("Long"))),
        )
        .field(
            Field::new("deleteRelationship", s(TypeRef::BOOLEAN), |ctx| {
                FieldFuture::new(async move {
                    let store = store_of(&ctx)?;
                    let id = ctx.args.try_get("id")?.string()?.to_owned();
                    let source = match str_arg(&ctx, "source")? {
                        Some(src) => src,
                        None => {
                            let found = store
                                .relationships_with_id(&id)
                                .await
                                .map_err(|e| store_error(&e))?;
                            match found.as_slice() {
                                [one] => one.source.clone(),
                                [] => {
                                    return Err(not_found(format!("no relationship has id {id:?}"), "relationship_not_found"));
                                }
                                _ => {
                                    return Err(bad_request(format!(
                                        "{} relationships have id {id:?}; give `source`",
                                        found.len()
                                    )));
                                }
                            }
                        }
                    };
                    let op = Op::DeleteRelationship {
                        source,
                        id,
                        expected_version: long_arg(&ctx, "ifVersion")?,
                    };
                    apply(store, Batch::one(op)).await?;
                    Ok(Some(FieldValue::value(true)))
                })
            })
            .description("Deletes a relationship. Ids are unique per source twin; `source` is needed only when several sources use the same id (generated ids are globally unique).")
            .argument(InputValue::new("id", s(TypeRef::ID)))
            .argument(InputValue::new("source", TypeRef::named(TypeRef::ID)))
            .argument(InputValue::new("ifVersion", TypeRef::named("Long"))),
        )
        .field(
            Field::new("batch", s("BatchResult"), move |ctx| {
                FieldFuture::new(async move {
                    let list = ctx.args.try_get("operations")?.list()?;
                    if list.len() > limits.batch_ops {
                        return Err(bad_request(format!(
                            "a batch may carry at most {} operations ({} given)",
                            limits.batch_ops,
                            list.len()
                        )));
                    }
                    let ops = list
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let json = v
                                .as_value()
                                .clone()
                                .into_json()
                                .map_err(|e| bad_request(format!("operation {i}: {e}")))?;
                            serde_json::from_value::<Op>(json)
                                .map_err(|e| bad_request(format!("operation {i}: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let events = apply(store_of(&ctx)?, Batch { ops }).await?;
                    // The events as records only when asked for (a JSON
                    // tree per event otherwise built and dropped unread).
                    let records: Vec<Value> = if ctx.look_ahead().field("events").exists() {
                        events.iter().map(event_json).collect()
                    } else {
                        Vec::new()
                    };
                    Ok(Some(FieldValue::owned_any(json!({
                        "applied": events.len(),
                        "lastSequence": events.last().map(|e| e.seq),
                        "events": records,
                    }))))
                })
            })
            .description("Applies operations atomically: all or none. Each is an object with `op` (createTwin, deleteTwin, patchDesired, patchReported, createRelationship, updateRelationship, deleteRelationship) and that operation's fields.")
            .argument(InputValue::new("operations", TypeRef::named_nn_list_nn("JSON"))),
        );

    let batch_result = record(
        "BatchResult",
        "What an atomic batch did.",
        &[
            (
                "applied",
                s(TypeRef::INT),
                "Events written (one per operation).",
            ),
            (
                "lastSequence",
                TypeRef::named("Long"),
                "Sequence number of its last event.",
            ),
        ],
    )
    .field(
        Field::new("events", TypeRef::named_nn_list_nn("Event"), |ctx| {
            FieldFuture::new(async move {
                let v = record_of(&ctx)?;
                let events = v
                    .get("events")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                Ok(Some(records(events)))
            })
        })
        .description("The events, in order."),
    );
    let upload_result = record(
        "ModelUploadResult",
        "What an upload added.",
        &[
            (
                "models",
                TypeRef::named_nn_list_nn(TypeRef::ID),
                "DTMIs of the Interfaces added.",
            ),
            (
                "sequence",
                s("Long"),
                "Sequence number of the modelsChanged event.",
            ),
        ],
    );
    let types = vec![
        upload_result.into(),
        Type::from(direction),
        rel_conn.into(),
        batch_result.into(),
        relationship.into(),
        hop.into(),
        hit.into(),
        event.into(),
        event_conn.into(),
        model.into(),
    ];
    (query, mutation, types)
}
