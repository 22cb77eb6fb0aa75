//! Every manifest in `examples/` runs the way its own comment block says: the test reads
//! the `rivulet run examples/<file> …` line from the file, runs exactly that command (with
//! `--duration` added, as if Ctrl-C had been pressed) in a fresh directory, and expects a
//! clean stop with a savepoint and window results printed. The S3 example runs against a
//! real S3 server (moto) with the credentials in the environment, as its comment says, and
//! its snapshots must land in the bucket. Each example has a broker and workers of its own,
//! so they run side by side. Each comment also tells how to apply the file on
//! a cluster. (The schema and CEL checks of every example are in `api/tests/crd.rs`.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use rivulet_tests::{bin_path, workspace_root, LocalBrokerGuard, Moto, ProcessBuilder};

/// How long each example runs before it is stopped.
const RUN_FOR: &str = "20s";

fn example(name: &str) -> PathBuf {
    workspace_root().join("examples").join(name)
}

/// The comment block at the top of an example (before `apiVersion`), without the `#`s.
fn comment(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim().to_string())
        .collect()
}

/// The arguments after `rivulet` of the comment's `rivulet run examples/<file>` line.
fn documented_run(name: &str) -> Vec<String> {
    let lines = comment(&example(name));
    let needle = format!("rivulet run examples/{name}");
    let line = lines
        .iter()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("examples/{name} says nowhere `{needle} …`: {lines:#?}"));
    let command = &line[line.find("rivulet run").expect("found above") + "rivulet".len()..];
    // Written inline as `rivulet run …`, the command ends at the closing backquote.
    command
        .split('`')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Runs `examples/<name>` as its comment says, for [`RUN_FOR`], with `env` added; returns
/// what `rivulet run` printed and the directory it ran in.
fn run_documented(name: &str, env: &[(String, String)]) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let _broker = LocalBrokerGuard(dir.path().to_path_buf());
    std::fs::create_dir(dir.path().join("examples")).expect("examples/");
    std::fs::copy(example(name), dir.path().join("examples").join(name)).expect("copy");
    let args = documented_run(name);
    let mut p = ProcessBuilder::new(bin_path("rivulet"))
        .label(name.trim_end_matches(".yaml"))
        .current_dir(dir.path())
        .args(&args)
        .args(["--duration", RUN_FOR])
        .envs(env.iter().cloned())
        .env("RIVULET_WORKER_BIN", bin_path("rivulet-worker"))
        .spawn()
        .expect("rivulet runs");
    let status = p
        .wait_exit(Duration::from_secs(150))
        .unwrap_or_else(|| panic!("`rivulet {}` did not stop:\n{}", args.join(" "), p.logs()));
    assert!(
        status.success(),
        "`rivulet {}` failed:\n{}",
        args.join(" "),
        p.logs()
    );
    let out = p.stdout();
    assert!(
        out.contains("stopped with savepoint #"),
        "`rivulet {}` did not stop with a savepoint:\n{}",
        args.join(" "),
        p.logs()
    );
    let results = out
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(") "))
        .count();
    assert!(
        results > 0,
        "`rivulet {}` printed no window results:\n{out}",
        args.join(" ")
    );
    (out, dir)
}

#[test]
fn every_example_says_how_to_run_it_locally_and_on_a_cluster() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(workspace_root().join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            names.push(
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    names.sort();
    // Each one is run below; a new example needs its test.
    assert_eq!(
        names,
        [
            "autoscaled.yaml",
            "clicks-v2.yaml",
            "clicks.yaml",
            "payments-fraud.yaml",
            "s3-checkpoints.yaml",
            "sessions.yaml",
        ]
    );
    for name in &names {
        let lines = comment(&example(name));
        assert!(
            lines.first().is_some_and(|l| l.len() > 20),
            "examples/{name} opens without saying what it computes"
        );
        documented_run(name);
        let apply = format!("kubectl apply -f examples/{name}");
        assert!(
            lines.iter().any(|l| l.contains(&apply)),
            "examples/{name} does not say `{apply}`"
        );
    }
}

#[test]
fn the_clicks_example_runs() {
    run_documented("clicks.yaml", &[]);
}

#[test]
fn the_upgraded_clicks_example_runs() {
    run_documented("clicks-v2.yaml", &[]);
}

#[test]
fn the_payments_example_runs_with_sliding_windows() {
    let (out, _dir) = run_documented("payments-fraud.yaml", &[]);
    assert!(out.contains("generating payments"), "{out}");
    assert!(out.contains("merchants="), "{out}");
}

#[test]
fn the_sessions_example_closes_sessions() {
    let (out, _dir) = run_documented("sessions.yaml", &[]);
    assert!(out.contains("entry=") && out.contains("exit="), "{out}");
}

#[test]
fn the_autoscaled_example_runs() {
    run_documented("autoscaled.yaml", &[]);
}

#[test]
fn the_s3_example_checkpoints_into_the_bucket() {
    let moto = Moto::start().expect("start moto");
    moto.create_bucket("rivulet-checkpoints").expect("bucket");
    run_documented("s3-checkpoints.yaml", &moto.s3_env());
    let objects = moto
        .list_objects("rivulet-checkpoints", "clicks-to-s3/")
        .expect("list");
    assert!(
        !objects.is_empty(),
        "no snapshots under s3://rivulet-checkpoints/clicks-to-s3/:\n{}",
        moto.logs()
    );
}
