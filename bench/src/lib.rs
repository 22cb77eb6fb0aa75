//! Nexmark benchmarks for Rivulet.
//!
//! - [`nexmark`]: the event generator (persons, auctions, bids; deterministic by seed), and
//!   the Flink comparison's uniform bids.
//! - [`dataset`]: which of those a run reads, as JSON.
//! - [`queries`]: the queries as `StreamJob` manifests (`bench/queries/*.yaml`) and the
//!   variants measured (backend × guarantee).
//! - [`inprocess`]: the worker's processing core fed generated events in memory (no Kafka).
//! - [`runner`]: through Kafka: tansu on loopback, fill a topic, measure the raw-consume
//!   ceiling, time every variant at every parallelism, n `rivulet-worker` processes of one
//!   job per run (repeated, medians reported, worker 0's checkpoints noted), then the
//!   rescale phase, then the live latency phase (one worker).
//! - [`rescale`]: rescale downtime: a job stopped with a savepoint and restored at another
//!   parallelism on a live source.
//! - [`latency`]: live end-to-end latency through Kafka: events produced at a fixed rate in
//!   wall-clock event time, and the worker's latency histogram read back from `/metrics`.
//! - [`report`]: the markdown written to `bench/results/<UTC date>.md`.
//! - [`flink`]: the Flink comparison: the tumbling-window query on Rivulet and on a local
//!   Flink in one run, both checked against the truth counted from the events.
//!
//! The binary, `rivulet-bench`, has `run` (the suite; `make bench`), `flink` (the Flink
//! comparison; `make bench-flink`) and `fill` (write generated events to an existing Kafka
//! topic).

pub mod dataset;
pub mod flink;
pub mod inprocess;
pub mod latency;
pub mod nexmark;
pub mod queries;
pub mod report;
pub mod rescale;
pub mod runner;
