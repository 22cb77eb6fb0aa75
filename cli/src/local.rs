//! The local runtime: runs a StreamJob's workers as processes on this machine.
//!
//! Used by `rivulet run`. It writes the manifest where the workers read it, starts each
//! worker with its ordinal, a free HTTP port and a data directory, restarts a worker that
//! exits with an error (with backoff; the worker restores from its last checkpoint), and on
//! stop sends SIGTERM so each worker takes a final checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rivulet_api::launch::WORKER_BINARY;
use rivulet_api::{StreamJob, WorkerLaunch};

/// The `rivulet-worker` binary: `$RIVULET_WORKER_BIN`, else next to this executable.
pub fn worker_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("RIVULET_WORKER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable has no directory")?;
    for candidate in [dir.join(WORKER_BINARY), dir.join("..").join(WORKER_BINARY)] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "rivulet-worker not found next to {} (build the workspace, or set RIVULET_WORKER_BIN)",
        exe.display()
    )
}

/// One supervised worker process.
pub struct WorkerProc {
    pub index: u32,
    pub http: String,
    pub log: PathBuf,
    /// The worker's data directory (holds `final-status.json` after it exits).
    pub data_dir: PathBuf,
    launch: WorkerLaunch,
    child: Option<Child>,
    pub restarts: u32,
    next_start: Option<Instant>,
}

impl WorkerProc {
    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(worker_binary()?)
            .args(self.launch.args())
            .envs(self.launch.env())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting rivulet-worker")?;
        self.child = Some(child);
        Ok(())
    }

    fn signal(&self, sig: Signal) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), sig);
        }
    }
}

/// A job's workers on this machine.
pub struct LocalJob {
    pub workers: Vec<WorkerProc>,
}

/// How to run a job locally.
pub struct LocalOptions {
    pub manifest_path: PathBuf,
    pub manifest: StreamJob,
    pub bootstrap: String,
    pub work_dir: PathBuf,
}

impl LocalJob {
    /// Starts every worker of the job.
    pub fn start(opts: &LocalOptions) -> Result<LocalJob> {
        let m = &opts.manifest;
        let n = m.spec.parallelism;
        // The workers' shuffle addresses: fixed for the job's life, so a restarted worker
        // is found where it was.
        let peers = (0..n)
            .map(|_| crate::broker::free_port().map(|p| format!("127.0.0.1:{p}")))
            .collect::<Result<Vec<_>>>()?
            .join(",");
        let job_dir = opts
            .work_dir
            .join("data")
            .join(m.job_namespace())
            .join(m.job_name());
        let log_dir = opts.work_dir.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let manifest_path = std::fs::canonicalize(&opts.manifest_path)?;
        let mut workers = Vec::new();
        for i in 0..n {
            let port = crate::broker::free_port()?;
            let http = format!("127.0.0.1:{port}");
            let data_dir = job_dir.join(i.to_string());
            let launch = WorkerLaunch {
                peers: Some(peers.clone()),
                ..WorkerLaunch::new(&manifest_path, i, n, &data_dir, &http)
            }
            .with_bootstrap(&opts.bootstrap);
            let mut w = WorkerProc {
                index: i,
                data_dir,
                http,
                log: log_dir.join(format!("{}-{i}.log", m.job_name())),
                launch,
                child: None,
                restarts: 0,
                next_start: None,
            };
            w.spawn()?;
            workers.push(w);
        }
        Ok(LocalJob { workers })
    }

    /// Restarts workers that exited with an error; returns messages about what happened.
    pub fn supervise(&mut self) -> Vec<String> {
        let mut events = Vec::new();
        for w in &mut self.workers {
            if let Some(at) = w.next_start {
                if Instant::now() >= at {
                    w.next_start = None;
                    match w.spawn() {
                        Ok(()) => events.push(format!("worker {} restarted", w.index)),
                        Err(e) => {
                            events.push(format!("worker {} failed to restart: {e:#}", w.index))
                        }
                    }
                }
                continue;
            }
            let Some(child) = w.child.as_mut() else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                w.child = None;
                w.restarts += 1;
                let backoff = Duration::from_millis(500 * u64::from(w.restarts.min(10)));
                w.next_start = Some(Instant::now() + backoff);
                events.push(format!(
                    "worker {} exited ({}); restarting in {:.1}s — see {}",
                    w.index,
                    describe(status),
                    backoff.as_secs_f64(),
                    w.log.display()
                ));
            }
        }
        events
    }

    /// Sends SIGTERM to every worker and waits up to `timeout` for them to exit.
    pub fn stop(&mut self, timeout: Duration) -> Vec<(u32, Option<ExitStatus>)> {
        for w in &self.workers {
            w.signal(Signal::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        for w in &mut self.workers {
            let Some(child) = w.child.as_mut() else {
                out.push((w.index, None));
                continue;
            };
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {
                        let _ = child.kill();
                        break child.wait().ok();
                    }
                }
            };
            w.child = None;
            out.push((w.index, status));
        }
        out
    }
}

impl Drop for LocalJob {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(c) = w.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown".into(),
    }
}

impl WorkerProc {
    /// The status the worker wrote when it last exited.
    pub fn final_status(&self) -> Option<rivulet_api::status::WorkerStatus> {
        let text =
            std::fs::read_to_string(self.data_dir.join(rivulet_api::status::FINAL_STATUS_FILE))
                .ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The directory `rivulet run` keeps its broker, logs and local data in.
pub fn default_work_dir() -> PathBuf {
    Path::new(".rivulet").to_path_buf()
}
