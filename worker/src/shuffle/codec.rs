//! The shuffle's wire format: length-prefixed frames between two workers.
//!
//! ```text
//! frame   = length u32 (big-endian, bytes after it) · kind u8 · body
//! kind 1  Hello    JSON (job, from, to, restored checkpoint, initial credits)
//! kind 2  Data     count varint · item*           (one credit each)
//! kind 3  Barrier  snapshot id u64 · savepoint u8 · stop u8
//! kind 4  Credit   frames u32
//! kind 5  Control  JSON (the checkpoint coordinator's messages)
//! kind 6  Bye      (the sender stops on purpose; its closing is not a failure)
//!
//! item    = 0 · record | 1 · watermark
//! record  = key group u32 · key bytes · key JSON bytes · timestamp i64 · partition i32 ·
//!           offset i64 · inputs varint · input* · origin
//! input   = 0 (nothing) | 1 · i64 | 2 · f64 | 3 · JSON bytes
//! origin  = payload (0 | 1 · bytes) · topic bytes · partition i32 · offset i64 ·
//!           timestamp (0 | 1 · i64) · key (0 | 1 · bytes)
//! watermark = value (0 | 1 · i64) · idle u8 · trigger i64
//! bytes   = length varint · bytes
//! ```
//!
//! Integers are big-endian; a varint is unsigned LEB128. Decoding never panics on bad input:
//! it returns [`CodecError`].

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::record::{Number, RecordMeta};
use crate::stage::{Item, Origin, WatermarkMark};
use crate::window::{AggInput, KeyedInput};

/// Largest frame accepted (a guard against garbage, far above what a sender builds).
pub const MAX_FRAME: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
#[error("corrupt shuffle frame: {0}")]
pub struct CodecError(pub String);

fn corrupt(what: &str) -> CodecError {
    CodecError(what.to_string())
}

/// The first frame on a connection, in both directions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// `<namespace>/<job>`: a worker of another job is refused.
    pub job: String,
    pub from: u32,
    pub to: u32,
    pub parallelism: u32,
    /// The checkpoint the sender restored from (0: none).
    pub restored: u64,
    /// The sender's attempt number (see `net::Identity`).
    pub attempt: u64,
    /// Data frames the sender of this hello may receive before it grants more.
    pub credits: u32,
}

/// One frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Hello(Hello),
    Data(Vec<Item>),
    /// Barrier of snapshot `id`; it starts the snapshot at a worker it reaches first.
    Barrier {
        id: u64,
        savepoint: bool,
        stop: bool,
    },
    Credit(u32),
    /// A coordinator message, JSON.
    Control(Vec<u8>),
    Bye,
}

const HELLO: u8 = 1;
const DATA: u8 = 2;
const BARRIER: u8 = 3;
const CREDIT: u8 = 4;
const CONTROL: u8 = 5;
const BYE: u8 = 6;

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    put_varint(buf, b.len() as u64);
    buf.put_slice(b);
}

/// Encodes a frame, length prefix included.
pub fn encode(frame: &Frame) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u32(0);
    match frame {
        Frame::Hello(h) => {
            buf.put_u8(HELLO);
            // Serializing plain strings and integers cannot fail.
            buf.put_slice(&serde_json::to_vec(h).unwrap_or_default());
        }
        Frame::Data(items) => {
            buf.put_u8(DATA);
            put_items(&mut buf, items);
        }
        Frame::Barrier {
            id,
            savepoint,
            stop,
        } => {
            buf.put_u8(BARRIER);
            buf.put_u64(*id);
            buf.put_u8(*savepoint as u8);
            buf.put_u8(*stop as u8);
        }
        Frame::Credit(n) => {
            buf.put_u8(CREDIT);
            buf.put_u32(*n);
        }
        Frame::Control(json) => {
            buf.put_u8(CONTROL);
            buf.put_slice(json);
        }
        Frame::Bye => buf.put_u8(BYE),
    }
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// Encodes a data frame from items.
pub fn encode_data(items: &[Item]) -> Bytes {
    let mut buf = BytesMut::with_capacity(64 + items.len() * 96);
    buf.put_u32(0);
    buf.put_u8(DATA);
    put_items(&mut buf, items);
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

fn put_items(buf: &mut BytesMut, items: &[Item]) {
    put_varint(buf, items.len() as u64);
    for item in items {
        match item {
            Item::Record(input, origin) => {
                buf.put_u8(0);
                put_record(buf, input, origin);
            }
            Item::Watermark(m) => {
                buf.put_u8(1);
                match m.value {
                    Some(v) => {
                        buf.put_u8(1);
                        buf.put_i64(v);
                    }
                    None => buf.put_u8(0),
                }
                buf.put_u8(m.idle as u8);
                buf.put_i64(m.trigger_ms);
            }
        }
    }
}

fn put_record(buf: &mut BytesMut, r: &KeyedInput, origin: &Origin) {
    buf.put_u32(r.key_group);
    put_bytes(buf, &r.key);
    put_bytes(buf, r.key_json.as_bytes());
    buf.put_i64(r.timestamp);
    buf.put_i32(r.position.0);
    buf.put_i64(r.position.1);
    put_varint(buf, r.inputs.len() as u64);
    for input in &r.inputs {
        match input {
            AggInput::Nothing => buf.put_u8(0),
            AggInput::Number(Number::Int(i)) => {
                buf.put_u8(1);
                buf.put_i64(*i);
            }
            AggInput::Number(Number::Float(f)) => {
                buf.put_u8(2);
                buf.put_f64(*f);
            }
            AggInput::Value(v) => {
                buf.put_u8(3);
                put_bytes(buf, &serde_json::to_vec(v).unwrap_or_default());
            }
        }
    }
    let (payload, meta) = match origin {
        Origin::Carried { payload, meta } => (payload.as_deref(), Some(meta)),
        // Only a worker's own records are delivered by index; a sender never encodes those.
        Origin::Batch(_) => (None, None),
    };
    put_opt_bytes(buf, payload);
    match meta {
        Some(m) => {
            put_bytes(buf, m.topic.as_bytes());
            buf.put_i32(m.partition);
            buf.put_i64(m.offset);
            match m.timestamp_ms {
                Some(t) => {
                    buf.put_u8(1);
                    buf.put_i64(t);
                }
                None => buf.put_u8(0),
            }
            put_opt_bytes(buf, m.key.as_deref());
        }
        None => {
            put_bytes(buf, b"");
            buf.put_i32(-1);
            buf.put_i64(-1);
            buf.put_u8(0);
            buf.put_u8(0);
        }
    }
}

fn put_opt_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            buf.put_u8(1);
            put_bytes(buf, b);
        }
        None => buf.put_u8(0),
    }
}

/// Reads frames from a byte slice; every read checks the remaining length.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn need(&self, n: usize, what: &str) -> Result<(), CodecError> {
        if self.buf.remaining() < n {
            Err(CodecError(format!("truncated {what}")))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self, what: &str) -> Result<u8, CodecError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }
    fn u32(&mut self, what: &str) -> Result<u32, CodecError> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }
    fn i32(&mut self, what: &str) -> Result<i32, CodecError> {
        self.need(4, what)?;
        Ok(self.buf.get_i32())
    }
    fn i64(&mut self, what: &str) -> Result<i64, CodecError> {
        self.need(8, what)?;
        Ok(self.buf.get_i64())
    }
    fn u64(&mut self, what: &str) -> Result<u64, CodecError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }
    fn f64(&mut self, what: &str) -> Result<f64, CodecError> {
        self.need(8, what)?;
        Ok(self.buf.get_f64())
    }
    fn varint(&mut self, what: &str) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError(format!("{what}: varint too long")))
    }
    fn bytes(&mut self, what: &str) -> Result<&'a [u8], CodecError> {
        let len = self.varint(what)? as usize;
        self.need(len, what)?;
        let (b, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(b)
    }
    fn opt_bytes(&mut self, what: &str) -> Result<Option<&'a [u8]>, CodecError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes(what)?)),
            t => Err(CodecError(format!("{what}: bad option tag {t}"))),
        }
    }
    fn string(&mut self, what: &str) -> Result<String, CodecError> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError(format!("{what}: not UTF-8")))
    }
}

/// Decodes a frame body (after the length prefix). `topics` interns topic names.
pub fn decode(body: &[u8], topics: &mut Vec<Arc<str>>) -> Result<Frame, CodecError> {
    let mut r = Reader { buf: body };
    let kind = r.u8("frame kind")?;
    let frame = match kind {
        HELLO => Frame::Hello(
            serde_json::from_slice(r.buf).map_err(|e| CodecError(format!("hello: {e}")))?,
        ),
        DATA => {
            let n = r.varint("item count")? as usize;
            // Each item takes at least 11 bytes: a guard against a huge count.
            if n > r.buf.len() {
                return Err(corrupt("item count beyond the frame"));
            }
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_item(&mut r, topics)?);
            }
            if !r.buf.is_empty() {
                return Err(corrupt("bytes after the last item"));
            }
            Frame::Data(items)
        }
        BARRIER => Frame::Barrier {
            id: r.u64("barrier")?,
            savepoint: r.u8("barrier kind")? != 0,
            stop: r.u8("barrier stop")? != 0,
        },
        CREDIT => Frame::Credit(r.u32("credit")?),
        CONTROL => Frame::Control(r.buf.to_vec()),
        BYE => Frame::Bye,
        k => return Err(CodecError(format!("unknown frame kind {k}"))),
    };
    Ok(frame)
}

fn read_item(r: &mut Reader<'_>, topics: &mut Vec<Arc<str>>) -> Result<Item, CodecError> {
    match r.u8("item tag")? {
        0 => read_record(r, topics),
        1 => {
            let value = match r.u8("watermark")? {
                0 => None,
                1 => Some(r.i64("watermark")?),
                t => return Err(CodecError(format!("watermark: bad tag {t}"))),
            };
            let idle = r.u8("idle flag")? != 0;
            let trigger_ms = r.i64("trigger")?;
            Ok(Item::Watermark(WatermarkMark {
                value,
                idle,
                trigger_ms,
            }))
        }
        t => Err(CodecError(format!("unknown item tag {t}"))),
    }
}

fn read_record(r: &mut Reader<'_>, topics: &mut Vec<Arc<str>>) -> Result<Item, CodecError> {
    let key_group = r.u32("key group")?;
    let key = r.bytes("key")?.to_vec();
    let key_json = r.string("key JSON")?;
    let timestamp = r.i64("timestamp")?;
    let position = (r.i32("partition")?, r.i64("offset")?);
    let n = r.varint("input count")? as usize;
    if n > r.buf.len() {
        return Err(corrupt("input count beyond the frame"));
    }
    let mut inputs = Vec::with_capacity(n);
    for _ in 0..n {
        inputs.push(match r.u8("input tag")? {
            0 => AggInput::Nothing,
            1 => AggInput::Number(Number::Int(r.i64("int input")?)),
            2 => AggInput::Number(Number::Float(r.f64("float input")?)),
            3 => AggInput::Value(
                serde_json::from_slice(r.bytes("value input")?)
                    .map_err(|e| CodecError(format!("value input: {e}")))?,
            ),
            t => return Err(CodecError(format!("unknown input tag {t}"))),
        });
    }
    let payload = r.opt_bytes("payload")?.map(<[u8]>::to_vec);
    let topic_bytes = r.bytes("topic")?;
    let topic = match topics.iter().find(|t| t.as_bytes() == topic_bytes) {
        Some(t) => t.clone(),
        None => {
            let t: Arc<str> = Arc::from(
                std::str::from_utf8(topic_bytes).map_err(|_| corrupt("topic: not UTF-8"))?,
            );
            topics.push(t.clone());
            t
        }
    };
    let partition = r.i32("source partition")?;
    let offset = r.i64("source offset")?;
    let timestamp_ms = match r.u8("source timestamp")? {
        0 => None,
        1 => Some(r.i64("source timestamp")?),
        t => return Err(CodecError(format!("source timestamp: bad tag {t}"))),
    };
    let kafka_key = r.opt_bytes("source key")?.map(<[u8]>::to_vec);
    Ok(Item::Record(
        KeyedInput {
            key_group,
            key,
            key_json,
            timestamp,
            position,
            inputs,
        },
        Origin::Carried {
            payload,
            meta: RecordMeta {
                topic,
                partition,
                offset,
                timestamp_ms,
                key: kafka_key,
            },
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kg: u32, key: &str) -> Item {
        Item::Record(
            KeyedInput {
                key_group: kg,
                key: key.as_bytes().to_vec(),
                key_json: format!(r#"{{"k":"{key}"}}"#),
                timestamp: 1_700_000_000_123,
                position: (3, 42),
                inputs: vec![
                    AggInput::Nothing,
                    AggInput::Number(Number::Int(-7)),
                    AggInput::Number(Number::Float(2.5)),
                    AggInput::Value(serde_json::json!({"a": [1, "x"]})),
                ],
            },
            Origin::Carried {
                payload: Some(br#"{"k":"x"}"#.to_vec()),
                meta: RecordMeta {
                    topic: Arc::from("events"),
                    partition: 3,
                    offset: 42,
                    timestamp_ms: Some(5),
                    key: None,
                },
            },
        )
    }

    fn roundtrip(f: &Frame) -> Frame {
        let bytes = encode(f);
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4);
        decode(&bytes[4..], &mut Vec::new()).unwrap()
    }

    #[test]
    fn every_frame_kind_roundtrips() {
        let frames = [
            Frame::Hello(Hello {
                job: "ns/job".into(),
                from: 1,
                to: 2,
                parallelism: 3,
                restored: 9,
                attempt: 2,
                credits: 8,
            }),
            Frame::Data(vec![
                record(7, "alice"),
                Item::Watermark(WatermarkMark {
                    value: Some(-3),
                    idle: false,
                    trigger_ms: 11,
                }),
                Item::Watermark(WatermarkMark {
                    value: None,
                    idle: true,
                    trigger_ms: 12,
                }),
                record(127, "bob"),
            ]),
            Frame::Barrier {
                id: u64::MAX,
                savepoint: true,
                stop: false,
            },
            Frame::Credit(4),
            Frame::Control(br#"{"complete":{"id":3}}"#.to_vec()),
            Frame::Bye,
        ];
        for f in &frames {
            assert_eq!(&roundtrip(f), f);
        }
    }

    #[test]
    fn truncated_and_garbage_frames_are_errors() {
        let bytes = encode(&Frame::Data(vec![record(1, "k")]));
        let body = &bytes[4..];
        for cut in 0..body.len() {
            assert!(
                decode(&body[..cut], &mut Vec::new()).is_err(),
                "cut at {cut}"
            );
        }
        assert!(decode(&[9], &mut Vec::new()).is_err());
        assert!(decode(&[DATA, 0xff, 0xff, 0xff, 0xff, 0x0f], &mut Vec::new()).is_err());
    }
}
