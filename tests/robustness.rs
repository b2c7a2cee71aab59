//! No input, however malformed, makes the engine panic; every rejected input
//! carries at least one diagnostic or unresolved reference.

use proptest::prelude::*;

use twingraph::dtdl::{self, Options, Outcome, Source, json};

fn check_text(text: &[u8]) -> Outcome {
    dtdl::check(
        &[Source::new("fuzz.json", text.to_vec())],
        &Options::default(),
    )
}

fn explained(o: &Outcome) -> bool {
    o.is_ok() || !o.diagnostics.is_empty() || !o.unresolved.is_empty()
}

const KEYS: &[&str] = &[
    "@context",
    "@id",
    "@type",
    "@value",
    "@language",
    "@graph",
    "contents",
    "schema",
    "schemas",
    "name",
    "extends",
    "displayName",
    "description",
    "comment",
    "writable",
    "unit",
    "target",
    "properties",
    "maxMultiplicity",
    "minMultiplicity",
    "elementSchema",
    "enumValues",
    "enumValue",
    "valueSchema",
    "mapKey",
    "mapValue",
    "fields",
    "request",
    "response",
    "commandType",
    "annotates",
    "dtmi:dtdl:property:schema;3",
    "dtmi:dtdl:property:contents;2",
    "foo",
];

const STRINGS: &[&str] = &[
    "dtmi:dtdl:context;2",
    "dtmi:dtdl:context;3",
    "dtmi:dtdl:extension:quantitativeTypes;1",
    "dtmi:dtdl:extension:historization;1",
    "dtmi:iotcentral:context;2",
    "dtmi:acme:ext;1",
    "Interface",
    "Telemetry",
    "Property",
    "Command",
    "Relationship",
    "Component",
    "Array",
    "Enum",
    "EnumValue",
    "Map",
    "MapKey",
    "MapValue",
    "Object",
    "Field",
    "CommandPayload",
    "CommandRequest",
    "Temperature",
    "degreeCelsius",
    "Historized",
    "Event",
    "double",
    "string",
    "integer",
    "point",
    "geopoint",
    "dtmi:x:A;1",
    "dtmi:x:B;1",
    "dtmi:x:A;1.2",
    "dtmi:x:_A;1",
    "dtmi:x:A",
    "dtmi:bad::;",
    "en",
    "x",
    "",
    "http://example.com/x",
];

fn dtdl_value() -> impl Strategy<Value = json::Value> {
    let leaf = prop_oneof![
        Just(json::Value::Null),
        any::<bool>().prop_map(json::Value::Bool),
        any::<i64>().prop_map(|i| json::Value::Number(json::Number::Int(i))),
        (-1e6f64..1e6).prop_map(|f| json::Value::Number(json::Number::Float(f))),
        proptest::sample::select(STRINGS).prop_map(|s| json::Value::String(s.to_owned())),
        "[a-zA-Z0-9_:;.@ -]{0,12}".prop_map(json::Value::String),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(json::Value::Array),
            prop::collection::vec((proptest::sample::select(KEYS), inner), 0..8).prop_map(
                |members| {
                    json::Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect(),
                    )
                }
            ),
        ]
    })
}

fn render(v: &json::Value) -> String {
    match v {
        json::Value::Null => "null".to_owned(),
        json::Value::Bool(b) => b.to_string(),
        json::Value::Number(json::Number::Float(f)) => format!("{f:?}"),
        json::Value::Number(n) => n.to_string(),
        json::Value::String(s) => serde_json::to_string(s).expect("strings serialize"),
        json::Value::Array(a) => {
            format!("[{}]", a.iter().map(render).collect::<Vec<_>>().join(","))
        }
        json::Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!(
                    "{}:{}",
                    serde_json::to_string(k).expect("keys serialize"),
                    render(v)
                ))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// An Interface with plausible DTDL members whose values are fuzzed.
fn interface_like() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(&["dtmi:dtdl:context;2", "dtmi:dtdl:context;3"][..]),
        prop::collection::vec((proptest::sample::select(KEYS), dtdl_value()), 0..6),
    )
        .prop_map(|(ctx, members)| {
            let extra: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).expect("key"), render(v)))
                .collect();
            let mut body = format!(r#""@context":"{ctx}","@id":"dtmi:x:A;1","@type":"Interface""#);
            for e in extra {
                body.push(',');
                body.push_str(&e);
            }
            format!("{{{body}}}")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let o = check_text(&bytes);
        prop_assert!(explained(&o));
    }

    #[test]
    fn dtdl_shaped_json_never_panics(v in dtdl_value()) {
        let o = check_text(render(&v).as_bytes());
        prop_assert!(explained(&o));
    }

    #[test]
    fn fuzzed_interfaces_never_panic(doc in interface_like()) {
        let o = check_text(doc.as_bytes());
        prop_assert!(explained(&o));
    }

    #[test]
    fn mutated_sample_models_never_panic(
        which in 0usize..4,
        path_choice in any::<prop::sample::Index>(),
        replacement in dtdl_value(),
    ) {
        let files = ["dtdl/asset.json", "dtdl/equipment/equipment.json", "dtdl/equipment/machines.json", "dtdl/devices/devices.json"];
        let text = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(files[which])).expect("sample model");
        let mut doc = json::parse(&text).expect("sample models are JSON");
        let mut slots = 0usize;
        count_slots(&doc, &mut slots);
        let target = path_choice.index(slots.max(1));
        let mut seen = 0usize;
        replace_nth(&mut doc, target, &mut seen, &replacement);
        let o = check_text(render(&doc).as_bytes());
        prop_assert!(explained(&o));
    }
}

fn count_slots(v: &json::Value, n: &mut usize) {
    *n += 1;
    match v {
        json::Value::Array(a) => a.iter().for_each(|x| count_slots(x, n)),
        json::Value::Object(m) => m.iter().for_each(|(_, x)| count_slots(x, n)),
        _ => {}
    }
}

fn replace_nth(v: &mut json::Value, target: usize, seen: &mut usize, with: &json::Value) -> bool {
    if *seen == target {
        *v = with.clone();
        return true;
    }
    *seen += 1;
    match v {
        json::Value::Array(a) => a.iter_mut().any(|x| replace_nth(x, target, seen, with)),
        json::Value::Object(m) => m
            .iter_mut()
            .any(|(_, x)| replace_nth(x, target, seen, with)),
        _ => false,
    }
}

#[test]
fn deeply_nested_json_is_a_syntax_error() {
    let o = check_text("[".repeat(200_000).as_bytes());
    assert_eq!(o.diagnostics[0].code, "json_syntax");
}

#[test]
fn deeply_nested_schemas_are_reported_not_overflowed() {
    // 60 nested Arrays: 120 JSON levels, under the JSON nesting limit.
    let mut s = "\"double\"".to_owned();
    for _ in 0..60 {
        s = format!(r#"{{"@type":"Array","elementSchema":{s}}}"#);
    }
    let doc = format!(
        r#"{{"@context":"dtmi:dtdl:context;3","@id":"dtmi:x:A;1","@type":"Interface","contents":[{{"@type":"Telemetry","name":"t","schema":{s}}}]}}"#
    );
    let o = check_text(doc.as_bytes());
    assert!(
        o.diagnostics.iter().any(|d| d.code == "schema_too_deep"),
        "{:?}",
        o.diagnostics
    );
}

#[test]
fn long_extends_chains_are_reported_not_overflowed() {
    let items: Vec<String> = (0..20_000)
        .map(|i| {
            format!(
                r#"{{"@context":"dtmi:dtdl:context;3","@id":"dtmi:x:I{i};1","@type":"Interface","extends":"dtmi:x:I{};1"}}"#,
                (i + 1) % 20_000
            )
        })
        .collect();
    let o = check_text(format!("[{}]", items.join(",")).as_bytes());
    assert!(
        o.diagnostics.iter().all(|d| d.code == "extends_cycle"),
        "{:?}",
        o.diagnostics.first()
    );
    assert_eq!(o.diagnostics.len(), 20_000);
}

#[test]
fn huge_strings_and_numbers_are_rejected_cleanly() {
    let name = "a".repeat(1_000_000);
    let doc = format!(
        r#"{{"@context":"dtmi:dtdl:context;3","@id":"dtmi:x:A;1","@type":"Interface","contents":[{{"@type":"Relationship","name":"{name}","maxMultiplicity":1e400}}]}}"#
    );
    let o = check_text(doc.as_bytes());
    assert!(!o.is_ok());
    assert!(!o.diagnostics.is_empty());
}
