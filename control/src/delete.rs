//! Deleting a StreamJob: whatever is in progress gives way; with `savepoints.onDeletion`, a
//! final savepoint bounded by `savepoints.timeout`; then every worker stops and the runtime
//! is told the job is gone. Deletion never waits for more than one savepoint timeout and
//! the stop grace.

use rivulet_api::job_status::{OperationKind, SavepointCause};

use crate::plan::Planner;

impl Planner<'_> {
    pub(crate) fn delete(&mut self) {
        if self
            .status
            .operation
            .as_ref()
            .is_some_and(|op| op.kind == OperationKind::Delete)
        {
            return;
        }
        if let Some(op) = self.status.operation.take() {
            self.warning(
                "OperationAbandoned",
                format!("the {} gives way to the deletion", op.kind.name()),
            );
        }
        let savepoint = (self.spec.savepoints.on_deletion && self.healthy())
            .then_some(SavepointCause::Deletion);
        if self.spec.savepoints.on_deletion && savepoint.is_none() && self.obs.workers.is_some() {
            self.warning(
                "DeletionWithoutSavepoint",
                "the workers are not all ready: no final savepoint can be taken",
            );
        }
        self.event(
            "Deleting",
            match savepoint {
                Some(_) => "taking a final savepoint, then stopping every worker",
                None => "stopping every worker",
            },
        );
        self.begin(OperationKind::Delete, savepoint, true, None);
    }
}
