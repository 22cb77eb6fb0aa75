//! What a worker tells about itself: the status document (`/status`, and the final status
//! file), per-partition lag, and the busy and backpressure ratios.

use std::time::{Duration, Instant};

use crate::metrics::{PartitionLabels, PartitionStatus};

use super::{Worker, STATUS_EVERY};

impl Worker {
    /// Every [`STATUS_EVERY`]: the busy and backpressure ratios, and the status document.
    pub(super) fn tick_status(&mut self) {
        if self.last_status.elapsed() < STATUS_EVERY {
            return;
        }
        let elapsed = self.window_start.elapsed().as_secs_f64().max(1e-9);
        self.metrics
            .busy_permille
            .set((self.busy.as_secs_f64() / elapsed * 1000.0).round() as i64);
        let blocked = self.sink.take_blocked() + self.blocked;
        self.metrics.backpressure_permille.set(
            (blocked.as_secs_f64() / elapsed * 1000.0)
                .round()
                .min(1000.0) as i64,
        );
        self.busy = Duration::ZERO;
        self.blocked = Duration::ZERO;
        self.window_start = Instant::now();
        let phase = if self.stopping {
            "stopping"
        } else {
            self.phase
        };
        self.publish_status(phase);
        self.last_status = Instant::now();
    }

    pub(super) fn publish_status(&self, phase: &str) {
        let lag = self.source.lag();
        let offsets = self.source.offsets();
        let mut total = 0;
        let mut partitions = Vec::with_capacity(offsets.len());
        for o in &offsets {
            let l = lag
                .iter()
                .find(|((t, p), _)| &**t == o.topic.as_str() && *p == o.partition)
                .map(|(_, l)| *l);
            if let Some(l) = l {
                total += l;
                self.metrics
                    .partition_lag
                    .get_or_create(&PartitionLabels {
                        topic: o.topic.clone(),
                        partition: o.partition,
                    })
                    .set(l);
            }
            partitions.push(PartitionStatus {
                topic: o.topic.clone(),
                partition: o.partition,
                offset: o.offset,
                lag: l,
            });
        }
        let m = &self.metrics;
        let watermark = self.stage.watermark();
        let last = self.last_checkpoint.clone();
        self.status.update(|s| {
            s.phase = phase.to_string();
            s.records_in = m.records_in.get();
            s.records_processed = m.records_processed.get();
            s.records_filtered = m.records_filtered.get();
            s.records_late = m.records_late.get();
            s.records_malformed = m.records_malformed.get();
            s.records_keyless = m.records_keyless.get();
            s.records_out = m.records_out.get();
            s.watermark_ms = watermark;
            s.lag = total;
            s.busy_ratio = m.busy_permille.get() as f64 / 1000.0;
            s.backpressure_ratio = m.backpressure_permille.get() as f64 / 1000.0;
            s.partitions = partitions;
            if last.is_some() {
                s.last_checkpoint = last;
            }
        });
    }
}
