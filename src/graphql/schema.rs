//! The assembly: the whole schema, from every feature's `register` in
//! turn, with the data resolvers read. The only module that knows them all.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_graphql::dynamic::{Schema, SchemaBuilder, SchemaError};

use super::builder::{Builder, Recompiler};
use super::context::TwinTypes;
use super::names::{ModelOrder, Reserved, TypeNames};
use crate::dtdl::ModelSet;
use crate::store::GraphStore;

pub use super::builder::Limits;

/// What a schema is built from, besides the models.
#[derive(Debug, Clone)]
pub(super) struct Parts {
    pub store: Arc<dyn GraphStore>,
    pub limits: Limits,
    pub shutdown: super::Shutdown,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub library: Arc<super::upload::ModelLibrary>,
    pub rollouts: Arc<crate::rollout::Rollouts>,
    /// Device identities (none: the device API answers that devices are
    /// not served).
    pub devices: Option<Arc<crate::devices::Devices>>,
    /// Time series (none: `series` answers that this store keeps none).
    pub series: Option<Arc<crate::series::Series>>,
    /// Alarm rules and alarms (none: the alarm API answers that alarms are
    /// not served; twins' health is OK).
    pub alarms: Option<Arc<crate::alarms::Alarms>>,
    /// Asset lifecycles and diagnostics (none: their API answers that
    /// lifecycles are not served; twins have no lifecycle state).
    pub lifecycle: Option<Arc<crate::lifecycle::Lifecycle>>,
}

/// The schema of `models` (ranked by `order`) over the parts' store;
/// `uploadModels` recompiles it through `recompiler`.
pub(super) fn build_schema(
    parts: &Parts,
    models: &ModelSet,
    order: &ModelOrder,
    recompiler: Recompiler,
) -> Result<Schema, SchemaError> {
    let Parts {
        store,
        limits,
        shutdown,
        metrics,
        library,
        rollouts,
        devices,
        series,
        alarms,
        lifecycle,
    } = parts.clone();
    let (builder, twin_types) = assemble(models, order, reserved(), limits);
    let builder = builder
        .data(twin_types)
        .data(super::loader::twins(store.clone()))
        .data(super::loader::relationships(store.clone()))
        .data(super::loader::edges(store.clone()))
        .data(store)
        .data(shutdown)
        .data(metrics)
        .data(library)
        .data(rollouts)
        .data(recompiler)
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity);
    let builder = match devices {
        Some(d) => builder.data(d),
        None => builder,
    };
    let builder = match series {
        Some(s) => builder.data(s),
        None => builder,
    };
    let builder = match alarms {
        Some(a) => builder.data(a),
        None => builder,
    };
    let builder = match lifecycle {
        Some(l) => builder.data(l),
        None => builder,
    };
    let builder = if limits.introspection {
        builder
    } else {
        builder.disable_introspection()
    };
    builder.finish()
}

/// The names the schema takes whatever the models: the generic API's types
/// and root fields, the typed schema's fixed types and GraphQL's own, read
/// off the schema of no models (so the typed schema can never replace one
/// of them, and no list is kept by hand). Computed once.
pub fn reserved() -> &'static Reserved {
    static RESERVED: std::sync::OnceLock<Reserved> = std::sync::OnceLock::new();
    RESERVED.get_or_init(|| {
        let empty = ModelSet::default();
        let (builder, _) = assemble(
            &empty,
            &ModelOrder::default(),
            &Reserved::default(),
            Limits::default(),
        );
        let schema = builder
            .finish()
            .expect("the schema of no models is valid (a unit test builds it)");
        let registry = schema.registry();
        let fields = |root: Option<&str>| -> HashSet<String> {
            root.and_then(|r| registry.types.get(r))
                .and_then(|t| t.fields())
                .map(|f| f.keys().cloned().collect())
                .unwrap_or_default()
        };
        let mut queries = fields(Some(registry.query_type.as_str()));
        queries.extend(["__typename", "__schema", "__type"].map(str::to_owned));
        Reserved {
            types: registry.types.keys().cloned().collect(),
            queries,
            mutations: fields(registry.mutation_type.as_deref()),
        }
    })
}

/// The twin type names the schema of `models` gives each Interface (all
/// of one rank).
pub fn type_names(models: &ModelSet) -> BTreeMap<String, TypeNames> {
    let taken = &reserved().types;
    super::names::assign(models.interfaces().map(|i| i.id.as_str()), |n| {
        taken.contains(n)
    })
}

/// Every type and root field of the schema of `models`, the typed schema's
/// names avoiding `reserved`; no data attached. The order of the features
/// is the order of the root fields.
fn assemble(
    models: &ModelSet,
    order: &ModelOrder,
    reserved: &Reserved,
    limits: Limits,
) -> (SchemaBuilder, TwinTypes) {
    let mut b = Builder::new(limits);
    b.register(super::connection::page_info_type());
    super::twins::register(&mut b);
    super::graph::register(&mut b);
    super::history::register(&mut b);
    super::series::register(&mut b);
    super::live::register(&mut b);
    super::models::register(&mut b);
    super::configurations::register(&mut b);
    super::rollouts::register(&mut b);
    super::drift::register(&mut b);
    super::devices::register(&mut b);
    super::alarms::register(&mut b);
    super::forecast::register(&mut b);
    super::lifecycle::register(&mut b);
    super::kpi::register(&mut b);
    let twin_types = super::typed::register(&mut b, models, order, reserved);
    (b.finish(), twin_types)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reserved names are what the schema of no models registers: the
    /// generic API's types and root fields, the typed schema's fixed types,
    /// GraphQL's own.
    #[test]
    fn reserved_names_are_read_off_the_generic_api() {
        let r = reserved();
        for ty in [
            "Twin",
            "Rollout",
            "Configuration",
            "Event",
            "PageInfo",
            "IntFilter",
            "String",
            "__Type",
        ] {
            assert!(r.types.contains(ty), "{ty}");
        }
        for q in ["twins", "rollouts", "drift", "__typename"] {
            assert!(r.queries.contains(q), "{q}");
        }
        for m in ["createTwin", "startRollout", "uploadModels"] {
            assert!(r.mutations.contains(m), "{m}");
        }
        assert!(!r.types.contains("Pump"), "no model types");
    }
}
