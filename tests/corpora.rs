//! Real DTDL written by others (`models/` of the shared corpora) is accepted.

use std::path::PathBuf;

use twingraph::dtdl::load;
use twingraph::dtdl::{Options, Outcome};

use crate::support::corpus_dir;

fn check_folder(name: &str) -> Outcome {
    let dir = corpus_dir().join("models").join(name);
    let sources = load::read_paths(&[dir]).expect("corpus folder is readable");
    load::check_with_repositories(sources, &[], &Options::default()).expect("no I/O error")
}

fn assert_accepted(name: &str, interfaces: usize) {
    let outcome = check_folder(name);
    let shown: Vec<String> = outcome
        .diagnostics
        .iter()
        .take(10)
        .map(ToString::to_string)
        .collect();
    assert!(
        outcome.diagnostics.is_empty() && outcome.unresolved.is_empty(),
        "{name}: {} error(s), unresolved {:?}:\n{}",
        outcome.diagnostics.len(),
        outcome.unresolved,
        shown.join("\n")
    );
    let model = outcome.model.expect("a valid, complete set has a model");
    assert_eq!(
        model.counts().interfaces,
        interfaces,
        "{name}: interface count"
    );
}

#[test]
fn azure_building_ontology_is_accepted() {
    assert_accepted("azure-building", 768);
}

#[test]
fn azure_energy_grid_ontology_is_accepted() {
    assert_accepted("azure-energygrid", 113);
}

#[test]
fn realestatecore_is_accepted_with_inheritance_flattened() {
    let outcome = check_folder("realestatecore-rec");
    let model = outcome.model.expect("RealEstateCore is valid and complete");
    assert_eq!(model.counts().interfaces, 1364);
    // Every interface knows all its ancestors, and inherited contents are visible.
    for i in model.interfaces() {
        for a in &i.ancestors {
            let ancestor = model.interface(a).expect("ancestor is in the set");
            for c in &ancestor.contents {
                assert!(
                    i.content(&c.name).is_some(),
                    "{} does not see {} inherited from {a}",
                    i.id,
                    c.name
                );
            }
        }
    }
}

#[test]
fn every_plug_and_play_model_resolves_through_the_repository() {
    let repo = corpus_dir().join("models").join("iot-plugandplay");
    let mut files: Vec<PathBuf> = walk(&repo.join("dtmi"));
    files.sort();
    assert!(
        files.len() > 900,
        "expected the whole DMR, found {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let sources = load::read_paths(std::slice::from_ref(file)).expect("readable");
        let outcome = load::check_with_repositories(
            sources,
            std::slice::from_ref(&repo),
            &Options::default(),
        )
        .expect("no I/O error");
        if !outcome.is_ok() {
            failures.push(format!(
                "{}: {:?} unresolved {:?}",
                file.display(),
                outcome.diagnostics.first().map(ToString::to_string),
                outcome.unresolved
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files rejected:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out
}

/// The GraphQL names the typed schema will use are valid, distinct and
/// mostly just the Interface's own name, on real ontologies.
#[test]
fn graphql_type_names_of_real_ontologies_are_valid_and_distinct() {
    let valid = regex::Regex::new("^[A-Za-z][_0-9A-Za-z]*$").expect("regex");
    for (name, at_least_short) in [
        ("azure-building", 0.99),
        ("azure-energygrid", 0.99),
        ("realestatecore-rec", 0.99),
    ] {
        let model = check_folder(name).model.expect("valid");
        let ids: Vec<&str> = model.interfaces().map(|i| i.id.as_str()).collect();
        let names = twingraph::graphql::schema::type_names(&model);
        let reserved = &twingraph::graphql::schema::reserved().types;
        assert_eq!(names.len(), ids.len());
        let mut all: Vec<&str> = Vec::new();
        let mut short = 0;
        for (dtmi, t) in &names {
            for n in [&t.interface, &t.object] {
                assert!(valid.is_match(n), "{name}: {dtmi} → {n:?}");
                assert!(
                    !reserved.contains(n.as_str()),
                    "{name}: {dtmi} → reserved {n}"
                );
                all.push(n);
            }
            let last = dtmi
                .split(';')
                .next()
                .and_then(|p| p.rsplit(':').next())
                .unwrap_or_default();
            if t.interface.eq_ignore_ascii_case(last) {
                short += 1;
            }
        }
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "{name}: names are distinct");
        let share = f64::from(short) / names.len() as f64;
        eprintln!(
            "{name}: {} interfaces, {short} keep their plain name",
            names.len()
        );
        assert!(
            share >= at_least_short,
            "{name}: only {:.0} % keep their plain name",
            share * 100.0
        );
    }
}

/// The typed schema compiles for real ontologies (multiple inheritance,
/// hundreds of Interfaces) and names their types as `names` says.
#[test]
fn real_ontologies_compile_to_a_valid_graphql_schema() {
    use std::sync::Arc;
    use twingraph::graphql;
    use twingraph::store::{GraphStore, Store, StoreConfig};
    for (name, probe) in [
        ("azure-building", "dtmi:digitaltwins:rec_3_3:core:Space;1"),
        ("realestatecore-rec", "dtmi:org:w3id:rec:Space;1"),
        ("azure-energygrid", ""),
    ] {
        let model = Arc::new(check_folder(name).model.expect("valid"));
        let store: Arc<dyn GraphStore> =
            Arc::new(Store::in_memory(model.clone(), StoreConfig::default()));
        let schema = graphql::build(
            store.clone(),
            graphql::schema::Limits::default(),
            graphql::Shutdown::default(),
            Arc::new(twingraph::metrics::Metrics::default()),
            Arc::new(graphql::ModelLibrary::new(Vec::new(), None)),
            twingraph::rollout::Rollouts::unstarted(store),
        )
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let sdl = schema.sdl();
        let names = graphql::schema::type_names(&model);
        for (dtmi, t) in &names {
            assert!(
                sdl.contains(&format!("type {} implements", t.object)),
                "{name}: no object type for {dtmi}"
            );
        }
        if let Some(t) = names.get(probe) {
            assert!(
                sdl.contains(&format!("interface {}", t.interface)),
                "{name}"
            );
        }
    }
}

/// Golden SDL of the Azure building ontology (768 Interfaces, multiple
/// inheritance, Components, Maps, Enums): the mapping is deterministic and
/// any change to it shows up as a reviewable diff.
#[test]
fn azure_building_schema_matches_the_golden_sdl() {
    let model = check_folder("azure-building").model.expect("valid");
    let sdl = twingraph::cli::schema::sdl(model).expect("compiles");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden = std::fs::read_to_string(root.join("schema/azure-building.graphql"))
        .expect("schema/azure-building.graphql is committed");
    if sdl != golden {
        let line = sdl
            .lines()
            .zip(golden.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || sdl.lines().count().min(golden.lines().count()),
                |i| i + 1,
            );
        panic!(
            "schema/azure-building.graphql is stale (first difference at line {line}): run \
             `cargo run -- schema ../shared/corpora/dtdl/models/azure-building > schema/azure-building.graphql` \
             and review the diff"
        );
    }
    for expected in [
        "interface Space {",
        "type SpaceTwin implements Node & Twin & Space",
        "input SpaceWhere",
        "spaces(",
    ] {
        assert!(sdl.contains(expected), "{expected}");
    }
}
