//! Asynchronous checkpoints: the upload of this worker's part of a snapshot, and worker 0's
//! retention, on the runtime while the processing thread goes on.
//!
//! At the barrier the worker takes its state into local files (the heap's canonical file,
//! or RocksDB's checkpoint of hard-linked SSTs) and encodes the epoch's output; then it
//! releases the alignment and processes the next epoch while [`Upload`] puts those files on
//! object storage. The processing loop polls it ([`Worker::poll_upload`]) and acknowledges
//! the snapshot when the upload is done and every earlier completed epoch has committed (the
//! rule of [`super::commit`]). Savepoints and stop snapshots are waited for at once: nothing
//! should run past a stop's barrier, and a savepoint's caller waits anyway.
//!
//! One upload is in flight at a time: a worker reaching the next barrier first finishes the
//! previous one. An upload of a snapshot the coordinator gave up on is cancelled, and so is
//! one still running when its attempt ends; its files are never referenced by a manifest.

use std::path::PathBuf;
use std::time::Instant;

use rivulet_api::manifest::{PendingOutput, SnapshotKind, SourceOffset, StateFile};
use tokio::task::JoinHandle;

use crate::checkpoint::{CheckpointError, SnapshotWriter};
use crate::coordinator::{AckReport, Control};
use crate::shuffle::net::Mesh;

use super::{Outcome, RuntimeError, Worker};

type Uploaded = Result<(Vec<StateFile>, Vec<PendingOutput>), CheckpointError>;

/// This worker's part of snapshot `id`, uploading.
pub(super) struct Upload {
    pub(super) id: u64,
    stop: bool,
    offsets: Vec<SourceOffset>,
    watermark_ms: Option<i64>,
    started: Instant,
    task: JoinHandle<Uploaded>,
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Still running when its snapshot was given up or its attempt ended.
        self.task.abort();
    }
}

impl Upload {
    /// Starts uploading the files taken into `dir` (removed when done) and `pending`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        rt: &tokio::runtime::Handle,
        writer: &SnapshotWriter,
        worker: u32,
        id: u64,
        kind: SnapshotKind,
        stop: bool,
        dir: PathBuf,
        files: Vec<crate::state::LocalStateFile>,
        pending: Option<crate::checkpoint::EncodedOutput>,
        offsets: Vec<SourceOffset>,
        watermark_ms: Option<i64>,
    ) -> Upload {
        let writer = writer.clone();
        let task = rt.spawn(async move {
            let uploaded = writer.upload_part(kind, id, worker, &files, pending).await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
            uploaded
        });
        Upload {
            id,
            stop,
            offsets,
            watermark_ms,
            started: Instant::now(),
            task,
        }
    }
}

impl Worker {
    /// Acknowledges (or declines) the snapshot whose upload is in flight once it is done
    /// and the committer is idle; with `wait`, blocks until then.
    pub(super) fn poll_upload(
        &mut self,
        mesh: Option<&mut Mesh>,
        wait: bool,
    ) -> Result<Option<Outcome>, RuntimeError> {
        let Some(up) = self.upload.as_ref() else {
            return Ok(None);
        };
        if !wait {
            if !up.task.is_finished() {
                return Ok(None);
            }
            if let Some(c) = &self.committer {
                if !c.is_idle()? {
                    return Ok(None);
                }
            }
        }
        let Some(mut up) = self.upload.take() else {
            return Ok(None);
        };
        let t0 = Instant::now();
        let joined = self.rt.block_on(&mut up.task);
        let uploaded: Uploaded = match joined {
            Ok(u) => u,
            Err(e) => Err(CheckpointError::Invalid {
                id: up.id,
                reason: format!("the upload task ended: {e}"),
            }),
        };
        // Every epoch completed before this snapshot is committed before it is acknowledged
        // (see `commit`): a restore from it settles its own output only.
        if let Some(c) = &self.committer {
            c.wait_idle()?;
        }
        self.blocked += t0.elapsed();
        let reply = match uploaded {
            Ok((state_files, pending_output)) => {
                tracing::debug!(
                    snapshot = up.id,
                    upload_ms = up.started.elapsed().as_millis() as u64,
                    "part uploaded"
                );
                Control::Ack(AckReport {
                    id: up.id,
                    worker: self.opts.index,
                    state_files,
                    source_offsets: std::mem::take(&mut up.offsets),
                    watermark_ms: up.watermark_ms,
                    pending_output,
                    state_backend: self.backend_name.to_string(),
                })
            }
            Err(e) => self.decline(up.id, &e.to_string()),
        };
        if up.stop && matches!(reply, Control::Ack(_)) {
            // Nothing after the final barrier is processed: the next run reads it again.
            self.stopping = true;
        }
        self.send_control(mesh, 0, reply)
    }

    /// This worker cannot take its part of snapshot `id`: the output goes back into the
    /// current epoch and the coordinator is told why.
    pub(super) fn decline(&mut self, id: u64, reason: &str) -> Control {
        tracing::error!(snapshot = id, error = %reason, "cannot take my part of the snapshot");
        self.metrics.checkpoint_failures.inc();
        self.unack(id);
        Control::Decline {
            id,
            worker: self.opts.index,
            reason: reason.to_string(),
        }
    }

    /// Cancels the upload of snapshot `id` (given up by the coordinator), if in flight.
    pub(super) fn cancel_upload(&mut self, id: u64) {
        if self.upload.as_ref().is_some_and(|u| u.id <= id) {
            self.upload = None;
        }
    }

    /// Worker 0, after checkpoint `upto`'s manifest: deletes the checkpoints beyond the
    /// retained ones in the background (skipped while the previous deletion still runs).
    pub(super) fn retain_checkpoints(&mut self, upto: u64) {
        if self.retention.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let keep = self.opts.manifest.spec.state.retain.max(1) as usize;
        let writer = self.writer.clone();
        self.retention = Some(self.rt.spawn(async move {
            if let Err(e) = writer.retain(keep, upto).await {
                tracing::warn!(error = %e, "checkpoint retention failed");
            }
        }));
    }
}
