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
    /// The lowest event-time watermark of the workers that have one, epoch milliseconds.
    pub watermark_ms: Option<i64>,
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
