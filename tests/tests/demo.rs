//! The README's demo, end to end: `rivulet run examples/clicks.yaml --generator clicks`
//! starts a local broker, prints window results, stops with a savepoint (as Ctrl-C does),
//! and the next run resumes from that savepoint and says so.

use std::time::Duration;

use rivulet_tests::{bin_path, workspace_root, LocalBrokerGuard, ProcessBuilder};

/// The snapshot number printed right after `prefix`.
fn snapshot_after(out: &str, prefix: &str) -> u64 {
    let rest = &out[out
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{out}"))
        + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?}"))
}

#[test]
fn demo_prints_results_and_resumes_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let _broker = LocalBrokerGuard(dir.path().to_path_buf());
    let job = dir.path().join("clicks.yaml");
    std::fs::copy(workspace_root().join("examples/clicks.yaml"), &job).unwrap();
    let run = |label: &str| {
        let mut p = ProcessBuilder::new(bin_path("rivulet"))
            .label(label)
            .current_dir(dir.path())
            .args([
                "run",
                "clicks.yaml",
                "--generator",
                "clicks",
                "--rate",
                "300",
                "--duration",
                "20s",
            ])
            .env("RIVULET_WORKER_BIN", bin_path("rivulet-worker"))
            .spawn()
            .unwrap();
        let status = p
            .wait_exit(Duration::from_secs(120))
            .expect("rivulet run ends");
        assert!(status.success(), "{}", p.logs());
        p.stdout()
    };
    let first = run("demo-1");
    assert!(first.contains("started a local broker"), "{first}");
    assert!(first.contains("starting from no state"), "{first}");
    let results: Vec<&str> = first
        .lines()
        .filter(|l| l.starts_with('[') && l.contains("clicks="))
        .collect();
    assert!(
        !results.is_empty(),
        "no window results were printed:\n{first}"
    );
    assert!(first.contains("stopped with savepoint #"), "{first}");

    let stopped_at = snapshot_after(&first, "stopped with savepoint #");

    let second = run("demo-2");
    assert!(second.contains("using the local broker"), "{second}");
    // It resumes from exactly the savepoint the first run said it stopped with.
    assert_eq!(
        snapshot_after(&second, "was stopped with savepoint #"),
        stopped_at,
        "{second}"
    );
    assert_eq!(
        snapshot_after(&second, "restored from snapshot #"),
        stopped_at,
        "{second}"
    );
    assert!(
        second
            .lines()
            .any(|l| l.starts_with('[') && l.contains("clicks=")),
        "{second}"
    );

    let stop = ProcessBuilder::new(bin_path("rivulet"))
        .current_dir(dir.path())
        .args(["broker", "stop"])
        .spawn()
        .unwrap()
        .wait_exit(Duration::from_secs(20));
    assert!(stop.is_some_and(|s| s.success()));
}
