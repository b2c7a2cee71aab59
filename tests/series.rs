//! Time series: numeric reported values kept per twin and field at source
//! time, derived from the log, answered raw or downsampled through the
//! real server, and kept across restarts of the embedded store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use twingraph::series::{Aggregate, Backend, Series, SeriesConfig, Window};
use twingraph::store::{GraphStore, Store, StoreConfig, embedded};
use twingraph::twin::{Op, parse_time};

use crate::server::{gql, start_with_series};
use crate::store_conformance::fresh_dir;
use crate::store_suite::{PUMP, create, must};
use crate::support::sample_models;

const T0: &str = "2026-12-01T10:00:00Z";

fn at(seconds: i64) -> String {
    twingraph::twin::format_time(parse_time(T0).expect("T0") + seconds * 1_000_000)
}

const SERIES: &str = r#"query($field: String!, $from: DateTime!, $to: DateTime!, $step: String, $aggregate: SeriesAggregate) {
  series(twin: "p1", field: $field, from: $from, to: $to, step: $step, aggregate: $aggregate) { time value }
}"#;

/// Asks `query` until `done` holds of its answer (the follower folds the
/// log as it commits, a moment after the mutation answered).
async fn until(
    addr: std::net::SocketAddr,
    query: &str,
    vars: Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = gql(addr, query, vars.clone()).await;
        if done(&v) || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reported_values_become_a_series_answered_raw_and_downsampled() {
    let s = start_with_series().await;
    let v = gql(
        s.addr,
        r#"mutation { createTwin(id: "p1", model: "dtmi:twingraph:isa95:Pump;1") { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["createTwin"]["id"], "p1", "{v}");
    // Ten reports, 15 s apart (source time).
    for i in 0..10i64 {
        let v = gql(
            s.addr,
            r#"mutation($t: DateTime, $p: JSON!) { patchReported(id: "p1", patch: $p, sourceTime: $t) { version } }"#,
            json!({"t": at(i * 15), "p": {"flowRate": i as f64, "power": 100.0 + i as f64, "drive": {"current": 10.0 + i as f64}}}),
        )
        .await;
        assert!(v["errors"].is_null(), "{v}");
    }
    let raw = until(
        s.addr,
        SERIES,
        json!({"field": "flowRate", "from": at(0), "to": at(3600)}),
        |v| {
            v["data"]["series"]
                .as_array()
                .is_some_and(|a| a.len() == 10)
        },
    )
    .await;
    let points = raw["data"]["series"].as_array().expect("points");
    assert_eq!(points.len(), 10, "{raw}");
    assert_eq!(points[0], json!({"time": at(0), "value": 0.0}));
    assert_eq!(points[9], json!({"time": at(135), "value": 9.0}));
    // One-minute buckets: 0-45 s, 60-105 s, 120-135 s.
    for (aggregate, want) in [
        ("MEAN", [1.5, 5.5, 8.5]),
        ("MAX", [3.0, 7.0, 9.0]),
        ("MIN", [0.0, 4.0, 8.0]),
        ("COUNT", [4.0, 4.0, 2.0]),
        ("LAST", [3.0, 7.0, 9.0]),
    ] {
        let v = gql(
            s.addr,
            SERIES,
            json!({"field": "flowRate", "from": at(0), "to": at(3600), "step": "1m", "aggregate": aggregate}),
        )
        .await;
        let got: Vec<(String, f64)> = v["data"]["series"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|p| {
                (
                    p["time"].as_str().expect("time").to_owned(),
                    p["value"].as_f64().expect("value"),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![(at(0), want[0]), (at(60), want[1]), (at(120), want[2])],
            "{aggregate}"
        );
    }
    // The typed field of the twin's type answers the same.
    let v = gql(
        s.addr,
        r#"query($from: DateTime!, $to: DateTime!) {
          pump(id: "p1") { flowRateSeries(from: $from, to: $to, step: "1m", aggregate: MAX) { time value } }
          pumps(first: 5) { nodes { id powerSeries(from: $from, to: $to, step: "1h") { value } } }
          component: pump(id: "p1") { drive { currentSeries(from: $from, to: $to, step: "1h", aggregate: MAX) { value } } }
          generic: series(twin: "p1", field: "drive.current", from: $from, to: $to, step: "1h", aggregate: MIN) { value }
        }"#,
        json!({"from": at(0), "to": at(3600)}),
    )
    .await;
    assert_eq!(
        v["data"]["pump"]["flowRateSeries"],
        json!([{"time": at(0), "value": 3.0}, {"time": at(60), "value": 7.0}, {"time": at(120), "value": 9.0}]),
        "{v}"
    );
    assert_eq!(
        v["data"]["pumps"]["nodes"],
        json!([{"id": "p1", "powerSeries": [{"value": 104.5}]}]),
        "{v}"
    );
    // A Component's fields have theirs (`component.field` in `series`).
    assert_eq!(
        v["data"]["component"]["drive"]["currentSeries"],
        json!([{"value": 19.0}]),
        "{v}"
    );
    assert_eq!(v["data"]["generic"], json!([{"value": 10.0}]), "{v}");
    // The range is half-open and read at source time.
    let v = gql(
        s.addr,
        SERIES,
        json!({"field": "power", "from": at(15), "to": at(45)}),
    )
    .await;
    assert_eq!(
        v["data"]["series"],
        json!([{"time": at(15), "value": 101.0}, {"time": at(30), "value": 102.0}]),
        "{v}"
    );
    // Bad input: clear errors with stable codes, nothing answered.
    for (vars, reason, says) in [
        (
            json!({"field": "flowRat", "from": at(0), "to": at(60)}),
            "invalid_argument",
            "no numeric telemetry or property `flowRat`",
        ),
        (
            json!({"field": "name", "from": at(0), "to": at(60)}),
            "invalid_argument",
            "`name`",
        ),
        (
            json!({"field": "flowRate", "from": at(60), "to": at(0)}),
            "invalid_argument",
            "later than `from`",
        ),
        (
            json!({"field": "flowRate", "from": at(0), "to": at(60), "step": "1w"}),
            "invalid_argument",
            "step \"1w\"",
        ),
        (
            json!({"field": "flowRate", "from": at(0), "to": at(86_400 * 30), "step": "1s"}),
            "invalid_argument",
            "buckets asked",
        ),
    ] {
        let v = gql(s.addr, SERIES, vars).await;
        assert_eq!(v["errors"][0]["extensions"]["reason"], reason, "{v}");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .expect("message")
                .contains(says),
            "{v}"
        );
    }
    let v = gql(
        s.addr,
        r#"{ series(twin: "nope", field: "flowRate", from: "2026-12-01T00:00:00Z", to: "2026-12-02T00:00:00Z") { time } }"#,
        json!({}),
    )
    .await;
    assert_eq!(
        v["errors"][0]["extensions"]["reason"], "twin_not_found",
        "{v}"
    );
    grafana_dashboard_queries_answer_as_infinity_reads_them(s.addr).await;
    s.shutdown().await;
}

/// Every query of the committed Grafana dashboard (docs/grafana), with
/// its variables replaced as Grafana does (`${__from:date:iso}` is ISO 8601
/// with milliseconds, `${__interval}` like `1m`), answers at the target's
/// `root_selector` a list whose items have the columns' selectors, time
/// as a timestamp and the value as a number: what the Infinity data
/// source (backend parser) turns into a time series.
async fn grafana_dashboard_queries_answer_as_infinity_reads_them(addr: std::net::SocketAddr) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/demo-plant.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let mut targets = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["type"], "graphql");
            assert_eq!(target["url_options"]["method"], "POST");
            let query = target["url_options"]["body_graphql_query"]
                .as_str()
                .expect("query")
                .replace("${pump}", "p1")
                .replace("${__from:date:iso}", "2026-12-01T10:00:00.000Z")
                .replace("${__to:date:iso}", "2026-12-01T11:00:00.000Z")
                .replace("${__interval}", "1m");
            let v = gql(addr, &query, json!({})).await;
            assert!(v["errors"].is_null(), "{query}: {v}");
            let mut at = &v;
            for key in target["root_selector"].as_str().expect("root").split('.') {
                at = &at[key];
            }
            let rows = at.as_array().unwrap_or_else(|| panic!("{query}: {v}"));
            assert_eq!(rows.len(), 3, "three minutes of reports: {v}");
            for row in rows {
                for column in target["columns"].as_array().expect("columns") {
                    let cell = &row[column["selector"].as_str().expect("selector")];
                    match column["type"].as_str() {
                        Some("timestamp") => {
                            assert!(parse_time(cell.as_str().expect("time")).is_some(), "{cell}")
                        }
                        Some("number") => assert!(cell.is_f64(), "{cell}"),
                        other => panic!("column type {other:?}"),
                    }
                }
            }
            targets += 1;
        }
    }
    assert_eq!(targets, 4, "every panel's queries were asked");
}

/// Reported updates of `p` at `t0 + i` seconds, `n` of them.
async fn report(store: &Store, n: i64, offset: i64) {
    let t0 = parse_time(T0).expect("T0");
    for i in 0..n {
        let op = Op::PatchReported {
            id: "p".into(),
            patch: json!({"flowRate": (offset + i) as f64 / 4.0}),
            expected_version: None,
            source_time: Some(t0 + (offset + i) * 1_000_000),
        };
        must(store, vec![op]).await;
    }
}

async fn points(series: &Series, n: usize) -> Vec<f64> {
    let t0 = parse_time(T0).expect("T0");
    let window = Window {
        from: t0,
        to: t0 + 86_400_000_000,
        step: None,
        aggregate: Aggregate::Mean,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<f64> = series
            .points("p", "flowRate", window)
            .await
            .expect("points")
            .into_iter()
            .map(|p| p.value)
            .collect();
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Series of the embedded store survive a clean restart (blocks written on
/// the way out) and a follower that stopped before writing anything (its
/// mark is behind: the next one reads the log again from there).
#[tokio::test]
async fn series_of_the_embedded_store_survive_restarts_and_a_lost_head() {
    let dir = fresh_dir();
    let open = || embedded::open(&dir, sample_models(), StoreConfig::default()).expect("open");
    let expected = |n: i64| (0..n).map(|i| i as f64 / 4.0).collect::<Vec<f64>>();
    let config = SeriesConfig {
        // Blocks of one minute: the reports span several.
        bucket: Duration::from_secs(60),
        flush_every: Duration::from_secs(3600),
        ..SeriesConfig::default()
    };
    {
        let store = Arc::new(open());
        must(&*store, vec![create("p", PUMP)]).await;
        let series = Arc::new(
            Series::new(Backend::open(&dir).expect("series file"), config.clone()).expect("series"),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let follower = tokio::spawn(series.clone().follow(
            store.clone() as Arc<dyn GraphStore>,
            async {
                let _ = stopped.await;
            },
        ));
        report(&store, 200, 0).await;
        assert_eq!(
            points(&series, 200).await,
            expected(200),
            "answered from the head"
        );
        let _ = stop.send(());
        follower.await.expect("follower");
        store.close();
    }
    {
        // Reopened: the blocks have every point, nothing is in the head.
        let store = Arc::new(open());
        let backend = Backend::open(&dir).expect("series file");
        let (blocks, bytes) = backend.size().expect("size");
        assert!(blocks >= 4, "200 s in minute blocks: {blocks}");
        assert!(bytes < 200 * 16, "compressed: {bytes} bytes for 200 points");
        let series = Arc::new(Series::new(backend, config.clone()).expect("series"));
        assert_eq!(series.seq(), store.last_seq(), "the mark is the log's end");
        assert_eq!(points(&series, 200).await, expected(200), "from blocks");
        // More reports, and the follower stops without writing them.
        let follower = tokio::spawn(
            series
                .clone()
                .follow(store.clone() as Arc<dyn GraphStore>, std::future::pending()),
        );
        report(&store, 50, 200).await;
        assert_eq!(points(&series, 250).await, expected(250));
        follower.abort();
        let _ = follower.await;
        store.close();
    }
    let store = Arc::new(open());
    let series =
        Arc::new(Series::new(Backend::open(&dir).expect("series file"), config).expect("series"));
    assert!(
        series.seq() < store.last_seq(),
        "the lost head's events are after the mark"
    );
    assert_eq!(
        points(&series, 0).await.len(),
        200,
        "before the log is read again"
    );
    let follower = tokio::spawn(
        series
            .clone()
            .follow(store.clone() as Arc<dyn GraphStore>, std::future::pending()),
    );
    assert_eq!(
        points(&series, 250).await,
        expected(250),
        "read again from the log"
    );
    follower.abort();
    store.close();
}

const FORECAST: &str = r#"query($from: DateTime!, $to: DateTime!, $step: String, $horizon: Int!, $twin: ID!) {
  forecast(twin: $twin, field: "flowRate", from: $from, to: $to, step: $step, horizon: $horizon) { time value lower upper }
}"#;

/// A forecast of a rising flow rate through the real server: the next
/// steps continue the trend inside widening bands, and `alarmOutlook` says
/// when the pump's limit rules would be met (ABOVE within the horizon,
/// BELOW never; other rules and other models' rules are not listed); bad
/// requests are refused with their codes.
#[tokio::test]
async fn forecasts_continue_a_trend_and_tell_when_a_limit_is_reached() {
    let s = start_with_series().await;
    for (id, model) in [("p1", PUMP), ("m1", "dtmi:twingraph:isa95:Motor;1")] {
        let v = gql(
            s.addr,
            "mutation($id: ID!, $m: String!) { createTwin(id: $id, model: $m) { id } }",
            json!({"id": id, "m": model}),
        )
        .await;
        assert!(v["errors"].is_null(), "{v}");
    }
    // An hour of one-minute reports rising 0.5 a minute, with a wobble.
    for i in 0..60i64 {
        let v = 10.0 + 0.5 * i as f64 + 0.05 * ((i * 7) % 5 - 2) as f64;
        let r = gql(
            s.addr,
            r#"mutation($t: DateTime, $p: JSON!) { patchReported(id: "p1", patch: $p, sourceTime: $t) { version } }"#,
            json!({"t": at(i * 60), "p": {"flowRate": v}}),
        )
        .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let vars = json!({"twin": "p1", "from": at(0), "to": at(3600), "step": "1m", "horizon": 10});
    let v = until(s.addr, FORECAST, vars.clone(), |v| {
        v["data"]["forecast"]
            .as_array()
            .is_some_and(|a| a.len() == 10)
    })
    .await;
    let points = v["data"]["forecast"].as_array().expect("points");
    assert_eq!(points.len(), 10, "{v}");
    assert_eq!(
        points[0]["time"],
        at(3600),
        "the step after the last bucket"
    );
    assert_eq!(points[9]["time"], at(3600 + 9 * 60));
    let value = |i: usize, k: &str| points[i][k].as_f64().expect("a number");
    assert!((value(0, "value") - 40.0).abs() < 1.0, "{v}");
    assert!((value(9, "value") - 44.5).abs() < 1.5, "{v}");
    for i in 0..10 {
        assert!(value(i, "lower") <= value(i, "value") && value(i, "value") <= value(i, "upper"));
    }
    assert!(
        value(9, "upper") - value(9, "lower") >= value(0, "upper") - value(0, "lower"),
        "bands widen: {v}"
    );

    // Limit rules: ABOVE 44 is met 9 minutes after the data ends; BELOW 5
    // is not; EQUALS and the motor's rule are not limits of the pump.
    for (name, model, condition) in [
        ("flow-high", PUMP, json!({"field": "flowRate", "above": 44})),
        ("flow-low", PUMP, json!({"field": "flowRate", "below": 5})),
        (
            "faulted",
            PUMP,
            json!({"field": "runState", "equals": "fault"}),
        ),
        (
            "motor-hot",
            "dtmi:twingraph:isa95:Motor;1",
            json!({"field": "vibration", "above": 1}),
        ),
    ] {
        let r = gql(
            s.addr,
            "mutation($n: String!, $r: AlarmRuleInput!) { createAlarmRule(name: $n, rule: $r) { name } }",
            json!({"n": name, "r": {"model": model, "condition": condition, "severity": "HIGH", "message": "m"}}),
        )
        .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let outlook = gql(
        s.addr,
        r#"query($from: DateTime!, $to: DateTime!) {
          alarmOutlook(twin: "p1", from: $from, to: $to, step: "1m", horizon: 60) {
            ruleName field severity reachesAt inSeconds earliestAt earliestInSeconds condition { type limit } twin { id }
          } }"#,
        json!({"from": at(0), "to": at(3600)}),
    )
    .await;
    let rows = outlook["data"]["alarmOutlook"]
        .as_array()
        .unwrap_or_else(|| panic!("{outlook}"));
    let names: Vec<&str> = rows.iter().filter_map(|r| r["ruleName"].as_str()).collect();
    assert_eq!(names, ["flow-high", "flow-low"], "{outlook}");
    let high = &rows[0];
    let seconds = high["inSeconds"].as_f64().expect("reached");
    assert!(
        (420.0..=660.0).contains(&seconds),
        "about 9 minutes: {high}"
    );
    assert!(
        high["earliestInSeconds"].as_f64().expect("earliest") <= seconds,
        "{high}"
    );
    assert_eq!(high["twin"]["id"], "p1");
    assert_eq!(high["condition"]["limit"], 44.0);
    assert!(rows[1]["reachesAt"].is_null(), "never below 5: {}", rows[1]);

    // Bad requests.
    for (vars, reason) in [
        (
            json!({"twin": "p1", "from": at(0), "to": at(3600), "horizon": 10}),
            "invalid_argument",
        ),
        (
            json!({"twin": "p1", "from": at(0), "to": at(3600), "step": "1m", "horizon": 0}),
            "invalid_argument",
        ),
        (
            json!({"twin": "p1", "from": at(0), "to": at(3600), "step": "1m", "horizon": 5000}),
            "invalid_argument",
        ),
        (
            json!({"twin": "p1", "from": at(0), "to": at(300), "step": "1m", "horizon": 5}),
            "invalid_argument",
        ),
        (
            json!({"twin": "p1", "from": at(7200), "to": at(9000), "step": "1m", "horizon": 5}),
            "invalid_argument",
        ),
        (
            json!({"twin": "nope", "from": at(0), "to": at(3600), "step": "1m", "horizon": 5}),
            "twin_not_found",
        ),
    ] {
        let v = gql(s.addr, FORECAST, vars.clone()).await;
        assert_eq!(
            v["errors"][0]["extensions"]["reason"], reason,
            "{vars}: {v}"
        );
    }
    s.shutdown().await;
}

/// Roll-ups outlive the raw points: with raw blocks kept two hours, six
/// hours of a pump's flow rate still answer hourly means (from the hour
/// roll-ups) and ten-minute maxima (from the minute roll-ups), exactly as
/// the raw points did; raw and sub-minute answers have only what is left;
/// a late point in an hour whose raw blocks are gone is folded into its
/// roll-ups.
#[tokio::test]
async fn roll_ups_answer_after_the_raw_points_are_gone() {
    let store: Arc<dyn GraphStore> =
        Arc::new(Store::in_memory(sample_models(), StoreConfig::default()));
    must(store.as_ref(), vec![create("p", PUMP), create("q", PUMP)]).await;
    let t0 = parse_time(T0).expect("T0");
    let value = |i: i64| 10.0 + (i % 6) as f64 + (i / 6) as f64 * 0.5;
    for i in 0..36i64 {
        let op = Op::PatchReported {
            id: "p".into(),
            patch: json!({"flowRate": value(i)}),
            expected_version: None,
            source_time: Some(t0 + i * 600_000_000),
        };
        store
            .apply(twingraph::twin::Batch { ops: vec![op] }, "test")
            .await
            .expect("report");
    }
    // q reports once, at 10:01.
    let q = |at: i64, v: f64| Op::PatchReported {
        id: "q".into(),
        patch: json!({"flowRate": v}),
        expected_version: None,
        source_time: Some(t0 + at * 1_000_000),
    };
    store
        .apply(
            twingraph::twin::Batch {
                ops: vec![q(60, 1.0)],
            },
            "test",
        )
        .await
        .expect("report");
    let series = Arc::new(
        Series::new(
            Backend::memory(),
            SeriesConfig {
                flush_every: Duration::from_millis(50),
                retention: Some(Duration::from_secs(2 * 3600)),
                ..SeriesConfig::default()
            },
        )
        .expect("series"),
    );
    let stop = Arc::new(tokio::sync::Notify::new());
    let task = {
        let (series, stop) = (series.clone(), stop.clone());
        tokio::spawn(series.follow(store.clone(), async move { stop.notified().await }))
    };
    // Raw blocks before 13:00 go (two hours back from the newest, 15:50).
    let raw = Window {
        from: t0,
        to: t0 + 6 * 3_600_000_000,
        step: None,
        aggregate: Aggregate::Mean,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = series
            .points("p", "flowRate", raw)
            .await
            .expect("raw")
            .len();
        if n == 18 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "raw points never pruned: {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hourly = series
        .points(
            "p",
            "flowRate",
            Window {
                step: Some(3_600_000_000),
                ..raw
            },
        )
        .await
        .expect("hourly");
    let want: Vec<(i64, f64)> = (0..6)
        .map(|h| (t0 + h * 3_600_000_000, 12.5 + h as f64 * 0.5))
        .collect();
    let got: Vec<(i64, f64)> = hourly.iter().map(|p| (p.time, p.value)).collect();
    assert_eq!(got, want, "hourly means from the roll-ups");
    let tens = series
        .points(
            "p",
            "flowRate",
            Window {
                step: Some(600_000_000),
                aggregate: Aggregate::Max,
                ..raw
            },
        )
        .await
        .expect("ten-minute maxima");
    assert_eq!(tens.len(), 36);
    assert!(
        tens.iter()
            .enumerate()
            .all(|(i, p)| p.value == value(i as i64))
    );
    // Thirty seconds is no roll-up's multiple: what raw blocks are left.
    let fine = series
        .points(
            "p",
            "flowRate",
            Window {
                step: Some(30_000_000),
                ..raw
            },
        )
        .await
        .expect("30 s");
    assert_eq!(fine.len(), 18);
    // q's next report comes late: 10:05, for an hour whose raw blocks are
    // gone (not stale for q, whose last was 10:01). Folded into q's
    // roll-ups of that hour: no raw block again, no roll-up of it alone.
    store
        .apply(
            twingraph::twin::Batch {
                ops: vec![q(300, 100.0)],
            },
            "test",
        )
        .await
        .expect("late report");
    let hourly = Window {
        step: Some(3_600_000_000),
        ..raw
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let first_hour = loop {
        let points = series
            .points("q", "flowRate", hourly)
            .await
            .expect("hourly");
        // Answered from memory until written: wait for the write.
        let n = series
            .points("q", "flowRate", raw)
            .await
            .expect("raw")
            .len();
        if n == 0 && points.first().is_some_and(|p| p.value != 1.0) {
            break points;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never folded: {n} raw, hourly {points:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(first_hour.len(), 1, "{first_hour:?}");
    assert_eq!(
        (first_hour[0].time, first_hour[0].value),
        (t0, 50.5),
        "the mean of 1 and 100"
    );
    let minutes = series
        .points(
            "q",
            "flowRate",
            Window {
                step: Some(60_000_000),
                aggregate: Aggregate::Max,
                ..raw
            },
        )
        .await
        .expect("minute maxima");
    let got: Vec<(i64, f64)> = minutes.iter().map(|p| (p.time, p.value)).collect();
    assert_eq!(got, vec![(t0 + 60_000_000, 1.0), (t0 + 300_000_000, 100.0)]);
    // p's answers are as they were.
    let again = series
        .points("p", "flowRate", hourly)
        .await
        .expect("hourly");
    let again: Vec<(i64, f64)> = again.iter().map(|p| (p.time, p.value)).collect();
    assert_eq!(again, want);
    stop.notify_waiters();
    task.await.expect("follower");
}

/// `twingraph serve` (no demo plant: the test's reports are the only
/// ones) with `args` added (the store), the series flushed every second
/// and raw points kept 5 days back from the newest.
pub(crate) fn spawn_series_serve(
    dir: &std::path::Path,
    args: &[String],
    password: Option<&str>,
) -> (std::process::Child, std::net::SocketAddr) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_twingraph"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data")
        .arg(dir.join("data"))
        .args(args)
        .arg("--models")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dtdl"))
        .env("TWINGRAPH_SERIES_FLUSH_SECONDS", "1")
        .env("TWINGRAPH_SERIES_RETENTION_DAYS", "5")
        .env("TWINGRAPH_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if let Some(p) = password {
        cmd.env("TWINGRAPH_STORE_PASSWORD", p);
    }
    let mut child = cmd.spawn().expect("start serve");
    let addr = crate::support::listening(&mut child).expect("serve exited before listening");
    (child, addr)
}

/// The binary killed with SIGKILL mid-ingest keeps its series: blocks
/// written before, points acknowledged but only in memory (read again
/// from the log after the restart), retention (day 0's raw blocks removed
/// once day 10's points came, 5 days back from them) and the roll-ups that
/// answer for day 0 then. `spawn` starts the server on the store under
/// test (an empty one).
pub(crate) fn series_survive_sigkill(
    spawn: impl Fn() -> (std::process::Child, std::net::SocketAddr),
) {
    const Q: &str = r#"query($from: DateTime!, $to: DateTime!, $step: String, $aggregate: SeriesAggregate) {
  series(twin: "kp1", field: "flowRate", from: $from, to: $to, step: $step, aggregate: $aggregate) { time value }
}"#;
    const DAY: i64 = 86_400;
    // Days in the past: source times may not run ahead of the clock.
    let at = |seconds: i64| {
        twingraph::twin::format_time(
            parse_time("2026-01-01T00:00:00Z").expect("base") + seconds * 1_000_000,
        )
    };
    let values = |v: &Value| -> Vec<f64> {
        v["data"]["series"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["value"].as_f64()).collect())
            .unwrap_or_default()
    };
    let day0 = json!({"from": at(0), "to": at(DAY)});
    let day10 = json!({"from": at(10 * DAY), "to": at(11 * DAY)});
    let report = |addr, t: i64, v: f64| {
        let at = at(t);
        async move {
            let r = gql(
                addr,
                r#"mutation($t: DateTime, $p: JSON!) { patchReported(id: "kp1", patch: $p, sourceTime: $t) { version } }"#,
                json!({"t": at, "p": {"flowRate": v}}),
            )
            .await;
            assert!(r["errors"].is_null(), "{r}");
        }
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Two hours of one-minute reports on day 0, written into blocks (with
    // their roll-ups) by a clean stop.
    let (child, addr) = spawn();
    rt.block_on(async {
        let v = gql(
            addr,
            r#"mutation { createPump(id: "kp1") { id } }"#,
            json!({}),
        )
        .await;
        assert_eq!(v["data"]["createPump"]["id"], "kp1", "{v}");
        for i in 0..120 {
            report(addr, i * 60, i as f64 / 4.0).await;
        }
        let v = until(addr, Q, day0.clone(), |v| values(v).len() == 120).await;
        assert_eq!(values(&v).len(), 120, "followed: {v}");
    });
    crate::server::stop_serve(child);

    // An hour of them on day 10: day 0's raw blocks are past retention.
    let (mut child, addr) = spawn();
    rt.block_on(async {
        for i in 0..60 {
            report(addr, 10 * DAY + i * 60, 100.0 + i as f64).await;
        }
        let v = until(addr, Q, day10.clone(), |v| values(v).len() == 60).await;
        assert_eq!(values(&v).len(), 60, "followed: {v}");
        let v = until(addr, Q, day0.clone(), |v| values(v).is_empty()).await;
        assert_eq!(values(&v), Vec::<f64>::new(), "retention: {v}");
        // Thirty more, acknowledged, then SIGKILL (flushes are a second
        // apart: these are in the log, most not yet in a block).
        for i in 60..90 {
            report(addr, 10 * DAY + i * 60, 100.0 + i as f64).await;
        }
    });
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let (child, addr) = spawn();
    rt.block_on(async {
        let want: Vec<f64> = (0..90).map(|i| 100.0 + f64::from(i)).collect();
        let v = until(addr, Q, day10.clone(), |v| values(v) == want).await;
        assert_eq!(values(&v), want, "every acknowledged point: {v}");
        let v = gql(addr, Q, day0.clone()).await;
        assert_eq!(values(&v), Vec::<f64>::new(), "day 0 stays pruned: {v}");
        // Day 0 from the roll-ups: each minute's mean, each hour's max.
        let mut minutes = day0.clone();
        minutes["step"] = json!("1m");
        let v = gql(addr, Q, minutes).await;
        let want: Vec<f64> = (0..120).map(|i| f64::from(i) / 4.0).collect();
        assert_eq!(values(&v), want, "minute roll-ups: {v}");
        let mut hours = day0.clone();
        hours["step"] = json!("1h");
        hours["aggregate"] = json!("MAX");
        let v = gql(addr, Q, hours).await;
        assert_eq!(values(&v), vec![14.75, 29.75], "hour roll-ups: {v}");
    });
    crate::server::stop_serve(child);
}

/// The embedded store's series survive a SIGKILL of the binary.
#[test]
fn series_of_the_embedded_store_survive_sigkill_of_the_binary() {
    let dir = fresh_dir();
    series_survive_sigkill(|| spawn_series_serve(&dir, &[], None));
}
