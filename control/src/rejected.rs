//! A spec the control plane refuses (it breaks a rule the API server does not check): the
//! status that says so. A job that never ran is `Failed`; one that runs keeps running as it
//! was, planned on its last reconciled spec, and only its `Degraded` condition changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use rivulet_api::job::StreamJob;
use rivulet_api::job_status::{Phase, StreamJobStatus};

use crate::plan::time;

/// The `Degraded` reason of a refused spec.
pub const INVALID_SPEC: &str = "InvalidSpec";

/// `status` with `Degraded` saying why the spec of generation `generation` is refused; a
/// job with no deployment is `Failed`.
pub fn reject(
    status: Option<&StreamJobStatus>,
    generation: i64,
    message: &str,
    now_ms: i64,
) -> StreamJobStatus {
    let mut status = status.cloned().unwrap_or_default();
    if status.deployment.is_none() {
        status.phase = Some(Phase::Failed);
    }
    status.error = Some(message.to_string());
    let now = time(now_ms);
    match status.conditions.iter_mut().find(|c| c.type_ == "Degraded") {
        Some(c) => {
            if c.status != "True" {
                c.last_transition_time = now;
            }
            c.status = "True".into();
            c.reason = INVALID_SPEC.into();
            c.message = message.into();
            c.observed_generation = Some(generation);
        }
        None => status.conditions.push(Condition {
            type_: "Degraded".into(),
            status: "True".into(),
            reason: INVALID_SPEC.into(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: Some(generation),
        }),
    }
    status
}

/// The job to plan while its spec is refused: its last reconciled spec, so what runs keeps
/// running as it was; `None` when it never ran.
pub fn last_good(job: &StreamJob) -> Option<StreamJob> {
    let status = job.status.as_ref()?;
    let spec = crate::desired::recorded_spec(status.last_reconciled_spec.as_deref())?;
    status.deployment.as_ref()?;
    Some(StreamJob {
        metadata: job.metadata.clone(),
        spec,
        status: job.status.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivulet_api::job_status::Deployment;

    #[test]
    fn a_refused_spec_fails_a_new_job_and_degrades_a_running_one() {
        let s = reject(None, 1, "spec.x: bad", 1_000);
        assert_eq!(s.phase, Some(Phase::Failed));
        let d = s.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", INVALID_SPEC)
        );
        assert_eq!(d.message, "spec.x: bad");

        let running = StreamJobStatus {
            phase: Some(Phase::Running),
            deployment: Some(Deployment {
                id: 3,
                generation: 2,
                parallelism: 2,
                restore_from: None,
                empty_state: false,
                started_at: time(0),
                ready_at: None,
                rolled_back: None,
            }),
            ..Default::default()
        };
        let s = reject(Some(&running), 4, "spec.y: bad", 2_000);
        assert_eq!(s.phase, Some(Phase::Running));
        assert_eq!(s.deployment, running.deployment);
        let d = s.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
        assert_eq!(d.observed_generation, Some(4));
        // Refused again later: the transition time stays.
        let again = reject(Some(&s), 4, "spec.y: bad", 9_000);
        let d2 = again
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .unwrap();
        assert_eq!(d2.last_transition_time, d.last_transition_time);
    }
}
