//! Exactly-once under crashes: the worker is `kill -9`ed at random moments while input
//! arrives, and once aborted by fault injection between writing a checkpoint's manifest and
//! committing its transaction. A `read_committed` consumer must then see every window
//! result exactly once, equal to results computed independently here.
//!
//! Kills land outside open-transaction windows: the test freezes the worker (SIGSTOP),
//! checks the flag file the sink holds while a transaction is open, and only then kills it
//! (otherwise it lets the worker go on and tries again). A kill inside an open transaction
//! cannot be judged on the test broker: tansu neither aborts a fenced producer's open
//! transaction nor times it out (DESIGN, deviations 1 and 2); Apache Kafka aborts it on
//! fencing, which the same protocol relies on.

mod common;

use common::Agg;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rivulet_tests::{wait_until, KafkaProducer, ProduceRecord, Tansu};

const EVENTS: usize = 24_000;
const KEYS: usize = 40;
const PARTITIONS: i32 = 3;
const WINDOW_MS: i64 = 1_000;
const SPACING_MS: i64 = 3;

/// The `i`-th input event: (partition, key, event time, amount). Event time grows with `i`
/// and is up to 400 ms out of order, inside the job's 1 s bound, so nothing is late.
fn event(i: usize, base: i64) -> (i32, String, i64, i64) {
    let key = format!("k{}", (i * 7 + i / 13) % KEYS);
    let jitter = ((i as i64) * 7919) % 400;
    let ts = base + (i as i64) * SPACING_MS - jitter;
    let amount = ((i * 31) % 97) as i64 - 10;
    ((i % PARTITIONS as usize) as i32, key, ts, amount)
}

/// The true results, computed without any of Rivulet's code.
fn truth(base: i64) -> BTreeMap<(String, i64), Agg> {
    let mut t: BTreeMap<(String, i64), Agg> = BTreeMap::new();
    for i in 0..EVENTS {
        let (_, key, ts, amount) = event(i, base);
        let start = ts.div_euclid(WINDOW_MS) * WINDOW_MS;
        let e = t.entry((key, start)).or_insert(Agg {
            count: 0,
            sum: 0,
            min: i64::MAX,
            max: i64::MIN,
        });
        e.count += 1;
        e.sum += amount;
        e.min = e.min.min(amount);
        e.max = e.max.max(amount);
    }
    t
}

#[test]
fn exactly_once_survives_kills_and_a_crash_between_manifest_and_commit() {
    let broker = Tansu::start().expect("start tansu");
    let bootstrap = broker.bootstrap();
    broker.create_topic("events", PARTITIONS).unwrap();
    broker.create_topic("results", 1).unwrap();
    broker.create_topic("dead", 1).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let state = format!(
        "backend: rocksdb\ncheckpointInterval: 1s\nstorage: file://{}\nretain: 2",
        dir.path().join("snapshots").display()
    );
    let job = common::write(
        dir.path(),
        "job.yaml",
        &common::manifest("eo", common::windows_to_exactly_once_sink(), &state),
    );
    let data_dir = dir.path().join("worker");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = (now - 3_600_000) / WINDOW_MS * WINDOW_MS;
    let expected = truth(base);

    // Input arrives over ~20 s while the worker is being killed.
    let producing = Arc::new(AtomicBool::new(true));
    let producer_thread = {
        let bootstrap = bootstrap.clone();
        let producing = producing.clone();
        std::thread::spawn(move || {
            let p = KafkaProducer::idempotent(&bootstrap).unwrap();
            let chunk = 400;
            for start in (0..EVENTS).step_by(chunk) {
                let recs: Vec<ProduceRecord> = (start..(start + chunk).min(EVENTS))
                    .map(|i| {
                        let (part, key, ts, amount) = event(i, base);
                        ProduceRecord::keyed(
                            key.clone(),
                            format!(r#"{{"key":"{key}","ts":{ts},"amount":{amount}}}"#),
                        )
                        .with_partition(part)
                    })
                    .collect();
                p.send("events", &recs).unwrap();
                p.flush().unwrap();
                std::thread::sleep(Duration::from_millis(330));
            }
            // Push every partition's watermark past the last window.
            let close: Vec<ProduceRecord> = (0..PARTITIONS)
                .map(|part| {
                    let ts = base + EVENTS as i64 * SPACING_MS + 600_000;
                    ProduceRecord::keyed(
                        "zz-close",
                        format!(r#"{{"key":"zz-close","ts":{ts},"amount":0}}"#),
                    )
                    .with_partition(part)
                })
                .collect();
            p.send("events", &close).unwrap();
            p.flush().unwrap();
            producing.store(false, Ordering::Relaxed);
        })
    };

    let mut rng = rand::rng();
    let mut kills = 0;
    let mut w = common::start_worker(&job, &bootstrap, &data_dir, &[], "worker-0");
    while kills < 6 {
        std::thread::sleep(Duration::from_millis(rng.random_range(1200..3200)));
        if common::kill_outside_transaction(&mut w, &data_dir) {
            kills += 1;
        } else {
            assert!(
                w.process.is_running(),
                "worker died on its own:\n{}",
                w.process.log_tail(80)
            );
        }
        w = common::start_worker(&job, &bootstrap, &data_dir, &[], &format!("worker-{kills}"));
    }

    // Crash exactly between a manifest and its commit, then recover.
    w.process.kill9();
    let mut faulty = common::start_worker(
        &job,
        &bootstrap,
        &data_dir,
        &[("RIVULET_FAULT".into(), "after-manifest".into())],
        "worker-fault",
    );
    let aborted = faulty.process.wait_exit(Duration::from_secs(60));
    assert!(
        aborted.is_some_and(|s| !s.success()),
        "fault injection did not abort the worker:\n{}",
        faulty.process.log_tail(60)
    );
    assert!(
        faulty.process.logs().contains("fault injection"),
        "{}",
        faulty.process.log_tail(40)
    );
    let mut w = common::start_worker(&job, &bootstrap, &data_dir, &[], "worker-final");
    common::wait_ready(&mut w, Duration::from_secs(60));
    assert!(
        w.process
            .logs()
            .contains("committing the restored checkpoint's output"),
        "the restarted worker did not re-commit the aborted epoch:\n{}",
        w.process.log_tail(60)
    );

    producer_thread.join().unwrap();
    assert!(!producing.load(Ordering::Relaxed));
    let http = w.http.clone();
    let done = wait_until(Duration::from_secs(120), Duration::from_millis(500), || {
        common::metric(&http, "rivulet_records_in_total").unwrap_or(0.0) > 0.0
            && common::status(&http)
                .and_then(|s| s["watermarkMs"].as_i64())
                .is_some_and(|wm| wm > base + EVENTS as i64 * SPACING_MS)
    });
    assert!(
        done,
        "the watermark never passed the input:\n{}",
        w.process.log_tail(60)
    );
    // Let the last epoch commit.
    std::thread::sleep(Duration::from_secs(3));
    w.process.sigterm().unwrap();
    let stopped = w.process.wait_exit(Duration::from_secs(60));
    assert!(
        stopped.is_some_and(|s| s.success()),
        "worker did not stop cleanly:\n{}",
        w.process.log_tail(60)
    );

    common::check_window_output(&bootstrap, "results", "dead", WINDOW_MS, &expected);
    assert_eq!(kills, 6);
}
