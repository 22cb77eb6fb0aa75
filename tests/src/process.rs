//! Child processes of a test: spawned with stdout and stderr captured to files in their own
//! temporary directory, killed with their process group when dropped, and killed by the
//! kernel when the test binary dies (even by `kill -9`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{bin_path, keep_test_dirs};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Children are spawned from one thread that lives as long as the test binary, because
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits. Spawning from
/// the test's own thread (or a tokio blocking thread) would kill the child when that
/// thread ends, not when the test binary does.
fn spawn_on_long_lived_thread(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("rivulet-tests-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

/// How to start a [`WorkerProcess`]: a program, its arguments and environment.
///
/// The child inherits the test's environment plus what is added here, runs in its own
/// temporary directory ([`WorkerProcess::dir`]) unless [`ProcessBuilder::current_dir`]
/// says otherwise, gets `/dev/null` as stdin, and leads its own process group.
#[derive(Debug, Clone)]
pub struct ProcessBuilder {
    label: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    current_dir: Option<PathBuf>,
}

impl ProcessBuilder {
    /// A program by path, or by bare name looked up on `PATH`.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        let program = program.into();
        let label = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "process".into());
        Self {
            label,
            program,
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
        }
    }

    /// One of the workspace's binaries, found by [`bin_path`] (`rivulet-worker`, `rivulet`).
    pub fn bin(name: &str) -> Self {
        Self::new(bin_path(name)).label(name)
    }

    /// The name used in log printouts and in the temporary directory's name
    /// (e.g. `worker-1`). Defaults to the program's file name.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Run the child in this directory instead of its own temporary directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Starts the child. Fails with a hint when a workspace binary has not been built.
    pub fn spawn(self) -> anyhow::Result<WorkerProcess> {
        if self.program.components().count() > 1 && !self.program.exists() {
            bail!(
                "{} does not exist; build the workspace's binaries first \
                 (`make build`, or `cargo build --release --workspace`), \
                 or point RIVULET_BIN_DIR at them",
                self.program.display()
            );
        }
        let safe_label: String = self
            .label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = tempfile::Builder::new()
            .prefix(&format!("rivulet-{safe_label}-"))
            .tempdir()
            .context("create the process's temporary directory")?;
        let stdout_path = dir.path().join("stdout.log");
        let stderr_path = dir.path().join("stderr.log");
        let stdout = File::create(&stdout_path).context("create stdout.log")?;
        let stderr = File::create(&stderr_path).context("create stderr.log")?;

        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.current_dir.as_deref().unwrap_or(dir.path()))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe, and the closure allocates nothing.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = spawn_on_long_lived_thread(command)
            .with_context(|| format!("spawn {}", self.program.display()))?;
        Ok(WorkerProcess {
            label: self.label,
            child,
            dir: Some(dir),
            stdout_path,
            stderr_path,
            status: None,
        })
    }
}

/// A running (or exited) child process of the test, usually a `rivulet-worker` or the
/// `rivulet` CLI. Dropping it kills its whole process group with SIGKILL and reaps it.
#[derive(Debug)]
pub struct WorkerProcess {
    label: String,
    child: Child,
    dir: Option<tempfile::TempDir>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl WorkerProcess {
    /// The label given to [`ProcessBuilder::label`].
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's own temporary directory: its working directory by default, and where
    /// `stdout.log` and `stderr.log` are written.
    pub fn dir(&self) -> &Path {
        self.stdout_path.parent().expect("log file has a parent")
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// The exit status if the child has exited (reaping it), without waiting.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_exit_status().is_none()
    }

    /// `kill -9` the process itself (not its children) and reap it. Returns its exit
    /// status; if it had already exited, that earlier status.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit_status() {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for a killed child");
        self.status = Some(status);
        status
    }

    /// Sends SIGTERM (a graceful stop request) and returns at once; see [`Self::wait_exit`].
    pub fn sigterm(&mut self) -> anyhow::Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Sends a signal to the process itself. Fails if it has already exited.
    pub fn signal(&mut self, signal: i32) -> anyhow::Result<()> {
        if let Some(status) = self.try_exit_status() {
            bail!("{} already exited ({status})", self.label);
        }
        // SAFETY: plain syscall; the pid is our unreaped child, so it cannot be reused.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, signal) } != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("send signal {signal} to {}", self.label));
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        crate::wait_until(timeout, Duration::from_millis(20), || {
            self.try_exit_status().is_some()
        });
        self.status
    }

    /// Everything the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// stdout followed by stderr.
    pub fn logs(&self) -> String {
        let (out, err) = (self.stdout(), self.stderr());
        match (out.is_empty(), err.is_empty()) {
            (_, true) => out,
            (true, false) => err,
            (false, false) => format!("{out}\n--- stderr ---\n{err}"),
        }
    }

    /// The last `lines` lines of stdout and of stderr, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "--- {} stdout ({}) ---\n{}--- {} stderr ({}) ---\n{}",
            self.label,
            self.stdout_path.display(),
            tail(&self.stdout(), lines),
            self.label,
            self.stderr_path.display(),
            tail(&self.stderr(), lines),
        )
    }

    /// Waits until stdout or stderr contains `needle`. Fails early if the process exits
    /// without having written it, and on timeout; the error carries the log tail.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // Check exit first, then the logs: output written before exit is not missed.
            let exited = self.try_exit_status();
            if self.stdout().contains(needle) || self.stderr().contains(needle) {
                return Ok(());
            }
            if let Some(status) = exited {
                bail!(
                    "{} exited ({status}) without logging {needle:?}\n{}",
                    self.label,
                    self.log_tail(40)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not log {needle:?} within {timeout:?}\n{}",
                    self.label,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // The whole group first (the child leads it), so its own children die too. A
        // group id stays reserved while any member lives, so this cannot hit a stranger.
        // SAFETY: plain syscall.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("{}", self.log_tail(40));
        }
        if let Some(dir) = self.dir.take() {
            if panicking || keep_test_dirs() {
                let path = dir.keep();
                eprintln!("kept {}'s directory: {}", self.label, path.display());
            }
        }
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}
