//! Smoke tests of the test infrastructure itself: the harness, and the broker behaviour the
//! exactly-once design relies on (transactional commit and abort, `read_committed`,
//! fencing by `transactional.id`), checked against the real tansu binary.
//!
//! Not covered, on purpose: what happens to a transaction that is still open when its
//! producer is fenced. Apache Kafka aborts it; tansu leaves it open and lets the new
//! producer's next commit expose it (a known deviation). The fencing test therefore
//! fences a producer between transactions, where both brokers agree.
//!
//! Also not covered, because no client can make it happen on demand: tansu's deviation 4,
//! found in the multi-worker exactly-once tests and read from tansu's source (main at
//! 510f3e2, `tansu-storage/src/dynostore.rs`, `txn_end`). tansu ends a transaction in two
//! steps: it marks it prepared and writes its control markers, then completes it together
//! with every prepared transaction that overlaps it on a partition. When producer B's second
//! step completes producer A's transaction while A's own EndTxn is between its two steps,
//! A's control marker is recorded as a new write of A's, A's second step finds it already
//! committed (tansu logs `otherwise=Some(Committed)`) and leaves that write registered. From
//! then on every transaction on that partition overlaps a transaction that is neither open
//! nor prepared, so none completes: `read_committed` readers stop there for good and the
//! consumer offsets committed with those transactions are never applied. Plain producers
//! committing at the same moment did not hit it in 600 rounds here; three workers committing
//! their epochs did, in about half of the random-kill runs. Apache Kafka has no such window.
//! The multi-worker tests keep each worker's transactions on its own partitions (the sink's
//! `fixed` partitioner).

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use rivulet_tests::{
    committed_offset, consume_all, produce, wait_until, KafkaProducer, Moto, ProcessBuilder,
    ProduceRecord, Tansu,
};

const QUIET: Duration = Duration::from_millis(1500);
const MAX_WAIT: Duration = Duration::from_secs(30);

fn values(records: &[rivulet_tests::ConsumedRecord]) -> BTreeSet<String> {
    records.iter().map(|r| r.value_str()).collect()
}

#[test]
fn tansu_round_trips_keys_values_partitions_timestamps_and_headers() -> anyhow::Result<()> {
    let tansu = Tansu::start()?;
    tansu.create_topic("plain", 2)?;

    let records: Vec<ProduceRecord> = (0..20)
        .map(|i| {
            ProduceRecord::keyed(format!("k{i}"), format!("v{i}"))
                .with_partition(i % 2)
                .with_timestamp(1_700_000_000_000 + i64::from(i))
                .with_header("seq", i.to_string())
        })
        .collect();
    produce(&tansu.bootstrap(), "plain", &records)?;
    // A record through the default partitioner, from a tuple.
    produce(
        &tansu.bootstrap(),
        "plain",
        &[(Some("k-extra"), "v-extra", None, None).into()],
    )?;

    let got = consume_all(&tansu.bootstrap(), "plain", false, 21, QUIET, MAX_WAIT)?;
    assert_eq!(got.len(), 21, "records: {got:#?}");
    for p in 0..2 {
        let offsets: Vec<i64> = got
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert!(offsets.len() >= 10, "partition {p} has offsets {offsets:?}");
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {p} offsets not increasing: {offsets:?}"
        );
    }
    for i in 0..20 {
        let record = got
            .iter()
            .find(|r| r.value_str() == format!("v{i}"))
            .unwrap_or_else(|| panic!("v{i} missing"));
        assert_eq!(record.key_str().as_deref(), Some(format!("k{i}").as_str()));
        assert_eq!(record.partition, i % 2);
        assert_eq!(record.timestamp_ms, Some(1_700_000_000_000 + i64::from(i)));
        assert_eq!(record.header_str("seq"), Some(i.to_string()));
    }
    assert!(got.iter().any(|r| r.value_str() == "v-extra"));

    // Nothing more appears.
    let again = consume_all(
        &tansu.bootstrap(),
        "plain",
        false,
        0,
        QUIET,
        Duration::from_secs(10),
    )?;
    assert_eq!(again, got);
    Ok(())
}

/// Four records named `{name}-{i}`, over partitions 0 and 1.
fn batch(name: &str) -> Vec<ProduceRecord> {
    (0..4)
        .map(|i| ProduceRecord::new(format!("{name}-{i}")).with_partition(i % 2))
        .collect()
}

fn batch_values(names: &[&str]) -> BTreeSet<String> {
    names
        .iter()
        .flat_map(|n| batch(n))
        .map(|r| String::from_utf8(r.value).unwrap())
        .collect()
}

#[test]
fn tansu_read_committed_hides_an_open_transaction_until_it_commits() -> anyhow::Result<()> {
    let tansu = Tansu::start()?;
    tansu.create_topic("txn", 2)?;
    let bootstrap = tansu.bootstrap();

    let producer = KafkaProducer::transactional(&bootstrap, "infra-txn")?;
    producer.begin_transaction()?;
    producer.send("txn", &batch("first"))?;
    producer.commit_transaction()?;

    producer.begin_transaction()?;
    producer.send("txn", &batch("second"))?;
    producer.flush()?; // on the broker, transaction still open

    let committed = consume_all(&bootstrap, "txn", true, 4, QUIET, MAX_WAIT)?;
    assert_eq!(values(&committed), batch_values(&["first"]));
    assert_eq!(committed.len(), 4, "duplicates: {committed:#?}");
    let everything = consume_all(&bootstrap, "txn", false, 8, QUIET, MAX_WAIT)?;
    assert_eq!(values(&everything), batch_values(&["first", "second"]));

    producer.commit_transaction()?;
    let committed = consume_all(&bootstrap, "txn", true, 8, QUIET, MAX_WAIT)?;
    assert_eq!(values(&committed), batch_values(&["first", "second"]));
    assert_eq!(committed.len(), 8, "duplicates: {committed:#?}");
    Ok(())
}

#[test]
fn tansu_commits_consumer_offsets_with_a_transaction() -> anyhow::Result<()> {
    // The exactly-once sink's marker: an offset committed inside the output's transaction.
    let tansu = Tansu::start()?;
    tansu.create_topic("out", 1)?;
    let bootstrap = tansu.bootstrap();
    assert_eq!(committed_offset(&bootstrap, "marker", "out", 0)?, None);

    let producer = KafkaProducer::transactional(&bootstrap, "infra-marker")?;
    producer.begin_transaction()?;
    producer.send("out", &[ProduceRecord::new("epoch-5")])?;
    producer.send_offsets_to_transaction("marker", "out", &[(0, 5)])?;
    producer.commit_transaction()?;
    assert_eq!(committed_offset(&bootstrap, "marker", "out", 0)?, Some(5));

    // A later aborted transaction leaves the marker alone.
    producer.begin_transaction()?;
    producer.send_offsets_to_transaction("marker", "out", &[(0, 6)])?;
    producer.abort_transaction()?;
    assert_eq!(committed_offset(&bootstrap, "marker", "out", 0)?, Some(5));

    producer.begin_transaction()?;
    producer.send("out", &[ProduceRecord::new("epoch-6")])?;
    producer.send_offsets_to_transaction("marker", "out", &[(0, 6)])?;
    producer.commit_transaction()?;
    assert_eq!(committed_offset(&bootstrap, "marker", "out", 0)?, Some(6));
    Ok(())
}

/// Names a deviation of the test broker, found by this test: tansu's Fetch responses never
/// list aborted transactions (`aborted_transactions` is always empty), so a
/// `read_committed` consumer receives the records of an aborted transaction that reached
/// the broker. Apache Kafka hides them. No test may rely on an abort hiding records; the
/// exactly-once tests must keep aborts out of the outcome (as with fencing). When this
/// test fails because the aborted records are hidden, tansu has been fixed: assert that
/// instead.
#[test]
fn tansu_deviation_read_committed_returns_aborted_records() -> anyhow::Result<()> {
    let tansu = Tansu::start()?;
    tansu.create_topic("aborts", 2)?;
    let bootstrap = tansu.bootstrap();

    let producer = KafkaProducer::transactional(&bootstrap, "infra-abort")?;
    producer.begin_transaction()?;
    producer.send("aborts", &batch("committed-1"))?;
    producer.commit_transaction()?;
    producer.begin_transaction()?;
    producer.send("aborts", &batch("aborted"))?;
    producer.flush()?; // on the broker before the abort
    producer.abort_transaction()?;
    producer.begin_transaction()?;
    producer.send("aborts", &batch("committed-2"))?;
    producer.commit_transaction()?;

    let seen = consume_all(&bootstrap, "aborts", true, 12, QUIET, MAX_WAIT)?;
    assert_eq!(seen.len(), 12, "read_committed saw {seen:#?}");
    // Apache Kafka: batch_values(&["committed-1", "committed-2"]).
    assert_eq!(
        values(&seen),
        batch_values(&["committed-1", "aborted", "committed-2"])
    );
    Ok(())
}

#[test]
fn tansu_new_producer_with_same_transactional_id_fences_the_old_one() -> anyhow::Result<()> {
    let tansu = Tansu::start()?;
    tansu.create_topic("fenced", 2)?;
    let bootstrap = tansu.bootstrap();

    let old = KafkaProducer::transactional(&bootstrap, "infra-fence")?;
    old.begin_transaction()?;
    old.send(
        "fenced",
        &[ProduceRecord::new("old-committed").with_partition(0)],
    )?;
    old.commit_transaction()?;

    // Same transactional.id: init_transactions bumps the epoch and fences `old`.
    let new = KafkaProducer::transactional(&bootstrap, "infra-fence")?;

    let zombie = (|| -> anyhow::Result<()> {
        old.begin_transaction()?;
        old.send(
            "fenced",
            &[
                ProduceRecord::new("zombie").with_partition(0),
                ProduceRecord::new("zombie").with_partition(1),
            ],
        )?;
        old.commit_transaction()
    })();
    let error = zombie.expect_err("a fenced producer must not commit");
    let message = format!("{error:#}").to_lowercase();
    assert!(message.contains("fenced"), "unexpected error: {message}");

    new.begin_transaction()?;
    new.send(
        "fenced",
        &[
            ProduceRecord::new("new-committed").with_partition(0),
            ProduceRecord::new("new-committed-1").with_partition(1),
        ],
    )?;
    new.commit_transaction()?;

    let committed = consume_all(&bootstrap, "fenced", true, 3, QUIET, MAX_WAIT)?;
    assert_eq!(
        values(&committed),
        BTreeSet::from(["old-committed", "new-committed", "new-committed-1"].map(String::from)),
        "read_committed saw {committed:#?}"
    );
    assert_eq!(committed.len(), 3);
    Ok(())
}

#[test]
fn moto_serves_buckets_and_objects() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));
    moto.create_bucket("rivulet-test")?;

    assert_eq!(moto.list_objects("rivulet-test", "")?, Vec::<String>::new());
    moto.put_object("rivulet-test", "job/checkpoints/1/manifest.json", b"{}")?;
    moto.put_object(
        "rivulet-test",
        "job/checkpoints/1/state 0+1.sst",
        b"\x00\x01",
    )?;
    moto.put_object("rivulet-test", "other/x", b"x")?;

    assert_eq!(
        moto.list_objects("rivulet-test", "job/")?,
        [
            "job/checkpoints/1/manifest.json",
            "job/checkpoints/1/state 0+1.sst"
        ]
    );
    assert_eq!(
        moto.get_object("rivulet-test", "job/checkpoints/1/state 0+1.sst")?,
        Some(b"\x00\x01".to_vec())
    );
    assert_eq!(moto.get_object("rivulet-test", "missing")?, None);
    moto.delete_object("rivulet-test", "other/x")?;
    assert_eq!(moto.list_objects("rivulet-test", "other/")?.len(), 0);

    let env = moto.s3_env();
    assert!(env
        .iter()
        .any(|(k, v)| k == "AWS_ENDPOINT_URL" && *v == moto.endpoint()));
    Ok(())
}

#[test]
fn process_logs_signals_and_kill() -> anyhow::Result<()> {
    let script = "echo started; echo to-stderr >&2; \
                  trap 'echo terminating; exit 3' TERM; \
                  while true; do sleep 0.05; done";
    let mut graceful = ProcessBuilder::new("sh")
        .label("graceful")
        .args(["-c", script])
        .env("RIVULET_TEST_VAR", "x")
        .spawn()?;
    graceful.wait_for_log("started", Duration::from_secs(10))?;
    graceful.wait_for_log("to-stderr", Duration::from_secs(10))?;
    assert!(graceful.is_running());
    graceful.sigterm()?;
    let status = graceful
        .wait_exit(Duration::from_secs(10))
        .expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(3));
    assert!(graceful.stdout().contains("terminating"));
    assert!(graceful.stderr().contains("to-stderr"));
    assert!(graceful.sigterm().is_err(), "signalling an exited process");

    let mut victim = ProcessBuilder::new("sh")
        .label("victim")
        .args(["-c", "echo $RIVULET_TEST_VAR; exec sleep 600"])
        .env("RIVULET_TEST_VAR", "from-env")
        .spawn()?;
    victim.wait_for_log("from-env", Duration::from_secs(10))?;
    assert!(victim.wait_exit(Duration::from_millis(200)).is_none());
    let status = victim.kill9();
    assert_eq!(status.signal(), Some(9));
    assert!(!victim.is_running());

    let mut quick = ProcessBuilder::new("sh")
        .args(["-c", "echo bye; exit 0"])
        .spawn()?;
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || !quick.is_running()
    ));
    let error = quick
        .wait_for_log("never printed", Duration::from_secs(5))
        .unwrap_err();
    assert!(format!("{error}").contains("exited"), "{error}");
    Ok(())
}

#[test]
fn dropping_a_process_kills_its_process_group() -> anyhow::Result<()> {
    // The child starts a grandchild that prints its pid; dropping the child must kill both.
    let mut parent = ProcessBuilder::new("sh")
        .args(["-c", "sleep 600 & echo grandchild=$!; wait"])
        .spawn()?;
    parent.wait_for_log("grandchild=", Duration::from_secs(10))?;
    let pid: i32 = parent
        .stdout()
        .trim()
        .strip_prefix("grandchild=")
        .expect("pid line")
        .parse()?;
    let alive = |pid: i32| {
        std::path::Path::new(&format!("/proc/{pid}")).exists() && {
            // A zombie waiting for its reaper counts as dead.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        }
    };
    assert!(alive(pid));
    drop(parent);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            !alive(pid)
        }),
        "grandchild {pid} survived"
    );
    Ok(())
}

#[test]
fn binaries_are_looked_up_next_to_the_test_binary() {
    let dir = rivulet_tests::bin_dir();
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
    assert_eq!(
        rivulet_tests::bin_path("rivulet-worker"),
        dir.join("rivulet-worker")
    );
    assert!(rivulet_tests::workspace_root().join("Cargo.toml").is_file());
}
