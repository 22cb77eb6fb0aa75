//! Multi-worker jobs end to end: three `rivulet-worker` processes run one windowed job against
//! a real broker (tansu), exchanging keyed records over TCP (the key-group shuffle), with
//! aligned checkpoints coordinated by worker 0. Worker `i` reads the partitions `p` with
//! `p mod 3 == i`; the `events` topic has 4 partitions, so worker 0 reads two (0 and 3).
//!
//! 1. Without failures, a `read_committed` consumer sees exactly the true window results
//!    (computed here without any of Rivulet's code), and keys really crossed workers.
//! 2. While input arrives, random workers are `kill -9`ed (sometimes two in a row, sometimes
//!    while the job is still recovering from the previous kill, at least once while a
//!    checkpoint is in progress) and restarted with the same arguments; the survivors
//!    restart their attempt in-process from the last complete checkpoint. The output must
//!    still be exactly the true results.
//! 3. A job whose workers all died with a complete checkpoint's output uncommitted is
//!    restarted with one worker, which commits the output of every old slot.
//!
//! Kills land outside the killed worker's open-transaction window: the test freezes the
//! worker (SIGSTOP), waits until the kernel reports every thread stopped, checks the flag
//! file its sink holds while a transaction is open, and only then kills it (otherwise it lets
//! the worker go on and tries again). The window this test broker cannot judge is a
//! `kill -9` *inside* a worker's open transaction: tansu neither aborts a fenced producer's
//! open transaction nor times it out (DESIGN, deviations 1 and 2), while Apache Kafka aborts
//! it when the restarted worker's producer fences the old one, which the protocol relies on.
//! So no kill lands there.
//!
//! The survivors of a kill are never killed: they restart in-process, so they must commit or
//! abort their own open transaction themselves rather than leave it to be fenced. Were one
//! left open, tansu would publish it with the next commit and this test would report the
//! duplicates.
//!
//! The sink uses the `fixed` partitioner and the `results` and `dead` topics have one
//! partition per worker, so no two workers' transactions share a partition. The window this
//! avoids is tansu's, not Rivulet's (deviation 4 in `tests/tests/infra.rs`): when two
//! producers end overlapping transactions on one partition at the same moment, tansu can
//! leave one of them committed but still registered as in flight, and from then on no later
//! transaction on that partition completes. Apache Kafka has no such window; the
//! exactly-once protocol does not depend on the partitioner.

mod common;

use common::cluster::{newest_manifest, Cluster, CATCH_UP_TIMEOUT, RECOVERY_TIMEOUT, STOP_TIMEOUT};
use common::{last_checkpoint, serial, Input};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rivulet_tests::{wait_until, Tansu};
use serde_json::Value;

const WORKERS: usize = 3;
const PARTITIONS: i32 = 4;
const WINDOW_MS: i64 = 1_000;

/// Checks that the `fixed` partitioner put every result on the partition of the worker that
/// owns its key (by key group), and that every worker wrote some.
fn assert_each_worker_wrote_its_own_partition(bootstrap: &str, expected: usize) {
    use rivulet_api::job::DEFAULT_MAX_PARALLELISM;
    use rivulet_api::keygroup::{key_group, push_key_part, worker_for_key_group};
    let out = rivulet_tests::consume_all(
        bootstrap,
        "results",
        true,
        expected,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .unwrap();
    let mut per_partition = [0usize; WORKERS];
    for r in &out {
        let v = r.value_json().unwrap();
        let key = v["key"]["key"].as_str().unwrap();
        let mut bytes = Vec::new();
        push_key_part(&mut bytes, key.as_bytes());
        let kg = key_group(&bytes, DEFAULT_MAX_PARALLELISM);
        let owner = worker_for_key_group(kg, WORKERS as u32, DEFAULT_MAX_PARALLELISM);
        assert_eq!(
            r.partition, owner as i32,
            "result {v} of key group {kg} (worker {owner}) is on partition {}",
            r.partition
        );
        per_partition[owner as usize] += 1;
    }
    assert!(
        per_partition.iter().all(|n| *n > 0),
        "results per worker: {per_partition:?}"
    );
}

/// The input of a test: `events` records over `keys` keys on [`PARTITIONS`] partitions, one
/// every `spacing_ms` of event time, in windows of [`WINDOW_MS`].
fn test_input(events: usize, keys: usize, spacing_ms: i64) -> Input {
    Input::new(PARTITIONS, WINDOW_MS, events, keys, spacing_ms)
}

/// The topics of a test: `events` (input), `results` (exactly-once sink), `dead`.
fn create_topics(broker: &Tansu) {
    broker.create_topic("events", PARTITIONS).unwrap();
    broker.create_topic("results", WORKERS as i32).unwrap();
    broker.create_topic("dead", WORKERS as i32).unwrap();
}

/// The job manifest at parallelism 3, checkpointing every second to `file://<dir>/snapshots`.
fn write_job(dir: &Path, name: &str, backend: &str) -> PathBuf {
    let state = common::file_state(dir, backend, "1s");
    common::write(
        dir,
        "job.yaml",
        &common::manifest_with_parallelism(
            name,
            &common::windows_to_exactly_once_sink(),
            &state,
            WORKERS as u32,
        ),
    )
}

#[test]
fn three_workers_produce_exactly_the_true_results() {
    let _serial = serial();
    let broker = Tansu::start().expect("start tansu");
    let bootstrap = broker.bootstrap();
    create_topics(&broker);
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), "dist", "heap");

    let input = test_input(12_000, 48, 3);
    let expected = input.truth();
    common::produce(&bootstrap, &input, 0..input.events, true);

    let mut cluster = Cluster::start(WORKERS, &job, &bootstrap, dir.path());
    let running = cluster.wait_all("running", RECOVERY_TIMEOUT, |_, s| s["phase"] == "running");
    for (i, s) in running.iter().enumerate() {
        assert_eq!(s["worker"].as_u64(), Some(i as u64), "worker {i}: {s}");
        assert_eq!(
            s["parallelism"].as_u64(),
            Some(WORKERS as u64),
            "worker {i}: {s}"
        );
    }

    let end = input.last_window_end();
    let caught_up = cluster.wait_watermarks_past(end);
    let c0 = last_checkpoint(&caught_up[0]);

    // Worker i read exactly the partitions p with p mod 3 == i, each to its end.
    let owned = |i: usize| -> Vec<i32> {
        (0..PARTITIONS)
            .filter(|p| *p as usize % WORKERS == i)
            .collect()
    };
    let positions = |s: &Value| -> Vec<(i32, i64)> {
        let mut v: Vec<(i32, i64)> = s["partitions"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["topic"] == "events")
                    .filter_map(|p| Some((p["partition"].as_i64()? as i32, p["offset"].as_i64()?)))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(owned(0), vec![0, 3]);
    cluster.wait_all(
        "reading exactly its partitions, each to its end",
        CATCH_UP_TIMEOUT,
        |i, s| {
            positions(s)
                == owned(i)
                    .into_iter()
                    .map(|p| (p, input.records_on(p)))
                    .collect::<Vec<_>>()
        },
    );

    // Let a checkpoint started after the watermarks passed commit its epoch.
    cluster.wait_checkpoint(c0 + 2);

    // Metrics, read before stopping. Nobody died, so no worker restarted and each read its
    // own partitions exactly once.
    for i in 0..WORKERS {
        let restarts = cluster.metric(i, "rivulet_job_restarts_total");
        assert_eq!(
            restarts,
            0.0,
            "worker {i} restarted its attempt though no worker died:\n{}",
            cluster.tails()
        );
        let records_in = cluster.metric(i, "rivulet_records_in_total");
        let want: i64 = owned(i).into_iter().map(|p| input.records_on(p)).sum();
        assert_eq!(
            records_in,
            want as f64,
            "worker {i} read {records_in} records from partitions {:?}, which hold {want}",
            owned(i)
        );
    }
    // Keys crossed workers both ways, and everything sent arrived. Counters of in-flight
    // batches may lag for a moment, so wait for them to settle.
    let names = [
        (
            "rivulet_shuffle_records_out_total",
            "rivulet_shuffle_records_in_total",
        ),
        (
            "rivulet_shuffle_bytes_out_total",
            "rivulet_shuffle_bytes_in_total",
        ),
    ];
    for (out_name, in_name) in names {
        let mut per_worker = Vec::new();
        let settled = wait_until(Duration::from_secs(30), Duration::from_millis(500), || {
            per_worker = (0..WORKERS)
                .map(|i| (cluster.metric(i, out_name), cluster.metric(i, in_name)))
                .collect();
            let sent: f64 = per_worker.iter().map(|(o, _)| o).sum();
            let received: f64 = per_worker.iter().map(|(_, r)| r).sum();
            sent == received
        });
        for (i, (sent, received)) in per_worker.iter().enumerate() {
            assert!(
                *sent > 0.0 && *received > 0.0,
                "worker {i}: {out_name} = {sent}, {in_name} = {received}; keys did not cross \
                 workers both ways (all workers: {per_worker:?})"
            );
        }
        assert!(
            settled,
            "sum of {out_name} differs from sum of {in_name}; (out, in) per worker: \
             {per_worker:?}"
        );
    }

    cluster.stop_all();
    common::check_window_output(&bootstrap, "results", "dead", WINDOW_MS, &expected);
    assert_each_worker_wrote_its_own_partition(&bootstrap, expected.len());
}

#[test]
fn exactly_once_holds_while_random_workers_are_killed() {
    let _serial = serial();
    let broker = Tansu::start().expect("start tansu");
    let bootstrap = broker.bootstrap();
    create_topics(&broker);
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), "dist-eo", "rocksdb");

    let input = test_input(24_000, 40, 3);
    let expected = input.truth();

    // Input arrives over ~20 s while workers are being killed.
    let producing = Arc::new(AtomicBool::new(true));
    let producer_thread = common::produce_slowly(&bootstrap, input, producing.clone());

    let mut cluster = Cluster::start(WORKERS, &job, &bootstrap, dir.path());
    let mut rng = rand::rng();
    const ROUNDS: usize = 6;
    let mut kills = 0;
    let mut doubles = 0;
    let mut during_recovery = 0;
    let mut during_checkpoint = 0;
    let mut floor = 0;
    let mut last_victims = Vec::new();
    for round in 0..ROUNDS {
        // Sometimes hit the job again while it is still recovering from the last kill; the
        // first round waits for a complete checkpoint (so every restart restores one), and
        // the last for a formed mesh (so the survivors of the last kill have a running
        // attempt to restart). Round 1, and some others, kill while a checkpoint is in
        // progress.
        let in_recovery = round > 1 && round + 1 < ROUNDS && rng.random_ratio(1, 4);
        let in_checkpoint = !in_recovery && (round == 1 || rng.random_ratio(1, 3));
        if in_recovery {
            during_recovery += 1;
            std::thread::sleep(Duration::from_millis(rng.random_range(300..4_000)));
        } else {
            floor = cluster.wait_healthy(floor);
            std::thread::sleep(Duration::from_millis(rng.random_range(200..3_000)));
        }
        let double = (round == 2 && doubles == 0) || rng.random_ratio(1, 3);
        let first = rng.random_range(0..WORKERS);
        let mut victims = vec![first];
        if double {
            victims.push((first + rng.random_range(1..WORKERS)) % WORKERS);
            doubles += 1;
        }
        for (n, &v) in victims.iter().enumerate() {
            if n > 0 {
                std::thread::sleep(Duration::from_millis(rng.random_range(0..1_500)));
            }
            if n == 0 && in_checkpoint {
                cluster.kill_during_checkpoint(v, "dist-eo");
                during_checkpoint += 1;
            } else {
                cluster.kill(v);
            }
            kills += 1;
        }
        for &v in &victims {
            cluster.restart(v);
        }
        // A checkpoint can still complete just after a kill (all acks were in); give the
        // survivors a moment to notice the death, then only a later checkpoint shows that
        // the job runs again.
        std::thread::sleep(Duration::from_secs(1));
        floor = floor.max(cluster.checkpoint_now());
        eprintln!(
            "round {round}: killed {victims:?}{}{}; last checkpoint {floor}",
            if in_recovery { " during recovery" } else { "" },
            if in_checkpoint {
                ", the first during a checkpoint"
            } else {
                ""
            }
        );
        last_victims = victims;
    }
    assert!(
        kills >= 6 && doubles >= 1 && during_checkpoint >= 1,
        "{kills} kills, {doubles} double, {during_checkpoint} during a checkpoint"
    );
    eprintln!(
        "{kills} kills, {doubles} double, {during_recovery} during recovery, \
         {during_checkpoint} during a checkpoint"
    );

    producer_thread.join().expect("the producer thread failed");
    assert!(!producing.load(Ordering::Relaxed));
    cluster.wait_healthy(floor);
    let caught_up = cluster.wait_watermarks_past(input.last_window_end());
    // Let a checkpoint started after the watermarks passed commit its epoch.
    cluster.wait_checkpoint(last_checkpoint(&caught_up[0]) + 2);

    // The survivors of the last kill restarted their attempt in-process (a restarted
    // process counts from 0, so they are the ones to ask).
    let survivors: Vec<usize> = (0..WORKERS).filter(|i| !last_victims.contains(i)).collect();
    let restarts: Vec<f64> = (0..WORKERS)
        .map(|i| cluster.metric(i, "rivulet_job_restarts_total"))
        .collect();
    for &i in &survivors {
        assert!(
            restarts[i] > 0.0,
            "worker {i} survived the kill of {last_victims:?} but reports no restart \
             (rivulet_job_restarts_total per worker: {restarts:?}):\n{}",
            cluster.tails()
        );
    }
    // Every worker's current incarnation restored state at least once: the killed ones when
    // they started, the survivors when they restarted in-process.
    for (i, w) in cluster.workers.iter().enumerate() {
        assert!(
            w.process.logs().contains("restored state"),
            "worker {i} never restored a checkpoint:\n{}",
            w.process.log_tail(60)
        );
    }

    cluster.stop_all();
    common::check_window_output(&bootstrap, "results", "dead", WINDOW_MS, &expected);
}

/// Restoring a checkpoint at a lower parallelism must not lose the output that the
/// checkpoint holds for sink slots no worker runs any more. All three workers run with the
/// `before-commit:4` fault: each aborts instead of committing the output of epoch 4 or later,
/// so the job dies with checkpoint 4 (or a later one) complete and no slot's output of it
/// committed. The job is then restarted with one worker, which must commit the output of
/// slots 1 and 2 as well as its own. The final output must be exactly the true results.
#[test]
fn a_lower_parallelism_settles_the_output_of_slots_no_worker_runs() {
    const FROM: i64 = 4;
    let _serial = serial();
    let broker = Tansu::start().expect("start tansu");
    let bootstrap = broker.bootstrap();
    create_topics(&broker);
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), "shrink", "heap");

    let input = test_input(15_000, 40, 3);
    let expected = input.truth();
    let end = input.last_window_end();
    let producing = Arc::new(AtomicBool::new(true));
    let producer_thread = common::produce_slowly(&bootstrap, input, producing.clone());

    let fault = [("RIVULET_FAULT".to_string(), format!("before-commit:{FROM}"))];
    let mut cluster = Cluster::start_with_env(WORKERS, &job, &bootstrap, dir.path(), &fault);
    for i in 0..WORKERS {
        let exit = cluster.workers[i].process.wait_exit(RECOVERY_TIMEOUT);
        assert!(
            exit.is_some_and(|s| !s.success()),
            "worker {i} did not die of the fault ({exit:?}):\n{}",
            cluster.tails()
        );
    }

    // The newest checkpoint holds output of every slot that no slot committed.
    let m = newest_manifest(dir.path(), "shrink").expect("a complete checkpoint");
    let id = m["id"].as_i64().unwrap();
    assert!(id >= FROM, "newest checkpoint {id}");
    let marker = |slot: u64| -> i64 {
        rivulet_tests::committed_offset(
            &bootstrap,
            &format!("rivulet-tests-shrink-sink-{slot}-epochs"),
            "results",
            0,
        )
        .unwrap()
        .unwrap_or(0)
    };
    let pending: Vec<(u64, i64, u64)> = m["pendingOutput"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["slot"].as_u64().unwrap(),
                p["epoch"].as_i64().unwrap(),
                p["records"].as_u64().unwrap(),
            )
        })
        .collect();
    for slot in 1..WORKERS as u64 {
        assert!(
            pending
                .iter()
                .any(|(s, epoch, records)| *s == slot && *records > 0 && marker(slot) < *epoch),
            "checkpoint {id} holds no uncommitted output of slot {slot}: {pending:?}"
        );
    }

    // The same job at parallelism 1, with worker 0's data directory.
    let single = common::write(
        dir.path(),
        "job-1.yaml",
        &common::manifest_with_parallelism(
            "shrink",
            &common::windows_to_exactly_once_sink(),
            &common::file_state(dir.path(), "heap", "1s"),
            1,
        ),
    );
    let mut w = common::start_worker(&single, &bootstrap, &cluster.data_dir(0), &[], "single");
    producer_thread.join().expect("the producer thread failed");
    assert!(!producing.load(Ordering::Relaxed));
    let caught_up = common::wait_statuses(
        std::slice::from_mut(&mut w),
        "",
        "watermark past the input",
        CATCH_UP_TIMEOUT,
        |ss| ss[0]["watermarkMs"].as_i64().is_some_and(|wm| wm > end),
    );
    let c = last_checkpoint(&caught_up[0]);
    common::wait_statuses(
        std::slice::from_mut(&mut w),
        "",
        "a checkpoint after catching up",
        RECOVERY_TIMEOUT,
        |ss| last_checkpoint(&ss[0]) >= c + 2,
    );
    w.process.sigterm().unwrap();
    assert!(w
        .process
        .wait_exit(STOP_TIMEOUT)
        .is_some_and(|s| s.success()));
    common::check_window_output(&bootstrap, "results", "dead", WINDOW_MS, &expected);
    let logs = w.process.logs();
    for slot in 1..WORKERS {
        assert!(
            logs.lines()
                .any(|l| l.contains("no worker runs any more")
                    && l.contains(&format!("slot={slot}"))),
            "the single worker did not take over slot {slot}:\n{}",
            w.process.log_tail(60)
        );
    }
}
