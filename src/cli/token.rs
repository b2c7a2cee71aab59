//! `twingraph token`: mints a bearer token for development and tests,
//! signed with the configured HS256 secret or a PEM private key.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::auth::jwt::{Claims, SigningKey, mint};
use crate::config::{Config, Overrides};

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Subject (`sub`): a user, an integration, or a device's twin id.
    #[arg(long)]
    pub sub: String,
    /// A role (viewer, operator, integration, admin, device); repeatable.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// A twin id the token is scoped to (it and everything under it);
    /// repeatable. None: unscoped.
    #[arg(long = "twin", value_name = "ID")]
    pub twins: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// `nbf` this many seconds from now.
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    pub not_before: Option<i64>,
    /// `kid` in the header (for JWKS keys).
    #[arg(long)]
    pub kid: Option<String>,
    /// Sign with this PEM private key (RSA → RS256, P-256 in PKCS#8 →
    /// ES256) instead of the configured HS256 secret.
    #[arg(long, value_name = "FILE")]
    pub private_key: Option<PathBuf>,
    /// Config file (TOML), for the secret, issuer, audience and claim names.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub jwt: super::serve::JwtArgs,
}

pub fn run(args: &TokenArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let file = args
        .config
        .clone()
        .or_else(|| Some(PathBuf::from("twingraph.toml")).filter(|p| p.is_file()));
    let overrides = args.jwt.overrides(Overrides::default());
    let config = Config::load(file.as_deref(), &|k| std::env::var(k).ok(), &overrides)?;
    let jwt = config.auth.clone();
    for r in &args.roles {
        if crate::auth::Role::parse(r).is_none() {
            anyhow::bail!("unknown role {r:?} (viewer, operator, integration, admin, device)");
        }
    }
    let key = match (&args.private_key, &jwt.secret) {
        (Some(path), _) => SigningKey::Pem(
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        ),
        (None, Some(secret)) => SigningKey::Secret(secret.clone()),
        (None, None) => anyhow::bail!(
            "no signing key: set TWINGRAPH_JWT_SECRET (or --jwt-secret), or give --private-key"
        ),
    };
    let claims = Claims {
        sub: args.sub.clone(),
        roles: args.roles.clone(),
        twins: (!args.twins.is_empty()).then(|| args.twins.clone()),
        ttl: Duration::from_secs(args.ttl),
        not_before: args.not_before,
        issuer: None,
        audience: None,
        kid: args.kid.clone(),
    };
    let token = mint(&key, &claims, &jwt).map_err(anyhow::Error::msg)?;
    writeln!(out, "{token}")?;
    Ok(super::EXIT_OK)
}
