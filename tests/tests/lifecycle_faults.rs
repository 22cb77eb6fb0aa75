//! The control plane dies mid-operation and is started again: `rivulet run` is killed with
//! SIGKILL at each named step of a rescale and of an upgrade (right after the status for the
//! step is written, before or after its actions run). The next `rivulet run` finds the
//! workers it left, resumes the operation from the status and completes it once: one
//! savepoint per operation, one new deployment per operation, and every window result
//! exactly once.
//!
//! And a failed upgrade: a new spec whose workers cannot start (a secret they need is not
//! there) is rolled back to the last stable spec and the savepoint taken before it, and the
//! status says so.

mod common;

use std::time::Duration;

use common::lifecycle::{
    assert_results, broker, deployment, manifest, phase, running_with, savepoints, truth, Local,
    NAME, NS,
};
use common::{produce, serial, Input};

const STEP: Duration = Duration::from_secs(120);

/// The steps an operation's status is written at (the others pass within one reconcile).
const STEPS: [&str; 3] = ["savepointRequested", "stoppingWorkers", "deployed"];

#[test]
fn a_control_plane_killed_at_any_step_of_a_rescale_or_upgrade_completes_it_once() {
    let _serial = serial();
    let broker = broker(2);
    let bootstrap = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut local = Local::new(root, &bootstrap, NS, NAME);
    let mut faults: Vec<(String, bool)> = Vec::new();
    for op in ["rescale", "upgrade"] {
        for step in STEPS {
            faults.push((format!("{op}:{step}"), false));
        }
    }
    faults.push(("rescale:deployed:after".into(), true));
    faults.push(("upgrade:savepointRequested:after".into(), true));
    let input = Input::new(2, 1_000, 300 * (faults.len() + 1), 10, 5);
    let per_step = input.events / (faults.len() + 1);

    let write = |file: &str, p: u32, bound: &str| {
        std::fs::write(
            root.join(file),
            manifest(root, p, "savepoint", false, bound),
        )
        .unwrap()
    };
    write("job.yaml", 1, "1s");
    let mut run = local.run("job.yaml", &[]);
    local.wait(&mut run, "the job runs", STEP, |j| running_with(j, 1, 0));
    let (mut parallelism, mut bound) = (1u32, "1s");
    let mut produced = 0;
    for (i, (fault, _after)) in faults.iter().enumerate() {
        produce(&bootstrap, &input, produced..produced + per_step, false);
        produced += per_step;
        // The control plane that will die: the idle one is killed first (harmless).
        run.kill9();
        let mut dying = local.run("job.yaml", &[("RIVULET_FAULT_POINT", fault)]);
        // It applies its manifest first: a change made before that would be undone by it
        // (as a `kubectl apply` of an old file undoes a `kubectl scale`).
        dying
            .wait_for_log("found ", STEP)
            .unwrap_or_else(|e| panic!("{fault}: {e}"));
        let j = local.wait(
            &mut dying,
            "the restarted control plane sees the job running",
            STEP,
            |j| running_with(j, u64::from(parallelism), 0),
        );
        let deployed = deployment(&j);
        let op = fault.split(':').next().unwrap_or("");
        // Savepoints taken from here on (retention may delete older ones meanwhile).
        let newest_before = savepoints(&j).iter().map(|s| s.0).max().unwrap_or(0);
        if op == "rescale" {
            parallelism = 3 - parallelism;
            local.ok(&["scale", NAME, "--parallelism", &parallelism.to_string()]);
            // The manifest follows, or the next `rivulet run job.yaml` would scale back.
            write("job.yaml", parallelism, bound);
        } else {
            bound = if bound == "1s" { "2s" } else { "1s" };
            write("job.yaml", parallelism, bound);
            local.ok(&["apply", "-f", "job.yaml"]);
        }
        let status = dying.wait_exit(STEP).unwrap_or_else(|| {
            panic!(
                "{fault}: the fault point was never reached\n{}",
                dying.logs()
            )
        });
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{fault}: rivulet run ended otherwise: {}",
            dying.logs()
        );
        let at = local.job();
        let step = fault.split(':').nth(1).unwrap_or("");
        assert_eq!(at["status"]["operation"]["kind"], op, "{fault}: {at}");
        assert_eq!(at["status"]["operation"]["step"], step, "{fault}: {at}");

        // Started again, it completes the operation exactly once.
        run = local.run("job.yaml", &[]);
        let j = local.wait(
            &mut run,
            &format!("{fault}: the operation completes"),
            STEP,
            |j| running_with(j, u64::from(parallelism), deployed),
        );
        assert_eq!(
            deployment(&j),
            deployed + 1,
            "{fault}: one new deployment: {j}"
        );
        let taken: Vec<_> = savepoints(&j)
            .into_iter()
            .filter(|s| s.0 > newest_before)
            .collect();
        assert_eq!(taken.len(), 1, "{fault}: one savepoint: {j}");
        assert_eq!(taken[0].1, op, "{fault}: {j}");
        assert_eq!(
            local.worker_pids().len(),
            parallelism as usize,
            "{fault}: exactly the new deployment's workers run (step {i})"
        );
    }
    produce(&bootstrap, &input, produced..input.events, true);
    let want = truth(&input, usize::MAX);
    assert_results(&bootstrap, &want, "");
    run.kill9();
}

#[test]
fn an_upgrade_whose_workers_cannot_start_is_rolled_back_with_its_state() {
    let _serial = serial();
    let broker = broker(2);
    let bootstrap = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut local = Local::new(root, &bootstrap, NS, NAME);
    let input = Input::new(2, 1_000, 3_000, 10, 5);
    let good = manifest(root, 2, "savepoint", false, "1s")
        .replace("readinessTimeout: 2m", "readinessTimeout: 15s");
    std::fs::write(root.join("job.yaml"), &good).unwrap();
    // The new spec needs a SASL password from an environment variable no worker has.
    let broken = good.replace(
        "      topics: [events]\n",
        "      topics: [events]\n      secretProperties:\n        sasl.password: {env: RIVULET_TEST_SECRET_NOBODY_SET}\n",
    );
    std::fs::write(root.join("broken.yaml"), &broken).unwrap();

    let mut run = local.run("job.yaml", &[]);
    local.wait(&mut run, "the job runs", STEP, |j| running_with(j, 2, 0));
    produce(&bootstrap, &input, 0..input.events / 2, false);

    let out = local.ok(&["apply", "-f", "broken.yaml"]);
    assert!(out.contains("configured"), "{out}");
    let j = local.wait(
        &mut run,
        "the upgrade is rolled back",
        Duration::from_secs(180),
        |j| {
            phase(j) == "Running"
                && j["status"]["operation"].is_null()
                && !j["status"]["deployment"]["rolledBack"].is_null()
        },
    );
    let upgrade: Vec<_> = savepoints(&j)
        .into_iter()
        .filter(|s| s.1 == "upgrade")
        .collect();
    assert_eq!(upgrade.len(), 1, "{j}");
    // The last stable spec runs again, from the savepoint taken before the upgrade.
    assert_eq!(
        j["status"]["deployment"]["restoreFrom"],
        upgrade[0].2.as_str(),
        "{j}"
    );
    assert_eq!(deployment(&j), 3, "stable → broken → stable again: {j}");
    let why = j["status"]["deployment"]["rolledBack"]
        .as_str()
        .unwrap_or("");
    assert!(
        why.contains("RIVULET_TEST_SECRET_NOBODY_SET"),
        "the reason names the secret: {j}"
    );
    let degraded = j["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Degraded").cloned())
        .unwrap_or_default();
    assert_eq!(degraded["status"], "True", "{j}");
    assert_eq!(degraded["reason"], "RolledBack", "{j}");
    // The user's spec stays as applied; the rollback is in status.
    assert!(
        j["spec"]["pipeline"]["source"]["secretProperties"].is_object(),
        "{j}"
    );
    let describe = local.ok(&["describe", NAME]);
    assert!(describe.contains("RolledBack"), "{describe}");

    // The job carries on with exact results.
    produce(&bootstrap, &input, input.events / 2..input.events, true);
    let want = truth(&input, usize::MAX);
    assert_results(&bootstrap, &want, "");

    // Fixing the spec clears the rollback.
    local.ok(&["apply", "-f", "job.yaml"]);
    local.wait(&mut run, "the fixed spec runs", STEP, |j| {
        phase(j) == "Running"
            && j["status"]["operation"].is_null()
            && j["status"]["observedGeneration"] == j["metadata"]["generation"]
            && j["status"]["deployment"]["rolledBack"].is_null()
    });
    run.kill9();
}
