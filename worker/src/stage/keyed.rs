//! The downstream half of the record path: the window operator over this worker's key
//! groups, fed by one channel per upstream worker.
//!
//! Each channel carries records and its upstream's watermark marks in order. The operator's
//! watermark is the minimum over the channels that are not idle (none until each of them has
//! a watermark); when every channel is idle (every upstream has read everything), it is the
//! minimum over the channels that have a watermark, the rule each source applies to its
//! partitions, so the result never depends on which upstream turned idle first. Records are buffered and handed to the operator in chunks; a chunk is cut
//! wherever the watermark could fire a window, so results do not depend on how records were
//! grouped into batches or frames.

use std::sync::Arc;

use super::route::reject;
use super::{Item, Origin, Output, WatermarkMark};
use crate::metrics::Metrics;
use crate::output;
use crate::pipeline::Reject;
use crate::record::SourceRecord;
use crate::window::assign::Window;
use crate::window::{KeyedInput, WindowError, WindowOperator, WindowResult};

#[derive(Clone, Copy, Debug, Default)]
struct Channel {
    value: Option<i64>,
    idle: bool,
}

/// The window operator and its input channels.
pub struct KeyedStage {
    operator: Option<WindowOperator>,
    agg_names: Vec<String>,
    metrics: Arc<Metrics>,
    channels: Vec<Channel>,
    chunk: Vec<KeyedInput>,
    chunk_origin: Vec<Origin>,
    /// The earliest watermark at which a window of a buffered record could fire.
    chunk_fire: i64,
    windows: Vec<Window>,
    results: Vec<WindowResult>,
    late: Vec<usize>,
}

impl KeyedStage {
    /// A stage with `channels` inputs (the job's parallelism); `operator` is restored already.
    /// `agg_names` are the aggregates' output names in spec order.
    pub fn new(
        operator: Option<WindowOperator>,
        agg_names: Vec<String>,
        channels: usize,
        metrics: Arc<Metrics>,
    ) -> KeyedStage {
        KeyedStage {
            operator,
            agg_names,
            metrics,
            channels: vec![Channel::default(); channels.max(1)],
            chunk: Vec::new(),
            chunk_origin: Vec::new(),
            chunk_fire: i64::MAX,
            windows: Vec::new(),
            results: Vec::new(),
            late: Vec::new(),
        }
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

    /// The operator's input watermark over the channels (see [`combined`]).
    fn combined(&self) -> Option<i64> {
        combined(&self.channels)
    }

    /// Hands `items` from `channel` to the operator; [`Origin::Batch`] records index `batch`.
    /// Output (window results, late records' dead letters) goes to `out`.
    pub fn deliver(
        &mut self,
        channel: usize,
        items: impl IntoIterator<Item = Item>,
        batch: &[SourceRecord],
        now: i64,
        out: &mut Output,
    ) -> Result<(), WindowError> {
        for item in items {
            match item {
                Item::Record(input, origin) => {
                    if let Some(op) = &self.operator {
                        self.windows.clear();
                        op.assigner().assign(input.timestamp, &mut self.windows);
                        for w in &self.windows {
                            self.chunk_fire = self.chunk_fire.min(w.max_timestamp());
                        }
                    }
                    self.chunk.push(input);
                    self.chunk_origin.push(origin);
                }
                Item::Watermark(mark) => self.on_mark(channel, mark, batch, now, out)?,
            }
        }
        self.flush_chunk(batch, now, out)?;
        if let Some(wm) = self.combined() {
            self.advance(wm, now, now, out)?;
        }
        Ok(())
    }

    fn on_mark(
        &mut self,
        channel: usize,
        mark: WatermarkMark,
        batch: &[SourceRecord],
        now: i64,
        out: &mut Output,
    ) -> Result<(), WindowError> {
        if let Some(c) = self.channels.get_mut(channel) {
            c.idle = mark.idle;
            // A channel's watermark never goes back.
            c.value = match (c.value, mark.value) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        let Some(wm) = self.combined() else {
            return Ok(());
        };
        let Some(op) = self.operator.as_ref() else {
            return Ok(());
        };
        let next = op.next_fire_time().unwrap_or(i64::MAX).min(self.chunk_fire);
        if wm >= next && wm > op.watermark() {
            // Cut here: what is buffered belongs before the watermark.
            self.flush_chunk(batch, now, out)?;
            self.advance(wm, mark.trigger_ms, now, out)?;
        }
        Ok(())
    }

    /// Hands the buffered records to the window operator.
    fn flush_chunk(
        &mut self,
        batch: &[SourceRecord],
        now: i64,
        out: &mut Output,
    ) -> Result<(), WindowError> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let Some(op) = self.operator.as_mut() else {
            self.chunk.clear();
            self.chunk_origin.clear();
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
        for &li in &self.late {
            let reason = Reject::Late {
                timestamp: self.chunk[li].timestamp,
                watermark,
            };
            match &self.chunk_origin[li] {
                Origin::Batch(i) => {
                    if let Some(src) = batch.get(*i) {
                        reject(
                            &self.metrics,
                            src.payload.as_deref(),
                            &src.meta,
                            &reason,
                            now,
                            out,
                        );
                    }
                }
                Origin::Carried { payload, meta } => {
                    reject(&self.metrics, payload.as_deref(), meta, &reason, now, out);
                }
            }
        }
        for r in self.results.drain(..) {
            out.push(output::window_result(&r, &self.agg_names), now);
        }
        self.chunk.clear();
        self.chunk_origin.clear();
        self.chunk_fire = i64::MAX;
        Ok(())
    }

    fn advance(
        &mut self,
        watermark: i64,
        trigger_ms: i64,
        now: i64,
        out: &mut Output,
    ) -> Result<(), WindowError> {
        let Some(op) = self.operator.as_mut() else {
            return Ok(());
        };
        self.results.clear();
        op.advance_watermark(watermark, &mut self.results)?;
        for r in self.results.drain(..) {
            out.push(output::window_result(&r, &self.agg_names), trigger_ms);
        }
        self.metrics.watermark_ms.set(op.watermark());
        self.metrics
            .watermark_delay_ms
            .set(now.saturating_sub(op.watermark()).max(0));
        Ok(())
    }
}

/// The minimum watermark over the channels that are not idle (`None` while one of them has
/// none); when every channel is idle, the minimum over those that have a watermark.
fn combined(channels: &[Channel]) -> Option<i64> {
    let mut active = channels.iter().filter(|c| !c.idle).peekable();
    if active.peek().is_none() {
        return channels.iter().filter_map(|c| c.value).min();
    }
    let mut min: Option<i64> = None;
    for c in active {
        let v = c.value?;
        min = Some(min.map_or(v, |m| m.min(v)));
    }
    min
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(value: Option<i64>, idle: bool) -> Channel {
        Channel { value, idle }
    }

    #[test]
    fn combined_watermark_over_channels() {
        // Active channels decide; one without a watermark holds everything back.
        assert_eq!(combined(&[ch(Some(5), false), ch(Some(9), false)]), Some(5));
        assert_eq!(combined(&[ch(Some(5), false), ch(None, false)]), None);
        // Idle channels are left out while another is active.
        assert_eq!(combined(&[ch(Some(1), true), ch(Some(9), false)]), Some(9));
        assert_eq!(combined(&[ch(None, true), ch(Some(9), false)]), Some(9));
        // Every channel idle: the minimum over those with a watermark, whichever turned
        // idle first.
        assert_eq!(combined(&[ch(Some(7), true)]), Some(7));
        assert_eq!(combined(&[ch(Some(7), true), ch(Some(3), true)]), Some(3));
        assert_eq!(combined(&[ch(None, true), ch(Some(3), true)]), Some(3));
        assert_eq!(combined(&[ch(None, true), ch(None, true)]), None);
    }
}
