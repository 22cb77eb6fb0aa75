//! The chart's Grafana dashboard (`charts/rivulet/dashboards/rivulet.json`) asks only for
//! metrics that exist: every metric name in every query is one a real worker process
//! serves on `/metrics` after it has processed, dead-lettered and checkpointed records from
//! a tansu broker, or one the operator exports. A renamed metric fails this test.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::file_state;
use rivulet_tests::{produce, wait_until, ProduceRecord, Tansu};
use serde_json::Value;

/// The metric names in a Prometheus text exposition (histograms by their series' names).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The value of the unlabelled series `name` (0 when absent).
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Every metric name (`rivulet_…`) in a PromQL query.
fn named(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("rivulet_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// A worker's `/metrics` once it has read, dead-lettered, windowed and checkpointed records.
fn worker_metrics() -> String {
    let broker = Tansu::start().expect("start tansu");
    let b = broker.bootstrap();
    for t in ["in", "out", "dlq"] {
        broker.create_topic(t, 1).expect("topic");
    }
    let rec = |user: &str, ts: i64| {
        ProduceRecord::keyed(user, format!(r#"{{"user":"{user}","ts":{ts},"amount":1}}"#))
    };
    produce(
        &b,
        "in",
        &[
            rec("a", 1_000),
            rec("b", 2_000),
            ProduceRecord::keyed("b", "{not json"),
            rec("c", 25_000),
        ],
    )
    .expect("produce");
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = "source: {topics: [in]}\ntime: {type: event, field: ts}\nkey: [user]\n\
                    window: {type: tumbling, size: 10s}\naggregates: [{name: n, fn: count}]\n\
                    sink: {topic: out}\ndeadLetter: {topic: dlq}\n";
    let job = common::write(
        dir.path(),
        "dashboard.yaml",
        &common::manifest(
            "dashboard",
            pipeline,
            &file_state(dir.path(), "rocksdb", "500ms"),
        ),
    );
    let mut w = common::start_worker(&job, &b, &dir.path().join("data"), &[], "dashboard");
    common::wait_ready(&mut w, Duration::from_secs(30));
    let mut text = String::new();
    let done = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        text = common::get(&w.http, "/metrics").unwrap_or_default();
        [
            "rivulet_records_out_total",
            "rivulet_checkpoints_completed_total",
        ]
        .iter()
        .all(|n| value(&text, n) > 0.0)
            && text.contains("rivulet_dead_letter_records_total{")
    });
    assert!(
        done,
        "the worker did not get there:\n{text}\n{}",
        w.process.logs()
    );
    text
}

/// The operator's metrics once it has seen a job, a savepoint and a rescale.
fn operator_metrics() -> String {
    let yaml =
        std::fs::read_to_string(rivulet_tests::workspace_root().join("examples/clicks.yaml"))
            .expect("example");
    let job = rivulet_api::load_manifest(&yaml).expect("valid");
    let m = rivulet_operator::metrics::Metrics::new();
    m.reconciled(Duration::from_millis(5), Some("conflict"));
    m.observe_job(&job, &rivulet_api::job_status::StreamJobStatus::default());
    for reason in ["SavepointCompleted", "SavepointFailed", "RescaleStarted"] {
        m.event(&job, reason);
    }
    m.autoscaler_decision(
        &job,
        &rivulet_api::job_status::AutoscalerDecision {
            reason: "ScaleUp".into(),
            recommended: 2,
            ..Default::default()
        },
    );
    m.encode()
}

#[test]
fn every_dashboard_query_names_metrics_that_are_exported() {
    let path = rivulet_tests::workspace_root().join("charts/rivulet/dashboards/rivulet.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr").to_string();
            queries.push((panel["title"].as_str().unwrap_or("").to_string(), expr));
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(q) = v["query"]["query"].as_str() {
            queries.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    assert!(queries.len() >= 15, "{queries:?}");

    let mut known = exported(&worker_metrics());
    known.extend(exported(&operator_metrics()));
    let mut used = BTreeSet::new();
    for (title, q) in &queries {
        let names = named(q);
        assert!(!names.is_empty(), "{title}: {q} names no metric");
        for n in names {
            assert!(
                known.contains(&n),
                "{title}: {q} asks for {n}, which nothing exports; exported: {known:#?}"
            );
            used.insert(n);
        }
    }
    // What the dashboard must show, by the metric that shows it.
    for needed in [
        "rivulet_records_in_total",
        "rivulet_records_out_total",
        "rivulet_source_lag_records",
        "rivulet_watermark_delay_ms",
        "rivulet_checkpoint_duration_seconds_bucket",
        "rivulet_checkpoint_size_bytes",
        "rivulet_backpressure_permille",
        "rivulet_busy_permille",
        "rivulet_operator_job_parallelism",
        "rivulet_operator_rescales_total",
        "rivulet_operator_savepoints_total",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
}
