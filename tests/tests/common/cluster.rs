//! A job's workers as a test drives them: started with fixed arguments (index, parallelism,
//! peers, data directory), killed outside open transactions (at any moment or while a
//! checkpoint is in progress), restarted, waited on through their `/status`, and stopped.
//! Also where the tests' `file://` state keeps a job's checkpoints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rivulet_api::launch::WorkerLaunch;
use rivulet_api::manifest::{parse_snapshot_dir_name, snapshot_dir_name, MANIFEST_FILE};
use rivulet_tests::wait_until;
use serde_json::Value;

use super::{last_checkpoint, Worker};

/// Time for a (re)started worker to form the mesh with its peers, restore and run again.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// Time for the job to catch up with all the input.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(240);
/// Time for the final coordinated checkpoint and exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// The workers of one job, with the arguments each is (re)started with, and every earlier
/// incarnation kept for its logs.
pub struct Cluster {
    n: usize,
    job: PathBuf,
    bootstrap: String,
    root: PathBuf,
    /// Environment of each worker's processes.
    env: Vec<Vec<(String, String)>>,
    peers: String,
    pub workers: Vec<Worker>,
    /// How many times each worker was started.
    starts: Vec<usize>,
    /// Killed incarnations (their logs stay readable until the test ends).
    graveyard: Vec<Worker>,
}

impl Cluster {
    /// Starts `n` workers of `job`, each with its own data directory under `root`.
    pub fn start(n: usize, job: &Path, bootstrap: &str, root: &Path) -> Cluster {
        Self::start_with_env(n, job, bootstrap, root, &[])
    }

    /// Like [`Cluster::start`], with `env` set for every worker.
    pub fn start_with_env(
        n: usize,
        job: &Path,
        bootstrap: &str,
        root: &Path,
        env: &[(String, String)],
    ) -> Cluster {
        Self::start_with_envs(job, bootstrap, root, vec![env.to_vec(); n])
    }

    /// Like [`Cluster::start`], one worker for each of `envs`, worker `i` with `envs[i]`
    /// set.
    pub fn start_with_envs(
        job: &Path,
        bootstrap: &str,
        root: &Path,
        envs: Vec<Vec<(String, String)>>,
    ) -> Cluster {
        let n = envs.len();
        let peers = super::peers(n);
        let mut cluster = Cluster {
            n,
            job: job.to_path_buf(),
            bootstrap: bootstrap.to_string(),
            root: root.to_path_buf(),
            env: envs,
            peers,
            workers: Vec::new(),
            starts: vec![0; n],
            graveyard: Vec::new(),
        };
        for i in 0..cluster.n {
            std::fs::create_dir_all(cluster.data_dir(i)).unwrap();
            let w = cluster.spawn(i);
            cluster.workers.push(w);
        }
        cluster
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("worker-{i}"))
    }

    /// Starts worker `i` with the fixed arguments: same index, parallelism, peers and data
    /// directory every time (only the HTTP port changes).
    fn spawn(&mut self, i: usize) -> Worker {
        let incarnation = self.starts[i];
        self.starts[i] += 1;
        let mut launch =
            WorkerLaunch::new(&self.job, i as u32, self.n as u32, self.data_dir(i), "")
                .with_bootstrap(&self.bootstrap);
        launch.peers = Some(self.peers.clone());
        super::launch_worker(launch, &self.env[i], &format!("worker-{i}.{incarnation}"))
    }

    /// Starts worker `i` again (after it was killed).
    pub fn restart(&mut self, i: usize) {
        let w = self.spawn(i);
        let old = std::mem::replace(&mut self.workers[i], w);
        self.graveyard.push(old);
    }

    /// `kill -9` worker `i` outside an open transaction; it must have been running.
    pub fn kill(&mut self, i: usize) {
        let data_dir = self.data_dir(i);
        let killed = super::kill_outside_transaction(&mut self.workers[i], &data_dir);
        assert!(
            killed,
            "worker {i} died on its own ({:?}):\n{}",
            self.workers[i].process.try_exit_status(),
            self.tails()
        );
    }

    /// `kill -9` worker `i` outside an open transaction and while a checkpoint is in
    /// progress: some worker has uploaded its part of it and worker 0 has not written its
    /// manifest yet.
    pub fn kill_during_checkpoint(&mut self, i: usize, job: &str) {
        let data_dir = self.data_dir(i);
        let dir = checkpoints_dir(&self.root, job);
        let killed = super::kill_outside_transaction_when(
            &mut self.workers[i],
            &data_dir,
            " during a checkpoint",
            || checkpoint_in_progress(&dir),
        );
        assert!(killed, "worker {i} died on its own:\n{}", self.tails());
    }

    /// The log tails of the current incarnations, for assertion messages.
    pub fn tails(&self) -> String {
        super::tails(&self.workers)
    }

    /// Polls every worker's `/status` until `pred(index, status)` holds for all of them at
    /// once and returns those documents. Fails if a worker exits, or at `timeout`.
    pub fn wait_all(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(usize, &Value) -> bool,
    ) -> Vec<Value> {
        super::wait_statuses(&mut self.workers, "", what, timeout, |ss| {
            ss.iter().enumerate().all(|(i, s)| pred(i, s))
        })
    }

    /// Waits until every worker runs and worker 0 reports a globally complete checkpoint newer
    /// than `floor` and than any checkpoint a worker restored from: the mesh has formed again
    /// and the job makes progress. Returns that checkpoint's id.
    pub fn wait_healthy(&mut self, floor: u64) -> u64 {
        let restored_floor = |statuses: &[Value]| {
            statuses
                .iter()
                .filter_map(|s| s["restoredFrom"].as_u64())
                .max()
                .unwrap_or(0)
                .max(floor)
        };
        // Read the restore points first; a checkpoint past them all is a new one.
        let running = self.wait_all("running", RECOVERY_TIMEOUT, |_, s| s["phase"] == "running");
        let floor = restored_floor(&running);
        let statuses = self.wait_all(
            &format!("running past checkpoint {floor}"),
            RECOVERY_TIMEOUT,
            |i, s| s["phase"] == "running" && (i != 0 || last_checkpoint(s) > floor),
        );
        last_checkpoint(&statuses[0])
    }

    /// Worker 0's last complete checkpoint, 0 if unknown (e.g. it is down).
    pub fn checkpoint_now(&self) -> u64 {
        super::status(&self.workers[0].http)
            .map(|s| last_checkpoint(&s))
            .unwrap_or(0)
    }

    /// Waits until every worker's watermark has passed `end`.
    pub fn wait_watermarks_past(&mut self, end: i64) -> Vec<Value> {
        self.wait_all(
            &format!("every watermark past {end}"),
            CATCH_UP_TIMEOUT,
            |_, s| s["phase"] == "running" && s["watermarkMs"].as_i64().is_some_and(|w| w > end),
        )
    }

    /// Waits until worker 0 reports checkpoint `id` (or a later one) complete.
    pub fn wait_checkpoint(&mut self, id: u64) {
        self.wait_all(
            &format!("checkpoint {id} complete"),
            RECOVERY_TIMEOUT,
            |i, s| i != 0 || last_checkpoint(s) >= id,
        );
    }

    /// The value of metric `name` (all its series summed) on worker `i`.
    pub fn metric(&self, i: usize, name: &str) -> f64 {
        let http = &self.workers[i].http;
        let mut value = None;
        wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
            value = super::metric_sum(http, name);
            value.is_some()
        });
        value.unwrap_or_else(|| panic!("worker {i} exports no {name}:\n{}", self.tails()))
    }

    /// SIGTERM to every worker; each must take part in the final checkpoint and exit 0.
    pub fn stop_all(&mut self) {
        for w in &mut self.workers {
            // One SIGTERM stops the whole job, so a worker may already be on its way out.
            let _ = w.process.sigterm();
        }
        for i in 0..self.n {
            let exit = self.workers[i].process.wait_exit(STOP_TIMEOUT);
            assert!(
                exit.is_some_and(|s| s.success()),
                "worker {i} did not stop cleanly ({exit:?}):\n{}",
                self.tails()
            );
        }
    }
}

/// `<root>/snapshots/tests/<job>/checkpoints`: where the tests' `file://` state keeps a job's
/// checkpoints.
pub fn checkpoints_dir(root: &Path, job: &str) -> PathBuf {
    root.join("snapshots/tests").join(job).join("checkpoints")
}

/// The checkpoint directories under `dir`, oldest first.
pub fn checkpoint_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| parse_snapshot_dir_name(&e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids.into_iter()
        .map(|id| dir.join(snapshot_dir_name(id)))
        .collect()
}

/// The newest checkpoint of `job` with a manifest, parsed.
pub fn newest_manifest(root: &Path, job: &str) -> Option<Value> {
    let newest = checkpoint_dirs(&checkpoints_dir(root, job))
        .into_iter()
        .rev()
        .find(|d| d.join(MANIFEST_FILE).is_file())?;
    let text = std::fs::read_to_string(newest.join(MANIFEST_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether the newest checkpoint directory under `dir` has no manifest yet and was written to
/// less than a second ago (an aborted checkpoint's directory stays without a manifest; it
/// does not count once it is older than the checkpoint interval).
pub fn checkpoint_in_progress(dir: &Path) -> bool {
    let Some(newest) = checkpoint_dirs(dir).pop() else {
        return false;
    };
    !newest.join(MANIFEST_FILE).exists()
        && std::fs::metadata(&newest)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age < Duration::from_secs(1))
}
