//! Rivulet's control plane.
//!
//! - [`broker`]: the local tansu broker `rivulet run` starts when a job names none.
//! - [`local`]: the local runtime, running a job's workers as supervised processes.
//! - [`generator`]: demo data generators.
//! - [`console`]: the results and progress line `rivulet run` prints.
//!
//! The Kubernetes operator (reconciler, planner, savepoints, autoscaler) comes later.

pub mod broker;
pub mod console;
pub mod generator;
pub mod local;
