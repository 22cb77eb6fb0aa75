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

/// An operation in progress: what it is, the step it has reached, and what the next steps
/// need (the savepoint it took, the generation it deploys).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// What the operation does.
    pub kind: OperationKind,
    /// The step it has reached.
    pub step: OperationStep,
    /// When the operation started.
    pub started_at: Time,
    /// When it reached its current step.
    pub step_started_at: Time,
    /// The generation of the spec being deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_generation: Option<i64>,
    /// The savepoint requested or taken for this operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_id: Option<u64>,
    /// Where that savepoint is, once completed; what the new workers restore from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// Failed attempts of the current step.
    #[serde(default)]
    pub attempts: u32,
    /// What the step is waiting for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OperationKind {
    Deploy,
    Savepoint,
    Upgrade,
    Rescale,
    Suspend,
    Resume,
    Restart,
    Rollback,
    Delete,
}

/// The steps of an operation, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OperationStep {
    /// A savepoint was asked of the workers.
    SavepointRequested,
    /// The savepoint completed; its path is recorded.
    SavepointCompleted,
    /// The old workers were asked to stop.
    StoppingWorkers,
    /// No worker of the old generation runs.
    WorkersStopped,
    /// Workers of the target generation were started.
    Deployed,
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
