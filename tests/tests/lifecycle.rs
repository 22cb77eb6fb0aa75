//! A job's whole life through `rivulet`, as a user lives it: `rivulet run` is the control
//! plane (the planner behind the local runtime) and every change comes from another
//! terminal. Real tansu, real worker processes, snapshots on a `file://` store; the results
//! are read back `read_committed` and compared with a truth computed here from the input.
//!
//! apply → Running → savepoint → rescale 1 → 3 → a `savepoint`-mode upgrade that adds a
//! filter → suspend → resume → a `last-state` upgrade → rescale 3 → 2 → delete with a final
//! savepoint. Between the steps the input grows; every window result appears exactly once.

mod common;

use std::time::Duration;

use common::lifecycle::{
    assert_results, broker, checkpointed_records, deployment, manifest, phase, running_with,
    savepoints, snapshot_records, truth, Local, NAME, NS,
};
use common::{produce, serial, Input};

const STEP: Duration = Duration::from_secs(120);

#[test]
fn a_job_lives_through_every_lifecycle_operation_with_exact_results() {
    let _serial = serial();
    let broker = broker(3);
    let bootstrap = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut local = Local::new(root, &bootstrap, NS, NAME);
    let input = Input::new(3, 1_000, 7_500, 20, 5);
    let batch: Vec<usize> = (0..=5).map(|i| i * input.events / 5).collect();
    let write = |file: &str, text: String| std::fs::write(root.join(file), text).unwrap();
    write("v1.yaml", manifest(root, 1, "savepoint", false, "1s"));
    write("v2.yaml", manifest(root, 3, "savepoint", true, "1s"));
    write("v3.yaml", manifest(root, 3, "last-state", true, "2s"));

    // apply → Running.
    let mut run = local.run("v1.yaml", &[]);
    let j = local.wait(&mut run, "the first deployment runs", STEP, |j| {
        running_with(j, 1, 0)
    });
    assert_eq!(deployment(&j), 1);
    assert!(j["status"]["deployment"]["restoreFrom"].is_null(), "{j}");
    assert_eq!(local.worker_pids().len(), 1);
    produce(&bootstrap, &input, batch[0]..batch[1], false);

    // A manual savepoint.
    let out = local.ok(&["savepoint", NAME]);
    assert!(out.contains("savepoint requested"), "{out}");
    let j = local.wait(&mut run, "the manual savepoint completes", STEP, |j| {
        savepoints(j).iter().any(|s| s.1 == "manual") && j["status"]["operation"].is_null()
    });
    assert_eq!(deployment(&j), 1, "a savepoint redeploys nothing");

    // Bad changes are refused, naming the field, and change nothing.
    let bad = local.rivulet(&["scale", NAME, "--parallelism", "500"]);
    assert_eq!(bad.code, Some(2), "{}{}", bad.stdout, bad.stderr);
    assert!(bad.stderr.contains("spec.parallelism"), "{}", bad.stderr);
    write(
        "bad.yaml",
        manifest(root, 1, "savepoint", false, "1s").replace("size: 1s", "size: soon"),
    );
    let bad = local.rivulet(&["apply", "-f", "bad.yaml"]);
    assert_eq!(bad.code, Some(2), "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stderr.contains("spec.pipeline.window.size"),
        "{}",
        bad.stderr
    );
    write(
        "bad.yaml",
        manifest(root, 1, "savepoint", false, "1s")
            .replace("parallelism: 1\n", "parallelism: 1\n  maxParallelism: 64\n"),
    );
    let bad = local.rivulet(&["apply", "-f", "bad.yaml"]);
    assert_eq!(bad.code, Some(2), "{}{}", bad.stdout, bad.stderr);
    assert!(bad.stderr.contains("spec.maxParallelism"), "{}", bad.stderr);
    let after = local.job();
    assert_eq!(after["metadata"]["generation"], j["metadata"]["generation"]);
    assert_eq!(after["spec"], j["spec"]);

    // Rescale 1 → 3: a savepoint, then three workers restoring it.
    let out = local.ok(&["scale", NAME, "--parallelism", "3"]);
    assert!(out.contains("scaled"), "{out}");
    let j = local.wait(&mut run, "the rescale to 3 completes", STEP, |j| {
        running_with(j, 3, 1)
    });
    assert_eq!(deployment(&j), 2, "one deployment per operation");
    let rescale: Vec<_> = savepoints(&j)
        .into_iter()
        .filter(|s| s.1 == "rescale")
        .collect();
    assert_eq!(rescale.len(), 1, "{j}");
    assert_eq!(
        j["status"]["deployment"]["restoreFrom"],
        rescale[0].2.as_str(),
        "{j}"
    );
    assert_eq!(local.worker_pids().len(), 3);
    produce(&bootstrap, &input, batch[1]..batch[2], false);

    // A `savepoint`-mode upgrade that changes the pipeline, once the input so far is read:
    // the savepoint holds exactly the events before the filter.
    local.wait(
        &mut run,
        "a checkpoint holds everything produced",
        STEP,
        |j| checkpointed_records(root, j) == batch[2] as i64,
    );
    let out = local.ok(&["apply", "-f", "v2.yaml"]);
    assert!(out.contains("configured"), "{out}");
    let j = local.wait(&mut run, "the upgrade completes", STEP, |j| {
        running_with(j, 3, 2)
    });
    assert_eq!(deployment(&j), 3);
    let upgrade: Vec<_> = savepoints(&j)
        .into_iter()
        .filter(|s| s.1 == "upgrade")
        .collect();
    assert_eq!(upgrade.len(), 1, "{j}");
    assert_eq!(
        j["status"]["deployment"]["restoreFrom"],
        upgrade[0].2.as_str(),
        "{j}"
    );
    assert_eq!(
        snapshot_records(&upgrade[0].2),
        batch[2] as i64,
        "the upgrade's savepoint"
    );
    produce(&bootstrap, &input, batch[2]..batch[3], false);

    // Suspend: a savepoint, then no workers; resume restores it.
    let out = local.ok(&["suspend", NAME]);
    assert!(out.contains("suspended"), "{out}");
    let j = local.wait(&mut run, "the job is suspended", STEP, |j| {
        phase(j) == "Suspended" && j["status"]["operation"].is_null()
    });
    assert_eq!(j["status"]["parallelism"], 0);
    assert!(
        local.worker_pids().is_empty(),
        "workers run while suspended"
    );
    let suspend: Vec<_> = savepoints(&j)
        .into_iter()
        .filter(|s| s.1 == "suspend")
        .collect();
    assert_eq!(suspend.len(), 1, "{j}");
    let table = local.ok(&["get"]);
    assert!(
        table.contains("PHASE") && table.contains("Suspended"),
        "{table}"
    );
    local.ok(&["resume", NAME]);
    let j = local.wait(&mut run, "the job resumes", STEP, |j| running_with(j, 3, 3));
    assert_eq!(deployment(&j), 4);
    assert_eq!(
        j["status"]["deployment"]["restoreFrom"],
        suspend[0].2.as_str(),
        "{j}"
    );

    // A `last-state` upgrade: no savepoint; the workers' newest checkpoint.
    let before = savepoints(&j).len();
    local.ok(&["apply", "-f", "v3.yaml"]);
    let j = local.wait(&mut run, "the last-state upgrade completes", STEP, |j| {
        running_with(j, 3, 4)
    });
    assert_eq!(deployment(&j), 5);
    assert_eq!(
        savepoints(&j).len(),
        before,
        "a last-state upgrade takes no savepoint"
    );
    let restored = j["status"]["deployment"]["restoreFrom"]
        .as_str()
        .unwrap_or("");
    assert!(restored.contains("/checkpoints/"), "{j}");
    produce(&bootstrap, &input, batch[3]..batch[4], false);

    // Rescale 3 → 2 (a rescale takes a savepoint whatever the upgrade mode).
    local.ok(&["scale", NAME, "--replicas", "2"]);
    let j = local.wait(&mut run, "the rescale to 2 completes", STEP, |j| {
        running_with(j, 2, 5)
    });
    assert_eq!(deployment(&j), 6);
    let rescale: Vec<_> = savepoints(&j)
        .into_iter()
        .filter(|s| s.1 == "rescale")
        .collect();
    assert_eq!(rescale.len(), 2, "{j}");
    assert_eq!(local.worker_pids().len(), 2);
    let describe = local.ok(&["describe", NAME]);
    for needle in [
        "Phase:            Running",
        "Conditions:",
        "Savepoints:",
        "Events:",
        "rescale",
    ] {
        assert!(describe.contains(needle), "{needle:?} not in:\n{describe}");
    }
    produce(&bootstrap, &input, batch[4]..batch[5], true);

    // Every window fires exactly once.
    let want = truth(&input, batch[2]);
    assert_results(&bootstrap, &want, "before the deletion: ");

    // Delete with a final savepoint; `rivulet run` ends once the job is gone.
    let savepoint_dirs = |root: &std::path::Path| {
        std::fs::read_dir(root.join(format!("snapshots/{NS}/{NAME}/savepoints")))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("manifest.json").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    let kept = savepoint_dirs(root);
    let out = local.ok(&["delete", NAME]);
    assert!(
        out.contains("final savepoint") && out.contains("is gone"),
        "{out}"
    );
    assert_eq!(
        savepoint_dirs(root),
        kept + 1,
        "the final savepoint is kept"
    );
    let status = run
        .wait_exit(STEP)
        .expect("rivulet run ends after the deletion");
    assert!(status.success(), "{}", run.logs());
    assert!(run.stdout().contains("is gone"), "{}", run.stdout());
    assert!(
        local.worker_pids().is_empty(),
        "workers outlive the deletion"
    );
    let gone = local.rivulet(&["get", NAME]);
    assert_eq!(gone.code, Some(1), "{}", gone.stdout);
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);

    // And still exactly once after the final savepoint.
    assert_results(&bootstrap, &want, "after the deletion: ");
}
