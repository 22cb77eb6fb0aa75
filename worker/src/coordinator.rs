//! The checkpoint coordinator's protocol: pure decisions, no I/O and no clock of its own.
//!
//! Worker 0 hosts it. It triggers checkpoint `n` at every worker (each then injects barrier
//! `n` after the records it has read so far), collects one acknowledgement per worker, and
//! asks the runtime to write the manifest once all have acknowledged; only then are the
//! sinks told to commit. A checkpoint that is not acknowledged by every worker within the
//! timeout is aborted and processing goes on. One checkpoint is in flight at a time; a
//! savepoint or stop request waits for it and runs next.
//!
//! [`Control`] is what the coordinator and the workers say to each other (over the
//! shuffle's connections, or in process for worker 0 itself).

use std::collections::BTreeMap;

use rivulet_api::manifest::{PendingOutput, SnapshotKind, SourceOffset, StateFile};
use serde::{Deserialize, Serialize};

/// What one worker contributed to a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckReport {
    pub id: u64,
    pub worker: u32,
    pub state_files: Vec<StateFile>,
    pub source_offsets: Vec<SourceOffset>,
    pub watermark_ms: Option<i64>,
    pub pending_output: Vec<PendingOutput>,
    pub state_backend: String,
}

/// Messages between the coordinator and the workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Control {
    /// Inject barrier `id` now.
    Trigger {
        id: u64,
        kind: SnapshotKind,
        stop: bool,
    },
    Ack(AckReport),
    /// The worker could not take its part (the coordinator aborts the snapshot).
    Decline {
        id: u64,
        worker: u32,
        reason: String,
    },
    /// The manifest of `id` is written: commit its output (and exit, if `stop`).
    Complete {
        id: u64,
        stop: bool,
    },
    /// Forget snapshot `id`; its output goes into the next one.
    Abort {
        id: u64,
    },
    /// A worker was asked to stop (SIGTERM): the coordinator takes a final checkpoint.
    StopRequest,
}

/// A request for a snapshot outside the periodic schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: SnapshotKind,
    pub stop: bool,
}

/// What the runtime must do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send [`Control::Trigger`] to every worker (itself included).
    Trigger {
        id: u64,
        kind: SnapshotKind,
        stop: bool,
    },
    /// Every worker acknowledged: write the manifest from these reports (in worker order),
    /// then call [`Coordinator::completed`] or [`Coordinator::failed`].
    WriteManifest {
        id: u64,
        kind: SnapshotKind,
        stop: bool,
        /// When the snapshot was triggered (epoch ms).
        started_ms: i64,
        reports: Vec<AckReport>,
    },
    /// Send [`Control::Abort`] to every worker.
    Abort { id: u64, reason: String },
}

#[derive(Debug)]
struct InFlight {
    id: u64,
    kind: SnapshotKind,
    stop: bool,
    started_ms: i64,
    acks: BTreeMap<u32, AckReport>,
    /// All acknowledged; the manifest is being written.
    finalizing: bool,
}

/// The coordinator's state.
#[derive(Debug)]
pub struct Coordinator {
    parallelism: u32,
    interval_ms: i64,
    timeout_ms: i64,
    next_id: u64,
    in_flight: Option<InFlight>,
    /// When the last snapshot finished (completed or aborted), or the coordinator started.
    last_end_ms: i64,
    requests: Vec<Request>,
}

impl Coordinator {
    /// A coordinator for `parallelism` workers whose next snapshot id is `next_id`.
    pub fn new(
        parallelism: u32,
        interval_ms: i64,
        timeout_ms: i64,
        next_id: u64,
        now_ms: i64,
    ) -> Coordinator {
        Coordinator {
            parallelism: parallelism.max(1),
            interval_ms: interval_ms.max(1),
            timeout_ms: timeout_ms.max(1),
            next_id,
            in_flight: None,
            last_end_ms: now_ms,
            requests: Vec::new(),
        }
    }

    /// The snapshot in flight, if any.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.id)
    }

    /// Queues a savepoint or a stop; it is triggered when nothing is in flight.
    pub fn request(&mut self, request: Request) {
        // Every worker may ask to stop; one stop is enough. Savepoints are all taken.
        if request.stop && self.requests.iter().any(|r| r.stop) {
            return;
        }
        self.requests.push(request);
    }

    /// Whether a stop is requested or in flight.
    pub fn stopping(&self) -> bool {
        self.requests.iter().any(|r| r.stop) || self.in_flight.as_ref().is_some_and(|f| f.stop)
    }

    /// Called often: triggers the next snapshot when due, or aborts one that timed out.
    pub fn tick(&mut self, now_ms: i64) -> Option<Action> {
        if let Some(f) = &self.in_flight {
            if !f.finalizing && now_ms - f.started_ms >= self.timeout_ms {
                let id = f.id;
                let missing: Vec<u32> = (0..self.parallelism)
                    .filter(|w| !f.acks.contains_key(w))
                    .collect();
                self.give_up(now_ms);
                return Some(Action::Abort {
                    id,
                    reason: format!(
                        "timed out after {} ms waiting for workers {missing:?}",
                        self.timeout_ms
                    ),
                });
            }
            return None;
        }
        let request = if self.requests.is_empty() {
            if now_ms - self.last_end_ms < self.interval_ms {
                return None;
            }
            Request {
                kind: SnapshotKind::Checkpoint,
                stop: false,
            }
        } else {
            self.requests.remove(0)
        };
        let id = self.next_id;
        self.next_id += 1;
        self.in_flight = Some(InFlight {
            id,
            kind: request.kind,
            stop: request.stop,
            started_ms: now_ms,
            acks: BTreeMap::new(),
            finalizing: false,
        });
        Some(Action::Trigger {
            id,
            kind: request.kind,
            stop: request.stop,
        })
    }

    /// A worker's acknowledgement; the last one asks for the manifest.
    pub fn on_ack(&mut self, report: AckReport) -> Option<Action> {
        let f = self.in_flight.as_mut()?;
        if report.id != f.id || report.worker >= self.parallelism || f.finalizing {
            return None;
        }
        f.acks.insert(report.worker, report);
        if f.acks.len() as u32 == self.parallelism {
            f.finalizing = true;
            return Some(Action::WriteManifest {
                id: f.id,
                kind: f.kind,
                stop: f.stop,
                started_ms: f.started_ms,
                reports: f.acks.values().cloned().collect(),
            });
        }
        None
    }

    /// A worker declined: the snapshot is aborted.
    pub fn on_decline(&mut self, id: u64, reason: String, now_ms: i64) -> Option<Action> {
        let f = self.in_flight.as_ref()?;
        if f.id != id || f.finalizing {
            return None;
        }
        self.give_up(now_ms);
        Some(Action::Abort { id, reason })
    }

    /// The manifest of `id` was written.
    pub fn completed(&mut self, id: u64, now_ms: i64) {
        if self.in_flight.as_ref().is_some_and(|f| f.id == id) {
            self.in_flight = None;
            self.last_end_ms = now_ms;
        }
    }

    /// Writing the manifest of `id` failed: the runtime aborts it at every worker.
    pub fn failed(&mut self, id: u64, now_ms: i64) {
        if self.in_flight.as_ref().is_some_and(|f| f.id == id) {
            self.give_up(now_ms);
        }
    }

    /// Ends the snapshot in flight without a manifest; a stop is retried, not forgotten.
    fn give_up(&mut self, now_ms: i64) {
        if let Some(f) = self.in_flight.take() {
            if f.stop {
                self.requests.insert(
                    0,
                    Request {
                        kind: f.kind,
                        stop: true,
                    },
                );
            }
        }
        self.last_end_ms = now_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: u64, worker: u32) -> AckReport {
        AckReport {
            id,
            worker,
            state_files: Vec::new(),
            source_offsets: Vec::new(),
            watermark_ms: None,
            pending_output: Vec::new(),
            state_backend: "heap".into(),
        }
    }

    fn trigger(c: &mut Coordinator, now: i64) -> u64 {
        match c.tick(now) {
            Some(Action::Trigger { id, .. }) => id,
            other => panic!("expected a trigger, got {other:?}"),
        }
    }

    #[test]
    fn a_checkpoint_completes_only_when_every_worker_acknowledged() {
        let mut c = Coordinator::new(3, 1000, 10_000, 5, 0);
        assert_eq!(c.tick(999), None, "not due before the interval");
        let id = trigger(&mut c, 1000);
        assert_eq!(id, 5);
        assert_eq!(c.tick(1500), None, "one in flight at a time");
        assert_eq!(c.on_ack(ack(id, 2)), None);
        assert_eq!(c.on_ack(ack(id, 0)), None);
        assert_eq!(c.on_ack(ack(4, 1)), None, "an ack of another id is ignored");
        assert_eq!(c.on_ack(ack(id, 7)), None, "no such worker");
        match c.on_ack(ack(id, 1)) {
            Some(Action::WriteManifest { id: 5, reports, .. }) => {
                assert_eq!(
                    reports.iter().map(|r| r.worker).collect::<Vec<_>>(),
                    vec![0, 1, 2]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.tick(50_000),
            None,
            "no timeout while the manifest is written"
        );
        c.completed(5, 2000);
        assert_eq!(c.tick(2500), None);
        assert_eq!(trigger(&mut c, 3000), 6);
    }

    #[test]
    fn a_timeout_aborts_and_processing_goes_on() {
        let mut c = Coordinator::new(2, 1000, 5000, 1, 0);
        let id = trigger(&mut c, 1000);
        assert_eq!(c.on_ack(ack(id, 0)), None);
        assert_eq!(c.tick(5999), None);
        match c.tick(6000) {
            Some(Action::Abort { id: 1, reason }) => assert!(reason.contains("[1]"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.on_ack(ack(id, 1)), None, "a late ack of an aborted id");
        assert_eq!(c.in_flight(), None);
        assert_eq!(trigger(&mut c, 7000), 2, "ids are never reused");
    }

    #[test]
    fn a_stop_waits_for_the_checkpoint_in_flight_and_is_retried_after_a_failure() {
        let mut c = Coordinator::new(1, 60_000, 5000, 1, 0);
        c.request(Request {
            kind: SnapshotKind::Checkpoint,
            stop: true,
        });
        assert!(c.stopping());
        match c.tick(1) {
            Some(Action::Trigger {
                id: 1, stop: true, ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.on_ack(ack(1, 0)),
            Some(Action::WriteManifest { stop: true, .. })
        ));
        c.failed(1, 10);
        match c.tick(11) {
            Some(Action::Trigger {
                id: 2, stop: true, ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            c.on_decline(2, "disk full".into(), 12),
            Some(Action::Abort { id: 2, .. })
        ));
        assert!(c.stopping(), "still stopping after a decline");
    }

    #[test]
    fn control_messages_are_json() {
        let m = Control::Trigger {
            id: 3,
            kind: SnapshotKind::Savepoint,
            stop: true,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"trigger":{"id":3,"kind":"savepoint","stop":true}}"#
        );
        assert_eq!(serde_json::from_str::<Control>(&text).unwrap(), m);
    }
}
