//! The Kafka source: manually assigned partitions, positions owned by checkpoints.
//!
//! Partition `p` of every source topic is read by worker `p mod n`. No consumer group offsets
//! are committed: the next offset of each partition is kept here and written into every
//! checkpoint, and a restore seeks back to it. Lag comes from the high watermark (or last
//! stable offset under `read_committed`) that fetch responses carry, reported through
//! librdkafka's statistics — not from ListOffsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use rivulet_api::manifest::SourceOffset;
use rivulet_api::spec::{IsolationLevel, SourceSpec, StartFrom};

use super::config::{client_config, ConfigError};
use crate::record::RecordMeta;
pub use crate::record::SourceRecord;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("source topic `{0}` does not exist or has no partitions")]
    NoSuchTopic(String),
    #[error("source: {0}")]
    Other(String),
}

/// librdkafka consumer settings the worker changes unless the job's `properties` set them.
///
/// - `fetch.wait.max.ms`: an idle partition's fetch returns after 100 ms instead of 500 ms,
///   so watermarks and processing-time windows advance promptly.
/// - `fetch.queue.backoff.ms`: once a partition's prefetch queue passes `queued.min.messages`,
///   librdkafka waits this long before fetching it again (default 1000 ms). A worker that
///   processes slower than the broker delivers crosses that threshold on every partition, then
///   drains the queue and sits idle for the rest of the second: the Nexmark q2 benchmark spent
///   over half its time blocked in `poll` (seen with `perf sched` tracepoints), 1 M events took
///   8.4–9.1 s with the default and 2.4–2.6 s with 100 ms.
const SOURCE_DEFAULTS: &[(&str, &str)] = &[
    ("fetch.wait.max.ms", "100"),
    ("fetch.queue.backoff.ms", "100"),
];

/// Per-partition end offsets seen in fetch responses, shared with the statistics callback.
#[derive(Default)]
pub struct LagContext {
    /// (topic, partition) → end offset (last stable offset when reading committed).
    ends: Mutex<HashMap<(String, i32), i64>>,
    read_committed: bool,
}

impl ClientContext for LagContext {
    fn stats(&self, stats: Statistics) {
        let Ok(mut ends) = self.ends.lock() else {
            return;
        };
        for (topic, t) in stats.topics {
            for (p, ps) in t.partitions {
                if p < 0 {
                    continue;
                }
                let end = if self.read_committed && ps.ls_offset >= 0 {
                    ps.ls_offset
                } else {
                    ps.hi_offset
                };
                if end >= 0 {
                    ends.insert((topic.clone(), p), end);
                }
            }
        }
    }
}

impl ConsumerContext for LagContext {}

/// The partitions one worker reads and where it is in each.
pub struct KafkaSource {
    consumer: BaseConsumer<LagContext>,
    topics: Vec<Arc<str>>,
    /// Next offset to read, by (topic, partition); absent until the first record when the
    /// start position is symbolic.
    positions: BTreeMap<(Arc<str>, i32), i64>,
    assigned: Vec<(Arc<str>, i32)>,
}

impl KafkaSource {
    /// Connects and assigns partition `p` of each topic when `p % parallelism == index`.
    /// `restored` offsets win over the spec's start position.
    pub fn open(
        spec: &SourceSpec,
        bootstrap: &str,
        group_id: &str,
        index: u32,
        parallelism: u32,
        restored: &[SourceOffset],
    ) -> Result<Self, SourceError> {
        let mut cfg = client_config(bootstrap, &spec.properties, &spec.secret_properties)?;
        let read_committed = spec.isolation_level == IsolationLevel::ReadCommitted;
        cfg.set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", "1000")
            .set(
                "isolation.level",
                if read_committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            );
        for (key, value) in SOURCE_DEFAULTS {
            if !spec.properties.contains_key(*key) {
                cfg.set(*key, *value);
            }
        }
        let context = LagContext {
            read_committed,
            ..Default::default()
        };
        let consumer: BaseConsumer<LagContext> = cfg.create_with_context(context)?;

        let mut tpl = TopicPartitionList::new();
        let mut topics = Vec::new();
        let mut assigned = Vec::new();
        let mut positions = BTreeMap::new();
        let restored: HashMap<(&str, i32), i64> = restored
            .iter()
            .map(|o| ((o.topic.as_str(), o.partition), o.offset))
            .collect();
        for topic in &spec.topics {
            let partitions = partitions_of(&consumer, topic)?;
            let name: Arc<str> = Arc::from(topic.as_str());
            topics.push(name.clone());
            for p in partitions {
                if (p as u32) % parallelism.max(1) != index {
                    continue;
                }
                let offset = match restored.get(&(topic.as_str(), p)) {
                    Some(&o) => {
                        positions.insert((name.clone(), p), o);
                        Offset::Offset(o)
                    }
                    None => match &spec.start_from {
                        StartFrom::Earliest => Offset::Beginning,
                        StartFrom::Latest => Offset::End,
                        StartFrom::Timestamp(_) => Offset::Beginning,
                    },
                };
                tpl.add_partition_offset(topic, p, offset)?;
                assigned.push((name.clone(), p));
            }
        }
        if let StartFrom::Timestamp(ts) = &spec.start_from {
            let ms = parse_rfc3339_ms(ts).ok_or_else(|| {
                SourceError::Other(format!("startFrom timestamp {ts:?} is not RFC 3339"))
            })?;
            let mut by_time = TopicPartitionList::new();
            for (t, p) in &assigned {
                if !positions.contains_key(&(t.clone(), *p)) {
                    by_time.add_partition_offset(t, *p, Offset::Offset(ms))?;
                }
            }
            if by_time.count() > 0 {
                let found = consumer.offsets_for_times(by_time, Duration::from_secs(30))?;
                for e in found.elements() {
                    tpl.set_partition_offset(e.topic(), e.partition(), e.offset())?;
                }
            }
        }
        consumer.assign(&tpl)?;
        tracing::info!(partitions = assigned.len(), "source assigned");
        Ok(KafkaSource {
            consumer,
            topics,
            positions,
            assigned,
        })
    }

    /// Partitions this source reads.
    pub fn assigned(&self) -> &[(Arc<str>, i32)] {
        &self.assigned
    }

    /// Polls up to `max` records, waiting at most `timeout` for the first one.
    pub fn poll_batch(
        &mut self,
        max: usize,
        timeout: Duration,
        out: &mut Vec<SourceRecord>,
    ) -> Result<(), SourceError> {
        let first = out.len();
        let mut wait = timeout;
        while out.len() < max {
            match self.consumer.poll(wait) {
                None => break,
                Some(Err(e)) => {
                    // Transient broker errors are retried by librdkafka; surface fatal ones.
                    if let Some(code) = e.rdkafka_error_code() {
                        tracing::warn!(error = %e, ?code, "source poll error");
                    }
                    break;
                }
                Some(Ok(m)) => out.push(self.copy(&m)),
            }
            wait = Duration::ZERO;
        }
        // Positions move once per partition and batch rather than once per record.
        let mut last: Option<(&Arc<str>, i32)> = None;
        for rec in out[first..].iter().rev() {
            let at = (&rec.meta.topic, rec.meta.partition);
            if last.is_some_and(|(t, p)| Arc::ptr_eq(t, at.0) && p == at.1) {
                continue;
            }
            last = Some(at);
            self.positions
                .entry((rec.meta.topic.clone(), rec.meta.partition))
                .and_modify(|o| *o = (*o).max(rec.meta.offset + 1))
                .or_insert(rec.meta.offset + 1);
        }
        Ok(())
    }

    fn copy(&self, m: &BorrowedMessage<'_>) -> SourceRecord {
        let name = m.topic();
        // Usually one topic or a few: a scan is cheaper than hashing the name per record.
        let topic = self
            .topics
            .iter()
            .find(|t| t.len() == name.len() && t.as_bytes() == name.as_bytes())
            .cloned()
            .unwrap_or_else(|| Arc::from(name));
        SourceRecord {
            payload: m.payload().map(<[u8]>::to_vec),
            meta: RecordMeta {
                topic,
                partition: m.partition(),
                offset: m.offset(),
                timestamp_ms: m.timestamp().to_millis(),
                key: m.key().map(<[u8]>::to_vec),
            },
        }
    }

    /// Where each partition resumes: the next offset to read. Partitions that have not
    /// returned a record yet and started from a symbolic position are resolved through the
    /// consumer's current position.
    pub fn offsets(&self) -> Vec<SourceOffset> {
        let current = self.consumer.position().ok();
        self.assigned
            .iter()
            .filter_map(|(t, p)| {
                let known = self.positions.get(&(t.clone(), *p)).copied();
                let offset = known.or_else(|| {
                    current.as_ref().and_then(|tpl| {
                        tpl.find_partition(t, *p).and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                    })
                })?;
                Some(SourceOffset {
                    topic: t.to_string(),
                    partition: *p,
                    offset,
                })
            })
            .collect()
    }

    /// Records behind the end of each partition, from the last statistics report.
    pub fn lag(&self) -> Vec<((Arc<str>, i32), i64)> {
        let ends = match self.consumer.context().ends.lock() {
            Ok(e) => e.clone(),
            Err(_) => return Vec::new(),
        };
        self.assigned
            .iter()
            .filter_map(|(t, p)| {
                let end = *ends.get(&(t.to_string(), *p))?;
                let pos = self.positions.get(&(t.clone(), *p)).copied().unwrap_or(0);
                Some(((t.clone(), *p), (end - pos).max(0)))
            })
            .collect()
    }
}

fn partitions_of(
    consumer: &BaseConsumer<LagContext>,
    topic: &str,
) -> Result<Vec<i32>, SourceError> {
    // Topic metadata can lag a fresh topic's creation; retry briefly.
    let mut last_err = None;
    for _ in 0..20 {
        match consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) {
            Ok(md) => {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                    if t.error().is_none() && !t.partitions().is_empty() {
                        let mut ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                        ps.sort_unstable();
                        return Ok(ps);
                    }
                }
            }
            Err(e) => last_err = Some(e),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    match last_err {
        Some(e) => Err(SourceError::Kafka(e)),
        None => Err(SourceError::NoSuchTopic(topic.to_string())),
    }
}

fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}
