//! The StreamJob CustomResourceDefinition: the checked-in file is what the code generates,
//! the schema is one the API server accepts (structural, described), every manifest the
//! project ships validates against it, and its CEL rules say what they should.

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use rivulet_api::job::{crd_yaml, strict_schema, StreamJob, StreamJobSpec};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the api crate is inside the workspace")
        .to_path_buf()
}

fn crd_json() -> Value {
    serde_json::to_value(StreamJob::crd()).expect("the CRD serializes")
}

/// The `openAPIV3Schema` of the only version.
fn schema() -> Value {
    let crd = crd_json();
    assert_eq!(crd["spec"]["versions"].as_array().map(Vec::len), Some(1));
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn checked_in_crd_is_the_generated_one() {
    let path = repo().join("crds/streamjob.yaml");
    let on_disk = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let generated = crd_yaml().expect("the CRD renders as YAML");
    assert!(
        on_disk == generated,
        "{} is stale: regenerate it with `rivulet crd > crds/streamjob.yaml`",
        path.display()
    );
}

#[test]
fn names_subresources_and_columns() {
    let crd = crd_json();
    let spec = &crd["spec"];
    assert_eq!(crd["metadata"]["name"], "streamjobs.rivulet.dev");
    assert_eq!(spec["group"], "rivulet.dev");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "StreamJob");
    assert_eq!(spec["names"]["plural"], "streamjobs");
    assert_eq!(spec["names"]["shortNames"], json!(["sj"]));
    assert_eq!(spec["names"]["categories"], json!(["rivulet"]));
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
    assert_eq!(version["subresources"]["status"], json!({}));
    assert_eq!(
        version["subresources"]["scale"],
        json!({
            "specReplicasPath": ".spec.parallelism",
            "statusReplicasPath": ".status.parallelism",
            "labelSelectorPath": ".status.selector"
        })
    );
    let columns: Vec<(&str, &str)> = version["additionalPrinterColumns"]
        .as_array()
        .expect("printer columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default(),
                c["jsonPath"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("Phase", ".status.phase"),
            ("Desired", ".spec.parallelism"),
            ("Autoscaled", ".status.autoscaler.parallelism"),
            ("Current", ".status.parallelism"),
            ("Lag", ".status.metrics.lag"),
            ("Last Savepoint", ".status.lastSavepoint.path"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    // Each column's path exists in the schema (the API server shows nothing for a typo).
    let schema = schema();
    for (name, path) in &columns[..5] {
        let mut node = &schema;
        for key in path.trim_start_matches('.').split('.') {
            node = &node["properties"][key];
        }
        assert!(
            node.is_object(),
            "column {name}: {path} is not in the schema"
        );
    }
}

/// Kubernetes' rules for a structural schema, and a description on every field Rivulet
/// defines (embedded Kubernetes types bring their own).
#[test]
fn schema_is_structural_and_every_field_is_described() {
    fn walk(node: &Value, path: &str, ours: bool, problems: &mut Vec<String>) {
        let Some(obj) = node.as_object() else {
            problems.push(format!("{path}: not a schema object"));
            return;
        };
        if obj.contains_key("$ref") {
            problems.push(format!("{path}: $ref is not allowed"));
        }
        let free = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true))
            || obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
        if !obj.contains_key("type") && !free {
            problems.push(format!("{path}: no type"));
        }
        // Inside oneOf/anyOf/allOf, only what is also declared outside is allowed.
        for junctor in ["oneOf", "anyOf", "allOf"] {
            for branch in obj
                .get(junctor)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for key in ["type", "description", "default", "nullable"] {
                    if branch.get(key).is_some() {
                        problems.push(format!("{path}: {junctor} branch sets {key}"));
                    }
                }
                for prop in branch
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    if node["properties"].get(prop).is_none() {
                        problems.push(format!("{path}: {junctor} declares {prop} only inside"));
                    }
                }
            }
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (key, child) in props {
                let child_path = format!("{path}.{key}");
                // Kubernetes' own types, embedded: described upstream.
                let embedded = ours
                    && matches!(
                        child_path.as_str(),
                        ".spec.podTemplate.resources"
                            | ".spec.podTemplate.tolerations"
                            | ".spec.podTemplate.affinity"
                            | ".spec.podTemplate.env"
                            | ".status.conditions"
                    );
                if ours && !embedded && child.get("description").is_none() {
                    problems.push(format!("{child_path}: no description"));
                }
                walk(child, &child_path, ours && !embedded, problems);
            }
        }
        if let Some(items) = obj.get("items") {
            walk(items, &format!("{path}[]"), ours, problems);
        }
        if let Some(values) = obj.get("additionalProperties").filter(|v| v.is_object()) {
            walk(values, &format!("{path}{{}}"), ours, problems);
        }
    }
    let schema = schema();
    let mut problems = Vec::new();
    for root in ["spec", "status"] {
        walk(
            &schema["properties"][root],
            &format!(".{root}"),
            true,
            &mut problems,
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn manifests() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["examples", "bench/queries"] {
        let entries = std::fs::read_dir(repo().join(dir))
            .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn shipped_manifests_validate_against_the_schema_and_its_rules() {
    let validator = jsonschema::validator_for(&strict_schema()).expect("the schema compiles");
    let files = manifests();
    assert!(files.len() >= 7, "{files:?}");
    for path in files {
        let yaml = std::fs::read_to_string(&path).expect("manifest readable");
        let value: Value = serde_yaml::from_str(&yaml).expect("manifest is YAML");
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        // The Rust validator agrees, and the CEL rules hold on the defaulted spec (the API
        // server applies the schema's defaults before it evaluates them).
        let job =
            rivulet_api::load_manifest(&yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let spec = serde_json::to_value(&job.spec).expect("spec serializes");
        StreamJobSpec::validate_cel(&spec, None)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    }
}

#[test]
fn a_typo_is_rejected_by_the_schema_too() {
    let validator = jsonschema::validator_for(&strict_schema()["properties"]["spec"])
        .expect("the schema compiles");
    let yaml = std::fs::read_to_string(repo().join("examples/clicks.yaml")).expect("example");
    let mut value: Value = serde_yaml::from_str(&yaml).expect("YAML");
    value["spec"]["pipeline"]["window"]["sise"] = json!("10s");
    let errors: Vec<String> = validator
        .iter_errors(&value["spec"])
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("/pipeline/window") && e.contains("sise")),
        "{errors:?}"
    );
}

/// A valid spec with every field the CEL rules read, as the API server would default it.
fn spec() -> Value {
    let yaml = std::fs::read_to_string(repo().join("examples/clicks.yaml")).expect("example");
    let job = rivulet_api::load_manifest(&yaml).expect("the example is valid");
    serde_json::to_value(&job.spec).expect("spec serializes")
}

/// The messages of the CEL rules `spec` breaks (empty when it passes).
fn broken(spec: &Value, old: Option<&Value>) -> Vec<String> {
    match StreamJobSpec::validate_cel(spec, old) {
        Ok(()) => Vec::new(),
        Err(errors) => {
            let text = format!("{errors:?}");
            assert!(!text.is_empty());
            vec![text]
        }
    }
}

#[test]
fn cel_parallelism_rules() {
    assert_eq!(broken(&spec(), None), Vec::<String>::new());

    let mut s = spec();
    s["parallelism"] = json!(0);
    assert_eq!(broken(&s, None), Vec::<String>::new(), "0 suspends the job");

    s["parallelism"] = json!(-1);
    let errors = broken(&s, None);
    assert!(
        errors.iter().any(|e| e.contains("must not be negative")),
        "{errors:?}"
    );

    let mut s = spec();
    s["parallelism"] = json!(129);
    let errors = broken(&s, None);
    assert!(
        errors.iter().any(|e| e.contains("at most maxParallelism")),
        "{errors:?}"
    );
    s["maxParallelism"] = json!(256);
    assert_eq!(broken(&s, None), Vec::<String>::new());
}

#[test]
fn cel_max_parallelism_is_immutable() {
    let old = spec();
    let mut new = spec();
    new["parallelism"] = json!(3);
    assert_eq!(
        broken(&new, Some(&old)),
        Vec::<String>::new(),
        "a rescale is fine"
    );
    new["maxParallelism"] = json!(256);
    assert_eq!(
        broken(&new, None),
        Vec::<String>::new(),
        "on creation any value"
    );
    let errors = broken(&new, Some(&old));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("maxParallelism is immutable")),
        "{errors:?}"
    );
}

#[test]
fn cel_format_and_time_rules() {
    let cases = [
        (
            "format",
            json!({"type": "csv"}),
            Some("type csv needs columns"),
        ),
        ("format", json!({"type": "csv", "columns": ["a"]}), None),
        (
            "format",
            json!({"type": "json", "columns": ["a"]}),
            Some("fields of type csv only"),
        ),
        ("format", json!({"type": "raw"}), None),
        (
            "time",
            json!({"type": "event"}),
            Some("type event needs field"),
        ),
        ("time", json!({"type": "event", "field": "ts"}), None),
        ("time", json!({"type": "processing"}), None),
        (
            "time",
            json!({"type": "processing", "idleTimeout": "5s"}),
            Some("type processing takes no other fields"),
        ),
    ];
    for (field, value, expected) in cases {
        let mut s = spec();
        s["pipeline"][field] = value.clone();
        let errors = broken(&s, None);
        match expected {
            None => assert_eq!(errors, Vec::<String>::new(), "{field}: {value}"),
            Some(message) => assert!(
                errors.iter().any(|e| e.contains(message)),
                "{field}: {value}: expected {message:?} in {errors:?}"
            ),
        }
    }
}

/// The CRD is a valid Kubernetes object, checked against Kubernetes' own OpenAPI schemas
/// (kubernetes-validate, installed by `make setup`).
#[test]
fn crd_validates_against_the_kubernetes_schemas() {
    let out = std::process::Command::new("python3")
        .args(["-m", "kubernetes_validate", "-k", "1.33.0", "--strict"])
        .arg(repo().join("crds/streamjob.yaml"))
        .output()
        .expect("python3 runs (make setup installs kubernetes-validate)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
