//! The Helm chart (`charts/rivulet`), rendered and linted by Helm's own engine offline
//! (`scripts/helm.py`, PyPI `helm-python-sdk`) for several values sets: every object valid
//! against the Kubernetes 1.32 schemas, RBAC that grants exactly what the operator's code
//! calls (`rivulet_operator::rbac`), hardened pods, image references matching what the
//! Dockerfiles build, the CRD the code generates, and bad values refused naming the field.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rivulet_operator::rbac::{self, Scope};
use serde_json::{json, Value};

const RELEASE: &str = "rivulet";
const NAMESPACE: &str = "rivulet-system";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the operator crate is inside the workspace")
        .to_path_buf()
}

fn helm(args: &[&str]) -> Output {
    Command::new("python3")
        .arg(repo().join("scripts/helm.py"))
        .args(args)
        .output()
        .expect("python3 runs scripts/helm.py (make setup installs helm-python-sdk)")
}

fn chart() -> String {
    repo().join("charts/rivulet").display().to_string()
}

/// The chart rendered with `values`: every object of every template, in template order.
fn render(values: &Value) -> Vec<Value> {
    let out = helm(&["render", &chart(), RELEASE, NAMESPACE, &values.to_string()]);
    assert!(
        out.status.success(),
        "helm render with {values}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let templates: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&out.stdout).expect("the renderer prints JSON");
    let mut objects = Vec::new();
    for (path, text) in &templates {
        if path.ends_with("NOTES.txt") {
            continue;
        }
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v: Value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{path} is not YAML: {e}\n{text}"));
            if !v.is_null() {
                objects.push(v);
            }
        }
    }
    objects
}

fn notes(values: &Value) -> String {
    let out = helm(&["render", &chart(), RELEASE, NAMESPACE, &values.to_string()]);
    let templates: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    templates["rivulet/templates/NOTES.txt"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `v` with every number as an `f64`, so `0` and `0.0` compare equal.
fn numbers_by_value(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_by_value).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), numbers_by_value(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The values sets a user would install with.
fn values_sets() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        (
            "namespaces",
            json!({"watchNamespaces": ["analytics", "payments"]}),
        ),
        (
            "monitoring",
            json!({
                "metrics": {
                    "serviceMonitor": {"enabled": true, "labels": {"release": "prom"}},
                    "podMonitor": {"enabled": true, "labels": {"release": "prom"}}
                },
                "dashboard": {"enabled": true},
                "networkPolicy": {"enabled": true, "scrapeNamespaces": ["monitoring"]}
            }),
        ),
        ("no-crds", json!({"crds": {"install": false}})),
        ("replicas", json!({"replicas": 2})),
    ]
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[test]
fn every_rendered_object_validates_against_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for (_, values) in values_sets() {
        let objects = render(&values);
        // The Prometheus Operator's kinds are not in Kubernetes' schemas.
        all.extend(
            objects
                .into_iter()
                .filter(|o| o["apiVersion"] != "monitoring.coreos.com/v1"),
        );
    }
    assert!(all.len() > 30, "{}", all.len());
    common::validate_against_kubernetes(dir.path(), &all);
}

#[test]
fn helm_lint_is_clean_in_strict_mode() {
    for (name, values) in values_sets() {
        let out = helm(&["lint", &chart(), &values.to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        assert_eq!(report["total_charts_linted"], 1, "{report}");
        assert_eq!(report["errors"], json!([]), "{name}: {report}");
        // Severity 2 is a warning, 3 an error; 1 (information) is advice.
        let findings: Vec<&Value> = report["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
            .collect();
        assert!(findings.is_empty(), "{name}: {findings:#?}");
    }
}

#[test]
fn defaults_install_one_operator_with_cluster_wide_rbac_and_the_crd() {
    let objects = render(&json!({}));
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Pod",
            "Service",
            "ServiceAccount",
        ]),
    );
    let deployment = find(&objects, "Deployment", RELEASE).expect("the operator Deployment");
    assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], 1);
    // One replica, no election: never two operators, even during an upgrade.
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        format!("rivulet/operator:{}", version()),
        "the image docker/operator.Dockerfile builds"
    );
    assert_eq!(container["args"], json!(["run", "--no-leader-election"]));
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(!env.contains(&"RIVULET_NAMESPACES"), "{env:?}");
    let env_value = |name: &str| {
        container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(
        env_value("RIVULET_WORKER_IMAGE"),
        Some(json!(rivulet_operator::settings::default_worker_image()))
    );
    assert_eq!(
        env_value("RIVULET_METRICS_ADDR"),
        Some(json!("0.0.0.0:9090"))
    );
    assert_eq!(pod["serviceAccountName"], RELEASE);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");

    // The CRD is the one the code generates, kept on uninstall.
    let crd = find(
        &objects,
        "CustomResourceDefinition",
        "streamjobs.rivulet.dev",
    )
    .expect("the CRD");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    // The checked-in file is what `rivulet-operator crd` prints (the api
    // crate's tests hold the two equal). Helm's toYaml writes `0.0` as `0`,
    // so numbers compare by value.
    let checked_in: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("crds/streamjob.yaml")).expect("crds/streamjob.yaml"),
    )
    .expect("crds/streamjob.yaml parses");
    assert_eq!(
        numbers_by_value(&crd["spec"]),
        numbers_by_value(&checked_in["spec"])
    );

    // `helm test`: probes the operator's /readyz through its Service.
    let test = of_kind(&objects, "Pod")[0];
    assert_eq!(test["metadata"]["annotations"]["helm.sh/hook"], "test");
    let service = find(&objects, "Service", "rivulet-metrics").expect("the metrics Service");
    assert_eq!(
        test["spec"]["containers"][0]["args"],
        json!([
            "probe",
            format!("http://rivulet-metrics.{NAMESPACE}.svc:9090/readyz")
        ])
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 9090);
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let notes = notes(&json!({}));
    assert!(notes.contains("kubectl get sj -w"), "{notes}");
    assert!(notes.contains("every namespace"), "{notes}");
}

/// Every pod the chart runs: non-root, read-only root filesystem, no privilege escalation,
/// every capability dropped, the RuntimeDefault seccomp profile.
#[test]
fn every_pod_is_hardened() {
    for (name, values) in values_sets() {
        let objects = render(&values);
        let pods: Vec<&Value> = objects
            .iter()
            .filter_map(|o| match o["kind"].as_str() {
                Some("Deployment") => Some(&o["spec"]["template"]["spec"]),
                Some("Pod") => Some(&o["spec"]),
                _ => None,
            })
            .collect();
        assert_eq!(pods.len(), 2, "{name}");
        for pod in pods {
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"],
                "RuntimeDefault"
            );
            for c in pod["containers"].as_array().unwrap() {
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}: {c}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}: {c}");
                assert_eq!(sc["runAsNonRoot"], true, "{name}: {c}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}: {c}");
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
                assert!(c["resources"]["limits"]["memory"].is_string(), "{c}");
            }
        }
    }
}

/// (group, resource, verb) for every verb of every rule.
fn granted_by(rules: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().expect("rules") {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    out.insert((
                        g.as_str().unwrap().to_string(),
                        r.as_str().unwrap().to_string(),
                        v.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    out
}

fn needed(scope: Scope, network_policies: bool) -> BTreeSet<(String, String, String)> {
    rbac::rules(scope, network_policies)
        .into_iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .into_iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

/// The chart grants exactly what the operator's code calls (`rivulet_operator::rbac`, which
/// the reconciler and leader-election tests hold every request to): nothing missing,
/// nothing more, cluster-wide or per namespace, and the Lease only in the operator's own
/// namespace and only when it elects a leader.
#[test]
fn rbac_grants_exactly_what_the_operator_calls() {
    let jobs = needed(Scope::Jobs, false);
    let lease = needed(Scope::Operator, false);

    let objects = render(&json!({}));
    let role = find(&objects, "ClusterRole", RELEASE).expect("a ClusterRole");
    assert_eq!(granted_by(&role["rules"]), jobs);
    let binding = find(&objects, "ClusterRoleBinding", RELEASE).expect("its binding");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}])
    );
    assert!(
        of_kind(&objects, "Role").is_empty(),
        "no Lease without an election"
    );

    let objects = render(&json!({"watchNamespaces": ["analytics", "payments"]}));
    assert!(of_kind(&objects, "ClusterRole").is_empty());
    assert!(of_kind(&objects, "ClusterRoleBinding").is_empty());
    let roles = of_kind(&objects, "Role");
    let namespaces: Vec<&str> = roles
        .iter()
        .filter_map(|r| r["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(namespaces, ["analytics", "payments"]);
    for role in roles {
        assert_eq!(granted_by(&role["rules"]), jobs);
    }
    let bindings = of_kind(&objects, "RoleBinding");
    assert_eq!(bindings.len(), 2);
    for b in bindings {
        assert_eq!(b["roleRef"]["name"], RELEASE);
        assert_eq!(b["subjects"][0]["namespace"], NAMESPACE);
    }
    let deployment = find(&objects, "Deployment", RELEASE).unwrap();
    let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({"name": "RIVULET_NAMESPACES", "value": "analytics,payments"})),
        "{env}"
    );
    assert!(
        notes(&json!({"watchNamespaces": ["analytics", "payments"]}))
            .contains("analytics, payments")
    );

    // Two replicas elect a leader: the Lease's Role, in the operator's namespace.
    let objects = render(&json!({"replicas": 2}));
    let leader = find(&objects, "Role", "rivulet-leader").expect("the Lease's Role");
    assert_eq!(leader["metadata"]["namespace"], NAMESPACE);
    assert_eq!(granted_by(&leader["rules"]), lease);
    let deployment = find(&objects, "Deployment", RELEASE).unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(deployment["spec"]["strategy"].is_null(), "rolling updates");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["run"])
    );
    let roles = render(&json!({"rbac": {"create": false}}));
    assert!(of_kind(&roles, "ClusterRole").is_empty());

    // With NetworkPolicies, the operator applies one per job: that is granted too.
    let with_policies = needed(Scope::Jobs, true);
    assert!(with_policies.len() > jobs.len());
    for values in [
        json!({"networkPolicy": {"enabled": true}}),
        json!({"networkPolicy": {"enabled": true}, "watchNamespaces": ["analytics"]}),
    ] {
        let objects = render(&values);
        let roles: Vec<_> = objects
            .iter()
            .filter(|o| {
                (o["kind"] == "ClusterRole" || o["kind"] == "Role")
                    && o["metadata"]["name"] == RELEASE
            })
            .collect();
        assert_eq!(roles.len(), 1, "{values}");
        assert_eq!(granted_by(&roles[0]["rules"]), with_policies, "{values}");
    }
}

/// With `networkPolicy.enabled` the operator is told to give every job a NetworkPolicy that
/// lets in exactly its own pods (by the labels the chart gives them) and the scrapers.
#[test]
fn network_policies_let_in_the_operators_own_pods() {
    let objects =
        render(&json!({"networkPolicy": {"enabled": true, "scrapeNamespaces": ["monitoring"]}}));
    let deployment = find(&objects, "Deployment", RELEASE).unwrap();
    let pod = &deployment["spec"]["template"];
    let env: std::collections::BTreeMap<String, String> = pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert_eq!(env["RIVULET_NETWORK_POLICY"], "true");
    assert_eq!(env["RIVULET_SCRAPE_NAMESPACES"], "monitoring");
    // The labels the operator is told are its pods' own.
    for pair in env["RIVULET_OPERATOR_LABELS"].split(',') {
        let (k, v) = pair.split_once('=').expect("key=value");
        assert_eq!(pod["metadata"]["labels"][k], v, "{pair}");
    }
    let objects = render(&json!({}));
    let env = &find(&objects, "Deployment", RELEASE).unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["env"];
    assert!(!env.to_string().contains("RIVULET_NETWORK_POLICY"), "{env}");
}

/// The labels of `job`'s worker pods and the names of their container's ports, as the
/// operator builds them.
fn worker_pod(job: &rivulet_api::job::StreamJob) -> (Value, Vec<Value>) {
    let rollout = rivulet_operator::objects::Rollout::current(job, 4);
    let settings = rivulet_operator::settings::Settings::default();
    let sts = serde_json::to_value(rivulet_operator::objects::stateful_set(
        job, &rollout, &settings,
    ))
    .unwrap();
    let template = &sts["spec"]["template"];
    let ports = template["spec"]["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    (template["metadata"]["labels"].clone(), ports)
}

#[test]
fn the_pod_monitor_scrapes_the_workers_the_operator_runs_with_the_dashboards_labels() {
    let objects = render(&json!({
        "metrics": {"podMonitor": {"enabled": true}},
        "dashboard": {"enabled": true, "namespace": "grafana"}
    }));
    let monitor = of_kind(&objects, "PodMonitor")[0];
    let yaml = std::fs::read_to_string(repo().join("examples/clicks.yaml")).unwrap();
    let job = rivulet_api::load_manifest(&yaml).unwrap();
    let (labels, ports) = worker_pod(&job);
    // It selects the worker pods of every job...
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &labels[k], v,
            "worker pods are not labelled {k}={v}: {labels}"
        );
    }
    assert_eq!(monitor["spec"]["namespaceSelector"], json!({"any": true}));
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert!(ports.contains(&endpoint["port"]), "{ports:?}");
    // ...and names each series' job and worker as the dashboard's queries group them.
    let relabel: Vec<(String, String)> = endpoint["relabelings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["sourceLabels"][0].as_str().unwrap().to_string(),
                r["targetLabel"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let meta = |label: &str| {
        format!(
            "__meta_kubernetes_pod_label_{}",
            label.replace(['.', '/', '-'], "_")
        )
    };
    assert_eq!(
        relabel,
        [
            (meta(rivulet_api::job::JOB_LABEL), "streamjob".to_string()),
            (
                meta(rivulet_operator::objects::POD_INDEX_LABEL),
                "worker".to_string()
            ),
        ]
    );
    assert_eq!(
        labels[rivulet_api::job::JOB_LABEL],
        job.metadata.name.clone().unwrap()
    );

    // The dashboard ConfigMap holds the checked-in dashboard, where Grafana looks.
    let dashboard = find(&objects, "ConfigMap", "rivulet-dashboard").expect("the dashboard");
    assert_eq!(dashboard["metadata"]["namespace"], "grafana");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let held: Value = serde_json::from_str(
        dashboard["data"]["rivulet-streamjobs.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("charts/rivulet/dashboards/rivulet.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(held, file);
    // Its queries group only by labels the series have.
    let known = ["namespace", "streamjob", "worker", "le", "reason", "result"];
    for expr in dashboard_queries(&file) {
        for by in expr.split("by (").skip(1) {
            for label in by.split(')').next().unwrap().split(',') {
                assert!(known.contains(&label.trim()), "{label:?} in {expr}");
            }
        }
    }

    let objects = render(&json!({
        "watchNamespaces": ["analytics"],
        "metrics": {"podMonitor": {"enabled": true}}
    }));
    assert_eq!(
        of_kind(&objects, "PodMonitor")[0]["spec"]["namespaceSelector"],
        json!({"matchNames": ["analytics"]})
    );
    assert!(find(&objects, "ConfigMap", "rivulet-dashboard").is_none());
}

/// Every PromQL query of a Grafana dashboard: its panels' targets and its variables.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

#[test]
fn optional_objects_follow_their_values() {
    let objects = render(&json!({"crds": {"install": false}}));
    assert!(of_kind(&objects, "CustomResourceDefinition").is_empty());

    let objects = render(&json!({"crds": {"keep": false}}));
    let crd = of_kind(&objects, "CustomResourceDefinition")[0];
    assert!(
        crd["metadata"]["annotations"].is_null(),
        "{}",
        crd["metadata"]
    );

    let objects = render(&json!({
        "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}}
    }));
    let monitor = of_kind(&objects, "ServiceMonitor")[0];
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http-metrics");
    // The operator's per-job series keep the job's namespace, not the operator pod's.
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    let service = find(&objects, "Service", "rivulet-metrics").unwrap();
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["metadata"]["labels"]
            .as_object()
            .map(|l| {
                l.iter()
                    .filter(|(k, _)| {
                        [
                            "app.kubernetes.io/name",
                            "app.kubernetes.io/instance",
                            "app.kubernetes.io/component",
                        ]
                        .contains(&k.as_str())
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<serde_json::Map<_, _>>()
            })
            .map(Value::Object)
            .unwrap()
    );

    let objects = render(
        &json!({"image": {"tag": "1.2.3"}, "workerImage": {"repository": "registry.example/rivulet/worker", "tag": "1.2.3"}}),
    );
    let deployment = find(&objects, "Deployment", RELEASE).unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "rivulet/operator:1.2.3");
    assert!(container["env"].as_array().unwrap().contains(
        &json!({"name": "RIVULET_WORKER_IMAGE", "value": "registry.example/rivulet/worker:1.2.3"})
    ));
}

/// A bad values file fails before anything renders, with the field named.
#[test]
fn bad_values_are_refused_naming_the_field() {
    for (values, field) in [
        (json!({"replicas": 0}), "/replicas"),
        (json!({"watchNamespaces": "analytics"}), "/watchNamespaces"),
        (json!({"logging": {"format": "xml"}}), "/logging/format"),
        (json!({"metrics": {"port": "http"}}), "/metrics/port"),
        (json!({"imag": {"tag": "1"}}), "imag"),
        (
            json!({"watchNamespaces": ["Not_A_Namespace"]}),
            "/watchNamespaces/0",
        ),
    ] {
        for command in ["validate", "render"] {
            let mut args = vec![command, "", RELEASE, NAMESPACE];
            let chart = chart();
            args[1] = &chart;
            let values = values.to_string();
            if command == "validate" {
                args.truncate(2);
            }
            args.push(&values);
            let out = helm(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{command} accepted {values}");
            assert!(err.contains(field), "{command} {values}: {err}");
        }
    }
    // More than one replica without an election is refused with the reason.
    let out = helm(&[
        "render",
        &chart(),
        RELEASE,
        NAMESPACE,
        r#"{"replicas": 2, "leaderElection": {"enabled": false}}"#,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("leaderElection.enabled"));
}

/// The chart's version and appVersion are the workspace's, so the default images are the
/// ones this checkout builds.
#[test]
fn chart_versions_match_the_workspace() {
    let chart: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("charts/rivulet/Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(chart["version"], version());
    assert_eq!(chart["appVersion"], version());
}

/// `rivulet-operator probe URL`, which the chart's `helm test` runs: success while the
/// operator is ready, failure naming the answer when not, or when nothing listens.
#[test]
fn probe_checks_an_operators_readiness() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let metrics = std::sync::Arc::new(rivulet_operator::metrics::Metrics::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr = rt
        .block_on(rivulet_operator::metrics::serve(
            "127.0.0.1:0".parse().unwrap(),
            metrics.clone(),
            async move {
                let _ = stopped.await;
            },
        ))
        .expect("the metrics server starts");
    let probe = |path: &str| {
        Command::new(env!("CARGO_BIN_EXE_rivulet-operator"))
            .args(["probe", &format!("http://{addr}{path}"), "--timeout", "5"])
            .output()
            .unwrap()
    };
    let out = probe("/readyz");
    assert!(!out.status.success(), "ready before the controller runs");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("503"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    metrics.set_ready(true);
    let out = probe("/readyz");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(probe("/healthz").status.success());
    let _ = stop.send(());
    drop(rt);
    let out = probe("/readyz");
    assert!(!out.status.success(), "nothing listens any more");
}

#[test]
fn the_readme_install_section_matches_the_chart() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme
        .find("## Install on Kubernetes")
        .expect("the README has an install section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    assert!(
        section.contains(&format!(
            "helm install {RELEASE} charts/rivulet -n {NAMESPACE} --create-namespace"
        )),
        "{section}"
    );
    // Every command the chart's NOTES give is the README's too.
    for line in notes(&json!({})).lines().map(str::trim) {
        if line.starts_with("kubectl") || line.starts_with("helm") {
            assert!(section.contains(line), "the README does not say {line:?}");
        }
    }
    // The values it names exist, and the images it says `make images` tags are the defaults.
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("charts/rivulet/values.yaml")).unwrap(),
    )
    .unwrap();
    for path in [
        "replicas",
        "watchNamespaces",
        "image.repository",
        "workerImage.repository",
        "metrics.serviceMonitor.enabled",
        "metrics.podMonitor.enabled",
        "dashboard.enabled",
        "networkPolicy.enabled",
        "networkPolicy.scrapeNamespaces",
        "crds.keep",
        "crds.install",
    ] {
        assert!(section.contains(path), "the README does not mention {path}");
        let found = path.split('.').try_fold(&values, |v, k| v.get(k));
        assert!(found.is_some(), "values.yaml has no {path}");
    }
    for image in ["rivulet/worker", "rivulet/operator"] {
        assert!(
            section.contains(&format!("{image}:{}", version())),
            "the README does not name {image}:{}",
            version()
        );
    }
    // The example it applies is the one NOTES names, and it is a job a cluster can run
    // once its Kafka is named.
    let yaml = std::fs::read_to_string(repo().join("examples/s3-checkpoints.yaml")).unwrap();
    let mut job = rivulet_api::load_manifest(&yaml).unwrap();
    assert_eq!(job.metadata.name.as_deref(), Some("clicks-to-s3"));
    job.spec.pipeline.source.bootstrap_servers = Some("kafka:9092".into());
    assert_eq!(
        rivulet_operator::check::kubernetes_errors(&job)
            .iter()
            .map(|e| e.path.clone())
            .collect::<Vec<_>>(),
        Vec::<String>::new()
    );
}
