//! `uploadModels`: adding DTDL Interfaces to a running server.
//!
//! Models are immutable, as in Azure Digital Twins: an upload may only add
//! Interfaces whose DTMIs are new (publish `;2` to change one). That is what
//! keeps every existing twin valid: nothing it was validated against can
//! change or disappear. The new documents are checked together with the
//! loaded ones (they may extend or reference them); on success they are
//! written to the upload folder (loaded again at startup), then the store's
//! model set is replaced, which records a `modelsChanged` event. With
//! several servers over one store, an upload is refused (`VERSION_CONFLICT`)
//! when another server's upload was recorded since this one last read them:
//! two uploads unaware of each other could define the same model twice.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_graphql::Error;
use serde_json::Value;
use tokio::sync::Mutex;

use super::builder::Recompile;
use super::errors::{error, error_with};
use super::names::ModelOrder;
use crate::codes::Code;
use crate::dtdl::{self, Options, Source};
use crate::store::{GraphStore, StoreError};
use crate::twin::TwinError;

/// The DTDL documents the server's models come from, and where uploads go.
#[derive(Debug)]
pub struct ModelLibrary {
    sources: Mutex<Vec<Source>>,
    /// Folder uploaded documents are written to; `None` keeps them in memory.
    dir: Option<PathBuf>,
    /// The last upload recorded in the store that this library has read
    /// (the head of the `models` stream as it knows it). Uploads expect it,
    /// so one that another server's upload overtook is refused rather than
    /// defining a model twice.
    seen: AtomicU64,
    /// When each model arrived (see [`ModelOrder`]): the schema's names
    /// are handed out in that order.
    order: std::sync::Mutex<ModelOrder>,
}

impl ModelLibrary {
    pub fn new(sources: Vec<Source>, dir: Option<PathBuf>) -> ModelLibrary {
        ModelLibrary {
            sources: Mutex::new(sources),
            dir,
            seen: AtomicU64::new(0),
            order: std::sync::Mutex::default(),
        }
    }

    /// When each model arrived.
    pub fn order(&self) -> ModelOrder {
        self.order.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_order(&self, order: ModelOrder) {
        *self.order.lock().unwrap_or_else(|p| p.into_inner()) = order;
    }

    fn saw(&self, seq: u64) {
        self.seen.fetch_max(seq, Ordering::AcqRel);
    }
}

/// What an upload added.
#[derive(Debug)]
pub struct Uploaded {
    pub models: Vec<String>,
    pub sequence: u64,
}

/// The top-level Interface DTMIs a document defines.
fn top_level_ids(doc: &Value) -> Vec<String> {
    let items: Vec<&Value> = match doc {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    items
        .into_iter()
        .filter_map(|d| d.get("@id")?.as_str().map(str::to_owned))
        .collect()
}

/// A file name for a DTMI (`dtmi:com:example:Pump;1` → `dtmi_com_example_pump_1.json`).
fn file_name(dtmi: &str) -> String {
    let stem: String = dtmi
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{stem}.json")
}

/// Checks `docs` with the loaded models and, when valid and new, adds them.
pub async fn upload(
    library: &ModelLibrary,
    store: &Arc<dyn GraphStore>,
    docs: Vec<Value>,
    actor: &str,
    reloader: Option<Arc<dyn Recompile>>,
) -> Result<Uploaded, Error> {
    if docs.is_empty() {
        return Err(error(
            Code::NoModels,
            "models: give at least one DTDL document".to_owned(),
        ));
    }
    let mut sources = library.sources.lock().await;
    let current = store.models();
    let mut added = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let ids = top_level_ids(doc);
        if ids.is_empty() {
            return Err(error(
                Code::MissingId,
                format!("models[{i}]: a DTDL Interface document needs an @id"),
            ));
        }
        for id in ids {
            if current.interface(&id).is_some() || added.contains(&id) {
                return Err(error(
                    Code::ModelExists,
                    format!(
                        "models[{i}]: {id} is already defined; models are immutable (existing twins were validated against it), publish a new version instead"
                    ),
                ));
            }
            added.push(id);
        }
    }
    let new_sources: Vec<Source> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| Source::new(format!("models[{i}]"), d.to_string()))
        .collect();
    let mut all = sources.clone();
    all.extend(new_sources.iter().cloned());
    // The new models come last in the order: existing types keep their names.
    let mut order = library.order();
    let mut ids = Vec::new();
    docs.iter().for_each(|d| interface_ids(d, &mut ids));
    order.push(ids);
    // Checking the models, compiling the schema and writing the files are
    // heavy: off the async workers, which keep serving meanwhile.
    let (set, next_schema, written) = {
        let (all, order, dir, docs) = (
            all.clone(),
            order.clone(),
            library.dir.clone(),
            docs.clone(),
        );
        let reloader = reloader.clone();
        blocking(move || {
            prepare(
                &all,
                &order,
                dir.as_deref(),
                &docs,
                &new_sources,
                reloader.as_deref(),
            )
        })
        .await??
    };
    let expect = library.seen.load(Ordering::Acquire);
    match store
        .set_models(Arc::new(set), docs, Some(expect), actor)
        .await
    {
        Ok(sequence) => {
            library.saw(sequence);
            library.set_order(order);
            *sources = all;
            if let (Some(r), Some(schema)) = (reloader, next_schema) {
                r.install(schema);
            }
            Ok(Uploaded {
                models: added,
                sequence,
            })
        }
        Err(e) => {
            remove(written).await;
            match e {
                StoreError::Twin(TwinError::StreamMoved { .. }) => Err(error(Code::ModelsChanged, "models were uploaded through another server since this one last read them; it takes them in within moments: retry the upload then".to_owned(),
                )),
                e => Err(super::errors::store_error(&e)),
            }
        }
    }
}

/// `f` on the blocking pool (CPU-heavy work and file I/O).
/// Loads `dtmi` and what it references (what the loaded models do not
/// define) from device model repositories, folders in the DMR layout
/// (`dtmi/com/example/thermostat-1.json`), as an upload by `actor`.
pub async fn upload_from_repositories(
    library: &ModelLibrary,
    store: &Arc<dyn GraphStore>,
    repositories: &[PathBuf],
    dtmi: &str,
    actor: &str,
    reloader: Option<Arc<dyn Recompile>>,
) -> Result<Uploaded, String> {
    let loaded = library.sources.lock().await.clone();
    let (repos, id) = (repositories.to_vec(), dtmi.to_owned());
    let found = blocking(move || -> Result<Vec<Source>, String> {
        let first = dtdl::load::find_in_repositories(&id, &repos)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "no model repository has {}",
                    dtdl::dtmi::repository_path(&id)
                )
            })?;
        let before = loaded.len();
        let mut sources = loaded;
        sources.push(first);
        let outcome =
            dtdl::load::resolve_from_repositories(&mut sources, &repos, &Options::default())
                .map_err(|e| e.to_string())?;
        if !outcome.unresolved.is_empty() {
            return Err(format!(
                "it references DTMIs no model repository has: {}",
                outcome.unresolved.join(", ")
            ));
        }
        if outcome.model.is_none() {
            let why = outcome
                .diagnostics
                .first()
                .map_or_else(|| "invalid".to_owned(), ToString::to_string);
            return Err(format!("it is invalid: {why}"));
        }
        Ok(sources.split_off(before))
    })
    .await
    .map_err(|e| e.message)??;
    let docs = found
        .iter()
        .map(|s| {
            serde_json::from_slice::<Value>(&s.text)
                .map_err(|e| format!("{}: not JSON: {e}", s.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    upload(library, store, docs, actor, reloader)
        .await
        .map_err(|e| e.message)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "model upload task failed");
        error(Code::Internal, "internal error")
    })
}

/// Files written for an upload that did not go through, removed.
async fn remove(written: Vec<PathBuf>) {
    let _ = blocking(move || {
        for p in &written {
            let _ = std::fs::remove_file(p);
        }
    })
    .await;
}

/// What an upload needs before it is recorded: the model set checked
/// (with the loaded models), the schema it compiles to (before anything is
/// written: a set that cannot be compiled is refused), and the documents
/// written to the upload folder (durable first: a crash after this loads
/// them at startup).
fn prepare(
    all: &[Source],
    order: &ModelOrder,
    dir: Option<&std::path::Path>,
    docs: &[Value],
    new_sources: &[Source],
    reloader: Option<&dyn Recompile>,
) -> Result<
    (
        dtdl::ModelSet,
        Option<async_graphql::dynamic::Schema>,
        Vec<PathBuf>,
    ),
    Error,
> {
    let outcome = dtdl::check(all, &Options::default());
    let Some(set) = outcome.model else {
        let diagnostics: Vec<async_graphql::Value> = outcome
            .diagnostics
            .iter()
            .take(20)
            .map(|d| {
                async_graphql::Value::from_json(serde_json::json!({
                    "file": &*d.file, "path": d.path, "dtmi": d.dtmi, "rule": d.code, "message": d.message,
                }))
                .unwrap_or(async_graphql::Value::Null)
            })
            .collect();
        let unresolved = outcome.unresolved.join(", ");
        let message = match outcome.diagnostics.first() {
            Some(d) => format!("the models are invalid: {d}"),
            None => format!("the models reference undefined DTMIs: {unresolved}"),
        };
        return Err(error_with(Code::InvalidModels, message, move |ext| {
            ext.set(
                "diagnostics",
                async_graphql::Value::List(diagnostics.clone()),
            );
        }));
    };
    let next_schema = match reloader.and_then(|r| r.build_for(&set, order)) {
        Some(Ok(schema)) => Some(schema),
        Some(Err(e)) => {
            return Err(error(
                Code::SchemaConflict,
                format!(
                    "the models are valid DTDL but cannot be compiled to GraphQL: {}",
                    e.0
                ),
            ));
        }
        None => None,
    };
    let mut written = Vec::new();
    if let Some(dir) = dir {
        let write = |written: &mut Vec<PathBuf>| -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            for (doc, source) in docs.iter().zip(new_sources) {
                let name = top_level_ids(doc)
                    .first()
                    .map_or_else(|| file_name(&source.name), |id| file_name(id));
                let path = dir.join(name);
                let tmp = path.with_extension("json.tmp");
                std::fs::write(&tmp, serde_json::to_vec_pretty(doc)?)?;
                std::fs::rename(&tmp, &path)?;
                written.push(path);
            }
            Ok(())
        };
        if let Err(e) = write(&mut written) {
            for p in &written {
                let _ = std::fs::remove_file(p);
            }
            tracing::error!(error = %e, "cannot write uploaded models");
            return Err(error(Code::StorageFailure, "internal error".to_owned()));
        }
    }
    Ok((set, next_schema, written))
}

/// The documents of every upload recorded in the store (by any server),
/// upload by upload in the order recorded, with the sequence of the last.
async fn uploads(store: &Arc<dyn GraphStore>) -> Result<(Vec<Vec<Value>>, u64), StoreError> {
    let mut uploads = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .stream_events(crate::twin::event::MODELS_STREAM, after, 1000)
            .await?;
        for e in &page {
            if let crate::twin::Change::ModelsChanged { documents, .. } = &e.change {
                uploads.push(documents.clone());
            }
            after = e.seq;
        }
        if page.len() < 1000 {
            return Ok((uploads, after));
        }
    }
}

/// The DTMIs of every Interface `doc` defines, nested ones included.
fn interface_ids(doc: &Value, out: &mut Vec<String>) {
    match doc {
        Value::Array(items) => items.iter().for_each(|d| interface_ids(d, out)),
        Value::Object(m) => {
            let is_interface = match m.get("@type") {
                Some(Value::String(t)) => t == "Interface",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "Interface"),
                _ => false,
            };
            if is_interface && let Some(Value::String(id)) = m.get("@id") {
                out.push(id.clone());
            }
            m.values().for_each(|v| interface_ids(v, out));
        }
        _ => {}
    }
}

/// The order models arrived in, from the uploads recorded: the models a
/// server starts with first, then each upload's.
fn order_of(uploads: &[Vec<Value>]) -> ModelOrder {
    let mut order = ModelOrder::default();
    for docs in uploads {
        let mut ids = Vec::new();
        docs.iter().for_each(|d| interface_ids(d, &mut ids));
        order.push(ids);
    }
    order
}

/// Takes in the models uploaded through other servers over the same store
/// (or before this one started) that the library does not have yet: the
/// store and the library serve them from now on. The new model set, if
/// anything was new.
pub async fn adopt_uploaded(
    library: &ModelLibrary,
    store: &Arc<dyn GraphStore>,
) -> Result<Option<Arc<dtdl::ModelSet>>, String> {
    let (uploads, head) = uploads(store).await.map_err(|e| e.to_string())?;
    let mut sources = library.sources.lock().await;
    library.set_order(order_of(&uploads));
    let docs: Vec<Value> = uploads.into_iter().flatten().collect();
    let current = store.models();
    let new: Vec<Source> = docs
        .iter()
        .filter(|d| {
            top_level_ids(d)
                .iter()
                .any(|id| current.interface(id).is_none())
        })
        .enumerate()
        .map(|(i, d)| Source::new(format!("uploaded[{i}]"), d.to_string()))
        .collect();
    if new.is_empty() {
        library.saw(head);
        return Ok(None);
    }
    let mut all = sources.clone();
    all.extend(new);
    let outcome = {
        let all = all.clone();
        tokio::task::spawn_blocking(move || dtdl::check(&all, &Options::default()))
            .await
            .map_err(|e| format!("checking the uploaded models failed: {e}"))?
    };
    let Some(set) = outcome.model else {
        let why = outcome
            .diagnostics
            .first()
            .map_or_else(|| outcome.unresolved.join(", "), ToString::to_string);
        return Err(format!(
            "the uploaded models in the store do not resolve here: {why}"
        ));
    };
    let set = Arc::new(set);
    store.adopt_models(set.clone());
    *sources = all;
    library.saw(head);
    Ok(Some(set))
}
