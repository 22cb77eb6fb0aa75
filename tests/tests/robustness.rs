//! Robustness of one worker against a real broker: torn checkpoints are never restored, the
//! at-least-once sink, CSV input with a projection, processing-time windows, the Prometheus
//! metrics and health endpoints, starting a new job from another job's snapshot
//! (`spec.restoreFrom`), and stateless pipelines.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rivulet_tests::{consume_all, http_request, produce, wait_until, ProduceRecord, Tansu};
use serde_json::{json, Value};

use common::{by_window, file_state, now_ms, rec, summary, CLOSE_TS};

/// Sends SIGTERM and asserts the worker takes its final checkpoint and exits 0.
fn stop(w: &mut common::Worker) {
    w.process.sigterm().unwrap();
    let status = w.process.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "{} did not stop cleanly:\n{}",
        w.process.label(),
        w.process.log_tail(60)
    );
}

/// Polls `/status` until `pred` holds; returns that status document.
fn wait_status(w: &common::Worker, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || match common::status(&w.http) {
            Some(s) => {
                let hit = pred(&s);
                last = s;
                hit
            }
            None => false,
        },
    );
    assert!(
        ok,
        "{}: never {what}; last status {last}\n{}",
        w.process.label(),
        w.process.log_tail(40)
    );
    last
}

/// `lastCheckpoint.id` of a status document (0 when there is none yet).
fn last_checkpoint(s: &Value) -> u64 {
    s["lastCheckpoint"]["id"].as_u64().unwrap_or(0)
}

/// The checkpoint directories of job `job` under `storage`, by id, ascending.
fn checkpoint_dirs(storage: &Path, job: &str) -> Vec<(u64, PathBuf)> {
    let dir = storage.join("tests").join(job).join("checkpoints");
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            (name.len() == 20)
                .then(|| name.parse::<u64>().ok())
                .flatten()
                .map(|id| (id, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Whether some log line of `w` contains `message` and the field `checkpoint=<id>`.
fn logged_for_checkpoint(w: &common::Worker, message: &str, id: u64) -> bool {
    let field = format!("checkpoint={id}");
    w.process
        .logs()
        .lines()
        .any(|l| l.contains(message) && l.split_whitespace().any(|word| word == field.as_str()))
}

const TUMBLING: &str = r#"
source: {topics: [in]}
time: {type: event, field: ts}
key: [user]
window: {type: tumbling, size: 10s}
aggregates: [{name: n, fn: count}, {name: total, fn: sum, field: amount}]
sink: {topic: out}
deadLetter: {topic: dlq}
"#;

/// Starts `job` on a fresh data directory and checks which checkpoint it skipped and which it
/// restored.
fn restart_expecting_restore(
    broker: &Tansu,
    job: &Path,
    data: &Path,
    label: &str,
    skipped: u64,
    restored: u64,
) -> common::Worker {
    let mut w = common::start_worker(job, &broker.bootstrap(), data, &[], label);
    common::wait_ready(&mut w, Duration::from_secs(30));
    let s = wait_status(&w, "running", |s| s["phase"] == "running");
    assert!(
        logged_for_checkpoint(&w, "skipping checkpoint", skipped),
        "{label}: checkpoint {skipped} was not skipped:\n{}",
        w.process.log_tail(40)
    );
    assert!(
        logged_for_checkpoint(&w, "restored state", restored),
        "{label}: checkpoint {restored} was not restored:\n{}",
        w.process.log_tail(40)
    );
    assert_eq!(s["restoredFrom"], json!(restored), "{s}");
    w
}

#[test]
fn a_torn_newest_checkpoint_is_skipped_for_the_previous_one() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["in", "out", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }
    let storage = dir.path().join("snapshots");
    let job = common::write(
        dir.path(),
        "torn.yaml",
        &common::manifest("torn", TUMBLING, &file_state(dir.path(), "heap", "500ms")),
    );

    // Run 1: two records of an open window, at least two checkpoints, a final one at stop.
    produce(&b, "in", &[rec("a", 1_000, 1), rec("a", 2_000, 10)]).unwrap();
    let mut w = common::start_worker(&job, &b, &dir.path().join("data-1"), &[], "torn-1");
    wait_status(&w, "checkpointed the input twice", |s| {
        s["recordsIn"] == 2 && last_checkpoint(s) >= 2
    });
    stop(&mut w);
    let dirs = checkpoint_dirs(&storage, "torn");
    let (newest, newest_dir) = dirs.last().cloned().unwrap();
    assert!(newest >= 3, "{dirs:?}");
    assert_eq!(dirs.len(), 3, "retain: 3 keeps three checkpoints: {dirs:?}");
    for (_, d) in &dirs {
        assert!(d.join("manifest.json").exists(), "{}", d.display());
    }
    // Tear the newest checkpoint's state file (worker 0's part), keeping its size and its
    // manifest.
    let state_file = std::fs::read_dir(newest_dir.join("w0"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("state-") && name.ends_with(".kg")
        })
        .unwrap_or_else(|| panic!("no state file in {}", newest_dir.display()));
    let mut bytes = std::fs::read(&state_file).unwrap();
    assert!(bytes.len() > 8, "{} is too small", state_file.display());
    let at = bytes.len() - 3;
    for byte in &mut bytes[at..] {
        *byte ^= 0xff;
    }
    std::fs::write(&state_file, &bytes).unwrap();

    // Run 2: the torn checkpoint is skipped, the previous one restored.
    let mut w = restart_expecting_restore(
        &broker,
        &job,
        &dir.path().join("data-2"),
        "torn-2",
        newest,
        newest - 1,
    );
    produce(&b, "in", &[rec("a", 3_000, 100)]).unwrap();
    let seen = wait_status(&w, "read the third record", |s| s["recordsIn"] == 1);
    // The checkpoint after that status holds the third record.
    let after = last_checkpoint(&seen);
    wait_status(&w, "checkpointed the third record", |s| {
        last_checkpoint(s) > after
    });
    stop(&mut w);
    let dirs = checkpoint_dirs(&storage, "torn");
    let (newest, newest_dir) = dirs.last().cloned().unwrap();
    assert!(
        dirs.iter().any(|(id, _)| *id == newest - 1),
        "the previous checkpoint is kept: {dirs:?}"
    );
    // No manifest: not a snapshot.
    std::fs::remove_file(newest_dir.join("manifest.json")).unwrap();

    // Run 3: the manifest-less checkpoint is skipped too; the state of all three records is
    // there when the window closes.
    let mut w = restart_expecting_restore(
        &broker,
        &job,
        &dir.path().join("data-3"),
        "torn-3",
        newest,
        newest - 1,
    );
    produce(&b, "in", &[rec("zz", CLOSE_TS, 0)]).unwrap();
    let out = consume_all(
        &b,
        "out",
        true,
        1,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .unwrap();
    stop(&mut w);
    let got: Vec<Value> = out
        .iter()
        .map(|r| summary(&r.value_json().unwrap(), "user", &["n", "total"]))
        .collect();
    assert_eq!(
        got,
        vec![json!({"user":"a","start":0,"end":10000,"n":3,"total":111,"kind":"final"})]
    );
}

#[test]
fn the_at_least_once_sink_delivers_every_result_and_dead_letters() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["in", "out", "dlq", "in-2", "out-2", "dlq-2"] {
        broker.create_topic(t, 1).unwrap();
    }
    let pipeline = |n: &str| {
        format!(
            r#"
source: {{topics: [in{n}]}}
time: {{type: event, field: ts}}
key: [user]
window: {{type: tumbling, size: 10s}}
aggregates: [{{name: n, fn: count}}, {{name: total, fn: sum, field: amount}}]
sink: {{topic: out{n}, deliveryGuarantee: at-least-once}}
deadLetter: {{topic: dlq{n}}}
"#
        )
    };

    // A clean run: every result exactly once, dead letters as with exactly-once.
    produce(
        &b,
        "in",
        &[
            rec("a", 1_000, 1),
            rec("a", 3_000, 2),
            rec("b", 4_000, 5),
            ProduceRecord::keyed("a", "{oops"),
            rec("a", 12_000, 7),
            rec("b", 15_000, 1), // watermark 14 999: [0, 10 s) fires
            rec("a", 1_500, 1),  // too late
            rec("zz", CLOSE_TS, 0),
        ],
    )
    .unwrap();
    let job = common::write(
        dir.path(),
        "alo.yaml",
        &common::manifest(
            "alo",
            &pipeline(""),
            &file_state(&dir.path().join("alo"), "heap", "500ms"),
        ),
    );
    let mut w = common::start_worker(&job, &b, &dir.path().join("alo-data"), &[], "alo");
    let out = consume_all(
        &b,
        "out",
        true,
        4,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .unwrap();
    let dead = consume_all(
        &b,
        "dlq",
        true,
        2,
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .unwrap();
    let status = wait_status(&w, "counted its output", |s| s["recordsOut"] == 4);
    stop(&mut w);
    let expected = vec![
        json!({"user":"a","start":0,"end":10000,"n":2,"total":3,"kind":"final"}),
        json!({"user":"b","start":0,"end":10000,"n":1,"total":5,"kind":"final"}),
        json!({"user":"a","start":10000,"end":20000,"n":1,"total":7,"kind":"final"}),
        json!({"user":"b","start":10000,"end":20000,"n":1,"total":1,"kind":"final"}),
    ];
    let got: Vec<Value> = out
        .iter()
        .map(|r| summary(&r.value_json().unwrap(), "user", &["n", "total"]))
        .collect();
    assert_eq!(by_window(got, "user"), expected);
    for r in &out {
        let v = r.value_json().unwrap();
        assert_eq!(r.key_str(), Some(v["key"].to_string()), "{v}");
    }
    let reasons: Vec<(String, String, String)> = dead
        .iter()
        .map(|d| {
            (
                d.header_str("rivulet.reason").unwrap_or_default(),
                d.header_str("rivulet.source.offset").unwrap_or_default(),
                d.value_str(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("malformed".into(), "3".into(), "{oops".into()),
            (
                "late".into(),
                "6".into(),
                r#"{"user":"a","ts":1500,"amount":1}"#.into()
            ),
        ]
    );
    for d in &dead {
        assert_eq!(d.key_str().as_deref(), Some("a"));
        assert_eq!(d.header_str("rivulet.source.topic").as_deref(), Some("in"));
        assert_eq!(
            d.header_str("rivulet.source.partition").as_deref(),
            Some("0")
        );
        assert!(d.header_str("rivulet.error").is_some_and(|e| !e.is_empty()));
    }
    let n = |k: &str| status[k].as_u64().unwrap();
    assert_eq!(
        (
            n("recordsIn"),
            n("recordsProcessed"),
            n("recordsMalformed"),
            n("recordsLate")
        ),
        (8, 6, 1, 1)
    );

    // A crash after the first results: everything still arrives, at least once.
    produce(
        &b,
        "in-2",
        &[rec("a", 1_000, 1), rec("b", 4_000, 5), rec("a", 12_000, 7)],
    )
    .unwrap();
    let job = common::write(
        dir.path(),
        "alo-2.yaml",
        &common::manifest(
            "alo-2",
            &pipeline("-2"),
            &file_state(&dir.path().join("alo-2"), "heap", "500ms"),
        ),
    );
    let data = dir.path().join("alo-2-data");
    let mut w = common::start_worker(&job, &b, &data, &[], "alo-2-first");
    let first = consume_all(
        &b,
        "out-2",
        false,
        2,
        Duration::from_millis(200),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(first.len(), 2, "{}", w.process.log_tail(40));
    w.process.kill9();
    produce(&b, "in-2", &[rec("b", 15_000, 1), rec("zz", CLOSE_TS, 0)]).unwrap();
    let mut w = common::start_worker(&job, &b, &data, &[], "alo-2-second");
    let mut out = Vec::new();
    let complete = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        out = consume_all(
            &b,
            "out-2",
            false,
            4,
            Duration::from_millis(500),
            Duration::from_secs(5),
        )
        .unwrap();
        out.iter()
            .filter(|r| r.value_str().contains("\"windowStart\":10000"))
            .count()
            >= 2
    });
    assert!(complete, "{}", w.process.log_tail(40));
    stop(&mut w);
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for r in &out {
        let s = summary(&r.value_json().unwrap(), "user", &["n", "total"]);
        *times.entry(s.to_string()).or_default() += 1;
    }
    let expected = [
        json!({"user":"a","start":0,"end":10000,"n":1,"total":1,"kind":"final"}),
        json!({"user":"b","start":0,"end":10000,"n":1,"total":5,"kind":"final"}),
        json!({"user":"a","start":10000,"end":20000,"n":1,"total":7,"kind":"final"}),
        json!({"user":"b","start":10000,"end":20000,"n":1,"total":1,"kind":"final"}),
    ];
    let mut want: Vec<String> = expected.iter().map(Value::to_string).collect();
    want.sort();
    assert_eq!(
        times.keys().cloned().collect::<Vec<_>>(),
        want,
        "every result at least once, nothing else: {times:?}"
    );
}

#[test]
fn csv_with_projection_filter_and_event_time_from_a_column() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["in", "out", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }
    let line = |key: &str, text: &str| ProduceRecord::keyed(key.to_string(), text.to_string());
    produce(
        &b,
        "in",
        &[
            line("a", "1000,a,10,/home"),
            line("a", "2000,a,9,/home"), // 9 < 10: filtered ("9" > "10" as text)
            line("b", "3000,b,100,/cart"),
            line("a", "4000,a,25,/cart"),
            line("b", "5000,b,5,/home"),      // filtered
            line("a", "6000,a,50,/health"),   // filtered
            line("a", "bad line"),            // one column: malformed
            line("a", "12000,a,11,\"/x,y\""), // watermark 11 999: [0, 10 s) fires
            line("zz", "1000000,zz,10,/close"),
        ],
    )
    .unwrap();
    let job = common::write(
        dir.path(),
        "csv.yaml",
        &common::manifest(
            "csv",
            r#"
source: {topics: [in]}
format: {type: csv, columns: [ts, user, amount, page]}
filter:
  - {field: amount, op: ge, value: 10}
  - {field: page, op: ne, value: /health}
project:
  - {name: who, field: user}
  - {name: at, field: ts}
  - {name: spent, field: amount}
time: {type: event, field: at}
key: [who]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: n, fn: count}
  - {name: total, fn: sum, field: spent}
  - {name: hi, fn: max, field: spent}
sink: {topic: out}
deadLetter: {topic: dlq}
"#,
            &file_state(dir.path(), "heap", "500ms"),
        ),
    );
    let mut w = common::start_worker(&job, &b, &dir.path().join("data"), &[], "csv");
    let out = consume_all(
        &b,
        "out",
        true,
        3,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .unwrap();
    let dead = consume_all(
        &b,
        "dlq",
        true,
        1,
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .unwrap();
    let status = wait_status(&w, "read everything", |s| s["recordsIn"] == 9);
    stop(&mut w);
    let got: Vec<Value> = out
        .iter()
        .map(|r| summary(&r.value_json().unwrap(), "who", &["n", "total", "hi"]))
        .collect();
    assert_eq!(
        by_window(got, "who"),
        vec![
            json!({"who":"a","start":0,"end":10000,"n":2,"total":35,"hi":25,"kind":"final"}),
            json!({"who":"b","start":0,"end":10000,"n":1,"total":100,"hi":100,"kind":"final"}),
            json!({"who":"a","start":10000,"end":20000,"n":1,"total":11,"hi":11,"kind":"final"}),
        ]
    );
    for r in &out {
        let v = r.value_json().unwrap();
        assert_eq!(r.key_str(), Some(v["key"].to_string()), "{v}");
        assert!(
            v["key"].get("user").is_none(),
            "keyed by the projected name: {v}"
        );
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].header_str("rivulet.reason").as_deref(),
        Some("malformed")
    );
    assert_eq!(dead[0].value_str(), "bad line");
    let n = |k: &str| status[k].as_u64().unwrap();
    assert_eq!(
        (
            n("recordsIn"),
            n("recordsProcessed"),
            n("recordsFiltered"),
            n("recordsMalformed")
        ),
        (9, 5, 3, 1)
    );
}

#[test]
fn processing_time_windows_count_every_record_once() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["in", "out", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }
    let job = common::write(
        dir.path(),
        "proc.yaml",
        &common::manifest(
            "proc",
            r#"
source: {topics: [in]}
time: {type: processing}
key: [user]
window: {type: tumbling, size: 1s}
aggregates: [{name: n, fn: count}]
sink: {topic: out}
deadLetter: {topic: dlq}
"#,
            &file_state(dir.path(), "heap", "500ms"),
        ),
    );
    let mut w = common::start_worker(&job, &b, &dir.path().join("data"), &[], "proc");
    common::wait_ready(&mut w, Duration::from_secs(30));
    let started = now_ms();
    // Three bursts 700 ms apart, so the records fall into more than one window.
    let (per_a, per_b, bursts) = (10, 5, 3);
    for _ in 0..bursts {
        let mut batch = Vec::new();
        for i in 0..per_a + per_b {
            let user = if i < per_a { "a" } else { "b" };
            batch.push(ProduceRecord::keyed(
                user,
                format!(r#"{{"user":"{user}","i":{i}}}"#),
            ));
        }
        produce(&b, "in", &batch).unwrap();
        std::thread::sleep(Duration::from_millis(700));
    }
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    let mut out = Vec::new();
    let done = wait_until(Duration::from_secs(30), Duration::from_millis(300), || {
        out = consume_all(
            &b,
            "out",
            true,
            2,
            Duration::from_millis(500),
            Duration::from_secs(5),
        )
        .unwrap();
        totals.clear();
        for r in &out {
            let v = r.value_json().unwrap();
            *totals
                .entry(v["key"]["user"].as_str().unwrap().to_string())
                .or_default() += v["n"].as_i64().unwrap();
        }
        totals.get("a") == Some(&(per_a * bursts)) && totals.get("b") == Some(&(per_b * bursts))
    });
    let finished = now_ms();
    assert!(
        done,
        "totals {totals:?}\n{}",
        out.iter()
            .map(|r| r.value_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Nothing more arrives, and no window is emitted twice.
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut w);
    let out = consume_all(
        &b,
        "out",
        true,
        out.len(),
        Duration::from_secs(1),
        Duration::from_secs(10),
    )
    .unwrap();
    let mut seen: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for r in &out {
        let v = r.value_json().unwrap();
        let start = v["windowStart"].as_i64().unwrap();
        assert_eq!(v["windowEnd"].as_i64().unwrap(), start + 1_000, "{v}");
        assert_eq!(start.rem_euclid(1_000), 0, "{v}");
        assert_eq!(v["kind"], "final", "{v}");
        assert!(
            start >= started - 1_000 && start <= finished,
            "window {start} is not wall-clock time between {started} and {finished}"
        );
        let user = v["key"]["user"].as_str().unwrap().to_string();
        assert!(
            seen.insert((user, start), v["n"].as_i64().unwrap())
                .is_none(),
            "window emitted twice: {v}"
        );
    }
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for ((user, _), n) in &seen {
        *sums.entry(user.clone()).or_default() += n;
    }
    assert_eq!(
        sums,
        BTreeMap::from([("a".to_string(), 30), ("b".to_string(), 15)])
    );
}

/// One Prometheus sample: name, labels as written (`{a="b"}` or empty), value.
fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            Some((name.to_string(), labels.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sample(all: &[(String, String, f64)], name: &str, labels: &str) -> Option<f64> {
    all.iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|(_, _, v)| *v)
}

#[test]
fn metrics_and_health_endpoints() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["in", "out", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }
    produce(
        &b,
        "in",
        &[
            rec("a", 1_000, 1),
            rec("a", 2_000, 2),
            rec("b", 3_000, 3),
            ProduceRecord::keyed("b", "{not json"),
            rec("zz", CLOSE_TS, 0), // fires [0, 10 s) for a and b; zz's window stays open
        ],
    )
    .unwrap();
    let job = common::write(
        dir.path(),
        "metrics.yaml",
        &common::manifest(
            "metrics",
            TUMBLING,
            &file_state(dir.path(), "heap", "500ms"),
        ),
    );
    let mut w = common::start_worker(&job, &b, &dir.path().join("data"), &[], "metrics");
    let http = w.http.clone();
    let code = |path: &str| {
        http_request(&http, "GET", path, &[], b"", Duration::from_secs(2))
            .map(|r| r.status)
            .ok()
    };
    common::wait_ready(&mut w, Duration::from_secs(30));
    assert_eq!(code("/healthz"), Some(200));
    assert_eq!(code("/readyz"), Some(200));

    let lag = r#"{topic="in",partition="0"}"#;
    let mut all = Vec::new();
    let settled = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        all = samples(&common::get(&http, "/metrics").unwrap_or_default());
        sample(&all, "rivulet_records_in_total", "") == Some(5.0)
            && sample(&all, "rivulet_end_to_end_latency_seconds_count", "") == Some(2.0)
            && sample(&all, "rivulet_source_lag_records", lag) == Some(0.0)
            && sample(&all, "rivulet_checkpoints_completed_total", "").unwrap_or(0.0) >= 2.0
    });
    let text = common::get(&http, "/metrics").unwrap_or_default();
    assert!(settled, "{text}\n{}", w.process.log_tail(40));
    let now = now_ms() as f64;
    let get = |name: &str| {
        sample(&all, name, "").unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
    };
    assert_eq!(get("rivulet_records_in_total"), 5.0);
    assert_eq!(get("rivulet_records_processed_total"), 4.0);
    assert_eq!(get("rivulet_records_malformed_total"), 1.0);
    assert_eq!(get("rivulet_records_filtered_total"), 0.0);
    assert_eq!(get("rivulet_records_out_total"), 2.0);
    assert_eq!(
        sample(
            &all,
            "rivulet_dead_letter_records_total",
            r#"{reason="malformed"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        all.iter()
            .filter(|(n, _, _)| n == "rivulet_dead_letter_records_total")
            .count(),
        1,
        "only the malformed reason occurred: {text}"
    );
    assert_eq!(sample(&all, "rivulet_source_lag_records", lag), Some(0.0));
    // The watermark is CLOSE_TS − 1 (1970), so its delay is about the wall clock.
    let delay = get("rivulet_watermark_delay_ms");
    let expected_delay = now - (CLOSE_TS - 1) as f64;
    assert!(
        delay <= expected_delay && delay > expected_delay - 60_000.0,
        "watermark delay {delay} vs {expected_delay}"
    );
    assert_eq!(get("rivulet_watermark_ms"), (CLOSE_TS - 1) as f64);
    // Checkpoints: one duration observation per completed checkpoint (a checkpoint may
    // complete while the scrape is being encoded, hence the difference of one).
    let completed = get("rivulet_checkpoints_completed_total");
    assert!(completed >= 2.0);
    assert!(text.contains("# TYPE rivulet_checkpoint_duration_seconds histogram"));
    let duration_count = get("rivulet_checkpoint_duration_seconds_count");
    assert!(
        (duration_count - completed).abs() <= 1.0,
        "{duration_count} durations for {completed} checkpoints"
    );
    assert_eq!(
        sample(
            &all,
            "rivulet_checkpoint_duration_seconds_bucket",
            r#"{le="+Inf"}"#
        ),
        Some(duration_count)
    );
    let duration_sum = get("rivulet_checkpoint_duration_seconds_sum");
    assert!(duration_sum > 0.0 && duration_sum < 30.0 * duration_count);
    assert_eq!(get("rivulet_checkpoint_failures_total"), 0.0);
    // zz's open window is in the state.
    assert!(get("rivulet_checkpoint_size_bytes") > 0.0);
    assert!(get("rivulet_last_checkpoint_id") >= 2.0);
    for g in ["rivulet_busy_permille", "rivulet_backpressure_permille"] {
        let v = get(g);
        assert!((0.0..=1000.0).contains(&v), "{g} = {v}");
    }
    // One latency observation per result written; both took less than a minute.
    assert!(text.contains("# TYPE rivulet_end_to_end_latency_seconds histogram"));
    assert_eq!(get("rivulet_end_to_end_latency_seconds_count"), 2.0);
    let latency = get("rivulet_end_to_end_latency_seconds_sum");
    assert!((0.0..120.0).contains(&latency), "latency sum {latency}");
    assert_eq!(
        sample(
            &all,
            "rivulet_end_to_end_latency_seconds_bucket",
            r#"{le="+Inf"}"#
        ),
        Some(2.0)
    );
    stop(&mut w);
}

/// Appends `spec.restoreFrom` to a manifest made by [`common::manifest`] (whose last
/// section is `spec.state`).
fn with_restore_from(manifest: &str, url: &str) -> String {
    format!("{}  restoreFrom: {url}\n", manifest)
}

#[test]
fn a_new_job_continues_from_another_jobs_checkpoint() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["in", "out", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }
    let state = file_state(dir.path(), "heap", "500ms");
    let storage = dir.path().join("snapshots");

    // Job A: [0, 10 s) completes, [10 s, 20 s) has begun for a.
    produce(
        &b,
        "in",
        &[rec("a", 1_000, 1), rec("b", 2_000, 2), rec("a", 15_000, 4)],
    )
    .unwrap();
    let job_a = common::write(
        dir.path(),
        "a.yaml",
        &common::manifest("job-a", TUMBLING, &state),
    );
    let mut a = common::start_worker(&job_a, &b, &dir.path().join("data-a"), &[], "job-a");
    let first = consume_all(
        &b,
        "out",
        true,
        2,
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(first.len(), 2, "{}", a.process.log_tail(40));
    // Let a checkpoint follow the committed results, so A's last epoch holds no output.
    let s = wait_status(&a, "read its input", |s| s["recordsOut"] == 2);
    let after = last_checkpoint(&s);
    wait_status(&a, "checkpointed again", |s| last_checkpoint(s) > after);
    stop(&mut a);
    let (newest, newest_dir) = checkpoint_dirs(&storage, "job-a").last().cloned().unwrap();
    let url = format!("file://{}", newest_dir.display());

    // Job B: a different name, no checkpoints of its own, A's newest checkpoint to start from.
    produce(
        &b,
        "in",
        &[
            rec("a", 16_000, 8),
            rec("b", 17_000, 16),
            rec("zz", CLOSE_TS, 0),
        ],
    )
    .unwrap();
    let job_b = common::write(
        dir.path(),
        "b.yaml",
        &with_restore_from(&common::manifest("job-b", TUMBLING, &state), &url),
    );
    let mut bw = common::start_worker(&job_b, &b, &dir.path().join("data-b"), &[], "job-b");
    let out = consume_all(
        &b,
        "out",
        true,
        4,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .unwrap();
    let s = wait_status(&bw, "read its input", |s| s["recordsIn"] == 3);
    stop(&mut bw);
    assert_eq!(s["restoredFrom"], json!(newest), "{s}");
    assert!(
        logged_for_checkpoint(&bw, "restored state", newest),
        "{}",
        bw.process.log_tail(40)
    );
    assert!(bw.process.logs().contains("starting from savepoint"));
    let got: Vec<Value> = out
        .iter()
        .map(|r| summary(&r.value_json().unwrap(), "user", &["n", "total"]))
        .collect();
    assert_eq!(
        by_window(got, "user"),
        vec![
            json!({"user":"a","start":0,"end":10000,"n":1,"total":1,"kind":"final"}),
            json!({"user":"b","start":0,"end":10000,"n":1,"total":2,"kind":"final"}),
            // a's window holds A's record at 15 s and B's at 16 s.
            json!({"user":"a","start":10000,"end":20000,"n":2,"total":12,"kind":"final"}),
            json!({"user":"b","start":10000,"end":20000,"n":1,"total":16,"kind":"final"}),
        ]
    );
    assert!(
        !checkpoint_dirs(&storage, "job-b").is_empty(),
        "B checkpoints under its own name"
    );
}

#[test]
fn a_stateless_pipeline_emits_each_kept_record_once_with_its_key() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["in", "out", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }
    let input = [
        ProduceRecord::keyed(
            "k1",
            r#"{"user":"a","amount":10,"meta":{"page":"/x"},"junk":1}"#,
        ),
        ProduceRecord::keyed("k2", r#"{"user":"b","amount":3,"meta":{"page":"/y"}}"#), // filtered
        ProduceRecord::new(r#"{"user":"c","amount":7.5,"meta":{"page":"/z"}}"#), // no Kafka key
        ProduceRecord::keyed("k4", r#"{"user":"d","amount":"12"}"#), // no page: field left out
        ProduceRecord::keyed("k5", "[1,2]"),                         // malformed
        ProduceRecord::keyed("k6", r#"{"user":"e","amount":5}"#),    // 5 > 5 is false
        ProduceRecord::keyed("k7", r#"{"user":"f","amount":6,"meta":{"page":"/w"}}"#),
    ];
    produce(&b, "in", &input).unwrap();
    let job = common::write(
        dir.path(),
        "stateless.yaml",
        &common::manifest(
            "stateless",
            r#"
source: {topics: [in]}
time: {type: processing}
filter: [{field: amount, op: gt, value: 5}]
project:
  - {name: who, field: user}
  - {name: amt, field: amount}
  - {name: where, field: meta.page}
sink: {topic: out}
deadLetter: {topic: dlq}
"#,
            &file_state(dir.path(), "heap", "500ms"),
        ),
    );
    let mut w = common::start_worker(&job, &b, &dir.path().join("data"), &[], "stateless");
    let out = consume_all(
        &b,
        "out",
        true,
        4,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .unwrap();
    let dead = consume_all(
        &b,
        "dlq",
        true,
        1,
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .unwrap();
    let status = wait_status(&w, "read everything", |s| s["recordsIn"] == 7);
    stop(&mut w);
    let got: Vec<(Option<String>, Value)> = out
        .iter()
        .map(|r| (r.key_str(), r.value_json().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Some("k1".to_string()),
                json!({"who":"a","amt":10,"where":"/x"})
            ),
            (None, json!({"who":"c","amt":7.5,"where":"/z"})),
            (Some("k4".to_string()), json!({"who":"d","amt":"12"})),
            (
                Some("k7".to_string()),
                json!({"who":"f","amt":6,"where":"/w"})
            ),
        ]
    );
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key_str().as_deref(), Some("k5"));
    assert_eq!(
        dead[0].header_str("rivulet.reason").as_deref(),
        Some("malformed")
    );
    let n = |k: &str| status[k].as_u64().unwrap();
    assert_eq!(
        (
            n("recordsIn"),
            n("recordsProcessed"),
            n("recordsFiltered"),
            n("recordsMalformed"),
            n("recordsOut")
        ),
        (7, 4, 2, 1, 4)
    );
}

/// Job A with a checkpoint interval so long that its only checkpoint is the final one at
/// stop, so that checkpoint's epoch holds all of A's output (committed by A as it stops).
/// Job B starts from that checkpoint with `restoreFrom`: B must not publish A's output again.
#[test]
fn restore_from_another_job_does_not_repeat_its_committed_output() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["in", "out", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }
    let storage = dir.path().join("snapshots");
    produce(
        &b,
        "in",
        &[rec("a", 1_000, 1), rec("b", 2_000, 2), rec("a", 15_000, 4)],
    )
    .unwrap();
    let job_a = common::write(
        dir.path(),
        "a.yaml",
        &common::manifest("job-a", TUMBLING, &file_state(dir.path(), "heap", "1h")),
    );
    let mut a = common::start_worker(&job_a, &b, &dir.path().join("data-a"), &[], "job-a");
    wait_status(&a, "read its input", |s| {
        s["recordsIn"] == 3 && s["watermarkMs"] == 14_999
    });
    stop(&mut a);
    let dirs = checkpoint_dirs(&storage, "job-a");
    assert_eq!(dirs.len(), 1, "only the final checkpoint: {dirs:?}");
    let first = consume_all(
        &b,
        "out",
        true,
        2,
        Duration::from_secs(1),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(first.len(), 2, "A committed its results as it stopped");

    produce(
        &b,
        "in",
        &[
            rec("a", 16_000, 8),
            rec("b", 17_000, 16),
            rec("zz", CLOSE_TS, 0),
        ],
    )
    .unwrap();
    let url = format!("file://{}", dirs[0].1.display());
    let job_b = common::write(
        dir.path(),
        "b.yaml",
        &with_restore_from(
            &common::manifest("job-b", TUMBLING, &file_state(dir.path(), "heap", "500ms")),
            &url,
        ),
    );
    let mut bw = common::start_worker(&job_b, &b, &dir.path().join("data-b"), &[], "job-b");
    let out = consume_all(
        &b,
        "out",
        true,
        4,
        Duration::from_secs(3),
        Duration::from_secs(30),
    )
    .unwrap();
    stop(&mut bw);
    let got: Vec<Value> = out
        .iter()
        .map(|r| summary(&r.value_json().unwrap(), "user", &["n", "total"]))
        .collect();
    assert_eq!(
        by_window(got, "user"),
        vec![
            json!({"user":"a","start":0,"end":10000,"n":1,"total":1,"kind":"final"}),
            json!({"user":"b","start":0,"end":10000,"n":1,"total":2,"kind":"final"}),
            json!({"user":"a","start":10000,"end":20000,"n":2,"total":12,"kind":"final"}),
            json!({"user":"b","start":10000,"end":20000,"n":1,"total":16,"kind":"final"}),
        ],
        "B's log:\n{}",
        bw.process.log_tail(30)
    );
}

/// Job B starts from job A's checkpoint `N` (`restoreFrom`); its own checkpoints are
/// numbered from `N + 1`. B crashes between writing its first checkpoint's manifest and committing
/// that epoch. When B restarts, it must commit the epoch's output.
#[test]
fn restore_from_another_job_then_a_crash_before_commit_loses_no_output() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["in", "out", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }
    let storage = dir.path().join("snapshots");
    produce(&b, "in", &[rec("a", 1_000, 1)]).unwrap();
    let job_a = common::write(
        dir.path(),
        "a.yaml",
        &common::manifest("job-a", TUMBLING, &file_state(dir.path(), "heap", "500ms")),
    );
    let mut a = common::start_worker(&job_a, &b, &dir.path().join("data-a"), &[], "job-a");
    wait_status(&a, "checkpointed its input", |s| {
        s["recordsIn"] == 1 && last_checkpoint(s) >= 2
    });
    stop(&mut a);
    let (newest, newest_dir) = checkpoint_dirs(&storage, "job-a").last().cloned().unwrap();
    assert!(newest >= 3);

    // B: only a final checkpoint (its first), and a crash right after its manifest.
    produce(&b, "in", &[rec("zz", CLOSE_TS, 0)]).unwrap();
    let job_b = common::write(
        dir.path(),
        "b.yaml",
        &with_restore_from(
            &common::manifest("job-b", TUMBLING, &file_state(dir.path(), "heap", "1h")),
            &format!("file://{}", newest_dir.display()),
        ),
    );
    let fault = [("RIVULET_FAULT".to_string(), "after-manifest".to_string())];
    let mut bw = common::start_worker(&job_b, &b, &dir.path().join("data-b"), &fault, "job-b");
    let s = wait_status(&bw, "fired the window", |s| {
        s["recordsIn"] == 1 && s["watermarkMs"] == CLOSE_TS - 1
    });
    assert_eq!(s["restoredFrom"], json!(newest));
    bw.process.sigterm().unwrap();
    let aborted = bw.process.wait_exit(Duration::from_secs(30));
    assert!(
        aborted.is_some_and(|s| !s.success()) && bw.process.logs().contains("fault injection"),
        "{}",
        bw.process.log_tail(40)
    );
    // B numbers its checkpoints above the snapshot it started from.
    let dirs = checkpoint_dirs(&storage, "job-b");
    assert_eq!(
        dirs.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![newest + 1]
    );

    let mut bw = common::start_worker(&job_b, &b, &dir.path().join("data-b2"), &[], "job-b-2");
    let s = wait_status(&bw, "restored", |s| s["phase"] == "running");
    assert_eq!(s["restoredFrom"], json!(newest + 1));
    let out = consume_all(
        &b,
        "out",
        true,
        1,
        Duration::from_secs(3),
        Duration::from_secs(15),
    )
    .unwrap();
    stop(&mut bw);
    let got: Vec<Value> = out
        .iter()
        .map(|r| summary(&r.value_json().unwrap(), "user", &["n", "total"]))
        .collect();
    assert_eq!(
        got,
        vec![json!({"user":"a","start":0,"end":10000,"n":1,"total":1,"kind":"final"})],
        "B's log:\n{}",
        bw.process.log_tail(30)
    );
}

/// Job A crashes between checkpoint `N`'s manifest and its commit, so `N`'s output is not
/// published. Job B starts from that checkpoint and publishes it, then is killed before any
/// checkpoint of its own. Restarted, B starts from A's checkpoint again: the output must
/// not be published a second time (B's own marker records it).
#[test]
fn restore_from_an_uncommitted_snapshot_publishes_its_output_once() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    for t in ["in", "out", "dlq"] {
        broker.create_topic(t, 1).unwrap();
    }
    let storage = dir.path().join("snapshots");
    produce(
        &b,
        "in",
        &[
            rec("a", 1_000, 1),
            rec("a", 2_000, 2),
            rec("zz", CLOSE_TS, 0),
        ],
    )
    .unwrap();
    let job_a = common::write(
        dir.path(),
        "a.yaml",
        &common::manifest("job-a", TUMBLING, &file_state(dir.path(), "heap", "2s")),
    );
    let fault = [("RIVULET_FAULT".to_string(), "after-manifest".to_string())];
    let mut a = common::start_worker(&job_a, &b, &dir.path().join("data-a"), &fault, "job-a");
    let aborted = a.process.wait_exit(Duration::from_secs(30));
    assert!(
        aborted.is_some_and(|s| !s.success()) && a.process.logs().contains("fault injection"),
        "{}",
        a.process.log_tail(40)
    );
    let (newest, newest_dir) = checkpoint_dirs(&storage, "job-a").last().cloned().unwrap();
    let nothing = consume_all(
        &b,
        "out",
        true,
        0,
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
    .unwrap();
    assert!(nothing.is_empty(), "A published before its commit");

    let job_b = common::write(
        dir.path(),
        "b.yaml",
        &with_restore_from(
            &common::manifest("job-b", TUMBLING, &file_state(dir.path(), "heap", "1h")),
            &format!("file://{}", newest_dir.display()),
        ),
    );
    let mut bw = common::start_worker(&job_b, &b, &dir.path().join("data-b"), &[], "job-b");
    let s = wait_status(&bw, "running", |s| s["phase"] == "running");
    assert_eq!(s["restoredFrom"], json!(newest));
    assert!(
        bw.process
            .logs()
            .contains("committing the restored checkpoint's output"),
        "{}",
        bw.process.log_tail(40)
    );
    bw.process.kill9();
    assert!(
        !storage.join("tests/job-b/checkpoints").exists(),
        "B took a checkpoint of its own"
    );

    let mut bw = common::start_worker(&job_b, &b, &dir.path().join("data-b2"), &[], "job-b-2");
    let s = wait_status(&bw, "running again", |s| s["phase"] == "running");
    assert_eq!(s["restoredFrom"], json!(newest));
    assert!(
        bw.process.logs().contains("already committed"),
        "{}",
        bw.process.log_tail(40)
    );
    stop(&mut bw);
    let out = consume_all(
        &b,
        "out",
        true,
        1,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .unwrap();
    let got: Vec<Value> = out
        .iter()
        .map(|r| summary(&r.value_json().unwrap(), "user", &["n", "total"]))
        .collect();
    assert_eq!(
        got,
        vec![json!({"user":"a","start":0,"end":10000,"n":2,"total":3,"kind":"final"})]
    );
}

/// A sink or dead-letter topic that does not exist stops the worker at once with an error
/// naming it, before anything is consumed.
#[test]
fn a_missing_sink_topic_is_a_clear_error() {
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    broker.create_topic("in", 1).unwrap();
    broker.create_topic("dlq", 1).unwrap();
    produce(&b, "in", &[rec("a", 1_000, 1)]).unwrap();
    let job = common::write(
        dir.path(),
        "job.yaml",
        &common::manifest("no-sink", TUMBLING, &file_state(dir.path(), "heap", "1s")),
    );
    let mut w = common::start_worker(&job, &b, &dir.path().join("data"), &[], "no-sink");
    let status = w.process.wait_exit(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the worker should refuse to start:\n{}",
        w.process.log_tail(30)
    );
    let err = w.process.stderr();
    assert!(
        err.contains("sink topic `out` does not exist"),
        "unclear error:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
