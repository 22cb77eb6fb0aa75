//! Prometheus metrics of one worker, and the status document `/status` serves.
//!
//! Every input record is counted exactly once as processed, filtered, late, malformed or
//! keyless, so `records_in = processed + filtered + late + malformed + keyless` holds at every
//! checkpoint (nothing vanishes silently).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// All metrics of a worker. Counters are atomics: the processing thread updates them
/// directly and the HTTP server encodes them.
pub struct Metrics {
    pub registry: Registry,
    pub records_in: Counter,
    pub records_processed: Counter,
    pub records_filtered: Counter,
    pub records_late: Counter,
    pub records_malformed: Counter,
    pub records_keyless: Counter,
    pub records_out: Counter,
    pub dead_letter: Family<ReasonLabels, Counter>,
    pub partition_lag: Family<PartitionLabels, Gauge>,
    pub watermark_ms: Gauge,
    pub watermark_delay_ms: Gauge,
    pub checkpoints_completed: Counter,
    pub checkpoint_failures: Counter,
    pub checkpoint_duration_seconds: Histogram,
    pub checkpoint_size_bytes: Gauge,
    pub last_checkpoint_id: Gauge,
    /// Ratio ×1000 of time spent processing vs waiting for input, over the last interval.
    pub busy_permille: Gauge,
    /// Ratio ×1000 of time blocked on a full sink queue, over the last interval.
    pub backpressure_permille: Gauge,
    pub end_to_end_latency_seconds: Histogram,
    pub state_entries: Gauge,
    /// Records and bytes sent to / received from other workers over the shuffle.
    pub shuffle_records_out: Counter,
    pub shuffle_records_in: Counter,
    pub shuffle_bytes_out: Counter,
    pub shuffle_bytes_in: Counter,
    /// Times this worker restarted from the last complete checkpoint because a peer failed.
    pub job_restarts: Counter,
    /// Source partitions paused by watermark alignment now, and pauses so far.
    pub source_partitions_paused: Gauge,
    pub source_pauses: Counter,
    /// Source partitions left out of the watermark as idle.
    pub source_partitions_idle: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rivulet");
        let m = Metrics {
            records_in: Counter::default(),
            records_processed: Counter::default(),
            records_filtered: Counter::default(),
            records_late: Counter::default(),
            records_malformed: Counter::default(),
            records_keyless: Counter::default(),
            records_out: Counter::default(),
            dead_letter: Family::default(),
            partition_lag: Family::default(),
            watermark_ms: Gauge::default(),
            watermark_delay_ms: Gauge::default(),
            checkpoints_completed: Counter::default(),
            checkpoint_failures: Counter::default(),
            checkpoint_duration_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            checkpoint_size_bytes: Gauge::default(),
            last_checkpoint_id: Gauge::default(),
            busy_permille: Gauge::default(),
            backpressure_permille: Gauge::default(),
            end_to_end_latency_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            state_entries: Gauge::default(),
            shuffle_records_out: Counter::default(),
            shuffle_records_in: Counter::default(),
            shuffle_bytes_out: Counter::default(),
            shuffle_bytes_in: Counter::default(),
            job_restarts: Counter::default(),
            source_partitions_paused: Gauge::default(),
            source_pauses: Counter::default(),
            source_partitions_idle: Gauge::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "records_in",
            "Records read from the source",
            m.records_in.clone(),
        );
        r.register(
            "records_processed",
            "Records that reached a window or the sink",
            m.records_processed.clone(),
        );
        r.register(
            "records_filtered",
            "Records dropped by the filter",
            m.records_filtered.clone(),
        );
        r.register(
            "records_late",
            "Records later than the allowed lateness",
            m.records_late.clone(),
        );
        r.register(
            "records_malformed",
            "Records that could not be decoded or had bad field types",
            m.records_malformed.clone(),
        );
        r.register(
            "records_keyless",
            "Records missing a key field",
            m.records_keyless.clone(),
        );
        r.register(
            "records_out",
            "Records written to the sink topic",
            m.records_out.clone(),
        );
        r.register(
            "dead_letter_records",
            "Records sent to the dead-letter topic, by reason",
            m.dead_letter.clone(),
        );
        r.register(
            "source_lag_records",
            "Records between the read position and the end of each partition",
            m.partition_lag.clone(),
        );
        r.register(
            "watermark_ms",
            "Current event-time watermark, epoch ms",
            m.watermark_ms.clone(),
        );
        r.register(
            "watermark_delay_ms",
            "Wall clock minus the watermark",
            m.watermark_delay_ms.clone(),
        );
        r.register(
            "checkpoints_completed",
            "Checkpoints completed",
            m.checkpoints_completed.clone(),
        );
        r.register(
            "checkpoint_failures",
            "Checkpoints failed",
            m.checkpoint_failures.clone(),
        );
        r.register(
            "checkpoint_duration_seconds",
            "Checkpoint duration",
            m.checkpoint_duration_seconds.clone(),
        );
        r.register(
            "checkpoint_size_bytes",
            "State bytes referenced by the last checkpoint",
            m.checkpoint_size_bytes.clone(),
        );
        r.register(
            "last_checkpoint_id",
            "Id of the last completed checkpoint",
            m.last_checkpoint_id.clone(),
        );
        r.register(
            "busy_permille",
            "Per mille of time spent processing rather than waiting for input",
            m.busy_permille.clone(),
        );
        r.register(
            "backpressure_permille",
            "Per mille of time blocked on a full sink queue",
            m.backpressure_permille.clone(),
        );
        r.register(
            "end_to_end_latency_seconds",
            "From a triggering input record's Kafka timestamp to its output becoming visible",
            m.end_to_end_latency_seconds.clone(),
        );
        r.register(
            "state_entries",
            "Entries in keyed state",
            m.state_entries.clone(),
        );
        r.register(
            "shuffle_records_out",
            "Keyed records sent to other workers",
            m.shuffle_records_out.clone(),
        );
        r.register(
            "shuffle_records_in",
            "Keyed records received from other workers",
            m.shuffle_records_in.clone(),
        );
        r.register(
            "shuffle_bytes_out",
            "Shuffle bytes sent to other workers",
            m.shuffle_bytes_out.clone(),
        );
        r.register(
            "shuffle_bytes_in",
            "Shuffle bytes received from other workers",
            m.shuffle_bytes_in.clone(),
        );
        r.register(
            "job_restarts",
            "Restarts from the last complete checkpoint after a peer failed",
            m.job_restarts.clone(),
        );
        r.register(
            "source_partitions_paused",
            "Source partitions paused by watermark alignment (too far ahead in event time)",
            m.source_partitions_paused.clone(),
        );
        r.register(
            "source_pauses",
            "Times watermark alignment paused a source partition",
            m.source_pauses.clone(),
        );
        r.register(
            "source_partitions_idle",
            "Source partitions left out of the watermark as idle",
            m.source_partitions_idle.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

pub use rivulet_api::status::{CheckpointInfo, PartitionStatus, WorkerStatus as Status};

/// Status shared between the processing thread and the HTTP server.
#[derive(Default)]
pub struct SharedStatus {
    inner: Mutex<Status>,
    pub ready: AtomicU64,
}

impl SharedStatus {
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.inner.lock() {
            f(&mut s);
        }
    }

    pub fn get(&self) -> Status {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(u64::from(ready), Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) == 1
    }
}
