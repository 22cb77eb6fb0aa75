//! The autoscaler end to end through `rivulet run`: real tansu, real worker processes, each
//! able to process 2000 records per second (`RIVULET_FAULT=slow-processing:2000`, a costly
//! pipeline that keeps the worker busy). A producer raises the input rate from 600 to 3000
//! records per second, so one worker falls behind; the autoscaler scales up within 2
//! minutes and the lag drains. The rate drops back and it scales down after the interval.
//! Every window result appears exactly once, against a truth computed here from the input.
//!
//! The settings are shortened (a 10 s metrics window and stabilization, a 30 s scale-down
//! interval) so the test takes minutes; the defaults' timing is the decision's own tests'.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lifecycle::{assert_results, broker, manifest, phase, truth, Local, NAME, NS};
use common::{serial, Input};
use rivulet_tests::KafkaProducer;
use serde_json::Value;

/// Records per second one worker processes.
const CAPACITY: u64 = 2_000;
const LOW: u64 = 600;
const HIGH: u64 = 3_000;
const MAX_EVENTS: usize = 1_000_000;

/// Produces events `0..` at the rate in `rate` (records per second) until `stop`; counts
/// them in `produced`.
fn producer(
    bootstrap: String,
    input: Input,
    rate: Arc<AtomicU64>,
    produced: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let p = KafkaProducer::idempotent(&bootstrap).expect("producer");
        let tick = Duration::from_millis(100);
        let mut next = 0usize;
        let mut owed = 0.0f64;
        let mut at = Instant::now();
        while !stop.load(Ordering::Relaxed) && next < MAX_EVENTS {
            owed += rate.load(Ordering::Relaxed) as f64 * tick.as_secs_f64();
            let n = owed.floor() as usize;
            owed -= n as f64;
            let records: Vec<_> = (next..next + n).map(|i| input.record(i)).collect();
            if !records.is_empty() {
                p.send("events", &records).expect("produce");
                p.flush().expect("flush");
            }
            next += n;
            produced.store(next, Ordering::Relaxed);
            at += tick;
            if let Some(rest) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
        }
    })
}

fn autoscaler(j: &Value) -> &Value {
    &j["status"]["autoscaler"]
}

fn running_at(j: &Value, n: u64) -> bool {
    phase(j) == "Running" && j["status"]["operation"].is_null() && j["status"]["parallelism"] == n
}

#[test]
fn the_autoscaler_scales_up_on_lag_and_down_after_the_interval_with_exact_results() {
    let _serial = serial();
    let broker = broker(4);
    let bootstrap = broker.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut local = Local::new(root, &bootstrap, NS, NAME);
    let input = Input::new(4, 1_000, MAX_EVENTS, 40, 1);
    let job = manifest(root, 1, "savepoint", false, "1s").replace(
        "spec:\n",
        "spec:\n  autoscaler:\n    enabled: true\n    targetUtilization: 0.5\n    \
         metricsWindow: 10s\n    stabilization: 10s\n    scaleDownInterval: 30s\n    \
         catchUpDuration: 30s\n    maxScaleDownFactor: 4\n",
    );
    std::fs::write(root.join("job.yaml"), job).unwrap();
    let rate = Arc::new(AtomicU64::new(LOW));
    let produced = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let feeding = producer(
        bootstrap.clone(),
        input,
        rate.clone(),
        produced.clone(),
        stop.clone(),
    );
    let fault = format!("slow-processing:{CAPACITY}");
    let mut run = local.run("job.yaml", &[("RIVULET_FAULT", fault.as_str())]);
    let step = Duration::from_secs(120);

    // One worker keeps up with the low rate: the autoscaler warms up, then holds.
    local.wait(&mut run, "one worker runs steadily", step, |j| {
        running_at(j, 1) && autoscaler(j)["lastDecision"]["reason"] == "Steady"
    });
    let j = local.job();
    assert_eq!(autoscaler(&j)["rescales"], 0, "{j}");
    assert_eq!(autoscaler(&j)["lastDecision"]["recommended"], 1, "{j}");

    // The step up: one worker falls behind; a scale-up within 2 minutes.
    rate.store(HIGH, Ordering::Relaxed);
    let stepped = Instant::now();
    let j = local.wait(&mut run, "the autoscaler scales up", step, |j| {
        autoscaler(j)["pendingRescale"]["reason"] == "ScaleUp"
            || autoscaler(j)["lastRescale"]["reason"] == "ScaleUp"
    });
    let first_decision = stepped.elapsed();
    let decision = autoscaler(&j)["lastDecision"].clone();
    assert_eq!(decision["reason"], "ScaleUp", "{j}");
    // 3000 records/s at 50% utilization of 2000 each: 3 workers' worth, 4 with 128 key
    // groups (3 would leave one with 43 of them).
    assert_eq!(decision["target"], 4, "{decision}");
    let j = local.wait(&mut run, "four workers run", step, |j| running_at(j, 4));
    let scaled_up = stepped.elapsed();
    let r = &autoscaler(&j)["lastRescale"];
    assert_eq!(
        (r["from"].as_u64(), r["to"].as_u64()),
        (Some(1), Some(4)),
        "{j}"
    );
    assert!(r["downtimeMs"].as_i64().is_some_and(|d| d > 0), "{j}");
    assert_eq!(j["spec"]["parallelism"], 1, "the spec stays the user's");
    // The lag drains at the high rate: the autoscaler's own judgement at four workers, once
    // its window is past the rescale, sees little lag and no growth, and holds.
    let j = local.wait(&mut run, "the lag drains", step, |j| {
        let d = &autoscaler(j)["lastDecision"];
        running_at(j, 4)
            && d["parallelism"] == 4
            && d["reason"] != "Warming"
            && d["lag"].as_f64().is_some_and(|l| l < 2_000.0)
            && d["lagGrowth"].as_f64().is_some_and(|g| g <= 0.0)
    });
    assert_eq!(autoscaler(&j)["lastDecision"]["reason"], "Steady", "{j}");
    let drained = stepped.elapsed();
    let describe = local.ok(&["describe", NAME]);
    assert!(describe.contains("Autoscaler:       on"), "{describe}");
    assert!(describe.contains("Last Rescale:   1 → 4"), "{describe}");
    assert!(describe.contains("AutoscalerScaleUp"), "{describe}");
    assert!(describe.contains("AutoscalerRescaled"), "{describe}");

    // The step down: after the scale-down interval, back to one worker.
    rate.store(LOW, Ordering::Relaxed);
    let dropped = Instant::now();
    let j = local.wait(&mut run, "the autoscaler scales down", step, |j| {
        running_at(j, 1) && autoscaler(j)["rescales"] == 2
    });
    let scaled_down = dropped.elapsed();
    assert!(
        scaled_down >= Duration::from_secs(30),
        "scaled down {scaled_down:?} after the drop, before the interval"
    );
    assert_eq!(autoscaler(&j)["lastRescale"]["reason"], "ScaleDown", "{j}");

    // Some more time at the low rate changes nothing; then the input ends.
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    feeding.join().unwrap();
    let n = produced.load(Ordering::Relaxed);
    let p = KafkaProducer::idempotent(&bootstrap).unwrap();
    p.send("events", &input.close_records()).unwrap();
    p.flush().unwrap();
    let j = local.job();
    assert_eq!(autoscaler(&j)["rescales"], 2, "no flapping: {j}");
    assert!(running_at(&j, 1), "{j}");

    // Every window result exactly once.
    let produced_input = Input { events: n, ..input };
    assert_results(
        &bootstrap,
        &truth(&produced_input, usize::MAX),
        "across the autoscaler's rescales",
    );
    println!(
        "autoscaler end to end: {n} events; first decision {:.1} s after the step up, four \
         workers running after {:.1} s, lag drained after {:.1} s; scaled down {:.1} s after \
         the drop; 2 rescales",
        first_decision.as_secs_f64(),
        scaled_up.as_secs_f64(),
        drained.as_secs_f64(),
        scaled_down.as_secs_f64()
    );
    local.ok(&["delete", NAME]);
    let status = run
        .wait_exit(step)
        .expect("rivulet run ends after the deletion");
    assert!(status.success(), "{}", run.logs());
}
