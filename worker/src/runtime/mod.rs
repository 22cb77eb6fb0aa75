//! The worker's processing loop: restore, form the shuffle with the other workers, then
//! poll → route → window → emit, with aligned checkpoints coordinated by worker 0.
//!
//! One thread does everything that touches records, so a worker is a small event loop:
//! it polls its Kafka partitions (`p mod n == index`) when nothing holds it back, routes
//! keyed records to the owners of their key groups (its own in process, the others over the
//! shuffle), and hands the window operator what its peers send. A full shuffle queue (no
//! credit) stops the polling: that time is backpressure.
//!
//! Failures: when a peer's connection breaks or a peer reconnects, every worker drops its
//! attempt and restores from the last complete checkpoint; the mesh forms again only among
//! workers restored from the same one.
//!
//! This module owns the loop and the record path through it; the rest of a worker's life is
//! in its submodules:
//! - [`start`]: restoring an attempt (state, sinks, source) from the last snapshot;
//! - [`snapshot`]: aligned barriers, taking and uploading this worker's part, committing;
//! - [`upload`]: uploading a snapshot part (and retention) while processing goes on;
//! - [`commit`]: the exactly-once sink's commits, on their own thread;
//! - [`control`]: control messages between workers and worker 0's coordinator decisions;
//! - [`event_time`]: what waits in each source partition, watermark alignment, and the
//!   source offsets a snapshot keeps;
//! - [`status`]: the status document and the busy and backpressure ratios;
//! - [`fault`]: faults injected by tests.

mod commit;
mod control;
mod event_time;
mod fault;
mod snapshot;
mod start;
mod status;
mod upload;

pub use fault::Fault;
use snapshot::Alignment;
pub use start::pipeline_fingerprint;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rivulet_api::manifest::SnapshotKind;
use rivulet_api::status::FINAL_STATUS_FILE;
use rivulet_api::StreamJob;

use crate::checkpoint::{self, CheckpointError, SnapshotWriter};
use crate::coordinator::{Control, Coordinator, Request};
use crate::kafka::sink::{KafkaSink, SinkError};
use crate::kafka::source::{KafkaSource, SourceError};
use crate::metrics::{CheckpointInfo, Metrics, SharedStatus, Status};
use crate::output::{Destination, OutRecord};
use crate::record::SourceRecord;
use crate::savepoints::SavepointBoard;
use crate::shuffle::codec::{self, Frame};
use crate::shuffle::net::{Event, Identity, Mesh, MeshError, ShuffleListener};
use crate::stage::keyed::KeyedStage;
use crate::stage::route::Router;
use crate::stage::{Item, Output};
use crate::state::StateError;
use crate::window::WindowError;

const MAX_BATCH: usize = 4096;
/// Items per shuffle data frame.
const FRAME_ITEMS: usize = 1024;
const STATUS_EVERY: Duration = Duration::from_millis(500);
/// How often watermark alignment is decided at most (and at every report of the source).
const ALIGN_EVERY: Duration = Duration::from_millis(20);
/// Records handed to an at-least-once sink at a time.
const EMIT_SLICE: usize = 256;
/// How long worker 0 keeps answering after a stop with a savepoint, unless a caller has
/// already read that it completed.
const STOP_LINGER: Duration = Duration::from_secs(3);
/// How long a checkpoint may take before the coordinator aborts it (at least).
const MIN_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(30);
/// Stop snapshots tried before a stop gives up.
const STOP_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Store(#[from] checkpoint::StoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error(transparent)]
    Mesh(#[from] MeshError),
    #[error("{0}")]
    Config(String),
    #[error("local directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How one worker runs.
pub struct WorkerOptions {
    pub manifest: StreamJob,
    pub index: u32,
    pub parallelism: u32,
    /// Every worker's shuffle address (`host:port`), by ordinal; empty for one worker.
    pub peers: Vec<String>,
    /// Where this worker's shuffle listens (defaults to its own entry of `peers`).
    pub shuffle_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// Overrides the source's (and, when it names none, the sink's) bootstrap servers.
    pub bootstrap: Option<String>,
    pub http: SocketAddr,
    /// Bearer token the control API requires (`None`: open).
    pub control_token: Option<String>,
    /// What the control plane chose to restore (`None`: the newest checkpoint, or
    /// `spec.restoreFrom` when newer).
    pub restore: Option<rivulet_api::launch::Restore>,
    /// The deployment this worker belongs to (see [`rivulet_api::launch::WorkerLaunch`]).
    pub deployment: Option<u64>,
    pub fault: Option<Fault>,
}

/// The wall clock in epoch milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn fresh_dir(path: &Path) -> Result<(), RuntimeError> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(io(path))?;
    }
    std::fs::create_dir_all(path).map_err(io(path))
}

/// Sink output of one epoch (exactly-once) with each record's triggering time.
#[derive(Default)]
struct Epoch {
    records: Vec<OutRecord>,
    triggers: Vec<i64>,
}

impl Outcome {
    /// Restart as the next attempt.
    fn restart(why: String) -> Outcome {
        Outcome::Restart { why, attempt: None }
    }
}

/// How an attempt ended.
enum Outcome {
    /// Stopped on request after a final snapshot.
    Stopped,
    /// A peer failed or restarted: restore from the last complete checkpoint, as attempt
    /// `attempt` (a later one than this, to join peers ahead) or else the next one.
    Restart { why: String, attempt: Option<u64> },
}

/// One attempt of the running worker.
pub struct Worker {
    opts: Arc<WorkerOptions>,
    rt: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    status: Arc<SharedStatus>,
    router: Router,
    stage: KeyedStage,
    source: KafkaSource,
    sink: Arc<KafkaSink>,
    /// Exactly-once only: commits completed epochs while processing goes on.
    committer: Option<commit::Committer>,
    writer: SnapshotWriter,
    /// Worker 0 only.
    coordinator: Option<Coordinator>,
    restored_id: u64,
    routes: Vec<Vec<Item>>,
    out: Output,
    epoch: Epoch,
    /// The bytes of the epoch output in the last snapshot, reused by the next one.
    output_buf: bytes::BytesMut,
    /// Output of a snapshot acknowledged and not yet complete: (id, output).
    acked: Option<(u64, Epoch)>,
    align: Option<Alignment>,
    /// This worker's part of a snapshot, uploading.
    upload: Option<upload::Upload>,
    /// Worker 0: the deletion of old checkpoints, running.
    retention: Option<tokio::task::JoinHandle<()>>,
    /// The highest snapshot id this worker has started, so a late trigger is ignored.
    started_id: u64,
    /// A stop snapshot was acknowledged: no more polling, exit at its completion.
    stopping: bool,
    stop_failures: u32,
    /// Peers that said goodbye: their closing connections are no failure.
    gone: Vec<bool>,
    last_checkpoint: Option<CheckpointInfo>,
    backend_name: &'static str,
    busy: Duration,
    blocked: Duration,
    /// When the status was last published, and since when busy/blocked time is counted.
    last_status: Instant,
    window_start: Instant,
    phase: &'static str,
    /// Savepoint requests (worker 0): the board, those waiting for their trigger, the one
    /// in flight (snapshot id, request), and a stop-with-savepoint to retry.
    board: Arc<SavepointBoard>,
    sp_waiting: VecDeque<(u64, bool)>,
    sp_in_flight: Option<(u64, u64, bool)>,
    sp_retry: Option<u64>,
    /// The source report last handed to the watermark tracker, and when alignment was last
    /// decided.
    source_reports: u64,
    last_align: Instant,
    /// When this attempt started and how many records its source returned (for the
    /// `slow-source` fault).
    started: Instant,
    source_read: u64,
}

impl Worker {
    /// Runs this attempt until a stop completes or a peer fails.
    fn run(
        &mut self,
        shutdown: &AtomicBool,
        listener: Option<&ShuffleListener>,
        attempt: u64,
    ) -> Result<Outcome, RuntimeError> {
        let mut mesh = match listener {
            Some(l) => {
                let me = Identity {
                    job: format!(
                        "{}/{}",
                        self.opts.manifest.job_namespace(),
                        self.opts.manifest.job_name()
                    ),
                    index: self.opts.index,
                    parallelism: self.opts.parallelism,
                    restored: self.restored_id,
                    attempt,
                };
                match Mesh::form(me, &self.opts.peers, l, shutdown) {
                    Ok(m) => Some(m),
                    Err(MeshError::Restart { reason, attempt }) => {
                        return Ok(Outcome::Restart {
                            why: reason,
                            attempt: Some(attempt),
                        })
                    }
                    Err(MeshError::Shutdown) => return Ok(Outcome::Stopped),
                    Err(e) => return Ok(Outcome::restart(e.to_string())),
                }
            }
            None => None,
        };
        self.status.update(|s| s.phase = "running".into());
        self.status.set_ready(true);
        let parallel = mesh.is_some();
        let poll_timeout = if parallel {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(100)
        };
        let mut batch: Vec<SourceRecord> = Vec::with_capacity(MAX_BATCH);
        self.last_status = Instant::now();
        self.window_start = Instant::now();
        self.phase = "running";
        let mut stop_requested = false;
        loop {
            if shutdown.load(Ordering::Relaxed) && !stop_requested {
                stop_requested = true;
                tracing::info!("stop requested: taking a final checkpoint");
                self.status.update(|s| s.phase = "stopping".into());
                self.send_control(mesh.as_mut(), 0, Control::StopRequest)?;
            }
            // Savepoint requests from the control API, then the coordinator's schedule.
            if let Some(co) = self.coordinator.as_mut() {
                for (req, stop) in self.board.take_queued() {
                    co.request(Request {
                        kind: SnapshotKind::Savepoint,
                        stop,
                    });
                    self.sp_waiting.push_back((req, stop));
                }
            }
            let action = self.coordinator.as_mut().and_then(|c| c.tick(now_ms()));
            if let Some(action) = action {
                if let Some(o) = self.coordinate(mesh.as_mut(), action)? {
                    return Ok(o);
                }
            }
            // What the peers sent.
            if let Some(m) = mesh.as_mut() {
                if let (Some(l), true) = (listener, !self.stopping) {
                    if let Some(MeshError::Restart { reason, attempt }) = m.newcomer(l) {
                        return Ok(Outcome::Restart {
                            why: reason,
                            attempt: Some(attempt),
                        });
                    }
                }
                let mut handled = 0;
                while handled < 64 {
                    let Some(ev) = m.next_event(Duration::ZERO) else {
                        break;
                    };
                    handled += 1;
                    if let Some(o) = self.on_event(m, ev)? {
                        return Ok(o);
                    }
                }
            }
            if let Some(c) = &self.committer {
                c.check()?;
            }
            if let Some(o) = self.poll_upload(mesh.as_mut(), false)? {
                return Ok(o);
            }
            // The source, when nothing holds it back.
            self.tend_source(now_ms())?;
            let backlog = mesh.as_ref().map_or(0, |m| m.backlog());
            let budget = self.source_budget();
            if self.align.is_none() && !self.stopping && backlog == 0 && budget > 0 {
                batch.clear();
                self.source.poll_batch(budget, poll_timeout, &mut batch)?;
                self.source_read += batch.len() as u64;
                let t0 = Instant::now();
                self.metrics.records_in.inc_by(batch.len() as u64);
                self.route(mesh.as_mut(), &batch)?;
                if let Some(Fault::SlowProcessing { per_second }) = self.opts.fault {
                    let cost =
                        Duration::from_secs_f64(batch.len() as f64 / per_second.max(1) as f64);
                    if let Some(rest) = cost.checked_sub(t0.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
                self.busy += t0.elapsed();
            } else if let Some(m) = mesh.as_mut() {
                // Blocked: on credit (backpressure), on alignment, or stopping.
                let t0 = Instant::now();
                if let Some(ev) = m.next_event(Duration::from_millis(20)) {
                    if let Some(o) = self.on_event(m, ev)? {
                        return Ok(o);
                    }
                }
                if backlog > 0 {
                    self.blocked += t0.elapsed();
                }
            } else {
                std::thread::sleep(Duration::from_millis(5));
            }
            if let Some(m) = mesh.as_mut() {
                m.pump();
            }
            if stop_requested {
                self.phase = "stopping";
            }
            self.tick_status();
        }
    }

    /// How many records the next poll may return: [`MAX_BATCH`], or fewer under the
    /// `slow-source` fault (0 while it is ahead of its rate) and `slow-processing`.
    fn source_budget(&self) -> usize {
        match self.opts.fault {
            Some(Fault::SlowSource { per_second }) => {
                let allowed = (self.started.elapsed().as_secs_f64() * per_second as f64) as u64;
                allowed
                    .saturating_sub(self.source_read)
                    .min(MAX_BATCH as u64) as usize
            }
            // Batches of about 50 ms of work, so the loop stays responsive.
            Some(Fault::SlowProcessing { per_second }) => {
                (per_second / 20).clamp(1, MAX_BATCH as u64) as usize
            }
            _ => MAX_BATCH,
        }
    }

    /// Routes one polled batch: own key groups to the operator in process, the others to
    /// their owners; then emits what came out.
    fn route(
        &mut self,
        mesh: Option<&mut Mesh>,
        batch: &[SourceRecord],
    ) -> Result<(), RuntimeError> {
        let now = now_ms();
        self.router
            .route(batch, now, &mut self.routes, &mut self.out);
        let me = self.opts.index as usize;
        let mut local = std::mem::take(&mut self.routes[me]);
        self.stage
            .deliver(me, local.drain(..), batch, now, &mut self.out)?;
        self.routes[me] = local;
        if let Some(m) = mesh {
            for j in 0..self.routes.len() {
                if j == me || self.routes[j].is_empty() {
                    continue;
                }
                let items = &self.routes[j];
                let records = items
                    .iter()
                    .filter(|i| matches!(i, Item::Record(..)))
                    .count();
                self.metrics.shuffle_records_out.inc_by(records as u64);
                for chunk in items.chunks(FRAME_ITEMS) {
                    let frame = codec::encode_data(chunk);
                    self.metrics.shuffle_bytes_out.inc_by(frame.len() as u64);
                    m.send(j as u32, frame, true);
                }
                self.routes[j].clear();
            }
        }
        self.emit()
    }

    /// Handles one event from the shuffle.
    fn on_event(&mut self, mesh: &mut Mesh, ev: Event) -> Result<Option<Outcome>, RuntimeError> {
        match ev {
            Event::Credit { peer, frames } => mesh.add_credits(peer, frames),
            Event::Lost { peer, reason } => {
                if !self.gone.get(peer as usize).copied().unwrap_or(false) {
                    return Ok(Some(Outcome::restart(format!(
                        "lost worker {peer}: {reason}"
                    ))));
                }
            }
            Event::Frame { from, frame, bytes } => match frame {
                Frame::Data(items) => {
                    self.metrics.shuffle_bytes_in.inc_by(bytes as u64);
                    let records = items
                        .iter()
                        .filter(|i| matches!(i, Item::Record(..)))
                        .count();
                    self.metrics.shuffle_records_in.inc_by(records as u64);
                    if let Some(a) = self.align.as_mut() {
                        if a.barriers[from as usize] {
                            a.blocked[from as usize].push_back(items);
                            return Ok(None);
                        }
                    }
                    self.deliver_remote(mesh, from, items)?;
                }
                Frame::Barrier {
                    id,
                    savepoint,
                    stop,
                } => {
                    let kind = if savepoint {
                        SnapshotKind::Savepoint
                    } else {
                        SnapshotKind::Checkpoint
                    };
                    if let Some(o) = self.on_barrier(Some(mesh), from as usize, id, kind, stop)? {
                        return Ok(Some(o));
                    }
                }
                Frame::Control(json) => match serde_json::from_slice::<Control>(&json) {
                    Ok(c) => return self.on_control(Some(mesh), c),
                    Err(e) => tracing::warn!(from, error = %e, "unreadable control message"),
                },
                Frame::Bye => {
                    if let Some(g) = self.gone.get_mut(from as usize) {
                        *g = true;
                    }
                }
                Frame::Hello(_) | Frame::Credit(_) => {}
            },
        }
        Ok(None)
    }

    fn deliver_remote(
        &mut self,
        mesh: &mut Mesh,
        from: u32,
        items: Vec<Item>,
    ) -> Result<(), RuntimeError> {
        let t0 = Instant::now();
        self.stage
            .deliver(from as usize, items, &[], now_ms(), &mut self.out)?;
        self.busy += t0.elapsed();
        if let Err(e) = mesh.consumed(from) {
            tracing::warn!(error = %e, "cannot return shuffle credit");
        }
        self.emit()
    }

    /// Sends (at-least-once) or buffers (exactly-once) what processing produced.
    fn emit(&mut self) -> Result<(), RuntimeError> {
        if self.out.is_empty() {
            return Ok(());
        }
        if self.sink.exactly_once() {
            self.out
                .take_into(&mut self.epoch.records, &mut self.epoch.triggers);
        } else {
            // In slices, so the gauges stay live while a slow sink blocks.
            let out = std::mem::take(&mut self.out);
            for (records, triggers) in out
                .records
                .chunks(EMIT_SLICE)
                .zip(out.triggers.chunks(EMIT_SLICE))
            {
                self.sink.send_now(records)?;
                let now = now_ms();
                for (r, t) in records.iter().zip(triggers) {
                    if r.destination == Destination::Sink {
                        self.metrics.records_out.inc();
                        self.metrics
                            .end_to_end_latency_seconds
                            .observe((now - t).max(0) as f64 / 1000.0);
                    }
                }
                self.tick_status();
            }
            self.out = out;
            self.out.clear();
        }
        Ok(())
    }
}

/// Builds a tokio runtime, starts HTTP, runs the worker until `shutdown`, and returns.
/// When a peer fails, the worker restores from the last complete checkpoint and rejoins.
pub fn run_worker(
    opts: WorkerOptions,
    shutdown: Arc<AtomicBool>,
    rt: &tokio::runtime::Runtime,
) -> Result<(), RuntimeError> {
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(SharedStatus::default());
    let board = Arc::new(SavepointBoard::default());
    let control = crate::http::ControlApi {
        board: board.clone(),
        token: opts.control_token.clone(),
        coordinator: opts.index == 0,
    };
    let bound = rt
        .block_on(crate::http::serve(
            opts.http,
            metrics.clone(),
            status.clone(),
            control,
        ))
        .map_err(|source| RuntimeError::Io {
            path: PathBuf::from(opts.http.to_string()),
            source,
        })?;
    tracing::info!(address = %bound, "http listening");
    std::fs::create_dir_all(&opts.data_dir).map_err(io(&opts.data_dir))?;
    let final_status = opts.data_dir.join(FINAL_STATUS_FILE);
    if let Some(stopped) = stopped_earlier(&final_status, opts.deployment) {
        // Restarted (a pod's container is, whatever its exit code) after the job was
        // stopped with a savepoint: running again would process past the savepoint the next
        // deployment restores. Stay stopped, answering /status, until told to exit.
        tracing::info!(
            deployment = ?opts.deployment,
            savepoint = ?stopped.last_savepoint.as_ref().map(|s| s.id),
            "this deployment was stopped with a savepoint: staying stopped"
        );
        status.update(|s| *s = stopped);
        status.set_ready(false);
        while !shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        return Ok(());
    }
    let _ = std::fs::remove_file(&final_status);
    let result = run_attempts(Arc::new(opts), &shutdown, rt, &metrics, &status, &board);
    if let Err(e) = &result {
        status.update(|s| {
            s.phase = "failed".into();
            s.error = Some(e.to_string());
        });
    }
    // The last word for whoever started this worker (the HTTP server is gone with it).
    if let Ok(text) = serde_json::to_string_pretty(&status.get()) {
        let tmp = final_status.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &final_status);
        }
    }
    result
}

fn run_attempts(
    opts: Arc<WorkerOptions>,
    shutdown: &AtomicBool,
    rt: &tokio::runtime::Runtime,
    metrics: &Arc<Metrics>,
    status: &Arc<SharedStatus>,
    board: &Arc<SavepointBoard>,
) -> Result<(), RuntimeError> {
    let listener = if opts.parallelism > 1 {
        let own = opts.peers.get(opts.index as usize).ok_or_else(|| {
            RuntimeError::Config(format!(
                "parallelism {} needs {} peer addresses, {} given",
                opts.parallelism,
                opts.parallelism,
                opts.peers.len()
            ))
        })?;
        let addr = match opts.shuffle_listen {
            Some(a) => a,
            None => listen_address(own)?,
        };
        let l = ShuffleListener::bind(addr).map_err(|source| RuntimeError::Io {
            path: PathBuf::from(addr.to_string()),
            source,
        })?;
        tracing::info!(address = %l.local_addr(), peers = ?opts.peers, "shuffle listening");
        Some(l)
    } else {
        None
    };
    let mut attempt = 0;
    loop {
        let mut worker = Worker::start(
            opts.clone(),
            rt.handle().clone(),
            metrics.clone(),
            status.clone(),
            board.clone(),
        )?;
        let outcome = worker.run(shutdown, listener.as_ref(), attempt);
        if let Some(l) = &listener {
            // Peers dialing between attempts are turned away until the next one.
            l.set_identity(None);
        }
        match outcome {
            Ok(Outcome::Stopped) => {
                worker.publish_status("stopped");
                if !shutdown.load(Ordering::Relaxed) {
                    // Stopped by the job (a stop-with-savepoint), not by a signal.
                    status.update(|s| s.stopped_with_savepoint = true);
                }
                if opts.index == 0 && status.get().last_savepoint.is_some() {
                    // Whoever asked for the savepoint polls for its path: answer a little
                    // longer, until it has read it (the path also stays in the final
                    // status file).
                    let until = Instant::now() + STOP_LINGER;
                    while !board.stop_answered() && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                tracing::info!(
                    checkpoint = ?worker.last_checkpoint.as_ref().map(|c| c.id),
                    "stopped"
                );
                return Ok(());
            }
            Ok(Outcome::Restart { why, attempt: next }) => {
                attempt = next.unwrap_or(attempt + 1).max(attempt);
                worker.drop_savepoint_requests(&why);
                status.set_ready(false);
                metrics.job_restarts.inc();
                tracing::warn!(reason = %why, "restarting from the last complete checkpoint");
                drop(worker);
                if shutdown.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The final status a worker of `deployment` left when the job was stopped with a
/// savepoint, if this data directory holds one.
fn stopped_earlier(final_status: &Path, deployment: Option<u64>) -> Option<Status> {
    let deployment = deployment?;
    let text = std::fs::read_to_string(final_status).ok()?;
    let s: Status = serde_json::from_str(&text).ok()?;
    (s.stopped_with_savepoint && s.phase == "stopped" && s.deployment == Some(deployment))
        .then_some(s)
}

/// The address to listen on for a peer entry `host:port`: every interface, that port.
fn listen_address(own: &str) -> Result<SocketAddr, RuntimeError> {
    let port = own
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .ok_or_else(|| RuntimeError::Config(format!("peer address {own:?} has no port")))?;
    // Loopback entries listen on loopback only (local runs and tests).
    let host = own.rsplit_once(':').map(|(h, _)| h).unwrap_or("");
    let ip = if host == "127.0.0.1" || host == "localhost" {
        std::net::Ipv4Addr::LOCALHOST
    } else {
        std::net::Ipv4Addr::UNSPECIFIED
    };
    Ok(SocketAddr::from((ip, port)))
}
