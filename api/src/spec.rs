//! The `StreamJob` manifest and the pipeline spec, as users write them in YAML.
//!
//! The same types are read by the operator (from the custom resource) and by the worker (from
//! the manifest file or the ConfigMap the operator writes). Field names are camelCase and
//! unknown fields are rejected, so a typo is an error that names the field rather than a
//! silently ignored setting.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

pub const API_VERSION: &str = "rivulet.dev/v1alpha1";
pub const KIND: &str = "StreamJob";
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// A `StreamJob` manifest: what `kubectl apply` and `rivulet run` both take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamJobManifest {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: StreamJobSpec,
}

/// The part of Kubernetes object metadata Rivulet reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl StreamJobManifest {
    /// The namespace snapshots are filed under (`default` when the manifest names none).
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }
}

/// `spec` of a `StreamJob`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamJobSpec {
    /// Worker image (used by the Kubernetes runtime only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Number of workers.
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Number of key groups; fixed for the life of the job's state.
    #[serde(default = "default_max_parallelism")]
    pub max_parallelism: u32,
    pub pipeline: PipelineSpec,
    #[serde(default)]
    pub state: StateSpec,
    /// Savepoint (or checkpoint) directory to start from when there is no newer checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
}

fn one() -> u32 {
    1
}

fn default_max_parallelism() -> u32 {
    DEFAULT_MAX_PARALLELISM
}

/// What a worker runs: source → decode → filter → project → key/time → window → sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSpec {
    pub source: SourceSpec,
    #[serde(default)]
    pub format: FormatSpec,
    pub time: TimeSpec,
    /// Conditions that must all hold for a record to be kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<Condition>,
    /// Fields the rest of the pipeline sees; when empty, it sees the decoded record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub project: Vec<Projection>,
    /// Key field paths (dot-separated); records are grouped by these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    /// Window; when absent the pipeline is stateless and emits each kept record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregates: Vec<AggregateSpec>,
    pub sink: SinkSpec,
    #[serde(default)]
    pub dead_letter: DeadLetterSpec,
    #[serde(default)]
    pub limits: LimitsSpec,
}

/// Kafka source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceSpec {
    /// `host:port[,host:port]`. `rivulet run` starts a local broker when this is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    pub topics: Vec<String>,
    #[serde(default)]
    pub start_from: StartFrom,
    #[serde(default)]
    pub isolation_level: IsolationLevel,
    /// librdkafka client properties passed through as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose values come from the environment or a file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_properties: BTreeMap<String, SecretRef>,
}

/// Where a source starts when no checkpoint holds its offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
    /// First offset whose Kafka timestamp is at or after this RFC 3339 time.
    Timestamp(String),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IsolationLevel {
    #[default]
    ReadCommitted,
    ReadUncommitted,
}

/// A secret value: from an environment variable or a file (a mounted Secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SecretRef {
    Env(String),
    File(String),
}

/// How record values are decoded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum FormatSpec {
    /// A JSON object per record; fields by dot-separated path (`user.id`).
    #[default]
    Json,
    /// One CSV line per record, columns named in order.
    Csv {
        columns: Vec<String>,
        #[serde(default = "comma")]
        delimiter: char,
    },
    /// The value as UTF-8 text in the field `value`.
    Raw,
}

fn comma() -> char {
    ','
}

/// Event time or processing time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum TimeSpec {
    #[serde(rename_all = "camelCase")]
    Event {
        /// Field holding the event time, or `@timestamp` for the Kafka record timestamp.
        field: String,
        #[serde(default)]
        format: TimestampFormat,
        /// Watermark = highest event time seen − this.
        #[serde(default)]
        max_out_of_orderness: Duration,
        /// A partition that has read everything up to its end and had no record for this long
        /// stops holding the watermark back, until its next record or until records wait in
        /// it again. A partition with records waiting is never idle. Absent: never idle.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle_timeout: Option<Duration>,
        /// Watermark alignment: a partition whose watermark is further than this ahead of the
        /// slowest partition with records waiting is paused until it is within half of it, so
        /// a backlog is read evenly in event time and window state does not pile up.
        #[serde(default = "default_max_drift")]
        max_drift: Duration,
        /// Records stamped further than this ahead of the wall clock go to the dead-letter topic.
        #[serde(default = "default_future_skew")]
        max_future_skew: Duration,
    },
    Processing,
}

/// The default `maxDrift`: a few windows of the usual sizes.
pub const DEFAULT_MAX_DRIFT: Duration = Duration::from_secs(30);

fn default_max_drift() -> Duration {
    DEFAULT_MAX_DRIFT
}

fn default_future_skew() -> Duration {
    Duration::from_secs(24 * 3600)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TimestampFormat {
    /// Numbers are epoch milliseconds, strings are RFC 3339.
    #[default]
    Auto,
    EpochMillis,
    EpochSeconds,
    Rfc3339,
}

/// One filter condition on a field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    pub op: CompareOp,
    /// Right-hand side; a list for `in`, absent for `exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Exists,
}

impl CompareOp {
    /// The name as written in the spec.
    pub fn name(&self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::In => "in",
            CompareOp::Exists => "exists",
        }
    }
}

/// One output field of the projection: `name` and exactly one of `field` or `expr`.
///
/// `expr` is arithmetic over the record's numeric fields, e.g. `price * 0.908`: numeric
/// literals (`100`, `0.908`), field paths (`price`, `bid.price`, and the Kafka metadata
/// `@timestamp`, `@partition`, `@offset`), binary `+ - * /` with the usual precedence and left
/// associativity, unary minus and parentheses (the grammar is in the `expr` module). Integers
/// stay integers except under `/`; a missing or non-numeric operand, or a division by zero,
/// leaves the output field absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Projection {
    /// Name of the field in the projected record.
    pub name: String,
    /// Source field path (copied as it is). Give this or `expr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Arithmetic expression over numeric fields, e.g. `price * 0.908`. Give this or `field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
}

impl Projection {
    /// `name` copied from the field path `field`.
    pub fn field(name: impl Into<String>, field: impl Into<String>) -> Projection {
        Projection {
            name: name.into(),
            field: Some(field.into()),
            expr: None,
        }
    }

    /// `name` computed by the arithmetic expression `expr`.
    pub fn expr(name: impl Into<String>, expr: impl Into<String>) -> Projection {
        Projection {
            name: name.into(),
            field: None,
            expr: Some(expr.into()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WindowType {
    Tumbling,
    Sliding,
    Session,
}

/// A keyed window. `size` for tumbling and sliding, `slide` for sliding, `gap` for session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    #[serde(rename = "type")]
    pub kind: WindowType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Duration>,
    /// How long after a window fires late records still update it (each update re-emitted).
    #[serde(default)]
    pub allowed_lateness: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AggregateFn {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    First,
    Last,
    DistinctCount,
}

impl AggregateFn {
    /// The name as written in the spec (`distinctCount`).
    pub fn name(&self) -> &'static str {
        match self {
            AggregateFn::Count => "count",
            AggregateFn::Sum => "sum",
            AggregateFn::Min => "min",
            AggregateFn::Max => "max",
            AggregateFn::Avg => "avg",
            AggregateFn::First => "first",
            AggregateFn::Last => "last",
            AggregateFn::DistinctCount => "distinctCount",
        }
    }

    pub fn needs_field(&self) -> bool {
        !matches!(self, AggregateFn::Count)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AggregateSpec {
    /// Name of the result field.
    pub name: String,
    #[serde(rename = "fn")]
    pub function: AggregateFn,
    /// Input field path; every function but `count` needs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryGuarantee {
    #[default]
    ExactlyOnce,
    AtLeastOnce,
}

/// How the sink picks a record's partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SinkPartitioner {
    /// The Kafka client's default: by a hash of the record key.
    #[default]
    Default,
    /// Worker `i` writes every record to partition `i mod partitions` (Flink's `fixed`), so
    /// the transactions of different workers never share a partition.
    Fixed,
}

/// Kafka sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkSpec {
    pub topic: String,
    /// Defaults to the source's bootstrap servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    #[serde(default)]
    pub delivery_guarantee: DeliveryGuarantee,
    /// Which partition of the sink (and dead-letter) topic each record goes to.
    #[serde(default)]
    pub partitioner: SinkPartitioner,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_properties: BTreeMap<String, SecretRef>,
}

/// Where malformed, keyless and too-late records go (same cluster and guarantee as the sink).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetterSpec {
    /// Defaults to `<job name>-dlq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsSpec {
    /// Records with a larger value go to the dead-letter topic.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u32,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        LimitsSpec {
            max_record_bytes: default_max_record_bytes(),
        }
    }
}

fn default_max_record_bytes() -> u32 {
    1024 * 1024
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StateBackendKind {
    #[default]
    Heap,
    Rocksdb,
}

/// Keyed state and its snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateSpec {
    #[serde(default)]
    pub backend: StateBackendKind,
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: Duration,
    /// `file:///path`, `s3://bucket/prefix`, `gs://…` or `az://…`.
    #[serde(default = "default_storage")]
    pub storage: String,
    /// Completed checkpoints kept; older ones are deleted.
    #[serde(default = "default_retain")]
    pub retain: u32,
}

impl Default for StateSpec {
    fn default() -> Self {
        StateSpec {
            backend: StateBackendKind::default(),
            checkpoint_interval: default_checkpoint_interval(),
            storage: default_storage(),
            retain: default_retain(),
        }
    }
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_storage() -> String {
    "file://./.rivulet/state".to_string()
}

fn default_retain() -> u32 {
    3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_schema_has_name_required_and_field_or_expr_optional() {
        let schema = serde_json::to_value(schemars::schema_for!(Projection)).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["name"]));
        for prop in ["name", "field", "expr"] {
            assert!(
                schema["properties"][prop]["description"].is_string(),
                "{prop}: {schema}"
            );
        }
    }

    #[test]
    fn projection_round_trips_with_field_or_expr() {
        let items: Vec<Projection> =
            serde_yaml::from_str("[{name: a, field: x.y}, {name: b, expr: \"price * 0.908\"}]")
                .unwrap();
        assert_eq!(
            items,
            [
                Projection::field("a", "x.y"),
                Projection::expr("b", "price * 0.908")
            ]
        );
        assert_eq!(
            serde_json::to_value(&items).unwrap(),
            serde_json::json!([{"name": "a", "field": "x.y"}, {"name": "b", "expr": "price * 0.908"}])
        );
    }
}
