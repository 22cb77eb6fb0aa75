//! The Kafka sink, exactly-once or at-least-once, carrying the dead-letter topic too.
//!
//! **Exactly-once** follows DESIGN's protocol on standard client APIs only. The output of
//! epoch `n` (everything emitted between checkpoints `n-1` and `n`) is buffered and written
//! into checkpoint `n`. Only after the checkpoint's manifest exists does the sink produce that
//! output in one short transaction, which also commits a *marker*: the offset of a per-sink
//! consumer group, set to `n`, through `send_offsets_to_transaction`. A restarted sink reads
//! the marker to learn whether epoch `n` was committed and re-produces it from the snapshot
//! only if not. The `transactional.id` is stable per sink slot, so a restart fences its
//! predecessor. While a transaction is open a flag file exists (created before
//! `begin_transaction`, removed after the commit), which lets crash tests avoid killing
//! inside the window the test broker cannot judge.
//!
//! **At-least-once** produces records as they are emitted and flushes before each checkpoint
//! completes.
//!
//! **Partitioning**: by default the Kafka client picks the partition from the record key.
//! With the `fixed` partitioner, slot `i` writes every record to partition `i mod partitions`
//! of the sink and of the dead-letter topic.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use rivulet_api::spec::{DeliveryGuarantee, SinkPartitioner, SinkSpec};

use super::config::{client_config, ConfigError};
use crate::output::{Destination, OutRecord};

const TXN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("kafka sink: {0}")]
    Kafka(#[from] KafkaError),
    #[error("kafka sink: {0} record(s) failed delivery; last error: {1}")]
    Delivery(u64, String),
    #[error("{what} topic `{topic}` does not exist (create it before starting the job)")]
    NoSuchTopic { what: &'static str, topic: String },
    #[error("kafka sink: {0}")]
    Other(String),
}

/// Counts failed deliveries (at-least-once) so a flush can report them.
#[derive(Default)]
pub struct DeliveryContext {
    failed: AtomicU64,
    last_error: std::sync::Mutex<String>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut l) = self.last_error.lock() {
                *l = e.to_string();
            }
        }
    }
}

/// Names that identify one sink slot of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkIdentity {
    /// The slot: the index of the worker that owns this sink.
    pub slot: u32,
    /// `transactional.id`, stable across restarts of this slot.
    pub transactional_id: String,
    /// Consumer group whose committed offset is the last committed epoch.
    pub marker_group: String,
}

impl SinkIdentity {
    /// The identity of sink slot `slot` of job `job` in `namespace`.
    pub fn of(namespace: &str, job: &str, slot: u32) -> SinkIdentity {
        SinkIdentity {
            slot,
            transactional_id: format!("rivulet-{namespace}-{job}-sink-{slot}"),
            marker_group: format!("rivulet-{namespace}-{job}-sink-{slot}-epochs"),
        }
    }
}

/// The sink slots of a snapshot taken at `snapshot_parallelism` that no worker of a job at
/// `parallelism` owns, and that worker `index` settles in their stead: `s mod parallelism ==
/// index`. Their pending output would be lost, and an open transaction of theirs would only
/// end at its timeout, if nobody took them over.
pub fn orphaned_slots(snapshot_parallelism: u32, index: u32, parallelism: u32) -> Vec<u32> {
    (parallelism..snapshot_parallelism)
        .filter(|s| parallelism > 0 && s % parallelism == index)
        .collect()
}

pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryContext>,
    guarantee: DeliveryGuarantee,
    sink_topic: String,
    dead_letter_topic: String,
    marker: Option<(BaseConsumer, rdkafka::consumer::ConsumerGroupMetadata)>,
    /// Client settings for reading another slot's marker (a restored snapshot's owner).
    marker_config: rdkafka::ClientConfig,
    marker_group: String,
    txn_flag: Option<PathBuf>,
    /// With the `fixed` partitioner: the partitions of the sink and dead-letter topics this
    /// slot writes to.
    fixed: Option<(i32, i32)>,
    blocked_ns: AtomicU64,
    /// At most this many records per second (a test's slow sink): (rate, start, sent).
    throttle: Option<(u64, std::time::Instant, std::sync::atomic::AtomicU64)>,
}

impl KafkaSink {
    /// Connects; with exactly-once, initializes transactions (fencing any predecessor).
    pub fn open(
        spec: &SinkSpec,
        bootstrap: &str,
        dead_letter_topic: &str,
        identity: &SinkIdentity,
        txn_flag: Option<PathBuf>,
    ) -> Result<Self, SinkError> {
        let mut cfg = client_config(bootstrap, &spec.properties, &spec.secret_properties)?;
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.max.bytes", "16777216");
        if !spec.properties.contains_key("linger.ms") {
            cfg.set("linger.ms", "5");
        }
        let exactly_once = spec.delivery_guarantee == DeliveryGuarantee::ExactlyOnce;
        let mut marker_config =
            client_config(bootstrap, &spec.properties, &spec.secret_properties)?;
        marker_config
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed");
        let marker = if exactly_once {
            cfg.set("transactional.id", &identity.transactional_id).set(
                "transaction.timeout.ms",
                TXN_TIMEOUT.as_millis().to_string(),
            );
            let mut mc = marker_config.clone();
            mc.set("group.id", &identity.marker_group);
            let consumer: BaseConsumer = mc.create()?;
            let cgm = consumer.group_metadata().ok_or_else(|| {
                SinkError::Other("no consumer group metadata for the commit marker".into())
            })?;
            Some((consumer, cgm))
        } else {
            None
        };
        let producer: ThreadedProducer<DeliveryContext> =
            cfg.create_with_context(DeliveryContext::default())?;
        // Asked through a consumer, which never auto-creates topics: a misspelt topic is an
        // error, not a new topic.
        let probe: BaseConsumer = marker_config.create()?;
        let sink_partitions = ensure_topic(probe.client(), "sink", &spec.topic)?;
        let dead_letter_partitions =
            ensure_topic(probe.client(), "dead-letter", dead_letter_topic)?;
        let fixed = (spec.partitioner == SinkPartitioner::Fixed).then(|| {
            (
                fixed_partition(identity.slot, sink_partitions),
                fixed_partition(identity.slot, dead_letter_partitions),
            )
        });
        if exactly_once {
            producer.init_transactions(TXN_TIMEOUT)?;
        }
        Ok(KafkaSink {
            producer,
            guarantee: spec.delivery_guarantee,
            sink_topic: spec.topic.clone(),
            dead_letter_topic: dead_letter_topic.to_string(),
            marker,
            marker_config,
            marker_group: identity.marker_group.clone(),
            txn_flag,
            fixed,
            blocked_ns: AtomicU64::new(0),
            throttle: None,
        })
    }

    pub fn exactly_once(&self) -> bool {
        self.guarantee == DeliveryGuarantee::ExactlyOnce
    }

    fn marker_partition(&self) -> Result<TopicPartitionList, SinkError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.sink_topic, 0);
        Ok(tpl)
    }

    /// The consumer group holding this sink's commit marker.
    pub fn marker_group(&self) -> &str {
        &self.marker_group
    }

    /// The last epoch whose output this sink committed (exactly-once), from its marker.
    pub fn committed_epoch(&self) -> Result<Option<u64>, SinkError> {
        self.committed_epoch_of(&self.marker_group)
    }

    /// The last epoch committed by the sink whose marker group is `group` (another job's,
    /// when restoring its snapshot), on this sink's topic.
    pub fn committed_epoch_of(&self, group: &str) -> Result<Option<u64>, SinkError> {
        let Some((own, _)) = &self.marker else {
            return Ok(None);
        };
        let other;
        let consumer = if group == self.marker_group {
            own
        } else {
            let mut cfg = self.marker_config.clone();
            cfg.set("group.id", group);
            other = cfg.create::<BaseConsumer>()?;
            &other
        };
        let tpl = consumer.committed_offsets(self.marker_partition()?, Duration::from_secs(30))?;
        Ok(tpl
            .find_partition(&self.sink_topic, 0)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o as u64),
                _ => None,
            }))
    }

    /// Time spent blocked on a full producer queue since the last call (backpressure).
    pub fn take_blocked(&self) -> Duration {
        Duration::from_nanos(self.blocked_ns.swap(0, Ordering::Relaxed))
    }

    /// Limits at-least-once output to `records_per_second` (fault injection for tests: a
    /// slow downstream system). The time spent waiting counts as backpressure.
    pub fn throttle(&mut self, records_per_second: u64) {
        self.throttle = Some((
            records_per_second.max(1),
            std::time::Instant::now(),
            AtomicU64::new(0),
        ));
    }

    /// At-least-once: produces now. (Exactly-once sinks buffer per epoch instead.)
    pub fn send_now(&self, records: &[OutRecord]) -> Result<(), SinkError> {
        for r in records {
            self.produce(r, true)?;
        }
        if let Some((rate, start, sent)) = &self.throttle {
            let sent =
                sent.fetch_add(records.len() as u64, Ordering::Relaxed) + records.len() as u64;
            let due = Duration::from_secs_f64(sent as f64 / *rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
                self.blocked_ns
                    .fetch_add(wait.as_nanos() as u64, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// At-least-once: waits until everything sent so far is acknowledged.
    pub fn flush(&self) -> Result<(), SinkError> {
        self.producer.flush(Duration::from_secs(60))?;
        let ctx = self.producer.context();
        let failed = ctx.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let last = ctx.last_error.lock().map(|l| l.clone()).unwrap_or_default();
            return Err(SinkError::Delivery(failed, last));
        }
        Ok(())
    }

    /// Exactly-once: publishes epoch `epoch`'s output and the marker in one transaction.
    /// An epoch without output needs no transaction: committing nothing again after a
    /// restore changes nothing, so its marker need not move (an idle job then costs the
    /// broker no transaction per checkpoint).
    pub fn commit_epoch(&self, epoch: u64, records: &[OutRecord]) -> Result<(), SinkError> {
        let Some((_, cgm)) = &self.marker else {
            return Err(SinkError::Other(
                "commit_epoch on an at-least-once sink".into(),
            ));
        };
        if records.is_empty() {
            return Ok(());
        }
        if let Some(flag) = &self.txn_flag {
            std::fs::write(flag, epoch.to_string())
                .map_err(|e| SinkError::Other(format!("cannot write {}: {e}", flag.display())))?;
        }
        let result = (|| {
            self.producer.begin_transaction()?;
            for r in records {
                self.produce(r, false)?;
            }
            let mut tpl = TopicPartitionList::new();
            let marker = i64::try_from(epoch)
                .map_err(|_| SinkError::Other(format!("epoch {epoch} out of range")))?;
            tpl.add_partition_offset(&self.sink_topic, 0, Offset::Offset(marker))?;
            self.producer
                .send_offsets_to_transaction(&tpl, cgm, TXN_TIMEOUT)?;
            self.producer.commit_transaction(TXN_TIMEOUT)?;
            Ok::<(), SinkError>(())
        })();
        if let Err(e) = &result {
            tracing::error!(epoch, error = %e, "transaction failed; aborting it");
            if let Err(abort) = self.producer.abort_transaction(TXN_TIMEOUT) {
                tracing::error!(error = %abort, "abort failed");
            }
        }
        if let Some(flag) = &self.txn_flag {
            let _ = std::fs::remove_file(flag);
        }
        result
    }

    /// Produces one record, waiting while the producer's queue is full; that wait counts as
    /// backpressure when `backpressure` (the caller is the processing thread).
    fn produce(&self, r: &OutRecord, backpressure: bool) -> Result<(), SinkError> {
        let topic = match r.destination {
            Destination::Sink => self.sink_topic.as_str(),
            Destination::DeadLetter => self.dead_letter_topic.as_str(),
        };
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record = BaseRecord::<[u8], [u8], ()>::to(topic)
            .payload(&r.value)
            .headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k);
        }
        if let Some((sink, dead_letter)) = self.fixed {
            record = record.partition(match r.destination {
                Destination::Sink => sink,
                Destination::DeadLetter => dead_letter,
            });
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    let t = std::time::Instant::now();
                    self.producer.poll(Duration::from_millis(5));
                    if backpressure {
                        self.blocked_ns
                            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
}

/// Fails clearly when `topic` does not exist, instead of letting produce calls wait for it.
/// The partition slot `slot` writes to with the `fixed` partitioner.
fn fixed_partition(slot: u32, partitions: usize) -> i32 {
    // Partition counts fit in i32 (Kafka's own type); `partitions` is never 0 here.
    (slot as usize % partitions.max(1)) as i32
}

fn ensure_topic<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    what: &'static str,
    topic: &str,
) -> Result<usize, SinkError> {
    let mut last = None;
    // Metadata of a freshly created topic can lag briefly.
    for _ in 0..10 {
        match client.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| {
                    t.name() == topic && t.error().is_none() && !t.partitions().is_empty()
                }) {
                    return Ok(t.partitions().len());
                }
            }
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    match last {
        Some(e) => Err(SinkError::Kafka(e)),
        None => Err(SinkError::NoSuchTopic {
            what,
            topic: topic.to_string(),
        }),
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if !self.exactly_once() {
            let _ = self.producer.flush(Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphaned_slots_go_to_the_worker_their_number_maps_to() {
        assert_eq!(orphaned_slots(3, 0, 1), vec![1, 2]);
        assert_eq!(orphaned_slots(5, 0, 2), vec![2, 4]);
        assert_eq!(orphaned_slots(5, 1, 2), vec![3]);
        // Same or higher parallelism: every old slot still has its worker.
        assert!(orphaned_slots(2, 0, 2).is_empty());
        assert!(orphaned_slots(2, 1, 3).is_empty());
    }

    #[test]
    fn fixed_partition_wraps_around_the_topic() {
        assert_eq!(fixed_partition(0, 3), 0);
        assert_eq!(fixed_partition(4, 3), 1);
        assert_eq!(fixed_partition(2, 1), 0);
    }
}
