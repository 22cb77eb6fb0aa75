//! The record-processing core: a batch of source records in, encoded output records out.
//!
//! [`Processor`] owns the compiled [`Pipeline`], the [`WindowOperator`] (with its state
//! backend) and the [`WatermarkTracker`], and nothing that does I/O: the worker's runtime
//! feeds it batches polled from Kafka and hands its output to the sink; the benchmarks feed
//! it generated records in process. The same code runs in both, so an in-process figure
//! measures exactly what a worker does between `poll` and `produce`.
//!
//! Determinism: a batch is cut wherever the watermark could fire a window, so results do not
//! depend on how records happen to be grouped into batches.

use std::sync::Arc;

use rivulet_api::keygroup::range_for_worker;
use rivulet_api::spec::{PipelineSpec, StateBackendKind};

use crate::metrics::Metrics;
use crate::output::{self, OutRecord};
use crate::pipeline::{Pipeline, Prepared, Reject, RejectCounter};
use crate::record::SourceRecord;
use crate::state::heap::HeapBackend;
use crate::state::rocks::RocksBackend;
use crate::state::{StateBackend, StateError};
use crate::time::WatermarkTracker;
use crate::window::assign::Window;
use crate::window::{KeyedInput, WindowError, WindowOperator, WindowResult};

/// Why a [`Processor`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Spec(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Window(#[from] WindowError),
}

/// Decode → filter → project → key/time → window → encode, for batches of records.
pub struct Processor {
    pipeline: Pipeline,
    operator: Option<WindowOperator>,
    tracker: Option<WatermarkTracker>,
    agg_names: Vec<String>,
    metrics: Arc<Metrics>,
    // Scratch buffers reused across batches.
    chunk: Vec<KeyedInput>,
    chunk_src: Vec<usize>,
    /// The earliest watermark at which a window of a buffered record could fire.
    chunk_fire: i64,
    windows: Vec<Window>,
    results: Vec<WindowResult>,
    late: Vec<usize>,
    out: Vec<OutRecord>,
    out_triggers: Vec<i64>,
}

impl Processor {
    /// A processor over already-built parts (the worker restores the operator and tracker
    /// from a checkpoint first). `agg_names` are the aggregates' output names in spec order.
    pub fn new(
        pipeline: Pipeline,
        operator: Option<WindowOperator>,
        tracker: Option<WatermarkTracker>,
        agg_names: Vec<String>,
        metrics: Arc<Metrics>,
    ) -> Processor {
        Processor {
            pipeline,
            operator,
            tracker,
            agg_names,
            metrics,
            chunk: Vec::new(),
            chunk_src: Vec::new(),
            chunk_fire: i64::MAX,
            windows: Vec::new(),
            results: Vec::new(),
            late: Vec::new(),
            out: Vec::new(),
            out_triggers: Vec::new(),
        }
    }

    /// A fresh processor owning every key group, for records from `partitions`
    /// (`(topic, partition)`; they start the watermark tracker at `now_ms`). RocksDB state
    /// lives in `rocksdb_dir`.
    pub fn fresh(
        spec: &PipelineSpec,
        max_parallelism: u32,
        backend: StateBackendKind,
        rocksdb_dir: &std::path::Path,
        partitions: &[(Arc<str>, i32)],
        now_ms: i64,
    ) -> Result<Processor, BuildError> {
        let pipeline =
            Pipeline::new(spec, max_parallelism).map_err(|e| BuildError::Spec(e.to_string()))?;
        let key_groups = range_for_worker(0, 1, max_parallelism);
        let operator = match &spec.window {
            Some(w) => {
                let state: Box<dyn StateBackend> = match backend {
                    StateBackendKind::Heap => Box::new(HeapBackend::new(key_groups)),
                    StateBackendKind::Rocksdb => {
                        Box::new(RocksBackend::open(rocksdb_dir, key_groups)?)
                    }
                };
                let mut op = WindowOperator::new(w, &spec.aggregates, state)?;
                op.restore_timers(i64::MIN)?;
                Some(op)
            }
            None => None,
        };
        let tracker = pipeline.watermark_tracker().map(|mut t| {
            t.assign(partitions, now_ms);
            t
        });
        let agg_names = spec.aggregates.iter().map(|a| a.name.clone()).collect();
        Ok(Processor::new(
            pipeline,
            operator,
            tracker,
            agg_names,
            Arc::new(Metrics::new()),
        ))
    }

    /// The window operator, for checkpoints.
    pub fn operator_mut(&mut self) -> Option<&mut WindowOperator> {
        self.operator.as_mut()
    }

    /// The operator's watermark, if it has one yet.
    pub fn watermark(&self) -> Option<i64> {
        self.operator
            .as_ref()
            .map(|o| o.watermark())
            .filter(|w| *w > i64::MIN)
    }

    /// Output produced so far and not yet taken, with each record's trigger time (epoch ms:
    /// when the input that caused it arrived, for the end-to-end latency).
    pub fn output(&self) -> (&[OutRecord], &[i64]) {
        (&self.out, &self.out_triggers)
    }

    /// Moves the pending output to the end of `records` and `triggers`.
    pub fn take_output(&mut self, records: &mut Vec<OutRecord>, triggers: &mut Vec<i64>) {
        records.append(&mut self.out);
        triggers.append(&mut self.out_triggers);
    }

    /// Forgets the pending output (it was sent).
    pub fn clear_output(&mut self) {
        self.out.clear();
        self.out_triggers.clear();
    }

    /// Processes one batch; `now` is the wall clock (epoch ms). Output accumulates until
    /// taken.
    pub fn process(&mut self, batch: &[SourceRecord], now: i64) -> Result<(), WindowError> {
        for (i, rec) in batch.iter().enumerate() {
            match self
                .pipeline
                .prepare(rec.payload.as_deref(), rec.meta.clone(), now)
            {
                Prepared::Keyed { input, .. } => {
                    let ts = input.timestamp;
                    self.chunk.push(input);
                    self.chunk_src.push(i);
                    if let Some(op) = &self.operator {
                        self.windows.clear();
                        op.assigner().assign(ts, &mut self.windows);
                        for w in &self.windows {
                            self.chunk_fire = self.chunk_fire.min(w.max_timestamp());
                        }
                    }
                    if let Some(t) = self.tracker.as_mut() {
                        t.observe(&rec.meta.topic, rec.meta.partition, ts, now);
                        let wm = t.current(now);
                        // Cut the batch where the watermark could fire a window, so results
                        // do not depend on how records were grouped into polls.
                        let next = self
                            .operator
                            .as_ref()
                            .and_then(|o| o.next_fire_time())
                            .unwrap_or(i64::MAX)
                            .min(self.chunk_fire);
                        let fire = wm.filter(|wm| *wm >= next);
                        if let Some(wm) = fire {
                            self.flush_chunk(batch, now)?;
                            let trigger = rec.meta.timestamp_ms.unwrap_or(now);
                            self.advance(wm, trigger, now)?;
                        }
                    }
                }
                Prepared::Stateless(r) => {
                    self.metrics.records_processed.inc();
                    self.out.push(output::stateless(&r));
                    self.out_triggers.push(rec.meta.timestamp_ms.unwrap_or(now));
                }
                Prepared::Filtered => {
                    self.metrics.records_filtered.inc();
                }
                Prepared::Rejected(reason) => {
                    self.reject(rec, &reason, now);
                }
            }
        }
        self.flush_chunk(batch, now)?;
        let wm = match self.tracker.as_mut() {
            Some(t) => t.current(now),
            None => Some(now - 1),
        };
        if let Some(wm) = wm {
            self.advance(wm, now, now)?;
        }
        Ok(())
    }

    fn reject(&mut self, rec: &SourceRecord, reason: &Reject, now: i64) {
        match reason.counter() {
            RejectCounter::Malformed => self.metrics.records_malformed.inc(),
            RejectCounter::Keyless => self.metrics.records_keyless.inc(),
            RejectCounter::Late => self.metrics.records_late.inc(),
        };
        self.metrics
            .dead_letter
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: reason.kind().to_string(),
            })
            .inc();
        self.out.push(output::dead_letter(
            rec.payload.as_deref(),
            &rec.meta,
            reason,
        ));
        self.out_triggers.push(rec.meta.timestamp_ms.unwrap_or(now));
    }

    /// Hands the buffered keyed records to the window operator.
    fn flush_chunk(&mut self, batch: &[SourceRecord], now: i64) -> Result<(), WindowError> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let Some(op) = self.operator.as_mut() else {
            self.chunk.clear();
            self.chunk_src.clear();
            self.chunk_fire = i64::MAX;
            return Ok(());
        };
        self.late.clear();
        self.results.clear();
        op.process(&self.chunk, &mut self.results, &mut self.late)?;
        let watermark = op.watermark();
        self.metrics
            .records_processed
            .inc_by((self.chunk.len() - self.late.len()) as u64);
        let late = std::mem::take(&mut self.late);
        for &li in &late {
            let input = &self.chunk[li];
            let reason = Reject::Late {
                timestamp: input.timestamp,
                watermark,
            };
            let src = &batch[self.chunk_src[li]];
            self.reject(src, &reason, now);
        }
        self.late = late;
        for r in self.results.drain(..) {
            self.out.push(output::window_result(&r, &self.agg_names));
            self.out_triggers.push(now);
        }
        self.chunk.clear();
        self.chunk_src.clear();
        self.chunk_fire = i64::MAX;
        Ok(())
    }

    fn advance(&mut self, watermark: i64, trigger_ms: i64, now: i64) -> Result<(), WindowError> {
        let Some(op) = self.operator.as_mut() else {
            return Ok(());
        };
        self.results.clear();
        op.advance_watermark(watermark, &mut self.results)?;
        for r in self.results.drain(..) {
            self.out.push(output::window_result(&r, &self.agg_names));
            self.out_triggers.push(trigger_ms);
        }
        self.metrics.watermark_ms.set(op.watermark());
        self.metrics
            .watermark_delay_ms
            .set(now.saturating_sub(op.watermark()).max(0));
        Ok(())
    }
}
