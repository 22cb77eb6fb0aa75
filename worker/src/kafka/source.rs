//! The Kafka source: manually assigned partitions, positions owned by checkpoints.
//!
//! Partition `p` of every source topic is read by worker `p mod n`. No consumer group offsets
//! are committed: the next offset of each partition is kept here and written into every
//! checkpoint, and a restore seeks back to it.
//!
//! What is waiting in each partition comes from the end that fetch responses carry (the last
//! stable offset under `read_committed`, else the high watermark), reported through
//! librdkafka's statistics every [`STATS_INTERVAL_MS`], never from ListOffsets. Against the
//! same report's application position (which librdkafka moves past transaction markers) it
//! gives each partition's lag and its [`Backlog`]: the watermark treats a partition as idle
//! only once it has caught up. Partitions can be paused and resumed for watermark alignment;
//! a resumed partition continues from the record after the last one returned.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::time::Backlog;

/// How often librdkafka reports each partition's end and position.
pub const STATS_INTERVAL_MS: u64 = 500;

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

/// One partition in the last statistics report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reported {
    /// The end fetch responses carry: the last stable offset when reading committed, else
    /// the high watermark; negative until a fetch response arrived.
    end: i64,
    /// The application's position: the offset after the last record returned (or the last
    /// transaction marker passed); negative when nothing was returned yet.
    app_offset: i64,
    /// Where the next fetch starts; negative while the start position is not resolved.
    next_offset: i64,
    /// Records fetched and not returned yet, in the consumer's queue.
    queued: i64,
}

/// Each partition's end and position from librdkafka's statistics, shared with the
/// statistics callback.
#[derive(Default)]
pub struct LagContext {
    /// (topic, partition) → the last report.
    reports: Mutex<HashMap<(String, i32), Reported>>,
    /// Bumped at every report, so the source can tell a new one cheaply.
    generation: AtomicU64,
    read_committed: bool,
}

impl ClientContext for LagContext {
    fn stats(&self, stats: Statistics) {
        let Ok(mut reports) = self.reports.lock() else {
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
                reports.insert(
                    (topic.clone(), p),
                    Reported {
                        end,
                        app_offset: ps.app_offset,
                        next_offset: ps.next_offset,
                        queued: ps.fetchq_cnt,
                    },
                );
            }
        }
        self.generation.fetch_add(1, Ordering::Release);
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
    /// Parallel to `assigned`: paused for watermark alignment.
    paused: Vec<bool>,
    /// Parallel to `assigned`: has returned a record since the source opened. Only those are
    /// paused (librdkafka resumes others from `auto.offset.reset`, not their position).
    returned: Vec<bool>,
}

/// One assigned partition's backlog, as [`KafkaSource::backlogs`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionBacklog {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Records between the position and the partition's end, when known.
    pub lag: Option<i64>,
    pub backlog: Backlog,
    pub paused: bool,
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
            .set("statistics.interval.ms", STATS_INTERVAL_MS.to_string())
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
            paused: vec![false; assigned.len()],
            returned: vec![false; assigned.len()],
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
            if let Some(i) = self
                .assigned
                .iter()
                .position(|(t, p)| *p == rec.meta.partition && Arc::ptr_eq(t, &rec.meta.topic))
            {
                self.returned[i] = true;
            }
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
                    max_event_time_ms: None,
                })
            })
            .collect()
    }

    /// Changes whenever librdkafka has reported on the partitions again.
    pub fn report_generation(&self) -> u64 {
        self.consumer.context().generation.load(Ordering::Acquire)
    }

    /// Every assigned partition's lag and backlog, from the last statistics report and the
    /// records returned since. A paused partition has records waiting.
    pub fn backlogs(&self) -> Vec<PartitionBacklog> {
        let reports = match self.consumer.context().reports.lock() {
            Ok(r) => r.clone(),
            Err(_) => HashMap::new(),
        };
        self.assigned
            .iter()
            .enumerate()
            .map(|(i, (t, p))| {
                let report = reports.get(&(t.to_string(), *p)).copied();
                let position = self.positions.get(&(t.clone(), *p)).copied();
                let (lag, backlog) = backlog_of(report, position);
                let paused = self.paused[i];
                PartitionBacklog {
                    topic: t.clone(),
                    partition: *p,
                    lag,
                    backlog: if paused { Backlog::Waiting } else { backlog },
                    paused,
                }
            })
            .collect()
    }

    /// Pauses the assigned partitions `pause(topic, partition)` says and resumes the others;
    /// returns how many were paused and resumed. A partition that has returned no record yet
    /// is not paused.
    pub fn set_paused(
        &mut self,
        pause: impl Fn(&str, i32) -> bool,
    ) -> Result<(usize, usize), SourceError> {
        let mut to_pause = TopicPartitionList::new();
        let mut to_resume = TopicPartitionList::new();
        for (i, (t, p)) in self.assigned.iter().enumerate() {
            let want = self.returned[i] && pause(t, *p);
            if want == self.paused[i] {
                continue;
            }
            if want {
                to_pause.add_partition(t, *p);
            } else {
                to_resume.add_partition(t, *p);
            }
            self.paused[i] = want;
        }
        if to_pause.count() > 0 {
            self.consumer.pause(&to_pause)?;
        }
        if to_resume.count() > 0 {
            self.consumer.resume(&to_resume)?;
        }
        Ok((to_pause.count(), to_resume.count()))
    }

    /// Whether `(topic, partition)` is assigned and paused.
    pub fn is_paused(&self, topic: &str, partition: i32) -> bool {
        self.assigned
            .iter()
            .zip(&self.paused)
            .any(|((t, p), paused)| *paused && *p == partition && **t == *topic)
    }

    /// How many assigned partitions are paused.
    pub fn paused_count(&self) -> usize {
        self.paused.iter().filter(|p| **p).count()
    }
}

/// A partition's lag and backlog from its last report and the position of the records
/// returned since (`None` before the first).
fn backlog_of(report: Option<Reported>, position: Option<i64>) -> (Option<i64>, Backlog) {
    let Some(r) = report.filter(|r| r.end >= 0) else {
        return (None, Backlog::Unknown);
    };
    let app = (r.app_offset >= 0).then_some(r.app_offset);
    match position.max(app) {
        Some(pos) => {
            let lag = (r.end - pos).max(0);
            let backlog = if lag == 0 {
                Backlog::CaughtUp
            } else {
                Backlog::Waiting
            };
            (Some(lag), backlog)
        }
        // Nothing returned yet.
        None if r.end == 0 => (Some(0), Backlog::CaughtUp),
        None if r.next_offset < 0 => (None, Backlog::Unknown),
        None if r.next_offset < r.end => (Some(r.end - r.next_offset), Backlog::Waiting),
        // Fetched to the end: caught up once nothing fetched is still queued.
        None if r.queued > 0 => (None, Backlog::Waiting),
        None => (Some(0), Backlog::CaughtUp),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(end: i64, app_offset: i64, next_offset: i64, queued: i64) -> Option<Reported> {
        Some(Reported {
            end,
            app_offset,
            next_offset,
            queued,
        })
    }

    #[test]
    fn backlog_from_reports_and_positions() {
        use Backlog::*;
        // No report, or no fetch response yet.
        assert_eq!(backlog_of(None, Some(5)), (None, Unknown));
        assert_eq!(
            backlog_of(report(-1, -1001, 0, 0), Some(5)),
            (None, Unknown)
        );
        // Records returned: the position against the end.
        assert_eq!(
            backlog_of(report(100, -1001, 100, 0), Some(40)),
            (Some(60), Waiting)
        );
        assert_eq!(
            backlog_of(report(100, 40, 100, 0), Some(100)),
            (Some(0), CaughtUp)
        );
        // librdkafka's position passed a transaction marker the records did not show.
        assert_eq!(
            backlog_of(report(101, 101, 101, 0), Some(100)),
            (Some(0), CaughtUp)
        );
        // Nothing returned yet: an empty partition, one being fetched, one whose records
        // are fetched but still queued, one whose start is not resolved.
        assert_eq!(
            backlog_of(report(0, -1001, -1001, 0), None),
            (Some(0), CaughtUp)
        );
        assert_eq!(
            backlog_of(report(100, -1001, 20, 0), None),
            (Some(80), Waiting)
        );
        assert_eq!(
            backlog_of(report(100, -1001, 100, 7), None),
            (None, Waiting)
        );
        assert_eq!(
            backlog_of(report(100, -1001, 100, 0), None),
            (Some(0), CaughtUp)
        );
        assert_eq!(
            backlog_of(report(100, -1001, -1001, 0), None),
            (None, Unknown)
        );
    }
}
