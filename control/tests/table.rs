//! Every phase against every event: the simulated job is brought into each phase, one event
//! happens, then the trouble stops. In every cell the invariants hold at every action and
//! the job ends where its spec says (running the spec, suspended, or deleted).

mod world;

use rivulet_api::job::{JobState, UpgradeMode};
use rivulet_api::job_status::Phase;
use rivulet_api::Duration;
use world::{job, World};

const PHASES: &[Phase] = &[
    Phase::Deploying,
    Phase::Running,
    Phase::Savepointing,
    Phase::Upgrading,
    Phase::Rescaling,
    Phase::Suspending,
    Phase::Suspended,
    Phase::RollingBack,
    Phase::Failed,
    Phase::Deleting,
];

#[derive(Clone, Copy, Debug)]
enum Event {
    Upgrade(UpgradeMode),
    Rescale,
    SavepointTrigger,
    RestartTrigger,
    Suspend,
    Resume,
    WorkerCrash,
    WorkersLost,
    SavepointCompletes,
    SavepointFails,
    ReadinessTimeout,
    Delete,
    ControlPlaneRestart,
}

const EVENTS: &[Event] = &[
    Event::Upgrade(UpgradeMode::Savepoint),
    Event::Upgrade(UpgradeMode::LastState),
    Event::Upgrade(UpgradeMode::Stateless),
    Event::Rescale,
    Event::SavepointTrigger,
    Event::RestartTrigger,
    Event::Suspend,
    Event::Resume,
    Event::WorkerCrash,
    Event::WorkersLost,
    Event::SavepointCompletes,
    Event::SavepointFails,
    Event::ReadinessTimeout,
    Event::Delete,
    Event::ControlPlaneRestart,
];

fn base() -> World {
    let mut w = World::new(job());
    w.apply(|s| {
        s.readiness_timeout = Duration::from_secs(6);
        s.savepoints.timeout = Duration::from_secs(5);
        s.savepoints.on_deletion = true;
    });
    w
}

fn running() -> World {
    let mut w = base();
    w.run_until(20, World::running);
    w
}

/// A job in `phase`, held there (savepoints stuck, images broken) until the trouble stops.
fn reach(phase: Phase) -> World {
    let mut w = match phase {
        Phase::Deploying => {
            let mut w = base();
            w.step();
            return w;
        }
        _ => running(),
    };
    match phase {
        Phase::Running => {}
        Phase::Savepointing => {
            w.stuck_savepoints = true;
            w.apply(|s| s.savepoint_trigger = Some("t".into()));
            w.step();
        }
        Phase::Upgrading => {
            w.stuck_savepoints = true;
            w.apply(|s| s.pipeline.key = vec!["page".into()]);
            w.step();
        }
        Phase::Rescaling => {
            w.stuck_savepoints = true;
            w.apply(|s| s.parallelism = 2);
            w.step();
        }
        Phase::Suspending => {
            w.stuck_savepoints = true;
            w.apply(|s| s.job_state = JobState::Suspended);
            w.step();
        }
        Phase::Suspended => {
            w.apply(|s| s.job_state = JobState::Suspended);
            w.run_until(30, World::converged);
        }
        Phase::RollingBack => {
            w.broken_image = Some("worker:broken".into());
            w.apply(|s| s.image = Some("worker:broken".into()));
            w.run_until(40, |w| w.phase() == Some(Phase::RollingBack));
        }
        Phase::Failed => {
            if let Some(workers) = w.workers.as_mut() {
                workers.crashed = true;
            }
            w.step();
        }
        Phase::Deleting => {
            w.stuck_savepoints = true;
            w.deleting = true;
            w.step();
        }
        Phase::Deploying => unreachable!(),
    }
    assert_eq!(w.phase(), Some(phase), "could not reach {phase:?}");
    w
}

fn happen(w: &mut World, e: Event) {
    match e {
        Event::Upgrade(mode) => w.apply(|s| {
            s.upgrade_mode = mode;
            s.pipeline.key = vec!["session".into()];
        }),
        Event::Rescale => w.apply(|s| s.parallelism = 3),
        Event::SavepointTrigger => w.apply(|s| s.savepoint_trigger = Some("e".into())),
        Event::RestartTrigger => w.apply(|s| s.restart_trigger = Some("e".into())),
        Event::Suspend => w.apply(|s| s.job_state = JobState::Suspended),
        Event::Resume => w.apply(|s| {
            s.job_state = JobState::Running;
            s.parallelism = s.parallelism.max(1);
        }),
        Event::WorkerCrash => {
            if let Some(workers) = w.workers.as_mut() {
                workers.crashed = true;
            }
        }
        Event::WorkersLost => {
            w.workers = None;
            w.board = None;
        }
        Event::SavepointCompletes => w.stuck_savepoints = false,
        Event::SavepointFails => {
            w.stuck_savepoints = false;
            w.failing_savepoints = 1;
        }
        Event::ReadinessTimeout => {
            for _ in 0..8 {
                w.step();
            }
        }
        Event::Delete => w.deleting = true,
        Event::ControlPlaneRestart => {
            w.step_with(false);
        }
    }
    w.step();
}

#[test]
fn every_phase_against_every_event() {
    let mut failures = Vec::new();
    for &phase in PHASES {
        for &event in EVENTS {
            let mut w = reach(phase);
            happen(&mut w, event);
            // The trouble stops.
            w.stuck_savepoints = false;
            w.failing_savepoints = 0;
            if let Some(workers) = w.workers.as_mut() {
                workers.crashed = false;
            }
            if w.broken_image.take().is_some() {
                w.apply(|s| s.image = Some("worker:fixed".into()));
            }
            let done = |w: &World| {
                if w.deleting {
                    w.finalized && w.workers.is_none()
                } else {
                    w.converged()
                }
            };
            for _ in 0..300 {
                if done(&w) {
                    break;
                }
                w.step();
            }
            if !done(&w) {
                failures.push(format!(
                    "{phase:?} × {event:?}: ended in {:?} with {:?}",
                    w.phase(),
                    w.operation()
                ));
            }
            if !w.violations.is_empty() {
                failures.push(format!("{phase:?} × {event:?}: {:?}", w.violations));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
