//! The control plane's choice of state, through the worker's `--restore`: exactly a given
//! snapshot even when the job has newer checkpoints (a rollback restores the savepoint taken
//! before the upgrade), or no state at all (a `stateless` upgrade). Without it, a worker
//! restores the job's newest checkpoint. A worker restarted within its deployment
//! (`--deployment`) continues from that deployment's own checkpoints, and stays stopped once
//! the job was stopped with a savepoint.

mod common;

use common::cluster::{checkpoints_dir, Cluster, CATCH_UP_TIMEOUT, STOP_TIMEOUT};
use common::{last_checkpoint, produce, serial, Input};

use rivulet_api::launch::{env, Restore};
use rivulet_api::manifest::snapshot_dir_name;
use rivulet_api::status::FINAL_STATUS_FILE;
use std::time::Duration;

use rivulet_tests::{http_request, wait_until, Tansu};
use serde_json::Value;

const JOB: &str = "restore-choice";
const TIMEOUT: Duration = Duration::from_secs(5);

fn records_in(s: &Value) -> u64 {
    s["recordsIn"].as_u64().unwrap_or(0)
}

/// A broker with the job's topics, a directory with the job's manifest (every checkpoint
/// kept, so an old one can be restored after newer ones), and the input.
struct Setup {
    broker: Tansu,
    dir: tempfile::TempDir,
    job: std::path::PathBuf,
    input: Input,
}

fn setup() -> Setup {
    let broker = Tansu::start().expect("start tansu");
    broker.create_topic("events", 2).unwrap();
    for topic in ["results", "dead"] {
        broker.create_topic(topic, 1).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let state =
        common::file_state(dir.path(), "heap", "500ms").replace("retain: 3", "retain: 1000");
    let manifest = common::manifest(JOB, &common::windows_to_exactly_once_sink(), &state);
    let job = common::write(dir.path(), "job.yaml", &manifest);
    Setup {
        broker,
        dir,
        job,
        input: Input::new(2, 1_000, 4_000, 20, 5),
    }
}

#[test]
fn a_worker_restores_what_the_control_plane_chose() {
    let _serial = serial();
    let Setup {
        broker,
        dir,
        job,
        input,
    } = setup();
    let bootstrap = broker.bootstrap();
    let root = dir.path();
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

/// Worker 0's environment as part of deployment `d`, restoring `restore` when given.
fn deployment(d: u64, restore: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![(env::DEPLOYMENT.to_string(), d.to_string())];
    if let Some(r) = restore {
        env.push((env::RESTORE.to_string(), r.to_string()));
    }
    env
}

/// A pod's container is restarted whatever its exit code, with the launch settings its
/// deployment started with: it must neither run on after the job was stopped with a
/// savepoint, nor go back to the deployment's starting point once the deployment has
/// checkpointed.
#[test]
fn a_restarted_worker_keeps_to_its_deployment() {
    let _serial = serial();
    let Setup {
        broker,
        dir,
        job,
        input,
    } = setup();
    let bootstrap = broker.bootstrap();
    let root = dir.path();
    let half = input.events / 2;
    let second_half = (input.events - half) as u64;

    // Deployment 1 reads the first half and is stopped with a savepoint.
    produce(&bootstrap, &input, 0..half, false);
    let mut c = Cluster::start_with_env(1, &job, &bootstrap, root, &deployment(1, None));
    let s = c.wait_all("the first half read", CATCH_UP_TIMEOUT, |_, s| {
        records_in(s) == half as u64
    });
    assert_eq!(s[0]["deployment"].as_u64(), Some(1), "{}", s[0]);
    let http = c.workers[0].http.clone();
    let r = http_request(
        &http,
        "POST",
        "/savepoints",
        &[],
        br#"{"stop": true}"#,
        TIMEOUT,
    )
    .expect("POST /savepoints");
    assert_eq!(r.status, 202, "{}", r.text());
    let exit = c.workers[0].process.wait_exit(STOP_TIMEOUT);
    assert!(
        exit.is_some_and(|s| s.success()),
        "not stopped: {exit:?}\n{}",
        c.tails()
    );
    let final_status: Value = serde_json::from_str(
        &std::fs::read_to_string(c.data_dir(0).join(FINAL_STATUS_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(final_status["stoppedWithSavepoint"], true, "{final_status}");
    let savepoint = final_status["lastSavepoint"]["id"].as_u64().unwrap();
    let savepoint_url = final_status["lastSavepoint"]["path"]
        .as_str()
        .unwrap()
        .to_string();

    // Restarted as deployment 1, it stays stopped: not ready, reading nothing of what
    // arrives, until a signal ends it.
    c.restart(0);
    c.wait_all("staying stopped", TIMEOUT * 6, |_, s| {
        s["phase"] == "stopped" && s["stoppedWithSavepoint"] == true
    });
    produce(&bootstrap, &input, half..input.events, false);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        c.metric(0, "rivulet_records_in_total"),
        0.0,
        "{}",
        c.tails()
    );
    let ready = http_request(&c.workers[0].http, "GET", "/readyz", &[], b"", TIMEOUT).unwrap();
    assert_ne!(ready.status, 200);
    assert!(c.workers[0].process.try_exit_status().is_none());
    c.stop_all();

    // Deployment 2 starts from the savepoint and checkpoints the second half.
    let mut c = Cluster::start_with_env(
        1,
        &job,
        &bootstrap,
        root,
        &deployment(2, Some(&savepoint_url)),
    );
    let s = c.wait_all("the second half read", CATCH_UP_TIMEOUT, |_, s| {
        s["phase"] == "running" && records_in(s) == second_half
    });
    assert_eq!(s[0]["restoredFrom"].as_u64(), Some(savepoint), "{}", s[0]);
    let own = last_checkpoint(&s[0]) + 2;
    c.wait_checkpoint(own);

    // Killed and started again exactly as before, it continues from its own checkpoint.
    c.kill(0);
    c.restart(0);
    let s = c.wait_all("restarted", CATCH_UP_TIMEOUT, |_, s| {
        s["phase"] == "running"
    });
    assert!(
        s[0]["restoredFrom"].as_u64().is_some_and(|id| id >= own),
        "restored {} instead of checkpoint {own} or later",
        s[0]["restoredFrom"]
    );
    assert_eq!(records_in(&s[0]), 0, "{}", s[0]);
    c.stop_all();

    // Another deployment told to restore the savepoint restores exactly it.
    let mut c = Cluster::start_with_env(
        1,
        &job,
        &bootstrap,
        root,
        &deployment(3, Some(&savepoint_url)),
    );
    let s = c.wait_all(
        "deployment 3 read the second half",
        CATCH_UP_TIMEOUT,
        |_, s| s["phase"] == "running" && records_in(s) == second_half,
    );
    assert_eq!(s[0]["restoredFrom"].as_u64(), Some(savepoint), "{}", s[0]);
    c.stop_all();
}
