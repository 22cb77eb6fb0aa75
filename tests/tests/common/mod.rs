//! Shared fixtures for the end-to-end tests: StreamJob manifests, worker start-up, and
//! reading a worker's `/status`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rivulet_tests::{
    consume_all, free_port, http_request, wait_until, ConsumedRecord, ProcessBuilder,
    ProduceRecord, WorkerProcess,
};
use serde_json::Value;

/// A StreamJob manifest with the given pipeline body (YAML, indented under `pipeline:`) and
/// state section.
pub fn manifest(name: &str, pipeline: &str, state: &str) -> String {
    manifest_with_parallelism(name, pipeline, state, 1)
}

/// A StreamJob manifest like [`manifest`], with `spec.parallelism: parallelism`.
pub fn manifest_with_parallelism(
    name: &str,
    pipeline: &str,
    state: &str,
    parallelism: u32,
) -> String {
    let indent = |s: &str, n: usize| {
        s.lines()
            .map(|l| format!("{}{l}", " ".repeat(n)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "apiVersion: rivulet.dev/v1alpha1\nkind: StreamJob\nmetadata:\n  name: {name}\n  namespace: tests\nspec:\n  parallelism: {parallelism}\n  pipeline:\n{}\n  state:\n{}\n",
        indent(pipeline.trim_matches('\n'), 4),
        indent(state.trim_matches('\n'), 4)
    )
}

/// Writes `text` to `<dir>/<file>` and returns the path.
pub fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, text).expect("write manifest");
    p
}

/// A worker of `job` with its data in `data_dir`, serving HTTP on a fresh port.
pub struct Worker {
    pub process: WorkerProcess,
    pub http: String,
}

pub fn start_worker(
    job: &Path,
    bootstrap: &str,
    data_dir: &Path,
    env: &[(String, String)],
    label: &str,
) -> Worker {
    start_worker_with_args(job, bootstrap, data_dir, &[], env, label)
}

/// Like [`start_worker`], with `args` added after the common arguments (e.g. `--index`,
/// `--parallelism`, `--peers`).
pub fn start_worker_with_args(
    job: &Path,
    bootstrap: &str,
    data_dir: &Path,
    args: &[String],
    env: &[(String, String)],
    label: &str,
) -> Worker {
    let http = format!("127.0.0.1:{}", free_port());
    let process = ProcessBuilder::bin("rivulet-worker")
        .label(label)
        .arg("--job")
        .arg(job)
        .args(["--bootstrap-servers", bootstrap, "--http", &http])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RIVULET_LOG", "info,rdkafka=warn")
        .spawn()
        .expect("spawn rivulet-worker");
    Worker { process, http }
}

/// GET `path` from a worker.
pub fn get(http: &str, path: &str) -> Option<String> {
    let r = http_request(http, "GET", path, &[], b"", Duration::from_secs(2)).ok()?;
    r.is_success().then(|| r.text())
}

/// The worker's `/status` as JSON.
pub fn status(http: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&get(http, "/status")?).ok()
}

/// Waits until the worker reports ready.
pub fn wait_ready(w: &mut Worker, timeout: Duration) {
    let http = w.http.clone();
    let ok = wait_until(timeout, Duration::from_millis(100), || {
        get(&http, "/readyz").is_some()
    });
    assert!(ok, "worker never became ready:\n{}", w.process.log_tail(60));
}

/// The value of an unlabelled Prometheus sample.
pub fn metric(http: &str, name: &str) -> Option<f64> {
    let text = get(http, "/metrics")?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The sum of every sample of the Prometheus metric `name`, labelled or not (e.g. a counter
/// with one series per peer). `None` if `/metrics` cannot be read or has no such sample.
pub fn metric_sum(http: &str, name: &str) -> Option<f64> {
    let text = get(http, "/metrics")?;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.trim().rsplit_once(' ')?;
            let series_name = series.split('{').next()?;
            if series_name == name {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Event time that closes every window the tests use (their records are far earlier).
pub const CLOSE_TS: i64 = 1_000_000;

/// A JSON input record `{"user", "ts", "amount"}` keyed by `key`.
pub fn rec(key: &str, ts: i64, amount: i64) -> ProduceRecord {
    ProduceRecord::keyed(
        key.to_string(),
        format!(r#"{{"user":"{key}","ts":{ts},"amount":{amount}}}"#),
    )
}

/// A `state:` section: checkpoints to `file://<dir>/snapshots` every `interval`.
pub fn file_state(dir: &Path, backend: &str, interval: &str) -> String {
    format!(
        "backend: {backend}\ncheckpointInterval: {interval}\nstorage: file://{}\nretain: 3\n",
        dir.join("snapshots").display()
    )
}

/// A window result reduced to the key field `key`, the window, `aggs` and its kind.
pub fn summary(v: &Value, key: &str, aggs: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(key.into(), v["key"][key].clone());
    m.insert("start".into(), v["windowStart"].clone());
    m.insert("end".into(), v["windowEnd"].clone());
    for a in aggs {
        m.insert((*a).into(), v[*a].clone());
    }
    m.insert("kind".into(), v["kind"].clone());
    Value::Object(m)
}

/// Sorts summaries by window, then by key field `key` (within one watermark step windows
/// fire in key-group order).
pub fn by_window(mut v: Vec<Value>, key: &str) -> Vec<Value> {
    v.sort_by_key(|s| (s["start"].as_i64(), s[key].as_str().map(str::to_string)));
    v
}

/// One window's count, sum, min and max (the aggregates the exactly-once tests compute).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Agg {
    pub count: i64,
    pub sum: i64,
    pub min: i64,
    pub max: i64,
}

/// Checks that the window results read back are exactly `expected`: each once, none missing,
/// none extra, every value right.
pub fn assert_exact_results(
    out: &[ConsumedRecord],
    window_ms: i64,
    expected: &BTreeMap<(String, i64), Agg>,
) {
    let mut seen: BTreeMap<(String, i64), Vec<Agg>> = BTreeMap::new();
    for r in out {
        let v = r.value_json().unwrap();
        assert_eq!(v["kind"], "final", "{v}");
        let key = v["key"]["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key in {v}"))
            .to_string();
        let start = v["windowStart"].as_i64().unwrap();
        assert_eq!(v["windowEnd"].as_i64(), Some(start + window_ms), "{v}");
        seen.entry((key, start)).or_default().push(Agg {
            count: v["n"].as_i64().unwrap(),
            sum: v["total"].as_i64().unwrap(),
            min: v["lo"].as_i64().unwrap(),
            max: v["hi"].as_i64().unwrap(),
        });
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        duplicates.is_empty(),
        "{} of {} results appear more than once, e.g. {:?}",
        duplicates.len(),
        seen.len(),
        duplicates.first()
    );
    let got: BTreeMap<(String, i64), Agg> = seen
        .into_iter()
        .map(|(k, mut v)| (k, v.remove(0)))
        .collect();
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} results missing ({} read), e.g. {:?}",
        missing.len(),
        expected.len(),
        out.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        extra.is_empty(),
        "{} unexpected results, e.g. {:?}",
        extra.len(),
        &extra[..extra.len().min(5)]
    );
    for (k, v) in expected {
        assert_eq!(&got[k], v, "wrong result for {k:?}");
    }
}

/// Reads the whole `results` topic (`read_committed`) and checks it against `expected`, and
/// that the dead-letter topic `dead` is empty.
pub fn check_window_output(
    bootstrap: &str,
    results: &str,
    dead: &str,
    window_ms: i64,
    expected: &BTreeMap<(String, i64), Agg>,
) {
    let out = consume_all(
        bootstrap,
        results,
        true,
        expected.len(),
        Duration::from_secs(3),
        Duration::from_secs(120),
    )
    .unwrap();
    assert_exact_results(&out, window_ms, expected);
    let dead_letters = consume_all(
        bootstrap,
        dead,
        true,
        0,
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        dead_letters.is_empty(),
        "{} unexpected dead letters, e.g. {:?} with headers {:?}",
        dead_letters.len(),
        dead_letters.first().map(|d| d.value_str()),
        dead_letters.first().map(|d| d
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            .collect::<Vec<_>>())
    );
}

/// Event-time tumbling 1 s windows over `events` (`key`, `ts`, `amount`) with count, sum,
/// min and max, into `results` exactly once; dead letters to `dead`.
pub fn windows_to_exactly_once_sink() -> &'static str {
    r#"
source:
  topics: [events]
time:
  type: event
  field: ts
  maxOutOfOrderness: 1s
key: [key]
window:
  type: tumbling
  size: 1s
aggregates:
  - {name: n, fn: count}
  - {name: total, fn: sum, field: amount}
  - {name: lo, fn: min, field: amount}
  - {name: hi, fn: max, field: amount}
sink:
  topic: results
  deliveryGuarantee: exactly-once
deadLetter:
  topic: dead
"#
}

/// Whether every thread of process `pid` is stopped (SIGSTOP has taken effect).
pub fn frozen(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut stopped = 0;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            // The thread is gone: it cannot run either.
            continue;
        };
        // `pid (comm) state ...`; comm may contain spaces and parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        match state {
            Some('T' | 't') => stopped += 1,
            Some('Z' | 'X') => {}
            _ => return false,
        }
    }
    stopped > 0
}

/// Freezes the worker and kills it only if its sink has no transaction open; returns whether
/// it did (false: the worker was not running).
pub fn kill_outside_transaction(w: &mut Worker, data_dir: &Path) -> bool {
    let flag = data_dir.join("transaction-open");
    for _ in 0..500 {
        if !w.process.is_running() {
            return false;
        }
        if w.process.signal(libc::SIGSTOP).is_err() {
            return false;
        }
        let pid = w.process.pid();
        let is_frozen = wait_until(Duration::from_secs(2), Duration::from_millis(1), || {
            frozen(pid)
        });
        if is_frozen && !flag.exists() {
            w.process.kill9();
            return true;
        }
        let _ = w.process.signal(libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{} was never frozen outside an open transaction in 500 tries (a transaction stayed \
         open for 10 s or more):\n{}",
        w.process.label(),
        w.process.log_tail(60)
    );
}
