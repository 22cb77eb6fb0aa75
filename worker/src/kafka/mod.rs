//! Kafka I/O: client configuration, the partition-assigned source, and the sinks.
//!
//! - [`config`]: librdkafka client properties from the spec, secrets from env or files.
//! - [`source`]: manual partition assignment, offsets owned by checkpoints, lag from fetches.
//! - [`sink`]: exactly-once (epoch output committed in one short transaction with a commit
//!   marker) and at-least-once producers; the dead-letter topic goes through the same sink.

pub mod config;
pub mod sink;
pub mod source;
