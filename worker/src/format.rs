//! Decoding Kafka record values into [`Record`]s: JSON, CSV and raw text.
//!
//! Every format yields a JSON object, so the rest of the pipeline addresses fields the same
//! way whatever the input:
//!
//! - **JSON**: the value must be a JSON object; fields by dot-separated path (`user.id`).
//! - **CSV**: exactly one line (a trailing line break is allowed), RFC 4180 quoting, mapped
//!   to the configured column names in order. Every field is a JSON string; numeric fields
//!   are coerced where a number is needed (see [`crate::record::as_number`]).
//! - **Raw**: the value as UTF-8 text in the field `value`.
//!
//! A value that does not decode is a [`DecodeError`] with a human reason; the pipeline sends
//! the record to the dead-letter topic as malformed. Decoding never panics on any input.
//!
//! **Field selection.** A pipeline that reads only some top-level fields (a filter, a
//! projection, a key, …) tells the decoder which ([`Decoder::select`]); JSON objects are then
//! parsed in full (so a malformed value is still rejected) but only the selected fields are
//! built into the record, the rest are skipped without allocating.

use std::fmt;
use std::sync::Arc;

use rivulet_api::spec::FormatSpec;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::pipeline::SpecError;
use crate::record::{Record, RecordMeta};

/// Why a record value could not be decoded; the reason is meant for humans (it goes into the
/// dead-letter record's headers).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl DecodeError {
    /// The human-readable reason.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

/// Decodes record values according to a [`FormatSpec`].
#[derive(Clone, Debug)]
pub struct Decoder {
    kind: Kind,
    /// Top-level JSON fields to keep, without duplicates; `None` keeps every field.
    selected: Option<Arc<[String]>>,
}

#[derive(Clone, Debug)]
enum Kind {
    Json,
    Csv {
        columns: Vec<String>,
        /// Shared because `csv::ReaderBuilder` is not `Clone`; `from_reader` takes `&self`.
        reader: Arc<csv::ReaderBuilder>,
    },
    Raw,
}

impl Decoder {
    /// A decoder for `spec`. Fails when the spec cannot describe any valid record: a CSV
    /// format with no columns, or a delimiter that is not a single ASCII character.
    pub fn new(spec: &FormatSpec) -> Result<Decoder, SpecError> {
        let kind = match spec {
            FormatSpec::Json => Kind::Json,
            FormatSpec::Raw => Kind::Raw,
            FormatSpec::Csv { columns, delimiter } => {
                if columns.is_empty() {
                    return Err(SpecError::new(
                        "spec.pipeline.format.columns",
                        "a CSV format needs at least one column name",
                    ));
                }
                let delimiter = u8::try_from(*delimiter)
                    .ok()
                    .filter(|d| d.is_ascii() && *d != b'"' && *d != b'\n' && *d != b'\r')
                    .ok_or_else(|| {
                        SpecError::new(
                            "spec.pipeline.format.delimiter",
                            format!(
                                "the CSV delimiter must be one ASCII character other than a \
                                 quote or a line break, got {delimiter:?}"
                            ),
                        )
                    })?;
                let mut reader = csv::ReaderBuilder::new();
                reader
                    .has_headers(false)
                    .delimiter(delimiter)
                    .flexible(true)
                    .buffer_capacity(1024);
                Kind::Csv {
                    columns: columns.clone(),
                    reader: Arc::new(reader),
                }
            }
        };
        Ok(Decoder {
            kind,
            selected: None,
        })
    }

    /// Keeps only these top-level fields of JSON records (`None`: all of them). CSV and raw
    /// records are small and always decoded in full.
    pub fn select(mut self, fields: Option<Vec<String>>) -> Decoder {
        self.selected = fields.map(|mut f| {
            f.sort_unstable();
            f.dedup();
            Arc::from(f)
        });
        self
    }

    /// Decodes one record value.
    pub fn decode(&self, payload: &[u8], meta: RecordMeta) -> Result<Record, DecodeError> {
        let value = match &self.kind {
            Kind::Json => match &self.selected {
                None => decode_json(payload)?,
                Some(names) => decode_json_selected(payload, names)?,
            },
            Kind::Csv { columns, reader } => decode_csv(reader, columns, payload)?,
            Kind::Raw => decode_raw(payload)?,
        };
        Ok(Record { value, meta })
    }
}

fn decode_json(payload: &[u8]) -> Result<Value, DecodeError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| DecodeError(format!("invalid JSON: {e}")))?;
    match value {
        Value::Object(_) => Ok(value),
        other => Err(DecodeError(format!(
            "expected a JSON object, got {}",
            json_type_name(&other)
        ))),
    }
}

/// Decodes a JSON object keeping only `names` (sorted). On any error the value is decoded
/// again in full, so the reason is the same as without a selection.
fn decode_json_selected(payload: &[u8], names: &[String]) -> Result<Value, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let parsed = Selected(names)
        .deserialize(&mut de)
        .and_then(|map| de.end().map(|()| map));
    match parsed {
        Ok(map) => Ok(Value::Object(map)),
        Err(_) => decode_json(payload),
    }
}

/// Deserializes a JSON object into a map of the selected fields only.
struct Selected<'a>(&'a [String]);

impl<'de> DeserializeSeed<'de> for Selected<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Selected<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(index) = access.next_key_seed(SelectedKey(self.0))? {
            match index {
                Some(i) => {
                    let value: Value = access.next_value()?;
                    map.insert(self.0[i].clone(), value);
                }
                None => {
                    access.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(map)
    }
}

/// A key of the object: its index in the selection, or `None` to skip its value.
struct SelectedKey<'a>(&'a [String]);

impl<'de> DeserializeSeed<'de> for SelectedKey<'_> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for SelectedKey<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        // A handful of names: comparing lengths first beats hashing or a binary search.
        Ok(self
            .0
            .iter()
            .position(|n| n.len() == key.len() && n.as_bytes() == key.as_bytes()))
    }
}

fn decode_csv(
    builder: &csv::ReaderBuilder,
    columns: &[String],
    payload: &[u8],
) -> Result<Value, DecodeError> {
    let mut reader = builder.from_reader(payload);
    let mut record = csv::ByteRecord::new();
    let has_record = reader
        .read_byte_record(&mut record)
        .map_err(|e| DecodeError(format!("invalid CSV: {e}")))?;
    if !has_record {
        return Err(DecodeError(format!(
            "empty CSV record: expected {} columns",
            columns.len()
        )));
    }
    let mut extra = csv::ByteRecord::new();
    if reader.read_byte_record(&mut extra).unwrap_or(true) {
        return Err(DecodeError(
            "expected one CSV line, got more than one".to_string(),
        ));
    }
    if record.len() != columns.len() {
        return Err(DecodeError(format!(
            "expected {} CSV columns, got {}",
            columns.len(),
            record.len()
        )));
    }
    let mut object = Map::with_capacity(columns.len());
    for (name, field) in columns.iter().zip(record.iter()) {
        let text = std::str::from_utf8(field).map_err(|e| {
            DecodeError(format!(
                "CSV column `{name}` is not valid UTF-8 (at byte {})",
                e.valid_up_to()
            ))
        })?;
        object.insert(name.clone(), Value::String(text.to_string()));
    }
    Ok(Value::Object(object))
}

fn decode_raw(payload: &[u8]) -> Result<Value, DecodeError> {
    let text = std::str::from_utf8(payload).map_err(|e| {
        DecodeError(format!(
            "raw value is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    let mut object = Map::with_capacity(1);
    object.insert("value".to_string(), Value::String(text.to_string()));
    Ok(Value::Object(object))
}

/// The JSON type of a value, for error messages.
pub(crate) fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::FieldPath;

    fn meta() -> RecordMeta {
        RecordMeta {
            topic: Arc::from("in"),
            partition: 1,
            offset: 42,
            timestamp_ms: Some(1_000),
            key: None,
        }
    }

    fn csv(columns: &[&str], delimiter: char) -> Decoder {
        Decoder::new(&FormatSpec::Csv {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            delimiter,
        })
        .unwrap()
    }

    #[test]
    fn json_object_with_nested_paths() {
        let d = Decoder::new(&FormatSpec::Json).unwrap();
        let r = d
            .decode(br#"{"user":{"id":7,"name":"ann"},"amount":2.5}"#, meta())
            .unwrap();
        assert_eq!(r.get(&FieldPath::parse("user.id")), Some(json!(7)));
        assert_eq!(r.get(&FieldPath::parse("user.name")), Some(json!("ann")));
        assert_eq!(r.get(&FieldPath::parse("amount")), Some(json!(2.5)));
        assert_eq!(r.get(&FieldPath::parse("user.missing")), None);
        assert_eq!(r.meta, meta());
    }

    #[test]
    fn a_selection_keeps_only_its_fields_and_still_rejects_bad_json() {
        let all = Decoder::new(&FormatSpec::Json).unwrap();
        let some = Decoder::new(&FormatSpec::Json).unwrap().select(Some(vec![
            "user".into(),
            "b\"q".into(),
            "user".into(),
        ]));
        let payload = br#"{"user":{"id":7},"skip":[1,{"x":"\u00e9"}],"b\"q":1,"user":{"id":8}}"#;
        let r = some.decode(payload, meta()).unwrap();
        assert_eq!(r.value, json!({"user": {"id": 8}, "b\"q": 1}));
        assert_eq!(
            all.decode(payload, meta())
                .unwrap()
                .get(&FieldPath::parse("user.id")),
            Some(json!(8))
        );
        for bad in [
            &b"[1,2]"[..],
            b"{\"user\":1",
            b"{\"skip\":tru}",
            b"{\"user\":1} x",
            b"\"text\"",
            b"",
        ] {
            assert_eq!(some.decode(bad, meta()), all.decode(bad, meta()), "{bad:?}");
            assert!(some.decode(bad, meta()).is_err(), "{bad:?}");
        }
        let none = Decoder::new(&FormatSpec::Json)
            .unwrap()
            .select(Some(vec![]));
        assert_eq!(none.decode(payload, meta()).unwrap().value, json!({}));
    }

    #[test]
    fn json_rejects_non_objects_and_garbage() {
        let d = Decoder::new(&FormatSpec::Json).unwrap();
        let e = d.decode(b"[1,2]", meta()).unwrap_err();
        assert_eq!(e.reason(), "expected a JSON object, got an array");
        let e = d.decode(b"42", meta()).unwrap_err();
        assert_eq!(e.reason(), "expected a JSON object, got a number");
        let e = d.decode(b"{\"a\":", meta()).unwrap_err();
        assert!(e.reason().starts_with("invalid JSON:"), "{e}");
        let e = d.decode(b"", meta()).unwrap_err();
        assert!(e.reason().starts_with("invalid JSON:"), "{e}");
        let e = d.decode(&[0xff, 0xfe], meta()).unwrap_err();
        assert!(e.reason().starts_with("invalid JSON:"), "{e}");
    }

    #[test]
    fn csv_maps_columns_in_order_as_strings() {
        let d = csv(&["user", "amount", "ts"], ',');
        let r = d.decode(b"alice,12.5,1000\n", meta()).unwrap();
        assert_eq!(r.value, json!({"user":"alice","amount":"12.5","ts":"1000"}));
    }

    #[test]
    fn csv_handles_quoted_fields() {
        let d = csv(&["name", "note"], ',');
        let r = d.decode(br#""Smith, John","said ""hi"""#, meta()).unwrap();
        assert_eq!(r.value, json!({"name":"Smith, John","note":"said \"hi\""}));
        // A quoted field may span a line break: it is still one record.
        let r = d.decode(b"\"a\nb\",c", meta()).unwrap();
        assert_eq!(r.value, json!({"name":"a\nb","note":"c"}));
    }

    #[test]
    fn csv_respects_the_delimiter() {
        let d = csv(&["a", "b", "c"], ';');
        let r = d.decode(b"1;x,y;3", meta()).unwrap();
        assert_eq!(r.value, json!({"a":"1","b":"x,y","c":"3"}));
        let d = csv(&["a", "b"], '\t');
        let r = d.decode(b"1\t2\r\n", meta()).unwrap();
        assert_eq!(r.value, json!({"a":"1","b":"2"}));
    }

    #[test]
    fn csv_wrong_column_count_is_malformed() {
        let d = csv(&["a", "b", "c"], ',');
        let e = d.decode(b"1,2", meta()).unwrap_err();
        assert_eq!(e.reason(), "expected 3 CSV columns, got 2");
        let e = d.decode(b"1,2,3,4", meta()).unwrap_err();
        assert_eq!(e.reason(), "expected 3 CSV columns, got 4");
        let e = d.decode(b"1,2,3\n4,5,6", meta()).unwrap_err();
        assert_eq!(e.reason(), "expected one CSV line, got more than one");
        let e = d.decode(b"", meta()).unwrap_err();
        assert_eq!(e.reason(), "empty CSV record: expected 3 columns");
    }

    #[test]
    fn csv_invalid_utf8_names_the_column() {
        let d = csv(&["a", "b"], ',');
        let e = d.decode(b"ok,\xff", meta()).unwrap_err();
        assert_eq!(e.reason(), "CSV column `b` is not valid UTF-8 (at byte 0)");
    }

    #[test]
    fn csv_spec_errors() {
        let e = Decoder::new(&FormatSpec::Csv {
            columns: vec![],
            delimiter: ',',
        })
        .unwrap_err();
        assert_eq!(e.field, "spec.pipeline.format.columns");
        let e = Decoder::new(&FormatSpec::Csv {
            columns: vec!["a".into()],
            delimiter: '→',
        })
        .unwrap_err();
        assert_eq!(e.field, "spec.pipeline.format.delimiter");
    }

    #[test]
    fn raw_is_text_in_value() {
        let d = Decoder::new(&FormatSpec::Raw).unwrap();
        let r = d.decode("héllo, world".as_bytes(), meta()).unwrap();
        assert_eq!(r.value, json!({"value":"héllo, world"}));
        let r = d.decode(b"", meta()).unwrap();
        assert_eq!(r.value, json!({"value":""}));
        let e = d.decode(b"ab\xc3", meta()).unwrap_err();
        assert_eq!(e.reason(), "raw value is not valid UTF-8 (at byte 2)");
    }
}
