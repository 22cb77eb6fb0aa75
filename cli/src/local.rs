//! The local runtime: a StreamJob's workers as processes on this machine, behind the
//! control plane's [`Runtime`] trait.
//!
//! It does what a StatefulSet and the kubelet do for the operator: starts a deployment's
//! workers (each with its ordinal, ports and data directory, through
//! [`WorkerLaunch`]), restarts a worker that crashes (with backoff; it restores its newest
//! checkpoint), reports readiness (`/readyz`), metrics (`/status`) and worker 0's savepoint
//! board, and stops workers (SIGTERM, then SIGKILL after a grace period). It also lists the
//! job's snapshots in storage and deletes savepoints. It decides nothing: the planner does.
//!
//! Workers are found the way a label selector finds pods: by scanning the machine's
//! processes for `rivulet-worker`s whose data directory lies under this job's, which names
//! the deployment and the ordinal (`<work>/data/<ns>/<job>/d<deployment>/<ordinal>`). A
//! `rivulet run` that was killed and started again therefore finds the workers it left
//! running, and never starts a second set beside them. Each deployment's launch (ports,
//! peers, the snapshot it restores) is recorded in the job's directory before any of its
//! workers starts, so a missing worker is started again exactly as it was.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rivulet_api::launch::{Restore, WORKER_BINARY};
use rivulet_api::status::{SavepointStatus, WorkerStatus, FINAL_STATUS_FILE};
use rivulet_api::{StreamJob, WorkerLaunch};
use rivulet_control::observed::{RateMeter, SavepointRequest, Snapshots, Workers};
use rivulet_control::{Action, Deploy, Observed, Runtime};
use rivulet_storage::{JobStore, SnapshotCatalog, StoreError};
use serde::{Deserialize, Serialize};

/// Restarts of one worker (without becoming ready in between) after which the workers are
/// reported as failing, with the reason the worker gave.
const CRASH_LOOP_RESTARTS: u32 = 2;
/// How long stopped workers get to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{0}")]
    WorkerBinary(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    #[error("{0}")]
    Record(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `rivulet-worker` binary: `$RIVULET_WORKER_BIN`, else next to this executable.
pub fn worker_binary() -> Result<PathBuf, LocalError> {
    if let Ok(p) = std::env::var("RIVULET_WORKER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| LocalError::WorkerBinary(e.to_string()))?;
    let dir = exe
        .parent()
        .ok_or_else(|| LocalError::WorkerBinary("executable has no directory".into()))?;
    for candidate in [dir.join(WORKER_BINARY), dir.join("..").join(WORKER_BINARY)] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(LocalError::WorkerBinary(format!(
        "rivulet-worker not found next to {} (build the workspace, or set RIVULET_WORKER_BIN)",
        exe.display()
    )))
}

/// How one deployment's workers are started: written before the first of them starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentRecord {
    deployment: u64,
    parallelism: u32,
    /// The manifest the workers read.
    manifest: PathBuf,
    /// Shuffle addresses, one per worker.
    peers: Vec<String>,
    /// HTTP addresses, one per worker.
    http: Vec<String>,
    /// What the workers restore at their first start (`--restore`).
    restore: Option<String>,
    /// Kafka bootstrap servers given to workers whose spec names none.
    #[serde(default)]
    bootstrap: Option<String>,
    started_ms: i64,
}

/// A worker process this runtime knows of.
struct Proc {
    pid: u32,
    /// Set when this process started it (so it can reap it).
    child: Option<Child>,
}

/// How a worker that is not running ended.
#[derive(Clone, Debug, PartialEq)]
enum Ended {
    /// Exited cleanly (after a stop-with-savepoint).
    Clean,
    /// Crashed, with why.
    Crashed(String),
}

/// One worker slot of the current deployment.
#[derive(Default)]
struct Slot {
    proc: Option<Proc>,
    ended: Option<Ended>,
    restarts: u32,
    next_start: Option<Instant>,
    /// Why it last crashed.
    last_failure: Option<String>,
    ready: bool,
    status: Option<WorkerStatus>,
    /// Records read per second, from `records_in`.
    meter: RateMeter,
    rate: f64,
}

/// The deployment whose workers exist.
struct Set {
    record: DeploymentRecord,
    slots: Vec<Slot>,
    /// Worker 0's newest savepoint request, as last read (its board lives as long as it).
    board: Option<SavepointStatus>,
}

/// Runs one job's workers as local processes.
pub struct LocalRuntime {
    namespace: String,
    name: String,
    /// The job's directory in the local job store (deployment records, token).
    job_dir: PathBuf,
    /// Where worker data directories live: `<work>/data/<ns>/<job>`.
    data_dir: PathBuf,
    log_dir: PathBuf,
    /// Kafka bootstrap servers for workers whose spec names none (the local broker).
    bootstrap: Option<String>,
    token: String,
    set: Option<Set>,
    http: ureq::Agent,
    /// The job's completed snapshots, as read so far.
    catalog: SnapshotCatalog,
    /// What happened since the last call, for the console.
    notes: Vec<String>,
}

impl LocalRuntime {
    /// The runtime of one job: `job_dir` is its directory in the local job store, `work_dir`
    /// the work directory (`.rivulet`).
    pub fn new(
        job: &StreamJob,
        job_dir: &Path,
        work_dir: &Path,
        bootstrap: Option<String>,
    ) -> Result<LocalRuntime, LocalError> {
        let namespace = job.job_namespace().to_string();
        let name = job.job_name().to_string();
        let data_dir = absolute(&work_dir.join("data").join(&namespace).join(&name))?;
        let log_dir = absolute(&work_dir.join("logs"))?;
        std::fs::create_dir_all(&log_dir).map_err(io(&log_dir))?;
        std::fs::create_dir_all(job_dir).map_err(io(job_dir))?;
        let token = control_token(job_dir)?;
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut rt = LocalRuntime {
            namespace,
            name,
            job_dir: job_dir.to_path_buf(),
            data_dir,
            log_dir,
            bootstrap,
            token,
            set: None,
            http,
            catalog: SnapshotCatalog::new(),
            notes: Vec::new(),
        };
        rt.adopt()?;
        Ok(rt)
    }

    /// What happened since the last call (workers started, crashed, restarted, stopped).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// The current workers' status documents, by ordinal (absent where unreachable).
    pub fn worker_statuses(&self) -> Vec<Option<WorkerStatus>> {
        self.set
            .as_ref()
            .map(|s| s.slots.iter().map(|w| w.status.clone()).collect())
            .unwrap_or_default()
    }

    /// The log file of one worker.
    pub fn log_file(&self, ordinal: u32) -> PathBuf {
        self.log_dir.join(format!("{}-{ordinal}.log", self.name))
    }

    fn record_path(&self, deployment: u64) -> PathBuf {
        self.job_dir
            .join("deployments")
            .join(format!("{deployment}.json"))
    }

    fn worker_dir(&self, deployment: u64, ordinal: u32) -> PathBuf {
        self.data_dir
            .join(format!("d{deployment}"))
            .join(ordinal.to_string())
    }

    fn read_record(&self, deployment: u64) -> Result<DeploymentRecord, LocalError> {
        let path = self.record_path(deployment);
        let data = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&data)
            .map_err(|e| LocalError::Record(format!("{}: {e}", path.display())))
    }

    /// Finds the workers a previous `rivulet run` left running.
    fn adopt(&mut self) -> Result<(), LocalError> {
        let found = self.scan();
        let Some(&deployment) = found.keys().max() else {
            return Ok(());
        };
        let record = match self.read_record(deployment) {
            Ok(r) => r,
            Err(e) => {
                // Workers without a record cannot be restarted as they were: stop them.
                self.notes.push(format!(
                    "stopping workers of deployment {deployment}, which have no launch record ({e})"
                ));
                self.kill_found(&found);
                return Ok(());
            }
        };
        let mut slots: Vec<Slot> = (0..record.parallelism).map(|_| Slot::default()).collect();
        if let Some(procs) = found.get(&deployment) {
            for &(ordinal, pid) in procs {
                if let Some(slot) = slots.get_mut(ordinal as usize) {
                    slot.proc = Some(Proc { pid, child: None });
                }
            }
        }
        // A worker that is gone ended cleanly (a stop-with-savepoint), crashed, or was never
        // started: its final status, written as it exited, tells which.
        for (ordinal, slot) in slots.iter_mut().enumerate() {
            if slot.proc.is_some() {
                continue;
            }
            match read_final_status(&self.worker_dir(deployment, ordinal as u32)) {
                Some(s) if s.phase == "stopped" => slot.ended = Some(Ended::Clean),
                Some(s) => {
                    let why = s.error.unwrap_or_else(|| "exited".into());
                    slot.restarts = 1;
                    slot.last_failure = Some(why.clone());
                    slot.ended = Some(Ended::Crashed(why));
                }
                None => {}
            }
        }
        let others: BTreeMap<u64, Vec<(u32, u32)>> = found
            .into_iter()
            .filter(|(d, _)| *d != deployment)
            .collect();
        if !others.is_empty() {
            self.notes
                .push("stopping workers of an older deployment".to_string());
            self.kill_found(&others);
        }
        let alive = slots.iter().filter(|s| s.proc.is_some()).count();
        self.notes.push(format!(
            "found {alive} running worker{} of deployment {deployment}",
            plural(alive)
        ));
        self.set = Some(Set {
            record,
            slots,
            board: None,
        });
        Ok(())
    }

    fn kill_found(&self, found: &BTreeMap<u64, Vec<(u32, u32)>>) {
        for procs in found.values() {
            for &(_, pid) in procs {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }

    /// This job's live worker processes: deployment → [(ordinal, pid)].
    fn scan(&self) -> BTreeMap<u64, Vec<(u32, u32)>> {
        let mut found: BTreeMap<u64, Vec<(u32, u32)>> = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if !alive(pid) {
                continue;
            }
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_worker = args.first().is_some_and(|a| {
                Path::new(std::ffi::OsStr::new(
                    &String::from_utf8_lossy(a).into_owned(),
                ))
                .file_name()
                .is_some_and(|f| f == WORKER_BINARY)
            });
            if !is_worker {
                continue;
            }
            let Some(dir) = args
                .windows(2)
                .find(|w| w[0] == b"--data-dir")
                .map(|w| PathBuf::from(String::from_utf8_lossy(w[1]).into_owned()))
            else {
                continue;
            };
            let Ok(rest) = dir.strip_prefix(&self.data_dir) else {
                continue;
            };
            let mut parts = rest.iter().filter_map(|p| p.to_str());
            let deployment = parts
                .next()
                .and_then(|d| d.strip_prefix('d'))
                .and_then(|d| d.parse::<u64>().ok());
            let ordinal = parts.next().and_then(|o| o.parse::<u32>().ok());
            if let (Some(d), Some(o)) = (deployment, ordinal) {
                found.entry(d).or_default().push((o, pid));
            }
        }
        found
    }

    fn launch(
        &self,
        record: &DeploymentRecord,
        ordinal: u32,
        restore: Option<Restore>,
    ) -> WorkerLaunch {
        let http = record
            .http
            .get(ordinal as usize)
            .cloned()
            .unwrap_or_default();
        let mut launch = WorkerLaunch::new(
            &record.manifest,
            ordinal,
            record.parallelism,
            self.worker_dir(record.deployment, ordinal),
            http,
        )
        .with_peers(&record.peers)
        .with_deployment(record.deployment)
        .with_control_token(self.token.clone());
        if let Some(b) = &record.bootstrap {
            launch = launch.with_bootstrap(b.clone());
        }
        match restore {
            Some(r) => launch.with_restore(r),
            None => launch,
        }
    }

    fn spawn(&self, launch: &WorkerLaunch) -> Result<Proc, LocalError> {
        let log_path = self.log_file(launch.index);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let err = log.try_clone().map_err(io(&log_path))?;
        let binary = worker_binary()?;
        let child = Command::new(&binary)
            .args(launch.args())
            .envs(launch.env())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            // Its own process group: a Ctrl-C at the terminal reaches `rivulet run`, which
            // stops the workers with a savepoint, not the workers themselves.
            .process_group(0)
            .spawn()
            .map_err(io(&binary))?;
        Ok(Proc {
            pid: child.id(),
            child: Some(child),
        })
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Option<T> {
        let mut resp = self
            .http
            .get(url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        let text = resp.body_mut().read_to_string().ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Reaps, restarts and polls the current deployment's workers.
    fn supervise(&mut self) {
        let Some(mut set) = self.set.take() else {
            return;
        };
        let record = set.record.clone();
        for (ordinal, slot) in set.slots.iter_mut().enumerate() {
            let ordinal = ordinal as u32;
            // Has it ended?
            if let Some(p) = slot.proc.as_mut() {
                // Some(exit code known: success) when it ended; adopted processes have no
                // exit code here, so their final status speaks for them.
                let exited: Option<Option<bool>> = match p.child.as_mut() {
                    Some(c) => match c.try_wait() {
                        Ok(Some(status)) => Some(Some(status.success())),
                        Ok(None) => None,
                        Err(_) => Some(Some(false)),
                    },
                    None => (!alive(p.pid)).then_some(None),
                };
                if let Some(success) = exited {
                    slot.proc = None;
                    let final_status =
                        read_final_status(&self.worker_dir(record.deployment, ordinal));
                    let clean = final_status.as_ref().is_some_and(|s| s.phase == "stopped")
                        && success.unwrap_or(true);
                    slot.ready = false;
                    if clean {
                        slot.ended = Some(Ended::Clean);
                        self.notes.push(format!("worker {ordinal} stopped"));
                    } else {
                        let why = final_status
                            .and_then(|s| s.error)
                            .or_else(|| last_line(&self.log_file(ordinal)))
                            .unwrap_or_else(|| "exited without a reason (killed?)".into());
                        slot.restarts += 1;
                        let backoff = Duration::from_millis(500 * u64::from(slot.restarts.min(20)));
                        slot.next_start = Some(Instant::now() + backoff);
                        slot.last_failure = Some(why.clone());
                        slot.ended = Some(Ended::Crashed(why.clone()));
                        self.notes.push(format!(
                            "worker {ordinal} failed: {why}; restarting in {:.1}s (log: {})",
                            backoff.as_secs_f64(),
                            self.log_file(ordinal).display()
                        ));
                        if ordinal == 0 {
                            set.board = None;
                        }
                    }
                }
            }
            // Start it if it should run and does not.
            let due = slot.next_start.is_none_or(|t| Instant::now() >= t);
            if slot.proc.is_none() && slot.ended != Some(Ended::Clean) && due {
                // What the deployment was started from: a restarted worker continues from
                // its deployment's own newest checkpoint instead, once it has one.
                let restore = record.restore.as_deref().map(Restore::parse);
                let launch = self.launch(&record, ordinal, restore);
                match self.spawn(&launch) {
                    Ok(p) => {
                        slot.proc = Some(p);
                        slot.next_start = None;
                        if slot.ended.take().is_some() {
                            self.notes.push(format!("worker {ordinal} restarted"));
                        }
                    }
                    Err(e) => {
                        slot.last_failure = Some(e.to_string());
                        slot.restarts += 1;
                        slot.next_start = Some(Instant::now() + Duration::from_secs(2));
                    }
                }
            }
            // Poll the running ones.
            if slot.proc.is_some() {
                let base = format!("http://{}", record.http[ordinal as usize]);
                slot.ready = self
                    .http
                    .get(&format!("{base}/readyz"))
                    .call()
                    .is_ok_and(|r| r.status() == 200);
                if slot.ready {
                    slot.restarts = 0;
                    slot.last_failure = None;
                }
                slot.status = self.get_json::<WorkerStatus>(&format!("{base}/status"));
                if let Some(s) = &slot.status {
                    slot.rate = slot.meter.update(s.records_in, now_ms());
                }
            } else {
                slot.status = None;
            }
        }
        if set.slots.first().is_some_and(|s| s.proc.is_some()) {
            let base = format!("http://{}", record.http[0]);
            if let Some(all) = self.get_json::<Vec<SavepointStatus>>(&format!("{base}/savepoints"))
            {
                set.board = all.into_iter().max_by_key(|s| s.id);
            }
        }
        self.set = Some(set);
    }

    async fn snapshots(&mut self, job: &StreamJob) -> Result<Snapshots, LocalError> {
        let store = JobStore::open(&job.spec.state.storage, &self.namespace, &self.name)?;
        Ok(self.catalog.observe(&store).await?)
    }

    fn workers(&self) -> Option<Workers> {
        let set = self.set.as_ref()?;
        let count = set.slots.len() as u32;
        let ready = set.slots.iter().filter(|s| s.ready).count() as u32;
        let stopped = set.slots.iter().all(|s| s.ended == Some(Ended::Clean));
        let failure = set.slots.iter().enumerate().find_map(|(i, s)| {
            (!s.ready && s.restarts >= CRASH_LOOP_RESTARTS)
                .then(|| s.last_failure.clone())
                .flatten()
                .map(|why| format!("worker {i} keeps failing: {why}"))
        });
        let mut workers = Workers {
            deployment: set.record.deployment,
            count,
            ready,
            stopped,
            failure,
            records_per_second: set.slots.iter().map(|s| s.rate).sum(),
            ..Workers::default()
        };
        workers.read_statuses(set.slots.iter().filter_map(|s| s.status.as_ref()));
        Some(workers)
    }

    fn deploy(&mut self, d: &Deploy) -> Result<(), LocalError> {
        if let Some(set) = &self.set {
            if set.record.deployment == d.deployment {
                return Ok(());
            }
            // The planner stops a deployment before starting the next; never two at once.
            self.notes.push(format!(
                "stopping deployment {} before starting {}",
                set.record.deployment, d.deployment
            ));
            self.stop_workers();
        }
        let record = match self.read_record(d.deployment) {
            // Recorded by an earlier run that was stopped before starting every worker.
            Ok(r) if r.parallelism == d.parallelism => r,
            _ => {
                let manifest = self
                    .job_dir
                    .join("deployments")
                    .join(format!("{}.yaml", d.deployment));
                let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
                let job = StreamJob {
                    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: rivulet_api::StreamJobSpec {
                        parallelism: d.parallelism,
                        ..d.spec.clone()
                    },
                    status: None,
                };
                let yaml = serde_yaml::to_string(&job)
                    .map_err(|e| LocalError::Record(format!("the deployment's manifest: {e}")))?;
                write_atomic(&manifest, yaml.as_bytes())?;
                let ports = |n: u32| -> Result<Vec<String>, LocalError> {
                    (0..n)
                        .map(|_| {
                            crate::broker::free_port()
                                .map(|p| format!("127.0.0.1:{p}"))
                                .map_err(|e| LocalError::Record(format!("a free port: {e:#}")))
                        })
                        .collect()
                };
                let restore = if d.empty_state {
                    Some(Restore::Empty.arg())
                } else {
                    d.restore_from
                        .as_ref()
                        .map(|p| Restore::Snapshot(p.clone()).arg())
                };
                let r = DeploymentRecord {
                    deployment: d.deployment,
                    parallelism: d.parallelism,
                    manifest,
                    peers: ports(d.parallelism)?,
                    http: ports(d.parallelism)?,
                    restore,
                    bootstrap: self.bootstrap.clone(),
                    started_ms: now_ms(),
                };
                let data =
                    serde_json::to_vec_pretty(&r).map_err(|e| LocalError::Record(e.to_string()))?;
                write_atomic(&self.record_path(d.deployment), &data)?;
                r
            }
        };
        let n = record.parallelism;
        self.notes.push(format!(
            "starting {n} worker{} of deployment {}{}",
            plural(n as usize),
            record.deployment,
            match &record.restore {
                Some(r) if r == Restore::EMPTY => ", with no state".to_string(),
                Some(r) => format!(", restoring {r}"),
                None => String::new(),
            }
        ));
        self.set = Some(Set {
            slots: (0..n).map(|_| Slot::default()).collect(),
            record,
            board: None,
        });
        // The workers start on the next observation (supervision starts missing ones).
        self.supervise();
        Ok(())
    }

    /// SIGTERM to every worker of the job (each takes a final checkpoint), SIGKILL after
    /// the grace period; stragglers of any deployment are killed.
    fn stop_workers(&mut self) {
        if let Some(mut set) = self.set.take() {
            let live: Vec<&mut Proc> = set
                .slots
                .iter_mut()
                .filter_map(|s| s.proc.as_mut())
                .collect();
            if !live.is_empty() {
                self.notes.push(format!(
                    "stopping {} worker{} of deployment {}",
                    live.len(),
                    plural(live.len()),
                    set.record.deployment
                ));
            }
            for p in &live {
                let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
            }
            let deadline = Instant::now() + STOP_GRACE;
            for p in live {
                while alive_proc(p) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if alive_proc(p) {
                    let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
                    while alive_proc(p) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
        let found = self.scan();
        self.kill_found(&found);
    }

    async fn delete_savepoint(&mut self, path: &str) -> Result<(), LocalError> {
        let id = self.catalog.delete(path, &Default::default()).await?;
        self.notes.push(format!("deleted savepoint {id}"));
        Ok(())
    }

    fn request_savepoint(&mut self, stop: bool) {
        let Some(set) = &self.set else {
            return;
        };
        let url = format!("http://{}/savepoints", set.record.http[0]);
        let body = serde_json::json!({ "stop": stop }).to_string();
        match self
            .http
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(body)
        {
            Ok(mut r) if r.status() == 202 => {
                if let Ok(s) = r
                    .body_mut()
                    .read_to_string()
                    .map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap_or_default())
                {
                    self.notes.push(format!(
                        "asked worker 0 for {} (request {})",
                        if stop {
                            "a stop-with-savepoint"
                        } else {
                            "a savepoint"
                        },
                        s["id"]
                    ));
                }
            }
            Ok(r) => self.notes.push(format!(
                "worker 0 refused the savepoint request: HTTP {}",
                r.status()
            )),
            Err(e) => self
                .notes
                .push(format!("worker 0 did not take the savepoint request: {e}")),
        }
    }

    /// Removes what this runtime keeps for a job that is deleted.
    fn finalize(&mut self) -> Result<(), LocalError> {
        self.stop_workers();
        match std::fs::remove_dir_all(&self.data_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&self.data_dir)(e)),
        }
    }
}

impl Runtime for LocalRuntime {
    type Error = LocalError;

    async fn observe(&mut self, job: &StreamJob, now_ms: i64) -> Result<Observed, LocalError> {
        let (generation, deleting) = rivulet_control::runtime::metadata_of(job);
        let snapshots = self.snapshots(job).await?;
        self.supervise();
        let savepoint_request = self
            .set
            .as_ref()
            .and_then(|s| s.board.as_ref())
            .and_then(|b| SavepointRequest::newest_on_board(std::slice::from_ref(b)));
        Ok(Observed {
            now_ms,
            generation,
            deleting,
            workers: self.workers(),
            snapshots,
            savepoint_request,
        })
    }

    async fn act(&mut self, _job: &StreamJob, action: &Action) -> Result<(), LocalError> {
        match action {
            Action::Deploy(d) => self.deploy(d),
            Action::RequestSavepoint { stop } => {
                self.request_savepoint(*stop);
                Ok(())
            }
            Action::StopWorkers => {
                self.stop_workers();
                Ok(())
            }
            Action::DeleteSavepoint { path, .. } => self.delete_savepoint(path).await,
            Action::Finalize => self.finalize(),
        }
    }
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        // Workers outlive `rivulet run` (as pods outlive their operator); reap what exited.
        if let Some(set) = self.set.as_mut() {
            for s in &mut set.slots {
                if let Some(c) = s.proc.as_mut().and_then(|p| p.child.as_mut()) {
                    let _ = c.try_wait();
                }
            }
        }
    }
}

/// The last line a worker logged: why it exited when it could not say so otherwise.
fn last_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

fn read_final_status(dir: &Path) -> Option<WorkerStatus> {
    let text = std::fs::read_to_string(dir.join(FINAL_STATUS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// A process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn alive_proc(p: &mut Proc) -> bool {
    match p.child.as_mut() {
        Some(c) => matches!(c.try_wait(), Ok(None)),
        None => alive(p.pid),
    }
}

fn absolute(p: &Path) -> Result<PathBuf, LocalError> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(io(p))?;
    Ok(cwd.join(p))
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), LocalError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The job's control-API token: made once, readable by its owner only.
fn control_token(job_dir: &Path) -> Result<String, LocalError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = job_dir.join("control-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let token: String = {
        use rand::Rng as _;
        let mut rng = rand::rng();
        (0..32)
            .map(|_| format!("{:x}", rng.random_range(0..16u8)))
            .collect()
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(&path))?;
    std::io::Write::write_all(&mut f, token.as_bytes()).map_err(io(&path))?;
    Ok(token)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The directory `rivulet run` keeps its broker, logs and local data in.
pub fn default_work_dir() -> PathBuf {
    Path::new(".rivulet").to_path_buf()
}
