//! The worker's processing loop: restore, then poll → prepare → window → emit, with a
//! checkpoint every `checkpointInterval` and a final one on shutdown.
//!
//! Determinism: the watermark is recomputed after every record, and a batch is cut wherever
//! the watermark reaches the window operator's next firing time, so results do not depend on
//! how records happen to be grouped into polls.
//!
//! Exactly-once: sink output of epoch `n` is buffered, written into checkpoint `n`, and
//! committed in one transaction after the checkpoint's manifest exists. On restore, the
//! pending output of the restored checkpoint is re-committed unless the sink's marker says it
//! was. A fault-injection point (`RIVULET_FAULT=after-manifest[:N]`) aborts the process right
//! after the manifest of checkpoint `>= N` is written and before its commit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rivulet_api::keygroup::range_for_worker;
use rivulet_api::manifest::{SnapshotKind, SnapshotManifest};
use rivulet_api::spec::{StateBackendKind, StreamJobManifest};
use rivulet_api::status::FINAL_STATUS_FILE;
use xxhash_rust::xxh3::xxh3_64;

use crate::checkpoint::{
    self, CheckpointError, EncodedOutput, JobStore, Restored, SnapshotContent, SnapshotWriter,
};
use crate::kafka::sink::{KafkaSink, SinkError, SinkIdentity};
use crate::kafka::source::{KafkaSource, SourceError};
use crate::metrics::{CheckpointInfo, Metrics, PartitionLabels, PartitionStatus, SharedStatus};
use crate::output::{Destination, OutRecord};
use crate::pipeline::Pipeline;
use crate::processor::Processor;
use crate::record::SourceRecord;
use crate::state::heap::HeapBackend;
use crate::state::rocks::RocksBackend;
use crate::state::{StateBackend, StateError};
use crate::window::{WindowError, WindowOperator};

const MAX_BATCH: usize = 4096;
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const STATUS_EVERY: Duration = Duration::from_millis(500);

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
    #[error("{0}")]
    Config(String),
    #[error("local directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A crash to inject, for tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Abort right after writing the manifest of checkpoint `>= from`, before the commit.
    AfterManifest { from: u64 },
}

impl Fault {
    /// Parses `after-manifest` or `after-manifest:N`.
    pub fn parse(s: &str) -> Option<Fault> {
        let s = s.trim();
        if s == "after-manifest" {
            return Some(Fault::AfterManifest { from: 0 });
        }
        let n = s.strip_prefix("after-manifest:")?.parse().ok()?;
        Some(Fault::AfterManifest { from: n })
    }
}

/// How one worker runs.
pub struct WorkerOptions {
    pub manifest: StreamJobManifest,
    pub index: u32,
    pub parallelism: u32,
    pub data_dir: PathBuf,
    /// Overrides the source's (and, when it names none, the sink's) bootstrap servers.
    pub bootstrap: Option<String>,
    pub http: SocketAddr,
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

/// Sink output of the current epoch (exactly-once) with each record's triggering time.
#[derive(Default)]
struct Epoch {
    records: Vec<OutRecord>,
    triggers: Vec<i64>,
}

/// The running worker.
pub struct Worker {
    opts: WorkerOptions,
    rt: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
    status: Arc<SharedStatus>,
    processor: Processor,
    source: KafkaSource,
    sink: KafkaSink,
    writer: SnapshotWriter,
    epoch: Epoch,
    next_id: u64,
    last_checkpoint: Option<CheckpointInfo>,
    backend_name: &'static str,
}

impl Worker {
    /// Restores from the newest valid checkpoint (or `restoreFrom`), re-commits pending
    /// output if needed, and assigns the source.
    pub fn start(
        opts: WorkerOptions,
        rt: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        status: Arc<SharedStatus>,
    ) -> Result<Worker, RuntimeError> {
        let m = &opts.manifest;
        let spec = &m.spec;
        let p = &spec.pipeline;
        let ns = m.namespace().to_string();
        let job = m.metadata.name.clone();
        let key_groups = range_for_worker(opts.index, opts.parallelism, spec.max_parallelism);
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
        let mut restored = rt.block_on(checkpoint::fetch_latest_checkpoint(
            &store,
            key_groups.clone(),
            &restore_dir,
        ))?;
        if restored.is_none() {
            if let Some(url) = &spec.restore_from {
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
        let sink = KafkaSink::open(
            &p.sink,
            &sink_bootstrap,
            &dlq_topic,
            &identity,
            Some(txn_flag),
        )?;
        if let Some(r) = &restored {
            settle_pending(&sink, r, opts.index, &metrics)?;
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

        // Ids keep growing across restores (also from another job's snapshot), so an epoch
        // is never numbered below one already committed.
        let restored_id = restored.as_ref().map_or(0, |r| r.manifest.id);
        let next_id = rt
            .block_on(checkpoint::highest_id(&store))?
            .max(restored_id)
            + 1;
        let mut writer = SnapshotWriter::new(store, &format!("w{}-{}", opts.index, now_ms()));
        if let Some(r) = &restored {
            writer.adopt_shared(&r.manifest);
        }
        let restored_from = restored.as_ref().map(|r| r.manifest.id);
        if let Some(r) = &restored {
            tracing::info!(
                checkpoint = r.manifest.id,
                bytes = r.bytes_read,
                watermark = ?r.manifest.watermark_ms,
                "restored state"
            );
        }
        let _ = std::fs::remove_dir_all(&restore_dir);
        let agg_names = p.aggregates.iter().map(|a| a.name.clone()).collect();
        status.update(|s| {
            s.phase = "running".into();
            s.state_backend = backend_name.into();
            s.restored_from = restored_from;
        });
        status.set_ready(true);
        let processor = Processor::new(pipeline, operator, tracker, agg_names, metrics.clone());
        Ok(Worker {
            opts,
            rt,
            metrics,
            status,
            processor,
            source,
            sink,
            writer,
            epoch: Epoch::default(),
            next_id,
            last_checkpoint: None,
            backend_name,
        })
    }

    /// Runs until `shutdown` is set, then takes a final checkpoint.
    pub fn run(mut self, shutdown: &AtomicBool) -> Result<(), RuntimeError> {
        let interval = self.opts.manifest.spec.state.checkpoint_interval.std();
        let mut next_checkpoint = Instant::now() + interval;
        let mut batch: Vec<SourceRecord> = Vec::with_capacity(MAX_BATCH);
        let mut last_status = Instant::now();
        let mut busy = Duration::ZERO;
        let mut window_start = Instant::now();
        while !shutdown.load(Ordering::Relaxed) {
            batch.clear();
            self.source
                .poll_batch(MAX_BATCH, POLL_TIMEOUT, &mut batch)?;
            let t0 = Instant::now();
            self.process(&batch)?;
            busy += t0.elapsed();
            if Instant::now() >= next_checkpoint {
                let t1 = Instant::now();
                self.checkpoint()?;
                busy += t1.elapsed();
                next_checkpoint = Instant::now() + interval;
            }
            if last_status.elapsed() >= STATUS_EVERY {
                let elapsed = window_start.elapsed().as_secs_f64().max(1e-9);
                self.metrics
                    .busy_permille
                    .set((busy.as_secs_f64() / elapsed * 1000.0).round() as i64);
                let blocked = self.sink.take_blocked();
                self.metrics.backpressure_permille.set(
                    (blocked.as_secs_f64() / elapsed * 1000.0)
                        .round()
                        .min(1000.0) as i64,
                );
                busy = Duration::ZERO;
                window_start = Instant::now();
                self.publish_status("running");
                last_status = Instant::now();
            }
        }
        tracing::info!("stopping: taking a final checkpoint");
        self.publish_status("stopping");
        self.status.set_ready(false);
        self.checkpoint()?;
        self.publish_status("stopped");
        tracing::info!(checkpoint = ?self.last_checkpoint.as_ref().map(|c| c.id), "stopped");
        Ok(())
    }

    /// Processes one polled batch and sends or buffers its output.
    fn process(&mut self, batch: &[SourceRecord]) -> Result<(), RuntimeError> {
        self.metrics.records_in.inc_by(batch.len() as u64);
        self.processor.process(batch, now_ms())?;
        self.emit()
    }

    /// Sends (at-least-once) or buffers (exactly-once) what the batch produced.
    fn emit(&mut self) -> Result<(), RuntimeError> {
        if self.processor.output().0.is_empty() {
            return Ok(());
        }
        if self.sink.exactly_once() {
            self.processor
                .take_output(&mut self.epoch.records, &mut self.epoch.triggers);
        } else {
            let (records, triggers) = self.processor.output();
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
            self.processor.clear_output();
        }
        Ok(())
    }

    /// Takes checkpoint `next_id`: state, offsets and the epoch's output, manifest last;
    /// then commits the epoch (exactly-once) and applies retention.
    fn checkpoint(&mut self) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let id = self.next_id;
        self.next_id += 1;
        if !self.sink.exactly_once() {
            self.sink.flush()?;
        }
        let snap_dir = self.opts.data_dir.join("snapshot");
        fresh_dir(&snap_dir)?;
        let state_files = match self.processor.operator_mut() {
            Some(op) => {
                self.metrics.state_entries.set(op.state_mut().len() as i64);
                op.state_mut().snapshot(&snap_dir)?
            }
            None => Vec::new(),
        };
        let spec = &self.opts.manifest.spec;
        let content = SnapshotContent {
            kind: SnapshotKind::Checkpoint,
            id,
            namespace: self.opts.manifest.namespace().to_string(),
            job: self.opts.manifest.metadata.name.clone(),
            created_at_ms: now_ms(),
            max_parallelism: spec.max_parallelism,
            parallelism: self.opts.parallelism,
            state_backend: self.backend_name.to_string(),
            pipeline_fingerprint: pipeline_fingerprint(&self.opts.manifest),
            state_files,
            source_offsets: self.source.offsets(),
            watermark_ms: self.processor.watermark(),
            pending_output: if self.sink.exactly_once() {
                Some(EncodedOutput::encode(
                    self.opts.index,
                    id,
                    &self.epoch.records,
                )?)
            } else {
                None
            },
        };
        let manifest = match self.rt.block_on(self.writer.write(content, started)) {
            Ok(m) => m,
            Err(e) => {
                // The epoch's output stays buffered and goes into the next checkpoint.
                self.metrics.checkpoint_failures.inc();
                tracing::error!(checkpoint = id, error = %e, "checkpoint failed");
                let _ = std::fs::remove_dir_all(&snap_dir);
                return Ok(());
            }
        };
        if let Some(Fault::AfterManifest { from }) = self.opts.fault {
            if id >= from {
                tracing::error!(
                    checkpoint = id,
                    "fault injection: aborting after the manifest, before the commit"
                );
                std::process::abort();
            }
        }
        if self.sink.exactly_once() {
            self.sink.commit_epoch(id, &self.epoch.records)?;
            let now = now_ms();
            for (r, t) in self.epoch.records.iter().zip(&self.epoch.triggers) {
                if r.destination == Destination::Sink {
                    self.metrics.records_out.inc();
                    self.metrics
                        .end_to_end_latency_seconds
                        .observe((now - t).max(0) as f64 / 1000.0);
                }
            }
            self.epoch = Epoch::default();
        }
        self.finish_checkpoint(&manifest, started);
        let _ = std::fs::remove_dir_all(&snap_dir);
        let retain = self.opts.manifest.spec.state.retain.max(1) as usize;
        if let Err(e) = self.rt.block_on(self.writer.retain(retain)) {
            tracing::warn!(error = %e, "checkpoint retention failed");
        }
        Ok(())
    }

    fn finish_checkpoint(&mut self, manifest: &SnapshotManifest, started: Instant) {
        let duration = started.elapsed();
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
            duration_ms = duration.as_millis() as u64,
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
        let watermark = self.processor.watermark();
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
    let Some((epoch, records)) = restored.pending_output.get(&slot) else {
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
    sink.commit_epoch(*epoch, records)?;
    let out = records
        .iter()
        .filter(|r| r.destination == Destination::Sink)
        .count();
    metrics.records_out.inc_by(out as u64);
    Ok(())
}

/// Builds a tokio runtime, starts HTTP, runs the worker until `shutdown`, and returns.
pub fn run_worker(
    opts: WorkerOptions,
    shutdown: Arc<AtomicBool>,
    rt: &tokio::runtime::Runtime,
) -> Result<(), RuntimeError> {
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(SharedStatus::default());
    let bound = rt
        .block_on(crate::http::serve(
            opts.http,
            metrics.clone(),
            status.clone(),
        ))
        .map_err(|source| RuntimeError::Io {
            path: PathBuf::from(opts.http.to_string()),
            source,
        })?;
    tracing::info!(address = %bound, "http listening");
    std::fs::create_dir_all(&opts.data_dir).map_err(io(&opts.data_dir))?;
    let final_status = opts.data_dir.join(FINAL_STATUS_FILE);
    let _ = std::fs::remove_file(&final_status);
    let result = Worker::start(opts, rt.handle().clone(), metrics, status.clone())
        .and_then(|worker| worker.run(&shutdown));
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
