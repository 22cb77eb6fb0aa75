//! The status of a `StreamJob`, written only by the control plane (the local runtime behind
//! `rivulet`, or the operator).
//!
//! Status is the control plane's write-ahead log: the spec last reconciled and the last one
//! that ran stably, and the operation in progress with the step it has reached, are written
//! before each action. A control plane that restarts reads them back and resumes the
//! operation instead of repeating or losing a step.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::CheckpointInfo;

/// What the control plane reports about a `StreamJob`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamJobStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Workers running (the scale subresource's replica count).
    #[serde(default)]
    pub parallelism: u32,
    /// Label selector of the job's worker pods, as a string (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec (as JSON) the control plane last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconciled_spec: Option<String>,
    /// The last spec (as JSON) whose workers became ready: the target of a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_stable_spec: Option<String>,
    /// The operation in progress and the step it has reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// The workers started last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
    /// The savepoint the last stable deployment restored from: a rollback restores it, and
    /// retention keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_savepoint: Option<String>,
    /// The newest completed savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_savepoint: Option<SavepointRecord>,
    /// Completed savepoints that are kept, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub savepoints: Vec<SavepointRecord>,
    /// The newest completed checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint: Option<CheckpointInfo>,
    /// Throughput, lag and backpressure across the workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSummary>,
    /// What the autoscaler saw, recommended and did (present while it is enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerStatus>,
    /// The last error, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Lifecycle phase of a `StreamJob`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Workers are being started.
    Deploying,
    /// Every worker is running.
    Running,
    /// A savepoint is being taken while the job runs.
    Savepointing,
    /// A spec change is being carried out.
    Upgrading,
    /// The parallelism is being changed.
    Rescaling,
    /// A savepoint is being taken before every worker stops.
    Suspending,
    /// No worker runs; the state is in the last savepoint.
    Suspended,
    /// A spec that did not become ready is being replaced by the last stable one.
    RollingBack,
    /// The workers cannot run; the reason is in `error` and the `Degraded` condition.
    Failed,
    /// The StreamJob is being deleted.
    Deleting,
}

impl Phase {
    /// The name as status shows it.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Deploying => "Deploying",
            Phase::Running => "Running",
            Phase::Savepointing => "Savepointing",
            Phase::Upgrading => "Upgrading",
            Phase::Rescaling => "Rescaling",
            Phase::Suspending => "Suspending",
            Phase::Suspended => "Suspended",
            Phase::RollingBack => "RollingBack",
            Phase::Failed => "Failed",
            Phase::Deleting => "Deleting",
        }
    }
}

/// An operation in progress: what it is, the step it has reached, and what its next steps
/// need (the savepoint it took, the state the new workers restore).
///
/// What the operation does is decided when it starts and recorded here, so a control plane
/// that restarts carries out the same steps even if the spec changed in between.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// What the operation does.
    pub kind: OperationKind,
    /// The step it has reached.
    pub step: OperationStep,
    /// When the operation started.
    pub started_at: Time,
    /// When it reached its current step (or last retried it).
    pub step_started_at: Time,
    /// Take a savepoint first, for this reason. Absent: no savepoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint: Option<SavepointCause>,
    /// Stop the running workers (with the savepoint, when there is one).
    #[serde(default)]
    pub stop: bool,
    /// Once stopped, start workers from this state. Absent: start none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<StateSource>,
    /// The newest snapshot id when the savepoint was requested: the savepoint is the first
    /// completed one with a higher id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_baseline: Option<u64>,
    /// The savepoint this operation took, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_id: Option<u64>,
    /// The state the new workers restore, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// Why the operation started, when it was not asked for (a rollback: why the newer
    /// spec was given up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Failed attempts of the current step.
    #[serde(default)]
    pub attempts: u32,
    /// When the current step is tried again after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Time>,
    /// What the step is waiting for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The state new workers start from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StateSource {
    /// No state: sources start at `startFrom` (a `stateless` upgrade).
    Empty,
    /// The savepoint this operation took.
    Savepoint,
    /// The newest completed snapshot, checkpoint or savepoint (`last-state`, a restart).
    Latest,
    /// The savepoint recorded with the last stable deployment (a rollback), else the newest.
    Stable,
}

/// The workers the control plane started last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Increases with every deploy; each worker carries the id of its deployment, so two
    /// deployments are never mistaken for one.
    pub id: u64,
    /// The `metadata.generation` of the spec deployed.
    pub generation: i64,
    /// Workers started.
    pub parallelism: u32,
    /// What they restored: a snapshot directory, or absent for the job's own newest
    /// checkpoint (or nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// They start with no state at all.
    #[serde(default)]
    pub empty_state: bool,
    /// When they were started.
    pub started_at: Time,
    /// When every one of them was first ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Time>,
    /// A rollback to the last stable spec: why the newer spec was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<String>,
}

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OperationKind {
    /// The first deployment.
    Deploy,
    /// A savepoint while the job runs.
    Savepoint,
    /// A spec change, under the job's `upgradeMode`.
    Upgrade,
    /// A parallelism change.
    Rescale,
    /// Savepoint, then no workers.
    Suspend,
    /// Workers again, from the suspension's savepoint.
    Resume,
    /// Every worker restarted from the newest snapshot (`restartTrigger`).
    Restart,
    /// Back to the last stable spec and its state.
    Rollback,
    /// The StreamJob's deletion.
    Delete,
}

impl OperationKind {
    /// The name as status shows it.
    pub fn name(&self) -> &'static str {
        match self {
            OperationKind::Deploy => "deploy",
            OperationKind::Savepoint => "savepoint",
            OperationKind::Upgrade => "upgrade",
            OperationKind::Rescale => "rescale",
            OperationKind::Suspend => "suspend",
            OperationKind::Resume => "resume",
            OperationKind::Restart => "restart",
            OperationKind::Rollback => "rollback",
            OperationKind::Delete => "delete",
        }
    }
}

/// The steps of an operation, in the order they happen.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum OperationStep {
    /// A savepoint was asked of the workers.
    SavepointRequested,
    /// The savepoint completed; its path is recorded.
    SavepointCompleted,
    /// The old workers were asked to stop.
    StoppingWorkers,
    /// No worker of the old deployment runs.
    WorkersStopped,
    /// Workers of the new deployment were started; waiting for them to be ready.
    Deployed,
}

impl OperationStep {
    /// The name as status shows it.
    pub fn name(&self) -> &'static str {
        match self {
            OperationStep::SavepointRequested => "savepointRequested",
            OperationStep::SavepointCompleted => "savepointCompleted",
            OperationStep::StoppingWorkers => "stoppingWorkers",
            OperationStep::WorkersStopped => "workersStopped",
            OperationStep::Deployed => "deployed",
        }
    }
}

/// A completed savepoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SavepointRecord {
    /// Its snapshot id.
    pub id: u64,
    /// Its directory URL, for `spec.restoreFrom`.
    pub path: String,
    /// Bytes of state it holds.
    #[serde(default)]
    pub size_bytes: u64,
    /// When it completed.
    pub time: Time,
    /// What asked for it.
    pub trigger: SavepointCause,
}

/// What asked for a savepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SavepointCause {
    /// `spec.savepointTrigger` changed (or `rivulet savepoint`).
    Manual,
    /// `spec.savepoints.interval`.
    Periodic,
    /// A spec change under `upgradeMode: savepoint`.
    Upgrade,
    /// A parallelism change.
    Rescale,
    /// `jobState: suspended` or parallelism 0.
    Suspend,
    /// The StreamJob's deletion, with `savepoints.onDeletion`.
    Deletion,
}

/// Throughput, lag and backpressure across the workers, as last observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSummary {
    /// Records waiting in the source topics.
    #[serde(default)]
    pub lag: i64,
    /// Records read per second.
    #[serde(default)]
    pub records_per_second: f64,
    /// The highest share of time a worker was blocked by downstream, 0 to 1.
    #[serde(default)]
    pub backpressure: f64,
    /// The lowest event-time watermark of the workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<Time>,
}

/// The autoscaler's memory and its decisions: the metric samples and recommendations it
/// judges over, the parallelism it set, its last decision with the reason and inputs, and
/// its last rescale with the downtime it measured. A restarted control plane carries on
/// from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// The parallelism the autoscaler set: while it is enabled it takes the place of
    /// `spec.parallelism`. Absent: it has set none (the spec's holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// `spec.parallelism` when the autoscaler took over: a different value set since (by
    /// hand, an HPA or KEDA) is a conflict, reported and not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_parallelism: Option<u32>,
    /// Why `spec.parallelism` is not acted on, when it was changed from outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<String>,
    /// Partitions of the source topics, as the workers last reported them.
    #[serde(default)]
    pub partitions: u32,
    /// Metric samples over the metrics window, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<AutoscalerSample>,
    /// Recommendations over the scale-down interval, oldest first (of a run of equal ones,
    /// the first and the last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<AutoscalerRecommendation>,
    /// The newest decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<AutoscalerDecision>,
    /// A rescale the autoscaler asked for that has not yet completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_rescale: Option<AutoscalerRescale>,
    /// The last rescale the autoscaler asked for, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rescale: Option<AutoscalerRescale>,
    /// Rescales the autoscaler carried out.
    #[serde(default)]
    pub rescales: u64,
}

/// The job's metrics at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerSample {
    /// Epoch milliseconds.
    pub at_ms: i64,
    /// Workers that reported.
    pub parallelism: u32,
    /// Records read per second, all workers.
    pub records_per_second: f64,
    /// Mean share of time the workers were processing, 0 to 1.
    pub busy: f64,
    /// The highest share of time a worker was blocked by downstream, 0 to 1.
    pub backpressure: f64,
    /// Records waiting in the source partitions.
    pub lag: i64,
}

/// One recommendation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerRecommendation {
    /// Epoch milliseconds.
    pub at_ms: i64,
    /// The parallelism the job ran at.
    pub parallelism: u32,
    /// The parallelism recommended.
    pub recommended: u32,
}

/// A decision of the autoscaler, with what it was computed from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerDecision {
    pub time: Option<Time>,
    /// `Warming`, `Steady`, `ScaleUpPending`, `ScaleDownPending`, `IneffectiveScaleUp`,
    /// `ScaleUp`, `ScaleDown` or `AtBound`.
    pub reason: String,
    /// The reason in words.
    pub message: String,
    /// The parallelism the job ran at.
    pub parallelism: u32,
    /// What the metrics call for, acted on or not.
    pub recommended: u32,
    /// The parallelism it rescales to, when it acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    /// Records arriving per second (read rate plus the lag's growth).
    pub arrival_rate: f64,
    /// Records read per second.
    pub read_rate: f64,
    /// Records waiting in the source partitions.
    pub lag: f64,
    /// The lag's growth, records per second.
    pub lag_growth: f64,
    /// Mean busy ratio of the workers.
    pub busy: f64,
    /// Records per second one worker processes when busy all the time.
    pub worker_capacity: f64,
    /// Records per second the job should be able to process.
    pub required_capacity: f64,
    /// Busy ratio of the busiest worker at the current parallelism.
    pub projected_utilization: f64,
}

/// A rescale the autoscaler asked for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerRescale {
    /// The parallelism before.
    pub from: u32,
    /// The parallelism asked for.
    pub to: u32,
    /// When it was asked for, epoch milliseconds.
    pub requested_ms: i64,
    /// When the new workers were all ready, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_ms: Option<i64>,
    /// From the request to the new workers being ready, milliseconds: the time the job read
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<i64>,
    /// The job's processing rate when busy all the time, records per second, just before.
    pub capacity_before: f64,
    /// `ScaleUp` or `ScaleDown`.
    pub reason: String,
}
