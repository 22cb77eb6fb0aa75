//! The snapshot manifest: the last file written for a checkpoint or savepoint.
//!
//! Layout on object storage: `<storage>/<namespace>/<job>/checkpoints/<id>/manifest.json` and
//! `.../savepoints/<id>/manifest.json`. A snapshot exists only once its manifest does; the
//! manifest lists every state file with its size and CRC-32C, the source offsets to resume
//! from (with the highest event time read from each, so watermarks continue where they
//! were), the sink output of the epoch the snapshot closes (committed to Kafka only after
//! the manifest is written), and a fingerprint of the pipeline it was taken from.

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the snapshot layout.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SnapshotKind {
    Checkpoint,
    Savepoint,
}

impl SnapshotKind {
    /// Directory name under the job's prefix.
    pub fn dir(&self) -> &'static str {
        match self {
            SnapshotKind::Checkpoint => "checkpoints",
            SnapshotKind::Savepoint => "savepoints",
        }
    }
}

/// How a state file is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StateFileFormat {
    /// Rivulet's canonical format: `(key group, key, value)` entries sorted by key group and
    /// key; readable by every backend at any parallelism.
    Canonical,
    /// A file of a RocksDB checkpoint (SST, MANIFEST, OPTIONS, CURRENT); SST files may be
    /// shared with earlier snapshots (incremental checkpoints).
    RocksdbNative,
}

/// One file of state, relative to the job's prefix (so snapshots can share files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateFile {
    /// Path relative to the job prefix (`<storage>/<namespace>/<job>/`).
    pub path: String,
    /// Name of the file when materialized locally (RocksDB needs its own names back).
    pub local_name: String,
    pub format: StateFileFormat,
    /// Key groups `[key_group_start, key_group_end)` whose state the file holds.
    pub key_group_start: u32,
    pub key_group_end: u32,
    pub size: u64,
    pub crc32c: u32,
}

/// The offset to resume a source partition from (the next record to read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The highest event time read from the partition before `offset` (epoch ms): a restore
    /// starts the partition's watermark there, as if it had read those records again.
    /// Absent when it had read none (and in snapshots written before this field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_time_ms: Option<i64>,
}

/// Output a sink must publish once this snapshot is complete (exactly-once sinks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingOutput {
    /// The sink slot (its `transactional.id` suffix).
    pub slot: u32,
    /// Epoch the output belongs to; the sink's commit marker records it.
    pub epoch: u64,
    pub path: String,
    pub records: u64,
    pub size: u64,
    pub crc32c: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotManifest {
    pub format_version: u32,
    pub kind: SnapshotKind,
    pub id: u64,
    pub namespace: String,
    pub job: String,
    /// Wall-clock time the snapshot was started, epoch milliseconds.
    pub created_at_ms: i64,
    /// How long the snapshot took, milliseconds.
    pub duration_ms: u64,
    pub max_parallelism: u32,
    pub parallelism: u32,
    pub state_backend: String,
    /// Hash of the pipeline spec; restoring into a different pipeline is flagged.
    pub pipeline_fingerprint: String,
    pub state_files: Vec<StateFile>,
    pub source_offsets: Vec<SourceOffset>,
    /// The event-time watermark when the snapshot was taken (epoch ms), if any.
    pub watermark_ms: Option<i64>,
    pub pending_output: Vec<PendingOutput>,
    /// The deployment whose workers took it (absent when they were started without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<u64>,
}

impl SnapshotManifest {
    /// Total bytes of state this snapshot references.
    pub fn state_size(&self) -> u64 {
        self.state_files.iter().map(|f| f.size).sum()
    }
}

/// Zero-padded so lexical order of snapshot directories is numeric order.
pub fn snapshot_dir_name(id: u64) -> String {
    format!("{id:020}")
}

pub fn parse_snapshot_dir_name(name: &str) -> Option<u64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_sort_numerically() {
        assert_eq!(snapshot_dir_name(7), "00000000000000000007");
        assert!(snapshot_dir_name(9) < snapshot_dir_name(10));
        assert_eq!(
            parse_snapshot_dir_name(&snapshot_dir_name(12345)),
            Some(12345)
        );
        assert_eq!(parse_snapshot_dir_name("12"), None);
    }
}
