//! Keyed windows over event time (or processing time): assignment, aggregation, firing,
//! allowed lateness and session merging.
//!
//! Semantics (as in Flink): a watermark `W` says no record with a timestamp `<= W` is still
//! expected. Window `[start, end)` fires (`kind: final`) once `W >= end - 1`. Until
//! `W >= end - 1 + allowedLateness` a late record still updates it and the new result is
//! emitted at once (`kind: update`); after that its state is dropped and a record that fits
//! no live window is reported late (it goes to the dead-letter topic).
//!
//! - [`agg`]: accumulators and their results.
//! - [`assign`]: which tumbling/sliding windows a timestamp belongs to.
//! - [`operator`]: the window operator over a [`crate::state::StateBackend`].

pub mod agg;
pub mod assign;
pub mod operator;

use crate::record::Number;

pub use operator::WindowOperator;

/// One aggregate's input value taken from a record (already type-checked).
#[derive(Clone, Debug, PartialEq)]
pub enum AggInput {
    /// `count` reads nothing.
    Nothing,
    /// `sum`, `min`, `max`, `avg`.
    Number(Number),
    /// `first`, `last`, `distinctCount`: any scalar or structured value.
    Value(serde_json::Value),
}

/// A record ready for the window operator.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyedInput {
    pub key_group: u32,
    /// Canonical key bytes (see `rivulet_api::keygroup`).
    pub key: Vec<u8>,
    /// The key fields as a JSON object, e.g. `{"user":"alice"}` (emitted with results).
    pub key_json: String,
    /// Event time (or processing time), epoch ms.
    pub timestamp: i64,
    /// (partition, offset): breaks ties between equal timestamps for `first`/`last`.
    pub position: (i32, i64),
    /// One input per aggregate, in spec order.
    pub inputs: Vec<AggInput>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResultKind {
    /// First emission, when the watermark passes the window's end.
    Final,
    /// Re-emission after a late record within the allowed lateness; supersedes earlier ones.
    Update,
}

/// One window's result.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowResult {
    pub key_json: String,
    /// Canonical key bytes.
    pub key: Vec<u8>,
    pub start: i64,
    pub end: i64,
    /// One value per aggregate, in spec order.
    pub values: Vec<serde_json::Value>,
    pub kind: ResultKind,
}

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("corrupt window state: {0}")]
    Corrupt(String),
    #[error("invalid window spec: {0}")]
    Spec(String),
}
