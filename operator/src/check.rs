//! What a StreamJob needs to run on Kubernetes beyond what every manifest needs: a broker
//! the pods can reach, and snapshot storage every pod shares. A job that fails these gets
//! errors naming the fields, and nothing is created for it.

use rivulet_api::job::StreamJob;
use rivulet_api::FieldError;

/// The Kubernetes-only errors of `job` (empty when it can run in a cluster).
pub fn kubernetes_errors(job: &StreamJob) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let spec = &job.spec;
    if spec.pipeline.source.bootstrap_servers.is_none() {
        errors.push(FieldError::new(
            "spec.pipeline.source.bootstrapServers",
            "is required on Kubernetes (only `rivulet run` starts a broker of its own)",
        ));
    }
    let storage = spec.state.storage.as_str();
    if storage.starts_with("file:") {
        errors.push(FieldError::new(
            "spec.state.storage",
            format!(
                "must be object storage every worker pod reaches (s3://, gs:// or az://) on \
                 Kubernetes, got {storage:?}: a file:// directory is local to one pod"
            ),
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(yaml_spec: &str) -> StreamJob {
        let yaml = format!(
            "apiVersion: rivulet.dev/v1alpha1\nkind: StreamJob\nmetadata: {{name: j}}\nspec:\n{yaml_spec}"
        );
        rivulet_api::load_manifest(&yaml).expect("a valid manifest")
    }

    const PIPELINE: &str = "  pipeline:\n    source: {topics: [in]BOOT}\n    time: {type: processing}\n    key: [k]\n    window: {type: tumbling, size: 10s}\n    aggregates: [{name: n, fn: count}]\n    sink: {topic: out}\n";

    #[test]
    fn a_cluster_job_names_its_broker_and_shared_storage() {
        let with = |boot: &str, storage: &str| {
            let mut s = PIPELINE.replace("BOOT", boot);
            s.push_str(storage);
            kubernetes_errors(&job(&s))
                .iter()
                .map(|e| e.path.clone())
                .collect::<Vec<_>>()
        };
        let boot = ", bootstrapServers: 'kafka:9092'";
        assert!(with(boot, "  state: {storage: 's3://bucket/jobs'}\n").is_empty());
        assert_eq!(
            with("", "  state: {storage: 's3://bucket/jobs'}\n"),
            ["spec.pipeline.source.bootstrapServers"]
        );
        // The default storage is a local directory.
        assert_eq!(with(boot, ""), ["spec.state.storage"]);
        assert_eq!(
            with("", "  state: {storage: 'file:///shared'}\n"),
            [
                "spec.pipeline.source.bootstrapServers",
                "spec.state.storage"
            ]
        );
    }
}
