//! The `twingraph check` contract: exit codes, text and JSON output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn twingraph(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twingraph"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the twingraph binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A scratch folder unique to one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn sample_models_are_valid_and_summarised() {
    let out = twingraph(&["check", "dtdl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.starts_with("ok: 20 interfaces,"), "{text}");
    assert!(text.contains("Relationship 10"), "{text}");
}

#[test]
fn invalid_model_exits_1_with_located_diagnostics() {
    let dir = scratch("invalid");
    let file = dir.join("pump.json");
    std::fs::write(
        &file,
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:example:Pump;1","@type":"Interface",
            "contents":[{"@type":"Property","name":"speed","schema":"doubel"},
                        {"@type":"Telemetry","name":"9lives","schema":"double"}]}"#,
    )
    .expect("write model");
    let out = twingraph(&["check", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    // Both errors are reported, each with file, JSON path, code and DTMI.
    assert!(text.contains("pump.json: $.contents[0].schema: [value_not_allowed] dtmi:example:Pump:_contents:__speed;1:"), "{text}");
    assert!(
        text.contains("$.contents[1].name: [value_pattern]"),
        "{text}"
    );
    assert!(text.contains("invalid: 2 error(s)"), "{text}");
}

#[test]
fn incomplete_model_names_the_missing_dtmis() {
    let dir = scratch("incomplete");
    std::fs::write(
        dir.join("a.json"),
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:example:A;1","@type":"Interface","extends":"dtmi:example:Missing;1"}"#,
    )
    .expect("write model");
    let out = twingraph(&[
        "check",
        "--format",
        "json",
        dir.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["valid"], true);
    assert_eq!(v["complete"], false);
    assert_eq!(
        v["unresolved"],
        serde_json::json!(["dtmi:example:Missing;1"])
    );
}

#[test]
fn repository_supplies_missing_definitions() {
    let dir = scratch("dmr");
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("dtmi/example")).expect("create repo");
    std::fs::write(
        repo.join("dtmi/example/base-1.json"),
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:example:Base;1","@type":"Interface",
            "contents":[{"@type":"Property","name":"serial","schema":"string"}]}"#,
    )
    .expect("write dependency");
    let model = dir.join("child.json");
    std::fs::write(
        &model,
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:example:Child;1","@type":"Interface","extends":"dtmi:example:Base;1"}"#,
    )
    .expect("write model");
    let path = model.to_str().expect("utf-8 path");
    assert_eq!(twingraph(&["check", path]).status.code(), Some(1));
    let out = twingraph(&[
        "check",
        "--repository",
        repo.to_str().expect("utf-8 path"),
        path,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("ok: 2 interfaces"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn json_format_reports_summary_counts() {
    let out = twingraph(&["check", "--format", "json", "dtdl"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["summary"]["interfaces"], 20);
    assert_eq!(v["summary"]["by_kind"]["Interface"], 20);
    assert_eq!(v["diagnostics"], serde_json::json!([]));
}

#[test]
fn undefined_extension_default_follows_the_version_and_can_be_overridden() {
    let dir = scratch("extensions");
    let file = dir.join("m.json");
    std::fs::write(
        &file,
        r#"{"@context":["dtmi:dtdl:context;3","dtmi:acme:context;1"],"@id":"dtmi:example:M;1","@type":"Interface"}"#,
    )
    .expect("write model");
    let path = file.to_str().expect("utf-8 path");
    let denied = twingraph(&["check", path]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        stdout(&denied).contains("[context_undefined_extension]"),
        "{}",
        stdout(&denied)
    );
    assert_eq!(
        twingraph(&["check", "--allow-undefined-extensions", path])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    assert_eq!(twingraph(&["check"]).status.code(), Some(2));
    assert_eq!(
        twingraph(&["check", "no/such/path.json"]).status.code(),
        Some(2)
    );
    assert_eq!(
        twingraph(&[
            "check",
            "--allow-undefined-extensions",
            "--deny-undefined-extensions",
            "dtdl"
        ])
        .status
        .code(),
        Some(2)
    );
    let bad = twingraph(&["check", "Cargo.toml"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a .json file"));
}

#[test]
fn every_subcommand_has_help() {
    for args in [&["--help"][..], &["check", "--help"][..]] {
        let out = twingraph(args);
        assert_eq!(out.status.code(), Some(0));
        assert!(stdout(&out).contains("Usage:"), "{}", stdout(&out));
    }
}

#[test]
fn malformed_json_is_a_diagnostic_not_a_crash() {
    let dir = scratch("malformed");
    std::fs::write(dir.join("broken.json"), "{\"@context\": [").expect("write");
    let out = twingraph(&["check", dir.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("[json_syntax]"), "{}", stdout(&out));
}

#[test]
fn committed_schema_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = twingraph(&["schema", root.join("dtdl").to_str().expect("utf-8 path")]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let generated = stdout(&o);
    let committed = std::fs::read_to_string(root.join("schema/twingraph.graphql"))
        .expect("schema/twingraph.graphql is committed");
    assert!(
        generated == committed,
        "schema/twingraph.graphql is stale: run `cargo run -- schema dtdl > schema/twingraph.graphql` and review the diff"
    );
    assert!(
        generated.contains("type PumpTwin implements"),
        "typed types are in the SDL"
    );
}

#[test]
fn schema_of_invalid_models_exits_1_with_diagnostics() {
    let dir = scratch("schema-invalid");
    std::fs::write(
        dir.join("bad.json"),
        r#"{"@context": "dtmi:dtdl:context;3", "@id": "dtmi:x:Bad;1", "@type": "Interface", "contents": [{"@type": "Property", "name": "p", "schema": "doubel"}]}"#,
    )
    .expect("write");
    let o = twingraph(&["schema", dir.to_str().expect("utf-8 path")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("doubel"), "{}", stdout(&o));
}
