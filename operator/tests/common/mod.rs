//! What the operator crate's tests share: checking objects against the Kubernetes schemas.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `kubernetes-validate -k 1.32.0 --strict` over `objects`; panics with its output
/// when one is invalid.
pub fn validate_against_kubernetes(dir: &Path, objects: &[Value]) {
    let mut files = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        let path = dir.join(format!(
            "{i:02}-{}.yaml",
            o["kind"].as_str().unwrap_or("object")
        ));
        std::fs::write(&path, serde_yaml::to_string(o).unwrap()).unwrap();
        files.push(path);
    }
    let out = Command::new("kubernetes-validate")
        .args(["-k", "1.32.0", "--strict"])
        .args(&files)
        .output()
        .expect("kubernetes-validate is installed (make setup installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    // It reports every file it checked as passed.
    assert_eq!(
        text.matches(" passed for resource ").count(),
        files.len(),
        "{text}"
    );
}
