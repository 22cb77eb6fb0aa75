//! The `StreamJob` custom resource: its spec, the lifecycle settings the control plane acts
//! on, and the CustomResourceDefinition generated from them.
//!
//! `StreamJob` (`rivulet.dev/v1alpha1`, namespaced, short name `sj`) is what `kubectl apply`
//! and `rivulet run` both take. The pipeline and state it runs are in [`crate::spec`]; the
//! status the control plane writes is in [`crate::job_status`]. The CEL rules below are
//! enforced by the API server and, through kube's `cel` feature, by `rivulet` itself.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, EnvVar, ResourceRequirements, Toleration};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::job_status::StreamJobStatus;
use crate::spec::{PipelineSpec, StateSpec};

pub const GROUP: &str = "rivulet.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "rivulet.dev/v1alpha1";
pub const KIND: &str = "StreamJob";
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;
/// The longest job name: the workers' StatefulSet puts `<name>-<10-character hash>` in a
/// label of at most 63 characters.
pub const MAX_NAME_LEN: usize = 52;
/// The label every worker of a job carries, with the job's name as its value.
pub const JOB_LABEL: &str = "rivulet.dev/job";

/// `spec` of a `StreamJob`: what to run, at which parallelism, and how its lifecycle is
/// carried out (upgrades, savepoints, suspension, autoscaling).
// Each printer column repeats `type_`, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "rivulet.dev",
    version = "v1alpha1",
    kind = "StreamJob",
    namespaced,
    status = "StreamJobStatus",
    shortname = "sj",
    category = "rivulet",
    derive = "PartialEq",
    doc = "A Kafka-to-Kafka streaming job: keyed event-time windows with exactly-once results, \
           run by a StatefulSet of Rivulet workers.",
    scale(
        spec_replicas_path = ".spec.parallelism",
        status_replicas_path = ".status.parallelism",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Lifecycle phase"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.parallelism",
        description = "Parallelism asked for"
    ),
    printcolumn(
        name = "Autoscaled",
        type_ = "integer",
        json_path = ".status.autoscaler.parallelism",
        description = "Parallelism the autoscaler set, in place of Desired (empty: none)"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.parallelism",
        description = "Workers running"
    ),
    printcolumn(
        name = "Lag",
        type_ = "integer",
        json_path = ".status.metrics.lag",
        description = "Records waiting in the source topics"
    ),
    printcolumn(
        name = "Last Savepoint",
        type_ = "string",
        json_path = ".status.lastSavepoint.path",
        description = "The newest completed savepoint"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    cel,
    validation = Rule::new("self.parallelism <= self.maxParallelism")
        .message("parallelism must be at most maxParallelism")
        .field_path(".parallelism")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamJobSpec {
    /// Worker image (used by the Kubernetes runtime only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Number of workers. 0 suspends the job (as a scaler would set it).
    #[serde(default = "one")]
    #[x_kube(validation = Rule::new("self >= 0").message("parallelism must not be negative"))]
    pub parallelism: u32,
    /// Number of key groups: the most workers the job's state can be spread over. Fixed for
    /// the life of the job's state.
    #[serde(default = "default_max_parallelism")]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("maxParallelism is immutable: it is the number of key groups of the job's state"))]
    pub max_parallelism: u32,
    /// What the workers run: source, decoding, event time, windows, aggregates and sink.
    pub pipeline: PipelineSpec,
    /// Keyed state: backend, checkpoints and where snapshots are stored.
    #[serde(default)]
    pub state: StateSpec,
    /// Savepoint (or checkpoint) directory to start from when there is no newer checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// What a spec change does to the job's state.
    #[serde(default)]
    pub upgrade_mode: UpgradeMode,
    /// Whether the job runs; `suspended` takes a savepoint and stops every worker.
    #[serde(default)]
    pub job_state: JobState,
    /// Change this value to ask for a savepoint now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub savepoint_trigger: Option<String>,
    /// Change this value to restart every worker from the latest checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_trigger: Option<String>,
    /// Periodic savepoints, their retention, and the savepoint taken on deletion.
    #[serde(default)]
    pub savepoints: SavepointsSpec,
    /// How long new workers have to become ready after an upgrade before it is rolled back
    /// to the last stable spec.
    #[serde(default = "default_readiness_timeout")]
    pub readiness_timeout: Duration,
    /// Settings of the worker pods on Kubernetes (ignored by `rivulet run`).
    #[serde(default)]
    pub pod_template: PodTemplate,
    /// Secrets with the credentials of Kafka and of the object store.
    #[serde(default)]
    pub credentials: Credentials,
    /// Scaling on backpressure and lag.
    #[serde(default)]
    pub autoscaler: AutoscalerSpec,
}

fn one() -> u32 {
    1
}

fn default_max_parallelism() -> u32 {
    DEFAULT_MAX_PARALLELISM
}

fn default_readiness_timeout() -> Duration {
    Duration::from_secs(300)
}

/// What a spec change does to the job's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    /// Stop the workers and start the new spec with empty state.
    Stateless,
    /// Stop with a savepoint, then start the new spec restoring from it.
    #[default]
    Savepoint,
    /// Stop the workers and start the new spec from the newest completed checkpoint.
    LastState,
}

impl UpgradeMode {
    /// The name as written in the spec.
    pub fn name(&self) -> &'static str {
        match self {
            UpgradeMode::Stateless => "stateless",
            UpgradeMode::Savepoint => "savepoint",
            UpgradeMode::LastState => "last-state",
        }
    }
}

/// Whether the job should run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum JobState {
    #[default]
    Running,
    Suspended,
}

/// Savepoints the control plane takes on its own, and how many it keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SavepointsSpec {
    /// Take a savepoint this often while the job runs. Absent: no periodic savepoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Completed savepoints kept; older ones are deleted (never the newest, nor one a
    /// restore or rollback may need).
    #[serde(default = "default_max_count")]
    pub max_count: u32,
    /// Savepoints older than this are deleted (with the same exceptions). Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Take a final savepoint when the StreamJob is deleted.
    #[serde(default)]
    pub on_deletion: bool,
    /// How long one savepoint may take before it counts as failed.
    #[serde(default = "default_savepoint_timeout")]
    pub timeout: Duration,
}

impl Default for SavepointsSpec {
    fn default() -> Self {
        SavepointsSpec {
            interval: None,
            max_count: default_max_count(),
            max_age: None,
            on_deletion: false,
            timeout: default_savepoint_timeout(),
        }
    }
}

fn default_max_count() -> u32 {
    5
}

fn default_savepoint_timeout() -> Duration {
    Duration::from_secs(600)
}

/// Overrides of the worker pods' template (Kubernetes only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplate {
    /// CPU and memory requests and limits of the worker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Nodes the workers may run on, by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the workers tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and pod affinity of the workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Service account the workers run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Extra environment variables of the worker container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Extra annotations of the worker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Extra labels of the worker pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When the worker image is pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// A persistent volume claim per worker for its data directory (RocksDB, snapshot
    /// staging). Absent: an emptyDir, rebuilt from the newest checkpoint when a pod moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_volume_claim: Option<DataVolumeClaim>,
}

/// The volume claim each worker gets for its data directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataVolumeClaim {
    /// Requested size, as a Kubernetes quantity (`10Gi`).
    pub size: String,
    /// Storage class of the claim; absent: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Kubernetes' image pull policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Secrets whose keys become the workers' environment variables. `secretProperties` of the
/// source and sink read them with `env:`; the object store reads its usual variables
/// (`AWS_ACCESS_KEY_ID`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_KEY`, …).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    /// Secret with the Kafka credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<SecretReference>,
    /// Secret with the object store's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<SecretReference>,
}

/// A Secret in the job's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretReference {
    /// Name of the Secret.
    pub secret_name: String,
}

/// Scaling on backpressure and lag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalerSpec {
    /// Let the autoscaler set the parallelism.
    #[serde(default)]
    pub enabled: bool,
    /// The fewest workers the autoscaler sets.
    #[serde(default = "one")]
    pub min_parallelism: u32,
    /// The most workers the autoscaler sets. Absent: the job's maxParallelism (and never more
    /// than the source partitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<u32>,
    /// Share of each worker's time spent processing that the autoscaler aims for (0 to 1).
    #[serde(default = "default_target_utilization")]
    pub target_utilization: f64,
    /// The lag should be read within this time after a scale-up.
    #[serde(default = "default_catch_up_duration")]
    pub catch_up_duration: Duration,
    /// A change must hold this long before the autoscaler acts on it.
    #[serde(default = "default_stabilization")]
    pub stabilization: Duration,
    /// The least time between two scale-downs.
    #[serde(default = "default_scale_down_interval")]
    pub scale_down_interval: Duration,
    /// One scale-up multiplies the parallelism by at most this.
    #[serde(default = "default_max_scale_up_factor")]
    pub max_scale_up_factor: f64,
    /// One scale-down divides the parallelism by at most this.
    #[serde(default = "default_max_scale_down_factor")]
    pub max_scale_down_factor: f64,
    /// The window the autoscaler reads rates over (medians, so a burst shorter than half of
    /// it is not taken for a change in load).
    #[serde(default = "default_metrics_window")]
    pub metrics_window: Duration,
}

impl Default for AutoscalerSpec {
    fn default() -> Self {
        AutoscalerSpec {
            enabled: false,
            min_parallelism: 1,
            max_parallelism: None,
            target_utilization: default_target_utilization(),
            catch_up_duration: default_catch_up_duration(),
            stabilization: default_stabilization(),
            scale_down_interval: default_scale_down_interval(),
            max_scale_up_factor: default_max_scale_up_factor(),
            max_scale_down_factor: default_max_scale_down_factor(),
            metrics_window: default_metrics_window(),
        }
    }
}

fn default_target_utilization() -> f64 {
    0.7
}

fn default_catch_up_duration() -> Duration {
    Duration::from_secs(300)
}

fn default_stabilization() -> Duration {
    Duration::from_secs(60)
}

fn default_scale_down_interval() -> Duration {
    Duration::from_secs(600)
}

fn default_max_scale_up_factor() -> f64 {
    4.0
}

fn default_max_scale_down_factor() -> f64 {
    2.0
}

fn default_metrics_window() -> Duration {
    Duration::from_secs(60)
}

impl StreamJob {
    /// The job's name (empty when the manifest names none; validation rejects that).
    pub fn job_name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// The namespace snapshots are filed under (`default` when the manifest names none).
    pub fn job_namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }
}

/// The CRD's `openAPIV3Schema` as the API server checks an object against it with
/// `kubectl apply --validate=strict`: `apiVersion` and `kind` pinned, `metadata` left to the
/// server, and every object schema closed (an unknown field is an error) unless it
/// preserves unknown fields. A JSON Schema, for tools and tests that check objects
/// without an API server.
pub fn strict_schema() -> serde_json::Value {
    let crd = serde_json::to_value(StreamJob::crd()).unwrap_or_default();
    let mut schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    schema["properties"]["metadata"] = serde_json::json!({"type": "object"});
    schema["properties"]["apiVersion"] =
        serde_json::json!({"type": "string", "enum": [API_VERSION]});
    schema["properties"]["kind"] = serde_json::json!({"type": "string", "enum": [KIND]});
    closed(schema)
}

/// `node` with `additionalProperties: false` on every object schema that lists its
/// properties and does not preserve unknown fields.
fn closed(mut node: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = node.as_object_mut() {
        let free =
            obj.get("x-kubernetes-preserve-unknown-fields") == Some(&serde_json::Value::Bool(true));
        if obj.contains_key("properties") && !obj.contains_key("additionalProperties") && !free {
            obj.insert(
                "additionalProperties".into(),
                serde_json::Value::Bool(false),
            );
        }
        for (_, child) in obj.iter_mut() {
            *child = closed(child.take());
        }
    } else if let Some(items) = node.as_array_mut() {
        for item in items {
            *item = closed(item.take());
        }
    }
    node
}

/// The CustomResourceDefinition as YAML, as `rivulet crd` prints it and `crds/` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let body = serde_yaml::to_string(&StreamJob::crd())?;
    Ok(format!(
        "# Generated by `rivulet crd` from api/src/job.rs; do not edit.\n{body}"
    ))
}
