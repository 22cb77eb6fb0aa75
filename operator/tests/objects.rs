//! The objects the operator applies, for several specs (defaults, pod overrides,
//! credentials, a volume claim, NetworkPolicies on): what each one says, and that each one is valid against the
//! Kubernetes 1.32 OpenAPI schemas (`kubernetes-validate --strict`, installed by
//! `make setup`).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
use rivulet_api::job::{StreamJob, JOB_LABEL};
use rivulet_api::launch::{env, Restore};
use rivulet_operator::objects::{self, Rollout, DEPLOYMENT_LABEL, POD_INDEX_LABEL};
use rivulet_operator::settings::{NetworkPolicySettings, HTTP_PORT, SHUFFLE_PORT};
use rivulet_operator::Settings;
use serde::Deserialize;
use serde_json::{json, Value};

const BASE: &str = r#"
apiVersion: rivulet.dev/v1alpha1
kind: StreamJob
metadata:
  name: clicks
  namespace: analytics
spec:
  parallelism: 3
  pipeline:
    source: {bootstrapServers: "kafka.kafka:9092", topics: [clicks]}
    time: {type: event, field: ts}
    key: [user]
    window: {type: tumbling, size: 10s}
    aggregates: [{name: n, fn: count}]
    sink: {topic: clicks-per-user, partitioner: fixed}
  state: {backend: rocksdb, storage: "s3://snapshots/rivulet"}
"#;

const OVERRIDES: &str = r#"
  image: registry.example/rivulet/worker:1.2.3
  podTemplate:
    resources:
      requests: {cpu: "2", memory: 4Gi}
      limits: {memory: 4Gi}
    nodeSelector: {pool: streaming}
    tolerations: [{key: dedicated, operator: Equal, value: streaming, effect: NoSchedule}]
    affinity:
      podAntiAffinity:
        preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {rivulet.dev/job: clicks}}
    serviceAccountName: clicks-worker
    env: [{name: RUST_LOG, value: debug}, {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
    annotations: {example.com/team: data, prometheus.io/port: "9999"}
    labels: {team: data, rivulet.dev/job: not-this}
    imagePullPolicy: Always
"#;

const CREDENTIALS: &str = r#"
  credentials:
    kafka: {secretName: kafka-credentials}
    storage: {secretName: s3-credentials}
"#;

const CLAIM: &str = r#"
  podTemplate:
    dataVolumeClaim: {size: 20Gi, storageClassName: fast-ssd}
"#;

fn job(extra: &str) -> StreamJob {
    let yaml = format!("{BASE}{extra}");
    rivulet_api::load_manifest(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The labels of the StatefulSet's pods.
fn pod_labels(sts: &StatefulSet) -> &BTreeMap<String, String> {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .expect("the pods are labelled")
}

fn pod_spec(sts: &StatefulSet) -> &PodSpec {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("a pod spec")
}

fn container(sts: &StatefulSet) -> &Container {
    &pod_spec(sts).containers[0]
}

fn env_var<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.iter().flatten().find(|e| e.name == name)
}

fn rollout(job: &StreamJob) -> Rollout<'_> {
    Rollout::current(job, 4)
}

#[test]
fn defaults_make_a_parallel_ondelete_statefulset_of_non_root_workers() {
    let job = job("");
    let settings = Settings::default();
    let sts = objects::stateful_set(&job, &rollout(&job), &settings);
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(sts.metadata.name.as_deref(), Some("clicks"));
    assert_eq!(sts.metadata.namespace.as_deref(), Some("analytics"));
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("clicks"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        spec.update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref()),
        Some("OnDelete")
    );
    // The selector is the one status.selector names for the scale subresource.
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(selector.len(), 1);
    assert_eq!(selector[JOB_LABEL], "clicks");
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .unwrap();
    assert_eq!(pod_labels[JOB_LABEL], "clicks");
    assert_eq!(pod_labels[DEPLOYMENT_LABEL], "4");
    // No owner reference without a uid (the job did not come from the API server).
    assert!(sts.metadata.owner_references.is_none());

    let c = container(&sts);
    assert_eq!(c.image, Some(settings.worker_image.clone()));
    assert_eq!(c.command, Some(vec!["rivulet-worker".to_string()]));
    // The worker index is the pod's ordinal.
    let index = env_var(c, env::WORKER_INDEX).unwrap();
    assert_eq!(
        index
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some(format!("metadata.labels['{POD_INDEX_LABEL}']").as_str())
    );
    // The token comes from the Secret, never as a value.
    let token = env_var(c, env::CONTROL_TOKEN).unwrap();
    assert!(token.value.is_none());
    let secret_ref = token
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .unwrap();
    assert_eq!(
        (secret_ref.name.as_str(), secret_ref.key.as_str()),
        ("clicks-control-token", "token")
    );
    assert!(c.env_from.is_none());
    // Probes on the worker's endpoints.
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
    // Locked down.
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    let pod = pod_spec(&sts);
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );
    assert_eq!(pod.automount_service_account_token, Some(false));
    // The data directory is an emptyDir; no claims.
    let data = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "data")
        .unwrap();
    assert!(data.empty_dir.is_some());
    assert!(spec.volume_claim_templates.is_none());
}

#[test]
fn the_configmap_holds_the_manifest_and_every_launch_setting_the_pods_read() {
    let job = job("");
    let settings = Settings::default();
    let mut r = rollout(&job);
    r.restore = Some(Restore::Snapshot(
        "s3://snapshots/rivulet/analytics/clicks/savepoints/00000000000000000007".into(),
    ));
    let cm = objects::config_map(&job, &r, &settings).unwrap();
    let data = cm.data.as_ref().unwrap();
    // The manifest is a valid StreamJob with the rollout's parallelism.
    let manifest = rivulet_api::load_manifest(&data["job.yaml"]).unwrap();
    assert_eq!(manifest.job_name(), "clicks");
    assert_eq!(manifest.job_namespace(), "analytics");
    assert_eq!(manifest.spec, job.spec);
    assert_eq!(
        data[env::PEERS],
        "clicks-{i}.clicks.analytics.svc.cluster.local:6123"
    );
    assert_eq!(data[env::PARALLELISM], "3");
    assert_eq!(data[env::RESTORE], r.restore.as_ref().unwrap().arg());
    assert_eq!(data[env::JOB], "/etc/rivulet/job.yaml");
    // A restarted container keeps to its deployment.
    assert_eq!(data[env::DEPLOYMENT], "4");
    // Every setting the container reads from the ConfigMap is in it.
    let sts = objects::stateful_set(&job, &r, &settings);
    let from_cm: Vec<&str> = container(&sts)
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value_from.as_ref()?.config_map_key_ref.as_ref())
        .map(|k| k.key.as_str())
        .collect();
    assert!(from_cm.len() >= 5);
    for key in &from_cm {
        assert!(data.contains_key(*key), "{key} missing from the ConfigMap");
    }
    // The pod mounts the manifest where RIVULET_JOB points.
    let mount = container(&sts)
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "config")
        .unwrap();
    assert_eq!(mount.mount_path, "/etc/rivulet");

    // One worker has no peers; a suspended job runs none.
    let mut one = job.clone();
    one.spec.parallelism = 1;
    let cm = objects::config_map(&one, &rollout(&one), &settings).unwrap();
    assert!(!cm.data.as_ref().unwrap().contains_key(env::PEERS));
    let mut suspended = job.clone();
    suspended.spec.job_state = rivulet_api::job::JobState::Suspended;
    let sts = objects::stateful_set(&suspended, &rollout(&suspended), &settings);
    assert_eq!(sts.spec.unwrap().replicas, Some(0));
}

#[test]
fn pod_template_overrides_are_applied_without_displacing_the_operators_own() {
    let job = job(OVERRIDES);
    let sts = objects::stateful_set(&job, &rollout(&job), &Settings::default());
    let c = container(&sts);
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example/rivulet/worker:1.2.3")
    );
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        c.resources.as_ref().and_then(|r| r.limits.clone()),
        job.spec
            .pod_template
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
    );
    assert_eq!(
        env_var(c, "RUST_LOG").and_then(|e| e.value.as_deref()),
        Some("debug")
    );
    assert!(env_var(c, "POD_IP").is_some());
    assert!(env_var(c, env::WORKER_INDEX).is_some());
    let pod = pod_spec(&sts);
    assert_eq!(pod.service_account_name.as_deref(), Some("clicks-worker"));
    assert_eq!(
        pod.node_selector.as_ref().map(|n| n["pool"].as_str()),
        Some("streaming")
    );
    assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
    assert!(pod.affinity.is_some());
    let labels = pod_labels(&sts);
    assert_eq!(labels["team"], "data");
    // The selector label is the operator's, whatever the template says.
    assert_eq!(labels[JOB_LABEL], "clicks");
    let annotations = sts
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap();
    let annotations = annotations.annotations.as_ref().unwrap();
    assert_eq!(annotations["example.com/team"], "data");
    assert_eq!(annotations["prometheus.io/port"], "9999");
}

#[test]
fn credentials_come_only_from_the_named_secrets() {
    let job = job(CREDENTIALS);
    let sts = objects::stateful_set(&job, &rollout(&job), &Settings::default());
    let from: Vec<String> = container(&sts)
        .env_from
        .iter()
        .flatten()
        .filter_map(|e| e.secret_ref.as_ref().map(|s| s.name.clone()))
        .collect();
    assert_eq!(from, ["kafka-credentials", "s3-credentials"]);
    // Nothing else in the environment carries a literal secret.
    for e in container(&sts).env.iter().flatten() {
        assert!(
            e.value.is_none() || e.name == "RUST_LOG",
            "{} has a literal value",
            e.name
        );
    }
}

#[test]
fn a_volume_claim_replaces_the_emptydir_and_goes_with_the_workers() {
    let job = job(CLAIM);
    let sts = objects::stateful_set(&job, &rollout(&job), &Settings::default());
    let spec = sts.spec.as_ref().unwrap();
    let claims = spec.volume_claim_templates.as_ref().unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    let claim = claims[0].spec.as_ref().unwrap();
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast-ssd"));
    assert_eq!(
        claim
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(|r| r["storage"].0.as_str()),
        Some("20Gi")
    );
    assert!(!pod_spec(&sts)
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == "data"));
    let retention = spec
        .persistent_volume_claim_retention_policy
        .as_ref()
        .unwrap();
    assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Delete"));
}

#[test]
fn service_and_budget_select_the_workers_and_children_are_owned_by_the_job() {
    let mut job = job("");
    job.metadata.uid = Some("4f5b3c1e-0000-4000-8000-000000000001".into());
    let svc = objects::service(&job);
    let spec = svc.spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert_eq!(spec.selector.as_ref().unwrap()[JOB_LABEL], "clicks");
    let pdb = objects::pod_disruption_budget(&job);
    assert_eq!(
        pdb.spec
            .as_ref()
            .unwrap()
            .selector
            .as_ref()
            .unwrap()
            .match_labels,
        Some(objects::selector_labels(&job))
    );
    let secret = objects::token_secret(&job, "s3cret");
    for owners in [
        &svc.metadata.owner_references,
        &pdb.metadata.owner_references,
        &secret.metadata.owner_references,
        &objects::stateful_set(&job, &rollout(&job), &Settings::default())
            .metadata
            .owner_references,
    ] {
        let o = &owners.as_ref().expect("an owner reference")[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.controller),
            ("StreamJob", "clicks", Some(true))
        );
        assert_eq!(o.uid, "4f5b3c1e-0000-4000-8000-000000000001");
    }
}

fn with_network_policies() -> Settings {
    Settings {
        network_policy: Some(NetworkPolicySettings {
            operator_namespace: "rivulet-system".into(),
            operator_labels: BTreeMap::from([
                ("app.kubernetes.io/name".into(), "rivulet".into()),
                ("app.kubernetes.io/component".into(), "operator".into()),
            ]),
            scrape_namespaces: vec!["monitoring".into()],
        }),
        ..Settings::default()
    }
}

#[test]
fn the_network_policy_opens_the_shuffle_to_the_job_and_http_to_the_operator() {
    let settings = with_network_policies();
    let np_settings = settings.network_policy.clone().unwrap();
    let job = job("");
    let policy = serde_json::to_value(objects::network_policy(&job, &np_settings)).unwrap();
    let workers = json!({"matchLabels": {JOB_LABEL: "clicks"}});
    assert_eq!(policy["metadata"]["name"], "clicks");
    assert_eq!(policy["metadata"]["namespace"], "analytics");
    assert_eq!(policy["spec"]["podSelector"], workers);
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([
            {
                "from": [{"podSelector": workers}],
                "ports": [{"port": SHUFFLE_PORT, "protocol": "TCP"}]
            },
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "rivulet-system"}},
                        "podSelector": {"matchLabels": {
                            "app.kubernetes.io/component": "operator",
                            "app.kubernetes.io/name": "rivulet"
                        }}
                    },
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
                ],
                "ports": [{"port": HTTP_PORT, "protocol": "TCP"}]
            }
        ])
    );
    // The worker pods carry the label it selects, and these are the ports they listen on.
    let sts = objects::stateful_set(&job, &rollout(&job), &settings);
    assert_eq!(pod_labels(&sts)[JOB_LABEL], "clicks");
    let ports: Vec<i32> = container(&sts)
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [i32::from(HTTP_PORT), i32::from(SHUFFLE_PORT)]);
    // It is applied with the others only when asked for.
    let kinds = |settings: &Settings| -> Vec<String> {
        objects::all(&job, &rollout(&job), settings)
            .unwrap()
            .iter()
            .map(|o| o["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!kinds(&Settings::default()).contains(&"NetworkPolicy".to_string()));
    assert_eq!(
        kinds(&settings),
        [
            "ConfigMap",
            "Service",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "StatefulSet"
        ]
    );
}

#[test]
fn every_object_validates_against_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::default();
    let mut all = Vec::new();
    let job_ = job("");
    all.push(
        serde_json::to_value(objects::network_policy(
            &job_,
            with_network_policies().network_policy.as_ref().unwrap(),
        ))
        .unwrap(),
    );
    for extra in ["", OVERRIDES, CREDENTIALS, CLAIM] {
        let mut job = job(extra);
        job.metadata.uid = Some("4f5b3c1e-0000-4000-8000-000000000001".into());
        let mut r = Rollout::current(&job, 2);
        r.restore = Some(Restore::Empty);
        all.extend(objects::all(&job, &r, &settings).unwrap());
        all.push(serde_json::to_value(objects::token_secret(&job, "s3cret")).unwrap());
    }
    assert_eq!(all.len(), 21);
    for o in &all {
        assert!(o["apiVersion"].is_string() && o["kind"].is_string(), "{o}");
    }
    common::validate_against_kubernetes(dir.path(), &all);

    // The check can fail: a field the schema does not have is rejected.
    let mut bad = all[4].clone();
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, serde_yaml::to_string(&bad).unwrap()).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["-k", "1.32.0", "--strict"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn render_prints_every_object_and_refuses_a_job_that_cannot_run_in_a_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_rivulet-operator");
    let good = dir.path().join("job.yaml");
    std::fs::write(&good, format!("{BASE}{CREDENTIALS}")).unwrap();
    let out = Command::new(bin).arg("render").arg(&good).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let kinds: Vec<String> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).unwrap();
            v["kind"].as_str().unwrap_or_default().to_string()
        })
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "Service", "PodDisruptionBudget", "StatefulSet"]
    );
    assert!(text.contains("clicks-control-token"));
    assert!(!text.contains("RIVULET_CONTROL_TOKEN: "));

    // With NetworkPolicies on (flags, or the chart's environment), the job's is printed too.
    let out = Command::new(bin)
        .arg("render")
        .arg(&good)
        .args(["--network-policy", "--scrape-namespaces", "monitoring"])
        .env("POD_NAMESPACE", "rivulet-system")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let policy: Value = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .find(|v| v["kind"] == "NetworkPolicy")
        .expect("a NetworkPolicy");
    let http_from = &policy["spec"]["ingress"][1]["from"];
    assert_eq!(
        http_from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "rivulet-system"
    );
    assert_eq!(
        http_from[1]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );

    // A job with the default (local) storage: the field is named, nothing is printed.
    let local = dir.path().join("local.yaml");
    std::fs::write(
        &local,
        BASE.replace(
            "  state: {backend: rocksdb, storage: \"s3://snapshots/rivulet\"}\n",
            "",
        ),
    )
    .unwrap();
    let out = Command::new(bin)
        .arg("render")
        .arg(&local)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.state.storage"), "{err}");

    // `crd` prints the checked-in CRD.
    let out = Command::new(bin).arg("crd").output().unwrap();
    assert!(out.status.success());
    let crd = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/streamjob.yaml"),
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), crd);
}
