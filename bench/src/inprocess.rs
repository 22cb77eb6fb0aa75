//! The in-process path: a dataset's events (Nexmark's, or the Flink comparison's bids) generated into memory, then fed to the worker's own
//! [`Processor`] in batches, with no Kafka, no checkpoints and no sink.
//!
//! What is timed is exactly what a worker does between `poll` and `produce`: decode,
//! filter, project, key, window (on the heap or in RocksDB) and encode the output records.
//! Generating the events is not timed: they are built first, as Kafka would hold them
//! (partition `n % partitions`, offset, the event's JSON as the value).
//!
//! **Latency.** In process there is no queue in front of the engine, so a record's latency is
//! the time from its batch entering [`Processor::process`] to that call returning with the
//! record's output. p50 and p99 are over output records (each output gets the duration of the
//! batch that produced it). Windowed queries emit at watermark boundaries, so their outputs
//! come from the batches that cross one.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use rivulet_api::spec::{DeliveryGuarantee, StateBackendKind, TimeSpec};
use rivulet_worker::processor::Processor;
use rivulet_worker::record::{RecordMeta, SourceRecord};
use rivulet_worker::runtime::now_ms;

use crate::dataset::Dataset;
use crate::queries::{Query, Variant};
use crate::runner::cpu_seconds;

/// Records per [`Processor::process`] call, as a worker's poll batch.
pub const BATCH: usize = 4096;

/// One in-process measurement.
#[derive(Clone, Debug)]
pub struct InProcessResult {
    pub query: &'static str,
    pub backend: StateBackendKind,
    pub events: u64,
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub records_out: u64,
    /// Records that reached a window or the sink, and records too late for their windows
    /// (dead-lettered by a worker).
    pub records_processed: u64,
    pub records_late: u64,
    /// Windows of processing time: how many results there are depends on the wall clock.
    pub processing_time: bool,
    /// Batch latency percentiles over output records, in ms (`None` with no output).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl InProcessResult {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    pub fn rate_per_core(&self) -> f64 {
        crate::runner::per_core(self.events, self.cpu_seconds)
    }
}

/// The events `0..events` as a source would deliver them from `partitions` partitions of
/// `topic`.
pub fn generate(dataset: &Dataset, events: u64, topic: &str, partitions: i32) -> Vec<SourceRecord> {
    let topic: Arc<str> = Arc::from(topic);
    let partitions = partitions.max(1) as u64;
    (0..events)
        .map(|n| SourceRecord {
            payload: Some(dataset.json(n).into_bytes()),
            meta: RecordMeta {
                topic: topic.clone(),
                partition: (n % partitions) as i32,
                offset: (n / partitions) as i64,
                timestamp_ms: None,
                key: None,
            },
        })
        .collect()
}

/// Runs `query` over `records` on `backend`; RocksDB lives under `scratch`.
pub fn run(
    query: &'static Query,
    backend: StateBackendKind,
    records: &[SourceRecord],
    partitions: i32,
    scratch: &Path,
) -> anyhow::Result<InProcessResult> {
    let variant = Variant {
        query: query.name,
        backend,
        guarantee: DeliveryGuarantee::AtLeastOnce,
    };
    let manifest = variant.manifest("nexmark", 1000, "file:///unused")?;
    let spec = &manifest.spec;
    let topic = records
        .first()
        .map(|r| r.meta.topic.clone())
        .unwrap_or_else(|| Arc::from("nexmark"));
    let assigned: Vec<(Arc<str>, i32)> = (0..partitions).map(|p| (topic.clone(), p)).collect();
    let dir = tempfile::Builder::new()
        .prefix(&format!("rivulet-inprocess-{}-", query.name))
        .tempdir_in(scratch)?;
    let mut processor = Processor::fresh(
        &spec.pipeline,
        spec.max_parallelism,
        backend,
        &dir.path().join("rocksdb"),
        &assigned,
        now_ms(),
    )
    .with_context(|| format!("build {}", query.name))?;

    let mut latencies: Vec<(f64, u64)> = Vec::new();
    let mut records_out = 0u64;
    let mut out = Vec::new();
    let mut triggers = Vec::new();
    let pid = std::process::id();
    let cpu0 = cpu_seconds(pid)?;
    let start = Instant::now();
    for batch in records.chunks(BATCH) {
        let t0 = Instant::now();
        processor.process(batch, now_ms())?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        processor.take_output(&mut out, &mut triggers);
        if !out.is_empty() {
            latencies.push((ms, out.len() as u64));
            records_out += out.len() as u64;
            // The sink's share of the work ends here: the records are encoded.
            std::hint::black_box(&out);
            out.clear();
            triggers.clear();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds(pid)? - cpu0;
    Ok(InProcessResult {
        query: query.name,
        backend,
        events: records.len() as u64,
        seconds,
        cpu_seconds,
        records_out,
        records_processed: processor.metrics().records_processed.get(),
        records_late: processor.metrics().records_late.get(),
        processing_time: matches!(spec.pipeline.time, TimeSpec::Processing)
            && spec.pipeline.window.is_some(),
        p50_ms: percentile(&mut latencies, 0.50),
        p99_ms: percentile(&mut latencies, 0.99),
    })
}

/// The `q` quantile of weighted samples `(value, weight)`.
pub fn percentile(samples: &mut [(f64, u64)], q: f64) -> Option<f64> {
    let total: u64 = samples.iter().map(|s| s.1).sum();
    if total == 0 {
        return None;
    }
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (v, w) in samples.iter() {
        seen += w;
        if seen >= rank {
            return Some(*v);
        }
    }
    samples.last().map(|s| s.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_percentiles() {
        let mut s = vec![(5.0, 1), (1.0, 98), (9.0, 1)];
        assert_eq!(percentile(&mut s, 0.5), Some(1.0));
        assert_eq!(percentile(&mut s, 0.99), Some(5.0));
        assert_eq!(percentile(&mut s, 1.0), Some(9.0));
        assert_eq!(percentile(&mut [], 0.5), None);
    }

    #[test]
    fn every_query_runs_in_process_and_filters_like_the_spec_says() {
        let config = crate::nexmark::Config::default();
        let records = generate(&Dataset::nexmark(config.clone()), 20_000, "nexmark", 4);
        let bids = (0..20_000)
            .filter(|n| {
                crate::nexmark::Generator::new(config.clone())
                    .event(*n)
                    .kind()
                    == "bid"
            })
            .count() as u64;
        let scratch = tempfile::tempdir().unwrap();
        for q in crate::queries::QUERIES {
            let r = run(q, StateBackendKind::Heap, &records, 4, scratch.path()).unwrap();
            assert_eq!(r.events, 20_000, "{}", q.name);
            match q.name {
                "q0" => assert_eq!(r.records_out, 20_000, "q0 passes every event through"),
                "q1" => assert_eq!(r.records_out, bids, "q1 converts every bid"),
                _ => {}
            }
        }
        // q5 on both backends: the same number of window results.
        let q5 = crate::queries::query("q5").unwrap();
        let heap = run(q5, StateBackendKind::Heap, &records, 4, scratch.path()).unwrap();
        let rocks = run(q5, StateBackendKind::Rocksdb, &records, 4, scratch.path()).unwrap();
        assert!(heap.records_out > 0);
        assert_eq!(heap.records_out, rocks.records_out);
    }
}
