//! The upstream half of the record path: source records in, keyed records routed to the
//! worker owning their key group, with the source watermark after them.
//!
//! A keyed record for key group `kg` goes to worker `worker_for_key_group(kg)` (DESIGN's
//! contiguous ranges). The source watermark is sent to every worker whenever it changes,
//! right after the record that moved it, so each downstream worker sees the same watermark
//! at the same point of this worker's input as a single worker would. Stateless results and
//! rejected records (malformed, keyless) are emitted here; late records can only be judged
//! downstream, against the operator's watermark.

use std::sync::Arc;

use rivulet_api::keygroup::worker_for_key_group;

use super::{Item, Origin, Output, WatermarkMark};
use crate::metrics::Metrics;
use crate::output;
use crate::pipeline::{Pipeline, Prepared, Reject, RejectCounter};
use crate::record::SourceRecord;
use crate::time::WatermarkTracker;

/// Prepares and routes the records of one worker's source.
pub struct Router {
    pipeline: Pipeline,
    tracker: Option<WatermarkTracker>,
    index: u32,
    parallelism: u32,
    metrics: Arc<Metrics>,
    /// The last mark sent (`None` before the first): marks go out only when they change.
    last_mark: Option<(Option<i64>, bool)>,
}

impl Router {
    /// A router for worker `index` of `parallelism`; `tracker` is the source's watermark
    /// tracker (event time), already assigned and restored.
    pub fn new(
        pipeline: Pipeline,
        tracker: Option<WatermarkTracker>,
        index: u32,
        parallelism: u32,
        metrics: Arc<Metrics>,
    ) -> Router {
        Router {
            pipeline,
            tracker,
            index,
            parallelism: parallelism.max(1),
            metrics,
            last_mark: None,
        }
    }

    /// The pipeline this router prepares records with.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The source's watermark tracker (`None` for processing time), for what the source knows
    /// of its partitions and for checkpoints.
    pub fn tracker_mut(&mut self) -> Option<&mut WatermarkTracker> {
        self.tracker.as_mut()
    }

    /// Routes one batch: keyed records and watermark marks go to `routes[worker]` (this
    /// worker's own entry gets [`Origin::Batch`] records, the others carry their bytes);
    /// stateless and rejected output goes to `out`. Ends with [`Router::finish`].
    pub fn route(
        &mut self,
        batch: &[SourceRecord],
        now: i64,
        routes: &mut [Vec<Item>],
        out: &mut Output,
    ) {
        debug_assert_eq!(routes.len(), self.parallelism as usize);
        let max_parallelism = self.pipeline.max_parallelism();
        for (i, rec) in batch.iter().enumerate() {
            match self
                .pipeline
                .prepare(rec.payload.as_deref(), rec.meta.clone(), now)
            {
                Prepared::Keyed { input, .. } => {
                    let ts = input.timestamp;
                    let owner =
                        worker_for_key_group(input.key_group, self.parallelism, max_parallelism);
                    let origin = if owner == self.index {
                        Origin::Batch(i)
                    } else {
                        Origin::Carried {
                            payload: rec.payload.clone(),
                            meta: rec.meta.clone(),
                        }
                    };
                    if let Some(route) = routes.get_mut(owner as usize) {
                        route.push(Item::Record(input, origin));
                    }
                    if let Some(t) = self.tracker.as_mut() {
                        t.observe(&rec.meta.topic, rec.meta.partition, ts, now);
                        let value = t.current(now);
                        let trigger = rec.meta.timestamp_ms.unwrap_or(now);
                        self.mark(value, false, trigger, routes);
                    }
                }
                Prepared::Stateless(r) => {
                    self.metrics.records_processed.inc();
                    out.push(output::stateless(&r), rec.meta.timestamp_ms.unwrap_or(now));
                }
                Prepared::Filtered => {
                    self.metrics.records_filtered.inc();
                }
                Prepared::Rejected(reason) => {
                    reject(
                        &self.metrics,
                        rec.payload.as_deref(),
                        &rec.meta,
                        &reason,
                        now,
                        out,
                    );
                }
            }
        }
        self.finish(now, routes);
    }

    /// Sends the watermark as of `now` if it changed: idleness, or processing time.
    pub fn finish(&mut self, now: i64, routes: &mut [Vec<Item>]) {
        if !self.pipeline.is_windowed() {
            return;
        }
        match self.tracker.as_mut() {
            Some(t) => {
                let value = t.current(now);
                let idle = t.is_idle(now);
                self.mark(value, idle, now, routes);
            }
            None => self.mark(Some(now - 1), false, now, routes),
        }
    }

    fn mark(&mut self, value: Option<i64>, idle: bool, trigger_ms: i64, routes: &mut [Vec<Item>]) {
        if self.last_mark == Some((value, idle)) {
            return;
        }
        self.last_mark = Some((value, idle));
        let mark = WatermarkMark {
            value,
            idle,
            trigger_ms,
        };
        for r in routes.iter_mut() {
            r.push(Item::Watermark(mark));
        }
    }
}

/// Counts a rejected record and emits its dead-letter copy.
pub fn reject(
    metrics: &Metrics,
    payload: Option<&[u8]>,
    meta: &crate::record::RecordMeta,
    reason: &Reject,
    now: i64,
    out: &mut Output,
) {
    match reason.counter() {
        RejectCounter::Malformed => metrics.records_malformed.inc(),
        RejectCounter::Keyless => metrics.records_keyless.inc(),
        RejectCounter::Late => metrics.records_late.inc(),
    };
    metrics
        .dead_letter
        .get_or_create(&crate::metrics::ReasonLabels {
            reason: reason.kind().to_string(),
        })
        .inc();
    out.push(
        output::dead_letter(payload, meta, reason),
        meta.timestamp_ms.unwrap_or(now),
    );
}
