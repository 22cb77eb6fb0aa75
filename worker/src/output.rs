//! What the job writes: window results, stateless records and dead-letter records, encoded
//! for Kafka.
//!
//! Window results are JSON with a fixed field order so identical state gives identical bytes:
//! key `{"user":"alice"}` and value
//! `{"key":{"user":"alice"},"windowStart":0,"windowEnd":10000,"clicks":3,"kind":"final"}`.
//! `kind` is `final` for the emission when the watermark passes the window's end, and
//! `update` for a re-emission after a late record within the allowed lateness (the newest
//! record for a key and window supersedes earlier ones). Times are epoch milliseconds.
//!
//! Dead-letter records keep the original key and value and carry the reason in headers:
//! `rivulet.reason` (`malformed`, `missing-key`, `late`, …), `rivulet.error` (a sentence),
//! and `rivulet.source.topic` / `.partition` / `.offset` / `.timestamp`.

use serde::{Deserialize, Serialize};

use crate::pipeline::Reject;
use crate::record::{Record, RecordMeta};
use crate::window::{ResultKind, WindowResult};

/// Which topic a record goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    Sink,
    DeadLetter,
}

/// One record to produce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutRecord {
    pub destination: Destination,
    #[serde(with = "serde_bytes")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Encodes a window result; `names` are the aggregates' names in spec order.
pub fn window_result(r: &WindowResult, names: &[String]) -> OutRecord {
    let mut v = String::with_capacity(64 + r.key_json.len() * 2 + names.len() * 16);
    v.push_str("{\"key\":");
    v.push_str(&r.key_json);
    v.push_str(",\"windowStart\":");
    v.push_str(&r.start.to_string());
    v.push_str(",\"windowEnd\":");
    v.push_str(&r.end.to_string());
    for (name, value) in names.iter().zip(&r.values) {
        v.push(',');
        v.push_str(&serde_json::Value::String(name.clone()).to_string());
        v.push(':');
        v.push_str(&value.to_string());
    }
    v.push_str(match r.kind {
        ResultKind::Final => ",\"kind\":\"final\"}",
        ResultKind::Update => ",\"kind\":\"update\"}",
    });
    OutRecord {
        destination: Destination::Sink,
        key: Some(r.key_json.clone().into_bytes()),
        value: v.into_bytes(),
        headers: Vec::new(),
    }
}

/// Encodes a record of a stateless pipeline (its projected value, its original key).
pub fn stateless(r: &Record) -> OutRecord {
    OutRecord {
        destination: Destination::Sink,
        key: r.meta.key.clone(),
        value: r.value.to_string().into_bytes(),
        headers: Vec::new(),
    }
}

/// A rejected input record with its reason.
pub fn dead_letter(payload: Option<&[u8]>, meta: &RecordMeta, reason: &Reject) -> OutRecord {
    let mut headers = vec![
        (
            "rivulet.reason".to_string(),
            reason.kind().as_bytes().to_vec(),
        ),
        ("rivulet.error".to_string(), reason.to_string().into_bytes()),
        (
            "rivulet.source.topic".to_string(),
            meta.topic.as_bytes().to_vec(),
        ),
        (
            "rivulet.source.partition".to_string(),
            meta.partition.to_string().into_bytes(),
        ),
        (
            "rivulet.source.offset".to_string(),
            meta.offset.to_string().into_bytes(),
        ),
    ];
    if let Some(ts) = meta.timestamp_ms {
        headers.push((
            "rivulet.source.timestamp".to_string(),
            ts.to_string().into_bytes(),
        ));
    }
    OutRecord {
        destination: Destination::DeadLetter,
        key: meta.key.clone(),
        value: payload.map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Checkpoints written before the byte buffers were serialized as `bytes` still decode:
    /// postcard writes a sequence of u8 and a byte string identically.
    #[test]
    fn the_checkpoint_encoding_of_output_is_unchanged() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Before {
            destination: Destination,
            key: Option<Vec<u8>>,
            value: Vec<u8>,
            headers: Vec<(String, Vec<u8>)>,
        }
        let now = OutRecord {
            destination: Destination::DeadLetter,
            key: Some(b"k\x00\xff".to_vec()),
            value: (0..=255u8).collect(),
            headers: vec![("h".into(), b"v".to_vec())],
        };
        let before = Before {
            destination: now.destination,
            key: now.key.clone(),
            value: now.value.clone(),
            headers: now.headers.clone(),
        };
        let bytes = postcard::to_allocvec(&now).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&before).unwrap());
        assert_eq!(postcard::from_bytes::<OutRecord>(&bytes).unwrap(), now);
        let none = OutRecord { key: None, ..now };
        let old = Before {
            key: None,
            ..before
        };
        assert_eq!(
            postcard::to_allocvec(&none).unwrap(),
            postcard::to_allocvec(&old).unwrap()
        );
    }

    #[test]
    fn window_result_bytes_are_fixed() {
        let r = WindowResult {
            key_json: r#"{"user":"alice"}"#.into(),
            key: vec![],
            start: 0,
            end: 10_000,
            values: vec![json!(3), json!(2.5)],
            kind: ResultKind::Final,
        };
        let out = window_result(&r, &["clicks".into(), "avg \"x\"".into()]);
        assert_eq!(
            String::from_utf8(out.value).unwrap(),
            r#"{"key":{"user":"alice"},"windowStart":0,"windowEnd":10000,"clicks":3,"avg \"x\"":2.5,"kind":"final"}"#
        );
        assert_eq!(out.key.unwrap(), br#"{"user":"alice"}"#.to_vec());
    }
}
