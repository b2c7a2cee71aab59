//! The hot-swappable schema: what the HTTP layer executes requests on.
//!
//! [`LiveSchema`] holds the current compiled schema. `uploadModels` compiles
//! the schema of the new model set *before* accepting the models (a set
//! that cannot be compiled is refused, nothing written), then, once the
//! models are durable and in the store, installs it. Each request clones
//! the schema it starts on (an `Arc` inside), so in-flight requests and open
//! subscriptions finish on the schema they started with.

use std::sync::{Arc, OnceLock, RwLock, Weak};

use async_graphql::dynamic::{Schema, SchemaError};
use async_graphql::futures_util::stream::{BoxStream, StreamExt};
use async_graphql::{Data, Executor, Request, Response};

use super::builder::{Limits, Recompile, Recompiler, Shutdown};
use super::documents::Documents;
use super::names::ModelOrder;
use super::operation::{check_document, code_all, engine_refused, finish};
use super::schema::{Parts, build_schema};
use super::shared::{Delivery, Hubs};
use super::upload::ModelLibrary;
use crate::dtdl::ModelSet;
use crate::metrics::Metrics;
use crate::rollout::Rollouts;
use crate::store::GraphStore;

struct Inner {
    /// The schema serving, and its generation (grows with every installed
    /// schema: subscriptions share within one), read together.
    current: RwLock<(Schema, u64)>,
    hubs: Arc<Hubs>,
    parts: Parts,
    documents: Documents,
}

/// Builds the schema over `store` (recompiled when models are uploaded);
/// `shutdown` ends its subscriptions; `metrics` counts operations, errors
/// and subscriptions; `library` holds the model documents; `rollouts` owns
/// configurations and rollouts.
pub fn build(
    store: Arc<dyn GraphStore>,
    limits: Limits,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    library: Arc<ModelLibrary>,
    rollouts: Arc<Rollouts>,
) -> Result<LiveSchema, SchemaError> {
    LiveSchema::new(Parts {
        store,
        limits,
        shutdown,
        metrics,
        library,
        rollouts,
        devices: None,
        series: None,
        alarms: None,
        lifecycle: None,
    })
}

/// [`build`], with device identities and time series (see [`Served`]).
pub fn build_served(
    store: Arc<dyn GraphStore>,
    limits: Limits,
    shutdown: Shutdown,
    metrics: Arc<Metrics>,
    library: Arc<ModelLibrary>,
    rollouts: Arc<Rollouts>,
    served: Served,
) -> Result<LiveSchema, SchemaError> {
    LiveSchema::new(Parts {
        store,
        limits,
        shutdown,
        metrics,
        library,
        rollouts,
        devices: Some(served.devices),
        series: served.series,
        alarms: served.alarms,
        lifecycle: served.lifecycle,
    })
}

/// What a full server serves besides the store: device identities, the
/// store's time series when it keeps them, and alarms.
#[derive(Debug, Clone)]
pub struct Served {
    pub devices: Arc<crate::devices::Devices>,
    pub series: Option<Arc<crate::series::Series>>,
    pub alarms: Option<Arc<crate::alarms::Alarms>>,
    pub lifecycle: Option<Arc<crate::lifecycle::Lifecycle>>,
}

/// The schema requests run on; replaced when models are uploaded.
#[derive(Clone)]
pub struct LiveSchema(Arc<Inner>);

impl std::fmt::Debug for LiveSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSchema").finish_non_exhaustive()
    }
}

/// How `uploadModels` reaches the [`LiveSchema`] serving it (schema data,
/// as a [`Recompile`]; weakly: the schema must not keep itself alive).
#[derive(Clone, Default)]
pub struct Reloader(Arc<OnceLock<Weak<Inner>>>);

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Recompile for Reloader {
    fn build_for(
        &self,
        models: &ModelSet,
        order: &ModelOrder,
    ) -> Option<Result<Schema, SchemaError>> {
        let inner = self.0.get()?.upgrade()?;
        Some(build_guarded(&inner.parts, models, order, self.clone()))
    }

    fn install(&self, schema: Schema) {
        if let Some(inner) = self.0.get().and_then(Weak::upgrade) {
            let mut current = match inner.current.write() {
                Ok(current) => current,
                Err(poisoned) => poisoned.into_inner(),
            };
            let generation = current.1 + 1;
            *current = (schema, generation);
        }
    }
}

/// [`build_schema`], with a failed assertion in the schema builder (a
/// field name used twice: a mapping bug) reported as an error, not a crash.
fn build_guarded(
    parts: &Parts,
    models: &ModelSet,
    order: &ModelOrder,
    reloader: Reloader,
) -> Result<Schema, SchemaError> {
    let recompiler: Recompiler = Arc::new(reloader);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        build_schema(parts, models, order, recompiler)
    }))
    .unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown");
        tracing::error!(reason = why, "the GraphQL schema could not be built");
        Err(SchemaError(format!(
            "the GraphQL schema could not be built: {why}"
        )))
    })
}

impl LiveSchema {
    /// Compiles the schema of the store's models.
    pub(super) fn new(parts: Parts) -> Result<LiveSchema, SchemaError> {
        let reloader = Reloader::default();
        let schema = build_guarded(
            &parts,
            &parts.store.models(),
            &parts.library.order(),
            reloader.clone(),
        )?;
        let inner = Arc::new(Inner {
            current: RwLock::new((schema, 0)),
            hubs: Hubs::new(parts.limits.live_buffer),
            parts,
            documents: Documents::default(),
        });
        // Set exactly once, here.
        let _ = reloader.0.set(Arc::downgrade(&inner));
        Ok(LiveSchema(inner))
    }

    /// The schema serving now.
    pub fn current(&self) -> Schema {
        self.current_with_generation().0
    }

    fn current_with_generation(&self) -> (Schema, u64) {
        match self.0.current.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The current schema in SDL.
    pub fn sdl(&self) -> String {
        self.current().sdl()
    }
}

/// Models devices announce, loaded from device model repositories into
/// the schema serving (see [`LiveSchema::model_resolver`]).
#[derive(Debug)]
struct RepositoryModels {
    inner: Weak<Inner>,
    repositories: Vec<std::path::PathBuf>,
}

impl crate::devices::service::ModelResolver for RepositoryModels {
    fn resolve<'a>(
        &'a self,
        model: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let inner = self
                .inner
                .upgrade()
                .ok_or_else(|| "the server is stopping".to_owned())?;
            let reloader: Arc<dyn Recompile> =
                Arc::new(Reloader(Arc::new(OnceLock::from(Arc::downgrade(&inner)))));
            let parts = &inner.parts;
            super::upload::upload_from_repositories(
                &parts.library,
                &parts.store,
                &self.repositories,
                model,
                "model repository",
                Some(reloader),
            )
            .await
            .map(drop)
        })
    }
}

impl LiveSchema {
    /// Loads the models devices announce and the server lacks from
    /// `repositories` (DMR-layout folders), as uploads are loaded: the
    /// typed schema gains them at once.
    pub fn model_resolver(
        &self,
        repositories: Vec<std::path::PathBuf>,
    ) -> Arc<dyn crate::devices::service::ModelResolver> {
        Arc::new(RepositoryModels {
            inner: Arc::downgrade(&self.0),
            repositories,
        })
    }

    /// Follows uploads made through other servers over the same store
    /// (Neo4j replicas): when one is recorded, its models are taken in
    /// (see [`super::upload::adopt_uploaded`]) and the schema recompiled and
    /// swapped in. Runs until the schema is dropped.
    pub fn follow_uploads(&self) {
        let inner = Arc::downgrade(&self.0);
        let mut events = self.0.parts.store.subscribe();
        tokio::spawn(async move {
            loop {
                // An upload recorded (or, having missed some events,
                // perhaps one).
                let upload = match events.recv().await {
                    Ok(e) => matches!(
                        &e.change,
                        crate::twin::Change::ModelsChanged { documents, .. } if !documents.is_empty()
                    ),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if !upload {
                    continue;
                }
                let Some(inner) = inner.upgrade() else { return };
                let parts = &inner.parts;
                match super::upload::adopt_uploaded(&parts.library, &parts.store).await {
                    Ok(Some(models)) => {
                        let reloader = Reloader(Arc::new(OnceLock::from(Arc::downgrade(&inner))));
                        // Compiling is heavy: off the async workers.
                        let built = {
                            let (parts, order, reloader) =
                                (parts.clone(), parts.library.order(), reloader.clone());
                            tokio::task::spawn_blocking(move || {
                                build_guarded(&parts, &models, &order, reloader)
                            })
                            .await
                            .unwrap_or_else(|e| {
                                Err(SchemaError(format!("the compile task failed: {e}")))
                            })
                        };
                        match built {
                            Ok(schema) => {
                                reloader.install(schema);
                                tracing::info!("took in models uploaded through another server");
                            }
                            Err(err) => {
                                tracing::error!(error = %err.0, "models uploaded elsewhere do not compile here")
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(why) => {
                        tracing::error!(error = %why, "cannot take in models uploaded elsewhere")
                    }
                }
            }
        });
    }

    /// The results of subscription `request` on the schema serving now.
    /// Identical subscriptions without connection data share one execution
    /// (see [`super::shared`]), whose results are serialized once.
    pub fn subscribe(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Delivery> {
        self.0.documents.parse(&mut request);
        if let Err(e) = check_document(&mut request, self.0.parts.limits.aliases) {
            let refused = Response::from_errors(vec![e]);
            return futures_util::stream::once(async move { Delivery::Own(Box::new(refused)) })
                .boxed();
        }
        let (schema, generation) = self.current_with_generation();
        let request = if session_data.as_ref().is_none_or(|d| d.is_empty()) {
            let last_seq = self.0.parts.store.last_seq();
            let start = {
                let schema = schema.clone();
                move |r: Request| schema.execute_stream(with_access(r)).map(coded).boxed()
            };
            match self
                .0
                .hubs
                .join(generation, request, last_seq, &self.0.parts.metrics, start)
            {
                Ok(shared) => return shared,
                Err(request) => *request,
            }
        } else {
            request
        };
        schema
            .execute_stream_with_session_data(
                with_access(request),
                session_data.unwrap_or_default(),
            )
            .map(|r| Delivery::Own(Box::new(coded(r))))
            .boxed()
    }

    /// Resolves once the server is shutting down (every subscription
    /// stream then completes).
    pub fn closing(&self) -> impl Future<Output = ()> + Send + 'static {
        self.0.parts.shutdown.clone().triggered()
    }
}

/// A finished operation and whether it was a request error: refused
/// before anything executed (the document did not parse or validate,
/// variables did not coerce, a limit refused it), which GraphQL over HTTP
/// answers differently from errors of fields.
#[derive(Debug)]
pub struct Executed {
    pub response: Response,
    pub request_error: bool,
}

impl LiveSchema {
    /// Runs one operation: checked, executed on the schema serving now,
    /// its errors coded, counted and logged.
    pub async fn run(&self, mut request: Request) -> Executed {
        use tracing::Instrument;
        let started = std::time::Instant::now();
        self.0.documents.parse(&mut request);
        let (response, request_error) =
            match check_document(&mut request, self.0.parts.limits.aliases) {
                Err(e) => (Response::from_errors(vec![e]), true),
                Ok(name) => {
                    let span = tracing::info_span!("operation", name = %name);
                    let schema = self.current();
                    let resp = schema.execute(with_access(request)).instrument(span).await;
                    let refused = engine_refused(&resp);
                    (resp, refused)
                }
            };
        Executed {
            response: finish(response, started, &self.0.parts.metrics),
            request_error,
        }
    }
}

/// The request with its caller's view of the store (and, for a scoped
/// caller, loaders over that view) as request data, which resolvers read
/// before the schema's own. Without a caller: unchanged.
fn with_access(mut request: Request) -> Request {
    let access = request
        .data
        .get(&std::any::TypeId::of::<crate::auth::Access>())
        .and_then(|d| d.downcast_ref::<crate::auth::Access>())
        .cloned();
    if let Some(a) = access {
        let view: Arc<dyn GraphStore> = a.store.clone();
        if !a.store.unscoped() {
            request.data.insert(super::loader::twins(view.clone()));
            request
                .data
                .insert(super::loader::relationships(view.clone()));
            request.data.insert(super::loader::edges(view.clone()));
        }
        request.data.insert(view);
    }
    request
}

/// `r` with every error coded.
fn coded(mut r: Response) -> Response {
    code_all(&mut r.errors);
    r
}

/// Requests checked before the engine sees them (see
/// [`check_document`]), their errors coded, counted and logged: here
/// rather than in engine extensions, which would wrap every field of every
/// answer in two more futures.
impl Executor for LiveSchema {
    async fn execute(&self, request: Request) -> Response {
        self.run(request).await.response
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        self.subscribe(request, session_data)
            .map(Delivery::into_response)
            .boxed()
    }
}
