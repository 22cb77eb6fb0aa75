//! The control plane's choice of state, through the worker's `--restore`: exactly a given
//! snapshot even when the job has newer checkpoints (a rollback restores the savepoint taken
//! before the upgrade), or no state at all (a `stateless` upgrade). Without it, a worker
//! restores the job's newest checkpoint.

mod common;

use common::cluster::{checkpoints_dir, Cluster, CATCH_UP_TIMEOUT};
use common::{last_checkpoint, produce, serial, Input};

use rivulet_api::launch::{env, Restore};
use rivulet_api::manifest::snapshot_dir_name;
use std::time::Duration;

use rivulet_tests::{http_request, wait_until, Tansu};
use serde_json::Value;

const JOB: &str = "restore-choice";
const TIMEOUT: Duration = Duration::from_secs(5);

fn records_in(s: &Value) -> u64 {
    s["recordsIn"].as_u64().unwrap_or(0)
}

#[test]
fn a_worker_restores_what_the_control_plane_chose() {
    let _serial = serial();
    let broker = Tansu::start().expect("start tansu");
    let bootstrap = broker.bootstrap();
    broker.create_topic("events", 2).unwrap();
    for topic in ["results", "dead"] {
        broker.create_topic(topic, 1).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Every checkpoint is kept, so the first one can be restored after newer ones.
    let state = common::file_state(root, "heap", "500ms").replace("retain: 3", "retain: 1000");
    let manifest = common::manifest(JOB, &common::windows_to_exactly_once_sink(), &state);
    let job = common::write(root, "job.yaml", &manifest);
    let input = Input::new(2, 1_000, 4_000, 20, 5);
    let half = input.events / 2;

    // The first half, and a checkpoint holding it.
    produce(&bootstrap, &input, 0..half, false);
    let mut c = Cluster::start(1, &job, &bootstrap, root);
    let first = c.wait_all(
        "the first half read and checkpointed",
        CATCH_UP_TIMEOUT,
        |_, s| records_in(s) == half as u64 && last_checkpoint(s) > 0,
    );
    // A checkpoint started after the first half was read holds its offsets (the next
    // one may have been in flight already).
    let c1 = last_checkpoint(&first[0]) + 2;
    c.wait_checkpoint(c1);

    // A savepoint, followed through the list of requests (what a control plane that lost
    // the request id reads).
    let http = c.workers[0].http.clone();
    let r = http_request(
        &http,
        "POST",
        "/savepoints",
        &[],
        br#"{"stop": false}"#,
        TIMEOUT,
    )
    .expect("POST /savepoints");
    assert_eq!(r.status, 202, "{}", r.text());
    let mut listed = Value::Null;
    let completed = wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        let r = match http_request(&http, "GET", "/savepoints", &[], b"", TIMEOUT) {
            Ok(r) => r,
            Err(e) => {
                listed = Value::String(format!("GET /savepoints: {e:#}"));
                return false;
            }
        };
        listed = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| Value::String(format!("{}: {}", r.status, r.text())));
        listed[0]["state"] == "completed"
    });
    assert!(completed, "the savepoint did not complete: {listed}");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert!(
        listed[0]["path"]
            .as_str()
            .is_some_and(|p| p.contains("/savepoints/")),
        "{listed}"
    );
    // The second half, and newer checkpoints.
    produce(&bootstrap, &input, half..input.events, false);
    let second = c.wait_all(
        "everything read and checkpointed",
        CATCH_UP_TIMEOUT,
        |_, s| records_in(s) == input.events as u64 && last_checkpoint(s) > c1 + 1,
    );
    let newest = last_checkpoint(&second[0]);
    c.stop_all();
    let c1_url = format!(
        "file://{}/{}",
        checkpoints_dir(root, JOB).display(),
        snapshot_dir_name(c1)
    );

    // Exactly checkpoint c1: its offsets, so the second half is read again.
    let restore = vec![(env::RESTORE.to_string(), Restore::Snapshot(c1_url).arg())];
    let mut c = Cluster::start_with_env(1, &job, &bootstrap, root, &restore);
    let s = c.wait_all(
        "restored from c1, second half read",
        CATCH_UP_TIMEOUT,
        |_, s| s["phase"] == "running" && records_in(s) == (input.events - half) as u64,
    );
    assert_eq!(s[0]["restoredFrom"].as_u64(), Some(c1), "{}", s[0]);
    c.stop_all();

    // No state: everything is read from the beginning.
    let empty = vec![(env::RESTORE.to_string(), Restore::Empty.arg())];
    let mut c = Cluster::start_with_env(1, &job, &bootstrap, root, &empty);
    let s = c.wait_all(
        "started empty, everything read",
        CATCH_UP_TIMEOUT,
        |_, s| s["phase"] == "running" && records_in(s) == input.events as u64,
    );
    assert_eq!(s[0]["restoredFrom"], Value::Null, "{}", s[0]);
    assert_eq!(s[0]["restoredBytes"].as_u64(), Some(0), "{}", s[0]);
    c.stop_all();

    // Left to itself, a worker restores the newest checkpoint (the last run's final one):
    // nothing is left to read.
    let mut c = Cluster::start(1, &job, &bootstrap, root);
    let s = c.wait_all(
        "restored the newest checkpoint",
        CATCH_UP_TIMEOUT,
        |_, s| s["phase"] == "running",
    );
    assert!(
        s[0]["restoredFrom"].as_u64().is_some_and(|id| id > newest),
        "restored {} instead of a checkpoint after {newest}",
        s[0]["restoredFrom"]
    );
    assert_eq!(records_in(&s[0]), 0, "{}", s[0]);
    c.stop_all();

    // A snapshot that does not exist is an error that names it, and nothing starts.
    let missing = format!(
        "file://{}/{}",
        checkpoints_dir(root, JOB).display(),
        snapshot_dir_name(999_999)
    );
    let bad = vec![(env::RESTORE.to_string(), Restore::Snapshot(missing).arg())];
    let mut c = Cluster::start_with_env(1, &job, &bootstrap, root, &bad);
    let code = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        c.workers[0].process.try_exit_status().is_some()
    });
    assert!(
        code,
        "a worker told to restore a missing snapshot kept running"
    );
    let log = c.tails();
    assert!(log.contains("00000000000000999999"), "{log}");
}
