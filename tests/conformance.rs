//! The DTDL v2/v3 conformance suites (`spec/v2`, `spec/v3` of the shared
//! corpora): every case's verdict must match the engine's.
//!
//! A case is *valid* when the engine reports no error and nothing
//! unresolved; a case with `expect.unresolvedIdentifiers` must report no
//! error and exactly those unresolved DTMIs; any other invalid case must
//! be rejected.
//!
//! `tests/conformance/known-disagreements.txt` lists cases the engine does
//! not agree with yet (one `v3/File.json#index` per line). The test fails on
//! any disagreement not listed there *and* on any listed case that now agrees,
//! so the list only ever shrinks. The agreement count is printed.

use std::collections::BTreeSet;
use std::sync::Arc;

use twingraph::dtdl::{self, Options, UndefinedExtensions, json};

use crate::support::corpus_dir;

struct Tally {
    total: usize,
    disagreements: BTreeSet<String>,
    details: Vec<String>,
}

fn run_suite(version: &str, tally: &mut Tally) {
    let dir = corpus_dir().join("spec").join(version);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no conformance files in {}",
        dir.display()
    );
    for file in files {
        let name = file
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&file).expect("readable conformance file");
        let cases = json::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json::Value::Array(cases) = cases else {
            panic!("{name}: not an array of cases")
        };
        for (i, case) in cases.iter().enumerate() {
            tally.total += 1;
            let key = format!("{version}/{name}#{i}");
            let valid = matches!(case.get("valid"), Some(json::Value::Bool(true)));
            let allow = match case.get("options") {
                Some(json::Value::Array(o)) => o
                    .iter()
                    .any(|v| v.as_str() == Some("AllowUndefinedExtensions")),
                _ => false,
            };
            let input = match case.get("input") {
                Some(json::Value::Array(docs)) if docs.len() == 1 => docs[0].clone(),
                _ => panic!("{key}: input must hold exactly one document"),
            };
            let expected_unresolved: Option<BTreeSet<String>> = case
                .get("expect")
                .and_then(|e| e.get("unresolvedIdentifiers"))
                .and_then(|u| match u {
                    json::Value::Array(a) => Some(
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect(),
                    ),
                    _ => None,
                });
            let options = Options {
                undefined_extensions: if allow {
                    UndefinedExtensions::Allow
                } else {
                    UndefinedExtensions::Deny
                },
            };
            let name: Arc<str> = Arc::from(key.as_str());
            let outcome = dtdl::check_values(vec![(name, input)], Vec::new(), &options);
            let unresolved: BTreeSet<String> = outcome.unresolved.iter().cloned().collect();
            let agrees = if valid {
                outcome.is_ok()
            } else if let Some(exp) = &expected_unresolved {
                outcome.diagnostics.is_empty() && &unresolved == exp
            } else {
                !outcome.is_ok()
            };
            if !agrees {
                tally.disagreements.insert(key.clone());
                let first = outcome
                    .diagnostics
                    .first()
                    .map(|d| format!("[{}] {}", d.code, d.message))
                    .unwrap_or_else(|| format!("unresolved {unresolved:?}"));
                tally.details.push(format!(
                    "{key}: expected {}, engine said {}",
                    if valid { "valid" } else { "invalid" },
                    if outcome.is_ok() {
                        "valid".to_owned()
                    } else {
                        first
                    }
                ));
            }
        }
    }
}

#[test]
fn conformance_suites_agree_with_every_case() {
    let mut tally = Tally {
        total: 0,
        disagreements: BTreeSet::new(),
        details: Vec::new(),
    };
    run_suite("v2", &mut tally);
    run_suite("v3", &mut tally);
    let agree = tally.total - tally.disagreements.len();
    eprintln!("DTDL conformance: {agree} / {} cases agree", tally.total);

    let report = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance-report.txt");
    std::fs::write(&report, tally.details.join("\n")).expect("write report");

    let known_text = include_str!("conformance/known-disagreements.txt");
    let known: BTreeSet<String> = known_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let new: Vec<&String> = tally.disagreements.difference(&known).collect();
    let fixed: Vec<&String> = known.difference(&tally.disagreements).collect();
    assert!(
        new.is_empty() && fixed.is_empty(),
        "conformance changed: {} new disagreement(s) {:?}; {} listed case(s) now agree {:?} \
         (remove them from tests/conformance/known-disagreements.txt). Details: {}",
        new.len(),
        new.iter().take(20).collect::<Vec<_>>(),
        fixed.len(),
        fixed.iter().take(20).collect::<Vec<_>>(),
        report.display()
    );
}
