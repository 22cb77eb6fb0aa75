//! The worker's status document, served at `GET /status` and read by the local runtime (and,
//! later, the operator). Part of the contract between control plane and workers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A worker writes its final status to this file in its data directory when it exits.
pub const FINAL_STATUS_FILE: &str = "final-status.json";

/// The last completed checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckpointInfo {
    /// Its snapshot id.
    pub id: u64,
    /// When it was started, epoch ms.
    pub time_ms: i64,
    /// How long it took, milliseconds.
    pub duration_ms: u64,
    /// Bytes of state it references.
    pub size_bytes: u64,
}

/// The last savepoint this job completed (reported by worker 0).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SavepointInfo {
    /// Its snapshot id.
    pub id: u64,
    /// Its directory URL, for `spec.restoreFrom`.
    pub path: String,
    pub size_bytes: u64,
}

/// One source partition's position, in offsets and in event time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// Next offset to read; absent until the partition returned a record when the job
    /// started from a symbolic position (`earliest`, `latest`).
    pub offset: Option<i64>,
    /// Records between the position and the end of the partition, when known.
    pub lag: Option<i64>,
    /// `waiting` (records to read), `caughtUp` (read to the end the broker last reported) or
    /// `unknown` (no report yet). Only a caught-up partition can turn idle.
    pub backlog: String,
    /// The partition's own watermark (epoch ms), once it has delivered an event time.
    pub watermark_ms: Option<i64>,
    /// Left out of the source's watermark: caught up with no record for `idleTimeout`.
    pub idle: bool,
    /// Paused by watermark alignment: too far ahead in event time of the slowest partition
    /// with records waiting.
    pub paused: bool,
}

/// A worker's status.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkerStatus {
    pub job: String,
    pub namespace: String,
    pub worker: u32,
    pub parallelism: u32,
    /// `restoring`, `running`, `stopping`, `stopped` or `failed`.
    pub phase: String,
    /// The deployment the worker was started as, if it was given one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<u64>,
    /// The job was stopped with a savepoint (not by a signal to this worker): a restarted
    /// worker of the same deployment stays stopped.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped_with_savepoint: bool,
    pub state_backend: String,
    /// The checkpoint or savepoint id the worker restored from.
    pub restored_from: Option<u64>,
    /// Bytes of state it downloaded to restore (only files of its own key groups).
    pub restored_bytes: u64,
    /// The key groups `[keyGroupStart, keyGroupEnd)` this worker owns.
    pub key_group_start: u32,
    pub key_group_end: u32,
    pub records_in: u64,
    pub records_processed: u64,
    pub records_filtered: u64,
    pub records_late: u64,
    pub records_malformed: u64,
    pub records_keyless: u64,
    pub records_out: u64,
    /// Event-time watermark, epoch ms.
    pub watermark_ms: Option<i64>,
    /// Total records behind the end of the assigned partitions.
    pub lag: i64,
    /// Share of the last status interval spent processing, 0 to 1.
    pub busy_ratio: f64,
    /// Share of the last status interval spent blocked on a full shuffle channel or sink
    /// queue, 0 to 1: how much downstream holds this worker back.
    pub backpressure_ratio: f64,
    pub partitions: Vec<PartitionStatus>,
    pub last_checkpoint: Option<CheckpointInfo>,
    pub last_savepoint: Option<SavepointInfo>,
    pub error: Option<String>,
}

/// One savepoint request on worker 0's board, as `GET /savepoints/{id}` and
/// `GET /savepoints` answer it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavepointStatus {
    pub id: u64,
    /// `pending`, `in-progress`, `completed` or `failed`.
    pub state: String,
    /// Stop the job once the savepoint is complete.
    pub stop: bool,
    pub requested_at_ms: i64,
    /// The snapshot id it is (or was) taken as.
    pub snapshot_id: Option<u64>,
    /// The savepoint's directory URL, to put in `restoreFrom`.
    pub path: Option<String>,
    pub size_bytes: Option<u64>,
    pub error: Option<String>,
}
