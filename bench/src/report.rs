//! The results file, `bench/results/<UTC date>.md`: the machine, the command, the fill and
//! the ceiling (median of its runs), one row per variant and parallelism (medians of its
//! runs, with min–max and every run), the checkpoints worker 0 reported during those runs,
//! the rescale downtime, the live latency through Kafka (one worker), and every figure
//! against its target.
//!
//! Targets (from the Nexmark issue):
//! - in process: q1 >= 2 M events/s per core; the q5-style window on the heap >= 1 M
//!   events/s per core;
//! - every query through Kafka: events/s >= 70% of the raw-consume ceiling;
//! - q5 exactly-once (1 s checkpoints) >= 90% of q5 at-least-once (heap);
//! - q5 on RocksDB >= 50% of q5 on the heap (exactly-once).

use std::fmt::Write;

use rivulet_api::spec::{DeliveryGuarantee, StateBackendKind};

use crate::inprocess::{InProcessResult, BATCH};
use crate::latency::LATENCY_METRIC;
use crate::queries::{backend_name, guarantee_name};
use crate::rescale::{RescaleOptions, RescaleResult, ATTEMPTS, RECORDS_IN_METRIC};
use crate::runner::{
    two_decimals, LatencyResult, Options, Outcome, RunResult, Summary, VariantRuns,
    LIVE_DRAIN_TIMEOUT,
};

pub const Q1_IN_PROCESS_TARGET: f64 = 2_000_000.0;
pub const Q5_IN_PROCESS_TARGET: f64 = 1_000_000.0;
pub const KAFKA_TARGET: f64 = 0.70;
pub const EO_TARGET: f64 = 0.90;
pub const ROCKSDB_TARGET: f64 = 0.50;

/// `nproc` and the CPU model name.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{cores} cores (nproc), {model}")
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// The median events/s of a variant at `parallelism`, over its completed runs.
fn median_rate(
    o: &Outcome,
    q: &str,
    b: StateBackendKind,
    g: DeliveryGuarantee,
    parallelism: u32,
) -> Option<f64> {
    o.variants
        .iter()
        .find(|vr| {
            vr.variant.query == q
                && vr.variant.backend == b
                && vr.variant.guarantee == g
                && vr.parallelism == parallelism
        })
        .and_then(VariantRuns::median_rate)
}

/// `1`, `1 and 2`, `1, 2 and 4`.
fn and_list(items: &[u32]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!(
            "{} and {last}",
            init.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A table's header row (`columns` separated by ` | `) and alignment row; `align` has a
/// letter per column, `l` (left) or
/// `r` (right, for numbers).
pub(crate) fn table_head(s: &mut String, columns: &str, align: &str) {
    let _ = writeln!(s, "| {columns} |");
    let marks: Vec<&str> = align
        .chars()
        .map(|c| if c == 'r' { "---:" } else { "---" })
        .collect();
    let _ = writeln!(s, "|{}|", marks.join("|"));
}

/// `median (min–max)`, rounded to whole numbers.
fn with_range(x: Summary) -> String {
    format!("{:.0} ({:.0}–{:.0})", x.median, x.min, x.max)
}

/// The median of `f` over a variant's completed runs, with `decimals` decimals, or `-`.
fn median_of(vr: &VariantRuns, decimals: usize, f: impl Fn(&RunResult) -> Option<f64>) -> String {
    Summary::of(vr.completed().filter_map(f))
        .map_or_else(|| "-".into(), |x| format!("{:.*}", decimals, x.median))
}

/// Every run's events/s in run order, `timed out` or `failed` for the others.
fn each_run(vr: &VariantRuns) -> String {
    vr.runs
        .iter()
        .map(|r| {
            if r.error.is_some() {
                "failed".to_string()
            } else if r.timed_out {
                "timed out".to_string()
            } else {
                format!("{:.0}", r.rate())
            }
        })
        .collect::<Vec<_>>()
        .join(" / ")
}

pub fn render(date: &str, command: &str, opts: &Options, o: &Outcome) -> String {
    render_titled(&format!("Nexmark benchmarks, {date}"), command, opts, o)
}

/// [`render`] under another title (the Flink comparison's file).
pub fn render_titled(title: &str, command: &str, opts: &Options, o: &Outcome) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {title}\n");
    let _ = writeln!(s, "- Machine: {}", machine());
    let _ = writeln!(s, "- Command: `{command}`");
    let _ = writeln!(
        s,
        "- Broker: tansu on loopback (in memory), same machine. Source topic `nexmark`, {} partitions, {} events: {}; {:.1} MB of JSON ({:.0} bytes/event); filled in {:.1} s ({:.0} events/s).",
        opts.partitions,
        o.fill.events,
        opts.dataset.describe(),
        o.fill.bytes as f64 / 1e6,
        o.fill.bytes as f64 / o.fill.events.max(1) as f64,
        o.fill.seconds,
        o.fill.events as f64 / o.fill.seconds
    );
    let _ = writeln!(
        s,
        "- Workers: every variant at parallelism{} {} (the `workers` column): a run at parallelism n is one job (`spec.parallelism: n`) of n `rivulet-worker` processes on this machine, worker i started with `--index i --parallelism n`, its own HTTP port and data dir and, for n > 1, `--peers` with every worker's shuffle address (loopback TCP); worker i reads the Kafka partitions p with p mod n = i. Checkpoints every {} ms to `file://` in a temp dir. Each variant ran {} time{} at each parallelism, round-robin (every variant at every parallelism once, then again), each run with a fresh temp dir, job name and sink topic (`<variant>-p<workers>-r<run>-out`). Seconds run from spawning the workers until the sum of their `/status` `recordsIn` equals the events (start-up included; the start-up column is spawn until every worker's `/readyz` answers; \"all handled\" is spawn until processed + filtered + late + malformed + keyless, summed over the workers, == events). Events/s = events / seconds. Events/s per core = events / CPU seconds of all the workers together (utime+stime from `/proc/<pid>/stat`, read when all were handled). Broker CPU s = tansu's utime+stime from spawning the workers until every record was handled. Records out = the workers' `recordsOut` summed once it settles (windows still open at the end of the data are not emitted; q12 uses processing time). Every run is checked: its records processed, late and out must equal those of the in-process run of the same events (records out are not compared for q12's processing-time windows); a run that differs is reported as failed, never as a figure.",
        if opts.parallelisms.len() > 1 { "s" } else { "" },
        and_list(&opts.parallelisms),
        opts.checkpoint_ms,
        opts.repeat.max(1),
        if opts.repeat > 1 { "s" } else { "" }
    );
    let mut not_run = Vec::new();
    if o.rescale.is_empty() {
        not_run.push("rescale downtime");
    }
    if o.latency.is_empty() {
        not_run.push("end-to-end latency through Kafka");
    }
    if not_run.is_empty() {
        let _ = writeln!(s);
    } else {
        let _ = writeln!(s, "- Not run here: {}.\n", not_run.join(", "));
    }

    render_in_process(&mut s, &o.in_process);

    let ceiling = o.ceiling();
    let _ = writeln!(s, "## Ceiling: raw rdkafka consumption\n");
    let _ = writeln!(
        s,
        "A `BaseConsumer` (read_committed) assigned every partition from the beginning, counting records until all {} arrived, no decoding. The median of the {} runs is used: {} records/s.\n",
        o.fill.events,
        o.ceilings.len(),
        ceiling.map_or_else(|| "-".into(), |c| format!("{c:.0}"))
    );
    table_head(
        &mut s,
        "run | records | seconds | records/s | CPU s | records/s per core | broker CPU s",
        "lrrrrrr",
    );
    for (i, c) in o.ceilings.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} |",
            i + 1,
            c.records,
            c.seconds,
            c.rate(),
            c.cpu_seconds,
            c.records as f64 / c.cpu_seconds.max(1e-9),
            c.broker_cpu_seconds
        );
    }
    let ceiling = ceiling.unwrap_or(0.0);

    let _ = writeln!(s, "\n## Queries\n");
    let _ = writeln!(
        s,
        "One row per variant and parallelism (`workers`). Medians over the runs that read every event; events/s and events/s per core also give min–max, and \"runs\" every run's events/s in run order. % of ceiling is the median events/s over the median ceiling.\n"
    );
    table_head(
        &mut s,
        "query | backend | guarantee | workers | events | seconds | all handled s | start-up s | events/s (min–max) | runs, events/s | CPU s | events/s per core (min–max) | broker CPU s | records out | % of ceiling | target | ",
        "lllrrrrrrrrrrrrll",
    );
    for vr in &o.variants {
        let v = vr.variant;
        let (Some(rate), Some(per_core)) = (
            vr.summary(RunResult::rate),
            vr.summary(RunResult::rate_per_core),
        ) else {
            let why = vr
                .runs
                .iter()
                .find_map(|r| r.error.as_deref())
                .map_or("timed out", |e| e.lines().next().unwrap_or_default());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | failed: {} | | | | | {} | | | | | | | |",
                v.query,
                backend_name(v.backend),
                guarantee_name(v.guarantee),
                vr.parallelism,
                why,
                each_run(vr)
            );
            continue;
        };
        let completed = vr.completed().count();
        let pct = if ceiling > 0.0 {
            rate.median / ceiling
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0}% | >= {:.0}% of ceiling | {} |",
            v.query,
            backend_name(v.backend),
            guarantee_name(v.guarantee),
            vr.parallelism,
            median_of(vr, 0, |r| Some(r.records_in as f64)),
            if completed < vr.runs.len() {
                format!(" ({completed} of {} runs)", vr.runs.len())
            } else {
                String::new()
            },
            median_of(vr, 2, |r| Some(r.seconds)),
            median_of(vr, 2, |r| r.handled_seconds),
            median_of(vr, 2, |r| r.startup_seconds),
            with_range(rate),
            each_run(vr),
            median_of(vr, 2, |r| Some(r.cpu_seconds)),
            with_range(per_core),
            median_of(vr, 2, |r| Some(r.broker_cpu_seconds)),
            median_of(vr, 0, |r| Some(r.records_out as f64)),
            pct * 100.0,
            KAFKA_TARGET * 100.0,
            met(pct >= KAFKA_TARGET)
        );
    }
    if o.variants.iter().any(|vr| vr.runs.len() > 1) {
        render_every_run(&mut s, o);
    }

    if opts.variants.iter().any(|v| v.query == "q5") {
        render_q5_ratios(&mut s, opts, o);
    }

    render_checkpoints(&mut s, opts, &o.variants);
    if let Some(ro) = &opts.rescale {
        render_rescale(&mut s, opts, ro, &o.rescale);
    }
    render_latency(&mut s, opts, &o.latency);
    s
}

/// q5's exactly-once and RocksDB ratios.
fn render_q5_ratios(s: &mut String, opts: &Options, o: &Outcome) {
    let _ = writeln!(s, "\n## Ratios\n");
    let _ = writeln!(s, "Of the median events/s, at the same parallelism.\n");
    table_head(s, "comparison | workers | ratio | target | ", "lrrll");
    use DeliveryGuarantee::*;
    use StateBackendKind::*;
    let ratios = [
        (
            "q5 heap: exactly-once (1 s checkpoints) / at-least-once",
            (Heap, ExactlyOnce),
            (Heap, AtLeastOnce),
            EO_TARGET,
        ),
        (
            "q5 exactly-once: RocksDB / heap",
            (Rocksdb, ExactlyOnce),
            (Heap, ExactlyOnce),
            ROCKSDB_TARGET,
        ),
    ];
    for (what, (b1, g1), (b2, g2), target) in ratios {
        for &n in &opts.parallelisms {
            let ratio = median_rate(o, "q5", b1, g1, n)
                .zip(median_rate(o, "q5", b2, g2, n))
                .filter(|(_, b)| *b > 0.0)
                .map(|(a, b)| a / b);
            let _ = match ratio {
                Some(r) => writeln!(
                    s,
                    "| {what} | {n} | {:.0}% | >= {:.0}% | {} |",
                    r * 100.0,
                    target * 100.0,
                    met(r >= target)
                ),
                None => writeln!(
                    s,
                    "| {what} | {n} | not measured | >= {:.0}% | |",
                    target * 100.0
                ),
            };
        }
    }
}

/// Worker 0's checkpoints during the throughput runs, one row per variant and parallelism.
fn render_checkpoints(s: &mut String, opts: &Options, groups: &[VariantRuns]) {
    let _ = writeln!(s, "\n## Checkpoints\n");
    let _ = writeln!(
        s,
        "Worker 0 coordinates the job's aligned checkpoints (every {} ms, to `file://` in the run's temp dir) and reports the last completed one in `/status` `lastCheckpoint`: `durationMs`, from the trigger until the checkpoint's manifest is written (every worker's state uploaded; exactly-once output is committed after that), and `sizeBytes`, the state bytes it references (all workers' key groups). During every throughput run the bench read worker 0's `/status` every 50 ms and kept each distinct checkpoint id triggered before the last record was handled (the final checkpoint on SIGTERM is not counted). Workers refresh `/status` every 500 ms, so checkpoints closer together than that could be missed. Pooled over the runs that read every event; \"checkpoints\" is how many.\n",
        opts.checkpoint_ms
    );
    table_head(
        s,
        "variant | workers | checkpoints | duration ms, median | duration ms, max | size bytes, median",
        "lrrrrr",
    );
    for vr in groups {
        let _ = match vr.checkpoints() {
            Some(c) => writeln!(
                s,
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} |",
                vr.variant.id(),
                vr.parallelism,
                c.count,
                c.duration_ms.median,
                c.duration_ms.max,
                c.size_bytes.median
            ),
            None => writeln!(
                s,
                "| {} | {} | 0 | - | - | - |",
                vr.variant.id(),
                vr.parallelism
            ),
        };
    }
}

/// A whole number of milliseconds, or `-`.
fn whole_ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.0}"))
}

/// The rescale phase, one row per step.
fn render_rescale(s: &mut String, opts: &Options, ro: &RescaleOptions, rows: &[RescaleResult]) {
    let _ = writeln!(s, "\n## Rescale\n");
    let _ = writeln!(
        s,
        "After the throughput runs, `{}` was rescaled by stop-with-savepoint and restore, each step on its own job: a fresh source topic (`<variant>-rescale<step>-<from>to<to>`, {} partitions) fed at {} events/s for the whole step (wall-clock event times, as in the latency phase), so input keeps arriving while the job is down; the job started at the old parallelism (workers started as for the throughput runs, with `RIVULET_CONTROL_TOKEN` set), ran {} s and until worker 0 reported a completed checkpoint (every {} ms). Then, from the stop request (time 0), polling every 20 ms:\n",
        ro.variant.id(),
        opts.partitions,
        ro.rate,
        ro.warmup_seconds,
        opts.checkpoint_ms
    );
    let _ = writeln!(
        s,
        "- savepoint ms: `POST /savepoints {{\"stop\": true}}` to worker 0 (bearer token) until `GET /savepoints/N` answers `completed`; savepoint bytes = its `sizeBytes` (the state it references);\n\
         - stop→stopped ms: until every old worker has exited or, worker 0, reports phase `stopped`;\n\
         - stop→exited ms: until every old worker process has exited (worker 0 keeps answering after a stop with a savepoint until the savepoint's completion has been read, at most 3 s);\n\
         - then the same job (name, state storage, sink topic) is started at the new parallelism with `spec.restoreFrom` = the savepoint's path, new data dirs and ports; start→running ms: from spawning its workers until every one's `/status` phase is `running` (restore, fencing, the shuffle mesh);\n\
         - downtime ms: from the stop request until every new worker runs and the job's `{}` (from `/metrics`, summed) is above 0: records flow again. No input is read in between;\n\
         - restored bytes: each new worker's `restoredBytes` (the savepoint's files of its own key groups), in worker order; every new worker must report `restoredFrom` = the savepoint.\n\n\
         Each step ran once; a step that failed was tried again on a fresh job and topic, up to {} attempts in all, and the note names the failures. Output correctness across a rescale is tested elsewhere (tests/tests/savepoints.rs); this only measures.\n",
        RECORDS_IN_METRIC,
        ATTEMPTS
    );
    table_head(
        s,
        "from | to | savepoint ms | savepoint bytes | stop→stopped ms | stop→exited ms | start→running ms | downtime ms | restored bytes per worker | ",
        "rrrrrrrrll",
    );
    for r in rows {
        let earlier = if r.failed_attempts.is_empty() {
            String::new()
        } else {
            format!(
                "{} failed attempt{} before: {}",
                r.failed_attempts.len(),
                if r.failed_attempts.len() > 1 { "s" } else { "" },
                r.failed_attempts.join("; ")
            )
        };
        if let Some(e) = &r.error {
            let _ = writeln!(
                s,
                "| {} | {} | | | | | | | | failed: {}{} |",
                r.step.from,
                r.step.to,
                e.lines().next().unwrap_or_default(),
                if earlier.is_empty() {
                    String::new()
                } else {
                    format!("; {earlier}")
                }
            );
            continue;
        }
        let mut notes = Vec::new();
        if r.savepoint_ms.is_none() {
            notes.push("savepoint answer missed; path from worker 0's final status".to_string());
        }
        if !earlier.is_empty() {
            notes.push(earlier);
        }
        let restored = r
            .restored_bytes
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" / ");
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.step.from,
            r.step.to,
            whole_ms(r.savepoint_ms),
            r.savepoint_bytes
                .map_or_else(|| "-".into(), |b| b.to_string()),
            whole_ms(r.stopped_ms),
            whole_ms(r.exited_ms),
            whole_ms(r.start_to_running_ms),
            whole_ms(r.downtime_ms),
            restored,
            notes.join("; ")
        );
    }
}

/// Every throughput run, one row each.
fn render_every_run(s: &mut String, o: &Outcome) {
    let _ = writeln!(s, "\n### Every run\n");
    table_head(
        s,
        "variant | workers | run | events | seconds | all handled s | start-up s | events/s | CPU s | events/s per core | broker CPU s | records out | ",
        "lrrrrrrrrrrrl",
    );
    for vr in &o.variants {
        for (i, r) in vr.runs.iter().enumerate() {
            let note = match (&r.error, r.timed_out) {
                (Some(e), _) => format!("failed: {}", e.lines().next().unwrap_or_default()),
                (None, true) => "timed out".into(),
                (None, false) => String::new(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2} | {} | {} | {:.0} | {:.2} | {:.0} | {:.2} | {} | {} |",
                vr.variant.id(),
                vr.parallelism,
                i + 1,
                r.records_in,
                r.seconds,
                two_decimals(r.handled_seconds),
                two_decimals(r.startup_seconds),
                r.rate(),
                r.cpu_seconds,
                r.rate_per_core(),
                r.broker_cpu_seconds,
                r.records_out,
                note
            );
        }
    }
}

fn render_latency(s: &mut String, opts: &Options, rows: &[LatencyResult]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "\n## Latency through Kafka\n");
    let _ = writeln!(
        s,
        "After the throughput runs, each variant got a fresh, empty source topic (`<variant>-live`, {} partitions) and one worker (parallelism 1) started on it (`startFrom: earliest`, ready before the first event). The bench then produced Nexmark events at a fixed rate for a fixed time, every {} ms sending the events due by then, with event times following the wall clock (event n at start + n / rate, minus up to 500 ms of out-of-orderness), so event-time windows close in real time; records carry the producer's CreateTime. Once the worker had read every event (at most {} s) and one checkpoint interval + 1 s had passed, p50 and p99 were read from the worker's `{}` histogram (buckets from 1 ms, doubling; linear interpolation within a bucket like Prometheus' `histogram_quantile`; a quantile in the +Inf bucket shows as the largest bound).\n",
        opts.partitions,
        crate::latency::PACE.as_millis(),
        LIVE_DRAIN_TIMEOUT.as_secs(),
        LATENCY_METRIC,
    );
    let _ = writeln!(
        s,
        "The worker observes, per output record, the time it was sent (at-least-once) or its transaction committed (exactly-once) minus the Kafka timestamp of the input record that triggered it (for an event-time window result, the record that moved the watermark past the window's end; for processing-time windows (q12), the time the window fired). Exactly-once output becomes visible only when the checkpoint after it completes and its transaction commits, so exactly-once latency is dominated by the checkpoint interval ({} ms here): an output waits up to one interval, plus the checkpoint and the commit, on top of processing; at-least-once shows the processing and sink path alone. Outputs observed = the histogram's count (windows still open when producing stopped are not emitted{}). Bucket bounds double, so a quantile is only as precise as its bucket (between 512 and 1024 ms around one second). The achieved produce rate is events over the time from the first send until every event was acknowledged.\n",
        opts.checkpoint_ms,
        if rows.iter().any(|r| r.variant.query == "q2") {
            "; q2 selects five fixed auction ids, which get bids only in the first second or so of the stream"
        } else {
            ""
        }
    );
    table_head(
        s,
        "variant | rate, events/s | seconds | events produced | outputs observed | p50 ms | p99 ms | achieved produce rate, events/s",
        "lrrrrrrr",
    );
    for r in rows {
        if let Some(e) = &r.error {
            let _ = writeln!(
                s,
                "| {} | {} | {} | failed: {} | | | | |",
                r.variant.id(),
                r.rate,
                r.seconds,
                e.lines().next().unwrap_or_default()
            );
            continue;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {}{} | {} | {} | {:.0} |",
            r.variant.id(),
            r.rate,
            r.seconds,
            r.produced,
            r.outputs,
            if r.records_in < r.produced {
                format!(" (worker read only {} events)", r.records_in)
            } else {
                String::new()
            },
            two_decimals(r.p50_ms),
            two_decimals(r.p99_ms),
            r.produce_rate
        );
    }
}

fn render_in_process(s: &mut String, rows: &[InProcessResult]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(s, "## In process\n");
    let _ = writeln!(
        s,
        "The worker's own processing core (`rivulet_worker::processor::Processor`) fed the same events from memory in batches of {BATCH}, on one thread: decode, filter, project, key, window and encode, no Kafka, no checkpoints. Generating the events is not timed. CPU s is this process's utime+stime over the run. Latency: from a batch entering the processor to its output coming out, over output records.\n"
    );
    table_head(
        s,
        "query | backend | events | seconds | events/s | CPU s | events/s per core | records out | p50 ms | p99 ms | target | ",
        "llrrrrrrrrll",
    );
    for r in rows {
        let target = match (r.query, r.backend) {
            ("q1", _) => Some(Q1_IN_PROCESS_TARGET),
            ("q5", StateBackendKind::Heap) => Some(Q5_IN_PROCESS_TARGET),
            _ => None,
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.0} | {} | {} | {} | {} | {} |",
            r.query,
            backend_name(r.backend),
            r.events,
            r.seconds,
            r.rate(),
            r.cpu_seconds,
            r.rate_per_core(),
            r.records_out,
            two_decimals(r.p50_ms),
            two_decimals(r.p99_ms),
            target.map_or(String::new(), |t| format!(
                ">= {:.0} M events/s per core",
                t / 1e6
            )),
            target.map_or("", |t| met(r.rate_per_core() >= t)),
        );
    }
    let _ = writeln!(s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queries::Variant;
    use crate::rescale::Step;
    use crate::runner::{Ceiling, Fill};
    use rivulet_api::status::CheckpointInfo;

    fn checkpoint(id: u64, duration_ms: u64, size_bytes: u64) -> CheckpointInfo {
        CheckpointInfo {
            id,
            time_ms: 0,
            duration_ms,
            size_bytes,
        }
    }

    fn run(v: Variant, seconds: f64, error: Option<&str>) -> RunResult {
        RunResult {
            variant: v,
            records_in: 1000,
            records_processed: 1000,
            records_out: 10,
            records_late: 0,
            seconds,
            handled_seconds: Some(seconds),
            out_seconds: None,
            startup_seconds: Some(0.1),
            cpu_seconds: seconds / 2.0,
            broker_cpu_seconds: 0.1,
            timed_out: false,
            error: error.map(str::to_string),
            checkpoints: vec![checkpoint(1, 10, 1000), checkpoint(2, 30, 3000)],
        }
    }

    fn outcome(latency: Vec<LatencyResult>) -> (Options, Outcome) {
        let eo = Variant::parse("q5-heap-eo").unwrap();
        let alo = Variant::parse("q5-heap-alo").unwrap();
        let opts = Options {
            dataset: crate::dataset::Dataset::nexmark(crate::nexmark::Config::default()),
            events: 1000,
            partitions: 4,
            seed: 0,
            expected_out: None,
            checkpoint_ms: 1000,
            variants: vec![eo, alo],
            parallelisms: vec![1],
            run_timeout: std::time::Duration::from_secs(1),
            ceiling_runs: 3,
            repeat: 3,
            in_process: false,
            latency_rate: 20_000,
            latency_seconds: 10,
            rescale: None,
        };
        let ceiling = |seconds| Ceiling {
            records: 1000,
            seconds,
            cpu_seconds: 0.1,
            broker_cpu_seconds: 0.1,
        };
        let o = Outcome {
            in_process: Vec::new(),
            fill: Fill {
                events: 1000,
                bytes: 170_000,
                seconds: 0.1,
            },
            // 1000, 2000 and 4000 records/s: the median is 2000.
            ceilings: vec![ceiling(1.0), ceiling(0.5), ceiling(0.25)],
            variants: vec![
                VariantRuns {
                    variant: eo,
                    parallelism: 1,
                    // 1000, 2000 and 500 records/s: the median is 1000.
                    runs: vec![run(eo, 1.0, None), run(eo, 0.5, None), run(eo, 2.0, None)],
                },
                VariantRuns {
                    variant: alo,
                    parallelism: 1,
                    // One run failed: the median of 1000 and 2000 is 1500.
                    runs: vec![
                        run(alo, 1.0, None),
                        run(alo, 0.0, Some("boom")),
                        run(alo, 0.5, None),
                    ],
                },
            ],
            rescale: Vec::new(),
            latency,
        };
        (opts, o)
    }

    #[test]
    fn medians_with_ranges_and_every_run() {
        let (opts, o) = outcome(Vec::new());
        let text = render("2026-01-01", "rivulet-bench run", &opts, &o);
        assert!(text.contains("The median of the 3 runs is used: 2000 records/s."));
        assert!(
            text.contains("| 1000 (500–2000) | 1000 / 2000 / 500 |"),
            "{text}"
        );
        assert!(text.contains("| 1000 (2 of 3 runs) |"), "{text}");
        assert!(
            text.contains("| 1500 (1000–2000) | 1000 / failed / 2000 |"),
            "{text}"
        );
        // 1000 / 2000 of the ceiling; exactly-once / at-least-once = 1000 / 1500.
        assert!(
            text.contains("| 50% | >= 70% of ceiling | NOT met |"),
            "{text}"
        );
        assert!(
            text.contains("/ at-least-once | 1 | 67% | >= 90% | NOT met |"),
            "{text}"
        );
        assert!(
            text.contains("| q5-heap-alo | 1 | 2 | 1000 | 0.00 |"),
            "{text}"
        );
        assert!(text.contains("every variant at parallelism 1 (the `workers` column)"));
        assert!(
            text.contains("| q5 | heap | exactly-once | 1 | 1000 |"),
            "{text}"
        );
        assert!(text.contains("failed: boom"));
        assert!(
            text.contains("- Not run here: rescale downtime, end-to-end latency through Kafka.\n")
        );
        assert!(!text.contains("## Latency through Kafka"));
        assert!(!text.contains("## Rescale"));
    }

    #[test]
    fn one_row_per_variant_and_parallelism() {
        let (mut opts, mut o) = outcome(Vec::new());
        opts.parallelisms = vec![1, 2];
        // Each variant also at parallelism 2, twice as fast.
        let doubled: Vec<VariantRuns> = o
            .variants
            .iter()
            .map(|vr| VariantRuns {
                variant: vr.variant,
                parallelism: 2,
                runs: vr
                    .runs
                    .iter()
                    .map(|r| RunResult {
                        seconds: r.seconds / 2.0,
                        ..r.clone()
                    })
                    .collect(),
            })
            .collect();
        let mut grouped = Vec::new();
        for (one, two) in o.variants.drain(..).zip(doubled) {
            grouped.extend([one, two]);
        }
        o.variants = grouped;
        let text = render("2026-01-01", "rivulet-bench run", &opts, &o);
        assert!(text.contains("every variant at parallelisms 1 and 2 (the `workers` column)"));
        assert!(
            text.contains("| q5 | heap | exactly-once | 1 | 1000 | 1.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| q5 | heap | exactly-once | 2 | 1000 | 0.50 |"),
            "{text}"
        );
        // 2000 events/s of a 2000 records/s ceiling.
        assert!(
            text.contains("| 2000 (1000–4000) | 2000 / 4000 / 1000 |"),
            "{text}"
        );
        assert!(
            text.contains("| 100% | >= 70% of ceiling | met |"),
            "{text}"
        );
        assert!(
            text.contains("| q5-heap-eo | 2 | 3 | 1000 | 1.00 |"),
            "{text}"
        );
        // Rows grouped by variant, then parallelism.
        let at = |row: &str| text.find(row).unwrap_or_else(|| panic!("{row}: {text}"));
        assert!(at("| q5-heap-eo | 1 | 1 |") < at("| q5-heap-eo | 2 | 1 |"));
        assert!(at("| q5-heap-eo | 2 | 3 |") < at("| q5-heap-alo | 1 | 1 |"));
        // The ratios at each parallelism.
        assert!(
            text.contains("/ at-least-once | 1 | 67% | >= 90% | NOT met |"),
            "{text}"
        );
        assert!(
            text.contains("/ at-least-once | 2 | 67% | >= 90% | NOT met |"),
            "{text}"
        );
        assert!(
            text.contains("RocksDB / heap | 2 | not measured |"),
            "{text}"
        );
    }

    #[test]
    fn lists_read_like_prose() {
        assert_eq!(and_list(&[1]), "1");
        assert_eq!(and_list(&[1, 2]), "1 and 2");
        assert_eq!(and_list(&[1, 2, 4]), "1, 2 and 4");
    }

    #[test]
    fn latency_table_when_the_phase_ran() {
        let (opts, o) = outcome(vec![LatencyResult {
            variant: Variant::parse("q5-heap-eo").unwrap(),
            rate: 20_000,
            seconds: 10,
            produced: 200_000,
            produce_rate: 19_800.4,
            records_in: 200_000,
            outputs: 1234,
            p50_ms: Some(612.345),
            p99_ms: None,
            error: None,
        }]);
        let text = render("2026-01-01", "rivulet-bench run", &opts, &o);
        assert!(text.contains("- Not run here: rescale downtime.\n"));
        assert!(text.contains("## Latency through Kafka"));
        assert!(text.contains("dominated by the checkpoint interval"));
        assert!(
            text.contains("| q5-heap-eo | 20000 | 10 | 200000 | 1234 | 612.35 | - | 19800 |"),
            "{text}"
        );
    }

    #[test]
    fn checkpoints_pool_the_completed_runs() {
        let (opts, mut o) = outcome(Vec::new());
        // q5-heap-eo: three runs of (10 ms, 1000 B) and (30 ms, 3000 B); one more, slower.
        o.variants[0].runs[2]
            .checkpoints
            .push(checkpoint(3, 250, 8000));
        // q5-heap-alo: the failed run's checkpoints are not counted.
        o.variants[1].runs[1].checkpoints = vec![checkpoint(9, 9999, 1)];
        let text = render("2026-01-01", "rivulet-bench run", &opts, &o);
        assert!(text.contains("## Checkpoints"), "{text}");
        assert!(text.contains("every 1000 ms"), "{text}");
        // 10, 10, 10, 30, 30, 30, 250: median 30, max 250; sizes median 3000.
        assert!(
            text.contains("| q5-heap-eo | 1 | 7 | 30 | 250 | 3000 |"),
            "{text}"
        );
        // 10, 10, 30, 30: median 20.
        assert!(
            text.contains("| q5-heap-alo | 1 | 4 | 20 | 30 | 2000 |"),
            "{text}"
        );
        o.variants[0]
            .runs
            .iter_mut()
            .for_each(|r| r.checkpoints.clear());
        let text = render("2026-01-01", "rivulet-bench run", &opts, &o);
        assert!(
            text.contains("| q5-heap-eo | 1 | 0 | - | - | - |"),
            "{text}"
        );
    }

    #[test]
    fn rescale_table_when_the_phase_ran() {
        let v = Variant::parse("q5-heap-eo").unwrap();
        let (mut opts, mut o) = outcome(Vec::new());
        opts.rescale = Some(RescaleOptions {
            variant: v,
            steps: vec![Step { from: 1, to: 2 }, Step { from: 2, to: 1 }],
            rate: 20_000,
            warmup_seconds: 10,
        });
        o.rescale = vec![
            RescaleResult {
                variant: v,
                step: Step { from: 1, to: 2 },
                savepoint_ms: Some(151.4),
                savepoint_bytes: Some(123_456),
                stopped_ms: Some(180.0),
                exited_ms: Some(3_190.6),
                start_to_running_ms: Some(240.2),
                downtime_ms: Some(3_480.0),
                restored_bytes: vec![60_000, 63_456],
                produced: 400_000,
                failed_attempts: vec!["old workers still ran 10 s after worker 0 exited".into()],
                error: None,
            },
            RescaleResult {
                failed_attempts: vec!["a".into(), "b".into()],
                ..RescaleResult::failed(v, Step { from: 2, to: 1 }, "no checkpoint\nmore".into())
            },
        ];
        let text = render("2026-01-01", "rivulet-bench run", &opts, &o);
        assert!(text.contains("## Rescale"), "{text}");
        assert!(text.contains("`q5-heap-eo` was rescaled"), "{text}");
        assert!(text.contains("fed at 20000 events/s"), "{text}");
        assert!(
            text.contains(
                "| 1 | 2 | 151 | 123456 | 180 | 3191 | 240 | 3480 | 60000 / 63456 | \
                 1 failed attempt before: old workers still ran 10 s after worker 0 exited |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| 2 | 1 | | | | | | | | failed: no checkpoint; 2 failed attempts before: a; b |"
            ),
            "{text}"
        );
        assert!(text.contains("up to 3 attempts in all"), "{text}");
        assert!(text.contains("- Not run here: end-to-end latency through Kafka.\n"));
        // With the latency phase too: nothing is left out; rescale comes before latency.
        o.latency = vec![LatencyResult {
            variant: v,
            rate: 1,
            seconds: 1,
            produced: 1,
            produce_rate: 1.0,
            records_in: 1,
            outputs: 1,
            p50_ms: None,
            p99_ms: None,
            error: None,
        }];
        let text = render("2026-01-01", "rivulet-bench run", &opts, &o);
        assert!(!text.contains("Not run here"), "{text}");
        let at = |h: &str| text.find(h).unwrap_or_else(|| panic!("{h}: {text}"));
        assert!(at("## Checkpoints") < at("## Rescale"));
        assert!(at("## Rescale") < at("## Latency through Kafka"));
    }
}
