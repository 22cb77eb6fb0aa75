//! End-to-end behaviour of one worker against a real broker: window semantics through
//! Kafka, lateness, heap and RocksDB giving identical bytes, dead letters and their counters,
//! a bad manifest, checkpoints through S3, and idle partitions.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{by_window, file_state, rec, summary, CLOSE_TS};
use rivulet_api::WorkerLaunch;
use rivulet_tests::{consume_all, produce, wait_until, Moto, ProduceRecord, Tansu};
use serde_json::{json, Value};

/// Runs `pipeline` over what is already in its source topic until `expected` sink records
/// are committed, stops the worker, and returns the sink records' JSON values.
fn run_job(
    broker: &Tansu,
    dir: &Path,
    name: &str,
    pipeline: &str,
    backend: &str,
    sink: &str,
    expected: usize,
) -> Vec<Value> {
    let job = common::write(
        dir,
        &format!("{name}.yaml"),
        &common::manifest(
            name,
            pipeline,
            &file_state(&dir.join(name), backend, "500ms"),
        ),
    );
    let mut w = common::start_worker(
        &job,
        &broker.bootstrap(),
        &dir.join(name).join("data"),
        &[],
        name,
    );
    let out = consume_all(
        &broker.bootstrap(),
        sink,
        true,
        expected,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .unwrap();
    w.process.sigterm().unwrap();
    let status = w.process.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{name} did not stop cleanly:\n{}",
        w.process.log_tail(60)
    );
    assert_eq!(
        out.len(),
        expected,
        "{name}: {:?}\n{}",
        out.iter().map(|r| r.value_str()).collect::<Vec<_>>(),
        w.process.log_tail(40)
    );
    out.iter().map(|r| r.value_json().unwrap()).collect()
}

#[test]
fn tumbling_sliding_and_session_windows_through_kafka() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["tumbling-in", "sliding-in", "session-in"] {
        broker.create_topic(t, 1).unwrap();
    }
    for t in ["tumbling-out", "sliding-out", "session-out", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }

    // Tumbling 10 s.
    produce(
        &b,
        "tumbling-in",
        &[
            rec("a", 1_000, 5),
            rec("a", 3_000, 7),
            rec("b", 4_000, 1),
            rec("a", 12_000, 2),
            rec("b", 19_999, 3),
            rec("zz", CLOSE_TS, 0),
        ],
    )
    .unwrap();
    let tumbling = run_job(
        &broker,
        dir.path(),
        "tumbling",
        r#"
source: {topics: [tumbling-in]}
time: {type: event, field: ts}
key: [user]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: n, fn: count}
  - {name: total, fn: sum, field: amount}
  - {name: lo, fn: min, field: amount}
  - {name: hi, fn: max, field: amount}
  - {name: mean, fn: avg, field: amount}
  - {name: first, fn: first, field: amount}
  - {name: last, fn: last, field: amount}
sink: {topic: tumbling-out}
deadLetter: {topic: dlq}
"#,
        "heap",
        "tumbling-out",
        4,
    );
    let aggs = ["n", "total", "lo", "hi", "mean", "first", "last"];
    // Within one watermark step, windows fire in (end, key group, key) order.
    let got: Vec<Value> = by_window(
        tumbling.iter().map(|v| summary(v, "user", &aggs)).collect(),
        "user",
    );
    assert_eq!(
        got,
        vec![
            json!({"user":"a","start":0,"end":10000,"n":2,"total":12,"lo":5,"hi":7,"mean":6.0,"first":5,"last":7,"kind":"final"}),
            json!({"user":"b","start":0,"end":10000,"n":1,"total":1,"lo":1,"hi":1,"mean":1.0,"first":1,"last":1,"kind":"final"}),
            json!({"user":"a","start":10000,"end":20000,"n":1,"total":2,"lo":2,"hi":2,"mean":2.0,"first":2,"last":2,"kind":"final"}),
            json!({"user":"b","start":10000,"end":20000,"n":1,"total":3,"lo":3,"hi":3,"mean":3.0,"first":3,"last":3,"kind":"final"}),
        ]
    );

    // Sliding 10 s every 5 s.
    produce(
        &b,
        "sliding-in",
        &[
            rec("a", 1_000, 1),
            rec("a", 6_000, 1),
            rec("a", 12_000, 1),
            rec("zz", CLOSE_TS, 0),
        ],
    )
    .unwrap();
    let sliding = run_job(
        &broker,
        dir.path(),
        "sliding",
        r#"
source: {topics: [sliding-in]}
time: {type: event, field: ts}
key: [user]
window: {type: sliding, size: 10s, slide: 5s}
aggregates: [{name: n, fn: count}]
sink: {topic: sliding-out}
deadLetter: {topic: dlq}
"#,
        "rocksdb",
        "sliding-out",
        4,
    );
    let got: Vec<(i64, i64, i64)> = sliding
        .iter()
        .map(|v| {
            (
                v["windowStart"].as_i64().unwrap(),
                v["windowEnd"].as_i64().unwrap(),
                v["n"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (-5_000, 5_000, 1),
            (0, 10_000, 2),
            (5_000, 15_000, 2),
            (10_000, 20_000, 1)
        ]
    );

    // Sessions with a 5 s gap; the record at 5.5 s bridges two sessions into one.
    produce(
        &b,
        "session-in",
        &[
            rec("a", 1_000, 1),
            rec("a", 10_000, 2),
            rec("a", 5_500, 4),
            rec("b", 30_000, 8),
            rec("zz", CLOSE_TS, 0),
        ],
    )
    .unwrap();
    let session = run_job(
        &broker,
        dir.path(),
        "session",
        r#"
source: {topics: [session-in]}
time: {type: event, field: ts, maxOutOfOrderness: 5s}
key: [user]
window: {type: session, gap: 5s}
aggregates:
  - {name: n, fn: count}
  - {name: total, fn: sum, field: amount}
sink: {topic: session-out}
deadLetter: {topic: dlq}
"#,
        "heap",
        "session-out",
        2,
    );
    let got: Vec<Value> = by_window(
        session
            .iter()
            .map(|v| summary(v, "user", &["n", "total"]))
            .collect(),
        "user",
    );
    assert_eq!(
        got,
        vec![
            json!({"user":"a","start":1000,"end":15000,"n":3,"total":7,"kind":"final"}),
            json!({"user":"b","start":30000,"end":35000,"n":1,"total":8,"kind":"final"}),
        ]
    );
}

#[test]
fn allowed_lateness_emits_updates_and_dead_letters_what_is_later() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    broker.create_topic("in", 1).unwrap();
    broker.create_topic("out", 1).unwrap();
    broker.create_topic("dlq", 1).unwrap();
    produce(
        &b,
        "in",
        &[
            rec("a", 1_000, 1),
            rec("a", 11_000, 1), // watermark 10 999: [0, 10 s) fires with n = 1
            rec("a", 2_000, 1),  // late but within 5 s of lateness: update, n = 2
            rec("a", 16_000, 1), // watermark 15 999: [0, 10 s) is dropped
            rec("a", 3_000, 1),  // too late: dead letter
            rec("zz", CLOSE_TS, 0),
        ],
    )
    .unwrap();
    let out = run_job(
        &broker,
        dir.path(),
        "late",
        r#"
source: {topics: [in]}
time: {type: event, field: ts}
key: [user]
window: {type: tumbling, size: 10s, allowedLateness: 5s}
aggregates: [{name: n, fn: count}]
sink: {topic: out}
deadLetter: {topic: dlq}
"#,
        "heap",
        "out",
        3,
    );
    let got: Vec<Value> = out.iter().map(|v| summary(v, "user", &["n"])).collect();
    assert_eq!(
        got,
        vec![
            json!({"user":"a","start":0,"end":10000,"n":1,"kind":"final"}),
            json!({"user":"a","start":0,"end":10000,"n":2,"kind":"update"}),
            json!({"user":"a","start":10000,"end":20000,"n":2,"kind":"final"}),
        ]
    );
    let dead = consume_all(
        &b,
        "dlq",
        true,
        1,
        Duration::from_secs(2),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].header_str("rivulet.reason").as_deref(),
        Some("late")
    );
    assert_eq!(dead[0].value_json().unwrap()["ts"], 3000);
}

#[test]
fn heap_and_rocksdb_produce_identical_bytes() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    broker.create_topic("in", 1).unwrap();
    for t in ["out-heap", "out-rocksdb", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }
    // Out-of-order input with late records, several keys, and values for every aggregate.
    let mut input = Vec::new();
    for i in 0..3_000i64 {
        let ts = i * 37 - (i * 7919 % 3_000);
        let user = format!("u{}", (i * 13) % 17);
        input.push(ProduceRecord::keyed(
            user.clone(),
            format!(
                r#"{{"user":"{user}","ts":{ts},"amount":{},"page":"p{}"}}"#,
                i % 101,
                i % 7
            ),
        ));
    }
    input.push(rec("zz", CLOSE_TS * 10, 0));
    produce(&b, "in", &input).unwrap();
    let pipeline = |sink: &str| {
        format!(
            r#"
source: {{topics: [in]}}
time: {{type: event, field: ts, maxOutOfOrderness: 1s}}
key: [user]
window: {{type: sliding, size: 4s, slide: 1s, allowedLateness: 1s}}
aggregates:
  - {{name: n, fn: count}}
  - {{name: total, fn: sum, field: amount}}
  - {{name: mean, fn: avg, field: amount}}
  - {{name: lo, fn: min, field: amount}}
  - {{name: hi, fn: max, field: amount}}
  - {{name: first, fn: first, field: page}}
  - {{name: last, fn: last, field: page}}
  - {{name: pages, fn: distinctCount, field: page}}
sink: {{topic: {sink}}}
deadLetter: {{topic: dlq}}
"#
        )
    };
    // Count what the heap run emits first, then demand exactly as many from RocksDB.
    let job = common::write(
        dir.path(),
        "heap.yaml",
        &common::manifest(
            "heap",
            &pipeline("out-heap"),
            &file_state(&dir.path().join("heap"), "heap", "500ms"),
        ),
    );
    let mut w = common::start_worker(&job, &b, &dir.path().join("heap-data"), &[], "heap");
    let heap = consume_all(
        &b,
        "out-heap",
        true,
        1,
        Duration::from_secs(4),
        Duration::from_secs(60),
    )
    .unwrap();
    w.process.sigterm().unwrap();
    assert!(w
        .process
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    assert!(heap.len() > 1_000, "only {} results", heap.len());
    let rocks = run_job(
        &broker,
        dir.path(),
        "rocks",
        &pipeline("out-rocksdb"),
        "rocksdb",
        "out-rocksdb",
        heap.len(),
    );
    let heap_bytes: Vec<String> = heap.iter().map(|r| r.value_str()).collect();
    let rocks_bytes: Vec<String> = rocks.iter().map(|v| v.to_string()).collect();
    // Compare the exact bytes the sinks wrote.
    let rocks_raw = consume_all(
        &b,
        "out-rocksdb",
        true,
        heap.len(),
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
    .unwrap();
    let rocks_raw: Vec<String> = rocks_raw.iter().map(|r| r.value_str()).collect();
    assert_eq!(rocks_bytes.len(), rocks_raw.len());
    assert_eq!(heap_bytes, rocks_raw);
    assert!(
        heap_bytes.iter().any(|v| v.contains("\"kind\":\"update\"")),
        "the input should produce late updates"
    );
}

#[test]
fn bad_input_goes_to_the_dead_letter_topic_and_the_job_keeps_running() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    broker.create_topic("in", 1).unwrap();
    broker.create_topic("out", 1).unwrap();
    broker.create_topic("dlq", 1).unwrap();
    let big = format!(
        r#"{{"user":"a","ts":1000,"amount":1,"pad":"{}"}}"#,
        "x".repeat(600)
    );
    produce(
        &b,
        "in",
        &[
            rec("a", 1_000, 1),
            ProduceRecord::new("{not json"),
            ProduceRecord::new(r#"{"ts":1500,"amount":1}"#),
            ProduceRecord::new(r#"{"user":"a","ts":1600,"amount":"abc"}"#),
            ProduceRecord::new(big),
            ProduceRecord::new(r#"{"user":"a","ts":32503680000000,"amount":1}"#),
            ProduceRecord::new(r#"{"user":"a","ts":"yesterday","amount":1}"#),
            rec("a", 2_000, 2),
            rec("b", 25_000, 1), // watermark 24 999: [0, 10 s) fires
            rec("a", 3_000, 9),  // too late
            ProduceRecord::new(r#"{"user":"a","ts":26000,"amount":1,"page":"/health"}"#),
            rec("zz", CLOSE_TS, 0),
        ],
    )
    .unwrap();
    let job = common::write(
        dir.path(),
        "bad.yaml",
        &common::manifest(
            "bad-input",
            r#"
source: {topics: [in]}
time: {type: event, field: ts}
filter: [{field: page, op: ne, value: /health}]
key: [user]
window: {type: tumbling, size: 10s}
aggregates: [{name: n, fn: count}, {name: total, fn: sum, field: amount}]
sink: {topic: out}
deadLetter: {topic: dlq}
limits: {maxRecordBytes: 300}
"#,
            &file_state(dir.path(), "heap", "500ms"),
        ),
    );
    let mut w = common::start_worker(&job, &b, &dir.path().join("data"), &[], "bad-input");
    let out = consume_all(
        &b,
        "out",
        true,
        2,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .unwrap();
    let dead = consume_all(
        &b,
        "dlq",
        true,
        7,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .unwrap();
    let http = w.http.clone();
    let status = common::status(&http).expect("status");
    w.process.sigterm().unwrap();
    assert!(w
        .process
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));

    let results: Vec<Value> = by_window(
        out.iter()
            .map(|r| summary(&r.value_json().unwrap(), "user", &["n", "total"]))
            .collect(),
        "user",
    );
    assert_eq!(
        results,
        vec![
            json!({"user":"a","start":0,"end":10000,"n":2,"total":3,"kind":"final"}),
            json!({"user":"b","start":20000,"end":30000,"n":1,"total":1,"kind":"final"}),
        ]
    );
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| d.header_str("rivulet.reason").unwrap_or_default())
        .collect();
    assert_eq!(
        reasons,
        vec![
            "malformed",
            "missing-key",
            "malformed",
            "oversized",
            "future-timestamp",
            "bad-timestamp",
            "late"
        ]
    );
    for d in &dead {
        assert!(d.header_str("rivulet.error").is_some_and(|e| !e.is_empty()));
        assert_eq!(d.header_str("rivulet.source.topic").as_deref(), Some("in"));
    }
    assert!(
        dead[3].value.len() > 600,
        "the oversized record is kept whole"
    );
    assert!(dead[2]
        .header_str("rivulet.error")
        .unwrap()
        .contains("amount"));
    // Every record is accounted for.
    let n = |k: &str| status[k].as_u64().unwrap();
    assert_eq!(n("recordsIn"), 12);
    assert_eq!(n("recordsMalformed"), 5);
    assert_eq!(n("recordsKeyless"), 1);
    assert_eq!(n("recordsLate"), 1);
    assert_eq!(n("recordsFiltered"), 1);
    assert_eq!(
        n("recordsIn"),
        n("recordsProcessed")
            + n("recordsFiltered")
            + n("recordsLate")
            + n("recordsMalformed")
            + n("recordsKeyless")
    );
}

#[test]
fn a_bad_manifest_names_the_field_and_consumes_nothing() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    broker.create_topic("in", 1).unwrap();
    broker.create_topic("out", 1).unwrap();
    produce(&b, "in", &[rec("a", 1_000, 1), rec("zz", CLOSE_TS, 1)]).unwrap();
    let cases = [
        (
            "window: {type: tumbling, size: ten}",
            "spec.pipeline.window.size",
        ),
        (
            "window: {type: sliding, size: 10s}",
            "spec.pipeline.window.slide",
        ),
    ];
    for (i, (window, field)) in cases.iter().enumerate() {
        let job = common::write(
            dir.path(),
            &format!("bad-{i}.yaml"),
            &common::manifest(
                "bad-spec",
                &format!(
                    "source: {{topics: [in]}}\ntime: {{type: event, field: ts}}\nkey: [user]\n{window}\naggregates: [{{name: n, fn: count}}]\nsink: {{topic: out}}\n"
                ),
                &file_state(dir.path(), "heap", "500ms"),
            ),
        );
        let mut w = common::start_worker(&job, &b, &dir.path().join("data"), &[], "bad-spec");
        let status = w.process.wait_exit(Duration::from_secs(20)).expect("exits");
        assert_eq!(status.code(), Some(2), "{}", w.process.logs());
        let err = w.process.stderr();
        assert!(err.contains(field), "error does not name {field}:\n{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Parallelism 2 without the peers' shuffle addresses: refused at start.
    let job = common::write(
        dir.path(),
        "parallel.yaml",
        &common::manifest(
            "parallel",
            "source: {topics: [in]}\ntime: {type: event, field: ts}\nkey: [user]\nwindow: {type: tumbling, size: 10s}\naggregates: [{name: n, fn: count}]\nsink: {topic: out}\n",
            &file_state(dir.path(), "heap", "500ms"),
        ),
    );
    let launch = WorkerLaunch::new(&job, 0, 2, dir.path().join("data-p"), "").with_bootstrap(&b);
    let mut w = common::launch_worker(launch, &[], "parallel");
    let status = w.process.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success(), "{}", w.process.logs());
    let err = w.process.stderr();
    assert!(
        err.contains("parallelism 2: the workers need each other's shuffle addresses"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = consume_all(
        &b,
        "out",
        false,
        0,
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(out.is_empty());
    assert!(
        !dir.path().join("data").exists(),
        "a rejected manifest must start nothing"
    );
}

#[test]
fn checkpoints_go_to_s3_and_a_restart_restores_them() {
    let moto = Moto::start().unwrap();
    moto.create_bucket("state").unwrap();
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    broker.create_topic("in", 1).unwrap();
    broker.create_topic("out", 1).unwrap();
    broker.create_topic("dlq", 1).unwrap();
    let job = common::write(
        dir.path(),
        "s3.yaml",
        &common::manifest(
            "s3-job",
            r#"
source: {topics: [in]}
time: {type: event, field: ts}
key: [user]
window: {type: tumbling, size: 10s}
aggregates: [{name: n, fn: count}, {name: total, fn: sum, field: amount}]
sink: {topic: out}
deadLetter: {topic: dlq}
"#,
            "backend: rocksdb\ncheckpointInterval: 500ms\nstorage: s3://state/rivulet\nretain: 2",
        ),
    );
    let env = moto.s3_env();
    // First run: half of the window's input, then a clean stop (final checkpoint).
    produce(&b, "in", &[rec("a", 1_000, 1), rec("a", 2_000, 10)]).unwrap();
    let mut w = common::start_worker(&job, &b, &dir.path().join("data"), &env, "s3-first");
    common::wait_ready(&mut w, Duration::from_secs(30));
    let http = w.http.clone();
    assert!(wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            common::status(&http).is_some_and(|s| {
                s["recordsIn"] == 2 && s["lastCheckpoint"]["id"].as_u64().is_some()
            })
        }
    ));
    w.process.sigterm().unwrap();
    assert!(
        w.process
            .wait_exit(Duration::from_secs(30))
            .is_some_and(|s| s.success()),
        "{}",
        w.process.log_tail(40)
    );
    let objects = moto.list_objects("state", "rivulet/tests/s3-job/").unwrap();
    assert!(
        objects
            .iter()
            .any(|o| o.starts_with("rivulet/tests/s3-job/checkpoints/")
                && o.ends_with("/manifest.json")),
        "{objects:?}"
    );
    assert!(
        objects
            .iter()
            .any(|o| o.contains("/shared/") && o.ends_with(".sst")),
        "{objects:?}"
    );

    // Second run, on a fresh local directory: the state must come from S3.
    produce(&b, "in", &[rec("a", 3_000, 100), rec("zz", CLOSE_TS, 0)]).unwrap();
    let mut w = common::start_worker(&job, &b, &dir.path().join("data-2"), &env, "s3-second");
    let out = consume_all(
        &b,
        "out",
        true,
        1,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .unwrap();
    w.process.sigterm().unwrap();
    assert!(w
        .process
        .wait_exit(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    assert!(
        w.process.logs().contains("restored state"),
        "{}",
        w.process.log_tail(40)
    );
    let results: Vec<Value> = out
        .iter()
        .map(|r| summary(&r.value_json().unwrap(), "user", &["n", "total"]))
        .collect();
    assert_eq!(
        results,
        vec![json!({"user":"a","start":0,"end":10000,"n":3,"total":111,"kind":"final"})]
    );
}

#[test]
fn an_idle_partition_stops_holding_back_the_watermark() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    broker.create_topic("in", 2).unwrap();
    broker.create_topic("out", 1).unwrap();
    broker.create_topic("dlq", 1).unwrap();
    produce(
        &b,
        "in",
        &[
            rec("a", 1_000, 1).with_partition(0),
            rec("zz", CLOSE_TS, 0).with_partition(0),
        ],
    )
    .unwrap();
    let out = run_job(
        &broker,
        dir.path(),
        "idle",
        r#"
source: {topics: [in]}
time: {type: event, field: ts, idleTimeout: 1s}
key: [user]
window: {type: tumbling, size: 10s}
aggregates: [{name: n, fn: count}]
sink: {topic: out}
deadLetter: {topic: dlq}
"#,
        "heap",
        "out",
        1,
    );
    assert_eq!(
        summary(&out[0], "user", &["n"]),
        json!({"user":"a","start":0,"end":10000,"n":1,"kind":"final"})
    );
}
