//! Stateless per-record transforms: the filter and the projection.
//!
//! **Filter** — every condition must hold for a record to be kept:
//!
//! - `eq`, `ne`, `lt`, `le`, `gt`, `ge`: when the condition's value is a JSON number and the
//!   record's value is a number or a numeric string (CSV fields are strings), they compare
//!   numerically. When both are strings they compare lexicographically (by Unicode code
//!   points). Otherwise `eq`/`ne` use JSON equality, and the ordering operators are a type
//!   error ([`TransformError`]) that names the field: the record is malformed and goes to the
//!   dead-letter topic, rather than being silently dropped.
//! - A missing (or `null`) field makes a condition false — the record is filtered — except
//!   `ne`, which holds.
//! - `in`: the record's value equals one of the list's elements (numeric-aware, as `eq`).
//! - `exists`: the field is present and not `null`.
//!
//! **Projection** — builds a new record whose value is an object with one field per
//! projection, `name -> value of field` (or of `expr`), keeping the record's Kafka metadata. A
//! missing source field leaves its output field absent. A dotted name (`user.id`) creates
//! nested objects, so later stages can address it by the same path. An empty projection
//! passes records through.
//!
//! **Expressions** (`expr: "price * 0.908"`, parsed by [`rivulet_api::expr`] once, when the
//! projector is built) evaluate to a number:
//!
//! - Operands are JSON numbers and numeric strings (CSV fields), as the filter reads them.
//! - Integer arithmetic stays integer (`i64`; `+ - *` and unary minus are checked, and an
//!   overflow gives the float result instead); `/` always gives a float; any float operand
//!   makes the result a float.
//! - Like a missing `field`, the output field is left absent — the record is still emitted,
//!   not dead-lettered — when an operand is missing or `null`, when it is not numeric
//!   (`"abc"`, `true`, an object), on a division by zero, and when a float result is not
//!   finite.

use std::cmp::Ordering;

use rivulet_api::expr::{self, BinOp, Expr};
use rivulet_api::spec::{CompareOp, Condition, Projection};
use serde_json::{Map, Value};

use crate::pipeline::SpecError;
use crate::record::{as_number, FieldPath, Number, Record};

/// A condition that cannot be evaluated on a record's value: the record is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct TransformError {
    /// The field path, as written in the spec.
    pub field: String,
    pub reason: String,
}

/// The conjunction of the spec's filter conditions.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    conditions: Vec<Compiled>,
}

#[derive(Clone, Debug)]
struct Compiled {
    field: String,
    path: FieldPath,
    test: Test,
}

#[derive(Clone, Debug)]
enum Test {
    Compare(CompareOp, Operand),
    In(Vec<Operand>),
    Exists,
}

/// A right-hand side, with its number pre-parsed when it is a JSON number.
#[derive(Clone, Debug)]
struct Operand {
    value: Value,
    number: Option<Number>,
}

impl Operand {
    fn new(value: Value) -> Operand {
        let number = match &value {
            Value::Number(_) => as_number(&value),
            _ => None,
        };
        Operand { value, number }
    }

    /// Equality, numeric when the operand is a number and `lhs` is numeric.
    fn equals(&self, lhs: &Value) -> bool {
        if let Some(rhs) = self.number {
            if let Some(l) = as_number(lhs) {
                return l.cmp_num(&rhs) == Ordering::Equal;
            }
        }
        *lhs == self.value
    }

    /// Ordering, numeric or lexicographic; `None` when the types do not compare.
    fn order(&self, lhs: &Value) -> Option<Ordering> {
        if let Some(rhs) = self.number {
            return as_number(lhs).map(|l| l.cmp_num(&rhs));
        }
        match (lhs, &self.value) {
            (Value::String(l), Value::String(r)) => Some(l.as_str().cmp(r.as_str())),
            _ => None,
        }
    }
}

impl Filter {
    /// Compiles the conditions. Fails, naming the condition's field in the spec, when a
    /// comparison has no value (or one that cannot be ordered), when `in` has no list, or
    /// when `exists` has a value.
    pub fn new(conditions: &[Condition]) -> Result<Filter, SpecError> {
        let conditions = conditions
            .iter()
            .enumerate()
            .map(|(i, c)| compile(i, c))
            .collect::<Result<_, _>>()?;
        Ok(Filter { conditions })
    }

    /// Every field path the filter reads.
    pub fn fields_read(&self) -> Vec<&FieldPath> {
        self.conditions.iter().map(|c| &c.path).collect()
    }

    /// Whether the filter has no conditions (keeps everything).
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Whether `record` passes every condition. An error means a condition cannot be
    /// evaluated on the record's value (e.g. `amount lt 10` where `amount` is `true`).
    pub fn matches(&self, record: &Record) -> Result<bool, TransformError> {
        for c in &self.conditions {
            if !c.eval(record)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn compile(i: usize, c: &Condition) -> Result<Compiled, SpecError> {
    let op_name = c.op.name();
    let test = match c.op {
        CompareOp::Exists => {
            if c.value.is_some() {
                return Err(SpecError::new(
                    format!("spec.pipeline.filter[{i}].value"),
                    "`exists` takes no value",
                ));
            }
            Test::Exists
        }
        CompareOp::In => match &c.value {
            Some(Value::Array(items)) => {
                Test::In(items.iter().cloned().map(Operand::new).collect())
            }
            _ => {
                return Err(SpecError::new(
                    format!("spec.pipeline.filter[{i}].value"),
                    "`in` needs a list of values",
                ))
            }
        },
        op @ (CompareOp::Eq | CompareOp::Ne) => match &c.value {
            Some(v) if !v.is_null() => Test::Compare(op, Operand::new(v.clone())),
            _ => {
                return Err(SpecError::new(
                    format!("spec.pipeline.filter[{i}].value"),
                    format!("`{op_name}` needs a value (use `exists` to test for presence)"),
                ))
            }
        },
        op @ (CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge) => match &c.value {
            Some(v @ (Value::Number(_) | Value::String(_))) => {
                Test::Compare(op, Operand::new(v.clone()))
            }
            _ => {
                return Err(SpecError::new(
                    format!("spec.pipeline.filter[{i}].value"),
                    format!("`{op_name}` needs a number or a string"),
                ))
            }
        },
    };
    Ok(Compiled {
        field: c.field.clone(),
        path: FieldPath::parse(&c.field),
        test,
    })
}

impl Compiled {
    fn eval(&self, record: &Record) -> Result<bool, TransformError> {
        let value = record.get(&self.path);
        let Some(lhs) = value else {
            return Ok(matches!(self.test, Test::Compare(CompareOp::Ne, _)));
        };
        Ok(match &self.test {
            Test::Exists => true,
            Test::In(items) => items.iter().any(|item| item.equals(&lhs)),
            Test::Compare(CompareOp::Eq, rhs) => rhs.equals(&lhs),
            Test::Compare(CompareOp::Ne, rhs) => !rhs.equals(&lhs),
            Test::Compare(op, rhs) => {
                let ord = rhs.order(&lhs).ok_or_else(|| TransformError {
                    field: self.field.clone(),
                    reason: format!(
                        "cannot compare {} with {} (`{}`)",
                        preview(&lhs),
                        preview(&rhs.value),
                        op.name()
                    ),
                })?;
                match op {
                    CompareOp::Lt => ord == Ordering::Less,
                    CompareOp::Le => ord != Ordering::Greater,
                    CompareOp::Gt => ord == Ordering::Greater,
                    CompareOp::Ge => ord != Ordering::Less,
                    // Handled above; kept total for the compiler.
                    CompareOp::Eq => ord == Ordering::Equal,
                    CompareOp::Ne => ord != Ordering::Equal,
                    CompareOp::In | CompareOp::Exists => false,
                }
            }
        })
    }
}

/// Compact JSON text of a value for error messages, cut to a readable length.
pub(crate) fn preview(v: &Value) -> String {
    const MAX_CHARS: usize = 64;
    let text = v.to_string();
    if text.chars().count() <= MAX_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_CHARS).collect();
    cut.push('…');
    cut
}

/// The spec's projection.
#[derive(Clone, Debug, Default)]
pub struct Projector {
    fields: Vec<(Vec<String>, Source)>,
}

/// Where one projected field comes from.
#[derive(Clone, Debug)]
enum Source {
    /// A field path, copied as it is.
    Field(FieldPath),
    /// An arithmetic expression.
    Expr(Arith),
}

impl Projector {
    /// Compiles the projection. An item with both or neither of `field` and `expr`, or whose
    /// expression does not parse, is an error naming it (the validator rejects these too).
    pub fn new(projections: &[Projection]) -> Result<Projector, SpecError> {
        let fields = projections
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok((
                    p.name.split('.').map(str::to_string).collect(),
                    source(i, p)?,
                ))
            })
            .collect::<Result<_, SpecError>>()?;
        Ok(Projector { fields })
    }

    /// Every field path the projection reads (the decoder keeps only what is read),
    /// including those inside expressions.
    pub fn fields_read(&self) -> Vec<&FieldPath> {
        let mut paths = Vec::with_capacity(self.fields.len());
        for (_, source) in &self.fields {
            match source {
                Source::Field(path) => paths.push(path),
                Source::Expr(e) => e.paths(&mut paths),
            }
        }
        paths
    }

    /// Whether this projection passes records through unchanged.
    pub fn is_identity(&self) -> bool {
        self.fields.is_empty()
    }

    /// The projected record (the record itself when the projection is empty).
    pub fn project(&self, record: Record) -> Record {
        if self.fields.is_empty() {
            return record;
        }
        let mut out = Map::with_capacity(self.fields.len());
        for (name, source) in &self.fields {
            let value = match source {
                Source::Field(path) => record.get(path),
                Source::Expr(e) => e.eval(&record).map(|n| n.to_json()),
            };
            if let Some(v) = value {
                insert_path(&mut out, name, v);
            }
        }
        Record {
            value: Value::Object(out),
            meta: record.meta,
        }
    }
}

/// Compiles projection item `i`.
fn source(i: usize, p: &Projection) -> Result<Source, SpecError> {
    let path = format!("spec.pipeline.project[{i}]");
    match (&p.field, &p.expr) {
        (Some(field), None) => Ok(Source::Field(FieldPath::parse(field))),
        (None, Some(text)) => expr::parse(text)
            .map(|e| Source::Expr(Arith::compile(&e)))
            .map_err(|e| SpecError::new(format!("{path}.expr"), format!("{text:?}: {e}"))),
        (Some(_), Some(_)) => Err(SpecError::new(
            format!("{path}.expr"),
            "give either `field` or `expr`, not both",
        )),
        (None, None) => Err(SpecError::new(
            format!("{path}.field"),
            "a projection needs a `field` or an `expr`",
        )),
    }
}

/// A compiled expression: field paths pre-parsed, evaluated without allocating.
#[derive(Clone, Debug)]
enum Arith {
    Const(Number),
    Field(FieldPath),
    Neg(Box<Arith>),
    Binary(BinOp, Box<Arith>, Box<Arith>),
}

impl Arith {
    fn compile(e: &Expr) -> Arith {
        match e {
            Expr::Int(i) => Arith::Const(Number::Int(*i)),
            Expr::Float(x) => Arith::Const(Number::Float(*x)),
            Expr::Field(path) => Arith::Field(FieldPath::parse(path)),
            Expr::Neg(e) => Arith::Neg(Box::new(Arith::compile(e))),
            Expr::Binary(op, lhs, rhs) => Arith::Binary(
                *op,
                Box::new(Arith::compile(lhs)),
                Box::new(Arith::compile(rhs)),
            ),
        }
    }

    fn paths<'a>(&'a self, out: &mut Vec<&'a FieldPath>) {
        match self {
            Arith::Const(_) => {}
            Arith::Field(path) => out.push(path),
            Arith::Neg(e) => e.paths(out),
            Arith::Binary(_, lhs, rhs) => {
                lhs.paths(out);
                rhs.paths(out);
            }
        }
    }

    /// The value on `record`; `None` leaves the projected field absent (see the module doc).
    fn eval(&self, record: &Record) -> Option<Number> {
        let n = match self {
            Arith::Const(n) => *n,
            Arith::Field(path) => number_at(record, path)?,
            Arith::Neg(e) => match e.eval(record)? {
                Number::Int(i) => i
                    .checked_neg()
                    .map_or(Number::Float(-(i as f64)), Number::Int),
                Number::Float(x) => Number::Float(-x),
            },
            Arith::Binary(op, lhs, rhs) => arith(*op, lhs.eval(record)?, rhs.eval(record)?)?,
        };
        match n {
            Number::Float(x) if !x.is_finite() => None,
            n => Some(n),
        }
    }
}

/// `a op b`: integer when both are integers and `op` is not `/` (a float on overflow), float
/// otherwise; `None` on a division by zero.
fn arith(op: BinOp, a: Number, b: Number) -> Option<Number> {
    if let (Number::Int(x), Number::Int(y), false) = (a, b, op == BinOp::Div) {
        let exact = match op {
            BinOp::Add => x.checked_add(y),
            BinOp::Sub => x.checked_sub(y),
            BinOp::Mul => x.checked_mul(y),
            BinOp::Div => None,
        };
        if let Some(i) = exact {
            return Some(Number::Int(i));
        }
    }
    let (x, y) = (a.as_f64(), b.as_f64());
    Some(Number::Float(match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div if y == 0.0 => return None,
        BinOp::Div => x / y,
    }))
}

/// The number at `path` (JSON number or numeric string), read in place.
fn number_at(record: &Record, path: &FieldPath) -> Option<Number> {
    match path {
        FieldPath::Value(parts) => {
            let mut cur = &record.value;
            for p in parts {
                cur = cur.as_object()?.get(p)?;
            }
            as_number(cur)
        }
        // Metadata: small integers (the parser admits no other metadata fields).
        meta => as_number(&record.get(meta)?),
    }
}

/// Inserts `value` at the dotted path `name`, creating (or replacing non-object values with)
/// intermediate objects.
fn insert_path(map: &mut Map<String, Value>, name: &[String], value: Value) {
    let Some((last, parents)) = name.split_last() else {
        return;
    };
    let mut cur = map;
    for part in parents {
        let slot = cur
            .entry(part.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else {
            return;
        };
        cur = next;
    }
    cur.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::record::RecordMeta;

    fn rec(v: Value) -> Record {
        Record {
            value: v,
            meta: RecordMeta {
                topic: Arc::from("in"),
                partition: 3,
                offset: 7,
                timestamp_ms: Some(5_000),
                key: Some(b"k1".to_vec()),
            },
        }
    }

    fn cond(field: &str, op: CompareOp, value: Option<Value>) -> Condition {
        Condition {
            field: field.to_string(),
            op,
            value,
        }
    }

    fn filter(conds: &[Condition]) -> Filter {
        Filter::new(conds).unwrap()
    }

    fn holds(field: &str, op: CompareOp, value: Value, record: Value) -> bool {
        filter(&[cond(field, op, Some(value))])
            .matches(&rec(record))
            .unwrap()
    }

    #[test]
    fn numeric_comparisons() {
        use CompareOp::*;
        let r = json!({"n": 10, "s": "10", "f": 2.5});
        assert!(holds("n", Eq, json!(10), r.clone()));
        assert!(holds("n", Eq, json!(10.0), r.clone()));
        assert!(!holds("n", Ne, json!(10), r.clone()));
        assert!(holds("n", Lt, json!(11), r.clone()));
        assert!(!holds("n", Lt, json!(10), r.clone()));
        assert!(holds("n", Le, json!(10), r.clone()));
        assert!(holds("n", Gt, json!(9.5), r.clone()));
        assert!(holds("n", Ge, json!(10), r.clone()));
        assert!(!holds("n", Ge, json!(10.5), r.clone()));
        assert!(holds("f", Lt, json!(3), r.clone()));
        // Numeric strings (CSV) compare numerically against numbers: "10" > 9, not "10" < "9".
        assert!(holds("s", Gt, json!(9), r.clone()));
        assert!(holds("s", Eq, json!(10), r.clone()));
    }

    #[test]
    fn string_comparisons_are_lexicographic() {
        use CompareOp::*;
        let r = json!({"s": "banana", "d": "10"});
        assert!(holds("s", Eq, json!("banana"), r.clone()));
        assert!(holds("s", Ne, json!("apple"), r.clone()));
        assert!(holds("s", Gt, json!("apple"), r.clone()));
        assert!(holds("s", Lt, json!("cherry"), r.clone()));
        assert!(holds("s", Le, json!("banana"), r.clone()));
        assert!(holds("s", Ge, json!("banana"), r.clone()));
        // A string operand compares as a string, even with a numeric-looking field.
        assert!(holds("d", Lt, json!("9"), r.clone()));
    }

    #[test]
    fn eq_between_other_types_is_json_equality() {
        use CompareOp::*;
        let r = json!({"b": true, "n": 5, "o": {"x": 1}, "s": "abc"});
        assert!(holds("b", Eq, json!(true), r.clone()));
        assert!(holds("b", Ne, json!(false), r.clone()));
        assert!(!holds("n", Eq, json!("5"), r.clone()));
        assert!(holds("n", Ne, json!("5"), r.clone()));
        assert!(holds("o", Eq, json!({"x": 1}), r.clone()));
        assert!(!holds("s", Eq, json!(5), r.clone()));
        assert!(holds("s", Ne, json!(5), r.clone()));
    }

    #[test]
    fn ordering_type_errors_name_the_field() {
        use CompareOp::*;
        let f = filter(&[cond("amount", Lt, Some(json!(10)))]);
        let e = f.matches(&rec(json!({"amount": "abc"}))).unwrap_err();
        assert_eq!(e.field, "amount");
        assert_eq!(
            e.to_string(),
            "field `amount`: cannot compare \"abc\" with 10 (`lt`)"
        );
        let f = filter(&[cond("name", Ge, Some(json!("m")))]);
        let e = f.matches(&rec(json!({"name": 3}))).unwrap_err();
        assert_eq!(e.field, "name");
        let f = filter(&[cond("flag", Gt, Some(json!(1)))]);
        assert!(f.matches(&rec(json!({"flag": true}))).is_err());
    }

    #[test]
    fn missing_fields_filter_except_ne() {
        use CompareOp::*;
        let r = json!({"other": 1, "nil": null});
        for op in [Eq, Lt, Le, Gt, Ge] {
            assert!(!holds("x", op, json!(1), r.clone()), "{op:?}");
            assert!(!holds("nil", op, json!(1), r.clone()), "{op:?}");
        }
        assert!(holds("x", Ne, json!(1), r.clone()));
        assert!(!holds("x", In, json!([1, 2]), r.clone()));
        let f = filter(&[cond("x", Exists, None)]);
        assert!(!f.matches(&rec(r.clone())).unwrap());
        let f = filter(&[cond("nil", Exists, None)]);
        assert!(!f.matches(&rec(r.clone())).unwrap());
        let f = filter(&[cond("other", Exists, None)]);
        assert!(f.matches(&rec(r)).unwrap());
    }

    #[test]
    fn in_is_numeric_aware() {
        use CompareOp::*;
        let list = json!(["eu", 3, true]);
        assert!(holds("v", In, list.clone(), json!({"v": "eu"})));
        assert!(holds("v", In, list.clone(), json!({"v": 3.0})));
        assert!(holds("v", In, list.clone(), json!({"v": "3"})));
        assert!(holds("v", In, list.clone(), json!({"v": true})));
        assert!(!holds("v", In, list.clone(), json!({"v": "us"})));
        assert!(!holds("v", In, json!([]), json!({"v": "eu"})));
    }

    #[test]
    fn conditions_are_conjunctive_and_see_metadata() {
        use CompareOp::*;
        let f = filter(&[
            cond("user.country", Eq, Some(json!("fr"))),
            cond("@partition", Eq, Some(json!(3))),
            cond("@key", In, Some(json!(["k1", "k2"]))),
        ]);
        assert!(f.matches(&rec(json!({"user": {"country": "fr"}}))).unwrap());
        assert!(!f.matches(&rec(json!({"user": {"country": "de"}}))).unwrap());
        assert!(Filter::new(&[]).unwrap().matches(&rec(json!({}))).unwrap());
    }

    #[test]
    fn bad_conditions_are_spec_errors() {
        use CompareOp::*;
        let e = Filter::new(&[cond("a", Exists, None), cond("b", Lt, None)]).unwrap_err();
        assert_eq!(e.field, "spec.pipeline.filter[1].value");
        let e = Filter::new(&[cond("a", Lt, Some(json!(true)))]).unwrap_err();
        assert_eq!(e.field, "spec.pipeline.filter[0].value");
        let e = Filter::new(&[cond("a", In, Some(json!("x")))]).unwrap_err();
        assert_eq!(e.field, "spec.pipeline.filter[0].value");
        let e = Filter::new(&[cond("a", Exists, Some(json!(1)))]).unwrap_err();
        assert_eq!(e.field, "spec.pipeline.filter[0].value");
        let e = Filter::new(&[cond("a", Eq, Some(Value::Null))]).unwrap_err();
        assert_eq!(e.field, "spec.pipeline.filter[0].value");
    }

    #[test]
    fn projection_builds_a_new_object_and_keeps_meta() {
        let p = Projector::new(&[
            Projection::field("user", "user.id"),
            Projection::field("amt", "amount"),
            Projection::field("gone", "nope"),
            Projection::field("src.partition", "@partition"),
        ])
        .unwrap();
        let r = rec(json!({"user": {"id": "u1", "x": 1}, "amount": 3, "noise": [1]}));
        let meta = r.meta.clone();
        let out = p.project(r);
        assert_eq!(
            out.value,
            json!({"user": "u1", "amt": 3, "src": {"partition": 3}})
        );
        assert_eq!(out.meta, meta);
        assert_eq!(out.get(&FieldPath::parse("src.partition")), Some(json!(3)));
    }

    #[test]
    fn empty_projection_is_identity() {
        let p = Projector::new(&[]).unwrap();
        assert!(p.is_identity());
        let r = rec(json!({"a": 1, "b": {"c": 2}}));
        assert_eq!(p.project(r.clone()), r);
    }

    /// The value `expr` projects from `record` (`None`: the field is absent).
    #[track_caller]
    fn eval(expr: &str, record: Value) -> Option<Value> {
        let p = Projector::new(&[Projection::expr("out", expr)]).unwrap();
        let out = p.project(rec(record));
        let Value::Object(mut map) = out.value else {
            panic!("not an object: {:?}", out.value);
        };
        map.remove("out")
    }

    #[test]
    fn expressions_keep_integers_integral() {
        let r = json!({"a": 7, "b": 2, "s": "5", "big": i64::MAX, "min": i64::MIN});
        assert_eq!(eval("a + b * 3", r.clone()), Some(json!(13)));
        assert_eq!(eval("(a + b) * 3", r.clone()), Some(json!(27)));
        assert_eq!(eval("a - b - 1", r.clone()), Some(json!(4)));
        assert_eq!(eval("-a * b", r.clone()), Some(json!(-14)));
        assert_eq!(eval("a - -b", r.clone()), Some(json!(9)));
        // Numeric strings (CSV fields) are numbers.
        assert_eq!(eval("s * 2", r.clone()), Some(json!(10)));
        assert_eq!(eval("42", r.clone()), Some(json!(42)));
        // `/` always gives a float.
        assert_eq!(eval("a / b", r.clone()), Some(json!(3.5)));
        assert_eq!(eval("a / 7", r.clone()).map(|v| v.is_f64()), Some(true));
        // Overflow falls back to a float.
        assert_eq!(
            eval("big + 1", r.clone()),
            Some(json!(i64::MAX as f64 + 1.0))
        );
        assert_eq!(
            eval("big * 2", r.clone()),
            Some(json!(i64::MAX as f64 * 2.0))
        );
        assert_eq!(eval("-min", r.clone()), Some(json!(-(i64::MIN as f64))));
        assert_eq!(eval("min - 1", r), Some(json!(i64::MIN as f64 - 1.0)));
    }

    #[test]
    fn expressions_with_a_float_are_float() {
        let r = json!({"price": 1000, "f": 2.5, "s": "0.5"});
        assert_eq!(eval("price * 0.908", r.clone()), Some(json!(908.0)));
        assert_eq!(eval("f + 1", r.clone()), Some(json!(3.5)));
        assert_eq!(eval("s * 4", r.clone()), Some(json!(2.0)));
        assert_eq!(eval("-f", r.clone()), Some(json!(-2.5)));
        assert_eq!(eval("1.0 + 1", r), Some(json!(2.0)));
    }

    #[test]
    fn bad_operands_leave_the_field_absent() {
        let r = json!({"n": 4, "nil": null, "s": "abc", "b": true, "o": {"x": 1}, "z": 0});
        for expr in [
            "missing * 2",
            "n + missing",
            "nil + 1",
            "s * 2",
            "b + 1",
            "o * 2",
            "-s",
            "n / 0",
            "n / z",
            "n / 0.0",
            "n / (z * 1.5)",
            "1 + n / z",
        ] {
            assert_eq!(eval(expr, r.clone()), None, "{expr}");
        }
        // Not finite: absent too, rather than `null`.
        let huge = json!({"x": 1e308});
        assert_eq!(eval("x * 10", huge), None);
        // The record is still emitted, with the other fields.
        let p = Projector::new(&[
            Projection::field("n", "n"),
            Projection::expr("half", "n / z"),
        ])
        .unwrap();
        assert_eq!(p.project(rec(r)).value, json!({"n": 4}));
    }

    #[test]
    fn expressions_read_nested_paths_and_metadata() {
        let r = json!({"bid": {"price": 200, "extra": {"fee": "1.5"}}});
        assert_eq!(eval("bid.price * 0.5", r.clone()), Some(json!(100.0)));
        assert_eq!(
            eval("bid.price + bid.extra.fee", r.clone()),
            Some(json!(201.5))
        );
        assert_eq!(eval("bid.nope + 1", r.clone()), None);
        assert_eq!(eval("bid.price.x + 1", r.clone()), None);
        // rec(): partition 3, offset 7, timestamp 5000.
        assert_eq!(eval("@timestamp / 1000", r.clone()), Some(json!(5.0)));
        assert_eq!(
            eval("@partition * 10 + @offset", r.clone()),
            Some(json!(37))
        );
        let mut no_ts = rec(r);
        no_ts.meta.timestamp_ms = None;
        let p = Projector::new(&[Projection::expr("t", "@timestamp + 1")]).unwrap();
        assert_eq!(p.project(no_ts).value, json!({}));
    }

    #[test]
    fn fields_read_includes_expression_fields() {
        let p = Projector::new(&[
            Projection::field("a", "a"),
            Projection::expr("b", "(bid.price + 1) * @offset / c"),
        ])
        .unwrap();
        assert_eq!(
            p.fields_read(),
            [
                &FieldPath::parse("a"),
                &FieldPath::parse("bid.price"),
                &FieldPath::Offset,
                &FieldPath::parse("c"),
            ]
        );
    }

    #[test]
    fn invalid_items_are_errors_or_absent() {
        let both = Projection {
            name: "x".into(),
            field: Some("a".into()),
            expr: Some("a".into()),
        };
        let neither = Projection {
            name: "x".into(),
            field: None,
            expr: None,
        };
        let bad = Projection::expr("x", "a * )");
        let ok = Projection::field("a", "a");
        let e = Projector::new(&[ok.clone(), both.clone()]).unwrap_err();
        assert_eq!(e.field, "spec.pipeline.project[1].expr");
        let e = Projector::new(&[ok.clone(), neither.clone()]).unwrap_err();
        assert_eq!(e.field, "spec.pipeline.project[1].field");
        let e = Projector::new(&[ok.clone(), ok.clone(), bad.clone()]).unwrap_err();
        assert_eq!(e.field, "spec.pipeline.project[2].expr");
        assert!(
            e.message.contains("unexpected `)` at column 5"),
            "{}",
            e.message
        );
    }

    #[test]
    fn preview_is_cut() {
        assert_eq!(preview(&json!("abc")), "\"abc\"");
        let long = preview(&json!("x".repeat(200)));
        assert_eq!(long.chars().count(), 65);
        assert!(long.ends_with('…'));
    }
}
