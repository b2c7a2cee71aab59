//! The owner of device identities: registers, rotates, disables and
//! deletes them (the only writer of their records), checks what a device
//! presents when it connects, and runs the [`Hub`] of connected devices.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::hub::{self, CallError, Hub, MethodAnswer};
use super::keys::Secret;
use super::registry::{self, Device, Registry};
use super::sas;
use super::x509::{Authority, ClientChain};
use crate::codes::Code;
use crate::records::{DeviceAuth, DeviceSpec, EnrollmentSpec, KeySlot, Record};
use crate::store::fold::{Folded, Read};
use crate::store::{GraphStore, StoreError};
use crate::twin::clock::{Clock, SystemClock};
use crate::twin::{Twin, TwinError};

/// Why a device request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    #[error("device {0} does not exist")]
    NotFound(String),
    #[error("{0}")]
    Exists(String),
    /// `path` names the offending value.
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("the device of twin {0} is not connected")]
    Offline(String),
    #[error("the device of twin {twin} did not answer within {timeout:?}")]
    Timeout { twin: String, timeout: Duration },
    #[error(
        "device keys need a device secret: set devices.secret (TWINGRAPH_DEVICES_SECRET), the same on every server over this store"
    )]
    Unconfigured,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DeviceError {
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> DeviceError {
        DeviceError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Its row of the error table.
    pub fn code(&self) -> Code {
        match self {
            DeviceError::NotFound(_) => Code::DeviceNotFound,
            DeviceError::Exists(_) => Code::DeviceExists,
            DeviceError::Invalid { .. } => Code::InvalidDevice,
            DeviceError::Offline(_) => Code::DeviceOffline,
            DeviceError::Timeout { .. } => Code::DeviceTimeout,
            DeviceError::Unconfigured => Code::DevicesUnconfigured,
            DeviceError::Store(s) => s.code(),
        }
    }
}

/// How a device is to prove who it is, as a registration asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Symmetric keys, derived by the server and shown once.
    SymmetricKey,
    /// A client certificate with one of these SHA-256 thumbprints.
    X509Thumbprint {
        primary: String,
        secondary: Option<String>,
    },
    /// A client certificate issued by a certificate authority the server
    /// trusts, whose common name is the device id.
    X509Ca,
}

/// A device's two keys, as shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub primary: String,
    pub secondary: String,
}

/// Why a connecting device is turned away (the MQTT CONNACK code follows).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Unknown device, wrong key, expired or malformed token.
    #[error("bad credentials: {0}")]
    BadCredentials(String),
    /// Known and correctly signed, but disabled (or without a twin).
    #[error("not authorized: {0}")]
    NotAuthorized(String),
}

/// Settings of the device service.
#[derive(Debug, Clone)]
pub struct Options {
    /// What device keys derive from (`None`: symmetric keys unavailable).
    pub secret: Option<Secret>,
    /// This server's name in connection records.
    pub server: String,
    /// How long a direct method call waits for the device's answer, unless
    /// the caller says.
    pub method_timeout: Duration,
    /// The host name devices reach the endpoint at (in the connection
    /// strings registrations show).
    pub hostname: String,
    /// Certificate authorities whose device certificates (common name the
    /// device id) identify devices registered with `X509_CA`, besides the
    /// enrollment groups' (`devices.ca_certificates`).
    pub authorities: Vec<Authority>,
    pub clock: Arc<dyn Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secret: None,
            server: uuid::Uuid::new_v4().to_string(),
            hostname: "localhost".to_owned(),
            method_timeout: Duration::from_secs(30),
            authorities: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Device identities over a store, and the devices connected here.
#[derive(Debug)]
pub struct Devices {
    folded: Arc<Folded<Registry>>,
    hub: Arc<Hub>,
    options: Options,
    dispatch: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    models: std::sync::OnceLock<Arc<dyn ModelResolver>>,
    /// Method calls relayed to another server, waiting for its answer.
    relayed: std::sync::Mutex<HashMap<String, tokio::sync::oneshot::Sender<Relayed>>>,
}

/// What a relayed method call came back with.
type Relayed = Result<MethodAnswer, CallError>;

/// How much longer than the call's own timeout a relayed call waits: the
/// request and the answer each cross the store's event feed.
const RELAY_MARGIN: Duration = Duration::from_secs(5);

/// Supplies a model the server does not have when a device being
/// provisioned announces it: the server's model repositories (set by
/// whoever owns model uploads, above this layer).
pub trait ModelResolver: Send + Sync + std::fmt::Debug {
    /// Loads `model` (and what it references) into the store's models, or
    /// says why it cannot.
    fn resolve<'a>(
        &'a self,
        model: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

impl Devices {
    /// Reads the identities back from `store` and starts following them and
    /// routing desired changes to connected devices.
    pub async fn start(
        store: Arc<dyn GraphStore>,
        options: Options,
    ) -> Result<Arc<Devices>, StoreError> {
        let live = store.subscribe();
        let folded = Folded::start(store).await?;
        let hub = Arc::new(Hub::default());
        let changes = folded.changes();
        let task = tokio::spawn(hub::dispatch(Arc::downgrade(&hub), live));
        let devices = Arc::new(Devices {
            folded,
            hub,
            options,
            dispatch: std::sync::Mutex::new(vec![task]),
            models: std::sync::OnceLock::new(),
            relayed: std::sync::Mutex::default(),
        });
        let relay = tokio::spawn(relay(Arc::downgrade(&devices), changes));
        devices
            .dispatch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(relay);
        Ok(devices)
    }

    /// Resolves unknown models devices announce through `resolver` (once).
    pub fn resolve_models_with(&self, resolver: Arc<dyn ModelResolver>) {
        let _ = self.models.set(resolver);
    }

    /// The service with nothing read back (a schema that is printed).
    pub fn unstarted(store: Arc<dyn GraphStore>) -> Arc<Devices> {
        Arc::new(Devices {
            folded: Folded::unstarted(store),
            hub: Arc::new(Hub::default()),
            options: Options::default(),
            dispatch: std::sync::Mutex::default(),
            models: std::sync::OnceLock::new(),
            relayed: std::sync::Mutex::default(),
        })
    }

    /// Stops following the store.
    pub async fn stop(&self) {
        self.folded.stop().await;
        let tasks = std::mem::take(&mut *self.dispatch.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    pub fn store(&self) -> &Arc<dyn GraphStore> {
        self.folded.store()
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn server(&self) -> &str {
        &self.options.server
    }

    pub fn method_timeout(&self) -> Duration {
        self.options.method_timeout
    }

    pub fn hostname(&self) -> &str {
        &self.options.hostname
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.options.clock
    }

    /// The identities as they stand.
    pub fn registry(&self) -> Read<'_, Registry> {
        self.folded.read()
    }

    /// Identity records and connections, as they are folded.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<crate::twin::Event>> {
        self.folded.changes()
    }

    pub fn get(&self, id: &str) -> Option<Device> {
        self.registry().get(id).cloned()
    }

    fn secret(&self) -> Result<&Secret, DeviceError> {
        self.options
            .secret
            .as_ref()
            .ok_or(DeviceError::Unconfigured)
    }

    /// The keys of a symmetric-key device (a device of an enrollment group
    /// has one, its group's derivation for its id: both slots).
    pub fn keys(&self, device: &Device) -> Result<Option<Keys>, DeviceError> {
        if matches!(device.spec.auth, DeviceAuth::EnrollmentGroupKey {}) {
            let group = device.spec.enrollment.as_deref().unwrap_or_default();
            let Some(g) = self.registry().group(group).map(|g| g.spec.clone()) else {
                return Ok(None);
            };
            let key = self.device_key_in(&g, &device.spec.id)?;
            return Ok(Some(Keys {
                primary: key.clone(),
                secondary: key,
            }));
        }
        let (Some(p), Some(s)) = (
            device.generation(KeySlot::Primary),
            device.generation(KeySlot::Secondary),
        ) else {
            return Ok(None);
        };
        let secret = self.secret()?;
        Ok(Some(Keys {
            primary: secret.device_key(&device.spec.id, KeySlot::Primary, p),
            secondary: secret.device_key(&device.spec.id, KeySlot::Secondary, s),
        }))
    }

    /// The key of enrollment group `g`.
    pub fn group_key(&self, g: &EnrollmentSpec) -> Result<String, DeviceError> {
        Ok(self.secret()?.group_key(&g.name, g.generation))
    }

    /// The key a device registering as `id` derives from group `g`'s key.
    fn device_key_in(&self, g: &EnrollmentSpec, id: &str) -> Result<String, DeviceError> {
        super::keys::group_device_key(&self.group_key(g)?, id)
            .map_err(|e| DeviceError::invalid("enrollment", e))
    }

    /// Creates enrollment group `name`: devices signing with keys derived
    /// from its key (returned, shown once) get a twin of the model they
    /// announce under `parent` (by `relationship`) on first connect.
    pub async fn create_group(
        &self,
        name: &str,
        parent: &str,
        relationship: &str,
        models: Vec<String>,
        ca_certificate: Option<String>,
        actor: &str,
    ) -> Result<(registry::Enrollment, Option<String>), DeviceError> {
        registry::check_id(name).map_err(|m| DeviceError::invalid("name", m))?;
        match &ca_certificate {
            Some(pem) => {
                Authority::from_pem(pem).map_err(|m| DeviceError::invalid("caCertificate", m))?;
            }
            None => {
                self.secret()?;
            }
        }
        let Some(p) = self.store().twin(parent).await? else {
            return Err(StoreError::Twin(TwinError::NotFound(parent.to_owned())).into());
        };
        let store_models = self.store().models();
        let Some(interface) = store_models.interface(&p.model) else {
            return Err(DeviceError::invalid("parent", "its model is not loaded"));
        };
        if !matches!(
            interface.content(relationship).map(|c| &c.kind),
            Some(crate::dtdl::model::ContentKind::Relationship { .. })
        ) {
            return Err(DeviceError::invalid(
                "relationship",
                format!("{} has no relationship {relationship}", p.model),
            ));
        }
        for (i, m) in models.iter().enumerate() {
            if store_models.interface(m).is_none() {
                return Err(DeviceError::invalid(
                    format!("models[{i}]"),
                    format!("unknown model {m}"),
                ));
            }
        }
        let spec = EnrollmentSpec {
            name: name.to_owned(),
            parent: parent.to_owned(),
            relationship: relationship.to_owned(),
            models,
            generation: 1,
            ca_certificate,
        };
        self.folded
            .write(
                actor,
                |reg: &Registry| -> Result<Vec<Record>, DeviceError> {
                    if reg.group(name).is_some() {
                        return Err(DeviceError::Exists(format!(
                            "enrollment group {name} already exists"
                        )));
                    }
                    Ok(vec![Record::EnrollmentGroupCreated {
                        group: spec.clone(),
                    }])
                },
            )
            .await?;
        let group = self
            .registry()
            .group(name)
            .cloned()
            .ok_or_else(|| DeviceError::NotFound(name.to_owned()))?;
        let key = match group.spec.ca_certificate {
            Some(_) => None,
            None => Some(self.group_key(&group.spec)?),
        };
        Ok((group, key))
    }

    /// Deletes enrollment group `name` (its devices can no longer connect).
    pub async fn delete_group(&self, name: &str, actor: &str) -> Result<(), DeviceError> {
        let members: Vec<String> = self
            .registry()
            .all()
            .filter(|d| d.spec.enrollment.as_deref() == Some(name))
            .map(|d| d.spec.id.clone())
            .collect();
        self.folded
            .write(
                actor,
                |reg: &Registry| -> Result<Vec<Record>, DeviceError> {
                    reg.group(name)
                        .ok_or_else(|| DeviceError::NotFound(format!("enrollment group {name}")))?;
                    Ok(vec![Record::EnrollmentGroupDeleted {
                        group: name.to_owned(),
                    }])
                },
            )
            .await?;
        for d in members {
            self.hub.kick(&d, "its enrollment group was deleted");
        }
        Ok(())
    }

    /// Checks a connecting device as [`authenticate`](Devices::authenticate)
    /// does; a device not yet registered is provisioned when an enrollment
    /// group vouches for it (its token verifies under the key the group
    /// derives for its id, or its certificate, common name its id, chains
    /// to the group's authority): a twin of the model it announces
    /// (`model`) under the group's parent, and its identity. `cert` is the
    /// certificate chain it presented in the TLS handshake (its private key
    /// proven there): what X.509 devices are checked by.
    pub async fn admit(
        &self,
        id: &str,
        password: &str,
        model: Option<&str>,
        now: i64,
        cert: Option<&ClientChain>,
    ) -> Result<Device, Refusal> {
        if let Some(d) = self.get(id) {
            match &d.spec.auth {
                DeviceAuth::X509Thumbprint { primary, secondary } => {
                    let matches = cert.is_some_and(|c| {
                        c.thumbprint.eq_ignore_ascii_case(primary)
                            || secondary
                                .as_deref()
                                .is_some_and(|s| c.thumbprint.eq_ignore_ascii_case(s))
                    });
                    if !matches {
                        return Err(Refusal::BadCredentials(format!(
                            "device {id} authenticates with a client certificate of a registered thumbprint"
                        )));
                    }
                }
                DeviceAuth::X509Ca {} => {
                    let authorities = self.authorities_of(d.spec.enrollment.as_deref());
                    self.check_chain(id, cert, &authorities, now)?;
                }
                DeviceAuth::SymmetricKey { .. } | DeviceAuth::EnrollmentGroupKey {} => {
                    return self.authenticate(id, password, now);
                }
            }
            if !d.enabled {
                return Err(Refusal::NotAuthorized(format!("device {id} is disabled")));
            }
            return Ok(d);
        }
        let groups: Vec<EnrollmentSpec> =
            self.registry().groups().map(|g| g.spec.clone()).collect();
        let (group, auth) = match cert {
            Some(chain) if chain.common_name().as_deref() == Some(id) => {
                let group = groups.into_iter().find(|g| {
                    g.ca_certificate.as_deref().is_some_and(|pem| {
                        Authority::from_pem(pem).is_ok_and(|cas| chain.issued_by(&cas, now).is_ok())
                    })
                });
                let Some(group) = group else {
                    return Err(Refusal::BadCredentials(format!(
                        "no device {id}, and no enrollment group's authority issued its certificate"
                    )));
                };
                (group, DeviceAuth::X509Ca {})
            }
            _ => {
                let token =
                    sas::parse(password).map_err(|e| Refusal::BadCredentials(e.to_string()))?;
                let host = token
                    .resource
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let resource = sas::device_resource(&host, id);
                let group = groups.into_iter().find(|g| {
                    g.ca_certificate.is_none()
                        && self
                            .device_key_in(g, id)
                            .is_ok_and(|key| token.verify(&resource, &key, now).is_ok())
                });
                let Some(group) = group else {
                    return Err(Refusal::BadCredentials(format!("no device {id}")));
                };
                (group, DeviceAuth::EnrollmentGroupKey {})
            }
        };
        registry::check_id(id).map_err(|m| Refusal::BadCredentials(format!("device id: {m}")))?;
        let refuse = |why: String| {
            tracing::info!(device = id, group = group.name, why, "provisioning refused");
            Refusal::NotAuthorized(why)
        };
        let model = model.ok_or_else(|| {
            refuse(
                "announce the device's model (model-id in the user name) to be provisioned".into(),
            )
        })?;
        let mut models = self.store().models();
        if models.interface(model).is_none() {
            let Some(resolver) = self.models.get() else {
                return Err(refuse(format!(
                    "the model {model} is not loaded on the server (and no model repository is configured: models.repositories)"
                )));
            };
            if let Err(why) = resolver.resolve(model).await {
                models = self.store().models();
                // Another connection may have loaded it meanwhile.
                if models.interface(model).is_none() {
                    return Err(refuse(format!(
                        "the model {model} is not loaded on the server and the model repositories cannot supply it: {why}"
                    )));
                }
            }
            models = self.store().models();
            tracing::info!(
                device = id,
                model,
                "loaded a model a device announced from the model repositories"
            );
        }
        let interface = models
            .interface(model)
            .ok_or_else(|| refuse(format!("the model {model} is not loaded on the server")))?;
        if !group.models.is_empty() && !group.models.iter().any(|m| interface.is_a(m)) {
            return Err(refuse(format!(
                "enrollment group {} does not take {model}",
                group.name
            )));
        }
        let actor = format!("{} (enrollment)", group.name);
        match self.store().twin(id).await {
            Ok(Some(t)) if *t.model == *model => {}
            Ok(Some(t)) => {
                return Err(refuse(format!(
                    "twin {id} exists with another model, {}",
                    t.model
                )));
            }
            Ok(None) => {
                let ops = vec![
                    crate::twin::Op::CreateTwin {
                        id: id.to_owned(),
                        model: model.to_owned(),
                        desired: None,
                        reported: None,
                    },
                    crate::twin::Op::CreateRelationship {
                        source: group.parent.clone(),
                        id: None,
                        name: group.relationship.clone(),
                        target: id.to_owned(),
                        properties: None,
                    },
                ];
                if let Err(e) = self.store().apply(crate::twin::Batch { ops }, &actor).await {
                    return Err(refuse(format!("its twin cannot be created: {e}")));
                }
            }
            Err(e) => return Err(refuse(format!("the store is unavailable: {e}"))),
        }
        let spec_is_x509 = matches!(auth, DeviceAuth::X509Ca {});
        let spec = DeviceSpec {
            id: id.to_owned(),
            twin: id.to_owned(),
            auth,
            enrollment: Some(group.name.clone()),
        };
        let registered = self
            .folded
            .write(
                &actor,
                |reg: &Registry| -> Result<Vec<Record>, DeviceError> {
                    if reg.get(id).is_some() {
                        // Another connection provisioned it meanwhile.
                        return Ok(Vec::new());
                    }
                    if let Some(d) = reg.of_twin(id) {
                        return Err(DeviceError::Exists(format!(
                            "twin {id} already has device {}",
                            d.spec.id
                        )));
                    }
                    Ok(vec![Record::DeviceRegistered {
                        device: spec.clone(),
                    }])
                },
            )
            .await;
        if let Err(e) = registered {
            return Err(refuse(e.to_string()));
        }
        tracing::info!(
            device = id,
            group = group.name,
            model,
            "provisioned a device and its twin"
        );
        match cert {
            Some(_) if spec_is_x509 => self
                .get(id)
                .ok_or_else(|| Refusal::BadCredentials(format!("no device {id}"))),
            _ => self.authenticate(id, password, now),
        }
    }

    /// The authorities a device registered with `X509_CA` may chain to:
    /// its enrollment group's, or (registered by hand) the server's and
    /// every enrollment group's.
    fn authorities_of(&self, enrollment: Option<&str>) -> Vec<Authority> {
        let registry = self.registry();
        let group_cas = |g: &registry::Enrollment| {
            g.spec
                .ca_certificate
                .as_deref()
                .and_then(|pem| Authority::from_pem(pem).ok())
                .unwrap_or_default()
        };
        match enrollment {
            Some(name) => registry.group(name).map(group_cas).unwrap_or_default(),
            None => self
                .options
                .authorities
                .iter()
                .cloned()
                .chain(registry.groups().flat_map(group_cas))
                .collect(),
        }
    }

    /// Checks that `cert` names device `id` and chains to one of `authorities`.
    fn check_chain(
        &self,
        id: &str,
        cert: Option<&ClientChain>,
        authorities: &[Authority],
        now: i64,
    ) -> Result<(), Refusal> {
        let Some(chain) = cert else {
            return Err(Refusal::BadCredentials(format!(
                "device {id} authenticates with a client certificate issued by a trusted authority"
            )));
        };
        let name = chain.common_name().unwrap_or_default();
        if name != id {
            return Err(Refusal::BadCredentials(format!(
                "the certificate's common name is {name:?}, not the device id {id:?}"
            )));
        }
        chain
            .issued_by(authorities, now)
            .map(drop)
            .map_err(|m| Refusal::BadCredentials(format!("device {id}: {m}")))
    }

    /// Registers device `id` for `twin` (which the caller has checked it may
    /// see); its keys, for a symmetric-key device.
    pub async fn register(
        &self,
        id: &str,
        twin: &str,
        credentials: Credentials,
        actor: &str,
    ) -> Result<(Device, Option<Keys>), DeviceError> {
        registry::check_id(id).map_err(|m| DeviceError::invalid("id", m))?;
        let auth = match credentials {
            Credentials::SymmetricKey => {
                self.secret()?;
                DeviceAuth::SymmetricKey {
                    primary: 1,
                    secondary: 1,
                }
            }
            Credentials::X509Thumbprint { primary, secondary } => DeviceAuth::X509Thumbprint {
                primary: thumbprint("primaryThumbprint", &primary)?,
                secondary: secondary
                    .map(|s| thumbprint("secondaryThumbprint", &s))
                    .transpose()?,
            },
            Credentials::X509Ca => DeviceAuth::X509Ca {},
        };
        if self.store().twin(twin).await?.is_none() {
            return Err(StoreError::Twin(TwinError::NotFound(twin.to_owned())).into());
        }
        let spec = DeviceSpec {
            id: id.to_owned(),
            twin: twin.to_owned(),
            auth,
            enrollment: None,
        };
        self.folded
            .write(
                actor,
                |reg: &Registry| -> Result<Vec<Record>, DeviceError> {
                    if reg.get(id).is_some() {
                        return Err(DeviceError::Exists(format!("device {id} already exists")));
                    }
                    if let Some(d) = reg.of_twin(twin) {
                        return Err(DeviceError::Exists(format!(
                            "twin {twin} already has device {}",
                            d.spec.id
                        )));
                    }
                    Ok(vec![Record::DeviceRegistered {
                        device: spec.clone(),
                    }])
                },
            )
            .await?;
        let device = self
            .get(id)
            .ok_or_else(|| DeviceError::NotFound(id.to_owned()))?;
        let keys = self.keys(&device)?;
        Ok((device, keys))
    }

    /// Replaces key `slot` of a symmetric-key device; the new key. A
    /// connection made with the old key is ended.
    pub async fn rotate(
        &self,
        id: &str,
        slot: KeySlot,
        actor: &str,
    ) -> Result<String, DeviceError> {
        let secret = self.secret()?.clone();
        let mut generation = 0;
        self.folded
            .write(
                actor,
                |reg: &Registry| -> Result<Vec<Record>, DeviceError> {
                    let d = reg
                        .get(id)
                        .ok_or_else(|| DeviceError::NotFound(id.to_owned()))?;
                    let g = d.generation(slot).ok_or_else(|| {
                        DeviceError::invalid(
                            "id",
                            format!("device {id} authenticates with a certificate, not keys"),
                        )
                    })?;
                    generation = g + 1;
                    Ok(vec![Record::DeviceKeyRotated {
                        device: id.to_owned(),
                        slot,
                        generation,
                    }])
                },
            )
            .await?;
        self.hub.kick(id, "its key was rotated");
        Ok(secret.device_key(id, slot, generation))
    }

    /// Disables (`enabled: false`; a connected device is cut off at once)
    /// or enables a device.
    pub async fn set_enabled(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<String>,
        actor: &str,
    ) -> Result<Device, DeviceError> {
        self.folded
            .write(
                actor,
                |reg: &Registry| -> Result<Vec<Record>, DeviceError> {
                    let d = reg
                        .get(id)
                        .ok_or_else(|| DeviceError::NotFound(id.to_owned()))?;
                    if d.enabled == enabled {
                        return Ok(Vec::new());
                    }
                    Ok(vec![Record::DeviceStatusSet {
                        device: id.to_owned(),
                        enabled,
                        reason: reason.clone(),
                    }])
                },
            )
            .await?;
        if !enabled {
            self.hub.kick(id, "the device was disabled");
        }
        self.get(id)
            .ok_or_else(|| DeviceError::NotFound(id.to_owned()))
    }

    /// Deletes a device identity (its twin stays); a connected device is
    /// cut off at once.
    pub async fn delete(&self, id: &str, actor: &str) -> Result<(), DeviceError> {
        self.folded
            .write(
                actor,
                |reg: &Registry| -> Result<Vec<Record>, DeviceError> {
                    reg.get(id)
                        .ok_or_else(|| DeviceError::NotFound(id.to_owned()))?;
                    Ok(vec![Record::DeviceDeleted {
                        device: id.to_owned(),
                    }])
                },
            )
            .await?;
        self.hub.kick(id, "the device was deleted");
        Ok(())
    }

    /// Checks a device's SAS token (`password`) at `now` (Unix seconds):
    /// the device, if it may connect.
    pub fn authenticate(&self, id: &str, password: &str, now: i64) -> Result<Device, Refusal> {
        let device = self
            .get(id)
            .ok_or_else(|| Refusal::BadCredentials(format!("no device {id}")))?;
        let token = sas::parse(password).map_err(|e| Refusal::BadCredentials(e.to_string()))?;
        let keys = self
            .keys(&device)
            .map_err(|e| Refusal::NotAuthorized(e.to_string()))?
            .ok_or_else(|| {
                Refusal::BadCredentials(match &device.spec.enrollment {
                    Some(g) => format!("the enrollment group {g} of device {id} was deleted"),
                    None => format!("device {id} authenticates with a certificate"),
                })
            })?;
        // Any host: the signature covers it, and clients name the server
        // as they reach it.
        let host = token.resource.split('/').next().unwrap_or_default();
        let resource = sas::device_resource(host, id);
        let checked = token.verify(&resource, &keys.primary, now).or_else(|p| {
            // Say what is wrong with the token, not which key was tried: an
            // expired token signed with the primary key fails the secondary's
            // signature check.
            token.verify(&resource, &keys.secondary, now).map_err(|s| {
                if p == sas::SasError::BadSignature {
                    s
                } else {
                    p
                }
            })
        });
        checked.map_err(|e| Refusal::BadCredentials(e.to_string()))?;
        if !device.enabled {
            return Err(Refusal::NotAuthorized(format!("device {id} is disabled")));
        }
        Ok(device)
    }

    /// Records that `device` connected here (best effort: a store that
    /// cannot take it only costs the connection state).
    pub async fn connected(&self, device: &str, protocol: &str) {
        let r = Record::DeviceConnected {
            device: device.to_owned(),
            protocol: protocol.to_owned(),
            server: self.options.server.clone(),
        };
        if let Err(e) = self.folded.note(vec![r], &actor(device)).await {
            tracing::warn!(device, error = %e, "devices: cannot record a connection");
        }
    }

    /// Records that `device`'s connection here ended.
    pub async fn disconnected(&self, device: &str, reason: &str) {
        let r = Record::DeviceDisconnected {
            device: device.to_owned(),
            server: self.options.server.clone(),
            reason: reason.to_owned(),
        };
        if let Err(e) = self.folded.note(vec![r], &actor(device)).await {
            tracing::warn!(device, error = %e, "devices: cannot record a disconnection");
        }
    }

    /// Calls a direct method on the device of `twin`; `Ok(None)` when the
    /// twin has no device identity (nothing to deliver to).
    pub async fn call(
        &self,
        twin: &str,
        method: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Option<MethodAnswer>, DeviceError> {
        let Some(device) = self.registry().of_twin(twin).cloned() else {
            return Ok(None);
        };
        let elsewhere = device
            .connection
            .as_ref()
            .map(|c| c.server.clone())
            .filter(|s| *s != self.options.server && !self.hub.is_connected(&device.spec.id));
        let answer = match elsewhere {
            Some(server) => {
                self.relay_call(&device, server, method, payload, timeout)
                    .await
            }
            None => self.hub.call(twin, method, payload, timeout).await,
        };
        match answer {
            Ok(a) => Ok(Some(a)),
            Err(CallError::Offline) => Err(DeviceError::Offline(twin.to_owned())),
            Err(CallError::Timeout(timeout)) => Err(DeviceError::Timeout {
                twin: twin.to_owned(),
                timeout,
            }),
        }
    }

    /// Calls a method on a device connected to `server` (another replica):
    /// the request goes through the log, that server delivers it and
    /// records the answer, which comes back the same way.
    async fn relay_call(
        &self,
        device: &Device,
        server: String,
        method: &str,
        payload: Value,
        timeout: Duration,
    ) -> Relayed {
        let request = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.relayed_calls().insert(request.clone(), tx);
        // Abandoned or finished, the call stops waiting.
        struct Forget<'a>(&'a Devices, &'a str);
        impl Drop for Forget<'_> {
            fn drop(&mut self) {
                self.0.relayed_calls().remove(self.1);
            }
        }
        let _forget = Forget(self, &request);
        let r = Record::DeviceMethodRequested {
            request: request.clone(),
            device: device.spec.id.clone(),
            twin: device.spec.twin.clone(),
            method: method.to_owned(),
            payload,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            server,
        };
        if let Err(e) = self.folded.note(vec![r], &self.relay_actor()).await {
            tracing::warn!(device = device.spec.id, error = %e, "devices: cannot relay a method call");
            return Err(CallError::Offline);
        }
        match tokio::time::timeout(timeout + RELAY_MARGIN, rx).await {
            Ok(Ok(Err(CallError::Timeout(_)))) | Err(_) | Ok(Err(_)) => {
                Err(CallError::Timeout(timeout))
            }
            Ok(Ok(answer)) => answer,
        }
    }

    fn relayed_calls(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, tokio::sync::oneshot::Sender<Relayed>>> {
        self.relayed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn relay_actor(&self) -> String {
        format!("{} (server)", self.options.server)
    }

    /// Delivers a method call another server relayed to a device connected
    /// here, and records the answer for it.
    async fn answer_relayed(
        &self,
        request: String,
        device: String,
        twin: String,
        method: String,
        payload: Value,
        timeout: Duration,
    ) {
        let answer = self.hub.call(&twin, &method, payload, timeout).await;
        let (status, payload, error) = match answer {
            Ok(a) => (Some(a.status), a.payload, None),
            Err(CallError::Offline) => (None, Value::Null, Some("offline".to_owned())),
            Err(CallError::Timeout(_)) => (None, Value::Null, Some("timeout".to_owned())),
        };
        let r = Record::DeviceMethodAnswered {
            request,
            device: device.clone(),
            status,
            payload,
            error,
        };
        if let Err(e) = self.folded.note(vec![r], &actor(&device)).await {
            tracing::warn!(device, error = %e, "devices: cannot relay a method's answer");
        }
    }

    /// Whether the device of `twin` is connected, here or (as its
    /// connection records say) to another server.
    pub fn twin_connected(&self, twin: &str) -> bool {
        let reg = self.registry();
        reg.of_twin(twin).is_some_and(|d| {
            d.enabled
                && (self.hub.is_connected(&d.spec.id)
                    || d.connection
                        .as_ref()
                        .is_some_and(|c| c.server != self.options.server))
        })
    }
}

/// Serves method calls relayed through the log: delivers those for devices
/// connected here, hands answers to the calls waiting for them.
async fn relay(
    devices: std::sync::Weak<Devices>,
    mut changes: tokio::sync::broadcast::Receiver<Arc<crate::twin::Event>>,
) {
    use crate::twin::Change;
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let e = match changes.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "devices: the relay of method calls fell behind");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Change::Record(record) = &e.change else {
            continue;
        };
        let Some(d) = devices.upgrade() else { return };
        match record {
            Record::DeviceMethodRequested {
                request,
                device,
                twin,
                method,
                payload,
                timeout_ms,
                server,
            } if *server == d.options.server => {
                let (request, device, twin, method, payload) = (
                    request.clone(),
                    device.clone(),
                    twin.clone(),
                    method.clone(),
                    payload.clone(),
                );
                let timeout = Duration::from_millis(*timeout_ms);
                tokio::spawn(async move {
                    d.answer_relayed(request, device, twin, method, payload, timeout)
                        .await;
                });
            }
            Record::DeviceMethodAnswered {
                request,
                status,
                payload,
                error,
                ..
            } => {
                let waiting = d.relayed_calls().remove(request);
                if let Some(tx) = waiting {
                    let answer = match (status, error.as_deref()) {
                        (Some(status), _) => Ok(MethodAnswer {
                            status: *status,
                            payload: payload.clone(),
                        }),
                        (None, Some("timeout")) => Err(CallError::Timeout(Duration::ZERO)),
                        (None, _) => Err(CallError::Offline),
                    };
                    let _ = tx.send(answer);
                }
            }
            _ => {}
        }
    }
}

/// How a device names itself in the log: `{id} (device)`, as a principal.
pub fn actor(device: &str) -> String {
    format!("{device} (device)")
}

fn thumbprint(path: &str, t: &str) -> Result<String, DeviceError> {
    let t: String = t.chars().filter(|c| *c != ':').collect();
    if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(t.to_ascii_uppercase())
    } else {
        Err(DeviceError::invalid(
            path,
            "must be a SHA-256 thumbprint: 64 hexadecimal digits",
        ))
    }
}

/// The twin document a device reads (`$iothub/twin/GET`): desired and
/// reported properties with their versions, IoT Hub's shape. Both versions
/// are the twin's version (IoT Hub counts each section on its own; a
/// device compares them only with versions from the same server).
/// Telemetry is not part of it; acknowledged writable properties read
/// `{"value", "ac", "av", "ad"}` as the device reported them; the desired
/// section's `$metadata` gives each value's `$lastUpdated` and
/// `$lastUpdatedVersion` (the version to acknowledge), as IoT Hub's does.
pub fn twin_document(twin: &Twin, models: &crate::dtdl::ModelSet) -> Value {
    let interface = models.interface(&twin.model);
    let telemetry = |component: Option<&str>, name: &str| -> bool {
        let Some(i) = interface else { return false };
        let content = match component {
            None => i.content(name),
            Some(c) => match i.content(c).map(|c| &c.kind) {
                Some(crate::dtdl::model::ContentKind::Component { schema }) => {
                    models.interface(schema).and_then(|ci| ci.content(name))
                }
                _ => None,
            },
        };
        matches!(
            content.map(|c| &c.kind),
            Some(crate::dtdl::model::ContentKind::Telemetry { .. })
        )
    };
    let mut desired = Map::new();
    let mut reported = Map::new();
    let mut metadata = Map::new();
    let mut sections = |component: Option<&str>, state: &crate::twin::state::ComponentState| {
        let mut d = Map::new();
        let mut r = Map::new();
        for (name, p) in state.props.iter() {
            if let Some(v) = &p.desired {
                d.insert(name.to_owned(), v.value.clone());
                let m = serde_json::json!({
                    "$lastUpdated": crate::twin::format_time(v.last_updated),
                    "$lastUpdatedVersion": v.version,
                });
                match component {
                    None => {
                        metadata.insert(name.to_owned(), m);
                    }
                    Some(c) => {
                        if let Some(o) = metadata
                            .entry(c.to_owned())
                            .or_insert_with(|| Value::Object(Map::new()))
                            .as_object_mut()
                        {
                            o.insert(name.to_owned(), m);
                        }
                    }
                }
            }
            if let Some(v) = &p.reported
                && !telemetry(component, name)
            {
                let value = match &v.ack {
                    Some(a) => {
                        let mut m = Map::new();
                        m.insert("value".into(), v.value.clone());
                        m.insert("ac".into(), Value::from(a.code));
                        m.insert("av".into(), Value::from(a.version));
                        if let Some(ad) = &a.description {
                            m.insert("ad".into(), Value::from(ad.as_str()));
                        }
                        Value::Object(m)
                    }
                    None => v.value.clone(),
                };
                r.insert(name.to_owned(), value);
            }
        }
        (d, r)
    };
    let (d, r) = sections(None, &twin.root);
    desired.extend(d);
    reported.extend(r);
    for (c, state) in &twin.components {
        let (d, r) = sections(Some(c), state);
        for (section, values) in [(&mut desired, d), (&mut reported, r)] {
            if !values.is_empty() {
                let mut m = Map::new();
                m.insert("__t".into(), Value::from("c"));
                m.extend(values);
                section.insert(c.clone(), Value::Object(m));
            }
        }
    }
    desired.insert("$metadata".into(), Value::Object(metadata));
    desired.insert("$version".into(), Value::from(twin.version));
    reported.insert("$version".into(), Value::from(twin.version));
    serde_json::json!({ "desired": desired, "reported": reported })
}
