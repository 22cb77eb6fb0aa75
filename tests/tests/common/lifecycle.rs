//! Driving `rivulet` as a user does: `rivulet run` in the background (the control plane),
//! and `apply`, `scale`, `savepoint`, `suspend`, `resume`, `delete` and `get -o json` from
//! "another terminal", all in one work directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rivulet_tests::{bin_path, ProcessBuilder, WorkerProcess};
use serde_json::Value;

use super::{Agg, Input, WindowTruth};

/// The job the lifecycle tests run.
pub const NAME: &str = "life";
pub const NS: &str = "tests";

/// One work directory with a test broker.
pub struct Local {
    pub dir: PathBuf,
    pub bootstrap: String,
    pub name: String,
    pub namespace: String,
    runs: usize,
}

/// What a `rivulet` command did.
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Local {
    pub fn new(dir: &Path, bootstrap: &str, namespace: &str, name: &str) -> Local {
        Local {
            dir: dir.to_path_buf(),
            bootstrap: bootstrap.to_string(),
            name: name.to_string(),
            namespace: namespace.to_string(),
            runs: 0,
        }
    }

    /// Runs `rivulet ARGS` to completion.
    pub fn rivulet(&self, args: &[&str]) -> Output {
        let out = std::process::Command::new(bin_path("rivulet"))
            .current_dir(&self.dir)
            .args(args)
            .args(["-n", &self.namespace])
            .env("RIVULET_WORKER_BIN", bin_path("rivulet-worker"))
            .output()
            .expect("rivulet runs");
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `rivulet ARGS` and expects success.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.rivulet(args);
        assert_eq!(
            o.code,
            Some(0),
            "rivulet {args:?} failed:\n{}\n{}",
            o.stdout,
            o.stderr
        );
        o.stdout
    }

    /// Starts `rivulet run FILE` (the job's control plane) with extra environment.
    pub fn run(&mut self, file: &str, env: &[(&str, &str)]) -> WorkerProcess {
        self.runs += 1;
        ProcessBuilder::new(bin_path("rivulet"))
            .label(format!("rivulet-run-{}", self.runs))
            .current_dir(&self.dir)
            .args([
                "run",
                file,
                "--quiet",
                "--bootstrap-servers",
                &self.bootstrap,
            ])
            .env("RIVULET_WORKER_BIN", bin_path("rivulet-worker"))
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .spawn()
            .expect("rivulet run starts")
    }

    /// The job as `rivulet get NAME -o json` shows it (Null once it is gone).
    pub fn job(&self) -> Value {
        let o = self.rivulet(&["get", &self.name, "-o", "json"]);
        if o.code != Some(0) {
            return Value::Null;
        }
        serde_json::from_str(&o.stdout).unwrap_or(Value::Null)
    }

    /// Polls the job until `pred` holds; panics with `describe` and the run's logs at
    /// `timeout`.
    pub fn wait(
        &self,
        run: &mut WorkerProcess,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let j = self.job();
            if pred(&j) {
                return j;
            }
            if Instant::now() > deadline || !run.is_running() {
                let describe = self.rivulet(&["describe", &self.name]);
                panic!(
                    "{} while waiting until {what}\n--- describe:\n{}{}\n--- rivulet run:\n{}\n--- worker logs:\n{}",
                    if run.is_running() { "timed out" } else { "rivulet run exited" },
                    describe.stdout,
                    describe.stderr,
                    run.log_tail(60),
                    self.worker_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The tails of the workers' logs.
    pub fn worker_logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.join(".rivulet/logs")) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!("== {}\n", e.path().display()));
                for l in &lines[lines.len().saturating_sub(15)..] {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Live `rivulet-worker` processes of this work directory.
    pub fn worker_pids(&self) -> Vec<u32> {
        let data = self.dir.join(".rivulet/data");
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            if stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            {
                continue;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let text = String::from_utf8_lossy(&cmdline);
            if text.contains("rivulet-worker") && text.contains(&*data.to_string_lossy()) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Kills every worker of this work directory (cleanup after a failed test).
    pub fn kill_workers(&self) {
        for pid in self.worker_pids() {
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        self.kill_workers();
    }
}

/// `status.phase`.
pub fn phase(j: &Value) -> &str {
    j["status"]["phase"].as_str().unwrap_or("")
}

/// Running with nothing in progress, `n` workers ready of deployment `after` or later.
pub fn running_with(j: &Value, n: u64, after: u64) -> bool {
    phase(j) == "Running"
        && j["status"]["operation"].is_null()
        && j["status"]["parallelism"].as_u64() == Some(n)
        && deployment(j) > after
        && j["status"]["observedGeneration"] == j["metadata"]["generation"]
}

/// `status.deployment.id` (0 before the first).
pub fn deployment(j: &Value) -> u64 {
    j["status"]["deployment"]["id"].as_u64().unwrap_or(0)
}

/// Savepoints in status, with what triggered each.
pub fn savepoints(j: &Value) -> Vec<(u64, String, String)> {
    j["status"]["savepoints"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["id"].as_u64().unwrap_or(0),
                        s["trigger"].as_str().unwrap_or("").to_string(),
                        s["path"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The records the job's last checkpoint (in status) had read, over every partition.
pub fn checkpointed_records(root: &Path, j: &Value) -> i64 {
    let Some(id) = j["status"]["lastCheckpoint"]["id"].as_u64() else {
        return 0;
    };
    let dir = root
        .join("snapshots")
        .join(NS)
        .join(NAME)
        .join("checkpoints")
        .join(rivulet_api::manifest::snapshot_dir_name(id));
    if !dir.join("manifest.json").exists() {
        return 0;
    }
    snapshot_records(&dir.to_string_lossy())
}

/// The source offsets a snapshot directory's manifest records, summed.
pub fn snapshot_records(path: &str) -> i64 {
    let dir = path.strip_prefix("file://").unwrap_or(path);
    let text = std::fs::read_to_string(Path::new(dir).join("manifest.json"))
        .unwrap_or_else(|e| panic!("{dir}/manifest.json: {e}"));
    let m: Value = serde_json::from_str(&text).expect("manifest json");
    m["sourceOffsets"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["offset"].as_i64()).sum())
        .unwrap_or(0)
}

/// The manifest: `parallelism` workers, `upgrade_mode`, and optionally a filter dropping
/// records whose amount is -10; `bound` is the out-of-orderness bound.
pub fn manifest(
    root: &Path,
    parallelism: u32,
    upgrade_mode: &str,
    filter: bool,
    bound: &str,
) -> String {
    let mut pipeline = super::windows_to_exactly_once_sink().replace(
        "maxOutOfOrderness: 1s",
        &format!("maxOutOfOrderness: {bound}"),
    );
    if filter {
        pipeline = pipeline.replace(
            "key: [key]",
            "filter:\n  - {field: amount, op: ne, value: -10}\nkey: [key]",
        );
    }
    let state = format!(
        "backend: heap\ncheckpointInterval: 1s\nstorage: file://{}\n",
        root.join("snapshots").display()
    );
    super::manifest_with_parallelism(NAME, &pipeline, &state, parallelism).replace(
        "spec:\n",
        &format!(
            "spec:\n  upgradeMode: {upgrade_mode}\n  readinessTimeout: 2m\n  savepoints:\n    onDeletion: true\n    timeout: 1m\n"
        ),
    )
}

/// A test broker with the topics the job uses, `partitions` each.
pub fn broker(partitions: i32) -> rivulet_tests::Tansu {
    let broker = rivulet_tests::Tansu::start().expect("start tansu");
    for topic in ["events", "results", "dead"] {
        broker
            .create_topic(topic, partitions)
            .expect("create topic");
    }
    broker
}

/// Reads the results `read_committed` and checks them against `want`; no dead letters.
pub fn assert_results(bootstrap: &str, want: &WindowTruth, context: &str) {
    let out = rivulet_tests::consume_all(
        bootstrap,
        "results",
        true,
        want.len(),
        Duration::from_secs(3),
        Duration::from_secs(180),
    )
    .expect("read the results");
    super::assert_windows(&out, "key", want, context);
    super::assert_no_dead_letters(bootstrap, "dead", context);
}

/// The true results: every event, except that from event `filtered_from` on the ones with
/// amount -10 are dropped (the filter the upgrade adds).
pub fn truth(input: &Input, filtered_from: usize) -> WindowTruth {
    let mut t: BTreeMap<(String, i64), Agg> = BTreeMap::new();
    for i in 0..input.events {
        let (_, key, ts, amount) = input.event(i);
        if i >= filtered_from && amount == -10 {
            continue;
        }
        let start = ts.div_euclid(input.window_ms) * input.window_ms;
        t.entry((key, start)).or_insert_with(Agg::empty).add(amount);
    }
    t.into_iter()
        .map(|((k, start), agg)| ((k, start), (start + input.window_ms, agg)))
        .collect()
}
