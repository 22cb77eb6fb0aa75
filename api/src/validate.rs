//! Loading a manifest from YAML and validating it, naming every bad field by its path.
//!
//! Loading happens in two passes:
//!
//! 1. **Structure**: the YAML is deserialized into a [`StreamJob`] with the path of
//!    every value tracked, so an unknown field, a wrong type, a bad duration or a bad enum
//!    value is reported as `spec.pipeline.window.size: expected a duration like "10s", got
//!    "ten" (line 12, column 15)`. Deserialization stops at the first such error.
//! 2. **Semantics**: [`validate`] checks the parsed manifest as a whole and reports *every*
//!    problem it finds, each with its path (`spec.pipeline.aggregates[1].field`).
//!
//! Paths use the YAML's camelCase names; list items are indexed (`topics[0]`) and map keys
//! that are not plain words are quoted (`properties["sasl.mechanism"]`).

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::duration::Duration;
use crate::job::{StreamJob, StreamJobSpec, API_VERSION, KIND};
use crate::spec::{
    CompareOp, FormatSpec, PipelineSpec, SecretRef, StartFrom, TimeSpec, WindowType,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// One bad field: its path (e.g. `spec.pipeline.window.size`) and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid manifest:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
    #[error("cannot read manifest {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LoadError {
    /// The field errors of an invalid manifest (empty for an I/O error).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            LoadError::Invalid(errors) => errors,
            LoadError::Io { .. } => &[],
        }
    }
}

/// Parses and validates a `StreamJob` manifest.
pub fn load_manifest(yaml: &str) -> Result<StreamJob, LoadError> {
    let envelope = parse(yaml).map_err(|e| LoadError::Invalid(vec![e]))?;
    let mut errors = envelope.errors();
    let job = envelope.into_job();
    errors.extend(validate(&job));
    if errors.is_empty() {
        Ok(job)
    } else {
        Err(LoadError::Invalid(errors))
    }
}

/// A manifest as written, before it becomes a [`StreamJob`]: unlike the resource type, it
/// rejects unknown top-level fields and keeps `apiVersion` and `kind` to be checked.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: StreamJobSpec,
    /// Status is written by the control plane only; a manifest's is ignored, as the API
    /// server ignores it on `kubectl apply`.
    #[serde(default, rename = "status")]
    _status: serde::de::IgnoredAny,
}

impl Envelope {
    fn errors(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.api_version != API_VERSION {
            errors.push(FieldError::new(
                "apiVersion",
                format!("expected {API_VERSION:?}, got {:?}", self.api_version),
            ));
        }
        if self.kind != KIND {
            errors.push(FieldError::new(
                "kind",
                format!("expected {KIND:?}, got {:?}", self.kind),
            ));
        }
        errors
    }

    fn into_job(self) -> StreamJob {
        StreamJob {
            metadata: self.metadata,
            spec: self.spec,
            status: None,
        }
    }
}

/// Reads, parses and validates a `StreamJob` manifest file.
pub fn load_manifest_file(path: &Path) -> Result<StreamJob, LoadError> {
    let yaml = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_manifest(&yaml)
}

// ---------------------------------------------------------------------------------------------
// Structural pass
// ---------------------------------------------------------------------------------------------

/// Deserializes the manifest, turning the first structural error into a [`FieldError`].
fn parse(yaml: &str) -> Result<Envelope, FieldError> {
    if let Ok(serde_yaml::Value::Null) = serde_yaml::from_str(yaml) {
        return Err(FieldError::new("", "the manifest is empty"));
    }
    let de = serde_yaml::Deserializer::from_str(yaml);
    let manifest = match serde_path_to_error::deserialize::<_, Envelope>(de) {
        Ok(manifest) => manifest,
        Err(e) if e.inner().to_string().contains(YAML_ENUM_NEEDS_TAG) => parse_via_value(yaml)?,
        Err(e) => {
            let segments: Vec<Segment> = e.path().iter().cloned().collect();
            return Err(structural_error(yaml, &segments, e.inner()));
        }
    };
    if let Some(error) = ignored_tagged_fields(yaml) {
        return Err(error);
    }
    Ok(manifest)
}

/// What serde_yaml says when an enum variant with data is written as a map.
const YAML_ENUM_NEEDS_TAG: &str = "expected a YAML tag starting with '!'";
/// What serde_yaml's `Value` deserializer says in the same case.
const VALUE_ENUM_NEEDS_TAG: &str = "expected a Value::Tagged enum";

/// serde_yaml reads an enum variant with data only from a YAML tag (`startFrom: !timestamp
/// "…"`), while Kubernetes (JSON) and the CRD schema write it as a one-entry map
/// (`startFrom: {timestamp: "…"}`). Both must load, so on that error the document is read
/// into a `Value`, each such map is turned into the tagged value serde_yaml expects, and the
/// manifest is deserialized from that. (A `Value` has no positions; [`locate`] finds them.)
fn parse_via_value(yaml: &str) -> Result<Envelope, FieldError> {
    use serde_yaml::value::{Tag, TaggedValue};
    use serde_yaml::Value;

    let mut root: Value =
        serde_yaml::from_str(yaml).map_err(|e| structural_error(yaml, &[], &e))?;
    // Each round turns one map into a tagged value, so this ends.
    loop {
        let error = match serde_path_to_error::deserialize::<_, Envelope>(&root) {
            Ok(manifest) => return Ok(manifest),
            Err(e) => e,
        };
        let segments: Vec<Segment> = error.path().iter().cloned().collect();
        let field_error = || structural_error(yaml, &segments, error.inner());
        if !error.inner().to_string().contains(VALUE_ENUM_NEEDS_TAG) {
            return Err(field_error());
        }
        let node = node_at_segments_mut(&mut root, &segments);
        let (variant, value) = match node.as_deref() {
            Some(Value::Mapping(map)) if map.len() == 1 => match map.iter().next() {
                Some((Value::String(variant), value)) => (variant.clone(), value.clone()),
                _ => return Err(field_error()),
            },
            Some(Value::Mapping(map)) => {
                return Err(FieldError::new(
                    render_path(&segments),
                    format!(
                        "expected a map with exactly one key naming the variant, got {} keys",
                        map.len()
                    ),
                ))
            }
            _ => {
                let mut e = field_error();
                e.message = e.message.replace(
                    VALUE_ENUM_NEEDS_TAG,
                    "expected a variant name or a one-entry map",
                );
                return Err(e);
            }
        };
        if let Some(node) = node {
            *node = Value::Tagged(Box::new(TaggedValue {
                tag: Tag::new(variant),
                value,
            }));
        }
    }
}

/// The node at a path of `serde_path_to_error` segments.
fn node_at_segments_mut<'a>(
    mut node: &'a mut serde_yaml::Value,
    segments: &[Segment],
) -> Option<&'a mut serde_yaml::Value> {
    for segment in segments {
        node = match segment {
            Segment::Map { key } => node.get_mut(key.as_str())?,
            Segment::Seq { index } => node.get_mut(*index)?,
            Segment::Enum { .. } => match node {
                serde_yaml::Value::Tagged(tagged) => &mut tagged.value,
                _ => return None,
            },
            Segment::Unknown => return None,
        };
    }
    Some(node)
}

fn structural_error(yaml: &str, segments: &[Segment], inner: &serde_yaml::Error) -> FieldError {
    let mut segments = segments.to_vec();
    let mut message = inner.to_string();
    let mut location = inner.location().map(|l| (l.line(), l.column()));
    if let Some((line, column)) = location {
        message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    // serde_yaml prefixes messages with its own rendering of the path (raw keys joined by
    // dots); the path is reported separately, so drop it.
    for prefix in yaml_path_prefixes(&segments) {
        if let Some(rest) = message.strip_prefix(&format!("{prefix}: ")) {
            message = rest.to_string();
            break;
        }
    }
    // Internally tagged enums (`time`, `format`) are buffered by serde before the variant is
    // read, which hides the field inside them; find it by re-reading the node. serde_yaml then
    // only knows where the enclosing mapping starts, so its location would mislead.
    if let Some(kind) = tagged_kind(&segments) {
        location = None;
        if let Some((field, refined)) = locate_in_tagged(yaml, &segments, kind) {
            segments.push(Segment::Map { key: field });
            message = refined;
        }
    }
    if let Some((line, column)) = location.or_else(|| locate(yaml, &segments)) {
        let _ = write!(message, " (line {line}, column {column})");
    }
    FieldError::new(render_path(&segments), message)
}

/// The line and column (1-based) where the node at `segments` starts in `yaml`.
///
/// serde_yaml knows every node's position but exposes it only on errors, so this walks the
/// document down the path and fails on purpose at the node, then reads the error's position.
fn locate(yaml: &str, segments: &[Segment]) -> Option<(usize, usize)> {
    use serde::de::DeserializeSeed;
    if segments.is_empty() {
        return None;
    }
    let de = serde_yaml::Deserializer::from_str(yaml);
    match Locator(segments).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| (l.line(), l.column())),
        _ => None,
    }
}

const FOUND: &str = "rivulet: node found";

/// Walks a document down a path (see [`locate`]); fails with [`FOUND`] at its end.
struct Locator<'a>(&'a [Segment]);

impl Locator<'_> {
    fn scalar<E: serde::de::Error>(self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }

    fn key(&self) -> Option<&str> {
        match self.0.first()? {
            Segment::Map { key } => Some(key),
            Segment::Enum { variant } => Some(variant),
            _ => None,
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Locator<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Locator<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::{Error, IgnoredAny};
        if self.0.is_empty() {
            return Err(A::Error::custom(FOUND));
        }
        let want = self.key();
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            if want.is_some() && key.as_str() == want {
                return map.next_value_seed(Locator(&self.0[1..]));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::{Error, IgnoredAny};
        if self.0.is_empty() {
            return Err(A::Error::custom(FOUND));
        }
        let want = match self.0[0] {
            Segment::Seq { index } => Some(index),
            _ => None,
        };
        let mut i = 0;
        loop {
            if Some(i) == want {
                seq.next_element_seed(Locator(&self.0[1..]))?;
                return Ok(());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use serde::de::{Error, VariantAccess};
        if self.0.is_empty() {
            return Err(A::Error::custom(FOUND));
        }
        let want = self.key().map(str::to_string);
        let (variant, access) = data.variant::<String>()?;
        if want.as_deref() == Some(variant.as_str()) {
            access.newtype_variant_seed(Locator(&self.0[1..]))
        } else {
            Ok(())
        }
    }
}

/// Renders a path the way this module reports it: `spec.pipeline.aggregates[1].field`.
fn render_path(segments: &[Segment]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(path, "[{index}]");
            }
            Segment::Map { key } => push_key(&mut path, key),
            Segment::Enum { variant } => push_key(&mut path, variant),
            Segment::Unknown => push_key(&mut path, "?"),
        }
    }
    path
}

/// Appends a map key to a path: `.key` for plain keys, `["a.b"]` for any other.
fn push_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '?');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        let _ = write!(path, "[{key:?}]");
    }
}

/// serde_yaml's renderings of `segments` and of each of its ancestors, longest first.
fn yaml_path_prefixes(segments: &[Segment]) -> Vec<String> {
    let mut prefixes = Vec::new();
    let mut current = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(current, "[{index}]");
            }
            Segment::Map { key: name } | Segment::Enum { variant: name } => {
                if !current.is_empty() {
                    current.push('.');
                }
                current.push_str(name);
            }
            Segment::Unknown => {
                if !current.is_empty() {
                    current.push('.');
                }
                current.push('?');
            }
        }
        prefixes.push(current.clone());
    }
    prefixes.reverse();
    prefixes
}

/// The internally tagged enums of the spec, by path: their fields are not tracked by
/// `serde_path_to_error`, so errors inside them are located here.
const TAGGED: &[(&[&str], TaggedKind)] = &[
    (&["spec", "pipeline", "time"], TaggedKind::Time),
    (&["spec", "pipeline", "format"], TaggedKind::Format),
];

#[derive(Clone, Copy)]
enum TaggedKind {
    Time,
    Format,
}

/// The YAML node at a path of map keys.
fn node_at<'a>(root: &'a serde_yaml::Value, keys: &[&str]) -> Option<&'a serde_yaml::Value> {
    keys.iter().try_fold(root, |node, key| node.get(*key))
}

/// Which internally tagged enum `segments` points at, if any.
fn tagged_kind(segments: &[Segment]) -> Option<TaggedKind> {
    let keys: Vec<&str> = segments
        .iter()
        .map(|s| match s {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    TAGGED
        .iter()
        .find(|(path, _)| *path == keys.as_slice())
        .map(|(_, kind)| *kind)
}

/// For an error reported at an internally tagged enum, the field inside it that causes the
/// error and the error's message.
///
/// Serde reads a tagged enum's fields in document order and reports missing fields last, so
/// the culprit is the first field whose addition to the tag (plus the fields before it) turns
/// "missing field" into any other error.
fn locate_in_tagged(
    yaml: &str,
    segments: &[Segment],
    kind: TaggedKind,
) -> Option<(String, String)> {
    let keys: Vec<&str> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let root: serde_yaml::Value = serde_yaml::from_str(yaml).ok()?;
    let node = node_at(&root, &keys)?.as_mapping()?;
    match kind {
        TaggedKind::Time => first_bad_field::<TimeSpec>(node),
        TaggedKind::Format => first_bad_field::<FormatSpec>(node),
    }
}

fn first_bad_field<T: DeserializeOwned>(node: &serde_yaml::Mapping) -> Option<(String, String)> {
    let fails = |m: &serde_yaml::Mapping| -> Option<String> {
        match serde_yaml::from_value::<T>(serde_yaml::Value::Mapping(m.clone())) {
            Ok(_) => None,
            Err(e) => {
                let msg = e.to_string();
                (!msg.starts_with("missing field")).then_some(msg)
            }
        }
    };
    let mut prefix = serde_yaml::Mapping::new();
    if let Some(tag) = node.get("type") {
        prefix.insert("type".into(), tag.clone());
        if let Some(msg) = fails(&prefix) {
            return Some(("type".to_string(), msg));
        }
    }
    for (key, value) in node {
        let Some(name) = key.as_str() else { continue };
        if name == "type" {
            continue;
        }
        prefix.insert(key.clone(), value.clone());
        if let Some(msg) = fails(&prefix) {
            return Some((name.to_string(), msg));
        }
    }
    None
}

/// Serde silently ignores extra fields next to the tag of a tagged variant without fields
/// (`time: {type: processing, field: ts}`); report them as the unknown fields they are.
fn ignored_tagged_fields(yaml: &str) -> Option<FieldError> {
    let root: serde_yaml::Value = serde_yaml::from_str(yaml).ok()?;
    for (keys, _) in TAGGED {
        let Some(node) = node_at(&root, keys).and_then(|n| n.as_mapping()) else {
            continue;
        };
        let tag = node.get("type").and_then(|t| t.as_str());
        if !matches!(tag, Some("processing" | "json" | "raw")) {
            continue;
        }
        if let Some(extra) = node.keys().find(|k| k.as_str() != Some("type")) {
            let mut path = keys.join(".");
            let name = match extra.as_str() {
                Some(name) => name.to_string(),
                None => format!("{extra:?}"),
            };
            push_key(&mut path, &name);
            return Some(FieldError::new(
                path,
                format!(
                    "unknown field `{name}`: `type: {}` takes no other fields",
                    tag.unwrap_or_default()
                ),
            ));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Semantic pass
// ---------------------------------------------------------------------------------------------

/// Largest `maxParallelism` (number of key groups), as in Flink.
pub const MAX_KEY_GROUPS: u32 = 32_768;
/// Shortest checkpoint interval.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration(std::time::Duration::from_millis(100));
/// Longest watermark delay (`time.maxOutOfOrderness`): a week.
pub const MAX_OUT_OF_ORDERNESS: Duration = Duration(std::time::Duration::from_secs(7 * 24 * 3600));
/// Result field names the window operator writes itself.
pub const RESERVED_OUTPUT_NAMES: &[&str] = &["windowStart", "windowEnd", "kind", "key"];
/// Schemes `state.storage` and `restoreFrom` may use.
pub const STORAGE_SCHEMES: &[&str] = &["file", "s3", "gs", "az"];

const PIPELINE: &str = "spec.pipeline";

/// A DNS-1123 label: 1 to 63 lowercase letters, digits and '-', starting and ending with a
/// letter or digit.
/// A Kubernetes resource quantity: a positive decimal number with an optional binary
/// (`Ki`…`Ei`) or decimal (`k`, `M`…`E`) suffix.
fn is_quantity(value: &str) -> bool {
    const SUFFIXES: [&str; 12] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
    ];
    let number = SUFFIXES
        .iter()
        .find_map(|s| value.strip_suffix(s))
        .unwrap_or(value);
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(digits) && number.bytes().any(|b| b != b'0' && b != b'.')
}

fn is_dns_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    let ok_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            value.len() <= 63
                && bytes.iter().all(|b| ok_char(b) || *b == b'-')
                && ok_char(first)
                && ok_char(last)
        }
        _ => false,
    }
}

/// Checks a parsed manifest and returns every problem found (empty when it is valid).
pub fn validate(manifest: &StreamJob) -> Vec<FieldError> {
    let mut v = Validator::default();
    v.manifest(manifest);
    v.errors
}

#[derive(Default)]
struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }

    fn manifest(&mut self, m: &StreamJob) {
        self.dns_label("metadata.name", m.job_name());
        if m.job_name().len() > crate::job::MAX_NAME_LEN && is_dns_label(m.job_name()) {
            self.err(
                "metadata.name",
                format!(
                    "must be at most {} characters (the workers' StatefulSet adds a revision \
                     hash to it in a 63-character label), got {}",
                    crate::job::MAX_NAME_LEN,
                    m.job_name().len()
                ),
            );
        }
        if let Some(ns) = &m.metadata.namespace {
            self.dns_label("metadata.namespace", ns);
        }

        let spec = &m.spec;
        if let Some(image) = &spec.image {
            self.non_blank("spec.image", image);
        }
        if !(1..=MAX_KEY_GROUPS).contains(&spec.max_parallelism) {
            self.err(
                "spec.maxParallelism",
                format!(
                    "must be between 1 and {MAX_KEY_GROUPS}, got {}",
                    spec.max_parallelism
                ),
            );
        }
        // Parallelism 0 suspends the job, as a scaler would set it.
        if spec.parallelism > spec.max_parallelism {
            self.err(
                "spec.parallelism",
                format!(
                    "must be at most maxParallelism ({}), got {}",
                    spec.max_parallelism, spec.parallelism
                ),
            );
        }
        if let Some(restore) = &spec.restore_from {
            self.storage_url("spec.restoreFrom", restore);
        }
        self.pipeline(m.job_name(), &spec.pipeline);

        let state = &spec.state;
        if state.checkpoint_interval < MIN_CHECKPOINT_INTERVAL {
            self.err(
                "spec.state.checkpointInterval",
                format!(
                    "must be at least {MIN_CHECKPOINT_INTERVAL}, got {}",
                    state.checkpoint_interval
                ),
            );
        }
        self.storage_url("spec.state.storage", &state.storage);
        if state.retain < 1 {
            self.err("spec.state.retain", "must be at least 1, got 0");
        }
        self.lifecycle(spec);
    }

    /// Savepoints, rollback, pod template, credentials and autoscaler settings.
    fn lifecycle(&mut self, spec: &StreamJobSpec) {
        for (path, nonce) in [
            ("spec.savepointTrigger", &spec.savepoint_trigger),
            ("spec.restartTrigger", &spec.restart_trigger),
        ] {
            if let Some(nonce) = nonce {
                self.non_blank(path, nonce);
            }
        }
        let sp = &spec.savepoints;
        if let Some(interval) = sp.interval {
            if interval < spec.state.checkpoint_interval {
                self.err(
                    "spec.savepoints.interval",
                    format!(
                        "must be at least the checkpoint interval ({}), got {interval}",
                        spec.state.checkpoint_interval
                    ),
                );
            }
        }
        if sp.max_count < 1 {
            self.err(
                "spec.savepoints.maxCount",
                "must be at least 1 (the newest savepoint is always kept), got 0",
            );
        }
        if sp.max_age.is_some_and(|age| age.is_zero()) {
            self.err("spec.savepoints.maxAge", "must be more than 0s");
        }
        if sp.timeout.is_zero() {
            self.err("spec.savepoints.timeout", "must be more than 0s");
        }
        if spec.readiness_timeout.is_zero() {
            self.err("spec.readinessTimeout", "must be more than 0s");
        }

        let pod = &spec.pod_template;
        if let Some(account) = &pod.service_account_name {
            self.dns_subdomain("spec.podTemplate.serviceAccountName", account);
        }
        if let Some(claim) = &pod.data_volume_claim {
            if !is_quantity(&claim.size) {
                self.err(
                    "spec.podTemplate.dataVolumeClaim.size",
                    format!(
                        "must be a Kubernetes quantity such as 10Gi or 500M, got {:?}",
                        claim.size
                    ),
                );
            }
            if let Some(class) = &claim.storage_class_name {
                self.dns_subdomain("spec.podTemplate.dataVolumeClaim.storageClassName", class);
            }
        }
        for (i, env) in pod.env.iter().enumerate() {
            if env.name.is_empty() {
                self.err(
                    format!("spec.podTemplate.env[{i}].name"),
                    "must not be empty",
                );
            } else if env.name.starts_with("RIVULET_") {
                self.err(
                    format!("spec.podTemplate.env[{i}].name"),
                    format!(
                        "{:?}: variables starting with RIVULET_ are set by the control plane",
                        env.name
                    ),
                );
            }
        }
        for (path, secret) in [
            ("spec.credentials.kafka.secretName", &spec.credentials.kafka),
            (
                "spec.credentials.storage.secretName",
                &spec.credentials.storage,
            ),
        ] {
            if let Some(secret) = secret {
                self.dns_subdomain(path, &secret.secret_name);
            }
        }

        let a = &spec.autoscaler;
        let max = a.max_parallelism.unwrap_or(spec.max_parallelism);
        if a.min_parallelism < 1 {
            self.err(
                "spec.autoscaler.minParallelism",
                "must be at least 1, got 0",
            );
        }
        if let Some(limit) = a.max_parallelism {
            if limit > spec.max_parallelism {
                self.err(
                    "spec.autoscaler.maxParallelism",
                    format!(
                        "must be at most the job's maxParallelism ({}), got {limit}",
                        spec.max_parallelism
                    ),
                );
            }
        }
        if a.min_parallelism > max {
            self.err(
                "spec.autoscaler.minParallelism",
                format!(
                    "must be at most the autoscaler's maxParallelism ({max}), got {}",
                    a.min_parallelism
                ),
            );
        }
        if !(a.target_utilization > 0.0 && a.target_utilization <= 1.0) {
            self.err(
                "spec.autoscaler.targetUtilization",
                format!(
                    "must be above 0 and at most 1, got {}",
                    a.target_utilization
                ),
            );
        }
        for (path, factor) in [
            ("spec.autoscaler.maxScaleUpFactor", a.max_scale_up_factor),
            (
                "spec.autoscaler.maxScaleDownFactor",
                a.max_scale_down_factor,
            ),
        ] {
            if !(factor > 1.0 && factor.is_finite()) {
                self.err(path, format!("must be above 1, got {factor}"));
            }
        }
        for (path, d) in [
            ("spec.autoscaler.catchUpDuration", a.catch_up_duration),
            ("spec.autoscaler.metricsWindow", a.metrics_window),
        ] {
            if d.is_zero() {
                self.err(path, "must be more than 0s");
            }
        }
    }

    fn pipeline(&mut self, job_name: &str, p: &PipelineSpec) {
        // Source.
        let source = &p.source;
        let src = format!("{PIPELINE}.source");
        if let Some(servers) = &source.bootstrap_servers {
            self.bootstrap_servers(&format!("{src}.bootstrapServers"), servers);
        }
        if source.topics.is_empty() {
            self.err(format!("{src}.topics"), "at least one topic is needed");
        }
        let mut seen = HashSet::new();
        for (i, topic) in source.topics.iter().enumerate() {
            let path = format!("{src}.topics[{i}]");
            if self.topic(&path, topic) && !seen.insert(topic.as_str()) {
                self.err(path, format!("topic {topic:?} is listed twice"));
            }
        }
        if let StartFrom::Timestamp(ts) = &source.start_from {
            self.timestamp(&format!("{src}.startFrom.timestamp"), ts);
        }
        self.client_properties(&src, &source.properties, &source.secret_properties);

        // Format: which fields a decoded record has, when the format fixes them.
        let decoded: Option<Vec<String>> = match &p.format {
            FormatSpec::Json => None,
            FormatSpec::Raw => Some(vec!["value".to_string()]),
            FormatSpec::Csv { columns, delimiter } => {
                self.csv(columns, *delimiter);
                Some(columns.clone())
            }
        };
        let decoded_scope = decoded.as_ref().map(|names| Scope {
            names: names.as_slice(),
            what: match p.format {
                FormatSpec::Raw => "a field of the raw format (only `value`)",
                _ => "a CSV column",
            },
        });

        // Filter (reads the decoded record).
        for (i, c) in p.filter.iter().enumerate() {
            let path = format!("{PIPELINE}.filter[{i}]");
            if self.field_path(&format!("{path}.field"), &c.field) {
                self.readable(&format!("{path}.field"), &c.field, decoded_scope.as_ref());
            }
            match (c.op, &c.value) {
                (CompareOp::Exists, Some(_)) => {
                    self.err(format!("{path}.value"), "`exists` takes no value")
                }
                (CompareOp::Exists, None) => {}
                (CompareOp::In, Some(serde_json::Value::Array(_))) => {}
                (CompareOp::In, _) => self.err(
                    format!("{path}.value"),
                    "`in` needs a list of values, e.g. `value: [a, b]`",
                ),
                (op, None) => self.err(
                    format!("{path}.value"),
                    format!("`{}` needs a value", op.name()),
                ),
                (op, Some(serde_json::Value::Array(_) | serde_json::Value::Object(_))) => self.err(
                    format!("{path}.value"),
                    format!(
                        "`{}` needs a single value (a string, number or boolean); \
                             use `in` to match a list",
                        op.name()
                    ),
                ),
                (_, Some(_)) => {}
            }
        }

        // Projection (reads the decoded record; what follows reads the projection).
        let mut names = Vec::new();
        let mut seen = HashSet::new();
        for (i, proj) in p.project.iter().enumerate() {
            let path = format!("{PIPELINE}.project[{i}]");
            if proj.name.trim().is_empty() {
                self.err(format!("{path}.name"), "must not be empty");
            } else if proj.name.starts_with('@') {
                self.err(
                    format!("{path}.name"),
                    format!(
                        "{:?}: names starting with '@' are reserved for Kafka metadata",
                        proj.name
                    ),
                );
            } else if proj.name.contains('.') {
                self.err(
                    format!("{path}.name"),
                    format!(
                        "{:?}: a projected name cannot contain '.', since field paths are \
                         split on dots",
                        proj.name
                    ),
                );
            } else if !seen.insert(proj.name.as_str()) {
                self.err(
                    format!("{path}.name"),
                    format!("{:?} is projected twice", proj.name),
                );
            }
            if !proj.name.trim().is_empty() && !names.contains(&proj.name) {
                names.push(proj.name.clone());
            }
            match (&proj.field, &proj.expr) {
                (Some(field), None) => {
                    if self.field_path(&format!("{path}.field"), field) {
                        self.readable(&format!("{path}.field"), field, decoded_scope.as_ref());
                    }
                }
                (None, Some(expr)) => {
                    self.projection_expr(&format!("{path}.expr"), expr, decoded_scope.as_ref())
                }
                (Some(_), Some(_)) => self.err(
                    format!("{path}.expr"),
                    "give either `field` (a field path) or `expr` (an expression), not both",
                ),
                (None, None) => self.err(
                    format!("{path}.field"),
                    "a projection needs a `field` (a field path) or an `expr` (an arithmetic \
                     expression like \"price * 0.908\")",
                ),
            }
        }
        let after = if p.project.is_empty() {
            decoded_scope
        } else {
            Some(Scope {
                names: names.as_slice(),
                what: "a projected name",
            })
        };

        // Time.
        if let TimeSpec::Event {
            field,
            max_out_of_orderness,
            idle_timeout,
            max_drift,
            ..
        } = &p.time
        {
            let path = format!("{PIPELINE}.time.field");
            if self.field_path(&path, field) {
                self.readable(&path, field, after.as_ref());
            }
            if *max_out_of_orderness > MAX_OUT_OF_ORDERNESS {
                self.err(
                    format!("{PIPELINE}.time.maxOutOfOrderness"),
                    format!(
                        "must be at most {MAX_OUT_OF_ORDERNESS} (windows would wait that \
                         long to fire), got {max_out_of_orderness}"
                    ),
                );
            }
            if let Some(idle) = idle_timeout {
                if *idle == Duration::ZERO {
                    self.err(
                        format!("{PIPELINE}.time.idleTimeout"),
                        "must be greater than 0 (leave it out to never mark a partition idle)",
                    );
                }
            }
            if *max_drift == Duration::ZERO {
                self.err(
                    format!("{PIPELINE}.time.maxDrift"),
                    "must be greater than 0 (a partition may run this far ahead of the \
                     slowest one in event time; a large value such as 365d turns alignment off)",
                );
            }
        }

        // Key.
        let mut seen = HashSet::new();
        for (i, k) in p.key.iter().enumerate() {
            let path = format!("{PIPELINE}.key[{i}]");
            if self.field_path(&path, k) {
                if !seen.insert(k.as_str()) {
                    self.err(path.clone(), format!("{k:?} is listed twice"));
                }
                self.readable(&path, k, after.as_ref());
            }
        }

        // Window.
        match &p.window {
            Some(w) => {
                let path = format!("{PIPELINE}.window");
                let positive = |d: &Option<Duration>| d.is_some_and(|d| d > Duration::ZERO);
                match w.kind {
                    WindowType::Tumbling | WindowType::Sliding => {
                        let kind = if w.kind == WindowType::Tumbling {
                            "tumbling"
                        } else {
                            "sliding"
                        };
                        if !positive(&w.size) {
                            self.err(
                                format!("{path}.size"),
                                format!("a {kind} window needs a size greater than 0"),
                            );
                        }
                        if w.gap.is_some() {
                            self.err(
                                format!("{path}.gap"),
                                format!("a {kind} window takes no gap (only session windows do)"),
                            );
                        }
                        if w.kind == WindowType::Tumbling {
                            if w.slide.is_some() {
                                self.err(
                                    format!("{path}.slide"),
                                    "a tumbling window takes no slide (use `type: sliding`)",
                                );
                            }
                        } else if !positive(&w.slide) {
                            self.err(
                                format!("{path}.slide"),
                                "a sliding window needs a slide greater than 0",
                            );
                        } else if let (Some(size), Some(slide)) = (w.size, w.slide) {
                            if slide > size && size > Duration::ZERO {
                                self.err(
                                    format!("{path}.slide"),
                                    format!(
                                        "must be at most the window size ({size}), got {slide}"
                                    ),
                                );
                            }
                        }
                    }
                    WindowType::Session => {
                        if !positive(&w.gap) {
                            self.err(
                                format!("{path}.gap"),
                                "a session window needs a gap greater than 0",
                            );
                        }
                        for (field, value) in [("size", &w.size), ("slide", &w.slide)] {
                            if value.is_some() {
                                self.err(
                                    format!("{path}.{field}"),
                                    format!("a session window takes no {field} (only a gap)"),
                                );
                            }
                        }
                    }
                }
                if p.aggregates.is_empty() {
                    self.err(
                        format!("{PIPELINE}.aggregates"),
                        "a window needs at least one aggregate",
                    );
                }
                if p.key.is_empty() {
                    self.err(
                        format!("{PIPELINE}.key"),
                        "a window needs at least one key field: keyless (global) windows are \
                         not supported",
                    );
                }
            }
            None => {
                if !p.aggregates.is_empty() {
                    self.err(
                        format!("{PIPELINE}.aggregates"),
                        "aggregates need a window (`spec.pipeline.window`)",
                    );
                }
            }
        }

        // Aggregates.
        let mut seen = HashSet::new();
        for (i, a) in p.aggregates.iter().enumerate() {
            let path = format!("{PIPELINE}.aggregates[{i}]");
            if a.name.trim().is_empty() {
                self.err(format!("{path}.name"), "must not be empty");
            } else if RESERVED_OUTPUT_NAMES.contains(&a.name.as_str()) {
                self.err(
                    format!("{path}.name"),
                    format!(
                        "{:?} is reserved for the window's own output (reserved: {})",
                        a.name,
                        RESERVED_OUTPUT_NAMES.join(", ")
                    ),
                );
            } else if !seen.insert(a.name.as_str()) {
                self.err(
                    format!("{path}.name"),
                    format!("{:?} is used by another aggregate", a.name),
                );
            }
            match (&a.field, a.function.needs_field()) {
                (Some(_), false) => self.err(
                    format!("{path}.field"),
                    "`count` takes no field (it counts records)",
                ),
                (None, true) => self.err(
                    format!("{path}.field"),
                    format!("`{}` needs a field", a.function.name()),
                ),
                (Some(field), true) => {
                    let fpath = format!("{path}.field");
                    if self.field_path(&fpath, field) {
                        self.readable(&fpath, field, after.as_ref());
                    }
                }
                (None, false) => {}
            }
        }

        // Sink and dead letters.
        let sink = &p.sink;
        let spath = format!("{PIPELINE}.sink");
        if self.topic(&format!("{spath}.topic"), &sink.topic) && source.topics.contains(&sink.topic)
        {
            self.err(
                format!("{spath}.topic"),
                format!(
                    "{:?} is also a source topic; the job would read its own output",
                    sink.topic
                ),
            );
        }
        if let Some(servers) = &sink.bootstrap_servers {
            self.bootstrap_servers(&format!("{spath}.bootstrapServers"), servers);
        }
        self.client_properties(&spath, &sink.properties, &sink.secret_properties);

        let dpath = format!("{PIPELINE}.deadLetter.topic");
        if let Some(topic) = &p.dead_letter.topic {
            let valid = self.topic(&dpath, topic);
            let conflict = if !valid {
                None
            } else if source.topics.contains(topic) {
                Some("also a source topic; it must differ")
            } else if *topic == sink.topic {
                Some("also the sink topic; rejected records would mix with results")
            } else {
                None
            };
            if let Some(conflict) = conflict {
                self.err(dpath, format!("{topic:?} is {conflict}"));
            }
        } else if !job_name.is_empty() {
            let default = format!("{job_name}-dlq");
            if source.topics.contains(&default) || sink.topic == default {
                self.err(
                    dpath,
                    format!(
                        "the default dead-letter topic {default:?} is also a source or sink \
                         topic; set a different one"
                    ),
                );
            }
        }

        if p.limits.max_record_bytes < 1 {
            self.err(
                format!("{PIPELINE}.limits.maxRecordBytes"),
                "must be at least 1, got 0",
            );
        }
    }

    /// Checks a non-empty value; returns whether it is non-empty.
    fn non_blank(&mut self, path: &str, value: &str) -> bool {
        if value.trim().is_empty() {
            self.err(path, "must not be empty");
            false
        } else {
            true
        }
    }

    /// A field path must be non-empty and have no empty segment; returns whether it is valid.
    fn field_path(&mut self, path: &str, field: &str) -> bool {
        if !self.non_blank(path, field) {
            return false;
        }
        if !field.starts_with('@') && field.split('.').any(|s| s.trim().is_empty()) {
            self.err(
                path,
                format!("{field:?} is not a valid field path (empty segment between dots)"),
            );
            return false;
        }
        true
    }

    /// A projection's arithmetic expression must parse, and the fields it reads be readable.
    fn projection_expr(&mut self, path: &str, expr: &str, scope: Option<&Scope>) {
        if !self.non_blank(path, expr) {
            return;
        }
        match crate::expr::parse(expr) {
            Ok(parsed) => {
                let mut seen = HashSet::new();
                for field in parsed.fields() {
                    if seen.insert(field) {
                        self.readable(path, field, scope);
                    }
                }
            }
            Err(e) => self.err(path, format!("{expr:?}: {e}")),
        }
    }

    /// A field read from a record whose top-level fields are known must start with one of them.
    fn readable(&mut self, path: &str, field: &str, scope: Option<&Scope>) {
        let Some(scope) = scope else { return };
        if field.starts_with('@') {
            return;
        }
        let head = field.split('.').next().unwrap_or(field);
        if !scope.names.iter().any(|n| n == head) {
            let known = if scope.names.is_empty() {
                "none".to_string()
            } else {
                scope.names.join(", ")
            };
            self.err(
                path,
                format!("{field:?} is not {} (available: {known})", scope.what),
            );
        }
    }

    /// A Kubernetes object name: DNS-1123 labels joined by dots, at most 253 characters.
    fn dns_subdomain(&mut self, path: &str, value: &str) {
        if value.is_empty() {
            self.err(path, "must not be empty");
        } else if value.len() > 253 || !value.split('.').all(is_dns_label) {
            self.err(
                path,
                format!(
                    "must be a Kubernetes object name (lowercase letters, digits, '-' and '.', \
                     at most 253), got {value:?}"
                ),
            );
        }
    }

    fn dns_label(&mut self, path: &str, value: &str) {
        if value.is_empty() {
            self.err(path, "must not be empty");
            return;
        }
        if !is_dns_label(value) {
            self.err(
                path,
                format!(
                    "must be a DNS-1123 label (at most 63 lowercase letters, digits and '-', \
                     starting and ending with a letter or digit), got {value:?}"
                ),
            );
        }
    }

    /// A Kafka topic name; returns whether it is valid.
    fn topic(&mut self, path: &str, topic: &str) -> bool {
        if topic.is_empty() {
            self.err(path, "must not be empty");
            return false;
        }
        let legal = topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !legal || topic.len() > 249 || topic == "." || topic == ".." {
            self.err(
                path,
                format!(
                    "{topic:?} is not a valid Kafka topic name (at most 249 letters, digits, \
                     '.', '_' and '-')"
                ),
            );
            return false;
        }
        true
    }

    fn bootstrap_servers(&mut self, path: &str, servers: &str) {
        if servers.trim().is_empty() {
            self.err(path, "must not be empty (leave it out to use the default)");
        } else if servers.split(',').any(|s| s.trim().is_empty()) {
            self.err(
                path,
                format!("{servers:?} has an empty entry; expected `host:port[,host:port]`"),
            );
        }
    }

    fn timestamp(&mut self, path: &str, ts: &str) {
        match chrono::DateTime::parse_from_rfc3339(ts.trim()) {
            Ok(t) if t.timestamp_millis() >= 0 => {}
            Ok(_) => self.err(path, format!("{ts:?} is before 1970-01-01T00:00:00Z")),
            Err(_) => self.err(
                path,
                format!("expected an RFC 3339 time like \"2024-05-01T12:00:00Z\", got {ts:?}"),
            ),
        }
    }

    fn csv(&mut self, columns: &[String], delimiter: char) {
        let path = format!("{PIPELINE}.format.columns");
        if columns.is_empty() {
            self.err(path.clone(), "a CSV format needs at least one column name");
        }
        let mut seen = HashSet::new();
        for (i, c) in columns.iter().enumerate() {
            let cpath = format!("{path}[{i}]");
            if c.trim().is_empty() {
                self.err(cpath, "must not be empty");
            } else if !seen.insert(c.as_str()) {
                self.err(cpath, format!("column {c:?} is named twice"));
            }
        }
        if !delimiter.is_ascii() || matches!(delimiter, '"' | '\n' | '\r') {
            self.err(
                format!("{PIPELINE}.format.delimiter"),
                format!(
                    "must be one ASCII character other than a quote or a line break, got \
                     {delimiter:?}"
                ),
            );
        }
    }

    fn client_properties(
        &mut self,
        base: &str,
        properties: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, SecretRef>,
    ) {
        for key in properties.keys() {
            let mut path = format!("{base}.properties");
            push_key(&mut path, key);
            self.client_property_name(&path, key);
        }
        for (key, secret) in secrets {
            let mut path = format!("{base}.secretProperties");
            push_key(&mut path, key);
            self.client_property_name(&path, key);
            if properties.contains_key(key) {
                self.err(
                    path.clone(),
                    format!("{key:?} is also set in `properties`; set it in one place"),
                );
            }
            match secret {
                SecretRef::Env(var) => {
                    self.non_blank(&format!("{path}.env"), var);
                }
                SecretRef::File(file) => {
                    self.non_blank(&format!("{path}.file"), file);
                }
            }
        }
    }

    fn client_property_name(&mut self, path: &str, key: &str) {
        if key.trim().is_empty() {
            self.err(path, "a property name must not be empty");
        } else if key == "bootstrap.servers" {
            self.err(path, "set `bootstrapServers` instead");
        }
    }

    /// `scheme://…` with a supported scheme and something after it.
    fn storage_url(&mut self, path: &str, url: &str) {
        let schemes = STORAGE_SCHEMES
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(", ");
        let expected = format!(
            "expected a URL starting with one of {schemes} (e.g. \"s3://bucket/prefix\" or \
             \"file:///var/lib/rivulet\"), got {url:?}"
        );
        let Some((scheme, rest)) = url.split_once("://") else {
            self.err(path, expected);
            return;
        };
        if !STORAGE_SCHEMES.contains(&scheme) {
            self.err(path, expected);
            return;
        }
        let empty_location = if scheme == "file" {
            rest.is_empty()
        } else {
            rest.split('/').next().unwrap_or_default().is_empty()
        };
        if empty_location {
            let what = if scheme == "file" {
                "a path"
            } else {
                "a bucket or container name"
            };
            self.err(
                path,
                format!("{url:?} names no location: expected {what} after {scheme}://"),
            );
        }
    }
}

/// The top-level fields a record is known to have at some stage of the pipeline.
struct Scope<'a> {
    names: &'a [String],
    what: &'static str,
}

/// The CEL rules of the custom resource (`x-kubernetes-validations`), as the API server
/// enforces them: on creation (`old` absent) and on an update of `old`, whose transition
/// rules (`maxParallelism` is immutable) compare the two. Each broken rule is named by its
/// field path.
pub fn validate_cel(job: &StreamJob, old: Option<&StreamJob>) -> Result<(), LoadError> {
    let to_value = |j: &StreamJob| serde_json::to_value(&j.spec).unwrap_or_default();
    let new = to_value(job);
    let old = old.map(to_value);
    match StreamJobSpec::validate_cel(&new, old.as_ref()) {
        Ok(()) => Ok(()),
        Err(errors) => Err(LoadError::Invalid(
            errors
                .into_vec()
                .into_iter()
                .map(|e| {
                    let path = match e.field_path.trim_start_matches('.') {
                        "" => "spec".to_string(),
                        p if p.starts_with("spec") => p.to_string(),
                        p => format!("spec.{p}"),
                    };
                    FieldError::new(path, e.message)
                })
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{AggregateFn, AggregateSpec, Condition, Projection, WindowSpec};

    /// A manifest that sets every field.
    const FULL: &str = r#"
apiVersion: rivulet.dev/v1alpha1
kind: StreamJob
metadata:
  name: clicks-per-user
  namespace: analytics
  labels: {team: web}
  annotations: {owner: alice}
spec:
  image: ghcr.io/rivulet/worker:0.1.0
  parallelism: 4
  maxParallelism: 256
  restoreFrom: s3://snapshots/analytics/clicks-per-user/savepoints/7
  pipeline:
    source:
      bootstrapServers: kafka-0:9092,kafka-1:9092
      topics: [clicks, clicks-replay]
      startFrom:
        timestamp: "2024-05-01T12:00:00+02:00"
      isolationLevel: read_uncommitted
      properties:
        security.protocol: SASL_SSL
        sasl.mechanism: PLAIN
      secretProperties:
        sasl.username: {env: KAFKA_USER}
        sasl.password: {file: /var/run/secrets/kafka/password}
    format:
      type: csv
      columns: [ts, user, page, amount, country]
      delimiter: ";"
    time:
      type: event
      field: ts
      format: epochMillis
      maxOutOfOrderness: 2s
      idleTimeout: 30s
      maxFutureSkew: 1h
    filter:
      - {field: page, op: ne, value: /health}
      - {field: country, op: in, value: [de, fr]}
      - {field: amount, op: exists}
    project:
      - {name: ts, field: ts}
      - {name: user, field: user}
      - {name: amount, field: amount}
      - {name: page, field: page}
    key: [user]
    window:
      type: sliding
      size: 1m
      slide: 10s
      allowedLateness: 5s
    aggregates:
      - {name: clicks, fn: count}
      - {name: revenue, fn: sum, field: amount}
      - {name: pages, fn: distinctCount, field: page}
      - {name: firstAt, fn: first, field: "@timestamp"}
    sink:
      topic: clicks-per-user
      bootstrapServers: kafka-out:9092
      deliveryGuarantee: at-least-once
      properties: {compression.type: zstd}
      secretProperties:
        sasl.password: {env: SINK_PASSWORD}
    deadLetter:
      topic: clicks-dlq
    limits:
      maxRecordBytes: 65536
  state:
    backend: rocksdb
    checkpointInterval: 5s
    storage: s3://snapshots/rivulet
    retain: 5
  upgradeMode: last-state
  jobState: running
  savepointTrigger: "2026-12-01"
  restartTrigger: "1"
  savepoints:
    interval: 1h
    maxCount: 10
    maxAge: 7d
    onDeletion: true
    timeout: 5m
  readinessTimeout: 2m
  podTemplate:
    resources:
      requests: {cpu: "1", memory: 2Gi}
      limits: {memory: 4Gi}
    nodeSelector: {disk: ssd}
    tolerations:
      - {key: dedicated, operator: Equal, value: streaming, effect: NoSchedule}
    affinity:
      podAntiAffinity:
        preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {rivulet.dev/job: clicks-per-user}}
    serviceAccountName: rivulet-worker
    env:
      - {name: TZ, value: UTC}
    annotations: {prometheus.io/scrape: "true"}
    labels: {team: web}
    imagePullPolicy: IfNotPresent
  credentials:
    kafka: {secretName: kafka-credentials}
    storage: {secretName: s3-credentials}
  autoscaler:
    enabled: true
    minParallelism: 2
    maxParallelism: 16
    targetUtilization: 0.6
    catchUpDuration: 10m
    stabilization: 2m
    scaleDownInterval: 30m
    maxScaleUpFactor: 2
    maxScaleDownFactor: 1.5
    metricsWindow: 5m
"#;

    /// The smallest valid manifest: everything else defaults.
    const MINIMAL: &str = r#"
apiVersion: rivulet.dev/v1alpha1
kind: StreamJob
metadata:
  name: passthrough
spec:
  pipeline:
    source:
      topics: [in]
    time:
      type: processing
    sink:
      topic: out
"#;

    fn full() -> StreamJob {
        load_manifest(FULL).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The errors of a YAML document (panics if it loads).
    fn load_errors(yaml: &str) -> Vec<FieldError> {
        match load_manifest(yaml) {
            Ok(_) => panic!("expected the manifest to be rejected"),
            Err(LoadError::Invalid(errors)) => errors,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// The one structural error of `FULL` with `from` replaced by `to`.
    fn structural(from: &str, to: &str) -> FieldError {
        assert!(FULL.contains(from), "FULL does not contain {from:?}");
        let errors = load_errors(&FULL.replacen(from, to, 1));
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    /// Asserts that `errors` has one at `path` whose message contains `needle`.
    #[track_caller]
    fn assert_has(errors: &[FieldError], path: &str, needle: &str) {
        assert!(
            errors
                .iter()
                .any(|e| e.path == path && e.message.contains(needle)),
            "no error at {path} containing {needle:?} in:\n{}",
            errors
                .iter()
                .map(|e| format!("  {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// Validates `FULL` after `edit` and asserts the error at `path`.
    #[track_caller]
    fn semantic(edit: impl FnOnce(&mut StreamJob), path: &str, needle: &str) {
        let mut m = full();
        edit(&mut m);
        assert_has(&validate(&m), path, needle);
    }

    fn pipeline(m: &mut StreamJob) -> &mut PipelineSpec {
        &mut m.spec.pipeline
    }

    // --- loading ----------------------------------------------------------------------------

    #[test]
    fn full_manifest_loads_and_round_trips() {
        let m = full();
        assert_eq!(m.job_name(), "clicks-per-user");
        assert_eq!(m.job_namespace(), "analytics");
        assert_eq!(m.spec.parallelism, 4);
        assert_eq!(m.spec.max_parallelism, 256);
        let p = &m.spec.pipeline;
        assert_eq!(p.source.topics, ["clicks", "clicks-replay"]);
        assert_eq!(
            p.source.start_from,
            StartFrom::Timestamp("2024-05-01T12:00:00+02:00".into())
        );
        assert_eq!(
            p.source.secret_properties["sasl.password"],
            SecretRef::File("/var/run/secrets/kafka/password".into())
        );
        assert!(
            matches!(&p.format, FormatSpec::Csv { delimiter: ';', columns } if columns.len() == 5)
        );
        assert!(matches!(
            &p.time,
            TimeSpec::Event { max_out_of_orderness, idle_timeout: Some(idle), .. }
                if *max_out_of_orderness == Duration::from_secs(2) && *idle == Duration::from_secs(30)
        ));
        let w = p.window.as_ref().unwrap();
        assert_eq!(w.kind, WindowType::Sliding);
        assert_eq!(w.size, Some(Duration::from_secs(60)));
        assert_eq!(p.aggregates[2].function, AggregateFn::DistinctCount);
        assert_eq!(p.limits.max_record_bytes, 65536);
        assert_eq!(m.spec.state.retain, 5);

        let yaml = serde_yaml::to_string(&m).unwrap();
        let again = load_manifest(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(again, m);
    }

    #[test]
    fn minimal_manifest_loads_with_defaults() {
        let m = load_manifest(MINIMAL).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.spec.parallelism, 1);
        assert_eq!(m.spec.max_parallelism, crate::job::DEFAULT_MAX_PARALLELISM);
        assert_eq!(m.spec.pipeline.format, FormatSpec::Json);
        assert_eq!(m.spec.state.retain, 3);
        assert_eq!(m.job_namespace(), "default");
        let again = load_manifest(&serde_yaml::to_string(&m).unwrap()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                load_manifest_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let missing = std::env::temp_dir().join("rivulet-no-such-manifest.yaml");
        let err = load_manifest_file(&missing).unwrap_err();
        assert!(matches!(err, LoadError::Io { .. }));
        assert!(
            err.to_string().contains("rivulet-no-such-manifest.yaml"),
            "{err}"
        );

        let path =
            std::env::temp_dir().join(format!("rivulet-manifest-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            MINIMAL.replace("name: passthrough", "name: Bad_Name"),
        )
        .unwrap();
        let result = load_manifest_file(&path);
        std::fs::remove_file(&path).unwrap();
        assert_has(
            result.unwrap_err().field_errors(),
            "metadata.name",
            "DNS-1123",
        );
    }

    #[test]
    fn load_error_lists_every_problem() {
        let err = load_manifest(&MINIMAL.replace("topic: out", "topic: in")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid manifest:\n  - spec.pipeline.sink.topic: \"in\" is also a source topic; \
             the job would read its own output"
        );
    }

    // --- structural errors ------------------------------------------------------------------

    #[test]
    fn wrong_duration_reports_its_path() {
        let e = structural("size: 1m", "size: ten");
        assert_eq!(e.path, "spec.pipeline.window.size");
        assert!(
            e.message
                .starts_with(r#"expected a duration like "10s", got "ten" (line "#),
            "{e}"
        );
        assert!(e.to_string().starts_with(
            r#"spec.pipeline.window.size: expected a duration like "10s", got "ten""#
        ));

        let e = structural("checkpointInterval: 5s", "checkpointInterval: 5");
        assert_eq!(e.path, "spec.state.checkpointInterval");
        assert!(e.message.contains("invalid type: integer `5`"), "{e}");
    }

    #[test]
    fn unknown_field_reports_its_path_and_line() {
        let e = structural("      slide: 10s", "      slid: 10s");
        assert_eq!(e.path, "spec.pipeline.window.slid");
        assert!(
            e.message
                .starts_with("unknown field `slid`, expected one of"),
            "{e}"
        );
        let line = FULL.lines().position(|l| l == "      slide: 10s").unwrap() + 1;
        assert!(e.message.contains(&format!("(line {line}, column ")), "{e}");
        // Without enums written as maps, serde_yaml's own position (the key) is kept.
        let yaml = MINIMAL.replace("      topic: out", "      topic: out\n      topik: out");
        let errors = load_errors(&yaml);
        assert_eq!(errors[0].path, "spec.pipeline.sink.topik");
        assert!(
            errors[0].message.ends_with("(line 14, column 7)"),
            "{errors:?}"
        );

        let e = structural("  retain: 5", "  retian: 5");
        assert_eq!(e.path, "spec.state.retian");
    }

    #[test]
    fn wrong_type_and_bad_enum_report_their_paths() {
        let e = structural("parallelism: 4", "parallelism: four");
        assert_eq!(e.path, "spec.parallelism");
        assert!(
            e.message.starts_with("invalid type: string \"four\""),
            "{e}"
        );

        let e = structural("fn: distinctCount", "fn: distinct");
        assert_eq!(e.path, "spec.pipeline.aggregates[2].fn");
        assert!(e.message.starts_with("unknown variant `distinct`"), "{e}");

        let e = structural("op: exists", "op: present");
        assert_eq!(e.path, "spec.pipeline.filter[2].op");

        let e = structural("type: sliding", "type: hopping");
        assert_eq!(e.path, "spec.pipeline.window.type");

        let e = structural(
            "deliveryGuarantee: at-least-once",
            "deliveryGuarantee: maybe",
        );
        assert_eq!(e.path, "spec.pipeline.sink.deliveryGuarantee");

        let e = structural("{env: SINK_PASSWORD}", "{vault: SINK_PASSWORD}");
        assert_eq!(
            e.path,
            r#"spec.pipeline.sink.secretProperties["sasl.password"]"#
        );

        let e = structural("topics: [clicks, clicks-replay]", "topics: clicks");
        assert_eq!(e.path, "spec.pipeline.source.topics");
    }

    #[test]
    fn enums_with_data_load_as_maps_or_yaml_tags() {
        // The map form is what Kubernetes and the CRD schema use; the tag form is serde_yaml's.
        let tagged = FULL
            .replace(
                "startFrom:\n        timestamp: \"2024-05-01T12:00:00+02:00\"",
                "startFrom: !timestamp \"2024-05-01T12:00:00+02:00\"",
            )
            .replace("{env: KAFKA_USER}", "!env KAFKA_USER")
            .replace(
                "{file: /var/run/secrets/kafka/password}",
                "!file /var/run/secrets/kafka/password",
            )
            .replace("{env: SINK_PASSWORD}", "!env SINK_PASSWORD");
        assert!(!tagged.contains("{env"), "{tagged}");
        assert_eq!(
            load_manifest(&tagged).unwrap_or_else(|e| panic!("{e}")),
            full()
        );

        let e = structural("{env: SINK_PASSWORD}", "{env: SINK_PASSWORD, file: /x}");
        assert_eq!(
            e.path,
            r#"spec.pipeline.sink.secretProperties["sasl.password"]"#
        );
        assert!(
            e.message.starts_with("expected a map with exactly one key"),
            "{e}"
        );

        let e = structural("{env: SINK_PASSWORD}", "{env: [SINK_PASSWORD]}");
        assert_eq!(
            e.path,
            r#"spec.pipeline.sink.secretProperties["sasl.password"].env"#
        );
        assert!(
            e.message
                .starts_with("invalid type: sequence, expected a string"),
            "{e}"
        );
        let line = FULL
            .lines()
            .position(|l| l.contains("SINK_PASSWORD"))
            .unwrap()
            + 1;
        assert!(
            e.message.ends_with(&format!("(line {line}, column 30)")),
            "{e}"
        );
    }

    #[test]
    fn missing_field_reports_its_parent() {
        let e = structural("      topic: clicks-per-user\n", "");
        assert_eq!(e.path, "spec.pipeline.sink");
        assert!(e.message.starts_with("missing field `topic`"), "{e}");
    }

    #[test]
    fn errors_inside_tagged_enums_name_the_field() {
        let e = structural("maxOutOfOrderness: 2s", "maxOutOfOrderness: two");
        assert_eq!(e.path, "spec.pipeline.time.maxOutOfOrderness");
        let line = FULL
            .lines()
            .position(|l| l.contains("maxOutOfOrderness"))
            .unwrap()
            + 1;
        assert_eq!(
            e.message,
            format!(r#"expected a duration like "10s", got "two" (line {line}, column 26)"#)
        );

        let e = structural("idleTimeout: 30s", "idleTimeot: 30s");
        assert_eq!(e.path, "spec.pipeline.time.idleTimeot");
        assert!(e.message.starts_with("unknown field `idleTimeot`"), "{e}");

        let e = structural("type: event", "type: eventual");
        assert_eq!(e.path, "spec.pipeline.time.type");
        assert!(e.message.starts_with("unknown variant `eventual`"), "{e}");

        let e = structural("delimiter: \";\"", "delimiter: \";;\"");
        assert_eq!(e.path, "spec.pipeline.format.delimiter");

        let e = structural("columns: [ts,", "columns: [[ts],");
        assert_eq!(e.path, "spec.pipeline.format.columns");

        let e = structural("      field: ts\n      format", "      format");
        assert_eq!(e.path, "spec.pipeline.time");
        assert!(e.message.starts_with("missing field `field`"), "{e}");
    }

    #[test]
    fn fields_next_to_a_fieldless_tag_are_rejected() {
        let errors =
            load_errors(&MINIMAL.replace("type: processing", "type: processing\n      field: ts"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_has(&errors, "spec.pipeline.time.field", "unknown field `field`");

        let yaml = MINIMAL.replace(
            "    sink:",
            "    format: {type: json, columns: [a]}\n    sink:",
        );
        assert_has(
            &load_errors(&yaml),
            "spec.pipeline.format.columns",
            "unknown field",
        );
    }

    #[test]
    fn syntax_errors_and_empty_documents() {
        let errors = load_errors("apiVersion: rivulet.dev/v1alpha1\nkind: \"StreamJob\n");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("quoted scalar"),
            "{:?}",
            errors[0]
        );
        assert!(
            errors[0].message.contains("(line 3, column 1)"),
            "{:?}",
            errors[0]
        );

        assert_eq!(load_errors("")[0].message, "the manifest is empty");
        assert_eq!(
            load_errors("# nothing\n")[0].message,
            "the manifest is empty"
        );
    }

    // --- semantic errors --------------------------------------------------------------------

    #[test]
    fn full_manifest_has_no_semantic_errors() {
        assert_eq!(validate(&full()), vec![]);
    }

    #[test]
    fn many_semantic_errors_are_all_reported() {
        let yaml = FULL
            .replace(
                "apiVersion: rivulet.dev/v1alpha1",
                "apiVersion: rivulet.dev/v1",
            )
            .replace("name: clicks-per-user\n", "name: Clicks\n")
            .replace("parallelism: 4", "parallelism: 300")
            .replace("size: 1m", "size: 5s")
            .replace("fn: sum, field: amount}", "fn: sum, field: amout}")
            .replace("name: pages,", "name: clicks,")
            .replace("topic: clicks-dlq", "topic: clicks")
            .replace("checkpointInterval: 5s", "checkpointInterval: 10ms")
            .replace("storage: s3://snapshots/rivulet", "storage: /tmp/state");
        let errors = load_errors(&yaml);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "apiVersion",
                "metadata.name",
                "spec.parallelism",
                "spec.pipeline.window.slide",
                "spec.pipeline.aggregates[1].field",
                "spec.pipeline.aggregates[2].name",
                "spec.pipeline.deadLetter.topic",
                "spec.state.checkpointInterval",
                "spec.state.storage",
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn lifecycle_settings_load() {
        use crate::job::{ImagePullPolicy, JobState, UpgradeMode};
        let m = full();
        let s = &m.spec;
        assert_eq!(s.upgrade_mode, UpgradeMode::LastState);
        assert_eq!(s.job_state, JobState::Running);
        assert_eq!(s.savepoint_trigger.as_deref(), Some("2026-12-01"));
        assert_eq!(s.savepoints.interval, Some(Duration::from_secs(3600)));
        assert_eq!(s.savepoints.max_count, 10);
        assert!(s.savepoints.on_deletion);
        assert_eq!(s.readiness_timeout, Duration::from_secs(120));
        let pod = &s.pod_template;
        assert_eq!(pod.tolerations.len(), 1);
        assert!(pod.affinity.is_some());
        assert_eq!(pod.image_pull_policy, Some(ImagePullPolicy::IfNotPresent));
        assert_eq!(pod.env[0].name, "TZ");
        assert_eq!(
            s.credentials
                .storage
                .as_ref()
                .map(|c| c.secret_name.as_str()),
            Some("s3-credentials")
        );
        assert!(s.autoscaler.enabled);
        assert_eq!(s.autoscaler.max_scale_down_factor, 1.5);

        // The defaults, on a manifest that sets none of it.
        let m = load_manifest(MINIMAL).unwrap_or_else(|e| panic!("{e}"));
        let s = &m.spec;
        assert_eq!(s.upgrade_mode, UpgradeMode::Savepoint);
        assert_eq!(s.job_state, JobState::Running);
        assert_eq!(s.savepoints.interval, None);
        assert_eq!(s.savepoints.max_count, 5);
        assert!(!s.savepoints.on_deletion);
        assert_eq!(s.savepoints.timeout, Duration::from_secs(600));
        assert_eq!(s.readiness_timeout, Duration::from_secs(300));
        assert!(!s.autoscaler.enabled);
    }

    #[test]
    fn bad_lifecycle_settings_are_named() {
        assert_has(
            &load_errors(&FULL.replace("upgradeMode: last-state", "upgradeMode: lastState")),
            "spec.upgradeMode",
            "unknown variant `lastState`",
        );
        assert_has(
            &load_errors(&FULL.replace("jobState: running", "jobState: paused")),
            "spec.jobState",
            "unknown variant `paused`",
        );
        assert_has(
            &load_errors(&FULL.replace("maxCount: 10", "maxCount: ten")),
            "spec.savepoints.maxCount",
            "invalid type",
        );
        assert_has(
            &load_errors(&FULL.replace(
                "imagePullPolicy: IfNotPresent",
                "imagePullPolicy: Sometimes",
            )),
            "spec.podTemplate.imagePullPolicy",
            "unknown variant",
        );
        assert_has(
            &load_errors(&FULL.replace("    onDeletion: true", "    onDelete: true")),
            "spec.savepoints.onDelete",
            "unknown field",
        );
        assert_has(
            &load_errors(&FULL.replace("targetUtilization: 0.6", "targetUtilisation: 0.6")),
            "spec.autoscaler.targetUtilisation",
            "unknown field",
        );

        semantic(
            |m| m.spec.savepoint_trigger = Some(" ".into()),
            "spec.savepointTrigger",
            "must not be empty",
        );
        semantic(
            |m| m.spec.restart_trigger = Some("".into()),
            "spec.restartTrigger",
            "must not be empty",
        );
        semantic(
            |m| m.spec.savepoints.interval = Some(Duration::from_secs(1)),
            "spec.savepoints.interval",
            "at least the checkpoint interval (5s)",
        );
        semantic(
            |m| m.spec.savepoints.max_count = 0,
            "spec.savepoints.maxCount",
            "at least 1",
        );
        semantic(
            |m| m.spec.savepoints.max_age = Some(Duration::ZERO),
            "spec.savepoints.maxAge",
            "more than 0s",
        );
        semantic(
            |m| m.spec.savepoints.timeout = Duration::ZERO,
            "spec.savepoints.timeout",
            "more than 0s",
        );
        semantic(
            |m| m.spec.readiness_timeout = Duration::ZERO,
            "spec.readinessTimeout",
            "more than 0s",
        );
        semantic(
            |m| m.spec.pod_template.service_account_name = Some("Worker_SA".into()),
            "spec.podTemplate.serviceAccountName",
            "Kubernetes object name",
        );
        semantic(
            |m| m.metadata.name = Some("a".repeat(53)),
            "metadata.name",
            "at most 52 characters",
        );
        for bad in ["", "10 Gi", "10GB", "-1Gi", "0", "Gi"] {
            semantic(
                move |m| {
                    m.spec.pod_template.data_volume_claim = Some(crate::job::DataVolumeClaim {
                        size: bad.into(),
                        storage_class_name: None,
                    })
                },
                "spec.podTemplate.dataVolumeClaim.size",
                "Kubernetes quantity",
            );
        }
        semantic(
            |m| {
                m.spec.pod_template.data_volume_claim = Some(crate::job::DataVolumeClaim {
                    size: "10Gi".into(),
                    storage_class_name: Some("Fast SSD".into()),
                })
            },
            "spec.podTemplate.dataVolumeClaim.storageClassName",
            "Kubernetes object name",
        );
        semantic(
            |m| m.spec.pod_template.env[0].name = "RIVULET_TOKEN".into(),
            "spec.podTemplate.env[0].name",
            "set by the control plane",
        );
        semantic(
            |m| m.spec.pod_template.env[0].name = String::new(),
            "spec.podTemplate.env[0].name",
            "must not be empty",
        );
        semantic(
            |m| {
                if let Some(k) = m.spec.credentials.kafka.as_mut() {
                    k.secret_name = "kafka creds".into();
                }
            },
            "spec.credentials.kafka.secretName",
            "Kubernetes object name",
        );
        semantic(
            |m| m.spec.autoscaler.min_parallelism = 0,
            "spec.autoscaler.minParallelism",
            "at least 1",
        );
        semantic(
            |m| m.spec.autoscaler.min_parallelism = 17,
            "spec.autoscaler.minParallelism",
            "at most the autoscaler's maxParallelism (16)",
        );
        semantic(
            |m| m.spec.autoscaler.max_parallelism = Some(300),
            "spec.autoscaler.maxParallelism",
            "at most the job's maxParallelism (256)",
        );
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            semantic(
                |m| m.spec.autoscaler.target_utilization = bad,
                "spec.autoscaler.targetUtilization",
                "above 0 and at most 1",
            );
        }
        for bad in [1.0, 0.5, f64::INFINITY] {
            semantic(
                |m| m.spec.autoscaler.max_scale_up_factor = bad,
                "spec.autoscaler.maxScaleUpFactor",
                "above 1",
            );
            semantic(
                |m| m.spec.autoscaler.max_scale_down_factor = bad,
                "spec.autoscaler.maxScaleDownFactor",
                "above 1",
            );
        }
        semantic(
            |m| m.spec.autoscaler.metrics_window = Duration::ZERO,
            "spec.autoscaler.metricsWindow",
            "more than 0s",
        );
    }

    #[test]
    fn unknown_top_level_fields_and_status() {
        assert_has(
            &load_errors(&format!("{FULL}extra: 1\n")),
            "extra",
            "unknown field `extra`",
        );
        // A status (as `kubectl get -o yaml` prints it) is ignored, as the API server does.
        let m = load_manifest(&format!("{FULL}status:\n  phase: Running\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.status, None);
        assert_has(
            &load_errors(&FULL.replace("apiVersion: rivulet.dev/v1alpha1\n", "")),
            "",
            "missing field `apiVersion`",
        );
    }

    #[test]
    fn identity_and_parallelism() {
        assert_has(
            &load_errors(&FULL.replace("kind: StreamJob", "kind: Deployment")),
            "kind",
            "expected \"StreamJob\"",
        );
        semantic(
            |m| m.metadata.name = None,
            "metadata.name",
            "must not be empty",
        );
        for bad in ["-job", "job-", "my_job", "Job", "a.b", &"x".repeat(64)] {
            semantic(
                |m| m.metadata.name = Some(bad.to_string()),
                "metadata.name",
                "DNS-1123",
            );
        }
        for good in ["a", "job-1", "0x", &"x".repeat(52)] {
            let mut m = full();
            m.metadata.name = Some(good.to_string());
            assert_eq!(validate(&m), vec![], "{good}");
        }
        semantic(
            |m| m.metadata.namespace = Some("".into()),
            "metadata.namespace",
            "empty",
        );
        // Parallelism 0 is a suspended job.
        let mut m = full();
        m.spec.parallelism = 0;
        assert_eq!(validate(&m), vec![]);
        semantic(
            |m| m.spec.parallelism = 257,
            "spec.parallelism",
            "at most maxParallelism (256)",
        );
        semantic(
            |m| m.spec.max_parallelism = 0,
            "spec.maxParallelism",
            "between 1 and 32768",
        );
        semantic(
            |m| m.spec.max_parallelism = 32769,
            "spec.maxParallelism",
            "between 1 and 32768",
        );
        let mut m = full();
        m.spec.max_parallelism = 32768;
        m.spec.parallelism = 32768;
        assert_eq!(validate(&m), vec![]);
        semantic(|m| m.spec.image = Some(" ".into()), "spec.image", "empty");
        semantic(
            |m| m.spec.restore_from = Some("hdfs://x".into()),
            "spec.restoreFrom",
            "s3://",
        );
    }

    #[test]
    fn source() {
        let src = "spec.pipeline.source";
        semantic(
            |m| pipeline(m).source.topics.clear(),
            &format!("{src}.topics"),
            "at least one",
        );
        semantic(
            |m| pipeline(m).source.topics[1].clear(),
            &format!("{src}.topics[1]"),
            "empty",
        );
        semantic(
            |m| pipeline(m).source.topics[1] = "clicks".into(),
            &format!("{src}.topics[1]"),
            "listed twice",
        );
        semantic(
            |m| pipeline(m).source.topics[0] = "my topic".into(),
            &format!("{src}.topics[0]"),
            "not a valid Kafka topic name",
        );
        semantic(
            |m| pipeline(m).source.bootstrap_servers = Some("".into()),
            &format!("{src}.bootstrapServers"),
            "must not be empty",
        );
        semantic(
            |m| pipeline(m).source.bootstrap_servers = Some("a:1,,b:2".into()),
            &format!("{src}.bootstrapServers"),
            "empty entry",
        );
        for bad in [
            "yesterday",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-13-01T00:00:00Z",
        ] {
            semantic(
                |m| pipeline(m).source.start_from = StartFrom::Timestamp(bad.into()),
                &format!("{src}.startFrom.timestamp"),
                "RFC 3339",
            );
        }
        semantic(
            |m| pipeline(m).source.start_from = StartFrom::Timestamp("1969-12-31T23:59:59Z".into()),
            &format!("{src}.startFrom.timestamp"),
            "before 1970",
        );
        for good in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.250+05:30",
            "2024-02-29T00:00:00z",
        ] {
            let mut m = full();
            pipeline(&mut m).source.start_from = StartFrom::Timestamp(good.into());
            assert_eq!(validate(&m), vec![], "{good}");
        }
    }

    #[test]
    fn client_properties_and_secrets() {
        let src = "spec.pipeline.source";
        semantic(
            |m| {
                pipeline(m)
                    .source
                    .secret_properties
                    .insert("sasl.username".into(), SecretRef::Env("".into()));
            },
            &format!(r#"{src}.secretProperties["sasl.username"].env"#),
            "must not be empty",
        );
        semantic(
            |m| {
                pipeline(m)
                    .sink
                    .secret_properties
                    .insert("ssl.key.password".into(), SecretRef::File(" ".into()));
            },
            r#"spec.pipeline.sink.secretProperties["ssl.key.password"].file"#,
            "must not be empty",
        );
        semantic(
            |m| {
                pipeline(m)
                    .source
                    .properties
                    .insert("sasl.password".into(), "x".into());
            },
            &format!(r#"{src}.secretProperties["sasl.password"]"#),
            "also set in `properties`",
        );
        semantic(
            |m| {
                pipeline(m)
                    .source
                    .properties
                    .insert("bootstrap.servers".into(), "h:1".into());
            },
            &format!(r#"{src}.properties["bootstrap.servers"]"#),
            "bootstrapServers",
        );
    }

    #[test]
    fn format() {
        let set_columns = |columns: &[&str]| {
            let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
            move |m: &mut StreamJob| {
                pipeline(m).format = FormatSpec::Csv {
                    columns,
                    delimiter: ',',
                }
            }
        };
        semantic(
            set_columns(&[]),
            "spec.pipeline.format.columns",
            "at least one column",
        );
        semantic(
            set_columns(&["ts", "user", "", "page", "amount", "country"]),
            "spec.pipeline.format.columns[2]",
            "must not be empty",
        );
        semantic(
            set_columns(&["ts", "user", "page", "amount", "country", "user"]),
            "spec.pipeline.format.columns[5]",
            "named twice",
        );
        semantic(
            |m| {
                pipeline(m).format = FormatSpec::Csv {
                    columns: vec!["ts".into()],
                    delimiter: '"',
                }
            },
            "spec.pipeline.format.delimiter",
            "ASCII",
        );
        // Fields read before the projection must exist in a CSV record...
        semantic(
            set_columns(&["ts", "user", "page", "amount"]),
            "spec.pipeline.filter[1].field",
            "\"country\" is not a CSV column",
        );
        // ...and a raw record has only `value`.
        semantic(
            |m| pipeline(m).format = FormatSpec::Raw,
            "spec.pipeline.project[1].field",
            "only `value`",
        );
    }

    #[test]
    fn time() {
        let set_time_drift = |field: &str, ooo: u64, idle: Option<u64>, drift: u64| {
            let field = field.to_string();
            move |m: &mut StreamJob| {
                pipeline(m).time = TimeSpec::Event {
                    field,
                    format: Default::default(),
                    max_out_of_orderness: Duration::from_secs(ooo),
                    idle_timeout: idle.map(Duration::from_secs),
                    max_drift: Duration::from_secs(drift),
                    max_future_skew: Duration::from_secs(60),
                }
            }
        };
        let set_time =
            |field: &str, ooo: u64, idle: Option<u64>| set_time_drift(field, ooo, idle, 30);
        semantic(
            set_time("", 1, None),
            "spec.pipeline.time.field",
            "must not be empty",
        );
        semantic(
            set_time("a..b", 1, None),
            "spec.pipeline.time.field",
            "empty segment",
        );
        semantic(
            set_time("ts", 8 * 24 * 3600, None),
            "spec.pipeline.time.maxOutOfOrderness",
            "at most 7days",
        );
        semantic(
            set_time("ts", 1, Some(0)),
            "spec.pipeline.time.idleTimeout",
            "greater than 0",
        );
        semantic(
            set_time_drift("ts", 1, None, 0),
            "spec.pipeline.time.maxDrift",
            "greater than 0",
        );
        // Kafka metadata is always readable, even after a projection.
        let mut m = full();
        set_time("@timestamp", 1, None)(&mut m);
        assert_eq!(validate(&m), vec![]);
    }

    #[test]
    fn filter() {
        let set_filter = |op: CompareOp, value: Option<serde_json::Value>| {
            move |m: &mut StreamJob| {
                pipeline(m).filter[0] = Condition {
                    field: "page".into(),
                    op,
                    value,
                }
            }
        };
        let path = "spec.pipeline.filter[0].value";
        semantic(
            set_filter(CompareOp::In, Some("a".into())),
            path,
            "`in` needs a list",
        );
        semantic(set_filter(CompareOp::In, None), path, "`in` needs a list");
        semantic(
            set_filter(CompareOp::Exists, Some(true.into())),
            path,
            "takes no value",
        );
        semantic(set_filter(CompareOp::Eq, None), path, "`eq` needs a value");
        semantic(
            set_filter(CompareOp::Lt, Some(serde_json::json!([1, 2]))),
            path,
            "`lt` needs a single value",
        );
        semantic(
            set_filter(CompareOp::Ne, Some(serde_json::json!({"a": 1}))),
            path,
            "`ne` needs a single value",
        );
        semantic(
            |m| pipeline(m).filter[0].field.clear(),
            "spec.pipeline.filter[0].field",
            "must not be empty",
        );
    }

    #[test]
    fn projection() {
        let proj = Projection::field;
        semantic(
            |m| pipeline(m).project.push(proj("", "page")),
            "spec.pipeline.project[4].name",
            "must not be empty",
        );
        semantic(
            |m| pipeline(m).project.push(proj("user", "page")),
            "spec.pipeline.project[4].name",
            "projected twice",
        );
        semantic(
            |m| pipeline(m).project.push(proj("page2", "")),
            "spec.pipeline.project[4].field",
            "must not be empty",
        );
        semantic(
            |m| pipeline(m).project.push(proj("a.b", "page")),
            "spec.pipeline.project[4].name",
            "cannot contain '.'",
        );
        semantic(
            |m| pipeline(m).project.push(proj("@key", "page")),
            "spec.pipeline.project[4].name",
            "reserved for Kafka metadata",
        );
        // Everything after the projection reads projected names only.
        semantic(
            |m| pipeline(m).project.retain(|p| p.name != "user"),
            "spec.pipeline.key[0]",
            "\"user\" is not a projected name",
        );
        semantic(
            |m| pipeline(m).project.retain(|p| p.name != "ts"),
            "spec.pipeline.time.field",
            "not a projected name",
        );
        semantic(
            |m| pipeline(m).project.retain(|p| p.name != "amount"),
            "spec.pipeline.aggregates[1].field",
            "not a projected name",
        );
        // A path below a projected name is fine (JSON objects nest).
        let mut m = full();
        pipeline(&mut m).format = FormatSpec::Json;
        pipeline(&mut m).project.push(proj("geo", "client.geo"));
        pipeline(&mut m).key.push("geo.country".into());
        assert_eq!(validate(&m), vec![]);
    }

    #[test]
    fn projection_expressions() {
        // A valid expression over CSV columns, and a key on its result.
        let mut m = full();
        pipeline(&mut m).project.push(Projection::expr(
            "eur",
            "-(amount + 1) * 0.908 / @partition",
        ));
        pipeline(&mut m).key.push("eur".into());
        assert_eq!(validate(&m), vec![]);

        semantic(
            |m| {
                pipeline(m)
                    .project
                    .push(Projection::expr("eur", "amount * )"))
            },
            "spec.pipeline.project[4].expr",
            "\"amount * )\": unexpected `)` at column 10",
        );
        semantic(
            |m| pipeline(m).project.push(Projection::expr("eur", "(amount")),
            "spec.pipeline.project[4].expr",
            "unclosed `(` at column 1",
        );
        semantic(
            |m| {
                pipeline(m)
                    .project
                    .push(Projection::expr("eur", "@key * 2"))
            },
            "spec.pipeline.project[4].expr",
            "unknown metadata field `@key`",
        );
        semantic(
            |m| pipeline(m).project.push(Projection::expr("eur", " ")),
            "spec.pipeline.project[4].expr",
            "must not be empty",
        );
        // Fields an expression reads must exist in a CSV record.
        semantic(
            |m| {
                pipeline(m)
                    .project
                    .push(Projection::expr("eur", "price * 0.908"))
            },
            "spec.pipeline.project[4].expr",
            "\"price\" is not a CSV column",
        );
        // Exactly one of `field` and `expr`.
        semantic(
            |m| {
                let mut both = Projection::field("eur", "amount");
                both.expr = Some("amount * 2".into());
                pipeline(m).project.push(both);
            },
            "spec.pipeline.project[4].expr",
            "not both",
        );
        semantic(
            |m| {
                pipeline(m).project.push(Projection {
                    name: "eur".into(),
                    field: None,
                    expr: None,
                })
            },
            "spec.pipeline.project[4].field",
            "needs a `field`",
        );

        // Every bad item is reported, each at its own path, and from YAML too.
        let yaml = FULL
            .replacen(
                "- {name: user, field: user}",
                "- {name: user, field: user, expr: user}",
                1,
            )
            .replacen(
                "- {name: amount, field: amount}",
                "- {name: amount, expr: \"amount * / 2\"}",
                1,
            )
            .replacen("- {name: page, field: page}", "- {name: page}", 1);
        let errors = load_errors(&yaml);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert_has(&errors, "spec.pipeline.project[1].expr", "not both");
        assert_has(
            &errors,
            "spec.pipeline.project[2].expr",
            "\"amount * / 2\": unexpected `/` at column 10: expected a number, a field, `-` or `(`",
        );
        assert_has(&errors, "spec.pipeline.project[3].field", "needs a `field`");
    }

    #[test]
    fn key() {
        semantic(
            |m| pipeline(m).key[0].clear(),
            "spec.pipeline.key[0]",
            "must not be empty",
        );
        semantic(
            |m| pipeline(m).key.push("user".into()),
            "spec.pipeline.key[1]",
            "listed twice",
        );
    }

    #[test]
    fn windows() {
        let set_window =
            |kind: WindowType, size: Option<u64>, slide: Option<u64>, gap: Option<u64>| {
                move |m: &mut StreamJob| {
                    pipeline(m).window = Some(WindowSpec {
                        kind,
                        size: size.map(Duration::from_secs),
                        slide: slide.map(Duration::from_secs),
                        gap: gap.map(Duration::from_secs),
                        allowed_lateness: Duration::ZERO,
                    })
                }
            };
        let w = "spec.pipeline.window";
        use WindowType::*;
        semantic(
            set_window(Tumbling, None, None, None),
            &format!("{w}.size"),
            "needs a size",
        );
        semantic(
            set_window(Tumbling, Some(0), None, None),
            &format!("{w}.size"),
            "greater than 0",
        );
        semantic(
            set_window(Tumbling, Some(10), Some(5), None),
            &format!("{w}.slide"),
            "no slide",
        );
        semantic(
            set_window(Tumbling, Some(10), None, Some(5)),
            &format!("{w}.gap"),
            "no gap",
        );
        semantic(
            set_window(Sliding, Some(10), None, None),
            &format!("{w}.slide"),
            "needs a slide",
        );
        semantic(
            set_window(Sliding, Some(10), Some(0), None),
            &format!("{w}.slide"),
            "greater than 0",
        );
        semantic(
            set_window(Sliding, None, Some(5), None),
            &format!("{w}.size"),
            "needs a size",
        );
        semantic(
            set_window(Sliding, Some(10), Some(20), None),
            &format!("{w}.slide"),
            "at most the window size (10s)",
        );
        semantic(
            set_window(Sliding, Some(10), Some(5), Some(1)),
            &format!("{w}.gap"),
            "no gap",
        );
        semantic(
            set_window(Session, None, None, None),
            &format!("{w}.gap"),
            "needs a gap",
        );
        semantic(
            set_window(Session, None, None, Some(0)),
            &format!("{w}.gap"),
            "greater than 0",
        );
        semantic(
            set_window(Session, Some(10), None, Some(5)),
            &format!("{w}.size"),
            "no size",
        );
        semantic(
            set_window(Session, None, Some(10), Some(5)),
            &format!("{w}.slide"),
            "no slide",
        );
        for ok in [
            set_window(Tumbling, Some(10), None, None),
            set_window(Sliding, Some(10), Some(10), None),
            set_window(Sliding, Some(10), Some(3), None),
            set_window(Session, None, None, Some(30)),
        ] {
            let mut m = full();
            ok(&mut m);
            assert_eq!(validate(&m), vec![]);
        }

        semantic(
            |m| pipeline(m).aggregates.clear(),
            "spec.pipeline.aggregates",
            "a window needs at least one aggregate",
        );
        semantic(
            |m| pipeline(m).key.clear(),
            "spec.pipeline.key",
            "keyless (global) windows are not supported",
        );
        semantic(
            |m| pipeline(m).window = None,
            "spec.pipeline.aggregates",
            "aggregates need a window",
        );
        // Without a window and aggregates, a pipeline is stateless: fine.
        let mut m = full();
        pipeline(&mut m).window = None;
        pipeline(&mut m).aggregates.clear();
        assert_eq!(validate(&m), vec![]);
    }

    #[test]
    fn aggregates() {
        let agg = |name: &str, function: AggregateFn, field: Option<&str>| AggregateSpec {
            name: name.into(),
            function,
            field: field.map(str::to_string),
        };
        let at = "spec.pipeline.aggregates[4]";
        semantic(
            |m| {
                pipeline(m)
                    .aggregates
                    .push(agg("", AggregateFn::Count, None))
            },
            &format!("{at}.name"),
            "must not be empty",
        );
        semantic(
            |m| {
                pipeline(m)
                    .aggregates
                    .push(agg("revenue", AggregateFn::Max, Some("amount")))
            },
            &format!("{at}.name"),
            "used by another aggregate",
        );
        for reserved in ["windowStart", "windowEnd", "kind", "key"] {
            semantic(
                |m| {
                    pipeline(m)
                        .aggregates
                        .push(agg(reserved, AggregateFn::Count, None))
                },
                &format!("{at}.name"),
                "reserved",
            );
        }
        semantic(
            |m| {
                pipeline(m)
                    .aggregates
                    .push(agg("n", AggregateFn::Count, Some("amount")))
            },
            &format!("{at}.field"),
            "`count` takes no field",
        );
        for f in [
            AggregateFn::Sum,
            AggregateFn::Min,
            AggregateFn::Max,
            AggregateFn::Avg,
            AggregateFn::First,
            AggregateFn::Last,
            AggregateFn::DistinctCount,
        ] {
            semantic(
                |m| pipeline(m).aggregates.push(agg("x", f, None)),
                &format!("{at}.field"),
                "needs a field",
            );
        }
        semantic(
            |m| {
                pipeline(m)
                    .aggregates
                    .push(agg("x", AggregateFn::Avg, Some("")))
            },
            &format!("{at}.field"),
            "must not be empty",
        );
    }

    #[test]
    fn sink_dead_letter_and_limits() {
        semantic(
            |m| pipeline(m).sink.topic.clear(),
            "spec.pipeline.sink.topic",
            "must not be empty",
        );
        semantic(
            |m| pipeline(m).sink.topic = "clicks-replay".into(),
            "spec.pipeline.sink.topic",
            "also a source topic",
        );
        semantic(
            |m| pipeline(m).sink.bootstrap_servers = Some(" ".into()),
            "spec.pipeline.sink.bootstrapServers",
            "must not be empty",
        );
        let dlq = "spec.pipeline.deadLetter.topic";
        semantic(
            |m| pipeline(m).dead_letter.topic = Some("".into()),
            dlq,
            "must not be empty",
        );
        semantic(
            |m| pipeline(m).dead_letter.topic = Some("clicks".into()),
            dlq,
            "also a source topic",
        );
        semantic(
            |m| pipeline(m).dead_letter.topic = Some("clicks-per-user".into()),
            dlq,
            "also the sink topic",
        );
        semantic(
            |m| {
                pipeline(m).dead_letter.topic = None;
                pipeline(m).source.topics.push("clicks-per-user-dlq".into());
            },
            dlq,
            "default dead-letter topic \"clicks-per-user-dlq\"",
        );
        semantic(
            |m| pipeline(m).limits.max_record_bytes = 0,
            "spec.pipeline.limits.maxRecordBytes",
            "at least 1",
        );
    }

    #[test]
    fn state() {
        semantic(
            |m| m.spec.state.checkpoint_interval = Duration::from_millis(99),
            "spec.state.checkpointInterval",
            "at least 100ms",
        );
        let mut m = full();
        m.spec.state.checkpoint_interval = Duration::from_millis(100);
        assert_eq!(validate(&m), vec![]);
        semantic(
            |m| m.spec.state.retain = 0,
            "spec.state.retain",
            "at least 1",
        );
        for bad in [
            "",
            "/var/lib/rivulet",
            "hdfs://nn/x",
            "s3://",
            "s3:///prefix",
            "file://",
            "S3://b",
        ] {
            semantic(
                |m| m.spec.state.storage = bad.into(),
                "spec.state.storage",
                "",
            );
        }
        for good in [
            "file:///x",
            "file://./rel",
            "s3://bucket/prefix",
            "gs://b",
            "az://container/p",
        ] {
            let mut m = full();
            m.spec.state.storage = good.into();
            assert_eq!(validate(&m), vec![], "{good}");
        }
    }
}
