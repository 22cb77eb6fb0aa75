//! The exactly-once sink's commits, off the processing thread.
//!
//! When checkpoint `n` completes, its epoch's output (already safe in the checkpoint) is
//! handed to one committer thread, which produces it and commits it with the epoch's marker
//! in one transaction ([`KafkaSink::commit_epoch`]) while the worker goes on processing
//! epoch `n + 1`. Commits run one at a time, in epoch order.
//!
//! One rule keeps restores exact: a worker acknowledges snapshot `n + 1` only after every
//! earlier epoch it was told is complete has committed ([`Committer::wait_idle`] before the
//! acknowledgement). A restore from checkpoint `n + 1` then only ever has to settle epoch
//! `n + 1`'s own output, as it always did. The queue holds at most [`MAX_QUEUED`] epochs; a
//! worker that would queue more waits, and that wait is backpressure. Dropping the committer
//! finishes what was queued and joins the thread, so a restarted attempt never opens its
//! sink (and reads the marker) while an older commit is still under way.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::kafka::sink::{KafkaSink, SinkError};
use crate::metrics::Metrics;
use crate::output::Destination;

use super::{now_ms, Epoch, Fault, RuntimeError};

/// Completed epochs waiting for their commit, at most (the one being committed included).
pub(super) const MAX_QUEUED: usize = 2;

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(u64, Epoch)>,
    /// An epoch is being committed.
    busy: bool,
    /// The committer failed: the error, until the worker takes it.
    failed: Option<SinkError>,
    /// The committer stopped after a failure (what is queued is not committed).
    dead: bool,
    closing: bool,
    /// A committed epoch emptied, keeping its capacity for the worker's next one.
    spare: Option<Epoch>,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic on the committer thread poisons nothing the queue relies on.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The committer thread of one exactly-once sink.
pub(super) struct Committer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the thread that commits epochs through `sink`.
    pub(super) fn start(
        sink: Arc<KafkaSink>,
        metrics: Arc<Metrics>,
        fault: Option<Fault>,
    ) -> Result<Committer, RuntimeError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sink-commit".into())
                .spawn(move || commit_loop(&shared, &sink, &metrics, fault))
                .map_err(|e| RuntimeError::Config(format!("cannot start the committer: {e}")))?
        };
        Ok(Committer {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues epoch `id`'s output for its commit; waits while [`MAX_QUEUED`] epochs are
    /// already queued. Returns how long it waited.
    pub(super) fn submit(&self, id: u64, epoch: Epoch) -> Result<Duration, RuntimeError> {
        let t0 = Instant::now();
        let mut q = self.shared.lock();
        loop {
            check(&mut q)?;
            if q.waiting.len() + usize::from(q.busy) < MAX_QUEUED {
                break;
            }
            q = self
                .shared
                .changed
                .wait(q)
                .unwrap_or_else(|p| p.into_inner());
        }
        q.waiting.push_back((id, epoch));
        self.shared.changed.notify_all();
        Ok(t0.elapsed())
    }

    /// Waits until every queued epoch is committed. Returns how long it waited.
    pub(super) fn wait_idle(&self) -> Result<Duration, RuntimeError> {
        let t0 = Instant::now();
        let mut q = self.shared.lock();
        loop {
            check(&mut q)?;
            if q.waiting.is_empty() && !q.busy {
                return Ok(t0.elapsed());
            }
            q = self
                .shared
                .changed
                .wait(q)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// An empty epoch with the capacity of one already committed, if there is one: a new
    /// epoch that starts with room for its output neither regrows its buffers nor faults
    /// fresh pages in (a twelfth of a worker's time with many window results).
    pub(super) fn spare(&self) -> Option<Epoch> {
        self.shared.lock().spare.take()
    }

    /// Whether every queued epoch is committed (the committer's failure, once it failed).
    pub(super) fn is_idle(&self) -> Result<bool, RuntimeError> {
        let mut q = self.shared.lock();
        check(&mut q)?;
        Ok(q.waiting.is_empty() && !q.busy)
    }

    /// The committer's failure, once it has failed.
    pub(super) fn check(&self) -> Result<(), RuntimeError> {
        check(&mut self.shared.lock())
    }
}

fn check(q: &mut Queue) -> Result<(), RuntimeError> {
    if let Some(e) = q.failed.take() {
        return Err(e.into());
    }
    if q.dead {
        return Err(RuntimeError::Sink(SinkError::Other(
            "an earlier commit failed".into(),
        )));
    }
    Ok(())
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the committer thread panicked");
            }
        }
    }
}

fn commit_loop(shared: &Shared, sink: &KafkaSink, metrics: &Metrics, fault: Option<Fault>) {
    loop {
        let (id, epoch) = {
            let mut q = shared.lock();
            loop {
                if let Some(next) = q.waiting.pop_front() {
                    q.busy = true;
                    break next;
                }
                if q.closing {
                    return;
                }
                q = shared.changed.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        Fault::before_commit(fault, id);
        let result = sink.commit_epoch(id, &epoch.records);
        if result.is_ok() {
            let now = now_ms();
            for (r, t) in epoch.records.iter().zip(&epoch.triggers) {
                if r.destination == Destination::Sink {
                    metrics.records_out.inc();
                    metrics
                        .end_to_end_latency_seconds
                        .observe((now - t).max(0) as f64 / 1000.0);
                }
            }
        }
        let mut epoch = epoch;
        epoch.records.clear();
        epoch.triggers.clear();
        let mut q = shared.lock();
        q.busy = false;
        q.spare = Some(epoch);
        if let Err(e) = result {
            tracing::error!(epoch = id, error = %e, "cannot commit the epoch's output");
            q.failed = Some(e);
            q.dead = true;
            q.waiting.clear();
            shared.changed.notify_all();
            return;
        }
        shared.changed.notify_all();
    }
}
