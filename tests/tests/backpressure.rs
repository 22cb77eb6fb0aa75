//! Backpressure across the shuffle: a slow sink on one worker slows the other worker's
//! source through the shuffle's credits, memory stays bounded, and the backpressure metric
//! says so.
//!
//! Two workers; worker 1's sink takes at most 1000 records per second (fault injection,
//! `RIVULET_FAULT=slow-sink:1000`). Every input record makes one output record (10 ms
//! windows, one record per key and window), so worker 1 can take about 1000 records per
//! second from both sources together. Without flow control worker 0 would read its whole
//! partition in well under a second and push half of it into worker 1's memory.

mod common;

use common::cluster::Cluster;

use std::time::{Duration, Instant};

use rivulet_tests::{KafkaProducer, ProduceRecord, Tansu};

const EVENTS: usize = 200_000;
const KEYS: usize = 500;
/// Resident memory each worker must stay under while throttled.
const RSS_BOUND_MB: u64 = 400;

fn rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024)
}

#[test]
fn a_slow_sink_slows_the_other_workers_source_within_a_memory_bound() {
    let broker = Tansu::start().expect("start tansu");
    let bootstrap = broker.bootstrap();
    broker.create_topic("events", 2).unwrap();
    broker.create_topic("out", 1).unwrap();
    broker.create_topic("dead", 1).unwrap();

    let p = KafkaProducer::idempotent(&bootstrap).unwrap();
    let base = 1_700_000_000_000i64;
    for start in (0..EVENTS).step_by(10_000) {
        let recs: Vec<ProduceRecord> = (start..(start + 10_000).min(EVENTS))
            .map(|i| {
                let key = format!("k{}", i % KEYS);
                // One record per key and 10 ms window: every record is one window result.
                let ts = base + (i as i64) * 10;
                ProduceRecord::keyed(key.clone(), format!(r#"{{"key":"{key}","ts":{ts}}}"#))
                    .with_partition((i % 2) as i32)
            })
            .collect();
        p.send("events", &recs).unwrap();
    }
    p.flush().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let pipeline = "source: {topics: [events]}\ntime: {type: event, field: ts, maxOutOfOrderness: 10ms}\nkey: [key]\nwindow: {type: tumbling, size: 10ms}\naggregates: [{name: n, fn: count}]\nsink: {topic: out, deliveryGuarantee: at-least-once}\ndeadLetter: {topic: dead}\n";
    let state = format!(
        "backend: heap\ncheckpointInterval: 2s\nstorage: file://{}\nretain: 2",
        dir.path().join("snapshots").display()
    );
    let job = common::write(
        dir.path(),
        "job.yaml",
        &common::manifest_with_parallelism("bp", pipeline, &state, 2),
    );
    let slow = vec![("RIVULET_FAULT".to_string(), "slow-sink:1000".to_string())];
    let mut cluster = Cluster::start_with_envs(&job, &bootstrap, dir.path(), vec![vec![], slow]);
    let workers = &mut cluster.workers;
    for w in workers.iter_mut() {
        common::wait_ready(w, Duration::from_secs(60));
    }

    // Watch for 8 s: memory, how much worker 0 read, and the backpressure gauges.
    let started = Instant::now();
    let mut max_rss = [0u64; 2];
    let mut max_backpressure = [0f64; 2];
    let mut max_status_ratio = [0f64; 2];
    while started.elapsed() < Duration::from_secs(8) {
        for (i, w) in workers.iter().enumerate() {
            let status = common::status(&w.http).unwrap_or_else(|| {
                panic!("worker {i} stopped answering:\n{}", w.process.log_tail(40))
            });
            let ratio = status["backpressureRatio"].as_f64().unwrap_or(0.0);
            max_status_ratio[i] = max_status_ratio[i].max(ratio);
            if let Some(mb) = rss_mb(w.process.pid()) {
                max_rss[i] = max_rss[i].max(mb);
            }
            let bp = common::metric(&w.http, "rivulet_backpressure_permille").unwrap_or(0.0);
            max_backpressure[i] = max_backpressure[i].max(bp);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let read0 = common::metric(&workers[0].http, "rivulet_records_in_total").unwrap_or(0.0);
    let out1 = common::metric(&workers[1].http, "rivulet_records_out_total").unwrap_or(0.0);
    let shuffled =
        common::metric(&workers[0].http, "rivulet_shuffle_records_out_total").unwrap_or(0.0);
    eprintln!(
        "after 8 s: worker 0 read {read0} of {}, sent {shuffled} to worker 1, which wrote \
         {out1}; max rss {max_rss:?} MB; max backpressure {max_backpressure:?} permille",
        EVENTS / 2
    );
    assert!(
        out1 > 0.0 && out1 <= 1000.0 * 8.0 + 2000.0,
        "worker 1's sink is not throttled as asked: {out1} records in 8 s"
    );
    // Half of worker 0's records go to worker 1, which takes ~1000/s from both sources.
    // On top, the credits let 16 frames of at most 1024 records be in flight, so worker 0
    // can read about 2 × 16k + 2 × 8 s × 500/s ≈ 40k before it must wait.
    assert!(
        read0 < (EVENTS / 2) as f64 * 0.7,
        "worker 0 read {read0} of {} records in 8 s: its source did not slow down",
        EVENTS / 2
    );
    assert!(
        max_backpressure[0] >= 200.0,
        "worker 0 waited on worker 1 but reported backpressure {} permille",
        max_backpressure[0]
    );
    assert!(
        max_backpressure[1] >= 500.0,
        "worker 1's slow sink shows as backpressure {} permille",
        max_backpressure[1]
    );
    // `/status` tells the same story (what `kubectl describe` and the autoscaler read).
    assert!(
        max_status_ratio[0] >= 0.2 && max_status_ratio[1] >= 0.5,
        "/status backpressureRatio peaked at {max_status_ratio:?}"
    );
    for (i, mb) in max_rss.iter().enumerate() {
        assert!(
            *mb > 0 && *mb < RSS_BOUND_MB,
            "worker {i} used {mb} MB (bound {RSS_BOUND_MB} MB)"
        );
    }

    // A stop still completes while throttled.
    for w in workers.iter_mut() {
        let _ = w.process.sigterm();
    }
    for (i, w) in workers.iter_mut().enumerate() {
        let exit = w.process.wait_exit(Duration::from_secs(120));
        assert!(
            exit.is_some_and(|s| s.success()),
            "worker {i} did not stop cleanly ({exit:?}):\n{}",
            w.process.log_tail(60)
        );
    }
}
