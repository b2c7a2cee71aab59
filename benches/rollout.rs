//! Rollout benchmark (`cargo bench --bench rollout`), on the embedded
//! store (in `target/bench-rollout`, fresh each run) holding
//! `TWINGRAPH_BENCH_TWINS` pumps (default 100,000):
//!
//! - `ungated`: one rollout of a configuration version to every pump with
//!   no stage gating: the time until every desired write is committed
//!   (durably: each store batch is one redb commit), and the time from the
//!   `startRollout` call until the first progress record reaches a
//!   `rolloutProgress` subscriber (the service's progress feed the
//!   subscription reads);
//! - `staged`: a 3-stage rollout (1%, 30%, the rest) of a new version to
//!   every pump with simulated devices acknowledging at once: the time
//!   until it SUCCEEDED.
//!
//! Each phase runs `TWINGRAPH_BENCH_RUNS` times (default 3) on new
//! versions; medians are reported.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use twingraph::rollout::Rollouts;
use twingraph::rollout::config::{ConfigurationSpec, VersionSpec};
use twingraph::rollout::plan::{Plan, RolloutSpec, Stage, Target};
use twingraph::rollout::run::RolloutState;
use twingraph::simulator::{Behaviour, Simulator};
use twingraph::store::{GraphStore, StoreConfig, embedded};
use twingraph::twin::{Batch, Op};

#[path = "support/http.rs"]
mod http;
use http::{env_usize, models};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PUMP: &str = "dtmi:twingraph:isa95:Pump;1";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn spec(id: &str, version: u32, stages: Vec<Stage>) -> RolloutSpec {
    RolloutSpec {
        id: id.to_owned(),
        configuration: "flow".into(),
        version,
        target: Target {
            model: Some(PUMP.into()),
            ..Target::default()
        },
        parameters: Default::default(),
        plan: Plan {
            stages,
            twin_timeout_seconds: 3600.0,
            ..Plan::default()
        },
        description: None,
    }
}

async fn publish(r: &Rollouts, value: f64) -> u32 {
    r.publish_version(
        "flow",
        VersionSpec {
            number: 0,
            values: json!({"flowSetpoint": value}),
            parameters: Vec::new(),
            base: None,
            description: None,
        },
        "bench",
    )
    .await
    .expect("publish")
}

/// Waits until `done` holds for rollout `id`, checking often.
async fn until(r: &Rollouts, id: &str, done: impl Fn(&twingraph::rollout::run::Rollout) -> bool) {
    loop {
        if r.state().runs.get(id).is_some_and(&done) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let twins = env_usize("TWINGRAPH_BENCH_TWINS", 100_000);
    let runs = env_usize("TWINGRAPH_BENCH_RUNS", 3);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-rollout");
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = Arc::new(embedded::open(&dir, models(), StoreConfig::default()).expect("store"));
        let dyn_store: Arc<dyn GraphStore> = store.clone();
        let t = Instant::now();
        let ops: Vec<Op> = (0..twins)
            .map(|i| Op::CreateTwin {
                id: format!("pump-{i:06}"),
                model: PUMP.into(),
                desired: Some(json!({"flowSetpoint": 1.0})),
                reported: None,
            })
            .collect();
        for chunk in ops.chunks(2000) {
            dyn_store
                .apply(Batch { ops: chunk.to_vec() }, "bench")
                .await
                .expect("pumps");
        }
        println!("{twins} pumps loaded in {:.1} s", t.elapsed().as_secs_f64());
        let r = Rollouts::start(dyn_store.clone()).await.expect("rollouts");
        r.create_configuration(
            ConfigurationSpec {
                name: "flow".into(),
                target: PUMP.into(),
                priority: 0,
                description: None,
            },
            "bench",
        )
        .await
        .expect("configuration");

        // Ungated: every desired write committed.
        let (mut applied, mut first) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let version = publish(&r, 10.0 + run as f64).await;
            let id = format!("ungated-{run}");
            let mut progress = r.progress();
            let t = Instant::now();
            let watch = {
                let id = id.clone();
                tokio::spawn(async move {
                    loop {
                        match progress.recv().await {
                            Ok(p) if p.rollout == id => return t.elapsed(),
                            Ok(_) => {}
                            Err(e) => panic!("progress feed: {e}"),
                        }
                    }
                })
            };
            r.start_rollout(spec(&id, version, Vec::new()), "bench")
                .await
                .expect("start");
            until(&r, &id, |x| x.counts.pending == 0).await;
            let all = t.elapsed();
            let f = watch.await.expect("first progress");
            println!(
                "ungated run {run}: {twins} desired writes committed in {:.2} s ({:.0} twins/s); first progress record after {:.1} ms",
                all.as_secs_f64(),
                twins as f64 / all.as_secs_f64(),
                f.as_secs_f64() * 1e3
            );
            applied.push(all);
            first.push(f);
            // Free the twins for the next run.
            r.cancel_rollout(&id, "bench").await.expect("cancel");
        }

        // Staged, with devices acknowledging at once.
        let devices = Simulator::start(dyn_store.clone(), Behaviour::default());
        let stage = |percent: Option<f64>| Stage {
            count: None,
            percent,
            success_threshold: 100.0,
            bake_seconds: 0.0,
        };
        let mut staged = Vec::new();
        for run in 0..runs {
            let version = publish(&r, 100.0 + run as f64).await;
            let id = format!("staged-{run}");
            let t = Instant::now();
            r.start_rollout(
                spec(&id, version, vec![stage(Some(1.0)), stage(Some(30.0)), stage(None)]),
                "bench",
            )
            .await
            .expect("start");
            until(&r, &id, |x| !x.state.is_active()).await;
            let took = t.elapsed();
            let s = r.state().runs.get(&id).map(|x| (x.state, x.counts.clone()));
            assert!(
                matches!(s, Some((RolloutState::Succeeded, _))),
                "staged rollout ended {s:?}"
            );
            println!(
                "staged run {run}: 3 stages over {twins} twins, devices acknowledging, SUCCEEDED in {:.2} s",
                took.as_secs_f64()
            );
            staged.push(took);
        }
        drop(devices);
        println!(
            "medians: ungated {:.2} s ({:.0} twins/s, target >= 20,000), first progress {:.1} ms (target <= 100), staged {:.2} s (target <= 30)",
            median(applied.clone()).as_secs_f64(),
            twins as f64 / median(applied).as_secs_f64(),
            median(first).as_secs_f64() * 1e3,
            median(staged).as_secs_f64()
        );
        r.stop().await;
    });
}
