//! `plan(&job, &observed) -> Plan`: the status to write and the actions to take, as a pure
//! function of the StreamJob (spec and last status) and one observation.
//!
//! A runtime writes [`Plan::status`] first and carries out [`Plan::actions`] after, so the
//! status is a write-ahead log: a control plane that restarts between the two plans again
//! from the same status and an observation that shows what did or did not happen, and
//! re-issues only what did not (every action is safe to repeat).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use rivulet_api::job::StreamJob;
use rivulet_api::job_status::{
    MetricsSummary, OperationKind, Phase, SavepointCause, SavepointRecord, StreamJobStatus,
};
use rivulet_api::StreamJobSpec;

use crate::desired;
use crate::observed::Observed;

/// What the planner decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The status to write, before any action.
    pub status: StreamJobStatus,
    /// What to do, in order, once the status is written.
    pub actions: Vec<Action>,
    /// Events to record (`kubectl describe` shows them).
    pub events: Vec<Event>,
    /// Plan again within this long, milliseconds, even if nothing changes.
    pub requeue_after_ms: u64,
    /// The autoscaler's decision taken in this plan, if it took one.
    pub autoscaler_decision: Option<rivulet_api::job_status::AutoscalerDecision>,
}

/// Something a runtime carries out.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Start the workers of a deployment (nothing to do if they already exist).
    Deploy(Box<Deploy>),
    /// Ask worker 0 for a savepoint; with `stop`, the workers exit once it completes.
    RequestSavepoint { stop: bool },
    /// Stop every worker of the job, without a savepoint.
    StopWorkers,
    /// Delete a savepoint's directory.
    DeleteSavepoint { id: u64, path: String },
    /// Deletion is complete: nothing of the job runs any more.
    Finalize,
}

/// The workers to start.
#[derive(Clone, Debug, PartialEq)]
pub struct Deploy {
    /// The deployment id the workers carry.
    pub deployment: u64,
    pub spec: StreamJobSpec,
    pub parallelism: u32,
    /// The snapshot directory to restore; absent: the job's own newest checkpoint, else
    /// `spec.restoreFrom`.
    pub restore_from: Option<String>,
    /// Start with no state at all (a `stateless` upgrade).
    pub empty_state: bool,
}

/// An event for the job's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub warning: bool,
    /// CamelCase reason (`SavepointCompleted`).
    pub reason: String,
    pub message: String,
}

/// Attempts of a savepoint before an operation waits with `Degraded`.
pub const SAVEPOINT_ATTEMPTS: u32 = 3;
/// How long workers asked to stop with a savepoint get to exit on their own.
pub const STOP_GRACE_MS: i64 = 30_000;
/// Requeue while an operation is in progress.
pub const ACTIVE_REQUEUE_MS: u64 = 1_000;
/// Requeue when nothing is in progress.
pub const IDLE_REQUEUE_MS: u64 = 10_000;

/// Plans the next step of `job` given what `observed` shows.
pub fn plan(job: &StreamJob, observed: &Observed) -> Plan {
    let auto = crate::autoscale::autoscale(job, observed);
    let spec = auto.spec.as_ref().unwrap_or(&job.spec);
    let mut p = Planner::new(job, spec, observed);
    p.status.autoscaler = auto.status.clone();
    p.events.extend(auto.events.iter().cloned());
    if let Some(ms) = auto.requeue_ms {
        p.requeue(ms);
    }
    p.observe();
    if observed.deleting {
        p.delete();
    }
    if !observed.deleting {
        p.abandon_stuck_operation();
        if p.status.operation.is_none() {
            p.start_next();
        }
    }
    p.advance();
    if p.status.operation.is_none() {
        if observed.deleting {
            p.actions.push(Action::Finalize);
        } else {
            p.retention();
        }
    }
    crate::autoscale::track_rescale(&mut p.status, &mut p.events);
    p.settle();
    let mut plan = p.finish();
    plan.autoscaler_decision = auto.decision;
    plan
}

/// The planner's working state for one call.
pub(crate) struct Planner<'a> {
    pub job: &'a StreamJob,
    pub spec: &'a StreamJobSpec,
    pub obs: &'a Observed,
    pub status: StreamJobStatus,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
    pub requeue_after_ms: u64,
    /// Why the job is degraded, if it is: (reason, message).
    pub degraded: Option<(String, String)>,
}

impl<'a> Planner<'a> {
    fn new(job: &'a StreamJob, spec: &'a StreamJobSpec, obs: &'a Observed) -> Self {
        let status = job.status.clone().unwrap_or_default();
        // Degraded holds until what caused it is resolved.
        let degraded = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True")
            .map(|c| (c.reason.clone(), c.message.clone()));
        Planner {
            job,
            spec,
            obs,
            status,
            actions: Vec::new(),
            events: Vec::new(),
            requeue_after_ms: IDLE_REQUEUE_MS,
            degraded,
        }
    }

    pub fn now(&self) -> Time {
        time(self.obs.now_ms)
    }

    pub fn event(&mut self, reason: &str, message: impl Into<String>) {
        self.events.push(Event {
            warning: false,
            reason: reason.into(),
            message: message.into(),
        });
    }

    pub fn warning(&mut self, reason: &str, message: impl Into<String>) {
        self.events.push(Event {
            warning: true,
            reason: reason.into(),
            message: message.into(),
        });
    }

    pub fn degrade(&mut self, reason: &str, message: impl Into<String>) {
        self.degraded = Some((reason.into(), message.into()));
    }

    /// Clears Degraded if it was for one of `reasons`.
    pub fn resolve(&mut self, reasons: &[&str]) {
        if self
            .degraded
            .as_ref()
            .is_some_and(|(r, _)| reasons.contains(&r.as_str()))
        {
            self.degraded = None;
        }
    }

    /// An upgrade that gave up on its savepoint waits for a spec change; once the spec
    /// changes, it is abandoned (its workers still run the previous spec) and the new spec
    /// is planned from scratch.
    fn abandon_stuck_operation(&mut self) {
        let Some(op) = &self.status.operation else {
            return;
        };
        let stuck = op.step == rivulet_api::job_status::OperationStep::SavepointRequested
            && op.attempts >= SAVEPOINT_ATTEMPTS;
        let changed = desired::change(self.spec, self.reconciled().as_ref()).any;
        if stuck && changed {
            let kind = op.kind;
            self.status.operation = None;
            // The workers still run the spec before the abandoned change.
            self.status.last_reconciled_spec = self.status.last_stable_spec.clone();
            self.resolve(&["SavepointFailed"]);
            self.event(
                "OperationAbandoned",
                format!(
                    "the {} gave up on its savepoint; the spec changed",
                    kind.name()
                ),
            );
        }
    }

    pub fn requeue(&mut self, ms: u64) {
        self.requeue_after_ms = self.requeue_after_ms.min(ms.max(1));
    }

    /// What is observed regardless of any operation: snapshots, metrics, parallelism.
    fn observe(&mut self) {
        let obs = self.obs;
        if let Some(c) = &obs.snapshots.latest_checkpoint {
            self.status.last_checkpoint = Some(rivulet_api::status::CheckpointInfo {
                id: c.id,
                time_ms: c.time_ms,
                duration_ms: c.duration_ms,
                size_bytes: c.size_bytes,
            });
        }
        // Savepoint history follows storage; what asked for each is remembered.
        let previous = std::mem::take(&mut self.status.savepoints);
        self.status.savepoints = obs
            .snapshots
            .savepoints
            .iter()
            .map(|s| {
                let trigger = previous
                    .iter()
                    .find(|r| r.id == s.id)
                    .map(|r| r.trigger)
                    .or_else(|| {
                        let op = self.status.operation.as_ref()?;
                        (op.savepoint_id == Some(s.id)).then_some(op.savepoint?)
                    })
                    .unwrap_or(SavepointCause::Manual);
                SavepointRecord {
                    id: s.id,
                    path: s.path.clone(),
                    size_bytes: s.size_bytes,
                    time: time(s.time_ms),
                    trigger,
                }
            })
            .collect();
        self.status.last_savepoint = self.status.savepoints.last().cloned();
        self.status.parallelism = obs.workers.as_ref().map_or(0, |w| w.count);
        self.status.selector = Some(format!(
            "{}={}",
            rivulet_api::job::JOB_LABEL,
            self.job.job_name()
        ));
        self.status.metrics = obs.workers.as_ref().map(|w| MetricsSummary {
            lag: w.lag,
            records_per_second: w.records_per_second,
            backpressure: w.backpressure,
            watermark: w.watermark_ms.map(time),
        });
    }

    /// The phase, the conditions and what is reconciled.
    fn settle(&mut self) {
        self.status.observed_generation = Some(self.obs.generation);
        let phase = match &self.status.operation {
            Some(op) => match op.kind {
                OperationKind::Deploy | OperationKind::Resume | OperationKind::Restart => {
                    Phase::Deploying
                }
                OperationKind::Savepoint => Phase::Savepointing,
                OperationKind::Upgrade => Phase::Upgrading,
                OperationKind::Rescale => Phase::Rescaling,
                OperationKind::Suspend => Phase::Suspending,
                OperationKind::Rollback => Phase::RollingBack,
                OperationKind::Delete => Phase::Deleting,
            },
            None if self.obs.deleting => Phase::Deleting,
            None => match self.status.phase {
                Some(Phase::Suspended) => Phase::Suspended,
                _ => match &self.obs.workers {
                    Some(w) if w.failure.is_some() => Phase::Failed,
                    Some(w) if w.count > 0 && w.ready >= self.expected_workers() => Phase::Running,
                    None if self.status.deployment.is_none() => Phase::Deploying,
                    _ => match self.status.phase {
                        Some(Phase::Failed) => Phase::Failed,
                        _ => Phase::Deploying,
                    },
                },
            },
        };
        if phase == Phase::Running {
            self.resolve(&["WorkersFailing", "NotReady"]);
        }
        if phase == Phase::Failed && self.degraded.is_none() {
            let reason = self
                .obs
                .workers
                .as_ref()
                .and_then(|w| w.failure.clone())
                .unwrap_or_else(|| "the workers are failing".into());
            if self.status.phase != Some(Phase::Failed) {
                self.warning("WorkersFailing", reason.clone());
            }
            self.degrade("WorkersFailing", reason);
        }
        if self.degraded.is_none() && self.status.operation.is_none() {
            // Running the last stable spec after a rollback holds until the spec changes.
            if let Some(why) = self
                .status
                .deployment
                .as_ref()
                .and_then(|d| d.rolled_back.clone())
            {
                self.degraded = Some(("RolledBack".into(), why));
            }
        }
        self.status.error = self.degraded.as_ref().map(|(_, message)| message.clone());
        self.status.phase = Some(phase);
        let ready = phase == Phase::Running;
        let ready_message = match &self.obs.workers {
            Some(w) => format!("{} of {} workers ready", w.ready, w.count),
            None => "no workers".into(),
        };
        self.condition("Ready", ready, phase.name(), &ready_message);
        match self.status.operation.clone() {
            Some(op) => {
                let message = op
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("{}: {}", op.kind.name(), op.step.name()));
                self.condition("Progressing", true, &capitalize(op.kind.name()), &message);
                self.requeue(ACTIVE_REQUEUE_MS);
            }
            None => self.condition("Progressing", false, "Idle", "no operation in progress"),
        }
        match self.degraded.clone() {
            Some((reason, message)) => self.condition("Degraded", true, &reason, &message),
            None => self.condition("Degraded", false, "Healthy", "nothing is wrong"),
        }
    }

    /// Workers the current deployment started.
    fn expected_workers(&self) -> u32 {
        self.status
            .deployment
            .as_ref()
            .map_or(self.spec.parallelism, |d| d.parallelism)
    }

    fn condition(&mut self, kind: &str, value: bool, reason: &str, message: &str) {
        let status = if value { "True" } else { "False" };
        let now = self.now();
        let generation = Some(self.obs.generation);
        let conditions = &mut self.status.conditions;
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now;
                }
                c.status = status.into();
                c.reason = reason.into();
                c.message = message.into();
                c.observed_generation = generation;
            }
            None => conditions.push(Condition {
                type_: kind.into(),
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
                last_transition_time: now,
                observed_generation: generation,
            }),
        }
    }

    fn finish(self) -> Plan {
        Plan {
            status: self.status,
            actions: self.actions,
            events: self.events,
            requeue_after_ms: self.requeue_after_ms,
            autoscaler_decision: None,
        }
    }

    /// The spec recorded as last acted on.
    pub fn reconciled(&self) -> Option<StreamJobSpec> {
        desired::recorded_spec(self.status.last_reconciled_spec.as_deref())
    }
}

/// "1 worker", "3 workers".
pub fn workers(n: u32) -> String {
    if n == 1 {
        "1 worker".into()
    } else {
        format!("{n} workers")
    }
}

/// A status time from epoch milliseconds.
pub fn time(ms: i64) -> Time {
    Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Epoch milliseconds of a status time.
pub fn millis(t: &Time) -> i64 {
    t.0.as_millisecond()
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
