//! What a worker tells about itself: the status document (`/status`, and the final status
//! file), per-partition lag, and the busy and backpressure ratios.

use std::time::{Duration, Instant};

use crate::metrics::{PartitionLabels, PartitionStatus};

use super::{now_ms, Worker, STATUS_EVERY};

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

    pub(super) fn publish_status(&mut self, phase: &str) {
        let now = now_ms();
        let backlogs = self.source.backlogs();
        let offsets = self.source.offsets();
        let marks = self
            .router
            .tracker_mut()
            .map(|t| t.marks(now))
            .unwrap_or_default();
        let mut total = 0;
        let mut partitions = Vec::with_capacity(backlogs.len());
        for b in &backlogs {
            let (topic, partition) = (b.topic.to_string(), b.partition);
            if let Some(l) = b.lag {
                total += l;
                self.metrics
                    .partition_lag
                    .get_or_create(&PartitionLabels {
                        topic: topic.clone(),
                        partition,
                    })
                    .set(l);
            }
            let mark = marks
                .iter()
                .find(|m| m.partition == partition && *m.topic == *b.topic);
            partitions.push(PartitionStatus {
                offset: offsets
                    .iter()
                    .find(|o| o.partition == partition && o.topic == topic)
                    .map(|o| o.offset),
                topic,
                partition,
                lag: b.lag,
                backlog: mark.map_or(b.backlog, |m| m.backlog).name().to_string(),
                watermark_ms: mark.and_then(|m| m.watermark),
                idle: mark.is_some_and(|m| m.idle),
                paused: b.paused,
            });
        }
        self.metrics
            .source_partitions_idle
            .set(marks.iter().filter(|m| m.idle).count() as i64);
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
