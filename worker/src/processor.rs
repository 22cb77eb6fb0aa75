//! The record-processing core: a batch of source records in, encoded output records out.
//!
//! [`Processor`] is a [`Router`] feeding a [`KeyedStage`] in process, with nothing that does
//! I/O: a single worker's whole record path. The benchmarks feed it generated records in
//! process, so an in-process figure measures exactly what a worker does between `poll` and
//! `produce`. Workers of a parallel job run the same two halves with the shuffle between
//! them.
//!
//! Determinism: a batch is cut wherever the watermark could fire a window, so results do not
//! depend on how records happen to be grouped into batches.

use std::sync::Arc;

use rivulet_api::keygroup::range_for_worker;
use rivulet_api::spec::{PipelineSpec, StateBackendKind};

use crate::metrics::Metrics;
use crate::output::OutRecord;
use crate::pipeline::Pipeline;
use crate::record::SourceRecord;
use crate::stage::keyed::KeyedStage;
use crate::stage::route::Router;
use crate::stage::{Item, Output};
use crate::state::heap::HeapBackend;
use crate::state::rocks::RocksBackend;
use crate::state::{StateBackend, StateError};
use crate::time::WatermarkTracker;
use crate::window::{WindowError, WindowOperator};

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
    router: Router,
    stage: KeyedStage,
    routes: Vec<Vec<Item>>,
    out: Output,
    metrics: Arc<Metrics>,
}

impl Processor {
    /// A processor over already-built parts (restored from a checkpoint first, if any).
    /// `agg_names` are the aggregates' output names in spec order.
    pub fn new(
        pipeline: Pipeline,
        operator: Option<WindowOperator>,
        tracker: Option<WatermarkTracker>,
        agg_names: Vec<String>,
        metrics: Arc<Metrics>,
    ) -> Processor {
        Processor {
            router: Router::new(pipeline, tracker, 0, 1, metrics.clone()),
            stage: KeyedStage::new(operator, agg_names, 1, metrics.clone()),
            routes: vec![Vec::new()],
            out: Output::default(),
            metrics,
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
                op.restore_timers(i64::MIN, &mut Vec::new())?;
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

    /// The counters of what it processed (records in are not counted here).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The window operator, for checkpoints.
    pub fn operator_mut(&mut self) -> Option<&mut WindowOperator> {
        self.stage.operator_mut()
    }

    /// The operator's watermark, if it has one yet.
    pub fn watermark(&self) -> Option<i64> {
        self.stage.watermark()
    }

    /// Output produced so far and not yet taken, with each record's trigger time (epoch ms:
    /// when the input that caused it arrived, for the end-to-end latency).
    pub fn output(&self) -> (&[OutRecord], &[i64]) {
        (&self.out.records, &self.out.triggers)
    }

    /// Moves the pending output to the end of `records` and `triggers`.
    pub fn take_output(&mut self, records: &mut Vec<OutRecord>, triggers: &mut Vec<i64>) {
        self.out.take_into(records, triggers);
    }

    /// Forgets the pending output (it was sent).
    pub fn clear_output(&mut self) {
        self.out.clear();
    }

    /// Processes one batch; `now` is the wall clock (epoch ms). Output accumulates until
    /// taken.
    pub fn process(&mut self, batch: &[SourceRecord], now: i64) -> Result<(), WindowError> {
        self.router
            .route(batch, now, &mut self.routes, &mut self.out);
        let mut items = std::mem::take(&mut self.routes[0]);
        self.stage
            .deliver(0, items.drain(..), batch, now, &mut self.out)?;
        self.routes[0] = items;
        Ok(())
    }
}
