//! Control messages between workers (triggers, acknowledgements, completions, stops) and
//! worker 0's side of them: acting on the coordinator's decisions, writing manifests, and
//! answering savepoint requests. A fault-injection point (`RIVULET_FAULT=after-manifest[:N]`)
//! aborts worker 0 right after the manifest of checkpoint `>= N` is written and before its
//! commit.

use rivulet_api::manifest::{SnapshotKind, SnapshotManifest, FORMAT_VERSION};

use crate::coordinator::{AckReport, Action, Control, Request};
use crate::shuffle::codec::{self, Frame};
use crate::shuffle::net::Mesh;

use super::{now_ms, pipeline_fingerprint, Fault, Outcome, RuntimeError, Worker};

impl Worker {
    /// Sends a control message to worker `to` (handled in place when that is this worker).
    pub(super) fn send_control(
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
    pub(super) fn broadcast(
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

    pub(super) fn on_control(
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

    /// Acts on the coordinator's decision (worker 0).
    pub(super) fn coordinate(
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
                        let path = self
                            .writer
                            .store()
                            .snapshot_url(SnapshotKind::Savepoint, id);
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
                    self.retain_checkpoints(id);
                }
                self.broadcast(mesh, Control::Complete { id, stop })
            }
        }
    }

    /// Snapshot `id` failed: a savepoint request fails, a stop-with-savepoint is retried.
    pub(super) fn savepoint_failed(&mut self, id: u64, reason: &str) {
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
    pub(super) fn drop_savepoint_requests(&mut self, why: &str) {
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
    pub(super) fn manifest_of(
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
            namespace: self.opts.manifest.job_namespace().to_string(),
            job: self.opts.manifest.job_name().to_string(),
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
            deployment: self.opts.deployment,
        }
    }
}
