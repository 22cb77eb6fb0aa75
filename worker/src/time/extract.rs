//! Event time read from records: a field in the configured format, or the Kafka record
//! timestamp (`@timestamp`).
//!
//! [`TimestampExtractor`] rejects missing, unparseable, negative and too-far-in-the-future
//! timestamps, with a reason that names the field. With processing time it returns the wall
//! clock it is given. It is pure: the caller passes the wall clock (`now_ms`, epoch ms) in.

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
            max_drift: Duration::from_secs(30),
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
}
