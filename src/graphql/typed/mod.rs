//! The typed schema compiled from the DTDL model set.
//!
//! For every Interface: a GraphQL interface (named by [`super::names`])
//! implementing `Twin` and the interfaces of all its ancestors, and an object
//! type `<Name>Twin` for twins whose model is exactly that Interface, which
//! implements them all. So `twins(model: Equipment)` answers
//! `... on Pump { flowRate }` for pumps, whatever the query asked for.
//!
//! Fields of a twin type, after the `Twin` fields, per content:
//! - Property or Telemetry `p`: `p` is the reported value, typed (see
//!   [`values`]); `pMetadata: PropertyMetadata` its versions, times and
//!   acknowledgement; a writable Property also has `pDesired` (the desired
//!   value) and `pDelta` (the desired value while it differs from the
//!   reported one); a numeric one has `pSeries(from, to, step,
//!   aggregate)`, its time series (a Component's: of `c.p`). Flat
//!   fields rather than nested `desired { p }` objects,
//!   because GraphQL interfaces need a field's type to be the same (or a
//!   subtype) all down the inheritance chain.
//! - Component `c`: `c: <Schema>Component`, an object with the same
//!   property fields for the Component's state.
//! - Relationship `r`: `r(where, first, after): <Declaring><R>Connection!`,
//!   a Relay connection of the declared target type (or `Twin`) whose edges
//!   carry the relationship id and typed properties.
//! - `incomingRelationships(name, first, after)`: relationships pointing at
//!   the twin.
//!
//! A DTDL name that is also one of a type's own fields (a `Twin` field,
//! `incomingRelationships`; `and`/`or`/`not` in a filter; `cursor`, `node`,
//! ... on an edge) gets the prefix `prop_`; a generated name (`prop_id`,
//! `pDesired`) that is also a DTDL name anywhere in the Interface's family
//! gets `_` appended (DTDL names never end with `_`), so inherited fields
//! agree all down the chain. DTMIs, display names, descriptions, semantic
//! types and units go into descriptions.
//!
//! Per model, [`model_api`] adds a lookup, a filtered and ordered list,
//! typed create/update mutations and a mutation per Command.

mod aggregates;
mod model_api;
mod values;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_graphql::Error;
use async_graphql::dataloader::DataLoader;
use async_graphql::dynamic::{
    Enum, EnumItem, Field, FieldFuture, FieldValue, InputValue, Interface, InterfaceField, Object,
    ResolverContext, Type, TypeRef,
};
use serde_json::Value;

use super::builder::Builder;
use super::connection::{
    Page, PageArgs, connection, edge_item, page_arguments, pair_cursor, parse_pair_cursor,
    relationship_page as relationship_page_of,
};
use super::context::{TwinTypes, parent_twin, str_arg, to_gql, twin_ref, types_of};
use super::errors::{bad_request, store_error};
use super::loader::{EdgeLoader, RelKey, RelLoader};
use super::names::{self, ModelOrder, Reserved, TypeNames};
use super::views::{twin_field, twin_fields};
use crate::dtdl::ModelSet;
use crate::dtdl::model::{Content, ContentKind, Interface as DtdlInterface, Schema};
use crate::twin::state::{ComponentState, PropState};
use crate::twin::{AckStatus, Relationship, Twin, format_time};

pub use model_api::WhereSpec;
use values::{Namer, Schemas, describe, upper_first};

/// What [`compile`] adds to a schema.
#[derive(Debug)]
struct Compiled {
    pub types: Vec<Type>,
    pub twin_types: TwinTypes,
    /// Per-model query fields.
    pub queries: Vec<Field>,
    /// Per-model mutations and commands.
    pub mutations: Vec<Field>,
}

/// Suffixes of the types derived from an Interface's name.
const DERIVED: [&str; 12] = [
    "Where",
    "Sort",
    "Input",
    "DesiredInput",
    "Connection",
    "Edge",
    "Component",
    "ComponentInput",
    "ComponentDesiredInput",
    "Aggregate",
    "Group",
    "GroupField",
];

/// Field name the typed types add besides their contents.
const INCOMING: &str = "incomingRelationships";

/// The names a content's fields must avoid.
#[derive(Debug, Clone, Default)]
struct Taken {
    /// DTDL names of the declaring Interface's family (see [`family_names`]).
    dtdl: HashSet<String>,
    /// Field names that contents inherited from Interfaces of earlier
    /// uploads generate (see [`Compiler::inherited`]): those types existed
    /// first and keep their fields, so the newcomer's fields yield.
    inherited: HashSet<String>,
}

impl Taken {
    fn of(dtdl: HashSet<String>) -> Taken {
        Taken {
            dtdl,
            inherited: HashSet::new(),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.dtdl.contains(name) || self.inherited.contains(name)
    }
}

/// The field of DTDL name `name` in a type whose own fields are `fixed`:
/// the name itself, or `prop_<name>` when that is a fixed field or a field
/// inherited from an earlier upload (with `_` appended while that is taken).
fn field_name(name: &str, fixed: &[&str], taken: &Taken) -> String {
    if !fixed.contains(&name) && !taken.inherited.contains(name) {
        return name.to_owned();
    }
    let mut n = format!("prop_{name}");
    while taken.contains(&n) || fixed.contains(&n.as_str()) {
        n.push('_');
    }
    n
}

/// Fields of every twin type besides the contents' own.
fn twin_fixed() -> Vec<&'static str> {
    let mut fixed: Vec<&'static str> = twin_fields().iter().map(|(n, ..)| *n).collect();
    fixed.push(INCOMING);
    fixed.push(super::views::TWIN_DEVICE_FIELD);
    fixed.push(super::views::TWIN_HEALTH_FIELD);
    fixed.push(super::views::TWIN_ALARMS_FIELD);
    fixed.push(super::views::TWIN_LIFECYCLE_FIELD);
    fixed.push(super::views::TWIN_KPIS_FIELD);
    fixed
}

/// The field of a content of a twin type (or Component type).
fn field_base(name: &str, taken: &Taken) -> String {
    field_name(name, &twin_fixed(), taken)
}

/// `base + suffix`, with `_` appended while it is taken.
fn derived(base: &str, suffix: &str, taken: &Taken) -> String {
    let mut n = format!("{base}{suffix}");
    while taken.contains(&n) {
        n.push('_');
    }
    n
}

/// The state a property field reads: the twin's own, or a Component's
/// (with the twin and the Component's name, for its series).
#[derive(Debug)]
struct Comp {
    state: ComponentState,
    twin: Arc<str>,
    name: String,
}

fn state_of<'a>(ctx: &ResolverContext<'a>) -> Result<&'a ComponentState, Error> {
    if let Ok(t) = parent_twin(ctx) {
        return Ok(&t.root);
    }
    Ok(&ctx.parent_value.try_downcast_ref::<Comp>()?.state)
}

/// How a typed field reads its parent.
#[derive(Clone)]
enum Read {
    Reported(Arc<Schema>, String),
    Desired(Arc<Schema>, String),
    Delta(Arc<Schema>, String),
    Metadata(String),
    Component(String),
    Relationship(Arc<RelSpec>),
    /// With the largest page.
    Incoming(usize),
    /// The time series of a numeric field of the twin itself.
    Series(String),
}

/// A typed field, declared once and built for interfaces and objects alike.
#[derive(Clone)]
struct Spec {
    name: String,
    ty: TypeRef,
    doc: String,
    args: Vec<(&'static str, TypeRef, &'static str)>,
    read: Read,
}

impl Spec {
    fn interface_field(&self) -> InterfaceField {
        let mut f = InterfaceField::new(&self.name, self.ty.clone()).description(&self.doc);
        for (n, ty, d) in &self.args {
            f = f.argument(InputValue::new(*n, ty.clone()).description(*d));
        }
        f
    }

    fn field(&self) -> Field {
        self.build(true).description(&self.doc)
    }

    /// The field without its description (object types: the interface
    /// they implement carries it; a 768-Interface ontology's SDL would
    /// otherwise double in size).
    fn field_undocumented(&self) -> Field {
        self.build(false)
    }

    fn build(&self, documented: bool) -> Field {
        let read = self.read.clone();
        let mut f = Field::new(&self.name, self.ty.clone(), move |ctx| {
            let read = read.clone();
            FieldFuture::new(async move { resolve(&ctx, &read).await })
        });
        for (n, ty, d) in &self.args {
            let arg = InputValue::new(*n, ty.clone());
            f = f.argument(if documented { arg.description(*d) } else { arg });
        }
        f
    }
}

async fn resolve(
    ctx: &ResolverContext<'_>,
    read: &Read,
) -> Result<Option<FieldValue<'static>>, Error> {
    let prop =
        |name: &str| -> Result<Option<&PropState>, Error> { Ok(state_of(ctx)?.props.get(name)) };
    let some = |schema: &Schema, v: Option<&Value>| match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => values::render(schema, v).map(Some),
    };
    match read {
        Read::Reported(schema, name) => some(
            schema,
            prop(name)?
                .and_then(|p| p.reported.as_ref())
                .map(|r| &r.value),
        ),
        Read::Desired(schema, name) => some(
            schema,
            prop(name)?
                .and_then(|p| p.desired.as_ref())
                .map(|d| &d.value),
        ),
        Read::Delta(schema, name) => some(
            schema,
            prop(name)?
                .filter(|p| p.in_delta())
                .and_then(|p| p.desired.as_ref())
                .map(|d| &d.value),
        ),
        Read::Metadata(name) => Ok(prop(name)?.map(|p| FieldValue::owned_any(p.clone()))),
        Read::Series(name) => {
            // The parent was read through the caller's view of the store.
            if let Ok(t) = parent_twin(ctx) {
                return super::trend::answer(ctx, &t.id, name).await;
            }
            let c = ctx.parent_value.try_downcast_ref::<Comp>()?;
            super::trend::answer(ctx, &c.twin, &format!("{}.{name}", c.name)).await
        }
        Read::Component(name) => {
            let t = parent_twin(ctx)?;
            let state = t.components.get(name).cloned().unwrap_or_default();
            Ok(Some(FieldValue::owned_any(Comp {
                state,
                twin: t.id.clone(),
                name: name.clone(),
            })))
        }
        Read::Relationship(spec) => relationship_page(ctx, spec).await,
        Read::Incoming(max_page) => incoming_page(ctx, *max_page).await,
    }
}

/// A relationship field: its DTDL name and how to filter its targets.
struct RelSpec {
    name: String,
    max_page: usize,
    /// The `where` of the target type.
    target_where: Option<Arc<WhereSpec>>,
}

/// The twin's relationships of one name, their targets loaded in one batch
/// with every other twin's, filtered, ordered by target id then
/// relationship id, one page.
async fn relationship_page(
    ctx: &ResolverContext<'_>,
    spec: &RelSpec,
) -> Result<Option<FieldValue<'static>>, Error> {
    let t = parent_twin(ctx)?;
    let args = PageArgs::read(ctx, spec.max_page)?;
    let filter = match (ctx.args.get("where"), &spec.target_where) {
        (Some(w), Some(ws)) if !w.is_null() => Some(ws.filter(w.as_value())?),
        (Some(w), None) if !w.is_null() => {
            let json = w
                .as_value()
                .clone()
                .into_json()
                .map_err(|e| bad_request(format!("where: {e}")))?;
            Some(
                crate::twin::filter::Filter::parse(&json)
                    .map_err(|e| bad_request(format!("where: {e}")))?,
            )
        }
        _ => None,
    };
    // The relationships and their targets: one store call for this level.
    let mut edges: Vec<(Relationship, Arc<Twin>)> = ctx
        .data::<DataLoader<EdgeLoader>>()?
        .load_one(RelKey {
            twin: t.id.to_string(),
            name: Some(spec.name.clone()),
            incoming: false,
        })
        .await
        .map_err(|e| store_error(&e))?
        .unwrap_or_default();
    edges.retain(|(_, t)| filter.as_ref().is_none_or(|f| f.matches(t)));
    edges.sort_by(|a, b| (&a.0.target, &a.0.id).cmp(&(&b.0.target, &b.0.id)));
    let after = args.after.as_deref().map(parse_pair_cursor).transpose()?;
    let before = args.before.as_deref().map(parse_pair_cursor).transpose()?;
    fn key((r, _): &(Relationship, Arc<Twin>)) -> (&str, &str) {
        (r.target.as_str(), r.id.as_str())
    }
    let page = Page::of_sorted(
        edges,
        &args,
        |(r, _)| pair_cursor(&r.target, &r.id),
        |e| after.is_none_or(|a| key(e) > a),
        |e| before.is_none_or(|b| key(e) < b),
    );
    Ok(Some(FieldValue::owned_any(page)))
}

/// `incomingRelationships`: relationships pointing at the twin, in (source, id) order.
async fn incoming_page(
    ctx: &ResolverContext<'_>,
    max_page: usize,
) -> Result<Option<FieldValue<'static>>, Error> {
    let t = parent_twin(ctx)?;
    let args = PageArgs::read(ctx, max_page)?;
    let rels = ctx
        .data::<DataLoader<RelLoader>>()?
        .load_one(RelKey {
            twin: t.id.to_string(),
            name: str_arg(ctx, "name")?,
            incoming: true,
        })
        .await
        .map_err(|e| store_error(&e))?
        .unwrap_or_default();
    Ok(Some(FieldValue::owned_any(relationship_page_of(
        rels, &args,
    )?)))
}

/// The relationship an edge of a typed relationship connection holds.
fn rel_edge<'a>(ctx: &ResolverContext<'a>) -> Result<&'a Relationship, Error> {
    edge_item::<(Relationship, Arc<Twin>)>(ctx).map(|(r, _)| r)
}

/// The connection and edge types of one relationship (declared once, in
/// the declaring Interface; inherited by its subtypes).
fn relationship_types(
    conn: &str,
    edge: &str,
    node: &str,
    properties: Vec<(String, TypeRef, String, Arc<Schema>, String)>,
) -> [Object; 2] {
    let mut fields = vec![
        Field::new("relationshipId", TypeRef::named_nn(TypeRef::ID), |ctx| {
            FieldFuture::new(async move { Ok(Some(FieldValue::value(rel_edge(&ctx)?.id.clone()))) })
        })
        .description("The relationship's id (unique per source twin)."),
        Field::new("properties", TypeRef::named("JSON"), |ctx| {
            FieldFuture::new(async move {
                let r = rel_edge(&ctx)?;
                Ok(Some(FieldValue::value(to_gql(Value::Object(
                    r.properties.clone(),
                ))?)))
            })
        })
        .description("The relationship's properties as JSON."),
        Field::new("relationshipVersion", TypeRef::named_nn("Long"), |ctx| {
            FieldFuture::new(async move { Ok(Some(FieldValue::value(rel_edge(&ctx)?.version))) })
        })
        .description("Grows by one with every change to the relationship."),
        Field::new("createdAt", TypeRef::named_nn("DateTime"), |ctx| {
            FieldFuture::new(async move {
                Ok(Some(FieldValue::value(format_time(
                    rel_edge(&ctx)?.created_at,
                ))))
            })
        })
        .description("When the relationship was created."),
    ];
    for (field, ty, doc, schema, key) in properties {
        fields.push(
            Field::new(field, ty, move |ctx| {
                let (schema, key) = (schema.clone(), key.clone());
                FieldFuture::new(async move {
                    let r = rel_edge(&ctx)?;
                    match r.properties.get(&key) {
                        None | Some(Value::Null) => Ok(None),
                        Some(v) => values::render(&schema, v).map(Some),
                    }
                })
            })
            .description(doc),
        );
    }
    connection::<(Relationship, Arc<Twin>)>(
        conn,
        edge,
        node,
        |ctx, (_, t)| Ok(twin_ref(types_of(ctx)?, t)),
        "The target twin.",
        fields,
        Some((
            TypeRef::named_nn(TypeRef::INT),
            "Relationships matching the filter, all pages.",
        )),
    )
}

/// `PropertyMetadata` and `AckStatus`.
fn metadata_types() -> [Type; 2] {
    type Def = (&'static str, TypeRef, &'static str, fn(&PropState) -> Value);
    let defs: [Def; 9] = [
        (
            "reportedVersion",
            TypeRef::named("Long"),
            "Twin version that last set the reported value.",
            |p| {
                p.reported
                    .as_ref()
                    .map_or(Value::Null, |r| r.version.into())
            },
        ),
        (
            "reportedUpdated",
            TypeRef::named("DateTime"),
            "When the reported value last changed.",
            |p| {
                p.reported
                    .as_ref()
                    .map_or(Value::Null, |r| format_time(r.last_updated).into())
            },
        ),
        (
            "sourceTime",
            TypeRef::named("DateTime"),
            "When the device observed the reported value.",
            |p| {
                p.reported
                    .as_ref()
                    .and_then(|r| r.source_time)
                    .map_or(Value::Null, |s| format_time(s).into())
            },
        ),
        (
            "desiredVersion",
            TypeRef::named("Long"),
            "Twin version that last set the desired value: the version a device acknowledges.",
            |p| p.desired.as_ref().map_or(Value::Null, |d| d.version.into()),
        ),
        (
            "desiredUpdated",
            TypeRef::named("DateTime"),
            "When the desired value last changed.",
            |p| {
                p.desired
                    .as_ref()
                    .map_or(Value::Null, |d| format_time(d.last_updated).into())
            },
        ),
        (
            "ackCode",
            TypeRef::named(TypeRef::INT),
            "The device's acknowledgement status code (`ac`).",
            |p| {
                p.reported
                    .as_ref()
                    .and_then(|r| r.ack.as_ref())
                    .map_or(Value::Null, |a| a.code.into())
            },
        ),
        (
            "ackVersion",
            TypeRef::named("Long"),
            "The desired version the device acknowledged (`av`).",
            |p| {
                p.reported
                    .as_ref()
                    .and_then(|r| r.ack.as_ref())
                    .map_or(Value::Null, |a| a.version.into())
            },
        ),
        (
            "ackDescription",
            TypeRef::named(TypeRef::STRING),
            "The device's acknowledgement description (`ad`).",
            |p| {
                p.reported
                    .as_ref()
                    .and_then(|r| r.ack.as_ref())
                    .and_then(|a| a.description.clone())
                    .map_or(Value::Null, Value::from)
            },
        ),
        (
            "inDelta",
            TypeRef::named_nn(TypeRef::BOOLEAN),
            "Whether the desired value differs from the reported one.",
            |p| p.in_delta().into(),
        ),
    ];
    let mut obj = Object::new("PropertyMetadata")
        .description("Versions, times and acknowledgement of one property's values.")
        .field(
            Field::new("ackStatus", TypeRef::named_nn("AckStatus"), |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<PropState>()?;
                    let s = match p.ack_status() {
                        AckStatus::None => "NONE",
                        AckStatus::Pending => "PENDING",
                        AckStatus::Acknowledged => "ACKNOWLEDGED",
                        AckStatus::Failed => "FAILED",
                    };
                    Ok(Some(FieldValue::value(async_graphql::Value::Enum(
                        async_graphql::Name::new(s),
                    ))))
                })
            })
            .description("Where the desired value stands with the device."),
        );
    for (name, ty, doc, f) in defs {
        obj = obj.field(
            Field::new(name, ty, move |ctx| {
                FieldFuture::new(async move {
                    let p = ctx.parent_value.try_downcast_ref::<PropState>()?;
                    match f(p) {
                        Value::Null => Ok(None),
                        v => Ok(Some(FieldValue::value(to_gql(v)?))),
                    }
                })
            })
            .description(doc),
        );
    }
    let status = Enum::new("AckStatus")
        .description("Acknowledgement of a desired value (IoT Plug and Play ac/av convention).")
        .item(EnumItem::new("NONE").description("No desired value is set."))
        .item(
            EnumItem::new("PENDING")
                .description("Not (yet) acknowledged at the current desired version."),
        )
        .item(EnumItem::new("ACKNOWLEDGED").description("Acknowledged with a 2xx code."))
        .item(EnumItem::new("FAILED").description("Rejected by the device (4xx/5xx)."));
    [obj.into(), status.into()]
}

/// Names of all contents of an Interface and of everything extending it
/// that arrived with it or before (a later upload's subtypes yield to it).
fn family_names(models: &ModelSet, order: &ModelOrder) -> HashMap<String, HashSet<String>> {
    let mut family: HashMap<String, HashSet<String>> = HashMap::new();
    for i in models.interfaces() {
        let rank = order.rank(&i.id);
        for a in i.ancestors.iter().chain(std::iter::once(&i.id)) {
            if order.rank(a) < rank {
                continue;
            }
            family
                .entry(a.clone())
                .or_default()
                .extend(i.contents.iter().map(|c| c.name.clone()));
        }
    }
    family
}

fn content_doc(what: &str, c: &Content) -> String {
    let mut doc = describe(&format!("{what} `{}`", c.name), &c.docs);
    if let Some(s) = &c.semantic_type {
        doc.push_str(&format!(" Semantic type: {s}."));
    }
    if let Some(u) = &c.unit {
        doc.push_str(&format!(" Unit: {u}."));
    }
    doc
}

/// The compiler's state while it walks the model set.
struct Compiler<'m> {
    models: &'m ModelSet,
    names: BTreeMap<String, TypeNames>,
    family: HashMap<String, HashSet<String>>,
    namer: Namer,
    schemas: Schemas,
    types: Vec<Type>,
    /// Component object types made so far (Interface DTMI → type name).
    components: HashMap<String, String>,
    /// Relationship specs made so far ((declaring DTMI, name) → field type, spec).
    relationships: HashMap<(String, String), (TypeRef, Arc<RelSpec>)>,
    wheres: HashMap<String, Arc<WhereSpec>>,
    /// (Interface DTMI, suffix) → derived type name.
    derived: HashMap<(String, String), String>,
    /// Largest page of a list or connection.
    max_page: usize,
    /// When each Interface arrived.
    order: &'m ModelOrder,
    /// [`Compiler::inherited`], by DTMI.
    inherited: HashMap<String, HashSet<String>>,
}

impl Compiler<'_> {
    /// What the fields of `content` must avoid: the DTDL names of its
    /// declaring Interface's family, and the fields it inherits from
    /// Interfaces of earlier uploads.
    fn taken(&mut self, content: &Content) -> Taken {
        Taken {
            dtdl: self
                .family
                .get(&content.defined_in)
                .cloned()
                .unwrap_or_default(),
            inherited: self.inherited(&content.defined_in),
        }
    }

    /// The field names of `dtmi`'s twin type that come from contents it
    /// inherits from Interfaces of earlier uploads (as those name them).
    /// Empty for the models a server starts with: within one upload, an
    /// ancestor's names already avoid its descendants' (the family).
    fn inherited(&mut self, dtmi: &str) -> HashSet<String> {
        if let Some(known) = self.inherited.get(dtmi) {
            return known.clone();
        }
        let rank = self.order.rank(dtmi);
        let older: Vec<Arc<Content>> = self
            .models
            .interface(dtmi)
            .map(|i| {
                i.contents
                    .iter()
                    .filter(|c| c.defined_in != dtmi && self.order.rank(&c.defined_in) < rank)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let mut out = HashSet::new();
        for c in older {
            let taken = self.taken(&c);
            let base = field_base(&c.name, &taken);
            if let ContentKind::Property { .. } | ContentKind::Telemetry { .. } = c.kind {
                for suffix in ["Metadata", "Desired", "Delta", "Series"] {
                    out.insert(derived(&base, suffix, &taken));
                }
            }
            out.insert(base);
        }
        self.inherited.insert(dtmi.to_owned(), out.clone());
        out
    }

    /// The name of a type derived from an Interface's (`PumpWhere`): the
    /// plain concatenation unless that is taken (by an Interface named
    /// so, say), then with `_` appended.
    fn derived_name(&self, dtmi: &str, suffix: &str) -> String {
        self.derived
            .get(&(dtmi.to_owned(), suffix.to_owned()))
            .cloned()
            .unwrap_or_else(|| format!("{}{suffix}", self.name_of(dtmi)))
    }

    fn name_of(&self, dtmi: &str) -> &str {
        self.names
            .get(dtmi)
            .map_or("Twin", |n| n.interface.as_str())
    }

    /// Hint for inline schemas of a content: declaring type + content name.
    fn hint(&self, c: &Content) -> String {
        format!("{}{}", self.name_of(&c.defined_in), upper_first(&c.name))
    }

    /// The fields of a property or telemetry; `taken` are the names derived
    /// names must avoid. A numeric one has its time series too.
    fn property_specs(&mut self, c: &Content, taken: &Taken) -> Vec<Spec> {
        let (schema, writable, what) = match &c.kind {
            ContentKind::Property { schema, writable } => (
                schema,
                *writable,
                if *writable {
                    "Writable property"
                } else {
                    "Property"
                },
            ),
            ContentKind::Telemetry { schema } => (schema, false, "Telemetry"),
            _ => return Vec::new(),
        };
        let hint = self.hint(c);
        let ty = self.schemas.output(&mut self.namer, schema, &hint);
        let base = field_base(&c.name, taken);
        let doc = content_doc(what, c);
        let s = Arc::new(schema.clone());
        let mut specs = vec![
            Spec {
                name: base.clone(),
                ty: ty.clone(),
                doc: format!("{doc} Reported value."),
                args: Vec::new(),
                read: Read::Reported(s.clone(), c.name.clone()),
            },
            Spec {
                name: derived(&base, "Metadata", taken),
                ty: TypeRef::named("PropertyMetadata"),
                doc: format!("Versions, times and acknowledgement of `{}`.", c.name),
                args: Vec::new(),
                read: Read::Metadata(c.name.clone()),
            },
        ];
        if matches!(schema, Schema::Primitive { primitive } if primitive.is_numeric()) {
            specs.push(Spec {
                name: derived(&base, "Series", taken),
                ty: TypeRef::named_nn_list_nn("SeriesPoint"),
                doc: format!(
                    "The time series of `{}` at source time, raw or one point per `step`.",
                    c.name
                ),
                args: super::trend::window_args(),
                read: Read::Series(c.name.clone()),
            });
        }
        if writable {
            specs.push(Spec {
                name: derived(&base, "Desired", taken),
                ty: ty.clone(),
                doc: format!("{doc} Desired value."),
                args: Vec::new(),
                read: Read::Desired(s.clone(), c.name.clone()),
            });
            specs.push(Spec {
                name: derived(&base, "Delta", taken),
                ty,
                doc: format!("{doc} Desired value, while it differs from the reported one."),
                args: Vec::new(),
                read: Read::Delta(s, c.name.clone()),
            });
        }
        specs
    }

    /// The object type of Components whose schema is `dtmi`.
    fn component_type(&mut self, dtmi: &str) -> String {
        if let Some(n) = self.components.get(dtmi) {
            return n.clone();
        }
        let name = self.derived_name(dtmi, "Component");
        self.components.insert(dtmi.to_owned(), name.clone());
        let Some(iface) = self.models.interface(dtmi) else {
            return "JSON".to_owned();
        };
        let taken = Taken::of(iface.contents.iter().map(|c| c.name.clone()).collect());
        let mut obj = Object::new(&name).description(describe(
            &format!("A Component whose schema is DTDL Interface `{dtmi}`"),
            &iface.docs,
        ));
        let mut any = false;
        for c in &iface.contents {
            for spec in self.property_specs(c, &taken) {
                obj = obj.field(spec.field());
                any = true;
            }
        }
        if !any {
            obj = obj.field(
                Field::new("empty", TypeRef::named(TypeRef::BOOLEAN), |_| {
                    FieldFuture::new(async move { Ok(None::<FieldValue<'_>>) })
                })
                .description(
                    "The Component's Interface declares no properties or telemetry; always null.",
                ),
            );
        }
        self.types.push(obj.into());
        name
    }

    fn relationship_spec(&mut self, c: &Content) -> Option<Spec> {
        let ContentKind::Relationship {
            target, properties, ..
        } = &c.kind
        else {
            return None;
        };
        let key = (c.defined_in.clone(), c.name.clone());
        let (ty, spec) = match self.relationships.get(&key) {
            Some(x) => x.clone(),
            None => {
                let base = self.namer.claim(&self.hint(c), &["Connection", "Edge"]);
                let node = target
                    .as_deref()
                    .filter(|t| self.names.contains_key(*t))
                    .map_or_else(|| "Twin".to_owned(), |t| self.name_of(t).to_owned());
                let fixed = [
                    "cursor",
                    "node",
                    "relationshipId",
                    "properties",
                    "relationshipVersion",
                    "createdAt",
                ];
                let mut props = Vec::new();
                let edge_names = Taken::of(properties.iter().map(|p| p.name.clone()).collect());
                for p in properties {
                    let schema = match &p.kind {
                        ContentKind::Property { schema, .. } => schema,
                        _ => continue,
                    };
                    let hint = format!("{base}{}", upper_first(&p.name));
                    let ty = self.schemas.output(&mut self.namer, schema, &hint);
                    let field = field_name(&p.name, &fixed, &edge_names);
                    props.push((
                        field,
                        ty,
                        content_doc("Relationship property", p),
                        Arc::new(schema.clone()),
                        p.name.clone(),
                    ));
                }
                let conn = format!("{base}Connection");
                self.types.extend(
                    relationship_types(&conn, &format!("{base}Edge"), &node, props).map(Type::from),
                );
                let spec = Arc::new(RelSpec {
                    name: c.name.clone(),
                    max_page: self.max_page,
                    target_where: target.as_ref().and_then(|t| self.wheres.get(t).cloned()),
                });
                let x = (TypeRef::named_nn(conn), spec);
                self.relationships.insert(key, x.clone());
                x
            }
        };
        let where_ty = match target.as_deref().and_then(|t| self.names.get(t)) {
            Some(_)
                if self
                    .wheres
                    .contains_key(target.as_deref().unwrap_or_default()) =>
            {
                TypeRef::named(self.derived_name(target.as_deref().unwrap_or_default(), "Where"))
            }
            _ => TypeRef::named("JSON"),
        };
        let mut doc = content_doc("Relationship", c);
        if let Some(t) = target {
            doc.push_str(&format!(" Target: `{t}`."));
        }
        let taken = self.taken(c);
        Some(Spec {
            name: field_base(&c.name, &taken),
            ty,
            doc,
            args: std::iter::once((
                "where",
                where_ty,
                "Only relationships whose target matches.",
            ))
            .chain(page_arguments())
            .collect(),
            read: Read::Relationship(spec),
        })
    }

    /// Every typed field of twins of `iface`.
    fn twin_specs(&mut self, iface: &DtdlInterface) -> Vec<Spec> {
        let mut specs = Vec::new();
        for c in &iface.contents {
            let taken = self.taken(c);
            match &c.kind {
                ContentKind::Property { .. } | ContentKind::Telemetry { .. } => {
                    specs.extend(self.property_specs(c, &taken));
                }
                ContentKind::Component { schema } => {
                    let ty = self.component_type(schema);
                    specs.push(Spec {
                        name: field_base(&c.name, &taken),
                        ty: TypeRef::named_nn(ty),
                        doc: content_doc("Component", c),
                        args: Vec::new(),
                        read: Read::Component(c.name.clone()),
                    });
                }
                ContentKind::Relationship { .. } => specs.extend(self.relationship_spec(c)),
                ContentKind::Command { .. } => {}
            }
        }
        specs.push(Spec {
            name: INCOMING.to_owned(),
            ty: TypeRef::named_nn("RelationshipConnection"),
            doc: "Relationships pointing at this twin, in (source, id) order.".to_owned(),
            args: std::iter::once((
                "name",
                TypeRef::named(TypeRef::STRING),
                "Only relationships of this name.",
            ))
            .chain(page_arguments())
            .collect(),
            read: Read::Incoming(self.max_page),
        });
        specs
    }
}

/// Registers the typed schema of `models` (see [`compile`]); answers which
/// object type each model's twins take.
pub(super) fn register(
    b: &mut Builder,
    models: &ModelSet,
    order: &ModelOrder,
    reserved: &Reserved,
) -> TwinTypes {
    let compiled = compile(models, order, reserved, b.limits.max_page);
    for ty in compiled.types {
        b.register(ty);
    }
    for f in compiled.queries {
        b.query(f);
    }
    for f in compiled.mutations {
        b.mutation(f);
    }
    compiled.twin_types
}

/// The typed types of `models`, which object type each model's twins take,
/// and the per-model query and mutation fields, none named like what
/// `reserved` holds; pages hold at most `max_page` items. Interfaces are
/// compiled rank by rank (see [`ModelOrder`]): every name one rank takes
/// is taken for the next.
fn compile(
    models: &ModelSet,
    order: &ModelOrder,
    reserved: &Reserved,
    max_page: usize,
) -> Compiled {
    let mut namer = Namer::default();
    for n in &reserved.types {
        namer.reserve(n.clone());
    }
    let mut c = Compiler {
        models,
        names: BTreeMap::new(),
        family: family_names(models, order),
        namer,
        schemas: Schemas::default(),
        types: Vec::new(),
        components: HashMap::new(),
        relationships: HashMap::new(),
        wheres: HashMap::new(),
        derived: HashMap::new(),
        max_page,
        order,
        inherited: HashMap::new(),
    };
    for ty in values::shared_types()
        .into_iter()
        .chain(metadata_types())
        .chain([model_api::invocation_type(), aggregates::number_type()])
    {
        c.namer.reserve(type_name(&ty));
        c.types.push(ty);
    }
    let mut ranks: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for i in models.interfaces() {
        ranks
            .entry(order.rank(&i.id))
            .or_default()
            .push(i.id.clone());
    }
    let mut objects = BTreeMap::new();
    let mut api = model_api::Api::new(&reserved.queries, &reserved.mutations);
    for dtmis in ranks.into_values() {
        let names = names::assign(dtmis.iter().map(String::as_str), |n| c.namer.is_taken(n));
        for n in names.values() {
            c.namer.reserve(n.interface.clone());
            c.namer.reserve(n.object.clone());
        }
        for (dtmi, n) in &names {
            for suffix in DERIVED {
                let name = c.namer.exact(format!("{}{suffix}", n.interface));
                c.derived.insert((dtmi.clone(), suffix.to_owned()), name);
            }
        }
        c.names.extend(names);
        // Filters first: relationship fields take their target's (which
        // arrived with them or before).
        for dtmi in &dtmis {
            if let Some(iface) = models.interface(dtmi) {
                let (spec, ty) = model_api::where_type(&mut c, iface);
                c.wheres.insert(dtmi.clone(), Arc::new(spec));
                c.types.push(ty);
            }
        }
        for dtmi in &dtmis {
            let Some(iface) = models.interface(dtmi) else {
                continue;
            };
            let n = c.names[dtmi].clone();
            let doc = describe(&format!("DTDL Interface `{dtmi}`"), &iface.docs);
            let specs = c.twin_specs(iface);
            let mut gi = Interface::new(&n.interface)
                .description(doc.clone())
                .implement("Node")
                .implement("Twin");
            let mut obj = Object::new(&n.object)
                .description(format!("A twin whose model is exactly {doc}."))
                .implement("Node")
                .implement("Twin")
                .implement(&n.interface);
            for a in &iface.ancestors {
                if let Some(an) = c.names.get(a) {
                    gi = gi.implement(&an.interface);
                    obj = obj.implement(&an.interface);
                }
            }
            for (name, ty, fdoc, f) in twin_fields() {
                gi = gi.field(InterfaceField::new(name, ty.clone()).description(fdoc));
                obj = obj.field(twin_field(name, ty, f).description(fdoc));
            }
            gi = gi
                .field(super::views::twin_device_interface_field())
                .field(super::views::twin_health_interface_field())
                .field(super::views::twin_alarms_interface_field())
                .field(super::views::twin_lifecycle_interface_field())
                .field(super::views::twin_kpis_interface_field());
            obj = obj
                .field(super::views::twin_device_field())
                .field(super::views::twin_health_field())
                .field(super::views::twin_alarms_field())
                .field(super::views::twin_lifecycle_field())
                .field(super::views::twin_kpis_field());
            for s in &specs {
                gi = gi.field(s.interface_field());
                obj = obj.field(s.field_undocumented());
            }
            c.types.push(Type::from(gi));
            c.types.push(Type::from(obj));
            objects.insert(dtmi.clone(), n.object.clone());
            api.add_model(&mut c, iface, &n);
        }
    }
    let (queries, mutations, api_types) = api.finish();
    let mut types = c.types;
    types.extend(c.schemas.types);
    types.extend(api_types);
    Compiled {
        types,
        twin_types: TwinTypes::new(objects),
        queries,
        mutations,
    }
}

/// The name of a GraphQL type.
pub(crate) fn type_name(ty: &Type) -> String {
    match ty {
        Type::Scalar(t) => t.type_name(),
        Type::Object(t) => t.type_name(),
        Type::InputObject(t) => t.type_name(),
        Type::Enum(t) => t.type_name(),
        Type::Interface(t) => t.type_name(),
        Type::Union(t) => t.type_name(),
        Type::Subscription(t) => t.type_name(),
        Type::Upload => "Upload",
    }
    .to_owned()
}
