//! Event time: timestamps read from records ([`extract`]) and watermarks over the partitions
//! a source reads ([`watermark`]). Everything here is pure: processing time comes in as an
//! argument.

pub mod extract;
pub mod watermark;

pub use extract::{TimeError, TimestampExtractor};
pub use watermark::WatermarkTracker;
