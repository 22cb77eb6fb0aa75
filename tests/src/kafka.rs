//! Kafka helpers for tests: create topics, produce (idempotent or transactional) and read
//! a whole topic back.
//!
//! Reading never asks the broker where a topic ends: tansu answers ListOffsets(latest)
//! (what `fetch_watermarks` uses) with the last batch's base offset. [`consume_all`] reads
//! from the beginning until enough records arrived and then nothing new for a while.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

/// Timeout for one blocking client call (metadata, flush, transaction steps).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "30000");
    config
}

/// Creates `name` with `partitions` partitions (replication factor 1) and waits until the
/// broker's metadata shows every partition. Fails if the topic already exists.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap)
        .create()
        .context("create the admin client")?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new()
        .request_timeout(Some(CALL_TIMEOUT))
        .operation_timeout(Some(Duration::from_secs(10)));
    let results = futures::executor::block_on(admin.create_topics([&topic], &options))
        .with_context(|| format!("create topic {name}"))?;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("create topic {topic}: {code}");
        }
    }
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        match admin
            .inner()
            .fetch_metadata(Some(name), Duration::from_secs(5))
        {
            Ok(metadata) => {
                let ready = metadata.topics().iter().any(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && t.partitions().len() == partitions as usize
                        && t.partitions().iter().all(|p| p.error().is_none())
                });
                if ready {
                    return Ok(());
                }
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(e).context(format!("metadata of new topic {name}"))
            }
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            bail!("topic {name} did not show {partitions} partitions within {CALL_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The number of partitions of an existing topic, from the broker's metadata.
pub fn topic_partition_count(bootstrap: &str, topic: &str) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", "rivulet-tests-metadata")
        .create()
        .context("create a consumer")?;
    partition_count(&consumer, topic, CALL_TIMEOUT)
}

fn partition_count(
    consumer: &BaseConsumer,
    topic: &str,
    max_wait: Duration,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + max_wait;
    loop {
        let last = match consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(metadata) => match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    return Ok(t.partitions().len())
                }
                Some(t) => format!("topic error {:?}", t.error()),
                None => "topic not in metadata".to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            bail!("no metadata for topic {topic} within {max_wait:?}: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One record to produce. Build it with [`ProduceRecord::new`] or
/// [`ProduceRecord::keyed`] and the `with_*` methods, or from a
/// `(key, value, partition, timestamp_ms)` tuple.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// `None`: librdkafka's default partitioner (hash of the key).
    pub partition: Option<i32>,
    /// `None`: the producer's current time.
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ProduceRecord {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self {
            value: value.into(),
            ..Self::default()
        }
    }

    pub fn keyed(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self::new(value).with_key(key)
    }

    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl<K: Into<Vec<u8>>, V: Into<Vec<u8>>> From<(Option<K>, V, Option<i32>, Option<i64>)>
    for ProduceRecord
{
    fn from(
        (key, value, partition, timestamp_ms): (Option<K>, V, Option<i32>, Option<i64>),
    ) -> Self {
        Self {
            key: key.map(Into::into),
            value: value.into(),
            partition,
            timestamp_ms,
            headers: Vec::new(),
        }
    }
}

/// Producer context that records delivery failures, so [`KafkaProducer::flush`] can
/// report them instead of dropping them silently.
#[derive(Debug, Default)]
pub struct DeliveryTracker {
    delivered: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, message)) => {
                self.failures.lock().unwrap().push(format!(
                    "{}[{}]: {error}",
                    message.topic(),
                    message.partition()
                ));
            }
        }
    }
}

/// A blocking Kafka producer for tests: idempotent, or transactional with a fixed
/// `transactional.id`. Delivery failures surface as errors from [`Self::flush`] and
/// [`Self::commit_transaction`]. A background thread serves librdkafka's events.
pub struct KafkaProducer {
    producer: ThreadedProducer<DeliveryTracker>,
    bootstrap: String,
}

impl KafkaProducer {
    /// An idempotent producer (`enable.idempotence=true`, `acks=all`).
    pub fn idempotent(bootstrap: &str) -> anyhow::Result<Self> {
        let producer = base_config(bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create_with_context(DeliveryTracker::default())
            .context("create an idempotent producer")?;
        Ok(Self {
            producer,
            bootstrap: bootstrap.to_string(),
        })
    }

    /// A transactional producer, with `init_transactions` already done (which fences any
    /// earlier producer with the same `transactional_id`).
    pub fn transactional(bootstrap: &str, transactional_id: &str) -> anyhow::Result<Self> {
        let producer: ThreadedProducer<DeliveryTracker> = base_config(bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", "60000")
            .create_with_context(DeliveryTracker::default())
            .context("create a transactional producer")?;
        producer
            .init_transactions(CALL_TIMEOUT)
            .with_context(|| format!("init_transactions for {transactional_id}"))?;
        Ok(Self {
            producer,
            bootstrap: bootstrap.to_string(),
        })
    }

    /// Enqueues records (waiting while librdkafka's queue is full). Call [`Self::flush`] or
    /// [`Self::commit_transaction`] to make sure they were delivered.
    pub fn send(&self, topic: &str, records: &[ProduceRecord]) -> anyhow::Result<()> {
        for record in records {
            let mut base: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(topic).payload(record.value.as_slice());
            if let Some(key) = &record.key {
                base = base.key(key.as_slice());
            }
            if let Some(partition) = record.partition {
                base = base.partition(partition);
            }
            if let Some(ts) = record.timestamp_ms {
                base = base.timestamp(ts);
            }
            if !record.headers.is_empty() {
                let headers = record
                    .headers
                    .iter()
                    .fold(OwnedHeaders::new(), |h, (k, v)| {
                        h.insert(Header {
                            key: k.as_str(),
                            value: Some(v.as_slice()),
                        })
                    });
                base = base.headers(headers);
            }
            let deadline = Instant::now() + CALL_TIMEOUT;
            loop {
                match self.producer.send(base) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        base = back;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err((e, _)) => return Err(e).context(format!("produce to {topic}")),
                }
            }
        }
        Ok(())
    }

    /// Waits until every enqueued record is delivered; fails if any delivery failed since
    /// the last flush.
    pub fn flush(&self) -> anyhow::Result<()> {
        let flushed = self.producer.flush(CALL_TIMEOUT);
        self.take_failures()?;
        flushed.context("flush")
    }

    fn take_failures(&self) -> anyhow::Result<()> {
        let failures = std::mem::take(&mut *self.producer.context().failures.lock().unwrap());
        if failures.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(
                "{} record(s) not delivered: {}",
                failures.len(),
                failures.join("; ")
            ))
        }
    }

    /// Records delivered (acknowledged by the broker) so far.
    pub fn delivered(&self) -> u64 {
        self.producer.context().delivered.load(Ordering::Relaxed)
    }

    pub fn begin_transaction(&self) -> anyhow::Result<()> {
        self.producer
            .begin_transaction()
            .context("begin_transaction")
    }

    /// Flushes and commits the open transaction.
    pub fn commit_transaction(&self) -> anyhow::Result<()> {
        let committed = self.producer.commit_transaction(CALL_TIMEOUT);
        self.take_failures()?;
        committed.context("commit_transaction")
    }

    /// Inside the open transaction, commits `offsets` (`(partition, offset)` of `topic`)
    /// for consumer group `group`, as a consume-transform-produce loop would. They become
    /// visible with the transaction's commit; read them with [`committed_offset`].
    pub fn send_offsets_to_transaction(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> anyhow::Result<()> {
        let mut list = TopicPartitionList::new();
        for &(partition, offset) in offsets {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
        }
        let consumer: BaseConsumer = base_config(&self.bootstrap)
            .set("group.id", group)
            .create()
            .context("create a consumer for the group's metadata")?;
        let metadata = consumer
            .group_metadata()
            .context("no consumer group metadata")?;
        self.producer
            .send_offsets_to_transaction(&list, &metadata, CALL_TIMEOUT)
            .context("send_offsets_to_transaction")
    }

    pub fn abort_transaction(&self) -> anyhow::Result<()> {
        let aborted = self.producer.abort_transaction(CALL_TIMEOUT);
        // Records of an aborted transaction are expected to fail delivery.
        self.producer.context().failures.lock().unwrap().clear();
        aborted.context("abort_transaction")
    }

    /// The underlying rdkafka producer, for anything not wrapped here
    /// (e.g. `send_offsets_to_transaction`).
    pub fn inner(&self) -> &ThreadedProducer<DeliveryTracker> {
        &self.producer
    }
}

/// Produces `records` to `topic` with an idempotent producer and waits until all are
/// delivered.
pub fn produce(bootstrap: &str, topic: &str, records: &[ProduceRecord]) -> anyhow::Result<()> {
    let producer = KafkaProducer::idempotent(bootstrap)?;
    producer.send(topic, records)?;
    producer.flush()
}

/// The offset consumer group `group` has committed for `topic`/`partition`, if any.
pub fn committed_offset(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partition: i32,
) -> anyhow::Result<Option<i64>> {
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .context("create a consumer")?;
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(list, CALL_TIMEOUT)
        .with_context(|| format!("committed offsets of group {group}"))?;
    let offset = committed
        .find_partition(topic, partition)
        .map(|e| e.offset());
    Ok(match offset {
        Some(Offset::Offset(n)) => Some(n),
        _ => None,
    })
}

/// A record read back by [`consume_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    /// Empty for a record with a null value.
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ConsumedRecord {
    /// The value as text (invalid UTF-8 replaced).
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }

    /// The key as text (invalid UTF-8 replaced).
    pub fn key_str(&self) -> Option<String> {
        self.key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// The value parsed as JSON.
    pub fn value_json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.value)
            .with_context(|| format!("record value is not JSON: {:?}", self.value_str()))
    }

    /// The first header with this name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first header with this name, as text.
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// Reads every partition of `topic` from the beginning (manual assignment, no consumer
/// group offsets) and returns the records sorted by (partition, offset).
///
/// Stops once at least `expected_at_least` records were read and then nothing new arrived
/// for `quiet`, or when `max_wait` has passed, whichever comes first. It does not fail on
/// too few records: assert on what it returns. With `expected_at_least = 0` it returns
/// after `quiet` of silence, which checks that nothing (more) appears.
///
/// `read_committed` sets `isolation.level=read_committed` (hides aborted and still-open
/// transactions). With tansu an abandoned open transaction blocks such a reader for good,
/// so this then returns at `max_wait` with what it had.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    read_committed: bool,
    expected_at_least: usize,
    quiet: Duration,
    max_wait: Duration,
) -> anyhow::Result<Vec<ConsumedRecord>> {
    let start = Instant::now();
    let group = format!("rivulet-tests-reader-{}", rand::random::<u64>());
    let consumer: BaseConsumer = base_config(bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()
        .context("create a consumer")?;
    let partitions = partition_count(&consumer, topic, max_wait)?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment).context("assign partitions")?;

    let mut records: BTreeMap<(i32, i64), ConsumedRecord> = BTreeMap::new();
    let mut last_new = Instant::now();
    loop {
        let now = Instant::now();
        if now.duration_since(start) >= max_wait {
            break;
        }
        if records.len() >= expected_at_least && now.duration_since(last_new) >= quiet {
            break;
        }
        // Errors (e.g. a broker hiccup) are transient here; librdkafka retries them.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            let record = ConsumedRecord {
                partition: message.partition(),
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                headers,
            };
            if records
                .insert((record.partition, record.offset), record)
                .is_none()
            {
                last_new = Instant::now();
            }
        }
    }
    Ok(records.into_values().collect())
}
