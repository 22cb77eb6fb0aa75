//! The per-record part of a job: from a Kafka record value to a keyed, timestamped input for
//! the window operator (or, for a pipeline without a window, to the record to emit).
//!
//! [`Pipeline::prepare`] runs, in order: size check → tombstone check → decode → filter →
//! project → (stateless pipelines stop here) → timestamp → key → aggregate inputs. Every
//! record ends in exactly one [`Prepared`] outcome, so each can be counted (processed,
//! filtered, or rejected) and rejected records can go to the dead-letter topic with a
//! [`Reject`] reason. Nothing here does I/O or reads a clock.

use std::fmt;

use rivulet_api::keygroup;
use rivulet_api::spec::{AggregateFn, PipelineSpec, TimeSpec};
use serde_json::Value;

use crate::format::{json_type_name, Decoder};
use crate::record::{as_number, scalar_text, FieldPath, Record, RecordMeta};
use crate::time::{TimeError, TimestampExtractor, WatermarkTracker};
use crate::transform::{preview, Filter, Projector};
use crate::window::{AggInput, KeyedInput};

/// A pipeline spec that cannot run. `field` is the path of the offending setting in the
/// `StreamJob` spec (`spec.pipeline.filter[0].value`, `spec.maxParallelism`, …).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a record goes to the dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The value is larger than `limits.maxRecordBytes`.
    Oversized { size: usize, limit: u32 },
    /// Undecodable, a tombstone, or a field of the wrong type.
    Malformed(String),
    /// A key field is missing or null; holds the key field's path.
    MissingKey(String),
    /// The event time is missing, unparseable or negative.
    BadTimestamp(String),
    /// The event time is further ahead of the wall clock than `maxFutureSkew`.
    FutureTimestamp { timestamp: i64, limit_ms: i64 },
    /// Too late for any window still open (produced by the runtime from the window operator).
    Late { timestamp: i64, watermark: i64 },
}

/// The counter a rejected record is added to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectCounter {
    Malformed,
    Keyless,
    Late,
}

impl Reject {
    /// A stable, machine-readable name (used in the dead-letter record's headers and in
    /// metric labels).
    pub fn kind(&self) -> &'static str {
        match self {
            Reject::Oversized { .. } => "oversized",
            Reject::Malformed(_) => "malformed",
            Reject::MissingKey(_) => "missing-key",
            Reject::BadTimestamp(_) => "bad-timestamp",
            Reject::FutureTimestamp { .. } => "future-timestamp",
            Reject::Late { .. } => "late",
        }
    }

    /// Oversized records and bad or future timestamps count as malformed.
    pub fn counter(&self) -> RejectCounter {
        match self {
            Reject::Oversized { .. }
            | Reject::Malformed(_)
            | Reject::BadTimestamp(_)
            | Reject::FutureTimestamp { .. } => RejectCounter::Malformed,
            Reject::MissingKey(_) => RejectCounter::Keyless,
            Reject::Late { .. } => RejectCounter::Late,
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Oversized { size, limit } => write!(
                f,
                "record value is {size} bytes, over the limit of {limit} bytes \
                 (limits.maxRecordBytes)"
            ),
            Reject::Malformed(reason) => write!(f, "malformed record: {reason}"),
            Reject::MissingKey(field) => write!(f, "key field `{field}` is missing or null"),
            Reject::BadTimestamp(reason) => write!(f, "bad timestamp: {reason}"),
            Reject::FutureTimestamp {
                timestamp,
                limit_ms,
            } => write!(
                f,
                "timestamp {timestamp} ({}) is more than {} ahead of the wall clock \
                 (time.maxFutureSkew)",
                rfc3339_or_number(*timestamp),
                human_ms(*limit_ms)
            ),
            Reject::Late {
                timestamp,
                watermark,
            } => write!(
                f,
                "late record: timestamp {timestamp} ({}) is behind the watermark {watermark} \
                 ({}) beyond the allowed lateness",
                rfc3339_or_number(*timestamp),
                rfc3339_or_number(*watermark)
            ),
        }
    }
}

fn rfc3339_or_number(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms"))
}

fn human_ms(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// What became of one input record.
#[derive(Clone, Debug, PartialEq)]
pub enum Prepared {
    /// Ready for the window operator. `partition_ts` is the timestamp to feed the source
    /// partition's watermark (the same as `input.timestamp`).
    Keyed {
        input: KeyedInput,
        partition_ts: i64,
    },
    /// A pipeline without a window: the (projected) record to emit as it is.
    Stateless(Record),
    /// Dropped by the filter.
    Filtered,
    /// Goes to the dead-letter topic.
    Rejected(Reject),
}

/// One aggregate's input extraction.
#[derive(Clone, Debug)]
enum AggPlan {
    Nothing,
    Number { field: String, path: FieldPath },
    Value { field: String, path: FieldPath },
}

/// A compiled [`PipelineSpec`]: the record-at-a-time stages of a job.
#[derive(Clone, Debug)]
pub struct Pipeline {
    max_record_bytes: u32,
    max_parallelism: u32,
    decoder: Decoder,
    filter: Filter,
    projector: Projector,
    timestamps: TimestampExtractor,
    windowed: bool,
    key: Vec<(String, FieldPath)>,
    /// `"name":` of each key field, JSON-escaped, and the order the key's JSON lists them in.
    key_json_names: Vec<String>,
    key_json_order: Vec<usize>,
    aggregates: Vec<AggPlan>,
    max_out_of_orderness_ms: i64,
    idle_timeout_ms: Option<i64>,
    max_drift_ms: Option<i64>,
}

impl Pipeline {
    /// Compiles `spec` for a job with `max_parallelism` key groups.
    pub fn new(spec: &PipelineSpec, max_parallelism: u32) -> Result<Pipeline, SpecError> {
        if max_parallelism == 0 {
            return Err(SpecError::new(
                "spec.maxParallelism",
                "must be at least 1 (it is the number of key groups)",
            ));
        }
        let aggregates = spec
            .aggregates
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let field = match (&a.field, a.function.needs_field()) {
                    (_, false) => return Ok(AggPlan::Nothing),
                    (Some(f), true) => f.clone(),
                    (None, true) => {
                        return Err(SpecError::new(
                            format!("spec.pipeline.aggregates[{i}].field"),
                            format!("`{}` needs a field", a.function.name()),
                        ))
                    }
                };
                let path = FieldPath::parse(&field);
                Ok(match a.function {
                    AggregateFn::Count => AggPlan::Nothing,
                    AggregateFn::Sum | AggregateFn::Min | AggregateFn::Max | AggregateFn::Avg => {
                        AggPlan::Number { field, path }
                    }
                    AggregateFn::First | AggregateFn::Last | AggregateFn::DistinctCount => {
                        AggPlan::Value { field, path }
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (max_out_of_orderness_ms, idle_timeout_ms, max_drift_ms) = match &spec.time {
            TimeSpec::Event {
                max_out_of_orderness,
                idle_timeout,
                max_drift,
                ..
            } => (
                max_out_of_orderness.as_millis_i64(),
                idle_timeout.map(|d| d.as_millis_i64()),
                Some(max_drift.as_millis_i64()),
            ),
            TimeSpec::Processing => (0, None, None),
        };
        let mut pipeline = Pipeline {
            max_record_bytes: spec.limits.max_record_bytes,
            max_parallelism,
            decoder: Decoder::new(&spec.format)?,
            filter: Filter::new(&spec.filter)?,
            projector: Projector::new(&spec.project)?,
            timestamps: TimestampExtractor::new(&spec.time),
            windowed: spec.window.is_some(),
            key: spec
                .key
                .iter()
                .map(|k| (k.clone(), FieldPath::parse(k)))
                .collect(),
            key_json_names: spec
                .key
                .iter()
                .map(|k| format!("{}:", Value::String(k.clone())))
                .collect(),
            key_json_order: {
                let mut order: Vec<usize> = (0..spec.key.len()).collect();
                order.sort_by(|a, b| spec.key[*a].cmp(&spec.key[*b]));
                order.dedup_by(|a, b| spec.key[*a] == spec.key[*b]);
                order
            },
            aggregates,
            max_out_of_orderness_ms,
            idle_timeout_ms,
            max_drift_ms,
        };
        let selected = pipeline.fields_read();
        pipeline.decoder = pipeline.decoder.select(selected);
        Ok(pipeline)
    }

    /// The top-level fields of the decoded value that any stage reads; `None` when the whole
    /// value is needed (a stateless pipeline without a projection emits it as it is).
    fn fields_read(&self) -> Option<Vec<String>> {
        let mut paths: Vec<&FieldPath> = self.filter.fields_read();
        if self.projector.is_identity() {
            if !self.windowed {
                return None;
            }
            // Without a projection, key, time and aggregates read the decoded value itself.
            paths.extend(self.key.iter().map(|(_, p)| p));
            paths.extend(self.timestamps.field_read());
            paths.extend(self.aggregates.iter().filter_map(|a| match a {
                AggPlan::Nothing => None,
                AggPlan::Number { path, .. } | AggPlan::Value { path, .. } => Some(path),
            }));
        } else {
            // Later stages read the projected record, built from these.
            paths.extend(self.projector.fields_read());
        }
        Some(
            paths
                .into_iter()
                .filter_map(|p| match p {
                    FieldPath::Value(parts) => parts.first().cloned(),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Whether the pipeline has a window (keyed, stateful) or emits each kept record.
    pub fn is_windowed(&self) -> bool {
        self.windowed
    }

    /// Whether timestamps are event time (watermarks from a [`WatermarkTracker`]) rather than
    /// processing time (the wall clock is the watermark).
    pub fn is_event_time(&self) -> bool {
        self.timestamps.is_event_time()
    }

    /// `time.maxOutOfOrderness` in ms (0 for processing time).
    pub fn max_out_of_orderness_ms(&self) -> i64 {
        self.max_out_of_orderness_ms
    }

    /// `time.idleTimeout` in ms, if set (always `None` for processing time).
    pub fn idle_timeout_ms(&self) -> Option<i64> {
        self.idle_timeout_ms
    }

    /// `time.maxDrift` in ms: how far ahead of the slowest partition with records waiting a
    /// partition may read in event time (`None` for processing time).
    pub fn max_drift_ms(&self) -> Option<i64> {
        self.max_drift_ms
    }

    /// A watermark tracker configured for this pipeline; `None` for processing time.
    pub fn watermark_tracker(&self) -> Option<WatermarkTracker> {
        self.is_event_time()
            .then(|| WatermarkTracker::new(self.max_out_of_orderness_ms, self.idle_timeout_ms))
    }

    /// Number of key groups.
    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// Takes one Kafka record (value, metadata) through decode, filter, projection, time and
    /// key. `payload` is `None` for a tombstone. `now_ms` is the wall clock (epoch ms).
    pub fn prepare(&self, payload: Option<&[u8]>, meta: RecordMeta, now_ms: i64) -> Prepared {
        match self.try_prepare(payload, meta, now_ms) {
            Ok(p) => p,
            Err(reject) => Prepared::Rejected(reject),
        }
    }

    fn try_prepare(
        &self,
        payload: Option<&[u8]>,
        meta: RecordMeta,
        now_ms: i64,
    ) -> Result<Prepared, Reject> {
        let payload = payload.ok_or_else(|| {
            Reject::Malformed("the record has no value (a tombstone)".to_string())
        })?;
        if payload.len() > self.max_record_bytes as usize {
            return Err(Reject::Oversized {
                size: payload.len(),
                limit: self.max_record_bytes,
            });
        }
        let record = self
            .decoder
            .decode(payload, meta)
            .map_err(|e| Reject::Malformed(e.0))?;
        if !self
            .filter
            .matches(&record)
            .map_err(|e| Reject::Malformed(e.to_string()))?
        {
            return Ok(Prepared::Filtered);
        }
        let record = self.projector.project(record);
        if !self.windowed {
            return Ok(Prepared::Stateless(record));
        }
        let timestamp = self
            .timestamps
            .extract(&record, now_ms)
            .map_err(|e| match e {
                TimeError::Bad(reason) => Reject::BadTimestamp(reason),
                TimeError::TooFarInFuture {
                    timestamp,
                    max_skew_ms,
                } => Reject::FutureTimestamp {
                    timestamp,
                    limit_ms: max_skew_ms,
                },
            })?;
        let (key, key_json) = self.key_of(&record)?;
        let inputs = self
            .aggregates
            .iter()
            .map(|a| agg_input(a, &record))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prepared::Keyed {
            input: KeyedInput {
                key_group: keygroup::key_group(&key, self.max_parallelism),
                key,
                key_json,
                timestamp,
                position: record.position(),
                inputs,
            },
            partition_ts: timestamp,
        })
    }

    /// Canonical key bytes and the key as a compact JSON object, fields in name order (the
    /// order a JSON map would print them in).
    fn key_of(&self, record: &Record) -> Result<(Vec<u8>, String), Reject> {
        let mut bytes = Vec::new();
        let mut json = String::with_capacity(16 * self.key.len() + 2);
        json.push('{');
        let mut values = Vec::with_capacity(self.key.len());
        for (name, path) in &self.key {
            let value = record
                .get(path)
                .ok_or_else(|| Reject::MissingKey(name.clone()))?;
            let text = scalar_text(&value).ok_or_else(|| {
                Reject::Malformed(format!(
                    "key field `{name}` is {}; keys must be strings, numbers or booleans",
                    json_type_name(&value)
                ))
            })?;
            keygroup::push_key_part(&mut bytes, text.as_bytes());
            values.push(value);
        }
        for (i, &k) in self.key_json_order.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&self.key_json_names[k]);
            // A scalar always prints as JSON.
            json.push_str(&values[k].to_string());
        }
        json.push('}');
        Ok((bytes, json))
    }
}

fn agg_input(plan: &AggPlan, record: &Record) -> Result<AggInput, Reject> {
    match plan {
        AggPlan::Nothing => Ok(AggInput::Nothing),
        AggPlan::Number { field, path } => {
            let value = record
                .get(path)
                .ok_or_else(|| Reject::Malformed(format!("field `{field}` is missing")))?;
            as_number(&value).map(AggInput::Number).ok_or_else(|| {
                Reject::Malformed(format!(
                    "field `{field}`: expected a number, got {}",
                    preview(&value)
                ))
            })
        }
        AggPlan::Value { field, path } => record
            .get(path)
            .map(AggInput::Value)
            .ok_or_else(|| Reject::Malformed(format!("field `{field}` is missing"))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rivulet_api::spec::{AggregateSpec, CompareOp, Condition, FormatSpec, Projection};
    use serde_json::json;

    use super::*;
    use crate::record::Number;

    const NOW: i64 = 1_700_000_000_000;

    fn spec() -> PipelineSpec {
        serde_yaml::from_str(
            r#"
source: { topics: [orders] }
time: { type: event, field: ts, maxOutOfOrderness: 5s, idleTimeout: 1m, maxFutureSkew: 1h }
filter:
  - { field: status, op: ne, value: test }
key: [user.id, region]
window: { type: tumbling, size: 1m }
aggregates:
  - { name: n, fn: count }
  - { name: total, fn: sum, field: amount }
  - { name: firstItem, fn: first, field: item }
sink: { topic: out }
limits: { maxRecordBytes: 200 }
"#,
        )
        .unwrap()
    }

    fn meta() -> RecordMeta {
        RecordMeta {
            topic: Arc::from("orders"),
            partition: 4,
            offset: 17,
            timestamp_ms: Some(NOW - 10),
            key: None,
        }
    }

    fn prep(p: &Pipeline, value: Value) -> Prepared {
        p.prepare(Some(value.to_string().as_bytes()), meta(), NOW)
    }

    fn reject(p: Prepared) -> Reject {
        match p {
            Prepared::Rejected(r) => r,
            other => panic!("expected a reject, got {other:?}"),
        }
    }

    #[test]
    fn full_keyed_record() {
        let p = Pipeline::new(&spec(), 128).unwrap();
        let out = prep(
            &p,
            json!({"user": {"id": "alice"}, "region": 42, "amount": "12.5",
                   "item": {"sku": "x"}, "ts": NOW - 1_000}),
        );
        let Prepared::Keyed {
            input,
            partition_ts,
        } = out
        else {
            panic!("expected keyed, got {out:?}");
        };
        let mut key = Vec::new();
        keygroup::push_key_part(&mut key, b"alice");
        keygroup::push_key_part(&mut key, b"42");
        assert_eq!(input.key, key);
        assert_eq!(input.key_group, keygroup::key_group(&key, 128));
        assert!(input.key_group < 128);
        assert_eq!(
            serde_json::from_str::<Value>(&input.key_json).unwrap(),
            json!({"user.id": "alice", "region": 42})
        );
        assert!(!input.key_json.contains(' '));
        assert_eq!(input.timestamp, NOW - 1_000);
        assert_eq!(partition_ts, NOW - 1_000);
        assert_eq!(input.position, (4, 17));
        assert_eq!(
            input.inputs,
            vec![
                AggInput::Nothing,
                AggInput::Number(Number::Float(12.5)),
                AggInput::Value(json!({"sku": "x"})),
            ]
        );
    }

    #[test]
    fn the_decoder_keeps_only_fields_some_stage_reads() {
        let mut s = spec();
        let mut read = Pipeline::new(&s, 128).unwrap().fields_read().unwrap();
        read.sort();
        assert_eq!(read, ["amount", "item", "region", "status", "ts", "user"]);
        // Unread fields cost nothing and change nothing.
        let p = Pipeline::new(&s, 128).unwrap();
        let Prepared::Keyed { input, .. } = prep(
            &p,
            json!({"user": {"id": "a"}, "region": 1, "amount": 2, "item": 3, "ts": NOW,
                   "noise": {"deep": [1, 2, {"x": "y"}]}}),
        ) else {
            panic!("expected keyed");
        };
        assert_eq!(input.inputs[1], AggInput::Number(Number::Int(2)));

        s.project = serde_yaml::from_str("[{name: who, field: user.id}]").unwrap();
        s.key = vec!["who".into()];
        let read = Pipeline::new(&s, 128).unwrap().fields_read().unwrap();
        assert_eq!(read, ["status", "user"]);

        s.window = None;
        s.project.clear();
        assert_eq!(Pipeline::new(&s, 128).unwrap().fields_read(), None);
    }

    #[test]
    fn single_key_field_is_canonical() {
        let mut s = spec();
        s.key = vec!["user".into()];
        s.aggregates.truncate(1);
        let p = Pipeline::new(&s, 128).unwrap();
        let Prepared::Keyed { input, .. } = prep(&p, json!({"user": "alice", "ts": 5})) else {
            panic!("expected keyed");
        };
        assert_eq!(input.key, b"\x05\x00\x00\x00alice".to_vec());
        assert_eq!(
            input.key_group,
            keygroup::key_group(b"\x05\x00\x00\x00alice", 128)
        );
        assert_eq!(input.key_json, r#"{"user":"alice"}"#);
    }

    #[test]
    fn filtered_and_stateless() {
        let p = Pipeline::new(&spec(), 128).unwrap();
        assert_eq!(prep(&p, json!({"status": "test"})), Prepared::Filtered);

        let mut s = spec();
        s.window = None;
        s.project = vec![Projection::field("who", "user.id")];
        let p = Pipeline::new(&s, 128).unwrap();
        // No timestamp, key or aggregate fields needed without a window.
        match prep(&p, json!({"user": {"id": "bob"}, "status": "ok"})) {
            Prepared::Stateless(r) => {
                assert_eq!(r.value, json!({"who": "bob"}));
                assert_eq!(r.meta, meta());
            }
            other => panic!("expected stateless, got {other:?}"),
        }
        assert!(!p.is_windowed());
    }

    #[test]
    fn projection_happens_before_key_and_time() {
        let mut s = spec();
        s.project = vec![
            Projection::field("user.id", "u"),
            Projection::field("region", "r"),
            Projection::field("ts", "@timestamp"),
            Projection::field("amount", "a"),
            Projection::field("item", "i"),
        ];
        let p = Pipeline::new(&s, 16).unwrap();
        let out = prep(&p, json!({"u": "z", "r": true, "a": 1, "i": "q"}));
        let Prepared::Keyed { input, .. } = out else {
            panic!("expected keyed, got {out:?}");
        };
        assert_eq!(input.timestamp, NOW - 10);
        let mut key = Vec::new();
        keygroup::push_key_part(&mut key, b"z");
        keygroup::push_key_part(&mut key, b"true");
        assert_eq!(input.key, key);
        assert_eq!(input.key_group, keygroup::key_group(&key, 16));
    }

    #[test]
    fn every_reject_kind() {
        let p = Pipeline::new(&spec(), 128).unwrap();
        let ok = json!({"user": {"id": "a"}, "region": "eu", "amount": 1, "item": 1, "ts": 1000});

        // Oversized.
        let big = vec![b' '; 201];
        let r = reject(p.prepare(Some(&big), meta(), NOW));
        assert_eq!(
            r,
            Reject::Oversized {
                size: 201,
                limit: 200
            }
        );
        assert_eq!(
            (r.kind(), r.counter()),
            ("oversized", RejectCounter::Malformed)
        );
        assert!(r.to_string().contains("201 bytes"), "{r}");

        // Tombstone and undecodable.
        let r = reject(p.prepare(None, meta(), NOW));
        assert_eq!(
            (r.kind(), r.counter()),
            ("malformed", RejectCounter::Malformed)
        );
        assert!(r.to_string().contains("tombstone"), "{r}");
        let r = reject(p.prepare(Some(b"[]"), meta(), NOW));
        assert_eq!(
            r,
            Reject::Malformed("expected a JSON object, got an array".into())
        );

        // Filter type error.
        let mut s = spec();
        s.filter = vec![Condition {
            field: "amount".into(),
            op: CompareOp::Gt,
            value: Some(json!(0)),
        }];
        let pf = Pipeline::new(&s, 128).unwrap();
        let mut v = ok.clone();
        v["amount"] = json!(false);
        let r = reject(prep(&pf, v));
        assert_eq!(r.kind(), "malformed");
        assert!(r.to_string().contains("field `amount`"), "{r}");

        // Timestamps.
        let mut v = ok.clone();
        v["ts"] = json!("soon");
        let r = reject(prep(&p, v));
        assert_eq!(
            (r.kind(), r.counter()),
            ("bad-timestamp", RejectCounter::Malformed)
        );
        let mut v = ok.clone();
        v.as_object_mut().unwrap().remove("ts");
        assert_eq!(
            reject(prep(&p, v)),
            Reject::BadTimestamp("field `ts` is missing".into())
        );
        let mut v = ok.clone();
        v["ts"] = json!(NOW + 3_600_001);
        let r = reject(prep(&p, v));
        assert_eq!(
            r,
            Reject::FutureTimestamp {
                timestamp: NOW + 3_600_001,
                limit_ms: 3_600_000
            }
        );
        assert_eq!(
            (r.kind(), r.counter()),
            ("future-timestamp", RejectCounter::Malformed)
        );
        assert!(r.to_string().contains("1h"), "{r}");

        // Keys.
        let mut v = ok.clone();
        v["user"] = json!({});
        let r = reject(prep(&p, v));
        assert_eq!(r, Reject::MissingKey("user.id".into()));
        assert_eq!(
            (r.kind(), r.counter()),
            ("missing-key", RejectCounter::Keyless)
        );
        let mut v = ok.clone();
        v["region"] = Value::Null;
        assert_eq!(reject(prep(&p, v)), Reject::MissingKey("region".into()));
        let mut v = ok.clone();
        v["region"] = json!(["eu"]);
        let r = reject(prep(&p, v));
        assert_eq!(
            r,
            Reject::Malformed(
                "key field `region` is an array; keys must be strings, numbers or booleans".into()
            )
        );

        // Aggregate inputs.
        let mut v = ok.clone();
        v["amount"] = json!("abc");
        assert_eq!(
            reject(prep(&p, v)),
            Reject::Malformed("field `amount`: expected a number, got \"abc\"".into())
        );
        let mut v = ok.clone();
        v.as_object_mut().unwrap().remove("amount");
        assert_eq!(
            reject(prep(&p, v)),
            Reject::Malformed("field `amount` is missing".into())
        );
        let mut v = ok.clone();
        v.as_object_mut().unwrap().remove("item");
        assert_eq!(
            reject(prep(&p, v)),
            Reject::Malformed("field `item` is missing".into())
        );

        // Late (made by the runtime).
        let r = Reject::Late {
            timestamp: 1_000,
            watermark: 60_000,
        };
        assert_eq!((r.kind(), r.counter()), ("late", RejectCounter::Late));
        assert!(r.to_string().contains("1970-01-01T00:00:01.000Z"), "{r}");

        // And the base record is fine.
        assert!(matches!(prep(&p, ok), Prepared::Keyed { .. }));
    }

    #[test]
    fn time_accessors() {
        let p = Pipeline::new(&spec(), 128).unwrap();
        assert!(p.is_event_time());
        assert_eq!(p.max_out_of_orderness_ms(), 5_000);
        assert_eq!(p.idle_timeout_ms(), Some(60_000));
        assert_eq!(p.max_drift_ms(), Some(30_000));
        assert!(p.watermark_tracker().is_some());
        assert_eq!(p.max_parallelism(), 128);

        let mut s = spec();
        s.time = TimeSpec::Processing;
        let p = Pipeline::new(&s, 128).unwrap();
        assert!(!p.is_event_time());
        assert!(p.watermark_tracker().is_none());
        let Prepared::Keyed { input, .. } = prep(
            &p,
            json!({"user": {"id": "a"}, "region": "eu", "amount": 1, "item": 1}),
        ) else {
            panic!("expected keyed");
        };
        assert_eq!(input.timestamp, NOW);
    }

    #[test]
    fn spec_errors_name_the_field() {
        let mut s = spec();
        s.aggregates.push(AggregateSpec {
            name: "m".into(),
            function: AggregateFn::Max,
            field: None,
        });
        let e = Pipeline::new(&s, 128).unwrap_err();
        assert_eq!(e.field, "spec.pipeline.aggregates[3].field");
        assert_eq!(
            e.to_string(),
            "spec.pipeline.aggregates[3].field: `max` needs a field"
        );

        let mut s = spec();
        s.format = FormatSpec::Csv {
            columns: vec![],
            delimiter: ',',
        };
        assert_eq!(
            Pipeline::new(&s, 128).unwrap_err().field,
            "spec.pipeline.format.columns"
        );

        let mut s = spec();
        s.filter[0].value = None;
        assert_eq!(
            Pipeline::new(&s, 128).unwrap_err().field,
            "spec.pipeline.filter[0].value"
        );

        assert_eq!(
            Pipeline::new(&spec(), 0).unwrap_err().field,
            "spec.maxParallelism"
        );
    }

    #[test]
    fn csv_pipeline_coerces_numbers() {
        let mut s = spec();
        s.format = FormatSpec::Csv {
            columns: vec!["uid".into(), "amount".into(), "ts".into()],
            delimiter: ',',
        };
        s.filter.clear();
        s.key = vec!["uid".into()];
        s.aggregates.truncate(2);
        let p = Pipeline::new(&s, 128).unwrap();
        let out = p.prepare(Some(b"u1,7,1000"), meta(), NOW);
        let Prepared::Keyed { input, .. } = out else {
            panic!("expected keyed, got {out:?}");
        };
        assert_eq!(input.timestamp, 1000);
        assert_eq!(input.key_json, r#"{"uid":"u1"}"#);
        assert_eq!(input.inputs[1], AggInput::Number(Number::Int(7)));
        let r = reject(p.prepare(Some(b"u1,7"), meta(), NOW));
        assert_eq!(r, Reject::Malformed("expected 3 CSV columns, got 2".into()));
    }

    #[test]
    fn expression_projection_converts_the_price() {
        let s: PipelineSpec = serde_yaml::from_str(
            r#"
source: { topics: [nexmark] }
time: { type: processing }
filter:
  - { field: type, op: eq, value: bid }
project:
  - { name: auction, field: auction }
  - { name: price, expr: "price * 0.908" }
  - { name: cents, expr: "(price - 1) * 100 / @partition" }
sink: { topic: out }
"#,
        )
        .unwrap();
        let p = Pipeline::new(&s, 128).unwrap();
        // The decoder keeps the fields expressions read (and only what some stage reads).
        let bid = json!({"type": "bid", "auction": 7, "bidder": 3, "price": 1000,
                         "channel": "web", "dateTime": NOW});
        match prep(&p, bid) {
            Prepared::Stateless(r) => {
                assert_eq!(
                    r.value,
                    json!({"auction": 7, "price": 908.0, "cents": 24975.0})
                );
            }
            other => panic!("expected stateless, got {other:?}"),
        }
        // A non-numeric price leaves the field absent; the record is still emitted.
        match prep(&p, json!({"type": "bid", "auction": 8, "price": "n/a"})) {
            Prepared::Stateless(r) => assert_eq!(r.value, json!({"auction": 8})),
            other => panic!("expected stateless, got {other:?}"),
        }
        assert_eq!(prep(&p, json!({"type": "person"})), Prepared::Filtered);
    }
}
