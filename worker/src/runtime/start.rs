//! Starting an attempt: restore the snapshot the control plane chose (`--restore`), else
//! the newest valid checkpoint (or `restoreFrom` when newer); settle the restored
//! snapshot's pending sink output, and assign the source where the snapshot left off.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivulet_api::keygroup::range_for_worker;
use rivulet_api::launch::Restore;
use rivulet_api::manifest::SnapshotKind;
use rivulet_api::spec::StateBackendKind;
use rivulet_api::StreamJob;
use xxhash_rust::xxh3::xxh3_64;

use crate::checkpoint::{self, JobStore, Restored, SnapshotWriter};
use crate::coordinator::Coordinator;
use crate::kafka::sink::{orphaned_slots, KafkaSink, SinkIdentity};
use crate::kafka::source::KafkaSource;
use crate::metrics::{Metrics, SharedStatus};
use crate::output::{self, Destination};
use crate::pipeline::Pipeline;
use crate::savepoints::SavepointBoard;
use crate::stage::keyed::KeyedStage;
use crate::stage::route::Router;
use crate::stage::Output;
use crate::state::heap::HeapBackend;
use crate::state::rocks::RocksBackend;
use crate::state::StateBackend;
use crate::window::WindowOperator;

use super::commit::Committer;
use super::{
    fresh_dir, now_ms, Epoch, Fault, RuntimeError, Worker, WorkerOptions, MIN_CHECKPOINT_TIMEOUT,
};

/// A stable fingerprint of the pipeline spec, recorded in snapshots.
pub fn pipeline_fingerprint(manifest: &StreamJob) -> String {
    let text = serde_json::to_string(&manifest.spec.pipeline).unwrap_or_default();
    format!("{:016x}", xxh3_64(text.as_bytes()))
}

impl Worker {
    /// Restores from the newest valid checkpoint (or `restoreFrom`), re-commits pending
    /// output if needed, and assigns the source.
    pub(super) fn start(
        opts: Arc<WorkerOptions>,
        rt: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        status: Arc<SharedStatus>,
        board: Arc<SavepointBoard>,
    ) -> Result<Worker, RuntimeError> {
        let m = &opts.manifest;
        let spec = &m.spec;
        let p = &spec.pipeline;
        let ns = m.job_namespace().to_string();
        let job = m.job_name().to_string();
        let key_groups = range_for_worker(opts.index, opts.parallelism, spec.max_parallelism);
        status.set_ready(false);
        status.update(|s| {
            s.job = job.clone();
            s.namespace = ns.clone();
            s.worker = opts.index;
            s.parallelism = opts.parallelism;
            s.deployment = opts.deployment;
            s.phase = "restoring".into();
        });

        let store = JobStore::open(&spec.state.storage, &ns, &job)?;
        let restore_dir = opts.data_dir.join("restore");
        fresh_dir(&restore_dir)?;
        // What the control plane chose wins. Otherwise restoreFrom wins over this job's
        // checkpoints when it is newer: a savepoint of this job taken for a rescale or an
        // upgrade. Another job's snapshot only starts a job that has no checkpoint yet.
        let chosen = opts.restore.as_ref();
        let initial_url = match chosen {
            Some(Restore::Snapshot(url)) => Some(url),
            Some(Restore::Empty) => None,
            None => spec.restore_from.as_ref(),
        };
        let initial = initial_url
            .map(|url| JobStore::for_snapshot_url(url).map(|s| (url, s)))
            .transpose()?;
        let newest_checkpoint = rt
            .block_on(store.list_snapshots(SnapshotKind::Checkpoint))?
            .last()
            .copied()
            .unwrap_or(0);
        let savepoint_first = chosen.is_some()
            || initial
                .as_ref()
                .is_some_and(|(_, (s, _, id))| s.url() == store.url() && *id > newest_checkpoint);
        // A worker of a deployment that has checkpointed since it started (this one was
        // restarted) continues from there, not from what the deployment started from.
        let own = match (chosen, opts.deployment) {
            (Some(_), Some(d)) => rt.block_on(checkpoint::fetch_latest_checkpoint_of(
                &store,
                d,
                key_groups.clone(),
                &restore_dir,
            ))?,
            _ => None,
        };
        match &own {
            Some(r) => tracing::info!(
                checkpoint = r.manifest.id,
                "restarted: continuing from this deployment's newest checkpoint"
            ),
            None if chosen == Some(&Restore::Empty) => {
                tracing::info!("starting with no state, as the control plane chose")
            }
            None => {}
        }
        let mut restored = if own.is_some() {
            own
        } else if savepoint_first {
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
        let agg_names: Vec<String> = p.aggregates.iter().map(|a| a.name.clone()).collect();
        // Windows the restored state holds behind the restored watermark fire now: their
        // results are the first output of this attempt.
        let mut out = Output::default();
        let operator = match &p.window {
            Some(w) => {
                let mut op = WindowOperator::new(w, &p.aggregates, backend)?;
                let mut overdue = Vec::new();
                op.restore_timers(restored_wm.unwrap_or(i64::MIN), &mut overdue)?;
                if !overdue.is_empty() {
                    tracing::info!(
                        windows = overdue.len(),
                        "firing restored windows that are behind the restored watermark"
                    );
                }
                let now = now_ms();
                for r in &overdue {
                    out.push(output::window_result(r, &agg_names), now);
                }
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
        // Each partition's watermark continues from the highest event time it had read.
        let max_event_times: Vec<(&str, i32, i64)> = offsets
            .iter()
            .filter_map(|o| Some((o.topic.as_str(), o.partition, o.max_event_time_ms?)))
            .collect();
        let tracker = pipeline.watermark_tracker().map(|mut t| {
            t.assign(source.assigned(), now_ms());
            t.restore(restored_wm, &max_event_times);
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
        // Parts an earlier attempt left when its uploads were cancelled.
        let _ = std::fs::remove_dir_all(opts.data_dir.join("snapshot"));
        let writer = SnapshotWriter::new(store, &format!("w{}-{}", opts.index, now_ms()));
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
        let sink = Arc::new(sink);
        let committer = if sink.exactly_once() {
            Some(Committer::start(sink.clone(), metrics.clone(), opts.fault)?)
        } else {
            None
        };
        Ok(Worker {
            rt,
            metrics,
            status,
            router,
            stage,
            source,
            sink,
            committer,
            writer,
            coordinator,
            restored_id,
            routes: vec![Vec::new(); n],
            out,
            epoch: Epoch::default(),
            output_buf: bytes::BytesMut::new(),
            acked: None,
            align: None,
            upload: None,
            retention: None,
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
            source_reports: 0,
            last_align: Instant::now(),
            started: Instant::now(),
            source_read: 0,
            opts,
        })
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
