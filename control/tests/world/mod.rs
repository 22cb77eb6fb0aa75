//! A simulated job for the planner's tests: workers, snapshots in storage and worker 0's
//! savepoint board, changed only by the planner's actions and the test's events, with a
//! clock the test moves. Every action is checked against the planner's invariants as it is
//! carried out.

#![allow(dead_code)]

use rivulet_api::job::{StreamJob, UpgradeMode};
use rivulet_api::job_status::{OperationKind, Phase, StreamJobStatus};
use rivulet_api::StreamJobSpec;
use rivulet_control::observed::{RequestState, SavepointRequest, Snapshot, Snapshots, Workers};
use rivulet_control::{plan, Action, Observed, Plan};

pub const TICK_MS: i64 = 1_000;

pub const MANIFEST: &str = r#"
apiVersion: rivulet.dev/v1alpha1
kind: StreamJob
metadata:
  name: clicks
spec:
  parallelism: 1
  pipeline:
    source: {topics: [clicks]}
    time: {type: event, field: ts}
    key: [user]
    window: {type: tumbling, size: 10s}
    aggregates: [{name: n, fn: count}]
    sink: {topic: out}
  state:
    storage: file:///state
    checkpointInterval: 1s
"#;

pub fn job() -> StreamJob {
    rivulet_api::load_manifest(MANIFEST).unwrap_or_else(|e| panic!("{e}"))
}

/// The workers that run, as the world sees them.
#[derive(Clone, Debug)]
pub struct SimWorkers {
    pub deployment: u64,
    pub spec: StreamJobSpec,
    pub count: u32,
    pub started_ms: i64,
    pub exited: bool,
    pub exited_ms: i64,
    pub crashed: bool,
}

#[derive(Clone, Debug)]
pub struct Board {
    pub stop: bool,
    pub requested_at_ms: i64,
    pub state: RequestState,
    /// Completes (or fails) at this time.
    pub due_ms: i64,
}

/// The input the workers read, for the autoscaler's tests: records arrive at `arrival(t)`
/// per second; each ready worker processes up to `capacity` per second.
pub struct Load {
    pub arrival: Box<dyn Fn(i64) -> f64>,
    pub capacity: f64,
    pub partitions: u32,
    pub lag: f64,
    /// Records processed in the last tick, per second.
    pub rate: f64,
    /// Share of the workers' capacity used in the last tick.
    pub busy: f64,
}

pub struct World {
    pub job: StreamJob,
    /// The input, when the test models one.
    pub load: Option<Load>,
    pub now_ms: i64,
    pub generation: i64,
    pub deleting: bool,
    pub finalized: bool,
    pub workers: Option<SimWorkers>,
    pub checkpoint: Option<Snapshot>,
    pub savepoints: Vec<Snapshot>,
    pub board: Option<Board>,
    pub next_snapshot: u64,
    /// The next this many savepoint requests fail.
    pub failing_savepoints: u32,
    /// Savepoint requests are never answered (a stuck worker 0).
    pub stuck_savepoints: bool,
    /// Workers of a spec with this image never get ready.
    pub broken_image: Option<String>,
    /// Every plan, for the test to inspect.
    pub plans: Vec<Plan>,
    /// Every action carried out.
    pub log: Vec<Action>,
    /// The last deployment's spec and restore, for the invariants.
    pub deployed: Vec<(u64, StreamJobSpec, Option<String>, bool)>,
    /// Savepoints completed per deployment of workers.
    pub violations: Vec<String>,
}

impl World {
    pub fn new(job: StreamJob) -> Self {
        World {
            job,
            load: None,
            now_ms: 1_700_000_000_000,
            generation: 1,
            deleting: false,
            finalized: false,
            workers: None,
            checkpoint: None,
            savepoints: Vec::new(),
            board: None,
            next_snapshot: 1,
            failing_savepoints: 0,
            stuck_savepoints: false,
            broken_image: None,
            plans: Vec::new(),
            log: Vec::new(),
            deployed: Vec::new(),
            violations: Vec::new(),
        }
    }

    pub fn status(&self) -> StreamJobStatus {
        self.job.status.clone().unwrap_or_default()
    }

    pub fn phase(&self) -> Option<Phase> {
        self.status().phase
    }

    pub fn operation(&self) -> Option<(OperationKind, rivulet_api::job_status::OperationStep)> {
        self.status().operation.map(|o| (o.kind, o.step))
    }

    pub fn condition(&self, kind: &str) -> Option<(String, String, String)> {
        self.status()
            .conditions
            .into_iter()
            .find(|c| c.type_ == kind)
            .map(|c| (c.status, c.reason, c.message))
    }

    /// A spec change, as `kubectl apply` makes it.
    pub fn apply(&mut self, edit: impl FnOnce(&mut StreamJobSpec)) {
        let before = serde_json::to_value(&self.job.spec).unwrap_or_default();
        edit(&mut self.job.spec);
        if serde_json::to_value(&self.job.spec).unwrap_or_default() != before {
            self.generation += 1;
        }
    }

    /// Workers of the broken image never start.
    fn broken(&self, w: &SimWorkers) -> bool {
        self.broken_image.is_some() && w.spec.image == self.broken_image
    }

    /// Workers are ready two ticks after they start, unless broken or crashed.
    fn ready(&self, w: &SimWorkers) -> bool {
        !self.broken(w) && !w.crashed && self.now_ms - w.started_ms >= 2 * TICK_MS
    }

    pub fn observe(&self) -> Observed {
        let workers = self.workers.as_ref().map(|w| {
            let ready = self.ready(w);
            let mut workers = Workers {
                deployment: w.deployment,
                count: w.count,
                ready: if ready && !w.exited { w.count } else { 0 },
                stopped: w.exited,
                failure: (self.broken(w) || w.crashed).then(|| "ImagePullBackOff".to_string()),
                ..Workers::default()
            };
            if let Some(load) = &self.load {
                workers.records_per_second = load.rate;
                workers.busy = load.busy;
                workers.lag = load.lag as i64;
                workers.partitions = load.partitions;
                workers.reporting = workers.ready;
            }
            workers
        });
        Observed {
            now_ms: self.now_ms,
            generation: self.generation,
            deleting: self.deleting,
            workers,
            snapshots: Snapshots {
                latest_checkpoint: self.checkpoint.clone(),
                savepoints: self.savepoints.clone(),
            },
            savepoint_request: self.board.as_ref().map(|b| SavepointRequest {
                stop: b.stop,
                requested_at_ms: b.requested_at_ms,
                state: b.state.clone(),
            }),
        }
    }

    /// One round: observe, plan, write status, carry out the actions (unless the control
    /// plane "dies" between writing status and acting), then move the clock.
    pub fn step_with(&mut self, act: bool) -> Plan {
        let observed = self.observe();
        let plan = plan(&self.job, &observed);
        self.job.status = Some(plan.status.clone());
        if act {
            for action in plan.actions.clone() {
                self.carry_out(action);
            }
        }
        self.plans.push(plan.clone());
        self.tick();
        plan
    }

    pub fn step(&mut self) -> Plan {
        self.step_with(true)
    }

    /// Steps until `done` holds, at most `max` times; panics with the history otherwise.
    pub fn run_until(&mut self, max: usize, done: impl Fn(&World) -> bool) {
        for _ in 0..max {
            if done(self) {
                return;
            }
            self.step();
        }
        assert!(
            done(self),
            "not reached after {max} steps: phase {:?}, operation {:?}, status {:#?}",
            self.phase(),
            self.operation(),
            self.status()
        );
    }

    pub fn running(&self) -> bool {
        self.phase() == Some(Phase::Running) && self.operation().is_none()
    }

    fn newest_snapshot(&self) -> Option<&Snapshot> {
        self.savepoints
            .iter()
            .chain(self.checkpoint.iter())
            .max_by_key(|s| s.id)
    }

    fn snapshot(&mut self, kind: &str) -> Snapshot {
        let id = self.next_snapshot;
        self.next_snapshot += 1;
        Snapshot {
            id,
            path: format!("file:///state/default/clicks/{kind}/{id:020}"),
            size_bytes: 1000 + id,
            time_ms: self.now_ms,
            duration_ms: 10,
        }
    }

    pub fn carry_out(&mut self, action: Action) {
        self.log.push(action.clone());
        match action {
            Action::Deploy(d) => {
                match &self.workers {
                    Some(w) if w.deployment == d.deployment => return,
                    Some(w) => self.violations.push(format!(
                        "deployment {} started while deployment {} runs",
                        d.deployment, w.deployment
                    )),
                    None => {}
                }
                let previous = self.deployed.last().cloned();
                if let Some((_, prev_spec, _, _)) = &previous {
                    let newest = self.newest_snapshot().map(|s| s.path.clone());
                    let rollback = self
                        .status()
                        .operation
                        .is_some_and(|o| o.kind == OperationKind::Rollback);
                    if d.empty_state {
                        if d.spec.upgrade_mode != UpgradeMode::Stateless {
                            self.violations.push(format!(
                                "deployment {} starts empty under {:?}",
                                d.deployment, d.spec.upgrade_mode
                            ));
                        }
                    } else if !rollback && newest.is_some() && d.restore_from != newest {
                        self.violations.push(format!(
                            "deployment {} restores {:?}, not the newest state {newest:?} \
                             (previous spec parallelism {})",
                            d.deployment, d.restore_from, prev_spec.parallelism
                        ));
                    }
                }
                self.deployed.push((
                    d.deployment,
                    d.spec.clone(),
                    d.restore_from.clone(),
                    d.empty_state,
                ));
                self.workers = Some(SimWorkers {
                    deployment: d.deployment,
                    spec: d.spec,
                    count: d.parallelism,
                    started_ms: self.now_ms,
                    exited: false,
                    exited_ms: 0,
                    crashed: false,
                });
            }
            Action::RequestSavepoint { stop } => {
                if self
                    .board
                    .as_ref()
                    .is_some_and(|b| b.state == RequestState::Pending)
                {
                    self.violations
                        .push("a savepoint requested while one is in flight".into());
                }
                if self.workers.is_none() {
                    return;
                }
                self.board = Some(Board {
                    stop,
                    requested_at_ms: self.now_ms,
                    state: RequestState::Pending,
                    due_ms: self.now_ms + TICK_MS,
                });
            }
            Action::StopWorkers => {
                self.workers = None;
                self.board = None;
            }
            Action::DeleteSavepoint { id, .. } => {
                let newest = self.savepoints.iter().map(|s| s.id).max();
                if Some(id) == newest {
                    self.violations
                        .push(format!("the newest savepoint {id} deleted"));
                }
                if let Some(stable) = self.status().stable_savepoint {
                    if self
                        .savepoints
                        .iter()
                        .any(|s| s.id == id && s.path == stable)
                    {
                        self.violations
                            .push(format!("the stable savepoint {id} deleted"));
                    }
                }
                self.savepoints.retain(|s| s.id != id);
            }
            Action::Finalize => self.finalized = true,
        }
    }

    /// The clock moves; workers checkpoint, savepoints complete, stopping workers exit.
    pub fn tick(&mut self) {
        self.now_ms += TICK_MS;
        let processing = self
            .workers
            .as_ref()
            .filter(|w| self.ready(w) && !w.exited)
            .map_or(0, |w| w.count);
        let now_ms = self.now_ms;
        if let Some(load) = self.load.as_mut() {
            let dt = TICK_MS as f64 / 1000.0;
            let arrived = (load.arrival)(now_ms).max(0.0) * dt;
            let can = load.capacity * f64::from(processing) * dt;
            let done = can.min(load.lag + arrived);
            load.lag += arrived - done;
            load.rate = done / dt;
            load.busy = if can > 0.0 { done / can } else { 0.0 };
        }
        let healthy = self
            .workers
            .as_ref()
            .is_some_and(|w| self.ready(w) && !w.exited);
        if let Some(board) = self.board.clone() {
            if board.state == RequestState::Pending && self.now_ms >= board.due_ms {
                if self.stuck_savepoints {
                    // Never answered.
                } else if self.failing_savepoints > 0 || !healthy {
                    self.failing_savepoints = self.failing_savepoints.saturating_sub(1);
                    self.board = Some(Board {
                        state: RequestState::Failed("upload failed".into()),
                        ..board
                    });
                } else {
                    let sp = self.snapshot("savepoints");
                    self.savepoints.push(sp);
                    self.board = Some(Board {
                        state: RequestState::Completed,
                        ..board
                    });
                    if board.stop {
                        if let Some(w) = self.workers.as_mut() {
                            w.exited = true;
                            w.exited_ms = self.now_ms;
                        }
                    }
                }
            }
        }
        let exited = self.workers.as_ref().is_none_or(|w| w.exited);
        if healthy
            && !exited
            && self
                .board
                .as_ref()
                .is_none_or(|b| b.state != RequestState::Pending)
        {
            let cp = self.snapshot("checkpoints");
            self.checkpoint = Some(cp);
        }
        // Workers that exited after a stop-with-savepoint are gone a tick later.
        if self
            .workers
            .as_ref()
            .is_some_and(|w| w.exited && self.now_ms > w.exited_ms)
        {
            self.workers = None;
            self.board = None;
        }
    }

    /// The deployed spec is the desired one and nothing is in progress.
    pub fn converged(&self) -> bool {
        let spec = &self.job.spec;
        let suspended =
            spec.parallelism == 0 || spec.job_state == rivulet_api::job::JobState::Suspended;
        if self.operation().is_some() {
            return false;
        }
        if suspended {
            return self.phase() == Some(Phase::Suspended) && self.workers.is_none();
        }
        let Some(w) = &self.workers else {
            return false;
        };
        let same = |a: &StreamJobSpec, b: &StreamJobSpec| {
            let (mut a, mut b) = (a.clone(), b.clone());
            for s in [&mut a, &mut b] {
                s.savepoint_trigger = None;
                s.restart_trigger = None;
                s.upgrade_mode = UpgradeMode::Savepoint;
                s.savepoints = Default::default();
                s.readiness_timeout = Default::default();
                s.autoscaler = Default::default();
                s.restore_from = None;
                s.job_state = rivulet_api::job::JobState::Running;
            }
            a == b
        };
        self.phase() == Some(Phase::Running) && same(&w.spec, spec) && w.count == spec.parallelism
    }
}
