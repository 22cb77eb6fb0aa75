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
//! projection, `name -> value of field`, keeping the record's Kafka metadata. A missing source
//! field leaves its output field absent. A dotted name (`user.id`) creates nested objects, so
//! later stages can address it by the same path. An empty projection passes records through.

use std::cmp::Ordering;

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
    fields: Vec<(Vec<String>, FieldPath)>,
}

impl Projector {
    pub fn new(projections: &[Projection]) -> Projector {
        Projector {
            fields: projections
                .iter()
                .map(|p| {
                    (
                        p.name.split('.').map(str::to_string).collect(),
                        FieldPath::parse(&p.field),
                    )
                })
                .collect(),
        }
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
        for (name, path) in &self.fields {
            if let Some(v) = record.get(path) {
                insert_path(&mut out, name, v);
            }
        }
        Record {
            value: Value::Object(out),
            meta: record.meta,
        }
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
            Projection {
                name: "user".into(),
                field: "user.id".into(),
            },
            Projection {
                name: "amt".into(),
                field: "amount".into(),
            },
            Projection {
                name: "gone".into(),
                field: "nope".into(),
            },
            Projection {
                name: "src.partition".into(),
                field: "@partition".into(),
            },
        ]);
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
        let p = Projector::new(&[]);
        assert!(p.is_identity());
        let r = rec(json!({"a": 1, "b": {"c": 2}}));
        assert_eq!(p.project(r.clone()), r);
    }

    #[test]
    fn preview_is_cut() {
        assert_eq!(preview(&json!("abc")), "\"abc\"");
        let long = preview(&json!("x".repeat(200)));
        assert_eq!(long.chars().count(), 65);
        assert!(long.ends_with('…'));
    }
}
