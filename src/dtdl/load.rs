//! Loading model sets from disk: files, folders (every `*.json` below, in a
//! stable order) and device model repositories (DMR) that supply the
//! definitions of referenced but missing DTMIs.
//!
//! DMR layout: `dtmi:com:example:Thermostat;1` lives at
//! `<repo>/dtmi/com/example/thermostat-1.json`. Resolution repeats until no
//! new document can be found, so dependencies of dependencies are loaded too.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{Options, Outcome, Source, check, dtmi};

/// An I/O problem reading a model set.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a .json file or a folder")]
    NotJson { path: PathBuf },
    #[error("{path}: {source}")]
    Walk {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
}

/// The models folder unless told otherwise.
pub const DEFAULT_FOLDER: &str = "dtdl";

/// Reads every PATH (a `.json` file, or a folder searched recursively for
/// `*.json`) into sources, in a stable order.
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<Source>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let mut found = Vec::new();
            for entry in walkdir::WalkDir::new(path).follow_links(true) {
                let entry = entry.map_err(|source| LoadError::Walk {
                    path: path.clone(),
                    source,
                })?;
                if entry.file_type().is_file() && is_json(entry.path()) {
                    found.push(entry.into_path());
                }
            }
            found.sort();
            files.extend(found);
        } else if is_json(path) {
            files.push(path.clone());
        } else {
            return Err(LoadError::NotJson { path: path.clone() });
        }
    }
    files.iter().map(|f| read_file(f)).collect()
}

fn is_json(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

fn read_file(path: &Path) -> Result<Source, LoadError> {
    let text = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(Source::new(path.display().to_string(), text))
}

/// Checks `sources`, pulling missing definitions from the repositories.
pub fn check_with_repositories(
    mut sources: Vec<Source>,
    repositories: &[PathBuf],
    options: &Options,
) -> Result<Outcome, LoadError> {
    resolve_from_repositories(&mut sources, repositories, options)
}

/// The file a device model repository (DMR layout) holds `dtmi` in, in the
/// first of `repositories` that has it.
pub fn find_in_repositories(
    dtmi: &str,
    repositories: &[PathBuf],
) -> Result<Option<Source>, LoadError> {
    locate(dtmi, repositories)
        .map(|path| read_file(&path))
        .transpose()
}

fn locate(dtmi: &str, repositories: &[PathBuf]) -> Option<PathBuf> {
    let rel = dtmi::repository_path(dtmi);
    repositories
        .iter()
        .map(|r| r.join(&rel))
        .find(|c| c.is_file())
}

/// Checks `sources`, appending to them the definitions of what they
/// reference but do not define, from the repositories, until nothing more
/// can be found there.
pub fn resolve_from_repositories(
    sources: &mut Vec<Source>,
    repositories: &[PathBuf],
    options: &Options,
) -> Result<Outcome, LoadError> {
    let mut tried: HashSet<String> = HashSet::new();
    loop {
        let outcome = check(sources, options);
        if outcome.unresolved.is_empty() || repositories.is_empty() {
            return Ok(outcome);
        }
        let mut added = false;
        for missing in &outcome.unresolved {
            if !tried.insert(missing.clone()) {
                continue;
            }
            if let Some(path) = locate(missing, repositories) {
                sources.push(read_file(&path)?);
                added = true;
            }
        }
        if !added {
            return Ok(outcome);
        }
    }
}
