//! Authentication and authorization end to end: a real server on
//! 127.0.0.1 with bearer tokens, probed over HTTP and WebSocket.
//!
//! The plant: site-1 ⊃ area-1 ⊃ line-1 ⊃ cell-1 ⊃ {p1, p3}, and
//! site-2 ⊃ area-2 ⊃ line-2 ⊃ cell-2 ⊃ p2; p1 feeds p2 (across sites) and
//! p3; p1 depends on p2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use twingraph::auth::JwtConfig;
use twingraph::store::{GraphStore, Store, StoreConfig};
use twingraph::twin::{Batch, Op};

use crate::server::{Running, http_as, start_secured};
use crate::store_suite::{AREA, LINE, PUMP, SITE, create, rel};

const CELL: &str = "dtmi:twingraph:isa95:WorkCell;1";
const SECRET: &str = "test-secret-of-at-least-32-bytes!!";

fn keys() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        None,
        claims,
    )
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(keys().join(name)).expect("test key")
}

/// Claims of a token valid for an hour.
fn claims(sub: &str, roles: &[&str], twins: Option<&[&str]>) -> Value {
    let mut c = json!({"sub": sub, "roles": roles, "exp": now() + 3600});
    if let Some(t) = twins {
        c["twins"] = json!(t);
    }
    c
}

fn as_(sub: &str, roles: &[&str]) -> String {
    hs256(&claims(sub, roles, None))
}

fn scoped(sub: &str, roles: &[&str], twins: &[&str]) -> String {
    hs256(&claims(sub, roles, Some(twins)))
}

fn secret_config() -> JwtConfig {
    JwtConfig {
        secret: Some(SECRET.into()),
        leeway_seconds: 5,
        roles_claim: "roles".into(),
        twins_claim: "twins".into(),
        ..JwtConfig::default()
    }
}

async fn plant() -> Arc<dyn GraphStore> {
    let store: Arc<dyn GraphStore> = Arc::new(Store::in_memory(
        crate::support::sample_models(),
        StoreConfig::default(),
    ));
    let mut ops = Vec::new();
    for s in ["1", "2"] {
        ops.push(create(&format!("site-{s}"), SITE));
        ops.push(create(&format!("area-{s}"), AREA));
        ops.push(create(&format!("line-{s}"), LINE));
        ops.push(create(&format!("cell-{s}"), CELL));
        ops.push(rel(&format!("site-{s}"), "contains", &format!("area-{s}")));
        ops.push(rel(&format!("area-{s}"), "contains", &format!("line-{s}")));
        ops.push(rel(&format!("line-{s}"), "contains", &format!("cell-{s}")));
    }
    for (p, cell) in [("p1", "cell-1"), ("p2", "cell-2"), ("p3", "cell-1")] {
        ops.push(create(p, PUMP));
        ops.push(rel(cell, "contains", p));
    }
    ops.push(rel("p1", "feeds", "p2"));
    ops.push(rel("p1", "feeds", "p3"));
    ops.push(rel("p1", "dependsOn", "p2"));
    store.apply(Batch { ops }, "test").await.expect("plant");
    store
}

async fn server() -> (Running, Arc<dyn GraphStore>) {
    let store = plant().await;
    (start_secured(store.clone(), secret_config()).await, store)
}

/// POSTs a GraphQL request with `Authorization: <auth>`: status and body.
async fn post(addr: SocketAddr, auth: Option<&str>, query: &str, variables: Value) -> (u16, Value) {
    let body = json!({"query": query, "variables": variables}).to_string();
    let (status, text) = http_as(addr, "POST", "/graphql", Some(&body), auth).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    crate::server::assert_codes_are_in_the_table(&v);
    (status, v)
}

/// A request as the holder of `token`; asserts HTTP 200.
async fn gql(addr: SocketAddr, token: &str, query: &str, variables: Value) -> Value {
    let (status, v) = post(addr, Some(&format!("Bearer {token}")), query, variables).await;
    assert_eq!(status, 200, "{v}");
    v
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

const PUMP_Q: &str = "query($id: ID!) { twin(id: $id) { id } }";

#[tokio::test]
async fn only_valid_tokens_get_in() {
    let store = plant().await;
    let s = start_secured(
        store,
        JwtConfig {
            issuer: Some("https://idp.example".into()),
            audience: Some("twingraph".into()),
            ..secret_config()
        },
    )
    .await;
    let good = |extra: Value| {
        let mut c = claims("alice", &["viewer"], None);
        c["iss"] = json!("https://idp.example");
        c["aud"] = json!("twingraph");
        for (k, v) in extra.as_object().expect("object") {
            if v.is_null() {
                c.as_object_mut().expect("object").remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let vars = json!({"id": "p1"});
    // Accepted.
    let ok = gql(s.addr, &hs256(&good(json!({}))), PUMP_Q, vars.clone()).await;
    assert_eq!(ok["data"]["twin"]["id"], "p1", "{ok}");

    let mut refused: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("not a bearer", Some("Basic YWxpY2U6cHc=".into())),
        ("malformed", Some("Bearer not.a.jwt".into())),
        ("empty bearer", Some("Bearer ".into())),
    ];
    let other_secret = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        None,
        &good(json!({})),
    );
    let expired = hs256(&good(json!({"exp": now() - 60})));
    let not_yet = hs256(&good(json!({"nbf": now() + 60})));
    let no_exp = hs256(&good(json!({"exp": null})));
    let wrong_iss = hs256(&good(json!({"iss": "https://evil.example"})));
    let wrong_aud = hs256(&good(json!({"aud": "someone-else"})));
    // alg none: a header and claims, no signature.
    let b64 = |v: &Value| base64url(v.to_string().as_bytes());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good(json!({})))
    );
    for (what, token) in [
        ("bad signature", other_secret),
        ("expired", expired),
        ("not yet valid", not_yet),
        ("no exp", no_exp),
        ("wrong issuer", wrong_iss),
        ("wrong audience", wrong_aud),
        ("alg none", none),
    ] {
        refused.push((what, Some(format!("Bearer {token}"))));
    }
    for (what, auth) in refused {
        let (status, v) = post(s.addr, auth.as_deref(), PUMP_Q, vars.clone()).await;
        assert_eq!(status, 401, "{what}: {v}");
        assert_eq!(code(&v), "UNAUTHENTICATED", "{what}: {v}");
        assert!(v["data"].is_null(), "{what}: nothing served: {v}");
    }
    // A valid token granting no role: authenticated, allowed nothing.
    let (status, v) = post(
        s.addr,
        Some(&format!(
            "Bearer {}",
            hs256(&good(json!({"roles": ["superuser"]})))
        )),
        PUMP_Q,
        vars,
    )
    .await;
    assert_eq!((status, code(&v)), (403, "FORBIDDEN"), "{v}");
    s.shutdown().await;
}

/// Unpadded base64url (for hand-made tokens).
fn base64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn public_keys_accept_only_their_own_algorithm() {
    let store = plant().await;
    let rsa = start_secured(
        store.clone(),
        JwtConfig {
            secret: None,
            public_key: Some(keys().join("rsa1.pub.pem")),
            ..secret_config()
        },
    )
    .await;
    let c = claims("alice", &["viewer"], None);
    let rs256 = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&pem("rsa1.pem")).expect("rsa key"),
        None,
        &c,
    );
    let v = gql(rsa.addr, &rs256, PUMP_Q, json!({"id": "p1"})).await;
    assert_eq!(v["data"]["twin"]["id"], "p1", "{v}");
    // HS256 with the public key as the secret (key confusion), an EC
    // signature, another RSA key: all refused.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&pem("rsa1.pub.pem")),
        None,
        &c,
    );
    let es256 = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(&pem("ec1.pem")).expect("ec key"),
        None,
        &c,
    );
    let other_rsa = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&pem("rsa2.pem")).expect("rsa key"),
        None,
        &c,
    );
    for (what, t) in [
        ("HS256 with the public key", confused),
        ("ES256", es256),
        ("other RSA key", other_rsa),
    ] {
        let (status, v) = post(
            rsa.addr,
            Some(&format!("Bearer {t}")),
            PUMP_Q,
            json!({"id": "p1"}),
        )
        .await;
        assert_eq!((status, code(&v)), (401, "UNAUTHENTICATED"), "{what}: {v}");
    }
    rsa.shutdown().await;

    let ec = start_secured(
        store,
        JwtConfig {
            secret: None,
            public_key: Some(keys().join("ec1.pub.pem")),
            ..secret_config()
        },
    )
    .await;
    let es256 = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(&pem("ec1.pem")).expect("ec key"),
        None,
        &c,
    );
    let v = gql(ec.addr, &es256, PUMP_Q, json!({"id": "p1"})).await;
    assert_eq!(v["data"]["twin"]["id"], "p1", "{v}");
    ec.shutdown().await;
}

#[tokio::test]
async fn jwks_keys_are_chosen_by_kid_and_rotate_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("twingraph-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("jwks.json");
    std::fs::copy(keys().join("jwks.json"), &file).expect("jwks");
    let s = start_secured(
        plant().await,
        JwtConfig {
            secret: None,
            jwks: Some(file.clone()),
            ..secret_config()
        },
    )
    .await;
    let c = claims("alice", &["viewer"], None);
    let rsa1 = EncodingKey::from_rsa_pem(&pem("rsa1.pem")).expect("rsa1");
    let rsa2 = EncodingKey::from_rsa_pem(&pem("rsa2.pem")).expect("rsa2");
    let ec1 = EncodingKey::from_ec_pem(&pem("ec1.pem")).expect("ec1");
    let status = |t: String| async move {
        post(
            s.addr,
            Some(&format!("Bearer {t}")),
            PUMP_Q,
            json!({"id": "p1"}),
        )
        .await
        .0
    };
    assert_eq!(
        status(sign(Algorithm::RS256, &rsa1, Some("rsa-1"), &c)).await,
        200
    );
    assert_eq!(
        status(sign(Algorithm::ES256, &ec1, Some("ec-1"), &c)).await,
        200
    );
    // The right key under the wrong kid, an unknown kid: refused.
    assert_eq!(
        status(sign(Algorithm::RS256, &rsa1, Some("ec-1"), &c)).await,
        401
    );
    assert_eq!(
        status(sign(Algorithm::RS256, &rsa2, Some("rsa-2"), &c)).await,
        401
    );
    // Rotation: the file now holds only rsa-2.
    std::fs::write(
        &file,
        std::fs::read(keys().join("jwks-rotated.json")).expect("rotated"),
    )
    .expect("rotate");
    // (A file's time may not move within the same second: make sure it does.)
    let later = SystemTime::now() + Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(later))
        .expect("touch");
    assert_eq!(
        status(sign(Algorithm::RS256, &rsa2, Some("rsa-2"), &c)).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status(sign(Algorithm::RS256, &rsa1, Some("rsa-1"), &c)).await,
        401,
        "a key removed from the file is no longer accepted"
    );
    s.shutdown().await;
}

const PATCH_DESIRED: &str =
    r#"mutation($id: ID!) { patchDesired(id: $id, patch: {flowSetpoint: 7.0}) { id version } }"#;
const PATCH_REPORTED: &str =
    r#"mutation($id: ID!) { patchReported(id: $id, patch: {flowRate: 3.0}) { id version } }"#;
const CREATE: &str =
    r#"mutation($id: ID!) { createTwin(id: $id, model: "dtmi:twingraph:isa95:Pump;1") { id } }"#;
const DELETE: &str = "mutation($id: ID!) { deleteTwin(id: $id) }";
const CREATE_CONFIG: &str = r#"mutation($n: String!) { createConfiguration(name: $n, target: "dtmi:twingraph:isa95:Pump;1") { name createdBy } }"#;
const UPLOAD: &str = "mutation { uploadModels(models: []) { models } }";
const HISTORY: &str = "query($id: ID!) { history(id: $id) { nodes { actor kind } } }";

#[tokio::test]
async fn each_role_may_do_exactly_what_it_should() {
    let (s, _store) = server().await;
    let a = s.addr;
    let viewer = as_("vic", &["viewer"]);
    let operator = as_("olga", &["operator"]);
    let integration = as_("erp-7", &["integration"]);
    let admin = as_("ada", &["admin"]);
    let p1 = json!({"id": "p1"});

    // Viewer: reads only.
    assert_eq!(
        gql(a, &viewer, PUMP_Q, p1.clone()).await["data"]["twin"]["id"],
        "p1"
    );
    for (what, q) in [
        ("patch desired", PATCH_DESIRED),
        ("report", PATCH_REPORTED),
        ("delete", DELETE),
    ] {
        let v = gql(a, &viewer, q, p1.clone()).await;
        assert_eq!(code(&v), "FORBIDDEN", "viewer {what}: {v}");
    }
    assert_eq!(
        code(&gql(a, &viewer, CREATE, json!({"id": "v1"})).await),
        "FORBIDDEN"
    );

    // Operator: desired state, twins, relationships; not deletes,
    // configurations or models.
    let v = gql(a, &operator, PATCH_DESIRED, p1.clone()).await;
    assert!(v["errors"].is_null(), "{v}");
    let v = gql(a, &operator, CREATE, json!({"id": "o1"})).await;
    assert!(v["errors"].is_null(), "{v}");
    let v = gql(
        a,
        &operator,
        r#"mutation { createRelationship(source: "cell-1", name: "contains", target: "o1") { id } }"#,
        json!({}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(
        code(&gql(a, &operator, DELETE, json!({"id": "p3"})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(&gql(a, &operator, PATCH_REPORTED, p1.clone()).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(&gql(a, &operator, CREATE_CONFIG, json!({"n": "c1"})).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(&gql(a, &operator, UPLOAD, json!({})).await),
        "FORBIDDEN"
    );

    // Integration: like an operator, named in the audit trail.
    let v = gql(a, &integration, PATCH_DESIRED, json!({"id": "p3"})).await;
    assert!(v["errors"].is_null(), "{v}");
    assert_eq!(
        code(&gql(a, &integration, DELETE, json!({"id": "p3"})).await),
        "FORBIDDEN"
    );

    // Admin: configurations, deletes, reports.
    let v = gql(a, &admin, CREATE_CONFIG, json!({"n": "c1"})).await;
    assert_eq!(
        v["data"]["createConfiguration"]["createdBy"], "ada (admin)",
        "{v}"
    );
    let v = gql(a, &admin, PATCH_REPORTED, p1.clone()).await;
    assert!(v["errors"].is_null(), "{v}");

    // Every change names who made it, with the role.
    let h = gql(a, &admin, HISTORY, p1).await;
    let actors: Vec<&str> = h["data"]["history"]["nodes"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|n| n["actor"].as_str())
        .collect();
    assert!(actors.contains(&"olga (operator)"), "{actors:?}");
    assert!(actors.contains(&"ada (admin)"), "{actors:?}");
    let h = gql(a, &admin, HISTORY, json!({"id": "p3"})).await;
    assert!(h.to_string().contains("erp-7 (integration)"), "{h}");
    s.shutdown().await;
}

#[tokio::test]
async fn a_device_reaches_its_own_twin_only() {
    let (s, _store) = server().await;
    let a = s.addr;
    let device = as_("p1", &["device"]);
    let v = gql(a, &device, "{ twin(id: \"p1\") { id desired } }", json!({})).await;
    assert_eq!(v["data"]["twin"]["id"], "p1", "{v}");
    let v = gql(a, &device, PATCH_REPORTED, json!({"id": "p1"})).await;
    assert!(v["errors"].is_null(), "{v}");
    // Another twin: as if it did not exist.
    let other = gql(a, &device, PUMP_Q, json!({"id": "p3"})).await;
    assert!(other["data"]["twin"].is_null(), "{other}");
    let other = gql(a, &device, PATCH_REPORTED, json!({"id": "p3"})).await;
    let missing = gql(a, &device, PATCH_REPORTED, json!({"id": "nope"})).await;
    assert_eq!(code(&other), "NOT_FOUND", "{other}");
    assert_eq!(code(&other), code(&missing));
    // Its own desired state is the operators' to set.
    assert_eq!(
        code(&gql(a, &device, PATCH_DESIRED, json!({"id": "p1"})).await),
        "FORBIDDEN"
    );
    // Its neighbours do not exist for it.
    let v = gql(
        a,
        &device,
        "{ traverse(from: \"p1\", maxDepth: 3) { twin { id } } }",
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["traverse"], json!([]), "{v}");
    s.shutdown().await;
}

/// Device identities: only admins manage them, within their scope; a
/// scoped caller sees the devices of its subtree and no other; a device
/// sees its own; a device token cannot manage any.
#[tokio::test]
async fn device_identities_obey_roles_and_scope() {
    let (s, _store) = server().await;
    let a = s.addr;
    let admin = as_("root", &["admin"]);
    const REGISTER: &str = "mutation($d: ID!, $t: ID!) { registerDevice(id: $d, twin: $t) { primaryKey device { id } } }";
    for (d, t) in [("dev-1", "p1"), ("dev-2", "p2"), ("dev-3", "p3")] {
        let v = gql(a, &admin, REGISTER, json!({"d": d, "t": t})).await;
        assert_eq!(v["data"]["registerDevice"]["device"]["id"], d, "{v}");
    }
    const LIST: &str = "{ deviceIdentities { totalCount nodes { id twinId } } }";
    let ids = |v: &Value| -> Vec<String> {
        v["data"]["deviceIdentities"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        ids(&gql(a, &admin, LIST, json!({})).await),
        ["dev-1", "dev-2", "dev-3"]
    );
    // Operators, integrations, viewers and devices read; only admins manage.
    for who in [
        as_("op", &["operator"]),
        as_("erp", &["integration"]),
        as_("v", &["viewer"]),
        as_("p1", &["device"]),
    ] {
        for m in [
            r#"mutation { registerDevice(id: "dev-9", twin: "p3") { primaryKey } }"#,
            r#"mutation { rotateDeviceKey(id: "dev-1") { key } }"#,
            r#"mutation { disableDevice(id: "dev-1") { status } }"#,
            r#"mutation { enableDevice(id: "dev-1") { status } }"#,
            r#"mutation { deleteDevice(id: "dev-1") }"#,
        ] {
            let v = gql(a, &who, m, json!({})).await;
            assert_eq!(code(&v), "FORBIDDEN", "{m}: {v}");
            assert!(!v.to_string().contains("primaryKey\":\""), "{v}");
        }
    }
    // A device sees its own identity only.
    let device = as_("p1", &["device"]);
    assert_eq!(ids(&gql(a, &device, LIST, json!({})).await), ["dev-1"]);
    // A scoped operator: the devices of its subtree (cell-1: p1, p3).
    let cell1 = scoped("op1", &["operator"], &["cell-1"]);
    let v = gql(a, &cell1, LIST, json!({})).await;
    assert_eq!(ids(&v), ["dev-1", "dev-3"], "{v}");
    assert_eq!(v["data"]["deviceIdentities"]["totalCount"], 2, "{v}");
    let v = gql(
        a,
        &cell1,
        r#"{ deviceIdentity(id: "dev-2") { id } }"#,
        json!({}),
    )
    .await;
    assert!(v["data"]["deviceIdentity"].is_null(), "{v}");
    // A scoped admin manages the devices of its subtree, no other: those
    // out of scope do not exist for it, nor do their twins.
    let admin2 = scoped("adm2", &["admin"], &["cell-2"]);
    let v = gql(
        a,
        &admin2,
        r#"mutation { disableDevice(id: "dev-1") { status } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "DEVICE_NOT_FOUND", "{v}");
    let v = gql(a, &admin2, REGISTER, json!({"d": "dev-9", "t": "p1"})).await;
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    let v = gql(
        a,
        &admin2,
        r#"mutation { disableDevice(id: "dev-2") { status } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["disableDevice"]["status"], "DISABLED", "{v}");
    // Unchanged by every refusal above.
    let v = gql(
        a,
        &admin,
        "{ deviceIdentities { nodes { id status } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        v["data"]["deviceIdentities"]["nodes"],
        json!([{"id": "dev-1", "status": "ENABLED"}, {"id": "dev-2", "status": "DISABLED"}, {"id": "dev-3", "status": "ENABLED"}])
    );
    s.shutdown().await;
}

/// Every id in a response (string values named `id`, `twinId`, `source`,
/// `target`, or any string equal to a twin id of site 2).
fn leaks(v: &Value, out_of_scope: &[&str]) -> Vec<String> {
    let text = v.to_string();
    out_of_scope
        .iter()
        .filter(|id| text.contains(&format!("\"{id}\"")))
        .map(|id| (*id).to_owned())
        .collect()
}

const SITE2: [&str; 5] = ["site-2", "area-2", "line-2", "cell-2", "p2"];

#[tokio::test]
async fn a_scoped_token_sees_nothing_out_of_scope() {
    let (s, store) = server().await;
    let a = s.addr;
    let t = scoped("site-1-ops", &["operator"], &["site-1"]);
    let admin = as_("ada", &["admin"]);
    // Some history on p2 before anything is probed.
    let v = gql(a, &admin, PATCH_DESIRED, json!({"id": "p2"})).await;
    assert!(v["errors"].is_null(), "{v}");
    let probes: Vec<(&str, &str, Value)> = vec![
        ("lookup", PUMP_Q, json!({"id": "p2"})),
        ("list", "{ twins(first: 100) { nodes { id } } }", json!({})),
        (
            "filter",
            "query($w: JSON) { twins(first: 100, where: $w) { nodes { id } } }",
            json!({"w": {"id": {"in": ["p1", "p2"]}}}),
        ),
        (
            "list by model",
            r#"{ twins(model: "dtmi:twingraph:isa95:Equipment;1", first: 100) { nodes { id } } }"#,
            json!({}),
        ),
        (
            "traversal",
            "{ traverse(from: \"p1\", maxDepth: 5) { twin { id } } }",
            json!({}),
        ),
        (
            "relationships",
            "{ relationships(source: \"p1\", first: 100) { nodes { id source target } } }",
            json!({}),
        ),
        (
            "incoming",
            "{ relationships(target: \"p2\", first: 100) { nodes { id source } } }",
            json!({}),
        ),
        ("ancestors", "{ ancestors(id: \"p1\") { id } }", json!({})),
        ("typed lookup", "{ pump(id: \"p2\") { id } }", json!({})),
        (
            "typed list",
            "{ pumps(first: 100) { nodes { id } } }",
            json!({}),
        ),
        (
            "ordered typed list, a page at a time",
            "{ pumps(orderBy: [{power: DESC}], first: 1) { nodes { id } } }",
            json!({}),
        ),
        (
            "typed list as of",
            r#"{ pumps(asOf: "2100-01-01T00:00:00Z", first: 100) { totalCount nodes { id } } }"#,
            json!({}),
        ),
        (
            "ordered list",
            r#"{ twins(orderBy: [{path: "id", direction: DESC}], first: 100) { nodes { id } } }"#,
            json!({}),
        ),
        (
            "typed filter",
            "{ equipments(where: {id: {in: [\"p1\", \"p2\"]}}, first: 100) { nodes { id } } }",
            json!({}),
        ),
        (
            "typed relationships",
            "{ pump(id: \"p1\") { feeds { edges { node { id } } } dependsOn { edges { node { id } } } incomingRelationships { nodes { source } } } }",
            json!({}),
        ),
        (
            "typed time travel",
            "{ pump(id: \"p2\", asOf: \"2100-01-01T00:00:00Z\") { id } }",
            json!({}),
        ),
        (
            "descendants",
            "{ descendants(id: \"site-1\", maxDepth: 9) { id } }",
            json!({}),
        ),
        ("history", HISTORY, json!({"id": "p2"})),
        ("own history", HISTORY, json!({"id": "p1"})),
        (
            "event log",
            "{ events(after: \"0\", first: 1000) { nodes { seq change } } }",
            json!({}),
        ),
        (
            "as of",
            "query($at: DateTime) { twin(id: \"p2\", asOf: $at) { id } }",
            json!({"at": "2100-01-01T00:00:00Z"}),
        ),
        (
            "list backward",
            "{ twins(last: 100) { nodes { id } pageInfo { hasNextPage hasPreviousPage } } }",
            json!({}),
        ),
        (
            "typed list backward",
            "{ pumps(last: 1, before: \"p3\") { nodes { id } } }",
            json!({}),
        ),
        (
            "event log backward",
            "{ events(last: 1000) { nodes { seq change } } }",
            json!({}),
        ),
        ("node", "{ node(id: \"p2\") { id } }", json!({})),
    ];
    for (what, q, vars) in probes {
        let v = gql(a, &t, q, vars).await;
        let leaked = leaks(&v, &SITE2);
        assert!(leaked.is_empty(), "{what} leaks {leaked:?}: {v}");
        assert!(
            v["errors"].is_null() || code(&v) == "NOT_FOUND",
            "{what}: {v}"
        );
    }
    // In scope: everything under site-1 (and nothing above it).
    let v = gql(a, &t, "{ twins(first: 100) { nodes { id } } }", json!({})).await;
    let mut ids: Vec<String> = v["data"]["twins"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().unwrap_or("").to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["area-1", "cell-1", "line-1", "p1", "p3", "site-1"]);
    // Backward too: the last two it may see, and that more precede them.
    let v = gql(
        a,
        &t,
        "{ twins(last: 2) { nodes { id } pageInfo { hasPreviousPage } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        v["data"]["twins"],
        json!({"nodes": [{"id": "p3"}, {"id": "site-1"}], "pageInfo": {"hasPreviousPage": true}}),
        "{v}"
    );
    // Counts cover what it may see; a twin out of scope is as missing.
    let counts = r#"{ pumpsAggregate { count groupBy(field: runState) { count } } twins(first: 1) { totalCount }
        under: pumpsAggregate(under: "site-1") { count } }"#;
    let v = gql(a, &t, counts, json!({})).await;
    assert_eq!(
        v["data"],
        json!({"pumpsAggregate": {"count": 2, "groupBy": [{"count": 2}]},
               "twins": {"totalCount": 6}, "under": {"count": 2}}),
        "{v}"
    );
    let v = gql(
        a,
        &t,
        r#"{ pumpsAggregate(asOf: "2100-01-01T00:00:00Z") { count } pumps(asOf: "2100-01-01T00:00:00Z") { totalCount nodes { id } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        v["data"],
        json!({"pumpsAggregate": {"count": 2}, "pumps": {"totalCount": 2, "nodes": [{"id": "p1"}, {"id": "p3"}]}}),
        "{v}"
    );
    let v = gql(a, &admin, counts, json!({})).await;
    assert_eq!(v["data"]["pumpsAggregate"]["count"], 3, "{v}");
    assert_eq!(v["data"]["twins"]["totalCount"], 11, "{v}");
    let v = gql(
        a,
        &t,
        r#"{ pumpsAggregate(under: "site-2") { count } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    // Ordered, a page at a time: what it may see, in order, continued
    // past what it may not.
    let v = gql(
        a,
        &t,
        r#"{ twins(orderBy: [{path: "id", direction: DESC}], first: 4) { nodes { id } pageInfo { hasNextPage endCursor } } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        v["data"]["twins"]["nodes"],
        json!([{"id": "site-1"}, {"id": "p3"}, {"id": "p1"}, {"id": "line-1"}]),
        "{v}"
    );
    let after = v["data"]["twins"]["pageInfo"]["endCursor"].clone();
    let v = gql(
        a,
        &t,
        r#"query($a: String) { twins(orderBy: [{path: "id", direction: DESC}], first: 4, after: $a) { nodes { id } pageInfo { hasNextPage } } }"#,
        json!({"a": after}),
    )
    .await;
    assert_eq!(
        v["data"]["twins"],
        json!({"nodes": [{"id": "cell-1"}, {"id": "area-1"}], "pageInfo": {"hasNextPage": false}}),
        "{v}"
    );
    let v = gql(
        a,
        &t,
        "{ traverse(from: \"p1\", maxDepth: 5) { twin { id } } }",
        json!({}),
    )
    .await;
    assert!(v.to_string().contains("\"p3\""), "in-scope neighbour: {v}");

    // Writes out of scope fail as writes to a missing twin would.
    let out = gql(a, &t, PATCH_DESIRED, json!({"id": "p2"})).await;
    let missing = gql(a, &t, PATCH_DESIRED, json!({"id": "nope"})).await;
    assert_eq!(code(&out), "NOT_FOUND", "{out}");
    assert_eq!(code(&out), code(&missing));
    assert_eq!(
        out["errors"][0]["message"]
            .as_str()
            .map(|m| m.replace("p2", "X")),
        missing["errors"][0]["message"]
            .as_str()
            .map(|m| m.replace("nope", "X")),
    );
    // A batch reaching out of scope is refused whole.
    let before = store.twin("p1").await.expect("read").expect("p1").version;
    let v = gql(
        a,
        &t,
        "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }",
        json!({"ops": [
            {"op": "patchDesired", "id": "p1", "patch": {"flowSetpoint": 1.0}},
            {"op": "patchDesired", "id": "p2", "patch": {"flowSetpoint": 1.0}},
        ]}),
    )
    .await;
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    assert_eq!(
        store.twin("p1").await.expect("read").expect("p1").version,
        before,
        "nothing of the batch was written"
    );
    // A relationship to a twin out of scope cannot be made.
    let v = gql(
        a,
        &t,
        r#"mutation { createRelationship(source: "p1", name: "dependsOn", target: "p2") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&v), "NOT_FOUND", "{v}");
    // A twin created in scope must be placed in scope in the same batch.
    let v = gql(
        a,
        &t,
        "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }",
        json!({"ops": [
            {"op": "createTwin", "id": "p9", "model": PUMP},
            {"op": "createRelationship", "source": "cell-1", "name": "contains", "target": "p9"},
        ]}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    let v = gql(a, &t, CREATE, json!({"id": "p10"})).await;
    assert_eq!(code(&v), "FORBIDDEN", "{v}");

    // Rollouts: a target may not reach out of scope.
    let v = gql(a, &admin, CREATE_CONFIG, json!({"n": "flow"})).await;
    assert!(v["errors"].is_null(), "{v}");
    let v = gql(
        a,
        &admin,
        r#"mutation { publishConfigurationVersion(configuration: "flow", values: {flowSetpoint: 5.0}) { number } }"#,
        json!({}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    let start = r#"mutation($target: RolloutTargetInput!) {
        startRollout(configuration: "flow", version: 1, target: $target) { id twins(first: 100) { twin } }
    }"#;
    let out = gql(a, &t, start, json!({"target": {"ids": ["p1", "p2"]}})).await;
    let missing = gql(a, &t, start, json!({"target": {"ids": ["p1", "nope"]}})).await;
    assert_eq!(code(&out), "INVALID_ROLLOUT", "{out}");
    assert_eq!(code(&out), code(&missing));
    let v = gql(a, &t, start, json!({"target": {}})).await;
    assert!(v["errors"].is_null(), "{v}");
    assert!(leaks(&v, &SITE2).is_empty(), "by model: in scope only: {v}");
    let id = v["data"]["startRollout"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Another site's operator cannot see that rollout...
    let other = scoped("site-2-ops", &["operator"], &["site-2"]);
    let v = gql(
        a,
        &other,
        "query($id: ID!) { rollout(id: $id) { id } }",
        json!({"id": id}),
    )
    .await;
    assert!(v["data"]["rollout"].is_null(), "{v}");
    let v = gql(
        a,
        &other,
        "mutation($id: ID!) { cancelRollout(id: $id) { id } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(code(&v), "ROLLOUT_NOT_FOUND", "{v}");
    // ...while its own site's operator can.
    let v = gql(
        a,
        &t,
        "query($id: ID!) { rollout(id: $id) { id } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(v["data"]["rollout"]["id"], json!(id), "{v}");

    // Scope follows the hierarchy: p2 moved under site-1 is in scope.
    let moved = gql(
        a,
        &admin,
        "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }",
        json!({"ops": [
            {"op": "deleteRelationship", "source": "cell-2", "id": containment_id(&*store, "cell-2", "p2").await},
            {"op": "createRelationship", "source": "cell-1", "name": "contains", "target": "p2"},
        ]}),
    )
    .await;
    assert!(moved["errors"].is_null(), "{moved}");
    let v = gql(a, &t, PUMP_Q, json!({"id": "p2"})).await;
    assert_eq!(v["data"]["twin"]["id"], "p2", "{v}");
    s.shutdown().await;
}

async fn containment_id(store: &dyn GraphStore, source: &str, target: &str) -> String {
    store
        .relationships(
            source,
            twingraph::twin::query::Direction::Out,
            Some("contains"),
        )
        .await
        .expect("relationships")
        .into_iter()
        .find(|r| r.target == target)
        .expect("contains")
        .id
}

/// A WebSocket client (`graphql-transport-ws`), with an `Authorization`
/// header on the upgrade when given.
struct Ws {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

impl Ws {
    async fn open(addr: SocketAddr, header: Option<&str>) -> Result<Ws, u16> {
        let mut req = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("header"),
        );
        if let Some(h) = header {
            req.headers_mut()
                .insert("Authorization", h.parse().expect("header"));
        }
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        match tokio_tungstenite::client_async(req, tcp).await {
            Ok((ws, _)) => Ok(Ws { ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("handshake: {e}"),
        }
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// The next message: a JSON message, or the close code and reason.
    async fn next(&mut self) -> Result<Value, (u16, String)> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a message in time")
                .expect("open")
                .expect("frame");
            match msg {
                Message::Text(t) => return Ok(serde_json::from_str(&t).expect("json")),
                Message::Close(f) => {
                    let f = f.expect("close frame");
                    return Err((f.code.into(), f.reason.to_string()));
                }
                _ => {}
            }
        }
    }

    async fn init(&mut self, payload: Value) -> Result<Value, (u16, String)> {
        self.send(json!({"type": "connection_init", "payload": payload}))
            .await;
        self.next().await
    }
}

#[tokio::test]
async fn websockets_authenticate_and_close_when_the_token_expires() {
    let (s, store) = server().await;
    let a = s.addr;
    // No token anywhere: refused at connection_init.
    let mut ws = Ws::open(a, None).await.expect("upgrade");
    let (code, reason) = ws.init(json!({})).await.expect_err("closed");
    assert_eq!(code, 4403, "{reason}");
    // A bad token on the upgrade request: refused before upgrading.
    assert_eq!(Ws::open(a, Some("Bearer nonsense")).await.err(), Some(401));
    // A good one on the upgrade, or in connection_init.
    let mut ws = Ws::open(a, Some(&format!("Bearer {}", as_("vic", &["viewer"]))))
        .await
        .expect("upgrade");
    assert_eq!(
        ws.init(json!({})).await.expect("ack")["type"],
        "connection_ack"
    );
    let mut ws = Ws::open(a, None).await.expect("upgrade");
    let scoped_token = scoped("site-1-ops", &["viewer"], &["site-1"]);
    let ack = ws
        .init(json!({"Authorization": format!("Bearer {scoped_token}")}))
        .await
        .expect("ack");
    assert_eq!(ack["type"], "connection_ack");
    // Subscriptions deliver only events in scope.
    ws.send(json!({"type": "subscribe", "id": "1", "payload": {"query": "subscription { events { seq twins } }"}}))
        .await;
    let mut unscoped = Ws::open(a, None).await.expect("upgrade");
    unscoped
        .init(json!({"Authorization": format!("Bearer {}", as_("vic", &["viewer"]))}))
        .await
        .expect("ack");
    unscoped
        .send(json!({"type": "subscribe", "id": "1", "payload": {"query": "subscription { events { seq twins } }"}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in ["p2", "p1"] {
        store
            .apply(
                Batch::one(Op::PatchReported {
                    id: id.into(),
                    patch: json!({"flowRate": 1.0}),
                    expected_version: None,
                    source_time: None,
                }),
                "test",
            )
            .await
            .expect("report");
    }
    let first = unscoped.next().await.expect("event");
    assert_eq!(
        first["payload"]["data"]["events"]["twins"],
        json!(["p2"]),
        "{first}"
    );
    let first = ws.next().await.expect("event");
    assert_eq!(
        first["payload"]["data"]["events"]["twins"],
        json!(["p1"]),
        "the p2 change is never delivered: {first}"
    );
    // A device receives the changes of its own twin only: an operator's
    // desired change to p3 is not delivered to p1's device, p1's is.
    let mut device = Ws::open(a, None).await.expect("upgrade");
    device
        .init(json!({"Authorization": format!("Bearer {}", as_("p1", &["device"]))}))
        .await
        .expect("ack");
    device
        .send(json!({"type": "subscribe", "id": "d", "payload": {"query": "subscription { events(kinds: [\"desiredPatched\"]) { seq twins } }"}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in ["p3", "p1"] {
        store
            .apply(
                Batch::one(Op::PatchDesired {
                    id: id.into(),
                    patch: json!({"flowSetpoint": 3.0}),
                    expected_version: None,
                }),
                "test",
            )
            .await
            .expect("desired");
    }
    let first = device.next().await.expect("event");
    assert_eq!(
        first["payload"]["data"]["events"]["twins"],
        json!(["p1"]),
        "the device sees its own twin's change only: {first}"
    );
    // A token that expires closes its connection.
    let short = hs256(&json!({"sub": "vic", "roles": ["viewer"], "exp": now() + 2}));
    let server = start_secured(
        plant().await,
        JwtConfig {
            leeway_seconds: 0,
            ..secret_config()
        },
    )
    .await;
    let mut ws = Ws::open(server.addr, None).await.expect("upgrade");
    ws.init(json!({"Authorization": format!("Bearer {short}")}))
        .await
        .expect("ack");
    let started = std::time::Instant::now();
    let (code, reason) = loop {
        match ws.next().await {
            Ok(_) => {}
            Err(closed) => break closed,
        }
    };
    assert_eq!(code, 4403, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(5));
    server.shutdown().await;
    s.shutdown().await;
}

#[test]
fn development_mode_serves_loopback_only_and_token_mints_tokens() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_twingraph"))
        .args(["serve", "--listen", "0.0.0.0:0", "--models"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dtdl"))
        .env_remove("TWINGRAPH_JWT_SECRET")
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_twingraph"))
        .args([
            "token", "--sub", "olga", "--role", "operator", "--twin", "site-1", "--ttl", "600",
        ])
        .env("TWINGRAPH_JWT_SECRET", SECRET)
        .output()
        .expect("run token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let verifier = twingraph::auth::Verifier::new(secret_config()).expect("verifier");
    let p = verifier.verify(&token).expect("a valid token");
    assert_eq!(p.sub, "olga");
    assert_eq!(p.roles, [twingraph::auth::Role::Operator]);
    assert_eq!(p.twins, Some(vec!["site-1".to_owned()]));
    let exp = p.expires.expect("exp") as i64;
    assert!((exp - now() - 600).abs() <= 5, "{exp}");
}

#[tokio::test]
async fn rollout_twins_do_not_name_containers_out_of_scope() {
    let (s, _store) = server().await;
    let a = s.addr;
    let admin = as_("ada", &["admin"]);
    for q in [
        r#"mutation { createConfiguration(name: "flow", target: "dtmi:twingraph:isa95:Pump;1") { name } }"#,
        r#"mutation { publishConfigurationVersion(configuration: "flow", values: {flowSetpoint: 5.0}) { number } }"#,
    ] {
        let v = gql(a, &admin, q, json!({})).await;
        assert!(v["errors"].is_null(), "{v}");
    }
    // Scoped to the pumps themselves: their cell is out of scope.
    let pumps = scoped("pump-ops", &["operator"], &["p1", "p3"]);
    let v = gql(
        a,
        &pumps,
        r#"mutation { startRollout(configuration: "flow", version: 1, target: {ids: ["p1", "p3"]}, plan: {orderByHierarchy: true}) {
            id twins(first: 10) { twin parent } } }"#,
        json!({}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    let twins = &v["data"]["startRollout"]["twins"];
    assert_eq!(twins.as_array().map(Vec::len), Some(2), "{v}");
    assert!(
        twins
            .as_array()
            .expect("twins")
            .iter()
            .all(|t| t["parent"].is_null()),
        "{v}"
    );
    assert!(!v.to_string().contains("cell-1"), "{v}");
    // The site's operator sees the container.
    let site = scoped("site-1-ops", &["operator"], &["site-1"]);
    let id = v["data"]["startRollout"]["id"].as_str().expect("id");
    let v = gql(
        a,
        &site,
        "query($id: ID!) { rollout(id: $id) { twins(first: 10) { twin parent } } }",
        json!({"id": id}),
    )
    .await;
    assert!(v.to_string().contains("cell-1"), "{v}");
    s.shutdown().await;
}
