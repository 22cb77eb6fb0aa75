//! `rivulet-operator render`: every object the operator would apply for a StreamJob at its
//! current spec, as a multi-document YAML stream, with no cluster (as `helm template` does),
//! for review and GitOps.

use rivulet_api::job::StreamJob;

use crate::objects::{self, Names, ObjectError, Rollout};
use crate::settings::Settings;

/// The YAML stream for `job`: the objects in the order they are applied. The control-token
/// Secret is named in a comment only: the operator generates it in the cluster, so no
/// token is ever printed or checked in.
pub fn render(job: &StreamJob, settings: &Settings) -> Result<String, RenderError> {
    let errors = crate::check::kubernetes_errors(job);
    if !errors.is_empty() {
        return Err(RenderError::Invalid(errors));
    }
    // The deployment the job is at, or its first one.
    let deployment = job
        .status
        .as_ref()
        .and_then(|s| s.deployment.as_ref())
        .map_or(1, |d| d.id);
    let rollout = Rollout::current(job, deployment);
    let mut out = format!(
        "# Objects of StreamJob {}/{} (deployment {deployment}), as rivulet-operator applies them.\n\
         # The operator also creates Secret {} with the control-API token.\n",
        job.job_namespace(),
        job.job_name(),
        Names::of(job).token_secret,
    );
    for object in objects::all(job, &rollout, settings)? {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object).map_err(ObjectError::from)?);
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the job cannot run on Kubernetes:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<rivulet_api::FieldError>),
    #[error(transparent)]
    Object(#[from] ObjectError),
}
