//! Savepoints end to end: one windowed job is stopped with a savepoint through the control
//! API, restored at another parallelism on the other state backend, stopped with a savepoint
//! again, and restored once more by a single worker. Input arrives in thirds, one per
//! incarnation of the job, so every restore must carry both open windows (state) and source
//! positions (offsets) across.
//!
//! 1. Phase A: 2 workers (heap) read the first third. The control API refuses a request
//!    without the bearer token (401) and one sent to worker 1 (409); worker 0 takes a
//!    stop-with-savepoint and every worker exits 0.
//! 2. Phase B: 3 workers (rocksdb) restore that savepoint. Each downloads exactly the
//!    canonical state files of its own key groups, together every file exactly once. They read
//!    the second third and stop with a second savepoint.
//! 3. Phase C: 1 worker (heap, no peers) restores the second savepoint (all of it), reads the
//!    last third and closing records that fire every window, and stops on SIGTERM.
//!
//! A `read_committed` reader of `results` must then see exactly the true window results
//! (computed here without Rivulet's code), and they must equal, as a multiset, what an
//! uninterrupted single worker of another job writes to `results-single` from the same input.

mod common;

use common::cluster::Cluster;
use common::{last_checkpoint, produce, serial, Input};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rivulet_tests::{consume_all, http_request, wait_until, ConsumedRecord, HttpResponse, Tansu};
use serde_json::Value;

const PARTITIONS: i32 = 4;
const WINDOW_MS: i64 = 1_000;
/// The job's number of key groups (`spec.maxParallelism`, left at its default).
const MAX_PARALLELISM: u64 = 128;
const JOB: &str = "sp-rescale";
const REFERENCE_JOB: &str = "sp-reference";
const TOKEN: &str = "s3cr3t-control-token";

/// Time for workers to start, restore and form the mesh.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Time for the job to catch up with the input produced so far.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(240);
/// Time for a savepoint (or final checkpoint) to complete and every worker to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// The input: `events` records over `keys` keys on [`PARTITIONS`] partitions, one every
/// `spacing_ms` of event time, in windows of [`WINDOW_MS`] (as in `distributed.rs`).
fn test_input(events: usize, keys: usize, spacing_ms: i64) -> Input {
    Input::new(PARTITIONS, WINDOW_MS, events, keys, spacing_ms)
}

/// Writes the manifest of job `name` to `<dir>/<file>`: `pipeline`, `parallelism` workers,
/// `backend`, checkpoints every second to `file://<dir>/snapshots`, and `spec.restoreFrom`.
fn write_job(
    dir: &Path,
    file: &str,
    name: &str,
    pipeline: &str,
    backend: &str,
    parallelism: u32,
    restore_from: Option<&str>,
) -> PathBuf {
    let state = common::file_state(dir, backend, "1s");
    let mut text = common::manifest_with_parallelism(name, pipeline, &state, parallelism);
    if let Some(url) = restore_from {
        // `state:` is the last section; this line goes back to `spec`'s indentation.
        text.push_str(&format!(
            "  restoreFrom: {}\n",
            serde_json::to_string(url).unwrap()
        ));
    }
    common::write(dir, file, &text)
}

/// The key groups worker `i` of `n` owns, `[ceil(i*K/n), ceil((i+1)*K/n))`.
fn key_groups(i: u64, n: u64) -> (u64, u64) {
    (
        (i * MAX_PARALLELISM).div_ceil(n),
        ((i + 1) * MAX_PARALLELISM).div_ceil(n),
    )
}

/// The `events` positions a status document reports, by partition.
fn positions(s: &Value) -> BTreeMap<i32, i64> {
    s["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["topic"] == "events")
                .filter_map(|p| Some((p["partition"].as_i64()? as i32, p["offset"].as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Every worker's `events` positions merged: partition → next offset.
fn all_positions(statuses: &[Value]) -> BTreeMap<i32, i64> {
    statuses.iter().flat_map(positions).collect()
}

fn records_in(statuses: &[Value]) -> u64 {
    statuses
        .iter()
        .map(|s| s["recordsIn"].as_u64().unwrap_or(0))
        .sum()
}

/// The workers of one incarnation of a job.
struct Group {
    name: String,
    cluster: Cluster,
}

impl Group {
    /// Starts `n` workers of `job`, each with its own data directory under `root/name`, all
    /// with the control token.
    fn start(job: &Path, bootstrap: &str, root: &Path, name: &str, n: usize) -> Group {
        let env = [("RIVULET_CONTROL_TOKEN".to_string(), TOKEN.to_string())];
        Group {
            name: name.to_string(),
            cluster: Cluster::start_with_env(n, job, bootstrap, &root.join(name), &env),
        }
    }

    fn tails(&self) -> String {
        common::tails(&self.cluster.workers)
    }

    /// Polls every worker's `/status` until `pred` holds for the documents of all of them at
    /// once and returns them. Fails if a worker exits, or at `timeout`.
    fn wait_all(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let context = format!("{}: ", self.name);
        common::wait_statuses(&mut self.cluster.workers, &context, what, timeout, pred)
    }

    /// Waits until every worker runs; returns their status documents.
    fn wait_running(&mut self) -> Vec<Value> {
        self.wait_all("running", START_TIMEOUT, |ss| {
            ss.iter().all(|s| s["phase"] == "running")
        })
    }

    /// Waits until the workers together have read every partition of `events` up to `want`.
    fn wait_read(&mut self, want: &BTreeMap<i32, i64>) -> Vec<Value> {
        self.wait_all(
            &format!("every partition read to {want:?}"),
            CATCH_UP_TIMEOUT,
            |ss| all_positions(ss) == *want,
        )
    }

    /// Every worker must exit 0 within [`STOP_TIMEOUT`].
    fn wait_exit_all(&mut self, why: &str) {
        for i in 0..self.cluster.workers.len() {
            let exit = self.cluster.workers[i].process.wait_exit(STOP_TIMEOUT);
            assert!(
                exit.is_some_and(|s| s.success()),
                "{}: worker {i} did not exit 0 after {why} ({exit:?}):\n{}",
                self.name,
                self.tails()
            );
        }
    }

    /// SIGTERM to every worker; each must take part in the final checkpoint and exit 0.
    fn stop_all(&mut self) {
        for w in &mut self.cluster.workers {
            let _ = w.process.sigterm();
        }
        self.wait_exit_all("SIGTERM");
    }

    /// A control API request to worker `i`, with `token` as the bearer token if given.
    fn control(
        &self,
        i: usize,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> HttpResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http_request(
            &self.cluster.workers[i].http,
            method,
            path,
            &headers,
            body.as_bytes(),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| {
            panic!(
                "{}: {method} {path} on worker {i}: {e:#}\n{}",
                self.name,
                self.tails()
            )
        })
    }

    /// Asks worker 0 for a stop-with-savepoint, follows it to `completed` and waits until
    /// every worker has exited 0. Returns the savepoint with its manifest.
    fn stop_with_savepoint(&mut self) -> Savepoint {
        let r = self.control(0, "POST", "/savepoints", Some(TOKEN), r#"{"stop": true}"#);
        assert_eq!(
            r.status,
            202,
            "{}: POST /savepoints: {}\n{}",
            self.name,
            r.text(),
            self.tails()
        );
        let accepted: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(accepted["stop"], true, "{accepted}");
        let id = accepted["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("no request id in {accepted}"));

        // Poll quickly: worker 0 leaves soon after the savepoint completes.
        let auth = format!("Bearer {TOKEN}");
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut states: Vec<String> = Vec::new();
        let done = loop {
            let exited = self.cluster.workers[0].process.try_exit_status();
            let r = http_request(
                &self.cluster.workers[0].http,
                "GET",
                &format!("/savepoints/{id}"),
                &[("Authorization", auth.as_str())],
                b"",
                Duration::from_secs(2),
            );
            if let Ok(r) = r {
                assert_eq!(
                    r.status,
                    200,
                    "{}: GET /savepoints/{id}: {}\n{}",
                    self.name,
                    r.text(),
                    self.tails()
                );
                let s: Value = serde_json::from_slice(&r.body).unwrap();
                let state = s["state"].as_str().unwrap_or_default().to_string();
                if states.last() != Some(&state) {
                    states.push(state.clone());
                }
                assert!(
                    ["pending", "in-progress", "completed"].contains(&state.as_str()),
                    "{}: savepoint request {id} went through {states:?}: {s}\n{}",
                    self.name,
                    self.tails()
                );
                assert_eq!(s["id"].as_u64(), Some(id), "{s}");
                assert_eq!(s["stop"], true, "{s}");
                if state == "completed" {
                    break s;
                }
            }
            assert!(
                exited.is_none(),
                "{}: worker 0 exited ({:?}) before GET /savepoints/{id} reported `completed` \
                 (states seen: {states:?}):\n{}",
                self.name,
                exited,
                self.tails()
            );
            assert!(
                Instant::now() < deadline,
                "{}: savepoint request {id} not completed within {STOP_TIMEOUT:?} (states \
                 seen: {states:?}):\n{}",
                self.name,
                self.tails()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // How long worker 0 stays to answer after completing (a poller slower than that never
        // sees `completed`).
        let seen = Instant::now();
        let w0 = &mut self.cluster.workers[0].process;
        wait_until(STOP_TIMEOUT, Duration::from_millis(1), || !w0.is_running());
        eprintln!(
            "{}: savepoint request {id}: {states:?} -> {done}; worker 0 exited {:?} later",
            self.name,
            seen.elapsed()
        );
        self.wait_exit_all("the stop-with-savepoint");

        let snapshot_id = done["snapshotId"]
            .as_u64()
            .unwrap_or_else(|| panic!("no snapshotId in {done}"));
        let path = done["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no path in {done}"))
            .to_string();
        let size_bytes = done["sizeBytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("no sizeBytes in {done}"));
        Savepoint::read(snapshot_id, path, size_bytes)
    }
}

/// A completed savepoint, read back from storage.
#[derive(Debug)]
struct Savepoint {
    snapshot_id: u64,
    path: String,
    manifest: Value,
    /// Key group → size of its state file.
    files: BTreeMap<u64, u64>,
}

impl Savepoint {
    /// Reads `<path>/manifest.json` and checks the state files it lists: canonical, one per
    /// key group, each on storage with the listed size.
    fn read(snapshot_id: u64, path: String, size_bytes: u64) -> Savepoint {
        let dir = PathBuf::from(
            path.strip_prefix("file://")
                .unwrap_or_else(|| panic!("savepoint path {path} is not a file:// URL")),
        );
        assert!(
            path.trim_end_matches('/')
                .ends_with(&format!("/savepoints/{snapshot_id:020}")),
            "savepoint {snapshot_id} at {path}"
        );
        let text = std::fs::read_to_string(dir.join("manifest.json"))
            .unwrap_or_else(|e| panic!("read {}/manifest.json: {e}", dir.display()));
        let manifest: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(manifest["kind"], "savepoint", "{manifest}");
        assert_eq!(manifest["id"].as_u64(), Some(snapshot_id), "{manifest}");
        assert_eq!(manifest["job"], JOB, "{manifest}");
        assert_eq!(
            manifest["maxParallelism"].as_u64(),
            Some(MAX_PARALLELISM),
            "{manifest}"
        );
        // State file paths are relative to the job prefix, two levels above the savepoint.
        let job_prefix = dir.parent().and_then(Path::parent).unwrap();
        let mut files = BTreeMap::new();
        for f in manifest["stateFiles"].as_array().unwrap() {
            assert_eq!(f["format"], "canonical", "{f}");
            let start = f["keyGroupStart"].as_u64().unwrap();
            assert_eq!(f["keyGroupEnd"].as_u64(), Some(start + 1), "{f}");
            assert!(start < MAX_PARALLELISM, "{f}");
            let size = f["size"].as_u64().unwrap();
            let on_disk = job_prefix.join(f["path"].as_str().unwrap());
            let len = std::fs::metadata(&on_disk)
                .unwrap_or_else(|e| panic!("state file {}: {e} ({f})", on_disk.display()))
                .len();
            assert_eq!(len, size, "{f}");
            assert!(
                files.insert(start, size).is_none(),
                "two state files for key group {start} in {manifest}"
            );
        }
        assert!(
            !files.is_empty(),
            "savepoint {snapshot_id} holds no state, though windows were open: {manifest}"
        );
        let sp = Savepoint {
            snapshot_id,
            path,
            manifest,
            files,
        };
        assert_eq!(
            size_bytes,
            sp.total(),
            "sizeBytes of savepoint {snapshot_id} is not the sum of its state files"
        );
        sp
    }

    /// Bytes of all its state files.
    fn total(&self) -> u64 {
        self.files.values().sum()
    }

    /// Bytes of the state files of key groups `[start, end)`.
    fn bytes_in(&self, start: u64, end: u64) -> u64 {
        self.files.range(start..end).map(|(_, s)| s).sum()
    }

    /// The source positions it holds for `events`.
    fn offsets(&self) -> BTreeMap<i32, i64> {
        self.manifest["sourceOffsets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["topic"] == "events")
            .map(|o| {
                (
                    o["partition"].as_i64().unwrap() as i32,
                    o["offset"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

/// Checks that every worker restored savepoint `sp` and downloaded exactly the state files of
/// its own key groups; returns the bytes each downloaded.
fn check_restore(group: &Group, statuses: &[Value], sp: &Savepoint, backend: &str) -> Vec<u64> {
    let n = statuses.len() as u64;
    let mut read = Vec::new();
    for (i, s) in statuses.iter().enumerate() {
        let ctx = || format!("{} worker {i}: {s}\n{}", group.name, group.tails());
        assert_eq!(s["worker"].as_u64(), Some(i as u64), "{}", ctx());
        assert_eq!(s["parallelism"].as_u64(), Some(n), "{}", ctx());
        assert_eq!(s["stateBackend"], backend, "{}", ctx());
        assert_eq!(
            s["restoredFrom"].as_u64(),
            Some(sp.snapshot_id),
            "did not restore savepoint {}: {}",
            sp.snapshot_id,
            ctx()
        );
        let (start, end) = (
            s["keyGroupStart"].as_u64().unwrap(),
            s["keyGroupEnd"].as_u64().unwrap(),
        );
        assert_eq!(
            (start, end),
            key_groups(i as u64, n),
            "key groups: {}",
            ctx()
        );
        let bytes = s["restoredBytes"].as_u64().unwrap();
        assert_eq!(
            bytes,
            sp.bytes_in(start, end),
            "restoredBytes is not the size of the savepoint's files of key groups \
             [{start}, {end}) (files: {:?}): {}",
            sp.files,
            ctx()
        );
        read.push(bytes);
    }
    assert_eq!(
        read.iter().sum::<u64>(),
        sp.total(),
        "{}: the workers downloaded {read:?} bytes, the savepoint holds {}",
        group.name,
        sp.total()
    );
    read
}

/// The window results of a topic as a multiset of (key, windowStart, n, total, lo, hi).
fn multiset(records: &[ConsumedRecord]) -> BTreeMap<(String, i64, i64, i64, i64, i64), usize> {
    let mut m = BTreeMap::new();
    for r in records {
        let v = r.value_json().unwrap();
        let field = |name: &str| {
            v[name]
                .as_i64()
                .unwrap_or_else(|| panic!("no {name} in {v}"))
        };
        let key = v["key"]["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key in {v}"))
            .to_string();
        let entry = (
            key,
            field("windowStart"),
            field("n"),
            field("total"),
            field("lo"),
            field("hi"),
        );
        *m.entry(entry).or_insert(0) += 1;
    }
    m
}

#[test]
fn a_savepoint_restores_at_any_parallelism_and_on_either_backend() {
    let _serial = serial();
    let started = Instant::now();
    let broker = Tansu::start().expect("start tansu");
    let bootstrap = broker.bootstrap();
    broker.create_topic("events", PARTITIONS).unwrap();
    // One partition per worker at the highest parallelism (3): with the `fixed`
    // partitioner no two workers' transactions share a partition (see `distributed.rs`).
    for topic in ["results", "results-single", "dead"] {
        broker.create_topic(topic, 3).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    let input = test_input(9_000, 40, 3);
    let expected = input.truth();
    let end = input.last_window_end();
    let thirds = [0, input.events / 3, 2 * input.events / 3, input.events];

    // Phase A: 2 workers (heap) read the first third, then stop with a savepoint.
    produce(&bootstrap, &input, thirds[0]..thirds[1], false);
    let job_a = write_job(
        root,
        "job-a.yaml",
        JOB,
        &common::windows_to_exactly_once_sink(),
        "heap",
        2,
        None,
    );
    let mut a = Group::start(&job_a, &bootstrap, root, "phase-a", 2);
    a.wait_running();
    let want_a = input.offsets(thirds[1], false);
    a.wait_all(
        "reading the first third with a checkpoint complete",
        CATCH_UP_TIMEOUT,
        |ss| {
            records_in(ss) == thirds[1] as u64
                && all_positions(ss) == want_a
                && last_checkpoint(&ss[0]) > 0
        },
    );

    // The control API: the token is required, and only worker 0 takes requests.
    let r = a.control(0, "POST", "/savepoints", None, r#"{"stop": true}"#);
    assert_eq!(r.status, 401, "POST without a token: {}", r.text());
    let r = a.control(0, "POST", "/savepoints", Some("wrong"), r#"{"stop": true}"#);
    assert_eq!(r.status, 401, "POST with a wrong token: {}", r.text());
    let r = a.control(0, "GET", "/savepoints/1", None, "");
    assert_eq!(r.status, 401, "GET without a token: {}", r.text());
    let r = a.control(1, "POST", "/savepoints", Some(TOKEN), r#"{"stop": true}"#);
    assert_eq!(r.status, 409, "POST to worker 1: {}", r.text());
    let r = a.control(0, "GET", "/savepoints/987654", Some(TOKEN), "");
    assert_eq!(r.status, 404, "GET of an unknown request: {}", r.text());
    let r = a.control(0, "GET", "/savepoints", None, "");
    assert_eq!(
        r.status,
        401,
        "GET of the list without a token: {}",
        r.text()
    );
    let r = a.control(0, "GET", "/savepoints", Some(TOKEN), "");
    assert_eq!((r.status, r.text().trim()), (200, "[]"), "no request yet");
    // None of the refused requests stopped anything.
    a.wait_running();

    let sp1 = a.stop_with_savepoint();
    assert_eq!(
        sp1.manifest["parallelism"].as_u64(),
        Some(2),
        "{}",
        sp1.manifest
    );
    assert_eq!(
        sp1.offsets(),
        want_a,
        "savepoint {} holds other source positions than the first third's ends",
        sp1.snapshot_id
    );
    eprintln!(
        "savepoint {} ({}): {} key groups, {} bytes, after {:?}",
        sp1.snapshot_id,
        sp1.path,
        sp1.files.len(),
        sp1.total(),
        started.elapsed()
    );

    // Phase B: 3 workers (rocksdb) restore it, read the second third, stop with a savepoint.
    produce(&bootstrap, &input, thirds[1]..thirds[2], false);
    let job_b = write_job(
        root,
        "job-b.yaml",
        JOB,
        &common::windows_to_exactly_once_sink(),
        "rocksdb",
        3,
        Some(&sp1.path),
    );
    let mut b = Group::start(&job_b, &bootstrap, root, "phase-b", 3);
    let running = b.wait_running();
    let read = check_restore(&b, &running, &sp1, "rocksdb");
    assert!(
        read.iter().filter(|r| **r > 0).count() >= 2,
        "fewer than two workers downloaded state ({read:?} bytes; files by key group: {:?})",
        sp1.files
    );
    let want_b = input.offsets(thirds[2], false);
    let statuses = b.wait_read(&want_b);
    assert_eq!(
        records_in(&statuses),
        (thirds[2] - thirds[1]) as u64,
        "phase B read other records than the second third (offsets restored wrong?):\n{}",
        b.tails()
    );
    let sp2 = b.stop_with_savepoint();
    assert_eq!(
        sp2.manifest["parallelism"].as_u64(),
        Some(3),
        "{}",
        sp2.manifest
    );
    assert!(sp2.snapshot_id > sp1.snapshot_id, "{sp2:?} after {sp1:?}");
    assert_eq!(
        sp2.offsets(),
        want_b,
        "savepoint {} holds other source positions than the second third's ends",
        sp2.snapshot_id
    );
    eprintln!(
        "savepoint {} ({}): {} key groups, {} bytes, after {:?}",
        sp2.snapshot_id,
        sp2.path,
        sp2.files.len(),
        sp2.total(),
        started.elapsed()
    );

    // Phase C: 1 worker (heap, no peers) restores it and reads the rest; the closing records
    // fire every window.
    produce(&bootstrap, &input, thirds[2]..thirds[3], true);
    let job_c = write_job(
        root,
        "job-c.yaml",
        JOB,
        &common::windows_to_exactly_once_sink(),
        "heap",
        1,
        Some(&sp2.path),
    );
    let mut c = Group::start(&job_c, &bootstrap, root, "phase-c", 1);
    let running = c.wait_running();
    let read = check_restore(&c, &running, &sp2, "heap");
    assert_eq!(read, vec![sp2.total()]);
    let want_c = input.offsets(thirds[3], true);
    let statuses = c.wait_all(
        &format!("reading everything with the watermark past {end}"),
        CATCH_UP_TIMEOUT,
        |ss| all_positions(ss) == want_c && ss[0]["watermarkMs"].as_i64().is_some_and(|w| w > end),
    );
    assert_eq!(
        records_in(&statuses),
        (thirds[3] - thirds[2]) as u64 + PARTITIONS as u64,
        "phase C read other records than the last third and the closing records:\n{}",
        c.tails()
    );
    let c0 = last_checkpoint(&statuses[0]);
    c.wait_all(
        &format!("a checkpoint after {c0} complete"),
        START_TIMEOUT,
        |ss| last_checkpoint(&ss[0]) > c0,
    );
    c.stop_all();
    eprintln!("rescaled job done after {:?}", started.elapsed());

    // Reference: an uninterrupted single worker of another job over the same input.
    let job_ref = write_job(
        root,
        "job-reference.yaml",
        REFERENCE_JOB,
        &common::windows_to_exactly_once_sink_into("results-single"),
        "heap",
        1,
        None,
    );
    let mut reference = Group::start(&job_ref, &bootstrap, root, "reference", 1);
    let statuses = reference.wait_all(
        &format!("reading everything with the watermark past {end}"),
        CATCH_UP_TIMEOUT,
        |ss| all_positions(ss) == want_c && ss[0]["watermarkMs"].as_i64().is_some_and(|w| w > end),
    );
    let r0 = last_checkpoint(&statuses[0]);
    reference.wait_all(
        &format!("a checkpoint after {r0} complete"),
        START_TIMEOUT,
        |ss| last_checkpoint(&ss[0]) > r0,
    );
    reference.stop_all();

    // The rescaled job's output is exactly the truth; the reference's is the same multiset.
    common::check_window_output(&bootstrap, "results", "dead", WINDOW_MS, &expected);
    let rescaled = consume_all(
        &bootstrap,
        "results",
        true,
        expected.len(),
        Duration::from_secs(3),
        Duration::from_secs(120),
    )
    .unwrap();
    let single = consume_all(
        &bootstrap,
        "results-single",
        true,
        expected.len(),
        Duration::from_secs(3),
        Duration::from_secs(120),
    )
    .unwrap();
    let (rescaled, single) = (multiset(&rescaled), multiset(&single));
    let only_rescaled: Vec<_> = rescaled
        .iter()
        .filter(|(k, n)| single.get(*k) != Some(n))
        .take(5)
        .collect();
    let only_single: Vec<_> = single
        .iter()
        .filter(|(k, n)| rescaled.get(*k) != Some(n))
        .take(5)
        .collect();
    assert!(
        rescaled == single,
        "the rescaled job's results ({} distinct) differ from the uninterrupted job's ({} \
         distinct): e.g. {only_rescaled:?} in results vs {only_single:?} in results-single",
        rescaled.len(),
        single.len()
    );
    eprintln!(
        "{} window results identical; test took {:?}",
        rescaled.len(),
        started.elapsed()
    );
}
