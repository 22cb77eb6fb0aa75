//! The Kubernetes objects of a StreamJob, built as pure functions of the job, the deployment
//! the planner asked for ([`Rollout`]) and the operator's [`Settings`]:
//!
//! - a **ConfigMap** with the manifest the workers read and their launch settings (the
//!   variables [`WorkerLaunch::settings_env`] lists, so pods and `rivulet run` start workers
//!   the same way);
//! - a headless **Service** that gives every worker a DNS name, published before it is ready
//!   (peers connect to each other while restoring);
//! - the workers' **StatefulSet**: pods started in parallel, each one's ordinal its worker
//!   index (the `apps.kubernetes.io/pod-index` label through the downward API), replaced only
//!   when the operator deletes them (`OnDelete`: the planner stops one deployment before the
//!   next starts), non-root on a read-only root filesystem;
//! - a **PodDisruptionBudget** that lets a drain take one worker at a time;
//! - when the operator is asked for them, a **NetworkPolicy**: the shuffle port open only
//!   to the job's own workers, the HTTP port (control API, `/metrics`) only to the operator
//!   and the scrapers' namespaces;
//! - the **Secret** with the control-API token.
//!
//! Every object carries the job's labels and, when the job has a `uid` (it came from the
//! API server), an owner reference to it, so deleting the StreamJob deletes them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretEnvSource,
    SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kube::Resource;
use rivulet_api::job::{StreamJob, StreamJobSpec, JOB_LABEL};
use rivulet_api::launch::{env, Restore, WorkerLaunch};
use rivulet_control::Deploy;

use crate::settings::{
    NetworkPolicySettings, Settings, CONFIG_DIR, DATA_DIR, HTTP_PORT, JOB_FILE, SHUFFLE_PORT,
    TERMINATION_GRACE_SECONDS, WORKER_UID,
};

/// The label with a worker pod's deployment id.
pub const DEPLOYMENT_LABEL: &str = "rivulet.dev/deployment";
/// The label the StatefulSet controller puts on each pod: its ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The key of the token in the control-token Secret.
pub const TOKEN_KEY: &str = "token";
/// The worker container's name.
pub const CONTAINER: &str = "worker";

/// A deployment of a job's workers: what the StatefulSet and ConfigMap are built for.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout<'a> {
    /// The deployment id the pods carry.
    pub deployment: u64,
    /// The spec deployed (for a rollback, the last stable one, not the job's).
    pub spec: &'a StreamJobSpec,
    /// Workers to run (0: none).
    pub parallelism: u32,
    /// What the workers restore; absent: the job's newest checkpoint, or `restoreFrom`.
    pub restore: Option<Restore>,
}

impl<'a> Rollout<'a> {
    /// The rollout the planner asked for.
    pub fn of(deploy: &'a Deploy) -> Rollout<'a> {
        let restore = if deploy.empty_state {
            Some(Restore::Empty)
        } else {
            deploy.restore_from.clone().map(Restore::Snapshot)
        };
        Rollout {
            deployment: deploy.deployment,
            spec: &deploy.spec,
            parallelism: deploy.parallelism,
            restore,
        }
    }

    /// The job's own spec as it stands, deployed as `deployment` at its parallelism (none
    /// when suspended), restoring its newest checkpoint: what `rivulet-operator render`
    /// prints.
    pub fn current(job: &'a StreamJob, deployment: u64) -> Rollout<'a> {
        let parallelism = if rivulet_control::desired::wants_running(&job.spec) {
            job.spec.parallelism
        } else {
            0
        };
        Rollout {
            deployment,
            spec: &job.spec,
            parallelism,
            restore: None,
        }
    }
}

/// Names of a job's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// The StatefulSet, the headless Service, the ConfigMap and the PodDisruptionBudget.
    pub workers: String,
    /// The Secret with the control-API token.
    pub token_secret: String,
}

impl Names {
    pub fn of(job: &StreamJob) -> Names {
        let name = job.job_name();
        Names {
            workers: name.to_string(),
            token_secret: format!("{name}-control-token"),
        }
    }
}

/// The labels that select a job's worker pods (what `status.selector` says).
pub fn selector_labels(job: &StreamJob) -> BTreeMap<String, String> {
    BTreeMap::from([(JOB_LABEL.to_string(), job.job_name().to_string())])
}

/// The labels every object of a job carries.
pub fn labels(job: &StreamJob) -> BTreeMap<String, String> {
    let mut l = selector_labels(job);
    for (k, v) in [
        ("app.kubernetes.io/name", "rivulet-worker"),
        ("app.kubernetes.io/instance", job.job_name()),
        ("app.kubernetes.io/component", "worker"),
        ("app.kubernetes.io/managed-by", "rivulet-operator"),
    ] {
        l.insert(k.to_string(), v.to_string());
    }
    l
}

fn meta(job: &StreamJob, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(job.job_namespace().to_string()),
        labels: Some(labels(job)),
        owner_references: job.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// Worker `i`'s shuffle address pattern: its pod's name in the headless Service's domain.
pub fn peers_pattern(job: &StreamJob, settings: &Settings) -> String {
    let name = job.job_name();
    format!(
        "{name}-{{i}}.{name}.{}.svc.{}:{SHUFFLE_PORT}",
        job.job_namespace(),
        settings.cluster_domain
    )
}

/// How every worker of `rollout` is started (the index comes from each pod's label).
pub fn launch(job: &StreamJob, rollout: &Rollout, settings: &Settings) -> WorkerLaunch {
    let launch = WorkerLaunch::new(
        format!("{CONFIG_DIR}/{JOB_FILE}"),
        0,
        rollout.parallelism.max(1),
        DATA_DIR,
        format!("0.0.0.0:{HTTP_PORT}"),
    )
    .with_peers(&[peers_pattern(job, settings)])
    .with_deployment(rollout.deployment);
    match &rollout.restore {
        Some(r) => launch.with_restore(r.clone()),
        None => launch,
    }
}

/// The manifest the workers read: the job's name and namespace, the rollout's spec at its
/// parallelism, no status.
pub fn worker_manifest(job: &StreamJob, rollout: &Rollout) -> StreamJob {
    StreamJob {
        metadata: ObjectMeta {
            name: job.metadata.name.clone(),
            namespace: Some(job.job_namespace().to_string()),
            ..Default::default()
        },
        spec: StreamJobSpec {
            parallelism: rollout.parallelism.max(1),
            ..rollout.spec.clone()
        },
        status: None,
    }
}

/// The ConfigMap: `job.yaml` and the launch settings.
pub fn config_map(
    job: &StreamJob,
    rollout: &Rollout,
    settings: &Settings,
) -> Result<ConfigMap, serde_yaml::Error> {
    let mut data = BTreeMap::new();
    data.insert(
        JOB_FILE.to_string(),
        serde_yaml::to_string(&worker_manifest(job, rollout))?,
    );
    for (name, value) in launch(job, rollout, settings).settings_env() {
        data.insert(name.to_string(), value);
    }
    let mut meta = meta(job, &Names::of(job).workers);
    meta.annotations = Some(BTreeMap::from([(
        DEPLOYMENT_LABEL.to_string(),
        rollout.deployment.to_string(),
    )]));
    Ok(ConfigMap {
        metadata: meta,
        data: Some(data),
        ..Default::default()
    })
}

/// The headless Service: `<job>-<i>.<job>.<namespace>.svc` for every worker, ready or not.
pub fn service(job: &StreamJob) -> Service {
    Service {
        metadata: meta(job, &Names::of(job).workers),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(job)),
            ports: Some(vec![
                service_port("http", HTTP_PORT),
                service_port("shuffle", SHUFFLE_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn service_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: i32::from(port),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The PodDisruptionBudget: a drain evicts one worker at a time (the job restarts from its
/// newest checkpoint each time).
pub fn pod_disruption_budget(job: &StreamJob) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(job, &Names::of(job).workers),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(job)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The NetworkPolicy of the job's workers. Only their ingress is restricted: the shuffle
/// port (records and checkpoint barriers between workers) takes connections from the same
/// job's workers, the HTTP port (control API, `/status`, `/metrics`) from the operator's
/// pods and from pods in the scrapers' namespaces. Probes come from the kubelet on the
/// node, which network policies do not stop.
pub fn network_policy(job: &StreamJob, np: &NetworkPolicySettings) -> NetworkPolicy {
    let selector = |labels: BTreeMap<String, String>| LabelSelector {
        match_labels: Some(labels),
        ..Default::default()
    };
    let namespace = |name: &str| {
        selector(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            name.to_string(),
        )]))
    };
    let port = |port: u16| {
        Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(i32::from(port))),
            protocol: Some("TCP".into()),
            ..Default::default()
        }])
    };
    let mut http_from = vec![NetworkPolicyPeer {
        namespace_selector: Some(namespace(&np.operator_namespace)),
        pod_selector: Some(selector(np.operator_labels.clone())),
        ..Default::default()
    }];
    http_from.extend(np.scrape_namespaces.iter().map(|ns| NetworkPolicyPeer {
        namespace_selector: Some(namespace(ns)),
        ..Default::default()
    }));
    NetworkPolicy {
        metadata: meta(job, &Names::of(job).workers),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(selector_labels(job))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(selector(selector_labels(job))),
                        ..Default::default()
                    }]),
                    ports: port(SHUFFLE_PORT),
                },
                NetworkPolicyIngressRule {
                    from: Some(http_from),
                    ports: port(HTTP_PORT),
                },
            ]),
            ..Default::default()
        }),
    }
}

/// The Secret with the control-API token.
pub fn token_secret(job: &StreamJob, token: &str) -> Secret {
    Secret {
        metadata: meta(job, &Names::of(job).token_secret),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

/// The workers' StatefulSet for `rollout`.
pub fn stateful_set(job: &StreamJob, rollout: &Rollout, settings: &Settings) -> StatefulSet {
    let names = Names::of(job);
    let spec = rollout.spec;
    let pod = &spec.pod_template;

    let mut pod_labels = pod.labels.clone();
    pod_labels.extend(labels(job));
    pod_labels.insert(DEPLOYMENT_LABEL.into(), rollout.deployment.to_string());
    let mut pod_annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), HTTP_PORT.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ]);
    pod_annotations.extend(pod.annotations.clone());

    let container = worker_container(job, rollout, settings);
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.workers.clone(),
                items: Some(vec![KeyToPath {
                    key: JOB_FILE.into(),
                    path: JOB_FILE.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        empty_dir("tmp"),
    ];
    let claims = match &pod.data_volume_claim {
        Some(claim) => Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                labels: Some(labels(job)),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: claim.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(claim.size.clone()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        None => {
            volumes.push(empty_dir("data"));
            None
        }
    };

    let mut meta = meta(job, &names.workers);
    meta.annotations = Some(BTreeMap::from([(
        DEPLOYMENT_LABEL.to_string(),
        rollout.deployment.to_string(),
    )]));
    StatefulSet {
        metadata: meta,
        spec: Some(StatefulSetSpec {
            replicas: Some(rollout.parallelism as i32),
            service_name: Some(names.workers.clone()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(job)),
                ..Default::default()
            },
            persistent_volume_claim_retention_policy: claims.as_ref().map(|_| {
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Delete".into()),
                }
            }),
            volume_claim_templates: claims,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    service_account_name: pod.service_account_name.clone(),
                    // Workers never talk to the Kubernetes API.
                    automount_service_account_token: Some(false),
                    node_selector: (!pod.node_selector.is_empty())
                        .then(|| pod.node_selector.clone()),
                    tolerations: (!pod.tolerations.is_empty()).then(|| pod.tolerations.clone()),
                    affinity: pod.affinity.clone(),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(WORKER_UID),
                        run_as_group: Some(WORKER_UID),
                        fs_group: Some(WORKER_UID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

/// The resources of a worker whose spec asks for none.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("500m".into())),
            ("memory".to_string(), Quantity("1Gi".into())),
        ])),
        ..Default::default()
    }
}

fn worker_container(job: &StreamJob, rollout: &Rollout, settings: &Settings) -> Container {
    let names = Names::of(job);
    let spec = rollout.spec;
    let pod = &spec.pod_template;

    let mut env_vars = vec![EnvVar {
        name: env::WORKER_INDEX.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: format!("metadata.labels['{POD_INDEX_LABEL}']"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }];
    for (name, _) in launch(job, rollout, settings).settings_env() {
        env_vars.push(EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: names.workers.clone(),
                    key: name.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    env_vars.push(EnvVar {
        name: env::CONTROL_TOKEN.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: names.token_secret.clone(),
                key: TOKEN_KEY.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    // The spec's own variables (validation keeps them clear of RIVULET_*).
    env_vars.extend(pod.env.iter().cloned());

    // Credentials only from the Secrets the spec names, every key a variable.
    let env_from: Vec<EnvFromSource> = [&spec.credentials.kafka, &spec.credentials.storage]
        .into_iter()
        .flatten()
        .map(|s| EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: s.secret_name.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        })
        .collect();

    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    };

    Container {
        name: CONTAINER.into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| settings.worker_image.clone()),
        ),
        image_pull_policy: pod.image_pull_policy.map(|p| format!("{p:?}")),
        command: Some(vec![rivulet_api::launch::WORKER_BINARY.into()]),
        env: Some(env_vars),
        env_from: (!env_from.is_empty()).then_some(env_from),
        ports: Some(vec![
            container_port("http", HTTP_PORT),
            container_port("shuffle", SHUFFLE_PORT),
        ]),
        // Restoring large state can take a while: liveness only asks whether the process
        // answers; readiness says the state is restored and the sources assigned.
        liveness_probe: Some(probe("/healthz", 10, 6)),
        readiness_probe: Some(probe("/readyz", 5, 3)),
        resources: Some(pod.resources.clone().unwrap_or_else(default_resources)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "data".into(),
                mount_path: DATA_DIR.into(),
                ..Default::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..Default::default()
            },
        ]),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Every object of a job for `rollout`, in the order they are applied, as JSON values
/// (`apiVersion` and `kind` included); the token Secret is left out (the operator makes
/// it in the cluster, once).
pub fn all(
    job: &StreamJob,
    rollout: &Rollout,
    settings: &Settings,
) -> Result<Vec<serde_json::Value>, ObjectError> {
    let mut objects = vec![
        serde_json::to_value(config_map(job, rollout, settings)?)?,
        serde_json::to_value(service(job))?,
    ];
    if let Some(np) = &settings.network_policy {
        objects.push(serde_json::to_value(network_policy(job, np))?);
    }
    objects.push(serde_json::to_value(pod_disruption_budget(job))?);
    objects.push(serde_json::to_value(stateful_set(job, rollout, settings))?);
    Ok(objects)
}

/// An object that could not be serialized.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("the workers' manifest: {0}")]
    Manifest(#[from] serde_yaml::Error),
    #[error("an object as JSON: {0}")]
    Json(#[from] serde_json::Error),
}
