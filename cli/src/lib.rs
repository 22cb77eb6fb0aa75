//! The `rivulet` command's library: running a StreamJob on this machine.
//!
//! - [`broker`]: the local tansu broker `rivulet run` starts when a job names none.
//! - [`local`]: the local runtime, running a job's workers as supervised processes.
//! - [`generator`]: demo data generators.
//! - [`console`]: the results and progress line `rivulet run` prints.
//!
//! The decisions (what to deploy, when to take a savepoint) are `rivulet-control`'s; the
//! Kubernetes operator is a separate crate behind the same planner.

pub mod broker;
pub mod console;
pub mod generator;
pub mod local;
