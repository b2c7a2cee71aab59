//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The shared DTDL corpora (`../shared/corpora/dtdl` beside the repository),
/// or the folder named by `TWINGRAPH_DTDL_CORPUS`. Panics with a clear
/// message when it cannot be found: these tests are never silently skipped.
pub fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("TWINGRAPH_DTDL_CORPUS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/dtdl"),
    };
    assert!(
        dir.join("spec").is_dir() && dir.join("models").is_dir(),
        "the DTDL corpora are missing at {}: these tests need ../shared/corpora/dtdl \
         (or set TWINGRAPH_DTDL_CORPUS to its location)",
        dir.display()
    );
    dir
}

/// The sample industrial models of `dtdl/`, resolved once per test binary.
pub fn sample_models() -> std::sync::Arc<twingraph::dtdl::ModelSet> {
    static MODELS: std::sync::OnceLock<std::sync::Arc<twingraph::dtdl::ModelSet>> =
        std::sync::OnceLock::new();
    MODELS
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dtdl");
            let sources =
                twingraph::dtdl::load::read_paths(&[dir]).expect("sample models readable");
            let outcome = twingraph::dtdl::check(&sources, &twingraph::dtdl::Options::default());
            std::sync::Arc::new(outcome.model.expect("sample models are valid"))
        })
        .clone()
}

/// The sample models' documents.
pub fn sample_sources() -> Vec<twingraph::dtdl::Source> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dtdl");
    twingraph::dtdl::load::read_paths(&[dir]).expect("sample models readable")
}

/// A fresh, empty folder under the test target dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("scratch")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Two work cells, "small" (3 pumps) and "large" (60), each pump depending
/// on a compressor that feeds it back: three levels of relationships.
pub fn three_levels() -> twingraph::twin::Batch {
    use serde_json::json;
    let m = |n: &str| format!("dtmi:twingraph:isa95:{n};1");
    let mut ops = Vec::new();
    for (cell, children) in [("small", 3), ("large", 60)] {
        ops.push(json!({"op": "createTwin", "id": cell, "model": m("WorkCell")}));
        for k in 0..children {
            let pump = format!("{cell}-{k}");
            let air = format!("{cell}-{k}-air");
            ops.push(json!({"op": "createTwin", "id": pump, "model": m("Pump"), "reported": {"flowRate": k}}));
            ops.push(json!({"op": "createTwin", "id": air, "model": m("Compressor")}));
            ops.push(json!({"op": "createRelationship", "source": cell, "name": "contains", "target": pump}));
            ops.push(json!({"op": "createRelationship", "source": pump, "name": "dependsOn", "target": air, "properties": {"kind": "compressedAir"}}));
            ops.push(
                json!({"op": "createRelationship", "source": air, "name": "feeds", "target": pump}),
            );
        }
    }
    twingraph::twin::Batch {
        ops: ops
            .into_iter()
            .map(|o| serde_json::from_value(o).expect("op"))
            .collect(),
    }
}

/// Three levels of typed relationships under a work cell (`$c`) of
/// [`three_levels`].
pub const THREE_LEVELS_QUERY: &str = r#"query($c: ID!) { workCell(id: $c) { contains(first: 100) { nodes { id
    ... on Equipment { dependsOn { edges { kind node { id
      ... on Equipment { feeds { nodes { id ... on Pump { flowRate } } } } } } } } } } } }"#;

/// The address a `twingraph serve` child prints on its "listening on" line
/// (its standard output piped); what it prints after that is read and
/// dropped on a thread of its own, so the pipe never fills. `None` when it
/// exits before listening.
pub fn listening(child: &mut std::process::Child) -> Option<std::net::SocketAddr> {
    use std::io::{BufRead, BufReader};
    let mut lines = BufReader::new(child.stdout.take()?);
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        if lines.read_line(&mut line).ok()? == 0 {
            return None;
        }
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        while lines.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    line.split("://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
}

/// `tools/<name>` with the npm packages of its lockfile installed (`npm ci`,
/// once per run unless `package` is there already); panics saying why
/// when Node.js or npm cannot install them.
pub fn npm_tool(name: &str, package: &str) -> &'static std::path::Path {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static READY: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools")
        .join(name);
    let mut ready = READY
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let outcome = ready.entry(name.to_owned()).or_insert_with(|| {
        if dir
            .join("node_modules")
            .join(package)
            .join("package.json")
            .is_file()
        {
            return Ok(());
        }
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("tools/{name} needs Node.js and npm (npm ci): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "npm ci in tools/{name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(why) = outcome {
        panic!("{why}");
    }
    Box::leak(dir.into_boxed_path())
}

/// The Python interpreter of a virtual environment with the packages of
/// `tools/<name>/requirements.txt` installed (once per run, in the target
/// directory); panics saying why when Python or pip cannot install them.
pub fn python_tool(name: &str) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static READY: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    let mut ready = READY
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let outcome = ready.entry(name.to_owned()).or_insert_with(|| {
        let requirements = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tools")
            .join(name)
            .join("requirements.txt");
        let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("python")
            .join(name);
        let python = venv.join("bin/python");
        let done = venv.join("installed.txt");
        let wanted = std::fs::read_to_string(&requirements)
            .map_err(|e| format!("{}: {e}", requirements.display()))?;
        if std::fs::read_to_string(&done).is_ok_and(|d| d == wanted) {
            return Ok(python);
        }
        // One installer at a time across test processes (nextest runs each
        // test in its own).
        let lock = venv.with_extension("lock");
        std::fs::create_dir_all(venv.parent().unwrap_or(&venv))
            .map_err(|e| format!("{}: {e}", venv.display()))?;
        let started = std::time::Instant::now();
        while std::fs::create_dir(&lock).is_err() {
            if std::fs::read_to_string(&done).is_ok_and(|d| d == wanted) {
                return Ok(python);
            }
            if started.elapsed() > std::time::Duration::from_secs(600) {
                return Err(format!("{} is held; remove it if stale", lock.display()));
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let installed = install(&venv, &python, &requirements, &done, &wanted, name);
        let _ = std::fs::remove_dir(&lock);
        installed.map(|()| python)
    });
    match outcome {
        Ok(python) => python.clone(),
        Err(why) => panic!("{why}"),
    }
}

/// Makes the virtual environment `venv` and installs `requirements` in it,
/// then writes `wanted` to `done`.
fn install(
    venv: &std::path::Path,
    python: &std::path::Path,
    requirements: &std::path::Path,
    done: &std::path::Path,
    wanted: &str,
    name: &str,
) -> Result<(), String> {
    let run = |cmd: &mut std::process::Command, what: &str| -> Result<(), String> {
        let out = cmd
            .output()
            .map_err(|e| format!("{what}: cannot run it: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(
        std::process::Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(venv),
        "python3 -m venv (the tests need Python 3 with venv)",
    )?;
    run(
        std::process::Command::new(python)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(requirements),
        &format!("pip install -r tools/{name}/requirements.txt"),
    )?;
    std::fs::write(done, wanted).map_err(|e| format!("{}: {e}", done.display()))
}

/// `/metrics` text read by the Prometheus client's strict OpenMetrics
/// parser (`tools/openmetrics`): each sample as `(name{labels}, value)`,
/// labels sorted; panics with the parser's complaint when it refuses it.
pub fn openmetrics_samples(text: &str) -> Vec<(String, f64)> {
    use std::io::Write;
    let python = python_tool("openmetrics");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/openmetrics/parse.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the OpenMetrics parser starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("metrics written to the parser");
    let out = child.wait_with_output().expect("the parser ends");
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a sample");
            let labels = v["labels"].as_object().cloned().unwrap_or_default();
            let mut pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            let name = v["name"].as_str().unwrap_or_default();
            let key = if pairs.is_empty() {
                name.to_owned()
            } else {
                format!("{name}{{{}}}", pairs.join(","))
            };
            (key, v["value"].as_f64().unwrap_or(f64::NAN))
        })
        .collect()
}
