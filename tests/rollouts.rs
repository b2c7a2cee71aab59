//! Configurations and rollouts over GraphQL (a real server on 127.0.0.1).

use serde_json::{Value, json};

use crate::server::{code, gql, start};

const PUMP: &str = "dtmi:twingraph:isa95:Pump;1";
const EQUIPMENT: &str = "dtmi:twingraph:isa95:Equipment;1";

const CREATE: &str = r#"mutation($name: String!, $target: String!, $priority: Int) {
    createConfiguration(name: $name, target: $target, priority: $priority) {
        name target priority createdBy versionCount
    }
}"#;

const PUBLISH: &str = r#"mutation($c: String!, $values: JSON!, $parameters: [ConfigurationParameterInput!], $base: ConfigurationVersionRefInput) {
    publishConfigurationVersion(configuration: $c, values: $values, parameters: $parameters, base: $base) {
        configuration number values effectiveValues publishedBy
        parameters { name default source }
        base { configuration version }
    }
}"#;

async fn publish(addr: std::net::SocketAddr, c: &str, values: Value) -> Value {
    gql(addr, PUBLISH, json!({"c": c, "values": values})).await
}

#[tokio::test]
async fn configurations_are_versioned_immutably_and_diffed() {
    let s = start().await;
    let r = gql(
        s.addr,
        CREATE,
        json!({"name": "pump-defaults", "target": PUMP, "priority": 5}),
    )
    .await;
    assert_eq!(
        r["data"]["createConfiguration"],
        json!({"name": "pump-defaults", "target": PUMP, "priority": 5,
               "createdBy": "anonymous", "versionCount": 0}),
        "{r}"
    );
    let v1 = publish(
        s.addr,
        "pump-defaults",
        json!({"flowSetpoint": 10.0, "drive": {"ratedPower": 5.5}, "location": {"building": "B1"}}),
    )
    .await;
    assert_eq!(
        v1["data"]["publishConfigurationVersion"]["number"], 1,
        "{v1}"
    );
    let v2 = publish(
        s.addr,
        "pump-defaults",
        json!({"flowSetpoint": 12.0, "manufacturer": "ACME", "location": {"building": "B2"}}),
    )
    .await;
    let v2 = &v2["data"]["publishConfigurationVersion"];
    assert_eq!(v2["number"], 2);
    assert_eq!(v2["publishedBy"], "anonymous");
    assert_eq!(
        v2["effectiveValues"], v2["values"],
        "no base: own values only"
    );

    let r = gql(
        s.addr,
        r#"{ configuration(name: "pump-defaults") {
                versionCount
                versions { number values }
                latestVersion { number }
                version(number: 1) { values }
                diff(from: 1, to: 2) { path from to }
            } }"#,
        json!({}),
    )
    .await;
    let c = &r["data"]["configuration"];
    assert_eq!(c["versionCount"], 2, "{r}");
    assert_eq!(c["latestVersion"]["number"], 2);
    assert_eq!(c["version"]["values"]["flowSetpoint"], 10.0);
    assert_eq!(
        c["diff"],
        json!([
            {"path": "drive.ratedPower", "from": 5.5, "to": null},
            {"path": "flowSetpoint", "from": 10.0, "to": 12.0},
            {"path": "location.building", "from": "B1", "to": "B2"},
            {"path": "manufacturer", "from": null, "to": "ACME"},
        ])
    );
    // Listed, and by target.
    gql(s.addr, CREATE, json!({"name": "eq", "target": EQUIPMENT})).await;
    let r = gql(
        s.addr,
        r#"query($t: String) { configurations(target: $t) { name } }"#,
        json!({"t": PUMP}),
    )
    .await;
    assert_eq!(
        r["data"]["configurations"],
        json!([{"name": "pump-defaults"}])
    );
    let r = gql(s.addr, "{ configurations { name } }", json!({})).await;
    assert_eq!(
        r["data"]["configurations"],
        json!([{"name": "eq"}, {"name": "pump-defaults"}])
    );
    // Every action is in the audit log.
    let r = gql(
        s.addr,
        "{ events(first: 50) { nodes { kind actor } } }",
        json!({}),
    )
    .await;
    let kinds: Vec<&str> = r["data"]["events"]["nodes"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "configurationCreated",
            "configurationVersionPublished",
            "configurationVersionPublished",
            "configurationCreated"
        ]
    );
    s.shutdown().await;
}

#[tokio::test]
async fn invalid_configurations_are_refused_with_the_path_and_nothing_is_written() {
    let s = start().await;
    gql(s.addr, CREATE, json!({"name": "p", "target": PUMP})).await;
    let refused = |values: Value, path: &'static str| {
        let addr = s.addr;
        async move {
            let r = publish(addr, "p", values.clone()).await;
            assert_eq!(code(&r), "INVALID_CONFIGURATION", "{values}: {r}");
            assert_eq!(r["errors"][0]["extensions"]["path"], path, "{values}: {r}");
        }
    };
    refused(json!({"nope": 1}), "values.nope").await;
    refused(json!({"flowSetpoint": "fast"}), "values.flowSetpoint").await;
    refused(
        json!({"drive": {"ratedPower": "x"}}),
        "values.drive.ratedPower",
    )
    .await;
    refused(json!({"location": {"floor": 2}}), "values.location.floor").await;
    refused(json!({"tags": {"k": 1}}), "values.tags.k").await;
    // Reported-only properties have no desired state.
    refused(json!({"power": 1.0}), "values.power").await;
    refused(json!({}), "values").await;
    refused(json!([1]), "values").await;
    refused(json!({"flowSetpoint": {"$param": "undeclared"}}), "values").await;
    // A parameter default is checked where it is used.
    let r = gql(
        s.addr,
        PUBLISH,
        json!({"c": "p", "values": {"flowSetpoint": {"$param": "flow"}},
               "parameters": [{"name": "flow", "default": "high"}]}),
    )
    .await;
    assert_eq!(
        r["errors"][0]["extensions"]["path"], "values.flowSetpoint",
        "{r}"
    );
    let r = gql(
        s.addr,
        PUBLISH,
        json!({"c": "p", "values": {"flowSetpoint": 1.0},
               "parameters": [{"name": "a"}, {"name": "a"}]}),
    )
    .await;
    assert_eq!(code(&r), "INVALID_CONFIGURATION", "{r}");
    // Unknown configuration, duplicate, bad target, bad name.
    let r = publish(s.addr, "missing", json!({"flowSetpoint": 1.0})).await;
    assert_eq!(code(&r), "CONFIGURATION_NOT_FOUND", "{r}");
    let r = gql(s.addr, CREATE, json!({"name": "p", "target": PUMP})).await;
    assert_eq!(code(&r), "CONFIGURATION_EXISTS", "{r}");
    let r = gql(
        s.addr,
        CREATE,
        json!({"name": "q", "target": "dtmi:no:such;1"}),
    )
    .await;
    assert_eq!(code(&r), "INVALID_CONFIGURATION", "{r}");
    assert_eq!(r["errors"][0]["extensions"]["path"], "target");
    let r = gql(s.addr, CREATE, json!({"name": "9 lives", "target": PUMP})).await;
    assert_eq!(r["errors"][0]["extensions"]["path"], "name", "{r}");
    // Nothing of it was written: one configuration, no version, one event.
    let r = gql(
        s.addr,
        "{ configurations { name versionCount } events(first: 50) { nodes { seq } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        r["data"]["configurations"],
        json!([{"name": "p", "versionCount": 0}])
    );
    assert_eq!(
        r["data"]["events"]["nodes"].as_array().map(Vec::len),
        Some(1)
    );
    s.shutdown().await;
}

#[tokio::test]
async fn versions_inherit_from_a_base_and_declare_parameters() {
    let s = start().await;
    gql(
        s.addr,
        CREATE,
        json!({"name": "equipment-base", "target": EQUIPMENT}),
    )
    .await;
    let base = gql(
        s.addr,
        PUBLISH,
        json!({"c": "equipment-base",
               "values": {"manufacturer": "ACME", "maintenanceInterval": {"$param": "interval"}},
               "parameters": [{"name": "interval", "default": "P30D",
                               "source": {"from": "property", "path": "maintenanceInterval"}}]}),
    )
    .await;
    assert_eq!(
        base["data"]["publishConfigurationVersion"]["parameters"],
        json!([{"name": "interval", "default": "P30D",
                "source": {"from": "property", "path": "maintenanceInterval", "side": "reported"}}]),
        "{base}"
    );
    gql(s.addr, CREATE, json!({"name": "pumps", "target": PUMP})).await;
    let v = gql(
        s.addr,
        PUBLISH,
        json!({"c": "pumps", "values": {"flowSetpoint": 10.0, "manufacturer": "Grundfos"},
               "base": {"configuration": "equipment-base", "version": 1}}),
    )
    .await;
    let v = &v["data"]["publishConfigurationVersion"];
    assert_eq!(
        v["effectiveValues"],
        json!({"flowSetpoint": 10.0, "manufacturer": "Grundfos",
               "maintenanceInterval": {"$param": "interval"}}),
        "{v}"
    );
    assert_eq!(
        v["base"],
        json!({"configuration": "equipment-base", "version": 1})
    );
    assert_eq!(v["parameters"][0]["name"], "interval");
    // A base must target the same Interface or one the target extends.
    gql(
        s.addr,
        CREATE,
        json!({"name": "generic", "target": EQUIPMENT}),
    )
    .await;
    let r = gql(
        s.addr,
        PUBLISH,
        json!({"c": "generic", "values": {"manufacturer": "X"},
               "base": {"configuration": "pumps", "version": 1}}),
    )
    .await;
    assert_eq!(r["errors"][0]["extensions"]["path"], "base", "{r}");
    let r = gql(
        s.addr,
        PUBLISH,
        json!({"c": "generic", "values": {"manufacturer": "X"},
               "base": {"configuration": "pumps", "version": 7}}),
    )
    .await;
    assert_eq!(r["errors"][0]["extensions"]["path"], "base", "{r}");
    s.shutdown().await;
}

#[tokio::test]
async fn configurations_survive_a_restart_of_the_embedded_store() {
    use std::sync::Arc;
    use twingraph::rollout::Rollouts;
    use twingraph::rollout::config::{ConfigurationSpec, VersionSpec};
    use twingraph::store::{GraphStore, StoreConfig, embedded};

    let dir = crate::store_conformance::fresh_dir();
    let open = || {
        let s = embedded::open(
            &dir,
            crate::support::sample_models(),
            StoreConfig::default(),
        )
        .expect("open");
        Arc::new(s)
    };
    {
        let store = open();
        let r = Rollouts::start(store.clone() as Arc<dyn GraphStore>)
            .await
            .expect("rollouts");
        r.create_configuration(
            ConfigurationSpec {
                name: "c".into(),
                target: PUMP.into(),
                priority: 1,
                description: Some("kept".into()),
            },
            "alice",
        )
        .await
        .expect("create");
        let spec = |v: f64| VersionSpec {
            number: 0,
            values: json!({"flowSetpoint": v}),
            parameters: Vec::new(),
            base: None,
            description: None,
        };
        assert_eq!(
            r.publish_version("c", spec(1.0), "alice")
                .await
                .expect("v1"),
            1
        );
        assert_eq!(
            r.publish_version("c", spec(2.0), "bob").await.expect("v2"),
            2
        );
        store.close();
    }
    let store = open();
    let r = Rollouts::start(store.clone() as Arc<dyn GraphStore>)
        .await
        .expect("rollouts after restart");
    let state = r.state();
    let c = state.configurations.get("c").expect("configuration kept");
    assert_eq!(c.spec.description.as_deref(), Some("kept"));
    assert_eq!(c.created_by, "alice");
    assert_eq!(c.versions.len(), 2);
    assert_eq!(c.versions[1].published_by, "bob");
    assert_eq!(c.versions[1].effective, json!({"flowSetpoint": 2.0}));
}
