//! The `Runtime` trait: what a control plane needs from wherever a job's workers run.
//!
//! A runtime observes (the workers, the snapshots in storage, worker 0's savepoint board)
//! and carries out the planner's actions; it decides nothing. `rivulet`'s `LocalRuntime`
//! runs worker processes on this machine; the operator's runtime runs them as pods. Each
//! action is safe to repeat: the planner re-issues one whose effect it did not observe.

use std::future::Future;

use rivulet_api::job::StreamJob;

use crate::observed::Observed;
use crate::plan::Action;

/// Observes a job's workers and carries out the planner's actions.
pub trait Runtime {
    type Error: std::error::Error + Send + Sync + 'static;

    /// One observation of `job` at `now_ms` (epoch milliseconds). The generation and the
    /// deletion mark come from the job's metadata.
    fn observe(
        &mut self,
        job: &StreamJob,
        now_ms: i64,
    ) -> impl Future<Output = Result<Observed, Self::Error>> + Send;

    /// Carries out one action for `job`.
    fn act(
        &mut self,
        job: &StreamJob,
        action: &Action,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The generation and deletion mark an observation carries, from the job's metadata.
pub fn metadata_of(job: &StreamJob) -> (i64, bool) {
    (
        job.metadata.generation.unwrap_or(1),
        job.metadata.deletion_timestamp.is_some(),
    )
}
