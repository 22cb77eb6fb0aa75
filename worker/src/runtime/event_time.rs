//! The source's side of event time in a running worker: telling the watermark tracker what
//! waits in each partition (from librdkafka's reports of the partitions' ends), pausing and
//! resuming partitions for watermark alignment, and the source offsets a snapshot keeps,
//! each with the highest event time read before it.

use std::time::Instant;

use rivulet_api::manifest::SourceOffset;

use crate::time::align;

use super::{RuntimeError, Worker, ALIGN_EVERY};

impl Worker {
    /// Hands new backlog reports to the watermark tracker and pauses or resumes partitions
    /// for watermark alignment. Cheap when nothing changed: a report arrives every
    /// [`crate::kafka::source::STATS_INTERVAL_MS`], alignment is decided at most every
    /// [`ALIGN_EVERY`].
    pub(super) fn tend_source(&mut self, now: i64) -> Result<(), RuntimeError> {
        let Some(max_drift) = self.router.pipeline().max_drift_ms() else {
            return Ok(());
        };
        let generation = self.source.report_generation();
        let reported = generation != self.source_reports;
        if !reported && self.last_align.elapsed() < ALIGN_EVERY {
            return Ok(());
        }
        self.last_align = Instant::now();
        if reported {
            self.source_reports = generation;
            self.report_backlogs(now);
        }
        let Some(tracker) = self.router.tracker_mut() else {
            return Ok(());
        };
        let marks = tracker.marks(now);
        let paused: Vec<bool> = marks
            .iter()
            .map(|m| self.source.is_paused(&m.topic, m.partition))
            .collect();
        let pause = align::decide(&marks, &paused, max_drift);
        let (paused, resumed) = self.source.set_paused(|topic, partition| {
            marks
                .iter()
                .zip(&pause)
                .any(|(m, p)| *p && m.partition == partition && *m.topic == *topic)
        })?;
        if paused + resumed == 0 {
            return Ok(());
        }
        self.metrics.source_pauses.inc_by(paused as u64);
        self.metrics
            .source_partitions_paused
            .set(self.source.paused_count() as i64);
        // A paused partition has records waiting (its reports go stale while it is paused).
        self.report_backlogs(now);
        tracing::debug!(paused, resumed, "watermark alignment");
        Ok(())
    }

    /// Tells the watermark tracker what the source knows of each partition's backlog.
    fn report_backlogs(&mut self, now: i64) {
        if let Some(tracker) = self.router.tracker_mut() {
            for b in self.source.backlogs() {
                tracker.set_backlog(&b.topic, b.partition, b.backlog, now);
            }
        }
    }

    /// Where each partition resumes, with the highest event time read before that point, so
    /// a restore continues the partition's watermark from there.
    pub(super) fn source_offsets(&mut self) -> Vec<SourceOffset> {
        let mut offsets = self.source.offsets();
        if let Some(tracker) = self.router.tracker_mut() {
            for o in &mut offsets {
                o.max_event_time_ms = tracker.max_event_time(&o.topic, o.partition);
            }
        }
        offsets
    }
}
