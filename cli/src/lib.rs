//! The `rivulet` command's library: StreamJobs on this machine, through the lifecycle
//! planner.
//!
//! - [`jobs`]: the local job store (what the API server keeps: spec, status, events).
//! - [`local`]: the local runtime, a job's workers as supervised processes.
//! - [`reconcile`]: one observe → plan → write status → act round.
//! - [`view`]: what `rivulet get` and `rivulet describe` print.
//! - [`broker`]: the local tansu broker `rivulet run` starts when a job names none.
//! - [`generator`]: demo data generators.
//! - [`console`]: the results and progress line `rivulet run` prints.
//!
//! The decisions (what to deploy, when to take a savepoint) are `rivulet-control`'s; the
//! Kubernetes operator runs the same planner behind its own runtime.

pub mod broker;
pub mod console;
pub mod generator;
pub mod jobs;
pub mod local;
pub mod reconcile;
pub mod view;
