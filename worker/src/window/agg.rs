//! Accumulators of the window aggregates and their results.
//!
//! One [`Accumulator`] per aggregate of a window. Every accumulator is a commutative monoid:
//! [`Accumulator::add`] folds one record in, [`Accumulator::merge`] combines two partial
//! aggregates (session merging, pre-aggregation inside a batch, local pre-aggregation before
//! the shuffle), and the result never depends on the order records arrived or partial
//! aggregates were merged. That is what makes results identical at any parallelism and on
//! any backend.
//!
//! Accumulators are serde-serializable with postcard (no self-describing formats needed):
//! arbitrary JSON values (`first`, `last`) are kept as [`StoredJson`], not as
//! `serde_json::Value`, whose deserializer postcard cannot drive.
//!
//! Results:
//! - `count`: number of records (JSON integer).
//! - `sum`: exact. Integers are summed in an `i128`, so no intermediate overflow can depend on
//!   the order of the inputs; the result is a JSON integer when no float was seen and it fits
//!   an `i64`, and a float otherwise. Floats are summed exactly (Shewchuk's non-overlapping
//!   partials, as Python's `math.fsum`) and rounded once, so float sums are order-independent
//!   too. `null` when no record carried a value; a sum beyond the `f64` range is `null`.
//! - `avg`: the exact sum rounded to `f64`, divided by the count of values (JSON float, `null`
//!   when there were none).
//! - `min` / `max`: numeric comparison with integers and floats compared exactly; the result
//!   keeps its type (an integer stays an integer). Equal values of different types resolve to
//!   the integer, so the result is order-independent.
//! - `first` / `last`: the value of the record with the smallest / largest
//!   `(timestamp, partition, offset)`.
//! - `distinctCount`: the number of distinct values, compared by text: scalars by
//!   [`crate::record::scalar_text`] (so the number `1` and the string `"1"` are the same
//!   value, as they are for keys), arrays and objects by their compact JSON.
//!
//! An input of the wrong kind (already excluded by type checking upstream) is converted when
//! it can be (a string holding a number for `sum`) and otherwise ignored, as is
//! [`AggInput::Nothing`] for every function but `count`.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use rivulet_api::spec::AggregateFn;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AggInput;
use crate::record::{as_number, scalar_text, Number};

/// Two accumulators of different functions were merged (only possible with corrupt state or
/// state from another pipeline).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot merge a {left} accumulator with a {right} accumulator")]
pub struct MergeMismatch {
    pub left: &'static str,
    pub right: &'static str,
}

/// The partial aggregate of one function over some records.
///
/// The order of variants and fields here (and in [`ExactSum`], [`Stamped`], [`StoredJson`])
/// is part of the state format (postcard encodes variants by index): append only, or bump
/// [`super::operator::FORMAT_VERSION`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Accumulator {
    Count(u64),
    Sum(ExactSum),
    Min(Option<Number>),
    Max(Option<Number>),
    Avg(ExactSum),
    First(Option<Stamped>),
    Last(Option<Stamped>),
    DistinctCount(BTreeSet<String>),
}

impl Accumulator {
    /// The empty accumulator of `function`.
    pub fn new(function: AggregateFn) -> Self {
        match function {
            AggregateFn::Count => Accumulator::Count(0),
            AggregateFn::Sum => Accumulator::Sum(ExactSum::default()),
            AggregateFn::Min => Accumulator::Min(None),
            AggregateFn::Max => Accumulator::Max(None),
            AggregateFn::Avg => Accumulator::Avg(ExactSum::default()),
            AggregateFn::First => Accumulator::First(None),
            AggregateFn::Last => Accumulator::Last(None),
            AggregateFn::DistinctCount => Accumulator::DistinctCount(BTreeSet::new()),
        }
    }

    /// One empty accumulator per function, in order.
    pub fn new_set(functions: &[AggregateFn]) -> Vec<Accumulator> {
        functions.iter().map(|f| Accumulator::new(*f)).collect()
    }

    /// The function's name as users write it.
    pub fn name(&self) -> &'static str {
        match self {
            Accumulator::Count(_) => "count",
            Accumulator::Sum(_) => "sum",
            Accumulator::Min(_) => "min",
            Accumulator::Max(_) => "max",
            Accumulator::Avg(_) => "avg",
            Accumulator::First(_) => "first",
            Accumulator::Last(_) => "last",
            Accumulator::DistinctCount(_) => "distinctCount",
        }
    }

    /// Whether this accumulator belongs to `function`.
    pub fn is_for(&self, function: AggregateFn) -> bool {
        matches!(
            (self, function),
            (Accumulator::Count(_), AggregateFn::Count)
                | (Accumulator::Sum(_), AggregateFn::Sum)
                | (Accumulator::Min(_), AggregateFn::Min)
                | (Accumulator::Max(_), AggregateFn::Max)
                | (Accumulator::Avg(_), AggregateFn::Avg)
                | (Accumulator::First(_), AggregateFn::First)
                | (Accumulator::Last(_), AggregateFn::Last)
                | (Accumulator::DistinctCount(_), AggregateFn::DistinctCount)
        )
    }

    /// Folds in one record's input; `timestamp` and `position` order `first` and `last`.
    pub fn add(&mut self, input: &AggInput, timestamp: i64, position: (i32, i64)) {
        match self {
            Accumulator::Count(n) => *n = n.saturating_add(1),
            Accumulator::Sum(s) | Accumulator::Avg(s) => {
                if let Some(n) = input_number(input) {
                    s.add(n);
                }
            }
            Accumulator::Min(m) => {
                if let Some(n) = input_number(input) {
                    keep_min(m, n);
                }
            }
            Accumulator::Max(m) => {
                if let Some(n) = input_number(input) {
                    keep_max(m, n);
                }
            }
            Accumulator::First(f) => {
                if let Some(v) = input_value(input) {
                    keep_first(f, Stamped::new(timestamp, position, &v));
                }
            }
            Accumulator::Last(l) => {
                if let Some(v) = input_value(input) {
                    keep_last(l, Stamped::new(timestamp, position, &v));
                }
            }
            Accumulator::DistinctCount(set) => {
                if let Some(v) = input_value(input) {
                    set.insert(distinct_text(&v));
                }
            }
        }
    }

    /// Combines `other` (a partial aggregate of other records) into `self`.
    pub fn merge(&mut self, other: Accumulator) -> Result<(), MergeMismatch> {
        match (self, other) {
            (Accumulator::Count(a), Accumulator::Count(b)) => *a = a.saturating_add(b),
            (Accumulator::Sum(a), Accumulator::Sum(b))
            | (Accumulator::Avg(a), Accumulator::Avg(b)) => a.merge(b),
            (Accumulator::Min(a), Accumulator::Min(b)) => {
                if let Some(n) = b {
                    keep_min(a, n);
                }
            }
            (Accumulator::Max(a), Accumulator::Max(b)) => {
                if let Some(n) = b {
                    keep_max(a, n);
                }
            }
            (Accumulator::First(a), Accumulator::First(b)) => {
                if let Some(s) = b {
                    keep_first(a, s);
                }
            }
            (Accumulator::Last(a), Accumulator::Last(b)) => {
                if let Some(s) = b {
                    keep_last(a, s);
                }
            }
            (Accumulator::DistinctCount(a), Accumulator::DistinctCount(b)) => {
                if a.len() < b.len() {
                    let small = std::mem::replace(a, b);
                    a.extend(small);
                } else {
                    a.extend(b);
                }
            }
            (left, right) => {
                return Err(MergeMismatch {
                    left: left.name(),
                    right: right.name(),
                })
            }
        }
        Ok(())
    }

    /// The aggregate's value.
    pub fn result(&self) -> Value {
        match self {
            Accumulator::Count(n) => Value::from(*n),
            Accumulator::Sum(s) => s.result().map(|n| n.to_json()).unwrap_or(Value::Null),
            Accumulator::Avg(s) => match (s.count, s.result()) {
                (0, _) | (_, None) => Value::Null,
                (count, Some(sum)) => Number::Float(sum.as_f64() / count as f64).to_json(),
            },
            Accumulator::Min(m) | Accumulator::Max(m) => {
                m.map(|n| n.to_json()).unwrap_or(Value::Null)
            }
            Accumulator::First(s) | Accumulator::Last(s) => s
                .as_ref()
                .map(|s| s.value.to_value())
                .unwrap_or(Value::Null),
            Accumulator::DistinctCount(set) => Value::from(set.len() as u64),
        }
    }
}

/// Folds one record into a set of accumulators (one per aggregate, same order as `inputs`).
pub fn add_all(
    accs: &mut [Accumulator],
    inputs: &[AggInput],
    timestamp: i64,
    position: (i32, i64),
) {
    for (acc, input) in accs.iter_mut().zip(inputs) {
        acc.add(input, timestamp, position);
    }
}

/// Merges `other` into `accs` pairwise.
pub fn merge_all(accs: &mut [Accumulator], other: Vec<Accumulator>) -> Result<(), MergeMismatch> {
    if accs.len() != other.len() {
        return Err(MergeMismatch {
            left: "aggregate list",
            right: "aggregate list of another length",
        });
    }
    for (acc, o) in accs.iter_mut().zip(other) {
        acc.merge(o)?;
    }
    Ok(())
}

/// The results of a set of accumulators, in order.
pub fn results(accs: &[Accumulator]) -> Vec<Value> {
    accs.iter().map(Accumulator::result).collect()
}

fn input_number(input: &AggInput) -> Option<Number> {
    match input {
        AggInput::Nothing => None,
        AggInput::Number(n) => Some(*n),
        AggInput::Value(v) => as_number(v),
    }
}

fn input_value(input: &AggInput) -> Option<Value> {
    match input {
        AggInput::Nothing => None,
        AggInput::Number(n) => Some(n.to_json()).filter(|v| !v.is_null()),
        AggInput::Value(v) => Some(v.clone()),
    }
}

fn distinct_text(v: &Value) -> String {
    match scalar_text(v) {
        Some(text) => text.into_owned(),
        // Serializing a `Value` cannot fail (its map keys are strings).
        None => serde_json::to_string(v).unwrap_or_default(),
    }
}

fn keep_min(slot: &mut Option<Number>, n: Number) {
    match slot {
        Some(cur) if cmp_exact(cur, &n) != Ordering::Greater => {}
        _ => *slot = Some(n),
    }
}

fn keep_max(slot: &mut Option<Number>, n: Number) {
    match slot {
        Some(cur) if cmp_exact(cur, &n) != Ordering::Less => {}
        _ => *slot = Some(n),
    }
}

/// A total order on numbers, consistent with [`Number::cmp_num`] wherever that is exact:
/// by exact numeric value (an `i64` against an `f64` compared without rounding), then integers
/// before floats of the same value (so `min`/`max` prefer `1` over `1.0` whatever the order),
/// then by [`f64::total_cmp`] (so `-0.0 < 0.0`).
pub fn cmp_exact(a: &Number, b: &Number) -> Ordering {
    match (*a, *b) {
        (Number::Int(x), Number::Int(y)) => x.cmp(&y),
        (Number::Float(x), Number::Float(y)) => {
            let by_value = x.partial_cmp(&y).unwrap_or_else(|| x.total_cmp(&y));
            by_value.then_with(|| x.total_cmp(&y))
        }
        (Number::Int(x), Number::Float(y)) => cmp_int_float(x, y).then(Ordering::Less),
        (Number::Float(x), Number::Int(y)) => cmp_int_float(y, x).reverse().then(Ordering::Greater),
    }
}

/// Compares an integer with a float exactly.
fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less;
    }
    // 2^63 is exactly representable; every f64 at or beyond it is larger than any i64.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    // Now trunc(f) fits an i64 exactly.
    let t = f.trunc();
    let ti = t as i64;
    match i.cmp(&ti) {
        Ordering::Equal => {
            let frac = f - t;
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        other => other,
    }
}

/// An input value with the record's place in event time, for `first` and `last`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub timestamp: i64,
    pub position: (i32, i64),
    pub value: StoredJson,
}

impl Stamped {
    fn new(timestamp: i64, position: (i32, i64), value: &Value) -> Self {
        Stamped {
            timestamp,
            position,
            value: StoredJson::from_value(value),
        }
    }

    /// Total order: (timestamp, position), then the value itself (only equal for the same
    /// record delivered twice), so the choice never depends on arrival order.
    fn order(&self, other: &Stamped) -> Ordering {
        (self.timestamp, self.position)
            .cmp(&(other.timestamp, other.position))
            .then_with(|| self.value.cmp_total(&other.value))
    }
}

fn keep_first(slot: &mut Option<Stamped>, s: Stamped) {
    match slot {
        Some(cur) if cur.order(&s) != Ordering::Greater => {}
        _ => *slot = Some(s),
    }
}

fn keep_last(slot: &mut Option<Stamped>, s: Stamped) {
    match slot {
        Some(cur) if cur.order(&s) != Ordering::Less => {}
        _ => *slot = Some(s),
    }
}

/// A JSON value in a form postcard can store (`serde_json::Value` needs a self-describing
/// format). Object members keep their order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoredJson {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    String(String),
    Array(Vec<StoredJson>),
    Object(Vec<(String, StoredJson)>),
}

impl StoredJson {
    pub fn from_value(v: &Value) -> Self {
        match v {
            Value::Null => StoredJson::Null,
            Value::Bool(b) => StoredJson::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    StoredJson::Int(i)
                } else if let Some(u) = n.as_u64() {
                    StoredJson::UInt(u)
                } else {
                    n.as_f64()
                        .map(StoredJson::Float)
                        .unwrap_or(StoredJson::Null)
                }
            }
            Value::String(s) => StoredJson::String(s.clone()),
            Value::Array(items) => StoredJson::Array(items.iter().map(Self::from_value).collect()),
            Value::Object(map) => StoredJson::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), Self::from_value(v)))
                    .collect(),
            ),
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            StoredJson::Null => Value::Null,
            StoredJson::Bool(b) => Value::Bool(*b),
            StoredJson::Int(i) => Value::from(*i),
            StoredJson::UInt(u) => Value::from(*u),
            StoredJson::Float(f) => Number::Float(*f).to_json(),
            StoredJson::String(s) => Value::String(s.clone()),
            StoredJson::Array(items) => Value::Array(items.iter().map(Self::to_value).collect()),
            StoredJson::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value()))
                    .collect(),
            ),
        }
    }

    /// An arbitrary but fixed total order (only used to break exact ties deterministically).
    fn cmp_total(&self, other: &StoredJson) -> Ordering {
        fn rank(v: &StoredJson) -> u8 {
            match v {
                StoredJson::Null => 0,
                StoredJson::Bool(_) => 1,
                StoredJson::Int(_) => 2,
                StoredJson::UInt(_) => 3,
                StoredJson::Float(_) => 4,
                StoredJson::String(_) => 5,
                StoredJson::Array(_) => 6,
                StoredJson::Object(_) => 7,
            }
        }
        match (self, other) {
            (StoredJson::Bool(a), StoredJson::Bool(b)) => a.cmp(b),
            (StoredJson::Int(a), StoredJson::Int(b)) => a.cmp(b),
            (StoredJson::UInt(a), StoredJson::UInt(b)) => a.cmp(b),
            (StoredJson::Float(a), StoredJson::Float(b)) => a.total_cmp(b),
            (StoredJson::String(a), StoredJson::String(b)) => a.cmp(b),
            (StoredJson::Array(a), StoredJson::Array(b)) => {
                for (x, y) in a.iter().zip(b) {
                    let o = x.cmp_total(y);
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
            (StoredJson::Object(a), StoredJson::Object(b)) => {
                for ((ka, va), (kb, vb)) in a.iter().zip(b) {
                    let o = ka.cmp(kb).then_with(|| va.cmp_total(vb));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

/// An exact, order-independent sum of integers and floats (and the number of values).
///
/// Integers accumulate in an `i128` (on the practically impossible overflow of that, the
/// integer part is moved into the float partials, still exactly). Floats accumulate as
/// Shewchuk's non-overlapping partials whose exact sum is the exact sum of the inputs; the
/// result is that sum rounded once (round-half-even), whatever the order of `add`s and
/// `merge`s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactSum {
    /// Number of values added.
    pub count: u64,
    int: i128,
    /// Whether any float was added (the result is then a float).
    float_seen: bool,
    /// Non-overlapping partials, increasing in magnitude.
    partials: Vec<f64>,
    /// Sum of non-finite inputs and of partial sums that overflowed `f64`.
    overflow: f64,
}

impl ExactSum {
    pub fn add(&mut self, n: Number) {
        self.count = self.count.saturating_add(1);
        match n {
            Number::Int(i) => self.add_int(i128::from(i)),
            Number::Float(f) => {
                self.float_seen = true;
                self.add_float(f);
            }
        }
    }

    pub fn merge(&mut self, other: ExactSum) {
        self.count = self.count.saturating_add(other.count);
        self.float_seen |= other.float_seen;
        self.add_int(other.int);
        for p in other.partials {
            self.add_float(p);
        }
        self.overflow += other.overflow;
    }

    /// The sum; `None` when nothing was added or it is not a finite number.
    pub fn result(&self) -> Option<Number> {
        if self.count == 0 {
            return None;
        }
        if !self.float_seen && self.partials.is_empty() && self.overflow == 0.0 {
            if let Ok(i) = i64::try_from(self.int) {
                return Some(Number::Int(i));
            }
        }
        let mut partials = self.partials.clone();
        let mut overflow = self.overflow;
        for chunk in int_chunks(self.int) {
            msum_add(&mut partials, &mut overflow, chunk);
        }
        // `overflow` only ever holds infinities or NaN (which is `!= 0.0` too).
        if overflow != 0.0 {
            return None;
        }
        let total = round_partials(&partials);
        total.is_finite().then_some(Number::Float(total))
    }

    fn add_int(&mut self, i: i128) {
        match self.int.checked_add(i) {
            Some(sum) => self.int = sum,
            None => {
                let moved = std::mem::replace(&mut self.int, i);
                for chunk in int_chunks(moved) {
                    msum_add(&mut self.partials, &mut self.overflow, chunk);
                }
            }
        }
    }

    fn add_float(&mut self, f: f64) {
        msum_add(&mut self.partials, &mut self.overflow, f);
    }
}

/// Splits an `i128` into four floats, each exactly representable, summing to it exactly.
fn int_chunks(v: i128) -> [f64; 4] {
    let mut out = [0.0; 4];
    for (k, slot) in out.iter_mut().enumerate() {
        let shift = 32 * k as u32;
        let part = if k == 3 {
            // The top 32 bits, signed.
            (v >> 96) as f64
        } else {
            ((v >> shift) & 0xffff_ffff) as f64
        };
        *slot = part * 2f64.powi(shift as i32);
    }
    out
}

/// Adds `x` to the non-overlapping `partials` exactly (Shewchuk / `math.fsum`). Non-finite
/// values and overflowing partial sums go to `overflow`; once it is non-zero the sum has no
/// finite result (the rest of the partials no longer matter).
fn msum_add(partials: &mut Vec<f64>, overflow: &mut f64, mut x: f64) {
    if !x.is_finite() {
        *overflow += x;
        return;
    }
    if x == 0.0 {
        return;
    }
    let mut i = 0;
    for j in 0..partials.len() {
        let mut y = partials[j];
        if x.abs() < y.abs() {
            std::mem::swap(&mut x, &mut y);
        }
        let hi = x + y;
        if !hi.is_finite() {
            *overflow += hi;
            partials.truncate(i);
            return;
        }
        let lo = y - (hi - x);
        if lo != 0.0 {
            partials[i] = lo;
            i += 1;
        }
        x = hi;
    }
    partials.truncate(i);
    partials.push(x);
}

/// The correctly rounded value of the exact sum of non-overlapping partials.
fn round_partials(partials: &[f64]) -> f64 {
    let mut n = partials.len();
    if n == 0 {
        return 0.0;
    }
    n -= 1;
    let mut hi = partials[n];
    let mut lo = 0.0;
    while n > 0 {
        let x = hi;
        n -= 1;
        let y = partials[n];
        hi = x + y;
        let yr = hi - x;
        lo = y - yr;
        if lo != 0.0 {
            break;
        }
    }
    // Round half to even across the remaining partials, as math.fsum does.
    if n > 0 && ((lo < 0.0 && partials[n - 1] < 0.0) || (lo > 0.0 && partials[n - 1] > 0.0)) {
        let y = lo * 2.0;
        let x = hi + y;
        let yr = x - hi;
        if y == yr {
            hi = x;
        }
    }
    hi
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(f: AggregateFn, inputs: &[(AggInput, i64, (i32, i64))]) -> Accumulator {
        let mut acc = Accumulator::new(f);
        for (i, ts, pos) in inputs {
            acc.add(i, *ts, *pos);
        }
        acc
    }

    fn nums(f: AggregateFn, ns: &[Number]) -> Accumulator {
        let inputs: Vec<_> = ns
            .iter()
            .enumerate()
            .map(|(i, n)| (AggInput::Number(*n), 0, (0, i as i64)))
            .collect();
        run(f, &inputs)
    }

    fn roundtrip(acc: &Accumulator) -> Accumulator {
        let bytes = postcard::to_allocvec(acc).expect("serialize");
        postcard::from_bytes(&bytes).expect("deserialize")
    }

    use Number::{Float as F, Int as I};

    #[test]
    fn count_and_merge() {
        let mut a = run(AggregateFn::Count, &vec![(AggInput::Nothing, 0, (0, 0)); 3]);
        let b = run(AggregateFn::Count, &vec![(AggInput::Nothing, 0, (0, 0)); 2]);
        a.merge(b).unwrap();
        assert_eq!(a.result(), json!(5));
        assert_eq!(Accumulator::new(AggregateFn::Count).result(), json!(0));
    }

    #[test]
    fn sum_int_stays_int_and_is_exact() {
        assert_eq!(
            nums(AggregateFn::Sum, &[I(1), I(2), I(-10)]).result(),
            json!(-7)
        );
        // Overflow of i64 in the middle does not matter: the total fits.
        let a = nums(AggregateFn::Sum, &[I(i64::MAX), I(1), I(-1)]);
        let b = nums(AggregateFn::Sum, &[I(-1), I(i64::MAX), I(1)]);
        assert_eq!(a.result(), json!(i64::MAX));
        assert_eq!(b.result(), json!(i64::MAX));
        // A total beyond i64 becomes a float.
        let c = nums(AggregateFn::Sum, &[I(i64::MAX), I(i64::MAX)]);
        assert_eq!(c.result(), json!(2.0 * 9_223_372_036_854_775_807f64));
        assert!(c.result().is_f64());
        assert_eq!(Accumulator::new(AggregateFn::Sum).result(), Value::Null);
    }

    #[test]
    fn sum_float_is_order_independent() {
        assert_eq!(nums(AggregateFn::Sum, &[I(1), F(0.5)]).result(), json!(1.5));
        // Naive left-to-right addition gives 0.0 for one order and 1.0 for the other.
        let a = nums(AggregateFn::Sum, &[F(1e100), F(1.0), F(-1e100)]);
        let b = nums(AggregateFn::Sum, &[F(1e100), F(-1e100), F(1.0)]);
        assert_eq!(a.result(), json!(1.0));
        assert_eq!(b.result(), json!(1.0));
        let c = nums(AggregateFn::Sum, &[F(0.1), F(0.2), F(0.3)]);
        let d = nums(AggregateFn::Sum, &[F(0.3), F(0.2), F(0.1)]);
        assert_eq!(c.result(), d.result());
        assert_eq!(c.result(), json!(0.6));
        // Float sum mixed with a huge integer part.
        let e = nums(AggregateFn::Sum, &[I(1 << 60), F(0.5), I(1 << 60)]);
        assert_eq!(e.result(), json!((1u64 << 61) as f64));
        // Beyond f64 range.
        assert_eq!(
            nums(AggregateFn::Sum, &[F(f64::MAX), F(f64::MAX)]).result(),
            Value::Null
        );
    }

    #[test]
    fn sum_merge_equals_sequential() {
        let all = [I(3), F(0.25), I(-7), F(1e-3), I(i64::MIN)];
        let whole = nums(AggregateFn::Sum, &all);
        let mut left = nums(AggregateFn::Sum, &all[..2]);
        left.merge(nums(AggregateFn::Sum, &all[2..])).unwrap();
        assert_eq!(whole.result(), left.result());
        assert_eq!(roundtrip(&left).result(), whole.result());
    }

    #[test]
    fn avg() {
        assert_eq!(
            nums(AggregateFn::Avg, &[I(1), I(2), I(4)]).result(),
            json!(7.0 / 3.0)
        );
        assert_eq!(nums(AggregateFn::Avg, &[I(2), I(4)]).result(), json!(3.0));
        assert_eq!(Accumulator::new(AggregateFn::Avg).result(), Value::Null);
    }

    #[test]
    fn min_max_keep_type() {
        assert_eq!(
            nums(AggregateFn::Min, &[I(3), F(2.5), I(7)]).result(),
            json!(2.5)
        );
        assert_eq!(
            nums(AggregateFn::Max, &[I(3), F(2.5), I(7)]).result(),
            json!(7)
        );
        assert!(nums(AggregateFn::Max, &[I(3), F(2.5), I(7)])
            .result()
            .is_i64());
        // Ties between 1 and 1.0 resolve to the integer in any order.
        assert!(nums(AggregateFn::Min, &[F(1.0), I(1)]).result().is_i64());
        assert!(nums(AggregateFn::Min, &[I(1), F(1.0)]).result().is_i64());
        // Exact comparison beyond 2^53.
        let big = (1i64 << 53) + 1;
        assert_eq!(
            nums(AggregateFn::Max, &[F((1i64 << 53) as f64), I(big)]).result(),
            json!(big)
        );
        assert_eq!(Accumulator::new(AggregateFn::Max).result(), Value::Null);
        let mut a = nums(AggregateFn::Min, &[I(5)]);
        a.merge(nums(AggregateFn::Min, &[I(-5)])).unwrap();
        assert_eq!(a.result(), json!(-5));
    }

    #[test]
    fn exact_comparison() {
        assert_eq!(cmp_exact(&I(1), &F(1.5)), Ordering::Less);
        assert_eq!(cmp_exact(&I(2), &F(1.5)), Ordering::Greater);
        assert_eq!(cmp_exact(&I(-2), &F(-1.5)), Ordering::Less);
        assert_eq!(cmp_exact(&I(1), &F(1.0)), Ordering::Less);
        assert_eq!(cmp_exact(&F(1.0), &I(1)), Ordering::Greater);
        assert_eq!(cmp_exact(&I(i64::MAX), &F(9.3e18)), Ordering::Less);
        assert_eq!(cmp_exact(&I(i64::MIN), &F(-9.3e18)), Ordering::Greater);
        assert_eq!(cmp_exact(&F(-0.0), &F(0.0)), Ordering::Less);
    }

    #[test]
    fn first_last_by_time_then_position() {
        let inputs = [
            (AggInput::Value(json!("b")), 20, (0, 1)),
            (AggInput::Value(json!("a")), 10, (1, 5)),
            (AggInput::Value(json!("a2")), 10, (1, 6)),
            (AggInput::Value(json!({"x": [1, 2]})), 30, (0, 0)),
        ];
        let mut rev = inputs.clone();
        rev.reverse();
        for order in [&inputs[..], &rev[..]] {
            assert_eq!(run(AggregateFn::First, order).result(), json!("a"));
            assert_eq!(run(AggregateFn::Last, order).result(), json!({"x": [1, 2]}));
        }
        let mut first = run(AggregateFn::First, &inputs[..1]);
        first.merge(run(AggregateFn::First, &inputs[1..])).unwrap();
        assert_eq!(roundtrip(&first).result(), json!("a"));
        assert_eq!(Accumulator::new(AggregateFn::First).result(), Value::Null);
    }

    #[test]
    fn distinct_count() {
        let vals = [
            json!("a"),
            json!(1),
            json!("1"),
            json!(true),
            json!([1]),
            json!([1]),
            json!("a"),
        ];
        let inputs: Vec<_> = vals
            .iter()
            .map(|v| (AggInput::Value(v.clone()), 0, (0, 0)))
            .collect();
        let acc = run(AggregateFn::DistinctCount, &inputs);
        // "a", "1" (number and string alike), "true", "[1]".
        assert_eq!(acc.result(), json!(4));
        let mut a = run(AggregateFn::DistinctCount, &inputs[..2]);
        a.merge(run(AggregateFn::DistinctCount, &inputs[2..]))
            .unwrap();
        assert_eq!(roundtrip(&a).result(), json!(4));
    }

    #[test]
    fn merge_mismatch_is_an_error() {
        let mut a = Accumulator::new(AggregateFn::Count);
        assert!(a.merge(Accumulator::new(AggregateFn::Sum)).is_err());
        let mut set = Accumulator::new_set(&[AggregateFn::Count]);
        assert!(merge_all(&mut set, vec![]).is_err());
    }

    #[test]
    fn stored_json_roundtrip() {
        let v = json!({"z": 1, "a": [true, null, -3, 18446744073709551615u64, 2.5, "s"]});
        let acc = run(
            AggregateFn::Last,
            &[(AggInput::Value(v.clone()), 0, (0, 0))],
        );
        assert_eq!(roundtrip(&acc).result(), v);
    }
}
