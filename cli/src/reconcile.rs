//! One reconcile of a local job: read it from the job store, observe it through the
//! runtime, plan, write the status (the write-ahead log), record the events, then act.
//!
//! The order is the contract that lets a killed `rivulet run` resume: status is on disk
//! before any action is carried out, and every action is safe to repeat. Named fault points
//! (`RIVULET_FAULT_POINT=<operation>:<step>[:after]`, e.g. `rescale:savepointRequested`)
//! kill this process with SIGKILL right after a status at that step is written, before its
//! actions run (or, with `:after`, once they have run), so the tests can restart the
//! control plane at each step of an operation.

use rivulet_api::job::StreamJob;
use rivulet_control::{plan, Action, Plan, Runtime};

use crate::jobs::{Jobs, JobsError};

/// The environment variable naming a fault point.
pub const FAULT_POINT_ENV: &str = "RIVULET_FAULT_POINT";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error("runtime: {0}")]
    Runtime(#[source] E),
}

/// What one reconcile did.
pub struct Reconciled {
    /// The job as planned (with the status just written).
    pub job: StreamJob,
    pub plan: Plan,
    /// The job was deleted and everything of it removed.
    pub finalized: bool,
}

/// A fault point: the operation and step at which to die.
#[derive(Clone, Debug)]
pub struct FaultPoint {
    pub operation: String,
    pub step: String,
    /// After the step's actions rather than before.
    pub after: bool,
}

impl FaultPoint {
    /// The fault point named in the environment, if any.
    pub fn from_env() -> Option<FaultPoint> {
        let v = std::env::var(FAULT_POINT_ENV).ok()?;
        let mut parts = v.split(':');
        let operation = parts.next()?.to_string();
        let step = parts.next()?.to_string();
        let after = parts.next() == Some("after");
        Some(FaultPoint {
            operation,
            step,
            after,
        })
    }

    fn hit(&self, plan: &Plan) -> bool {
        plan.status
            .operation
            .as_ref()
            .is_some_and(|op| op.kind.name() == self.operation && op.step.name() == self.step)
    }
}

/// Reconciles a job once.
pub async fn reconcile<R: Runtime>(
    jobs: &Jobs,
    runtime: &mut R,
    namespace: &str,
    name: &str,
    now_ms: i64,
    fault: Option<&FaultPoint>,
) -> Result<Reconciled, ReconcileError<R::Error>> {
    let mut job = jobs.require(namespace, name)?;
    let observed = runtime
        .observe(&job, now_ms)
        .await
        .map_err(ReconcileError::Runtime)?;
    let plan = plan(&job, &observed);
    jobs.write_status(namespace, name, &plan.status)?;
    jobs.record_events(
        namespace,
        name,
        &plan.events,
        &rivulet_control::plan::time(now_ms),
    )?;
    job.status = Some(plan.status.clone());
    if fault.is_some_and(|f| !f.after && f.hit(&plan)) {
        die();
    }
    let mut finalized = false;
    for action in &plan.actions {
        runtime
            .act(&job, action)
            .await
            .map_err(ReconcileError::Runtime)?;
        if *action == Action::Finalize {
            jobs.remove(namespace, name)?;
            finalized = true;
        }
    }
    if fault.is_some_and(|f| f.after && f.hit(&plan)) {
        die();
    }
    Ok(Reconciled {
        job,
        plan,
        finalized,
    })
}

/// Dies at a fault point, as `kill -9` would end it.
fn die() {
    tracing::warn!("fault point reached: killing this process");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
}
