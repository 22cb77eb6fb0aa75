//! Rivulet's data plane: one worker process of a streaming job.
//!
//! Records flow in batches: [`kafka::source`] → [`format`] (decode) → [`transform`] (filter,
//! project) → [`time`] (event time, watermarks) → [`window`] (keyed windows over
//! [`state`]) → [`kafka::sink`] (exactly-once or at-least-once) and the dead-letter topic.
//! [`checkpoint`] snapshots state, offsets and pending output to object storage;
//! [`processor`] is the I/O-free core from a batch of records to encoded output;
//! [`runtime`] drives the loop; [`http`] serves status and [`metrics`].

pub mod args;
pub mod checkpoint;
pub mod coordinator;
pub mod format;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod output;
pub mod peers;
pub mod pipeline;
pub mod processor;
pub mod record;
pub mod runtime;
pub mod savepoints;
pub mod shuffle;
pub mod stage;
pub mod state;
pub mod time;
pub mod transform;
pub mod window;
