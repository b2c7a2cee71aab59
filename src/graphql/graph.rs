//! The graph: relationships and their mutations, traversal (impact
//! analysis) and the containment hierarchy.

use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, TypeRef,
};

use super::builder::Builder;
use super::connection::{
    PageArgs, relationship_connection, relationship_page, with_page_arguments,
};
use super::context::{
    TwinTypes, actor_of, json_arg, long_arg, ready, store_of, str_arg, twin_ref, twin_value,
    types_of, usize_arg,
};
use super::errors::{bad_request, not_found, store_error};
use super::loader::load_twin;
use super::record::{record, records, twin_at_key};
use super::views::relationship_json;
use crate::codes::Code;
use crate::store::GraphStore;
use crate::twin::query::{DEFAULT_MAX_DEPTH, Direction, Reached, Traversal};
use crate::twin::{Batch, Event, Op};

/// A traversal hit: what was reached from where, and its twin when already
/// loaded (one store call for all hits). Its fields are computed only when
/// asked for.
struct Hit {
    start: Arc<str>,
    reached: Reached,
    twin: Option<Arc<crate::twin::Twin>>,
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

/// Applies a batch as the request's caller and returns its events.
async fn apply(ctx: &ResolverContext<'_>, batch: Batch) -> Result<Vec<Event>, Error> {
    store_of(ctx)?
        .apply(batch, &actor_of(ctx))
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

pub(super) fn register(b: &mut Builder) {
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
    let [rel_conn, rel_edge] = relationship_connection();
    b.register(direction);
    b.register(relationship);
    b.register(hop);
    b.register(hit);
    b.register(rel_conn);
    b.register(rel_edge);
    let max_page = b.limits.max_page;
    b.query(with_page_arguments(
        Field::new("relationships", s("RelationshipConnection"), move |ctx| {
            FieldFuture::new(async move {
                let store = store_of(&ctx)?;
                let source = str_arg(&ctx, "source")?;
                let target = str_arg(&ctx, "target")?;
                let name = str_arg(&ctx, "name")?;
                let args = PageArgs::read(&ctx, max_page)?;
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
                Ok(Some(FieldValue::owned_any(relationship_page(rels, &args)?)))
            })
        })
        .description("Relationships from `source` and/or to `target`, optionally of one name, ordered by (source, id); a Relay connection. At least one of `source` and `target` is required.")
        .argument(InputValue::new("source", TypeRef::named(TypeRef::ID)))
        .argument(InputValue::new("target", TypeRef::named(TypeRef::ID)))
        .argument(InputValue::new("name", TypeRef::named(TypeRef::STRING))),
    ));
    b.query(
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
                            twin: Some(Arc::new(twin)),
                        })
                    }))));
                }
                // Every hit's twin with the traversal, when asked for.
                let (hits, mut twins) = if ctx.look_ahead().field("twin").exists() {
                    let (hits, twins) = store_of(&ctx)?
                        .traverse_twins(&t)
                        .await
                        .map_err(|e| store_error(&e))?;
                    let twins: std::collections::HashMap<String, Arc<crate::twin::Twin>> =
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
    );
    b.query(
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
    );
    b.query(
        Field::new("descendants", TypeRef::named_nn_list_nn("Twin"), |ctx| {
            FieldFuture::new(async move {
                let store = store_of(&ctx)?;
                let id = ctx.args.try_get("id")?.string()?;
                let depth = usize_arg(&ctx, "maxDepth", DEFAULT_MAX_DEPTH, usize::MAX)?;
                let hits = store
                    .descendants(id, depth)
                    .await
                    .map_err(|e| store_error(&e))?;
                twins_by_id(
                    store,
                    types_of(&ctx)?,
                    hits.into_iter().map(|h| h.twin).collect(),
                )
                .await
            })
        })
        .description("Everything a twin contains, transitively, nearest first (then by id).")
        .argument(InputValue::new("id", s(TypeRef::ID)))
        .argument(InputValue::new("maxDepth", TypeRef::named(TypeRef::INT))),
    );
    b.mutation(
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
                let events = apply(&ctx, Batch::one(op)).await?;
                relationship_after(store, &events).await
            })
        })
        .description("Creates a relationship; its id is generated unless given.")
        .argument(InputValue::new("source", s(TypeRef::ID)))
        .argument(InputValue::new("name", s(TypeRef::STRING)))
        .argument(InputValue::new("target", s(TypeRef::ID)))
        .argument(InputValue::new("id", TypeRef::named(TypeRef::ID)))
        .argument(InputValue::new("properties", TypeRef::named("JSON"))),
    );
    b.mutation(
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
                let events = apply(&ctx, Batch::one(op)).await?;
                relationship_after(store, &events).await
            })
        })
        .description("Merge-patches a relationship's properties.")
        .argument(InputValue::new("source", s(TypeRef::ID)))
        .argument(InputValue::new("id", s(TypeRef::ID)))
        .argument(InputValue::new("patch", s("JSON")))
        .argument(InputValue::new("ifVersion", TypeRef::named("Long"))),
    );
    b.mutation(
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
                                return Err(not_found(format!("no relationship has id {id:?}"), Code::RelationshipNotFound));
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
                apply(&ctx, Batch::one(op)).await?;
                Ok(Some(FieldValue::value(true)))
            })
        })
        .description("Deletes a relationship. Ids are unique per source twin; `source` is needed only when several sources use the same id (generated ids are globally unique).")
        .argument(InputValue::new("id", s(TypeRef::ID)))
        .argument(InputValue::new("source", TypeRef::named(TypeRef::ID)))
        .argument(InputValue::new("ifVersion", TypeRef::named("Long"))),
    );
}
