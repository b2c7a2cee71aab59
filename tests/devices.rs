//! Device credentials against Microsoft's Azure IoT device SDK for Python
//! (`tools/iot-sdk`): the SAS tokens it makes from a device key verify
//! here (and fail with another key, for another device, once expired), and
//! the tokens made here read back there.

use std::process::Command;

use twingraph::devices::sas::{self, SasError};

const KEY: &str = "c2VjcmV0LWRldmljZS1rZXktb2YtMzItYnl0ZXMhIQ==";
const HOST: &str = "twingraph.example.com";

fn sdk(args: &[&str]) -> String {
    let python = crate::support::python_tool("iot-sdk");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/iot-sdk/sas_token.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("the SDK script runs");
    assert!(
        out.status.success(),
        "sas_token.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn now() -> i64 {
    use twingraph::twin::clock::Clock as _;
    twingraph::twin::clock::SystemClock.now() / 1_000_000
}

#[test]
fn tokens_the_azure_iot_sdk_makes_verify() {
    // Device ids with characters the SDKs escape differently.
    for device in ["pump-1", "line3:pump(7)!", "cell 2/robot#1"] {
        let resource = sas::device_resource(HOST, device);
        let token = sdk(&["make", &resource, KEY, "3600"]);
        let parsed = sas::parse(&token).unwrap_or_else(|e| panic!("{token}: {e}"));
        assert_eq!(parsed.resource, resource);
        assert_eq!(parsed.verify(&resource, KEY, now()), Ok(()), "{token}");
        let other_key = "b3RoZXIta2V5LW9mLWFub3RoZXItZGV2aWNlLTMyYg==";
        assert_eq!(
            parsed.verify(&resource, other_key, now()),
            Err(SasError::BadSignature)
        );
        assert!(matches!(
            parsed.verify(&sas::device_resource(HOST, "someone-else"), KEY, now()),
            Err(SasError::WrongResource { .. })
        ));
    }
    let resource = sas::device_resource(HOST, "pump-1");
    let expired = sdk(&["make", &resource, KEY, "-60"]);
    assert!(matches!(
        sas::parse(&expired)
            .expect("parsed")
            .verify(&resource, KEY, now()),
        Err(SasError::Expired { .. })
    ));
}

#[test]
fn tokens_made_here_read_back_in_the_azure_iot_sdk() {
    let resource = sas::device_resource(HOST, "line3:pump(7)!");
    let expiry = now() + 600;
    let token = sas::sign(&resource, KEY, expiry).expect("token");
    let read: Value = serde_json::from_str(&sdk(&["read", &token])).expect("JSON");
    assert_eq!(read["resource"], resource.as_str());
    assert_eq!(read["expiry"], expiry);
}

// The MQTT device endpoint, through the `twingraph serve` binary.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Stdio};

use serde_json::{Value, json};

/// A `twingraph serve --demo` (one cell) with its MQTT endpoint: HTTP on an
/// ephemeral port, MQTT at `mqtt` (TLS with the test certificate when
/// `tls`); stopped with SIGTERM when dropped.
struct Served {
    child: Option<Child>,
    http: SocketAddr,
    mqtt: SocketAddr,
    /// HTTP over TLS (the test certificate).
    https: bool,
}

impl Served {
    fn start(name: &str, mqtt: &str, tls: bool, env: &[(&str, &str)]) -> Served {
        Served::launch(name, "127.0.0.1:0", mqtt, tls, false, env)
    }

    /// HTTPS on 127.0.0.1:443 (where the SDK dials MQTT over WebSocket).
    fn start_https(name: &str) -> Served {
        Served::launch(name, "127.0.0.1:443", "127.0.0.1:0", false, true, &[])
    }

    fn launch(
        name: &str,
        listen: &str,
        mqtt: &str,
        tls: bool,
        https: bool,
        env: &[(&str, &str)],
    ) -> Served {
        let dir = crate::support::scratch_dir(name);
        let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_twingraph"));
        cmd.args(["serve", "--demo", "--listen", listen, "--mqtt-listen", mqtt])
            .arg("--data")
            .arg(dir.join("data"))
            .arg("--models")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dtdl"))
            .env("TWINGRAPH_DEMO_CELLS", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if tls {
            cmd.env("TWINGRAPH_MQTT_TLS_CERT", keys.join("tls.crt"))
                .env("TWINGRAPH_MQTT_TLS_KEY", keys.join("tls.key"));
        }
        if https {
            cmd.arg("--tls-cert")
                .arg(keys.join("tls.crt"))
                .arg("--tls-key")
                .arg(keys.join("tls.key"));
        }
        let mut child = cmd.spawn().expect("serve starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped"));
        let (mut http, mut mqtt) = (None, None);
        let mut line = String::new();
        while http.is_none() {
            line.clear();
            let n = lines.read_line(&mut line).expect("reads");
            assert!(n > 0, "serve exited before listening");
            let addr = || {
                line.split("://")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|a| a.parse::<SocketAddr>().ok())
            };
            if line.contains("MQTT device endpoint on") {
                mqtt = addr();
            } else if line.contains("listening on") {
                http = addr();
            }
        }
        // TWINGRAPH_TEST_SERVER_LOGS=1: the server's log on the test's stderr.
        let show = std::env::var_os("TWINGRAPH_TEST_SERVER_LOGS").is_some();
        let name = name.to_owned();
        std::thread::spawn(move || {
            let mut sink = String::new();
            while lines.read_line(&mut sink).is_ok_and(|n| n > 0) {
                if show {
                    eprint!("[{name}] {sink}");
                }
                sink.clear();
            }
        });
        Served {
            child: Some(child),
            http: http.expect("HTTP address"),
            mqtt: mqtt.expect("the MQTT endpoint's address is printed before HTTP's"),
            https,
        }
    }

    async fn gql(&self, query: &str, variables: Value) -> Value {
        if !self.https {
            return crate::server::gql(self.http, query, variables).await;
        }
        // HTTPS, trusting the test CA only.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/ca.crt");
        let tls = twingraph::devices::client::tls_connector(&ca).expect("the test CA");
        let tcp = tokio::net::TcpStream::connect(self.http)
            .await
            .expect("connects");
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let mut stream = tls.connect(name, tcp).await.expect("TLS");
        let body = json!({"query": query, "variables": variables}).to_string();
        let request = format!(
            "POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("writes");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Registers a symmetric-key device for `twin`; its primary key.
    async fn register(&self, device: &str, twin: &str) -> String {
        let v = self
            .gql(
                "mutation($d: ID!, $t: ID!) { registerDevice(id: $d, twin: $t) { primaryKey secondaryKey connectionString device { id twinId status connected } } }",
                json!({"d": device, "t": twin}),
            )
            .await;
        let r = &v["data"]["registerDevice"];
        assert_eq!(r["device"]["twinId"], twin, "{v}");
        assert_eq!(r["device"]["status"], "ENABLED", "{v}");
        assert_ne!(r["primaryKey"], r["secondaryKey"], "{v}");
        r["primaryKey"].as_str().expect("a key").to_owned()
    }

    async fn twin(&self, id: &str) -> Value {
        let v = self
            .gql(
                "query($id: ID!) { twin(id: $id) { version ... on Pump { flowRate flowSetpoint flowSetpointDesired manufacturer } } }",
                json!({"id": id}),
            )
            .await;
        v["data"]["twin"].clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// A SAS token of `device` signed with `key`, valid for `secs` (negative:
/// expired that long ago).
fn token(device: &str, key: &str, secs: i64) -> String {
    sas::sign(
        &sas::device_resource("localhost", device),
        key,
        now() + secs,
    )
    .expect("token")
}

fn username(device: &str) -> String {
    format!("localhost/{device}/?api-version=2021-04-12")
}

/// `tools/iot-sdk/{script}` with `args`, on the SDK's virtual environment:
/// it must succeed, and the JSON object it printed last is what it saw.
fn sdk_json<S: AsRef<std::ffi::OsStr>>(script: &str, args: impl IntoIterator<Item = S>) -> Value {
    let python = crate::support::python_tool("iot-sdk");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools/iot-sdk")
        .join(script);
    let out = Command::new(python)
        .arg(path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{script} runs: {e}"));
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{script}: {e}: {text}"))
}

/// Paho (`tools/iot-sdk/raw.py`) against the endpoint: what it saw.
fn raw(mqtt: SocketAddr, device: &str, password: &str, scenario: &[&str]) -> Value {
    let port = mqtt.port().to_string();
    let args = ["127.0.0.1", port.as_str(), device, password];
    sdk_json("raw.py", args.iter().chain(scenario))
}

/// The folder of mosquitto_pub and mosquitto_sub (Debian's
/// mosquitto-clients, installed if missing and allowed).
fn mosquitto() -> std::path::PathBuf {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools/mqtt/ensure-mosquitto-clients.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("bash runs tools/mqtt/ensure-mosquitto-clients.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// `mosquitto_pub` of one QoS 1 message: its exit status and what it said.
fn mosquitto_pub(
    mqtt: SocketAddr,
    device: &str,
    password: &str,
    topic: &str,
    message: &str,
) -> (bool, String) {
    let out = Command::new(mosquitto().join("mosquitto_pub"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &mqtt.port().to_string(),
            "-V",
            "mqttv311",
        ])
        .args(["-i", device, "-u", &username(device), "-P", password])
        .args(["-q", "1", "-t", topic, "-m", message])
        .output()
        .expect("mosquitto_pub runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The SDK tests listen on 127.0.0.1:8883 (the SDK's fixed port): one at
/// a time (the README's `cargo test` runs them in this one process).
async fn port_8883() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// `tools/iot-sdk/device.py` as device `pump-0` (key `key`) of twin
/// `c0.e0`, GraphQL at `url`: what it saw.
async fn device_py(key: &str, url: &str, extra: &[&str]) -> Value {
    let conn = format!("HostName=localhost;DeviceId=pump-0;SharedAccessKey={key}");
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/ca.crt");
    let mut args: Vec<std::ffi::OsString> =
        vec![conn.into(), ca.into(), url.into(), "c0.e0".into()];
    args.extend(extra.iter().map(Into::into));
    tokio::task::spawn_blocking(move || sdk_json("device.py", args))
        .await
        .expect("joins")
}

/// What device.py saw: the desired patch at the version the mutation made,
/// and the command as a direct method with the device's answer in the
/// mutation's (`context` prefixes the failure messages).
fn got_change_and_command(seen: &Value, context: &str) {
    let version = &seen["set_desired"]["data"]["patchDesired"]["version"];
    assert!(version.is_u64(), "{context}{seen}");
    assert_eq!(
        seen["patches"],
        json!([{"$version": version, "flowSetpoint": 17.5}]),
        "{context}{seen}"
    );
    assert_eq!(
        seen["methods"],
        json!([{"name": "resetFault", "payload": null}]),
        "{context}{seen}"
    );
    assert_eq!(
        seen["command"]["data"]["equipmentResetFault"],
        json!({"command": "resetFault", "status": 200, "response": {"ran": "resetFault", "got": null}}),
        "{context}{seen}"
    );
}

/// Microsoft's device SDK, unchanged, over MQTT and TLS (port 8883):
/// telemetry lands in the twin's typed fields (undeclared fields do not),
/// reported patches and Plug and Play acknowledgements land in its state,
/// a desired change made through GraphQL reaches the SDK's handler with
/// its version, a command mutation becomes a direct method the SDK
/// answers (status and payload back in the mutation's answer), and
/// `get_twin()` shows what GraphQL shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_iot_device_sdk_syncs_its_twin_over_mqtt() {
    let _port = port_8883().await;
    let s = Served::start("devices-sdk", "127.0.0.1:8883", true, &[]);
    let key = s.register("pump-0", "c0.e0").await;
    let before = s.twin("c0.e0").await;
    let url = format!("http://{}/graphql", s.http);
    let seen = device_py(&key, &url, &[]).await;
    got_change_and_command(&seen, "");
    let version = &seen["set_desired"]["data"]["patchDesired"]["version"];
    // The twin as the device read it before: desired and reported with versions.
    let doc = &seen["twin_before"];
    assert_eq!(doc["reported"]["manufacturer"], "ACME", "{doc}");
    assert_eq!(
        doc["desired"]["flowSetpoint"], before["flowSetpointDesired"],
        "{doc}"
    );
    assert!(
        doc["reported"].get("flowRate").is_none(),
        "telemetry is not a reported property: {doc}"
    );
    // And after: the acknowledgement as reported.
    let after = &seen["twin_after"];
    assert_eq!(after["desired"]["flowSetpoint"], 17.5);
    assert_eq!(
        after["reported"]["flowSetpoint"],
        json!({"value": 17.5, "ac": 200, "av": version, "ad": "applied"})
    );
    assert!(
        after["desired"]["$version"].as_u64() > doc["desired"]["$version"].as_u64(),
        "{after}"
    );
    // GraphQL sees what the device sent: telemetry typed, the undeclared
    // field nowhere, the reported property, the acknowledgement.
    let v = s
        .gql(
            r#"{ twin(id: "c0.e0") { version ... on Pump { flowRate manufacturer flowSetpoint flowSetpointMetadata { ackStatus ackCode ackVersion } } }
                 deviceIdentity(id: "pump-0") { connected lastActivity }
                 events(last: 40) { nodes { kind actor } } }"#,
            json!({}),
        )
        .await;
    let t = &v["data"]["twin"];
    assert_eq!(t["flowRate"], 42.5, "{v}");
    assert_eq!(t["manufacturer"], "ACME", "{v}");
    assert_eq!(t["flowSetpoint"], 17.5, "{v}");
    assert_eq!(
        t["flowSetpointMetadata"],
        json!({"ackStatus": "ACKNOWLEDGED", "ackCode": 200, "ackVersion": version}),
        "{v}"
    );
    assert_eq!(t["version"], after["reported"]["$version"], "{v}");
    let events = v["data"]["events"]["nodes"].as_array().expect("events");
    let has = |kind: &str, actor: &str| {
        events
            .iter()
            .any(|e| e["kind"] == kind && e["actor"] == actor)
    };
    assert!(has("deviceConnected", "pump-0 (device)"), "{v}");
    assert!(
        has("reportedPatched", "pump-0 (device)"),
        "the device's writes name it: {v}"
    );
    assert!(has("commandInvoked", "anonymous"), "{v}");
    // The SDK disconnected: so says the device, soon.
    let mut connected = Value::Null;
    for _ in 0..50 {
        let v = s
            .gql(
                r#"{ deviceIdentity(id: "pump-0") { connected lastActivity }
                     twin(id: "c0.e0") { deviceIdentity { id connected lastActivity } } }"#,
                json!({}),
            )
            .await;
        connected = v["data"]["deviceIdentity"]["connected"].clone();
        if connected == false {
            // The twin shows the same, through its own field.
            let mut seen = v["data"]["deviceIdentity"].clone();
            seen["id"] = json!("pump-0");
            assert_eq!(v["data"]["twin"]["deviceIdentity"], seen, "{v}");
            assert!(seen["lastActivity"].is_string(), "{v}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(connected, false);
}

/// The same SDK over WebSocket (`websockets=True`: MQTT over WSS to port
/// 443, path `/$iothub/websocket`), served by the HTTP listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_iot_device_sdk_connects_over_websockets() {
    let _port = port_8883().await;
    let s = Served::start_https("devices-ws");
    let key = s.register("pump-0", "c0.e0").await;
    let seen = device_py(&key, "https://localhost:443/graphql", &["websockets"]).await;
    let version = &seen["set_desired"]["data"]["patchDesired"]["version"];
    assert_eq!(
        seen["patches"],
        json!([{"$version": version, "flowSetpoint": 17.5}]),
        "{seen}"
    );
    assert_eq!(
        seen["command"]["data"]["equipmentResetFault"]["status"], 200,
        "{seen}"
    );
    let v = s
        .gql(r#"{ twin(id: "c0.e0") { ... on Pump { flowRate } } events(last: 30) { nodes { kind change } } }"#, json!({}))
        .await;
    assert_eq!(v["data"]["twin"]["flowRate"], 42.5, "{v}");
    let protocols: Vec<&Value> = v["data"]["events"]["nodes"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "deviceConnected")
        .map(|e| &e["change"]["protocol"])
        .collect();
    assert_eq!(protocols, [&json!("mqtt-ws")], "{v}");
}

/// What a device may not do, each refused the protocol's way with nothing
/// written: wrong, expired and foreign credentials (mosquitto_pub), bad
/// reported patches (400 with a reason on the response topic), another
/// device's topics, QoS 2, oversized packets and unframable bytes (the
/// connection closes), floods (429); a disabled or deleted device is cut
/// off at once and may not come back, a rotated key stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_get_the_protocols_errors_and_nothing_is_written() {
    let s = Served::start(
        "devices-hostile",
        "127.0.0.1:0",
        false,
        &[
            ("TWINGRAPH_MQTT_MAX_MESSAGE_BYTES", "4096"),
            ("TWINGRAPH_MQTT_MESSAGES_PER_SECOND", "20"),
        ],
    );
    let key = s.register("pump-0", "c0.e0").await;
    let other = s.register("motor-1", "c0.e1").await;
    let good = token("pump-0", &key, 600);
    let events = "devices/pump-0/messages/events/";
    let before = s.twin("c0.e0").await;

    for (password, why) in [
        (token("pump-0", &other, 600), "another device's key"),
        (token("pump-0", &key, -60), "an expired token"),
        (token("motor-1", &other, 600), "another device's token"),
        ("SharedAccessSignature sr=x".to_owned(), "a malformed token"),
    ] {
        let (ok, said) = mosquitto_pub(s.mqtt, "pump-0", &password, events, r#"{"flowRate": 1}"#);
        assert!(!ok, "{why}: accepted");
        assert!(said.contains("bad user name or password"), "{why}: {said}");
    }
    let (ok, _) = mosquitto_pub(
        s.mqtt,
        "pump-0",
        &good,
        "devices/motor-1/messages/events/",
        r#"{"flowRate": 2}"#,
    );
    assert!(
        !ok,
        "a publish to another device's topic closes the connection"
    );
    assert_eq!(s.twin("c0.e0").await, before, "nothing written");

    // Twin requests: the protocol's statuses, with a JSON reason.
    let r = raw(s.mqtt, "pump-0", &good, &["twin"]);
    let mut answers = r["answers"].as_array().expect("answers").clone();
    answers.sort_by_key(|a| a["rid"].as_str().and_then(|r| r.parse::<u32>().ok()));
    let statuses: Vec<&Value> = answers.iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [400, 400, 400, 400, 204, 200], "{r}");
    assert_eq!(answers[2]["body"]["code"], "validation_failed", "{r}");
    assert!(
        answers[2]["body"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("flowSetpoint"),
        "{r}"
    );
    assert_eq!(answers[3]["body"]["code"], "validation_failed", "{r}");
    assert_eq!(answers[0]["body"]["code"], "invalid_argument", "{r}");
    let patched = s.twin("c0.e0").await;
    assert_eq!(patched["manufacturer"], "Raw Co");
    assert_eq!(answers[4]["version"], patched["version"].to_string(), "{r}");
    assert_eq!(
        answers[5]["body"]["reported"]["manufacturer"], "Raw Co",
        "{r}"
    );
    assert_eq!(
        patched["version"].as_u64(),
        before["version"].as_u64().map(|v| v + 1),
        "only the valid patch was written"
    );

    // What closes the connection, with nothing written.
    for scenario in [
        &["foreign-subscribe"][..],
        &["qos2"],
        &["oversized", "8000"],
    ] {
        let r = raw(s.mqtt, "pump-0", &good, scenario);
        assert_eq!(r["closed"], true, "{scenario:?}: {r}");
    }
    assert_eq!(s.twin("c0.e0").await, patched, "nothing written");
    // Bytes that frame no packet: closed, and the server goes on serving.
    for bytes in [
        &[0x10u8, 0xff, 0xff, 0xff, 0xff, 0x7f][..],
        &[0x30, 0x02, 0x00],
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        let mut tcp = std::net::TcpStream::connect(s.mqtt).expect("connects");
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(15)))
            .expect("timeout");
        tcp.write_all(bytes).expect("writes");
        let mut buf = [0u8; 16];
        let n = tcp.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{bytes:?}: the server answered {:?}", &buf[..n]);
    }
    // A flood: answered 429 beyond the rate (20/s here).
    let r = raw(s.mqtt, "pump-0", &good, &["flood", "60"]);
    assert!(r["statuses"]["429"].as_u64() > Some(0), "{r}");
    assert!(r["statuses"]["200"].as_u64() >= Some(20), "{r}");

    // Commands: a device not connected is offline (nothing recorded); one
    // that does not answer times out; a twin without a device identity
    // only records the call.
    const RESET: &str = "mutation($id: ID!, $t: Float) { equipmentResetFault(id: $id, timeoutSeconds: $t) { command status } }";
    let last_seq = |v: &Value| v["data"]["events"]["nodes"][0]["seq"].clone();
    const LAST: &str = "{ events(last: 1) { nodes { seq kind } } }";
    // The flood's connection has ended (its disconnection recorded) first.
    for _ in 0..100 {
        let v = s
            .gql(
                r#"{ deviceIdentity(id: "pump-0") { connected } }"#,
                json!({}),
            )
            .await;
        if v["data"]["deviceIdentity"]["connected"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let seq = last_seq(&s.gql(LAST, json!({})).await);
    let v = s.gql(RESET, json!({"id": "c0.e0"})).await;
    assert_eq!(crate::server::code(&v), "DEVICE_OFFLINE", "{v}");
    assert_eq!(
        last_seq(&s.gql(LAST, json!({})).await),
        seq,
        "nothing recorded"
    );
    let v = s.gql(RESET, json!({"id": "c0.e2"})).await;
    assert_eq!(
        v["data"]["equipmentResetFault"],
        json!({"command": "resetFault", "status": null}),
        "{v}"
    );

    // Disabled while connected: cut off at once, and refused after.
    let python = crate::support::python_tool("iot-sdk");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/iot-sdk/raw.py");
    let mut waiting = Command::new(python)
        .arg(script)
        .args([
            "127.0.0.1",
            &s.mqtt.port().to_string(),
            "pump-0",
            &good,
            "wait",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("raw.py runs");
    let mut lines = BufReader::new(waiting.stdout.take().expect("piped")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains("connected"), "{first}");
    let v = s.gql(RESET, json!({"id": "c0.e0", "t": 0.5})).await;
    assert_eq!(crate::server::code(&v), "DEVICE_TIMEOUT", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("500ms"),
        "{v}"
    );
    let v = s
        .gql(
            r#"mutation { disableDevice(id: "pump-0", reason: "stolen") { status statusReason } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        v["data"]["disableDevice"],
        json!({"status": "DISABLED", "statusReason": "stolen"}),
        "{v}"
    );
    let last: Value = serde_json::from_str(&lines.next().and_then(Result::ok).unwrap_or_default())
        .expect("raw.py's result");
    assert_eq!(last["closed"], true, "{last}");
    assert!(
        last["after"].as_f64() < Some(2.0),
        "cut off at once: {last}"
    );
    let _ = waiting.wait();
    let (ok, said) = mosquitto_pub(s.mqtt, "pump-0", &good, events, "{}");
    assert!(!ok && said.contains("not authorised"), "{said}");
    s.gql(
        r#"mutation { enableDevice(id: "pump-0") { status } }"#,
        json!({}),
    )
    .await;
    let (ok, said) = mosquitto_pub(s.mqtt, "pump-0", &good, events, r#"{"flowRate": 3.5}"#);
    assert!(ok, "{said}");
    assert_eq!(s.twin("c0.e0").await["flowRate"], 3.5);

    // A rotated key: the old one stops working, the new one works.
    let v = s
        .gql(
            r#"mutation { rotateDeviceKey(id: "pump-0") { key slot } }"#,
            json!({}),
        )
        .await;
    let new_key = v["data"]["rotateDeviceKey"]["key"]
        .as_str()
        .expect("a key")
        .to_owned();
    assert_ne!(new_key, key);
    let (ok, _) = mosquitto_pub(s.mqtt, "pump-0", &good, events, "{}");
    assert!(!ok, "the old key is refused");
    let (ok, said) = mosquitto_pub(
        s.mqtt,
        "pump-0",
        &token("pump-0", &new_key, 600),
        events,
        "{}",
    );
    assert!(ok, "{said}");

    // The secondary key rotates on its own; the primary stays good.
    let v = s
        .gql(
            r#"mutation { rotateDeviceKey(id: "pump-0", key: SECONDARY) { key slot } }"#,
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["rotateDeviceKey"]["slot"], "SECONDARY", "{v}");
    let secondary = v["data"]["rotateDeviceKey"]["key"]
        .as_str()
        .expect("a key")
        .to_owned();
    for key in [&new_key, &secondary] {
        let (ok, said) = mosquitto_pub(s.mqtt, "pump-0", &token("pump-0", key, 600), events, "{}");
        assert!(ok, "{said}");
    }
    let v = s
        .gql(
            r#"mutation { disableDevice(id: "motor-1") { status } }"#,
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["disableDevice"]["status"], "DISABLED", "{v}");
    let v = s
        .gql(
            r#"{ disabled: deviceIdentities(status: DISABLED) { nodes { id } } enabled: deviceIdentities(status: ENABLED) { nodes { id } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        v["data"]["disabled"]["nodes"],
        json!([{"id": "motor-1"}]),
        "{v}"
    );
    assert_eq!(
        v["data"]["enabled"]["nodes"],
        json!([{"id": "pump-0"}]),
        "{v}"
    );

    // What /metrics counted (read with the Prometheus client's parser).
    let (status, text) = crate::server::http(s.http, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    let samples = crate::support::openmetrics_samples(&text);
    let sample = |name: &str| {
        samples
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name} in {samples:?}"))
    };
    assert!(sample(r#"twingraph_device_connects_total{outcome="refused"}"#) >= 5.0);
    assert!(sample(r#"twingraph_device_connects_total{outcome="accepted"}"#) >= 10.0);
    assert!(sample(r#"twingraph_device_messages_total{kind="reported",outcome="refused"}"#) >= 4.0);
    assert!(sample(r#"twingraph_device_messages_total{kind="twin_get",outcome="refused"}"#) >= 1.0);
    assert_eq!(sample("twingraph_devices_connected"), 0.0);

    // Deleted: refused as unknown; its twin stays.
    let v = s
        .gql(r#"mutation { deleteDevice(id: "pump-0") }"#, json!({}))
        .await;
    assert_eq!(v["data"]["deleteDevice"], "pump-0", "{v}");
    let (ok, said) = mosquitto_pub(
        s.mqtt,
        "pump-0",
        &token("pump-0", &new_key, 600),
        events,
        "{}",
    );
    assert!(!ok && said.contains("bad user name or password"), "{said}");
    assert!(s.twin("c0.e0").await.is_object());
    let v = s
        .gql(
            r#"{ deviceIdentity(id: "pump-0") { id } deviceIdentities { totalCount nodes { id } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["deviceIdentity"], Value::Null);
    assert_eq!(
        v["data"]["deviceIdentities"],
        json!({"totalCount": 1, "nodes": [{"id": "motor-1"}]}),
        "{v}"
    );
}

/// `twingraph simulate --mqtt` plays the pumps' devices over the endpoint
/// (a device identity each, SAS tokens, twin reads, Plug and Play
/// acknowledgements): a staged rollout reaches them and completes, the
/// values acknowledged; with devices that reject, the same kind of rollout
/// rolls back and every touched twin gets its old values again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_rollouts_reach_simulated_devices_over_mqtt() {
    use crate::rollouts::run;
    const PUMP: &str = "dtmi:twingraph:isa95:Pump;1";
    let s = Served::start("devices-rollout", "127.0.0.1:0", false, &[]);
    let pumps = s
        .gql(
            r#"{ twins(model: "dtmi:twingraph:isa95:Pump;1", first: 100) { nodes { id } } }"#,
            json!({}),
        )
        .await["data"]["twins"]["nodes"]
        .as_array()
        .expect("pumps")
        .len();
    assert!(pumps >= 4, "{pumps}");
    let simulate = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_twingraph"))
            .args(["simulate", "--url", &format!("ws://{}/graphql/ws", s.http)])
            .args(["--mqtt", &format!("mqtt://{}", s.mqtt), "--model", PUMP])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("simulate starts")
    };
    let connected = || async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let v = s
                .gql(
                    r#"{ deviceIdentities(connected: true) { totalCount }
                         twin(id: "c0.e0") { deviceIdentity { id connected session { protocol } } } }"#,
                    json!({}),
                )
                .await;
            if v["data"]["deviceIdentities"]["totalCount"] == pumps {
                // The twin shows its device's connection too.
                assert_eq!(
                    v["data"]["twin"]["deviceIdentity"],
                    json!({"id": "sim-c0.e0", "connected": true, "session": {"protocol": "mqtt"}}),
                    "{v}"
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "devices not connected: {v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    run::configure(s.http).await;
    let mut devices = simulate(&[]);
    connected().await;
    let plan = json!({"stages": [{"count": 2}, {}], "twinTimeoutSeconds": 30});
    let id = run::start(s.http, json!({"model": PUMP}), plan.clone()).await;
    let done = run::until(s.http, &id, "SUCCEEDED", std::time::Duration::from_secs(60)).await;
    assert_eq!(done["counts"]["succeeded"], pumps, "{done}");
    let v = s
        .gql(
            r#"{ twins(model: "dtmi:twingraph:isa95:Pump;1", first: 100) { nodes { ... on Pump { flowSetpoint flowSetpointMetadata { ackStatus } } } } }"#,
            json!({}),
        )
        .await;
    for t in v["data"]["twins"]["nodes"].as_array().expect("pumps") {
        assert_eq!(t["flowSetpoint"], 42.0, "{v}");
        assert_eq!(
            t["flowSetpointMetadata"]["ackStatus"], "ACKNOWLEDGED",
            "{v}"
        );
    }
    let _ = devices.kill();
    let _ = devices.wait();

    // Devices that reject: the canary fails, the rollout rolls back.
    let v = s
        .gql(
            r#"mutation { publishConfigurationVersion(configuration: "flow", values: {flowSetpoint: 55.5}) { number } }"#,
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["publishConfigurationVersion"]["number"], 2, "{v}");
    let mut devices = simulate(&["--reject-rate", "1"]);
    connected().await;
    let r = s
        .gql(
            r#"mutation($plan: RolloutPlanInput) { startRollout(configuration: "flow", version: 2, target: {model: "dtmi:twingraph:isa95:Pump;1"}, plan: $plan) { id } }"#,
            json!({"plan": {"stages": [{"count": 2, "successThreshold": 100}, {}], "twinTimeoutSeconds": 30}}),
        )
        .await;
    let id = r["data"]["startRollout"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let back = run::until(
        s.http,
        &id,
        "ROLLED_BACK",
        std::time::Duration::from_secs(60),
    )
    .await;
    assert_eq!(back["stage"], 1, "it never left the canary: {back}");
    let v = s
        .gql(
            r#"{ twins(model: "dtmi:twingraph:isa95:Pump;1", first: 100) { nodes { ... on Pump { flowSetpointDesired } } } }"#,
            json!({}),
        )
        .await;
    for t in v["data"]["twins"]["nodes"].as_array().expect("pumps") {
        assert_eq!(t["flowSetpointDesired"], 42.0, "rolled back: {v}");
    }
    let _ = devices.kill();
    let _ = devices.wait();
}

/// `tools/iot-sdk/provision.py`: device `device` of the enrollment group
/// with key `key` connects announcing `model` (`-`: none); what it saw.
fn provision_py(device: &str, model: &str, key: &str) -> Value {
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/ca.crt");
    let args: [std::ffi::OsString; 5] = [
        "localhost".into(),
        key.into(),
        device.into(),
        model.into(),
        ca.into(),
    ];
    sdk_json("provision.py", args)
}

/// A device announcing a model the server lacks gets it from the device
/// model repository (`models.repositories`, DMR layout): a vendor's pump
/// model that extends the plant's Pump, with a Component whose model is in
/// the repository too, is loaded, and the device provisioned as a twin of
/// it, typed in the schema at once. A model the repository lacks, or one
/// that references what it lacks, is refused and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_models_come_from_the_model_repositories() {
    let _port = port_8883().await;
    let repo = crate::support::scratch_dir("devices-dmr-repo");
    let folder = repo.join("dtmi/acme/pumps");
    std::fs::create_dir_all(&folder).expect("creates");
    let write = |name: &str, doc: Value| {
        std::fs::write(folder.join(name), doc.to_string()).expect("writes");
    };
    write(
        "centrifugalpump-1.json",
        json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:acme:pumps:CentrifugalPump;1", "@type": "Interface",
               "extends": "dtmi:twingraph:isa95:Pump;1",
               "contents": [{"@type": "Telemetry", "name": "vibration", "schema": "double"},
                            {"@type": "Component", "name": "seal", "schema": "dtmi:acme:pumps:Seal;1"}]}),
    );
    write(
        "seal-1.json",
        json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:acme:pumps:Seal;1", "@type": "Interface",
               "contents": [{"@type": "Property", "name": "wear", "schema": "double"}]}),
    );
    write(
        "brokenpump-1.json",
        json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:acme:pumps:BrokenPump;1", "@type": "Interface",
               "extends": "dtmi:twingraph:isa95:Pump;1",
               "contents": [{"@type": "Component", "name": "seal", "schema": "dtmi:acme:pumps:Missing;1"}]}),
    );
    let s = Served::start(
        "devices-dmr",
        "127.0.0.1:8883",
        true,
        &[(
            "TWINGRAPH_MODELS_REPOSITORIES",
            repo.to_str().expect("utf-8"),
        )],
    );
    let v = s
        .gql(
            r#"mutation { createDeviceEnrollmentGroup(name: "cell0-pumps", parent: "cell0", models: ["dtmi:twingraph:isa95:Pump;1"]) { groupKey } }"#,
            json!({}),
        )
        .await;
    let key = v["data"]["createDeviceEnrollmentGroup"]["groupKey"]
        .as_str()
        .unwrap_or_else(|| panic!("a key: {v}"))
        .to_owned();
    let (unknown, broken, vendor) = tokio::task::spawn_blocking(move || {
        (
            provision_py("pump-unknown", "dtmi:acme:pumps:Nowhere;1", &key),
            provision_py("pump-broken", "dtmi:acme:pumps:BrokenPump;1", &key),
            provision_py("pump-acme-1", "dtmi:acme:pumps:CentrifugalPump;1", &key),
        )
    })
    .await
    .expect("joins");
    assert_eq!(unknown["connected"], false, "{unknown}");
    assert_eq!(broken["connected"], false, "{broken}");
    assert_eq!(vendor["connected"], true, "{vendor}");
    let v = s
        .gql(
            r#"{ twin(id: "pump-acme-1") { model ... on CentrifugalPump { flowRate manufacturer seal { wear } } }
                 unknown: twin(id: "pump-unknown") { id }
                 broken: twin(id: "pump-broken") { id }
                 models { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        v["data"]["twin"],
        json!({"model": "dtmi:acme:pumps:CentrifugalPump;1", "flowRate": 7.5, "manufacturer": "Zero Touch", "seal": {"wear": null}}),
        "{v}"
    );
    assert_eq!(v["data"]["unknown"], Value::Null, "{v}");
    assert_eq!(v["data"]["broken"], Value::Null, "{v}");
    let models: Vec<&str> = v["data"]["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(models.contains(&"dtmi:acme:pumps:Seal;1"), "{v}");
    assert!(!models.contains(&"dtmi:acme:pumps:BrokenPump;1"), "{v}");
}

/// Zero-touch provisioning: a device the server has never seen, signing
/// with the key an enrollment group derives for its id and announcing its
/// Plug and Play model, gets its twin (typed, under the group's parent) and
/// its identity on first connect, through Microsoft's SDK unchanged. An
/// unknown model, a model the group does not take, no model, or a key of
/// another group: refused, nothing created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_groups_provision_typed_twins_on_first_connect() {
    let _port = port_8883().await;
    let s = Served::start("devices-enroll", "127.0.0.1:8883", true, &[]);
    let v = s
        .gql(
            r#"mutation { createDeviceEnrollmentGroup(name: "cell0-pumps", parent: "cell0", models: ["dtmi:twingraph:isa95:Equipment;1"]) { groupKey group { name parent relationship models } } }"#,
            json!({}),
        )
        .await;
    let created = &v["data"]["createDeviceEnrollmentGroup"];
    assert_eq!(
        created["group"],
        json!({"name": "cell0-pumps", "parent": "cell0", "relationship": "contains", "models": ["dtmi:twingraph:isa95:Equipment;1"]}),
        "{v}"
    );
    let group_key = created["groupKey"].as_str().expect("a key").to_owned();
    let other_key = "b3RoZXIta2V5LW9mLWFub3RoZXItZGV2aWNlLTMyYg==";
    let provision = provision_py;
    const PUMP: &str = "dtmi:twingraph:isa95:Pump;1";
    let seen = tokio::task::spawn_blocking({
        let key = group_key.clone();
        move || provision("pump-new-1", PUMP, &key)
    })
    .await
    .expect("joins");
    assert_eq!(seen["connected"], true, "{seen}");
    assert_eq!(
        seen["twin"]["reported"]["manufacturer"], "Zero Touch",
        "{seen}"
    );
    let v = s
        .gql(
            r#"{ twin(id: "pump-new-1") { model ... on Pump { flowRate manufacturer } }
                 ancestors(id: "pump-new-1") { id }
                 deviceIdentity(id: "pump-new-1") { twinId enrollment authentication { type } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["twin"]["model"], PUMP, "{v}");
    assert_eq!(v["data"]["twin"]["flowRate"], 7.5, "{v}");
    assert_eq!(v["data"]["ancestors"][0]["id"], "cell0", "{v}");
    assert_eq!(
        v["data"]["deviceIdentity"],
        json!({"twinId": "pump-new-1", "enrollment": "cell0-pumps", "authentication": {"type": "ENROLLMENT_GROUP_KEY"}}),
        "{v}"
    );
    // Connecting again: the same identity, nothing new.
    let again = tokio::task::spawn_blocking({
        let key = group_key.clone();
        move || provision("pump-new-1", PUMP, &key)
    })
    .await
    .expect("joins");
    assert_eq!(again["connected"], true, "{again}");

    let before = s
        .gql("{ events(last: 1) { nodes { seq } } }", json!({}))
        .await;
    for (device, model, key, why) in [
        (
            "pump-new-2",
            "dtmi:example:Unknown;1",
            group_key.as_str(),
            "an unknown model",
        ),
        (
            "site-new",
            "dtmi:twingraph:isa95:Site;1",
            group_key.as_str(),
            "a model the group does not take",
        ),
        ("pump-new-3", "-", group_key.as_str(), "no model"),
        ("pump-new-4", PUMP, other_key, "another group's key"),
    ] {
        let (device, model, key) = (device.to_owned(), model.to_owned(), key.to_owned());
        let seen = tokio::task::spawn_blocking(move || provision(&device, &model, &key))
            .await
            .expect("joins");
        assert_eq!(seen["connected"], false, "{why}: {seen}");
    }
    let after = s
        .gql(
            "{ events(last: 1) { nodes { seq } } twins(first: 500) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(
        after["data"]["events"], before["data"]["events"],
        "nothing written: {after}"
    );
}

/// X.509 thumbprint authentication: a device registered with its
/// certificate's SHA-256 thumbprint connects with Microsoft's SDK
/// presenting that certificate (no SAS token), and reports; another
/// certificate with the same subject, or none, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_authenticate_with_x509_certificates() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let _port = port_8883().await;
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let s = Served::start("devices-x509", "127.0.0.1:8883", true, &[]);
    let der = CertificateDer::from_pem_file(keys.join("device-x509.crt")).expect("a certificate");
    let thumbprint = twingraph::devices::x509::thumbprint(&der);
    let v = s
        .gql(
            r#"mutation($t: String) { registerDevice(id: "pump-x509", twin: "c0.e1", authentication: {type: X509_THUMBPRINT, primaryThumbprint: $t}) { primaryKey device { authentication { type primaryThumbprint } } } }"#,
            json!({"t": thumbprint.to_lowercase()}),
        )
        .await;
    let r = &v["data"]["registerDevice"];
    assert_eq!(
        r["primaryKey"],
        Value::Null,
        "no key for a certificate device: {v}"
    );
    assert_eq!(
        r["device"]["authentication"],
        json!({"type": "X509_THUMBPRINT", "primaryThumbprint": thumbprint}),
        "{v}"
    );
    let run = |cert: &str| x509_device("pump-x509", cert, None);
    let seen = tokio::task::spawn_blocking(move || (run("device-x509"), run("device-other")))
        .await
        .expect("joins");
    assert_eq!(seen.0["connected"], true, "{seen:?}");
    assert_eq!(
        seen.0["twin"]["reported"]["manufacturer"], "X509 Co",
        "{seen:?}"
    );
    assert_eq!(seen.1["connected"], false, "another certificate: {seen:?}");
    let v = s
        .gql(
            r#"{ twin(id: "c0.e1") { ... on Motor { manufacturer } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["twin"]["manufacturer"], "X509 Co", "{v}");
    // No certificate: a SAS token cannot stand in for it.
    let out = Command::new(mosquitto().join("mosquitto_pub"))
        .args(["-h", "localhost", "-p", "8883", "-V", "mqttv311"])
        .arg("--cafile")
        .arg(keys.join("ca.crt"))
        .args(["-i", "pump-x509", "-u", &username("pump-x509"), "-P", "x"])
        .args([
            "-q",
            "1",
            "-t",
            "devices/pump-x509/messages/events/",
            "-m",
            "{}",
        ])
        .output()
        .expect("mosquitto_pub runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad user name or password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two replicas over one Neo4j store (the test server: ArcadeDB unless
/// `TWINGRAPH_TEST_BOLT_URI`): the SDK device connects to replica B, and
/// device.py makes its desired change and calls its command through replica
/// A's GraphQL. The desired patch reaches it through the store's event
/// feed; the command is relayed to B through the log, answered there, and
/// the answer comes back to the mutation on A. A's view of the device says
/// connected (to B).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_on_one_replica_gets_changes_and_commands_made_on_another() {
    let _port = port_8883().await;
    let bolt = crate::bolt::fresh_database().await;
    let database = bolt.database.clone().expect("a database");
    let env = [
        ("TWINGRAPH_STORE_URI", bolt.uri.as_str()),
        ("TWINGRAPH_STORE_USER", bolt.user.as_str()),
        ("TWINGRAPH_STORE_PASSWORD", bolt.password.as_str()),
        ("TWINGRAPH_STORE_DATABASE", database.as_str()),
        ("TWINGRAPH_STORE_POLL_MS", "50"),
        (
            "TWINGRAPH_DEVICES_SECRET",
            "replicas-share-this-device-secret-of-32-bytes-or-more",
        ),
    ];
    let a = Served::start("devices-replica-a", "127.0.0.1:0", false, &env);
    let b = Served::start("devices-replica-b", "127.0.0.1:8883", true, &env);
    let key = a.register("pump-0", "c0.e0").await;
    let url = format!("http://{}/graphql", a.http);
    let seen = device_py(&key, &url, &[]).await;
    // The desired change made on A reached the device on B; the command
    // issued on A was answered through B.
    got_change_and_command(&seen, "across replicas: ");
    // Both replicas' logs hold the relay: the request and the answer.
    let v = b
        .gql("{ events(last: 60) { nodes { kind actor } } }", json!({}))
        .await;
    let kinds: Vec<&str> = v["data"]["events"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"deviceMethodRequested"), "{v}");
    assert!(kinds.contains(&"deviceMethodAnswered"), "{v}");
    // The device is gone: a command on A is refused at once (offline).
    let mut answer = Value::Null;
    for _ in 0..100 {
        answer = a
            .gql(
                r#"mutation { equipmentResetFault(id: "c0.e0") { status } }"#,
                json!({}),
            )
            .await;
        if answer["errors"][0]["extensions"]["code"] == "DEVICE_OFFLINE" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "DEVICE_OFFLINE",
        "{answer}"
    );
}

/// `tools/iot-sdk/x509_device.py` as `device` with the certificate chain
/// and key `tests/keys/{cert}.*`, announcing `model` when given.
fn x509_device(device: &str, cert: &str, model: Option<&str>) -> Value {
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let mut args: Vec<std::ffi::OsString> = vec![
        "localhost".into(),
        device.into(),
        keys.join(format!("{cert}.crt")).into(),
        keys.join(format!("{cert}.key")).into(),
        keys.join("ca.crt").into(),
    ];
    args.extend(model.map(Into::into));
    sdk_json("x509_device.py", args)
}

/// CA-signed device certificates, on the SDK: a device registered with
/// `X509_CA` connects with a certificate (common name its id) an authority
/// of `devices.ca_certificates` issued, through an intermediate it sends
/// along; a certificate of the same name from an untrusted root does not;
/// an enrollment group with a certificate authority provisions a device it
/// issued a certificate to (a typed twin of the model it announces), and
/// nothing is written for one it did not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_authenticate_with_ca_signed_certificates() {
    let _port = port_8883().await;
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys");
    let root = keys.join("device-ca.crt");
    let s = Served::start(
        "devices-x509-ca",
        "127.0.0.1:8883",
        true,
        &[(
            "TWINGRAPH_DEVICES_CA_CERTIFICATES",
            root.to_str().expect("utf-8"),
        )],
    );
    let v = s
        .gql(
            r#"mutation { registerDevice(id: "ca-pump-1", twin: "c0.e0", authentication: {type: X509_CA}) { primaryKey device { authentication { type } } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        v["data"]["registerDevice"],
        json!({"primaryKey": null, "device": {"authentication": {"type": "X509_CA"}}}),
        "{v}"
    );
    const PUMP: &str = "dtmi:twingraph:isa95:Pump;1";
    let (trusted, rogue, unknown) = tokio::task::spawn_blocking(|| {
        (
            x509_device("ca-pump-1", "ca-pump-1", None),
            x509_device("ca-pump-1", "ca-rogue", None),
            x509_device("ca-pump-2", "ca-pump-2", Some(PUMP)),
        )
    })
    .await
    .expect("joins");
    assert_eq!(trusted["connected"], true, "{trusted}");
    assert_eq!(
        trusted["twin"]["reported"]["manufacturer"], "X509 Co",
        "{trusted}"
    );
    assert_eq!(rogue["connected"], false, "an untrusted root: {rogue}");
    assert_eq!(unknown["connected"], false, "no group yet: {unknown}");
    let v = s
        .gql(
            r#"{ twin(id: "ca-pump-2") { id } deviceIdentity(id: "ca-pump-2") { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        v["data"],
        json!({"twin": null, "deviceIdentity": null}),
        "nothing written for a refused device: {v}"
    );

    // An enrollment group that takes what the intermediate issued.
    let bad = s
        .gql(
            r#"mutation($ca: String) { createDeviceEnrollmentGroup(name: "bad", parent: "cell0", caCertificate: $ca) { groupKey } }"#,
            json!({"ca": std::fs::read_to_string(keys.join("ca-pump-1.crt")).expect("reads")}),
        )
        .await;
    assert_eq!(
        bad["errors"][0]["extensions"]["code"], "INVALID_DEVICE",
        "{bad}"
    );
    assert_eq!(
        bad["errors"][0]["extensions"]["path"], "caCertificate",
        "{bad}"
    );
    let ica = std::fs::read_to_string(keys.join("device-ica.crt")).expect("reads");
    let v = s
        .gql(
            r#"mutation($ca: String) { createDeviceEnrollmentGroup(name: "cell0-ca", parent: "cell0", models: ["dtmi:twingraph:isa95:Equipment;1"], caCertificate: $ca) { groupKey group { name attestation caCertificate } } }"#,
            json!({"ca": ica}),
        )
        .await;
    assert_eq!(
        v["data"]["createDeviceEnrollmentGroup"],
        json!({"groupKey": null, "group": {"name": "cell0-ca", "attestation": "X509_CA", "caCertificate": ica}}),
        "{v}"
    );
    let (provisioned, rogue) = tokio::task::spawn_blocking(|| {
        (
            x509_device("ca-pump-2", "ca-pump-2", Some(PUMP)),
            x509_device("ca-rogue-new", "ca-rogue", Some(PUMP)),
        )
    })
    .await
    .expect("joins");
    assert_eq!(provisioned["connected"], true, "{provisioned}");
    assert_eq!(rogue["connected"], false, "{rogue}");
    let v = s
        .gql(
            r#"{ twin(id: "ca-pump-2") { model ... on Pump { manufacturer } deviceIdentity { enrollment authentication { type } } }
                 ancestors(id: "ca-pump-2") { id }
                 rogue: twin(id: "ca-rogue-new") { id } }"#,
            json!({}),
        )
        .await;
    let t = &v["data"]["twin"];
    assert_eq!(t["model"], PUMP, "{v}");
    assert_eq!(t["manufacturer"], "X509 Co", "{v}");
    assert_eq!(
        t["deviceIdentity"],
        json!({"enrollment": "cell0-ca", "authentication": {"type": "X509_CA"}}),
        "{v}"
    );
    assert_eq!(v["data"]["ancestors"][0]["id"], "cell0", "{v}");
    assert_eq!(v["data"]["rogue"], Value::Null, "{v}");
}

/// `twingraph device` manages identities of a running server through its
/// GraphQL API, printing JSON; a refusal exits 2 with the error's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_cli_manages_identities_of_a_running_server() {
    let s = Served::start("devices-cli", "127.0.0.1:0", false, &[]);
    let url = format!("ws://{}/graphql/ws", s.http);
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_twingraph"))
            .arg("device")
            .args(["--url", &url])
            .args(args)
            .output()
            .expect("twingraph device runs");
        let json = serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.code(),
            json,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, v, err) = cli(&["register", "pump-cli", "--twin", "c0.e2"]);
    assert_eq!(code, Some(0), "{err}");
    let conn = v["registerDevice"]["connectionString"]
        .as_str()
        .expect("a connection string");
    assert!(
        conn.starts_with("HostName=localhost;DeviceId=pump-cli;SharedAccessKey="),
        "{v}"
    );
    let (_, v, _) = cli(&["list"]);
    assert_eq!(v["deviceIdentities"]["totalCount"], 1, "{v}");
    let (code, v, err) = cli(&["disable", "pump-cli", "--reason", "maintenance"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["disableDevice"]["statusReason"], "maintenance", "{v}");
    let (_, v, _) = cli(&["rotate", "pump-cli", "--secondary"]);
    assert_eq!(v["rotateDeviceKey"]["slot"], "SECONDARY", "{v}");
    let (code, v, err) = cli(&[
        "enroll",
        "cell0-devices",
        "--parent",
        "cell0",
        "--model",
        "dtmi:twingraph:isa95:Pump;1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        v["createDeviceEnrollmentGroup"]["groupKey"].is_string(),
        "{v}"
    );
    let ica = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys/device-ica.crt");
    let (code, v, err) = cli(&[
        "enroll",
        "cell0-certified",
        "--parent",
        "cell0",
        "--ca-certificate",
        ica.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        v["createDeviceEnrollmentGroup"]["groupKey"],
        Value::Null,
        "{v}"
    );
    assert_eq!(
        v["createDeviceEnrollmentGroup"]["group"]["attestation"], "X509_CA",
        "{v}"
    );
    let (code, v, err) = cli(&["register", "ca-cli", "--twin", "c0.e3", "--ca"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        v["registerDevice"]["device"]["authentication"]["type"], "X509_CA",
        "{v}"
    );
    let (code, _, _) = cli(&["delete", "pump-cli"]);
    assert_eq!(code, Some(0));
    let (code, _, err) = cli(&["delete", "pump-cli"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("DEVICE_NOT_FOUND"), "{err}");
    let (_, v, _) = cli(&["show", "pump-cli"]);
    assert_eq!(v["deviceIdentity"], Value::Null, "{v}");
}
