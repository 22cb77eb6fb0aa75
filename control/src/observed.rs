//! What a runtime observes of a job and hands to the planner: the clock, the workers, the
//! snapshots in storage and the savepoint request on worker 0's board.
//!
//! The planner reads nothing else, so every decision can be replayed from an `Observed`.

/// One observation of a job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Wall-clock time of the observation, epoch milliseconds.
    pub now_ms: i64,
    /// `metadata.generation` of the spec being planned for.
    pub generation: i64,
    /// The StreamJob is being deleted.
    pub deleting: bool,
    /// The job's workers, if any exist.
    pub workers: Option<Workers>,
    /// Completed snapshots in storage.
    pub snapshots: Snapshots,
    /// The newest savepoint request worker 0 knows of, if any.
    pub savepoint_request: Option<SavepointRequest>,
}

/// The workers that exist (running, starting, failing or exiting).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Workers {
    /// The deployment they were started as ([`rivulet_api::job_status::Deployment::id`]).
    pub deployment: u64,
    /// Workers that exist.
    pub count: u32,
    /// Workers that are ready (state restored, sources assigned).
    pub ready: u32,
    /// Every worker exited cleanly after a stop-with-savepoint.
    pub stopped: bool,
    /// The workers crash-loop: why, as the workers report it.
    pub failure: Option<String>,
    /// Records waiting in the source topics, summed over the workers.
    pub lag: i64,
    /// Records read per second, summed over the workers.
    pub records_per_second: f64,
    /// The highest backpressure ratio of a worker, 0 to 1.
    pub backpressure: f64,
    /// The mean busy ratio of the workers that reported, 0 to 1.
    pub busy: f64,
    /// Workers whose status was read (the metrics above are theirs).
    pub reporting: u32,
    /// Source partitions the reporting workers are assigned, each counted once.
    pub partitions: u32,
    /// The lowest event-time watermark of the workers that have one, epoch milliseconds.
    pub watermark_ms: Option<i64>,
}

impl Workers {
    /// Takes the lag, ratios, partitions and watermark from the workers' status documents:
    /// the lag summed, backpressure the highest, busy the mean, the watermark the lowest.
    /// (The read rate comes from the runtime, which sees the counters over time.)
    pub fn read_statuses<'s>(
        &mut self,
        statuses: impl IntoIterator<Item = &'s rivulet_api::status::WorkerStatus>,
    ) {
        let mut partitions = std::collections::BTreeSet::new();
        let (mut lag, mut backpressure, mut busy, mut n) = (0, 0.0f64, 0.0, 0u32);
        let mut watermark: Option<i64> = None;
        for s in statuses {
            n += 1;
            lag += s.lag;
            backpressure = backpressure.max(s.backpressure_ratio);
            busy += s.busy_ratio.clamp(0.0, 1.0);
            if let Some(w) = s.watermark_ms {
                watermark = Some(watermark.map_or(w, |m| m.min(w)));
            }
            partitions.extend(s.partitions.iter().map(|p| (p.topic.as_str(), p.partition)));
        }
        self.lag = lag;
        self.backpressure = backpressure;
        self.busy = if n > 0 { busy / f64::from(n) } else { 0.0 };
        self.reporting = n;
        self.partitions = partitions.len() as u32;
        self.watermark_ms = watermark;
    }
}

/// Completed snapshots of the job, as storage lists them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshots {
    /// The newest completed checkpoint.
    pub latest_checkpoint: Option<Snapshot>,
    /// Completed savepoints, oldest first.
    pub savepoints: Vec<Snapshot>,
}

impl Snapshots {
    /// The newest completed snapshot id, checkpoint or savepoint.
    pub fn newest_id(&self) -> Option<u64> {
        let savepoint = self.savepoints.iter().map(|s| s.id).max();
        let checkpoint = self.latest_checkpoint.as_ref().map(|c| c.id);
        savepoint.max(checkpoint)
    }

    /// The newest completed snapshot, checkpoint or savepoint.
    pub fn newest(&self) -> Option<&Snapshot> {
        self.savepoints
            .iter()
            .chain(self.latest_checkpoint.iter())
            .max_by_key(|s| s.id)
    }

    /// The first completed savepoint with an id above `baseline`.
    pub fn savepoint_after(&self, baseline: Option<u64>) -> Option<&Snapshot> {
        self.savepoints
            .iter()
            .filter(|s| baseline.is_none_or(|b| s.id > b))
            .min_by_key(|s| s.id)
    }
}

/// A completed snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub id: u64,
    /// Its directory URL.
    pub path: String,
    pub size_bytes: u64,
    /// When it was taken, epoch milliseconds.
    pub time_ms: i64,
    /// How long it took, milliseconds.
    pub duration_ms: u64,
}

/// A savepoint request on worker 0's board.
#[derive(Clone, Debug, PartialEq)]
pub struct SavepointRequest {
    /// Stop the job once it completes.
    pub stop: bool,
    /// When it was made, epoch milliseconds.
    pub requested_at_ms: i64,
    pub state: RequestState,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RequestState {
    /// Queued or being taken.
    Pending,
    /// Taken; the snapshot is in storage.
    Completed,
    /// Given up, with the reason.
    Failed(String),
}

impl SavepointRequest {
    /// The newest request on worker 0's board (`GET /savepoints`), as the planner reads it.
    pub fn newest_on_board(
        board: &[rivulet_api::status::SavepointStatus],
    ) -> Option<SavepointRequest> {
        let b = board.iter().max_by_key(|s| s.id)?;
        Some(SavepointRequest {
            stop: b.stop,
            requested_at_ms: b.requested_at_ms,
            state: match b.state.as_str() {
                "completed" => RequestState::Completed,
                "failed" => RequestState::Failed(
                    b.error
                        .clone()
                        .unwrap_or_else(|| "the savepoint failed".into()),
                ),
                _ => RequestState::Pending,
            },
        })
    }
}

/// The shortest span a [`RateMeter`] measures over: workers publish their counters every
/// half second, so shorter spans alternate between nothing and twice the rate.
pub const RATE_SPAN_MS: i64 = 2_000;

/// The rate of a counter a runtime polls (records a worker has read): measured over at least
/// [`RATE_SPAN_MS`]; between measurements it holds the last one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateMeter {
    base: Option<(u64, i64)>,
    rate: f64,
}

impl RateMeter {
    /// Takes the counter's value at `at_ms` (epoch milliseconds); returns the rate per second.
    pub fn update(&mut self, count: u64, at_ms: i64) -> f64 {
        match self.base {
            // A counter that went back belongs to a restarted worker: start over.
            Some((before, _)) if count < before => {
                self.base = Some((count, at_ms));
                self.rate = 0.0;
            }
            Some((before, since)) if at_ms - since >= RATE_SPAN_MS => {
                self.rate = (count - before) as f64 * 1000.0 / (at_ms - since) as f64;
                self.base = Some((count, at_ms));
            }
            Some(_) => {}
            None => self.base = Some((count, at_ms)),
        }
        self.rate
    }
}
