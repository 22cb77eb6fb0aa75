//! Carrying an operation through its steps: savepoint requested → savepoint completed →
//! stopping workers → workers stopped → deployed → ready.
//!
//! Each step moves on only on what the observation shows (a savepoint in storage, no worker
//! left, every new worker ready), and re-issues its action when the observation shows it
//! did not happen. A savepoint that fails or times out is retried with backoff; after
//! [`SAVEPOINT_ATTEMPTS`] the operation waits with `Degraded` rather than go on without the
//! state it was asked to keep. New workers not ready within `readinessTimeout` are rolled
//! back to the last stable spec.

use rivulet_api::job_status::{
    Deployment, Operation, OperationKind, OperationStep, Phase, SavepointCause, StateSource,
};
use rivulet_api::StreamJobSpec;

use crate::desired;
use crate::observed::RequestState;
use crate::plan::{millis, time, Action, Deploy, Planner, SAVEPOINT_ATTEMPTS, STOP_GRACE_MS};

/// Backoff before the `attempt`-th retry of a savepoint, milliseconds.
pub fn savepoint_backoff_ms(attempt: u32) -> i64 {
    10_000 * 2_i64.pow(attempt.saturating_sub(1).min(6))
}

impl Planner<'_> {
    /// Moves the operation in progress as far as the observation allows.
    pub(crate) fn advance(&mut self) {
        // A bounded number of steps: each iteration moves one step forward or returns.
        for _ in 0..8 {
            let Some(op) = self.status.operation.clone() else {
                return;
            };
            let next = match op.step {
                OperationStep::SavepointRequested => self.savepoint_step(op),
                OperationStep::SavepointCompleted => Some(self.after_savepoint(op)),
                OperationStep::StoppingWorkers => self.stopping_step(op),
                OperationStep::WorkersStopped => self.deploy_step(op),
                OperationStep::Deployed => self.deployed_step(op),
            };
            match next {
                Some(Next::Step(op)) => self.status.operation = Some(op),
                Some(Next::Wait(op)) => {
                    self.status.operation = Some(op);
                    return;
                }
                Some(Next::Done) => {
                    self.status.operation = None;
                    return;
                }
                None => return,
            }
        }
    }

    fn enter(&self, mut op: Operation, step: OperationStep) -> Next {
        op.step = step;
        op.step_started_at = self.now();
        op.attempts = 0;
        op.retry_at = None;
        op.message = None;
        Next::Step(op)
    }

    /// Enters `step` and waits there for the next observation (its action was just issued).
    fn wait_at(&self, op: Operation, step: OperationStep) -> Next {
        match self.enter(op, step) {
            Next::Step(op) => Next::Wait(op),
            other => other,
        }
    }

    fn savepoint_step(&mut self, mut op: Operation) -> Option<Next> {
        let obs = self.obs;
        if let Some(sp) = obs.snapshots.savepoint_after(op.savepoint_baseline) {
            op.savepoint_id = Some(sp.id);
            if op.deploy == Some(StateSource::Savepoint) {
                op.restore_from = Some(sp.path.clone());
            }
            let cause = op.savepoint.unwrap_or(SavepointCause::Manual);
            if let Some(record) = self.status.savepoints.iter_mut().find(|r| r.id == sp.id) {
                record.trigger = cause;
            }
            self.resolve(&["SavepointFailed"]);
            self.event(
                "SavepointCompleted",
                format!(
                    "savepoint {} completed ({} bytes) at {}",
                    sp.id, sp.size_bytes, sp.path
                ),
            );
            return Some(self.enter(op, OperationStep::SavepointCompleted));
        }
        if obs.workers.is_none() {
            return Some(self.savepoint_impossible(op));
        }
        let now = obs.now_ms;
        let pending = obs
            .savepoint_request
            .as_ref()
            .is_some_and(|r| r.state == RequestState::Pending);
        if let Some(retry_at) = op.retry_at.as_ref().map(millis) {
            if now < retry_at {
                self.wait_message(&op);
                self.requeue((retry_at - now) as u64);
                return Some(Next::Wait(op));
            }
            // Time to try again; a request still pending on the board is given this attempt
            // instead of a second request.
            op.retry_at = None;
            op.step_started_at = self.now();
            op.message = None;
            if !pending {
                self.actions
                    .push(Action::RequestSavepoint { stop: op.stop });
            }
            self.requeue(1_000);
            return Some(Next::Wait(op));
        }
        if op.attempts >= SAVEPOINT_ATTEMPTS {
            // Waiting for a change of spec; the reason is in Degraded.
            let message = op.message.clone().unwrap_or_default();
            self.degrade("SavepointFailed", message);
            return None;
        }
        let started = millis(&op.step_started_at);
        let timeout = self.spec.savepoints.timeout.as_millis_i64();
        // A request that ended before this attempt belongs to an earlier one; a pending one
        // is this attempt's, however old.
        let request = obs
            .savepoint_request
            .as_ref()
            .filter(|r| r.state == RequestState::Pending || r.requested_at_ms >= started);
        let failure = match request.map(|r| &r.state) {
            Some(RequestState::Failed(reason)) => Some(reason.clone()),
            _ if now - started > timeout => Some(format!(
                "not completed within savepoints.timeout ({})",
                self.spec.savepoints.timeout
            )),
            Some(_) => None,
            None => {
                // Asked for in an earlier plan, but the board does not have it (the control
                // plane or worker 0 restarted in between): ask again.
                if started < now {
                    self.actions
                        .push(Action::RequestSavepoint { stop: op.stop });
                }
                None
            }
        };
        match failure {
            Some(reason) => Some(self.savepoint_failed(op, reason)),
            None => {
                self.requeue(1_000);
                Some(Next::Wait(op))
            }
        }
    }

    /// The workers are gone: no savepoint can be taken. Their newest checkpoint is the state
    /// they left, so an operation that stops them anyway goes on from it.
    fn savepoint_impossible(&mut self, mut op: Operation) -> Next {
        if !op.stop {
            self.warning("SavepointSkipped", "no worker runs to take the savepoint");
            return Next::Done;
        }
        self.warning(
            "SavepointUnavailable",
            format!(
                "the workers are gone before the savepoint: the {} restores their newest \
                 checkpoint",
                op.kind.name()
            ),
        );
        op.savepoint = None;
        if op.deploy == Some(StateSource::Savepoint) {
            op.deploy = Some(StateSource::Latest);
        }
        self.enter(op, OperationStep::StoppingWorkers)
    }

    fn savepoint_failed(&mut self, mut op: Operation, reason: String) -> Next {
        op.attempts += 1;
        let message = format!(
            "savepoint attempt {} of {SAVEPOINT_ATTEMPTS} failed: {reason}",
            op.attempts
        );
        self.warning("SavepointFailed", message.clone());
        match op.kind {
            // A deletion is bounded by one timeout: it goes on without the savepoint.
            OperationKind::Delete => {
                self.warning(
                    "DeletionWithoutSavepoint",
                    "the final savepoint failed; stopping the workers without it",
                );
                op.savepoint = None;
                self.enter(op, OperationStep::StoppingWorkers)
            }
            // A savepoint on its own is given up; the job keeps running.
            OperationKind::Savepoint if op.attempts >= SAVEPOINT_ATTEMPTS => {
                self.degrade("SavepointFailed", message);
                Next::Done
            }
            _ if op.attempts >= SAVEPOINT_ATTEMPTS => {
                let message = format!(
                    "{message}; the {} waits (the workers keep running the previous spec): \
                     fix the cause, or change the spec (for example upgradeMode: last-state)",
                    op.kind.name()
                );
                self.degrade("SavepointFailed", message.clone());
                op.message = Some(message);
                Next::Wait(op)
            }
            _ => {
                let backoff = savepoint_backoff_ms(op.attempts);
                op.retry_at = Some(time(self.obs.now_ms + backoff));
                op.message = Some(format!("{message}; retrying in {}s", backoff / 1000));
                self.degrade("SavepointFailed", message);
                self.requeue(backoff as u64);
                Next::Wait(op)
            }
        }
    }

    fn wait_message(&mut self, op: &Operation) {
        if let Some(message) = &op.message {
            self.degrade("SavepointFailed", message.clone());
        }
    }

    fn after_savepoint(&mut self, op: Operation) -> Next {
        if op.stop {
            self.enter(op, OperationStep::StoppingWorkers)
        } else {
            Next::Done
        }
    }

    fn stopping_step(&mut self, op: Operation) -> Option<Next> {
        let Some(workers) = &self.obs.workers else {
            self.event(
                "WorkersStopped",
                "no worker of the previous deployment runs",
            );
            return Some(self.enter(op, OperationStep::WorkersStopped));
        };
        // Workers stopping with a savepoint exit by themselves once it is written; others
        // (and stragglers) are stopped.
        let waited = self.obs.now_ms - millis(&op.step_started_at);
        let with_savepoint = op.savepoint.is_some() && op.savepoint_id.is_some();
        if !with_savepoint || workers.stopped || waited > STOP_GRACE_MS {
            self.actions.push(Action::StopWorkers);
        }
        self.requeue(500);
        Some(Next::Wait(op))
    }

    fn deploy_step(&mut self, mut op: Operation) -> Option<Next> {
        if self.obs.workers.is_some() {
            // Two deployments never run at once.
            self.actions.push(Action::StopWorkers);
            return Some(self.wait_at(op, OperationStep::StoppingWorkers));
        }
        let Some(source) = op.deploy else {
            // Suspend and delete end with no workers.
            if op.kind == OperationKind::Suspend {
                self.status.phase = Some(Phase::Suspended);
                self.event("Suspended", "every worker stopped; the state is kept");
            }
            return Some(Next::Done);
        };
        let (restore_from, empty_state) = match source {
            StateSource::Empty => (None, true),
            // The workers may have completed a checkpoint after the savepoint (a savepoint
            // that did not stop them): the newest snapshot is their final state.
            StateSource::Savepoint => match self.obs.snapshots.newest() {
                Some(newest) if Some(newest.id) > op.savepoint_id => {
                    (Some(newest.path.clone()), false)
                }
                _ => (op.restore_from.clone(), false),
            },
            StateSource::Latest => (self.latest_state(op.kind), false),
            StateSource::Stable => (
                self.status
                    .stable_savepoint
                    .clone()
                    .or_else(|| self.latest_state(op.kind)),
                false,
            ),
        };
        let spec = self.deployed_spec(&op);
        let id = self.status.deployment.as_ref().map_or(1, |d| d.id + 1);
        op.restore_from = restore_from.clone();
        self.status.deployment = Some(Deployment {
            id,
            generation: self.obs.generation,
            parallelism: spec.parallelism,
            restore_from: restore_from.clone(),
            empty_state,
            started_at: self.now(),
            ready_at: None,
            rolled_back: (op.kind == OperationKind::Rollback)
                .then(|| op.reason.clone())
                .flatten(),
        });
        self.event(
            "Deploying",
            format!(
                "starting {} (deployment {id}) {}",
                crate::plan::workers(spec.parallelism),
                match (&restore_from, empty_state) {
                    (_, true) => "with empty state".to_string(),
                    (Some(path), _) => format!("restoring {path}"),
                    (None, _) => "from the job's newest checkpoint, if any".to_string(),
                }
            ),
        );
        self.actions.push(Action::Deploy(Box::new(Deploy {
            deployment: id,
            parallelism: spec.parallelism,
            spec,
            restore_from,
            empty_state,
        })));
        Some(self.wait_at(op, OperationStep::Deployed))
    }

    /// The newest snapshot for a restart or `last-state`; on the first deployment, the
    /// spec's `restoreFrom` (the workers prefer their own newer checkpoint).
    fn latest_state(&self, kind: OperationKind) -> Option<String> {
        match self.obs.snapshots.newest() {
            Some(s) => Some(s.path.clone()),
            None if kind == OperationKind::Deploy => self.spec.restore_from.clone(),
            None => None,
        }
    }

    /// The spec an operation deploys: the last stable one for a rollback, else the one the
    /// operation started for.
    fn deployed_spec(&self, op: &Operation) -> StreamJobSpec {
        let recorded = if op.kind == OperationKind::Rollback {
            &self.status.last_stable_spec
        } else {
            &self.status.last_reconciled_spec
        };
        desired::recorded_spec(recorded.as_deref()).unwrap_or_else(|| self.spec.clone())
    }

    fn deployed_step(&mut self, op: Operation) -> Option<Next> {
        let Some(deployment) = self.status.deployment.clone() else {
            return Some(self.enter(op, OperationStep::WorkersStopped));
        };
        let workers = match &self.obs.workers {
            Some(w) if w.deployment == deployment.id => w.clone(),
            Some(_) => {
                // Workers of another deployment: stop them first.
                self.actions.push(Action::StopWorkers);
                return Some(self.wait_at(op, OperationStep::StoppingWorkers));
            }
            None => {
                // Written but not started (a restart in between), or started and gone: start
                // them, from their own newest snapshot if they took one.
                let spec = self.deployed_spec(&op);
                let own = self
                    .obs
                    .snapshots
                    .newest()
                    .filter(|s| s.time_ms >= millis(&deployment.started_at));
                let (restore_from, empty_state) = match own {
                    Some(s) => (Some(s.path.clone()), false),
                    None => (deployment.restore_from.clone(), deployment.empty_state),
                };
                self.actions.push(Action::Deploy(Box::new(Deploy {
                    deployment: deployment.id,
                    parallelism: deployment.parallelism,
                    spec,
                    restore_from,
                    empty_state,
                })));
                self.requeue(1_000);
                return Some(Next::Wait(op));
            }
        };
        if workers.failure.is_none() && workers.count > 0 && workers.ready >= deployment.parallelism
        {
            return Some(self.ready(op, deployment));
        }
        let waited = self.obs.now_ms - millis(&deployment.started_at);
        let timeout = self.spec.readiness_timeout.as_millis_i64();
        if waited <= timeout {
            self.requeue(1_000);
            return Some(Next::Wait(op));
        }
        let why = workers.failure.clone().unwrap_or_else(|| {
            format!(
                "{} of {} workers ready",
                workers.ready, deployment.parallelism
            )
        });
        let stable = self.status.last_stable_spec.clone();
        let can_roll_back = op.kind != OperationKind::Rollback
            && stable.is_some()
            && stable != self.status.last_reconciled_spec;
        if can_roll_back {
            let message = format!(
                "generation {} was not ready within readinessTimeout ({}): {why}; rolled \
                 back to the last stable spec",
                deployment.generation, self.spec.readiness_timeout
            );
            self.warning("RollingBack", message.clone());
            self.status.operation = None;
            self.begin(
                OperationKind::Rollback,
                None,
                true,
                Some(StateSource::Stable),
            );
            if let Some(rollback) = self.status.operation.as_mut() {
                rollback.reason = Some(message.clone());
            }
            self.degrade("RolledBack", message);
            return self.status.operation.clone().map(Next::Step);
        }
        let message = format!(
            "the workers were not ready within readinessTimeout ({}): {why}",
            self.spec.readiness_timeout
        );
        self.warning("NotReady", message.clone());
        self.status.phase = Some(Phase::Failed);
        self.degrade("NotReady", message);
        Some(Next::Done)
    }

    fn ready(&mut self, op: Operation, mut deployment: Deployment) -> Next {
        deployment.ready_at = Some(self.now());
        let rollback = op.kind == OperationKind::Rollback;
        if !rollback {
            self.status.last_stable_spec = self.status.last_reconciled_spec.clone();
        }
        self.resolve(&["RolledBack", "NotReady", "WorkersFailing"]);
        if deployment
            .restore_from
            .as_ref()
            .is_some_and(|p| self.obs.snapshots.savepoints.iter().any(|s| &s.path == p))
        {
            self.status.stable_savepoint = deployment.restore_from.clone();
        }
        self.event(
            if rollback { "RolledBack" } else { "Running" },
            format!(
                "{} of deployment {} ready",
                crate::plan::workers(deployment.parallelism),
                deployment.id
            ),
        );
        self.status.deployment = Some(deployment);
        self.status.phase = Some(Phase::Running);
        Next::Done
    }
}

/// Where an operation goes next.
enum Next {
    /// On to another step, which may move on at once.
    Step(Operation),
    /// Stays at its step until the next observation.
    Wait(Operation),
    /// Finished.
    Done,
}
