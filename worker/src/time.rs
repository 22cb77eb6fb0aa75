//! Event time: timestamps taken from records, and watermarks per source partition.
//!
//! - [`TimestampExtractor`] reads a record's event time from a field (or the Kafka record
//!   timestamp, `@timestamp`) in the configured format, rejecting missing, unparseable,
//!   negative and too-far-in-the-future timestamps. With processing time it returns the
//!   wall clock it is given.
//! - [`WatermarkTracker`] is Flink's bounded out-of-orderness strategy over the partitions a
//!   source reads: each partition's watermark is the highest event time it has seen minus
//!   `maxOutOfOrderness` minus 1 ms, and the source's watermark is the minimum over its
//!   partitions, leaving out those idle for longer than `idleTimeout`. It never goes back.
//!
//! Both are pure: the caller passes the processing time (`now_ms`, epoch ms) in.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::DateTime;
use rivulet_api::spec::{TimeSpec, TimestampFormat};
use serde_json::Value;

use crate::record::{as_number, FieldPath, Number, Record};
use crate::transform::preview;

/// Why a record has no usable event time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Missing, unparseable or negative; the reason names the field.
    #[error("{0}")]
    Bad(String),
    /// Further ahead of the wall clock than `maxFutureSkew` allows.
    #[error("timestamp {timestamp} is more than {max_skew_ms} ms ahead of the wall clock")]
    TooFarInFuture { timestamp: i64, max_skew_ms: i64 },
}

/// Reads records' event time (or returns processing time).
#[derive(Clone, Debug)]
pub struct TimestampExtractor {
    kind: ExtractorKind,
}

#[derive(Clone, Debug)]
enum ExtractorKind {
    Event {
        field: String,
        path: FieldPath,
        format: TimestampFormat,
        max_future_skew_ms: i64,
    },
    Processing,
}

impl TimestampExtractor {
    pub fn new(spec: &TimeSpec) -> TimestampExtractor {
        let kind = match spec {
            TimeSpec::Event {
                field,
                format,
                max_future_skew,
                ..
            } => ExtractorKind::Event {
                field: field.clone(),
                path: FieldPath::parse(field),
                format: *format,
                max_future_skew_ms: max_future_skew.as_millis_i64(),
            },
            TimeSpec::Processing => ExtractorKind::Processing,
        };
        TimestampExtractor { kind }
    }

    /// The field event time is read from (`None` for processing time).
    pub fn field_read(&self) -> Option<&FieldPath> {
        match &self.kind {
            ExtractorKind::Event { path, .. } => Some(path),
            ExtractorKind::Processing => None,
        }
    }

    /// Whether timestamps come from the records (event time) rather than the wall clock.
    pub fn is_event_time(&self) -> bool {
        matches!(self.kind, ExtractorKind::Event { .. })
    }

    /// The record's timestamp in epoch ms. `now_ms` is the wall clock: it is the result for
    /// processing time, and the reference for the future-skew check for event time.
    pub fn extract(&self, r: &Record, now_ms: i64) -> Result<i64, TimeError> {
        let ExtractorKind::Event {
            field,
            path,
            format,
            max_future_skew_ms,
        } = &self.kind
        else {
            return Ok(now_ms);
        };
        let ts = if *path == FieldPath::Timestamp {
            // Kafka timestamps are always epoch ms, whatever the configured format; Kafka
            // uses -1 for "no timestamp".
            match r.meta.timestamp_ms {
                Some(ts) if ts >= 0 => ts,
                _ => return Err(TimeError::Bad("record has no Kafka timestamp".to_string())),
            }
        } else {
            let value = r
                .get(path)
                .ok_or_else(|| TimeError::Bad(format!("field `{field}` is missing")))?;
            parse(&value, *format)
                .map_err(|reason| TimeError::Bad(format!("field `{field}`: {reason}")))?
        };
        if ts < 0 {
            return Err(TimeError::Bad(format!(
                "field `{field}`: timestamp {ts} is before 1970-01-01"
            )));
        }
        if ts > now_ms.saturating_add(*max_future_skew_ms) {
            return Err(TimeError::TooFarInFuture {
                timestamp: ts,
                max_skew_ms: *max_future_skew_ms,
            });
        }
        Ok(ts)
    }
}

/// Parses a timestamp value into epoch ms; the error is the reason, without the field name.
fn parse(value: &Value, format: TimestampFormat) -> Result<i64, String> {
    match format {
        TimestampFormat::Auto => match value {
            Value::Number(_) => epoch(value, 1),
            Value::String(s) => match as_number(value) {
                Some(_) => epoch(value, 1),
                None => rfc3339(s),
            },
            other => Err(format!(
                "expected epoch milliseconds or an RFC 3339 time, got {}",
                preview(other)
            )),
        },
        TimestampFormat::EpochMillis => epoch(value, 1),
        TimestampFormat::EpochSeconds => epoch(value, 1000),
        TimestampFormat::Rfc3339 => match value {
            Value::String(s) => rfc3339(s),
            other => Err(format!("expected an RFC 3339 time, got {}", preview(other))),
        },
    }
}

/// A number (or numeric string) of `unit_ms`-millisecond units since the epoch.
fn epoch(value: &Value, unit_ms: i64) -> Result<i64, String> {
    let unit_name = if unit_ms == 1 {
        "epoch milliseconds"
    } else {
        "epoch seconds"
    };
    let out_of_range = || format!("{} is out of range for {unit_name}", preview(value));
    match as_number(value) {
        Some(Number::Int(n)) => n.checked_mul(unit_ms).ok_or_else(out_of_range),
        Some(Number::Float(f)) => {
            let ms = f * unit_ms as f64;
            // Seconds round to the nearest ms (1.001 s is 1000.9999… ms in binary floating
            // point); fractional milliseconds are truncated.
            let ms = if unit_ms == 1 { ms.floor() } else { ms.round() };
            // `i64::MAX as f64` rounds up to 2^63, so the upper bound is exclusive.
            if ms.is_finite() && ms >= i64::MIN as f64 && ms < i64::MAX as f64 {
                Ok(ms as i64)
            } else {
                Err(out_of_range())
            }
        }
        None => Err(format!("expected {unit_name}, got {}", preview(value))),
    }
}

fn rfc3339(s: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            format!(
                "expected an RFC 3339 time, got {} ({e})",
                preview(&Value::String(s.to_string()))
            )
        })
}

/// Bounded out-of-orderness watermarks over the partitions one source reads.
///
/// `observe` and `current` are called per record and are cheap: the minimum over partitions
/// is cached and recomputed only when the partition holding it advances or the set of
/// active partitions changes; idleness is checked only when the earliest idle deadline
/// passes.
#[derive(Clone, Debug)]
pub struct WatermarkTracker {
    max_out_of_orderness_ms: i64,
    idle_timeout_ms: Option<i64>,
    /// topic → partition → index into `partitions`.
    index: HashMap<Arc<str>, HashMap<i32, usize>>,
    partitions: Vec<PartitionState>,
    /// The floor every partition starts from after [`WatermarkTracker::restore`], as a max
    /// event time.
    restored_max_ts: Option<i64>,
    /// The highest watermark returned so far.
    emitted: Option<i64>,
    /// Cached min of `max_ts` over active partitions: `None` = some active partition has
    /// seen nothing, or no partition is active (see `active`).
    cached_min: Option<i64>,
    /// Number of active partitions when `cached_min` was computed.
    active: usize,
    /// `cached_min`/`active` must be recomputed.
    dirty: bool,
    /// No active partition can turn idle before this processing time.
    next_idle_check: i64,
    /// Index of the partition `observe` saw last.
    last_hit: Option<usize>,
}

#[derive(Clone, Debug)]
struct PartitionState {
    topic: Arc<str>,
    partition: i32,
    /// Highest event time seen (or the restored floor).
    max_ts: Option<i64>,
    /// Processing time of the last record, or of the assignment.
    last_active_ms: i64,
    idle: bool,
}

impl WatermarkTracker {
    /// `idle_timeout_ms`: partitions with no record for this long stop holding the watermark
    /// back until their next record. `None` (or a negative value) disables idleness.
    pub fn new(max_out_of_orderness_ms: i64, idle_timeout_ms: Option<i64>) -> WatermarkTracker {
        WatermarkTracker {
            max_out_of_orderness_ms: max_out_of_orderness_ms.max(0),
            idle_timeout_ms: idle_timeout_ms.filter(|t| *t >= 0),
            index: HashMap::new(),
            partitions: Vec::new(),
            restored_max_ts: None,
            emitted: None,
            cached_min: None,
            active: 0,
            dirty: true,
            next_idle_check: i64::MAX,
            last_hit: None,
        }
    }

    /// Sets the partitions this source reads. Partitions already assigned keep their state;
    /// new ones start with nothing seen (or the restored floor) and count as active from
    /// `now_ms`; partitions not listed are dropped.
    pub fn assign(&mut self, partitions: &[(Arc<str>, i32)], now_ms: i64) {
        let mut old: HashMap<(Arc<str>, i32), PartitionState> = self
            .partitions
            .drain(..)
            .map(|p| ((p.topic.clone(), p.partition), p))
            .collect();
        self.index.clear();
        self.last_hit = None;
        for (topic, partition) in partitions {
            let key = (topic.clone(), *partition);
            if self
                .index
                .get(&**topic)
                .is_some_and(|m| m.contains_key(partition))
            {
                continue; // listed twice
            }
            let state = old.remove(&key).unwrap_or_else(|| PartitionState {
                topic: topic.clone(),
                partition: *partition,
                max_ts: self.restored_max_ts,
                last_active_ms: now_ms,
                idle: false,
            });
            self.insert(state);
        }
        self.dirty = true;
        self.next_idle_check = i64::MIN;
    }

    fn insert(&mut self, state: PartitionState) -> usize {
        let i = self.partitions.len();
        self.index
            .entry(state.topic.clone())
            .or_default()
            .insert(state.partition, i);
        self.partitions.push(state);
        i
    }

    /// Records an event time read from `(topic, partition)` at processing time `now_ms`.
    /// A partition that was not assigned is added.
    pub fn observe(&mut self, topic: &str, partition: i32, ts: i64, now_ms: i64) {
        // Records arrive in runs per partition: try the last one before hashing.
        let last = self.last_hit.filter(|&i| {
            self.partitions
                .get(i)
                .is_some_and(|p| p.partition == partition && *p.topic == *topic)
        });
        let found = last.or_else(|| self.index.get(topic)?.get(&partition).copied());
        let i = match found {
            Some(i) => i,
            None => {
                let i = self.insert(PartitionState {
                    topic: Arc::from(topic),
                    partition,
                    max_ts: self.restored_max_ts,
                    last_active_ms: now_ms,
                    idle: false,
                });
                self.dirty = true;
                i
            }
        };
        self.last_hit = Some(i);
        let p = &mut self.partitions[i];
        p.last_active_ms = p.last_active_ms.max(now_ms);
        if p.idle {
            p.idle = false;
            self.dirty = true;
        }
        if let Some(timeout) = self.idle_timeout_ms {
            self.next_idle_check = self
                .next_idle_check
                .min(p.last_active_ms.saturating_add(timeout));
        }
        match p.max_ts {
            Some(max) if ts <= max => {}
            old => {
                p.max_ts = Some(ts);
                // The cached min only moves when the partition holding it (or one that had
                // seen nothing) advances.
                if old.is_none() || old == self.cached_min {
                    self.dirty = true;
                }
            }
        }
    }

    /// The source's watermark at processing time `now_ms`: `None` until every active
    /// partition has seen a record. Never decreases.
    pub fn current(&mut self, now_ms: i64) -> Option<i64> {
        self.check_idle(now_ms);
        if self.dirty {
            self.recompute();
        }
        if self.active > 0 {
            if let Some(min) = self.cached_min {
                let wm = min
                    .saturating_sub(self.max_out_of_orderness_ms)
                    .saturating_sub(1);
                if self.emitted.is_none_or(|e| wm > e) {
                    self.emitted = Some(wm);
                }
            }
        }
        self.emitted
    }

    /// Whether no partition holds the watermark back: none assigned, or all idle. The
    /// runtime can then mark this source idle downstream (as Flink does).
    pub fn is_idle(&mut self, now_ms: i64) -> bool {
        self.check_idle(now_ms);
        if self.dirty {
            self.recompute();
        }
        self.active == 0
    }

    /// After a restore from a checkpoint whose watermark was `watermark`: every partition
    /// (assigned now or later) starts as if it had seen `watermark + maxOutOfOrderness + 1`,
    /// so the watermark never drops below the restored one.
    pub fn restore(&mut self, watermark: i64) {
        let floor = watermark
            .saturating_add(self.max_out_of_orderness_ms)
            .saturating_add(1);
        self.restored_max_ts = Some(self.restored_max_ts.map_or(floor, |f| f.max(floor)));
        for p in &mut self.partitions {
            p.max_ts = Some(p.max_ts.map_or(floor, |m| m.max(floor)));
        }
        if self.emitted.is_none_or(|e| watermark > e) {
            self.emitted = Some(watermark);
        }
        self.dirty = true;
    }

    /// Marks partitions idle whose last record is older than the idle timeout.
    fn check_idle(&mut self, now_ms: i64) {
        let Some(timeout) = self.idle_timeout_ms else {
            return;
        };
        if now_ms < self.next_idle_check {
            return;
        }
        let mut next = i64::MAX;
        for p in &mut self.partitions {
            if p.idle {
                continue;
            }
            let deadline = p.last_active_ms.saturating_add(timeout);
            if now_ms >= deadline {
                p.idle = true;
                self.dirty = true;
            } else {
                next = next.min(deadline);
            }
        }
        self.next_idle_check = next;
    }

    fn recompute(&mut self) {
        let mut active = 0;
        let mut min: Option<i64> = None;
        let mut unseen = false;
        for p in self.partitions.iter().filter(|p| !p.idle) {
            active += 1;
            match p.max_ts {
                Some(ts) => min = Some(min.map_or(ts, |m| m.min(ts))),
                None => unseen = true,
            }
        }
        self.active = active;
        self.cached_min = if unseen { None } else { min };
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use rivulet_api::Duration;
    use serde_json::json;

    use super::*;
    use crate::record::RecordMeta;

    const NOW: i64 = 1_800_000_000_000;

    fn rec(v: Value) -> Record {
        Record {
            value: v,
            meta: RecordMeta {
                topic: Arc::from("in"),
                partition: 0,
                offset: 0,
                timestamp_ms: Some(1_234),
                key: None,
            },
        }
    }

    fn event(field: &str, format: TimestampFormat) -> TimestampExtractor {
        TimestampExtractor::new(&TimeSpec::Event {
            field: field.to_string(),
            format,
            max_out_of_orderness: Duration::ZERO,
            idle_timeout: None,
            max_future_skew: Duration::from_secs(3600),
        })
    }

    fn bad(r: Result<i64, TimeError>) -> String {
        match r {
            Err(TimeError::Bad(reason)) => reason,
            other => panic!("expected Bad, got {other:?}"),
        }
    }

    #[test]
    fn auto_format() {
        let x = event("ts", TimestampFormat::Auto);
        assert_eq!(x.extract(&rec(json!({"ts": 1500})), NOW), Ok(1500));
        assert_eq!(x.extract(&rec(json!({"ts": 1500.7})), NOW), Ok(1500));
        assert_eq!(x.extract(&rec(json!({"ts": "1500"})), NOW), Ok(1500));
        assert_eq!(
            x.extract(&rec(json!({"ts": "2024-01-02T03:04:05.678Z"})), NOW),
            Ok(1_704_164_645_678)
        );
        assert_eq!(
            x.extract(&rec(json!({"ts": "2024-01-02T04:04:05+01:00"})), NOW),
            Ok(1_704_164_645_000)
        );
        let reason = bad(x.extract(&rec(json!({"ts": "yesterday"})), NOW));
        assert!(
            reason.starts_with("field `ts`: expected an RFC 3339 time, got \"yesterday\""),
            "{reason}"
        );
        let reason = bad(x.extract(&rec(json!({"ts": true})), NOW));
        assert_eq!(
            reason,
            "field `ts`: expected epoch milliseconds or an RFC 3339 time, got true"
        );
    }

    #[test]
    fn epoch_formats() {
        let ms = event("t", TimestampFormat::EpochMillis);
        assert_eq!(ms.extract(&rec(json!({"t": 42})), NOW), Ok(42));
        assert_eq!(ms.extract(&rec(json!({"t": " 42 "})), NOW), Ok(42));
        let reason = bad(ms.extract(&rec(json!({"t": "2024-01-01T00:00:00Z"})), NOW));
        assert!(reason.contains("expected epoch milliseconds"), "{reason}");
        let s = event("t", TimestampFormat::EpochSeconds);
        assert_eq!(
            s.extract(&rec(json!({"t": 1_700_000_000})), NOW),
            Ok(1_700_000_000_000)
        );
        assert_eq!(s.extract(&rec(json!({"t": 1.001})), NOW), Ok(1001));
        assert_eq!(s.extract(&rec(json!({"t": "1.5"})), NOW), Ok(1500));
        let reason = bad(s.extract(&rec(json!({"t": i64::MAX})), NOW));
        assert!(reason.contains("out of range"), "{reason}");
        let reason = bad(s.extract(&rec(json!({"t": 1e300})), NOW));
        assert!(reason.contains("out of range"), "{reason}");
    }

    #[test]
    fn rfc3339_format() {
        let x = event("when", TimestampFormat::Rfc3339);
        assert_eq!(
            x.extract(&rec(json!({"when": "1970-01-01T00:00:01Z"})), NOW),
            Ok(1000)
        );
        let reason = bad(x.extract(&rec(json!({"when": 1000})), NOW));
        assert_eq!(reason, "field `when`: expected an RFC 3339 time, got 1000");
        let reason = bad(x.extract(&rec(json!({"when": "2024-13-01T00:00:00Z"})), NOW));
        assert!(
            reason.starts_with("field `when`: expected an RFC 3339 time"),
            "{reason}"
        );
    }

    #[test]
    fn kafka_timestamp_and_missing_or_negative() {
        // `@timestamp` is epoch ms whatever the format says.
        let x = event("@timestamp", TimestampFormat::EpochSeconds);
        assert_eq!(x.extract(&rec(json!({})), NOW), Ok(1_234));
        let mut r = rec(json!({}));
        r.meta.timestamp_ms = None;
        assert_eq!(bad(x.extract(&r, NOW)), "record has no Kafka timestamp");
        r.meta.timestamp_ms = Some(-1);
        assert_eq!(bad(x.extract(&r, NOW)), "record has no Kafka timestamp");

        let x = event("a.ts", TimestampFormat::Auto);
        assert_eq!(
            bad(x.extract(&rec(json!({"a": {}})), NOW)),
            "field `a.ts` is missing"
        );
        assert_eq!(
            bad(x.extract(&rec(json!({"a": {"ts": null}})), NOW)),
            "field `a.ts` is missing"
        );
        assert_eq!(x.extract(&rec(json!({"a": {"ts": 7}})), NOW), Ok(7));
        let reason = bad(x.extract(&rec(json!({"a": {"ts": -5}})), NOW));
        assert_eq!(reason, "field `a.ts`: timestamp -5 is before 1970-01-01");
        let reason = bad(x.extract(&rec(json!({"a": {"ts": "1969-12-31T23:59:59Z"}})), NOW));
        assert!(reason.contains("before 1970"), "{reason}");
    }

    #[test]
    fn future_skew_is_rejected() {
        let x = event("ts", TimestampFormat::EpochMillis);
        let limit = 3_600_000;
        assert_eq!(
            x.extract(&rec(json!({"ts": NOW + limit})), NOW),
            Ok(NOW + limit)
        );
        assert_eq!(
            x.extract(&rec(json!({"ts": NOW + limit + 1})), NOW),
            Err(TimeError::TooFarInFuture {
                timestamp: NOW + limit + 1,
                max_skew_ms: limit
            })
        );
    }

    #[test]
    fn processing_time_is_the_clock() {
        let x = TimestampExtractor::new(&TimeSpec::Processing);
        assert!(!x.is_event_time());
        assert_eq!(x.extract(&rec(json!({"ts": 1})), NOW), Ok(NOW));
    }

    fn parts(ps: &[(&str, i32)]) -> Vec<(Arc<str>, i32)> {
        ps.iter().map(|(t, p)| (Arc::from(*t), *p)).collect()
    }

    #[test]
    fn watermark_is_min_over_partitions_minus_bound() {
        let mut w = WatermarkTracker::new(100, None);
        w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
        assert_eq!(w.current(0), None);
        w.observe("in", 0, 1_000, 0);
        // Partition 1 has seen nothing: it holds the watermark back.
        assert_eq!(w.current(10), None);
        w.observe("in", 1, 500, 0);
        assert_eq!(w.current(10), Some(399));
        w.observe("in", 1, 2_000, 0);
        assert_eq!(w.current(10), Some(899));
        // Out-of-order records do not move anything back.
        w.observe("in", 0, 10, 0);
        assert_eq!(w.current(10), Some(899));
        w.observe("in", 0, 3_000, 0);
        assert_eq!(w.current(10), Some(1_899));
        assert!(!w.is_idle(10));
    }

    #[test]
    fn idle_partitions_are_excluded_and_come_back() {
        let mut w = WatermarkTracker::new(0, Some(1_000));
        w.assign(&parts(&[("a", 0), ("a", 1), ("b", 0)]), 0);
        w.observe("a", 0, 5_000, 100);
        w.observe("a", 1, 6_000, 100);
        // ("b", 0) has seen nothing and is not idle yet: it holds the watermark back.
        assert_eq!(w.current(500), None);
        // After the timeout it no longer does.
        assert_eq!(w.current(1_000), Some(4_999));
        // ("a", 1) keeps receiving; ("a", 0) goes quiet and turns idle at 1_100.
        w.observe("a", 1, 8_000, 1_050);
        assert_eq!(w.current(1_050), Some(4_999));
        assert_eq!(w.current(1_100), Some(7_999));
        // ("a", 0) comes back behind: it holds the watermark again, which does not regress.
        w.observe("a", 0, 7_000, 1_200);
        assert_eq!(w.current(1_200), Some(7_999));
        w.observe("a", 0, 9_000, 1_300);
        assert_eq!(w.current(1_300), Some(7_999));
        w.observe("a", 1, 9_500, 1_300);
        assert_eq!(w.current(1_300), Some(8_999));
        // Everyone idle: the watermark stays where it was.
        assert!(!w.is_idle(2_000));
        assert!(w.is_idle(2_300));
        assert_eq!(w.current(10_000), Some(8_999));
        // A record reactivates its partition.
        w.observe("b", 0, 20_000, 10_000);
        assert!(!w.is_idle(10_000));
        assert_eq!(w.current(10_000), Some(19_999));
    }

    #[test]
    fn restore_sets_a_floor() {
        let mut w = WatermarkTracker::new(50, None);
        w.restore(10_000);
        assert_eq!(w.current(0), Some(10_000));
        w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
        assert_eq!(w.current(0), Some(10_000));
        // Old records after restore do not drag it back.
        w.observe("in", 0, 5_000, 0);
        assert_eq!(w.current(0), Some(10_000));
        w.observe("in", 0, 20_000, 0);
        assert_eq!(w.current(0), Some(10_000));
        w.observe("in", 1, 30_000, 0);
        assert_eq!(w.current(0), Some(19_949));

        // Restore after assignment works too.
        let mut w = WatermarkTracker::new(0, None);
        w.assign(&parts(&[("in", 0)]), 0);
        w.restore(700);
        assert_eq!(w.current(0), Some(700));
        w.observe("in", 0, 800, 0);
        assert_eq!(w.current(0), Some(799));
    }

    #[test]
    fn reassignment_keeps_and_drops_partitions() {
        let mut w = WatermarkTracker::new(0, None);
        w.assign(&parts(&[("in", 0), ("in", 1)]), 0);
        w.observe("in", 0, 100, 0);
        w.observe("in", 1, 50, 0);
        assert_eq!(w.current(0), Some(49));
        w.assign(&parts(&[("in", 0), ("in", 0)]), 0);
        assert_eq!(w.current(0), Some(99));
        // An unassigned partition that shows up is tracked.
        w.observe("other", 3, 500, 0);
        assert_eq!(w.current(0), Some(99));
        w.observe("in", 0, 1_000, 0);
        assert_eq!(w.current(0), Some(499));
        // No partitions: idle, and the watermark stays.
        w.assign(&[], 0);
        assert!(w.is_idle(0));
        assert_eq!(w.current(0), Some(499));
    }

    #[test]
    fn cached_min_matches_a_naive_computation() {
        // A deterministic pseudo-random interleaving over 5 partitions.
        let mut w = WatermarkTracker::new(7, None);
        let ps = parts(&[("t", 0), ("t", 1), ("t", 2), ("u", 0), ("u", 1)]);
        w.assign(&ps, 0);
        let mut max = [i64::MIN; 5];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut best: Option<i64> = None;
        for step in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % 5) as usize;
            let ts = step as i64 * 3 + (seed >> 8) as i64 % 200 - 100;
            w.observe(&ps[i].0, ps[i].1, ts, 0);
            max[i] = max[i].max(ts);
            let naive = if max.contains(&i64::MIN) {
                None
            } else {
                max.iter().min().map(|m| m - 8)
            };
            if let Some(n) = naive {
                best = Some(best.map_or(n, |b: i64| b.max(n)));
            }
            assert_eq!(w.current(0), best, "step {step}");
        }
    }
}
