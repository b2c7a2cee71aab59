//! `twingraph serve --store bolt://…`, the binary: it serves over Neo4j,
//! waits for a Neo4j that is not up yet (and can still be stopped), and
//! refuses wrong credentials at once.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

use crate::bolt::fresh_database;
use crate::server::gql;

/// `serve` with `args`, its stdout lines (logs and the listening line) on
/// a channel.
fn serve(args: &[&str], password: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twingraph"))
        .arg("serve")
        .args(args)
        .env("TWINGRAPH_STORE_PASSWORD", password)
        .arg("--models")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dtdl"))
        .env("TWINGRAPH_DEMO_CELLS", "2")
        .env("TWINGRAPH_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let (tx, rx) = mpsc::channel();
    for out in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

/// Waits for a line containing `what`; panics with what was seen instead.
fn wait_for(rx: &mpsc::Receiver<String>, what: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(what) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no {what:?} from serve; it said:\n{}", seen.join("\n")),
        }
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test]
async fn serve_runs_over_neo4j_waits_for_it_and_refuses_wrong_credentials() {
    let bolt = fresh_database().await;
    let database = bolt.database.clone().expect("a database");
    let dir = crate::support::scratch_dir(&format!("serve-bolt-{}", std::process::id()));
    let data = dir.join("data");
    let data = data.to_str().expect("utf-8 path");
    let common = |store: &str| -> Vec<String> {
        [
            "--listen",
            "127.0.0.1:0",
            "--data",
            data,
            "--store",
            store,
            "--store-user",
            &bolt.user,
            "--store-database",
            &database,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };

    // Over Neo4j, with the demo plant: answers, then stops cleanly.
    let mut args = common(&bolt.uri);
    args.push("--demo".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut child, rx) = serve(&args, &bolt.password);
    let line = wait_for(&rx, "listening on");
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let v = gql(addr, r#"{ pump(id: "c0.e0") { id flowRate } }"#, json!({})).await;
    assert_eq!(v["data"]["pump"]["id"], "c0.e0", "{v}");
    sigterm(&child);
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "graceful exit: {exit:?}");

    // Wrong credentials: refused at once, with the reason.
    let args = common(&bolt.uri);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut child, rx) = serve(&args, "not-the-password");
    wait_for(&rx, "refused the credentials");
    let exit = child.wait().expect("wait");
    assert!(!exit.success());

    // Nothing listening yet: it waits (saying so) and can still be stopped.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let args = common(&format!("bolt://{closed}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut child, rx) = serve(&args, &bolt.password);
    wait_for(&rx, "waiting for Neo4j");
    sigterm(&child);
    wait_for(&rx, "stopped while waiting for Neo4j");
    let exit = child.wait().expect("wait");
    assert!(!exit.success(), "{exit:?}");
}
