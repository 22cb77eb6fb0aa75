//! The benchmark runner through Kafka: a tansu broker on loopback, a source topic filled
//! with Nexmark events, the machine's ceiling (raw rdkafka consumption of that topic), then
//! one `rivulet-worker` per variant, timed until it has read every event.
//!
//! A variant's time runs from spawning the worker until its `/status` shows
//! `recordsIn == events` (process start-up, restore and consumer group join included; the
//! start-up part, until `/readyz` answers, is reported separately). CPU time is the
//! worker's `utime + stime` from `/proc/<pid>/stat` at that moment; "events/s per core"
//! is events divided by CPU seconds, read once every record was handled (processed,
//! filtered, late, malformed or keyless: the time for that is reported too).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use rivulet_tests::{
    free_port, http_request, KafkaProducer, ProcessBuilder, ProduceRecord, Tansu, WorkerProcess,
};

use crate::nexmark::{Config, Generator};
use crate::queries::Variant;

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub events: u64,
    pub partitions: i32,
    pub seed: u64,
    pub checkpoint_ms: u64,
    pub variants: Vec<Variant>,
    /// Give up on one variant after this long.
    pub run_timeout: Duration,
    /// Ceiling measurements (the best is used).
    pub ceiling_runs: u32,
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

/// One variant's result.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub variant: Variant,
    /// `recordsIn` when the run ended (== events unless it timed out).
    pub records_in: u64,
    pub records_processed: u64,
    pub records_out: u64,
    pub seconds: f64,
    /// Spawn until every input record was handled (processed, filtered, late, malformed
    /// or keyless); `None` if that did not happen within the run timeout.
    pub handled_seconds: Option<f64>,
    pub startup_seconds: Option<f64>,
    pub cpu_seconds: f64,
    /// The broker's (tansu's) CPU seconds while the worker ran.
    pub broker_cpu_seconds: f64,
    pub timed_out: bool,
    pub error: Option<String>,
}

impl RunResult {
    pub fn rate(&self) -> f64 {
        self.records_in as f64 / self.seconds
    }

    pub fn rate_per_core(&self) -> f64 {
        if self.cpu_seconds > 0.0 {
            self.records_in as f64 / self.cpu_seconds
        } else {
            0.0
        }
    }
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub fill: Fill,
    pub ceilings: Vec<Ceiling>,
    pub runs: Vec<RunResult>,
}

impl Outcome {
    /// The best ceiling measurement.
    pub fn ceiling(&self) -> Option<&Ceiling> {
        self.ceilings
            .iter()
            .max_by(|a, b| a.rate().total_cmp(&b.rate()))
    }
}

pub const SOURCE_TOPIC: &str = "nexmark";

/// Runs the whole suite. `progress` gets one line per step.
pub fn run(opts: &Options, mut progress: impl FnMut(&str)) -> anyhow::Result<Outcome> {
    let worker_bin = worker_bin();
    if !worker_bin.is_file() {
        bail!(
            "{} does not exist; run `make build` (or cargo build --release --workspace)",
            worker_bin.display()
        );
    }
    let mut tansu = Tansu::start()?;
    let broker_pid = tansu.process().pid();
    let bootstrap = tansu.bootstrap();
    progress(&format!("tansu on {bootstrap}"));
    tansu.create_topic(SOURCE_TOPIC, opts.partitions)?;

    let config = Config {
        seed: opts.seed,
        ..Config::default()
    };
    let fill = fill_topic(
        &bootstrap,
        SOURCE_TOPIC,
        opts.partitions,
        &config,
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

    let mut runs = Vec::new();
    for v in &opts.variants {
        let r =
            run_variant(&tansu, broker_pid, &worker_bin, opts, *v).unwrap_or_else(|e| RunResult {
                variant: *v,
                records_in: 0,
                records_processed: 0,
                records_out: 0,
                seconds: 0.0,
                handled_seconds: None,
                startup_seconds: None,
                cpu_seconds: 0.0,
                broker_cpu_seconds: 0.0,
                timed_out: false,
                error: Some(format!("{e:#}")),
            });
        progress(&format!(
            "{}: {} in {:.2} s = {:.0} events/s, {:.0} events/s per core{}{}",
            v.id(),
            r.records_in,
            r.seconds,
            r.rate(),
            r.rate_per_core(),
            if r.timed_out { " (TIMED OUT)" } else { "" },
            r.error
                .as_deref()
                .map(|e| format!(" ERROR {e}"))
                .unwrap_or_default()
        ));
        runs.push(r);
    }
    Ok(Outcome {
        fill,
        ceilings,
        runs,
    })
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
    config: &Config,
    events: u64,
) -> anyhow::Result<Fill> {
    let start = Instant::now();
    let producer = KafkaProducer::idempotent(bootstrap)?;
    let generator = Generator::new(config.clone());
    let mut bytes = 0;
    let mut batch = Vec::with_capacity(10_000);
    let mut n = 0;
    while n < events {
        batch.clear();
        let end = (n + 10_000).min(events);
        for i in n..end {
            let value = generator.event(i).to_json();
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

fn run_variant(
    tansu: &Tansu,
    broker_pid: u32,
    worker_bin: &Path,
    opts: &Options,
    v: Variant,
) -> anyhow::Result<RunResult> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("rivulet-bench-{}-", v.id()))
        .tempdir()?;
    let storage = format!("file://{}", dir.path().join("snapshots").display());
    let manifest = v.manifest(SOURCE_TOPIC, opts.checkpoint_ms, &storage)?;
    tansu.create_topic(&manifest.spec.pipeline.sink.topic, opts.partitions)?;
    if let Some(dlq) = &manifest.spec.pipeline.dead_letter.topic {
        tansu.create_topic(dlq, 1)?;
    }
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, serde_yaml::to_string(&manifest)?)?;
    let data_dir = dir.path().join("data");
    let http = format!("127.0.0.1:{}", free_port());

    let broker0 = cpu_seconds(broker_pid)?;
    let start = Instant::now();
    let mut worker = ProcessBuilder::new(worker_bin)
        .label(v.id())
        .arg("--job")
        .arg(&job)
        .args(["--bootstrap-servers", &tansu.bootstrap(), "--http", &http])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("RIVULET_LOG", "warn")
        .spawn()?;
    let pid = worker.pid();
    let deadline = start + opts.run_timeout;
    let mut startup = None;
    let mut last = Status::default();
    let mut timed_out = false;
    let mut seconds = None;
    let mut handled_seconds = None;
    loop {
        if let Some(status) = worker.try_exit_status() {
            bail!(
                "worker exited ({status}) after reading {} records\n{}",
                last.records_in,
                worker.log_tail(30)
            );
        }
        if startup.is_none() && get(&http, "/readyz").is_some() {
            startup = Some(start.elapsed().as_secs_f64());
        }
        if let Some(s) = status(&http) {
            last = s;
            if seconds.is_none() && last.records_in >= opts.events {
                seconds = Some(start.elapsed().as_secs_f64());
            }
            if last.handled >= opts.events {
                handled_seconds = Some(start.elapsed().as_secs_f64());
                break;
            }
        }
        if Instant::now() >= deadline {
            timed_out = seconds.is_none();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = seconds.unwrap_or_else(|| start.elapsed().as_secs_f64());
    let cpu = cpu_seconds(pid)?;
    let broker_cpu_seconds = cpu_seconds(broker_pid)? - broker0;
    // Untimed: let the last batch finish, so the counts in the report are final
    // (until recordsOut has not moved for 1.5 s, at most 5 s).
    let settle = Instant::now();
    let mut changed = Instant::now();
    while settle.elapsed() < Duration::from_secs(5)
        && changed.elapsed() < Duration::from_millis(1500)
    {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(s) = status(&http) {
            if s.records_out != last.records_out || s.records_processed != last.records_processed {
                changed = Instant::now();
            }
            last = s;
        }
    }
    stop(&mut worker);
    Ok(RunResult {
        variant: v,
        records_in: last.records_in,
        records_processed: last.records_processed,
        records_out: last.records_out,
        seconds,
        handled_seconds,
        startup_seconds: startup,
        cpu_seconds: cpu,
        broker_cpu_seconds,
        timed_out,
        error: None,
    })
}

fn stop(worker: &mut WorkerProcess) {
    if worker.sigterm().is_ok() && worker.wait_exit(Duration::from_secs(20)).is_none() {
        worker.kill9();
    }
}

#[derive(Default, Clone, Copy, Debug)]
struct Status {
    records_in: u64,
    records_processed: u64,
    records_out: u64,
    /// processed + filtered + late + malformed + keyless.
    handled: u64,
}

fn get(http: &str, path: &str) -> Option<String> {
    let r = http_request(http, "GET", path, &[], b"", Duration::from_secs(2)).ok()?;
    r.is_success().then(|| r.text())
}

fn status(http: &str) -> Option<Status> {
    let v: serde_json::Value = serde_json::from_str(&get(http, "/status")?).ok()?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    Some(Status {
        records_in: n("recordsIn"),
        records_processed: n("recordsProcessed"),
        records_out: n("recordsOut"),
        handled: n("recordsProcessed")
            + n("recordsFiltered")
            + n("recordsLate")
            + n("recordsMalformed")
            + n("recordsKeyless"),
    })
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
}
