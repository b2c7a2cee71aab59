//! DTDL engine benchmark: parse + validate + resolve each corpus folder, and a
//! synthetic model set of 10,000 interfaces.
//!
//! Run with `cargo bench --bench dtdl`. Reading files is excluded (sources
//! are loaded once); each figure is the median of several runs, because the
//! machines this runs on are shared and noisy. Set `TWINGRAPH_BENCH_RUNS` to
//! change the number of runs (default 11).
//!
//! The whole-process comparison with Microsoft's reference parser is
//! `benches/compare-reference.sh`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use twingraph::dtdl::{self, Options, Source, load};

// The same allocator as the binary, so the figures are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn corpus() -> PathBuf {
    std::env::var_os("TWINGRAPH_DTDL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/dtdl"))
}

fn runs() -> usize {
    std::env::var("TWINGRAPH_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11)
        .max(1)
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0])
}

fn time<F: FnMut()>(mut f: F) -> (Duration, Duration) {
    f(); // warm-up
    let samples = (0..runs())
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    median(samples)
}

fn report(name: &str, interfaces: usize, (med, min): (Duration, Duration)) {
    println!(
        "{name:<28} {interfaces:>6} interfaces   median {:>9.2} ms   min {:>9.2} ms",
        med.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3
    );
}

/// A synthetic, valid DTDL v3 model set: `n` interfaces in an `extends` tree
/// (each extends one of the previous eight levels' interfaces), each with
/// properties, telemetry with units, a command, a relationship, an Object
/// schema and an Enum.
fn synthetic(n: usize) -> Vec<Source> {
    let mut docs = Vec::new();
    let per_doc = 100;
    for chunk in (0..n).collect::<Vec<_>>().chunks(per_doc) {
        let mut items = Vec::new();
        for &i in chunk {
            let extends = if i == 0 {
                String::new()
            } else {
                format!(r#""extends": "dtmi:bench:I{};1","#, (i - 1) / 4)
            };
            items.push(format!(
                r#"{{"@context": ["dtmi:dtdl:context;3", "dtmi:dtdl:extension:quantitativeTypes;1"],
"@id": "dtmi:bench:I{i};1", "@type": "Interface", "displayName": "Interface {i}", {extends}
"contents": [
 {{"@type": "Property", "name": "p{i}a", "schema": "double", "writable": true}},
 {{"@type": "Property", "name": "p{i}b", "schema": "string"}},
 {{"@type": ["Telemetry", "Temperature"], "name": "t{i}", "schema": "double", "unit": "degreeCelsius"}},
 {{"@type": "Property", "name": "s{i}", "schema": {{"@type": "Object", "fields": [
    {{"name": "x", "schema": "double"}}, {{"name": "mode", "schema": {{"@type": "Enum", "valueSchema": "string",
      "enumValues": [{{"name": "on", "enumValue": "on"}}, {{"name": "off", "enumValue": "off"}}]}}}}]}}}},
 {{"@type": "Command", "name": "c{i}", "request": {{"name": "arg", "schema": "integer"}}, "response": {{"name": "ok", "schema": "boolean"}}}},
 {{"@type": "Relationship", "name": "r{i}", "target": "dtmi:bench:I0;1", "properties": [{{"@type": "Property", "name": "w", "schema": "double"}}]}}
]}}"#
            ));
        }
        docs.push(Source::new(
            format!("synthetic-{}.json", docs.len()),
            format!("[{}]", items.join(",")),
        ));
    }
    docs
}

fn main() {
    // `cargo test --benches` / `cargo bench -- --list` pass flags; only run on a real bench run.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let root = corpus();
    assert!(
        root.join("models").is_dir(),
        "the DTDL corpora are missing at {} (set TWINGRAPH_DTDL_CORPUS)",
        root.display()
    );
    let opts = Options::default();
    println!("runs per figure: {}", runs());
    for name in ["azure-building", "azure-energygrid", "realestatecore-rec"] {
        let sources = load::read_paths(&[root.join("models").join(name)]).expect("corpus readable");
        let interfaces = dtdl::check(&sources, &opts)
            .model
            .map(|m| m.counts().interfaces)
            .expect("corpus is valid");
        report(
            name,
            interfaces,
            time(|| {
                black_box(dtdl::check(black_box(&sources), &opts));
            }),
        );
    }

    // Plug and play: every file on its own, dependencies from the repository.
    let repo = root.join("models/iot-plugandplay");
    let files: Vec<PathBuf> = walk(&repo.join("dtmi"));
    let plug = {
        let t = Instant::now();
        for f in &files {
            let s = load::read_paths(std::slice::from_ref(f)).expect("readable");
            let o = load::check_with_repositories(s, std::slice::from_ref(&repo), &opts)
                .expect("no I/O error");
            assert!(o.is_ok(), "{} rejected", f.display());
        }
        t.elapsed()
    };
    println!(
        "{:<28} {:>6} files        total  {:>9.2} ms   (one run, file I/O and DMR lookups included)",
        "iot-plugandplay (per file)",
        files.len(),
        plug.as_secs_f64() * 1e3
    );

    let synth = synthetic(10_000);
    let interfaces = dtdl::check(&synth, &opts)
        .model
        .map(|m| m.counts().interfaces)
        .expect("synthetic set is valid");
    report(
        "synthetic",
        interfaces,
        time(|| {
            black_box(dtdl::check(black_box(&synth), &opts));
        }),
    );
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    out.sort();
    out
}
