//! Choosing the next operation when none is in progress: the first deployment, suspend and
//! resume, a spec change under its upgrade mode, a rescale, a restart, a savepoint asked for
//! or due, and workers that vanished.
//!
//! Each operation is decided whole when it starts (take a savepoint or not, stop or not,
//! which state to deploy) and written to status with the spec it acts on, so later steps
//! never re-read a spec that may have changed meanwhile.

use rivulet_api::job::UpgradeMode;
use rivulet_api::job_status::{
    Operation, OperationKind, OperationStep, Phase, SavepointCause, StateSource,
};

use crate::desired::{self, Change};
use crate::plan::{millis, Planner};

impl Planner<'_> {
    pub(crate) fn start_next(&mut self) {
        let spec = self.spec;
        let running = desired::wants_running(spec);
        let last = self.reconciled();
        let change = desired::change(spec, last.as_ref());
        let spec_json = desired::spec_json(spec);

        if self.status.deployment.is_none() {
            self.status.last_reconciled_spec = Some(spec_json);
            if running {
                self.begin(
                    OperationKind::Deploy,
                    None,
                    false,
                    Some(StateSource::Latest),
                );
            } else {
                self.status.phase = Some(Phase::Suspended);
            }
            return;
        }

        if self.status.phase == Some(Phase::Suspended) {
            self.status.last_reconciled_spec = Some(spec_json);
            if running {
                self.begin(
                    OperationKind::Resume,
                    None,
                    false,
                    Some(StateSource::Latest),
                );
            }
            return;
        }

        let healthy = self.healthy();
        if !running {
            self.status.last_reconciled_spec = Some(spec_json);
            // No savepoint can be taken of failing workers: their newest checkpoint is the
            // state a resume restores.
            let savepoint = healthy.then_some(SavepointCause::Suspend);
            self.begin(OperationKind::Suspend, savepoint, true, None);
            return;
        }

        if change.redeploys() {
            self.status.last_reconciled_spec = Some(spec_json);
            self.upgrade(change, healthy);
            return;
        }
        if change.restart {
            self.status.last_reconciled_spec = Some(spec_json);
            self.begin(
                OperationKind::Restart,
                None,
                true,
                Some(StateSource::Latest),
            );
            return;
        }
        if change.savepoint {
            self.status.last_reconciled_spec = Some(spec_json);
            if healthy {
                self.begin(
                    OperationKind::Savepoint,
                    Some(SavepointCause::Manual),
                    false,
                    None,
                );
            } else {
                self.warning(
                    "SavepointSkipped",
                    "a savepoint was asked for, but the workers are not all ready",
                );
            }
            return;
        }
        if change.any {
            // Only the control plane's settings changed: nothing to do to the workers.
            self.status.last_reconciled_spec = Some(spec_json);
        }
        if healthy && self.periodic_savepoint_due() {
            self.begin(
                OperationKind::Savepoint,
                Some(SavepointCause::Periodic),
                false,
                None,
            );
            return;
        }
        if self.obs.workers.is_none() {
            // The workers are gone (killed from outside, or the machine restarted): start
            // them again from the newest snapshot.
            self.warning(
                "WorkersLost",
                "no worker of the job runs; restarting from the newest snapshot",
            );
            self.begin(
                OperationKind::Restart,
                None,
                false,
                Some(StateSource::Latest),
            );
        }
    }

    /// A spec change that needs new workers, carried out under the new spec's upgrade mode.
    fn upgrade(&mut self, change: Change, healthy: bool) {
        let kind = if change.workers {
            OperationKind::Upgrade
        } else {
            OperationKind::Rescale
        };
        let cause = if kind == OperationKind::Rescale {
            SavepointCause::Rescale
        } else {
            SavepointCause::Upgrade
        };
        // A rescale keeps the state whatever the upgrade mode: it takes the savepoint path.
        let mode = if kind == OperationKind::Rescale {
            UpgradeMode::Savepoint
        } else {
            self.spec.upgrade_mode
        };
        let (savepoint, state) = match mode {
            UpgradeMode::Stateless => (None, StateSource::Empty),
            UpgradeMode::LastState => (None, StateSource::Latest),
            UpgradeMode::Savepoint if healthy => (Some(cause), StateSource::Savepoint),
            UpgradeMode::Savepoint => {
                // Failing workers cannot take a savepoint; their newest checkpoint is the
                // state they have.
                self.warning(
                    "SavepointUnavailable",
                    format!(
                        "the workers are not all ready: the {} restores the newest \
                         checkpoint instead of a savepoint",
                        kind.name()
                    ),
                );
                (None, StateSource::Latest)
            }
        };
        self.event(
            if kind == OperationKind::Rescale {
                "RescaleStarted"
            } else {
                "UpgradeStarted"
            },
            format!(
                "{} to generation {} ({} upgrade mode, parallelism {})",
                kind.name(),
                self.obs.generation,
                self.spec.upgrade_mode.name(),
                self.spec.parallelism
            ),
        );
        self.begin(kind, savepoint, true, Some(state));
    }

    /// Every existing worker is ready and none fails.
    pub(crate) fn healthy(&self) -> bool {
        self.obs
            .workers
            .as_ref()
            .is_some_and(|w| w.failure.is_none() && w.count > 0 && w.ready >= w.count)
    }

    fn periodic_savepoint_due(&self) -> bool {
        let Some(interval) = self.spec.savepoints.interval else {
            return false;
        };
        let since = self
            .status
            .last_savepoint
            .as_ref()
            .map(|s| millis(&s.time))
            .into_iter()
            .chain(
                self.status
                    .deployment
                    .as_ref()
                    .map(|d| millis(&d.started_at)),
            )
            .max();
        since.is_some_and(|t| self.obs.now_ms - t >= interval.as_millis_i64())
    }

    /// Starts an operation at its first step.
    pub(crate) fn begin(
        &mut self,
        kind: OperationKind,
        savepoint: Option<SavepointCause>,
        stop: bool,
        deploy: Option<StateSource>,
    ) {
        let now = self.now();
        let step = if savepoint.is_some() {
            OperationStep::SavepointRequested
        } else if stop {
            OperationStep::StoppingWorkers
        } else {
            OperationStep::WorkersStopped
        };
        let baseline = self.obs.snapshots.newest_id();
        // A new operation supersedes what an earlier one left degraded.
        self.resolve(&["SavepointFailed", "NotReady"]);
        // A request still pending on worker 0's board (left by an abandoned operation)
        // serves this one; a second would only queue behind it.
        let pending = self
            .obs
            .savepoint_request
            .as_ref()
            .is_some_and(|r| r.state == crate::observed::RequestState::Pending);
        if savepoint.is_some() && !pending {
            self.actions
                .push(crate::plan::Action::RequestSavepoint { stop });
        }
        self.status.operation = Some(Operation {
            kind,
            step,
            started_at: now.clone(),
            step_started_at: now,
            savepoint,
            stop,
            deploy,
            savepoint_baseline: savepoint.and(baseline),
            savepoint_id: None,
            restore_from: None,
            reason: None,
            attempts: 0,
            retry_at: None,
            message: None,
        });
    }
}
