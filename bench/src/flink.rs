//! The Flink comparison (`rivulet-bench flink`, `make bench-flink`): the windowed query
//! Flink users start with (bids per auction in tumbling 10 s windows of event time, their
//! count and highest price: `bench/queries/tumble.yaml`) over the uniform bids
//! ([`crate::nexmark::UniformBids`]), on Rivulet (in process and through Kafka, by the
//! [`crate::runner`]) and on a local Flink in the same run (PyPI `apache-flink` with Java
//! 17: `bench/flink/tumble.py`, a JSON file in, JSON files out, exactly-once checkpoints).
//!
//! **The truth.** [`truth`] counts the results from the generated bids alone, apart from
//! both engines: the distinct (auction, window) pairs. Flink's bounded file source ends with
//! the final watermark, so Flink emits every window; Rivulet reads a topic that has no end,
//! so it emits the windows its last watermark closes (the smallest of the partitions'
//! highest event times, minus the out-of-orderness bound, minus 1 ms). Every run of either
//! engine whose results differ from its truth is a failed run, never a figure.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::dataset::Dataset;
use crate::nexmark::UniformBids;
use crate::report::table_head;
use crate::runner::{Outcome, RunResult, Summary, VariantRuns};

/// The query's window and out-of-orderness bound, as in `bench/queries/tumble.yaml`.
pub const WINDOW_MS: i64 = 10_000;
pub const OUT_OF_ORDERNESS_MS: i64 = 1_000;
/// Rivulet's events/s through Kafka over Flink's (file to files), at each parallelism.
pub const TARGET_RATIO: f64 = 3.0;

/// The Flink script, next to the bench's sources.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("flink/tumble.py")
}

/// How many results each engine must give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truth {
    /// Every (auction, window) pair: Flink's results.
    pub all_windows: u64,
    /// The pairs in windows Rivulet's last watermark closes: its results.
    pub closed_windows: u64,
    /// That watermark (epoch ms).
    pub final_watermark: i64,
}

/// The truth for bids `0..events`, read round-robin from `partitions` partitions.
pub fn truth(bids: &UniformBids, events: u64, partitions: i32) -> Truth {
    let partitions = partitions.max(1) as usize;
    let mut highest = vec![None::<i64>; partitions];
    let mut pairs: HashSet<(u64, i64)> = HashSet::with_capacity(events as usize);
    for n in 0..events {
        let b = bids.bid(n);
        let p = (n % partitions as u64) as usize;
        highest[p] = Some(highest[p].map_or(b.date_time, |h| h.max(b.date_time)));
        pairs.insert((b.auction, b.date_time.div_euclid(WINDOW_MS)));
    }
    let final_watermark = highest
        .iter()
        .flatten()
        .min()
        .map_or(i64::MIN, |h| h - OUT_OF_ORDERNESS_MS - 1);
    // A window [start, start + size) fires once the watermark reaches its last millisecond.
    let closed_windows = pairs
        .iter()
        .filter(|(_, w)| (w + 1) * WINDOW_MS - 1 <= final_watermark)
        .count() as u64;
    Truth {
        all_windows: pairs.len() as u64,
        closed_windows,
        final_watermark,
    }
}

/// How to run Flink.
#[derive(Clone, Debug)]
pub struct FlinkOptions {
    /// The Python with `apache-flink` installed.
    pub python: String,
    /// `JAVA_HOME` for Flink (Java 17), if the environment has none.
    pub java_home: Option<PathBuf>,
    pub parallelisms: Vec<u32>,
    pub checkpoint_ms: u64,
    pub repeat: u32,
    pub timeout: Duration,
}

/// One Flink run.
#[derive(Clone, Debug)]
pub struct FlinkRun {
    pub parallelism: u32,
    /// From starting the script until it exited: Python, the JVM and the local cluster's
    /// start-up included, as a user running the job sees it.
    pub wall_seconds: f64,
    /// Flink's net runtime of the job.
    pub job_seconds: f64,
    pub records_out: u64,
    pub error: Option<String>,
}

impl FlinkRun {
    pub fn rate(&self, events: u64) -> f64 {
        events as f64 / self.wall_seconds
    }
}

/// Writes bids `0..events` as JSON lines to `path`; returns the bytes written.
pub fn write_input(dataset: &Dataset, events: u64, path: &Path) -> anyhow::Result<u64> {
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut bytes = 0u64;
    for n in 0..events {
        let line = dataset.json(n);
        bytes += line.len() as u64 + 1;
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(bytes)
}

/// `JAVA_HOME` when it is set, else Java 17 where Debian installs it.
pub fn default_java_home() -> Option<PathBuf> {
    if std::env::var_os("JAVA_HOME").is_some() {
        return None;
    }
    [
        "/usr/lib/jvm/java-17-openjdk-amd64",
        "/usr/lib/jvm/java-17-openjdk-arm64",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.join("bin/java").is_file())
}

/// Whether `python` can import PyFlink; the error says how to install it.
pub fn check_flink(python: &str) -> anyhow::Result<()> {
    let out = Command::new(python)
        .args(["-c", "import pyflink.table"])
        .output()
        .with_context(|| format!("run {python}"))?;
    if !out.status.success() {
        bail!(
            "{python} cannot import PyFlink (`make bench-flink` installs it with scripts/setup-flink.sh): {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default()
        );
    }
    Ok(())
}

/// One Flink run of the query over `input` at `parallelism`, in a fresh dir under
/// `scratch`, checked against `truth.all_windows`.
pub fn run_flink(
    opts: &FlinkOptions,
    input: &Path,
    parallelism: u32,
    scratch: &Path,
    truth: &Truth,
) -> anyhow::Result<FlinkRun> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("rivulet-bench-flink-p{parallelism}-"))
        .tempdir_in(scratch)?;
    let stdout = dir.path().join("stdout");
    let stderr = dir.path().join("stderr");
    let mut cmd = Command::new(&opts.python);
    cmd.arg(script())
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(dir.path().join("out"))
        .arg("--checkpoints")
        .arg(dir.path().join("checkpoints"))
        .arg("--parallelism")
        .arg(parallelism.to_string())
        .arg("--checkpoint-ms")
        .arg(opts.checkpoint_ms.to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout)?)
        .stderr(std::fs::File::create(&stderr)?);
    if let Some(java) = &opts.java_home {
        cmd.env("JAVA_HOME", java);
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("start {}", opts.python))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > opts.timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("Flink did not finish in {} s", opts.timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let wall_seconds = start.elapsed().as_secs_f64();
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    if !status.success() {
        let err = std::fs::read_to_string(&stderr).unwrap_or_default();
        let tail: Vec<&str> = err
            .lines()
            .filter(|l| !l.trim_start().starts_with("at "))
            .collect();
        bail!(
            "Flink exited ({status}):\n{}",
            tail[tail.len().saturating_sub(15)..].join("\n")
        );
    }
    let last = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .context("the Flink script printed no result")?;
    let v: serde_json::Value = serde_json::from_str(last).context("parse the Flink result")?;
    let records_out = v["records_out"]
        .as_u64()
        .context("no records_out in the Flink result")?;
    let job_seconds = v["job_seconds"]
        .as_f64()
        .context("no job_seconds in the Flink result")?;
    let error = (records_out != truth.all_windows).then(|| {
        format!(
            "wrong output: {records_out} results where the truth, computed from the events, is {}",
            truth.all_windows
        )
    });
    Ok(FlinkRun {
        parallelism,
        wall_seconds,
        job_seconds,
        records_out,
        error,
    })
}

/// Every Flink run: each parallelism once, then again, `repeat` times.
pub fn run_all(
    opts: &FlinkOptions,
    input: &Path,
    scratch: &Path,
    events: u64,
    truth: &Truth,
    progress: &mut impl FnMut(&str),
) -> Vec<FlinkRun> {
    let mut runs = Vec::new();
    for run in 1..=opts.repeat.max(1) {
        for &n in &opts.parallelisms {
            let r = run_flink(opts, input, n, scratch, truth).unwrap_or_else(|e| FlinkRun {
                parallelism: n,
                wall_seconds: 0.0,
                job_seconds: 0.0,
                records_out: 0,
                error: Some(format!("{e:#}")),
            });
            progress(&format!(
                "Flink at parallelism {n}, run {run}: {:.1} s ({:.1} s job), {:.0} events/s, {} results{}",
                r.wall_seconds,
                r.job_seconds,
                if r.wall_seconds > 0.0 { r.rate(events) } else { 0.0 },
                r.records_out,
                r.error
                    .as_deref()
                    .map(|e| format!(" ERROR {e}"))
                    .unwrap_or_default()
            ));
            runs.push(r);
        }
    }
    runs
}

/// Rivulet's median events/s through Kafka at `parallelism`, to its last result out.
fn rivulet_rate(o: &Outcome, parallelism: u32, events: u64) -> Option<f64> {
    let vr: &VariantRuns = o.variants.iter().find(|vr| vr.parallelism == parallelism)?;
    Summary::of(
        vr.completed()
            .filter_map(|r: &RunResult| r.out_seconds)
            .map(|s| events as f64 / s),
    )
    .map(|x| x.median)
}

/// The comparison's section of the results file.
pub fn render(
    s: &mut String,
    events: u64,
    input_bytes: u64,
    truth: &Truth,
    flink: &[FlinkRun],
    opts: &FlinkOptions,
    o: &Outcome,
) {
    let _ = writeln!(s, "\n## Flink comparison\n");
    let _ = writeln!(
        s,
        "The same query and events on Flink (PyPI `apache-flink`, a local cluster with Java 17) in this run: `bench/flink/tumble.py`, {events} bids from one JSON-lines file ({:.1} MB) to JSON files through the filesystem connector, exactly-once checkpoints every {} ms to `file://`, hashmap state. Flink's seconds run from starting the script until it exited (Python, the JVM and the local cluster's start-up included, as a user sees it); \"job s\" is Flink's own net runtime of the job. Rivulet's seconds run from spawning the workers until their committed results (`recordsOut`, exactly-once) reached the truth: Kafka in, Kafka out, with tansu on the same cores. Results are checked against the truth counted from the generated bids alone: {} (auction, window) pairs in all (Flink's bounded input closes every window), {} in the windows Rivulet's last watermark ({}) closes (a topic has no end). A run that gives another number is reported as failed.\n",
        input_bytes as f64 / 1e6,
        opts.checkpoint_ms,
        truth.all_windows,
        truth.closed_windows,
        truth.final_watermark,
    );
    table_head(
        s,
        "system | path | workers | seconds | job s | events/s | results | truth | ",
        "llrrrrrrl",
    );
    for r in flink {
        let _ = match &r.error {
            Some(e) => writeln!(
                s,
                "| Flink 2.3 | JSON file → JSON files | {} | failed: {} | | | {} | {} | |",
                r.parallelism,
                e.lines().next().unwrap_or_default(),
                r.records_out,
                truth.all_windows
            ),
            None => writeln!(
                s,
                "| Flink 2.3 | JSON file → JSON files | {} | {:.1} | {:.1} | {:.0} | {} | {} | |",
                r.parallelism,
                r.wall_seconds,
                r.job_seconds,
                r.rate(events),
                r.records_out,
                truth.all_windows
            ),
        };
    }
    for vr in &o.variants {
        for r in &vr.runs {
            let _ = match (&r.error, r.out_seconds) {
                (None, Some(secs)) => writeln!(
                    s,
                    "| Rivulet | Kafka → Kafka exactly-once | {} | {secs:.1} | | {:.0} | {} | {} | |",
                    vr.parallelism,
                    events as f64 / secs,
                    r.records_out,
                    truth.closed_windows
                ),
                (e, _) => writeln!(
                    s,
                    "| Rivulet | Kafka → Kafka exactly-once | {} | failed: {} | | | {} | {} | |",
                    vr.parallelism,
                    e.as_deref()
                        .and_then(|e| e.lines().next())
                        .unwrap_or("timed out"),
                    r.records_out,
                    truth.closed_windows
                ),
            };
        }
    }
    for r in &o.in_process {
        let _ = writeln!(
            s,
            "| Rivulet | in process (no Kafka, no checkpoints) | 1 thread | {:.1} | | {:.0} | {} | {} | |",
            r.seconds,
            r.rate(),
            r.records_out,
            truth.closed_windows
        );
    }

    let _ = writeln!(s, "\n### Ratio\n");
    let _ = writeln!(
        s,
        "Rivulet through Kafka over Flink (file to files), median events/s at the same parallelism.\n"
    );
    table_head(
        s,
        "workers | Rivulet events/s | Flink events/s | ratio | target | ",
        "rrrrll",
    );
    for &n in &opts.parallelisms {
        let flink_rate = Summary::of(
            flink
                .iter()
                .filter(|r| r.parallelism == n && r.error.is_none())
                .map(|r| r.rate(events)),
        )
        .map(|x| x.median);
        let ours = rivulet_rate(o, n, events);
        let _ = match ours.zip(flink_rate) {
            Some((a, b)) => writeln!(
                s,
                "| {n} | {a:.0} | {b:.0} | {:.2}× | >= {TARGET_RATIO:.0}× | {} |",
                a / b,
                if a / b >= TARGET_RATIO {
                    "met"
                } else {
                    "NOT met"
                }
            ),
            None => writeln!(
                s,
                "| {n} | {} | {} | not measured | >= {TARGET_RATIO:.0}× | |",
                ours.map_or_else(|| "failed".into(), |a| format!("{a:.0}")),
                match flink_rate {
                    Some(b) => format!("{b:.0}"),
                    None if flink.iter().any(|r| r.parallelism == n) => "failed".into(),
                    None => "not run".into(),
                },
            ),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivulet_api::spec::StateBackendKind;

    #[test]
    fn the_truth_counts_distinct_windows_per_auction() {
        // 4 auctions, 30 s of bids: 3 windows, every auction in each.
        let bids = UniformBids {
            auctions: 4,
            ..UniformBids::default()
        };
        let t = truth(&bids, 30_000, 4);
        assert_eq!(t.all_windows, 12);
        // The last bids (29,996..29,999 ms) leave the watermark at 29,996 - 1,001: the
        // third window is still open.
        assert_eq!(t.final_watermark, bids.base_time_ms + 29_996 - 1_001);
        assert_eq!(t.closed_windows, 8);
    }

    #[test]
    fn the_query_in_process_gives_the_truth_on_both_backends() {
        let bids = UniformBids::default();
        let dataset = Dataset::UniformBids(bids.clone());
        let events = 120_000;
        let t = truth(&bids, events, 4);
        // 12 windows, 11 closed, about 63% of the 10,000 auctions in each.
        assert!(t.closed_windows > 60_000 && t.closed_windows < t.all_windows);
        let records = crate::inprocess::generate(&dataset, events, "nexmark", 4);
        let q = crate::queries::query("tumble").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        for backend in [StateBackendKind::Heap, StateBackendKind::Rocksdb] {
            let r = crate::inprocess::run(q, backend, &records, 4, scratch.path()).unwrap();
            assert_eq!(r.records_out, t.closed_windows, "{backend:?}");
            assert_eq!(r.records_processed, events, "{backend:?}");
        }
    }

    #[test]
    fn the_input_file_holds_one_bid_per_line() {
        let dataset = Dataset::UniformBids(UniformBids::default());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bids.json");
        let bytes = write_input(&dataset, 1000, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len() as u64, bytes);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        let v: serde_json::Value = serde_json::from_str(lines[7]).unwrap();
        assert_eq!(v["type"], "bid");
        assert_eq!(v["dateTime"], UniformBids::default().base_time_ms + 7);
    }
}
