//! `twingraph device`: device identities and enrollment groups of a running
//! server, through its GraphQL API (the `--url` WebSocket, as `simulate`):
//! the same mutations and queries, the same rights (an admin token to
//! manage). Prints the answer as JSON; keys are shown once, as in GraphQL.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::remote::Gql;

#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// The server's GraphQL WebSocket endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:4000/graphql/ws")]
    pub url: String,
    /// Bearer token, when the server authenticates (an admin's to manage).
    #[arg(long, env = "TWINGRAPH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Register a device for a twin; prints its keys (once) and connection
    /// string, or registers a certificate's thumbprint.
    Register {
        id: String,
        #[arg(long)]
        twin: String,
        /// SHA-256 thumbprint of its client certificate (X.509
        /// authentication instead of keys).
        #[arg(long)]
        thumbprint: Option<String>,
        #[arg(long, requires = "thumbprint")]
        secondary_thumbprint: Option<String>,
        /// It connects with a certificate a trusted authority issued, its
        /// common name the device id (`devices.ca_certificates` or an
        /// enrollment group's authority).
        #[arg(long, conflicts_with = "thumbprint")]
        ca: bool,
    },
    /// List device identities (the first 1,000, by id; `totalCount` says
    /// how many there are).
    List {
        /// Only connected (true) or disconnected (false) ones.
        #[arg(long)]
        connected: Option<bool>,
    },
    /// Show one device identity.
    Show { id: String },
    /// Replace a key (primary unless --secondary); prints the new one.
    Rotate {
        id: String,
        #[arg(long)]
        secondary: bool,
    },
    /// Disable a device (it is disconnected and may not connect).
    Disable {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Enable a disabled device.
    Enable { id: String },
    /// Delete a device identity (its twin stays).
    Delete { id: String },
    /// Create an enrollment group; prints its key (once).
    Enroll {
        name: String,
        /// The twin new devices' twins go under.
        #[arg(long)]
        parent: String,
        #[arg(long, default_value = "contains")]
        relationship: String,
        /// A model devices may announce (repeat; none: any loaded model).
        #[arg(long = "model")]
        models: Vec<String>,
        /// A certificate authority (PEM file): the group takes devices whose
        /// certificate it issued (common name the device id), and has no key.
        #[arg(long)]
        ca_certificate: Option<std::path::PathBuf>,
    },
}

const DEVICE: &str = "id twinId status statusReason connected lastActivity enrollment authentication { type primaryThumbprint secondaryThumbprint } session { protocol server since }";

pub fn run(args: &DeviceArgs, out: &mut dyn std::io::Write) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (query, variables) = request(&args.action)?;
    let answer = rt.block_on(async {
        let mut gql = Gql::connect(&args.url, args.token.as_deref()).await?;
        gql.call(&query, variables).await
    })?;
    if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
        for e in errors {
            eprintln!(
                "error: {} ({})",
                e["message"].as_str().unwrap_or("?"),
                e["extensions"]["code"].as_str().unwrap_or("?")
            );
        }
        return Ok(super::EXIT_USAGE);
    }
    writeln!(out, "{}", serde_json::to_string_pretty(&answer["data"])?)?;
    Ok(super::EXIT_OK)
}

/// The GraphQL request of an action.
fn request(action: &Action) -> anyhow::Result<(String, Value)> {
    Ok(match action {
        Action::Register {
            id,
            twin,
            thumbprint,
            secondary_thumbprint,
            ca,
        } => (
            format!("mutation($id: ID!, $twin: ID!, $auth: DeviceIdentityAuthenticationInput) {{ registerDevice(id: $id, twin: $twin, authentication: $auth) {{ primaryKey secondaryKey connectionString device {{ {DEVICE} }} }} }}"),
            json!({"id": id, "twin": twin, "auth": match (thumbprint, ca) {
                (Some(t), _) => json!({
                    "type": "X509_THUMBPRINT", "primaryThumbprint": t, "secondaryThumbprint": secondary_thumbprint,
                }),
                (None, true) => json!({"type": "X509_CA"}),
                (None, false) => Value::Null,
            }}),
        ),
        Action::List { connected } => (
            format!("query($c: Boolean) {{ deviceIdentities(connected: $c, first: 1000) {{ totalCount nodes {{ {DEVICE} }} }} }}"),
            json!({"c": connected}),
        ),
        Action::Show { id } => (
            format!("query($id: ID!) {{ deviceIdentity(id: $id) {{ {DEVICE} }} }}"),
            json!({"id": id}),
        ),
        Action::Rotate { id, secondary } => (
            "mutation($id: ID!, $slot: DeviceIdentityKeySlot) { rotateDeviceKey(id: $id, key: $slot) { key slot connectionString } }".to_owned(),
            json!({"id": id, "slot": if *secondary { "SECONDARY" } else { "PRIMARY" }}),
        ),
        Action::Disable { id, reason } => (
            format!("mutation($id: ID!, $r: String) {{ disableDevice(id: $id, reason: $r) {{ {DEVICE} }} }}"),
            json!({"id": id, "r": reason}),
        ),
        Action::Enable { id } => (
            format!("mutation($id: ID!) {{ enableDevice(id: $id) {{ {DEVICE} }} }}"),
            json!({"id": id}),
        ),
        Action::Delete { id } => (
            "mutation($id: ID!) { deleteDevice(id: $id) }".to_owned(),
            json!({"id": id}),
        ),
        Action::Enroll {
            name,
            parent,
            relationship,
            models,
            ca_certificate,
        } => {
            let ca = match ca_certificate {
                Some(f) => Some(std::fs::read_to_string(f).map_err(|e| {
                    anyhow::anyhow!("--ca-certificate: cannot read {}: {e}", f.display())
                })?),
                None => None,
            };
            (
                "mutation($n: String!, $p: ID!, $r: String, $m: [String!], $ca: String) { createDeviceEnrollmentGroup(name: $n, parent: $p, relationship: $r, models: $m, caCertificate: $ca) { groupKey group { name parent relationship models attestation } } }".to_owned(),
                json!({"n": name, "p": parent, "r": relationship, "m": models, "ca": ca}),
            )
        }
    })
}
