//! The worker's command line: the flags (and their environment variables) that
//! [`rivulet_api::launch::WorkerLaunch`] writes.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use rivulet_api::launch::env;

/// The arguments of `rivulet-worker`.
#[derive(Parser, Debug)]
#[command(
    name = "rivulet-worker",
    version,
    about = "Runs one worker of a Rivulet StreamJob"
)]
pub struct WorkerArgs {
    /// StreamJob manifest (YAML).
    #[arg(long, env = env::JOB)]
    pub job: PathBuf,
    /// This worker's ordinal, 0-based.
    #[arg(long, env = env::WORKER_INDEX, default_value_t = 0)]
    pub index: u32,
    /// Number of workers (defaults to spec.parallelism).
    #[arg(long, env = env::PARALLELISM)]
    pub parallelism: Option<u32>,
    /// Local directory for RocksDB and snapshot staging.
    #[arg(long, env = env::DATA_DIR)]
    pub data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers, overriding the spec's.
    #[arg(long, env = env::BOOTSTRAP_SERVERS)]
    pub bootstrap_servers: Option<String>,
    /// Address of the HTTP server (/metrics, /status, /healthz, /readyz).
    #[arg(long, env = env::HTTP, default_value = "127.0.0.1:9249")]
    pub http: SocketAddr,
    /// Shuffle addresses (`host:port`) of every worker in ordinal order, comma-separated; or
    /// one pattern with `{i}` for the ordinal, e.g. `clicks-{i}.clicks:6123` (a
    /// StatefulSet's headless service). Required when the parallelism is above 1.
    #[arg(long, env = env::PEERS)]
    pub peers: Option<String>,
    /// Where this worker's shuffle listens (defaults to all interfaces, the port of its own
    /// entry in --peers).
    #[arg(long, env = env::SHUFFLE_LISTEN)]
    pub shuffle_listen: Option<SocketAddr>,
    /// Bearer token the control API (savepoints, on worker 0) requires.
    #[arg(long, env = env::CONTROL_TOKEN, hide_env_values = true)]
    pub control_token: Option<String>,
    /// Restore exactly this snapshot directory (even when the job has newer checkpoints),
    /// or `none` to start with no state. Absent: the newest checkpoint, or
    /// `spec.restoreFrom` when that is newer.
    #[arg(long, env = env::RESTORE)]
    pub restore: Option<String>,
    /// The deployment this worker belongs to: its checkpoints carry it, a restart continues
    /// from the deployment's own newest checkpoint rather than --restore, and after a
    /// stop-with-savepoint a restarted worker of it stays stopped.
    #[arg(long, env = env::DEPLOYMENT)]
    pub deployment: Option<u64>,
    /// Only validate the manifest and exit.
    #[arg(long)]
    pub validate: bool,
}

#[cfg(test)]
mod tests {
    use rivulet_api::launch::{Restore, WorkerLaunch, WORKER_BINARY};

    use super::*;

    fn parse(l: &WorkerLaunch) -> WorkerArgs {
        let mut argv = vec![std::ffi::OsString::from(WORKER_BINARY)];
        argv.extend(l.args());
        WorkerArgs::try_parse_from(argv).unwrap()
    }

    #[test]
    fn the_worker_reads_what_a_launch_writes() {
        let l = WorkerLaunch::new(
            "/jobs/clicks.yaml",
            1,
            3,
            "/data/clicks/1",
            "127.0.0.1:9301",
        )
        .with_peers(&["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"])
        .with_bootstrap("127.0.0.1:9092");
        let a = parse(&l);
        assert_eq!(a.job, PathBuf::from("/jobs/clicks.yaml"));
        assert_eq!((a.index, a.parallelism), (1, Some(3)));
        assert_eq!(a.data_dir, Some(PathBuf::from("/data/clicks/1")));
        assert_eq!(a.http, "127.0.0.1:9301".parse::<SocketAddr>().unwrap());
        assert_eq!(a.bootstrap_servers.as_deref(), Some("127.0.0.1:9092"));
        assert_eq!(
            a.peers.as_deref(),
            Some("127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002")
        );
        assert_eq!(a.shuffle_listen, None);
        assert!(!a.validate);

        let mut single = WorkerLaunch::new("j.yaml", 0, 1, "d", "127.0.0.1:1");
        single.shuffle_listen = Some("127.0.0.1:2".into());
        let a = parse(&single);
        assert_eq!((a.index, a.parallelism, a.peers), (0, Some(1), None));
        assert_eq!(a.shuffle_listen, Some("127.0.0.1:2".parse().unwrap()));
        assert_eq!(a.restore, None);

        for restore in [
            Restore::Snapshot("file:///s/default/j/savepoints/00000000000000000007".into()),
            Restore::Empty,
        ] {
            let l =
                WorkerLaunch::new("j.yaml", 0, 1, "d", "127.0.0.1:1").with_restore(restore.clone());
            let a = parse(&l);
            assert_eq!(a.restore.as_deref().map(Restore::parse), Some(restore));
            assert_eq!(a.deployment, None);
        }
        let a = parse(&WorkerLaunch::new("j.yaml", 0, 1, "d", "127.0.0.1:1").with_deployment(9));
        assert_eq!(a.deployment, Some(9));
    }
}
