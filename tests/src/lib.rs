//! End-to-end test harness for Rivulet: a real Kafka-protocol broker (tansu), a real
//! S3-compatible object store (moto's server), and real worker processes.
//!
//! Everything here is synchronous, so it works the same from a plain `#[test]` and from
//! `#[tokio::test]` (it blocks the calling thread; it never needs a runtime).
//!
//! - [`Tansu`]: one broker per test on a free loopback port, in-memory storage;
//!   [`Tansu::create_topic`] creates a topic and waits until metadata shows it.
//! - [`produce`], [`KafkaProducer`] (idempotent or transactional) and [`consume_all`]
//!   (manual assignment of every partition from the beginning; never asks the broker for
//!   the end offset, see tansu's deviations below).
//! - [`Moto`]: one S3 server per test; buckets and objects through a tiny HTTP client
//!   ([`http_request`]), and [`Moto::s3_env`] for a worker's environment.
//! - [`LocalBrokerGuard`]: stops the broker `rivulet run` started in a directory.
//! - [`WorkerProcess`]: a child process (a `rivulet-worker`, the `rivulet` CLI, or anything
//!   else) with stdout and stderr captured to files, `kill -9`, SIGTERM and exit waits.
//!   Every child dies with the test binary, even when it is killed, and is killed when
//!   its handle is dropped. When a test panics, the tail of each child's log is printed
//!   and its directory kept (set `RIVULET_KEEP_TEST_DIRS=1` to keep them always).
//!
//! Binaries are looked up by [`bin_path`]: `RIVULET_BIN_DIR` if set, else the directory
//! the running test binary was built into (`<target>/release/`), else
//! `$CARGO_TARGET_DIR/release/`. `cargo test -p rivulet-tests` alone does not build the
//! worker's binaries; `make test` builds them first (`cargo build --release --workspace`).
//!
//! tansu differs from Apache Kafka in three ways that tests must not depend on (a new
//! producer with the same `transactional.id` fences the old one without aborting its open
//! transaction; `transaction.timeout.ms` never aborts an abandoned transaction, which
//! blocks `read_committed` readers of that partition; ListOffsets(latest) is wrong).
//! Design for Apache Kafka's semantics and keep transactions short; build crash tests so
//! that these deviations cannot decide the outcome.

mod http;
mod kafka;
mod local;
mod moto;
mod process;
mod tansu;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use http::{http_request, HttpResponse};
pub use kafka::{
    committed_offset, consume_all, create_topic, produce, topic_partition_count, ConsumedRecord,
    DeliveryTracker, KafkaProducer, ProduceRecord,
};
pub use local::LocalBrokerGuard;
pub use moto::Moto;
pub use process::{ProcessBuilder, WorkerProcess};
pub use tansu::{tansu_bin, Tansu};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
///
/// Another process can take it before it is used; the service starters here retry on a
/// new port when the service fails to start.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Calls `condition` every `poll` until it returns true (then returns true) or `timeout`
/// has passed (then returns false). The condition is always checked at least once, and
/// once more at the deadline.
pub fn wait_until(timeout: Duration, poll: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(poll.min(deadline - now));
    }
}

/// The directory holding the workspace's release binaries (`rivulet-worker`, `rivulet`).
///
/// In order: `$RIVULET_BIN_DIR`; the parent of the running test binary's `deps/`
/// directory (an integration test runs as `<target>/release/deps/<test>-<hash>`);
/// `$CARGO_TARGET_DIR/release`; the workspace's `target/release`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RIVULET_BIN_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(deps) = exe.parent() {
            if deps.file_name().is_some_and(|n| n == "deps") {
                if let Some(dir) = deps.parent() {
                    return dir.to_path_buf();
                }
            }
        }
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("release");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release")
}

/// The path of one of the workspace's binaries, e.g. `bin_path("rivulet-worker")` or
/// `bin_path("rivulet")`. The file may not exist; [`ProcessBuilder::spawn`] says so clearly.
pub fn bin_path(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// The workspace's root directory (where `Cargo.toml` and `examples/` are).
pub fn workspace_root() -> PathBuf {
    // Cargo sets the variable when it runs a test too; the compile-time value is only the
    // fallback, since a build directory shared by several checkouts may hold a binary
    // compiled in another (possibly deleted) one.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let root = manifest_dir.join("..");
    root.canonicalize().unwrap_or(root)
}

/// Whether test directories (logs, child working directories) are kept after the test:
/// `RIVULET_KEEP_TEST_DIRS` set to anything but `0` or empty.
pub(crate) fn keep_test_dirs() -> bool {
    std::env::var("RIVULET_KEEP_TEST_DIRS").is_ok_and(|v| !v.is_empty() && v != "0")
}
