//! The worker's processing loop: restore, form the shuffle with the other workers, then
//! poll → route → window → emit, with aligned checkpoints coordinated by worker 0.
//!
//! One thread does everything that touches records, so a worker is a small event loop:
//! it polls its Kafka partitions (`p mod n == index`) when nothing holds it back, routes
//! keyed records to the owners of their key groups (its own in process, the others over the
//! shuffle), and hands the window operator what its peers send. A full shuffle queue (no
//! credit) stops the polling: that time is backpressure.
//!
//! Checkpoints (Chandy–Lamport with aligned barriers, as in Flink): worker 0's
//! [`Coordinator`] triggers checkpoint `n`; on the trigger (or on the first barrier `n` from
//! a peer, whichever comes first) a worker records its source offsets, sends barrier `n`
//! to every worker and stops polling. Data arriving on a channel after its barrier waits
//! until barriers arrived on all channels; then the worker snapshots its state and its
//! epoch's sink output, uploads them, acknowledges, and goes on. With every
//! acknowledgement in, worker 0 writes the manifest and tells every worker to commit.
//!
//! Exactly-once: sink output of epoch `n` is buffered, written into checkpoint `n`, and
//! committed in one transaction after the checkpoint's manifest exists. On restore, the
//! pending output of the restored checkpoint is re-committed unless the sink's marker says it
//! was. A fault-injection point (`RIVULET_FAULT=after-manifest[:N]`) aborts worker 0 right
//! after the manifest of checkpoint `>= N` is written and before its commit.
//!
//! Failures: when a peer's connection breaks or a peer reconnects, every worker drops its
//! attempt and restores from the last complete checkpoint; the mesh forms again only among
//! workers restored from the same one.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rivulet_api::keygroup::range_for_worker;
use rivulet_api::manifest::{SnapshotKind, SnapshotManifest, SourceOffset, FORMAT_VERSION};
use rivulet_api::spec::{StateBackendKind, StreamJobManifest};
use rivulet_api::status::FINAL_STATUS_FILE;
use xxhash_rust::xxh3::xxh3_64;

use crate::checkpoint::{self, CheckpointError, EncodedOutput, JobStore, Restored, SnapshotWriter};
use crate::coordinator::{AckReport, Action, Control, Coordinator, Request};
use crate::kafka::sink::{orphaned_slots, KafkaSink, SinkError, SinkIdentity};
use crate::kafka::source::{KafkaSource, SourceError};
use crate::metrics::{CheckpointInfo, Metrics, PartitionLabels, PartitionStatus, SharedStatus};
use crate::output::{Destination, OutRecord};
use crate::pipeline::Pipeline;
use crate::record::SourceRecord;
use crate::savepoints::SavepointBoard;
use crate::shuffle::codec::{self, Frame};
use crate::shuffle::net::{Event, Identity, Mesh, MeshError, ShuffleListener};
use crate::stage::keyed::KeyedStage;
use crate::stage::route::Router;
use crate::stage::{Item, Output};
use crate::state::canonical;
use crate::state::heap::HeapBackend;
use crate::state::rocks::RocksBackend;
use crate::state::{StateBackend, StateError};
use crate::window::{WindowError, WindowOperator};

const MAX_BATCH: usize = 4096;
/// Items per shuffle data frame.
const FRAME_ITEMS: usize = 1024;
const STATUS_EVERY: Duration = Duration::from_millis(500);
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

/// A fault to inject, for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Abort right after writing the manifest of checkpoint `>= from`, before the commit.
    AfterManifest { from: u64 },
    /// An at-least-once sink that takes at most `per_second` records per second.
    SlowSink { per_second: u64 },
    /// Abort instead of committing the output of an epoch `>= from`, whether on the
    /// coordinator's word or when settling a restored checkpoint: every worker with this
    /// fault dies with that output uncommitted.
    BeforeCommit { from: u64 },
}

impl Fault {
    /// Parses `after-manifest`, `after-manifest:N`, `before-commit:N` or `slow-sink:N`.
    pub fn parse(s: &str) -> Option<Fault> {
        let s = s.trim();
        if s == "after-manifest" {
            return Some(Fault::AfterManifest { from: 0 });
        }
        if let Some(n) = s.strip_prefix("before-commit:") {
            return Some(Fault::BeforeCommit {
                from: n.parse().ok()?,
            });
        }
        if let Some(n) = s.strip_prefix("slow-sink:") {
            return Some(Fault::SlowSink {
                per_second: n.parse().ok()?,
            });
        }
        let n = s.strip_prefix("after-manifest:")?.parse().ok()?;
        Some(Fault::AfterManifest { from: n })
    }

    /// With [`Fault::BeforeCommit`]: aborts the process if epoch `epoch` is to be committed.
    fn before_commit(fault: Option<Fault>, epoch: u64) {
        if let Some(Fault::BeforeCommit { from }) = fault {
            if epoch >= from {
                tracing::error!(epoch, "fault injection: aborting before the commit");
                std::process::abort();
            }
        }
    }
}

/// How one worker runs.
pub struct WorkerOptions {
    pub manifest: StreamJobManifest,
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

/// A stable fingerprint of the pipeline spec, recorded in snapshots.
pub fn pipeline_fingerprint(manifest: &StreamJobManifest) -> String {
    let text = serde_json::to_string(&manifest.spec.pipeline).unwrap_or_default();
    format!("{:016x}", xxh3_64(text.as_bytes()))
}

/// Sink output of one epoch (exactly-once) with each record's triggering time.
#[derive(Default)]
struct Epoch {
    records: Vec<OutRecord>,
    triggers: Vec<i64>,
}

/// A snapshot this worker has started (barrier injected) and not yet taken.
struct Alignment {
    id: u64,
    kind: SnapshotKind,
    stop: bool,
    offsets: Vec<SourceOffset>,
    /// Channels whose barrier arrived.
    barriers: Vec<bool>,
    /// Data frames that arrived after their channel's barrier, per channel.
    blocked: Vec<VecDeque<Vec<Item>>>,
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
    sink: KafkaSink,
    writer: SnapshotWriter,
    /// Worker 0 only.
    coordinator: Option<Coordinator>,
    restored_id: u64,
    routes: Vec<Vec<Item>>,
    out: Output,
    epoch: Epoch,
    /// Output of a snapshot acknowledged and not yet complete: (id, output).
    acked: Option<(u64, Epoch)>,
    align: Option<Alignment>,
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
}

impl Worker {
    /// Restores from the newest valid checkpoint (or `restoreFrom`), re-commits pending
    /// output if needed, and assigns the source.
    fn start(
        opts: Arc<WorkerOptions>,
        rt: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        status: Arc<SharedStatus>,
        board: Arc<SavepointBoard>,
    ) -> Result<Worker, RuntimeError> {
        let m = &opts.manifest;
        let spec = &m.spec;
        let p = &spec.pipeline;
        let ns = m.namespace().to_string();
        let job = m.metadata.name.clone();
        let key_groups = range_for_worker(opts.index, opts.parallelism, spec.max_parallelism);
        status.set_ready(false);
        status.update(|s| {
            s.job = job.clone();
            s.namespace = ns.clone();
            s.worker = opts.index;
            s.parallelism = opts.parallelism;
            s.phase = "restoring".into();
        });

        let store = JobStore::open(&spec.state.storage, &ns, &job)?;
        let restore_dir = opts.data_dir.join("restore");
        fresh_dir(&restore_dir)?;
        // restoreFrom wins over this job's checkpoints when it is newer: a savepoint of this
        // job taken for a rescale or an upgrade. Another job's snapshot only starts a job
        // that has no checkpoint yet.
        let initial = spec
            .restore_from
            .as_ref()
            .map(|url| JobStore::for_snapshot_url(url).map(|s| (url, s)))
            .transpose()?;
        let newest_checkpoint = rt
            .block_on(store.list_snapshots(SnapshotKind::Checkpoint))?
            .last()
            .copied()
            .unwrap_or(0);
        let savepoint_first = initial
            .as_ref()
            .is_some_and(|(_, (s, _, id))| s.url() == store.url() && *id > newest_checkpoint);
        let mut restored = if savepoint_first {
            None
        } else {
            rt.block_on(checkpoint::fetch_latest_checkpoint(
                &store,
                key_groups.clone(),
                &restore_dir,
            ))?
        };
        if restored.is_none() {
            if let Some((url, _)) = &initial {
                let (sp_store, kind, id) = JobStore::for_snapshot_url(url)?;
                let dir = restore_dir.join("initial");
                fresh_dir(&dir)?;
                let r = rt.block_on(checkpoint::fetch_snapshot(
                    &sp_store,
                    kind,
                    id,
                    key_groups.clone(),
                    &dir,
                ))?;
                tracing::info!(url = %url, "starting from savepoint");
                restored = Some(r);
            }
        }
        let fingerprint = pipeline_fingerprint(m);
        if let Some(r) = &restored {
            if r.manifest.pipeline_fingerprint != fingerprint {
                tracing::warn!(
                    snapshot = r.manifest.id,
                    "the pipeline changed since this snapshot was taken; restoring its state anyway"
                );
            }
            if r.manifest.max_parallelism != spec.max_parallelism {
                return Err(RuntimeError::Config(format!(
                    "snapshot {} has maxParallelism {}, the job has {}: maxParallelism cannot change",
                    r.manifest.id, r.manifest.max_parallelism, spec.max_parallelism
                )));
            }
        }

        // State.
        let mut backend: Box<dyn StateBackend> = match spec.state.backend {
            StateBackendKind::Heap => Box::new(HeapBackend::new(key_groups.clone())),
            StateBackendKind::Rocksdb => {
                let dir = opts.data_dir.join("rocksdb");
                Box::new(RocksBackend::open(&dir, key_groups.clone())?)
            }
        };
        if let Some(r) = &restored {
            backend.restore(&r.state_files, key_groups.clone())?;
        }
        let backend_name = backend.name();
        let restored_wm = restored.as_ref().and_then(|r| r.manifest.watermark_ms);
        let operator = match &p.window {
            Some(w) => {
                let mut op = WindowOperator::new(w, &p.aggregates, backend)?;
                op.restore_timers(restored_wm.unwrap_or(i64::MIN))?;
                Some(op)
            }
            None => None,
        };
        let pipeline = Pipeline::new(p, spec.max_parallelism)
            .map_err(|e| RuntimeError::Config(e.to_string()))?;

        // Sink, then settle the restored epoch before reading anything new.
        let source_bootstrap = opts
            .bootstrap
            .clone()
            .or_else(|| p.source.bootstrap_servers.clone())
            .ok_or_else(|| {
                RuntimeError::Config("spec.pipeline.source.bootstrapServers is not set".into())
            })?;
        let sink_bootstrap = p
            .sink
            .bootstrap_servers
            .clone()
            .filter(|_| {
                opts.bootstrap.is_none() || p.sink.bootstrap_servers != p.source.bootstrap_servers
            })
            .unwrap_or_else(|| source_bootstrap.clone());
        let dlq_topic = p
            .dead_letter
            .topic
            .clone()
            .unwrap_or_else(|| format!("{job}-dlq"));
        let identity = SinkIdentity::of(&ns, &job, opts.index);
        let txn_flag = opts.data_dir.join("transaction-open");
        let _ = std::fs::remove_file(&txn_flag);
        let mut sink = KafkaSink::open(
            &p.sink,
            &sink_bootstrap,
            &dlq_topic,
            &identity,
            Some(txn_flag),
        )?;
        if let Some(Fault::SlowSink { per_second }) = opts.fault {
            tracing::warn!(per_second, "fault injection: a slow sink");
            sink.throttle(per_second);
        }
        if let Some(r) = &restored {
            settle_pending(&sink, r, opts.index, &metrics, opts.fault)?;
            // Restored at a lower parallelism: take over the slots nobody runs any more.
            // Opening their sink fences their last producer (Kafka aborts its open
            // transaction) before their pending output is settled under their marker.
            for slot in orphaned_slots(r.manifest.parallelism, opts.index, opts.parallelism) {
                let identity = SinkIdentity::of(&ns, &job, slot);
                let orphan = KafkaSink::open(
                    &p.sink,
                    &sink_bootstrap,
                    &dlq_topic,
                    &identity,
                    Some(opts.data_dir.join("transaction-open")),
                )?;
                tracing::info!(
                    slot,
                    "settling the output of a slot no worker runs any more"
                );
                settle_pending(&orphan, r, slot, &metrics, opts.fault)?;
            }
        }

        let offsets = restored
            .as_ref()
            .map(|r| r.manifest.source_offsets.clone())
            .unwrap_or_default();
        let source = KafkaSource::open(
            &p.source,
            &source_bootstrap,
            &format!("rivulet-{ns}-{job}"),
            opts.index,
            opts.parallelism,
            &offsets,
        )?;
        let tracker = pipeline.watermark_tracker().map(|mut t| {
            t.assign(source.assigned(), now_ms());
            if let Some(wm) = restored_wm {
                t.restore(wm);
            }
            t
        });

        let restored_id = restored.as_ref().map_or(0, |r| r.manifest.id);
        let coordinator = if opts.index == 0 {
            // Ids keep growing across restores (also from another job's snapshot), so an
            // epoch is never numbered below one already committed.
            let next_id = rt
                .block_on(checkpoint::highest_id(&store))?
                .max(restored_id)
                + 1;
            let interval = spec.state.checkpoint_interval.std();
            let timeout = (interval * 10).max(MIN_CHECKPOINT_TIMEOUT);
            Some(Coordinator::new(
                opts.parallelism,
                interval.as_millis() as i64,
                timeout.as_millis() as i64,
                next_id,
                now_ms(),
            ))
        } else {
            None
        };
        let mut writer = SnapshotWriter::new(store, &format!("w{}-{}", opts.index, now_ms()));
        if let Some(r) = &restored {
            writer.adopt_shared(&r.manifest, key_groups.clone());
        }
        let restored_from = restored.as_ref().map(|r| r.manifest.id);
        if let Some(r) = &restored {
            tracing::info!(
                checkpoint = r.manifest.id,
                bytes = r.bytes_read,
                key_groups = ?key_groups,
                watermark = ?r.manifest.watermark_ms,
                "restored state"
            );
        }
        let _ = std::fs::remove_dir_all(&restore_dir);
        let agg_names: Vec<String> = p.aggregates.iter().map(|a| a.name.clone()).collect();
        let restored_bytes = restored.as_ref().map_or(0, |r| r.bytes_read);
        status.update(|s| {
            s.phase = "connecting".into();
            s.state_backend = backend_name.into();
            s.restored_from = restored_from;
            s.restored_bytes = restored_bytes;
            s.key_group_start = key_groups.start;
            s.key_group_end = key_groups.end;
        });
        let n = opts.parallelism.max(1) as usize;
        let router = Router::new(
            pipeline,
            tracker,
            opts.index,
            opts.parallelism,
            metrics.clone(),
        );
        let stage = KeyedStage::new(operator, agg_names, n, metrics.clone());
        Ok(Worker {
            rt,
            metrics,
            status,
            router,
            stage,
            source,
            sink,
            writer,
            coordinator,
            restored_id,
            routes: vec![Vec::new(); n],
            out: Output::default(),
            epoch: Epoch::default(),
            acked: None,
            align: None,
            started_id: restored_id,
            stopping: false,
            stop_failures: 0,
            gone: vec![false; n],
            last_checkpoint: None,
            backend_name,
            busy: Duration::ZERO,
            blocked: Duration::ZERO,
            last_status: Instant::now(),
            window_start: Instant::now(),
            phase: "running",
            board,
            sp_waiting: VecDeque::new(),
            sp_in_flight: None,
            sp_retry: None,
            opts,
        })
    }

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
                        self.opts.manifest.namespace(),
                        self.opts.manifest.metadata.name
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
            // The source, when nothing holds it back.
            let backlog = mesh.as_ref().map_or(0, |m| m.backlog());
            if self.align.is_none() && !self.stopping && backlog == 0 {
                batch.clear();
                self.source
                    .poll_batch(MAX_BATCH, poll_timeout, &mut batch)?;
                let t0 = Instant::now();
                self.metrics.records_in.inc_by(batch.len() as u64);
                self.route(mesh.as_mut(), &batch)?;
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

    /// Every [`STATUS_EVERY`]: the busy and backpressure ratios, and the status document.
    fn tick_status(&mut self) {
        if self.last_status.elapsed() < STATUS_EVERY {
            return;
        }
        let elapsed = self.window_start.elapsed().as_secs_f64().max(1e-9);
        self.metrics
            .busy_permille
            .set((self.busy.as_secs_f64() / elapsed * 1000.0).round() as i64);
        let blocked = self.sink.take_blocked() + self.blocked;
        self.metrics.backpressure_permille.set(
            (blocked.as_secs_f64() / elapsed * 1000.0)
                .round()
                .min(1000.0) as i64,
        );
        self.busy = Duration::ZERO;
        self.blocked = Duration::ZERO;
        self.window_start = Instant::now();
        let phase = if self.stopping {
            "stopping"
        } else {
            self.phase
        };
        self.publish_status(phase);
        self.last_status = Instant::now();
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

    /// Sends a control message to worker `to` (handled in place when that is this worker).
    fn send_control(
        &mut self,
        mesh: Option<&mut Mesh>,
        to: u32,
        c: Control,
    ) -> Result<Option<Outcome>, RuntimeError> {
        if to == self.opts.index {
            return self.on_control(mesh, c);
        }
        if let Some(m) = mesh {
            let json = serde_json::to_vec(&c).unwrap_or_default();
            m.send(to, codec::encode(&Frame::Control(json)), false);
        }
        Ok(None)
    }

    /// Sends a control message to every worker, this one last.
    fn broadcast(
        &mut self,
        mut mesh: Option<&mut Mesh>,
        c: Control,
    ) -> Result<Option<Outcome>, RuntimeError> {
        if let Some(m) = mesh.as_deref_mut() {
            let json = serde_json::to_vec(&c).unwrap_or_default();
            for j in 0..self.opts.parallelism {
                if j != self.opts.index {
                    m.send(j, codec::encode(&Frame::Control(json.clone())), false);
                }
            }
            m.pump();
        }
        self.on_control(mesh, c)
    }

    fn on_control(
        &mut self,
        mesh: Option<&mut Mesh>,
        c: Control,
    ) -> Result<Option<Outcome>, RuntimeError> {
        match c {
            Control::Trigger { id, kind, stop } => {
                if id > self.started_id {
                    self.begin_snapshot(mesh, id, kind, stop)
                } else {
                    Ok(None)
                }
            }
            Control::Ack(report) => {
                let action = self.coordinator.as_mut().and_then(|co| co.on_ack(report));
                match action {
                    Some(a) => self.coordinate(mesh, a),
                    None => Ok(None),
                }
            }
            Control::Decline { id, worker, reason } => {
                let now = now_ms();
                let action = self
                    .coordinator
                    .as_mut()
                    .and_then(|co| co.on_decline(id, format!("worker {worker}: {reason}"), now));
                match action {
                    Some(a) => self.coordinate(mesh, a),
                    None => Ok(None),
                }
            }
            Control::StopRequest => {
                if let Some(co) = self.coordinator.as_mut() {
                    co.request(Request {
                        kind: SnapshotKind::Checkpoint,
                        stop: true,
                    });
                }
                Ok(None)
            }
            Control::Complete { id, stop } => self.on_complete(mesh, id, stop),
            Control::Abort { id } => {
                self.on_abort(mesh, id)?;
                Ok(None)
            }
        }
    }

    /// Starts snapshot `id` here: records the source offsets and sends barrier `id` to
    /// every worker (itself included).
    fn begin_snapshot(
        &mut self,
        mut mesh: Option<&mut Mesh>,
        id: u64,
        kind: SnapshotKind,
        stop: bool,
    ) -> Result<Option<Outcome>, RuntimeError> {
        if let Some(a) = &self.align {
            if a.id >= id {
                return Ok(None);
            }
            // An older snapshot still aligning was given up by the coordinator.
            self.release_alignment(mesh.as_deref_mut())?;
        }
        self.started_id = id;
        let n = self.opts.parallelism.max(1) as usize;
        self.align = Some(Alignment {
            id,
            kind,
            stop,
            offsets: self.source.offsets(),
            barriers: vec![false; n],
            blocked: (0..n).map(|_| VecDeque::new()).collect(),
        });
        if let Some(m) = mesh.as_deref_mut() {
            let frame = codec::encode(&Frame::Barrier {
                id,
                savepoint: kind == SnapshotKind::Savepoint,
                stop,
            });
            for j in 0..n as u32 {
                if j != self.opts.index {
                    m.send(j, frame.clone(), false);
                }
            }
            m.pump();
        }
        let me = self.opts.index as usize;
        self.on_barrier(mesh, me, id, kind, stop)
    }

    /// Barrier `id` arrived on channel `from`; with all of them in, the snapshot is taken.
    fn on_barrier(
        &mut self,
        mut mesh: Option<&mut Mesh>,
        from: usize,
        id: u64,
        kind: SnapshotKind,
        stop: bool,
    ) -> Result<Option<Outcome>, RuntimeError> {
        if id <= self.started_id && self.align.as_ref().is_none_or(|a| a.id != id) {
            // A barrier of a snapshot already taken or given up.
            return Ok(None);
        }
        if self.align.as_ref().is_none_or(|a| a.id < id) {
            // A peer's barrier came before the coordinator's trigger: start here.
            if let Some(o) = self.begin_snapshot(mesh.as_deref_mut(), id, kind, stop)? {
                return Ok(Some(o));
            }
        }
        let Some(a) = self.align.as_mut() else {
            return Ok(None);
        };
        if let Some(b) = a.barriers.get_mut(from) {
            *b = true;
        }
        if a.barriers.iter().all(|b| *b) {
            return self.take_snapshot(mesh);
        }
        Ok(None)
    }

    /// Every channel is aligned: snapshot state and output, upload, acknowledge, go on.
    fn take_snapshot(
        &mut self,
        mut mesh: Option<&mut Mesh>,
    ) -> Result<Option<Outcome>, RuntimeError> {
        let Some(a) = self.align.as_ref() else {
            return Ok(None);
        };
        let (id, kind, stop) = (a.id, a.kind, a.stop);
        let offsets = a.offsets.clone();
        let t0 = Instant::now();
        self.emit()?;
        if !self.sink.exactly_once() {
            self.sink.flush()?;
        }
        let result = self.upload(id, kind, offsets);
        self.busy += t0.elapsed();
        let reply = match result {
            Ok(report) => Control::Ack(report),
            Err(e) => {
                tracing::error!(snapshot = id, error = %e, "cannot take my part of the snapshot");
                self.metrics.checkpoint_failures.inc();
                self.unack(id);
                Control::Decline {
                    id,
                    worker: self.opts.index,
                    reason: e.to_string(),
                }
            }
        };
        if stop && matches!(reply, Control::Ack(_)) {
            // Nothing after the final barrier is processed: the next run reads it again.
            self.stopping = true;
        }
        self.release_alignment(mesh.as_deref_mut())?;
        self.send_control(mesh, 0, reply)
    }

    /// Writes this worker's part of snapshot `id`; the epoch's output moves to `acked`.
    fn upload(
        &mut self,
        id: u64,
        kind: SnapshotKind,
        offsets: Vec<SourceOffset>,
    ) -> Result<AckReport, RuntimeError> {
        let snap_dir = self.opts.data_dir.join("snapshot");
        fresh_dir(&snap_dir)?;
        let range = range_for_worker(
            self.opts.index,
            self.opts.parallelism,
            self.opts.manifest.spec.max_parallelism,
        );
        let files = match self.stage.operator_mut() {
            Some(op) => {
                self.metrics.state_entries.set(op.state_mut().len() as i64);
                match kind {
                    SnapshotKind::Checkpoint => op.state_mut().snapshot(&snap_dir)?,
                    // Savepoints are canonical, one file per key group: any backend restores
                    // them at any parallelism, reading only its own key groups.
                    SnapshotKind::Savepoint => {
                        canonical::export_by_key_group(op.state_mut(), range, &snap_dir)?
                    }
                }
            }
            None => Vec::new(),
        };
        let pending = if self.sink.exactly_once() {
            let epoch = std::mem::take(&mut self.epoch);
            let encoded = EncodedOutput::encode(self.opts.index, id, &epoch.records);
            self.acked = Some((id, epoch));
            Some(encoded?)
        } else {
            None
        };
        let uploaded =
            self.rt.block_on(
                self.writer
                    .upload_part(kind, id, self.opts.index, &files, pending),
            );
        let _ = std::fs::remove_dir_all(&snap_dir);
        let (state_files, pending_output) = uploaded?;
        Ok(AckReport {
            id,
            worker: self.opts.index,
            state_files,
            source_offsets: offsets,
            watermark_ms: self.stage.watermark(),
            pending_output,
            state_backend: self.backend_name.to_string(),
        })
    }

    /// The output of snapshot `id` goes back into the current epoch (it was not taken).
    fn unack(&mut self, id: u64) {
        if self.acked.as_ref().is_some_and(|(a, _)| *a == id) {
            if let Some((_, mut old)) = self.acked.take() {
                old.records.append(&mut self.epoch.records);
                old.triggers.append(&mut self.epoch.triggers);
                self.epoch = old;
            }
        }
    }

    /// Ends the alignment: frames held back are processed in order.
    fn release_alignment(&mut self, mesh: Option<&mut Mesh>) -> Result<(), RuntimeError> {
        let Some(a) = self.align.take() else {
            return Ok(());
        };
        let Some(m) = mesh else {
            return Ok(());
        };
        for (from, frames) in a.blocked.into_iter().enumerate() {
            for items in frames {
                self.deliver_remote(m, from as u32, items)?;
            }
        }
        Ok(())
    }

    /// Acts on the coordinator's decision (worker 0).
    fn coordinate(
        &mut self,
        mesh: Option<&mut Mesh>,
        action: Action,
    ) -> Result<Option<Outcome>, RuntimeError> {
        match action {
            Action::Trigger { id, kind, stop } => {
                tracing::debug!(snapshot = id, ?kind, stop, "triggering");
                if kind == SnapshotKind::Savepoint {
                    let retry = if stop { self.sp_retry.take() } else { None };
                    let req = retry.or_else(|| {
                        let at = self.sp_waiting.iter().position(|(_, s)| *s == stop)?;
                        self.sp_waiting.remove(at).map(|(r, _)| r)
                    });
                    if let Some(req) = req {
                        self.board.started(req, id);
                        self.sp_in_flight = Some((id, req, stop));
                    }
                }
                self.broadcast(mesh, Control::Trigger { id, kind, stop })
            }
            Action::Abort { id, reason } => {
                tracing::warn!(snapshot = id, %reason, "snapshot aborted");
                self.savepoint_failed(id, &reason);
                self.metrics.checkpoint_failures.inc();
                self.broadcast(mesh, Control::Abort { id })
            }
            Action::WriteManifest {
                id,
                kind,
                stop,
                started_ms,
                reports,
            } => {
                let manifest = self.manifest_of(id, kind, started_ms, &reports);
                let written = self.rt.block_on(self.writer.write_manifest(&manifest));
                let now = now_ms();
                if let Err(e) = written {
                    tracing::error!(snapshot = id, error = %e, "cannot write the manifest");
                    self.savepoint_failed(id, &e.to_string());
                    if let Some(co) = self.coordinator.as_mut() {
                        co.failed(id, now);
                    }
                    self.metrics.checkpoint_failures.inc();
                    return self.broadcast(mesh, Control::Abort { id });
                }
                if let Some(Fault::AfterManifest { from }) = self.opts.fault {
                    if id >= from {
                        tracing::error!(
                            checkpoint = id,
                            "fault injection: aborting after the manifest, before the commit"
                        );
                        std::process::abort();
                    }
                }
                if let Some(co) = self.coordinator.as_mut() {
                    co.completed(id, now);
                }
                self.finish_checkpoint(&manifest);
                if let Some((sp, req, _)) = self.sp_in_flight {
                    if sp == id {
                        self.sp_in_flight = None;
                        let path = format!(
                            "{}/{}",
                            self.writer.store().url(),
                            JobStore::snapshot_dir(SnapshotKind::Savepoint, id)
                        );
                        tracing::info!(savepoint = id, %path, bytes = manifest.state_size(), "savepoint complete");
                        self.board
                            .completed(req, path.clone(), manifest.state_size());
                        let info = rivulet_api::status::SavepointInfo {
                            id,
                            path,
                            size_bytes: manifest.state_size(),
                        };
                        self.status.update(|s| s.last_savepoint = Some(info));
                    }
                }
                if kind == SnapshotKind::Checkpoint {
                    let retain = self.opts.manifest.spec.state.retain.max(1) as usize;
                    if let Err(e) = self.rt.block_on(self.writer.retain(retain)) {
                        tracing::warn!(error = %e, "checkpoint retention failed");
                    }
                }
                self.broadcast(mesh, Control::Complete { id, stop })
            }
        }
    }

    /// Snapshot `id` failed: a savepoint request fails, a stop-with-savepoint is retried.
    fn savepoint_failed(&mut self, id: u64, reason: &str) {
        if let Some((sp, req, stop)) = self.sp_in_flight {
            if sp == id {
                self.sp_in_flight = None;
                if stop {
                    self.sp_retry = Some(req);
                } else {
                    self.board.failed(req, reason.to_string());
                }
            }
        }
    }

    /// Requests this attempt will not finish fail, so their callers ask again.
    fn drop_savepoint_requests(&mut self, why: &str) {
        let reqs = self
            .sp_in_flight
            .take()
            .map(|(_, r, _)| r)
            .into_iter()
            .chain(self.sp_retry.take())
            .chain(self.sp_waiting.drain(..).map(|(r, _)| r))
            .collect::<Vec<_>>();
        for r in reqs {
            self.board.failed(
                r,
                format!("the job restarted ({why}); request the savepoint again"),
            );
        }
    }

    /// The manifest of snapshot `id`, triggered at `started_ms`, from every worker's report.
    fn manifest_of(
        &self,
        id: u64,
        kind: SnapshotKind,
        started_ms: i64,
        reports: &[AckReport],
    ) -> SnapshotManifest {
        let spec = &self.opts.manifest.spec;
        SnapshotManifest {
            format_version: FORMAT_VERSION,
            kind,
            id,
            namespace: self.opts.manifest.namespace().to_string(),
            job: self.opts.manifest.metadata.name.clone(),
            created_at_ms: started_ms,
            duration_ms: (now_ms() - started_ms).max(0) as u64,
            max_parallelism: spec.max_parallelism,
            parallelism: self.opts.parallelism,
            state_backend: self.backend_name.to_string(),
            pipeline_fingerprint: pipeline_fingerprint(&self.opts.manifest),
            state_files: reports
                .iter()
                .flat_map(|r| r.state_files.iter().cloned())
                .collect(),
            source_offsets: reports
                .iter()
                .flat_map(|r| r.source_offsets.iter().cloned())
                .collect(),
            // Aligned barriers give every worker the same watermark; the minimum is safe.
            watermark_ms: reports.iter().filter_map(|r| r.watermark_ms).min(),
            pending_output: reports
                .iter()
                .flat_map(|r| r.pending_output.iter().cloned())
                .collect(),
        }
    }

    /// Snapshot `id` is complete: commit its output; after a stop snapshot, leave.
    fn on_complete(
        &mut self,
        mesh: Option<&mut Mesh>,
        id: u64,
        stop: bool,
    ) -> Result<Option<Outcome>, RuntimeError> {
        if let Some((acked, _)) = &self.acked {
            if *acked == id {
                if let Some((_, epoch)) = self.acked.take() {
                    Fault::before_commit(self.opts.fault, id);
                    self.sink.commit_epoch(id, &epoch.records)?;
                    let now = now_ms();
                    for (r, t) in epoch.records.iter().zip(&epoch.triggers) {
                        if r.destination == Destination::Sink {
                            self.metrics.records_out.inc();
                            self.metrics
                                .end_to_end_latency_seconds
                                .observe((now - t).max(0) as f64 / 1000.0);
                        }
                    }
                }
            }
        }
        if self.coordinator.is_none() {
            self.last_checkpoint = Some(CheckpointInfo {
                id,
                time_ms: now_ms(),
                duration_ms: 0,
                size_bytes: 0,
            });
            self.metrics.last_checkpoint_id.set(id as i64);
        }
        if stop && self.stopping {
            if let Some(m) = mesh {
                m.bye();
            }
            return Ok(Some(Outcome::Stopped));
        }
        Ok(None)
    }

    /// Snapshot `id` was given up: its output is produced with the next one.
    fn on_abort(&mut self, mesh: Option<&mut Mesh>, id: u64) -> Result<(), RuntimeError> {
        if self.align.as_ref().is_some_and(|a| a.id == id) {
            self.release_alignment(mesh)?;
        }
        self.unack(id);
        if self.stopping {
            self.stopping = false;
            self.stop_failures += 1;
            if self.stop_failures >= STOP_ATTEMPTS {
                return Err(RuntimeError::Config(format!(
                    "the final checkpoint failed {STOP_ATTEMPTS} times; stopping without it"
                )));
            }
        }
        Ok(())
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

    /// Metrics and status for a snapshot whose manifest is written; its duration runs from
    /// the trigger to now.
    fn finish_checkpoint(&mut self, manifest: &SnapshotManifest) {
        let duration = Duration::from_millis((now_ms() - manifest.created_at_ms).max(0) as u64);
        let size = manifest.state_size();
        self.metrics.checkpoints_completed.inc();
        self.metrics
            .checkpoint_duration_seconds
            .observe(duration.as_secs_f64());
        self.metrics.checkpoint_size_bytes.set(size as i64);
        self.metrics.last_checkpoint_id.set(manifest.id as i64);
        self.last_checkpoint = Some(CheckpointInfo {
            id: manifest.id,
            time_ms: manifest.created_at_ms,
            duration_ms: duration.as_millis() as u64,
            size_bytes: size,
        });
        tracing::info!(
            checkpoint = manifest.id,
            kind = ?manifest.kind,
            workers = manifest.parallelism,
            state_bytes = size,
            "checkpoint complete"
        );
    }

    fn publish_status(&self, phase: &str) {
        let lag = self.source.lag();
        let offsets = self.source.offsets();
        let mut total = 0;
        let mut partitions = Vec::with_capacity(offsets.len());
        for o in &offsets {
            let l = lag
                .iter()
                .find(|((t, p), _)| &**t == o.topic.as_str() && *p == o.partition)
                .map(|(_, l)| *l);
            if let Some(l) = l {
                total += l;
                self.metrics
                    .partition_lag
                    .get_or_create(&PartitionLabels {
                        topic: o.topic.clone(),
                        partition: o.partition,
                    })
                    .set(l);
            }
            partitions.push(PartitionStatus {
                topic: o.topic.clone(),
                partition: o.partition,
                offset: o.offset,
                lag: l,
            });
        }
        let m = &self.metrics;
        let watermark = self.stage.watermark();
        let last = self.last_checkpoint.clone();
        self.status.update(|s| {
            s.phase = phase.to_string();
            s.records_in = m.records_in.get();
            s.records_processed = m.records_processed.get();
            s.records_filtered = m.records_filtered.get();
            s.records_late = m.records_late.get();
            s.records_malformed = m.records_malformed.get();
            s.records_keyless = m.records_keyless.get();
            s.records_out = m.records_out.get();
            s.watermark_ms = watermark;
            s.lag = total;
            s.busy_ratio = m.busy_permille.get() as f64 / 1000.0;
            s.backpressure_ratio = m.backpressure_permille.get() as f64 / 1000.0;
            s.partitions = partitions;
            if last.is_some() {
                s.last_checkpoint = last;
            }
        });
    }
}

/// Commits the restored checkpoint's pending output unless the marker shows it was.
fn settle_pending(
    sink: &KafkaSink,
    restored: &Restored,
    slot: u32,
    metrics: &Metrics,
    fault: Option<Fault>,
) -> Result<(), RuntimeError> {
    if !sink.exactly_once() {
        return Ok(());
    }
    // The snapshot's output belongs to the sink of the job that wrote it: its marker says
    // whether that output was committed (by that job, or by an earlier run of this one).
    let m = &restored.manifest;
    let owner = SinkIdentity::of(&m.namespace, &m.job, slot);
    let mut committed = sink.committed_epoch_of(&owner.marker_group)?;
    if owner.marker_group != sink.marker_group() {
        // This job may have committed that output itself on an earlier start from the same
        // snapshot: its own epochs are numbered above the snapshot's id.
        committed = committed.max(sink.committed_epoch()?);
    }
    if let Some(c) = committed.filter(|c| *c > restored.manifest.id) {
        // Only happens when newer checkpoints were torn or deleted: their committed output
        // will be produced again.
        tracing::warn!(
            restored = restored.manifest.id,
            committed = c,
            "restoring a checkpoint older than the last committed epoch: output committed \
             after it will be written again"
        );
    }
    let Some((epoch, records)) = restored
        .pending_output
        .get(&slot)
        .filter(|(_, records)| !records.is_empty())
    else {
        return Ok(());
    };
    if committed.is_some_and(|c| c >= *epoch) {
        tracing::info!(
            epoch,
            ?committed,
            "output of the restored checkpoint was already committed"
        );
        return Ok(());
    }
    tracing::info!(
        epoch,
        ?committed,
        records = records.len(),
        "committing the restored checkpoint's output (the previous run stopped before its commit)"
    );
    Fault::before_commit(fault, *epoch);
    sink.commit_epoch(*epoch, records)?;
    let out = records
        .iter()
        .filter(|r| r.destination == Destination::Sink)
        .count();
    metrics.records_out.inc_by(out as u64);
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::Fault;

    #[test]
    fn faults_parse() {
        assert_eq!(
            Fault::parse("after-manifest"),
            Some(Fault::AfterManifest { from: 0 })
        );
        assert_eq!(
            Fault::parse("after-manifest:4"),
            Some(Fault::AfterManifest { from: 4 })
        );
        assert_eq!(
            Fault::parse(" before-commit:3 "),
            Some(Fault::BeforeCommit { from: 3 })
        );
        assert_eq!(
            Fault::parse("slow-sink:1000"),
            Some(Fault::SlowSink { per_second: 1000 })
        );
        assert_eq!(Fault::parse("before-commit"), None);
        assert_eq!(Fault::parse("sometimes"), None);
    }
}
