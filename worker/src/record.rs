//! The decoded record and field access by path.
//!
//! A record is a JSON value (CSV and raw records are decoded into JSON objects too) plus the
//! Kafka metadata it came with. Fields are addressed by dot-separated paths (`user.id`); the
//! metadata by the reserved names `@key`, `@timestamp`, `@partition`, `@offset`, `@topic`.

use std::sync::Arc;

use serde_json::Value;

/// Where a record came from.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordMeta {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Kafka record timestamp, epoch ms.
    pub timestamp_ms: Option<i64>,
    /// Kafka record key.
    pub key: Option<Vec<u8>>,
}

/// One record as a source delivers it: the value's bytes (`None` for a tombstone) and where
/// it came from.
#[derive(Clone, Debug)]
pub struct SourceRecord {
    pub payload: Option<Vec<u8>>,
    pub meta: RecordMeta,
}

/// A decoded record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub value: Value,
    pub meta: RecordMeta,
}

/// A pre-parsed field path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FieldPath {
    /// A path into the value, split on dots.
    Value(Vec<String>),
    Key,
    Timestamp,
    Partition,
    Offset,
    Topic,
}

impl FieldPath {
    pub fn parse(path: &str) -> FieldPath {
        match path {
            "@key" => FieldPath::Key,
            "@timestamp" => FieldPath::Timestamp,
            "@partition" => FieldPath::Partition,
            "@offset" => FieldPath::Offset,
            "@topic" => FieldPath::Topic,
            _ => FieldPath::Value(path.split('.').map(str::to_string).collect()),
        }
    }
}

impl Record {
    /// The value at `path`; `None` when absent. JSON `null` counts as absent.
    pub fn get(&self, path: &FieldPath) -> Option<Value> {
        let v = match path {
            FieldPath::Value(parts) => {
                let mut cur = &self.value;
                for p in parts {
                    cur = cur.as_object()?.get(p)?;
                }
                cur.clone()
            }
            FieldPath::Key => {
                Value::String(String::from_utf8_lossy(self.meta.key.as_deref()?).into_owned())
            }
            FieldPath::Timestamp => Value::from(self.meta.timestamp_ms?),
            FieldPath::Partition => Value::from(self.meta.partition),
            FieldPath::Offset => Value::from(self.meta.offset),
            FieldPath::Topic => Value::String(self.meta.topic.to_string()),
        };
        (!v.is_null()).then_some(v)
    }

    /// A position that orders records of one source totally: (partition, offset).
    pub fn position(&self) -> (i32, i64) {
        (self.meta.partition, self.meta.offset)
    }
}

/// The text of a scalar used in canonical keys and distinct counts: strings as they are,
/// numbers in serde_json's shortest form, booleans as `true`/`false`. `None` for objects
/// and arrays, which cannot be keys.
pub fn scalar_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Borrowed(if *b {
            "true"
        } else {
            "false"
        })),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// A value as a number: JSON numbers, and strings that parse as numbers (CSV fields).
pub fn as_number(v: &Value) -> Option<Number> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(Number::Int)
            .or_else(|| n.as_f64().map(Number::Float)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().map(Number::Int).ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Number::Float)
            })
        }
        _ => None,
    }
}

/// A numeric value, integer when it can be.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    pub fn as_f64(&self) -> f64 {
        match *self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }

    pub fn to_json(&self) -> Value {
        match *self {
            Number::Int(i) => Value::from(i),
            Number::Float(f) => serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
        }
    }

    /// Total order: numeric, with integers compared exactly.
    pub fn cmp_num(&self, other: &Number) -> std::cmp::Ordering {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a.cmp(b),
            _ => self.as_f64().total_cmp(&other.as_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        Record {
            value: v,
            meta: RecordMeta {
                topic: Arc::from("t"),
                partition: 2,
                offset: 9,
                timestamp_ms: Some(1000),
                key: Some(b"k".to_vec()),
            },
        }
    }

    #[test]
    fn paths() {
        let r = rec(json!({"user": {"id": 7}, "n": null}));
        assert_eq!(r.get(&FieldPath::parse("user.id")), Some(json!(7)));
        assert_eq!(r.get(&FieldPath::parse("user.name")), None);
        assert_eq!(r.get(&FieldPath::parse("n")), None);
        assert_eq!(r.get(&FieldPath::parse("@key")), Some(json!("k")));
        assert_eq!(r.get(&FieldPath::parse("@partition")), Some(json!(2)));
        assert_eq!(r.get(&FieldPath::parse("@timestamp")), Some(json!(1000)));
    }

    #[test]
    fn numbers() {
        assert_eq!(as_number(&json!(3)), Some(Number::Int(3)));
        assert_eq!(as_number(&json!("3.5")), Some(Number::Float(3.5)));
        assert_eq!(as_number(&json!("abc")), None);
        assert_eq!(as_number(&json!(true)), None);
        assert_eq!(scalar_text(&json!(1.5)).unwrap(), "1.5");
        assert!(scalar_text(&json!({})).is_none());
    }
}
