//! The two halves of a worker's record path and what flows between them.
//!
//! [`route::Router`] is the *upstream* half: decode, filter, project, event time and key for
//! the records a worker's source reads, the source watermark, and routing of every keyed
//! record to the worker owning its key group. [`keyed::KeyedStage`] is the *downstream*
//! half: the window operator over the key groups this worker owns, fed by one input channel
//! per upstream worker (itself included), with the operator's watermark the minimum over the
//! channels. Between them flow [`Item`]s: in process for a worker's own key groups, over the
//! shuffle for the others. Neither half does I/O.

pub mod keyed;
pub mod route;

use crate::output::OutRecord;
use crate::record::RecordMeta;
use crate::window::KeyedInput;

/// Where a keyed record came from, for its dead-letter copy if it turns out to be late.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// Index into the batch being delivered with it (the in-process path).
    Batch(usize),
    /// The record's bytes and metadata travel with it (across the shuffle).
    Carried {
        payload: Option<Vec<u8>>,
        meta: RecordMeta,
    },
}

/// An upstream worker's source watermark, as sent to every channel when it changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatermarkMark {
    /// `None` until every active partition has seen a record.
    pub value: Option<i64>,
    /// No partition holds this upstream back (none assigned, or all idle): the channel is
    /// left out of the minimum until it is active again.
    pub idle: bool,
    /// When the input that moved the watermark arrived (epoch ms), for end-to-end latency.
    pub trigger_ms: i64,
}

/// What flows on one channel from an upstream worker to a downstream one, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Record(KeyedInput, Origin),
    Watermark(WatermarkMark),
}

/// Encoded output records with the time their triggering input arrived (epoch ms).
#[derive(Default, Debug)]
pub struct Output {
    pub records: Vec<OutRecord>,
    pub triggers: Vec<i64>,
}

impl Output {
    pub fn push(&mut self, record: OutRecord, trigger_ms: i64) {
        self.records.push(record);
        self.triggers.push(trigger_ms);
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.triggers.clear();
    }

    /// Moves everything to the end of `records` and `triggers`.
    pub fn take_into(&mut self, records: &mut Vec<OutRecord>, triggers: &mut Vec<i64>) {
        records.append(&mut self.records);
        triggers.append(&mut self.triggers);
    }
}
