//! The benchmark runner through Kafka: a tansu broker on loopback, a source topic filled
//! with Nexmark events, the machine's ceiling (raw rdkafka consumption of that topic), then
//! every variant at every parallelism, one job of n `rivulet-worker` processes per run,
//! timed until the workers have read every event; then the rescale phase
//! ([`crate::rescale`]); last, the live latency phase.
//!
//! **Parallelism.** A run at parallelism n is one job (`spec.parallelism: n`) of n workers
//! on loopback, started like `rivulet run` starts them: worker i with `--index i
//! --parallelism n`, its own HTTP port and data dir, and (when n > 1) `--peers` listing
//! every worker's shuffle address, distinct free `127.0.0.1` ports. Worker i reads the
//! Kafka partitions p with `p mod n == i`, so the figures are sums over the workers:
//! `recordsIn`, the records handled, CPU time.
//!
//! **Repeats.** Throughput through Kafka is noisy when the broker, the workers and the
//! bench share a small machine, so every (variant, parallelism) is run [`Options::repeat`]
//! times (round-robin: each once, then again), each in a fresh temp dir with its own job
//! name and sink and dead-letter topics (`<variant id>-p<n>-r<run>-out`); the report uses
//! medians. The ceiling is measured [`Options::ceiling_runs`] times and its median used too.
//!
//! A run's time goes from spawning the workers until the sum of their `/status`
//! `recordsIn` equals the events (process start-up, restore, the shuffle mesh and consumer
//! start included; the start-up part, until every worker's `/readyz` answers, is reported
//! separately). CPU time is the sum of the workers' `utime + stime` from
//! `/proc/<pid>/stat`; "events/s per core" is events divided by CPU seconds, read once
//! every record was handled (processed, filtered, late, malformed or keyless, summed over
//! the workers: the time for that is reported too).
//!
//! **Checkpoints.** While it polls a run, the runner notes every distinct checkpoint worker
//! 0 (the coordinator) reports in `/status` `lastCheckpoint` (its duration, trigger until the
//! manifest is written, and the state bytes it references) and keeps those triggered before
//! the last record was handled; the report pools them per variant and parallelism.
//!
//! **Latency.** The throughput runs read a pre-filled backlog, so their latency means
//! nothing. The live phase gives each variant a fresh, empty source topic (`<id>-live`),
//! starts a worker on it, produces events at a fixed rate with event times following the
//! wall clock ([`latency::produce_live`]), waits until the worker has read them all and one
//! more checkpoint has committed, then reads p50 and p99 from the worker's
//! `rivulet_end_to_end_latency_seconds` histogram. This phase runs at parallelism 1 only.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use rivulet_api::status::{CheckpointInfo, WorkerStatus};
use rivulet_api::StreamJob;
use rivulet_api::WorkerLaunch;
use rivulet_tests::{
    free_port, http_request, KafkaProducer, ProcessBuilder, ProduceRecord, Tansu, WorkerProcess,
};
use rivulet_worker::runtime::now_ms;

use crate::dataset::Dataset;
use crate::inprocess::{self, InProcessResult};
use crate::latency::{self, Histogram, LATENCY_METRIC};
use crate::queries::{self, Variant};
use crate::rescale::{self, RescaleOptions, RescaleResult};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The events of the source topic and of the in-process runs.
    pub dataset: Dataset,
    pub events: u64,
    pub partitions: i32,
    /// The seed of the live phases' Nexmark events (rescale, latency).
    pub seed: u64,
    /// The number of results every run must give, computed apart from the pipeline (the
    /// Flink comparison's truth); `None` checks runs against the in-process run only.
    pub expected_out: Option<u64>,
    pub checkpoint_ms: u64,
    pub variants: Vec<Variant>,
    /// Every variant is measured at each of these parallelisms (workers of one job), in
    /// this order; see [`parallelisms`].
    pub parallelisms: Vec<u32>,
    /// Give up on one run after this long.
    pub run_timeout: Duration,
    /// Ceiling measurements (the median is used).
    pub ceiling_runs: u32,
    /// Throughput runs of each variant (the median is reported).
    pub repeat: u32,
    /// Also measure each query × backend in process (no Kafka).
    pub in_process: bool,
    /// Live latency phase: events per second produced...
    pub latency_rate: u64,
    /// ...for this many seconds per variant; 0 skips the phase.
    pub latency_seconds: u64,
    /// The rescale phase; `None` skips it.
    pub rescale: Option<RescaleOptions>,
}

/// Filling the source topic.
#[derive(Clone, Debug)]
pub struct Fill {
    pub events: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// One raw-consume measurement.
#[derive(Clone, Debug)]
pub struct Ceiling {
    pub records: u64,
    pub seconds: f64,
    pub cpu_seconds: f64,
    /// The broker's CPU seconds over the same span.
    pub broker_cpu_seconds: f64,
}

impl Ceiling {
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.seconds
    }
}

/// Events per CPU second (0 when no CPU time was measured).
pub fn per_core(events: u64, cpu_seconds: f64) -> f64 {
    if cpu_seconds > 0.0 {
        events as f64 / cpu_seconds
    } else {
        0.0
    }
}

/// One run's result: a variant at a parallelism; counts and CPU time are sums over the
/// workers.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub variant: Variant,
    /// `recordsIn` when the run ended (== events unless it timed out).
    pub records_in: u64,
    pub records_processed: u64,
    pub records_out: u64,
    pub records_late: u64,
    pub seconds: f64,
    /// Spawn until every input record was handled (processed, filtered, late, malformed
    /// or keyless); `None` if that did not happen within the run timeout.
    pub handled_seconds: Option<f64>,
    /// Spawn until the workers' summed `recordsOut` reached [`Options::expected_out`]
    /// (with exactly-once, `recordsOut` counts committed results); `None` without one or
    /// if that did not happen within the run timeout.
    pub out_seconds: Option<f64>,
    /// Spawn until every worker's `/readyz` answered.
    pub startup_seconds: Option<f64>,
    pub cpu_seconds: f64,
    /// The broker's (tansu's) CPU seconds while the workers ran.
    pub broker_cpu_seconds: f64,
    pub timed_out: bool,
    pub error: Option<String>,
    /// Every distinct checkpoint worker 0 reported (`/status` `lastCheckpoint`) that started
    /// before the last record was handled, in the order seen.
    pub checkpoints: Vec<CheckpointInfo>,
}

impl RunResult {
    pub fn rate(&self) -> f64 {
        self.records_in as f64 / self.seconds
    }

    pub fn rate_per_core(&self) -> f64 {
        per_core(self.records_in, self.cpu_seconds)
    }
}

/// Median, smallest and largest of some measurements.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no values; the median of an even count is the mean of the middle two.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
        let mut v: Vec<f64> = values.into_iter().collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        };
        Some(Summary {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// Every throughput run of one variant at one parallelism.
#[derive(Clone, Debug)]
pub struct VariantRuns {
    pub variant: Variant,
    /// Workers of the job.
    pub parallelism: u32,
    pub runs: Vec<RunResult>,
}

impl VariantRuns {
    /// The runs that read every event without an error.
    pub fn completed(&self) -> impl Iterator<Item = &RunResult> {
        self.runs
            .iter()
            .filter(|r| r.error.is_none() && !r.timed_out)
    }

    /// `f` over the completed runs.
    pub fn summary(&self, f: impl Fn(&RunResult) -> f64) -> Option<Summary> {
        Summary::of(self.completed().map(f))
    }

    /// The median events/s over the completed runs.
    pub fn median_rate(&self) -> Option<f64> {
        self.summary(RunResult::rate).map(|s| s.median)
    }

    /// The checkpoints of the completed runs, pooled; `None` if none was seen.
    pub fn checkpoints(&self) -> Option<CheckpointSummary> {
        CheckpointSummary::of(self.completed().flat_map(|r| &r.checkpoints))
    }
}

/// Checkpoints pooled over runs: how many, their duration and their size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CheckpointSummary {
    pub count: usize,
    /// `durationMs`: from the trigger until the checkpoint's manifest was written.
    pub duration_ms: Summary,
    /// `sizeBytes`: the state bytes the checkpoint references.
    pub size_bytes: Summary,
}

impl CheckpointSummary {
    /// `None` for no checkpoints.
    pub fn of<'a>(checkpoints: impl IntoIterator<Item = &'a CheckpointInfo>) -> Option<Self> {
        let all: Vec<&CheckpointInfo> = checkpoints.into_iter().collect();
        Some(CheckpointSummary {
            count: all.len(),
            duration_ms: Summary::of(all.iter().map(|c| c.duration_ms as f64))?,
            size_bytes: Summary::of(all.iter().map(|c| c.size_bytes as f64))?,
        })
    }
}

/// Adds `c` to `seen` unless a checkpoint with its id is there already.
pub fn note_checkpoint(seen: &mut Vec<CheckpointInfo>, c: Option<&CheckpointInfo>) {
    if let Some(c) = c {
        if !seen.iter().any(|s| s.id == c.id) {
            seen.push(c.clone());
        }
    }
}

/// The checkpoints of `seen` triggered at or before `end_ms` (epoch ms).
pub fn started_by(seen: Vec<CheckpointInfo>, end_ms: i64) -> Vec<CheckpointInfo> {
    seen.into_iter().filter(|c| c.time_ms <= end_ms).collect()
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// In-process results, one per query × backend among the variants.
    pub in_process: Vec<InProcessResult>,
    pub fill: Fill,
    pub ceilings: Vec<Ceiling>,
    /// One entry per variant and parallelism: variants in the order given, each at every
    /// parallelism in the order given ([`groups`]).
    pub variants: Vec<VariantRuns>,
    /// The rescale phase, one per step (empty when skipped).
    pub rescale: Vec<RescaleResult>,
    /// The live latency phase, one per variant (empty when skipped).
    pub latency: Vec<LatencyResult>,
}

impl Outcome {
    /// The median ceiling, records/s.
    pub fn ceiling(&self) -> Option<f64> {
        Summary::of(self.ceilings.iter().map(Ceiling::rate)).map(|s| s.median)
    }
}

/// One variant's live latency measurement.
#[derive(Clone, Debug)]
pub struct LatencyResult {
    pub variant: Variant,
    /// The target produce rate, events/s, and for how long.
    pub rate: u64,
    pub seconds: u64,
    /// Events produced, and the achieved rate (until all were acknowledged).
    pub produced: u64,
    pub produce_rate: f64,
    /// The worker's `recordsIn` when the histogram was read.
    pub records_in: u64,
    /// Output records observed by the histogram (its count).
    pub outputs: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub error: Option<String>,
}

pub const SOURCE_TOPIC: &str = "nexmark";

/// How long the live phase waits for the worker to read everything produced.
pub const LIVE_DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the workers of a job get to take their final checkpoint and exit after the
/// stop request, before they are killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The parallelisms to measure: `list` in its order without repeats; an error if it is
/// empty or holds 0.
pub fn parallelisms(list: &[u32]) -> anyhow::Result<Vec<u32>> {
    if list.is_empty() {
        bail!("no parallelism given");
    }
    let mut out = Vec::with_capacity(list.len());
    for &n in list {
        if n == 0 {
            bail!("a parallelism must be at least 1");
        }
        if !out.contains(&n) {
            out.push(n);
        }
    }
    Ok(out)
}

/// What is measured, grouped as the report shows it: each variant (in order) at each
/// parallelism (in order).
pub fn groups(variants: &[Variant], parallelisms: &[u32]) -> Vec<(Variant, u32)> {
    variants
        .iter()
        .flat_map(|v| parallelisms.iter().map(move |n| (*v, *n)))
        .collect()
}

/// Runs the whole suite. `progress` gets one line per step.
pub fn run(opts: &Options, mut progress: impl FnMut(&str)) -> anyhow::Result<Outcome> {
    let worker_bin = worker_bin();
    if !worker_bin.is_file() {
        bail!(
            "{} does not exist; run `make build` (or cargo build --release --workspace)",
            worker_bin.display()
        );
    }
    // The in-process run of the same events is the reference every run's output is checked
    // against; without `--in-process` it still runs, for its counts only.
    let reference = run_in_process(opts, &mut progress)?;
    let in_process = if opts.in_process {
        reference.clone()
    } else {
        Vec::new()
    };

    let mut tansu = Tansu::start()?;
    let broker_pid = tansu.process().pid();
    let bootstrap = tansu.bootstrap();
    progress(&format!("tansu on {bootstrap}"));
    tansu.create_topic(SOURCE_TOPIC, opts.partitions)?;
    let fill = fill_topic(
        &bootstrap,
        SOURCE_TOPIC,
        opts.partitions,
        &opts.dataset,
        opts.events,
    )?;
    progress(&format!(
        "filled {SOURCE_TOPIC}: {} events, {:.1} MB in {:.1} s ({:.0} events/s)",
        fill.events,
        fill.bytes as f64 / 1e6,
        fill.seconds,
        fill.events as f64 / fill.seconds
    ));

    let mut ceilings = Vec::new();
    for _ in 0..opts.ceiling_runs.max(1) {
        let broker0 = cpu_seconds(broker_pid)?;
        let c = raw_consume(&bootstrap, SOURCE_TOPIC, opts.partitions, opts.events)?;
        let c = Ceiling {
            broker_cpu_seconds: cpu_seconds(broker_pid)? - broker0,
            ..c
        };
        progress(&format!(
            "ceiling: {} records in {:.2} s = {:.0} records/s ({:.2} CPU s, broker {:.2} CPU s)",
            c.records,
            c.seconds,
            c.rate(),
            c.cpu_seconds,
            c.broker_cpu_seconds
        ));
        ceilings.push(c);
    }

    let mut variants: Vec<VariantRuns> = groups(&opts.variants, &opts.parallelisms)
        .into_iter()
        .map(|(variant, parallelism)| VariantRuns {
            variant,
            parallelism,
            runs: Vec::new(),
        })
        .collect();
    let repeat = opts.repeat.max(1);
    for run in 1..=repeat {
        for vr in &mut variants {
            let (v, n) = (vr.variant, vr.parallelism);
            let r = run_variant(&tansu, broker_pid, &worker_bin, opts, v, n, run)
                .map(|r| check_against(r, &reference, opts.expected_out))
                .unwrap_or_else(|e| RunResult {
                    variant: v,
                    records_in: 0,
                    records_processed: 0,
                    records_out: 0,
                    records_late: 0,
                    seconds: 0.0,
                    handled_seconds: None,
                    out_seconds: None,
                    startup_seconds: None,
                    cpu_seconds: 0.0,
                    broker_cpu_seconds: 0.0,
                    timed_out: false,
                    error: Some(format!("{e:#}")),
                    checkpoints: Vec::new(),
                });
            progress(&format!(
                "{} at parallelism {n}, run {run}/{repeat}: {} in {:.2} s = {:.0} events/s, {:.0} events/s per core, {} checkpoints{}{}",
                v.id(),
                r.records_in,
                r.seconds,
                r.rate(),
                r.rate_per_core(),
                r.checkpoints.len(),
                if r.timed_out { " (TIMED OUT)" } else { "" },
                r.error
                    .as_deref()
                    .map(|e| format!(" ERROR {e}"))
                    .unwrap_or_default()
            ));
            vr.runs.push(r);
        }
    }

    let rescales = match &opts.rescale {
        Some(ro) => rescale::run_steps(&tansu, &worker_bin, opts, ro, &mut progress),
        None => Vec::new(),
    };

    let mut latency = Vec::new();
    if opts.latency_seconds > 0 {
        for v in &opts.variants {
            let r = run_live(&tansu, &worker_bin, opts, *v).unwrap_or_else(|e| LatencyResult {
                variant: *v,
                rate: opts.latency_rate,
                seconds: opts.latency_seconds,
                produced: 0,
                produce_rate: 0.0,
                records_in: 0,
                outputs: 0,
                p50_ms: None,
                p99_ms: None,
                error: Some(format!("{e:#}")),
            });
            progress(&format!(
                "{} live: {} events at {:.0}/s, {} read, {} outputs, p50 {} ms, p99 {} ms{}",
                v.id(),
                r.produced,
                r.produce_rate,
                r.records_in,
                r.outputs,
                two_decimals(r.p50_ms),
                two_decimals(r.p99_ms),
                r.error
                    .as_deref()
                    .map(|e| format!(" ERROR {e}"))
                    .unwrap_or_default()
            ));
            latency.push(r);
        }
    }
    Ok(Outcome {
        in_process,
        fill,
        ceilings,
        variants,
        rescale: rescales,
        latency,
    })
}

/// A run whose records processed, late or out differ from the in-process run of the same
/// query and backend over the same events, or whose records out differ from `expected_out`
/// (computed apart from the pipeline), is a failed run (its error says how), never a
/// figure. Records out are not compared for windows of processing time, whose number of
/// results depends on the wall clock. A run that timed out is left as it is.
pub fn check_against(
    mut r: RunResult,
    reference: &[InProcessResult],
    expected_out: Option<u64>,
) -> RunResult {
    if r.error.is_some() || r.timed_out {
        return r;
    }
    if let Some(want) = expected_out.filter(|want| *want != r.records_out) {
        r.error = Some(format!(
            "wrong output: {} records out where the truth, computed from the events, is {want}",
            r.records_out
        ));
        return r;
    }
    let Some(want) = reference
        .iter()
        .find(|i| i.query == r.variant.query && i.backend == r.variant.backend)
    else {
        r.error = Some("no in-process run to check its output against".into());
        return r;
    };
    let out_differs = !want.processing_time && r.records_out != want.records_out;
    if out_differs
        || r.records_late != want.records_late
        || r.records_processed != want.records_processed
    {
        r.error = Some(format!(
            "wrong output: {} records processed, {} late and {} out, where the in-process \
             run of the same events gave {}, {} and {}{}",
            r.records_processed,
            r.records_late,
            r.records_out,
            want.records_processed,
            want.records_late,
            want.records_out,
            if want.processing_time {
                " (records out of processing-time windows are not compared)"
            } else {
                ""
            }
        ));
    }
    r
}

/// A figure with two decimals, or `-`.
pub fn two_decimals(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.2}"))
}

/// Each query × backend among the variants, in process, over the same events.
fn run_in_process(
    opts: &Options,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<Vec<InProcessResult>> {
    let mut todo = Vec::new();
    for v in &opts.variants {
        if !todo.contains(&(v.query, v.backend)) {
            todo.push((v.query, v.backend));
        }
    }
    let start = Instant::now();
    let records = inprocess::generate(&opts.dataset, opts.events, SOURCE_TOPIC, opts.partitions);
    progress(&format!(
        "in process: generated {} events in {:.1} s (not timed)",
        records.len(),
        start.elapsed().as_secs_f64()
    ));
    let scratch = std::env::temp_dir();
    let mut results = Vec::new();
    for (query, backend) in todo {
        let r = inprocess::run(
            queries::query(query)?,
            backend,
            &records,
            opts.partitions,
            &scratch,
        )?;
        progress(&format!(
            "in process {query} {}: {:.0} events/s, {:.0} events/s per core, {} out, p50 {} ms, p99 {} ms",
            queries::backend_name(backend),
            r.rate(),
            r.rate_per_core(),
            r.records_out,
            two_decimals(r.p50_ms),
            two_decimals(r.p99_ms),
        ));
        if let Some(want) = opts.expected_out.filter(|want| *want != r.records_out) {
            bail!(
                "in process, {query} on {} gave {} results where the truth, computed from the events, is {want}: the run is wrong, so no figure is reported",
                queries::backend_name(backend),
                r.records_out
            );
        }
        results.push(r);
    }
    Ok(results)
}

/// `rivulet-worker` next to this binary, else where the harness looks
/// (`$RIVULET_BIN_DIR`, `$CARGO_TARGET_DIR/release`).
pub fn worker_bin() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join("rivulet-worker");
            if p.is_file() {
                return p;
            }
        }
    }
    rivulet_tests::bin_path("rivulet-worker")
}

/// Writes events `0..events` to `topic`, round-robin over its partitions, unkeyed, and
/// waits until all are acknowledged.
pub fn fill_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    dataset: &Dataset,
    events: u64,
) -> anyhow::Result<Fill> {
    let start = Instant::now();
    let producer = KafkaProducer::idempotent(bootstrap)?;
    let mut bytes = 0;
    let mut batch = Vec::with_capacity(10_000);
    let mut n = 0;
    while n < events {
        batch.clear();
        let end = (n + 10_000).min(events);
        for i in n..end {
            let value = dataset.json(i);
            bytes += value.len() as u64;
            batch.push(ProduceRecord::new(value).with_partition((i % partitions as u64) as i32));
        }
        producer.send(topic, &batch)?;
        n = end;
    }
    producer.flush()?;
    if producer.delivered() != events {
        bail!(
            "only {} of {events} events acknowledged",
            producer.delivered()
        );
    }
    Ok(Fill {
        events,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The ceiling: a plain `BaseConsumer` (read_committed, like the worker) assigned every
/// partition from the beginning, counting records until `expected` arrived. Nothing is
/// decoded. Timed from creating the consumer; CPU is this process's over the same span.
pub fn raw_consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: u64,
) -> anyhow::Result<Ceiling> {
    let cpu0 = cpu_seconds(std::process::id())?;
    let start = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", format!("rivulet-bench-raw-{}", free_port()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .context("create the raw consumer")?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut records = 0u64;
    let mut bytes = 0u64;
    let deadline = start + Duration::from_secs(600);
    while records < expected {
        if Instant::now() > deadline {
            bail!("raw consumer read only {records} of {expected} records in 600 s");
        }
        // Errors (a broker hiccup) are transient; librdkafka retries them.
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            records += 1;
            bytes += m.payload_len() as u64;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = cpu_seconds(std::process::id())? - cpu0;
    std::hint::black_box(bytes);
    Ok(Ceiling {
        records,
        seconds,
        cpu_seconds,
        broker_cpu_seconds: 0.0,
    })
}

/// `k` distinct TCP ports on 127.0.0.1 that were free a moment ago: all are bound at once,
/// so none repeats, then released for the workers to take.
fn free_ports(k: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..k)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// One job, set up in a fresh temp dir (job file, snapshots, a data dir per worker) with
/// its own sink and dead-letter topics created; [`Job::spawn`] starts its workers, and
/// [`Job::rescale`] sets up the same job again at another parallelism.
pub(crate) struct Job {
    dir: tempfile::TempDir,
    label: String,
    manifest: StreamJob,
    /// 0 as created; each [`Job::rescale`] adds one (a new job file and data dirs).
    incarnation: u32,
    /// Extra environment of every worker.
    env: Vec<(String, String)>,
    /// Each worker's HTTP address, in ordinal order.
    pub(crate) http: Vec<String>,
    /// Each worker's shuffle address, in ordinal order.
    peers: Vec<String>,
}

impl Job {
    /// Variant `v` reading `source_topic`, run by `parallelism` workers. `name` (e.g.
    /// `q5-heap-eo-p2-r2`) names the job (`nexmark-<name>`) and its sink and dead-letter
    /// topics (`<name>-out`, `<name>-dlq`), so no two jobs share output, transactional ids
    /// or consumer groups.
    pub(crate) fn create(
        tansu: &Tansu,
        opts: &Options,
        v: Variant,
        source_topic: &str,
        name: &str,
        parallelism: u32,
    ) -> anyhow::Result<Job> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rivulet-bench-{name}-"))
            .tempdir()?;
        let storage = format!("file://{}", dir.path().join("snapshots").display());
        let manifest = renamed(
            v.manifest(source_topic, opts.checkpoint_ms, &storage)?,
            name,
            parallelism,
        )?;
        tansu.create_topic(&manifest.spec.pipeline.sink.topic, opts.partitions)?;
        if let Some(dlq) = &manifest.spec.pipeline.dead_letter.topic {
            tansu.create_topic(dlq, 1)?;
        }
        let mut job = Job {
            dir,
            label: name.to_string(),
            manifest,
            incarnation: 0,
            env: Vec::new(),
            http: Vec::new(),
            peers: Vec::new(),
        };
        job.write()?;
        Ok(job)
    }

    /// Every worker also gets `key=value` in its environment.
    pub(crate) fn with_env(mut self, key: &str, value: &str) -> Job {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The same job (name, state storage, topics) at `parallelism`, started from the
    /// snapshot at `restore_from` (`spec.restoreFrom`), with a new job file, new data dirs
    /// and new ports. Call it once the previous workers have exited.
    pub(crate) fn rescale(&mut self, parallelism: u32, restore_from: &str) -> anyhow::Result<()> {
        self.manifest = restored(&self.manifest, parallelism, restore_from)?;
        self.incarnation += 1;
        self.write()
    }

    /// Writes the job file of this incarnation and picks the workers' ports.
    fn write(&mut self) -> anyhow::Result<()> {
        std::fs::write(self.job_file(), serde_yaml::to_string(&self.manifest)?)?;
        let n = self.manifest.spec.parallelism as usize;
        let ports = free_ports(2 * n)?;
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let (http, peers) = addresses.split_at(n);
        self.http = http.to_vec();
        self.peers = peers.to_vec();
        Ok(())
    }

    fn job_file(&self) -> PathBuf {
        match self.incarnation {
            0 => self.dir.path().join("job.yaml"),
            k => self.dir.path().join(format!("job-{k}.yaml")),
        }
    }

    /// Worker `i`'s data dir in this incarnation.
    pub(crate) fn data_dir(&self, i: usize) -> PathBuf {
        let root = match self.incarnation {
            0 => "data".to_string(),
            k => format!("data-{k}"),
        };
        self.dir.path().join(root).join(i.to_string())
    }

    /// Starts every worker of the job, in ordinal order.
    pub(crate) fn spawn(
        &self,
        tansu: &Tansu,
        worker_bin: &Path,
    ) -> anyhow::Result<Vec<WorkerProcess>> {
        let job = self.job_file();
        let bootstrap = tansu.bootstrap();
        let mut workers = Vec::with_capacity(self.http.len());
        let base = match self.incarnation {
            0 => self.label.clone(),
            k => format!("{}-{k}", self.label),
        };
        for (i, http) in self.http.iter().enumerate() {
            let data_dir = self.data_dir(i);
            let label = if self.http.len() > 1 {
                format!("{base}-{i}")
            } else {
                base.clone()
            };
            let spawned = ProcessBuilder::new(worker_bin)
                .label(label)
                .args(
                    WorkerLaunch::new(&job, i as u32, self.http.len() as u32, &data_dir, http)
                        .with_peers(&self.peers)
                        .with_bootstrap(&bootstrap)
                        .args(),
                )
                .env("RIVULET_LOG", "warn")
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .spawn();
            match spawned {
                Ok(w) => workers.push(w),
                Err(e) => {
                    stop(&mut workers);
                    return Err(e);
                }
            }
        }
        Ok(workers)
    }
}

/// `m` with its job named `nexmark-<name>`, its sink and dead-letter topics `<name>-out`
/// and `<name>-dlq`, and run by `parallelism` workers.
fn renamed(mut m: StreamJob, name: &str, parallelism: u32) -> anyhow::Result<StreamJob> {
    m.metadata.name = Some(format!("nexmark-{name}"));
    m.spec.parallelism = parallelism;
    m.spec.pipeline.sink.topic = format!("{name}-out");
    m.spec.pipeline.dead_letter.topic = Some(format!("{name}-dlq"));
    let errors = rivulet_api::validate::validate(&m);
    if !errors.is_empty() {
        bail!("{name}: invalid manifest: {errors:?}");
    }
    Ok(m)
}

/// `m` run by `parallelism` workers, starting from the snapshot at `restore_from`.
fn restored(m: &StreamJob, parallelism: u32, restore_from: &str) -> anyhow::Result<StreamJob> {
    let mut m = m.clone();
    m.spec.parallelism = parallelism;
    m.spec.restore_from = Some(restore_from.to_string());
    let errors = rivulet_api::validate::validate(&m);
    if !errors.is_empty() {
        bail!(
            "{}: invalid manifest at parallelism {parallelism}: {errors:?}",
            m.job_name()
        );
    }
    Ok(m)
}

/// An error naming the first worker that has exited, `context` (e.g. ` after the job
/// read 10 records`) and its log tail; `Ok` while every worker runs.
pub(crate) fn exited(
    workers: &mut [WorkerProcess],
    context: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    for w in workers.iter_mut() {
        if let Some(status) = w.try_exit_status() {
            bail!(
                "worker {} exited ({status}){}\n{}",
                w.label(),
                context(),
                w.log_tail(30)
            );
        }
    }
    Ok(())
}

/// Run `run` (from 1) of variant `v` at `parallelism` over the filled source topic.
fn run_variant(
    tansu: &Tansu,
    broker_pid: u32,
    worker_bin: &Path,
    opts: &Options,
    v: Variant,
    parallelism: u32,
    run: u32,
) -> anyhow::Result<RunResult> {
    let name = format!("{}-p{parallelism}-r{run}", v.id());
    let job = Job::create(tansu, opts, v, SOURCE_TOPIC, &name, parallelism)?;

    let broker0 = cpu_seconds(broker_pid)?;
    let start = Instant::now();
    let mut workers = job.spawn(tansu, worker_bin)?;
    let measured = measure(&job, &mut workers, broker_pid, opts, start);
    stop(&mut workers);
    let m = measured?;
    Ok(RunResult {
        variant: v,
        records_in: m.last.records_in,
        records_processed: m.last.records_processed,
        records_out: m.last.records_out,
        records_late: m.last.records_late,
        seconds: m.seconds,
        handled_seconds: m.handled_seconds,
        out_seconds: m.out_seconds,
        startup_seconds: m.startup,
        cpu_seconds: m.cpu_seconds,
        broker_cpu_seconds: m.broker_cpu_seconds - broker0,
        timed_out: m.timed_out,
        error: None,
        checkpoints: m.checkpoints,
    })
}

/// What [`measure`] saw of one run.
struct Measured {
    /// The summed status once the counts settled.
    last: Status,
    seconds: f64,
    handled_seconds: Option<f64>,
    out_seconds: Option<f64>,
    startup: Option<f64>,
    cpu_seconds: f64,
    /// The broker's CPU time (absolute) when every record was handled.
    broker_cpu_seconds: f64,
    timed_out: bool,
    /// Worker 0's checkpoints that started before the last record was handled.
    checkpoints: Vec<CheckpointInfo>,
}

/// Polls the job's workers from `start` (their spawn) until their summed `recordsIn`
/// reaches the events, every record was handled and, with [`Options::expected_out`], every
/// result is out (or the run timeout), reads the
/// workers' and the broker's CPU time, then waits (untimed) for the counts to settle.
/// Meanwhile it notes every checkpoint worker 0 reports.
fn measure(
    job: &Job,
    workers: &mut [WorkerProcess],
    broker_pid: u32,
    opts: &Options,
    start: Instant,
) -> anyhow::Result<Measured> {
    let pids: Vec<u32> = workers.iter().map(WorkerProcess::pid).collect();
    let deadline = start + opts.run_timeout;
    let mut ready = vec![false; job.http.len()];
    let mut startup = None;
    // Each worker's last answer: one that misses a poll keeps its previous counts.
    let mut each = vec![Status::default(); job.http.len()];
    let mut timed_out = false;
    let mut seconds = None;
    let mut handled_seconds = None;
    let mut out_seconds = None;
    let mut checkpoints = Vec::new();
    loop {
        exited(workers, || {
            format!(
                " after the job read {} records",
                Status::sum(&each).records_in
            )
        })?;
        if startup.is_none() {
            for (r, http) in ready.iter_mut().zip(&job.http) {
                *r = *r || get(http, "/readyz").is_some();
            }
            if ready.iter().all(|r| *r) {
                startup = Some(start.elapsed().as_secs_f64());
            }
        }
        for (i, (s, http)) in each.iter_mut().zip(&job.http).enumerate() {
            if let Some(now) = worker_status(http) {
                if i == 0 {
                    note_checkpoint(&mut checkpoints, now.last_checkpoint.as_ref());
                }
                *s = Status::of(&now);
            }
        }
        let total = Status::sum(&each);
        if seconds.is_none() && total.records_in >= opts.events {
            seconds = Some(start.elapsed().as_secs_f64());
        }
        if handled_seconds.is_none() && total.handled >= opts.events {
            handled_seconds = Some(start.elapsed().as_secs_f64());
        }
        if out_seconds.is_none() && opts.expected_out.is_some_and(|n| total.records_out >= n) {
            out_seconds = Some(start.elapsed().as_secs_f64());
        }
        if handled_seconds.is_some() && (out_seconds.is_some() || opts.expected_out.is_none()) {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = seconds.is_none();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let end_ms = now_ms();
    let seconds = seconds.unwrap_or_else(|| start.elapsed().as_secs_f64());
    let mut cpu = 0.0;
    for pid in pids {
        cpu += cpu_seconds(pid)?;
    }
    let broker_cpu_seconds = cpu_seconds(broker_pid)?;
    // Untimed: let the last batches finish, so the counts in the report are final
    // (until no worker's recordsOut or recordsProcessed has moved for 1.5 s, at most 5 s).
    let settle = Instant::now();
    let mut changed = Instant::now();
    while settle.elapsed() < Duration::from_secs(5)
        && changed.elapsed() < Duration::from_millis(1500)
    {
        std::thread::sleep(Duration::from_millis(100));
        for (i, (s, http)) in each.iter_mut().zip(&job.http).enumerate() {
            if let Some(now) = worker_status(http) {
                if i == 0 {
                    // A checkpoint that started while records were read completes here.
                    note_checkpoint(&mut checkpoints, now.last_checkpoint.as_ref());
                }
                let now = Status::of(&now);
                if now.records_out != s.records_out || now.records_processed != s.records_processed
                {
                    changed = Instant::now();
                }
                *s = now;
            }
        }
    }
    Ok(Measured {
        last: Status::sum(&each),
        seconds,
        handled_seconds,
        out_seconds,
        startup,
        cpu_seconds: cpu,
        broker_cpu_seconds,
        timed_out,
        checkpoints: started_by(checkpoints, end_ms),
    })
}

/// The live latency phase of variant `v`: a fresh source topic `<id>-live`, a worker on
/// it (ready before the first event), events produced at `opts.latency_rate` for
/// `opts.latency_seconds`; once the worker has read them all (or [`LIVE_DRAIN_TIMEOUT`]
/// passed) and one more checkpoint interval + 1 s has passed, so exactly-once output is
/// committed, p50 and p99 of the worker's latency histogram.
fn run_live(
    tansu: &Tansu,
    worker_bin: &Path,
    opts: &Options,
    v: Variant,
) -> anyhow::Result<LatencyResult> {
    let name = format!("{}-live", v.id());
    tansu.create_topic(&name, opts.partitions)?;
    let job = Job::create(tansu, opts, v, &name, &name, 1)?;
    let http = job.http[0].as_str();
    let mut workers = job.spawn(tansu, worker_bin)?;
    let measured = measure_live(tansu, opts, &name, http, &mut workers);
    stop(&mut workers);
    let (produced, records_in, histogram) = measured?;
    let in_ms = |q| histogram.quantile(q).map(|s| s * 1000.0);
    Ok(LatencyResult {
        variant: v,
        rate: opts.latency_rate,
        seconds: opts.latency_seconds,
        produced: produced.events,
        produce_rate: produced.rate(),
        records_in,
        outputs: histogram.count(),
        p50_ms: in_ms(0.50),
        p99_ms: in_ms(0.99),
        error: None,
    })
}

/// The live phase of one worker at `http`, ready or not: waits until it is ready, produces
/// to `topic`, waits for the worker to read it all and one more checkpoint; returns what
/// was produced, the worker's `recordsIn` and its latency histogram.
fn measure_live(
    tansu: &Tansu,
    opts: &Options,
    topic: &str,
    http: &str,
    workers: &mut [WorkerProcess],
) -> anyhow::Result<(latency::Produced, u64, Histogram)> {
    if !wait_alive(workers, Duration::from_secs(60), || {
        get(http, "/readyz").is_some()
    })? {
        bail!("not ready within 60 s");
    }
    let produced = latency::produce_live(
        &tansu.bootstrap(),
        topic,
        opts.partitions,
        opts.seed,
        opts.latency_rate,
        opts.latency_seconds,
    )?;
    wait_alive(workers, LIVE_DRAIN_TIMEOUT, || {
        status(http).is_some_and(|s| s.records_in >= produced.events)
    })?;
    std::thread::sleep(Duration::from_millis(opts.checkpoint_ms + 1000));
    let records_in = status(http).context("GET /status")?.records_in;
    let metrics = get(http, "/metrics").context("GET /metrics")?;
    let histogram = Histogram::parse(&metrics, LATENCY_METRIC)
        .with_context(|| format!("no {LATENCY_METRIC} histogram in /metrics"))?;
    Ok((produced, records_in, histogram))
}

/// Calls `done` every 50 ms until it returns true (`Ok(true)`) or `timeout` passes
/// (`Ok(false)`); fails if a worker exits meanwhile.
pub(crate) fn wait_alive(
    workers: &mut [WorkerProcess],
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        exited(workers, String::new)?;
        if done() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a job: SIGTERM to its first running worker (the stop request reaches the others
/// through worker 0, which coordinates the final checkpoint), then waits for every worker
/// to exit, at most [`STOP_TIMEOUT`] in all, and kills those still running.
pub(crate) fn stop(workers: &mut [WorkerProcess]) {
    if let Some(w) = workers.iter_mut().find_map(|w| w.is_running().then_some(w)) {
        // Fails only if it exited meanwhile: the waits below then kill any left.
        let _ = w.sigterm();
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for w in workers.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if w.wait_exit(left).is_none() {
            w.kill9();
        }
    }
}

#[derive(Default, Clone, Copy, Debug, PartialEq)]
struct Status {
    records_in: u64,
    records_processed: u64,
    records_out: u64,
    records_late: u64,
    /// processed + filtered + late + malformed + keyless.
    handled: u64,
}

impl Status {
    /// One worker's counts from its status document.
    fn of(w: &WorkerStatus) -> Status {
        Status {
            records_in: w.records_in,
            records_processed: w.records_processed,
            records_out: w.records_out,
            records_late: w.records_late,
            handled: w.records_processed
                + w.records_filtered
                + w.records_late
                + w.records_malformed
                + w.records_keyless,
        }
    }

    /// The job's counts: the sum over its workers.
    fn sum(each: &[Status]) -> Status {
        each.iter().fold(Status::default(), |a, s| Status {
            records_in: a.records_in + s.records_in,
            records_processed: a.records_processed + s.records_processed,
            records_out: a.records_out + s.records_out,
            records_late: a.records_late + s.records_late,
            handled: a.handled + s.handled,
        })
    }
}

/// The body of a successful `GET path` on `http`, else `None`.
pub(crate) fn get(http: &str, path: &str) -> Option<String> {
    get_with(http, path, &[])
}

/// [`get`] with extra request headers.
pub(crate) fn get_with(http: &str, path: &str, headers: &[(&str, &str)]) -> Option<String> {
    let r = http_request(http, "GET", path, headers, b"", Duration::from_secs(2)).ok()?;
    r.is_success().then(|| r.text())
}

/// A worker's `/status` document, if it answers.
pub(crate) fn worker_status(http: &str) -> Option<WorkerStatus> {
    parse_status(&get(http, "/status")?)
}

/// A `/status` document (absent fields take their defaults).
pub(crate) fn parse_status(text: &str) -> Option<WorkerStatus> {
    serde_json::from_str(text).ok()
}

fn status(http: &str) -> Option<Status> {
    worker_status(http).map(|w| Status::of(&w))
}

/// `utime + stime` of a process (all its threads) in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    // SAFETY: plain libc call with no pointers.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((utime + stime) as f64 / ticks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivulet_api::spec::StateBackendKind;

    #[test]
    fn summary_is_the_median_and_range() {
        assert_eq!(Summary::of([]), None);
        let odd = Summary::of([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        let even = Summary::of([4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((even.median, even.min, even.max), (3.0, 1.0, 10.0));
    }

    #[test]
    fn renamed_jobs_do_not_share_topics_or_names() {
        let v = Variant::parse("q5-heap-eo").unwrap();
        let m = renamed(
            v.manifest("src", 1000, "file:///tmp/x").unwrap(),
            "q5-heap-eo-p2-r2",
            2,
        )
        .unwrap();
        assert_eq!(m.job_name(), "nexmark-q5-heap-eo-p2-r2");
        assert_eq!(m.spec.parallelism, 2);
        assert_eq!(m.spec.pipeline.sink.topic, "q5-heap-eo-p2-r2-out");
        assert_eq!(
            m.spec.pipeline.dead_letter.topic.as_deref(),
            Some("q5-heap-eo-p2-r2-dlq")
        );
        assert_eq!(m.spec.pipeline.source.topics, ["src"]);
    }

    #[test]
    fn parallelisms_keep_their_order_without_repeats() {
        assert_eq!(parallelisms(&[1]).unwrap(), [1]);
        assert_eq!(parallelisms(&[2, 1, 2, 4]).unwrap(), [2, 1, 4]);
        assert!(parallelisms(&[]).is_err());
        assert!(parallelisms(&[1, 0]).is_err());
    }

    #[test]
    fn groups_are_each_variant_at_each_parallelism() {
        let a = Variant::parse("q5-heap-eo").unwrap();
        let b = Variant::parse("q1-heap-eo").unwrap();
        assert_eq!(groups(&[a, b], &[1, 2]), [(a, 1), (a, 2), (b, 1), (b, 2)]);
        assert_eq!(groups(&[a], &[1]), [(a, 1)]);
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(8).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 8);
    }

    #[test]
    fn a_run_whose_output_differs_from_the_in_process_run_fails() {
        let v = Variant::parse("q5-heap-eo").unwrap();
        let run = |out, late| RunResult {
            variant: v,
            records_in: 100,
            records_processed: 90 - late,
            records_out: out,
            records_late: late,
            seconds: 1.0,
            handled_seconds: Some(1.0),
            out_seconds: None,
            startup_seconds: None,
            cpu_seconds: 1.0,
            broker_cpu_seconds: 0.0,
            timed_out: false,
            error: None,
            checkpoints: Vec::new(),
        };
        let reference = |backend| InProcessResult {
            query: "q5",
            backend,
            events: 100,
            seconds: 1.0,
            cpu_seconds: 1.0,
            records_out: 40,
            records_processed: 90,
            records_late: 0,
            processing_time: false,
            p50_ms: None,
            p99_ms: None,
        };
        let refs = [
            reference(StateBackendKind::Rocksdb),
            reference(StateBackendKind::Heap),
        ];
        assert_eq!(check_against(run(40, 0), &refs, None).error, None);
        // The truth computed apart from the pipeline is checked too.
        assert_eq!(check_against(run(40, 0), &refs, Some(40)).error, None);
        let e = check_against(run(40, 0), &refs, Some(41)).error.unwrap();
        assert!(
            e.contains("40 records out where the truth") && e.contains("is 41"),
            "{e}"
        );
        let e = check_against(run(39, 0), &refs, None).error.unwrap();
        assert!(
            e.contains("90 records processed, 0 late and 39 out")
                && e.contains("gave 90, 0 and 40"),
            "{e}"
        );
        let e = check_against(run(40, 3), &refs, None).error.unwrap();
        assert!(e.contains("87 records processed, 3 late"), "{e}");
        assert!(check_against(run(40, 0), &refs[..1], None).error.is_some());
        // Processing-time windows: the number of results is not compared, the rest is.
        let refs = [InProcessResult {
            processing_time: true,
            ..reference(StateBackendKind::Heap)
        }];
        assert_eq!(check_against(run(7, 0), &refs, None).error, None);
        assert!(check_against(run(7, 1), &refs, None).error.is_some());
    }

    #[test]
    fn a_job_counts_the_sum_of_its_workers() {
        let s = |records_in, handled| Status {
            records_in,
            records_processed: handled,
            records_out: 1,
            records_late: 1,
            handled,
        };
        assert_eq!(
            Status::sum(&[s(10, 9), s(5, 5)]),
            Status {
                records_in: 15,
                records_processed: 14,
                records_out: 2,
                records_late: 2,
                handled: 14
            }
        );
        assert_eq!(Status::sum(&[]), Status::default());
    }

    #[test]
    fn reads_own_cpu_time() {
        let before = cpu_seconds(std::process::id()).unwrap();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = cpu_seconds(std::process::id()).unwrap();
        assert!(after > before, "{before} -> {after}");
    }

    fn checkpoint(id: u64, time_ms: i64, duration_ms: u64, size_bytes: u64) -> CheckpointInfo {
        CheckpointInfo {
            id,
            time_ms,
            duration_ms,
            size_bytes,
        }
    }

    #[test]
    fn checkpoints_are_noted_once_and_kept_if_started_in_time() {
        let mut seen = Vec::new();
        note_checkpoint(&mut seen, None);
        note_checkpoint(&mut seen, Some(&checkpoint(1, 100, 20, 500)));
        // Polled again before the next one completed.
        note_checkpoint(&mut seen, Some(&checkpoint(1, 100, 20, 500)));
        note_checkpoint(&mut seen, Some(&checkpoint(2, 1100, 40, 900)));
        note_checkpoint(&mut seen, Some(&checkpoint(3, 2100, 10, 950)));
        assert_eq!(seen.iter().map(|c| c.id).collect::<Vec<_>>(), [1, 2, 3]);
        let kept = started_by(seen, 1100);
        assert_eq!(kept.iter().map(|c| c.id).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn checkpoint_summary_is_median_and_max() {
        assert_eq!(CheckpointSummary::of(&[]), None);
        let all = [
            checkpoint(1, 0, 20, 500),
            checkpoint(2, 0, 40, 900),
            checkpoint(3, 0, 300, 700),
        ];
        let c = CheckpointSummary::of(&all).unwrap();
        assert_eq!(c.count, 3);
        assert_eq!((c.duration_ms.median, c.duration_ms.max), (40.0, 300.0));
        assert_eq!(c.size_bytes.median, 700.0);
    }

    #[test]
    fn status_documents_give_counts_and_the_last_checkpoint() {
        let text = r#"{"job":"j","worker":0,"parallelism":2,"phase":"running",
            "recordsIn":100,"recordsProcessed":60,"recordsFiltered":30,"recordsLate":4,
            "recordsMalformed":3,"recordsKeyless":2,"recordsOut":7,"restoredFrom":5,
            "restoredBytes":4096,"someNewField":true,
            "lastCheckpoint":{"id":9,"timeMs":1700,"durationMs":35,"sizeBytes":2048}}"#;
        let w = parse_status(text).unwrap();
        assert_eq!(
            Status::of(&w),
            Status {
                records_in: 100,
                records_processed: 60,
                records_out: 7,
                records_late: 4,
                handled: 99
            }
        );
        assert_eq!(w.last_checkpoint, Some(checkpoint(9, 1700, 35, 2048)));
        assert_eq!((w.restored_from, w.restored_bytes), (Some(5), 4096));
        assert_eq!(w.phase, "running");
        // A worker that has not checkpointed yet; missing fields default.
        let fresh = parse_status(r#"{"phase":"restoring","lastCheckpoint":null}"#).unwrap();
        assert_eq!(fresh.last_checkpoint, None);
        assert_eq!(Status::of(&fresh), Status::default());
        assert!(parse_status("not json").is_none());
    }

    #[test]
    fn a_rescaled_job_restores_the_savepoint_at_its_new_parallelism() {
        let v = Variant::parse("q5-heap-eo").unwrap();
        let m = renamed(
            v.manifest("src", 1000, "file:///tmp/x").unwrap(),
            "q5-heap-eo-rescale-1to2",
            1,
        )
        .unwrap();
        let r = restored(
            &m,
            2,
            "file:///tmp/x/default/j/savepoints/00000000000000000004",
        )
        .unwrap();
        assert_eq!(r.spec.parallelism, 2);
        assert_eq!(
            r.spec.restore_from.as_deref(),
            Some("file:///tmp/x/default/j/savepoints/00000000000000000004")
        );
        // Same job otherwise: name, storage, topics.
        assert_eq!(r.job_name(), m.job_name());
        assert_eq!(r.spec.state.storage, m.spec.state.storage);
        assert_eq!(r.spec.pipeline.sink.topic, m.spec.pipeline.sink.topic);
        assert!(restored(&m, 2, "hdfs://nope").is_err());
    }
}
