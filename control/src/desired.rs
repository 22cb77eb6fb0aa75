//! What the spec asks for, compared with what the control plane last acted on
//! (`status.lastReconciledSpec`): whether the job should run, and whether a change needs new
//! workers, a restart or a savepoint.

use rivulet_api::job::{JobState, StreamJobSpec};
use serde_json::Value;

/// The spec's fields that the workers run with: a change to any of them needs new workers.
/// The others (upgrade mode, job state, triggers, savepoints, readiness timeout,
/// autoscaler, and `restoreFrom`, read only on the first deployment) are the control
/// plane's.
const WORKER_FIELDS: &[&str] = &[
    "image",
    "parallelism",
    "maxParallelism",
    "pipeline",
    "state",
    "podTemplate",
    "credentials",
];

/// The spec as status records it.
pub fn spec_json(spec: &StreamJobSpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}

/// A spec recorded in status, read back (absent when there is none or it does not parse).
pub fn recorded_spec(json: Option<&str>) -> Option<StreamJobSpec> {
    json.and_then(|j| serde_json::from_str(j).ok())
}

/// The spec asks for running workers.
pub fn wants_running(spec: &StreamJobSpec) -> bool {
    spec.job_state == JobState::Running && spec.parallelism > 0
}

/// How a spec differs from the one last acted on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Fields the workers run with changed, other than the parallelism.
    pub workers: bool,
    /// The parallelism changed.
    pub parallelism: bool,
    /// `restartTrigger` changed.
    pub restart: bool,
    /// `savepointTrigger` changed.
    pub savepoint: bool,
    /// Anything changed.
    pub any: bool,
}

impl Change {
    /// The workers must be replaced.
    pub fn redeploys(&self) -> bool {
        self.workers || self.parallelism
    }
}

/// How `spec` differs from `last` (every field counts as changed when there is no `last`).
pub fn change(spec: &StreamJobSpec, last: Option<&StreamJobSpec>) -> Change {
    let Some(last) = last else {
        return Change {
            workers: true,
            parallelism: true,
            restart: false,
            savepoint: false,
            any: true,
        };
    };
    let (new, old) = (to_value(spec), to_value(last));
    let differs = |field: &str| new.get(field) != old.get(field);
    Change {
        workers: WORKER_FIELDS
            .iter()
            .filter(|f| **f != "parallelism")
            .any(|f| differs(f)),
        parallelism: differs("parallelism"),
        restart: differs("restartTrigger"),
        savepoint: differs("savepointTrigger"),
        any: new != old,
    }
}

fn to_value(spec: &StreamJobSpec) -> Value {
    serde_json::to_value(spec).unwrap_or(Value::Null)
}
