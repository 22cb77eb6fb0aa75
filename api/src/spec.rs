//! The pipeline spec and the state spec of a `StreamJob`, as users write them in YAML.
//!
//! The same types are read by the control plane (from the custom resource, see [`crate::job`])
//! and by the worker (from the manifest file or the ConfigMap the operator writes). Field
//! names are camelCase and unknown fields are rejected, so a typo is an error that names the
//! field rather than a silently ignored setting.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// What a worker runs: source → decode → filter → project → key/time → window → sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSpec {
    /// The Kafka topics read.
    pub source: SourceSpec,
    /// How record values are decoded (default `json`).
    #[serde(default)]
    pub format: FormatSpec,
    /// Event time or processing time.
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
    /// What each window computes; one result field per aggregate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregates: Vec<AggregateSpec>,
    /// Where results go.
    pub sink: SinkSpec,
    /// Where malformed, keyless and too-late records go.
    #[serde(default)]
    pub dead_letter: DeadLetterSpec,
    /// Bounds on input records.
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
    /// Topics read; partition `p` of them is read by worker `p mod parallelism`.
    pub topics: Vec<String>,
    /// Where to start when no checkpoint holds the offsets.
    #[serde(default)]
    pub start_from: StartFrom,
    /// `read_committed` (default: records of open or aborted transactions are not read) or
    /// `read_uncommitted`.
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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The name of an environment variable holding the value.
    Env(String),
    /// The path of a file holding the value (for example a mounted Secret's key).
    File(String),
}

/// How record values are decoded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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

// The schemas of `startFrom`, `format` and `time` are written out: Kubernetes takes only
// structural schemas, in which a field has one type and a property one schema, while serde
// writes `startFrom` as a string or a map, and `format` and `time` as objects whose fields
// depend on `type`. The Rust validator checks the combinations; the CEL rules here give the
// API server the same answer.

impl JsonSchema for StartFrom {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StartFrom".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Where a source starts when no checkpoint holds its offsets: \
                `earliest` (default), `latest`, or `{timestamp: \"2024-01-01T00:00:00Z\"}` \
                (the first offset whose Kafka timestamp is at or after that RFC 3339 time).",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }
}

impl JsonSchema for FormatSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FormatSpec".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "How record values are decoded.",
            "properties": {
                "type": {
                    "type": "string",
                    "enum": ["json", "csv", "raw"],
                    "description": "`json`: a JSON object per record, fields by dot-separated \
                        path (`user.id`). `csv`: one CSV line per record, columns named in \
                        order. `raw`: the value as UTF-8 text in the field `value`."
                },
                "columns": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "`csv` only: the column names, in order."
                },
                "delimiter": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1,
                    "description": "`csv` only: the column delimiter (default `,`)."
                }
            },
            "required": ["type"],
            "x-kubernetes-validations": [
                {
                    "rule": "self.type == 'csv' || (!has(self.columns) && !has(self.delimiter))",
                    "message": "columns and delimiter are fields of type csv only"
                },
                {
                    "rule": "self.type != 'csv' || has(self.columns)",
                    "message": "type csv needs columns"
                }
            ]
        })
    }
}

impl JsonSchema for TimeSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TimeSpec".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut duration = |description: &str| {
            let mut schema = Duration::json_schema(generator);
            schema.insert("description".into(), description.into());
            schema
        };
        let max_out_of_orderness =
            duration("`event` only: watermark = highest event time seen − this.");
        let idle_timeout = duration(
            "`event` only: a partition that has read everything up to its end and had no \
             record for this long stops holding the watermark back, until its next record or \
             until records wait in it again. A partition with records waiting is never idle. \
             Absent: never idle.",
        );
        let max_drift = duration(
            "`event` only: watermark alignment. A partition whose watermark is further than \
             this ahead of the slowest partition with records waiting is paused until it is \
             within half of it (default 30s).",
        );
        let max_future_skew = duration(
            "`event` only: records stamped further than this ahead of the wall clock go to \
             the dead-letter topic (default 24h).",
        );
        let mut format = TimestampFormat::json_schema(generator);
        format.insert(
            "description".into(),
            "`event` only: how the event-time field is read (default `auto`: numbers are \
             epoch milliseconds, strings RFC 3339)."
                .into(),
        );
        schemars::json_schema!({
            "type": "object",
            "description": "Event time (from a field or the Kafka timestamp) or processing time.",
            "properties": {
                "type": {
                    "type": "string",
                    "enum": ["event", "processing"],
                    "description": "`event`: windows by the time in the records. \
                        `processing`: windows by the wall clock when records are read."
                },
                "field": {
                    "type": "string",
                    "description": "`event` only: the field holding the event time, or \
                        `@timestamp` for the Kafka record timestamp."
                },
                "format": format,
                "maxOutOfOrderness": max_out_of_orderness,
                "idleTimeout": idle_timeout,
                "maxDrift": max_drift,
                "maxFutureSkew": max_future_skew
            },
            "required": ["type"],
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'event' || has(self.field)",
                    "message": "type event needs field"
                },
                {
                    "rule": "self.type == 'event' || !(has(self.field) || has(self.format) \
                        || has(self.maxOutOfOrderness) || has(self.idleTimeout) \
                        || has(self.maxDrift) || has(self.maxFutureSkew))",
                    "message": "type processing takes no other fields"
                }
            ]
        })
    }
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
    /// Field path (dot-separated) the condition reads.
    pub field: String,
    /// `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `in` or `exists`.
    pub op: CompareOp,
    /// Right-hand side; a list for `in`, absent for `exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_value")]
    pub value: Option<serde_json::Value>,
}

/// Any JSON value: a number, a string, a boolean or a list.
fn any_json_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Right-hand side: a number, string or boolean; a list for `in`; absent \
            for `exists`.",
        "x-kubernetes-preserve-unknown-fields": true
    })
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
    /// `tumbling`, `sliding` or `session`.
    #[serde(rename = "type")]
    pub kind: WindowType,
    /// Window length (tumbling and sliding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Duration>,
    /// How far apart sliding windows start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<Duration>,
    /// Session windows: the inactivity that closes a session.
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
    /// `count`, `sum`, `min`, `max`, `avg`, `first`, `last` or `distinctCount`.
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
    /// Topic the window results are written to.
    pub topic: String,
    /// Defaults to the source's bootstrap servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// `exactly-once` (default: results are committed in Kafka transactions with the
    /// checkpoints) or `at-least-once`.
    #[serde(default)]
    pub delivery_guarantee: DeliveryGuarantee,
    /// Which partition of the sink (and dead-letter) topic each record goes to.
    #[serde(default)]
    pub partitioner: SinkPartitioner,
    /// librdkafka producer properties passed through as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// librdkafka producer properties whose values come from the environment or a file.
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
    /// `heap` (default: hash maps in memory) or `rocksdb` (on local disk, incremental
    /// checkpoints); both give the same results.
    #[serde(default)]
    pub backend: StateBackendKind,
    /// How often a checkpoint is taken (default 10s); results are committed with each.
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
