//! Every documented setting value starts the real server: every setting
//! written out in a sectioned file, every one given by its environment
//! variable, every one by its name from before sections, and the small
//! demo plants.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use twingraph::config::{Config, SETTINGS};

use crate::server::gql;

/// Starts `serve` with `args` and `env` (and nothing of the caller's
/// environment that names a setting), answers its address.
fn spawn(args: &[&str], env: &[(String, String)]) -> (std::process::Child, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twingraph"));
    cmd.arg("serve").args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("TWINGRAPH_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let Some(addr) = crate::support::listening(&mut child) else {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err);
        panic!("serve exited before listening ({args:?}, {env:?}): {err}");
    };
    (child, addr)
}

/// Asks the server something, then stops it; it must exit cleanly.
fn check_and_stop(child: std::process::Child, addr: SocketAddr, query: &str) -> Value {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let v = rt.block_on(gql(addr, query, json!({})));
    assert!(v["errors"].is_null(), "{v}");
    crate::server::stop_serve(child);
    v
}

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dtdl")
}

/// A default as the environment writes it; `None` when unset.
fn env_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

/// Every setting with its default value, by the variable `name` gives it
/// (the place of the server's data and models, and an ephemeral port,
/// instead of theirs).
fn every_setting(
    dir: &Path,
    name: impl Fn(&twingraph::config::Setting) -> Option<String>,
) -> Vec<(String, String)> {
    let defaults = serde_json::to_value(Config::default()).expect("defaults");
    SETTINGS
        .iter()
        .filter_map(|s| {
            let var = name(s)?;
            let value = match s.key {
                "http.listen" => "127.0.0.1:0".to_owned(),
                "store.data" => dir.display().to_string(),
                "models.folder" => models().display().to_string(),
                key => env_value(key.split('.').try_fold(&defaults, |v, p| v.get(p))?)?,
            };
            Some((var, value))
        })
        .collect()
}

/// Settings as a TOML file: top-level values, then a table per section
/// (JSON's literals are TOML's; unset settings are left out).
fn as_toml(settings: &Value) -> String {
    let (mut top, mut sections) = (String::new(), String::new());
    for (k, v) in settings.as_object().expect("settings") {
        match v {
            Value::Object(m) => {
                sections.push_str(&format!("[{k}]\n"));
                for (name, x) in m.iter().filter(|(_, x)| !x.is_null()) {
                    sections.push_str(&format!("{name} = {x}\n"));
                }
            }
            Value::Null => {}
            x => top.push_str(&format!("{k} = {x}\n")),
        }
    }
    top + &sections
}

#[test]
fn every_setting_written_out_starts_the_server() {
    // In a sectioned file, as the defaults serialize.
    let dir = crate::store_conformance::fresh_dir();
    let mut c = Config::default();
    c.http.listen = "127.0.0.1:0".parse().expect("address");
    c.store.data = dir.join("data");
    c.models.folder = models();
    let file = dir.join("twingraph.toml");
    std::fs::write(&file, as_toml(&serde_json::to_value(&c).expect("json"))).expect("write");
    let text = std::fs::read_to_string(&file).expect("read");
    for section in [
        "[http]",
        "[store]",
        "[models]",
        "[auth]",
        "[limits]",
        "[graphql]",
        "[demo]",
        "[rollouts]",
    ] {
        assert!(text.contains(section), "{section} in {text}");
    }
    let (child, addr) = spawn(&["--config", &file.display().to_string()], &[]);
    check_and_stop(child, addr, "{ __typename }");

    // By the environment, current names and names from before sections.
    let vars = every_setting(&dir.join("env"), |s| Some(s.env()));
    assert!(
        vars.len() > 25,
        "every setting with a default: {}",
        vars.len()
    );
    let (child, addr) = spawn(&[], &vars);
    check_and_stop(child, addr, "{ __typename }");
    let legacy = every_setting(&dir.join("legacy"), |s| s.legacy_env.map(str::to_owned));
    assert!(legacy.len() > 25, "{}", legacy.len());
    let (child, addr) = spawn(&[], &legacy);
    check_and_stop(child, addr, "{ __typename }");
}

/// The demo plant of any size starts (one cell once stopped the server),
/// also set by the file.
#[test]
fn small_demo_plants_start() {
    for cells in ["1", "2", "0"] {
        let dir = crate::store_conformance::fresh_dir();
        let env = vec![
            ("TWINGRAPH_DEMO_CELLS".to_owned(), cells.to_owned()),
            ("TWINGRAPH_STORE_DATA".to_owned(), dir.display().to_string()),
            (
                "TWINGRAPH_MODELS_FOLDER".to_owned(),
                models().display().to_string(),
            ),
            ("TWINGRAPH_HTTP_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ];
        let (child, addr) = spawn(&["--demo"], &env);
        let v = check_and_stop(
            child,
            addr,
            r#"{ twins(model: "dtmi:twingraph:isa95:Equipment;1", first: 1000) { nodes { id } } }"#,
        );
        let n = v["data"]["twins"]["nodes"].as_array().map_or(0, Vec::len);
        assert_eq!(
            n,
            30 * cells.parse::<usize>().expect("cells"),
            "{cells} cells: {v}"
        );
    }
    let dir = crate::store_conformance::fresh_dir();
    let file = dir.join("twingraph.toml");
    std::fs::write(
        &file,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[store]\ndata = {:?}\n[models]\nfolder = {:?}\n[demo]\nenabled = true\ncells = 1\n",
            dir.join("data").display().to_string(),
            models().display().to_string()
        ),
    )
    .expect("write");
    let (child, addr) = spawn(&["--config", &file.display().to_string()], &[]);
    check_and_stop(child, addr, "{ pumps(first: 1) { nodes { id } } }");
}
