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
