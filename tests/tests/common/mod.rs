//! Shared fixtures for the end-to-end tests: StreamJob manifests, worker start-up, and
//! reading a worker's `/status`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rivulet_tests::{
    free_port, http_request, wait_until, ProcessBuilder, ProduceRecord, WorkerProcess,
};
use serde_json::Value;

/// A StreamJob manifest with the given pipeline body (YAML, indented under `pipeline:`) and
/// state section.
pub fn manifest(name: &str, pipeline: &str, state: &str) -> String {
    let indent = |s: &str, n: usize| {
        s.lines()
            .map(|l| format!("{}{l}", " ".repeat(n)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "apiVersion: rivulet.dev/v1alpha1\nkind: StreamJob\nmetadata:\n  name: {name}\n  namespace: tests\nspec:\n  parallelism: 1\n  pipeline:\n{}\n  state:\n{}\n",
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
    let http = format!("127.0.0.1:{}", free_port());
    let process = ProcessBuilder::bin("rivulet-worker")
        .label(label)
        .arg("--job")
        .arg(job)
        .args(["--bootstrap-servers", bootstrap, "--http", &http])
        .arg("--data-dir")
        .arg(data_dir)
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
