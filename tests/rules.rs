//! Targeted tests, one or more per rule family, asserting the stable rule
//! code each mistake is reported under (and that good models pass).

use twingraph::dtdl::{self, Options, Outcome, Source, UndefinedExtensions};

fn check_docs(docs: &[&str]) -> Outcome {
    let sources: Vec<Source> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| Source::new(format!("doc{i}.json"), d.as_bytes().to_vec()))
        .collect();
    dtdl::check(&sources, &Options::default())
}

fn codes(doc: &str) -> Vec<&'static str> {
    check_docs(&[doc])
        .diagnostics
        .iter()
        .map(|d| d.code)
        .collect()
}

/// Asserts `doc` is rejected, with `code` among its diagnostics.
fn rejects(doc: &str, code: &str) {
    let found = codes(doc);
    assert!(
        found.contains(&code),
        "expected [{code}], got {found:?} for {doc}"
    );
}

fn accepts(doc: &str) {
    let o = check_docs(&[doc]);
    let shown: Vec<String> = o.diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        o.is_ok(),
        "expected valid, got {shown:?} unresolved {:?}",
        o.unresolved
    );
}

/// A v3 Interface with the given contents.
fn v3(contents: &str) -> String {
    format!(
        r#"{{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:T;1","@type":"Interface","contents":[{contents}]}}"#
    )
}

fn v2(contents: &str) -> String {
    format!(
        r#"{{"@context":"dtmi:dtdl:context;2","@id":"dtmi:test:T;1","@type":"Interface","contents":[{contents}]}}"#
    )
}

#[test]
fn documents_must_be_objects_or_arrays_of_objects() {
    rejects("42", "root_not_object_or_array");
    rejects("[42]", "root_not_object_or_array");
    rejects("{", "json_syntax");
}

#[test]
fn top_level_needs_a_dtdl_context_first() {
    rejects(
        r#"{"@id":"dtmi:test:T;1","@type":"Interface"}"#,
        "context_missing",
    );
    rejects(
        r#"{"@context":["dtmi:dtdl:extension:quantitativeTypes;1","dtmi:dtdl:context;3"],"@id":"dtmi:test:T;1","@type":"Interface"}"#,
        "context_invalid",
    );
    rejects(
        r#"{"@context":["dtmi:dtdl:context;3",7],"@id":"dtmi:test:T;1","@type":"Interface"}"#,
        "context_invalid",
    );
    // An extension of another DTDL version.
    rejects(
        r#"{"@context":["dtmi:dtdl:context;2","dtmi:dtdl:extension:historization;1"],"@id":"dtmi:test:T;1","@type":"Interface"}"#,
        "context_invalid",
    );
}

#[test]
fn undefined_extensions_follow_the_version_default_unless_overridden() {
    let v2doc = r#"{"@context":["dtmi:dtdl:context;2","dtmi:acme:ext;1"],"@id":"dtmi:test:T;1","@type":"Interface"}"#;
    let v3doc = r#"{"@context":["dtmi:dtdl:context;3","dtmi:acme:ext;1"],"@id":"dtmi:test:T;1","@type":"Interface"}"#;
    accepts(v2doc);
    rejects(v3doc, "context_undefined_extension");
    let allow = Options {
        undefined_extensions: UndefinedExtensions::Allow,
    };
    assert!(dtdl::check(&[Source::new("a", v3doc)], &allow).is_ok());
    let deny = Options {
        undefined_extensions: UndefinedExtensions::Deny,
    };
    assert!(!dtdl::check(&[Source::new("a", v2doc)], &deny).is_ok());
}

#[test]
fn dtmi_syntax_length_and_reserved_prefixes() {
    rejects(
        r#"{"@context":"dtmi:dtdl:context;2","@id":"dtmi:test:T","@type":"Interface"}"#,
        "id_invalid",
    );
    accepts(r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:T","@type":"Interface"}"#);
    accepts(r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:T;2.1","@type":"Interface"}"#);
    rejects(
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:_T;1","@type":"Interface"}"#,
        "id_invalid",
    );
    rejects(
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:dtdl:T;1","@type":"Interface"}"#,
        "id_reserved",
    );
    let long = format!(
        r#"{{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:{};1","@type":"Interface"}}"#,
        "a".repeat(130)
    );
    rejects(&long, "id_too_long");
}

#[test]
fn ids_are_unique_across_the_whole_model_set() {
    let a = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:T;1","@type":"Interface"}"#;
    let o = check_docs(&[a, a]);
    assert!(
        o.diagnostics.iter().any(|d| d.code == "id_duplicate"),
        "{:?}",
        o.diagnostics
    );
}

#[test]
fn types_must_name_one_allowed_class() {
    rejects(&v3(r#"{"name":"x","schema":"double"}"#), "type_missing");
    rejects(
        &v3(r#"{"@type":"Interface","@id":"dtmi:test:U;1"}"#),
        "type_not_allowed",
    );
    rejects(
        &v3(r#"{"@type":["Property","Telemetry"],"name":"x","schema":"double"}"#),
        "type_invalid",
    );
    // v3 rejects undefined co-types; v2 tolerates them.
    rejects(
        &v3(r#"{"@type":["Property","Foo"],"name":"x","schema":"double"}"#),
        "cotype_invalid",
    );
    accepts(&v2(
        r#"{"@type":["Property","Foo"],"name":"x","schema":"double"}"#,
    ));
}

#[test]
fn long_form_terms_and_value_objects_are_understood() {
    accepts(&v3(
        r#"{"@type":"dtmi:dtdl:class:Property;3","dtmi:dtdl:property:name;3":"x","schema":"dtmi:dtdl:instance:Schema:double;3"}"#,
    ));
    accepts(&v3(
        r#"{"@type":"Property","name":{"@value":"x"},"schema":"double","writable":{"@value":true,"@type":"xsd:boolean"}}"#,
    ));
    rejects(
        &v3(r#"{"@type":"Property","name":"x","dtmi:dtdl:property:name;3":"y","schema":"double"}"#),
        "property_duplicate",
    );
}

#[test]
fn unknown_properties_are_rejected_without_an_unknown_cotype() {
    rejects(
        &v3(r#"{"@type":"Property","name":"x","schema":"double","colour":"red"}"#),
        "property_unknown",
    );
    rejects(
        &v2(r#"{"@type":"Property","name":"x","schema":"double","colour":"red"}"#),
        "property_unknown",
    );
    accepts(&v2(
        r#"{"@type":["Property","Custom"],"name":"x","schema":"double","colour":"red"}"#,
    ));
}

#[test]
fn names_follow_pattern_length_and_uniqueness() {
    rejects(
        &v3(r#"{"@type":"Property","name":"1x","schema":"double"}"#),
        "value_pattern",
    );
    rejects(
        &v3(r#"{"@type":"Property","name":"x_","schema":"double"}"#),
        "value_pattern",
    );
    let long = "a".repeat(65);
    rejects(
        &v2(&format!(
            r#"{{"@type":"Property","name":"{long}","schema":"double"}}"#
        )),
        "value_too_long",
    );
    accepts(&v3(&format!(
        r#"{{"@type":"Property","name":"{long}","schema":"double"}}"#
    )));
    rejects(
        &v3(
            r#"{"@type":"Property","name":"x","schema":"double"},{"@type":"Telemetry","name":"x","schema":"double"}"#,
        ),
        "name_duplicate",
    );
}

#[test]
fn inherited_contents_count_for_name_uniqueness() {
    let base = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Base;1","@type":"Interface","contents":[{"@type":"Property","name":"x","schema":"double"}]}"#;
    let child = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Child;1","@type":"Interface","extends":"dtmi:test:Base;1","contents":[{"@type":"Telemetry","name":"x","schema":"double"}]}"#;
    let o = check_docs(&[base, child]);
    assert!(
        o.diagnostics.iter().any(|d| d.code == "name_duplicate"),
        "{:?}",
        o.diagnostics
    );
}

#[test]
fn localizable_strings_take_every_form_with_one_text_per_language() {
    accepts(&v3(
        r#"{"@type":"Property","name":"x","schema":"double","displayName":"Speed"}"#,
    ));
    accepts(&v3(
        r#"{"@type":"Property","name":"x","schema":"double","displayName":{"en":"Speed","de":"Drehzahl"}}"#,
    ));
    accepts(&v3(
        r#"{"@type":"Property","name":"x","schema":"double","description":[{"@value":"Speed","@language":"en"},{"@value":"Vitesse","@language":"fr"}]}"#,
    ));
    rejects(
        &v3(
            r#"{"@type":"Property","name":"x","schema":"double","displayName":["Speed",{"@value":"Fast","@language":"en"}]}"#,
        ),
        "langstring_invalid",
    );
    rejects(
        &v3(
            r#"{"@type":"Property","name":"x","schema":"double","displayName":{"English":"Speed"}}"#,
        ),
        "langstring_invalid",
    );
    let long = "a".repeat(65);
    rejects(
        &v2(&format!(
            r#"{{"@type":"Property","name":"x","schema":"double","displayName":"{long}"}}"#
        )),
        "value_too_long",
    );
}

#[test]
fn extends_has_no_cycles_and_limited_depth() {
    rejects(
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:T;1","@type":"Interface","extends":"dtmi:test:T;1"}"#,
        "extends_cycle",
    );
    // A chain of 12 interfaces (11 links) is one too deep.
    let docs: Vec<String> = (0..12)
        .map(|i| {
            let ext = if i < 11 { format!(r#","extends":"dtmi:test:I{};1""#, i + 1) } else { String::new() };
            format!(r#"{{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:I{i};1","@type":"Interface"{ext}}}"#)
        })
        .collect();
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let o = check_docs(&refs);
    assert!(
        o.diagnostics.iter().any(|d| d.code == "extends_too_deep"),
        "{:?}",
        o.diagnostics
    );
    let o = check_docs(&refs[1..]);
    assert!(
        o.is_ok(),
        "11 interfaces (10 links) are fine: {:?}",
        o.diagnostics
    );
    // v2: at most two direct parents.
    rejects(
        r#"{"@context":"dtmi:dtdl:context;2","@id":"dtmi:test:T;1","@type":"Interface","extends":["dtmi:test:A;1","dtmi:test:B;1","dtmi:test:C;1"]}"#,
        "property_count",
    );
}

#[test]
fn unresolved_references_make_the_model_incomplete() {
    let o = check_docs(&[&v3(
        r#"{"@type":"Property","name":"x","schema":"dtmi:test:Missing;1"}"#,
    )]);
    assert!(o.diagnostics.is_empty(), "{:?}", o.diagnostics);
    assert_eq!(o.unresolved, vec!["dtmi:test:Missing;1".to_owned()]);
    assert!(o.model.is_none());
}

#[test]
fn references_must_reach_the_right_class_and_stay_inside_their_interface() {
    rejects(
        &v3(r#"{"@type":"Property","name":"x","schema":"dtmi:test:T;1"}"#),
        "reference_wrong_class",
    );
    let a = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:A;1","@type":"Interface","schemas":[{"@id":"dtmi:test:Shared;1","@type":"Enum","valueSchema":"integer","enumValues":[{"name":"a","enumValue":1}]}]}"#;
    let b = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:B;1","@type":"Interface","contents":[{"@type":"Property","name":"x","schema":"dtmi:test:Shared;1"}]}"#;
    let o = check_docs(&[a, b]);
    assert!(
        o.diagnostics
            .iter()
            .any(|d| d.code == "reference_not_shareable"),
        "{:?}",
        o.diagnostics
    );
}

#[test]
fn complex_schemas_nest_at_most_five_deep_and_not_into_themselves() {
    let nest = |n: usize| {
        let mut s = "\"double\"".to_owned();
        for _ in 0..n {
            s = format!(r#"{{"@type":"Array","elementSchema":{s}}}"#);
        }
        v3(&format!(
            r#"{{"@type":"Telemetry","name":"x","schema":{s}}}"#
        ))
    };
    accepts(&nest(5));
    rejects(&nest(6), "schema_too_deep");
    rejects(
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:T;1","@type":"Interface","schemas":[{"@id":"dtmi:test:S;1","@type":"Array","elementSchema":"dtmi:test:S;1"}]}"#,
        "schema_cycle",
    );
}

#[test]
fn v2_only_limits_apply_to_v2_only() {
    // Arrays and geospatial schemas are not Property schemas in v2.
    rejects(
        &v2(
            r#"{"@type":"Property","name":"x","schema":{"@type":"Array","elementSchema":"double"}}"#,
        ),
        "schema_not_allowed",
    );
    rejects(
        &v2(r#"{"@type":"Property","name":"x","schema":"point"}"#),
        "schema_not_allowed",
    );
    accepts(&v3(
        r#"{"@type":"Property","name":"x","schema":{"@type":"Array","elementSchema":"double"}}"#,
    ));
    // maxMultiplicity ≤ 500 in v2.
    rejects(
        &v2(r#"{"@type":"Relationship","name":"r","maxMultiplicity":501}"#),
        "value_range",
    );
    accepts(&v3(
        r#"{"@type":"Relationship","name":"r","maxMultiplicity":501}"#,
    ));
    rejects(
        &v3(r#"{"@type":"Relationship","name":"r","minMultiplicity":1}"#),
        "value_range",
    );
    // Enums need 1..=100 values and Objects 1..=30 fields in v2.
    rejects(
        &v2(
            r#"{"@type":"Property","name":"x","schema":{"@type":"Enum","valueSchema":"integer","enumValues":[]}}"#,
        ),
        "property_count",
    );
    let fields: Vec<String> = (0..31)
        .map(|i| format!(r#"{{"name":"f{i}","schema":"double"}}"#))
        .collect();
    let obj = format!(
        r#"{{"@type":"Property","name":"x","schema":{{"@type":"Object","fields":[{}]}}}}"#,
        fields.join(",")
    );
    rejects(&v2(&obj), "property_count");
    accepts(&v3(&obj));
}

#[test]
fn enum_values_match_the_value_schema_and_are_unique() {
    rejects(
        &v3(
            r#"{"@type":"Property","name":"x","schema":{"@type":"Enum","valueSchema":"integer","enumValues":[{"name":"a","enumValue":"one"}]}}"#,
        ),
        "enum_value_schema",
    );
    rejects(
        &v3(
            r#"{"@type":"Property","name":"x","schema":{"@type":"Enum","valueSchema":"integer","enumValues":[{"name":"a","enumValue":1},{"name":"b","enumValue":1}]}}"#,
        ),
        "enum_value_duplicate",
    );
    rejects(
        &v3(
            r#"{"@type":"Property","name":"x","schema":{"@type":"Enum","valueSchema":"double","enumValues":[]}}"#,
        ),
        "value_not_allowed",
    );
}

#[test]
fn components_do_not_nest() {
    let inner =
        r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Inner;1","@type":"Interface"}"#;
    let middle = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Middle;1","@type":"Interface","contents":[{"@type":"Component","name":"c","schema":"dtmi:test:Inner;1"}]}"#;
    let outer = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Outer;1","@type":"Interface","contents":[{"@type":"Component","name":"m","schema":"dtmi:test:Middle;1"}]}"#;
    assert!(check_docs(&[inner, middle]).is_ok());
    let o = check_docs(&[inner, middle, outer]);
    assert!(
        o.diagnostics.iter().any(|d| d.code == "component_nested"),
        "{:?}",
        o.diagnostics
    );
}

#[test]
fn commands_use_payloads_of_their_version() {
    accepts(&v2(
        r#"{"@type":"Command","name":"c","commandType":"synchronous","request":{"name":"a","schema":"double"},"response":{"@type":"CommandPayload","name":"b","schema":"string"}}"#,
    ));
    accepts(&v3(
        r#"{"@type":"Command","name":"c","request":{"@type":"CommandRequest","name":"a","schema":"double"},"response":{"name":"b","schema":"string"}}"#,
    ));
    // v3 has no CommandPayload class: the term names an abstract class there.
    rejects(
        &v3(
            r#"{"@type":"Command","name":"c","request":{"@type":"CommandPayload","name":"a","schema":"double"}}"#,
        ),
        "cotype_invalid",
    );
}

#[test]
fn semantic_types_need_a_matching_unit_and_numeric_schema() {
    accepts(&v2(
        r#"{"@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"degreeCelsius"}"#,
    ));
    rejects(
        &v2(r#"{"@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"metre"}"#),
        "unit_not_allowed",
    );
    rejects(
        &v2(r#"{"@type":["Telemetry","Temperature"],"name":"t","schema":"double"}"#),
        "property_required",
    );
    rejects(
        &v2(
            r#"{"@type":["Telemetry","Temperature"],"name":"t","schema":"string","unit":"kelvin"}"#,
        ),
        "cotype_invalid",
    );
    // v3 needs the quantitativeTypes extension for semantic types.
    rejects(
        &v3(
            r#"{"@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"kelvin"}"#,
        ),
        "cotype_invalid",
    );
    accepts(
        r#"{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:quantitativeTypes;1"],"@id":"dtmi:test:T;1","@type":"Interface",
            "contents":[{"@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"kelvin"}]}"#,
    );
}

#[test]
fn language_extensions_add_their_cotypes() {
    accepts(
        r#"{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:historization;1","dtmi:dtdl:extension:annotation;1"],"@id":"dtmi:test:T;1","@type":"Interface",
            "contents":[{"@type":["Property","Historized"],"name":"p","schema":"double"},
                        {"@type":["Property","ValueAnnotation"],"name":"a","annotates":"p","schema":"string"}]}"#,
    );
    rejects(
        r#"{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:annotation;1"],"@id":"dtmi:test:T;1","@type":"Interface",
            "contents":[{"@type":["Property","ValueAnnotation"],"name":"a","schema":"string"}]}"#,
        "property_required",
    );
    // IoT Central: State must be an Enum.
    accepts(
        r#"{"@context":["dtmi:dtdl:context;2","dtmi:iotcentral:context;2"],"@id":"dtmi:test:T;1","@type":"Interface",
            "contents":[{"@type":["Telemetry","Location"],"name":"where","schema":"geopoint"}]}"#,
    );
    rejects(
        r#"{"@context":["dtmi:dtdl:context;2","dtmi:iotcentral:context;2"],"@id":"dtmi:test:T;1","@type":"Interface",
            "contents":[{"@type":["Telemetry","State"],"name":"s","schema":"double"}]}"#,
        "cotype_invalid",
    );
}

#[test]
fn every_error_of_a_model_set_is_reported() {
    let found = codes(&v3(
        r#"{"@type":"Property","name":"1a","schema":"double"},{"@type":"Property","name":"b","schema":"doubel"},{"@type":"Telemetry","name":"c"}"#,
    ));
    assert_eq!(
        found,
        vec!["value_pattern", "value_not_allowed", "property_required"]
    );
}

#[test]
fn diagnostics_name_file_path_and_dtmi() {
    let o = check_docs(&[&v3(
        r#"{"@type":"Property","name":"speed","schema":"doubel"}"#,
    )]);
    let d = &o.diagnostics[0];
    assert_eq!(&*d.file, "doc0.json");
    assert_eq!(d.path, "$.contents[0].schema");
    assert_eq!(d.dtmi.as_deref(), Some("dtmi:test:T:_contents:__speed;1"));
    assert_eq!(d.code, "value_not_allowed");
}

#[test]
fn resolved_model_flattens_inheritance() {
    let base = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Base;1","@type":"Interface","contents":[{"@type":"Property","name":"serial","schema":"string"}]}"#;
    let child = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Child;1","@type":"Interface","extends":"dtmi:test:Base;1",
        "contents":[{"@type":"Property","name":"speed","schema":"double","writable":true},
                    {"@type":"Relationship","name":"feeds","target":"dtmi:test:Base;1","maxMultiplicity":3}]}"#;
    let o = check_docs(&[base, child]);
    let model = o.model.expect("valid");
    let c = model.interface("dtmi:test:Child;1").expect("child");
    assert_eq!(c.ancestors, vec!["dtmi:test:Base;1".to_owned()]);
    let names: Vec<&str> = c.contents.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["speed", "feeds", "serial"]);
    assert_eq!(
        c.content("serial").map(|s| s.defined_in.as_str()),
        Some("dtmi:test:Base;1")
    );
    assert!(matches!(
        c.content("speed").map(|s| &s.kind),
        Some(dtdl::model::ContentKind::Property { writable: true, .. })
    ));
    assert!(c.is_a("dtmi:test:Base;1"));
    assert_eq!(model.implementors("dtmi:test:Base;1").count(), 2);
}

fn v3_ext(contexts: &str, contents: &str) -> String {
    format!(
        r#"{{"@context":["dtmi:dtdl:context;3",{contexts}],"@id":"dtmi:test:T;1","@type":"Interface","contents":[{contents}]}}"#
    )
}

#[test]
fn annotations_must_name_a_sibling_property_or_telemetry() {
    let ctx = r#""dtmi:dtdl:extension:annotation;1""#;
    accepts(&v3_ext(
        ctx,
        r#"{"@type":"Telemetry","name":"t","schema":"double"},{"@type":["Property","ValueAnnotation"],"name":"a","annotates":"t","schema":"string"}"#,
    ));
    // Like the reference parser, a name that matches nothing is not checked...
    accepts(&v3_ext(
        ctx,
        r#"{"@type":["Property","ValueAnnotation"],"name":"a","annotates":"nothing","schema":"string"}"#,
    ));
    // ...but an annotation cannot annotate an annotation, itself included.
    rejects(
        &v3_ext(
            ctx,
            r#"{"@type":["Property","ValueAnnotation"],"name":"a","annotates":"a","schema":"string"}"#,
        ),
        "annotation_target",
    );
    rejects(
        &v3_ext(
            ctx,
            r#"{"@type":"Command","name":"c"},{"@type":["Property","ValueAnnotation"],"name":"a","annotates":"c","schema":"string"}"#,
        ),
        "annotation_target",
    );
}

#[test]
fn overrides_need_an_annotation_of_an_extension_property() {
    let ctx = r#""dtmi:dtdl:extension:quantitativeTypes;1","dtmi:dtdl:extension:annotation;1","dtmi:dtdl:extension:overriding;1""#;
    let t = r#"{"@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"kelvin"}"#;
    accepts(&v3_ext(
        ctx,
        &format!(
            r#"{t},{{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"t","overrides":"unit","schema":"TemperatureUnit","writable":true}}"#
        ),
    ));
    rejects(
        &v3_ext(
            ctx,
            &format!(
                r#"{t},{{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"t","overrides":"schema","schema":"string"}}"#
            ),
        ),
        "override_target",
    );
    rejects(
        &v3_ext(
            ctx,
            &format!(
                r#"{t},{{"@type":["Property","Override"],"name":"u","overrides":"unit","schema":"string"}}"#
            ),
        ),
        "cotype_invalid",
    );
    // The override's schema is the overridden property's type: for a unit, the unit Enum.
    rejects(
        &v3_ext(
            ctx,
            &format!(
                r#"{t},{{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"t","overrides":"unit","schema":"PressureUnit"}}"#
            ),
        ),
        "override_target",
    );
}

#[test]
fn mqtt_extension_checks_topics_indexes_and_caching() {
    let good = r#"{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:mqtt;1"],"@id":"dtmi:test:T;1","@type":["Interface","Mqtt"],
        "payloadFormat":"json","telemetryTopic":"plant/{modelId}/{senderId}/telemetry","commandTopic":"plant/{executorId}/command/{commandName}",
        "contents":[{"@type":["Telemetry","Indexed"],"name":"a","index":1,"schema":"double"},
                    {"@type":["Command","Idempotent","Cacheable"],"name":"c","ttl":"PT10S"}]}"#;
    accepts(good);
    rejects(
        &good.replace("plant/{modelId}", "plant//{modelId}"),
        "value_pattern",
    );
    rejects(
        &good.replace(
            r#""name":"c","ttl":"PT10S""#,
            r#""name":"c","ttl":"10 seconds""#,
        ),
        "value_pattern",
    );
    rejects(
        &good.replace(
            r#""Command","Idempotent","Cacheable""#,
            r#""Command","Cacheable""#,
        ),
        "cotype_invalid",
    );
    rejects(
        &good.replace(r#"{"@type":["Command""#, r#"{"@type":["Telemetry","Indexed"],"name":"b","index":1,"schema":"double"},{"@type":["Command""#),
        "index_duplicate",
    );
    rejects(
        &good.replace(r#""payloadFormat":"json","#, ""),
        "property_required",
    );
}

#[test]
fn quantitative_unit_enums_are_standard_v3_schemas() {
    let doc = r#"{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:quantitativeTypes;1"],"@id":"dtmi:test:T;1","@type":"Interface",
        "contents":[{"@type":"Property","name":"displayUnit","schema":"TemperatureUnit","writable":true},
                    {"@type":"Property","name":"pick","schema":{"@type":"Enum","valueSchema":"string","enumValues":["kelvin","degreeCelsius"]}}]}"#;
    let o = check_docs(&[doc]);
    let model = o.model.expect("valid");
    let t = model.interface("dtmi:test:T;1").expect("interface");
    let Some(dtdl::model::ContentKind::Property {
        schema: dtdl::model::Schema::Enum { values, .. },
        ..
    }) = t.content("displayUnit").map(|c| &c.kind)
    else {
        panic!("displayUnit has an Enum schema");
    };
    assert!(
        values.iter().any(|v| v.name == "degreeFahrenheit"),
        "{values:?}"
    );
    // Without the extension, the term means nothing.
    rejects(
        &v3(r#"{"@type":"Property","name":"u","schema":"TemperatureUnit"}"#),
        "value_not_allowed",
    );
}

// Regressions found by differential testing against the reference parser
// (tools/differential.py).

#[test]
fn v2_elements_cannot_refer_to_v3_elements() {
    let base = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Base;1","@type":"Interface"}"#;
    let v2child = r#"{"@context":"dtmi:dtdl:context;2","@id":"dtmi:test:Child;1","@type":"Interface","extends":"dtmi:test:Base;1"}"#;
    let o = check_docs(&[base, v2child]);
    assert!(
        o.diagnostics.iter().any(|d| d.code == "reference_version"),
        "{:?}",
        o.diagnostics
    );
    // The other way round is allowed: v3 may extend v2.
    let v2base =
        r#"{"@context":"dtmi:dtdl:context;2","@id":"dtmi:test:Base;1","@type":"Interface"}"#;
    let v3child = r#"{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:Child;1","@type":"Interface","extends":"dtmi:test:Base;1"}"#;
    assert!(check_docs(&[v2base, v3child]).is_ok());
}

#[test]
fn nested_arrays_flatten_as_in_json_ld() {
    accepts(&v3(
        r#"[{"@type":"Property","name":"a","schema":"double"}],[],{"@type":"Property","name":"b","schema":"double"}"#,
    ));
    accepts(
        r#"[[{"@context":"dtmi:dtdl:context;3","@id":"dtmi:test:T;1","@type":"Interface"}],[]]"#,
    );
    rejects("[[626]]", "root_not_object_or_array");
}

#[test]
fn relationship_target_given_as_a_term_expands_to_its_dtmi() {
    // JSON-LD expands a term in an identifier position; the reference parser accepts it.
    accepts(&v3(
        r#"{"@type":"Relationship","name":"r","target":"double"}"#,
    ));
    rejects(
        &v3(r#"{"@type":"Relationship","name":"r","target":"no such term"}"#),
        "reference_invalid",
    );
}

#[test]
fn language_tags_are_language_script_region() {
    for ok in [
        "en",
        "de",
        "name",
        "zh-Hant",
        "zh-TW",
        "fr-155",
        "sr-Latn-RS",
    ] {
        accepts(&v3(&format!(
            r#"{{"@type":"Property","name":"x","schema":"double","displayName":{{"{ok}":"x"}}}}"#
        )));
    }
    for bad in [
        "EN",
        "en-us",
        "English",
        "de-DE-1996",
        "en-US-x-twain",
        "e",
        "en-Latn-419-x",
    ] {
        rejects(
            &v3(&format!(
                r#"{{"@type":"Property","name":"x","schema":"double","displayName":{{"{bad}":"x"}}}}"#
            )),
            "langstring_invalid",
        );
    }
}

#[test]
fn integral_numbers_count_as_integers() {
    accepts(&v3(
        r#"{"@type":"Relationship","name":"r","maxMultiplicity":3.0}"#,
    ));
    rejects(
        &v3(r#"{"@type":"Relationship","name":"r","maxMultiplicity":3.5}"#),
        "value_type",
    );
}

#[test]
fn standard_schemas_of_either_version_can_be_named_by_dtmi() {
    accepts(&v3(
        r#"{"@type":"Property","name":"x","schema":"dtmi:dtdl:instance:Schema:double;2"}"#,
    ));
    accepts(&v2(
        r#"{"@type":"Property","name":"x","schema":"dtmi:dtdl:instance:Schema:double;3"}"#,
    ));
}

#[test]
fn identifiers_other_than_interfaces_are_limited_to_2048_characters() {
    for ctx in ["dtmi:dtdl:context;2", "dtmi:dtdl:context;3"] {
        let id = |n: usize| format!("dtmi:t:{};1", "a".repeat(n - "dtmi:t:;1".len()));
        let doc = |n: usize| {
            format!(
                r#"{{"@context":"{ctx}","@id":"dtmi:t:A;1","@type":"Interface","contents":[{{"@id":"{}","@type":"Property","name":"p","schema":"double"}}]}}"#,
                id(n)
            )
        };
        accepts(&doc(2048));
        rejects(&doc(2049), "id_too_long");
    }
}
