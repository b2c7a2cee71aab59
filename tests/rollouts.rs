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
        r.stop().await;
        drop(r);
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

// ---- Rollouts -------------------------------------------------------------

pub(crate) mod run {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use serde_json::{Value, json};
    use twingraph::simulator::{Behaviour, Simulator};
    use twingraph::store::{GraphStore, Store, StoreConfig};
    use twingraph::twin::{Batch, Op};

    use twingraph::rollout::{Options, Rollouts, SteppedClock};

    use super::{CREATE, PUBLISH, PUMP};
    use crate::server::{Running, code, gql, serve_rollouts, start_on};
    use crate::support::sample_models;

    pub(crate) struct Plant {
        pub store: Arc<dyn GraphStore>,
        pub server: Running,
    }

    /// A [`plant`] whose rollouts run on a clock the test steps.
    pub(crate) struct SteppedPlant {
        pub store: Arc<dyn GraphStore>,
        pub server: Running,
        pub clock: Arc<SteppedClock>,
        pub rollouts: Arc<Rollouts>,
    }

    impl SteppedPlant {
        /// Moves time on by `by`, then waits for a whole scheduler pass
        /// that saw it.
        pub(crate) async fn step(&self, by: Duration) {
            self.clock.advance(by);
            assert!(
                self.rollouts.next_pass(Duration::from_secs(30)).await,
                "no scheduler pass"
            );
        }
    }

    pub(crate) async fn stepped_plant(n: usize) -> SteppedPlant {
        // The store stamps its events on the same clock.
        let clock = Arc::new(SteppedClock::new());
        let store: Arc<dyn GraphStore> = Arc::new(Store::in_memory(
            sample_models(),
            StoreConfig {
                clock: clock.clone(),
                ..StoreConfig::default()
            },
        ));
        load(&*store, n).await;
        let rollouts = Rollouts::start_with(
            store.clone(),
            Options {
                clock: clock.clone(),
                ..Options::default()
            },
        )
        .await
        .expect("rollouts");
        let server = serve_rollouts(store.clone(), rollouts.clone()).await;
        configure(server.addr).await;
        SteppedPlant {
            store,
            server,
            clock,
            rollouts,
        }
    }

    /// A server over a store holding `n` pumps `p0000`.. (flowSetpoint 1.0
    /// desired), and configuration `flow` v1 setting flowSetpoint 42.
    pub(crate) async fn plant(n: usize) -> Plant {
        let store: Arc<dyn GraphStore> =
            Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
        load(&*store, n).await;
        let server = start_on(store.clone()).await;
        configure(server.addr).await;
        Plant { store, server }
    }

    pub(crate) async fn load(store: &dyn GraphStore, n: usize) {
        let ops: Vec<Op> = (0..n)
            .map(|i| Op::CreateTwin {
                id: pump(i),
                model: PUMP.into(),
                desired: Some(json!({"flowSetpoint": 1.0})),
                reported: None,
            })
            .collect();
        for chunk in ops.chunks(2000) {
            store
                .apply(
                    Batch {
                        ops: chunk.to_vec(),
                    },
                    "test",
                )
                .await
                .expect("plant");
        }
    }

    pub(crate) async fn configure(addr: SocketAddr) {
        let r = gql(addr, CREATE, json!({"name": "flow", "target": PUMP})).await;
        assert!(r["errors"].is_null(), "{r}");
        let r = gql(
            addr,
            PUBLISH,
            json!({"c": "flow", "values": {"flowSetpoint": 42.0}}),
        )
        .await;
        assert!(r["errors"].is_null(), "{r}");
    }

    pub(crate) fn pump(i: usize) -> String {
        format!("p{i:04}")
    }

    pub(crate) const START: &str = r#"mutation($target: RolloutTargetInput!, $plan: RolloutPlanInput, $id: ID) {
        startRollout(configuration: "flow", version: 1, target: $target, plan: $plan, id: $id) {
            id state twinCount stageCount
        }
    }"#;

    pub(crate) async fn start(addr: SocketAddr, target: Value, plan: Value) -> String {
        let r = gql(addr, START, json!({"target": target, "plan": plan})).await;
        assert!(r["errors"].is_null(), "{r}");
        r["data"]["startRollout"]["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    pub(crate) const STATUS: &str = r#"query($id: ID!) { rollout(id: $id) {
        state stage reason
        counts { pending applied succeeded failed timedOut rolledBack }
        stages { number size successRate counts { succeeded } }
    } }"#;

    pub(crate) async fn status(addr: SocketAddr, id: &str) -> Value {
        let r = gql(addr, STATUS, json!({"id": id})).await;
        assert!(r["errors"].is_null(), "{r}");
        r["data"]["rollout"].clone()
    }

    /// Polls until the rollout is in `state` (or fails the test).
    pub(crate) async fn until(addr: SocketAddr, id: &str, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let s = status(addr, id).await;
            if s["state"] == state {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "rollout {id} not {state} within {within:?}: {s}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Desired flowSetpoint of every pump.
    pub(crate) async fn setpoints(store: &dyn GraphStore, n: usize) -> HashMap<String, Value> {
        let ids: Vec<String> = (0..n).map(pump).collect();
        store
            .twins_by_ids(&ids)
            .await
            .expect("twins")
            .into_iter()
            .map(|t| {
                let v = t
                    .root
                    .props
                    .get("flowSetpoint")
                    .and_then(|p| p.desired.as_ref())
                    .map(|d| d.value.clone());
                (t.id.to_string(), v.unwrap_or(Value::Null))
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_staged_rollout_over_thousands_of_devices_succeeds() {
        let p = stepped_plant(3000).await;
        let _devices = Simulator::start(p.store.clone(), Behaviour::default());
        let id = start(
            p.server.addr,
            json!({"model": PUMP}),
            json!({"stages": [{"count": 30, "bakeSeconds": 3600}, {"percent": 30}, {}],
                   "abort": [{"failure": "ANY", "thresholdPercent": 5, "minExecuted": 10}]}),
        )
        .await;
        // The canary succeeds, then bakes an hour: not a minute less.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = status(p.server.addr, &id).await;
            if s["stages"][0]["counts"]["succeeded"] == 30 && s["stage"] == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the canary does not succeed: {s}"
            );
            p.step(Duration::ZERO).await;
        }
        p.step(Duration::from_secs(3500)).await;
        let s = status(p.server.addr, &id).await;
        assert_eq!(
            (s["stage"].clone(), s["counts"]["pending"].clone()),
            (json!(1), json!(2970)),
            "still baking: {s}"
        );
        p.step(Duration::from_secs(101)).await;
        let s = until(p.server.addr, &id, "SUCCEEDED", Duration::from_secs(60)).await;
        assert_eq!(s["counts"]["succeeded"], 3000, "{s}");
        assert_eq!(
            s["stages"],
            json!([
                {"number": 1, "size": 30, "successRate": 100.0, "counts": {"succeeded": 30}},
                {"number": 2, "size": 900, "successRate": 100.0, "counts": {"succeeded": 900}},
                {"number": 3, "size": 2070, "successRate": 100.0, "counts": {"succeeded": 2070}},
            ])
        );
        let now = setpoints(&*p.store, 3000).await;
        assert!(now.values().all(|v| *v == json!(42.0)));
        // The twin explains where its desired value comes from.
        let r = gql(
            p.server.addr,
            r#"{ twin(id: "p0007") { configurations metadata } }"#,
            json!({}),
        )
        .await;
        let t = &r["data"]["twin"];
        assert_eq!(t["configurations"]["flow"]["version"], 1, "{r}");
        assert_eq!(t["configurations"]["flow"]["rollout"], id.as_str());
        assert_eq!(
            t["metadata"]["flowSetpoint"]["desired"]["source"],
            json!({"configuration": "flow", "version": 1, "rollout": id})
        );
        assert_eq!(t["metadata"]["flowSetpoint"]["ackStatus"], "acknowledged");
        p.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abort_criteria_in_the_canary_roll_every_touched_twin_back() {
        let p = plant(400).await;
        let before = setpoints(&*p.store, 400).await;
        let devices = Behaviour {
            reject_rate: 0.5,
            seed: 7,
            ..Behaviour::default()
        };
        let _devices = Simulator::start(p.store.clone(), devices);
        let id = start(
            p.server.addr,
            json!({"model": PUMP}),
            json!({"stages": [{"count": 40}, {}],
                   "abort": [{"failure": "REJECTED", "thresholdPercent": 20, "minExecuted": 10}]}),
        )
        .await;
        let s = until(p.server.addr, &id, "ROLLED_BACK", Duration::from_secs(30)).await;
        assert!(
            s["reason"]
                .as_str()
                .unwrap_or("")
                .contains("abort criterion"),
            "{s}"
        );
        assert_eq!(s["stage"], 1, "it never left the canary: {s}");
        assert_eq!(
            s["counts"]["pending"], 360,
            "only the canary was touched: {s}"
        );
        let after = setpoints(&*p.store, 400).await;
        assert_eq!(after, before, "every touched twin is back where it was");
        // Rejections carry the device's code and reason.
        let r = gql(
            p.server.addr,
            r#"query($id: ID!) { rollout(id: $id) { twins(first: 400) { twin state failure code reason } } }"#,
            json!({"id": id}),
        )
        .await;
        let twins = r["data"]["rollout"]["twins"]
            .as_array()
            .expect("twins")
            .clone();
        assert!(twins.iter().any(|t| t["state"] == "ROLLED_BACK"), "{r}");
        // And the twins are free for the next rollout.
        let again = gql(p.server.addr, START, json!({"target": {"ids": ["p0001"]}})).await;
        assert!(again["errors"].is_null(), "{again}");
        p.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_stage_threshold_rolls_back_too() {
        let p = plant(50).await;
        let devices = Behaviour {
            rejecting: ["p0003".to_owned()].into(),
            ..Behaviour::default()
        };
        let _devices = Simulator::start(p.store.clone(), devices);
        let id = start(
            p.server.addr,
            json!({"ids": (0..10).map(pump).collect::<Vec<_>>()}),
            json!({"stages": [{"count": 5, "successThreshold": 100}, {}]}),
        )
        .await;
        let s = until(p.server.addr, &id, "ROLLED_BACK", Duration::from_secs(30)).await;
        assert!(
            s["reason"].as_str().unwrap_or("").contains("stage 1"),
            "{s}"
        );
        let r = gql(
            p.server.addr,
            r#"query($id: ID!) { rollout(id: $id) { twins(state: ROLLED_BACK) { twin } } }"#,
            json!({"id": id}),
        )
        .await;
        assert_eq!(
            r["data"]["rollout"]["twins"].as_array().map(Vec::len),
            Some(5),
            "{r}"
        );
        p.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pause_resume_and_cancel() {
        let p = stepped_plant(60).await;
        let _devices = Simulator::start(p.store.clone(), Behaviour::default());
        // 6 a minute: one twin every 10 s of the clock.
        let plan = json!({"rate": {"perMinute": 6}});
        let id = start(p.server.addr, json!({"model": PUMP}), plan.clone()).await;
        for _ in 0..3 {
            p.step(Duration::from_secs(10)).await;
        }
        let r = gql(
            p.server.addr,
            r#"mutation($id: ID!) { pauseRollout(id: $id) { state } }"#,
            json!({"id": id}),
        )
        .await;
        assert_eq!(r["data"]["pauseRollout"]["state"], "PAUSED", "{r}");
        let paused = status(p.server.addr, &id).await;
        p.step(Duration::from_secs(600)).await;
        let later = status(p.server.addr, &id).await;
        assert_eq!(
            later["counts"]["pending"], paused["counts"]["pending"],
            "nothing applied while paused"
        );
        assert!(
            (30..60).contains(&paused["counts"]["pending"].as_u64().unwrap_or(0)),
            "some, not all, were applied: {paused}"
        );
        // Pausing twice is refused with its reason.
        let r = gql(
            p.server.addr,
            r#"mutation($id: ID!) { pauseRollout(id: $id) { state } }"#,
            json!({"id": id}),
        )
        .await;
        assert_eq!(code(&r), "INVALID_ROLLOUT_STATE", "{r}");
        let r = gql(
            p.server.addr,
            r#"mutation($id: ID!) { resumeRollout(id: $id) { state } }"#,
            json!({"id": id}),
        )
        .await;
        assert_eq!(r["data"]["resumeRollout"]["state"], "RUNNING", "{r}");
        p.step(Duration::from_secs(10)).await;
        let resumed = status(p.server.addr, &id).await;
        assert!(
            resumed["counts"]["pending"].as_u64() < paused["counts"]["pending"].as_u64(),
            "applying again: {resumed}"
        );
        let r = gql(
            p.server.addr,
            r#"mutation($id: ID!) { cancelRollout(id: $id) { state counts { pending } } }"#,
            json!({"id": id}),
        )
        .await;
        assert_eq!(r["data"]["cancelRollout"]["state"], "CANCELED", "{r}");
        let pending = r["data"]["cancelRollout"]["counts"]["pending"].clone();
        p.step(Duration::from_secs(600)).await;
        let s = status(p.server.addr, &id).await;
        assert_eq!(s["state"], "CANCELED");
        assert_eq!(
            s["counts"]["pending"], pending,
            "nothing applied after cancel"
        );
        let now = setpoints(&*p.store, 60).await;
        let applied = now.values().filter(|v| **v == json!(42.0)).count();
        assert!(
            applied > 0 && applied < 60,
            "what was applied is kept: {applied}"
        );
        // Canceled rollouts free their twins.
        let again = start(p.server.addr, json!({"model": PUMP}), json!({})).await;
        until(p.server.addr, &again, "SUCCEEDED", Duration::from_secs(30)).await;
        p.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_devices_time_out_after_their_retries() {
        let p = stepped_plant(10).await;
        let devices = Behaviour {
            silent: ["p0002".to_owned()].into(),
            ..Behaviour::default()
        };
        let _devices = Simulator::start(p.store.clone(), devices);
        let id = start(
            p.server.addr,
            json!({"model": PUMP}),
            json!({"twinTimeoutSeconds": 300, "retries": 1,
                   "stages": [{"successThreshold": 80}]}),
        )
        .await;
        // Nine answer; the silent one waits its five minutes, twice.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = status(p.server.addr, &id).await;
            if s["counts"]["succeeded"] == 9 {
                assert_eq!(s["counts"]["applied"], 1, "{s}");
                break;
            }
            assert!(Instant::now() < deadline, "the devices do not answer: {s}");
            p.step(Duration::ZERO).await;
        }
        p.step(Duration::from_secs(299)).await;
        let s = status(p.server.addr, &id).await;
        assert_eq!(
            (s["state"].clone(), s["counts"]["timedOut"].clone()),
            (json!("RUNNING"), json!(0)),
            "not yet: {s}"
        );
        p.step(Duration::from_secs(2)).await;
        p.step(Duration::ZERO).await;
        let s = status(p.server.addr, &id).await;
        assert_eq!(s["counts"]["applied"], 1, "applied again (retry): {s}");
        p.step(Duration::from_secs(301)).await;
        let s = until(p.server.addr, &id, "SUCCEEDED", Duration::from_secs(30)).await;
        assert_eq!(s["counts"]["succeeded"], 9, "{s}");
        assert_eq!(s["counts"]["timedOut"], 1, "{s}");
        let r = gql(
            p.server.addr,
            r#"query($id: ID!) { rollout(id: $id) { twins(state: TIMED_OUT) { twin attempts failure reason } } }"#,
            json!({"id": id}),
        )
        .await;
        let t = &r["data"]["rollout"]["twins"][0];
        assert_eq!(t["twin"], "p0002", "{r}");
        assert_eq!(t["attempts"], 2, "retried once: {r}");
        assert_eq!(t["failure"], "TIMED_OUT");
        p.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_twin_belongs_to_one_active_rollout_at_a_time() {
        let p = plant(20).await;
        // No devices: the first rollout stays active.
        let first = start(
            p.server.addr,
            json!({"ids": ["p0001", "p0002"]}),
            json!({"twinTimeoutSeconds": 60}),
        )
        .await;
        let r = gql(p.server.addr, START, json!({"target": {"model": PUMP}})).await;
        assert_eq!(code(&r), "ROLLOUT_CONFLICT", "{r}");
        let message = r["errors"][0]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(&first) && message.contains("p000"),
            "{message}"
        );
        // Nothing was recorded for the refused one.
        let r = gql(p.server.addr, "{ rollouts { id } }", json!({})).await;
        assert_eq!(r["data"]["rollouts"], json!([{"id": first}]));
        // Bad requests are refused with a path.
        let r = gql(p.server.addr, START, json!({"target": {"ids": ["nope"]}})).await;
        assert_eq!(code(&r), "INVALID_ROLLOUT", "{r}");
        assert_eq!(r["errors"][0]["extensions"]["path"], "target.ids");
        let r = gql(
            p.server.addr,
            START,
            json!({"target": {"ids": ["p0005"]}, "plan": {"stages": [{"count": 0}]}}),
        )
        .await;
        assert_eq!(
            r["errors"][0]["extensions"]["path"], "plan.stages[0]",
            "{r}"
        );
        p.server.shutdown().await;
    }
}

/// A rollout survives `kill -9` of the server in its middle: after the
/// restart it resumes where its records stop, no twin applied twice and
/// none skipped, with `twingraph simulate` playing the devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_resumes_exactly_after_the_server_is_killed() {
    use std::net::SocketAddr;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    fn serve(dir: &std::path::Path) -> (Child, SocketAddr) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_twingraph"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(dir)
            .arg("--models")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dtdl"))
            .env("TWINGRAPH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start serve");
        let addr = crate::support::listening(&mut child).expect("serve exited before listening");
        (child, addr)
    }
    fn simulate(addr: SocketAddr) -> Child {
        Command::new(env!("CARGO_BIN_EXE_twingraph"))
            .args(["simulate", "--url", &format!("ws://{addr}/graphql/ws")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start simulate")
    }

    let dir = crate::store_conformance::fresh_dir();
    let (mut server, addr) = serve(&dir);
    let ops: Vec<Value> = (0..40)
        .map(|i| json!({"op": "createTwin", "id": run::pump(i), "model": PUMP}))
        .collect();
    let r = gql(
        addr,
        "mutation($ops: [JSON!]!) { batch(operations: $ops) { applied } }",
        json!({"ops": ops}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    run::configure(addr).await;
    let mut devices = simulate(addr);
    // Ten twins a second: the kill lands in the middle.
    let id = run::start(
        addr,
        json!({"model": PUMP}),
        json!({"rate": {"perMinute": 600}, "twinTimeoutSeconds": 600}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = run::status(addr, &id).await;
        if s["counts"]["pending"].as_u64().is_some_and(|p| p <= 30) {
            break;
        }
        assert!(Instant::now() < deadline, "not progressing: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().expect("kill -9");
    server.wait().expect("killed");
    let _ = devices.kill();
    let _ = devices.wait();

    let (mut server, addr) = serve(&dir);
    let s = run::status(addr, &id).await;
    assert_eq!(s["state"], "RUNNING", "{s}");
    let pending = s["counts"]["pending"].as_u64().expect("pending");
    assert!(pending > 0 && pending < 40, "{s}");
    let mut devices = simulate(addr);
    let s = run::until(addr, &id, "SUCCEEDED", Duration::from_secs(60)).await;
    assert_eq!(s["counts"]["succeeded"], 40, "{s}");
    // Every twin was applied exactly once.
    let r = gql(
        addr,
        r#"query($id: ID!) { rollout(id: $id) { twins(first: 100) { twin attempts state } } }"#,
        json!({"id": id}),
    )
    .await;
    let twins = r["data"]["rollout"]["twins"]
        .as_array()
        .expect("twins")
        .clone();
    assert_eq!(twins.len(), 40);
    assert!(twins.iter().all(|t| t["attempts"] == 1), "{r}");
    for i in [0, 17, 39] {
        let h = gql(
            addr,
            r#"query($id: ID!) { history(id: $id, first: 50) { nodes { kind } } }"#,
            json!({"id": run::pump(i)}),
        )
        .await;
        let assigned = h["data"]["history"]["nodes"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|e| e["kind"] == "configurationAssigned")
            .count();
        assert_eq!(assigned, 1, "{h}");
    }
    let _ = devices.kill();
    let _ = devices.wait();
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_appears_and_disappears() {
    use std::time::Duration;
    use twingraph::simulator::{Behaviour, Simulator};

    let p = run::plant(5).await;
    let devices = Simulator::start(p.store.clone(), Behaviour::default());
    let id = run::start(p.server.addr, json!({"model": PUMP}), json!({})).await;
    run::until(p.server.addr, &id, "SUCCEEDED", Duration::from_secs(30)).await;
    drop(devices);
    let drift = r#"query($c: String) { drift(configuration: $c) { twin path configuration version desired reported since seconds } }"#;
    let r = gql(p.server.addr, drift, json!({"c": "flow"})).await;
    assert_eq!(r["data"]["drift"], json!([]), "converged: {r}");

    let mut c = crate::live::Client::connect(p.server.addr, false).await;
    c.subscribe(
        "d",
        r#"subscription { driftChanged(configuration: "flow") { twin path drifting desired reported } }"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A device changes its value by itself.
    let set = |v: f64| {
        let addr = p.server.addr;
        async move {
            let r = gql(
                addr,
                r#"mutation($id: ID!, $patch: JSON!) { patchReported(id: $id, patch: $patch) { version } }"#,
                json!({"id": "p0003", "patch": {"flowSetpoint": v}}),
            )
            .await;
            assert!(r["errors"].is_null(), "{r}");
        }
    };
    set(7.0).await;
    let started = c.next_data("d").await;
    assert_eq!(
        started["data"]["driftChanged"],
        json!({"twin": "p0003", "path": "flowSetpoint", "drifting": true,
               "desired": 42.0, "reported": 7.0})
    );
    let r = gql(p.server.addr, drift, json!({"c": "flow"})).await;
    let d = &r["data"]["drift"];
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(d[0]["twin"], "p0003");
    assert_eq!(d[0]["configuration"], "flow");
    assert_eq!(d[0]["version"], 1);
    assert!(d[0]["seconds"].as_f64().is_some_and(|s| s >= 0.0));
    let r = gql(p.server.addr, drift, json!({"c": "other"})).await;
    assert_eq!(r["data"]["drift"], json!([]));
    // Back to the configured value: the drift ends.
    set(42.0).await;
    let ended = c.next_data("d").await;
    assert_eq!(ended["data"]["driftChanged"]["drifting"], false, "{ended}");
    let r = gql(p.server.addr, drift, json!({})).await;
    assert_eq!(r["data"]["drift"], json!([]), "{r}");
    p.server.shutdown().await;
}

/// Waves follow the hierarchy, never more than K twins of one parent in
/// flight, and parameters are filled per twin from its own values and from
/// the twin at the end of a relationship.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_come_from_each_twin_and_waves_respect_the_hierarchy() {
    use std::sync::Arc;
    use std::time::Duration;
    use twingraph::simulator::{Behaviour, Simulator};
    use twingraph::store::{GraphStore, Store, StoreConfig};

    let store: Arc<dyn GraphStore> = Arc::new(Store::in_memory(
        crate::support::sample_models(),
        StoreConfig::default(),
    ));
    store
        .apply(crate::support::three_levels(), "test")
        .await
        .expect("plant");
    let rollouts = twingraph::rollout::Rollouts::start(store.clone())
        .await
        .expect("rollouts");
    let s = crate::server::serve_rollouts(store.clone(), rollouts.clone()).await;
    gql(s.addr, CREATE, json!({"name": "tuned", "target": PUMP})).await;
    let v = gql(
        s.addr,
        PUBLISH,
        json!({"c": "tuned",
        "values": {"flowSetpoint": {"$param": "flow"}, "assetTag": {"$param": "air"}},
        "parameters": [
            {"name": "flow", "default": 1.0, "source": {"from": "property", "path": "flowRate"}},
            {"name": "air", "source": {"from": "related", "relationship": "dependsOn"}}
        ]}),
    )
    .await;
    assert!(v["errors"].is_null(), "{v}");
    let r = gql(
        s.addr,
        r#"mutation { startRollout(configuration: "tuned", version: 1,
                target: {under: "large"},
                plan: {orderByHierarchy: true, maxInFlightPerParent: 5, twinTimeoutSeconds: 60}) { id twinCount } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        r["data"]["startRollout"]["twinCount"], 60,
        "only pumps under `large`: {r}"
    );
    let id = r["data"]["startRollout"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // No device answers yet: five twins of `large` in flight, no more
    // (after passes that could have applied more).
    for _ in 0..3 {
        assert!(rollouts.next_pass(Duration::from_secs(30)).await, "no pass");
    }
    let st = run::status(s.addr, &id).await;
    assert_eq!(st["counts"]["applied"], 5, "{st}");
    assert_eq!(st["counts"]["pending"], 55, "{st}");
    let r = gql(
        s.addr,
        r#"query($id: ID!) { rollout(id: $id) { twins(state: APPLIED) { parent } } }"#,
        json!({"id": id}),
    )
    .await;
    assert!(
        r["data"]["rollout"]["twins"]
            .as_array()
            .expect("twins")
            .iter()
            .all(|t| t["parent"] == "large"),
        "{r}"
    );
    // Devices come online (reading their twins first).
    let _devices = Simulator::start(store.clone(), Behaviour::default());
    run::until(s.addr, &id, "SUCCEEDED", Duration::from_secs(30)).await;
    let r = gql(s.addr, r#"{ twin(id: "large-7") { desired } }"#, json!({})).await;
    assert_eq!(
        r["data"]["twin"]["desired"],
        json!({"flowSetpoint": 7, "assetTag": "large-7-air"}),
        "{r}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_pushed_to_subscribers() {
    let p = run::plant(3).await;
    let id = run::start(p.server.addr, json!({"ids": ["p0001"]}), json!({})).await;
    // Subscribe once the twin is applied: the next record is its outcome.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while run::status(p.server.addr, &id).await["counts"]["applied"] != 1 {
        assert!(std::time::Instant::now() < deadline, "never applied");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut c = crate::live::Client::connect(p.server.addr, false).await;
    c.subscribe(
        "p",
        &format!(
            r#"subscription {{ rolloutProgress(id: "{id}") {{ kind state counts {{ succeeded }} twins {{ twin state }} }} }}"#
        ),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // The device acknowledges the desired version it was given.
    let r = gql(
        p.server.addr,
        r#"{ twin(id: "p0001") { metadata } }"#,
        json!({}),
    )
    .await;
    let version = r["data"]["twin"]["metadata"]["flowSetpoint"]["desired"]["version"].clone();
    let r = gql(
        p.server.addr,
        r#"mutation($patch: JSON!) { patchReported(id: "p0001", patch: $patch) { version } }"#,
        json!({"patch": {"flowSetpoint": {"value": 42.0, "ac": 200, "av": version}}}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let settled = c.next_data("p").await;
    assert_eq!(
        settled["data"]["rolloutProgress"],
        json!({"kind": "rolloutTwinsSettled", "state": "RUNNING", "counts": {"succeeded": 1},
               "twins": [{"twin": "p0001", "state": "SUCCEEDED"}]}),
        "{settled}"
    );
    let done = c.next_data("p").await;
    assert_eq!(
        done["data"]["rolloutProgress"]["kind"], "rolloutChanged",
        "{done}"
    );
    assert_eq!(
        done["data"]["rolloutProgress"]["state"], "SUCCEEDED",
        "{done}"
    );
    p.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remediation_reapplies_the_values_to_drifted_twins() {
    use std::time::{Duration, Instant};
    use twingraph::simulator::{Behaviour, Simulator};

    let p = run::plant(3).await;
    let _devices = Simulator::start(p.store.clone(), Behaviour::default());
    let id = run::start(p.server.addr, json!({"model": PUMP}), json!({})).await;
    run::until(p.server.addr, &id, "SUCCEEDED", Duration::from_secs(30)).await;
    let r = gql(
        p.server.addr,
        r#"mutation { setConfigurationRemediation(configuration: "flow", perMinute: 600) { remediationPerMinute } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        r["data"]["setConfigurationRemediation"]["remediationPerMinute"], 600.0,
        "{r}"
    );
    // The device drifts (a local override, with no acknowledgement).
    let r = gql(
        p.server.addr,
        r#"mutation { patchReported(id: "p0002", patch: {flowSetpoint: 5.0}) { version } }"#,
        json!({}),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    // Remediation writes the value again; the device applies it; the drift ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = gql(
            p.server.addr,
            r#"{ drift { twin } twin(id: "p0002") { reported } history(id: "p0002", first: 50) { nodes { kind actor } } }"#,
            json!({}),
        )
        .await;
        let remediated = r["data"]["history"]["nodes"]
            .as_array()
            .expect("history")
            .iter()
            .any(|e| e["kind"] == "configurationAssigned" && e["actor"] == "remediation");
        if remediated
            && r["data"]["drift"] == json!([])
            && r["data"]["twin"]["reported"]["flowSetpoint"] == 42.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "not remediated: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Turned off, and unknown configurations are refused.
    let r = gql(
        p.server.addr,
        r#"mutation { setConfigurationRemediation(configuration: "flow") { remediationPerMinute } }"#,
        json!({}),
    )
    .await;
    assert!(
        r["data"]["setConfigurationRemediation"]["remediationPerMinute"].is_null(),
        "{r}"
    );
    let r = gql(
        p.server.addr,
        r#"mutation { setConfigurationRemediation(configuration: "nope", perMinute: 1) { name } }"#,
        json!({}),
    )
    .await;
    assert_eq!(code(&r), "CONFIGURATION_NOT_FOUND", "{r}");
    p.server.shutdown().await;
}

/// Two services over one store, as replicas over Neo4j: the one without a
/// scheduler takes the request and applies nothing; the scheduling one
/// drives the rollout it sees in the records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_scheduler_and_never_double_book() {
    use std::sync::Arc;
    use twingraph::store::{GraphStore, Store, StoreConfig};
    let store: Arc<dyn GraphStore> = Arc::new(Store::in_memory(
        crate::support::sample_models(),
        StoreConfig::default(),
    ));
    two_replicas(store.clone(), store).await;
}

/// Two servers' rollout services over one store (`a` and `b`: each
/// server's handle on it), both allowed to schedule: requests taken by
/// both at once are decided as if one after the other; exactly one
/// server schedules; when it stops, the other takes over and the rollout
/// ends with every twin applied exactly once.
pub(crate) async fn two_replicas(
    a: std::sync::Arc<dyn twingraph::store::GraphStore>,
    b: std::sync::Arc<dyn twingraph::store::GraphStore>,
) {
    use std::time::{Duration, Instant};
    use twingraph::rollout::config::{ConfigurationSpec, VersionSpec};
    use twingraph::rollout::plan::{Plan, Rate, RolloutSpec, Target};
    use twingraph::rollout::{Options, RolloutError, Rollouts};
    use twingraph::simulator::{Behaviour, Simulator};

    async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !done() {
            assert!(Instant::now() < deadline, "not within {within:?}: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    run::load(&*a, 40).await;
    let options = Options {
        schedule: true,
        lease_ttl: Duration::from_millis(900),
        ..Options::default()
    };
    let ra = Rollouts::start_with(a.clone(), options.clone())
        .await
        .expect("a");
    until("a schedules", Duration::from_secs(5), || ra.schedules()).await;
    let rb = Rollouts::start_with(b.clone(), options).await.expect("b");

    // The same configuration created on both at once: once.
    let spec = || ConfigurationSpec {
        name: "flow".into(),
        target: PUMP.into(),
        priority: 0,
        description: None,
    };
    let (x, y) = tokio::join!(
        ra.create_configuration(spec(), "t"),
        rb.create_configuration(spec(), "t")
    );
    assert!(
        matches!(
            (&x, &y),
            (Ok(()), Err(RolloutError::ConfigurationExists(_)))
                | (Err(RolloutError::ConfigurationExists(_)), Ok(()))
        ),
        "{x:?} {y:?}"
    );
    // Versions published on both at once: numbered without gaps or twins.
    let version = |v: f64| VersionSpec {
        number: 0,
        values: json!({"flowSetpoint": v}),
        parameters: Vec::new(),
        base: None,
        description: None,
    };
    let on_a = (0..4).map(|i| ra.publish_version("flow", version(40.0 + f64::from(i)), "t"));
    let on_b = (0..4).map(|i| rb.publish_version("flow", version(50.0 + f64::from(i)), "t"));
    let (na, nb) = tokio::join!(
        futures_util::future::join_all(on_a),
        futures_util::future::join_all(on_b)
    );
    let mut numbers: Vec<u32> = na
        .into_iter()
        .chain(nb)
        .map(|n| n.expect("published"))
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<u32>>());
    until("b folded every version", Duration::from_secs(5), || {
        rb.state()
            .configurations
            .get("flow")
            .is_some_and(|c| c.version(8).is_some())
    })
    .await;

    // Overlapping rollouts started on both at once: one, the other refused.
    let rollout = |id: &str, from: usize, to: usize| RolloutSpec {
        id: id.into(),
        configuration: "flow".into(),
        version: 1,
        target: Target {
            ids: (from..to).map(run::pump).collect(),
            ..Target::default()
        },
        parameters: Default::default(),
        plan: Plan {
            rate: Some(Rate {
                per_minute: 900.0,
                growth_factor: None,
                grow_every: None,
            }),
            ..Plan::default()
        },
        description: None,
    };
    let (x, y) = tokio::join!(
        ra.start_rollout(rollout("r-a", 0, 30), "t"),
        rb.start_rollout(rollout("r-b", 20, 40), "t")
    );
    let (winner, refused) = match (x, y) {
        (Ok(w), Err(e)) | (Err(e), Ok(w)) => (w, e),
        other => panic!("exactly one may start: {other:?}"),
    };
    match &refused {
        RolloutError::Conflict { rollout, .. } => assert_eq!(rollout, &winner),
        e => panic!("a conflict naming {winner}: {e:?}"),
    }

    // Only a schedules; it stops midway and b takes over.
    let _devices = Simulator::start(a.clone(), Behaviour::default());
    until("a applies some", Duration::from_secs(20), || {
        ra.state()
            .runs
            .get(&winner)
            .is_some_and(|r| r.counts.succeeded >= 3)
    })
    .await;
    assert!(!rb.schedules(), "one scheduler at a time");
    ra.stop().await;
    let stopped = Instant::now();
    until("b takes over", Duration::from_secs(5), || rb.schedules()).await;
    let took = stopped.elapsed();
    until("the rollout ends", Duration::from_secs(30), || {
        rb.state()
            .runs
            .get(&winner)
            .is_some_and(|r| !r.state.is_active())
    })
    .await;
    {
        let state = rb.state();
        let r = state.runs.get(&winner).expect("winner");
        assert_eq!(
            r.state,
            twingraph::rollout::run::RolloutState::Succeeded,
            "{:?}",
            r.reason
        );
        assert_eq!(r.counts.succeeded, r.start.twins.len());
        for (twin, run) in r.start.twins.iter().zip(&r.runs) {
            assert_eq!(run.attempts, 1, "{twin} applied once");
        }
    }
    let n = if winner == "r-a" { 0..30 } else { 20..40 };
    for i in n {
        let history = b
            .twin_events(&run::pump(i), None, None)
            .await
            .expect("history");
        let assigned = history
            .iter()
            .filter(|e| {
                matches!(
                    e.change,
                    twingraph::twin::Change::ConfigurationAssigned { .. }
                )
            })
            .count();
        assert_eq!(assigned, 1, "{}: one assignment", run::pump(i));
    }
    assert!(
        took < Duration::from_secs(2),
        "the lease was handed back at stop: {took:?}"
    );
    rb.stop().await;
}
