//! Checkpoints and savepoints on one worker (Chandy–Lamport with aligned barriers, as in
//! Flink): worker 0's coordinator triggers snapshot `n`; on the trigger (or on the first
//! barrier `n` from a peer, whichever comes first) a worker records its source offsets,
//! sends barrier `n` to every worker and stops polling. Data arriving on a channel after its
//! barrier waits until barriers arrived on all channels; then the worker takes its state and
//! its epoch's sink output into local files and goes on while they upload; it acknowledges
//! when they are up ([`super::upload`]). When the snapshot is complete, its output goes to
//! the committer thread ([`super::commit`]).
//!
//! Exactly-once: sink output of epoch `n` is buffered, written into checkpoint `n`, and
//! committed in one transaction after the checkpoint's manifest exists.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rivulet_api::keygroup::range_for_worker;
use rivulet_api::manifest::{SnapshotKind, SnapshotManifest, SourceOffset};

use crate::checkpoint::EncodedOutput;
use crate::metrics::CheckpointInfo;
use crate::shuffle::codec::{self, Frame};
use crate::shuffle::net::Mesh;
use crate::stage::Item;
use crate::state::canonical;

use super::upload::Upload;
use super::{fresh_dir, now_ms, Outcome, RuntimeError, Worker, STOP_ATTEMPTS};

/// A snapshot this worker has started (barrier injected) and not yet taken.
pub(super) struct Alignment {
    pub(super) id: u64,
    pub(super) kind: SnapshotKind,
    pub(super) stop: bool,
    pub(super) offsets: Vec<SourceOffset>,
    /// Channels whose barrier arrived.
    pub(super) barriers: Vec<bool>,
    /// Data frames that arrived after their channel's barrier, per channel.
    pub(super) blocked: Vec<VecDeque<Vec<Item>>>,
}

impl Worker {
    /// Starts snapshot `id` here: records the source offsets and sends barrier `id` to
    /// every worker (itself included).
    pub(super) fn begin_snapshot(
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
            offsets: self.source_offsets(),
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
    pub(super) fn on_barrier(
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

    /// Every channel is aligned: takes state and output locally and starts their upload
    /// ([`super::upload`]); processing goes on while it runs, except after the barrier of a
    /// savepoint or a stop, which is acknowledged before anything else.
    pub(super) fn take_snapshot(
        &mut self,
        mut mesh: Option<&mut Mesh>,
    ) -> Result<Option<Outcome>, RuntimeError> {
        // One upload at a time: the previous snapshot's part is acknowledged first.
        if let Some(o) = self.poll_upload(mesh.as_deref_mut(), true)? {
            return Ok(Some(o));
        }
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
        let taken = self.take_part(id, kind, stop, offsets);
        self.busy += t0.elapsed();
        if let Err(e) = taken {
            let reply = self.decline(id, &e.to_string());
            self.release_alignment(mesh.as_deref_mut())?;
            return self.send_control(mesh, 0, reply);
        }
        if stop || kind == SnapshotKind::Savepoint {
            if let Some(o) = self.poll_upload(mesh.as_deref_mut(), true)? {
                return Ok(Some(o));
            }
        }
        self.release_alignment(mesh)?;
        Ok(None)
    }

    /// Takes this worker's part of snapshot `id` into local files and starts its upload;
    /// the epoch's output moves to `acked`.
    fn take_part(
        &mut self,
        id: u64,
        kind: SnapshotKind,
        stop: bool,
        offsets: Vec<SourceOffset>,
    ) -> Result<(), RuntimeError> {
        let snap_dir = self.opts.data_dir.join("snapshot").join(id.to_string());
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
            let next = self.committer.as_ref().and_then(|c| c.spare());
            let epoch = std::mem::replace(&mut self.epoch, next.unwrap_or_default());
            let encoded =
                EncodedOutput::encode(self.opts.index, id, &epoch.records, &mut self.output_buf);
            self.acked = Some((id, epoch));
            Some(encoded?)
        } else {
            None
        };
        self.upload = Some(Upload::start(
            &self.rt,
            &self.writer,
            self.opts.index,
            id,
            kind,
            stop,
            snap_dir,
            files,
            pending,
            offsets,
            self.stage.watermark(),
        ));
        Ok(())
    }

    /// The output of snapshot `id` goes back into the current epoch (it was not taken).
    pub(super) fn unack(&mut self, id: u64) {
        if self.acked.as_ref().is_some_and(|(a, _)| *a == id) {
            if let Some((_, mut old)) = self.acked.take() {
                old.records.append(&mut self.epoch.records);
                old.triggers.append(&mut self.epoch.triggers);
                self.epoch = old;
            }
        }
    }

    /// Ends the alignment: frames held back are processed in order.
    pub(super) fn release_alignment(
        &mut self,
        mesh: Option<&mut Mesh>,
    ) -> Result<(), RuntimeError> {
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

    /// Snapshot `id` is complete: commit its output; after a stop snapshot, leave.
    pub(super) fn on_complete(
        &mut self,
        mesh: Option<&mut Mesh>,
        id: u64,
        stop: bool,
    ) -> Result<Option<Outcome>, RuntimeError> {
        if self.acked.as_ref().is_some_and(|(acked, _)| *acked == id) {
            if let (Some((_, epoch)), Some(c)) = (self.acked.take(), &self.committer) {
                self.blocked += c.submit(id, epoch)?;
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
            // The final epoch's output is committed before the worker leaves.
            if let Some(c) = &self.committer {
                c.wait_idle()?;
            }
            if let Some(m) = mesh {
                m.bye();
            }
            return Ok(Some(Outcome::Stopped));
        }
        Ok(None)
    }

    /// Snapshot `id` was given up: its output is produced with the next one.
    pub(super) fn on_abort(
        &mut self,
        mesh: Option<&mut Mesh>,
        id: u64,
    ) -> Result<(), RuntimeError> {
        if self.align.as_ref().is_some_and(|a| a.id == id) {
            self.release_alignment(mesh)?;
        }
        self.cancel_upload(id);
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

    /// Metrics and status for a snapshot whose manifest is written; its duration runs from
    /// the trigger to now.
    pub(super) fn finish_checkpoint(&mut self, manifest: &SnapshotManifest) {
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
}
