//! Rivulet's control-plane decisions, as pure code: no I/O, no clock, no randomness.
//!
//! - [`plan`]: `plan(&job, &observed) -> Plan`, the StreamJob lifecycle planner: the status
//!   to write (first) and the actions a runtime carries out (after).
//! - [`observed`]: what a runtime observes and hands to the planner.
//! - `desired`: what the spec asks for compared with what was last acted on.
//! - `start`: which operation starts when none is in progress.
//! - `operation`: an operation's steps, savepoint to deploy to ready, with retries and
//!   rollback.
//! - `delete`: deletion, with a bounded final savepoint.
//! - `retention`: which savepoints are deleted.
//! - [`rejected`]: the status of a spec the control plane refuses.
//! - [`autoscaler`]: `decide(history, spec, current) -> Decision`, the autoscaler's target
//!   parallelism with its reason and inputs.
//! - `autoscale`: the autoscaler inside the planner: samples into status, decisions, the
//!   parallelism deployed, rescales measured, conflicts reported.
//! - [`runtime`]: the [`Runtime`] trait a control plane observes and acts through.
//!
//! Runtimes (the local one behind `rivulet`, the Kubernetes one behind the operator) observe
//! and act; this crate decides. It depends on `rivulet-api` only.

mod autoscale;
pub mod autoscaler;
mod delete;
pub mod desired;
pub mod observed;
mod operation;
pub mod plan;
pub mod rejected;
mod retention;
pub mod runtime;
mod start;

pub use observed::Observed;
pub use plan::{plan, Action, Deploy, Event, Plan};
pub use runtime::Runtime;
