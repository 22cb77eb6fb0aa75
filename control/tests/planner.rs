//! The lifecycle planner against a simulated job: each operation's steps, what each phase
//! does with each event, restarts of the control plane between writing status and acting,
//! and (property tests) random sequences of all of it.

mod world;

use rivulet_api::job::{JobState, UpgradeMode};
use rivulet_api::job_status::{OperationKind as K, OperationStep as S, Phase, SavepointCause};
use rivulet_api::Duration;
use rivulet_control::Action;
use world::{job, World};

fn running_world() -> World {
    let mut w = World::new(job());
    w.run_until(20, World::running);
    assert!(w.violations.is_empty(), "{:?}", w.violations);
    w
}

fn kinds(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .map(|a| match a {
            Action::Deploy(_) => "deploy",
            Action::RequestSavepoint { stop: true } => "stop-with-savepoint",
            Action::RequestSavepoint { stop: false } => "savepoint",
            Action::StopWorkers => "stop",
            Action::DeleteSavepoint { .. } => "delete-savepoint",
            Action::Finalize => "finalize",
        })
        .collect()
}

/// The steps an operation went through, from the plans' statuses.
fn steps(w: &World, from_plan: usize) -> Vec<(K, S)> {
    let mut out: Vec<(K, S)> = Vec::new();
    for p in &w.plans[from_plan..] {
        if let Some(op) = &p.status.operation {
            if out.last() != Some(&(op.kind, op.step)) {
                out.push((op.kind, op.step));
            }
        }
    }
    out
}

#[test]
fn first_deploy_writes_status_before_starting_workers() {
    let mut w = World::new(job());
    let plan = w.step();
    assert_eq!(kinds(&plan.actions), ["deploy"]);
    let status = &plan.status;
    assert_eq!(status.phase, Some(Phase::Deploying));
    let op = status.operation.as_ref().expect("an operation");
    assert_eq!((op.kind, op.step), (K::Deploy, S::Deployed));
    assert_eq!(status.deployment.as_ref().map(|d| d.id), Some(1));
    assert!(status.last_reconciled_spec.is_some());
    assert_eq!(status.last_stable_spec, None);
    assert_eq!(status.selector.as_deref(), Some("rivulet.dev/job=clicks"));

    w.run_until(10, World::running);
    let status = w.status();
    assert_eq!(status.last_stable_spec, status.last_reconciled_spec);
    assert_eq!(status.parallelism, 1);
    assert_eq!(w.condition("Ready").map(|c| c.0), Some("True".to_string()));
    assert_eq!(
        w.condition("Progressing").map(|c| c.0),
        Some("False".to_string())
    );
    // Running and idle: nothing more is done.
    let plan = w.step();
    assert_eq!(kinds(&plan.actions), Vec::<&str>::new());
}

#[test]
fn restore_from_is_used_on_the_first_deployment() {
    let mut j = job();
    j.spec.restore_from = Some("file:///elsewhere/savepoints/00000000000000000042".into());
    let mut w = World::new(j);
    let plan = w.step();
    match &plan.actions[..] {
        [Action::Deploy(d)] => assert_eq!(d.restore_from, w.job.spec.restore_from),
        other => panic!("{other:?}"),
    }
}

#[test]
fn savepoint_upgrade_stops_with_a_savepoint_and_restores_it() {
    let mut w = running_world();
    let from = w.plans.len();
    w.apply(|s| s.pipeline.key = vec!["page".into()]);
    w.run_until(30, World::converged);
    assert!(steps(&w, from).iter().all(|(k, _)| *k == K::Upgrade));
    // Every step, in order (several can pass within one plan, so the events tell).
    let reasons: Vec<String> = w.plans[from..]
        .iter()
        .flat_map(|p| p.events.iter().map(|e| e.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        [
            "UpgradeStarted",
            "SavepointCompleted",
            "WorkersStopped",
            "Deploying",
            "Running"
        ]
    );
    let (_, spec, restore, empty) = w.deployed.last().cloned().expect("deployed");
    assert_eq!(spec.pipeline.key, ["page"]);
    assert!(!empty);
    let savepoint = w.savepoints.last().expect("a savepoint");
    assert_eq!(restore.as_deref(), Some(savepoint.path.as_str()));
    let status = w.status();
    assert_eq!(
        status.last_savepoint.as_ref().map(|s| s.trigger),
        Some(SavepointCause::Upgrade)
    );
    assert_eq!(
        status.stable_savepoint.as_deref(),
        Some(savepoint.path.as_str())
    );
    assert!(w.violations.is_empty(), "{:?}", w.violations);
    // The savepoint was asked for once.
    let requests = w
        .log
        .iter()
        .filter(|a| matches!(a, Action::RequestSavepoint { .. }))
        .count();
    assert_eq!(requests, 1);
}

#[test]
fn each_upgrade_mode_restores_what_it_promises() {
    for mode in [
        UpgradeMode::Stateless,
        UpgradeMode::LastState,
        UpgradeMode::Savepoint,
    ] {
        let mut w = running_world();
        w.apply(|s| {
            s.upgrade_mode = mode;
            s.pipeline.key = vec!["page".into()];
        });
        w.run_until(30, World::converged);
        let (_, _, restore, empty) = w.deployed.last().cloned().expect("deployed");
        let requested = w
            .log
            .iter()
            .any(|a| matches!(a, Action::RequestSavepoint { .. }));
        match mode {
            UpgradeMode::Stateless => {
                assert!(empty && restore.is_none() && !requested, "{mode:?}")
            }
            UpgradeMode::LastState => {
                assert!(!empty && !requested, "{mode:?}");
                let checkpoint = w.checkpoint.as_ref().map(|c| c.path.clone());
                assert!(
                    restore.is_some_and(|r| r.contains("/checkpoints/")),
                    "{mode:?}"
                );
                assert!(checkpoint.is_some());
            }
            UpgradeMode::Savepoint => {
                assert!(!empty && requested, "{mode:?}");
                assert!(
                    restore.is_some_and(|r| r.contains("/savepoints/")),
                    "{mode:?}"
                );
            }
        }
        assert!(w.violations.is_empty(), "{mode:?}: {:?}", w.violations);
    }
}

#[test]
fn a_parallelism_change_is_a_rescale_through_a_savepoint() {
    // Whatever the upgrade mode: a rescale keeps the state.
    for mode in [
        UpgradeMode::Savepoint,
        UpgradeMode::LastState,
        UpgradeMode::Stateless,
    ] {
        let mut w = running_world();
        w.apply(|s| s.upgrade_mode = mode);
        w.run_until(30, World::converged);
        let from = w.plans.len();
        let savepoints = w.savepoints.len();
        w.apply(|s| s.parallelism = 3);
        w.run_until(30, World::converged);
        assert!(
            steps(&w, from).iter().all(|(k, _)| *k == K::Rescale),
            "{mode:?}"
        );
        assert_eq!(w.workers.as_ref().map(|w| w.count), Some(3), "{mode:?}");
        assert_eq!(w.status().parallelism, 3, "{mode:?}");
        assert_eq!(w.savepoints.len(), savepoints + 1, "{mode:?}");
        assert_eq!(
            w.status().last_savepoint.map(|s| s.trigger),
            Some(SavepointCause::Rescale),
            "{mode:?}"
        );
        let restored = w.deployed.last().and_then(|d| d.2.clone());
        assert_eq!(
            restored,
            w.savepoints.last().map(|s| s.path.clone()),
            "{mode:?}"
        );
        assert!(w.violations.is_empty(), "{mode:?}: {:?}", w.violations);
    }
}

#[test]
fn suspend_and_resume_keep_the_state() {
    for suspend in [
        (|s: &mut rivulet_api::StreamJobSpec| s.job_state = JobState::Suspended) as fn(&mut _),
        |s| s.parallelism = 0,
    ] {
        let mut w = running_world();
        w.apply(suspend);
        w.run_until(30, World::converged);
        assert_eq!(w.phase(), Some(Phase::Suspended));
        assert!(w.workers.is_none());
        let savepoint = w
            .savepoints
            .last()
            .cloned()
            .expect("the suspension's savepoint");
        assert_eq!(
            w.status().last_savepoint.map(|s| s.trigger),
            Some(SavepointCause::Suspend)
        );
        // Suspended stays suspended.
        for _ in 0..5 {
            assert_eq!(kinds(&w.step().actions), Vec::<&str>::new());
        }
        w.apply(|s| {
            s.job_state = JobState::Running;
            s.parallelism = 2;
        });
        w.run_until(30, World::converged);
        let (_, _, restore, _) = w.deployed.last().cloned().expect("deployed");
        assert_eq!(restore, Some(savepoint.path));
        assert!(w.violations.is_empty(), "{:?}", w.violations);
    }
}

#[test]
fn savepoint_trigger_and_restart_trigger() {
    let mut w = running_world();
    let deployments = w.deployed.len();
    w.apply(|s| s.savepoint_trigger = Some("1".into()));
    w.run_until(10, |w| w.running() && !w.savepoints.is_empty());
    assert_eq!(
        w.deployed.len(),
        deployments,
        "a savepoint does not redeploy"
    );
    assert_eq!(
        w.status().last_savepoint.map(|s| s.trigger),
        Some(SavepointCause::Manual)
    );
    // The same nonce again asks for nothing.
    for _ in 0..3 {
        assert_eq!(kinds(&w.step().actions), Vec::<&str>::new());
    }

    let from = w.plans.len();
    w.apply(|s| s.restart_trigger = Some("1".into()));
    w.run_until(20, |w| w.deployed.len() > deployments && w.converged());
    assert_eq!(w.deployed.len(), deployments + 1);
    assert!(steps(&w, from).iter().all(|(k, _)| *k == K::Restart));
    let (_, _, restore, _) = w.deployed.last().cloned().expect("deployed");
    assert!(restore.is_some(), "a restart restores the newest snapshot");
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn periodic_savepoints_and_retention() {
    let mut w = running_world();
    w.apply(|s| {
        s.savepoints.interval = Some(Duration::from_secs(5));
        s.savepoints.max_count = 2;
    });
    for _ in 0..60 {
        w.step();
    }
    assert!(w.savepoints.len() <= 2, "{:?}", w.savepoints);
    let periodic = w
        .status()
        .savepoints
        .iter()
        .filter(|s| s.trigger == SavepointCause::Periodic)
        .count();
    assert!(periodic >= 1);
    let deleted = w
        .log
        .iter()
        .filter(|a| matches!(a, Action::DeleteSavepoint { .. }))
        .count();
    assert!(deleted >= 3, "{deleted}");
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn retention_by_age_keeps_the_newest() {
    let mut w = running_world();
    w.apply(|s| {
        s.savepoints.max_age = Some(Duration::from_secs(3));
        s.savepoint_trigger = Some("a".into());
    });
    w.run_until(10, |w| w.running() && !w.savepoints.is_empty());
    for _ in 0..10 {
        w.step();
    }
    assert_eq!(
        w.savepoints.len(),
        1,
        "the only, newest, savepoint stays however old"
    );
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn a_failing_savepoint_is_retried_then_the_upgrade_waits_degraded() {
    let mut w = running_world();
    w.failing_savepoints = 1;
    w.apply(|s| s.pipeline.key = vec!["page".into()]);
    w.run_until(60, World::converged);
    let requests = w
        .log
        .iter()
        .filter(|a| matches!(a, Action::RequestSavepoint { .. }))
        .count();
    assert_eq!(requests, 2, "retried once after the failure");
    assert_eq!(w.condition("Degraded").map(|c| c.0), Some("False".into()));

    let mut w = running_world();
    w.failing_savepoints = 100;
    let deployments = w.deployed.len();
    w.apply(|s| s.pipeline.key = vec!["page".into()]);
    for _ in 0..200 {
        w.step();
    }
    assert_eq!(
        w.deployed.len(),
        deployments,
        "never deployed without the state"
    );
    assert!(w.workers.is_some(), "the old workers keep running");
    assert_eq!(w.phase(), Some(Phase::Upgrading));
    let (status, reason, message) = w.condition("Degraded").expect("Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "SavepointFailed")
    );
    assert!(message.contains("attempt 3 of 3"), "{message}");
    // Changing the spec (here: to last-state) lets the upgrade go on.
    w.failing_savepoints = 0;
    w.apply(|s| s.upgrade_mode = UpgradeMode::LastState);
    w.run_until(30, World::converged);
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn a_savepoint_that_never_completes_times_out() {
    let mut w = running_world();
    w.stuck_savepoints = true;
    w.apply(|s| {
        s.savepoints.timeout = Duration::from_secs(5);
        s.savepoint_trigger = Some("x".into());
    });
    for _ in 0..200 {
        w.step();
    }
    assert!(w.operation().is_none(), "a savepoint alone is given up");
    let (status, reason, _) = w.condition("Degraded").expect("Degraded");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "SavepointFailed")
    );
    assert_eq!(w.phase(), Some(Phase::Running));
}

#[test]
fn a_new_spec_that_never_gets_ready_is_rolled_back() {
    let mut w = running_world();
    w.apply(|s| s.readiness_timeout = Duration::from_secs(10));
    w.run_until(5, World::converged);
    let stable_spec = w.job.spec.clone();
    w.broken_image = Some("worker:broken".into());
    w.apply(|s| s.image = Some("worker:broken".into()));
    w.run_until(60, |w| {
        w.running()
            && w.deployed.len() == 3
            && w.deployed
                .last()
                .is_some_and(|d| d.1.image == stable_spec.image)
    });
    let status = w.status();
    assert!(
        status
            .error
            .as_deref()
            .is_some_and(|e| e.contains("rolled back")),
        "{status:?}"
    );
    let (degraded, reason, _) = w.condition("Degraded").expect("Degraded");
    assert_eq!((degraded.as_str(), reason.as_str()), ("True", "RolledBack"));
    // It restored the savepoint taken before the upgrade.
    let (_, _, restore, _) = w.deployed.last().cloned().expect("deployed");
    assert_eq!(restore, status.stable_savepoint);
    assert!(restore.is_some_and(|r| r.contains("/savepoints/")));
    // It does not try the broken spec again by itself...
    let deployments = w.deployed.len();
    for _ in 0..20 {
        w.step();
    }
    assert_eq!(w.deployed.len(), deployments);
    // ...but a fixed spec goes through, and clears the error.
    w.broken_image = None;
    w.apply(|s| s.image = Some("worker:fixed".into()));
    w.run_until(40, World::converged);
    assert_eq!(w.status().error, None);
    assert_eq!(w.condition("Degraded").map(|c| c.0), Some("False".into()));
    assert!(w.violations.is_empty(), "{:?}", w.violations);
}

#[test]
fn crashing_workers_fail_the_job_until_they_recover() {
    let mut w = running_world();
    if let Some(workers) = w.workers.as_mut() {
        workers.crashed = true;
    }
    w.step();
    assert_eq!(w.phase(), Some(Phase::Failed));
    let (_, reason, message) = w.condition("Degraded").expect("Degraded");
    assert_eq!(reason, "WorkersFailing");
    assert_eq!(message, "ImagePullBackOff");
    assert_eq!(w.status().error.as_deref(), Some("ImagePullBackOff"));
    if let Some(workers) = w.workers.as_mut() {
        workers.crashed = false;
    }
    w.step();
    assert_eq!(w.phase(), Some(Phase::Running));
    assert_eq!(w.status().error, None);
}

#[test]
fn workers_that_vanish_are_restarted_from_the_newest_snapshot() {
    let mut w = running_world();
    w.workers = None;
    let newest = w.checkpoint.as_ref().map(|c| c.path.clone());
    assert!(newest.is_some());
    w.run_until(10, |w| w.deployed.len() == 2 && w.converged());
    let (_, _, restore, _) = w.deployed.last().cloned().expect("deployed");
    assert_eq!(restore, newest);
}

#[test]
fn deletion_takes_a_final_savepoint_when_asked() {
    for on_deletion in [true, false] {
        let mut w = running_world();
        w.apply(|s| s.savepoints.on_deletion = on_deletion);
        w.step();
        w.deleting = true;
        w.run_until(40, |w| w.finalized);
        assert!(w.workers.is_none());
        let took = w
            .status()
            .savepoints
            .iter()
            .any(|s| s.trigger == SavepointCause::Deletion);
        assert_eq!(took, on_deletion);
    }
    // A final savepoint that cannot complete does not hold the deletion forever.
    let mut w = running_world();
    w.stuck_savepoints = true;
    w.apply(|s| {
        s.savepoints.on_deletion = true;
        s.savepoints.timeout = Duration::from_secs(5);
    });
    w.deleting = true;
    w.run_until(60, |w| w.finalized);
}

/// The control plane dies after writing status and before acting, at every step of an
/// upgrade and of a rescale: the operation still completes once.
#[test]
fn a_restart_between_status_and_action_repeats_nothing_and_loses_nothing() {
    for change in [
        (|s: &mut rivulet_api::StreamJobSpec| s.pipeline.key = vec!["page".into()]) as fn(&mut _),
        |s| s.parallelism = 3,
    ] {
        for die_at in 0..12 {
            let mut w = running_world();
            let deployments = w.deployed.len();
            w.apply(change);
            for i in 0..60 {
                if w.converged() {
                    break;
                }
                w.step_with(i != die_at);
            }
            assert!(w.converged(), "die at {die_at}: {:?}", w.status());
            assert_eq!(
                w.deployed.len(),
                deployments + 1,
                "die at {die_at}: one deployment"
            );
            let savepoints = w
                .status()
                .savepoints
                .iter()
                .filter(|s| matches!(s.trigger, SavepointCause::Upgrade | SavepointCause::Rescale))
                .count();
            assert_eq!(savepoints, 1, "die at {die_at}: one savepoint");
            assert!(
                w.violations.is_empty(),
                "die at {die_at}: {:?}",
                w.violations
            );
        }
    }
}
