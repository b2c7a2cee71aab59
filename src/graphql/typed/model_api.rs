//! Per-model queries and mutations of the typed schema.
//!
//! For an Interface named `Pump` (see [`crate::graphql::names`]):
//! - `pump(id, asOf): Pump`: one twin, null unless it is a Pump (or a subtype);
//! - `pumps(where: PumpWhere, orderBy: [PumpSort!], first, after): PumpConnection!`:
//!   pumps and subtypes; `PumpWhere` has a typed filter per property with a
//!   filterable schema (primitives and Enums; reported values under the
//!   property's name, desired ones under `<name>Desired`), `id`, and
//!   `and`/`or`/`not`; `orderBy` sorts by reported values then id (absent
//!   values last); cursors are opaque;
//! - `createPump(id, reported: PumpInput, desired: PumpDesiredInput): PumpTwin!`;
//! - `updatePump(id, reported, desired, ifVersion, sourceTime): Pump!`: both
//!   patches in one atomic batch (`null` removes a property);
//! - a mutation per Command, on the Interface that declares it:
//!   `equipmentStart(id, ...request)`, recording a `commandInvoked` event
//!   for devices to pick up (from `events`/`twinChanged` subscriptions).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputObject, InputValue, ResolverContext, Type, TypeRef,
};
use async_graphql::{Error, Value as GqlValue};
use serde_json::{Map, Value, json};

use super::aggregates::{self, AggregateSpec};
use super::values::{filter_ops, parse, upper_first};
use super::{Compiler, derived, field_base, field_name, twin_fixed};
use crate::codes::Code;
use crate::dtdl::model::{Content, ContentKind, Interface as DtdlInterface, Schema};
use crate::graphql::connection::{
    PageArgs, connection, twin_page, twin_total, with_page_arguments,
};
use crate::graphql::context::{
    actor_of, long_arg, store_of, time_arg, twin_arg, twin_ref, twin_value, types_of,
};
use crate::graphql::errors::{bad_request, device_error, not_found, store_error};
use crate::graphql::names::TypeNames;
use crate::store::{AggregateQuery, At, GraphStore};
use crate::twin::filter::Filter;
use crate::twin::order::SortKey;
use crate::twin::{Batch, Change, Op, Twin, format_time};

/// How a typed `where` maps onto the JSON filter: field → (path, schema).
#[derive(Debug, Default)]
pub struct WhereSpec {
    fields: HashMap<String, (String, Arc<Schema>)>,
}

impl WhereSpec {
    /// The checked filter of a `<Name>Where` value.
    pub(super) fn filter(&self, v: &GqlValue) -> Result<Filter, Error> {
        let json = self.to_json(v, "where").map_err(bad_request)?;
        Filter::parse(&json).map_err(|e| bad_request(format!("where: {e}")))
    }

    fn to_json(&self, v: &GqlValue, at: &str) -> Result<Value, String> {
        let GqlValue::Object(m) = v else {
            return Err(format!("{at}: a filter is an object"));
        };
        let mut all = Vec::new();
        for (k, x) in m {
            if matches!(x, GqlValue::Null) {
                continue;
            }
            let path = format!("{at}.{k}");
            all.push(match (k.as_str(), x) {
                ("and" | "or", GqlValue::List(items)) => {
                    let parts = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.to_json(item, &format!("{path}[{i}]")))
                        .collect::<Result<Vec<_>, _>>()?;
                    json!({ k.as_str(): parts })
                }
                ("and" | "or", single) => json!({ k.as_str(): [self.to_json(single, &path)?] }),
                ("not", x) => json!({ "not": self.to_json(x, &path)? }),
                (f, x) => {
                    let (target, ops) = if f == "id" {
                        ("id", id_ops(x)?)
                    } else {
                        let (target, schema) = self
                            .fields
                            .get(f)
                            .ok_or_else(|| format!("{path}: no such filter field"))?;
                        (target.as_str(), filter_ops(schema, x, &path)?)
                    };
                    // Only null operators (optional variables left out): no test.
                    if ops.as_object().is_some_and(Map::is_empty) {
                        continue;
                    }
                    json!({ target: ops })
                }
            });
        }
        Ok(json!({ "and": all }))
    }
}

/// An `IDFilter` value as JSON operators, null ones left out.
fn id_ops(v: &GqlValue) -> Result<Value, String> {
    let GqlValue::Object(m) = v else {
        return Err("id: a filter is an object of operators".to_owned());
    };
    let mut out = Map::new();
    for (op, arg) in m {
        if !matches!(arg, GqlValue::Null) {
            out.insert(
                op.to_string(),
                arg.clone().into_json().map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(Value::Object(out))
}

/// The filterable schema of a property, if any.
fn filterable(schema: &Schema) -> bool {
    matches!(schema, Schema::Primitive { .. } | Schema::Enum { .. })
}

/// `<Name>Where` of an Interface.
pub(super) fn where_type(c: &mut Compiler<'_>, iface: &DtdlInterface) -> (WhereSpec, Type) {
    let name = c.derived_name(&iface.id, "Where");
    let mut spec = WhereSpec::default();
    let mut input = InputObject::new(&name)
        .description(format!(
            "A filter of {} twins: every given field must hold.",
            c.name_of(&iface.id)
        ))
        .field(InputValue::new("id", TypeRef::named("IDFilter")))
        .field(InputValue::new("and", TypeRef::named_nn_list(&name)).description("All must hold."))
        .field(InputValue::new("or", TypeRef::named_nn_list(&name)).description("One must hold."))
        .field(InputValue::new("not", TypeRef::named(&name)).description("Must not hold."));
    for content in &iface.contents {
        let (schema, writable) = match &content.kind {
            ContentKind::Property { schema, writable } => (schema, *writable),
            ContentKind::Telemetry { schema } => (schema, false),
            _ => continue,
        };
        if !filterable(schema) {
            continue;
        }
        let hint = c.hint(content);
        let Some(ty) = c.schemas.filter(&mut c.namer, schema, &hint) else {
            continue;
        };
        let taken = c.taken(content);
        let mut fixed = twin_fixed();
        fixed.extend(["and", "or", "not"]);
        let base = field_name(&content.name, &fixed, &taken);
        let schema = Arc::new(schema.clone());
        spec.fields.insert(
            base.clone(),
            (format!("reported.{}", content.name), schema.clone()),
        );
        input = input.field(
            InputValue::new(&base, ty.clone())
                .description(format!("Tests of the reported `{}`.", content.name)),
        );
        if writable {
            let d = derived(&base, "Desired", &taken);
            spec.fields
                .insert(d.clone(), (format!("desired.{}", content.name), schema));
            input = input.field(
                InputValue::new(&d, ty)
                    .description(format!("Tests of the desired `{}`.", content.name)),
            );
        }
    }
    (spec, input.into())
}

/// A typed input (`PumpInput`, `DriveUnitComponentDesiredInput`): field →
/// what it sets.
#[derive(Debug, Default)]
struct InputSpec {
    fields: HashMap<String, Target>,
}

#[derive(Debug)]
enum Target {
    Property(String, Arc<Schema>),
    Component(String, Arc<InputSpec>),
}

impl InputSpec {
    /// The JSON patch a typed input value stands for.
    fn patch(&self, v: &GqlValue, at: &str) -> Result<Value, String> {
        let GqlValue::Object(m) = v else {
            return Err(format!("{at}: expected an object"));
        };
        let mut out = Map::new();
        for (k, x) in m {
            let path = format!("{at}.{k}");
            match self.fields.get(k.as_str()) {
                Some(Target::Property(name, schema)) => {
                    out.insert(name.clone(), parse(schema, x, &path)?);
                }
                Some(Target::Component(name, inner)) => {
                    if !matches!(x, GqlValue::Null) {
                        out.insert(name.clone(), inner.patch(x, &path)?);
                    }
                }
                None => return Err(format!("{path}: no such field")),
            }
        }
        Ok(Value::Object(out))
    }
}

/// The ordering of a typed list: sort field → path.
#[derive(Debug, Default)]
struct SortSpec {
    fields: HashMap<String, Vec<String>>,
}

/// `lowerFirst` for field names: `Pump` → `pump`, `HVACSystem` → `hvacSystem`.
fn lower_first(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let upper = chars.iter().take_while(|c| c.is_ascii_uppercase()).count();
    let lower = match upper {
        0 => 0,
        n if n == chars.len() => n,
        1 => 1,
        // `HVACSystem`: the last capital starts the next word.
        n => n - 1,
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < lower {
                c.to_ascii_lowercase()
            } else {
                *c
            }
        })
        .collect()
}

/// A plain English plural: `pump` → `pumps`, `battery` → `batteries`, `switch` → `switches`.
fn plural(s: &str) -> String {
    let vowel = |c: char| "aeiouAEIOU".contains(c);
    if s.ends_with('s')
        || s.ends_with('x')
        || s.ends_with('z')
        || s.ends_with("ch")
        || s.ends_with("sh")
    {
        format!("{s}es")
    } else if let Some(stem) = s.strip_suffix('y')
        && stem
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphabetic() && !vowel(c))
    {
        format!("{stem}ies")
    } else {
        format!("{s}s")
    }
}

/// A typed input made: what it sets, and its type name.
type MadeInput = Option<(Arc<InputSpec>, String)>;

/// Names already used in one root type.
struct RootNames(HashSet<String>);

impl RootNames {
    fn claim(&mut self, name: String) -> String {
        let mut n = name;
        while self.0.contains(&n) {
            n.push('_');
        }
        self.0.insert(n.clone());
        n
    }
}

/// The per-model fields and types under construction.
pub(super) struct Api {
    queries: Vec<Field>,
    mutations: Vec<Field>,
    types: Vec<Type>,
    query_names: RootNames,
    mutation_names: RootNames,
    /// Component inputs made so far: (Interface DTMI, desired?) → spec and type name.
    component_inputs: HashMap<(String, bool), MadeInput>,
}

/// Whether a twin of `model` is a `dtmi`.
fn is_a(store: &Arc<dyn GraphStore>, model: &str, dtmi: &str) -> bool {
    store
        .models()
        .interface(model)
        .is_some_and(|m| m.is_a(dtmi))
}

impl Api {
    pub fn new(query_taken: &HashSet<String>, mutation_taken: &HashSet<String>) -> Api {
        let set = |names: &HashSet<String>| RootNames(names.clone());
        Api {
            queries: Vec::new(),
            mutations: Vec::new(),
            types: Vec::new(),
            query_names: set(query_taken),
            mutation_names: set(mutation_taken),
            component_inputs: HashMap::new(),
        }
    }

    pub fn finish(self) -> (Vec<Field>, Vec<Field>, Vec<Type>) {
        (self.queries, self.mutations, self.types)
    }

    /// An input over the properties of `iface` (all, or the writable ones
    /// when `desired`), Components nested; `None` when it has none.
    fn input(
        &mut self,
        c: &mut Compiler<'_>,
        iface: &DtdlInterface,
        name: &str,
        desired: bool,
        components: bool,
    ) -> MadeInput {
        let mut spec = InputSpec::default();
        let mut input = InputObject::new(name).description(if desired {
            format!(
                "Desired values of writable properties of {}.",
                c.name_of(&iface.id)
            )
        } else {
            format!("Reported values of {}.", c.name_of(&iface.id))
        });
        for content in &iface.contents {
            let taken = c.taken(content);
            let base = field_base(&content.name, &taken);
            match &content.kind {
                ContentKind::Property { schema, writable } if *writable || !desired => {
                    let hint = c.hint(content);
                    let ty = c.schemas.input(&mut c.namer, schema, &hint);
                    input = input.field(
                        InputValue::new(&base, ty)
                            .description(format!("`{}` (null removes it).", content.name)),
                    );
                    spec.fields.insert(
                        base,
                        Target::Property(content.name.clone(), Arc::new(schema.clone())),
                    );
                }
                ContentKind::Telemetry { schema } if !desired => {
                    let hint = c.hint(content);
                    let ty = c.schemas.input(&mut c.namer, schema, &hint);
                    input = input.field(InputValue::new(&base, ty));
                    spec.fields.insert(
                        base,
                        Target::Property(content.name.clone(), Arc::new(schema.clone())),
                    );
                }
                ContentKind::Component { schema } if components => {
                    if let Some((inner, ty)) = self.component_input(c, schema, desired) {
                        input = input.field(InputValue::new(&base, TypeRef::named(ty)));
                        spec.fields
                            .insert(base, Target::Component(content.name.clone(), inner));
                    }
                }
                _ => {}
            }
        }
        if spec.fields.is_empty() {
            return None;
        }
        self.types.push(input.into());
        Some((Arc::new(spec), name.to_owned()))
    }

    fn component_input(&mut self, c: &mut Compiler<'_>, dtmi: &str, desired: bool) -> MadeInput {
        let key = (dtmi.to_owned(), desired);
        if let Some(x) = self.component_inputs.get(&key) {
            return x.clone();
        }
        let iface = c.models.interface(dtmi)?;
        let name = c.derived_name(
            dtmi,
            if desired {
                "ComponentDesiredInput"
            } else {
                "ComponentInput"
            },
        );
        let made = self.input(c, iface, &name, desired, false);
        self.component_inputs.insert(key, made.clone());
        made
    }

    /// The fields of one model.
    pub fn add_model(&mut self, c: &mut Compiler<'_>, iface: &DtdlInterface, n: &TypeNames) {
        let dtmi = iface.id.clone();
        let lower = lower_first(&n.interface);
        let where_spec = c.wheres.get(&dtmi).cloned().unwrap_or_default();

        // Lookup.
        let d = dtmi.clone();
        self.queries.push(
            Field::new(self.query_names.claim(lower.clone()), TypeRef::named(&n.interface), move |ctx| {
                let dtmi = d.clone();
                FieldFuture::new(async move {
                    let t = twin_arg(&ctx).await?;
                    let store = store_of(&ctx)?;
                    let types = types_of(&ctx)?;
                    Ok(t.filter(|t| is_a(store, &t.model, &dtmi))
                        .map(|t| twin_value(types, t)))
                })
            })
            .description(format!(
                "One {} (or subtype) by id; with `asOf`, its state as it was then (its relationship fields show the current graph). Null when missing or of another model.",
                n.interface
            ))
            .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
            .argument(InputValue::new("asOf", TypeRef::named("DateTime"))),
        );

        // Sort input (and what the aggregate types offer).
        let mut sort = SortSpec::default();
        let mut aggregate_spec = AggregateSpec::default();
        let sort_name = c.derived_name(&dtmi, "Sort");
        let mut sort_input = InputObject::new(&sort_name)
            .description("Sort keys, applied in the order given; ties by id.")
            .field(InputValue::new("id", TypeRef::named("SortDirection")));
        sort.fields.insert("id".to_owned(), vec!["id".to_owned()]);
        for content in &iface.contents {
            let schema = match &content.kind {
                ContentKind::Property { schema, .. } | ContentKind::Telemetry { schema } => schema,
                _ => continue,
            };
            if filterable(schema) {
                let taken = c.taken(content);
                let base = field_base(&content.name, &taken);
                aggregate_spec.add(&base, &content.name, schema);
                sort_input =
                    sort_input.field(InputValue::new(&base, TypeRef::named("SortDirection")));
                sort.fields
                    .insert(base, vec!["reported".to_owned(), content.name.clone()]);
            }
        }
        self.types.push(sort_input.into());

        // Connection.
        let conn = c.derived_name(&dtmi, "Connection");
        let edge = c.derived_name(&dtmi, "Edge");
        let [connection_type, edge_type] = connection::<Twin>(
            &conn,
            &edge,
            &n.interface,
            |ctx, t| Ok(twin_ref(types_of(ctx)?, t)),
            "The twin.",
            Vec::new(),
            twin_total(),
        );
        self.types.push(connection_type.into());
        self.types.push(edge_type.into());

        // List.
        let (d, ws, sort) = (dtmi.clone(), where_spec.clone(), Arc::new(sort));
        let max_page = c.max_page;
        self.queries.push(with_page_arguments(
            Field::new(
                self.query_names.claim(plural(&lower)),
                TypeRef::named_nn(&conn),
                move |ctx| {
                    let (dtmi, ws, sort) = (d.clone(), ws.clone(), sort.clone());
                    FieldFuture::new(async move { list(&ctx, &dtmi, &ws, &sort, max_page).await })
                },
            )
            .description(format!(
                "{} twins (subtypes included), filtered and ordered; a Relay connection.",
                n.interface
            ))
            .argument(InputValue::new(
                "where",
                TypeRef::named(c.derived_name(&dtmi, "Where")),
            ))
            .argument(
                InputValue::new("orderBy", TypeRef::named_nn_list(&sort_name))
                    .description("Sort keys in order of precedence; without it, id order."),
            )
            .argument(
                InputValue::new("asOf", TypeRef::named("DateTime")).description(
                    "The list as it was then: the twins that existed, with their state then.",
                ),
            ),
        ));

        // Aggregate.
        let spec = Arc::new(aggregate_spec);
        let agg_name = c.derived_name(&dtmi, "Aggregate");
        self.types.extend(aggregates::types(
            &agg_name,
            &c.derived_name(&dtmi, "Group"),
            &c.derived_name(&dtmi, "GroupField"),
            &n.interface,
            &spec,
        ));
        let (d, ws) = (dtmi.clone(), where_spec);
        self.queries.push(
            Field::new(
                self.query_names
                    .claim(format!("{}Aggregate", plural(&lower))),
                TypeRef::named_nn(&agg_name),
                move |ctx| {
                    let (dtmi, ws, spec) = (d.clone(), ws.clone(), spec.clone());
                    FieldFuture::new(async move {
                        let filter = match ctx.args.get("where") {
                            Some(w) if !w.is_null() => Some(Arc::new(ws.filter(w.as_value())?)),
                            _ => None,
                        };
                        let under = ctx.args.get("under").map(|u| u.string().map(str::to_owned)).transpose()?;
                        let query = AggregateQuery {
                            model: Some(dtmi),
                            subtypes: true,
                            filter,
                            under,
                            at: time_arg(&ctx, "asOf")?.map(At::Time),
                            ..AggregateQuery::default()
                        };
                        Ok(Some(aggregates::asked(&ctx, query, spec)))
                    })
                },
            )
            .description(format!(
                "Counts and aggregates of {} twins (subtypes included) that `where` accepts, optionally only those `under` a twin (contained at any depth); counted by the store.",
                n.interface
            ))
            .argument(InputValue::new(
                "where",
                TypeRef::named(c.derived_name(&dtmi, "Where")),
            ))
            .argument(InputValue::new("under", TypeRef::named(TypeRef::ID)))
            .argument(InputValue::new("asOf", TypeRef::named("DateTime")).description(
                "Counted as the twins were then (`under` reads today's hierarchy).",
            )),
        );

        // Create and update.
        let reported = self.input(c, iface, &c.derived_name(&dtmi, "Input"), false, true);
        let desired = self.input(c, iface, &c.derived_name(&dtmi, "DesiredInput"), true, true);
        let (d, r_spec, d_spec) = (dtmi.clone(), reported.clone(), desired.clone());
        let mut create = Field::new(
            self.mutation_names.claim(format!("create{}", n.interface)),
            TypeRef::named_nn(&n.object),
            move |ctx| {
                let (dtmi, r_spec, d_spec) = (d.clone(), r_spec.clone(), d_spec.clone());
                FieldFuture::new(async move {
                    let store = store_of(&ctx)?;
                    let id = ctx.args.try_get("id")?.string()?.to_owned();
                    let op = Op::CreateTwin {
                        id: id.clone(),
                        model: dtmi,
                        reported: patch_arg(&ctx, "reported", r_spec.as_ref())?,
                        desired: patch_arg(&ctx, "desired", d_spec.as_ref())?,
                    };
                    store
                        .apply(Batch::one(op), &actor_of(&ctx))
                        .await
                        .map_err(|e| store_error(&e))?;
                    // The field's type is the object type itself: no type tag.
                    let t = store.twin(&id).await.map_err(|e| store_error(&e))?;
                    Ok(t.map(FieldValue::owned_any))
                })
            },
        )
        .description(format!("Creates a twin of model `{dtmi}`."))
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)));
        let (d, r_spec, d_spec) = (dtmi.clone(), reported.clone(), desired.clone());
        let mut update = Field::new(
            self.mutation_names.claim(format!("update{}", n.interface)),
            TypeRef::named_nn(&n.interface),
            move |ctx| {
                let (dtmi, r_spec, d_spec) = (d.clone(), r_spec.clone(), d_spec.clone());
                FieldFuture::new(async move { update(&ctx, &dtmi, r_spec, d_spec).await })
            },
        )
        .description(format!(
            "Patches a {} (or subtype): desired and reported values in one atomic batch; null removes a property.",
            n.interface
        ))
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .argument(InputValue::new("ifVersion", TypeRef::named("Long")).description("Fails with VERSION_CONFLICT unless the twin is at this version."))
        .argument(InputValue::new("sourceTime", TypeRef::named("DateTime")).description("When the device observed the reported values."));
        if let Some((_, ty)) = &reported {
            create = create.argument(InputValue::new("reported", TypeRef::named(ty)));
            update = update.argument(InputValue::new("reported", TypeRef::named(ty)));
        }
        if let Some((_, ty)) = &desired {
            create = create.argument(InputValue::new("desired", TypeRef::named(ty)));
            update = update.argument(InputValue::new("desired", TypeRef::named(ty)));
        }
        self.mutations.push(create);
        self.mutations.push(update);

        // Commands (and the commands of Components), on the Interface that declares them.
        for content in iface.contents.iter().filter(|x| x.defined_in == dtmi) {
            match &content.kind {
                ContentKind::Command { .. } => self.command(c, n, &dtmi, None, content),
                ContentKind::Component { schema } => {
                    let Some(inner) = c.models.interface(schema) else {
                        continue;
                    };
                    for cmd in &inner.contents {
                        if matches!(cmd.kind, ContentKind::Command { .. }) {
                            self.command(c, n, &dtmi, Some(&content.name), cmd);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The mutation of one Command (of the twin itself, or of its Component `component`).
    fn command(
        &mut self,
        c: &mut Compiler<'_>,
        n: &TypeNames,
        dtmi: &str,
        component: Option<&str>,
        content: &Content,
    ) {
        let ContentKind::Command { request, .. } = &content.kind else {
            return;
        };
        let stem = format!(
            "{}{}",
            component.map(upper_first).unwrap_or_default(),
            upper_first(&content.name)
        );
        let name = self
            .mutation_names
            .claim(format!("{}{stem}", lower_first(&n.interface)));
        let mut doc = super::content_doc("Command", content);
        if let Some(comp) = component {
            doc.push_str(&format!(" Of the Component `{comp}`."));
        }
        doc.push_str(&format!(
            " Records a `commandInvoked` event for the device of a {} (or subtype) twin; a twin with a device identity gets it as a direct method call (`{{component}}*{{command}}` for a Component's), and the answer carries the device's status and response (`DEVICE_OFFLINE` when it is not connected, nothing recorded; `DEVICE_TIMEOUT` when it does not answer in time).",
            n.interface
        ));
        let request_arg = request.as_ref().map(|p| {
            let hint = format!("{}{stem}{}", n.interface, upper_first(&p.name));
            let ty = c.schemas.input(&mut c.namer, &p.schema, &hint);
            // `id` is the twin's.
            let arg = if p.name == "id" {
                "request".to_owned()
            } else {
                p.name.clone()
            };
            (arg, Arc::new(p.schema.clone()), ty)
        });
        let (d, command, req, comp) = (
            dtmi.to_owned(),
            content.name.clone(),
            request_arg.clone(),
            component.map(str::to_owned),
        );
        let mut field = Field::new(name, TypeRef::named_nn("CommandInvocation"), move |ctx| {
            let (dtmi, command, req, component) =
                (d.clone(), command.clone(), req.clone(), comp.clone());
            FieldFuture::new(async move {
                let store = store_of(&ctx)?;
                let id = ctx.args.try_get("id")?.string()?.to_owned();
                let Some(t) = store.twin(&id).await.map_err(|e| store_error(&e))? else {
                    return Err(not_found(
                        format!("twin {id} does not exist"),
                        Code::TwinNotFound,
                    ));
                };
                if !is_a(store, &t.model, &dtmi) {
                    return Err(not_found(
                        format!("twin {id} is not a {dtmi}"),
                        Code::TwinNotFound,
                    ));
                }
                let request = match &req {
                    Some((arg, schema, _)) => match ctx.args.get(arg) {
                        Some(v) => Some(parse(schema, v.as_value(), arg).map_err(bad_request)?),
                        None => None,
                    },
                    None => None,
                };
                // A twin with a device identity: the device must be
                // connected (to this server or another replica) to get the call.
                let devices = ctx
                    .data_opt::<Arc<crate::devices::Devices>>()
                    .filter(|d| d.registry().of_twin(&id).is_some());
                if let Some(d) = devices
                    && !d.twin_connected(&id)
                {
                    return Err(device_error(&crate::devices::DeviceError::Offline(id)));
                }
                let timeout = match ctx.args.get("timeoutSeconds") {
                    Some(v) if !v.is_null() => {
                        let secs = v.f64()?;
                        if !(secs > 0.0 && secs <= 300.0) {
                            return Err(bad_request("timeoutSeconds must be above 0 and at most 300"));
                        }
                        Some(std::time::Duration::from_secs_f64(secs))
                    }
                    _ => None,
                };
                let method = match &component {
                    Some(c) => format!("{c}*{command}"),
                    None => command.clone(),
                };
                let payload = request.clone().unwrap_or(Value::Null);
                let op = Op::InvokeCommand {
                    id: id.clone(),
                    component,
                    command,
                    request,
                };
                let events = store
                    .apply(Batch::one(op), &actor_of(&ctx))
                    .await
                    .map_err(|e| store_error(&e))?;
                let e = events
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::new("internal error"))?;
                let mut invocation = invocation_json(&e);
                if let Some(d) = devices {
                    let timeout = timeout.unwrap_or_else(|| d.method_timeout());
                    let answer = d
                        .call(&id, &method, payload, timeout)
                        .await
                        .map_err(|e| device_error(&e))?;
                    if let Some(a) = answer {
                        invocation["status"] = json!(a.status);
                        invocation["response"] = a.payload;
                    }
                }
                Ok(Some(FieldValue::owned_any(invocation)))
            })
        })
        .description(doc)
        .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
        .argument(
            InputValue::new("timeoutSeconds", TypeRef::named(TypeRef::FLOAT)).description(
                "How long to wait for the device's answer (a twin with a connected device: a direct method call), up to 300; the server's `devices.method_timeout_seconds` when absent.",
            ),
        );
        if let Some((arg, _, ty)) = request_arg {
            field = field.argument(InputValue::new(arg, ty));
        }
        self.mutations.push(field);
    }
}

/// The `CommandInvocation` record of a `commandInvoked` event.
fn invocation_json(e: &crate::twin::Event) -> Value {
    match &e.change {
        Change::CommandInvoked {
            twin,
            component,
            command,
            request,
            invocation,
        } => json!({
            "invocationId": invocation,
            "twinId": twin,
            "component": component,
            "command": command,
            "request": request,
            "seq": e.seq,
            "time": format_time(e.time),
        }),
        _ => Value::Null,
    }
}

/// The `CommandInvocation` type.
pub(super) fn invocation_type() -> Type {
    let fields: [(&str, TypeRef, &str); 9] = [
        (
            "invocationId",
            TypeRef::named_nn(TypeRef::ID),
            "Unique id of this invocation.",
        ),
        (
            "twinId",
            TypeRef::named_nn(TypeRef::ID),
            "The twin whose device is to run the command.",
        ),
        (
            "component",
            TypeRef::named(TypeRef::STRING),
            "The Component, for a Component's command.",
        ),
        (
            "command",
            TypeRef::named_nn(TypeRef::STRING),
            "The DTDL command name.",
        ),
        (
            "request",
            TypeRef::named("JSON"),
            "The request payload, as stored.",
        ),
        (
            "seq",
            TypeRef::named_nn("Long"),
            "Sequence number of the `commandInvoked` event.",
        ),
        (
            "time",
            TypeRef::named_nn("DateTime"),
            "When it was recorded.",
        ),
        (
            "status",
            TypeRef::named(TypeRef::INT),
            "The device's status for the call (a direct method's, e.g. 200); null when the twin has no device identity (the call is only recorded).",
        ),
        (
            "response",
            TypeRef::named("JSON"),
            "The device's response payload.",
        ),
    ];
    crate::graphql::record::record(
        "CommandInvocation",
        "A command recorded for delivery to a device (a `commandInvoked` event).",
        &fields,
    )
    .field(crate::graphql::record::deprecated_alias(
        "sequence",
        TypeRef::named_nn("Long"),
        "seq",
        crate::graphql::record::SEQ_RENAMED,
    ))
    .into()
}

fn patch_arg(
    ctx: &ResolverContext<'_>,
    name: &str,
    spec: Option<&(Arc<InputSpec>, String)>,
) -> Result<Option<Value>, Error> {
    match (ctx.args.get(name), spec) {
        (Some(v), Some((spec, _))) if !v.is_null() => spec
            .patch(v.as_value(), name)
            .map(Some)
            .map_err(bad_request),
        _ => Ok(None),
    }
}

async fn update(
    ctx: &ResolverContext<'_>,
    dtmi: &str,
    r_spec: MadeInput,
    d_spec: MadeInput,
) -> Result<Option<FieldValue<'static>>, Error> {
    let store = store_of(ctx)?;
    let id = ctx.args.try_get("id")?.string()?.to_owned();
    let Some(t) = store.twin(&id).await.map_err(|e| store_error(&e))? else {
        return Err(not_found(
            format!("twin {id} does not exist"),
            Code::TwinNotFound,
        ));
    };
    if !is_a(store, &t.model, dtmi) {
        return Err(not_found(
            format!("twin {id} is not a {dtmi}"),
            Code::TwinNotFound,
        ));
    }
    let mut expected_version = long_arg(ctx, "ifVersion")?;
    let mut ops = Vec::new();
    if let Some(patch) = patch_arg(ctx, "desired", d_spec.as_ref())? {
        ops.push(Op::PatchDesired {
            id: id.clone(),
            patch,
            expected_version: expected_version.take(),
        });
    }
    if let Some(patch) = patch_arg(ctx, "reported", r_spec.as_ref())? {
        ops.push(Op::PatchReported {
            id: id.clone(),
            patch,
            expected_version: expected_version.take(),
            source_time: time_arg(ctx, "sourceTime")?,
        });
    }
    if ops.is_empty() {
        return Err(bad_request("give reported and/or desired values"));
    }
    store
        .apply(Batch { ops }, &actor_of(ctx))
        .await
        .map_err(|e| store_error(&e))?;
    let t = store.twin(&id).await.map_err(|e| store_error(&e))?;
    let types = types_of(ctx)?;
    Ok(t.map(|t| twin_value(types, t)))
}

/// The typed list, filtered and ordered by the store (cursors carry the
/// sort values, so each page starts where the last one ended).
async fn list(
    ctx: &ResolverContext<'_>,
    dtmi: &str,
    ws: &WhereSpec,
    sort: &SortSpec,
    max_page: usize,
) -> Result<Option<FieldValue<'static>>, Error> {
    let store = store_of(ctx)?;
    let args = PageArgs::read(ctx, max_page)?;
    let filter = match ctx.args.get("where") {
        Some(w) if !w.is_null() => Some(ws.filter(w.as_value())?),
        _ => None,
    };
    let mut order: Vec<SortKey> = Vec::new();
    if let Some(items) = ctx.args.get("orderBy").filter(|o| !o.is_null()) {
        for item in items.list()?.iter() {
            for (field, dir) in item.object()?.iter() {
                if dir.is_null() {
                    continue;
                }
                let path = sort
                    .fields
                    .get(field.as_str())
                    .ok_or_else(|| bad_request(format!("orderBy: cannot sort by {field}")))?;
                order.push(SortKey {
                    path: path.clone(),
                    desc: dir.enum_name()? == "DESC",
                });
            }
        }
    }
    let at = time_arg(ctx, "asOf")?.map(At::Time);
    let page = twin_page(ctx, store, Some(dtmi.to_owned()), filter, order, at, &args).await?;
    Ok(Some(FieldValue::owned_any(page)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_read_naturally() {
        assert_eq!(lower_first("Pump"), "pump");
        assert_eq!(lower_first("HVACSystem"), "hvacSystem");
        assert_eq!(lower_first("ID"), "id");
        assert_eq!(lower_first("PumpV2"), "pumpV2");
        assert_eq!(plural("pump"), "pumps");
        assert_eq!(plural("battery"), "batteries");
        assert_eq!(plural("switch"), "switches");
        assert_eq!(plural("bus"), "buses");
        assert_eq!(plural("relay"), "relays");
    }
}
