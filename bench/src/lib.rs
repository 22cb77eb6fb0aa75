//! Nexmark benchmarks for Rivulet.
//!
//! - [`nexmark`]: the event generator (persons, auctions, bids; deterministic by seed).
//! - [`queries`]: the queries as `StreamJob` manifests (`bench/queries/*.yaml`) and the
//!   variants measured (backend × guarantee).
//! - [`runner`]: through Kafka: tansu on loopback, fill a topic, measure the raw-consume
//!   ceiling, then time one `rivulet-worker` per variant.
//! - [`report`]: the markdown written to `bench/results/<UTC date>.md`.
//!
//! The binary, `rivulet-bench`, has `run` (the suite; `make bench`) and `fill` (write
//! generated events to an existing Kafka topic).

pub mod nexmark;
pub mod queries;
pub mod report;
pub mod runner;
