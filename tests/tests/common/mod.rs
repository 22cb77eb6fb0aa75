//! Shared fixtures for the end-to-end tests: StreamJob manifests, worker start-up, and
//! reading a worker's `/status`.

#![allow(dead_code)]

pub mod cluster;
pub mod lifecycle;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rivulet_api::launch::{WorkerLaunch, WORKER_BINARY};
use rivulet_tests::{
    consume_all, free_port, http_request, wait_until, ConsumedRecord, KafkaProducer,
    ProcessBuilder, ProduceRecord, WorkerProcess,
};
use serde_json::Value;

/// Tests that run several workers and a broker take turns: two such tests at once would
/// starve a small machine and turn generous timeouts into flakes. Hold the guard for the
/// whole test.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

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

/// Starts the only worker of `job` (parallelism 1), reading from `bootstrap`, with its data
/// in `data_dir` and `env` added to its environment.
pub fn start_worker(
    job: &Path,
    bootstrap: &str,
    data_dir: &Path,
    env: &[(String, String)],
    label: &str,
) -> Worker {
    let launch = WorkerLaunch::new(job, 0, 1, data_dir, "").with_bootstrap(bootstrap);
    launch_worker(launch, env, label)
}

/// Starts the worker `launch` describes, on an HTTP port picked here (its `http` is
/// replaced), with `env` added to its environment.
pub fn launch_worker(mut launch: WorkerLaunch, env: &[(String, String)], label: &str) -> Worker {
    launch.http = format!("127.0.0.1:{}", free_port());
    let process = ProcessBuilder::bin(WORKER_BINARY)
        .label(label)
        .args(launch.args())
        .envs(launch.env())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RIVULET_LOG", "info,rdkafka=warn")
        .spawn()
        .expect("spawn rivulet-worker");
    Worker {
        process,
        http: launch.http,
    }
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

impl Agg {
    /// The aggregates of no records (`min`/`max` at their identities).
    pub fn empty() -> Self {
        Agg {
            count: 0,
            sum: 0,
            min: i64::MAX,
            max: i64::MIN,
        }
    }

    /// Accounts for one more record with `amount`.
    pub fn add(&mut self, amount: i64) {
        self.count += 1;
        self.sum += amount;
        self.min = self.min.min(amount);
        self.max = self.max.max(amount);
    }
}

/// The input of a windowed exactly-once test: `events` records over `keys` keys on
/// `partitions` partitions, one every `spacing_ms` of event time from `base`, aggregated in
/// tumbling windows of `window_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Input {
    pub partitions: i32,
    pub window_ms: i64,
    pub events: usize,
    pub keys: usize,
    pub spacing_ms: i64,
    pub base: i64,
}

impl Input {
    /// Starts an hour ago, aligned to a window: old enough that no window closes by wall
    /// clock.
    pub fn new(
        partitions: i32,
        window_ms: i64,
        events: usize,
        keys: usize,
        spacing_ms: i64,
    ) -> Self {
        let base = (now_ms() - 3_600_000) / window_ms * window_ms;
        Self {
            partitions,
            window_ms,
            events,
            keys,
            spacing_ms,
            base,
        }
    }

    /// The `i`-th event: (partition, key, event time, amount). Event time grows with `i` and
    /// is up to 400 ms out of order, inside the jobs' 1 s bound, so nothing is late (not even
    /// across a restore). Every key appears on every partition, so every key is read by
    /// every worker.
    pub fn event(&self, i: usize) -> (i32, String, i64, i64) {
        let key = format!("k{}", (i * 7 + i / 13) % self.keys);
        let jitter = ((i as i64) * 7919) % 400;
        let ts = self.base + (i as i64) * self.spacing_ms - jitter;
        let amount = ((i * 31) % 97) as i64 - 10;
        ((i % self.partitions as usize) as i32, key, ts, amount)
    }

    /// The `i`-th event as a record `{"key", "ts", "amount"}` on its partition.
    pub fn record(&self, i: usize) -> ProduceRecord {
        let (partition, key, ts, amount) = self.event(i);
        ProduceRecord::keyed(
            key.clone(),
            format!(r#"{{"key":"{key}","ts":{ts},"amount":{amount}}}"#),
        )
        .with_partition(partition)
    }

    /// Event time past the last event: every event's event time is below it.
    pub fn end_ts(&self) -> i64 {
        self.base + self.events as i64 * self.spacing_ms
    }

    /// Event time of the closing records: far past every window, yet the closing records'
    /// own window (key `zz-close`) never closes, so they produce no result.
    pub fn close_ts(&self) -> i64 {
        self.end_ts() + 600_000
    }

    /// One record on every partition that pushes its watermark past the last window.
    pub fn close_records(&self) -> Vec<ProduceRecord> {
        let ts = self.close_ts();
        (0..self.partitions)
            .map(|p| {
                ProduceRecord::keyed(
                    "zz-close",
                    format!(r#"{{"key":"zz-close","ts":{ts},"amount":0}}"#),
                )
                .with_partition(p)
            })
            .collect()
    }

    /// The number of records on each partition once events `0..upto` (and, if `closed`, the
    /// closing records) are produced: the offset a reader of the whole partition is at.
    pub fn offsets(&self, upto: usize, closed: bool) -> BTreeMap<i32, i64> {
        let mut m: BTreeMap<i32, i64> = (0..self.partitions)
            .map(|p| (p, i64::from(closed)))
            .collect();
        for i in 0..upto {
            *m.get_mut(&self.event(i).0).unwrap() += 1;
        }
        m
    }

    /// Records on `partition`, the closing one included: the offset a worker that read the
    /// whole partition reports as next.
    pub fn records_on(&self, partition: i32) -> i64 {
        (0..self.events)
            .filter(|&i| self.event(i).0 == partition)
            .count() as i64
            + 1
    }

    /// The true results, computed without any of Rivulet's code.
    pub fn truth(&self) -> BTreeMap<(String, i64), Agg> {
        let mut t: BTreeMap<(String, i64), Agg> = BTreeMap::new();
        for i in 0..self.events {
            let (_, key, ts, amount) = self.event(i);
            let start = ts.div_euclid(self.window_ms) * self.window_ms;
            t.entry((key, start)).or_insert_with(Agg::empty).add(amount);
        }
        t
    }

    /// The end of the last window with a result; a watermark past it has fired them all.
    pub fn last_window_end(&self) -> i64 {
        (0..self.events)
            .map(|i| self.event(i).2.div_euclid(self.window_ms) * self.window_ms + self.window_ms)
            .max()
            .unwrap_or(self.base)
    }
}

/// Produces events `range` of `input` to `events` in flushed chunks of 2000 (and then the
/// closing records if `close`).
pub fn produce(bootstrap: &str, input: &Input, range: std::ops::Range<usize>, close: bool) {
    let producer = KafkaProducer::idempotent(bootstrap).unwrap();
    let records: Vec<ProduceRecord> = range.map(|i| input.record(i)).collect();
    for chunk in records.chunks(2_000) {
        producer.send("events", chunk).unwrap();
        producer.flush().unwrap();
    }
    if close {
        producer.send("events", &input.close_records()).unwrap();
        producer.flush().unwrap();
    }
}

/// Produces all of `input` to `events` on a thread, 400 records every 330 ms (~20 s for
/// 24 000 events), then the closing records; clears `producing` when done.
pub fn produce_slowly(bootstrap: &str, input: Input, producing: Arc<AtomicBool>) -> JoinHandle<()> {
    let bootstrap = bootstrap.to_string();
    std::thread::spawn(move || {
        let p = KafkaProducer::idempotent(&bootstrap).unwrap();
        let chunk = 400;
        for start in (0..input.events).step_by(chunk) {
            let recs: Vec<ProduceRecord> = (start..(start + chunk).min(input.events))
                .map(|i| input.record(i))
                .collect();
            p.send("events", &recs).unwrap();
            p.flush().unwrap();
            std::thread::sleep(Duration::from_millis(330));
        }
        p.send("events", &input.close_records()).unwrap();
        p.flush().unwrap();
        producing.store(false, Ordering::Relaxed);
    })
}

/// Shuffle ports for `n` workers, picked once: a restarted worker must listen on the same
/// one. They are taken below the kernel's ephemeral port range, so no outgoing connection and
/// no `bind(0)` (how every other port of these tests is picked) can take one while its
/// worker is down.
pub fn peer_ports(n: usize) -> Vec<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let mut rng = rand::rng();
    let mut ports: Vec<u16> = Vec::new();
    let mut tries = 0;
    while ports.len() < n {
        tries += 1;
        let port = if ephemeral_low >= 12_000 && tries < 1_000 {
            rng.random_range(ephemeral_low - 10_000..ephemeral_low - 100)
        } else {
            free_port()
        };
        if !ports.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

/// A `--peers` value for `n` workers: `127.0.0.1:<port>` for each of [`peer_ports`].
pub fn peers(n: usize) -> String {
    peer_ports(n)
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `lastCheckpoint.id` of a status document (0 when there is none yet).
pub fn last_checkpoint(s: &Value) -> u64 {
    s["lastCheckpoint"]["id"].as_u64().unwrap_or(0)
}

/// The last lines of every worker's log, for assertion messages.
pub fn tails(workers: &[Worker]) -> String {
    workers
        .iter()
        .map(|w| w.process.log_tail(40))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Window results by (key, window start): (window end, count, sum, min and max).
pub type WindowTruth = BTreeMap<(String, i64), (i64, Agg)>;

/// Checks that the window results read back are exactly `truth`, keyed by the key field
/// `key` (a number is taken as its JSON text) with the aggregates `n`, `total`, `lo` and
/// `hi`: each result once and final, none missing, none extra, every value right.
/// `context` starts every message.
pub fn assert_windows(out: &[ConsumedRecord], key: &str, truth: &WindowTruth, context: &str) {
    let mut got: BTreeMap<(String, i64), Vec<(i64, Agg)>> = BTreeMap::new();
    for r in out {
        let v = r.value_json().unwrap();
        assert_eq!(v["kind"], "final", "{context}{v}");
        let key = match &v["key"][key] {
            Value::String(s) => s.clone(),
            Value::Null => panic!("{context}no key in {v}"),
            other => other.to_string(),
        };
        let agg = Agg {
            count: v["n"].as_i64().unwrap(),
            sum: v["total"].as_i64().unwrap(),
            min: v["lo"].as_i64().unwrap(),
            max: v["hi"].as_i64().unwrap(),
        };
        got.entry((key, v["windowStart"].as_i64().unwrap()))
            .or_default()
            .push((v["windowEnd"].as_i64().unwrap(), agg));
    }
    let duplicated = got.values().filter(|v| v.len() > 1).count();
    let missing: Vec<_> = truth.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !truth.contains_key(*k)).collect();
    assert!(
        duplicated == 0 && missing.is_empty() && extra.is_empty(),
        "{context}{} results read for {} true ones: {duplicated} appear more than once, {} \
         missing (e.g. {:?}), {} unexpected (e.g. {:?})",
        out.len(),
        truth.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)]
    );
    for (k, want) in truth {
        assert_eq!(&got[k][0], want, "{context}wrong result for {k:?}");
    }
}

/// [`assert_windows`] for tumbling windows of `window_ms` keyed by the field `key`.
pub fn assert_exact_results(
    out: &[ConsumedRecord],
    window_ms: i64,
    expected: &BTreeMap<(String, i64), Agg>,
) {
    let truth: WindowTruth = expected
        .iter()
        .map(|((k, start), agg)| ((k.clone(), *start), (start + window_ms, agg.clone())))
        .collect();
    assert_windows(out, "key", &truth, "");
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
    assert_no_dead_letters(bootstrap, dead, "");
}

/// Checks that the dead-letter topic `topic` is empty (`context` starts the message).
pub fn assert_no_dead_letters(bootstrap: &str, topic: &str, context: &str) {
    let dead = consume_all(
        bootstrap,
        topic,
        true,
        0,
        Duration::from_secs(2),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        dead.is_empty(),
        "{context}{} unexpected dead letters, e.g. {:?} with headers {:?}",
        dead.len(),
        dead.first().map(|d| d.value_str()),
        dead.first().map(|d| d
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
            .collect::<Vec<_>>())
    );
}

/// Polls every worker's `/status` every 200 ms until all of them answer and `pred` holds for
/// their documents at once; returns those documents. Panics, with `context` before the
/// message, if a worker exits, or at `timeout`.
pub fn wait_statuses(
    workers: &mut [Worker],
    context: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut last = vec![Value::Null; workers.len()];
    loop {
        let mut complete = true;
        for (i, seen) in last.iter_mut().enumerate() {
            if let Some(exit) = workers[i].process.try_exit_status() {
                panic!(
                    "{context}worker {i} exited ({exit}) while waiting until {what}\n{}",
                    tails(workers)
                );
            }
            *seen = status(&workers[i].http).unwrap_or(Value::Null);
            complete &= !seen.is_null();
        }
        if complete && pred(&last) {
            return last;
        }
        if Instant::now() >= deadline {
            let statuses: Vec<String> = last
                .iter()
                .enumerate()
                .map(|(i, s)| format!("worker {i}: {s}"))
                .collect();
            panic!(
                "{context}not {what} within {timeout:?}; last statuses:\n{}\n{}",
                statuses.join("\n"),
                tails(workers)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Event-time tumbling 1 s windows over `events` (`key`, `ts`, `amount`) with count, sum,
/// min and max, into `results` exactly once; dead letters to `dead`. Worker `i` writes to
/// partition `i mod partitions` (the `fixed` partitioner): see `distributed.rs` for why.
pub fn windows_to_exactly_once_sink() -> String {
    windows_to_exactly_once_sink_into("results")
}

/// The pipeline of [`windows_to_exactly_once_sink`], with the sink writing to `topic`.
pub fn windows_to_exactly_once_sink_into(topic: &str) -> String {
    format!(
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
  - {{name: n, fn: count}}
  - {{name: total, fn: sum, field: amount}}
  - {{name: lo, fn: min, field: amount}}
  - {{name: hi, fn: max, field: amount}}
sink:
  topic: {topic}
  deliveryGuarantee: exactly-once
  partitioner: fixed
deadLetter:
  topic: dead
"#
    )
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
    kill_outside_transaction_when(w, data_dir, "", || true)
}

/// Like [`kill_outside_transaction`], and only at a moment when `also` holds while the
/// worker is frozen (`what` names that moment in the panic message).
pub fn kill_outside_transaction_when(
    w: &mut Worker,
    data_dir: &Path,
    what: &str,
    also: impl Fn() -> bool,
) -> bool {
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
        if is_frozen && !flag.exists() && also() {
            w.process.kill9();
            return true;
        }
        let _ = w.process.signal(libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{} was never frozen outside an open transaction{what} in 500 tries:\n{}",
        w.process.label(),
        w.process.log_tail(60)
    );
}
