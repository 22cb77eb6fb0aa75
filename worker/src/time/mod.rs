//! Event time: timestamps read from records ([`extract`]), watermarks over the partitions a
//! source reads ([`watermark`]), and which partitions to pause so a backlog is read evenly
//! in event time ([`align`]). Everything here is pure: processing time comes in as an
//! argument.

pub mod align;
pub mod extract;
pub mod watermark;

pub use extract::{TimeError, TimestampExtractor};
pub use watermark::{Backlog, PartitionMark, WatermarkTracker};
