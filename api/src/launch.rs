//! How a worker is started: the one place that turns "worker `i` of job `j`" into the
//! `rivulet-worker` command line and environment.
//!
//! `rivulet run`, the benchmarks and the end-to-end tests build a [`WorkerLaunch`] and start
//! the process from [`WorkerLaunch::args`] and [`WorkerLaunch::env`]; the worker's own
//! argument parser reads exactly these flags (a test in the worker feeds them through it).
//! Secrets never go on the command line: the control-API token travels in the environment.

use std::ffi::OsString;
use std::path::PathBuf;

/// The worker binary's name.
pub const WORKER_BINARY: &str = "rivulet-worker";

/// Environment variables the worker reads, each the counterpart of a flag.
pub mod env {
    pub const JOB: &str = "RIVULET_JOB";
    pub const WORKER_INDEX: &str = "RIVULET_WORKER_INDEX";
    pub const PARALLELISM: &str = "RIVULET_PARALLELISM";
    pub const DATA_DIR: &str = "RIVULET_DATA_DIR";
    pub const BOOTSTRAP_SERVERS: &str = "RIVULET_BOOTSTRAP_SERVERS";
    pub const HTTP: &str = "RIVULET_HTTP";
    pub const PEERS: &str = "RIVULET_PEERS";
    pub const SHUFFLE_LISTEN: &str = "RIVULET_SHUFFLE_LISTEN";
    /// The bearer token the control API requires (never a flag: flags show in `ps`).
    pub const CONTROL_TOKEN: &str = "RIVULET_CONTROL_TOKEN";
    pub const RESTORE: &str = "RIVULET_RESTORE";
    pub const DEPLOYMENT: &str = "RIVULET_DEPLOYMENT";
}

/// What a worker restores, when the control plane decides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restore {
    /// Exactly this snapshot directory (a savepoint or checkpoint URL), even when the job
    /// has newer checkpoints: a rollback, or an upgrade from its savepoint.
    Snapshot(String),
    /// No state: sources start at `startFrom` (a `stateless` upgrade).
    Empty,
}

impl Restore {
    /// The value of `--restore`.
    pub fn arg(&self) -> String {
        match self {
            Restore::Snapshot(url) => url.clone(),
            Restore::Empty => Restore::EMPTY.to_string(),
        }
    }

    /// Reads a `--restore` value.
    pub fn parse(value: &str) -> Restore {
        if value == Restore::EMPTY {
            Restore::Empty
        } else {
            Restore::Snapshot(value.to_string())
        }
    }

    /// The `--restore` value for empty state.
    pub const EMPTY: &'static str = "none";
}

/// Everything that makes one worker of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerLaunch {
    /// The StreamJob manifest file the worker reads.
    pub job: PathBuf,
    /// This worker's ordinal, `0..parallelism`.
    pub index: u32,
    pub parallelism: u32,
    /// Every worker's shuffle address (`host:port`) in ordinal order, or one pattern with
    /// `{i}` for the ordinal (`job-{i}.job:6123`). Left out of the command line for a single
    /// worker.
    pub peers: Option<String>,
    /// The worker's own directory for RocksDB, snapshot staging and its final status.
    pub data_dir: PathBuf,
    /// Where its HTTP server (`/status`, `/metrics`, control API) listens, `host:port`.
    pub http: String,
    /// Kafka bootstrap servers overriding the spec's.
    pub bootstrap_servers: Option<String>,
    /// Where its shuffle listens, when not at its own `peers` entry's port on all
    /// interfaces.
    pub shuffle_listen: Option<String>,
    /// The control-API token.
    pub control_token: Option<String>,
    /// What to restore; absent: the job's newest checkpoint, or `spec.restoreFrom` when
    /// that is newer.
    pub restore: Option<Restore>,
    /// The deployment the worker belongs to. Its checkpoints carry it, so a restarted
    /// worker continues from its deployment's own newest checkpoint instead of `restore`;
    /// and once the job is stopped with a savepoint, a restarted worker of the same
    /// deployment stays stopped.
    pub deployment: Option<u64>,
}

impl WorkerLaunch {
    /// Worker `index` of a job of `parallelism` workers reading `job`, with its data in
    /// `data_dir` and its HTTP server on `http`; no peers, broker override or token.
    pub fn new(
        job: impl Into<PathBuf>,
        index: u32,
        parallelism: u32,
        data_dir: impl Into<PathBuf>,
        http: impl Into<String>,
    ) -> WorkerLaunch {
        WorkerLaunch {
            job: job.into(),
            index,
            parallelism,
            peers: None,
            data_dir: data_dir.into(),
            http: http.into(),
            bootstrap_servers: None,
            shuffle_listen: None,
            control_token: None,
            restore: None,
            deployment: None,
        }
    }

    /// As part of deployment `id`.
    pub fn with_deployment(mut self, id: u64) -> WorkerLaunch {
        self.deployment = Some(id);
        self
    }

    /// Restoring exactly `restore`.
    pub fn with_restore(mut self, restore: Restore) -> WorkerLaunch {
        self.restore = Some(restore);
        self
    }

    /// With every worker's shuffle address (`host:port`), in ordinal order.
    pub fn with_peers<S: AsRef<str>>(mut self, peers: &[S]) -> WorkerLaunch {
        let list: Vec<&str> = peers.iter().map(AsRef::as_ref).collect();
        self.peers = Some(list.join(","));
        self
    }

    /// With Kafka bootstrap servers overriding the spec's.
    pub fn with_bootstrap(mut self, bootstrap: impl Into<String>) -> WorkerLaunch {
        self.bootstrap_servers = Some(bootstrap.into());
        self
    }

    /// With the control-API token.
    pub fn with_control_token(mut self, token: impl Into<String>) -> WorkerLaunch {
        self.control_token = Some(token.into());
        self
    }

    /// Every setting as `(flag, environment variable, value)`, in command-line order: the
    /// one table both [`WorkerLaunch::args`] and [`WorkerLaunch::settings_env`] read.
    fn settings(&self) -> Vec<(&'static str, &'static str, String)> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let mut s = vec![
            ("--job", env::JOB, path(&self.job)),
            ("--index", env::WORKER_INDEX, self.index.to_string()),
            (
                "--parallelism",
                env::PARALLELISM,
                self.parallelism.to_string(),
            ),
            ("--http", env::HTTP, self.http.clone()),
            ("--data-dir", env::DATA_DIR, path(&self.data_dir)),
        ];
        if let Some(b) = &self.bootstrap_servers {
            s.push(("--bootstrap-servers", env::BOOTSTRAP_SERVERS, b.clone()));
        }
        if let Some(p) = self.peers.as_ref().filter(|_| self.parallelism > 1) {
            s.push(("--peers", env::PEERS, p.clone()));
        }
        if let Some(l) = &self.shuffle_listen {
            s.push(("--shuffle-listen", env::SHUFFLE_LISTEN, l.clone()));
        }
        if let Some(r) = &self.restore {
            s.push(("--restore", env::RESTORE, r.arg()));
        }
        if let Some(d) = self.deployment {
            s.push(("--deployment", env::DEPLOYMENT, d.to_string()));
        }
        s
    }

    /// The command line after the binary.
    pub fn args(&self) -> Vec<OsString> {
        self.settings()
            .into_iter()
            .flat_map(|(flag, _, value)| [OsString::from(flag), OsString::from(value)])
            .collect()
    }

    /// The same settings as environment variables, leaving out the worker index: what every
    /// pod of a StatefulSet shares (each pod's index comes from its own pod-index label).
    /// Secrets are not among them.
    pub fn settings_env(&self) -> Vec<(&'static str, String)> {
        self.settings()
            .into_iter()
            .filter(|(_, name, _)| *name != env::WORKER_INDEX)
            .map(|(_, name, value)| (name, value))
            .collect()
    }

    /// The environment to add to the worker's (the secrets).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.control_token
            .iter()
            .map(|t| (env::CONTROL_TOKEN, t.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn one_worker_has_no_peers_on_its_command_line() {
        let l = WorkerLaunch::new("/j/job.yaml", 0, 1, "/d/0", "127.0.0.1:9000")
            .with_peers(&["127.0.0.1:7000"])
            .with_bootstrap("b:9092");
        assert_eq!(
            strings(&l.args()),
            [
                "--job",
                "/j/job.yaml",
                "--index",
                "0",
                "--parallelism",
                "1",
                "--http",
                "127.0.0.1:9000",
                "--data-dir",
                "/d/0",
                "--bootstrap-servers",
                "b:9092"
            ]
        );
        assert!(l.env().is_empty());
    }

    #[test]
    fn workers_of_a_parallel_job_get_every_peer_and_the_token_in_the_environment() {
        let l = WorkerLaunch::new("job.yaml", 2, 3, "d", "h:1")
            .with_peers(&["a:1", "b:2", "c:3"])
            .with_control_token("s3cret");
        let args = strings(&l.args());
        assert!(args.ends_with(&["--peers".to_string(), "a:1,b:2,c:3".to_string()]));
        assert!(!args.iter().any(|a| a.contains("s3cret")));
        assert_eq!(l.env(), [(env::CONTROL_TOKEN, "s3cret".to_string())]);
    }

    #[test]
    fn settings_as_environment_are_the_flags_without_the_index() {
        let l = WorkerLaunch::new(
            "/etc/rivulet/job.yaml",
            0,
            2,
            "/var/lib/rivulet",
            "0.0.0.0:8080",
        )
        .with_peers(&["j-{i}.j.ns.svc:6123"])
        .with_restore(Restore::Empty)
        .with_deployment(7)
        .with_control_token("s3cret");
        let settings = l.settings_env();
        let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            env,
            [
                (env::JOB, "/etc/rivulet/job.yaml"),
                (env::PARALLELISM, "2"),
                (env::HTTP, "0.0.0.0:8080"),
                (env::DATA_DIR, "/var/lib/rivulet"),
                (env::PEERS, "j-{i}.j.ns.svc:6123"),
                (env::RESTORE, "none"),
                (env::DEPLOYMENT, "7"),
            ]
        );
        // Every flag but --index has its variable, with the same value.
        let args = strings(&l.args());
        let flags: Vec<&str> = args.iter().step_by(2).map(String::as_str).collect();
        assert_eq!(flags.len(), env.len() + 1);
        assert!(flags.contains(&"--index"));
    }
}
