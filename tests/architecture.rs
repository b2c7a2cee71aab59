//! The module map holds: nothing low imports anything high. The layers are
//! read from the `mod` declarations themselves (their order and the
//! comment lines that head each group), so the check cannot drift from the
//! code it checks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layers a `mod.rs`/`lib.rs` lists in its table of contents: each
/// paragraph of `//! - [`name`]: ...` lines is a layer, bottom up, and
/// within it the modules in order. Every module it declares is listed.
fn declared(file: &Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(file).expect("module file");
    let item = regex::Regex::new(r"^//! - \[`([a-z_]+)`\]").expect("regex");
    let decl = regex::Regex::new(r"^(?:pub(?:\([a-z]+\))? )?mod ([a-z_]+);").expect("regex");
    let mut group = 0;
    let mut in_list = false;
    let mut out: Vec<(String, usize)> = Vec::new();
    for line in text.lines() {
        match item.captures(line) {
            Some(c) => {
                out.push((c[1].to_owned(), group));
                in_list = true;
            }
            None if in_list => {
                group += 1;
                in_list = false;
            }
            None => {}
        }
    }
    let mut listed: Vec<&str> = out.iter().map(|(m, _)| m.as_str()).collect();
    let mut mods: Vec<&str> = text
        .lines()
        .filter_map(|l| decl.captures(l).map(|c| c.get(1).expect("name").as_str()))
        .collect();
    listed.sort_unstable();
    mods.sort_unstable();
    assert_eq!(
        listed,
        mods,
        "{}: every module is listed once",
        file.display()
    );
    out
}

/// The Rust files of module `name` under `dir`, and for each the prefix by
/// which it names its siblings (`super::` or `super::super::`).
fn files(dir: &Path, name: &str) -> Vec<(PathBuf, &'static str)> {
    let file = dir.join(format!("{name}.rs"));
    if file.is_file() {
        return vec![(file, "super::")];
    }
    let folder = dir.join(name);
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&folder) {
        let entry = entry.expect("walk");
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "rs") {
            let prefix =
                if p.file_name().is_some_and(|f| f == "mod.rs") && p.parent() == Some(&folder) {
                    "super::"
                } else {
                    "super::super::"
                };
            out.push((p.to_owned(), prefix));
        }
    }
    out
}

/// Every sibling module `file` refers to (by `prefix<name>` or `path<name>`).
fn refers_to<'a>(
    file: &Path,
    prefix: &str,
    absolute: &str,
    modules: &'a [(String, usize)],
) -> Vec<&'a str> {
    // Code only: doc comments may name any module.
    let text: String = std::fs::read_to_string(file)
        .expect("source")
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    modules
        .iter()
        .map(|(m, _)| m.as_str())
        .filter(|m| {
            [
                format!("{prefix}{m}::"),
                format!("{prefix}{m};"),
                format!("{absolute}{m}::"),
            ]
            .iter()
            .any(|p| {
                text.match_indices(p.as_str()).any(|(i, _)| {
                    // Not the tail of a longer path (`super::super::x` for `super::x`).
                    !text[..i].ends_with("super::") || p.starts_with("super::super::")
                })
            })
        })
        .collect()
}

/// The GraphQL layer: the parts every feature uses, each importing only
/// those declared before it; the features, which import only those parts,
/// never one another; the assembly and the executor on top.
#[test]
fn graphql_modules_import_only_what_is_below_them() {
    let dir = src().join("graphql");
    let modules = declared(&dir.join("mod.rs"));
    let groups: HashMap<&str, (usize, usize)> = modules
        .iter()
        .enumerate()
        .map(|(i, (m, g))| (m.as_str(), (*g, i)))
        .collect();
    assert_eq!(
        modules.iter().map(|(_, g)| *g).max(),
        Some(2),
        "mod.rs has three groups: below the features, features, on top"
    );
    let mut wrong = Vec::new();
    for (name, _) in &modules {
        let (group, index) = groups[name.as_str()];
        for (file, prefix) in files(&dir, name) {
            for other in refers_to(&file, prefix, "crate::graphql::", &modules) {
                if other == name {
                    continue;
                }
                let (og, oi) = groups[other];
                let allowed = og < group || (og == group && group != 1 && oi < index);
                if !allowed {
                    wrong.push(format!("{} uses {other}", file.display()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

/// The crate's modules: each uses only those listed before it in `lib.rs`.
#[test]
fn crate_modules_import_only_what_is_below_them() {
    let dir = src();
    let modules = declared(&dir.join("lib.rs"));
    let index: HashMap<&str, usize> = modules
        .iter()
        .enumerate()
        .map(|(i, (m, _))| (m.as_str(), i))
        .collect();
    let mut wrong = Vec::new();
    for (name, _) in &modules {
        for (file, _) in files(&dir, name) {
            for other in refers_to(&file, "crate::", "crate::", &modules) {
                if other != name && index[other] > index[name.as_str()] {
                    wrong.push(format!("{} uses {other}", file.display()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}
