//! Property tests of the planner: random sequences of spec changes, worker crashes, failing
//! and stuck savepoints, broken images and control-plane restarts (between writing status
//! and acting). Whatever happens, the world's invariants hold at every action (two
//! deployments never run at once; a changed stateful spec is never deployed without the
//! newest state; the newest and the stable savepoint are never deleted; no second
//! savepoint is asked for while one is in flight), and once the trouble stops the job
//! converges to its spec.

mod world;

use proptest::prelude::*;
use rivulet_api::job::{JobState, UpgradeMode};
use world::{job, World};

#[derive(Clone, Debug)]
enum Event {
    ChangePipeline,
    Rescale(u32),
    Mode(u8),
    Suspend,
    Resume,
    SavepointTrigger,
    RestartTrigger,
    WorkersLost,
    FailSavepoints(u32),
    StuckSavepoints(bool),
    BreakImage,
    Steps(u8),
    ControlPlaneDies,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::ChangePipeline),
        3 => (1u32..=4).prop_map(Event::Rescale),
        2 => (0u8..3).prop_map(Event::Mode),
        1 => Just(Event::Suspend),
        2 => Just(Event::Resume),
        1 => Just(Event::SavepointTrigger),
        1 => Just(Event::RestartTrigger),
        1 => Just(Event::WorkersLost),
        1 => (1u32..5).prop_map(Event::FailSavepoints),
        1 => any::<bool>().prop_map(Event::StuckSavepoints),
        1 => Just(Event::BreakImage),
        4 => (1u8..12).prop_map(Event::Steps),
        3 => Just(Event::ControlPlaneDies),
    ]
}

fn apply(w: &mut World, e: &Event, n: &mut u32) {
    *n += 1;
    let n = *n;
    match e {
        Event::ChangePipeline => w.apply(|s| {
            s.pipeline.key = if s.pipeline.key == ["user"] {
                vec!["page".into()]
            } else {
                vec!["user".into()]
            }
        }),
        Event::Rescale(p) => w.apply(|s| s.parallelism = *p),
        Event::Mode(m) => w.apply(|s| {
            s.upgrade_mode = [
                UpgradeMode::Savepoint,
                UpgradeMode::LastState,
                UpgradeMode::Stateless,
            ][*m as usize]
        }),
        Event::Suspend => w.apply(|s| s.job_state = JobState::Suspended),
        Event::Resume => w.apply(|s| {
            s.job_state = JobState::Running;
            if s.parallelism == 0 {
                s.parallelism = 1;
            }
        }),
        Event::SavepointTrigger => w.apply(|s| s.savepoint_trigger = Some(n.to_string())),
        Event::RestartTrigger => w.apply(|s| s.restart_trigger = Some(n.to_string())),
        Event::WorkersLost => {
            w.workers = None;
            w.board = None;
        }
        Event::FailSavepoints(k) => w.failing_savepoints = *k,
        Event::StuckSavepoints(stuck) => w.stuck_savepoints = *stuck,
        Event::BreakImage => {
            w.broken_image = Some("worker:broken".into());
            w.apply(|s| s.image = Some("worker:broken".into()));
        }
        Event::Steps(k) => {
            for _ in 0..*k {
                w.step();
            }
        }
        Event::ControlPlaneDies => {
            w.step_with(false);
        }
    }
    w.step();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_planner_keeps_its_invariants_and_converges(events in prop::collection::vec(event(), 1..25)) {
        let mut w = World::new(job());
        w.apply(|s| {
            s.readiness_timeout = rivulet_api::Duration::from_secs(8);
            s.savepoints.timeout = rivulet_api::Duration::from_secs(6);
        });
        let mut n = 0;
        for e in &events {
            apply(&mut w, e, &mut n);
            prop_assert!(w.violations.is_empty(), "after {:?}: {:?}", e, w.violations);
        }
        // The trouble stops. The job converges by itself, unless it waits for the user: a
        // rolled-back spec, or an upgrade whose savepoint failed every attempt.
        w.failing_savepoints = 0;
        w.stuck_savepoints = false;
        w.broken_image = None;
        if let Some(workers) = w.workers.as_mut() {
            workers.crashed = false;
        }
        for _ in 0..400 {
            if w.converged() {
                break;
            }
            w.step();
        }
        if !w.converged() {
            let degraded = w.condition("Degraded");
            let waits = degraded.as_ref().is_some_and(|(status, reason, _)| {
                status == "True" && (reason == "RolledBack" || reason == "SavepointFailed")
            });
            prop_assert!(
                waits,
                "stuck without saying why: phase {:?}, operation {:?}, degraded {:?}",
                w.phase(), w.operation(), degraded
            );
            // A new spec from the user is reached.
            w.apply(|s| s.image = Some("worker:final".into()));
            for _ in 0..400 {
                if w.converged() {
                    break;
                }
                w.step();
            }
        }
        prop_assert!(
            w.converged(),
            "not converged: phase {:?}, operation {:?}, workers {:?}, status {:#?}",
            w.phase(), w.operation(), w.workers.as_ref().map(|x| (x.deployment, x.count)), w.status()
        );
        prop_assert!(w.violations.is_empty(), "{:?}", w.violations);
    }
}
