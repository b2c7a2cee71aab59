//! Bearer tokens (JWT): verification into a [`Principal`], and minting.
//!
//! Keys come from one source: an HS256 shared secret, a PEM public key
//! (RS256 for RSA, ES256 for P-256), or a JWKS file holding several public
//! keys by `kid` (RS256/ES256). The JWKS file is read again when it
//! changes (looked at, at most once a second, when a token arrives; at
//! once for a `kid` it does not know), so keys rotate without a restart.
//!
//! A token is accepted only with an algorithm its key is for (`alg: none`,
//! HS256 against a public key, RS256 against an EC key are refused), a
//! valid signature, an `exp` not past and an `nbf` reached (both with
//! `leeway`), and the configured `iss` and `aud` if any.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::{Principal, Role};

/// How tokens are checked: the `[auth]` settings (see `docs/settings.md`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// HS256 shared secret.
    #[serde(rename = "jwt_secret")]
    pub secret: Option<String>,
    /// PEM file with an RSA (RS256) or P-256 (ES256) public key.
    #[serde(rename = "jwt_public_key")]
    pub public_key: Option<PathBuf>,
    /// JWKS file (keys by `kid`).
    pub jwks: Option<PathBuf>,
    #[serde(rename = "jwt_issuer")]
    pub issuer: Option<String>,
    #[serde(rename = "jwt_audience")]
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(rename = "jwt_leeway_seconds")]
    pub leeway_seconds: u64,
    /// The claim listing the roles.
    #[serde(rename = "jwt_roles_claim")]
    pub roles_claim: String,
    /// The claim listing the twin ids the token is scoped to.
    #[serde(rename = "jwt_twins_claim")]
    pub twins_claim: String,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            secret: None,
            public_key: None,
            jwks: None,
            issuer: None,
            audience: None,
            leeway_seconds: 30,
            roles_claim: "roles".to_owned(),
            twins_claim: "twins".to_owned(),
        }
    }
}

impl JwtConfig {
    /// Whether a key is configured (authentication on).
    pub fn enabled(&self) -> bool {
        self.secret.is_some() || self.public_key.is_some() || self.jwks.is_some()
    }
}

/// Why a token was refused (all map to `UNAUTHENTICATED`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unauthenticated(pub String);

fn refused(why: impl Into<String>) -> Unauthenticated {
    Unauthenticated(why.into())
}

/// Why the key settings cannot be used (at startup).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("set only one of the JWT secret, public key and JWKS file")]
    Several,
    #[error("no JWT key is configured")]
    None,
}

fn file_error(path: &std::path::Path, message: impl std::fmt::Display) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// A key and the one algorithm it verifies.
struct Key {
    alg: Algorithm,
    key: DecodingKey,
}

/// The keys of a JWKS file as last read.
struct Jwks {
    path: PathBuf,
    modified: Option<SystemTime>,
    checked: Instant,
    keys: HashMap<String, Key>,
    /// The key to use for tokens without `kid` (when the file has one key).
    only: Option<String>,
}

enum Keys {
    One(Key),
    Jwks(RwLock<Jwks>),
}

/// Checks bearer tokens.
pub struct Verifier {
    keys: Keys,
    config: JwtConfig,
    /// Moves whenever the keys are read again (what was verified with the
    /// old ones must be verified again).
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.config.issuer)
            .field("audience", &self.config.audience)
            .finish_non_exhaustive()
    }
}

/// How often a JWKS file is looked at for changes.
const JWKS_CHECK: Duration = Duration::from_secs(1);

impl Verifier {
    /// Reads the configured key (exactly one source must be set).
    pub fn new(config: JwtConfig) -> Result<Verifier, KeyError> {
        let sources = usize::from(config.secret.is_some())
            + usize::from(config.public_key.is_some())
            + usize::from(config.jwks.is_some());
        if sources > 1 {
            return Err(KeyError::Several);
        }
        let keys = if let Some(secret) = &config.secret {
            Keys::One(Key {
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            })
        } else if let Some(path) = &config.public_key {
            let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
            Keys::One(pem_key(&pem).map_err(|e| file_error(path, e))?)
        } else if let Some(path) = &config.jwks {
            Keys::Jwks(RwLock::new(read_jwks(path)?))
        } else {
            return Err(KeyError::None);
        };
        Ok(Verifier {
            keys,
            config,
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Which keys verify now (see [`generation`](Verifier::generation)):
    /// reads a JWKS file again if it changed (looked at most once a second).
    pub fn refresh_keys(&self) {
        if let Keys::Jwks(jwks) = &self.keys {
            self.refresh(jwks, false);
        }
    }

    /// Moves whenever the keys change: a token verified at another
    /// generation must be verified again.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether a verified token's principal is still within its `exp`
    /// (with the leeway).
    pub fn unexpired(&self, p: &Principal) -> bool {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        p.expires
            .is_none_or(|exp| exp.saturating_add(self.config.leeway_seconds) > now)
    }

    /// The principal a bearer token stands for, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Principal, Unauthenticated> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| refused(format!("malformed token: {e}")))?;
        let claims = match &self.keys {
            Keys::One(k) => self.decode(token, header.alg, k)?,
            Keys::Jwks(jwks) => {
                self.refresh(jwks, false);
                let found = {
                    let j = jwks.read().unwrap_or_else(|p| p.into_inner());
                    let kid = header.kid.clone().or_else(|| j.only.clone());
                    kid.and_then(|kid| j.keys.get(&kid).map(|k| self.decode(token, header.alg, k)))
                };
                match found {
                    Some(r) => r?,
                    None => {
                        // A key published since the last look.
                        self.refresh(jwks, true);
                        let j = jwks.read().unwrap_or_else(|p| p.into_inner());
                        let kid = header.kid.clone().or_else(|| j.only.clone());
                        let key = kid
                            .as_ref()
                            .and_then(|kid| j.keys.get(kid))
                            .ok_or_else(|| refused("no key for the token's kid"))?;
                        self.decode(token, header.alg, key)?
                    }
                }
            }
        };
        self.principal(claims)
    }

    fn decode(
        &self,
        token: &str,
        alg: Algorithm,
        key: &Key,
    ) -> Result<Map<String, Value>, Unauthenticated> {
        if alg != key.alg {
            return Err(refused(format!(
                "algorithm {alg:?} is not accepted (expected {:?})",
                key.alg
            )));
        }
        let mut v = Validation::new(key.alg);
        v.leeway = self.config.leeway_seconds;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp"]);
        match &self.config.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.config.issuer {
            v.set_issuer(&[iss]);
        }
        jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                refused(match e.kind() {
                    K::ExpiredSignature => "the token has expired".to_owned(),
                    K::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
                    K::InvalidSignature => "bad signature".to_owned(),
                    K::InvalidIssuer => "wrong issuer".to_owned(),
                    K::InvalidAudience => "wrong audience".to_owned(),
                    K::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
                    _ => format!("invalid token: {e}"),
                })
            })
    }

    /// Reads the JWKS file again if it changed (looking at most once a
    /// second unless `now`). A file that cannot be read keeps the old keys.
    fn refresh(&self, jwks: &RwLock<Jwks>, now: bool) {
        let (path, modified) = {
            let j = jwks.read().unwrap_or_else(|p| p.into_inner());
            if !now && j.checked.elapsed() < JWKS_CHECK {
                return;
            }
            (j.path.clone(), j.modified)
        };
        let current = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut j = jwks.write().unwrap_or_else(|p| p.into_inner());
        j.checked = Instant::now();
        if current == modified {
            return;
        }
        match read_jwks(&path) {
            Ok(fresh) => {
                tracing::info!(path = %path.display(), keys = fresh.keys.len(), "JWKS reloaded");
                *j = fresh;
                self.generation
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            Err(e) => tracing::warn!(error = %e, "JWKS not reloaded; keeping the previous keys"),
        }
    }

    fn principal(&self, claims: Map<String, Value>) -> Result<Principal, Unauthenticated> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| refused("the token has no sub claim"))?
            .to_owned();
        let strings = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            }
        };
        let mut roles: Vec<Role> = strings(claims.get(&self.config.roles_claim))
            .iter()
            .filter_map(|r| Role::parse(r))
            .collect();
        roles.sort();
        roles.dedup();
        // A device token's twin is its `sub`; a twins claim would widen it.
        let device_only = !roles.is_empty() && roles.iter().all(|r| *r == Role::Device);
        let twins = claims
            .get(&self.config.twins_claim)
            .filter(|_| !device_only)
            .map(|v| strings(Some(v)));
        let expires = claims.get("exp").and_then(Value::as_u64);
        Ok(Principal {
            sub,
            roles,
            twins,
            expires,
        })
    }
}

/// A PEM public key: RSA → RS256, EC P-256 → ES256.
fn pem_key(pem: &[u8]) -> Result<Key, String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(Key {
            alg: Algorithm::RS256,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok(Key {
            alg: Algorithm::ES256,
            key,
        });
    }
    Err("not an RSA or EC public key in PEM".to_owned())
}

fn read_jwks(path: &std::path::Path) -> Result<Jwks, KeyError> {
    let meta = std::fs::metadata(path).map_err(|e| file_error(path, e))?;
    let text = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let set: JwkSet = serde_json::from_slice(&text).map_err(|e| file_error(path, e))?;
    let mut keys = HashMap::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => {
                tracing::warn!(
                    key = i,
                    "JWKS: only RSA and P-256 keys are used; skipping one"
                );
                continue;
            }
        };
        let key =
            DecodingKey::from_jwk(jwk).map_err(|e| file_error(path, format!("key {i}: {e}")))?;
        let kid = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
        keys.insert(kid, Key { alg, key });
    }
    if keys.is_empty() {
        return Err(file_error(path, "no usable key (RSA or P-256)"));
    }
    let only = (keys.len() == 1)
        .then(|| keys.keys().next().cloned())
        .flatten();
    Ok(Jwks {
        path: path.to_owned(),
        modified: meta.modified().ok(),
        checked: Instant::now(),
        keys,
        only,
    })
}

/// What `twingraph token` puts in a token.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<String>,
    pub twins: Option<Vec<String>>,
    /// Lifetime from now.
    pub ttl: Duration,
    /// `nbf` this far from now (may be in the future).
    pub not_before: Option<i64>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// `kid` in the header.
    pub kid: Option<String>,
}

/// How a token is signed: an HS256 secret, or a PEM private key (RSA →
/// RS256, EC P-256 in PKCS#8 → ES256).
#[derive(Debug, Clone)]
pub enum SigningKey {
    Secret(String),
    Pem(Vec<u8>),
}

/// A signed token carrying `claims` (claim names as configured).
pub fn mint(key: &SigningKey, claims: &Claims, config: &JwtConfig) -> Result<String, String> {
    let (alg, key) = match key {
        SigningKey::Secret(s) => (Algorithm::HS256, EncodingKey::from_secret(s.as_bytes())),
        SigningKey::Pem(pem) => match EncodingKey::from_rsa_pem(pem) {
            Ok(k) => (Algorithm::RS256, k),
            Err(_) => (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(pem)
                    .map_err(|e| format!("not an RSA or EC private key: {e}"))?,
            ),
        },
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let ttl = i64::try_from(claims.ttl.as_secs()).unwrap_or(i64::MAX);
    let mut body = Map::new();
    body.insert("sub".into(), Value::from(claims.sub.clone()));
    body.insert("iat".into(), Value::from(now));
    body.insert("exp".into(), Value::from(now.saturating_add(ttl)));
    if let Some(nbf) = claims.not_before {
        body.insert("nbf".into(), Value::from(now.saturating_add(nbf)));
    }
    let roles_claim = if config.roles_claim.is_empty() {
        "roles"
    } else {
        &config.roles_claim
    };
    let twins_claim = if config.twins_claim.is_empty() {
        "twins"
    } else {
        &config.twins_claim
    };
    body.insert(roles_claim.to_owned(), Value::from(claims.roles.clone()));
    if let Some(t) = &claims.twins {
        body.insert(twins_claim.to_owned(), Value::from(t.clone()));
    }
    if let Some(iss) = claims.issuer.as_ref().or(config.issuer.as_ref()) {
        body.insert("iss".into(), Value::from(iss.clone()));
    }
    if let Some(aud) = claims.audience.as_ref().or(config.audience.as_ref()) {
        body.insert("aud".into(), Value::from(aud.clone()));
    }
    let mut header = Header::new(alg);
    header.kid = claims.kid.clone();
    jsonwebtoken::encode(&header, &body, &key).map_err(|e| e.to_string())
}
