//! The rescale phase: how long a job is down when it is rescaled by stop-with-savepoint and
//! restore at another parallelism, and what the savepoint costs.
//!
//! Each step `a:b` ([`parse_step`]) is measured on its own: a fresh source topic
//! (`<variant>-rescale<step>-<a>to<b>`, [`step_name`]) fed at a fixed rate for the whole step
//! ([`latency::produce_until`], wall-clock event times like the latency phase), so records
//! keep arriving while the job is down and there is input to resume on; a job at
//! parallelism `a` (with a control token) runs on it for the warm-up and until worker 0
//! reports a completed checkpoint. Then, from the stop request (time 0):
//!
//! 1. `POST /savepoints {"stop": true}` to worker 0; `GET /savepoints/N` every
//!    [`POLL`] until `completed`: the savepoint's time, path and size;
//! 2. every old worker exits (worker 0 keeps answering a few seconds after a stop with a
//!    savepoint, so "stopped" is also noted: every worker exited or, worker 0, reports phase
//!    `stopped`);
//! 3. the same job (name, state storage, sink topic) is started at parallelism `b` with
//!    `spec.restoreFrom` = the savepoint's path, new data dirs and ports: "running" once every
//!    new worker's `/status` phase is `running`, "resumed" once, besides, the job's
//!    `rivulet_records_in_total` (from `/metrics`, live, where `/status` lags up to 500 ms)
//!    is above 0. **Downtime** = stop request until resumed.
//!
//! Each new worker's `restoredBytes` and `restoredFrom` are read from `/status`; a worker that
//! restored from anything but the savepoint fails the step, as does an old worker still
//! running [`AFTER_COORDINATOR`] after worker 0 exited. A failed step is tried again on a
//! fresh job and topic, [`ATTEMPTS`] times in all ([`run_steps`]); the row names the failures. Output correctness is tested
//! elsewhere (tests/tests/savepoints.rs); this only measures. The pure parts (step parsing,
//! response parsing, the timeline) are apart from the I/O in [`run_step`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rivulet_api::status::{WorkerStatus, FINAL_STATUS_FILE};
use rivulet_tests::{http_request, Tansu, WorkerProcess};
use rivulet_worker::savepoints::SavepointStatus;

use crate::latency;
use crate::queries::Variant;
use crate::runner::{self, Job, Options};

/// The default steps: up from one worker to two, and back down.
pub const DEFAULT_STEPS: &str = "1:2,2:1";

/// How often the phase polls the workers and the savepoint.
pub const POLL: Duration = Duration::from_millis(20);

/// How long the workers of a step get to be ready, and the new ones to resume.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the old job gets, from the stop request, to take its savepoint and exit.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Attempts per step: a step that fails is tried again on a fresh job (and topic).
pub const ATTEMPTS: u32 = 3;

/// How long the other old workers may run on once worker 0 has exited.
pub const AFTER_COORDINATOR: Duration = Duration::from_secs(10);

/// How long after the warm-up the job gets to report its first checkpoint.
pub const CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(60);

/// The counter that shows records flowing again.
pub const RECORDS_IN_METRIC: &str = "rivulet_records_in_total";

/// What the rescale phase measures.
#[derive(Clone, Debug)]
pub struct RescaleOptions {
    pub variant: Variant,
    /// Each step on its own job, in order.
    pub steps: Vec<Step>,
    /// Events per second produced to the step's source topic.
    pub rate: u64,
    /// Seconds the job runs at the old parallelism before the stop (state builds up).
    pub warmup_seconds: u64,
}

/// One rescale: from `from` workers to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub from: u32,
    pub to: u32,
}

/// Parses one step, `a:b` (`1:2`), both at least 1; for clap.
pub fn parse_step(s: &str) -> Result<Step, String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("a rescale step is FROM:TO (e.g. 1:2), got {s:?}"))?;
    let n = |x: &str| match x.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "a rescale step's parallelisms are whole numbers >= 1, got {s:?}"
        )),
    };
    Ok(Step {
        from: n(a)?,
        to: n(b)?,
    })
}

/// What one step measured; times in ms.
#[derive(Clone, Debug, PartialEq)]
pub struct RescaleResult {
    pub variant: Variant,
    pub step: Step,
    /// Stop request until the savepoint was reported `completed` (`None`: not seen, its
    /// path came from worker 0's final status file).
    pub savepoint_ms: Option<f64>,
    pub savepoint_bytes: Option<u64>,
    /// Stop request until every old worker exited or (worker 0) reported `stopped`.
    pub stopped_ms: Option<f64>,
    /// Stop request until every old worker process exited.
    pub exited_ms: Option<f64>,
    /// Spawning the new workers until every one reports phase `running`.
    pub start_to_running_ms: Option<f64>,
    /// Stop request until every new worker runs and records flow.
    pub downtime_ms: Option<f64>,
    /// Each new worker's `restoredBytes`, in ordinal order.
    pub restored_bytes: Vec<u64>,
    /// Events produced to the step's topic.
    pub produced: u64,
    /// Why each earlier attempt of this step failed (first lines), in order.
    pub failed_attempts: Vec<String>,
    pub error: Option<String>,
}

impl RescaleResult {
    /// A step that failed before it measured anything.
    pub fn failed(variant: Variant, step: Step, error: String) -> RescaleResult {
        RescaleResult {
            variant,
            step,
            savepoint_ms: None,
            savepoint_bytes: None,
            stopped_ms: None,
            exited_ms: None,
            start_to_running_ms: None,
            downtime_ms: None,
            restored_bytes: Vec::new(),
            produced: 0,
            failed_attempts: Vec::new(),
            error: Some(error),
        }
    }
}

/// When things happened, in ms after the stop request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeline {
    pub savepoint: Option<f64>,
    pub stopped: Option<f64>,
    pub exited: f64,
    /// The new workers were spawned...
    pub spawned: f64,
    /// ...all ran...
    pub running: f64,
    /// ...and records flowed.
    pub resumed: f64,
}

impl Timeline {
    /// The step's figures (with no restored bytes, produced events or error yet).
    pub fn result(
        &self,
        variant: Variant,
        step: Step,
        savepoint_bytes: Option<u64>,
    ) -> RescaleResult {
        RescaleResult {
            variant,
            step,
            savepoint_ms: self.savepoint,
            savepoint_bytes,
            stopped_ms: self.stopped,
            exited_ms: Some(self.exited),
            start_to_running_ms: Some(self.running - self.spawned),
            downtime_ms: Some(self.resumed),
            restored_bytes: Vec::new(),
            produced: 0,
            failed_attempts: Vec::new(),
            error: None,
        }
    }
}

/// `GET /savepoints/N`'s answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SavepointState {
    /// `pending` or `in-progress`.
    Waiting,
    Completed {
        path: String,
        size_bytes: u64,
        snapshot_id: Option<u64>,
    },
    Failed(String),
}

/// The request id in `POST /savepoints`'s answer, `{"id": N, ...}`.
pub fn parse_request_id(body: &str) -> anyhow::Result<u64> {
    let v: serde_json::Value = serde_json::from_str(body)
        .with_context(|| format!("POST /savepoints answered {body:?}"))?;
    v["id"]
        .as_u64()
        .with_context(|| format!("no id in POST /savepoints' answer {body:?}"))
}

/// Reads `GET /savepoints/N`'s answer (the worker's [`SavepointStatus`]).
pub fn parse_savepoint(body: &str) -> anyhow::Result<SavepointState> {
    let s: SavepointStatus =
        serde_json::from_str(body).with_context(|| format!("GET /savepoints answered {body:?}"))?;
    Ok(match s.state.as_str() {
        "pending" | "in-progress" => SavepointState::Waiting,
        "completed" => SavepointState::Completed {
            path: s
                .path
                .with_context(|| format!("a completed savepoint without a path: {body}"))?,
            size_bytes: s.size_bytes.unwrap_or(0),
            snapshot_id: s.snapshot_id,
        },
        "failed" => SavepointState::Failed(s.error.unwrap_or_else(|| "no reason given".into())),
        _ => bail!("unknown savepoint state in {body}"),
    })
}

/// The value of counter `name` (every series summed) in Prometheus/OpenMetrics text;
/// `None` if it has none.
pub fn counter(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labelled) = rest.strip_prefix('{') {
            labelled.split_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            // Another metric whose name starts with this one.
            None
        };
        if let Some(x) = value
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            *total.get_or_insert(0.0) += x;
        }
    }
    total
}

/// Every worker answered and reports phase `running`.
pub fn all_running(statuses: &[Option<WorkerStatus>]) -> bool {
    !statuses.is_empty()
        && statuses
            .iter()
            .all(|s| s.as_ref().is_some_and(|s| s.phase == "running"))
}

/// An error if a worker restored from anything but snapshot `id`.
pub fn check_restored(statuses: &[WorkerStatus], id: u64) -> anyhow::Result<()> {
    for (i, s) in statuses.iter().enumerate() {
        if s.restored_from != Some(id) {
            bail!(
                "new worker {i} restored from {:?}, not the savepoint {id}",
                s.restored_from
            );
        }
    }
    Ok(())
}

/// The job and source topic of step `ordinal` (from 1), attempt `attempt` (from 1):
/// `q5-heap-eo-rescale1-1to2`, `q5-heap-eo-rescale1-1to2-a2`.
pub fn step_name(v: Variant, ordinal: usize, attempt: u32, step: Step) -> String {
    let base = format!("{}-rescale{ordinal}-{}to{}", v.id(), step.from, step.to);
    match attempt {
        0 | 1 => base,
        n => format!("{base}-a{n}"),
    }
}

/// The first line of an error.
fn first_line(e: &str) -> String {
    e.lines().next().unwrap_or_default().to_string()
}

/// One line for the progress log.
pub fn progress_line(r: &RescaleResult) -> String {
    let ms = |x: Option<f64>| x.map_or_else(|| "-".into(), |x| format!("{x:.0}"));
    format!(
        "{} rescale {}->{}: savepoint {} ms ({} bytes), stopped {} ms, exited {} ms, start->running {} ms, downtime {} ms, restored {:?} bytes, {} events produced{}{}",
        r.variant.id(),
        r.step.from,
        r.step.to,
        ms(r.savepoint_ms),
        r.savepoint_bytes.map_or_else(|| "-".into(), |b| b.to_string()),
        ms(r.stopped_ms),
        ms(r.exited_ms),
        ms(r.start_to_running_ms),
        ms(r.downtime_ms),
        r.restored_bytes,
        r.produced,
        match r.failed_attempts.len() {
            0 => String::new(),
            n => format!(", after {n} failed attempt(s)"),
        },
        r.error
            .as_deref()
            .map(|e| format!(" ERROR {e}"))
            .unwrap_or_default()
    )
}

/// Every step of `ro`, in order, each tried up to [`ATTEMPTS`] times; `progress` gets a line
/// per attempt that failed and one per step.
pub fn run_steps(
    tansu: &Tansu,
    worker_bin: &Path,
    opts: &Options,
    ro: &RescaleOptions,
    progress: &mut impl FnMut(&str),
) -> Vec<RescaleResult> {
    let mut rows = Vec::with_capacity(ro.steps.len());
    for (i, &step) in ro.steps.iter().enumerate() {
        let mut failed = Vec::new();
        let mut r = loop {
            let attempt = failed.len() as u32 + 1;
            match run_step(tansu, worker_bin, opts, ro, i + 1, attempt, step) {
                Ok(r) => break r,
                Err(e) => {
                    let e = format!("{e:#}");
                    if attempt >= ATTEMPTS {
                        break RescaleResult::failed(ro.variant, step, e);
                    }
                    progress(&format!(
                        "{} rescale {}->{}, attempt {attempt} of {ATTEMPTS} failed: {e}",
                        ro.variant.id(),
                        step.from,
                        step.to
                    ));
                    failed.push(first_line(&e));
                }
            }
        };
        r.failed_attempts = failed;
        progress(&progress_line(&r));
        rows.push(r);
    }
    rows
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Measures one step of `ro.variant` (see the module doc).
pub fn run_step(
    tansu: &Tansu,
    worker_bin: &Path,
    opts: &Options,
    ro: &RescaleOptions,
    ordinal: usize,
    attempt: u32,
    step: Step,
) -> anyhow::Result<RescaleResult> {
    let v = ro.variant;
    let name = step_name(v, ordinal, attempt, step);
    tansu.create_topic(&name, opts.partitions)?;
    let token = format!("rivulet-bench-{}-{name}", std::process::id());
    let mut job = Job::create(tansu, opts, v, &name, &name, step.from)?
        .with_env("RIVULET_CONTROL_TOKEN", &token);
    let mut old = job.spawn(tansu, worker_bin)?;
    let ready = runner::wait_alive(&mut old, START_TIMEOUT, || {
        job.http.iter().all(|h| runner::get(h, "/readyz").is_some())
    });
    match ready {
        Ok(true) => {}
        Ok(false) => {
            runner::stop(&mut old);
            bail!(
                "the job at parallelism {} was not ready within {} s",
                step.from,
                START_TIMEOUT.as_secs()
            );
        }
        Err(e) => {
            runner::stop(&mut old);
            return Err(e);
        }
    }
    let bootstrap = tansu.bootstrap();
    let done = AtomicBool::new(false);
    // At most this long a step: the producer stops by itself after it.
    let cap = ro.rate.max(1) * (ro.warmup_seconds + 600);
    let (measured, produced) = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            latency::produce_until(
                &bootstrap,
                &name,
                opts.partitions,
                opts.seed,
                ro.rate,
                cap,
                &done,
            )
        });
        let measured = measure_step(tansu, worker_bin, ro, step, &mut job, &mut old, &token);
        done.store(true, Ordering::Relaxed);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the producer thread panicked")));
        (measured, produced)
    });
    runner::stop(&mut old);
    let produced = produced.context("produce the step's events")?;
    let mut r = measured?;
    r.produced = produced.events;
    Ok(r)
}

/// The step with its old workers running and ready: warm-up, stop with a savepoint, restart
/// at `step.to`, until resumed; the new workers are stopped (SIGTERM) before it returns.
fn measure_step(
    tansu: &Tansu,
    worker_bin: &Path,
    ro: &RescaleOptions,
    step: Step,
    job: &mut Job,
    old: &mut [WorkerProcess],
    token: &str,
) -> anyhow::Result<RescaleResult> {
    let http0 = job.http[0].clone();
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str())];

    // Warm-up: the job runs `warmup_seconds`, has read records and completed a checkpoint.
    let warm_start = Instant::now();
    let warmup = Duration::from_secs(ro.warmup_seconds);
    let warm = runner::wait_alive(old, warmup + CHECKPOINT_TIMEOUT, || {
        if warm_start.elapsed() < warmup {
            return false;
        }
        let statuses: Vec<WorkerStatus> = job
            .http
            .iter()
            .filter_map(|h| runner::worker_status(h))
            .collect();
        let records: u64 = statuses.iter().map(|s| s.records_in).sum();
        records > 0
            && statuses
                .first()
                .is_some_and(|s| s.worker == 0 && s.last_checkpoint.is_some())
    })?;
    if !warm {
        bail!(
            "no records read or no checkpoint completed within {} s of warm-up",
            (warmup + CHECKPOINT_TIMEOUT).as_secs()
        );
    }

    // Stop with a savepoint.
    let t0 = Instant::now();
    let r = http_request(
        &http0,
        "POST",
        "/savepoints",
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
        ],
        br#"{"stop": true}"#,
        Duration::from_secs(5),
    )?;
    if r.status != 202 {
        bail!("POST /savepoints: {} {}", r.status, r.text());
    }
    let request = parse_request_id(&r.text())?;
    let mut savepoint: Option<(f64, String, u64, Option<u64>)> = None;
    let mut stopped = None;
    let mut exited_at: Vec<Option<f64>> = vec![None; old.len()];
    // The last answer about the savepoint, for an error.
    let mut last_answer = String::from("no answer");
    loop {
        if savepoint.is_none() {
            if let Some(body) =
                runner::get_with(&http0, &format!("/savepoints/{request}"), &headers)
            {
                last_answer = body.clone();
                match parse_savepoint(&body)? {
                    SavepointState::Waiting => {}
                    SavepointState::Completed {
                        path,
                        size_bytes,
                        snapshot_id,
                    } => savepoint = Some((ms_since(t0), path, size_bytes, snapshot_id)),
                    SavepointState::Failed(why) => bail!("the savepoint failed: {why}"),
                }
            }
        }
        for (w, at) in old.iter_mut().zip(exited_at.iter_mut()) {
            if at.is_none() {
                if let Some(status) = w.try_exit_status() {
                    if !status.success() {
                        bail!(
                            "worker {} exited ({status}) after the stop request\n{}",
                            w.label(),
                            w.log_tail(30)
                        );
                    }
                    *at = Some(ms_since(t0));
                }
            }
        }
        if stopped.is_none() && exited_at.iter().skip(1).all(Option::is_some) {
            let zero_stopped = exited_at[0].is_some()
                || runner::worker_status(&http0).is_some_and(|s| s.phase == "stopped");
            if zero_stopped {
                stopped = Some(ms_since(t0));
            }
        }
        if exited_at.iter().all(Option::is_some) {
            break;
        }
        let zero_gone_for = exited_at[0].map(|at| ms_since(t0) - at);
        if zero_gone_for.is_some_and(|ms| ms > AFTER_COORDINATOR.as_secs_f64() * 1000.0) {
            // The others leave on worker 0's last message, before it lingers and exits.
            let running: Vec<String> = old
                .iter_mut()
                .filter_map(|w| w.is_running().then(|| w.log_tail(30)))
                .collect();
            bail!(
                "old workers still ran {} s after worker 0 exited (savepoint {request}: \
                 {last_answer}; exited at {exited_at:?} ms)\n{}",
                AFTER_COORDINATOR.as_secs(),
                running.join("\n")
            );
        }
        if t0.elapsed() > STOP_TIMEOUT {
            let running: Vec<String> = old
                .iter_mut()
                .filter_map(|w| w.is_running().then(|| w.log_tail(30)))
                .collect();
            bail!(
                "the job at parallelism {} did not stop within {} s of the stop request \
                 (savepoint {request}: {last_answer}; exited at {exited_at:?} ms)\n{}",
                step.from,
                STOP_TIMEOUT.as_secs(),
                running.join("\n")
            );
        }
        std::thread::sleep(POLL);
    }
    let exited = ms_since(t0);
    // Should the answer have been missed, worker 0's final status names the savepoint.
    let (savepoint_ms, path, bytes, snapshot_id) = match savepoint {
        Some((ms, path, bytes, id)) => (Some(ms), path, bytes, id),
        None => {
            let file = job.data_dir(0).join(FINAL_STATUS_FILE);
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("no savepoint seen, and no {}", file.display()))?;
            let last = runner::parse_status(&text)
                .and_then(|s| s.last_savepoint)
                .with_context(|| format!("no savepoint seen, nor in {}", file.display()))?;
            (None, last.path, last.size_bytes, Some(last.id))
        }
    };

    // Restart at the new parallelism from the savepoint.
    job.rescale(step.to, &path)?;
    let spawned = ms_since(t0);
    let spawn_at = Instant::now();
    let mut new = job.spawn(tansu, worker_bin)?;
    let resumed = wait_resumed(job, &mut new, spawn_at, t0);
    runner::stop(&mut new);
    let (running, resumed, statuses) = resumed?;
    if let Some(id) = snapshot_id {
        check_restored(&statuses, id)?;
    }
    let timeline = Timeline {
        savepoint: savepoint_ms,
        stopped,
        exited,
        spawned,
        running,
        resumed,
    };
    let mut r = timeline.result(ro.variant, step, Some(bytes));
    r.restored_bytes = statuses.iter().map(|s| s.restored_bytes).collect();
    Ok(r)
}

/// Polls the new workers until every one runs and records flow; returns the times both
/// happened (ms after `t0`) and the workers' status documents when they all ran.
fn wait_resumed(
    job: &Job,
    workers: &mut [WorkerProcess],
    spawn_at: Instant,
    t0: Instant,
) -> anyhow::Result<(f64, f64, Vec<WorkerStatus>)> {
    let mut running: Option<(f64, Vec<WorkerStatus>)> = None;
    loop {
        runner::exited(workers, || {
            " while restoring from the savepoint".to_string()
        })?;
        if running.is_none() {
            let statuses: Vec<Option<WorkerStatus>> =
                job.http.iter().map(|h| runner::worker_status(h)).collect();
            if all_running(&statuses) {
                running = Some((ms_since(t0), statuses.into_iter().flatten().collect()));
            }
        }
        if let Some((at, statuses)) = &running {
            let records: f64 = job
                .http
                .iter()
                .filter_map(|h| runner::get(h, "/metrics"))
                .filter_map(|text| counter(&text, RECORDS_IN_METRIC))
                .sum();
            if records > 0.0 {
                return Ok((*at, ms_since(t0), statuses.clone()));
            }
        }
        if spawn_at.elapsed() > START_TIMEOUT {
            bail!(
                "the job at parallelism {} did not {} within {} s",
                job.http.len(),
                if running.is_some() {
                    "read records"
                } else {
                    "run"
                },
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_from_to() {
        assert_eq!(parse_step("1:2"), Ok(Step { from: 1, to: 2 }));
        assert_eq!(parse_step(" 4 : 1 "), Ok(Step { from: 4, to: 1 }));
        assert_eq!(parse_step("2:2"), Ok(Step { from: 2, to: 2 }));
        for bad in ["1", "1-2", "0:1", "1:0", "a:2", "1:2:3", ""] {
            assert!(parse_step(bad).is_err(), "{bad}");
        }
        let steps: Vec<Step> = DEFAULT_STEPS
            .split(',')
            .map(parse_step)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(steps, [Step { from: 1, to: 2 }, Step { from: 2, to: 1 }]);
        let v = Variant::parse("q5-heap-eo").unwrap();
        assert_eq!(step_name(v, 2, 1, steps[1]), "q5-heap-eo-rescale2-2to1");
        assert_eq!(step_name(v, 2, 3, steps[1]), "q5-heap-eo-rescale2-2to1-a3");
    }

    #[test]
    fn savepoint_answers_parse() {
        assert_eq!(parse_request_id(r#"{"id": 7, "stop": true}"#).unwrap(), 7);
        assert!(parse_request_id(r#"{"error": "nope"}"#).is_err());
        assert!(parse_request_id("not json").is_err());
        let answer = |state: &str, f: &dyn Fn(&mut SavepointStatus)| {
            let mut s = SavepointStatus {
                id: 1,
                state: state.into(),
                stop: true,
                requested_at_ms: 5,
                snapshot_id: None,
                path: None,
                size_bytes: None,
                error: None,
            };
            f(&mut s);
            serde_json::to_string(&s).unwrap()
        };
        assert_eq!(
            parse_savepoint(&answer("pending", &|_| {})).unwrap(),
            SavepointState::Waiting
        );
        assert_eq!(
            parse_savepoint(&answer("in-progress", &|s| s.snapshot_id = Some(4))).unwrap(),
            SavepointState::Waiting
        );
        let completed = answer("completed", &|s| {
            s.snapshot_id = Some(4);
            s.path = Some("file:///s/savepoints/00000000000000000004".into());
            s.size_bytes = Some(1234);
        });
        assert_eq!(
            parse_savepoint(&completed).unwrap(),
            SavepointState::Completed {
                path: "file:///s/savepoints/00000000000000000004".into(),
                size_bytes: 1234,
                snapshot_id: Some(4),
            }
        );
        assert_eq!(
            parse_savepoint(&answer("failed", &|s| s.error = Some("timed out".into()))).unwrap(),
            SavepointState::Failed("timed out".into())
        );
        assert!(parse_savepoint(&answer("completed", &|_| {})).is_err());
        assert!(parse_savepoint(&answer("weird", &|_| {})).is_err());
        assert!(parse_savepoint("not json").is_err());
    }

    #[test]
    fn counters_sum_their_series_only() {
        let text = "\
# TYPE rivulet_records_in counter
rivulet_records_in_total 12
rivulet_records_in_total_other 99
rivulet_records_out_total 5
rivulet_dead_letter_records_total{reason=\"late\"} 2
rivulet_dead_letter_records_total{reason=\"malformed\"} 3 1700000000
# EOF
";
        assert_eq!(counter(text, RECORDS_IN_METRIC), Some(12.0));
        assert_eq!(
            counter(text, "rivulet_dead_letter_records_total"),
            Some(5.0)
        );
        assert_eq!(counter(text, "rivulet_nothing_total"), None);
        assert_eq!(
            counter("rivulet_records_in_total 0\n", RECORDS_IN_METRIC),
            Some(0.0)
        );
    }

    fn worker(phase: &str, restored_from: Option<u64>) -> WorkerStatus {
        WorkerStatus {
            phase: phase.into(),
            restored_from,
            ..WorkerStatus::default()
        }
    }

    #[test]
    fn running_means_every_worker_answered_running() {
        let run = Some(worker("running", None));
        assert!(all_running(&[run.clone(), run.clone()]));
        assert!(!all_running(&[run.clone(), None]));
        assert!(!all_running(&[run, Some(worker("connecting", None))]));
        assert!(!all_running(&[]));
    }

    #[test]
    fn every_worker_must_restore_the_savepoint() {
        let ok = [worker("running", Some(9)), worker("running", Some(9))];
        assert!(check_restored(&ok, 9).is_ok());
        let checkpoint = [worker("running", Some(9)), worker("running", Some(8))];
        assert!(check_restored(&checkpoint, 9).is_err());
        assert!(check_restored(&[worker("running", None)], 9).is_err());
    }

    #[test]
    fn the_timeline_gives_the_figures() {
        let v = Variant::parse("q5-heap-eo").unwrap();
        let t = Timeline {
            savepoint: Some(120.0),
            stopped: Some(150.0),
            exited: 3150.0,
            spawned: 3160.0,
            running: 3400.0,
            resumed: 3450.0,
        };
        let r = t.result(v, Step { from: 1, to: 2 }, Some(4096));
        assert_eq!(r.savepoint_ms, Some(120.0));
        assert_eq!(r.savepoint_bytes, Some(4096));
        assert_eq!(r.stopped_ms, Some(150.0));
        assert_eq!(r.exited_ms, Some(3150.0));
        assert_eq!(r.start_to_running_ms, Some(240.0));
        assert_eq!(r.downtime_ms, Some(3450.0));
        assert_eq!(r.error, None);
        let line = progress_line(&r);
        assert!(
            line.starts_with("q5-heap-eo rescale 1->2: savepoint 120 ms (4096 bytes)"),
            "{line}"
        );
        let failed = RescaleResult::failed(v, Step { from: 2, to: 1 }, "boom".into());
        assert!(progress_line(&failed).ends_with("ERROR boom"));
    }
}
