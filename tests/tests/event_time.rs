//! Event time on the inputs users really have: a backlog read from the beginning of a topic,
//! and restores with input left to read. Every output is compared in full with a truth
//! computed here, without any of Rivulet's code.
//!
//! - Two reproductions of the bugs the live-like tests could not see: a busy partition taken
//!   for idle while a 5 M-record backlog is read (records dead-lettered as late), and a
//!   restore whose partitions had been read unevenly (the watermark stayed at the restored
//!   value, and a run with nothing left to read never fired the remaining windows).
//! - A differential check: randomized workloads (4–8 partitions of uneven size, skewed keys,
//!   event times out of order within the bound, historical or wall-clock, each window type)
//!   read as a backlog, through one worker, through one worker `kill -9`ed again and again
//!   while it reads, and through three workers and the shuffle.
//!
//! The seed of each randomized workload is printed; `RIVULET_TEST_SEED` replays one.
//! Kills land outside open transactions, as in `distributed.rs`: tansu neither aborts a
//! fenced producer's open transaction nor times it out (DESIGN, deviations 1 and 2). With
//! three workers the sink uses the `fixed` partitioner with a partition per worker
//! (deviation 5).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::{newest_manifest, Cluster, CATCH_UP_TIMEOUT, STOP_TIMEOUT};
use common::{Agg, WindowTruth};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rivulet_tests::{consume_all, wait_until, KafkaProducer, ProduceRecord, Tansu};
use serde_json::Value;

/// Event time of the first bid of the backlog reproduction (2023-11-14).
const BASE_TS: i64 = 1_700_000_000_000;

/// Reads the whole `topic` (`read_committed`) and checks that it holds exactly `truth`, keyed
/// by the field `key` ([`common::assert_windows`]).
fn assert_output_by(bootstrap: &str, topic: &str, key: &str, truth: &WindowTruth, context: &str) {
    let out = consume_all(
        bootstrap,
        topic,
        true,
        truth.len(),
        Duration::from_secs(3),
        Duration::from_secs(180),
    )
    .unwrap();
    common::assert_windows(&out, key, truth, &format!("{context}: "));
}

/// [`assert_output_by`] for results keyed by the field `key`.
fn assert_output(bootstrap: &str, topic: &str, truth: &WindowTruth, context: &str) {
    assert_output_by(bootstrap, topic, "key", truth, context);
}

/// Tumbling windows of `size_ms` over `(key, ts, amount)` events.
fn tumbling_truth(events: impl Iterator<Item = (String, i64, i64)>, size_ms: i64) -> WindowTruth {
    let mut t = WindowTruth::new();
    for (key, ts, amount) in events {
        let start = ts.div_euclid(size_ms) * size_ms;
        t.entry((key, start))
            .or_insert_with(|| (start + size_ms, Agg::empty()))
            .1
            .add(amount);
    }
    t
}

/// A job manifest with `pipeline` and state checkpointed to `file://<dir>/snapshots` every
/// `interval`, at `parallelism`.
fn write_job(dir: &Path, name: &str, pipeline: &str, backend: &str, interval: &str, n: u32) {
    common::write(
        dir,
        &format!("{name}.yaml"),
        &common::manifest_with_parallelism(
            name,
            pipeline,
            &common::file_state(dir, backend, interval),
            n,
        ),
    );
}

/// The reproductions' job `name`: its source topic is `name` too; tumbling 10 s windows by
/// `key` with count, sum, min and max of `field`, exactly once into `results`, with 1 s
/// checkpoints.
fn reproduction_job(dir: &Path, name: &str, key: &str, field: &str, idle: &str, backend: &str) {
    write_job(
        dir,
        name,
        &format!(
            r#"
source: {{topics: [{name}], startFrom: earliest}}
time: {{type: event, field: ts, maxOutOfOrderness: 1s, idleTimeout: {idle}}}
key: [{key}]
window: {{type: tumbling, size: 10s}}
aggregates:
  - {{name: n, fn: count}}
  - {{name: total, fn: sum, field: {field}}}
  - {{name: lo, fn: min, field: {field}}}
  - {{name: hi, fn: max, field: {field}}}
sink: {{topic: results, deliveryGuarantee: exactly-once}}
deadLetter: {{topic: dead}}
"#
        ),
        backend,
        "1s",
        1,
    );
}

// --- Reproduction 1: a backlog read from the beginning ------------------------------------

/// The first reproduction's input: `{"auction", "price", "ts"}` bids written round-robin over
/// 4 partitions, one per millisecond of event time (so each partition is strictly in order),
/// then one bid per partition 60 s ahead of the last, which closes every window.
struct Bids {
    events: usize,
    auctions: u64,
}

impl Bids {
    const PARTITIONS: i32 = 4;

    /// The `i`-th bid: (partition, auction, price, event time).
    fn bid(&self, i: usize) -> (i32, i64, i64, i64) {
        let h = (i as u64 ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let auction = (h >> 33) % self.auctions + 1;
        let price = (h >> 7) % 100_000;
        (
            (i % Self::PARTITIONS as usize) as i32,
            auction as i64,
            price as i64,
            BASE_TS + i as i64,
        )
    }

    fn produce(&self, bootstrap: &str, topic: &str) {
        let producer = KafkaProducer::idempotent(bootstrap).unwrap();
        let mut chunk = Vec::with_capacity(10_000);
        for i in 0..self.events {
            let (p, a, price, ts) = self.bid(i);
            chunk.push(
                ProduceRecord::new(format!(r#"{{"auction":{a},"price":{price},"ts":{ts}}}"#))
                    .with_partition(p),
            );
            if chunk.len() == chunk.capacity() {
                producer.send(topic, &chunk).unwrap();
                chunk.clear();
            }
        }
        let close = BASE_TS + self.events as i64 + 60_000;
        for p in 0..Self::PARTITIONS {
            chunk.push(
                ProduceRecord::new(format!(r#"{{"auction":0,"price":0,"ts":{close}}}"#))
                    .with_partition(p),
            );
        }
        producer.send(topic, &chunk).unwrap();
        producer.flush().unwrap();
    }

    /// Tumbling 10 s windows per auction: count and max(price) (as count and hi; the test's
    /// sum and min columns repeat them).
    fn truth(&self) -> WindowTruth {
        tumbling_truth(
            (0..self.events).map(|i| {
                let (_, a, price, ts) = self.bid(i);
                (a.to_string(), ts, price)
            }),
            10_000,
        )
    }
}

/// Found by reading a 5 M-record backlog with `idleTimeout: 5s`: the source does not read
/// the partitions evenly (one of them delivered its first record some 10 s after the
/// others), so partitions with records waiting went without a record for longer than the
/// idle timeout, were taken for idle, and the watermark ran ahead of their records: 71% of
/// them were dead-lettered as late. A partition with records waiting is never idle now, and
/// watermark alignment pauses partitions far ahead in event time, so window state stays
/// small while the backlog is read.
#[test]
fn a_backlog_read_from_the_beginning_is_not_taken_for_idle() {
    let _serial = common::serial();
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    broker.create_topic("bids", Bids::PARTITIONS).unwrap();
    broker.create_topic("results", 1).unwrap();
    broker.create_topic("dead", 1).unwrap();
    let bids = Bids {
        events: 5_000_000,
        auctions: 10_000,
    };
    bids.produce(&b, "bids");
    let dir = tempfile::tempdir().unwrap();
    reproduction_job(dir.path(), "bids", "auction", "price", "5s", "heap");
    let mut w = common::start_worker(
        &dir.path().join("bids.yaml"),
        &b,
        &dir.path().join("data"),
        &[],
        "bids",
    );
    let total = bids.events as u64 + Bids::PARTITIONS as u64;
    let mut max_entries = 0.0f64;
    let mut last = Value::Null;
    let read = wait_until(Duration::from_secs(600), Duration::from_millis(200), || {
        assert!(w.process.is_running(), "{}", w.process.log_tail(40));
        if let Some(e) = common::metric(&w.http, "rivulet_state_entries") {
            max_entries = max_entries.max(e);
        }
        last = common::status(&w.http).unwrap_or(Value::Null);
        last["recordsIn"].as_u64() == Some(total)
    });
    assert!(read, "the backlog was not read; last status {last}");
    assert_output_by(&b, "results", "auction", &bids.truth(), "backlog");
    let s = common::status(&w.http).unwrap();
    assert_eq!(s["recordsLate"].as_u64(), Some(0), "{s}");
    common::assert_no_dead_letters(&b, "dead", "backlog: ");
    // Alignment kept the partitions within `maxDrift` (30 s) of each other in event time,
    // plus what one poll returns before the next decision (4,096 records of one partition
    // span 16 s here): some 9 windows of 10 s per auction were open at once, where reading
    // the partitions as the broker delivered them left over 100 open.
    let bound = 20.0 * bids.auctions as f64;
    assert!(
        max_entries <= bound,
        "{max_entries} window states at once (at most {bound} expected)"
    );
    let pauses = common::metric(&w.http, "rivulet_source_pauses_total").unwrap_or(0.0);
    eprintln!("peak window states {max_entries}, {pauses} alignment pauses");
}

// --- Reproduction 2: a restore with input left to read -------------------------------------

/// The second reproduction's input: `{"key", "amount", "ts"}` events of 500 users,
/// partitioned by user into uneven partitions (ten users share the small partition 3),
/// `ts = base + 5 i + random(0..200)`, then one event per partition far ahead.
struct Spending {
    events: usize,
    base: i64,
    seed: u64,
}

impl Spending {
    const PARTITIONS: i32 = 4;

    /// Every event: (partition, user, event time, amount).
    fn events(&self) -> Vec<(i32, String, i64, i64)> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        (0..self.events)
            .map(|i| {
                let user = rng.random_range(0..500);
                let partition = if user < 10 { 3 } else { user % 3 };
                let ts = self.base + 5 * i as i64 + rng.random_range(0..200);
                (
                    partition,
                    format!("u{user}"),
                    ts,
                    rng.random_range(1..1_000),
                )
            })
            .collect()
    }

    /// Produces the events `pick(index, partition)` selects, in order, then the closing
    /// event of each partition in `close`. Returns how many records it produced.
    fn produce(
        &self,
        bootstrap: &str,
        topic: &str,
        pick: impl Fn(usize, i32) -> bool,
        close: &[i32],
    ) -> u64 {
        let producer = KafkaProducer::idempotent(bootstrap).unwrap();
        let mut records: Vec<ProduceRecord> = self
            .events()
            .into_iter()
            .enumerate()
            .filter(|(i, e)| pick(*i, e.0))
            .map(|(_, (p, user, ts, amount))| {
                ProduceRecord::keyed(
                    user.clone(),
                    format!(r#"{{"key":"{user}","amount":{amount},"ts":{ts}}}"#),
                )
                .with_partition(p)
            })
            .collect();
        let ts = self.base + 5 * self.events as i64 + 3_600_000;
        records.extend(close.iter().map(|&p| {
            ProduceRecord::keyed(
                "zz-close",
                format!(r#"{{"key":"zz-close","amount":0,"ts":{ts}}}"#),
            )
            .with_partition(p)
        }));
        for chunk in records.chunks(10_000) {
            producer.send(topic, chunk).unwrap();
        }
        producer.flush().unwrap();
        records.len() as u64
    }

    fn truth(&self) -> WindowTruth {
        tumbling_truth(
            self.events().into_iter().map(|(_, u, ts, a)| (u, ts, a)),
            10_000,
        )
    }

    /// Runs the job on the first half of the input and the whole small partition 3, and
    /// `kill -9`s it once a checkpoint holds all of that: partition 3 was read to its end
    /// (its closing event included), the others have input left, which then arrives.
    fn crash_with_a_partition_read_to_its_end(&self, b: &str, job: &Path, data: &Path) {
        let half = self.events / 2;
        let first = self.produce(b, "spending", |i, p| p == 3 || i < half, &[3]);
        let mut w = common::start_worker(job, b, data, &[], "first");
        let read = common::wait_statuses(
            std::slice::from_mut(&mut w),
            "",
            "the first part read",
            CATCH_UP_TIMEOUT,
            |ss| ss[0]["recordsIn"].as_u64() == Some(first),
        );
        let c = common::last_checkpoint(&read[0]);
        common::wait_statuses(
            std::slice::from_mut(&mut w),
            "",
            "a checkpoint after it",
            CATCH_UP_TIMEOUT,
            |ss| common::last_checkpoint(&ss[0]) > c,
        );
        assert!(common::kill_outside_transaction(&mut w, data));
        self.produce(b, "spending", |i, p| p != 3 && i >= half, &[0, 1, 2]);
    }
}

/// The second reproduction's job: RocksDB, checkpoints every second, `idleTimeout: 60s` so
/// idleness cannot fire the windows in the test's time.
fn spending_job(dir: &Path, name: &str) {
    reproduction_job(dir, name, "key", "amount", "60s", "rocksdb");
}

/// A broker with the second reproduction's topics, and its job after
/// [`Spending::crash_with_a_partition_read_to_its_end`]: (broker, directory, job manifest,
/// data directory, input).
fn spending_crashed(seed: u64) -> (Tansu, tempfile::TempDir, PathBuf, PathBuf, Spending) {
    let broker = Tansu::start().unwrap();
    broker
        .create_topic("spending", Spending::PARTITIONS)
        .unwrap();
    broker.create_topic("results", 1).unwrap();
    broker.create_topic("dead", 1).unwrap();
    let input = Spending {
        events: 200_000,
        base: BASE_TS,
        seed,
    };
    let dir = tempfile::tempdir().unwrap();
    spending_job(dir.path(), "spending");
    let job = dir.path().join("spending.yaml");
    let data = dir.path().join("data");
    input.crash_with_a_partition_read_to_its_end(&broker.bootstrap(), &job, &data);
    (broker, dir, job, data, input)
}

/// Found by killing a worker right after its first checkpoint while it read a backlog:
/// after the restore it read the rest within a second, but its watermark stayed at the
/// restored value and no window fired until the partitions went idle. A restore started
/// every partition at the restored watermark, so a partition read to its end before the
/// checkpoint held the others back with nothing left to read. A snapshot now keeps each
/// partition's highest event time with its offset, and a restore continues from there.
#[test]
fn a_restore_with_input_left_fires_windows_as_it_reads() {
    let _serial = common::serial();
    let (broker, dir, job, data, input) = spending_crashed(7);
    let b = broker.bootstrap();
    let manifest = newest_manifest(dir.path(), "spending").expect("a complete checkpoint");

    // Within half the idle timeout, every window has fired: the watermark moved while the
    // rest was read, as on a fresh start.
    let started = Instant::now();
    let mut w = common::start_worker(&job, &b, &data, &[], "restored");
    let truth = input.truth();
    let out = consume_all(
        &b,
        "results",
        true,
        truth.len(),
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(
        out.len() >= truth.len(),
        "{} of {} results within {:?} of the restart (idleTimeout is 60s); status {}",
        out.len(),
        truth.len(),
        started.elapsed(),
        common::status(&w.http).unwrap_or_default()
    );
    let s = common::status(&w.http).unwrap();
    assert_eq!(s["restoredFrom"], manifest["id"], "{s}");
    w.process.sigterm().unwrap();
    assert!(w
        .process
        .wait_exit(STOP_TIMEOUT)
        .is_some_and(|e| e.success()));
    assert_output(&b, "results", &truth, "restored");
    common::assert_no_dead_letters(&b, "dead", "restored: ");
}

/// The same crash, then the restarted worker killed 10 times at random 1–6 s intervals,
/// mostly after it has read everything but before any partition goes idle: its checkpoints
/// then hold offsets at the end of the input. The last run has nothing left to read and
/// must still emit every remaining window (before, a third of the results were never
/// emitted: the watermark of those checkpoints was the one restored at the first crash).
#[test]
fn kills_after_the_backlog_was_read_lose_no_window() {
    let _serial = common::serial();
    let (broker, _dir, job, data, input) = spending_crashed(11);
    let b = broker.bootstrap();
    let mut rng = rand::rng();
    let mut w = common::start_worker(&job, &b, &data, &[], "run-0");
    for run in 1..=10 {
        std::thread::sleep(Duration::from_millis(rng.random_range(1_000..6_000)));
        assert!(
            common::kill_outside_transaction(&mut w, &data),
            "run {run} died on its own:\n{}",
            w.process.log_tail(40)
        );
        w = common::start_worker(&job, &b, &data, &[], &format!("run-{run}"));
    }
    let truth = input.truth();
    assert_output(&b, "results", &truth, "after 10 kills");
    w.process.sigterm().unwrap();
    assert!(w
        .process
        .wait_exit(STOP_TIMEOUT)
        .is_some_and(|e| e.success()));
    assert_output(&b, "results", &truth, "after 10 kills and a stop");
    common::assert_no_dead_letters(&b, "dead", "after 10 kills: ");
}

// --- The differential check ----------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum WindowKind {
    Tumbling { size: i64 },
    Sliding { size: i64, slide: i64 },
    Session { gap: i64 },
}

impl WindowKind {
    fn yaml(&self) -> String {
        match self {
            WindowKind::Tumbling { size } => format!("{{type: tumbling, size: {size}ms}}"),
            WindowKind::Sliding { size, slide } => {
                format!("{{type: sliding, size: {size}ms, slide: {slide}ms}}")
            }
            WindowKind::Session { gap } => format!("{{type: session, gap: {gap}ms}}"),
        }
    }
}

/// A randomized event-time workload, read as a backlog.
#[derive(Debug)]
struct Workload {
    seed: u64,
    partitions: i32,
    window: WindowKind,
    bound_ms: i64,
    idle_timeout: Option<&'static str>,
    max_drift: Option<&'static str>,
    /// Per partition, in order: (key, event time, amount).
    events: Vec<Vec<(String, i64, i64)>>,
}

impl Workload {
    /// `events` records over 4–8 partitions of uneven size (one can hold ten times another),
    /// keys skewed towards a few hot ones, each partition's event time running over the
    /// same minutes at its own density, with gaps, and out of order within the bound
    /// (never late). Historical (2023) or wall-clock (the last hour) event times.
    fn generate(seed: u64, window: WindowKind, events: usize) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed);
        let partitions = rng.random_range(4..=8);
        let keys = rng.random_range(20..300);
        let bound_ms = [500, 1_000, 2_000][rng.random_range(0..3)];
        let span_ms: i64 = 120_000;
        let base = if rng.random_bool(0.5) {
            BASE_TS
        } else {
            (common::now_ms() - 3_600_000) / 1_000 * 1_000
        };
        let weights: Vec<f64> = (0..partitions)
            .map(|_| rng.random_range(1.0..10.0f64))
            .collect();
        let sum: f64 = weights.iter().sum();
        let mut out = Vec::new();
        for w in &weights {
            let n = ((events as f64) * w / sum) as usize + 1;
            // Some partitions start late in event time.
            let start = base + rng.random_range(0..span_ms / 4);
            let step = (base + span_ms - start) as f64 / n as f64;
            let mut clock = start as f64;
            let mut part = Vec::with_capacity(n);
            for _ in 0..n {
                clock += rng.random_range(0.0..2.0 * step);
                if rng.random_ratio(1, 500) {
                    clock += rng.random_range(0.0..10_000.0); // a gap in event time
                }
                let ts = clock as i64 - rng.random_range(0..bound_ms);
                let u: f64 = rng.random();
                let key = format!("k{}", (u * u * keys as f64) as usize);
                part.push((key, ts, rng.random_range(-50..1_000)));
            }
            out.push(part);
        }
        Workload {
            seed,
            partitions,
            window,
            bound_ms,
            // Short timeouts catch a busy partition taken for idle on small backlogs too.
            idle_timeout: [None, Some("50ms"), Some("300ms"), Some("2s")][rng.random_range(0..4)],
            max_drift: [None, Some("2s"), Some("10s")][rng.random_range(0..3)],
            events: out,
        }
    }

    /// What the workload is, for assertion messages.
    fn describe(&self) -> String {
        format!(
            "workload seed {}, {} partitions, {:?}, bound {} ms, idleTimeout {:?}, maxDrift {:?}",
            self.seed,
            self.partitions,
            self.window,
            self.bound_ms,
            self.idle_timeout,
            self.max_drift
        )
    }

    fn total(&self) -> u64 {
        self.events.iter().map(|p| p.len() as u64 + 1).sum()
    }

    /// Produces every partition's events in order, then one closing record per partition
    /// far past every window (its own window, of key `zz-close`, never closes).
    fn produce(&self, bootstrap: &str, topic: &str) {
        let producer = KafkaProducer::idempotent(bootstrap).unwrap();
        let last = self.events.iter().flatten().map(|e| e.1).max().unwrap_or(0);
        let close = last + 3_600_000;
        for (p, part) in self.events.iter().enumerate() {
            let mut records: Vec<ProduceRecord> = part
                .iter()
                .map(|(key, ts, amount)| {
                    ProduceRecord::keyed(
                        key.clone(),
                        format!(r#"{{"key":"{key}","ts":{ts},"amount":{amount}}}"#),
                    )
                    .with_partition(p as i32)
                })
                .collect();
            records.push(
                ProduceRecord::keyed(
                    "zz-close",
                    format!(r#"{{"key":"zz-close","ts":{close},"amount":0}}"#),
                )
                .with_partition(p as i32),
            );
            for chunk in records.chunks(5_000) {
                producer.send(topic, chunk).unwrap();
            }
        }
        producer.flush().unwrap();
    }

    /// The true results, for the workload's window.
    fn truth(&self) -> WindowTruth {
        let all = self.events.iter().flatten().cloned();
        match self.window {
            WindowKind::Tumbling { size } => tumbling_truth(all, size),
            WindowKind::Sliding { size, slide } => {
                let mut t = WindowTruth::new();
                for (key, ts, amount) in all {
                    let mut start = ts.div_euclid(slide) * slide;
                    while start > ts - size {
                        t.entry((key.clone(), start))
                            .or_insert_with(|| (start + size, Agg::empty()))
                            .1
                            .add(amount);
                        start -= slide;
                    }
                }
                t
            }
            WindowKind::Session { gap } => {
                // Each record opens [ts, ts + gap); sessions that overlap or touch merge.
                let mut by_key: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
                for (key, ts, amount) in all {
                    by_key.entry(key).or_default().push((ts, amount));
                }
                let mut t = WindowTruth::new();
                for (key, mut records) in by_key {
                    records.sort_unstable();
                    let mut session: Option<(i64, i64, Agg)> = None;
                    for (ts, amount) in records {
                        match &mut session {
                            Some((_, end, agg)) if ts <= *end => {
                                *end = (*end).max(ts + gap);
                                agg.add(amount);
                            }
                            _ => {
                                if let Some((start, end, agg)) = session.take() {
                                    t.insert((key.clone(), start), (end, agg));
                                }
                                let mut agg = Agg::empty();
                                agg.add(amount);
                                session = Some((ts, ts + gap, agg));
                            }
                        }
                    }
                    if let Some((start, end, agg)) = session {
                        t.insert((key.clone(), start), (end, agg));
                    }
                }
                t
            }
        }
    }

    fn pipeline(&self, topic: &str, results: &str, dead: &str, fixed: bool) -> String {
        let mut time = format!(
            "{{type: event, field: ts, maxOutOfOrderness: {}ms",
            self.bound_ms
        );
        if let Some(idle) = self.idle_timeout {
            time.push_str(&format!(", idleTimeout: {idle}"));
        }
        if let Some(drift) = self.max_drift {
            time.push_str(&format!(", maxDrift: {drift}"));
        }
        time.push('}');
        format!(
            r#"
source: {{topics: [{topic}]}}
time: {time}
key: [key]
window: {window}
aggregates:
  - {{name: n, fn: count}}
  - {{name: total, fn: sum, field: amount}}
  - {{name: lo, fn: min, field: amount}}
  - {{name: hi, fn: max, field: amount}}
sink: {{topic: {results}, deliveryGuarantee: exactly-once{partitioner}}}
deadLetter: {{topic: {dead}}}
"#,
            window = self.window.yaml(),
            partitioner = if fixed { ", partitioner: fixed" } else { "" },
        )
    }
}

/// The base seed of this run's workloads: `RIVULET_TEST_SEED`, or a fresh one.
fn base_seed() -> u64 {
    std::env::var("RIVULET_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

/// Creates `<name>-in`, `<name>-out` (`out_partitions`) and `<name>-dead`.
fn workload_topics(broker: &Tansu, name: &str, w: &Workload, out_partitions: i32) {
    broker
        .create_topic(&format!("{name}-in"), w.partitions)
        .unwrap();
    broker
        .create_topic(&format!("{name}-out"), out_partitions)
        .unwrap();
    broker
        .create_topic(&format!("{name}-dead"), out_partitions)
        .unwrap();
}

/// Each window type, with a random workload read as a backlog by one worker (heap or
/// RocksDB): the full output is exactly the truth, and nothing is late.
#[test]
fn randomized_backlogs_give_exactly_the_true_windows() {
    let _serial = common::serial();
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let seed = base_seed();
    let windows = [
        WindowKind::Tumbling { size: 2_000 },
        WindowKind::Sliding {
            size: 4_000,
            slide: 1_000,
        },
        WindowKind::Session { gap: 700 },
    ];
    for (case, window) in windows.into_iter().enumerate() {
        let w = Workload::generate(seed + case as u64, window, 40_000);
        let context = format!("case {case}, RIVULET_TEST_SEED={seed}: {}", w.describe());
        eprintln!("{context}");
        let name = format!("case{case}");
        workload_topics(&broker, &name, &w, 1);
        w.produce(&b, &format!("{name}-in"));
        let dir = tempfile::tempdir().unwrap();
        let backend = ["heap", "rocksdb"][case % 2];
        write_job(
            dir.path(),
            &name,
            &w.pipeline(
                &format!("{name}-in"),
                &format!("{name}-out"),
                &format!("{name}-dead"),
                false,
            ),
            backend,
            "500ms",
            1,
        );
        let mut worker = common::start_worker(
            &dir.path().join(format!("{name}.yaml")),
            &b,
            &dir.path().join("data"),
            &[],
            &name,
        );
        let truth = w.truth();
        assert_output(&b, &format!("{name}-out"), &truth, &context);
        let s = common::status(&worker.http).unwrap();
        assert_eq!(s["recordsIn"].as_u64(), Some(w.total()), "{context}: {s}");
        assert_eq!(s["recordsLate"].as_u64(), Some(0), "{context}: {s}");
        worker.process.sigterm().unwrap();
        assert!(worker
            .process
            .wait_exit(STOP_TIMEOUT)
            .is_some_and(|e| e.success()));
        assert_output(&b, &format!("{name}-out"), &truth, &context);
        common::assert_no_dead_letters(&b, &format!("{name}-dead"), &format!("{context}: "));
    }
}

/// A random workload read as a backlog by one worker that is `kill -9`ed at random moments
/// while it reads (at least 10 times, some within a second of its restart), then a last run
/// with no new input: every result is emitted, each exactly once. The source is slowed to
/// 8,000 records/s so the backlog lasts through the kills.
#[test]
fn randomized_backlog_survives_kills_while_it_is_read() {
    let _serial = common::serial();
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let seed = base_seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let window = [
        WindowKind::Tumbling { size: 1_000 },
        WindowKind::Sliding {
            size: 3_000,
            slide: 1_000,
        },
        WindowKind::Session { gap: 500 },
    ][rng.random_range(0..3)];
    let w = Workload::generate(seed, window, 60_000);
    let context = format!("RIVULET_TEST_SEED={seed}: {}", w.describe());
    eprintln!("{context}");
    workload_topics(&broker, "kills", &w, 1);
    w.produce(&b, "kills-in");
    let dir = tempfile::tempdir().unwrap();
    write_job(
        dir.path(),
        "kills",
        &w.pipeline("kills-in", "kills-out", "kills-dead", false),
        "rocksdb",
        "300ms",
        1,
    );
    let job = dir.path().join("kills.yaml");
    let data = dir.path().join("data");
    let env = [("RIVULET_FAULT".to_string(), "slow-source:8000".to_string())];
    let mut worker = common::start_worker(&job, &b, &data, &env, "run-0");
    let mut quick = 0;
    for run in 1..=12 {
        // Some kills within a second of the restart, the others later.
        let after = if run % 3 == 1 {
            quick += 1;
            rng.random_range(200..1_000)
        } else {
            rng.random_range(1_000..3_000)
        };
        std::thread::sleep(Duration::from_millis(after));
        let read = common::status(&worker.http).map(|s| s["recordsIn"].clone());
        assert!(
            common::kill_outside_transaction(&mut worker, &data),
            "{context}: run {run} died on its own:\n{}",
            worker.process.log_tail(40)
        );
        eprintln!(
            "killed run {} after {after} ms, having read {read:?}",
            run - 1
        );
        worker = common::start_worker(&job, &b, &data, &env, &format!("run-{run}"));
    }
    assert!(quick >= 3);
    // The last run: whatever input is left, and then nothing new.
    let truth = w.truth();
    assert_output(&b, "kills-out", &truth, &context);
    worker.process.sigterm().unwrap();
    assert!(worker
        .process
        .wait_exit(STOP_TIMEOUT)
        .is_some_and(|e| e.success()));
    assert_output(&b, "kills-out", &truth, &context);
    common::assert_no_dead_letters(&b, "kills-dead", &format!("{context}: "));
}

/// A random workload read as a backlog by three workers: keys cross workers through the
/// shuffle, the operator's watermark is the minimum over every worker's partitions, and the
/// full output is exactly the truth with nothing late.
#[test]
fn randomized_backlog_through_the_shuffle_at_parallelism_3() {
    const WORKERS: usize = 3;
    let _serial = common::serial();
    let broker = Tansu::start().unwrap();
    let b = broker.bootstrap();
    let seed = base_seed();
    let window = [
        WindowKind::Tumbling { size: 2_000 },
        WindowKind::Sliding {
            size: 2_000,
            slide: 500,
        },
        WindowKind::Session { gap: 400 },
    ][(seed % 3) as usize];
    let w = Workload::generate(seed, window, 60_000);
    let context = format!("RIVULET_TEST_SEED={seed}: {}", w.describe());
    eprintln!("{context}");
    workload_topics(&broker, "shuffle", &w, WORKERS as i32);
    w.produce(&b, "shuffle-in");
    let dir = tempfile::tempdir().unwrap();
    write_job(
        dir.path(),
        "shuffle",
        &w.pipeline("shuffle-in", "shuffle-out", "shuffle-dead", true),
        "heap",
        "500ms",
        WORKERS as u32,
    );
    let mut cluster = Cluster::start(WORKERS, &dir.path().join("shuffle.yaml"), &b, dir.path());
    let truth = w.truth();
    assert_output(&b, "shuffle-out", &truth, &context);
    let total = w.total();
    let statuses = common::wait_statuses(
        &mut cluster.workers,
        &format!("{context}: "),
        "every record read",
        CATCH_UP_TIMEOUT,
        |ss| {
            ss.iter()
                .map(|s| s["recordsIn"].as_u64().unwrap_or(0))
                .sum::<u64>()
                == total
        },
    );
    let late: u64 = statuses
        .iter()
        .map(|s| s["recordsLate"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(late, 0, "{context}");
    let shuffled: f64 = (0..WORKERS)
        .map(|i| cluster.metric(i, "rivulet_shuffle_records_in_total"))
        .sum();
    assert!(shuffled > 0.0, "{context}: no record crossed workers");
    cluster.stop_all();
    assert_output(&b, "shuffle-out", &truth, &context);
    common::assert_no_dead_letters(&b, "shuffle-dead", &format!("{context}: "));
}
